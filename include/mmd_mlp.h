/*
 * mmd_mlp.h - the neural material field of SPEC 5: a small MLP that maps a hit point,
 * normalised to the scene's bounding box ([-1, 1]^3, done by the caller), to the four
 * material parameters (eps_r, sigma [S/m], S, K_x). Forward, backward and Adam run on the
 * OpenCL device; every GEMM goes through CLBlast, the rest (encoding, bias + ReLU, output
 * mapping, their backward passes, Adam) are the kernels of cl/mlp.cl. A plain-C
 * double-precision reference of the same network is exported for tests.
 *
 * Network (defaults in brackets):
 *   encoding  per coordinate c in (x, y, z): [c, sin(2^0 pi c), cos(2^0 pi c), ...,
 *             sin(2^(L-1) pi c), cos(2^(L-1) pi c)], L = octaves [6]; 3 (1 + 2L) [39] inputs
 *   hidden    n_hidden [4] fully connected layers of hidden[i] [64] ReLU units
 *   output    4 linear units o0..o3, mapped (gradient zero where a clip is active):
 *             eps_r = 1 + exp(clip(o0, ln 1e-3, ln 199)), sigma = exp(clip(o1, ln 1e-3, ln 1e6)),
 *             S = clip(sigmoid(o2), 1e-3, 1 - 1e-3),      K_x = clip(sigmoid(o3), 1e-3, 1 - 1e-3)
 *   init      from `seed`: He-uniform U(+-sqrt(6 / fan_in)) for the ReLU layers,
 *             Xavier-uniform U(+-sqrt(6 / (fan_in + fan_out))) for the output layer, biases 0
 *
 * Flat parameter order (get/set_params, get_grads, the Adam moments, the NPY files): layer
 * by layer, input side first, each layer's weight then its bias. Layer l's weight is a
 * row-major [fan_in][fan_out] matrix (W[i * fan_out + o] multiplies input i into output
 * o: y = x W + b), its bias has fan_out entries. docs/mlp.md has the full description.
 *
 * Rows: forward/backward take n rows (hit points) at once, up to a few million; the
 * activations are kept on the device between forward and backward, in buffers that grow
 * on demand and are reused. A call that would need more than `max_bytes` of device memory
 * fails with MMD_ERR_NOMEM naming the bytes needed (split the batch). Results are
 * deterministic: same seed, same device, same inputs -> the same bits.
 *
 * Example (one training step on n hit points already on the device):
 *     mmd_mlp_config c = mmd_mlp_defaults();
 *     c.seed = 7;
 *     mmd_mlp *m = NULL;
 *     if (mmd_mlp_create(cl, &c, &m) != MMD_OK) { ...mmd_last_error()... }
 *     mmd_mlp_forward(m, pos, n, params);        // pos: n*3 floats, params: n*4 floats out
 *     ... dparams[4 r + k] = dL/d(param k of row r) ...
 *     mmd_mlp_zero_grad(m);
 *     mmd_mlp_backward(m, dparams, n);           // weight and bias gradients, summed over rows
 *     mmd_mlp_adam(m, 5e-4f, 0.9f, 0.999f, 1e-8f);
 *     mmd_mlp_save(m, "runs/cal/model");         // model.yaml + one NPY per tensor
 *     mmd_mlp_destroy(m);
 */
#ifndef MMD_MLP_H
#define MMD_MLP_H

#include "mmd_cl.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MMD_MLP_MAX_HIDDEN 16   /* hidden layers at most */
#define MMD_MLP_MAX_WIDTH 4096  /* units per hidden layer at most */
#define MMD_MLP_MAX_OCTAVES 16  /* 2^15 pi x is already far below any mesh detail */
#define MMD_MLP_N_OUT 4         /* eps_r, sigma, S, K_x */

typedef struct mmd_mlp_config {
    int octaves;                     /* encoding octaves L, 0..MMD_MLP_MAX_OCTAVES [6] */
    int n_hidden;                    /* hidden layers, 0..MMD_MLP_MAX_HIDDEN [4] */
    int hidden[MMD_MLP_MAX_HIDDEN];  /* units of each hidden layer, 1..MMD_MLP_MAX_WIDTH [64] */
    uint64_t seed;                   /* initialisation seed [1] */
    /* Device memory the row buffers (activations, gradients, partial sums) may take; 0 =
     * half the device's global memory. Weights and optimiser state are not counted. */
    size_t max_bytes;
} mmd_mlp_config;

mmd_mlp_config mmd_mlp_defaults(void);

/* Check a configuration; MMD_ERR_INVALID names the field and the allowed range. */
mmd_status mmd_mlp_config_check(const mmd_mlp_config *c);

/* Inputs after the encoding: 3 (1 + 2 octaves). */
int mmd_mlp_config_inputs(const mmd_mlp_config *c);
/* Parameters in the flat order above. */
size_t mmd_mlp_config_params(const mmd_mlp_config *c);
/* Layers (n_hidden + 1) and tensors (2 per layer: weight, bias). For tensor t (0-based in
 * the flat order) gives its offset in the flat array, its shape (rows x cols; a bias is
 * 1 x fan_out) and a name ("layer2_weight", "layer2_bias"). Returns 0 if t is out of range. */
int mmd_mlp_config_tensor(const mmd_mlp_config *c, int t, size_t *offset, int *rows, int *cols, char *name,
                          size_t name_cap);

typedef struct mmd_mlp mmd_mlp;

/* Build the network on `cl` (compiles cl/mlp.cl, applies the device's tuned CLBlast
 * parameters once per process, see mmd_mlp_clblast_tune) and initialise it from the seed. */
mmd_status mmd_mlp_create(mmd_cl *cl, const mmd_mlp_config *c, mmd_mlp **out);
void mmd_mlp_destroy(mmd_mlp *m);
const mmd_mlp_config *mmd_mlp_get_config(const mmd_mlp *m);

/* Forward pass for n rows: pos holds n * 3 floats (normalised hit points, row-major), and
 * params_out receives n * 4 floats (eps_r, sigma, S, K_x per row). Keeps the activations
 * for mmd_mlp_backward. Enqueues on cl->queue (in order) and returns without waiting;
 * clFinish before reading params_out on the host. n == 0 does nothing. */
mmd_status mmd_mlp_forward(mmd_mlp *m, cl_mem pos, size_t n, cl_mem params_out);

/* Forward pass for inference only: the same results as mmd_mlp_forward, computed in
 * blocks of rows so that any n fits the memory budget. Drops the kept activations (a
 * following mmd_mlp_backward is an error). */
mmd_status mmd_mlp_infer(mmd_mlp *m, cl_mem pos, size_t n, cl_mem params_out);

/* Backward pass of the last mmd_mlp_forward (n must match): dparams holds n * 4 floats
 * dL/d(eps_r, sigma, S, K_x) per row; ADDS dL/d(weights, biases), summed over the rows,
 * to the gradient (zero it with mmd_mlp_zero_grad). */
mmd_status mmd_mlp_backward(mmd_mlp *m, cl_mem dparams, size_t n);
mmd_status mmd_mlp_zero_grad(mmd_mlp *m);

/* One Adam step on the accumulated gradient (bias-corrected; the step counter is kept
 * inside): m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; t += 1;
 * w -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps). lr > 0, 0 <= b1, b2 < 1, eps > 0. */
mmd_status mmd_mlp_adam(mmd_mlp *m, float lr, float beta1, float beta2, float eps);

/* Host copies in the flat order (mmd_mlp_n_params floats each). They wait for the queue. */
size_t mmd_mlp_n_params(const mmd_mlp *m);
mmd_status mmd_mlp_get_params(mmd_mlp *m, float *out);
mmd_status mmd_mlp_set_params(mmd_mlp *m, const float *in);
mmd_status mmd_mlp_get_grads(mmd_mlp *m, float *out);
/* Replace the accumulated gradients (flat order; MPI ranks sum theirs, src/learn/calib.c). */
mmd_status mmd_mlp_set_grads(mmd_mlp *m, const float *in);
/* Adam state: first and second moments (flat order; either may be NULL on get) and the
 * step counter. Setting it back makes a resumed run continue bit-exactly. */
mmd_status mmd_mlp_get_adam(mmd_mlp *m, float *m1, float *m2, uint64_t *step);
mmd_status mmd_mlp_set_adam(mmd_mlp *m, const float *m1, const float *m2, uint64_t step);

/* Save to directory `dir` (created if needed): model.yaml (architecture, encoding, output
 * mapping, seed, Adam step, a checksum over all tensors) and float32 NPY files
 * layer<l>_weight.npy [fan_in, fan_out], layer<l>_bias.npy [fan_out], adam_m.npy and
 * adam_v.npy [n_params] (flat order). Every file is written atomically and model.yaml
 * last; its checksum lets mmd_mlp_load refuse a directory torn by a crash mid-save. */
mmd_status mmd_mlp_save(mmd_mlp *m, const char *dir);
/* Create a network from a directory written by mmd_mlp_save (weights and Adam state
 * restored bit-exactly). Errors name the file and what was expected. */
mmd_status mmd_mlp_load(mmd_cl *cl, const char *dir, mmd_mlp **out);

/* Apply the CLBlast tuning parameters stored in the repository for this device
 * (src/learn/clblast_tune.c; how to produce them: docs/mlp.md), once per device and
 * process, and log it. MMDIFF_CLBLAST_TUNE=off skips it (CLBlast's own defaults).
 * Returns 1 if parameters were applied, 0 if none are known for the device. */
int mmd_mlp_clblast_tune(mmd_cl *cl);

/* The MLP's GEMMs fall into classes with different shapes and operand layouts (rows x 64
 * x 64 for the forward and input-gradient GEMMs, 64 x 64 x rows for the weight gradients,
 * and the same three for the output layer with its 4-wide dimension); a device's table
 * entry may give a class its own CLBlast parameters (lines tagged "fwd", "dx", "dw",
 * "ofwd", "odx", "odw"). mmd_mlp_clblast_use makes a class's parameters current (CLBlast keeps one
 * compiled program per parameter set, so switching costs a table look-up once each
 * program is built). The parameters are per device and process: CLBlast GEMMs called
 * elsewhere in the process see the class last used. */
typedef enum mmd_mlp_gemm_class {
    MMD_MLP_GEMM_FORWARD = 0,
    MMD_MLP_GEMM_INPUT_GRAD = 1,
    MMD_MLP_GEMM_WEIGHT_GRAD = 2,
    MMD_MLP_GEMM_OUT_FORWARD = 3, /* the same three for the output layer */
    MMD_MLP_GEMM_OUT_INPUT_GRAD = 4,
    MMD_MLP_GEMM_OUT_WEIGHT_GRAD = 5
} mmd_mlp_gemm_class;
void mmd_mlp_clblast_use(mmd_cl *cl, mmd_mlp_gemm_class cls);

/* How the GEMMs are arranged on a device; part of the same per-device table (measured,
 * docs/mlp.md). Results are bit-reproducible for a fixed strategy. */
typedef struct mmd_mlp_strategy {
    int hybrid;          /* 0: every row matrix row-major; 1: the forward and input-gradient
                            GEMMs on feature-major matrices, the weight gradients on row-major
                            copies written by the element-wise kernels (cl/mlp.cl) */
    int rowmajor;        /* hybrid = 0: forward and input-gradient GEMMs as row-major calls
                            (copy-free for CLBlast's GEMMK=1 kernel) instead of column-major
                            calls on the transposed problem (one copy with GEMMK=0) */
    int feature_quantum; /* input and hidden widths padded (with zeros) to a multiple of this */
    int out_quantum;     /* the same for the 4 outputs */
    int row_quantum;     /* row counts padded to a multiple of this */
    int dw_chunks;       /* weight gradients: up to this many row chunks, summed in order */
    int batched;         /* chunks as one CLBlastSgemmStridedBatched call (else one call each) */
} mmd_mlp_strategy;

/* The strategy for this device: the table's, else a portable default; then
 * MMDIFF_MLP_STRATEGY (e.g. "rowmajor=1,fq=32,oq=16,rq=64,chunks=8,batched=1"; any subset)
 * overrides fields, for tuning experiments. */
void mmd_mlp_device_strategy(const mmd_cl *cl, mmd_mlp_strategy *out);
void mmd_mlp_get_strategy(const mmd_mlp *m, mmd_mlp_strategy *out);

/* FLOPs of one forward + backward over n rows counted from the logical GEMM shapes
 * (2 m n k each: forward, weight gradients, input gradients of all but the first layer). */
double mmd_mlp_step_flops(const mmd_mlp_config *c, size_t n);

/* ---------------------------------------------------------------------------------------
 * Plain-C double-precision reference (tests). params is the flat array above.
 */

/* Encoding of one point: writes mmd_mlp_config_inputs(c) values. */
void mmd_mlp_ref_encode(const mmd_mlp_config *c, const float pos[3], double *x);
/* Output mapping of raw outputs o[4]: values and d value / d o (0 where clipped). */
void mmd_mlp_ref_map(const double o[4], double value[4], double dvalue[4]);
/* Forward for n rows: out receives n * 4 mapped parameters. */
mmd_status mmd_mlp_ref_forward(const mmd_mlp_config *c, const double *params, const float *pos, size_t n,
                               double *out);
/* Backward: ADDS dL/dparams (flat order) to grads for dL/dout = dout (n * 4). */
mmd_status mmd_mlp_ref_backward(const mmd_mlp_config *c, const double *params, const float *pos, size_t n,
                                const double *dout, double *grads);

#ifdef __cplusplus
}
#endif
#endif
