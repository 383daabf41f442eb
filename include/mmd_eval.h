/*
 * mmd_eval.h - evaluation (SPEC 5 "Evaluation", SPEC 6): the peak metrics of the paper's
 * Tables 4/5, the synthetic pose sets TRAJ and RAND of the robustness protocol, and the
 * reader of NeRF²'s measured RFID spatial spectra. Definitions (exactly what is computed)
 * are in docs/evaluation.md.
 *
 * Metrics: peaks are the local maxima of a map (8-neighbourhood, azimuth wrapping where
 * the grid spans 360 deg, plateaus counted once) within a dynamic range of its strongest
 * bin; the top-K predicted and ground-truth peaks are matched one-to-one within an
 * angular threshold by an optimal assignment (most matches, then the smallest total
 * angle); F1 comes from the matches pooled over all poses, AAE and APE are the mean
 * angle and |power difference| of the matched pairs.
 *
 *     mmd_eval_options o = mmd_eval_defaults();        // K = 1 and 5
 *     mmd_eval_options_from_cfg(&exp.evaluate, &o);    // dynamic range, threshold
 *     mmd_eval_summary s;
 *     mmd_eval_pose *per = NULL;
 *     if (mmd_eval_spectra(pred, truth, n, n_az, n_el, &exp.aoa.azimuth_deg,
 *                          &exp.aoa.elevation_deg, &o, &per, &s) != MMD_OK) { ... }
 *     printf("top-1 F1 %.3f, AAE %.2f deg, APE %.2f dB\n", s.top[0].f1, s.top[0].aae_deg,
 *            s.top[0].ape_db);
 *     mmd_eval_write_csv("per_pose.csv", per, n, poses, &o);
 *     free(per);
 *
 * Pose sets (dataset block of the experiment): every pose lies inside the room and at
 * least dataset.clearance_m from every surface; TRAJ moves by exactly traj_step_m per pose
 * along collision-free segments with the yaw following the motion. Deterministic for a
 * given dataset.seed, scene and tree.
 *
 *     mmd_cfg_pose *traj = NULL; size_t n_traj = 0;
 *     if (mmd_poses_traj(scene, bvh, &exp.dataset, &traj, &n_traj) != MMD_OK) { ... }
 *     free(traj);
 *
 * NeRF² (docs/evaluation.md, "NeRF² adapter"): a directory in NeRF²'s layout
 * (spectrum/NNNNN.png, tx_pos.csv, gateway_info.yml, train_index.txt, test_index.txt)
 * becomes a measurement set (mmd_train.h) of the gateway's spectra.
 *
 *     mmd_nerf2_set ns;
 *     if (mmd_nerf2_read("../shared/measurements/nerf2_rfid_s23_subset", "test", &ns) == MMD_OK) {
 *         mmd_nerf2_write(&ns, "data/nerf2_test");    // poses.csv + spectra.npy + manifest.yaml
 *         mmd_nerf2_free(&ns);
 *     }
 */
#ifndef MMD_EVAL_H
#define MMD_EVAL_H

#include "mmd_bvh.h"
#include "mmd_config.h"
#include "mmd_core.h"
#include "mmd_io.h"
#include "mmd_scene.h"
#include "mmd_train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------
 * Peak metrics
 */

#define MMD_EVAL_MAX_K 16  /* largest K of a top-K list */
#define MMD_EVAL_MAX_KS 4  /* top-K lists evaluated at once */

typedef struct mmd_eval_options {
    double dynamic_range_db;    /* peaks are local maxima within this of the map's maximum */
    double match_threshold_deg; /* largest angle between a matched pair */
    int n_k;                    /* number of top-K lists */
    int k[MMD_EVAL_MAX_KS];     /* their K, each in [1, MMD_EVAL_MAX_K] */
} mmd_eval_options;

/* 20 dB, 5 deg (the experiment defaults), K = 1 and 5. */
mmd_eval_options mmd_eval_defaults(void);
/* Copy evaluate.dynamic_range_db and evaluate.match_threshold_deg into o. */
void mmd_eval_options_from_cfg(const mmd_cfg_evaluate *c, mmd_eval_options *o);

typedef struct mmd_eval_peak {
    double az_deg, el_deg; /* the bin's grid angles */
    double power_db;       /* 10 log10 of the bin's linear power */
    int i_az, i_el;        /* the bin */
} mmd_eval_peak;

/* Angle between the directions (az1, el1) and (az2, el2) on the unit sphere [deg]
 * (az from +x toward +y, el above the x-y plane; accurate near 0 and 180). */
double mmd_eval_angle_deg(double az1, double el1, double az2, double el2);

/* Peaks of one map spec[el][az] (linear power, finite and >= 0; anything else is
 * MMD_ERR_INVALID naming the bin): local maxima over the 8-neighbourhood, where a set of
 * equal-valued connected bins (a plateau) is one candidate whose neighbours must all be
 * lower, represented by its bin nearest the plateau's mean direction. The azimuth wraps
 * when the bins cover exactly 360 deg (a last column that repeats the first, e.g.
 * [-180, 180, 1], is ignored). Kept: peaks with power >= max - dynamic_range_db; a map
 * without any positive bin has none. Sorted strongest first, ties by bin in scan order
 * (elevation row, then azimuth); the first `max` go to peaks[], *n_found (<= max) says how
 * many, *n_all (may be NULL) how many there were in all. */
mmd_status mmd_eval_find_peaks(const float *spec, int n_az, int n_el, const mmd_cfg_grid *az,
                               const mmd_cfg_grid *el, double dynamic_range_db, mmd_eval_peak *peaks,
                               int max, int *n_found, int *n_all);

/* One top-K comparison of one pose. */
typedef struct mmd_eval_topk {
    int k;
    int n_pred, n_truth;   /* peaks in the two top-K lists (<= k each) */
    int n_matched;
    int match[MMD_EVAL_MAX_K];    /* per predicted peak: the matched ground-truth peak, -1 = none */
    double err_deg[MMD_EVAL_MAX_K], perr_db[MMD_EVAL_MAX_K]; /* of matched predicted peaks */
    double f1;             /* 2 matched / (n_pred + n_truth); 1 when both lists are empty */
    double aae_deg, ape_db; /* means over this pose's matches; NaN without a match */
} mmd_eval_topk;

/* Match two peak lists (at most MMD_EVAL_MAX_K each) one-to-one: among the assignments of
 * pairs closer than threshold_deg (<=), one with the most pairs and, among those, the
 * smallest sum of angles (Hungarian algorithm; deterministic). out->k = max(n_pred, n_truth). */
mmd_status mmd_eval_match(const mmd_eval_peak *pred, int n_pred, const mmd_eval_peak *truth, int n_truth,
                          double threshold_deg, mmd_eval_topk *out);

typedef struct mmd_eval_pose {
    int n_peaks_pred, n_peaks_truth; /* all peaks within the dynamic range */
    int n_listed_pred, n_listed_truth; /* how many of them are in pred[] / truth[] */
    mmd_eval_peak pred[MMD_EVAL_MAX_K], truth[MMD_EVAL_MAX_K]; /* strongest first */
    mmd_eval_topk top[MMD_EVAL_MAX_KS];                       /* one per options.k */
    double power_pred_db, power_truth_db; /* 10 log10 of each spectrum's sum; -inf for 0 */
    double power_err_db;                  /* |difference|; NaN when a sum is 0 */
} mmd_eval_pose;

/* Peaks of both maps, the top-K matches for every K of o, and the received-power error. */
mmd_status mmd_eval_pose_metrics(const float *pred, const float *truth, int n_az, int n_el,
                                 const mmd_cfg_grid *az, const mmd_cfg_grid *el, const mmd_eval_options *o,
                                 mmd_eval_pose *out);

typedef struct mmd_eval_topk_summary {
    int k;
    size_t n_pred, n_truth, n_matched; /* summed over poses */
    double precision;    /* n_matched / n_pred (1 when n_pred = 0) */
    double recall;       /* n_matched / n_truth (1 when n_truth = 0) */
    double f1;           /* 2 n_matched / (n_pred + n_truth), pooled; 1 when both are 0 */
    double f1_pose_mean; /* mean of the per-pose F1 */
    double aae_deg;      /* mean angle over all matched pairs; NaN without a match */
    double ape_db;       /* mean |power difference| over all matched pairs; NaN without one */
} mmd_eval_topk_summary;

typedef struct mmd_eval_summary {
    size_t n_poses;
    mmd_eval_options opt;
    mmd_eval_topk_summary top[MMD_EVAL_MAX_KS];
    double power_error_db; /* mean |power difference| over the poses where both sums are > 0 */
    size_t n_power;        /* poses in that mean */
} mmd_eval_summary;

void mmd_eval_summarize(const mmd_eval_pose *poses, size_t n, const mmd_eval_options *o, mmd_eval_summary *s);

/* Metrics of n poses of stacked spectra [pose][el][az] on one grid. *per_pose (may be
 * NULL: not kept) receives a malloc'ed array of n. A bad bin is MMD_ERR_INVALID naming
 * "predicted"/"ground-truth", the pose and the bin. */
mmd_status mmd_eval_spectra(const float *pred, const float *truth, size_t n, int n_az, int n_el,
                            const mmd_cfg_grid *az, const mmd_cfg_grid *el, const mmd_eval_options *o,
                            mmd_eval_pose **per_pose, mmd_eval_summary *s);

/* The summary as keys of the JSON object being written: "top1": {"f1", "aae_deg",
 * "ape_db", "precision", "recall", "f1_pose_mean", "matched", "pred_peaks",
 * "truth_peaks"}, "top5": {...}, "power_error_db", "power_poses", "n_poses". NaN values
 * are written as null. */
void mmd_eval_json(mmd_json *j, const mmd_eval_summary *s);
/* "thresholds": {"dynamic_range_db", "match_threshold_deg", "k", and one-line texts
 * "peaks", "matching", "f1_pooling", "power" saying what was computed}. */
void mmd_eval_json_thresholds(mmd_json *j, const mmd_eval_options *o);

/* One row per pose (columns in docs/evaluation.md); poses (may be NULL) adds the receiver
 * position and yaw. Atomic. */
mmd_status mmd_eval_write_csv(const char *path, const mmd_eval_pose *p, size_t n, const mmd_cfg_pose *poses,
                              const mmd_eval_options *o);

/* The summary table (one row per K, then the power error and thresholds). */
void mmd_eval_print(FILE *f, const mmd_eval_summary *s, const char *title);

/* ---------------------------------------------------------------------------------------
 * Pose sets
 */

/* Distance from p to the nearest triangle of the tree, searched within `radius`: the
 * exact distance (double precision point-triangle distance) when a triangle is nearer
 * than radius, else radius. */
double mmd_eval_surface_distance(const mmd_bvh *b, const double p[3], double radius);

/* 1 when p is enclosed: rays along the 6 axes and the 8 diagonals all hit a surface
 * within `reach` (use the scene bbox diagonal). A point outside the room, or in a room
 * with an opening in that direction, is not enclosed. */
int mmd_eval_inside(const mmd_bvh *b, const double p[3], double reach);

/* 1 when the straight segment a-b crosses no triangle and every point sampled on it
 * (spacing <= clearance / 4, ends included) is at least `clearance` from every surface. */
int mmd_eval_segment_free(const mmd_bvh *b, const double a[3], const double c[3], double clearance);

/* RAND: d->rand_poses poses uniform in the scene bbox shrunk by clearance_m, z in
 * height_m (also shrunk to the bbox), accepted when inside and >= clearance_m from every
 * surface; yaw uniform in [-180, 180), pitch N(0, pitch_jitter_deg) clipped to +-89, roll
 * 0. Error when the free space is too small to find them. *out is malloc'ed. */
mmd_status mmd_poses_rand(const mmd_scene *s, const mmd_bvh *b, const mmd_cfg_dataset *d, mmd_cfg_pose **out,
                          size_t *n);

/* TRAJ: d->traj_poses poses of a camera-like walk through the free space: consecutive
 * positions exactly traj_step_m apart, every step a collision-free segment with both ends
 * >= clearance_m from every surface, heading turning smoothly (random turn rate, steering
 * away from surfaces ahead), height drifting within height_m, yaw = heading of the step
 * that leaves the pose (the last pose keeps the last step's), pitch a smooth (AR(1))
 * jitter of standard deviation pitch_jitter_deg, roll 0. *out is malloc'ed. */
mmd_status mmd_poses_traj(const mmd_scene *s, const mmd_bvh *b, const mmd_cfg_dataset *d, mmd_cfg_pose **out,
                          size_t *n);

/* In place on n spectra [n][n_el][n_az]: multiply every bin by 10^(N(0, sigma_db) / 10)
 * (log-normal measurement noise; sigma_db = 0: none), then, when has_floor, raise every
 * bin below (max of that spectrum) x 10^(floor_db / 10) to that level. Seeded by (seed,
 * stream). sigma_db < 0 or a NaN is MMD_ERR_INVALID. */
mmd_status mmd_eval_measurement_noise(float *spectra, size_t n, int n_el, int n_az, double sigma_db, int has_floor,
                                      double floor_db, uint64_t seed, uint64_t stream);

/* ---------------------------------------------------------------------------------------
 * NeRF² spatial spectra (docs/evaluation.md)
 */

#define MMD_NERF2_WIDTH 360  /* azimuth 0..359 deg */
#define MMD_NERF2_HEIGHT 90  /* elevation 0..89 deg */
#define MMD_NERF2_FREQUENCY_HZ 920e6

typedef struct mmd_nerf2_set {
    mmd_measurements m; /* gateway pose per sample, spectra (p/255)^2, grids, 920 MHz */
    double *tx_m;       /* [n][3] tag (transmitter) positions from tx_pos.csv */
    int *stems;         /* [n] spectrum number: spectrum/%05d.png */
    double quat_xyzw[4]; /* gateway orientation as given (scalar last) */
} mmd_nerf2_set;

/* Read a NeRF² RFID directory. split: "train" (train_index.txt), "test" (test_index.txt) or
 * "all" / NULL (both lists, ascending; every row of tx_pos.csv when neither exists).
 * Errors name the file and the line, column or pixel size. On failure *out is zeroed. */
mmd_status mmd_nerf2_read(const char *dir, const char *split, mmd_nerf2_set *out);
void mmd_nerf2_free(mmd_nerf2_set *s);

/* One PNG (8-bit greyscale, 360 x 90) as a map [90][360] of (p/255)^2. */
mmd_status mmd_nerf2_read_png(const char *path, float *out);

/* The gateway's pose for mmdiff: yaw/pitch/roll (R = Rz Ry Rx) equal to the rotation of
 * the scalar-last quaternion q, so that world = R (cos el cos az, cos el sin az, sin el)
 * for the NeRF² grid angles. */
void mmd_nerf2_pose_from_quat(const double q[4], const double position[3], mmd_cfg_pose *pose);

/* The set as a measurement set in dir (mmd_measurements_write, with tx_x_m, tx_y_m,
 * tx_z_m and sample columns in poses.csv). */
mmd_status mmd_nerf2_write(const mmd_nerf2_set *s, const char *dir);

#ifdef __cplusplus
}
#endif
#endif
