/*
 * `mmdiff dataset EXP.yaml [-o DIR] [--set ...]`: the synthetic measurement sets of the
 * robustness protocol (SPEC 6, docs/evaluation.md). On the clean mesh (scene.noise is
 * ignored) with the experiment's materials: TRAJ and RAND pose sets (dataset block), their
 * AoA spectra (aoa grid, rx.array, solver), optional log-normal measurement noise and a
 * noise floor, written as DIR/TRAJ/ and DIR/RAND/ measurement sets (poses.csv,
 * spectra.npy, manifest.yaml: what train.measurements and `mmdiff evaluate` read), plus
 * DIR/dataset.json, experiment.resolved.yaml and command.txt. Nothing is written until
 * both sets are simulated.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "mmd_eval.h"
#include "mmd_par.h"
#include "run.h"

/* RNG streams of the measurement noise (the pose sets use their own) */
#define STREAM_NOISE_TRAJ 0x4e545241u
#define STREAM_NOISE_RAND 0x4e52414eu

static void progress(size_t done, size_t total, void *user)
{
    mmd_cli_progress((const char *)user, "poses", done, total);
}

typedef struct one_set {
    const char *name;
    mmd_cfg_pose *poses;
    size_t n;
    mmd_aoa_result res;
    int have_res;
    double t_poses, t_sim;
} one_set;

static mmd_status make_set(mmd_cli_run *r, one_set *s, int traj, uint64_t stream)
{
    const mmd_experiment *e = &r->e;
    double t0 = mmd_now();
    mmd_status st = traj ? mmd_poses_traj(r->scene, r->bvh, &e->dataset, &s->poses, &s->n)
                         : mmd_poses_rand(r->scene, r->bvh, &e->dataset, &s->poses, &s->n);
    s->t_poses = mmd_now() - t0;
    if (st != MMD_OK || s->n == 0) return st;
    mmd_info("dataset %s: %zu poses in %.2f s", s->name, s->n, s->t_poses);
    char what[64];
    snprintf(what, sizeof what, "dataset %s", s->name);
    t0 = mmd_now();
    /* across MPI ranks: poses sharded; rank 0 holds the spectra and alone writes */
    st = mmd_sim_aoa_par(r->sim, s->poses, s->n, &s->res, progress, what);
    s->t_sim = mmd_now() - t0;
    if (st != MMD_OK) return st;
    s->have_res = 1;
    if (mmd_par_rank() != 0) return MMD_OK;
    return mmd_eval_measurement_noise(s->res.spectra, s->n, s->res.n_el, s->res.n_az, e->dataset.measurement_noise_db,
                                      e->dataset.has_noise_floor, e->dataset.noise_floor_db, (uint64_t)e->dataset.seed,
                                      stream);
}

static mmd_status write_set(const mmd_cli_run *r, const char *dir, const one_set *s)
{
    const mmd_experiment *e = &r->e;
    mmd_measurements m;
    memset(&m, 0, sizeof m);
    m.n_poses = s->n;
    m.poses = s->poses;
    m.n_el = s->res.n_el;
    m.n_az = s->res.n_az;
    m.spectra = s->res.spectra;
    m.frequency_hz = e->scene.frequency_hz;
    m.azimuth_deg = e->aoa.azimuth_deg;
    m.elevation_deg = e->aoa.elevation_deg;
    m.has_array = 1;
    m.array_rows = e->rx.array.rows;
    m.array_cols = e->rx.array.cols;
    m.array_spacing_wavelengths = e->rx.array.spacing_wavelengths;
    snprintf(m.array_window, sizeof m.array_window, "%s", mmd_cfg_enum_name("rx.array.window", e->rx.array.window));
    snprintf(m.array_element, sizeof m.array_element, "%s",
             mmd_cfg_enum_name("rx.array.element", e->rx.array.element));
    /* per pose: the noiseless total and LoS power, for checks without the simulator */
    static const char *const names[3] = {"total_power_db", "los_power_db", "los_visible"};
    double *extra = mmd_malloc(s->n, 3 * sizeof(double), "pose columns");
    if (!extra) return MMD_ERR_NOMEM;
    for (size_t k = 0; k < s->n; k++) {
        extra[3 * k] = s->res.total_power[k] > 0 ? 10 * log10(s->res.total_power[k]) : -400;
        extra[3 * k + 1] = s->res.los_power[k] > 0 ? 10 * log10(s->res.los_power[k]) : -400;
        extra[3 * k + 2] = s->res.los_visible[k];
    }
    char floor[64], comment[1024];
    if (e->dataset.has_noise_floor) snprintf(floor, sizeof floor, "%g dB below each maximum", -e->dataset.noise_floor_db);
    else snprintf(floor, sizeof floor, "none");
    snprintf(comment, sizeof comment,
             "mmdiff dataset: the %s set, ground truth on the clean mesh of %s\n"
             "measurement noise %g dB (log-normal per bin), noise floor %s, seed %lld\n"
             "extra pose columns: total_power_db, los_power_db (noiseless, -400 = none), los_visible",
             s->name, e->scene.file.path, e->dataset.measurement_noise_db, floor, (long long)e->dataset.seed);
    mmd_status st = mmd_measurements_write(dir, &m, names, extra, 3, comment);
    free(extra);
    return st;
}

mmd_status mmd_cli_dataset_make(mmd_cli_run *r, const char *dir)
{
    one_set sets[2] = {{.name = "TRAJ"}, {.name = "RAND"}};
    mmd_status st = make_set(r, &sets[0], 1, STREAM_NOISE_TRAJ);
    st = mmd_par_agree(st);
    if (st == MMD_OK) st = mmd_par_agree(make_set(r, &sets[1], 0, STREAM_NOISE_RAND));
    int root = mmd_par_rank() == 0;
    char path[4200];
    for (int k = 0; st == MMD_OK && root && k < 2; k++) {
        if (!sets[k].n) continue;
        snprintf(path, sizeof path, "%s/%s", dir, sets[k].name);
        st = write_set(r, path, &sets[k]);
    }
    if (st == MMD_OK && root) {
        const mmd_cfg_dataset *d = &r->e.dataset;
        mmd_json j;
        mmd_json_init(&j);
        mmd_json_begin_object(&j);
        mmd_json_kv_string(&j, "tool", "mmdiff dataset");
        mmd_json_kv_string(&j, "scene", r->e.scene.file.path);
        mmd_json_kv_bool(&j, "clean_mesh", true);
        for (int k = 0; k < 2; k++) {
            mmd_json_key(&j, sets[k].name);
            mmd_json_begin_object(&j);
            mmd_json_kv_int(&j, "poses", (long long)sets[k].n);
            mmd_json_kv_string(&j, "dir", sets[k].n ? sets[k].name : NULL);
            mmd_json_kv_double(&j, "seconds_poses", sets[k].t_poses);
            mmd_json_kv_double(&j, "seconds_simulation", sets[k].t_sim);
            mmd_json_end_object(&j);
        }
        mmd_json_key(&j, "dataset");
        mmd_json_begin_object(&j);
        mmd_json_kv_int(&j, "traj_poses", d->traj_poses);
        mmd_json_kv_int(&j, "rand_poses", d->rand_poses);
        mmd_json_kv_double(&j, "traj_step_m", d->traj_step_m);
        mmd_json_kv_double(&j, "clearance_m", d->clearance_m);
        mmd_json_kv_doubles(&j, "height_m", d->height_m, 2);
        mmd_json_kv_double(&j, "pitch_jitter_deg", d->pitch_jitter_deg);
        mmd_json_kv_double(&j, "measurement_noise_db", d->measurement_noise_db);
        if (d->has_noise_floor) mmd_json_kv_double(&j, "noise_floor_db", d->noise_floor_db);
        else {
            mmd_json_key(&j, "noise_floor_db");
            mmd_json_null(&j);
        }
        mmd_json_kv_int(&j, "seed", (long long)d->seed);
        mmd_json_end_object(&j);
        mmd_cli_run_json_common(r, &j);
        mmd_json_end_object(&j);
        snprintf(path, sizeof path, "%s/dataset.json", dir);
        st = mmd_json_save(&j, path);
        mmd_json_free(&j);
    }
    st = mmd_par_agree(st);
    if (st == MMD_OK && root)
        for (int k = 0; k < 2; k++)
            if (sets[k].n)
                printf("%s: %zu poses -> %s/%s (simulated in %.1f s)\n", sets[k].name, sets[k].n, dir, sets[k].name,
                       sets[k].t_sim);
    for (int k = 0; k < 2; k++) {
        free(sets[k].poses);
        if (sets[k].have_res) mmd_aoa_result_free(&sets[k].res);
    }
    return st;
}

int mmd_cmd_dataset(const mmd_cli_opts *o, int argc, char **argv)
{
    mmd_cli_run r;
    int rc = mmd_cli_run_open_flags(&r, o, "dataset", argc, argv, 0, NULL, 0, MMD_CLI_RUN_CLEAN_SCENE);
    if (rc) return rc;
    if (r.e.scene.noise.enabled)
        mmd_info("dataset: scene.noise is ignored: the ground truth is simulated on the clean mesh %s",
                 r.e.scene.file.path);
    mmd_status st = mmd_cli_dataset_make(&r, r.dir);
    if (st == MMD_OK && mmd_par_rank() == 0) st = mmd_cli_run_write_records(&r);
    st = mmd_par_agree(st);
    rc = st == MMD_OK ? 0 : mmd_cli_fail();
    mmd_cli_run_close(&r);
    return rc;
}
