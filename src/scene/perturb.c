/* Reconstructed-scan simulation (mmd_scene_perturb, docs/perturb.md): subdivision,
 * decimation, holes and vertex noise applied to a clean triangle soup.
 *
 * Everything runs on one thread and draws from PCG32 streams seeded by params.seed, so the
 * output is a pure function of (input, params); no stage compares floats to decide
 * topology: shared edges are recognised by their vertex indices only. */
#include "mmd_config.h"
#include "mmd_scene.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CTX "mmd_scene_perturb"

/* RNG streams, one per random stage, so that e.g. changing hole_fraction does not change
 * which vertex gets which displacement. */
enum { STREAM_HOLES = 0x686f6c65, STREAM_NOISE = 0x6e6f6973 };

/* The working mesh every stage consumes and replaces. */
typedef struct work {
    float *v;            /* 3 * nv */
    uint32_t nv, nt;
    uint32_t *idx;       /* 3 * nt */
    uint32_t *mat, *obj; /* nt */
} work;

static void work_free(work *w)
{
    free(w->v);
    free(w->idx);
    free(w->mat);
    free(w->obj);
    memset(w, 0, sizeof *w);
}

/* Allocate a mesh of nv vertices and nt triangles (contents undefined). */
static mmd_status work_alloc(work *w, uint64_t nv, uint64_t nt)
{
    memset(w, 0, sizeof *w);
    if (nv >= UINT32_MAX || nt >= UINT32_MAX)
        return mmd_error(MMD_ERR_NOMEM, CTX ": result would have %" PRIu64 " vertices and %" PRIu64
                         " triangles (at most 2^32-2 each)", nv, nt);
    w->nv = (uint32_t)nv;
    w->nt = (uint32_t)nt;
    w->v = mmd_malloc(3 * (size_t)(nv ? nv : 1), sizeof(float), "perturbed vertices");
    w->idx = mmd_malloc(3 * (size_t)(nt ? nt : 1), sizeof(uint32_t), "perturbed triangles");
    w->mat = mmd_malloc(nt ? nt : 1, sizeof(uint32_t), "perturbed triangle materials");
    w->obj = mmd_malloc(nt ? nt : 1, sizeof(uint32_t), "perturbed triangle objects");
    if (!w->v || !w->idx || !w->mat || !w->obj) {
        work_free(w);
        return MMD_ERR_NOMEM;
    }
    return MMD_OK;
}

static double dist3(const float *a, const float *b)
{
    double dx = (double)a[0] - b[0], dy = (double)a[1] - b[1], dz = (double)a[2] - b[2];
    return sqrt(dx * dx + dy * dy + dz * dz);
}

static double tri_area(const work *w, uint32_t t)
{
    const uint32_t *i = w->idx + 3 * (size_t)t;
    const float *a = w->v + 3 * (size_t)i[0], *b = w->v + 3 * (size_t)i[1], *c = w->v + 3 * (size_t)i[2];
    double u[3], v[3];
    for (int k = 0; k < 3; k++) {
        u[k] = (double)b[k] - a[k];
        v[k] = (double)c[k] - a[k];
    }
    double x = u[1] * v[2] - u[2] * v[1], y = u[2] * v[0] - u[0] * v[2], z = u[0] * v[1] - u[1] * v[0];
    return 0.5 * sqrt(x * x + y * y + z * z);
}

static int tri_degenerate(const uint32_t *i) { return i[0] == i[1] || i[1] == i[2] || i[2] == i[0]; }

static double total_area(const work *w)
{
    double a = 0;
    for (uint32_t t = 0; t < w->nt; t++) a += tri_area(w, t);
    return a;
}

/* Error for a result over the triangle limit, with the smallest subdivide_m that fits
 * (triangle counts scale as 1 / subdivide_m^2). */
static mmd_status too_many(uint64_t need, double subdivide_m)
{
    if (subdivide_m > 0)
        return mmd_error(MMD_ERR_NOMEM,
                         CTX ": subdivide_m = %g m would need %" PRIu64 " triangles (limit %u); use "
                         "subdivide_m >= %.3g m",
                         subdivide_m, need, MMD_PERTURB_MAX_TRIANGLES,
                         1.05 * subdivide_m * sqrt((double)need / MMD_PERTURB_MAX_TRIANGLES));
    return mmd_error(MMD_ERR_NOMEM, CTX ": result would need %" PRIu64 " triangles (limit %u)", need,
                     MMD_PERTURB_MAX_TRIANGLES);
}

/* ---------------------------------------------------------------------------------- */
/* Parameters                                                                          */

static mmd_status check_range(const char *field, double v, double lo, double hi, int lo_open,
                              const char *unit, const char *extra)
{
    int ok = isfinite(v) && (lo_open ? v > lo : v >= lo) && v <= hi;
    if (ok) return MMD_OK;
    return mmd_error(MMD_ERR_INVALID, CTX ": %s: expected a number in %c%g, %g]%s%s%s, got %g", field,
                     lo_open ? '(' : '[', lo, hi, unit[0] ? " " : "", unit, extra, v);
}

mmd_status mmd_perturb_validate(const mmd_perturb_params *p)
{
    if (!p) return mmd_error(MMD_ERR_INVALID, CTX ": params are NULL");
    mmd_status st;
    if ((st = check_range("subdivide_m", p->subdivide_m, 0, 1e4, 0, "m", " (0 = no subdivision)"))) return st;
    if ((st = check_range("sigma_m", p->sigma_m, 0, 10, 0, "m", ""))) return st;
    if ((st = check_range("hole_fraction", p->hole_fraction, 0, 0.9, 0, "", ""))) return st;
    if ((st = check_range("hole_radius_m", p->hole_radius_m, 0, 100, 0, "m", ""))) return st;
    if (p->hole_fraction > 0 && !(p->hole_radius_m > 0))
        return mmd_error(MMD_ERR_INVALID, CTX ": hole_radius_m: expected a number in (0, 100] m when "
                         "hole_fraction > 0, got %g", p->hole_radius_m);
    if ((st = check_range("decimate", p->decimate, 0, 0.9, 0, "", " (fraction of triangles removed)")))
        return st;
    return MMD_OK;
}

mmd_status mmd_perturb_from_cfg(const struct mmd_cfg_noise *n, mmd_perturb_params *p)
{
    if (!n || !p) return mmd_error(MMD_ERR_INVALID, "mmd_perturb_from_cfg: NULL argument");
    memset(p, 0, sizeof *p);
    if (!n->enabled) return MMD_OK;
    p->subdivide_m = n->has_subdivide ? n->subdivide_m : 0.0;
    p->sigma_m = n->sigma_m;
    p->hole_fraction = n->hole_fraction;
    p->hole_radius_m = n->hole_radius_m;
    p->decimate = n->decimate; /* fraction removed, as on the command line */
    p->seed = (uint64_t)n->seed;
    if (!(p->hole_fraction >= 0 && p->hole_fraction <= 0.9))
        return mmd_error(MMD_ERR_INVALID, "scene.noise.hole_fraction: expected a number in [0, 0.9], got %g",
                         n->hole_fraction);
    if (!(p->decimate >= 0 && p->decimate <= 0.9))
        return mmd_error(MMD_ERR_INVALID, "scene.noise.decimate: expected a fraction removed in [0, 0.9], got %g",
                         n->decimate);
    mmd_status st = mmd_perturb_validate(p);
    if (st) {
        char inner[1024];
        snprintf(inner, sizeof inner, "%s", mmd_last_error());
        mmd_error(st, "scene.noise: %s", inner);
    }
    return st;
}

/* ---------------------------------------------------------------------------------- */
/* Subdivision                                                                         */

typedef struct edge_ref {
    uint64_t key; /* lo << 32 | hi, lo < hi: the edge's identity */
    uint64_t slot; /* 3 * triangle + corner of the edge's first vertex */
} edge_ref;

static int cmp_edge_ref(const void *a, const void *b)
{
    const edge_ref *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return (x->slot > y->slot) - (x->slot < y->slot);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t edge_key(uint32_t a, uint32_t b)
{
    return a < b ? (uint64_t)a << 32 | b : (uint64_t)b << 32 | a;
}

/* Length of an edge computed from its canonical (lo, hi) order, so every triangle using the
 * edge gets the same bits. */
static double edge_len(const float *v, uint64_t key)
{
    return dist3(v + 3 * (size_t)(key >> 32), v + 3 * (size_t)(key & 0xffffffffu));
}

/* One input triangle being tessellated. Corner e runs to corner e+1 along side e. */
typedef struct tess {
    uint32_t c[3];     /* corner vertex indices */
    uint32_t ebase[3]; /* first interior point of each side's edge (in lo -> hi order) */
    uint32_t ne[3];    /* segments per side */
    uint32_t m;        /* the triangle's own level: ceil(longest / target) */
    uint32_t ibase;    /* first interior point of this triangle */
} tess;

/* Point s (0..ne) along side e from corner e. */
static uint32_t side_pt(const tess *t, int e, uint32_t s)
{
    uint32_t a = t->c[e], b = t->c[(e + 1) % 3], n = t->ne[e];
    if (s == 0) return a;
    if (s == n) return b;
    return a < b ? t->ebase[e] + s - 1 : t->ebase[e] + (n - s) - 1;
}

/* Interior grid point with weights (m - a - b, a, b) / m on the corners, all >= 1. */
static uint32_t inner_pt(const tess *t, uint32_t a, uint32_t b)
{
    uint32_t m = t->m;
    uint32_t off = (b - 1) * (m - 1) - b * (b - 1) / 2;
    return t->ibase + off + a - 1;
}

/* Grid point (a, b) of the regular level-m pattern (all sides have m segments). */
static uint32_t grid_pt(const tess *t, uint32_t a, uint32_t b)
{
    uint32_t i = t->m - a - b;
    if (b == 0) return side_pt(t, 0, a);
    if (i == 0) return side_pt(t, 1, b);
    if (a == 0) return side_pt(t, 2, i);
    return inner_pt(t, a, b);
}

typedef struct emitter {
    work *w;
    uint32_t n;   /* triangles emitted so far */
    uint32_t mat, obj;
} emitter;

static void emit(emitter *e, uint32_t a, uint32_t b, uint32_t c)
{
    uint32_t *d = e->w->idx + 3 * (size_t)e->n;
    d[0] = a;
    d[1] = b;
    d[2] = c;
    e->w->mat[e->n] = e->mat;
    e->w->obj[e->n] = e->obj;
    e->n++;
}

static int tess_regular(const tess *t)
{
    return t->ne[0] == t->m && t->ne[1] == t->m && t->ne[2] == t->m;
}

/* Triangles this tessellation produces (see tess_emit). */
static uint64_t tess_tris(const tess *t)
{
    uint64_t m = t->m;
    if (tess_regular(t)) return m * m;
    uint64_t s = (uint64_t)t->ne[0] + t->ne[1] + t->ne[2];
    if (m <= 3) return s;
    return (m - 3) * (m - 3) + s + 3 * (m - 3);
}

/* Interior points this tessellation adds. */
static uint64_t tess_points(const tess *t)
{
    uint64_t m = t->m;
    if (tess_regular(t)) return m >= 3 ? (m - 1) * (m - 2) / 2 : 0;
    return m <= 3 ? 1 : (m - 1) * (m - 2) / 2;
}

/* Inner-ring point j (0..m-3) of side e, from inner corner e to inner corner e+1. */
static uint32_t ring_pt(const tess *t, int e, uint32_t j)
{
    uint32_t m = t->m;
    if (m <= 3) return t->ibase; /* the ring is one point (the centroid) */
    switch (e) {
    case 0: return inner_pt(t, 1 + j, 1);
    case 1: return inner_pt(t, m - 2 - j, 1 + j);
    default: return inner_pt(t, 1, m - 2 - j);
    }
}

/* Regular n x n pattern when all three sides have the triangle's own level; otherwise the
 * tessellation-shader layout: a regular level-m core inside the first ring, and a band
 * zipped between each side's points and the ring, so sides split more finely by a
 * neighbour still match it point for point. Winding follows the input triangle. */
static void tess_emit(const tess *t, emitter *e)
{
    uint32_t m = t->m;
    if (tess_regular(t)) {
        for (uint32_t b = 0; b < m; b++)
            for (uint32_t a = 0; a + b < m; a++) {
                emit(e, grid_pt(t, a, b), grid_pt(t, a + 1, b), grid_pt(t, a, b + 1));
                if (a + b + 2 <= m) emit(e, grid_pt(t, a + 1, b), grid_pt(t, a + 1, b + 1), grid_pt(t, a, b + 1));
            }
        return;
    }
    if (m >= 4) {
        for (uint32_t b = 1; b + 2 < m; b++)
            for (uint32_t a = 1; a + b + 2 <= m; a++) {
                emit(e, inner_pt(t, a, b), inner_pt(t, a + 1, b), inner_pt(t, a, b + 1));
                if (a + b + 3 <= m) emit(e, inner_pt(t, a + 1, b), inner_pt(t, a + 1, b + 1), inner_pt(t, a, b + 1));
            }
    }
    uint32_t rn = m <= 3 ? 1 : m - 2; /* ring points per side */
    for (int s = 0; s < 3; s++) {
        uint32_t n = t->ne[s], i = 0, j = 0;
        while (i < n || j + 1 < rn) {
            /* Advance on the side whose next segment's midpoint comes first. */
            int outer = j + 1 >= rn || (i < n && (uint64_t)(2 * i + 1) * (rn - 1) < (uint64_t)(2 * j + 1) * n);
            if (outer) {
                emit(e, side_pt(t, s, i), side_pt(t, s, i + 1), ring_pt(t, s, j));
                i++;
            } else {
                emit(e, side_pt(t, s, i), ring_pt(t, s, j + 1), ring_pt(t, s, j));
                j++;
            }
        }
    }
}

/* Phase A: the n x n tessellation with edge points shared by edge identity. */
static mmd_status subdivide_tess(work *w, double target, double limit)
{
    mmd_status st = MMD_OK;
    uint32_t nt = w->nt;
    size_t nref = 0;
    edge_ref *refs = mmd_malloc(3 * (size_t)(nt ? nt : 1), sizeof *refs, "subdivision edges");
    uint32_t *level = mmd_malloc(nt ? nt : 1, sizeof *level, "subdivision levels");
    uint32_t *eid = mmd_malloc(3 * (size_t)(nt ? nt : 1), sizeof *eid, "subdivision edge ids");
    uint32_t *ecount = NULL, *ebase = NULL;
    uint64_t *ekey = NULL;
    work o = {0};
    if (!refs || !level || !eid) { st = MMD_ERR_NOMEM; goto done; }

    /* Each triangle's own level; index-degenerate triangles (zero area by construction)
     * are copied as they are and do not take part. */
    for (uint32_t t = 0; t < nt; t++) {
        const uint32_t *i = w->idx + 3 * (size_t)t;
        level[t] = 0;
        if (tri_degenerate(i)) continue;
        double longest = 0;
        for (int k = 0; k < 3; k++) {
            double l = edge_len(w->v, edge_key(i[k], i[(k + 1) % 3]));
            if (l > longest) longest = l;
        }
        /* Lengths within `limit` of a multiple of the target do not get an extra row. */
        double n = ceil((longest - (limit - target)) / target);
        if (n < 1) n = 1;
        if (n > 1e6) { /* one triangle alone is far over the limit; keep the counts in range */
            st = too_many(n * n > 1.8e19 ? UINT64_MAX : (uint64_t)(n * n), target);
            goto done;
        }
        level[t] = (uint32_t)n;
        for (int k = 0; k < 3; k++)
            refs[nref++] = (edge_ref){edge_key(i[k], i[(k + 1) % 3]), 3 * (uint64_t)t + (uint64_t)k};
    }
    qsort(refs, nref, sizeof *refs, cmp_edge_ref);

    /* Unique edges: each gets the finest level among the triangles that use it, so both
     * sides of a shared edge see the same points. */
    size_t ne = 0;
    for (size_t r = 0; r < nref; r++)
        if (r == 0 || refs[r].key != refs[r - 1].key) ne++;
    ecount = mmd_malloc(ne ? ne : 1, sizeof *ecount, "edge levels");
    ebase = mmd_malloc(ne ? ne : 1, sizeof *ebase, "edge points");
    ekey = mmd_malloc(ne ? ne : 1, sizeof *ekey, "edge keys");
    if (!ecount || !ebase || !ekey) { st = MMD_ERR_NOMEM; goto done; }
    size_t k = (size_t)-1;
    for (size_t r = 0; r < nref; r++) {
        if (r == 0 || refs[r].key != refs[r - 1].key) {
            k++;
            ekey[k] = refs[r].key;
            ecount[k] = 0;
        }
        uint32_t l = level[refs[r].slot / 3];
        if (l > ecount[k]) ecount[k] = l;
        eid[refs[r].slot] = (uint32_t)k;
    }
    free(refs);
    refs = NULL;

    /* Count, then lay out: input vertices keep their indices, then edge points (edge
     * order), then interior points (triangle order). */
    uint64_t nv = w->nv, ntri = 0;
    for (size_t e = 0; e < ne; e++) {
        if (nv > UINT32_MAX) break;
        ebase[e] = (uint32_t)nv;
        nv += ecount[e] - 1;
    }
    for (uint32_t t = 0; t < nt; t++) {
        if (!level[t]) {
            ntri++;
            continue;
        }
        tess ts = {.m = level[t]};
        for (int s = 0; s < 3; s++) ts.ne[s] = ecount[eid[3 * (size_t)t + s]];
        ntri += tess_tris(&ts);
        nv += tess_points(&ts);
    }
    if (ntri > MMD_PERTURB_MAX_TRIANGLES) { st = too_many(ntri, target); goto done; }
    if ((st = work_alloc(&o, nv, ntri))) goto done;

    memcpy(o.v, w->v, 3 * (size_t)w->nv * sizeof(float));
    for (size_t e = 0; e < ne; e++) {
        const float *a = w->v + 3 * (size_t)(ekey[e] >> 32), *b = w->v + 3 * (size_t)(ekey[e] & 0xffffffffu);
        uint32_t n = ecount[e];
        for (uint32_t s = 1; s < n; s++)
            for (int c = 0; c < 3; c++)
                o.v[3 * ((size_t)ebase[e] + s - 1) + c] = (float)(((double)a[c] * (n - s) + (double)b[c] * s) / n);
    }
    emitter em = {&o, 0, 0, 0};
    uint32_t ip = w->nv; /* next interior point: after the edge points */
    for (size_t e = 0; e < ne; e++) ip += ecount[e] - 1;
    for (uint32_t t = 0; t < nt; t++) {
        const uint32_t *i = w->idx + 3 * (size_t)t;
        em.mat = w->mat[t];
        em.obj = w->obj[t];
        if (!level[t]) {
            emit(&em, i[0], i[1], i[2]);
            continue;
        }
        tess ts = {.m = level[t], .ibase = ip};
        for (int s = 0; s < 3; s++) {
            ts.c[s] = i[s];
            uint32_t e = eid[3 * (size_t)t + s];
            ts.ne[s] = ecount[e];
            ts.ebase[s] = ebase[e];
        }
        /* Interior points in the order inner_pt numbers them (or the centroid). */
        const float *p0 = w->v + 3 * (size_t)i[0], *p1 = w->v + 3 * (size_t)i[1], *p2 = w->v + 3 * (size_t)i[2];
        uint32_t m = ts.m, np = (uint32_t)tess_points(&ts);
        if (np == 1 && m <= 3) {
            for (int c = 0; c < 3; c++)
                o.v[3 * (size_t)ip + c] = (float)(((double)p0[c] + p1[c] + p2[c]) / 3.0);
        } else {
            for (uint32_t b = 1; b + 1 < m; b++)
                for (uint32_t a = 1; a + b + 1 <= m; a++) {
                    uint32_t q = inner_pt(&ts, a, b);
                    for (int c = 0; c < 3; c++)
                        o.v[3 * (size_t)q + c] =
                            (float)(((double)p0[c] * (m - a - b) + (double)p1[c] * a + (double)p2[c] * b) / m);
                }
        }
        ip += np;
        tess_emit(&ts, &em);
    }
    if (em.n != o.nt || ip != o.nv) {
        st = mmd_error(MMD_ERR_INTERNAL, CTX ": subdivision emitted %u of %u triangles, %u of %u vertices", em.n,
                       o.nt, ip, o.nv);
        goto done;
    }
    work_free(w);
    *w = o;
    memset(&o, 0, sizeof o);
done:
    work_free(&o);
    free(refs);
    free(level);
    free(eid);
    free(ecount);
    free(ebase);
    free(ekey);
    return st;
}

static size_t find_key(const uint64_t *keys, size_t n, uint64_t k)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (keys[mid] < k) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && keys[lo] == k ? lo : SIZE_MAX;
}

/* Phase B: the transition bands can leave a few edges slightly over the target; split
 * every such edge at its midpoint (shared by edge identity, so still conforming) and
 * re-triangulate with the 1-to-2/3/4 patterns until none is left. New edges are at most
 * 0.87 x the longest edge of their triangle, so this ends after a few passes. */
static mmd_status subdivide_bisect(work *w, double target, double limit)
{
    for (int pass = 0; pass < 64; pass++) {
        size_t nl = 0, cap = 0;
        uint64_t *keys = NULL;
        for (uint32_t t = 0; t < w->nt; t++) {
            const uint32_t *i = w->idx + 3 * (size_t)t;
            if (tri_degenerate(i)) continue;
            for (int k = 0; k < 3; k++) {
                uint64_t key = edge_key(i[k], i[(k + 1) % 3]);
                if (edge_len(w->v, key) <= limit) continue;
                if (nl == cap) {
                    cap = cap ? 2 * cap : 1024;
                    uint64_t *q = mmd_realloc(keys, cap, sizeof *q, "long edges");
                    if (!q) {
                        free(keys);
                        return MMD_ERR_NOMEM;
                    }
                    keys = q;
                }
                keys[nl++] = key;
            }
        }
        if (!nl) {
            free(keys);
            return MMD_OK;
        }
        mmd_debug("perturb: subdivision pass %d splits %zu long edges", pass + 1, nl);
        qsort(keys, nl, sizeof *keys, cmp_u64);
        size_t nu = 0;
        for (size_t r = 0; r < nl; r++)
            if (nu == 0 || keys[r] != keys[nu - 1]) keys[nu++] = keys[r];
        /* An edge is split iff it is long, so only long edges need the lookup. */
        uint64_t ntri = (uint64_t)w->nt + nl;
        if (ntri > MMD_PERTURB_MAX_TRIANGLES) {
            free(keys);
            return too_many(ntri, target);
        }
        work o;
        mmd_status st = work_alloc(&o, (uint64_t)w->nv + nu, ntri);
        if (st) {
            free(keys);
            return st;
        }
        memcpy(o.v, w->v, 3 * (size_t)w->nv * sizeof(float));
        for (size_t e = 0; e < nu; e++) {
            const float *a = w->v + 3 * (size_t)(keys[e] >> 32), *b = w->v + 3 * (size_t)(keys[e] & 0xffffffffu);
            for (int c = 0; c < 3; c++) o.v[3 * ((size_t)w->nv + e) + c] = (float)(0.5 * ((double)a[c] + b[c]));
        }
        emitter em = {&o, 0, 0, 0};
        for (uint32_t t = 0; t < w->nt; t++) {
            const uint32_t *i = w->idx + 3 * (size_t)t;
            em.mat = w->mat[t];
            em.obj = w->obj[t];
            uint32_t mid[3];
            int ns = 0, split[3] = {0, 0, 0};
            for (int k = 0; k < 3 && !tri_degenerate(i); k++) {
                uint64_t key = edge_key(i[k], i[(k + 1) % 3]);
                size_t f = edge_len(w->v, key) > limit ? find_key(keys, nu, key) : SIZE_MAX;
                if (f != SIZE_MAX) {
                    split[k] = 1;
                    mid[k] = w->nv + (uint32_t)f;
                    ns++;
                }
            }
            if (ns == 0) {
                emit(&em, i[0], i[1], i[2]);
            } else if (ns == 3) {
                emit(&em, i[0], mid[0], mid[2]);
                emit(&em, mid[0], i[1], mid[1]);
                emit(&em, mid[2], mid[1], i[2]);
                emit(&em, mid[0], mid[1], mid[2]);
            } else if (ns == 1) {
                int r = split[0] ? 0 : split[1] ? 1 : 2; /* rotate so side r is side 0 */
                uint32_t v0 = i[r], v1 = i[(r + 1) % 3], v2 = i[(r + 2) % 3];
                emit(&em, v0, mid[r], v2);
                emit(&em, mid[r], v1, v2);
            } else {
                int r = !split[2] ? 0 : !split[0] ? 1 : 2; /* rotate so the unsplit side is side 2 */
                uint32_t v0 = i[r], v1 = i[(r + 1) % 3], v2 = i[(r + 2) % 3];
                uint32_t m0 = mid[r], m1 = mid[(r + 1) % 3];
                emit(&em, m0, v1, m1);
                /* The quad v0 m0 m1 v2: cut along its shorter diagonal. */
                if (dist3(o.v + 3 * (size_t)m0, o.v + 3 * (size_t)v2) <= dist3(o.v + 3 * (size_t)m1, o.v + 3 * (size_t)v0)) {
                    emit(&em, v0, m0, v2);
                    emit(&em, m0, m1, v2);
                } else {
                    emit(&em, v0, m0, m1);
                    emit(&em, v0, m1, v2);
                }
            }
        }
        free(keys);
        work_free(w);
        *w = o;
    }
    return mmd_error(MMD_ERR_INTERNAL, CTX ": subdivision did not converge (degenerate input?)");
}

/* Slack for float rounding of vertex positions: an edge of exactly `target` may measure a
 * few ulps of the coordinates longer once its endpoints are stored as floats. */
static double length_limit(const work *w, double target)
{
    float m = 0;
    for (size_t i = 0; i < 3 * (size_t)w->nv; i++)
        if (fabsf(w->v[i]) > m) m = fabsf(w->v[i]);
    return target * (1 + 1e-6) + 8.0 * FLT_EPSILON * m;
}

static mmd_status subdivide(work *w, double target, double *max_edge)
{
    double limit = length_limit(w, target);
    mmd_status st = subdivide_tess(w, target, limit);
    if (!st) st = subdivide_bisect(w, target, limit);
    if (st) return st;
    double mx = 0;
    for (uint32_t t = 0; t < w->nt; t++) {
        const uint32_t *i = w->idx + 3 * (size_t)t;
        if (tri_degenerate(i)) continue; /* copied as they were */
        for (int k = 0; k < 3; k++) {
            double l = edge_len(w->v, edge_key(i[k], i[(k + 1) % 3]));
            if (l > mx) mx = l;
        }
    }
    *max_edge = mx;
    return MMD_OK;
}

static double mean_edge(const work *w)
{
    double s = 0;
    for (uint32_t t = 0; t < w->nt; t++) {
        const uint32_t *i = w->idx + 3 * (size_t)t;
        for (int k = 0; k < 3; k++) s += dist3(w->v + 3 * (size_t)i[k], w->v + 3 * (size_t)i[(k + 1) % 3]);
    }
    return w->nt ? s / (3.0 * w->nt) : 0.0;
}

/* ---------------------------------------------------------------------------------- */
/* Decimation by vertex clustering                                                     */

typedef struct cluster_map {
    uint32_t *vertex_cluster; /* per vertex, UINT32_MAX = unreferenced */
    uint32_t n_clusters;
    /* hash table of occupied cells (packed cell coordinates); key and id share a slot
     * so a probe costs one cache miss */
    struct cell_slot {
        uint64_t key;
        uint32_t id; /* UINT32_MAX = empty */
    } *slot;
    size_t n_slots;
} cluster_map;

#define CLUSTER_BITS 21

static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

/* Assign every referenced vertex to its grid cell (cell size h from origin lo; h is at
 * least the extent / 2^21, so cell coordinates pack into 63 bits); clusters are numbered
 * in vertex order, so the result does not depend on the hash layout. */
static void cluster(const work *w, const uint8_t *used, const double *lo, double h, cluster_map *cm)
{
    for (size_t s = 0; s < cm->n_slots; s++) cm->slot[s].id = UINT32_MAX;
    cm->n_clusters = 0;
    size_t mask = cm->n_slots - 1;
    double inv = 1.0 / h;
    for (uint32_t v = 0; v < w->nv; v++) {
        cm->vertex_cluster[v] = UINT32_MAX;
        if (!used[v]) continue;
        uint64_t key = 0;
        for (int k = 0; k < 3; k++) {
            double c = floor(((double)w->v[3 * (size_t)v + k] - lo[k]) * inv);
            if (c < 0) c = 0;
            if (c > (1 << CLUSTER_BITS) - 1) c = (1 << CLUSTER_BITS) - 1;
            key = key << CLUSTER_BITS | (uint64_t)c;
        }
        size_t s = (size_t)mix64(key) & mask;
        while (cm->slot[s].id != UINT32_MAX && cm->slot[s].key != key) s = (s + 1) & mask;
        if (cm->slot[s].id == UINT32_MAX) {
            cm->slot[s].key = key;
            cm->slot[s].id = cm->n_clusters++;
        }
        cm->vertex_cluster[v] = cm->slot[s].id;
    }
}

static uint32_t surviving(const work *w, const cluster_map *cm)
{
    uint32_t n = 0;
    for (uint32_t t = 0; t < w->nt; t++) {
        const uint32_t *i = w->idx + 3 * (size_t)t;
        uint32_t a = cm->vertex_cluster[i[0]], b = cm->vertex_cluster[i[1]], c = cm->vertex_cluster[i[2]];
        n += a != b && b != c && c != a;
    }
    return n;
}

static mmd_status decimate(work *w, double frac)
{
    mmd_status st = MMD_OK;
    uint8_t *used = mmd_calloc(w->nv ? w->nv : 1, 1, "decimation marks");
    cluster_map cm = {0};
    work o = {0};
    double *sum = NULL;
    uint32_t *cnt = NULL;
    if (!used) return MMD_ERR_NOMEM;
    double lo[3] = {INFINITY, INFINITY, INFINITY}, hi[3] = {-INFINITY, -INFINITY, -INFINITY};
    uint32_t nused = 0;
    for (size_t i = 0; i < 3 * (size_t)w->nt; i++) {
        uint32_t v = w->idx[i];
        if (used[v]) continue;
        used[v] = 1;
        nused++;
        for (int k = 0; k < 3; k++) {
            double x = w->v[3 * (size_t)v + k];
            if (x < lo[k]) lo[k] = x;
            if (x > hi[k]) hi[k] = x;
        }
    }
    double diag = 0;
    for (int k = 0; k < 3; k++) diag += (hi[k] - lo[k]) * (hi[k] - lo[k]);
    diag = sqrt(diag);
    if (!(diag > 0)) goto done; /* nothing to cluster */
    cm.n_slots = 1024;
    while (cm.n_slots < 2 * (size_t)nused) cm.n_slots *= 2;
    cm.vertex_cluster = mmd_malloc(w->nv, sizeof *cm.vertex_cluster, "vertex clusters");
    cm.slot = mmd_malloc(cm.n_slots, sizeof *cm.slot, "cluster cells");
    if (!cm.vertex_cluster || !cm.slot) { st = MMD_ERR_NOMEM; goto done; }

    /* Surviving triangles fall (not strictly) as the cell grows. Bracket the target
     * around the mean edge length (widening to the limits if needed), then close in on it
     * in log(h) by false position with every third step a bisection, keeping the cell
     * size whose count is closest; stop within 0.2% of the triangles (each try is a pass
     * over every vertex). */
    double ext = 0, me = mean_edge(w);
    for (int k = 0; k < 3; k++) ext = fmax(ext, hi[k] - lo[k]);
    double lmin = log(ext / ((1 << CLUSTER_BITS) - 2)), lmax = log(diag);
    double target = floor((double)w->nt * (1.0 - frac) + 0.5), tol = fmax(0.5, 2e-3 * w->nt);
    double la = fmax(lmin, log(0.1 * me)), lb = fmin(lmax, fmax(la, log(10 * me)));
    double fa = 0, fb = 0, best_h = exp(la), best_err = INFINITY;
    int tries = 0;
#define TRY(l, f)                                                                   \
    do {                                                                            \
        cluster(w, used, lo, exp(l), &cm);                                          \
        (f) = (double)surviving(w, &cm) - target;                                   \
        tries++;                                                                    \
        if (fabs(f) < best_err || (fabs(f) == best_err && exp(l) < best_h)) {      \
            best_err = fabs(f);                                                     \
            best_h = exp(l);                                                        \
        }                                                                           \
    } while (0)
    TRY(la, fa);
    while (fa < 0 && la > lmin && best_err > tol) { /* too coarse already: smaller cells */
        lb = la, fb = fa;
        la = fmax(lmin, la - log(10.0));
        TRY(la, fa);
    }
    if (best_err > tol && fa > 0) TRY(lb, fb);
    while (best_err > tol && fa > 0 && fb > 0 && lb < lmax) { /* still too fine: larger cells */
        la = lb, fa = fb;
        lb = fmin(lmax, lb + log(10.0));
        TRY(lb, fb);
    }
    for (int it = 0; it < 40 && best_err > tol && fa > 0 && fb < 0 && lb - la > 1e-9; it++) {
        double lm = it % 3 == 2 ? 0.5 * (la + lb) : la + (lb - la) * fa / (fa - fb), fm;
        if (!(lm > la && lm < lb)) lm = 0.5 * (la + lb);
        TRY(lm, fm);
        if (fm > 0) la = lm, fa = fm;
        else lb = lm, fb = fm;
    }
#undef TRY
    mmd_debug("perturb: decimation cell %.4g m after %d tries, %g triangles off the target", best_h, tries, best_err);
    cluster(w, used, lo, best_h, &cm);
    uint32_t nk = surviving(w, &cm);
    if ((st = work_alloc(&o, cm.n_clusters, nk))) goto done;
    /* Each cluster becomes the mean of its vertices (summed in vertex order). */
    sum = mmd_calloc(3 * (size_t)(cm.n_clusters ? cm.n_clusters : 1), sizeof *sum, "cluster sums");
    cnt = mmd_calloc(cm.n_clusters ? cm.n_clusters : 1, sizeof *cnt, "cluster counts");
    if (!sum || !cnt) { st = MMD_ERR_NOMEM; goto done; }
    for (uint32_t v = 0; v < w->nv; v++) {
        uint32_t c = cm.vertex_cluster[v];
        if (c == UINT32_MAX) continue;
        for (int k = 0; k < 3; k++) sum[3 * (size_t)c + k] += w->v[3 * (size_t)v + k];
        cnt[c]++;
    }
    for (uint32_t c = 0; c < cm.n_clusters; c++)
        for (int k = 0; k < 3; k++) o.v[3 * (size_t)c + k] = (float)(sum[3 * (size_t)c + k] / cnt[c]);
    uint32_t n = 0;
    for (uint32_t t = 0; t < w->nt; t++) {
        const uint32_t *i = w->idx + 3 * (size_t)t;
        uint32_t a = cm.vertex_cluster[i[0]], b = cm.vertex_cluster[i[1]], c = cm.vertex_cluster[i[2]];
        if (a == b || b == c || c == a) continue;
        o.idx[3 * (size_t)n] = a;
        o.idx[3 * (size_t)n + 1] = b;
        o.idx[3 * (size_t)n + 2] = c;
        o.mat[n] = w->mat[t];
        o.obj[n] = w->obj[t];
        n++;
    }
    work_free(w);
    *w = o;
    memset(&o, 0, sizeof o);
done:
    free(used);
    free(cm.vertex_cluster);
    free(cm.slot);
    free(sum);
    free(cnt);
    work_free(&o);
    return st;
}

/* ---------------------------------------------------------------------------------- */
/* Holes                                                                               */

typedef struct cand {
    double d2;
    uint32_t t;
} cand;

static int cmp_cand(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->d2 != y->d2) return x->d2 < y->d2 ? -1 : 1;
    return (x->t > y->t) - (x->t < y->t);
}

typedef struct cell_ref {
    uint64_t key;
    uint32_t t;
} cell_ref;

static int cmp_cell_ref(const void *a, const void *b)
{
    const cell_ref *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return (x->t > y->t) - (x->t < y->t);
}

#define CELL_BITS 21

static mmd_status holes(work *w, double frac, double radius, uint64_t seed, double *removed_area,
                        double *achieved)
{
    mmd_status st = MMD_OK;
    uint32_t nt = w->nt;
    double *cdf = mmd_malloc(nt ? nt : 1, sizeof *cdf, "hole sampling table");
    float *cen = mmd_malloc(3 * (size_t)(nt ? nt : 1), sizeof *cen, "triangle centroids");
    cell_ref *cells = mmd_malloc(nt ? nt : 1, sizeof *cells, "hole grid");
    uint8_t *gone = mmd_calloc(nt ? nt : 1, 1, "removed triangles");
    cand *cs = NULL;
    size_t ccap = 0;
    *removed_area = 0;
    *achieved = 0;
    if (!cdf || !cen || !cells || !gone) { st = MMD_ERR_NOMEM; goto done; }

    double total = 0, lo[3] = {INFINITY, INFINITY, INFINITY}, hi[3] = {-INFINITY, -INFINITY, -INFINITY};
    for (uint32_t t = 0; t < nt; t++) {
        total += tri_area(w, t);
        cdf[t] = total;
        const uint32_t *i = w->idx + 3 * (size_t)t;
        for (int k = 0; k < 3; k++) {
            /* Bounds from the stored floats, so no centroid falls below its cell 0. */
            float c = (float)(((double)w->v[3 * (size_t)i[0] + k] + w->v[3 * (size_t)i[1] + k] +
                               w->v[3 * (size_t)i[2] + k]) / 3);
            cen[3 * (size_t)t + k] = c;
            if (c < lo[k]) lo[k] = c;
            if (c > hi[k]) hi[k] = c;
        }
    }
    if (!(total > 0)) goto done;
    /* Grid over the centroids with cells no smaller than the radius, so a patch only
     * looks at the 27 cells around its centre; cells grow on huge scenes to keep the
     * cell coordinates within 21 bits each. */
    double ext = 0;
    for (int k = 0; k < 3; k++) ext = fmax(ext, hi[k] - lo[k]);
    double cell = fmax(radius, ext / ((1 << CELL_BITS) - 4));
    for (uint32_t t = 0; t < nt; t++) {
        uint64_t key = 0;
        for (int k = 0; k < 3; k++) key = key << CELL_BITS | (uint64_t)floor((cen[3 * (size_t)t + k] - lo[k]) / cell);
        cells[t] = (cell_ref){key, t};
    }
    qsort(cells, nt, sizeof *cells, cmp_cell_ref);

    mmd_rng rng;
    mmd_rng_seed(&rng, seed, STREAM_HOLES);
    double goal = frac * total, removed = 0, r2 = radius * radius;
    uint64_t tries = 0, max_tries = 1000000 + 100 * (uint64_t)nt;
    int finished = 0;
    while (!finished && removed < goal && tries++ < max_tries) {
        /* An area-uniform point: a triangle by area, then a uniform point in it. */
        double u = mmd_rng_uniform(&rng) * total;
        uint32_t a = 0, b = nt - 1;
        while (a < b) {
            uint32_t m = a + (b - a) / 2;
            if (cdf[m] <= u) a = m + 1;
            else b = m;
        }
        uint32_t t0 = a;
        double r1 = sqrt(mmd_rng_uniform(&rng)), s2 = mmd_rng_uniform(&rng), p[3];
        const uint32_t *i = w->idx + 3 * (size_t)t0;
        for (int k = 0; k < 3; k++)
            p[k] = (1 - r1) * w->v[3 * (size_t)i[0] + k] + r1 * (1 - s2) * w->v[3 * (size_t)i[1] + k] +
                   r1 * s2 * w->v[3 * (size_t)i[2] + k];
        /* Candidates: the triangle under the centre, then every triangle whose centroid is
         * within the radius, nearest first. */
        size_t nc = 0;
        int64_t c0[3];
        for (int k = 0; k < 3; k++) c0[k] = (int64_t)floor((p[k] - lo[k]) / cell);
        for (int dx = -1; dx <= 1; dx++)
            for (int dy = -1; dy <= 1; dy++)
                for (int dz = -1; dz <= 1; dz++) {
                    int64_t c[3] = {c0[0] + dx, c0[1] + dy, c0[2] + dz};
                    if (c[0] < 0 || c[1] < 0 || c[2] < 0 || c[0] >= (1 << CELL_BITS) || c[1] >= (1 << CELL_BITS) ||
                        c[2] >= (1 << CELL_BITS))
                        continue;
                    uint64_t key = (uint64_t)c[0] << (2 * CELL_BITS) | (uint64_t)c[1] << CELL_BITS | (uint64_t)c[2];
                    size_t l = 0, h = nt;
                    while (l < h) {
                        size_t m = l + (h - l) / 2;
                        if (cells[m].key < key) l = m + 1;
                        else h = m;
                    }
                    for (; l < nt && cells[l].key == key; l++) {
                        uint32_t t = cells[l].t;
                        if (gone[t] || t == t0) continue;
                        const float *q = cen + 3 * (size_t)t;
                        double d2 = (q[0] - p[0]) * (q[0] - p[0]) + (q[1] - p[1]) * (q[1] - p[1]) +
                                    (q[2] - p[2]) * (q[2] - p[2]);
                        if (d2 > r2) continue;
                        if (nc == ccap) {
                            ccap = ccap ? 2 * ccap : 256;
                            cand *q2 = mmd_realloc(cs, ccap, sizeof *cs, "hole candidates");
                            if (!q2) { st = MMD_ERR_NOMEM; goto done; }
                            cs = q2;
                        }
                        cs[nc++] = (cand){d2, t};
                    }
                }
        if (nc + 1 > ccap) {
            ccap = nc + 256;
            cand *q2 = mmd_realloc(cs, ccap, sizeof *cs, "hole candidates");
            if (!q2) { st = MMD_ERR_NOMEM; goto done; }
            cs = q2;
        }
        if (!gone[t0]) cs[nc++] = (cand){-1.0, t0};
        qsort(cs, nc, sizeof *cs, cmp_cand);
        for (size_t k = 0; k < nc; k++) {
            double ar = tri_area(w, cs[k].t);
            /* Stop at the triangle that would overshoot more than it closes the gap, so
             * the achieved fraction is the closest the triangles allow. */
            if (removed + 0.5 * ar > goal) {
                finished = 1;
                break;
            }
            gone[cs[k].t] = 1;
            removed += ar;
        }
    }
    if (!finished && removed < goal && tries > max_tries)
        mmd_info("perturb: holes: stopped after %" PRIu64 " patches at %.4f of the area (asked %.4f)", max_tries,
                 removed / total, frac);
    uint32_t n = 0;
    for (uint32_t t = 0; t < nt; t++) {
        if (gone[t]) continue;
        memmove(w->idx + 3 * (size_t)n, w->idx + 3 * (size_t)t, 3 * sizeof *w->idx);
        w->mat[n] = w->mat[t];
        w->obj[n] = w->obj[t];
        n++;
    }
    w->nt = n;
    *removed_area = removed;
    *achieved = removed / total;
done:
    free(cdf);
    free(cen);
    free(cells);
    free(gone);
    free(cs);
    return st;
}

/* ---------------------------------------------------------------------------------- */
/* Compaction and noise                                                                */

/* Drop vertices no triangle uses, keeping the order of the others (an untouched input
 * keeps its arrays). */
static mmd_status compact(work *w)
{
    uint32_t *map = mmd_malloc(w->nv ? w->nv : 1, sizeof *map, "vertex map");
    if (!map) return MMD_ERR_NOMEM;
    for (uint32_t v = 0; v < w->nv; v++) map[v] = UINT32_MAX;
    for (size_t i = 0; i < 3 * (size_t)w->nt; i++) map[w->idx[i]] = 0;
    uint32_t n = 0;
    for (uint32_t v = 0; v < w->nv; v++) {
        if (map[v] == UINT32_MAX) continue;
        map[v] = n;
        if (n != v) memcpy(w->v + 3 * (size_t)n, w->v + 3 * (size_t)v, 3 * sizeof(float));
        n++;
    }
    for (size_t i = 0; i < 3 * (size_t)w->nt; i++) w->idx[i] = map[w->idx[i]];
    w->nv = n;
    free(map);
    return MMD_OK;
}

/* Gaussian displacement keyed by the vertex's POSITION (quantised to 0.1 mm), not its
 * index: vertices of different objects that coincide (a wall's edge on the floor's
 * edge, the points subdivision puts on that shared line) move together, so the scan has
 * no cracks along object seams that the clean room did not have. A real scan is one
 * surface; its segmentation into objects comes later. */
static mmd_status displace(work *w, double sigma, uint64_t seed)
{
    const double quantum = 1e-4;
    for (uint32_t v = 0; v < w->nv; v++) {
        float *p = w->v + 3 * (size_t)v;
        uint64_t h = mix64(seed ^ 0x9e3779b97f4a7c15ULL);
        for (int k = 0; k < 3; k++) h = mix64(h ^ (uint64_t)(int64_t)llround((double)p[k] / quantum));
        mmd_rng rng;
        mmd_rng_seed(&rng, h, STREAM_NOISE);
        double z[4];
        for (int k = 0; k < 4; k += 2) {
            /* Box-Muller: two independent normals per pair of uniforms. */
            double u1 = 1.0 - mmd_rng_uniform(&rng), u2 = mmd_rng_uniform(&rng);
            double r = sigma * sqrt(-2.0 * log(u1));
            z[k] = r * cos(2 * M_PI * u2), z[k + 1] = r * sin(2 * M_PI * u2);
        }
        for (int k = 0; k < 3; k++) {
            float f = (float)((double)p[k] + z[k]);
            if (!isfinite(f)) return mmd_error(MMD_ERR_INVALID, CTX ": vertex %u is not finite after displacement", v);
            p[k] = f;
        }
    }
    return MMD_OK;
}


/* ---------------------------------------------------------------------------------- */
/* Public API                                                                          */

static mmd_status to_scene(const mmd_scene *in, work *w, mmd_scene **out)
{
    mmd_scene *s = mmd_calloc(1, sizeof *s, "perturbed scene");
    if (!s) return MMD_ERR_NOMEM;
    s->n_vertices = w->nv;
    s->n_triangles = w->nt;
    s->vertices = w->v;
    s->indices = w->idx;
    s->tri_material = w->mat;
    s->tri_object = w->obj;
    memset(w, 0, sizeof *w);
    s->n_objects = in->n_objects;
    s->n_materials = in->n_materials;
    s->objects = mmd_malloc(in->n_objects ? in->n_objects : 1, sizeof *s->objects, "perturbed objects");
    s->materials = mmd_malloc(in->n_materials ? in->n_materials : 1, sizeof *s->materials, "perturbed materials");
    s->path = strdup(in->path ? in->path : "");
    if (!s->objects || !s->materials || !s->path) {
        mmd_scene_destroy(s);
        return mmd_error(MMD_ERR_NOMEM, CTX ": out of memory for the scene tables");
    }
    if (in->n_materials) memcpy(s->materials, in->materials, in->n_materials * sizeof *s->materials);
    /* Every stage keeps the triangle order, so objects stay contiguous; emptied objects
     * are kept (with no triangles) so object indices and names do not shift. */
    uint32_t t = 0;
    for (uint32_t o = 0; o < in->n_objects; o++) {
        s->objects[o] = in->objects[o];
        s->objects[o].first_tri = t;
        while (t < s->n_triangles && s->tri_object[t] == o) t++;
        s->objects[o].n_tris = t - s->objects[o].first_tri;
    }
    if (t != s->n_triangles) {
        mmd_scene_destroy(s);
        return mmd_error(MMD_ERR_INTERNAL, CTX ": triangles lost their object order");
    }
    mmd_scene_update_bbox(s);
    *out = s;
    return MMD_OK;
}

/* The input must be a scene the loaders could have made: every index in range, objects
 * contiguous and in order, every triangle's object and material valid. */
static mmd_status check_scene(const mmd_scene *in)
{
    if (!in->vertices || !in->indices || !in->tri_material || !in->tri_object || !in->objects ||
        !in->materials || in->n_triangles == 0)
        return mmd_error(MMD_ERR_INVALID, CTX ": %s: scene is empty or incomplete", in->path ? in->path : "scene");
    uint32_t o = 0;
    for (uint32_t t = 0; t < in->n_triangles; t++) {
        for (int k = 0; k < 3; k++)
            if (in->indices[3 * (size_t)t + k] >= in->n_vertices)
                return mmd_error(MMD_ERR_INVALID, CTX ": triangle %u: vertex index out of range", t);
        if (in->tri_material[t] >= in->n_materials)
            return mmd_error(MMD_ERR_INVALID, CTX ": triangle %u: material index out of range", t);
        uint32_t to = in->tri_object[t];
        if (to < o || to >= in->n_objects)
            return mmd_error(MMD_ERR_INVALID, CTX ": triangle %u: object %u out of order (objects must be contiguous)",
                             t, to);
        o = to;
    }
    return MMD_OK;
}

mmd_status mmd_scene_perturb_stats(const mmd_scene *in, const mmd_perturb_params *p, mmd_scene **out,
                                   mmd_perturb_stats *stats)
{
    if (!out) return mmd_error(MMD_ERR_INVALID, CTX ": out is NULL");
    *out = NULL;
    if (!in) return mmd_error(MMD_ERR_INVALID, CTX ": scene is NULL");
    mmd_status st = mmd_perturb_validate(p);
    if (st) return st;
    if ((st = check_scene(in))) return st;
    double t0 = mmd_now();
    mmd_perturb_stats sd;
    memset(&sd, 0, sizeof sd);

    work w;
    if ((st = work_alloc(&w, in->n_vertices, in->n_triangles))) return st;
    memcpy(w.v, in->vertices, 3 * (size_t)in->n_vertices * sizeof(float));
    memcpy(w.idx, in->indices, 3 * (size_t)in->n_triangles * sizeof(uint32_t));
    memcpy(w.mat, in->tri_material, (size_t)in->n_triangles * sizeof(uint32_t));
    memcpy(w.obj, in->tri_object, (size_t)in->n_triangles * sizeof(uint32_t));
    sd.tris_in = w.nt;
    sd.area_in_m2 = total_area(&w);

    if (p->subdivide_m > 0) {
        st = subdivide(&w, p->subdivide_m, &sd.max_edge_m);
        if (!st) mmd_info("perturb: subdivided %u -> %u triangles (longest edge %.4g m)", sd.tris_in, w.nt, sd.max_edge_m);
    }
    sd.tris_subdivided = w.nt;
    if (!st && p->decimate > 0) {
        uint32_t before = w.nt;
        st = decimate(&w, p->decimate);
        if (!st)
            mmd_info("perturb: decimated %u -> %u triangles (%.1f%% removed, asked %.1f%%)", before, w.nt,
                     before ? 100.0 * (before - w.nt) / before : 0.0, 100 * p->decimate);
    }
    sd.tris_decimated = w.nt;
    if (!st && p->hole_fraction > 0) {
        uint32_t before = w.nt;
        st = holes(&w, p->hole_fraction, p->hole_radius_m, p->seed, &sd.area_holes_m2, &sd.hole_fraction);
        if (!st)
            mmd_info("perturb: holes removed %u of %u triangles, %.4g m2 (%.2f%% of the area)", before - w.nt,
                     before, sd.area_holes_m2, 100 * sd.hole_fraction);
    }
    if (!st && w.nt == 0)
        st = mmd_error(MMD_ERR_INVALID, CTX ": %s: no triangles left (decimate = %g, hole_fraction = %g on %u "
                       "triangles)", in->path ? in->path : "scene", p->decimate, p->hole_fraction, sd.tris_in);
    if (!st) st = compact(&w);
    if (!st && p->sigma_m > 0) st = displace(&w, p->sigma_m, p->seed);
    if (st) {
        work_free(&w);
        return st;
    }
    sd.tris_out = w.nt;
    sd.mean_edge_m = mean_edge(&w);
    if ((st = to_scene(in, &w, out))) {
        work_free(&w);
        return st;
    }
    sd.seconds = mmd_now() - t0;
    if (stats) *stats = sd;
    return MMD_OK;
}

mmd_status mmd_scene_perturb(const mmd_scene *in, const mmd_perturb_params *p, mmd_scene **out)
{
    return mmd_scene_perturb_stats(in, p, out, NULL);
}
