/*
 * dataset.h - the synthetic measurement sets of `mmdiff dataset`, callable from other
 * commands (the protocol) with a run opened on the clean mesh:
 *
 *     mmd_cli_run r;
 *     mmd_cli_run_open_flags(&r, o, "protocol", argc, argv, 0, NULL, 0, MMD_CLI_RUN_CLEAN_SCENE);
 *     mmd_cli_dataset_make(&r, "runs/p/data");   // data/TRAJ/, data/RAND/, data/dataset.json
 */
#ifndef MMD_CLI_DATASET_H
#define MMD_CLI_DATASET_H

#include "run.h"

/* TRAJ and RAND pose sets of r->e.dataset, their spectra with r->sim (plus measurement
 * noise and floor), written as measurement sets dir/TRAJ and dir/RAND (a set of 0 poses is
 * skipped) and dir/dataset.json, only after both were simulated. */
mmd_status mmd_cli_dataset_make(mmd_cli_run *r, const char *dir);

#endif
