/* Peak metrics of SPEC 5 (paper Tables 4/5), mmd_eval.h; definitions in
 * docs/evaluation.md. Plain C on the host: a few hundred maps of 10^4-10^5 bins are
 * evaluated in well under a second, and the numbers must not depend on a device. */
#include "mmd_eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEG (M_PI / 180.0)
/* A grid "spans 360 deg" when its bins cover the circle to this tolerance (degrees). */
#define WRAP_TOL 1e-6

mmd_eval_options mmd_eval_defaults(void)
{
    mmd_eval_options o;
    memset(&o, 0, sizeof o);
    o.dynamic_range_db = 20;
    o.match_threshold_deg = 5;
    o.n_k = 2;
    o.k[0] = 1;
    o.k[1] = 5;
    return o;
}

void mmd_eval_options_from_cfg(const mmd_cfg_evaluate *c, mmd_eval_options *o)
{
    o->dynamic_range_db = c->dynamic_range_db;
    o->match_threshold_deg = c->match_threshold_deg;
}

static mmd_status check_options(const mmd_eval_options *o)
{
    if (!(o->dynamic_range_db >= 0) || !isfinite(o->dynamic_range_db))
        return mmd_error(MMD_ERR_INVALID, "evaluate.dynamic_range_db: %g; expected a finite number >= 0 dB",
                         o->dynamic_range_db);
    if (!(o->match_threshold_deg >= 0 && o->match_threshold_deg <= 180))
        return mmd_error(MMD_ERR_INVALID, "evaluate.match_threshold_deg: %g; expected a number in [0, 180] deg",
                         o->match_threshold_deg);
    if (o->n_k < 1 || o->n_k > MMD_EVAL_MAX_KS)
        return mmd_error(MMD_ERR_INVALID, "evaluation: %d top-K lists; expected 1 to %d", o->n_k, MMD_EVAL_MAX_KS);
    for (int i = 0; i < o->n_k; i++)
        if (o->k[i] < 1 || o->k[i] > MMD_EVAL_MAX_K)
            return mmd_error(MMD_ERR_INVALID, "evaluation: K = %d; expected 1 to %d", o->k[i], MMD_EVAL_MAX_K);
    return MMD_OK;
}

static void unit(double az, double el, double u[3])
{
    double ce = cos(el * DEG);
    u[0] = ce * cos(az * DEG);
    u[1] = ce * sin(az * DEG);
    u[2] = sin(el * DEG);
}

double mmd_eval_angle_deg(double az1, double el1, double az2, double el2)
{
    double a[3], b[3];
    unit(az1, el1, a);
    unit(az2, el2, b);
    /* atan2(|a x b|, a.b): acos loses half the digits near 0, where matches live */
    double cx = a[1] * b[2] - a[2] * b[1], cy = a[2] * b[0] - a[0] * b[2], cz = a[0] * b[1] - a[1] * b[0];
    return atan2(sqrt(cx * cx + cy * cy + cz * cz), a[0] * b[0] + a[1] * b[1] + a[2] * b[2]) / DEG;
}

/* ---------------------------------------------------------------------------------------
 * Peaks
 */

typedef struct peak_scan {
    const float *s;
    int n_az, n_el;
    int n_use; /* azimuth columns taken part (a repeated seam column is left out) */
    int wrap;
} peak_scan;

/* Neighbour (j + dj, i + di), or -1 outside the grid. */
static long neighbour(const peak_scan *g, int j, int i, int dj, int di)
{
    int jj = j + dj, ii = i + di;
    if (jj < 0 || jj >= g->n_el) return -1;
    if (ii < 0 || ii >= g->n_use) {
        if (!g->wrap) return -1;
        ii = (ii + g->n_use) % g->n_use;
    }
    return (long)jj * g->n_az + ii;
}

static int cmp_peak(const void *pa, const void *pb)
{
    const mmd_eval_peak *a = pa, *b = pb;
    if (a->power_db != b->power_db) return a->power_db > b->power_db ? -1 : 1;
    if (a->i_el != b->i_el) return a->i_el < b->i_el ? -1 : 1;
    return (a->i_az > b->i_az) - (a->i_az < b->i_az);
}

mmd_status mmd_eval_find_peaks(const float *spec, int n_az, int n_el, const mmd_cfg_grid *az,
                               const mmd_cfg_grid *el, double dynamic_range_db, mmd_eval_peak *peaks, int max,
                               int *n_found, int *n_all)
{
    *n_found = 0;
    if (n_all) *n_all = 0;
    if (n_az < 1 || n_el < 1 || max < 0)
        return mmd_error(MMD_ERR_INVALID, "peak search: %d x %d bins; expected at least one", n_el, n_az);
    size_t nb = (size_t)n_az * (size_t)n_el;
    double vmax = 0;
    for (size_t b = 0; b < nb; b++) {
        float v = spec[b];
        if (!isfinite(v) || v < 0)
            return mmd_error(MMD_ERR_INVALID, "bin [elevation %zu, azimuth %zu]: power %g; expected a finite linear "
                             "power >= 0",
                             b / (size_t)n_az, b % (size_t)n_az, (double)v);
        if (v > vmax) vmax = v;
    }
    if (!(vmax > 0)) return MMD_OK; /* an empty map has no peaks */
    peak_scan g = {spec, n_az, n_el, n_az, 0};
    double span = az->step * n_az;
    if (n_az > 1 && fabs(az->step * (n_az - 1) - 360.0) <= WRAP_TOL) {
        g.n_use = n_az - 1; /* [-180, 180]: the last column is the first again */
        g.wrap = 1;
    } else if (fabs(span - 360.0) <= WRAP_TOL) {
        g.wrap = 1;
    }
    double vthr = vmax * pow(10.0, -0.1 * dynamic_range_db);
    unsigned char *seen = calloc(nb, 1);
    long *comp = malloc(nb * sizeof *comp);
    size_t cap = 64, n = 0;
    mmd_eval_peak *all = malloc(cap * sizeof *all);
    if (!seen || !comp || !all) {
        free(seen);
        free(comp);
        free(all);
        return mmd_error(MMD_ERR_NOMEM, "out of memory finding peaks of a %d x %d map", n_el, n_az);
    }
    mmd_status st = MMD_OK;
    for (int j = 0; j < n_el && st == MMD_OK; j++) {
        for (int i = 0; i < g.n_use; i++) {
            long b0 = (long)j * n_az + i;
            float v = spec[b0];
            if (seen[b0] || !(v > 0) || !((double)v >= vthr)) continue;
            /* the plateau of b0: bins of the same value connected through the 8-neighbourhood;
             * it is a peak when no bin next to it is higher */
            size_t nc = 0, head = 0;
            comp[nc++] = b0;
            seen[b0] = 1;
            int is_max = 1;
            while (head < nc) {
                long b = comp[head++];
                int jb = (int)(b / n_az), ib = (int)(b % n_az);
                for (int dj = -1; dj <= 1; dj++)
                    for (int di = -1; di <= 1; di++) {
                        if (!dj && !di) continue;
                        long q = neighbour(&g, jb, ib, dj, di);
                        if (q < 0) continue;
                        if (spec[q] > v) is_max = 0;
                        else if (spec[q] == v && !seen[q]) {
                            seen[q] = 1;
                            comp[nc++] = q;
                        }
                    }
            }
            if (!is_max) continue;
            /* representative: the plateau bin nearest its mean direction (one bin for a
             * strict maximum; the middle of a ridge, also across the azimuth seam) */
            long rep = comp[0];
            if (nc > 1) {
                double m[3] = {0, 0, 0}, u[3];
                for (size_t k = 0; k < nc; k++) {
                    unit(az->start + az->step * (double)(comp[k] % n_az), el->start + el->step * (double)(comp[k] / n_az), u);
                    m[0] += u[0], m[1] += u[1], m[2] += u[2];
                }
                double best = -2;
                for (size_t k = 0; k < nc; k++) {
                    unit(az->start + az->step * (double)(comp[k] % n_az), el->start + el->step * (double)(comp[k] / n_az), u);
                    double d = u[0] * m[0] + u[1] * m[1] + u[2] * m[2];
                    /* equal (to rounding): the first in scan order (comp is not in scan order) */
                    if (d > best + 1e-12 || (fabs(d - best) <= 1e-12 && comp[k] < rep)) {
                        best = d;
                        rep = comp[k];
                    }
                }
            }
            if (n == cap) {
                mmd_eval_peak *t = realloc(all, 2 * cap * sizeof *all);
                if (!t) {
                    st = mmd_error(MMD_ERR_NOMEM, "out of memory finding peaks");
                    break;
                }
                all = t;
                cap *= 2;
            }
            mmd_eval_peak *p = &all[n++];
            p->i_az = (int)(rep % n_az);
            p->i_el = (int)(rep / n_az);
            p->az_deg = az->start + az->step * p->i_az;
            p->el_deg = el->start + el->step * p->i_el;
            p->power_db = 10.0 * log10((double)v);
        }
    }
    if (st == MMD_OK) {
        qsort(all, n, sizeof *all, cmp_peak);
        int k = (size_t)max < n ? max : (int)n;
        if (k > 0) memcpy(peaks, all, (size_t)k * sizeof *all);
        *n_found = k;
        if (n_all) *n_all = (int)n;
    }
    free(seen);
    free(comp);
    free(all);
    return st;
}

/* ---------------------------------------------------------------------------------------
 * Matching: the Hungarian algorithm (shortest augmenting paths with potentials, O(n^3))
 * on a square matrix padded with zero-cost dummies. A pair within the threshold costs
 * its angle minus a constant larger than any sum of angles, so the optimum first has the
 * most pairs and then the smallest total angle; pairs beyond the threshold cost 0, the
 * same as leaving both peaks unmatched.
 */

#define PAIR_BONUS 1e6

static void hungarian(int n, const double *cost, int *row_of_col)
{
    double u[MMD_EVAL_MAX_K + 1], v[MMD_EVAL_MAX_K + 1], minv[MMD_EVAL_MAX_K + 1];
    int p[MMD_EVAL_MAX_K + 1], way[MMD_EVAL_MAX_K + 1], used[MMD_EVAL_MAX_K + 1];
    for (int i = 0; i <= n; i++) u[i] = v[i] = 0, p[i] = way[i] = 0;
    for (int i = 1; i <= n; i++) {
        p[0] = i;
        int j0 = 0;
        for (int j = 0; j <= n; j++) minv[j] = INFINITY, used[j] = 0;
        do {
            used[j0] = 1;
            int i0 = p[j0], j1 = 0;
            double delta = INFINITY;
            for (int j = 1; j <= n; j++) {
                if (used[j]) continue;
                double cur = cost[(i0 - 1) * n + (j - 1)] - u[i0] - v[j];
                if (cur < minv[j]) minv[j] = cur, way[j] = j0;
                if (minv[j] < delta) delta = minv[j], j1 = j;
            }
            for (int j = 0; j <= n; j++) {
                if (used[j]) u[p[j]] += delta, v[j] -= delta;
                else minv[j] -= delta;
            }
            j0 = j1;
        } while (p[j0] != 0);
        do {
            int j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
        } while (j0);
    }
    for (int j = 1; j <= n; j++) row_of_col[j - 1] = p[j] - 1;
}

mmd_status mmd_eval_match(const mmd_eval_peak *pred, int n_pred, const mmd_eval_peak *truth, int n_truth,
                          double threshold_deg, mmd_eval_topk *out)
{
    memset(out, 0, sizeof *out);
    if (n_pred < 0 || n_truth < 0 || n_pred > MMD_EVAL_MAX_K || n_truth > MMD_EVAL_MAX_K)
        return mmd_error(MMD_ERR_INVALID, "peak matching: %d and %d peaks; at most %d each", n_pred, n_truth,
                         MMD_EVAL_MAX_K);
    out->k = n_pred > n_truth ? n_pred : n_truth;
    out->n_pred = n_pred;
    out->n_truth = n_truth;
    for (int i = 0; i < MMD_EVAL_MAX_K; i++) {
        out->match[i] = -1;
        out->err_deg[i] = out->perr_db[i] = NAN;
    }
    int n = out->k;
    double cost[MMD_EVAL_MAX_K * MMD_EVAL_MAX_K], ang[MMD_EVAL_MAX_K * MMD_EVAL_MAX_K];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double a = i < n_pred && j < n_truth
                           ? mmd_eval_angle_deg(pred[i].az_deg, pred[i].el_deg, truth[j].az_deg, truth[j].el_deg)
                           : INFINITY;
            ang[i * n + j] = a;
            cost[i * n + j] = a <= threshold_deg ? a - PAIR_BONUS : 0.0;
        }
    int row_of_col[MMD_EVAL_MAX_K];
    if (n > 0) hungarian(n, cost, row_of_col);
    double se = 0, sp = 0;
    for (int j = 0; j < n; j++) {
        int i = row_of_col[j];
        if (i < 0 || i >= n_pred || j >= n_truth || !(ang[i * n + j] <= threshold_deg)) continue;
        out->match[i] = j;
        out->err_deg[i] = ang[i * n + j];
        out->perr_db[i] = fabs(pred[i].power_db - truth[j].power_db);
        out->n_matched++;
        se += out->err_deg[i];
        sp += out->perr_db[i];
    }
    out->f1 = n_pred + n_truth ? 2.0 * out->n_matched / (double)(n_pred + n_truth) : 1.0;
    out->aae_deg = out->n_matched ? se / out->n_matched : NAN;
    out->ape_db = out->n_matched ? sp / out->n_matched : NAN;
    return MMD_OK;
}

/* ---------------------------------------------------------------------------------------
 * Per pose and summary
 */

static double sum_db(const float *s, size_t n)
{
    double t = 0;
    for (size_t i = 0; i < n; i++) t += s[i];
    return t > 0 ? 10.0 * log10(t) : -INFINITY;
}

static int kmax_of(const mmd_eval_options *o)
{
    int k = 0;
    for (int i = 0; i < o->n_k; i++)
        if (o->k[i] > k) k = o->k[i];
    return k;
}

mmd_status mmd_eval_pose_metrics(const float *pred, const float *truth, int n_az, int n_el,
                                 const mmd_cfg_grid *az, const mmd_cfg_grid *el, const mmd_eval_options *o,
                                 mmd_eval_pose *out)
{
    memset(out, 0, sizeof *out);
    mmd_status st = check_options(o);
    if (st != MMD_OK) return st;
    int kmax = kmax_of(o);
    st = mmd_eval_find_peaks(pred, n_az, n_el, az, el, o->dynamic_range_db, out->pred, kmax, &out->n_listed_pred,
                             &out->n_peaks_pred);
    if (st != MMD_OK) return mmd_error(st, "predicted spectrum: %s", mmd_last_error());
    st = mmd_eval_find_peaks(truth, n_az, n_el, az, el, o->dynamic_range_db, out->truth, kmax, &out->n_listed_truth,
                             &out->n_peaks_truth);
    if (st != MMD_OK) return mmd_error(st, "ground-truth spectrum: %s", mmd_last_error());
    for (int t = 0; t < o->n_k && st == MMD_OK; t++) {
        int k = o->k[t];
        int np = out->n_listed_pred < k ? out->n_listed_pred : k, nt = out->n_listed_truth < k ? out->n_listed_truth : k;
        st = mmd_eval_match(out->pred, np, out->truth, nt, o->match_threshold_deg, &out->top[t]);
        out->top[t].k = k;
    }
    size_t nb = (size_t)n_az * (size_t)n_el;
    out->power_pred_db = sum_db(pred, nb);
    out->power_truth_db = sum_db(truth, nb);
    out->power_err_db = isfinite(out->power_pred_db) && isfinite(out->power_truth_db)
                            ? fabs(out->power_pred_db - out->power_truth_db)
                            : NAN;
    return st;
}

void mmd_eval_summarize(const mmd_eval_pose *poses, size_t n, const mmd_eval_options *o, mmd_eval_summary *s)
{
    memset(s, 0, sizeof *s);
    s->n_poses = n;
    s->opt = *o;
    for (int t = 0; t < o->n_k; t++) {
        mmd_eval_topk_summary *q = &s->top[t];
        q->k = o->k[t];
        double se = 0, sp = 0, f1 = 0;
        for (size_t p = 0; p < n; p++) {
            const mmd_eval_topk *m = &poses[p].top[t];
            q->n_pred += (size_t)m->n_pred;
            q->n_truth += (size_t)m->n_truth;
            q->n_matched += (size_t)m->n_matched;
            f1 += m->f1;
            for (int i = 0; i < m->n_pred; i++)
                if (m->match[i] >= 0) se += m->err_deg[i], sp += m->perr_db[i];
        }
        q->precision = q->n_pred ? (double)q->n_matched / (double)q->n_pred : 1.0;
        q->recall = q->n_truth ? (double)q->n_matched / (double)q->n_truth : 1.0;
        q->f1 = q->n_pred + q->n_truth ? 2.0 * (double)q->n_matched / (double)(q->n_pred + q->n_truth) : 1.0;
        q->f1_pose_mean = n ? f1 / (double)n : NAN;
        q->aae_deg = q->n_matched ? se / (double)q->n_matched : NAN;
        q->ape_db = q->n_matched ? sp / (double)q->n_matched : NAN;
    }
    double pe = 0;
    for (size_t p = 0; p < n; p++)
        if (!isnan(poses[p].power_err_db)) pe += poses[p].power_err_db, s->n_power++;
    s->power_error_db = s->n_power ? pe / (double)s->n_power : NAN;
}

mmd_status mmd_eval_spectra(const float *pred, const float *truth, size_t n, int n_az, int n_el,
                            const mmd_cfg_grid *az, const mmd_cfg_grid *el, const mmd_eval_options *o,
                            mmd_eval_pose **per_pose, mmd_eval_summary *s)
{
    if (per_pose) *per_pose = NULL;
    memset(s, 0, sizeof *s);
    mmd_status st = check_options(o);
    if (st != MMD_OK) return st;
    if (n_az != az->count || n_el != el->count)
        return mmd_error(MMD_ERR_INVALID, "evaluation: spectra of %d x %d bins on grids of %d x %d", n_el, n_az,
                         el->count, az->count);
    mmd_eval_pose *pp = mmd_calloc(n ? n : 1, sizeof *pp, "per-pose metrics");
    if (!pp) return MMD_ERR_NOMEM;
    size_t per = (size_t)n_az * (size_t)n_el;
    for (size_t k = 0; k < n && st == MMD_OK; k++) {
        st = mmd_eval_pose_metrics(pred + k * per, truth + k * per, n_az, n_el, az, el, o, &pp[k]);
        if (st != MMD_OK) st = mmd_error(st, "pose %zu: %s", k, mmd_last_error());
    }
    if (st == MMD_OK) mmd_eval_summarize(pp, n, o, s);
    if (st == MMD_OK && per_pose) *per_pose = pp;
    else free(pp);
    return st;
}

/* ---------------------------------------------------------------------------------------
 * Output
 */

static void kv_num(mmd_json *j, const char *key, double v)
{
    if (isfinite(v)) mmd_json_kv_double(j, key, v);
    else {
        mmd_json_key(j, key);
        mmd_json_null(j);
    }
}

void mmd_eval_json(mmd_json *j, const mmd_eval_summary *s)
{
    char key[32];
    for (int t = 0; t < s->opt.n_k; t++) {
        const mmd_eval_topk_summary *q = &s->top[t];
        snprintf(key, sizeof key, "top%d", q->k);
        mmd_json_key(j, key);
        mmd_json_begin_object(j);
        kv_num(j, "f1", q->f1);
        kv_num(j, "aae_deg", q->aae_deg);
        kv_num(j, "ape_db", q->ape_db);
        kv_num(j, "precision", q->precision);
        kv_num(j, "recall", q->recall);
        kv_num(j, "f1_pose_mean", q->f1_pose_mean);
        mmd_json_kv_int(j, "matched", (long long)q->n_matched);
        mmd_json_kv_int(j, "pred_peaks", (long long)q->n_pred);
        mmd_json_kv_int(j, "truth_peaks", (long long)q->n_truth);
        mmd_json_end_object(j);
    }
    kv_num(j, "power_error_db", s->power_error_db);
    mmd_json_kv_int(j, "power_poses", (long long)s->n_power);
    mmd_json_kv_int(j, "n_poses", (long long)s->n_poses);
}

void mmd_eval_json_thresholds(mmd_json *j, const mmd_eval_options *o)
{
    mmd_json_key(j, "thresholds");
    mmd_json_begin_object(j);
    mmd_json_kv_double(j, "dynamic_range_db", o->dynamic_range_db);
    mmd_json_kv_double(j, "match_threshold_deg", o->match_threshold_deg);
    mmd_json_key(j, "k");
    mmd_json_begin_array_inline(j);
    for (int t = 0; t < o->n_k; t++) mmd_json_int(j, o->k[t]);
    mmd_json_end_array(j);
    mmd_json_kv_string(j, "peaks", "local maxima, 8-neighbourhood, azimuth wraps on 360-degree grids, plateaus "
                                   "once, within dynamic_range_db of the map maximum");
    mmd_json_kv_string(j, "matching", "optimal one-to-one (Hungarian): most pairs within match_threshold_deg, "
                                      "then smallest total angle");
    mmd_json_kv_string(j, "f1_pooling", "2 matched / (pred_peaks + truth_peaks), summed over poses");
    mmd_json_kv_string(j, "power", "10 log10 of each spectrum's sum; mean |difference| over poses where both are > 0");
    mmd_json_end_object(j);
}

static void put_num(char *buf, size_t *len, double v, char sep)
{
    if (isfinite(v)) *len += (size_t)mmd_fmt_double(buf + *len, v);
    else *len += (size_t)sprintf(buf + *len, "%s", isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
    buf[(*len)++] = sep;
}

mmd_status mmd_eval_write_csv(const char *path, const mmd_eval_pose *p, size_t n, const mmd_cfg_pose *poses,
                              const mmd_eval_options *o)
{
    /* per row: at most 8 + 6 n_k + 10 numbers of <= 24 characters */
    size_t row = (size_t)(18 + 6 * o->n_k) * 26 + 2;
    char *buf = mmd_malloc(1024 + n * row, 1, "per-pose CSV");
    if (!buf) return MMD_ERR_NOMEM;
    size_t len = (size_t)sprintf(buf, "pose");
    if (poses) len += (size_t)sprintf(buf + len, ",x_m,y_m,z_m,yaw_deg");
    len += (size_t)sprintf(buf + len, ",pred_peaks,truth_peaks,pred_az_deg,pred_el_deg,pred_db,truth_az_deg,"
                                      "truth_el_deg,truth_db");
    for (int t = 0; t < o->n_k; t++)
        len += (size_t)sprintf(buf + len, ",top%d_pred,top%d_truth,top%d_matched,top%d_f1,top%d_aae_deg,top%d_ape_db",
                               o->k[t], o->k[t], o->k[t], o->k[t], o->k[t], o->k[t]);
    len += (size_t)sprintf(buf + len, ",power_pred_db,power_truth_db,power_err_db\n");
    for (size_t k = 0; k < n; k++) {
        const mmd_eval_pose *e = &p[k];
        len += (size_t)sprintf(buf + len, "%zu,", k);
        if (poses) {
            put_num(buf, &len, poses[k].position_m[0], ',');
            put_num(buf, &len, poses[k].position_m[1], ',');
            put_num(buf, &len, poses[k].position_m[2], ',');
            put_num(buf, &len, poses[k].yaw_deg, ',');
        }
        len += (size_t)sprintf(buf + len, "%d,%d,", e->n_peaks_pred, e->n_peaks_truth);
        const mmd_eval_peak *a = e->n_listed_pred ? &e->pred[0] : NULL, *b = e->n_listed_truth ? &e->truth[0] : NULL;
        put_num(buf, &len, a ? a->az_deg : NAN, ',');
        put_num(buf, &len, a ? a->el_deg : NAN, ',');
        put_num(buf, &len, a ? a->power_db : NAN, ',');
        put_num(buf, &len, b ? b->az_deg : NAN, ',');
        put_num(buf, &len, b ? b->el_deg : NAN, ',');
        put_num(buf, &len, b ? b->power_db : NAN, ',');
        for (int t = 0; t < o->n_k; t++) {
            const mmd_eval_topk *m = &e->top[t];
            len += (size_t)sprintf(buf + len, "%d,%d,%d,", m->n_pred, m->n_truth, m->n_matched);
            put_num(buf, &len, m->f1, ',');
            put_num(buf, &len, m->aae_deg, ',');
            put_num(buf, &len, m->ape_db, ',');
        }
        put_num(buf, &len, e->power_pred_db, ',');
        put_num(buf, &len, e->power_truth_db, ',');
        put_num(buf, &len, e->power_err_db, '\n');
    }
    mmd_status st = mmd_write_file_atomic(path, buf, len);
    free(buf);
    return st;
}

static void fmt_cell(char *b, size_t cap, const char *fmt, double v)
{
    if (isfinite(v)) snprintf(b, cap, fmt, v);
    else snprintf(b, cap, "-");
}

void mmd_eval_print(FILE *f, const mmd_eval_summary *s, const char *title)
{
    if (title) fprintf(f, "%s\n", title);
    fprintf(f, "%-7s %7s %9s %8s %10s %9s %9s %13s\n", "", "F1", "AAE [deg]", "APE [dB]", "precision", "recall",
            "matched", "peaks p/t");
    for (int t = 0; t < s->opt.n_k; t++) {
        const mmd_eval_topk_summary *q = &s->top[t];
        char f1[32], aae[32], ape[32], pr[32], rc[32], name[16], pk[48];
        fmt_cell(f1, sizeof f1, "%.3f", q->f1);
        fmt_cell(aae, sizeof aae, "%.2f", q->aae_deg);
        fmt_cell(ape, sizeof ape, "%.2f", q->ape_db);
        fmt_cell(pr, sizeof pr, "%.3f", q->precision);
        fmt_cell(rc, sizeof rc, "%.3f", q->recall);
        snprintf(name, sizeof name, "top-%d", q->k);
        snprintf(pk, sizeof pk, "%zu/%zu", q->n_pred, q->n_truth);
        fprintf(f, "%-7s %7s %9s %8s %10s %9s %9zu %13s\n", name, f1, aae, ape, pr, rc, q->n_matched, pk);
    }
    char pe[32];
    fmt_cell(pe, sizeof pe, "%.2f", s->power_error_db);
    fprintf(f, "received-power error: %s dB (mean |diff| over %zu of %zu poses)\n", pe, s->n_power, s->n_poses);
    fprintf(f, "thresholds: dynamic range %g dB, match within %g deg\n", s->opt.dynamic_range_db,
            s->opt.match_threshold_deg);
}
