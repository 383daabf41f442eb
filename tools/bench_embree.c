/*
 * bench_embree.c - Embree 3 as the reference for `make bench` (tools/bench.c): the same
 * triangles built with the Morton (LOW) and the binned-SAH (MEDIUM) builders, and the
 * same ray sets traced with single-ray rtcIntersect1 / rtcOccluded1 on host threads.
 * Compiled into build/bench with MMD_HAVE_EMBREE=1 when /usr/include/embree3 exists;
 * otherwise only stubs that report "not available".
 */
#include "bench.h"

#include <stdlib.h>

#if MMD_HAVE_EMBREE
#include <embree3/rtcore.h>
#include <pthread.h>
#include <stdatomic.h>

struct bench_embree {
    RTCDevice dev;
    RTCScene scene;
};

int bench_embree_available(void) { return 1; }

bench_embree *bench_embree_create(int threads)
{
    bench_embree *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    char cfg[64];
    snprintf(cfg, sizeof cfg, "threads=%d", threads);
    e->dev = rtcNewDevice(cfg);
    if (!e->dev) {
        free(e);
        return NULL;
    }
    return e;
}

void bench_embree_destroy(bench_embree *e)
{
    if (!e) return;
    if (e->scene) rtcReleaseScene(e->scene);
    rtcReleaseDevice(e->dev);
    free(e);
}

const char *bench_embree_version(void) { return RTC_VERSION_STRING; }

double bench_embree_build(bench_embree *e, const float *vertices, uint32_t n_vertices, const uint32_t *indices,
                          uint32_t n_tris, int quality)
{
    if (e->scene) rtcReleaseScene(e->scene);
    e->scene = NULL;
    /* geometry setup (shared buffers: no copy) is outside the timed region, like the
     * scene loading is for our build; the commit is the whole BVH build */
    RTCScene s = rtcNewScene(e->dev);
    rtcSetSceneBuildQuality(s, quality ? RTC_BUILD_QUALITY_MEDIUM : RTC_BUILD_QUALITY_LOW);
    RTCGeometry g = rtcNewGeometry(e->dev, RTC_GEOMETRY_TYPE_TRIANGLE);
    rtcSetGeometryBuildQuality(g, quality ? RTC_BUILD_QUALITY_MEDIUM : RTC_BUILD_QUALITY_LOW);
    /* Embree may read 16 bytes at the last vertex: the caller pads the array */
    rtcSetSharedGeometryBuffer(g, RTC_BUFFER_TYPE_VERTEX, 0, RTC_FORMAT_FLOAT3, vertices, 0, 3 * sizeof(float),
                               n_vertices);
    rtcSetSharedGeometryBuffer(g, RTC_BUFFER_TYPE_INDEX, 0, RTC_FORMAT_UINT3, indices, 0, 3 * sizeof(uint32_t),
                               n_tris);
    rtcCommitGeometry(g);
    rtcAttachGeometry(s, g);
    rtcReleaseGeometry(g);
    double t0 = mmd_now();
    rtcCommitScene(s);
    double t = mmd_now() - t0;
    if (rtcGetDeviceError(e->dev) != RTC_ERROR_NONE) {
        rtcReleaseScene(s);
        return -1.0;
    }
    e->scene = s;
    return t;
}

typedef struct trace_job {
    bench_embree *e;
    const mmd_ray *rays;
    size_t n;
    int any;
    int32_t *prim;      /* closest: hit prim per ray (or NULL) */
    uint32_t *occluded; /* any: 1 = occluded (or NULL) */
    atomic_size_t next;
} trace_job;

#define EMBREE_CHUNK 4096

static void *trace_worker(void *arg)
{
    trace_job *j = arg;
    struct RTCIntersectContext ctx;
    rtcInitIntersectContext(&ctx);
    for (;;) {
        size_t c = atomic_fetch_add(&j->next, EMBREE_CHUNK);
        if (c >= j->n) break;
        size_t end = c + EMBREE_CHUNK < j->n ? c + EMBREE_CHUNK : j->n;
        for (size_t i = c; i < end; i++) {
            const mmd_ray *r = &j->rays[i];
            if (j->any) {
                struct RTCRay ray = {.org_x = r->ox, .org_y = r->oy, .org_z = r->oz, .tnear = r->tmin,
                                     .dir_x = r->dx, .dir_y = r->dy, .dir_z = r->dz, .tfar = r->tmax,
                                     .mask = 0xffffffffu};
                rtcOccluded1(j->e->scene, &ctx, &ray);
                if (j->occluded) j->occluded[i] = ray.tfar < 0.0f;
            } else {
                struct RTCRayHit rh;
                rh.ray = (struct RTCRay){.org_x = r->ox, .org_y = r->oy, .org_z = r->oz, .tnear = r->tmin,
                                         .dir_x = r->dx, .dir_y = r->dy, .dir_z = r->dz, .tfar = r->tmax,
                                         .mask = 0xffffffffu};
                rh.hit.geomID = RTC_INVALID_GEOMETRY_ID;
                rh.hit.instID[0] = RTC_INVALID_GEOMETRY_ID;
                rtcIntersect1(j->e->scene, &ctx, &rh);
                if (j->prim) j->prim[i] = rh.hit.geomID == RTC_INVALID_GEOMETRY_ID ? -1 : (int32_t)rh.hit.primID;
            }
        }
    }
    return NULL;
}

double bench_embree_trace(bench_embree *e, const mmd_ray *rays, size_t n, int any, int threads, int32_t *prim,
                          uint32_t *occluded)
{
    if (!e->scene) return -1.0;
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    trace_job j = {e, rays, n, any, prim, occluded, 0};
    pthread_t th[64];
    double t0 = mmd_now();
    int started = 0;
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&th[i], NULL, trace_worker, &j) != 0) break;
        started++;
    }
    if (started == 0) trace_worker(&j);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    return mmd_now() - t0;
}

#else /* no Embree */

int bench_embree_available(void) { return 0; }
bench_embree *bench_embree_create(int threads) { (void)threads; return NULL; }
void bench_embree_destroy(bench_embree *e) { (void)e; }
const char *bench_embree_version(void) { return "not available"; }
double bench_embree_build(bench_embree *e, const float *vertices, uint32_t n_vertices, const uint32_t *indices,
                          uint32_t n_tris, int quality)
{
    (void)e, (void)vertices, (void)n_vertices, (void)indices, (void)n_tris, (void)quality;
    return -1.0;
}
double bench_embree_trace(bench_embree *e, const mmd_ray *rays, size_t n, int any, int threads, int32_t *prim,
                          uint32_t *occluded)
{
    (void)e, (void)rays, (void)n, (void)any, (void)threads, (void)prim, (void)occluded;
    return -1.0;
}

#endif
