/* The robustness demonstration of the paper (issue 4, SPEC 1): the NIST conference room
 * as a LiDAR-like scan (every surface subdivided to ~5 cm triangles, 1 cm Gaussian vertex
 * noise) against the clean room, same materials, TX and receiver poses. The directional
 * model's spectrum peaks move by less than 1 dB; the exact-specular baseline loses or
 * moves its reflection peaks, because exact reflection points no longer exist on the
 * noisy facets. Prints every peak of both models and writes side-by-side PNGs (clean |
 * noisy, one figure per model, one colour scale) to $MMD_TEST_OUT (default
 * build/test_out), copied to docs/img/robustness_{specular,directional}.png. */
#include <math.h>
#include <stdlib.h>

#include "mmd_plot.h"
#include "mmd_sim.h"
#include "mmd_test.h"

#define N_POSES 3
#define RANGE_DB 20.0  /* peaks within this range of the strongest are compared */
#define MATCH_DEG 4.0  /* neighbourhood of a clean peak searched in the noisy spectrum */

typedef struct model {
    mmd_bvh *bvh;
    mmd_sim *sim;
    mmd_aoa_result res;
} model;

static int run_model(mmd_cl *cl, const mmd_scene *sc, const mmd_experiment *e, model *m)
{
    memset(m, 0, sizeof *m);
    mmd_bvh_options bo = {0};
    mmd_status st = mmd_bvh_build(sc->vertices, sc->indices, sc->n_triangles, &bo, &m->bvh);
    if (st == MMD_OK) st = mmd_sim_create(cl, sc, m->bvh, e, &m->sim);
    if (st == MMD_OK) st = mmd_sim_aoa(m->sim, e->rx.poses, e->rx.n_poses, &m->res, NULL, NULL);
    if (st != MMD_OK) fprintf(stderr, "run failed: %s\n", mmd_last_error());
    return st == MMD_OK;
}

static void free_model(model *m)
{
    mmd_aoa_result_free(&m->res);
    mmd_sim_destroy(m->sim);
    mmd_bvh_destroy(m->bvh);
}

/* Compare the clean peaks of pose k (within RANGE_DB of the strongest) with the noisy
 * spectrum: the peak's power then is the noisy spectrum's maximum within MATCH_DEG of the
 * clean peak (a peak that moved a little or became a shoulder still counts where it is;
 * a reflection that vanished shows as a drop). *n_cmp compared, *n_bad changed by >= 1 dB,
 * *worst the largest |change|. Reflection peaks only when skip_los (the LoS is exact in
 * both models and trivially stable). */
static void compare(const char *label, const mmd_experiment *e, const mmd_aoa_result *a, const mmd_aoa_result *b,
                    size_t k, int skip_los, int verbose, int *n_cmp, int *n_bad, double *worst)
{
    const mmd_cfg_grid *az = &e->aoa.azimuth_deg, *el = &e->aoa.elevation_deg;
    const mmd_aoa_peak *pa = a->peaks + k * MMD_AOA_PEAKS, *pb = b->peaks + k * MMD_AOA_PEAKS;
    const float *sb = b->spectra + k * (size_t)az->count * el->count;
    double top = a->n_peaks[k] ? pa[0].power_db : -INFINITY;
    for (int i = 0; i < a->n_peaks[k]; i++) {
        if (pa[i].power_db < top - RANGE_DB) continue;
        double dl = hypot(pa[i].az_deg - a->los_az_deg[k], pa[i].el_deg - a->los_el_deg[k]);
        int is_los = dl <= 2.0;
        if (skip_los && is_los) continue;
        double best = 0;
        for (int jj = 0; jj < el->count; jj++)
            for (int ii = 0; ii < az->count; ii++) {
                double d = hypot(pa[i].az_deg - (az->start + ii * az->step), pa[i].el_deg - (el->start + jj * el->step));
                if (d <= MATCH_DEG && sb[(size_t)jj * az->count + ii] > best) best = sb[(size_t)jj * az->count + ii];
            }
        int is_peak = 0;
        for (int j = 0; j < b->n_peaks[k]; j++)
            is_peak |= hypot(pa[i].az_deg - pb[j].az_deg, pa[i].el_deg - pb[j].el_deg) <= MATCH_DEG;
        double dp = (best > 0 ? 10 * log10(best) : -INFINITY) - pa[i].power_db;
        (*n_cmp)++;
        if (!(fabs(dp) < 1.0)) (*n_bad)++;
        if (fabs(dp) > *worst) *worst = fabs(dp);
        if (verbose)
            printf("  %-11s pose %zu: peak az %6.1f el %5.1f %7.2f dB%s -> %7.2f dB within %.0f deg (%s), change "
                   "%+.2f dB\n",
                   label, k, pa[i].az_deg, pa[i].el_deg, pa[i].power_db, is_los ? " (LoS)" : "", pa[i].power_db + dp,
                   MATCH_DEG, is_peak ? "a peak" : "no peak there any more", dp);
    }
}

static void write_figure(const mmd_experiment *e, model *m[4])
{
    const char *dir = getenv("MMD_TEST_OUT") ? getenv("MMD_TEST_OUT") : "build/test_out";
    if (mmd_mkdirs(dir) != MMD_OK) {
        CHECK(0, "mkdir %s: %s", dir, mmd_last_error());
        return;
    }
    const mmd_cfg_grid *az = &e->aoa.azimuth_deg, *el = &e->aoa.elevation_deg;
    size_t nb = (size_t)az->count * el->count;
    const char *titles[4] = {"specular, clean mesh", "specular, noisy scan", "directional, clean mesh",
                             "directional, noisy scan"};
    mmd_heatmap_params p[4];
    float *db[4];
    mmd_plot_marker los = {.x = m[0]->res.los_az_deg[0], .y = m[0]->res.los_el_deg[0], .shape = MMD_MARKER_CROSS,
                           .label = "LoS"};
    for (int i = 0; i < 4; i++) {
        db[i] = malloc(nb * sizeof(float));
        for (size_t q = 0; q < nb; q++) {
            float v = m[i]->res.spectra[q];
            db[i][q] = v > 0 ? 10.0f * log10f(v) : -INFINITY;
        }
        p[i] = mmd_heatmap_defaults();
        p[i].data = db[i];
        p[i].nx = az->count;
        p[i].ny = el->count;
        p[i].x0 = az->start - 0.5 * az->step;
        p[i].x1 = az->start + (az->count - 0.5) * az->step;
        p[i].y0 = el->start - 0.5 * el->step;
        p[i].y1 = el->start + (el->count - 0.5) * el->step;
        p[i].title = titles[i];
        p[i].xlabel = "azimuth [°]";
        p[i].ylabel = "elevation [°]";
        p[i].cbar_label = "power [dB]";
        p[i].x_angle_ticks = p[i].y_angle_ticks = true;
        p[i].equal_aspect = true;
        p[i].markers = &los;
        p[i].n_markers = 1;
        p[i].dynamic_range = 40;
    }
    /* one colour scale for both figures: the strongest bin of all four down 40 dB */
    double vmax = -INFINITY;
    for (int i = 0; i < 4; i++)
        for (size_t q = 0; q < nb; q++)
            if (db[i][q] > vmax) vmax = db[i][q];
    const char *names[2] = {"robustness_specular", "robustness_directional"};
    const char *fig_titles[2] = {"Specular baseline (exact paths): clean mesh vs noisy scan, pose 0",
                                 "Directional lobe (mmDiff): clean mesh vs noisy scan, pose 0"};
    for (int f = 0; f < 2; f++) {
        char png[4096], js[4096];
        snprintf(png, sizeof png, "%s/%s.png", dir, names[f]);
        snprintf(js, sizeof js, "%s/%s.json", dir, names[f]);
        p[2 * f].vmax = vmax;
        p[2 * f].vmin = vmax - 40;
        mmd_heatmap_figure fig = {.panels = p + 2 * f, .n_panels = 2, .title = fig_titles[f]};
        CHECK(mmd_plot_heatmaps(png, js, &fig) == MMD_OK, "figure: %s", mmd_last_error());
        printf("figure: %s\n", png);
    }
    for (int i = 0; i < 4; i++) free(db[i]);
}

int main(void)
{
    mmd_log_set_level(0);
    mmd_cl *cl = NULL;
    if (mmd_cl_create(NULL, &cl) != MMD_OK) {
        CHECK(0, "OpenCL: %s", mmd_last_error());
        return TEST_DONE();
    }
    char yaml[4096];
    snprintf(yaml, sizeof yaml,
             "scene:\n"
             "  file: %s/scenes/indoor/nist_conference_room/scene.yaml\n"
             "  frequency_hz: 60.0e9\n"
             "  materials:\n"
             "    concrete: {itu: concrete, scattering: 0.2}\n"
             "    window: {itu: glass, thickness_m: 0.006}\n"
             "    wood: {eps_r: 1.99, sigma_s_per_m: 0.35, scattering: 0.3, alpha_r: 20}\n"
             "tx: {position_m: [1.5, 4.2, 2.2], pattern: iso}\n"
             "rx:\n"
             "  array: {rows: 8, cols: 8, spacing_wavelengths: 0.5, window: hann, element: patch}\n"
             "  poses:\n"
             "    - {position_m: [1.5, 0.6, 1.2], yaw_deg: 90}\n"
             "    - {position_m: [0.5, 1.5, 1.2], yaw_deg: 60}\n"
             "    - {position_m: [2.5, 2.0, 1.4], yaw_deg: 120, pitch_deg: 10}\n"
             "aoa: {azimuth_deg: [-90, 90, 1], elevation_deg: [-45, 45, 1]}\n"
             "solver: {rays: 200000, max_depth: 3, seed: 42}\n",
             mmd_test_shared());
    mmd_experiment e[2];
    const char *mode_set[2] = {"solver.mode=specular", "solver.mode=directional"};
    int ok = 1;
    for (int i = 0; i < 2; i++)
        if (mmd_experiment_load_string(yaml, "robustness.yaml", &mode_set[i], 1, &e[i]) != MMD_OK) {
            CHECK(0, "experiment: %s", mmd_last_error());
            ok = 0;
        }
    mmd_scene *clean = NULL, *noisy = NULL;
    if (ok && mmd_scene_load(e[0].scene.file.path, &clean) != MMD_OK) {
        CHECK(0, "scene: %s", mmd_last_error());
        ok = 0;
    }
    mmd_perturb_params pp = {.subdivide_m = 0.05, .sigma_m = 0.01, .seed = 1};
    if (ok && mmd_scene_perturb(clean, &pp, &noisy) != MMD_OK) {
        CHECK(0, "perturb: %s", mmd_last_error());
        ok = 0;
    }
    if (!ok) {
        mmd_cl_destroy(cl);
        return TEST_DONE();
    }
    printf("clean room %u triangles, scan %u triangles\n", clean->n_triangles, noisy->n_triangles);
    model ms[4]; /* specular clean, specular noisy, directional clean, directional noisy */
    model *mp[4] = {&ms[0], &ms[1], &ms[2], &ms[3]};
    int all = 1;
    for (int i = 0; i < 4; i++) all &= run_model(cl, i % 2 ? noisy : clean, &e[i / 2], &ms[i]);
    CHECK(all, "four runs");
    if (all) {
        int n_cmp[2] = {0, 0}, n_bad[2] = {0, 0}, n_cmp_all = 0, n_bad_all = 0;
        double worst[2] = {0, 0}, worst_all = 0;
        printf("specular baseline (exact paths), reflection peaks within %.0f dB of the strongest:\n", RANGE_DB);
        for (size_t k = 0; k < N_POSES; k++)
            compare("specular", &e[0], &ms[0].res, &ms[1].res, k, 1, 1, &n_cmp[0], &n_bad[0], &worst[0]);
        printf("directional (mmDiff lobe), all peaks within %.0f dB of the strongest:\n", RANGE_DB);
        for (size_t k = 0; k < N_POSES; k++)
            compare("directional", &e[1], &ms[2].res, &ms[3].res, k, 0, 1, &n_cmp_all, &n_bad_all, &worst_all);
        for (size_t k = 0; k < N_POSES; k++) /* reflection peaks only, for the summary */
            compare("directional", &e[1], &ms[2].res, &ms[3].res, k, 1, 0, &n_cmp[1], &n_bad[1], &worst[1]);
        printf("SUMMARY specular: %d of %d reflection peaks changed by >= 1 dB (worst change %.2f dB)\n",
               n_bad[0], n_cmp[0], worst[0]);
        printf("SUMMARY directional: %d of %d peaks changed by >= 1 dB (worst change %.2f dB); reflection "
               "peaks: %d of %d\n",
               n_bad_all, n_cmp_all, worst_all, n_bad[1], n_cmp[1]);
        CHECK(n_cmp_all >= 2 * N_POSES, "directional: enough peaks compared (%d)", n_cmp_all);
        CHECK(n_bad_all == 0, "directional: every peak within 1 dB of the clean room (%d lost or moved)", n_bad_all);
        CHECK(worst_all < 1.0, "directional: worst peak change %.2f dB < 1 dB", worst_all);
        CHECK(n_cmp[0] >= N_POSES, "specular: enough reflection peaks compared (%d)", n_cmp[0]);
        CHECK(2 * n_bad[0] >= n_cmp[0],
              "specular baseline: at least half of its reflection peaks are lost or move >= 1 dB (%d of %d)",
              n_bad[0], n_cmp[0]);
        /* the exact paths themselves: the scan scatters the reflection points */
        size_t paths_clean = 0, paths_noisy = 0;
        for (size_t k = 0; k < N_POSES; k++)
            paths_clean += ms[0].res.n_paths[k], paths_noisy += ms[1].res.n_paths[k];
        printf("exact specular paths over the %d poses: clean %zu, noisy %zu\n", N_POSES, paths_clean, paths_noisy);
        write_figure(&e[0], mp);
    }
    for (int i = 0; i < 4; i++) free_model(&ms[i]);
    mmd_scene_destroy(clean);
    mmd_scene_destroy(noisy);
    for (int i = 0; i < 2; i++) mmd_experiment_free(&e[i]);
    mmd_cl_destroy(cl);
    return TEST_DONE();
}
