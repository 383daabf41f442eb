/*
 * outputs.h - the result files of the forward-model commands, shared so that every
 * command that predicts spectra or coverage (simulate, coverage, predict) writes them the
 * same way (formats in docs/outputs.md).
 *
 * AoA spectra (simulate, predict):
 *     mmd_aoa_result res;
 *     mmd_sim_aoa(r.sim, r.poses, r.n_poses, &res, NULL, NULL);
 *     mmd_cli_run_write_records(&r);
 *     st = mmd_cli_aoa_write(&r, r.dir, &res);            // spectra.npy, png/, measurements/, paths.csv
 *     st = mmd_cli_aoa_write_result(&r, path, &res, "mmdiff simulate", NULL, NULL);
 *     mmd_cli_aoa_print(&r, &res);                         // the per-pose table on stdout
 *
 * Coverage maps (coverage, predict):
 *     mmd_cli_coverage cov;
 *     st = mmd_cli_coverage_compute(&r, &cov);             // nothing written yet
 *     st = mmd_cli_coverage_write(&r, dir, "mmdiff coverage", &cov);
 *     mmd_cli_coverage_free(&cov);
 */
#ifndef MMD_CLI_OUTPUTS_H
#define MMD_CLI_OUTPUTS_H

#include "mmd_coverage.h"
#include "run.h"

/* spectra.npy, then (per output.*) png/pose_NNNN.png, measurements/ and paths.csv, in
 * `dir` (created). */
mmd_status mmd_cli_aoa_write(const mmd_cli_run *r, const char *dir, const mmd_aoa_result *res);

/* result.json of an AoA run: "tool", "poses", "timings_s", the common keys, "parameters";
 * extra (may be NULL) adds keys to the top-level object before it is closed. */
mmd_status mmd_cli_aoa_write_result(const mmd_cli_run *r, const char *path, const mmd_aoa_result *res,
                                    const char *tool, void (*extra)(mmd_json *j, const void *user),
                                    const void *user);

/* The per-pose table (total, LoS, strongest peak) on stdout. */
void mmd_cli_aoa_print(const mmd_aoa_result *res);

typedef struct mmd_cli_coverage {
    mmd_coverage_map m;
    float *db, *rss;        /* path gain [dB] and RSS [dBm] per cell */
    double *outline;        /* floor-plan segments at z */
    size_t n_outline;
    size_t covered;         /* cells with power */
    double max_db, median_db, min_db;
} mmd_cli_coverage;

/* Run the coverage map of the experiment (progress on stderr) and its statistics. */
mmd_status mmd_cli_coverage_compute(mmd_cli_run *r, mmd_cli_coverage *c);
/* path_gain_db.npy, rss_dbm.npy, coverage.png + rss.png (output.png) and result.json in
 * `dir` (created), result.json's "tool" = tool. */
mmd_status mmd_cli_coverage_write(const mmd_cli_run *r, const char *dir, const char *tool,
                                  const mmd_cli_coverage *c);
/* The summary lines on stdout. */
void mmd_cli_coverage_print(const mmd_cli_run *r, const char *dir, const mmd_cli_coverage *c);
void mmd_cli_coverage_free(mmd_cli_coverage *c);

#endif
