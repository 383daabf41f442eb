/* Coverage maps (SPEC 4 "Coverage map"): free-space cells equal the analytic cell
 * average of Friis; the value of a small cell equals the total power of an iso-receiver
 * AoA run at its centre (two independent estimators: TX-launched plane crossings vs
 * receiver-launched next-event connections) on a closed metal box and on an indoor room;
 * cells no ray reaches are marked as such; determinism; grid and input errors; the
 * floor-plan slice. */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "mmd_coverage.h"
#include "mmd_physics.h"
#include "mmd_test.h"

static char g_dir[] = "/tmp/mmd_cov_XXXXXX";
static mmd_cl *g_cl;

static void write_ply(const char *name, const float *tri, int n) { mmd_test_write_ply(g_dir, name, tri, n); }

typedef struct run {
    mmd_experiment e;
    mmd_scene *scene;
    mmd_bvh *bvh;
    mmd_sim *sim;
} run;

static int run_open(run *r, const char *yaml, const char *const *sets, size_t n_sets)
{
    memset(r, 0, sizeof *r);
    char origin[512];
    snprintf(origin, sizeof origin, "%s/exp.yaml", g_dir);
    mmd_status st = mmd_experiment_load_string(yaml, origin, sets, n_sets, &r->e);
    if (st == MMD_OK) st = mmd_scene_load(r->e.scene.file.path, &r->scene);
    if (st == MMD_OK) st = mmd_bvh_build(r->scene->vertices, r->scene->indices, r->scene->n_triangles, NULL, &r->bvh);
    if (st == MMD_OK) st = mmd_sim_create(g_cl, r->scene, r->bvh, &r->e, &r->sim);
    if (st != MMD_OK) fprintf(stderr, "run failed: %s\n", mmd_last_error());
    return st == MMD_OK;
}

static void run_close(run *r)
{
    mmd_sim_destroy(r->sim);
    mmd_bvh_destroy(r->bvh);
    mmd_scene_destroy(r->scene);
    mmd_experiment_free(&r->e);
}

/* (1/A) int_cell (lambda / (4 pi r))^2 dA, midpoint rule on 200 x 200 sub-cells. */
static double friis_cell_average(double lam, const double tx[3], double x0, double y0, double c, double z)
{
    const int n = 200;
    double s = 0, h = c / n;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < n; i++) {
            double x = x0 + (i + 0.5) * h - tx[0], y = y0 + (j + 0.5) * h - tx[1], dz = z - tx[2];
            s += 1.0 / (x * x + y * y + dz * dz);
        }
    return lam * lam / (16 * M_PI * M_PI) * s / ((double)n * n);
}

static void test_free_space(void)
{
    /* a 1 mm triangle 1 km away: nothing to hit */
    float speck[9] = {1000, 0, 0, 1000.001f, 0, 0, 1000, 0.001f, 0};
    write_ply("speck.ply", speck, 1);
    const char *yaml = "scene: {file: speck.ply, frequency_hz: 28.0e9, materials: {default: {itu: concrete}}}\n"
                       "tx: {position_m: [0.3, -0.2, 1.5], pattern: iso}\n"
                       "solver: {max_depth: 2, seed: 3}\n"
                       "coverage: {z_m: 0.0, cell_m: 0.5, rays: 2000000, extent_m: [-3, 3, -3, 3]}\n";
    const char *modes[] = {"solver.polarization=scalar", "solver.polarization=jones"};
    for (int mi = 0; mi < 2; mi++) {
        run r;
        if (!run_open(&r, yaml, &modes[mi], 1)) {
            CHECK(0, "free-space run");
            continue;
        }
        mmd_coverage_map m;
        if (mmd_sim_coverage(r.sim, &r.e.coverage, &m, NULL, NULL) != MMD_OK) {
            CHECK(0, "coverage: %s", mmd_last_error());
            run_close(&r);
            continue;
        }
        CHECK(m.nx == 12 && m.ny == 12, "grid 12 x 12, got %d x %d", m.nx, m.ny);
        double lam = mmd_wavelength(28e9), worst = 0, sum = 0, sum_ref = 0;
        int empty = 0;
        for (int iy = 0; iy < m.ny; iy++)
            for (int ix = 0; ix < m.nx; ix++) {
                double ref = friis_cell_average(lam, r.e.tx.position_m, m.x0 + ix * m.cell_m, m.y0 + iy * m.cell_m,
                                                m.cell_m, m.z_m);
                double g = m.gain[iy * m.nx + ix];
                empty += m.count[iy * m.nx + ix] == 0;
                double rel = fabs(g / ref - 1);
                if (rel > worst) worst = rel;
                sum += g, sum_ref += ref;
            }
        CHECK(empty == 0, "%s: every free-space cell receives rays (%d empty)", modes[mi], empty);
        /* a cell sees ~300..20000 Fibonacci rays: a few percent at the far corners */
        CHECK(worst < 0.04, "%s: every cell within 4%% of the Friis cell average (worst %.2f%%)", modes[mi],
              100 * worst);
        CHECK_NEAR(sum / sum_ref, 1.0, 2e-3, "%s: map total equals the Friis total", modes[mi]);
        printf("free space (%s): worst cell %.2f%%, total %.4f%%\n", modes[mi], 100 * worst,
               100 * (sum / sum_ref - 1));
        /* determinism: the same seed gives the same bits */
        mmd_coverage_map m2;
        if (mmd_sim_coverage(r.sim, &r.e.coverage, &m2, NULL, NULL) == MMD_OK) {
            CHECK(!memcmp(m.gain, m2.gain, sizeof(double) * m.nx * m.ny), "%s: same seed, same map bits",
                  modes[mi]);
            mmd_coverage_map_free(&m2);
        }
        mmd_coverage_map_free(&m);
        run_close(&r);
    }
}

/* One cell of side 2h centred on X against the AoA total power at X. */
static void consistency(const char *label, const char *scene_line, const char *solver_mode, const double tx[3],
                        const double x[3], double h, int cov_rays, int aoa_rays, double tol_db)
{
    const char *modes[] = {"solver.polarization=scalar", "solver.polarization=jones"};
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "%s\n"
             "tx: {position_m: [%.17g, %.17g, %.17g], pattern: iso}\n"
             "rx:\n  array: {rows: 1, cols: 1, element: iso}\n  poses: [{position_m: [%.17g, %.17g, %.17g]}]\n"
             "aoa: {azimuth_deg: [-180, 176, 4], elevation_deg: [-88, 88, 4]}\n"
             "solver: {mode: %s, rays: %d, max_depth: 3, diffuse: true, seed: 11}\n"
             "coverage: {z_m: %.17g, cell_m: %.17g, rays: %d, extent_m: [%.17g, %.17g, %.17g, %.17g]}\n",
             scene_line, tx[0], tx[1], tx[2], x[0], x[1], x[2], solver_mode, aoa_rays, x[2], 2 * h, cov_rays, x[0] - h, x[0] + h,
             x[1] - h, x[1] + h);
    for (int mi = 0; mi < 2; mi++) {
        run r;
        if (!run_open(&r, yaml, &modes[mi], 1)) {
            CHECK(0, "%s run", label);
            continue;
        }
        mmd_coverage_map m;
        mmd_aoa_result a;
        if (mmd_sim_coverage(r.sim, &r.e.coverage, &m, NULL, NULL) != MMD_OK) {
            CHECK(0, "%s coverage: %s", label, mmd_last_error());
            run_close(&r);
            continue;
        }
        if (mmd_sim_aoa(r.sim, r.e.rx.poses, 1, &a, NULL, NULL) != MMD_OK) {
            CHECK(0, "%s aoa: %s", label, mmd_last_error());
            mmd_coverage_map_free(&m);
            run_close(&r);
            continue;
        }
        CHECK(m.nx == 1 && m.ny == 1, "%s: one cell", label);
        double g_cov = 10 * log10(m.gain[0]), g_aoa = 10 * log10(a.total_power[0]);
        double g_los = 10 * log10(a.los_power[0]);
        printf("%s, %s (%s): coverage cell %.3f dB, AoA total %.3f dB (LoS alone %.3f dB)\n", label, solver_mode,
               modes[mi], g_cov, g_aoa, g_los);
        CHECK_NEAR(g_cov, g_aoa, tol_db, "%s, %s (%s): coverage cell = AoA iso total power", label, solver_mode,
                   modes[mi]);
        CHECK(g_aoa > g_los + 0.5, "%s, %s (%s): the reflections matter in this check (%.2f dB above LoS)", label,
              solver_mode, modes[mi], g_aoa - g_los);
        mmd_aoa_result_free(&a);
        mmd_coverage_map_free(&m);
        run_close(&r);
    }
}

static void test_consistency(void)
{
    char line[1024];
    const char *shared = mmd_test_shared();
    snprintf(line, sizeof line, "scene: {file: %s/scenes/sionna/box/box.xml, frequency_hz: 28.0e9}", shared);
    double tx_box[3] = {-2.0, 1.0, 2.5}, x_box[3] = {2.0, -1.5, 1.2};
    double tx_room[3] = {1.5, 4.2, 2.2}, x_room[3] = {1.0, 1.5, 1.2};
    const char *solver_modes[] = {"directional", "specular"};
    for (int sm = 0; sm < 2; sm++) {
        snprintf(line, sizeof line, "scene: {file: %s/scenes/sionna/box/box.xml, frequency_hz: 28.0e9}", shared);
        consistency("box", line, solver_modes[sm], tx_box, x_box, 0.15, 2000000, 400000, 0.2);
        snprintf(line, sizeof line, "scene: {file: %s/scenes/indoor/nist_conference_room/scene.yaml, "
                                    "frequency_hz: 60.0e9}", shared);
        consistency("conference room", line, solver_modes[sm], tx_room, x_room, 0.25, 2000000, 400000, 0.2);
    }
}

static void test_empty_cells_and_slice(void)
{
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "scene: {file: %s/scenes/sionna/box/box.xml, frequency_hz: 28.0e9}\n"
             "tx: {position_m: [0, 0, 2.5]}\n"
             "solver: {max_depth: 2, seed: 1}\n"
             "coverage: {z_m: 1.5, cell_m: 1.0, rays: 200000, extent_m: [-7, 7, -7, 7]}\n",
             mmd_test_shared());
    run r;
    if (!run_open(&r, yaml, NULL, 0)) {
        CHECK(0, "box run");
        return;
    }
    mmd_coverage_map m;
    if (mmd_sim_coverage(r.sim, &r.e.coverage, &m, NULL, NULL) != MMD_OK) {
        CHECK(0, "coverage: %s", mmd_last_error());
        run_close(&r);
        return;
    }
    /* the box spans -5..5: cells outside it get nothing, cells inside all get power */
    int bad_out = 0, bad_in = 0;
    for (int iy = 0; iy < m.ny; iy++)
        for (int ix = 0; ix < m.nx; ix++) {
            double cx = m.x0 + (ix + 0.5), cy = m.y0 + (iy + 0.5);
            int inside = fabs(cx) < 5 && fabs(cy) < 5, outside = fabs(cx) > 5 || fabs(cy) > 5;
            uint32_t n = m.count[iy * m.nx + ix];
            bad_in += inside && (n == 0 || !(m.gain[iy * m.nx + ix] > 0));
            bad_out += outside && (n != 0 || m.gain[iy * m.nx + ix] != 0);
        }
    CHECK(bad_in == 0 && bad_out == 0, "closed box: power exactly inside (%d bad inside, %d bad outside)", bad_in,
          bad_out);
    double ext[4] = {m.x0, m.x1, m.y0, m.y1}, *xy = NULL;
    size_t np = 0;
    CHECK(mmd_scene_slice_z(r.scene, 1.5, ext, &xy, &np) == MMD_OK, "slice");
    /* four walls, two triangles each: 8 segments on the lines |x| = 5 or |y| = 5 */
    CHECK(np == 8 * 3, "8 wall segments at z = 1.5, got %zu points", np);
    int off = 0;
    for (size_t k = 0; k + 2 < np; k += 3)
        for (int q = 0; q < 2; q++) {
            double x = xy[2 * (k + q)], y = xy[2 * (k + q) + 1];
            off += !(fabs(fabs(x) - 5) < 1e-5 || fabs(fabs(y) - 5) < 1e-5);
        }
    CHECK(off == 0, "segments lie on the walls");
    free(xy);
    mmd_coverage_map_free(&m);

    /* grid errors name the field */
    mmd_cfg_coverage c = r.e.coverage;
    c.cell_m = 0;
    CHECK(mmd_sim_coverage(r.sim, &c, &m, NULL, NULL) == MMD_ERR_INVALID && strstr(mmd_last_error(), "cell_m"),
          "cell_m 0 refused: %s", mmd_last_error());
    c = r.e.coverage;
    c.cell_m = 1e-5;
    CHECK(mmd_sim_coverage(r.sim, &c, &m, NULL, NULL) == MMD_ERR_INVALID && strstr(mmd_last_error(), "exceed"),
          "a billion cells refused: %s", mmd_last_error());
    c = r.e.coverage;
    c.extent_m[1] = c.extent_m[0];
    CHECK(mmd_sim_coverage(r.sim, &c, &m, NULL, NULL) == MMD_ERR_INVALID && strstr(mmd_last_error(), "extent_m"),
          "empty extent refused: %s", mmd_last_error());
    c = r.e.coverage;
    c.has_extent = 0;
    mmd_coverage_map g;
    CHECK(mmd_coverage_grid(r.scene, &c, &g) == MMD_OK && g.nx == 10 && g.ny == 10 && g.x0 == -5 && g.y0 == -5,
          "default extent = scene footprint (%d x %d from %g, %g)", g.nx, g.ny, g.x0, g.y0);
    run_close(&r);
}

int main(void)
{
    mmd_log_set_level(0);
    if (!mkdtemp(g_dir)) return 1;
    if (mmd_cl_create(NULL, &g_cl) != MMD_OK) {
        CHECK(0, "OpenCL: %s", mmd_last_error());
        return TEST_DONE();
    }
    test_free_space();
    test_empty_cells_and_slice();
    test_consistency();
    mmd_cl_destroy(g_cl);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
    return TEST_DONE();
}
