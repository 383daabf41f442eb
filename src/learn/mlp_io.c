/*
 * Saving and loading the neural material field (mmd_mlp.h): model.yaml plus one float32
 * NPY per tensor and the two Adam moment arrays. Each file is written atomically and
 * model.yaml last, carrying an FNV-1a checksum over every tensor, the moments and the
 * step counter: a directory torn by a crash between two files is refused on load instead
 * of silently mixing two versions of the weights.
 */
#include "mmd_config.h"
#include "mmd_io.h"
#include "mmd_mlp.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define FORMAT_NAME "mmdiff-mlp"
#define FORMAT_VERSION 1

static uint64_t checksum(const float *p, const float *m1, const float *m2, size_t n, uint64_t step)
{
    uint64_t h = mmd_hash64(p, n * sizeof *p, MMD_FNV_SEED);
    h = mmd_hash64(m1, n * sizeof *m1, h);
    h = mmd_hash64(m2, n * sizeof *m2, h);
    unsigned char s[8];
    for (int i = 0; i < 8; i++) s[i] = (unsigned char)(step >> (8 * i));
    return mmd_hash64(s, sizeof s, h);
}

/* ---- save ------------------------------------------------------------------------------ */

typedef struct sbuf {
    char *s;
    size_t n, cap;
    int bad;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->bad) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->bad = 1;
            return;
        }
        if (b->s && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = (b->cap ? 2 * b->cap : 4096) + (size_t)k;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->bad = 1;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

mmd_status mmd_mlp_save(mmd_mlp *m, const char *dir)
{
    if (!m || !dir || !dir[0]) return mmd_error(MMD_ERR_INVALID, "MLP save: missing model or directory");
    const mmd_mlp_config *c = mmd_mlp_get_config(m);
    size_t n = mmd_mlp_n_params(m);
    float *p = mmd_malloc(3 * n, sizeof *p, "MLP save buffer");
    if (!p) return MMD_ERR_NOMEM;
    float *m1 = p + n, *m2 = p + 2 * n;
    uint64_t step = 0;
    mmd_status st = mmd_mlp_get_params(m, p);
    if (st == MMD_OK) st = mmd_mlp_get_adam(m, m1, m2, &step);
    if (st == MMD_OK) st = mmd_mkdirs(dir);
    int n_tensors = 2 * (c->n_hidden + 1);
    for (int t = 0; t < n_tensors && st == MMD_OK; t++) {
        size_t off;
        int rows, cols;
        char name[64], file[80];
        mmd_mlp_config_tensor(c, t, &off, &rows, &cols, name, sizeof name);
        snprintf(file, sizeof file, "%s.npy", name);
        char *path = mmd_path_join(dir, file, 0);
        if (!path) {
            st = mmd_error(MMD_ERR_NOMEM, "MLP save: out of memory");
            break;
        }
        size_t shape[2] = {(size_t)rows, (size_t)cols};
        st = t % 2 ? mmd_npy_write(path, MMD_DT_F32, shape + 1, 1, p + off)
                   : mmd_npy_write(path, MMD_DT_F32, shape, 2, p + off);
        free(path);
    }
    const char *mfiles[2] = {"adam_m.npy", "adam_v.npy"};
    for (int i = 0; i < 2 && st == MMD_OK; i++) {
        char *path = mmd_path_join(dir, mfiles[i], 0);
        if (!path) {
            st = mmd_error(MMD_ERR_NOMEM, "MLP save: out of memory");
            break;
        }
        st = mmd_npy_write(path, MMD_DT_F32, &n, 1, i ? m2 : m1);
        free(path);
    }
    if (st == MMD_OK) {
        sbuf b = {0};
        sb_printf(&b, "# mmdiff neural material field (SPEC 5; docs/mlp.md). Written by mmd_mlp_save; the NPY files\n"
                      "# next to this one hold the tensors (float32, weights [fan_in, fan_out]: y = x W + b).\n");
        sb_printf(&b, "format: %s\nversion: %d\n", FORMAT_NAME, FORMAT_VERSION);
        sb_printf(&b, "input:\n  normalisation: \"hit point mapped from the scene bounding box to [-1, 1]^3\"\n"
                      "  encoding: \"per coordinate [c, sin(2^0 pi c), cos(2^0 pi c), ..., sin(2^(L-1) pi c), "
                      "cos(2^(L-1) pi c)], coordinates x, y, z\"\n");
        sb_printf(&b, "  octaves: %d\n  features: %d\n", c->octaves, mmd_mlp_config_inputs(c));
        sb_printf(&b, "hidden: [");
        for (int i = 0; i < c->n_hidden; i++) sb_printf(&b, "%s%d", i ? ", " : "", c->hidden[i]);
        sb_printf(&b, "]\nactivation: relu\n");
        sb_printf(&b, "outputs: [eps_r, sigma_s_per_m, scattering, xpd]\n"
                      "output_mapping:\n"
                      "  eps_r: \"1 + exp(clip(o0, ln 1e-3, ln 199))\"\n"
                      "  sigma_s_per_m: \"exp(clip(o1, ln 1e-3, ln 1e6))\"\n"
                      "  scattering: \"clip(sigmoid(o2), 1e-3, 1 - 1e-3)\"\n"
                      "  xpd: \"clip(sigmoid(o3), 1e-3, 1 - 1e-3)\"\n");
        sb_printf(&b, "init: {seed: %" PRIu64 ", hidden: he_uniform, output: xavier_uniform}\n", c->seed);
        sb_printf(&b, "tensors:\n");
        for (int t = 0; t < n_tensors; t++) {
            int rows, cols;
            char name[64];
            mmd_mlp_config_tensor(c, t, NULL, &rows, &cols, name, sizeof name);
            if (t % 2)
                sb_printf(&b, "  - {name: %s, file: %s.npy, shape: [%d]}\n", name, name, cols);
            else
                sb_printf(&b, "  - {name: %s, file: %s.npy, shape: [%d, %d]}\n", name, name, rows, cols);
        }
        sb_printf(&b, "adam: {step: %" PRIu64 ", m: adam_m.npy, v: adam_v.npy}\n", step);
        sb_printf(&b, "checksum: \"fnv1a64:%016" PRIx64 "\"\n", checksum(p, m1, m2, n, step));
        char *path = mmd_path_join(dir, "model.yaml", 0);
        if (b.bad || !path)
            st = mmd_error(MMD_ERR_NOMEM, "MLP save: out of memory");
        else
            st = mmd_write_file_atomic(path, b.s, b.n);
        free(path);
        free(b.s);
    }
    free(p);
    return st;
}

/* ---- load ------------------------------------------------------------------------------ */

static mmd_status field_err(const char *path, const mmd_ynode *node, const char *field, const char *expected)
{
    char where[512];
    if (node)
        mmd_yaml_where(node, where, sizeof where);
    else
        snprintf(where, sizeof where, "%s", path);
    return mmd_error(MMD_ERR_PARSE, "%s: %s: expected %s", where, field, expected);
}

static const mmd_ynode *get_path(const mmd_ynode *root, const char *a, const char *b)
{
    const mmd_ynode *n = mmd_yaml_get(root, a);
    return b ? mmd_yaml_get(n, b) : n;
}

static int scalar_u64(const mmd_ynode *n, uint64_t *v)
{
    if (!n || n->kind != MMD_YAML_SCALAR || !n->text || n->quoted || !n->text[0]) return 0;
    if (n->text[0] == '-') return 0;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(n->text, &end, 10);
    if (errno || *end) return 0;
    *v = (uint64_t)x;
    return 1;
}

static int scalar_int(const mmd_ynode *n, int lo, int hi, int *v)
{
    uint64_t x;
    if (!scalar_u64(n, &x) || x < (uint64_t)lo || x > (uint64_t)hi) return 0;
    *v = (int)x;
    return 1;
}

static const char *scalar_text(const mmd_ynode *n)
{
    return n && n->kind == MMD_YAML_SCALAR && n->text ? n->text : NULL;
}

/* Read an NPY next to model.yaml into *out, checking its shape (on error *out is empty). */
static mmd_status read_tensor(const char *dir, const char *yaml_path, const mmd_ynode *file_node, const char *what,
                              const size_t *shape, int ndim, mmd_array *out)
{
    memset(out, 0, sizeof *out);
    const char *file = scalar_text(file_node);
    if (!file || !file[0] || strchr(file, '/'))
        return field_err(yaml_path, file_node, what, "a file name next to model.yaml");
    char *path = mmd_path_join(dir, file, 0);
    if (!path) return mmd_error(MMD_ERR_NOMEM, "MLP load: out of memory");
    mmd_array a;
    mmd_status st = mmd_npy_read_f32(path, &a);
    if (st == MMD_OK) {
        int ok = a.ndim == ndim;
        for (int i = 0; ok && i < ndim; i++) ok = a.shape[i] == shape[i];
        if (!ok) {
            char want[64];
            if (ndim == 2)
                snprintf(want, sizeof want, "[%zu, %zu]", shape[0], shape[1]);
            else
                snprintf(want, sizeof want, "[%zu]", shape[0]);
            st = mmd_error(MMD_ERR_INVALID, "%s: %s: expected shape %s as model.yaml describes (ndim %d, %zu values)",
                           path, what, want, a.ndim, a.count);
            mmd_array_free(&a);
        } else {
            *out = a;
        }
    }
    free(path);
    return st;
}

mmd_status mmd_mlp_load(mmd_cl *cl, const char *dir, mmd_mlp **out)
{
    *out = NULL;
    if (!dir || !dir[0]) return mmd_error(MMD_ERR_INVALID, "MLP load: missing directory");
    char *ypath = mmd_path_join(dir, "model.yaml", 0);
    if (!ypath) return mmd_error(MMD_ERR_NOMEM, "MLP load: out of memory");
    mmd_ynode *root = NULL;
    mmd_status st = mmd_yaml_load_file(ypath, &root);
    mmd_mlp_config c = mmd_mlp_defaults();
    float *buf = NULL;
    size_t n = 0;
    uint64_t step = 0;
    const mmd_ynode *fmt = NULL, *ver = NULL, *oct = NULL, *hid = NULL, *seed = NULL, *tens = NULL, *adam = NULL;
    if (st == MMD_OK && (!root || root->kind != MMD_YAML_MAP))
        st = field_err(ypath, root, "document", "a map (a model.yaml written by mmdiff)");
    if (st == MMD_OK) {
        fmt = mmd_yaml_get(root, "format");
        ver = mmd_yaml_get(root, "version");
        oct = get_path(root, "input", "octaves");
        hid = mmd_yaml_get(root, "hidden");
        seed = get_path(root, "init", "seed");
        tens = mmd_yaml_get(root, "tensors");
        adam = mmd_yaml_get(root, "adam");
        int v;
        if (!scalar_text(fmt) || strcmp(scalar_text(fmt), FORMAT_NAME))
            st = field_err(ypath, fmt ? fmt : root, "format", "'" FORMAT_NAME "'");
        else if (!scalar_int(ver, 1, 1000, &v) || v != FORMAT_VERSION)
            st = field_err(ypath, ver ? ver : root, "version", "1");
        else if (!scalar_int(oct, 0, MMD_MLP_MAX_OCTAVES, &c.octaves))
            st = field_err(ypath, oct ? oct : root, "input.octaves", "an integer in [0, 16]");
        else if (!hid || hid->kind != MMD_YAML_SEQ || hid->n > MMD_MLP_MAX_HIDDEN)
            st = field_err(ypath, hid ? hid : root, "hidden", "a list of at most 16 layer widths");
        else if (!scalar_u64(seed, &c.seed))
            st = field_err(ypath, seed ? seed : root, "init.seed", "a non-negative integer");
    }
    if (st == MMD_OK) {
        c.n_hidden = (int)hid->n;
        for (size_t i = 0; i < hid->n && st == MMD_OK; i++)
            if (!scalar_int(hid->items[i], 1, MMD_MLP_MAX_WIDTH, &c.hidden[i]))
                st = field_err(ypath, hid->items[i], "hidden", "layer widths in [1, 4096]");
    }
    int n_tensors = 2 * (c.n_hidden + 1);
    if (st == MMD_OK && (!tens || tens->kind != MMD_YAML_SEQ || tens->n != (size_t)n_tensors)) {
        char want[96];
        snprintf(want, sizeof want, "a list of %d tensors (weight and bias of each of %d layers)", n_tensors,
                 c.n_hidden + 1);
        st = field_err(ypath, tens ? tens : root, "tensors", want);
    }
    if (st == MMD_OK && !scalar_u64(mmd_yaml_get(adam, "step"), &step))
        st = field_err(ypath, adam ? adam : root, "adam.step", "a non-negative integer");
    /* The tensors are read (each NPY bounded by its file) before the parameter buffer is
     * allocated: model.yaml alone could claim 16 layers of 4096 (3 GB) in 100 bytes. */
    mmd_array arr[2 * (MMD_MLP_MAX_HIDDEN + 1) + 2];
    memset(arr, 0, sizeof arr);
    if (st == MMD_OK) n = mmd_mlp_config_params(&c);
    for (int t = 0; t < n_tensors && st == MMD_OK; t++) {
        const mmd_ynode *e = tens->items[t];
        size_t off;
        int rows, cols;
        char name[64];
        mmd_mlp_config_tensor(&c, t, &off, &rows, &cols, name, sizeof name);
        const char *nm = scalar_text(mmd_yaml_get(e, "name"));
        if (!nm || strcmp(nm, name)) {
            char want[96];
            snprintf(want, sizeof want, "tensor %d to be named '%s'", t, name);
            st = field_err(ypath, e, "tensors", want);
            break;
        }
        size_t shape[2] = {(size_t)rows, (size_t)cols};
        st = t % 2 ? read_tensor(dir, ypath, mmd_yaml_get(e, "file"), name, shape + 1, 1, &arr[t])
                   : read_tensor(dir, ypath, mmd_yaml_get(e, "file"), name, shape, 2, &arr[t]);
    }
    if (st == MMD_OK) st = read_tensor(dir, ypath, mmd_yaml_get(adam, "m"), "adam.m", &n, 1, &arr[n_tensors]);
    if (st == MMD_OK) st = read_tensor(dir, ypath, mmd_yaml_get(adam, "v"), "adam.v", &n, 1, &arr[n_tensors + 1]);
    if (st == MMD_OK) {
        buf = mmd_malloc(3 * n, sizeof *buf, "MLP load buffer");
        if (!buf) st = MMD_ERR_NOMEM;
    }
    for (int t = 0; t < n_tensors && st == MMD_OK; t++) {
        size_t off;
        int rows, cols;
        char name[64];
        mmd_mlp_config_tensor(&c, t, &off, &rows, &cols, name, sizeof name);
        memcpy(buf + off, arr[t].data, arr[t].count * sizeof *buf);
    }
    if (st == MMD_OK) {
        memcpy(buf + n, arr[n_tensors].data, n * sizeof *buf);
        memcpy(buf + 2 * n, arr[n_tensors + 1].data, n * sizeof *buf);
    }
    for (size_t i = 0; i < sizeof arr / sizeof arr[0]; i++) mmd_array_free(&arr[i]);
    if (st == MMD_OK) {
        const mmd_ynode *cs = mmd_yaml_get(root, "checksum");
        char want[40];
        snprintf(want, sizeof want, "fnv1a64:%016" PRIx64, checksum(buf, buf + n, buf + 2 * n, n, step));
        if (!scalar_text(cs))
            st = field_err(ypath, root, "checksum", "'fnv1a64:<16 hex digits>'");
        else if (strcmp(scalar_text(cs), want))
            st = mmd_error(MMD_ERR_INVALID,
                           "%s: the tensors next to it do not match its checksum (%s, computed %s): the directory "
                           "mixes files of different saves (interrupted save?)",
                           ypath, scalar_text(cs), want);
    }
    mmd_mlp *m = NULL;
    if (st == MMD_OK) st = mmd_mlp_create(cl, &c, &m);
    if (st == MMD_OK) st = mmd_mlp_set_params(m, buf);
    if (st == MMD_OK) st = mmd_mlp_set_adam(m, buf + n, buf + 2 * n, step);
    if (st == MMD_OK) {
        *out = m;
        m = NULL;
    }
    mmd_mlp_destroy(m);
    free(buf);
    mmd_yaml_free(root);
    free(ypath);
    return st;
}
