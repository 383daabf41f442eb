/*
 * Neural material field (mmd_mlp.h): configuration helpers and the plain-C
 * double-precision reference network the device implementation is tested against. The
 * reference follows the same definitions line by line (docs/mlp.md) but accumulates in
 * double and in the obvious loop order; it is written for clarity, not speed.
 */
#include "mmd_mlp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* SPEC 5 clip bounds, rounded to float exactly as the kernels use them (cl/mlp.cl), so
 * that reference and device agree on which side of a bound a float output lies. */
#define LN_1EM3 ((double)-6.90775528f)
#define LN_199 ((double)5.29330482f)
#define LN_1E6 ((double)13.8155106f)

mmd_mlp_config mmd_mlp_defaults(void)
{
    mmd_mlp_config c;
    memset(&c, 0, sizeof c);
    c.octaves = 6;
    c.n_hidden = 4;
    for (int i = 0; i < MMD_MLP_MAX_HIDDEN; i++) c.hidden[i] = 64;
    c.seed = 1;
    c.max_bytes = 0;
    return c;
}

mmd_status mmd_mlp_config_check(const mmd_mlp_config *c)
{
    if (!c) return mmd_error(MMD_ERR_INVALID, "MLP configuration: missing (NULL)");
    if (c->octaves < 0 || c->octaves > MMD_MLP_MAX_OCTAVES)
        return mmd_error(MMD_ERR_INVALID, "MLP configuration: octaves must be in [0, %d], got %d", MMD_MLP_MAX_OCTAVES,
                         c->octaves);
    if (c->n_hidden < 0 || c->n_hidden > MMD_MLP_MAX_HIDDEN)
        return mmd_error(MMD_ERR_INVALID, "MLP configuration: the number of hidden layers must be in [0, %d], got %d",
                         MMD_MLP_MAX_HIDDEN, c->n_hidden);
    for (int i = 0; i < c->n_hidden; i++)
        if (c->hidden[i] < 1 || c->hidden[i] > MMD_MLP_MAX_WIDTH)
            return mmd_error(MMD_ERR_INVALID, "MLP configuration: hidden layer %d must have 1..%d units, got %d", i,
                             MMD_MLP_MAX_WIDTH, c->hidden[i]);
    return MMD_OK;
}

int mmd_mlp_config_inputs(const mmd_mlp_config *c) { return 3 * (1 + 2 * c->octaves); }

/* width of layer boundary l: 0 = inputs, 1..n_hidden = hidden, n_hidden + 1 = outputs */
static int width(const mmd_mlp_config *c, int l)
{
    if (l == 0) return mmd_mlp_config_inputs(c);
    if (l <= c->n_hidden) return c->hidden[l - 1];
    return MMD_MLP_N_OUT;
}

size_t mmd_mlp_config_params(const mmd_mlp_config *c)
{
    size_t n = 0;
    for (int l = 0; l <= c->n_hidden; l++) n += (size_t)(width(c, l) + 1) * (size_t)width(c, l + 1);
    return n;
}

int mmd_mlp_config_tensor(const mmd_mlp_config *c, int t, size_t *offset, int *rows, int *cols, char *name,
                          size_t name_cap)
{
    int n_layers = c->n_hidden + 1;
    if (t < 0 || t >= 2 * n_layers) return 0;
    size_t off = 0;
    for (int l = 0; l < t / 2; l++) off += (size_t)(width(c, l) + 1) * (size_t)width(c, l + 1);
    int l = t / 2, bias = t % 2;
    if (bias) off += (size_t)width(c, l) * (size_t)width(c, l + 1);
    if (offset) *offset = off;
    if (rows) *rows = bias ? 1 : width(c, l);
    if (cols) *cols = width(c, l + 1);
    if (name && name_cap) snprintf(name, name_cap, "layer%d_%s", l, bias ? "bias" : "weight");
    return 1;
}

double mmd_mlp_step_flops(const mmd_mlp_config *c, size_t n)
{
    double f = 0.0;
    for (int l = 0; l <= c->n_hidden; l++) {
        double mk = (double)width(c, l) * (double)width(c, l + 1);
        f += 2.0 * (double)n * mk;          /* forward */
        f += 2.0 * (double)n * mk;          /* weight gradient */
        if (l > 0) f += 2.0 * (double)n * mk; /* input gradient (not needed for layer 0) */
    }
    return f;
}

/* ---- reference network ---------------------------------------------------------------- */

void mmd_mlp_ref_encode(const mmd_mlp_config *c, const float pos[3], double *x)
{
    int per = 1 + 2 * c->octaves;
    for (int k = 0; k < 3; k++) {
        double v = pos[k];
        x[k * per] = v;
        for (int o = 0; o < c->octaves; o++) {
            double s = ldexp(v, o);
            x[k * per + 1 + 2 * o] = sin(M_PI * s);
            x[k * per + 2 + 2 * o] = cos(M_PI * s);
        }
    }
}

void mmd_mlp_ref_map(const double o[4], double value[4], double dvalue[4])
{
    for (int j = 0; j < 2; j++) {
        double lo = LN_1EM3, hi = j == 0 ? LN_199 : LN_1E6;
        double t = o[j] < lo ? lo : o[j] > hi ? hi : o[j];
        double e = exp(t);
        value[j] = j == 0 ? 1.0 + e : e;
        dvalue[j] = o[j] > lo && o[j] < hi ? e : 0.0;
    }
    for (int j = 2; j < 4; j++) {
        double s = 1.0 / (1.0 + exp(-o[j]));
        if (s < 1e-3) {
            value[j] = 1e-3;
            dvalue[j] = 0.0;
        } else if (s > 1.0 - 1e-3) {
            value[j] = 1.0 - 1e-3;
            dvalue[j] = 0.0;
        } else {
            value[j] = s;
            dvalue[j] = s * (1.0 - s);
        }
    }
}

typedef struct ref_net {
    int L;                                   /* layers */
    int w[MMD_MLP_MAX_HIDDEN + 2];           /* boundary widths */
    size_t woff[MMD_MLP_MAX_HIDDEN + 1], boff[MMD_MLP_MAX_HIDDEN + 1];
    int maxw;
} ref_net;

static void ref_setup(const mmd_mlp_config *c, ref_net *r)
{
    r->L = c->n_hidden + 1;
    r->maxw = 0;
    size_t off = 0;
    for (int l = 0; l <= r->L; l++) {
        r->w[l] = width(c, l);
        if (r->w[l] > r->maxw) r->maxw = r->w[l];
    }
    for (int l = 0; l < r->L; l++) {
        r->woff[l] = off;
        off += (size_t)r->w[l] * r->w[l + 1];
        r->boff[l] = off;
        off += (size_t)r->w[l + 1];
    }
}

/* Forward of one row, keeping every boundary's values in acts[l * maxw + i] (post-ReLU
 * for hidden boundaries, raw outputs for the last). */
static void ref_row(const ref_net *r, const mmd_mlp_config *c, const double *p, const float pos[3], double *acts)
{
    mmd_mlp_ref_encode(c, pos, acts);
    for (int l = 0; l < r->L; l++) {
        const double *x = acts + (size_t)l * r->maxw;
        double *y = acts + (size_t)(l + 1) * r->maxw;
        const double *W = p + r->woff[l], *b = p + r->boff[l];
        for (int o = 0; o < r->w[l + 1]; o++) {
            double s = 0.0;
            for (int i = 0; i < r->w[l]; i++) s += x[i] * W[(size_t)i * r->w[l + 1] + o];
            s += b[o];
            y[o] = (l + 1 < r->L) ? (s > 0.0 ? s : 0.0) : s;
        }
    }
}

mmd_status mmd_mlp_ref_forward(const mmd_mlp_config *c, const double *params, const float *pos, size_t n,
                               double *out)
{
    mmd_status st = mmd_mlp_config_check(c);
    if (st != MMD_OK) return st;
    ref_net r;
    ref_setup(c, &r);
    double *acts = mmd_malloc((size_t)(r.L + 1) * r.maxw, sizeof *acts, "reference MLP activations");
    if (!acts) return MMD_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        ref_row(&r, c, params, pos + 3 * i, acts);
        double d[4];
        mmd_mlp_ref_map(acts + (size_t)r.L * r.maxw, out + 4 * i, d);
    }
    free(acts);
    return MMD_OK;
}

mmd_status mmd_mlp_ref_backward(const mmd_mlp_config *c, const double *params, const float *pos, size_t n,
                                const double *dout, double *grads)
{
    mmd_status st = mmd_mlp_config_check(c);
    if (st != MMD_OK) return st;
    ref_net r;
    ref_setup(c, &r);
    double *acts = mmd_malloc((size_t)(r.L + 1) * r.maxw, sizeof *acts, "reference MLP activations");
    double *d = mmd_malloc(2 * (size_t)r.maxw, sizeof *d, "reference MLP gradients");
    if (!acts || !d) {
        free(acts);
        free(d);
        return MMD_ERR_NOMEM;
    }
    for (size_t row = 0; row < n; row++) {
        ref_row(&r, c, params, pos + 3 * row, acts);
        double v[4], dv[4];
        mmd_mlp_ref_map(acts + (size_t)r.L * r.maxw, v, dv);
        double *dz = d, *dx = d + r.maxw;
        for (int j = 0; j < 4; j++) dz[j] = dout[4 * row + j] * dv[j];
        for (int l = r.L - 1; l >= 0; l--) {
            const double *x = acts + (size_t)l * r.maxw;
            const double *W = params + r.woff[l];
            double *gW = grads + r.woff[l], *gb = grads + r.boff[l];
            int ni = r.w[l], no = r.w[l + 1];
            for (int o = 0; o < no; o++) gb[o] += dz[o];
            for (int i = 0; i < ni; i++)
                for (int o = 0; o < no; o++) gW[(size_t)i * no + o] += x[i] * dz[o];
            if (l == 0) break;
            /* into the ReLU that produced x: x > 0 exactly where it was active */
            for (int i = 0; i < ni; i++) {
                double s = 0.0;
                for (int o = 0; o < no; o++) s += dz[o] * W[(size_t)i * no + o];
                dx[i] = x[i] > 0.0 ? s : 0.0;
            }
            double *t = dz;
            dz = dx;
            dx = t;
        }
    }
    free(acts);
    free(d);
    return MMD_OK;
}
