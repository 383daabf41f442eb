/*
 * physics.h - the device side of SPEC section 3 in single precision: complex helpers,
 * Fresnel half-space and slab coefficients (ITU-R P.2040 eqs. 43/44), the directional
 * lobe of mmDiff Eq. 7 with its polynomial normaliser F_alpha = A + cos(t) P(sin^2 t),
 * the Lambertian part, antenna element gains and polarisation vectors.
 *
 * The double-precision host versions in src/physics/ are the references these are
 * tested against (test/test_sim.c). Complex numbers are float2 (x = real, y = imag).
 */
#ifndef MMD_CL_PHYSICS_H
#define MMD_CL_PHYSICS_H

#define MMD_PI 3.14159265358979323846f

/* ---- complex ---------------------------------------------------------------------- */
inline float2 c_mul(float2 a, float2 b) { return (float2)(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x); }
inline float2 c_div(float2 a, float2 b)
{
    /* Smith's algorithm: |b| may be ~1e3 (metals), squares would still fit but this
     * keeps the relative error uniform. */
    if (fabs(b.x) >= fabs(b.y)) {
        float r = b.y / b.x, d = b.x + b.y * r;
        return (float2)((a.x + a.y * r) / d, (a.y - a.x * r) / d);
    }
    float r = b.x / b.y, d = b.x * r + b.y;
    return (float2)((a.x * r + a.y) / d, (a.y * r - a.x) / d);
}
inline float c_abs2(float2 a) { return a.x * a.x + a.y * a.y; }
inline float2 c_sqrt(float2 z)
{
    /* principal branch, Re >= 0; computed without cancellation. |z| by a plain square root
     * (hypot cost 4% of the AoA trace on PoCL); hypot only where the squares would overflow */
    float big = fmax(fabs(z.x), fabs(z.y));
    float m = big < 1e18f ? sqrt(z.x * z.x + z.y * z.y) : hypot(z.x, z.y);
    if (m == 0.0f) return (float2)(0.0f, 0.0f);
    if (z.x >= 0.0f) {
        float t = sqrt(0.5f * (m + z.x));
        return (float2)(t, z.y / (2.0f * t));
    }
    float t = sqrt(0.5f * (m - z.x));
    return (float2)(fabs(z.y) / (2.0f * t), copysign(t, z.y));
}
inline float2 c_exp(float2 z)
{
    float e = exp(z.x), c, s = sincos(z.y, &c);
    return (float2)(e * c, e * s);
}

/* ---- Fresnel (SPEC 3) ------------------------------------------------------------- */

/* Reflection R[0..1] and transmission T[0..1] (TE, TM) at incidence cos_t for a material
 * with complex permittivity eta, slab thickness d (0 = half-space, T = 0), k0 = 2pi/lambda. */
inline void fresnel_rt(float2 eta, float thickness, float k0, float cos_t, float2 *R, float2 *T)
{
    float sin2 = fmax(0.0f, 1.0f - cos_t * cos_t);
    float2 a = c_sqrt((float2)(eta.x - sin2, eta.y));
    float2 ct = (float2)(cos_t, 0.0f);
    float2 r_te = c_div(ct - a, ct + a);
    float2 ect = c_mul(eta, ct);
    float2 r_tm = c_div(ect - a, ect + a);
    if (thickness <= 0.0f) {
        R[0] = r_te; R[1] = r_tm;
        T[0] = (float2)(0.0f, 0.0f); T[1] = (float2)(0.0f, 0.0f);
        return;
    }
    /* q = k0 d a; e1 = e^{-jq}, e2 = e^{-j2q} = e1^2 */
    float2 q = a * (k0 * thickness);
    float2 e1 = c_exp((float2)(q.y, -q.x));
    float2 e2 = c_mul(e1, e1);
    float2 one = (float2)(1.0f, 0.0f);
    for (int p = 0; p < 2; p++) {
        float2 r = p ? r_tm : r_te;
        float2 r2 = c_mul(r, r);
        float2 den = one - c_mul(r2, e2);
        R[p] = c_div(c_mul(r, one - e2), den);
        T[p] = c_div(c_mul(one - r2, e1), den);
    }
}

/* fresnel_rt and the complex derivatives dR/deta, dT/deta (R, T are holomorphic in eta
 * away from the branch cut of the square root), for the calibration adjoints (SPEC 5).
 * With a = sqrt(eta - sin^2 t), a' = 1 / (2a):
 *   r_TE' = -2 cos a' / (cos + a)^2,   r_TM' = ((cos - a')(eta cos + a) - (eta cos - a)(cos + a')) / (eta cos + a)^2
 * and for the slab the quotient rule on R = r(1 - E2)/(1 - r^2 E2), T = (1 - r^2) E1/(1 - r^2 E2)
 * with E1 = e^{-jq}, q = k0 d a, E1' = -j k0 d a' E1, E2 = E1^2, E2' = 2 E1 E1'. */
inline void fresnel_rt_d(float2 eta, float thickness, float k0, float cos_t, float2 *R, float2 *T, float2 *dR,
                         float2 *dT)
{
    float sin2 = fmax(0.0f, 1.0f - cos_t * cos_t);
    float2 one = (float2)(1.0f, 0.0f);
    float2 a = c_sqrt((float2)(eta.x - sin2, eta.y));
    float2 da = c_div((float2)(0.5f, 0.0f), a);
    float2 ct = (float2)(cos_t, 0.0f);
    float2 cpa = ct + a;
    float2 r_te = c_div(ct - a, cpa);
    float2 dr_te = c_div(c_mul((float2)(-2.0f * cos_t, 0.0f), da), c_mul(cpa, cpa));
    float2 ect = c_mul(eta, ct);
    float2 N = ect - a, D = ect + a;
    float2 r_tm = c_div(N, D);
    float2 dr_tm = c_div(c_mul(ct - da, D) - c_mul(N, ct + da), c_mul(D, D));
    if (thickness <= 0.0f) {
        R[0] = r_te; R[1] = r_tm;
        dR[0] = dr_te; dR[1] = dr_tm;
        T[0] = T[1] = dT[0] = dT[1] = (float2)(0.0f, 0.0f);
        return;
    }
    float kd = k0 * thickness;
    float2 q = a * kd;
    float2 e1 = c_exp((float2)(q.y, -q.x));
    float2 de1 = c_mul((float2)(0.0f, -kd), c_mul(da, e1)); /* -j k0 d a' E1 */
    float2 e2 = c_mul(e1, e1), de2 = 2.0f * c_mul(e1, de1);
    for (int p = 0; p < 2; p++) {
        float2 r = p ? r_tm : r_te, dr = p ? dr_tm : dr_te;
        float2 r2 = c_mul(r, r), dr2 = 2.0f * c_mul(r, dr);
        float2 den = one - c_mul(r2, e2);
        float2 dden = -(c_mul(dr2, e2) + c_mul(r2, de2));
        float2 numR = c_mul(r, one - e2), dnumR = c_mul(dr, one - e2) - c_mul(r, de2);
        float2 numT = c_mul(one - r2, e1), dnumT = c_mul(one - r2, de1) - c_mul(dr2, e1);
        float2 den2 = c_mul(den, den);
        R[p] = c_div(numR, den);
        T[p] = c_div(numT, den);
        dR[p] = c_div(c_mul(dnumR, den) - c_mul(numR, dden), den2);
        dT[p] = c_div(c_mul(dnumT, den) - c_mul(numT, dden), den2);
    }
}

/* ---- directional lobe (mmDiff Eq. 7) ---------------------------------------------- */

/* F_alpha(theta_i) = A + cos_t * P(sin^2 t), Horner over coef[0..n-1] (host-computed
 * per material by mmd_lobe_coeffs; all coefficients are nonnegative, so this is stable). */
inline float lobe_norm(float A, __global const float *coef, int n, float cos_t)
{
    float s2 = (1.0f - cos_t) * (1.0f + cos_t);
    float p = 0.0f;
    for (int i = n - 1; i >= 0; i--) p = p * s2 + coef[i];
    return A + cos_t * p;
}

/* ((1 + x)/2)^alpha for x = k_r . k_s, as exp(alpha log(..)) so alpha up to 1000 works */
inline float lobe_num(int alpha, float x)
{
    float h = 0.5f * (1.0f + x);
    if (h <= 0.0f) return 0.0f;
    return exp((float)alpha * log(h));
}

/* Orthonormal basis (t, b) around unit n (Duff et al. 2017). */
inline void onb(float3 n, float3 *t, float3 *b)
{
    float s = copysign(1.0f, n.z);
    float a = -1.0f / (s + n.z);
    float c = n.x * n.y * a;
    *t = (float3)(1.0f + s * n.x * n.x * a, s * c, -s * n.x);
    *b = (float3)(c, s + n.y * n.y * a, -n.y);
}

/* Sample around axis k with pdf (alpha+1)/(4pi) ((1 + k.w)/2)^alpha over the sphere. */
inline float3 lobe_sample(int alpha, float3 k, float u1, float u2)
{
    /* (1 + cos g)/2 = (1 - u1)^(1/(alpha+1)); exp(log) is half the cost of pow on PoCL */
    float x = exp(log(1.0f - u1) / (float)(alpha + 1));
    float cg = 2.0f * x - 1.0f;
    float sg = sqrt(fmax(0.0f, 1.0f - cg * cg));
    float c, s = sincos(2.0f * MMD_PI * u2, &c);
    float3 t, b;
    onb(k, &t, &b);
    return normalize(t * (sg * c) + b * (sg * s) + k * cg);
}

/* Cosine-weighted hemisphere sample around n (pdf cos/pi). */
inline float3 diffuse_sample(float3 n, float u1, float u2)
{
    float r = sqrt(u1);
    float c, s = sincos(2.0f * MMD_PI * u2, &c);
    float3 t, b;
    onb(n, &t, &b);
    return normalize(t * (r * c) + b * (r * s) + n * sqrt(fmax(0.0f, 1.0f - u1)));
}

inline float3 reflect3(float3 k, float3 n) { return k - 2.0f * dot(k, n) * n; }

/* Rodrigues rotation taking unit `from` to unit `to`, applied to v (minimal rotation). */
inline float3 rotate_min(float3 from, float3 to, float3 v)
{
    float3 ax = cross(from, to);
    float s = length(ax), c = dot(from, to);
    if (s < 1e-7f) {
        if (c > 0.0f) return v;
        /* antiparallel: rotate by pi about a fixed perpendicular */
        float3 t, b;
        onb(from, &t, &b);
        return 2.0f * dot(v, t) * t - v;
    }
    ax /= s;
    return v * c + cross(ax, v) * s + ax * (dot(ax, v) * (1.0f - c));
}

/* TE unit vector of an incidence k on a surface with normal n (Sionna: k x n / |k x n|),
 * a fixed perpendicular at normal incidence. */
inline float3 te_vector(float3 k, float3 n)
{
    float3 e = cross(k, n);
    float l = length(e);
    if (l < 1e-6f) {
        float3 t, b;
        onb(k, &t, &b);
        return t;
    }
    return e / l;
}

/* ---- antennas (mmd_physics.h kinds: 0 iso, 1 dipole, 2 hw_dipole, 3 tr38901,
 *      4 patch, 5 horn); u is a unit direction in the antenna's local frame ----------- */
inline float antenna_gain(int kind, float q, float g0, float3 u)
{
    if (kind == 0) return 1.0f;
    if (kind == 1) return 1.5f * (u.x * u.x + u.y * u.y);
    if (kind == 2) {
        float s2 = u.x * u.x + u.y * u.y;
        if (s2 < 1e-12f) return 0.0f;
        float c = cos(0.5f * MMD_PI * clamp(u.z, -1.0f, 1.0f));
        return 1.643f * c * c / s2;
    }
    if (kind == 3) {
        float theta = acos(clamp(u.z, -1.0f, 1.0f)), phi = atan2(u.y, u.x);
        const float t3db = 65.0f * MMD_PI / 180.0f;
        float dv = (theta - 0.5f * MMD_PI) / t3db, dh = phi / t3db;
        float av = -fmin(12.0f * dv * dv, 30.0f), ah = -fmin(12.0f * dh * dh, 30.0f);
        float adb = -fmin(-(av + ah), 30.0f) + 8.0f;
        return exp10(adb / 10.0f);
    }
    return u.x > 0.0f ? g0 * exp(q * log(u.x)) : 0.0f; /* u.x^q */
}

/* Vertical polarisation: the field direction theta-hat of direction u in the local frame
 * (x, y, z) = (cos t cos p, cos t sin p, -sin t); at the poles the limit along phi = 0. */
inline float3 pol_theta_hat(float3 u)
{
    float rho = sqrt(u.x * u.x + u.y * u.y);
    if (rho < 1e-7f) return (float3)(u.z > 0.0f ? 1.0f : -1.0f, 0.0f, 0.0f);
    float ct = u.z;
    return (float3)(ct * u.x / rho, ct * u.y / rho, -rho);
}

#endif
