/*
 * mmd_bvh.h - host-side LBVH construction, flattened to the wide (8-ary) node layout
 * described in mmd_shared.h, plus plain-C reference traversal used by the tests.
 *
 * Build: 64-bit keys (the top bits of a 63-bit Morton code of the triangle centroid in
 * the centroid bbox, the triangle index in the low bits, so keys are unique and dense
 * LiDAR-like scenes keep >= 44 Morton bits) -> parallel MSD radix sort (pthreads) ->
 * the Karras 2012 hierarchy, built together with its AABBs in one stack-based pass
 * per thread (it is the Cartesian tree of the splits' highest differing key bits) ->
 * greedy surface-area collapse to 8-wide nodes with small leaves -> depth-first
 * (pre-order) flattening. The depth is at most MMD_BVH_MAX_DEPTH (balanced splits take
 * over where the LBVH would be deeper), which bounds the traversal stack;
 * mmd_bvh_validate checks it. Output is identical for any thread count. The builder
 * keeps its scratch memory (48 bytes per triangle, returned to the kernel lazily with
 * MADV_FREE) for the next build instead of freeing it.
 * Degenerate (zero-area) and duplicate triangles are kept (they are valid scene
 * content; a degenerate triangle is simply never hit).
 *
 * With quality MMD_BVH_SAH the binary tree comes from a top-down binned SAH build
 * instead (src/bvh/sah.c), and the collapse opens the binary nodes that minimise the
 * SAH cost (dynamic programming) instead of the largest ones; depth bound, leaf sizes,
 * box margins, determinism and validation are the same. Its scratch is 112 bytes per
 * triangle.
 *
 * Example:
 *     mmd_bvh *b = NULL;
 *     mmd_bvh_options o = {.quality = MMD_BVH_SAH};  // opt NULL: the LBVH (MMD_BVH_FAST)
 *     mmd_bvh_build(scene->vertices, scene->indices, scene->n_triangles, &o, &b);
 *     mmd_hit h = mmd_bvh_closest_ref(b, &ray);   // host reference traversal
 *     mmd_bvh_destroy(b);
 */
#ifndef MMD_BVH_H
#define MMD_BVH_H

#include "mmd_core.h"
#include "mmd_shared.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Tree quality. FAST: the LBVH above, about 14 Mprims/s on 2 cores. SAH: a top-down
 * binned surface-area-heuristic build of the binary tree (32 bins per axis on the
 * triangle centroids, subtrees in parallel) and a cost-minimising collapse: five to six
 * times slower to build (about 2 Mprims/s per core), about 15-20% fewer node visits per
 * ray and faster traversal; for trees that are built once and traced many times. */
enum { MMD_BVH_FAST = 0, MMD_BVH_SAH = 1 };

typedef struct mmd_bvh_options {
    int threads;        /* 0 = mmd_num_threads() */
    int max_leaf_tris;  /* 1..MMD_LEAF_MAX_TRIS, default 4 */
    int quality;        /* MMD_BVH_FAST (0, the default) or MMD_BVH_SAH */
} mmd_bvh_options;

typedef struct mmd_bvh {
    uint32_t n_nodes;
    mmd_bvh8_node *nodes;   /* depth-first, root at 0 */
    uint32_t n_tris;
    mmd_tri *tris;          /* triangles in leaf order; tris[i].prim = scene triangle id */
    float bbox_min[3], bbox_max[3];
    double build_seconds;   /* wall time of the last build */
    int depth;              /* max depth in wide nodes (root = 1) */
} mmd_bvh;

mmd_status mmd_bvh_build(const float *vertices, const uint32_t *indices, uint32_t n_tris,
                         const mmd_bvh_options *opt, mmd_bvh **out);
void mmd_bvh_destroy(mmd_bvh *b);

/* Structural check: every triangle reachable exactly once, child boxes inside their
 * parent's box, leaf boxes contain their triangles, no cycles. Returns MMD_OK or
 * MMD_ERR_INTERNAL with a message. */
mmd_status mmd_bvh_validate(const mmd_bvh *b);

/* Plain-C references (single ray, scalar code). The closest-hit tie rule (equal t:
 * smaller prim wins) and the ray/triangle test (mmd_isect.h) are shared with the
 * kernels so results are identical. */
mmd_hit mmd_bvh_closest_ref(const mmd_bvh *b, const mmd_ray *r);
int mmd_bvh_any_ref(const mmd_bvh *b, const mmd_ray *r);
mmd_hit mmd_brute_closest(const float *vertices, const uint32_t *indices, uint32_t n_tris,
                          const mmd_ray *r);
int mmd_brute_any(const float *vertices, const uint32_t *indices, uint32_t n_tris,
                  const mmd_ray *r);

#ifdef __cplusplus
}
#endif
#endif
