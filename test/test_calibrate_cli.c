/* `mmdiff calibrate` and `mmdiff predict` as a user runs them, on a two-object room
 * written by the test: simulate ground truth with output.measurements, calibrate from
 * wrong materials, predict with the learned ones; interruption by SIGTERM and by SIGKILL
 * then --resume give the same model as an uninterrupted run; bad inputs fail cleanly and
 * leave no result.json. MMD_BIN names the binary (make test sets it). */
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mmd_config.h"
#include "mmd_io.h"
#include "mmd_test.h"
#include "mmd_test_cli.h"

static char g_dir[] = "/tmp/train_cli_XXXXXX";
static const char *g_bin;

static int run(const char *cmd, const char **out) { return mmd_tc_run(g_dir, cmd, out); }

static void write_text(const char *name, const char *text) { mmd_tc_write(g_dir, name, text); }

static int exists(const char *rel) { return mmd_tc_exists(g_dir, rel); }

static char *slurp(const char *rel) { return mmd_tc_slurp(g_dir, rel); }

/* ---- a minimal JSON checker: the whole text is one valid value ---- */
static const char *js_ws(const char *s)
{
    while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') s++;
    return s;
}
static const char *js_value(const char *s, int depth);
static const char *js_string(const char *s)
{
    if (*s != '"') return NULL;
    for (s++; *s && *s != '"'; s++)
        if (*s == '\\' && !*++s) return NULL;
    return *s == '"' ? s + 1 : NULL;
}
static const char *js_value(const char *s, int depth)
{
    s = js_ws(s);
    if (depth > 64) return NULL;
    if (*s == '{' || *s == '[') {
        char close = *s == '{' ? '}' : ']';
        s = js_ws(s + 1);
        if (*s == close) return s + 1;
        for (;;) {
            if (close == '}') {
                s = js_string(js_ws(s));
                if (!s) return NULL;
                s = js_ws(s);
                if (*s++ != ':') return NULL;
            }
            s = js_value(s, depth + 1);
            if (!s) return NULL;
            s = js_ws(s);
            if (*s == ',') s++;
            else if (*s == close) return s + 1;
            else return NULL;
        }
    }
    if (*s == '"') return js_string(s);
    if (!strncmp(s, "true", 4)) return s + 4;
    if (!strncmp(s, "false", 5)) return s + 5;
    if (!strncmp(s, "null", 4)) return s + 4;
    char *end;
    strtod(s, &end);
    return end == s ? NULL : end;
}
static int json_ok(const char *text)
{
    const char *e = text ? js_value(text, 0) : NULL;
    return e && *js_ws(e) == 0;
}

/* The value text after the n-th occurrence of "key": (n from 0), into buf. */
static int json_field(const char *text, const char *key, int n, char *buf, size_t cap)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = text;
    for (int i = 0; p && i <= n; i++) {
        p = strstr(p, pat);
        if (p && i < n) p += strlen(pat);
    }
    if (!p) return 0;
    p += strlen(pat);
    size_t k = strcspn(p, ",\n}");
    snprintf(buf, cap, "%.*s", (int)k, p);
    return 1;
}

static int count_of(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* The losses of every epoch, in order, as text (bit-exact comparison of round-trip digits). */
static char *losses(const char *rel)
{
    char *t = slurp(rel);
    if (!t) return NULL;
    static char out[2][65536];
    static int k;
    char *o = out[k++ & 1];
    o[0] = 0;
    char v[64];
    for (int i = 0; json_field(t, "loss", i, v, sizeof v) && strlen(o) + 80 < sizeof out[0]; i++) {
        strcat(o, v);
        strcat(o, " ");
    }
    free(t);
    return o;
}

/* Materials without the comment lines (which name the experiment). */
static char *materials(const char *rel)
{
    char *t = slurp(rel);
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

static void expect_fail(const char *what, const char *args, const char *needle, const char *outdir)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s", g_bin, args);
    const char *out;
    int rc = run(cmd, &out);
    CHECK(rc != 0 && rc < 128, "%s: exit code %d (want a clean failure)", what, rc);
    CHECK(strstr(out, "error") && strstr(out, needle), "%s: message should mention '%s', got: %.600s", what, needle,
          out);
    if (outdir) {
        char p[600];
        snprintf(p, sizeof p, "%s/result.json", outdir);
        CHECK(!exists(p), "%s: no result.json left in %s", what, outdir);
    }
}

static const char *k_ply = "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
                           "property float z\nelement face 2\nproperty list uchar int vertex_indices\nend_header\n"
                           "%s\n3 0 1 2\n3 0 2 3\n";

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
                         "solver: {rays: 4000, max_depth: 2, seed: 1}\n";
    char e[4096];
    snprintf(e, sizeof e,
             "scene:\n  file: scene.yaml\n  frequency_hz: 60e9\n  materials:\n"
             "    floor: {eps_r: 5.0, sigma_s_per_m: 0.5, scattering: 0.3}\n"
             "    wall: {eps_r: 3.0, sigma_s_per_m: 0.1, scattering: 0.2}\n"
             "rx:\n  array: {rows: 4, cols: 4, element: iso}\n  poses:\n"
             "    - {position_m: [1, 2, 1.2], yaw_deg: 90}\n    - {position_m: [2, 2, 1.2], yaw_deg: 80}\n"
             "    - {position_m: [3, 2, 1.0], yaw_deg: 100}\n    - {position_m: [1.5, 2.5, 1.3], yaw_deg: 70}\n"
             "    - {position_m: [2.5, 3, 1.1], yaw_deg: 95}\n%s"
             "output: {dir: truth, measurements: true, png: false}\n",
             common);
    write_text("truth.yaml", e);
    snprintf(e, sizeof e,
             "scene:\n  file: scene.yaml\n  frequency_hz: 60e9\n  materials:\n"
             "    floor: {eps_r: 3.0, sigma_s_per_m: 0.1, scattering: 0.1}\n"
             "    wall: {eps_r: 6.0, sigma_s_per_m: 0.5, scattering: 0.5}\n"
             "rx:\n  array: {rows: 4, cols: 4, element: iso}\n%s"
             "train: {measurements: truth/measurements, model: per_object, lr: 0.05, batch_poses: 2, epochs: 8,\n"
             "        val_fraction: 0.2, early_stop_patience: 0}\n"
             "output: {dir: cal, png: false}\n",
             common);
    write_text("cal.yaml", e);
}

/* Start `mmdiff calibrate ... -o DIR`, wait for its first checkpoint, send `sig`, wait.
 * Returns the exit code (128 + signal when killed), -1 when no checkpoint came. */
static int interrupt_run(const char *dir, const char *sets, int sig)
{
    char cmd[4096], ck[700];
    snprintf(cmd, sizeof cmd, "cd %s && exec %s calibrate cal.yaml %s -o %s >/dev/null 2>&1", g_dir, g_bin, sets, dir);
    snprintf(ck, sizeof ck, "%s/%s/checkpoint.bin", g_dir, dir);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("MMDIFF_LOG", "0", 1);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    if (pid < 0) return -1;
    struct stat sb;
    int seen = 0;
    for (int i = 0; i < 6000 && !seen; i++) {
        if (stat(ck, &sb) == 0) seen = 1;
        else if (waitpid(pid, NULL, WNOHANG) == pid) return -1;
        else {
            struct timespec ts = {0, 5000000};
            nanosleep(&ts, NULL);
        }
    }
    kill(pid, sig);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!seen) return -1;
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* calibrate_geometry end to end (paper Supp. E through the CLI): measurements of a 1 x 1 m
 * plate at z = 0; the experiment's scan has it 0.2 m too high; calibrate learns the pose
 * (model/geometry.yaml), predict applies it, and a SIGTERM + --resume ends with the same
 * pose bit for bit. */
static const char *k_plate = "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
                             "property float z\nelement face 2\nproperty list uchar int vertex_indices\nend_header\n"
                             "-0.5 -0.5 %g\n0.5 -0.5 %g\n0.5 0.5 %g\n-0.5 0.5 %g\n3 0 1 2\n3 0 2 3\n";

static double yaml_num(const mmd_ynode *root, const char *key, int i)
{
    const mmd_ynode *v = mmd_yaml_get(root, key);
    return v && v->kind == MMD_YAML_SEQ && (size_t)i < v->n && v->items[i]->text ? atof(v->items[i]->text) : NAN;
}

static void test_geometry(void)
{
    char t[1024], e[4096], cmd[4096];
    const char *out;
    for (int k = 0; k < 2; k++) {
        snprintf(t, sizeof t, "%s/%s", g_dir, k ? "scan" : "true");
        mkdir(t, 0755);
    }
    for (int k = 0; k < 2; k++) {
        double z = k ? 0.2 : 0.0;
        snprintf(t, sizeof t, k_plate, z, z, z, z);
        write_text(k ? "scan/plate.ply" : "true/plate.ply", t);
        write_text(k ? "scan/scene.yaml" : "true/scene.yaml", "shapes:\n  - {file: plate.ply, material: metal}\n");
    }
    const char *common = "  frequency_hz: 28e9\n  materials:\n    plate: {eps_r: 3.0, sigma_s_per_m: 2.0e4}\n"
                         "tx: {position_m: [-1.0, 0.0, 1.0], pattern: iso}\n"
                         "rx:\n  array: {rows: 4, cols: 4, spacing_wavelengths: 0.5, window: hann, element: patch}\n"
                         "  poses:\n"
                         "    - {position_m: [0.7, 0.0, 0.7], yaw_deg: 180, pitch_deg: 45}\n"
                         "    - {position_m: [0.6, 0.35, 0.8], yaw_deg: 193, pitch_deg: 48}\n"
                         "    - {position_m: [0.75, -0.3, 0.6], yaw_deg: 170, pitch_deg: 42}\n"
                         "aoa: {azimuth_deg: [-40, 40, 2], elevation_deg: [-40, 40, 2]}\n"
                         "solver: {rays: 10000, max_depth: 1, seed: 11, polarization: scalar}\n";
    snprintf(e, sizeof e, "scene:\n  file: true/scene.yaml\n%soutput: {dir: gtruth, measurements: true, png: false}\n",
             common);
    write_text("gtruth.yaml", e);
    /* materials start right and learn slowly: the pose is what is calibrated here */
    snprintf(e, sizeof e,
             "scene:\n  file: scan/scene.yaml\n%s"
             "train: {measurements: gtruth/measurements, model: per_object, lr: 0.001, batch_poses: 3, epochs: 200,\n"
             "        val_fraction: 0, early_stop_patience: 0, fit_scale: false, checkpoint_every: 1}\n"
             "calibrate_geometry: {object: plate, lr: 0.02, steps: 200}\n"
             "output: {dir: geo, png: false}\n",
             common);
    write_text("geo.yaml", e);
    snprintf(cmd, sizeof cmd, "%s simulate gtruth.yaml", g_bin);
    int rc = run(cmd, &out);
    CHECK(rc == 0 && exists("gtruth/measurements/manifest.yaml"), "geometry: simulate truth: rc %d: %.400s", rc, out);
    double t0 = mmd_now();
    snprintf(cmd, sizeof cmd, "%s calibrate geo.yaml", g_bin);
    rc = run(cmd, &out);
    CHECK(rc == 0 && strstr(out, "object 'plate' moved by"), "geometry: calibrate: rc %d: %.800s", rc, out);
    double dt = mmd_now() - t0;
    CHECK(exists("geo/model/geometry.yaml") && exists("geo/model/materials.yaml"), "geometry: model files written");
    char p[700];
    snprintf(p, sizeof p, "%s/geo/model/geometry.yaml", g_dir);
    mmd_ynode *root = NULL;
    double tr[3] = {NAN, NAN, NAN}, ang[2] = {NAN, NAN};
    if (mmd_yaml_load_file(p, &root) == MMD_OK && root) {
        for (int i = 0; i < 3; i++) tr[i] = yaml_num(root, "translation_m", i);
        for (int i = 0; i < 2; i++) ang[i] = yaml_num(root, "rotation_rad", i) * 180.0 / M_PI;
        const mmd_ynode *o = mmd_yaml_get(root, "object");
        CHECK(o && o->text && !strcmp(o->text, "plate"), "geometry.yaml names the object");
        mmd_yaml_free(root);
    } else {
        CHECK(0, "geometry.yaml parses: %s", mmd_last_error());
    }
    /* the scan's plate is 0.2 m high: the learned translation must bring it back */
    double err_a = fmax(fabs(ang[0]), fabs(ang[1]));
    printf("calibrate_geometry via the CLI: t = (%+.4f, %+.4f, %+.4f) m (truth (0, 0, -0.2)), a = (%+.3f, %+.3f) deg, "
           "%.1f s for 200 steps\n",
           tr[0], tr[1], tr[2], ang[0], ang[1], dt);
    CHECK(fabs(tr[2] + 0.2) < 0.01, "geometry: the normal offset is recovered within 1 cm (%.2f mm)",
          1e3 * fabs(tr[2] + 0.2));
    CHECK(fabs(ang[0]) < 0.5 && fabs(ang[1]) < 0.5, "geometry: the tilt stays within 0.5 deg (%.3f deg)", err_a);
    char *res = slurp("geo/result.json");
    CHECK(json_ok(res) && res && strstr(res, "\"geometry\"") && strstr(res, "\"translation_m\""),
          "geometry: result.json carries the pose");
    free(res);

    /* predict on the scan with the learned pose: the spectra come back to the truth's */
    snprintf(cmd, sizeof cmd, "%s predict geo.yaml --model geo -o geopred --set output.measurements=false", g_bin);
    rc = run(cmd, &out);
    CHECK(rc == 0, "geometry: predict: rc %d: %.600s", rc, out);
    snprintf(cmd, sizeof cmd, "%s simulate geo.yaml -o geoscan --set output.measurements=false", g_bin);
    rc = run(cmd, &out);
    CHECK(rc == 0, "geometry: simulate the uncorrected scan: rc %d: %.600s", rc, out);
    res = slurp("geopred/result.json");
    CHECK(res && strstr(res, "geometry.yaml"), "geometry: predict's result.json names the pose file");
    free(res);
    mmd_array a, b, c;
    char pa[700], pb[700], pc[700];
    snprintf(pa, sizeof pa, "%s/gtruth/spectra.npy", g_dir);
    snprintf(pb, sizeof pb, "%s/geopred/spectra.npy", g_dir);
    snprintf(pc, sizeof pc, "%s/geoscan/spectra.npy", g_dir);
    if (mmd_npy_read_f32(pa, &a) == MMD_OK && mmd_npy_read_f32(pb, &b) == MMD_OK && mmd_npy_read_f32(pc, &c) == MMD_OK) {
        size_t n = a.count;
        double e_pred = 0, e_scan = 0, peak = 0;
        for (size_t i = 0; i < n; i++) peak = fmax(peak, a.data[i]);
        for (size_t i = 0; i < n && n == b.count && n == c.count; i++) {
            if (a.data[i] < 1e-3 * peak) continue; /* within 30 dB of the peak */
            e_pred += fabs(10 * log10((b.data[i] + 1e-30) / a.data[i]));
            e_scan += fabs(10 * log10((c.data[i] + 1e-30) / a.data[i]));
        }
        printf("calibrate_geometry via the CLI: sum |dB| against the truth: scan as is %.1f, with the learned pose "
               "%.1f\n",
               e_scan, e_pred);
        CHECK(n == b.count && n == c.count && e_pred < 0.3 * e_scan,
              "geometry: predict with the pose is much closer to the truth than the scan as is (%.1f vs %.1f)", e_pred,
              e_scan);
        mmd_array_free(&a), mmd_array_free(&b), mmd_array_free(&c);
    } else {
        CHECK(0, "geometry: read spectra: %s", mmd_last_error());
    }

    /* SIGTERM mid-run, then --resume: the same pose, bit for bit */
    snprintf(cmd, sizeof cmd, "cd %s && exec %s calibrate geo.yaml -o geo2 >/dev/null 2>&1", g_dir, g_bin);
    char ck[800];
    snprintf(ck, sizeof ck, "%s/geo2/checkpoint.bin", g_dir);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int waited = 0;
    struct stat sb;
    while (waited < 6000 && stat(ck, &sb) != 0) usleep(10000), waited++;
    usleep(300000); /* a few more epochs */
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 143 && !exists("geo2/result.json"),
          "geometry: SIGTERM ends the run with 143 and a checkpoint, no result (status %d)", status);
    snprintf(cmd, sizeof cmd, "%s calibrate geo.yaml -o geo2 --resume", g_bin);
    rc = run(cmd, &out);
    CHECK(rc == 0, "geometry: --resume: rc %d: %.600s", rc, out);
    char *g1 = slurp("geo/model/geometry.yaml"), *g2 = slurp("geo2/model/geometry.yaml");
    CHECK(g1 && g2 && !strcmp(g1, g2), "geometry: interrupted + --resume learns the same pose, bit for bit");
    free(g1), free(g2);
}

int main(void)
{
    g_bin = getenv("MMD_BIN");
    if (!g_bin || !g_bin[0]) g_bin = "build/mmdiff";
    char absbin[4096];
    if (realpath(g_bin, absbin)) g_bin = absbin;
    if (!mkdtemp(g_dir)) return 1;
    write_scene();
    const char *out;
    char cmd[4096];

    /* ground truth with the measurement-set output */
    snprintf(cmd, sizeof cmd, "%s simulate truth.yaml", g_bin);
    int rc = run(cmd, &out);
    CHECK(rc == 0 && exists("truth/measurements/manifest.yaml"), "simulate truth: rc %d: %.400s", rc, out);

    /* calibrate from wrong materials */
    snprintf(cmd, sizeof cmd, "%s calibrate cal.yaml", g_bin);
    rc = run(cmd, &out);
    CHECK(rc == 0 && strstr(out, "kept"), "calibrate: rc %d: %.800s", rc, out);
    CHECK(exists("cal/model/materials.yaml") && exists("cal/result.json") && exists("cal/checkpoint.bin") &&
              exists("cal/experiment.resolved.yaml") && exists("cal/command.txt"),
          "calibrate outputs written");
    char *res = slurp("cal/result.json");
    CHECK(json_ok(res), "result.json parses");
    if (res) {
        char first[64] = "", last[64] = "", v[64] = "";
        json_field(res, "loss", 0, first, sizeof first);
        json_field(res, "loss", 7, last, sizeof last);
        CHECK(count_of(res, "\"val_loss\"") == 8, "8 epochs in result.json");
        CHECK(atof(last) < 0.7 * atof(first), "loss falls: %s -> %s", first, last);
        CHECK(json_field(res, "final_loss", 0, v, sizeof v) && atof(v) == atof(last), "final_loss = last epoch");
        CHECK(json_field(res, "best_epoch", 0, v, sizeof v) && atoi(v) >= 1, "best_epoch %s", v);
        CHECK(strstr(res, "\"best_val_loss\"") && strstr(res, "\"stopped_early\": false") &&
                  strstr(res, "\"scale\"") && strstr(res, "\"timings\"") && strstr(res, "\"device\"") &&
                  strstr(res, "\"seed\"") && strstr(res, "\"command\""),
              "result.json keys");
        free(res);
    }
    mmd_ynode *root = NULL;
    char p[700];
    snprintf(p, sizeof p, "%s/cal/model/materials.yaml", g_dir);
    if (mmd_yaml_load_file(p, &root) == MMD_OK && root) {
        const mmd_ynode *m = mmd_yaml_get(root, "materials");
        const mmd_ynode *w = mmd_yaml_get(m, "wall");
        CHECK(m && m->n == 2 && w && mmd_yaml_get(w, "eps_r") && mmd_yaml_get(w, "sigma_s_per_m") &&
                  mmd_yaml_get(w, "scattering") && mmd_yaml_get(w, "xpd"),
              "materials.yaml: floor and wall with eps_r, sigma_s_per_m, scattering, xpd");
        mmd_yaml_free(root);
    } else {
        CHECK(0, "materials.yaml parses: %s", mmd_last_error());
    }

    /* predict with the learned model: simulate's outputs + coverage */
    snprintf(cmd, sizeof cmd,
             "%s predict truth.yaml --model cal -o pred --set output.measurements=false --set coverage.cell_m=0.5 "
             "--set coverage.rays=20000",
             g_bin);
    rc = run(cmd, &out);
    CHECK(rc == 0 && strstr(out, "total [dB]"), "predict: rc %d: %.600s", rc, out);
    CHECK(exists("pred/spectra.npy") && exists("pred/result.json") && exists("pred/coverage/path_gain_db.npy") &&
              exists("pred/coverage/result.json"),
          "predict outputs written");
    res = slurp("pred/result.json");
    CHECK(json_ok(res) && strstr(res, "\"tool\": \"mmdiff predict\"") && strstr(res, "materials.yaml"),
          "predict result.json parses and names the model");
    free(res);
    snprintf(p, sizeof p, "%s/pred/spectra.npy", g_dir);
    mmd_array a;
    if (mmd_npy_read_f32(p, &a) == MMD_OK) {
        CHECK(a.ndim == 3 && a.shape[0] == 5 && a.shape[1] == 9 && a.shape[2] == 19, "predicted spectra shape");
        mmd_array_free(&a);
    } else {
        CHECK(0, "read predicted spectra: %s", mmd_last_error());
    }

    /* resume: an uninterrupted reference, then SIGTERM and SIGKILL mid-run + --resume */
    const char *sets = "--set train.epochs=40";
    snprintf(cmd, sizeof cmd, "%s calibrate cal.yaml %s -o ref", g_bin, sets);
    rc = run(cmd, &out);
    CHECK(rc == 0, "reference run: %.300s", out);
    rc = interrupt_run("term", sets, SIGTERM);
    CHECK(rc == 143 || rc == 0, "SIGTERM: exit code %d (143: interrupted cleanly)", rc);
    if (rc == 143) CHECK(!exists("term/result.json"), "an interrupted run has no result.json");
    rc = interrupt_run("kill", sets, SIGKILL);
    CHECK(rc == 137 || rc == 0, "SIGKILL: exit code %d", rc);
    for (int k = 0; k < 2; k++) {
        const char *dir = k ? "kill" : "term";
        snprintf(cmd, sizeof cmd, "%s calibrate cal.yaml %s -o %s --resume", g_bin, sets, dir);
        rc = run(cmd, &out);
        CHECK(rc == 0, "%s: resume: rc %d: %.300s", dir, rc, out);
        char m1[80], m2[80], r2[80];
        snprintf(m1, sizeof m1, "ref/model/materials.yaml");
        snprintf(m2, sizeof m2, "%s/model/materials.yaml", dir);
        snprintf(r2, sizeof r2, "%s/result.json", dir);
        char *a1 = materials(m1), *a2 = materials(m2);
        CHECK(a1 && a2 && !strcmp(a1, a2), "%s + --resume: the same learned materials as the uninterrupted run", dir);
        free(a1), free(a2);
        char *l1 = losses("ref/result.json"), *l2 = losses(r2);
        CHECK(l1 && l2 && l1[0] && !strcmp(l1, l2), "%s + --resume: the same loss history", dir);
    }

    /* bad inputs: clean failure, a message naming the problem, no result.json */
    expect_fail("no train.measurements", "calibrate cal.yaml --set train.measurements= -o bad1", "train.measurements",
                "bad1");
    expect_fail("missing measurement set", "calibrate cal.yaml --set train.measurements=nowhere -o bad2", "nowhere",
                "bad2");
    expect_fail("wrong frequency", "calibrate cal.yaml --set scene.frequency_hz=28e9 -o bad3", "frequency_hz", "bad3");
    expect_fail("wrong grid", "calibrate cal.yaml --set 'aoa.azimuth_deg=[-90, 90, 5]' -o bad4", "azimuth_deg",
                "bad4");
    expect_fail("calibrate_geometry of an unknown object",
                "calibrate cal.yaml --set 'calibrate_geometry={object: nosuch}' -o bad6", "nosuch", "bad6");
    expect_fail("calibrate_geometry with the neural model",
                "calibrate cal.yaml --set train.model=neural --set 'calibrate_geometry={object: floor}' -o bad7",
                "calibrate_geometry", "bad7");
    expect_fail("neural specular baseline",
                "calibrate cal.yaml --set train.model=neural --set solver.mode=specular -o bad5", "specular", "bad5");
    /* train.field_at: triangle and the specular baseline, end to end */
    snprintf(cmd, sizeof cmd,
             "%s calibrate cal.yaml --set train.model=neural --set train.field_at=triangle --set train.epochs=2 -o tri",
             g_bin);
    rc = run(cmd, &out);
    CHECK(rc == 0 && exists("tri/model/model.yaml") && exists("tri/result.json"),
          "neural calibrate with the field at triangles: rc %d: %.400s", rc, out);
    snprintf(cmd, sizeof cmd,
             "%s calibrate cal.yaml --set train.model=per_object --set solver.mode=specular --set train.epochs=3 -o spec",
             g_bin);
    rc = run(cmd, &out);
    CHECK(rc == 0 && exists("spec/model/materials.yaml") && exists("spec/result.json"),
          "calibrate the specular baseline: rc %d: %.400s", rc, out);
    /* the neural model end to end: calibrate, then predict spectra with it */
    snprintf(cmd, sizeof cmd, "%s calibrate cal.yaml --set train.model=neural --set train.epochs=3 -o neural", g_bin);
    rc = run(cmd, &out);
    CHECK(rc == 0 && exists("neural/model/model.yaml") && exists("neural/result.json"), "neural calibrate: rc %d: %.400s",
          rc, out);
    snprintf(cmd, sizeof cmd,
             "%s predict truth.yaml --model neural -o neural_pred --set output.measurements=false "
             "--set coverage.cell_m=0.5 --set coverage.rays=20000",
             g_bin);
    rc = run(cmd, &out);
    CHECK(rc == 0 && exists("neural_pred/spectra.npy") && exists("neural_pred/result.json") &&
              exists("neural_pred/coverage/path_gain_db.npy") && exists("neural_pred/coverage/result.json"),
          "predict spectra and coverage with the neural model: rc %d: %.400s", rc, out);
    expect_fail("neural coverage in specular mode",
                "predict truth.yaml --model neural --set solver.mode=specular --set coverage.cell_m=0.5 -o bad10",
                "solver.mode", "bad10");
    expect_fail("resume without a checkpoint", "calibrate cal.yaml --resume -o bad6", "no checkpoint", "bad6");
    /* a damaged checkpoint is refused on --resume */
    snprintf(cmd, sizeof cmd, "mkdir -p bad7 && head -c 100 cal/checkpoint.bin > bad7/checkpoint.bin");
    run(cmd, &out);
    expect_fail("truncated checkpoint", "calibrate cal.yaml --resume -o bad7", "truncated", "bad7");
    snprintf(cmd, sizeof cmd,
             "mkdir -p bad8 && cp cal/checkpoint.bin bad8/ && printf 'X' | dd of=bad8/checkpoint.bin bs=1 seek=200 "
             "conv=notrunc 2>/dev/null");
    run(cmd, &out);
    expect_fail("corrupted checkpoint", "calibrate cal.yaml --resume -o bad8", "corrupted", "bad8");
    /* a refused resume leaves the finished run's outputs alone */
    snprintf(cmd, sizeof cmd, "%s calibrate cal.yaml --resume --set train.seed=7", g_bin);
    rc = run(cmd, &out);
    CHECK(rc == 1 && strstr(out, "train.seed"), "resume with another seed refused: rc %d: %.300s", rc, out);
    CHECK(exists("cal/result.json") && exists("cal/model/materials.yaml"), "the refused resume kept cal/result.json");
    snprintf(cmd, sizeof cmd, "mkdir -p badset && cp truth/measurements/* badset/ && "
                              "sed -i 's/frequency_hz: .*/frequency_hz: abc/' badset/manifest.yaml");
    run(cmd, &out);
    expect_fail("malformed manifest", "calibrate cal.yaml --set train.measurements=badset -o bad9", "manifest.yaml",
                "bad9");

    snprintf(cmd, sizeof cmd, "%s predict truth.yaml", g_bin);
    CHECK(run(cmd, &out) == 2 && strstr(out, "--model"), "predict without --model: usage (%.200s)", out);
    expect_fail("predict from a directory without a model", "predict truth.yaml --model truth -o pbad1",
                "materials.yaml", "pbad1");
    snprintf(cmd, sizeof cmd, "mkdir -p m2 && sed 's/\"wall\"/\"door\"/' cal/model/materials.yaml > m2/materials.yaml");
    run(cmd, &out);
    expect_fail("predict with an unknown object", "predict truth.yaml --model m2 -o pbad2", "'door'", "pbad2");
    snprintf(cmd, sizeof cmd,
             "mkdir -p m3 && sed 's/eps_r: .*/eps_r: 0.5/' cal/model/materials.yaml > m3/materials.yaml");
    run(cmd, &out);
    expect_fail("predict with eps_r < 1", "predict truth.yaml --model m3 -o pbad3", "eps_r", "pbad3");

    test_geometry();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
    return TEST_DONE();
}
