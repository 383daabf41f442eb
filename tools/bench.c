/*
 * bench.c - `make bench`: LBVH build speed and device traversal throughput on synthetic
 * indoor scenes, against Embree 3 in the same process when it is installed
 * (tools/bench_embree.c). Prints human lines and `BENCH <name> <value> <unit>` lines.
 *
 * Scene: a furnished room (8 x 6 x 3 m: walls, floor, ceiling, tables, chairs, cabinets,
 * boxes, spheres, bins, a pillar) whose surfaces are all tessellated at one spacing, so
 * the triangles are small and similar-sized like a LiDAR/photogrammetry mesh, with
 * per-vertex noise; the spacing is chosen so the scene has 100k or 1M triangles.
 *
 * Rays (>= 1M per ray set): a point source in the room shoots a Fibonacci sphere of
 * directions; three bounce generations follow, each leaving the previous hit point in a
 * uniform random direction of the hemisphere the ray came from (hit -> offset origin ->
 * new direction), so sets 1-3 are fully incoherent. Closest-hit throughput is total
 * rays of the four sets / kernel time with the rays already on the device; shadow
 * throughput uses rays from the hit points of sets 0-2 to a fixed transmitter (tmax = 1).
 * Embree traces the identical rays with rtcIntersect1 / rtcOccluded1 on as many host
 * threads as the machine has (single-ray, incoherent: what our kernel does per
 * work-item), on its default MEDIUM (binned SAH) tree for the headline *_vs_embree
 * ratios and on its LOW (Morton) tree for *_vs_embree_lowtree, which separates kernel
 * speed from tree quality (our LBVH is a Morton tree too). Builds: ours vs Embree LOW,
 * the same algorithm class, with MEDIUM for information. Each figure is the median of
 * 5 runs, ours and Embree's interleaved; ratios are also given on process CPU time
 * (*_cputime), which is robust when other processes share the cores.
 *
 * MMD_BENCH_SIZES (e.g. "100000") and MMD_BENCH_REPS override the defaults.
 */
#include "bench.h"
#include "mmd_bvh.h"
#include "mmd_sim.h"
#include "mmd_trace.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- scene generator */

typedef struct mesh {
    float *v;
    uint32_t nv, cap_v;
    uint32_t *idx;
    uint32_t nt, cap_t;
    int count_only; /* sizing pass: count triangles, store nothing */
} mesh;

static int mesh_vertex(mesh *m, double x, double y, double z, uint32_t *id)
{
    if (!m->count_only) {
        if (m->nv == m->cap_v) {
            uint32_t cap = m->cap_v ? 2 * m->cap_v : 4096;
            /* +4 floats: Embree reads vertices as 16-byte loads */
            float *v = realloc(m->v, ((size_t)cap * 3 + 4) * sizeof *v);
            if (!v) return 0;
            m->v = v, m->cap_v = cap;
        }
        m->v[3 * (size_t)m->nv] = (float)x, m->v[3 * (size_t)m->nv + 1] = (float)y,
                          m->v[3 * (size_t)m->nv + 2] = (float)z;
    }
    *id = m->nv++;
    return 1;
}

static int mesh_tri(mesh *m, uint32_t a, uint32_t b, uint32_t c)
{
    if (!m->count_only) {
        if (m->nt == m->cap_t) {
            uint32_t cap = m->cap_t ? 2 * m->cap_t : 4096;
            uint32_t *ix = realloc(m->idx, (size_t)cap * 3 * sizeof *ix);
            if (!ix) return 0;
            m->idx = ix, m->cap_t = cap;
        }
        m->idx[3 * (size_t)m->nt] = a, m->idx[3 * (size_t)m->nt + 1] = b, m->idx[3 * (size_t)m->nt + 2] = c;
    }
    m->nt++;
    return 1;
}

/* A parametric patch P(u, v), u, v in [0, 1], as an nu x nv grid of quads (2 triangles
 * each). Degenerate triangles (at sphere poles, disc centres) are skipped. */
typedef void (*patch_fn)(const double *prm, double u, double v, double p[3]);

static int mesh_patch(mesh *m, patch_fn f, const double *prm, int nu, int nv)
{
    uint32_t base = m->nv;
    for (int j = 0; j <= nv; j++)
        for (int i = 0; i <= nu; i++) {
            double p[3];
            f(prm, (double)i / nu, (double)j / nv, p);
            uint32_t id;
            if (!mesh_vertex(m, p[0], p[1], p[2], &id)) return 0;
        }
    for (int j = 0; j < nv; j++)
        for (int i = 0; i < nu; i++) {
            uint32_t a = base + (uint32_t)(j * (nu + 1) + i), b = a + 1, c = a + (uint32_t)(nu + 1), d = c + 1;
            if (!mesh_tri(m, a, b, d) || !mesh_tri(m, a, d, c)) return 0;
        }
    return 1;
}

/* prm: origin, edge U, edge V */
static void quad_fn(const double *q, double u, double v, double p[3])
{
    for (int k = 0; k < 3; k++) p[k] = q[k] + u * q[3 + k] + v * q[6 + k];
}
/* prm: centre, radius (vertical z axis) */
static void sphere_fn(const double *q, double u, double v, double p[3])
{
    double th = 2.0 * M_PI * u, ph = M_PI * v;
    p[0] = q[0] + q[3] * sin(ph) * cos(th), p[1] = q[1] + q[3] * sin(ph) * sin(th), p[2] = q[2] - q[3] * cos(ph);
}
/* prm: base centre, radius, height */
static void cyl_fn(const double *q, double u, double v, double p[3])
{
    double th = 2.0 * M_PI * u;
    p[0] = q[0] + q[3] * cos(th), p[1] = q[1] + q[3] * sin(th), p[2] = q[2] + v * q[4];
}
/* prm: centre, radius (disc in a z plane) */
static void disc_fn(const double *q, double u, double v, double p[3])
{
    double th = 2.0 * M_PI * u;
    p[0] = q[0] + v * q[3] * cos(th), p[1] = q[1] + v * q[3] * sin(th), p[2] = q[2];
}

static int cells(double len, double s) { return len / s < 1.0 ? 1 : (int)ceil(len / s); }

static int gen_quad(mesh *m, double s, const double o[3], const double u[3], const double v[3])
{
    double q[9] = {o[0], o[1], o[2], u[0], u[1], u[2], v[0], v[1], v[2]};
    return mesh_patch(m, quad_fn, q, cells(sqrt(u[0] * u[0] + u[1] * u[1] + u[2] * u[2]), s),
                      cells(sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]), s));
}

static int gen_box(mesh *m, double s, double x0, double y0, double z0, double x1, double y1, double z1)
{
    double dx = x1 - x0, dy = y1 - y0, dz = z1 - z0;
    double X[3] = {dx, 0, 0}, Y[3] = {0, dy, 0}, Z[3] = {0, 0, dz};
    double o0[3] = {x0, y0, z0}, ox[3] = {x1, y0, z0}, oy[3] = {x0, y1, z0}, oz[3] = {x0, y0, z1};
    return gen_quad(m, s, o0, X, Y) && gen_quad(m, s, oz, X, Y) && gen_quad(m, s, o0, X, Z) &&
           gen_quad(m, s, oy, X, Z) && gen_quad(m, s, o0, Y, Z) && gen_quad(m, s, ox, Y, Z);
}

static int gen_sphere(mesh *m, double s, double x, double y, double z, double r)
{
    double q[4] = {x, y, z, r};
    return mesh_patch(m, sphere_fn, q, cells(2.0 * M_PI * r, s), cells(M_PI * r, s));
}

static int gen_cylinder(mesh *m, double s, double x, double y, double z, double r, double h)
{
    double q[5] = {x, y, z, r, h}, d0[4] = {x, y, z, r}, d1[4] = {x, y, z + h, r};
    int nu = cells(2.0 * M_PI * r, s);
    return mesh_patch(m, cyl_fn, q, nu, cells(h, s)) && mesh_patch(m, disc_fn, d0, nu, cells(r, s)) &&
           mesh_patch(m, disc_fn, d1, nu, cells(r, s));
}

static double urand(mmd_rng *g) { return mmd_rng_uniform(g); }

/* The room at tessellation spacing s; the furniture layout depends only on the seed. */
static int gen_room(mesh *m, double s)
{
    const double W = 8.0, D = 6.0, H = 3.0;
    mmd_rng g;
    mmd_rng_seed(&g, 2024, 7);
    double o[3] = {0, 0, 0}, X[3] = {W, 0, 0}, Y[3] = {0, D, 0}, Z[3] = {0, 0, H};
    double oc[3] = {0, 0, H}, oy[3] = {0, D, 0}, ox[3] = {W, 0, 0};
    int ok = gen_quad(m, s, o, X, Y) && gen_quad(m, s, oc, X, Y) && gen_quad(m, s, o, X, Z) &&
             gen_quad(m, s, oy, X, Z) && gen_quad(m, s, o, Y, Z) && gen_quad(m, s, ox, Y, Z);
    /* two tables with four legs each, and chairs around them */
    for (int t = 0; t < 2 && ok; t++) {
        double tx = 1.2 + 3.6 * t, ty = 0.9 + 0.4 * t;
        ok = gen_box(m, s, tx, ty, 0.72, tx + 1.6, ty + 0.8, 0.76);
        for (int l = 0; l < 4 && ok; l++) {
            double lx = tx + (l & 1 ? 1.5 : 0.05), ly = ty + (l & 2 ? 0.7 : 0.05);
            ok = gen_box(m, s, lx, ly, 0.0, lx + 0.05, ly + 0.05, 0.72);
        }
        for (int c = 0; c < 3 && ok; c++) {
            double cx = tx + 0.1 + 0.55 * c, cy = ty - 0.55;
            ok = gen_box(m, s, cx, cy, 0.43, cx + 0.45, cy + 0.45, 0.47) &&
                 gen_box(m, s, cx, cy - 0.05, 0.47, cx + 0.45, cy, 0.95);
            for (int l = 0; l < 4 && ok; l++) {
                double lx = cx + (l & 1 ? 0.41 : 0.0), ly = cy + (l & 2 ? 0.41 : 0.0);
                ok = gen_box(m, s, lx, ly, 0.0, lx + 0.04, ly + 0.04, 0.43);
            }
        }
        /* clutter on the table */
        for (int b = 0; b < 3 && ok; b++) {
            double bx = tx + 0.1 + 1.2 * urand(&g), by = ty + 0.1 + 0.4 * urand(&g);
            ok = gen_box(m, s, bx, by, 0.76, bx + 0.1 + 0.2 * urand(&g), by + 0.1 + 0.2 * urand(&g),
                         0.8 + 0.3 * urand(&g));
        }
        if (ok) ok = gen_sphere(m, s, tx + 1.3, ty + 0.5, 0.91, 0.15);
    }
    /* cabinets and shelves along the back and side walls */
    for (int c = 0; c < 5 && ok; c++) {
        double w = 0.6 + 0.6 * urand(&g), d = 0.4 + 0.3 * urand(&g), h = 0.8 + 1.2 * urand(&g);
        double x = 0.3 + 1.5 * c;
        ok = gen_box(m, s, x, D - d - 0.02, 0.0, x + w, D - 0.02, h);
    }
    for (int c = 0; c < 2 && ok; c++) {
        double y = 1.0 + 2.2 * c;
        ok = gen_box(m, s, W - 0.5, y, 0.0, W - 0.02, y + 1.2, 1.9);
    }
    /* boxes on the floor, bins, a pillar, a couple of balls */
    for (int b = 0; b < 8 && ok; b++) {
        double x = 0.3 + 7.0 * urand(&g), y = 2.2 + 2.5 * urand(&g), e = 0.2 + 0.4 * urand(&g);
        ok = gen_box(m, s, x, y, 0.0, x + e, y + e * (0.5 + urand(&g)), e * (0.5 + urand(&g)));
    }
    if (ok) ok = gen_cylinder(m, s, 0.5, 0.5, 0.0, 0.18, 0.6) && gen_cylinder(m, s, 7.4, 5.0, 0.0, 0.2, 0.7);
    if (ok) ok = gen_cylinder(m, s, 6.3, 3.9, 0.0, 0.25, H);
    if (ok) ok = gen_sphere(m, s, 2.5, 3.5, 0.35, 0.35) && gen_sphere(m, s, 5.5, 4.2, 0.25, 0.25);
    return ok;
}

/* Build the room with about `target` triangles and per-vertex noise of +-10% of the
 * spacing (LiDAR-like). Returns 0 on allocation failure. */
static int make_scene(uint32_t target, mesh *out, double *spacing)
{
    double s = 0.1;
    for (int it = 0; it < 6; it++) { /* triangle count ~ 1/s^2: a few fixed-point steps */
        mesh c = {.count_only = 1};
        gen_room(&c, s);
        double ratio = (double)c.nt / target;
        if (fabs(ratio - 1.0) < 0.01) break;
        s *= sqrt(ratio);
    }
    mesh m = {0};
    if (!gen_room(&m, s)) {
        free(m.v), free(m.idx);
        return 0;
    }
    mmd_rng g;
    mmd_rng_seed(&g, 99, 3);
    for (size_t i = 0; i < 3 * (size_t)m.nv; i++) m.v[i] += (float)((urand(&g) - 0.5) * 0.2 * s);
    *out = m;
    *spacing = s;
    return 1;
}

/* ---------------------------------------------------------------- rays */

static const float g_src[3] = {4.0f, 3.0f, 2.3f}; /* point source, in free space */
static const float g_tx[3] = {1.3f, 4.6f, 2.6f};  /* shadow-ray target, in free space */

static void rand_dir(mmd_rng *g, float d[3])
{
    float z = (float)(2.0 * urand(g) - 1.0), ph = (float)(2.0 * M_PI * urand(g));
    float r = sqrtf(fmaxf(0.0f, 1.0f - z * z));
    d[0] = r * cosf(ph), d[1] = r * sinf(ph), d[2] = z;
}

/* The next generation: from each hit of `in`, a uniform direction in the hemisphere the
 * ray arrived from; a ray that escaped (noise opens hairline cracks) restarts at the
 * source. Also writes the shadow ray from that hit point to the transmitter. */
static void next_rays(const mesh *m, mmd_rng *g, const mmd_ray *in, const mmd_hit *hits, size_t n, mmd_ray *out,
                      mmd_ray *shadow)
{
    for (size_t i = 0; i < n; i++) {
        float d[3];
        rand_dir(g, d);
        if (hits[i].prim < 0) {
            out[i] = (mmd_ray){g_src[0], g_src[1], g_src[2], 0.0f, d[0], d[1], d[2], INFINITY};
            if (shadow) {
                shadow[i] = (mmd_ray){g_src[0], g_src[1], g_src[2], 0.0f, g_tx[0] - g_src[0], g_tx[1] - g_src[1],
                                      g_tx[2] - g_src[2], 1.0f};
            }
            continue;
        }
        const uint32_t *ix = m->idx + 3 * (size_t)hits[i].prim;
        const float *a = m->v + 3 * (size_t)ix[0], *b = m->v + 3 * (size_t)ix[1], *c = m->v + 3 * (size_t)ix[2];
        float p[3], nrm[3], e1[3], e2[3];
        float u = hits[i].u, v = hits[i].v;
        for (int k = 0; k < 3; k++) {
            p[k] = (1.0f - u - v) * a[k] + u * b[k] + v * c[k];
            e1[k] = b[k] - a[k], e2[k] = c[k] - a[k];
        }
        nrm[0] = e1[1] * e2[2] - e1[2] * e2[1];
        nrm[1] = e1[2] * e2[0] - e1[0] * e2[2];
        nrm[2] = e1[0] * e2[1] - e1[1] * e2[0];
        /* back towards where the ray came from */
        float back = -(nrm[0] * in[i].dx + nrm[1] * in[i].dy + nrm[2] * in[i].dz);
        if ((d[0] * nrm[0] + d[1] * nrm[1] + d[2] * nrm[2]) * back < 0.0f) d[0] = -d[0], d[1] = -d[1], d[2] = -d[2];
        float o[3];
        mmd_offset_origin(p, nrm, d, o);
        out[i] = (mmd_ray){o[0], o[1], o[2], 0.0f, d[0], d[1], d[2], INFINITY};
        if (shadow) {
            float to[3] = {g_tx[0] - p[0], g_tx[1] - p[1], g_tx[2] - p[2]}, so[3];
            mmd_offset_origin(p, nrm, to, so);
            shadow[i] = (mmd_ray){so[0], so[1], so[2], 0.0f, g_tx[0] - so[0], g_tx[1] - so[1], g_tx[2] - so[2], 1.0f};
        }
    }
}

/* ---------------------------------------------------------------- helpers */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void cpu_model(char *buf, size_t n)
{
    snprintf(buf, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10)) {
            char *c = strchr(line, ':');
            if (c) {
                c++;
                while (*c == ' ') c++;
                c[strcspn(c, "\n")] = 0;
                snprintf(buf, n, "%s", c);
            }
            break;
        }
    }
    fclose(f);
}

/* CPU seconds used by all threads of this process (PoCL's workers, Embree's threads).
 * The ratios to Embree are taken on CPU time as well as on wall time: on a shared
 * machine other processes steal cores for part of a run, which wall time charges to
 * whichever side happened to be running, while CPU time does not. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void bench_line(const char *name, double value, const char *unit)
{
    printf("BENCH %s %.4g %s\n", name, value, unit);
    fflush(stdout);
}

#define N_SETS 4 /* primary + 3 bounces */

typedef struct size_result {
    double build_ours, build_low, build_med;
    double closest_ours, closest_embree, shadow_ours, shadow_embree; /* Mrays/s, wall time */
    double closest_cpu_ratio, shadow_cpu_ratio; /* ours / Embree on CPU time */
    double closest_low_ratio, shadow_low_ratio; /* ours / Embree on its LOW tree (wall) */
    double build_sah, closest_sah, shadow_sah;  /* our SAH-quality tree (MMD_BVH_SAH) */
    double closest_sah_cpu_ratio, shadow_sah_cpu_ratio;
} size_result;

static int fail(const char *what)
{
    fprintf(stderr, "bench: %s: %s\n", what, mmd_last_error());
    return 1;
}

/* One scene size: builds, then closest-hit and shadow throughput. */
static int run_size(mmd_cl *cl, bench_embree *emb, bench_embree *emb_low, uint32_t target, size_t n_rays, int reps,
                    size_result *res)
{
    mesh m;
    double s;
    if (!make_scene(target, &m, &s)) return fail("scene generation");
    printf("\n== scene: furnished room 8 x 6 x 3 m, %u triangles (%u vertices), spacing %.1f mm, noise +-%.1f mm\n",
           m.nt, m.nv, 1e3 * s, 1e3 * 0.1 * s);
    int nth = mmd_num_threads();
    memset(res, 0, sizeof *res);

    /* --- builds: ours (LBVH, SAH) and Embree LOW interleaved, Embree MEDIUM for
     * information */
    double tb[16], tl[16], tm[16], ts[16];
    mmd_bvh *bvh = NULL, *bvh_sah = NULL;
    const mmd_bvh_options sah_opt = {.quality = MMD_BVH_SAH};
    for (int r = 0; r < reps; r++) {
        if (bvh) mmd_bvh_destroy(bvh);
        if (bvh_sah) mmd_bvh_destroy(bvh_sah);
        bvh = bvh_sah = NULL;
        double t0 = mmd_now();
        if (mmd_bvh_build(m.v, m.idx, m.nt, NULL, &bvh) != MMD_OK) return fail("LBVH build");
        tb[r] = mmd_now() - t0;
        t0 = mmd_now();
        if (mmd_bvh_build(m.v, m.idx, m.nt, &sah_opt, &bvh_sah) != MMD_OK) return fail("SAH build");
        ts[r] = mmd_now() - t0;
        if (emb) {
            tl[r] = bench_embree_build(emb, m.v, m.nv, m.idx, m.nt, 0);
            tm[r] = bench_embree_build(emb, m.v, m.nv, m.idx, m.nt, 1);
        }
    }
    res->build_ours = median(tb, reps);
    printf("LBVH build (%d threads): %.1f ms median of %d = %.1f Mprims/s; %u nodes, depth %d\n", nth,
           1e3 * res->build_ours, reps, m.nt / res->build_ours / 1e6, bvh->n_nodes, bvh->depth);
    res->build_sah = median(ts, reps);
    printf("SAH build (%d threads): %.1f ms median of %d = %.1f Mprims/s; %u nodes, depth %d\n", nth,
           1e3 * res->build_sah, reps, m.nt / res->build_sah / 1e6, bvh_sah->n_nodes, bvh_sah->depth);
    if (emb) {
        res->build_low = median(tl, reps);
        res->build_med = median(tm, reps);
        printf("Embree LOW (Morton) build: %.1f ms = %.1f Mprims/s; MEDIUM (SAH) build: %.1f ms = %.1f Mprims/s\n",
               1e3 * res->build_low, m.nt / res->build_low / 1e6, 1e3 * res->build_med, m.nt / res->build_med / 1e6);
        printf("LBVH build time / Embree LOW: %.2fx\n", res->build_ours / res->build_low);
        /* traced: Embree's default quality (MEDIUM, the headline baseline) and, for
         * information, its Morton tree (the same class of tree as our LBVH) */
        bench_embree_build(emb, m.v, m.nv, m.idx, m.nt, 1);
        if (emb_low && bench_embree_build(emb_low, m.v, m.nv, m.idx, m.nt, 0) < 0.0) emb_low = NULL;
    }

    /* --- ray sets: generated by tracing on the device */
    mmd_trace *tr = NULL, *tr_sah = NULL;
    if (mmd_trace_create(cl, bvh, &tr) != MMD_OK) return fail("trace create");
    if (mmd_trace_create(cl, bvh_sah, &tr_sah) != MMD_OK) return fail("trace create (SAH tree)");
    mmd_ray *rays[N_SETS], *shadow[N_SETS - 1];
    mmd_hit *hits = malloc(n_rays * sizeof *hits);
    int32_t *eprim = malloc(n_rays * sizeof *eprim);
    for (int k = 0; k < N_SETS; k++) rays[k] = malloc(n_rays * sizeof(mmd_ray));
    for (int k = 0; k < N_SETS - 1; k++) shadow[k] = malloc(n_rays * sizeof(mmd_ray));
    for (int k = 0; k < N_SETS; k++)
        if (!rays[k] || !hits || !eprim || (k < N_SETS - 1 && !shadow[k])) return fail("out of memory");
    const double golden = M_PI * (3.0 - sqrt(5.0));
    for (size_t i = 0; i < n_rays; i++) {
        double z = 1.0 - (2.0 * i + 1.0) / n_rays, r = sqrt(1.0 - z * z), ph = golden * i;
        rays[0][i] = (mmd_ray){g_src[0], g_src[1], g_src[2], 0.0f, (float)(r * cos(ph)), (float)(r * sin(ph)),
                               (float)z, INFINITY};
    }
    mmd_rng g;
    mmd_rng_seed(&g, 5, 11);
    size_t escaped = 0;
    for (int k = 0; k < N_SETS - 1; k++) {
        if (mmd_trace_closest(tr, rays[k], n_rays, hits) != MMD_OK) return fail("closest hit");
        for (size_t i = 0; i < n_rays; i++) escaped += hits[i].prim < 0;
        next_rays(&m, &g, rays[k], hits, n_rays, rays[k + 1], shadow[k]);
    }
    printf("rays: %zu per set, %d closest-hit sets (primary + 3 bounces), %d shadow sets; %.3f%% escaped\n", n_rays,
           N_SETS, N_SETS - 1, 100.0 * escaped / (double)(n_rays * (N_SETS - 1)));

    cl_mem d_rays[N_SETS], d_shadow[N_SETS - 1], d_hits[N_SETS], d_occ[N_SETS - 1];
    for (int k = 0; k < N_SETS; k++) {
        if (mmd_cl_buffer(cl, CL_MEM_READ_ONLY, n_rays * sizeof(mmd_ray), rays[k], "bench rays", &d_rays[k]) != MMD_OK ||
            mmd_cl_buffer(cl, CL_MEM_WRITE_ONLY, n_rays * sizeof(mmd_hit), NULL, "bench hits", &d_hits[k]) != MMD_OK)
            return fail("device buffers");
        if (k < N_SETS - 1 &&
            (mmd_cl_buffer(cl, CL_MEM_READ_ONLY, n_rays * sizeof(mmd_ray), shadow[k], "bench shadow rays",
                           &d_shadow[k]) != MMD_OK ||
             mmd_cl_buffer(cl, CL_MEM_WRITE_ONLY, n_rays * sizeof(uint32_t), NULL, "bench occlusion", &d_occ[k]) !=
                 MMD_OK))
            return fail("device buffers");
    }
    /* warm-up (kernel compile / first-touch of buffers) */
    if (mmd_trace_closest_dev(tr, d_rays[0], d_hits[0], n_rays) != MMD_OK) return fail("closest hit");
    if (mmd_trace_any_dev(tr, d_shadow[0], d_occ[0], n_rays) != MMD_OK) return fail("any hit");
    if (mmd_trace_closest_dev(tr_sah, d_rays[0], d_hits[0], n_rays) != MMD_OK) return fail("closest hit (SAH)");
    if (mmd_trace_any_dev(tr_sah, d_shadow[0], d_occ[0], n_rays) != MMD_OK) return fail("any hit (SAH)");
    clFinish(cl->queue);

    /* wall and CPU seconds of each run: [q][r], q = 0 ours closest, 1 Embree (MEDIUM)
     * closest, 2 Embree (LOW) closest, 3 ours on the SAH tree closest, 4-7 the same
     * for shadow rays; the eight are interleaved within each repetition */
    double wt[8][16], ct[8][16];
    bench_embree *E[4] = {NULL, emb, emb ? emb_low : NULL, NULL};
    mmd_trace *T[4] = {tr, NULL, NULL, tr_sah};
    for (int r = 0; r < reps; r++) {
        for (int any = 0; any < 2; any++) {
            int nset = any ? N_SETS - 1 : N_SETS;
            for (int who = 0; who < 4; who++) {
                if (!T[who] && !E[who]) continue;
                double w0 = mmd_now(), c0 = cpu_now();
                for (int k = 0; k < nset; k++) {
                    if (E[who])
                        bench_embree_trace(E[who], any ? shadow[k] : rays[k], n_rays, any, nth, NULL, NULL);
                    else if ((any ? mmd_trace_any_dev(T[who], d_shadow[k], d_occ[k], n_rays)
                                  : mmd_trace_closest_dev(T[who], d_rays[k], d_hits[k], n_rays)) != MMD_OK)
                        return fail("trace");
                }
                if (T[who] && mmd_cl_check(clFinish(cl->queue), "clFinish") != MMD_OK) return fail("trace");
                wt[4 * any + who][r] = mmd_now() - w0, ct[4 * any + who][r] = cpu_now() - c0;
            }
        }
    }
    double nc = (double)n_rays * N_SETS, ns = (double)n_rays * (N_SETS - 1);
    double mw[8], mc[8];
    for (int q = 0; q < 8; q++) {
        mw[q] = mc[q] = 0.0;
        if (T[q % 4] || E[q % 4]) mw[q] = median(wt[q], reps), mc[q] = median(ct[q], reps);
    }
    /* indices as before the SAH columns were added: 0-2 closest, 3-5 shadow */
    double sah_w[2] = {mw[3], mw[7]}, sah_c[2] = {mc[3], mc[7]};
    for (int q = 3; q < 6; q++) mw[q] = mw[q + 1], mc[q] = mc[q + 1];
    res->closest_ours = nc / mw[0] / 1e6;
    res->shadow_ours = ns / mw[3] / 1e6;
    printf("closest hit (device %s): %.2f Mrays/s (%.0f rays in %.3f s wall, %.3f s CPU)\n", cl->info.device_name,
           res->closest_ours, nc, mw[0], mc[0]);
    printf("shadow rays (device):  %.2f Mrays/s (%.0f rays in %.3f s wall, %.3f s CPU)\n", res->shadow_ours, ns, mw[3],
           mc[3]);
    res->closest_sah = nc / sah_w[0] / 1e6;
    res->shadow_sah = ns / sah_w[1] / 1e6;
    printf("SAH tree: closest hit %.2f Mrays/s (%.3f s CPU), shadow %.2f Mrays/s (%.3f s CPU); SAH / LBVH tree: "
           "closest %.2fx, shadow %.2fx (wall), %.2fx, %.2fx (CPU time)\n",
           res->closest_sah, sah_c[0], res->shadow_sah, sah_c[1], mw[0] / sah_w[0], mw[3] / sah_w[1],
           mc[0] / sah_c[0], mc[3] / sah_c[1]);
    if (emb) {
        res->closest_embree = nc / mw[1] / 1e6;
        res->shadow_embree = ns / mw[4] / 1e6;
        res->closest_cpu_ratio = mc[1] / mc[0];
        res->shadow_cpu_ratio = mc[4] / mc[3];
        res->closest_sah_cpu_ratio = mc[1] / sah_c[0];
        res->shadow_sah_cpu_ratio = mc[4] / sah_c[1];
        printf("Embree %s rtcIntersect1 (%d threads, MEDIUM tree): %.2f Mrays/s (%.3f s CPU); rtcOccluded1: %.2f "
               "Mrays/s (%.3f s CPU)\n",
               bench_embree_version(), nth, res->closest_embree, mc[1], res->shadow_embree, mc[4]);
        printf("ours / Embree throughput: closest hit %.2fx (wall) %.2fx (CPU time), shadow %.2fx (wall) %.2fx (CPU time)\n",
               res->closest_ours / res->closest_embree, res->closest_cpu_ratio, res->shadow_ours / res->shadow_embree,
               res->shadow_cpu_ratio);
        if (E[2]) {
            res->closest_low_ratio = mw[2] / mw[0];
            res->shadow_low_ratio = mw[5] / mw[3];
            printf("Embree on its LOW (Morton) tree: closest %.2f Mrays/s, shadow %.2f Mrays/s; ours / that: closest "
                   "%.2fx, shadow %.2fx (wall), %.2fx, %.2fx (CPU time)\n",
                   nc / mw[2] / 1e6, ns / mw[5] / 1e6, res->closest_low_ratio, res->shadow_low_ratio, mc[2] / mc[0],
                   mc[5] / mc[3]);
        }
    }
    /* occlusion fraction, and agreement with Embree on which triangle is hit (they use
     * different triangle tests: only edge-grazing rays may differ) */
    uint32_t *occ = malloc(n_rays * sizeof *occ);
    size_t n_occ = 0;
    if (occ && clEnqueueReadBuffer(cl->queue, d_occ[1], CL_TRUE, 0, n_rays * sizeof *occ, occ, 0, NULL, NULL) == CL_SUCCESS)
        for (size_t i = 0; i < n_rays; i++) n_occ += occ[i] != 0;
    printf("shadow rays occluded: %.1f%%\n", 100.0 * n_occ / n_rays);
    free(occ);
    if (emb) {
        size_t agree = 0;
        if (clEnqueueReadBuffer(cl->queue, d_hits[2], CL_TRUE, 0, n_rays * sizeof(mmd_hit), hits, 0, NULL, NULL) ==
                CL_SUCCESS &&
            bench_embree_trace(emb, rays[2], n_rays, 0, nth, eprim, NULL) >= 0.0) {
            for (size_t i = 0; i < n_rays; i++) agree += hits[i].prim == eprim[i];
            printf("same triangle hit as Embree: %.3f%% of bounce-2 rays\n", 100.0 * agree / n_rays);
        }
    }
    for (int k = 0; k < N_SETS; k++) {
        clReleaseMemObject(d_rays[k]), clReleaseMemObject(d_hits[k]);
        free(rays[k]);
        if (k < N_SETS - 1) clReleaseMemObject(d_shadow[k]), clReleaseMemObject(d_occ[k]), free(shadow[k]);
    }
    free(hits), free(eprim);
    mmd_trace_destroy(tr);
    mmd_trace_destroy(tr_sah);
    mmd_bvh_destroy(bvh);
    mmd_bvh_destroy(bvh_sah);
    free(m.v), free(m.idx);
    return 0;
}

/* ---------------------------------------------------------------- AoA forward model */

/* Time per pose of the AoA estimator (issue 3: 200k rays, depth 3, 8x8 URA, 181 x 91
 * bins, 100k-triangle room) and the interaction pipeline's path-vertex rate relative to
 * plain traversal: a vertex costs one closest-hit and one shadow query, so plain
 * traversal alone would process vertices at 1 / (1/R_closest + 1/R_shadow). */
/* MMD_BENCH_ONLY=a,b,... runs only those sections (traversal, aoa, coverage, calib, mlp);
 * unset = all. */
static int bench_wanted(const char *section)
{
    const char *only = getenv("MMD_BENCH_ONLY");
    if (!only || !only[0]) return 1;
    size_t n = strlen(section);
    for (const char *p = only; (p = strstr(p, section)) != NULL; p += n)
        if ((p == only || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) return 1;
    return 0;
}

static int bench_aoa(mmd_cl *cl, double closest_mrays, double shadow_mrays, int reps)
{
    mesh m;
    double sp;
    if (!make_scene(100000, &m, &sp)) return fail("scene generation");
    char dir[] = "/tmp/mmd_bench_XXXXXX";
    if (!mkdtemp(dir)) return fail("mkdtemp");
    char ply[256], exp_path[256];
    snprintf(ply, sizeof ply, "%s/room.ply", dir);
    snprintf(exp_path, sizeof exp_path, "%s/exp.yaml", dir);
    FILE *f = fopen(ply, "wb");
    if (!f) return fail("write room.ply");
    fprintf(f, "ply\nformat binary_little_endian 1.0\nelement vertex %u\nproperty float x\nproperty float y\n"
               "property float z\nelement face %u\nproperty list uchar int vertex_indices\nend_header\n",
            m.nv, m.nt);
    fwrite(m.v, sizeof(float), 3 * (size_t)m.nv, f);
    for (uint32_t t = 0; t < m.nt; t++) {
        unsigned char c3 = 3;
        fwrite(&c3, 1, 1, f);
        fwrite(m.idx + 3 * (size_t)t, sizeof(uint32_t), 3, f);
    }
    fclose(f);
    free(m.v);
    free(m.idx);
    const char *yaml =
        "scene: {file: room.ply, frequency_hz: 60.0e9, materials: {default: {itu: concrete, scattering: 0.3}}}\n"
        "tx: {position_m: [1.3, 4.6, 2.6]}\n"
        "rx:\n  array: {rows: 8, cols: 8, spacing_wavelengths: 0.5, window: hann, element: patch}\n"
        "  poses: [{position_m: [4.0, 3.0, 1.5], yaw_deg: 120}, {position_m: [5.5, 2.0, 1.2], yaw_deg: 150},\n"
        "          {position_m: [3.0, 1.5, 1.7], yaw_deg: 90}, {position_m: [6.0, 4.0, 1.4], yaw_deg: 200}]\n"
        "aoa: {azimuth_deg: [-90, 90, 1], elevation_deg: [-45, 45, 1]}\n"
        "solver: {rays: 200000, max_depth: 3, alpha_r: 50, diffuse: true, polarization: jones, seed: 1}\n";
    f = fopen(exp_path, "w");
    if (!f) return fail("write exp.yaml");
    fputs(yaml, f);
    fclose(f);
    mmd_experiment e;
    mmd_scene *sc = NULL;
    mmd_bvh *bvh = NULL;
    mmd_sim *sim = NULL;
    if (mmd_experiment_load(exp_path, NULL, 0, &e) != MMD_OK) return fail("experiment");
    if (mmd_scene_load(e.scene.file.path, &sc) != MMD_OK) return fail("scene");
    /* as `mmdiff simulate` builds it */
    const mmd_bvh_options bo = {.quality = MMD_BVH_SAH};
    if (mmd_bvh_build(sc->vertices, sc->indices, sc->n_triangles, &bo, &bvh) != MMD_OK) return fail("bvh");
    if (mmd_sim_create(cl, sc, bvh, &e, &sim) != MMD_OK) return fail("simulator");
    printf("\n== AoA: %u-triangle room, %zu poses x %d rays, depth %d, 8x8 URA, %d x %d bins, Jones mode\n",
           sc->n_triangles, e.rx.n_poses, e.solver.rays, e.solver.max_depth, e.aoa.azimuth_deg.count,
           e.aoa.elevation_deg.count);
    double per_pose[16], trace_pp[16], reduce_pp[16];
    for (int r = 0; r < reps; r++) {
        mmd_aoa_result res;
        sim->t_trace = sim->t_reduce = 0;
        double t0 = mmd_now();
        if (mmd_sim_aoa(sim, e.rx.poses, e.rx.n_poses, &res, NULL, NULL) != MMD_OK) return fail("aoa");
        per_pose[r] = (mmd_now() - t0) / (double)e.rx.n_poses;
        trace_pp[r] = sim->t_trace / (double)e.rx.n_poses;
        reduce_pp[r] = sim->t_reduce / (double)e.rx.n_poses;
        mmd_aoa_result_free(&res);
    }
    double pp = median(per_pose, reps), tt = median(trace_pp, reps), tr = median(reduce_pp, reps);
    printf("per pose: %.1f ms (trace %.1f ms, beam sum %.1f ms)\n", 1e3 * pp, 1e3 * tt, 1e3 * tr);
    bench_line("aoa_pose_ms", 1e3 * pp, "ms");
    bench_line("aoa_trace_ms", 1e3 * tt, "ms");
    bench_line("aoa_beam_sum_ms", 1e3 * tr, "ms");
    double vertices_per_s = (double)e.solver.rays * e.solver.max_depth / tt / 1e6;
    double plain = 1.0 / (1.0 / closest_mrays + 1.0 / shadow_mrays);
    printf("path vertices: %.2f M/s in the pipeline; plain traversal (closest + shadow): %.2f M/s\n",
           vertices_per_s, plain);
    bench_line("interaction_vs_traversal", vertices_per_s / plain, "x");
    mmd_sim_destroy(sim);
    mmd_bvh_destroy(bvh);
    mmd_scene_destroy(sc);
    mmd_experiment_free(&e);
    /* the same room for the coverage (issue 4) and calibration (issue 5) figures */
    int rc = 0;
    if (bench_wanted("coverage")) rc |= bench_coverage(cl, dir, ply);
    if (bench_wanted("calib")) rc |= bench_calib(cl, dir, ply);
    remove(ply);
    remove(exp_path);
    rmdir(dir);
    return rc ? fail("coverage / calibration figures") : 0;
}

int main(void)
{
    double t_start = mmd_now();
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    printf("machine: %s, %ld hardware threads (using %d)\n", cpu, cores, mmd_num_threads());
    mmd_cl *cl = NULL;
    if (mmd_cl_create(NULL, &cl) != MMD_OK) return fail("OpenCL");
    printf("OpenCL device: %s (%s, driver %s)\n", cl->info.device_name, cl->info.platform_name,
           cl->info.driver_version);
    bench_embree *emb = bench_embree_available() ? bench_embree_create(mmd_num_threads()) : NULL;
    bench_embree *emb_low = emb ? bench_embree_create(mmd_num_threads()) : NULL;
    printf("reference: %s\n", emb ? "Embree 3 in this process" : "none (Embree 3 not available)");

    const char *env_sizes = getenv("MMD_BENCH_SIZES"), *env_reps = getenv("MMD_BENCH_REPS");
    uint32_t sizes[4] = {100000, 1000000};
    int n_sizes = 2;
    if (env_sizes && env_sizes[0]) {
        n_sizes = 0;
        for (char *p = (char *)env_sizes; *p && n_sizes < 4;) {
            char *end;
            unsigned long v = strtoul(p, &end, 10);
            if (end == p) break;
            sizes[n_sizes++] = (uint32_t)v;
            p = *end ? end + 1 : end;
        }
    }
    int reps = env_reps && env_reps[0] ? atoi(env_reps) : 5;
    if (reps < 1) reps = 1;
    if (reps > 16) reps = 16;
    size_t n_rays = 1000000;

    size_result res[4];
    memset(res, 0, sizeof res);
    for (int i = 0; i < n_sizes; i++) {
        if (!bench_wanted("traversal")) {
            res[i].closest_sah = res[i].shadow_sah = 1.0; /* unknown: ratios below are not meaningful */
            continue;
        }
        if (run_size(cl, emb, emb_low, sizes[i], n_rays, reps, &res[i])) return 1;
        const char *tag = sizes[i] == 100000 ? "100k" : sizes[i] == 1000000 ? "1M" : NULL;
        char tbuf[32], name[96];
        if (!tag) {
            snprintf(tbuf, sizeof tbuf, "%u", sizes[i]);
            tag = tbuf;
        }
        printf("\n");
#define B(fmt, v, unit)                                                                                   \
    do {                                                                                                  \
        snprintf(name, sizeof name, fmt, tag);                                                            \
        bench_line(name, v, unit);                                                                        \
    } while (0)
        B("lbvh_build_%s_mprims", sizes[i] / res[i].build_ours / 1e6, "Mprims/s");
        B("closest_hit_%s_mrays", res[i].closest_ours, "Mrays/s");
        B("shadow_%s_mrays", res[i].shadow_ours, "Mrays/s");
        B("sah_build_%s_mprims", sizes[i] / res[i].build_sah / 1e6, "Mprims/s");
        B("closest_hit_%s_sah_mrays", res[i].closest_sah, "Mrays/s");
        B("shadow_%s_sah_mrays", res[i].shadow_sah, "Mrays/s");
        B("closest_hit_%s_sah_vs_lbvh", res[i].closest_sah / res[i].closest_ours, "x");
        B("shadow_%s_sah_vs_lbvh", res[i].shadow_sah / res[i].shadow_ours, "x");
        if (emb) {
            B("embree_low_build_%s_mprims", sizes[i] / res[i].build_low / 1e6, "Mprims/s");
            B("embree_medium_build_%s_mprims", sizes[i] / res[i].build_med / 1e6, "Mprims/s");
            B("lbvh_build_%s_vs_embree_low", res[i].build_ours / res[i].build_low, "x");
            B("embree_closest_hit_%s_mrays", res[i].closest_embree, "Mrays/s");
            B("embree_shadow_%s_mrays", res[i].shadow_embree, "Mrays/s");
            B("closest_hit_%s_vs_embree", res[i].closest_ours / res[i].closest_embree, "x");
            B("shadow_%s_vs_embree", res[i].shadow_ours / res[i].shadow_embree, "x");
            B("closest_hit_%s_vs_embree_cputime", res[i].closest_cpu_ratio, "x");
            B("shadow_%s_vs_embree_cputime", res[i].shadow_cpu_ratio, "x");
            B("closest_hit_%s_sah_vs_embree", res[i].closest_sah / res[i].closest_embree, "x");
            B("shadow_%s_sah_vs_embree", res[i].shadow_sah / res[i].shadow_embree, "x");
            B("closest_hit_%s_sah_vs_embree_cputime", res[i].closest_sah_cpu_ratio, "x");
            B("shadow_%s_sah_vs_embree_cputime", res[i].shadow_sah_cpu_ratio, "x");
            if (res[i].closest_low_ratio > 0.0) {
                B("closest_hit_%s_vs_embree_lowtree", res[i].closest_low_ratio, "x");
                B("shadow_%s_vs_embree_lowtree", res[i].shadow_low_ratio, "x");
            }
        }
#undef B
    }
    for (int i = 0; i < n_sizes; i++)
        if (sizes[i] == 100000 && (bench_wanted("aoa") || bench_wanted("coverage") || bench_wanted("calib")) &&
            bench_aoa(cl, res[i].closest_sah, res[i].shadow_sah, reps))
            return 1;
    if (bench_wanted("mlp") && bench_mlp(cl)) return fail("MLP figures");
    printf("\nbench total: %.1f s\n", mmd_now() - t_start);
    bench_embree_destroy(emb_low);
    bench_embree_destroy(emb);
    mmd_cl_destroy(cl);
    return 0;
}
