/*
 * bench_mlp.c - the neural material field's training step (mmd_mlp_forward +
 * mmd_mlp_backward, default 39-64-64-64-64-4 net) through CLBlast, next to OpenBLAS
 * cblas_sgemm running the same GEMM shapes (row-major, the logical sizes, no padding) on
 * the host in the same process with one thread per core. Issue 5's yardstick: the CLBlast
 * step at >= 50% of OpenBLAS's rate.
 *
 * Both sides are timed alternately, rep by rep, and the medians compared, so a machine
 * shared with other work slows both alike. Our time covers the whole step (encoding,
 * bias/ReLU, output mapping, their backward passes and the chunk reductions as well as
 * the GEMMs); OpenBLAS's covers the GEMMs only. FLOPs count the logical GEMM shapes
 * (mmd_mlp_step_flops) for both. MMD_BENCH_REPS sets the repetitions (default 5),
 * MMD_BENCH_MLP_ROWS the row counts (default "65536,262144").
 */
#include "bench.h"

#include "mmd_cl.h"
#include "mmd_mlp.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* OpenBLAS's own thread control (not in cblas.h of every BLAS) */
void openblas_set_num_threads(int num_threads);

/* Process CPU time: both sides run on threads of this process (PoCL's work-group
 * threads, OpenBLAS's workers), so on a machine shared with other work it measures the
 * work done where wall time measures the neighbours too. */
static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The MLP step's GEMMs on the host: forward, weight gradients (accumulated), input
 * gradients of all but the first layer; w[] are the boundary widths. */
typedef struct blas_net {
    int L, w[MMD_MLP_MAX_HIDDEN + 2];
    float *act[MMD_MLP_MAX_HIDDEN + 2], *dact[MMD_MLP_MAX_HIDDEN + 2], *W[MMD_MLP_MAX_HIDDEN + 1],
        *dW[MMD_MLP_MAX_HIDDEN + 1];
} blas_net;

static void blas_step(blas_net *b, int n)
{
    for (int l = 0; l < b->L; l++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, b->w[l + 1], b->w[l], 1.0f, b->act[l], b->w[l],
                    b->W[l], b->w[l + 1], 0.0f, b->act[l + 1], b->w[l + 1]);
    for (int l = b->L - 1; l >= 0; l--) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, b->w[l], b->w[l + 1], n, 1.0f, b->act[l], b->w[l],
                    b->dact[l + 1], b->w[l + 1], 1.0f, b->dW[l], b->w[l + 1]);
        if (l > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, b->w[l], b->w[l + 1], 1.0f, b->dact[l + 1],
                        b->w[l + 1], b->W[l], b->w[l + 1], 0.0f, b->dact[l], b->w[l]);
    }
}

static int blas_alloc(blas_net *b, const mmd_mlp_config *c, size_t n, mmd_rng *r)
{
    memset(b, 0, sizeof *b);
    b->L = c->n_hidden + 1;
    for (int l = 0; l <= b->L; l++)
        b->w[l] = l == 0 ? mmd_mlp_config_inputs(c) : l <= c->n_hidden ? c->hidden[l - 1] : MMD_MLP_N_OUT;
    for (int l = 0; l <= b->L; l++) {
        b->act[l] = malloc(n * b->w[l] * sizeof(float));
        b->dact[l] = malloc(n * b->w[l] * sizeof(float));
        if (!b->act[l] || !b->dact[l]) return -1;
        for (size_t i = 0; i < n * b->w[l]; i++) {
            b->act[l][i] = (float)mmd_rng_uniform(r);
            b->dact[l][i] = (float)(mmd_rng_uniform(r) - 0.5);
        }
    }
    for (int l = 0; l < b->L; l++) {
        size_t s = (size_t)b->w[l] * b->w[l + 1];
        b->W[l] = malloc(s * sizeof(float));
        b->dW[l] = calloc(s, sizeof(float));
        if (!b->W[l] || !b->dW[l]) return -1;
        for (size_t i = 0; i < s; i++) b->W[l][i] = (float)(mmd_rng_uniform(r) - 0.5);
    }
    return 0;
}

static void blas_free(blas_net *b)
{
    for (int l = 0; l <= MMD_MLP_MAX_HIDDEN + 1; l++) {
        free(b->act[l]);
        free(b->dact[l]);
        if (l <= MMD_MLP_MAX_HIDDEN) {
            free(b->W[l]);
            free(b->dW[l]);
        }
    }
}

static mmd_status mlp_step(mmd_cl *cl, mmd_mlp *m, cl_mem pos, cl_mem out, cl_mem dout, size_t n)
{
    mmd_status st = mmd_mlp_forward(m, pos, n, out);
    if (st == MMD_OK) st = mmd_mlp_zero_grad(m);
    if (st == MMD_OK) st = mmd_mlp_backward(m, dout, n);
    if (st == MMD_OK) st = mmd_cl_check(clFinish(cl->queue), "MLP step");
    return st;
}

int bench_mlp(mmd_cl *cl)
{
    const char *env_reps = getenv("MMD_BENCH_REPS");
    int reps = env_reps && env_reps[0] ? atoi(env_reps) : 5;
    if (reps < 1) reps = 1;
    if (reps > 32) reps = 32;
    int threads = mmd_num_threads();
    openblas_set_num_threads(threads);

    mmd_mlp_config c = mmd_mlp_defaults();
    mmd_mlp *m = NULL;
    if (mmd_mlp_create(cl, &c, &m) != MMD_OK) {
        fprintf(stderr, "bench_mlp: %s\n", mmd_last_error());
        return 1;
    }
    mmd_mlp_strategy s;
    mmd_mlp_get_strategy(m, &s);
    printf("\nMLP (neural material field) %d-%d-%d-%d-%d-4, forward + backward; CLBlast on %s (%s layout, widths "
           "padded to %d/%d, rows to %d, weight gradients in up to %d chunks%s) vs OpenBLAS cblas_sgemm with %d "
           "threads, medians of %d alternating reps\n",
           mmd_mlp_config_inputs(&c), c.hidden[0], c.hidden[1], c.hidden[2], c.hidden[3], cl->info.device_name,
           s.hybrid ? "hybrid" : "row-major", s.feature_quantum, s.out_quantum, s.row_quantum, s.dw_chunks,
           s.batched ? ", batched" : "", threads, reps);

    size_t sizes[4] = {65536, 262144};
    int n_sizes = 2;
    const char *env_sizes = getenv("MMD_BENCH_MLP_ROWS"); /* e.g. "65536" for a quick look */
    if (env_sizes && env_sizes[0]) {
        n_sizes = 0;
        for (const char *p = env_sizes; *p && n_sizes < 4;) {
            char *end;
            unsigned long v = strtoul(p, &end, 10);
            if (end == p || v == 0) break;
            sizes[n_sizes++] = v;
            p = *end ? end + 1 : end;
        }
    }
    int rc = 0;
    for (int si = 0; si < n_sizes && rc == 0; si++) {
        size_t n = sizes[si];
        mmd_rng r;
        mmd_rng_seed(&r, 1234, n);
        float *pos = malloc(3 * n * sizeof *pos), *dout = malloc(4 * n * sizeof *dout);
        blas_net b;
        memset(&b, 0, sizeof b);
        if (!pos || !dout || blas_alloc(&b, &c, n, &r)) {
            fprintf(stderr, "bench_mlp: out of host memory for %zu rows\n", n);
            free(pos), free(dout), blas_free(&b);
            rc = 1;
            break;
        }
        for (size_t i = 0; i < 3 * n; i++) pos[i] = (float)(2.0 * mmd_rng_uniform(&r) - 1.0);
        for (size_t i = 0; i < 4 * n; i++) dout[i] = (float)(mmd_rng_uniform(&r) - 0.5);
        cl_mem bpos = NULL, bout = NULL, bd = NULL;
        mmd_status st = mmd_cl_buffer(cl, CL_MEM_READ_ONLY, 3 * n * sizeof(float), pos, "bench positions", &bpos);
        if (st == MMD_OK) st = mmd_cl_buffer(cl, CL_MEM_READ_WRITE, 4 * n * sizeof(float), NULL, "bench out", &bout);
        if (st == MMD_OK)
            st = mmd_cl_buffer(cl, CL_MEM_READ_ONLY, 4 * n * sizeof(float), dout, "bench gradients", &bd);
        /* warm-up: kernel compilation (CLBlast builds per routine and parameter set) */
        double t0 = mmd_now();
        if (st == MMD_OK) st = mlp_step(cl, m, bpos, bout, bd, n);
        double t_first = mmd_now() - t0;
        if (st == MMD_OK) st = mlp_step(cl, m, bpos, bout, bd, n);
        blas_step(&b, (int)n);
        double t_ours[32], t_blas[32], c_ours[32], c_blas[32];
        for (int k = 0; k < reps && st == MMD_OK; k++) {
            t0 = mmd_now();
            double c0 = cpu_now();
            st = mlp_step(cl, m, bpos, bout, bd, n);
            t_ours[k] = mmd_now() - t0;
            c_ours[k] = cpu_now() - c0;
            t0 = mmd_now();
            c0 = cpu_now();
            blas_step(&b, (int)n);
            t_blas[k] = mmd_now() - t0;
            c_blas[k] = cpu_now() - c0;
        }
        if (st != MMD_OK) {
            fprintf(stderr, "bench_mlp: %s\n", mmd_last_error());
            rc = 1;
        } else {
            double flops = mmd_mlp_step_flops(&c, n);
            double to = median(t_ours, reps), tb = median(t_blas, reps);
            double co = median(c_ours, reps), cb = median(c_blas, reps);
            double go = flops / to * 1e-9, gb = flops / tb * 1e-9;
            printf("MLP step %zu rows (%.2f GFLOP): CLBlast %.1f ms = %.2f GFLOP/s (first call %.0f ms), OpenBLAS "
                   "%.1f ms = %.2f GFLOP/s, ratio %.2f\n",
                   n, flops * 1e-9, to * 1e3, go, t_first * 1e3, tb * 1e3, gb, go / gb);
            printf("  CPU time per step: CLBlast %.1f ms, OpenBLAS %.1f ms (ratio %.2f; meaningful when other "
                   "work shares the machine)\n",
                   co * 1e3, cb * 1e3, cb / co);
            char name[64];
            snprintf(name, sizeof name, "mlp_step_%zu_gflops", n);
            printf("BENCH %s %.4g GFLOP/s\n", name, go);
            snprintf(name, sizeof name, "mlp_step_%zu_openblas_gflops", n);
            printf("BENCH %s %.4g GFLOP/s\n", name, gb);
            snprintf(name, sizeof name, "mlp_step_%zu_vs_openblas", n);
            printf("BENCH %s %.4g x\n", name, go / gb);
            snprintf(name, sizeof name, "mlp_step_%zu_vs_openblas_cputime", n);
            printf("BENCH %s %.4g x\n", name, cb / co);
            fflush(stdout);
        }
        if (bpos) clReleaseMemObject(bpos);
        if (bout) clReleaseMemObject(bout);
        if (bd) clReleaseMemObject(bd);
        free(pos), free(dout);
        blas_free(&b);
    }
    mmd_mlp_destroy(m);
    return rc;
}
