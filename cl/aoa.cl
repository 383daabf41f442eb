/*
 * aoa.cl - the AoA spectrum estimator of SPEC section 4 ("AoA spectrum (synthetic
 * aperture)"), receiver-launched with next-event connection to the TX, and the lag
 * covariance reduction that turns per-ray powers into the incoherent beam sum exactly
 * (docs/aoa.md).
 *
 * mmd_aoa_trace: one work-item per (pose, ray), or per two on CPU devices. The ray
 * leaves the receiver along a Fibonacci direction (per-pose random rotation), bounces up
 * to max_depth times, and at every vertex P_k connects to the TX with a shadow ray:
 *     c_k = (lambda/4pi)^2 dOmega G_TX(-v) T_<k rho_k(omega_in -> v) / r^2      (SPEC 4)
 * with rho = Gamma^2 [(1 - S^2) f_lobe + S^2 cos/pi] (SPEC 3, mmDiff Eq. 7). The output is
 * sum_k c_k without the receiver element gain (applied in the reduction, since every
 * contribution of a ray arrives from the ray's first direction).
 *
 * Sampling depends only on geometry and fixed parameters (SPEC 4 key rule): the event
 * (transmission / lobe / diffuse) is chosen with fixed probabilities, directions from the
 * lobe of the *ray* geometry, and all material dependence (eta, S, K_x) sits in weights.
 *
 * Polarisation (MMD_SIM_JONES): reciprocity lets us carry, from the receiver side, the
 * complex 3-vector w with w^T = e_RX^T L_1 ... L_{k-1}; each interaction's field map L
 * (specular Jones matrix diag(R_TE, R_TM) in the TE/TM basis, then the minimal rotation
 * k_r -> k_s for the lobe; K_x mixing for the diffuse part; diag(T_TE, T_TM) for
 * transmission) is applied transposed, and a connection contributes
 * |(L_k^T w) . e_TX|^2. In scalar mode Gamma^2 = (|R_TE|^2 + |R_TM|^2) / 2.
 */
#pragma OPENCL FP_CONTRACT OFF
#include "mmd_shared.h"
#include "traverse.h"
#include "physics.h"
#include "sample.h"
#include "jones.h"
#include "sim_common.h"


/* Per-ray state of mmd_aoa_trace: the path so far, the hit being connected to the TX, and
 * the traversal in progress (AOA_CLOSEST: the next segment; AOA_SHADOW: the connection). */
#define AOA_CLOSEST 0
#define AOA_SHADOW 1
#define AOA_DONE 2

typedef struct aoa_ray {
    mmd_trav q;
    int phase;
    uint depth, i, pose_index;
    float3 o, d;
    cvec3 w;     /* Jones mode: e_RX^T L_1 ... L_{k-1}, carried from the receiver */
    float thr;   /* scalar-mode throughput */
    float total; /* sum of the connections so far */
    float3 p, n; /* the current hit and its normal, facing the arriving ray */
    float3 v;    /* unit direction from the hit to the TX, at distance r */
    float r, eps;
    uint material;
} aoa_ray;

/* Scene and run inputs every step needs. */
typedef struct aoa_scene {
    __global const mmd_bvh8_node *nodes;
    __global const mmd_tri *tris;
    __global const mmd_prim_info *prims;
    __global const mmd_gpu_material *mats;
    __global const float *lobe_coef;
    __constant const mmd_sim_params *P;
    float txrot[9];
} aoa_scene;

#ifdef MMD_SIM_FLAGS_CT
/* the host compiles one program per flag set, so unused physics folds away */
#define AOA_FLAGS(P) (MMD_SIM_FLAGS_CT)
#else
#define AOA_FLAGS(P) ((P)->flags)
#endif

/* Two rays per work-item on CPU devices (see mmd_trav in traverse.h); the host sizes the
 * launch from the same macro it passes (src/sim/aoa.c). */
#ifndef MMD_AOA_PER_ITEM
#define MMD_AOA_PER_ITEM 1
#endif

inline void aoa_trace_segment(aoa_ray *s)
{
    trace_ray_setup(&s->q.tr, s->o.x, s->o.y, s->o.z, s->d.x, s->d.y, s->d.z, 0.0f);
    trav_start(&s->q, INFINITY);
    s->phase = AOA_CLOSEST;
}

/* Ray `i` of pose `pose`: its first segment from the receiver. `rot` is the pose's
 * Fibonacci rotation (aoa_ray_rotation), computed once per work-item by the caller. */
inline void aoa_ray_start(aoa_ray *s, __global const mmd_gpu_pose *pose, __constant const mmd_sim_params *P, uint i,
                          const float rot[9])
{
    float prot[9];
    for (int k = 0; k < 9; k++) prot[k] = pose->rot[k];
    float3 ul = mat3_mul(rot, fibonacci_dir(i, P->n_rays)); /* = aoa_ray_local(P, pose->index, i) */
    s->i = i;
    s->pose_index = pose->index;
    s->depth = 1;
    s->d = normalize(mat3_mul(prot, ul));
    s->o = (float3)(pose->pos[0], pose->pos[1], pose->pos[2]);
    s->w.re = mat3_mul(prot, pol_theta_hat(ul));
    s->w.im = (float3)(0.0f);
    s->thr = 1.0f;
    s->total = 0.0f;
    aoa_trace_segment(s);
}

/* After the connection (or without one): sample the next direction with fixed event
 * probabilities and trace it, or end the path. */
inline void aoa_continue(aoa_ray *s, const aoa_scene *sc)
{
    __constant const mmd_sim_params *P = sc->P;
    const uint flags = AOA_FLAGS(P);
    const int jones = (flags & MMD_SIM_JONES) != 0;
    const int use_trans = (flags & MMD_SIM_TRANSMIT) != 0;
    if (s->depth == P->max_depth) {
        s->phase = AOA_DONE;
        return;
    }
    mmd_gpu_material m = sc->mats[s->material];
    float2 eta = (float2)(m.eta_re, m.eta_im);
    float3 n = s->n, d = s->d;
    uint seed = P->seed_lo ^ hash_u32(P->seed_hi);
    uint dim = 3u * s->depth;
    float u0 = rnd(seed, s->pose_index, s->i, dim);
    float u1 = rnd(seed, s->pose_index, s->i, dim + 1u);
    float u2 = rnd(seed, s->pose_index, s->i, dim + 2u);
    s->depth++;
    int can_trans = use_trans && m.thickness_m > 0.0f;
    float p_t = can_trans ? P->p_transmit : 0.0f;
    if (u0 < p_t) {
        /* transmission: continue straight through the thin slab */
        float cos_d = -dot(d, n);
        float2 R[2], T[2];
        fresnel_rt(eta, m.thickness_m, P->k0, cos_d, R, T);
        if (jones) {
            s->w = trans_map_t(d, n, T[0], T[1], s->w);
            s->w.re /= sqrt(p_t);
            s->w.im /= sqrt(p_t);
        } else {
            s->thr *= 0.5f * (c_abs2(T[0]) + c_abs2(T[1])) / p_t;
        }
        s->o = s->p - n * s->eps;
        aoa_trace_segment(s);
        return;
    }
    float p_refl = 1.0f - p_t;
    u0 = (u0 - p_t) / p_refl; /* reuse the remaining uniform for the next choice */
    float3 omega;
    float weight;
    int diffuse_event = sim_reflect_event(P, flags, &m, sc->lobe_coef, d, n, p_refl, u0, u1, u2, 1, &omega, &weight);
    if (diffuse_event < 0) {
        s->phase = AOA_DONE;
        return;
    }
    float2 R[2], T[2];
    fresnel_rt(eta, m.thickness_m, P->k0, dot(omega, n), R, T);
    float3 k_i = -omega, k_s = -d;
    if (jones) {
        s->w = diffuse_event ? diffuse_map_t(k_i, n, k_s, R[0], R[1], m.xpd, s->w)
                             : lobe_map_t(k_i, n, k_s, R[0], R[1], s->w);
        float sw = sqrt(weight);
        s->w.re *= sw;
        s->w.im *= sw;
    } else {
        s->thr *= weight * 0.5f * (c_abs2(R[0]) + c_abs2(R[1]));
    }
    s->o = s->p + n * s->eps;
    s->d = omega;
    aoa_trace_segment(s);
}

/* The closest hit of the segment is known: set up the next-event connection to the TX
 * (a shadow ray) when the TX is in front of the surface, else continue the path. */
inline void aoa_after_closest(aoa_ray *s, const aoa_scene *sc)
{
    __constant const mmd_sim_params *P = sc->P;
    if (s->q.best_prim == 0xffffffffu) {
        s->phase = AOA_DONE;
        return;
    }
    float3 p = s->o + s->d * s->q.best_t;
    mmd_prim_info pi = sc->prims[s->q.best_prim];
    float3 n = (float3)(pi.n[0], pi.n[1], pi.n[2]);
    if (dot(n, s->d) > 0.0f) n = -n; /* two-sided: face the arriving ray */
    s->p = p;
    s->n = n;
    s->material = pi.material;
    s->eps = fmax(offset_eps(P, p), pi.lift); /* clear a scanned surface's own bumps */
    float3 tx = (float3)(P->tx_pos[0], P->tx_pos[1], P->tx_pos[2]);
    float3 v = tx - p;
    float r = length(v);
    v /= r;
    s->v = v;
    s->r = r;
    if (dot(v, n) > 0.0f && r > 2.0f * s->eps) {
        float3 p_up = p + n * s->eps;
        float3 vs = tx - p_up;
        float rs = length(vs);
        trace_ray_setup(&s->q.tr, p_up.x, p_up.y, p_up.z, vs.x / rs, vs.y / rs, vs.z / rs, 0.0f);
        trav_start(&s->q, rs * (1.0f - 1e-5f));
        s->phase = AOA_SHADOW;
        return;
    }
    aoa_continue(s, sc);
}

/* The connection is unoccluded: add c_k = (lambda/4pi)^2 dOmega G_TX rho / r^2. */
inline void aoa_connect(aoa_ray *s, const aoa_scene *sc)
{
    __constant const mmd_sim_params *P = sc->P;
    const uint flags = AOA_FLAGS(P);
    const int jones = (flags & MMD_SIM_JONES) != 0;
    const int specular = (flags & MMD_SIM_SPECULAR) != 0;
    const int use_diffuse = (flags & MMD_SIM_DIFFUSE) != 0;
    mmd_gpu_material m = sc->mats[s->material];
    float2 eta = (float2)(m.eta_re, m.eta_im);
    float3 n = s->n, v = s->v;
    float cos_v = dot(v, n);
    float2 R[2], T[2];
    fresnel_rt(eta, m.thickness_m, P->k0, cos_v, R, T);
    float3 k_i = -v, k_s = -s->d;
    float f_lobe = 0.0f;
    if (!specular) {
        float3 k_r = reflect3(k_i, n);
        float F = lobe_norm(m.lobe_A, sc->lobe_coef + m.coef_off, (int)m.ncoef, cos_v);
        f_lobe = lobe_num(m.alpha, dot(k_r, k_s)) / F;
    }
    float f_diff = use_diffuse ? fmax(0.0f, dot(k_s, n)) / MMD_PI : 0.0f;
    float S2 = m.scattering * m.scattering;
    float3 txl = mat3_mul_t(sc->txrot, v * -1.0f);
    float g_tx = antenna_gain(P->tx_kind, P->tx_q, P->tx_g0, txl);
    float rho;
    if (jones) {
        float3 e_tx = mat3_mul(sc->txrot, pol_theta_hat(txl));
        float a_l = 0.0f, a_d = 0.0f;
        if (f_lobe > 0.0f) a_l = c_abs2(cv_dot(lobe_map_t(k_i, n, k_s, R[0], R[1], s->w), e_tx));
        if (f_diff > 0.0f && S2 > 0.0f) a_d = c_abs2(cv_dot(diffuse_map_t(k_i, n, k_s, R[0], R[1], m.xpd, s->w), e_tx));
        rho = (1.0f - S2) * f_lobe * a_l + S2 * f_diff * a_d;
    } else {
        float g2 = 0.5f * (c_abs2(R[0]) + c_abs2(R[1]));
        rho = s->thr * g2 * ((1.0f - S2) * f_lobe + S2 * f_diff);
    }
    float lam4pi = P->wavelength / (4.0f * MMD_PI);
    float pref = lam4pi * lam4pi * (4.0f * MMD_PI / (float)P->n_rays);
    s->total += pref * g_tx * rho / (s->r * s->r);
}

/* Advance the ray by one traversal step, and through the shading between its queries
 * when a query ends. */
inline void aoa_step(aoa_ray *s, const aoa_scene *sc)
{
    if (s->phase == AOA_CLOSEST) {
        if (!trav_closest_step(sc->nodes, sc->tris, &s->q)) aoa_after_closest(s, sc);
    } else if (s->phase == AOA_SHADOW) {
        if (!trav_any_step(sc->nodes, sc->tris, &s->q)) {
            if (s->q.best_prim != 0u) aoa_connect(s, sc);
            aoa_continue(s, sc);
        }
    }
}

/* One work-item per MMD_AOA_PER_ITEM consecutive (pose, ray) pairs of the batch. */
__kernel void mmd_aoa_trace(__global const mmd_bvh8_node *nodes, __global const mmd_tri *tris,
                            __global const mmd_prim_info *prims, __global const mmd_gpu_material *mats,
                            __global const float *lobe_coef, __global const mmd_gpu_pose *poses,
                            __constant const mmd_sim_params *P, uint n_poses, __global float *out)
{
    aoa_scene sc;
    sc.nodes = nodes;
    sc.tris = tris;
    sc.prims = prims;
    sc.mats = mats;
    sc.lobe_coef = lobe_coef;
    sc.P = P;
    for (int k = 0; k < 9; k++) sc.txrot[k] = P->tx_rot[k];
    size_t n_total = (size_t)n_poses * P->n_rays;
    size_t g0 = get_global_id(0) * (size_t)MMD_AOA_PER_ITEM;
    aoa_ray s[MMD_AOA_PER_ITEM];
    int live = 0;
    uint rot_pose = 0xffffffffu;
    float rot[9];
    for (int k = 0; k < MMD_AOA_PER_ITEM; k++) {
        size_t g = g0 + (size_t)k;
        s[k].phase = AOA_DONE;
        if (g >= n_total) continue;
        uint b = (uint)(g / P->n_rays), i = (uint)(g - (size_t)b * P->n_rays);
        if (b != rot_pose) { /* the rays of a work-item nearly always share their pose */
            aoa_ray_rotation(P, poses[b].index, rot);
            rot_pose = b;
        }
        aoa_ray_start(&s[k], poses + b, P, i, rot);
        live = 1;
    }
    if (!live) return;
#if MMD_AOA_PER_ITEM == 2
    while (s[0].phase != AOA_DONE || s[1].phase != AOA_DONE) {
        aoa_step(&s[0], &sc);
        aoa_step(&s[1], &sc);
    }
#else
    for (int k = 0; k < MMD_AOA_PER_ITEM; k++)
        while (s[k].phase != AOA_DONE) aoa_step(&s[k], &sc);
#endif
    for (int k = 0; k < MMD_AOA_PER_ITEM; k++)
        if (g0 + (size_t)k < n_total) out[g0 + (size_t)k] = s[k].total;
}

/* Lag covariance G(p, q) = sum_i c_i G_RX(u_i) e^{j kappa (p u_iy + q u_iz)} for
 * p in [0, cols-1], q in [-(rows-1), rows-1] (docs/aoa.md). One work-item sums
 * `rays_per_item` consecutive rays of one pose into all lags at once, accumulated in
 * private memory. The column index p runs in the lanes of one vector (float4/8/16, the
 * lanes past `cols` carry zero weight): PoCL cannot vectorise this loop across
 * work-items (the ray loop has a data-dependent `continue`), so the outer product is
 * written as vector code; on a GPU the vectors are scalarised. Per ray: the column phases
 * w e^{j kappa p u_y} in one vector sincos, the row phases e^{j kappa q u_z} (q >= 0; q < 0
 * is the conjugate) by recurrence. Partial sums go to
 * partial[(pose * items_per_pose + item) * n_lags + l] and are summed on the host in
 * double, in a fixed order. */
#define AOA_NQ (2 * MMD_AOA_ROWS - 1)
#define AOA_NLAGS (MMD_AOA_COLS * AOA_NQ)
#if MMD_AOA_COLS <= 4
#define AOA_VW 4
#define AOA_VT float4
#define AOA_IOTA ((float4)(0, 1, 2, 3))
#define AOA_VSTORE vstore4
#elif MMD_AOA_COLS <= 8
#define AOA_VW 8
#define AOA_VT float8
#define AOA_IOTA ((float8)(0, 1, 2, 3, 4, 5, 6, 7))
#define AOA_VSTORE vstore8
#elif MMD_AOA_COLS <= 16
#define AOA_VW 16
#define AOA_VT float16
#define AOA_IOTA ((float16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
#define AOA_VSTORE vstore16
#endif
__kernel void mmd_aoa_lags(__global const float *c, __global const mmd_gpu_pose *poses,
                           __constant const mmd_sim_params *P, uint n_poses, int rx_kind, float rx_q,
                           float rx_g0, float kappa, uint rays_per_item, __global float2 *partial)
{
    uint gid = get_global_id(0);
    uint items_per_pose = (P->n_rays + rays_per_item - 1) / rays_per_item;
    uint b = gid / items_per_pose, it = gid - b * items_per_pose;
    if (b >= n_poses) return;
    float rot[9];
    aoa_ray_rotation(P, poses[b].index, rot);
    uint start = it * rays_per_item, end = min(start + rays_per_item, P->n_rays);
    __global const float *cb = c + (size_t)b * P->n_rays;
    __global float2 *out = partial + (size_t)gid * AOA_NLAGS;
#ifdef AOA_VT
    AOA_VT accr[AOA_NQ], acci[AOA_NQ];
    for (int l = 0; l < AOA_NQ; l++) accr[l] = acci[l] = (AOA_VT)(0.0f);
    const AOA_VT lane_on = select((AOA_VT)(0.0f), (AOA_VT)(1.0f), AOA_IOTA < (AOA_VT)((float)MMD_AOA_COLS));
    for (uint i = start; i < end; i++) {
        float ci = cb[i];
        if (!(ci > 0.0f)) continue;
        float3 ul = mat3_mul(rot, fibonacci_dir(i, P->n_rays));
        float wgt = ci * antenna_gain(rx_kind, rx_q, rx_g0, ul);
        AOA_VT ycos, ysin = sincos((kappa * ul.y) * AOA_IOTA, &ycos);
        AOA_VT w = wgt * lane_on;
        AOA_VT yr = w * ycos, yi = w * ysin;
        float cz, sz = sincos(kappa * ul.z, &cz);
        float zr = 1.0f, zi = 0.0f;
        accr[MMD_AOA_ROWS - 1] += yr;
        acci[MMD_AOA_ROWS - 1] += yi;
        for (int q = 1; q < MMD_AOA_ROWS; q++) {
            float t = zr * cz - zi * sz;
            zi = zr * sz + zi * cz;
            zr = t;
            /* lag +q: y_p z_q; lag -q: y_p conj(z_q) */
            AOA_VT a = yr * zr, bb = yi * zi, cc = yr * zi, d = yi * zr;
            accr[MMD_AOA_ROWS - 1 + q] += a - bb;
            acci[MMD_AOA_ROWS - 1 + q] += cc + d;
            accr[MMD_AOA_ROWS - 1 - q] += a + bb;
            acci[MMD_AOA_ROWS - 1 - q] += d - cc;
        }
    }
    float lr[AOA_VW], li[AOA_VW];
    for (int qi = 0; qi < AOA_NQ; qi++) {
        AOA_VSTORE(accr[qi], 0, lr);
        AOA_VSTORE(acci[qi], 0, li);
        for (int p = 0; p < MMD_AOA_COLS; p++) out[p * AOA_NQ + qi] = (float2)(lr[p], li[p]);
    }
#else
    float are[AOA_NLAGS], aim[AOA_NLAGS];
    for (int l = 0; l < AOA_NLAGS; l++) are[l] = aim[l] = 0.0f;
    for (uint i = start; i < end; i++) {
        float ci = cb[i];
        if (!(ci > 0.0f)) continue;
        float3 ul = mat3_mul(rot, fibonacci_dir(i, P->n_rays));
        float wgt = ci * antenna_gain(rx_kind, rx_q, rx_g0, ul);
        float cy, sy = sincos(kappa * ul.y, &cy), cz, sz = sincos(kappa * ul.z, &cz);
        float yr[MMD_AOA_COLS], yi[MMD_AOA_COLS], zr[MMD_AOA_ROWS], zi[MMD_AOA_ROWS];
        yr[0] = wgt, yi[0] = 0.0f;
        for (int k = 1; k < MMD_AOA_COLS; k++) {
            yr[k] = yr[k - 1] * cy - yi[k - 1] * sy;
            yi[k] = yr[k - 1] * sy + yi[k - 1] * cy;
        }
        zr[0] = 1.0f, zi[0] = 0.0f;
        for (int k = 1; k < MMD_AOA_ROWS; k++) {
            zr[k] = zr[k - 1] * cz - zi[k - 1] * sz;
            zi[k] = zr[k - 1] * sz + zi[k - 1] * cz;
        }
        for (int p = 0; p < MMD_AOA_COLS; p++) {
            float *ar = are + p * AOA_NQ + (MMD_AOA_ROWS - 1), *ai = aim + p * AOA_NQ + (MMD_AOA_ROWS - 1);
            for (int q = 0; q < MMD_AOA_ROWS; q++) { /* lag +q: y_p z_q */
                ar[q] += yr[p] * zr[q] - yi[p] * zi[q];
                ai[q] += yr[p] * zi[q] + yi[p] * zr[q];
            }
            for (int q = 1; q < MMD_AOA_ROWS; q++) { /* lag -q: y_p conj(z_q) */
                ar[-q] += yr[p] * zr[q] + yi[p] * zi[q];
                ai[-q] += yi[p] * zr[q] - yr[p] * zi[q];
            }
        }
    }
    for (int l = 0; l < AOA_NLAGS; l++) out[l] = (float2)(are[l], aim[l]);
#endif
}

/* Ray directions (array frame) of a batch, for tests and tools that recompute the beam
 * sum directly: dirs[3 (pose * n_rays + ray) + k]. */
__kernel void mmd_aoa_dirs(__global const mmd_gpu_pose *poses, __constant const mmd_sim_params *P, uint n_poses,
                           __global float *dirs)
{
    uint gid = get_global_id(0);
    uint b = gid / P->n_rays, i = gid - b * P->n_rays;
    if (b >= n_poses) return;
    float3 ul = aoa_ray_local(P, poses[b].index, i);
    vstore3(ul, gid, dirs);
}
