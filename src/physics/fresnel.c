/* Fresnel half-space and slab coefficients, free-space gain and the Jones-vector
 * bookkeeping of reflections (see mmd_physics.h, docs/physics.md). */
#include "mmd_physics.h"

#include <complex.h>
#include <math.h>

#include "phys_vec.h"

double mmd_wavelength(double freq_hz) { return MMD_SPEED_OF_LIGHT / freq_hz; }

double mmd_free_space_gain(double wavelength_m, double r_m)
{
    double g = wavelength_m / (4.0 * M_PI * r_m);
    return g * g;
}

double mmd_db(double ratio) { return ratio > 0 ? 10.0 * log10(ratio) : (ratio == 0 ? -INFINITY : NAN); }

void mmd_fresnel_halfspace(double _Complex eta, double cos_theta, double _Complex r[2])
{
    double c = fmin(fmax(cos_theta, 0.0), 1.0);
    double s2 = (1.0 - c) * (1.0 + c); /* sin^2 without cancellation near grazing */
    double _Complex a = csqrt(eta - s2);
    r[0] = (c - a) / (c + a);
    r[1] = (eta * c - a) / (eta * c + a);
}

void mmd_fresnel_slab(double _Complex eta, double cos_theta, double thickness_m,
                      double wavelength_m, double _Complex R[2], double _Complex T[2])
{
    double _Complex r[2];
    mmd_fresnel_halfspace(eta, cos_theta, r);
    if (!(thickness_m > 0)) {
        R[0] = r[0], R[1] = r[1];
        T[0] = T[1] = 0;
        return;
    }
    double c = fmin(fmax(cos_theta, 0.0), 1.0);
    double _Complex a = csqrt(eta - (1.0 - c) * (1.0 + c));
    double _Complex q = (2.0 * M_PI * thickness_m / wavelength_m) * a;
    /* Im(a) <= 0 for a lossy medium, so both exponentials decay with thickness (no
     * overflow for a thick metal slab: they underflow to 0 and R -> r'). */
    double _Complex e1 = cexp(-I * q), e2 = cexp(-2.0 * I * q);
    for (int p = 0; p < 2; p++) {
        double _Complex rp = r[p], den = 1.0 - rp * rp * e2;
        R[p] = rp * (1.0 - e2) / den;
        T[p] = (1.0 - rp * rp) * e1 / den;
    }
}

void mmd_material_fresnel(const mmd_material *m, double freq_hz, double cos_theta,
                          double _Complex R[2], double _Complex T[2])
{
    mmd_fresnel_slab(mmd_material_eta(m, freq_hz), cos_theta, m->thickness_m,
                     mmd_wavelength(freq_hz), R, T);
}

/* ------------------------------------------------------------------------------ */

void mmd_onb(const double n[3], double t[3], double b[3])
{
    /* Duff et al., "Building an Orthonormal Basis, Revisited" (JCGT 2017). */
    double sign = copysign(1.0, n[2]);
    double a = -1.0 / (sign + n[2]);
    double bb = n[0] * n[1] * a;
    v3_set(t, 1.0 + sign * n[0] * n[0] * a, sign * bb, -sign * n[0]);
    v3_set(b, bb, sign + n[1] * n[1] * a, -n[1]);
}

void mmd_reflect(const double k_i[3], const double n[3], double k_r[3])
{
    double d = 2.0 * v3_dot(k_i, n);
    v3_set(k_r, k_i[0] - d * n[0], k_i[1] - d * n[1], k_i[2] - d * n[2]);
}

void mmd_te_tm_basis(const double k[3], const double n[3], double e_te[3], double e_tm[3])
{
    v3_cross(k, n, e_te);
    /* |k x n| = sin(theta_i): below ~1e-9 rad the plane of incidence is numerically
     * undefined and any perpendicular of k is as good (TE and TM coincide there). */
    if (v3_normalize(e_te) < 1e-9) {
        double b[3];
        mmd_onb(k, e_te, b);
    }
    v3_cross(e_te, k, e_tm);
    v3_normalize(e_tm);
}

void mmd_basis_change(const double a[3], const double b[3], const double q[3],
                      const double r[3], double W[4])
{
    W[0] = v3_dot(a, q), W[1] = v3_dot(a, r);
    W[2] = v3_dot(b, q), W[3] = v3_dot(b, r);
}

double mmd_reflection_energy(const double _Complex R[2], const double _Complex E[2])
{
    double e2 = creal(E[0] * conj(E[0])) + creal(E[1] * conj(E[1]));
    if (!(e2 > 0)) return 0;
    double _Complex a = R[0] * E[0], b = R[1] * E[1];
    return (creal(a * conj(a)) + creal(b * conj(b))) / e2;
}

void mmd_xpd_matrix(double kx, double M[4])
{
    double k = fmin(fmax(kx, 0.0), 1.0);
    double s = sqrt(k), c = sqrt(1.0 - k);
    M[0] = c, M[1] = -s, M[2] = s, M[3] = c;
}

void mmd_jones_mul(const double _Complex M[4], const double _Complex J[2], double _Complex out[2])
{
    double _Complex a = M[0] * J[0] + M[1] * J[1];
    double _Complex b = M[2] * J[0] + M[3] * J[1];
    out[0] = a, out[1] = b;
}

void mmd_rotate_min(const double from[3], const double to[3], const double v[3], double out[3])
{
    double c = v3_dot(from, to);
    if (c < -1.0 + 1e-12) {
        /* Antipodal: any half-turn about a perpendicular axis p is minimal. */
        double p[3], b[3];
        mmd_onb(from, p, b);
        double d = 2.0 * v3_dot(p, v);
        v3_set(out, d * p[0] - v[0], d * p[1] - v[1], d * p[2] - v[2]);
        return;
    }
    /* Rodrigues with the unnormalised axis w = from x to (|w| = sin, 1 + c > 0):
     * R v = c v + w x v + (w . v) w / (1 + c). */
    double w[3], wxv[3];
    v3_cross(from, to, w);
    v3_cross(w, v, wxv);
    double k = v3_dot(w, v) / (1.0 + c);
    double o[3];
    for (int i = 0; i < 3; i++) o[i] = c * v[i] + wxv[i] + k * w[i];
    out[0] = o[0], out[1] = o[1], out[2] = o[2];
}

void mmd_lobe_jones(const double k_i[3], const double n[3], const double k_s[3],
                    const double _Complex R[2], const double _Complex E_in[2],
                    double _Complex E_out[2], double b_te[3], double b_tm[3])
{
    double k_r[3], e_te[3], e_tm_i[3], e_tm_r[3];
    mmd_reflect(k_i, n, k_r);
    mmd_te_tm_basis(k_i, n, e_te, e_tm_i);
    v3_cross(e_te, k_r, e_tm_r);
    v3_normalize(e_tm_r);
    E_out[0] = R[0] * E_in[0];
    E_out[1] = R[1] * E_in[1];
    mmd_rotate_min(k_r, k_s, e_te, b_te);
    mmd_rotate_min(k_r, k_s, e_tm_r, b_tm);
}

void mmd_diffuse_jones(const double k_i[3], const double n[3], const double k_s[3],
                       const double _Complex R[2], double kx, const double _Complex E_in[2],
                       double _Complex E_out[2], double b_te[3], double b_tm[3])
{
    double M[4];
    mmd_lobe_jones(k_i, n, k_s, R, E_in, E_out, b_te, b_tm);
    mmd_xpd_matrix(kx, M);
    /* the rotation to k_s carries both basis vectors rigidly, so mixing the coefficients
     * before or after it is the same */
    double _Complex Mc[4] = {M[0], M[1], M[2], M[3]};
    mmd_jones_mul(Mc, E_out, E_out);
}
