/* Result files of the forward-model commands (outputs.h): moved here from cmd_simulate.c
 * and cmd_coverage.c so that `predict` writes exactly what they write. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmd_io.h"
#include "mmd_paths.h"
#include "mmd_plot.h"
#include "outputs.h"

static double db_or_nan(double v) { return v > 0 ? 10.0 * log10(v) : -INFINITY; }

/* ---------------------------------------------------------------------------------------
 * AoA spectra
 */

static mmd_status write_pngs(const char *dir, const mmd_experiment *e, const mmd_aoa_result *r)
{
    char sub[4096], png[4200], js[4200], title[256];
    snprintf(sub, sizeof sub, "%s/png", dir);
    mmd_status st = mmd_mkdirs(sub);
    const mmd_cfg_grid *az = &e->aoa.azimuth_deg, *el = &e->aoa.elevation_deg;
    float *db = mmd_malloc((size_t)r->n_az * r->n_el, sizeof(float), "spectrum image");
    if (!db) return MMD_ERR_NOMEM;
    for (size_t k = 0; st == MMD_OK && k < r->n_poses; k++) {
        const float *s = r->spectra + k * (size_t)r->n_az * r->n_el;
        for (size_t i = 0; i < (size_t)r->n_az * r->n_el; i++) db[i] = s[i] > 0 ? 10.0f * log10f(s[i]) : -INFINITY;
        snprintf(png, sizeof png, "%s/pose_%04zu.png", sub, k);
        snprintf(js, sizeof js, "%s/pose_%04zu.json", sub, k);
        if (e->rx.array.mode == MMD_CFG_RX_MECHANICAL)
            snprintf(title, sizeof title, "AoA spectrum, pose %zu (%.3g GHz, %.3g° horn scan, %s)", k,
                     e->scene.frequency_hz * 1e-9, e->rx.array.horn.hpbw_deg,
                     mmd_cfg_enum_name("solver.mode", e->solver.mode));
        else
            snprintf(title, sizeof title, "AoA spectrum, pose %zu (%.3g GHz, %dx%d URA, %s)", k,
                     e->scene.frequency_hz * 1e-9, e->rx.array.rows, e->rx.array.cols,
                     mmd_cfg_enum_name("solver.mode", e->solver.mode));
        mmd_plot_marker los = {.x = r->los_az_deg[k], .y = r->los_el_deg[k], .shape = MMD_MARKER_CROSS,
                               .label = r->los_visible[k]    ? "LoS"
                                        : r->los_power[k] > 0 ? "LoS (through slab)"
                                                              : "LoS (blocked)"};
        mmd_heatmap_params p = mmd_heatmap_defaults();
        p.data = db;
        p.nx = r->n_az;
        p.ny = r->n_el;
        p.x0 = az->start - 0.5 * az->step;
        p.x1 = az->start + (r->n_az - 0.5) * az->step;
        p.y0 = el->start - 0.5 * el->step;
        p.y1 = el->start + (r->n_el - 0.5) * el->step;
        p.title = title;
        p.xlabel = "azimuth [°]";
        p.ylabel = "elevation [°]";
        p.cbar_label = "power [dB]";
        p.x_angle_ticks = p.y_angle_ticks = true;
        p.equal_aspect = true;
        int in_grid = los.x >= p.x0 && los.x <= p.x1 && los.y >= p.y0 && los.y <= p.y1;
        p.markers = &los;
        p.n_markers = in_grid ? 1 : 0;
        st = mmd_plot_heatmap(png, js, &p);
    }
    free(db);
    return st;
}

static mmd_status write_measurements(const char *dir, const mmd_experiment *e, const mmd_cfg_pose *poses,
                                     const mmd_aoa_result *r)
{
    char sub[4096], path[4200];
    snprintf(sub, sizeof sub, "%s/measurements", dir);
    mmd_status st = mmd_mkdirs(sub);
    if (st != MMD_OK) return st;
    mmd_pose_row *rows = mmd_malloc(r->n_poses, sizeof *rows, "poses");
    if (!rows) return MMD_ERR_NOMEM;
    for (size_t k = 0; k < r->n_poses; k++) {
        rows[k].x_m = poses[k].position_m[0];
        rows[k].y_m = poses[k].position_m[1];
        rows[k].z_m = poses[k].position_m[2];
        rows[k].yaw_deg = poses[k].yaw_deg;
        rows[k].pitch_deg = poses[k].pitch_deg;
        rows[k].roll_deg = poses[k].roll_deg;
    }
    snprintf(path, sizeof path, "%s/poses.csv", sub);
    st = mmd_poses_csv_write(path, rows, r->n_poses);
    free(rows);
    size_t shape[3] = {r->n_poses, (size_t)r->n_el, (size_t)r->n_az};
    snprintf(path, sizeof path, "%s/spectra.npy", sub);
    if (st == MMD_OK) st = mmd_npy_write(path, MMD_DT_F32, shape, 3, r->spectra);
    char man[2048];
    const mmd_cfg_grid *az = &e->aoa.azimuth_deg, *el = &e->aoa.elevation_deg;
    int n = snprintf(man, sizeof man,
                     "# mmdiff measurement set (SPEC 6): poses.csv + spectra.npy\n"
                     "format: mmdiff-measurements-1\n"
                     "frequency_hz: %.17g\n"
                     "poses: poses.csv\n"
                     "spectra: spectra.npy\n"
                     "shape: [%zu, %d, %d]  # [pose, elevation, azimuth]\n"
                     "units: linear_power  # received power per transmitted power (W/W), per bin\n"
                     "azimuth_deg: [%.17g, %.17g, %.17g]  # [start, stop, step], array frame\n"
                     "elevation_deg: [%.17g, %.17g, %.17g]\n"
                     "array: {rows: %d, cols: %d, spacing_wavelengths: %.17g, window: %s, element: %s}\n",
                     e->scene.frequency_hz, r->n_poses, r->n_el, r->n_az, az->start, az->stop, az->step, el->start,
                     el->stop, el->step, e->rx.array.rows, e->rx.array.cols, e->rx.array.spacing_wavelengths,
                     mmd_cfg_enum_name("rx.array.window", e->rx.array.window),
                     mmd_cfg_enum_name("rx.array.element", e->rx.array.element));
    snprintf(path, sizeof path, "%s/manifest.yaml", sub);
    if (st == MMD_OK) st = mmd_write_file_atomic(path, man, (size_t)n);
    return st;
}

mmd_status mmd_cli_aoa_write(const mmd_cli_run *r, const char *dir, const mmd_aoa_result *res)
{
    const mmd_experiment *e = &r->e;
    char path[4200];
    mmd_status st = mmd_mkdirs(dir);
    /* result.json is written last and marks a complete set: a previous run's must not
     * vouch for a mix of its files and ours when this run fails half way */
    snprintf(path, sizeof path, "%s/result.json", dir);
    if (st == MMD_OK) remove(path);
    if (st == MMD_OK) {
        size_t shape[3] = {res->n_poses, (size_t)res->n_el, (size_t)res->n_az};
        snprintf(path, sizeof path, "%s/spectra.npy", dir);
        st = mmd_npy_write(path, MMD_DT_F32, shape, 3, res->spectra);
    }
    if (st == MMD_OK && e->output.png) st = write_pngs(dir, e, res);
    if (st == MMD_OK && e->output.measurements) st = write_measurements(dir, e, r->poses, res);
    if (st == MMD_OK && e->output.paths) {
        if (res->paths) {
            snprintf(path, sizeof path, "%s/paths.csv", dir);
            st = mmd_paths_write_csv(path, (const mmd_path *const *)res->paths, res->n_paths, res->n_poses,
                                     e->solver.max_depth);
        } else {
            mmd_warn("output.paths: %s", "only the specular solver has discrete paths (solver.mode: specular); "
                                         "no paths.csv written");
        }
    }
    return st;
}

void mmd_cli_aoa_print(const mmd_aoa_result *res)
{
    printf("%-5s %12s %12s %9s %9s   %s\n", "pose", "total [dB]", "LoS [dB]", "peak az", "peak el", "peak [dB]");
    for (size_t k = 0; k < res->n_poses; k++) {
        const mmd_aoa_peak *pk = res->n_peaks[k] ? &res->peaks[k * MMD_AOA_PEAKS] : NULL;
        printf("%-5zu %12.2f %12.2f %9.1f %9.1f   %.2f\n", k, db_or_nan(res->total_power[k]),
               db_or_nan(res->los_power[k]), pk ? pk->az_deg : NAN, pk ? pk->el_deg : NAN,
               pk ? pk->power_db : -INFINITY);
    }
}

mmd_status mmd_cli_aoa_write_result(const mmd_cli_run *run, const char *path, const mmd_aoa_result *r,
                                    const char *tool, void (*extra)(mmd_json *j, const void *user),
                                    const void *user)
{
    const mmd_experiment *e = &run->e;
    const mmd_sim *sim = run->sim;
    mmd_json j;
    mmd_json_init(&j);
    mmd_json_begin_object(&j);
    mmd_json_kv_string(&j, "tool", tool);
    double t_total = mmd_now() - run->t0;
    mmd_json_key(&j, "poses");
    mmd_json_begin_array(&j);
    for (size_t k = 0; k < r->n_poses; k++) {
        mmd_json_begin_object(&j);
        mmd_json_kv_double(&j, "total_power_db", db_or_nan(r->total_power[k]));
        mmd_json_kv_double(&j, "los_power_db", db_or_nan(r->los_power[k]));
        mmd_json_kv_bool(&j, "los_visible", r->los_visible[k] != 0);
        mmd_json_kv_double(&j, "los_azimuth_deg", r->los_az_deg[k]);
        mmd_json_kv_double(&j, "los_elevation_deg", r->los_el_deg[k]);
        if (r->n_paths) mmd_json_kv_int(&j, "specular_paths", (long long)r->n_paths[k]);
        mmd_json_key(&j, "peaks");
        mmd_json_begin_array(&j);
        for (int p = 0; p < r->n_peaks[k]; p++) {
            const mmd_aoa_peak *pk = &r->peaks[k * MMD_AOA_PEAKS + p];
            mmd_json_begin_object(&j);
            mmd_json_kv_double(&j, "azimuth_deg", pk->az_deg);
            mmd_json_kv_double(&j, "elevation_deg", pk->el_deg);
            mmd_json_kv_double(&j, "power_db", pk->power_db);
            mmd_json_end_object(&j);
        }
        mmd_json_end_array(&j);
        mmd_json_end_object(&j);
    }
    mmd_json_end_array(&j);
    mmd_json_key(&j, "timings_s");
    mmd_json_begin_object(&j);
    mmd_json_kv_double(&j, "total", t_total);
    mmd_json_kv_double(&j, "trace", sim->t_trace);
    mmd_json_kv_double(&j, "beam_sum", sim->t_reduce);
    mmd_json_kv_double(&j, "paths", sim->t_paths);
    mmd_json_kv_double(&j, "per_pose", r->n_poses ? (sim->t_trace + sim->t_reduce + sim->t_paths) / r->n_poses : 0);
    mmd_json_end_object(&j);
    mmd_cli_run_json_common(run, &j);
    mmd_json_key(&j, "parameters");
    mmd_json_begin_object(&j);
    mmd_json_kv_double(&j, "frequency_hz", e->scene.frequency_hz);
    mmd_json_kv_double(&j, "wavelength_m", sim->wavelength);
    mmd_json_kv_string(&j, "mode", mmd_cfg_enum_name("solver.mode", e->solver.mode));
    mmd_json_kv_string(&j, "polarization", mmd_cfg_enum_name("solver.polarization", e->solver.polarization));
    mmd_json_kv_int(&j, "rays", e->solver.rays);
    mmd_json_kv_int(&j, "max_depth", e->solver.max_depth);
    mmd_json_kv_bool(&j, "diffuse", e->solver.diffuse != 0);
    mmd_json_kv_bool(&j, "transmission", e->solver.transmission != 0);
    mmd_json_kv_double(&j, "p_diffuse", MMD_SIM_P_DIFFUSE);
    mmd_json_kv_double(&j, "p_transmit", MMD_SIM_P_TRANSMIT);
    mmd_json_kv_doubles(&j, "tx_position_m", e->tx.position_m, 3);
    mmd_json_kv_string(&j, "tx_pattern", mmd_cfg_enum_name("tx.pattern", e->tx.pattern));
    mmd_json_kv_string(&j, "rx_element", mmd_cfg_enum_name("rx.array.element", e->rx.array.element));
    mmd_json_kv_int(&j, "rx_rows", e->rx.array.rows);
    mmd_json_kv_int(&j, "rx_cols", e->rx.array.cols);
    mmd_json_kv_double(&j, "rx_spacing_wavelengths", e->rx.array.spacing_wavelengths);
    mmd_json_kv_string(&j, "rx_window", mmd_cfg_enum_name("rx.array.window", e->rx.array.window));
    double g[3] = {e->aoa.azimuth_deg.start, e->aoa.azimuth_deg.stop, e->aoa.azimuth_deg.step};
    mmd_json_kv_doubles(&j, "azimuth_deg", g, 3);
    g[0] = e->aoa.elevation_deg.start, g[1] = e->aoa.elevation_deg.stop, g[2] = e->aoa.elevation_deg.step;
    mmd_json_kv_doubles(&j, "elevation_deg", g, 3);
    mmd_json_kv_string(&j, "spectra_layout", "[pose][elevation][azimuth], linear power per bin");
    mmd_json_end_object(&j);
    if (extra) extra(&j, user);
    mmd_json_end_object(&j);
    mmd_status st = mmd_json_save(&j, path);
    mmd_json_free(&j);
    return st;
}

/* ---------------------------------------------------------------------------------------
 * Coverage maps
 */

static void cov_progress(size_t done, size_t total, void *user)
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

static mmd_status write_png(const mmd_cli_run *r, const char *dir, const mmd_coverage_map *m, const float *img, const char *name,
                            const char *what, const char *unit, const double *outline, size_t n_outline)
{
    const mmd_experiment *e = &r->e;
    char png[4200], js[4200], title[256], cbar[64];
    snprintf(png, sizeof png, "%s/%s.png", dir, name);
    snprintf(js, sizeof js, "%s/%s.json", dir, name);
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

static mmd_status write_cov_result(const mmd_cli_run *r, const char *dir, const char *tool, const mmd_coverage_map *m,
                                   const cov_stats *s, size_t n_outline)
{
    const mmd_experiment *e = &r->e;
    char path[4200];
    snprintf(path, sizeof path, "%s/result.json", dir);
    mmd_json j;
    mmd_json_init(&j);
    mmd_json_begin_object(&j);
    mmd_json_kv_string(&j, "tool", tool);
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

mmd_status mmd_cli_coverage_compute(mmd_cli_run *r, mmd_cli_coverage *c)
{
    memset(c, 0, sizeof *c);
    const mmd_experiment *e = &r->e;
    mmd_info("coverage: %d rays, depth %d, %s mode, z = %g m, %g m cells", e->coverage.rays, e->solver.max_depth,
             mmd_cfg_enum_name("solver.mode", e->solver.mode), e->coverage.z_m, e->coverage.cell_m);
    mmd_status st = mmd_sim_coverage_par(r->sim, &e->coverage, &c->m, cov_progress, NULL);
    size_t n = (size_t)c->m.nx * c->m.ny;
    if (st == MMD_OK) {
        c->db = mmd_malloc(n, sizeof *c->db, "coverage map");
        c->rss = mmd_malloc(n, sizeof *c->rss, "coverage map");
        if (!c->db || !c->rss) st = MMD_ERR_NOMEM;
    }
    cov_stats s;
    if (st == MMD_OK) {
        for (size_t i = 0; i < n; i++) {
            c->db[i] = c->m.count[i] && c->m.gain[i] > 0 ? (float)(10.0 * log10(c->m.gain[i])) : -INFINITY;
            c->rss[i] = c->db[i] + (float)e->tx.power_dbm;
        }
        st = stats_of(c->db, n, &s);
    }
    if (st == MMD_OK) {
        c->covered = s.covered;
        c->max_db = s.max_db;
        c->median_db = s.median_db;
        c->min_db = s.min_db;
        double ext[4] = {c->m.x0, c->m.x1, c->m.y0, c->m.y1};
        st = mmd_scene_slice_z(r->scene, c->m.z_m, ext, &c->outline, &c->n_outline);
    }
    return st;
}

mmd_status mmd_cli_coverage_write(const mmd_cli_run *r, const char *dir, const char *tool, const mmd_cli_coverage *c)
{
    const mmd_experiment *e = &r->e;
    const mmd_coverage_map *m = &c->m;
    char path[4200];
    mmd_status st = mmd_mkdirs(dir);
    snprintf(path, sizeof path, "%s/result.json", dir);
    if (st == MMD_OK) remove(path); /* written last: marks a complete set (see mmd_cli_aoa_write) */
    size_t shape[2] = {(size_t)m->ny, (size_t)m->nx};
    if (st == MMD_OK) {
        snprintf(path, sizeof path, "%s/path_gain_db.npy", dir);
        st = mmd_npy_write(path, MMD_DT_F32, shape, 2, c->db);
    }
    if (st == MMD_OK) {
        snprintf(path, sizeof path, "%s/rss_dbm.npy", dir);
        st = mmd_npy_write(path, MMD_DT_F32, shape, 2, c->rss);
    }
    if (st == MMD_OK && e->output.png)
        st = write_png(r, dir, m, c->db, "coverage", "Path gain", "dB", c->outline, c->n_outline);
    if (st == MMD_OK && e->output.png) st = write_png(r, dir, m, c->rss, "rss", "RSS", "dBm", c->outline, c->n_outline);
    cov_stats s = {c->covered, c->max_db, c->median_db, c->min_db};
    if (st == MMD_OK) st = write_cov_result(r, dir, tool, m, &s, c->n_outline);
    return st;
}

void mmd_cli_coverage_print(const mmd_cli_run *r, const char *dir, const mmd_cli_coverage *c)
{
    const mmd_coverage_map *m = &c->m;
    size_t n = (size_t)m->nx * m->ny;
    printf("coverage %d x %d cells of %g m at z = %g m: %zu with power (%.1f%%)\n", m->nx, m->ny, m->cell_m, m->z_m,
           c->covered, 100.0 * (double)c->covered / (double)n);
    printf("path gain [dB]: max %.2f  median %.2f  min %.2f\n", c->max_db, c->median_db, c->min_db);
    printf("outputs: %s/ (path_gain_db.npy, rss_dbm.npy, result.json%s)\n", dir,
           r->e.output.png ? ", coverage.png, rss.png" : "");
    printf("time: %.2f s total, %.3f s trace (%zu rays)\n", mmd_now() - r->t0, m->t_trace, m->n_rays);
}

void mmd_cli_coverage_free(mmd_cli_coverage *c)
{
    free(c->db);
    free(c->rss);
    free(c->outline);
    mmd_coverage_map_free(&c->m);
    memset(c, 0, sizeof *c);
}
