/*
 * Surface normals at the scale of the wave (docs/physics.md, "Normals of scanned
 * meshes"). A LiDAR or photogrammetry mesh of a flat wall, tessellated at 5 cm with 1 cm
 * vertex noise, has face normals tilted by ~15 degrees at random: the reconstruction
 * error, not a property of the wall. The reflection off a wall is formed over its first
 * Fresnel zone (radius sqrt(lambda d1 d2 / (d1 + d2)): 6 cm at 60 GHz over 1.5 + 1.5 m),
 * so the normal the directional lobe should be centred on is the wall's normal averaged
 * over that scale.
 *
 * For each triangle t: n_s(t) = normalise( sum over triangles u of the same object whose
 * centroid lies within `radius` of t's centroid, of area(u) n(u) ). The area-weighted sum
 * of face normals over a patch is the patch's vector area, which depends only on its
 * boundary: interior noise cancels. Only faces within 60 degrees of a reference count, so
 * creases (wall corners, table edges) stay sharp: t's own face in a first pass, then the
 * previous estimate in two more passes, because scanned facets are tilted by ~30 degrees
 * rms and a test against t's own facet alone biases the average toward its tilt. A
 * triangle whose neighbourhood holds only itself (large CAD faces) keeps its exact normal.
 *
 * Deterministic: neighbours are visited in a fixed order (grid cells in index order,
 * triangles within a cell in id order) and summed in double precision.
 */
#include "mmd_sim.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct tri_geo {
    double c[3], n[3], area; /* centroid, unit normal, area */
} tri_geo;

/* A uniform grid over the centroids: bucket b holds list[start[b] .. start[b+1]) in
 * ascending triangle order; cells are found through a dense table (rooms) or by binary
 * search in the sorted cell keys (city-scale scenes with a small radius). */
typedef struct grid {
    double lo[3], h;
    int64_t dim[3];
    size_t n_cells;
    uint64_t *keys;    /* sorted unique cell keys, one per bucket */
    uint32_t *start;   /* n_cells + 1 */
    uint32_t *list;
    uint32_t *dense;   /* cell -> bucket or UINT32_MAX; NULL = binary search */
    /* the triangles' data in bucket order, so the neighbour loop streams through memory */
    double *cx, *cy, *cz, *ax, *ay, *az; /* centroid, area-weighted normal */
    double *nx, *ny, *nz;                /* unit normal */
    uint32_t *obj;
} grid;

typedef struct smooth_job {
    const mmd_scene *sc;
    const tri_geo *g;
    const grid *gr;
    const double *ref; /* 3 per triangle */
    float *out;
    double r2, cos_max;
    uint32_t t0, t1;
    int pass;
    /* pass 0 records each triangle's neighbours (bucket positions) for the later passes:
     * nb[off[t - t0] .. off[t - t0 + 1]); nb == NULL after running out of budget = scan */
    uint32_t *nb, *off;
    size_t n_nb, cap_nb;
    uint32_t *tmp; /* one triangle's neighbours */
    size_t cap_tmp;
    float *lift;   /* pass 3 output, NULL = not wanted */
    int nomem;
} smooth_job;

/* Neighbour lists beyond this many entries per job are not kept (each later pass then
 * searches the grid again). */
#define MMD_NORMALS_NB_MAX ((size_t)64 << 20)

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t cell_key(int64_t ix, int64_t iy, int64_t iz)
{
    return ((uint64_t)ix << 42) | ((uint64_t)iy << 21) | (uint64_t)iz;
}

static void cell_of_point(const grid *gr, const double p[3], int64_t ci[3])
{
    for (int k = 0; k < 3; k++) {
        ci[k] = (int64_t)floor((p[k] - gr->lo[k]) / gr->h);
        ci[k] = ci[k] < 0 ? 0 : ci[k] >= gr->dim[k] ? gr->dim[k] - 1 : ci[k];
    }
}

/* Bucket of cell (x, y, z), or -1 when it holds no triangle. */
static int64_t find_bucket(const grid *gr, int64_t x, int64_t y, int64_t z)
{
    if (gr->dense) {
        uint32_t c = gr->dense[(x * gr->dim[1] + y) * gr->dim[2] + z];
        return c == UINT32_MAX ? -1 : (int64_t)c;
    }
    uint64_t key = cell_key(x, y, z);
    size_t a = 0, b = gr->n_cells;
    while (b - a > 1) {
        size_t m = (a + b) / 2;
        if (gr->keys[m] <= key) a = m;
        else b = m;
    }
    return gr->n_cells && gr->keys[a] == key ? (int64_t)a : -1;
}

static void grid_free(grid *gr)
{
    double *d[] = {gr->cx, gr->cy, gr->cz, gr->ax, gr->ay, gr->az, gr->nx, gr->ny, gr->nz};
    for (int k = 0; k < 9; k++) free(d[k]);
    free(gr->obj);
    free(gr->keys);
    free(gr->start);
    free(gr->list);
    free(gr->dense);
}

static mmd_status grid_build(const mmd_scene *sc, const tri_geo *g, double radius, grid *gr)
{
    memset(gr, 0, sizeof *gr);
    uint32_t n = sc->n_triangles;
    gr->h = 0.5 * radius; /* cells of r/2, searched +-2 around t: ~4x fewer candidates than r */
    for (;;) {
        int ok = 1;
        for (int k = 0; k < 3; k++) {
            gr->lo[k] = sc->bbox_min[k];
            gr->dim[k] = (int64_t)floor(((double)sc->bbox_max[k] - gr->lo[k]) / gr->h) + 1;
            ok &= gr->dim[k] < (1 << 21);
        }
        if (ok) break;
        gr->h *= 2; /* a huge scene with a tiny radius: coarser cells, same result */
    }
    uint64_t *ent = mmd_malloc(n ? n : 1, sizeof *ent, "normal smoothing");
    gr->keys = mmd_malloc(n ? n : 1, sizeof *gr->keys, "normal smoothing");
    uint32_t *bucket = mmd_malloc(n ? n : 1, sizeof *bucket, "normal smoothing");
    gr->list = mmd_malloc(n ? n : 1, sizeof *gr->list, "normal smoothing");
    if (!ent || !gr->keys || !bucket || !gr->list) {
        free(ent), free(bucket), grid_free(gr);
        return MMD_ERR_NOMEM;
    }
    for (uint32_t t = 0; t < n; t++) {
        int64_t ci[3];
        cell_of_point(gr, g[t].c, ci);
        ent[t] = cell_key(ci[0], ci[1], ci[2]);
        gr->keys[t] = ent[t];
    }
    qsort(gr->keys, n, sizeof *gr->keys, cmp_u64);
    for (uint32_t i = 0; i < n; i++)
        if (i == 0 || gr->keys[i] != gr->keys[i - 1]) gr->keys[gr->n_cells++] = gr->keys[i];
    gr->start = mmd_calloc(gr->n_cells + 1, sizeof *gr->start, "normal smoothing");
    if (!gr->start) {
        free(ent), free(bucket), grid_free(gr);
        return MMD_ERR_NOMEM;
    }
    double cells = (double)gr->dim[0] * (double)gr->dim[1] * (double)gr->dim[2];
    if (cells <= 32e6) {
        size_t nc = (size_t)cells;
        gr->dense = mmd_malloc(nc, sizeof *gr->dense, "normal smoothing");
        if (gr->dense) {
            for (size_t i = 0; i < nc; i++) gr->dense[i] = UINT32_MAX;
            for (size_t c = 0; c < gr->n_cells; c++) {
                uint64_t k = gr->keys[c];
                int64_t x = (int64_t)(k >> 42), y = (int64_t)((k >> 21) & 0x1fffff), z = (int64_t)(k & 0x1fffff);
                gr->dense[(x * gr->dim[1] + y) * gr->dim[2] + z] = (uint32_t)c;
            }
        }
    }
    for (uint32_t t = 0; t < n; t++) {
        int64_t ci[3];
        cell_of_point(gr, g[t].c, ci);
        bucket[t] = (uint32_t)find_bucket(gr, ci[0], ci[1], ci[2]);
        gr->start[bucket[t] + 1]++;
    }
    for (size_t c = 0; c < gr->n_cells; c++) gr->start[c + 1] += gr->start[c];
    uint32_t *fill = mmd_malloc(gr->n_cells ? gr->n_cells : 1, sizeof *fill, "normal smoothing");
    if (!fill) {
        free(ent), free(bucket), grid_free(gr);
        return MMD_ERR_NOMEM;
    }
    memcpy(fill, gr->start, gr->n_cells * sizeof *fill);
    for (uint32_t t = 0; t < n; t++) gr->list[fill[bucket[t]]++] = t;
    free(fill);
    free(ent);
    free(bucket);
    double **d[] = {&gr->cx, &gr->cy, &gr->cz, &gr->ax, &gr->ay, &gr->az, &gr->nx, &gr->ny, &gr->nz};
    for (int k = 0; k < 9; k++) *d[k] = mmd_malloc(n ? n : 1, sizeof(double), "normal smoothing");
    gr->obj = mmd_malloc(n ? n : 1, sizeof *gr->obj, "normal smoothing");
    for (int k = 0; k < 9; k++)
        if (!*d[k]) gr->obj = (free(gr->obj), NULL);
    if (!gr->obj) {
        grid_free(gr);
        return MMD_ERR_NOMEM;
    }
    for (uint32_t q = 0; q < n; q++) {
        const tri_geo *u = &g[gr->list[q]];
        gr->cx[q] = u->c[0], gr->cy[q] = u->c[1], gr->cz[q] = u->c[2];
        gr->nx[q] = u->n[0], gr->ny[q] = u->n[1], gr->nz[q] = u->n[2];
        gr->ax[q] = u->area * u->n[0], gr->ay[q] = u->area * u->n[1], gr->az[q] = u->area * u->n[2];
        gr->obj[q] = sc->tri_object[gr->list[q]];
    }
    return MMD_OK;
}

/* The neighbours of t (bucket positions: same object, centroid within the radius) into
 * j->tmp; from the pass-0 cache when there is one. */
static int gather(smooth_job *j, uint32_t t, const uint32_t **list, size_t *n_list)
{
    const grid *gr = j->gr;
    const tri_geo *g = j->g;
    if (j->pass > 0 && j->nb) {
        *list = j->nb + j->off[t - j->t0];
        *n_list = j->off[t - j->t0 + 1] - j->off[t - j->t0];
        return 1;
    }
    size_t n = 0;
    int64_t ci[3];
    cell_of_point(gr, g[t].c, ci);
    uint32_t obj = j->sc->tri_object[t];
    const double px = g[t].c[0], py = g[t].c[1], pz = g[t].c[2];
    /* reach: cells of gr->h (possibly coarsened for huge scenes) covering the radius */
    int64_t reach = (int64_t)ceil(sqrt(j->r2) / gr->h);
    for (int64_t dx = -reach; dx <= reach; dx++)
        for (int64_t dy = -reach; dy <= reach; dy++)
            for (int64_t dz = -reach; dz <= reach; dz++) {
                int64_t x = ci[0] + dx, y = ci[1] + dy, z = ci[2] + dz;
                if (x < 0 || y < 0 || z < 0 || x >= gr->dim[0] || y >= gr->dim[1] || z >= gr->dim[2]) continue;
                /* skip cells whose box lies entirely outside the sphere */
                double gap2 = 0;
                const int64_t cc[3] = {x, y, z};
                for (int k = 0; k < 3; k++) {
                    double b0 = gr->lo[k] + cc[k] * gr->h, b1 = b0 + gr->h, p = g[t].c[k];
                    double dd = p < b0 ? b0 - p : p > b1 ? p - b1 : 0;
                    gap2 += dd * dd;
                }
                if (gap2 > j->r2) continue;
                int64_t b = find_bucket(gr, x, y, z);
                if (b < 0) continue;
                for (uint32_t q = gr->start[b]; q < gr->start[b + 1]; q++) {
                    double ex = gr->cx[q] - px, ey = gr->cy[q] - py, ez = gr->cz[q] - pz;
                    if (ex * ex + ey * ey + ez * ez > j->r2 || gr->obj[q] != obj) continue;
                    if (n == j->cap_tmp) {
                        size_t nc = j->cap_tmp ? 2 * j->cap_tmp : 256;
                        uint32_t *nt = realloc(j->tmp, nc * sizeof *nt);
                        if (!nt) return 0;
                        j->tmp = nt;
                        j->cap_tmp = nc;
                    }
                    j->tmp[n++] = q;
                }
            }
    if (j->pass == 0 && j->nb) {
        /* keep the list for passes 1-3, within a memory budget */
        if (j->n_nb + n > j->cap_nb) {
            size_t nc = j->cap_nb;
            while (nc < j->n_nb + n) nc *= 2;
            uint32_t *nn = nc <= MMD_NORMALS_NB_MAX ? realloc(j->nb, nc * sizeof *nn) : NULL;
            if (!nn) { /* over budget: later passes search the grid again */
                free(j->nb);
                j->nb = NULL;
            } else {
                j->nb = nn;
                j->cap_nb = nc;
            }
        }
        if (j->nb) {
            if (n) memcpy(j->nb + j->n_nb, j->tmp, n * sizeof *j->tmp); /* tmp may be NULL when empty (UBSan) */
            j->n_nb += n;
            j->off[t - j->t0 + 1] = (uint32_t)j->n_nb;
        }
    }
    *list = j->tmp;
    *n_list = n;
    return 1;
}

static void *smooth_worker(void *arg)
{
    smooth_job *j = arg;
    const tri_geo *g = j->g;
    const grid *gr = j->gr;
    for (uint32_t t = j->t0; t < j->t1; t++) {
        const uint32_t *list;
        size_t n_list;
        if (!gather(j, t, &list, &n_list)) {
            j->nomem = 1;
            return NULL;
        }
        const double *rt = j->ref + 3 * (size_t)t;
        if (j->pass == 3) {
            /* roughness: rms distance of the counted neighbours' centroids from t's plane */
            double s2 = 0, sa = 0;
            for (size_t i = 0; i < n_list; i++) {
                uint32_t q = list[i];
                double cs = gr->nx[q] * rt[0] + gr->ny[q] * rt[1] + gr->nz[q] * rt[2];
                if (fabs(cs) < j->cos_max) continue;
                double h = (gr->cx[q] - g[t].c[0]) * rt[0] + (gr->cy[q] - g[t].c[1]) * rt[1] +
                           (gr->cz[q] - g[t].c[2]) * rt[2];
                double a = sqrt(gr->ax[q] * gr->ax[q] + gr->ay[q] * gr->ay[q] + gr->az[q] * gr->az[q]);
                s2 += a * h * h;
                sa += a;
            }
            /* a centroid averages three vertices: vertex noise is sqrt(3) x larger; 3 sigma */
            double lift = sa > 0 ? 3.0 * sqrt(3.0) * sqrt(s2 / sa) : 0;
            double cap = 0.5 * sqrt(j->r2);
            j->lift[t] = (float)(lift < cap ? lift : cap);
            continue;
        }
        double acc[3] = {0, 0, 0};
        for (size_t i = 0; i < n_list; i++) {
            uint32_t q = list[i];
            double cs = gr->nx[q] * rt[0] + gr->ny[q] * rt[1] + gr->nz[q] * rt[2];
            if (fabs(cs) < j->cos_max) continue;
            /* faces wound the other way (two-sided meshes) count flipped */
            double sgn = cs < 0 ? -1.0 : 1.0;
            acc[0] += sgn * gr->ax[q], acc[1] += sgn * gr->ay[q], acc[2] += sgn * gr->az[q];
        }
        double l = sqrt(acc[0] * acc[0] + acc[1] * acc[1] + acc[2] * acc[2]);
        /* keep t's own orientation (the kernels flip the normal to face the ray anyway) */
        double o = acc[0] * g[t].n[0] + acc[1] * g[t].n[1] + acc[2] * g[t].n[2];
        double f = l > 0 ? (o < 0 ? -1.0 : 1.0) / l : 0;
        for (int k = 0; k < 3; k++) j->out[3 * (size_t)t + k] = (float)(l > 0 ? acc[k] * f : g[t].n[k]);
    }
    return NULL;
}

mmd_status mmd_smooth_normals(const mmd_scene *sc, double radius, float *out, float *lift)
{
    if (!(radius > 0) || !isfinite(radius))
        return mmd_error(MMD_ERR_INVALID, "normal smoothing radius %g, expected > 0", radius);
    uint32_t n = sc->n_triangles;
    tri_geo *g = mmd_malloc(n ? n : 1, sizeof *g, "normal smoothing");
    double *ref = mmd_malloc(n ? n : 1, 3 * sizeof *ref, "normal smoothing");
    if (!g || !ref) {
        free(g), free(ref);
        return MMD_ERR_NOMEM;
    }
    for (uint32_t t = 0; t < n; t++) {
        const float *v[3];
        for (int k = 0; k < 3; k++) v[k] = sc->vertices + 3 * (size_t)sc->indices[3 * (size_t)t + k];
        double e1[3], e2[3];
        for (int k = 0; k < 3; k++) {
            e1[k] = (double)v[1][k] - v[0][k];
            e2[k] = (double)v[2][k] - v[0][k];
            g[t].c[k] = ((double)v[0][k] + v[1][k] + v[2][k]) / 3.0;
        }
        double cr[3] = {e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]};
        double l = sqrt(cr[0] * cr[0] + cr[1] * cr[1] + cr[2] * cr[2]);
        g[t].area = 0.5 * l;
        for (int k = 0; k < 3; k++) g[t].n[k] = l > 0 ? cr[k] / l : (k == 2);
        for (int k = 0; k < 3; k++) ref[3 * (size_t)t + k] = g[t].n[k];
    }
    grid gr;
    mmd_status st = grid_build(sc, g, radius, &gr);
    int nt = mmd_num_threads();
    if (nt > 64) nt = 64;
    if ((uint32_t)nt > n / 4096 + 1) nt = (int)(n / 4096 + 1);
    /* every pass keeps the faces within 60 degrees of the reference, which drops the other
     * side of a crease: t's own face in pass 0, the previous estimate in passes 1-2 */
    smooth_job jobs[64];
    for (int k = 0; k < nt; k++) {
        uint32_t t0 = (uint32_t)((uint64_t)n * k / nt), t1 = (uint32_t)((uint64_t)n * (k + 1) / nt);
        memset(&jobs[k], 0, sizeof jobs[k]);
        jobs[k] = (smooth_job){.sc = sc, .g = g, .gr = &gr, .ref = ref, .out = out, .r2 = radius * radius,
                               .cos_max = cos(60.0 * M_PI / 180.0), .t0 = t0, .t1 = t1, .lift = lift};
        jobs[k].off = calloc((size_t)(t1 - t0) + 1, sizeof *jobs[k].off);
        jobs[k].cap_nb = 1024;
        jobs[k].nb = jobs[k].off ? malloc(jobs[k].cap_nb * sizeof *jobs[k].nb) : NULL;
    }
    /* passes 0-2 average the normals; pass 3 measures the roughness for the lift */
    int n_pass = lift ? 4 : 3;
    for (int pass = 0; st == MMD_OK && pass < n_pass; pass++) {
        pthread_t th[64];
        int started = 0;
        for (int k = 0; k < nt; k++) jobs[k].pass = pass;
        for (; started < nt; started++)
            if (pthread_create(&th[started], NULL, smooth_worker, &jobs[started]) != 0) break;
        for (int k = started; k < nt; k++) smooth_worker(&jobs[k]);
        for (int k = 0; k < started; k++) pthread_join(th[k], NULL);
        for (int k = 0; k < nt; k++)
            if (jobs[k].nomem) st = mmd_error(MMD_ERR_NOMEM, "out of memory smoothing normals");
        for (size_t i = 0; i < 3 * (size_t)n; i++) ref[i] = out[i];
    }
    for (int k = 0; k < nt; k++) free(jobs[k].nb), free(jobs[k].off), free(jobs[k].tmp);
    if (st == MMD_OK) grid_free(&gr);
    free(g);
    free(ref);
    return st;
}
