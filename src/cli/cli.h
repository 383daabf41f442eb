/*
 * cli.h - the `mmdiff` command-line front end: one function per sub-command, sharing the
 * global options parsed in main.c. Results go to stdout, logs and progress to stderr.
 *
 *     mmdiff devices
 *     mmdiff info scenes/conference_room/scene.yaml --bvh
 */
#ifndef MMD_CLI_H
#define MMD_CLI_H

typedef struct mmd_cli_opts {
    const char *device; /* --device, or NULL for $MMDIFF_DEVICE / auto */
} mmd_cli_opts;

int mmd_cmd_devices(const mmd_cli_opts *o, int argc, char **argv);
int mmd_cmd_info(const mmd_cli_opts *o, int argc, char **argv);
int mmd_cmd_simulate(const mmd_cli_opts *o, int argc, char **argv);
int mmd_cmd_perturb(const mmd_cli_opts *o, int argc, char **argv);
int mmd_cmd_coverage(const mmd_cli_opts *o, int argc, char **argv);
int mmd_cmd_calibrate(const mmd_cli_opts *o, int argc, char **argv);
int mmd_cmd_predict(const mmd_cli_opts *o, int argc, char **argv);
int mmd_cmd_dataset(const mmd_cli_opts *o, int argc, char **argv);
int mmd_cmd_evaluate(const mmd_cli_opts *o, int argc, char **argv);
int mmd_cmd_import_nerf2(const mmd_cli_opts *o, int argc, char **argv);
int mmd_cmd_protocol(const mmd_cli_opts *o, int argc, char **argv);

/* Print "mmdiff: <last error>" to stderr and return the exit code for a failure. */
int mmd_cli_fail(void);

#endif
