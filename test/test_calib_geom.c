/* Geometry calibration (mmd_calib_geom.h, cl/calib_geom.cl): (a) the kernel's gradient of
 * F = sum_i u_i c_i with respect to the object's pose (t_x, t_y, t_z, a_x, a_y) equals
 * central differences, in double precision, of a plain-C reference of the connection
 * terms of the object's vertices moved with the object (first-order model: receiver ray,
 * earlier throughput and later vertices fixed), for several TX patterns, on a tilted
 * slab plate in front of a wall with depth-2 paths; (b) the recovery checks of issue 5
 * (paper Supp. E): a 1 x 1 m reflector offset by 0.2 m along its normal, or rotated by
 * 10 deg about x, comes back within 1 cm / 0.5 deg in 200 Adam steps at lr 0.02;
 * (c) errors (unknown object listing the scene's objects, bad parameters) and an object
 * sharing vertices with a neighbour. Scalar and Jones polarisation throughout. */
#include <complex.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "mmd_calib_geom.h"
#include "mmd_physics.h"
#include "mmd_test.h"

#define DEG (M_PI / 180.0)

static mmd_cl *g_cl;
static char g_dir[] = "/tmp/geom_test_XXXXXX";

typedef struct run {
    mmd_experiment e;
    mmd_scene *scene;
    mmd_bvh *bvh;
    mmd_sim *sim;
} run;

static int run_open(run *r, const char *yaml)
{
    memset(r, 0, sizeof *r);
    mmd_status st = mmd_experiment_load_string(yaml, "geom.yaml", NULL, 0, &r->e);
    if (st == MMD_OK) st = mmd_scene_load(r->e.scene.file.path, &r->scene);
    if (st == MMD_OK) st = mmd_bvh_build(r->scene->vertices, r->scene->indices, r->scene->n_triangles, NULL, &r->bvh);
    if (st == MMD_OK) st = mmd_sim_create(g_cl, r->scene, r->bvh, &r->e, &r->sim);
    if (st != MMD_OK) fprintf(stderr, "run failed: %s\n", mmd_last_error());
    return st == MMD_OK;
}

static void run_close(run *r)
{
    mmd_sim_destroy(r->sim);
    mmd_bvh_destroy(r->bvh);
    mmd_scene_destroy(r->scene);
    mmd_experiment_free(&r->e);
}

/* ---- scene files ---------------------------------------------------------------------- */

static int write_text(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return 0;
    fputs(text, f);
    return fclose(f) == 0;
}

/* An n x n grid of quads (2 n^2 triangles) spanning [x0, x1] x [y0, y1] of the plane
 * spanned by axes (a, b) at height h along axis c (a, b, c a permutation of 0, 1, 2). */
static int write_grid_ply(const char *name, int n, int a, int b, int c, double x0, double x1, double y0, double y1,
                          double h)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return 0;
    fprintf(f, "ply\nformat ascii 1.0\nelement vertex %d\nproperty float x\nproperty float y\nproperty float z\n"
               "element face %d\nproperty list uchar int vertex_indices\nend_header\n",
            (n + 1) * (n + 1), 2 * n * n);
    for (int j = 0; j <= n; j++)
        for (int i = 0; i <= n; i++) {
            double q[3];
            q[a] = x0 + (x1 - x0) * i / n, q[b] = y0 + (y1 - y0) * j / n, q[c] = h;
            fprintf(f, "%.9g %.9g %.9g\n", q[0], q[1], q[2]);
        }
    for (int j = 0; j < n; j++)
        for (int i = 0; i < n; i++) {
            int v = j * (n + 1) + i;
            fprintf(f, "3 %d %d %d\n3 %d %d %d\n", v, v + 1, v + n + 2, v, v + n + 2, v + n + 1);
        }
    return fclose(f) == 0;
}

/* ---- (a) gradient against the double reference ---------------------------------------- */

/* Everything the double reference needs; the materials are the engine's (float-rounded). */
typedef struct ref_ctx {
    const mmd_cal_vertex *rec;
    size_t nr;
    int K, jones;
    uint32_t target;
    const double *theta, *thick; /* per object: eps_r, sigma, S, K_x; slab thickness */
    const int *alpha;
    int diffuse;
    double sig2im, wavelength, pref;
    double tx[3], tx_rot[9], pose_rot[9];
    const mmd_antenna *tx_ant;
    double centroid[3], p0[5]; /* the pose the records were traced with */
    const float *u;
} ref_ctx;

typedef double complex cplx;

static double dot3(const double a[3], const double b[3]) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
static void cross3(const double a[3], const double b[3], double o[3])
{
    double r[3] = {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
    memcpy(o, r, sizeof r);
}
/* world = M x */
static void mat_vec(const double M[9], const double x[3], double o[3])
{
    double r[3];
    for (int k = 0; k < 3; k++) r[k] = M[3 * k] * x[0] + M[3 * k + 1] * x[1] + M[3 * k + 2] * x[2];
    memcpy(o, r, sizeof r);
}

/* ---- Jones maps in double, written from the definitions of SPEC 3 / cl/jones.h:
 * TE/TM basis e_te = k x n / |k x n|, e_tm = e_te x k; lobe: diag(R) then the minimal
 * rotation k_r -> k_s; diffuse: diag(R), the K_x mixing, the TE/TM basis of k_s. */
static void te_vec(const double k[3], const double n[3], double e[3])
{
    cross3(k, n, e);
    double l = sqrt(dot3(e, e));
    if (l < 1e-6) {
        double b[3];
        mmd_onb(k, e, b);
        return;
    }
    for (int q = 0; q < 3; q++) e[q] /= l;
}
static void rot_min(const double from[3], const double to[3], const cplx v[3], cplx o[3])
{
    double ax[3];
    cross3(from, to, ax);
    double s = sqrt(dot3(ax, ax)), c = dot3(from, to);
    if (s < 1e-7) {
        if (c > 0) {
            memcpy(o, v, 3 * sizeof *v);
            return;
        }
        double t[3], b[3];
        mmd_onb(from, t, b);
        cplx tv = t[0] * v[0] + t[1] * v[1] + t[2] * v[2];
        for (int q = 0; q < 3; q++) o[q] = 2.0 * tv * t[q] - v[q];
        return;
    }
    for (int q = 0; q < 3; q++) ax[q] /= s;
    cplx av = ax[0] * v[0] + ax[1] * v[1] + ax[2] * v[2];
    cplx cr[3] = {ax[1] * v[2] - ax[2] * v[1], ax[2] * v[0] - ax[0] * v[2], ax[0] * v[1] - ax[1] * v[0]};
    for (int q = 0; q < 3; q++) o[q] = v[q] * c + cr[q] * s + ax[q] * (av * (1 - c));
}
static cplx cdot_r(const cplx w[3], const double e[3]) { return w[0] * e[0] + w[1] * e[1] + w[2] * e[2]; }
static cplx bidot(const cplx a[3], const cplx b[3]) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
/* forward (TX -> RX) maps of the connection */
static void lobe_fwd(const double ki[3], const double n[3], const double ks[3], const cplx R[2], const cplx E[3],
                     cplx o[3])
{
    double kr[3], ete[3], etmi[3], etmr[3];
    mmd_reflect(ki, n, kr);
    te_vec(ki, n, ete);
    cross3(ete, ki, etmi);
    cross3(ete, kr, etmr);
    cplx a = R[0] * cdot_r(E, ete), b = R[1] * cdot_r(E, etmi), r[3];
    for (int q = 0; q < 3; q++) r[q] = a * ete[q] + b * etmr[q];
    rot_min(kr, ks, r, o);
}
static void diff_fwd(const double ki[3], const double n[3], const double ks[3], const cplx R[2], double kx,
                     const cplx E[3], cplx o[3])
{
    double ete[3], etm[3], ste[3], stm[3];
    te_vec(ki, n, ete);
    cross3(ete, ki, etm);
    te_vec(ks, n, ste);
    cross3(ste, ks, stm);
    double a = sqrt(1 - kx), b = sqrt(kx);
    cplx a0 = R[0] * cdot_r(E, ete), a1 = R[1] * cdot_r(E, etm);
    for (int q = 0; q < 3; q++) o[q] = ste[q] * (a0 * a - a1 * b) + stm[q] * (a0 * b + a1 * a);
}
/* transposed (RX -> TX) maps of the continuations */
static void lobe_tr(const double ki[3], const double n[3], const double ks[3], const cplx R[2], const cplx w[3],
                    cplx o[3])
{
    double kr[3], ete[3], etmi[3], etmr[3];
    mmd_reflect(ki, n, kr);
    cplx wr[3];
    rot_min(ks, kr, w, wr);
    te_vec(ki, n, ete);
    cross3(ete, ki, etmi);
    cross3(ete, kr, etmr);
    cplx a = R[0] * cdot_r(wr, ete), b = R[1] * cdot_r(wr, etmr);
    for (int q = 0; q < 3; q++) o[q] = a * ete[q] + b * etmi[q];
}
static void diff_tr(const double ki[3], const double n[3], const double ks[3], const cplx R[2], double kx,
                    const cplx w[3], cplx o[3])
{
    double ete[3], etm[3], ste[3], stm[3];
    te_vec(ki, n, ete);
    cross3(ete, ki, etm);
    te_vec(ks, n, ste);
    cross3(ste, ks, stm);
    double a = sqrt(1 - kx), b = sqrt(kx);
    cplx pte = cdot_r(w, ste), ptm = cdot_r(w, stm);
    cplx q0 = pte * a + ptm * b, q1 = ptm * a - pte * b;
    for (int q = 0; q < 3; q++) o[q] = ete[q] * (R[0] * q0) + etm[q] * (R[1] * q1);
}
static void trans_tr(const double k[3], const double n[3], const cplx T[2], const cplx w[3], cplx o[3])
{
    double ete[3], etm[3];
    te_vec(k, n, ete);
    cross3(ete, k, etm);
    cplx a = T[0] * cdot_r(w, ete), b = T[1] * cdot_r(w, etm);
    for (int q = 0; q < 3; q++) o[q] = a * ete[q] + b * etm[q];
}
/* vertical polarisation theta-hat of local direction u */
static void theta_hat(const double u[3], double o[3])
{
    double rho = sqrt(u[0] * u[0] + u[1] * u[1]);
    if (rho < 1e-7) {
        o[0] = u[2] > 0 ? 1 : -1, o[1] = o[2] = 0;
        return;
    }
    o[0] = u[2] * u[0] / rho, o[1] = u[2] * u[1] / rho, o[2] = -rho;
}

/* The connection term of vertex vx (on the target) when the object's pose is p instead
 * of x->p0: the surface point that was hit moves with the object, the plane through it
 * turns with the object, and the new hit point is where the same receiver ray meets the
 * moved plane. All in double, from the definitions (SPEC 3-4), independent of the
 * kernel's derivative formulas. thr = T_<k (scalar), w = w_<k (Jones). With `recorded`
 * the term is instead evaluated from the record's own v, g_nee, f_lobe, f_diff (what
 * the tracer computed), for the check that both agree at p0. */
static double ref_conn(const ref_ctx *x, const mmd_cal_vertex *vx, double thr, const cplx w[3], const double p[5],
                       int recorded)
{
    double R1[9], R0[9], M[9];
    mmd_calib_geom_rotation(p, R1);
    mmd_calib_geom_rotation(x->p0, R0);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            M[3 * i + j] = R1[3 * i] * R0[3 * j] + R1[3 * i + 1] * R0[3 * j + 1] + R1[3 * i + 2] * R0[3 * j + 2];
    double pb[3] = {vx->p[0], vx->p[1], vx->p[2]}, nb[3] = {vx->n[0], vx->n[1], vx->n[2]},
           d[3] = {vx->d[0], vx->d[1], vx->d[2]};
    double rel[3], q[3], n[3];
    for (int k = 0; k < 3; k++) rel[k] = pb[k] - x->centroid[k] - x->p0[k];
    mat_vec(M, rel, q);
    for (int k = 0; k < 3; k++) q[k] += x->centroid[k] + p[k];
    mat_vec(M, nb, n);
    double dn = dot3(d, n);
    if (fabs(dn) < 1e-12) return 0.0;
    double qp[3] = {q[0] - pb[0], q[1] - pb[1], q[2] - pb[2]};
    double s = dot3(qp, n) / dn, ph[3], v[3];
    for (int k = 0; k < 3; k++) ph[k] = pb[k] + s * d[k], v[k] = x->tx[k] - ph[k];
    double r = sqrt(dot3(v, v));
    for (int k = 0; k < 3; k++) v[k] = recorded ? vx->v[k] : v[k] / r;
    double cosv = dot3(v, n);
    if (cosv <= 0) return 0.0;
    double mv[3] = {-v[0], -v[1], -v[2]}, txl[3];
    mmd_to_local(x->tx_rot, mv, txl);
    double g = recorded ? vx->g_nee : x->pref * mmd_antenna_gain(x->tx_ant, txl) / (r * r);
    const double *th = x->theta + 4 * vx->obj;
    cplx eta = th[0] - th[1] * x->sig2im * I, Rf[2], Tf[2];
    mmd_fresnel_slab(eta, cosv, x->thick[vx->obj], x->wavelength, Rf, Tf);
    double kr[3], ks[3] = {-d[0], -d[1], -d[2]};
    mmd_reflect(mv, n, kr);
    double h = 0.5 * (1 + dot3(kr, ks));
    int alpha = x->alpha[vx->obj];
    double fl = h > 0 ? pow(h, alpha) / mmd_lobe_norm_exact(alpha, cosv) : 0.0;
    double fd = x->diffuse ? fmax(0.0, dot3(ks, n)) / M_PI : 0.0;
    if (recorded) fl = vx->f_lobe, fd = vx->f_diff;
    double S2 = th[2] * th[2];
    if (!x->jones) {
        double g2 = 0.5 * (creal(Rf[0] * conj(Rf[0])) + creal(Rf[1] * conj(Rf[1])));
        return g * thr * g2 * ((1 - S2) * fl + S2 * fd);
    }
    double eth[3], etx[3];
    theta_hat(txl, eth);
    mat_vec(x->tx_rot, eth, etx);
    cplx E[3] = {etx[0], etx[1], etx[2]}, u[3], a;
    double al = 0, ad = 0;
    if (fl > 0) {
        lobe_fwd(mv, n, ks, Rf, E, u);
        a = bidot(w, u);
        al = creal(a * conj(a));
    }
    if (fd > 0) {
        diff_fwd(mv, n, ks, Rf, th[3], E, u);
        a = bidot(w, u);
        ad = creal(a * conj(a));
    }
    return g * ((1 - S2) * fl * al + S2 * fd * ad);
}

/* Continuation of vertex vx: T_<k (scalar) or w_<k (Jones) of the next vertex, from the
 * records (fixed in the first-order model), as in mmd_calib_forward. */
static void ref_cont(const ref_ctx *x, const mmd_cal_vertex *vx, double *thr, cplx w[3])
{
    const double *th = x->theta + 4 * vx->obj;
    cplx eta = th[0] - th[1] * x->sig2im * I, Rf[2], Tf[2];
    double n[3] = {vx->n[0], vx->n[1], vx->n[2]}, d[3] = {vx->d[0], vx->d[1], vx->d[2]},
           o[3] = {vx->o[0], vx->o[1], vx->o[2]};
    int tr = vx->event == MMD_CAL_TRANSMIT;
    mmd_fresnel_slab(eta, tr ? -dot3(d, n) : dot3(o, n), x->thick[vx->obj], x->wavelength, Rf, Tf);
    cplx *C = tr ? Tf : Rf;
    double S2 = th[2] * th[2], sf = vx->w_cont * (vx->event == MMD_CAL_DIFFUSE ? S2 : tr ? 1.0 : 1.0 - S2);
    if (!x->jones) {
        *thr *= sf * 0.5 * (creal(C[0] * conj(C[0])) + creal(C[1] * conj(C[1])));
        return;
    }
    double mo[3] = {-o[0], -o[1], -o[2]}, md[3] = {-d[0], -d[1], -d[2]};
    cplx nw[3];
    if (tr)
        trans_tr(d, n, C, w, nw);
    else if (vx->event == MMD_CAL_DIFFUSE)
        diff_tr(mo, n, md, C, th[3], w, nw);
    else
        lobe_tr(mo, n, md, C, w, nw);
    for (int q = 0; q < 3; q++) w[q] = nw[q] * sqrt(sf);
}

/* Walks every ray's chain: with mode 0 returns F(p) = sum_i u_i sum_{k on the target}
 * c_ik(p) (the other terms do not depend on p); with mode 1 returns the worst relative
 * difference between the moved-geometry term at p and the recorded one (p = p0), and
 * counts terms (out[0]: all, out[1]: deeper than the first vertex) and the largest term. */
static double ref_walk(const ref_ctx *x, const double p[5], int mode, double out[3])
{
    double F = 0, worst = 0;
    if (out) out[0] = out[1] = out[2] = 0;
    for (size_t i = 0; i < x->nr; i++) {
        const mmd_cal_vertex *rv = x->rec + i * x->K;
        double thr = 1, acc = 0;
        cplx w[3] = {0, 0, 0};
        if (x->jones && rv[0].obj != 0xffffffffu) {
            double d0[3] = {rv[0].d[0], rv[0].d[1], rv[0].d[2]}, ul[3], th[3], w0[3];
            mmd_to_local(x->pose_rot, d0, ul);
            theta_hat(ul, th);
            mat_vec(x->pose_rot, th, w0);
            for (int q = 0; q < 3; q++) w[q] = w0[q];
        }
        for (int k = 0; k < x->K; k++) {
            const mmd_cal_vertex *vx = &rv[k];
            if (vx->obj == 0xffffffffu) break;
            if (vx->obj == x->target && vx->g_nee > 0) {
                double c = ref_conn(x, vx, thr, w, p, 0);
                acc += c;
                if (mode == 1) {
                    double cr = ref_conn(x, vx, thr, w, p, 1);
                    if (cr > 0) worst = fmax(worst, fabs(c / cr - 1));
                    out[0]++, out[1] += k > 0, out[2] = fmax(out[2], c);
                }
            }
            if (vx->event == MMD_CAL_END) break;
            ref_cont(x, vx, &thr, w);
        }
        if (mode == 0) F += x->u[i] * acc;
    }
    return mode == 0 ? F : worst;
}

static char g_yaml[4096];

static void test_gradient(const char *pol, const char *pattern, const char *tx_angles, const char *plate)
{
    char label[128];
    snprintf(label, sizeof label, "%s %s", pol, pattern);
    char scene[600];
    snprintf(scene, sizeof scene, "%s/scene.yaml", g_dir);
    snprintf(g_yaml, sizeof g_yaml,
             "scene:\n"
             "  file: %s\n"
             "  frequency_hz: 28.0e9\n"
             "  materials:\n"
             "    plate: {%s}\n"
             "    wall: {eps_r: 5.0, sigma_s_per_m: 0.5, scattering: 0.7, alpha_r: 4}\n"
             "tx: {position_m: [-1.5, 0.4, 1.6], pattern: %s, %s}\n"
             "rx:\n"
             "  array: {rows: 4, cols: 4, spacing_wavelengths: 0.5, window: hann, element: patch}\n"
             "  poses:\n"
             "    - {position_m: [1.2, -0.3, 1.3], yaw_deg: 180, pitch_deg: 40}\n"
             "aoa: {azimuth_deg: [-60, 60, 6], elevation_deg: [-42, 42, 6]}\n"
             "solver: {rays: 20000, max_depth: 2, seed: 7, polarization: %s, transmission: true}\n",
             scene, plate, pattern, tx_angles, pol);
    run r;
    if (!run_open(&r, g_yaml)) {
        CHECK(0, "%s: run", label);
        return;
    }
    mmd_calib_options o = mmd_calib_defaults();
    mmd_calib *c = NULL;
    mmd_calib_geom *g = NULL;
    if (mmd_calib_create(r.sim, &o, &c) != MMD_OK || mmd_calib_geom_create(c, r.scene, "plate", &g) != MMD_OK) {
        CHECK(0, "%s: create: %s", label, mmd_last_error());
        mmd_calib_destroy(c);
        run_close(&r);
        return;
    }
    /* a generic pose, so that every parameter matters and R_y(a_y) != I */
    double p0[5] = {0.03, -0.02, 0.05, 0.25, -0.2};
    CHECK(mmd_calib_geom_set_params(g, p0) == MMD_OK && mmd_calib_geom_apply(g) == MMD_OK, "%s: apply: %s", label,
          mmd_last_error());
    const mmd_cfg_pose *pose = &r.e.rx.poses[0];
    mmd_cal_vertex *rec = NULL;
    size_t nr = 0, no = r.scene->n_objects;
    int K = r.e.solver.max_depth;
    CHECK(mmd_calib_debug_records(c, pose, 0, &rec, &nr) == MMD_OK, "%s: records", label);
    float *u = malloc(sizeof(float) * (nr ? nr : 1)), *craw = malloc(sizeof(float) * 4 * no);
    double *theta = malloc(sizeof(double) * 4 * no), *thick = malloc(sizeof(double) * no);
    int *alpha = malloc(sizeof(int) * no);
    mmd_calib_get_params(c, craw);
    for (size_t ob = 0; ob < no; ob++) {
        mmd_material m;
        mmd_calib_raw_to_material(craw + 4 * ob, &m);
        theta[4 * ob] = (float)m.eps_r, theta[4 * ob + 1] = (float)m.sigma_s_per_m;
        theta[4 * ob + 2] = (float)m.scattering, theta[4 * ob + 3] = (float)m.xpd;
        thick[ob] = (float)r.sim->materials[ob].thickness_m;
        alpha[ob] = r.sim->materials[ob].alpha_r;
    }
    ref_ctx x = {.rec = rec,
                 .nr = nr,
                 .K = K,
                 .jones = r.e.solver.polarization == MMD_CFG_POL_JONES,
                 .target = mmd_calib_geom_object(g),
                 .theta = theta,
                 .thick = thick,
                 .alpha = alpha,
                 .diffuse = r.e.solver.diffuse,
                 .sig2im = 1.0 / (MMD_EPS0 * 2 * M_PI * r.e.scene.frequency_hz),
                 .wavelength = r.sim->wavelength,
                 .tx_ant = &r.sim->tx_ant,
                 .u = u};
    x.pref = pow(r.sim->wavelength / (4 * M_PI), 2) * 4 * M_PI / (double)nr;
    memcpy(x.tx, r.e.tx.position_m, sizeof x.tx);
    memcpy(x.tx_rot, r.sim->tx_rot, sizeof x.tx_rot);
    mmd_calib_geom_centroid(g, x.centroid);
    mmd_rotation_ypr(pose->yaw_deg * DEG, pose->pitch_deg * DEG, pose->roll_deg * DEG, x.pose_rot);
    memcpy(x.p0, p0, sizeof x.p0);

    /* the reference starts where the tracer is: recorded g_nee, f_lobe, f_diff reproduced */
    double cnt[3];
    double worst_g = ref_walk(&x, p0, 1, cnt), cmax = cnt[2];
    int n_target = (int)cnt[0], n_deep = (int)cnt[1];
    printf("%s: %d connection terms on the plate (%d at depth 2); reference vs recorded term: worst relative %.1e\n",
           label, n_target, n_deep, worst_g);
    CHECK(n_target > 300 && n_deep >= 30, "%s: enough plate vertices (%d, %d at depth 2)", label, n_target, n_deep);
    CHECK(worst_g < 2e-4, "%s: reference connection term = recorded one (worst %.1e)", label, worst_g);

    /* F with random u_i over all rays, then over only the rays that reach the plate at
     * depth 2 (their terms carry the wall's throughput T_<2) */
    mmd_rng rng;
    mmd_rng_seed(&rng, 23, 1);
    for (size_t i = 0; i < nr; i++) u[i] = (float)((mmd_rng_uniform(&rng) * 2 - 1) / (cmax > 0 ? cmax : 1));
    float *u2 = malloc(sizeof(float) * (nr ? nr : 1));
    for (size_t i = 0; i < nr; i++) {
        int deep = 0;
        for (int k = 1; k < K; k++) deep |= rec[i * K + k].obj == x.target && rec[i * K + k].g_nee > 0;
        u2[i] = deep ? u[i] : 0.0f;
    }
    const char *names[5] = {"t_x", "t_y", "t_z", "a_x", "a_y"};
    for (int pass = 0; pass < 2; pass++) {
        const char *what = pass ? "depth-2 rays" : "all rays";
        x.u = pass ? u2 : u;
        double ga[5];
        CHECK(mmd_calib_geom_debug_grad(g, pose, 0, x.u, ga) == MMD_OK, "%s: kernel gradient: %s", label,
              mmd_last_error());
        double gmax = 0;
        for (int j = 0; j < 5; j++) gmax = fmax(gmax, fabs(ga[j]));
        int checked = 0, bad = 0;
        double wrel = 0;
        for (int j = 0; j < 5; j++) {
            double h = 1e-6, pp[5], f[2];
            for (int sgn = 0; sgn < 2; sgn++) {
                memcpy(pp, p0, sizeof pp);
                pp[j] += sgn ? -h : h;
                f[sgn] = ref_walk(&x, pp, 0, NULL);
            }
            double fd = (f[0] - f[1]) / (2 * h), rel = fabs(ga[j] - fd) / fmax(fabs(fd), 1e-300);
            int tiny = fabs(fd) < 1e-3 * gmax;
            printf("  %s, %s: dF/d%s kernel %+.6e  double central diff %+.6e  rel %.1e%s\n", label, what, names[j],
                   ga[j], fd, rel, tiny ? " (tiny)" : "");
            if (tiny) {
                CHECK(fabs(ga[j] - fd) < 1e-3 * gmax, "%s, %s: tiny d/d%s agrees in absolute terms", label, what,
                      names[j]);
                continue;
            }
            checked++;
            if (rel > 1e-3) bad++;
            wrel = fmax(wrel, rel);
        }
        CHECK(checked >= 4, "%s, %s: gradients checked (%d)", label, what, checked);
        CHECK(bad == 0, "%s, %s: geometry gradient = double central differences within 1e-3 (worst %.2e)", label,
              what, wrel);
        /* the same bits twice (fixed-order reduction) */
        double gb[5];
        mmd_calib_geom_debug_grad(g, pose, 0, x.u, gb);
        CHECK(!memcmp(ga, gb, sizeof ga), "%s, %s: gradient bitwise reproducible", label, what);
    }
    free(u2);
    free(u);
    free(craw);
    free(theta);
    free(thick);
    free(alpha);
    free(rec);
    mmd_calib_geom_destroy(g);
    mmd_calib_destroy(c);
    run_close(&r);
}

/* ---- (b) recovery ------------------------------------------------------------------- */

static void make_recovery_yaml(const char *pol)
{
    snprintf(g_yaml, sizeof g_yaml,
             "scene:\n"
             "  file: %s/scenes/sionna/simple_reflector/simple_reflector.xml\n"
             "  frequency_hz: 28.0e9\n"
             "  materials:\n"
             "    mesh-reflector: {eps_r: 3.0, sigma_s_per_m: 2.0e4}\n"
             "tx: {position_m: [-1.0, 0.0, 1.0], pattern: iso}\n"
             "rx:\n"
             "  array: {rows: 4, cols: 4, spacing_wavelengths: 0.5, window: hann, element: patch}\n"
             "  poses:\n"
             "    - {position_m: [0.7, 0.0, 0.7], yaw_deg: 180, pitch_deg: 45}\n"
             "    - {position_m: [0.6, 0.35, 0.8], yaw_deg: 193, pitch_deg: 48}\n"
             "    - {position_m: [0.75, -0.3, 0.6], yaw_deg: 170, pitch_deg: 42}\n"
             "aoa: {azimuth_deg: [-40, 40, 2], elevation_deg: [-40, 40, 2]}\n"
             "solver: {rays: 10000, max_depth: 1, seed: 11, polarization: %s}\n",
             mmd_test_shared(), pol);
}

static void test_recovery(const char *what, const char *pol, const double start[5])
{
    make_recovery_yaml(pol);
    run r;
    if (!run_open(&r, g_yaml)) {
        CHECK(0, "%s: run", what);
        return;
    }
    size_t n = r.e.rx.n_poses, ids[8];
    mmd_aoa_result truth;
    if (mmd_sim_aoa(r.sim, r.e.rx.poses, n, &truth, NULL, NULL) != MMD_OK) {
        CHECK(0, "%s: truth: %s", what, mmd_last_error());
        run_close(&r);
        return;
    }
    size_t nbins = (size_t)truth.n_az * truth.n_el;
    const float *mp[8];
    for (size_t k = 0; k < n; k++) ids[k] = k, mp[k] = truth.spectra + k * nbins;
    mmd_calib_options o = mmd_calib_defaults();
    o.fit_scale = 0;
    mmd_calib *c = NULL;
    mmd_calib_geom *g = NULL;
    if (mmd_calib_create(r.sim, &o, &c) != MMD_OK ||
        mmd_calib_geom_create(c, r.scene, "mesh-reflector", &g) != MMD_OK) {
        CHECK(0, "%s: create: %s", what, mmd_last_error());
        mmd_calib_destroy(c);
        mmd_aoa_result_free(&truth);
        run_close(&r);
        return;
    }
    double l_true = 0;
    mmd_calib_loss(c, r.e.rx.poses, ids, mp, n, &l_true, 0, NULL);
    mmd_calib_geom_set_params(g, start);
    mmd_status st = mmd_calib_geom_apply(g);
    double l0 = 0, l = 0, p[5];
    printf("%s: loss at the truth %.2e\n", what, l_true);
    double t0 = mmd_now();
    int steps = 200;
    for (int it = 0; st == MMD_OK && it < steps; it++) {
        mmd_calib_geom_zero_grad(g);
        st = mmd_calib_loss(c, r.e.rx.poses, ids, mp, n, &l, 1, NULL);
        if (it == 0) l0 = l;
        mmd_calib_geom_get_params(g, p);
        if (it % 25 == 0)
            printf("  %s step %3d: loss %.4f  t = (%+.4f, %+.4f, %+.4f) m  a = (%+.3f, %+.3f) deg\n", what, it, l, p[0],
                   p[1], p[2], p[3] / DEG, p[4] / DEG);
        if (st == MMD_OK) st = mmd_calib_geom_adam(g, 0.02);
    }
    CHECK(st == MMD_OK, "%s: calibration ran: %s", what, st == MMD_OK ? "" : mmd_last_error());
    mmd_calib_loss(c, r.e.rx.poses, ids, mp, n, &l, 0, NULL);
    mmd_calib_geom_get_params(g, p);
    double et = fmax(fabs(p[0]), fmax(fabs(p[1]), fabs(p[2]))), ea = fmax(fabs(p[3]), fabs(p[4])) / DEG;
    printf("%s: after %d Adam steps (lr 0.02, %.1f s): loss %.4f -> %.4f; t = (%+.4f, %+.4f, %+.4f) m, "
           "a = (%+.3f, %+.3f) deg; max |t| %.2f mm, max |a| %.3f deg\n",
           what, steps, mmd_now() - t0, l0, l, p[0], p[1], p[2], p[3] / DEG, p[4] / DEG, 1e3 * et, ea);
    CHECK(et < 0.01, "%s: translation back within 1 cm (%.2f mm)", what, 1e3 * et);
    CHECK(ea < 0.5, "%s: rotation back within 0.5 deg (%.3f deg)", what, ea);
    CHECK(l < 0.1 * l0, "%s: loss fell 10x (%.4f -> %.4f)", what, l0, l);
    mmd_calib_geom_destroy(g);
    mmd_calib_destroy(c);
    mmd_aoa_result_free(&truth);
    run_close(&r);
}

/* ---- (c) errors ---------------------------------------------------------------------- */

static void test_errors(void)
{
    make_recovery_yaml("scalar");
    run r;
    if (!run_open(&r, g_yaml)) {
        CHECK(0, "errors: run");
        return;
    }
    mmd_calib_options o = mmd_calib_defaults();
    mmd_calib *c = NULL;
    mmd_calib_geom *g = NULL;
    CHECK(mmd_calib_create(r.sim, &o, &c) == MMD_OK, "errors: engine");
    if (c) {
        mmd_status st = mmd_calib_geom_create(c, r.scene, "no-such-object", &g);
        const char *msg = mmd_last_error();
        CHECK(st == MMD_ERR_INVALID && g == NULL && strstr(msg, "no-such-object") && strstr(msg, "'mesh-reflector'"),
              "unknown object: error names it and lists the objects (%s)", msg);
        double bad[5] = {0, NAN, 0, 0, 0};
        CHECK(mmd_calib_geom_create(c, r.scene, "mesh-reflector", &g) == MMD_OK, "create");
        CHECK(mmd_calib_geom_set_params(g, bad) == MMD_ERR_INVALID, "non-finite parameter refused");
        CHECK(mmd_calib_geom_adam(g, -1) == MMD_ERR_INVALID, "bad learning rate refused");
        mmd_calib_geom_destroy(g);
        mmd_calib_destroy(c);
    }
    run_close(&r);
}

/* The documented convention R = R_y(a_y) R_x(a_x) (right-handed rotations). */
static void test_rotation(void)
{
    double px[5] = {0, 0, 0, 0.3, 0}, py[5] = {0, 0, 0, 0, -0.4}, pxy[5] = {0, 0, 0, 0.3, -0.4};
    double Rx[9], Ry[9], Rxy[9], ey[3] = {0, 1, 0}, ez[3] = {0, 0, 1}, o[3], worst = 0;
    mmd_calib_geom_rotation(px, Rx);
    mmd_calib_geom_rotation(py, Ry);
    mmd_calib_geom_rotation(pxy, Rxy);
    mat_vec(Rx, ey, o); /* e_y about x by a: (0, cos a, sin a) */
    worst = fmax(worst, fabs(o[0]) + fabs(o[1] - cos(0.3)) + fabs(o[2] - sin(0.3)));
    mat_vec(Ry, ez, o); /* e_z about y by b: (sin b, 0, cos b) */
    worst = fmax(worst, fabs(o[0] - sin(-0.4)) + fabs(o[1]) + fabs(o[2] - cos(-0.4)));
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            double a = 0;
            for (int k = 0; k < 3; k++) a += Ry[3 * i + k] * Rx[3 * k + j];
            worst = fmax(worst, fabs(a - Rxy[3 * i + j]));
        }
    CHECK(worst < 1e-15, "rotation convention R_y(a_y) R_x(a_x) (worst %.1e)", worst);
}

/* Two plates sharing an edge in one PLY (face object_id): moving one must not drag the
 * other (its shared vertices are duplicated at create). */
static void test_shared_vertices(void)
{
    int ok = write_text("pair.ply", "ply\nformat ascii 1.0\nelement vertex 6\nproperty float x\nproperty float y\n"
                                    "property float z\nelement face 4\nproperty list uchar int vertex_indices\n"
                                    "property int object_id\nend_header\n"
                                    "0 0 0\n1 0 0\n2 0 0\n0 1 0\n1 1 0\n2 1 0\n"
                                    "3 0 1 4 0\n3 0 4 3 0\n3 1 2 5 1\n3 1 5 4 1\n");
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "scene:\n  file: %s/pair.ply\n  frequency_hz: 28.0e9\n"
             "  materials:\n    default: {eps_r: 3.0, sigma_s_per_m: 0.1}\n"
             "tx: {position_m: [1.0, 0.5, 2.0]}\n"
             "rx:\n  array: {rows: 2, cols: 2}\n  poses:\n    - {position_m: [1.0, -1.0, 1.5], pitch_deg: 30}\n"
             "aoa: {azimuth_deg: [-20, 20, 10], elevation_deg: [-20, 20, 10]}\n"
             "solver: {rays: 1000, max_depth: 1, polarization: scalar}\n",
             g_dir);
    run r;
    if (!ok || !run_open(&r, yaml)) {
        CHECK(0, "shared vertices: run");
        return;
    }
    uint32_t nv0 = r.scene->n_vertices;
    float before[18];
    memcpy(before, r.scene->vertices, sizeof before);
    mmd_calib_options o = mmd_calib_defaults();
    mmd_calib *c = NULL;
    mmd_calib_geom *g = NULL;
    if (mmd_calib_create(r.sim, &o, &c) == MMD_OK && mmd_calib_geom_create(c, r.scene, "object_1", &g) == MMD_OK) {
        CHECK(r.scene->n_vertices == nv0 + 2, "shared vertices: the 2 shared vertices duplicated (%u -> %u)", nv0,
              r.scene->n_vertices);
        double cen[3], p[5] = {0.1, 0.0, 0.3, 0.0, 0.0};
        mmd_calib_geom_centroid(g, cen);
        CHECK(fabs(cen[0] - 1.5) < 1e-6 && fabs(cen[1] - 0.5) < 1e-6 && fabs(cen[2]) < 1e-6,
              "shared vertices: centroid (%g %g %g)", cen[0], cen[1], cen[2]);
        mmd_calib_geom_set_params(g, p);
        CHECK(mmd_calib_geom_apply(g) == MMD_OK, "shared vertices: apply");
        const mmd_scene *sc = r.scene;
        int other_kept = 1, moved = 1;
        for (uint32_t t = 0; t < sc->n_triangles; t++)
            for (int k = 0; k < 3; k++) {
                const float *v = sc->vertices + 3 * sc->indices[3 * t + k];
                int mine = sc->tri_object[t] == mmd_calib_geom_object(g);
                if (!mine) {
                    /* object_0 keeps its original vertices */
                    const float *b = before + 3 * sc->indices[3 * t + k];
                    other_kept &= v[0] == b[0] && v[1] == b[1] && v[2] == b[2];
                } else {
                    moved &= fabsf(v[2] - 0.3f) < 1e-6f && v[0] >= 1.1f - 1e-6f;
                }
            }
        CHECK(other_kept, "shared vertices: the neighbour did not move");
        CHECK(moved, "shared vertices: the object moved by t");
        p[2] = 0.0, p[0] = 0.0;
        mmd_calib_geom_set_params(g, p);
        mmd_calib_geom_apply(g);
        int back = 1;
        for (uint32_t t = 0; t < sc->n_triangles; t++)
            for (int k = 0; k < 3; k++) back &= sc->vertices[3 * sc->indices[3 * t + k] + 2] == 0.0f;
        CHECK(back, "shared vertices: p = 0 restores the object exactly");
    } else {
        CHECK(0, "shared vertices: create: %s", mmd_last_error());
    }
    mmd_calib_geom_destroy(g);
    mmd_calib_destroy(c);
    run_close(&r);
}

int main(int argc, char **argv)
{
    /* optional argument: run only the part named (grad, errors, recovery) */
    const char *only = argc > 1 ? argv[1] : "";
    mmd_log_set_level(0);
    if (!mkdtemp(g_dir)) {
        CHECK(0, "mkdtemp");
        return TEST_DONE();
    }
    int ok = write_grid_ply("plate.ply", 4, 0, 1, 2, -0.5, 0.5, -0.5, 0.5, 0.0) &&
             write_grid_ply("wall.ply", 2, 1, 2, 0, -3.0, 3.0, -1.0, 3.0, 1.9) &&
             write_text("scene.yaml", "shapes:\n  - {file: plate.ply, material: metal}\n"
                                      "  - {file: wall.ply, material: concrete}\n");
    CHECK(ok, "scene files in %s", g_dir);
    if (mmd_cl_create(NULL, &g_cl) != MMD_OK) {
        CHECK(0, "OpenCL: %s", mmd_last_error());
        ok = 0;
        g_cl = NULL;
    }
    if (g_cl && ok && (!*only || !strcmp(only, "grad"))) {
        const char *slab = "eps_r: 4.5, sigma_s_per_m: 0.3, scattering: 0.4, thickness_m: 0.02, alpha_r: 12";
        const char *half = "eps_r: 6.0, sigma_s_per_m: 0.8, scattering: 0.5, alpha_r: 30";
        for (int j = 0; j < 2; j++) {
            const char *pol = j ? "jones" : "scalar";
            test_gradient(pol, "tr38901", "yaw_deg: 10, pitch_deg: 35", slab);
            test_gradient(pol, "hw_dipole", "yaw_deg: 0, pitch_deg: 30, roll_deg: 20", half);
            test_gradient(pol, "patch", "yaw_deg: -5, pitch_deg: 40", slab);
        }
    }
    if (g_cl && (!*only || !strcmp(only, "errors"))) {
        test_errors();
        test_rotation();
        test_shared_vertices();
    }
    double off[5] = {0, 0, 0.2, 0, 0}, rot[5] = {0, 0, 0, 10 * DEG, 0};
    if (g_cl && (!*only || !strcmp(only, "recovery"))) {
        test_recovery("scalar: offset 0.2 m along the normal", "scalar", off);
        test_recovery("jones: rotated 10 deg about x", "jones", rot);
    }
    const char *names[] = {"plate.ply", "wall.ply", "scene.yaml", "pair.ply"};
    for (int i = 0; i < 4; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/%s", g_dir, names[i]);
        unlink(path);
    }
    rmdir(g_dir);
    if (g_cl) mmd_cl_destroy(g_cl);
    return TEST_DONE();
}
