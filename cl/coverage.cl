/*
 * coverage.cl - the coverage-map estimator of SPEC section 4 ("Coverage map"): rays
 * launched from the TX, each crossing of the map plane z = z_m inside the map deposits
 *     g_cell += (lambda/4pi)^2 dOmega G_TX(u_0) T / (A_cell |cos theta_plane|)
 * (Sionna RT's radio-map estimator, extended with the directional lobe, Lambertian diffuse
 * and slab transmission of SPEC 3). T is the ray's throughput: in the polarised mode the
 * power |E . theta_hat(-d)|^2 an upright iso receiver with vertical polarisation picks up
 * (the receiver the AoA model's total power is defined with), with E the Jones-vector
 * field carried forward from the TX polarisation; in scalar mode the unpolarised power.
 *
 * The expectation of a cell's value is the cell average of the received power (for free
 * space exactly the area average of Friis over the cell); docs/coverage.md.
 *
 * Sampling depends only on geometry and fixed parameters (SPEC 4 key rule), exactly as in
 * aoa.cl: event choice with fixed probabilities, lobe sampled around the specular direction
 * of the ray geometry, material dependence in the weights only.
 *
 * One work-item per TX ray. It writes max_depth + 1 deposit slots (one per segment: the
 * segment after k interactions crosses the plane at most once): cell index or
 * 0xffffffff, and the value. The host sums the slots in ray order in double precision,
 * so the map is bitwise reproducible for a seed on a device.
 */
#pragma OPENCL FP_CONTRACT OFF
#include "mmd_shared.h"
#include "traverse.h"
#include "physics.h"
#include "sample.h"
#include "jones.h"
#include "sim_common.h"

#define COV_NONE 0xffffffffu
/* RNG stream of the TX-launched estimators (AoA poses use their pose index). */
#define COV_STREAM 0xfffffff0u

/* Cell of the crossing of segment (o, d, t in (0, t_end)) with the plane, or COV_NONE. */
inline uint cov_cell(float3 o, float3 d, float t_end, float z, float x0, float y0, float inv_cell, int nx, int ny,
                     float *t_cross)
{
    if (d.z == 0.0f) return COV_NONE;
    float t = (z - o.z) / d.z;
    if (!(t > 0.0f) || !(t < t_end)) return COV_NONE;
    float fx = (o.x + d.x * t - x0) * inv_cell, fy = (o.y + d.y * t - y0) * inv_cell;
    if (!(fx >= 0.0f) || !(fy >= 0.0f)) return COV_NONE;
    int ix = (int)fx, iy = (int)fy;
    if (ix >= nx || iy >= ny) return COV_NONE;
    *t_cross = t;
    return (uint)(iy * nx + ix);
}

/* Received power factor of the ray at a crossing (see the header). */
inline float cov_rx_power(int jones, cvec3 E, float thr, float3 d)
{
    if (!jones) return thr;
    float3 e_rx = pol_theta_hat(-d); /* upright receiver: its frame is the world frame */
    return c_abs2(cv_dot(E, e_rx));
}

__kernel void mmd_coverage_trace(__global const mmd_bvh8_node *nodes, __global const mmd_tri *tris,
                                 __global const mmd_prim_info *prims, __global const mmd_gpu_material *mats,
                                 __global const float *lobe_coef, __constant const mmd_sim_params *P,
                                 uint first_ray, uint n_rays_batch, uint n_rays_total, float z_plane, float x0,
                                 float y0, float cell, int nx, int ny, __global uint *out_cell,
                                 __global float *out_val)
{
    uint gid = get_global_id(0);
    if (gid >= n_rays_batch) return;
    uint i = first_ray + gid;
    uint slots = P->max_depth + 1u;
    __global uint *oc = out_cell + (size_t)gid * slots;
    __global float *ov = out_val + (size_t)gid * slots;
    for (uint k = 0; k < slots; k++) oc[k] = COV_NONE, ov[k] = 0.0f;

#ifdef MMD_SIM_FLAGS_CT
    const uint flags = MMD_SIM_FLAGS_CT;
#else
    const uint flags = P->flags;
#endif
    const int jones = (flags & MMD_SIM_JONES) != 0;
    const int specular = (flags & MMD_SIM_SPECULAR) != 0;
    const int use_diffuse = (flags & MMD_SIM_DIFFUSE) != 0;
    const int use_trans = (flags & MMD_SIM_TRANSMIT) != 0;

    float txrot[9], rot[9];
    for (int k = 0; k < 9; k++) txrot[k] = P->tx_rot[k];
    random_rotation(P->seed_lo, COV_STREAM, rot);
    float3 d = normalize(mat3_mul(rot, fibonacci_dir(i, n_rays_total)));
    float3 o = (float3)(P->tx_pos[0], P->tx_pos[1], P->tx_pos[2]);
    float3 txl = mat3_mul_t(txrot, d);
    float g_tx = antenna_gain(P->tx_kind, P->tx_q, P->tx_g0, txl);
    if (!(g_tx > 0.0f)) return;
    cvec3 E;
    E.re = mat3_mul(txrot, pol_theta_hat(txl));
    E.im = (float3)(0.0f);
    float thr = 1.0f;
    float lam4pi = P->wavelength / (4.0f * MMD_PI);
    float inv_cell = 1.0f / cell;
    float pref = lam4pi * lam4pi * (4.0f * MMD_PI / (float)n_rays_total) * g_tx * (inv_cell * inv_cell);
    uint seed = P->seed_lo ^ hash_u32(P->seed_hi);

    for (uint depth = 0;; depth++) {
        float t_cross = 0.0f;
        if (depth == P->max_depth) {
            /* last segment: only its plane crossing matters, an any-hit query up to it */
            uint c = cov_cell(o, d, INFINITY, z_plane, x0, y0, inv_cell, nx, ny, &t_cross);
            if (c != COV_NONE) {
                mmd_trace_ray sr;
                trace_ray_setup(&sr, o.x, o.y, o.z, d.x, d.y, d.z, 0.0f);
                if (!trav_any(nodes, tris, &sr, t_cross)) {
                    oc[depth] = c;
                    ov[depth] = pref * cov_rx_power(jones, E, thr, d) / fabs(d.z);
                }
            }
            break;
        }
        mmd_trace_ray tr;
        trace_ray_setup(&tr, o.x, o.y, o.z, d.x, d.y, d.z, 0.0f);
        float t, bu, bv;
        uint prim;
        int hit = trav_closest(nodes, tris, &tr, INFINITY, &t, &prim, &bu, &bv);
        uint c = cov_cell(o, d, hit ? t : INFINITY, z_plane, x0, y0, inv_cell, nx, ny, &t_cross);
        if (c != COV_NONE) {
            oc[depth] = c;
            ov[depth] = pref * cov_rx_power(jones, E, thr, d) / fabs(d.z);
        }
        if (!hit) break;

        float3 p = o + d * t;
        mmd_prim_info pi = prims[prim];
        float3 n = (float3)(pi.n[0], pi.n[1], pi.n[2]);
        if (dot(n, d) > 0.0f) n = -n; /* two-sided: face the arriving ray */
        mmd_gpu_material m = mats[pi.material];
        float2 eta = (float2)(m.eta_re, m.eta_im);
        float eps = fmax(offset_eps(P, p), pi.lift); /* clear a scanned surface's own bumps */
        float cos_i = -dot(d, n);
        uint dim = 3u * (depth + 1u);
        float u0 = rnd(seed, COV_STREAM, i, dim);
        float u1 = rnd(seed, COV_STREAM, i, dim + 1u);
        float u2 = rnd(seed, COV_STREAM, i, dim + 2u);
        float2 R[2], T[2];
        fresnel_rt(eta, m.thickness_m, P->k0, cos_i, R, T);
        int can_trans = use_trans && m.thickness_m > 0.0f;
        float p_t = can_trans ? P->p_transmit : 0.0f;
        if (u0 < p_t) {
            /* transmission: straight through the thin slab (SPEC 3) */
            if (jones) {
                E = trans_map_t(d, n, T[0], T[1], E);
                float s = 1.0f / sqrt(p_t);
                E.re *= s;
                E.im *= s;
            } else {
                thr *= 0.5f * (c_abs2(T[0]) + c_abs2(T[1])) / p_t;
            }
            o = p - n * eps;
            continue;
        }
        float p_refl = 1.0f - p_t;
        u0 = (u0 - p_t) / p_refl;
        float p_d = use_diffuse ? P->p_diffuse : 0.0f;
        float S2 = m.scattering * m.scattering;
        int diffuse_event = u0 < p_d;
        float3 omega;
        if (diffuse_event)
            omega = diffuse_sample(n, u1, u2);
        else if (specular)
            omega = reflect3(d, n);
        else
            omega = lobe_sample(m.alpha, reflect3(d, n), u1, u2);
        if (dot(omega, n) <= 0.0f) break; /* below the surface: zero weight */
        float weight;
        if (diffuse_event) {
            weight = S2 / (p_refl * p_d); /* f/pdf = 1 for cosine sampling */
        } else if (specular) {
            weight = (1.0f - S2) / (p_refl * (1.0f - p_d));
        } else {
            /* f/pdf of the lobe: the normaliser at the physical incidence angle */
            float F = lobe_norm(m.lobe_A, lobe_coef + m.coef_off, (int)m.ncoef, cos_i);
            weight = (1.0f - S2) * (4.0f * MMD_PI / ((float)(m.alpha + 1) * F)) / (p_refl * (1.0f - p_d));
        }
        if (!(weight > 0.0f)) break;
        if (jones) {
            E = diffuse_event ? diffuse_map(d, n, omega, R[0], R[1], m.xpd, E) : lobe_map(d, n, omega, R[0], R[1], E);
            float s = sqrt(weight);
            E.re *= s;
            E.im *= s;
        } else {
            thr *= weight * 0.5f * (c_abs2(R[0]) + c_abs2(R[1]));
        }
        o = p + n * eps;
        d = omega;
    }
}
