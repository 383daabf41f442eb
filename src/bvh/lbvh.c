/*
 * lbvh.c - host BVH build: linear BVH on Morton codes, collapsed to 8-wide nodes.
 *
 * 1. Centroid and scene bounds, and a check that every coordinate is finite.
 * 2. 64-bit keys: the top (64 - b) bits of a 63-bit Morton code (21 bits per axis) of
 *    the triangle's box centre, the low b = ceil(log2 n) bits the triangle index. Keys
 *    are unique, which is Karras' tie-break for duplicate codes folded into the key,
 *    and the index bits need no sorting: the radix sort is stable and the keys start
 *    in index order. Dense scenes keep 44 Morton bits at 1M triangles (about 15 per
 *    axis) where 30-bit codes would collide. The key pass also counts the histogram of
 *    the top digit.
 * 3. Radix sort, most significant digit first: one parallel scatter on the top 11 bits,
 *    then every bucket on its own (threads take buckets as they come), in cache, with
 *    narrower digits and an insertion sort for the small ones.
 * 4. Triangles gathered into sorted order (the output array) and, in the same pass, the
 *    binary hierarchy and its AABBs: the tree of Karras, "Maximizing Parallelism in the
 *    Construction of BVHs, Octrees, and k-d Trees", HPG 2012 (internal node i splits
 *    between sorted keys i and i + 1) is the Cartesian tree of the splits' highest
 *    differing bits, built left to right with a stack (no atomics, no searches); each
 *    thread builds its chunk and a short sequential pass joins the chunks' spines.
 * 5. Collapse to 8-wide nodes top-down: starting from a node's two children, repeatedly
 *    open the child with the largest surface area until there are 8; a subtree with at
 *    most max_leaf_tris triangles becomes a leaf. A counting pass (the top sequential,
 *    the subtrees below a size cutoff in parallel) makes every choice once and records
 *    it with the size and height of each collapsed subtree; the writing pass replays the
 *    choices and stores every node straight into its depth-first (pre-order) slot.
 *    Leaves cover contiguous runs of the sorted order, so the triangle array is simply
 *    the sorted order.
 * 6. If the wide tree would be deeper than MMD_BVH_MAX_DEPTH (the traversal stack
 *    bound), the writing pass keeps the surface-area choice where it fits the remaining
 *    depth budget and splits the sorted range evenly 8 ways where it does not.
 *
 * Every step produces a result that does not depend on the thread count (the sorted
 * order is a total order on unique keys; the tree is a function of the keys; boxes
 * are min/max unions taken left child first), so builds are byte-identical for any
 * `threads`. The phases run on one team of threads per build; the scratch memory is
 * kept from one build to the next (see scratch_get).
 *
 * With quality MMD_BVH_SAH, steps 2-4 are replaced by the binned SAH build of sah.c,
 * which hands over a binary tree in the same form (bvh_internal.h); steps 5 and 6 are
 * the same for both.
 */
#include "bvh_internal.h"
#include "mmd_isect.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define LEAF_FLAG MMD_BVH_LEAF_FLAG /* binary child refs: sorted leaf position | LEAF_FLAG */
#define NONE MMD_BVH_NONE
#define RADIX_BITS 11
#define RADIX (1u << RADIX_BITS)
#define MAX_THREADS MMD_BVH_MAX_THREADS
#define SPINE_MAX 130 /* hb takes 64 values: at most 64 chunk prefix maxima + 64 open nodes */
#define MIN_TRIS_PER_THREAD 8192
#define PREFETCH_AHEAD 16
#if defined(__GNUC__)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) ((void)(p))
#endif

/* Binary LBVH internal node i splits sorted positions i | i + 1, which is the form of
 * the binary tree the collapse takes (bnode, bvh_internal.h). */

/* ------------------------------------------------------------------------------ */
/* threads                                                                        */

typedef mmd_bvh_par_fn par_fn;

/* The build's threads: started once per build, they wait between phases (spinning
 * briefly, then on a condition variable). mmd_bvh_team_run(T, fn, ctx) runs
 * fn(ctx, tid, nt) for tid = 0..nt-1, tid 0 on the caller. The work of a thread that
 * could not be created is done by the caller, so phases must split work by tid and
 * never wait on one another. */
typedef struct mmd_bvh_team team;
struct mmd_bvh_team {
    int nt, n_started; /* workers 1..n_started run */
    pthread_t th[MAX_THREADS];
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    _Atomic unsigned gen; /* phase number */
    _Atomic int pending;  /* workers still in the current phase */
    par_fn fn;
    void *ctx;
    int quit;
};

typedef struct worker_arg {
    team *T;
    int tid;
} worker_arg;

#define SPIN_WAIT 20000

static inline void cpu_relax(void)
{
#if defined(__SSE2__)
    _mm_pause();
#endif
}

static void *team_worker(void *p)
{
    worker_arg *a = p;
    team *T = a->T;
    int tid = a->tid;
    unsigned seen = 0;
    for (;;) {
        int spin = 0;
        while (atomic_load(&T->gen) == seen && spin < SPIN_WAIT) {
            cpu_relax();
            spin++;
        }
        pthread_mutex_lock(&T->mu);
        while (atomic_load(&T->gen) == seen && !T->quit) pthread_cond_wait(&T->go, &T->mu);
        int quit = T->quit;
        pthread_mutex_unlock(&T->mu);
        if (quit) break;
        seen = atomic_load(&T->gen);
        T->fn(T->ctx, tid, T->nt);
        if (atomic_fetch_sub(&T->pending, 1) == 1) {
            pthread_mutex_lock(&T->mu);
            pthread_cond_signal(&T->done);
            pthread_mutex_unlock(&T->mu);
        }
    }
    return NULL;
}

void mmd_bvh_team_run(team *T, par_fn fn, void *ctx)
{
    if (T->nt <= 1) {
        fn(ctx, 0, 1);
        return;
    }
    T->fn = fn;
    T->ctx = ctx;
    atomic_store(&T->pending, T->n_started);
    pthread_mutex_lock(&T->mu);
    atomic_fetch_add(&T->gen, 1);
    pthread_cond_broadcast(&T->go);
    pthread_mutex_unlock(&T->mu);
    fn(ctx, 0, T->nt);
    for (int t = T->n_started + 1; t < T->nt; t++) fn(ctx, t, T->nt);
    int spin = 0;
    while (atomic_load(&T->pending) > 0 && spin < SPIN_WAIT) {
        cpu_relax();
        spin++;
    }
    pthread_mutex_lock(&T->mu);
    while (atomic_load(&T->pending) > 0) pthread_cond_wait(&T->done, &T->mu);
    pthread_mutex_unlock(&T->mu);
}

static void team_start(team *T, int nt, worker_arg *args)
{
    T->nt = nt;
    T->n_started = 0;
    T->quit = 0;
    atomic_init(&T->gen, 0);
    atomic_init(&T->pending, 0);
    if (nt <= 1) return;
    int ok = pthread_mutex_init(&T->mu, NULL) == 0;
    if (ok && pthread_cond_init(&T->go, NULL) != 0) {
        pthread_mutex_destroy(&T->mu);
        ok = 0;
    }
    if (ok && pthread_cond_init(&T->done, NULL) != 0) {
        pthread_cond_destroy(&T->go);
        pthread_mutex_destroy(&T->mu);
        ok = 0;
    }
    if (!ok) {
        T->nt = 1; /* everything runs on the caller */
        return;
    }
    for (int t = 1; t < nt; t++) {
        args[t] = (worker_arg){T, t};
        if (pthread_create(&T->th[t], NULL, team_worker, &args[t]) != 0) break;
        T->n_started = t;
    }
}

static void team_stop(team *T)
{
    if (T->nt <= 1) return;
    pthread_mutex_lock(&T->mu);
    T->quit = 1;
    pthread_cond_broadcast(&T->go);
    pthread_mutex_unlock(&T->mu);
    for (int t = 1; t <= T->n_started; t++) pthread_join(T->th[t], NULL);
    pthread_cond_destroy(&T->go);
    pthread_cond_destroy(&T->done);
    pthread_mutex_destroy(&T->mu);
}

static void chunk(uint32_t n, int nt, int tid, uint32_t *lo, uint32_t *hi)
{
    *lo = (uint32_t)((uint64_t)n * (uint64_t)tid / (uint64_t)nt);
    *hi = (uint32_t)((uint64_t)n * (uint64_t)(tid + 1) / (uint64_t)nt);
}

/* Large buffers: malloc maps fresh memory for every block of 32 MiB or more (glibc's
 * largest mmap threshold), and its page faults are a large share of the build on VMs.
 * Those are allocated 2 MiB aligned and marked for transparent huge pages: a few 2 MiB
 * faults instead of thousands. Smaller blocks are plain malloc memory, which malloc
 * reuses from one build to the next. Either way free() releases it. */
#define HUGE_PAGE ((size_t)2 << 20)
#define BIG_BLOCK ((size_t)32 << 20)
static void *big_alloc(size_t count, size_t size, const char *what)
{
    if (size && count > SIZE_MAX / size) return mmd_malloc(count, size, what);
    size_t n = count * size;
    if (n < BIG_BLOCK) return mmd_malloc(count, size, what);
    /* whole huge pages: a partial last one would fault in 4 KiB pages */
    n = (n + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    void *p = NULL;
    if (posix_memalign(&p, HUGE_PAGE, n) != 0) return mmd_malloc(count, size, what);
#ifdef MADV_HUGEPAGE
    madvise(p, n, MADV_HUGEPAGE);
#endif
    return p;
}

/* The builder's scratch (keys, sort buffer, binary nodes: 48 bytes per triangle) is
 * one block kept for the next build: zeroing fresh pages costs about as much as a
 * phase of the build. Between builds a large block is marked MADV_FREE, so the kernel
 * may take the pages back under memory pressure (they then come back zeroed) while an
 * unused block costs nothing to reuse. One block is kept, the largest; concurrent
 * builds allocate their own. */
static pthread_mutex_t scratch_lock = PTHREAD_MUTEX_INITIALIZER;
static void *cached_block;
static size_t cached_size;

static void *scratch_get(size_t need, size_t *got)
{
    void *p = NULL;
    pthread_mutex_lock(&scratch_lock);
    if (cached_block && cached_size >= need) {
        p = cached_block;
        *got = cached_size;
        cached_block = NULL;
        cached_size = 0;
    }
    pthread_mutex_unlock(&scratch_lock);
    if (!p) {
        p = big_alloc(need, 1, "BVH build scratch");
        *got = need;
    }
    return p;
}

static void scratch_put(void *p, size_t size)
{
    if (!p) return;
#ifdef MADV_FREE
    if (((uintptr_t)p & (HUGE_PAGE - 1)) == 0) madvise(p, size & ~(HUGE_PAGE - 1), MADV_FREE);
#endif
    pthread_mutex_lock(&scratch_lock);
    if (size > cached_size) {
        void *q = p;
        p = cached_block;
        cached_block = q;
        cached_size = size;
    }
    pthread_mutex_unlock(&scratch_lock);
    free(p);
}

/* ------------------------------------------------------------------------------ */
/* build state                                                                    */

/* Fresh memory is expensive (page faults and zeroing are a large share of the build
 * time on VMs), so the scratch is small, 16 bytes of keys and 32 bytes of binary node
 * per triangle, kept between builds, and each buffer is reused once its first use is
 * over. Per-triangle boxes are not stored: they are recomputed from the leaf-ordered
 * triangles when needed. */
typedef struct spine {
    uint32_t n;
    uint32_t id[SPINE_MAX]; /* split (binary node) */
    uint32_t gap[SPINE_MAX]; /* the complete subtree (or leaf) just left of it */
} spine;

typedef struct lbvh {
    team team;
    worker_arg targs[MAX_THREADS];
    void *scratch;      /* bn, keys, keys_tmp */
    size_t scratch_size;
    const float *vtx;
    const uint32_t *idx;
    uint32_t n;
    int nt, leaf_max;
    int idx_bits;
    uint64_t idx_mask;

    uint64_t *keys;     /* centroid x, y, then the (sorted) keys, then `sz` */
    uint64_t *keys_tmp; /* centroid z, radix sort buffer, then `word` */
    bnode *bn;          /* n - 1 internal nodes */
    spine *spines;      /* per thread: splits left open (see phase_hierarchy) */
    mmd_tri *tris;
    /* per binary node rooting a wide node of the surface-area collapse: */
    uint32_t *word;     /* cut code | wide height << CODE_BITS */
    uint32_t *sz;       /* wide nodes in its collapsed subtree */
    float pad;          /* box margin (see mmd_bvh_build) */
    /* SAH quality: per binary node, the least cost of its subtree in 1..8 wide slots
     * (see dp_sub); NULL for the greedy collapse */
    float (*dp)[8];

    /* phase 1 results, per thread */
    box3 cbox[MAX_THREADS], sbox[MAX_THREADS];
    uint32_t bad[MAX_THREADS];
    float cmin[3], cscale[3];
    uint32_t (*hist)[RADIX];
    int shift, dbits;
    uint32_t bstart[RADIX + 1];
    _Atomic uint32_t next_bucket;
} lbvh;

#define MIN MMD_MIN
#define MAX MMD_MAX

static inline void leaf_box(const lbvh *B, uint32_t pos, box3 *b)
{
    const mmd_tri *t = &B->tris[pos];
    tri_box3(t->v0, t->v1, t->v2, b);
}

/* ------------------------------------------------------------------------------ */
/* 1. centroid and scene bounds, finiteness                                       */

#if defined(__SSE2__)
/* x, y, z, 0 without reading past the vertex */
static inline __m128 load3(const float *p)
{
    __m128 xy = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(const void *)p));
    return _mm_movelh_ps(xy, _mm_load_ss(p + 2));
}
#endif

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
    /* The centroid is parked in the key buffers (x, y in keys[i], z in keys_tmp[i]) so
     * the key pass reads 12 bytes per triangle instead of gathering the vertices again
     * (memcpy keeps the type punning well defined). */
#if defined(__SSE2__)
    /* the same operations as the scalar code below, three axes at a time: minps and
     * maxps are exactly MIN and MAX (x < y ? x : y), NaN-ness survives the sums */
    __m128 clo = _mm_set1_ps(INFINITY), chi = _mm_set1_ps(-INFINITY), slo = clo, shi = chi;
    const __m128 half = _mm_set1_ps(0.5f);
    for (uint32_t i = lo; i < hi; i++) {
        const uint32_t *ix = idx + 3 * (size_t)i;
        __m128 p0 = load3(vtx + 3 * (size_t)ix[0]);
        __m128 p1 = load3(vtx + 3 * (size_t)ix[1]);
        __m128 p2 = load3(vtx + 3 * (size_t)ix[2]);
        __m128 z = _mm_add_ps(_mm_add_ps(_mm_sub_ps(p0, p0), _mm_sub_ps(p1, p1)), _mm_sub_ps(p2, p2));
        if (_mm_movemask_ps(_mm_cmpunord_ps(z, z)) & 7) {
            if (bad == NONE) bad = i;
            continue;
        }
        __m128 blo = _mm_min_ps(p2, _mm_min_ps(p0, p1)), bhi = _mm_max_ps(p2, _mm_max_ps(p0, p1));
        __m128 c = _mm_mul_ps(_mm_add_ps(blo, bhi), half);
        clo = _mm_min_ps(c, clo);
        chi = _mm_max_ps(c, chi);
        slo = _mm_min_ps(blo, slo);
        shi = _mm_max_ps(bhi, shi);
        _mm_storel_epi64((__m128i *)(void *)&keys[i], _mm_castps_si128(c));
        float cz = _mm_cvtss_f32(_mm_shuffle_ps(c, c, _MM_SHUFFLE(2, 2, 2, 2)));
        memcpy(&keys_tmp[i], &cz, 4);
    }
    float v[4];
    _mm_storeu_ps(v, clo);
    memcpy(cb.lo, v, sizeof cb.lo);
    _mm_storeu_ps(v, chi);
    memcpy(cb.hi, v, sizeof cb.hi);
    _mm_storeu_ps(v, slo);
    memcpy(sb.lo, v, sizeof sb.lo);
    _mm_storeu_ps(v, shi);
    memcpy(sb.hi, v, sizeof sb.hi);
#else
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
        memcpy(&keys[i], ctr, 8);
        memcpy(&keys_tmp[i], &ctr[2], 4);
    }
#endif
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
    /* the first radix pass's histogram, over the same chunk */
    uint32_t *h = B->hist[tid];
    const int sh = B->shift;
    const uint32_t dmask = (1u << B->dbits) - 1;
    memset(h, 0, (dmask + 1) * sizeof *h);
    /* spread21 seven bits at a time from a table (x: bits 3k + 2, y: 3k + 1, z: 3k) */
    uint64_t T[128];
    for (uint32_t v = 0; v < 128; v++) T[v] = spread21(v);
#if defined(__SSE2__)
    const __m128 vmin = _mm_setr_ps(cmin[0], cmin[1], cmin[2], 0.0f);
    const __m128 vscale = _mm_setr_ps(cscale[0], cscale[1], cscale[2], 0.0f);
    const __m128 vqmax = _mm_set1_ps(qmax), zero = _mm_setzero_ps();
#endif
    for (uint32_t i = lo; i < hi; i++) {
        uint32_t q[4];
#if defined(__SSE2__)
        __m128 xy = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(const void *)&keys[i]));
        __m128 c = _mm_movelh_ps(xy, _mm_load_ss((const float *)(const void *)&keys_tmp[i]));
        __m128 f = _mm_mul_ps(_mm_sub_ps(c, vmin), vscale);
        f = _mm_max_ps(_mm_min_ps(f, vqmax), zero);
        _mm_storeu_si128((__m128i *)(void *)q, _mm_cvttps_epi32(f));
#else
        float c[3];
        memcpy(c, &keys[i], 8);
        memcpy(&c[2], &keys_tmp[i], 4);
        float fx = (c[0] - cmin[0]) * cscale[0], fy = (c[1] - cmin[1]) * cscale[1];
        float fz = (c[2] - cmin[2]) * cscale[2];
        fx = MAX(MIN(fx, qmax), 0.0f);
        fy = MAX(MIN(fy, qmax), 0.0f);
        fz = MAX(MIN(fz, qmax), 0.0f);
        q[0] = (uint32_t)fx, q[1] = (uint32_t)fy, q[2] = (uint32_t)fz;
#endif
        uint64_t m = (T[q[0] & 127] << 2 | T[q[1] & 127] << 1 | T[q[2] & 127]) |
                     (T[q[0] >> 7 & 127] << 2 | T[q[1] >> 7 & 127] << 1 | T[q[2] >> 7 & 127]) << 21 |
                     (T[q[0] >> 14] << 2 | T[q[1] >> 14] << 1 | T[q[2] >> 14]) << 42;
        uint64_t key = ((m << 1) & ~idx_mask) | (uint64_t)i;
        keys[i] = key;
        h[(key >> sh) & dmask]++;
    }
}

/* ------------------------------------------------------------------------------ */
/* 3. radix sort of the keys above the index bits                                 */

/* One parallel pass on the top digit (histograms from the key pass), then every bucket
 * is sorted on its own, in cache: MSD passes of at most SUB_BITS bits down to buckets
 * of at most SMALL_SORT keys, which insertion sort finishes. Keys move between keys_tmp
 * and keys; `want` says the result must end in the other buffer. Keys with equal
 * sortable bits keep the input (index) order since every scatter is stable; the
 * insertion sort compares whole keys, which agrees. */
#define SMALL_SORT 32
#define SUB_BITS 8

static void insertion_sort(uint64_t *a, uint32_t m)
{
    for (uint32_t i = 1; i < m; i++) {
        uint64_t k = a[i];
        uint32_t j = i;
        for (; j > 0 && a[j - 1] > k; j--) a[j] = a[j - 1];
        a[j] = k;
    }
}

static void msd_sort(uint64_t *src, uint64_t *oth, uint32_t m, int shift, int low, int want)
{
    for (;;) {
        if (m <= SMALL_SORT || shift <= low) {
            if (shift > low) insertion_sort(src, m);
            if (want) memcpy(oth, src, (size_t)m * sizeof *src);
            return;
        }
        /* digit width from the bucket size: about two keys per sub-bucket for uniform
         * keys, more on surfaces; 3..SUB_BITS bits */
        int w = 0;
        while ((2u << w) <= m) w++;
        w = w - 1 > SUB_BITS ? SUB_BITS : w - 1 < 3 ? 3 : w - 1;
        w = w > shift - low ? shift - low : w;
        int sh = shift - w;
        uint32_t mask = (1u << w) - 1, cnt[1u << SUB_BITS];
        memset(cnt, 0, (mask + 1) * sizeof *cnt);
        for (uint32_t i = 0; i < m; i++) cnt[(src[i] >> sh) & mask]++;
        int trivial = 0;
        for (uint32_t d = 0; d <= mask && !trivial; d++) trivial = cnt[d] == m;
        if (trivial) {
            shift = sh;
            continue;
        }
        uint32_t off[1u << SUB_BITS], run = 0;
        for (uint32_t d = 0; d <= mask; d++) {
            off[d] = run;
            run += cnt[d];
        }
        for (uint32_t i = 0; i < m; i++) {
            uint64_t k = src[i];
            oth[off[(k >> sh) & mask]++] = k;
        }
        /* the buckets now lie in oth; each is sorted on towards the same final buffer */
        run = 0;
        for (uint32_t d = 0; d <= mask; d++) {
            if (cnt[d]) msd_sort(oth + run, src + run, cnt[d], sh, low, !want);
            run += cnt[d];
        }
        return;
    }
}

static void phase_top_scatter(void *vctx, int tid, int nt)
{
    lbvh *B = vctx;
    uint32_t lo, hi;
    chunk(B->n, nt, tid, &lo, &hi);
    /* this thread's write offset per digit: all smaller digits, then the same digit in
     * lower-numbered threads (which hold earlier elements): a stable scatter */
    uint32_t off[RADIX];
    const uint32_t nb = 1u << B->dbits;
    uint32_t run = 0;
    for (uint32_t d = 0; d < nb; d++) {
        uint32_t mine = run;
        for (int t = 0; t < nt; t++) {
            if (t == tid) mine = run;
            run += B->hist[t][d];
        }
        off[d] = mine;
    }
    const uint64_t *s = B->keys;
    uint64_t *o = B->keys_tmp;
    const int sh = B->shift;
    for (uint32_t i = lo; i < hi; i++) {
        uint64_t k = s[i];
        o[off[k >> sh]++] = k;
    }
}

static void phase_buckets(void *vctx, int tid, int nt)
{
    (void)tid;
    (void)nt;
    lbvh *B = vctx;
    const uint32_t nb = 1u << B->dbits;
    for (;;) {
        uint32_t d = atomic_fetch_add_explicit(&B->next_bucket, 1, memory_order_relaxed);
        if (d >= nb) break;
        uint32_t a = B->bstart[d], m = B->bstart[d + 1] - a;
        if (m) msd_sort(B->keys_tmp + a, B->keys + a, m, B->shift, B->idx_bits, 1);
    }
}

static void radix_sort(lbvh *B)
{
    const uint32_t nb = 1u << B->dbits;
    uint32_t run = 0;
    int trivial = 0;
    for (uint32_t d = 0; d < nb; d++) {
        B->bstart[d] = run;
        for (int t = 0; t < B->nt; t++) run += B->hist[t][d];
        trivial |= run - B->bstart[d] == B->n;
    }
    B->bstart[nb] = run;
    if (trivial) {
        msd_sort(B->keys, B->keys_tmp, B->n, B->shift, B->idx_bits, 0);
        return;
    }
    mmd_bvh_team_run(&B->team, phase_top_scatter, B);
    atomic_init(&B->next_bucket, 0);
    mmd_bvh_team_run(&B->team, phase_buckets, B);
}

/* ------------------------------------------------------------------------------ */
/* 4. leaf-ordered triangles, the binary hierarchy and its AABBs in one pass      */

static inline int hibit64(uint64_t x) /* x != 0 */
{
#if defined(__GNUC__)
    return 63 - __builtin_clzll(x);
#else
    int b = 0;
    for (int s = 32; s > 0; s >>= 1)
        if (x >> s) x >>= s, b += s;
    return b;
#endif
}

/* Split i (between sorted keys i and i + 1) is binary node i, and hb(i), the highest
 * bit in which the two keys differ, orders the splits: a node's range [a, b] holds only
 * splits with a lower hb than its own and is bounded by splits with a higher one, so
 * the tree is the Cartesian tree of hb (the largest split at the root; the largest in
 * any range is unique, as sorted keys change a given bit only once below a common
 * prefix). This is the Karras tree, and the one Apetrei's bottom-up construction
 * ("Fast and Simple Agglomerative LBVH Construction", CGVC 2014) finds with atomics
 * (a node's parent is the neighbouring split with the lower hb). It is built left to
 * right with a
 * stack of open nodes, hb decreasing from the bottom: a new split closes (pops) the
 * open nodes with a lower hb, which become its left subtree, and each node gets its
 * box when it is closed, from its two complete children.
 *
 * In parallel each thread runs this over its chunk of splits. A closed node's range
 * lies inside the chunk, so it is final. Splits that are the largest of the chunk so
 * far (pushed on an empty stack) and those still open at the end may reach across the
 * chunk's ends: they are listed, with the complete subtree (or leaf) to the left of
 * each, and the same stack pass over all lists in order finishes the tree. */

static inline int split_hb(const uint64_t *key, uint32_t i)
{
    return hibit64(key[i] ^ key[i + 1]);
}

typedef struct open_node {
    uint32_t id;
    int hb;
    box3 left; /* box of the left child */
} open_node;

static inline void gather_leaf(lbvh *B, uint32_t i, box3 *b)
{
    uint32_t prim = (uint32_t)(B->keys[i] & B->idx_mask);
    const uint32_t *ix = B->idx + 3 * (size_t)prim;
    const float *vtx = B->vtx;
    mmd_tri *t = &B->tris[i];
    memcpy(t->v0, vtx + 3 * (size_t)ix[0], sizeof t->v0);
    memcpy(t->v1, vtx + 3 * (size_t)ix[1], sizeof t->v1);
    memcpy(t->v2, vtx + 3 * (size_t)ix[2], sizeof t->v2);
    t->prim = prim;
    t->pad1 = 0;
    t->pad2 = 0;
    tri_box3(t->v0, t->v1, t->v2, b);
}

/* Closes the top open node: its right child is the pending subtree (ref, box), and it
 * becomes the pending subtree. */
static inline void close_top(bnode *bn, open_node *st, int *sp, uint32_t *ref, box3 *box)
{
    open_node *q = &st[--*sp];
    bnode *nq = &bn[q->id];
    nq->child[1] = *ref;
    box3 b = q->left;
    box_union(&b, box); /* left first: min/max keep the first of equal values */
    nq->b = b;
    *ref = q->id;
    *box = b;
}

static void phase_hierarchy(void *vctx, int tid, int nt)
{
    lbvh *B = vctx;
    const uint32_t n = B->n;
    uint32_t s0, s1;
    chunk(n - 1, nt, tid, &s0, &s1);
    const uint64_t *key = B->keys;
    const uint64_t mask = B->idx_mask;
    const uint32_t *idx = B->idx;
    const float *vtx = B->vtx;
    bnode *bn = B->bn;
    /* leaves s0 .. s1 - 1, and the last one in the last chunk */
    uint32_t lend = tid == nt - 1 ? n : s1;
    /* the sorted order is a random permutation of the input order for unstructured
     * input; prefetching hides most of the cache and TLB misses of the gather */
    for (uint32_t i = s0; i < lend && i < s0 + 2 * PREFETCH_AHEAD; i++) PREFETCH(idx + 3 * (size_t)(key[i] & mask));
    for (uint32_t i = s0; i < lend && i < s0 + PREFETCH_AHEAD; i++) {
        const uint32_t *q = idx + 3 * (size_t)(key[i] & mask);
        PREFETCH(vtx + 3 * (size_t)q[0]);
        PREFETCH(vtx + 3 * (size_t)q[1]);
        PREFETCH(vtx + 3 * (size_t)q[2]);
    }
    spine *sl = &B->spines[tid];
    sl->n = 0;
    open_node st[SPINE_MAX];
    int sp = 0;
    uint32_t pref = s0 | LEAF_FLAG; /* the pending subtree: left of the next split */
    box3 pbox;
    gather_leaf(B, s0, &pbox);
    for (uint32_t i = s0; i < s1; i++) {
        uint32_t ahead = i + 1 + 2 * PREFETCH_AHEAD;
        if (ahead < lend) PREFETCH(idx + 3 * (size_t)(key[ahead] & mask));
        if (i + 1 + PREFETCH_AHEAD < lend) {
            const uint32_t *q = idx + 3 * (size_t)(key[i + 1 + PREFETCH_AHEAD] & mask);
            PREFETCH(vtx + 3 * (size_t)q[0]);
            PREFETCH(vtx + 3 * (size_t)q[1]);
            PREFETCH(vtx + 3 * (size_t)q[2]);
        }
        int h = split_hb(key, i);
        if (sp > 0 && st[0].hb < h) {
            /* a new largest split: everything above the bottom closes; the bottom (a
             * chunk prefix maximum) stays open and listed */
            while (sp > 1) close_top(bn, st, &sp, &pref, &pbox);
            sp = 0;
        }
        while (sp > 0 && st[sp - 1].hb < h) close_top(bn, st, &sp, &pref, &pbox);
        if (sp == 0) {
            sl->id[sl->n] = i;
            sl->gap[sl->n++] = pref;
        } else {
            bn[i].child[0] = pref;
        }
        st[sp].id = i;
        st[sp].hb = h;
        st[sp++].left = pbox;
        if (i + 1 < lend) {
            pref = (i + 1) | LEAF_FLAG;
            gather_leaf(B, i + 1, &pbox);
        }
    }
    /* the nodes still open (above the bottom, already listed) */
    for (int j = 1; j < sp; j++) {
        sl->id[sl->n] = st[j].id;
        sl->gap[sl->n++] = bn[st[j].id].child[0];
    }
}

static inline void ref_box(const lbvh *B, uint32_t ref, box3 *b)
{
    if (ref & LEAF_FLAG)
        leaf_box(B, ref & ~LEAF_FLAG, b);
    else
        *b = B->bn[ref].b;
}

/* The listed splits of all chunks, in order, with the gap left of each (the gap right
 * of a chunk's last split is the next chunk's first leaf, the gap left of its first
 * split); returns the root. */
static uint32_t finish_hierarchy(lbvh *B, int nt)
{
    const uint64_t *key = B->keys;
    open_node st[SPINE_MAX];
    int sp = 0;
    uint32_t pref;
    box3 pbox;
    for (int t = 0; t < nt; t++) {
        const spine *sl = &B->spines[t];
        for (uint32_t k = 0; k < sl->n; k++) {
            uint32_t i = sl->id[k];
            pref = sl->gap[k];
            ref_box(B, pref, &pbox);
            int h = split_hb(key, i);
            while (sp > 0 && st[sp - 1].hb < h) close_top(B->bn, st, &sp, &pref, &pbox);
            B->bn[i].child[0] = pref;
            st[sp].id = i;
            st[sp].hb = h;
            st[sp++].left = pbox;
        }
    }
    pref = (B->n - 1) | LEAF_FLAG;
    ref_box(B, pref, &pbox);
    while (sp > 0) close_top(B->bn, st, &sp, &pref, &pbox);
    return pref;
}

/* ------------------------------------------------------------------------------ */
/* 5. collapse to 8-wide nodes                                                    */

/* The greedy surface-area choice is made once per wide node, in a counting pass that
 * also records, per binary node x that roots a wide node, the wide height and node
 * count of the collapsed subtree and the choice itself as a 21-bit "cut code": the
 * number of nodes opened after x (3 bits), then which item each opened (3 bits each).
 * The writing pass replays the code (no areas, no choices) and stores every node
 * straight into its final pre-order slot. */
typedef struct citem {
    uint32_t ref, first, count;
} citem;

#define CODE_BITS 24
#define CODE_MASK ((1u << CODE_BITS) - 1)

static inline int word_height(const lbvh *B, uint32_t x)
{
    return (int)(B->word[x] >> CODE_BITS);
}

static inline void item_box(const lbvh *B, const citem *it, box3 *b)
{
    if (it->ref & LEAF_FLAG)
        leaf_box(B, it->first, b);
    else
        *b = B->bn[it->ref].b;
}

typedef struct gitem {
    uint32_t ref, first, count;
    float sa;
} gitem;

static inline gitem make_gitem(const lbvh *B, uint32_t ref, uint32_t first, uint32_t last)
{
    gitem it;
    it.ref = ref;
    it.first = first;
    it.count = last - first + 1;
    /* only subtrees that may be opened compete; a leaf-sized one never does */
    it.sa = it.count > (uint32_t)B->leaf_max ? box_area(&B->bn[ref].b) : -2.0f;
    return it;
}

/* Greedy surface-area opening of internal binary node x (range [first, last]) into at
 * most 8 children (in no particular order), with the cut code. */
static int greedy(const lbvh *B, uint32_t x, uint32_t first, uint32_t last, citem out[8],
                  uint32_t *code)
{
    const bnode *bn = B->bn;
    gitem it[8];
    it[0] = make_gitem(B, bn[x].child[0], first, x);
    it[1] = make_gitem(B, bn[x].child[1], x + 1, last);
    int k = 2;
    uint32_t c = 0;
    while (k < 8) {
        int best = -1;
        float bsa = -1.0f;
        for (int j = 0; j < k; j++)
            if (it[j].sa > bsa) {
                best = j;
                bsa = it[j].sa;
            }
        if (best < 0) break;
        c |= (uint32_t)best << (3 * k - 3);
        uint32_t r = it[best].ref, f = it[best].first, l = f + it[best].count - 1;
        it[k++] = make_gitem(B, bn[r].child[1], r + 1, l);
        it[best] = make_gitem(B, bn[r].child[0], f, r);
    }
    *code = c | (uint32_t)(k - 2);
    for (int j = 0; j < k; j++) out[j].ref = it[j].ref, out[j].first = it[j].first, out[j].count = it[j].count;
    return k;
}

/* The items of the wide node at x from its cut code, in range order. */
static int replay(const lbvh *B, uint32_t x, uint32_t first, uint32_t last, citem it[8])
{
    const bnode *bn = B->bn;
    uint32_t c = B->word[x] & CODE_MASK;
    it[0].ref = bn[x].child[0], it[0].first = first, it[0].count = x - first + 1;
    it[1].ref = bn[x].child[1], it[1].first = x + 1, it[1].count = last - x;
    int k = 2, steps = (int)(c & 7);
    for (int s = 0; s < steps; s++) {
        int j = (int)(c >> (3 * s + 3) & 7);
        uint32_t r = it[j].ref, f = it[j].first, l = f + it[j].count - 1;
        it[k].ref = bn[r].child[1], it[k].first = r + 1, it[k++].count = l - r;
        it[j].ref = bn[r].child[0], it[j].count = r - f + 1;
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

static inline uint32_t clamp_h(int h)
{
    return (uint32_t)(h < 255 ? h : 255);
}

typedef struct span {
    uint32_t ref, first, last;
} span;

typedef struct spanlist {
    span *s;
    uint32_t n, cap;
    int oom;
} spanlist;

static void push_span(spanlist *l, uint32_t ref, uint32_t first, uint32_t last)
{
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? 2 * l->cap : 64;
        span *p = realloc(l->s, cap * sizeof *p);
        if (!p) {
            l->oom = 1;
            return;
        }
        l->s = p;
        l->cap = cap;
    }
    l->s[l->n++] = (span){ref, first, last};
}

/* ------------------------------------------------------------------------------ */
/* 5b. SAH quality: the collapse that minimises the cost model                     */

/* The greedy opening above is what the LBVH uses. For MMD_BVH_SAH the choice of which
 * binary nodes to open into a wide node's slots is the one of least total cost by the
 * surface area heuristic, found by dynamic programming over the binary tree as in
 * Ylitie, Karras and Laine, "Efficient Incoherent Ray Traversal on GPUs Through
 * Compressed Wide BVHs", HPG 2017. Subtrees of at most leaf_max triangles are leaves,
 * as in the greedy collapse (so the cut codes and the rest of the collapse are the
 * same), which fixes the set of leaves and with it their cost: what remains is the sum
 * of the wide nodes' surface areas. dp[x][j - 1] is its least value for binary subtree
 * x (more than leaf_max triangles) as at most j slots of its parent: one wide node
 * (its area plus its children's best in 8 slots), or for j >= 2 its two children
 * sharing the j slots. Against the greedy opening this gives about 3% fewer node visits
 * per ray and a third fewer (fuller) nodes on the benchmark rooms. */

/* Cost of item (ref, count) in at most j slots: 0 for a leaf. */
static inline float dp_cost(const lbvh *B, uint32_t ref, uint32_t count, int j)
{
    return count > (uint32_t)B->leaf_max ? B->dp[ref][j - 1] : 0.0f;
}

/* The best way to share j slots between the children of binary node x (range [first,
 * last]): returns the cost and the left child's share in *k (the lowest of equals). */
static float dp_share(const lbvh *B, uint32_t x, uint32_t first, uint32_t last, int j, int *k)
{
    const bnode *nd = &B->bn[x];
    uint32_t nl = x - first + 1, nr = last - x;
    float best = INFINITY;
    *k = 1;
    for (int i = 1; i < j; i++) {
        float c = dp_cost(B, nd->child[0], nl, i) + dp_cost(B, nd->child[1], nr, j - i);
        if (c < best) {
            best = c;
            *k = i;
        }
    }
    return best;
}

/* The costs of item (ref, count) in 1..8 slots. */
static inline void dp_row(const lbvh *B, uint32_t ref, uint32_t count, float out[8])
{
    if (count > (uint32_t)B->leaf_max)
        memcpy(out, B->dp[ref], 8 * sizeof *out);
    else
        memset(out, 0, 8 * sizeof *out);
}

/* dp[x] from its children's (which must be done); the same sums as dp_share. */
static void dp_node(lbvh *B, uint32_t x, uint32_t first, uint32_t last)
{
    const bnode *nd = &B->bn[x];
    float l[8], r[8], d[9];
    dp_row(B, nd->child[0], x - first + 1, l);
    dp_row(B, nd->child[1], last - x, r);
    for (int j = 2; j <= 8; j++) {
        float best = INFINITY;
        for (int i = 1; i < j; i++) {
            float c = l[i - 1] + r[j - i - 1];
            best = c < best ? c : best;
        }
        d[j] = best;
    }
    float *e = B->dp[x];
    e[0] = box_area(&nd->b) + d[8];
    for (int j = 2; j <= 8; j++) e[j - 1] = d[j] < e[0] ? d[j] : e[0];
}

/* dp over the subtree at x, children first; with `tasks`, internal children of at most
 * cutoff triangles are listed instead (and done in parallel before dp_top). */
static void dp_sub(lbvh *B, uint32_t x, uint32_t first, uint32_t last, uint32_t cutoff, spanlist *tasks)
{
    const bnode *nd = &B->bn[x];
    const uint32_t L = (uint32_t)B->leaf_max;
    if (x - first + 1 > L) {
        if (tasks && x - first + 1 <= cutoff)
            push_span(tasks, nd->child[0], first, x);
        else
            dp_sub(B, nd->child[0], first, x, cutoff, tasks);
    }
    if (last - x > L) {
        if (tasks && last - x <= cutoff)
            push_span(tasks, nd->child[1], x + 1, last);
        else
            dp_sub(B, nd->child[1], x + 1, last, cutoff, tasks);
    }
    if (!tasks) dp_node(B, x, first, last);
}

/* The nodes above the tasks, children first. */
static void dp_top(lbvh *B, uint32_t x, uint32_t first, uint32_t last, uint32_t cutoff)
{
    const bnode *nd = &B->bn[x];
    if (x - first + 1 > cutoff) dp_top(B, nd->child[0], first, x, cutoff);
    if (last - x > cutoff) dp_top(B, nd->child[1], x + 1, last, cutoff);
    dp_node(B, x, first, last);
}

typedef struct dp_ctx {
    lbvh *B;
    spanlist *tl;
    _Atomic uint32_t next;
} dp_ctx;

static void phase_dp(void *vctx, int tid, int nt)
{
    (void)tid;
    (void)nt;
    dp_ctx *C = vctx;
    for (;;) {
        uint32_t k = atomic_fetch_add_explicit(&C->next, 1, memory_order_relaxed);
        if (k >= C->tl->n) break;
        span *t = &C->tl->s[k];
        dp_sub(C->B, t->ref, t->first, t->last, 0, NULL);
    }
}

/* dp for the whole tree at root; returns 0 when out of memory. */
static int dp_tree(lbvh *B, uint32_t root, uint32_t cutoff)
{
    spanlist tl = {0};
    dp_sub(B, root, 0, B->n - 1, cutoff, &tl);
    if (tl.oom) {
        free(tl.s);
        return 0;
    }
    dp_ctx C = {.B = B, .tl = &tl};
    atomic_init(&C.next, 0);
    if (tl.n) mmd_bvh_team_run(&B->team, phase_dp, &C);
    dp_top(B, root, 0, B->n - 1, cutoff);
    free(tl.s);
    return 1;
}

typedef struct ditem {
    uint32_t ref, first, count;
    int slots;
} ditem;

/* The least-cost opening of internal binary node x into at most 8 children, with its
 * cut code (as greedy): an item is opened while sharing its slots between its children
 * is cheaper than making it one slot. */
static int dp_open(const lbvh *B, uint32_t x, uint32_t first, uint32_t last, citem out[8], uint32_t *code)
{
    const bnode *bn = B->bn;
    ditem it[8];
    int k;
    dp_share(B, x, first, last, 8, &k);
    it[0] = (ditem){bn[x].child[0], first, x - first + 1, k};
    it[1] = (ditem){bn[x].child[1], x + 1, last - x, 8 - k};
    int n = 2;
    uint32_t c = 0;
    for (int j = 0; j < n; j++) {
        /* item j, and any left child that replaces it, until it stays one slot */
        while (it[j].count > (uint32_t)B->leaf_max && it[j].slots >= 2 &&
               B->dp[it[j].ref][it[j].slots - 1] < B->dp[it[j].ref][0]) {
            uint32_t r = it[j].ref, f = it[j].first, l = f + it[j].count - 1;
            dp_share(B, r, f, l, it[j].slots, &k);
            c |= (uint32_t)j << (3 * n - 3);
            it[n++] = (ditem){bn[r].child[1], r + 1, l - r, it[j].slots - k};
            it[j] = (ditem){bn[r].child[0], f, r - f + 1, k};
        }
    }
    *code = c | (uint32_t)(n - 2);
    for (int j = 0; j < n; j++) out[j].ref = it[j].ref, out[j].first = it[j].first, out[j].count = it[j].count;
    return n;
}

/* Counting pass over the subtree at x: records word[x] and sz[x] for every wide root;
 * returns the wide height. With `tasks`, internal children of at most cutoff triangles
 * are not descended into but listed (heights and sizes above them are then finished by
 * finish_top once the tasks are done). */
static int count_sa(lbvh *B, uint32_t x, uint32_t first, uint32_t last, uint32_t cutoff,
                    spanlist *tasks)
{
    citem it[8];
    uint32_t code;
    int k = B->dp ? dp_open(B, x, first, last, it, &code) : greedy(B, x, first, last, it, &code);
    int h = 0;
    uint32_t size = 1;
    for (int j = 0; j < k; j++) {
        if (it[j].count <= (uint32_t)B->leaf_max) continue;
        uint32_t f = it[j].first, l = f + it[j].count - 1;
        if (tasks && it[j].count <= cutoff) {
            push_span(tasks, it[j].ref, f, l);
            continue;
        }
        int ch = count_sa(B, it[j].ref, f, l, cutoff, tasks);
        size += B->sz[it[j].ref];
        h = ch > h ? ch : h;
    }
    B->word[x] = code | clamp_h(h + 1) << CODE_BITS;
    B->sz[x] = size;
    return h + 1;
}

/* Heights and sizes of the nodes above the tasks. */
static int finish_top(lbvh *B, uint32_t x, uint32_t first, uint32_t last, uint32_t cutoff)
{
    citem it[8];
    int k = replay(B, x, first, last, it);
    int h = 0;
    uint32_t size = 1;
    for (int j = 0; j < k; j++) {
        if (it[j].count <= (uint32_t)B->leaf_max) continue;
        uint32_t r = it[j].ref, f = it[j].first, l = f + it[j].count - 1;
        int ch = it[j].count <= cutoff ? word_height(B, r) : finish_top(B, r, f, l, cutoff);
        size += B->sz[r];
        h = ch > h ? ch : h;
    }
    B->word[x] = (B->word[x] & CODE_MASK) | clamp_h(h + 1) << CODE_BITS;
    B->sz[x] = size;
    return h + 1;
}

typedef struct count_ctx {
    lbvh *B;
    spanlist *tl;
    _Atomic uint32_t next;
} count_ctx;

static void phase_count(void *vctx, int tid, int nt)
{
    (void)tid;
    (void)nt;
    count_ctx *C = vctx;
    /* tasks are claimed dynamically; each writes only its own subtree's entries */
    for (;;) {
        uint32_t k = atomic_fetch_add_explicit(&C->next, 1, memory_order_relaxed);
        if (k >= C->tl->n) break;
        span *t = &C->tl->s[k];
        count_sa(C->B, t->ref, t->first, t->last, 0, NULL);
    }
}

static inline int32_t leaf_code(uint32_t first, uint32_t count)
{
    return (int32_t)~((first << MMD_LEAF_COUNT_BITS) | (count - 1));
}

/* Child boxes grown by the scene-wide margin (see mmd_bvh_build); empty slots get an
 * inverted box. */
static inline void write_node(mmd_bvh8_node *nd, int k, const box3 *bx, const int32_t *child, float pad)
{
    for (int j = 0; j < 8; j++) {
        if (j < k) {
            nd->lo_x[j] = bx[j].lo[0] - pad;
            nd->lo_y[j] = bx[j].lo[1] - pad;
            nd->lo_z[j] = bx[j].lo[2] - pad;
            nd->hi_x[j] = bx[j].hi[0] + pad;
            nd->hi_y[j] = bx[j].hi[1] + pad;
            nd->hi_z[j] = bx[j].hi[2] + pad;
            nd->child[j] = child[j];
        } else {
            nd->lo_x[j] = nd->lo_y[j] = nd->lo_z[j] = INFINITY;
            nd->hi_x[j] = nd->hi_y[j] = nd->hi_z[j] = -INFINITY;
            nd->child[j] = 0;
        }
    }
}

/* Writes the surface-area subtree at x in pre-order at out[at], out[at + 1], ... */
static void write_sa(const lbvh *B, mmd_bvh8_node *out, uint32_t at, uint32_t x, uint32_t first,
                     uint32_t last)
{
    citem it[8];
    int k = replay(B, x, first, last, it);
    box3 bx[8];
    int32_t child[8];
    uint32_t next = at + 1;
    for (int j = 0; j < k; j++) {
        item_box(B, &it[j], &bx[j]);
        if (it[j].count <= (uint32_t)B->leaf_max) {
            child[j] = leaf_code(it[j].first, it[j].count);
        } else {
            child[j] = (int32_t)next;
            next += B->sz[it[j].ref];
        }
    }
    write_node(&out[at], k, bx, child, B->pad);
    for (int j = 0; j < k; j++)
        if (it[j].count > (uint32_t)B->leaf_max)
            write_sa(B, out, (uint32_t)child[j], it[j].ref, it[j].first, it[j].first + it[j].count - 1);
}

/* ------------------------------------------------------------------------------ */
/* 6. depth bound: balanced splits where the surface-area tree is too deep       */

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
static uint32_t bal_parts(uint32_t m, uint32_t L)
{
    return m <= 8 * L ? (m + L - 1) / L : 8;
}

static inline uint32_t part_start(uint32_t a, uint32_t m, uint32_t p, uint32_t parts)
{
    return a + (uint32_t)((uint64_t)m * p / parts);
}

/* Node count and height of the balanced subtree over m triangles. */
static uint32_t count_bal(uint32_t m, uint32_t L, int *height)
{
    uint32_t parts = bal_parts(m, L), size = 1;
    int h = 0;
    for (uint32_t p = 0; p < parts; p++) {
        uint32_t pm = part_start(0, m, p + 1, parts) - part_start(0, m, p, parts);
        if (pm > L) {
            int ch;
            size += count_bal(pm, L, &ch);
            h = ch > h ? ch : h;
        }
    }
    *height = h + 1;
    return size;
}

/* Writes the balanced subtree over [a, b] at out[*pos], ...; returns its box (the union
 * of its children's, so every triangle box is read once). */
static void write_bal(const lbvh *B, mmd_bvh8_node *out, uint32_t *pos, uint32_t a, uint32_t b,
                      box3 *box)
{
    uint32_t me = (*pos)++;
    uint32_t m = b - a + 1, L = (uint32_t)B->leaf_max;
    uint32_t parts = bal_parts(m, L);
    box3 bx[8];
    int32_t child[8];
    box_empty(box);
    for (uint32_t p = 0; p < parts; p++) {
        uint32_t pa = part_start(a, m, p, parts), pb = part_start(a, m, p + 1, parts) - 1;
        if (pb - pa + 1 <= L) {
            range_box(B, pa, pb, &bx[p]);
            child[p] = leaf_code(pa, pb - pa + 1);
        } else {
            child[p] = (int32_t)*pos;
            write_bal(B, out, pos, pa, pb, &bx[p]);
        }
        box_union(box, &bx[p]);
    }
    write_node(&out[me], (int)parts, bx, child, B->pad);
}

/* The output is planned top-down as a pre-order list of pieces: single nodes near the
 * root, written at the end, and subtrees of at most `cutoff` triangles (surface-area
 * or balanced), written in parallel straight into their slots. Without a depth problem
 * the plan is just the surface-area tree; with one, a node keeps its surface-area
 * children where they fit the remaining depth and is split evenly 8 ways where not. */
enum { PIECE_SA, PIECE_BAL, PIECE_SA_NODE, PIECE_BAL_NODE };

typedef struct piece {
    int kind;
    uint32_t ref, first, last; /* ref: binary node (SA kinds) */
    uint32_t at;               /* output slot of the (first) node */
    box3 box;                  /* PIECE_BAL: the subtree's box, once written */
} piece;

typedef struct plan {
    lbvh *B;
    piece *p;
    uint32_t n, cap;
    uint32_t pos, cutoff;
    int oom;
    mmd_bvh8_node *out;
    uint32_t cur; /* write_top's cursor */
    _Atomic uint32_t next;
} plan;

static piece *add_piece(plan *P, int kind, uint32_t ref, uint32_t first, uint32_t last)
{
    if (P->n == P->cap) {
        uint32_t cap = P->cap ? 2 * P->cap : 256;
        piece *q = realloc(P->p, cap * sizeof *q);
        if (!q) {
            P->oom = 1;
            return NULL;
        }
        P->p = q;
        P->cap = cap;
    }
    piece *q = &P->p[P->n++];
    q->kind = kind, q->ref = ref, q->first = first, q->last = last, q->at = P->pos;
    return q;
}

static int plan_bal(plan *P, uint32_t a, uint32_t b)
{
    uint32_t m = b - a + 1, L = (uint32_t)P->B->leaf_max;
    int h;
    if (m <= P->cutoff) {
        if (add_piece(P, PIECE_BAL, 0, a, b)) P->pos += count_bal(m, L, &h);
        return P->oom ? 0 : h;
    }
    if (!add_piece(P, PIECE_BAL_NODE, 0, a, b)) return 0;
    P->pos++;
    uint32_t parts = bal_parts(m, L);
    h = 0;
    for (uint32_t p = 0; p < parts; p++) {
        uint32_t pa = part_start(a, m, p, parts), pb = part_start(a, m, p + 1, parts) - 1;
        if (pb - pa + 1 > L) {
            int ch = plan_bal(P, pa, pb);
            h = ch > h ? ch : h;
        }
    }
    return h + 1;
}

/* The subtree at x within `levels` wide levels: the surface-area collapse where it
 * fits; where it does not, x keeps its surface-area children if each can fit in one
 * level less, else its range is split evenly. */
static int plan_fit(plan *P, uint32_t x, uint32_t first, uint32_t last, int levels)
{
    lbvh *B = P->B;
    int hx = word_height(B, x);
    if (hx <= levels && last - first + 1 <= P->cutoff) {
        if (add_piece(P, PIECE_SA, x, first, last)) P->pos += B->sz[x];
        return hx;
    }
    citem it[8];
    int k = replay(B, x, first, last, it);
    if (hx > levels) {
        int keep = levels >= 2;
        for (int j = 0; j < k && keep; j++)
            if (it[j].count > (uint32_t)B->leaf_max && it[j].count > capacity(B, levels - 1)) keep = 0;
        if (!keep) return plan_bal(P, first, last);
    }
    if (!add_piece(P, PIECE_SA_NODE, x, first, last)) return 0;
    P->pos++;
    int h = 0;
    for (int j = 0; j < k; j++) {
        if (it[j].count <= (uint32_t)B->leaf_max) continue;
        int ch = plan_fit(P, it[j].ref, it[j].first, it[j].first + it[j].count - 1, levels - 1);
        h = ch > h ? ch : h;
    }
    return h + 1;
}

static void phase_pieces(void *vctx, int tid, int nt)
{
    (void)tid;
    (void)nt;
    plan *P = vctx;
    for (;;) {
        uint32_t k = atomic_fetch_add_explicit(&P->next, 1, memory_order_relaxed);
        if (k >= P->n) break;
        piece *q = &P->p[k];
        if (q->kind == PIECE_SA) {
            write_sa(P->B, P->out, q->at, q->ref, q->first, q->last);
        } else if (q->kind == PIECE_BAL) {
            uint32_t pos = q->at;
            write_bal(P->B, P->out, &pos, q->first, q->last, &q->box);
        }
    }
}

/* The single nodes of the plan, in plan order; returns the piece's box. */
static void write_top(plan *P, box3 *box)
{
    lbvh *B = P->B;
    piece *q = &P->p[P->cur++];
    if (q->kind == PIECE_SA) {
        *box = B->bn[q->ref].b;
        return;
    }
    if (q->kind == PIECE_BAL) {
        *box = q->box;
        return;
    }
    box3 bx[8];
    int32_t child[8];
    int k;
    uint32_t L = (uint32_t)B->leaf_max;
    if (q->kind == PIECE_SA_NODE) {
        citem it[8];
        k = replay(B, q->ref, q->first, q->last, it);
        for (int j = 0; j < k; j++) {
            item_box(B, &it[j], &bx[j]);
            if (it[j].count <= L) {
                child[j] = leaf_code(it[j].first, it[j].count);
            } else {
                box3 ignore;
                child[j] = (int32_t)P->p[P->cur].at;
                write_top(P, &ignore);
            }
        }
        *box = B->bn[q->ref].b;
    } else {
        uint32_t a = q->first, m = q->last - q->first + 1;
        uint32_t parts = bal_parts(m, L);
        k = (int)parts;
        box_empty(box);
        for (uint32_t p = 0; p < parts; p++) {
            uint32_t pa = part_start(a, m, p, parts), pb = part_start(a, m, p + 1, parts) - 1;
            if (pb - pa + 1 <= L) {
                range_box(B, pa, pb, &bx[p]);
                child[p] = leaf_code(pa, pb - pa + 1);
            } else {
                child[p] = (int32_t)P->p[P->cur].at;
                write_top(P, &bx[p]);
            }
            box_union(box, &bx[p]);
        }
    }
    write_node(&P->out[q->at], k, bx, child, B->pad);
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

/* Counting pass, plan, parallel write. *t_count: time after the counting pass. */
static mmd_status collapse(lbvh *B, uint32_t root, mmd_bvh8_node **nodes_out, uint32_t *n_out,
                           int *depth, double *t_count)
{
    mmd_status st = MMD_OK;
    const uint32_t n = B->n;
    /* the sorted keys and the sort buffer are dead: they hold sz and word */
    B->sz = (uint32_t *)(void *)B->keys;
    B->word = (uint32_t *)(void *)B->keys_tmp;
    /* about 64 subtrees for the threads; the cutoff does not depend on the thread
     * count (the output would not either way) */
    uint32_t cutoff = n / 64 > 1024 ? n / 64 : 1024;
    spanlist tl = {0};
    plan P = {.B = B, .cutoff = cutoff};
    if (B->dp && !dp_tree(B, root, cutoff)) {
        st = mmd_error(MMD_ERR_NOMEM, "out of memory collapsing the BVH");
        goto done;
    }
    count_sa(B, root, 0, n - 1, cutoff, &tl);
    if (tl.oom) {
        st = mmd_error(MMD_ERR_NOMEM, "out of memory collapsing the BVH");
        goto done;
    }
    count_ctx C = {.B = B, .tl = &tl};
    atomic_init(&C.next, 0);
    if (tl.n) mmd_bvh_team_run(&B->team, phase_count, &C);
    int hsa = finish_top(B, root, 0, n - 1, cutoff);
    *t_count = mmd_now();

    int lim = max_depth_limit(n, B->leaf_max);
    *depth = plan_fit(&P, root, 0, n - 1, lim);
    if (P.oom) {
        st = mmd_error(MMD_ERR_NOMEM, "out of memory collapsing the BVH");
        goto done;
    }
    if (hsa > lim) mmd_debug("BVH: depth %d > %d, balanced splits where it does not fit", hsa, lim);
    P.out = big_alloc(P.pos, sizeof *P.out, "BVH nodes");
    if (!P.out) {
        st = MMD_ERR_NOMEM;
        goto done;
    }
    atomic_init(&P.next, 0);
    mmd_bvh_team_run(&B->team, phase_pieces, &P);
    box3 ignore;
    P.cur = 0;
    write_top(&P, &ignore);
    *nodes_out = P.out;
    *n_out = P.pos;
done:
    free(tl.s);
    free(P.p);
    return st;
}

mmd_status mmd_bvh_build(const float *vertices, const uint32_t *indices, uint32_t n_tris,
                         const mmd_bvh_options *opt, mmd_bvh **out)
{
    double tm[6] = {0};
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
    int quality = opt ? opt->quality : MMD_BVH_FAST;
    if (quality != MMD_BVH_FAST && quality != MMD_BVH_SAH)
        return mmd_error(MMD_ERR_INVALID, "BVH build: unknown quality %d", quality);
    int sah = quality == MMD_BVH_SAH;
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
    /* the SAH build's references follow the LBVH scratch (whose keys hold the collapse's
     * per-node words either way) */
    size_t scratch = (size_t)n_tris * (2 * sizeof *B->keys + sizeof *B->bn + (sah ? MMD_BVH_SAH_SCRATCH : 0));
    B->scratch = scratch_get(scratch, &B->scratch_size);
    if (B->scratch) {
        B->bn = B->scratch;
        B->keys = (uint64_t *)(void *)(B->bn + n_tris);
        B->keys_tmp = B->keys + n_tris;
    }
    B->hist = mmd_malloc((size_t)nt, sizeof *B->hist, "BVH radix histograms");
    B->spines = mmd_malloc((size_t)nt, sizeof *B->spines, "BVH build");
    b = mmd_calloc(1, sizeof *b, "BVH");
    if (b) b->tris = big_alloc(n_tris, sizeof *b->tris, "BVH triangles");
    if (!B->scratch || !B->hist || !B->spines || !b || !b->tris) {
        st = MMD_ERR_NOMEM;
        goto done;
    }
    B->tris = b->tris;

    /* 1 */
    team_start(&B->team, nt, B->targs);
    B->nt = nt = B->team.nt; /* 1 if the team could not be set up */
    mmd_bvh_team_run(&B->team, phase_bounds, B);
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
    /* Every child box is grown by one scene-wide margin. The watertight triangle test's
     * t carries a rounding error that grows with the coordinates' magnitude (tens of ulps
     * of the scene size for large triangles), while the box test's slack is relative to
     * t alone; without a margin a traversal could cull a box whose triangle brute force
     * reports a hair closer than the current best hit. One margin for all boxes keeps
     * children inside parents. */
    float scale = 0.0f;
    for (int k = 0; k < 3; k++) {
        scale = fmaxf(scale, fmaxf(fabsf(b->bbox_min[k]), fabsf(b->bbox_max[k])));
        scale = fmaxf(scale, b->bbox_max[k] - b->bbox_min[k]);
    }
    B->pad = ldexpf(scale, -15);
    /* the BVH's own bounds include the margin, so the root's slots stay inside them */
    for (int k = 0; k < 3; k++) b->bbox_min[k] -= B->pad, b->bbox_max[k] += B->pad;

    uint32_t root;
    if (sah && n_tris > 1) {
        tm[1] = tm[2] = mmd_now();
        st = mmd_bvh_sah_hierarchy(&B->team, vertices, indices, n_tris, leaf_max, B->keys_tmp + n_tris, B->bn,
                                   B->tris, &root);
        if (st != MMD_OK) goto done;
        /* the references are dead: their space holds the collapse's cost table */
        B->dp = (float(*)[8])(void *)(B->keys_tmp + n_tris);
    } else {
        /* 2, 3: the top digit is the highest RADIX_BITS key bits (all of the bits above
         * the index when there are fewer) */
        B->dbits = 64 - ib < RADIX_BITS ? 64 - ib : RADIX_BITS;
        B->shift = 64 - B->dbits;
        mmd_bvh_team_run(&B->team, phase_keys, B);
        tm[1] = mmd_now();
        if (n_tris > 1) radix_sort(B);
        tm[2] = mmd_now();

        /* 4 */
        mmd_bvh_team_run(&B->team, phase_hierarchy, B);
        root = n_tris > 1 ? finish_hierarchy(B, nt) : 0u | LEAF_FLAG;
    }
    tm[3] = mmd_now();

    /* 5, 6 */
    int depth = 1;
    if (n_tris <= (uint32_t)leaf_max) {
        /* everything fits in one leaf under the root */
        b->nodes = mmd_malloc(1, sizeof *b->nodes, "BVH nodes");
        if (!b->nodes) {
            st = MMD_ERR_NOMEM;
            goto done;
        }
        write_node(b->nodes, 1, &sb, (int32_t[1]){leaf_code(0, n_tris)}, B->pad);
        b->n_nodes = 1;
        tm[4] = mmd_now();
    } else {
        if (root == NONE || (root & LEAF_FLAG)) {
            st = mmd_error(MMD_ERR_INTERNAL, "BVH build: hierarchy has no root");
            goto done;
        }
        st = collapse(B, root, &b->nodes, &b->n_nodes, &depth, &tm[4]);
        if (st != MMD_OK) goto done;
    }
    b->n_tris = n_tris;
    b->depth = depth;
    tm[5] = mmd_now();
    mmd_debug("BVH (%s): %u tris, %d threads: bounds+keys %.1f ms, sort %.1f ms, %s %.1f ms, collapse "
              "count %.1f ms, write %.1f ms; %u nodes, depth %d",
              sah ? "SAH" : "LBVH", n_tris, nt, 1e3 * (tm[1] - tm[0]), 1e3 * (tm[2] - tm[1]),
              sah ? "binned SAH" : "gather+hierarchy", 1e3 * (tm[3] - tm[2]), 1e3 * (tm[4] - tm[3]),
              1e3 * (tm[5] - tm[4]), b->n_nodes, depth);

done:
    if (B) {
        team_stop(&B->team);
        scratch_put(B->scratch, B->scratch_size);
        free(B->hist);
        free(B->spines);
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
