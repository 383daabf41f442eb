/* The mmdiff command as a user runs it: exit codes and the one-line error for bad input
 * (no crash, no partial output), plus a small successful simulate run whose outputs are
 * checked for presence and shape. MMD_BIN names the binary (make test sets it). */
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mmd_io.h"
#include "mmd_test.h"
#include "mmd_test_cli.h"

static char g_dir[] = "/tmp/mmd_cli_XXXXXX";
static const char *g_bin;

/* Run a shell command, capture stderr+stdout into *out (static buffer); returns the exit
 * code, or 128 + signal when it crashed. */
static int run(const char *cmd, const char **out) { return mmd_tc_run(NULL, cmd, out); }

static void write_text(const char *name, const char *text) { mmd_tc_write(g_dir, name, text); }

static void expect_fail(const char *what, const char *args, const char *needle)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd %s && MMDIFF_LOG=0 %s %s", g_dir, g_bin, args);
    const char *out;
    int rc = run(cmd, &out);
    CHECK(rc != 0 && rc < 128, "%s: exit code %d (want a clean failure)", what, rc);
    CHECK(strstr(out, "error") && strstr(out, needle), "%s: message should mention '%s', got: %.400s", what, needle,
          out);
}

int main(void)
{
    g_bin = getenv("MMD_BIN");
    if (!g_bin || !g_bin[0]) g_bin = "build/mmdiff";
    char absbin[4096];
    if (realpath(g_bin, absbin)) g_bin = absbin;
    if (!mkdtemp(g_dir)) return 1;
    char shared[4096];
    if (!realpath(mmd_test_shared(), shared)) snprintf(shared, sizeof shared, "%s", mmd_test_shared());

    /* usage errors */
    const char *out;
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s frobnicate", g_bin);
    CHECK(run(cmd, &out) == 2 && strstr(out, "unknown command"), "unknown command: %s", out);
    snprintf(cmd, sizeof cmd, "%s --device no-such-device-xyz devices", g_bin);
    CHECK(run(cmd, &out) == 0 && strstr(out, "no-such-device-xyz"), "devices with a bad selector warns: %s", out);

    /* scene inputs (issue 2's catalogue, through the CLI) */
    write_text("trunc.ply", "ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\n"
                            "property float y\nproperty float z\nelement face 1\n"
                            "property list uchar int vertex_indices\nend_header\n\x01\x02");
    expect_fail("truncated binary PLY", "info trunc.ply", "trunc.ply");
    write_text("range.ply", "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                            "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
                            "0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n");
    expect_fail("face index out of range", "info range.ply", "out of range");
    write_text("nan.ply", "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                          "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
                          "0 0 0\nnan 0 0\n0 1 0\n3 0 1 2\n");
    expect_fail("NaN vertex", "info nan.ply", "NaN");
    write_text("fmt.ply", "ply\nformat binary_middle_endian 1.0\nelement vertex 0\nend_header\n");
    expect_fail("unknown PLY format", "info fmt.ply", "format");
    write_text("missing.xml", "<scene version=\"2.1.0\"><shape type=\"ply\" id=\"a\"><string name=\"filename\" "
                              "value=\"nope.ply\"/></shape></scene>\n");
    expect_fail("XML referencing a missing file", "info missing.xml", "nope.ply");
    write_text("bad.xml", "<scene version=\"2.1.0\"><shape type=\"ply\" id=\"a\">\n");
    expect_fail("malformed XML", "info bad.xml", "bad.xml");
    write_text("mat.yaml", "shapes:\n  - file: range.ply\n    material: unobtainium\n");
    expect_fail("unknown material name", "info mat.yaml", "unobtainium");
    write_text("empty.ply", "ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\n"
                            "property float z\nelement face 0\nproperty list uchar int vertex_indices\nend_header\n");
    expect_fail("empty scene", "info empty.ply", "no triangles");
    expect_fail("missing scene file", "info does-not-exist.ply", "does-not-exist.ply");

    /* experiment files */
    char exp[8192];
    snprintf(exp, sizeof exp,
             "scene: {file: %s/scenes/indoor/nist_conference_room/scene.yaml, frequency_hz: 60.0e9}\n"
             "tx: {position_m: [1.5, 4.2, 2.2]}\n"
             "rx:\n  array: {rows: 4, cols: 4}\n  poses: [{position_m: [1.5, 0.6, 1.2], yaw_deg: 90}]\n"
             "aoa: {azimuth_deg: [-90, 90, 2], elevation_deg: [-40, 40, 2]}\n"
             "solver: {rays: 5000, max_depth: 2, seed: 1}\n"
             "output: {dir: run, measurements: true}\n",
             shared);
    write_text("exp.yaml", exp);
    expect_fail("unknown key", "simulate exp.yaml --set solver.raysx=3", "raysx");
    expect_fail("out of range", "simulate exp.yaml --set solver.rays=-5", "solver.rays");
    expect_fail("unknown material key", "simulate exp.yaml --set 'scene.materials.unobtainium={itu: concrete}'",
                "unobtainium");
    expect_fail("frequency outside an ITU range", "simulate exp.yaml --set scene.frequency_hz=200e9", "frequency");
    write_text("broken.yaml", "scene: {file: x.ply\ntx: [\n");
    expect_fail("malformed experiment YAML", "simulate broken.yaml", "broken.yaml:");
    char runpath[600];
    snprintf(runpath, sizeof runpath, "%s/run", g_dir);
    struct stat sb;
    CHECK(stat(runpath, &sb) != 0, "failed runs leave no output directory");

    /* a small successful run */
    snprintf(cmd, sizeof cmd, "cd %s && MMDIFF_LOG=0 %s simulate exp.yaml", g_dir, g_bin);
    int rc = run(cmd, &out);
    CHECK(rc == 0 && strstr(out, "total [dB]"), "simulate: rc %d: %.500s", rc, out);
    const char *files[] = {"spectra.npy", "result.json", "experiment.resolved.yaml", "png/pose_0000.png",
                           "png/pose_0000.json", "measurements/poses.csv", "measurements/spectra.npy",
                           "measurements/manifest.yaml"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char p[700];
        snprintf(p, sizeof p, "%s/run/%s", g_dir, files[i]);
        CHECK(stat(p, &sb) == 0 && sb.st_size > 0, "output %s written", files[i]);
    }
    char p[700];
    snprintf(p, sizeof p, "%s/run/spectra.npy", g_dir);
    mmd_array a;
    if (mmd_npy_read_f32(p, &a) == MMD_OK) {
        CHECK(a.ndim == 3 && a.shape[0] == 1 && a.shape[1] == 41 && a.shape[2] == 91, "spectra shape %zu x %zu x %zu",
              a.shape[0], a.shape[1], a.shape[2]);
        mmd_array_free(&a);
    } else {
        CHECK(0, "read spectra.npy: %s", mmd_last_error());
    }
    /* the resolved experiment re-runs to the same spectra (reproducibility) */
    snprintf(cmd, sizeof cmd, "cd %s && MMDIFF_LOG=0 %s simulate run/experiment.resolved.yaml -o run2 && cmp run/spectra.npy run2/spectra.npy",
             g_dir, g_bin);
    CHECK(run(cmd, &out) == 0, "resolved config reproduces the spectra bit for bit: %.300s", out);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
    return TEST_DONE();
}
