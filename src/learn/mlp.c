/*
 * Neural material field on the device (mmd_mlp.h, SPEC section 5): the GEMMs through
 * CLBlast on the context's in-order queue, the element-wise parts in cl/mlp.cl.
 *
 * Device layout. Every width is padded to the strategy's feature quantum and every row
 * count to its row quantum (zeros in the padding: padded weights and biases are 0 and
 * receive exactly-zero gradients, so they stay 0 under Adam), because CLBlast's fast
 * GEMM kernel runs without its pad/copy pre- and post-passes only on multiples of its
 * tile sizes. Parameters live in one float buffer, per layer the padded weight
 * [in_p][out_p] (row-major, as the flat host order) then the padded bias, each starting
 * on a 16-float boundary. Activations are rows_p x width_p matrices, row-major or
 * feature-major by strategy (cl/mlp.cl header). Host get/set convert to and from the
 * logical flat order.
 *
 * GEMMs per layer l (X = its input, Y = its output, W its weight, row-major view):
 *     forward         Y = X W                       m = rows, n = out, k = in
 *     weight grad     dW += X^T dY                  m = in, n = out, k = rows (in chunks)
 *     input grad      dX = dY W^T   (l > 0 only)   m = rows, n = in, k = out
 * The weight gradient's k is the row count: one GEMM would have only in x out outputs to
 * spread over the device, so it is split into row chunks whose partial products are
 * added in chunk order by mmd_mlp_reduce (deterministic; docs/mlp.md has the timings).
 */
#include "mmd_mlp.h"

#include <clblast_c.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAXL (MMD_MLP_MAX_HIDDEN + 1)   /* layers */
#define ALIGN_FLOATS 16                 /* device tensor offsets: 64-byte aligned */
#define COLSUM_ROWS 1024                /* rows per column-sum chunk (bias gradients) */
#define CPU_ROWS 16                     /* MLP_CPU_ROWS of cl/mlp.cl */
#define MIN_CHUNK_ROWS 2048             /* weight-gradient chunks are at least this tall */
#define INFER_BLOCK_ROWS 65536          /* mmd_mlp_infer's block (rounded to the quanta) */
/* CLBlast passes sizes and offsets to its kernels as int */
#define MAX_ELEMS ((size_t)1 << 31)

struct mmd_mlp {
    mmd_cl *cl;
    mmd_mlp_config cfg;
    mmd_mlp_strategy strat;
    int cpu;                     /* CPU device: row-loop variants of the kernels (cl/mlp.cl) */
    int L;                       /* layers = n_hidden + 1 */
    int w[MAXL + 1], wp[MAXL + 1]; /* logical and padded boundary widths */
    int maxwp_d;                 /* widest padded gradient matrix (boundaries 1..L) */
    int maxwp_f;                 /* widest padded matrix of all (boundaries 0..L) */
    size_t woff[MAXL], boff[MAXL]; /* padded device offsets (floats) */
    size_t n_dev, n_params;
    cl_mem wbuf, gbuf, m1buf, m2buf;
    cl_mem wtbuf;                /* row-major form: per layer W^T (out_p x in_p) at woff, for dX */
    int wt_stale;                /* wtbuf needs refreshing (weights changed since) */
    uint64_t step;
    cl_kernel k_encode, k_bias_relu, k_out_map, k_out_back, k_relu_back, k_reduce, k_adam, k_fill, k_transpose;

    /* row buffers, grown on demand (cl/mlp.cl header: layouts and arrangements) */
    cl_mem xa[MAXL + 1];         /* row-major: [0] encoded inputs, [1..L-1] hidden outputs, [L] raw outputs */
    cl_mem fs[2];                /* hybrid: feature-major forward operands (ping-pong) */
    cl_mem ds[2];                /* gradients in the GEMM layout (ping-pong) */
    cl_mem dz;                   /* hybrid: row-major copy of the current layer's output gradient */
    cl_mem part;                 /* per-chunk partial sums */
    size_t cap_rows, cap_part;   /* capacity in rows, in floats */
    int have_grad_bufs;          /* ds/dz/part allocated (inference skips them) */
    size_t budget;

    /* the last forward: rows (logical, padded) and the weight-gradient chunking */
    size_t fwd_n, rows_p, chunk_rows;
    int n_chunks;

    /* MMDIFF_MLP_PROFILE=1: wait after every operation and add the process CPU time it
     * took to a category (for tuning: on a CPU device the work-groups run on this process's
     * threads, and CPU time stays meaningful on a busy machine; it serialises the queue).
     * The first forward/backward pair is not counted: it compiles the kernels. */
    int profile, prof_steps;
    double prof_t, prof[7];
};

enum { PROF_FWD_GEMM, PROF_DW_GEMM, PROF_DX_GEMM, PROF_REDUCE, PROF_ENCODE, PROF_FWD_EPI, PROF_BWD_EPI };

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static void prof_start(mmd_mlp *m)
{
    if (!m->profile) return;
    clFinish(m->cl->queue);
    m->prof_t = cpu_now();
}

static void prof_add(mmd_mlp *m, int cat)
{
    if (!m->profile) return;
    clFinish(m->cl->queue);
    double t = cpu_now();
    if (m->prof_steps > 1) m->prof[cat] += t - m->prof_t;
    m->prof_t = t;
}

/* ---- small helpers --------------------------------------------------------------------- */

static size_t round_up(size_t x, size_t q) { return q <= 1 ? x : (x + q - 1) / q * q; }

static const char *clblast_errstr(int s)
{
    switch (s) {
    case CLBlastNotImplemented: return "not implemented";
    case CLBlastInvalidMatrixA: return "invalid matrix A";
    case CLBlastInvalidMatrixB: return "invalid matrix B";
    case CLBlastInvalidMatrixC: return "invalid matrix C";
    case CLBlastInvalidLeadDimA: return "invalid leading dimension of A";
    case CLBlastInvalidLeadDimB: return "invalid leading dimension of B";
    case CLBlastInvalidLeadDimC: return "invalid leading dimension of C";
    case CLBlastInsufficientMemoryA: return "buffer A too small";
    case CLBlastInsufficientMemoryB: return "buffer B too small";
    case CLBlastInsufficientMemoryC: return "buffer C too small";
    case CLBlastInvalidBatchCount: return "invalid batch count";
    case CLBlastInvalidOverrideKernel: return "invalid override kernel";
    case CLBlastMissingOverrideParameter: return "missing override parameter";
    case CLBlastInvalidLocalMemUsage: return "tuning parameters need too much local memory";
    case CLBlastNoHalfPrecision: return "no half precision";
    case CLBlastNoDoublePrecision: return "no double precision";
    case CLBlastInvalidVectorScalar: return "invalid scalar";
    case CLBlastInsufficientMemoryScalar: return "scalar buffer too small";
    case CLBlastDatabaseError: return "CLBlast database error";
    case CLBlastUnknownError: return "unknown CLBlast error";
    case CLBlastUnexpectedError: return "unexpected CLBlast error";
    default: break;
    }
    if (s < 0 && s > -100) return mmd_cl_errstr(s); /* plain OpenCL errors pass through */
    return "CLBlast error";
}

static mmd_status blas_check(int s, const char *what, int layer)
{
    if (s == CLBlastSuccess) return MMD_OK;
    return mmd_error(MMD_ERR_CL, "CLBlast: %s GEMM of MLP layer %d failed: %s (%d)", what, layer, clblast_errstr(s), s);
}

static mmd_status set_args(cl_kernel k, const char *name, int n, const size_t *sizes, const void **vals)
{
    for (int i = 0; i < n; i++) {
        cl_int err = clSetKernelArg(k, (cl_uint)i, sizes[i], vals[i]);
        if (err != CL_SUCCESS) {
            char what[96];
            snprintf(what, sizeof what, "setting argument %d of %s", i, name);
            return mmd_cl_check(err, what);
        }
    }
    return MMD_OK;
}
static mmd_status launch(mmd_mlp *m, cl_kernel k, const char *name, cl_uint dims, const size_t *global)
{
    for (cl_uint d = 0; d < dims; d++)
        if (global[d] == 0) return MMD_OK;
    cl_int err = clEnqueueNDRangeKernel(m->cl->queue, k, dims, NULL, global, NULL, 0, NULL, NULL);
    return mmd_cl_check(err, name);
}

static mmd_status fill(mmd_mlp *m, cl_mem buf, size_t count, float v)
{
    cl_uint c = (cl_uint)count;
    size_t sz[] = {sizeof(cl_mem), sizeof(cl_uint), sizeof(float)};
    const void *vals[] = {&buf, &c, &v};
    mmd_status st = set_args(m->k_fill, "mmd_mlp_fill", 3, sz, vals);
    if (st == MMD_OK) st = launch(m, m->k_fill, "mmd_mlp_fill", 1, &count);
    return st;
}

/* ---- creation --------------------------------------------------------------------------- */

mmd_mlp_config const *mmd_mlp_get_config(const mmd_mlp *m) { return &m->cfg; }
size_t mmd_mlp_n_params(const mmd_mlp *m) { return m->n_params; }
void mmd_mlp_get_strategy(const mmd_mlp *m, mmd_mlp_strategy *s) { *s = m->strat; }

static mmd_status build_kernels(mmd_mlp *m)
{
    cl_program prog;
    /* MMDIFF_MLP_KERNELS=generic: the one-work-item-per-element variants everywhere (tests
     * compare the two variants bit for bit) */
    const char *kv = getenv("MMDIFF_MLP_KERNELS");
    m->cpu = (m->cl->info.type & CL_DEVICE_TYPE_CPU) != 0 && !(kv && !strcmp(kv, "generic"));
    mmd_status st = mmd_cl_program(m->cl, "mlp.cl", m->cpu ? "-DMMD_MLP_CPU=1" : "", &prog);
    if (st == MMD_OK) st = mmd_cl_kernel(m->cl, prog, "mmd_mlp_encode", &m->k_encode);
    if (st == MMD_OK) st = mmd_cl_kernel(m->cl, prog, "mmd_mlp_bias_relu", &m->k_bias_relu);
    if (st == MMD_OK) st = mmd_cl_kernel(m->cl, prog, "mmd_mlp_out_map", &m->k_out_map);
    if (st == MMD_OK) st = mmd_cl_kernel(m->cl, prog, "mmd_mlp_out_back", &m->k_out_back);
    if (st == MMD_OK) st = mmd_cl_kernel(m->cl, prog, "mmd_mlp_relu_back", &m->k_relu_back);
    if (st == MMD_OK) st = mmd_cl_kernel(m->cl, prog, "mmd_mlp_reduce", &m->k_reduce);
    if (st == MMD_OK) st = mmd_cl_kernel(m->cl, prog, "mmd_mlp_adam", &m->k_adam);
    if (st == MMD_OK) st = mmd_cl_kernel(m->cl, prog, "mmd_mlp_fill", &m->k_fill);
    if (st == MMD_OK) st = mmd_cl_kernel(m->cl, prog, "mmd_mlp_transpose", &m->k_transpose);
    return st;
}

/* Xavier/He-uniform initial weights in the flat host order (mmd_mlp.h). Uniform, not
 * normal, draws: they need only multiplications and one correctly rounded sqrt per layer,
 * so the same seed gives the same weights with any C library. */
static void init_params(const mmd_mlp *m, float *p)
{
    mmd_rng rng;
    mmd_rng_seed(&rng, m->cfg.seed, 0x6d6c70u /* "mlp" */);
    size_t off = 0;
    for (int l = 0; l < m->L; l++) {
        int fi = m->w[l], fo = m->w[l + 1];
        double a = (l + 1 < m->L) ? sqrt(6.0 / fi) : sqrt(6.0 / (fi + fo));
        for (size_t i = 0; i < (size_t)fi * fo; i++) p[off++] = (float)((2.0 * mmd_rng_uniform(&rng) - 1.0) * a);
        for (int o = 0; o < fo; o++) p[off++] = 0.0f;
    }
}

mmd_status mmd_mlp_create(mmd_cl *cl, const mmd_mlp_config *c, mmd_mlp **out)
{
    *out = NULL;
    if (!cl) return mmd_error(MMD_ERR_INVALID, "mmd_mlp_create: no OpenCL context");
    mmd_status st = mmd_mlp_config_check(c);
    if (st != MMD_OK) return st;
    mmd_mlp_clblast_tune(cl);
    mmd_mlp *m = mmd_calloc(1, sizeof *m, "MLP");
    if (!m) return MMD_ERR_NOMEM;
    m->cl = cl;
    m->cfg = *c;
    for (int i = c->n_hidden; i < MMD_MLP_MAX_HIDDEN; i++) m->cfg.hidden[i] = 0;
    mmd_mlp_device_strategy(cl, &m->strat);
    m->L = c->n_hidden + 1;
    for (int l = 0; l <= m->L; l++) {
        m->w[l] = l == 0 ? mmd_mlp_config_inputs(c) : l <= c->n_hidden ? c->hidden[l - 1] : MMD_MLP_N_OUT;
        int q = l == m->L ? m->strat.out_quantum : m->strat.feature_quantum;
        m->wp[l] = (int)round_up((size_t)m->w[l], (size_t)(q > 0 ? q : 1));
        if (l >= 1 && m->wp[l] > m->maxwp_d) m->maxwp_d = m->wp[l];
        if (m->wp[l] > m->maxwp_f) m->maxwp_f = m->wp[l];
    }
    size_t off = 0;
    for (int l = 0; l < m->L; l++) {
        m->woff[l] = off;
        off = round_up(off + (size_t)m->wp[l] * m->wp[l + 1], ALIGN_FLOATS);
        m->boff[l] = off;
        off = round_up(off + (size_t)m->wp[l + 1], ALIGN_FLOATS);
    }
    m->n_dev = off;
    m->n_params = mmd_mlp_config_params(c);
    const char *prof = getenv("MMDIFF_MLP_PROFILE");
    m->profile = prof && prof[0] && strcmp(prof, "0") != 0;
    /* the device budget of mmd_cl_buffer (global memory, or MMDIFF_DEVICE_MEM_MB) */
    size_t half = (size_t)((cl->mem_budget ? cl->mem_budget : cl->info.global_mem) / 2);
    m->budget = c->max_bytes ? c->max_bytes : half;

    st = build_kernels(m);
    float *p = NULL;
    if (st == MMD_OK) {
        p = mmd_malloc(m->n_params, sizeof *p, "MLP initial weights");
        if (!p) st = MMD_ERR_NOMEM;
    }
    const char *names[5] = {"MLP weights", "MLP gradients", "MLP Adam first moments", "MLP Adam second moments",
                            "MLP transposed weights"};
    cl_mem *bufs[5] = {&m->wbuf, &m->gbuf, &m->m1buf, &m->m2buf, &m->wtbuf};
    for (int i = 0; i < 5 && st == MMD_OK; i++) {
        st = mmd_cl_buffer(cl, CL_MEM_READ_WRITE, m->n_dev * sizeof(float), NULL, names[i], bufs[i]);
        if (st == MMD_OK) st = fill(m, *bufs[i], m->n_dev, 0.0f);
    }
    if (st == MMD_OK) {
        init_params(m, p);
        st = mmd_mlp_set_params(m, p);
    }
    free(p);
    if (st != MMD_OK) {
        mmd_mlp_destroy(m);
        return st;
    }
    mmd_debug("MLP: %d inputs, %d hidden layers, %zu parameters; %s arrangement, widths padded to %d (out %d), rows "
              "to %d, weight gradients in up to %d chunks",
              m->w[0], c->n_hidden, m->n_params, m->strat.hybrid ? "hybrid" : "row-major",
              m->strat.feature_quantum, m->strat.out_quantum, m->strat.row_quantum, m->strat.dw_chunks);
    *out = m;
    return MMD_OK;
}

static void release_rows(mmd_mlp *m)
{
    cl_mem *all[] = {m->xa, m->fs, m->ds};
    int counts[] = {MAXL + 1, 2, 2};
    for (int g = 0; g < 3; g++)
        for (int i = 0; i < counts[g]; i++)
            if (all[g][i]) clReleaseMemObject(all[g][i]), all[g][i] = NULL;
    if (m->dz) clReleaseMemObject(m->dz), m->dz = NULL;
    if (m->part) clReleaseMemObject(m->part), m->part = NULL;
    m->cap_rows = m->cap_part = 0;
    m->have_grad_bufs = 0;
}

void mmd_mlp_destroy(mmd_mlp *m)
{
    if (!m) return;
    if (m->cl && m->cl->queue) clFinish(m->cl->queue);
    if (m->profile)
        mmd_info("MLP profile (CPU seconds over %d steps after the first): GEMMs forward %.3f s, weight gradient "
                 "%.3f s, input gradient %.3f s; chunk reductions %.3f s; encoding %.3f s, bias/ReLU/mapping %.3f "
                 "s, their backward + bias gradients %.3f s",
                 m->prof_steps > 1 ? m->prof_steps - 1 : 0, m->prof[PROF_FWD_GEMM], m->prof[PROF_DW_GEMM],
                 m->prof[PROF_DX_GEMM], m->prof[PROF_REDUCE], m->prof[PROF_ENCODE], m->prof[PROF_FWD_EPI],
                 m->prof[PROF_BWD_EPI]);
    release_rows(m);
    cl_mem bufs[5] = {m->wbuf, m->gbuf, m->m1buf, m->m2buf, m->wtbuf};
    for (int i = 0; i < 5; i++)
        if (bufs[i]) clReleaseMemObject(bufs[i]);
    cl_kernel ks[9] = {m->k_encode, m->k_bias_relu, m->k_out_map, m->k_out_back, m->k_relu_back,
                       m->k_reduce, m->k_adam, m->k_fill, m->k_transpose};
    for (int i = 0; i < 9; i++)
        if (ks[i]) clReleaseKernel(ks[i]);
    free(m);
}

/* ---- row buffers ------------------------------------------------------------------------ */

/* Rows per weight-gradient chunk and the chunk count for n rows (padded rows = their
 * product). */
static void plan_rows(const mmd_mlp *m, size_t n, size_t *rows_p, size_t *chunk_rows, int *n_chunks)
{
    size_t rq = (size_t)(m->strat.row_quantum > 0 ? m->strat.row_quantum : 1);
    size_t r0 = round_up(n, rq);
    size_t c = (size_t)(m->strat.dw_chunks > 0 ? m->strat.dw_chunks : 1);
    if (c > r0 / MIN_CHUNK_ROWS) c = r0 / MIN_CHUNK_ROWS;
    if (c < 1) c = 1;
    size_t cr = round_up((r0 + c - 1) / c, rq);
    *chunk_rows = cr;
    *n_chunks = (int)c;
    *rows_p = cr * c;
}

static size_t part_floats(const mmd_mlp *m, size_t rows_p, int n_chunks)
{
    size_t a = 0;
    if (n_chunks > 1)
        for (int l = 0; l < m->L; l++) {
            size_t s = (size_t)n_chunks * m->wp[l] * m->wp[l + 1];
            if (s > a) a = s;
        }
    size_t cs = (rows_p + COLSUM_ROWS - 1) / COLSUM_ROWS * (size_t)m->maxwp_d;
    return a > cs ? a : cs;
}

/* Floats per row of each buffer group, for the memory check and the allocation:
 * row-major copies (all boundaries), forward scratch (hybrid), gradient matrices. */
static size_t row_floats(const mmd_mlp *m, int training)
{
    size_t f = 0;
    for (int l = 0; l <= m->L; l++) f += (size_t)m->wp[l];
    if (m->strat.hybrid) f += 2 * (size_t)m->maxwp_f;
    if (training) f += (m->strat.hybrid ? 3 : 2) * (size_t)m->maxwp_d;
    return f;
}

/* Device bytes the row buffers need for rows_p rows (training = with gradient buffers). */
static size_t rows_bytes(const mmd_mlp *m, size_t rows_p, int n_chunks, int training)
{
    return sizeof(float) * (rows_p * row_floats(m, training) + (training ? part_floats(m, rows_p, n_chunks) : 0));
}

static mmd_status ensure_rows(mmd_mlp *m, size_t n, size_t rows_p, int n_chunks, int training)
{
    size_t need = rows_bytes(m, rows_p, n_chunks, training);
    if (need > m->budget)
        return mmd_error(MMD_ERR_NOMEM,
                         "MLP: %zu rows need %zu bytes of device memory for activations and gradients, more than "
                         "the limit of %zu bytes (mmd_mlp_config.max_bytes, default half of the device's memory); "
                         "evaluate fewer rows per call",
                         n, need, m->budget);
    if (rows_p * (size_t)m->maxwp_f >= MAX_ELEMS)
        return mmd_error(MMD_ERR_NOMEM, "MLP: %zu rows x %d features exceed CLBlast's 2^31-element limit per matrix; "
                         "evaluate fewer rows per call", n, m->maxwp_f);
    size_t pf = training ? part_floats(m, rows_p, n_chunks) : 0;
    if (rows_p <= m->cap_rows && (!training || (m->have_grad_bufs && pf <= m->cap_part))) return MMD_OK;
    /* grow: release everything first so the old and new buffers never coexist */
    clFinish(m->cl->queue);
    size_t rows = rows_p > m->cap_rows ? rows_p : m->cap_rows;
    int with_d = training || m->have_grad_bufs;
    if (rows_bytes(m, rows, n_chunks, with_d) > m->budget) { /* keep within budget: shrink to need */
        rows = rows_p;
        with_d = training;
    }
    if (with_d && pf < m->cap_part) pf = m->cap_part;
    if (with_d && pf == 0) pf = part_floats(m, rows, n_chunks);
    release_rows(m);
    mmd_status st = MMD_OK;
#define ALLOC(buf, floats, what)                                                                                 \
    if (st == MMD_OK) st = mmd_cl_buffer(m->cl, CL_MEM_READ_WRITE, (floats) * sizeof(float), NULL, what, &(buf))
    for (int l = 0; l <= m->L; l++) ALLOC(m->xa[l], rows * m->wp[l], "MLP activations");
    if (m->strat.hybrid)
        for (int i = 0; i < 2; i++) ALLOC(m->fs[i], rows * m->maxwp_f, "MLP forward scratch");
    if (with_d) {
        for (int i = 0; i < 2; i++) ALLOC(m->ds[i], rows * m->maxwp_d, "MLP gradients");
        if (m->strat.hybrid) ALLOC(m->dz, rows * m->maxwp_d, "MLP gradients (row-major copy)");
        ALLOC(m->part, pf, "MLP partial sums");
    }
#undef ALLOC
    if (st != MMD_OK) {
        release_rows(m);
        return st;
    }
    m->cap_rows = rows;
    m->cap_part = with_d ? pf : 0;
    m->have_grad_bufs = with_d;
    return MMD_OK;
}

/* The GEMM class of layer l's GEMM of kind k (mmd_mlp_gemm_class order: fwd, dx, dw) */
static void use_class(mmd_mlp *m, int l, int kind)
{
    mmd_mlp_clblast_use(m->cl, (mmd_mlp_gemm_class)(kind + (l + 1 == m->L ? 3 : 0)));
}

/* ---- forward ---------------------------------------------------------------------------- */

/* Forward over rows [row0, row0 + n) of pos/out, padded to rows_p rows in the buffers. */
static mmd_status forward_block(mmd_mlp *m, cl_mem pos, size_t row0, size_t n, size_t rows_p, cl_mem out)
{
    int hy = m->strat.hybrid;
    cl_int soa = hy;
    cl_uint r0 = (cl_uint)row0, nn = (cl_uint)n, rp = (cl_uint)rows_p, oct = (cl_uint)m->cfg.octaves;
    cl_uint w0 = (cl_uint)m->wp[0];
    cl_mem none = NULL;
    int cur = 0; /* hybrid: fs[cur] holds the current layer's feature-major input */
    prof_start(m);
    {
        cl_mem x = hy ? m->fs[0] : m->xa[0], *aos = hy ? &m->xa[0] : &none;
        size_t sz[] = {sizeof(cl_mem), 4, 4, 4, 4, 4, 4, sizeof(cl_mem), sizeof(cl_mem)};
        const void *v[] = {&pos, &r0, &nn, &rp, &oct, &w0, &soa, &x, aos};
        size_t g[2] = {soa ? rows_p : (size_t)w0, soa ? (size_t)w0 : rows_p};
        if (m->cpu) g[0] = (rows_p + CPU_ROWS - 1) / CPU_ROWS;
        mmd_status st = set_args(m->k_encode, "mmd_mlp_encode", 9, sz, v);
        if (st == MMD_OK) st = launch(m, m->k_encode, "mmd_mlp_encode", m->cpu ? 1 : 2, g);
        if (st != MMD_OK) return st;
        prof_add(m, PROF_ENCODE);
    }
    for (int l = 0; l < m->L; l++) {
        size_t in = (size_t)m->wp[l], ou = (size_t)m->wp[l + 1];
        cl_mem y = hy ? m->fs[1 - cur] : m->xa[l + 1];
        use_class(m, l, 0);
        int s;
        if (hy) /* Y (rows x out) = X W, feature-major: no transposes inside CLBlast (GEMMK=0 kernel) */
            s = CLBlastSgemm(CLBlastLayoutColMajor, CLBlastTransposeNo, CLBlastTransposeYes, rows_p, ou, in, 1.0f,
                             m->fs[cur], 0, rows_p, m->wbuf, m->woff[l], ou, 0.0f, y, 0, rows_p, &m->cl->queue,
                             NULL);
        else if (m->strat.rowmajor) /* Y = X W row-major: no transposes with the GEMMK=1 kernel */
            s = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, rows_p, ou, in, 1.0f,
                             m->xa[l], 0, in, m->wbuf, m->woff[l], ou, 0.0f, y, 0, ou, &m->cl->queue, NULL);
        else /* Y^T (out x rows) = W^T X^T: one transpose (of X) inside CLBlast with GEMMK=0 */
            s = CLBlastSgemm(CLBlastLayoutColMajor, CLBlastTransposeNo, CLBlastTransposeNo, ou, rows_p, in, 1.0f,
                             m->wbuf, m->woff[l], ou, m->xa[l], 0, in, 0.0f, y, 0, ou, &m->cl->queue, NULL);
        mmd_status st = blas_check(s, "forward", l);
        if (st != MMD_OK) return st;
        prof_add(m, PROF_FWD_GEMM);
        cl_uint bo = (cl_uint)m->boff[l], wo = (cl_uint)ou;
        if (l + 1 < m->L) {
            cl_mem *aos = hy ? &m->xa[l + 1] : &none;
            size_t sz[] = {sizeof(cl_mem), sizeof(cl_mem), 4, 4, 4, 4, sizeof(cl_mem)};
            const void *v[] = {&y, &m->wbuf, &bo, &rp, &wo, &soa, aos};
            size_t g[2] = {soa ? rows_p : ou, soa ? ou : rows_p};
            if (m->cpu) g[0] = (rows_p + CPU_ROWS - 1) / CPU_ROWS;
            st = set_args(m->k_bias_relu, "mmd_mlp_bias_relu", 7, sz, v);
            if (st == MMD_OK) st = launch(m, m->k_bias_relu, "mmd_mlp_bias_relu", m->cpu ? 1 : 2, g);
        } else {
            size_t sz[] = {sizeof(cl_mem), sizeof(cl_mem), 4, 4, 4, 4, 4, 4, sizeof(cl_mem), sizeof(cl_mem)};
            const void *v[] = {&y, &m->wbuf, &bo, &r0, &nn, &rp, &wo, &soa, &m->xa[m->L], &out};
            st = set_args(m->k_out_map, "mmd_mlp_out_map", 10, sz, v);
            if (st == MMD_OK) st = launch(m, m->k_out_map, "mmd_mlp_out_map", 1, &rows_p);
        }
        if (st != MMD_OK) return st;
        prof_add(m, PROF_FWD_EPI);
        cur = 1 - cur;
    }
    return MMD_OK;
}

static mmd_status check_rows(size_t n, const char *what)
{
    if (n > (size_t)UINT32_MAX / 4)
        return mmd_error(MMD_ERR_NOMEM, "MLP %s: %zu rows is too many for one call (at most %u)", what, n,
                         (unsigned)(UINT32_MAX / 4));
    return MMD_OK;
}

mmd_status mmd_mlp_forward(mmd_mlp *m, cl_mem pos, size_t n, cl_mem params_out)
{
    m->fwd_n = 0;
    if (n == 0) return MMD_OK;
    mmd_status st = check_rows(n, "forward");
    if (st != MMD_OK) return st;
    if (!pos || !params_out) return mmd_error(MMD_ERR_INVALID, "MLP forward: missing input or output buffer");
    size_t rows_p, chunk_rows;
    int n_chunks;
    plan_rows(m, n, &rows_p, &chunk_rows, &n_chunks);
    st = ensure_rows(m, n, rows_p, n_chunks, 1);
    if (m->profile) m->prof_steps++;
    if (st == MMD_OK) st = forward_block(m, pos, 0, n, rows_p, params_out);
    if (st != MMD_OK) return st;
    m->fwd_n = n;
    m->rows_p = rows_p;
    m->chunk_rows = chunk_rows;
    m->n_chunks = n_chunks;
    return MMD_OK;
}

mmd_status mmd_mlp_infer(mmd_mlp *m, cl_mem pos, size_t n, cl_mem params_out)
{
    m->fwd_n = 0;
    if (n == 0) return MMD_OK;
    mmd_status st = check_rows(n, "inference");
    if (st != MMD_OK) return st;
    if (!pos || !params_out) return mmd_error(MMD_ERR_INVALID, "MLP inference: missing input or output buffer");
    size_t rq = (size_t)(m->strat.row_quantum > 0 ? m->strat.row_quantum : 1);
    size_t block = round_up(n < INFER_BLOCK_ROWS ? n : INFER_BLOCK_ROWS, rq);
    if (m->cap_rows > block) block = m->cap_rows / rq * rq; /* use what is already there */
    while (block > rq && rows_bytes(m, block, 1, 0) > m->budget) block = round_up(block / 2, rq);
    st = ensure_rows(m, block, block, 1, 0);
    for (size_t r = 0; r < n && st == MMD_OK; r += block) {
        size_t k = n - r < block ? n - r : block;
        st = forward_block(m, pos, r, k, round_up(k, rq), params_out);
    }
    return st;
}

/* ---- backward --------------------------------------------------------------------------- */

/* grad[off .. off + count) += sum of the n_parts partials in m->part (stride floats apart) */
static mmd_status reduce_into_grad(mmd_mlp *m, int n_parts, size_t count, size_t stride, size_t off)
{
    cl_uint np = (cl_uint)n_parts, cnt = (cl_uint)count, str = (cl_uint)stride, go = (cl_uint)off;
    size_t sz[] = {sizeof(cl_mem), 4, 4, 4, sizeof(cl_mem), 4};
    const void *v[] = {&m->part, &np, &cnt, &str, &m->gbuf, &go};
    mmd_status st = set_args(m->k_reduce, "mmd_mlp_reduce", 6, sz, v);
    if (st == MMD_OK) st = launch(m, m->k_reduce, "mmd_mlp_reduce", 1, &count);
    return st;
}

/* dW_l += X^T dY over all rows, from row-major X (xa) and dY (dya): as column-major
 * dW^T (out x in) = dY^T X, whose operands CLBlast's Xgemm kernel reads without
 * transposing (the rows are the summed-over dimension, and row-major keeps it slowest).
 * One GEMM accumulating straight into the gradient, or n_chunks partial GEMMs (one
 * batched call or one call each) and a fixed-order reduction. */
static mmd_status weight_grad(mmd_mlp *m, int l, cl_mem xa, cl_mem dya)
{
    size_t in = (size_t)m->wp[l], ou = (size_t)m->wp[l + 1], rp = m->rows_p, cr = m->chunk_rows;
    int C = m->n_chunks;
    cl_command_queue *q = &m->cl->queue;
    CLBlastTranspose T = CLBlastTransposeYes, N = CLBlastTransposeNo;
    CLBlastLayout CM = CLBlastLayoutColMajor;
    int s = CLBlastSuccess;
    use_class(m, l, 2);
    if (C == 1) {
        s = CLBlastSgemm(CM, N, T, ou, in, rp, 1.0f, dya, 0, ou, xa, 0, in, 1.0f, m->gbuf, m->woff[l], ou, q, NULL);
        prof_add(m, PROF_DW_GEMM);
        return blas_check(s, "weight-gradient", l);
    }
    size_t msz = in * ou;
    if (m->strat.batched)
        s = CLBlastSgemmStridedBatched(CM, N, T, ou, in, cr, 1.0f, dya, 0, ou, cr * ou, xa, 0, in, cr * in, 0.0f,
                                       m->part, 0, ou, msz, (size_t)C, q, NULL);
    else
        for (int c = 0; c < C && s == CLBlastSuccess; c++) {
            size_t r0 = (size_t)c * cr;
            s = CLBlastSgemm(CM, N, T, ou, in, cr, 1.0f, dya, r0 * ou, ou, xa, r0 * in, in, 0.0f, m->part, c * msz, ou,
                             q, NULL);
        }
    mmd_status st = blas_check(s, "weight-gradient", l);
    prof_add(m, PROF_DW_GEMM);
    if (st == MMD_OK) st = reduce_into_grad(m, C, msz, msz, m->woff[l]);
    prof_add(m, PROF_REDUCE);
    return st;
}

/* W^T of every layer into wtbuf (same offsets; the padded blocks are square-free but the
 * layer's in_p x out_p floats fit where W's do) */
static mmd_status refresh_wt(mmd_mlp *m)
{
    for (int l = 1; l < m->L; l++) { /* layer 0 has no input gradient */
        cl_uint wo = (cl_uint)m->woff[l], in = (cl_uint)m->wp[l], ou = (cl_uint)m->wp[l + 1];
        size_t sz[] = {sizeof(cl_mem), 4, 4, 4, sizeof(cl_mem), 4};
        const void *v[] = {&m->wbuf, &wo, &in, &ou, &m->wtbuf, &wo};
        size_t g[2] = {ou, in};
        mmd_status st = set_args(m->k_transpose, "mmd_mlp_transpose", 6, sz, v);
        if (st == MMD_OK) st = launch(m, m->k_transpose, "mmd_mlp_transpose", 2, g);
        if (st != MMD_OK) return st;
    }
    m->wt_stale = 0;
    return MMD_OK;
}

/* dX = dY W_l^T (rows x in), in the GEMM layout of the arrangement */
static mmd_status input_grad(mmd_mlp *m, int l, cl_mem dy, cl_mem dx)
{
    size_t in = (size_t)m->wp[l], ou = (size_t)m->wp[l + 1], rp = m->rows_p;
    int s;
    use_class(m, l, 1);
    if (m->strat.hybrid) /* feature-major dX = dY W^T */
        s = CLBlastSgemm(CLBlastLayoutColMajor, CLBlastTransposeNo, CLBlastTransposeNo, rp, in, ou, 1.0f, dy, 0, rp,
                         m->wbuf, m->woff[l], ou, 0.0f, dx, 0, rp, &m->cl->queue, NULL);
    else if (m->strat.rowmajor) /* row-major dX = dY (W^T) with W^T kept transposed: no transposes (GEMMK=1) */
        s = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, rp, in, ou, 1.0f, dy, 0, ou,
                         m->wtbuf, m->woff[l], in, 0.0f, dx, 0, in, &m->cl->queue, NULL);
    else /* row-major: dX^T (in x rows) = W dY^T */
        s = CLBlastSgemm(CLBlastLayoutColMajor, CLBlastTransposeYes, CLBlastTransposeNo, in, rp, ou, 1.0f, m->wbuf,
                         m->woff[l], ou, dy, 0, ou, 0.0f, dx, 0, in, &m->cl->queue, NULL);
    prof_add(m, PROF_DX_GEMM);
    return blas_check(s, "input-gradient", l);
}

mmd_status mmd_mlp_backward(mmd_mlp *m, cl_mem dparams, size_t n)
{
    if (n == 0) return MMD_OK;
    if (m->fwd_n == 0)
        return mmd_error(MMD_ERR_INVALID, "MLP backward: no forward pass to differentiate (call mmd_mlp_forward "
                         "with the same rows first; mmd_mlp_infer keeps no activations)");
    if (n != m->fwd_n)
        return mmd_error(MMD_ERR_INVALID, "MLP backward: %zu rows given, but the last forward pass had %zu", n,
                         m->fwd_n);
    if (!dparams) return mmd_error(MMD_ERR_INVALID, "MLP backward: missing gradient buffer");
    int hy = m->strat.hybrid;
    cl_int soa = hy;
    cl_uint nn = (cl_uint)n, rp = (cl_uint)m->rows_p, cs = COLSUM_ROWS;
    size_t n_cs = (m->rows_p + COLSUM_ROWS - 1) / COLSUM_ROWS;
    cl_mem none = NULL, *aos = hy ? &m->dz : &none;
    int L = m->L, cur = 0;
    prof_start(m);
    if (m->strat.rowmajor && !hy && m->wt_stale) {
        mmd_status st = refresh_wt(m);
        if (st != MMD_OK) return st;
    }
    /* output mapping backward + output bias gradient */
    {
        cl_uint wo = (cl_uint)m->wp[L];
        size_t sz[] = {sizeof(cl_mem), sizeof(cl_mem), 4, 4, 4, 4, 4, sizeof(cl_mem), sizeof(cl_mem), sizeof(cl_mem)};
        const void *v[] = {&m->xa[L], &dparams, &nn, &rp, &wo, &soa, &cs, &m->ds[cur], aos, &m->part};
        size_t g[2] = {m->cpu ? n_cs : (size_t)wo, n_cs};
        mmd_status st = set_args(m->k_out_back, "mmd_mlp_out_back", 10, sz, v);
        if (st == MMD_OK) st = launch(m, m->k_out_back, "mmd_mlp_out_back", m->cpu ? 1 : 2, g);
        if (st == MMD_OK) st = reduce_into_grad(m, (int)n_cs, (size_t)wo, (size_t)wo, m->boff[L - 1]);
        if (st != MMD_OK) return st;
        prof_add(m, PROF_BWD_EPI);
    }
    for (int l = L - 1; l >= 0; l--) {
        mmd_status st = weight_grad(m, l, m->xa[l], hy ? m->dz : m->ds[cur]);
        if (st != MMD_OK) return st;
        if (l == 0) break;
        st = input_grad(m, l, m->ds[cur], m->ds[1 - cur]);
        if (st != MMD_OK) return st;
        cur = 1 - cur;
        /* through the ReLU that produced xa[l], with the bias gradient of layer l - 1 */
        cl_uint w = (cl_uint)m->wp[l];
        size_t sz[] = {sizeof(cl_mem), sizeof(cl_mem), 4, 4, 4, 4, sizeof(cl_mem), sizeof(cl_mem)};
        const void *v[] = {&m->ds[cur], &m->xa[l], &rp, &w, &soa, &cs, aos, &m->part};
        size_t g[2] = {m->cpu ? n_cs : (size_t)w, n_cs};
        st = set_args(m->k_relu_back, "mmd_mlp_relu_back", 8, sz, v);
        if (st == MMD_OK) st = launch(m, m->k_relu_back, "mmd_mlp_relu_back", m->cpu ? 1 : 2, g);
        if (st == MMD_OK) st = reduce_into_grad(m, (int)n_cs, (size_t)w, (size_t)w, m->boff[l - 1]);
        if (st != MMD_OK) return st;
        prof_add(m, PROF_BWD_EPI);
    }
    return MMD_OK;
}

mmd_status mmd_mlp_zero_grad(mmd_mlp *m) { return fill(m, m->gbuf, m->n_dev, 0.0f); }

mmd_status mmd_mlp_adam(mmd_mlp *m, float lr, float beta1, float beta2, float eps)
{
    if (!(lr > 0.0f) || !isfinite(lr) || !(beta1 >= 0.0f && beta1 < 1.0f) || !(beta2 >= 0.0f && beta2 < 1.0f) ||
        !(eps > 0.0f) || !isfinite(eps))
        return mmd_error(MMD_ERR_INVALID,
                         "MLP Adam: expected lr > 0, 0 <= beta1, beta2 < 1 and eps > 0, got lr %g, betas (%g, %g), "
                         "eps %g", lr, beta1, beta2, eps);
    uint64_t t = m->step + 1;
    /* bias corrections in double, rounded once: pow(b, t) in float loses digits for large t */
    float bc1 = (float)(1.0 - pow((double)beta1, (double)t)), bc2 = (float)(1.0 - pow((double)beta2, (double)t));
    float omb1 = (float)(1.0 - (double)beta1), omb2 = (float)(1.0 - (double)beta2);
    cl_uint cnt = (cl_uint)m->n_dev;
    size_t sz[] = {sizeof(cl_mem), sizeof(cl_mem), sizeof(cl_mem), sizeof(cl_mem), 4, 4, 4, 4, 4, 4, 4, 4, 4};
    const void *v[] = {&m->wbuf, &m->gbuf, &m->m1buf, &m->m2buf, &cnt, &lr, &beta1, &omb1, &beta2, &omb2,
                       &bc1, &bc2, &eps};
    size_t g = m->n_dev;
    mmd_status st = set_args(m->k_adam, "mmd_mlp_adam", 13, sz, v);
    if (st == MMD_OK) st = launch(m, m->k_adam, "mmd_mlp_adam", 1, &g);
    if (st == MMD_OK) m->step = t;
    m->wt_stale = 1;
    return st;
}

/* ---- host access ------------------------------------------------------------------------ */

/* device (padded) <-> host (flat logical) */
static void pack(const mmd_mlp *m, const float *flat, float *dev)
{
    memset(dev, 0, m->n_dev * sizeof *dev);
    size_t off = 0;
    for (int l = 0; l < m->L; l++) {
        int fi = m->w[l], fo = m->w[l + 1], fop = m->wp[l + 1];
        for (int i = 0; i < fi; i++)
            memcpy(dev + m->woff[l] + (size_t)i * fop, flat + off + (size_t)i * fo, (size_t)fo * sizeof *dev);
        off += (size_t)fi * fo;
        memcpy(dev + m->boff[l], flat + off, (size_t)fo * sizeof *dev);
        off += (size_t)fo;
    }
}

static void unpack(const mmd_mlp *m, const float *dev, float *flat)
{
    size_t off = 0;
    for (int l = 0; l < m->L; l++) {
        int fi = m->w[l], fo = m->w[l + 1], fop = m->wp[l + 1];
        for (int i = 0; i < fi; i++)
            memcpy(flat + off + (size_t)i * fo, dev + m->woff[l] + (size_t)i * fop, (size_t)fo * sizeof *dev);
        off += (size_t)fi * fo;
        memcpy(flat + off, dev + m->boff[l], (size_t)fo * sizeof *dev);
        off += (size_t)fo;
    }
}

static mmd_status read_flat(mmd_mlp *m, cl_mem buf, float *out, const char *what)
{
    float *dev = mmd_malloc(m->n_dev, sizeof *dev, what);
    if (!dev) return MMD_ERR_NOMEM;
    cl_int err = clEnqueueReadBuffer(m->cl->queue, buf, CL_TRUE, 0, m->n_dev * sizeof *dev, dev, 0, NULL, NULL);
    if (err == CL_SUCCESS) unpack(m, dev, out);
    free(dev);
    return mmd_cl_check(err, what);
}

static mmd_status write_flat(mmd_mlp *m, cl_mem buf, const float *in, const char *what)
{
    float *dev = mmd_malloc(m->n_dev, sizeof *dev, what);
    if (!dev) return MMD_ERR_NOMEM;
    pack(m, in, dev);
    cl_int err = clEnqueueWriteBuffer(m->cl->queue, buf, CL_TRUE, 0, m->n_dev * sizeof *dev, dev, 0, NULL, NULL);
    free(dev);
    return mmd_cl_check(err, what);
}

mmd_status mmd_mlp_get_params(mmd_mlp *m, float *out) { return read_flat(m, m->wbuf, out, "reading MLP weights"); }
mmd_status mmd_mlp_get_grads(mmd_mlp *m, float *out) { return read_flat(m, m->gbuf, out, "reading MLP gradients"); }
mmd_status mmd_mlp_set_grads(mmd_mlp *m, const float *in) { return write_flat(m, m->gbuf, in, "writing MLP gradients"); }

mmd_status mmd_mlp_set_params(mmd_mlp *m, const float *in)
{
    for (size_t i = 0; i < m->n_params; i++)
        if (!isfinite(in[i])) return mmd_error(MMD_ERR_INVALID, "MLP weights: entry %zu is not finite (%g)", i, in[i]);
    m->wt_stale = 1;
    return write_flat(m, m->wbuf, in, "writing MLP weights");
}

mmd_status mmd_mlp_get_adam(mmd_mlp *m, float *m1, float *m2, uint64_t *step)
{
    mmd_status st = MMD_OK;
    if (m1) st = read_flat(m, m->m1buf, m1, "reading MLP Adam first moments");
    if (st == MMD_OK && m2) st = read_flat(m, m->m2buf, m2, "reading MLP Adam second moments");
    if (step) *step = m->step;
    return st;
}

mmd_status mmd_mlp_set_adam(mmd_mlp *m, const float *m1, const float *m2, uint64_t step)
{
    if (!m1 || !m2) return mmd_error(MMD_ERR_INVALID, "MLP Adam state: both moment arrays are required");
    for (size_t i = 0; i < m->n_params; i++)
        if (!isfinite(m1[i]) || !isfinite(m2[i]) || m2[i] < 0.0f)
            return mmd_error(MMD_ERR_INVALID, "MLP Adam state: entry %zu is invalid (m %g, v %g; v must be >= 0)", i,
                             m1[i], m2[i]);
    mmd_status st = write_flat(m, m->m1buf, m1, "writing MLP Adam first moments");
    if (st == MMD_OK) st = write_flat(m, m->m2buf, m2, "writing MLP Adam second moments");
    if (st == MMD_OK) m->step = step;
    return st;
}
