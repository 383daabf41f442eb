/*
 * mlp.cl - the element-wise parts of the neural material field (SPEC section 5,
 * "Neural material field": encoding, bias, activation, output range mapping, Adam; host
 * side src/learn/mlp.c, description docs/mlp.md). The GEMMs between these kernels run
 * through CLBlast on the same in-order queue.
 *
 * Row matrices (encoded inputs, activations, their gradients) are rows_p x width_p floats,
 * rows and features padded with zeros to the multiples the GEMM kernels like, in one of
 * two layouts:
 *     row-major      element (r, f) at r * width_p + f    (one hit point per row)
 *     feature-major  element (r, f) at f * rows_p + r     (one feature per column)
 * In the "row" arrangement every matrix is row-major. In the "hybrid" one (soa = 1) the
 * matrices the forward and input-gradient GEMMs read and write are feature-major (the
 * layout CLBlast's Xgemm kernel consumes without its transpose passes, since its long
 * dimension is then the rows), and these kernels also write a row-major copy (`aos`) of
 * what the weight-gradient GEMMs need, where the rows are the summed-over dimension and
 * row-major is the copy-free layout. Writing the copy while the data passes anyway costs
 * a store stream instead of CLBlast's separate transpose kernels.
 * Padding rows (r >= n) carry finite junk forward and an exactly-zero gradient backward,
 * so they never reach the weight gradients; padding features stay exactly zero.
 *
 * Column sums (bias gradients) are fused into the backward kernels and reduced in a fixed
 * order (chunk c of column j is summed from its first row to its last; mmd_mlp_reduce
 * then adds the chunks in index order), so results are bit-reproducible.
 *
 * Build option MMD_MLP_CPU=1 (set by the host for CPU devices) switches the row-wise
 * kernels to one work-item per block of rows with short inner loops: a CPU driver runs
 * those as vector loops over cache-resident blocks, where one work-item per element (the
 * GPU variant: consecutive work-items touch consecutive addresses) cost PoCL about five
 * times more per element. Both variants compute every value with the same operations in
 * the same order, so they give the same bits.
 */
#pragma OPENCL FP_CONTRACT OFF

#ifndef MMD_MLP_CPU
#define MMD_MLP_CPU 0
#endif
/* rows per block in the CPU variants (a block of 16 rows x 64 features is 4 KiB) */
#define MLP_CPU_ROWS 16

inline size_t mlp_at(uint r, uint f, uint rows_p, uint width_p, int soa)
{
    return soa ? (size_t)f * rows_p + r : (size_t)r * width_p + f;
}

/* sin(pi x) and cos(pi x). Reduction without rounding: r = x - 2 rint(x / 2) in [-1, 1]
 * and t = r - q / 2 with q = rint(2 r), |t| <= 1/4, are exact in float (the differences
 * are multiples of x's ulp and no larger than x; rint by adding and subtracting 1.5 2^23,
 * exact for |x| < 2^22); then Taylor polynomials in t (truncation below 2e-10 on
 * |pi t| <= pi / 4) and a quarter-turn rotation by q. Written once for float and once for
 * float16 with the same operations in the same order (same bits): the CPU variant of the
 * encoding runs 16 rows per vector, since PoCL neither vectorises sinpi/cospi calls nor
 * this code across work-items. Accurate to a few ulps, like sinpi/cospi. */
#define MLP_SINCOSPI(T, IT)                                                                                    \
    inline void mlp_sincospi_##T(T x, T *s, T *c)                                                              \
    {                                                                                                          \
        const T M = (T)12582912.0f; /* 1.5 * 2^23 */                                                          \
        T r = x - (T)2.0f * ((T)0.5f * x + M - M);                                                             \
        T q = (T)2.0f * r + M - M;                                                                             \
        T t = r - (T)0.5f * q;                                                                                 \
        T t2 = t * t;                                                                                          \
        T sn = t * ((T)3.14159265f + t2 * ((T)-5.16771278f + t2 * ((T)2.55016404f + t2 * ((T)-0.599264529f +  \
                   t2 * ((T)0.0821458866f + t2 * (T)-0.00737043094f)))));                                     \
        T cs = (T)1.0f + t2 * ((T)-4.93480220f + t2 * ((T)4.05871213f + t2 * ((T)-1.33526277f +                \
                   t2 * ((T)0.235330630f + t2 * (T)-0.0258068914f))));                                        \
        /* q in {-2, -1, 0, 1, 2}: odd q swaps sin and cos, then signs */                                     \
        IT odd = fabs(q) == (T)1.0f;                                                                           \
        T s1 = select(sn, cs, odd), c1 = select(cs, sn, odd);                                                  \
        IT neg_s = (fabs(q) == (T)2.0f) | (q == (T)-1.0f);                                                     \
        IT neg_c = (fabs(q) == (T)2.0f) | (q == (T)1.0f);                                                      \
        *s = select(s1, -s1, neg_s);                                                                           \
        *c = select(c1, -c1, neg_c);                                                                           \
    }
MLP_SINCOSPI(float, int)
MLP_SINCOSPI(float16, int16)

/* SPEC 5 positional encoding of pos[row0 + r] into row r of x (layout soa), and when aos
 * is not NULL also into the row-major copy aos: per coordinate c, features [c,
 * sin(2^0 pi c), cos(2^0 pi c), ..., sin(2^(L-1) pi c), cos(2^(L-1) pi c)], L = octaves.
 * The scaling by 2^k is exact, so no argument is rounded before the reduction. Padding
 * rows and features get 0. GPU: one work-item per element (dimension 0 the contiguous
 * index of x); CPU: one work-item per 16 rows, computed as the lanes of float16 vectors. */
inline float mlp_feature(__global const float *pos, uint row, uint f, uint per)
{
    uint c = f / per, t = f - c * per;
    float v = pos[(size_t)row * 3 + c];
    if (t == 0) return v;
    float sn, cs;
    mlp_sincospi_float(v * (float)(1u << ((t - 1) / 2)), &sn, &cs);
    return (t & 1) ? sn : cs;
}

__kernel void mmd_mlp_encode(__global const float *restrict pos, uint row0, uint n, uint rows_p, uint octaves,
                             uint width_p, int soa, __global float *restrict x, __global float *restrict aos)
{
    uint per = 1 + 2 * octaves, used = 3 * per;
#if MMD_MLP_CPU
    /* 16 rows per work-item as float16 lanes (rows past rows_p are computed and dropped) */
    uint r0 = get_global_id(0) * 16;
    if (r0 >= rows_p) return;
    uint nr = min(16u, rows_p - r0);
    for (uint c = 0; c < 3; c++) {
        float v[16];
        for (uint i = 0; i < 16; i++) v[i] = r0 + i < n ? pos[(size_t)(row0 + r0 + i) * 3 + c] : 0.0f;
        float16 x16 = vload16(0, v);
        int16 live = (int16)(r0) + (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) < (int16)(n);
        for (uint i = 0; i < nr; i++) {
            x[mlp_at(r0 + i, c * per, rows_p, width_p, soa)] = v[i];
            if (aos) aos[(size_t)(r0 + i) * width_p + c * per] = v[i];
        }
        for (uint k = 0; k < octaves; k++) {
            float16 s16, c16;
            mlp_sincospi_float16(x16 * (float16)(float)(1u << k), &s16, &c16);
            float sv[16], cv[16];
            vstore16(select((float16)0.0f, s16, live), 0, sv);
            vstore16(select((float16)0.0f, c16, live), 0, cv);
            uint f = c * per + 1 + 2 * k;
            for (uint i = 0; i < nr; i++) {
                x[mlp_at(r0 + i, f, rows_p, width_p, soa)] = sv[i];
                x[mlp_at(r0 + i, f + 1, rows_p, width_p, soa)] = cv[i];
                if (aos) {
                    aos[(size_t)(r0 + i) * width_p + f] = sv[i];
                    aos[(size_t)(r0 + i) * width_p + f + 1] = cv[i];
                }
            }
        }
    }
    for (uint f = used; f < width_p; f++)
        for (uint i = 0; i < nr; i++) {
            x[mlp_at(r0 + i, f, rows_p, width_p, soa)] = 0.0f;
            if (aos) aos[(size_t)(r0 + i) * width_p + f] = 0.0f;
        }
#else
    uint i0 = get_global_id(0), i1 = get_global_id(1);
    uint r = soa ? i0 : i1, f = soa ? i1 : i0;
    if (r >= rows_p || f >= width_p) return;
    float v = (r < n && f < used) ? mlp_feature(pos, row0 + r, f, per) : 0.0f;
    x[mlp_at(r, f, rows_p, width_p, soa)] = v;
    if (aos) aos[(size_t)r * width_p + f] = v;
#endif
}

/* Hidden layer epilogue (SPEC 5 "bias/activation"): y = max(y + b, 0) in place (layout
 * soa), and into the row-major copy aos when not NULL. GPU: one work-item per element,
 * dimension 0 the contiguous index of y. CPU: one work-item per MLP_CPU_ROWS rows. */
__kernel void mmd_mlp_bias_relu(__global float *restrict y, __global const float *restrict params, uint bias_off,
                                uint rows_p, uint width_p, int soa, __global float *restrict aos)
{
    __global const float *b = params + bias_off;
#if MMD_MLP_CPU
    uint r0 = get_global_id(0) * MLP_CPU_ROWS, r1 = min(r0 + MLP_CPU_ROWS, rows_p);
    if (soa) {
        for (uint f = 0; f < width_p; f++) {
            float bf = b[f];
            for (uint r = r0; r < r1; r++) {
                float v = y[(size_t)f * rows_p + r] + bf;
                v = v > 0.0f ? v : 0.0f;
                y[(size_t)f * rows_p + r] = v;
                if (aos) aos[(size_t)r * width_p + f] = v;
            }
        }
    } else {
        for (uint r = r0; r < r1; r++)
            for (uint f = 0; f < width_p; f++) {
                float v = y[(size_t)r * width_p + f] + b[f];
                y[(size_t)r * width_p + f] = v > 0.0f ? v : 0.0f;
            }
    }
#else
    uint i0 = get_global_id(0), i1 = get_global_id(1);
    uint r = soa ? i0 : i1, f = soa ? i1 : i0;
    if (r >= rows_p || f >= width_p) return;
    size_t e = mlp_at(r, f, rows_p, width_p, soa);
    float v = y[e] + b[f];
    v = v > 0.0f ? v : 0.0f;
    y[e] = v;
    if (aos) aos[(size_t)r * width_p + f] = v;
#endif
}

/* SPEC 5 output range mapping of raw output o_j; *d = d value / d o (0 where clipped).
 * lo/hi: ln 1e-3, ln 199 (eps_r) and ln 1e-3, ln 1e6 (sigma). */
inline float mlp_map(int j, float o, float *d)
{
    const float lo = -6.90775528f, hi0 = 5.29330482f, hi1 = 13.8155106f;
    if (j < 2) {
        float hi = j == 0 ? hi0 : hi1;
        float t = o < lo ? lo : (o > hi ? hi : o);
        float e = exp(t);
        *d = (o > lo && o < hi) ? e : 0.0f;
        return j == 0 ? 1.0f + e : e;
    }
    float s = 1.0f / (1.0f + exp(-o));
    if (s < 1e-3f) {
        *d = 0.0f;
        return 1e-3f;
    }
    if (s > 1.0f - 1e-3f) {
        *d = 0.0f;
        return 1.0f - 1e-3f;
    }
    *d = s * (1.0f - s);
    return s;
}

/* Output layer epilogue: o = GEMM output (layout soa) + b, kept row-major in `keep` for
 * the backward pass (keep may be o itself when soa = 0), and params_out[row0 + r] =
 * (eps_r, sigma, S, K_x) for the real rows. One work-item per row. */
__kernel void mmd_mlp_out_map(__global const float *o, __global const float *params, uint bias_off, uint row0,
                              uint n, uint rows_p, uint width_p, int soa, __global float *keep,
                              __global float *out)
{
    uint r = get_global_id(0);
    if (r >= rows_p) return;
    for (int j = 0; j < 4; j++) {
        float v = o[mlp_at(r, (uint)j, rows_p, width_p, soa)] + params[bias_off + j];
        keep[(size_t)r * width_p + j] = v;
        float d;
        float p = mlp_map(j, v, &d);
        if (r < n) out[(size_t)(row0 + r) * 4 + j] = p;
    }
}

/* Backward of the output mapping: d_o(r, j) = dparams[r][j] * d map_j / d o (0 on padding
 * rows and columns and where a clip is active), from the row-major raw outputs `keep`;
 * written in layout soa to d_o and row-major to aos when not NULL; plus chunk c's column
 * sums of d_o into part[c * width_p + j] (the output bias gradient). GPU: work-item
 * (j, c); CPU: work-item c, row by row. */
inline float mlp_out_grad(__global const float *keep, __global const float *dparams, uint r, uint j, uint n,
                          uint width_p)
{
    if (j >= 4 || r >= n) return 0.0f;
    float d;
    mlp_map((int)j, keep[(size_t)r * width_p + j], &d);
    return dparams[(size_t)r * 4 + j] * d;
}

__kernel void mmd_mlp_out_back(__global const float *restrict keep, __global const float *restrict dparams, uint n,
                               uint rows_p, uint width_p, int soa, uint chunk_rows, __global float *restrict d_o,
                               __global float *restrict aos, __global float *restrict part)
{
#if MMD_MLP_CPU
    uint c = get_global_id(0);
    uint r0 = c * chunk_rows, r1 = min(r0 + chunk_rows, rows_p);
    if (r0 >= rows_p) return;
    __global float *sum = part + (size_t)c * width_p;
    uint w4 = min(4u, width_p);
    for (uint j = 0; j < width_p; j++) sum[j] = 0.0f;
    for (uint r = r0; r < r1; r++) {
        for (uint j = 0; j < w4; j++) {
            float g = mlp_out_grad(keep, dparams, r, j, n, width_p);
            d_o[mlp_at(r, j, rows_p, width_p, soa)] = g;
            if (aos) aos[(size_t)r * width_p + j] = g;
            sum[j] += g;
        }
        for (uint j = w4; j < width_p; j++) { /* padding columns: exactly zero (their sums stay 0) */
            d_o[mlp_at(r, j, rows_p, width_p, soa)] = 0.0f;
            if (aos) aos[(size_t)r * width_p + j] = 0.0f;
        }
    }
#else
    uint j = get_global_id(0), c = get_global_id(1);
    if (j >= width_p) return;
    uint r0 = c * chunk_rows, r1 = min(r0 + chunk_rows, rows_p);
    float sum = 0.0f;
    for (uint r = r0; r < r1; r++) {
        float g = mlp_out_grad(keep, dparams, r, j, n, width_p);
        d_o[mlp_at(r, j, rows_p, width_p, soa)] = g;
        if (aos) aos[(size_t)r * width_p + j] = g;
        sum += g;
    }
    part[(size_t)c * width_p + j] = sum;
#endif
}

/* Backward of bias + ReLU: da := da * (a > 0) in place (layout soa; a = the layer's
 * output, row-major, so a > 0 exactly where the pre-activation was), also row-major into
 * aos when not NULL, plus chunk c's column sums into part[c * width_p + j] (the bias
 * gradient). GPU: work-item (j, c) walks column j of chunk c. CPU: work-item c walks
 * chunk c in blocks of MLP_CPU_ROWS rows; each column's sum still runs over its rows in
 * increasing order. */
__kernel void mmd_mlp_relu_back(__global float *restrict da, __global const float *restrict a, uint rows_p,
                                uint width_p, int soa, uint chunk_rows, __global float *restrict aos,
                                __global float *restrict part)
{
#if MMD_MLP_CPU
    uint c = get_global_id(0);
    uint r0 = c * chunk_rows, r1 = min(r0 + chunk_rows, rows_p);
    if (r0 >= rows_p) return;
    __global float *sum = part + (size_t)c * width_p;
    for (uint j = 0; j < width_p; j++) sum[j] = 0.0f;
    if (soa) {
        for (uint b0 = r0; b0 < r1; b0 += MLP_CPU_ROWS) {
            uint b1 = min(b0 + MLP_CPU_ROWS, r1);
            for (uint j = 0; j < width_p; j++) {
                float s = sum[j];
                for (uint r = b0; r < b1; r++) {
                    size_t e = (size_t)j * rows_p + r;
                    float g = a[(size_t)r * width_p + j] > 0.0f ? da[e] : 0.0f;
                    da[e] = g;
                    if (aos) aos[(size_t)r * width_p + j] = g;
                    s += g;
                }
                sum[j] = s;
            }
        }
    } else {
        for (uint r = r0; r < r1; r++) {
            __global float *drow = da + (size_t)r * width_p;
            __global const float *arow = a + (size_t)r * width_p;
            for (uint j = 0; j < width_p; j++) {
                float g = arow[j] > 0.0f ? drow[j] : 0.0f;
                drow[j] = g;
                sum[j] += g;
            }
        }
    }
#else
    uint j = get_global_id(0), c = get_global_id(1);
    if (j >= width_p) return;
    uint r0 = c * chunk_rows, r1 = min(r0 + chunk_rows, rows_p);
    float sum = 0.0f;
    for (uint r = r0; r < r1; r++) {
        size_t e = mlp_at(r, j, rows_p, width_p, soa);
        float g = a[(size_t)r * width_p + j] > 0.0f ? da[e] : 0.0f;
        da[e] = g;
        if (aos) aos[(size_t)r * width_p + j] = g;
        sum += g;
    }
    part[(size_t)c * width_p + j] = sum;
#endif
}

/* grad[grad_off + i] += sum over c (in index order) of part[c * stride + i]: the fixed-
 * order reduction of per-chunk weight-gradient GEMMs and of the column-sum chunks. */
__kernel void mmd_mlp_reduce(__global const float *part, uint n_parts, uint count, uint stride,
                             __global float *grad, uint grad_off)
{
    uint i = get_global_id(0);
    if (i >= count) return;
    float s = 0.0f;
    for (uint c = 0; c < n_parts; c++) s += part[(size_t)c * stride + i];
    grad[grad_off + i] += s;
}

/* Adam (SPEC 5 "Optimiser") with bias correction; bc1 = 1 - b1^t, bc2 = 1 - b2^t and
 * omb1 = 1 - b1, omb2 = 1 - b2 come from the host (computed in double, rounded once).
 * Padding entries have g = 0 forever, so their m, v and weight stay exactly 0. */
__kernel void mmd_mlp_adam(__global float *w, __global const float *g, __global float *m1, __global float *m2,
                           uint count, float lr, float b1, float omb1, float b2, float omb2, float bc1, float bc2,
                           float eps)
{
    uint i = get_global_id(0);
    if (i >= count) return;
    float gi = g[i];
    float a = b1 * m1[i] + omb1 * gi;
    float b = b2 * m2[i] + omb2 * (gi * gi);
    m1[i] = a;
    m2[i] = b;
    w[i] -= lr * (a / bc1) / (sqrt(b / bc2) + eps);
}

/* wt = W^T of one layer (in_p x out_p row-major -> out_p x in_p row-major): the operand
 * layout of the row-major input-gradient GEMM dX = dY W^T, so that CLBlast need not
 * transpose the weights inside every call. Refreshed whenever the weights change. */
__kernel void mmd_mlp_transpose(__global const float *restrict w, uint w_off, uint in_p, uint out_p,
                                __global float *restrict wt, uint wt_off)
{
    uint o = get_global_id(0), i = get_global_id(1);
    if (o >= out_p || i >= in_p) return;
    wt[wt_off + (size_t)o * in_p + i] = w[w_off + (size_t)i * out_p + o];
}

__kernel void mmd_mlp_fill(__global float *x, uint count, float v)
{
    uint i = get_global_id(0);
    if (i < count) x[i] = v;
}
