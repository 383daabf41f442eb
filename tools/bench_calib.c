/*
 * bench_calib.c - `make bench` figures of issues 4 and 5 on the synthetic 100k-triangle
 * room that tools/bench.c writes: coverage-map time (1M rays, depth 3, 0.1 m cells, both
 * solver modes) and the calibration step (8 poses x 64k rays, depth 3, 8x8 URA, 181 x 91
 * bins) with and without the path cache, per-object and neural models.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "mmd_calib.h"
#include "mmd_coverage.h"

typedef struct bench_run {
    mmd_experiment e;
    mmd_scene *sc;
    mmd_bvh *bvh;
    mmd_sim *sim;
} bench_run;

static int open_run(struct mmd_cl *cl, const char *dir, const char *yaml, bench_run *r)
{
    char path[512];
    snprintf(path, sizeof path, "%s/bench_exp.yaml", dir);
    FILE *f = fopen(path, "w");
    if (!f) return 0;
    fputs(yaml, f);
    fclose(f);
    memset(r, 0, sizeof *r);
    const mmd_bvh_options bo = {.quality = MMD_BVH_SAH}; /* as the CLI builds it */
    if (mmd_experiment_load(path, NULL, 0, &r->e) != MMD_OK || mmd_scene_load(r->e.scene.file.path, &r->sc) != MMD_OK ||
        mmd_bvh_build(r->sc->vertices, r->sc->indices, r->sc->n_triangles, &bo, &r->bvh) != MMD_OK ||
        mmd_sim_create(cl, r->sc, r->bvh, &r->e, &r->sim) != MMD_OK) {
        fprintf(stderr, "bench: %s\n", mmd_last_error());
        return 0;
    }
    remove(path);
    return 1;
}

static void close_run(bench_run *r)
{
    mmd_sim_destroy(r->sim);
    mmd_bvh_destroy(r->bvh);
    mmd_scene_destroy(r->sc);
    mmd_experiment_free(&r->e);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double med(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void line(const char *name, double v, const char *unit) { printf("BENCH %s %.6g %s\n", name, v, unit); }

int bench_coverage(struct mmd_cl *cl, const char *dir, const char *room_ply)
{
    const char *modes[2] = {"directional", "specular"};
    printf("\n== Coverage map: 1M rays, depth 3, 0.1 m cells, z = 1.2 m, room %s\n", room_ply);
    for (int m = 0; m < 2; m++) {
        char yaml[2048];
        snprintf(yaml, sizeof yaml,
                 "scene: {file: %s, frequency_hz: 60.0e9, materials: {default: {itu: concrete, scattering: 0.3}}}\n"
                 "tx: {position_m: [1.3, 4.6, 2.6]}\n"
                 "solver: {mode: %s, max_depth: 3, polarization: jones, seed: 1}\n"
                 "coverage: {z_m: 1.2, cell_m: 0.1, rays: 1000000}\n",
                 room_ply, modes[m]);
        bench_run r;
        if (!open_run(cl, dir, yaml, &r)) return 1;
        double t[5];
        int reps = 3;
        for (int k = 0; k <= reps; k++) {
            mmd_coverage_map map;
            double t0 = mmd_now();
            if (mmd_sim_coverage(r.sim, &r.e.coverage, &map, NULL, NULL) != MMD_OK) {
                fprintf(stderr, "bench: coverage: %s\n", mmd_last_error());
                close_run(&r);
                return 1;
            }
            if (k) t[k - 1] = mmd_now() - t0; /* the first run compiles the kernel */
            if (k == reps) printf("coverage %s: trace %.0f ms, accumulate %.0f ms\n", modes[m], 1e3 * map.t_trace, 1e3 * map.t_accumulate);
            mmd_coverage_map_free(&map);
        }
        double ms = 1e3 * med(t, reps);
        printf("coverage %-11s %u triangles: %.0f ms per map (%.2f Mrays/s)\n", modes[m], r.sc->n_triangles, ms,
               1.0 / ms * 1e3);
        char name[64];
        snprintf(name, sizeof name, "coverage_1M_ms_%s", modes[m]);
        line(name, ms, "ms");
        close_run(&r);
    }
    return 0;
}

int bench_calib(struct mmd_cl *cl, const char *dir, const char *room_ply)
{
    const char *poses =
        "    - {position_m: [4.0, 3.0, 1.5], yaw_deg: 120}\n    - {position_m: [5.5, 2.0, 1.2], yaw_deg: 150}\n"
        "    - {position_m: [3.0, 1.5, 1.7], yaw_deg: 90}\n    - {position_m: [6.0, 4.0, 1.4], yaw_deg: 200}\n"
        "    - {position_m: [2.0, 4.5, 1.3], yaw_deg: 300}\n    - {position_m: [6.8, 1.2, 1.6], yaw_deg: 160}\n"
        "    - {position_m: [4.8, 4.8, 1.1], yaw_deg: 250}\n    - {position_m: [1.5, 2.0, 1.8], yaw_deg: 45}\n";
    char yaml[4096];
    const char *fmt =
        "scene: {file: %s, frequency_hz: 60.0e9, materials: {default: {itu: concrete, scattering: %s}}}\n"
        "tx: {position_m: [1.3, 4.6, 2.6]}\n"
        "rx:\n  array: {rows: 8, cols: 8, spacing_wavelengths: 0.5, window: hann, element: patch}\n  poses:\n%s"
        "aoa: {azimuth_deg: [-90, 90, 1], elevation_deg: [-45, 45, 1]}\n"
        "solver: {rays: 65536, max_depth: 3, alpha_r: 50, polarization: jones, seed: 1}\n";
    /* measured: the same room with other materials */
    snprintf(yaml, sizeof yaml, fmt, room_ply, "0.3", poses);
    bench_run r;
    if (!open_run(cl, dir, yaml, &r)) return 1;
    size_t n = r.e.rx.n_poses, nb = (size_t)r.e.aoa.azimuth_deg.count * r.e.aoa.elevation_deg.count;
    mmd_aoa_result truth;
    if (mmd_sim_aoa(r.sim, r.e.rx.poses, n, &truth, NULL, NULL) != MMD_OK) {
        close_run(&r);
        return 1;
    }
    close_run(&r);
    snprintf(yaml, sizeof yaml, fmt, room_ply, "0.1", poses);
    if (!open_run(cl, dir, yaml, &r)) return 1;
    printf("\n== Calibration step: %u-triangle room, %zu poses x %d rays, depth 3, 8x8 URA, %d x %d bins, Jones\n",
           r.sc->n_triangles, n, r.e.solver.rays, r.e.aoa.azimuth_deg.count, r.e.aoa.elevation_deg.count);
    size_t ids[16];
    const float *mp[16];
    for (size_t k = 0; k < n; k++) ids[k] = k, mp[k] = truth.spectra + k * nb;
    const char *model_names[3] = {"per_object", "neural", "neural/tri"};
    for (int model = 0; model < 3; model++) {
        for (int cached = 1; cached >= (model == 2 ? 1 : 0); cached--) {
            mmd_calib_options o = mmd_calib_defaults();
            o.model = model ? MMD_CALIB_NEURAL : MMD_CALIB_PER_OBJECT;
            o.field_at_triangle = model == 2; /* train.field_at: triangle */
            o.cache_bytes = cached ? (size_t)4 << 30 : 0;
            mmd_calib *c = NULL;
            if (mmd_calib_create(r.sim, &o, &c) != MMD_OK) {
                fprintf(stderr, "bench: calib: %s\n", mmd_last_error());
                break;
            }
            double t[4], loss;
            int reps = 3;
            for (int k = 0; k <= reps; k++) {
                double t0 = mmd_now();
                mmd_calib_zero_grad(c);
                if (mmd_calib_loss(c, r.e.rx.poses, ids, mp, n, &loss, 1, NULL) != MMD_OK ||
                    mmd_calib_adam(c, 1e-3) != MMD_OK) {
                    fprintf(stderr, "bench: step: %s\n", mmd_last_error());
                    break;
                }
                if (k) t[k - 1] = mmd_now() - t0; /* step 0 records the paths (and compiles) */
            }
            double ms = 1e3 * med(t, reps) / (double)n;
            mmd_calib_timing tm = mmd_calib_get_timing(c);
            printf("calibration step, %-10s model, path cache %s: %.1f ms per pose (cache %.0f MB)\n",
                   model_names[model], cached ? "on " : "off", ms, tm.cache_bytes_used / 1048576.0);
            char name[96];
            if (model == 0)
                snprintf(name, sizeof name, cached ? "calib_step_cached_ms_per_pose" : "calib_step_ms_per_pose");
            else if (model == 2)
                snprintf(name, sizeof name, "calib_step_cached_ms_per_pose_neural_field_at_triangle");
            else
                snprintf(name, sizeof name, cached ? "calib_step_cached_ms_per_pose_neural" : "calib_step_ms_per_pose_neural");
            line(name, ms, "ms");
            mmd_calib_destroy(c);
        }
    }
    /* accuracy of field_at triangle: the same network evaluated per hit point and per
     * triangle centroid, spectra compared over the bins within 40 dB of each pose's peak */
    mmd_aoa_result sp[2];
    int ok = 0, got[2] = {0, 0};
    for (int tri = 0; tri < 2; tri++) {
        mmd_calib_options o = mmd_calib_defaults();
        o.model = MMD_CALIB_NEURAL;
        o.field_at_triangle = tri;
        mmd_calib *c = NULL;
        if (mmd_calib_create(r.sim, &o, &c) == MMD_OK && mmd_calib_predict(c, r.e.rx.poses, ids, n, &sp[tri]) == MMD_OK)
            ok++, got[tri] = 1;
        else
            fprintf(stderr, "bench: field_at: %s\n", mmd_last_error());
        mmd_calib_destroy(c);
    }
    if (ok == 2) {
        double sum = 0, worst = 0;
        size_t cnt = 0;
        for (size_t k = 0; k < n; k++) {
            const float *a = sp[0].spectra + k * nb, *b = sp[1].spectra + k * nb;
            float mx = 0;
            for (size_t q = 0; q < nb; q++) mx = a[q] > mx ? a[q] : mx;
            for (size_t q = 0; q < nb; q++)
                if (a[q] > 1e-4f * mx && b[q] > 0) {
                    double d = fabs(10 * log10((double)b[q] / a[q]));
                    sum += d, cnt++;
                    worst = d > worst ? d : worst;
                }
        }
        printf("field_at triangle vs hit, same network: mean |difference| %.4f dB, worst %.3f dB over %zu bins within "
               "40 dB of the peaks\n", cnt ? sum / cnt : 0.0, worst, cnt);
        line("calib_field_at_triangle_mean_abs_db", cnt ? sum / cnt : 0.0, "dB");
    }
    for (int k = 0; k < 2; k++)
        if (got[k]) mmd_aoa_result_free(&sp[k]);
    mmd_aoa_result_free(&truth);
    close_run(&r);
    return 0;
}
