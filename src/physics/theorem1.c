/* Theorem 1 (SPEC 3): single-bounce lobe scattering off a square plate versus the exact
 * specular path, by deterministic quadrature of the bistatic patch formula, plus the
 * Fibonacci-ray estimator of the SPEC's prototype. Derivation in docs/physics.md. */
#include "mmd_physics.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include "phys_vec.h"

typedef struct thm1_geom {
    double tx[3], rx[3];
    double half; /* half side of the plate; huge for an unbounded plane */
    int alpha, nc;
    double x_min; /* x below it gives x^alpha < 1e-18: skipped */
    double A, coef[MMD_LOBE_NCOEF_MAX];
} thm1_geom;

static mmd_status thm1_setup(const mmd_thm1 *c, thm1_geom *g)
{
    if (!(c->d_tx_m > 0 && c->d_rx_m > 0 && isfinite(c->d_tx_m) && isfinite(c->d_rx_m)))
        return mmd_error(MMD_ERR_INVALID, "theorem1: distances must be finite and > 0 (got %g, %g)",
                         c->d_tx_m, c->d_rx_m);
    if (!(c->incidence_deg >= 0 && c->incidence_deg < 90))
        return mmd_error(MMD_ERR_INVALID, "theorem1: incidence_deg must be in [0, 90) (got %g)",
                         c->incidence_deg);
    double th = c->incidence_deg * M_PI / 180.0;
    v3_set(g->tx, -c->d_tx_m * sin(th), 0, c->d_tx_m * cos(th));
    v3_set(g->rx, c->d_rx_m * sin(th), 0, c->d_rx_m * cos(th));
    /* "Unbounded": the integrand falls like 1/R^5 (R = distance on the plate), so a plate
     * 1e4 times the path length holds all but ~1e-12 of the power. */
    double big = 1e4 * (c->d_tx_m + c->d_rx_m);
    g->half = (c->plate_m > 0 && isfinite(c->plate_m)) ? fmin(0.5 * c->plate_m, big) : big;
    g->alpha = c->alpha;
    int n;
    mmd_status st = mmd_lobe_coeffs(c->alpha, &g->A, g->coef, &n);
    if (st != MMD_OK) return st;
    g->nc = mmd_lobe_ncoef_needed(g->A, g->coef, n, 1e-16);
    g->x_min = pow(1e-18, 1.0 / c->alpha);
    return MMD_OK;
}

/* Lobe radiance factor at plate point P = (x, y, 0) for the TX -> P -> RX geometry:
 * cos(theta_i) f(k_s) / (r1^2 r2^2) (times dA it is the patch's share, docs/physics.md).
 * Also returns, through fib_w, f / r2^2 (the per-ray weight of the Fibonacci form). */
static double thm1_integrand(const thm1_geom *g, double x, double y, double *fib_w)
{
    double ki[3] = {x - g->tx[0], y - g->tx[1], -g->tx[2]};
    double ks[3] = {g->rx[0] - x, g->rx[1] - y, g->rx[2]};
    double r1 = v3_normalize(ki), r2 = v3_normalize(ks);
    double cos_i = -ki[2];                     /* n = +z faces the TX */
    double kr[3] = {ki[0], ki[1], -ki[2]};     /* mirror about z = 0 */
    double xl = 0.5 * (1.0 + v3_dot(kr, ks));
    /* Where x^alpha < 1e-18 the point cannot matter (docs/physics.md bounds the total at
     * ~1e-14 relative); most of an unbounded plate is such, and skipping it saves the
     * pow() and the Horner evaluation of F. */
    if (xl < g->x_min || !(ks[2] > 0)) {
        if (fib_w) *fib_w = 0;
        return 0;
    }
    double f = pow(fmin(xl, 1.0), g->alpha) / mmd_lobe_norm_poly(g->A, g->coef, g->nc, cos_i);
    if (fib_w) *fib_w = f / (r2 * r2);
    return cos_i * f / (r1 * r1 * r2 * r2);
}

/* Quadrature along one axis of the plate. The integrand has peaks at a few known
 * "features" (the specular point, and the feet of the TX and RX, where cos(theta_i)/r1^2
 * grows like 1/h^2 near grazing) and is smooth elsewhere, with a power-law tail. Panels
 * (8-node Gauss-Legendre) therefore follow a local length h(t) = min_k h_k(|t - p_k|):
 * s_k/4 at feature k, growing by 1.25 per panel out to 8 s_k and by 1.6 beyond (8 nodes
 * on a panel [a, 1.6 a] of a function singular only near 0 are accurate to ~1e-9).
 * Features and the plate edges are panel boundaries; each segment between them is
 * filled from both ends toward the middle. */
typedef struct axis_feat { double p, s; } axis_feat;

static double local_h(const axis_feat *f, int nf, double t)
{
    double h = INFINITY;
    for (int k = 0; k < nf; k++) {
        double d = fabs(t - f[k].p), s = f[k].s;
        double hk = d < 8 * s ? 0.25 * (s + d) : 2.25 * s + 0.6 * (d - 8 * s);
        h = fmin(h, hk);
    }
    return h;
}

typedef struct node_buf { double *x, *w; int n, cap; } node_buf;

static int push_panel(node_buf *b, double lo, double hi, const double *gx, const double *gw, int m)
{
    if (b->n + m > b->cap) {
        int cap = b->cap ? 2 * b->cap : 1024;
        double *x = realloc(b->x, sizeof(double) * cap), *w = realloc(b->w, sizeof(double) * cap);
        if (x) b->x = x;
        if (w) b->w = w;
        if (!x || !w) return -1;
        b->cap = cap;
    }
    for (int i = 0; i < m; i++) {
        b->x[b->n] = lo + 0.5 * (hi - lo) * (gx[i] + 1.0);
        b->w[b->n++] = 0.5 * (hi - lo) * gw[i];
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nodes on [-half, half]; returns the count (caller frees *px, *pw), -1 without memory. */
static int axis_nodes(double half, const axis_feat *f, int nf, double **px, double **pw)
{
    enum { M = 8 };
    double gx[M], gw[M], br[8];
    mmd_gauss_legendre(M, gx, gw);
    int nb = 0;
    br[nb++] = -half, br[nb++] = half;
    for (int k = 0; k < nf && nb < 8; k++)
        if (f[k].p > -half && f[k].p < half) br[nb++] = f[k].p;
    qsort(br, (size_t)nb, sizeof br[0], cmp_double);
    node_buf b = {0};
    for (int k = 0; k + 1 < nb; k++) {
        double lo = br[k], hi = br[k + 1];
        if (!(hi - lo > 1e-12 * half)) continue; /* coinciding features */
        /* fronts move inward, the one with the finer local length first */
        double l = lo, r = hi;
        for (;;) {
            double hl = local_h(f, nf, l), hr = local_h(f, nf, r);
            if (r - l <= fmax(hl, hr)) break;
            if (hl <= hr) {
                if (push_panel(&b, l, l + hl, gx, gw, M)) goto oom;
                l += hl;
            } else {
                if (push_panel(&b, r - hr, r, gx, gw, M)) goto oom;
                r -= hr;
            }
        }
        if (push_panel(&b, l, r, gx, gw, M)) goto oom;
    }
    *px = b.x, *pw = b.w;
    return b.n;
oom:
    free(b.x), free(b.w);
    return -1;
}

double mmd_theorem1_deviation_db(const mmd_thm1 *c)
{
    thm1_geom g;
    if (thm1_setup(c, &g) != MMD_OK) return NAN;
    /* Lobe angular width: x^alpha ~ exp(-alpha gamma^2/4), sigma_gamma = sqrt(2/alpha);
     * moving P by dy turns k_s against k_r by dy (1/r1 + 1/r2), so the spot on the plate
     * is sigma_y = sigma_gamma r1 r2/(r1 + r2) wide, and 1/cos(theta_i) wider along x.
     * The feet of TX and RX: peaks of width h1 = TX height, h2 = RX height. */
    double d1 = c->d_tx_m, d2 = c->d_rx_m;
    double sy = sqrt(2.0 / c->alpha) * d1 * d2 / (d1 + d2);
    double ct = cos(c->incidence_deg * M_PI / 180.0);
    double sx = fmin(sy / fmax(ct, 1e-9), 2 * g.half);
    double h1 = g.tx[2], h2 = g.rx[2];
    axis_feat fx[3] = {{0, sx}, {g.tx[0], h1}, {g.rx[0], h2}};
    axis_feat fy[1] = {{0, fmin(sy, fmin(h1, h2))}};
    double *x = NULL, *wx = NULL, *y = NULL, *wy = NULL;
    int nx = axis_nodes(g.half, fx, 3, &x, &wx), ny = nx < 0 ? -1 : axis_nodes(g.half, fy, 1, &y, &wy);
    if (nx < 0 || ny < 0) {
        free(x), free(wx);
        mmd_error(MMD_ERR_NOMEM, "theorem1: out of memory for quadrature nodes");
        return NAN;
    }
    double sum = 0;
    for (int j = 0; j < ny; j++) {
        double row = 0;
        for (int i = 0; i < nx; i++) row += wx[i] * thm1_integrand(&g, x[i], y[j], NULL);
        sum += wy[j] * row;
    }
    free(x), free(wx), free(y), free(wy);
    /* lobe / specular = [(lambda/4pi)^2 sum] / [(lambda/4pi)^2 / (d1 + d2)^2] */
    return mmd_db(sum * (d1 + d2) * (d1 + d2));
}

double mmd_theorem1_deviation_fib_db(const mmd_thm1 *c, long n_rays)
{
    thm1_geom g;
    if (thm1_setup(c, &g) != MMD_OK) return NAN;
    if (n_rays < 1) {
        mmd_error(MMD_ERR_INVALID, "theorem1: n_rays must be >= 1 (got %ld)", n_rays);
        return NAN;
    }
    /* Fibonacci sphere: z_i = 1 - (2i+1)/N, phi_i = 2 pi i / golden ratio. Every ray
     * carries dOmega = 4 pi/N of the TX power. */
    const double ga = M_PI * (3.0 - sqrt(5.0));
    double sum = 0;
    for (long i = 0; i < n_rays; i++) {
        double z = 1.0 - (2.0 * i + 1.0) / n_rays;
        if (!(z < 0)) continue; /* must go down to the plate */
        double s = sqrt(fmax(0.0, 1.0 - z * z)), ph = ga * (double)i;
        double t = -g.tx[2] / z;
        double x = g.tx[0] + t * s * cos(ph), y = g.tx[1] + t * s * sin(ph);
        if (fabs(x) > g.half || fabs(y) > g.half) continue;
        double fw;
        thm1_integrand(&g, x, y, &fw);
        sum += fw;
    }
    double d = c->d_tx_m + c->d_rx_m;
    return mmd_db(4.0 * M_PI / n_rays * sum * d * d);
}

/* The sweep and the map are many independent evaluations: spread them over
 * mmd_num_threads() threads. Inputs are validated before the threads start, so a
 * worker can only fail for memory, and mmd_error's thread-local message is re-set in
 * the calling thread. */
typedef struct thm1_job {
    mmd_thm1 *cases;
    double *out;
    int n, next, failed;
    pthread_mutex_t lock;
} thm1_job;

static void *thm1_worker(void *arg)
{
    thm1_job *j = arg;
    for (;;) {
        pthread_mutex_lock(&j->lock);
        int k = j->next++;
        pthread_mutex_unlock(&j->lock);
        if (k >= j->n) break;
        j->out[k] = mmd_theorem1_deviation_db(&j->cases[k]);
        if (isnan(j->out[k])) {
            pthread_mutex_lock(&j->lock);
            j->failed = 1;
            pthread_mutex_unlock(&j->lock);
        }
    }
    return NULL;
}

static mmd_status thm1_run_all(mmd_thm1 *cases, int n, double *out)
{
    for (int k = 0; k < n; k++) {
        thm1_geom g;
        mmd_status st = thm1_setup(&cases[k], &g);
        if (st != MMD_OK) return st;
    }
    thm1_job job = {cases, out, n, 0, 0, PTHREAD_MUTEX_INITIALIZER};
    int nt = mmd_num_threads();
    if (nt > n) nt = n;
    if (nt > 64) nt = 64;
    pthread_t th[64];
    int started = 0;
    for (int t = 1; t < nt; t++) {
        if (pthread_create(&th[started], NULL, thm1_worker, &job) != 0) break;
        started++;
    }
    thm1_worker(&job); /* the calling thread works too (and alone if none started) */
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
    pthread_mutex_destroy(&job.lock);
    if (job.failed) return mmd_error(MMD_ERR_NOMEM, "theorem1: out of memory for quadrature nodes");
    return MMD_OK;
}

mmd_status mmd_theorem1_sweep(const mmd_thm1 *base, const double *inc_deg, int n, double *out_db)
{
    if (n <= 0) return MMD_OK;
    mmd_thm1 *cases = mmd_malloc((size_t)n, sizeof *cases, "theorem1 sweep");
    if (!cases) return MMD_ERR_NOMEM;
    for (int i = 0; i < n; i++) cases[i] = *base, cases[i].incidence_deg = inc_deg[i];
    mmd_status st = thm1_run_all(cases, n, out_db);
    free(cases);
    return st;
}

mmd_status mmd_theorem1_max_map(const mmd_thm1 *base, const double *d_tx_m, int n_tx,
                                const double *d_rx_m, int n_rx, const double *inc_deg,
                                int n_inc, double *out_db)
{
    if (n_tx <= 0 || n_rx <= 0) return MMD_OK;
    if (n_inc <= 0)
        return mmd_error(MMD_ERR_INVALID, "theorem1 map: needs at least one incidence angle");
    size_t n = (size_t)n_tx * (size_t)n_rx * (size_t)n_inc;
    if (n > 100000000) return mmd_error(MMD_ERR_INVALID, "theorem1 map: %zu cases is too many", n);
    mmd_thm1 *cases = mmd_malloc(n, sizeof *cases, "theorem1 map");
    double *dev = mmd_malloc(n, sizeof *dev, "theorem1 map");
    if (!cases || !dev) {
        free(cases), free(dev);
        return MMD_ERR_NOMEM;
    }
    size_t k = 0;
    for (int i = 0; i < n_tx; i++)
        for (int j = 0; j < n_rx; j++)
            for (int a = 0; a < n_inc; a++, k++) {
                cases[k] = *base;
                cases[k].d_tx_m = d_tx_m[i], cases[k].d_rx_m = d_rx_m[j];
                cases[k].incidence_deg = inc_deg[a];
            }
    mmd_status st = thm1_run_all(cases, (int)n, dev);
    for (size_t c = 0; st == MMD_OK && c < (size_t)n_tx * n_rx; c++) {
        double worst = 0;
        for (int a = 0; a < n_inc; a++) worst = fmax(worst, fabs(dev[c * n_inc + a]));
        out_db[c] = worst;
    }
    free(cases), free(dev);
    return st;
}
