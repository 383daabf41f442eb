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
/* Wide-node depth (root = 1) the builder guarantees; a stack-based traversal then holds
 * at most 7 * (depth - 1) + 8 = 7 * depth + 1 = MMD_BVH_STACK entries. */
#define MMD_BVH_MAX_DEPTH 9
#define MMD_BVH_STACK 64

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


/* ---------------------------------------------------------------------------------
 * Forward model (SPEC 3-4): per-material radio parameters, per-triangle shading data,
 * the run parameters and receiver poses of the AoA estimator.
 * --------------------------------------------------------------------------------- */

/* One material on the device. eta = eps_r - j sigma/(eps0 2 pi f) (eta_im <= 0); the
 * lobe normaliser is F = lobe_A + cos(t) * P(sin^2 t) with P's coefficients at
 * lobe_coef[coef_off .. coef_off + ncoef - 1]. */
typedef struct mmd_gpu_material {
    mmd_f32 eta_re, eta_im;
    mmd_f32 thickness_m; /* 0 = half-space (no transmission) */
    mmd_f32 scattering;  /* S */
    mmd_f32 xpd;         /* K_x */
    mmd_f32 lobe_A;
    mmd_i32 alpha;
    mmd_u32 coef_off, ncoef;
    mmd_u32 pad[3];
} mmd_gpu_material; /* 48 bytes */

/* Per scene triangle (indexed by prim): unit normal (the geometric one, or in
 * directional mode the one averaged at the wave's scale, src/sim/normals.c; winding as
 * in the file; kernels orient it against the incoming ray since surfaces are two-sided),
 * the material index, and `lift`: how far above the hit point secondary rays start
 * (metres, 0 on clean meshes), so they clear a scanned surface's own bumps. */
typedef struct mmd_prim_info {
    mmd_f32 n[3];
    mmd_u32 material;
    mmd_f32 lift;
    mmd_f32 pad[3];
} mmd_prim_info; /* 32 bytes */

/* A receiver pose: position and rotation R (row-major, local -> world: world = R local). */
typedef struct mmd_gpu_pose {
    mmd_f32 pos[3];
    mmd_u32 index; /* pose number in the run (seeds its ray rotation) */
    mmd_f32 rot[9];
    mmd_f32 pad[3];
} mmd_gpu_pose; /* 64 bytes */

#define MMD_SIM_DIFFUSE 1u      /* sample and connect the Lambertian S^2 part */
#define MMD_SIM_TRANSMIT 2u     /* transmission through slabs */
#define MMD_SIM_JONES 4u        /* polarised (Jones) mode; else scalar power */
#define MMD_SIM_SPECULAR 8u     /* reflection is exactly specular (baseline) */

typedef struct mmd_sim_params {
    mmd_f32 tx_pos[3];
    mmd_f32 k0;           /* 2 pi / lambda */
    mmd_f32 tx_rot[9];    /* TX frame, local -> world */
    mmd_f32 wavelength;
    mmd_i32 tx_kind;      /* mmd_antenna_kind */
    mmd_f32 tx_q, tx_g0;
    mmd_u32 n_rays;       /* rays per pose */
    mmd_u32 max_depth;
    mmd_u32 flags;        /* MMD_SIM_* */
    mmd_f32 p_diffuse;    /* probability of sampling the diffuse event on reflection */
    mmd_f32 p_transmit;   /* probability of the transmission event at slabs */
    mmd_u32 seed_lo, seed_hi;
    mmd_f32 eps_scale;    /* origin offset scale (m) for secondary rays */
    mmd_f32 pad[3];
} mmd_sim_params; /* 112 bytes */

/* One path vertex of a calibration record (cl/calib.cl, docs/calibration.md): the
 * geometry of a receiver-launched trace with everything that does not depend on the
 * trainable materials, so replaying it with new materials gives the same estimate as a
 * fresh trace. A ray owns max_depth consecutive records; the first with event END and
 * g_nee == 0 ends it. */
#define MMD_CAL_END 0u      /* no continuation from this vertex */
#define MMD_CAL_LOBE 1u
#define MMD_CAL_DIFFUSE 2u
#define MMD_CAL_TRANSMIT 3u
typedef struct mmd_cal_vertex {
    mmd_f32 p[3];  mmd_u32 obj;     /* hit point; scene object (material) */
    mmd_f32 n[3];  mmd_u32 event;   /* normal facing the arriving ray; MMD_CAL_* of the continuation */
    mmd_f32 d[3];  mmd_f32 g_nee;   /* arriving direction; (lambda/4pi)^2 dOmega G_TX / r^2 of the
                                       next-event connection, 0 when blocked or below the surface */
    mmd_f32 v[3];  mmd_f32 f_lobe;  /* unit vector to the TX; lobe value toward the RX at the connection */
    mmd_f32 o[3];  mmd_f32 w_cont;  /* continuation direction; f/pdf without the material factors */
    mmd_u32 tri;   mmd_f32 f_diff;  /* scene triangle; Lambertian value toward the RX at the connection */
    mmd_f32 pad[2];
} mmd_cal_vertex; /* 96 bytes */

#ifndef __OPENCL_VERSION__
_Static_assert(sizeof(mmd_cal_vertex) == 96, "mmd_cal_vertex layout");
_Static_assert(sizeof(mmd_bvh8_node) == 224, "mmd_bvh8_node layout");
_Static_assert(sizeof(mmd_tri) == 48, "mmd_tri layout");
_Static_assert(sizeof(mmd_ray) == 32, "mmd_ray layout");
_Static_assert(sizeof(mmd_hit) == 16, "mmd_hit layout");
_Static_assert(sizeof(mmd_gpu_material) == 48, "mmd_gpu_material layout");
_Static_assert(sizeof(mmd_prim_info) == 32, "mmd_prim_info layout");
_Static_assert(sizeof(mmd_gpu_pose) == 64, "mmd_gpu_pose layout");
_Static_assert(sizeof(mmd_sim_params) == 112, "mmd_sim_params layout");
#endif

#endif
