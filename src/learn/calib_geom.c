/*
 * Geometry calibration of one object (mmd_calib_geom.h, cl/calib_geom.cl,
 * docs/calibration_geometry.md): the object's pose parameters, moving its vertices and
 * re-uploading the scene, the gradient hook of the calibration engine, Adam.
 */
#include "mmd_calib_geom.h"
#include "mmd_par.h"
#include "mmd_trace.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NP MMD_CALIB_GEOM_NPARAM
#define GEO_WG 64 /* cl/calib_geom.cl: reqd_work_group_size */

struct mmd_calib_geom {
    mmd_calib *c;
    mmd_sim *s;
    mmd_scene *scene;
    uint32_t obj, first_tri, n_tris;
    uint32_t *vid;     /* the object's vertices (indices into scene->vertices) */
    double *x0;        /* their create-time positions, 3 per vertex */
    size_t n_vid;
    double centroid[3];
    double p[NP], grad[NP], m[NP], v[NP];
    int64_t step;
    double beta1, beta2, adam_eps;
    mmd_bvh *bvh;      /* the tree the simulator points at after apply (owned) */
    cl_kernel k_grad;
    cl_mem d_geo_n;    /* geometric normal per object triangle (float4) */
    cl_mem d_partial;  /* NP floats per work-group */
    cl_mem d_rec, d_dldc; /* test entry point only, allocated on first use */
    size_t n_groups;
    float *partial;
    int hooked;        /* our hook is registered with c */
    int float_state;   /* round p, m, v to float after each step (mmd_calib_geom_set_float_state) */
};

void mmd_calib_geom_rotation(const double p[NP], double R[9])
{
    /* R = R_y(a_y) R_x(a_x) */
    double cx = cos(p[3]), sx = sin(p[3]), cy = cos(p[4]), sy = sin(p[4]);
    R[0] = cy, R[1] = sy * sx, R[2] = sy * cx;
    R[3] = 0, R[4] = cx, R[5] = -sx;
    R[6] = -sy, R[7] = cy * sx, R[8] = cy * cx;
}

/* The object's vertices and their create-time positions; vertices it shares with other
 * objects are duplicated first, so moving it cannot drag a neighbour along. */
static mmd_status collect_vertices(mmd_calib_geom *g)
{
    mmd_scene *sc = g->scene;
    uint32_t nv = sc->n_vertices, t0 = g->first_tri, t1 = g->first_tri + g->n_tris;
    uint8_t *mark = mmd_calloc(nv ? nv : 1, 1, "geometry calibration");
    if (!mark) return MMD_ERR_NOMEM;
    for (uint32_t t = t0; t < t1; t++)
        for (int k = 0; k < 3; k++) mark[sc->indices[3 * t + k]] = 1;
    for (uint32_t t = 0; t < sc->n_triangles; t++)
        if (t < t0 || t >= t1)
            for (int k = 0; k < 3; k++)
                if (mark[sc->indices[3 * t + k]]) mark[sc->indices[3 * t + k]] = 2;
    size_t n_shared = 0, n_own = 0;
    for (uint32_t i = 0; i < nv; i++) n_shared += mark[i] == 2, n_own += mark[i] != 0;
    mmd_status st = MMD_OK;
    if (n_shared) {
        if ((uint64_t)nv + n_shared > UINT32_MAX)
            st = mmd_error(MMD_ERR_NOMEM, "geometry calibration: too many vertices");
        size_t n_new = 3 * ((size_t)nv + n_shared);
        float *nvtx = st == MMD_OK ? mmd_realloc(sc->vertices, n_new, sizeof(float), "scene vertices") : NULL;
        uint32_t *remap = st == MMD_OK ? mmd_malloc(nv, sizeof *remap, "geometry calibration") : NULL;
        if (st == MMD_OK && (!nvtx || !remap)) st = MMD_ERR_NOMEM;
        if (nvtx) sc->vertices = nvtx;
        if (st == MMD_OK) {
            uint32_t next = nv;
            for (uint32_t i = 0; i < nv; i++) {
                remap[i] = i;
                if (mark[i] != 2) continue;
                memcpy(sc->vertices + 3 * (size_t)next, sc->vertices + 3 * (size_t)i, 3 * sizeof(float));
                remap[i] = next++;
            }
            for (uint32_t t = t0; t < t1; t++)
                for (int k = 0; k < 3; k++) sc->indices[3 * t + k] = remap[sc->indices[3 * t + k]];
            sc->n_vertices = next;
            mmd_debug("geometry calibration: object '%s' shared %zu vertices with other objects; they were duplicated",
                      sc->objects[g->obj].name, n_shared);
        }
        free(remap);
        if (st == MMD_OK) {
            /* re-mark with the new numbering */
            uint8_t *nm = mmd_realloc(mark, sc->n_vertices, 1, "geometry calibration");
            if (!nm) st = MMD_ERR_NOMEM;
            else {
                mark = nm;
                memset(mark, 0, sc->n_vertices);
                for (uint32_t t = t0; t < t1; t++)
                    for (int k = 0; k < 3; k++) mark[sc->indices[3 * t + k]] = 1;
            }
        }
    }
    if (st == MMD_OK) {
        g->vid = mmd_malloc(n_own ? n_own : 1, sizeof *g->vid, "geometry calibration");
        g->x0 = mmd_malloc(3 * (n_own ? n_own : 1), sizeof *g->x0, "geometry calibration");
        if (!g->vid || !g->x0) st = MMD_ERR_NOMEM;
    }
    for (uint32_t i = 0; st == MMD_OK && i < sc->n_vertices; i++) {
        if (!mark[i]) continue;
        g->vid[g->n_vid] = i;
        for (int k = 0; k < 3; k++) g->x0[3 * g->n_vid + k] = sc->vertices[3 * (size_t)i + k];
        g->n_vid++;
    }
    free(mark);
    return st;
}

/* Twice the area vector of scene triangle t (double: thin slivers) and its centroid. */
static void tri_geometry(const mmd_scene *sc, uint32_t t, double n[3], double cen[3])
{
    const float *v[3];
    for (int k = 0; k < 3; k++) v[k] = sc->vertices + 3 * (size_t)sc->indices[3 * (size_t)t + k];
    double e1[3], e2[3];
    for (int k = 0; k < 3; k++) {
        e1[k] = (double)v[1][k] - v[0][k];
        e2[k] = (double)v[2][k] - v[0][k];
        cen[k] = ((double)v[0][k] + v[1][k] + v[2][k]) / 3.0;
    }
    n[0] = e1[1] * e2[2] - e1[2] * e2[1];
    n[1] = e1[2] * e2[0] - e1[0] * e2[2];
    n[2] = e1[0] * e2[1] - e1[1] * e2[0];
}

/* Area-weighted centroid of the object's triangles (the vertex mean for zero area). */
static void object_centroid(mmd_calib_geom *g)
{
    double acc[3] = {0, 0, 0}, area = 0;
    for (uint32_t t = g->first_tri; t < g->first_tri + g->n_tris; t++) {
        double n[3], cen[3];
        tri_geometry(g->scene, t, n, cen);
        double ar = 0.5 * sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]);
        for (int k = 0; k < 3; k++) acc[k] += ar * cen[k];
        area += ar;
    }
    if (area > 0) {
        for (int k = 0; k < 3; k++) g->centroid[k] = acc[k] / area;
        return;
    }
    for (int k = 0; k < 3; k++) acc[k] = 0;
    for (size_t i = 0; i < g->n_vid; i++)
        for (int k = 0; k < 3; k++) acc[k] += g->x0[3 * i + k];
    for (int k = 0; k < 3; k++) g->centroid[k] = g->n_vid ? acc[k] / (double)g->n_vid : 0.0;
}

/* Geometric (face) normals of the object's triangles from the current vertices: the
 * plane the hit point slides on (the record's normal may be smoothed). */
static mmd_status upload_geo_normals(mmd_calib_geom *g)
{
    cl_float4 *gn = mmd_malloc(g->n_tris, sizeof *gn, "object normals");
    if (!gn) return MMD_ERR_NOMEM;
    for (uint32_t i = 0; i < g->n_tris; i++) {
        double n[3], cen[3];
        tri_geometry(g->scene, g->first_tri + i, n, cen);
        double l = sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]);
        if (!(l > 0)) n[0] = n[1] = 0, n[2] = 1, l = 1; /* never hit, any normal will do */
        for (int k = 0; k < 3; k++) gn[i].s[k] = (float)(n[k] / l);
        gn[i].s[3] = 0.0f;
    }
    cl_command_queue q = g->s->cl->queue;
    mmd_status st = mmd_cl_check(
        clEnqueueWriteBuffer(q, g->d_geo_n, CL_TRUE, 0, g->n_tris * sizeof *gn, gn, 0, NULL, NULL),
        "upload object normals");
    free(gn);
    return st;
}

/* sum over the pose's rays of dldc[b n_rays + i] dc_i/dp, added to grad. */
static mmd_status launch_grad(mmd_calib_geom *g, cl_mem rec, cl_mem dldc, cl_uint b, double grad[NP])
{
    mmd_sim *s = g->s;
    double R[9];
    mmd_calib_geom_rotation(g->p, R);
    cl_float4 pivot = {{(float)(g->centroid[0] + g->p[0]), (float)(g->centroid[1] + g->p[1]),
                        (float)(g->centroid[2] + g->p[2]), 0.0f}};
    /* omega of a_x is R_y(a_y) e_x (the first column of R_y), of a_y it is e_y */
    cl_float4 wx = {{(float)cos(g->p[4]), 0.0f, (float)-sin(g->p[4]), 0.0f}}, wy = {{0.0f, 1.0f, 0.0f, 0.0f}};
    cl_mem theta = mmd_calib_theta_buffer(g->c);
    float sig2im = mmd_calib_sig2im(g->c);
    cl_kernel k = g->k_grad;
    cl_int err = clSetKernelArg(k, 0, sizeof(cl_mem), &rec);
    err |= clSetKernelArg(k, 1, sizeof(cl_mem), &theta);
    err |= clSetKernelArg(k, 2, sizeof(cl_mem), &s->d_mats);
    err |= clSetKernelArg(k, 3, sizeof(cl_mem), &s->d_coef);
    err |= clSetKernelArg(k, 4, sizeof(cl_mem), &s->d_poses);
    err |= clSetKernelArg(k, 5, sizeof(cl_mem), &s->d_params);
    err |= clSetKernelArg(k, 6, sizeof(cl_uint), &b);
    err |= clSetKernelArg(k, 7, sizeof(float), &sig2im);
    err |= clSetKernelArg(k, 8, sizeof(cl_mem), &dldc);
    err |= clSetKernelArg(k, 9, sizeof(cl_uint), &g->obj);
    err |= clSetKernelArg(k, 10, sizeof(cl_uint), &g->first_tri);
    err |= clSetKernelArg(k, 11, sizeof(cl_uint), &g->n_tris);
    err |= clSetKernelArg(k, 12, sizeof(cl_mem), &g->d_geo_n);
    err |= clSetKernelArg(k, 13, sizeof(cl_float4), &pivot);
    err |= clSetKernelArg(k, 14, sizeof(cl_float4), &wx);
    err |= clSetKernelArg(k, 15, sizeof(cl_float4), &wy);
    err |= clSetKernelArg(k, 16, sizeof(cl_mem), &g->d_partial);
    mmd_status st = mmd_cl_check(err, "set mmd_calib_geom_grad arguments");
    size_t local = GEO_WG, global = g->n_groups * GEO_WG;
    if (st == MMD_OK)
        st = mmd_cl_check(clEnqueueNDRangeKernel(s->cl->queue, k, 1, NULL, &global, &local, 0, NULL, NULL),
                          "launch mmd_calib_geom_grad");
    if (st == MMD_OK)
        st = mmd_cl_check(clEnqueueReadBuffer(s->cl->queue, g->d_partial, CL_TRUE, 0, g->n_groups * NP * sizeof(float),
                                              g->partial, 0, NULL, NULL),
                          "read geometry gradient");
    if (st != MMD_OK) return st;
    /* groups in order, in double: the same sum on every run */
    double acc[NP] = {0};
    for (size_t q = 0; q < g->n_groups; q++)
        for (int j = 0; j < NP; j++) acc[j] += g->partial[q * NP + j];
    for (int j = 0; j < NP; j++) {
        if (!isfinite(acc[j])) return mmd_error(MMD_ERR_INTERNAL, "geometry calibration: gradient %d is not finite", j);
        grad[j] += acc[j];
    }
    return MMD_OK;
}

static mmd_status geom_hook(void *ctx, mmd_calib *c, cl_mem rec, cl_uint b, size_t pose_id)
{
    (void)c;
    (void)pose_id;
    mmd_calib_geom *g = ctx;
    return launch_grad(g, rec, mmd_calib_dldc_buffer(g->c), b, g->grad);
}

mmd_status mmd_calib_geom_create(mmd_calib *c, mmd_scene *scene, const char *object_name, mmd_calib_geom **out)
{
    *out = NULL;
    mmd_sim *s = mmd_calib_sim(c);
    if (!scene || scene != s->scene)
        return mmd_error(MMD_ERR_INVALID,
                         "geometry calibration: the scene is not the one the simulator was created with");
    /* the hook sees per-object materials only (mmd_calib_theta_buffer); the neural field's
     * values live per recorded vertex and would also move with the hit points */
    if (mmd_calib_mlp(c))
        return mmd_error(MMD_ERR_INVALID, "geometry calibration: train.model per_object required (the neural "
                                          "material field is not supported)");
    uint32_t obj = UINT32_MAX;
    for (uint32_t o = 0; object_name && o < scene->n_objects; o++)
        if (!strcmp(scene->objects[o].name, object_name)) {
            obj = o;
            break;
        }
    if (obj == UINT32_MAX) {
        char list[1024] = "";
        size_t len = 0;
        for (uint32_t o = 0; o < scene->n_objects && len + 8 < sizeof list; o++) {
            int w = snprintf(list + len, sizeof list - len, "%s'%s'", o ? ", " : "", scene->objects[o].name);
            if (w < 0 || (size_t)w >= sizeof list - len) {
                snprintf(list + (sizeof list > 5 ? sizeof list - 5 : 0), 5, "...");
                break;
            }
            len += (size_t)w;
        }
        return mmd_error(MMD_ERR_INVALID, "geometry calibration: no object named '%s' in scene %s; its objects: %s",
                         object_name ? object_name : "(null)", scene->path ? scene->path : "(unnamed)", list);
    }
    if (!scene->objects[obj].n_tris)
        return mmd_error(MMD_ERR_INVALID, "geometry calibration: object '%s' has no triangles", object_name);
    mmd_calib_geom *g = mmd_calloc(1, sizeof *g, "geometry calibration");
    if (!g) return MMD_ERR_NOMEM;
    g->c = c;
    g->s = s;
    g->scene = scene;
    g->obj = obj;
    g->first_tri = scene->objects[obj].first_tri;
    g->n_tris = scene->objects[obj].n_tris;
    mmd_calib_options d = mmd_calib_defaults();
    g->beta1 = d.beta1, g->beta2 = d.beta2, g->adam_eps = d.adam_eps;
    mmd_status st = collect_vertices(g);
    if (st == MMD_OK) object_centroid(g);
    char opts[320];
    mmd_trace_cl_options(s->cl, opts, sizeof opts);
    snprintf(opts + strlen(opts), sizeof opts - strlen(opts), "-DMMD_SIM_FLAGS_CT=%uu ", s->params.flags);
    cl_program prog = NULL;
    if (st == MMD_OK) st = mmd_cl_program(s->cl, "calib_geom.cl", opts, &prog);
    if (st == MMD_OK) st = mmd_cl_kernel(s->cl, prog, "mmd_calib_geom_grad", &g->k_grad);
    g->n_groups = (s->params.n_rays + GEO_WG - 1) / GEO_WG;
    if (st == MMD_OK)
        st = mmd_cl_buffer(s->cl, CL_MEM_READ_ONLY, g->n_tris * sizeof(cl_float4), NULL, "object normals", &g->d_geo_n);
    if (st == MMD_OK)
        st = mmd_cl_buffer(s->cl, CL_MEM_READ_WRITE, g->n_groups * NP * sizeof(float), NULL, "geometry gradient",
                           &g->d_partial);
    if (st == MMD_OK) {
        g->partial = mmd_malloc(g->n_groups * NP, sizeof(float), "geometry gradient");
        if (!g->partial) st = MMD_ERR_NOMEM;
    }
    if (st == MMD_OK) st = upload_geo_normals(g);
    if (st != MMD_OK) {
        mmd_calib_geom_destroy(g);
        return st;
    }
    mmd_calib_set_hook(c, geom_hook, g);
    g->hooked = 1;
    mmd_debug("geometry calibration: object '%s' (%u triangles, %zu vertices), centre (%.3f, %.3f, %.3f) m",
              object_name, g->n_tris, g->n_vid, g->centroid[0], g->centroid[1], g->centroid[2]);
    *out = g;
    return MMD_OK;
}

void mmd_calib_geom_destroy(mmd_calib_geom *g)
{
    if (!g) return;
    if (g->hooked) mmd_calib_set_hook(g->c, NULL, NULL);
    if (g->k_grad) clReleaseKernel(g->k_grad);
    cl_mem ms[] = {g->d_geo_n, g->d_partial, g->d_rec, g->d_dldc};
    for (size_t i = 0; i < sizeof ms / sizeof *ms; i++)
        if (ms[i]) clReleaseMemObject(ms[i]);
    mmd_bvh_destroy(g->bvh);
    free(g->partial);
    free(g->vid);
    free(g->x0);
    free(g);
}

void mmd_calib_geom_get_params(const mmd_calib_geom *g, double p[NP]) { memcpy(p, g->p, sizeof g->p); }

mmd_status mmd_calib_geom_set_params(mmd_calib_geom *g, const double p[NP])
{
    for (int j = 0; j < NP; j++)
        if (!isfinite(p[j])) return mmd_error(MMD_ERR_INVALID, "geometry calibration: parameter %d is not finite", j);
    memcpy(g->p, p, sizeof g->p);
    return MMD_OK;
}

mmd_status mmd_calib_geom_apply(mmd_calib_geom *g)
{
    mmd_scene *sc = g->scene;
    double R[9];
    mmd_calib_geom_rotation(g->p, R);
    const double *c = g->centroid;
    for (size_t i = 0; i < g->n_vid; i++) {
        const double *x = g->x0 + 3 * i;
        double r[3] = {x[0] - c[0], x[1] - c[1], x[2] - c[2]};
        float *dst = sc->vertices + 3 * (size_t)g->vid[i];
        for (int k = 0; k < 3; k++)
            dst[k] = (float)(R[3 * k] * r[0] + R[3 * k + 1] * r[1] + R[3 * k + 2] * r[2] + c[k] + g->p[k]);
    }
    mmd_bvh *nb = NULL;
    mmd_status st = mmd_bvh_build(sc->vertices, sc->indices, sc->n_triangles, NULL, &nb);
    if (st != MMD_OK) return st;
    /* the simulator points at nb from here on, even if an upload fails */
    st = mmd_sim_update_geometry(g->s, nb);
    mmd_bvh_destroy(g->bvh);
    g->bvh = nb;
    if (st == MMD_OK) st = upload_geo_normals(g);
    mmd_calib_clear_cache(g->c); /* the records are geometric */
    return st;
}

void mmd_calib_geom_get_grad(const mmd_calib_geom *g, double grad[NP]) { memcpy(grad, g->grad, sizeof g->grad); }
void mmd_calib_geom_zero_grad(mmd_calib_geom *g) { memset(g->grad, 0, sizeof g->grad); }

/* Adam with one second moment shared by all five parameters (1 m counts as 1 rad):
 * v follows |g|^2, so a step moves the parameter vector by about lr along the momentum
 * of the gradient. Adam's usual per-coordinate normalisation gives every coordinate a
 * full-size step however weak its gradient; the in-plane translation of a flat plate,
 * which the edge-free gradient sees only through the plate's current tilt
 * (docs/calibration_geometry.md), then slides by up to lr per step and never comes back
 * (measured on the recovery test: 10-24 cm in-plane error after 200 steps, against 2 mm
 * with the shared moment). v[j] holds the shared value in every slot (checkpoints keep
 * 5 numbers). */
mmd_status mmd_calib_geom_adam(mmd_calib_geom *g, double lr)
{
    if (!(lr > 0) || !isfinite(lr)) return mmd_error(MMD_ERR_INVALID, "geometry calibration: learning rate %g", lr);
    /* across MPI ranks each rank holds its poses' share of the gradient of the global mean
     * loss (the engine scales by the global pose count): the sum is the gradient */
    if (mmd_par_size() > 1) {
        mmd_status st = mmd_par_sum(g->grad, NP);
        if (st != MMD_OK) return st;
    }
    double n2 = 0;
    for (int j = 0; j < NP; j++) {
        if (!isfinite(g->grad[j]))
            return mmd_error(MMD_ERR_INVALID, "geometry calibration: gradient %d is not finite", j);
        n2 += g->grad[j] * g->grad[j];
    }
    g->step++;
    double c1 = 1.0 - pow(g->beta1, (double)g->step), c2 = 1.0 - pow(g->beta2, (double)g->step);
    double v = g->beta2 * g->v[0] + (1 - g->beta2) * n2;
    for (int j = 0; j < NP; j++) {
        g->m[j] = g->beta1 * g->m[j] + (1 - g->beta1) * g->grad[j];
        g->v[j] = v;
        g->p[j] -= lr * (g->m[j] / c1) / (sqrt(v / c2) + g->adam_eps);
        if (g->float_state) {
            g->m[j] = (float)g->m[j];
            g->v[j] = (float)g->v[j];
            g->p[j] = (float)g->p[j];
        }
    }
    return mmd_calib_geom_apply(g);
}

void mmd_calib_geom_get_adam(const mmd_calib_geom *g, int64_t *step, double m[NP], double v[NP])
{
    *step = g->step;
    memcpy(m, g->m, sizeof g->m);
    memcpy(v, g->v, sizeof g->v);
}

mmd_status mmd_calib_geom_set_adam(mmd_calib_geom *g, int64_t step, const double m[NP], const double v[NP])
{
    if (step < 0) return mmd_error(MMD_ERR_INVALID, "geometry calibration: Adam step %lld", (long long)step);
    for (int j = 0; j < NP; j++)
        if (!isfinite(m[j]) || !(v[j] >= 0) || !isfinite(v[j]))
            return mmd_error(MMD_ERR_INVALID, "geometry calibration: Adam moment %d is not valid", j);
    g->step = step;
    memcpy(g->m, m, sizeof g->m);
    memcpy(g->v, v, sizeof g->v);
    return MMD_OK;
}

void mmd_calib_geom_set_float_state(mmd_calib_geom *g, int on) { g->float_state = on != 0; }

uint32_t mmd_calib_geom_object(const mmd_calib_geom *g) { return g->obj; }
void mmd_calib_geom_centroid(const mmd_calib_geom *g, double c[3]) { memcpy(c, g->centroid, sizeof g->centroid); }

mmd_status mmd_calib_geom_debug_grad(mmd_calib_geom *g, const mmd_cfg_pose *pose, size_t pose_id, const float *dldc,
                                     double grad[NP])
{
    mmd_sim *s = g->s;
    size_t nr = s->params.n_rays, nv = nr * s->params.max_depth;
    for (int j = 0; j < NP; j++) grad[j] = 0;
    mmd_cal_vertex *rec = NULL;
    size_t n = 0;
    /* records, materials (theta) and the pose, as the engine sees them */
    mmd_status st = mmd_calib_debug_records(g->c, pose, pose_id, &rec, &n);
    if (st == MMD_OK && !g->d_rec)
        st = mmd_cl_buffer(s->cl, CL_MEM_READ_ONLY, nv * sizeof *rec, NULL, "path records", &g->d_rec);
    if (st == MMD_OK && !g->d_dldc)
        st = mmd_cl_buffer(s->cl, CL_MEM_READ_ONLY, nr * sizeof(float), NULL, "ray gradients", &g->d_dldc);
    if (st == MMD_OK)
        st = mmd_cl_check(
            clEnqueueWriteBuffer(s->cl->queue, g->d_rec, CL_TRUE, 0, nv * sizeof *rec, rec, 0, NULL, NULL),
            "upload records");
    if (st == MMD_OK)
        st = mmd_cl_check(clEnqueueWriteBuffer(s->cl->queue, g->d_dldc, CL_TRUE, 0, nr * sizeof(float), dldc, 0, NULL,
                                               NULL),
                          "upload ray gradients");
    free(rec);
    if (st == MMD_OK) st = launch_grad(g, g->d_rec, g->d_dldc, 0, grad);
    return st;
}
