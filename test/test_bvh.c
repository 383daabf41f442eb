/*
 * test_bvh.c - BVH builds (lbvh.c, and the binned SAH build of sah.c), validation and the
 * reference traversals (bvh_ref.c), and the shared ray/triangle and ray/box tests
 * (mmd_isect.h).
 *
 * The traversal results must equal brute force bit for bit: the closest hit is the
 * smallest (t, triangle index) pair and both use the same watertight test. The build
 * tests run twice, with the default (LBVH) quality and with MMD_BVH_SAH; the SAH build
 * is also checked on every shared scene and against the LBVH's SAH cost.
 */
#include "mmd_bvh.h"
#include "mmd_isect.h"
#include "mmd_scene.h"
#include "mmd_test.h"

#include <pthread.h>
#include <stdint.h>

/* Sanitizer builds run the brute-force comparisons on fewer rays to stay fast. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif
#define RAYS(n) (SANITIZED ? (n) / 5 : (n))

typedef struct mesh {
    float *v;
    uint32_t *ix;
    uint32_t n;     /* triangles */
    uint32_t nv;    /* vertices */
} mesh;

static void mesh_alloc(mesh *m, uint32_t n_tris, uint32_t n_verts)
{
    m->n = n_tris;
    m->nv = n_verts;
    m->v = malloc(sizeof(float) * 3 * (n_verts ? n_verts : 1));
    m->ix = malloc(sizeof(uint32_t) * 3 * (n_tris ? n_tris : 1));
    if (!m->v || !m->ix) {
        fprintf(stderr, "test_bvh: out of memory\n");
        exit(2);
    }
}

static void mesh_free(mesh *m)
{
    free(m->v);
    free(m->ix);
    memset(m, 0, sizeof *m);
}

static float urand(mmd_rng *r, float lo, float hi)
{
    return lo + (hi - lo) * (float)mmd_rng_uniform(r);
}

/* n random triangles of about `size` in the unit cube, own vertices each */
static void make_soup(mesh *m, uint32_t n, float size, uint64_t seed)
{
    mmd_rng r;
    mmd_rng_seed(&r, seed, 7);
    mesh_alloc(m, n, 3 * n);
    for (uint32_t i = 0; i < n; i++) {
        float c[3] = {urand(&r, 0, 1), urand(&r, 0, 1), urand(&r, 0, 1)};
        for (int q = 0; q < 3; q++) {
            for (int k = 0; k < 3; k++) m->v[9 * i + 3 * q + k] = c[k] + urand(&r, -size, size);
            m->ix[3 * i + q] = 3 * i + q;
        }
    }
}

/* Axis-aligned box room (walls, floor, ceiling) tessellated on a g x g grid per face
 * with shared vertices, plus `stack` exact copies of every floor triangle: many equal
 * centroids, hence equal Morton codes, and many exactly tied hits. */
static void make_room(mesh *m, uint32_t g, uint32_t stack)
{
    const float L[3] = {10.0f, 4.0f, 3.0f};
    uint32_t per_face = 2 * g * g, vpf = (g + 1) * (g + 1);
    mesh_alloc(m, 6 * per_face + stack * per_face, 6 * vpf);
    uint32_t t = 0;
    for (int f = 0; f < 6; f++) {
        int ax = f / 2, a1 = (ax + 1) % 3, a2 = (ax + 2) % 3;
        float c = (f & 1) ? L[ax] : 0.0f;
        uint32_t vb = (uint32_t)f * vpf;
        for (uint32_t i = 0; i <= g; i++)
            for (uint32_t j = 0; j <= g; j++) {
                float *p = &m->v[3 * (vb + i * (g + 1) + j)];
                p[ax] = c;
                p[a1] = L[a1] * (float)i / (float)g;
                p[a2] = L[a2] * (float)j / (float)g;
            }
        for (uint32_t i = 0; i < g; i++)
            for (uint32_t j = 0; j < g; j++) {
                uint32_t v00 = vb + i * (g + 1) + j, v10 = v00 + g + 1, v01 = v00 + 1, v11 = v10 + 1;
                uint32_t tri[2][3] = {{v00, v10, v01}, {v10, v11, v01}};
                for (int s = 0; s < 2; s++, t++)
                    for (int q = 0; q < 3; q++) m->ix[3 * t + q] = tri[s][q];
            }
    }
    /* face 0 is the floor-ish x = 0 wall; copy its triangles `stack` times */
    for (uint32_t s = 0; s < stack; s++)
        for (uint32_t i = 0; i < per_face; i++, t++)
            for (int q = 0; q < 3; q++) m->ix[3 * t + q] = m->ix[3 * i + q];
}

/* the quality every build() of this pass uses */
static int g_quality = MMD_BVH_FAST;

static mmd_bvh *build(const mesh *m, int threads, int leaf)
{
    mmd_bvh *b = NULL;
    mmd_bvh_options o = {threads, leaf, g_quality};
    mmd_status st = mmd_bvh_build(m->v, m->ix, m->n, &o, &b);
    CHECK(st == MMD_OK, "build of %u triangles: %s", m->n, st ? mmd_last_error() : "");
    if (st == MMD_OK) {
        st = mmd_bvh_validate(b);
        CHECK(st == MMD_OK, "validate %u triangles (leaf %d): %s", m->n, leaf, st ? mmd_last_error() : "");
        CHECK(b->depth >= 1 && b->depth <= MMD_BVH_MAX_DEPTH, "depth %d", b->depth);
    }
    return b;
}

/* ------------------------------------------------------------------------------ */
/* rays                                                                           */

static void random_dir(mmd_rng *r, float *d)
{
    for (;;) {
        float x = urand(r, -1, 1), y = urand(r, -1, 1), z = urand(r, -1, 1);
        float l2 = x * x + y * y + z * z;
        if (l2 > 1e-4f && l2 <= 1.0f) {
            /* unnormalised on purpose: t is in units of |d| */
            d[0] = x;
            d[1] = y;
            d[2] = z;
            return;
        }
    }
}

/* Ray starting on triangle `tri` (a random interior point) nudged along the normal to
 * the side the direction points into, as secondary rays are. */
static void surface_ray(const mesh *m, uint32_t tri, mmd_rng *r, mmd_ray *ray)
{
    const float *a = &m->v[3 * m->ix[3 * tri]], *b = &m->v[3 * m->ix[3 * tri + 1]],
                *c = &m->v[3 * m->ix[3 * tri + 2]];
    float e1[3], e2[3], nrm[3], d[3];
    for (int k = 0; k < 3; k++) {
        e1[k] = b[k] - a[k];
        e2[k] = c[k] - a[k];
    }
    nrm[0] = e1[1] * e2[2] - e1[2] * e2[1];
    nrm[1] = e1[2] * e2[0] - e1[0] * e2[2];
    nrm[2] = e1[0] * e2[1] - e1[1] * e2[0];
    float nl = sqrtf(nrm[0] * nrm[0] + nrm[1] * nrm[1] + nrm[2] * nrm[2]);
    random_dir(r, d);
    float s = nrm[0] * d[0] + nrm[1] * d[1] + nrm[2] * d[2];
    float u = (float)mmd_rng_uniform(r), v = (float)mmd_rng_uniform(r);
    if (u + v > 1) {
        u = 1 - u;
        v = 1 - v;
    }
    float eps = nl > 0 ? (s >= 0 ? 1e-5f : -1e-5f) / nl : 0.0f;
    float o[3];
    for (int k = 0; k < 3; k++) o[k] = a[k] + u * e1[k] + v * e2[k] + eps * nrm[k];
    *ray = (mmd_ray){o[0], o[1], o[2], 0.0f, d[0], d[1], d[2], INFINITY};
}

static void make_rays(const mesh *m, mmd_ray *rays, uint32_t n, uint64_t seed, int finite_tmax)
{
    mmd_rng r;
    mmd_rng_seed(&r, seed, 3);
    for (uint32_t i = 0; i < n; i++) {
        if (i % 2 == 0) {
            float d[3];
            random_dir(&r, d);
            rays[i] = (mmd_ray){urand(&r, -0.1f, 1.1f), urand(&r, -0.1f, 1.1f), urand(&r, -0.1f, 1.1f),
                                0.0f, d[0], d[1], d[2], INFINITY};
            if (i % 8 == 0) rays[i].tmin = urand(&r, 0.0f, 0.3f);
        } else {
            surface_ray(m, mmd_rng_u32(&r) % m->n, &r, &rays[i]);
        }
        if (i % 16 == 5) { /* axis-parallel directions: exercises the parallel slabs */
            rays[i].dx = 0.0f;
            rays[i].dy = i % 32 == 5 ? -0.0f : 0.0f;
        }
        if (finite_tmax) rays[i].tmax = rays[i].tmin + urand(&r, 0.0f, 0.4f);
    }
}

typedef struct cmp_job {
    const mesh *m;
    const mmd_bvh *b;
    const mmd_ray *rays;
    uint32_t lo, hi;
    uint32_t bad_closest, bad_any, hits, first_bad;
} cmp_job;

static void *cmp_main(void *p)
{
    cmp_job *j = p;
    j->first_bad = UINT32_MAX;
    for (uint32_t i = j->lo; i < j->hi; i++) {
        const mmd_ray *r = &j->rays[i];
        if (isinf(r->tmax)) {
            mmd_hit a = mmd_bvh_closest_ref(j->b, r);
            mmd_hit e = mmd_brute_closest(j->m->v, j->m->ix, j->m->n, r);
            if (a.prim != e.prim || memcmp(&a.t, &e.t, 4) || memcmp(&a.u, &e.u, 4) ||
                memcmp(&a.v, &e.v, 4)) {
                if (!j->bad_closest++) j->first_bad = i;
            }
            j->hits += e.prim >= 0;
        } else {
            int a = mmd_bvh_any_ref(j->b, r), e = mmd_brute_any(j->m->v, j->m->ix, j->m->n, r);
            if (a != e && !j->bad_any++) j->first_bad = i;
            j->hits += e;
        }
    }
    return NULL;
}

/* Compare the BVH traversal with brute force on every ray (two threads). */
static void compare(const char *what, const mesh *m, const mmd_bvh *b, const mmd_ray *rays, uint32_t n,
                    uint32_t min_hits)
{
    cmp_job jobs[2];
    pthread_t th;
    for (int k = 0; k < 2; k++)
        jobs[k] = (cmp_job){m, b, rays, n * (uint32_t)k / 2, n * (uint32_t)(k + 1) / 2, 0, 0, 0, 0};
    int threaded = pthread_create(&th, NULL, cmp_main, &jobs[1]) == 0;
    cmp_main(&jobs[0]);
    if (threaded)
        pthread_join(th, NULL);
    else
        cmp_main(&jobs[1]);
    uint32_t bc = jobs[0].bad_closest + jobs[1].bad_closest, ba = jobs[0].bad_any + jobs[1].bad_any;
    uint32_t hits = jobs[0].hits + jobs[1].hits;
    uint32_t fb = jobs[0].first_bad != UINT32_MAX ? jobs[0].first_bad : jobs[1].first_bad;
    CHECK(bc == 0, "%s: %u of %u closest hits differ from brute force (first: ray %u)", what, bc, n, fb);
    CHECK(ba == 0, "%s: %u of %u any-hit results differ from brute force (first: ray %u)", what, ba, n, fb);
    if (fb != UINT32_MAX) {
        const mmd_ray *r = &rays[fb];
        mmd_hit a = mmd_bvh_closest_ref(b, r), e = mmd_brute_closest(m->v, m->ix, m->n, r);
        fprintf(stderr, "  ray o=(%.9g %.9g %.9g) d=(%.9g %.9g %.9g) [%g, %g]: bvh prim %d t %.9g, brute prim %d t %.9g\n",
                r->ox, r->oy, r->oz, r->dx, r->dy, r->dz, r->tmin, r->tmax, a.prim, a.t, e.prim, e.t);
    }
    /* a comparison where nothing is ever hit would prove nothing */
    CHECK(hits >= min_hits, "%s: only %u of %u rays hit (expected at least %u)", what, hits, n, min_hits);
}

/* ------------------------------------------------------------------------------ */

static void test_isect(void)
{
    mmd_isect_ray pr;
    float t = 0, u = 0, v = 0;
    /* triangle in the z = 2 plane, ray along +z through P = 0.5 v0 + 0.25 v1 + 0.25 v2 */
    const float v0[3] = {0, 0, 2}, v1[3] = {4, 0, 2}, v2[3] = {0, 4, 2};
    mmd_isect_ray_init(&pr, 1, 1, 0, 0, 0, 2);
    int hit = mmd_isect_tri(&pr, v0[0], v0[1], v0[2], v1[0], v1[1], v1[2], v2[0], v2[1], v2[2], 0,
                            INFINITY, &t, &u, &v);
    CHECK(hit, "axis ray hits the triangle");
    CHECK(t == 1.0f && u == 0.25f && v == 0.25f, "t %g u %g v %g (expected 1, 0.25, 0.25)", t, u, v);
    /* two-sided: from above, looking down */
    mmd_isect_ray_init(&pr, 1, 1, 5, 0, 0, -1);
    hit = mmd_isect_tri(&pr, v0[0], v0[1], v0[2], v1[0], v1[1], v1[2], v2[0], v2[1], v2[2], 0,
                        INFINITY, &t, &u, &v);
    CHECK(hit && t == 3.0f && u == 0.25f && v == 0.25f, "back side: hit %d t %g u %g v %g", hit, t, u, v);
    /* range: [tmin, tmax] inclusive */
    hit = mmd_isect_tri(&pr, v0[0], v0[1], v0[2], v1[0], v1[1], v1[2], v2[0], v2[1], v2[2], 0, 3.0f,
                        &t, &u, &v);
    CHECK(hit, "t == tmax is a hit");
    hit = mmd_isect_tri(&pr, v0[0], v0[1], v0[2], v1[0], v1[1], v1[2], v2[0], v2[1], v2[2], 0,
                        nextafterf(3.0f, 0.0f), &t, &u, &v);
    CHECK(!hit, "t just beyond tmax is a miss");
    hit = mmd_isect_tri(&pr, v0[0], v0[1], v0[2], v1[0], v1[1], v1[2], v2[0], v2[1], v2[2], 3.0f,
                        INFINITY, &t, &u, &v);
    CHECK(hit, "t == tmin is a hit");
    /* degenerate triangles never hit */
    hit = mmd_isect_tri(&pr, 1, 1, 2, 1, 1, 2, 1, 1, 2, 0, INFINITY, &t, &u, &v);
    CHECK(!hit, "point triangle");
    hit = mmd_isect_tri(&pr, 0, 0, 2, 1, 1, 2, 2, 2, 2, 0, INFINITY, &t, &u, &v);
    CHECK(!hit, "collinear triangle through the ray");
    /* oblique ray: P from (u, v) matches o + t d */
    mmd_isect_ray_init(&pr, -1.0f, 0.3f, 0.7f, 1.1f, 0.2f, 0.35f);
    const float w0[3] = {0.5f, -1, -1}, w1[3] = {0.6f, 3, -1}, w2[3] = {0.4f, 0, 4};
    hit = mmd_isect_tri(&pr, w0[0], w0[1], w0[2], w1[0], w1[1], w1[2], w2[0], w2[1], w2[2], 0,
                        INFINITY, &t, &u, &v);
    CHECK(hit, "oblique ray hits");
    const float o[3] = {-1.0f, 0.3f, 0.7f}, d[3] = {1.1f, 0.2f, 0.35f};
    for (int k = 0; k < 3; k++) {
        double p = (1.0 - u - v) * w0[k] + u * w1[k] + v * w2[k];
        CHECK_NEAR(p, o[k] + t * d[k], 1e-5, "barycentric point vs ray point");
    }
    /* tie rule */
    CHECK(mmd_isect_better(1.0f, 5, 2.0f, 1), "nearer wins");
    CHECK(mmd_isect_better(1.0f, 3, 1.0f, 4), "equal t: smaller prim wins");
    CHECK(!mmd_isect_better(1.0f, 4, 1.0f, 3), "equal t: larger prim loses");
    CHECK(mmd_isect_better(1.0f, 7, 1.0f, 0xffffffffu), "equal t, no hit yet: wins");

    /* boxes */
    float tn;
    mmd_isect_ray_init(&pr, -1, 0.5f, 0.5f, 1, 0, 0);
    CHECK(mmd_isect_box(&pr, 0, 0, 0, 1, 1, 1, 0, INFINITY, &tn) && tn <= 1.0f && tn > 0.99f,
          "box hit, t_near %g", tn);
    CHECK(!mmd_isect_box(&pr, 0, 0, 0, 1, 1, 1, 0, 0.5f, &tn), "box beyond tmax");
    CHECK(!mmd_isect_box(&pr, INFINITY, INFINITY, INFINITY, -INFINITY, -INFINITY, -INFINITY, 0,
                         INFINITY, &tn),
          "inverted (empty-slot) box never hits");
    /* ray lying in the box's face planes, parallel to them (0 * inf would be NaN) */
    mmd_isect_ray_init(&pr, -1, 0, 1, 1, 0, 0);
    CHECK(mmd_isect_box(&pr, 0, 0, 0, 1, 1, 1, 0, INFINITY, &tn), "ray along a box edge hits");
    mmd_isect_ray_init(&pr, -1, 0, 1, 1, -0.0f, 0);
    CHECK(mmd_isect_box(&pr, 0, 0, 0, 1, 1, 1, 0, INFINITY, &tn), "ray along a box edge, -0 direction");
    mmd_isect_ray_init(&pr, -1, 1.5f, 0.5f, 1, 0, 0);
    CHECK(!mmd_isect_box(&pr, 0, 0, 0, 1, 1, 1, 0, INFINITY, &tn), "parallel ray outside the slab");
    /* flat box (axis-aligned triangle) */
    mmd_isect_ray_init(&pr, 0.5f, 0.5f, -3, 0, 0, 1);
    CHECK(mmd_isect_box(&pr, 0, 0, 0, 1, 1, 0, 0, INFINITY, &tn), "flat box hit");
    CHECK(!mmd_isect_box(&pr, 0, 0, 0, 1, 1, 0, 0, 2.5f, &tn), "flat box beyond tmax");
}

static void test_errors(void)
{
    mmd_bvh *b = (mmd_bvh *)1;
    float v[9] = {0, 0, 0, 1, 0, 0, 0, 1, 0};
    uint32_t ix[6] = {0, 1, 2, 2, 1, 0};
    CHECK(mmd_bvh_build(v, ix, 0, NULL, &b) == MMD_ERR_INVALID && b == NULL, "0 triangles is invalid");
    CHECK(mmd_bvh_build(v, ix, MMD_BVH_MAX_TRIS + 1, NULL, &b) != MMD_OK && b == NULL,
          "too many triangles");
    mmd_bvh_options o = {1, MMD_LEAF_MAX_TRIS + 1, MMD_BVH_FAST};
    CHECK(mmd_bvh_build(v, ix, 1, &o, &b) == MMD_ERR_INVALID, "max_leaf_tris out of range");
    mmd_bvh_options oq = {1, 0, MMD_BVH_SAH + 1};
    CHECK(mmd_bvh_build(v, ix, 2, &oq, &b) == MMD_ERR_INVALID && b == NULL, "unknown quality");
    float vn[9] = {0, 0, 0, 1, NAN, 0, 0, 1, 0};
    uint32_t ixn[6] = {0, 2, 0, 0, 1, 2};
    mmd_status st = mmd_bvh_build(vn, ixn, 2, NULL, &b);
    CHECK(st == MMD_ERR_INVALID && strstr(mmd_last_error(), "triangle 1"), "NaN vertex: %s",
          mmd_last_error());
    vn[4] = INFINITY;
    st = mmd_bvh_build(vn, ixn, 2, NULL, &b);
    CHECK(st == MMD_ERR_INVALID && strstr(mmd_last_error(), "triangle 1"), "inf vertex: %s",
          mmd_last_error());
    mmd_bvh_destroy(NULL);
}

static void test_small(void)
{
    const uint32_t sizes[] = {1, 2, 3, 4, 5, 7, 8, 9, 33, 1000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int leaf = 1; leaf <= 16; leaf *= 4) {
            mesh m;
            make_soup(&m, sizes[s], 0.05f, 100 + s);
            mmd_bvh *b = build(&m, 0, leaf);
            if (b) {
                if (sizes[s] == 1) CHECK(b->n_nodes == 1 && b->nodes[0].child[0] == ~0 && b->nodes[0].child[1] == 0,
                                         "one triangle: one node with one leaf");
                mmd_ray rays[4000];
                make_rays(&m, rays, 2000, 5 + s, 0);
                make_rays(&m, rays + 2000, 2000, 6 + s, 1);
                compare("small soup", &m, b, rays, 4000, sizes[s] >= 1000 ? 100 : 1);
            }
            mmd_bvh_destroy(b);
            mesh_free(&m);
        }
}

/* degenerate, collinear, duplicated (same vertices, and same indices) triangles */
static void test_degenerate(void)
{
    mesh m;
    make_soup(&m, 3000, 0.03f, 11);
    mmd_rng r;
    mmd_rng_seed(&r, 12, 1);
    for (uint32_t i = 0; i < m.n; i++) {
        uint32_t *ix = &m.ix[3 * i];
        float *p = &m.v[3 * ix[0]], *q = &m.v[3 * ix[1]], *s = &m.v[3 * ix[2]];
        switch (i % 6) {
        case 1: /* all one point */
            memcpy(q, p, 12);
            memcpy(s, p, 12);
            break;
        case 2: /* collinear */
            for (int k = 0; k < 3; k++) s[k] = p[k] + 2.0f * (q[k] - p[k]);
            break;
        case 3: /* same indices as an earlier triangle */
            memcpy(ix, &m.ix[3 * (mmd_rng_u32(&r) % i)], 12);
            break;
        case 4: { /* same vertex values as an earlier triangle, own vertices */
            const uint32_t *o = &m.ix[3 * (mmd_rng_u32(&r) % i)];
            memcpy(p, &m.v[3 * o[0]], 12);
            memcpy(q, &m.v[3 * o[1]], 12);
            memcpy(s, &m.v[3 * o[2]], 12);
            break;
        }
        case 5: /* two coincident vertices */
            memcpy(q, s, 12);
            break;
        default:
            break;
        }
    }
    mmd_bvh *b = build(&m, 0, 0);
    if (b) {
        static mmd_ray rays[30000];
        make_rays(&m, rays, RAYS(20000), 21, 0);
        make_rays(&m, rays + RAYS(20000), RAYS(10000), 22, 1);
        compare("degenerate + duplicate soup", &m, b, rays, RAYS(30000), RAYS(700));
    }
    mmd_bvh_destroy(b);
    mesh_free(&m);
}

/* Every triangle the same (all keys equal but for the index bits) and a few far-flung
 * ones that stretch the centroid box over 30 orders of magnitude. */
static void test_identical(void)
{
    mesh m;
    uint32_t n = 3000;
    mesh_alloc(&m, n, 3);
    const float v[9] = {0, 0, 0, 1, 0, 0, 0, 1, 0};
    const float far[6] = {1e30f, 1e30f, 1e30f, -1e30f, -1e30f, -1e30f};
    memcpy(m.v, v, sizeof v);
    for (uint32_t i = 0; i < n; i++)
        for (int q = 0; q < 3; q++) m.ix[3 * i + q] = (uint32_t)q;
    mmd_bvh *b = build(&m, 0, 0);
    if (b) {
        mmd_ray r = {0.25f, 0.25f, 1.0f, 0.0f, 0.0f, 0.0f, -1.0f, INFINITY};
        mmd_hit h = mmd_bvh_closest_ref(b, &r);
        CHECK(h.prim == 0 && h.t == 1.0f, "3000 identical triangles: prim %d t %g (expected 0, 1)", h.prim, h.t);
        CHECK(mmd_bvh_any_ref(b, &r), "identical triangles: any hit");
        r.tmax = 0.5f;
        CHECK(!mmd_bvh_any_ref(b, &r) && mmd_bvh_closest_ref(b, &r).prim == -1, "identical triangles: beyond tmax");
    }
    mmd_bvh_destroy(b);
    /* now move the last two triangles' vertices far apart */
    mesh_free(&m);
    mesh_alloc(&m, n, 5);
    memcpy(m.v, v, sizeof v);
    memcpy(m.v + 9, far, sizeof far);
    for (uint32_t i = 0; i < n; i++)
        for (int q = 0; q < 3; q++) m.ix[3 * i + q] = (uint32_t)q;
    m.ix[3 * (n - 1) + 1] = 3; /* a sliver reaching 1e30 */
    m.ix[3 * (n - 2) + 2] = 4; /* and one reaching -1e30 */
    b = build(&m, 0, 0);
    if (b) {
        mmd_ray r = {0.25f, 0.25f, 1.0f, 0.0f, 0.0f, 0.0f, -1.0f, INFINITY};
        mmd_hit h = mmd_bvh_closest_ref(b, &r), e = mmd_brute_closest(m.v, m.ix, m.n, &r);
        CHECK(h.prim == e.prim && h.t == e.t, "huge extent: bvh prim %d, brute prim %d", h.prim, e.prim);
    }
    mmd_bvh_destroy(b);
    mesh_free(&m);
}

static int same_bvh(const mmd_bvh *a, const mmd_bvh *b)
{
    return a && b && a->n_nodes == b->n_nodes && a->n_tris == b->n_tris && a->depth == b->depth &&
           !memcmp(a->nodes, b->nodes, (size_t)a->n_nodes * sizeof *a->nodes) &&
           !memcmp(a->tris, b->tris, (size_t)a->n_tris * sizeof *a->tris) &&
           !memcmp(a->bbox_min, b->bbox_min, sizeof a->bbox_min) &&
           !memcmp(a->bbox_max, b->bbox_max, sizeof a->bbox_max);
}

#define NROOM RAYS(5000)

static void test_room(void)
{
    mesh m;
    make_room(&m, 60, 3); /* 43200 + 21600 triangles */
    mmd_bvh *b1 = build(&m, 1, 0), *b2 = build(&m, 2, 0), *b3 = build(&m, 3, 0);
    CHECK(same_bvh(b1, b2) && same_bvh(b1, b3), "room: threads 1, 2, 3 give identical BVHs");
    if (b2) {
        /* rays from inside the room and from its walls */
        static mmd_ray rays[NROOM];
        mmd_rng r;
        mmd_rng_seed(&r, 31, 2);
        for (int i = 0; i < NROOM; i++) {
            if (i % 2) {
                surface_ray(&m, mmd_rng_u32(&r) % m.n, &r, &rays[i]);
            } else {
                float d[3];
                random_dir(&r, d);
                rays[i] = (mmd_ray){urand(&r, 0.1f, 9.9f), urand(&r, 0.1f, 3.9f), urand(&r, 0.1f, 2.9f),
                                    0.0f, d[0], d[1], d[2], INFINITY};
                if (i % 4 == 0) { /* aim exactly at a grid vertex: shared edges and corners */
                    const float *p = &m.v[3 * (mmd_rng_u32(&r) % m.nv)];
                    rays[i].dx = p[0] - rays[i].ox;
                    rays[i].dy = p[1] - rays[i].oy;
                    rays[i].dz = p[2] - rays[i].oz;
                }
            }
            if (i % 10 == 9) rays[i].tmax = urand(&r, 0.0f, 3.0f);
        }
        compare("room", &m, b2, rays, NROOM, NROOM / 2);
        /* watertight: from inside a closed room every ray hits something */
        uint32_t miss = 0;
        for (int i = 0; i < NROOM; i += 2)
            if (isinf(rays[i].tmax) && mmd_bvh_closest_ref(b2, &rays[i]).prim < 0) miss++;
        CHECK(miss == 0, "room: %u rays from inside escaped (not watertight)", miss);
    }
    mmd_bvh_destroy(b1);
    mmd_bvh_destroy(b2);
    mmd_bvh_destroy(b3);
    mesh_free(&m);
}

/* Centroids on a very coarse set of positions: all 1000 triangles of a cluster share one
 * centroid (tiny rotated triangles), so every Morton code repeats thousands of times. */
static void test_same_codes(void)
{
    mesh m;
    uint32_t n = 20000;
    mesh_alloc(&m, n, 3 * n);
    mmd_rng r;
    mmd_rng_seed(&r, 41, 1);
    for (uint32_t i = 0; i < n; i++) {
        float c[3] = {(float)(i % 20 / 4), (float)(i % 4), 0.5f * (float)(i % 20 % 3)};
        float a = urand(&r, 0, 6.2831853f), s = 0.2f;
        float ca = cosf(a), sa = sinf(a);
        for (int q = 0; q < 3; q++) {
            float ang = 2.0943951f * (float)q;
            float x = s * cosf(ang), y = s * sinf(ang);
            float *p = &m.v[9 * i + 3 * q];
            p[0] = c[0] + ca * x - sa * y;
            p[1] = c[1] + sa * x + ca * y;
            p[2] = c[2] + 0.1f * y;
            m.ix[3 * i + q] = 3 * i + q;
        }
    }
    mmd_bvh *b1 = build(&m, 1, 0), *b2 = build(&m, 2, 0);
    CHECK(same_bvh(b1, b2), "same-code clusters: threads 1 and 2 give identical BVHs");
    if (b2) {
        static mmd_ray rays[6000];
        mmd_rng_seed(&r, 42, 1);
        for (int i = 0; i < 6000; i++) {
            float d[3];
            random_dir(&r, d);
            rays[i] = (mmd_ray){urand(&r, -1, 5), urand(&r, -1, 4), urand(&r, -1, 2), 0, d[0], d[1], d[2],
                                i % 3 ? INFINITY : 2.0f};
        }
        compare("same-code clusters", &m, b2, rays, RAYS(6000), RAYS(100));
    }
    mmd_bvh_destroy(b1);
    mmd_bvh_destroy(b2);
    mesh_free(&m);
}

/* Triangles at exponentially shrinking offsets make the binary LBVH a long chain (one
 * triangle split off per level); the wide tree must still respect the depth limit. */
static void test_chain(void)
{
    mesh m;
    uint32_t n = 400;
    mesh_alloc(&m, n, 3 * n);
    for (uint32_t i = 0; i < n; i++) {
        float s = ldexpf(1.0f, -(int)(i % 100)), z = (float)(i / 100);
        float c[3] = {s, s * 0.5f, z};
        const float off[3][3] = {{0, 0, 0}, {1e-3f, 0, 0}, {0, 1e-3f, 0}};
        for (int q = 0; q < 3; q++) {
            for (int k = 0; k < 3; k++) m.v[9 * i + 3 * q + k] = c[k] + off[q][k] * s;
            m.ix[3 * i + q] = 3 * i + q;
        }
    }
    for (int leaf = 1; leaf <= 4; leaf += 3) {
        mmd_bvh *b = build(&m, 0, leaf);
        mmd_bvh_destroy(b);
    }
    mesh_free(&m);
}

static void test_big(void)
{
    mesh m;
    make_soup(&m, 100000, 0.01f, 51);
    mmd_bvh *b1 = build(&m, 1, 0), *b2 = build(&m, 2, 0);
    CHECK(same_bvh(b1, b2), "100k soup: threads 1 and 2 give identical BVHs");
    if (b1) {
        uint64_t leaves = 0, lt = 0;
        for (uint32_t i = 0; i < b1->n_nodes; i++)
            for (int j = 0; j < 8; j++)
                if (b1->nodes[i].child[j] < 0) {
                    leaves++;
                    lt += (~(uint32_t)b1->nodes[i].child[j] & MMD_LEAF_COUNT_MASK) + 1;
                }
        CHECK(lt == m.n, "leaf triangle count %llu", (unsigned long long)lt);
        printf("100k soup: %u nodes, %llu leaves (%.2f tris/leaf), depth %d, build %.1f ms\n",
               b1->n_nodes, (unsigned long long)leaves, (double)lt / (double)leaves, b1->depth,
               1e3 * b1->build_seconds);
    }
    mmd_bvh_destroy(b1);
    mmd_bvh_destroy(b2);
    mesh_free(&m);
}

/* validate() must catch each kind of damage */
static void test_corruption(void)
{
    mesh m;
    make_soup(&m, 5000, 0.02f, 61);
    mmd_bvh *b = build(&m, 0, 0);
    if (!b) {
        mesh_free(&m);
        return;
    }
    mmd_bvh8_node *saved = malloc((size_t)b->n_nodes * sizeof *saved);
    mmd_tri *saved_t = malloc((size_t)b->n_tris * sizeof *saved_t);
    memcpy(saved, b->nodes, (size_t)b->n_nodes * sizeof *saved);
    memcpy(saved_t, b->tris, (size_t)b->n_tris * sizeof *saved_t);
    int depth = b->depth;
    /* find a node with an internal child and a leaf child, and a node with an empty slot */
    int pi = -1, pj = -1, li = -1, lj = -1, ei = -1, ej = -1;
    for (uint32_t i = 0; i < b->n_nodes; i++)
        for (int j = 0; j < 8; j++) {
            int32_t c = b->nodes[i].child[j];
            if (c > 0 && pi < 0) pi = (int)i, pj = j;
            if (c < 0 && li < 0) li = (int)i, lj = j;
            if (c == 0 && ei < 0) ei = (int)i, ej = j;
        }
    CHECK(pi >= 0 && li >= 0 && ei >= 0, "corruption test: slots found");
    if (pi < 0 || li < 0 || ei < 0) goto out;
#define RESTORE()                                                                          \
    do {                                                                                   \
        memcpy(b->nodes, saved, (size_t)b->n_nodes * sizeof *saved);                      \
        memcpy(b->tris, saved_t, (size_t)b->n_tris * sizeof *saved_t);                     \
        b->depth = depth;                                                                  \
    } while (0)
#define EXPECT_BAD(what)                                                                   \
    do {                                                                                   \
        CHECK(mmd_bvh_validate(b) != MMD_OK, "validate missed: %s", what);                 \
        RESTORE();                                                                         \
        CHECK(mmd_bvh_validate(b) == MMD_OK, "restored after: %s", what);                  \
    } while (0)
    mmd_bvh8_node *P = &b->nodes[pi], *Lf = &b->nodes[li], *E = &b->nodes[ei];
    /* internal child slot box shrunk: the child's boxes stick out */
    P->hi_x[pj] = P->lo_x[pj] + 0.5f * (P->hi_x[pj] - P->lo_x[pj]);
    EXPECT_BAD("shrunk internal child box");
    /* leaf box shrunk: its triangles stick out */
    Lf->lo_y[lj] = Lf->hi_y[lj] - 0.25f * (Lf->hi_y[lj] - Lf->lo_y[lj]) + 1e-7f;
    EXPECT_BAD("shrunk leaf box");
    /* the same leaf twice: copy it into an empty slot */
    E->child[ej] = Lf->child[lj];
    E->lo_x[ej] = Lf->lo_x[lj], E->lo_y[ej] = Lf->lo_y[lj], E->lo_z[ej] = Lf->lo_z[lj];
    E->hi_x[ej] = Lf->hi_x[lj], E->hi_y[ej] = Lf->hi_y[lj], E->hi_z[ej] = Lf->hi_z[lj];
    EXPECT_BAD("duplicated leaf");
    /* a leaf dropped */
    Lf->child[lj] = 0;
    Lf->lo_x[lj] = Lf->lo_y[lj] = Lf->lo_z[lj] = INFINITY;
    Lf->hi_x[lj] = Lf->hi_y[lj] = Lf->hi_z[lj] = -INFINITY;
    EXPECT_BAD("dropped leaf");
    /* an internal node referenced twice (and so a cycle-free count mismatch) */
    E->child[ej] = P->child[pj];
    E->lo_x[ej] = P->lo_x[pj], E->lo_y[ej] = P->lo_y[pj], E->lo_z[ej] = P->lo_z[pj];
    E->hi_x[ej] = P->hi_x[pj], E->hi_y[ej] = P->hi_y[pj], E->hi_z[ej] = P->hi_z[pj];
    EXPECT_BAD("node referenced twice");
    /* child index out of range */
    P->child[pj] = (int32_t)b->n_nodes;
    EXPECT_BAD("child index out of range");
    /* cycle: a child pointing back at the root-side node */
    P->child[pj] = pi;
    EXPECT_BAD("cycle");
    /* empty slot with a non-inverted box */
    E->lo_x[ej] = 0;
    EXPECT_BAD("empty slot with a real box");
    /* repeated prim */
    b->tris[1].prim = b->tris[0].prim;
    EXPECT_BAD("repeated prim");
    /* a vertex moved outside its leaf */
    b->tris[b->n_tris / 2].v1[2] += 10.0f;
    EXPECT_BAD("vertex outside its leaf box");
    /* NaN box */
    P->lo_z[pj] = NAN;
    EXPECT_BAD("NaN box");
    /* recorded depth wrong */
    b->depth = depth + 1;
    EXPECT_BAD("wrong depth");
#undef EXPECT_BAD
#undef RESTORE
out:
    free(saved);
    free(saved_t);
    mmd_bvh_destroy(b);
    mesh_free(&m);
}

/* A hand-made tree deeper than the stack bound: a chain of 12 nodes, each with 7 leaves
 * and the next node, every box the whole scene, internal child in the last slot (popped
 * first). validate() must reject it and the traversals must still be exact (they fall
 * back to testing every triangle when the stack would overflow). */
static void test_stack_overflow(void)
{
    enum { D = 12 };
    uint32_t nt = (D - 1) * 7 + 8;
    mmd_bvh b = {0};
    mesh m;
    make_soup(&m, nt, 0.2f, 91);
    b.n_nodes = D;
    b.n_tris = nt;
    b.depth = D;
    b.nodes = calloc(D, sizeof *b.nodes);
    b.tris = calloc(nt, sizeof *b.tris);
    for (int k = 0; k < 3; k++) {
        b.bbox_min[k] = -1.0f;
        b.bbox_max[k] = 2.0f;
    }
    uint32_t t = 0;
    for (uint32_t i = 0; i < D; i++)
        for (int j = 0; j < 8; j++) {
            mmd_bvh8_node *nd = &b.nodes[i];
            nd->lo_x[j] = nd->lo_y[j] = nd->lo_z[j] = -1.0f;
            nd->hi_x[j] = nd->hi_y[j] = nd->hi_z[j] = 2.0f;
            if (j == 7 && i + 1 < D) {
                nd->child[j] = (int32_t)(i + 1);
            } else {
                nd->child[j] = ~(int32_t)(t << MMD_LEAF_COUNT_BITS);
                memcpy(b.tris[t].v0, &m.v[3 * m.ix[3 * t]], 12);
                memcpy(b.tris[t].v1, &m.v[3 * m.ix[3 * t + 1]], 12);
                memcpy(b.tris[t].v2, &m.v[3 * m.ix[3 * t + 2]], 12);
                b.tris[t].prim = t;
                t++;
            }
        }
    CHECK(t == nt, "chain tree: %u triangles placed", t);
    CHECK(mmd_bvh_validate(&b) != MMD_OK, "validate accepts a tree deeper than the stack bound");
    static mmd_ray rays[2000];
    make_rays(&m, rays, 1000, 92, 0);
    make_rays(&m, rays + 1000, 1000, 93, 1);
    compare("stack overflow fallback", &m, &b, rays, 2000, 100);
    free(b.nodes);
    free(b.tris);
    mesh_free(&m);
}

/* The depth-bounded fallback, forced with the debug knob. 2000 triangles with leaves of
 * 4 fit in 3 levels (4 * 8^3 >= 2000); the surface-area tree is deeper. Limit 3 forces
 * even splits from the root. On 40k triangles limit 5 keeps the top surface-area levels
 * and splits evenly below. */
static void test_depth_fallback(void)
{
    mesh m;
    make_soup(&m, 2000, 0.02f, 71);
    mmd_bvh *b0 = build(&m, 0, 0);
    for (int lim = 3; lim <= 3 && b0; lim++) {
        char s[8];
        snprintf(s, sizeof s, "%d", lim);
        setenv("MMDIFF_BVH_MAX_DEPTH", s, 1);
        mmd_bvh *b1 = build(&m, 1, 0);
        unsetenv("MMDIFF_BVH_MAX_DEPTH");
        if (b1) {
            CHECK(b0->depth > lim, "natural depth %d must exceed the forced limit %d for this test to mean anything",
                  b0->depth, lim);
            CHECK(b1->depth <= lim, "forced depth limit %d: depth %d", lim, b1->depth);
            static mmd_ray rays[20000];
            make_rays(&m, rays, RAYS(10000), 72, 0);
            make_rays(&m, rays + RAYS(10000), RAYS(10000), 73, 1);
            compare("depth fallback", &m, b1, rays, RAYS(20000), RAYS(500));
        }
        mmd_bvh_destroy(b1);
    }
    /* the same on a big enough input for two threads to take part */
    mesh big;
    make_soup(&big, 40000, 0.01f, 74);
    mmd_bvh *c0 = build(&big, 0, 0);
    CHECK(c0 && c0->depth > 5, "40k: natural depth %d must exceed 5", c0 ? c0->depth : -1);
    mmd_bvh_destroy(c0);
    setenv("MMDIFF_BVH_MAX_DEPTH", "5", 1);
    mmd_bvh *c1 = build(&big, 1, 0), *c2 = build(&big, 2, 0);
    unsetenv("MMDIFF_BVH_MAX_DEPTH");
    CHECK(same_bvh(c1, c2), "fallback: threads 1 and 2 give identical BVHs");
    CHECK(c1 && c1->depth <= 5, "forced depth limit 5 on 40k triangles: %d", c1 ? c1->depth : -1);
    mmd_bvh_destroy(c1);
    mmd_bvh_destroy(c2);
    mesh_free(&big);
    mmd_bvh_destroy(b0);
    mesh_free(&m);
}

/* The builder keeps its scratch memory between builds and may run in several threads
 * at once: builds after builds of other sizes, and two builds at the same time, give
 * the BVHs of the first builds. */
typedef struct build_job {
    const mesh *m;
    int threads;
    mmd_bvh *b;
} build_job;

static void *build_main(void *p)
{
    build_job *j = p;
    mmd_bvh_options o = {j->threads, 0, g_quality};
    if (mmd_bvh_build(j->m->v, j->m->ix, j->m->n, &o, &j->b) != MMD_OK) j->b = NULL;
    return NULL;
}

static void test_reuse(void)
{
    mesh big, small;
    make_soup(&big, 40000, 0.02f, 91);
    make_room(&small, 12, 1);
    mmd_bvh *b0 = build(&big, 2, 0), *s0 = build(&small, 1, 0);
    mmd_bvh *s1 = build(&small, 1, 0), *b1 = build(&big, 3, 0);
    CHECK(same_bvh(b0, b1) && same_bvh(s0, s1), "builds after builds of other sizes are identical");
    build_job j[3] = {{&big, 2, NULL}, {&small, 1, NULL}, {&big, 1, NULL}};
    pthread_t th[3];
    int started[3];
    for (int k = 0; k < 3; k++) {
        started[k] = pthread_create(&th[k], NULL, build_main, &j[k]) == 0;
        if (!started[k]) build_main(&j[k]);
    }
    for (int k = 0; k < 3; k++)
        if (started[k]) pthread_join(th[k], NULL);
    CHECK(same_bvh(b0, j[0].b) && same_bvh(s0, j[1].b) && same_bvh(b0, j[2].b),
          "concurrent builds are identical");
    for (int k = 0; k < 3; k++) mmd_bvh_destroy(j[k].b);
    mmd_bvh_destroy(b0);
    mmd_bvh_destroy(b1);
    mmd_bvh_destroy(s0);
    mmd_bvh_destroy(s1);
    mesh_free(&big);
    mesh_free(&small);
}

/* Box unions keep the first of equal values, and +0 == -0: a flat soup whose z is +0
 * and -0 in turn must give the same boxes (bit for bit) for any thread count. */
static void test_signed_zero(void)
{
    mesh m;
    make_soup(&m, 40000, 0.02f, 93);
    for (uint32_t i = 0; i < 3 * m.n; i++) m.v[3 * i + 2] = (i / 3 + i) % 2 ? -0.0f : 0.0f;
    mmd_bvh *b1 = build(&m, 1, 0), *b2 = build(&m, 2, 0), *b4 = build(&m, 4, 0);
    CHECK(same_bvh(b1, b2) && same_bvh(b1, b4), "signed zeros: threads 1, 2, 4 give identical BVHs");
    mmd_bvh_destroy(b1);
    mmd_bvh_destroy(b2);
    mmd_bvh_destroy(b4);
    mesh_free(&m);
}

/* The main comparison: 20k-triangle soup, 100k closest-hit rays + 50k any-hit rays. */
static void test_vs_brute(void)
{
    mesh m;
    make_soup(&m, 20000, 0.03f, 81);
    mmd_bvh *b = build(&m, 0, 0);
    if (b) {
        /* the SAH pass checks another tree with the same traversal: a quarter of the rays */
        uint32_t n = (SANITIZED ? 20000 : 100000) / (g_quality == MMD_BVH_SAH ? 4 : 1);
        mmd_ray *rays = malloc(sizeof *rays * n);
        make_rays(&m, rays, n, 82, 0);
        compare("20k soup closest", &m, b, rays, n, n / 10);
        make_rays(&m, rays, n / 4, 83, 1);
        compare("20k soup any", &m, b, rays, n / 4, n / 80);
        free(rays);
    }
    mmd_bvh_destroy(b);
    mesh_free(&m);
}

/* Triangles at geometrically growing distances (1.5^i): the cheapest SAH splits peel
 * off the few farthest triangles, so the binary SAH tree is a deep chain. Rays come
 * straight down onto triangles, and in random directions. Then the SAH builder's
 * fallback for ranges too deep in the binary tree (halving them where they lie), forced
 * with its debug knob from depth 1 on, so it also runs on the ranges split in parallel. */
static void test_sah_deep(void)
{
    mesh m;
    uint32_t n = 220;
    mesh_alloc(&m, n, 3 * n);
    for (uint32_t i = 0; i < n; i++) {
        float c = powf(1.5f, (float)(i % 200)), s = 1e-3f * c, y = (float)(i / 200);
        const float p[3][3] = {{c, y * c, 0}, {c + s, y * c, 0}, {c, y * c + s, 0}};
        for (int q = 0; q < 3; q++) {
            memcpy(&m.v[9 * i + 3 * q], p[q], sizeof p[q]);
            m.ix[3 * i + q] = 3 * i + q;
        }
    }
    mmd_bvh *b1 = build(&m, 1, 0), *b2 = build(&m, 2, 0);
    CHECK(same_bvh(b1, b2), "geometric chain: threads 1 and 2 give identical BVHs");
    if (b1) {
        static mmd_ray rays[2000];
        mmd_rng r;
        mmd_rng_seed(&r, 77, 1);
        for (int i = 0; i < 2000; i++) {
            const float *p = &m.v[9 * (mmd_rng_u32(&r) % n)];
            float d[3];
            random_dir(&r, d);
            if (i % 2) d[0] = d[1] = 0.0f, d[2] = -1.0f;
            float h = i % 2 ? 2e-4f * p[0] : 0.0f;
            rays[i] = (mmd_ray){p[0] + h, p[1] + h, p[2] + 2.0f * h + (i % 2 ? 0.0f : 1.0f), 0.0f, d[0], d[1], d[2],
                                i % 4 == 3 ? 1.0f : INFINITY};
        }
        compare("geometric chain", &m, b1, rays, 2000, 400);
    }
    mmd_bvh_destroy(b1);
    mmd_bvh_destroy(b2);
    mesh_free(&m);

    mesh big;
    make_soup(&big, 20000, 0.01f, 78);
    for (int lim = 1; lim <= 12; lim += 11) {
        char e[16];
        snprintf(e, sizeof e, "%d", lim);
        setenv("MMDIFF_BVH_SAH_DEPTH", e, 1);
        mmd_bvh *c1 = build(&big, 1, 0), *c2 = build(&big, 2, 0);
        unsetenv("MMDIFF_BVH_SAH_DEPTH");
        CHECK(same_bvh(c1, c2), "SAH depth knob %d: threads 1 and 2 give identical BVHs", lim);
        if (c2) {
            static mmd_ray rays[RAYS(3000)];
            make_rays(&big, rays, RAYS(2000), 79, 0);
            make_rays(&big, rays + RAYS(2000), RAYS(1000), 80, 1);
            compare("SAH halving fallback", &big, c2, rays, RAYS(3000), RAYS(200));
        }
        mmd_bvh_destroy(c1);
        mmd_bvh_destroy(c2);
    }
    mesh_free(&big);
}

/* ------------------------------------------------------------------------------ */
/* the SAH build on the shared scenes                                             */

static const char *g_scenes[] = {
    "scenes/sionna/box/box.xml",
    "scenes/sionna/double_reflector/double_reflector.xml",
    "scenes/sionna/etoile/etoile.xml",
    "scenes/sionna/floor_wall/floor_wall.xml",
    "scenes/sionna/munich/munich.xml",
    "scenes/sionna/simple_reflector/simple_reflector.xml",
    "scenes/sionna/simple_street_canyon/simple_street_canyon.xml",
    "scenes/sionna/triple_reflector/triple_reflector.xml",
    "scenes/indoor/newrf_bedroom/scene.yaml",
    "scenes/indoor/nist_box_lecture_room/scene.yaml",
    "scenes/indoor/nist_conference_room/scene.yaml",
    "scenes/indoor/nist_data_center/scene.yaml",
    "scenes/indoor/nist_enterprise_cubicle/scene.yaml",
    "scenes/indoor/nist_hotel_lobby/scene.yaml",
    "scenes/indoor/nist_l_room/scene.yaml",
    "scenes/indoor/nist_lecture_room/scene.yaml",
    "scenes/indoor/nist_living_room/scene.yaml",
};

/* A scene's triangles as a mesh (borrowed arrays: not to be freed). */
static mesh scene_mesh(const mmd_scene *s)
{
    mesh m = {s->vertices, s->indices, s->n_triangles, s->n_vertices};
    return m;
}

/* Rays for a scene: half from random points of its box grown by a tenth of its diagonal,
 * in random directions, half leaving random points on triangles; every fourth has a
 * finite tmax (any hit). */
static void scene_rays(const mmd_scene *s, const mesh *m, mmd_ray *rays, uint32_t n, uint64_t seed)
{
    mmd_rng r;
    mmd_rng_seed(&r, seed, 5);
    float diag = 0.0f;
    for (int k = 0; k < 3; k++) diag += (s->bbox_max[k] - s->bbox_min[k]) * (s->bbox_max[k] - s->bbox_min[k]);
    diag = sqrtf(diag);
    for (uint32_t i = 0; i < n; i++) {
        if (i % 2 == 0) {
            float o[3], d[3];
            for (int k = 0; k < 3; k++) o[k] = urand(&r, s->bbox_min[k] - 0.1f * diag, s->bbox_max[k] + 0.1f * diag);
            random_dir(&r, d);
            rays[i] = (mmd_ray){o[0], o[1], o[2], 0.0f, d[0], d[1], d[2], INFINITY};
        } else {
            surface_ray(m, mmd_rng_u32(&r) % m->n, &r, &rays[i]);
        }
        if (i % 4 == 3) rays[i].tmax = urand(&r, 0.0f, 0.5f * diag);
    }
}

static mmd_scene *load_scene(const char *rel)
{
    mmd_scene *s = NULL;
    mmd_status st = mmd_scene_load(mmd_test_path(rel), &s);
    CHECK(st == MMD_OK, "load %s: %s", rel, st ? mmd_last_error() : "");
    return st == MMD_OK ? s : NULL;
}

/* Every shared scene: the SAH build validates (build() checks), is the same for 1, 2
 * and 3 threads, and its traversals equal brute force. */
static void test_sah_scenes(void)
{
    g_quality = MMD_BVH_SAH;
    for (size_t i = 0; i < sizeof g_scenes / sizeof g_scenes[0]; i++) {
        mmd_scene *s = load_scene(g_scenes[i]);
        if (!s) continue;
        mesh m = scene_mesh(s);
        mmd_bvh *b1 = build(&m, 1, 0), *b2 = build(&m, 2, 0), *b3 = build(&m, 3, 0);
        CHECK(same_bvh(b1, b2) && same_bvh(b1, b3), "%s: SAH builds with threads 1, 2, 3 are identical", g_scenes[i]);
        if (b2) {
            static mmd_ray rays[4000];
            uint32_t n = RAYS(4000);
            scene_rays(s, &m, rays, n, 300 + i);
            char what[160];
            snprintf(what, sizeof what, "SAH %s", g_scenes[i]);
            compare(what, &m, b2, rays, n, m.n >= 100 ? n / 20 : 1);
        }
        mmd_bvh_destroy(b1);
        mmd_bvh_destroy(b2);
        mmd_bvh_destroy(b3);
        mmd_scene_destroy(s);
    }
    g_quality = MMD_BVH_FAST;
}

/* Expected traversal cost of a wide BVH for random rays (the surface area heuristic):
 * per internal node slot its box's area, per leaf slot its area times its triangle
 * count, relative to the scene box (node and triangle tests weighted 1). */
static double sah_cost(const mmd_bvh *b)
{
    double dx = (double)b->bbox_max[0] - b->bbox_min[0], dy = (double)b->bbox_max[1] - b->bbox_min[1],
           dz = (double)b->bbox_max[2] - b->bbox_min[2];
    double root = dx * dy + dy * dz + dz * dx, cost = 1.0;
    for (uint32_t i = 0; i < b->n_nodes; i++) {
        const mmd_bvh8_node *nd = &b->nodes[i];
        for (int j = 0; j < 8; j++) {
            int32_t c = nd->child[j];
            if (c == 0) continue;
            double ex = (double)nd->hi_x[j] - nd->lo_x[j], ey = (double)nd->hi_y[j] - nd->lo_y[j],
                   ez = (double)nd->hi_z[j] - nd->lo_z[j];
            double a = (ex * ey + ey * ez + ez * ex) / root;
            cost += c > 0 ? a : a * (double)((~(uint32_t)c & MMD_LEAF_COUNT_MASK) + 1);
        }
    }
    return cost;
}

/* The SAH tree is cheaper than the LBVH by the SAH's own measure on the larger indoor
 * scenes (the small ones are a handful of leaves either way). */
static void test_sah_cost(void)
{
    static const char *rooms[] = {
        "scenes/indoor/newrf_bedroom/scene.yaml",
        "scenes/indoor/nist_lecture_room/scene.yaml",
        "scenes/indoor/nist_conference_room/scene.yaml",
    };
    for (size_t i = 0; i < sizeof rooms / sizeof rooms[0]; i++) {
        mmd_scene *s = load_scene(rooms[i]);
        if (!s) continue;
        mesh m = scene_mesh(s);
        g_quality = MMD_BVH_FAST;
        mmd_bvh *fast = build(&m, 0, 0);
        g_quality = MMD_BVH_SAH;
        mmd_bvh *sah = build(&m, 0, 0);
        g_quality = MMD_BVH_FAST;
        if (fast && sah) {
            double cf = sah_cost(fast), cs = sah_cost(sah);
            printf("%s: SAH cost %.2f (LBVH %.2f, %.3fx)\n", rooms[i], cs, cf, cs / cf);
            CHECK(cs < cf, "%s: SAH tree cost %.3f not below the LBVH's %.3f", rooms[i], cs, cf);
        }
        mmd_bvh_destroy(fast);
        mmd_bvh_destroy(sah);
        mmd_scene_destroy(s);
    }
}

#define RUN(fn)                                                                        \
    do {                                                                               \
        double t_ = mmd_now();                                                         \
        fn();                                                                          \
        printf("  %-22s %6.2f s\n", #fn, mmd_now() - t_);                              \
    } while (0)

int main(void)
{
    RUN(test_isect);
    RUN(test_errors);
    RUN(test_small);
    RUN(test_degenerate);
    RUN(test_identical);
    RUN(test_same_codes);
    RUN(test_chain);
    RUN(test_room);
    RUN(test_big);
    RUN(test_corruption);
    RUN(test_depth_fallback);
    RUN(test_stack_overflow);
    RUN(test_reuse);
    RUN(test_signed_zero);
    RUN(test_vs_brute);
    /* the build tests again on SAH trees */
    g_quality = MMD_BVH_SAH;
    printf("  quality MMD_BVH_SAH:\n");
    RUN(test_small);
    RUN(test_degenerate);
    RUN(test_identical);
    RUN(test_same_codes);
    RUN(test_chain);
    RUN(test_room);
    RUN(test_big);
    RUN(test_corruption);
    RUN(test_depth_fallback);
    RUN(test_reuse);
    RUN(test_signed_zero);
    RUN(test_vs_brute);
    RUN(test_sah_deep);
    g_quality = MMD_BVH_FAST;
    RUN(test_sah_scenes);
    RUN(test_sah_cost);
    return TEST_DONE();
}
