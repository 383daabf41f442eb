/* The calibration engine (mmd_calib.h, cl/calib.cl): the forward kernel equals a plain-C
 * double reference; every per-object gradient of the reverse sweep (eps_r, sigma, S, K_x
 * of every object, scalar and Jones) equals central differences of that reference in
 * double precision; the transposed beam sum equals the direct sum over bins; replaying
 * records reproduces the simulator's spectra; end to end, the loss gradient agrees with
 * central differences of the loss; the path cache gives the same bits as re-tracing; a
 * few Adam steps lower the loss; the raw <-> physical mapping. */
#include <complex.h>
#include <math.h>
#include <stdlib.h>

#include "mmd_calib.h"
#include "mmd_coverage.h"
#include "mmd_physics.h"
#include "mmd_test.h"

static mmd_cl *g_cl;

typedef struct run {
    mmd_experiment e;
    mmd_scene *scene;
    mmd_bvh *bvh;
    mmd_sim *sim;
} run;

static int run_open(run *r, const char *yaml, const char *const *sets, size_t n_sets)
{
    memset(r, 0, sizeof *r);
    mmd_status st = mmd_experiment_load_string(yaml, "calib.yaml", sets, n_sets, &r->e);
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

static char g_yaml[4096];

static void make_yaml(const char *materials)
{
    snprintf(g_yaml, sizeof g_yaml,
             "scene:\n"
             "  file: %s/scenes/indoor/nist_conference_room/scene.yaml\n"
             "  frequency_hz: 60.0e9\n"
             "  materials:\n%s"
             "tx: {position_m: [1.5, 4.2, 2.2], pattern: iso}\n"
             "rx:\n"
             "  array: {rows: 4, cols: 4, spacing_wavelengths: 0.5, window: hann, element: patch}\n"
             "  poses:\n"
             "    - {position_m: [1.5, 0.6, 1.2], yaw_deg: 90}\n"
             "    - {position_m: [0.5, 1.5, 1.2], yaw_deg: 60}\n"
             "    - {position_m: [2.5, 2.0, 1.4], yaw_deg: 120, pitch_deg: 10}\n"
             "aoa: {azimuth_deg: [-90, 90, 4], elevation_deg: [-44, 44, 4]}\n"
             "solver: {rays: 20000, max_depth: 3, seed: 5}\n",
             mmd_test_shared(), materials);
}

static const char *k_truth = "    concrete: {eps_r: 5.2, sigma_s_per_m: 1.2, scattering: 0.3, xpd: 0.2}\n"
                             "    wood: {eps_r: 2.0, sigma_s_per_m: 0.4, scattering: 0.35, xpd: 0.3, alpha_r: 20}\n"
                             "    plasterboard: {eps_r: 2.9, sigma_s_per_m: 0.3, scattering: 0.2, xpd: 0.1}\n"
                             "    glass: {eps_r: 6.3, sigma_s_per_m: 0.5, scattering: 0.1, xpd: 0.1, thickness_m: 0.006}\n";
static const char *k_guess = "    concrete: {eps_r: 3.0, sigma_s_per_m: 0.3, scattering: 0.15, xpd: 0.3}\n"
                             "    wood: {eps_r: 3.5, sigma_s_per_m: 1.0, scattering: 0.2, xpd: 0.15, alpha_r: 20}\n"
                             "    plasterboard: {eps_r: 2.2, sigma_s_per_m: 0.8, scattering: 0.3, xpd: 0.2}\n"
                             "    glass: {eps_r: 4.0, sigma_s_per_m: 0.2, scattering: 0.2, xpd: 0.2, thickness_m: 0.006}\n";

static void test_mapping(void)
{
    mmd_material m = {0}, back;
    m.eps_r = 5.24, m.sigma_s_per_m = 0.626, m.scattering = 0.3, m.xpd = 0.2;
    float raw[4];
    mmd_calib_material_to_raw(&m, raw);
    back = m;
    mmd_calib_raw_to_material(raw, &back);
    CHECK(fabs(back.eps_r - 5.24) < 1e-5 && fabs(back.sigma_s_per_m - 0.626) < 1e-6 &&
              fabs(back.scattering - 0.3) < 1e-6 && fabs(back.xpd - 0.2) < 1e-6,
          "raw <-> material round trip (%g %g %g %g)", back.eps_r, back.sigma_s_per_m, back.scattering, back.xpd);
    float big[4] = {50, 50, 50, -50};
    mmd_calib_raw_to_material(big, &back);
    CHECK(fabs(back.eps_r - 200) < 1e-9 && fabs(back.sigma_s_per_m - 1e6) < 1e-3 && back.scattering == 1 - 1e-3 &&
              back.xpd == 1e-3,
          "clipped ranges of SPEC 5");
}


/* The kernels against the plain-C double reference, one pose: forward c_i; the reverse
 * sweep against central differences of F(theta) = sum_i u_i c_i(theta) in double (u_i
 * random); the transposed beam sum against the direct sum over bins. */
static void test_kernels(const char *mode)
{
    const char *sets[1] = {mode};
    make_yaml(k_guess);
    run r;
    if (!run_open(&r, g_yaml, sets, 1)) {
        CHECK(0, "run");
        return;
    }
    mmd_calib_options o = mmd_calib_defaults();
    mmd_calib *c = NULL;
    if (mmd_calib_create(r.sim, &o, &c) != MMD_OK) {
        CHECK(0, "calib: %s", mmd_last_error());
        run_close(&r);
        return;
    }
    const mmd_cfg_pose *pose = &r.e.rx.poses[0];
    mmd_cal_vertex *rec = NULL;
    size_t nr = 0, K = (size_t)r.e.solver.max_depth, no = r.scene->n_objects;
    CHECK(mmd_calib_debug_records(c, pose, 0, &rec, &nr) == MMD_OK, "records");
    float *cdev = malloc(sizeof(float) * nr), *u = malloc(sizeof(float) * nr);
    CHECK(mmd_calib_debug_forward(c, pose, 0, cdev) == MMD_OK, "forward");
    /* reference set-up: the same (float-rounded) physical parameters */
    double *theta = malloc(sizeof(double) * 4 * no), *thick = malloc(sizeof(double) * no);
    float *raw = malloc(sizeof(float) * mmd_calib_n_params(c));
    mmd_calib_get_params(c, raw);
    for (size_t ob = 0; ob < no; ob++) {
        mmd_material m;
        mmd_calib_raw_to_material(raw + 4 * mmd_calib_group_of(c, (uint32_t)ob), &m);
        theta[4 * ob] = (float)m.eps_r, theta[4 * ob + 1] = (float)m.sigma_s_per_m;
        theta[4 * ob + 2] = (float)m.scattering, theta[4 * ob + 3] = (float)m.xpd;
        thick[ob] = (float)r.sim->materials[ob].thickness_m;
    }
    mmd_calib_ref x = {.jones = r.e.solver.polarization == MMD_CFG_POL_JONES,
                       .wavelength = r.sim->wavelength,
                       .sig2im = 1.0 / (MMD_EPS0 * 2 * M_PI * r.e.scene.frequency_hz),
                       .thickness = thick};
    memcpy(x.tx_rot, r.sim->tx_rot, sizeof x.tx_rot);
    double R[9];
    mmd_rotation_ypr(pose->yaw_deg * M_PI / 180, pose->pitch_deg * M_PI / 180, pose->roll_deg * M_PI / 180, R);
    double cmax = 0, worst = 0;
    for (size_t i = 0; i < nr; i++) cmax = fmax(cmax, cdev[i]);
    int n_cmp = 0;
    for (size_t i = 0; i < nr; i++) {
        double ref = mmd_calib_ref_ray_power(&x, rec + i * K, (int)K, theta, R);
        if (ref < 1e-4 * cmax) continue;
        n_cmp++;
        worst = fmax(worst, fabs(cdev[i] / ref - 1));
    }
    printf("%s: forward kernel vs double reference over %d rays: worst relative %.2e\n", mode, n_cmp, worst);
    CHECK(n_cmp > 1000 && worst < 1e-3, "%s: mmd_calib_forward = plain-C double reference (%d rays, worst %.2e)",
          mode, n_cmp, worst);

    /* reverse sweep vs double central differences */
    mmd_rng g;
    mmd_rng_seed(&g, 17, 3);
    for (size_t i = 0; i < nr; i++) u[i] = (float)(mmd_rng_uniform(&g) * 2 - 1) / (float)cmax;
    double *ga = malloc(sizeof(double) * 4 * no);
    CHECK(mmd_calib_debug_backward(c, pose, 0, u, ga) == MMD_OK, "backward");
    double gmax = 0;
    for (size_t k = 0; k < 4 * no; k++) gmax = fmax(gmax, fabs(ga[k]));
    int checked = 0, bad = 0;
    double wrel = 0;
    const char *names[4] = {"eps_r", "sigma", "S", "K_x"};
    for (size_t k = 0; k < 4 * no; k++) {
        if (fabs(ga[k]) < 1e-3 * gmax) continue;
        if (!x.jones && k % 4 == 3) continue;
        double t0 = theta[k], h = 1e-5 * fabs(t0), f[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            theta[k] = t0 + (sgn ? -h : h);
            double acc = 0;
            for (size_t i = 0; i < nr; i++) acc += u[i] * mmd_calib_ref_ray_power(&x, rec + i * K, (int)K, theta, R);
            f[sgn] = acc;
        }
        theta[k] = t0;
        double fd = (f[0] - f[1]) / (2 * h), rel = fabs(ga[k] - fd) / fabs(fd);
        checked++;
        if (rel > 1e-3) bad++;
        wrel = fmax(wrel, rel);
        printf("  %s: d/d %-5s of %-12s adjoint %+.6e  double central diff %+.6e  rel %.1e\n", mode, names[k % 4],
               r.scene->objects[k / 4].name, ga[k], fd, rel);
    }
    CHECK(checked >= 6, "%s: gradients checked (%d)", mode, checked);
    CHECK(bad == 0, "%s: reverse sweep = double central differences within 1e-3 (worst %.2e)", mode, wrel);

    /* transposed beam sum vs the direct sum over bins */
    const mmd_cfg_grid *az = &r.e.aoa.azimuth_deg, *el = &r.e.aoa.elevation_deg;
    size_t nb = (size_t)az->count * el->count;
    double *gb = malloc(sizeof(double) * nb);
    for (size_t q = 0; q < nb; q++) gb[q] = mmd_rng_uniform(&g) - 0.3;
    float *dl = malloc(sizeof(float) * nr), *dirs = malloc(sizeof(float) * 3 * nr);
    CHECK(mmd_calib_debug_dldc(c, pose, 0, gb, dl) == MMD_OK, "dldc");
    CHECK(mmd_sim_ray_dirs(r.sim, pose, 1, dirs) == MMD_OK, "ray directions");
    double wb = 0, scale = 0;
    for (size_t i = 0; i < nr; i += 97) {
        double ui[3] = {dirs[3 * i], dirs[3 * i + 1], dirs[3 * i + 2]}, sum = 0;
        for (int j = 0; j < el->count; j++)
            for (int a = 0; a < az->count; a++) {
                double ub[3];
                mmd_dir_from_az_el((az->start + a * az->step) * M_PI / 180, (el->start + j * el->step) * M_PI / 180, ub);
                sum += gb[(size_t)j * az->count + a] * mmd_ura_beam(&r.sim->ura, ui, ub);
            }
        sum *= mmd_antenna_gain(&r.sim->rx_ant, ui);
        scale = fmax(scale, fabs(sum));
        wb = fmax(wb, fabs(dl[i] - sum));
    }
    CHECK(wb < 1e-4 * scale, "%s: transposed beam sum = direct sum over bins (worst %.2e of %.2e)", mode, wb, scale);
    free(gb);
    free(dl);
    free(dirs);
    free(ga);
    free(theta);
    free(thick);
    free(raw);
    free(cdev);
    free(u);
    free(rec);
    mmd_calib_destroy(c);
    run_close(&r);
}

/* measured spectra of the ground truth */
/* Central difference of the loss in raw parameter i (step h, rounded to float as the
 * parameters are); the parameters are restored to raw afterwards. */
static double loss_central_diff(mmd_calib *c, const mmd_cfg_pose *poses, const size_t *ids, const float *const *mp,
                                size_t n, const float *raw, size_t np, size_t i, double h)
{
    float *p2 = malloc(sizeof(float) * np);
    double lp = 0, lm = 0;
    memcpy(p2, raw, sizeof(float) * np);
    p2[i] = raw[i] + (float)h;
    double hp = (double)p2[i] - raw[i];
    mmd_calib_set_params(c, p2);
    mmd_calib_loss(c, poses, ids, mp, n, &lp, 0, NULL);
    p2[i] = raw[i] - (float)h;
    double hm = (double)raw[i] - p2[i];
    mmd_calib_set_params(c, p2);
    mmd_calib_loss(c, poses, ids, mp, n, &lm, 0, NULL);
    mmd_calib_set_params(c, raw);
    free(p2);
    return (lp - lm) / (hp + hm);
}

static float *truth_spectra(const char *const *sets, size_t n_sets, size_t *nbins)
{
    make_yaml(k_truth);
    run r;
    if (!run_open(&r, g_yaml, sets, n_sets)) return NULL;
    mmd_aoa_result res;
    float *out = NULL;
    if (mmd_sim_aoa(r.sim, r.e.rx.poses, r.e.rx.n_poses, &res, NULL, NULL) == MMD_OK) {
        *nbins = (size_t)res.n_az * res.n_el;
        out = malloc(sizeof(float) * res.n_poses * *nbins);
        memcpy(out, res.spectra, sizeof(float) * res.n_poses * *nbins);
        mmd_aoa_result_free(&res);
    }
    run_close(&r);
    return out;
}

static void test_gradients(const char *mode, mmd_calib_loss_kind kind)
{
    const char *kind_name = kind == MMD_CALIB_LOG_MSE ? "log-MSE" : "log-MAE";
    /* End to end through the float pipeline: the beam sum's float rounding (~1e-4 of a
     * bin) does not follow a 2e-3 parameter step smoothly, and log-MAE has a kink per bin,
     * so this check is loose; the exact one is test_kernels (double reference). */
    const double tol = 8e-2;
    const char *sets[1] = {mode};
    size_t nbins = 0;
    float *meas = truth_spectra(sets, 1, &nbins);
    if (!meas) {
        CHECK(0, "truth run");
        return;
    }
    make_yaml(k_guess);
    run r;
    if (!run_open(&r, g_yaml, sets, 1)) {
        free(meas);
        CHECK(0, "guess run");
        return;
    }
    mmd_calib_options o = mmd_calib_defaults();
    o.fit_scale = 0;
    o.loss = kind;
    mmd_calib *c = NULL;
    if (mmd_calib_create(r.sim, &o, &c) != MMD_OK) {
        CHECK(0, "calib create: %s", mmd_last_error());
        run_close(&r);
        free(meas);
        return;
    }
    size_t n = r.e.rx.n_poses, ids[3] = {0, 1, 2};
    const float *mp[3] = {meas, meas + nbins, meas + 2 * nbins};

    /* replay == simulator (same pose ids, same rays) */
    float *pred = malloc(sizeof(float) * n * nbins);
    double loss = 0;
    CHECK(mmd_calib_loss(c, r.e.rx.poses, ids, mp, n, &loss, 0, pred) == MMD_OK, "%s: loss: %s", mode,
          mmd_last_error());
    mmd_aoa_result ref;
    if (mmd_sim_aoa(r.sim, r.e.rx.poses, n, &ref, NULL, NULL) == MMD_OK) {
        double worst = 0;
        for (size_t q = 0; q < n * nbins; q++)
            if (ref.spectra[q] > 0) worst = fmax(worst, fabs(pred[q] / ref.spectra[q] - 1));
        CHECK(worst < 2e-4, "%s: replayed spectra equal the simulator's (worst relative %.2e)", mode, worst);
        mmd_aoa_result_free(&ref);
    }

    /* analytic gradient vs central differences of the loss */
    size_t np = mmd_calib_n_params(c);
    float *raw = malloc(sizeof(float) * np), *grad = malloc(sizeof(float) * np), *p2 = malloc(sizeof(float) * np);
    mmd_calib_get_params(c, raw);
    mmd_calib_zero_grad(c);
    CHECK(mmd_calib_loss(c, r.e.rx.poses, ids, mp, n, &loss, 1, NULL) == MMD_OK, "%s: loss+grad", mode);
    mmd_calib_get_grad(c, grad);
    double gmax = 0;
    for (size_t i = 0; i < np; i++) gmax = fmax(gmax, fabs(grad[i]));
    int checked = 0, bad = 0;
    double worst = 0;
    const char *names[4] = {"eps_r", "sigma", "S", "K_x"};
    for (size_t i = 0; i < np; i++) {
        if (fabs(grad[i]) < 1e-2 * gmax) continue;
        double fd = loss_central_diff(c, r.e.rx.poses, ids, mp, n, raw, np, i, 2e-3);
        double rel = fabs(fd - grad[i]) / fabs(fd);
        checked++;
        if (rel > tol) bad++;
        worst = fmax(worst, rel);
        printf("  %s %s: material %-12s %-5s analytic %+.6e  central diff %+.6e  rel %.1e\n", mode, kind_name,
               mmd_calib_group_name(c, (uint32_t)(i / 4)), names[i % 4], grad[i], fd, rel);
    }
    mmd_calib_set_params(c, raw);
    CHECK(checked >= 6, "%s: enough gradients checked (%d)", mode, checked);
    CHECK(bad == 0, "%s %s: analytic = central differences within %g (worst relative error %.2e)", mode, kind_name,
          tol, worst);

    /* a few Adam steps lower the loss */
    double l0 = 0, l1 = 0;
    mmd_calib_loss(c, r.e.rx.poses, ids, mp, n, &l0, 0, NULL);
    for (int it = 0; it < 20; it++) {
        double l;
        mmd_calib_zero_grad(c);
        mmd_calib_loss(c, r.e.rx.poses, ids, mp, n, &l, 1, NULL);
        mmd_calib_adam(c, 0.05);
    }
    mmd_calib_loss(c, r.e.rx.poses, ids, mp, n, &l1, 0, NULL);
    printf("%s: loss %.4f -> %.4f after 20 Adam steps\n", mode, l0, l1);
    CHECK(l1 < 0.8 * l0, "%s: 20 Adam steps lower the loss (%.4f -> %.4f)", mode, l0, l1);
    mmd_calib_timing tm = mmd_calib_get_timing(c);
    CHECK(tm.cache_misses == n, "%s: each pose traced once, then replayed from the cache (%zu misses, %zu hits)",
          mode, tm.cache_misses, tm.cache_hits);

    /* no cache: identical numbers */
    mmd_calib *c2 = NULL;
    o.cache_bytes = 0;
    if (mmd_calib_create(r.sim, &o, &c2) == MMD_OK) {
        mmd_calib_set_params(c2, raw);
        mmd_calib_set_params(c, raw);
        double la, lb;
        float *ga = malloc(sizeof(float) * np), *gb = malloc(sizeof(float) * np);
        mmd_calib_zero_grad(c);
        mmd_calib_zero_grad(c2);
        mmd_calib_loss(c, r.e.rx.poses, ids, mp, n, &la, 1, NULL);
        mmd_calib_loss(c2, r.e.rx.poses, ids, mp, n, &lb, 1, NULL);
        mmd_calib_get_grad(c, ga);
        mmd_calib_get_grad(c2, gb);
        CHECK(la == lb && !memcmp(ga, gb, sizeof(float) * np), "%s: cache off = cache on, bit for bit", mode);
        CHECK(mmd_calib_get_timing(c2).cache_hits == 0, "%s: no cache, no hits", mode);
        free(ga);
        free(gb);
        mmd_calib_destroy(c2);
    }
    free(raw);
    free(grad);
    free(p2);
    free(pred);
    mmd_calib_destroy(c);
    run_close(&r);
    free(meas);
}


/* Recovery (issue 5): spectra of the ground-truth materials at 5 poses; calibration from
 * wrong materials (120 Adam steps, lr 0.05). The loss must fall by 10x and each observable
 * material's |R_TE|, |R_TM| over 0-80 deg must come within 0.5 dB. */
static void test_recovery(void)
{
    const char *poses_yaml =
        "    - {position_m: [1.5, 0.6, 1.2], yaw_deg: 90}\n"
        "    - {position_m: [0.5, 1.5, 1.2], yaw_deg: 60}\n"
        "    - {position_m: [2.5, 2.0, 1.4], yaw_deg: 120, pitch_deg: 10}\n"
        "    - {position_m: [1.0, 3.0, 1.0], yaw_deg: 0, pitch_deg: 20}\n"
        "    - {position_m: [1.5, 2.2, 2.4], yaw_deg: 270, pitch_deg: -40}\n";
    char yaml[8192];
    const char *fmt =
        "scene:\n  file: %s/scenes/indoor/nist_conference_room/scene.yaml\n  frequency_hz: 60.0e9\n  materials:\n%s"
        "tx: {position_m: [1.5, 4.2, 2.2], pattern: iso}\n"
        "rx:\n  array: {rows: 4, cols: 4, spacing_wavelengths: 0.5, window: hann, element: patch}\n  poses:\n%s"
        "aoa: {azimuth_deg: [-90, 90, 3], elevation_deg: [-45, 45, 3]}\n"
        "solver: {rays: %d, max_depth: 3, seed: %d}\n";
    /* the same sampling as the calibration (seed, rays): the recovery is then limited by
     * the optimiser and the gradients, not by Monte Carlo noise (the realistic case with
     * independent sampling is the protocol's, docs/calibration.md) */
    snprintf(yaml, sizeof yaml, fmt, mmd_test_shared(), k_truth, poses_yaml, 10000, 5);
    run r;
    if (!run_open(&r, yaml, NULL, 0)) {
        CHECK(0, "truth");
        return;
    }
    mmd_aoa_result gt;
    if (mmd_sim_aoa(r.sim, r.e.rx.poses, r.e.rx.n_poses, &gt, NULL, NULL) != MMD_OK) {
        CHECK(0, "truth spectra");
        run_close(&r);
        return;
    }
    size_t n = gt.n_poses, nbins = (size_t)gt.n_az * gt.n_el;
    mmd_material truth[16];
    uint32_t no = r.scene->n_objects;
    for (uint32_t o = 0; o < no && o < 16; o++) truth[o] = r.sim->materials[o];
    run_close(&r);
    snprintf(yaml, sizeof yaml, fmt, mmd_test_shared(), k_guess, poses_yaml, 10000, 5);
    if (!run_open(&r, yaml, NULL, 0)) {
        CHECK(0, "guess");
        mmd_aoa_result_free(&gt);
        return;
    }
    mmd_calib_options o = mmd_calib_defaults();
    o.fit_scale = 0;
    mmd_calib *c = NULL;
    if (mmd_calib_create(r.sim, &o, &c) != MMD_OK) {
        CHECK(0, "calib: %s", mmd_last_error());
        run_close(&r);
        mmd_aoa_result_free(&gt);
        return;
    }
    size_t ids[16];
    const float *mp[16];
    for (size_t k = 0; k < n; k++) ids[k] = k, mp[k] = gt.spectra + k * nbins;
    double l0 = 0, l = 0;
    const int steps = getenv("MMD_RECOVERY_STEPS") ? atoi(getenv("MMD_RECOVERY_STEPS")) : 120;
    const double lr = getenv("MMD_RECOVERY_LR") ? atof(getenv("MMD_RECOVERY_LR")) : 0.05;
    double t0 = mmd_now();
    for (int it = 0; it < steps; it++) {
        mmd_calib_zero_grad(c);
        mmd_calib_loss(c, r.e.rx.poses, ids, mp, n, &l, 1, NULL);
        if (it == 0) l0 = l;
        mmd_calib_adam(c, lr);
    }
    mmd_calib_loss(c, r.e.rx.poses, ids, mp, n, &l, 0, NULL);
    double dt = mmd_now() - t0;
    printf("recovery: loss %.4f -> %.4f in %d Adam steps (%zu poses x %d rays, %.0f ms per step)\n", l0, l, steps, n,
           r.e.solver.rays, 1e3 * dt / (steps + 1));
    mmd_calib_timing tm = mmd_calib_get_timing(c);
    printf("recovery: time trace %.2f s, replay %.2f s, beam %.2f s, backward %.2f s, host %.2f s, sim trace %.2f s, "
           "sim reduce %.2f s\n",
           tm.trace, tm.replay, tm.beam, tm.backward, tm.host, r.sim->t_trace, r.sim->t_reduce);
    CHECK(l < l0 / 10, "recovery: the loss falls by >= 10x (%.4f -> %.4f)", l0, l);
    mmd_material learned[16];
    mmd_calib_materials(c, learned);
    for (uint32_t g = 0; g < mmd_calib_n_groups(c); g++) {
        uint32_t ob = 0;
        while (ob < no && mmd_calib_group_of(c, ob) != g) ob++;
        /* |R| in dB with a -26 dB floor: inside the TM Brewster dip the dB value is set by
         * the weak loss tangent alone and is not a meaningful target */
        double worst = 0;
        for (int deg = 0; deg <= 80; deg += 2) {
            double complex Ra[2], Ta[2], Rb[2], Tb[2];
            double ct = cos(deg * M_PI / 180);
            mmd_material_fresnel(&truth[ob], 60e9, ct, Ra, Ta);
            mmd_material_fresnel(&learned[ob], 60e9, ct, Rb, Tb);
            for (int pol = 0; pol < 2; pol++)
                worst = fmax(worst, fabs(20 * log10(fmax(cabs(Rb[pol]), 0.05) / fmax(cabs(Ra[pol]), 0.05))));
        }
        /* the 6 mm glass window hangs 0.3 m behind the TX: from every pose its reflection
         * arrives within ~2 deg of the LoS and is not separable by a 4 x 4 array */
        int observable = strcmp(mmd_calib_group_name(c, g), "glass") != 0;
        printf("recovery: %-12s eps_r %.2f (truth %.2f), sigma %.3f (%.3f), S %.3f (%.3f): |R_TE|, |R_TM| 0-80 deg "
               "within %.2f dB%s\n",
               mmd_calib_group_name(c, g), learned[ob].eps_r, truth[ob].eps_r, learned[ob].sigma_s_per_m,
               truth[ob].sigma_s_per_m, learned[ob].scattering, truth[ob].scattering, worst,
               observable ? "" : " (not separable from the LoS here: not required)");
        if (observable)
            CHECK(worst < 0.5, "recovery: %s reflection curves within 0.5 dB (%.2f)", mmd_calib_group_name(c, g),
                  worst);
    }
    mmd_calib_destroy(c);
    run_close(&r);
    mmd_aoa_result_free(&gt);
}

/* Neural field: the engine's MLP gradient of F = sum_i u_i c_i against central
 * differences of the double reference (plain-C MLP + plain-C replay) on sampled entries of
 * every weight tensor; and a few Adam steps of the neural model lower the loss. */
static void test_neural(void)
{
    make_yaml(k_guess);
    const char *sets[2] = {"solver.rays=2000", "solver.polarization=jones"};
    run r;
    if (!run_open(&r, g_yaml, sets, 2)) {
        CHECK(0, "run");
        return;
    }
    mmd_calib_options o = mmd_calib_defaults();
    o.model = MMD_CALIB_NEURAL;
    o.mlp.seed = 3;
    mmd_calib *c = NULL;
    if (mmd_calib_create(r.sim, &o, &c) != MMD_OK) {
        CHECK(0, "neural calib: %s", mmd_last_error());
        run_close(&r);
        return;
    }
    const mmd_cfg_pose *pose = &r.e.rx.poses[0];
    mmd_cal_vertex *rec = NULL;
    size_t nr = 0, K = (size_t)r.e.solver.max_depth, nv, np = mmd_calib_n_params(c);
    CHECK(mmd_calib_debug_records(c, pose, 0, &rec, &nr) == MMD_OK, "records");
    nv = nr * K;
    float *cdev = malloc(sizeof(float) * nr), *u = malloc(sizeof(float) * nr), *gdev = malloc(sizeof(float) * np);
    float *pf = malloc(sizeof(float) * np), *pos = malloc(sizeof(float) * 3 * nv);
    double *pd = malloc(sizeof(double) * np), *thv = malloc(sizeof(double) * 4 * nv);
    double *thick = malloc(sizeof(double) * r.scene->n_objects);
    CHECK(mmd_calib_debug_forward(c, pose, 0, cdev) == MMD_OK, "neural forward");
    const mmd_scene *sc = r.scene;
    for (size_t v = 0; v < nv; v++)
        for (int k = 0; k < 3; k++) {
            float ext = sc->bbox_max[k] - sc->bbox_min[k], sk = 2.0f / ext;
            pos[3 * v + k] = rec[v].obj == 0xffffffffu ? 0.0f : (rec[v].p[k] - sc->bbox_min[k]) * sk - 1.0f;
        }
    for (uint32_t ob = 0; ob < r.scene->n_objects; ob++) thick[ob] = (float)r.sim->materials[ob].thickness_m;
    mmd_calib_ref x = {.jones = 1, .wavelength = r.sim->wavelength,
                       .sig2im = 1.0 / (MMD_EPS0 * 2 * M_PI * r.e.scene.frequency_hz), .thickness = thick};
    memcpy(x.tx_rot, r.sim->tx_rot, sizeof x.tx_rot);
    double R[9];
    mmd_rotation_ypr(pose->yaw_deg * M_PI / 180, pose->pitch_deg * M_PI / 180, pose->roll_deg * M_PI / 180, R);
    mmd_calib_get_params(c, pf);
    for (size_t i = 0; i < np; i++) pd[i] = pf[i];
    const mmd_mlp_config *mc = mmd_mlp_get_config(mmd_calib_mlp(c));
    /* the field in double, then the reference replay */
    mmd_mlp_ref_forward(mc, pd, pos, nv, thv);
    double cmax = 0, worst = 0;
    for (size_t i = 0; i < nr; i++) cmax = fmax(cmax, cdev[i]);
    for (size_t i = 0; i < nr; i++) {
        double ref = mmd_calib_ref_ray_power_v(&x, rec + i * K, (int)K, thv + 4 * i * K, 1, R);
        if (ref > 1e-4 * cmax) worst = fmax(worst, fabs(cdev[i] / ref - 1));
    }
    CHECK(worst < 1e-3, "neural: forward (field + replay) = double reference (worst relative %.2e)", worst);
    mmd_rng g;
    mmd_rng_seed(&g, 5, 9);
    for (size_t i = 0; i < nr; i++) u[i] = (float)(mmd_rng_uniform(&g) * 2 - 1) / (float)cmax;
    CHECK(mmd_calib_debug_backward_mlp(c, pose, 0, u, gdev) == MMD_OK, "neural backward");
    int checked = 0, bad = 0;
    double wrel = 0;
    for (int t = 0;; t++) {
        size_t off;
        int rows, cols;
        char name[64];
        if (!mmd_mlp_config_tensor(mc, t, &off, &rows, &cols, name, sizeof name)) break;
        size_t cnt = (size_t)rows * cols;
        /* the entry with the largest gradient and two random ones */
        size_t pick[3] = {off, off + (size_t)(mmd_rng_uniform(&g) * cnt), off + (size_t)(mmd_rng_uniform(&g) * cnt)};
        if (pick[2] == pick[1]) pick[2] = off + (pick[1] - off + 1) % cnt;
        for (size_t q = off; q < off + cnt; q++)
            if (fabs(gdev[q]) > fabs(gdev[pick[0]])) pick[0] = q;
        for (int pk = 0; pk < 3; pk++) {
            size_t e = pick[pk];
            if (pk > 0 && fabs(gdev[e]) < 1e-2 * fabs(gdev[pick[0]])) continue;
            double w0 = pd[e], h = 1e-4 * fmax(fabs(w0), 1e-2), f[2];
            for (int sg = 0; sg < 2; sg++) {
                pd[e] = w0 + (sg ? -h : h);
                mmd_mlp_ref_forward(mc, pd, pos, nv, thv);
                double acc = 0;
                for (size_t i = 0; i < nr; i++)
                    acc += u[i] * mmd_calib_ref_ray_power_v(&x, rec + i * K, (int)K, thv + 4 * i * K, 1, R);
                f[sg] = acc;
            }
            pd[e] = w0;
            double fd = (f[0] - f[1]) / (2 * h), rel = fabs(gdev[e] - fd) / fmax(fabs(fd), 1e-30);
            checked++;
            if (rel > 1e-3) bad++;
            wrel = fmax(wrel, rel);
            printf("  neural: %-14s entry %6zu  engine %+.6e  double central diff %+.6e  rel %.1e\n", name, e - off,
                   gdev[e], fd, rel);
        }
    }
    CHECK(checked >= 10, "neural: entries of every tensor checked (%d)", checked);
    CHECK(bad == 0, "neural: MLP gradient through the engine = double central differences within 1e-3 (worst %.2e)",
          wrel);
    /* training lowers the loss */
    size_t nbins = 0;
    const char *tset[1] = {"solver.polarization=jones"};
    float *meas = truth_spectra(tset, 1, &nbins);
    if (meas && nbins) {
        /* the truth run used 20000 rays: compare the shapes only through the loss trend */
        size_t ids[3] = {0, 1, 2};
        const float *mp[3] = {meas, meas + nbins, meas + 2 * nbins};
        double l0 = 0, l1 = 0, l;
        mmd_calib_loss(c, r.e.rx.poses, ids, mp, 3, &l0, 0, NULL);
        for (int it = 0; it < 30; it++) {
            mmd_calib_zero_grad(c);
            mmd_calib_loss(c, r.e.rx.poses, ids, mp, 3, &l, 1, NULL);
            mmd_calib_adam(c, 5e-3);
        }
        mmd_calib_loss(c, r.e.rx.poses, ids, mp, 3, &l1, 0, NULL);
        printf("neural: loss %.4f -> %.4f after 30 Adam steps\n", l0, l1);
        CHECK(l1 < 0.7 * l0, "neural: 30 Adam steps lower the loss (%.4f -> %.4f)", l0, l1);
    }
    free(meas);
    free(cdev), free(u), free(gdev), free(pf), free(pos), free(pd), free(thv), free(thick), free(rec);
    mmd_calib_destroy(c);
    run_close(&r);
}

/* Issue 5: the neural field reaches a held-out-pose log-MAE within 20% of the
 * ground-truth model's (a study of minutes: MMD_CALIB_ONLY=heldout). The measurements and
 * the models sample independently (other seed), so even the ground-truth materials leave
 * a Monte Carlo residual; the field is trained on 6 poses and judged on 2 it never saw. */
static void test_heldout(void)
{
    /* 6 training poses, then the 2 held-out ones; MMD_HELDOUT_TRAIN=n (6..32) adds n - 6
     * training poses from a fixed generator (the held-out pair never changes) */
    const char *train_yaml =
        "    - {position_m: [1.5, 0.6, 1.2], yaw_deg: 90}\n"
        "    - {position_m: [0.5, 1.5, 1.2], yaw_deg: 60}\n"
        "    - {position_m: [2.5, 2.0, 1.4], yaw_deg: 120, pitch_deg: 10}\n"
        "    - {position_m: [1.0, 3.0, 1.0], yaw_deg: 0, pitch_deg: 20}\n"
        "    - {position_m: [1.5, 2.2, 2.4], yaw_deg: 270, pitch_deg: -40}\n"
        "    - {position_m: [2.2, 3.4, 1.5], yaw_deg: 200}\n";
    /* MMD_HELDOUT_VALSET=2: a second held-out pair, to confirm on poses nobody looked at
     * what was chosen on the first */
    const int valset = getenv("MMD_HELDOUT_VALSET") ? atoi(getenv("MMD_HELDOUT_VALSET")) : 1;
    const char *val_yaml = valset == 2 ? "    - {position_m: [1.2, 1.0, 1.5], yaw_deg: 110, pitch_deg: 5}\n"
                                         "    - {position_m: [2.3, 2.8, 1.1], yaw_deg: 240, pitch_deg: -5}\n"
                                       : "    - {position_m: [0.8, 2.4, 1.3], yaw_deg: 30, pitch_deg: 10}\n"
                                         "    - {position_m: [2.0, 1.2, 1.8], yaw_deg: 150, pitch_deg: -10}\n";
    int n_train_env = getenv("MMD_HELDOUT_TRAIN") ? atoi(getenv("MMD_HELDOUT_TRAIN")) : 6;
    const size_t n_train = (size_t)(n_train_env < 6 ? 6 : n_train_env > 32 ? 32 : n_train_env), n_val = 2;
    char poses_yaml[4096];
    size_t len = (size_t)snprintf(poses_yaml, sizeof poses_yaml, "%s", train_yaml);
    uint64_t lcg = 12345;
#define HO_U01() ((lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL), (double)(lcg >> 11) / 9007199254740992.0)
    for (size_t k = 6; k < n_train; k++) {
        double x = 0.5 + 2.0 * HO_U01(), y = 0.6 + 2.8 * HO_U01(), z = 1.0 + 1.2 * HO_U01();
        double yaw = 360.0 * HO_U01(), pitch = -20.0 + 40.0 * HO_U01();
        len += (size_t)snprintf(poses_yaml + len, sizeof poses_yaml - len,
                                "    - {position_m: [%.3f, %.3f, %.3f], yaw_deg: %.1f, pitch_deg: %.1f}\n", x, y, z,
                                yaw, pitch);
    }
#undef HO_U01
    snprintf(poses_yaml + len, sizeof poses_yaml - len, "%s", val_yaml);
    char yaml[8192];
    const char *fmt =
        "scene:\n  file: %s/scenes/indoor/nist_conference_room/scene.yaml\n  frequency_hz: 60.0e9\n  materials:\n%s"
        "tx: {position_m: [1.5, 4.2, 2.2], pattern: iso}\n"
        "rx:\n  array: {rows: 4, cols: 4, spacing_wavelengths: 0.5, window: hann, element: patch}\n  poses:\n%s"
        "aoa: {azimuth_deg: [-90, 90, 3], elevation_deg: [-45, 45, 3]}\n"
        "solver: {rays: %d, max_depth: 3, seed: %d, polarization: jones}\n";
    const int rays = getenv("MMD_HELDOUT_RAYS") ? atoi(getenv("MMD_HELDOUT_RAYS")) : 6000;
    snprintf(yaml, sizeof yaml, fmt, mmd_test_shared(), k_truth, poses_yaml, 4 * rays, 5);
    run r;
    mmd_aoa_result gt;
    if (!run_open(&r, yaml, NULL, 0) || mmd_sim_aoa(r.sim, r.e.rx.poses, r.e.rx.n_poses, &gt, NULL, NULL) != MMD_OK) {
        CHECK(0, "held-out: truth: %s", mmd_last_error());
        run_close(&r);
        return;
    }
    run_close(&r);
    size_t nbins = (size_t)gt.n_az * gt.n_el, ids[34];
    const float *mp[34];
    for (size_t k = 0; k < n_train + n_val; k++) ids[k] = k, mp[k] = gt.spectra + k * nbins;
    mmd_calib_options o = mmd_calib_defaults();
    o.fit_scale = 0;
    o.loss = MMD_CALIB_LOG_MAE;
    /* the ground-truth model, sampled independently of the measurements */
    double l_gt = -1, l_start = -1, l_nn = -1;
    snprintf(yaml, sizeof yaml, fmt, mmd_test_shared(), k_truth, poses_yaml, rays, 11);
    mmd_calib *c = NULL;
    if (run_open(&r, yaml, NULL, 0) && mmd_calib_create(r.sim, &o, &c) == MMD_OK)
        mmd_calib_loss(c, r.e.rx.poses + n_train, ids + n_train, mp + n_train, n_val, &l_gt, 0, NULL);
    mmd_calib_destroy(c);
    run_close(&r);
    /* the neural field from its seeded initialisation */
    snprintf(yaml, sizeof yaml, fmt, mmd_test_shared(), k_guess, poses_yaml, rays, 11);
    o.model = MMD_CALIB_NEURAL;
    o.mlp.seed = 1;
    /* 2 octaves: six training poses cannot pin down a field that varies on the 6-octave
     * scale (room / 64), which then fits their Monte Carlo noise (ratio 1.30 on PoCL, 1.63 on
     * an H100 at 6 octaves). Chosen on the first held-out pair (1.024 PoCL, 1.032 H100),
     * confirmed on the second, which nobody had looked at (0.764 PoCL): BENCHMARKS.md */
    o.mlp.octaves = getenv("MMD_HELDOUT_OCTAVES") ? atoi(getenv("MMD_HELDOUT_OCTAVES")) : 2;
    c = NULL;
    const int steps = getenv("MMD_HELDOUT_STEPS") ? atoi(getenv("MMD_HELDOUT_STEPS")) : 150;
    const double lr = getenv("MMD_HELDOUT_LR") ? atof(getenv("MMD_HELDOUT_LR")) : 5e-3;
    double t0 = mmd_now(), l = 0;
    if (run_open(&r, yaml, NULL, 0) && mmd_calib_create(r.sim, &o, &c) == MMD_OK) {
        mmd_calib_loss(c, r.e.rx.poses + n_train, ids + n_train, mp + n_train, n_val, &l_start, 0, NULL);
        for (int it = 0; it < steps; it++) {
            mmd_calib_zero_grad(c);
            mmd_calib_loss(c, r.e.rx.poses, ids, mp, n_train, &l, 1, NULL);
            mmd_calib_adam(c, lr);
        }
        mmd_calib_loss(c, r.e.rx.poses + n_train, ids + n_train, mp + n_train, n_val, &l_nn, 0, NULL);
    }
    printf("held-out log-MAE (2 poses): ground-truth materials %.4f, neural field %.4f (ratio %.3f) after %d steps "
           "(lr %g, %zu training poses, %d octaves, held-out set %d; start %.4f, last training loss %.4f), %.1f s\n",
           l_gt, l_nn, l_nn / l_gt, steps, lr, n_train, o.mlp.octaves, valset, l_start, l, mmd_now() - t0);
    CHECK(l_gt > 0 && l_nn > 0, "held-out: losses computed (%s)", mmd_last_error());
    CHECK(l_start > 1.5 * l_gt, "held-out: the untrained field is clearly worse than the ground truth (%.4f vs %.4f)",
          l_start, l_gt);
    CHECK(l_nn <= 1.2 * l_gt, "held-out: the neural field's log-MAE is within 20%% of the ground-truth model's "
          "(%.4f vs %.4f, ratio %.3f)", l_nn, l_gt, l_nn / l_gt);
    mmd_calib_destroy(c);
    run_close(&r);
    mmd_aoa_result_free(&gt);
}

/* Coverage with the neural field (predict): the field at every triangle's centroid
 * (mmd_calib_triangle_materials) equals the plain-C MLP there; a constant field through
 * the per-triangle material table (mmd_sim_set_triangle_materials) gives the per-object
 * coverage map bit for bit; a seeded field changes it. */
static void test_neural_coverage(void)
{
    const char *sets[1] = {"solver.rays=3000"};
    make_yaml(k_guess);
    run r, r2;
    if (!run_open(&r, g_yaml, sets, 1) || !run_open(&r2, g_yaml, sets, 1)) {
        CHECK(0, "neural coverage runs");
        return;
    }
    mmd_calib_options o = mmd_calib_defaults();
    o.model = MMD_CALIB_NEURAL;
    o.mlp.seed = 7;
    mmd_calib *c = NULL;
    mmd_status st = mmd_calib_create(r.sim, &o, &c);
    size_t nt = r.scene->n_triangles, np = c ? mmd_calib_n_params(c) : 0;
    mmd_material *tm = malloc(nt * sizeof *tm);
    float *raw = malloc((np ? np : 1) * sizeof *raw);
    double *dp = malloc((np ? np : 1) * sizeof *dp), *ref = malloc(4 * 64 * sizeof *ref);
    float *pos = malloc(3 * 64 * sizeof *pos);
    if (st != MMD_OK || !tm || !raw || !dp || !ref || !pos) {
        CHECK(0, "neural coverage setup: %s", mmd_last_error());
        goto done;
    }
    /* (a) the seeded field at 64 triangles against the plain-C MLP */
    st = mmd_calib_triangle_materials(c, tm);
    CHECK(st == MMD_OK, "triangle materials: %s", mmd_last_error());
    mmd_calib_get_params(c, raw);
    for (size_t i = 0; i < np; i++) dp[i] = raw[i];
    size_t stride = nt / 64 ? nt / 64 : 1, nref = 0;
    for (size_t t = 0; t < nt && nref < 64; t += stride, nref++)
        for (int q = 0; q < 3; q++) {
            float ctr = 0.0f;
            for (int j = 0; j < 3; j++) ctr += r.scene->vertices[3 * (size_t)r.scene->indices[3 * t + j] + q];
            double ext = (double)r.scene->bbox_max[q] - r.scene->bbox_min[q];
            pos[3 * nref + q] = (ctr / 3.0f - r.scene->bbox_min[q]) * (float)(ext > 0 ? 2.0 / ext : 0.0) - 1.0f;
        }
    double worst = 0;
    if (st == MMD_OK && mmd_mlp_ref_forward(mmd_mlp_get_config(mmd_calib_mlp(c)), dp, pos, nref, ref) == MMD_OK) {
        size_t k = 0;
        for (size_t t = 0; t < nt && k < nref; t += stride, k++) {
            double got[4] = {tm[t].eps_r, tm[t].sigma_s_per_m, tm[t].scattering, tm[t].xpd};
            for (int q = 0; q < 4; q++) worst = fmax(worst, fabs(got[q] - ref[4 * k + q]) / fmax(fabs(ref[4 * k + q]), 1e-3));
            const mmd_material *om = &r.sim->materials[r.scene->tri_object[t]];
            CHECK(tm[t].thickness_m == om->thickness_m && tm[t].alpha_r == om->alpha_r,
                  "triangle %zu keeps its object's thickness and alpha_r", t);
        }
    }
    printf("neural field at triangle centroids vs the plain-C MLP: worst relative difference %.2e (%zu triangles)\n",
           worst, nref);
    CHECK(worst < 1e-4, "field at triangle centroids = plain-C MLP (worst relative %.2e)", worst);
    mmd_cfg_coverage cc = r.e.coverage;
    cc.z_m = 1.2, cc.cell_m = 0.25, cc.rays = 20000, cc.has_extent = 0;
    mmd_coverage_map seeded = {0}, a = {0}, b = {0};
    if (st == MMD_OK) st = mmd_sim_set_triangle_materials(r2.sim, tm);
    if (st == MMD_OK) st = mmd_sim_coverage(r2.sim, &cc, &seeded, NULL, NULL);
    /* (b) a constant field: all weights 0 */
    for (size_t i = 0; i < np; i++) raw[i] = 0.0f;
    if (st == MMD_OK) st = mmd_calib_set_params(c, raw);
    if (st == MMD_OK) st = mmd_calib_triangle_materials(c, tm);
    if (st == MMD_OK) st = mmd_sim_set_triangle_materials(r2.sim, tm);
    if (st == MMD_OK) st = mmd_sim_coverage(r2.sim, &cc, &a, NULL, NULL);
    for (uint32_t ob = 0; st == MMD_OK && ob < r.scene->n_objects; ob++)
        if (r.scene->objects[ob].n_tris) st = mmd_sim_set_material(r.sim, ob, &tm[r.scene->objects[ob].first_tri]);
    if (st == MMD_OK) st = mmd_sim_coverage(r.sim, &cc, &b, NULL, NULL);
    CHECK(st == MMD_OK, "neural coverage maps: %s", mmd_last_error());
    if (st == MMD_OK) {
        size_t n = (size_t)a.nx * a.ny, differ = 0;
        for (size_t i = 0; i < n; i++) differ += seeded.gain[i] != a.gain[i];
        CHECK(a.nx == b.nx && a.ny == b.ny && !memcmp(a.gain, b.gain, n * sizeof *a.gain) &&
                  !memcmp(a.count, b.count, n * sizeof *a.count),
              "a constant field through the per-triangle table = the per-object coverage map, bit for bit");
        CHECK(differ > n / 4, "the seeded field gives another map (%zu of %zu cells differ)", differ, n);
    }
    mmd_coverage_map_free(&seeded), mmd_coverage_map_free(&a), mmd_coverage_map_free(&b);
done:
    free(tm), free(raw), free(dp), free(ref), free(pos);
    mmd_calib_destroy(c);
    run_close(&r);
    run_close(&r2);
}

/* train.field_at: triangle. A constant field gives the same spectra as per-hit
 * evaluation, bit for bit; the MLP gradient through the per-triangle sums equals central
 * differences of the loss. */
static void test_field_triangle(void)
{
    const char *sets[2] = {"solver.rays=3000", "solver.polarization=jones"};
    size_t nbins = 0;
    float *meas = truth_spectra(sets + 1, 1, &nbins);
    make_yaml(k_guess);
    run r;
    if (!meas || !run_open(&r, g_yaml, sets, 2)) {
        CHECK(0, "field_at runs");
        free(meas);
        return;
    }
    mmd_calib_options o = mmd_calib_defaults();
    o.model = MMD_CALIB_NEURAL;
    o.mlp.seed = 7;
    o.fit_scale = 0;
    o.loss = MMD_CALIB_LOG_MSE;
    mmd_calib *ch = NULL, *ct = NULL;
    mmd_status st = mmd_calib_create(r.sim, &o, &ch);
    o.field_at_triangle = 1;
    if (st == MMD_OK) st = mmd_calib_create(r.sim, &o, &ct);
    if (st != MMD_OK) {
        CHECK(0, "field_at calib create: %s", mmd_last_error());
        mmd_calib_destroy(ch);
        run_close(&r);
        free(meas);
        return;
    }
    size_t n = r.e.rx.n_poses, ids[3] = {0, 1, 2}, np = mmd_calib_n_params(ct);
    const float *mp[3] = {meas, meas + nbins, meas + 2 * nbins};
    float *raw = calloc(np, sizeof(float)), *grad = malloc(sizeof(float) * np), *p2 = malloc(sizeof(float) * np);
    mmd_calib_set_params(ch, raw);
    mmd_calib_set_params(ct, raw);
    mmd_aoa_result a, b;
    if (mmd_calib_predict(ch, r.e.rx.poses, ids, n, &a) == MMD_OK) {
        if (mmd_calib_predict(ct, r.e.rx.poses, ids, n, &b) == MMD_OK) {
            CHECK(!memcmp(a.spectra, b.spectra, sizeof(float) * n * nbins),
                  "field_at triangle: a constant field gives the per-hit spectra, bit for bit");
            mmd_aoa_result_free(&b);
        }
        mmd_aoa_result_free(&a);
    }
    /* back to the seeded initialisation, then the gradient check */
    mmd_calib_destroy(ct);
    ct = NULL;
    if (mmd_calib_create(r.sim, &o, &ct) != MMD_OK) {
        CHECK(0, "field_at calib create: %s", mmd_last_error());
    } else {
        double loss;
        mmd_calib_get_params(ct, raw);
        mmd_calib_zero_grad(ct);
        CHECK(mmd_calib_loss(ct, r.e.rx.poses, ids, mp, n, &loss, 1, NULL) == MMD_OK, "field_at loss+grad: %s",
              mmd_last_error());
        mmd_calib_get_grad(ct, grad);
        /* the 6 largest entries */
        int checked = 0;
        double worst = 0;
        for (int t = 0; t < 6; t++) {
            size_t best = 0;
            for (size_t i = 0; i < np; i++)
                if (fabs(grad[i]) > fabs(grad[best])) best = i;
            double fd = loss_central_diff(ct, r.e.rx.poses, ids, mp, n, raw, np, best,
                                          1e-3 * fmax(fabs(raw[best]), 0.1)),
                   rel = fabs(fd - grad[best]) / fabs(fd);
            printf("  field_at triangle: weight %6zu analytic %+.6e central diff %+.6e rel %.1e\n", best, grad[best],
                   fd, rel);
            worst = fmax(worst, rel);
            checked++;
            grad[best] = 0; /* next largest */
        }
        mmd_calib_set_params(ct, raw);
        CHECK(checked == 6 && worst < 5e-2,
              "field_at triangle: MLP gradient = central differences of the loss (worst relative %.2e)", worst);
    }
    free(raw);
    free(grad);
    free(p2);
    mmd_calib_destroy(ch);
    mmd_calib_destroy(ct);
    run_close(&r);
    free(meas);
}

/* Specular baseline (calib_spec.c): exact paths re-weighted on the host. Without the
 * diffuse background the re-weighted prediction is the specular model itself for any
 * materials, so it must equal a fresh simulation; its gradient must equal central
 * differences of the loss; Adam must recover the spectra. */
static void test_specular(const char *pol)
{
    const char *sets[3] = {"solver.mode=specular", "solver.diffuse=false", pol};
    size_t nbins = 0;
    float *meas = truth_spectra(sets, 3, &nbins);
    make_yaml(k_guess);
    run r;
    if (!meas || !run_open(&r, g_yaml, sets, 3)) {
        CHECK(0, "specular runs");
        free(meas);
        return;
    }
    mmd_calib_options o = mmd_calib_defaults();
    o.fit_scale = 0;
    o.loss = MMD_CALIB_LOG_MSE;
    mmd_calib *c = NULL;
    if (mmd_calib_create(r.sim, &o, &c) != MMD_OK) {
        CHECK(0, "specular calib create: %s", mmd_last_error());
        run_close(&r);
        free(meas);
        return;
    }
    size_t n = r.e.rx.n_poses, ids[3] = {0, 1, 2}, np = mmd_calib_n_params(c);
    const float *mp[3] = {meas, meas + nbins, meas + 2 * nbins};
    float *raw = malloc(sizeof(float) * np), *grad = malloc(sizeof(float) * np), *p2 = malloc(sizeof(float) * np);
    float *pred = malloc(sizeof(float) * n * nbins);
    mmd_calib_get_params(c, raw);

    /* re-weighted paths == the simulator, at the start and at other materials */
    for (int trial = 0; trial < 2; trial++) {
        memcpy(p2, raw, sizeof(float) * np);
        if (trial)
            for (size_t i = 0; i < np; i += 4) p2[i] += 0.3f, p2[i + 1] -= 0.5f;
        mmd_calib_set_params(c, p2);
        double loss;
        CHECK(mmd_calib_loss(c, r.e.rx.poses, ids, mp, n, &loss, 0, pred) == MMD_OK, "specular %s loss: %s", pol,
              mmd_last_error());
        mmd_aoa_result ref;
        if (mmd_calib_predict(c, r.e.rx.poses, ids, n, &ref) == MMD_OK) {
            double worst = 0, mx = 0;
            for (size_t q = 0; q < n * nbins; q++) mx = fmax(mx, ref.spectra[q]);
            for (size_t q = 0; q < n * nbins; q++)
                if (ref.spectra[q] > 1e-4 * mx) worst = fmax(worst, fabs(pred[q] / ref.spectra[q] - 1));
            CHECK(worst < 1e-4, "specular %s: re-weighted paths equal a fresh simulation (%s materials, worst "
                  "relative %.2e)", pol, trial ? "changed" : "starting", worst);
            mmd_aoa_result_free(&ref);
        } else {
            CHECK(0, "specular predict: %s", mmd_last_error());
        }
    }
    mmd_calib_set_params(c, raw);

    /* gradient vs central differences of the loss (eps_r, sigma; S and K_x untrained) */
    double loss;
    mmd_calib_zero_grad(c);
    CHECK(mmd_calib_loss(c, r.e.rx.poses, ids, mp, n, &loss, 1, NULL) == MMD_OK, "specular loss+grad");
    mmd_calib_get_grad(c, grad);
    double gmax = 0, worst = 0;
    for (size_t i = 0; i < np; i++) gmax = fmax(gmax, fabs(grad[i]));
    int checked = 0, untrained = 1;
    for (size_t i = 0; i < np; i++) {
        if (i % 4 >= 2) {
            untrained &= grad[i] == 0.0f;
            continue;
        }
        if (fabs(grad[i]) < 1e-2 * gmax) continue;
        double fd = loss_central_diff(c, r.e.rx.poses, ids, mp, n, raw, np, i, 2e-3), rel = fabs(fd - grad[i]) / fabs(fd);
        worst = fmax(worst, rel);
        checked++;
        printf("  specular %s: material %-12s %-5s analytic %+.6e  central diff %+.6e  rel %.1e\n", pol,
               mmd_calib_group_name(c, (uint32_t)(i / 4)), i % 4 ? "sigma" : "eps_r", grad[i], fd, rel);
    }
    mmd_calib_set_params(c, raw);
    CHECK(checked >= 3, "specular %s: enough gradients checked (%d)", pol, checked);
    CHECK(worst < 1e-2, "specular %s: gradient = central differences of the loss (worst relative %.2e)", pol, worst);
    CHECK(untrained, "specular %s: S and K_x are not trained", pol);

    /* Adam recovers the spectra; each pose's paths were solved once */
    double l0 = 0, l1 = 0;
    mmd_calib_loss(c, r.e.rx.poses, ids, mp, n, &l0, 0, NULL);
    for (int it = 0; it < 60; it++) {
        double l;
        mmd_calib_zero_grad(c);
        mmd_calib_loss(c, r.e.rx.poses, ids, mp, n, &l, 1, NULL);
        mmd_calib_adam(c, 0.05);
    }
    mmd_calib_loss(c, r.e.rx.poses, ids, mp, n, &l1, 0, NULL);
    printf("specular %s: loss %.5f -> %.5f after 60 Adam steps\n", pol, l0, l1);
    CHECK(l1 < 0.1 * l0, "specular %s: 60 Adam steps lower the loss 10x (%.5f -> %.5f)", pol, l0, l1);
    mmd_calib_timing tm = mmd_calib_get_timing(c);
    CHECK(tm.cache_misses == n, "specular %s: each pose's paths solved once (%zu, %zu cache hits)", pol,
          tm.cache_misses, tm.cache_hits);
    free(raw);
    free(grad);
    free(p2);
    free(pred);
    mmd_calib_destroy(c);
    run_close(&r);
    free(meas);
}

int main(void)
{
    mmd_log_set_level(0);
    if (mmd_cl_create(NULL, &g_cl) != MMD_OK) {
        CHECK(0, "OpenCL: %s", mmd_last_error());
        return TEST_DONE();
    }
    /* MMD_CALIB_ONLY=kernels|gradients|recovery|heldout|neural|specular runs one group (development) */
    const char *only = getenv("MMD_CALIB_ONLY");
#define RUN(group) (!only || !strcmp(only, group))
    test_mapping();
    if (RUN("kernels")) {
        test_kernels("solver.polarization=scalar");
        test_kernels("solver.polarization=jones");
    }
    if (RUN("gradients")) {
        test_gradients("solver.polarization=scalar", MMD_CALIB_LOG_MSE);
        test_gradients("solver.polarization=jones", MMD_CALIB_LOG_MSE);
        test_gradients("solver.polarization=jones", MMD_CALIB_LOG_MAE);
    }
    if (RUN("recovery")) test_recovery();
    /* minutes of neural training: a study, run on request only (docs/calibration.md) */
    if (only && !strcmp(only, "heldout")) test_heldout();
    if (RUN("neural")) {
        test_neural();
        test_field_triangle();
        test_neural_coverage();
    }
    if (RUN("specular")) {
        test_specular("solver.polarization=scalar");
        test_specular("solver.polarization=jones");
    }
    mmd_cl_destroy(g_cl);
    return TEST_DONE();
}
