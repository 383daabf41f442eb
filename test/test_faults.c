/* Fault injection (issue 8, docs/RELIABILITY.md "Fault injection"): every failure a user
 * can meet mid-run ends with a clear error, a non-zero exit and no partial result file, and
 * a calibration can always be resumed. The faults come from MMDIFF_FAULT (mmd_core.h), so
 * each case is deterministic: a device allocation that fails, a kernel build that fails, a
 * device that gives up mid-run, a disk that fills up, a read-only output directory, SIGINT /
 * SIGTERM / SIGKILL at a known training step, SIGKILL while the checkpoint is being written;
 * then damaged checkpoints, and runs larger than the device (MMDIFF_DEVICE_MEM_MB): refused
 * up front with the numbers, or split into smaller launches with the same result.
 * MMD_BIN names the binary (make test sets it). */
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mmd_train.h"
#include "mmd_test.h"

static char g_dir[] = "/tmp/fault_test_XXXXXX";
static const char *g_bin;

/* Run a shell command in the test directory with MMDIFF_FAULT=fault (NULL: none); returns
 * the exit code, 128 + signal when killed. Output (stdout + stderr) in *out. */
static int run(const char *fault, const char *cmd, const char **out)
{
    static char buf[65536];
    char full[8192];
    snprintf(full, sizeof full, "cd %s && MMDIFF_LOG=0 %s%s%s %s 2>&1", g_dir, fault ? "MMDIFF_FAULT='" : "",
             fault ? fault : "", fault ? "'" : "", cmd);
    FILE *p = popen(full, "r");
    size_t n = p ? fread(buf, 1, sizeof buf - 1, p) : 0;
    buf[n] = 0;
    int status = p ? pclose(p) : -1;
    *out = buf;
    /* under make test-asan an error path that leaks or misbehaves must fail the test, not
     * hide behind the expected exit code 1 */
    CHECK(!strstr(buf, "Sanitizer") && !strstr(buf, "runtime error:"), "%s: sanitizer report: %.1500s", cmd, buf);
    /* sh -c reports a killed child as 128 + signal */
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int mmd(const char *fault, const char *args, const char **out)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s", g_bin, args);
    return run(fault, cmd, out);
}

static void write_text(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static const char *at(const char *rel)
{
    static char buf[4][700];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, 700, "%s/%s", g_dir, rel);
    return b;
}

static int exists(const char *rel)
{
    struct stat sb;
    return stat(at(rel), &sb) == 0;
}

/* Files in a run directory (recursively) whose name contains ".tmp." (a temp file of the
 * atomic writer) or all files when any = 1. */
static int count_files(const char *rel, int any)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "find '%s' -type f %s 2>/dev/null | wc -l", at(rel), any ? "" : "-name '*.tmp.*'");
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1) n = -1;
        pclose(p);
    }
    return n;
}

static char *slurp(const char *rel, size_t *size)
{
    char *d = NULL;
    if (mmd_read_file(at(rel), &d, size) != MMD_OK) return NULL;
    return d;
}

/* model/materials.yaml without its comment lines (which name the experiment). */
static char *materials(const char *dir)
{
    char rel[300];
    snprintf(rel, sizeof rel, "%s/model/materials.yaml", dir);
    char *t = slurp(rel, NULL);
    if (!t) return NULL;
    char *w = t;
    for (char *r = t; *r;) {
        char *nl = strchr(r, '\n');
        size_t len = nl ? (size_t)(nl - r + 1) : strlen(r);
        if (*r != '#') {
            memmove(w, r, len);
            w += len;
        }
        r += len;
    }
    *w = 0;
    return t;
}

static const char *k_ply = "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
                           "property float z\nelement face 2\nproperty list uchar int vertex_indices\nend_header\n"
                           "%s\n3 0 1 2\n3 0 2 3\n";

/* A floor and a wall; truth.yaml simulates 5 poses with the measurement-set output,
 * cal.yaml calibrates from wrong materials: 4 training poses, 2 per step (2 steps per
 * epoch), 6 epochs, a checkpoint every 2 epochs. */
static void write_scene(void)
{
    char t[1024];
    snprintf(t, sizeof t, k_ply, "0 0 0\n4 0 0\n4 4 0\n0 4 0");
    write_text("floor.ply", t);
    snprintf(t, sizeof t, k_ply, "0 4 0\n4 4 0\n4 4 3\n0 4 3");
    write_text("wall.ply", t);
    write_text("scene.yaml", "shapes:\n  - {file: floor.ply, material: concrete}\n  - {file: wall.ply, material: metal}\n");
    const char *common = "tx: {position_m: [2, 1, 1.5]}\n"
                         "aoa: {azimuth_deg: [-90, 90, 10], elevation_deg: [-40, 40, 10]}\n"
                         "solver: {rays: 4000, max_depth: 2, seed: 1}\n"
                         "coverage: {cell_m: 0.5, rays: 20000}\n";
    char e[4096];
    snprintf(e, sizeof e,
             "scene:\n  file: scene.yaml\n  frequency_hz: 60e9\n  materials:\n"
             "    floor: {eps_r: 5.0, sigma_s_per_m: 0.5, scattering: 0.3}\n"
             "    wall: {eps_r: 3.0, sigma_s_per_m: 0.1, scattering: 0.2}\n"
             "rx:\n  array: {rows: 4, cols: 4, element: iso}\n  poses:\n"
             "    - {position_m: [1, 2, 1.2], yaw_deg: 90}\n    - {position_m: [2, 2, 1.2], yaw_deg: 80}\n"
             "    - {position_m: [3, 2, 1.0], yaw_deg: 100}\n    - {position_m: [1.5, 2.5, 1.3], yaw_deg: 70}\n"
             "    - {position_m: [2.5, 3, 1.1], yaw_deg: 95}\n%s"
             "output: {dir: truth, measurements: true, png: true}\n",
             common);
    write_text("truth.yaml", e);
    snprintf(e, sizeof e,
             "scene:\n  file: scene.yaml\n  frequency_hz: 60e9\n  materials:\n"
             "    floor: {eps_r: 3.0, sigma_s_per_m: 0.1, scattering: 0.1}\n"
             "    wall: {eps_r: 6.0, sigma_s_per_m: 0.5, scattering: 0.5}\n"
             "rx:\n  array: {rows: 4, cols: 4, element: iso}\n%s"
             "train: {measurements: truth/measurements, model: per_object, lr: 0.05, batch_poses: 2, epochs: 6,\n"
             "        val_fraction: 0.2, early_stop_patience: 0, checkpoint_every: 2}\n"
             "output: {dir: cal, png: false}\n",
             common);
    write_text("cal.yaml", e);
}

/* A failed run: exit code 1 (an error, not a crash), the message names `needle`, and the
 * directory holds no result.json and no temp file. */
static void expect_clean_failure(const char *what, int rc, const char *out, const char *needle, const char *dir)
{
    CHECK(rc == 1, "%s: exit code %d (want 1: a clean error)", what, rc);
    CHECK(strstr(out, "error") && strstr(out, needle), "%s: message should name '%s', got: %.500s", what, needle, out);
    char rel[300];
    snprintf(rel, sizeof rel, "%s/result.json", dir);
    CHECK(!exists(rel), "%s: no result.json in %s", what, dir);
    CHECK(count_files(dir, 0) <= 0, "%s: no temp file left in %s", what, dir);
}

/* The checkpoint of a run directory: reads (checksum and all) and says where it stands. */
static int checkpoint_at(const char *dir, int64_t *epoch, uint64_t *batch_pos)
{
    char rel[300];
    snprintf(rel, sizeof rel, "%s/checkpoint.bin", dir);
    mmd_train_checkpoint c;
    if (mmd_train_checkpoint_read(at(rel), &c) != MMD_OK) return 0;
    *epoch = c.epoch;
    *batch_pos = c.batch_pos;
    mmd_train_checkpoint_free(&c);
    return 1;
}

/* --resume the run in `dir`; it must end with the reference run's model. */
static void expect_resume_matches(const char *what, const char *dir)
{
    char args[600];
    snprintf(args, sizeof args, "calibrate cal.yaml -o %s --resume", dir);
    const char *out;
    int rc = mmd(NULL, args, &out);
    CHECK(rc == 0, "%s: --resume: rc %d: %.400s", what, rc, out);
    char *a = materials("ref"), *b = materials(dir);
    CHECK(a && b && !strcmp(a, b), "%s: --resume ends with the uninterrupted run's materials", what);
    free(a), free(b);
}

/* mmd_fault itself, in this process: counting, @N, :MATCH, unknown sites; and the atomic
 * writer under a full disk. */
static void test_fault_switch(void)
{
    setenv("MMDIFF_FAULT", "write@2:faultfile,cl_alloc,nosuchsite,write@2:failfile", 1);
    CHECK(!mmd_fault("write", "/x/faultfile.json"), "write@2: the first matching call passes");
    CHECK(!mmd_fault("write", "/x/other.json"), "write@2:faultfile: another path neither fires nor counts");
    CHECK(mmd_fault("write", "/x/faultfile.json"), "write@2: the second matching call fails");
    CHECK(!mmd_fault("write", "/x/faultfile.json"), "write@2: only the second");
    CHECK(mmd_fault("cl_alloc", "a") && mmd_fault("cl_alloc", NULL), "cl_alloc without @N: every call");
    CHECK(!mmd_fault("nosuchsite", "a") && !mmd_fault("cl_build", "aoa.cl"), "unlisted and unknown sites never fire");
    unsetenv("MMDIFF_FAULT"); /* parsed once per process; the children must not inherit it */

    const char *p = at("failfile.txt");
    CHECK(mmd_write_file_atomic(p, "old", 3) == MMD_OK, "atomic write");
    mmd_status st = mmd_write_file_atomic(p, "new content", 11);
    CHECK(st == MMD_ERR_IO && strstr(mmd_last_error(), "failfile.txt") &&
              strstr(mmd_last_error(), "No space left on device"),
          "disk full: an error naming the file and the cause: %s", mmd_last_error());
    char *d = slurp("failfile.txt", NULL);
    CHECK(d && !strcmp(d, "old"), "disk full: the old content is kept");
    free(d);
    CHECK(count_files(".", 0) == 0, "disk full: the temp file is removed");
}

static void test_write_faults(void)
{
    const char *out;
    int rc;
    /* disk full while writing each kind of output: the error names the file and says why;
     * result.json (written last, the mark of a complete set) never appears */
    const char *targets[] = {"spectra.npy", "png/pose_0002.png", "measurements/manifest.yaml", "result.json"};
    for (int i = 0; i < 4; i++) {
        char fault[128], dir[32], what[160];
        snprintf(fault, sizeof fault, "write:%s", targets[i]);
        snprintf(dir, sizeof dir, "wf%d", i);
        snprintf(what, sizeof what, "disk full writing %s", targets[i]);
        char args[200];
        snprintf(args, sizeof args, "simulate truth.yaml -o %s", dir);
        rc = mmd(fault, args, &out);
        expect_clean_failure(what, rc, out, "No space left on device", dir);
        char rel[300];
        snprintf(rel, sizeof rel, "%s/%s", dir, targets[i]);
        CHECK(!exists(rel), "%s: the file is not there at all", what);
        CHECK(strstr(out, targets[i]) != NULL, "%s: the message names the file", what);
    }
    /* a failing write never touches the previous result: run once, then fail over it */
    rc = mmd(NULL, "simulate truth.yaml -o keep", &out);
    CHECK(rc == 0, "simulate: rc %d: %.300s", rc, out);
    size_t n1 = 0, n2 = 0;
    char *before = slurp("keep/spectra.npy", &n1);
    rc = mmd("write:spectra.npy", "simulate truth.yaml -o keep --set solver.seed=2", &out);
    expect_clean_failure("disk full over an earlier run", rc, out, "spectra.npy", "keep");
    char *after = slurp("keep/spectra.npy", &n2);
    CHECK(before && after && n1 == n2 && !memcmp(before, after, n1), "the earlier spectra.npy is unchanged");
    free(before), free(after);
    /* read-only output directory: the temp file cannot be created */
    rc = mmd("write_open", "simulate truth.yaml -o ro", &out);
    expect_clean_failure("read-only output directory", rc, out, "Read-only file system", "ro");
    CHECK(count_files("ro", 1) <= 0, "read-only: nothing written");
    if (geteuid() != 0) { /* a real one (root writes anywhere, hence the injected case above) */
        char cmd[800];
        snprintf(cmd, sizeof cmd, "mkdir -p ro2 && chmod 555 ro2");
        run(NULL, cmd, &out);
        rc = mmd(NULL, "simulate truth.yaml -o ro2", &out);
        expect_clean_failure("real read-only directory", rc, out, "Permission denied", "ro2");
        run(NULL, "chmod 755 ro2", &out);
    }
    /* killed while writing: the file is absent (only the temp file remains, never read) */
    rc = mmd("write_kill:spectra.npy", "simulate truth.yaml -o killed", &out);
    CHECK(rc == 137, "killed mid-write: rc %d", rc);
    CHECK(!exists("killed/spectra.npy") && !exists("killed/result.json"), "killed mid-write: no spectra.npy, no result.json");
    /* coverage: the same writer */
    rc = mmd("write:rss_dbm.npy", "coverage truth.yaml -o covf", &out);
    expect_clean_failure("disk full writing rss_dbm.npy", rc, out, "rss_dbm.npy", "covf");
}

static void test_device_faults(void)
{
    const char *out;
    int rc = mmd("cl_alloc", "simulate truth.yaml -o da", &out);
    expect_clean_failure("device allocation failure", rc, out, "CL_MEM_OBJECT_ALLOCATION_FAILURE", "da");
    CHECK(strstr(out, "cannot allocate"), "allocation failure: says what could not be allocated: %.300s", out);
    rc = mmd("cl_build:aoa.cl", "simulate truth.yaml -o db", &out);
    expect_clean_failure("kernel build failure", rc, out, "build of kernel 'aoa.cl' failed", "db");
    rc = mmd("cl_build:coverage.cl", "coverage truth.yaml -o dbc", &out);
    expect_clean_failure("coverage kernel build failure", rc, out, "coverage.cl", "dbc");
    rc = mmd("cl_run:launch mmd_aoa_lags", "simulate truth.yaml -o dr", &out);
    expect_clean_failure("device failure mid-run", rc, out, "CL_OUT_OF_RESOURCES", "dr");
}

static void test_calibration_faults(void)
{
    const char *out;
    int64_t ep = -1;
    uint64_t bp = 0;
    /* SIGINT in epoch 3, after its first step (step 5): the step finishes, a checkpoint of
     * exactly that point is written, exit 130, no result.json */
    int rc = mmd("sigint@5", "calibrate cal.yaml -o sint", &out);
    CHECK(rc == 130, "SIGINT: exit code %d (want 130): %.300s", rc, out);
    CHECK(strstr(out, "--resume"), "SIGINT: prints the --resume command");
    CHECK(checkpoint_at("sint", &ep, &bp) && ep == 2 && bp == 1, "SIGINT: final checkpoint at epoch 2 + 1 step (%lld, %llu)",
          (long long)ep, (unsigned long long)bp);
    CHECK(!exists("sint/result.json") && count_files("sint", 0) == 0, "SIGINT: no result.json, no temp file");
    expect_resume_matches("SIGINT", "sint");
    /* SIGTERM at the end of epoch 2 */
    rc = mmd("sigterm@4", "calibrate cal.yaml -o sterm", &out);
    CHECK(rc == 143, "SIGTERM: exit code %d (want 143)", rc);
    CHECK(checkpoint_at("sterm", &ep, &bp) && ep == 2 && bp == 0, "SIGTERM: checkpoint at epoch 2 (%lld, %llu)",
          (long long)ep, (unsigned long long)bp);
    expect_resume_matches("SIGTERM", "sterm");
    /* kill -9 after step 7 (3 epochs done): the last checkpoint (epoch 2, checkpoint_every
     * 2) is intact, so at most one checkpoint interval is lost */
    rc = mmd("sigkill@7", "calibrate cal.yaml -o skill", &out);
    CHECK(rc == 137, "SIGKILL: exit code %d", rc);
    CHECK(checkpoint_at("skill", &ep, &bp) && ep == 2 && bp == 0 && 3 - ep <= 2,
          "SIGKILL: the last checkpoint reads and is at most one interval old (epoch %lld)", (long long)ep);
    CHECK(!exists("skill/result.json"), "SIGKILL: no result.json");
    expect_resume_matches("SIGKILL", "skill");
    /* kill -9 while the second checkpoint is being written: the first one is untouched */
    rc = mmd("write_kill@2:checkpoint.bin", "calibrate cal.yaml -o wkill", &out);
    CHECK(rc == 137, "killed while checkpointing: exit code %d", rc);
    CHECK(checkpoint_at("wkill", &ep, &bp) && ep == 2 && bp == 0,
          "killed while checkpointing: the previous checkpoint (epoch 2) reads (%lld)", (long long)ep);
    expect_resume_matches("killed while checkpointing", "wkill");
    /* disk full at the second checkpoint: an error, the first checkpoint kept */
    rc = mmd("write@2:checkpoint.bin", "calibrate cal.yaml -o wfull", &out);
    expect_clean_failure("disk full while checkpointing", rc, out, "No space left on device", "wfull");
    CHECK(checkpoint_at("wfull", &ep, &bp) && ep == 2, "disk full while checkpointing: epoch-2 checkpoint kept");
    expect_resume_matches("disk full while checkpointing", "wfull");
    /* the device gives up mid-training: the 11th backward launch (one per pose: step 6, in
     * epoch 3, after the first checkpoint) */
    rc = mmd("cl_run@11:launch mmd_calib_backward", "calibrate cal.yaml -o dfail", &out);
    expect_clean_failure("device failure mid-training", rc, out, "CL_OUT_OF_RESOURCES", "dfail");
    CHECK(checkpoint_at("dfail", &ep, &bp) && ep >= 2, "device failure mid-training: a checkpoint to resume from");
    expect_resume_matches("device failure mid-training", "dfail");
    /* disk full at the very end: no result.json although training finished */
    rc = mmd("write:model/materials.yaml", "calibrate cal.yaml -o wmat", &out);
    expect_clean_failure("disk full writing materials.yaml", rc, out, "materials.yaml", "wmat");
}

static void test_damaged_checkpoints(void)
{
    size_t n = 0;
    char *ck = slurp("ref/checkpoint.bin", &n);
    CHECK(ck && n > 200, "reference checkpoint");
    if (!ck) return;
    mmd_train_checkpoint c;
    /* truncated anywhere: the header's size says so */
    int all_refused = 1;
    for (size_t cut = 0; cut < n; cut += n / 13 + 1) {
        mmd_write_file_atomic(at("cut.bin"), ck, cut);
        mmd_status st = mmd_train_checkpoint_read(at("cut.bin"), &c);
        if (st == MMD_OK) mmd_train_checkpoint_free(&c);
        if (st == MMD_OK || (cut >= 8 && !strstr(mmd_last_error(), "truncated"))) all_refused = 0;
    }
    CHECK(all_refused, "every truncation refused as truncated: %s", mmd_last_error());
    /* one flipped bit anywhere in the payload: the checksum says so */
    all_refused = 1;
    for (size_t b = 32; b < n; b += n / 17 + 1) {
        ck[b] ^= 0x10;
        mmd_write_file_atomic(at("flip.bin"), ck, n);
        ck[b] ^= 0x10;
        mmd_status st = mmd_train_checkpoint_read(at("flip.bin"), &c);
        if (st == MMD_OK) mmd_train_checkpoint_free(&c);
        if (st != MMD_ERR_PARSE || !strstr(mmd_last_error(), "corrupted")) all_refused = 0;
    }
    CHECK(all_refused, "every flipped bit refused as corrupted: %s", mmd_last_error());
    /* through the CLI: refused with the message, nothing written */
    const char *out;
    run(NULL, "mkdir -p dmg && cp ref/checkpoint.bin dmg/ && printf 'X' | dd of=dmg/checkpoint.bin bs=1 seek=150 "
              "conv=notrunc 2>/dev/null", &out);
    int rc = mmd(NULL, "calibrate cal.yaml -o dmg --resume", &out);
    expect_clean_failure("corrupted checkpoint on --resume", rc, out, "checkpoint is corrupted", "dmg");
    CHECK(!exists("dmg/model"), "corrupted checkpoint: nothing trained");
    free(ck);
}

static void test_resource_limits(void)
{
    const char *out;
    /* too large for the device: refused before anything is written, with the numbers */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "MMDIFF_DEVICE_MEM_MB=32 %s calibrate cal.yaml -o big2 --set solver.rays=300000 "
                              "--set solver.max_depth=3", g_bin);
    int rc = run(NULL, cmd, &out);
    expect_clean_failure("calibration larger than the device", rc, out, "MiB of device memory are needed", "big2");
    CHECK(strstr(out, "solver.rays 300000") && strstr(out, "99.6 MiB"), "the refusal names rays x depth and the need: %.400s",
          out);
    CHECK(!exists("big2/checkpoint.bin") && !exists("big2/command.txt"), "refused up front: nothing written");
    snprintf(cmd, sizeof cmd, "MMDIFF_DEVICE_MEM_MB=64 %s simulate truth.yaml -o big3 --set solver.rays=1500000000", g_bin);
    rc = run(NULL, cmd, &out);
    expect_clean_failure("one pose larger than the device's largest buffer", rc, out, "MiB", "big3");
    /* the path cache takes what the budget leaves: 1 MiB holds no cached pose, yet the run
     * is the same, bit for bit (every pose re-traced) */
    snprintf(cmd, sizeof cmd, "MMDIFF_DEVICE_MEM_MB=1 %s calibrate cal.yaml -o small", g_bin);
    rc = run(NULL, cmd, &out);
    CHECK(rc == 0, "calibration in 1 MiB of device memory: rc %d: %.300s", rc, out);
    char *a = materials("ref"), *b = materials("small");
    CHECK(a && b && !strcmp(a, b), "calibration in 1 MiB: the same materials as with the full cache");
    free(a), free(b);
    char *res = slurp("small/result.json", NULL);
    CHECK(res && strstr(res, "\"cache_bytes_used\": 0"), "calibration in 1 MiB: no pose fitted in the cache");
    free(res);
    /* coverage in 1 MiB: split into more launches, the same map */
    snprintf(cmd, sizeof cmd, "MMDIFF_DEVICE_MEM_MB=1 %s coverage truth.yaml -o covsmall --set coverage.rays=200000", g_bin);
    rc = run(NULL, cmd, &out);
    CHECK(rc == 0, "coverage in 1 MiB of device memory: rc %d: %.300s", rc, out);
    rc = mmd(NULL, "coverage truth.yaml -o covfull --set coverage.rays=200000", &out);
    size_t n1 = 0, n2 = 0;
    char *m1 = slurp("covsmall/path_gain_db.npy", &n1), *m2 = slurp("covfull/path_gain_db.npy", &n2);
    CHECK(rc == 0 && m1 && m2 && n1 == n2 && !memcmp(m1, m2, n1), "coverage in 1 MiB: the same map, bit for bit");
    free(m1), free(m2);
}

int main(void)
{
    g_bin = getenv("MMD_BIN");
    if (!g_bin || !g_bin[0]) g_bin = "build/mmdiff";
    static char absbin[4096];
    if (realpath(g_bin, absbin)) g_bin = absbin;
    if (!mkdtemp(g_dir)) return 1;
    test_fault_switch();
    write_scene();
    const char *out;
    int rc = mmd(NULL, "simulate truth.yaml", &out);
    CHECK(rc == 0 && exists("truth/measurements/manifest.yaml"), "simulate truth: rc %d: %.400s", rc, out);
    rc = mmd(NULL, "calibrate cal.yaml -o ref", &out);
    CHECK(rc == 0 && exists("ref/result.json"), "reference calibration: rc %d: %.400s", rc, out);

    test_write_faults();
    test_device_faults();
    test_calibration_faults();
    test_damaged_checkpoints();
    test_resource_limits();

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (!mmd_t_fail && system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
    return TEST_DONE();
}
