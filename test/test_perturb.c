/* Reconstructed-scan simulation (mmd_scene_perturb) and the scene writers: subdivision is
 * watertight, area- and bbox-preserving and meets the edge target; noise has the asked
 * std-dev; holes remove the asked area; results are deterministic per seed; scenes
 * round-trip through mmd_scene_write + mmd_scene_load; bad params and bad command lines
 * fail cleanly without leaving output behind. */
#include "mmd_config.h"
#include "mmd_scene.h"
#include "mmd_test.h"

#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[] = "/tmp/perturb_test_XXXXXX";

/* ---------------------------------------------------------------------------------- */
/* Helpers                                                                             */

static const char *tmp_path(const char *name)
{
    static char buf[8][1024];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, 1024, "%s/%s", g_dir, name);
    return b;
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static mmd_scene_material itu_material(const char *name)
{
    mmd_scene_material m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "%s", name);
    snprintf(m.itu_name, sizeof m.itu_name, "%s", name);
    m.kind = MMD_MAT_ITU;
    m.thickness_m = 0.1;
    m.eps_r = 1.0;
    return m;
}

/* A welded planar grid of nx x ny squares of side `cell` at height z, two triangles per
 * square, as one object. */
static mmd_scene *grid_scene(int nx, int ny, double cell)
{
    mmd_scene_builder b;
    if (mmd_scene_builder_init(&b, "grid")) return NULL;
    mmd_scene_material m = itu_material("concrete");
    uint32_t mi, base;
    float *v = malloc(sizeof(float) * 3 * (size_t)(nx + 1) * (ny + 1));
    uint32_t *t = malloc(sizeof(uint32_t) * 6 * (size_t)nx * ny);
    for (int j = 0; j <= ny; j++)
        for (int i = 0; i <= nx; i++) {
            float *p = v + 3 * ((size_t)j * (nx + 1) + i);
            p[0] = (float)(i * cell);
            p[1] = (float)(j * cell);
            p[2] = 0.0f;
        }
    size_t n = 0;
    for (int j = 0; j < ny; j++)
        for (int i = 0; i < nx; i++) {
            uint32_t a = (uint32_t)(j * (nx + 1) + i), c = a + 1, d = a + (uint32_t)(nx + 1), e = d + 1;
            uint32_t tri[6] = {a, c, e, a, e, d};
            memcpy(t + n, tri, sizeof tri);
            n += 6;
        }
    mmd_scene *s = NULL;
    if (mmd_scene_builder_material(&b, &m, &mi) || mmd_scene_builder_vertices(&b, v, (uint32_t)((nx + 1) * (ny + 1)), NULL, &base) ||
        mmd_scene_builder_object(&b, "floor", mi, t, (uint32_t)(2 * nx * ny), base, NULL))
        mmd_scene_builder_abort(&b);
    else
        mmd_scene_builder_finish(&b, &s);
    free(v);
    free(t);
    return s;
}

static double tri_area(const mmd_scene *s, uint32_t t)
{
    const uint32_t *i = s->indices + 3 * (size_t)t;
    const float *a = s->vertices + 3 * (size_t)i[0], *b = s->vertices + 3 * (size_t)i[1], *c = s->vertices + 3 * (size_t)i[2];
    double u[3], w[3];
    for (int k = 0; k < 3; k++) {
        u[k] = (double)b[k] - a[k];
        w[k] = (double)c[k] - a[k];
    }
    double x = u[1] * w[2] - u[2] * w[1], y = u[2] * w[0] - u[0] * w[2], z = u[0] * w[1] - u[1] * w[0];
    return 0.5 * sqrt(x * x + y * y + z * z);
}

static double area(const mmd_scene *s)
{
    double a = 0;
    for (uint32_t t = 0; t < s->n_triangles; t++) a += tri_area(s, t);
    return a;
}

static double edge(const mmd_scene *s, uint32_t a, uint32_t b)
{
    const float *p = s->vertices + 3 * (size_t)a, *q = s->vertices + 3 * (size_t)b;
    double dx = (double)p[0] - q[0], dy = (double)p[1] - q[1], dz = (double)p[2] - q[2];
    return sqrt(dx * dx + dy * dy + dz * dz);
}

/* What "no edge longer than the target" can mean with float vertices: the target plus a
 * few ulps of the largest coordinate. */
static double edge_limit(const mmd_scene *s, double target)
{
    float m = 0;
    for (int k = 0; k < 3; k++) m = fmaxf(m, fmaxf(fabsf(s->bbox_min[k]), fabsf(s->bbox_max[k])));
    return target * (1 + 1e-6) + 8.0 * 1.1920929e-07 * m;
}

static double max_edge(const mmd_scene *s)
{
    double m = 0;
    for (uint32_t t = 0; t < s->n_triangles; t++)
        for (int k = 0; k < 3; k++) {
            double l = edge(s, s->indices[3 * (size_t)t + k], s->indices[3 * (size_t)t + (k + 1) % 3]);
            if (l > m) m = l;
        }
    return m;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Edges by vertex index: how many are used by exactly one triangle (boundary), their
 * total length, and how many are used by more than two (non-manifold). */
typedef struct edge_stats {
    size_t boundary, nonmanifold;
    double boundary_len;
} edge_stats;

static edge_stats edges(const mmd_scene *s)
{
    edge_stats r = {0, 0, 0};
    size_t n = 3 * (size_t)s->n_triangles;
    uint64_t *k = malloc(n * sizeof *k);
    for (uint32_t t = 0; t < s->n_triangles; t++)
        for (int c = 0; c < 3; c++) {
            uint32_t a = s->indices[3 * (size_t)t + c], b = s->indices[3 * (size_t)t + (c + 1) % 3];
            k[3 * (size_t)t + c] = a < b ? (uint64_t)a << 32 | b : (uint64_t)b << 32 | a;
        }
    qsort(k, n, sizeof *k, cmp_u64);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && k[j] == k[i]) j++;
        if (j - i == 1) {
            r.boundary++;
            r.boundary_len += edge(s, (uint32_t)(k[i] >> 32), (uint32_t)(k[i] & 0xffffffffu));
        }
        if (j - i > 2) r.nonmanifold++;
        i = j;
    }
    free(k);
    return r;
}

static int same_arrays(const mmd_scene *a, const mmd_scene *b)
{
    return a->n_vertices == b->n_vertices && a->n_triangles == b->n_triangles &&
           !memcmp(a->vertices, b->vertices, 3 * (size_t)a->n_vertices * sizeof(float)) &&
           !memcmp(a->indices, b->indices, 3 * (size_t)a->n_triangles * sizeof(uint32_t)) &&
           !memcmp(a->tri_material, b->tri_material, (size_t)a->n_triangles * sizeof(uint32_t)) &&
           !memcmp(a->tri_object, b->tri_object, (size_t)a->n_triangles * sizeof(uint32_t));
}

/* Same triangles (coordinates, bit for bit, in order), objects and materials. */
static void check_same_scene(const char *what, const mmd_scene *a, const mmd_scene *b)
{
    CHECK(a->n_triangles == b->n_triangles, "%s: triangles %u vs %u", what, a->n_triangles, b->n_triangles);
    CHECK(a->n_objects == b->n_objects, "%s: objects %u vs %u", what, a->n_objects, b->n_objects);
    CHECK(a->n_materials == b->n_materials, "%s: materials %u vs %u", what, a->n_materials, b->n_materials);
    if (a->n_triangles != b->n_triangles || a->n_objects != b->n_objects || a->n_materials != b->n_materials) return;
    size_t bad_xyz = 0, bad_mat = 0, bad_obj = 0;
    for (uint32_t t = 0; t < a->n_triangles; t++) {
        for (int c = 0; c < 3; c++)
            if (memcmp(a->vertices + 3 * (size_t)a->indices[3 * (size_t)t + c],
                       b->vertices + 3 * (size_t)b->indices[3 * (size_t)t + c], 3 * sizeof(float)))
                bad_xyz++;
        if (strcmp(a->materials[a->tri_material[t]].name, b->materials[b->tri_material[t]].name)) bad_mat++;
        if (a->tri_object[t] != b->tri_object[t]) bad_obj++;
    }
    CHECK(!bad_xyz && !bad_mat && !bad_obj, "%s: %zu corners, %zu materials, %zu objects differ", what, bad_xyz,
          bad_mat, bad_obj);
    for (uint32_t o = 0; o < a->n_objects; o++) {
        const mmd_scene_object *x = &a->objects[o], *y = &b->objects[o];
        CHECK(!strcmp(x->name, y->name) && x->first_tri == y->first_tri && x->n_tris == y->n_tris &&
                  !strcmp(a->materials[x->material].name, b->materials[y->material].name),
              "%s: object %u '%s' (%u+%u) vs '%s' (%u+%u)", what, o, x->name, x->first_tri, x->n_tris, y->name,
              y->first_tri, y->n_tris);
    }
    for (uint32_t m = 0; m < a->n_materials; m++) {
        const mmd_scene_material *x = &a->materials[m], *y = &b->materials[m];
        CHECK(!strcmp(x->name, y->name) && !strcmp(x->itu_name, y->itu_name) && x->kind == y->kind &&
                  x->thickness_m == y->thickness_m && x->eps_r == y->eps_r && x->sigma_s_per_m == y->sigma_s_per_m &&
                  x->scattering == y->scattering && x->xpd == y->xpd,
              "%s: material %u '%s'/%s kind %d t %g eps %g sig %g S %g K %g vs '%s'/%s kind %d t %g eps %g sig %g S %g K %g",
              what, m, x->name, x->itu_name, x->kind, x->thickness_m, x->eps_r, x->sigma_s_per_m, x->scattering, x->xpd,
              y->name, y->itu_name, y->kind, y->thickness_m, y->eps_r, y->sigma_s_per_m, y->scattering, y->xpd);
    }
}

static mmd_scene *load_room(void)
{
    mmd_scene *s = NULL;
    mmd_status st = mmd_scene_load(mmd_test_path("scenes/indoor/nist_conference_room/scene.yaml"), &s);
    CHECK(st == MMD_OK, "load the NIST conference room: %s", mmd_last_error());
    return s;
}

/* ---------------------------------------------------------------------------------- */
/* Parameters                                                                          */

static void expect_invalid(const char *what, mmd_perturb_params p, const char *field, const char *range)
{
    mmd_scene *g = grid_scene(2, 2, 1.0), *out = (mmd_scene *)&g;
    mmd_clear_error();
    mmd_status st = mmd_scene_perturb(g, &p, &out);
    const char *msg = mmd_last_error();
    if (getenv("MMD_TEST_VERBOSE")) fprintf(stderr, "  %-24s -> %s\n", what, msg);
    CHECK(st == MMD_ERR_INVALID, "%s: status %s (%s)", what, mmd_status_name(st), msg);
    CHECK(out == NULL, "%s: *out must be NULL on failure", what);
    CHECK(strstr(msg, field) && strstr(msg, range), "%s: message should name '%s' and '%s': %s", what, field, range,
          msg);
    mmd_scene_destroy(g);
}

static void test_params(void)
{
    mmd_perturb_params z = {0};
    mmd_perturb_params p;
    p = z, p.sigma_m = NAN;
    expect_invalid("sigma NaN", p, "sigma_m", "[0, 10]");
    p = z, p.sigma_m = -0.01;
    expect_invalid("sigma negative", p, "sigma_m", "[0, 10]");
    p = z, p.sigma_m = 11;
    expect_invalid("sigma too large", p, "sigma_m", "[0, 10]");
    p = z, p.subdivide_m = -1;
    expect_invalid("subdivide negative", p, "subdivide_m", "[0, 10000]");
    p = z, p.subdivide_m = INFINITY;
    expect_invalid("subdivide inf", p, "subdivide_m", "[0, 10000]");
    p = z, p.hole_fraction = 0.95, p.hole_radius_m = 0.1;
    expect_invalid("holes 0.95", p, "hole_fraction", "[0, 0.9]");
    p = z, p.hole_fraction = -0.1, p.hole_radius_m = 0.1;
    expect_invalid("holes negative", p, "hole_fraction", "[0, 0.9]");
    p = z, p.hole_fraction = 0.1, p.hole_radius_m = 0;
    expect_invalid("hole radius 0", p, "hole_radius_m", "(0, 100]");
    p = z, p.hole_radius_m = NAN;
    expect_invalid("hole radius NaN", p, "hole_radius_m", "[0, 100]");
    p = z, p.decimate = 0.91;
    expect_invalid("decimate 0.91", p, "decimate", "[0, 0.9]");
    p = z, p.decimate = NAN;
    expect_invalid("decimate NaN", p, "decimate", "[0, 0.9]");

    mmd_scene *out = NULL;
    CHECK(mmd_scene_perturb(NULL, &z, &out) == MMD_ERR_INVALID && !out, "NULL scene");
    mmd_scene *g = grid_scene(1, 1, 1.0);
    CHECK(mmd_scene_perturb(g, NULL, &out) == MMD_ERR_INVALID && !out, "NULL params");

    /* More than 50M triangles: refused before allocating, with the count it would need. */
    mmd_scene *big = grid_scene(1, 1, 100.0);
    p = z, p.subdivide_m = 0.001;
    mmd_clear_error();
    double t0 = mmd_now();
    mmd_status st = mmd_scene_perturb(big, &p, &out);
    const char *msg = mmd_last_error();
    CHECK(st == MMD_ERR_NOMEM && !out && strstr(msg, "would need") && strstr(msg, "50000000") &&
              strstr(msg, "subdivide_m >="),
          "50M limit: %s: %s", mmd_status_name(st), msg);
    CHECK(mmd_now() - t0 < 2.0, "the limit is checked before any work (%.2f s)", mmd_now() - t0);
    mmd_scene_destroy(big);
    mmd_scene_destroy(g);

    /* scene.noise block -> params (decimate: the fraction removed, as on the command line) */
    mmd_cfg_noise n;
    memset(&n, 0, sizeof n);
    n.sigma_m = 0.5; /* ignored: block absent */
    CHECK(mmd_perturb_from_cfg(&n, &p) == MMD_OK && p.sigma_m == 0 && p.decimate == 0 && p.subdivide_m == 0,
          "absent block = no change");
    n.enabled = 1;
    n.has_subdivide = 1;
    n.subdivide_m = 0.05;
    n.sigma_m = 0.01;
    n.hole_fraction = 0.2;
    n.hole_radius_m = 0.3;
    n.decimate = 0.25;
    n.seed = 42;
    CHECK(mmd_perturb_from_cfg(&n, &p) == MMD_OK && p.subdivide_m == 0.05 && p.sigma_m == 0.01 &&
              p.hole_fraction == 0.2 && p.hole_radius_m == 0.3 && fabs(p.decimate - 0.25) < 1e-15 && p.seed == 42,
          "from_cfg maps the block: %s", mmd_last_error());
    n.has_subdivide = 0;
    CHECK(mmd_perturb_from_cfg(&n, &p) == MMD_OK && p.subdivide_m == 0, "subdivide_m null = none");
    n.hole_fraction = 0.95;
    mmd_clear_error();
    CHECK(mmd_perturb_from_cfg(&n, &p) == MMD_ERR_INVALID && strstr(mmd_last_error(), "scene.noise.hole_fraction"),
          "from_cfg hole_fraction 0.95: %s", mmd_last_error());
    n.hole_fraction = 0.2;
    n.decimate = 0.95;
    mmd_clear_error();
    CHECK(mmd_perturb_from_cfg(&n, &p) == MMD_ERR_INVALID && strstr(mmd_last_error(), "scene.noise.decimate"),
          "from_cfg decimate removes 95%%: %s", mmd_last_error());
}

/* ---------------------------------------------------------------------------------- */
/* Geometry                                                                            */

static void test_identity(void)
{
    mmd_perturb_params z = {0};
    z.seed = 3;
    z.hole_radius_m = 0.1;
    mmd_scene *room = load_room(), *out = NULL;
    if (!room) return;
    CHECK(mmd_scene_perturb(room, &z, &out) == MMD_OK, "identity: %s", mmd_last_error());
    if (out) {
        CHECK(same_arrays(room, out), "all-zero params leave the arrays as they were");
        check_same_scene("identity", room, out);
        mmd_scene_destroy(out);
    }
    mmd_scene_destroy(room);
}

static void test_subdivide_grid(void)
{
    /* 4 x 3 unit squares; diagonal sqrt(2) / 0.3 -> n = 5 for every triangle. */
    mmd_scene *g = grid_scene(4, 3, 1.0), *out = NULL;
    if (!g) return;
    mmd_perturb_params p = {.subdivide_m = 0.3, .seed = 1};
    mmd_perturb_stats st;
    CHECK(mmd_scene_perturb_stats(g, &p, &out, &st) == MMD_OK, "subdivide grid: %s", mmd_last_error());
    if (!out) return;
    CHECK(out->n_triangles == 24 * 25, "triangles %u, want 24 x 5^2 = 600", out->n_triangles);
    CHECK(max_edge(out) <= 0.3 * (1 + 1e-6), "max edge %.9g > 0.3", max_edge(out));
    CHECK_NEAR(area(out), area(g), 1e-6 * area(g), "area preserved");
    for (int k = 0; k < 3; k++) {
        CHECK(out->bbox_min[k] == g->bbox_min[k] && out->bbox_max[k] == g->bbox_max[k], "bbox axis %d", k);
    }
    edge_stats ei = edges(g), eo = edges(out);
    CHECK(ei.boundary == 14, "input boundary edges %zu", ei.boundary);
    CHECK(eo.boundary == 5 * ei.boundary, "watertight: %zu boundary edges, want 5 x %zu", eo.boundary, ei.boundary);
    CHECK(eo.nonmanifold == 0, "%zu edges used by more than two triangles", eo.nonmanifold);
    /* sigma = 0 and no holes: every point is still on the plane, inside the grid */
    size_t off = 0;
    for (uint32_t v = 0; v < out->n_vertices; v++) {
        const float *q = out->vertices + 3 * (size_t)v;
        off += q[2] != 0.0f || q[0] < 0 || q[0] > 4 || q[1] < 0 || q[1] > 3;
    }
    CHECK(off == 0, "%zu vertices left the surface", off);
    CHECK(out->n_objects == 1 && out->objects[0].n_tris == out->n_triangles && !strcmp(out->objects[0].name, "floor"),
          "object kept");
    CHECK(st.tris_in == 24 && st.tris_out == 600 && st.max_edge_m <= 0.3 * (1 + 1e-6), "stats %u -> %u, max %g",
          st.tris_in, st.tris_out, st.max_edge_m);
    /* Every vertex is used: 5 x 5 points per unit square -> (4*5+1) x (3*5+1). */
    CHECK(out->n_vertices == 21 * 16, "vertices %u want 336 (shared along edges)", out->n_vertices);
    mmd_scene_destroy(out);
    mmd_scene_destroy(g);
}

/* A small welded square next to a long triangle sharing one edge: the small triangles get
 * the conforming transition band; no crack may open and no edge may stay too long. */
static void test_subdivide_mixed(void)
{
    mmd_scene_builder b;
    mmd_scene_builder_init(&b, "mixed");
    mmd_scene_material m = itu_material("wood");
    uint32_t mi, base;
    float v[] = {0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 1, 0, 6, 0.5f, 0.7f, -0.4f, 2.2f, 0.1f};
    uint32_t t[] = {0, 1, 3, 0, 3, 2, 1, 4, 3, 2, 3, 5};
    mmd_scene *s = NULL, *out = NULL;
    mmd_scene_builder_material(&b, &m, &mi);
    mmd_scene_builder_vertices(&b, v, 6, NULL, &base);
    mmd_scene_builder_object(&b, "mixed", mi, t, 4, base, NULL);
    CHECK(mmd_scene_builder_finish(&b, &s) == MMD_OK, "mixed scene");
    if (!s) return;
    for (int i = 0; i < 3; i++) {
        double target = i == 0 ? 0.3 : i == 1 ? 0.07 : 0.55;
        mmd_perturb_params p = {.subdivide_m = target};
        CHECK(mmd_scene_perturb(s, &p, &out) == MMD_OK, "mixed subdivide %g: %s", target, mmd_last_error());
        if (!out) continue;
        edge_stats ei = edges(s), eo = edges(out);
        CHECK_NEAR(eo.boundary_len, ei.boundary_len, 1e-6 * ei.boundary_len,
                   "target %g: boundary length (a crack adds boundary): %zu -> %zu edges", target, ei.boundary,
                   eo.boundary);
        CHECK(eo.nonmanifold == 0, "target %g: %zu non-manifold edges", target, eo.nonmanifold);
        CHECK(max_edge(out) <= edge_limit(out, target), "target %g: max edge %.9g", target, max_edge(out));
        CHECK_NEAR(area(out), area(s), 1e-6 * area(s), "target %g: area", target);
        /* no zero-area slivers from the pattern */
        double amin = INFINITY;
        for (uint32_t k = 0; k < out->n_triangles; k++) amin = fmin(amin, tri_area(out, k));
        CHECK(amin > 1e-6 * target * target, "target %g: smallest triangle %.3g m2", target, amin);
        mmd_scene_destroy(out);
        out = NULL;
    }
    mmd_scene_destroy(s);
}

/* Random welded planar meshes with very uneven cells (neighbours of very different
 * levels): the result must tile the same region exactly once, i.e. same area, same
 * boundary, no edge shared by three triangles and no triangle flipped over. */
static void test_subdivide_random(void)
{
    mmd_rng r;
    mmd_rng_seed(&r, 12345, 1);
    int bad = 0, runs = 0;
    for (int trial = 0; trial < 60; trial++) {
        int nx = 2 + (int)(mmd_rng_u32(&r) % 5), ny = 2 + (int)(mmd_rng_u32(&r) % 5);
        double xs[8] = {0}, ys[8] = {0};
        for (int i = 1; i <= nx; i++) xs[i] = xs[i - 1] + 0.05 + mmd_rng_uniform(&r) * (mmd_rng_u32(&r) % 3 ? 0.5 : 3);
        for (int j = 1; j <= ny; j++) ys[j] = ys[j - 1] + 0.05 + mmd_rng_uniform(&r) * (mmd_rng_u32(&r) % 3 ? 0.5 : 3);
        float v[3 * 64];
        uint32_t t[6 * 49];
        for (int j = 0; j <= ny; j++)
            for (int i = 0; i <= nx; i++) {
                float *p = v + 3 * (j * (nx + 1) + i);
                double jx = i > 0 && i < nx ? (mmd_rng_uniform(&r) - 0.5) * 0.3 * fmin(xs[i + 1] - xs[i], xs[i] - xs[i - 1]) : 0;
                double jy = j > 0 && j < ny ? (mmd_rng_uniform(&r) - 0.5) * 0.3 * fmin(ys[j + 1] - ys[j], ys[j] - ys[j - 1]) : 0;
                p[0] = (float)(xs[i] + jx);
                p[1] = (float)(ys[j] + jy);
                p[2] = 0;
            }
        int n = 0;
        for (int j = 0; j < ny; j++)
            for (int i = 0; i < nx; i++) {
                uint32_t a = (uint32_t)(j * (nx + 1) + i), c = a + 1, d = a + (uint32_t)nx + 1, e = d + 1;
                uint32_t q1[6] = {a, c, e, a, e, d}, q2[6] = {a, c, d, c, e, d};
                memcpy(t + n, mmd_rng_u32(&r) % 2 ? q1 : q2, sizeof q1);
                n += 6;
            }
        mmd_scene_builder b;
        mmd_scene_builder_init(&b, "random");
        mmd_scene_material m = itu_material("wood");
        uint32_t mi, base;
        mmd_scene *s = NULL, *out = NULL;
        mmd_scene_builder_material(&b, &m, &mi);
        mmd_scene_builder_vertices(&b, v, (uint32_t)((nx + 1) * (ny + 1)), NULL, &base);
        mmd_scene_builder_object(&b, "o", mi, t, (uint32_t)(2 * nx * ny), base, NULL);
        if (mmd_scene_builder_finish(&b, &s)) continue;
        double target = 0.05 + 0.6 * mmd_rng_uniform(&r);
        mmd_perturb_params p = {.subdivide_m = target};
        if (mmd_scene_perturb(s, &p, &out) != MMD_OK) {
            CHECK(0, "random %d: %s", trial, mmd_last_error());
            mmd_scene_destroy(s);
            continue;
        }
        runs++;
        double minsa = INFINITY;
        for (uint32_t k = 0; k < out->n_triangles; k++) {
            const uint32_t *i = out->indices + 3 * (size_t)k;
            const float *a = out->vertices + 3 * (size_t)i[0], *bb = out->vertices + 3 * (size_t)i[1],
                        *cc = out->vertices + 3 * (size_t)i[2];
            minsa = fmin(minsa, ((double)bb[0] - a[0]) * ((double)cc[1] - a[1]) - ((double)bb[1] - a[1]) * ((double)cc[0] - a[0]));
        }
        edge_stats ei = edges(s), eo = edges(out);
        int ok = minsa > 0 && eo.nonmanifold == 0 && fabs(eo.boundary_len - ei.boundary_len) <= 1e-6 * ei.boundary_len &&
                 fabs(area(out) - area(s)) <= 1e-6 * area(s) && max_edge(out) <= edge_limit(out, target);
        if (!ok && bad++ < 3)
            CHECK(0, "random %d (%dx%d, target %.3f): min signed area %.3g, %zu non-manifold, boundary %.9g vs %.9g, "
                  "area %.9g vs %.9g, max edge %.6g", trial, nx, ny, target, minsa, eo.nonmanifold, eo.boundary_len,
                  ei.boundary_len, area(out), area(s), max_edge(out));
        mmd_scene_destroy(s);
        mmd_scene_destroy(out);
    }
    CHECK(bad == 0 && runs == 60, "random uneven meshes: %d of %d bad", bad, runs);
}

/* Degenerate input (repeated indices, zero-area, unreferenced and duplicated vertices)
 * must not crash any stage. */
static void test_degenerate_input(void)
{
    mmd_scene_builder b;
    mmd_scene_builder_init(&b, "degenerate");
    mmd_scene_material m = itu_material("metal");
    uint32_t mi, base;
    float v[] = {0, 0, 0, 1, 0, 0, 2, 0, 0, 0, 1, 0, 1, 1, 0, 5, 5, 5, 1, 0, 0};
    uint32_t t[] = {0, 0, 1, 0, 1, 2, 0, 1, 4, 0, 4, 3, 6, 4, 1, 3, 3, 3};
    mmd_scene *s = NULL;
    mmd_scene_builder_material(&b, &m, &mi);
    mmd_scene_builder_vertices(&b, v, 7, NULL, &base);
    mmd_scene_builder_object(&b, "junk", mi, t, 6, base, NULL);
    CHECK(mmd_scene_builder_finish(&b, &s) == MMD_OK, "degenerate scene");
    if (!s) return;
    mmd_perturb_params p = {.subdivide_m = 0.1, .decimate = 0.3, .hole_fraction = 0.3, .hole_radius_m = 0.1,
                            .sigma_m = 0.01, .seed = 1};
    mmd_scene *out = NULL;
    mmd_status st = mmd_scene_perturb(s, &p, &out);
    CHECK(st == MMD_OK || st == MMD_ERR_INVALID, "degenerate input: %s", mmd_last_error());
    mmd_scene_destroy(out);
    p.decimate = 0;
    p.hole_fraction = 0;
    out = NULL;
    CHECK(mmd_scene_perturb(s, &p, &out) == MMD_OK, "degenerate input, subdivide + noise: %s", mmd_last_error());
    if (out) CHECK(out->n_objects == 1 && out->n_triangles > 6, "degenerate input: %u triangles", out->n_triangles);
    mmd_scene_destroy(out);
    mmd_scene_destroy(s);
}

static void test_subdivide_room(void)
{
    mmd_scene *room = load_room(), *out = NULL;
    if (!room) return;
    mmd_perturb_params p = {.subdivide_m = 0.1};
    double t0 = mmd_now();
    CHECK(mmd_scene_perturb(room, &p, &out) == MMD_OK, "room subdivide: %s", mmd_last_error());
    double dt = mmd_now() - t0;
    if (out) {
        CHECK(max_edge(out) <= edge_limit(out, 0.1), "room max edge %.9g", max_edge(out));
        CHECK_NEAR(area(out), area(room), 1e-6 * area(room), "room area");
        for (int k = 0; k < 3; k++)
            CHECK(fabsf(out->bbox_min[k] - room->bbox_min[k]) <= 1e-6f && fabsf(out->bbox_max[k] - room->bbox_max[k]) <= 1e-6f,
                  "room bbox axis %d", k);
        edge_stats ei = edges(room), eo = edges(out);
        CHECK_NEAR(eo.boundary_len, ei.boundary_len, 1e-6 * ei.boundary_len, "room boundary length %zu -> %zu edges",
                   ei.boundary, eo.boundary);
        int objs_ok = out->n_objects == room->n_objects;
        for (uint32_t o = 0; objs_ok && o < room->n_objects; o++) {
            double ai = 0, ao = 0;
            for (uint32_t t = 0; t < room->objects[o].n_tris; t++) ai += tri_area(room, room->objects[o].first_tri + t);
            for (uint32_t t = 0; t < out->objects[o].n_tris; t++) ao += tri_area(out, out->objects[o].first_tri + t);
            objs_ok = !strcmp(room->objects[o].name, out->objects[o].name) && fabs(ai - ao) <= 1e-6 * ai + 1e-12 &&
                      room->objects[o].material == out->objects[o].material;
        }
        CHECK(objs_ok, "room objects keep names, materials and per-object area");
        if (getenv("MMD_TEST_VERBOSE"))
            fprintf(stderr, "  room subdivide 0.1: %u -> %u triangles in %.3f s\n", room->n_triangles, out->n_triangles, dt);
        mmd_scene_destroy(out);
    }
    mmd_scene_destroy(room);
}

static void test_noise(void)
{
    /* 300 x 300 vertices: 270k displacement samples, std of the sample std ~0.14%. */
    mmd_scene *g = grid_scene(299, 299, 0.01), *out = NULL;
    if (!g) return;
    mmd_perturb_params p = {.sigma_m = 0.02, .seed = 11};
    CHECK(mmd_scene_perturb(g, &p, &out) == MMD_OK, "noise: %s", mmd_last_error());
    if (!out) return;
    CHECK(out->n_vertices == g->n_vertices && !memcmp(out->indices, g->indices, 3 * (size_t)g->n_triangles * 4),
          "noise keeps the topology");
    double s1[3] = {0, 0, 0}, s2[3] = {0, 0, 0};
    size_t n = g->n_vertices;
    for (size_t v = 0; v < n; v++)
        for (int k = 0; k < 3; k++) {
            double d = (double)out->vertices[3 * v + k] - g->vertices[3 * v + k];
            s1[k] += d;
            s2[k] += d * d;
        }
    double all1 = 0, all2 = 0;
    for (int k = 0; k < 3; k++) {
        double mean = s1[k] / n, sd = sqrt(s2[k] / n - mean * mean);
        CHECK(fabs(mean) < 4 * p.sigma_m / sqrt((double)n), "axis %d: mean %.3g (want ~0)", k, mean);
        CHECK(fabs(sd - p.sigma_m) < 0.03 * p.sigma_m, "axis %d: std %.5g, want %.5g within 3%%", k, sd, p.sigma_m);
        all1 += s1[k];
        all2 += s2[k];
    }
    double sd = sqrt(all2 / (3.0 * n) - (all1 / (3.0 * n)) * (all1 / (3.0 * n)));
    CHECK(fabs(sd - p.sigma_m) < 0.01 * p.sigma_m, "overall std %.5g want %.5g", sd, p.sigma_m);
    mmd_scene_destroy(out);

    /* With subdivision, shared vertices move together: still no crack. */
    mmd_scene *small = grid_scene(3, 3, 1.0);
    p.subdivide_m = 0.2;
    CHECK(mmd_scene_perturb(small, &p, &out) == MMD_OK, "noise + subdivide: %s", mmd_last_error());
    if (out) {
        edge_stats ei = edges(small), eo = edges(out);
        CHECK(eo.boundary == 8 * ei.boundary, "noisy subdivided grid: %zu boundary edges want 8 x %zu", eo.boundary,
              ei.boundary);
        mmd_scene_destroy(out);
    }
    mmd_scene_destroy(small);
    mmd_scene_destroy(g);
}

static void test_holes(void)
{
    mmd_scene *g = grid_scene(1, 1, 10.0), *out = NULL;
    if (!g) return;
    double fr[] = {0.05, 0.3, 0.9};
    for (int i = 0; i < 3; i++) {
        mmd_perturb_params p = {.subdivide_m = 0.05, .hole_fraction = fr[i], .hole_radius_m = 0.3, .seed = 5};
        mmd_perturb_stats st;
        CHECK(mmd_scene_perturb_stats(g, &p, &out, &st) == MMD_OK, "holes %g: %s", fr[i], mmd_last_error());
        if (!out) continue;
        double removed = 1.0 - area(out) / area(g);
        CHECK(fabs(removed - fr[i]) < 0.002, "holes %g: removed %.5f of the area", fr[i], removed);
        CHECK(fabs(st.hole_fraction - fr[i]) < 0.002 && fabs(st.area_holes_m2 - fr[i] * 100) < 0.2,
              "holes %g: stats say %.5f (%.4g m2)", fr[i], st.hole_fraction, st.area_holes_m2);
        /* Patches, not scattered triangles: far fewer hole rims than removed triangles. */
        edge_stats eo = edges(out);
        uint32_t gone = st.tris_subdivided - st.tris_out;
        CHECK(eo.boundary < (size_t)gone, "holes %g: %zu boundary edges for %u removed triangles", fr[i], eo.boundary,
              gone);
        mmd_scene_destroy(out);
        out = NULL;
    }
    /* On the room (objects kept, some maybe emptied), the same. */
    mmd_scene *room = load_room();
    if (room) {
        mmd_perturb_params p = {.subdivide_m = 0.1, .hole_fraction = 0.25, .hole_radius_m = 0.25, .seed = 9};
        mmd_scene *sub = NULL;
        mmd_perturb_params ps = {.subdivide_m = 0.1};
        CHECK(mmd_scene_perturb(room, &ps, &sub) == MMD_OK && mmd_scene_perturb(room, &p, &out) == MMD_OK,
              "room holes: %s", mmd_last_error());
        if (sub && out) {
            double removed = 1.0 - area(out) / area(sub);
            CHECK(fabs(removed - 0.25) < 0.005, "room: removed %.5f of the area", removed);
            CHECK(out->n_objects == room->n_objects, "room: objects kept (%u)", out->n_objects);
        }
        mmd_scene_destroy(sub);
        mmd_scene_destroy(out);
        mmd_scene_destroy(room);
    }
    mmd_scene_destroy(g);
}

static void test_decimate(void)
{
    mmd_scene *g = grid_scene(1, 1, 4.0), *out = NULL;
    double fr[] = {0.2, 0.5, 0.8};
    for (int i = 0; g && i < 3; i++) {
        mmd_perturb_params p = {.subdivide_m = 0.05, .decimate = fr[i]};
        mmd_perturb_stats st;
        CHECK(mmd_scene_perturb_stats(g, &p, &out, &st) == MMD_OK, "decimate %g: %s", fr[i], mmd_last_error());
        if (!out) continue;
        double removed = 1.0 - (double)st.tris_decimated / st.tris_subdivided;
        CHECK(fabs(removed - fr[i]) < 0.01, "decimate %g: removed %.4f of %u triangles", fr[i], removed,
              st.tris_subdivided);
        CHECK_NEAR(area(out), area(g), 0.02 * area(g), "decimate %g: the surface stays (area)", fr[i]);
        edge_stats eo = edges(out);
        CHECK(eo.nonmanifold == 0, "decimate %g: %zu non-manifold edges", fr[i], eo.nonmanifold);
        mmd_scene_destroy(out);
        out = NULL;
    }
    mmd_scene_destroy(g);
}

static void test_determinism(void)
{
    mmd_scene *room = load_room();
    if (!room) return;
    mmd_perturb_params p = {.subdivide_m = 0.1, .sigma_m = 0.01, .hole_fraction = 0.2, .hole_radius_m = 0.3,
                            .decimate = 0.3, .seed = 5};
    mmd_scene *a = NULL, *b = NULL, *c = NULL;
    CHECK(mmd_scene_perturb(room, &p, &a) == MMD_OK, "run 1: %s", mmd_last_error());
    setenv("MMDIFF_THREADS", "1", 1);
    CHECK(mmd_scene_perturb(room, &p, &b) == MMD_OK, "run 2: %s", mmd_last_error());
    unsetenv("MMDIFF_THREADS");
    p.seed = 6;
    CHECK(mmd_scene_perturb(room, &p, &c) == MMD_OK, "run 3: %s", mmd_last_error());
    if (a && b && c) {
        CHECK(same_arrays(a, b), "same seed, same arrays");
        CHECK(!same_arrays(a, c), "different seed, different arrays");
        /* and the same file bytes */
        char cmd[2048];
        const char *pa = tmp_path("det_a.ply"), *pb = tmp_path("det_b.ply");
        CHECK(mmd_scene_write_ply(a, pa) == MMD_OK && mmd_scene_write_ply(b, pb) == MMD_OK, "write: %s",
              mmd_last_error());
        snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", pa, pb);
        CHECK(system(cmd) == 0, "same seed, same PLY bytes");
    }
    mmd_scene_destroy(a);
    mmd_scene_destroy(b);
    mmd_scene_destroy(c);
    mmd_scene_destroy(room);
}

/* ---------------------------------------------------------------------------------- */
/* Writers                                                                             */

static void round_trip(const char *what, const mmd_scene *s, const char *name)
{
    mmd_scene *r = NULL;
    const char *path = tmp_path(name);
    mmd_status st = mmd_scene_write(s, path);
    CHECK(st == MMD_OK, "%s: write: %s", what, mmd_last_error());
    if (st) return;
    st = mmd_scene_load(path, &r);
    CHECK(st == MMD_OK, "%s: load back: %s", what, mmd_last_error());
    if (st) return;
    check_same_scene(what, s, r);
    mmd_scene_destroy(r);
}

static void test_round_trip(void)
{
    mmd_scene *room = load_room();
    if (room) {
        round_trip("nist room", room, "room.yaml");
        mmd_scene *r = NULL;
        if (mmd_scene_load(tmp_path("room.yaml"), &r) == MMD_OK) {
            CHECK(same_arrays(room, r), "nist room: the YAML scene comes back array for array");
            mmd_scene_destroy(r);
        }
        /* a perturbed room (holes may empty objects) round-trips too */
        mmd_perturb_params p = {.subdivide_m = 0.2, .sigma_m = 0.005, .hole_fraction = 0.3, .hole_radius_m = 0.5,
                                .seed = 2};
        mmd_scene *n = NULL;
        CHECK(mmd_scene_perturb(room, &p, &n) == MMD_OK, "perturb room: %s", mmd_last_error());
        if (n) round_trip("perturbed room", n, "noisy/room_noisy.yml");
        /* writing over an existing scene is fine */
        if (n) round_trip("perturbed room, again", n, "noisy/room_noisy.yml");
        mmd_scene_destroy(n);

        /* whole-scene PLY: same triangles, objects by id */
        const char *ply = tmp_path("room.ply");
        CHECK(mmd_scene_write_ply(room, ply) == MMD_OK, "write ply: %s", mmd_last_error());
        if (mmd_scene_load(ply, &r) == MMD_OK) {
            int ok = r->n_triangles == room->n_triangles && r->n_objects == room->n_objects;
            for (uint32_t t = 0; ok && t < r->n_triangles; t++) {
                char want[32];
                snprintf(want, sizeof want, "object_%u", room->tri_object[t]);
                ok = r->tri_object[t] == room->tri_object[t] && !strcmp(r->objects[r->tri_object[t]].name, want);
                for (int c = 0; ok && c < 3; c++)
                    ok = !memcmp(r->vertices + 3 * (size_t)r->indices[3 * t + c],
                                 room->vertices + 3 * (size_t)room->indices[3 * t + c], 12);
                snprintf(want, sizeof want, "material_%u", room->tri_material[t]);
                ok = ok && !strcmp(r->materials[r->tri_material[t]].name, want);
            }
            CHECK(ok, "scene PLY round trip (triangles, object ids, material indices)");
            mmd_scene_destroy(r);
        } else {
            CHECK(0, "load scene PLY: %s", mmd_last_error());
        }
        mmd_scene_destroy(room);
    }

    /* Mitsuba scenes: bsdf ids and thicknesses survive through the material mapping. */
    const char *xml[] = {"scenes/sionna/box/box.xml", "scenes/sionna/simple_street_canyon/simple_street_canyon.xml",
                         "scenes/sionna/munich/munich.xml"};
    for (int i = 0; i < 3; i++) {
        mmd_scene *s = NULL;
        if (mmd_scene_load(mmd_test_path(xml[i]), &s) != MMD_OK) {
            CHECK(0, "load %s: %s", xml[i], mmd_last_error());
            continue;
        }
        char name[64];
        snprintf(name, sizeof name, "xml%d/scene.yaml", i);
        double t0 = mmd_now();
        round_trip(xml[i], s, name);
        if (getenv("MMD_TEST_VERBOSE"))
            fprintf(stderr, "  round trip %s (%u objects): %.3f s\n", xml[i], s->n_objects, mmd_now() - t0);
        mmd_scene_destroy(s);
    }

    /* Awkward names and materials built by hand. */
    mmd_scene_builder b;
    mmd_scene_builder_init(&b, "hand");
    mmd_scene_material m[4];
    m[0] = itu_material("concrete");
    snprintf(m[0].name, sizeof m[0].name, "mat-itu_concrete");
    m[0].thickness_m = 0.25;
    m[0].scattering = 0.3;
    m[1] = itu_material("glass");
    memset(&m[2], 0, sizeof m[2]);
    snprintf(m[2].name, sizeof m[2].name, "my \"radio\" glass");
    m[2].kind = MMD_MAT_RADIO;
    m[2].eps_r = 6.31;
    m[2].sigma_s_per_m = 0.0123456789;
    m[2].thickness_m = 0.012;
    m[2].xpd = 0.1;
    memset(&m[3], 0, sizeof m[3]);
    snprintf(m[3].name, sizeof m[3].name, "default");
    m[3].kind = MMD_MAT_UNASSIGNED;
    m[3].thickness_m = 0.1;
    m[3].eps_r = 1.0;
    uint32_t mi[4], base;
    for (int i = 0; i < 4; i++) mmd_scene_builder_material(&b, &m[i], &mi[i]);
    float v[] = {0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 1, 0};
    uint32_t t[] = {0, 1, 3, 0, 3, 2};
    const char *names[] = {"wall", "wall", "Wall", "a/b c", "", "..hidden", "ünïcode", "wall.ply"};
    for (int o = 0; o < 8; o++) {
        mmd_scene_builder_vertices(&b, v, 4, NULL, &base);
        mmd_scene_builder_object(&b, names[o], mi[o % 4], t, 2, base, NULL);
    }
    mmd_scene *s = NULL;
    CHECK(mmd_scene_builder_finish(&b, &s) == MMD_OK, "hand scene");
    if (s) {
        round_trip("hand-made scene", s, "hand.yaml");
        mmd_scene_destroy(s);
    }

    /* Bad paths fail cleanly and write nothing. */
    mmd_scene *g = grid_scene(1, 1, 1.0);
    mmd_clear_error();
    CHECK(mmd_scene_write(g, tmp_path("x.txt")) == MMD_ERR_INVALID && strstr(mmd_last_error(), ".yaml"),
          "write to .txt: %s", mmd_last_error());
    CHECK(mmd_scene_write(g, "/proc/nonexistent_dir/x.yaml") == MMD_ERR_IO, "unwritable dir: %s", mmd_last_error());
    CHECK(mmd_scene_write_ply(g, "/proc/nonexistent_dir/x.ply") == MMD_ERR_IO, "unwritable ply: %s", mmd_last_error());
    mmd_scene_destroy(g);
}

/* The scene-YAML material mapping rejects what it cannot honour. */
static void test_yaml_material_errors(void)
{
    mmd_scene *g = grid_scene(1, 1, 1.0);
    if (!g || mmd_scene_write(g, tmp_path("one.yaml")) != MMD_OK) {
        CHECK(0, "write one.yaml: %s", mmd_last_error());
        mmd_scene_destroy(g);
        return;
    }
    mmd_scene_destroy(g);
    static const struct {
        const char *material, *phrase;
        mmd_status st;
    } T[] = {
        {"{name: x, colour: red}", "unknown material key 'colour'", MMD_ERR_PARSE},
        {"{eps_r: 3}", "needs a 'name'", MMD_ERR_PARSE},
        {"{name: x, itu: concrete, eps_r: 3}", "not both", MMD_ERR_INVALID},
        {"{name: x, itu: unobtainium}", "unknown material 'unobtainium'", MMD_ERR_INVALID},
        {"{name: x, eps_r: .nan}", "eps_r", MMD_ERR_INVALID},
        {"{name: x, scattering: 2}", "scattering", MMD_ERR_INVALID},
        {"[concrete]", "must be an ITU material name, a mapping or null", MMD_ERR_PARSE},
    };
    for (size_t i = 0; i < sizeof T / sizeof *T; i++) {
        char text[512];
        snprintf(text, sizeof text, "shapes:\n  - file: one_meshes/floor.ply\n    material: %s\n", T[i].material);
        FILE *f = fopen(tmp_path("bad.yaml"), "wb");
        if (f) {
            fputs(text, f);
            fclose(f);
        }
        mmd_scene *s = NULL;
        mmd_clear_error();
        mmd_status st = mmd_scene_load(tmp_path("bad.yaml"), &s);
        CHECK(st == T[i].st && strstr(mmd_last_error(), T[i].phrase) && strstr(mmd_last_error(), "bad.yaml:3:"),
              "material %s: %s: %s", T[i].material, mmd_status_name(st), mmd_last_error());
        mmd_scene_destroy(s);
    }
    /* the accepted forms */
    FILE *f = fopen(tmp_path("good.yaml"), "wb");
    if (f) {
        fputs("shapes:\n  - {file: one_meshes/floor.ply, name: a, material: {itu: brick, thickness_m: 0.3}}\n"
              "  - {file: one_meshes/floor.ply, name: b, material: {name: r, eps_r: 4, sigma_s_per_m: 0.1}}\n"
              "  - {file: one_meshes/floor.ply, material: {name: later}}\n",
              f);
        fclose(f);
    }
    mmd_scene *s = NULL;
    CHECK(mmd_scene_load(tmp_path("good.yaml"), &s) == MMD_OK, "good.yaml: %s", mmd_last_error());
    if (s) {
        CHECK(s->n_objects == 3 && !strcmp(s->objects[0].name, "a") && !strcmp(s->objects[1].name, "b") &&
                  !strcmp(s->objects[2].name, "floor"),
              "object names a, b, floor");
        CHECK(s->n_materials == 3 && s->materials[0].kind == MMD_MAT_ITU && !strcmp(s->materials[0].name, "brick") &&
                  s->materials[0].thickness_m == 0.3 && s->materials[1].kind == MMD_MAT_RADIO &&
                  s->materials[1].eps_r == 4 && s->materials[2].kind == MMD_MAT_UNASSIGNED &&
                  !strcmp(s->materials[2].name, "later"),
              "material forms");
        mmd_scene_destroy(s);
    }
}

/* ---------------------------------------------------------------------------------- */
/* Command line                                                                        */

static int run(const char *cmd, char *out, size_t size)
{
    char full[4096];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    size_t n = p ? fread(out, 1, size - 1, p) : 0;
    out[n] = 0;
    int status = p ? pclose(p) : -1;
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_cli(void)
{
    const char *bin = getenv("MMD_BIN");
    if (!bin || !bin[0]) bin = "build/mmdiff";
    char absbin[4096], room[4096];
    if (!realpath(bin, absbin)) {
        CHECK(0, "no mmdiff binary at %s (build it first)", bin);
        return;
    }
    if (!realpath(mmd_test_path("scenes/indoor/nist_conference_room/scene.yaml"), room)) {
        CHECK(0, "no NIST room under %s", mmd_test_shared());
        return;
    }
    static const struct {
        const char *args, *phrase;
    } bad[] = {
        {"", "usage"},
        {"ROOM", "no OUT file"},
        {"ROOM OUT --sigma", "needs a value"},
        {"ROOM OUT --sigma abc", "expected a number"},
        {"ROOM OUT --sigma nan", "expected a number"},
        {"ROOM OUT --sigma -0.1", "sigma_m"},
        {"ROOM OUT --sigma=20", "[0, 10]"},
        {"ROOM OUT --holes 0.95", "hole_fraction"},
        {"ROOM OUT --holes 0.1 --hole-radius 0", "hole_radius_m"},
        {"ROOM OUT --decimate 1", "decimate"},
        {"ROOM OUT --seed -3", "--seed"},
        {"ROOM OUT --seed 1x", "--seed"},
        {"ROOM OUT --frobnicate 1", "unknown option"},
        {"ROOM OUT extra", "unexpected argument"},
        {"ROOM out.txt", "must end in .yaml"},
        {"/nonexistent/room.yaml OUT", "/nonexistent/room.yaml"},
        {"ROOM OUT --subdivide 0.0001", "would need"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char args[2048] = "", cmd[8192], out[65536];
        /* substitute ROOM and OUT */
        const char *a = bad[i].args;
        while (*a) {
            if (!strncmp(a, "ROOM", 4)) {
                strncat(args, room, sizeof args - strlen(args) - 1);
                a += 4;
            } else if (!strncmp(a, "OUT", 3)) {
                strncat(args, tmp_path("cli/out.yaml"), sizeof args - strlen(args) - 1);
                a += 3;
            } else {
                size_t l = strlen(args);
                if (l + 1 < sizeof args) args[l] = *a, args[l + 1] = 0;
                a++;
            }
        }
        snprintf(cmd, sizeof cmd, "MMDIFF_LOG=0 %s perturb %s", absbin, args);
        int rc = run(cmd, out, sizeof out);
        CHECK(rc != 0 && rc < 128, "perturb %s: exit code %d (want a clean failure)", bad[i].args, rc);
        CHECK(strstr(out, "error") || strstr(out, "usage"), "perturb %s: no error message: %.300s", bad[i].args, out);
        CHECK(strstr(out, bad[i].phrase) != NULL, "perturb %s: message should mention '%s': %.400s", bad[i].args,
              bad[i].phrase, out);
        CHECK(!exists(tmp_path("cli/out.yaml")) && !exists(tmp_path("cli/out_meshes")) && !exists(tmp_path("cli/out.txt")),
              "perturb %s: left output behind", bad[i].args);
    }

    /* a good run: exit 0, one summary line on stdout, a loadable scene */
    char cmd[16384], out[65536];
    snprintf(cmd, sizeof cmd, "MMDIFF_LOG=0 %s perturb %s %s --subdivide 0.2 --sigma 0.005 --holes 0.1 "
                              "--hole-radius=0.3 --decimate 0.2 --seed 4 2>/dev/null",
             absbin, room, tmp_path("cli/out.yaml"));
    int rc = run(cmd, out, sizeof out);
    CHECK(rc == 0, "good run: exit code %d: %.500s", rc, out);
    size_t lines = 0;
    for (const char *c = out; *c; c++) lines += *c == '\n';
    CHECK(lines == 1 && !strncmp(out, "perturb: 432 -> ", 16) && strstr(out, "triangles") && strstr(out, "mean edge"),
          "one summary line: %s", out);
    mmd_scene *s = NULL;
    CHECK(mmd_scene_load(tmp_path("cli/out.yaml"), &s) == MMD_OK, "CLI output loads: %s", mmd_last_error());
    mmd_scene *r = load_room();
    if (s && r) {
        CHECK(s->n_objects == r->n_objects && s->n_materials == r->n_materials, "CLI output keeps objects/materials");
        /* the library with the same params gives the same scene */
        mmd_perturb_params p = {.subdivide_m = 0.2, .sigma_m = 0.005, .hole_fraction = 0.1, .hole_radius_m = 0.3,
                                .decimate = 0.2, .seed = 4};
        mmd_scene *l = NULL;
        if (mmd_scene_perturb(r, &p, &l) == MMD_OK) {
            check_same_scene("CLI vs library", l, s);
            mmd_scene_destroy(l);
        }
    }
    mmd_scene_destroy(s);
    mmd_scene_destroy(r);
    /* -h is not an error */
    snprintf(cmd, sizeof cmd, "%s perturb --help", absbin);
    CHECK(run(cmd, out, sizeof out) == 0 && strstr(out, "--hole-radius"), "perturb --help: %.200s", out);
}

int main(void)
{
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    mmd_log_set_level(0);
    test_params();
    test_identity();
    test_subdivide_grid();
    test_subdivide_mixed();
    test_subdivide_random();
    test_degenerate_input();
    test_subdivide_room();
    test_noise();
    test_holes();
    test_decimate();
    test_determinism();
    test_round_trip();
    test_yaml_material_errors();
    test_cli();
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (!getenv("MMD_TEST_KEEP") && system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
    return TEST_DONE();
}
