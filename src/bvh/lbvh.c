/*
 * lbvh.c - host BVH build: linear BVH on Morton codes, collapsed to 8-wide nodes.
 *
 * 1. Centroid and scene bounds, and a check that every coordinate is finite.
 * 2. 64-bit keys: the top (64 - b) bits of a 63-bit Morton code (21 bits per axis) of
 *    the triangle's box centre, the low b = ceil(log2 n) bits the triangle index. Keys
 *    are unique, which is Karras' tie-break for duplicate codes folded into the key,
 *    and the index bits need no sorting: an LSD radix sort is stable and the keys start
 *    in index order. Dense scenes keep 44 Morton bits at 1M triangles (about 15 per
 *    axis) where 30-bit codes would collide.
 * 3. Parallel LSD radix sort (pthreads, 11-bit digits, constant digits skipped).
 * 4. Triangles gathered into sorted order (the output array; leaf boxes are recomputed
 *    from it), then the binary hierarchy and its AABBs in one bottom-up pass: Apetrei,
 *    "Fast and Simple Agglomerative LBVH Construction", CGVC 2014. It builds the same
 *    tree as Karras, "Maximizing Parallelism in the Construction of BVHs, Octrees, and
 *    k-d Trees", HPG 2012 (internal node i splits between sorted keys i and i + 1),
 *    with one atomic exchange per node (C11 <stdatomic.h>) instead of a binary search.
 * 5. Collapse to 8-wide nodes top-down: starting from a node's two children, repeatedly
 *    open the child with the largest surface area until there are 8; a subtree with at
 *    most max_leaf_tris triangles becomes a leaf. The top of the tree is collapsed
 *    sequentially, the subtrees below a size cutoff in parallel: a counting pass sizes
 *    every subtree, then each is written straight into its depth-first (pre-order)
 *    slot. Leaves cover contiguous runs of the sorted order, so the triangle array is
 *    simply the sorted order.
 * 6. If the wide tree is deeper than MMD_BVH_MAX_DEPTH (the traversal stack bound), the
 *    collapse is redone keeping the surface-area choice where it fits the remaining
 *    depth budget and splitting the sorted range evenly 8 ways where it does not.
 *
 * Every step produces a result that does not depend on the thread count (the sorted
 * order is a total order on unique keys; the tree is a function of the keys; boxes
 * are min/max unions), so builds are byte-identical for any `threads`.
 */
#include "mmd_bvh.h"
#include "mmd_isect.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define LEAF_FLAG 0x80000000u   /* binary child refs: sorted leaf position | LEAF_FLAG */
#define TASK_FLAG 0x40000000    /* wide child placeholder while subtrees are built apart */
#define NONE 0xffffffffu
#define RADIX_BITS 11
#define RADIX (1u << RADIX_BITS)
#define MAX_THREADS 64
#define MIN_TRIS_PER_THREAD 8192
#define PREFETCH_AHEAD 8
#if defined(__GNUC__)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) ((void)(p))
#endif

typedef struct box3 {
    float lo[3], hi[3];
} box3;

/* Binary LBVH internal node i splits sorted positions i | i + 1; its range [first, last]
 * is implied top-down (children cover [first, i] and [i + 1, last]), so only the box
 * and the child links are stored: 32 bytes. */
typedef struct bnode {
    box3 b;
    uint32_t child[2];     /* internal index, or sorted position | LEAF_FLAG */
} bnode;

/* ------------------------------------------------------------------------------ */
/* threads                                                                        */

typedef void (*par_fn)(void *ctx, int tid, int nt);

typedef struct par_arg {
    par_fn fn;
    void *ctx;
    int tid, nt;
} par_arg;

static void *par_main(void *p)
{
    par_arg *a = p;
    a->fn(a->ctx, a->tid, a->nt);
    return NULL;
}

/* Run fn(ctx, tid, nt) for tid = 0..nt-1 on nt threads. The work of a thread that
 * cannot be created is done by the caller afterwards, so callers must split work by tid
 * and never wait on one another. */
static void run_par(int nt, par_fn fn, void *ctx)
{
    if (nt <= 1) {
        fn(ctx, 0, 1);
        return;
    }
    pthread_t th[MAX_THREADS];
    par_arg args[MAX_THREADS];
    int started[MAX_THREADS];
    for (int t = 1; t < nt; t++) {
        args[t] = (par_arg){fn, ctx, t, nt};
        started[t] = pthread_create(&th[t], NULL, par_main, &args[t]) == 0;
    }
    fn(ctx, 0, nt);
    for (int t = 1; t < nt; t++) {
        if (started[t])
            pthread_join(th[t], NULL);
        else
            fn(ctx, t, nt);
    }
}

static void chunk(uint32_t n, int nt, int tid, uint32_t *lo, uint32_t *hi)
{
    *lo = (uint32_t)((uint64_t)n * (uint64_t)tid / (uint64_t)nt);
    *hi = (uint32_t)((uint64_t)n * (uint64_t)(tid + 1) / (uint64_t)nt);
}

/* Large buffers: 2 MiB aligned and marked for transparent huge pages, which turns the
 * page faults on fresh memory (a large share of the build on VMs) into a few 2 MiB
 * faults. Plain malloc memory otherwise; either way free() releases it. */
#define HUGE_PAGE ((size_t)2 << 20)
static void *big_alloc(size_t count, size_t size, const char *what)
{
    if (size && count > SIZE_MAX / size) return mmd_malloc(count, size, what);
    size_t n = count * size;
    if (n < 2 * HUGE_PAGE) return mmd_malloc(count, size, what);
    void *p = NULL;
    if (posix_memalign(&p, HUGE_PAGE, n) != 0) return mmd_malloc(count, size, what);
#ifdef MADV_HUGEPAGE
    madvise(p, (n + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1), MADV_HUGEPAGE);
#endif
    return p;
}

/* ------------------------------------------------------------------------------ */
/* build state                                                                    */

/* Page faults on fresh memory are a large share of the build time on VMs (several
 * microseconds per 4 KiB page), so the builder keeps its scratch small: 16 bytes of
 * keys and 32 bytes of binary node per triangle, plus the outputs; buffers are reused
 * once their first use is over. Per-triangle boxes are not stored: they are recomputed
 * from the leaf-ordered triangles (sequential reads) when needed. */
typedef struct lbvh {
    const float *vtx;
    const uint32_t *idx;
    uint32_t n;
    int nt, leaf_max;
    int idx_bits;
    uint64_t idx_mask;

    uint64_t *keys;     /* centroid x, y, then the (sorted) keys */
    uint64_t *keys_tmp; /* centroid z, radix sort buffer, then `other` and `bsa` */
    bnode *bn;          /* n - 1 internal nodes */
    _Atomic uint32_t *other; /* Apetrei: range bound left by the first child to arrive */
    float *bsa;         /* surface area of bn[i] (the greedy collapse needs only this) */
    _Atomic uint32_t root;
    uint8_t *hsa;       /* wide height of the surface-area collapse rooted at bn[i] */
    mmd_tri *tris;

    /* phase 1 results, per thread */
    box3 cbox[MAX_THREADS], sbox[MAX_THREADS];
    uint32_t bad[MAX_THREADS];
    float cmin[3], cscale[3];
    uint32_t (*hist)[RADIX];
    int shift;
    uint64_t *src, *dst;
} lbvh;

static inline void box_empty(box3 *b)
{
    for (int k = 0; k < 3; k++) {
        b->lo[k] = INFINITY;
        b->hi[k] = -INFINITY;
    }
}

/* min as x < y ? x : y and max as x > y ? x : y are exactly minss/maxss, so the
 * compiler emits them instead of unpredictable branches; the axes are written out
 * because -O2 does not unroll the 3-iteration loops (and then keeps boxes in memory). */
#define MIN(x, y) ((x) < (y) ? (x) : (y))
#define MAX(x, y) ((x) > (y) ? (x) : (y))

static inline void box_union(box3 *a, const box3 *b)
{
    a->lo[0] = MIN(b->lo[0], a->lo[0]);
    a->lo[1] = MIN(b->lo[1], a->lo[1]);
    a->lo[2] = MIN(b->lo[2], a->lo[2]);
    a->hi[0] = MAX(b->hi[0], a->hi[0]);
    a->hi[1] = MAX(b->hi[1], a->hi[1]);
    a->hi[2] = MAX(b->hi[2], a->hi[2]);
}

static inline float box_area(const box3 *b)
{
    float dx = b->hi[0] - b->lo[0], dy = b->hi[1] - b->lo[1], dz = b->hi[2] - b->lo[2];
    return dx * dy + dy * dz + dz * dx;
}

static inline void tri_box3(const float *p0, const float *p1, const float *p2, box3 *b)
{
    b->lo[0] = MIN(p2[0], MIN(p0[0], p1[0]));
    b->lo[1] = MIN(p2[1], MIN(p0[1], p1[1]));
    b->lo[2] = MIN(p2[2], MIN(p0[2], p1[2]));
    b->hi[0] = MAX(p2[0], MAX(p0[0], p1[0]));
    b->hi[1] = MAX(p2[1], MAX(p0[1], p1[1]));
    b->hi[2] = MAX(p2[2], MAX(p0[2], p1[2]));
}

static inline void leaf_box(const lbvh *B, uint32_t pos, box3 *b)
{
    const mmd_tri *t = &B->tris[pos];
    tri_box3(t->v0, t->v1, t->v2, b);
}

/* ------------------------------------------------------------------------------ */
/* 1. centroid and scene bounds, finiteness                                       */

static void phase_bounds(void *vctx, int tid, int nt)
{
    lbvh *B = vctx;
    uint32_t lo, hi;
    chunk(B->n, nt, tid, &lo, &hi);
    box3 cb, sb;
    box_empty(&cb);
    box_empty(&sb);
    uint32_t bad = NONE;
    /* locals: stores through keys may alias *B as far as the compiler knows */
    const uint32_t *idx = B->idx;
    const float *vtx = B->vtx;
    uint64_t *keys = B->keys, *keys_tmp = B->keys_tmp;
    for (uint32_t i = lo; i < hi; i++) {
        const uint32_t *ix = idx + 3 * (size_t)i;
        const float *p0 = vtx + 3 * (size_t)ix[0];
        const float *p1 = vtx + 3 * (size_t)ix[1];
        const float *p2 = vtx + 3 * (size_t)ix[2];
        /* x - x is 0 for finite x and NaN for inf/NaN, so z is NaN iff any is not finite */
        float z = (p0[0] - p0[0]) + (p0[1] - p0[1]) + (p0[2] - p0[2]) + (p1[0] - p1[0]) +
                  (p1[1] - p1[1]) + (p1[2] - p1[2]) + (p2[0] - p2[0]) + (p2[1] - p2[1]) +
                  (p2[2] - p2[2]);
        if (z != z) {
            if (bad == NONE) bad = i;
            continue;
        }
        box3 b;
        tri_box3(p0, p1, p2, &b);
        float ctr[3] = {(b.lo[0] + b.hi[0]) * 0.5f, (b.lo[1] + b.hi[1]) * 0.5f, (b.lo[2] + b.hi[2]) * 0.5f};
        cb.lo[0] = MIN(ctr[0], cb.lo[0]);
        cb.lo[1] = MIN(ctr[1], cb.lo[1]);
        cb.lo[2] = MIN(ctr[2], cb.lo[2]);
        cb.hi[0] = MAX(ctr[0], cb.hi[0]);
        cb.hi[1] = MAX(ctr[1], cb.hi[1]);
        cb.hi[2] = MAX(ctr[2], cb.hi[2]);
        box_union(&sb, &b);
        /* park the centroid in the key buffers (x, y in keys[i], z in keys_tmp[i]) so
         * the key pass reads 16 bytes per triangle instead of gathering the vertices
         * again; memcpy keeps the type punning well defined */
        memcpy(&keys[i], ctr, 8);
        memcpy(&keys_tmp[i], &ctr[2], 4);
    }
    B->cbox[tid] = cb;
    B->sbox[tid] = sb;
    B->bad[tid] = bad;
}

/* ------------------------------------------------------------------------------ */
/* 2. keys                                                                        */

static inline uint64_t spread21(uint64_t x)
{
    x &= 0x1fffffu;
    x = (x | x << 32) & 0x1f00000000ffffULL;
    x = (x | x << 16) & 0x1f0000ff0000ffULL;
    x = (x | x << 8) & 0x100f00f00f00f00fULL;
    x = (x | x << 4) & 0x10c30c30c30c30c3ULL;
    x = (x | x << 2) & 0x1249249249249249ULL;
    return x;
}

static void phase_keys(void *vctx, int tid, int nt)
{
    lbvh *B = vctx;
    uint32_t lo, hi;
    chunk(B->n, nt, tid, &lo, &hi);
    const float qmax = 2097151.0f;
    uint64_t *keys = B->keys;
    const uint64_t *keys_tmp = B->keys_tmp, idx_mask = B->idx_mask;
    const float cmin[3] = {B->cmin[0], B->cmin[1], B->cmin[2]};
    const float cscale[3] = {B->cscale[0], B->cscale[1], B->cscale[2]};
    for (uint32_t i = lo; i < hi; i++) {
        float c[3];
        memcpy(c, &keys[i], 8);
        memcpy(&c[2], &keys_tmp[i], 4);
        float fx = (c[0] - cmin[0]) * cscale[0], fy = (c[1] - cmin[1]) * cscale[1];
        float fz = (c[2] - cmin[2]) * cscale[2];
        fx = MAX(MIN(fx, qmax), 0.0f);
        fy = MAX(MIN(fy, qmax), 0.0f);
        fz = MAX(MIN(fz, qmax), 0.0f);
        uint32_t q[3] = {(uint32_t)fx, (uint32_t)fy, (uint32_t)fz};
        uint64_t m = spread21(q[0]) << 2 | spread21(q[1]) << 1 | spread21(q[2]);
        keys[i] = ((m << 1) & ~idx_mask) | (uint64_t)i;
    }
}

/* ------------------------------------------------------------------------------ */
/* 3. LSD radix sort of the keys above the index bits                             */

static void phase_hist(void *vctx, int tid, int nt)
{
    lbvh *B = vctx;
    uint32_t lo, hi;
    chunk(B->n, nt, tid, &lo, &hi);
    uint32_t *h = B->hist[tid];
    memset(h, 0, sizeof B->hist[0]);
    const uint64_t *s = B->src;
    int sh = B->shift;
    for (uint32_t i = lo; i < hi; i++) h[(s[i] >> sh) & (RADIX - 1)]++;
}

static void phase_scatter(void *vctx, int tid, int nt)
{
    lbvh *B = vctx;
    uint32_t lo, hi;
    chunk(B->n, nt, tid, &lo, &hi);
    /* this thread's write offset per digit: all smaller digits, then the same digit in
     * lower-numbered threads (which hold earlier elements): a stable scatter */
    uint32_t off[RADIX];
    uint32_t run = 0;
    for (uint32_t d = 0; d < RADIX; d++) {
        uint32_t mine = run;
        for (int t = 0; t < nt; t++) {
            if (t == tid) mine = run;
            run += B->hist[t][d];
        }
        off[d] = mine;
    }
    const uint64_t *s = B->src;
    uint64_t *o = B->dst;
    int sh = B->shift;
    for (uint32_t i = lo; i < hi; i++) {
        uint64_t k = s[i];
        o[off[(k >> sh) & (RADIX - 1)]++] = k;
    }
}

static void radix_sort(lbvh *B)
{
    B->src = B->keys;
    B->dst = B->keys_tmp;
    for (int shift = B->idx_bits; shift < 64; shift += RADIX_BITS) {
        B->shift = shift;
        run_par(B->nt, phase_hist, B);
        /* a digit shared by every key leaves the (stable) order unchanged */
        int trivial = 0;
        for (uint32_t d = 0; d < RADIX && !trivial; d++) {
            uint64_t tot = 0;
            for (int t = 0; t < B->nt; t++) tot += B->hist[t][d];
            if (tot == B->n) trivial = 1;
        }
        if (trivial) continue;
        run_par(B->nt, phase_scatter, B);
        uint64_t *t = B->src;
        B->src = B->dst;
        B->dst = t;
    }
    if (B->src != B->keys) {
        B->keys_tmp = B->keys;
        B->keys = B->src;
    }
}

/* ------------------------------------------------------------------------------ */
/* 4. leaf-ordered triangles, then Apetrei's bottom-up hierarchy + AABBs          */

static void phase_gather(void *vctx, int tid, int nt)
{
    lbvh *B = vctx;
    uint32_t lo, hi;
    chunk(B->n, nt, tid, &lo, &hi);
    const uint64_t *key = B->keys;
    const uint64_t mask = B->idx_mask;
    const uint32_t *idx = B->idx;
    const float *vtx = B->vtx;
    mmd_tri *tris = B->tris;
    _Atomic uint32_t *other = B->other;
    const uint32_t n = B->n;
    /* the sorted order is a random permutation of the input order for unstructured
     * input; prefetching hides most of the cache and TLB misses of the gather */
    for (uint32_t i = lo; i < hi && i < lo + 2 * PREFETCH_AHEAD; i++) PREFETCH(idx + 3 * (size_t)(key[i] & mask));
    for (uint32_t i = lo; i < hi; i++) {
        if (i + 2 * PREFETCH_AHEAD < hi) PREFETCH(idx + 3 * (size_t)(key[i + 2 * PREFETCH_AHEAD] & mask));
        if (i + PREFETCH_AHEAD < hi) {
            const uint32_t *q = idx + 3 * (size_t)(key[i + PREFETCH_AHEAD] & mask);
            PREFETCH(vtx + 3 * (size_t)q[0]);
            PREFETCH(vtx + 3 * (size_t)q[1]);
            PREFETCH(vtx + 3 * (size_t)q[2]);
        }
        uint32_t prim = (uint32_t)(key[i] & mask);
        const uint32_t *ix = idx + 3 * (size_t)prim;
        mmd_tri *t = &tris[i];
        memcpy(t->v0, vtx + 3 * (size_t)ix[0], sizeof t->v0);
        memcpy(t->v1, vtx + 3 * (size_t)ix[1], sizeof t->v1);
        memcpy(t->v2, vtx + 3 * (size_t)ix[2], sizeof t->v2);
        t->prim = prim;
        t->pad1 = 0;
        t->pad2 = 0;
        if (i + 1 < n) atomic_init(&other[i], NONE);
    }
}

static void phase_hierarchy(void *vctx, int tid, int nt)
{
    lbvh *B = vctx;
    uint32_t lo, hi;
    chunk(B->n, nt, tid, &lo, &hi);
    const uint64_t *key = B->keys;
    const uint32_t last = B->n - 1;
    bnode *bn = B->bn;
    float *bsa = B->bsa;
    _Atomic uint32_t *other = B->other;
    for (uint32_t i = lo; i < hi; i++) {
        box3 b;
        leaf_box(B, i, &b);
        uint32_t left = i, right = i, cur = i | LEAF_FLAG;
        for (;;) {
            /* The parent is the neighbouring split with the longer common prefix, i.e.
             * the smaller XOR (the two neighbouring XORs of a node differ in their top
             * bit, so comparing them compares prefix lengths). The choice is a coin
             * flip for the branch predictor, so it is computed with selects. */
            uint64_t xl = key[left - (left != 0)] ^ key[left];      /* 0 at the ends, */
            uint64_t xr = key[right] ^ key[right + (right != last)]; /* masked below */
            int up_right = (left == 0) | ((right != last) & (xr < xl));
            uint32_t parent = up_right ? right : left - 1;
            int slot = up_right ? 0 : 1;
            bn[parent].child[slot] = cur;
            uint32_t prev = atomic_exchange_explicit(&other[parent], up_right ? left : right,
                                                     memory_order_acq_rel);
            if (prev == NONE) break; /* the sibling is not done; it will continue */
            right = up_right ? prev : right;
            left = up_right ? left : prev;
            uint32_t sib = bn[parent].child[slot ^ 1];
            box3 sb;
            if (sib & LEAF_FLAG)
                leaf_box(B, sib & ~LEAF_FLAG, &sb);
            else
                sb = bn[sib].b;
            box_union(&b, &sb);
            bn[parent].b = b;
            bsa[parent] = box_area(&b);
            cur = parent;
            if (left == 0 && right == last) {
                atomic_store_explicit(&B->root, parent, memory_order_relaxed);
                break;
            }
        }
    }
}

/* ------------------------------------------------------------------------------ */
/* 5. collapse to 8-wide nodes                                                    */

/* Nodes are emitted twice: a counting pass (out == NULL) sizes every subtree, then a
 * writing pass stores each node straight into its final pre-order slot. Recomputing
 * the greedy choice is cheaper than building into growable buffers and copying. */
typedef struct emitter {
    mmd_bvh8_node *out; /* NULL: count only */
    uint32_t base;      /* index of this emitter's first node in the final array */
    uint32_t n;         /* nodes emitted so far */
    uint32_t *refs;     /* optional: binary node of each emitted node */
} emitter;

typedef struct citem {
    uint32_t ref, first, count;
    float sa;
} citem;

static inline float leaf_area(const lbvh *B, uint32_t pos)
{
    box3 b;
    leaf_box(B, pos, &b);
    return box_area(&b);
}

static inline citem make_item(const lbvh *B, uint32_t ref, uint32_t first, uint32_t last)
{
    citem it;
    it.ref = ref;
    it.first = first;
    it.count = last - first + 1;
    it.sa = (ref & LEAF_FLAG) ? leaf_area(B, first) : B->bsa[ref];
    return it;
}

static inline void item_box(const lbvh *B, const citem *it, box3 *b)
{
    if (it->ref & LEAF_FLAG)
        leaf_box(B, it->first, b);
    else
        *b = B->bn[it->ref].b;
}

/* Greedy surface-area opening of internal binary node x (range [first, last]) into at
 * most 8 children, returned in sorted-range order. */
static int gather_items(const lbvh *B, uint32_t x, uint32_t first, uint32_t last, citem it[8])
{
    const bnode *nx = &B->bn[x];
    it[0] = make_item(B, nx->child[0], first, x);
    it[1] = make_item(B, nx->child[1], x + 1, last);
    int k = 2;
    while (k < 8) {
        int best = -1;
        float bsa = -1.0f;
        for (int j = 0; j < k; j++)
            if (it[j].count > (uint32_t)B->leaf_max && it[j].sa > bsa) {
                best = j;
                bsa = it[j].sa;
            }
        if (best < 0) break;
        uint32_t r = it[best].ref, f = it[best].first, l = f + it[best].count - 1;
        const bnode *nb = &B->bn[r];
        it[k++] = make_item(B, nb->child[1], r + 1, l);
        it[best] = make_item(B, nb->child[0], f, r);
    }
    /* ranges are disjoint: sort by start */
    for (int j = 1; j < k; j++) {
        citem t = it[j];
        int i = j;
        for (; i > 0 && it[i - 1].first > t.first; i--) it[i] = it[i - 1];
        it[i] = t;
    }
    return k;
}

/* Grow every child box by one scene-wide margin. The watertight triangle test's t carries
 * a rounding error that grows with the coordinates' magnitude (tens of ulps of the scene
 * size for large triangles), while the box test's slack is relative to t alone; without a
 * margin a traversal could cull a box whose triangle brute force reports a hair closer
 * than the current best hit. One margin for all boxes keeps children inside parents. */
static void pad_boxes(mmd_bvh *b)
{
    float scale = 0.0f;
    for (int k = 0; k < 3; k++) {
        scale = fmaxf(scale, fmaxf(fabsf(b->bbox_min[k]), fabsf(b->bbox_max[k])));
        scale = fmaxf(scale, b->bbox_max[k] - b->bbox_min[k]);
    }
    float pad = ldexpf(scale, -15);
    /* the BVH's own bounds include the margin, so the root's slots stay inside them */
    for (int k = 0; k < 3; k++) b->bbox_min[k] -= pad, b->bbox_max[k] += pad;
    for (uint32_t i = 0; i < b->n_nodes; i++) {
        mmd_bvh8_node *nd = &b->nodes[i];
        for (int j = 0; j < 8; j++) {
            if (nd->child[j] == 0) continue;
            nd->lo_x[j] -= pad, nd->lo_y[j] -= pad, nd->lo_z[j] -= pad;
            nd->hi_x[j] += pad, nd->hi_y[j] += pad, nd->hi_z[j] += pad;
        }
    }
}

static void write_node(mmd_bvh8_node *nd, int k, const box3 *bx, const int32_t *child)
{
    for (int j = 0; j < 8; j++) {
        if (j < k) {
            nd->lo_x[j] = bx[j].lo[0];
            nd->lo_y[j] = bx[j].lo[1];
            nd->lo_z[j] = bx[j].lo[2];
            nd->hi_x[j] = bx[j].hi[0];
            nd->hi_y[j] = bx[j].hi[1];
            nd->hi_z[j] = bx[j].hi[2];
            nd->child[j] = child[j];
        } else {
            nd->lo_x[j] = nd->lo_y[j] = nd->lo_z[j] = INFINITY;
            nd->hi_x[j] = nd->hi_y[j] = nd->hi_z[j] = -INFINITY;
            nd->child[j] = 0;
        }
    }
}

static inline int32_t leaf_code(uint32_t first, uint32_t count)
{
    return (int32_t)~((first << MMD_LEAF_COUNT_BITS) | (count - 1));
}

typedef struct task {
    uint32_t ref, first, last;
    int height;
    uint32_t count; /* wide nodes */
    uint32_t base;
} task;

typedef struct tasklist {
    task *t;
    uint32_t n, cap;
    uint32_t cutoff;
    int oom;
} tasklist;

static inline uint8_t clamp_h(int h)
{
    return (uint8_t)(h < 255 ? h : 255);
}

/* Surface-area collapse of the subtree at internal binary node x, pre-order. With tl,
 * internal children of at most tl->cutoff triangles are deferred as tasks (placeholder
 * child TASK_FLAG | task id, height not included). Returns the node's local index. */
static uint32_t emit_sa(lbvh *B, emitter *e, uint32_t x, uint32_t first, uint32_t last,
                        tasklist *tl, int *height)
{
    uint32_t me = e->n++;
    if (e->refs) e->refs[me] = x;
    citem it[8];
    int k = gather_items(B, x, first, last, it);
    box3 bx[8];
    int32_t child[8];
    int h = 0;
    for (int j = 0; j < k; j++) {
        if (e->out) item_box(B, &it[j], &bx[j]);
        uint32_t f = it[j].first, l = f + it[j].count - 1;
        if (it[j].count <= (uint32_t)B->leaf_max) {
            child[j] = leaf_code(f, it[j].count);
        } else if (tl && it[j].count <= tl->cutoff) {
            if (tl->n == tl->cap) {
                uint32_t cap = tl->cap ? tl->cap * 2 : 64;
                task *p = realloc(tl->t, cap * sizeof *p);
                if (!p) {
                    tl->oom = 1;
                    cap = tl->cap; /* keep counting; the caller reports the failure */
                } else {
                    tl->t = p;
                    tl->cap = cap;
                }
            }
            if (tl->n < tl->cap) tl->t[tl->n] = (task){.ref = it[j].ref, .first = f, .last = l};
            child[j] = TASK_FLAG | (int32_t)tl->n++;
        } else {
            int ch;
            child[j] = (int32_t)(e->base + emit_sa(B, e, it[j].ref, f, l, tl, &ch));
            h = ch > h ? ch : h;
        }
    }
    if (e->out) write_node(&e->out[me], k, bx, child);
    *height = h + 1;
    B->hsa[x] = clamp_h(h + 1);
    return me;
}

typedef struct collapse_ctx {
    lbvh *B;
    tasklist *tl;
    _Atomic uint32_t next;
    mmd_bvh8_node *out; /* NULL in the counting pass */
} collapse_ctx;

static void phase_tasks(void *vctx, int tid, int nt)
{
    (void)tid;
    (void)nt;
    collapse_ctx *C = vctx;
    /* tasks are claimed dynamically; each writes only its own slice, so the result does
     * not depend on who runs what */
    for (;;) {
        uint32_t k = atomic_fetch_add_explicit(&C->next, 1, memory_order_relaxed);
        if (k >= C->tl->n) break;
        task *t = &C->tl->t[k];
        emitter e = {.out = C->out ? C->out + t->base : NULL, .base = t->base};
        emit_sa(C->B, &e, t->ref, t->first, t->last, NULL, &t->height);
        t->count = e.n;
    }
}

/* Pre-order positions of the top nodes and the task blocks; returns the height. */
static int layout_top(lbvh *B, const mmd_bvh8_node *top, const uint32_t *top_ref, tasklist *tl,
                      uint32_t t, uint32_t *pos, uint32_t *map)
{
    map[t] = (*pos)++;
    int h = 0;
    for (int j = 0; j < 8; j++) {
        int32_t c = top[t].child[j];
        if (c <= 0) continue;
        int ch;
        if (c & TASK_FLAG) {
            task *tk = &tl->t[c & ~TASK_FLAG];
            tk->base = *pos;
            *pos += tk->count;
            ch = tk->height;
        } else {
            ch = layout_top(B, top, top_ref, tl, (uint32_t)c, pos, map);
        }
        h = ch > h ? ch : h;
    }
    B->hsa[top_ref[t]] = clamp_h(h + 1);
    return h + 1;
}

/* Parallel surface-area collapse of the whole tree. */
static mmd_status collapse_sa(lbvh *B, mmd_bvh8_node **nodes_out, uint32_t *n_out, int *depth)
{
    mmd_status st = MMD_OK;
    tasklist tl = {0};
    mmd_bvh8_node *top = NULL, *out = NULL;
    uint32_t *top_ref = NULL, *map = NULL;
    uint32_t root = atomic_load(&B->root);
    int h;

    /* about 64 subtrees for the threads; the cutoff does not depend on the thread
     * count (the output would not either way) */
    tl.cutoff = B->n / 64 > 1024 ? B->n / 64 : 1024;
    emitter e0 = {0};
    emit_sa(B, &e0, root, 0, B->n - 1, &tl, &h);
    uint32_t n_top = e0.n;
    top = mmd_malloc(n_top, sizeof *top, "BVH top nodes");
    top_ref = mmd_malloc(n_top, sizeof *top_ref, "BVH top nodes");
    map = mmd_malloc(n_top, sizeof *map, "BVH top nodes");
    if (!top || !top_ref || !map) {
        st = MMD_ERR_NOMEM;
        goto done;
    }
    if (tl.oom) {
        st = mmd_error(MMD_ERR_NOMEM, "out of memory collapsing the BVH");
        goto done;
    }
    tl.n = 0;
    emitter e1 = {.out = top, .refs = top_ref};
    emit_sa(B, &e1, root, 0, B->n - 1, &tl, &h);

    collapse_ctx C = {.B = B, .tl = &tl};
    int nt = B->nt < (int)tl.n ? B->nt : (int)tl.n;
    atomic_init(&C.next, 0);
    if (tl.n) run_par(nt, phase_tasks, &C); /* count */

    uint32_t total = 0;
    *depth = layout_top(B, top, top_ref, &tl, 0, &total, map);
    out = big_alloc(total, sizeof *out, "BVH nodes");
    if (!out) {
        st = MMD_ERR_NOMEM;
        goto done;
    }
    for (uint32_t t = 0; t < n_top; t++) {
        mmd_bvh8_node *d = &out[map[t]];
        *d = top[t];
        for (int j = 0; j < 8; j++) {
            int32_t c = d->child[j];
            if (c <= 0) continue;
            d->child[j] = (c & TASK_FLAG) ? (int32_t)tl.t[c & ~TASK_FLAG].base : (int32_t)map[c];
        }
    }
    C.out = out;
    atomic_store(&C.next, 0);
    if (tl.n) run_par(nt, phase_tasks, &C); /* write */
    *nodes_out = out;
    *n_out = total;
    out = NULL;
done:
    free(out);
    free(top);
    free(tl.t);
    free(top_ref);
    free(map);
    return st;
}

/* ------------------------------------------------------------------------------ */
/* 6. depth-bounded collapse (fallback)                                           */

/* Most triangles a subtree may hold when it has `levels` wide levels left. */
static uint64_t capacity(const lbvh *B, int levels)
{
    if (levels <= 0) return 0;
    if (levels > 20) return UINT64_MAX;
    return (uint64_t)B->leaf_max << (3 * levels);
}

static void range_box(const lbvh *B, uint32_t a, uint32_t b, box3 *out)
{
    box_empty(out);
    for (uint32_t i = a; i <= b; i++) {
        box3 t;
        leaf_box(B, i, &t);
        box_union(out, &t);
    }
}

/* Sorted range [a, b] (more than leaf_max triangles) split evenly into up to 8 parts,
 * which fits in `levels` levels whenever b - a + 1 <= capacity(levels). */
static uint32_t emit_balanced(lbvh *B, emitter *e, uint32_t a, uint32_t b, int levels)
{
    uint32_t me = e->n++;
    uint32_t m = b - a + 1, L = (uint32_t)B->leaf_max;
    uint32_t parts = m <= 8 * L ? (m + L - 1) / L : 8;
    box3 bx[8];
    int32_t child[8];
    for (uint32_t p = 0; p < parts; p++) {
        uint32_t pa = a + (uint32_t)((uint64_t)m * p / parts);
        uint32_t pb = a + (uint32_t)((uint64_t)m * (p + 1) / parts) - 1;
        if (e->out) range_box(B, pa, pb, &bx[p]);
        if (pb - pa + 1 <= L)
            child[p] = leaf_code(pa, pb - pa + 1);
        else
            child[p] = (int32_t)(e->base + emit_balanced(B, e, pa, pb, levels - 1));
    }
    if (e->out) write_node(&e->out[me], (int)parts, bx, child);
    return me;
}

/* Keep the surface-area collapse where it fits in `levels`, split evenly where not. */
static uint32_t emit_fit(lbvh *B, emitter *e, uint32_t x, uint32_t first, uint32_t last,
                         int levels)
{
    int h;
    if (B->hsa[x] <= levels) return emit_sa(B, e, x, first, last, NULL, &h);
    citem it[8];
    int k = gather_items(B, x, first, last, it);
    int keep = levels >= 2;
    for (int j = 0; j < k && keep; j++)
        if (it[j].count > (uint32_t)B->leaf_max && it[j].count > capacity(B, levels - 1)) keep = 0;
    if (!keep) return emit_balanced(B, e, first, last, levels);
    uint32_t me = e->n++;
    box3 bx[8];
    int32_t child[8];
    for (int j = 0; j < k; j++) {
        if (e->out) item_box(B, &it[j], &bx[j]);
        uint32_t f = it[j].first, l = f + it[j].count - 1;
        if (it[j].count <= (uint32_t)B->leaf_max)
            child[j] = leaf_code(f, it[j].count);
        else
            child[j] = (int32_t)(e->base + emit_fit(B, e, it[j].ref, f, l, levels - 1));
    }
    if (e->out) write_node(&e->out[me], k, bx, child);
    return me;
}

static int tree_height(const mmd_bvh8_node *nodes, uint32_t i)
{
    int h = 0;
    for (int j = 0; j < 8; j++)
        if (nodes[i].child[j] > 0) {
            int c = tree_height(nodes, (uint32_t)nodes[i].child[j]);
            h = c > h ? c : h;
        }
    return h + 1;
}

/* ------------------------------------------------------------------------------ */

static int max_depth_limit(uint32_t n, int leaf_max)
{
    int lim = MMD_BVH_MAX_DEPTH;
    /* debug knob to exercise the depth-bounded fallback; never raises the limit */
    const char *e = getenv("MMDIFF_BVH_MAX_DEPTH");
    if (e && atoi(e) > 0 && atoi(e) < lim) lim = atoi(e);
    int need = 1;
    while (((uint64_t)leaf_max << (3 * need)) < n) need++;
    return lim > need ? lim : need;
}

mmd_status mmd_bvh_build(const float *vertices, const uint32_t *indices, uint32_t n_tris,
                         const mmd_bvh_options *opt, mmd_bvh **out)
{
    double tm[6];
    tm[0] = mmd_now();
    if (!out) return mmd_error(MMD_ERR_INVALID, "mmd_bvh_build: no output pointer");
    *out = NULL;
    if (n_tris == 0) return mmd_error(MMD_ERR_INVALID, "BVH build: the scene has no triangles");
    if (!vertices || !indices) return mmd_error(MMD_ERR_INVALID, "BVH build: no vertex or index data");
    if (n_tris > MMD_BVH_MAX_TRIS)
        return mmd_error(MMD_ERR_NOMEM, "BVH build: %u triangles exceed the limit of %u",
                         n_tris, (unsigned)MMD_BVH_MAX_TRIS);
    int leaf_max = opt && opt->max_leaf_tris ? opt->max_leaf_tris : 4;
    if (leaf_max < 1 || leaf_max > MMD_LEAF_MAX_TRIS)
        return mmd_error(MMD_ERR_INVALID, "BVH build: max_leaf_tris %d outside 1..%d", leaf_max,
                         MMD_LEAF_MAX_TRIS);
    int nt = opt && opt->threads > 0 ? opt->threads : mmd_num_threads();
    if (nt > MAX_THREADS) nt = MAX_THREADS;
    if ((uint32_t)nt > n_tris / MIN_TRIS_PER_THREAD) nt = (int)(n_tris / MIN_TRIS_PER_THREAD);
    if (nt < 1) nt = 1;

    mmd_status st = MMD_OK;
    mmd_bvh *b = NULL;
    lbvh *B = calloc(1, sizeof *B);
    if (!B) return mmd_error(MMD_ERR_NOMEM, "out of memory for the BVH builder");
    B->vtx = vertices;
    B->idx = indices;
    B->n = n_tris;
    B->nt = nt;
    B->leaf_max = leaf_max;
    int ib = 1;
    while (ib < 32 && ((uint64_t)1 << ib) < n_tris) ib++;
    B->idx_bits = ib;
    B->idx_mask = ((uint64_t)1 << ib) - 1;
    uint32_t ni = n_tris > 1 ? n_tris - 1 : 1;
    B->keys = big_alloc(n_tris, sizeof *B->keys, "BVH keys");
    B->keys_tmp = big_alloc(n_tris, sizeof *B->keys_tmp, "BVH keys");
    B->bn = big_alloc(ni, sizeof *B->bn, "BVH binary nodes");
    B->hsa = mmd_calloc(ni, 1, "BVH heights");
    B->hist = mmd_malloc((size_t)nt, sizeof *B->hist, "BVH radix histograms");
    b = mmd_calloc(1, sizeof *b, "BVH");
    if (b) b->tris = big_alloc(n_tris, sizeof *b->tris, "BVH triangles");
    if (!B->keys || !B->keys_tmp || !B->bn || !B->hsa || !B->hist || !b || !b->tris) {
        st = MMD_ERR_NOMEM;
        goto done;
    }
    B->tris = b->tris;

    /* 1 */
    run_par(nt, phase_bounds, B);
    box3 cb, sb;
    box_empty(&cb);
    box_empty(&sb);
    uint32_t bad = NONE;
    for (int t = 0; t < nt; t++) {
        box_union(&cb, &B->cbox[t]);
        box_union(&sb, &B->sbox[t]);
        if (B->bad[t] < bad) bad = B->bad[t];
    }
    if (bad != NONE) {
        const uint32_t *ix = indices + 3 * (size_t)bad;
        st = mmd_error(MMD_ERR_INVALID,
                       "BVH build: triangle %u (vertices %u, %u, %u) has a NaN or infinite coordinate",
                       bad, ix[0], ix[1], ix[2]);
        goto done;
    }
    for (int k = 0; k < 3; k++) {
        float ext = cb.hi[k] - cb.lo[k];
        B->cmin[k] = cb.lo[k];
        /* a zero or overflowing extent gives scale 0: that axis adds no Morton bits */
        B->cscale[k] = ext > 0.0f && ext < INFINITY ? 2097152.0f / ext : 0.0f;
        b->bbox_min[k] = sb.lo[k];
        b->bbox_max[k] = sb.hi[k];
    }

    /* 2, 3 */
    run_par(nt, phase_keys, B);
    tm[1] = mmd_now();
    if (n_tris > 1) radix_sort(B);
    tm[2] = mmd_now();

    /* 4: the spare sort buffer (8 bytes per key) holds the 4-byte Apetrei flags and
     * the 4-byte node areas: no fresh pages */
    B->other = (_Atomic uint32_t *)(void *)B->keys_tmp;
    B->bsa = (float *)(void *)((uint32_t *)(void *)B->keys_tmp + n_tris);
    atomic_init(&B->root, n_tris > 1 ? NONE : (0u | LEAF_FLAG));
    run_par(nt, phase_gather, B);
    tm[3] = mmd_now();
    if (n_tris > 1) run_par(nt, phase_hierarchy, B);
    tm[4] = mmd_now();

    /* 5 */
    uint32_t root = atomic_load(&B->root);
    int depth = 1;
    if (n_tris <= (uint32_t)leaf_max) {
        /* everything fits in one leaf under the root */
        b->nodes = mmd_malloc(1, sizeof *b->nodes, "BVH nodes");
        if (!b->nodes) {
            st = MMD_ERR_NOMEM;
            goto done;
        }
        write_node(b->nodes, 1, &sb, (int32_t[1]){leaf_code(0, n_tris)});
        b->n_nodes = 1;
    } else {
        if (root == NONE || (root & LEAF_FLAG)) {
            st = mmd_error(MMD_ERR_INTERNAL, "BVH build: hierarchy has no root");
            goto done;
        }
        st = collapse_sa(B, &b->nodes, &b->n_nodes, &depth);
        if (st != MMD_OK) goto done;
        /* 6 */
        int lim = max_depth_limit(n_tris, leaf_max);
        if (depth > lim) {
            emitter e = {0};
            emit_fit(B, &e, root, 0, n_tris - 1, lim);
            mmd_bvh8_node *nodes = mmd_malloc(e.n, sizeof *nodes, "BVH nodes");
            if (!nodes) {
                st = MMD_ERR_NOMEM;
                goto done;
            }
            emitter w = {.out = nodes};
            emit_fit(B, &w, root, 0, n_tris - 1, lim);
            mmd_debug("BVH: depth %d > %d, rebuilt with balanced splits", depth, lim);
            free(b->nodes);
            b->nodes = nodes;
            b->n_nodes = w.n;
            depth = tree_height(b->nodes, 0);
        }
    }
    b->n_tris = n_tris;
    b->depth = depth;
    pad_boxes(b);
    tm[5] = mmd_now();
    mmd_debug("BVH: %u tris, %d threads: bounds+keys %.1f ms, sort %.1f ms, gather %.1f ms, "
              "hierarchy %.1f ms, collapse %.1f ms; %u nodes, depth %d",
              n_tris, nt, 1e3 * (tm[1] - tm[0]), 1e3 * (tm[2] - tm[1]), 1e3 * (tm[3] - tm[2]),
              1e3 * (tm[4] - tm[3]), 1e3 * (tm[5] - tm[4]), b->n_nodes, depth);

done:
    if (B) {
        free(B->keys);
        free(B->keys_tmp);
        free(B->bn);
        free(B->hsa);
        free(B->hist);
        free(B);
    }
    if (st != MMD_OK) {
        mmd_bvh_destroy(b);
        return st;
    }
    b->build_seconds = mmd_now() - tm[0];
    *out = b;
    return MMD_OK;
}

void mmd_bvh_destroy(mmd_bvh *b)
{
    if (!b) return;
    free(b->nodes);
    free(b->tris);
    free(b);
}
