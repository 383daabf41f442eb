/* mmdiff command-line entry point: global options, then dispatch to a sub-command. */
#include "mmd_par.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mmd_core.h"

#ifndef MMD_VERSION
#define MMD_VERSION "0.1.0"
#endif

typedef struct command {
    const char *name;
    int (*run)(const mmd_cli_opts *, int, char **);
    const char *help;
} command;

static const command commands[] = {
    {"devices", mmd_cmd_devices, "list OpenCL platforms and devices"},
    {"info", mmd_cmd_info, "load a scene (PLY, Mitsuba XML, scene YAML) and print its contents"},
    {"simulate", mmd_cmd_simulate, "AoA spectra for the receiver poses of an experiment file"},
    {"perturb", mmd_cmd_perturb, "make a clean scene look like a LiDAR scan (subdivide, decimate, holes, noise)"},
    {"coverage", mmd_cmd_coverage, "coverage map (path gain / RSS heatmap) of an experiment's TX"},
    {"calibrate", mmd_cmd_calibrate, "learn the scene's radio materials from measured AoA spectra (train block)"},
    {"predict", mmd_cmd_predict, "spectra and coverage with the materials learned by calibrate (--model DIR)"},
    {"dataset", mmd_cmd_dataset, "TRAJ and RAND measurement sets simulated on the clean mesh (dataset block)"},
    {"evaluate", mmd_cmd_evaluate, "peak F1 / AAE / APE and power error of predicted vs measured spectra"},
    {"import-nerf2", mmd_cmd_import_nerf2, "NeRF2 RFID spatial spectra (PNG) -> a measurement set"},
    {"protocol", mmd_cmd_protocol, "the robustness protocol: datasets, 3 models on a noisy scan, metrics table, figures"},
};

static void usage(FILE *f)
{
    fprintf(f, "mmdiff %s - portable differentiable mmWave ray tracer (OpenCL)\n\n"
               "usage: mmdiff [--device SEL] [-v|-q] COMMAND [ARGS]\n\ncommands:\n", MMD_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "  %-12s %s\n", "version", "print the version");
    fprintf(f, "\noptions:\n"
               "  --device SEL   auto (default: first GPU, else CPU), gpu, cpu, P:D, or a name substring\n"
               "                 (also MMDIFF_DEVICE)\n"
               "  -v, -q         more / less logging on stderr (also MMDIFF_LOG=0|1|2)\n"
               "environment: MMDIFF_KERNEL_DIR (override kernel sources), MMDIFF_CACHE=off,\n"
               "             MMDIFF_CACHE_DIR (compiled-kernel cache), MMDIFF_THREADS\n");
}

static unsigned g_fail_count;

unsigned mmd_cli_fail_count(void) { return g_fail_count; }
const char *mmd_cli_version(void) { return MMD_VERSION; }

int mmd_cli_fail(void)
{
    /* across MPI ranks every failure passes an agreement point first (mmd_par_agree), so
     * each rank holds the same message: rank 0 speaks for the job */
    if (mmd_par_rank() == 0) fprintf(stderr, "mmdiff: error: %s\n", mmd_last_error());
    g_fail_count++;
    /* the run's log.txt gets the error too (run.c captures log lines through the sink) */
    mmd_log_sink_fn sink;
    void *user;
    mmd_log_set_sink(NULL, NULL, &sink, &user);
    mmd_log_set_sink(sink, user, NULL, NULL);
    if (sink) {
        char line[2100];
        snprintf(line, sizeof line, "error: %s", mmd_last_error());
        sink(0, line, user);
    }
    return 1;
}

/* Commands that run across MPI ranks (docs/cluster.md); the others refuse more than one. */
static int runs_across_ranks(const char *cmd)
{
    return !strcmp(cmd, "simulate") || !strcmp(cmd, "coverage") || !strcmp(cmd, "dataset") ||
           !strcmp(cmd, "calibrate");
}

static int run_main(int argc, char **argv)
{
    mmd_cli_opts o = {0};
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) {
            o.device = argv[++i];
        } else if (!strncmp(argv[i], "--device=", 9)) {
            o.device = argv[i] + 9;
        } else if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose")) {
            mmd_log_set_level(2);
        } else if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet")) {
            mmd_log_set_level(0);
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("mmdiff %s\n", MMD_VERSION);
            return 0;
        } else {
            fprintf(stderr, "mmdiff: error: unknown option '%s' (see mmdiff --help)\n", argv[i]);
            return 2;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[i];
    if (!strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "version")) {
        printf("mmdiff %s\n", MMD_VERSION);
        return 0;
    }
    for (size_t k = 0; k < sizeof commands / sizeof *commands; k++) {
        if (strcmp(cmd, commands[k].name)) continue;
        if (mmd_par_size() > 1 && !runs_across_ranks(cmd)) {
            if (mmd_par_rank() == 0)
                fprintf(stderr, "mmdiff: error: '%s' does not run across MPI ranks yet (%d ranks started); run it as "
                                "one process (docs/cluster.md)\n", cmd, mmd_par_size());
            return 2;
        }
        return commands[k].run(&o, argc - i, argv + i);
    }
    fprintf(stderr, "mmdiff: error: unknown command '%s' (see mmdiff --help)\n", cmd);
    return 2;
}

int main(int argc, char **argv)
{
    /* MPI builds: every rank runs the same command line (mmd_par.h); a no-op otherwise */
    if (mmd_par_init(&argc, &argv) != MMD_OK) {
        fprintf(stderr, "mmdiff: error: %s\n", mmd_last_error());
        return 1;
    }
    if (mmd_par_rank() != 0 && !getenv("MMDIFF_LOG")) mmd_log_set_level(0); /* rank 0 speaks for the job */
    int rc = run_main(argc, argv);
    mmd_par_finalize();
    return rc;
}
