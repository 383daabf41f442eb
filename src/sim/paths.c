/*
 * The exact specular path solver (SPEC 4 "Specular baseline", docs/paths.md): candidate
 * triangle sequences by shooting-and-bouncing from the TX on the device, then per receiver
 * the image method in double precision on the host, with occlusion re-checked by the host
 * BVH traversal and the Jones-correct gain.
 */
#include "mmd_paths.h"
#include "mmd_io.h"
#include "mmd_trace.h"

#include <complex.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define DEG (M_PI / 180.0)

/* Rays per device batch: bounds the host memory of the SBR stage (81 + 8 x max_depth bytes
 * per ray, about 55 MB at depth 3). */
#define SBR_BATCH (1u << 19)
/* Barycentric tolerance of "the point lies in its triangle": relative to the triangle, so
 * a point on a shared edge (rounding ~1e-16) counts for both neighbours (then merged),
 * while a point measurably off the triangle does not. */
#define BARY_TOL 1e-9
/* Distances to a plane below this [m] count as "on the plane" (TX or RX on a surface,
 * points on the wrong side): the path is rejected instead of guessed. */
#define PLANE_TOL 1e-9
/* Candidates below which validation stays on the calling thread. */
#define SOLVE_MIN_PER_THREAD 256

/* ---- small vector helpers (double) ------------------------------------------------- */

static double dot3(const double a[3], const double b[3]) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

static void cross3(const double a[3], const double b[3], double o[3])
{
    double x = a[1] * b[2] - a[2] * b[1], y = a[2] * b[0] - a[0] * b[2], z = a[0] * b[1] - a[1] * b[0];
    o[0] = x, o[1] = y, o[2] = z;
}

static double norm3(const double a[3]) { return sqrt(dot3(a, a)); }

/* ---- host copy of cl/sample.h (hash RNG, Fibonacci sphere, seeded rotation) -------- */

static uint32_t hash_u32(uint32_t x)
{
    uint32_t s = x * 747796405u + 2891336453u;
    uint32_t w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

static uint32_t hash3(uint32_t a, uint32_t b, uint32_t c) { return hash_u32(a ^ hash_u32(b ^ hash_u32(c))); }

static double rnd(uint32_t seed, uint32_t stream, uint32_t index, uint32_t dim)
{
    return (double)(hash3(seed, stream * 0x9E3779B9u + dim, index) >> 8) * (1.0 / 16777216.0);
}

/* Uniform random rotation (Shoemake), row-major; the same uniforms as the kernels. */
static void random_rotation(uint32_t seed, uint32_t stream, double m[9])
{
    double u1 = rnd(seed, stream, 0u, 101u), u2 = rnd(seed, stream, 0u, 102u), u3 = rnd(seed, stream, 0u, 103u);
    double a = sqrt(1.0 - u1), b = sqrt(u1);
    double x = a * sin(2 * M_PI * u2), y = a * cos(2 * M_PI * u2);
    double z = b * sin(2 * M_PI * u3), w = b * cos(2 * M_PI * u3);
    m[0] = 1 - 2 * (y * y + z * z), m[1] = 2 * (x * y - z * w), m[2] = 2 * (x * z + y * w);
    m[3] = 2 * (x * y + z * w), m[4] = 1 - 2 * (x * x + z * z), m[5] = 2 * (y * z - x * w);
    m[6] = 2 * (x * z - y * w), m[7] = 2 * (y * z + x * w), m[8] = 1 - 2 * (x * x + y * y);
}

/* Point i of the n-point Fibonacci sphere (golden-angle azimuth in 32-bit fixed point). */
static void fibonacci_dir(uint32_t i, uint32_t n, double out[3])
{
    double z = 1.0 - (2.0 * i + 1.0) / n;
    double r = sqrt(fmax(0.0, 1.0 - z * z));
    double phi = (double)(uint32_t)(i * 2654435769u) * (2.0 * M_PI / 4294967296.0);
    out[0] = r * cos(phi), out[1] = r * sin(phi), out[2] = z;
}

/* ---- triangles ------------------------------------------------------------------------ */

typedef struct tri_geom {
    double a[3], e1[3], e2[3]; /* vertex 0 and the two edges */
    double n[3], off;          /* unit normal, plane n . x = off */
} tri_geom;

/* 0 for a degenerate (zero-area) triangle, which reflects nothing. */
static int tri_geom_of(const mmd_scene *sc, uint32_t t, tri_geom *g)
{
    const float *v[3];
    for (int k = 0; k < 3; k++) v[k] = sc->vertices + 3 * (size_t)sc->indices[3 * (size_t)t + k];
    for (int k = 0; k < 3; k++) {
        g->a[k] = v[0][k];
        g->e1[k] = (double)v[1][k] - v[0][k];
        g->e2[k] = (double)v[2][k] - v[0][k];
    }
    cross3(g->e1, g->e2, g->n);
    double l = norm3(g->n);
    if (!(l > 0) || !isfinite(l)) return 0;
    for (int k = 0; k < 3; k++) g->n[k] /= l;
    g->off = dot3(g->n, g->a);
    return 1;
}

static int tri_contains(const tri_geom *g, const double p[3])
{
    double w[3] = {p[0] - g->a[0], p[1] - g->a[1], p[2] - g->a[2]};
    double d00 = dot3(g->e1, g->e1), d01 = dot3(g->e1, g->e2), d11 = dot3(g->e2, g->e2);
    double d20 = dot3(w, g->e1), d21 = dot3(w, g->e2);
    double den = d00 * d11 - d01 * d01;
    if (!(den > 0)) return 0;
    double bv = (d11 * d20 - d01 * d21) / den, bw = (d00 * d21 - d01 * d20) / den;
    return bv >= -BARY_TOL && bw >= -BARY_TOL && 1.0 - bv - bw >= -BARY_TOL;
}

/* ---- candidates (SBR) ----------------------------------------------------------------- */

static int row_cmp(const uint32_t *a, const uint32_t *b, int w)
{
    for (int k = 0; k < w; k++)
        if (a[k] != b[k]) return a[k] < b[k] ? -1 : 1;
    return 0;
}

/* Stable bottom-up merge sort of row indices by their rows (width w, stride `stride`). */
static void sort_rows(uint32_t *idx, uint32_t *tmp, size_t n, const uint32_t *rows, size_t stride, int w)
{
    uint32_t *src = idx, *dst = tmp;
    for (size_t run = 1; run < n; run *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * run) {
            size_t mid = lo + run < n ? lo + run : n, hi = lo + 2 * run < n ? lo + 2 * run : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                dst[k++] = row_cmp(rows + src[j] * stride, rows + src[i] * stride, w) < 0 ? src[j++] : src[i++];
            while (i < mid) dst[k++] = src[i++];
            while (j < hi) dst[k++] = src[j++];
        }
        uint32_t *t = src;
        src = dst, dst = t;
    }
    if (src != idx) memcpy(idx, src, n * sizeof *idx);
}

/* Merge the sorted unique d-tuples b[0..nb) into c->seq[d] (sorted unique). */
static mmd_status merge_into(mmd_path_candidates *c, int d, const uint32_t *b, size_t nb)
{
    if (!nb) return MMD_OK;
    size_t na = c->count[d];
    const uint32_t *a = c->seq[d];
    uint32_t *m = mmd_malloc((na + nb) * (size_t)d, sizeof *m, "path candidates");
    if (!m) return MMD_ERR_NOMEM;
    size_t i = 0, j = 0, k = 0;
    while (i < na || j < nb) {
        int cmp = i == na ? 1 : j == nb ? -1 : row_cmp(a + i * d, b + j * d, d);
        const uint32_t *src = cmp <= 0 ? a + i * d : b + j * d;
        memcpy(m + k * d, src, (size_t)d * sizeof *m);
        k++;
        if (cmp <= 0) i++;
        if (cmp >= 0) j++;
    }
    free(c->seq[d]);
    c->seq[d] = m;
    c->count[d] = k;
    return MMD_OK;
}

void mmd_path_candidates_free(mmd_path_candidates *c)
{
    if (!c) return;
    for (int d = 0; d <= MMD_PATH_MAX_DEPTH; d++) free(c->seq[d]);
    memset(c, 0, sizeof *c);
}

/* LSD radix sort of n keys on their low `bits` bits (8-bit digits). */
static void radix_sort_u64(uint64_t *a, uint64_t *tmp, size_t n, int bits)
{
    uint64_t *src = a, *dst = tmp;
    for (int shift = 0; shift < bits; shift += 8) {
        size_t cnt[257] = {0};
        for (size_t i = 0; i < n; i++) cnt[((src[i] >> shift) & 255u) + 1]++;
        for (int k = 0; k < 256; k++) cnt[k + 1] += cnt[k];
        for (size_t i = 0; i < n; i++) dst[cnt[(src[i] >> shift) & 255u]++] = src[i];
        uint64_t *t = src;
        src = dst, dst = t;
    }
    if (src != a) memcpy(a, src, n * sizeof *a);
}

/* Host loops between device launches, split over threads in contiguous chunks (each item
 * writes only its own slots, so the result does not depend on the split). */
typedef void (*range_fn)(void *ctx, size_t lo, size_t hi);
typedef struct range_job {
    range_fn fn;
    void *ctx;
    size_t lo, hi;
} range_job;

static void *range_worker(void *arg)
{
    range_job *j = arg;
    j->fn(j->ctx, j->lo, j->hi);
    return NULL;
}

static void parallel_for(size_t n, range_fn fn, void *ctx)
{
    int nt = mmd_num_threads();
    if ((size_t)nt > n / 4096) nt = (int)(n / 4096);
    if (nt > 64) nt = 64;
    if (nt <= 1) {
        fn(ctx, 0, n);
        return;
    }
    range_job jobs[64];
    pthread_t th[64];
    int started = 0;
    for (int t = 0; t < nt; t++) jobs[t] = (range_job){fn, ctx, n * (size_t)t / nt, n * (size_t)(t + 1) / nt};
    for (; started < nt; started++)
        if (pthread_create(&th[started], NULL, range_worker, &jobs[started]) != 0) break;
    for (int t = started; t < nt; t++) range_worker(&jobs[t]);
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
}

typedef struct sbr_batch {
    const mmd_scene *sc;
    float *normals; /* unit normal per scene triangle (0 for degenerate ones) */
    const double *rot;
    float tx[3];
    uint32_t first, n_rays;
    int D, depth;
    mmd_ray *rays;
    const mmd_hit *hits;
    uint32_t *seq, *len, *act;
    unsigned char *cont; /* per active slot: 1 = rays[j] now holds the reflected ray */
} sbr_batch;

static void sbr_launch(void *ctx, size_t lo, size_t hi)
{
    sbr_batch *b = ctx;
    for (size_t i = lo; i < hi; i++) {
        double f[3], d[3];
        fibonacci_dir(b->first + (uint32_t)i, b->n_rays, f);
        mmd_to_world(b->rot, f, d);
        b->rays[i] = (mmd_ray){b->tx[0], b->tx[1], b->tx[2], 0.0f, (float)d[0], (float)d[1], (float)d[2], INFINITY};
        b->act[i] = (uint32_t)i;
        b->len[i] = 0;
        for (int k = 0; k < b->D; k++) b->seq[i * b->D + k] = UINT32_MAX;
    }
}

/* Record the hits of active slots [lo, hi) and put each reflected ray in its slot. */
static void sbr_bounce(void *ctx, size_t lo, size_t hi)
{
    sbr_batch *b = ctx;
    for (size_t j = lo; j < hi; j++) {
        uint32_t i = b->act[j];
        mmd_hit h = b->hits[j];
        b->cont[j] = 0;
        if (h.prim < 0) continue;
        b->seq[(size_t)i * b->D + b->depth] = (uint32_t)h.prim;
        b->len[i] = (uint32_t)b->depth + 1;
        const float *nf = b->normals + 3 * (size_t)h.prim;
        if (b->depth == b->D - 1 || (nf[0] == 0 && nf[1] == 0 && nf[2] == 0)) continue;
        const mmd_ray *r = &b->rays[j];
        double dd[3] = {r->dx, r->dy, r->dz}, n[3] = {nf[0], nf[1], nf[2]}, kr[3];
        double l = norm3(dd);
        for (int k = 0; k < 3; k++) dd[k] /= l;
        mmd_reflect(dd, n, kr);
        l = norm3(kr);
        float pf[3] = {(float)(r->ox + (double)h.t * r->dx), (float)(r->oy + (double)h.t * r->dy),
                       (float)(r->oz + (double)h.t * r->dz)};
        float df[3] = {(float)(kr[0] / l), (float)(kr[1] / l), (float)(kr[2] / l)}, o[3];
        mmd_offset_origin(pf, nf, df, o);
        b->rays[j] = (mmd_ray){o[0], o[1], o[2], 0.0f, df[0], df[1], df[2], INFINITY};
        b->cont[j] = 1;
    }
}

static void sbr_normals(void *ctx, size_t lo, size_t hi)
{
    sbr_batch *b = ctx;
    float *out = b->normals;
    for (size_t t = lo; t < hi; t++) {
        tri_geom g;
        int ok = tri_geom_of(b->sc, (uint32_t)t, &g);
        for (int k = 0; k < 3; k++) out[3 * t + k] = ok ? (float)g.n[k] : 0.0f;
    }
}

/* The unique depth-d prefixes (d = 1..D) of the batch's sequences, merged into `out`.
 * Sorting the whole sequences once (short ones padded with a value above every triangle
 * id) sorts every depth's prefixes too, so each depth is one linear pass. Sequences that
 * fit in 64 bits (D x bits-per-id; depth 3 up to 2^21 triangles) are packed and radix
 * sorted, others merge sorted as rows. */
static mmd_status sbr_collect(mmd_path_candidates *out, const sbr_batch *b, uint32_t nb, uint32_t n_tris,
                              uint32_t *order, uint32_t *tmp, uint64_t *keys, uint64_t *ktmp, uint32_t *uniq)
{
    int D = b->D, bits = 1;
    while (bits < 32 && ((uint64_t)1 << bits) - 1 < (uint64_t)n_tris) bits++;
    mmd_status st = MMD_OK;
    if (bits * D <= 64) {
        uint64_t pad = ((uint64_t)1 << bits) - 1;
        size_t n = 0;
        for (uint32_t i = 0; i < nb; i++) {
            if (!b->len[i]) continue;
            uint64_t k = 0;
            for (int j = 0; j < D; j++) k = (k << bits) | ((uint32_t)j < b->len[i] ? b->seq[(size_t)i * D + j] : pad);
            keys[n++] = k;
        }
        radix_sort_u64(keys, ktmp, n, bits * D);
        for (int d = 1; d <= D && st == MMD_OK; d++) {
            int shift = bits * (D - d);
            size_t nu = 0;
            uint64_t last = 0;
            for (size_t j = 0; j < n; j++) {
                uint64_t p = keys[j] >> shift;
                if ((p & pad) == pad || (nu && p == last)) continue;
                last = p;
                for (int k = 0; k < d; k++) uniq[nu * d + k] = (uint32_t)((p >> (bits * (d - 1 - k))) & pad);
                nu++;
            }
            st = merge_into(out, d, uniq, nu);
        }
        return st;
    }
    size_t n_hit = 0;
    for (uint32_t i = 0; i < nb; i++)
        if (b->len[i] > 0) order[n_hit++] = i;
    sort_rows(order, tmp, n_hit, b->seq, (size_t)D, D);
    for (int d = 1; d <= D && st == MMD_OK; d++) {
        size_t nu = 0;
        for (size_t j = 0; j < n_hit; j++) {
            const uint32_t *row = b->seq + (size_t)order[j] * D;
            if (b->len[order[j]] < (uint32_t)d) continue;
            if (nu && row_cmp(uniq + (nu - 1) * d, row, d) == 0) continue;
            memcpy(uniq + nu * d, row, (size_t)d * sizeof *uniq);
            nu++;
        }
        st = merge_into(out, d, uniq, nu);
    }
    return st;
}

mmd_status mmd_paths_candidates(mmd_sim *s, mmd_path_candidates *out)
{
    memset(out, 0, sizeof *out);
    double t0 = mmd_now();
    const mmd_experiment *e = s->exp;
    const mmd_scene *sc = s->scene;
    int D = e->solver.max_depth;
    if (D > MMD_PATH_MAX_DEPTH)
        return mmd_error(MMD_ERR_INVALID,
                         "solver.max_depth = %d: the specular path solver supports at most %d reflections", D,
                         MMD_PATH_MAX_DEPTH);
    out->max_depth = D < 0 ? 0 : D;
    for (int k = 0; k < 3; k++) out->tx_pos[k] = e->tx.position_m[k];
    uint32_t n_rays = (uint32_t)e->solver.rays;
    out->n_rays = n_rays;
    if (D <= 0 || sc->n_triangles == 0 || n_rays == 0) {
        out->seconds = mmd_now() - t0;
        return MMD_OK;
    }
    mmd_trace *tr = NULL;
    mmd_status st = mmd_trace_create(s->cl, s->bvh, &tr);
    if (st != MMD_OK) return st;
    size_t B = n_rays < SBR_BATCH ? n_rays : SBR_BATCH;
    /* Stream 0 of the seed: the AoA kernel's per-pose rotations use odd streams. */
    double rot[9];
    uint64_t seed64 = (uint64_t)e->solver.seed;
    uint32_t seed = (uint32_t)(seed64 & 0xffffffffu) ^ hash_u32((uint32_t)(seed64 >> 32));
    random_rotation(seed, 0u, rot);
    sbr_batch b;
    memset(&b, 0, sizeof b);
    b.sc = sc;
    b.rot = rot;
    b.n_rays = n_rays;
    b.D = D;
    for (int k = 0; k < 3; k++) b.tx[k] = (float)e->tx.position_m[k];
    float *normals = mmd_malloc(sc->n_triangles, 3 * sizeof(float), "triangle normals");
    b.normals = normals;
    b.rays = mmd_malloc(B, sizeof *b.rays, "SBR rays");
    mmd_hit *hits = mmd_malloc(B, sizeof *hits, "SBR hits");
    b.hits = hits;
    b.seq = mmd_malloc(B * (size_t)D, sizeof *b.seq, "SBR sequences");
    b.len = mmd_malloc(B, sizeof *b.len, "SBR sequences");
    b.act = mmd_malloc(B, sizeof *b.act, "SBR rays");
    b.cont = mmd_malloc(B, 1, "SBR rays");
    uint32_t *order = mmd_malloc(B, sizeof *order, "SBR sort");
    uint32_t *tmp = mmd_malloc(B, sizeof *tmp, "SBR sort");
    uint64_t *keys = mmd_malloc(B, sizeof *keys, "SBR sort");
    uint64_t *ktmp = mmd_malloc(B, sizeof *ktmp, "SBR sort");
    uint32_t *uniq = mmd_malloc(B * (size_t)D, sizeof *uniq, "SBR sequences");
    if (!normals || !b.rays || !hits || !b.seq || !b.len || !b.act || !b.cont || !order || !tmp || !keys || !ktmp ||
        !uniq)
        st = MMD_ERR_NOMEM;
    if (st == MMD_OK) parallel_for(sc->n_triangles, sbr_normals, &b);
    for (uint32_t first = 0; st == MMD_OK && first < n_rays; first += (uint32_t)B) {
        uint32_t nb = n_rays - first < B ? n_rays - first : (uint32_t)B;
        b.first = first;
        parallel_for(nb, sbr_launch, &b);
        size_t n_act = nb;
        for (int depth = 0; depth < D && n_act > 0 && st == MMD_OK; depth++) {
            st = mmd_trace_closest(tr, b.rays, n_act, hits);
            if (st != MMD_OK) break;
            b.depth = depth;
            parallel_for(n_act, sbr_bounce, &b);
            size_t n_next = 0; /* compact the continuing rays (in order: deterministic) */
            for (size_t j = 0; j < n_act; j++) {
                if (!b.cont[j]) continue;
                b.rays[n_next] = b.rays[j];
                b.act[n_next] = b.act[j];
                n_next++;
            }
            n_act = n_next;
        }
        if (st == MMD_OK) st = sbr_collect(out, &b, nb, sc->n_triangles, order, tmp, keys, ktmp, uniq);
    }
    free(normals);
    free(b.rays);
    free(hits);
    free(b.seq);
    free(b.len);
    free(b.act);
    free(b.cont);
    free(order);
    free(tmp);
    free(keys);
    free(ktmp);
    free(uniq);
    mmd_trace_destroy(tr);
    if (st != MMD_OK) {
        mmd_path_candidates_free(out);
        return st;
    }
    out->seconds = mmd_now() - t0;
    size_t total = 0;
    for (int d = 1; d <= D; d++) total += out->count[d];
    mmd_debug("specular candidates: %u rays, %zu sequences up to depth %d, %.3f s\n", n_rays, total, D, out->seconds);
    return MMD_OK;
}

/* ---- validation (image method) -------------------------------------------------------- */

typedef struct solve_ctx {
    mmd_sim *s;
    double tx[3], rx[3], R[9];
    int jones;
} solve_ctx;

/* Theta-hat (vertical polarisation) of local direction u, in the world frame of R (the
 * convention of the AoA model's iso element; the same few lines as in aoa.c). */
static void theta_hat_world(const double R[9], const double u[3], double out[3])
{
    double th[3], rho = hypot(u[0], u[1]);
    th[0] = rho > 1e-12 ? u[2] * u[0] / rho : (u[2] > 0 ? 1 : -1);
    th[1] = rho > 1e-12 ? u[2] * u[1] / rho : 0;
    th[2] = -rho;
    mmd_to_world(R, th, out);
}

/* All three vertices of triangle t within tol of plane g (the same surface as g). */
static int on_plane(const mmd_scene *sc, uint32_t t, const tri_geom *g, double tol)
{
    for (int k = 0; k < 3; k++) {
        const float *v = sc->vertices + 3 * (size_t)sc->indices[3 * (size_t)t + k];
        double p[3] = {v[0], v[1], v[2]};
        if (!(fabs(dot3(g->n, p) - g->off) <= tol)) return 0;
    }
    return 1;
}

/* Is the segment a -> b blocked? The ends lie on the planes of the reflecting triangles
 * (ga / gb, NULL at the TX and RX), which must not count, nor their coplanar neighbours:
 * the query interval is trimmed by eps (the simulator's origin offset scale) beyond where
 * the rounded float ray crosses those planes, and by eps at a bare end. At grazing
 * incidence the float triangle test's t can still land outside that margin (its error
 * grows like 1 / sin(grazing angle)), so a blocking hit is confirmed by walking the
 * closest hits and skipping triangles that lie in either end's plane. */
static int occluded(const mmd_scene *sc, const mmd_bvh *bvh, const double a[3], const double b[3], const tri_geom *ga,
                    const tri_geom *gb)
{
    double v[3] = {b[0] - a[0], b[1] - a[1], b[2] - a[2]};
    double L = norm3(v);
    double m = 0;
    for (int k = 0; k < 3; k++) m = fmax(m, fmax(fabs(a[k]), fabs(b[k])));
    double eps = MMD_SIM_EPS_SCALE * (1.0 + m);
    mmd_ray r = {(float)a[0],       (float)a[1],       (float)a[2],       0.0f,
                 (float)(v[0] / L), (float)(v[1] / L), (float)(v[2] / L), 0.0f};
    double o[3] = {r.ox, r.oy, r.oz}, d[3] = {r.dx, r.dy, r.dz};
    double tmin = eps, tmax = L - eps;
    if (ga) {
        double den = dot3(ga->n, d);
        if (den != 0.0) tmin = fmax(tmin, (ga->off - dot3(ga->n, o)) / den + eps);
    }
    if (gb) {
        double den = dot3(gb->n, d);
        if (den != 0.0) tmax = fmin(tmax, (gb->off - dot3(gb->n, o)) / den - eps);
    }
    if (!(tmin < tmax)) return 0; /* too short to hold anything we can resolve */
    r.tmin = (float)tmin;
    r.tmax = (float)tmax;
    if (!mmd_bvh_any_ref(bvh, &r)) return 0;
    if (!ga && !gb) return 1;
    for (int it = 0; it < 256; it++) {
        mmd_hit h = mmd_bvh_closest_ref(bvh, &r);
        if (h.prim < 0) return 0;
        if (!((ga && on_plane(sc, (uint32_t)h.prim, ga, eps)) || (gb && on_plane(sc, (uint32_t)h.prim, gb, eps))))
            return 1;
        r.tmin = nextafterf(h.t, INFINITY);
        if (!(r.tmin <= r.tmax)) return 0;
    }
    return 1; /* hundreds of coplanar hits along one segment: give up, call it blocked */
}

/* Gain of a solved path with materials `mats` (per object): free space x TX pattern x the
 * reflections (SPEC 3), Jones or scalar. Geometry only from the path and the scene, so
 * calibration re-evaluates it for new materials without re-validating. */
double mmd_path_gain(const mmd_sim *s, const mmd_path *p, const double tx[3], const double rx_rot[9],
                     const mmd_material *mats)
{
    const mmd_scene *sc = s->scene;
    int d = p->depth, jones = s->exp->solver.polarization == MMD_CFG_POL_JONES;
    double txl[3], I3[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    if (!rx_rot) rx_rot = I3;
    mmd_to_local(s->tx_rot, p->dir_departure, txl);
    double pol = 1.0;
    double complex E[3];
    double w[3];
    theta_hat_world(s->tx_rot, txl, w);
    for (int k = 0; k < 3; k++) E[k] = w[k];
    for (int i = 0; i < d; i++) {
        const double *a = i ? p->vertices[i - 1] : tx;
        tri_geom g;
        if (!tri_geom_of(sc, p->prims[i], &g)) return 0.0;
        double kin[3] = {p->vertices[i][0] - a[0], p->vertices[i][1] - a[1], p->vertices[i][2] - a[2]};
        double l = norm3(kin);
        for (int k = 0; k < 3; k++) kin[k] /= l;
        const mmd_material *m = &mats[p->objects[i]];
        double c = fabs(dot3(kin, g.n));
        double complex R[2], T[2];
        mmd_material_fresnel(m, s->freq_hz, c > 1.0 ? 1.0 : c, R, T);
        double keep = 1.0 - m->scattering * m->scattering;
        if (jones) {
            /* diag(R_TE, R_TM) in the TE/TM basis of this incidence; the TM vector turns
             * with the wave (e_te x k_r) */
            double ete[3], etm[3], kr[3], etm_r[3];
            mmd_te_tm_basis(kin, g.n, ete, etm);
            mmd_reflect(kin, g.n, kr);
            cross3(ete, kr, etm_r);
            double complex pte = 0, ptm = 0;
            for (int k = 0; k < 3; k++) pte += ete[k] * E[k], ptm += etm[k] * E[k];
            double sk = sqrt(keep);
            for (int k = 0; k < 3; k++) E[k] = sk * (R[0] * pte * ete[k] + R[1] * ptm * etm_r[k]);
        } else {
            double r0 = cabs(R[0]), r1 = cabs(R[1]);
            pol *= 0.5 * (r0 * r0 + r1 * r1) * keep;
        }
    }
    if (jones) {
        theta_hat_world(rx_rot, p->arrival_local, w);
        double complex amp = 0;
        for (int k = 0; k < 3; k++) amp += w[k] * E[k];
        pol = creal(amp * conj(amp));
    }
    return mmd_free_space_gain(s->wavelength, p->length_m) * mmd_antenna_gain(&s->tx_ant, txl) * pol;
}

/* 1 and *p filled when the triangle sequence seq[0..d) carries a valid specular path. */
static int validate(const solve_ctx *x, const uint32_t *seq, int d, mmd_path *p)
{
    const mmd_sim *s = x->s;
    const mmd_scene *sc = s->scene;
    tri_geom g[MMD_PATH_MAX_DEPTH];
    double img[MMD_PATH_MAX_DEPTH + 1][3], P[MMD_PATH_MAX_DEPTH][3];
    for (int i = 0; i < d; i++)
        if (!tri_geom_of(sc, seq[i], &g[i])) return 0;
    /* the TX mirrored successively across the planes */
    memcpy(img[0], x->tx, sizeof img[0]);
    for (int i = 0; i < d; i++) {
        double h = dot3(g[i].n, img[i]) - g[i].off;
        for (int k = 0; k < 3; k++) img[i + 1][k] = img[i][k] - 2.0 * h * g[i].n[k];
    }
    /* back from the RX: the line to the image i+1 crosses plane i at the reflection point */
    double q[3];
    memcpy(q, x->rx, sizeof q);
    for (int i = d - 1; i >= 0; i--) {
        double dq = dot3(g[i].n, q) - g[i].off, di = dot3(g[i].n, img[i + 1]) - g[i].off;
        if (!((dq > PLANE_TOL && di < -PLANE_TOL) || (dq < -PLANE_TOL && di > PLANE_TOL))) return 0;
        double t = dq / (dq - di);
        for (int k = 0; k < 3; k++) P[i][k] = q[k] + t * (img[i + 1][k] - q[k]);
        if (!tri_contains(&g[i], P[i])) return 0;
        memcpy(q, P[i], sizeof q);
    }
    /* each reflection: the points before and after on the same side of its plane */
    for (int i = 0; i < d; i++) {
        const double *prev = i ? P[i - 1] : x->tx, *next = i + 1 < d ? P[i + 1] : x->rx;
        double hp = dot3(g[i].n, prev) - g[i].off, hn = dot3(g[i].n, next) - g[i].off;
        if (!((hp > PLANE_TOL && hn > PLANE_TOL) || (hp < -PLANE_TOL && hn < -PLANE_TOL))) return 0;
    }
    /* occlusion, segment by segment from the TX */
    for (int i = 0; i <= d; i++) {
        const double *a = i ? P[i - 1] : x->tx, *b = i < d ? P[i] : x->rx;
        if (occluded(sc, s->bvh, a, b, i ? &g[i - 1] : NULL, i < d ? &g[i] : NULL)) return 0;
    }

    memset(p, 0, sizeof *p);
    p->depth = d;
    double L = 0;
    for (int i = 0; i <= d; i++) {
        const double *a = i ? P[i - 1] : x->tx, *b = i < d ? P[i] : x->rx;
        double v[3] = {b[0] - a[0], b[1] - a[1], b[2] - a[2]};
        L += norm3(v);
    }
    p->length_m = L;
    p->delay_s = L / MMD_SPEED_OF_LIGHT;
    for (int k = 0; k < 3; k++) {
        p->dir_departure[k] = P[0][k] - x->tx[k];
        p->dir_arrival[k] = P[d - 1][k] - x->rx[k];
    }
    double ld = norm3(p->dir_departure), la = norm3(p->dir_arrival);
    if (!(ld > 0) || !(la > 0)) return 0;
    for (int k = 0; k < 3; k++) p->dir_departure[k] /= ld, p->dir_arrival[k] /= la;
    for (int i = 0; i < d; i++) {
        memcpy(p->vertices[i], P[i], sizeof P[i]);
        p->prims[i] = seq[i];
        p->objects[i] = sc->tri_object[seq[i]];
    }
    double txl[3], az, el;
    mmd_to_local(s->tx_rot, p->dir_departure, txl);
    mmd_dir_to_az_el(txl, &az, &el);
    p->departure_az_deg = az / DEG;
    p->departure_el_deg = el / DEG;
    mmd_to_local(x->R, p->dir_arrival, p->arrival_local);
    mmd_dir_to_az_el(p->arrival_local, &az, &el);
    p->arrival_az_deg = az / DEG;
    p->arrival_el_deg = el / DEG;

    p->gain = mmd_path_gain(s, p, x->tx, x->R, s->materials);
    return 1;
}

/* Candidates [g0, g1) of the depth-major concatenation, validated in order. */
typedef struct solve_job {
    const solve_ctx *x;
    const mmd_path_candidates *c;
    size_t g0, g1;
    mmd_path *out;
    size_t n, cap;
    int failed;
} solve_job;

static void *solve_worker(void *arg)
{
    solve_job *j = arg;
    size_t base = 0;
    for (int d = 1; d <= j->c->max_depth && base < j->g1; d++) {
        size_t n = j->c->count[d];
        size_t lo = j->g0 > base ? j->g0 : base, hi = j->g1 < base + n ? j->g1 : base + n;
        for (size_t g = lo; g < hi; g++) {
            mmd_path p;
            if (!validate(j->x, j->c->seq[d] + (g - base) * d, d, &p)) continue;
            if (j->n == j->cap) {
                size_t cap = j->cap ? 2 * j->cap : 16;
                mmd_path *np = realloc(j->out, cap * sizeof *np);
                if (!np) {
                    j->failed = 1;
                    return NULL;
                }
                j->out = np, j->cap = cap;
            }
            j->out[j->n++] = p;
        }
        base += n;
    }
    return NULL;
}

static int same_path(const mmd_path *a, const mmd_path *b)
{
    if (a->depth != b->depth) return 0;
    for (int i = 0; i < a->depth; i++) {
        double v[3] = {a->vertices[i][0] - b->vertices[i][0], a->vertices[i][1] - b->vertices[i][1],
                       a->vertices[i][2] - b->vertices[i][2]};
        if (!(norm3(v) <= MMD_PATH_DEDUP_M)) return 0;
    }
    return 1;
}

/* For the dedup sweep: by depth, then the first vertex's x, then candidate order. */
typedef struct xkey {
    int depth;
    double x;
    size_t i;
} xkey;

static int cmp_xkey(const void *pa, const void *pb)
{
    const xkey *a = pa, *b = pb;
    if (a->depth != b->depth) return a->depth < b->depth ? -1 : 1;
    if (a->x != b->x) return a->x < b->x ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

/* Output order: depth, gain descending, triangle sequence. */
static int cmp_output(const void *pa, const void *pb)
{
    const mmd_path *a = pa, *b = pb;
    if (a->depth != b->depth) return a->depth < b->depth ? -1 : 1;
    if (a->gain != b->gain) return a->gain > b->gain ? -1 : 1;
    return row_cmp(a->prims, b->prims, a->depth);
}

/* Merge validated paths that are one physical path, keeping the lexicographically smallest
 * triangle sequence: `p` arrives in candidate order (depth, then sequence), so a sweep in
 * that order keeps the first of every group. Neighbours are found through a sort by the
 * first vertex's x, so this stays O(n log n) for well-separated paths. */
static mmd_status dedup(mmd_path *p, size_t *n)
{
    size_t np = *n;
    if (np < 2) return MMD_OK;
    xkey *byx = mmd_malloc(np, sizeof *byx, "path dedup");
    size_t *rank = mmd_malloc(np, sizeof *rank, "path dedup");
    unsigned char *drop = mmd_calloc(np, 1, "path dedup");
    if (!byx || !rank || !drop) {
        free(byx), free(rank), free(drop);
        return MMD_ERR_NOMEM;
    }
    for (size_t i = 0; i < np; i++) byx[i] = (xkey){p[i].depth, p[i].vertices[0][0], i};
    qsort(byx, np, sizeof *byx, cmp_xkey);
    for (size_t r = 0; r < np; r++) rank[byx[r].i] = r;
    for (size_t i = 0; i < np; i++) {
        if (drop[i]) continue;
        for (int dir = -1; dir <= 1; dir += 2) {
            for (size_t r = rank[i];;) {
                if (dir < 0 ? r == 0 : r + 1 >= np) break;
                r = dir < 0 ? r - 1 : r + 1;
                const xkey *q = &byx[r];
                if (q->depth != p[i].depth || fabs(q->x - p[i].vertices[0][0]) > MMD_PATH_DEDUP_M) break;
                if (q->i > i && !drop[q->i] && same_path(&p[i], &p[q->i])) drop[q->i] = 1;
            }
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < np; i++)
        if (!drop[i]) p[k++] = p[i];
    *n = k;
    free(byx);
    free(rank);
    free(drop);
    return MMD_OK;
}

mmd_status mmd_paths_solve(mmd_sim *s, const mmd_path_candidates *c, const double rx_pos[3], const double rx_rot[9],
                           mmd_path **paths, size_t *n_paths)
{
    *paths = NULL;
    *n_paths = 0;
    solve_ctx x;
    memset(&x, 0, sizeof x);
    x.s = s;
    for (int k = 0; k < 3; k++) x.tx[k] = c->tx_pos[k], x.rx[k] = rx_pos[k];
    if (rx_rot)
        memcpy(x.R, rx_rot, sizeof x.R);
    else
        mmd_rotation_ypr(0, 0, 0, x.R);
    x.jones = s->exp->solver.polarization == MMD_CFG_POL_JONES;
    for (int k = 0; k < 3; k++)
        if (!isfinite(rx_pos[k])) return mmd_error(MMD_ERR_INVALID, "specular paths: receiver position is not finite");
    if (c->max_depth > MMD_PATH_MAX_DEPTH) return mmd_error(MMD_ERR_INVALID, "specular paths: bad candidate set");
    size_t total = 0;
    for (int d = 1; d <= c->max_depth; d++) total += c->count[d];
    if (!total) return MMD_OK;

    int nt = mmd_num_threads();
    if ((size_t)nt > total / SOLVE_MIN_PER_THREAD) nt = (int)(total / SOLVE_MIN_PER_THREAD);
    if (nt < 1) nt = 1;
    if (nt > 64) nt = 64;
    solve_job jobs[64];
    pthread_t th[64];
    memset(jobs, 0, sizeof jobs);
    for (int t = 0; t < nt; t++) {
        jobs[t].x = &x;
        jobs[t].c = c;
        jobs[t].g0 = total * (size_t)t / nt;
        jobs[t].g1 = total * (size_t)(t + 1) / nt;
    }
    int started = 0;
    if (nt > 1)
        for (; started < nt; started++)
            if (pthread_create(&th[started], NULL, solve_worker, &jobs[started]) != 0) break;
    for (int t = started; t < nt; t++) solve_worker(&jobs[t]);
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);

    /* concatenate in thread order = candidate order */
    size_t n = 0;
    int failed = 0;
    for (int t = 0; t < nt; t++) n += jobs[t].n, failed |= jobs[t].failed;
    mmd_path *all = failed || !n ? NULL : mmd_malloc(n, sizeof *all, "specular paths");
    mmd_status st = MMD_OK;
    if (failed || (n && !all)) st = mmd_error(MMD_ERR_NOMEM, "out of memory collecting specular paths");
    if (st == MMD_OK) {
        size_t k = 0;
        for (int t = 0; t < nt; t++) {
            if (jobs[t].n) memcpy(all + k, jobs[t].out, jobs[t].n * sizeof *all);
            k += jobs[t].n;
        }
    }
    for (int t = 0; t < nt; t++) free(jobs[t].out);
    if (st == MMD_OK) st = dedup(all, &n);
    if (st != MMD_OK) {
        free(all);
        return st;
    }
    if (n) qsort(all, n, sizeof *all, cmp_output);
    *paths = all;
    *n_paths = n;
    return MMD_OK;
}

mmd_status mmd_paths_solve_pose(mmd_sim *s, const mmd_path_candidates *c, const mmd_cfg_pose *pose, mmd_path **paths,
                                size_t *n_paths)
{
    double R[9];
    mmd_rotation_ypr(pose->yaw_deg * DEG, pose->pitch_deg * DEG, pose->roll_deg * DEG, R);
    return mmd_paths_solve(s, c, pose->position_m, R, paths, n_paths);
}

/* ---- paths.csv ------------------------------------------------------------------------ */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int failed;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t len)
{
    if (b->failed) return;
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + len + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->failed = 1;
            return;
        }
        b->p = np, b->cap = cap;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_double(sbuf *b, double v)
{
    char t[40];
    int l = mmd_fmt_double(t, v);
    sb_put(b, ",", 1);
    sb_put(b, t, (size_t)l);
}

static void sb_uint(sbuf *b, unsigned long long v, int comma)
{
    char t[32];
    int l = snprintf(t, sizeof t, comma ? ",%llu" : "%llu", v);
    sb_put(b, t, (size_t)l);
}

mmd_status mmd_paths_write_csv(const char *path, const mmd_path *const *paths, const size_t *n_paths, size_t n_poses,
                               int max_depth)
{
    if (max_depth <= 0) {
        max_depth = 1;
        for (size_t k = 0; k < n_poses; k++)
            for (size_t i = 0; i < n_paths[k]; i++)
                if (paths[k][i].depth > max_depth) max_depth = paths[k][i].depth;
    }
    if (max_depth > MMD_PATH_MAX_DEPTH) max_depth = MMD_PATH_MAX_DEPTH;
    sbuf b = {0};
    sb_str(&b, "pose,depth,length_m,delay_s,gain_db,arrival_az_deg,arrival_el_deg,departure_az_deg,departure_el_deg");
    for (int v = 1; v <= max_depth; v++) {
        char t[128];
        snprintf(t, sizeof t, ",v%d_x_m,v%d_y_m,v%d_z_m,v%d_object,v%d_prim", v, v, v, v, v);
        sb_str(&b, t);
    }
    sb_str(&b, "\n");
    for (size_t k = 0; k < n_poses; k++) {
        for (size_t i = 0; i < n_paths[k]; i++) {
            const mmd_path *p = &paths[k][i];
            if (p->depth > max_depth) {
                free(b.p);
                return mmd_error(MMD_ERR_INVALID, "%s: pose %zu has a path of depth %d, more than the %d columns",
                                 path, k, p->depth, max_depth);
            }
            sb_uint(&b, k, 0);
            sb_uint(&b, (unsigned long long)p->depth, 1);
            sb_double(&b, p->length_m);
            sb_double(&b, p->delay_s);
            sb_double(&b, mmd_db(p->gain));
            sb_double(&b, p->arrival_az_deg);
            sb_double(&b, p->arrival_el_deg);
            sb_double(&b, p->departure_az_deg);
            sb_double(&b, p->departure_el_deg);
            for (int v = 0; v < max_depth; v++) {
                if (v < p->depth) {
                    for (int c = 0; c < 3; c++) sb_double(&b, p->vertices[v][c]);
                    sb_uint(&b, p->objects[v], 1);
                    sb_uint(&b, p->prims[v], 1);
                } else {
                    sb_str(&b, ",,,,,");
                }
            }
            sb_str(&b, "\n");
        }
    }
    if (b.failed) {
        free(b.p);
        return mmd_error(MMD_ERR_NOMEM, "%s: out of memory formatting the paths", path);
    }
    mmd_status st = mmd_write_file_atomic(path, b.p, b.n);
    free(b.p);
    return st;
}
