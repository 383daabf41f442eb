/* Normals at the scale of the wave (src/sim/normals.c, docs/physics.md section 4b): a
 * clean mesh keeps its exact face normals; a LiDAR-like noisy floor (5 cm grid, 1 cm
 * vertex noise, face tilts of ~30 degrees rms) gets normals within a few degrees of the
 * true one; a noisy 90-degree crease stays a crease; results do not depend on the thread
 * count; a bad radius is an error. */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "mmd_sim.h"
#include "mmd_test.h"

static char g_dir[] = "/tmp/mmd_nrm_XXXXXX";

static double gauss(mmd_rng *r)
{
    double u = mmd_rng_uniform(r), v = mmd_rng_uniform(r);
    return sqrt(-2.0 * log(u > 1e-300 ? u : 1e-300)) * cos(2 * M_PI * v);
}

/* An L of two n x n grids of side `size` (floor z = 0 over x in [0, size], wall x = 0 over
 * z in [0, size]), sharing the corner line, one object; vertices moved by N(0, sigma). */
static mmd_scene *make_l(int n, double size, double sigma, int with_wall)
{
    int nv1 = (n + 1) * (n + 1);
    int nvert = with_wall ? 2 * nv1 : nv1, ntri = (with_wall ? 2 : 1) * 2 * n * n;
    float *v = malloc(sizeof(float) * 3 * nvert);
    int *f = malloc(sizeof(int) * 3 * ntri);
    mmd_rng r;
    mmd_rng_seed(&r, 99, 1);
    int k = 0;
    for (int w = 0; w < (with_wall ? 2 : 1); w++)
        for (int j = 0; j <= n; j++)
            for (int i = 0; i <= n; i++, k++) {
                double a = size * i / n, b = size * j / n;
                double p[3] = {a, b, 0};
                if (w) p[0] = 0, p[1] = b, p[2] = a; /* the wall: x = 0 */
                for (int q = 0; q < 3; q++) v[3 * k + q] = (float)(p[q] + sigma * gauss(&r));
            }
    int t = 0;
    for (int w = 0; w < (with_wall ? 2 : 1); w++)
        for (int j = 0; j < n; j++)
            for (int i = 0; i < n; i++) {
                int a = w * nv1 + j * (n + 1) + i, b = a + 1, c = a + n + 1, d = c + 1;
                f[3 * t] = a, f[3 * t + 1] = b, f[3 * t + 2] = d, t++;
                f[3 * t] = a, f[3 * t + 1] = d, f[3 * t + 2] = c, t++;
            }
    char path[512];
    snprintf(path, sizeof path, "%s/l.ply", g_dir);
    FILE *fp = fopen(path, "wb");
    fprintf(fp, "ply\nformat binary_little_endian 1.0\nelement vertex %d\nproperty float x\nproperty float y\n"
                "property float z\nelement face %d\nproperty list uchar int vertex_indices\nend_header\n",
            nvert, ntri);
    fwrite(v, sizeof(float), (size_t)3 * nvert, fp);
    for (int i = 0; i < ntri; i++) {
        unsigned char c = 3;
        fwrite(&c, 1, 1, fp);
        fwrite(f + 3 * i, sizeof(int), 3, fp);
    }
    fclose(fp);
    free(v);
    free(f);
    mmd_scene *s = NULL;
    if (mmd_scene_load(path, &s) != MMD_OK) fprintf(stderr, "load: %s\n", mmd_last_error());
    return s;
}

static double face_tilt_deg(const mmd_scene *s, uint32_t t, const double ref[3])
{
    const float *a = s->vertices + 3 * s->indices[3 * t], *b = s->vertices + 3 * s->indices[3 * t + 1],
                *c = s->vertices + 3 * s->indices[3 * t + 2];
    double e1[3] = {b[0] - a[0], b[1] - a[1], b[2] - a[2]}, e2[3] = {c[0] - a[0], c[1] - a[1], c[2] - a[2]};
    double n[3] = {e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]};
    double l = sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]);
    double cs = fabs(n[0] * ref[0] + n[1] * ref[1] + n[2] * ref[2]) / l;
    return acos(fmin(1.0, cs)) * 180 / M_PI;
}

static double tilt_deg(const float *n, const double ref[3])
{
    double cs = fabs(n[0] * ref[0] + n[1] * ref[1] + n[2] * ref[2]);
    return acos(fmin(1.0, cs)) * 180 / M_PI;
}

int main(void)
{
    mmd_log_set_level(0);
    if (!mkdtemp(g_dir)) return 1;
    const double up[3] = {0, 0, 1}, east[3] = {1, 0, 0};

    /* clean: exact normals, also where the two planes meet */
    mmd_scene *s = make_l(40, 2.0, 0.0, 1);
    if (!s) return TEST_DONE();
    float *n = malloc(sizeof(float) * 3 * s->n_triangles), *lift = malloc(sizeof(float) * s->n_triangles);
    CHECK(mmd_smooth_normals(s, 0.1, n, lift) == MMD_OK, "smooth clean L");
    double max_lift = 0;
    for (uint32_t t = 0; t < s->n_triangles; t++) max_lift = fmax(max_lift, lift[t]);
    CHECK(max_lift < 1e-6, "clean L: no lift (%.3g m)", max_lift);
    free(lift);
    double worst = 0;
    for (uint32_t t = 0; t < s->n_triangles; t++) {
        double ref_up = tilt_deg(n + 3 * t, t < s->n_triangles / 2 ? up : east);
        if (ref_up > worst) worst = ref_up;
    }
    CHECK(worst < 1e-4, "clean L: smoothed normals equal the face normals (worst %.2g deg)", worst);
    free(n);
    mmd_scene_destroy(s);

    /* noisy floor: 5 cm grid, 1 cm noise */
    s = make_l(40, 2.0, 0.01, 0);
    n = malloc(sizeof(float) * 3 * s->n_triangles);
    lift = malloc(sizeof(float) * s->n_triangles);
    CHECK(mmd_smooth_normals(s, 0.1, n, lift) == MMD_OK, "smooth noisy floor");
    double mean_lift = 0;
    for (uint32_t t = 0; t < s->n_triangles; t++) mean_lift += lift[t] / s->n_triangles;
    printf("noisy floor: mean lift %.1f mm (3 sigma = 30 mm)\n", 1e3 * mean_lift);
    CHECK(mean_lift > 0.02 && mean_lift < 0.04, "lift about 3 sigma of the vertex noise (%.1f mm)", 1e3 * mean_lift);
    free(lift);
    double se = 0, ss = 0, sn = 0;
    for (uint32_t t = 0; t < s->n_triangles; t++) {
        double ft = face_tilt_deg(s, t, up), st = tilt_deg(n + 3 * t, up);
        se += ft * ft;
        ss += st * st;
        double len = sqrt(n[3 * t] * n[3 * t] + n[3 * t + 1] * n[3 * t + 1] + n[3 * t + 2] * n[3 * t + 2]);
        sn += fabs(len - 1);
    }
    double rms_face = sqrt(se / s->n_triangles), rms_smooth = sqrt(ss / s->n_triangles);
    printf("noisy floor: face tilt %.1f deg rms, smoothed %.2f deg rms\n", rms_face, rms_smooth);
    CHECK(rms_face > 15, "the test mesh is rough (face tilt %.1f deg rms)", rms_face);
    CHECK(rms_smooth < 6, "smoothed normals within 6 deg rms of the floor's (%.2f)", rms_smooth);
    CHECK(sn / s->n_triangles < 1e-6, "unit length");
    /* thread count does not matter */
    float *n1 = malloc(sizeof(float) * 3 * s->n_triangles);
    setenv("MMDIFF_THREADS", "1", 1);
    CHECK(mmd_smooth_normals(s, 0.1, n1, NULL) == MMD_OK, "smooth, 1 thread");
    unsetenv("MMDIFF_THREADS");
    CHECK(!memcmp(n, n1, sizeof(float) * 3 * s->n_triangles), "same bits with 1 thread and with the default");
    free(n1);
    free(n);
    /* errors */
    float dummy[3];
    CHECK(mmd_smooth_normals(s, 0.0, dummy, NULL) == MMD_ERR_INVALID, "radius 0 refused");
    CHECK(mmd_smooth_normals(s, NAN, dummy, NULL) == MMD_ERR_INVALID, "radius NaN refused");
    mmd_scene_destroy(s);

    /* noisy crease: normals near the corner line stay on their own plane */
    s = make_l(40, 2.0, 0.01, 1);
    n = malloc(sizeof(float) * 3 * s->n_triangles);
    CHECK(mmd_smooth_normals(s, 0.1, n, NULL) == MMD_OK, "smooth noisy L");
    double se_edge = 0;
    int n_edge = 0;
    for (uint32_t t = 0; t < s->n_triangles; t++) {
        int floor = t < s->n_triangles / 2;
        /* triangles within 10 cm of the corner line: the neighbourhood straddles it */
        const float *a = s->vertices + 3 * s->indices[3 * t];
        double dist = floor ? a[0] : a[2];
        if (dist > 0.1) continue;
        double st = tilt_deg(n + 3 * t, floor ? up : east);
        se_edge += st * st;
        n_edge++;
    }
    double rms_edge = sqrt(se_edge / n_edge);
    printf("noisy crease: %d triangles within 10 cm of the corner, smoothed %.2f deg rms from their plane\n",
           n_edge, rms_edge);
    CHECK(rms_edge < 12, "the crease stays sharp (%.2f deg rms near the corner)", rms_edge);
    free(n);
    mmd_scene_destroy(s);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
    return TEST_DONE();
}
