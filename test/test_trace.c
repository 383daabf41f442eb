/*
 * test_trace.c - the device traversal kernels (cl/trace.cl via src/trace/trace.c) against
 * the plain-C references, on every shared scene, on the default OpenCL device.
 *
 * Per scene, >= 100k random rays (fixed seed): half from random points in the slightly
 * enlarged bbox in uniform directions, a quarter leaving random points on triangles
 * (offset with mmd_offset_origin to the side the direction points into), a quarter aimed
 * at random triangle points from outside the bbox (non-unit directions, hits near t = 1).
 * Closest hit must report the same prim as the reference with t within 1e-5 relative, and
 * in fact (t, u, v) bit-identical since both sides run the same watertight test
 * (mmd_isect.h); any hit uses finite tmax. Rays that start on a surface must not report
 * the triangle they start on.
 *
 * Reference: brute force over all triangles (mmd_brute_closest / mmd_brute_any), split
 * across threads, and the host BVH reference (mmd_bvh_closest_ref / mmd_bvh_any_ref) on
 * every ray. Brute force on munich (39k triangles) and etoile (13k) is ~5e9 triangle
 * tests per query type: measured 33 s and 10 s on 2 idle cores (48 s for the whole
 * test instead of 14-22 s). That fits the test budget, so every ray of every scene is
 * compared with brute force by default; MMD_TEST_QUICK_BRUTE=1 (used by make test-asan,
 * where sanitizers make it several times slower) compares a 10k-ray strided subset there
 * and all 100k rays against the BVH reference.
 */
#include "mmd_bvh.h"
#include "mmd_scene.h"
#include "mmd_test.h"
#include "mmd_trace.h"

#include <pthread.h>
#include <stdint.h>

#define N_RAYS 100000
#define N_BRUTE_SUBSET 10000

static const char *g_scenes[] = {
    "scenes/sionna/box/box.xml",
    "scenes/sionna/double_reflector/double_reflector.xml",
    "scenes/sionna/etoile/etoile.xml",
    "scenes/sionna/floor_wall/floor_wall.xml",
    "scenes/sionna/munich/munich.xml",
    "scenes/sionna/simple_reflector/simple_reflector.xml",
    "scenes/sionna/simple_street_canyon/simple_street_canyon.xml",
    "scenes/sionna/triple_reflector/triple_reflector.xml",
    "scenes/indoor/newrf_bedroom/scene.yaml",
    "scenes/indoor/nist_box_lecture_room/scene.yaml",
    "scenes/indoor/nist_conference_room/scene.yaml",
    "scenes/indoor/nist_data_center/scene.yaml",
    "scenes/indoor/nist_enterprise_cubicle/scene.yaml",
    "scenes/indoor/nist_hotel_lobby/scene.yaml",
    "scenes/indoor/nist_l_room/scene.yaml",
    "scenes/indoor/nist_lecture_room/scene.yaml",
    "scenes/indoor/nist_living_room/scene.yaml",
};

/* ---------------------------------------------------------------- reference runs */

typedef struct ref_job {
    const float *vertices;
    const uint32_t *indices;
    uint32_t n_tris;
    const mmd_bvh *bvh; /* non-NULL: use the BVH reference instead of brute force */
    const mmd_ray *rays;
    size_t n;
    int any;
    mmd_hit *hits;
    uint32_t *occ;
    int thread, n_threads;
} ref_job;

static void *ref_worker(void *arg)
{
    ref_job *j = arg;
    /* interleaved chunks so threads get a similar mix of ray types */
    for (size_t c = (size_t)j->thread * 256; c < j->n; c += (size_t)j->n_threads * 256) {
        size_t end = c + 256 < j->n ? c + 256 : j->n;
        for (size_t i = c; i < end; i++) {
            if (j->any)
                j->occ[i] = (uint32_t)(j->bvh ? mmd_bvh_any_ref(j->bvh, &j->rays[i])
                                              : mmd_brute_any(j->vertices, j->indices, j->n_tris, &j->rays[i]));
            else
                j->hits[i] = j->bvh ? mmd_bvh_closest_ref(j->bvh, &j->rays[i])
                                    : mmd_brute_closest(j->vertices, j->indices, j->n_tris, &j->rays[i]);
        }
    }
    return NULL;
}

static void run_ref(const mmd_scene *s, const mmd_bvh *bvh, const mmd_ray *rays, size_t n, int any,
                    mmd_hit *hits, uint32_t *occ)
{
    int nt = mmd_num_threads();
    if (nt > 64) nt = 64;
    pthread_t th[64];
    ref_job jobs[64];
    for (int i = 0; i < nt; i++) {
        jobs[i] = (ref_job){s->vertices, s->indices, s->n_triangles, bvh, rays, n, any, hits, occ, i, nt};
        if (pthread_create(&th[i], NULL, ref_worker, &jobs[i]) != 0) {
            ref_worker(&jobs[i]); /* no thread: do the share inline */
            th[i] = 0;
        }
    }
    for (int i = 0; i < nt; i++)
        if (th[i]) pthread_join(th[i], NULL);
}

/* ---------------------------------------------------------------- ray generation */

static float urand(mmd_rng *g) { return (float)mmd_rng_uniform(g); }

static void rand_dir(mmd_rng *g, float d[3])
{
    float z = 2.0f * urand(g) - 1.0f, phi = 6.2831853f * urand(g);
    float r = sqrtf(fmaxf(0.0f, 1.0f - z * z));
    d[0] = r * cosf(phi), d[1] = r * sinf(phi), d[2] = z;
}

static void tri_verts(const mmd_scene *s, uint32_t t, const float **a, const float **b, const float **c)
{
    *a = s->vertices + 3 * s->indices[3 * t];
    *b = s->vertices + 3 * s->indices[3 * t + 1];
    *c = s->vertices + 3 * s->indices[3 * t + 2];
}

static void tri_normal(const mmd_scene *s, uint32_t t, float n[3])
{
    const float *a, *b, *c;
    tri_verts(s, t, &a, &b, &c);
    float e1[3] = {b[0] - a[0], b[1] - a[1], b[2] - a[2]}, e2[3] = {c[0] - a[0], c[1] - a[1], c[2] - a[2]};
    n[0] = e1[1] * e2[2] - e1[2] * e2[1];
    n[1] = e1[2] * e2[0] - e1[0] * e2[2];
    n[2] = e1[0] * e2[1] - e1[1] * e2[0];
}

/* A random point on triangle t (uniform barycentrics). */
static void tri_point(const mmd_scene *s, uint32_t t, mmd_rng *g, float p[3])
{
    const float *a, *b, *c;
    tri_verts(s, t, &a, &b, &c);
    float u = urand(g), v = urand(g);
    if (u + v > 1.0f) u = 1.0f - u, v = 1.0f - v;
    for (int k = 0; k < 3; k++) p[k] = (1.0f - u - v) * a[k] + u * b[k] + v * c[k];
}

/* A triangle with a usable normal (degenerate ones have no side to leave from). */
static uint32_t rand_tri(const mmd_scene *s, mmd_rng *g)
{
    for (int tries = 0; tries < 100; tries++) {
        uint32_t t = mmd_rng_u32(g) % s->n_triangles;
        float n[3];
        tri_normal(s, t, n);
        if (n[0] * n[0] + n[1] * n[1] + n[2] * n[2] > 0.0f) return t;
    }
    return 0;
}

/* Fills rays[0..n) (see the file comment); own[i] = the triangle ray i starts on, or
 * UINT32_MAX. Any-hit copies get finite tmax afterwards. */
static void gen_rays(const mmd_scene *s, mmd_rng *g, mmd_ray *rays, uint32_t *own, size_t n)
{
    float lo[3], hi[3], diag = 0.0f;
    for (int k = 0; k < 3; k++) {
        float e = s->bbox_max[k] - s->bbox_min[k];
        diag += e * e;
    }
    diag = sqrtf(diag);
    float pad = 0.05f * diag + 0.01f;
    float center[3];
    for (int k = 0; k < 3; k++) {
        lo[k] = s->bbox_min[k] - pad, hi[k] = s->bbox_max[k] + pad;
        center[k] = 0.5f * (s->bbox_min[k] + s->bbox_max[k]);
    }
    for (size_t i = 0; i < n; i++) {
        mmd_ray *r = &rays[i];
        float o[3], d[3];
        own[i] = UINT32_MAX;
        if (i % 4 < 2) { /* half: inside the enlarged bbox, any direction */
            for (int k = 0; k < 3; k++) o[k] = lo[k] + (hi[k] - lo[k]) * urand(g);
            rand_dir(g, d);
        } else if (i % 4 == 2) { /* a quarter: leaving a surface */
            uint32_t t = rand_tri(s, g);
            float p[3], nrm[3];
            tri_point(s, t, g, p);
            tri_normal(s, t, nrm);
            rand_dir(g, d);
            mmd_offset_origin(p, nrm, d, o);
            own[i] = t;
        } else { /* a quarter: from outside towards a surface point, |d| = distance */
            uint32_t t = rand_tri(s, g);
            float p[3], u[3];
            tri_point(s, t, g, p);
            rand_dir(g, u);
            for (int k = 0; k < 3; k++) {
                o[k] = center[k] + u[k] * (0.5f * diag + 2.0f * pad);
                d[k] = p[k] - o[k];
            }
        }
        *r = (mmd_ray){o[0], o[1], o[2], 0.0f, d[0], d[1], d[2], INFINITY};
    }
}

/* ---------------------------------------------------------------- comparisons */

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

static float dir_len(const mmd_ray *r) { return sqrtf(r->dx * r->dx + r->dy * r->dy + r->dz * r->dz); }

/* Mismatch counts. A mismatch is "precision-limited" (soft) when it involves a hit
 * closer to the origin than `delta` (distance), or two hits within `delta` or 2^-12
 * relative of each other: there the triangle test's own t error (a few ulps of the
 * distances to the triangle's vertices, ~1e-5 m on a 100 m street triangle, more on a
 * 19 m x 3 mm sliver such as nist_l_room's wall strips) exceeds the box test's relative
 * slack, so a box that the exact geometry puts behind the origin or behind the best hit
 * is skipped while brute force, which has no boxes, still reports the rounding
 * artefact; and two traversals that visit equally-near children in different orders
 * (device: sorting network, host reference: insertion sort) can settle such a near-tie
 * differently. Soft cases must stay rare (checked); anything else is a hard mismatch,
 * a bug. */
typedef struct cmp_count {
    size_t hard, soft, inexact;
} cmp_count;

static cmp_count compare_closest(const char *name, const char *what, const mmd_ray *rays, const mmd_hit *dev,
                                 const mmd_hit *ref, size_t n, const size_t *index, float delta)
{
    cmp_count c = {0, 0, 0};
    for (size_t j = 0; j < n; j++) {
        size_t i = index ? index[j] : j;
        const mmd_hit *a = &dev[i], *b = &ref[j];
        int ok = a->prim == b->prim &&
                 (a->prim < 0 || fabsf(a->t - b->t) <= 1e-5f * fmaxf(fabsf(b->t), 1e-30f));
        if (ok) {
            if (a->prim >= 0 && !(same_bits(a->t, b->t) && same_bits(a->u, b->u) && same_bits(a->v, b->v)))
                c.inexact++;
            continue;
        }
        float dn = dir_len(&rays[i]);
        int both = a->prim >= 0 && b->prim >= 0;
        int soft = delta > 0.0f && (fminf(a->t, b->t) * dn <= delta ||
                                    (both && (fabsf(a->t - b->t) * dn <= delta ||
                                              fabsf(a->t - b->t) <= 0x1p-12f * fmaxf(a->t, b->t))));
        size_t *cnt = soft ? &c.soft : &c.hard;
        if (*cnt < (soft ? 2u : 5u))
            fprintf(stderr,
                    "  %s %s%s ray %zu o=(%.9g %.9g %.9g) d=(%.9g %.9g %.9g): device prim %d t %.9g, "
                    "reference prim %d t %.9g\n",
                    name, what, soft ? " (precision-limited)" : "", i, rays[i].ox, rays[i].oy, rays[i].oz,
                    rays[i].dx, rays[i].dy, rays[i].dz, a->prim, a->t, b->prim, b->t);
        (*cnt)++;
    }
    return c;
}

static cmp_count compare_any(const mmd_scene *s, const char *name, const char *what, const mmd_ray *rays,
                             const uint32_t *dev, const uint32_t *ref, size_t n, const size_t *index, float delta)
{
    cmp_count c = {0, 0, 0};
    for (size_t j = 0; j < n; j++) {
        size_t i = index ? index[j] : j;
        if (dev[i] == ref[j]) continue;
        int soft = 0;
        if (delta > 0.0f && ref[j]) { /* where is the hit the device did not see? */
            mmd_hit h = mmd_brute_closest(s->vertices, s->indices, s->n_triangles, &rays[i]);
            float dn = dir_len(&rays[i]);
            soft = h.prim >= 0 && (h.t * dn <= delta || (rays[i].tmax - h.t) * dn <= delta);
        }
        size_t *cnt = soft ? &c.soft : &c.hard;
        if (*cnt < (soft ? 2u : 5u))
            fprintf(stderr, "  %s %s%s ray %zu: device %u reference %u\n", name, what,
                    soft ? " (precision-limited)" : "", i, dev[i], ref[j]);
        (*cnt)++;
    }
    return c;
}

/* ---------------------------------------------------------------- per scene */

static void test_scene(mmd_cl *cl, const char *rel)
{
    const char *path = mmd_test_path(rel);
    const char *name = strrchr(rel, '/') ? strrchr(rel, '/') + 1 : rel;
    char buf[128];
    if (!strcmp(name, "scene.yaml")) { /* indoor: name by its folder */
        const char *end = strrchr(rel, '/'), *beg = end - 1;
        while (beg > rel && beg[-1] != '/') beg--;
        snprintf(buf, sizeof buf, "%.*s", (int)(end - beg), beg);
        name = buf;
    }
    double t0 = mmd_now();
    mmd_scene *s = NULL;
    mmd_status st = mmd_scene_load(path, &s);
    CHECK(st == MMD_OK, "load %s: %s", path, mmd_last_error());
    if (st != MMD_OK) return;
    mmd_bvh *bvh = NULL;
    st = mmd_bvh_build(s->vertices, s->indices, s->n_triangles, NULL, &bvh);
    CHECK(st == MMD_OK, "BVH build %s: %s", name, mmd_last_error());
    mmd_trace *tr = NULL;
    if (st == MMD_OK) {
        st = mmd_trace_create(cl, bvh, &tr);
        CHECK(st == MMD_OK, "trace create %s: %s", name, mmd_last_error());
    }
    if (st != MMD_OK) {
        mmd_bvh_destroy(bvh);
        mmd_scene_destroy(s);
        return;
    }

    size_t n = N_RAYS;
    mmd_ray *rays = malloc(n * sizeof *rays), *srays = malloc(n * sizeof *srays);
    uint32_t *own = malloc(n * sizeof *own), *occ = malloc(n * sizeof *occ), *occ_ref = malloc(n * sizeof *occ_ref);
    mmd_hit *hits = malloc(n * sizeof *hits), *ref = malloc(n * sizeof *ref);
    size_t *subset = malloc(n * sizeof *subset);
    mmd_ray *sub_rays = malloc(n * sizeof *sub_rays);
    if (!rays || !srays || !own || !occ || !occ_ref || !hits || !ref || !subset || !sub_rays) {
        CHECK(0, "out of memory");
        goto done;
    }
    mmd_rng g;
    mmd_rng_seed(&g, 0x7a3ce5u, 17);
    gen_rays(s, &g, rays, own, n);
    /* shadow-ray copies: finite tmax, some short of the first surface, some beyond */
    float diag = 0.0f;
    for (int k = 0; k < 3; k++) diag += (s->bbox_max[k] - s->bbox_min[k]) * (s->bbox_max[k] - s->bbox_min[k]);
    diag = sqrtf(diag);
    for (size_t i = 0; i < n; i++) {
        srays[i] = rays[i];
        srays[i].tmax = (i % 4 == 3 ? 1.5f : diag) * urand(&g);
    }

    double td = mmd_now();
    st = mmd_trace_closest(tr, rays, n, hits);
    CHECK(st == MMD_OK, "closest %s: %s", name, mmd_last_error());
    if (st == MMD_OK) st = mmd_trace_any(tr, srays, n, occ);
    CHECK(st == MMD_OK, "any %s: %s", name, mmd_last_error());
    td = mmd_now() - td;
    if (st != MMD_OK) goto done;

    /* 1. the host BVH reference on every ray (same tree, same tests; the two traversals
     * may order equally-near children differently, which only matters in the
     * precision-limited cases described at compare_closest) */
    float delta = 0x1p-16f * diag;
    double tr0 = mmd_now();
    run_ref(s, bvh, rays, n, 0, ref, NULL);
    cmp_count cb = compare_closest(name, "closest vs BVH ref", rays, hits, ref, n, NULL, delta);
    CHECK(cb.hard == 0 && cb.inexact == 0, "%s: %zu of %zu closest hits differ from the BVH reference (%zu not bit-identical)",
          name, cb.hard, n, cb.inexact);
    run_ref(s, bvh, srays, n, 1, NULL, occ_ref);
    cmp_count ab = compare_any(s, name, "any vs BVH ref", srays, occ, occ_ref, n, NULL, delta);
    CHECK(ab.hard == 0, "%s: %zu of %zu any-hit results differ from the BVH reference", name, ab.hard, n);

    /* 2. brute force: all rays, or a strided subset (keeps the ray-type mix) on the two
     * city scenes */
    const char *quick = getenv("MMD_TEST_QUICK_BRUTE"); /* 1: brute-force subset on big scenes */
    size_t n_brute = s->n_triangles > 5000 && quick && quick[0] == '1' ? N_BRUTE_SUBSET : n;
    for (size_t j = 0; j < n_brute; j++) {
        subset[j] = j * (n / n_brute);
        sub_rays[j] = rays[subset[j]];
    }
    run_ref(s, NULL, sub_rays, n_brute, 0, ref, NULL);
    cmp_count cf = compare_closest(name, "closest vs brute force", rays, hits, ref, n_brute, subset, delta);
    CHECK(cf.hard == 0 && cf.inexact == 0, "%s: %zu of %zu closest hits differ from brute force (%zu not bit-identical)",
          name, cf.hard, n_brute, cf.inexact);
    for (size_t j = 0; j < n_brute; j++) sub_rays[j] = srays[subset[j]];
    run_ref(s, NULL, sub_rays, n_brute, 1, NULL, occ_ref);
    cmp_count af = compare_any(s, name, "any vs brute force", srays, occ, occ_ref, n_brute, subset, delta);
    CHECK(af.hard == 0, "%s: %zu of %zu any-hit results differ from brute force", name, af.hard, n_brute);
    /* precision-limited cases are rare accidents of random origins within ~delta of a
     * surface (since the BVH boxes carry a scene-wide margin: 1 in 1.7M rays, a ray
     * starting inside nist_l_room's 3 mm floor slab); more would mean the tolerance
     * hides a real problem */
    CHECK(cf.soft + af.soft <= 2 && cb.soft + ab.soft <= 2,
          "%s: %zu + %zu precision-limited differences from brute force, %zu + %zu from the BVH reference", name,
          cf.soft, af.soft, cb.soft, ab.soft);
    tr0 = mmd_now() - tr0;

    /* 3. rays leaving a surface must not see the triangle they leave */
    size_t self = 0, n_surf = 0, n_hit = 0, n_occ = 0;
    for (size_t i = 0; i < n; i++) {
        n_hit += hits[i].prim >= 0;
        n_occ += occ[i] != 0;
        if (own[i] == UINT32_MAX) continue;
        n_surf++;
        if (hits[i].prim == (int32_t)own[i]) {
            if (self < 3)
                fprintf(stderr, "  %s: ray %zu leaving triangle %u hits it again at t=%g\n", name, i, own[i],
                        hits[i].t);
            self++;
        }
    }
    CHECK(self == 0, "%s: %zu of %zu rays leaving a surface hit their own triangle", name, self, n_surf);
    printf("%-22s %6u tris %zu rays: %zu hit, %zu occluded; vs BVH ref %zu+%zu mismatches (%zu+%zu precision-limited); "
           "vs brute force (%zu rays) %zu+%zu mismatches (%zu+%zu precision-limited); %.2f s (device %.2f)\n",
           name, s->n_triangles, n, n_hit, n_occ, cb.hard, ab.hard, cb.soft, ab.soft, n_brute, cf.hard, af.hard,
           cf.soft, af.soft, mmd_now() - t0, td);
    (void)tr0;
done:
    free(rays), free(srays), free(own), free(occ), free(occ_ref), free(hits), free(ref), free(subset), free(sub_rays);
    mmd_trace_destroy(tr);
    mmd_bvh_destroy(bvh);
    mmd_scene_destroy(s);
}

/* ---------------------------------------------------------------- small cases */

/* Several exact copies of one triangle under different ids, among other geometry:
 * every ray through them must report the smallest id, from either side. Also a ray
 * leaving a surface with the offset origin, and a ray through a shared edge. */
static void test_coincident(mmd_cl *cl)
{
    /* 0-3: a unit quad in z = 0 split along its diagonal; 4: a far triangle; 5-7: copies
     * of one triangle in z = 1 (ids 2..4 below hold the copies in shuffled order) */
    static const float v[] = {
        0, 0, 0, 1, 0, 0, 1, 1, 0, 0, 1, 0,       /* quad */
        5, 5, 5, 6, 5, 5, 5, 6, 5,                /* far triangle */
        -1, -1, 1, 2, -1, 1, -1, 2, 1,            /* the coincident triangle */
    };
    static const uint32_t idx[] = {
        4, 5, 6,    /* 0: far */
        0, 1, 2,    /* 1: quad half */
        7, 8, 9,    /* 2: copy A */
        9, 7, 8,    /* 3: copy B (same triangle, rotated vertex order) */
        7, 8, 9,    /* 4: copy C */
        0, 2, 3,    /* 5: quad half */
        7, 9, 8,    /* 6: copy D (opposite winding) */
    };
    mmd_bvh *bvh = NULL;
    mmd_status st = mmd_bvh_build(v, idx, 7, NULL, &bvh);
    CHECK(st == MMD_OK, "coincident BVH: %s", mmd_last_error());
    if (st != MMD_OK) return;
    mmd_trace *tr = NULL;
    st = mmd_trace_create(cl, bvh, &tr);
    CHECK(st == MMD_OK, "coincident trace: %s", mmd_last_error());
    if (st != MMD_OK) {
        mmd_bvh_destroy(bvh);
        return;
    }
    enum { N = 6 };
    mmd_ray rays[N] = {
        {0.25f, 0.25f, 3.0f, 0.0f, 0.0f, 0.0f, -1.0f, INFINITY},   /* down through the copies */
        {0.25f, 0.25f, 0.5f, 0.0f, 0.0f, 0.0f, 1.0f, INFINITY},    /* up through them */
        {0.3f, 0.2f, 3.0f, 0.0f, 0.01f, 0.02f, -2.0f, INFINITY},   /* oblique, non-unit */
        {0.5f, 0.5f, -1.0f, 0.0f, 0.0f, 0.0f, 1.0f, INFINITY},     /* through the quad's shared edge */
        {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, INFINITY},      /* leaves the quad: set below */
        {0.25f, 0.25f, 3.0f, 0.0f, 0.0f, 0.0f, -1.0f, 1.5f},       /* stops short of the copies */
    };
    /* ray 4 starts on quad half 1 and leaves at a grazing angle upwards */
    float p[3] = {0.7f, 0.3f, 0.0f}, nrm[3] = {0.0f, 0.0f, 1.0f}, d[3] = {1.0f, 0.3f, 1e-3f}, o[3];
    mmd_offset_origin(p, nrm, d, o);
    CHECK(o[2] > 0.0f, "offset origin moves off the surface towards the direction: z %g", o[2]);
    rays[4] = (mmd_ray){o[0], o[1], o[2], 0.0f, d[0], d[1], d[2], INFINITY};
    mmd_hit hits[N];
    uint32_t occ[N];
    st = mmd_trace_closest(tr, rays, N, hits);
    CHECK(st == MMD_OK, "coincident closest: %s", mmd_last_error());
    st = mmd_trace_any(tr, rays, N, occ);
    CHECK(st == MMD_OK, "coincident any: %s", mmd_last_error());
    CHECK(hits[0].prim == 2 && hits[0].t == 2.0f, "down: prim %d t %g (want 2, 2)", hits[0].prim, hits[0].t);
    CHECK(hits[1].prim == 2 && hits[1].t == 0.5f, "up: prim %d t %g (want 2, 0.5)", hits[1].prim, hits[1].t);
    CHECK(hits[2].prim == 2, "oblique: prim %d (want 2)", hits[2].prim);
    CHECK(hits[3].prim == 1 && hits[3].t == 1.0f, "shared edge: prim %d t %g (want 1, 1)", hits[3].prim, hits[3].t);
    CHECK(hits[4].prim == -1 && isinf(hits[4].t), "grazing ray leaving the quad: prim %d t %g (want miss)",
          hits[4].prim, hits[4].t);
    CHECK(hits[5].prim == -1, "tmax 1.5 ends before the copies (t 2): prim %d t %g", hits[5].prim, hits[5].t);
    CHECK(occ[0] == 1 && occ[3] == 1 && occ[4] == 0 && occ[5] == 0, "any-hit: %u %u %u %u (want 1 1 0 0)", occ[0],
          occ[3], occ[4], occ[5]);
    for (int i = 0; i < N; i++) {
        mmd_hit b = mmd_brute_closest(v, idx, 7, &rays[i]);
        CHECK(b.prim == hits[i].prim && same_bits(b.t, hits[i].t), "ray %d: brute prim %d t %g, device %d %g", i,
              b.prim, b.t, hits[i].prim, hits[i].t);
        CHECK((uint32_t)mmd_brute_any(v, idx, 7, &rays[i]) == occ[i], "ray %d any: brute %d device %u", i,
              mmd_brute_any(v, idx, 7, &rays[i]), occ[i]);
    }
    /* n == 0 is a no-op */
    CHECK(mmd_trace_closest(tr, rays, 0, hits) == MMD_OK, "n = 0 closest");
    CHECK(mmd_trace_any(tr, rays, 0, occ) == MMD_OK, "n = 0 any");
    mmd_trace_destroy(tr);
    mmd_bvh_destroy(bvh);
}

int main(void)
{
    mmd_cl *cl = NULL;
    mmd_status st = mmd_cl_create(NULL, &cl);
    CHECK(st == MMD_OK, "OpenCL device: %s", mmd_last_error());
    if (st != MMD_OK) return TEST_DONE();
    printf("device: %s\n", cl->info.device_name);
    double t0 = mmd_now();
    test_coincident(cl);
    for (size_t i = 0; i < sizeof g_scenes / sizeof g_scenes[0]; i++) test_scene(cl, g_scenes[i]);
    printf("test_trace: %.1f s\n", mmd_now() - t0);
    mmd_cl_destroy(cl);
    return TEST_DONE();
}
