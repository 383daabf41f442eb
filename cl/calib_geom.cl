/*
 * calib_geom.cl - the geometry adjoint of calibration (include/mmd_calib_geom.h,
 * docs/calibration_geometry.md): dL/dp for the pose p = (t_x, t_y, t_z, a_x, a_y) of one
 * scene object, from the path records of cl/calib.cl.
 *
 * The next-event connection term of vertex k of ray i (SPEC 4, "AoA spectrum"; scalar
 * form) is
 *     c_ik = g_nee T_<k rho_k,   g_nee = (lambda/4pi)^2 dOmega G_TX(-v) / r^2,
 *     rho_k = Gamma^2(cos_v) [(1 - S^2) f_lobe + S^2 f_diff]          (SPEC 3 "Reflection energy")
 *     f_lobe = ((1 + k_r.k_s)/2)^alpha / F_alpha(cos_v)                (SPEC 3 "Directional lobe", mmDiff Eq. 7)
 *     f_diff = k_s.n / pi                                             (SPEC 3, Lambertian part)
 * with v = (tx - p)/r, r = |tx - p|, cos_v = v.n, k_r = reflect(-v, n), k_s = -d, and
 * Gamma^2 = (|R_TE|^2 + |R_TM|^2)/2 of the Fresnel/slab coefficients at cos_v (SPEC 3
 * "Fresnel"). For a vertex on the object, p and n depend on the pose:
 *   - the receiver ray (origin o, direction d) is held fixed, so the hit point slides
 *     along it: p = o + t d, t = ((q0 - o).n_g)/(d.n_g) for the plane (q0, n_g) of the
 *     hit triangle. Differentiating with q0 = p gives dt = (u(p).n_g)/(d.n_g), where
 *     u(p) is the velocity of the surface point p under the parameter (the terms of dn_g
 *     cancel because p - o is parallel to d);
 *   - the normal turns with the object: dn = omega x n.
 * Parameter j moves surface points by u_j(x) = e_j (translations) or omega_j x (x - c')
 * (rotations about the current centre c' = c + t; omega_x = R_y(a_y) e_x for a_x,
 * omega_y = e_y for a_y, because R = R_y(a_y) R_x(a_x)). So only three tangents are
 * needed per vertex: D_ray = dc/dt (dp = d, dn = 0) and D_rot,q = dc for (dp = 0,
 * dn = omega_q x n), and dc/dp_j = dt_j D_ray (+ D_rot,j for a rotation).
 *
 * Polarised (Jones) mode (SPEC 4, last paragraph of "AoA spectrum"): the term is
 *     c_ik = g_nee [(1 - S^2) f_lobe |w_<k . L_lobe(-v, n, k_s) e_TX(v)|^2
 *                   + S^2 f_diff |w_<k . L_diff(-v, n, k_s) e_TX(v)|^2]
 * with the receiver-side Jones vector w_<k of the earlier vertices held fixed; its
 * tangents are carried forward (dual numbers: value and derivative along one tangent)
 * through the same maps as jones.h (TE/TM bases, reflection, the minimal rotation
 * k_r -> k_s, the TX polarisation theta-hat(-v)) and the Fresnel coefficients at cos_v.
 *
 * First-order model: T_<k (w_<k), the continuation directions and all later vertices
 * are held fixed; shadow-ray visibility and the object's edges are not differentiated.
 * The gradient is exact for max_depth 1 and for the connection term of every vertex on
 * the object (docs/calibration_geometry.md).
 *
 * Output: per work-group partial sums of sum_i dL/dc_i dc_i/dp_j (5 floats per group),
 * reduced in local memory in a fixed tree order; the host sums the groups in double.
 */
#pragma OPENCL FP_CONTRACT OFF
#include "mmd_shared.h"
#include "physics.h"
#include "sample.h"
#include "jones.h"
#include "sim_common.h"

#define GEO_EMPTY 0xffffffffu
#define GEO_WG 64
#define MMD_CALIB_GEOM_NP 5 /* t_x, t_y, t_z, a_x, a_y (mmd_calib_geom.h) */
#ifdef MMD_SIM_FLAGS_CT
#define GEO_FLAGS (MMD_SIM_FLAGS_CT)
#else
#define GEO_FLAGS (P->flags)
#endif

/* Fresnel/slab R (TE, TM) at incidence cos_t and dR/dcos_t (SPEC 3 "Fresnel", ITU-R
 * P.2040 eqs. 43/44), derived like fresnel_rt_d does for eta but through a:
 *   a = sqrt(eta - sin^2 t) = sqrt(eta - 1 + cos^2 t),  a' = da/dcos = cos / a,
 *   r_TE = (cos - a)/(cos + a):          r_TE' = 2 (a - cos a') / (cos + a)^2,
 *   r_TM = (eta cos - a)/(eta cos + a):  r_TM' = 2 eta (a - cos a') / (eta cos + a)^2,
 * slab: R = r (1 - E2)/(1 - r^2 E2), E1 = e^{-jq}, q = k0 d a, E1' = -j k0 d a' E1,
 * E2 = E1^2, E2' = 2 E1 E1' (quotient rule as in fresnel_rt_d). */
inline void geo_fresnel_dcos(float2 eta, float thickness, float k0, float cos_t, float2 *R, float2 *dR)
{
    float sin2 = fmax(0.0f, 1.0f - cos_t * cos_t);
    float2 one = (float2)(1.0f, 0.0f);
    float2 a = c_sqrt((float2)(eta.x - sin2, eta.y));
    float2 ct = (float2)(cos_t, 0.0f);
    float2 da = c_div(ct, a);
    float2 num = 2.0f * (a - c_mul(ct, da)); /* 2 (a - cos a') */
    float2 cpa = ct + a;
    float2 r_te = c_div(ct - a, cpa);
    float2 dr_te = c_div(num, c_mul(cpa, cpa));
    float2 ect = c_mul(eta, ct);
    float2 D = ect + a;
    float2 r_tm = c_div(ect - a, D);
    float2 dr_tm = c_div(c_mul(eta, num), c_mul(D, D));
    if (thickness <= 0.0f) {
        R[0] = r_te; R[1] = r_tm;
        dR[0] = dr_te; dR[1] = dr_tm;
        return;
    }
    float kd = k0 * thickness;
    float2 q = a * kd;
    float2 e1 = c_exp((float2)(q.y, -q.x));
    float2 de1 = c_mul((float2)(0.0f, -kd), c_mul(da, e1));
    float2 e2 = c_mul(e1, e1), de2 = 2.0f * c_mul(e1, de1);
    for (int p = 0; p < 2; p++) {
        float2 r = p ? r_tm : r_te, dr = p ? dr_tm : dr_te;
        float2 r2 = c_mul(r, r), dr2 = 2.0f * c_mul(r, dr);
        float2 den = one - c_mul(r2, e2);
        float2 dden = -(c_mul(dr2, e2) + c_mul(r2, de2));
        float2 numR = c_mul(r, one - e2), dnumR = c_mul(dr, one - e2) - c_mul(r, de2);
        R[p] = c_div(numR, den);
        dR[p] = c_div(c_mul(dnumR, den) - c_mul(numR, dden), c_mul(den, den));
    }
}

/* F_alpha(cos) = A + cos P(s2), s2 = 1 - cos^2 (lobe_norm, docs/physics.md section 4), and
 * dF/dcos = P(s2) - 2 cos^2 P'(s2), both by Horner. */
inline float geo_lobe_norm_d(float A, __global const float *coef, int n, float cos_t, float *dF)
{
    float s2 = (1.0f - cos_t) * (1.0f + cos_t);
    float p = 0.0f, dp = 0.0f;
    for (int i = n - 1; i >= 0; i--) {
        dp = dp * s2 + p;
        p = p * s2 + coef[i];
    }
    *dF = p - 2.0f * cos_t * cos_t * dp;
    return A + cos_t * p;
}

/* Gradient (in the antenna's local frame) of antenna_gain (physics.h) at the unit
 * direction u. Only its component tangent to the sphere is used (the direction moves on
 * the sphere), so any smooth extension off the sphere gives the same answer; each kind
 * below differentiates the formula antenna_gain evaluates. */
inline float3 geo_antenna_grad(int kind, float q, float g0, float3 u)
{
    if (kind == 1) return (float3)(3.0f * u.x, 3.0f * u.y, 0.0f);
    if (kind == 2) {
        float s2 = u.x * u.x + u.y * u.y;
        if (s2 < 1e-12f) return (float3)(0.0f);
        float h = 0.5f * MMD_PI * clamp(u.z, -1.0f, 1.0f);
        float c, s = sincos(h, &c);
        float gx = -1.643f * c * c * 2.0f / (s2 * s2);
        return (float3)(gx * u.x, gx * u.y, -1.643f * 2.0f * c * s * 0.5f * MMD_PI / s2);
    }
    if (kind == 3) {
        /* 3GPP TR 38.901 Table 7.3-1: A = 8 - min(-(A_v + A_h), 30) dB,
         * A_v = -min(12 ((theta - 90 deg)/65 deg)^2, 30), A_h = -min(12 (phi/65 deg)^2, 30) */
        float uz = clamp(u.z, -1.0f, 1.0f), rho2 = u.x * u.x + u.y * u.y;
        if (rho2 < 1e-12f || fabs(uz) >= 1.0f) return (float3)(0.0f);
        float theta = acos(uz), phi = atan2(u.y, u.x);
        const float t3db = 65.0f * MMD_PI / 180.0f;
        float dv = (theta - 0.5f * MMD_PI) / t3db, dh = phi / t3db;
        float av = -fmin(12.0f * dv * dv, 30.0f), ah = -fmin(12.0f * dh * dh, 30.0f);
        if (-(av + ah) >= 30.0f) return (float3)(0.0f); /* floor of the pattern: flat */
        float adb = av + ah + 8.0f;
        float G = exp10(adb / 10.0f);
        float dav = 12.0f * dv * dv < 30.0f ? -24.0f * dv / t3db : 0.0f; /* dA_v/dtheta */
        float dah = 12.0f * dh * dh < 30.0f ? -24.0f * dh / t3db : 0.0f; /* dA_h/dphi */
        /* dtheta/du = (0, 0, -1/sqrt(1 - uz^2)), dphi/du = (-u_y, u_x, 0)/rho^2 */
        float k = G * 0.23025850929940458f; /* G ln(10)/10 */
        float3 gth = (float3)(0.0f, 0.0f, -1.0f / sqrt(1.0f - uz * uz));
        float3 gph = (float3)(-u.y, u.x, 0.0f) / rho2;
        return k * (dav * gth + dah * gph);
    }
    if (kind >= 4) return u.x > 0.0f ? (float3)(g0 * q * pow(u.x, q - 1.0f), 0.0f, 0.0f) : (float3)(0.0f);
    return (float3)(0.0f);
}

/* Everything about one scalar connection term that its tangents share. */
typedef struct geo_conn {
    float3 n, d, v, ks;
    float r, cos_v, c;       /* c = the term itself, g_nee T_<k rho */
    float3 grad_lnG;         /* world-frame gradient of ln G_TX w.r.t. the TX direction -v */
    float base;              /* g_nee T_<k */
    float g2, dg2;           /* Gamma^2 and dGamma^2/dcos_v */
    float fm;                /* (1 - S^2) f_lobe + S^2 f_diff */
    float wl, wd;            /* (1 - S^2) f_lobe, S^2 (only where f_diff > 0) */
    float alpha_x, dlnF;     /* alpha / (1 + x) and dF/dcos / F */
    float f_diff, kx;        /* Jones mode: the Lambertian value and K_x */
    float2 R[2], dR[2];      /* Jones mode: Fresnel R (TE, TM) and dR/dcos_v */
} geo_conn;

/* d c / d(tangent) for a tangent that moves the hit point by dp and turns the normal by
 * dn (|n| stays 1), with the receiver ray, TX and everything else fixed:
 *   dv = -(dp - v (v.dp)) / r,   d ln(1/r^2) = 2 (v.dp) / r,   d ln G_TX = grad_lnG . (-dv)
 *   dcos_v = dv.n + v.dn,   dk_r = -dv + 2 dcos_v n + 2 cos_v dn,   dx = dk_r.k_s
 *   d f_lobe = f_lobe (alpha dx / (1 + x) - F'/F dcos_v),   d f_diff = k_s.dn / pi
 *   dc = c (d ln(1/r^2) + d ln G) + base (dGamma^2 fm + Gamma^2 d fm). */
inline float geo_conn_d(const geo_conn *q, float3 dp, float3 dn)
{
    float vdp = dot(q->v, dp);
    float3 dv = -(dp - q->v * vdp) / q->r;
    float dlng = 2.0f * vdp / q->r + dot(q->grad_lnG, -dv);
    float dcos = dot(dv, q->n) + dot(q->v, dn);
    float3 dkr = -dv + 2.0f * dcos * q->n + 2.0f * q->cos_v * dn;
    float dx = dot(dkr, q->ks);
    float dfm = q->wl * (q->alpha_x * dx - q->dlnF * dcos) + q->wd * dot(q->ks, dn) / MMD_PI;
    return q->c * dlng + q->base * (q->dg2 * dcos * q->fm + q->g2 * dfm);
}


/* ---- Jones mode: forward-mode tangents ---------------------------------------------
 * Each value carries its derivative along one tangent (x = value, t = derivative). The
 * degenerate branches of te_vector / rotate_min (normal incidence, k_s = +-k_r) are
 * measure-zero; there the fixed fallback basis is held constant. */
typedef struct gd1 { float x, t; } gd1;
typedef struct gd3 { float3 x, t; } gd3;
typedef struct gdc { float2 x, t; } gdc;
typedef struct gdv { cvec3 x, t; } gdv;

inline gd3 gd_const(float3 a)
{
    gd3 r;
    r.x = a;
    r.t = (float3)(0.0f);
    return r;
}
inline gd3 gd_neg(gd3 a)
{
    a.x = -a.x;
    a.t = -a.t;
    return a;
}
inline gd1 gd_dot(gd3 a, gd3 b)
{
    gd1 r;
    r.x = dot(a.x, b.x);
    r.t = dot(a.t, b.x) + dot(a.x, b.t);
    return r;
}
inline gd3 gd_cross(gd3 a, gd3 b)
{
    gd3 r;
    r.x = cross(a.x, b.x);
    r.t = cross(a.t, b.x) + cross(a.x, b.t);
    return r;
}
/* k - 2 (k.n) n */
inline gd3 gd_reflect(gd3 k, gd3 n)
{
    gd1 kn = gd_dot(k, n);
    gd3 r;
    r.x = k.x - 2.0f * kn.x * n.x;
    r.t = k.t - 2.0f * (kn.t * n.x + kn.x * n.t);
    return r;
}
/* e / |e|: d(e/l) = (de - u (u.de)) / l */
inline gd3 gd_unit(gd3 e, float l)
{
    gd3 r;
    r.x = e.x / l;
    r.t = (e.t - r.x * dot(r.x, e.t)) / l;
    return r;
}
inline gd3 gd_te_vector(gd3 k, gd3 n)
{
    gd3 e = gd_cross(k, n);
    float l = length(e.x);
    if (l < 1e-6f) {
        float3 t, b;
        onb(k.x, &t, &b);
        return gd_const(t);
    }
    return gd_unit(e, l);
}
/* rotate_min (physics.h): v c + (u x v) s + u (u.v)(1 - c), u = (from x to)/s */
inline gd3 gd_rotate_min(gd3 from, gd3 to, gd3 v)
{
    gd3 ax = gd_cross(from, to);
    float s = length(ax.x);
    gd1 c = gd_dot(from, to);
    if (s < 1e-7f) {
        if (c.x > 0.0f) return v;
        float3 t, b;
        onb(from.x, &t, &b);
        gd3 r;
        r.x = 2.0f * dot(v.x, t) * t - v.x;
        r.t = 2.0f * dot(v.t, t) * t - v.t;
        return r;
    }
    float ds = dot(ax.x, ax.t) / s;
    gd3 u = gd_unit(ax, s);
    gd3 uv = gd_cross(u, v);
    gd1 udv = gd_dot(u, v);
    gd3 r;
    r.x = v.x * c.x + uv.x * s + u.x * (udv.x * (1.0f - c.x));
    r.t = v.t * c.x + v.x * c.t + uv.t * s + uv.x * ds + u.t * (udv.x * (1.0f - c.x)) +
          u.x * (udv.t * (1.0f - c.x) - udv.x * c.t);
    return r;
}
inline gdc gdc_mul(gdc a, gdc b)
{
    gdc r;
    r.x = c_mul(a.x, b.x);
    r.t = c_mul(a.t, b.x) + c_mul(a.x, b.t);
    return r;
}
inline gdc gdc_scale(gdc a, float s)
{
    a.x *= s;
    a.t *= s;
    return a;
}
inline gdc gdc_sub(gdc a, gdc b)
{
    a.x -= b.x;
    a.t -= b.t;
    return a;
}
inline gdc gdc_add(gdc a, gdc b)
{
    a.x += b.x;
    a.t += b.t;
    return a;
}
/* w . e for complex w, real e */
inline gdc gdv_dot(gdv w, gd3 e)
{
    gdc r;
    r.x = cv_dot(w.x, e.x);
    r.t = cv_dot(w.t, e.x) + cv_dot(w.x, e.t);
    return r;
}
inline gdv gdv_scale(gd3 e, gdc a)
{
    gdv r;
    r.x = cv_scale(e.x, a.x);
    r.t = cv_add(cv_scale(e.t, a.x), cv_scale(e.x, a.t));
    return r;
}
inline gdv gdv_add(gdv a, gdv b)
{
    a.x = cv_add(a.x, b.x);
    a.t = cv_add(a.t, b.t);
    return a;
}
inline gdv gdv_rotate_min(gd3 from, gd3 to, gdv v)
{
    gd3 re, im;
    re.x = v.x.re, re.t = v.t.re;
    im.x = v.x.im, im.t = v.t.im;
    re = gd_rotate_min(from, to, re);
    im = gd_rotate_min(from, to, im);
    v.x.re = re.x, v.t.re = re.t;
    v.x.im = im.x, v.t.im = im.t;
    return v;
}
/* lobe_map (jones.h) with tangents */
inline gdv gd_lobe_map(gd3 k_i, gd3 n, gd3 k_s, gdc R_te, gdc R_tm, gdv E)
{
    gd3 k_r = gd_reflect(k_i, n);
    gd3 e_te = gd_te_vector(k_i, n);
    gd3 e_tm_i = gd_cross(e_te, k_i), e_tm_r = gd_cross(e_te, k_r);
    gdv r = gdv_add(gdv_scale(e_te, gdc_mul(R_te, gdv_dot(E, e_te))),
                    gdv_scale(e_tm_r, gdc_mul(R_tm, gdv_dot(E, e_tm_i))));
    return gdv_rotate_min(k_r, k_s, r);
}
/* diffuse_map (jones.h) with tangents */
inline gdv gd_diffuse_map(gd3 k_i, gd3 n, gd3 k_s, gdc R_te, gdc R_tm, float kx, gdv E)
{
    gd3 e_te = gd_te_vector(k_i, n), e_tm = gd_cross(e_te, k_i);
    gd3 s_te = gd_te_vector(k_s, n), s_tm = gd_cross(s_te, k_s);
    float a = sqrt(1.0f - kx), b = sqrt(kx);
    gdc a0 = gdc_mul(R_te, gdv_dot(E, e_te)), a1 = gdc_mul(R_tm, gdv_dot(E, e_tm));
    return gdv_add(gdv_scale(s_te, gdc_sub(gdc_scale(a0, a), gdc_scale(a1, b))),
                   gdv_scale(s_tm, gdc_add(gdc_scale(a0, b), gdc_scale(a1, a))));
}
/* pol_theta_hat (physics.h) with tangents: (u_z u_x / rho, u_z u_y / rho, -rho) */
inline gd3 gd_theta_hat(gd3 u)
{
    float rho = sqrt(u.x.x * u.x.x + u.x.y * u.x.y);
    if (rho < 1e-7f) return gd_const(pol_theta_hat(u.x));
    float drho = (u.x.x * u.t.x + u.x.y * u.t.y) / rho;
    float ct = u.x.z, dct = u.t.z;
    gd3 r;
    r.x = (float3)(ct * u.x.x / rho, ct * u.x.y / rho, -rho);
    r.t = (float3)((dct * u.x.x + ct * u.t.x) / rho - ct * u.x.x * drho / (rho * rho),
                   (dct * u.x.y + ct * u.t.y) / rho - ct * u.x.y * drho / (rho * rho), -drho);
    return r;
}
/* bilinear w . u (no conjugation), w fixed */
inline gdc gd_bidot(cvec3 w, gdv u)
{
    gdc r;
    r.x = (float2)(dot(w.re, u.x.re) - dot(w.im, u.x.im), dot(w.re, u.x.im) + dot(w.im, u.x.re));
    r.t = (float2)(dot(w.re, u.t.re) - dot(w.im, u.t.im), dot(w.re, u.t.im) + dot(w.im, u.t.re));
    return r;
}

/* dc/d(tangent) of one Jones connection term (see the top): the scalar factors as in
 * geo_conn_d, the amplitudes a = w_<k . L e_TX through the tangent-carrying maps;
 * d|a|^2 = 2 Re(conj(a) da). */
inline float geo_conn_jones_d(const geo_conn *q, cvec3 w, const float *txrot, float3 dp, float3 dn)
{
    float vdp = dot(q->v, dp);
    float3 dv = -(dp - q->v * vdp) / q->r;
    float dlng = 2.0f * vdp / q->r + dot(q->grad_lnG, -dv);
    float dcos = dot(dv, q->n) + dot(q->v, dn);
    float3 dkr = -dv + 2.0f * dcos * q->n + 2.0f * q->cos_v * dn;
    float dx = dot(dkr, q->ks);
    gd3 v, n;
    v.x = q->v, v.t = dv;
    n.x = q->n, n.t = dn;
    gd3 ki = gd_neg(v), ks = gd_const(q->ks);
    gdc R_te, R_tm;
    R_te.x = q->R[0], R_te.t = q->dR[0] * dcos;
    R_tm.x = q->R[1], R_tm.t = q->dR[1] * dcos;
    gd3 txl;
    txl.x = mat3_mul_t(txrot, -v.x);
    txl.t = mat3_mul_t(txrot, -dv);
    gd3 th = gd_theta_hat(txl);
    gdv E;
    E.x.re = mat3_mul(txrot, th.x);
    E.t.re = mat3_mul(txrot, th.t);
    E.x.im = E.t.im = (float3)(0.0f);
    float A_l = 0.0f, dA_l = 0.0f, A_d = 0.0f, dA_d = 0.0f;
    if (q->wl > 0.0f) {
        gdc a = gd_bidot(w, gd_lobe_map(ki, n, ks, R_te, R_tm, E));
        A_l = c_abs2(a.x);
        dA_l = 2.0f * (a.x.x * a.t.x + a.x.y * a.t.y);
    }
    if (q->wd > 0.0f) {
        gdc a = gd_bidot(w, gd_diffuse_map(ki, n, ks, R_te, R_tm, q->kx, E));
        A_d = c_abs2(a.x);
        dA_d = 2.0f * (a.x.x * a.t.x + a.x.y * a.t.y);
    }
    float wd = q->wd * q->f_diff; /* S^2 f_diff */
    float dwl = q->wl * (q->alpha_x * dx - q->dlnF * dcos), dwd = q->wd * dot(q->ks, dn) / MMD_PI;
    return q->c * dlng + q->base * (dwl * A_l + q->wl * dA_l + dwd * A_d + wd * dA_d);
}

/* The receiver-side Jones vector of ray i before its first vertex (cal_w0, calib.cl) */
inline cvec3 geo_w0(__constant const mmd_sim_params *P, __global const mmd_gpu_pose *pose, uint i)
{
    float prot[9];
    for (int k = 0; k < 9; k++) prot[k] = pose->rot[k];
    cvec3 w;
    w.re = mat3_mul(prot, pol_theta_hat(aoa_ray_local(P, pose->index, i)));
    w.im = (float3)(0.0f);
    return w;
}

/* The Jones amplitude of a connection: w . L e_TX(v) (for the term's value) */
inline float2 geo_amp(cvec3 w, int lobe, float3 v, float3 n, float3 ks, float2 R0, float2 R1, float kx,
                      const float *txrot)
{
    cvec3 E;
    E.re = mat3_mul(txrot, pol_theta_hat(mat3_mul_t(txrot, -v)));
    E.im = (float3)(0.0f);
    cvec3 u = lobe ? lobe_map(-v, n, ks, R0, R1, E) : diffuse_map(-v, n, ks, R0, R1, kx, E);
    return (float2)(dot(w.re, u.re) - dot(w.im, u.im), dot(w.re, u.im) + dot(w.im, u.re));
}

__kernel __attribute__((reqd_work_group_size(GEO_WG, 1, 1))) void
mmd_calib_geom_grad(__global const mmd_cal_vertex *rec, __global const float4 *theta,
                    __global const mmd_gpu_material *mats, __global const float *lobe_coef,
                    __global const mmd_gpu_pose *poses, __constant const mmd_sim_params *P, uint b, float sig2im,
                    __global const float *dldc, uint target, uint first_tri, uint n_tris,
                    __global const float4 *geo_n, float4 pivot, float4 omega_x, float4 omega_y,
                    __global float *partial)
{
    __local float sh[MMD_CALIB_GEOM_NP][GEO_WG];
    uint i = get_global_id(0), lid = get_local_id(0);
    float acc[MMD_CALIB_GEOM_NP];
    for (int j = 0; j < MMD_CALIB_GEOM_NP; j++) acc[j] = 0.0f;
    const uint K = P->max_depth;
    const int jones = (GEO_FLAGS & MMD_SIM_JONES) != 0;
    float g_up = i < P->n_rays ? dldc[(size_t)b * P->n_rays + i] : 0.0f;
    if (g_up != 0.0f) {
        __global const mmd_cal_vertex *rv = rec + (size_t)i * K;
        float3 tx = (float3)(P->tx_pos[0], P->tx_pos[1], P->tx_pos[2]);
        float txrot[9];
        for (int k = 0; k < 9; k++) txrot[k] = P->tx_rot[k];
        float3 c0 = pivot.xyz, wx = omega_x.xyz, wy = omega_y.xyz;
        float thr = 1.0f;                  /* scalar: T_<k */
        cvec3 w;                           /* Jones: w_<k */
        if (jones) w = geo_w0(P, poses + b, i);
        for (uint k = 0; k < K; k++) {
            mmd_cal_vertex vx = rv[k];
            if (vx.obj == GEO_EMPTY) break;
            float4 th = theta[vx.obj];
            float2 eta = (float2)(th.x, -th.y * sig2im);
            mmd_gpu_material m = mats[vx.obj];
            float3 n = vload3(0, vx.n), d = vload3(0, vx.d);
            float S2 = th.z * th.z;
            uint lt = vx.tri - first_tri;
            if (vx.obj == target && vx.g_nee > 0.0f && lt < n_tris) {
                geo_conn q;
                float3 p = vload3(0, vx.p);
                q.n = n;
                q.d = d;
                q.ks = -d;
                float3 wv = tx - p;
                q.r = length(wv);
                q.v = wv / q.r;
                q.cos_v = dot(q.v, n);
                geo_fresnel_dcos(eta, m.thickness_m, P->k0, q.cos_v, q.R, q.dR);
                q.g2 = 0.5f * (c_abs2(q.R[0]) + c_abs2(q.R[1]));
                q.dg2 = c_mul((float2)(q.R[0].x, -q.R[0].y), q.dR[0]).x +
                        c_mul((float2)(q.R[1].x, -q.R[1].y), q.dR[1]).x;
                q.wl = (1.0f - S2) * vx.f_lobe;
                q.wd = vx.f_diff > 0.0f ? S2 : 0.0f;
                q.f_diff = vx.f_diff;
                q.kx = th.w;
                q.fm = q.wl + S2 * vx.f_diff;
                q.alpha_x = 0.0f;
                q.dlnF = 0.0f;
                if (vx.f_lobe > 0.0f) {
                    float dF;
                    float F = geo_lobe_norm_d(m.lobe_A, lobe_coef + m.coef_off, (int)m.ncoef, q.cos_v, &dF);
                    float x = dot(reflect3(-q.v, n), q.ks);
                    q.alpha_x = (float)m.alpha / (1.0f + x);
                    q.dlnF = dF / F;
                }
                float3 txl = mat3_mul_t(txrot, -q.v);
                float G = antenna_gain(P->tx_kind, P->tx_q, P->tx_g0, txl);
                q.grad_lnG = G > 0.0f ? mat3_mul(txrot, geo_antenna_grad(P->tx_kind, P->tx_q, P->tx_g0, txl)) / G
                                      : (float3)(0.0f);
                if (jones) {
                    /* c = g_nee [(1 - S^2) f_lobe |a_l|^2 + S^2 f_diff |a_d|^2] */
                    float A_l = q.wl > 0.0f ? c_abs2(geo_amp(w, 1, q.v, n, q.ks, q.R[0], q.R[1], q.kx, txrot)) : 0.0f;
                    float A_d = q.wd > 0.0f ? c_abs2(geo_amp(w, 0, q.v, n, q.ks, q.R[0], q.R[1], q.kx, txrot)) : 0.0f;
                    q.base = vx.g_nee;
                    q.c = vx.g_nee * (q.wl * A_l + q.wd * q.f_diff * A_d);
                } else {
                    q.base = vx.g_nee * thr;
                    q.c = q.base * q.g2 * q.fm;
                }
                /* the hit point slides along the ray: dt_j = (u_j(p) . n_g) / (d . n_g) */
                float3 ng = geo_n[lt].xyz;
                float dng = dot(d, ng);
                if (fabs(dng) > 1e-6f) {
                    float3 z3 = (float3)(0.0f), nx = cross(wx, n), ny = cross(wy, n);
                    float D_ray, D_rx, D_ry;
                    if (jones) {
                        D_ray = geo_conn_jones_d(&q, w, txrot, d, z3);
                        D_rx = geo_conn_jones_d(&q, w, txrot, z3, nx);
                        D_ry = geo_conn_jones_d(&q, w, txrot, z3, ny);
                    } else {
                        D_ray = geo_conn_d(&q, d, z3);
                        D_rx = geo_conn_d(&q, z3, nx);
                        D_ry = geo_conn_d(&q, z3, ny);
                    }
                    float3 rel = p - c0;
                    float s = g_up * D_ray / dng;
                    acc[0] += s * ng.x;
                    acc[1] += s * ng.y;
                    acc[2] += s * ng.z;
                    acc[3] += s * dot(cross(wx, rel), ng) + g_up * D_rx;
                    acc[4] += s * dot(cross(wy, rel), ng) + g_up * D_ry;
                }
            }
            if (vx.event == MMD_CAL_END) break;
            /* T_<k (w_<k) of the next vertex, exactly as mmd_calib_forward */
            float3 o = vload3(0, vx.o);
            int tr = vx.event == MMD_CAL_TRANSMIT;
            float cos_c = tr ? -dot(d, n) : dot(o, n);
            float2 R[2], T[2];
            fresnel_rt(eta, m.thickness_m, P->k0, cos_c, R, T);
            float2 C0 = tr ? T[0] : R[0], C1 = tr ? T[1] : R[1];
            float sf = vx.w_cont * (vx.event == MMD_CAL_DIFFUSE ? S2 : tr ? 1.0f : 1.0f - S2);
            if (jones) {
                cvec3 nw = tr ? trans_map_t(d, n, C0, C1, w)
                              : vx.event == MMD_CAL_DIFFUSE ? diffuse_map_t(-o, n, -d, C0, C1, th.w, w)
                                                            : lobe_map_t(-o, n, -d, C0, C1, w);
                float sq = sqrt(sf);
                w.re = nw.re * sq;
                w.im = nw.im * sq;
            } else {
                thr *= sf * 0.5f * (c_abs2(C0) + c_abs2(C1));
            }
        }
    }
    /* fixed-order tree reduction: the same bits on every run */
    for (int j = 0; j < MMD_CALIB_GEOM_NP; j++) sh[j][lid] = acc[j];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint h = GEO_WG / 2; h > 0; h >>= 1) {
        if (lid < h)
            for (int j = 0; j < MMD_CALIB_GEOM_NP; j++) sh[j][lid] += sh[j][lid + h];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0)
        for (int j = 0; j < MMD_CALIB_GEOM_NP; j++) partial[(size_t)get_group_id(0) * MMD_CALIB_GEOM_NP + j] = sh[j][0];
}
