/*
 * calib_spec.c - calibration of the specular baseline (the paper's "Sionna" arm,
 * issue 6): the materials of an exact-path model fitted to measured spectra with the
 * same loss and optimiser as the directional model (calib_internal.h explains the
 * decomposition; docs/calibration.md "Specular baseline").
 *
 * Why on the host: a specular prediction is a few dozen exact paths per pose, each a
 * closed-form product of Fresnel factors, plus a background that does not move the
 * peaks. Re-weighting the paths costs microseconds; only the paths' bin responses are
 * large, and those are computed once per pose and cached (solver.cache_mb).
 */
#include "calib_internal.h"
#include "mmd_paths.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEG (M_PI / 180.0)

typedef struct spec_rec {
    size_t pose_id;
    double R[9];        /* receiver orientation the paths were solved for */
    mmd_path *paths;
    size_t n_paths;
    float *fixed;       /* nbins: LoS + Monte Carlo diffuse chains at the starting materials */
    float *K;           /* n_paths x nbins: G_RX(u_p) B(u_p, bin) */
    size_t bytes;
} spec_rec;

struct mmd_calib_spec {
    mmd_sim *s;
    mmd_material *start; /* per object */
    size_t nbins;
    int naz, nel;
    double *ub;          /* nbins x 3: the beam direction of each bin */
    spec_rec *cache;
    size_t n_cache, cap_cache, cache_bytes, budget;
    size_t built, hits;
};

mmd_status mmd_calib_spec_create(mmd_sim *s, const mmd_material *start, size_t cache_bytes, mmd_calib_spec **out)
{
    *out = NULL;
    const mmd_experiment *e = s->exp;
    mmd_calib_spec *x = mmd_calloc(1, sizeof *x, "specular calibration");
    if (!x) return MMD_ERR_NOMEM;
    x->s = s;
    x->budget = cache_bytes;
    x->naz = e->aoa.azimuth_deg.count;
    x->nel = e->aoa.elevation_deg.count;
    x->nbins = (size_t)x->naz * x->nel;
    x->start = mmd_malloc(s->n_mat ? s->n_mat : 1, sizeof *x->start, "materials");
    x->ub = mmd_malloc(x->nbins, 3 * sizeof *x->ub, "beam directions");
    if (!x->start || !x->ub) {
        mmd_calib_spec_destroy(x);
        return MMD_ERR_NOMEM;
    }
    memcpy(x->start, start, s->n_mat * sizeof *x->start);
    for (int j = 0; j < x->nel; j++)
        for (int i = 0; i < x->naz; i++) {
            double az = (e->aoa.azimuth_deg.start + i * e->aoa.azimuth_deg.step) * DEG;
            double el = (e->aoa.elevation_deg.start + j * e->aoa.elevation_deg.step) * DEG;
            mmd_dir_from_az_el(az, el, x->ub + 3 * ((size_t)j * x->naz + i));
        }
    *out = x;
    return MMD_OK;
}

static void rec_free(spec_rec *r)
{
    free(r->paths);
    free(r->fixed);
    free(r->K);
    memset(r, 0, sizeof *r);
}

void mmd_calib_spec_destroy(mmd_calib_spec *x)
{
    if (!x) return;
    for (size_t i = 0; i < x->n_cache; i++) rec_free(&x->cache[i]);
    free(x->cache);
    free(x->start);
    free(x->ub);
    free(x);
}

void mmd_calib_spec_stats(const mmd_calib_spec *x, size_t *built, size_t *hits, size_t *bytes)
{
    *built = x->built;
    *hits = x->hits;
    *bytes = x->cache_bytes;
}

/* Set every object's material in the simulator (device tables included). */
static mmd_status push_materials(mmd_sim *s, const mmd_material *m)
{
    mmd_status st = MMD_OK;
    for (uint32_t o = 0; st == MMD_OK && o < s->n_mat; o++) st = mmd_sim_set_material(s, o, &m[o]);
    return st;
}

/* Build the record of one pose: a full specular simulation at the starting materials
 * gives the paths and the spectrum; the paths' share is taken out of it again. */
static mmd_status build_record(mmd_calib_spec *x, const mmd_cfg_pose *pose, size_t pose_id, spec_rec *r)
{
    mmd_sim *s = x->s;
    memset(r, 0, sizeof *r);
    r->pose_id = pose_id;
    mmd_rotation_ypr(pose->yaw_deg * DEG, pose->pitch_deg * DEG, pose->roll_deg * DEG, r->R);
    /* the simulator may hold calibrated materials (predictions between steps) */
    mmd_material *now = mmd_malloc(s->n_mat ? s->n_mat : 1, sizeof *now, "materials");
    if (!now) return MMD_ERR_NOMEM;
    memcpy(now, s->materials, s->n_mat * sizeof *now);
    mmd_status st = push_materials(s, x->start);
    mmd_aoa_result res;
    memset(&res, 0, sizeof res);
    if (st == MMD_OK) st = mmd_sim_aoa_ex(s, pose, &pose_id, 1, NULL, NULL, &res, NULL, NULL);
    mmd_status st2 = push_materials(s, now);
    free(now);
    if (st == MMD_OK) st = st2;
    if (st != MMD_OK) {
        mmd_aoa_result_free(&res);
        return st;
    }
    r->paths = res.paths[0];
    r->n_paths = res.n_paths[0];
    res.paths[0] = NULL;
    size_t nb = x->nbins;
    r->fixed = mmd_malloc(nb, sizeof *r->fixed, "specular calibration record");
    r->K = r->n_paths ? mmd_malloc(r->n_paths * nb, sizeof *r->K, "specular calibration record") : NULL;
    double *acc = mmd_calloc(nb, sizeof *acc, "specular calibration record");
    if (!r->fixed || (r->n_paths && !r->K) || !acc) st = MMD_ERR_NOMEM;
    for (size_t p = 0; st == MMD_OK && p < r->n_paths; p++) {
        const double *u = r->paths[p].arrival_local;
        double gr = mmd_antenna_gain(&s->rx_ant, u), gain = r->paths[p].gain;
        float *Kp = r->K + p * nb;
        for (size_t q = 0; q < nb; q++) {
            double k = gr * mmd_ura_beam(&s->ura, u, x->ub + 3 * q);
            Kp[q] = (float)k;
            acc[q] += gain * k;
        }
    }
    for (size_t q = 0; st == MMD_OK && q < nb; q++) {
        double f = res.spectra[q] - acc[q];
        r->fixed[q] = (float)(f > 0 ? f : 0); /* rounding of the float spectrum */
    }
    free(acc);
    mmd_aoa_result_free(&res);
    r->bytes = nb * sizeof(float) * (1 + r->n_paths) + r->n_paths * sizeof(mmd_path);
    if (st != MMD_OK) rec_free(r);
    x->built++;
    return st;
}

/* The record of a pose: from the cache, or built (and cached while the budget allows;
 * *owned = 1 when the caller must free it). */
static mmd_status get_record(mmd_calib_spec *x, const mmd_cfg_pose *pose, size_t pose_id, spec_rec **out, int *owned)
{
    *owned = 0;
    for (size_t i = 0; i < x->n_cache; i++)
        if (x->cache[i].pose_id == pose_id) {
            x->hits++;
            *out = &x->cache[i];
            return MMD_OK;
        }
    spec_rec r;
    mmd_status st = build_record(x, pose, pose_id, &r);
    if (st != MMD_OK) return st;
    if (x->cache_bytes + r.bytes <= x->budget) {
        if (x->n_cache == x->cap_cache) {
            size_t cap = x->cap_cache ? 2 * x->cap_cache : 16;
            spec_rec *nc = realloc(x->cache, cap * sizeof *nc);
            if (!nc) {
                rec_free(&r);
                return mmd_error(MMD_ERR_NOMEM, "out of memory growing the specular calibration cache");
            }
            x->cache = nc;
            x->cap_cache = cap;
        }
        x->cache[x->n_cache] = r;
        x->cache_bytes += r.bytes;
        *out = &x->cache[x->n_cache++];
        return MMD_OK;
    }
    *out = malloc(sizeof **out);
    if (!*out) {
        rec_free(&r);
        return mmd_error(MMD_ERR_NOMEM, "out of memory for a specular calibration record");
    }
    **out = r;
    *owned = 1;
    return MMD_OK;
}

static void predict(const mmd_calib_spec *x, const spec_rec *r, const double *gain, float *spec)
{
    size_t nb = x->nbins;
    for (size_t q = 0; q < nb; q++) {
        double v = r->fixed[q];
        for (size_t p = 0; p < r->n_paths; p++) v += gain[p] * r->K[p * nb + q];
        spec[q] = (float)v;
    }
}

/* d gain / d(eps_r, sigma) of object o, central differences in double. */
static void gain_derivs(const mmd_calib_spec *x, const spec_rec *r, const mmd_path *p, mmd_material *mats,
                        uint32_t o, double d[2])
{
    const mmd_sim *s = x->s;
    const double *tx = s->cand->tx_pos;
    mmd_material keep = mats[o];
    double *fields[2] = {&mats[o].eps_r, &mats[o].sigma_s_per_m};
    for (int k = 0; k < 2; k++) {
        double v = *fields[k], h = 1e-6 * fmax(fabs(v), 1e-4);
        *fields[k] = v + h;
        double gp = mmd_path_gain(s, p, tx, r->R, mats);
        *fields[k] = v - h;
        double gm = mmd_path_gain(s, p, tx, r->R, mats);
        *fields[k] = v;
        d[k] = (gp - gm) / (2 * h);
    }
    mats[o] = keep;
}

mmd_status mmd_calib_spec_loss(mmd_calib_spec *x, const mmd_calib_options *o, const mmd_material *mats,
                               const mmd_cfg_pose *poses, const size_t *ids, const float *const *meas, size_t n,
                               size_t n_total, double *loss_sum, double *grad_obj, float *pred, double *scale)
{
    mmd_sim *s = x->s;
    size_t nb = x->nbins;
    spec_rec **recs = mmd_calloc(n, sizeof *recs, "specular calibration");
    int *owned = mmd_calloc(n, sizeof *owned, "specular calibration");
    float *spectra = mmd_malloc(n * nb, sizeof *spectra, "spectra");
    double *g = grad_obj ? mmd_malloc(n * nb, sizeof *g, "loss gradient") : NULL;
    mmd_material *work = mmd_malloc(s->n_mat ? s->n_mat : 1, sizeof *work, "materials");
    double *gain = NULL;
    mmd_status st = recs && owned && spectra && work && (!grad_obj || g) ? MMD_OK : MMD_ERR_NOMEM;
    if (st == MMD_OK) memcpy(work, mats, s->n_mat * sizeof *work);
    for (size_t k = 0; st == MMD_OK && k < n; k++) {
        st = get_record(x, &poses[k], ids[k], &recs[k], &owned[k]);
        if (st != MMD_OK) break;
        free(gain);
        gain = mmd_malloc(recs[k]->n_paths ? recs[k]->n_paths : 1, sizeof *gain, "path gains");
        if (!gain) {
            st = MMD_ERR_NOMEM;
            break;
        }
        /* the candidates (and so the paths) were shot from s->cand's TX position */
        for (size_t p = 0; p < recs[k]->n_paths; p++)
            gain[p] = mmd_path_gain(s, &recs[k]->paths[p], s->cand->tx_pos, recs[k]->R, mats);
        predict(x, recs[k], gain, spectra + k * nb);
    }
    if (st == MMD_OK) st = mmd_calib_log_loss(o, spectra, meas, n, nb, n_total, 0.0, loss_sum, g, pred, scale);
    /* dL/dg_p = sum_bin dL/dS K_p, then the chain rule through each object on the path */
    for (size_t k = 0; st == MMD_OK && grad_obj && k < n; k++) {
        const spec_rec *r = recs[k];
        for (size_t p = 0; p < r->n_paths; p++) {
            const float *Kp = r->K + p * nb;
            const double *gk = g + k * nb;
            double dldg = 0;
            for (size_t q = 0; q < nb; q++) dldg += gk[q] * Kp[q];
            if (dldg == 0) continue;
            const mmd_path *pp = &r->paths[p];
            for (int i = 0; i < pp->depth; i++) {
                uint32_t obj = pp->objects[i];
                int seen = 0;
                for (int j = 0; j < i; j++) seen |= pp->objects[j] == obj;
                if (seen || obj >= s->n_mat) continue; /* one derivative per object */
                double d[2];
                gain_derivs(x, r, pp, work, obj, d);
                grad_obj[4 * obj] += dldg * d[0];
                grad_obj[4 * obj + 1] += dldg * d[1];
            }
        }
    }
    for (size_t k = 0; recs && owned && k < n; k++)
        if (owned[k]) {
            rec_free(recs[k]);
            free(recs[k]);
        }
    free(recs);
    free(owned);
    free(spectra);
    free(g);
    free(work);
    free(gain);
    return st;
}
