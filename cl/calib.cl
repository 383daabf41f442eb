/*
 * calib.cl - the AoA estimator of SPEC 4 split for calibration (SPEC 5,
 * docs/calibration.md):
 *
 *   mmd_calib_record    trace once per pose, keep the geometry of every path vertex
 *                       (mmd_cal_vertex): exactly the decisions mmd_aoa_trace makes, which
 *                       depend only on geometry and fixed parameters (SPEC 4 key rule)
 *   mmd_calib_forward   replay the records with materials theta = (eps_r, sigma, S, K_x)
 *                       per vertex: the per-ray power c_i of aoa.cl
 *   mmd_calib_dldc      dL/dc_i = G_RX(u_i) sum_b dL/dS(b) B_b(u_i) from per-pose lag
 *                       coefficients (the transposed beam sum, docs/calibration.md)
 *   mmd_calib_backward  the reverse sweep: dL/dtheta at every vertex of every path
 *
 * Forward model of one ray (vertex k = 1..K, w_0 = e_RX, thr_0 = 1):
 *   c = sum_k g_k [ (1 - S_k^2) f_lobe,k A_k + S_k^2 f_diff,k D_k ]
 *   scalar: A_k = D_k = thr_{k-1} Gamma_k^2(cos_v);  thr_k = thr_{k-1} w_k m_k
 *   Jones:  A_k = |w_{k-1} . L_lobe,k e_TX|^2, D_k = |w_{k-1} . L_diff,k e_TX|^2;
 *           w_k = sqrt(w_k m_k) M_k w_{k-1}, M_k = L^T of the continuation event
 * with m_k the material factor of the event ((1 - S^2) Gamma^2 for the lobe, S^2 Gamma^2
 * diffuse, |T|^2 transmission; Jones mode puts Gamma/T in M_k and keeps only the S
 * factor in m_k). The reverse sweep carries the adjoint of thr (scalar) or of w (Jones,
 * as d c = Re(delta^H dw)) from the last vertex back to the first.
 */
#pragma OPENCL FP_CONTRACT OFF
#include "mmd_shared.h"
#include "traverse.h"
#include "physics.h"
#include "sample.h"
#include "jones.h"
#include "sim_common.h"

#define CAL_EMPTY 0xffffffffu
#ifndef MMD_CAL_MAX_DEPTH
#define MMD_CAL_MAX_DEPTH 8
#endif

#ifdef MMD_SIM_FLAGS_CT
#define CAL_FLAGS (MMD_SIM_FLAGS_CT)
#else
#define CAL_FLAGS (P->flags)
#endif

__kernel void mmd_calib_record(__global const mmd_bvh8_node *nodes, __global const mmd_tri *tris,
                               __global const mmd_prim_info *prims, __global const mmd_gpu_material *mats,
                               __global const float *lobe_coef, __global const mmd_gpu_pose *poses,
                               __constant const mmd_sim_params *P, uint b, __global mmd_cal_vertex *rec)
{
    uint i = get_global_id(0);
    if (i >= P->n_rays) return;
    const uint K = P->max_depth;
    __global mmd_cal_vertex *rv = rec + (size_t)i * K;
    for (uint k = 0; k < K; k++) {
        rv[k].obj = CAL_EMPTY;
        rv[k].event = MMD_CAL_END;
        rv[k].g_nee = 0.0f;
    }
    const uint flags = CAL_FLAGS;
    const int specular = (flags & MMD_SIM_SPECULAR) != 0;
    const int use_diffuse = (flags & MMD_SIM_DIFFUSE) != 0;
    const int use_trans = (flags & MMD_SIM_TRANSMIT) != 0;
    __global const mmd_gpu_pose *pose = poses + b;
    float prot[9], txrot[9];
    for (int k = 0; k < 9; k++) prot[k] = pose->rot[k], txrot[k] = P->tx_rot[k];
    float3 ul = aoa_ray_local(P, pose->index, i);
    float3 d = normalize(mat3_mul(prot, ul));
    float3 o = (float3)(pose->pos[0], pose->pos[1], pose->pos[2]);
    float3 tx = (float3)(P->tx_pos[0], P->tx_pos[1], P->tx_pos[2]);
    float lam4pi = P->wavelength / (4.0f * MMD_PI);
    float pref = lam4pi * lam4pi * (4.0f * MMD_PI / (float)P->n_rays);
    uint seed = P->seed_lo ^ hash_u32(P->seed_hi);
    for (uint depth = 1; depth <= K; depth++) {
        mmd_trace_ray tr;
        trace_ray_setup(&tr, o.x, o.y, o.z, d.x, d.y, d.z, 0.0f);
        float t, bu, bv;
        uint prim;
        if (!trav_closest(nodes, tris, &tr, INFINITY, &t, &prim, &bu, &bv)) break;
        float3 p = o + d * t;
        mmd_prim_info pi = prims[prim];
        float3 n = (float3)(pi.n[0], pi.n[1], pi.n[2]);
        if (dot(n, d) > 0.0f) n = -n;
        mmd_gpu_material m = mats[pi.material];
        float eps = fmax(offset_eps(P, p), pi.lift);
        float3 p_up = p + n * eps;
        __global mmd_cal_vertex *vx = rv + (depth - 1);
        float g_nee = 0.0f, f_lobe = 0.0f, f_diff = 0.0f;
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
                float3 k_s = -d;
                if (!specular) {
                    float3 k_r = reflect3(-v, n);
                    float F = lobe_norm(m.lobe_A, lobe_coef + m.coef_off, (int)m.ncoef, cos_v);
                    f_lobe = lobe_num(m.alpha, dot(k_r, k_s)) / F;
                }
                f_diff = use_diffuse ? fmax(0.0f, dot(k_s, n)) / MMD_PI : 0.0f;
                float3 txl = mat3_mul_t(txrot, -v);
                g_nee = pref * antenna_gain(P->tx_kind, P->tx_q, P->tx_g0, txl) / (r * r);
            }
        }
        vstore3(p, 0, vx->p);
        vstore3(n, 0, vx->n);
        vstore3(d, 0, vx->d);
        vstore3(v, 0, vx->v);
        vx->obj = pi.material;
        vx->tri = prim;
        vx->g_nee = g_nee;
        vx->f_lobe = f_lobe;
        vx->f_diff = f_diff;
        vx->event = MMD_CAL_END;
        vx->w_cont = 0.0f;
        if (depth == K) break;
        float u0 = rnd(seed, pose->index, i, 3u * depth);
        float u1 = rnd(seed, pose->index, i, 3u * depth + 1u);
        float u2 = rnd(seed, pose->index, i, 3u * depth + 2u);
        int can_trans = use_trans && m.thickness_m > 0.0f;
        float p_t = can_trans ? P->p_transmit : 0.0f;
        if (u0 < p_t) {
            vx->event = MMD_CAL_TRANSMIT;
            vx->w_cont = 1.0f / p_t;
            vstore3(d, 0, vx->o);
            o = p - n * eps;
            continue;
        }
        float p_refl = 1.0f - p_t;
        u0 = (u0 - p_t) / p_refl;
        float p_d = use_diffuse ? P->p_diffuse : 0.0f;
        int diffuse_event = u0 < p_d;
        float3 omega;
        if (diffuse_event)
            omega = diffuse_sample(n, u1, u2);
        else if (specular)
            omega = reflect3(d, n);
        else
            omega = lobe_sample(m.alpha, reflect3(d, n), u1, u2);
        float cos_o = dot(omega, n);
        if (cos_o <= 0.0f) break; /* below the surface: zero weight, the path ends */
        float w;
        if (diffuse_event) {
            w = 1.0f / (p_refl * p_d);
        } else if (specular) {
            w = 1.0f / (p_refl * (1.0f - p_d));
        } else {
            float F = lobe_norm(m.lobe_A, lobe_coef + m.coef_off, (int)m.ncoef, cos_o);
            w = (4.0f * MMD_PI / ((float)(m.alpha + 1) * F)) / (p_refl * (1.0f - p_d));
        }
        vx->event = diffuse_event ? MMD_CAL_DIFFUSE : MMD_CAL_LOBE;
        vx->w_cont = w;
        vstore3(omega, 0, vx->o);
        o = p_up;
        d = omega;
    }
}

/* ---- replay ------------------------------------------------------------------------ */

typedef struct cal_ctx {
    float k0, sig2im; /* eta = eps_r - j sigma sig2im, sig2im = 1 / (eps0 omega) */
} cal_ctx;

inline float4 cal_theta(__global const float4 *theta, uint per_vertex, size_t vid, uint obj)
{
    return per_vertex ? theta[vid] : theta[obj];
}

/* Hit points of one pose's records normalised to the scene box ([-1, 1]^3), the neural
 * field's input (SPEC 5); empty vertices give the origin (their gradient is zero). */
__kernel void mmd_calib_positions(__global const mmd_cal_vertex *rec, uint n, float lo_x, float lo_y, float lo_z,
                                  float sx, float sy, float sz, __global float *pos)
{
    uint v = get_global_id(0);
    if (v >= n) return;
    float3 p = (float3)(0.0f);
    if (rec[v].obj != CAL_EMPTY) {
        p = vload3(0, rec[v].p);
        p = (float3)((p.x - lo_x) * sx - 1.0f, (p.y - lo_y) * sy - 1.0f, (p.z - lo_z) * sz - 1.0f);
    }
    vstore3(p, v, pos);
}

/* train.field_at: triangle. The scene triangle of every record vertex (CAL_EMPTY for an
 * empty slot), for the host to list the triangles a pose touches... */
__kernel void mmd_calib_tri_ids(__global const mmd_cal_vertex *rec, uint n, __global uint *tri)
{
    uint v = get_global_id(0);
    if (v >= n) return;
    tri[v] = rec[v].obj != CAL_EMPTY ? rec[v].tri : CAL_EMPTY;
}

/* ...and each vertex's field value from its triangle's (evaluated once, at the centroid). */
__kernel void mmd_calib_scatter(__global const uint *map, uint n, __global const float4 *tri_theta,
                                __global float4 *vtheta)
{
    uint v = get_global_id(0);
    if (v >= n) return;
    uint u = map[v];
    vtheta[v] = u != CAL_EMPTY ? tri_theta[u] : (float4)(0.0f);
}

inline float2 cal_eta(float4 th, float sig2im) { return (float2)(th.x, -th.y * sig2im); }

/* e_TX (world) of the connection direction v (unit, from the vertex to the TX) */
inline float3 cal_e_tx(__constant const mmd_sim_params *P, float3 v)
{
    float txrot[9];
    for (int k = 0; k < 9; k++) txrot[k] = P->tx_rot[k];
    return mat3_mul(txrot, pol_theta_hat(mat3_mul_t(txrot, -v)));
}

inline cvec3 cv_conj(cvec3 a)
{
    a.im = -a.im;
    return a;
}
/* bilinear a . b (no conjugation) */
inline float2 cc_dot(cvec3 a, cvec3 b)
{
    return (float2)(dot(a.re, b.re) - dot(a.im, b.im), dot(a.re, b.im) + dot(a.im, b.re));
}
inline cvec3 cv_mulc(cvec3 a, float2 z)
{
    cvec3 r;
    r.re = a.re * z.x - a.im * z.y;
    r.im = a.re * z.y + a.im * z.x;
    return r;
}
inline cvec3 cv_muls(cvec3 a, float s)
{
    a.re *= s;
    a.im *= s;
    return a;
}
/* Re(a^H b) and Im(a^H b) */
inline float cv_re_h(cvec3 a, cvec3 b) { return dot(a.re, b.re) + dot(a.im, b.im); }
inline float cv_im_h(cvec3 a, cvec3 b) { return dot(a.re, b.im) - dot(a.im, b.re); }

/* d/dK_x of diffuse_map (jones.h) with a = sqrt(1 - K), b = sqrt(K) */
inline cvec3 diffuse_map_dk(float3 k_i, float3 n, float3 k_s, float2 R_te, float2 R_tm, float kx, cvec3 E)
{
    float3 e_te = te_vector(k_i, n), e_tm = cross(e_te, k_i);
    float3 s_te = te_vector(k_s, n), s_tm = cross(s_te, k_s);
    float da = -0.5f / sqrt(1.0f - kx), db = 0.5f / sqrt(kx);
    float2 a0 = c_mul(R_te, cv_dot(E, e_te)), a1 = c_mul(R_tm, cv_dot(E, e_tm));
    return cv_add(cv_scale(s_te, a0 * da - a1 * db), cv_scale(s_tm, a0 * db + a1 * da));
}
/* ... and of its transpose diffuse_map_t */
inline cvec3 diffuse_map_t_dk(float3 k_i, float3 n, float3 k_s, float2 R_te, float2 R_tm, float kx, cvec3 w)
{
    float3 e_te = te_vector(k_i, n), e_tm = cross(e_te, k_i);
    float3 s_te = te_vector(k_s, n), s_tm = cross(s_te, k_s);
    float da = -0.5f / sqrt(1.0f - kx), db = 0.5f / sqrt(kx);
    float2 p_te = cv_dot(w, s_te), p_tm = cv_dot(w, s_tm);
    float2 q0 = p_te * da + p_tm * db, q1 = p_tm * da - p_te * db;
    return cv_add(cv_scale(e_te, c_mul(R_te, q0)), cv_scale(e_tm, c_mul(R_tm, q1)));
}

/* The continuation map M (= L^T) of a vertex applied to w, with coefficients C (R for
 * reflection events, T for transmission). */
inline cvec3 cal_cont_t(uint event, float3 d, float3 n, float3 o, float2 C0, float2 C1, float kx, cvec3 w)
{
    if (event == MMD_CAL_TRANSMIT) return trans_map_t(d, n, C0, C1, w);
    float3 k_i = -o, k_s = -d;
    return event == MMD_CAL_DIFFUSE ? diffuse_map_t(k_i, n, k_s, C0, C1, kx, w) : lobe_map_t(k_i, n, k_s, C0, C1, w);
}
/* ... and L = M^T applied forward (for M^H delta = conj(L conj(delta))) */
inline cvec3 cal_cont_fwd(uint event, float3 d, float3 n, float3 o, float2 C0, float2 C1, float kx, cvec3 e)
{
    if (event == MMD_CAL_TRANSMIT) return trans_map_t(d, n, C0, C1, e); /* symmetric */
    float3 k_i = -o, k_s = -d;
    return event == MMD_CAL_DIFFUSE ? diffuse_map(k_i, n, k_s, C0, C1, kx, e) : lobe_map(k_i, n, k_s, C0, C1, e);
}

inline cvec3 cal_w0(__constant const mmd_sim_params *P, __global const mmd_gpu_pose *pose, uint i)
{
    float prot[9];
    for (int k = 0; k < 9; k++) prot[k] = pose->rot[k];
    float3 ul = aoa_ray_local(P, pose->index, i);
    cvec3 w;
    w.re = mat3_mul(prot, pol_theta_hat(ul));
    w.im = (float3)(0.0f);
    return w;
}

/* S factor of the continuation: (1 - S^2) lobe, S^2 diffuse, 1 transmission */
inline float cal_sfac(uint event, float S)
{
    return event == MMD_CAL_DIFFUSE ? S * S : event == MMD_CAL_TRANSMIT ? 1.0f : 1.0f - S * S;
}
inline float cal_dsfac(uint event, float S)
{
    return event == MMD_CAL_DIFFUSE ? 2.0f * S : event == MMD_CAL_TRANSMIT ? 0.0f : -2.0f * S;
}

__kernel void mmd_calib_forward(__global const mmd_cal_vertex *rec, __global const float4 *theta, uint per_vertex,
                                __global const mmd_gpu_material *mats, __global const mmd_gpu_pose *poses,
                                __constant const mmd_sim_params *P, uint b, float sig2im, __global float *out)
{
    uint i = get_global_id(0);
    if (i >= P->n_rays) return;
    const uint K = P->max_depth;
    const int jones = (CAL_FLAGS & MMD_SIM_JONES) != 0;
    size_t gid = (size_t)i; /* records and per-vertex theta of this pose */
    __global const mmd_cal_vertex *rv = rec + gid * K;
    cvec3 w = cal_w0(P, poses + b, i);
    float thr = 1.0f, total = 0.0f;
    for (uint k = 0; k < K; k++) {
        mmd_cal_vertex vx = rv[k];
        if (vx.obj == CAL_EMPTY) break;
        float4 th = cal_theta(theta, per_vertex, gid * K + k, vx.obj);
        float2 eta = cal_eta(th, sig2im);
        float thick = mats[vx.obj].thickness_m;
        float3 n = vload3(0, vx.n), d = vload3(0, vx.d);
        float S = th.z, kx = th.w, S2 = S * S;
        float2 R[2], T[2];
        if (vx.g_nee > 0.0f) {
            float3 v = vload3(0, vx.v);
            fresnel_rt(eta, thick, P->k0, dot(v, n), R, T);
            float rho;
            if (jones) {
                float3 e_tx = cal_e_tx(P, v);
                cvec3 E;
                E.re = e_tx;
                E.im = (float3)(0.0f);
                float a_l = 0.0f, a_d = 0.0f;
                if (vx.f_lobe > 0.0f) a_l = c_abs2(cc_dot(w, lobe_map(-v, n, -d, R[0], R[1], E)));
                if (vx.f_diff > 0.0f) a_d = c_abs2(cc_dot(w, diffuse_map(-v, n, -d, R[0], R[1], kx, E)));
                rho = (1.0f - S2) * vx.f_lobe * a_l + S2 * vx.f_diff * a_d;
            } else {
                float g2 = 0.5f * (c_abs2(R[0]) + c_abs2(R[1]));
                rho = thr * g2 * ((1.0f - S2) * vx.f_lobe + S2 * vx.f_diff);
            }
            total += vx.g_nee * rho;
        }
        if (vx.event == MMD_CAL_END) break;
        float3 o = vload3(0, vx.o);
        float cos_c = vx.event == MMD_CAL_TRANSMIT ? -dot(d, n) : dot(o, n);
        fresnel_rt(eta, thick, P->k0, cos_c, R, T);
        float2 C0 = vx.event == MMD_CAL_TRANSMIT ? T[0] : R[0], C1 = vx.event == MMD_CAL_TRANSMIT ? T[1] : R[1];
        float sf = vx.w_cont * cal_sfac(vx.event, S);
        if (jones) {
            w = cv_muls(cal_cont_t(vx.event, d, n, o, C0, C1, kx, w), sqrt(sf));
        } else {
            thr *= sf * 0.5f * (c_abs2(C0) + c_abs2(C1));
        }
    }
    out[(size_t)b * P->n_rays + i] = total;
}

/* dL/dc_i = G_RX(u_i) Re sum_{p,q} H(p, q) e^{j kappa (p u_y + q u_z)}, p in [-(cols-1),
 * cols-1], q in [-(rows-1), rows-1]; H per pose from the host (docs/calibration.md). */
__kernel void mmd_calib_dldc(__global const mmd_gpu_pose *poses, __constant const mmd_sim_params *P, uint n_poses,
                             __global const float2 *H, int cols, int rows, float kappa, int rx_kind, float rx_q,
                             float rx_g0, __global float *dldc)
{
    uint gid = get_global_id(0);
    uint b = gid / P->n_rays, i = gid - b * P->n_rays;
    if (b >= n_poses) return;
    float3 ul = aoa_ray_local(P, poses[b].index, i);
    int np = 2 * cols - 1, nq = 2 * rows - 1;
    __global const float2 *Hb = H + (size_t)b * np * nq;
    float cy, sy = sincos(kappa * ul.y, &cy), cz, sz = sincos(kappa * ul.z, &cz);
    float2 ey = (float2)(cy, sy), ez = (float2)(cz, sz);
    /* e^{j kappa p u_y} from p = -(cols-1) upward: start at the conjugate power */
    float2 py0 = (float2)(1.0f, 0.0f), qz0 = (float2)(1.0f, 0.0f);
    for (int k = 0; k < cols - 1; k++) py0 = c_mul(py0, (float2)(ey.x, -ey.y));
    for (int k = 0; k < rows - 1; k++) qz0 = c_mul(qz0, (float2)(ez.x, -ez.y));
    float acc = 0.0f;
    float2 py = py0;
    for (int p = 0; p < np; p++) {
        float2 pq = c_mul(py, qz0);
        for (int q = 0; q < nq; q++) {
            float2 h = Hb[p * nq + q];
            acc += h.x * pq.x - h.y * pq.y; /* Re(h e^{j...}) */
            pq = c_mul(pq, ez);
        }
        py = c_mul(py, ey);
    }
    dldc[gid] = antenna_gain(rx_kind, rx_q, rx_g0, ul) * acc;
}

/* dL/dtheta at every vertex: out[(gid * K + k)] = dL/dc_i * dc_i/d(eps_r, sigma, S, K_x). */
__kernel void mmd_calib_backward(__global const mmd_cal_vertex *rec, __global const float4 *theta, uint per_vertex,
                                 __global const mmd_gpu_material *mats, __global const mmd_gpu_pose *poses,
                                 __constant const mmd_sim_params *P, uint b, float sig2im,
                                 __global const float *dldc, __global float4 *dtheta, __global uint *vobj)
{
    uint i = get_global_id(0);
    if (i >= P->n_rays) return;
    const uint K = P->max_depth;
    const int jones = (CAL_FLAGS & MMD_SIM_JONES) != 0;
    size_t gid = (size_t)i;
    __global const mmd_cal_vertex *rv = rec + gid * K;
    __global float4 *dt = dtheta + gid * K;
    float g_up = dldc[(size_t)b * P->n_rays + i];
    cvec3 W[MMD_CAL_MAX_DEPTH];
    float THR[MMD_CAL_MAX_DEPTH];
    uint nk = 0;
    /* forward: the state before each vertex */
    cvec3 w = cal_w0(P, poses + b, i);
    float thr = 1.0f;
    for (uint k = 0; k < K; k++) {
        dt[k] = (float4)(0.0f);
        vobj[gid * K + k] = rv[k].obj;
    }
    for (uint k = 0; k < K; k++) {
        mmd_cal_vertex vx = rv[k];
        if (vx.obj == CAL_EMPTY) break;
        W[k] = w;
        THR[k] = thr;
        nk = k + 1;
        if (vx.event == MMD_CAL_END) break;
        float4 th = cal_theta(theta, per_vertex, gid * K + k, vx.obj);
        float2 eta = cal_eta(th, sig2im);
        float thick = mats[vx.obj].thickness_m;
        float3 n = vload3(0, vx.n), d = vload3(0, vx.d), o = vload3(0, vx.o);
        float cos_c = vx.event == MMD_CAL_TRANSMIT ? -dot(d, n) : dot(o, n);
        float2 R[2], T[2];
        fresnel_rt(eta, thick, P->k0, cos_c, R, T);
        float2 C0 = vx.event == MMD_CAL_TRANSMIT ? T[0] : R[0], C1 = vx.event == MMD_CAL_TRANSMIT ? T[1] : R[1];
        float sf = vx.w_cont * cal_sfac(vx.event, th.z);
        if (jones)
            w = cv_muls(cal_cont_t(vx.event, d, n, o, C0, C1, th.w, w), sqrt(sf));
        else
            thr *= sf * 0.5f * (c_abs2(C0) + c_abs2(C1));
    }
    /* reverse sweep */
    cvec3 delta;
    delta.re = delta.im = (float3)(0.0f);
    float q_thr = 0.0f; /* scalar: dc / d thr_k */
    for (int k = (int)nk - 1; k >= 0; k--) {
        mmd_cal_vertex vx = rv[k];
        float4 th = cal_theta(theta, per_vertex, gid * K + (uint)k, vx.obj);
        float2 eta = cal_eta(th, sig2im);
        float thick = mats[vx.obj].thickness_m;
        float3 n = vload3(0, vx.n), d = vload3(0, vx.d);
        float S = th.z, kx = th.w, S2 = S * S;
        float4 g = (float4)(0.0f);
        float2 R[2], T[2], dR[2], dT[2];
        cvec3 delta_prev;
        delta_prev.re = delta_prev.im = (float3)(0.0f);
        float q_prev = 0.0f;
        /* continuation k -> k+1 */
        if (vx.event != MMD_CAL_END) {
            float3 o = vload3(0, vx.o);
            float cos_c = vx.event == MMD_CAL_TRANSMIT ? -dot(d, n) : dot(o, n);
            fresnel_rt_d(eta, thick, P->k0, cos_c, R, T, dR, dT);
            int tr = vx.event == MMD_CAL_TRANSMIT;
            float2 C0 = tr ? T[0] : R[0], C1 = tr ? T[1] : R[1], dC0 = tr ? dT[0] : dR[0], dC1 = tr ? dT[1] : dR[1];
            float sfac = cal_sfac(vx.event, S), dsfac = cal_dsfac(vx.event, S);
            if (jones) {
                float s = sqrt(vx.w_cont * sfac);
                cvec3 z = cal_cont_t(vx.event, d, n, o, C0, C1, kx, W[k]);
                cvec3 y = cal_cont_t(vx.event, d, n, o, dC0, dC1, kx, W[k]); /* dM/deta W */
                float re = cv_re_h(delta, y), im = cv_im_h(delta, y);
                g.x += s * re;
                g.y += s * sig2im * im;
                /* ds/dS = w_cont dsfac / (2 s) */
                if (s > 0.0f) g.z += cv_re_h(delta, z) * vx.w_cont * dsfac / (2.0f * s);
                if (vx.event == MMD_CAL_DIFFUSE)
                    g.w += s * cv_re_h(delta, diffuse_map_t_dk(-o, n, -d, C0, C1, kx, W[k]));
                delta_prev = cv_muls(cv_conj(cal_cont_fwd(vx.event, d, n, o, C0, C1, kx, cv_conj(delta))), s);
            } else {
                float g2 = 0.5f * (c_abs2(C0) + c_abs2(C1));
                float dre = c_mul((float2)(C0.x, -C0.y), dC0).x + c_mul((float2)(C1.x, -C1.y), dC1).x;
                float dim = c_mul((float2)(C0.x, -C0.y), dC0).y + c_mul((float2)(C1.x, -C1.y), dC1).y;
                /* thr_{k+1} = thr_k B, B = w_cont sfac g2; dc/dB = thr_k q_thr */
                float up = THR[k] * q_thr;
                g.x += up * vx.w_cont * sfac * dre;
                g.y += up * vx.w_cont * sfac * sig2im * dim;
                g.z += up * vx.w_cont * dsfac * g2;
                q_prev = vx.w_cont * sfac * g2 * q_thr;
            }
        }
        /* next-event connection at k */
        if (vx.g_nee > 0.0f) {
            float3 v = vload3(0, vx.v);
            fresnel_rt_d(eta, thick, P->k0, dot(v, n), R, T, dR, dT);
            if (jones) {
                cvec3 E;
                E.re = cal_e_tx(P, v);
                E.im = (float3)(0.0f);
                float wl = vx.g_nee * (1.0f - S2) * vx.f_lobe, wd = vx.g_nee * S2 * vx.f_diff;
                if (vx.f_lobe > 0.0f) {
                    cvec3 u = lobe_map(-v, n, -d, R[0], R[1], E), du = lobe_map(-v, n, -d, dR[0], dR[1], E);
                    float2 a = cc_dot(W[k], u), da = cc_dot(W[k], du);
                    float2 cad = c_mul((float2)(a.x, -a.y), da); /* conj(a) da */
                    g.x += 2.0f * wl * cad.x;
                    g.y += 2.0f * wl * sig2im * cad.y;
                    g.z += -2.0f * S * vx.g_nee * vx.f_lobe * c_abs2(a);
                    delta_prev = cv_add(delta_prev, cv_muls(cv_mulc(cv_conj(u), a), 2.0f * wl));
                }
                if (vx.f_diff > 0.0f) {
                    cvec3 u = diffuse_map(-v, n, -d, R[0], R[1], kx, E);
                    cvec3 du = diffuse_map(-v, n, -d, dR[0], dR[1], kx, E);
                    cvec3 uk = diffuse_map_dk(-v, n, -d, R[0], R[1], kx, E);
                    float2 a = cc_dot(W[k], u), da = cc_dot(W[k], du), dak = cc_dot(W[k], uk);
                    float2 ca = (float2)(a.x, -a.y);
                    float2 cad = c_mul(ca, da);
                    g.x += 2.0f * wd * cad.x;
                    g.y += 2.0f * wd * sig2im * cad.y;
                    g.z += 2.0f * S * vx.g_nee * vx.f_diff * c_abs2(a);
                    g.w += 2.0f * wd * c_mul(ca, dak).x;
                    delta_prev = cv_add(delta_prev, cv_muls(cv_mulc(cv_conj(u), a), 2.0f * wd));
                }
            } else {
                float g2 = 0.5f * (c_abs2(R[0]) + c_abs2(R[1]));
                float dre = c_mul((float2)(R[0].x, -R[0].y), dR[0]).x + c_mul((float2)(R[1].x, -R[1].y), dR[1]).x;
                float dim = c_mul((float2)(R[0].x, -R[0].y), dR[0]).y + c_mul((float2)(R[1].x, -R[1].y), dR[1]).y;
                float fm = (1.0f - S2) * vx.f_lobe + S2 * vx.f_diff;
                float base = vx.g_nee * THR[k];
                g.x += base * fm * dre;
                g.y += base * fm * sig2im * dim;
                g.z += base * g2 * (-2.0f * S * vx.f_lobe + 2.0f * S * vx.f_diff);
                q_prev += vx.g_nee * g2 * fm; /* dc/dthr_{k-1} gets A_k / thr_{k-1} */
            }
        }
        dt[k] = g * g_up;
        delta = delta_prev;
        q_thr = q_prev;
    }
}
