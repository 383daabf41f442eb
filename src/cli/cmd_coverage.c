/*
 * `mmdiff coverage EXP.yaml [-o DIR] [--set key=value ...]`: a coverage map of the
 * experiment's TX on the plane z = coverage.z_m (SPEC 4), in the solver's mode. Writes
 * into the run directory (docs/outputs.md):
 *   path_gain_db.npy          float32 [ny, nx] path gain [dB], -inf where no ray arrived
 *   rss_dbm.npy               float32 [ny, nx] tx.power_dbm + path gain
 *   coverage.png (+ .json)    the path-gain heatmap: floor plan, TX, colorbar in dB
 *   rss.png (+ .json)         the same in dBm
 *   result.json               grid, statistics, timings, device, seed, materials
 *   experiment.resolved.yaml, command.txt
 */
#include "mmd_par.h"
#include "outputs.h"
#include "run.h"

int mmd_cmd_coverage(const mmd_cli_opts *o, int argc, char **argv)
{
    mmd_cli_run r;
    int rc = mmd_cli_run_open(&r, o, "coverage", argc, argv, 0);
    if (rc) return rc;
    mmd_cli_coverage c;
    /* across MPI ranks: rays sharded, every rank gets the map, rank 0 alone writes */
    mmd_status st = mmd_cli_coverage_compute(&r, &c);
    int root = mmd_par_rank() == 0;
    if (st == MMD_OK && root) st = mmd_cli_run_write_records(&r);
    if (st == MMD_OK && root) st = mmd_cli_coverage_write(&r, r.dir, "mmdiff coverage", &c);
    st = mmd_par_agree(st);
    if (st != MMD_OK) rc = mmd_cli_fail();
    else if (root) mmd_cli_coverage_print(&r, r.dir, &c);
    mmd_cli_coverage_free(&c);
    mmd_cli_run_close(&r);
    return rc;
}
