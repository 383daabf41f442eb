/*
 * jones.h - Jones-vector algebra of one interaction (SPEC 3 "Fresnel" / "Directional
 * lobe": the field is a complex vector in the TE/TM basis of each interaction, with the
 * basis change between interactions, as in Sionna RT). Shared by the receiver-launched
 * AoA estimator (which applies the maps transposed, by reciprocity) and the
 * TX-launched coverage estimator (which applies them forward).
 *
 * Every map is written for k_i = the physical propagation direction onto the surface,
 * n = the normal facing the incident side (dot(k_i, n) < 0), k_s = the outgoing direction.
 */
#ifndef MMD_CL_JONES_H
#define MMD_CL_JONES_H
#include "physics.h"

/* complex 3-vector: re + j im */
typedef struct cvec3 {
    float3 re, im;
} cvec3;

inline float2 cv_dot(cvec3 w, float3 e) { return (float2)(dot(w.re, e), dot(w.im, e)); }
inline cvec3 cv_scale(float3 e, float2 a)
{
    cvec3 r;
    r.re = e * a.x;
    r.im = e * a.y;
    return r;
}
inline cvec3 cv_add(cvec3 a, cvec3 b)
{
    a.re += b.re;
    a.im += b.im;
    return a;
}

/* L_lobe^T w for incidence k_i (physical propagation direction into the surface), normal
 * n facing the incident side (dot(k_i, n) < 0), outgoing k_s: the transpose of
 * Rot(k_r -> k_s) [R_TE e_te e_te^T + R_TM e_tm_r e_tm_i^T]. */
inline cvec3 lobe_map_t(float3 k_i, float3 n, float3 k_s, float2 R_te, float2 R_tm, cvec3 w)
{
    float3 k_r = reflect3(k_i, n);
    cvec3 wr;
    wr.re = rotate_min(k_s, k_r, w.re);
    wr.im = rotate_min(k_s, k_r, w.im);
    float3 e_te = te_vector(k_i, n);
    float3 e_tm_i = cross(e_te, k_i), e_tm_r = cross(e_te, k_r);
    return cv_add(cv_scale(e_te, c_mul(R_te, cv_dot(wr, e_te))), cv_scale(e_tm_i, c_mul(R_tm, cv_dot(wr, e_tm_r))));
}

/* L_diff^T w: the reflected field diag(R) in the incident TE/TM basis, mixed by the
 * K_x matrix X = [[sqrt(1-K), -sqrt(K)], [sqrt(K), sqrt(1-K)]] into the TE/TM basis of
 * the scattered direction k_s. */
inline cvec3 diffuse_map_t(float3 k_i, float3 n, float3 k_s, float2 R_te, float2 R_tm, float kx, cvec3 w)
{
    float3 e_te = te_vector(k_i, n), e_tm = cross(e_te, k_i);
    float3 s_te = te_vector(k_s, n), s_tm = cross(s_te, k_s);
    float a = sqrt(1.0f - kx), b = sqrt(kx);
    float2 p_te = cv_dot(w, s_te), p_tm = cv_dot(w, s_tm);
    /* (X^T p)_0 = a p_te + b p_tm ; (X^T p)_1 = -b p_te + a p_tm */
    float2 q0 = p_te * a + p_tm * b, q1 = p_tm * a - p_te * b;
    return cv_add(cv_scale(e_te, c_mul(R_te, q0)), cv_scale(e_tm, c_mul(R_tm, q1)));
}

/* L_trans^T w: straight through, diag(T) in the TE/TM basis of k. */
inline cvec3 trans_map_t(float3 k, float3 n, float2 T_te, float2 T_tm, cvec3 w)
{
    float3 e_te = te_vector(k, n), e_tm = cross(e_te, k);
    return cv_add(cv_scale(e_te, c_mul(T_te, cv_dot(w, e_te))), cv_scale(e_tm, c_mul(T_tm, cv_dot(w, e_tm))));
}

inline float cv_norm2(cvec3 w) { return dot(w.re, w.re) + dot(w.im, w.im); }

/* Forward maps (the transposes of the above), for fields carried from the TX. */

/* L_lobe E = Rot(k_r -> k_s) [R_TE e_te (e_te . E) + R_TM e_tm_r (e_tm_i . E)]. */
inline cvec3 lobe_map(float3 k_i, float3 n, float3 k_s, float2 R_te, float2 R_tm, cvec3 E)
{
    float3 k_r = reflect3(k_i, n);
    float3 e_te = te_vector(k_i, n);
    float3 e_tm_i = cross(e_te, k_i), e_tm_r = cross(e_te, k_r);
    cvec3 r = cv_add(cv_scale(e_te, c_mul(R_te, cv_dot(E, e_te))), cv_scale(e_tm_r, c_mul(R_tm, cv_dot(E, e_tm_i))));
    cvec3 o;
    o.re = rotate_min(k_r, k_s, r.re);
    o.im = rotate_min(k_r, k_s, r.im);
    return o;
}

/* L_diff E = [s_te s_tm] X diag(R_TE, R_TM) [e_te e_tm]^T E. */
inline cvec3 diffuse_map(float3 k_i, float3 n, float3 k_s, float2 R_te, float2 R_tm, float kx, cvec3 E)
{
    float3 e_te = te_vector(k_i, n), e_tm = cross(e_te, k_i);
    float3 s_te = te_vector(k_s, n), s_tm = cross(s_te, k_s);
    float a = sqrt(1.0f - kx), b = sqrt(kx);
    float2 a0 = c_mul(R_te, cv_dot(E, e_te)), a1 = c_mul(R_tm, cv_dot(E, e_tm));
    return cv_add(cv_scale(s_te, a0 * a - a1 * b), cv_scale(s_tm, a0 * b + a1 * a));
}

/* diag(T) in the TE/TM basis of k is symmetric: the forward map is trans_map_t. */

#endif
