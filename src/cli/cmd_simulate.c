/*
 * `mmdiff simulate EXP.yaml [-o DIR] [--set key=value ...]`: AoA spectra for every
 * receiver pose of an experiment (SPEC 4). Writes into the run directory:
 *   spectra.npy                float32 [n_poses, n_elevation, n_azimuth], linear power
 *   result.json                per-pose total/LoS power, top peaks, timings, device, seed,
 *                              resolved parameters and materials
 *   png/pose_NNNN.png (+.json) one heatmap per pose (output.png)
 *   measurements/              poses.csv + spectra.npy + manifest.yaml (output.measurements)
 *   paths.csv                  the exact specular paths of every pose (output.paths,
 *                              specular mode; docs/paths.md)
 *   experiment.resolved.yaml   the configuration with every default filled in
 *   command.txt                the command line
 */
#include <stdio.h>

#include "mmd_io.h"
#include "mmd_par.h"
#include "mmd_sim.h"
#include "outputs.h"
#include "run.h"

static void progress(size_t done, size_t total, void *user)
{
    (void)user;
    mmd_cli_progress("simulate", "poses", done, total);
}

int mmd_cmd_simulate(const mmd_cli_opts *o, int argc, char **argv)
{
    mmd_cli_run r;
    int rc = mmd_cli_run_open(&r, o, "simulate", argc, argv, 1);
    if (rc) return rc;
    const mmd_experiment *e = &r.e;
    mmd_aoa_result res = {0};
    mmd_info("simulate: %zu poses x %d rays, depth %d, %s mode", r.n_poses, e->solver.rays, e->solver.max_depth,
             mmd_cfg_enum_name("solver.mode", e->solver.mode));
    /* across MPI ranks: poses sharded, rank 0 holds the whole result and alone writes */
    mmd_status st = mmd_sim_aoa_par(r.sim, r.poses, r.n_poses, &res, progress, NULL);
    int root = mmd_par_rank() == 0;
    char path[4200];
    if (st == MMD_OK && root) st = mmd_cli_run_write_records(&r);
    if (st == MMD_OK && root) st = mmd_cli_aoa_write(&r, r.dir, &res);
    if (st == MMD_OK && root) {
        snprintf(path, sizeof path, "%s/result.json", r.dir);
        st = mmd_cli_aoa_write_result(&r, path, &res, "mmdiff simulate", NULL, NULL);
    }
    st = mmd_par_agree(st);
    if (st != MMD_OK) {
        rc = mmd_cli_fail();
    } else if (root) {
        mmd_cli_aoa_print(&res);
        printf("outputs: %s/ (spectra.npy, result.json%s%s%s)\n", r.dir, e->output.png ? ", png/" : "",
               e->output.measurements ? ", measurements/" : "", e->output.paths && res.paths ? ", paths.csv" : "");
        const mmd_sim *sim = r.sim;
        printf("time: %.2f s total, %.3f s per pose\n", mmd_now() - r.t0,
               res.n_poses ? (sim->t_trace + sim->t_reduce + sim->t_paths) / res.n_poses : 0.0);
    }
    mmd_aoa_result_free(&res);
    mmd_cli_run_close(&r);
    return rc;
}
