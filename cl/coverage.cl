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
 * One work-item per TX ray (two on CPU devices). Each ray writes max_depth + 1 deposit slots (one per segment: the
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

/* Per-ray state (the same stepping scheme as aoa.cl: two rays per work-item on CPU
 * devices, each advanced one traversal step at a time). */
#define COV_CLOSEST 0
#define COV_LAST 1 /* the last segment's any-hit query up to its plane crossing */
#define COV_DONE 2

typedef struct cov_ray {
    mmd_trav q;
    int phase;
    uint i, depth, cell; /* cell: the last segment's crossing */
    float3 o, d;
    cvec3 E;             /* Jones mode: the field carried from the TX */
    float thr, pref;     /* scalar-mode throughput; (lambda/4pi)^2 dOmega G_TX / A_cell */
    __global uint *oc;   /* this ray's deposit slots */
    __global float *ov;
} cov_ray;

typedef struct cov_scene {
    __global const mmd_bvh8_node *nodes;
    __global const mmd_tri *tris;
    __global const mmd_prim_info *prims;
    __global const mmd_gpu_material *mats;
    __global const float *lobe_coef;
    __constant const mmd_sim_params *P;
    float z_plane, x0, y0, inv_cell;
    int nx, ny;
} cov_scene;

#ifdef MMD_SIM_FLAGS_CT
#define COV_FLAGS(P) (MMD_SIM_FLAGS_CT)
#else
#define COV_FLAGS(P) ((P)->flags)
#endif

#ifndef MMD_COV_PER_ITEM
#define MMD_COV_PER_ITEM 1
#endif

inline void cov_deposit(cov_ray *s, const cov_scene *sc, uint cell)
{
    const int jones = (COV_FLAGS(sc->P) & MMD_SIM_JONES) != 0;
    s->oc[s->depth] = cell;
    s->ov[s->depth] = s->pref * cov_rx_power(jones, s->E, s->thr, s->d) / fabs(s->d.z);
}

/* The next segment from (o, d): a closest-hit query, or for the last one only its plane
 * crossing with an any-hit query up to it. */
inline void cov_segment(cov_ray *s, const cov_scene *sc)
{
    if (s->depth == sc->P->max_depth) {
        float t_cross = 0.0f;
        uint c = cov_cell(s->o, s->d, INFINITY, sc->z_plane, sc->x0, sc->y0, sc->inv_cell, sc->nx, sc->ny, &t_cross);
        if (c == COV_NONE) {
            s->phase = COV_DONE;
            return;
        }
        s->cell = c;
        trace_ray_setup(&s->q.tr, s->o.x, s->o.y, s->o.z, s->d.x, s->d.y, s->d.z, 0.0f);
        trav_start(&s->q, t_cross);
        s->phase = COV_LAST;
        return;
    }
    trace_ray_setup(&s->q.tr, s->o.x, s->o.y, s->o.z, s->d.x, s->d.y, s->d.z, 0.0f);
    trav_start(&s->q, INFINITY);
    s->phase = COV_CLOSEST;
}

inline void cov_ray_start(cov_ray *s, const cov_scene *sc, uint i, uint n_rays_total, __global uint *oc,
                          __global float *ov)
{
    __constant const mmd_sim_params *P = sc->P;
    s->i = i;
    s->oc = oc;
    s->ov = ov;
    s->depth = 0;
    s->phase = COV_DONE;
    float txrot[9], rot[9];
    for (int k = 0; k < 9; k++) txrot[k] = P->tx_rot[k];
    random_rotation(P->seed_lo, COV_STREAM, rot);
    float3 d = normalize(mat3_mul(rot, fibonacci_dir(i, n_rays_total)));
    float3 txl = mat3_mul_t(txrot, d);
    float g_tx = antenna_gain(P->tx_kind, P->tx_q, P->tx_g0, txl);
    if (!(g_tx > 0.0f)) return;
    s->d = d;
    s->o = (float3)(P->tx_pos[0], P->tx_pos[1], P->tx_pos[2]);
    s->E.re = mat3_mul(txrot, pol_theta_hat(txl));
    s->E.im = (float3)(0.0f);
    s->thr = 1.0f;
    float lam4pi = P->wavelength / (4.0f * MMD_PI);
    s->pref = lam4pi * lam4pi * (4.0f * MMD_PI / (float)n_rays_total) * g_tx * (sc->inv_cell * sc->inv_cell);
    cov_segment(s, sc);
}

/* The segment's closest hit is known: deposit its plane crossing, then interact (event
 * with fixed probabilities, SPEC 4 key rule) and go on, or end the ray. */
inline void cov_after_closest(cov_ray *s, const cov_scene *sc)
{
    __constant const mmd_sim_params *P = sc->P;
    const uint flags = COV_FLAGS(P);
    const int jones = (flags & MMD_SIM_JONES) != 0;
    const int use_trans = (flags & MMD_SIM_TRANSMIT) != 0;
    int hit = s->q.best_prim != 0xffffffffu;
    float t = s->q.best_t, t_cross = 0.0f;
    float3 o = s->o, d = s->d;
    uint c = cov_cell(o, d, hit ? t : INFINITY, sc->z_plane, sc->x0, sc->y0, sc->inv_cell, sc->nx, sc->ny, &t_cross);
    if (c != COV_NONE) cov_deposit(s, sc, c);
    s->phase = COV_DONE;
    if (!hit) return;

    float3 p = o + d * t;
    mmd_prim_info pi = sc->prims[s->q.best_prim];
    float3 n = (float3)(pi.n[0], pi.n[1], pi.n[2]);
    if (dot(n, d) > 0.0f) n = -n; /* two-sided: face the arriving ray */
    mmd_gpu_material m = sc->mats[pi.material];
    float2 eta = (float2)(m.eta_re, m.eta_im);
    float eps = fmax(offset_eps(P, p), pi.lift); /* clear a scanned surface's own bumps */
    float cos_i = -dot(d, n);
    uint seed = P->seed_lo ^ hash_u32(P->seed_hi);
    uint dim = 3u * (s->depth + 1u);
    float u0 = rnd(seed, COV_STREAM, s->i, dim);
    float u1 = rnd(seed, COV_STREAM, s->i, dim + 1u);
    float u2 = rnd(seed, COV_STREAM, s->i, dim + 2u);
    float2 R[2], T[2];
    fresnel_rt(eta, m.thickness_m, P->k0, cos_i, R, T);
    int can_trans = use_trans && m.thickness_m > 0.0f;
    float p_t = can_trans ? P->p_transmit : 0.0f;
    if (u0 < p_t) {
        /* transmission: straight through the thin slab (SPEC 3) */
        if (jones) {
            s->E = trans_map_t(d, n, T[0], T[1], s->E);
            float sc_t = 1.0f / sqrt(p_t);
            s->E.re *= sc_t;
            s->E.im *= sc_t;
        } else {
            s->thr *= 0.5f * (c_abs2(T[0]) + c_abs2(T[1])) / p_t;
        }
        s->o = p - n * eps;
        s->depth++;
        cov_segment(s, sc);
        return;
    }
    float p_refl = 1.0f - p_t;
    u0 = (u0 - p_t) / p_refl;
    float3 omega;
    float weight;
    int diffuse_event = sim_reflect_event(P, flags, &m, sc->lobe_coef, d, n, p_refl, u0, u1, u2, 0, &omega, &weight);
    if (diffuse_event < 0) return; /* below the surface, or zero weight */
    if (jones) {
        s->E = diffuse_event ? diffuse_map(d, n, omega, R[0], R[1], m.xpd, s->E) : lobe_map(d, n, omega, R[0], R[1], s->E);
        float sw = sqrt(weight);
        s->E.re *= sw;
        s->E.im *= sw;
    } else {
        s->thr *= weight * 0.5f * (c_abs2(R[0]) + c_abs2(R[1]));
    }
    s->o = p + n * eps;
    s->d = omega;
    s->depth++;
    cov_segment(s, sc);
}

inline void cov_step(cov_ray *s, const cov_scene *sc)
{
    if (s->phase == COV_CLOSEST) {
        if (!trav_closest_step(sc->nodes, sc->tris, &s->q)) cov_after_closest(s, sc);
    } else if (s->phase == COV_LAST) {
        if (!trav_any_step(sc->nodes, sc->tris, &s->q)) {
            if (s->q.best_prim != 0u) cov_deposit(s, sc, s->cell); /* the crossing is visible */
            s->phase = COV_DONE;
        }
    }
}

/* One work-item per MMD_COV_PER_ITEM consecutive rays of the batch. */
__kernel void mmd_coverage_trace(__global const mmd_bvh8_node *nodes, __global const mmd_tri *tris,
                                 __global const mmd_prim_info *prims, __global const mmd_gpu_material *mats,
                                 __global const float *lobe_coef, __constant const mmd_sim_params *P,
                                 uint first_ray, uint n_rays_batch, uint n_rays_total, float z_plane, float x0,
                                 float y0, float cell, int nx, int ny, __global uint *out_cell,
                                 __global float *out_val)
{
    cov_scene sc;
    sc.nodes = nodes;
    sc.tris = tris;
    sc.prims = prims;
    sc.mats = mats;
    sc.lobe_coef = lobe_coef;
    sc.P = P;
    sc.z_plane = z_plane;
    sc.x0 = x0;
    sc.y0 = y0;
    sc.inv_cell = 1.0f / cell;
    sc.nx = nx;
    sc.ny = ny;
    uint slots = P->max_depth + 1u;
    cov_ray s[MMD_COV_PER_ITEM];
    for (int k = 0; k < MMD_COV_PER_ITEM; k++) {
        uint gid = get_global_id(0) * MMD_COV_PER_ITEM + (uint)k;
        s[k].phase = COV_DONE;
        if (gid >= n_rays_batch) continue;
        __global uint *oc = out_cell + (size_t)gid * slots;
        __global float *ov = out_val + (size_t)gid * slots;
        for (uint j = 0; j < slots; j++) oc[j] = COV_NONE, ov[j] = 0.0f;
        cov_ray_start(&s[k], &sc, first_ray + gid, n_rays_total, oc, ov);
    }
#if MMD_COV_PER_ITEM == 2
    while (s[0].phase != COV_DONE || s[1].phase != COV_DONE) {
        cov_step(&s[0], &sc);
        cov_step(&s[1], &sc);
    }
#else
    for (int k = 0; k < MMD_COV_PER_ITEM; k++)
        while (s[k].phase != COV_DONE) cov_step(&s[k], &sc);
#endif
}
