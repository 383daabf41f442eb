/*
 * bvh_internal.h - private to src/bvh: what the two binary-tree builders (lbvh.c: Morton
 * codes, the default; sah.c: binned surface-area heuristic, MMD_BVH_SAH) share with the
 * collapse to 8-wide nodes in lbvh.c.
 *
 * The binary tree both builders hand to the collapse has one fixed form: the triangles
 * are in leaf order (positions 0 .. n-1 of the output mmd_tri array), every leaf is one
 * triangle, and the internal node that splits the sorted range [first, last] between
 * positions s and s + 1 is stored at bn[s]. Each of the n - 1 boundaries between
 * neighbouring positions is the split of exactly one internal node, so bn has n - 1
 * entries and a node's range is implied top-down (children cover [first, s] and
 * [s + 1, last]). A child reference is an internal node's split position, or a leaf's
 * position | MMD_BVH_LEAF_FLAG.
 *
 *     mmd_bvh_team T;                       // the build's threads (lbvh.c)
 *     uint32_t root;
 *     mmd_bvh_sah_hierarchy(&T, vtx, idx, n, leaf_max, refs, bn, tris, &root);
 */
#ifndef MMD_BVH_INTERNAL_H
#define MMD_BVH_INTERNAL_H

#include "mmd_bvh.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

#define MMD_BVH_LEAF_FLAG 0x80000000u /* binary child refs: leaf position | flag */
#define MMD_BVH_NONE 0xffffffffu
#define MMD_BVH_MAX_THREADS 64

typedef struct box3 {
    float lo[3], hi[3];
} box3;

/* Binary internal node at split position s (see above): box and child refs, 32 bytes. */
typedef struct bnode {
    box3 b;
    uint32_t child[2];
} bnode;

/* min as x < y ? x : y and max as x > y ? x : y are exactly minss/maxss (and minps/maxps
 * with the new value first), so the compiler emits them instead of unpredictable
 * branches, and of equal values (+0 and -0) the one already in the box is kept: a box
 * is then the first occurrence of each extreme in the order its triangles were added,
 * which makes boxes independent of how a pass is split into chunks as long as the
 * chunks are merged in order. The axes are written out because -O2 does not unroll
 * the 3-iteration loops (and then keeps boxes in memory). */
#define MMD_MIN(x, y) ((x) < (y) ? (x) : (y))
#define MMD_MAX(x, y) ((x) > (y) ? (x) : (y))

static inline void box_empty(box3 *b)
{
    for (int k = 0; k < 3; k++) {
        b->lo[k] = INFINITY;
        b->hi[k] = -INFINITY;
    }
}

static inline void box_union(box3 *a, const box3 *b)
{
    a->lo[0] = MMD_MIN(b->lo[0], a->lo[0]);
    a->lo[1] = MMD_MIN(b->lo[1], a->lo[1]);
    a->lo[2] = MMD_MIN(b->lo[2], a->lo[2]);
    a->hi[0] = MMD_MAX(b->hi[0], a->hi[0]);
    a->hi[1] = MMD_MAX(b->hi[1], a->hi[1]);
    a->hi[2] = MMD_MAX(b->hi[2], a->hi[2]);
}

/* Half the surface area (the SAH only compares areas). */
static inline float box_area(const box3 *b)
{
    float dx = b->hi[0] - b->lo[0], dy = b->hi[1] - b->lo[1], dz = b->hi[2] - b->lo[2];
    return dx * dy + dy * dz + dz * dx;
}

static inline void tri_box3(const float *p0, const float *p1, const float *p2, box3 *b)
{
    b->lo[0] = MMD_MIN(p2[0], MMD_MIN(p0[0], p1[0]));
    b->lo[1] = MMD_MIN(p2[1], MMD_MIN(p0[1], p1[1]));
    b->lo[2] = MMD_MIN(p2[2], MMD_MIN(p0[2], p1[2]));
    b->hi[0] = MMD_MAX(p2[0], MMD_MAX(p0[0], p1[0]));
    b->hi[1] = MMD_MAX(p2[1], MMD_MAX(p0[1], p1[1]));
    b->hi[2] = MMD_MAX(p2[2], MMD_MAX(p0[2], p1[2]));
}

/* ------------------------------------------------------------------------------ */
/* the build's threads (lbvh.c)                                                   */

typedef void (*mmd_bvh_par_fn)(void *ctx, int tid, int nt);

typedef struct mmd_bvh_team mmd_bvh_team;

/* Runs fn(ctx, tid, nt) for tid = 0..nt-1, tid 0 on the caller, and returns when all are
 * done. The work of a thread that could not be created is done by the caller after its
 * own, so a phase must split its work by tid or claim it with an atomic counter, and
 * never wait on another thread. */
void mmd_bvh_team_run(mmd_bvh_team *T, mmd_bvh_par_fn fn, void *ctx);

/* ------------------------------------------------------------------------------ */
/* binned SAH builder (sah.c)                                                     */

/* Scratch the SAH builder needs per triangle (two arrays of 32-byte references). */
#define MMD_BVH_SAH_SCRATCH 64

/* Top-down binned SAH build of the binary tree over triangles idx[0 .. n-1] (n >= 2,
 * all coordinates finite): fills bn[0 .. n-2] and the leaf-ordered triangles, returns
 * the root's split position in *root. Subtrees of at most leaf_max triangles (which the
 * collapse makes leaves) are not optimised. refs: n * MMD_BVH_SAH_SCRATCH bytes of
 * scratch, 16-byte aligned. The result does not depend on the number of threads in T. */
mmd_status mmd_bvh_sah_hierarchy(mmd_bvh_team *T, const float *vtx, const uint32_t *idx, uint32_t n, int leaf_max,
                                 void *refs, bnode *bn, mmd_tri *tris, uint32_t *root);

#endif
