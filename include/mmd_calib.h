/*
 * mmd_calib.h - the differentiable forward model behind calibration (SPEC 5): AoA
 * spectra of a batch of receiver poses as a function of the radio materials, the
 * log-MAE loss against measured spectra, and its gradient with respect to the material
 * parameters, from hand-derived adjoint kernels (cl/calib.cl, docs/calibration.md).
 *
 * How: the geometric part of each pose's trace (hit points, normals, directions, the
 * shadow-ray visibility of every next-event connection, the sampled events, object and
 * triangle ids) is recorded once per pose and kept in a path cache (solver.cache_mb;
 * poses beyond the budget are re-traced when needed). Because sampling depends only on
 * geometry and fixed parameters (SPEC 4 key rule), replaying a record with new materials
 * gives exactly the estimate a fresh trace would give, and its derivative.
 *
 * solver.mode specular (the baseline) is calibrated by a host backend instead: the exact
 * specular paths re-weighted with new materials (src/learn/calib_spec.c; per-object model,
 * eps_r and sigma trained; docs/calibration.md "The specular baseline"). The API is the same.
 *
 * Parameters. Every model is a vector of "raw" (unconstrained) floats that Adam updates;
 * the physical material follows SPEC 5's mapping:
 *     eps_r = 1 + exp(clip(o0, ln 1e-3, ln 199)),  sigma = exp(clip(o1, ln 1e-3, ln 1e6)),
 *     S = clip(sigmoid(o2), 1e-3, 1 - 1e-3),        K_x = clip(sigmoid(o3), 1e-3, 1 - 1e-3).
 * Per-object model: 4 raw floats per parameter group (raw[4 * group + k]); a group is a
 * scene material (objects made of the same material share parameters, which keeps rarely
 * seen objects identifiable) or, with group_by_material = 0, one object. Neural model:
 * the MLP's weights (mmd_mlp.h).
 *
 * Example (per-object model, one Adam step on a batch of poses):
 *     mmd_calib *c = NULL;
 *     mmd_calib_options o = mmd_calib_defaults();
 *     mmd_calib_create(sim, &o, &c);                 // starts from the sim's materials
 *     double loss;
 *     mmd_calib_zero_grad(c);
 *     mmd_calib_loss(c, batch_poses, batch_index, batch_measured, n, &loss, 1);
 *     mmd_calib_adam(c, 5e-4);
 *     mmd_calib_materials(c, mats);                  // physical parameters per object
 *     mmd_calib_destroy(c);
 */
#ifndef MMD_CALIB_H
#define MMD_CALIB_H

#include "mmd_mlp.h"
#include "mmd_sim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Deepest path a calibration record holds (solver.max_depth above is an error). */
#define MMD_CALIB_MAX_DEPTH 8

typedef enum mmd_calib_model_kind { MMD_CALIB_PER_OBJECT = 0, MMD_CALIB_NEURAL = 1 } mmd_calib_model_kind;

typedef enum mmd_calib_loss_kind {
    MMD_CALIB_LOG_MAE = 0, /* SPEC 5: mean |log10(P + floor) - log10(M + floor)| */
    MMD_CALIB_LOG_MSE = 1  /* mean squared log difference: smooth (finite-difference checks) */
} mmd_calib_loss_kind;

typedef struct mmd_calib_options {
    mmd_calib_model_kind model;
    mmd_calib_loss_kind loss;
    double loss_floor_db;   /* floor = each pose's measured maximum x 10^(floor_db / 10) */
    int fit_scale;          /* fit a global power scale in closed form each evaluation */
    int group_by_material;  /* per-object model: objects sharing a scene material (same
                               thickness, alpha_r) share one parameter set (default 1) */
    size_t cache_bytes;     /* path-cache budget; 0 = no cache (re-trace every evaluation) */
    double beta1, beta2, adam_eps;
    /* which of (eps_r, sigma, S, K_x) are trained (per-object model); default all four;
     * K_x has no effect in scalar polarisation mode */
    int train_mask[4];
    mmd_mlp_config mlp;     /* neural model: the network (mmd_mlp_defaults()) */
    const char *model_dir;  /* neural model: start from this saved network (NULL = init) */
    int field_at_triangle;  /* neural model: evaluate the field once per triangle a pose's
                               paths touch, at its centroid, instead of at every hit point
                               (train.field_at: triangle; docs/calibration.md) */
} mmd_calib_options;

mmd_calib_options mmd_calib_defaults(void);

typedef struct mmd_calib mmd_calib;

/* The simulator gives the scene, tree, experiment (solver, rx array, aoa grid) and the
 * starting materials. URA receivers only (not the mechanical horn scan). */
mmd_status mmd_calib_create(mmd_sim *sim, const mmd_calib_options *o, mmd_calib **out);
void mmd_calib_destroy(mmd_calib *c);

/* Loss of n poses against measured spectra (measured[k] points at n_el * n_az linear
 * powers, [el][az] as written by `simulate`), averaged over the poses. pose_ids[k] is the
 * pose's index in the measurement set: it keys the cache and seeds the pose's rays, so a
 * pose always gets the same sample directions. With want_grad the gradient of the
 * averaged loss is ADDED to the model's gradient (call mmd_calib_zero_grad first).
 * pred (may be NULL) receives the predicted spectra (scale applied), n * n_el * n_az. */
mmd_status mmd_calib_loss(mmd_calib *c, const mmd_cfg_pose *poses, const size_t *pose_ids,
                          const float *const *measured, size_t n, double *loss, int want_grad,
                          float *pred);

/* Raw parameter vector (see the top of this file) and its gradient. */
size_t mmd_calib_n_params(const mmd_calib *c);
void mmd_calib_get_params(const mmd_calib *c, float *raw);
mmd_status mmd_calib_set_params(mmd_calib *c, const float *raw);
void mmd_calib_get_grad(const mmd_calib *c, float *grad);
void mmd_calib_zero_grad(mmd_calib *c);

/* One Adam step with the accumulated gradient (bias-corrected; the step count and moment
 * vectors are part of the state). */
mmd_status mmd_calib_adam(mmd_calib *c, double lr);
/* Optimiser state for checkpoints: step count, first and second moments (n_params each). */
void mmd_calib_get_adam(const mmd_calib *c, int64_t *step, float *m, float *v);
mmd_status mmd_calib_set_adam(mmd_calib *c, int64_t step, const float *m, const float *v);

/* Per-object model: the physical materials now (one per scene object; thickness and
 * alpha_r as in the simulator). Also pushes them into the simulator, so a later
 * mmd_sim_aoa / mmd_sim_coverage predicts with the learned materials. Neural model: the
 * field's mean over each object's recorded hit points is not defined here; returns
 * MMD_ERR_INVALID. */
mmd_status mmd_calib_materials(mmd_calib *c, mmd_material *out);

/* One material per scene triangle (out[n_triangles]): the neural field at each
 * triangle's centroid (train.field_at: triangle semantics), thickness and alpha_r from the
 * triangle's object; the per-object model gives each triangle its object's material.
 * With mmd_sim_set_triangle_materials this lets the coverage estimator use the field. */
mmd_status mmd_calib_triangle_materials(mmd_calib *c, mmd_material *out);

/* Neural model: the network (NULL for the per-object model). Save with mmd_mlp_save. */
mmd_mlp *mmd_calib_mlp(const mmd_calib *c);

/* Spectra (and everything else mmd_sim_aoa reports) of n poses with the current model
 * (scale 1), through the same replay as the loss; pose_ids may be NULL (0..n-1). The
 * neural model predicts this way. */
mmd_status mmd_calib_predict(mmd_calib *c, const mmd_cfg_pose *poses, const size_t *pose_ids, size_t n,
                             mmd_aoa_result *out);

/* Parameter groups of the per-object model: count, group of an object, and the group's
 * name (its scene material's name, or the object's name without grouping). */
uint32_t mmd_calib_n_groups(const mmd_calib *c);
uint32_t mmd_calib_group_of(const mmd_calib *c, uint32_t object);
const char *mmd_calib_group_name(const mmd_calib *c, uint32_t group);

/* Last evaluation's global power scale (1 when fit_scale is off), and timing. */
double mmd_calib_scale(const mmd_calib *c);
typedef struct mmd_calib_timing {
    double trace, replay, beam, backward, host; /* seconds, accumulated */
    size_t cache_hits, cache_misses;
    size_t cache_bytes_used;
} mmd_calib_timing;
mmd_calib_timing mmd_calib_get_timing(const mmd_calib *c);

/* Raw <-> physical mapping of one material (SPEC 5), exported for tests and tools. */
void mmd_calib_raw_to_material(const float raw[4], mmd_material *m);
void mmd_calib_material_to_raw(const mmd_material *m, float raw[4]);

/* ---- extension hooks (geometry calibration, src/learn/calib_geom.c) -------------------
 * After the materials' reverse sweep of each pose, hook(ctx, c, rec, b, pose_id) runs
 * with the pose's records `rec` (n_rays * max_depth mmd_cal_vertex) and the batch's
 * dL/dc_i in mmd_calib_dldc_buffer(c) (pose slot b: rays [b n_rays, (b+1) n_rays)), the
 * pose in slot b of s->d_poses and the current materials in mmd_calib_theta_buffer(c)
 * (float4 per object: eps_r, sigma, S, K_x). */
typedef mmd_status (*mmd_calib_hook)(void *ctx, mmd_calib *c, cl_mem rec, cl_uint b, size_t pose_id);
void mmd_calib_set_hook(mmd_calib *c, mmd_calib_hook hook, void *ctx);
mmd_sim *mmd_calib_sim(const mmd_calib *c);
cl_mem mmd_calib_dldc_buffer(const mmd_calib *c);
cl_mem mmd_calib_theta_buffer(const mmd_calib *c);
float mmd_calib_sig2im(const mmd_calib *c);
/* Forget every cached record (the geometry changed). */
void mmd_calib_clear_cache(mmd_calib *c);

/* ---- for tests: one pose at a time --------------------------------------------------
 * pose_id seeds the rays as in mmd_calib_loss. */

/* The pose's records (n_rays * max_depth, malloc'ed) and the pose rotation. */
mmd_status mmd_calib_debug_records(mmd_calib *c, const mmd_cfg_pose *pose, size_t pose_id, mmd_cal_vertex **rec,
                                   size_t *n_rays);
/* Per-ray powers c_i of mmd_calib_forward with the current parameters. */
mmd_status mmd_calib_debug_forward(mmd_calib *c, const mmd_cfg_pose *pose, size_t pose_id, float *c_out);
/* sum_i dldc[i] dc_i/d(physical theta) per object, from mmd_calib_backward: grad[4 o + k]
 * for (eps_r, sigma, S, K_x). */
mmd_status mmd_calib_debug_backward(mmd_calib *c, const mmd_cfg_pose *pose, size_t pose_id, const float *dldc,
                                    double *grad);
/* Neural model: the network's gradient (flat order, mmd_mlp.h) of sum_i dldc[i] c_i. */
mmd_status mmd_calib_debug_backward_mlp(mmd_calib *c, const mmd_cfg_pose *pose, size_t pose_id, const float *dldc,
                                        float *grads);
/* dL/dc_i of mmd_calib_dldc for bin weights g (n_el * n_az, [el][az]). */
mmd_status mmd_calib_debug_dldc(mmd_calib *c, const mmd_cfg_pose *pose, size_t pose_id, const double *g,
                                float *dldc);

/* The plain-C double reference of mmd_calib_forward (src/learn/calib_ref.c). */
typedef struct mmd_calib_ref {
    int jones;
    double wavelength, sig2im; /* eta = eps_r - j sigma sig2im */
    double tx_rot[9];
    const double *thickness;   /* per object */
} mmd_calib_ref;
double mmd_calib_ref_ray_power(const mmd_calib_ref *x, const mmd_cal_vertex *rv, int K, const double *theta,
                               const double pose_rot[9]);
/* The same with per-vertex parameters: theta[4 k + q] for the ray's vertex k (neural field). */
double mmd_calib_ref_ray_power_v(const mmd_calib_ref *x, const mmd_cal_vertex *rv, int K, const double *theta,
                                 int per_vertex, const double pose_rot[9]);

#ifdef __cplusplus
}
#endif
#endif
