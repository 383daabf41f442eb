/*
 * `mmdiff coverage EXP.yaml [-o DIR] [--set key=value ...]`: a coverage map of the
 * experiment's TX on the plane z = coverage.z_m (SPEC 4), in the solver's mode. Writes
 * into the run directory (docs/outputs.md):
 *   path_gain_db.npy          float32 [ny, nx] path gain [dB], -inf where no ray arrived
 *   rss_dbm.npy               float32 [ny, nx] tx.power_dbm + path gain
 *   coverage.png (+ .json)    the path-gain heatmap: floor plan, TX, colorbar in dB
 *   rss.png (+ .json)         the same in dBm
 *   result.json               grid, statistics, timings, device, seed, materials
 *   experiment.resolved.yaml, command.txt
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmd_coverage.h"
#include "mmd_plot.h"
#include "run.h"

static void progress(size_t done, size_t total, void *user)
{
    (void)user;
    mmd_cli_progress("coverage", "rays", done, total);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

typedef struct cov_stats {
    size_t covered;
    double max_db, median_db, min_db;
} cov_stats;

static mmd_status stats_of(const float *db, size_t n, cov_stats *s)
{
    memset(s, 0, sizeof *s);
    s->max_db = s->median_db = s->min_db = -INFINITY;
    float *v = mmd_malloc(n ? n : 1, sizeof *v, "coverage statistics");
    if (!v) return MMD_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        if (isfinite(db[i])) v[s->covered++] = db[i];
    if (s->covered) {
        qsort(v, s->covered, sizeof *v, cmp_float);
        s->min_db = v[0];
        s->max_db = v[s->covered - 1];
        s->median_db = s->covered % 2 ? v[s->covered / 2] : 0.5 * (v[s->covered / 2 - 1] + v[s->covered / 2]);
    }
    free(v);
    return MMD_OK;
}

static mmd_status write_png(const mmd_cli_run *r, const mmd_coverage_map *m, const float *img, const char *name,
                            const char *what, const char *unit, const double *outline, size_t n_outline)
{
    const mmd_experiment *e = &r->e;
    char png[4200], js[4200], title[256], cbar[64];
    snprintf(png, sizeof png, "%s/%s.png", r->dir, name);
    snprintf(js, sizeof js, "%s/%s.json", r->dir, name);
    snprintf(title, sizeof title, "%s, z = %.2f m, %.4g GHz (%s)", what, m->z_m, e->scene.frequency_hz * 1e-9,
             mmd_cfg_enum_name("solver.mode", e->solver.mode));
    snprintf(cbar, sizeof cbar, "%s [%s]", !strcmp(unit, "dB") ? "path gain" : what, unit);
    mmd_plot_marker tx = {.x = e->tx.position_m[0], .y = e->tx.position_m[1], .shape = MMD_MARKER_TRIANGLE,
                          .label = "TX"};
    mmd_plot_polyline plan = {.xy = outline, .n_points = n_outline, .closed = false};
    mmd_heatmap_params p = mmd_heatmap_defaults();
    p.data = img;
    p.nx = m->nx;
    p.ny = m->ny;
    p.x0 = m->x0;
    p.x1 = m->x1;
    p.y0 = m->y0;
    p.y1 = m->y1;
    p.title = title;
    p.xlabel = "x [m]";
    p.ylabel = "y [m]";
    p.cbar_label = cbar;
    p.equal_aspect = true;
    p.dynamic_range = 60.0;
    int tx_in = tx.x >= m->x0 && tx.x <= m->x1 && tx.y >= m->y0 && tx.y <= m->y1;
    p.markers = &tx;
    p.n_markers = tx_in ? 1 : 0;
    p.overlays = &plan;
    p.n_overlays = n_outline ? 1 : 0;
    return mmd_plot_heatmap(png, js, &p);
}

static mmd_status write_result(const mmd_cli_run *r, const mmd_coverage_map *m, const cov_stats *s,
                               size_t n_outline)
{
    const mmd_experiment *e = &r->e;
    char path[4200];
    snprintf(path, sizeof path, "%s/result.json", r->dir);
    mmd_json j;
    mmd_json_init(&j);
    mmd_json_begin_object(&j);
    mmd_json_kv_string(&j, "tool", "mmdiff coverage");
    mmd_json_key(&j, "grid");
    mmd_json_begin_object(&j);
    mmd_json_kv_int(&j, "nx", m->nx);
    mmd_json_kv_int(&j, "ny", m->ny);
    mmd_json_kv_double(&j, "cell_m", m->cell_m);
    mmd_json_kv_double(&j, "z_m", m->z_m);
    double ext[4] = {m->x0, m->x1, m->y0, m->y1};
    mmd_json_kv_doubles(&j, "extent_m", ext, 4);
    mmd_json_kv_string(&j, "layout", "[y][x], row 0 at y = extent_m[2]; cell (ix, iy) covers x0 + ix cell_m ..");
    mmd_json_end_object(&j);
    mmd_json_key(&j, "stats");
    mmd_json_begin_object(&j);
    mmd_json_kv_int(&j, "cells", (long long)m->nx * m->ny);
    mmd_json_kv_int(&j, "cells_with_power", (long long)s->covered);
    mmd_json_kv_double(&j, "max_path_gain_db", s->max_db);
    mmd_json_kv_double(&j, "median_path_gain_db", s->median_db);
    mmd_json_kv_double(&j, "min_path_gain_db", s->min_db);
    mmd_json_kv_double(&j, "tx_power_dbm", e->tx.power_dbm);
    mmd_json_kv_int(&j, "floor_plan_segments", (long long)(n_outline / 3));
    mmd_json_end_object(&j);
    mmd_json_key(&j, "timings_s");
    mmd_json_begin_object(&j);
    mmd_json_kv_double(&j, "total", mmd_now() - r->t0);
    mmd_json_kv_double(&j, "trace", m->t_trace);
    mmd_json_kv_double(&j, "accumulate", m->t_accumulate);
    mmd_json_end_object(&j);
    mmd_cli_run_json_common(r, &j);
    mmd_json_key(&j, "parameters");
    mmd_json_begin_object(&j);
    mmd_json_kv_double(&j, "frequency_hz", e->scene.frequency_hz);
    mmd_json_kv_double(&j, "wavelength_m", r->sim->wavelength);
    mmd_json_kv_string(&j, "mode", mmd_cfg_enum_name("solver.mode", e->solver.mode));
    mmd_json_kv_string(&j, "polarization", mmd_cfg_enum_name("solver.polarization", e->solver.polarization));
    mmd_json_kv_int(&j, "rays", e->coverage.rays);
    mmd_json_kv_int(&j, "max_depth", e->solver.max_depth);
    mmd_json_kv_bool(&j, "diffuse", e->solver.diffuse != 0);
    mmd_json_kv_bool(&j, "transmission", e->solver.transmission != 0);
    mmd_json_kv_doubles(&j, "tx_position_m", e->tx.position_m, 3);
    mmd_json_kv_string(&j, "tx_pattern", mmd_cfg_enum_name("tx.pattern", e->tx.pattern));
    mmd_json_kv_string(&j, "receiver", e->solver.polarization == MMD_CFG_POL_JONES
                                           ? "upright isotropic, vertically polarised"
                                           : "isotropic, unpolarised power");
    mmd_json_end_object(&j);
    mmd_json_end_object(&j);
    mmd_status st = mmd_json_save(&j, path);
    mmd_json_free(&j);
    return st;
}

int mmd_cmd_coverage(const mmd_cli_opts *o, int argc, char **argv)
{
    mmd_cli_run r;
    int rc = mmd_cli_run_open(&r, o, "coverage", argc, argv, 0);
    if (rc) return rc;
    const mmd_experiment *e = &r.e;
    mmd_coverage_map m = {0};
    mmd_info("coverage: %d rays, depth %d, %s mode, z = %g m, %g m cells", e->coverage.rays, e->solver.max_depth,
             mmd_cfg_enum_name("solver.mode", e->solver.mode), e->coverage.z_m, e->coverage.cell_m);
    mmd_status st = mmd_sim_coverage(r.sim, &e->coverage, &m, progress, NULL);
    size_t n = (size_t)m.nx * m.ny;
    float *db = NULL, *rss = NULL;
    double *outline = NULL;
    size_t n_outline = 0;
    cov_stats s;
    if (st == MMD_OK) {
        db = mmd_malloc(n, sizeof *db, "coverage map");
        rss = mmd_malloc(n, sizeof *rss, "coverage map");
        if (!db || !rss) st = MMD_ERR_NOMEM;
    }
    if (st == MMD_OK) {
        for (size_t i = 0; i < n; i++) {
            db[i] = m.count[i] && m.gain[i] > 0 ? (float)(10.0 * log10(m.gain[i])) : -INFINITY;
            rss[i] = db[i] + (float)e->tx.power_dbm;
        }
        st = stats_of(db, n, &s);
    }
    if (st == MMD_OK) {
        double ext[4] = {m.x0, m.x1, m.y0, m.y1};
        st = mmd_scene_slice_z(r.scene, m.z_m, ext, &outline, &n_outline);
    }
    char path[4200];
    if (st == MMD_OK) st = mmd_cli_run_write_records(&r);
    size_t shape[2] = {(size_t)m.ny, (size_t)m.nx};
    if (st == MMD_OK) {
        snprintf(path, sizeof path, "%s/path_gain_db.npy", r.dir);
        st = mmd_npy_write(path, MMD_DT_F32, shape, 2, db);
    }
    if (st == MMD_OK) {
        snprintf(path, sizeof path, "%s/rss_dbm.npy", r.dir);
        st = mmd_npy_write(path, MMD_DT_F32, shape, 2, rss);
    }
    if (st == MMD_OK && e->output.png)
        st = write_png(&r, &m, db, "coverage", "Path gain", "dB", outline, n_outline);
    if (st == MMD_OK && e->output.png) st = write_png(&r, &m, rss, "rss", "RSS", "dBm", outline, n_outline);
    if (st == MMD_OK) st = write_result(&r, &m, &s, n_outline);
    if (st != MMD_OK) {
        rc = mmd_cli_fail();
    } else {
        printf("coverage %d x %d cells of %g m at z = %g m: %zu with power (%.1f%%)\n", m.nx, m.ny, m.cell_m, m.z_m,
               s.covered, 100.0 * (double)s.covered / (double)n);
        printf("path gain [dB]: max %.2f  median %.2f  min %.2f\n", s.max_db, s.median_db, s.min_db);
        printf("outputs: %s/ (path_gain_db.npy, rss_dbm.npy, result.json%s)\n", r.dir,
               e->output.png ? ", coverage.png, rss.png" : "");
        printf("time: %.2f s total, %.3f s trace (%zu rays)\n", mmd_now() - r.t0, m.t_trace, m.n_rays);
    }
    free(db);
    free(rss);
    free(outline);
    mmd_coverage_map_free(&m);
    mmd_cli_run_close(&r);
    return rc;
}
