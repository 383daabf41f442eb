/*
 * run.h - what every experiment-driven sub-command (simulate, coverage, ...) does the
 * same way: parse `EXP.yaml [-o DIR] [--set key=value ...]`, load and check the
 * experiment, load the scene, build the BVH, open the device, create the simulator, and
 * record the run (resolved configuration, command line, device, seed, materials) in the
 * run directory.
 *
 * Example:
 *     mmd_cli_run r;
 *     int rc = mmd_cli_run_open(&r, o, "coverage", argc, argv, 0);
 *     if (rc) return rc;                      // usage error (2) or failure (1), reported
 *     ... mmd_sim_coverage(r.sim, ...) ...
 *     mmd_cli_run_write_records(&r);          // experiment.resolved.yaml, command.txt
 *     mmd_cli_run_close(&r);
 */
#ifndef MMD_CLI_RUN_H
#define MMD_CLI_RUN_H

#include "cli.h"
#include "mmd_io.h"
#include "mmd_sim.h"

typedef struct mmd_cli_run {
    const char *cmd;        /* sub-command name */
    const char *exp_path;
    const char *dir;        /* -o DIR, else output.dir */
    mmd_experiment e;
    int have_e;
    mmd_scene *scene;
    mmd_bvh *bvh;
    mmd_cl *cl;
    mmd_sim *sim;
    const mmd_cfg_pose *poses; /* rx.poses or rx.poses_csv */
    size_t n_poses;
    mmd_cfg_pose *csv_poses;
    char *cmdline;          /* "mmdiff [--device D] CMD ARGS..." */
    double t0;
    /* reproducibility record (run.json, log.txt), kept by run.c */
    struct mmd_cli_log *log; /* log lines of this run, copied into DIR/log.txt */
    int records_written;     /* mmd_cli_run_write_records succeeded: close writes DIR/run.json */
    unsigned fails_at_open;  /* mmd_cli_fail count when the run opened */
    long long started_unix;  /* wall clock at open */
} mmd_cli_run;

/* Returns 0 when everything is ready, 2 for a usage error, 1 for any other failure (the
 * message is already on stderr). need_poses: receiver poses are required. On failure the
 * run is already closed. */
int mmd_cli_run_open(mmd_cli_run *r, const mmd_cli_opts *o, const char *cmd, int argc, char **argv,
                     int need_poses);
void mmd_cli_run_close(mmd_cli_run *r);

/* A sub-command's own option besides -o and --set: a flag ("--resume": value NULL, *flag
 * set to 1) or an option with a value ("--model DIR" or "--model=DIR": *value set). */
typedef struct mmd_cli_extra_opt {
    const char *name;
    const char **value;
    int *flag;
    int required;
} mmd_cli_extra_opt;

/* mmd_cli_run_open that also accepts the command's own options (listed in its usage line). */
int mmd_cli_run_open_ex(mmd_cli_run *r, const mmd_cli_opts *o, const char *cmd, int argc, char **argv,
                        int need_poses, const mmd_cli_extra_opt *extra, size_t n_extra);

/* Flags of mmd_cli_run_open_flags. */
enum {
    MMD_CLI_RUN_CLEAN_SCENE = 1u, /* ignore scene.noise: trace the clean mesh (ground truth of `dataset`) */
    MMD_CLI_RUN_CONFIG_ONLY = 2u  /* load the experiment only (r->e, r->dir, r->cmdline): no scene, tree,
                                     device or simulator (`evaluate`) */
};

/* mmd_cli_run_open_ex with flags (0 = the same). */
int mmd_cli_run_open_flags(mmd_cli_run *r, const mmd_cli_opts *o, const char *cmd, int argc, char **argv,
                           int need_poses, const mmd_cli_extra_opt *extra, size_t n_extra, unsigned flags);

/* Create the run directory and write experiment.resolved.yaml and command.txt. */
mmd_status mmd_cli_run_write_records(mmd_cli_run *r);

/* Keys shared by every result.json: "device" {platform, name, driver}, "seed", and
 * "materials" {object: {eps_r, sigma_s_per_m, scattering, xpd, thickness_m, alpha_r}}. */
void mmd_cli_run_json_common(const mmd_cli_run *r, mmd_json *j);

/* ---------------------------------------------------------------------------------------
 * Reproducibility records (docs/experiment.md, "Run records"). Every run directory gets
 * experiment.resolved.yaml and command.txt (mmd_cli_run_write_records), log.txt (every log
 * line of the run, also those printed before the directory existed, and the error if it
 * failed) and run.json (tool, version, command, working directory, start/end time,
 * seconds, status, device and driver, seeds, host), written by mmd_cli_run_close.
 *
 * A command that does not use mmd_cli_run (the protocol) does the same by hand:
 *     mmd_cli_log *l = mmd_cli_log_begin();         // capture from now on
 *     ... mmd_cli_log_attach(l, dir);                // DIR/log.txt: what came so far, then the rest
 *     mmd_cli_run_json_write(dir, &info);            // DIR/run.json
 *     mmd_cli_log_end(l);                            // stop (restores an outer capture)
 * Captures nest: an inner run's lines also go to the outer run's log.
 */
typedef struct mmd_cli_log mmd_cli_log;
mmd_cli_log *mmd_cli_log_begin(void);
mmd_status mmd_cli_log_attach(mmd_cli_log *l, const char *dir);
void mmd_cli_log_end(mmd_cli_log *l);

/* What run.json records (NULL / 0 fields are written as null). */
typedef struct mmd_cli_run_info {
    const char *tool;            /* "mmdiff simulate" */
    const char *cmdline;
    const mmd_experiment *e;     /* seeds; may be NULL */
    const mmd_cl *cl;            /* device; NULL = the device the last run of this process used */
    double t0;                   /* mmd_now() at the start */
    long long started_unix;
    int failed;
    const char *error;           /* message when failed */
    void (*extra)(mmd_json *j, const void *user); /* more top-level keys (may be NULL) */
    const void *user;
} mmd_cli_run_info;
mmd_status mmd_cli_run_json_write(const char *dir, const mmd_cli_run_info *info);

/* Number of failures reported through mmd_cli_fail so far (main.c). */
unsigned mmd_cli_fail_count(void);
/* The program version (git describe at build time; main.c). */
const char *mmd_cli_version(void);

/* One-line progress on a terminal, a single status line at the end otherwise. */
void mmd_cli_progress(const char *what, const char *unit, size_t done, size_t total);

#endif
