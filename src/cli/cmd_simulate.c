/*
 * `mmdiff simulate EXP.yaml [-o DIR] [--set key=value ...]`: AoA spectra for every
 * receiver pose of an experiment (SPEC 4). Writes into the run directory:
 *   spectra.npy                float32 [n_poses, n_elevation, n_azimuth], linear power
 *   result.json                per-pose total/LoS power, top peaks, timings, device, seed,
 *                              resolved parameters and materials
 *   png/pose_NNNN.png (+.json) one heatmap per pose (output.png)
 *   measurements/              poses.csv + spectra.npy + manifest.yaml (output.measurements)
 *   paths.csv                  the exact specular paths of every pose (output.paths,
 *                              specular mode; docs/paths.md)
 *   experiment.resolved.yaml   the configuration with every default filled in
 *   command.txt                the command line
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mmd_io.h"
#include "mmd_paths.h"
#include "mmd_plot.h"
#include "mmd_sim.h"
#include "run.h"

static void progress(size_t done, size_t total, void *user)
{
    (void)user;
    mmd_cli_progress("simulate", "poses", done, total);
}

static double db_or_nan(double v) { return v > 0 ? 10.0 * log10(v) : -INFINITY; }

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

static mmd_status write_result(const char *path, const mmd_cli_run *run, const mmd_aoa_result *r, double t_total)
{
    const mmd_experiment *e = &run->e;
    const mmd_sim *sim = run->sim;
    mmd_json j;
    mmd_json_init(&j);
    mmd_json_begin_object(&j);
    mmd_json_kv_string(&j, "tool", "mmdiff simulate");
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
    mmd_json_end_object(&j);
    mmd_status st = mmd_json_save(&j, path);
    mmd_json_free(&j);
    return st;
}

int mmd_cmd_simulate(const mmd_cli_opts *o, int argc, char **argv)
{
    mmd_cli_run r;
    int rc = mmd_cli_run_open(&r, o, "simulate", argc, argv, 1);
    if (rc) return rc;
    const mmd_experiment *e = &r.e;
    mmd_aoa_result res = {0};
    mmd_info("simulate: %zu poses x %d rays, depth %d, %s mode", r.n_poses, e->solver.rays, e->solver.max_depth,
             mmd_cfg_enum_name("solver.mode", e->solver.mode));
    mmd_status st = mmd_sim_aoa(r.sim, r.poses, r.n_poses, &res, progress, NULL);
    char path[4200];
    if (st == MMD_OK) st = mmd_cli_run_write_records(&r);
    if (st == MMD_OK) {
        size_t shape[3] = {res.n_poses, (size_t)res.n_el, (size_t)res.n_az};
        snprintf(path, sizeof path, "%s/spectra.npy", r.dir);
        st = mmd_npy_write(path, MMD_DT_F32, shape, 3, res.spectra);
    }
    if (st == MMD_OK && e->output.png) st = write_pngs(r.dir, e, &res);
    if (st == MMD_OK && e->output.measurements) st = write_measurements(r.dir, e, r.poses, &res);
    if (st == MMD_OK && e->output.paths) {
        if (res.paths) {
            snprintf(path, sizeof path, "%s/paths.csv", r.dir);
            st = mmd_paths_write_csv(path, (const mmd_path *const *)res.paths, res.n_paths, res.n_poses,
                                     e->solver.max_depth);
        } else {
            mmd_warn("output.paths: %s", "only the specular solver has discrete paths (solver.mode: specular); "
                                         "no paths.csv written");
        }
    }
    if (st == MMD_OK) {
        snprintf(path, sizeof path, "%s/result.json", r.dir);
        st = write_result(path, &r, &res, mmd_now() - r.t0);
    }
    if (st != MMD_OK) {
        rc = mmd_cli_fail();
    } else {
        printf("%-5s %12s %12s %9s %9s   %s\n", "pose", "total [dB]", "LoS [dB]", "peak az", "peak el", "peak [dB]");
        for (size_t k = 0; k < res.n_poses; k++) {
            const mmd_aoa_peak *pk = res.n_peaks[k] ? &res.peaks[k * MMD_AOA_PEAKS] : NULL;
            printf("%-5zu %12.2f %12.2f %9.1f %9.1f   %.2f\n", k, db_or_nan(res.total_power[k]),
                   db_or_nan(res.los_power[k]), pk ? pk->az_deg : NAN, pk ? pk->el_deg : NAN,
                   pk ? pk->power_db : -INFINITY);
        }
        printf("outputs: %s/ (spectra.npy, result.json%s%s%s)\n", r.dir, e->output.png ? ", png/" : "",
               e->output.measurements ? ", measurements/" : "", e->output.paths && res.paths ? ", paths.csv" : "");
        const mmd_sim *sim = r.sim;
        printf("time: %.2f s total, %.3f s per pose\n", mmd_now() - r.t0,
               res.n_poses ? (sim->t_trace + sim->t_reduce + sim->t_paths) / res.n_poses : 0.0);
    }
    mmd_aoa_result_free(&res);
    mmd_cli_run_close(&r);
    return rc;
}
