/* The exact specular path solver (SPEC 4 "Specular baseline", docs/paths.md) on the
 * shared Sionna scenes: every path's length, directions and gain against the closed-form
 * image construction computed here (axis-aligned rectangles: mirror points, unfolded
 * distance, Fresnel of ITU metal at the angle, an s/p Jones decomposition of its own),
 * exact path counts, merging of one path found through two coplanar triangles, occlusion,
 * determinism (repeat, thread count) and invariance to the number of SBR rays, paths.csv. */
#include <complex.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "mmd_paths.h"
#include "mmd_physics.h"
#include "mmd_test.h"

#define DEG (M_PI / 180.0)
#define FREQ 28e9

static char g_dir[] = "/tmp/mmd_paths_XXXXXX";
static char g_shared[4096];
static mmd_cl *g_cl;

/* ---- a simulator from an experiment ---------------------------------------------- */

typedef struct prob {
    mmd_experiment e;
    mmd_scene *scene;
    mmd_bvh *bvh;
    mmd_sim *sim;
    mmd_path_candidates cand;
} prob;

/* scene: path; mats: extra text inside scene {...}; tx_extra: inside tx {...}; solver:
 * inside solver {...}. Candidates are shot unless `no_cand`. */
static int prob_open(prob *p, const char *scene, const char *mats, const double tx[3], const char *tx_extra,
                     const char *solver, int no_cand)
{
    memset(p, 0, sizeof *p);
    char yaml[8192], origin[600];
    snprintf(yaml, sizeof yaml,
             "scene: {file: %s, frequency_hz: %.17g%s}\n"
             "tx: {position_m: [%.17g, %.17g, %.17g], pattern: iso%s}\n"
             "rx:\n  array: {rows: 1, cols: 1, window: none, element: iso}\n  poses: [{position_m: [0, 0, 1]}]\n"
             "aoa: {azimuth_deg: [0, 0, 1], elevation_deg: [0, 0, 1]}\n"
             "solver: {mode: specular, seed: 5, %s}\n",
             scene, FREQ, mats ? mats : "", tx[0], tx[1], tx[2], tx_extra ? tx_extra : "", solver);
    snprintf(origin, sizeof origin, "%s/exp.yaml", g_dir);
    mmd_status st = mmd_experiment_load_string(yaml, origin, NULL, 0, &p->e);
    if (st == MMD_OK) st = mmd_scene_load(p->e.scene.file.path, &p->scene);
    if (st == MMD_OK) st = mmd_bvh_build(p->scene->vertices, p->scene->indices, p->scene->n_triangles, NULL, &p->bvh);
    if (st == MMD_OK) st = mmd_sim_create(g_cl, p->scene, p->bvh, &p->e, &p->sim);
    if (st == MMD_OK && !no_cand) st = mmd_paths_candidates(p->sim, &p->cand);
    if (st != MMD_OK) fprintf(stderr, "setup failed: %s\n", mmd_last_error());
    return st == MMD_OK;
}

static void prob_close(prob *p)
{
    mmd_path_candidates_free(&p->cand);
    mmd_sim_destroy(p->sim);
    mmd_bvh_destroy(p->bvh);
    mmd_scene_destroy(p->scene);
    mmd_experiment_free(&p->e);
}

static const char *sionna(const char *name)
{
    static char buf[4][4200];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, 4200, "%s/scenes/sionna/%s/%s.xml", g_shared, name, name);
    return b;
}

/* ---- the closed-form reference: reflectors are axis-aligned rectangles ------------- */

typedef struct rect {
    int axis;          /* plane x[axis] = c */
    double c;
    double lo[3], hi[3]; /* bounds on the other two axes */
    uint32_t object;
} rect;

typedef struct xpath {
    int depth;
    int walls[MMD_PATH_MAX_DEPTH];
    double v[MMD_PATH_MAX_DEPTH][3];
    double length, dep[3], arr[3];
    double gain_jones, gain_scalar;
} xpath;

static void unit(double v[3])
{
    double l = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    for (int k = 0; k < 3; k++) v[k] /= l;
}

static void cross(const double a[3], const double b[3], double o[3])
{
    o[0] = a[1] * b[2] - a[2] * b[1];
    o[1] = a[2] * b[0] - a[0] * b[2];
    o[2] = a[0] * b[1] - a[1] * b[0];
}

static double dot(const double a[3], const double b[3]) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

/* Angle between unit vectors [deg], accurate near 0. */
static double angle_deg(const double a[3], const double b[3])
{
    double c[3];
    cross(a, b, c);
    return atan2(sqrt(dot(c, c)), dot(a, b)) / DEG;
}

/* Vertical polarisation of an antenna with orientation R seen along world direction u:
 * theta-hat of u's spherical angles in the antenna frame. */
static void theta_hat(const double R[9], const double u[3], double out[3])
{
    double ul[3];
    mmd_to_local(R, u, ul);
    double th = acos(fmax(-1.0, fmin(1.0, ul[2]))), ph = atan2(ul[1], ul[0]);
    double tl[3] = {cos(th) * cos(ph), cos(th) * sin(ph), -sin(th)};
    mmd_to_world(R, tl, out);
}

/* Every specular path over the rectangles up to max_depth (no occlusion: the set-ups
 * keep every segment clear). Polarisation: s = k_in x n, p = s x k on each side; with
 * this basis a perfect conductor has r_TE = -1 and r_TM = +1, as the Fresnel formulas of
 * SPEC 3 give, so the tangential field cancels on the surface. */
static int expect_paths(const rect *w, int nw, const double tx[3], const double Rtx[9], const double rx[3],
                        const double Rrx[9], int max_depth, const mmd_material *mat, double lam, xpath *out, int cap)
{
    int n = 0;
    for (int d = 1; d <= max_depth; d++) {
        int seq[MMD_PATH_MAX_DEPTH] = {0};
        for (;;) {
            int ok = 1;
            for (int i = 1; i < d; i++)
                if (seq[i] == seq[i - 1]) ok = 0;
            double img[MMD_PATH_MAX_DEPTH + 1][3], P[MMD_PATH_MAX_DEPTH][3];
            memcpy(img[0], tx, sizeof img[0]);
            for (int i = 0; ok && i < d; i++) {
                memcpy(img[i + 1], img[i], sizeof img[i]);
                img[i + 1][w[seq[i]].axis] = 2 * w[seq[i]].c - img[i][w[seq[i]].axis];
            }
            double q[3] = {rx[0], rx[1], rx[2]};
            for (int i = d - 1; ok && i >= 0; i--) {
                const rect *r = &w[seq[i]];
                double dq = q[r->axis] - r->c, di = img[i + 1][r->axis] - r->c;
                if (!(dq * di < 0)) {
                    ok = 0;
                    break;
                }
                double t = dq / (dq - di);
                for (int k = 0; k < 3; k++) P[i][k] = q[k] + t * (img[i + 1][k] - q[k]);
                P[i][r->axis] = r->c;
                for (int k = 0; k < 3; k++)
                    if (k != r->axis && (P[i][k] < r->lo[k] - 1e-9 || P[i][k] > r->hi[k] + 1e-9)) ok = 0;
                memcpy(q, P[i], sizeof q);
            }
            for (int i = 0; ok && i < d; i++) {
                const rect *r = &w[seq[i]];
                const double *prev = i ? P[i - 1] : tx, *next = i + 1 < d ? P[i + 1] : rx;
                if (!((prev[r->axis] - r->c) * (next[r->axis] - r->c) > 0)) ok = 0;
            }
            if (ok && n < cap) {
                xpath *x = &out[n++];
                memset(x, 0, sizeof *x);
                x->depth = d;
                for (int i = 0; i < d; i++) x->walls[i] = seq[i], memcpy(x->v[i], P[i], sizeof P[i]);
                double u[3] = {rx[0] - img[d][0], rx[1] - img[d][1], rx[2] - img[d][2]};
                x->length = sqrt(dot(u, u)); /* unfolded: RX to the last image */
                for (int k = 0; k < 3; k++) x->dep[k] = P[0][k] - tx[k], x->arr[k] = P[d - 1][k] - rx[k];
                unit(x->dep);
                unit(x->arr);
                double complex E[3];
                double e0[3], scalar = 1;
                theta_hat(Rtx, x->dep, e0);
                for (int k = 0; k < 3; k++) E[k] = e0[k];
                for (int i = 0; i < d; i++) {
                    const double *prev = i ? P[i - 1] : tx, *next = i + 1 < d ? P[i + 1] : rx;
                    double kin[3], kout[3], nrm[3] = {0, 0, 0}, s[3], pin[3], pout[3];
                    for (int k = 0; k < 3; k++) kin[k] = P[i][k] - prev[k], kout[k] = next[k] - P[i][k];
                    unit(kin);
                    unit(kout);
                    nrm[w[seq[i]].axis] = 1;
                    double complex R[2], T[2];
                    mmd_material_fresnel(mat, FREQ, fabs(kin[w[seq[i]].axis]), R, T);
                    scalar *= 0.5 * (cabs(R[0]) * cabs(R[0]) + cabs(R[1]) * cabs(R[1]));
                    cross(kin, nrm, s);
                    unit(s);
                    cross(s, kin, pin);
                    cross(s, kout, pout);
                    double complex es = 0, ep = 0;
                    for (int k = 0; k < 3; k++) es += s[k] * E[k], ep += pin[k] * E[k];
                    for (int k = 0; k < 3; k++) E[k] = R[0] * es * s[k] + R[1] * ep * pout[k];
                }
                double er[3];
                theta_hat(Rrx, x->arr, er);
                double complex a = 0;
                for (int k = 0; k < 3; k++) a += er[k] * E[k];
                double fs = pow(lam / (4 * M_PI * x->length), 2);
                x->gain_jones = fs * creal(a * conj(a));
                x->gain_scalar = fs * scalar;
            }
            /* next sequence (odometer) */
            int i = d - 1;
            while (i >= 0 && ++seq[i] == nw) seq[i--] = 0;
            if (i < 0) break;
        }
    }
    return n;
}

static int row_less(const uint32_t *a, const uint32_t *b, int d)
{
    for (int k = 0; k < d; k++)
        if (a[k] != b[k]) return a[k] < b[k];
    return 0;
}

static void count_depths(const mmd_path *p, size_t n, int *cnt)
{
    for (int d = 0; d <= MMD_PATH_MAX_DEPTH; d++) cnt[d] = 0;
    for (size_t i = 0; i < n; i++) cnt[p[i].depth]++;
}

/* Solve at rx (orientation rx_ypr_deg) and compare with the reference, path by path.
 * Returns the number of paths found (-1 on error). */
static int check_against(prob *p, const char *label, const rect *w, int nw, const double rx[3],
                         const double rx_ypr_deg[3], const mmd_material *mat)
{
    double Rrx[9], Rtx[9];
    mmd_rotation_ypr(rx_ypr_deg[0] * DEG, rx_ypr_deg[1] * DEG, rx_ypr_deg[2] * DEG, Rrx);
    mmd_rotation_ypr(p->e.tx.yaw_deg * DEG, p->e.tx.pitch_deg * DEG, p->e.tx.roll_deg * DEG, Rtx);
    mmd_path *paths = NULL;
    size_t n = 0;
    if (mmd_paths_solve(p->sim, &p->cand, rx, Rrx, &paths, &n) != MMD_OK) {
        CHECK(0, "%s: solve: %s", label, mmd_last_error());
        return -1;
    }
    xpath ex[512];
    int ne = expect_paths(w, nw, p->e.tx.position_m, Rtx, rx, Rrx, p->e.solver.max_depth, mat, p->sim->wavelength,
                          ex, 512);
    int jones = p->e.solver.polarization == MMD_CFG_POL_JONES;
    CHECK((int)n == ne, "%s: %zu paths, the image construction gives %d", label, n, ne);
    int matched = 0;
    double worst_len = 0, worst_gain = 0, worst_ang = 0;
    for (int j = 0; j < ne; j++) {
        const xpath *x = &ex[j];
        const mmd_path *m = NULL;
        for (size_t i = 0; i < n; i++) {
            if (paths[i].depth != x->depth) continue;
            int same = 1;
            for (int v = 0; v < x->depth; v++)
                for (int k = 0; k < 3; k++)
                    if (fabs(paths[i].vertices[v][k] - x->v[v][k]) > 1e-6) same = 0;
            if (same) {
                CHECK(!m, "%s: two paths at the same points", label);
                m = &paths[i];
            }
        }
        if (!m) {
            CHECK(0, "%s: missing the depth-%d path with first point (%.4f, %.4f, %.4f)", label, x->depth, x->v[0][0],
                  x->v[0][1], x->v[0][2]);
            continue;
        }
        matched++;
        int objects_ok = 1;
        for (int v = 0; v < x->depth; v++)
            if (m->objects[v] != w[x->walls[v]].object || p->scene->tri_object[m->prims[v]] != m->objects[v])
                objects_ok = 0;
        CHECK(objects_ok, "%s: depth-%d path reflects off the right objects", label, x->depth);
        double g = jones ? x->gain_jones : x->gain_scalar;
        double fs = pow(p->sim->wavelength / (4 * M_PI * x->length), 2);
        worst_len = fmax(worst_len, fabs(m->length_m - x->length) / x->length);
        if (g > 1e-12 * fs) worst_gain = fmax(worst_gain, fabs(m->gain - g) / g);
        worst_ang = fmax(worst_ang, fmax(angle_deg(m->dir_arrival, x->arr), angle_deg(m->dir_departure, x->dep)));
        CHECK_NEAR(m->length_m, x->length, 1e-4 * x->length, "%s: depth-%d length", label, x->depth);
        double delay = x->length / MMD_SPEED_OF_LIGHT;
        CHECK_NEAR(m->delay_s, delay, 1e-4 * delay, "%s: delay", label);
        /* relative, with a floor far below any real path for the cross-polarised case (0) */
        CHECK_NEAR(m->gain, g, 1e-4 * g + 1e-12 * fs, "%s: depth-%d %s gain", label, x->depth,
                   jones ? "Jones" : "scalar");
        CHECK(angle_deg(m->dir_arrival, x->arr) < 0.01, "%s: arrival direction off by %.3g deg", label,
              angle_deg(m->dir_arrival, x->arr));
        CHECK(angle_deg(m->dir_departure, x->dep) < 0.01, "%s: departure direction off by %.3g deg", label,
              angle_deg(m->dir_departure, x->dep));
        /* the array-frame angles */
        double ul[3], az, el;
        mmd_to_local(Rrx, x->arr, ul);
        mmd_dir_to_az_el(ul, &az, &el);
        CHECK(fabs(m->arrival_az_deg - az / DEG) < 0.01 && fabs(m->arrival_el_deg - el / DEG) < 0.01,
              "%s: arrival az/el (%.4f, %.4f) vs (%.4f, %.4f)", label, m->arrival_az_deg, m->arrival_el_deg, az / DEG,
              el / DEG);
    }
    CHECK(matched == ne, "%s: matched %d of %d reference paths", label, matched, ne);
    /* output order: depth, then gain descending */
    int ordered = 1;
    for (size_t i = 1; i < n; i++)
        if (paths[i].depth < paths[i - 1].depth ||
            (paths[i].depth == paths[i - 1].depth && paths[i].gain > paths[i - 1].gain))
            ordered = 0;
    CHECK(ordered, "%s: paths ordered by depth, then gain", label);
    int cnt[MMD_PATH_MAX_DEPTH + 1];
    count_depths(paths, n, cnt);
    fprintf(stderr, "  %s: %zu paths (depth 1/2/3: %d/%d/%d); worst rel. length %.1e, gain %.1e, angle %.1e deg\n",
            label, n, cnt[1], cnt[2], cnt[3], worst_len, worst_gain, worst_ang);
    free(paths);
    return (int)n;
}

static mmd_material metal(double thickness)
{
    mmd_material m;
    mmd_material_itu("metal", FREQ, &m);
    m.thickness_m = thickness;
    return m;
}

/* ---- simple_reflector: one 1 m plate ---------------------------------------------- */
static void test_simple_reflector(void)
{
    const rect plate = {2, 0.0, {-0.5, -0.5, 0}, {0.5, 0.5, 0}, 0};
    mmd_material m = metal(0.01);
    const double z3[3] = {0, 0, 0};
    const char *modes[] = {"polarization: jones", "polarization: scalar"};
    for (int mi = 0; mi < 2; mi++) {
        char solver[256];
        snprintf(solver, sizeof solver, "rays: 20000, max_depth: 2, %s", modes[mi]);
        prob p;
        const double tx[3] = {-1.0, 0.2, 1.0};
        if (!prob_open(&p, sionna("simple_reflector"), NULL, tx, NULL, solver, 0)) {
            CHECK(0, "simple_reflector setup");
            continue;
        }
        char label[128];
        snprintf(label, sizeof label, "simple_reflector %s", modes[mi] + 14);
        int n = check_against(&p, label, &plate, 1, (double[3]){1.5, -0.1, 2.0}, z3, &m);
        CHECK(n == 1, "%s: one path of depth 1 (%d)", label, n);
        /* off the plate: the specular point at x = 2 */
        n = check_against(&p, "simple_reflector off the plate", &plate, 1, (double[3]){-3.0, 0.2, 1.0}, z3, &m);
        CHECK(n == 0, "off the plate: no path (%d)", n);
        /* just inside / just outside the rim (specular point at x = 0.4995 / 0.5005) */
        const double tx2[3] = {-1.0, 0.0, 1.0};
        prob_close(&p);
        if (!prob_open(&p, sionna("simple_reflector"), NULL, tx2, NULL, solver, 0)) continue;
        n = check_against(&p, "rim inside", &plate, 1, (double[3]){1.999, 0.0, 1.0}, z3, &m);
        CHECK(n == 1, "specular point 0.5 mm inside the rim: found (%d)", n);
        n = check_against(&p, "rim outside", &plate, 1, (double[3]){2.001, 0.0, 1.0}, z3, &m);
        CHECK(n == 0, "specular point 0.5 mm outside the rim: none (%d)", n);

        /* the closed form of vertical polarisation on a horizontal plate: pure TM */
        if (mi == 0) {
            mmd_path *pp;
            size_t np;
            double rx[3] = {1.5, 0.0, 2.0};
            if (mmd_paths_solve(p.sim, &p.cand, rx, NULL, &pp, &np) == MMD_OK && np == 1) {
                double L = sqrt(2.5 * 2.5 + 3.0 * 3.0), cosi = 3.0 / L;
                double complex R[2], T[2];
                mmd_material_fresnel(&m, FREQ, cosi, R, T);
                double fs = pow(p.sim->wavelength / (4 * M_PI * L), 2);
                CHECK_NEAR(pp[0].length_m, L, 1e-12 * L, "unfolded length sqrt(2.5^2 + 3^2)");
                CHECK_NEAR(pp[0].gain, fs * cabs(R[1]) * cabs(R[1]), 1e-6 * pp[0].gain,
                           "vertical polarisation on a horizontal plate = |R_TM|^2 (Friis x %.6f)",
                           cabs(R[1]) * cabs(R[1]));
                CHECK_NEAR(pp[0].vertices[0][0], -1.0 + 2.5 / 3.0, 1e-12, "specular point x = -1 + 2.5/3");
                free(pp);
            } else {
                CHECK(0, "TM path");
            }
        }
        prob_close(&p);
    }

    /* both antennas rolled 90 deg: horizontal polarisation, pure TE; one rolled: crossed */
    {
        prob p;
        const double tx[3] = {-1.0, 0.0, 1.0};
        if (prob_open(&p, sionna("simple_reflector"), NULL, tx, ", roll_deg: 90", "rays: 20000, max_depth: 1", 0)) {
            double rx[3] = {1.5, 0.0, 2.0}, L = sqrt(2.5 * 2.5 + 3.0 * 3.0);
            double complex R[2], T[2];
            mmd_material_fresnel(&m, FREQ, 3.0 / L, R, T);
            double fs = pow(p.sim->wavelength / (4 * M_PI * L), 2);
            check_against(&p, "simple_reflector TX+RX rolled", &plate, 1, rx, (double[3]){0, 0, 90}, &m);
            check_against(&p, "simple_reflector TX rolled", &plate, 1, rx, z3, &m);
            mmd_path *pp;
            size_t np;
            double Rr[9];
            mmd_rotation_ypr(0, 0, 90 * DEG, Rr);
            if (mmd_paths_solve(p.sim, &p.cand, rx, Rr, &pp, &np) == MMD_OK && np == 1) {
                CHECK_NEAR(pp[0].gain, fs * cabs(R[0]) * cabs(R[0]), 1e-6 * pp[0].gain,
                           "horizontal polarisation = |R_TE|^2");
                free(pp);
            } else {
                CHECK(0, "TE path");
            }
            if (mmd_paths_solve(p.sim, &p.cand, rx, NULL, &pp, &np) == MMD_OK && np == 1) {
                CHECK(pp[0].gain < 1e-12 * fs, "TX horizontal, RX vertical: cross-polarised (%.3g)", pp[0].gain / fs);
                free(pp);
            } else {
                CHECK(0, "crossed path");
            }
            prob_close(&p);
        } else {
            CHECK(0, "rolled setup");
        }
    }

    /* specular point on the shared diagonal (x = y) of the plate's two triangles: both
     * candidates validate, one path remains, through the smaller triangle id */
    {
        prob p;
        const double tx[3] = {-0.6, -0.6, 1.0};
        if (prob_open(&p, sionna("simple_reflector"), NULL, tx, NULL, "rays: 20000, max_depth: 1", 0)) {
            CHECK(p.cand.count[1] == 2, "both plate triangles are candidates (%zu)", p.cand.count[1]);
            double rx[3] = {0.9, 0.9, 2.0};
            int n = check_against(&p, "simple_reflector diagonal", &plate, 1, rx, z3, &m);
            CHECK(n == 1, "point on the shared edge: one path (%d)", n);
            mmd_path *pp;
            size_t np;
            if (mmd_paths_solve(p.sim, &p.cand, rx, NULL, &pp, &np) == MMD_OK && np == 1) {
                CHECK(pp[0].prims[0] == 0, "merged path keeps triangle 0 (%u)", pp[0].prims[0]);
                CHECK(fabs(pp[0].vertices[0][0] + 0.1) < 1e-12 && fabs(pp[0].vertices[0][1] + 0.1) < 1e-12,
                      "at (-0.1, -0.1, 0)");
                free(pp);
            }
            prob_close(&p);
        }
    }

    /* (1 - S^2): half the amplitude scattered leaves 3/4 of the power specular */
    {
        prob p, q;
        const double tx[3] = {-1.0, 0.2, 1.0};
        if (prob_open(&p, sionna("simple_reflector"), NULL, tx, NULL, "rays: 20000, max_depth: 1", 0) &&
            prob_open(&q, sionna("simple_reflector"),
                      ", materials: {reflector-mat: {itu: metal, thickness_m: 0.01, scattering: 0.5}}", tx, NULL,
                      "rays: 20000, max_depth: 1", 0)) {
            double rx[3] = {1.5, -0.1, 2.0};
            mmd_path *a, *b;
            size_t na, nb;
            if (mmd_paths_solve(p.sim, &p.cand, rx, NULL, &a, &na) == MMD_OK &&
                mmd_paths_solve(q.sim, &q.cand, rx, NULL, &b, &nb) == MMD_OK && na == 1 && nb == 1) {
                CHECK_NEAR(b[0].gain, 0.75 * a[0].gain, 1e-12 * a[0].gain, "S = 0.5: specular gain x (1 - S^2)");
                free(a);
                free(b);
            } else {
                CHECK(0, "scattering paths");
            }
            prob_close(&q);
        }
        prob_close(&p);
    }
}

/* ---- double and triple reflector: horizontal plates at z = 0 and z = 10 ---------- */
static void test_double_triple(void)
{
    mmd_material m = metal(0.1);
    const double z3[3] = {0, 0, 0};
    const rect dbl[2] = {{2, 0.0, {-20, -10, 0}, {0, 10, 0}, 0}, {2, 10.0, {-0.5, -0.5, 0}, {0.5, 0.5, 0}, 1}};
    const rect tri[3] = {{2, 0.0, {-20, -10, 0}, {20, 10, 0}, 0},
                         {2, 10.0, {19.5, -0.5, 0}, {20.5, 0.5, 0}, 1},
                         {2, 10.0, {-2.5, -2.5, 0}, {2.5, 2.5, 0}, 2}};
    const char *modes[] = {"polarization: jones", "polarization: scalar"};
    for (int mi = 0; mi < 2; mi++) {
        char solver[256];
        snprintf(solver, sizeof solver, "rays: 100000, max_depth: 3, %s", modes[mi]);
        struct {
            const char *scene;
            const rect *w;
            int nw;
            double tx[3], rx[3];
            int expect[4];
        } cases[] = {
            /* floor, then floor -> plate (worked by hand: the plate point at (0, 0, 10)) */
            {"double_reflector", dbl, 2, {-6.0, 0.3, 2.0}, {4.0, -0.2, 2.0}, {2, 1, 1, 0}},
            /* everything above the plate's corner: all six sequences up to depth 3 */
            {"double_reflector", dbl, 2, {-0.3, 0.1, 3.0}, {-0.2, -0.15, 6.0}, {6, 2, 2, 2}},
            {"triple_reflector", tri, 3, {-0.3, 0.1, 3.0}, {-0.2, -0.15, 6.0}, {6, 2, 2, 2}},
            {"triple_reflector", tri, 3, {19.8, 0.1, 3.0}, {19.7, -0.2, 6.0}, {6, 2, 2, 2}},
            {"triple_reflector", tri, 3, {-4.0, 0.3, 2.0}, {5.0, -0.2, 7.0}, {-1, -1, -1, -1}},
        };
        for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
            prob p;
            if (!prob_open(&p, sionna(cases[c].scene), NULL, cases[c].tx, NULL, solver, 0)) {
                CHECK(0, "%s setup", cases[c].scene);
                continue;
            }
            char label[128];
            snprintf(label, sizeof label, "%s case %zu %s", cases[c].scene, c, modes[mi] + 14);
            int n = check_against(&p, label, cases[c].w, cases[c].nw, cases[c].rx, z3, &m);
            if (cases[c].expect[0] >= 0) {
                mmd_path *pp;
                size_t np;
                mmd_paths_solve(p.sim, &p.cand, cases[c].rx, NULL, &pp, &np);
                int cnt[MMD_PATH_MAX_DEPTH + 1];
                count_depths(pp, np, cnt);
                CHECK(n == cases[c].expect[0] && cnt[1] == cases[c].expect[1] && cnt[2] == cases[c].expect[2] &&
                          cnt[3] == cases[c].expect[3],
                      "%s: %d paths (%d/%d/%d), expected %d (%d/%d/%d)", label, n, cnt[1], cnt[2], cnt[3],
                      cases[c].expect[0], cases[c].expect[1], cases[c].expect[2], cases[c].expect[3]);
                free(pp);
            }
            prob_close(&p);
        }
    }
}

/* ---- box: closed 10 x 10 x 5 m metal box, 12 triangles ----------------------------- */
static const rect g_box[6] = {
    {0, -5.0, {0, -5, 0}, {0, 5, 5}, 0}, {0, 5.0, {0, -5, 0}, {0, 5, 5}, 0},
    {1, -5.0, {-5, 0, 0}, {5, 0, 5}, 0}, {1, 5.0, {-5, 0, 0}, {5, 0, 5}, 0},
    {2, 0.0, {-5, -5, 0}, {5, 5, 0}, 0}, {2, 5.0, {-5, -5, 0}, {5, 5, 0}, 0},
};

static void test_box(void)
{
    mmd_material m = metal(1.0);
    const double z3[3] = {0, 0, 0};
    const char *modes[] = {"polarization: jones", "polarization: scalar"};
    for (int mi = 0; mi < 2; mi++) {
        char solver[256];
        snprintf(solver, sizeof solver, "rays: 200000, max_depth: 3, %s", modes[mi]);
        prob p;
        const double tx[3] = {1.3, -0.7, 2.1};
        if (!prob_open(&p, sionna("box"), NULL, tx, NULL, solver, 0)) {
            CHECK(0, "box setup");
            continue;
        }
        char label[128];
        snprintf(label, sizeof label, "box %s", modes[mi] + 14);
        /* a shoebox has 4 n^2 + 2 image sources of order n, each a valid path */
        double rx[3] = {-2.2, 1.9, 3.4};
        mmd_path *pp;
        size_t np;
        int n = check_against(&p, label, g_box, 6, rx, z3, &m);
        if (mmd_paths_solve(p.sim, &p.cand, rx, NULL, &pp, &np) == MMD_OK) {
            int cnt[MMD_PATH_MAX_DEPTH + 1];
            count_depths(pp, np, cnt);
            CHECK(n == 62 && cnt[1] == 6 && cnt[2] == 18 && cnt[3] == 38, "%s: 6 + 18 + 38 paths (%d/%d/%d)", label,
                  cnt[1], cnt[2], cnt[3]);
            free(pp);
        }
        /* a rotated receiver: same paths, arrival angles in its frame, Jones gain changes */
        check_against(&p, "box RX yaw 30 pitch 10 roll 20", g_box, 6, rx, (double[3]){30, 10, 20}, &m);
        prob_close(&p);
    }

    /* TX and RX on the vertical plane x = y: the ceiling and floor points lie on their
     * squares' diagonals, each found through both triangles and merged */
    prob p;
    const double tx[3] = {1.0, 1.0, 2.0};
    if (prob_open(&p, sionna("box"), NULL, tx, NULL, "rays: 50000, max_depth: 1", 0)) {
        double rx[3] = {-1.5, -1.5, 3.0};
        int n = check_against(&p, "box diagonal", g_box, 6, rx, z3, &m);
        CHECK(n == 6, "box, points on the diagonals: 6 first-order paths for 12 triangles (%d)", n);
        CHECK(p.cand.count[1] == 12, "all 12 triangles are candidates (%zu)", p.cand.count[1]);
        mmd_path *pp;
        size_t np;
        if (mmd_paths_solve(p.sim, &p.cand, rx, NULL, &pp, &np) == MMD_OK) {
            int ceil_ok = 0, floor_ok = 0;
            for (size_t i = 0; i < np; i++) {
                if (fabs(pp[i].vertices[0][2] - 5) < 1e-9) ceil_ok = pp[i].prims[0] == 0;
                if (fabs(pp[i].vertices[0][2]) < 1e-9) floor_ok = pp[i].prims[0] == 6;
            }
            CHECK(ceil_ok && floor_ok, "merged ceiling/floor paths keep triangles 0 and 6");
            free(pp);
        }
        prob_close(&p);
    }
}

/* ---- occlusion: a floor and a small vertical blocker ------------------------------ */
static void write_ply(const char *name, const float *tri, int n) { mmd_test_write_ply(g_dir, name, tri, n); }

static int paths_at(const char *ply, const double tx[3], const double rx[3])
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", g_dir, ply);
    prob p;
    if (!prob_open(&p, path, ", materials: {default: {itu: metal}}", tx, NULL, "rays: 20000, max_depth: 1", 0)) {
        CHECK(0, "%s setup", ply);
        return -1;
    }
    mmd_path *pp;
    size_t np = 0;
    int n = mmd_paths_solve(p.sim, &p.cand, rx, NULL, &pp, &np) == MMD_OK ? (int)np : -1;
    if (n >= 0) free(pp);
    prob_close(&p);
    return n;
}

static void test_occlusion(void)
{
    float floor_tris[18] = {-5, -5, 0, 5, -5, 0, 5, 5, 0, -5, -5, 0, 5, 5, 0, -5, 5, 0};
    /* blocker in x = -1, y in [-1, 1], z in [z0, z1] */
    float scene[36];
    memcpy(scene, floor_tris, sizeof floor_tris);
    const float zs[2][2] = {{0.2f, 0.8f}, {0.6f, 0.9f}};
    write_ply("floor.ply", floor_tris, 2);
    for (int b = 0; b < 2; b++) {
        float z0 = zs[b][0], z1 = zs[b][1];
        float blk[18] = {-1, -1, z0, -1, 1, z0, -1, 1, z1, -1, -1, z0, -1, 1, z1, -1, -1, z1};
        memcpy(scene + 18, blk, sizeof blk);
        write_ply(b ? "floor_high_blocker.ply" : "floor_blocker.ply", scene, 4);
    }
    const double a[3] = {-2, 0, 1}, c[3] = {2, 0, 1};
    /* the floor path's segments cross x = -1 at height 0.5 */
    CHECK(paths_at("floor.ply", a, c) == 1, "floor alone: one path");
    CHECK(paths_at("floor_blocker.ply", a, c) == 0, "blocker on the TX -> floor segment: path gone");
    CHECK(paths_at("floor_blocker.ply", c, a) == 0, "blocker on the floor -> RX segment: path gone");
    CHECK(paths_at("floor_high_blocker.ply", a, c) == 1, "blocker above the segment (z 0.6..0.9): path kept");

    /* grazing incidence on a tilted, offset 40 m plate (float vertices off every axis):
     * the reflecting plane itself must not block its own path, down to 0.006 deg */
    /* rotation about x by 0.37 rad, then about y by 0.21 rad */
    const double cx = cos(0.37), sx = sin(0.37), cy = cos(0.21), sy = sin(0.21);
    const double R[9] = {cy, sy * sx, sy * cx, 0, cx, -sx, -sy, cy * sx, cy * cx};
    const double off[3] = {3.3, -2.7, 1.9}, loc[4][3] = {{-20, -20, 0}, {20, -20, 0}, {20, 20, 0}, {-20, 20, 0}};
    float tilt[18], corner[4][3];
    for (int i = 0; i < 4; i++) {
        double w[3];
        mmd_to_world(R, loc[i], w);
        for (int k = 0; k < 3; k++) corner[i][k] = (float)(w[k] + off[k]);
    }
    const int order[6] = {0, 1, 2, 0, 2, 3};
    for (int i = 0; i < 6; i++) memcpy(tilt + 3 * i, corner[order[i]], sizeof corner[0]);
    write_ply("tilt.ply", tilt, 2);
    const double hs[4] = {0.1, 0.01, 0.005, 0.001};
    for (int i = 0; i < 4; i++) {
        double tl[3] = {-10.3, 0.1, hs[i]}, rl[3] = {10.0, -0.2, hs[i]}, tw[3], rw[3];
        mmd_to_world(R, tl, tw);
        mmd_to_world(R, rl, rw);
        for (int k = 0; k < 3; k++) tw[k] += off[k], rw[k] += off[k];
        CHECK(paths_at("tilt.ply", tw, rw) == 1, "tilted plate, %.3f deg grazing: the path is found",
              atan(hs[i] / 10.15) / DEG);
    }
}

/* ---- determinism, thread count, ray count, CSV ------------------------------------ */
static int same_paths(const mmd_path *a, size_t na, const mmd_path *b, size_t nb)
{
    if (na != nb) return 0;
    for (size_t i = 0; i < na; i++) {
        if (a[i].depth != b[i].depth || a[i].gain != b[i].gain || a[i].length_m != b[i].length_m) return 0;
        for (int v = 0; v < a[i].depth; v++) {
            if (a[i].prims[v] != b[i].prims[v]) return 0;
            for (int k = 0; k < 3; k++)
                if (a[i].vertices[v][k] != b[i].vertices[v][k]) return 0;
        }
    }
    return 1;
}

static void test_determinism_csv(void)
{
    const double tx[3] = {1.3, -0.7, 2.1};
    const double rx[2][3] = {{-2.2, 1.9, 3.4}, {3.1, 2.4, 1.2}};
    prob p, q, r;
    if (!prob_open(&p, sionna("box"), NULL, tx, NULL, "rays: 200000, max_depth: 3", 0) ||
        !prob_open(&q, sionna("box"), NULL, tx, NULL, "rays: 200000, max_depth: 3", 0) ||
        !prob_open(&r, sionna("box"), NULL, tx, NULL, "rays: 2000000, max_depth: 3", 0)) {
        CHECK(0, "box setups");
        return;
    }
    int cand_same = 1;
    for (int d = 1; d <= 3; d++)
        cand_same &= p.cand.count[d] == q.cand.count[d] &&
                     !memcmp(p.cand.seq[d], q.cand.seq[d], p.cand.count[d] * d * sizeof(uint32_t));
    CHECK(cand_same, "candidates identical on a repeat");
    fprintf(stderr, "  box candidates: %zu / %zu / %zu (200k rays), %zu / %zu / %zu (2M rays); %.3f s, %.3f s\n",
            p.cand.count[1], p.cand.count[2], p.cand.count[3], r.cand.count[1], r.cand.count[2], r.cand.count[3],
            p.cand.seconds, r.cand.seconds);
    mmd_path *pa[2] = {NULL, NULL}, *pb = NULL, *pc = NULL, *pd = NULL;
    size_t na[2] = {0, 0}, nb = 0, nc = 0, nd = 0;
    for (int k = 0; k < 2; k++) mmd_paths_solve(p.sim, &p.cand, rx[k], NULL, &pa[k], &na[k]);
    mmd_paths_solve(q.sim, &q.cand, rx[0], NULL, &pb, &nb);
    CHECK(na[0] > 0 && same_paths(pa[0], na[0], pb, nb), "same paths on a repeat");
    const char *old = getenv("MMDIFF_THREADS");
    char *saved = old ? strdup(old) : NULL;
    setenv("MMDIFF_THREADS", "1", 1);
    mmd_paths_solve(p.sim, &p.cand, rx[0], NULL, &pc, &nc);
    setenv("MMDIFF_THREADS", "7", 1);
    mmd_paths_solve(p.sim, &p.cand, rx[0], NULL, &pd, &nd);
    if (saved) setenv("MMDIFF_THREADS", saved, 1), free(saved);
    else unsetenv("MMDIFF_THREADS");
    CHECK(same_paths(pa[0], na[0], pc, nc) && same_paths(pa[0], na[0], pd, nd),
          "same paths with 1, 7 and default threads");
    free(pb), free(pc), free(pd);
    /* ten times the rays: more candidates, the same paths */
    for (int k = 0; k < 2; k++) {
        mmd_path *pr = NULL;
        size_t nr = 0;
        mmd_paths_solve(r.sim, &r.cand, rx[k], NULL, &pr, &nr);
        CHECK(same_paths(pa[k], na[k], pr, nr), "RX %d: the same %zu paths with 2M rays as with 200k (%zu)", k, na[k],
              nr);
        free(pr);
    }

    /* paths.csv */
    char f1[600], f2[600];
    snprintf(f1, sizeof f1, "%s/paths.csv", g_dir);
    snprintf(f2, sizeof f2, "%s/paths2.csv", g_dir);
    const mmd_path *pl[2] = {pa[0], pa[1]};
    CHECK(mmd_paths_write_csv(f1, pl, na, 2, 3) == MMD_OK, "write paths.csv: %s", mmd_last_error());
    CHECK(mmd_paths_write_csv(f2, pl, na, 2, 3) == MMD_OK, "write paths.csv again");
    char *t1 = NULL, *t2 = NULL;
    size_t l1 = 0, l2 = 0;
    if (mmd_read_file(f1, &t1, &l1) == MMD_OK && mmd_read_file(f2, &t2, &l2) == MMD_OK) {
        CHECK(l1 == l2 && !memcmp(t1, t2, l1), "paths.csv byte-identical on a repeat");
        size_t rows = 0;
        for (size_t i = 0; i < l1; i++) rows += t1[i] == '\n';
        CHECK(rows == 1 + na[0] + na[1], "paths.csv: header + %zu rows (%zu lines)", na[0] + na[1], rows);
        const char *hdr = "pose,depth,length_m,delay_s,gain_db,arrival_az_deg,arrival_el_deg,departure_az_deg,"
                          "departure_el_deg,v1_x_m,v1_y_m,v1_z_m,v1_object,v1_prim,v2_x_m";
        CHECK(!strncmp(t1, hdr, strlen(hdr)), "paths.csv header");
        /* the first data row reads back exactly */
        char *row = strchr(t1, '\n') + 1, *e;
        double vals[9];
        for (int k = 0; k < 9; k++) {
            vals[k] = strtod(row, &e);
            row = e + 1;
        }
        const mmd_path *q0 = &pa[0][0];
        CHECK(vals[0] == 0 && vals[1] == q0->depth && vals[2] == q0->length_m && vals[3] == q0->delay_s &&
                  vals[4] == 10 * log10(q0->gain) && vals[5] == q0->arrival_az_deg && vals[8] == q0->departure_el_deg,
              "paths.csv first row round-trips");
        double x = strtod(row, &e);
        CHECK(x == q0->vertices[0][0], "paths.csv v1_x_m round-trips");
        /* a depth-1 row ends with the empty columns of vertices 2 and 3 */
        CHECK(strstr(t1, ",,,,,,,,,,\n") != NULL, "short paths leave their vertex columns empty");
    } else {
        CHECK(0, "read paths.csv");
    }
    free(t1), free(t2);
    free(pa[0]), free(pa[1]);
    prob_close(&p);
    prob_close(&q);
    prob_close(&r);
}

/* Packed-key radix sort (depth 3 on 432 triangles: 27 bits) and the row merge sort
 * (depth 8: 72 bits do not fit) must give the same prefixes: the first three bounces of
 * every ray are the same whatever the depth. */
static void test_candidate_sorts(void)
{
    char scene[4200];
    snprintf(scene, sizeof scene, "%s/scenes/indoor/nist_conference_room/scene.yaml", g_shared);
    const double tx[3] = {1.5, 4.2, 2.2};
    prob a, b;
    if (!prob_open(&a, scene, NULL, tx, NULL, "rays: 20000, max_depth: 3", 0)) {
        CHECK(0, "conference room setup");
        return;
    }
    if (prob_open(&b, scene, NULL, tx, NULL, "rays: 20000, max_depth: 8", 0)) {
        int same = 1;
        for (int d = 1; d <= 3; d++)
            same &= a.cand.count[d] == b.cand.count[d] &&
                    !memcmp(a.cand.seq[d], b.cand.seq[d], a.cand.count[d] * d * sizeof(uint32_t));
        CHECK(same && a.cand.count[3] > 1000,
              "conference room: depth <= 3 candidates equal from both sorts (%zu/%zu/%zu)", a.cand.count[1],
              a.cand.count[2], a.cand.count[3]);
        int sorted = 1;
        for (int d = 1; d <= 8; d++)
            for (size_t i = 1; i < b.cand.count[d]; i++)
                if (!row_less(b.cand.seq[d] + (i - 1) * d, b.cand.seq[d] + i * d, d))
                    sorted = 0;
        CHECK(sorted && b.cand.count[8] > 0, "depth-8 candidates sorted and unique (%zu of depth 8)", b.cand.count[8]);
        prob_close(&b);
    }
    prob_close(&a);
}

static void test_errors(void)
{
    prob p;
    const double tx[3] = {0, 0, 2};
    if (!prob_open(&p, sionna("box"), NULL, tx, NULL, "rays: 1000, max_depth: 9", 1)) {
        CHECK(0, "box setup");
        return;
    }
    mmd_path_candidates c;
    CHECK(mmd_paths_candidates(p.sim, &c) == MMD_ERR_INVALID && strstr(mmd_last_error(), "max_depth"),
          "max_depth 9 refused with a message naming solver.max_depth (%s)", mmd_last_error());
    prob_close(&p);
    if (prob_open(&p, sionna("box"), NULL, tx, NULL, "rays: 1000, max_depth: 0", 0)) {
        mmd_path *pp = (mmd_path *)1;
        size_t np = 1;
        CHECK(mmd_paths_solve(p.sim, &p.cand, (double[3]){1, 1, 1}, NULL, &pp, &np) == MMD_OK && np == 0 && !pp,
              "max_depth 0: no paths");
        prob_close(&p);
    }
}

int main(void)
{
    mmd_log_set_level(0);
    if (!mkdtemp(g_dir)) return 1;
    if (!realpath(mmd_test_shared(), g_shared)) snprintf(g_shared, sizeof g_shared, "%s", mmd_test_shared());
    if (mmd_cl_create(NULL, &g_cl) != MMD_OK) {
        CHECK(0, "OpenCL: %s", mmd_last_error());
        return TEST_DONE();
    }
    test_simple_reflector();
    test_double_triple();
    test_box();
    test_occlusion();
    test_determinism_csv();
    test_candidate_sorts();
    test_errors();
    mmd_cl_destroy(g_cl);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
    return TEST_DONE();
}
