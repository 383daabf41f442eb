/* `mmdiff protocol` end to end on a tiny box room written by the test (a few poses, a few
 * thousand rays): metrics.json has the three models on TRAJ and RAND with the keys the
 * issue names, the tables and PNG figures exist, every step directory holds its run
 * records (run.json, log.txt), and a bad protocol block is a clear error that writes no
 * metrics. MMD_BIN names the binary (make test sets it). */
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mmd_io.h"
#include "mmd_test.h"
#include "mmd_test_cli.h"

static char g_dir[] = "/tmp/proto_test_XXXXXX";
static const char *g_bin;

static int run(const char *cmd, const char **out) { return mmd_tc_run(g_dir, cmd, out); }

static void write_text(const char *name, const char *text) { mmd_tc_write(g_dir, name, text); }

static int exists(const char *rel) { return mmd_tc_exists(g_dir, rel); }

static char *slurp(const char *rel) { return mmd_tc_slurp(g_dir, rel); }

static int is_png(const char *rel)
{
    char *d = slurp(rel);
    int ok = d && !memcmp(d, "\x89PNG\r\n\x1a\n", 8);
    free(d);
    return ok;
}

static int count_of(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* a closed 4 x 4 x 3 m box: floor, ceiling, four walls (the dataset needs an inside) */
static void write_scene(void)
{
    static const char *ply = "ply\nformat ascii 1.0\nelement vertex %d\nproperty float x\nproperty float y\n"
                             "property float z\nelement face %d\nproperty list uchar int vertex_indices\n"
                             "end_header\n%s";
    char t[2048];
    snprintf(t, sizeof t, ply, 4, 2, "0 0 0\n4 0 0\n4 4 0\n0 4 0\n3 0 1 2\n3 0 2 3\n");
    write_text("floor.ply", t);
    snprintf(t, sizeof t, ply, 4, 2, "0 0 3\n4 0 3\n4 4 3\n0 4 3\n3 0 1 2\n3 0 2 3\n");
    write_text("ceiling.ply", t);
    snprintf(t, sizeof t, ply, 8, 8,
             "0 0 0\n4 0 0\n4 4 0\n0 4 0\n0 0 3\n4 0 3\n4 4 3\n0 4 3\n"
             "3 0 1 5\n3 0 5 4\n3 1 2 6\n3 1 6 5\n3 2 3 7\n3 2 7 6\n3 3 0 4\n3 3 4 7\n");
    write_text("walls.ply", t);
    write_text("scene.yaml", "shapes:\n  - {file: floor.ply, material: concrete}\n"
                             "  - {file: ceiling.ply, material: plasterboard}\n"
                             "  - {file: walls.ply, material: glass}\n");
}

/* the experiment with a protocol block (`protocol` = its text, NULL = none) */
static void write_exp(const char *name, const char *protocol)
{
    char t[4096];
    snprintf(t, sizeof t,
             "scene:\n"
             "  file: scene.yaml\n"
             "  materials:\n"
             "    concrete: {itu: concrete, scattering: 0.2}\n"
             "    plasterboard: {itu: plasterboard, scattering: 0.2}\n"
             "    glass: {itu: glass, scattering: 0.3}\n"
             "  noise: {subdivide_m: 0.7, sigma_m: 0.02, hole_fraction: 0.02, hole_radius_m: 0.2, seed: 3}\n"
             "tx: {position_m: [2, 3.5, 2.5]}\n"
             "rx:\n"
             "  array: {rows: 4, cols: 4}\n"
             "aoa: {azimuth_deg: [-90, 90, 10], elevation_deg: [-40, 40, 10]}\n"
             "solver: {rays: 3000, max_depth: 2, seed: 5}\n"
             "dataset: {traj_poses: 6, rand_poses: 4, traj_step_m: 0.1, clearance_m: 0.3, seed: 2}\n"
             "train: {model: per_object, lr: 0.05, batch_poses: 3, epochs: 1, val_fraction: 0}\n"
             "coverage: {z_m: 1.2, cell_m: 0.5, rays: 20000}\n"
             "%s",
             protocol ? protocol : "");
    write_text(name, t);
}

static const char *k_protocol = "protocol:\n"
                                "  truth_mode: directional\n"
                                "  initial_materials:\n"
                                "    concrete: {eps_r: 3, sigma_s_per_m: 0.3, scattering: 0.5}\n"
                                "    plasterboard: {eps_r: 3, sigma_s_per_m: 0.3, scattering: 0.5}\n"
                                "    glass: {eps_r: 3, sigma_s_per_m: 0.3, scattering: 0.5}\n"
                                "  figure_poses: 2\n"
                                "  coverage: true\n";

static void expect_fail(const char *what, const char *args, const char *needle, const char *outdir)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s protocol %s -o %s", g_bin, args, outdir);
    const char *out;
    int rc = run(cmd, &out);
    CHECK(rc != 0 && rc < 128, "%s: exit code %d (want a clean failure)", what, rc);
    CHECK(strstr(out, "error") && strstr(out, needle), "%s: message should mention '%s', got: %.600s", what, needle,
          out);
    char p[600];
    snprintf(p, sizeof p, "%s/metrics.json", outdir);
    CHECK(!exists(p), "%s: no metrics.json in %s", what, outdir);
    snprintf(p, sizeof p, "%s/data", outdir);
    CHECK(!exists(p), "%s: nothing simulated in %s", what, outdir);
}

int main(void)
{
    g_bin = getenv("MMD_BIN");
    if (!g_bin || access(g_bin, X_OK) != 0) {
        printf("test_protocol: SKIP (MMD_BIN not set to the mmdiff binary)\n");
        return 0;
    }
    if (!mkdtemp(g_dir)) {
        CHECK(0, "mkdtemp");
        return TEST_DONE();
    }
    write_scene();
    write_exp("exp.yaml", k_protocol);

    /* ---- a complete tiny protocol ---- */
    char cmd[4096];
    /* info level, so that log.txt (a copy of the printed log lines) has something to copy */
    snprintf(cmd, sizeof cmd, "sh -c 'MMDIFF_LOG=1 %s protocol exp.yaml -o out 2>stderr.txt'", g_bin);
    const char *out;
    int rc = run(cmd, &out);
    CHECK(rc == 0, "protocol: exit code %d: %.3000s", rc, out);
    CHECK(strstr(out, "### RAND") && strstr(out, "### TRAJ") && strstr(out, "directional, calibrated"),
          "protocol prints the tables: %.2000s", out);
    CHECK(strstr(out, "figures/coverage.png"), "protocol prints the figure paths");

    char *m = slurp("out/metrics.json");
    CHECK(m != NULL, "metrics.json written");
    if (m) {
        const char *want[] = {"\"RAND\"", "\"TRAJ\"", "\"settings\"", "\"specular\"", "\"directional_uncalibrated\"",
                              "\"directional_calibrated\"", "\"specular_materials\"", "\"initial_materials\"",
                              "\"timings_s\"", "\"thresholds\"", "\"mean_abs_error_db\""};
        for (size_t i = 0; i < sizeof want / sizeof *want; i++) CHECK(strstr(m, want[i]), "metrics.json has %s", want[i]);
        /* 2 sets x 4 models (three and the ground-truth-materials reference), each with top1
         * and top5 and a power error */
        CHECK(count_of(m, "\"top1\": {") == 8 && count_of(m, "\"top5\": {") == 8, "8 x top1/top5 (got %d, %d)",
              count_of(m, "\"top1\": {"), count_of(m, "\"top5\": {"));
        CHECK(count_of(m, "\"f1\":") == 16 && count_of(m, "\"aae_deg\":") == 16 && count_of(m, "\"ape_db\":") == 16,
              "f1/aae_deg/ape_db in every top-K");
        CHECK(count_of(m, "\"power_error_db\":") == 8, "power_error_db per set and model");
        CHECK(count_of(m, "\"directional_ground_truth\": {") == 2, "the reference model in both sets");
        /* RAND comes before TRAJ, settings last */
        const char *r = strstr(m, "\"RAND\""), *t = strstr(m, "\"TRAJ\""), *s = strstr(m, "\"settings\"");
        CHECK(r && t && s && r < t && t < s, "order RAND, TRAJ, settings");
        free(m);
    }
    char *md = slurp("out/metrics.md");
    CHECK(md && count_of(md, "| specular baseline") == 2 && count_of(md, "| directional, uncalibrated |") == 2 &&
              count_of(md, "| directional, calibrated |") == 2 &&
              count_of(md, "| directional, ground-truth materials (reference) |") == 2 && strstr(md, "top-1 F1"),
          "metrics.md: one table per set, four rows each");
    free(md);
    char *csv = slurp("out/metrics.csv");
    CHECK(csv && count_of(csv, "\n") == 9 && strstr(csv, "RAND,directional_calibrated,4,") &&
              strstr(csv, "TRAJ,directional_ground_truth,6,"),
          "metrics.csv: header + 8 rows: %s", csv ? csv : "(none)");
    /* the reference runs the directional model on the noisy scan with the ground-truth
     * materials: the experiment's own scene.materials, not protocol.initial_materials */
    char *ref = slurp("out/directional_ground_truth/RAND/experiment.resolved.yaml");
    CHECK(ref && strstr(ref, "scattering: 0.3") && !strstr(ref, "scattering: 0.5") && strstr(ref, "sigma_m: 0.02") &&
              strstr(ref, "mode: directional"),
          "reference arm: ground-truth materials, the noisy scan, directional mode");
    free(ref);
    free(csv);
    CHECK(is_png("out/figures/coverage.png") && is_png("out/figures/coverage_error.png"), "coverage figures");
    CHECK(is_png("out/figures/spectra_RAND_pose0000.png") && is_png("out/figures/spectra_RAND_pose0002.png"),
          "two spectra figures (poses 0 and 2 of 4)");
    CHECK(exists("out/per_pose/RAND_specular.csv") && exists("out/per_pose/TRAJ_directional_calibrated.csv"),
          "per-pose CSVs");
    /* run records of the protocol and of its steps */
    const char *rec[] = {"out/run.json", "out/log.txt", "out/command.txt", "out/experiment.resolved.yaml",
                         "out/experiment.base.yaml", "out/steps.txt", "out/data/run.json", "out/data/log.txt",
                         "out/directional_calibrated/calibration/run.json",
                         "out/directional_uncalibrated/RAND/run.json", "out/coverage/calibrated/path_gain_db.npy"};
    for (size_t i = 0; i < sizeof rec / sizeof *rec; i++) CHECK(exists(rec[i]), "%s written", rec[i]);
    char *rj = slurp("out/run.json");
    CHECK(rj && strstr(rj, "\"version\"") && strstr(rj, "\"status\": \"ok\"") && strstr(rj, "\"driver\"") &&
              strstr(rj, "\"seeds\"") && strstr(rj, "\"seconds\""),
          "run.json: version, status, device/driver, seeds, seconds: %.1500s", rj ? rj : "(none)");
    free(rj);
    rj = slurp("out/directional_uncalibrated/RAND/run.json");
    CHECK(rj && strstr(rj, "\"tool\": \"mmdiff simulate\"") && strstr(rj, "\"status\": \"ok\""),
          "a step's run.json: %.800s", rj ? rj : "(none)");
    free(rj);
    char *lg = slurp("out/log.txt");
    CHECK(lg && strstr(lg, "protocol: dataset") && strstr(lg, "protocol: calibrated_RAND"), "log.txt has the steps");
    free(lg);
    lg = slurp("out/data/log.txt");
    CHECK(lg && strstr(lg, "dataset TRAJ: 6 poses") && !strstr(lg, "protocol:"),
          "a step's log.txt has its own lines only: %.500s", lg ? lg : "(none)");
    free(lg);
    char *res = slurp("out/experiment.resolved.yaml");
    CHECK(res && strstr(res, "\nprotocol:\n") && strstr(res, "initial_materials: {concrete: {eps_r: 3"),
          "the resolved file has the protocol block");
    free(res);

    /* ---- bad protocol blocks: clear errors before anything runs ---- */
    write_exp("bad_key.yaml", "protocol:\n  truth: directional\n");
    expect_fail("unknown key", "bad_key.yaml", "bad_key.yaml:17:3: unknown key 'protocol.truth'", "bad1");
    write_exp("bad_mode.yaml", "protocol:\n  truth_mode: sionna\n");
    expect_fail("bad enum", "bad_mode.yaml", "protocol.truth_mode: expected one of directional, specular", "bad2");
    write_exp("no_block.yaml", NULL);
    expect_fail("no block", "no_block.yaml", "no protocol block", "bad3");
    write_exp("bad_list.yaml", "protocol: [1, 2]\n");
    expect_fail("a list", "bad_list.yaml", "protocol: expected a block of keys", "bad4");
    expect_fail("bad --set", "exp.yaml --set protocol.figure_poses=-1", "protocol.figure_poses: expected an integer",
                "bad5");
    expect_fail("unknown material", "exp.yaml --set 'protocol.initial_materials={carpet: {itu: wood}}'",
                "protocol.initial_materials", "bad6");
    write_exp("bad_exp.yaml", "protocol:\n  coverage: true\nsolver2: {}\n");
    expect_fail("experiment key after the block", "bad_exp.yaml", "bad_exp.yaml:18:1: unknown key 'solver2'", "bad7");

    char rm[600];
    snprintf(rm, sizeof rm, "rm -rf %s", g_dir);
    if (!getenv("MMD_KEEP")) CHECK(system(rm) == 0, "cleanup");
    return TEST_DONE();
}
