/*
 * mmd_isect.h - ray/triangle and ray/box tests shared verbatim by host C (C11) and the
 * OpenCL C 1.2 kernels, so the host references and the device agree bit for bit.
 *
 * Triangles: the watertight test of Woop, Benthin and Wald, "Watertight Ray/Triangle
 * Intersection", JCGT 2(1), 2013. The ray is permuted so its dominant axis becomes z
 * and sheared so it runs along +z from the origin; the three 2D edge functions then
 * decide the hit with a sign test that never lets a ray slip between two triangles
 * sharing an edge. Triangles are two-sided. The paper's fallback that re-evaluates an
 * edge function in double precision when it rounds to exactly zero is omitted, because
 * fp64 is optional in OpenCL 1.2: a zero edge function counts as inside, so a ray through
 * a shared edge (or vertex) hits both triangles and the tie rule below picks one.
 *
 * Bit-identical results need the same operations in the same order on both sides: host
 * code is compiled with -ffp-contract=off and kernels with `#pragma OPENCL FP_CONTRACT
 * OFF` (set below); there is no fma, sqrt or reassociation here. The divisions (shear
 * and 1/det) must be correctly rounded on the device: build kernels with
 * -cl-fp32-correctly-rounded-divide-sqrt where the device reports
 * CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT (PoCL's CPU device divides exactly anyway), and
 * never with -cl-fast-relaxed-math, -cl-mad-enable or -cl-denorms-are-zero.
 *
 * Example (host or kernel):
 *     mmd_isect_ray pr;
 *     mmd_isect_ray_init(&pr, r.ox, r.oy, r.oz, r.dx, r.dy, r.dz);
 *     float t, u, v;
 *     if (mmd_isect_tri(&pr, x0, y0, z0, x1, y1, z1, x2, y2, z2, r.tmin, best_t, &t, &u, &v)
 *         && mmd_isect_better(t, prim, best_t, best_prim)) { best_t = t; best_prim = prim; }
 */
#ifndef MMD_ISECT_H
#define MMD_ISECT_H

#include "mmd_shared.h"

#ifdef __OPENCL_VERSION__
#pragma OPENCL FP_CONTRACT OFF
#ifndef MMD_INLINE
#if defined(__OPENCL_C_VERSION__) && __OPENCL_C_VERSION__ >= 120
#define MMD_INLINE static inline /* OpenCL C 1.2 allows static; avoids C99 inline linkage */
#else
#define MMD_INLINE inline
#endif
#endif
#define MMD_ISECT_INF INFINITY
#define MMD_ISECT_FABS(x) fabs(x)
#else
#include <math.h>
#ifndef MMD_INLINE
#if defined(__GNUC__)
#define MMD_INLINE static inline __attribute__((always_inline))
#else
#define MMD_INLINE static inline
#endif
#endif
#define MMD_ISECT_INF INFINITY
#define MMD_ISECT_FABS(x) fabsf(x)
#endif

/* Wide BVH depth limit (nodes on the longest root-to-node path, root = 1). With a
 * traversal that pops one entry and pushes at most 8 children, the stack never holds
 * more than 7 * (depth - 1) + 8 = 7 * depth + 1 entries, which is MMD_BVH_STACK (64) for
 * depth 9. The builder guarantees it (it falls back to balanced splits where the LBVH
 * is too deep) and mmd_bvh_validate() checks it. */
#ifndef MMD_BVH_MAX_DEPTH
#define MMD_BVH_MAX_DEPTH 9
#endif

/* Relative slack applied to the box entry/exit distances so that rounding in the slab
 * test (3 roundings per distance) and in the triangle's t never culls a box that holds
 * an accepted hit, including hits tied with the current best (2^-18, about 32 ulp). */
#define MMD_ISECT_BOX_EPS 3.814697265625e-06f

/* Per-ray precomputation (paper, section 3): dominant axis kz, the other two axes in an
 * order that keeps the triangle winding, the shear constants, and for the box test the
 * reciprocal direction. An axis whose direction component is zero or subnormal is
 * flagged parallel (bit k of `par`) and tested as an all-or-nothing slab, avoiding the
 * 0 * inf = NaN of the textbook slab test (subnormal components are treated as exactly
 * parallel; the difference is far below float resolution for any sane scene). */
typedef struct mmd_isect_ray {
    float ox, oy, oz;   /* origin */
    float pox, poy, poz; /* origin permuted: o[kx], o[ky], o[kz] */
    float sx, sy, sz;   /* shear: d[kx]/d[kz], d[ky]/d[kz], 1/d[kz] */
    float idx, idy, idz; /* 1/d per axis (0 on parallel axes) */
    int kx, ky, kz;
    int par;
} mmd_isect_ray;

/* Component k (0, 1, 2) of (x, y, z). Selects, not array indexing: exact, and cheap in
 * private memory on GPUs. */
MMD_INLINE float mmd_isect_sel(int k, float x, float y, float z)
{
    return k == 0 ? x : (k == 1 ? y : z);
}

MMD_INLINE void mmd_isect_ray_init(mmd_isect_ray *r, float ox, float oy, float oz,
                                   float dx, float dy, float dz)
{
    float ax = MMD_ISECT_FABS(dx), ay = MMD_ISECT_FABS(dy), az = MMD_ISECT_FABS(dz);
    int kz = ax >= ay ? (ax >= az ? 0 : 2) : (ay >= az ? 1 : 2);
    int kx = kz == 2 ? 0 : kz + 1;
    int ky = kx == 2 ? 0 : kx + 1;
    float dkz = mmd_isect_sel(kz, dx, dy, dz);
    if (dkz < 0.0f) { /* swap to preserve the winding, as in the paper */
        int tmp = kx;
        kx = ky;
        ky = tmp;
    }
    r->ox = ox;
    r->oy = oy;
    r->oz = oz;
    r->kx = kx;
    r->ky = ky;
    r->kz = kz;
    r->pox = mmd_isect_sel(kx, ox, oy, oz);
    r->poy = mmd_isect_sel(ky, ox, oy, oz);
    r->poz = mmd_isect_sel(kz, ox, oy, oz);
    r->sx = mmd_isect_sel(kx, dx, dy, dz) / dkz;
    r->sy = mmd_isect_sel(ky, dx, dy, dz) / dkz;
    r->sz = 1.0f / dkz;
    /* 2^-126 = FLT_MIN: below it 1/d overflows to inf */
    const float tiny = 1.17549435e-38f;
    r->par = (ax < tiny ? 1 : 0) | (ay < tiny ? 2 : 0) | (az < tiny ? 4 : 0);
    r->idx = ax < tiny ? 0.0f : 1.0f / dx;
    r->idy = ay < tiny ? 0.0f : 1.0f / dy;
    r->idz = az < tiny ? 0.0f : 1.0f / dz;
}

/* Watertight ray/triangle test on vertex coordinates already permuted into the ray's
 * frame: ax = v0[kx] - o[kx] is formed here from a0 = v0[kx], a1 = v0[ky], a2 = v0[kz]
 * (and likewise b* for v1, c* for v2). Returns 1 and sets t, u, v (P = (1-u-v) v0 +
 * u v1 + v v2) when the ray hits the (two-sided) triangle with tmin <= t <= tmax;
 * degenerate (zero-area or edge-on) triangles never hit; NaN anywhere gives a miss.
 * Permuting is exact, so every wrapper below gives identical results. */
MMD_INLINE int mmd_isect_tri_perm(const mmd_isect_ray *r,
                                  float a0, float a1, float a2,
                                  float b0, float b1, float b2,
                                  float c0, float c1, float c2,
                                  float tmin, float tmax, float *t_out, float *u_out, float *v_out)
{
    /* vertices relative to the origin, in the ray's permuted frame */
    float ax = a0 - r->pox, ay = a1 - r->poy, az = a2 - r->poz;
    float bx = b0 - r->pox, by = b1 - r->poy, bz = b2 - r->poz;
    float cx = c0 - r->pox, cy = c1 - r->poy, cz = c2 - r->poz;
    /* shear so the ray becomes the +z axis */
    float Ax = ax - r->sx * az, Ay = ay - r->sy * az;
    float Bx = bx - r->sx * bz, By = by - r->sy * bz;
    float Cx = cx - r->sx * cz, Cy = cy - r->sy * cz;
    /* scaled barycentrics: 2D edge functions */
    float U = Cx * By - Cy * Bx;
    float V = Ax * Cy - Ay * Cx;
    float W = Bx * Ay - By * Ax;
    /* two-sided: all >= 0 or all <= 0; zero counts as inside (watertight). Bitwise |
     * and & instead of || and &&: one well-predicted branch (most triangles miss)
     * instead of several data-dependent ones. */
    int neg = (U < 0.0f) | (V < 0.0f) | (W < 0.0f);
    int pos = (U > 0.0f) | (V > 0.0f) | (W > 0.0f);
    if (neg & pos) return 0;
    float det = U + V + W;
    if (det == 0.0f) return 0;
    float Az = r->sz * az, Bz = r->sz * bz, Cz = r->sz * cz;
    float T = U * Az + V * Bz + W * Cz;
    float rcp = 1.0f / det;
    float t = T * rcp;
    if (!(t >= tmin && t <= tmax)) return 0;
    *t_out = t;
    *u_out = V * rcp;
    *v_out = W * rcp;
    return 1;
}

/* The same on plain vertex coordinates (selects; usable in kernels). */
MMD_INLINE int mmd_isect_tri(const mmd_isect_ray *r,
                             float v0x, float v0y, float v0z,
                             float v1x, float v1y, float v1z,
                             float v2x, float v2y, float v2z,
                             float tmin, float tmax, float *t_out, float *u_out, float *v_out)
{
    return mmd_isect_tri_perm(r,
                              mmd_isect_sel(r->kx, v0x, v0y, v0z), mmd_isect_sel(r->ky, v0x, v0y, v0z),
                              mmd_isect_sel(r->kz, v0x, v0y, v0z),
                              mmd_isect_sel(r->kx, v1x, v1y, v1z), mmd_isect_sel(r->ky, v1x, v1y, v1z),
                              mmd_isect_sel(r->kz, v1x, v1y, v1z),
                              mmd_isect_sel(r->kx, v2x, v2y, v2z), mmd_isect_sel(r->ky, v2x, v2y, v2z),
                              mmd_isect_sel(r->kz, v2x, v2y, v2z),
                              tmin, tmax, t_out, u_out, v_out);
}

#ifndef __OPENCL_VERSION__
/* Host only: vertices as float[3] arrays, permuted by indexed loads (cheaper than
 * selects in scalar C). */
MMD_INLINE int mmd_isect_tri_ptr(const mmd_isect_ray *r, const float *v0, const float *v1,
                                 const float *v2, float tmin, float tmax, float *t_out,
                                 float *u_out, float *v_out)
{
    return mmd_isect_tri_perm(r, v0[r->kx], v0[r->ky], v0[r->kz], v1[r->kx], v1[r->ky], v1[r->kz],
                              v2[r->kx], v2[r->ky], v2[r->kz], tmin, tmax, t_out, u_out, v_out);
}
#endif

/* Entry/exit distances of one slab. Near/far faces are chosen by the direction's sign
 * rather than by comparing the two distances, so an inverted box (lo > hi) gives
 * near > far and misses; a parallel axis is either the whole line or nothing. */
MMD_INLINE void mmd_isect_slab(int parallel, float lo, float hi, float o, float id,
                               float *tn, float *tf)
{
    if (parallel) {
        int in = lo <= o && o <= hi;
        *tn = in ? -MMD_ISECT_INF : MMD_ISECT_INF;
        *tf = in ? MMD_ISECT_INF : -MMD_ISECT_INF;
        return;
    }
    float t0 = (lo - o) * id, t1 = (hi - o) * id;
    *tn = id >= 0.0f ? t0 : t1;
    *tf = id >= 0.0f ? t1 : t0;
}

/* Conservative ray/AABB test: returns 1 when the box may hold a hit with t in
 * [tmin, tmax] and sets *t_near to the (slack-reduced) entry distance, for ordering.
 * An inverted box (lo = +INF, hi = -INF, the empty-slot marker) never hits. */
MMD_INLINE int mmd_isect_box(const mmd_isect_ray *r, float lox, float loy, float loz,
                             float hix, float hiy, float hiz, float tmin, float tmax,
                             float *t_near)
{
    float nx, fx, ny, fy, nz, fz;
    mmd_isect_slab(r->par & 1, lox, hix, r->ox, r->idx, &nx, &fx);
    mmd_isect_slab(r->par & 2, loy, hiy, r->oy, r->idy, &ny, &fy);
    mmd_isect_slab(r->par & 4, loz, hiz, r->oz, r->idz, &nz, &fz);
    float tn = nx > ny ? nx : ny;
    tn = tn > nz ? tn : nz;
    float tf = fx < fy ? fx : fy;
    tf = tf < fz ? tf : fz;
    /* widen [tn, tf] by the relative slack, away from zero on each side */
    tn = tn > 0.0f ? tn * (1.0f - MMD_ISECT_BOX_EPS) : tn * (1.0f + MMD_ISECT_BOX_EPS);
    tf = tf > 0.0f ? tf * (1.0f + MMD_ISECT_BOX_EPS) : tf * (1.0f - MMD_ISECT_BOX_EPS);
    *t_near = tn;
    return tn <= tf && tn <= tmax && tf >= tmin;
}

/* The closest-hit tie rule shared by every traversal: candidate (t, prim) replaces the
 * current best when it is nearer, or equally near with a smaller scene triangle index.
 * best_prim = 0xffffffff means "no hit yet", so any candidate with t == best_t wins. */
MMD_INLINE int mmd_isect_better(float t, mmd_u32 prim, float best_t, mmd_u32 best_prim)
{
    return t < best_t || (t == best_t && prim < best_prim);
}

#endif
