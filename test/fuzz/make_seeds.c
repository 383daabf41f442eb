/* Seeds for the fuzz harnesses that need files only the library's writers make well
 * (NPY, measurement sets, checkpoints, PLYs with per-face ids): make_seeds OUT writes
 * OUT/<harness>/<seed>. test/fuzz/seeds.sh adds copies of ../shared and the repository's
 * own files. Writing them with the current writers keeps the seeds in step with the
 * formats. */
#include "fuzz_common.h"
#include "mmd_io.h"
#include "mmd_mlp.h"
#include "mmd_scene.h"
#include "mmd_train.h"

static const char *g_out;

static void seed(const char *harness, const char *name, const void *data, size_t size)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", g_out, harness);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", g_out, harness, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* Append file `path` to the growable buffer *b (n bytes so far). */
static void append(char **b, size_t *n, const void *p, size_t k)
{
    *b = realloc(*b, *n + k + 1);
    if (!*b) exit(1);
    memcpy(*b + *n, p, k);
    *n += k;
}
static void append_file(char **b, size_t *n, const char *path)
{
    char *d = NULL;
    size_t k = 0;
    if (mmd_read_file(path, &d, &k) != MMD_OK) {
        fprintf(stderr, "make_seeds: %s\n", mmd_last_error());
        exit(1);
    }
    append(b, n, d, k);
    free(d);
}

static void check(mmd_status st)
{
    if (st != MMD_OK) {
        fprintf(stderr, "make_seeds: %s\n", mmd_last_error());
        exit(1);
    }
}

static void npy_seeds(void)
{
    float f[24];
    double d[24];
    for (int i = 0; i < 24; i++) f[i] = (float)i * 0.5f, d[i] = i * 0.25;
    size_t s1[1] = {24}, s3[3] = {2, 3, 4}, s0[1] = {0};
    const struct { const char *name; mmd_dtype dt; const size_t *shape; int nd; } v[] = {
        {"f32_1d.npy", MMD_DT_F32, s1, 1}, {"f32_3d.npy", MMD_DT_F32, s3, 3},
        {"f64_3d.npy", MMD_DT_F64, s3, 3}, {"f32_scalar.npy", MMD_DT_F32, s1, 0},
        {"f32_empty.npy", MMD_DT_F32, s0, 1}, {"i32.npy", MMD_DT_I32, s1, 1},
    };
    for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
        check(mmd_npy_write(fuzz_path("a.npy"), v[k].dt, v[k].shape, v[k].nd, v[k].dt == MMD_DT_F64 ? (void *)d : (void *)f));
        char *b = NULL;
        size_t n = 0;
        append_file(&b, &n, fuzz_path("a.npy"));
        seed("fuzz_npy", v[k].name, b, n);
        free(b);
    }
    /* big-endian float64 in a version 2.0 header, and fortran order (refused) */
    static const char be[] = "\x93NUMPY\x02\x00\x36\x00\x00\x00{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }\n"
                             "\x3f\xf0\x00\x00\x00\x00\x00\x00";
    seed("fuzz_npy", "f64_be_v2.npy", be, sizeof be - 1);
}

static void measurement_seeds(void)
{
    mmd_cfg_pose poses[2] = {{{1, 2, 1.5}, 90, 0, 0}, {{0.5, 1.5, 1.2}, 60, 10, 0}};
    float spec[2 * 3 * 4];
    for (int i = 0; i < 24; i++) spec[i] = (float)(i % 5) * 0.1f;
    mmd_measurements m = {0};
    m.n_poses = 2;
    m.poses = poses;
    m.n_el = 3;
    m.n_az = 4;
    m.spectra = spec;
    m.frequency_hz = 60e9;
    m.azimuth_deg = (mmd_cfg_grid){-90, 90, 60, 4};
    m.elevation_deg = (mmd_cfg_grid){-45, 45, 45, 3};
    for (int with_array = 0; with_array < 2; with_array++) {
        m.has_array = with_array;
        m.array_rows = m.array_cols = 8;
        m.array_spacing_wavelengths = 0.5;
        snprintf(m.array_window, sizeof m.array_window, "hann");
        snprintf(m.array_element, sizeof m.array_element, "patch");
        check(mmd_measurements_write(fuzz_path("ms"), &m, NULL, NULL, 0, "seed"));
        char *b = NULL;
        size_t n = 0;
        append_file(&b, &n, fuzz_path("ms/manifest.yaml"));
        append(&b, &n, FUZZ_SEP, sizeof FUZZ_SEP - 1);
        append_file(&b, &n, fuzz_path("ms/poses.csv"));
        append(&b, &n, FUZZ_SEP, sizeof FUZZ_SEP - 1);
        append_file(&b, &n, fuzz_path("ms/spectra.npy"));
        seed("fuzz_measurements", with_array ? "set_array" : "set", b, n);
        if (!with_array) {
            /* the CSV alone is a pose-CSV seed, the manifest a YAML one */
            char *c = NULL;
            size_t cn = 0;
            append_file(&c, &cn, fuzz_path("ms/poses.csv"));
            seed("fuzz_poses_csv", "measurements_poses.csv", c, cn);
            free(c);
            c = NULL, cn = 0;
            append_file(&c, &cn, fuzz_path("ms/manifest.yaml"));
            seed("fuzz_yaml_tree", "manifest.yaml", c, cn);
            free(c);
        }
        free(b);
    }
    /* per-pose spectra (p0.npy / p1.npy exist in the harness's directory), in dB */
    static const char per_pose[] =
        "format: mmdiff-measurements-1\nfrequency_hz: 60e9\nunits: db\nposes: poses.csv\n"
        "spectra: [p0.npy, p1.npy]\nazimuth_deg: [0, 2, 1]\nelevation_deg: [0, 1, 1]\n"
        "array: {rows: 4, cols: 4, spacing_wavelengths: 0.5, window: none, element: iso}\n" FUZZ_SEP
        "x_m,y_m,z_m,yaw_deg\n1,2,3,0\n4,5,6,90\n";
    seed("fuzz_measurements", "per_pose", per_pose, sizeof per_pose - 1);
}

static void checkpoint_seeds(void)
{
    uint64_t tr[3] = {0, 2, 3}, va[1] = {1}, perm[3] = {3, 0, 2};
    float p[5] = {0.1f, -0.2f, 0.3f, 0.4f, 0.5f};
    mmd_train_epoch h[2] = {{1.5, 1.7, 0.1}, {1.2, 1.4, 0.1}};
    mmd_train_checkpoint c = {0};
    c.n_params = 5;
    c.n_poses = 4;
    c.data_hash = 0x1234;
    c.seed = 7;
    c.lr = 0.01;
    c.epoch = 2;
    c.batch_pos = 1;
    c.epoch_loss_sum = 0.5;
    c.epoch_loss_count = 2;
    c.steps = 5;
    c.opt_step = 5;
    c.best_loss = 1.4;
    c.best_epoch = 2;
    c.monitor_is_val = 1;
    c.batch_poses = 2;
    c.rng_state = 99;
    c.rng_inc = 3;
    c.n_train = 3;
    c.n_val = 1;
    c.train_ids = tr;
    c.val_ids = va;
    c.perm = perm;
    c.n_history = 2;
    c.history = h;
    c.params = c.opt_m = c.opt_v = c.best_params = p;
    check(mmd_train_checkpoint_write(fuzz_path("ck.bin"), &c));
    char *b = NULL;
    size_t n = 0;
    append_file(&b, &n, fuzz_path("ck.bin"));
    seed("fuzz_checkpoint", "two_epochs.ckpt", b, n);
    free(b);
}

static void ply_seeds(void)
{
    /* a two-object, two-material scene, written back as one binary PLY with per-face
     * object_id / material_index (mmd_scene_write_ply) and as a scene YAML with named
     * entries and explicit materials (mmd_scene_write) */
    fuzz_write("a.ply", fuzz_default_ply, sizeof fuzz_default_ply - 1);
    fuzz_write("b.ply", fuzz_default_ply, sizeof fuzz_default_ply - 1);
    static const char yaml[] =
        "shapes:\n  - {file: a.ply, material: concrete}\n  - {file: b.ply, material: null}\n"
        "  - {file: a.ply, name: custom, material: {name: m1, eps_r: 3.5, sigma_s_per_m: 0.1, thickness_m: 0.2}}\n";
    const char *yp = fuzz_write("two.yaml", yaml, sizeof yaml - 1);
    mmd_scene *s = NULL;
    check(mmd_scene_load(yp, &s));
    check(mmd_scene_write_ply(s, fuzz_path("ids.ply")));
    check(mmd_scene_write(s, fuzz_path("out/room.yaml")));
    mmd_scene_destroy(s);
    char *b = NULL;
    size_t n = 0;
    append_file(&b, &n, fuzz_path("ids.ply"));
    seed("fuzz_ply", "object_material_ids.ply", b, n);
    free(b);
    b = NULL, n = 0;
    append_file(&b, &n, fuzz_path("out/room.yaml"));
    seed("fuzz_yaml_tree", "scene_write.yaml", b, n);
    free(b);
    /* the same entries naming the harness's mesh.ply, which is the PLY just written */
    static const char yaml_mesh[] =
        "shapes:\n  - {file: mesh.ply, material: concrete}\n  - {file: meshes/mesh.ply, material: null}\n"
        "  - {file: mesh.ply, name: custom, material: {name: m1, eps_r: 3.5, sigma_s_per_m: 0.1, thickness_m: 0.2}}\n";
    b = NULL, n = 0;
    append(&b, &n, yaml_mesh, sizeof yaml_mesh - 1);
    append(&b, &n, FUZZ_SEP, sizeof FUZZ_SEP - 1);
    append_file(&b, &n, fuzz_path("ids.ply"));
    seed("fuzz_scene_yaml", "named_entries", b, n);
    free(b);
    /* big-endian binary with a double and a skipped list */
    static const char be[] = "ply\nformat binary_big_endian 1.0\ncomment seed\nelement vertex 3\nproperty double x\n"
                             "property float y\nproperty float z\nelement face 1\nproperty list uchar uint vertex_indices\n"
                             "property list uchar float extra\nelement edge 0\nproperty int a\nend_header\n"
                             "\0\0\0\0\0\0\0\0" "\0\0\0\0" "\0\0\0\0"
                             "\x3f\xf0\0\0\0\0\0\0" "\0\0\0\0" "\0\0\0\0"
                             "\0\0\0\0\0\0\0\0" "\x3f\x80\0\0" "\0\0\0\0"
                             "\x03" "\0\0\0\0" "\0\0\0\x01" "\0\0\0\x02" "\x01" "\0\0\0\0";
    seed("fuzz_ply", "big_endian.ply", be, sizeof be - 1);
    seed("fuzz_ply", "ascii.ply", fuzz_default_ply, sizeof fuzz_default_ply - 1);
}

/* model.yaml of the network fuzz_mlp_model keeps next to it (octaves 0, hidden [2],
 * parameter i = 0.125 i, Adam moments the same), with its true checksum */
static void mlp_seeds(void)
{
    mmd_mlp_config c = mmd_mlp_defaults();
    c.octaves = 0;
    c.n_hidden = 1;
    c.hidden[0] = 2;
    size_t n = mmd_mlp_config_params(&c);
    float v[64];
    for (size_t i = 0; i < n; i++) v[i] = 0.125f * (float)i;
    uint64_t step = 3, h = mmd_hash64(v, n * sizeof *v, MMD_FNV_SEED);
    h = mmd_hash64(v, n * sizeof *v, h);
    h = mmd_hash64(v, n * sizeof *v, h);
    unsigned char sb[8];
    for (int i = 0; i < 8; i++) sb[i] = (unsigned char)(step >> (8 * i));
    h = mmd_hash64(sb, sizeof sb, h);
    char y[2048];
    size_t k = (size_t)snprintf(y, sizeof y, "format: mmdiff-mlp\nversion: 1\ninput:\n  octaves: 0\n  features: %d\n"
                                "hidden: [2]\nactivation: relu\ninit: {seed: 1}\ntensors:\n",
                                mmd_mlp_config_inputs(&c));
    for (int t = 0; t < 4; t++) {
        size_t off;
        int rows, cols;
        char name[64];
        mmd_mlp_config_tensor(&c, t, &off, &rows, &cols, name, sizeof name);
        k += (size_t)snprintf(y + k, sizeof y - k, "  - {name: %s, file: %s.npy, shape: [%d, %d]}\n", name, name, rows, cols);
    }
    k += (size_t)snprintf(y + k, sizeof y - k, "adam: {step: %llu, m: adam_m.npy, v: adam_v.npy}\nchecksum: \"fnv1a64:%016llx\"\n",
                          (unsigned long long)step, (unsigned long long)h);
    seed("fuzz_mlp_model", "model.yaml", y, k);
    seed("fuzz_yaml_tree", "mlp_model.yaml", y, k);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds OUT_DIR\n");
        return 2;
    }
    g_out = argv[1];
    mkdir(g_out, 0755);
    npy_seeds();
    measurement_seeds();
    checkpoint_seeds();
    ply_seeds();
    mlp_seeds();
    return 0;
}
