/* Directional scattering lobe (mmDiff Eq. 7): exact normaliser, its polynomial form for
 * the device, evaluation, importance sampling; Lambertian diffuse lobe. The derivations
 * are in docs/physics.md. */
#include "mmd_physics.h"

#include <math.h>

#include "phys_vec.h"

/* log(C(alpha, k) 2^-alpha) for k = 0..alpha by the ratio recursion in log space:
 * nothing overflows or underflows for alpha up to 1000 (2^-1000 alone would be
 * subnormal-adjacent), and it avoids lgamma(), which writes the global signgam. */
static void log_binom_pmf(int alpha, double *lp)
{
    lp[0] = -alpha * M_LN2;
    for (int k = 1; k <= alpha; k++) lp[k] = lp[k - 1] + log((double)(alpha - k + 1) / k);
}

double mmd_lobe_norm_exact(int alpha, double cos_theta_i)
{
    if (alpha < 1 || alpha > MMD_ALPHA_R_MAX) return NAN;
    double lp[MMD_ALPHA_R_MAX + 1];
    log_binom_pmf(alpha, lp);
    double c = fmin(fmax(cos_theta_i, 0.0), 1.0);
    double s2 = (1.0 - c) * (1.0 + c);
    /* inner(k) = sum_{w=0}^{(k-1)/2} C(2w,w) s^{2w} / 4^w grows by one term per odd k;
     * the term t_w = C(2w,w)/4^w follows t_{w+1} = t_w (2w+1)/(2w+2). */
    double F = 0, inner = 0, term = 1; /* term = t_w s^{2w} of the next w */
    int w = 0;
    for (int k = 0; k <= alpha; k++) {
        double pk = exp(lp[k]);
        double Ik;
        if (k % 2 == 0) {
            Ik = 2.0 * M_PI / (k + 1);
        } else {
            while (w <= (k - 1) / 2) {
                inner += term;
                term *= s2 * (2.0 * w + 1.0) / (2.0 * w + 2.0);
                w++;
            }
            Ik = 2.0 * M_PI / (k + 1) * c * inner;
        }
        F += pk * Ik;
    }
    return F;
}

mmd_status mmd_lobe_coeffs(int alpha, double *A, double *coef, int *ncoef)
{
    if (alpha < 1 || alpha > MMD_ALPHA_R_MAX)
        return mmd_error(MMD_ERR_INVALID, "lobe: alpha_r must be an integer in [1, %d] (got %d)",
                         MMD_ALPHA_R_MAX, alpha);
    double lp[MMD_ALPHA_R_MAX + 1];
    log_binom_pmf(alpha, lp);
    double a = 0;
    for (int k = 0; k <= alpha; k += 2) a += exp(lp[k]) * 2.0 * M_PI / (k + 1);
    /* c_w = t_w * sum over odd k >= 2w+1 of p_k 2 pi/(k+1): a suffix sum over odd k,
     * accumulated from the top so the small tail terms are added first. */
    int n = MMD_LOBE_NCOEF(alpha);
    double tail = 0;
    int kmax = alpha % 2 ? alpha : alpha - 1;
    for (int w = n - 1; w >= 0; w--) {
        /* odd k with (k-1)/2 == w, i.e. k = 2w+1, joins the suffix at step w */
        for (int k = kmax; k >= 2 * w + 1; k -= 2) tail += exp(lp[k]) * 2.0 * M_PI / (k + 1);
        kmax = 2 * w - 1;
        coef[w] = tail;
    }
    double t = 1;
    for (int w = 0; w < n; w++) {
        coef[w] *= t;
        t *= (2.0 * w + 1.0) / (2.0 * w + 2.0);
    }
    *A = a;
    *ncoef = n;
    return MMD_OK;
}

int mmd_lobe_ncoef_needed(double A, const double *coef, int ncoef, double rel_tol)
{
    /* F >= A and 0 <= cos, s^2 <= 1, so dropping coef[n..] costs at most their sum. */
    double tail = 0;
    int n = ncoef;
    while (n > 0 && tail + coef[n - 1] <= rel_tol * A) tail += coef[--n];
    return n;
}

double mmd_lobe_norm_poly(double A, const double *coef, int ncoef, double cos_theta_i)
{
    double c = fmin(fmax(cos_theta_i, 0.0), 1.0);
    double s2 = (1.0 - c) * (1.0 + c), p = 0;
    for (int w = ncoef - 1; w >= 0; w--) p = p * s2 + coef[w];
    return A + c * p;
}

float mmd_lobe_norm_poly_f(float A, const float *coef, int ncoef, float cos_theta_i)
{
    float c = fminf(fmaxf(cos_theta_i, 0.0f), 1.0f);
    float s2 = (1.0f - c) * (1.0f + c), p = 0.0f;
    for (int w = ncoef - 1; w >= 0; w--) p = p * s2 + coef[w];
    return A + c * p;
}

double mmd_lobe_f(int alpha, double F, const double n[3], const double k_r[3], const double k_s[3])
{
    if (!(v3_dot(k_s, n) > 0)) return 0;
    double x = fmin(fmax(0.5 * (1.0 + v3_dot(k_r, k_s)), 0.0), 1.0);
    return pow(x, alpha) / F;
}

double mmd_lobe_pdf_sphere(int alpha, const double k_r[3], const double k_s[3])
{
    double x = fmin(fmax(0.5 * (1.0 + v3_dot(k_r, k_s)), 0.0), 1.0);
    return (alpha + 1) / (4.0 * M_PI) * pow(x, alpha);
}

int mmd_lobe_sample(int alpha, const double k_r[3], const double n[3], double u1, double u2,
                    double k_s[3])
{
    /* x = (1 + cos gamma)/2 has density (alpha+1) x^alpha on [0,1]: inverse CDF
     * x = v^(1/(alpha+1)) with v = 1 - u1 in (0,1]. 1 - x is formed with expm1 so that a
     * narrow lobe (alpha ~ 1000, 1 - x ~ 1e-6) keeps its full relative precision. */
    double lx = log1p(-u1) / (alpha + 1);
    double omx = -expm1(lx), x = exp(lx);
    double cg = 1.0 - 2.0 * omx, sg = 2.0 * sqrt(fmax(x * omx, 0.0));
    double phi = 2.0 * M_PI * u2, t[3], b[3];
    mmd_onb(k_r, t, b);
    double cp = cos(phi) * sg, sp = sin(phi) * sg;
    for (int i = 0; i < 3; i++) k_s[i] = cp * t[i] + sp * b[i] + cg * k_r[i];
    v3_normalize(k_s);
    return v3_dot(k_s, n) > 0;
}

double mmd_lobe_weight(int alpha, double F) { return 4.0 * M_PI / ((alpha + 1) * F); }

double mmd_diffuse_f(const double n[3], const double k_s[3])
{
    double c = v3_dot(n, k_s);
    return c > 0 ? c / M_PI : 0;
}

void mmd_diffuse_sample(const double n[3], double u1, double u2, double k_s[3])
{
    /* Malley: uniform on the unit disc, lifted to the hemisphere, gives cos/pi. */
    double r = sqrt(u1), phi = 2.0 * M_PI * u2, t[3], b[3];
    double z = sqrt(fmax(1.0 - u1, 0.0)), x = r * cos(phi), y = r * sin(phi);
    mmd_onb(n, t, b);
    for (int i = 0; i < 3; i++) k_s[i] = x * t[i] + y * b[i] + z * n[i];
    v3_normalize(k_s);
}
