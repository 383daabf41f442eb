/*
 * `mmdiff evaluate EXP.yaml --pred DIR_OR_NPY --truth MEASUREMENTS [-o DIR] [--set ...]`:
 * the peak metrics of SPEC 5 (docs/evaluation.md) between predicted spectra and a
 * ground-truth measurement set, with the experiment's evaluate block as thresholds.
 *
 * --pred is a measurement set (a directory with manifest.yaml, or the manifest), a run
 * directory with spectra.npy (simulate, predict; its experiment.resolved.yaml gives the
 * grid and poses), or an NPY file [pose, elevation, azimuth] on the experiment's aoa grid.
 * Writes DIR/metrics.json, DIR/per_pose.csv, experiment.resolved.yaml and command.txt,
 * all after every check passed, and prints the summary table.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mmd_eval.h"
#include "run.h"

/* Grids from different writers agree to printing precision. */
#define GRID_TOL 1e-6

static int is_file(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int ends_with(const char *s, const char *t)
{
    size_t a = strlen(s), b = strlen(t);
    return a >= b && !strcmp(s + a - b, t);
}

/* Predicted spectra, wherever they came from. */
typedef struct pred_set {
    char *file;            /* for messages: the NPY or manifest read */
    size_t n;
    int n_el, n_az;
    float *spectra;        /* owned unless it belongs to ms */
    mmd_cfg_grid az, el;
    const char *grid_from; /* where the grid came from, for messages */
    mmd_cfg_pose *poses;   /* NULL when unknown; owned unless it belongs to ms */
    size_t n_known;        /* poses in the run's record */
    int have_freq;
    double freq_hz;
    mmd_measurements ms;
    int have_ms;
    mmd_experiment pe;     /* the run directory's resolved experiment */
    int have_pe;
    char grid_src[4400];
} pred_set;

static void pred_free(pred_set *p)
{
    if (p->have_ms) {
        mmd_measurements_free(&p->ms);
    } else {
        free(p->spectra);
        free(p->poses);
    }
    if (p->have_pe) mmd_experiment_free(&p->pe);
    free(p->file);
    memset(p, 0, sizeof *p);
}

static mmd_status read_npy(pred_set *p, const char *path, const mmd_cfg_grid *az, const mmd_cfg_grid *el)
{
    mmd_array a;
    mmd_status st = mmd_npy_read_f32(path, &a);
    if (st != MMD_OK) return st;
    p->file = strdup(path);
    if (a.ndim == 3) {
        p->n = a.shape[0];
        p->n_el = (int)a.shape[1];
        p->n_az = (int)a.shape[2];
    } else if (a.ndim == 2) {
        p->n = 1;
        p->n_el = (int)a.shape[0];
        p->n_az = (int)a.shape[1];
    } else {
        mmd_array_free(&a);
        return mmd_error(MMD_ERR_INVALID, "%s: %d dimensions; expected spectra [pose, elevation, azimuth]", path,
                         a.ndim);
    }
    if (a.shape[a.ndim - 1] != (size_t)az->count || a.shape[a.ndim - 2] != (size_t)el->count) {
        mmd_status e = mmd_error(MMD_ERR_INVALID, "%s: %zu x %zu (elevation x azimuth) bins, but the grid from %s has "
                                 "%d x %d (elevation_deg [%g, %g, %g] x azimuth_deg [%g, %g, %g])",
                                 path, a.shape[a.ndim - 2], a.shape[a.ndim - 1], p->grid_from, el->count, az->count,
                                 el->start, el->stop, el->step, az->start, az->stop, az->step);
        mmd_array_free(&a);
        return e;
    }
    p->spectra = a.data;
    p->az = *az;
    p->el = *el;
    return p->file ? MMD_OK : mmd_error(MMD_ERR_NOMEM, "out of memory");
}

static mmd_status read_pred(pred_set *p, const char *arg, const mmd_experiment *e, const char *exp_path)
{
    memset(p, 0, sizeof *p);
    struct stat sb;
    if (stat(arg, &sb) != 0)
        return mmd_error(MMD_ERR_IO, "--pred %s: no such file or directory (expected a run directory with "
                         "spectra.npy, a measurement set, or an NPY file)",
                         arg);
    char path[4200];
    int is_set = 0;
    if (S_ISDIR(sb.st_mode)) {
        snprintf(path, sizeof path, "%s/manifest.yaml", arg);
        is_set = is_file(path);
    } else {
        is_set = ends_with(arg, ".yaml") || ends_with(arg, ".yml");
    }
    if (is_set) {
        mmd_status st = mmd_measurements_read(arg, &p->ms);
        if (st != MMD_OK) return st;
        p->have_ms = 1;
        p->file = strdup(p->ms.manifest);
        p->n = p->ms.n_poses;
        p->n_el = p->ms.n_el;
        p->n_az = p->ms.n_az;
        p->spectra = p->ms.spectra;
        p->az = p->ms.azimuth_deg;
        p->el = p->ms.elevation_deg;
        p->poses = p->ms.poses;
        p->have_freq = 1;
        p->freq_hz = p->ms.frequency_hz;
        snprintf(p->grid_src, sizeof p->grid_src, "%s", p->ms.manifest);
        p->grid_from = p->grid_src;
        return p->file ? MMD_OK : mmd_error(MMD_ERR_NOMEM, "out of memory");
    }
    const mmd_cfg_grid *az = &e->aoa.azimuth_deg, *el = &e->aoa.elevation_deg;
    snprintf(p->grid_src, sizeof p->grid_src, "%s (aoa)", exp_path);
    if (S_ISDIR(sb.st_mode)) {
        snprintf(path, sizeof path, "%s/spectra.npy", arg);
        if (!is_file(path))
            return mmd_error(MMD_ERR_IO, "--pred %s: neither spectra.npy nor manifest.yaml in it (expected the run "
                             "directory of simulate/predict or a measurement set)",
                             arg);
        /* the run's own record says which grid and poses the spectra are on */
        char res[4200];
        snprintf(res, sizeof res, "%s/experiment.resolved.yaml", arg);
        if (is_file(res)) {
            mmd_status st = mmd_experiment_load(res, NULL, 0, &p->pe);
            if (st != MMD_OK) return st;
            p->have_pe = 1;
            az = &p->pe.aoa.azimuth_deg;
            el = &p->pe.aoa.elevation_deg;
            snprintf(p->grid_src, sizeof p->grid_src, "%s (aoa)", res);
            p->have_freq = 1;
            p->freq_hz = p->pe.scene.frequency_hz;
            if (p->pe.rx.poses_csv.path) {
                st = mmd_cfg_read_poses_csv(p->pe.rx.poses_csv.path, &p->poses, &p->n_known);
                if (st != MMD_OK) return st;
            } else if (p->pe.rx.n_poses) {
                p->poses = mmd_malloc(p->pe.rx.n_poses, sizeof *p->poses, "poses");
                if (!p->poses) return MMD_ERR_NOMEM;
                memcpy(p->poses, p->pe.rx.poses, p->pe.rx.n_poses * sizeof *p->poses);
                p->n_known = p->pe.rx.n_poses;
            }
        }
        p->grid_from = p->grid_src;
        mmd_status st = read_npy(p, path, az, el);
        if (st == MMD_OK && p->poses && p->n_known != p->n) { /* a record that does not describe the spectra */
            free(p->poses);
            p->poses = NULL;
        }
        return st;
    }
    p->grid_from = p->grid_src;
    return read_npy(p, arg, az, el);
}

static int same(double a, double b) { return fabs(a - b) <= GRID_TOL * (1.0 + fabs(b)); }

static mmd_status check_grid(const char *key, const mmd_cfg_grid *g, const char *gfrom, const mmd_cfg_grid *t,
                             const char *tfrom)
{
    if (g->count == t->count && same(g->start, t->start) && same(g->stop, t->stop) && same(g->step, t->step))
        return MMD_OK;
    return mmd_error(MMD_ERR_INVALID, "%s: the predicted spectra use [%.10g, %.10g, %.10g] (%d bins, from %s) but the "
                     "ground truth uses [%.10g, %.10g, %.10g] (%d bins, from %s); evaluate on the same grid",
                     key, g->start, g->stop, g->step, g->count, gfrom, t->start, t->stop, t->step, t->count, tfrom);
}

static mmd_status check_pair(const pred_set *p, const mmd_measurements *t)
{
    mmd_status st = check_grid("azimuth_deg", &p->az, p->grid_from, &t->azimuth_deg, t->manifest);
    if (st == MMD_OK) st = check_grid("elevation_deg", &p->el, p->grid_from, &t->elevation_deg, t->manifest);
    if (st != MMD_OK) return st;
    if (p->n != t->n_poses)
        return mmd_error(MMD_ERR_INVALID, "%s has %zu poses but the ground truth %s has %zu; expected one predicted "
                         "spectrum per ground-truth pose, in the same order",
                         p->file, p->n, t->poses_file, t->n_poses);
    if (p->have_freq && fabs(p->freq_hz - t->frequency_hz) > 1e-6 * t->frequency_hz)
        return mmd_error(MMD_ERR_INVALID, "frequency_hz: the predicted spectra are at %.10g Hz (%s), the ground truth "
                         "at %.10g Hz (%s)",
                         p->freq_hz, p->grid_from, t->frequency_hz, t->manifest);
    for (size_t k = 0; p->poses && k < p->n; k++) {
        const mmd_cfg_pose *a = &p->poses[k], *b = &t->poses[k];
        double d = 0;
        for (int i = 0; i < 3; i++) d = fmax(d, fabs(a->position_m[i] - b->position_m[i]));
        double da = fmax(fabs(a->yaw_deg - b->yaw_deg), fmax(fabs(a->pitch_deg - b->pitch_deg),
                                                              fabs(a->roll_deg - b->roll_deg)));
        if (d > 1e-6 || da > 1e-6)
            return mmd_error(MMD_ERR_INVALID, "pose %zu: predicted at (%g, %g, %g) m, yaw/pitch/roll (%g, %g, %g) deg "
                             "(%s), but the ground truth pose is (%g, %g, %g) m, (%g, %g, %g) deg (%s)",
                             k, a->position_m[0], a->position_m[1], a->position_m[2], a->yaw_deg, a->pitch_deg,
                             a->roll_deg, p->grid_from, b->position_m[0], b->position_m[1], b->position_m[2],
                             b->yaw_deg, b->pitch_deg, b->roll_deg, t->poses_file);
    }
    return MMD_OK;
}

int mmd_cmd_evaluate(const mmd_cli_opts *o, int argc, char **argv)
{
    const char *pred_arg = NULL, *truth_arg = NULL;
    mmd_cli_extra_opt extra[2] = {{"--pred", &pred_arg, NULL, 1}, {"--truth", &truth_arg, NULL, 1}};
    mmd_cli_run r;
    int rc = mmd_cli_run_open_flags(&r, o, "evaluate", argc, argv, 0, extra, 2, MMD_CLI_RUN_CONFIG_ONLY);
    if (rc) return rc;
    mmd_measurements truth;
    pred_set pred;
    memset(&pred, 0, sizeof pred);
    mmd_eval_pose *per = NULL;
    mmd_eval_summary sum;
    mmd_eval_options opt = mmd_eval_defaults();
    mmd_eval_options_from_cfg(&r.e.evaluate, &opt);
    mmd_status st = mmd_measurements_read(truth_arg, &truth);
    int have_truth = st == MMD_OK;
    if (st == MMD_OK) st = read_pred(&pred, pred_arg, &r.e, r.exp_path);
    if (st == MMD_OK) st = check_pair(&pred, &truth);
    double t0 = mmd_now();
    if (st == MMD_OK) {
        st = mmd_eval_spectra(pred.spectra, truth.spectra, truth.n_poses, truth.n_az, truth.n_el, &truth.azimuth_deg,
                              &truth.elevation_deg, &opt, &per, &sum);
        /* name the file the bad bin came from */
        if (st != MMD_OK) {
            const char *msg = mmd_last_error();
            const char *f = strstr(msg, "predicted") ? pred.file : strstr(msg, "ground-truth") ? truth.spectra_file
                                                                                                : NULL;
            if (f) st = mmd_error(st, "%s: %s", f, msg);
        }
    }
    double secs = mmd_now() - t0;
    char path[4200];
    if (st == MMD_OK) st = mmd_cli_run_write_records(&r);
    if (st == MMD_OK) {
        snprintf(path, sizeof path, "%s/per_pose.csv", r.dir);
        st = mmd_eval_write_csv(path, per, truth.n_poses, truth.poses, &opt);
    }
    if (st == MMD_OK) {
        mmd_json j;
        mmd_json_init(&j);
        mmd_json_begin_object(&j);
        mmd_json_kv_string(&j, "tool", "mmdiff evaluate");
        mmd_json_kv_string(&j, "pred", pred.file);
        mmd_json_kv_string(&j, "truth", truth.manifest);
        mmd_eval_json(&j, &sum);
        mmd_eval_json_thresholds(&j, &opt);
        mmd_json_kv_double(&j, "seconds", secs);
        mmd_json_kv_string(&j, "command", r.cmdline);
        mmd_json_end_object(&j);
        snprintf(path, sizeof path, "%s/metrics.json", r.dir);
        st = mmd_json_save(&j, path);
        mmd_json_free(&j);
    }
    if (st == MMD_OK) {
        char title[4400];
        snprintf(title, sizeof title, "%s vs %s: %zu poses", pred.file, truth.manifest, sum.n_poses);
        mmd_eval_print(stdout, &sum, title);
        printf("wrote %s/metrics.json and %s/per_pose.csv\n", r.dir, r.dir);
    }
    free(per);
    pred_free(&pred);
    if (have_truth) mmd_measurements_free(&truth);
    rc = st == MMD_OK ? 0 : mmd_cli_fail();
    mmd_cli_run_close(&r);
    return rc;
}
