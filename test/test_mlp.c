/* Neural material field (mmd_mlp.h): the CLBlast MLP against the plain-C double
 * reference (forward and every gradient tensor, NMSE < 1e-8, several shapes and row
 * counts), gradients against central differences of the double loss, the SPEC 5 output
 * mapping incl. its clipped regions, Adam against a hand-written double Adam, save/load
 * round trip, determinism, inference in blocks, and errors. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mmd_io.h"
#include "mmd_mlp.h"
#include "mmd_test.h"

static mmd_cl *g_cl;

static double nmse_fd(const float *a, const double *b, size_t n, size_t stride)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i * stride] - b[i * stride];
        num += d * d;
        den += b[i * stride] * b[i * stride];
    }
    return den > 0.0 ? num / den : num;
}

static cl_mem upload(const float *h, size_t n)
{
    cl_mem b = NULL;
    if (mmd_cl_buffer(g_cl, CL_MEM_READ_WRITE, n * sizeof(float), h, "test buffer", &b) != MMD_OK) return NULL;
    return b;
}

static int download(cl_mem b, float *h, size_t n)
{
    return clEnqueueReadBuffer(g_cl->queue, b, CL_TRUE, 0, n * sizeof(float), h, 0, NULL, NULL) == CL_SUCCESS;
}

static void random_pos(mmd_rng *r, float *pos, size_t n)
{
    for (size_t i = 0; i < 3 * n; i++) pos[i] = (float)(2.0 * mmd_rng_uniform(r) - 1.0);
}

/* Random parameters of moderate size: the default init plus random biases, so that
 * every bias matters and ReLUs are neither all on nor all off. */
static void random_params(mmd_rng *r, mmd_mlp *m, float *p)
{
    const mmd_mlp_config *c = mmd_mlp_get_config(m);
    mmd_mlp_get_params(m, p);
    for (int t = 1; t < 2 * (c->n_hidden + 1); t += 2) {
        size_t off;
        int rows, cols;
        mmd_mlp_config_tensor(c, t, &off, &rows, &cols, NULL, 0);
        for (int j = 0; j < cols; j++) p[off + j] = (float)(0.4 * (mmd_rng_uniform(r) - 0.5));
    }
}

/* Forward + backward on the device and on the reference for one shape and row count. */
static void check_shape(const char *label, int n_hidden, int width, int octaves, size_t n, uint64_t seed)
{
    mmd_mlp_config c = mmd_mlp_defaults();
    c.n_hidden = n_hidden;
    c.octaves = octaves;
    for (int i = 0; i < n_hidden; i++) c.hidden[i] = width;
    c.seed = seed;
    mmd_mlp *m = NULL;
    mmd_status st = mmd_mlp_create(g_cl, &c, &m);
    CHECK(st == MMD_OK, "%s: create: %s", label, mmd_last_error());
    if (st != MMD_OK) return;
    mmd_rng r;
    mmd_rng_seed(&r, seed, 99);
    size_t np = mmd_mlp_n_params(m);
    float *p = malloc(np * sizeof *p), *g = malloc(np * sizeof *g);
    float *pos = malloc(3 * n * sizeof *pos), *dout = malloc(4 * n * sizeof *dout), *out = malloc(4 * n * sizeof *out);
    double *pd = malloc(np * sizeof *pd), *gd = calloc(np, sizeof *gd), *outd = malloc(4 * n * sizeof *outd);
    double *doutd = malloc(4 * n * sizeof *doutd);
    random_params(&r, m, p);
    CHECK(mmd_mlp_set_params(m, p) == MMD_OK, "%s: set_params: %s", label, mmd_last_error());
    for (size_t i = 0; i < np; i++) pd[i] = p[i];
    random_pos(&r, pos, n);
    /* dL/dparams scaled to each parameter's range so that no output dominates the check */
    const double scale[4] = {0.1, 1.0, 1.0, 1.0};
    for (size_t i = 0; i < 4 * n; i++) {
        dout[i] = (float)((2.0 * mmd_rng_uniform(&r) - 1.0) * scale[i % 4]);
        doutd[i] = dout[i];
    }
    cl_mem bpos = upload(pos, 3 * n), bout = upload(NULL, 4 * n), bd = upload(dout, 4 * n);
    st = mmd_mlp_forward(m, bpos, n, bout);
    if (st == MMD_OK) st = mmd_mlp_zero_grad(m);
    if (st == MMD_OK) st = mmd_mlp_backward(m, bd, n);
    CHECK(st == MMD_OK, "%s: forward/backward: %s", label, mmd_last_error());
    CHECK(download(bout, out, 4 * n), "%s: read outputs", label);
    CHECK(mmd_mlp_get_grads(m, g) == MMD_OK, "%s: get_grads", label);
    mmd_mlp_ref_forward(&c, pd, pos, n, outd);
    mmd_mlp_ref_backward(&c, pd, pos, n, doutd, gd);
    for (int j = 0; j < 4; j++) {
        double e = nmse_fd(out + j, outd + j, n, 4);
        CHECK(e < 1e-8, "%s: forward output %d NMSE %.3g", label, j, e);
    }
    double worst = 0.0;
    for (int t = 0; t < 2 * (n_hidden + 1); t++) {
        size_t off;
        int rows, cols;
        char name[64];
        mmd_mlp_config_tensor(&c, t, &off, &rows, &cols, name, sizeof name);
        double e = nmse_fd(g + off, gd + off, (size_t)rows * cols, 1);
        if (e > worst) worst = e;
        CHECK(e < 1e-8, "%s: gradient %s NMSE %.3g", label, name, e);
    }
    printf("  %-28s rows %6zu: worst gradient NMSE %.2e\n", label, n, worst);
    clReleaseMemObject(bpos);
    clReleaseMemObject(bout);
    clReleaseMemObject(bd);
    free(p), free(g), free(pos), free(dout), free(out), free(pd), free(gd), free(outd), free(doutd);
    mmd_mlp_destroy(m);
}

/* L(theta) = sum_r sum_j dout[r][j] * param_j(row r) in double */
static double ref_loss(const mmd_mlp_config *c, const double *p, const float *pos, size_t n, const double *dout,
                       double *scratch)
{
    mmd_mlp_ref_forward(c, p, pos, n, scratch);
    double L = 0.0;
    for (size_t i = 0; i < 4 * n; i++) L += dout[i] * scratch[i];
    return L;
}

static void check_finite_differences(void)
{
    mmd_mlp_config c = mmd_mlp_defaults(); /* 6 octaves, 4 x 64 */
    c.seed = 11;
    size_t n = 48;
    mmd_mlp *m = NULL;
    mmd_status st = mmd_mlp_create(g_cl, &c, &m);
    CHECK(st == MMD_OK, "FD: create: %s", mmd_last_error());
    if (st != MMD_OK) return;
    mmd_rng r;
    mmd_rng_seed(&r, 5, 5);
    size_t np = mmd_mlp_n_params(m);
    float *p = malloc(np * sizeof *p), *g = malloc(np * sizeof *g), *pos = malloc(3 * n * sizeof *pos);
    float *dout = malloc(4 * n * sizeof *dout);
    double *pd = malloc(np * sizeof *pd), *gd = calloc(np, sizeof *gd), *doutd = malloc(4 * n * sizeof *doutd);
    double *scratch = malloc(4 * n * sizeof *scratch);
    random_params(&r, m, p);
    mmd_mlp_set_params(m, p);
    for (size_t i = 0; i < np; i++) pd[i] = p[i];
    random_pos(&r, pos, n);
    for (size_t i = 0; i < 4 * n; i++) {
        dout[i] = (float)((2.0 * mmd_rng_uniform(&r) - 1.0) * (i % 4 == 0 ? 0.1 : 1.0));
        doutd[i] = dout[i];
    }
    cl_mem bpos = upload(pos, 3 * n), bout = upload(NULL, 4 * n), bd = upload(dout, 4 * n);
    st = mmd_mlp_forward(m, bpos, n, bout);
    if (st == MMD_OK) st = mmd_mlp_zero_grad(m);
    if (st == MMD_OK) st = mmd_mlp_backward(m, bd, n);
    if (st == MMD_OK) st = mmd_mlp_get_grads(m, g);
    CHECK(st == MMD_OK, "FD: device gradient: %s", mmd_last_error());
    mmd_mlp_ref_backward(&c, pd, pos, n, doutd, gd);
    int n_checked = 0, n_tiny = 0;
    for (int t = 0; t < 2 * (c.n_hidden + 1); t++) {
        size_t off;
        int rows, cols;
        char name[64];
        mmd_mlp_config_tensor(&c, t, &off, &rows, &cols, name, sizeof name);
        size_t cnt = (size_t)rows * cols;
        double gmax = 0.0;
        for (size_t i = 0; i < cnt; i++) gmax = fmax(gmax, fabs(gd[off + i]));
        for (int s = 0; s < 8; s++) {
            size_t i = off + (size_t)(mmd_rng_uniform(&r) * cnt);
            double h = 1e-6 * fmax(1.0, fabs(pd[i])), keep = pd[i];
            pd[i] = keep + h;
            double lp = ref_loss(&c, pd, pos, n, doutd, scratch);
            pd[i] = keep - h;
            double lm = ref_loss(&c, pd, pos, n, doutd, scratch);
            pd[i] = keep;
            double fd = (lp - lm) / (2.0 * h);
            if (fmax(fabs(fd), fabs(gd[i])) < 1e-4 * gmax || fabs(fd) < 1e-9) {
                /* tiny (a unit that is off for every row, say): absolute agreement only */
                n_tiny++;
                CHECK(fabs(fd - g[i]) < 1e-5 * fmax(gmax, 1e-9) + 1e-9, "FD %s[%zu]: tiny %g vs device %g", name,
                      i - off, fd, (double)g[i]);
                continue;
            }
            n_checked++;
            double rel_dev = fabs(g[i] - fd) / fabs(fd), rel_ref = fabs(gd[i] - fd) / fabs(fd);
            CHECK(rel_dev < 1e-3, "FD %s[%zu]: device %.9g vs central difference %.9g (rel %.2e)", name, i - off,
                  (double)g[i], fd, rel_dev);
            CHECK(rel_ref < 1e-5, "FD %s[%zu]: reference %.12g vs central difference %.12g (rel %.2e)", name, i - off,
                  gd[i], fd, rel_ref);
        }
    }
    printf("  finite differences: %d entries checked, %d tiny\n", n_checked, n_tiny);
    CHECK(n_checked >= 60, "FD: only %d entries were large enough to check", n_checked);
    clReleaseMemObject(bpos);
    clReleaseMemObject(bout);
    clReleaseMemObject(bd);
    free(p), free(g), free(pos), free(dout), free(pd), free(gd), free(doutd), free(scratch);
    mmd_mlp_destroy(m);
}

/* The SPEC 5 mapping: reference values at known points (incl. both clipped sides), then
 * the device against the reference over raw outputs in [-20, 20] through a linear net
 * o_j = 20 * coordinate (no hidden layer, no encoding octaves). */
static void check_mapping(void)
{
    const double o_in[4] = {0.0, 0.0, 0.0, 0.0};
    double v[4], d[4];
    mmd_mlp_ref_map(o_in, v, d);
    CHECK_NEAR(v[0], 2.0, 1e-15, "eps_r at o = 0");
    CHECK_NEAR(v[1], 1.0, 1e-15, "sigma at o = 0");
    CHECK_NEAR(v[2], 0.5, 1e-15, "S at o = 0");
    CHECK_NEAR(d[0], 1.0, 1e-15, "d eps_r at 0");
    CHECK_NEAR(d[2], 0.25, 1e-15, "d S at 0");
    const double lo[4] = {-10.0, -10.0, -10.0, -10.0}, hi[4] = {10.0, 20.0, 10.0, 10.0};
    mmd_mlp_ref_map(lo, v, d);
    CHECK_NEAR(v[0], 1.0 + 1e-3, 1e-9, "eps_r clipped low");
    CHECK_NEAR(v[1], 1e-3, 1e-9, "sigma clipped low");
    CHECK(v[2] == 1e-3 && v[3] == 1e-3, "S, K_x clipped low: %g %g", v[2], v[3]);
    CHECK(d[0] == 0 && d[1] == 0 && d[2] == 0 && d[3] == 0, "no gradient where clipped low");
    mmd_mlp_ref_map(hi, v, d);
    CHECK_NEAR(v[0], 200.0, 1e-4, "eps_r clipped high");
    CHECK_NEAR(v[1], 1e6, 1.0, "sigma clipped high");
    CHECK(v[2] == 1.0 - 1e-3 && v[3] == 1.0 - 1e-3, "S, K_x clipped high");
    CHECK(d[0] == 0 && d[1] == 0 && d[2] == 0 && d[3] == 0, "no gradient where clipped high");
    /* central differences of the mapping inside the ranges */
    const double mid[4] = {1.3, -2.0, 0.7, -4.0};
    mmd_mlp_ref_map(mid, v, d);
    for (int j = 0; j < 4; j++) {
        double a[4], b[4], vp[4], vm[4], dd[4];
        memcpy(a, mid, sizeof a);
        memcpy(b, mid, sizeof b);
        a[j] += 1e-6;
        b[j] -= 1e-6;
        mmd_mlp_ref_map(a, vp, dd);
        mmd_mlp_ref_map(b, vm, dd);
        double fd = (vp[j] - vm[j]) / 2e-6;
        CHECK(fabs(fd - d[j]) < 1e-6 * fabs(fd), "mapping %d derivative %g vs difference %g", j, d[j], fd);
    }

    mmd_mlp_config c = mmd_mlp_defaults();
    c.octaves = 0;
    c.n_hidden = 0;
    mmd_mlp *m = NULL;
    mmd_status st = mmd_mlp_create(g_cl, &c, &m);
    CHECK(st == MMD_OK && mmd_mlp_n_params(m) == 16, "linear net: %s", mmd_last_error());
    if (st != MMD_OK) return;
    float p[16] = {0};
    p[0 * 4 + 0] = 20.0f; /* o0 = 20 x */
    p[1 * 4 + 1] = 20.0f; /* o1 = 20 y */
    p[2 * 4 + 2] = 20.0f; /* o2 = 20 z */
    p[0 * 4 + 3] = -20.0f; /* o3 = -20 x */
    p[12 + 1] = 3.0f;     /* sigma's bias: reach ln 1e6 from y = 0.55 on */
    mmd_mlp_set_params(m, p);
    size_t n = 1001;
    float pos[3 * 1001], out[4 * 1001], dout[4 * 1001], g[16];
    double outd[4 * 1001], doutd[4 * 1001], pd[16], gd[16] = {0};
    for (size_t i = 0; i < n; i++) {
        double t = -1.0 + 2.0 * (double)i / (double)(n - 1);
        pos[3 * i] = (float)t;
        pos[3 * i + 1] = (float)(-t);
        pos[3 * i + 2] = (float)(0.5 * t);
    }
    for (size_t i = 0; i < 4 * n; i++) {
        dout[i] = 1.0f;
        doutd[i] = 1.0;
    }
    for (int i = 0; i < 16; i++) pd[i] = p[i];
    cl_mem bpos = upload(pos, 3 * n), bout = upload(NULL, 4 * n), bd = upload(dout, 4 * n);
    st = mmd_mlp_forward(m, bpos, n, bout);
    if (st == MMD_OK) st = mmd_mlp_zero_grad(m);
    if (st == MMD_OK) st = mmd_mlp_backward(m, bd, n);
    CHECK(st == MMD_OK && download(bout, out, 4 * n) && mmd_mlp_get_grads(m, g) == MMD_OK, "linear net run: %s",
          mmd_last_error());
    mmd_mlp_ref_forward(&c, pd, pos, n, outd);
    mmd_mlp_ref_backward(&c, pd, pos, n, doutd, gd);
    int n_low = 0, n_high = 0, bad = 0;
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < 4; j++) {
            double a = out[4 * i + j], b = outd[4 * i + j];
            if (fabs(a - b) > 2e-6 * fabs(b)) bad++;
            if (j == 2 && b == 1e-3) n_low++;
            if (j == 2 && b == 1.0 - 1e-3) n_high++;
        }
    CHECK(bad == 0, "device mapping differs from the reference in %d values", bad);
    CHECK(n_low > 100 && n_high > 100, "both clipped regions exercised (%d low, %d high)", n_low, n_high);
    CHECK(fabs(outd[4 * (n - 1) + 1] - 1e-3) < 1e-9 && fabs(outd[1] - 1e6) < 1.0, "sigma clipped at both ends: %g %g",
          outd[4 * (n - 1) + 1], outd[1]);
    for (int i = 0; i < 16; i++)
        CHECK(fabs(g[i] - gd[i]) <= 1e-5 * fabs(gd[i]) + 1e-6, "linear net gradient %d: %g vs %g", i, g[i], gd[i]);
    clReleaseMemObject(bpos);
    clReleaseMemObject(bout);
    clReleaseMemObject(bd);
    mmd_mlp_destroy(m);
}

/* Adam against a hand-written double Adam over a few steps on a fixed gradient. */
static void check_adam(const char *dir)
{
    mmd_mlp_config c = mmd_mlp_defaults();
    c.n_hidden = 2;
    c.hidden[0] = 24;
    c.hidden[1] = 40;
    c.octaves = 3;
    c.seed = 3;
    mmd_mlp *m = NULL;
    mmd_status st = mmd_mlp_create(g_cl, &c, &m);
    CHECK(st == MMD_OK, "adam: create: %s", mmd_last_error());
    if (st != MMD_OK) return;
    size_t np = mmd_mlp_n_params(m), n = 300;
    float *p = malloc(np * sizeof *p), *g = malloc(np * sizeof *g), *q = malloc(np * sizeof *q);
    float *m1 = malloc(np * sizeof *m1), *m2 = malloc(np * sizeof *m2);
    double *w = malloc(np * sizeof *w), *a = calloc(np, sizeof *a), *b = calloc(np, sizeof *b);
    float pos[3 * 300], dout[4 * 300];
    mmd_rng r;
    mmd_rng_seed(&r, 8, 8);
    random_pos(&r, pos, n);
    for (size_t i = 0; i < 4 * n; i++) dout[i] = (float)(mmd_rng_uniform(&r) - 0.5);
    cl_mem bpos = upload(pos, 3 * n), bout = upload(NULL, 4 * n), bd = upload(dout, 4 * n);
    mmd_mlp_get_params(m, p);
    st = mmd_mlp_forward(m, bpos, n, bout);
    if (st == MMD_OK) st = mmd_mlp_zero_grad(m);
    if (st == MMD_OK) st = mmd_mlp_backward(m, bd, n);
    if (st == MMD_OK) st = mmd_mlp_get_grads(m, g);
    CHECK(st == MMD_OK, "adam: gradient: %s", mmd_last_error());
    for (size_t i = 0; i < np; i++) w[i] = p[i];
    const double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8;
    double worst = 0.0;
    for (int t = 1; t <= 4; t++) {
        st = mmd_mlp_adam(m, (float)lr, (float)b1, (float)b2, (float)eps);
        CHECK(st == MMD_OK, "adam step %d: %s", t, mmd_last_error());
        for (size_t i = 0; i < np; i++) {
            a[i] = b1 * a[i] + (1.0 - b1) * g[i];
            b[i] = b2 * b[i] + (1.0 - b2) * (double)g[i] * g[i];
            double mh = a[i] / (1.0 - pow(b1, t)), vh = b[i] / (1.0 - pow(b2, t));
            w[i] -= lr * mh / (sqrt(vh) + eps);
        }
        mmd_mlp_get_params(m, q);
        for (size_t i = 0; i < np; i++) {
            double e = fabs(q[i] - w[i]) / (lr * t); /* relative to the distance travelled */
            if (e > worst) worst = e;
        }
    }
    CHECK(worst < 1e-4, "adam: device weights differ from double Adam by %.3g (x lr t)", worst);
    uint64_t step = 0;
    CHECK(mmd_mlp_get_adam(m, m1, m2, &step) == MMD_OK && step == 4, "adam: step counter %llu",
          (unsigned long long)step);
    double em = 0.0;
    for (size_t i = 0; i < np; i++) em = fmax(em, fabs(m1[i] - a[i]) / (fabs(a[i]) + 1e-12));
    CHECK(em < 1e-5, "adam: first moments relative error %.3g", em);
    /* the first step moves every weight with a non-zero gradient by ~lr (Adam's sign step) */
    CHECK(mmd_mlp_adam(m, 1e-3f, 0.9f, 0.999f, 0.0f) == MMD_ERR_INVALID && strstr(mmd_last_error(), "eps"),
          "adam rejects eps = 0: %s", mmd_last_error());
    CHECK(mmd_mlp_adam(m, -1.0f, 0.9f, 0.999f, 1e-8f) == MMD_ERR_INVALID, "adam rejects lr < 0");

    /* save / load: bit-exact weights, moments, step, and the same forward bits */
    st = mmd_mlp_save(m, dir);
    CHECK(st == MMD_OK, "save: %s", mmd_last_error());
    mmd_mlp *m2l = NULL;
    st = mmd_mlp_load(g_cl, dir, &m2l);
    CHECK(st == MMD_OK, "load: %s", mmd_last_error());
    if (st == MMD_OK) {
        float *p2 = malloc(np * sizeof *p2), *a2 = malloc(np * sizeof *a2), *v2 = malloc(np * sizeof *v2);
        uint64_t s2 = 0;
        mmd_mlp_get_params(m, p);
        mmd_mlp_get_params(m2l, p2);
        mmd_mlp_get_adam(m2l, a2, v2, &s2);
        CHECK(mmd_mlp_n_params(m2l) == np && !memcmp(p, p2, np * sizeof *p), "load: weights bit-exact");
        CHECK(!memcmp(m1, a2, np * sizeof *a2) && !memcmp(m2, v2, np * sizeof *v2) && s2 == 4,
              "load: Adam state bit-exact");
        const mmd_mlp_config *lc = mmd_mlp_get_config(m2l);
        CHECK(lc->n_hidden == 2 && lc->hidden[0] == 24 && lc->hidden[1] == 40 && lc->octaves == 3 && lc->seed == 3,
              "load: architecture");
        float o1[4 * 300], o2[4 * 300];
        cl_mem bo2 = upload(NULL, 4 * n);
        mmd_mlp_forward(m, bpos, n, bout);
        mmd_mlp_forward(m2l, bpos, n, bo2);
        CHECK(download(bout, o1, 4 * n) && download(bo2, o2, 4 * n) && !memcmp(o1, o2, sizeof o1),
              "load: the same forward bits");
        /* one more step each: resumed training continues identically */
        mmd_mlp_zero_grad(m), mmd_mlp_zero_grad(m2l);
        mmd_mlp_backward(m, bd, n), mmd_mlp_backward(m2l, bd, n);
        mmd_mlp_adam(m, 1e-2f, 0.9f, 0.999f, 1e-8f), mmd_mlp_adam(m2l, 1e-2f, 0.9f, 0.999f, 1e-8f);
        mmd_mlp_get_params(m, p);
        mmd_mlp_get_params(m2l, p2);
        CHECK(!memcmp(p, p2, np * sizeof *p), "resume: the next Adam step is bit-identical");
        clReleaseMemObject(bo2);
        free(p2), free(a2), free(v2);
        mmd_mlp_destroy(m2l);
    }
    /* a torn directory (one tensor from another save) and a missing file are refused */
    char path[1100];
    snprintf(path, sizeof path, "%s/layer1_bias.npy", dir);
    float z[40] = {0};
    size_t shape = 40;
    mmd_npy_write(path, MMD_DT_F32, &shape, 1, z);
    m2l = NULL;
    st = mmd_mlp_load(g_cl, dir, &m2l);
    CHECK(st == MMD_ERR_INVALID && strstr(mmd_last_error(), "checksum") && !m2l, "torn save refused: %s",
          mmd_last_error());
    unlink(path);
    st = mmd_mlp_load(g_cl, dir, &m2l);
    CHECK(st != MMD_OK && strstr(mmd_last_error(), "layer1_bias.npy"), "missing tensor named: %s", mmd_last_error());
    snprintf(path, sizeof path, "%s/model.yaml", dir);
    mmd_write_file_atomic(path, "format: something-else\n", 23);
    st = mmd_mlp_load(g_cl, dir, &m2l);
    CHECK(st == MMD_ERR_PARSE && strstr(mmd_last_error(), "format"), "wrong format: %s", mmd_last_error());
    st = mmd_mlp_load(g_cl, "/nonexistent/mlp_dir", &m2l);
    CHECK(st == MMD_ERR_IO && strstr(mmd_last_error(), "model.yaml"), "missing model: %s", mmd_last_error());

    clReleaseMemObject(bpos);
    clReleaseMemObject(bout);
    clReleaseMemObject(bd);
    free(p), free(g), free(q), free(m1), free(m2), free(w), free(a), free(b);
    mmd_mlp_destroy(m);
}

/* Same seed -> same bits (weights, outputs, gradients); mmd_mlp_infer in blocks agrees. */
static void check_determinism(void)
{
    mmd_mlp_config c = mmd_mlp_defaults();
    c.seed = 42;
    mmd_mlp *a = NULL, *b = NULL, *d = NULL;
    CHECK(mmd_mlp_create(g_cl, &c, &a) == MMD_OK && mmd_mlp_create(g_cl, &c, &b) == MMD_OK, "create twice");
    c.seed = 43;
    CHECK(mmd_mlp_create(g_cl, &c, &d) == MMD_OK, "create another seed");
    if (!a || !b || !d) return;
    size_t np = mmd_mlp_n_params(a), n = 20000;
    float *pa = malloc(np * sizeof *pa), *pb = malloc(np * sizeof *pb);
    mmd_mlp_get_params(a, pa);
    mmd_mlp_get_params(b, pb);
    CHECK(!memcmp(pa, pb, np * sizeof *pa), "same seed: same initial weights");
    mmd_mlp_get_params(d, pb);
    CHECK(memcmp(pa, pb, np * sizeof *pa) != 0, "another seed: other weights");
    /* He / Xavier ranges */
    double m0 = 0.0, m4 = 0.0;
    for (int i = 0; i < 39 * 64; i++) m0 = fmax(m0, fabs(pa[i]));
    size_t off4;
    mmd_mlp_config_tensor(mmd_mlp_get_config(a), 8, &off4, NULL, NULL, NULL, 0);
    for (int i = 0; i < 64 * 4; i++) m4 = fmax(m4, fabs(pa[off4 + i]));
    CHECK(m0 <= sqrt(6.0 / 39) && m0 > 0.9 * sqrt(6.0 / 39), "He-uniform range of layer 0: max %g", m0);
    CHECK(m4 <= sqrt(6.0 / 68) && m4 > 0.8 * sqrt(6.0 / 68), "Xavier-uniform range of the output layer: max %g", m4);

    mmd_rng r;
    mmd_rng_seed(&r, 1, 2);
    float *pos = malloc(3 * n * sizeof *pos), *dout = malloc(4 * n * sizeof *dout);
    float *oa = malloc(4 * n * sizeof *oa), *ob = malloc(4 * n * sizeof *ob);
    random_pos(&r, pos, n);
    for (size_t i = 0; i < 4 * n; i++) dout[i] = (float)(mmd_rng_uniform(&r) - 0.5);
    cl_mem bpos = upload(pos, 3 * n), bo1 = upload(NULL, 4 * n), bo2 = upload(NULL, 4 * n), bd = upload(dout, 4 * n);
    mmd_mlp *mm[2] = {a, b};
    cl_mem outs[2] = {bo1, bo2};
    for (int k = 0; k < 2; k++) {
        mmd_mlp_forward(mm[k], bpos, n, outs[k]);
        mmd_mlp_zero_grad(mm[k]);
        mmd_mlp_backward(mm[k], bd, n);
    }
    download(bo1, oa, 4 * n);
    download(bo2, ob, 4 * n);
    CHECK(!memcmp(oa, ob, 4 * n * sizeof *oa), "same seed: same output bits");
    mmd_mlp_get_grads(a, pa);
    mmd_mlp_get_grads(b, pb);
    CHECK(!memcmp(pa, pb, np * sizeof *pa), "same seed: same gradient bits");
    /* run again on the same instance: reused buffers give the same bits */
    mmd_mlp_zero_grad(a);
    mmd_mlp_backward(a, bd, n);
    mmd_mlp_get_grads(a, pb);
    CHECK(!memcmp(pa, pb, np * sizeof *pa), "repeat: same gradient bits");

    /* inference in small blocks (budget of ~1000 rows) agrees with the one-shot forward */
    c.seed = 42;
    c.max_bytes = 1000 * 2400;
    mmd_mlp *e = NULL;
    CHECK(mmd_mlp_create(g_cl, &c, &e) == MMD_OK, "create small-budget model");
    if (e) {
        mmd_status st = mmd_mlp_infer(e, bpos, n, bo2);
        CHECK(st == MMD_OK, "infer in blocks: %s", mmd_last_error());
        download(bo2, ob, 4 * n);
        double num = 0, den = 0;
        for (size_t i = 0; i < 4 * n; i++) {
            num += ((double)oa[i] - ob[i]) * ((double)oa[i] - ob[i]);
            den += (double)oa[i] * oa[i];
        }
        CHECK(num / den < 1e-12, "infer vs forward NMSE %.3g", num / den);
        /* backward after infer is an error; forward of too many rows names the bytes */
        st = mmd_mlp_backward(e, bd, n);
        CHECK(st == MMD_ERR_INVALID && strstr(mmd_last_error(), "forward"), "backward after infer: %s",
              mmd_last_error());
        st = mmd_mlp_forward(e, bpos, n, bo2);
        CHECK(st == MMD_ERR_NOMEM && strstr(mmd_last_error(), "bytes") && strstr(mmd_last_error(), "20000"),
              "too many rows: %s", mmd_last_error());
        mmd_mlp_destroy(e);
    }
    {
        mmd_status st = mmd_mlp_backward(a, bd, n - 1);
        CHECK(st == MMD_ERR_INVALID && strstr(mmd_last_error(), "19999"), "backward row mismatch: %s",
              mmd_last_error());
    }
    clReleaseMemObject(bpos);
    clReleaseMemObject(bo1);
    clReleaseMemObject(bo2);
    clReleaseMemObject(bd);
    free(pa), free(pb), free(pos), free(dout), free(oa), free(ob);
    mmd_mlp_destroy(a);
    mmd_mlp_destroy(b);
    mmd_mlp_destroy(d);
}

/* Every GEMM arrangement (mmd_mlp_strategy) against the reference, and the CPU and
 * generic variants of the element-wise kernels against each other, bit for bit. */
static void check_arrangements(void)
{
    const char *strategies[] = {
        "hybrid=0,rowmajor=0,fq=1,oq=1,rq=1,chunks=1,batched=0",   /* plainest: CLBlast copies */
        "hybrid=0,rowmajor=1,fq=32,oq=16,rq=64,chunks=8,batched=1", /* GEMMK=1-friendly */
        "hybrid=0,rowmajor=1,fq=1,oq=1,rq=1,chunks=3,batched=0",    /* unpadded, chunk calls */
        "hybrid=1,fq=32,oq=64,rq=64,chunks=4,batched=0",            /* feature-major GEMMs */
    };
    for (int i = 0; i < 4; i++) {
        setenv("MMDIFF_MLP_STRATEGY", strategies[i], 1);
        char label[64];
        snprintf(label, sizeof label, "arrangement %d", i);
        check_shape(label, 3, 40, 5, 5000 + 77 * i, 20 + i);
    }
    unsetenv("MMDIFF_MLP_STRATEGY");

    mmd_mlp_config c = mmd_mlp_defaults();
    c.seed = 77;
    size_t n = 3001;
    float *pos = malloc(3 * n * sizeof *pos), *dout = malloc(4 * n * sizeof *dout);
    float *out[2] = {malloc(4 * n * sizeof(float)), malloc(4 * n * sizeof(float))};
    size_t np = mmd_mlp_config_params(&c);
    float *g[2] = {malloc(np * sizeof(float)), malloc(np * sizeof(float))};
    mmd_rng r;
    mmd_rng_seed(&r, 3, 3);
    random_pos(&r, pos, n);
    for (size_t i = 0; i < 4 * n; i++) dout[i] = (float)(mmd_rng_uniform(&r) - 0.5);
    cl_mem bpos = upload(pos, 3 * n), bout = upload(NULL, 4 * n), bd = upload(dout, 4 * n);
    for (int v = 0; v < 2; v++) {
        if (v) setenv("MMDIFF_MLP_KERNELS", "generic", 1);
        mmd_mlp *m = NULL;
        mmd_status st = mmd_mlp_create(g_cl, &c, &m);
        if (st == MMD_OK) st = mmd_mlp_forward(m, bpos, n, bout);
        if (st == MMD_OK) st = mmd_mlp_zero_grad(m);
        if (st == MMD_OK) st = mmd_mlp_backward(m, bd, n);
        if (st == MMD_OK) st = mmd_mlp_get_grads(m, g[v]);
        CHECK(st == MMD_OK && download(bout, out[v], 4 * n), "kernel variant %d: %s", v, mmd_last_error());
        mmd_mlp_destroy(m);
    }
    unsetenv("MMDIFF_MLP_KERNELS");
    CHECK(!memcmp(out[0], out[1], 4 * n * sizeof(float)) && !memcmp(g[0], g[1], np * sizeof(float)),
          "the device's kernel variant and the generic one give the same bits");
    clReleaseMemObject(bpos);
    clReleaseMemObject(bout);
    clReleaseMemObject(bd);
    free(pos), free(dout), free(out[0]), free(out[1]), free(g[0]), free(g[1]);
}

static void check_config_errors(void)
{
    mmd_mlp_config c = mmd_mlp_defaults();
    CHECK(mmd_mlp_config_inputs(&c) == 39, "default inputs 39");
    CHECK(mmd_mlp_config_params(&c) == 39 * 64 + 64 + 3 * (64 * 64 + 64) + 64 * 4 + 4, "default parameter count %zu",
          mmd_mlp_config_params(&c));
    CHECK_NEAR(mmd_mlp_step_flops(&c, 1), 2.0 * (2 * 39 * 64 + 3 * 3 * 64 * 64 + 3 * 64 * 4), 0.5, "flops per row");
    size_t off;
    int rows, cols;
    char name[64];
    CHECK(mmd_mlp_config_tensor(&c, 3, &off, &rows, &cols, name, sizeof name) && off == 39 * 64 + 64 + 64 * 64 &&
              rows == 1 && cols == 64 && !strcmp(name, "layer1_bias"),
          "tensor 3: %zu %d %d %s", off, rows, cols, name);
    CHECK(!mmd_mlp_config_tensor(&c, 10, &off, &rows, &cols, name, sizeof name), "tensor out of range");
    mmd_mlp *m = NULL;
    c.octaves = 17;
    CHECK(mmd_mlp_create(g_cl, &c, &m) == MMD_ERR_INVALID && strstr(mmd_last_error(), "octaves") && !m,
          "bad octaves: %s", mmd_last_error());
    c = mmd_mlp_defaults();
    c.n_hidden = 17;
    CHECK(mmd_mlp_create(g_cl, &c, &m) == MMD_ERR_INVALID && strstr(mmd_last_error(), "hidden"), "too many layers: %s",
          mmd_last_error());
    c = mmd_mlp_defaults();
    c.hidden[2] = 0;
    CHECK(mmd_mlp_create(g_cl, &c, &m) == MMD_ERR_INVALID && strstr(mmd_last_error(), "hidden layer 2"),
          "zero width: %s", mmd_last_error());
    CHECK(mmd_mlp_create(NULL, &c, &m) == MMD_ERR_INVALID, "no context");
    c = mmd_mlp_defaults();
    CHECK(mmd_mlp_create(g_cl, &c, &m) == MMD_OK, "create: %s", mmd_last_error());
    if (m) {
        size_t np = mmd_mlp_n_params(m);
        float *p = calloc(np, sizeof *p);
        p[5] = NAN;
        CHECK(mmd_mlp_set_params(m, p) == MMD_ERR_INVALID && strstr(mmd_last_error(), "entry 5"), "NaN weight: %s",
              mmd_last_error());
        CHECK(mmd_mlp_forward(m, NULL, 10, NULL) == MMD_ERR_INVALID, "missing buffers");
        CHECK(mmd_mlp_backward(m, NULL, 10) == MMD_ERR_INVALID, "backward before forward");
        CHECK(mmd_mlp_forward(m, NULL, 0, NULL) == MMD_OK, "zero rows is a no-op");
        free(p);
        mmd_mlp_destroy(m);
    }
}

int main(void)
{
    mmd_log_set_level(0);
    mmd_status st = mmd_cl_create(NULL, &g_cl);
    CHECK(st == MMD_OK, "OpenCL: %s", mmd_last_error());
    if (st != MMD_OK) return TEST_DONE();
    mmd_mlp_strategy s;
    mmd_mlp_device_strategy(g_cl, &s);
    printf("  strategy: %s, widths padded to %d (outputs %d), rows to %d, weight gradients in up to %d chunks%s\n",
           s.hybrid ? "hybrid" : "row-major", s.feature_quantum, s.out_quantum, s.row_quantum, s.dw_chunks,
           s.batched ? " (batched)" : "");

    check_config_errors();
    check_mapping();
    check_shape("2 x 32, 6 octaves", 2, 32, 6, 1000, 1);
    check_shape("4 x 64, 6 octaves", 4, 64, 6, 1000, 2);
    check_shape("4 x 64, 6 octaves", 4, 64, 6, 4097, 3);
    check_shape("3 x 128, 6 octaves", 3, 128, 6, 4097, 4);
    check_shape("3 x 128, 6 octaves", 3, 128, 6, 1, 5);
    check_shape("2 x 50, 4 octaves", 2, 50, 4, 9001, 6);
    check_shape("4 x 64, 6 octaves", 4, 64, 6, 20011, 7);
    check_arrangements();
    check_finite_differences();
    char dir[] = "/tmp/mmd_mlp_test_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    check_adam(dir);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    check_determinism();
    mmd_cl_destroy(g_cl);
    return TEST_DONE();
}
