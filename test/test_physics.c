/* Host physics: ITU materials, Fresnel half-space/slab, Jones bookkeeping, the directional
 * lobe (normalisation by independent quadrature, polynomial form, float error, sampler
 * chi-square, energy), Lambertian lobe, antenna patterns, poses, URA beam, Theorem 1. */
#include <complex.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mmd_physics.h"
#include "mmd_test.h"

#define DEG (M_PI / 180.0)

static double rel(double a, double b) { return fabs(a - b) / fabs(b); }

static double dot3(const double a[3], const double b[3]) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

static double cnorm2(const double _Complex *v, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += creal(v[i] * conj(v[i]));
    return s;
}

/* ---------------------------------------------------------------- quadrature tools */

static double gl_x[1024], gl_w[1024];
static int gl_n;

static void gl_use(int n)
{
    if (gl_n != n) mmd_gauss_legendre(n, gl_x, gl_w), gl_n = n;
}

/* Adaptive Gauss-Legendre (8 vs 16 nodes) of f on [a, b] to absolute tolerance tol. */
typedef double (*fn1)(double, void *);
static double gl_fixed(fn1 f, void *ctx, double a, double b, int n)
{
    double x[16], w[16], s = 0;
    mmd_gauss_legendre(n, x, w);
    for (int i = 0; i < n; i++) s += w[i] * f(a + 0.5 * (b - a) * (x[i] + 1), ctx);
    return 0.5 * (b - a) * s;
}

static double adapt(fn1 f, void *ctx, double a, double b, double tol, int depth)
{
    /* tol is split with the interval; the relative floor keeps round-off (acos near a
     * kink amplifies it) from forcing
     * endless subdivision, the depth cap bounds the chain that chases a kink */
    double c8 = gl_fixed(f, ctx, a, b, 8), c16 = gl_fixed(f, ctx, a, b, 16);
    if (fabs(c16 - c8) <= fmax(tol, 1e-12 * fabs(c16)) || depth > 35) return c16;
    double m = 0.5 * (a + b);
    return adapt(f, ctx, a, m, 0.5 * tol, depth + 1) + adapt(f, ctx, m, b, 0.5 * tol, depth + 1);
}

/* ------------------------------------------------------------------- materials */

static void test_materials(void)
{
    mmd_material m;
    CHECK(mmd_material_itu("concrete", 28e9, &m) == MMD_OK, "concrete 28 GHz: %s", mmd_last_error());
    CHECK_NEAR(m.eps_r, 5.24, 1e-4 * 5.24, "concrete eps_r");
    CHECK_NEAR(m.sigma_s_per_m, 0.62605, 1e-4 * 0.62605, "concrete sigma at 28 GHz");
    double _Complex eta = mmd_material_eta(&m, 28e9);
    CHECK_NEAR(cimag(eta), -m.sigma_s_per_m / (8.8541878128e-12 * 2 * M_PI * 28e9), 1e-12, "eta imag");
    CHECK(creal(eta) == m.eps_r, "eta real");

    const char *names[] = {"vacuum", "concrete", "brick", "plasterboard", "wood", "glass",
                           "ceiling_board", "chipboard", "plywood", "marble", "floorboard",
                           "metal", "very_dry_ground", "medium_dry_ground", "wet_ground"};
    CHECK(mmd_material_itu_count() == 15, "15 ITU materials (got %d)", mmd_material_itu_count());
    for (int i = 0; i < 15; i++) {
        CHECK(mmd_material_itu_name(i) && !strcmp(mmd_material_itu_name(i), names[i]),
              "ITU name %d", i);
        double f = !strcmp(names[i], "floorboard") ? 60e9 : 5e9; /* inside every range */
        CHECK(mmd_material_itu(names[i], f, &m) == MMD_OK, "%s at %g: %s", names[i], f,
              mmd_last_error());
        CHECK(mmd_material_validate(&m, names[i]) == MMD_OK, "%s defaults valid: %s", names[i],
              mmd_last_error());
    }
    /* spot values (ITU-R P.2040-3 Table 3 by hand) */
    mmd_material_itu("medium_dry_ground", 5e9, &m);
    CHECK_NEAR(m.eps_r, 15.0 * pow(5, -0.1), 1e-12, "medium dry ground eps");
    CHECK_NEAR(m.sigma_s_per_m, 0.035 * pow(5, 1.63), 1e-12, "medium dry ground sigma");
    mmd_material_itu("wet_ground", 2e9, &m);
    CHECK_NEAR(m.eps_r, 30.0 * pow(2, -0.4), 1e-12, "wet ground eps");
    mmd_material_itu("metal", 60e9, &m);
    CHECK(m.eps_r == 1 && m.sigma_s_per_m == 1e7, "metal");
    mmd_material_itu("plywood", 28e9, &m);
    CHECK(m.sigma_s_per_m == 0.33, "plywood sigma constant");
    CHECK(mmd_material_itu("glass", 300e9, &m) == MMD_OK && fabs(m.eps_r - 5.79) < 1e-12,
          "glass second band (220-450 GHz)");
    /* ends inclusive */
    CHECK(mmd_material_itu("brick", 40e9, &m) == MMD_OK, "brick at 40 GHz (end inclusive)");
    CHECK(mmd_material_itu("brick", 1e9, &m) == MMD_OK, "brick at 1 GHz (end inclusive)");
    CHECK(mmd_material_itu("wood", 1e6, &m) == MMD_OK, "wood at 1 MHz (end inclusive)");
    CHECK(mmd_material_itu("concrete", 100e9, &m) == MMD_OK, "concrete at 100 GHz");
    /* out of range: the message names material, range and frequency */
    CHECK(mmd_material_itu("brick", 60e9, &m) == MMD_ERR_INVALID, "brick at 60 GHz refused");
    const char *e = mmd_last_error();
    CHECK(strstr(e, "brick") && strstr(e, "1-40 GHz") && strstr(e, "60 GHz"), "message: %s", e);
    CHECK(mmd_material_itu("glass", 150e9, &m) == MMD_ERR_INVALID, "glass between its bands");
    e = mmd_last_error();
    CHECK(strstr(e, "0.1-100 GHz") && strstr(e, "220-450 GHz") && strstr(e, "150 GHz"), "message: %s", e);
    CHECK(mmd_material_itu("brick", 40.001e9, &m) == MMD_ERR_INVALID, "brick just above 40 GHz");
    CHECK(mmd_material_itu("unobtainium", 28e9, &m) == MMD_ERR_INVALID, "unknown name");
    e = mmd_last_error();
    CHECK(strstr(e, "unobtainium") && strstr(e, "concrete") && strstr(e, "wet_ground"), "message: %s", e);

    /* validation names the field */
    mmd_material ok = {5, 0.1, 0.3, 0.2, 0.1, 50}, bad;
    CHECK(mmd_material_validate(&ok, "wall") == MMD_OK, "valid explicit material");
    struct { const char *field; mmd_material m; } cases[] = {
        {"eps_r", {0.5, 0, 0, 0, 0, 1}},          {"eps_r", {NAN, 0, 0, 0, 0, 1}},
        {"sigma_s_per_m", {2, -1, 0, 0, 0, 1}},   {"scattering", {2, 0, 1.5, 0, 0, 1}},
        {"xpd", {2, 0, 0, -0.1, 0, 1}},           {"thickness_m", {2, 0, 0, 0, -1, 1}},
        {"alpha_r", {2, 0, 0, 0, 0, 0}},          {"alpha_r", {2, 0, 0, 0, 0, 1001}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bad = cases[i].m;
        CHECK(mmd_material_validate(&bad, "material 'wall'") == MMD_ERR_INVALID, "case %zu", i);
        e = mmd_last_error();
        CHECK(strstr(e, cases[i].field) && strstr(e, "wall"), "message names %s: %s", cases[i].field, e);
    }
    bad = ok, bad.thickness_m = 0;
    CHECK(mmd_material_validate(&bad, "x") == MMD_OK, "thickness 0 = half-space is valid");
}

/* --------------------------------------------------------------------- Fresnel */

static void test_fresnel(void)
{
    mmd_material m;
    mmd_material_itu("concrete", 28e9, &m);
    double _Complex eta = mmd_material_eta(&m, 28e9), r[2], R[2], T[2];
    const double ang[3] = {0, 45, 60}, te[3] = {0.39301, 0.51075, 0.61913}, tm[3] = {0.39301, 0.26087, 0.10738};
    for (int i = 0; i < 3; i++) {
        mmd_fresnel_halfspace(eta, cos(ang[i] * DEG), r);
        CHECK(rel(cabs(r[0]), te[i]) < 1e-4, "|r_TE| at %g deg: %.6f vs %.5f", ang[i], cabs(r[0]), te[i]);
        CHECK(rel(cabs(r[1]), tm[i]) < 1e-4, "|r_TM| at %g deg: %.6f vs %.5f", ang[i], cabs(r[1]), tm[i]);
    }
    mmd_fresnel_slab(eta, 1.0, 0.1, mmd_wavelength(28e9), R, T);
    CHECK(rel(cabs(R[0]), 0.39300) < 1e-4 && rel(cabs(R[1]), 0.39300) < 1e-4, "slab |R| %.6f", cabs(R[0]));
    /* 0.00492 has three significant digits: hold |T| to half a unit of the last one */
    CHECK(fabs(cabs(T[0]) - 0.00492) <= 0.5e-5, "slab |T| %.7f rounds to 0.00492", cabs(T[0]));
    printf("Fresnel concrete 28 GHz: slab d = 0.1 m |R| %.6f |T| %.7f; FSPL 10 m %.4f dB\n",
           cabs(R[0]), cabs(T[0]), mmd_db(mmd_free_space_gain(mmd_wavelength(28e9), 10.0)));
    CHECK_NEAR(mmd_db(mmd_free_space_gain(mmd_wavelength(28e9), 10.0)), -81.391, 5e-4, "FSPL 10 m 28 GHz");

    /* a lossless slab conserves energy, a half-space transmits nothing */
    for (double th = 0; th < 89.5; th += 10) {
        mmd_fresnel_slab(4.0 + 0.0 * I, cos(th * DEG), 0.0123, 0.005, R, T);
        for (int p = 0; p < 2; p++)
            CHECK(fabs(creal(R[p] * conj(R[p])) + creal(T[p] * conj(T[p])) - 1.0) < 1e-12,
                  "lossless slab |R|^2+|T|^2 (theta %g, pol %d)", th, p);
        mmd_fresnel_slab(eta, cos(th * DEG), 0, 0.01, R, T);
        mmd_fresnel_halfspace(eta, cos(th * DEG), r);
        CHECK(R[0] == r[0] && R[1] == r[1] && T[0] == 0 && T[1] == 0, "thickness 0 = half-space");
    }
    /* thick lossy slab -> half-space; grazing -> |r| = 1; metal ~ perfect */
    mmd_fresnel_slab(eta, cos(30 * DEG), 5.0, mmd_wavelength(28e9), R, T);
    mmd_fresnel_halfspace(eta, cos(30 * DEG), r);
    CHECK(cabs(R[0] - r[0]) < 1e-12 && cabs(T[0]) < 1e-12, "thick slab = half-space");
    mmd_fresnel_halfspace(eta, 0.0, r);
    CHECK_NEAR(cabs(r[0]), 1.0, 1e-12, "grazing TE");
    CHECK_NEAR(cabs(r[1]), 1.0, 1e-12, "grazing TM");
    mmd_material_itu("metal", 28e9, &m);
    mmd_material_fresnel(&m, 28e9, cos(45 * DEG), R, T);
    CHECK(cabs(R[0] + 1.0) < 3e-3 && cabs(R[1] - 1.0) < 3e-3, "metal r_TE ~ -1, r_TM ~ +1");
    CHECK(cabs(T[0]) < 1e-30, "metal slab is opaque");
    CHECK(isinf(mmd_db(0)) && mmd_db(0) < 0, "db(0) = -inf");
}

/* ----------------------------------------------------------------------- Jones */

static void random_dir(mmd_rng *g, double u[3])
{
    double z = 2 * mmd_rng_uniform(g) - 1, p = 2 * M_PI * mmd_rng_uniform(g), s = sqrt(1 - z * z);
    u[0] = s * cos(p), u[1] = s * sin(p), u[2] = z;
}

static void test_jones(void)
{
    mmd_rng g;
    mmd_rng_seed(&g, 7, 1);
    const double n[3] = {0, 0, 1};
    for (int it = 0; it < 200; it++) {
        double ki[3], kr[3], ks[3], ete[3], etm[3];
        random_dir(&g, ki);
        if (ki[2] > 0) ki[2] = -ki[2]; /* coming down onto the z = 0 surface */
        mmd_reflect(ki, n, kr);
        CHECK(fabs(kr[2] + ki[2]) < 1e-15 && fabs(kr[0] - ki[0]) < 1e-15, "reflect");
        mmd_te_tm_basis(ki, n, ete, etm);
        CHECK(fabs(dot3(ete, ete) - 1) < 1e-12 && fabs(dot3(etm, etm) - 1) < 1e-12 &&
                  fabs(dot3(ete, etm)) < 1e-12 && fabs(dot3(ete, ki)) < 1e-12 &&
                  fabs(dot3(etm, ki)) < 1e-12 && fabs(dot3(ete, n)) < 1e-12,
              "TE/TM basis orthonormal, transverse, TE parallel to the surface");
        /* minimal rotation */
        random_dir(&g, ks);
        double v[3], out[3], w[3];
        mmd_rotate_min(kr, ks, kr, out);
        CHECK(fabs(out[0] - ks[0]) + fabs(out[1] - ks[1]) + fabs(out[2] - ks[2]) < 1e-12, "rotate_min from->to");
        random_dir(&g, v);
        mmd_rotate_min(kr, ks, v, out);
        CHECK(fabs(dot3(out, out) - 1) < 1e-12, "rotation keeps length");
        /* the axis kr x ks is fixed */
        w[0] = kr[1] * ks[2] - kr[2] * ks[1], w[1] = kr[2] * ks[0] - kr[0] * ks[2], w[2] = kr[0] * ks[1] - kr[1] * ks[0];
        mmd_rotate_min(kr, ks, w, out);
        CHECK(fabs(out[0] - w[0]) + fabs(out[1] - w[1]) + fabs(out[2] - w[2]) < 1e-12, "axis fixed");
        /* field through the lobe: energy Gamma^2 |E|^2, transverse basis, specular limit */
        double _Complex Rc[2] = {0.3 - 0.2 * I, -0.5 + 0.1 * I};
        double _Complex E[2] = {mmd_rng_uniform(&g) - 0.5 + I * (mmd_rng_uniform(&g) - 0.5),
                                mmd_rng_uniform(&g) - 0.5 + I * (mmd_rng_uniform(&g) - 0.5)};
        double _Complex Eo[2];
        double bte[3], btm[3];
        if (ks[2] < 0) ks[2] = -ks[2];
        mmd_lobe_jones(ki, n, ks, Rc, E, Eo, bte, btm);
        CHECK_NEAR(cnorm2(Eo, 2), mmd_reflection_energy(Rc, E) * cnorm2(E, 2), 1e-12, "lobe Jones energy");
        CHECK(fabs(dot3(bte, ks)) < 1e-12 && fabs(dot3(btm, ks)) < 1e-12 && fabs(dot3(bte, btm)) < 1e-12,
              "lobe basis transverse to k_s");
        double _Complex Ed[2];
        mmd_diffuse_jones(ki, n, ks, Rc, 0.4, E, Ed, bte, btm);
        CHECK_NEAR(cnorm2(Ed, 2), cnorm2(Eo, 2), 1e-12, "diffuse Jones keeps the energy");
        mmd_lobe_jones(ki, n, kr, Rc, E, Eo, bte, btm);
        double etr[3] = {ete[1] * kr[2] - ete[2] * kr[1], ete[2] * kr[0] - ete[0] * kr[2], ete[0] * kr[1] - ete[1] * kr[0]};
        CHECK(fabs(bte[0] - ete[0]) + fabs(bte[1] - ete[1]) + fabs(bte[2] - ete[2]) < 1e-12 &&
                  fabs(btm[0] - etr[0]) + fabs(btm[1] - etr[1]) + fabs(btm[2] - etr[2]) < 1e-12,
              "k_s = k_r gives the specular basis");
        /* basis change between two transverse bases of the same k is a rotation */
        double W[4], t2[3], b2[3];
        mmd_onb(ki, t2, b2);
        mmd_basis_change(t2, b2, ete, etm, W);
        CHECK(fabs(W[0] * W[0] + W[2] * W[2] - 1) < 1e-12 && fabs(W[0] * W[1] + W[2] * W[3]) < 1e-12,
              "basis change orthogonal");
    }
    /* perfect conductor (r_TE = -1, r_TM = +1 in this basis convention): the tangential
     * total field vanishes at the surface, at every incidence -> the convention is right */
    for (double th = 0; th < 89; th += 11) {
        double ki[3] = {sin(th * DEG), 0, -cos(th * DEG)}, ete[3], etm[3], kr[3];
        mmd_reflect(ki, n, kr);
        mmd_te_tm_basis(ki, n, ete, etm);
        double _Complex Rc[2] = {-1, 1}, E[2] = {0.6 + 0.2 * I, -0.3 + 0.7 * I}, Eo[2];
        double bte[3], btm[3];
        mmd_lobe_jones(ki, n, kr, Rc, E, Eo, bte, btm);
        for (int c = 0; c < 2; c++) { /* x and y components */
            double _Complex tot = E[0] * ete[c] + E[1] * etm[c] + Eo[0] * bte[c] + Eo[1] * btm[c];
            CHECK(cabs(tot) < 1e-12, "PEC tangential field at %g deg, component %d: %g", th, c, cabs(tot));
        }
    }
    /* reflection energy, K_x matrix */
    double _Complex Rc[2] = {0.5, 0.2 * I}, E[2] = {1, 1};
    CHECK_NEAR(mmd_reflection_energy(Rc, E), (0.25 + 0.04) / 2, 1e-15, "Gamma^2");
    double M[4];
    mmd_xpd_matrix(0.3, M);
    CHECK_NEAR(M[0] * M[0] + M[2] * M[2], 1, 1e-15, "K_x matrix unitary");
    CHECK_NEAR(M[1], -sqrt(0.3), 1e-15, "K_x matrix layout");
    double _Complex Mc[4] = {M[0], M[1], M[2], M[3]}, J[2] = {1, 0}, Jo[2];
    mmd_jones_mul(Mc, J, Jo);
    CHECK_NEAR(creal(Jo[1] * conj(Jo[1])), 0.3, 1e-15, "K_x moves K_x of the power across");
    /* antipodal rotation */
    double a[3] = {0, 0, 1}, b[3] = {0, 0, -1}, o[3];
    mmd_rotate_min(a, b, a, o);
    CHECK(fabs(o[2] + 1) < 1e-15, "antipodal rotation");
}

/* ------------------------------------------------------------------------ lobe */

typedef struct lobe_ctx { int alpha; double th; } lobe_ctx;

/* integrand over gamma (angle from k_r) with the exact visible arc in phi */
static double lobe_gamma_integrand(double gam, void *p)
{
    const lobe_ctx *c = p;
    double cg = cos(gam), sg = sin(gam), ct = cos(c->th), st = sin(c->th);
    double arc;
    double lhs = sg * st, rhs = cg * ct; /* visible where lhs cos(phi) < rhs */
    if (lhs <= 0) arc = rhs > 0 ? 2 * M_PI : 0;
    else {
        double q = rhs / lhs;
        arc = q >= 1 ? 2 * M_PI : (q <= -1 ? 0 : 2 * M_PI - 2 * acos(q));
    }
    return pow(0.5 * (1 + cg), c->alpha) * arc * sg;
}

static double lobe_integral_gamma(int alpha, double th)
{
    lobe_ctx c = {alpha, th};
    /* the visible arc has kinks at gamma = pi/2 -+ theta: split there */
    double k1 = 0.5 * M_PI - th, k2 = 0.5 * M_PI + th;
    double s = 0;
    double tol = 1e-13 * 4 * M_PI / (alpha + 1); /* ~1e-13 of the integral */
    if (k1 > 0) s += adapt(lobe_gamma_integrand, &c, 0, k1, tol, 0);
    s += adapt(lobe_gamma_integrand, &c, fmax(k1, 0), fmin(k2, M_PI), tol, 0);
    return s / mmd_lobe_norm_exact(alpha, cos(th));
}

/* independent: tensor Gauss-Legendre over the hemisphere in (theta, phi) about n */
static double lobe_integral_hemi(int alpha, double th)
{
    const int PT = 48, PP = 96, NG = 12;
    gl_use(NG);
    double kr[3] = {sin(th), 0, cos(th)}, n[3] = {0, 0, 1}, F = mmd_lobe_norm_exact(alpha, cos(th));
    double s = 0, ht = 0.5 * M_PI / PT, hp = 2 * M_PI / PP;
    for (int a = 0; a < PT; a++)
        for (int i = 0; i < NG; i++) {
            double t = a * ht + 0.5 * ht * (gl_x[i] + 1), row = 0;
            for (int b = 0; b < PP; b++)
                for (int j = 0; j < NG; j++) {
                    double p = -M_PI + b * hp + 0.5 * hp * (gl_x[j] + 1);
                    double ks[3] = {sin(t) * cos(p), sin(t) * sin(p), cos(t)};
                    row += gl_w[j] * 0.5 * hp * mmd_lobe_f(alpha, F, n, kr, ks);
                }
            s += gl_w[i] * 0.5 * ht * sin(t) * row;
        }
    return s;
}

static double chi2_pvalue(double chi2, int dof)
{
    /* Wilson-Hilferty: (chi2/k)^(1/3) is ~ normal with mean 1 - 2/(9k), var 2/(9k) */
    double k = dof, z = (cbrt(chi2 / k) - (1 - 2 / (9 * k))) / sqrt(2 / (9 * k));
    return 0.5 * erfc(z / M_SQRT2);
}

static void test_lobe(void)
{
    /* polynomial form == SPEC double sum */
    static double coef[MMD_LOBE_NCOEF_MAX];
    static float coeff[MMD_LOBE_NCOEF_MAX];
    double worst_poly = 0;
    for (int alpha = 1; alpha <= MMD_ALPHA_R_MAX; alpha += (alpha < 420 ? 1 : 97)) {
        double A;
        int nc;
        CHECK(mmd_lobe_coeffs(alpha, &A, coef, &nc) == MMD_OK && nc == MMD_LOBE_NCOEF(alpha), "coeffs %d", alpha);
        for (int w = 0; w < nc; w++) CHECK(coef[w] >= 0, "coef >= 0 (alpha %d, w %d)", alpha, w);
        for (double th = 0; th <= 90.0; th += 7.5) {
            double e = mmd_lobe_norm_exact(alpha, cos(th * DEG)), p = mmd_lobe_norm_poly(A, coef, nc, cos(th * DEG));
            worst_poly = fmax(worst_poly, rel(p, e));
        }
        CHECK(rel(mmd_lobe_norm_exact(alpha, 0.0), A) < 1e-13, "F(90 deg) = A (alpha %d)", alpha);
    }
    CHECK(worst_poly < 1e-12, "polynomial F vs SPEC sum: worst rel %.3g", worst_poly);
    double A;
    int nc;
    CHECK(mmd_lobe_coeffs(0, &A, coef, &nc) == MMD_ERR_INVALID, "alpha 0 refused");
    CHECK(mmd_lobe_coeffs(1001, &A, coef, &nc) == MMD_ERR_INVALID, "alpha 1001 refused");
    /* F at normal incidence = full-sphere integral minus the invisible cap; alpha = 1:
     * integral of (1 + cos)/2 over the hemisphere = pi + pi/2 */
    CHECK_NEAR(mmd_lobe_norm_exact(1, 1.0), 1.5 * M_PI, 1e-14, "F_1(0)");
    CHECK_NEAR(mmd_lobe_norm_exact(1, 0.0), M_PI, 1e-14, "F_1(90)");

    /* the lobe integrates to 1: two independent quadratures */
    const int alphas[] = {1, 10, 50, 120, 400, 1000};
    const double ths[] = {0, 30, 60, 80, 89};
    double worst_g = 0, worst_h = 0;
    for (int a = 0; a < 6; a++)
        for (int t = 0; t < 5; t++) {
            double ig = lobe_integral_gamma(alphas[a], ths[t] * DEG);
            double ih = lobe_integral_hemi(alphas[a], ths[t] * DEG);
            CHECK(fabs(ig - 1) < 1e-4, "lobe integral (gamma quadrature) alpha %d theta %g: %.12f", alphas[a], ths[t], ig);
            CHECK(fabs(ih - 1) < 1e-4, "lobe integral (hemisphere quadrature) alpha %d theta %g: %.12f", alphas[a], ths[t], ih);
            worst_g = fmax(worst_g, fabs(ig - 1)), worst_h = fmax(worst_h, fabs(ih - 1));
        }
    printf("lobe integral - 1: worst %.2e (gamma-centred adaptive), %.2e (hemisphere tensor GL)\n", worst_g, worst_h);

    /* float Horner vs exact double, alpha 1..400 */
    double worst_f = 0, worst_f_in = 0;
    int worst_a = 0;
    for (int alpha = 1; alpha <= 400; alpha++) {
        mmd_lobe_coeffs(alpha, &A, coef, &nc);
        for (int w = 0; w < nc; w++) coeff[w] = (float)coef[w];
        for (int k = 0; k <= 900; k++) {
            double th = k * 0.1 * DEG;
            float cf = (float)cos(th);
            double e_at_float = mmd_lobe_norm_exact(alpha, (double)cf); /* same input */
            double e_true = mmd_lobe_norm_poly(A, coef, nc, cos(th));
            float f = mmd_lobe_norm_poly_f((float)A, coeff, nc, cf);
            double r1 = rel(f, e_at_float), r2 = rel(f, e_true);
            if (r1 > worst_f) worst_f = r1, worst_a = alpha;
            worst_f_in = fmax(worst_f_in, r2);
        }
    }
    printf("lobe F float Horner vs double, alpha 1..400, theta 0..90 step 0.1: max rel %.2e "
           "(alpha %d), %.2e including cos(theta) rounded to float\n", worst_f, worst_a, worst_f_in);
    CHECK(worst_f < 2e-6, "float F error %.3g", worst_f);
    CHECK(worst_f_in < 1e-5, "float F error with float input %.3g", worst_f_in);

    /* truncation helper */
    mmd_lobe_coeffs(400, &A, coef, &nc);
    int need = mmd_lobe_ncoef_needed(A, coef, nc, 1e-8);
    CHECK(need > 0 && need < nc, "alpha 400 needs %d of %d coefficients for 1e-8", need, nc);
    for (double th = 0; th <= 90; th += 5)
        CHECK(rel(mmd_lobe_norm_poly(A, coef, need, cos(th * DEG)), mmd_lobe_norm_poly(A, coef, nc, cos(th * DEG))) <= 1e-8,
              "truncated F at %g", th);

    /* sampler: chi-square over (x^(alpha+1), phi) bins, equiprobable under the pdf */
    const int sa[] = {1, 10, 120, 400, 1000};
    for (int a = 0; a < 5; a++) {
        int alpha = sa[a];
        enum { NV = 20, NP = 16, NS = 200000 };
        static long cnt[NV][NP];
        memset(cnt, 0, sizeof cnt);
        double th = 30 * DEG, kr[3] = {sin(th), 0, cos(th)}, n[3] = {0, 0, 1};
        /* own frame around k_r, different from the sampler's */
        double t[3] = {cos(th), 0, -sin(th)}, b[3] = {0, 1, 0};
        mmd_rng g;
        mmd_rng_seed(&g, 1234, (uint64_t)alpha);
        for (int s = 0; s < NS; s++) {
            double ks[3];
            mmd_lobe_sample(alpha, kr, n, mmd_rng_uniform(&g), mmd_rng_uniform(&g), ks);
            double x = 0.5 * (1 + dot3(kr, ks));
            double v = pow(x, alpha + 1);
            double ph = atan2(dot3(ks, b), dot3(ks, t)) + M_PI;
            int iv = (int)(v * NV), ip = (int)(ph / (2 * M_PI) * NP);
            if (iv >= NV) iv = NV - 1;
            if (ip >= NP) ip = NP - 1;
            cnt[iv][ip]++;
        }
        double chi2 = 0, ex = (double)NS / (NV * NP);
        for (int i = 0; i < NV; i++)
            for (int j = 0; j < NP; j++) chi2 += (cnt[i][j] - ex) * (cnt[i][j] - ex) / ex;
        double p = chi2_pvalue(chi2, NV * NP - 1);
        CHECK(p > 1e-3, "lobe sampler chi-square alpha %d: chi2 %.1f dof %d p %.3g", alpha, chi2, NV * NP - 1, p);
        /* sharper test of the narrow core (x close to 1): bins in gamma from the CDF */
        if (alpha == 1000) {
            long below = 0;
            mmd_rng_seed(&g, 99, 5);
            double g50 = 2 * acos(sqrt(pow(0.5, 1.0 / (alpha + 1)))); /* median gamma */
            for (int s = 0; s < 100000; s++) {
                double ks[3];
                mmd_lobe_sample(alpha, kr, n, mmd_rng_uniform(&g), mmd_rng_uniform(&g), ks);
                below += acos(fmin(1, dot3(kr, ks))) < g50;
            }
            CHECK(labs(below - 50000) < 5 * sqrt(25000.0), "median gamma alpha 1000: %ld of 100000", below);
        }
    }

    /* f/pdf is the per-interaction constant; MC energy estimate = 1 */
    const int ea[] = {1, 10, 50, 120, 400};
    const double et[] = {0, 60, 80, 89};
    for (int a = 0; a < 5; a++)
        for (int t = 0; t < 4; t++) {
            int alpha = ea[a];
            double th = et[t] * DEG, kr[3] = {sin(th), 0, cos(th)}, n[3] = {0, 0, 1};
            double F = mmd_lobe_norm_exact(alpha, cos(th)), W = mmd_lobe_weight(alpha, F);
            mmd_rng g;
            mmd_rng_seed(&g, 42, 100 + a * 10 + t);
            const int N = 200000;
            double s = 0, s2 = 0, worst = 0;
            for (int i = 0; i < N; i++) {
                double ks[3];
                int up = mmd_lobe_sample(alpha, kr, n, mmd_rng_uniform(&g), mmd_rng_uniform(&g), ks);
                double wgt = 0;
                if (up) {
                    wgt = mmd_lobe_f(alpha, F, n, kr, ks) / mmd_lobe_pdf_sphere(alpha, kr, ks);
                    if (isfinite(wgt)) worst = fmax(worst, rel(wgt, W));
                    wgt = W;
                }
                s += wgt, s2 += wgt * wgt;
            }
            double mean = s / N, sd = sqrt(fmax(s2 / N - mean * mean, 0) / N);
            CHECK(worst < 1e-9, "f/pdf constant (alpha %d theta %g): %.3g", alpha, et[t], worst);
            CHECK(fabs(mean - 1) < 4 * sd + 1e-12, "energy alpha %d theta %g: %.5f +- %.5f", alpha, et[t], mean, sd);
        }

    /* Lambertian: integral 1, sampler uniform in (cos^2, phi), f/pdf = 1 */
    {
        double n[3] = {0.6, 0, 0.8}, s = 0;
        gl_use(32);
        for (int i = 0; i < 32; i++)
            for (int j = 0; j < 64; j++) {
                double t = 0.5 * M_PI * 0.5 * (gl_x[i] + 1), p = M_PI * ((j + 0.5) / 32.0 - 1);
                double loc[3] = {sin(t) * cos(p), sin(t) * sin(p), cos(t)}, tt[3], bb[3], ks[3];
                mmd_onb(n, tt, bb);
                for (int c = 0; c < 3; c++) ks[c] = loc[0] * tt[c] + loc[1] * bb[c] + loc[2] * n[c];
                s += gl_w[i] * 0.25 * M_PI * (2 * M_PI / 64) * sin(t) * mmd_diffuse_f(n, ks);
            }
        CHECK_NEAR(s, 1.0, 1e-10, "Lambertian integrates to 1");
        enum { NV = 16, NP = 16, NS = 100000 };
        static long cnt[NV][NP];
        memset(cnt, 0, sizeof cnt);
        mmd_rng g;
        mmd_rng_seed(&g, 5, 5);
        double tt[3], bb[3];
        mmd_onb(n, tt, bb);
        double worst = 0;
        for (int i = 0; i < NS; i++) {
            double ks[3];
            mmd_diffuse_sample(n, mmd_rng_uniform(&g), mmd_rng_uniform(&g), ks);
            double c = dot3(ks, n);
            worst = fmax(worst, fabs(mmd_diffuse_f(n, ks) / (c / M_PI) - 1));
            int iv = (int)(c * c * NV), ip = (int)((atan2(dot3(ks, bb), dot3(ks, tt)) + M_PI) / (2 * M_PI) * NP);
            cnt[iv < NV ? iv : NV - 1][ip < NP ? ip : NP - 1]++;
        }
        double chi2 = 0, ex = (double)NS / (NV * NP);
        for (int i = 0; i < NV; i++)
            for (int j = 0; j < NP; j++) chi2 += (cnt[i][j] - ex) * (cnt[i][j] - ex) / ex;
        CHECK(chi2_pvalue(chi2, NV * NP - 1) > 1e-3, "Lambertian sampler chi-square %.1f", chi2);
        CHECK(worst < 1e-12, "Lambertian f/pdf = 1");
    }
}

/* ---------------------------------------------------------------------- antennas */

/* integral / 4 pi of the gain, polar angle t about `axis` (0: +x, 2: +z), panels split
 * at t_split (a kink or the beam edge) */
static double sphere_integral(const mmd_antenna *a, int axis, double t_split, int nt1, int nt2, int np)
{
    gl_use(16);
    double s = 0;
    for (int part = 0; part < 2; part++) {
        double lo = part ? t_split : 0, hi = part ? M_PI : t_split;
        int nt = part ? nt2 : nt1;
        if (hi <= lo) continue;
        double ht = (hi - lo) / nt, hp = 2 * M_PI / np;
        for (int pa = 0; pa < nt; pa++)
            for (int i = 0; i < 16; i++) {
                double t = lo + pa * ht + 0.5 * ht * (gl_x[i] + 1), row = 0;
                for (int pb = 0; pb < np; pb++)
                    for (int j = 0; j < 16; j++) {
                        double p = -M_PI + pb * hp + 0.5 * hp * (gl_x[j] + 1), u[3];
                        if (axis == 0) u[0] = cos(t), u[1] = sin(t) * cos(p), u[2] = sin(t) * sin(p);
                        else u[0] = sin(t) * cos(p), u[1] = sin(t) * sin(p), u[2] = cos(t);
                        row += gl_w[j] * 0.5 * hp * mmd_antenna_gain(a, u);
                    }
                s += gl_w[i] * 0.5 * ht * sin(t) * row;
            }
    }
    return s / (4 * M_PI);
}

static double cin_integrand(double t, void *p)
{
    (void)p;
    return t < 1e-4 ? t / 2 - t * t * t / 24 : (1 - cos(t)) / t;
}

static void test_antennas(void)
{
    mmd_antenna a;
    const char *names[] = {"iso", "dipole", "hw_dipole", "tr38901", "patch"};
    double cin = adapt(cin_integrand, NULL, 0, 2 * M_PI, 1e-16, 0);
    CHECK(fabs(cin - 2.43765339305722) < 1e-13, "Cin(2 pi) = %.15f", cin);
    for (int k = 0; k < 5; k++) {
        CHECK(mmd_antenna_by_name(names[k], &a) == MMD_OK, "antenna %s", names[k]);
        double v = k == 3 ? sphere_integral(&a, 2, 0.5 * M_PI, 45, 45, 90)
                          : sphere_integral(&a, k == 4 ? 0 : 2, 0.5 * M_PI, 8, 8, 8);
        double want = mmd_antenna_efficiency(&a);
        CHECK(rel(v, want) < 1e-6, "%s: integral/4pi %.9f vs %.9f", names[k], v, want);
        if (k != 2 && k != 3) CHECK(rel(v, 1.0) < 1e-3, "%s integrates to 4 pi", names[k]);
    }
    mmd_antenna_by_name("hw_dipole", &a);
    CHECK_NEAR(mmd_antenna_efficiency(&a), 1.643 * cin / 4, 1e-12, "hw_dipole efficiency constant");
    mmd_antenna_by_name("tr38901", &a);
    CHECK(rel(mmd_antenna_efficiency(&a), 0.65678275) < 1e-4, "tr38901 vs Sionna compute_gain()");
    double bx[3] = {1, 0, 0};
    CHECK_NEAR(mmd_db(mmd_antenna_gain(&a, bx)), 8.0, 1e-12, "tr38901 8 dBi boresight");
    double back[3] = {-1, 0, 0};
    CHECK_NEAR(mmd_db(mmd_antenna_gain(&a, back)), 8.0 - 30.0, 1e-12, "tr38901 30 dB front-back");
    double hp[3] = {cos(32.5 * DEG), sin(32.5 * DEG), 0};
    CHECK_NEAR(mmd_db(mmd_antenna_gain(&a, hp)), 8.0 - 3.0, 1e-12, "tr38901 -3 dB at 32.5 deg");
    mmd_antenna_by_name("dipole", &a);
    double side[3] = {0, 1, 0}, up[3] = {0, 0, 1};
    CHECK(mmd_antenna_gain(&a, side) == 1.5 && mmd_antenna_gain(&a, up) == 0, "dipole");
    mmd_antenna_by_name("hw_dipole", &a);
    CHECK(mmd_antenna_gain(&a, side) == 1.643 && mmd_antenna_gain(&a, up) == 0, "hw_dipole");

    mmd_antenna_by_name("patch", &a);
    CHECK(a.q == 2 && a.g0 == 6, "patch default q 2, 7.8 dBi");
    CHECK_NEAR(a.hpbw_rad / DEG, 90, 1e-9, "patch 90 deg HPBW");
    const double q[] = {0.5, 1, 5};
    for (int i = 0; i < 3; i++) {
        CHECK(mmd_antenna_patch(q[i], &a) == MMD_OK, "patch q %g", q[i]);
        /* q < 1: cos^q has an infinite slope at the hemisphere edge, so more panels */
        double v = sphere_integral(&a, 0, 0.5 * M_PI, q[i] < 1 ? 256 : 8, 8, 8);
        CHECK(rel(v, 1.0) < 1e-6, "patch q %g integrates to 4 pi: %.9f", q[i], v);
    }
    const double bw[] = {5, 10, 30, 60, 120};
    for (int i = 0; i < 5; i++) {
        CHECK(mmd_antenna_horn(bw[i], &a) == MMD_OK, "horn %g", bw[i]);
        double v = sphere_integral(&a, 0, 2 * bw[i] * DEG, 24, 24, 4);
        CHECK(rel(v, 1.0) < 1e-6, "horn %g deg integrates to 4 pi: %.9f", bw[i], v);
        double e[3] = {cos(0.5 * bw[i] * DEG), sin(0.5 * bw[i] * DEG), 0};
        CHECK_NEAR(mmd_antenna_gain(&a, e) / a.g0, 0.5, 1e-12, "horn half power at HPBW/2");
    }
    CHECK(mmd_antenna_horn(0, &a) == MMD_ERR_INVALID && mmd_antenna_horn(180, &a) == MMD_ERR_INVALID, "horn range");
    CHECK(mmd_antenna_by_name("horn", &a) == MMD_ERR_INVALID, "horn needs a beamwidth");
    CHECK(mmd_antenna_by_name("yagi", &a) == MMD_ERR_INVALID && strstr(mmd_last_error(), "tr38901"), "unknown pattern");

    /* poses: R = Rz(yaw) Ry(pitch) Rx(roll) */
    double R[9], v[3], w[3];
    mmd_rotation_ypr(90 * DEG, 0, 0, R);
    mmd_to_world(R, bx, v);
    CHECK(fabs(v[1] - 1) < 1e-15, "yaw 90: boresight to +y");
    mmd_rotation_ypr(0, 30 * DEG, 0, R);
    mmd_to_world(R, bx, v);
    CHECK(fabs(v[0] - cos(30 * DEG)) < 1e-15 && fabs(v[2] + sin(30 * DEG)) < 1e-15, "pitch 30: boresight tips down");
    mmd_rotation_ypr(0, 0, 90 * DEG, R);
    mmd_to_world(R, side, v);
    CHECK(fabs(v[2] - 1) < 1e-15, "roll 90: local y to world z");
    mmd_rng g;
    mmd_rng_seed(&g, 3, 3);
    for (int it = 0; it < 100; it++) {
        double y = (mmd_rng_uniform(&g) - 0.5) * 2 * M_PI, p = (mmd_rng_uniform(&g) - 0.5) * M_PI,
               r = (mmd_rng_uniform(&g) - 0.5) * 2 * M_PI;
        mmd_rotation_ypr(y, p, r, R);
        /* explicit product */
        double Rz[9] = {cos(y), -sin(y), 0, sin(y), cos(y), 0, 0, 0, 1};
        double Ry[9] = {cos(p), 0, sin(p), 0, 1, 0, -sin(p), 0, cos(p)};
        double Rx[9] = {1, 0, 0, 0, cos(r), -sin(r), 0, sin(r), cos(r)}, T[9], P[9];
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
                T[i * 3 + j] = 0;
                for (int k = 0; k < 3; k++) T[i * 3 + j] += Ry[i * 3 + k] * Rx[k * 3 + j];
            }
        double err = 0;
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
                P[i * 3 + j] = 0;
                for (int k = 0; k < 3; k++) P[i * 3 + j] += Rz[i * 3 + k] * T[k * 3 + j];
                err = fmax(err, fabs(P[i * 3 + j] - R[i * 3 + j]));
            }
        CHECK(err < 1e-15, "R = Rz Ry Rx");
        /* a TX seen at local (az, el) from a rolled/pitched/yawed array */
        double az = (mmd_rng_uniform(&g) - 0.5) * M_PI, el = (mmd_rng_uniform(&g) - 0.5) * 0.9 * M_PI, az2, el2;
        mmd_dir_from_az_el(az, el, v);
        mmd_to_world(R, v, w);
        mmd_to_local(R, w, v);
        mmd_dir_to_az_el(v, &az2, &el2);
        CHECK(fabs(az2 - az) < 1e-12 && fabs(el2 - el) < 1e-12, "local az/el round trip");
    }
    /* concrete case: array pitched up 20 deg, rolled 90 deg: a TX straight ahead and 20 deg
     * up in the world is at local boresight */
    mmd_rotation_ypr(0, -20 * DEG, 90 * DEG, R);
    double tx[3] = {cos(20 * DEG), 0, sin(20 * DEG)}, az, el;
    mmd_to_local(R, tx, v);
    mmd_dir_to_az_el(v, &az, &el);
    CHECK(fabs(az) < 1e-12 && fabs(el) < 1e-12, "pitched+rolled array sees the TX at boresight");
    /* after a 90 deg roll the array's local elevation is the world's horizontal: a TX
     * 30 deg to the left (world +y) of boresight appears at local elevation -30 deg */
    mmd_rotation_ypr(0, 0, 90 * DEG, R);
    double tx2[3] = {cos(30 * DEG), sin(30 * DEG), 0};
    mmd_to_local(R, tx2, v);
    mmd_dir_to_az_el(v, &az, &el);
    CHECK(fabs(az) < 1e-12 && fabs(el / DEG + 30) < 1e-9, "rolled array: az %g el %g", az / DEG, el / DEG);

    /* URA */
    mmd_ura ura;
    CHECK(mmd_ura_init(&ura, 0, 8, 0.5, 1) == MMD_ERR_INVALID, "rows 0 refused");
    CHECK(mmd_ura_init(&ura, 8, 8, 0, 1) == MMD_ERR_INVALID, "spacing 0 refused");
    const int dims[][2] = {{8, 8}, {4, 16}, {1, 7}, {3, 1}};
    const double sp[] = {0.5, 0.7};
    double worst = 0, worst_closed = 0;
    for (int d = 0; d < 4; d++)
        for (int s = 0; s < 2; s++)
            for (int hann = 0; hann < 2; hann++) {
                CHECK(mmd_ura_init(&ura, dims[d][0], dims[d][1], sp[s], hann) == MMD_OK, "ura");
                for (int it = 0; it < 200; it++) {
                    double u[3], ub[3];
                    random_dir(&g, u), random_dir(&g, ub);
                    if (it % 4 == 0) memcpy(u, ub, sizeof u);
                    double bd = mmd_ura_beam_direct(&ura, u, ub), bs = mmd_ura_beam(&ura, u, ub);
                    worst = fmax(worst, fabs(bd - bs));
                    if (it % 4 == 0) CHECK(fabs(bs - 1) < 1e-12 && fabs(bd - 1) < 1e-12, "B_b(u_b) = 1");
                    for (int ax = 0; ax < 2; ax++) {
                        double dl = u[1 + ax] - ub[1 + ax];
                        worst_closed = fmax(worst_closed, fabs(mmd_ura_af(&ura, ax, dl) - mmd_ura_af_closed(&ura, ax, dl)));
                    }
                }
            }
    /* the closed form at its removable singularities and next to them */
    for (int hann = 0; hann < 2; hann++) {
        mmd_ura_init(&ura, 5, 8, 0.5, hann);
        const double dl[] = {0, 1e-9, -3e-9, 2.0, 2.0 + 1e-10, 1.0 / 9 * 2, 0.25, 1.75};
        for (int i = 0; i < 8; i++)
            for (int ax = 0; ax < 2; ax++)
                worst_closed = fmax(worst_closed, fabs(mmd_ura_af(&ura, ax, dl[i]) - mmd_ura_af_closed(&ura, ax, dl[i])));
    }
    CHECK(worst < 1e-6, "direct vs separable beam: %.3g", worst);
    CHECK(worst_closed < 1e-9, "closed-form vs summed array factor: %.3g", worst_closed);
    printf("URA beam direct vs separable: max abs difference %.2e; closed-form AF vs sum %.2e\n", worst, worst_closed);
    mmd_ura_init(&ura, 8, 8, 0.5, 1);
    CHECK_NEAR(ura.w_col[0], sin(M_PI / 9) * sin(M_PI / 9), 1e-15, "Hann weight w_0");
    CHECK(fabs(ura.w_col[2] - ura.w_col[5]) < 1e-15 && fabs(ura.w_row[0] - ura.w_row[7]) < 1e-15, "Hann symmetric");
    double d0[3], d63[3], w0;
    mmd_ura_element(&ura, 0, d0, &w0);
    mmd_ura_element(&ura, 63, d63, NULL);
    CHECK(d0[1] == -1.75 && d0[2] == 1.75 && d63[1] == 1.75 && d63[2] == -1.75 && d0[0] == 0, "element layout");
    /* the 8x8 Hann beam: first null region and its -3 dB width are sane */
    double ub[3] = {1, 0, 0}, u3[3];
    mmd_dir_from_az_el(5 * DEG, 0, u3);
    CHECK(mmd_ura_beam(&ura, u3, ub) > 0.5 && mmd_ura_beam(&ura, u3, ub) < 1, "8x8 Hann: 5 deg inside the -3 dB beam");
    mmd_dir_from_az_el(30 * DEG, 0, u3);
    CHECK(mmd_ura_beam(&ura, u3, ub) < 0.05, "8x8 Hann: 30 deg well outside the main lobe");
}

/* ------------------------------------------------------------------- Theorem 1 */

static void test_theorem1(void)
{
    struct { double plate; int alpha; double ref; } refs[] = {
        {5, 10, -10.11}, {5, 50, -4.44}, {5, 120, -1.94},
        {20, 10, -1.09}, {20, 50, -0.09}, {20, 120, -0.035},
        {100, 10, -0.10}, {100, 50, -0.078}, {100, 120, -0.035}, {100, 400, -0.011},
        {0, 10, -0.10}, {0, 50, -0.078}, {0, 120, -0.035}, {0, 400, -0.011},
    };
    printf("Theorem 1 (25 m, 45 deg, Gamma = 1): plate alpha  quadrature  SPEC\n");
    for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++) {
        mmd_thm1 c = {25, 25, 45, refs[i].plate, refs[i].alpha};
        double d = mmd_theorem1_deviation_db(&c);
        printf("  %6g %4d  %9.4f  %7.3f\n", refs[i].plate, refs[i].alpha, d, refs[i].ref);
        CHECK(fabs(d - refs[i].ref) < (refs[i].plate == 5 || refs[i].plate == 20 ? 0.1 : 0.02),
              "Theorem 1 plate %g alpha %d: %.4f vs %.3f", refs[i].plate, refs[i].alpha, d, refs[i].ref);
        /* the SPEC's values are given to 0.01 dB or better: hold them to their last digit */
        CHECK(fabs(d - refs[i].ref) < 0.006, "Theorem 1 plate %g alpha %d to the SPEC's digits", refs[i].plate, refs[i].alpha);
    }
    /* cross-check against the prototype's own method (Fibonacci rays from the TX) */
    mmd_thm1 c = {25, 25, 45, 20, 50};
    double q = mmd_theorem1_deviation_db(&c), f = mmd_theorem1_deviation_fib_db(&c, 2000000);
    CHECK(fabs(q - f) < 0.005, "quadrature %.4f vs 2M Fibonacci rays %.4f", q, f);
    c.plate_m = 5, c.alpha = 120;
    q = mmd_theorem1_deviation_db(&c), f = mmd_theorem1_deviation_fib_db(&c, 2000000);
    CHECK(fabs(q - f) < 0.02, "5 m plate: quadrature %.4f vs Fibonacci %.4f", q, f);
    /* near grazing the feet of TX and RX dominate for a wide lobe: still consistent */
    mmd_thm1 gz = {1, 1, 85, 0, 1};
    q = mmd_theorem1_deviation_db(&gz), f = mmd_theorem1_deviation_fib_db(&gz, 4000000);
    CHECK(fabs(q - f) < 0.005, "85 deg alpha 1: quadrature %.4f vs Fibonacci %.4f", q, f);
    /* trends: deviation falls with alpha and with plate size */
    double prev = -100;
    for (double p = 2; p <= 64; p *= 2) {
        mmd_thm1 t = {25, 25, 45, p, 120};
        double d = mmd_theorem1_deviation_db(&t);
        CHECK(d > prev - 1e-9, "deviation falls with plate size (%g m: %.3f)", p, d);
        prev = d;
    }
    /* unbounded plate with equal distances is scale free */
    mmd_thm1 a1 = {1, 1, 30, 0, 50}, a2 = {40, 40, 30, 0, 50};
    CHECK_NEAR(mmd_theorem1_deviation_db(&a1), mmd_theorem1_deviation_db(&a2), 1e-6, "scale invariance");
    /* sweep and map entry points */
    double inc[] = {0, 30, 60, 85}, out[4], map[4];
    mmd_thm1 base = {25, 25, 0, 0, 120};
    CHECK(mmd_theorem1_sweep(&base, inc, 4, out) == MMD_OK, "sweep");
    for (int i = 0; i < 4; i++) CHECK(fabs(out[i]) < 1.0, "sweep alpha 120 at %g deg: %.3f dB", inc[i], out[i]);
    double dd[] = {1, 50};
    CHECK(mmd_theorem1_max_map(&base, dd, 2, dd, 2, inc, 4, map) == MMD_OK, "map");
    for (int i = 0; i < 4; i++) CHECK(map[i] >= 0 && map[i] < 3.0, "max deviation cell %d: %.3f dB", i, map[i]);
    printf("Theorem 1 max |deviation| alpha 120, incidence {0,30,60,85}: d=(1,1) %.3f (1,50) %.3f (50,1) %.3f (50,50) %.3f dB\n",
           map[0], map[1], map[2], map[3]);
    mmd_thm1 badc = {25, 25, 90, 0, 120};
    CHECK(isnan(mmd_theorem1_deviation_db(&badc)) && strstr(mmd_last_error(), "incidence"), "grazing refused");
    CHECK(mmd_theorem1_sweep(&base, (double[]){95}, 1, out) == MMD_ERR_INVALID, "sweep validates");
}

int main(void)
{
    double t0 = mmd_now();
    test_materials();
    test_fresnel();
    test_jones();
    test_lobe();
    test_antennas();
    test_theorem1();
    printf("test_physics: %.1f s\n", mmd_now() - t0);
    return TEST_DONE();
}
