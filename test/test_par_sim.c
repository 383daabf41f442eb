/* Simulation across MPI ranks (mmd_sim_aoa_par, issue 7): rank 0's result equals, byte
 * for byte, the result of one process simulating every pose (spectra, powers, peaks and,
 * in specular mode, the paths). As one process the two calls are the same call; under
 * `make test-mpi` (mpirun -np 2) the poses are split across the ranks. Coverage: the
 * rays are split, and the map equals one process's within 1e-6 relative. */
#include "mmd_bvh.h"
#include "mmd_config.h"
#include "mmd_coverage.h"
#include "mmd_par.h"
#include "mmd_paths.h"
#include "mmd_scene.h"
#include "mmd_sim.h"
#include "mmd_test.h"

static const char *k_yaml =
    "scene: {file: %s/scenes/indoor/nist_conference_room/scene.yaml, frequency_hz: 60.0e9,\n"
    "        materials: {concrete: {itu: concrete, scattering: 0.2}}}\n"
    "tx: {position_m: [1.5, 4.2, 2.2]}\n"
    "rx:\n  array: {rows: 4, cols: 4}\n  poses:\n"
    "    - {position_m: [1.5, 0.6, 1.2], yaw_deg: 90}\n"
    "    - {position_m: [0.5, 1.5, 1.2], yaw_deg: 60}\n"
    "    - {position_m: [2.5, 2.0, 1.4], yaw_deg: 120, pitch_deg: 10}\n"
    "    - {position_m: [1.0, 3.0, 1.0], yaw_deg: 0}\n"
    "    - {position_m: [2.0, 1.2, 1.8], yaw_deg: 150}\n"
    "aoa: {azimuth_deg: [-90, 90, 3], elevation_deg: [-45, 45, 3]}\n"
    "solver: {rays: 4000, max_depth: 3, seed: 7, mode: %s}\n"
    "coverage: {rays: 100001, cell_m: 0.25, z_m: 1.2}\n";

static void check_mode(mmd_cl *cl, const char *mode)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml, k_yaml, mmd_test_shared(), mode);
    mmd_experiment e;
    mmd_scene *sc = NULL;
    mmd_bvh *bvh = NULL;
    mmd_sim *sim = NULL;
    mmd_status st = mmd_experiment_load_string(yaml, "par.yaml", NULL, 0, &e);
    if (st == MMD_OK) st = mmd_scene_load(e.scene.file.path, &sc);
    if (st == MMD_OK) st = mmd_bvh_build(sc->vertices, sc->indices, sc->n_triangles, NULL, &bvh);
    if (st == MMD_OK) st = mmd_sim_create(cl, sc, bvh, &e, &sim);
    CHECK(st == MMD_OK, "%s: set-up: %s", mode, mmd_last_error());
    mmd_aoa_result a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    if (st == MMD_OK) st = mmd_sim_aoa_par(sim, e.rx.poses, e.rx.n_poses, &a, NULL, NULL);
    CHECK(st == MMD_OK, "%s: sharded simulation: %s", mode, mmd_last_error());
    if (st == MMD_OK && mmd_par_rank() == 0) {
        /* the reference: this rank alone, every pose */
        CHECK(mmd_sim_aoa(sim, e.rx.poses, e.rx.n_poses, &b, NULL, NULL) == MMD_OK, "%s: reference", mode);
        size_t n = b.n_poses, nb = (size_t)b.n_az * b.n_el;
        int same = a.n_poses == n && !memcmp(a.spectra, b.spectra, n * nb * sizeof(float)) &&
                   !memcmp(a.total_power, b.total_power, n * sizeof(double)) &&
                   !memcmp(a.los_power, b.los_power, n * sizeof(double)) &&
                   !memcmp(a.peaks, b.peaks, n * MMD_AOA_PEAKS * sizeof(mmd_aoa_peak)) &&
                   !memcmp(a.n_peaks, b.n_peaks, n * sizeof(int));
        CHECK(same, "%s: %d ranks give one process's spectra, powers and peaks, byte for byte", mode, mmd_par_size());
        if (b.paths) {
            int paths_same = a.paths != NULL;
            for (size_t k = 0; paths_same && k < n; k++)
                paths_same = a.n_paths[k] == b.n_paths[k] &&
                             (!b.n_paths[k] || !memcmp(a.paths[k], b.paths[k], b.n_paths[k] * sizeof(mmd_path)));
            CHECK(paths_same, "%s: the same specular paths", mode);
        }
    }
    /* coverage: rays split across the ranks, maps added in rank order */
    mmd_coverage_map ca, cb;
    memset(&ca, 0, sizeof ca);
    memset(&cb, 0, sizeof cb);
    if (st == MMD_OK) st = mmd_sim_coverage_par(sim, &e.coverage, &ca, NULL, NULL);
    CHECK(st == MMD_OK, "%s: sharded coverage: %s", mode, mmd_last_error());
    if (st == MMD_OK && mmd_par_rank() == 0 && mmd_sim_coverage(sim, &e.coverage, &cb, NULL, NULL) == MMD_OK) {
        size_t nc = (size_t)cb.nx * cb.ny, lit = 0;
        double worst = 0;
        int counts = ca.nx == cb.nx && ca.ny == cb.ny && !memcmp(ca.count, cb.count, nc * sizeof *cb.count);
        for (size_t i = 0; counts && i < nc; i++)
            if (cb.gain[i] > 0) worst = fmax(worst, fabs(ca.gain[i] / cb.gain[i] - 1)), lit++;
        CHECK(counts && lit > 10 && worst < 1e-6,
              "%s: coverage over %d ranks = one process's (same counts, gain within %.1e relative over %zu cells)",
              mode, mmd_par_size(), worst, lit);
    }
    mmd_coverage_map_free(&ca);
    mmd_coverage_map_free(&cb);
    mmd_aoa_result_free(&a);
    mmd_aoa_result_free(&b);
    mmd_sim_destroy(sim);
    mmd_bvh_destroy(bvh);
    mmd_scene_destroy(sc);
    mmd_experiment_free(&e);
}

int main(int argc, char **argv)
{
    mmd_log_set_level(0);
    CHECK(mmd_par_init(&argc, &argv) == MMD_OK, "init");
    mmd_cl *cl = NULL;
    if (mmd_cl_create(NULL, &cl) != MMD_OK) {
        CHECK(0, "OpenCL: %s", mmd_last_error());
    } else {
        check_mode(cl, "directional");
        check_mode(cl, "specular");
        mmd_cl_destroy(cl);
    }
    int rc = TEST_DONE();
    mmd_par_finalize();
    return rc;
}
