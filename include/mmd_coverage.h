/*
 * mmd_coverage.h - coverage maps (SPEC 4 "Coverage map"): path gain per cell of a
 * horizontal plane, estimated by rays launched from the TX (cl/coverage.cl) in the
 * simulator's solver mode (directional lobe or exact specular reflection, plus diffuse
 * and transmission as configured). The value of a cell is the cell average of the power
 * an upright isotropic, vertically polarised receiver picks up (scalar mode: the
 * unpolarised power), per watt transmitted, including the TX antenna gain.
 *
 * Example:
 *     mmd_coverage_map map = {0};
 *     mmd_sim_coverage(sim, &exp.coverage, &map, NULL, NULL);
 *     // map.gain[iy * map.nx + ix], cell (ix, iy) covers
 *     //   x in [map.x0 + ix cell_m, map.x0 + (ix + 1) cell_m), y likewise
 *     mmd_coverage_map_free(&map);
 */
#ifndef MMD_COVERAGE_H
#define MMD_COVERAGE_H

#include "mmd_sim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The largest map accepted (cells), so a typo in cell_m is an error, not 100 GB. */
#define MMD_COVERAGE_MAX_CELLS (64u << 20)

typedef struct mmd_coverage_map {
    int nx, ny;
    double x0, y0, x1, y1;  /* outer cell edges [m] */
    double cell_m, z_m;
    double *gain;           /* nx * ny linear path gain; 0 where no ray deposited */
    uint32_t *count;        /* deposits per cell (0 = no power reached it) */
    size_t n_rays;
    double t_trace, t_accumulate; /* seconds */
} mmd_coverage_map;

/* The map's grid from the `coverage` block: extent_m, or the scene's footprint when it
 * is absent; cells of cell_m (the last row/column may reach past the extent). */
mmd_status mmd_coverage_grid(const mmd_scene *scene, const mmd_cfg_coverage *c, mmd_coverage_map *grid);

/* Trace c->rays rays from the TX (solver.max_depth interactions) and fill the map.
 * progress(done_rays, total_rays, user) after each batch when not NULL. */
mmd_status mmd_sim_coverage(mmd_sim *s, const mmd_cfg_coverage *c, mmd_coverage_map *out,
                            void (*progress)(size_t, size_t, void *), void *user);
/* The same across MPI ranks (mmd_par.h; collective): each rank traces a contiguous range
 * of the same ray sequence and every rank ends with the whole map, the ranks' maps added
 * in rank order (equal to one process's within float-sum rounding). One rank:
 * mmd_sim_coverage. */
mmd_status mmd_sim_coverage_par(mmd_sim *s, const mmd_cfg_coverage *c, mmd_coverage_map *out,
                                void (*progress)(size_t, size_t, void *), void *user);
void mmd_coverage_map_free(mmd_coverage_map *m);

/* Where the scene's triangles cut the plane z = z_m, as 2-point segments flattened into
 * one polyline with NaN breaks (mmd_plot_polyline convention): xy[4k..4k+3] = x0 y0 x1 y1
 * followed by a NaN pair. Clipped to the map's extent. *n_points counts the pairs. */
mmd_status mmd_scene_slice_z(const mmd_scene *scene, double z_m, const double extent[4], double **xy,
                             size_t *n_points);

#ifdef __cplusplus
}
#endif
#endif
