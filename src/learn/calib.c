/*
 * The calibration engine (mmd_calib.h, cl/calib.cl, docs/calibration.md): path records
 * per pose (cached within a budget), replay with new materials through the simulator's
 * own beam sum, the log-MAE loss, the transposed beam sum, the reverse sweep, and Adam
 * on the per-object raw parameters.
 */
#include "calib_internal.h"
#include "mmd_par.h"
#include "mmd_trace.h"

#include <complex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEG (M_PI / 180.0)

typedef struct cache_entry {
    size_t pose_id;
    cl_mem rec;
} cache_entry;

struct mmd_calib {
    mmd_sim *s;
    mmd_calib_options o;
    uint32_t n_obj;
    uint32_t n_grp;     /* parameter groups: one per scene material, or per object */
    uint32_t *grp_of;   /* object -> group */
    uint32_t *grp_obj;  /* group -> its first object (names, thickness) */
    float *raw, *grad, *adam_m, *adam_v;
    int64_t adam_step;
    cl_kernel k_record, k_forward, k_dldc, k_backward, k_pos, k_tri_ids, k_scatter;
    mmd_mlp *mlp;          /* neural model */
    cl_mem d_pos, d_vtheta; /* neural: one pose's normalised hit points and field values */
    /* field_at triangle: the pose's triangles (ascending id), vertex -> triangle slot */
    cl_mem d_tri, d_map, d_ttheta, d_tdtheta;
    uint32_t *h_tri, *h_map, *stamp; /* nv, nv, scene triangles */
    size_t n_u;                      /* triangles of the last field evaluation */
    cl_mem d_theta, d_dtheta, d_vobj, d_dldc, d_H, d_scratch_rec;
    size_t cap_H, cap_dldc;
    cache_entry *cache;
    size_t n_cache, cap_cache, cache_used;
    size_t rec_bytes; /* one pose's records */
    double scale;
    float sig2im;
    mmd_calib_timing tm;
    mmd_calib_hook hook;
    void *hook_ctx;
    mmd_calib_spec *spec; /* specular baseline: the exact-path backend (calib_spec.c) */
};

mmd_calib_options mmd_calib_defaults(void)
{
    mmd_calib_options o;
    memset(&o, 0, sizeof o);
    o.model = MMD_CALIB_PER_OBJECT;
    o.loss_floor_db = -60.0;
    o.group_by_material = 1;
    o.fit_scale = 1;
    o.cache_bytes = (size_t)1024 << 20;
    o.beta1 = 0.9;
    o.beta2 = 0.999;
    o.adam_eps = 1e-8;
    for (int k = 0; k < 4; k++) o.train_mask[k] = 1;
    o.mlp = mmd_mlp_defaults();
    return o;
}

/* ---- SPEC 5 mapping ------------------------------------------------------------------ */

static const double k_lo0 = -6.907755278982137, k_hi0 = 5.293304824724492; /* ln 1e-3, ln 199 */
static const double k_lo1 = -6.907755278982137, k_hi1 = 13.815510557964274; /* ln 1e-3, ln 1e6 */

static double clampd(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }
static double sigm(double x) { return 1.0 / (1.0 + exp(-x)); }

void mmd_calib_raw_to_material(const float raw[4], mmd_material *m)
{
    m->eps_r = 1.0 + exp(clampd(raw[0], k_lo0, k_hi0));
    m->sigma_s_per_m = exp(clampd(raw[1], k_lo1, k_hi1));
    m->scattering = clampd(sigm(raw[2]), 1e-3, 1.0 - 1e-3);
    m->xpd = clampd(sigm(raw[3]), 1e-3, 1.0 - 1e-3);
}

void mmd_calib_material_to_raw(const mmd_material *m, float raw[4])
{
    double e = m->eps_r - 1.0, sg = m->sigma_s_per_m;
    raw[0] = (float)clampd(log(e > 1e-3 ? e : 1e-3), k_lo0, k_hi0);
    raw[1] = (float)clampd(log(sg > 1e-3 ? sg : 1e-3), k_lo1, k_hi1);
    double S = clampd(m->scattering, 1e-3, 1.0 - 1e-3), K = clampd(m->xpd, 1e-3, 1.0 - 1e-3);
    raw[2] = (float)log(S / (1.0 - S));
    raw[3] = (float)log(K / (1.0 - K));
}

/* d(physical)/d(raw) of the mapping, 0 where clipped */
static void raw_jacobian(const float raw[4], double j[4])
{
    j[0] = raw[0] > k_lo0 && raw[0] < k_hi0 ? exp(raw[0]) : 0.0;
    j[1] = raw[1] > k_lo1 && raw[1] < k_hi1 ? exp(raw[1]) : 0.0;
    for (int k = 2; k < 4; k++) {
        double s = sigm(raw[k]);
        j[k] = s > 1e-3 && s < 1.0 - 1e-3 ? s * (1.0 - s) : 0.0;
    }
}

/* ---- set-up -------------------------------------------------------------------------- */

mmd_status mmd_calib_create(mmd_sim *s, const mmd_calib_options *opt, mmd_calib **out)
{
    *out = NULL;
    const mmd_experiment *e = s->exp;
    int specular = e->solver.mode == MMD_CFG_SOLVER_SPECULAR;
    if (mmd_par_size() > 1 && specular)
        return mmd_error(MMD_ERR_INVALID, "calibration across %d MPI ranks: the specular baseline is not split over "
                                          "ranks (it is cheap: run it as one process)",
                         mmd_par_size());
    if (specular && opt->model != MMD_CALIB_PER_OBJECT)
        return mmd_error(MMD_ERR_INVALID, "calibration: solver.mode specular supports train.model per_object only "
                                          "(the neural field needs the directional model)");
    if (e->rx.array.mode == MMD_CFG_RX_MECHANICAL)
        return mmd_error(MMD_ERR_INVALID, "calibration: rx.array.mode mechanical is not supported; use a URA");
    if (e->solver.max_depth < 1 || e->solver.max_depth > MMD_CALIB_MAX_DEPTH)
        return mmd_error(MMD_ERR_INVALID, "calibration: solver.max_depth %d, expected 1..%d", e->solver.max_depth,
                         MMD_CALIB_MAX_DEPTH);
    mmd_calib *c = mmd_calloc(1, sizeof *c, "calibration");
    if (!c) return MMD_ERR_NOMEM;
    c->s = s;
    c->o = *opt;
    c->n_obj = s->n_mat;
    c->scale = 1.0;
    c->sig2im = (float)(1.0 / (MMD_EPS0 * 2.0 * M_PI * s->freq_hz));
    c->grp_of = mmd_calloc(c->n_obj ? c->n_obj : 1, sizeof *c->grp_of, "parameter groups");
    c->grp_obj = mmd_calloc(c->n_obj ? c->n_obj : 1, sizeof *c->grp_obj, "parameter groups");
    if (!c->grp_of || !c->grp_obj) {
        mmd_calib_destroy(c);
        return MMD_ERR_NOMEM;
    }
    for (uint32_t o = 0; o < c->n_obj; o++) {
        /* objects share parameters when they share a scene material (and its thickness) */
        uint32_t g = c->n_grp;
        if (opt->group_by_material)
            for (uint32_t q = 0; q < c->n_grp; q++) {
                uint32_t o2 = c->grp_obj[q];
                if (s->scene->objects[o2].material == s->scene->objects[o].material &&
                    s->materials[o2].thickness_m == s->materials[o].thickness_m &&
                    s->materials[o2].alpha_r == s->materials[o].alpha_r) {
                    g = q;
                    break;
                }
            }
        if (g == c->n_grp) c->grp_obj[c->n_grp++] = o;
        c->grp_of[o] = g;
    }
    size_t np = 4 * (size_t)c->n_grp;
    c->raw = mmd_calloc(np, sizeof(float), "parameters");
    c->grad = mmd_calloc(np, sizeof(float), "gradient");
    c->adam_m = mmd_calloc(np, sizeof(float), "Adam state");
    c->adam_v = mmd_calloc(np, sizeof(float), "Adam state");
    mmd_status st = c->raw && c->grad && c->adam_m && c->adam_v ? MMD_OK : MMD_ERR_NOMEM;
    for (uint32_t g = 0; st == MMD_OK && g < c->n_grp; g++)
        mmd_calib_material_to_raw(&s->materials[c->grp_obj[g]], c->raw + 4 * g);
    if (specular) {
        /* exact paths carry no S or K_x dependence the data can separate from eps_r and
         * sigma (the diffuse background is held fixed), so only those two are trained */
        if (c->o.train_mask[2] || c->o.train_mask[3])
            mmd_info("calibration (specular baseline): training eps_r and sigma; S and K_x stay as given");
        c->o.train_mask[2] = c->o.train_mask[3] = 0;
        if (st == MMD_OK) st = mmd_calib_spec_create(s, s->materials, opt->cache_bytes, &c->spec);
        if (st != MMD_OK) {
            mmd_calib_destroy(c);
            return st;
        }
        *out = c;
        return MMD_OK;
    }
    char opts[320];
    mmd_trace_cl_options(s->cl, opts, sizeof opts);
    snprintf(opts + strlen(opts), sizeof opts - strlen(opts), "-DMMD_SIM_FLAGS_CT=%uu -DMMD_CAL_MAX_DEPTH=%d ",
             s->params.flags, MMD_CALIB_MAX_DEPTH);
    cl_program prog = NULL;
    if (st == MMD_OK) st = mmd_cl_program(s->cl, "calib.cl", opts, &prog);
    if (st == MMD_OK) st = mmd_cl_kernel(s->cl, prog, "mmd_calib_record", &c->k_record);
    if (st == MMD_OK) st = mmd_cl_kernel(s->cl, prog, "mmd_calib_forward", &c->k_forward);
    if (st == MMD_OK) st = mmd_cl_kernel(s->cl, prog, "mmd_calib_dldc", &c->k_dldc);
    if (st == MMD_OK) st = mmd_cl_kernel(s->cl, prog, "mmd_calib_backward", &c->k_backward);
    if (st == MMD_OK) st = mmd_cl_kernel(s->cl, prog, "mmd_calib_positions", &c->k_pos);
    if (st == MMD_OK) st = mmd_cl_kernel(s->cl, prog, "mmd_calib_tri_ids", &c->k_tri_ids);
    if (st == MMD_OK) st = mmd_cl_kernel(s->cl, prog, "mmd_calib_scatter", &c->k_scatter);
    if (st == MMD_OK) {
        /* the per-pose working set as a whole, up front: a run too large for the device is
         * refused here with what it needs, before anything is trained or written (the path
         * cache later takes only what is left of the budget, pose by pose) */
        size_t nv = (size_t)s->params.n_rays * s->params.max_depth;
        cl_ulong per_v = sizeof(mmd_cal_vertex) + sizeof(cl_float4) + sizeof(cl_uint) +
                         (opt->model == MMD_CALIB_NEURAL ? 3 * sizeof(float) + sizeof(cl_float4) : 0);
        char what[160];
        snprintf(what, sizeof what, "calibration: solver.rays %u x solver.max_depth %u path vertices (%u bytes each)",
                 (unsigned)s->params.n_rays, (unsigned)s->params.max_depth, (unsigned)per_v);
        st = mmd_cl_mem_check(s->cl, (cl_ulong)nv * per_v, (cl_ulong)nv * sizeof(mmd_cal_vertex), what,
                              "lower solver.rays or solver.max_depth");
    }
    if (st == MMD_OK && opt->model == MMD_CALIB_NEURAL) {
        st = opt->model_dir ? mmd_mlp_load(s->cl, opt->model_dir, &c->mlp) : mmd_mlp_create(s->cl, &opt->mlp, &c->mlp);
        size_t nv = (size_t)s->params.n_rays * s->params.max_depth;
        if (st == MMD_OK)
            st = mmd_cl_buffer(s->cl, CL_MEM_READ_WRITE, nv * 3 * sizeof(float), NULL, "field inputs", &c->d_pos);
        if (st == MMD_OK)
            st = mmd_cl_buffer(s->cl, CL_MEM_READ_WRITE, nv * sizeof(cl_float4), NULL, "field values", &c->d_vtheta);
        if (st == MMD_OK && opt->field_at_triangle) {
            /* at most one triangle per vertex, so nv bounds every per-triangle buffer */
            c->h_tri = mmd_malloc(nv, sizeof *c->h_tri, "field triangles");
            c->h_map = mmd_malloc(nv, sizeof *c->h_map, "field triangles");
            c->stamp = mmd_malloc(s->scene->n_triangles ? s->scene->n_triangles : 1, sizeof *c->stamp, "field triangles");
            if (!c->h_tri || !c->h_map || !c->stamp) st = MMD_ERR_NOMEM;
            for (size_t t = 0; st == MMD_OK && t < s->scene->n_triangles; t++) c->stamp[t] = 0xffffffffu;
            if (st == MMD_OK)
                st = mmd_cl_buffer(s->cl, CL_MEM_READ_WRITE, nv * sizeof(cl_uint), NULL, "field triangles", &c->d_tri);
            if (st == MMD_OK)
                st = mmd_cl_buffer(s->cl, CL_MEM_READ_ONLY, nv * sizeof(cl_uint), NULL, "field triangles", &c->d_map);
            if (st == MMD_OK)
                st = mmd_cl_buffer(s->cl, CL_MEM_READ_WRITE, nv * sizeof(cl_float4), NULL, "field values", &c->d_ttheta);
            if (st == MMD_OK)
                st = mmd_cl_buffer(s->cl, CL_MEM_READ_ONLY, nv * sizeof(cl_float4), NULL, "field gradients",
                                   &c->d_tdtheta);
        }
    }
    size_t nr = s->params.n_rays, K = s->params.max_depth;
    c->rec_bytes = nr * K * sizeof(mmd_cal_vertex);
    if (st == MMD_OK)
        st = mmd_cl_buffer(s->cl, CL_MEM_READ_ONLY, (c->n_obj + 1) * sizeof(cl_float4), NULL, "material table",
                           &c->d_theta);
    if (st == MMD_OK)
        st = mmd_cl_buffer(s->cl, CL_MEM_READ_WRITE, nr * K * sizeof(cl_float4), NULL, "vertex gradients",
                           &c->d_dtheta);
    if (st == MMD_OK)
        st = mmd_cl_buffer(s->cl, CL_MEM_READ_WRITE, nr * K * sizeof(cl_uint), NULL, "vertex objects", &c->d_vobj);
    if (st == MMD_OK)
        st = mmd_cl_buffer(s->cl, CL_MEM_READ_WRITE, c->rec_bytes, NULL, "path records", &c->d_scratch_rec);
    if (st != MMD_OK) {
        mmd_calib_destroy(c);
        return st;
    }
    *out = c;
    return MMD_OK;
}

void mmd_calib_destroy(mmd_calib *c)
{
    if (!c) return;
    cl_kernel ks[] = {c->k_record, c->k_forward, c->k_dldc, c->k_backward, c->k_pos, c->k_tri_ids, c->k_scatter};
    for (int i = 0; i < 7; i++)
        if (ks[i]) clReleaseKernel(ks[i]);
    cl_mem ms[] = {c->d_theta, c->d_dtheta, c->d_vobj,  c->d_dldc, c->d_H,       c->d_scratch_rec,
                   c->d_pos,   c->d_vtheta, c->d_tri,   c->d_map,  c->d_ttheta,  c->d_tdtheta};
    for (int i = 0; i < 12; i++)
        if (ms[i]) clReleaseMemObject(ms[i]);
    free(c->h_tri);
    free(c->h_map);
    free(c->stamp);
    mmd_mlp_destroy(c->mlp);
    mmd_calib_spec_destroy(c->spec);
    for (size_t i = 0; i < c->n_cache; i++) clReleaseMemObject(c->cache[i].rec);
    free(c->cache);
    free(c->grp_of);
    free(c->grp_obj);
    free(c->raw);
    free(c->grad);
    free(c->adam_m);
    free(c->adam_v);
    free(c);
}

/* ---- records ------------------------------------------------------------------------- */

/* The records of pose b of the current batch (in s->d_poses), from the cache or traced
 * now (into the cache when the budget allows, else into the scratch buffer). */
static mmd_status get_records(mmd_calib *c, size_t pose_id, cl_uint b, cl_mem *rec)
{
    if (c->spec) return mmd_error(MMD_ERR_INVALID, "calibration: the specular baseline keeps no path records");
    for (size_t i = 0; i < c->n_cache; i++)
        if (c->cache[i].pose_id == pose_id) {
            c->tm.cache_hits++;
            *rec = c->cache[i].rec;
            return MMD_OK;
        }
    c->tm.cache_misses++;
    mmd_sim *s = c->s;
    cl_mem dst = c->d_scratch_rec;
    int keep = c->cache_used + c->rec_bytes <= c->o.cache_bytes;
    if (keep) {
        if (c->n_cache == c->cap_cache) {
            size_t nc = c->cap_cache ? 2 * c->cap_cache : 16;
            cache_entry *ne = mmd_realloc(c->cache, nc, sizeof *ne, "path cache");
            if (!ne) return MMD_ERR_NOMEM;
            c->cache = ne;
            c->cap_cache = nc;
        }
        if (mmd_cl_buffer(s->cl, CL_MEM_READ_WRITE, c->rec_bytes, NULL, "path cache", &dst) != MMD_OK) {
            keep = 0; /* the device is full: trace into the scratch buffer */
            mmd_clear_error();
            dst = c->d_scratch_rec;
        }
    }
    cl_kernel k = c->k_record;
    cl_int err = clSetKernelArg(k, 0, sizeof(cl_mem), &s->d_nodes);
    err |= clSetKernelArg(k, 1, sizeof(cl_mem), &s->d_tris);
    err |= clSetKernelArg(k, 2, sizeof(cl_mem), &s->d_prims);
    err |= clSetKernelArg(k, 3, sizeof(cl_mem), &s->d_mats);
    err |= clSetKernelArg(k, 4, sizeof(cl_mem), &s->d_coef);
    err |= clSetKernelArg(k, 5, sizeof(cl_mem), &s->d_poses);
    err |= clSetKernelArg(k, 6, sizeof(cl_mem), &s->d_params);
    err |= clSetKernelArg(k, 7, sizeof(cl_uint), &b);
    err |= clSetKernelArg(k, 8, sizeof(cl_mem), &dst);
    size_t local = 64, global = (s->params.n_rays + local - 1) / local * local;
    double t0 = mmd_now();
    mmd_status st = mmd_cl_check(err, "set mmd_calib_record arguments");
    if (st == MMD_OK)
        st = mmd_cl_check(clEnqueueNDRangeKernel(s->cl->queue, k, 1, NULL, &global, &local, 0, NULL, NULL),
                          "launch mmd_calib_record");
    if (st == MMD_OK) st = mmd_cl_check(clFinish(s->cl->queue), "mmd_calib_record");
    c->tm.trace += mmd_now() - t0;
    if (st != MMD_OK) {
        if (keep) clReleaseMemObject(dst);
        return st;
    }
    if (keep) {
        c->cache[c->n_cache++] = (cache_entry){pose_id, dst};
        c->cache_used += c->rec_bytes;
        c->tm.cache_bytes_used = c->cache_used;
    }
    *rec = dst;
    return MMD_OK;
}

static mmd_status upload_theta(mmd_calib *c)
{
    cl_float4 *t = mmd_malloc(c->n_obj ? c->n_obj : 1, sizeof *t, "material table");
    if (!t) return MMD_ERR_NOMEM;
    for (uint32_t i = 0; i < c->n_obj; i++) {
        mmd_material m;
        mmd_calib_raw_to_material(c->raw + 4 * c->grp_of[i], &m);
        t[i].s[0] = (float)m.eps_r;
        t[i].s[1] = (float)m.sigma_s_per_m;
        t[i].s[2] = (float)m.scattering;
        t[i].s[3] = (float)m.xpd;
    }
    mmd_status st = mmd_cl_check(clEnqueueWriteBuffer(c->s->cl->queue, c->d_theta, CL_TRUE, 0,
                                                      c->n_obj * sizeof *t, t, 0, NULL, NULL),
                                 "upload materials");
    free(t);
    return st;
}

/* The field's input box: a point x maps to (x - lo) * sc3 - 1, the scene box onto [-1, 1]. */
static void field_box(const mmd_scene *sc, float lo[3], float sc3[3])
{
    for (int k = 0; k < 3; k++) {
        double ext = (double)sc->bbox_max[k] - sc->bbox_min[k];
        lo[k] = sc->bbox_min[k];
        sc3[k] = (float)(ext > 0 ? 2.0 / ext : 0.0);
    }
}

/* Triangle t's centroid as a field input (train.field_at: triangle, coverage). */
static void tri_field_input(const mmd_scene *sc, size_t t, const float lo[3], const float sc3[3], float out[3])
{
    for (int q = 0; q < 3; q++) {
        float ctr = 0.0f;
        for (int j = 0; j < 3; j++) ctr += sc->vertices[3 * (size_t)sc->indices[3 * t + j] + q];
        out[q] = (ctr / 3.0f - lo[q]) * sc3[q] - 1.0f;
    }
}

/* Neural model: the field at every recorded hit point of the pose into d_vtheta (the
 * activations stay for mmd_mlp_backward). */
/* train.field_at: triangle. The triangles the pose's records touch, in ascending id
 * order (a stamp per scene triangle, so no sort), their centroids through the field once,
 * and each vertex's value from its triangle's. */
static mmd_status eval_field_triangles(mmd_calib *c, cl_mem rec, cl_uint nv, const float lo[3], const float sc3[3])
{
    mmd_sim *s = c->s;
    const mmd_scene *sc = s->scene;
    cl_kernel k = c->k_tri_ids;
    cl_int err = clSetKernelArg(k, 0, sizeof(cl_mem), &rec);
    err |= clSetKernelArg(k, 1, sizeof(cl_uint), &nv);
    err |= clSetKernelArg(k, 2, sizeof(cl_mem), &c->d_tri);
    mmd_status st = mmd_cl_check(err, "set mmd_calib_tri_ids arguments");
    size_t local = 64, global = (nv + local - 1) / local * local;
    if (st == MMD_OK)
        st = mmd_cl_check(clEnqueueNDRangeKernel(s->cl->queue, k, 1, NULL, &global, &local, 0, NULL, NULL),
                          "launch mmd_calib_tri_ids");
    if (st == MMD_OK)
        st = mmd_cl_check(clEnqueueReadBuffer(s->cl->queue, c->d_tri, CL_TRUE, 0, nv * sizeof(cl_uint), c->h_tri, 0,
                                              NULL, NULL),
                          "read field triangles");
    if (st != MMD_OK) return st;
    uint32_t nt = sc->n_triangles;
    for (cl_uint v = 0; v < nv; v++)
        if (c->h_tri[v] < nt) c->stamp[c->h_tri[v]] = 0; /* touched */
    size_t n_u = 0;
    float *pos = mmd_malloc(nv ? nv : 1, 3 * sizeof *pos, "field inputs");
    if (!pos) return MMD_ERR_NOMEM;
    for (uint32_t t = 0; t < nt; t++) {
        if (c->stamp[t] != 0) continue;
        c->stamp[t] = (uint32_t)n_u;
        tri_field_input(sc, t, lo, sc3, pos + 3 * n_u);
        n_u++;
    }
    for (cl_uint v = 0; v < nv; v++) c->h_map[v] = c->h_tri[v] < nt ? c->stamp[c->h_tri[v]] : 0xffffffffu;
    for (cl_uint v = 0; v < nv; v++)
        if (c->h_tri[v] < nt) c->stamp[c->h_tri[v]] = 0xffffffffu; /* ready for the next pose */
    c->n_u = n_u;
    if (n_u)
        st = mmd_cl_check(clEnqueueWriteBuffer(s->cl->queue, c->d_pos, CL_TRUE, 0, n_u * 3 * sizeof(float), pos, 0,
                                               NULL, NULL),
                          "upload field inputs");
    free(pos);
    if (st == MMD_OK)
        st = mmd_cl_check(clEnqueueWriteBuffer(s->cl->queue, c->d_map, CL_TRUE, 0, nv * sizeof(cl_uint), c->h_map, 0,
                                               NULL, NULL),
                          "upload field triangles");
    if (st == MMD_OK && n_u) st = mmd_mlp_forward(c->mlp, c->d_pos, n_u, c->d_ttheta);
    k = c->k_scatter;
    err = clSetKernelArg(k, 0, sizeof(cl_mem), &c->d_map);
    err |= clSetKernelArg(k, 1, sizeof(cl_uint), &nv);
    err |= clSetKernelArg(k, 2, sizeof(cl_mem), &c->d_ttheta);
    err |= clSetKernelArg(k, 3, sizeof(cl_mem), &c->d_vtheta);
    if (st == MMD_OK) st = mmd_cl_check(err, "set mmd_calib_scatter arguments");
    if (st == MMD_OK)
        st = mmd_cl_check(clEnqueueNDRangeKernel(s->cl->queue, k, 1, NULL, &global, &local, 0, NULL, NULL),
                          "launch mmd_calib_scatter");
    return st;
}

/* The field's backward pass for the per-vertex gradients dt (host copy of c->d_dtheta):
 * per hit point as they are, or summed per triangle in vertex order. */
static mmd_status field_backward(mmd_calib *c, const cl_float4 *dt, size_t nv)
{
    if (!c->o.field_at_triangle) return mmd_mlp_backward(c->mlp, c->d_dtheta, nv);
    size_t n_u = c->n_u;
    if (!n_u) return MMD_OK;
    double *acc = mmd_calloc(4 * n_u, sizeof *acc, "field gradients");
    cl_float4 *tg = mmd_malloc(n_u, sizeof *tg, "field gradients");
    mmd_status st = acc && tg ? MMD_OK : MMD_ERR_NOMEM;
    for (size_t v = 0; st == MMD_OK && v < nv; v++) {
        uint32_t u = c->h_map[v];
        if (u == 0xffffffffu) continue;
        for (int q = 0; q < 4; q++) acc[4 * u + q] += dt[v].s[q];
    }
    for (size_t u = 0; st == MMD_OK && u < n_u; u++)
        for (int q = 0; q < 4; q++) tg[u].s[q] = (float)acc[4 * u + q];
    if (st == MMD_OK)
        st = mmd_cl_check(clEnqueueWriteBuffer(c->s->cl->queue, c->d_tdtheta, CL_TRUE, 0, n_u * sizeof *tg, tg, 0,
                                               NULL, NULL),
                          "upload field gradients");
    if (st == MMD_OK) st = mmd_mlp_backward(c->mlp, c->d_tdtheta, n_u);
    free(acc);
    free(tg);
    return st;
}

static mmd_status eval_field(mmd_calib *c, cl_mem rec)
{
    mmd_sim *s = c->s;
    const mmd_scene *sc = s->scene;
    cl_uint nv = (cl_uint)((size_t)s->params.n_rays * s->params.max_depth);
    float lo[3], sc3[3];
    field_box(sc, lo, sc3);
    if (c->o.field_at_triangle) return eval_field_triangles(c, rec, nv, lo, sc3);
    cl_kernel k = c->k_pos;
    cl_int err = clSetKernelArg(k, 0, sizeof(cl_mem), &rec);
    err |= clSetKernelArg(k, 1, sizeof(cl_uint), &nv);
    for (int q = 0; q < 3; q++) err |= clSetKernelArg(k, 2 + q, sizeof(float), &lo[q]);
    for (int q = 0; q < 3; q++) err |= clSetKernelArg(k, 5 + q, sizeof(float), &sc3[q]);
    err |= clSetKernelArg(k, 8, sizeof(cl_mem), &c->d_pos);
    mmd_status st = mmd_cl_check(err, "set mmd_calib_positions arguments");
    size_t local = 64, global = (nv + local - 1) / local * local;
    if (st == MMD_OK)
        st = mmd_cl_check(clEnqueueNDRangeKernel(s->cl->queue, k, 1, NULL, &global, &local, 0, NULL, NULL),
                          "launch mmd_calib_positions");
    if (st == MMD_OK) st = mmd_mlp_forward(c->mlp, c->d_pos, nv, c->d_vtheta);
    return st;
}

static mmd_status launch_replay(mmd_calib *c, cl_kernel k, cl_mem rec, cl_uint b, int backward)
{
    mmd_sim *s = c->s;
    cl_uint per_vertex = c->mlp != NULL;
    mmd_status st0 = c->mlp ? eval_field(c, rec) : MMD_OK;
    if (st0 != MMD_OK) return st0;
    cl_int err = clSetKernelArg(k, 0, sizeof(cl_mem), &rec);
    err |= clSetKernelArg(k, 1, sizeof(cl_mem), c->mlp ? &c->d_vtheta : &c->d_theta);
    err |= clSetKernelArg(k, 2, sizeof(cl_uint), &per_vertex);
    err |= clSetKernelArg(k, 3, sizeof(cl_mem), &s->d_mats);
    err |= clSetKernelArg(k, 4, sizeof(cl_mem), &s->d_poses);
    err |= clSetKernelArg(k, 5, sizeof(cl_mem), &s->d_params);
    err |= clSetKernelArg(k, 6, sizeof(cl_uint), &b);
    err |= clSetKernelArg(k, 7, sizeof(float), &c->sig2im);
    if (backward) {
        err |= clSetKernelArg(k, 8, sizeof(cl_mem), &c->d_dldc);
        err |= clSetKernelArg(k, 9, sizeof(cl_mem), &c->d_dtheta);
        err |= clSetKernelArg(k, 10, sizeof(cl_mem), &c->d_vobj);
    } else {
        err |= clSetKernelArg(k, 8, sizeof(cl_mem), &s->d_out);
    }
    mmd_status st = mmd_cl_check(err, backward ? "set mmd_calib_backward arguments" : "set mmd_calib_forward arguments");
    size_t local = 64, global = (s->params.n_rays + local - 1) / local * local;
    if (st == MMD_OK)
        st = mmd_cl_check(clEnqueueNDRangeKernel(s->cl->queue, k, 1, NULL, &global, &local, 0, NULL, NULL),
                          backward ? "launch mmd_calib_backward" : "launch mmd_calib_forward");
    return st;
}

typedef struct fill_ctx {
    mmd_calib *c;
    mmd_status st;
} fill_ctx;

/* mmd_sim_fill_fn: the per-ray powers of the batch by replaying records. */
static mmd_status replay_fill(void *ctx, mmd_sim *s, const mmd_cfg_pose *poses, const size_t *ids, size_t first,
                              size_t nb)
{
    (void)poses;
    mmd_calib *c = ((fill_ctx *)ctx)->c;
    mmd_status st = MMD_OK;
    for (size_t b = 0; st == MMD_OK && b < nb; b++) {
        cl_mem rec;
        st = get_records(c, ids ? ids[b] : first + b, (cl_uint)b, &rec);
        double t0 = mmd_now();
        if (st == MMD_OK) st = launch_replay(c, c->k_forward, rec, (cl_uint)b, 0);
        if (st == MMD_OK) st = mmd_cl_check(clFinish(s->cl->queue), "mmd_calib_forward");
        c->tm.replay += mmd_now() - t0;
    }
    return st;
}

/* ---- loss ---------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Lag coefficients of the transposed beam sum for one pose (docs/calibration.md):
 * H(p, q) = R_c(|p|) R_r(|q|) / norm sum_b g_b e^{-j kappa (p u_by + q u_bz)}, done per
 * elevation row (u_bz depends on the row only). */
static void lag_coefficients(const mmd_calib *c, const double *g, cl_float2 *H)
{
    const mmd_sim *s = c->s;
    const mmd_experiment *e = s->exp;
    int naz = e->aoa.azimuth_deg.count, nel = e->aoa.elevation_deg.count;
    int cols = e->rx.array.cols, rows = e->rx.array.rows, np = 2 * cols - 1, nq = 2 * rows - 1;
    double kappa = 2.0 * M_PI * e->rx.array.spacing_wavelengths;
    double norm = s->ura.sum_col * s->ura.sum_col * s->ura.sum_row * s->ura.sum_row;
    double Rc[64], Rr[64];
    for (int p = 0; p < cols; p++) {
        double a = 0;
        for (int i = 0; i + p < cols; i++) a += s->ura.w_col[i] * s->ura.w_col[i + p];
        Rc[p] = a;
    }
    for (int q = 0; q < rows; q++) {
        double a = 0;
        for (int i = 0; i + q < rows; i++) a += s->ura.w_row[i] * s->ura.w_row[i + q];
        Rr[q] = a;
    }
    double complex acc[127 * 127];
    for (int k = 0; k < np * nq; k++) acc[k] = 0;
    double complex A[127];
    for (int j = 0; j < nel; j++) {
        double el = (e->aoa.elevation_deg.start + j * e->aoa.elevation_deg.step) * DEG;
        for (int p = 0; p < np; p++) A[p] = 0;
        for (int i = 0; i < naz; i++) {
            double gb = g[(size_t)j * naz + i];
            if (gb == 0) continue;
            double az = (e->aoa.azimuth_deg.start + i * e->aoa.azimuth_deg.step) * DEG;
            double uy = cos(el) * sin(az);
            double complex step = cexp(-I * kappa * uy), z = cexp(I * kappa * uy * (cols - 1));
            for (int p = 0; p < np; p++) {
                A[p] += gb * z;
                z *= step;
            }
        }
        double uz = sin(el);
        for (int q = 0; q < nq; q++) {
            double complex ez = cexp(-I * kappa * (q - (rows - 1)) * uz);
            for (int p = 0; p < np; p++) acc[p * nq + q] += A[p] * ez;
        }
    }
    for (int p = 0; p < np; p++)
        for (int q = 0; q < nq; q++) {
            int ap = abs(p - (cols - 1)), aq = abs(q - (rows - 1));
            double complex h = acc[p * nq + q] * Rc[ap] * Rr[aq] / norm;
            H[p * nq + q].s[0] = (float)creal(h);
            H[p * nq + q].s[1] = (float)cimag(h);
        }
}

static mmd_status ensure_buf(mmd_calib *c, cl_mem *buf, size_t *cap, size_t need, const char *what)
{
    if (*buf && *cap >= need) return MMD_OK;
    if (*buf) clReleaseMemObject(*buf);
    *buf = NULL;
    *cap = 0;
    mmd_status st = mmd_cl_buffer(c->s->cl, CL_MEM_READ_WRITE, need, NULL, what, buf);
    if (st == MMD_OK) *cap = need;
    return st;
}

static mmd_status launch_dldc(mmd_calib *c, size_t n)
{
    mmd_sim *s = c->s;
    const mmd_experiment *e = s->exp;
    size_t nr = s->params.n_rays;
    cl_uint np = (cl_uint)n;
    cl_int ic = e->rx.array.cols, ir = e->rx.array.rows, rk = (cl_int)s->rx_ant.kind;
    cl_float kap = (float)(2.0 * M_PI * e->rx.array.spacing_wavelengths), rq = (float)s->rx_ant.q,
             rg = (float)s->rx_ant.g0;
    cl_kernel k = c->k_dldc;
    cl_int err = clSetKernelArg(k, 0, sizeof(cl_mem), &s->d_poses);
    err |= clSetKernelArg(k, 1, sizeof(cl_mem), &s->d_params);
    err |= clSetKernelArg(k, 2, sizeof(cl_uint), &np);
    err |= clSetKernelArg(k, 3, sizeof(cl_mem), &c->d_H);
    err |= clSetKernelArg(k, 4, sizeof(cl_int), &ic);
    err |= clSetKernelArg(k, 5, sizeof(cl_int), &ir);
    err |= clSetKernelArg(k, 6, sizeof(cl_float), &kap);
    err |= clSetKernelArg(k, 7, sizeof(cl_int), &rk);
    err |= clSetKernelArg(k, 8, sizeof(cl_float), &rq);
    err |= clSetKernelArg(k, 9, sizeof(cl_float), &rg);
    err |= clSetKernelArg(k, 10, sizeof(cl_mem), &c->d_dldc);
    mmd_status st = mmd_cl_check(err, "set mmd_calib_dldc arguments");
    size_t local = 64, global = (n * nr + local - 1) / local * local;
    if (st == MMD_OK)
        st = mmd_cl_check(clEnqueueNDRangeKernel(s->cl->queue, k, 1, NULL, &global, &local, 0, NULL, NULL),
                          "launch mmd_calib_dldc");
    return st;
}

/* One chunk of at most mmd_sim_batch_poses poses. */
/* ---- the loss (SPEC 5), shared with the specular backend --------------------------- */

size_t mmd_calib_log_ratios(const mmd_calib_options *o, const float *spectra, const float *const *meas, size_t n,
                            size_t nbins, double *floor, double *ratios)
{
    size_t nr_ = 0;
    for (size_t k = 0; k < n; k++) {
        double mx = 0;
        for (size_t q = 0; q < nbins; q++) mx = fmax(mx, meas[k][q]);
        floor[k] = mx * pow(10.0, o->loss_floor_db / 10.0);
        if (!(floor[k] > 0)) floor[k] = 1e-30;
        const float *p = spectra + k * nbins;
        for (size_t q = 0; ratios && q < nbins; q++)
            if (meas[k][q] > 10 * floor[k] && p[q] > 0) ratios[nr_++] = log10((double)meas[k][q] / p[q]);
    }
    return nr_;
}

double mmd_calib_median_scale(double *ratios, size_t n)
{
    if (!n) return 1.0;
    qsort(ratios, n, sizeof *ratios, cmp_double);
    double med = n % 2 ? ratios[n / 2] : 0.5 * (ratios[n / 2 - 1] + ratios[n / 2]);
    return pow(10.0, med);
}

mmd_status mmd_calib_log_loss(const mmd_calib_options *o, const float *spectra, const float *const *meas, size_t n,
                              size_t nbins, size_t n_total, double forced_scale, double *loss_sum, double *g,
                              float *pred, double *scale_out)
{
    /* per-pose floors and the global scale (median log ratio over bins well above the floor) */
    int fit = o->fit_scale && !(forced_scale > 0);
    double *floor = mmd_malloc(n ? n : 1, sizeof *floor, "loss");
    double *ratios = fit ? mmd_malloc(n * nbins > 0 ? n * nbins : 1, sizeof *ratios, "loss") : NULL;
    mmd_status st = floor && (!fit || ratios) ? MMD_OK : MMD_ERR_NOMEM;
    size_t nr_ = st == MMD_OK ? mmd_calib_log_ratios(o, spectra, meas, n, nbins, floor, ratios) : 0;
    double scale = forced_scale > 0 ? forced_scale : 1.0;
    if (st == MMD_OK && fit) scale = mmd_calib_median_scale(ratios, nr_);
    *scale_out = scale;
    double inv = 1.0 / ((double)n_total * nbins);
    for (size_t k = 0; st == MMD_OK && k < n; k++) {
        const float *p = spectra + k * nbins;
        for (size_t q = 0; q < nbins; q++) {
            double sp = scale * p[q], lp = log10(sp + floor[k]), lm = log10((double)meas[k][q] + floor[k]);
            double dl = lp - lm;
            int mse = o->loss == MMD_CALIB_LOG_MSE;
            *loss_sum += (mse ? dl * dl : fabs(dl)) * inv;
            if (g) {
                double sg = mse ? 2.0 * dl : dl > 0 ? 1.0 : dl < 0 ? -1.0 : 0.0;
                g[k * nbins + q] = sg * inv * scale / ((sp + floor[k]) * M_LN10);
            }
            if (pred) pred[k * nbins + q] = (float)sp;
        }
    }
    free(floor);
    free(ratios);
    return st;
}

/* Per-object gradients in physical parameters (acc[4 o + k]) onto the raw parameters of
 * the objects' groups, in object order. */
static void add_object_grad(mmd_calib *c, const double *acc)
{
    for (uint32_t o = 0; o < c->n_obj; o++) {
        uint32_t gr = c->grp_of[o];
        double jac[4];
        raw_jacobian(c->raw + 4 * gr, jac);
        for (int q = 0; q < 4; q++)
            if (c->o.train_mask[q]) c->grad[4 * gr + q] += (float)(acc[4 * o + q] * jac[q]);
    }
}

/* The current physical material of every object (per-object model). */
static void current_materials(const mmd_calib *c, mmd_material *out)
{
    for (uint32_t o = 0; o < c->n_obj; o++) {
        out[o] = c->s->materials[o];
        mmd_calib_raw_to_material(c->raw + 4 * c->grp_of[o], &out[o]);
    }
}

/* Specular baseline: the whole batch on the host (calib_spec.c). */
static mmd_status spec_loss(mmd_calib *c, const mmd_cfg_pose *poses, const size_t *ids, const float *const *meas,
                            size_t n, double *loss, int want_grad, float *pred)
{
    double t0 = mmd_now();
    mmd_material *m = mmd_malloc(c->n_obj ? c->n_obj : 1, sizeof *m, "materials");
    double *acc = want_grad ? mmd_calloc(4 * (size_t)(c->n_obj ? c->n_obj : 1), sizeof *acc, "gradient") : NULL;
    mmd_status st = m && (!want_grad || acc) ? MMD_OK : MMD_ERR_NOMEM;
    if (st == MMD_OK) current_materials(c, m);
    if (st == MMD_OK)
        st = mmd_calib_spec_loss(c->spec, &c->o, m, poses, ids, meas, n, n, loss, acc, pred, &c->scale);
    if (st == MMD_OK && want_grad) add_object_grad(c, acc);
    size_t built, hits, bytes;
    mmd_calib_spec_stats(c->spec, &built, &hits, &bytes);
    c->tm.cache_misses = built;
    c->tm.cache_hits = hits;
    c->tm.cache_bytes_used = bytes;
    c->tm.host += mmd_now() - t0;
    free(m);
    free(acc);
    return st;
}

static mmd_status loss_chunk(mmd_calib *c, const mmd_cfg_pose *poses, const size_t *ids, const float *const *meas,
                             size_t n, size_t n_total, double forced_scale, double *loss_sum, int want_grad,
                             float *pred, double *acc_out)
{
    mmd_sim *s = c->s;
    const mmd_experiment *e = s->exp;
    size_t nbins = (size_t)e->aoa.azimuth_deg.count * e->aoa.elevation_deg.count;
    mmd_aoa_result res;
    fill_ctx fc = {c, MMD_OK};
    mmd_status st = mmd_sim_aoa_ex(s, poses, ids, n, replay_fill, &fc, &res, NULL, NULL);
    if (st != MMD_OK) return st;
    double t0 = mmd_now();
    double *g = want_grad ? mmd_malloc(n * nbins, sizeof *g, "loss gradient") : NULL;
    if (want_grad && !g) st = MMD_ERR_NOMEM;
    if (st == MMD_OK)
        st = mmd_calib_log_loss(&c->o, res.spectra, meas, n, nbins, n_total, forced_scale, loss_sum, g, pred,
                                &c->scale);
    c->tm.host += mmd_now() - t0;
    if (st == MMD_OK && want_grad) {
        /* transposed beam sum: dL/dc per ray */
        int cols = e->rx.array.cols, rows = e->rx.array.rows, nlag = (2 * cols - 1) * (2 * rows - 1);
        cl_float2 *H = mmd_malloc(n * (size_t)nlag, sizeof *H, "lag coefficients");
        if (!H) st = MMD_ERR_NOMEM;
        t0 = mmd_now();
        for (size_t k = 0; st == MMD_OK && k < n; k++) lag_coefficients(c, g + k * nbins, H + k * nlag);
        c->tm.host += mmd_now() - t0;
        size_t nr = s->params.n_rays;
        if (st == MMD_OK) st = ensure_buf(c, &c->d_H, &c->cap_H, n * nlag * sizeof *H, "lag coefficients");
        if (st == MMD_OK) st = ensure_buf(c, &c->d_dldc, &c->cap_dldc, n * nr * sizeof(float), "ray gradients");
        if (st == MMD_OK)
            st = mmd_cl_check(clEnqueueWriteBuffer(s->cl->queue, c->d_H, CL_TRUE, 0, n * nlag * sizeof *H, H, 0, NULL,
                                                   NULL),
                              "upload lag coefficients");
        free(H);
        t0 = mmd_now();
        if (st == MMD_OK) st = launch_dldc(c, n);
        if (st == MMD_OK) st = mmd_cl_check(clFinish(s->cl->queue), "mmd_calib_dldc");
        c->tm.beam += mmd_now() - t0;
        /* reverse sweep per pose, reduced per object in a fixed order (double) */
        size_t K = s->params.max_depth, nv = nr * K;
        cl_float4 *dt = mmd_malloc(nv, sizeof *dt, "vertex gradients");
        cl_uint *vo = mmd_malloc(nv, sizeof *vo, "vertex objects");
        double *acc = mmd_calloc(4 * (size_t)c->n_obj, sizeof *acc, "gradient");
        if (st == MMD_OK && (!dt || !vo || !acc)) st = MMD_ERR_NOMEM;
        for (size_t k = 0; st == MMD_OK && k < n; k++) {
            cl_mem rec;
            st = get_records(c, ids[k], (cl_uint)k, &rec);
            t0 = mmd_now();
            if (st == MMD_OK) st = launch_replay(c, c->k_backward, rec, (cl_uint)k, 1);
            if (st == MMD_OK)
                st = mmd_cl_check(clEnqueueReadBuffer(s->cl->queue, c->d_dtheta, CL_TRUE, 0, nv * sizeof *dt, dt, 0,
                                                      NULL, NULL),
                                  "read vertex gradients");
            if (st == MMD_OK)
                st = mmd_cl_check(clEnqueueReadBuffer(s->cl->queue, c->d_vobj, CL_TRUE, 0, nv * sizeof *vo, vo, 0,
                                                      NULL, NULL),
                                  "read vertex objects");
            c->tm.backward += mmd_now() - t0;
            if (st == MMD_OK && c->hook) st = c->hook(c->hook_ctx, c, rec, (cl_uint)k, ids[k]);
            if (st == MMD_OK && c->mlp) {
                t0 = mmd_now();
                st = field_backward(c, dt, nv);
                if (st == MMD_OK) st = mmd_cl_check(clFinish(s->cl->queue), "field backward");
                c->tm.backward += mmd_now() - t0;
                continue;
            }
            for (size_t v = 0; st == MMD_OK && v < nv; v++) {
                if (vo[v] >= c->n_obj) continue;
                for (int q = 0; q < 4; q++) acc[4 * vo[v] + q] += dt[v].s[q];
            }
        }
        if (st == MMD_OK && !c->mlp && acc_out)
            for (size_t q = 0; q < 4 * (size_t)c->n_obj; q++) acc_out[q] += acc[q];
        else if (st == MMD_OK && !c->mlp)
            add_object_grad(c, acc);
        free(dt);
        free(vo);
        free(acc);
    }
    free(g);
    mmd_aoa_result_free(&res);
    return st;
}

/* mmd_calib_loss across MPI ranks: each rank takes a contiguous share
 * of the batch. The power scale is the median over the whole batch (every rank's ratios
 * gathered on rank 0), as one process fits it for a batch of at most
 * mmd_sim_batch_poses(s) poses; losses and per-object gradients are summed in rank order
 * in double precision before they reach the float gradient (the neural model's on-device
 * gradient: what this call added on each rank), so every rank takes the same Adam step.
 * The forward replay runs twice on each rank (once for the ratios). */
static mmd_status loss_across_ranks(mmd_calib *c, const mmd_cfg_pose *poses, const size_t *ids,
                                    const float *const *meas, size_t n, double *loss, int want_grad, float *pred)
{
    mmd_sim *s = c->s;
    size_t nbins = (size_t)s->exp->aoa.azimuth_deg.count * s->exp->aoa.elevation_deg.count;
    size_t bs = mmd_sim_batch_poses(s), lo, hi;
    mmd_par_share(n, &lo, &hi);
    mmd_status st = upload_theta(c);
    double scale = 0.0;
    if (c->o.fit_scale) {
        /* the scale first: ratios of this rank's poses, median of all on rank 0 */
        size_t m = hi - lo, nr_ = 0;
        double *ratios = mmd_malloc(m * nbins > 0 ? m * nbins : 1, sizeof *ratios, "loss");
        double *floor = mmd_malloc(bs ? bs : 1, sizeof *floor, "loss");
        if (st == MMD_OK && (!ratios || !floor)) st = MMD_ERR_NOMEM;
        for (size_t first = lo; st == MMD_OK && first < hi; first += bs) {
            size_t nb = hi - first < bs ? hi - first : bs;
            mmd_aoa_result res;
            fill_ctx fc = {c, MMD_OK};
            st = mmd_sim_aoa_ex(s, poses + first, ids + first, nb, replay_fill, &fc, &res, NULL, NULL);
            if (st == MMD_OK) nr_ += mmd_calib_log_ratios(&c->o, res.spectra, meas + first, nb, nbins, floor, ratios + nr_);
            if (st == MMD_OK) mmd_aoa_result_free(&res);
        }
        free(floor);
        st = mmd_par_agree(st);
        void *all = NULL;
        size_t *cnt = NULL;
        if (st == MMD_OK) st = mmd_par_gather(ratios, nr_ * sizeof *ratios, &all, &cnt);
        free(ratios);
        if (st == MMD_OK && mmd_par_rank() == 0) {
            size_t tot = 0;
            for (int r = 0; r < mmd_par_size(); r++) tot += cnt[r] / sizeof(double);
            scale = mmd_calib_median_scale(all, tot);
        }
        free(all);
        free(cnt);
        if (st == MMD_OK) st = mmd_par_bcast(&scale, sizeof scale, 0);
    }
    /* the loss and the gradient of this rank's poses, normalised by the whole batch; the
     * neural model accumulates on the device: what this call adds is summed over ranks */
    size_t np = c->mlp ? mmd_calib_n_params(c) : 0;
    float *g0 = np && want_grad ? mmd_malloc(np, sizeof *g0, "gradient") : NULL;
    float *g1 = np && want_grad ? mmd_malloc(np, sizeof *g1, "gradient") : NULL;
    double *gd = np && want_grad ? mmd_malloc(np, sizeof *gd, "gradient") : NULL;
    if (st == MMD_OK && np && want_grad && (!g0 || !g1 || !gd)) st = MMD_ERR_NOMEM;
    if (st == MMD_OK && g0) st = mmd_mlp_get_grads(c->mlp, g0);
    double sum = 0;
    double *acc = mmd_calloc(4 * (size_t)(c->n_obj ? c->n_obj : 1) + 1, sizeof *acc, "gradient");
    if (st == MMD_OK && !acc) st = MMD_ERR_NOMEM;
    float *pl = pred && hi > lo ? mmd_malloc((hi - lo) * nbins, sizeof *pl, "predictions") : NULL;
    if (st == MMD_OK && pred && hi > lo && !pl) st = MMD_ERR_NOMEM;
    for (size_t first = lo; st == MMD_OK && first < hi; first += bs) {
        size_t nb = hi - first < bs ? hi - first : bs;
        st = loss_chunk(c, poses + first, ids + first, meas + first, nb, n, c->o.fit_scale ? scale : 1.0, &sum,
                        want_grad, pl ? pl + (first - lo) * nbins : NULL, acc);
    }
    st = mmd_par_agree(st);
    size_t na = 4 * (size_t)c->n_obj;
    if (st == MMD_OK) {
        acc[na] = sum;
        st = mmd_par_sum(acc, na + 1);
    }
    if (st == MMD_OK && g0) {
        st = mmd_mlp_get_grads(c->mlp, g1);
        for (size_t i = 0; i < np; i++) gd[i] = (double)g1[i] - (double)g0[i];
        st = mmd_par_agree(st);
        if (st == MMD_OK) st = mmd_par_sum(gd, np);
        for (size_t i = 0; st == MMD_OK && i < np; i++) g1[i] = (float)((double)g0[i] + gd[i]);
        if (st == MMD_OK) st = mmd_mlp_set_grads(c->mlp, g1);
    }
    if (st == MMD_OK) {
        *loss = acc[na];
        if (want_grad && !c->mlp) add_object_grad(c, acc);
        c->scale = c->o.fit_scale ? scale : 1.0;
    }
    if (st == MMD_OK && pred) {
        /* predictions: the whole batch on rank 0 */
        void *all = NULL;
        st = mmd_par_gather(pl, pl ? (hi - lo) * nbins * sizeof *pl : 0, &all, NULL);
        if (st == MMD_OK && mmd_par_rank() == 0) memcpy(pred, all, n * nbins * sizeof *pred);
        free(all);
    }
    free(pl);
    free(acc);
    free(g0);
    free(g1);
    free(gd);
    return st;
}

mmd_status mmd_calib_loss(mmd_calib *c, const mmd_cfg_pose *poses, const size_t *pose_ids,
                          const float *const *measured, size_t n, double *loss, int want_grad, float *pred)
{
    *loss = 0;
    if (!n) return mmd_error(MMD_ERR_INVALID, "calibration: no poses in the batch");
    if (c->spec) return spec_loss(c, poses, pose_ids, measured, n, loss, want_grad, pred);
    if (mmd_par_size() > 1) return loss_across_ranks(c, poses, pose_ids, measured, n, loss, want_grad, pred);
    mmd_status st = upload_theta(c);
    size_t bs = mmd_sim_batch_poses(c->s);
    size_t nbins = (size_t)c->s->exp->aoa.azimuth_deg.count * c->s->exp->aoa.elevation_deg.count;
    double sum = 0;
    for (size_t first = 0; st == MMD_OK && first < n; first += bs) {
        size_t nb = n - first < bs ? n - first : bs;
        st = loss_chunk(c, poses + first, pose_ids + first, measured + first, nb, n, 0.0, &sum, want_grad,
                        pred ? pred + first * nbins : NULL, NULL);
    }
    *loss = sum;
    return st;
}

/* ---- parameters and Adam ------------------------------------------------------------- */

size_t mmd_calib_n_params(const mmd_calib *c) { return c->mlp ? mmd_mlp_n_params(c->mlp) : 4 * (size_t)c->n_grp; }
void mmd_calib_get_params(const mmd_calib *c, float *raw)
{
    if (c->mlp)
        mmd_mlp_get_params(c->mlp, raw);
    else
        memcpy(raw, c->raw, 4 * c->n_grp * sizeof *raw);
}
mmd_status mmd_calib_set_params(mmd_calib *c, const float *raw)
{
    for (size_t i = 0; i < mmd_calib_n_params(c); i++)
        if (!isfinite(raw[i])) return mmd_error(MMD_ERR_INVALID, "calibration: parameter %zu is not finite", i);
    if (c->mlp) return mmd_mlp_set_params(c->mlp, raw);
    memcpy(c->raw, raw, 4 * c->n_grp * sizeof *raw);
    return MMD_OK;
}
void mmd_calib_get_grad(const mmd_calib *c, float *grad)
{
    if (c->mlp)
        mmd_mlp_get_grads(c->mlp, grad);
    else
        memcpy(grad, c->grad, 4 * c->n_grp * sizeof *grad);
}
void mmd_calib_zero_grad(mmd_calib *c)
{
    if (c->mlp) mmd_mlp_zero_grad(c->mlp);
    memset(c->grad, 0, 4 * c->n_grp * sizeof *c->grad);
}

mmd_status mmd_calib_adam(mmd_calib *c, double lr)
{
    if (!(lr > 0) || !isfinite(lr)) return mmd_error(MMD_ERR_INVALID, "calibration: learning rate %g", lr);
    if (c->mlp) return mmd_mlp_adam(c->mlp, (float)lr, (float)c->o.beta1, (float)c->o.beta2, (float)c->o.adam_eps);
    c->adam_step++;
    double b1 = c->o.beta1, b2 = c->o.beta2;
    double c1 = 1.0 - pow(b1, (double)c->adam_step), c2 = 1.0 - pow(b2, (double)c->adam_step);
    for (size_t i = 0; i < 4 * (size_t)c->n_grp; i++) {
        double g = c->grad[i];
        if (!isfinite(g)) return mmd_error(MMD_ERR_INVALID, "calibration: gradient %zu is not finite", i);
        double m = b1 * c->adam_m[i] + (1 - b1) * g, v = b2 * c->adam_v[i] + (1 - b2) * g * g;
        c->adam_m[i] = (float)m;
        c->adam_v[i] = (float)v;
        c->raw[i] = (float)(c->raw[i] - lr * (m / c1) / (sqrt(v / c2) + c->o.adam_eps));
    }
    return MMD_OK;
}

void mmd_calib_get_adam(const mmd_calib *c, int64_t *step, float *m, float *v)
{
    if (c->mlp) {
        uint64_t st = 0;
        mmd_mlp_get_adam(c->mlp, m, v, &st);
        *step = (int64_t)st;
        return;
    }
    *step = c->adam_step;
    memcpy(m, c->adam_m, 4 * c->n_grp * sizeof *m);
    memcpy(v, c->adam_v, 4 * c->n_grp * sizeof *v);
}

mmd_status mmd_calib_set_adam(mmd_calib *c, int64_t step, const float *m, const float *v)
{
    if (step < 0) return mmd_error(MMD_ERR_INVALID, "calibration: Adam step %lld", (long long)step);
    if (c->mlp) return mmd_mlp_set_adam(c->mlp, m, v, (uint64_t)step);
    c->adam_step = step;
    memcpy(c->adam_m, m, 4 * c->n_grp * sizeof *m);
    memcpy(c->adam_v, v, 4 * c->n_grp * sizeof *v);
    return MMD_OK;
}

mmd_status mmd_calib_materials(mmd_calib *c, mmd_material *out)
{
    if (c->mlp)
        return mmd_error(MMD_ERR_INVALID, "calibration: the neural model has no per-object materials; predict with "
                                          "mmd_calib_predict");
    for (uint32_t o = 0; o < c->n_obj; o++) {
        mmd_material m = c->s->materials[o];
        mmd_calib_raw_to_material(c->raw + 4 * c->grp_of[o], &m);
        if (out) out[o] = m;
        mmd_status st = mmd_sim_set_material(c->s, o, &m);
        if (st != MMD_OK) return st;
    }
    return MMD_OK;
}

double mmd_calib_scale(const mmd_calib *c) { return c->scale; }
mmd_calib_timing mmd_calib_get_timing(const mmd_calib *c) { return c->tm; }

/* ---- test hooks ---------------------------------------------------------------------- */

static mmd_status one_pose(mmd_calib *c, const mmd_cfg_pose *pose, size_t pose_id, cl_mem *rec)
{
    if (c->spec) return mmd_error(MMD_ERR_INVALID, "calibration: the specular baseline keeps no path records");
    mmd_status st = upload_theta(c);
    if (st == MMD_OK) st = mmd_sim_upload_poses(c->s, pose, &pose_id, 0, 1);
    if (st == MMD_OK) st = get_records(c, pose_id, 0, rec);
    return st;
}

mmd_status mmd_calib_debug_records(mmd_calib *c, const mmd_cfg_pose *pose, size_t pose_id, mmd_cal_vertex **out,
                                   size_t *n_rays)
{
    cl_mem rec;
    *out = NULL;
    mmd_status st = one_pose(c, pose, pose_id, &rec);
    if (st != MMD_OK) return st;
    size_t nv = (size_t)c->s->params.n_rays * c->s->params.max_depth;
    mmd_cal_vertex *h = mmd_malloc(nv, sizeof *h, "records");
    if (!h) return MMD_ERR_NOMEM;
    st = mmd_cl_check(clEnqueueReadBuffer(c->s->cl->queue, rec, CL_TRUE, 0, nv * sizeof *h, h, 0, NULL, NULL),
                      "read records");
    if (st != MMD_OK) {
        free(h);
        return st;
    }
    *out = h;
    *n_rays = c->s->params.n_rays;
    return MMD_OK;
}

mmd_status mmd_calib_debug_forward(mmd_calib *c, const mmd_cfg_pose *pose, size_t pose_id, float *c_out)
{
    cl_mem rec;
    mmd_status st = one_pose(c, pose, pose_id, &rec);
    if (st == MMD_OK) st = launch_replay(c, c->k_forward, rec, 0, 0);
    if (st == MMD_OK)
        st = mmd_cl_check(clEnqueueReadBuffer(c->s->cl->queue, c->s->d_out, CL_TRUE, 0,
                                              c->s->params.n_rays * sizeof *c_out, c_out, 0, NULL, NULL),
                          "read ray powers");
    return st;
}

mmd_status mmd_calib_debug_backward(mmd_calib *c, const mmd_cfg_pose *pose, size_t pose_id, const float *dldc,
                                    double *grad)
{
    cl_mem rec;
    size_t nr = c->s->params.n_rays, nv = nr * c->s->params.max_depth;
    mmd_status st = one_pose(c, pose, pose_id, &rec);
    if (st == MMD_OK) st = ensure_buf(c, &c->d_dldc, &c->cap_dldc, nr * sizeof(float), "ray gradients");
    if (st == MMD_OK)
        st = mmd_cl_check(clEnqueueWriteBuffer(c->s->cl->queue, c->d_dldc, CL_TRUE, 0, nr * sizeof(float), dldc, 0,
                                               NULL, NULL),
                          "upload ray gradients");
    if (st == MMD_OK) st = launch_replay(c, c->k_backward, rec, 0, 1);
    cl_float4 *dt = mmd_malloc(nv, sizeof *dt, "vertex gradients");
    cl_uint *vo = mmd_malloc(nv, sizeof *vo, "vertex objects");
    if (st == MMD_OK && (!dt || !vo)) st = MMD_ERR_NOMEM;
    if (st == MMD_OK)
        st = mmd_cl_check(clEnqueueReadBuffer(c->s->cl->queue, c->d_dtheta, CL_TRUE, 0, nv * sizeof *dt, dt, 0, NULL,
                                              NULL),
                          "read vertex gradients");
    if (st == MMD_OK)
        st = mmd_cl_check(clEnqueueReadBuffer(c->s->cl->queue, c->d_vobj, CL_TRUE, 0, nv * sizeof *vo, vo, 0, NULL,
                                              NULL),
                          "read vertex objects");
    for (size_t i = 0; i < 4 * (size_t)c->n_obj; i++) grad[i] = 0;
    for (size_t v = 0; st == MMD_OK && v < nv; v++)
        if (vo[v] < c->n_obj)
            for (int q = 0; q < 4; q++) grad[4 * vo[v] + q] += dt[v].s[q];
    free(dt);
    free(vo);
    return st;
}

mmd_status mmd_calib_debug_dldc(mmd_calib *c, const mmd_cfg_pose *pose, size_t pose_id, const double *g,
                                float *dldc)
{
    if (c->spec) return mmd_error(MMD_ERR_INVALID, "calibration: the specular baseline has no per-ray gradients");
    mmd_sim *s = c->s;
    const mmd_experiment *e = s->exp;
    int cols = e->rx.array.cols, rows = e->rx.array.rows, nlag = (2 * cols - 1) * (2 * rows - 1);
    size_t nr = s->params.n_rays;
    cl_float2 *H = mmd_malloc((size_t)nlag, sizeof *H, "lag coefficients");
    if (!H) return MMD_ERR_NOMEM;
    lag_coefficients(c, g, H);
    mmd_status st = mmd_sim_upload_poses(s, pose, &pose_id, 0, 1);
    if (st == MMD_OK) st = ensure_buf(c, &c->d_H, &c->cap_H, nlag * sizeof *H, "lag coefficients");
    if (st == MMD_OK) st = ensure_buf(c, &c->d_dldc, &c->cap_dldc, nr * sizeof(float), "ray gradients");
    if (st == MMD_OK)
        st = mmd_cl_check(clEnqueueWriteBuffer(s->cl->queue, c->d_H, CL_TRUE, 0, nlag * sizeof *H, H, 0, NULL, NULL),
                          "upload lag coefficients");
    free(H);
    if (st == MMD_OK) st = launch_dldc(c, 1);
    if (st == MMD_OK)
        st = mmd_cl_check(clEnqueueReadBuffer(s->cl->queue, c->d_dldc, CL_TRUE, 0, nr * sizeof *dldc, dldc, 0, NULL,
                                              NULL),
                          "read ray gradients");
    return st;
}

void mmd_calib_set_hook(mmd_calib *c, mmd_calib_hook hook, void *ctx)
{
    c->hook = hook;
    c->hook_ctx = ctx;
}
mmd_sim *mmd_calib_sim(const mmd_calib *c) { return c->s; }
cl_mem mmd_calib_dldc_buffer(const mmd_calib *c) { return c->d_dldc; }
cl_mem mmd_calib_theta_buffer(const mmd_calib *c) { return c->d_theta; }
float mmd_calib_sig2im(const mmd_calib *c) { return c->sig2im; }

void mmd_calib_clear_cache(mmd_calib *c)
{
    for (size_t i = 0; i < c->n_cache; i++) clReleaseMemObject(c->cache[i].rec);
    c->n_cache = 0;
    c->cache_used = 0;
    c->tm.cache_bytes_used = 0;
}

uint32_t mmd_calib_n_groups(const mmd_calib *c) { return c->n_grp; }
uint32_t mmd_calib_group_of(const mmd_calib *c, uint32_t object) { return object < c->n_obj ? c->grp_of[object] : 0; }
const char *mmd_calib_group_name(const mmd_calib *c, uint32_t g)
{
    if (g >= c->n_grp) return "";
    const mmd_scene *sc = c->s->scene;
    uint32_t o = c->grp_obj[g];
    return c->o.group_by_material ? sc->materials[sc->objects[o].material].name : sc->objects[o].name;
}

mmd_mlp *mmd_calib_mlp(const mmd_calib *c) { return c->mlp; }

mmd_status mmd_calib_predict(mmd_calib *c, const mmd_cfg_pose *poses, const size_t *pose_ids, size_t n,
                             mmd_aoa_result *out)
{
    if (c->spec) {
        /* the specular model itself with the fitted materials, not its linearisation */
        mmd_status st = mmd_calib_materials(c, NULL);
        return st == MMD_OK ? mmd_sim_aoa_ex(c->s, poses, pose_ids, n, NULL, NULL, out, NULL, NULL) : st;
    }
    mmd_status st = upload_theta(c);
    fill_ctx fc = {c, MMD_OK};
    if (st == MMD_OK) st = mmd_sim_aoa_ex(c->s, poses, pose_ids, n, replay_fill, &fc, out, NULL, NULL);
    return st;
}

mmd_status mmd_calib_debug_backward_mlp(mmd_calib *c, const mmd_cfg_pose *pose, size_t pose_id, const float *dldc,
                                        float *grads)
{
    if (!c->mlp) return mmd_error(MMD_ERR_INVALID, "calibration: not a neural model");
    cl_mem rec;
    size_t nr = c->s->params.n_rays, nv = nr * c->s->params.max_depth;
    mmd_status st = one_pose(c, pose, pose_id, &rec);
    if (st == MMD_OK) st = ensure_buf(c, &c->d_dldc, &c->cap_dldc, nr * sizeof(float), "ray gradients");
    if (st == MMD_OK)
        st = mmd_cl_check(clEnqueueWriteBuffer(c->s->cl->queue, c->d_dldc, CL_TRUE, 0, nr * sizeof(float), dldc, 0,
                                               NULL, NULL),
                          "upload ray gradients");
    if (st == MMD_OK) st = launch_replay(c, c->k_backward, rec, 0, 1);
    if (st == MMD_OK) st = mmd_mlp_zero_grad(c->mlp);
    cl_float4 *dt = c->o.field_at_triangle ? mmd_malloc(nv, sizeof *dt, "vertex gradients") : NULL;
    if (st == MMD_OK && c->o.field_at_triangle && !dt) st = MMD_ERR_NOMEM;
    if (st == MMD_OK && dt)
        st = mmd_cl_check(clEnqueueReadBuffer(c->s->cl->queue, c->d_dtheta, CL_TRUE, 0, nv * sizeof *dt, dt, 0, NULL,
                                              NULL),
                          "read vertex gradients");
    if (st == MMD_OK) st = field_backward(c, dt, nv);
    free(dt);
    if (st == MMD_OK) st = mmd_mlp_get_grads(c->mlp, grads);
    return st;
}

mmd_status mmd_calib_triangle_materials(mmd_calib *c, mmd_material *out)
{
    mmd_sim *s = c->s;
    const mmd_scene *sc = s->scene;
    size_t nt = sc->n_triangles;
    for (size_t t = 0; t < nt; t++) out[t] = s->materials[sc->tri_object[t]];
    if (!c->mlp || !nt) return MMD_OK;
    /* the field's inputs as eval_field_triangles makes them */
    float lo[3], sc3[3];
    field_box(sc, lo, sc3);
    float *pos = mmd_malloc(nt, 3 * sizeof *pos, "field inputs");
    cl_float4 *th = mmd_malloc(nt, sizeof *th, "field values");
    mmd_status st = pos && th ? MMD_OK : MMD_ERR_NOMEM;
    for (size_t t = 0; st == MMD_OK && t < nt; t++) tri_field_input(sc, t, lo, sc3, pos + 3 * t);
    cl_mem d_pos = NULL, d_th = NULL;
    if (st == MMD_OK) st = mmd_cl_buffer(s->cl, CL_MEM_READ_ONLY, nt * 3 * sizeof(float), pos, "field inputs", &d_pos);
    if (st == MMD_OK) st = mmd_cl_buffer(s->cl, CL_MEM_READ_WRITE, nt * sizeof(cl_float4), NULL, "field values", &d_th);
    if (st == MMD_OK) st = mmd_mlp_infer(c->mlp, d_pos, nt, d_th);
    if (st == MMD_OK)
        st = mmd_cl_check(clEnqueueReadBuffer(s->cl->queue, d_th, CL_TRUE, 0, nt * sizeof(cl_float4), th, 0, NULL, NULL),
                          "read field values");
    for (size_t t = 0; st == MMD_OK && t < nt; t++) {
        out[t].eps_r = th[t].s[0];
        out[t].sigma_s_per_m = th[t].s[1];
        out[t].scattering = th[t].s[2];
        out[t].xpd = th[t].s[3];
    }
    if (d_pos) clReleaseMemObject(d_pos);
    if (d_th) clReleaseMemObject(d_th);
    free(pos);
    free(th);
    return st;
}
