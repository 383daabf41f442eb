/* Antenna element patterns, poses (yaw/pitch/roll frames) and the URA beam pattern in
 * direct and separable form (see mmd_physics.h, docs/physics.md). */
#include "mmd_physics.h"

#include <complex.h>
#include <math.h>
#include <string.h>

#include "phys_vec.h"

/* ------------------------------- elements -------------------------------------- */

static const char *const ant_names[] = {"iso", "dipole", "hw_dipole", "tr38901", "patch", "horn"};

static void set_cos_q(mmd_antenna *a, mmd_antenna_kind kind, double q)
{
    memset(a, 0, sizeof *a);
    a->kind = kind;
    a->q = q;
    /* integral over the front hemisphere of cos^q = 2 pi/(q+1), so G0 = 2 (q+1) makes
     * the sphere integral 4 pi exactly; half power where cos^q = 1/2. */
    a->g0 = 2.0 * (q + 1.0);
    a->hpbw_rad = 2.0 * acos(pow(0.5, 1.0 / q));
}

mmd_status mmd_antenna_patch(double q, mmd_antenna *out)
{
    if (!(q > 0 && q <= 1e4))
        return mmd_error(MMD_ERR_INVALID, "patch antenna: exponent q must be in (0, 10000] (got %g)", q);
    set_cos_q(out, MMD_ANT_PATCH, q);
    return MMD_OK;
}

mmd_status mmd_antenna_horn(double hpbw_deg, mmd_antenna *out)
{
    /* Below 0.5 deg the exponent exceeds ~7e4 and the beam is narrower than any
     * measurement grid: refuse rather than produce a needle. */
    if (!(hpbw_deg >= 0.5 && hpbw_deg < 180))
        return mmd_error(MMD_ERR_INVALID,
                         "horn antenna: half-power beamwidth must be in [0.5, 180) deg (got %g)",
                         hpbw_deg);
    double half = 0.5 * hpbw_deg * M_PI / 180.0;
    double q = log(0.5) / log(cos(half));
    set_cos_q(out, MMD_ANT_HORN, q);
    out->hpbw_rad = hpbw_deg * M_PI / 180.0;
    return MMD_OK;
}

mmd_status mmd_antenna_by_name(const char *name, mmd_antenna *out)
{
    for (int k = 0; name && k < 4; k++) {
        if (strcmp(name, ant_names[k]) == 0) {
            memset(out, 0, sizeof *out);
            out->kind = (mmd_antenna_kind)k;
            return MMD_OK;
        }
    }
    if (name && strcmp(name, "patch") == 0) return mmd_antenna_patch(MMD_PATCH_DEFAULT_Q, out);
    if (name && strcmp(name, "horn") == 0)
        return mmd_error(MMD_ERR_INVALID, "antenna 'horn' needs a half-power beamwidth (hpbw_deg)");
    return mmd_error(MMD_ERR_INVALID,
                     "unknown antenna pattern '%s' (valid: iso, dipole, hw_dipole, tr38901, patch, horn)",
                     name ? name : "(null)");
}

double mmd_antenna_gain(const mmd_antenna *a, const double u[3])
{
    switch (a->kind) {
    case MMD_ANT_ISO:
        return 1.0;
    case MMD_ANT_DIPOLE: {
        double s2 = u[0] * u[0] + u[1] * u[1]; /* sin^2 theta about local z */
        return 1.5 * s2;
    }
    case MMD_ANT_HW_DIPOLE: {
        double s2 = u[0] * u[0] + u[1] * u[1];
        if (s2 < 1e-24) return 0; /* the limit along the axis */
        double c = cos(0.5 * M_PI * fmin(fmax(u[2], -1.0), 1.0));
        return 1.643 * c * c / s2;
    }
    case MMD_ANT_TR38901: {
        double theta = acos(fmin(fmax(u[2], -1.0), 1.0)), phi = atan2(u[1], u[0]);
        const double t3db = 65.0 * M_PI / 180.0;
        double av = -fmin(12.0 * pow((theta - 0.5 * M_PI) / t3db, 2), 30.0);
        double ah = -fmin(12.0 * pow(phi / t3db, 2), 30.0);
        double adb = -fmin(-(av + ah), 30.0) + 8.0;
        return pow(10.0, adb / 10.0);
    }
    case MMD_ANT_PATCH:
    case MMD_ANT_HORN:
        return u[0] > 0 ? a->g0 * pow(u[0], a->q) : 0.0;
    }
    return 0;
}

/* Cin(2 pi) = integral_0^{2 pi} (1 - cos t)/t dt = gamma + ln(2 pi) - Ci(2 pi)
 * (composite 64-point Gauss-Legendre, stable to 1e-15; test_physics recomputes it). */
#define MMD_CIN_2PI 2.43765339305722
/* Sphere integral / 4 pi of the TR 38.901 element as Sionna defines it (composite
 * Gauss-Legendre, converged to 1e-11; Sionna's compute_gain() prints 0.65678275 from a
 * float32 rectangle rule). Its 8 dBi peak is a gain, not a directivity. */
#define MMD_TR38901_EFF 0.65679774925

double mmd_antenna_efficiency(const mmd_antenna *a)
{
    switch (a->kind) {
    case MMD_ANT_HW_DIPOLE: return 1.643 * MMD_CIN_2PI / 4.0;
    case MMD_ANT_TR38901: return MMD_TR38901_EFF;
    default: return 1.0;
    }
}

/* --------------------------------- frames -------------------------------------- */

void mmd_rotation_ypr(double yaw, double pitch, double roll, double R[9])
{
    double cy = cos(yaw), sy = sin(yaw), cp = cos(pitch), sp = sin(pitch);
    double cr = cos(roll), sr = sin(roll);
    R[0] = cy * cp, R[1] = cy * sp * sr - sy * cr, R[2] = cy * sp * cr + sy * sr;
    R[3] = sy * cp, R[4] = sy * sp * sr + cy * cr, R[5] = sy * sp * cr - cy * sr;
    R[6] = -sp, R[7] = cp * sr, R[8] = cp * cr;
}

void mmd_to_local(const double R[9], const double v[3], double out[3])
{
    double x = R[0] * v[0] + R[3] * v[1] + R[6] * v[2];
    double y = R[1] * v[0] + R[4] * v[1] + R[7] * v[2];
    double z = R[2] * v[0] + R[5] * v[1] + R[8] * v[2];
    v3_set(out, x, y, z);
}

void mmd_to_world(const double R[9], const double v[3], double out[3])
{
    double x = R[0] * v[0] + R[1] * v[1] + R[2] * v[2];
    double y = R[3] * v[0] + R[4] * v[1] + R[5] * v[2];
    double z = R[6] * v[0] + R[7] * v[1] + R[8] * v[2];
    v3_set(out, x, y, z);
}

void mmd_dir_from_az_el(double az, double el, double u[3])
{
    v3_set(u, cos(el) * cos(az), cos(el) * sin(az), sin(el));
}

void mmd_dir_to_az_el(const double u[3], double *az, double *el)
{
    *az = atan2(u[1], u[0]);
    *el = atan2(u[2], hypot(u[0], u[1])); /* asin loses accuracy near the poles */
}

/* ----------------------------------- URA --------------------------------------- */

mmd_status mmd_ura_init(mmd_ura *a, int rows, int cols, double spacing_wl, int hann)
{
    if (rows < 1 || rows > MMD_URA_MAX_DIM || cols < 1 || cols > MMD_URA_MAX_DIM)
        return mmd_error(MMD_ERR_INVALID, "array: rows and cols must be in [1, %d] (got %d x %d)",
                         MMD_URA_MAX_DIM, rows, cols);
    if (!(spacing_wl > 0 && spacing_wl <= 100))
        return mmd_error(MMD_ERR_INVALID,
                         "array: spacing_wavelengths must be in (0, 100] (got %g)", spacing_wl);
    memset(a, 0, sizeof *a);
    a->rows = rows, a->cols = cols, a->spacing_wl = spacing_wl, a->hann = hann ? 1 : 0;
    /* Hann window on the element index, w_i = sin^2(pi (i+1)/(N+1)): every element gets a
     * nonzero weight (the N+2-point window without its zero end points), and it is
     * symmetric, which keeps the array factor real. N = 1 gives w = 1. */
    for (int pass = 0; pass < 2; pass++) {
        int n = pass ? cols : rows;
        double *w = pass ? a->w_col : a->w_row, sum = 0;
        for (int i = 0; i < n; i++) {
            double s = sin(M_PI * (i + 1) / (n + 1));
            w[i] = a->hann ? s * s : 1.0;
            sum += w[i];
        }
        if (pass) a->sum_col = sum; else a->sum_row = sum;
    }
    return MMD_OK;
}

void mmd_ura_element(const mmd_ura *a, int m, double d_wl[3], double *w)
{
    int r = m / a->cols, c = m % a->cols;
    v3_set(d_wl, 0.0, (c - 0.5 * (a->cols - 1)) * a->spacing_wl,
           (0.5 * (a->rows - 1) - r) * a->spacing_wl);
    if (w) *w = a->w_row[r] * a->w_col[c];
}

double mmd_ura_beam_direct(const mmd_ura *a, const double u[3], const double u_b[3])
{
    double du[3] = {u[0] - u_b[0], u[1] - u_b[1], u[2] - u_b[2]};
    double _Complex s = 0;
    double sw = 0;
    for (int m = 0; m < a->rows * a->cols; m++) {
        double d[3], w;
        mmd_ura_element(a, m, d, &w);
        /* a_m(u) conj(a_m(u_b)) = exp(j 2 pi (u - u_b) . d / lambda), d in wavelengths */
        double ph = 2.0 * M_PI * v3_dot(du, d);
        s += w * CMPLX(cos(ph), sin(ph));
        sw += w;
    }
    double mag = cabs(s) / sw;
    return mag * mag;
}

double mmd_ura_af(const mmd_ura *a, int axis, double delta)
{
    int n = axis ? a->rows : a->cols;
    const double *w = axis ? a->w_row : a->w_col;
    double sum = axis ? a->sum_row : a->sum_col, s = 0;
    for (int i = 0; i < n; i++)
        s += w[i] * cos(2.0 * M_PI * a->spacing_wl * (i - 0.5 * (n - 1)) * delta);
    return s / sum;
}

/* Dirichlet kernel sum_{i=0}^{N-1} cos(p (i - (N-1)/2)) = sin(N p/2)/sin(p/2); at the
 * removable singularities (p = 2 pi k) the l'Hopital form N cos(N p/2)/cos(p/2) is used,
 * which is exact to O(N^2 p'^2) ~ 1e-14 within the 1e-8 band where it takes over. */
static double dirichlet(int n, double p)
{
    double s = sin(0.5 * p);
    if (fabs(s) < 1e-8) return n * cos(0.5 * n * p) / cos(0.5 * p);
    return sin(0.5 * n * p) / s;
}

double mmd_ura_af_closed(const mmd_ura *a, int axis, double delta)
{
    int n = axis ? a->rows : a->cols;
    double p = 2.0 * M_PI * a->spacing_wl * delta;
    if (!a->hann) return dirichlet(n, p) / n;
    /* w_i = 1/2 - cos(b (i+1))/2 with b = 2 pi/(N+1); about the array centre the cosine
     * term's phase is b (c+1) = pi, so it contributes +(D(p+b) + D(p-b))/4; and
     * sum_i w_i = (N+1)/2. */
    double b = 2.0 * M_PI / (n + 1);
    double s = 0.5 * dirichlet(n, p) + 0.25 * (dirichlet(n, p + b) + dirichlet(n, p - b));
    return s / (0.5 * (n + 1));
}

double mmd_ura_beam(const mmd_ura *a, const double u[3], const double u_b[3])
{
    /* Row index runs toward -z, but AF is even in delta, so the sign does not matter. */
    double fy = mmd_ura_af(a, 0, u[1] - u_b[1]);
    double fz = mmd_ura_af(a, 1, u[2] - u_b[2]);
    return fy * fy * fz * fz;
}
