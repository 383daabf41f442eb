/*
 * mmd_physics.h - the host-side physics of mmdiff in double precision: ITU-R P.2040
 * materials, Fresnel half-space and slab coefficients, Jones-vector bookkeeping, the
 * directional scattering lobe (mmDiff Eq. 7) with its exact normalisation and importance
 * sampler, the Lambertian diffuse lobe, antenna element patterns, poses, the URA beam
 * pattern, and the Theorem 1 estimator. It is the reference the OpenCL kernels are tested
 * against; the model and every choice made where the SPEC is silent are in docs/physics.md.
 *
 * Units are SI (m, Hz, rad, S/m); z is up; directions are unit 3-vectors (double[3]).
 * Complex values are C99 `double _Complex` (a keyword: this header does not pull in
 * <complex.h> and its `I` macro).
 *
 *     mmd_material m;
 *     if (mmd_material_itu("concrete", 28e9, &m) != MMD_OK) return fail(mmd_last_error());
 *     double _Complex eta = mmd_material_eta(&m, 28e9), r[2], t[2];
 *     mmd_fresnel_halfspace(eta, cos(M_PI / 4), r);           // r[0] = r_TE, r[1] = r_TM
 *
 *     double A, coef[MMD_LOBE_NCOEF_MAX];
 *     int nc;
 *     mmd_lobe_coeffs(120, &A, coef, &nc);                     // once per alpha
 *     double F = mmd_lobe_norm_poly(A, coef, nc, cos_theta_i); // per interaction
 *     int above = mmd_lobe_sample(120, k_r, n, u1, u2, k_s);   // weight 4 pi/((a+1) F)
 */
#ifndef MMD_PHYSICS_H
#define MMD_PHYSICS_H

#include "mmd_core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MMD_SPEED_OF_LIGHT 299792458.0 /* m/s, exact */
#define MMD_EPS0 8.8541878128e-12      /* F/m, CODATA 2018 */

/* ================================ materials ===================================== */

#define MMD_DEFAULT_THICKNESS_M 0.1 /* Sionna RT's default slab thickness */
#define MMD_DEFAULT_ALPHA_R 50      /* SPEC example solver default */
#define MMD_ALPHA_R_MAX 1000

/* A radio material. thickness_m = 0 means a half-space (no transmission). */
typedef struct mmd_material {
    double eps_r;         /* relative permittivity, >= 1 */
    double sigma_s_per_m; /* conductivity [S/m], >= 0 */
    double scattering;    /* S in [0,1]: diffuse share of reflected energy is S^2 */
    double xpd;           /* K_x in [0,1]: cross-polarisation of the diffuse part */
    double thickness_m;   /* slab thickness [m], > 0, or 0 for a half-space */
    int alpha_r;          /* lobe directivity, integer in [1, MMD_ALPHA_R_MAX] */
} mmd_material;

/* ITU-R P.2040-3 Table 3 material `name` (concrete, brick, ..., wet_ground; see
 * mmd_material_itu_name) at `freq_hz`: eps_r = a f_GHz^b, sigma = c f_GHz^d. Frequency
 * ranges are inclusive at both ends; outside every range of the material, or for an
 * unknown name, MMD_ERR_INVALID with a message naming the material, its range(s) and the
 * frequency (or listing the valid names). Other fields get defaults: S = 0, K_x = 0,
 * thickness MMD_DEFAULT_THICKNESS_M, alpha_r MMD_DEFAULT_ALPHA_R. */
mmd_status mmd_material_itu(const char *name, double freq_hz, mmd_material *out);

/* Number of ITU materials and the i-th name (NULL out of range). */
int mmd_material_itu_count(void);
const char *mmd_material_itu_name(int i);

/* Check every field of an explicit material; `what` (e.g. "material 'wall'") prefixes
 * the error message, which names the offending field and its valid range. */
mmd_status mmd_material_validate(const mmd_material *m, const char *what);

/* Complex relative permittivity eta = eps_r - j sigma / (eps0 2 pi f). */
double _Complex mmd_material_eta(const mmd_material *m, double freq_hz);

/* ================================= Fresnel ====================================== */

/* Half-space reflection for incidence from vacuum at angle theta (cos_theta in [0,1]):
 * r[0] = r_TE, r[1] = r_TM, with a = sqrt(eta - sin^2 theta) on the principal branch. */
void mmd_fresnel_halfspace(double _Complex eta, double cos_theta, double _Complex r[2]);

/* Single-layer slab of thickness d in vacuum (ITU-R P.2040 eqs. 43/44): R[p], T[p] per
 * polarisation p = TE (0), TM (1). d = 0 gives the half-space R and T = 0. */
void mmd_fresnel_slab(double _Complex eta, double cos_theta, double thickness_m,
                      double wavelength_m, double _Complex R[2], double _Complex T[2]);

/* R and T of material m at freq_hz (half-space when thickness_m == 0). */
void mmd_material_fresnel(const mmd_material *m, double freq_hz, double cos_theta,
                          double _Complex R[2], double _Complex T[2]);

double mmd_wavelength(double freq_hz);
/* Free-space path gain (lambda / (4 pi r))^2 (a power ratio). */
double mmd_free_space_gain(double wavelength_m, double r_m);
/* 10 log10(ratio); -inf for 0. */
double mmd_db(double ratio);

/* ============================ polarisation (Jones) =============================== */

/* Complex 2x2 matrices are row-major: M = [[m0, m1], [m2, m3]]. */

/* Specular direction k_r = k_i - 2 (k_i . n) n. */
void mmd_reflect(const double k_i[3], const double n[3], double k_r[3]);

/* TE/TM basis of an incidence (Sionna RT convention): e_te = k x n / |k x n|,
 * e_tm = e_te x k. For the reflected wave use the same e_te and e_tm = e_te x k_r.
 * At normal incidence (k parallel to n) e_te is a fixed perpendicular of k (mmd_onb). */
void mmd_te_tm_basis(const double k[3], const double n[3], double e_te[3], double e_tm[3]);

/* Basis change W(a, b, q, r) = [[a.q, a.r], [b.q, b.r]]: a Jones vector expressed in
 * basis (q, r) becomes W J in basis (a, b) (both bases transverse to the same k). */
void mmd_basis_change(const double a[3], const double b[3], const double q[3],
                      const double r[3], double W[4]);

/* Reflection energy Gamma^2 = (|R_TE E_TE|^2 + |R_TM E_TM|^2) / |E|^2 (0 for E = 0). */
double mmd_reflection_energy(const double _Complex R[2], const double _Complex E[2]);

/* K_x mixing [[sqrt(1-K), -sqrt(K)], [sqrt(K), sqrt(1-K)]] (a rotation: energy kept). */
void mmd_xpd_matrix(double kx, double M[4]);

/* out = M J (complex 2x2 times complex 2-vector); out may alias J. */
void mmd_jones_mul(const double _Complex M[4], const double _Complex J[2], double _Complex out[2]);

/* Minimal rotation taking unit `from` to unit `to`, applied to v (Rodrigues about
 * from x to). For to = -from the axis is a fixed perpendicular of `from`. */
void mmd_rotate_min(const double from[3], const double to[3], const double v[3], double out[3]);

/* Field through the lobe (SPEC 3): the incident Jones vector E_in (in the TE/TM basis of
 * incidence k_i on normal n) gets the specular Jones matrix diag(R_TE, R_TM), and the
 * reflected basis (e_te, e_te x k_r) is carried to k_s by the minimal rotation k_r -> k_s.
 * Outputs E_out in that rotated basis (b_te, b_tm), both transverse to k_s. Energy is
 * |E_out|^2 = Gamma^2 |E_in|^2 for every k_s; k_s = k_r gives the exact specular field. */
void mmd_lobe_jones(const double k_i[3], const double n[3], const double k_s[3],
                    const double _Complex R[2], const double _Complex E_in[2],
                    double _Complex E_out[2], double b_te[3], double b_tm[3]);

/* Field of the diffuse part: as mmd_lobe_jones, then the K_x mixing (mmd_xpd_matrix)
 * applied to the coefficients, so a share K_x of each polarisation's power crosses
 * over; energy is still Gamma^2 |E_in|^2. */
void mmd_diffuse_jones(const double k_i[3], const double n[3], const double k_s[3],
                       const double _Complex R[2], double kx, const double _Complex E_in[2],
                       double _Complex E_out[2], double b_te[3], double b_tm[3]);

/* ============================ directional lobe =================================== */

/* Lobe f(k_s) = ((1 + k_r . k_s)/2)^alpha / F_alpha(theta_i) on the upper hemisphere
 * (k_s . n > 0), 0 below; F_alpha = integral over the hemisphere of the numerator, so f
 * integrates to 1. F_alpha(theta) = A + cos(theta) P(sin^2 theta), P of degree
 * (alpha-1)/2 (integer division) with nonnegative coefficients. */
#define MMD_LOBE_NCOEF(alpha) (((alpha) + 1) / 2)
#define MMD_LOBE_NCOEF_MAX MMD_LOBE_NCOEF(MMD_ALPHA_R_MAX)

/* F_alpha(theta_i) straight from the SPEC's double sum (O(alpha^2), log-space binomials);
 * cos_theta_i in [0,1]. The reference; alpha in [1, MMD_ALPHA_R_MAX]. */
double mmd_lobe_norm_exact(int alpha, double cos_theta_i);

/* Polynomial form, once per alpha: A and coef[0..ncoef-1] (coef must hold
 * MMD_LOBE_NCOEF(alpha) values; *ncoef receives exactly that count). */
mmd_status mmd_lobe_coeffs(int alpha, double *A, double *coef, int *ncoef);

/* Smallest n such that dropping coef[n..] changes F by at most rel_tol relative, for
 * every theta (trailing coefficients underflow quickly for large alpha). */
int mmd_lobe_ncoef_needed(double A, const double *coef, int ncoef, double rel_tol);

/* F = A + c P(s^2) by Horner, s^2 = (1 - c)(1 + c); double and float (device-like). */
double mmd_lobe_norm_poly(double A, const double *coef, int ncoef, double cos_theta_i);
float mmd_lobe_norm_poly_f(float A, const float *coef, int ncoef, float cos_theta_i);

/* f(k_s) for specular direction k_r, normal n (k_r . n >= 0) and normaliser F. */
double mmd_lobe_f(int alpha, double F, const double n[3], const double k_r[3], const double k_s[3]);

/* Sampling density of mmd_lobe_sample over the full sphere: (alpha+1)/(4 pi) x^alpha,
 * x = (1 + k_r . k_s)/2. */
double mmd_lobe_pdf_sphere(int alpha, const double k_r[3], const double k_s[3]);

/* Sample k_s around k_r from (u1, u2) in [0,1)^2: x = (1 - u1)^(1/(alpha+1)) (so u1 = 0
 * is fine), phi = 2 pi u2. Returns 1 if k_s is above the surface (k_s . n > 0), else 0
 * (the sample then carries weight 0). For an above sample f/pdf = mmd_lobe_weight(). */
int mmd_lobe_sample(int alpha, const double k_r[3], const double n[3], double u1, double u2,
                    double k_s[3]);

/* f / pdf of an above-surface sample: 4 pi / ((alpha + 1) F), a per-interaction constant. */
double mmd_lobe_weight(int alpha, double F);

/* Lambertian diffuse lobe cos(theta_out)/pi (0 below) and its cosine-weighted sampler
 * (pdf = the same, so f/pdf = 1). */
double mmd_diffuse_f(const double n[3], const double k_s[3]);
void mmd_diffuse_sample(const double n[3], double u1, double u2, double k_s[3]);

/* Orthonormal basis (t, b, n) around unit n, continuous except at n_z = -1 (Duff et al.
 * 2017); t x b = n. */
void mmd_onb(const double n[3], double t[3], double b[3]);

/* ================================ antennas ====================================== */

typedef enum mmd_antenna_kind {
    MMD_ANT_ISO = 0,
    MMD_ANT_DIPOLE,    /* short dipole along local z: 1.5 sin^2 theta */
    MMD_ANT_HW_DIPOLE, /* half-wave dipole along local z, Sionna's 1.643 normalisation */
    MMD_ANT_TR38901,   /* 3GPP TR 38.901 Table 7.3-1 element, boresight local +x */
    MMD_ANT_PATCH,     /* 2(q+1) cos^q(angle to +x) on the front hemisphere */
    MMD_ANT_HORN       /* the same shape with q set by the half-power beamwidth */
} mmd_antenna_kind;

#define MMD_PATCH_DEFAULT_Q 2.0 /* 7.8 dBi, 90 deg half-power beamwidth */

typedef struct mmd_antenna {
    mmd_antenna_kind kind;
    double q;        /* cos exponent (patch, horn) */
    double g0;       /* peak gain, linear (patch, horn: 2 (q + 1)) */
    double hpbw_rad; /* full half-power beamwidth (patch, horn) */
} mmd_antenna;

/* By name: "iso", "dipole", "hw_dipole", "tr38901", "patch" (q = MMD_PATCH_DEFAULT_Q);
 * "horn" needs a beamwidth, use mmd_antenna_horn. Unknown names list the valid ones. */
mmd_status mmd_antenna_by_name(const char *name, mmd_antenna *out);
mmd_status mmd_antenna_patch(double q, mmd_antenna *out);     /* q in (0, 1e4] */
mmd_status mmd_antenna_horn(double hpbw_deg, mmd_antenna *out); /* hpbw in (0, 180) */

/* Linear power gain for unit direction u in the antenna's local frame (boresight +x,
 * dipoles along +z). */
double mmd_antenna_gain(const mmd_antenna *a, const double u[3]);

/* Integral of the gain over the sphere divided by 4 pi, analytic: 1 for iso, dipole,
 * patch, horn; 1.643 Cin(2 pi)/4 = 1.00127 for hw_dipole; for tr38901 the value of
 * docs/physics.md (0.6568...), since its pattern is not a normalised one. */
double mmd_antenna_efficiency(const mmd_antenna *a);

/* ============================== poses and frames ================================ */

/* R = Rz(yaw) Ry(pitch) Rx(roll) (Sionna RT), row-major. Its columns are the local
 * axes in world coordinates: world = R local, local = R^T world. Positive pitch tips
 * the boresight (+x) down toward -z; positive yaw turns it from +x toward +y. */
void mmd_rotation_ypr(double yaw, double pitch, double roll, double R[9]);
void mmd_to_local(const double R[9], const double v_world[3], double v_local[3]);
void mmd_to_world(const double R[9], const double v_local[3], double v_world[3]);

/* Azimuth (from +x toward +y) and elevation (above the x-y plane) <-> unit vector. */
void mmd_dir_from_az_el(double az, double el, double u[3]);
void mmd_dir_to_az_el(const double u[3], double *az, double *el);

/* ================================== URA ========================================= */

#define MMD_URA_MAX_DIM 256

/* A rows x cols uniform rectangular array in the local y-z plane, facing +x: column c
 * at y = (c - (cols-1)/2) d lambda, row r at z = ((rows-1)/2 - r) d lambda (row 0 on
 * top). Optional Hann window per axis w_i = sin^2(pi (i+1)/(N+1)); element weight
 * w_m = w_row(r) w_col(c), m = r cols + c. */
typedef struct mmd_ura {
    int rows, cols;
    double spacing_wl; /* element spacing in wavelengths (both axes) */
    int hann;
    double w_row[MMD_URA_MAX_DIM], w_col[MMD_URA_MAX_DIM];
    double sum_row, sum_col;
} mmd_ura;

mmd_status mmd_ura_init(mmd_ura *a, int rows, int cols, double spacing_wl, int hann);
/* Element m position in wavelengths (local frame) and its weight. */
void mmd_ura_element(const mmd_ura *a, int m, double d_wl[3], double *w);

/* Beam pattern B_b(u) = |sum_m w_m a_m(u) conj(a_m(u_b))|^2 / (sum_m w_m)^2 with
 * a_m(u) = exp(j 2 pi/lambda u . d_m): direct O(rows cols) sum. */
double mmd_ura_beam_direct(const mmd_ura *a, const double u[3], const double u_b[3]);

/* Normalised real 1-D array factor along columns (axis 0, variable u_y - u_by) or rows
 * (axis 1, u_z - u_bz): AF(delta) = sum_i w_i cos(2 pi d (i - (N-1)/2) delta) / sum_i w_i
 * (real because positions and weights are symmetric). */
double mmd_ura_af(const mmd_ura *a, int axis, double delta);

/* The same array factor in O(1) from Dirichlet kernels D(p) = sin(N p/2)/sin(p/2),
 * p = 2 pi d delta: uniform AF = D(p)/N; Hann (w_i = 1/2 - cos(2 pi (i+1)/(N+1))/2)
 * AF = [D(p)/2 + (D(p + b) + D(p - b))/4] / ((N+1)/2), b = 2 pi/(N+1). */
double mmd_ura_af_closed(const mmd_ura *a, int axis, double delta);

/* Separable form: B = AF_col(u_y - u_by)^2 AF_row(u_z - u_bz)^2 (equals the direct sum). */
double mmd_ura_beam(const mmd_ura *a, const double u[3], const double u_b[3]);

/* =============================== quadrature ===================================== */

/* n-point Gauss-Legendre nodes x[i] (ascending) and weights w[i] on [-1, 1], n in
 * [1, 1024] (Newton on the Legendre recurrence; nodes to ~1e-15). */
mmd_status mmd_gauss_legendre(int n, double *x, double *w);

/* ============================== Theorem 1 ======================================= */

/* Single-bounce lobe scattering off a square plate (side plate_m, centred on the specular
 * point, in z = 0) versus the exact specular path, isotropic TX and RX at distances
 * d_tx_m, d_rx_m from the plate centre on mirror sides at `incidence_deg`. */
typedef struct mmd_thm1 {
    double d_tx_m, d_rx_m;
    double incidence_deg; /* [0, 90) */
    double plate_m;       /* side; <= 0 or INFINITY: unbounded plane */
    int alpha;
} mmd_thm1;

/* Deviation = lobe power / specular power in dB by deterministic quadrature of the
 * bistatic patch formula (docs/physics.md). Gamma cancels (a perfect reflector). NaN on
 * invalid input (message set). */
double mmd_theorem1_deviation_db(const mmd_thm1 *c);

/* The same estimate the SPEC's prototype used: n Fibonacci rays from the TX (for
 * cross-checking; Monte-Carlo-like error for small plates). */
double mmd_theorem1_deviation_fib_db(const mmd_thm1 *c, long n_rays);

/* Deviation-vs-incidence sweep (paper): out_db[i] for incidence inc_deg[i]. */
mmd_status mmd_theorem1_sweep(const mmd_thm1 *base, const double *inc_deg, int n, double *out_db);

/* Max-deviation map (paper): out_db[i * n_rx + j] = max over the n_inc incidence angles
 * of |deviation| [dB] for d_tx = d_tx_m[i], d_rx = d_rx_m[j]; base gives alpha and plate. */
mmd_status mmd_theorem1_max_map(const mmd_thm1 *base, const double *d_tx_m, int n_tx,
                                const double *d_rx_m, int n_rx, const double *inc_deg,
                                int n_inc, double *out_db);

#ifdef __cplusplus
}
#endif
#endif
