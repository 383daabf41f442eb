/*
 * Host side of the coverage-map estimator (SPEC 4, cl/coverage.cl, docs/coverage.md):
 * grid set-up, batched launches, and the accumulation of the per-ray deposit slots in
 * ray order (double precision) so a seed gives the same map bit for bit.
 */
#include "mmd_coverage.h"
#include "mmd_par.h"
#include "mmd_trace.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define COV_NONE 0xffffffffu

mmd_status mmd_coverage_grid(const mmd_scene *sc, const mmd_cfg_coverage *c, mmd_coverage_map *g)
{
    memset(g, 0, sizeof *g);
    double ext[4];
    if (c->has_extent) {
        memcpy(ext, c->extent_m, sizeof ext);
    } else {
        ext[0] = sc->bbox_min[0], ext[1] = sc->bbox_max[0];
        ext[2] = sc->bbox_min[1], ext[3] = sc->bbox_max[1];
    }
    for (int k = 0; k < 4; k++)
        if (!isfinite(ext[k])) return mmd_error(MMD_ERR_INVALID, "coverage.extent_m: value %d is not finite", k);
    if (!(ext[1] > ext[0]) || !(ext[3] > ext[2]))
        return mmd_error(MMD_ERR_INVALID,
                         "coverage.extent_m: [%g, %g, %g, %g] is empty; expected [xmin, xmax, ymin, ymax] with "
                         "xmax > xmin and ymax > ymin%s",
                         ext[0], ext[1], ext[2], ext[3], c->has_extent ? "" : " (the scene footprint is flat)");
    if (!(c->cell_m > 0) || !isfinite(c->cell_m))
        return mmd_error(MMD_ERR_INVALID, "coverage.cell_m: %g, expected a positive length", c->cell_m);
    /* a hair of tolerance so that a 10.0 m extent in 0.1 m cells is 100 cells, not 101 */
    double fx = (ext[1] - ext[0]) / c->cell_m, fy = (ext[3] - ext[2]) / c->cell_m;
    double nx = ceil(fx - 1e-9), ny = ceil(fy - 1e-9);
    if (nx < 1) nx = 1;
    if (ny < 1) ny = 1;
    if (nx * ny > MMD_COVERAGE_MAX_CELLS)
        return mmd_error(MMD_ERR_INVALID,
                         "coverage: %.0f x %.0f cells (cell_m %g over %g x %g m) exceed the limit of %u cells; "
                         "use a larger coverage.cell_m or a smaller coverage.extent_m",
                         nx, ny, c->cell_m, ext[1] - ext[0], ext[3] - ext[2], MMD_COVERAGE_MAX_CELLS);
    g->nx = (int)nx;
    g->ny = (int)ny;
    g->x0 = ext[0];
    g->y0 = ext[2];
    g->cell_m = c->cell_m;
    g->x1 = g->x0 + g->nx * c->cell_m;
    g->y1 = g->y0 + g->ny * c->cell_m;
    g->z_m = c->z_m;
    return MMD_OK;
}

void mmd_coverage_map_free(mmd_coverage_map *m)
{
    free(m->gain);
    free(m->count);
    memset(m, 0, sizeof *m);
}

static mmd_status build_kernel(mmd_sim *s)
{
    if (s->k_cov) return MMD_OK;
    char opts[256];
    mmd_trace_cl_options(s->cl, opts, sizeof opts);
    /* two rays per work-item on CPU devices, as for the AoA kernel (s->rays_per_item) */
    snprintf(opts + strlen(opts), sizeof opts - strlen(opts), "-DMMD_SIM_FLAGS_CT=%uu -DMMD_COV_PER_ITEM=%d ",
             s->params.flags, s->rays_per_item);
    cl_program prog = NULL;
    mmd_status st = mmd_cl_program(s->cl, "coverage.cl", opts, &prog);
    if (st == MMD_OK) st = mmd_cl_kernel(s->cl, prog, "mmd_coverage_trace", &s->k_cov);
    return st;
}

static mmd_status ensure_slots(mmd_sim *s, size_t n_slots)
{
    if (s->d_cov_cell && s->cap_cov >= n_slots) return MMD_OK;
    if (s->d_cov_cell) clReleaseMemObject(s->d_cov_cell), s->d_cov_cell = NULL;
    if (s->d_cov_val) clReleaseMemObject(s->d_cov_val), s->d_cov_val = NULL;
    s->cap_cov = 0;
    mmd_status st = mmd_cl_buffer(s->cl, CL_MEM_WRITE_ONLY, n_slots * sizeof(cl_uint), NULL, "coverage deposits",
                                  &s->d_cov_cell);
    if (st == MMD_OK)
        st = mmd_cl_buffer(s->cl, CL_MEM_WRITE_ONLY, n_slots * sizeof(cl_float), NULL, "coverage deposits",
                           &s->d_cov_val);
    if (st == MMD_OK) s->cap_cov = n_slots;
    return st;
}

/* Rays [r0, r1) of the c->rays of the sampling sequence, deposited into a fresh map. */
static mmd_status coverage_range(mmd_sim *s, const mmd_cfg_coverage *c, size_t r0, size_t r1, mmd_coverage_map *out,
                                 void (*progress)(size_t, size_t, void *), void *user)
{
    memset(out, 0, sizeof *out);
    if (c->rays < 1) return mmd_error(MMD_ERR_INVALID, "coverage.rays: %d, expected at least 1", c->rays);
    mmd_coverage_map m;
    mmd_status st = mmd_coverage_grid(s->scene, c, &m);
    if (st != MMD_OK) return st;
    if (!isfinite(c->z_m)) return mmd_error(MMD_ERR_INVALID, "coverage.z_m: not finite");
    size_t n_cells = (size_t)m.nx * m.ny;
    m.gain = mmd_calloc(n_cells, sizeof *m.gain, "coverage map");
    m.count = mmd_calloc(n_cells, sizeof *m.count, "coverage map");
    if (!m.gain || !m.count) {
        mmd_coverage_map_free(&m);
        return MMD_ERR_NOMEM;
    }
    st = build_kernel(s);
    uint32_t slots = s->params.max_depth + 1;
    size_t total = (size_t)c->rays;
    /* batches of <= 1M rays: 8 bytes per slot keeps a batch's deposits at <= 32 MB */
    size_t batch = total < ((size_t)1 << 20) ? total : ((size_t)1 << 20);
    /* fewer rays per launch when the device budget is tight (mmd_cl_buffer), so a large map
     * runs in more launches instead of failing; deposits are summed ray by ray in global
     * order, so the map does not depend on the batch size */
    size_t fit = (size_t)((mmd_cl_mem_available(s->cl) + (cl_ulong)s->cap_cov * 8u) / ((cl_ulong)slots * 8u));
    if (batch > fit) batch = fit > 256 ? fit / 64 * 64 : 256; /* below 256 rays: refused with the numbers */
    if (st == MMD_OK) st = ensure_slots(s, batch * slots);
    cl_uint *cell = mmd_malloc(batch * slots, sizeof *cell, "coverage deposits");
    float *val = mmd_malloc(batch * slots, sizeof *val, "coverage deposits");
    if (st == MMD_OK && (!cell || !val)) st = MMD_ERR_NOMEM;
    float zf = (float)c->z_m, x0f = (float)m.x0, y0f = (float)m.y0, cf = (float)m.cell_m;
    cl_int nx = m.nx, ny = m.ny;
    cl_uint ntot = (cl_uint)total;
    for (size_t first = r0; st == MMD_OK && first < r1; first += batch) {
        size_t n = r1 - first < batch ? r1 - first : batch;
        cl_uint f32 = (cl_uint)first, n32 = (cl_uint)n;
        cl_kernel k = s->k_cov;
        cl_int err = clSetKernelArg(k, 0, sizeof(cl_mem), &s->d_nodes);
        err |= clSetKernelArg(k, 1, sizeof(cl_mem), &s->d_tris);
        err |= clSetKernelArg(k, 2, sizeof(cl_mem), &s->d_prims);
        err |= clSetKernelArg(k, 3, sizeof(cl_mem), &s->d_mats);
        err |= clSetKernelArg(k, 4, sizeof(cl_mem), &s->d_coef);
        err |= clSetKernelArg(k, 5, sizeof(cl_mem), &s->d_params);
        err |= clSetKernelArg(k, 6, sizeof(cl_uint), &f32);
        err |= clSetKernelArg(k, 7, sizeof(cl_uint), &n32);
        err |= clSetKernelArg(k, 8, sizeof(cl_uint), &ntot);
        err |= clSetKernelArg(k, 9, sizeof(float), &zf);
        err |= clSetKernelArg(k, 10, sizeof(float), &x0f);
        err |= clSetKernelArg(k, 11, sizeof(float), &y0f);
        err |= clSetKernelArg(k, 12, sizeof(float), &cf);
        err |= clSetKernelArg(k, 13, sizeof(cl_int), &nx);
        err |= clSetKernelArg(k, 14, sizeof(cl_int), &ny);
        err |= clSetKernelArg(k, 15, sizeof(cl_mem), &s->d_cov_cell);
        err |= clSetKernelArg(k, 16, sizeof(cl_mem), &s->d_cov_val);
        st = mmd_cl_check(err, "set mmd_coverage_trace arguments");
        size_t items = (n + (size_t)s->rays_per_item - 1) / (size_t)s->rays_per_item;
        size_t local = 64, global = (items + local - 1) / local * local;
        double t0 = mmd_now();
        if (st == MMD_OK)
            st = mmd_cl_check(clEnqueueNDRangeKernel(s->cl->queue, k, 1, NULL, &global, &local, 0, NULL, NULL),
                              "launch mmd_coverage_trace");
        if (st == MMD_OK)
            st = mmd_cl_check(clEnqueueReadBuffer(s->cl->queue, s->d_cov_cell, CL_TRUE, 0,
                                                  n * slots * sizeof *cell, cell, 0, NULL, NULL),
                              "read coverage deposits");
        if (st == MMD_OK)
            st = mmd_cl_check(clEnqueueReadBuffer(s->cl->queue, s->d_cov_val, CL_TRUE, 0, n * slots * sizeof *val,
                                                  val, 0, NULL, NULL),
                              "read coverage deposits");
        double t1 = mmd_now();
        m.t_trace += t1 - t0;
        if (st != MMD_OK) break;
        /* fixed order: ray by ray, segment by segment */
        for (size_t q = 0; q < n * slots; q++) {
            uint32_t ci = cell[q];
            if (ci == COV_NONE) continue;
            if (ci >= n_cells) {
                st = mmd_error(MMD_ERR_INTERNAL, "coverage kernel wrote cell %u of %zu", ci, n_cells);
                break;
            }
            m.gain[ci] += val[q];
            m.count[ci]++;
        }
        m.t_accumulate += mmd_now() - t1;
        if (progress) progress(first + n - r0, r1 - r0, user);
    }
    free(cell);
    free(val);
    if (st != MMD_OK) {
        mmd_coverage_map_free(&m);
        return st;
    }
    m.n_rays = total;
    *out = m;
    return MMD_OK;
}

mmd_status mmd_sim_coverage(mmd_sim *s, const mmd_cfg_coverage *c, mmd_coverage_map *out,
                            void (*progress)(size_t, size_t, void *), void *user)
{
    memset(out, 0, sizeof *out);
    if (c->rays < 1) return mmd_error(MMD_ERR_INVALID, "coverage.rays: %d, expected at least 1", c->rays);
    return coverage_range(s, c, 0, (size_t)c->rays, out, progress, user);
}

mmd_status mmd_sim_coverage_par(mmd_sim *s, const mmd_cfg_coverage *c, mmd_coverage_map *out,
                                void (*progress)(size_t, size_t, void *), void *user)
{
    if (mmd_par_size() == 1) return mmd_sim_coverage(s, c, out, progress, user);
    memset(out, 0, sizeof *out);
    if (c->rays < 1) return mmd_error(MMD_ERR_INVALID, "coverage.rays: %d, expected at least 1", c->rays);
    size_t lo, hi;
    mmd_par_share((size_t)c->rays, &lo, &hi);
    mmd_coverage_map m;
    mmd_status st = mmd_par_agree(coverage_range(s, c, lo, hi, &m, progress, user));
    if (st != MMD_OK) return st;
    /* each rank summed its rays in order; the ranks' maps add in rank order */
    size_t n_cells = (size_t)m.nx * m.ny;
    double *cnt = mmd_malloc(n_cells ? n_cells : 1, sizeof *cnt, "coverage counts");
    st = mmd_par_agree(cnt ? MMD_OK : MMD_ERR_NOMEM);
    for (size_t i = 0; st == MMD_OK && i < n_cells; i++) cnt[i] = m.count[i];
    if (st == MMD_OK) st = mmd_par_sum(m.gain, n_cells);
    if (st == MMD_OK) st = mmd_par_sum(cnt, n_cells);
    for (size_t i = 0; st == MMD_OK && i < n_cells; i++) m.count[i] = (uint32_t)cnt[i];
    free(cnt);
    if (st != MMD_OK) {
        mmd_coverage_map_free(&m);
        return st;
    }
    m.n_rays = (size_t)c->rays;
    *out = m;
    return MMD_OK;
}

/* Liang-Barsky clip of segment a-b to the rectangle; 0 when nothing is left. */
static int clip_segment(double a[2], double b[2], const double ext[4])
{
    double t0 = 0, t1 = 1, dx = b[0] - a[0], dy = b[1] - a[1];
    double p[4] = {-dx, dx, -dy, dy}, q[4] = {a[0] - ext[0], ext[1] - a[0], a[1] - ext[2], ext[3] - a[1]};
    for (int k = 0; k < 4; k++) {
        if (p[k] == 0) {
            if (q[k] < 0) return 0;
            continue;
        }
        double r = q[k] / p[k];
        if (p[k] < 0) {
            if (r > t1) return 0;
            if (r > t0) t0 = r;
        } else {
            if (r < t0) return 0;
            if (r < t1) t1 = r;
        }
    }
    double na[2] = {a[0] + t0 * dx, a[1] + t0 * dy}, nb[2] = {a[0] + t1 * dx, a[1] + t1 * dy};
    memcpy(a, na, sizeof na);
    memcpy(b, nb, sizeof nb);
    return 1;
}

mmd_status mmd_scene_slice_z(const mmd_scene *sc, double z, const double ext[4], double **xy, size_t *n_points)
{
    *xy = NULL;
    *n_points = 0;
    size_t cap = 0, n = 0;
    double *buf = NULL;
    for (uint32_t t = 0; t < sc->n_triangles; t++) {
        const float *v[3];
        double h[3];
        int pos = 0;
        for (int k = 0; k < 3; k++) {
            v[k] = sc->vertices + 3 * (size_t)sc->indices[3 * (size_t)t + k];
            h[k] = v[k][2] - z;
            pos += h[k] >= 0;
        }
        if (pos == 0 || pos == 3) continue; /* no crossing (coplanar faces count as above) */
        double pts[2][2];
        int np = 0;
        for (int k = 0; k < 3 && np < 2; k++) {
            int j = (k + 1) % 3;
            if ((h[k] >= 0) == (h[j] >= 0)) continue;
            double s = h[k] / (h[k] - h[j]);
            pts[np][0] = v[k][0] + s * (v[j][0] - v[k][0]);
            pts[np][1] = v[k][1] + s * (v[j][1] - v[k][1]);
            np++;
        }
        if (np < 2 || !clip_segment(pts[0], pts[1], ext)) continue;
        if (n + 3 > cap) {
            size_t nc = cap ? 2 * cap : 1024;
            double *nb = mmd_realloc(buf, nc, 2 * sizeof *nb, "floor-plan outline");
            if (!nb) {
                free(buf);
                return MMD_ERR_NOMEM;
            }
            buf = nb;
            cap = nc;
        }
        buf[2 * n] = pts[0][0], buf[2 * n + 1] = pts[0][1];
        buf[2 * n + 2] = pts[1][0], buf[2 * n + 3] = pts[1][1];
        buf[2 * n + 4] = NAN, buf[2 * n + 5] = NAN;
        n += 3;
    }
    *xy = buf;
    *n_points = n;
    return MMD_OK;
}
