/*
 * mmd_shared.h - every struct that crosses the host/device boundary, included verbatim
 * by host C and by the OpenCL C kernels in cl/ (`#include "mmd_shared.h"`).
 *
 * Only 4-byte scalars and fixed arrays of them are used, so the host (C11) and device
 * (OpenCL C 1.2) layouts agree without relying on float3/float4 alignment rules; the
 * host side checks every size with _Static_assert. Kernels load the SoA arrays with
 * vload8/vload4.
 *
 * Example (host):
 *     mmd_ray r = { .ox = 0, .oy = 0, .oz = 1, .tmin = 0, .dx = 1, .dy = 0, .dz = 0, .tmax = INFINITY };
 *     // upload an array of mmd_ray, run mmd_trace_closest(), read back mmd_hit
 */
#ifndef MMD_SHARED_H
#define MMD_SHARED_H

#ifdef __OPENCL_VERSION__
typedef uint mmd_u32;
typedef int mmd_i32;
typedef float mmd_f32;
#else
#include <stdint.h>
typedef uint32_t mmd_u32;
typedef int32_t mmd_i32;
typedef float mmd_f32;
#endif

/* ---------------------------------------------------------------------------------
 * Wide BVH (BVH8), the device acceleration structure.
 *
 * Built on the host as a binary LBVH (Karras 2012) and collapsed to 8-wide nodes; the
 * node array is in depth-first order with the root at index 0. Each node stores the
 * bounds of its (up to) 8 children in SoA form so one work-item tests all 8 boxes with
 * float8 instructions (this is what makes traversal fast on CPU OpenCL devices, which do
 * not vectorise across work-items, and it reduces memory round-trips on GPUs).
 *
 * child[i] encoding:
 *   child[i] > 0   internal node index (the root, 0, is never anyone's child)
 *   child[i] == 0  empty slot; its box is inverted (lo = +INF, hi = -INF) so it never hits
 *   child[i] < 0   leaf: c = ~child[i]; first = c >> MMD_LEAF_COUNT_BITS,
 *                  count = (c & MMD_LEAF_COUNT_MASK) + 1; the leaf holds triangles
 *                  tris[first .. first + count - 1] of the reordered triangle array.
 * --------------------------------------------------------------------------------- */
#define MMD_BVH_WIDTH 8
#define MMD_LEAF_COUNT_BITS 4
#define MMD_LEAF_COUNT_MASK 15
#define MMD_LEAF_MAX_TRIS 16
#define MMD_BVH_MAX_TRIS (1u << 27) /* first index must fit in 27 bits */
#define MMD_BVH_STACK 64            /* traversal stack entries (depth * 7 worst case) */

typedef struct mmd_bvh8_node {
    mmd_f32 lo_x[8], hi_x[8];
    mmd_f32 lo_y[8], hi_y[8];
    mmd_f32 lo_z[8], hi_z[8];
    mmd_i32 child[8];
} mmd_bvh8_node; /* 224 bytes */

/* A triangle as stored for traversal, in BVH leaf order: three vertices; `prim` is the
 * triangle's index in the scene (what hits report). 48 bytes = 3 x float4. */
typedef struct mmd_tri {
    mmd_f32 v0[3];
    mmd_u32 prim;
    mmd_f32 v1[3];
    mmd_u32 pad1;
    mmd_f32 v2[3];
    mmd_u32 pad2;
} mmd_tri;

/* A ray: hits are accepted for t in [tmin, tmax]. The direction need not be unit
 * length; t is in units of |d|. */
typedef struct mmd_ray {
    mmd_f32 ox, oy, oz, tmin;
    mmd_f32 dx, dy, dz, tmax;
} mmd_ray;

/* Closest-hit result: prim = scene triangle index, or -1 for a miss (then t = +INF).
 * (u, v) are barycentrics: P = (1-u-v) v0 + u v1 + v v2. */
typedef struct mmd_hit {
    mmd_f32 t, u, v;
    mmd_i32 prim;
} mmd_hit;

#ifndef __OPENCL_VERSION__
_Static_assert(sizeof(mmd_bvh8_node) == 224, "mmd_bvh8_node layout");
_Static_assert(sizeof(mmd_tri) == 48, "mmd_tri layout");
_Static_assert(sizeof(mmd_ray) == 32, "mmd_ray layout");
_Static_assert(sizeof(mmd_hit) == 16, "mmd_hit layout");
#endif

#endif
