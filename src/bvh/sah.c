/*
 * sah.c - binned SAH build of the binary tree (MMD_BVH_SAH), handed to the collapse in
 * lbvh.c in the split-position form described in bvh_internal.h.
 *
 * Top-down: a range of triangle references is binned on its doubled centroids (lo + hi,
 * so no halving) into up to SAH_BINS bins per axis, the surface area heuristic
 * area(left) * n(left) + area(right) * n(right) is evaluated at every bin boundary of the
 * three axes, and the range is partitioned at the cheapest one (Wald, "On fast
 * Construction of SAH-based Bounding Volume Hierarchies", 2007). Every range is split
 * down to single triangles: which subtrees become leaves (at most max_leaf_tris) is the
 * collapse's decision, and below that size the order does not matter, so such ranges are
 * simply halved. A range whose centroids coincide on every axis (duplicates), or that
 * is SAH_DEEP splits below the root (pathological inputs), is halved as well, which
 * bounds the recursion; the collapse bounds the wide depth as for the LBVH.
 *
 * Threads: the ranges larger than SAH_TASK are split level by level, all ranges of a
 * level at once, in fixed chunks of SAH_CHUNK references (binning, then a stable
 * scatter into the other of two buffers); the ranges below that are independent tasks,
 * claimed by the threads largest first and built in place. Chunks do not depend on the
 * thread count and their results are merged in order, and each box is a min/max union
 * that keeps the first of equal values (bvh_internal.h), so the tree, its boxes and the
 * triangle order are the same for any number of threads.
 */
#include "bvh_internal.h"

#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define SAH_BINS 32     /* per axis; 16 to 128 gave the same node visits per ray */
#define SAH_CHUNK 8192u /* top-level work item (references) */
#define SAH_TASK 8192u  /* ranges up to this size are built by one thread */
#define SAH_DEEP 64     /* binary depth from which ranges are halved (see sah_deep) */

/* ------------------------------------------------------------------------------ */
/* four-float vectors: SSE where there is SSE, else plain C with the same results      */

#if defined(__SSE2__)
typedef __m128 v4;
static inline v4 v4_load(const float *p) { return _mm_loadu_ps(p); }
static inline void v4_store(float *p, v4 a) { _mm_storeu_ps(p, a); }
static inline v4 v4_set1(float x) { return _mm_set1_ps(x); }
static inline v4 v4_add(v4 a, v4 b) { return _mm_add_ps(a, b); }
static inline v4 v4_sub(v4 a, v4 b) { return _mm_sub_ps(a, b); }
static inline v4 v4_mul(v4 a, v4 b) { return _mm_mul_ps(a, b); }
/* minps/maxps are a < b ? a : b and a > b ? a : b, i.e. MMD_MIN/MMD_MAX */
static inline v4 v4_min(v4 a, v4 b) { return _mm_min_ps(a, b); }
static inline v4 v4_max(v4 a, v4 b) { return _mm_max_ps(a, b); }
static inline void v4_trunc(int *out, v4 a) { _mm_storeu_si128((__m128i *)(void *)out, _mm_cvttps_epi32(a)); }
/* half the surface area of box [lo, hi]: dx * dy + dy * dz + dz * dx, as box_area */
static inline float v4_area(v4 lo, v4 hi)
{
    __m128 d = _mm_sub_ps(hi, lo);
    __m128 p = _mm_mul_ps(d, _mm_shuffle_ps(d, d, _MM_SHUFFLE(3, 0, 2, 1))); /* dx dy, dy dz, dz dx */
    __m128 t = _mm_add_ss(p, _mm_shuffle_ps(p, p, _MM_SHUFFLE(1, 1, 1, 1)));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(p, p, _MM_SHUFFLE(2, 2, 2, 2))));
}
#else
typedef struct v4 {
    float x[4];
} v4;
static inline v4 v4_load(const float *p)
{
    v4 r;
    memcpy(r.x, p, sizeof r.x);
    return r;
}
static inline void v4_store(float *p, v4 a) { memcpy(p, a.x, sizeof a.x); }
static inline v4 v4_set1(float x) { return (v4){{x, x, x, x}}; }
#define V4_OP(name, expr)                                                                    \
    static inline v4 name(v4 a, v4 b)                                                        \
    {                                                                                        \
        v4 r;                                                                                \
        for (int i = 0; i < 4; i++) r.x[i] = expr;                                           \
        return r;                                                                            \
    }
V4_OP(v4_add, a.x[i] + b.x[i])
V4_OP(v4_sub, a.x[i] - b.x[i])
V4_OP(v4_mul, a.x[i] * b.x[i])
V4_OP(v4_min, MMD_MIN(a.x[i], b.x[i]))
V4_OP(v4_max, MMD_MAX(a.x[i], b.x[i]))
#undef V4_OP
static inline void v4_trunc(int *out, v4 a)
{
    for (int i = 0; i < 4; i++) out[i] = (int)a.x[i];
}
static inline float v4_area(v4 lo, v4 hi)
{
    float dx = hi.x[0] - lo.x[0], dy = hi.x[1] - lo.x[1], dz = hi.x[2] - lo.x[2];
    return dx * dy + dy * dz + dz * dx;
}
#endif

/* A triangle reference: its box, and its scene index in lane 3 of lo. The index is
 * stored with bit 30 set (indices are below 2^27), which makes lane 3 an ordinary float
 * between 2 and 2^16: the vector arithmetic on the unused lane never meets denormals
 * (slow on x86) or NaNs. hi[3] is 0. */
typedef struct sref {
    float lo[4], hi[4];
} sref;

#define PRIM_TAG 0x40000000u

static inline uint32_t ref_prim(const sref *r)
{
    uint32_t u;
    memcpy(&u, &r->lo[3], 4);
    return u & ~PRIM_TAG;
}

/* Running box and doubled-centroid box of a set of references. */
typedef struct acc {
    v4 lo, hi, clo, chi;
} acc;

static inline void acc_empty(acc *a)
{
    a->lo = a->clo = v4_set1(INFINITY);
    a->hi = a->chi = v4_set1(-INFINITY);
}

static inline void acc_add(acc *a, v4 lo, v4 hi)
{
    v4 c = v4_add(lo, hi);
    a->lo = v4_min(lo, a->lo);
    a->hi = v4_max(hi, a->hi);
    a->clo = v4_min(c, a->clo);
    a->chi = v4_max(c, a->chi);
}

static inline void acc_boxes(const acc *a, box3 *box, box3 *cbox)
{
    float t[4];
    v4_store(t, a->lo);
    memcpy(box->lo, t, sizeof box->lo);
    v4_store(t, a->hi);
    memcpy(box->hi, t, sizeof box->hi);
    v4_store(t, a->clo);
    memcpy(cbox->lo, t, sizeof cbox->lo);
    v4_store(t, a->chi);
    memcpy(cbox->hi, t, sizeof cbox->hi);
}

/* ------------------------------------------------------------------------------ */
/* bins                                                                           */

typedef struct sbin {
    float lo[4], hi[4];
} sbin;

typedef struct sbins {
    sbin b[3][SAH_BINS];
    uint32_t cnt[3][SAH_BINS];
} sbins;

/* Bin of a doubled centroid c on axis k: (c - base) * scale, clamped to [0, nb - 1]
 * (a NaN from 0 * inf lands in bin 0), truncated. bin_of (scalar, one axis) and
 * bin_one (vector, three axes) must stay the same IEEE operations in the same order:
 * the bin counts decide where the partitions put their halves. */
typedef struct binmap {
    float base[4], scale[4];
    float top;
    int nb;
} binmap;

/* Returns 0 when no axis has a usable centroid extent. */
static int binmap_init(binmap *m, const box3 *cbox, int nb)
{
    int any = 0;
    for (int k = 0; k < 3; k++) {
        float ext = cbox->hi[k] - cbox->lo[k];
        int ok = ext > 0.0f && ext < INFINITY;
        m->base[k] = cbox->lo[k];
        m->scale[k] = ok ? (float)nb / ext : 0.0f;
        any |= ok;
    }
    m->base[3] = m->scale[3] = 0.0f;
    m->top = (float)(nb - 1);
    m->nb = nb;
    return any;
}

static inline int bin_of(const binmap *m, const sref *r, int k)
{
    float f = ((r->lo[k] + r->hi[k]) - m->base[k]) * m->scale[k];
    f = MMD_MIN(MMD_MAX(f, 0.0f), m->top);
    return (int)f;
}

static void bins_clear(sbins *B, int nb)
{
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < nb; i++) {
            v4_store(B->b[k][i].lo, v4_set1(INFINITY));
            v4_store(B->b[k][i].hi, v4_set1(-INFINITY));
            B->cnt[k][i] = 0;
        }
}

static inline void bin_one(const sref *p, v4 base, v4 scale, v4 top, v4 zero, sbins *B)
{
    v4 lo = v4_load(p->lo), hi = v4_load(p->hi);
    v4 f = v4_mul(v4_sub(v4_add(lo, hi), base), scale);
    f = v4_min(v4_max(f, zero), top);
    int ix[4];
    v4_trunc(ix, f);
    for (int k = 0; k < 3; k++) {
        sbin *q = &B->b[k][ix[k]];
        v4_store(q->lo, v4_min(lo, v4_load(q->lo)));
        v4_store(q->hi, v4_max(hi, v4_load(q->hi)));
        B->cnt[k][ix[k]]++;
    }
}

/* a += b, bin by bin, in that order */
static void bins_merge(sbins *a, const sbins *b, int nb)
{
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < nb; i++) {
            v4_store(a->b[k][i].lo, v4_min(v4_load(b->b[k][i].lo), v4_load(a->b[k][i].lo)));
            v4_store(a->b[k][i].hi, v4_max(v4_load(b->b[k][i].hi), v4_load(a->b[k][i].hi)));
            a->cnt[k][i] += b->cnt[k][i];
        }
}

/* Bins references r[0 .. n-1] (the same arithmetic as bin_of, three axes at once). */
static void bin_refs(const binmap *m, const sref *r, uint32_t n, sbins *B)
{
    const v4 base = v4_load(m->base), scale = v4_load(m->scale), top = v4_set1(m->top), zero = v4_set1(0.0f);
    bins_clear(B, m->nb);
    for (uint32_t i = 0; i < n; i++) bin_one(&r[i], base, scale, top, zero, B);
}

/* The cheapest boundary: axis and the first bin of the right side. Returns 0 if no
 * boundary has triangles on both sides, or if every cost overflows (scenes beyond
 * about 1e18 in size; such ranges are halved). Ties go to the lower axis, then the
 * lower bin. */
static int best_split(const sbins *B, const binmap *m, int *axis, int *split)
{
    const int nb = m->nb;
    float best = INFINITY, right[SAH_BINS];
    int found = 0;
    for (int k = 0; k < 3; k++) {
        if (!(m->scale[k] > 0.0f)) continue;
        v4 lo = v4_set1(INFINITY), hi = v4_set1(-INFINITY);
        uint32_t n = 0;
        for (int i = nb - 1; i > 0; i--) {
            lo = v4_min(v4_load(B->b[k][i].lo), lo);
            hi = v4_max(v4_load(B->b[k][i].hi), hi);
            n += B->cnt[k][i];
            right[i] = n ? v4_area(lo, hi) * (float)n : INFINITY;
        }
        lo = v4_set1(INFINITY), hi = v4_set1(-INFINITY);
        n = 0;
        for (int i = 0; i < nb - 1; i++) {
            lo = v4_min(v4_load(B->b[k][i].lo), lo);
            hi = v4_max(v4_load(B->b[k][i].hi), hi);
            n += B->cnt[k][i];
            if (!n) continue;
            float c = v4_area(lo, hi) * (float)n + right[i + 1];
            if (c < best) {
                best = c;
                *axis = k;
                *split = i + 1;
                found = 1;
            }
        }
    }
    return found;
}

/* ------------------------------------------------------------------------------ */
/* build state                                                                    */

typedef struct task {
    uint32_t first, count;
    int src, depth;
    uint32_t *slot; /* where the subtree's ref goes */
    box3 box, cbox;
} task;

/* a range split at the top, in parallel */
typedef struct tnode {
    task t;
    binmap map;
    int axis, split; /* axis < 0: halved */
    uint32_t nl;
    uint32_t c0, nc; /* its chunks */
} tnode;

typedef struct tchunk {
    uint32_t node, first, count; /* positions */
    uint32_t nl, lpos, rpos;     /* left count; where its left and right references go */
    box3 lb, lc, rb, rc;         /* boxes of those */
    sbins bins;
} tchunk;

typedef struct sah {
    mmd_bvh_team *T;
    int deep; /* SAH_DEEP, or lower for tests */
    const float *vtx;
    const uint32_t *idx;
    uint32_t n;
    int leaf_max;
    sref *buf[2];
    bnode *bn;
    mmd_tri *tris;
    /* reference set-up */
    uint32_t n_init;
    box3 *init_box, *init_cbox;
    /* current level */
    tnode *nodes;
    uint32_t n_nodes, cap_nodes;
    tchunk *chunks;
    uint32_t n_chunks, cap_chunks;
    tnode *next;
    uint32_t n_next, cap_next;
    task *tasks;
    uint32_t n_tasks, cap_tasks;
    sbins all; /* a node's bins */
    _Atomic uint32_t claim;
    int oom;
} sah;

static void *grow(void *p, uint32_t *cap, uint32_t need, size_t size, int *oom)
{
    if (need <= *cap) return p;
    uint32_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(p, (size_t)c * size);
    if (!q) {
        *oom = 1;
        return p;
    }
    *cap = c;
    return q;
}

/* ------------------------------------------------------------------------------ */
/* references                                                                     */

static void phase_init(void *vctx, int tid, int nt)
{
    (void)tid;
    (void)nt;
    sah *S = vctx;
    for (;;) {
        uint32_t c = atomic_fetch_add_explicit(&S->claim, 1, memory_order_relaxed);
        if (c >= S->n_init) break;
        uint32_t a = c * SAH_CHUNK, b = a + SAH_CHUNK < S->n ? a + SAH_CHUNK : S->n;
        acc A;
        acc_empty(&A);
        sref *r = S->buf[0];
        for (uint32_t i = a; i < b; i++) {
            const uint32_t *ix = S->idx + 3 * (size_t)i;
            box3 t;
            tri_box3(S->vtx + 3 * (size_t)ix[0], S->vtx + 3 * (size_t)ix[1], S->vtx + 3 * (size_t)ix[2], &t);
            uint32_t tag = i | PRIM_TAG;
            memcpy(r[i].lo, t.lo, sizeof t.lo);
            memcpy(&r[i].lo[3], &tag, 4);
            memcpy(r[i].hi, t.hi, sizeof t.hi);
            r[i].hi[3] = 0.0f;
            acc_add(&A, v4_load(r[i].lo), v4_load(r[i].hi));
        }
        acc_boxes(&A, &S->init_box[c], &S->init_cbox[c]);
    }
}

/* ------------------------------------------------------------------------------ */
/* one thread: a range built in place                                             */

static void emit_tri(sah *S, const sref *r, uint32_t pos)
{
    uint32_t prim = ref_prim(&r[pos]);
    const uint32_t *ix = S->idx + 3 * (size_t)prim;
    mmd_tri *t = &S->tris[pos];
    memcpy(t->v0, S->vtx + 3 * (size_t)ix[0], sizeof t->v0);
    memcpy(t->v1, S->vtx + 3 * (size_t)ix[1], sizeof t->v1);
    memcpy(t->v2, S->vtx + 3 * (size_t)ix[2], sizeof t->v2);
    t->prim = prim;
    t->pad1 = 0;
    t->pad2 = 0;
}

/* r[first .. first+count-1] halved where it lies; the halves' boxes. */
static uint32_t halve(const sref *r, uint32_t first, uint32_t count, box3 *lb, box3 *lc, box3 *rb, box3 *rc)
{
    uint32_t nl = count / 2;
    acc L, R;
    acc_empty(&L);
    acc_empty(&R);
    for (uint32_t i = first; i < first + nl; i++) acc_add(&L, v4_load(r[i].lo), v4_load(r[i].hi));
    for (uint32_t i = first + nl; i < first + count; i++) acc_add(&R, v4_load(r[i].lo), v4_load(r[i].hi));
    acc_boxes(&L, lb, lc);
    acc_boxes(&R, rb, rc);
    return nl;
}

/* In-place partition of r[first .. first+count-1] by bin_of(axis) < split; returns the
 * left count (both sides are non-empty: the split came from the bin counts). */
static uint32_t partition(sref *r, uint32_t first, uint32_t count, const binmap *m, int axis, int split,
                          box3 *lb, box3 *lc, box3 *rb, box3 *rc)
{
    acc L, R;
    acc_empty(&L);
    acc_empty(&R);
    uint32_t i = first, j = first + count;
    for (;;) {
        while (i < j && bin_of(m, &r[i], axis) < split) {
            acc_add(&L, v4_load(r[i].lo), v4_load(r[i].hi));
            i++;
        }
        while (i < j && bin_of(m, &r[j - 1], axis) >= split) {
            j--;
            acc_add(&R, v4_load(r[j].lo), v4_load(r[j].hi));
        }
        if (i >= j) break;
        /* r[i] goes right, r[j - 1] left */
        sref t = r[i];
        r[i] = r[j - 1];
        r[j - 1] = t;
        acc_add(&L, v4_load(r[i].lo), v4_load(r[i].hi));
        i++;
        j--;
        acc_add(&R, v4_load(r[j].lo), v4_load(r[j].hi));
    }
    acc_boxes(&L, lb, lc);
    acc_boxes(&R, rb, rc);
    return i - first;
}

/* Builds the subtree over r[first .. first+count-1] (box, doubled-centroid box cbox);
 * returns its ref. B: the thread's bins. */
static uint32_t build_range(sah *S, sref *r, uint32_t first, uint32_t count, const box3 *box, const box3 *cbox,
                            int depth, sbins *B)
{
    if (count == 1) {
        emit_tri(S, r, first);
        return first | MMD_BVH_LEAF_FLAG;
    }
    box3 lb, lc, rb, rc;
    uint32_t nl = 0;
    binmap m;
    int axis = 0, split = 0;
    /* at most leaf_max triangles always become one leaf: their order does not matter */
    if (count > (uint32_t)S->leaf_max && depth < S->deep &&
        binmap_init(&m, cbox, count < SAH_BINS ? (int)count : SAH_BINS)) {
        bin_refs(&m, r + first, count, B);
        if (best_split(B, &m, &axis, &split)) nl = partition(r, first, count, &m, axis, split, &lb, &lc, &rb, &rc);
    }
    /* (a partition always has both sides: bin_of and bin_refs are the same arithmetic) */
    if (!nl || nl == count) nl = halve(r, first, count, &lb, &lc, &rb, &rc);
    uint32_t s = first + nl - 1;
    bnode *nd = &S->bn[s];
    nd->b = *box;
    nd->child[0] = build_range(S, r, first, nl, &lb, &lc, depth + 1, B);
    nd->child[1] = build_range(S, r, s + 1, count - nl, &rb, &rc, depth + 1, B);
    return s;
}

static void phase_tasks(void *vctx, int tid, int nt)
{
    (void)tid;
    (void)nt;
    sah *S = vctx;
    sbins B; /* 3.5 KiB, reused at every level of the recursion */
    for (;;) {
        uint32_t k = atomic_fetch_add_explicit(&S->claim, 1, memory_order_relaxed);
        if (k >= S->n_tasks) break;
        const task *t = &S->tasks[k];
        *t->slot = build_range(S, S->buf[t->src], t->first, t->count, &t->box, &t->cbox, t->depth, &B);
    }
}

/* ------------------------------------------------------------------------------ */
/* the top levels: all ranges of a level at once, in chunks                       */

static void phase_bin(void *vctx, int tid, int nt)
{
    (void)tid;
    (void)nt;
    sah *S = vctx;
    for (;;) {
        uint32_t c = atomic_fetch_add_explicit(&S->claim, 1, memory_order_relaxed);
        if (c >= S->n_chunks) break;
        tchunk *ch = &S->chunks[c];
        const tnode *nd = &S->nodes[ch->node];
        if (nd->axis >= 0) bin_refs(&nd->map, S->buf[nd->t.src] + ch->first, ch->count, &ch->bins);
    }
}

static void phase_scatter(void *vctx, int tid, int nt)
{
    (void)tid;
    (void)nt;
    sah *S = vctx;
    for (;;) {
        uint32_t c = atomic_fetch_add_explicit(&S->claim, 1, memory_order_relaxed);
        if (c >= S->n_chunks) break;
        tchunk *ch = &S->chunks[c];
        const tnode *nd = &S->nodes[ch->node];
        const sref *src = S->buf[nd->t.src];
        sref *dst = S->buf[!nd->t.src];
        uint32_t lp = ch->lpos, rp = ch->rpos, mid = nd->t.first + nd->nl;
        acc L, R;
        acc_empty(&L);
        acc_empty(&R);
        for (uint32_t i = ch->first; i < ch->first + ch->count; i++) {
            v4 lo = v4_load(src[i].lo), hi = v4_load(src[i].hi);
            int left = nd->axis >= 0 ? bin_of(&nd->map, &src[i], nd->axis) < nd->split : i < mid;
            if (left) {
                acc_add(&L, lo, hi);
                dst[lp++] = src[i];
            } else {
                acc_add(&R, lo, hi);
                dst[rp++] = src[i];
            }
        }
        acc_boxes(&L, &ch->lb, &ch->lc);
        acc_boxes(&R, &ch->rb, &ch->rc);
    }
}

static void add_range(sah *S, uint32_t first, uint32_t count, int src, int depth, uint32_t *slot, const box3 *box,
                      const box3 *cbox)
{
    task t = {first, count, src, depth, slot, *box, *cbox};
    if (count > SAH_TASK) {
        S->next = grow(S->next, &S->cap_next, S->n_next + 1, sizeof *S->next, &S->oom);
        if (S->oom) return;
        tnode *nd = &S->next[S->n_next++];
        memset(nd, 0, sizeof *nd);
        nd->t = t;
    } else {
        S->tasks = grow(S->tasks, &S->cap_tasks, S->n_tasks + 1, sizeof *S->tasks, &S->oom);
        if (S->oom) return;
        S->tasks[S->n_tasks++] = t;
    }
}

/* One level: bin every chunk, choose the splits, scatter, queue the halves. */
static void split_level(sah *S)
{
    uint32_t nc = 0;
    for (uint32_t i = 0; i < S->n_nodes; i++) nc += (S->nodes[i].t.count + SAH_CHUNK - 1) / SAH_CHUNK;
    S->chunks = grow(S->chunks, &S->cap_chunks, nc, sizeof *S->chunks, &S->oom);
    if (S->oom) return;
    S->n_chunks = 0;
    for (uint32_t i = 0; i < S->n_nodes; i++) {
        tnode *nd = &S->nodes[i];
        nd->c0 = S->n_chunks;
        nd->nc = (nd->t.count + SAH_CHUNK - 1) / SAH_CHUNK;
        for (uint32_t j = 0; j < nd->nc; j++) {
            tchunk *ch = &S->chunks[S->n_chunks++];
            ch->node = i;
            ch->first = nd->t.first + j * SAH_CHUNK;
            ch->count = j + 1 < nd->nc ? SAH_CHUNK : nd->t.count - j * SAH_CHUNK;
        }
        nd->axis = nd->t.depth < S->deep && binmap_init(&nd->map, &nd->t.cbox, SAH_BINS) ? 0 : -1;
    }
    atomic_store(&S->claim, 0);
    mmd_bvh_team_run(S->T, phase_bin, S);

    for (uint32_t i = 0; i < S->n_nodes; i++) {
        tnode *nd = &S->nodes[i];
        tchunk *ch = &S->chunks[nd->c0];
        if (nd->axis >= 0) {
            /* the node's bins: its chunks' merged in order (the chunks' own counts give
             * their left counts below) */
            memcpy(&S->all, &ch[0].bins, sizeof S->all);
            for (uint32_t j = 1; j < nd->nc; j++) bins_merge(&S->all, &ch[j].bins, nd->map.nb);
            if (!best_split(&S->all, &nd->map, &nd->axis, &nd->split)) nd->axis = -1;
        }
        nd->nl = 0;
        for (uint32_t j = 0; j < nd->nc; j++) {
            uint32_t l = 0;
            if (nd->axis >= 0) {
                for (int b = 0; b < nd->split; b++) l += ch[j].bins.cnt[nd->axis][b];
            } else {
                uint32_t mid = nd->t.first + nd->t.count / 2;
                l = ch[j].first >= mid ? 0 : mid - ch[j].first < ch[j].count ? mid - ch[j].first : ch[j].count;
            }
            ch[j].nl = l;
            nd->nl += l;
        }
        uint32_t lp = nd->t.first, rp = nd->t.first + nd->nl;
        for (uint32_t j = 0; j < nd->nc; j++) {
            ch[j].lpos = lp;
            ch[j].rpos = rp;
            lp += ch[j].nl;
            rp += ch[j].count - ch[j].nl;
        }
    }
    atomic_store(&S->claim, 0);
    mmd_bvh_team_run(S->T, phase_scatter, S);

    S->n_next = 0;
    for (uint32_t i = 0; i < S->n_nodes && !S->oom; i++) {
        tnode *nd = &S->nodes[i];
        tchunk *ch = &S->chunks[nd->c0];
        box3 lb, lc, rb, rc;
        box_empty(&lb), box_empty(&lc), box_empty(&rb), box_empty(&rc);
        for (uint32_t j = 0; j < nd->nc; j++) {
            if (ch[j].nl) box_union(&lb, &ch[j].lb), box_union(&lc, &ch[j].lc);
            if (ch[j].nl < ch[j].count) box_union(&rb, &ch[j].rb), box_union(&rc, &ch[j].rc);
        }
        uint32_t s = nd->t.first + nd->nl - 1;
        S->bn[s].b = nd->t.box;
        *nd->t.slot = s;
        add_range(S, nd->t.first, nd->nl, !nd->t.src, nd->t.depth + 1, &S->bn[s].child[0], &lb, &lc);
        add_range(S, s + 1, nd->t.count - nd->nl, !nd->t.src, nd->t.depth + 1, &S->bn[s].child[1], &rb, &rc);
    }
    /* the next level becomes the current one */
    tnode *t = S->nodes;
    uint32_t cap = S->cap_nodes;
    S->nodes = S->next, S->cap_nodes = S->cap_next, S->n_nodes = S->n_next;
    S->next = t, S->cap_next = cap, S->n_next = 0;
}

/* Real inputs do not come near SAH_DEEP, so a debug knob lowers it for the tests of the
 * halving paths; it never raises it. */
static int sah_deep(void)
{
    const char *e = getenv("MMDIFF_BVH_SAH_DEPTH");
    int d = e ? atoi(e) : 0;
    return d > 0 && d < SAH_DEEP ? d : SAH_DEEP;
}

static int cmp_task(const void *a, const void *b)
{
    const task *x = a, *y = b;
    /* largest first (load balance), then by position: a total order */
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return x->first < y->first ? -1 : x->first > y->first;
}

mmd_status mmd_bvh_sah_hierarchy(mmd_bvh_team *T, const float *vtx, const uint32_t *idx, uint32_t n, int leaf_max,
                                 void *refs, bnode *bn, mmd_tri *tris, uint32_t *root)
{
    mmd_status st = MMD_OK;
    sah S = {.T = T, .deep = sah_deep(), .vtx = vtx, .idx = idx, .n = n, .leaf_max = leaf_max, .bn = bn, .tris = tris};
    S.buf[0] = refs;
    S.buf[1] = S.buf[0] + n;
    S.n_init = (n + SAH_CHUNK - 1) / SAH_CHUNK;
    S.init_box = malloc((size_t)S.n_init * sizeof *S.init_box);
    S.init_cbox = malloc((size_t)S.n_init * sizeof *S.init_cbox);
    if (!S.init_box || !S.init_cbox) {
        st = mmd_error(MMD_ERR_NOMEM, "out of memory for the SAH build");
        goto done;
    }
    atomic_init(&S.claim, 0);
    mmd_bvh_team_run(T, phase_init, &S);
    box3 box, cbox;
    box_empty(&box);
    box_empty(&cbox);
    for (uint32_t c = 0; c < S.n_init; c++) {
        box_union(&box, &S.init_box[c]);
        box_union(&cbox, &S.init_cbox[c]);
    }
    *root = MMD_BVH_NONE;
    add_range(&S, 0, n, 0, 0, root, &box, &cbox);
    {
        /* the root went to `next` if it is large: make that the current level */
        tnode *t = S.nodes;
        uint32_t cap = S.cap_nodes;
        S.nodes = S.next, S.cap_nodes = S.cap_next, S.n_nodes = S.n_next;
        S.next = t, S.cap_next = cap, S.n_next = 0;
    }
    while (S.n_nodes && !S.oom) split_level(&S);
    if (S.oom) {
        st = mmd_error(MMD_ERR_NOMEM, "out of memory for the SAH build");
        goto done;
    }
    qsort(S.tasks, S.n_tasks, sizeof *S.tasks, cmp_task);
    atomic_store(&S.claim, 0);
    mmd_bvh_team_run(T, phase_tasks, &S);
done:
    free(S.init_box);
    free(S.init_cbox);
    free(S.nodes);
    free(S.next);
    free(S.chunks);
    free(S.tasks);
    return st;
}
