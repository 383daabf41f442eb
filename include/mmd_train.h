/*
 * mmd_train.h - what calibration needs besides the differentiable engine (mmd_calib.h):
 * measurement sets (SPEC 6) read and checked against the experiment, and a generic
 * training driver (split, shuffle, batches, validation, early stopping, checkpoints,
 * exact resume) that drives any objective through a small table of callbacks, so that
 * it is testable without a device and the same loop serves every material model.
 *
 * Measurement set: a directory holding manifest.yaml (or the manifest's own path), as
 * written by `mmdiff simulate` with `output: {measurements: true}`; format in
 * docs/calibration.md ("Measurement sets").
 *
 *     mmd_measurements ms;
 *     if (mmd_measurements_read("runs/truth/measurements", &ms) != MMD_OK ||
 *         mmd_measurements_check(&ms, &exp) != MMD_OK) {
 *         fprintf(stderr, "mmdiff: %s\n", mmd_last_error());   // names file and field
 *         ...
 *     }
 *     ... ms.poses[k], ms.spectra + k * ms.n_el * ms.n_az ...
 *     mmd_measurements_free(&ms);
 *
 * Training driver: the objective owns the parameters and the optimiser (Adam for the
 * engine); the driver decides which poses go into which step and keeps the books.
 *
 *     mmd_train_objective obj = {.ctx = my, .n_params = n, .get_params = ..., ...};
 *     mmd_train_options o = mmd_train_defaults();
 *     mmd_train_options_from_cfg(&exp.train, &o);
 *     o.checkpoint_path = "runs/cal/checkpoint.bin";
 *     o.resume = 0;                        // 1: continue from checkpoint_path exactly
 *     mmd_train_result r;
 *     if (mmd_train_run(&obj, ms.n_poses, &o, &r) == MMD_OK) {
 *         ... r.epochs[i].loss, r.best_epoch, r.interrupted ...
 *     }
 *     mmd_train_result_free(&r);
 *
 * Determinism: the split and every epoch's order come from train.seed alone; a
 * checkpoint holds parameters, optimiser state, the RNG state, the current epoch's order
 * and position, the best parameters and the loss history, so a run stopped at any step
 * and resumed ends with the same bytes as one that never stopped (given a deterministic
 * objective).
 */
#ifndef MMD_TRAIN_H
#define MMD_TRAIN_H

#include "mmd_config.h"
#include "mmd_core.h"
#include "mmd_physics.h"
#include "mmd_scene.h"

#include <signal.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------
 * Measurement sets
 */

/* Manifests larger than this are not manifests (a per-pose file list of a million poses
 * fits easily); refusing them bounds the YAML parse. */
#define MMD_MANIFEST_MAX_BYTES ((size_t)64 << 20)

typedef struct mmd_measurements {
    char *manifest;          /* absolute or as given: the manifest file read */
    char *poses_file;        /* poses CSV, resolved against the manifest's directory */
    char *spectra_file;      /* stacked NPY, or NULL when per-pose files were listed */
    size_t n_poses;
    mmd_cfg_pose *poses;     /* [n_poses] */
    int n_el, n_az;
    float *spectra;          /* [pose][el][az], linear power per transmitted power */
    double frequency_hz;
    mmd_cfg_grid azimuth_deg, elevation_deg; /* [start, stop, step] and bin counts */
    int has_array;           /* the manifest described the receiving array */
    int array_rows, array_cols;
    double array_spacing_wavelengths;
    char array_window[32], array_element[32]; /* "" when not given */
    uint64_t hash;           /* FNV-1a of poses and spectra: identifies the data set */
} mmd_measurements;

/* Read a measurement set. `path` is the directory holding manifest.yaml, or a manifest
 * file. Manifest keys (docs/calibration.md): format (mmdiff-measurements-1), frequency_hz,
 * poses (CSV), spectra (one stacked NPY [n, n_el, n_az], or a list of per-pose NPY files
 * [n_el, n_az]), shape (optional check), units (linear_power or db), azimuth_deg and
 * elevation_deg ([start, stop, step]), array (optional {rows, cols, spacing_wavelengths,
 * window, element}). Errors name the file and the field and say what was expected; every
 * allocation is bounded by the size of the file it comes from. Powers must be finite and
 * >= 0 (in dB: finite or -inf). On failure *out is zeroed. */
mmd_status mmd_measurements_read(const char *path, mmd_measurements *out);

/* Check a set against the experiment that will be fitted to it: the same frequency, the
 * same azimuth/elevation grids (aoa.azimuth_deg / aoa.elevation_deg: start, stop, step and
 * bin counts) and, when the manifest describes it, the same receiving array (rows, cols,
 * spacing, window, element). Errors name the manifest, the field and both values. */
mmd_status mmd_measurements_check(const mmd_measurements *m, const mmd_experiment *e);

void mmd_measurements_free(mmd_measurements *m);

/* Write a measurement set that mmd_measurements_read reads back: dir (created) receives
 * poses.csv, spectra.npy (stacked [n, n_el, n_az], linear power) and manifest.yaml
 * (frequency, grids, shape, units and, when m->has_array, the array). Only n_poses,
 * poses, n_el, n_az, spectra, frequency_hz, the grids and the array fields of m are used.
 * n_extra extra numeric columns named extra_names[c] (e.g. a per-sample transmitter
 * position) are appended to poses.csv, values extra[pose * n_extra + c]; readers ignore
 * them. comment (may be NULL) becomes '#' lines at the top of the manifest. The old
 * manifest is removed first and the new one written last, so a write that fails half way
 * never leaves a set that reads. Powers must be finite and >= 0. */
mmd_status mmd_measurements_write(const char *dir, const mmd_measurements *m, const char *const *extra_names,
                                  const double *extra, int n_extra, const char *comment);

/* ---------------------------------------------------------------------------------------
 * Learned per-object materials (model/materials.yaml of `mmdiff calibrate`)
 *
 *     format: mmdiff-materials-1
 *     model: per_object
 *     frequency_hz: 60000000000
 *     materials:
 *       "wall":  {eps_r: 5.31, sigma_s_per_m: 0.45, scattering: 0.2, xpd: 0.1,
 *                 thickness_m: null, alpha_r: 20}
 *
 * The `materials` map has the shape of an experiment's scene.materials, so it can be pasted
 * there. thickness_m null = half-space.
 */

/* Write one entry per scene object (mats[o] for scene->objects[o]); atomic. `comment`
 * (may be NULL) becomes '#' lines at the top. */
mmd_status mmd_materials_yaml_write(const char *path, const mmd_scene *scene, const mmd_material *mats,
                                    double frequency_hz, const char *comment);

/* Read a materials file onto mats[] (n = scene->n_objects; entries start as the caller's
 * materials and keys present in the file replace them). Every name must be a scene object
 * (an unknown one is an error listing the known ones); given[o] (may be NULL) is set to 1
 * for the objects the file names. Values are range-checked like an experiment's
 * scene.materials; *frequency_hz (may be NULL) receives the file's frequency (0 if absent). */
mmd_status mmd_materials_yaml_read(const char *path, const mmd_scene *scene, mmd_material *mats, int *given,
                                   double *frequency_hz);

/* model/geometry.yaml, written by calibrate with a calibrate_geometry block and applied
 * by predict: the learned pose of one object, p = (t_x, t_y, t_z [m], a_x, a_y [rad]) of
 * mmd_calib_geom.h about `centroid` (the object's centroid in the scene as loaded):
 *     format: mmdiff-geometry-1
 *     object: "reflector"
 *     translation_m: [0.0012, -0.0004, 0.1987]
 *     rotation_rad: [0.0021, -0.0003]
 *     centroid_m: [2, 0, 1.5]
 * Numbers round-trip exactly; write is atomic. read copies the object name into
 * object[cap] and range-checks every number (|t| <= 1 km, |a| <= 2 pi). */
mmd_status mmd_geometry_yaml_write(const char *path, const char *object, const double p[5], const double centroid[3],
                                   const char *comment);
mmd_status mmd_geometry_yaml_read(const char *path, char *object, size_t cap, double p[5], double centroid[3]);

/* ---------------------------------------------------------------------------------------
 * Training driver
 */

/* What is trained. Every callback gets `ctx`. The loss averages over the n poses given
 * (pose_ids index the measurement set); with want_grad it ADDS the gradient of that
 * average to the objective's gradient (the driver calls zero_grad before each step).
 * step applies one optimiser update with the accumulated gradient. get_opt / set_opt
 * expose the optimiser's state (step count and two moment vectors of n_params each, as
 * Adam has) so that checkpoints can restore it exactly. */
typedef struct mmd_train_objective {
    void *ctx;
    size_t n_params;
    void (*get_params)(void *ctx, float *raw);
    mmd_status (*set_params)(void *ctx, const float *raw);
    void (*zero_grad)(void *ctx);
    mmd_status (*loss)(void *ctx, const size_t *pose_ids, size_t n, double *loss, int want_grad);
    mmd_status (*step)(void *ctx, double lr);
    void (*get_opt)(void *ctx, int64_t *step, float *m, float *v);
    mmd_status (*set_opt)(void *ctx, int64_t step, const float *m, const float *v);
} mmd_train_objective;

/* Progress reported after every optimisation step (epoch 1-based, step 1-based within the
 * epoch). Returning non-zero asks the driver to stop as *stop does. */
typedef int (*mmd_train_step_fn)(void *user, int epoch, size_t step, size_t steps_per_epoch,
                                 double batch_loss);

typedef struct mmd_train_options {
    double lr;
    int batch_poses;          /* poses per step (the last batch of an epoch may be smaller) */
    int epochs;               /* total epochs, counting those of a resumed run */
    double val_fraction;      /* share of the poses held out (rounded; >= 1 training pose) */
    int early_stop_patience;  /* epochs without a better monitored loss; 0 = off */
    int64_t seed;             /* split and shuffles */
    int checkpoint_every;     /* epochs; a final checkpoint is always written */
    const char *checkpoint_path; /* NULL: no checkpoints (and no resume) */
    int resume;               /* continue from checkpoint_path */
    uint64_t data_hash;       /* fingerprint of the training data, checked on resume */
    /* When *stop becomes non-zero (a signal handler sets it), the driver finishes the
     * current step, writes a checkpoint and returns MMD_OK with result.interrupted = 1. */
    volatile sig_atomic_t *stop;
    mmd_train_step_fn on_step; /* may be NULL */
    void *user;
    int progress;             /* 1: progress bar on a terminal / one line per epoch on stderr */
} mmd_train_options;

/* lr 5e-4, batch 8, 100 epochs, val 0.1, patience 5, seed 1, checkpoint every epoch,
 * progress on, no checkpoint path. */
mmd_train_options mmd_train_defaults(void);
/* Copy the train block's driver keys (lr, batch_poses, epochs, val_fraction,
 * early_stop_patience, seed, checkpoint_every) into o; the rest of o is unchanged. */
void mmd_train_options_from_cfg(const mmd_cfg_train *t, mmd_train_options *o);

typedef struct mmd_train_epoch {
    double loss;     /* mean training loss over the epoch's poses (each batch's mean loss
                        weighted by its pose count, at the parameters of that step) */
    double val_loss; /* mean validation loss after the epoch; NaN without validation poses */
    double seconds;  /* wall time of the epoch, validation included */
} mmd_train_epoch;

typedef struct mmd_train_result {
    mmd_train_epoch *epochs; /* every epoch so far, resumed ones included */
    size_t n_epochs;
    double final_loss;       /* training loss of the last epoch */
    double best_loss;        /* best monitored loss (validation, or training without one) */
    int best_epoch;          /* 1-based epoch whose parameters were kept; 0 = none */
    int monitor_is_val;      /* 1: early stopping watched the validation loss */
    int stopped_early;
    int interrupted;         /* stopped by *stop / on_step; a checkpoint was written */
    int resumed;             /* started from a checkpoint */
    int64_t steps;           /* optimisation steps, all runs together */
    size_t n_train, n_val;
    size_t *train_ids, *val_ids; /* ascending pose indices */
    double seconds;          /* wall time of this call */
} mmd_train_result;

/* Train. On return (MMD_OK, not interrupted) the objective holds the best parameters
 * (those of best_epoch) and, with a checkpoint path, the final checkpoint is written.
 * Errors: invalid options, a non-finite loss (names the epoch and step), objective
 * failures, unreadable / mismatching checkpoints on resume. */
mmd_status mmd_train_run(const mmd_train_objective *obj, size_t n_poses, const mmd_train_options *o,
                         mmd_train_result *res);
void mmd_train_result_free(mmd_train_result *r);

/* What mmd_train_run with o->resume checks before it changes anything: the checkpoint
 * reads (not truncated, not corrupted) and describes this problem (parameter and pose
 * counts, data fingerprint, seed, batch size, split). Lets a command refuse a resume
 * before it writes any output. */
mmd_status mmd_train_resume_check(size_t n_params, size_t n_poses, const mmd_train_options *o);

/* The deterministic split used by mmd_train_run: n_val = round(val_fraction n) clamped to
 * [0, n - 1], chosen by a seeded shuffle; both lists ascending and malloc'ed. */
mmd_status mmd_train_split(size_t n_poses, double val_fraction, int64_t seed, size_t **train_ids,
                           size_t *n_train, size_t **val_ids, size_t *n_val);

/* ---------------------------------------------------------------------------------------
 * Checkpoints (binary, docs/calibration.md): "MMDCKPT1", version, payload size, FNV-1a 64
 * of the payload, then the payload. Written atomically; a truncated, corrupted or foreign
 * file is refused with a message that says which.
 */

typedef struct mmd_train_checkpoint {
    uint64_t n_params, n_poses, data_hash;
    int64_t seed;
    double lr;               /* learning rate of the run that wrote it */
    int64_t epoch;           /* completed epochs */
    uint64_t batch_pos;      /* steps done in the current (incomplete) epoch */
    double epoch_loss_sum;   /* sum of batch loss x batch size so far in that epoch */
    uint64_t epoch_loss_count;
    double epoch_seconds;    /* time spent so far in that epoch */
    int64_t steps;           /* optimisation steps so far */
    int64_t opt_step;        /* optimiser's own step count */
    double best_loss;
    int64_t best_epoch;      /* 0 = none yet */
    int64_t bad_epochs;      /* epochs since the best */
    int32_t stopped_early, finished, monitor_is_val, batch_poses;
    uint64_t rng_state, rng_inc;
    uint64_t n_train, n_val;
    uint64_t *train_ids, *val_ids, *perm; /* perm: the current epoch's order (n_train) */
    uint64_t n_history;
    mmd_train_epoch *history;
    float *params, *opt_m, *opt_v, *best_params; /* n_params each */
} mmd_train_checkpoint;

mmd_status mmd_train_checkpoint_write(const char *path, const mmd_train_checkpoint *c);
mmd_status mmd_train_checkpoint_read(const char *path, mmd_train_checkpoint *c);
void mmd_train_checkpoint_free(mmd_train_checkpoint *c);

#ifdef __cplusplus
}
#endif
#endif
