/*
 * aoa.cl - the AoA spectrum estimator of SPEC section 4 ("AoA spectrum (synthetic
 * aperture)"), receiver-launched with next-event connection to the TX, and the lag
 * covariance reduction that turns per-ray powers into the incoherent beam sum exactly
 * (docs/aoa.md).
 *
 * mmd_aoa_trace: one work-item per (pose, ray). The ray leaves the receiver along a
 * Fibonacci direction (per-pose random rotation), bounces up to max_depth times, and at
 * every vertex P_k connects to the TX with a shadow ray:
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


__kernel void mmd_aoa_trace(__global const mmd_bvh8_node *nodes, __global const mmd_tri *tris,
                            __global const mmd_prim_info *prims, __global const mmd_gpu_material *mats,
                            __global const float *lobe_coef, __global const mmd_gpu_pose *poses,
                            __constant const mmd_sim_params *P, uint n_poses, __global float *out)
{
    uint gid = get_global_id(0);
    uint b = gid / P->n_rays, i = gid - b * P->n_rays;
    if (b >= n_poses) return;
    __global const mmd_gpu_pose *pose = poses + b;
    float prot[9], txrot[9];
    for (int k = 0; k < 9; k++) prot[k] = pose->rot[k], txrot[k] = P->tx_rot[k];
    float3 ul = aoa_ray_local(P, pose->index, i);
    float3 d = normalize(mat3_mul(prot, ul));
    float3 o = (float3)(pose->pos[0], pose->pos[1], pose->pos[2]);
    float3 tx = (float3)(P->tx_pos[0], P->tx_pos[1], P->tx_pos[2]);
#ifdef MMD_SIM_FLAGS_CT
    /* the host compiles one program per flag set, so unused physics folds away */
    const uint flags = MMD_SIM_FLAGS_CT;
#else
    const uint flags = P->flags;
#endif
    const int jones = (flags & MMD_SIM_JONES) != 0;
    const int specular = (flags & MMD_SIM_SPECULAR) != 0;
    const int use_diffuse = (flags & MMD_SIM_DIFFUSE) != 0;
    const int use_trans = (flags & MMD_SIM_TRANSMIT) != 0;

    cvec3 w;
    w.re = mat3_mul(prot, pol_theta_hat(ul));
    w.im = (float3)(0.0f);
    float thr = 1.0f; /* scalar-mode throughput */
    float lam4pi = P->wavelength / (4.0f * MMD_PI);
    float pref = lam4pi * lam4pi * (4.0f * MMD_PI / (float)P->n_rays);
    float total = 0.0f;
    float tmin = 0.0f;
    uint seed = P->seed_lo ^ hash_u32(P->seed_hi);

    for (uint depth = 1; depth <= P->max_depth; depth++) {
        mmd_trace_ray tr;
        trace_ray_setup(&tr, o.x, o.y, o.z, d.x, d.y, d.z, tmin);
        float t, bu, bv;
        uint prim;
        if (!trav_closest(nodes, tris, &tr, INFINITY, &t, &prim, &bu, &bv)) break;
        float3 p = o + d * t;
        mmd_prim_info pi = prims[prim];
        float3 n = (float3)(pi.n[0], pi.n[1], pi.n[2]);
        if (dot(n, d) > 0.0f) n = -n; /* two-sided: face the arriving ray */
        mmd_gpu_material m = mats[pi.material];
        float2 eta = (float2)(m.eta_re, m.eta_im);
        float eps = fmax(offset_eps(P, p), pi.lift); /* clear a scanned surface's own bumps */
        float3 p_up = p + n * eps;

        /* ---- next-event connection to the TX ---- */
        float3 v = tx - p;
        float r = length(v);
        v /= r;
        float cos_v = dot(v, n);
        if (cos_v > 0.0f && r > 2.0f * eps) {
            mmd_trace_ray sr;
            float3 vs = tx - p_up;
            float rs = length(vs);
            trace_ray_setup(&sr, p_up.x, p_up.y, p_up.z, vs.x / rs, vs.y / rs, vs.z / rs, 0.0f);
            if (!trav_any(nodes, tris, &sr, rs * (1.0f - 1e-5f))) {
                float2 R[2], T[2];
                fresnel_rt(eta, m.thickness_m, P->k0, cos_v, R, T);
                float3 k_i = -v, k_s = -d;
                float f_lobe = 0.0f;
                if (!specular) {
                    float3 k_r = reflect3(k_i, n);
                    float F = lobe_norm(m.lobe_A, lobe_coef + m.coef_off, (int)m.ncoef, cos_v);
                    f_lobe = lobe_num(m.alpha, dot(k_r, k_s)) / F;
                }
                float f_diff = use_diffuse ? fmax(0.0f, dot(k_s, n)) / MMD_PI : 0.0f;
                float S2 = m.scattering * m.scattering;
                float3 txl = mat3_mul_t(txrot, v * -1.0f);
                float g_tx = antenna_gain(P->tx_kind, P->tx_q, P->tx_g0, txl);
                float rho;
                if (jones) {
                    float3 e_tx = mat3_mul(txrot, pol_theta_hat(txl));
                    float a_l = 0.0f, a_d = 0.0f;
                    if (f_lobe > 0.0f) a_l = c_abs2(cv_dot(lobe_map_t(k_i, n, k_s, R[0], R[1], w), e_tx));
                    if (f_diff > 0.0f && S2 > 0.0f)
                        a_d = c_abs2(cv_dot(diffuse_map_t(k_i, n, k_s, R[0], R[1], m.xpd, w), e_tx));
                    rho = (1.0f - S2) * f_lobe * a_l + S2 * f_diff * a_d;
                } else {
                    float g2 = 0.5f * (c_abs2(R[0]) + c_abs2(R[1]));
                    rho = thr * g2 * ((1.0f - S2) * f_lobe + S2 * f_diff);
                }
                total += pref * g_tx * rho / (r * r);
            }
        }
        if (depth == P->max_depth) break;

        /* ---- sample the next direction (fixed event probabilities) ---- */
        float u0 = rnd(seed, pose->index, i, 3u * depth);
        float u1 = rnd(seed, pose->index, i, 3u * depth + 1u);
        float u2 = rnd(seed, pose->index, i, 3u * depth + 2u);
        int can_trans = use_trans && m.thickness_m > 0.0f;
        float p_t = can_trans ? P->p_transmit : 0.0f;
        if (u0 < p_t) {
            /* transmission: continue straight through the thin slab */
            float cos_d = -dot(d, n);
            float2 R[2], T[2];
            fresnel_rt(eta, m.thickness_m, P->k0, cos_d, R, T);
            if (jones) {
                w = trans_map_t(d, n, T[0], T[1], w);
                w.re /= sqrt(p_t);
                w.im /= sqrt(p_t);
            } else {
                thr *= 0.5f * (c_abs2(T[0]) + c_abs2(T[1])) / p_t;
            }
            o = p - n * eps;
            tmin = 0.0f;
            continue;
        }
        float p_refl = 1.0f - p_t;
        u0 = (u0 - p_t) / p_refl; /* reuse the remaining uniform for the next choice */
        float p_d = use_diffuse ? P->p_diffuse : 0.0f;
        float S2 = m.scattering * m.scattering;
        float3 omega;
        int diffuse_event = u0 < p_d;
        if (diffuse_event) {
            omega = diffuse_sample(n, u1, u2);
        } else if (specular) {
            omega = reflect3(d, n);
        } else {
            omega = lobe_sample(m.alpha, reflect3(d, n), u1, u2);
        }
        float cos_o = dot(omega, n);
        if (cos_o <= 0.0f) break; /* below the surface: zero weight */
        float2 R[2], T[2];
        fresnel_rt(eta, m.thickness_m, P->k0, cos_o, R, T);
        float3 k_i = -omega, k_s = -d;
        float weight;
        if (diffuse_event) {
            weight = S2 / (p_refl * p_d); /* f/pdf = 1 for cosine sampling */
        } else if (specular) {
            weight = (1.0f - S2) / (p_refl * (1.0f - p_d));
        } else {
            float F = lobe_norm(m.lobe_A, lobe_coef + m.coef_off, (int)m.ncoef, cos_o);
            weight = (1.0f - S2) * (4.0f * MMD_PI / ((float)(m.alpha + 1) * F)) / (p_refl * (1.0f - p_d));
        }
        if (!(weight > 0.0f)) break;
        if (jones) {
            w = diffuse_event ? diffuse_map_t(k_i, n, k_s, R[0], R[1], m.xpd, w)
                              : lobe_map_t(k_i, n, k_s, R[0], R[1], w);
            float s = sqrt(weight);
            w.re *= s;
            w.im *= s;
        } else {
            thr *= weight * 0.5f * (c_abs2(R[0]) + c_abs2(R[1]));
        }
        o = p_up;
        d = omega;
        tmin = 0.0f;
    }
    out[gid] = total;
}

/* Lag covariance G(p, q) = sum_i c_i G_RX(u_i) e^{j kappa (p u_iy + q u_iz)} for
 * p in [0, cols-1], q in [-(rows-1), rows-1] (docs/aoa.md). One work-group handles
 * `rays_per_group` consecutive rays of one pose in chunks of its size (>= the number of
 * lags): each work-item first puts one ray's weighted column phases w e^{j kappa p u_y}
 * and row phases e^{j kappa q u_z} into local memory, then work-item l accumulates lag l
 * over the chunk (a uniform loop, which CPU drivers vectorise across work-items).
 * Partial sums go to partial[(pose * n_groups + group) * n_lags + l] and are summed on the
 * host in double, in a fixed order. */
__kernel void mmd_aoa_lags(__global const float *c, __global const mmd_gpu_pose *poses,
                           __constant const mmd_sim_params *P, uint n_poses, int rx_kind, float rx_q,
                           float rx_g0, int cols, int rows, float kappa, uint rays_per_group,
                           __global float2 *partial, __local float *lw, __local float2 *lpy,
                           __local float2 *lpz)
{
    uint lid = get_local_id(0), lsz = get_local_size(0);
    uint groups_per_pose = (P->n_rays + rays_per_group - 1) / rays_per_group;
    uint g = get_group_id(0);
    uint b = g / groups_per_pose, gi = g - b * groups_per_pose;
    if (b >= n_poses) return;
    uint pose_index = poses[b].index;
    int n_lags = cols * (2 * rows - 1);
    int l = (int)lid < n_lags ? (int)lid : n_lags - 1; /* spare work-items shadow the last lag */
    int p = l / (2 * rows - 1), q = l - p * (2 * rows - 1) - (rows - 1);
    int aq = q < 0 ? -q : q;
    float sgn = q < 0 ? -1.0f : 1.0f;
    float2 acc = (float2)(0.0f);
    uint start = gi * rays_per_group;
    uint end = min(start + rays_per_group, P->n_rays);
    (void)lw;
    for (uint base = start; base < end; base += lsz) {
        uint i = base + lid;
        float wgt = 0.0f;
        float3 ul = (float3)(1.0f, 0.0f, 0.0f);
        if (i < end) {
            ul = aoa_ray_local(P, pose_index, i);
            float ci = c[(size_t)b * P->n_rays + i];
            wgt = ci > 0.0f ? ci * antenna_gain(rx_kind, rx_q, rx_g0, ul) : 0.0f;
        }
        float cy, sy = sincos(kappa * ul.y, &cy), cz, sz = sincos(kappa * ul.z, &cz);
        float2 ey = (float2)(cy, sy), ez = (float2)(cz, sz);
        float2 py = (float2)(wgt, 0.0f), pz = (float2)(1.0f, 0.0f);
        for (int k = 0; k < cols; k++) {
            lpy[lid * cols + k] = py;
            py = c_mul(py, ey);
        }
        for (int k = 0; k < rows; k++) {
            lpz[lid * rows + k] = pz;
            pz = c_mul(pz, ez);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        uint nr = min(lsz, end - base);
        for (uint r = 0; r < nr; r++) {
            float2 zy = lpy[r * cols + p], zz = lpz[r * rows + aq];
            zz.y *= sgn;
            acc += c_mul(zy, zz);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if ((int)lid < n_lags) partial[((size_t)b * groups_per_pose + gi) * n_lags + lid] = acc;
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
