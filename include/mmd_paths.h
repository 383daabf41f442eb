/*
 * mmd_paths.h - the exact specular path solver (SPEC 4 "Specular baseline", the "Sionna"
 * baseline of the paper; docs/paths.md).
 *
 * Two stages:
 *   1. candidates, once per TX: shoot-and-bounce (SBR) from the TX, solver.rays Fibonacci
 *      directions, specular reflection only, up to solver.max_depth bounces, traced on the
 *      device; every prefix of every ray's triangle sequence is a candidate (sorted,
 *      unique; no hashing).
 *   2. solve, per receiver position: the image method in double precision re-derives each
 *      candidate from the mirrored TX, checks that every reflection point lies inside its
 *      triangle and on the reflecting side, re-checks every segment for occlusion (host
 *      BVH traversal) and computes length, directions and the Jones-correct gain.
 *      Duplicates of one physical path (a point on the shared edge of coplanar triangles)
 *      are merged deterministically.
 *
 * The line-of-sight path is not a path here (the simulator adds it exactly). The solver
 * reads from the simulator: scene, BVH, resolved materials (s->materials, per object),
 * TX antenna, position and orientation, wavelength, and solver.{rays, max_depth, seed,
 * polarization}.
 *
 * Example:
 *     mmd_path_candidates c;
 *     mmd_paths_candidates(sim, &c);                              // once per TX
 *     for (size_t k = 0; k < exp.rx.n_poses; k++) {
 *         mmd_path *p; size_t n;
 *         mmd_paths_solve_pose(sim, &c, &exp.rx.poses[k], &p, &n);   // p[0..n-1]
 *         ... p[i].gain, p[i].arrival_local ...
 *         free(p);
 *     }
 *     mmd_path_candidates_free(&c);
 */
#ifndef MMD_PATHS_H
#define MMD_PATHS_H

#include "mmd_sim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most reflections per path (solver.max_depth above this is an error in specular mode). */
#define MMD_PATH_MAX_DEPTH 8

/* Vertices of two paths of the same depth closer than this (each, metres) are the same
 * physical path. */
#define MMD_PATH_DEDUP_M 1e-6

typedef struct mmd_path {
    int depth;                  /* reflections, 1..max_depth */
    double length_m, delay_s;   /* unfolded length, length / c */
    /* Linear power gain for an isotropic receiver:
     *   (lambda / (4 pi L))^2 G_TX(departure) x
     *   Jones:  |e_RX . J_k ... J_1 e_TX|^2, e = theta-hat of the departure direction in the
     *           TX frame and of the arrival direction in the RX pose frame (the iso element
     *           of the AoA model is vertically polarised);
     *   scalar: prod_i Gamma_i^2, Gamma^2 = (|R_TE|^2 + |R_TM|^2) / 2;
     * and each bounce x (1 - S^2) of its material (the share left to the specular part).
     * R is the slab reflection for materials with a thickness, else the half-space one. */
    double gain;
    double dir_arrival[3];      /* unit, world: from the RX towards the last reflection point */
    double dir_departure[3];    /* unit, world: from the TX towards the first reflection point */
    double arrival_local[3];    /* dir_arrival in the RX pose frame (array frame) */
    double arrival_az_deg, arrival_el_deg;     /* of arrival_local */
    double departure_az_deg, departure_el_deg; /* of dir_departure in the TX frame */
    double vertices[MMD_PATH_MAX_DEPTH][3];    /* reflection points, TX side first */
    uint32_t prims[MMD_PATH_MAX_DEPTH];        /* scene triangle of each reflection */
    uint32_t objects[MMD_PATH_MAX_DEPTH];      /* its scene object (material: s->materials[obj]) */
} mmd_path;

/* Triangle sequences to validate: for each depth d = 1..max_depth, count[d] sequences of
 * d scene triangle ids, seq[d][i * d + j], sorted lexicographically and unique. */
typedef struct mmd_path_candidates {
    int max_depth;
    size_t count[MMD_PATH_MAX_DEPTH + 1];
    uint32_t *seq[MMD_PATH_MAX_DEPTH + 1];
    size_t n_rays;     /* rays shot */
    double tx_pos[3];  /* the TX the candidates were shot from */
    double seconds;    /* wall time of mmd_paths_candidates */
} mmd_path_candidates;

/* Shoot solver.rays rays from the TX (Fibonacci sphere turned by a rotation seeded by
 * solver.seed) and collect the candidate sequences up to solver.max_depth. */
mmd_status mmd_paths_candidates(mmd_sim *s, mmd_path_candidates *out);
void mmd_path_candidates_free(mmd_path_candidates *c);

/* Validate every candidate for a receiver at rx_pos with orientation rx_rot (row-major,
 * mmd_rotation_ypr; NULL = identity). *paths (malloc'ed, NULL when *n_paths = 0) is ordered
 * by depth, then gain descending, then triangle sequence. Multithreaded (MMDIFF_THREADS);
 * the result does not depend on the thread count. */
mmd_status mmd_paths_solve(mmd_sim *s, const mmd_path_candidates *c, const double rx_pos[3],
                           const double rx_rot[9], mmd_path **paths, size_t *n_paths);

/* The same for a configured pose (position, yaw/pitch/roll in degrees). */
mmd_status mmd_paths_solve_pose(mmd_sim *s, const mmd_path_candidates *c, const mmd_cfg_pose *pose,
                                mmd_path **paths, size_t *n_paths);

/* Gain of a solved path (as in mmd_path.gain) with other materials `mats` (one per scene
 * object) but the same geometry: tx is the TX position the candidates were shot from,
 * rx_rot the receiver orientation the path was solved for (NULL = identity). Calibration
 * of the specular baseline re-weights paths with this (src/learn/calib_spec.c). */
double mmd_path_gain(const mmd_sim *s, const mmd_path *p, const double tx[3], const double rx_rot[9],
                     const mmd_material *mats);

/* paths.csv (docs/paths.md): one row per (pose, path), poses in order:
 *   pose,depth,length_m,delay_s,gain_db,arrival_az_deg,arrival_el_deg,departure_az_deg,
 *   departure_el_deg, then for k = 1..max_depth: vK_x_m,vK_y_m,vK_z_m,vK_object,vK_prim
 * (empty past the path's depth). max_depth <= 0: the deepest path written. Round-trip
 * precision; written atomically. */
mmd_status mmd_paths_write_csv(const char *path, const mmd_path *const *paths, const size_t *n_paths,
                               size_t n_poses, int max_depth);

#ifdef __cplusplus
}
#endif
#endif
