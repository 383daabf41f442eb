/*
 * mmd_calib_geom.h - geometry calibration of one named object (paper Supp. E, issue 5):
 * the gradient of the calibration loss with respect to the object's pose, five
 * parameters
 *     p = (t_x, t_y, t_z [m], a_x, a_y [rad]),
 *     x' = R_y(a_y) R_x(a_x) (x0 - c) + c + t        for every vertex x0 of the object,
 * with c the object's area-weighted centroid and x0 its vertices as they were when the
 * geometry calibration was created (p = 0 is the scene as loaded), and Adam on p.
 *
 * How: the calibration engine (mmd_calib.h) calls a hook after each pose's material
 * reverse sweep; the hook runs cl/calib_geom.cl, which differentiates the next-event
 * connection term of every recorded vertex on the object (SPEC 4) with respect to p
 * while the receiver ray is held fixed: the hit point slides along the ray as the plane
 * moves, the normal turns with the object. The gradient is summed deterministically
 * (per-work-group partial sums in a fixed order, final sum in double on the host).
 * First-order model (docs/calibration_geometry.md): later vertices, continuation
 * directions and the throughput of earlier vertices are held fixed, and shadow-ray
 * visibility and the object's edges are not differentiated. So the gradient is exact
 * for solver.max_depth 1 and for the connection terms of every vertex on the object,
 * and misses the (smaller) change of multi-bounce continuations and of edge rays: in
 * particular a flat object's in-plane position is seen only through its edges, so it
 * is not recovered. Scalar and Jones polarisation.
 *
 * Moving the object changes the scene: apply() writes the moved vertices into the
 * simulator's scene, rebuilds the tree, re-uploads it (mmd_sim_update_geometry) and
 * forgets the engine's cached path records. An object that shares vertices with other
 * objects gets its own copies of them at create (so only it moves).
 *
 * Lifetime: after the first apply() the simulator points at a tree owned by `g`, so
 * destroy `g` after the last use of the simulator (and before the engine `c`, whose hook
 * it removes): create sim, c, g; destroy g, c, sim.
 *
 * Example (200 Adam steps on the pose of object "reflector", materials frozen):
 *     mmd_calib_geom *g = NULL;
 *     if (mmd_calib_geom_create(c, scene, "reflector", &g) != MMD_OK) ...mmd_last_error()...
 *     for (int it = 0; it < 200; it++) {
 *         double loss, p[5];
 *         mmd_calib_geom_zero_grad(g);
 *         mmd_calib_loss(c, poses, ids, measured, n, &loss, 1, NULL);  // fills g's gradient
 *         mmd_calib_geom_adam(g, 0.02);                                  // step and apply
 *         mmd_calib_geom_get_params(g, p);
 *     }
 *     mmd_calib_geom_destroy(g);
 */
#ifndef MMD_CALIB_GEOM_H
#define MMD_CALIB_GEOM_H

#include "mmd_calib.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MMD_CALIB_GEOM_NPARAM 5

typedef struct mmd_calib_geom mmd_calib_geom;

/* Geometry calibration of object `object_name` of `scene`, which must be the scene the
 * engine's simulator was created with (it is modified in place by apply). Registers the
 * gradient hook with the engine (mmd_calib_set_hook; one hook per engine). Errors: an
 * unknown name (the message lists the scene's objects), an object without triangles, a
 * different scene, an engine with the neural material model (per-object materials only). */
mmd_status mmd_calib_geom_create(mmd_calib *c, mmd_scene *scene, const char *object_name, mmd_calib_geom **out);
/* Removes the hook from the engine and frees the tree (see "Lifetime" above). NULL ok. */
void mmd_calib_geom_destroy(mmd_calib_geom *g);

/* The parameters p (see the top). set_params only stores them (non-finite values are an
 * error); apply() moves the object. */
void mmd_calib_geom_get_params(const mmd_calib_geom *g, double p[MMD_CALIB_GEOM_NPARAM]);
mmd_status mmd_calib_geom_set_params(mmd_calib_geom *g, const double p[MMD_CALIB_GEOM_NPARAM]);

/* Move the object's vertices from their create-time positions by the current p, rebuild
 * and re-upload the tree, refresh the per-triangle data and clear the path cache. */
mmd_status mmd_calib_geom_apply(mmd_calib_geom *g);

/* dL/dp accumulated by mmd_calib_loss(..., want_grad = 1) since the last zero_grad (the
 * engine averages the loss over the poses, so this is the gradient of that average). */
void mmd_calib_geom_get_grad(const mmd_calib_geom *g, double grad[MMD_CALIB_GEOM_NPARAM]);
void mmd_calib_geom_zero_grad(mmd_calib_geom *g);

/* One Adam step on p with the accumulated gradient, then apply(). Betas and epsilon are
 * the engine's defaults, with bias correction; the second moment is shared by the five
 * parameters (1 m counts as 1 rad), so a step moves the object by about lr along the
 * gradient's momentum (see calib_geom.c for why not per coordinate). */
mmd_status mmd_calib_geom_adam(mmd_calib_geom *g, double lr);
/* Optimiser state for checkpoints: step count, first and second moments (5 each). */
void mmd_calib_geom_get_adam(const mmd_calib_geom *g, int64_t *step, double m[MMD_CALIB_GEOM_NPARAM],
                             double v[MMD_CALIB_GEOM_NPARAM]);
mmd_status mmd_calib_geom_set_adam(mmd_calib_geom *g, int64_t step, const double m[MMD_CALIB_GEOM_NPARAM],
                                   const double v[MMD_CALIB_GEOM_NPARAM]);

/* With `on`, every Adam step rounds p and the moments to float before moving the object,
 * so a state saved as floats (the training loop's checkpoints, mmd_train.h) and set back
 * continues bit for bit like the run that never stopped. Off by default. Under MPI,
 * mmd_calib_geom_adam first sums the ranks' gradients (mmd_par_sum), so every rank takes
 * the same step. */
void mmd_calib_geom_set_float_state(mmd_calib_geom *g, int on);

/* The object's index in the scene and the rotation centre c (create-time centroid). */
uint32_t mmd_calib_geom_object(const mmd_calib_geom *g);
void mmd_calib_geom_centroid(const mmd_calib_geom *g, double c[3]);

/* For tests: sum_i dldc[i] dc_i/dp for one pose (records traced or taken from the
 * engine's cache as mmd_calib_debug_records does, pose_id seeds the rays), with the
 * current materials and geometry. */
mmd_status mmd_calib_geom_debug_grad(mmd_calib_geom *g, const mmd_cfg_pose *pose, size_t pose_id,
                                     const float *dldc, double grad[MMD_CALIB_GEOM_NPARAM]);

/* The rotation R_y(a_y) R_x(a_x) of parameters p (row-major), for tests and tools. */
void mmd_calib_geom_rotation(const double p[MMD_CALIB_GEOM_NPARAM], double R[9]);

#ifdef __cplusplus
}
#endif
#endif
