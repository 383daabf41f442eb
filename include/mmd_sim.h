/*
 * mmd_sim.h - the forward model on the device (SPEC 3-4): a scene uploaded once with
 * its resolved radio materials, and the AoA spectrum estimator run over batches of
 * receiver poses.
 *
 * Materials are resolved per scene object: an experiment entry named after the object
 * wins, then one named after its scene material, then the scene's own material (ITU name
 * or explicit radio-material); an object with none of these is an error naming it.
 *
 * Example:
 *     mmd_sim *sim = NULL;
 *     mmd_sim_create(cl, scene, bvh, &exp, &sim);
 *     mmd_aoa_result res;
 *     mmd_sim_aoa(sim, exp.rx.poses, exp.rx.n_poses, &res);   // spectra[pose][el][az]
 *     ... res.spectra, res.total_power_w ...
 *     mmd_aoa_result_free(&res);
 *     mmd_sim_destroy(sim);
 */
#ifndef MMD_SIM_H
#define MMD_SIM_H

#include "mmd_bvh.h"
#include "mmd_cl.h"
#include "mmd_config.h"
#include "mmd_physics.h"
#include "mmd_scene.h"
#include "mmd_shared.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fixed sampling probabilities (SPEC 4 key rule: they must not depend on trainable
 * parameters). */
#define MMD_SIM_P_DIFFUSE 0.3f
#define MMD_SIM_P_TRANSMIT 0.25f
/* Origin offset for secondary rays: eps = scale * (1 + max |coordinate|) metres. */
#define MMD_SIM_EPS_SCALE 1e-5f

typedef struct mmd_sim {
    mmd_cl *cl;
    const mmd_scene *scene;
    const mmd_bvh *bvh;
    const mmd_experiment *exp;
    double freq_hz, wavelength;
    uint32_t n_mat;
    mmd_material *materials;     /* host copy, one per scene object */
    mmd_gpu_material *gpu_mats;
    float *lobe_coef;
    uint32_t n_coef;
    mmd_antenna tx_ant, rx_ant;
    mmd_ura ura;
    double tx_rot[9];
    mmd_sim_params params;
    cl_mem d_nodes, d_tris, d_prims, d_mats, d_coef, d_params;
    cl_mem d_poses, d_out, d_partial;
    size_t cap_poses, cap_partial;
    cl_kernel k_trace, k_lags, k_dirs;
    int rays_per_item; /* (pose, ray) pairs per work-item of mmd_aoa_trace */
    cl_kernel k_cov;             /* coverage.cl, built on first use */
    struct mmd_path_candidates *cand; /* specular mode: SBR candidates, shot on first use */
    cl_mem d_cov_cell, d_cov_val;
    size_t cap_cov;
    double t_trace, t_reduce, t_paths; /* accumulated seconds */
} mmd_sim;

mmd_status mmd_sim_create(mmd_cl *cl, const mmd_scene *scene, const mmd_bvh *bvh,
                          const mmd_experiment *exp, mmd_sim **out);
void mmd_sim_destroy(mmd_sim *s);

/* Per-triangle normals averaged over `radius` (docs/physics.md, "Normals of scanned
 * meshes"): out[3 t + k], unit length. lift (may be NULL): per triangle, 3 sqrt(3) times
 * the rms distance of the neighbours' centroids from t's smoothed plane (the vertex
 * noise a centroid average hides), capped at radius / 2; 0 on flat clean surfaces.
 * Used by the directional mode when solver.normal_radius_m > 0. */
mmd_status mmd_smooth_normals(const mmd_scene *scene, double radius, float *out, float *lift);

/* After the caller changed s->scene's vertices (geometry calibration) and rebuilt the
 * tree: recompute the per-triangle data and upload tree and triangles again. The tree
 * must outlive the simulator (s->bvh points at it). */
mmd_status mmd_sim_update_geometry(mmd_sim *s, const mmd_bvh *bvh);

/* Set every object's material (host and device copy). */
mmd_status mmd_sim_set_material(mmd_sim *s, uint32_t object, const mmd_material *m);

/* One material per scene triangle instead of per object (per_tri[n_triangles]): for
 * coverage maps with the neural material field, evaluated once per triangle (predict,
 * train.field_at: triangle semantics). Afterwards s->materials has n_triangles entries,
 * so use such a simulator for directional-mode spectra and coverage only (the specular
 * path solver and the calibration engine index materials by object). */
mmd_status mmd_sim_set_triangle_materials(mmd_sim *s, const mmd_material *per_tri);

#define MMD_AOA_PEAKS 5
typedef struct mmd_aoa_peak { double az_deg, el_deg, power_db; } mmd_aoa_peak;

typedef struct mmd_aoa_result {
    size_t n_poses;
    int n_az, n_el;
    float *spectra;          /* [pose][el][az], linear power (W per W transmitted) */
    double *total_power;     /* iso-receiver power over all paths incl. LoS (linear) */
    double *los_power;       /* LoS power with the array element gain, 0 if blocked */
    double *los_az_deg, *los_el_deg; /* LoS direction in the array frame */
    int *los_visible;
    mmd_aoa_peak *peaks;     /* [pose][MMD_AOA_PEAKS]; power_db = -inf where fewer */
    int *n_peaks;
    /* specular mode: the exact specular paths of each pose (mmd_paths.h), NULL otherwise */
    struct mmd_path **paths;
    size_t *n_paths;
} mmd_aoa_result;

/* AoA spectra of `n` poses (batched on the device; the scene is uploaded once).
 * Directional mode: Monte Carlo (lobe, diffuse, transmission) + the exact LoS.
 * Specular mode (the baseline): the exact LoS + the exact specular paths of the path
 * solver (mmd_paths.h, each arriving from its own direction) + Monte Carlo only for
 * chains that end in a diffuse connection (skipped when no material scatters or
 * solver.diffuse is off), so no power is counted twice.
 * progress(done, total, user) is called after each batch when not NULL. */
mmd_status mmd_sim_aoa(mmd_sim *s, const mmd_cfg_pose *poses, size_t n, mmd_aoa_result *out,
                       void (*progress)(size_t, size_t, void *), void *user);
void mmd_aoa_result_free(mmd_aoa_result *r);

/* mmd_sim_aoa across MPI ranks (mmd_par.h; collective): each rank simulates its share of
 * the poses, seeded by their global indices; rank 0 receives the whole result in pose
 * order, the one a single process computes, and the other ranks an empty one. One rank:
 * mmd_sim_aoa. A failure on any rank fails every rank with that rank's message. */
mmd_status mmd_sim_aoa_par(mmd_sim *s, const mmd_cfg_pose *poses, size_t n, mmd_aoa_result *out,
                           void (*progress)(size_t, size_t, void *), void *user);

/* mmd_sim_aoa with two hooks for the calibration engine: ids[k] (NULL = k) is pose k's
 * index, which seeds its rays; fill (NULL = trace) must leave the per-ray powers of the
 * nb poses [first, first + nb) in s->d_out (the poses are already in s->d_poses) -- e.g.
 * by replaying recorded paths with new materials. Poses go in batches of at most
 * mmd_sim_batch_poses(s); after the call s->d_out and s->d_poses hold the last batch. */
typedef mmd_status (*mmd_sim_fill_fn)(void *ctx, mmd_sim *s, const mmd_cfg_pose *poses, const size_t *ids,
                                      size_t first, size_t nb);
mmd_status mmd_sim_aoa_ex(mmd_sim *s, const mmd_cfg_pose *poses, const size_t *ids, size_t n, mmd_sim_fill_fn fill,
                          void *fill_ctx, mmd_aoa_result *r, void (*progress)(size_t, size_t, void *), void *user);
size_t mmd_sim_batch_poses(const mmd_sim *s);

/* Upload n poses to s->d_poses (ids[i] seeds pose i's rays; NULL = first + i) and size
 * s->d_out for n * n_rays per-ray powers. */
mmd_status mmd_sim_upload_poses(mmd_sim *s, const mmd_cfg_pose *poses, const size_t *ids, size_t first, size_t n);

/* Local maxima (8-neighbourhood; azimuth wraps when the grid spans 360 deg) of one
 * spectrum in dB, strongest first, at most `max` of them. */
int mmd_aoa_find_peaks(const float *spec, int n_az, int n_el, const mmd_cfg_grid *az,
                       const mmd_cfg_grid *el, mmd_aoa_peak *peaks, int max);

/* Per-ray receiver-side powers (before the beam sum) of one batch; exposed for tests. */
mmd_status mmd_sim_trace_rays(mmd_sim *s, const mmd_cfg_pose *poses, size_t n, float *c_out);

/* The array-frame direction of every ray of those poses, dirs[3 (pose n_rays + ray) + k]. */
mmd_status mmd_sim_ray_dirs(mmd_sim *s, const mmd_cfg_pose *poses, size_t n, float *dirs);

#ifdef __cplusplus
}
#endif
#endif
