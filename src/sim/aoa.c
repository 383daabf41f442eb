/*
 * Host side of the AoA forward model (SPEC 3-4, docs/aoa.md): material resolution,
 * scene upload, batched launches of cl/aoa.cl, and the exact beam sum from the lag
 * covariance that the device accumulates.
 */
#include "mmd_sim.h"
#include "mmd_paths.h"
#include "mmd_trace.h"

#include <complex.h>
#include <pthread.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEG (M_PI / 180.0)

static const mmd_cfg_material *cfg_material(const mmd_experiment *e, const char *name)
{
    for (size_t i = 0; i < e->scene.n_materials; i++)
        if (!strcmp(e->scene.materials[i].name, name)) return &e->scene.materials[i];
    return NULL;
}

/* Resolve the material of one scene object (see mmd_sim.h for the precedence). */
static mmd_status resolve_material(const mmd_experiment *e, const mmd_scene *sc, uint32_t obj, mmd_material *m)
{
    const mmd_scene_object *o = &sc->objects[obj];
    const mmd_scene_material *sm = &sc->materials[o->material];
    const mmd_cfg_material *cm = cfg_material(e, o->name);
    if (!cm) cm = cfg_material(e, sm->name);
    double f = e->scene.frequency_hz;
    mmd_status st = MMD_OK;
    char what[1024];
    if (cm) {
        snprintf(what, sizeof what, "%s: scene.materials.%s", cm->where ? cm->where : "experiment", cm->name);
        if (cm->itu) {
            st = mmd_material_itu(cm->itu, f, m);
            if (st != MMD_OK) return mmd_error(st, "%s: %s", what, mmd_last_error());
            m->thickness_m = sm->kind != MMD_MAT_UNASSIGNED ? sm->thickness_m : 0.0;
        } else {
            memset(m, 0, sizeof *m);
            m->eps_r = cm->eps_r;
            m->sigma_s_per_m = cm->sigma_s_per_m;
            m->thickness_m = 0.0;
        }
        m->scattering = cm->scattering;
        m->xpd = cm->xpd;
        if (cm->has_thickness) m->thickness_m = cm->thickness_m;
        m->alpha_r = cm->has_alpha_r ? cm->alpha_r : e->solver.alpha_r;
    } else {
        snprintf(what, sizeof what, "%s: material '%s' of object '%s'", sc->path ? sc->path : "scene", sm->name,
                 o->name);
        switch (sm->kind) {
        case MMD_MAT_ITU:
            st = mmd_material_itu(sm->itu_name, f, m);
            if (st != MMD_OK) return mmd_error(st, "%s: %s", what, mmd_last_error());
            break;
        case MMD_MAT_RADIO:
            memset(m, 0, sizeof *m);
            m->eps_r = sm->eps_r;
            m->sigma_s_per_m = sm->sigma_s_per_m;
            break;
        default:
            return mmd_error(MMD_ERR_INVALID,
                             "%s: object '%s' has no radio material (scene material '%s' is unassigned); "
                             "give one in the experiment, e.g. scene.materials.%s: {itu: concrete}",
                             sc->path ? sc->path : "scene", o->name, sm->name, sm->name);
        }
        m->thickness_m = sm->thickness_m;
        m->scattering = sm->scattering;
        m->xpd = sm->xpd;
        m->alpha_r = e->solver.alpha_r;
    }
    return mmd_material_validate(m, what);
}

static void to_gpu_material(const mmd_material *m, double f, mmd_gpu_material *g)
{
    double _Complex eta = mmd_material_eta(m, f);
    memset(g, 0, sizeof *g);
    g->eta_re = (float)creal(eta);
    g->eta_im = (float)cimag(eta);
    g->thickness_m = (float)m->thickness_m;
    g->scattering = (float)m->scattering;
    g->xpd = (float)m->xpd;
    g->alpha = m->alpha_r;
}

/* Lobe normaliser coefficients for every distinct alpha, shared between materials. */
static mmd_status build_lobe_tables(mmd_sim *s)
{
    free(s->lobe_coef);
    s->lobe_coef = NULL;
    s->n_coef = 0;
    double *coef = mmd_malloc(MMD_LOBE_NCOEF_MAX, sizeof *coef, "lobe coefficients");
    if (!coef) return MMD_ERR_NOMEM;
    for (uint32_t i = 0; i < s->n_mat; i++) {
        mmd_gpu_material *g = &s->gpu_mats[i];
        uint32_t j = 0;
        for (; j < i; j++)
            if (s->gpu_mats[j].alpha == g->alpha) break;
        if (j < i) {
            g->lobe_A = s->gpu_mats[j].lobe_A;
            g->coef_off = s->gpu_mats[j].coef_off;
            g->ncoef = s->gpu_mats[j].ncoef;
            continue;
        }
        double A;
        int nc;
        mmd_status st = mmd_lobe_coeffs(g->alpha, &A, coef, &nc);
        if (st != MMD_OK) {
            free(coef);
            return st;
        }
        int keep = mmd_lobe_ncoef_needed(A, coef, nc, 1e-8);
        if (keep < 1) keep = 1;
        float *nt = mmd_realloc(s->lobe_coef, s->n_coef + (size_t)keep, sizeof *nt, "lobe coefficients");
        if (!nt) {
            free(coef);
            return MMD_ERR_NOMEM;
        }
        s->lobe_coef = nt;
        for (int k = 0; k < keep; k++) s->lobe_coef[s->n_coef + k] = (float)coef[k];
        g->lobe_A = (float)A;
        g->coef_off = s->n_coef;
        g->ncoef = (uint32_t)keep;
        s->n_coef += (uint32_t)keep;
    }
    free(coef);
    return MMD_OK;
}

static mmd_status upload_materials(mmd_sim *s)
{
    if (s->d_mats) clReleaseMemObject(s->d_mats), s->d_mats = NULL;
    if (s->d_coef) clReleaseMemObject(s->d_coef), s->d_coef = NULL;
    mmd_status st = mmd_cl_buffer(s->cl, CL_MEM_READ_ONLY, s->n_mat * sizeof(mmd_gpu_material), s->gpu_mats,
                                  "materials", &s->d_mats);
    if (st == MMD_OK)
        st = mmd_cl_buffer(s->cl, CL_MEM_READ_ONLY, s->n_coef * sizeof(float), s->lobe_coef, "lobe coefficients",
                           &s->d_coef);
    return st;
}

mmd_status mmd_sim_set_material(mmd_sim *s, uint32_t object, const mmd_material *m)
{
    if (object >= s->n_mat) return mmd_error(MMD_ERR_INVALID, "object index %u out of range", object);
    mmd_status st = mmd_material_validate(m, "material");
    if (st != MMD_OK) return st;
    s->materials[object] = *m;
    to_gpu_material(m, s->freq_hz, &s->gpu_mats[object]);
    st = build_lobe_tables(s);
    return st == MMD_OK ? upload_materials(s) : st;
}

mmd_status mmd_sim_set_triangle_materials(mmd_sim *s, const mmd_material *per_tri)
{
    const mmd_scene *sc = s->scene;
    uint32_t nt = sc->n_triangles;
    if (!nt) return MMD_OK;
    for (uint32_t t = 0; t < nt; t++) {
        char what[64];
        snprintf(what, sizeof what, "material of triangle %u", t);
        mmd_status st = mmd_material_validate(&per_tri[t], what);
        if (st != MMD_OK) return st;
    }
    mmd_material *m = mmd_malloc(nt, sizeof *m, "materials");
    mmd_gpu_material *g = mmd_calloc(nt, sizeof *g, "materials");
    mmd_prim_info *prims = mmd_malloc(nt, sizeof *prims, "triangle data");
    if (!m || !g || !prims) {
        free(m), free(g), free(prims);
        return MMD_ERR_NOMEM;
    }
    memcpy(m, per_tri, nt * sizeof *m);
    for (uint32_t t = 0; t < nt; t++) to_gpu_material(&m[t], s->freq_hz, &g[t]);
    free(s->materials), free(s->gpu_mats);
    s->materials = m, s->gpu_mats = g, s->n_mat = nt;
    /* each triangle points at its own table entry; the rest of its data (smoothed normal,
     * lift) stays as mmd_sim_update_geometry computed it */
    mmd_status st = mmd_cl_check(clEnqueueReadBuffer(s->cl->queue, s->d_prims, CL_TRUE, 0, nt * sizeof *prims, prims, 0,
                                                     NULL, NULL),
                                 "read triangle data");
    for (uint32_t t = 0; st == MMD_OK && t < nt; t++) prims[t].material = t;
    if (st == MMD_OK)
        st = mmd_cl_check(clEnqueueWriteBuffer(s->cl->queue, s->d_prims, CL_TRUE, 0, nt * sizeof *prims, prims, 0, NULL,
                                               NULL),
                          "upload triangle data");
    free(prims);
    if (st == MMD_OK) st = build_lobe_tables(s);
    return st == MMD_OK ? upload_materials(s) : st;
}

static mmd_status antenna_from_cfg(int element, mmd_antenna *a)
{
    static const char *names[] = {"iso", "dipole", "hw_dipole", "tr38901", "patch"};
    if (element < 0 || element > 4) return mmd_error(MMD_ERR_INVALID, "antenna element %d out of range", element);
    return mmd_antenna_by_name(names[element], a);
}

/* Per-triangle data of the scene (normals in double precision: thin slivers of LiDAR
 * meshes; smoothed at the wave's scale in directional mode) and the tree, to the device. */
mmd_status mmd_sim_update_geometry(mmd_sim *s, const mmd_bvh *bvh)
{
    const mmd_scene *sc = s->scene;
    const mmd_experiment *e = s->exp;
    mmd_status st = MMD_OK;
    mmd_prim_info *prims = mmd_malloc(sc->n_triangles, sizeof *prims, "triangle normals");
    if (!prims) return MMD_ERR_NOMEM;
    for (uint32_t t = 0; t < sc->n_triangles; t++) {
        const float *a = sc->vertices + 3 * sc->indices[3 * t], *b = sc->vertices + 3 * sc->indices[3 * t + 1],
                    *c = sc->vertices + 3 * sc->indices[3 * t + 2];
        double e1[3] = {b[0] - a[0], b[1] - a[1], b[2] - a[2]}, e2[3] = {c[0] - a[0], c[1] - a[1], c[2] - a[2]};
        double n[3] = {e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]};
        double l = sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]);
        if (!(l > 0)) n[0] = n[1] = 0, n[2] = 1, l = 1;
        memset(&prims[t], 0, sizeof prims[t]);
        for (int k = 0; k < 3; k++) prims[t].n[k] = (float)(n[k] / l);
        prims[t].material = sc->tri_object[t];
    }
    if (e->solver.mode == MMD_CFG_SOLVER_DIRECTIONAL && e->solver.normal_radius_m > 0) {
        /* the lobe is centred on the surface's normal at the scale of the wave, not on a
         * scan's noisy facets; the specular baseline keeps exact faces, as Sionna does */
        float *ns = mmd_malloc(sc->n_triangles, 4 * sizeof *ns, "smoothed normals");
        st = ns ? mmd_smooth_normals(sc, e->solver.normal_radius_m, ns, ns + 3 * (size_t)sc->n_triangles)
                : MMD_ERR_NOMEM;
        double max_lift = 0;
        for (uint32_t t = 0; st == MMD_OK && t < sc->n_triangles; t++) {
            for (int k = 0; k < 3; k++) prims[t].n[k] = ns[3 * t + k];
            prims[t].lift = ns[3 * (size_t)sc->n_triangles + t];
            if (prims[t].lift > max_lift) max_lift = prims[t].lift;
        }
        if (st == MMD_OK && max_lift > 0)
            mmd_debug("normals averaged over %g m; secondary rays start up to %.1f mm above rough surfaces",
                      e->solver.normal_radius_m, 1e3 * max_lift);
        free(ns);
    }
    cl_mem bufs[3] = {s->d_nodes, s->d_tris, s->d_prims};
    for (int i = 0; i < 3; i++)
        if (bufs[i]) clReleaseMemObject(bufs[i]);
    s->d_nodes = s->d_tris = s->d_prims = NULL;
    s->bvh = bvh;
    if (st == MMD_OK)
        st = mmd_cl_buffer(s->cl, CL_MEM_READ_ONLY, bvh->n_nodes * sizeof(mmd_bvh8_node), bvh->nodes, "BVH nodes",
                           &s->d_nodes);
    if (st == MMD_OK)
        st = mmd_cl_buffer(s->cl, CL_MEM_READ_ONLY, bvh->n_tris * sizeof(mmd_tri), bvh->tris, "BVH triangles",
                           &s->d_tris);
    if (st == MMD_OK)
        st = mmd_cl_buffer(s->cl, CL_MEM_READ_ONLY, sc->n_triangles * sizeof(mmd_prim_info), prims, "triangle data",
                           &s->d_prims);
    free(prims);
    /* specular candidates were shot in the old geometry */
    if (s->cand) {
        mmd_path_candidates_free(s->cand);
        free(s->cand);
        s->cand = NULL;
    }
    return st;
}

mmd_status mmd_sim_create(mmd_cl *cl, const mmd_scene *sc, const mmd_bvh *bvh, const mmd_experiment *e,
                          mmd_sim **out)
{
    *out = NULL;
    mmd_sim *s = mmd_calloc(1, sizeof *s, "simulator");
    if (!s) return MMD_ERR_NOMEM;
    s->cl = cl;
    s->scene = sc;
    s->bvh = bvh;
    s->exp = e;
    s->freq_hz = e->scene.frequency_hz;
    s->wavelength = mmd_wavelength(s->freq_hz);
    s->n_mat = sc->n_objects;
    mmd_status st = MMD_OK;
    s->materials = mmd_calloc(s->n_mat, sizeof *s->materials, "materials");
    s->gpu_mats = mmd_calloc(s->n_mat, sizeof *s->gpu_mats, "materials");
    if (!s->materials || !s->gpu_mats) st = MMD_ERR_NOMEM;
    for (uint32_t o = 0; st == MMD_OK && o < s->n_mat; o++) {
        st = resolve_material(e, sc, o, &s->materials[o]);
        if (st == MMD_OK) to_gpu_material(&s->materials[o], s->freq_hz, &s->gpu_mats[o]);
    }
    if (st == MMD_OK) st = build_lobe_tables(s);
    if (st == MMD_OK) st = antenna_from_cfg(e->tx.pattern, &s->tx_ant);
    if (st == MMD_OK) {
        if (e->rx.array.mode == MMD_CFG_RX_MECHANICAL)
            st = mmd_antenna_horn(e->rx.array.horn.hpbw_deg, &s->rx_ant);
        else
            st = antenna_from_cfg(e->rx.array.element, &s->rx_ant);
    }
    if (st == MMD_OK)
        st = mmd_ura_init(&s->ura, e->rx.array.rows, e->rx.array.cols, e->rx.array.spacing_wavelengths,
                          e->rx.array.window == MMD_CFG_WINDOW_HANN);
    if (st != MMD_OK) {
        mmd_sim_destroy(s);
        return st;
    }
    mmd_rotation_ypr(e->tx.yaw_deg * DEG, e->tx.pitch_deg * DEG, e->tx.roll_deg * DEG, s->tx_rot);

    mmd_sim_params *P = &s->params;
    memset(P, 0, sizeof *P);
    for (int k = 0; k < 3; k++) P->tx_pos[k] = (float)e->tx.position_m[k];
    for (int k = 0; k < 9; k++) P->tx_rot[k] = (float)s->tx_rot[k];
    P->wavelength = (float)s->wavelength;
    P->k0 = (float)(2.0 * M_PI / s->wavelength);
    P->tx_kind = (int32_t)s->tx_ant.kind;
    P->tx_q = (float)s->tx_ant.q;
    P->tx_g0 = (float)s->tx_ant.g0;
    P->n_rays = (uint32_t)e->solver.rays;
    P->max_depth = (uint32_t)e->solver.max_depth;
    P->flags = (e->solver.diffuse ? MMD_SIM_DIFFUSE : 0) | (e->solver.transmission ? MMD_SIM_TRANSMIT : 0) |
               (e->solver.polarization == MMD_CFG_POL_JONES ? MMD_SIM_JONES : 0) |
               (e->solver.mode == MMD_CFG_SOLVER_SPECULAR ? MMD_SIM_SPECULAR : 0);
    P->p_diffuse = MMD_SIM_P_DIFFUSE;
    P->p_transmit = MMD_SIM_P_TRANSMIT;
    P->seed_lo = (uint32_t)((uint64_t)e->solver.seed & 0xffffffffu);
    P->seed_hi = (uint32_t)((uint64_t)e->solver.seed >> 32);
    P->eps_scale = MMD_SIM_EPS_SCALE;

    st = mmd_sim_update_geometry(s, bvh);
    if (st != MMD_OK) {
        mmd_sim_destroy(s);
        return st;
    }
    if (st == MMD_OK) st = upload_materials(s);
    if (st == MMD_OK) st = mmd_cl_buffer(cl, CL_MEM_READ_ONLY, sizeof *P, P, "run parameters", &s->d_params);
    cl_program prog = NULL;
    char opts[256];
    mmd_trace_cl_options(cl, opts, sizeof opts);
    /* CPU cores hide the latency of one ray's node loads behind the other ray's work
     * (cl/aoa.cl); GPUs do that across their many threads already */
    s->rays_per_item = (cl->info.type & CL_DEVICE_TYPE_CPU) ? 2 : 1;
    snprintf(opts + strlen(opts), sizeof opts - strlen(opts),
             "-DMMD_SIM_FLAGS_CT=%uu -DMMD_AOA_PER_ITEM=%d -DMMD_AOA_COLS=%d -DMMD_AOA_ROWS=%d ", P->flags,
             s->rays_per_item, e->rx.array.cols, e->rx.array.rows);
    if (st == MMD_OK) st = mmd_cl_program(cl, "aoa.cl", opts, &prog);
    if (st == MMD_OK) st = mmd_cl_kernel(cl, prog, "mmd_aoa_trace", &s->k_trace);
    if (st == MMD_OK) st = mmd_cl_kernel(cl, prog, "mmd_aoa_lags", &s->k_lags);
    if (st == MMD_OK) st = mmd_cl_kernel(cl, prog, "mmd_aoa_dirs", &s->k_dirs);
    if (st != MMD_OK) {
        mmd_sim_destroy(s);
        return st;
    }
    *out = s;
    return MMD_OK;
}

void mmd_sim_destroy(mmd_sim *s)
{
    if (!s) return;
    cl_mem bufs[] = {s->d_nodes, s->d_tris,    s->d_prims,   s->d_mats,     s->d_coef,    s->d_params,
                     s->d_poses, s->d_out, s->d_partial, s->d_cov_cell, s->d_cov_val};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        if (bufs[i]) clReleaseMemObject(bufs[i]);
    if (s->k_trace) clReleaseKernel(s->k_trace);
    if (s->k_lags) clReleaseKernel(s->k_lags);
    if (s->k_dirs) clReleaseKernel(s->k_dirs);
    if (s->k_cov) clReleaseKernel(s->k_cov);
    if (s->cand) mmd_path_candidates_free(s->cand);
    free(s->cand);
    free(s->materials);
    free(s->gpu_mats);
    free(s->lobe_coef);
    free(s);
}

void mmd_aoa_result_free(mmd_aoa_result *r)
{
    free(r->spectra);
    free(r->total_power);
    free(r->los_power);
    free(r->los_az_deg);
    free(r->los_el_deg);
    free(r->los_visible);
    free(r->peaks);
    free(r->n_peaks);
    for (size_t k = 0; r->paths && k < r->n_poses; k++) free(r->paths[k]);
    free(r->paths);
    free(r->n_paths);
    memset(r, 0, sizeof *r);
}

static mmd_status ensure(mmd_sim *s, cl_mem *buf, size_t *cap, size_t need, const char *what)
{
    if (*buf && *cap >= need) return MMD_OK;
    if (*buf) clReleaseMemObject(*buf);
    *buf = NULL;
    *cap = 0;
    mmd_status st = mmd_cl_buffer(s->cl, CL_MEM_READ_WRITE, need, NULL, what, buf);
    if (st == MMD_OK) *cap = need;
    return st;
}

static void pose_to_gpu(const mmd_cfg_pose *p, uint32_t index, mmd_gpu_pose *g)
{
    double R[9];
    memset(g, 0, sizeof *g);
    mmd_rotation_ypr(p->yaw_deg * DEG, p->pitch_deg * DEG, p->roll_deg * DEG, R);
    for (int k = 0; k < 3; k++) g->pos[k] = (float)p->position_m[k];
    for (int k = 0; k < 9; k++) g->rot[k] = (float)R[k];
    g->index = index;
}

static size_t batch_size(const mmd_sim *s)
{
    /* keep one launch around 4M work-items (16 MB of per-ray output) */
    size_t b = (size_t)(4u << 20) / s->params.n_rays;
    return b < 1 ? 1 : b > 256 ? 256 : b;
}

/* Upload n poses to d_poses (ids[i] = the pose's index, which seeds its rays; NULL =
 * first + i) and make d_out hold n * n_rays floats. */
mmd_status mmd_sim_upload_poses(mmd_sim *s, const mmd_cfg_pose *poses, const size_t *ids, size_t first, size_t n)
{
    mmd_gpu_pose *gp = mmd_malloc(n ? n : 1, sizeof *gp, "poses");
    if (!gp) return MMD_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) pose_to_gpu(&poses[i], (uint32_t)(ids ? ids[i] : first + i), &gp[i]);
    size_t nr = s->params.n_rays;
    mmd_status st = ensure(s, &s->d_poses, &s->cap_poses, n * sizeof *gp, "poses");
    if (st == MMD_OK) {
        size_t cap_out = 0;
        if (s->d_out) clGetMemObjectInfo(s->d_out, CL_MEM_SIZE, sizeof cap_out, &cap_out, NULL);
        st = ensure(s, &s->d_out, &cap_out, n * nr * sizeof(float), "per-ray powers");
    }
    if (st == MMD_OK)
        st = mmd_cl_check(clEnqueueWriteBuffer(s->cl->queue, s->d_poses, CL_TRUE, 0, n * sizeof *gp, gp, 0, NULL, NULL),
                          "upload poses");
    free(gp);
    return st;
}

/* Run the trace kernel on poses [first, first + n) (global indices, or ids) into d_out. */
static mmd_status run_trace(mmd_sim *s, const mmd_cfg_pose *poses, const size_t *ids, size_t first, size_t n)
{
    size_t nr = s->params.n_rays;
    mmd_status st = mmd_sim_upload_poses(s, poses, ids, first, n);
    if (st != MMD_OK) return st;
    cl_uint np = (cl_uint)n;
    cl_kernel k = s->k_trace;
    cl_int err = clSetKernelArg(k, 0, sizeof(cl_mem), &s->d_nodes);
    err |= clSetKernelArg(k, 1, sizeof(cl_mem), &s->d_tris);
    err |= clSetKernelArg(k, 2, sizeof(cl_mem), &s->d_prims);
    err |= clSetKernelArg(k, 3, sizeof(cl_mem), &s->d_mats);
    err |= clSetKernelArg(k, 4, sizeof(cl_mem), &s->d_coef);
    err |= clSetKernelArg(k, 5, sizeof(cl_mem), &s->d_poses);
    err |= clSetKernelArg(k, 6, sizeof(cl_mem), &s->d_params);
    err |= clSetKernelArg(k, 7, sizeof(cl_uint), &np);
    err |= clSetKernelArg(k, 8, sizeof(cl_mem), &s->d_out);
    if (err != CL_SUCCESS) return mmd_cl_check(err, "set mmd_aoa_trace arguments");
    size_t items = (n * nr + (size_t)s->rays_per_item - 1) / (size_t)s->rays_per_item;
    size_t local = 64, global = (items + local - 1) / local * local;
    double t0 = mmd_now();
    st = mmd_cl_check(clEnqueueNDRangeKernel(s->cl->queue, k, 1, NULL, &global, &local, 0, NULL, NULL),
                      "launch mmd_aoa_trace");
    if (st == MMD_OK) st = mmd_cl_check(clFinish(s->cl->queue), "mmd_aoa_trace");
    s->t_trace += mmd_now() - t0;
    return st;
}

mmd_status mmd_sim_trace_rays(mmd_sim *s, const mmd_cfg_pose *poses, size_t n, float *c_out)
{
    mmd_status st = run_trace(s, poses, NULL, 0, n);
    if (st != MMD_OK) return st;
    return mmd_cl_check(clEnqueueReadBuffer(s->cl->queue, s->d_out, CL_TRUE, 0, n * s->params.n_rays * sizeof(float),
                                            c_out, 0, NULL, NULL),
                        "read per-ray powers");
}

mmd_status mmd_sim_ray_dirs(mmd_sim *s, const mmd_cfg_pose *poses, size_t n, float *dirs)
{
    mmd_status st = run_trace(s, poses, NULL, 0, n); /* uploads the poses (and traces: cheap enough here) */
    if (st != MMD_OK) return st;
    size_t total = n * s->params.n_rays;
    cl_mem d = NULL;
    st = mmd_cl_buffer(s->cl, CL_MEM_WRITE_ONLY, total * 3 * sizeof(float), NULL, "ray directions", &d);
    if (st != MMD_OK) return st;
    cl_uint np = (cl_uint)n;
    cl_int err = clSetKernelArg(s->k_dirs, 0, sizeof(cl_mem), &s->d_poses);
    err |= clSetKernelArg(s->k_dirs, 1, sizeof(cl_mem), &s->d_params);
    err |= clSetKernelArg(s->k_dirs, 2, sizeof(cl_uint), &np);
    err |= clSetKernelArg(s->k_dirs, 3, sizeof(cl_mem), &d);
    st = mmd_cl_check(err, "set mmd_aoa_dirs arguments");
    if (st == MMD_OK)
        st = mmd_cl_check(clEnqueueNDRangeKernel(s->cl->queue, s->k_dirs, 1, NULL, &total, NULL, 0, NULL, NULL),
                          "launch mmd_aoa_dirs");
    if (st == MMD_OK)
        st = mmd_cl_check(clEnqueueReadBuffer(s->cl->queue, d, CL_TRUE, 0, total * 3 * sizeof(float), dirs, 0, NULL,
                                              NULL),
                          "read ray directions");
    clReleaseMemObject(d);
    return st;
}

/* Window autocorrelation R_p, p = 0..N-1. */
static void autocorr(const double *w, int n, double *R)
{
    for (int p = 0; p < n; p++) {
        double a = 0;
        for (int i = 0; i + p < n; i++) a += w[i] * w[i + p];
        R[p] = a;
    }
}

static void grid_value(const mmd_cfg_grid *g, int i, double *v) { *v = g->start + g->step * i; }

int mmd_aoa_find_peaks(const float *spec, int n_az, int n_el, const mmd_cfg_grid *az, const mmd_cfg_grid *el,
                       mmd_aoa_peak *peaks, int max)
{
    int wrap = az->step * n_az >= 360.0 - 1e-9;
    int n = 0;
    for (int j = 0; j < n_el; j++) {
        for (int i = 0; i < n_az; i++) {
            float v = spec[(size_t)j * n_az + i];
            if (!(v > 0)) continue;
            int is_max = 1;
            for (int dj = -1; dj <= 1 && is_max; dj++) {
                for (int di = -1; di <= 1; di++) {
                    if (!di && !dj) continue;
                    int jj = j + dj, ii = i + di;
                    if (jj < 0 || jj >= n_el) continue;
                    if (ii < 0 || ii >= n_az) {
                        if (!wrap) continue;
                        ii = (ii + n_az) % n_az;
                    }
                    float u = spec[(size_t)jj * n_az + ii];
                    /* plateaus: the first cell in scan order wins */
                    int later = jj > j || (jj == j && ii > i);
                    if (u > v || (u == v && !later)) {
                        is_max = 0;
                        break;
                    }
                }
            }
            if (!is_max) continue;
            mmd_aoa_peak pk;
            grid_value(az, i, &pk.az_deg);
            grid_value(el, j, &pk.el_deg);
            pk.power_db = 10.0 * log10((double)v);
            /* insertion into the sorted top-`max` list */
            int pos = n < max ? n : max;
            while (pos > 0 && peaks[pos - 1].power_db < pk.power_db) {
                if (pos < max) peaks[pos] = peaks[pos - 1];
                pos--;
            }
            if (pos < max) {
                peaks[pos] = pk;
                if (n < max) n++;
            }
        }
    }
    return n;
}

/* Theta-hat (vertical polarisation) of local direction u, in the world frame of R. */
static void theta_hat_world(const double R[9], const double u[3], double out[3])
{
    double th[3], rho = hypot(u[0], u[1]);
    th[0] = rho > 1e-12 ? u[2] * u[0] / rho : (u[2] > 0 ? 1 : -1);
    th[1] = rho > 1e-12 ? u[2] * u[1] / rho : 0;
    th[2] = -rho;
    mmd_to_world(R, th, out);
}

/* The exact line-of-sight path (SPEC 4). With solver.transmission, surfaces with a slab
 * thickness on the segment attenuate it by their transmission coefficients (crossed in
 * order from the TX, Jones-correct) instead of blocking it; any other surface blocks. */
#define MMD_LOS_MAX_CROSSINGS 32
static void los_of_pose(mmd_sim *s, const mmd_cfg_pose *p, mmd_aoa_result *r, size_t k, double *c_los_iso,
                        double u_los[3])
{
    const mmd_experiment *e = s->exp;
    const mmd_scene *sc = s->scene;
    double R[9];
    mmd_rotation_ypr(p->yaw_deg * DEG, p->pitch_deg * DEG, p->roll_deg * DEG, R);
    double v[3], d = 0;
    for (int i = 0; i < 3; i++) v[i] = e->tx.position_m[i] - p->position_m[i], d += v[i] * v[i];
    d = sqrt(d);
    *c_los_iso = 0;
    r->los_visible[k] = 0;
    r->los_power[k] = 0;
    if (!(d > 0)) return;
    for (int i = 0; i < 3; i++) v[i] /= d;
    mmd_to_local(R, v, u_los);
    double az, el;
    mmd_dir_to_az_el(u_los, &az, &el);
    r->los_az_deg[k] = az / DEG;
    r->los_el_deg[k] = el / DEG;
    /* crossings from the RX side */
    uint32_t cross[MMD_LOS_MAX_CROSSINGS];
    int nc = 0;
    float tmin = 0.0f, tend = (float)(d * (1.0 - 1e-6));
    for (;;) {
        mmd_ray ray = {(float)p->position_m[0], (float)p->position_m[1], (float)p->position_m[2], tmin,
                       (float)v[0], (float)v[1], (float)v[2], tend};
        mmd_hit h = mmd_bvh_closest_ref(s->bvh, &ray);
        if (h.prim < 0) break;
        const mmd_material *m = &s->materials[sc->tri_object[h.prim]];
        if (!e->solver.transmission || !(m->thickness_m > 0) || nc == MMD_LOS_MAX_CROSSINGS) return; /* blocked */
        cross[nc++] = (uint32_t)h.prim;
        tmin = h.t + fmaxf(1e-6f * (float)d, 1e-5f);
        if (tmin >= tend) break;
    }
    r->los_visible[k] = nc == 0;
    double back[3] = {-v[0], -v[1], -v[2]}, txl[3];
    mmd_to_local(s->tx_rot, back, txl);
    double g = mmd_free_space_gain(s->wavelength, d) * mmd_antenna_gain(&s->tx_ant, txl);
    int jones = e->solver.polarization == MMD_CFG_POL_JONES;
    double complex E[3] = {0, 0, 0};
    double wt[3], wr[3];
    theta_hat_world(s->tx_rot, txl, wt);
    theta_hat_world(R, u_los, wr);
    for (int i = 0; i < 3; i++) E[i] = wt[i];
    double scalar = 1.0;
    for (int c = nc - 1; c >= 0; c--) { /* from the TX toward the RX: propagation k = -v */
        uint32_t t = cross[c];
        const float *a = sc->vertices + 3 * sc->indices[3 * t], *b = sc->vertices + 3 * sc->indices[3 * t + 1],
                    *cc = sc->vertices + 3 * sc->indices[3 * t + 2];
        double e1[3] = {b[0] - a[0], b[1] - a[1], b[2] - a[2]}, e2[3] = {cc[0] - a[0], cc[1] - a[1], cc[2] - a[2]};
        double n[3] = {e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]};
        double ln = sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]);
        if (!(ln > 0)) continue;
        for (int i = 0; i < 3; i++) n[i] /= ln;
        double cosi = fabs(back[0] * n[0] + back[1] * n[1] + back[2] * n[2]);
        double complex Rf[2], T[2];
        mmd_material_fresnel(&s->materials[sc->tri_object[t]], s->freq_hz, cosi, Rf, T);
        if (jones) {
            double ete[3], etm[3];
            mmd_te_tm_basis(back, n, ete, etm);
            double complex pte = 0, ptm = 0;
            for (int i = 0; i < 3; i++) pte += ete[i] * E[i], ptm += etm[i] * E[i];
            for (int i = 0; i < 3; i++) E[i] = T[0] * pte * ete[i] + T[1] * ptm * etm[i];
        } else {
            scalar *= 0.5 * (cabs(T[0]) * cabs(T[0]) + cabs(T[1]) * cabs(T[1]));
        }
    }
    if (jones) {
        double complex amp = 0;
        for (int i = 0; i < 3; i++) amp += wr[i] * E[i];
        g *= creal(amp * conj(amp));
    } else {
        g *= scalar;
    }
    *c_los_iso = g;
    r->los_power[k] = g * mmd_antenna_gain(&s->rx_ant, u_los);
}

/* ---- mechanical scanning (SPEC 4: S(b) = sum_c c G_horn(R_b^-1 u_c)) -------------------
 * The horn's pattern is g0 cos^q(psi) about its boresight u_b, so each ray only reaches the
 * bins within psi_max (g / g0 < 1e-9) of its direction. Threads own disjoint bands of
 * elevation rows and visit the rays in order, so sums are deterministic. */
typedef struct mech_job {
    const float *c, *dirs;
    size_t nr;
    const mmd_experiment *e;
    const mmd_antenna *horn;
    double cos_max;
    const double *ex_c, *ex_u; /* exact contributions (LoS, specular paths): power, direction */
    int n_ex;
    const double *lut; /* g0 cos^q on [cos_max, 1] in MECH_LUT steps (pow per bin is the cost) */
    float *spec;
    int j0, j1;
} mech_job;

#define MECH_LUT 65536

static void *mech_worker(void *arg)
{
    mech_job *m = arg;
    const mmd_cfg_grid *ga = &m->e->aoa.azimuth_deg, *ge = &m->e->aoa.elevation_deg;
    int naz = ga->count;
    double psi_max = acos(m->cos_max);
    size_t nb = (size_t)(m->j1 - m->j0) * naz;
    double *acc = calloc(nb ? nb : 1, sizeof *acc);
    double *ub = malloc((nb ? nb : 1) * 3 * sizeof *ub);
    if (!acc || !ub) {
        free(acc);
        free(ub);
        return (void *)1;
    }
    for (int j = m->j0; j < m->j1; j++)
        for (int i = 0; i < naz; i++)
            mmd_dir_from_az_el((ga->start + i * ga->step) * DEG, (ge->start + j * ge->step) * DEG,
                               ub + 3 * ((size_t)(j - m->j0) * naz + i));
    for (size_t r = 0; r < m->nr + (size_t)m->n_ex; r++) {
        double w, u[3];
        if (r < m->nr) {
            w = m->c[r];
            if (!(w > 0)) continue;
            for (int k = 0; k < 3; k++) u[k] = m->dirs[3 * r + k];
        } else {
            size_t x = r - m->nr; /* the exact contributions last, in order */
            w = m->ex_c[x];
            if (!(w > 0)) continue;
            for (int k = 0; k < 3; k++) u[k] = m->ex_u[3 * x + k];
        }
        double az, el;
        mmd_dir_to_az_el(u, &az, &el);
        az /= DEG, el /= DEG;
        double pm = psi_max / DEG;
        int jlo = (int)floor((el - pm - ge->start) / ge->step), jhi = (int)ceil((el + pm - ge->start) / ge->step);
        if (jlo < m->j0) jlo = m->j0;
        if (jhi > m->j1 - 1) jhi = m->j1 - 1;
        double se = sin(el * DEG), ce = cos(el * DEG);
        int wrap = ga->step * naz >= 360.0 - 1e-9;
        for (int j = jlo; j <= jhi; j++) {
            /* azimuth window of this row: cos psi = sin e sin e_b + cos e cos e_b cos(daz) */
            double eb = (ge->start + j * ge->step) * DEG, ceb = cos(eb);
            double den = ce * ceb, lim = den > 1e-12 ? (m->cos_max - se * sin(eb)) / den : -2.0;
            int i0 = 0, i1 = naz - 1;
            if (lim > -1.0) {
                if (lim >= 1.0) lim = 1.0;
                double daz = acos(lim) / DEG + ga->step; /* one bin of margin for rounding */
                int lo = (int)floor((az - daz - ga->start) / ga->step), hi = (int)ceil((az + daz - ga->start) / ga->step);
                if (!wrap || hi - lo + 1 >= naz) {
                    i0 = lo < 0 ? 0 : lo;
                    i1 = hi > naz - 1 ? naz - 1 : hi;
                } else {
                    i0 = lo, i1 = hi; /* wrapped below */
                }
            }
            for (int ii = i0; ii <= i1; ii++) {
                int i = ((ii % naz) + naz) % naz;
                const double *b = ub + 3 * ((size_t)(j - m->j0) * naz + i);
                double cp = u[0] * b[0] + u[1] * b[1] + u[2] * b[2];
                if (cp <= m->cos_max) continue;
                double x = (cp - m->cos_max) / (1.0 - m->cos_max) * MECH_LUT;
                int xi = (int)x;
                if (xi >= MECH_LUT) xi = MECH_LUT - 1;
                double fr = x - xi;
                acc[(size_t)(j - m->j0) * naz + i] += w * (m->lut[xi] + fr * (m->lut[xi + 1] - m->lut[xi]));
            }
        }
    }
    for (size_t k = 0; k < nb; k++) m->spec[(size_t)m->j0 * naz + k] = (float)acc[k];
    free(acc);
    free(ub);
    return NULL;
}

static mmd_status mechanical_spectrum(mmd_sim *s, const float *c, const float *dirs, size_t nr, const double *ex_c,
                                      const double *ex_u, int n_ex, float *spec)
{
    const mmd_experiment *e = s->exp;
    int nel = e->aoa.elevation_deg.count;
    int nt = mmd_num_threads();
    if (nt > nel) nt = nel;
    if (nt > 64) nt = 64;
    mech_job jobs[64];
    pthread_t th[64];
    double cos_max = pow(1e-9, 1.0 / s->rx_ant.q);
    double *lut = mmd_malloc(MECH_LUT + 1, sizeof *lut, "horn pattern table");
    if (!lut) return MMD_ERR_NOMEM;
    for (int i = 0; i <= MECH_LUT; i++)
        lut[i] = s->rx_ant.g0 * pow(cos_max + (1.0 - cos_max) * i / MECH_LUT, s->rx_ant.q);
    for (int t = 0; t < nt; t++) {
        jobs[t] = (mech_job){c, dirs, nr, e, &s->rx_ant, cos_max, ex_c, ex_u, n_ex, lut, spec, nel * t / nt,
                             nel * (t + 1) / nt};
    }
    int started = 0;
    for (; started < nt; started++)
        if (pthread_create(&th[started], NULL, mech_worker, &jobs[started]) != 0) break;
    int failed = started < nt;
    for (int t = started; t < nt; t++)
        if (mech_worker(&jobs[t])) failed = 1;
    for (int t = 0; t < started; t++) {
        void *r;
        pthread_join(th[t], &r);
        if (r) failed = 1;
    }
    free(lut);
    return failed ? mmd_error(MMD_ERR_NOMEM, "out of memory in the mechanical-scan beam sum") : MMD_OK;
}

mmd_status mmd_sim_aoa(mmd_sim *s, const mmd_cfg_pose *poses, size_t n, mmd_aoa_result *r,
                       void (*progress)(size_t, size_t, void *), void *user)
{
    return mmd_sim_aoa_ex(s, poses, NULL, n, NULL, NULL, r, progress, user);
}

size_t mmd_sim_batch_poses(const mmd_sim *s) { return batch_size(s); }

mmd_status mmd_sim_aoa_ex(mmd_sim *s, const mmd_cfg_pose *poses, const size_t *ids, size_t n, mmd_sim_fill_fn fill,
                          void *fill_ctx, mmd_aoa_result *r, void (*progress)(size_t, size_t, void *), void *user)
{
    memset(r, 0, sizeof *r);
    const mmd_experiment *e = s->exp;
    int naz = e->aoa.azimuth_deg.count, nel = e->aoa.elevation_deg.count;
    int cols = e->rx.array.cols, rows = e->rx.array.rows;
    int n_lags = cols * (2 * rows - 1);
    size_t nr = s->params.n_rays;
    int mech = e->rx.array.mode == MMD_CFG_RX_MECHANICAL;
    r->n_poses = n;
    r->n_az = naz;
    r->n_el = nel;
    r->spectra = mmd_calloc(n * (size_t)naz * nel, sizeof(float), "spectra");
    r->total_power = mmd_calloc(n, sizeof(double), "powers");
    r->los_power = mmd_calloc(n, sizeof(double), "powers");
    r->los_az_deg = mmd_calloc(n, sizeof(double), "LoS");
    r->los_el_deg = mmd_calloc(n, sizeof(double), "LoS");
    r->los_visible = mmd_calloc(n, sizeof(int), "LoS");
    r->peaks = mmd_calloc(n * MMD_AOA_PEAKS, sizeof(mmd_aoa_peak), "peaks");
    r->n_peaks = mmd_calloc(n, sizeof(int), "peaks");
    int specular = e->solver.mode == MMD_CFG_SOLVER_SPECULAR;
    /* Monte Carlo is needed unless only exact specular paths can carry power */
    int any_scatter = 0;
    for (uint32_t o = 0; o < s->n_mat; o++) any_scatter |= s->materials[o].scattering > 0;
    int mc = !specular || (e->solver.diffuse && any_scatter);
    mmd_status st = MMD_OK;
    if (specular) {
        r->paths = mmd_calloc(n, sizeof *r->paths, "paths");
        r->n_paths = mmd_calloc(n, sizeof *r->n_paths, "paths");
        if (!r->paths || !r->n_paths) st = MMD_ERR_NOMEM;
        if (st == MMD_OK && !s->cand) {
            s->cand = mmd_calloc(1, sizeof *s->cand, "path candidates");
            if (!s->cand) st = MMD_ERR_NOMEM;
            double t0 = mmd_now();
            if (st == MMD_OK) st = mmd_paths_candidates(s, s->cand);
            s->t_paths += mmd_now() - t0;
            if (st != MMD_OK) free(s->cand), s->cand = NULL;
        }
    }
    /* exact contributions of one pose: LoS first, then the specular paths */
    double *ex_c = NULL, *ex_u = NULL;
    size_t cap_ex = 0;
    size_t bs = batch_size(s);
    /* rays per work-item of the lag reduction: enough work-items per pose for a GPU, few
     * enough partial sums to add on the host. On a CPU device each work-item is vector code
     * of its own, so work-groups of one: left to choose, PoCL 3.1 made groups so large that
     * one core did most of the work (beam sum 87 -> 40 ms per pose with 1, BENCHMARKS.md). */
    const int lag_cpu = (s->cl->info.type & CL_DEVICE_TYPE_CPU) != 0;
    const uint32_t rays_per_group = lag_cpu ? 512 : 128;
    const size_t lag_local = lag_cpu ? 1 : 64;
    size_t groups_per_pose = (nr + rays_per_group - 1) / rays_per_group;
    float *c_host = mmd_malloc(bs * nr, sizeof(float), "per-ray powers");
    float *dirs = mech ? mmd_malloc(bs * nr * 3, sizeof(float), "ray directions") : NULL;
    cl_mem d_dirs = NULL;
    if (mech && mmd_cl_buffer(s->cl, CL_MEM_WRITE_ONLY, bs * nr * 3 * sizeof(float), NULL, "ray directions",
                              &d_dirs) != MMD_OK)
        mech = -1; /* reported below */
    cl_float2 *partial = mmd_malloc(bs * groups_per_pose * (size_t)n_lags, sizeof(cl_float2), "lag sums");
    /* per-bin phase bases and window autocorrelations (double, host) */
    double *Rc = mmd_malloc((size_t)cols, sizeof(double), "window"), *Rr = mmd_malloc((size_t)rows, sizeof(double), "window");
    double complex *G = mmd_malloc((size_t)n_lags, sizeof(double complex), "lags");
    double complex *H = mmd_malloc((size_t)cols, sizeof(double complex), "lags");
    double complex *ey = mmd_malloc((size_t)naz * nel * cols, sizeof(double complex), "phases");
    double complex *ez = mmd_malloc((size_t)nel * (2 * rows - 1), sizeof(double complex), "phases");
    if (!r->spectra || !r->total_power || !r->los_power || !r->los_az_deg || !r->los_el_deg || !r->los_visible ||
        !r->peaks || !r->n_peaks || !c_host || !partial || !Rc || !Rr || !G || !H || !ey || !ez || (mech && !dirs))
        st = MMD_ERR_NOMEM;
    if (mech < 0) st = MMD_ERR_CL;
    double kappa = 2.0 * M_PI * e->rx.array.spacing_wavelengths;
    if (st == MMD_OK) {
        autocorr(s->ura.w_col, cols, Rc);
        autocorr(s->ura.w_row, rows, Rr);
        for (int j = 0; j < nel; j++) {
            double el = (e->aoa.elevation_deg.start + j * e->aoa.elevation_deg.step) * DEG;
            for (int q = -(rows - 1); q <= rows - 1; q++)
                ez[(size_t)j * (2 * rows - 1) + q + rows - 1] = cexp(-I * kappa * q * sin(el));
            for (int i = 0; i < naz; i++) {
                double az = (e->aoa.azimuth_deg.start + i * e->aoa.azimuth_deg.step) * DEG;
                double uy = cos(el) * sin(az);
                for (int p = 0; p < cols; p++) ey[((size_t)j * naz + i) * cols + p] = cexp(-I * kappa * p * uy);
            }
        }
    }
    double norm = s->ura.sum_col * s->ura.sum_col * s->ura.sum_row * s->ura.sum_row;
    cl_int rx_kind = (cl_int)s->rx_ant.kind;
    cl_float rx_q = (float)s->rx_ant.q, rx_g0 = (float)s->rx_ant.g0, f_kappa = (float)kappa;
    cl_uint rpg = rays_per_group;
    for (size_t first = 0; st == MMD_OK && first < n; first += bs) {
        size_t nb = n - first < bs ? n - first : bs;
        if (mc && fill) {
            st = mmd_sim_upload_poses(s, poses + first, ids ? ids + first : NULL, first, nb);
            if (st == MMD_OK) st = fill(fill_ctx, s, poses + first, ids ? ids + first : NULL, first, nb);
        } else if (mc) {
            st = run_trace(s, poses + first, ids ? ids + first : NULL, first, nb);
        } else {
            memset(c_host, 0, nb * nr * sizeof *c_host);
            memset(partial, 0, nb * groups_per_pose * (size_t)n_lags * sizeof *partial);
        }
        if (st != MMD_OK) break;
        double t0 = mmd_now();
        if (!mc) {
            /* nothing to reduce */
        } else if (!mech) {
            size_t cap = s->cap_partial;
            st = ensure(s, &s->d_partial, &cap, nb * groups_per_pose * n_lags * sizeof(cl_float2), "lag sums");
            s->cap_partial = cap;
            if (st != MMD_OK) goto done_batch;
            cl_uint np = (cl_uint)nb;
            cl_kernel k = s->k_lags;
            cl_int err = clSetKernelArg(k, 0, sizeof(cl_mem), &s->d_out);
            err |= clSetKernelArg(k, 1, sizeof(cl_mem), &s->d_poses);
            err |= clSetKernelArg(k, 2, sizeof(cl_mem), &s->d_params);
            err |= clSetKernelArg(k, 3, sizeof(cl_uint), &np);
            err |= clSetKernelArg(k, 4, sizeof(cl_int), &rx_kind);
            err |= clSetKernelArg(k, 5, sizeof(cl_float), &rx_q);
            err |= clSetKernelArg(k, 6, sizeof(cl_float), &rx_g0);
            err |= clSetKernelArg(k, 7, sizeof(cl_float), &f_kappa);
            err |= clSetKernelArg(k, 8, sizeof(cl_uint), &rpg);
            err |= clSetKernelArg(k, 9, sizeof(cl_mem), &s->d_partial);
            if (err != CL_SUCCESS) {
                st = mmd_cl_check(err, "set mmd_aoa_lags arguments");
                goto done_batch;
            }
            size_t global = (nb * groups_per_pose + lag_local - 1) / lag_local * lag_local; /* the kernel skips the excess */
            st = mmd_cl_check(clEnqueueNDRangeKernel(s->cl->queue, k, 1, NULL, &global, &lag_local, 0, NULL, NULL),
                              "launch mmd_aoa_lags");
            if (st == MMD_OK)
                st = mmd_cl_check(clEnqueueReadBuffer(s->cl->queue, s->d_partial, CL_TRUE, 0,
                                                      nb * groups_per_pose * n_lags * sizeof(cl_float2), partial, 0, NULL,
                                                      NULL),
                                  "read lag sums");
        } else {
            cl_uint np = (cl_uint)nb;
            cl_int err = clSetKernelArg(s->k_dirs, 0, sizeof(cl_mem), &s->d_poses);
            err |= clSetKernelArg(s->k_dirs, 1, sizeof(cl_mem), &s->d_params);
            err |= clSetKernelArg(s->k_dirs, 2, sizeof(cl_uint), &np);
            err |= clSetKernelArg(s->k_dirs, 3, sizeof(cl_mem), &d_dirs);
            size_t total = nb * nr;
            st = mmd_cl_check(err, "set mmd_aoa_dirs arguments");
            if (st == MMD_OK)
                st = mmd_cl_check(clEnqueueNDRangeKernel(s->cl->queue, s->k_dirs, 1, NULL, &total, NULL, 0, NULL, NULL),
                                  "launch mmd_aoa_dirs");
            if (st == MMD_OK)
                st = mmd_cl_check(clEnqueueReadBuffer(s->cl->queue, d_dirs, CL_TRUE, 0, total * 3 * sizeof(float), dirs,
                                                      0, NULL, NULL),
                                  "read ray directions");
        }
        if (st == MMD_OK && mc)
            st = mmd_cl_check(clEnqueueReadBuffer(s->cl->queue, s->d_out, CL_TRUE, 0, nb * nr * sizeof(float), c_host,
                                                  0, NULL, NULL),
                              "read per-ray powers");
        if (st != MMD_OK) break;
        for (size_t b = 0; b < nb; b++) {
            size_t k_pose = first + b;
            /* total (iso-receiver) power: ordered double sum */
            double tot = 0;
            for (size_t i = 0; i < nr; i++) tot += c_host[b * nr + i];
            for (int l = 0; l < n_lags; l++) {
                double complex a = 0;
                for (size_t g = 0; g < groups_per_pose; g++) {
                    cl_float2 v = partial[(b * groups_per_pose + g) * n_lags + l];
                    a += v.s[0] + I * v.s[1];
                }
                G[l] = a;
            }
            double c_los = 0, u_los[3] = {1, 0, 0};
            los_of_pose(s, &poses[k_pose], r, k_pose, &c_los, u_los);
            size_t n_ex = 1, np = 0;
            if (specular) {
                double tp = mmd_now();
                st = mmd_paths_solve_pose(s, s->cand, &poses[k_pose], &r->paths[k_pose], &r->n_paths[k_pose]);
                s->t_paths += mmd_now() - tp;
                if (st != MMD_OK) goto done_batch;
                np = r->n_paths[k_pose];
                n_ex += np;
            }
            if (n_ex > cap_ex) {
                free(ex_c), free(ex_u);
                ex_c = mmd_malloc(n_ex, sizeof *ex_c, "paths");
                ex_u = mmd_malloc(n_ex, 3 * sizeof *ex_u, "paths");
                cap_ex = ex_c && ex_u ? n_ex : 0;
                if (!cap_ex) {
                    st = MMD_ERR_NOMEM;
                    goto done_batch;
                }
            }
            ex_c[0] = c_los;
            memcpy(ex_u, u_los, sizeof u_los);
            for (size_t q = 0; q < np; q++) {
                const mmd_path *pp = &r->paths[k_pose][q];
                ex_c[1 + q] = pp->gain;
                memcpy(ex_u + 3 * (1 + q), pp->arrival_local, 3 * sizeof(double));
                tot += pp->gain;
            }
            r->total_power[k_pose] = tot + c_los;
            float *spec = r->spectra + k_pose * (size_t)naz * nel;
            if (mech) {
                /* the horn is pointed at the LoS for los_power */
                if (r->los_visible[k_pose]) r->los_power[k_pose] = c_los * s->rx_ant.g0;
                st = mechanical_spectrum(s, c_host + b * nr, dirs + b * nr * 3, mc ? nr : 0, ex_c, ex_u, (int)n_ex,
                                         spec);
                if (st != MMD_OK) goto done_batch;
            }
            /* exact contributions through the element pattern */
            for (size_t x = 0; x < n_ex; x++) ex_c[x] *= mmd_antenna_gain(&s->rx_ant, ex_u + 3 * x);
            for (int j = 0; !mech && j < nel; j++) {
                /* H[p] = sum_q R_|q| G(p, q) e^{-j kappa q u_bz}: depends on the elevation only */
                const double complex *ezj = ez + (size_t)j * (2 * rows - 1);
                for (int p = 0; p < cols; p++) {
                    double complex inner = 0;
                    const double complex *Gp = G + (size_t)p * (2 * rows - 1);
                    for (int q = 0; q < 2 * rows - 1; q++) {
                        int aq = q - (rows - 1);
                        inner += Rr[aq < 0 ? -aq : aq] * Gp[q] * ezj[q];
                    }
                    H[p] = inner;
                }
                double el = (e->aoa.elevation_deg.start + j * e->aoa.elevation_deg.step) * DEG;
                for (int i = 0; i < naz; i++) {
                    const double complex *eyb = ey + ((size_t)j * naz + i) * cols;
                    double sum = 0;
                    for (int p = 0; p < cols; p++) sum += (p ? 2.0 : 1.0) * Rc[p] * creal(H[p] * eyb[p]);
                    double val = sum / norm;
                    if (n_ex > 1 || ex_c[0] > 0) {
                        double az = (e->aoa.azimuth_deg.start + i * e->aoa.azimuth_deg.step) * DEG, ub[3];
                        mmd_dir_from_az_el(az, el, ub);
                        for (size_t x = 0; x < n_ex; x++)
                            if (ex_c[x] > 0) val += ex_c[x] * mmd_ura_beam(&s->ura, ex_u + 3 * x, ub);
                    }
                    spec[(size_t)j * naz + i] = (float)(val > 0 ? val : 0);
                }
            }
            r->n_peaks[k_pose] = mmd_aoa_find_peaks(spec, naz, nel, &e->aoa.azimuth_deg, &e->aoa.elevation_deg,
                                                    r->peaks + k_pose * MMD_AOA_PEAKS, MMD_AOA_PEAKS);
        }
        s->t_reduce += mmd_now() - t0;
        if (progress) progress(first + nb, n, user);
        continue;
    done_batch:
        break;
    }
    free(c_host);
    free(dirs);
    free(ex_c);
    free(ex_u);
    if (d_dirs) clReleaseMemObject(d_dirs);
    free(partial);
    free(Rc);
    free(Rr);
    free(G);
    free(H);
    free(ey);
    free(ez);
    if (st != MMD_OK) mmd_aoa_result_free(r);
    return st;
}
