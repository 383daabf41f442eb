/*
 * clblast_tune_step.c - times one MLP training step (mmd_mlp_forward + mmd_mlp_backward,
 * default 39-64-64-64-64-4 net) for tools/clblast_tune.sh, which compiles it against
 * build/libmmdiff.a and runs it once per candidate (CLBlast parameters in
 * MMDIFF_CLBLAST_PARAMS, GEMM arrangement in MMDIFF_MLP_STRATEGY, see docs/mlp.md).
 *
 *     clblast_tune_step ROWS [REPS]
 *     clblast_tune_step gemm ROWS [REPS]
 *
 * Prints one line: "rows R wall_ms W cpu_ms C gflops G gflops_per_cpu_s H" with the
 * medians over REPS (default 5) steps after one warm-up step. The `gemm` form times one
 * CLBlast GEMM of the forward class instead (row-major Y = X W, ROWS x 64 x 64, the
 * parameters of MMDIFF_CLBLAST_PARAMS in force), for sweeping kernel parameters that
 * CLBlast's own tuners cannot reach (docs/mlp.md). Process CPU time is
 * reported beside wall time because it stays meaningful on a machine shared with other
 * work (OpenCL CPU devices run their work-groups on threads of this process).
 */
#include "mmd_mlp.h"

#include <clblast_c.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int gemm_only(size_t n, int reps)
{
    mmd_cl *cl = NULL;
    if (mmd_cl_create(NULL, &cl) != MMD_OK) {
        fprintf(stderr, "clblast_tune_step: %s\n", mmd_last_error());
        return 1;
    }
    mmd_mlp_clblast_tune(cl);
    mmd_mlp_clblast_use(cl, MMD_MLP_GEMM_FORWARD);
    float *h = malloc(n * 64 * sizeof *h);
    if (!h) return 1;
    for (size_t i = 0; i < n * 64; i++) h[i] = (float)(i % 7) * 0.1f;
    cl_mem a, b, c;
    mmd_status st = mmd_cl_buffer(cl, CL_MEM_READ_WRITE, n * 64 * sizeof(float), h, "A", &a);
    if (st == MMD_OK) st = mmd_cl_buffer(cl, CL_MEM_READ_WRITE, 64 * 64 * sizeof(float), h, "B", &b);
    if (st == MMD_OK) st = mmd_cl_buffer(cl, CL_MEM_READ_WRITE, n * 64 * sizeof(float), NULL, "C", &c);
    double tw[64], tc[64];
    for (int k = -1; k < reps && st == MMD_OK; k++) {
        double w0 = mmd_now(), c0 = cpu_now();
        CLBlastStatusCode s = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, n, 64, 64,
                                           1.0f, a, 0, 64, b, 0, 64, 0.0f, c, 0, 64, &cl->queue, NULL);
        clFinish(cl->queue);
        if (s != CLBlastSuccess) st = mmd_error(MMD_ERR_CL, "CLBlastSgemm failed (%d)", (int)s);
        if (k >= 0) {
            tw[k] = mmd_now() - w0;
            tc[k] = cpu_now() - c0;
        }
    }
    if (st != MMD_OK) {
        fprintf(stderr, "clblast_tune_step: %s\n", mmd_last_error());
        return 1;
    }
    qsort(tw, (size_t)reps, sizeof *tw, cmp);
    qsort(tc, (size_t)reps, sizeof *tc, cmp);
    double f = 2.0 * n * 64 * 64;
    printf("gemm %zu wall_ms %.3f cpu_ms %.3f gflops %.3f gflops_per_cpu_s %.3f\n", n, tw[reps / 2] * 1e3,
           tc[reps / 2] * 1e3, f / tw[reps / 2] * 1e-9, f / tc[reps / 2] * 1e-9);
    free(h);
    mmd_cl_destroy(cl);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "gemm")) {
        int reps = argc > 3 ? atoi(argv[3]) : 5;
        return gemm_only(strtoul(argv[2], NULL, 10), reps < 1 || reps > 64 ? 5 : reps);
    }
    if (argc < 2) {
        fprintf(stderr, "usage: %s ROWS [REPS] | gemm ROWS [REPS]\n", argv[0]);
        return 2;
    }
    size_t n = strtoul(argv[1], NULL, 10);
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    if (n == 0 || reps < 1 || reps > 64) {
        fprintf(stderr, "%s: ROWS must be > 0 and REPS in 1..64\n", argv[0]);
        return 2;
    }
    mmd_cl *cl = NULL;
    mmd_mlp *m = NULL;
    mmd_mlp_config c = mmd_mlp_defaults();
    if (mmd_cl_create(NULL, &cl) != MMD_OK || mmd_mlp_create(cl, &c, &m) != MMD_OK) {
        fprintf(stderr, "%s: %s\n", argv[0], mmd_last_error());
        return 1;
    }
    float *pos = malloc(3 * n * sizeof *pos), *d = malloc(4 * n * sizeof *d);
    if (!pos || !d) return 1;
    mmd_rng r;
    mmd_rng_seed(&r, 1, 1);
    for (size_t i = 0; i < 3 * n; i++) pos[i] = (float)(2.0 * mmd_rng_uniform(&r) - 1.0);
    for (size_t i = 0; i < 4 * n; i++) d[i] = (float)(mmd_rng_uniform(&r) - 0.5);
    cl_mem bp, bo, bd;
    mmd_status st = mmd_cl_buffer(cl, CL_MEM_READ_ONLY, 3 * n * sizeof(float), pos, "positions", &bp);
    if (st == MMD_OK) st = mmd_cl_buffer(cl, CL_MEM_READ_WRITE, 4 * n * sizeof(float), NULL, "outputs", &bo);
    if (st == MMD_OK) st = mmd_cl_buffer(cl, CL_MEM_READ_ONLY, 4 * n * sizeof(float), d, "gradients", &bd);
    double tw[64], tc[64];
    for (int k = -1; k < reps && st == MMD_OK; k++) {
        double w0 = mmd_now(), c0 = cpu_now();
        st = mmd_mlp_forward(m, bp, n, bo);
        if (st == MMD_OK) st = mmd_mlp_zero_grad(m);
        if (st == MMD_OK) st = mmd_mlp_backward(m, bd, n);
        if (st == MMD_OK) st = mmd_cl_check(clFinish(cl->queue), "MLP step");
        if (k >= 0) {
            tw[k] = mmd_now() - w0;
            tc[k] = cpu_now() - c0;
        }
    }
    if (st != MMD_OK) {
        fprintf(stderr, "%s: %s\n", argv[0], mmd_last_error());
        return 1;
    }
    qsort(tw, (size_t)reps, sizeof *tw, cmp);
    qsort(tc, (size_t)reps, sizeof *tc, cmp);
    double f = mmd_mlp_step_flops(&c, n), w = tw[reps / 2], u = tc[reps / 2];
    printf("rows %zu wall_ms %.2f cpu_ms %.2f gflops %.3f gflops_per_cpu_s %.3f\n", n, w * 1e3, u * 1e3, f / w * 1e-9,
           f / u * 1e-9);
    clReleaseMemObject(bp);
    clReleaseMemObject(bo);
    clReleaseMemObject(bd);
    free(pos);
    free(d);
    mmd_mlp_destroy(m);
    mmd_cl_destroy(cl);
    return 0;
}
