/* Evaluation (issue 6 items 2, 3, 7): peak metrics on hand-made spectra with known peaks
 * (wrap-around, plateaus and ties, fewer than K peaks, empty maps, identical / shifted /
 * scaled maps, optimal matching against brute force), TRAJ/RAND pose sets checked against
 * brute-force distances to every triangle, measurement noise, the NeRF² adapter on
 * hand-made PNGs and on real files of the shared subset, bad input, and the dataset /
 * evaluate / import-nerf2 commands end to end (MMD_BIN). */
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mmd_eval.h"
#include "mmd_physics.h"
#include "mmd_test.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#pragma GCC diagnostic pop

#define DEG (M_PI / 180.0)

static char g_dir[] = "/tmp/eval_test_XXXXXX";

static const char *tmp(const char *name)
{
    static char buf[8][1024];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, 1024, "%s/%s", g_dir, name);
    return b;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* ---------------------------------------------------------------------------------------
 * Hand-made maps
 */

static mmd_cfg_grid grid(double a, double b, double s)
{
    mmd_cfg_grid g = {a, b, s, (int)floor((b - a) / s + 0.5) + 1};
    return g;
}

typedef struct blob { double az, el, db; } blob;

/* Sum of narrow bumps (angular Gaussians, 2 deg) of the given peak powers, over a floor
 * far below them, so the local maxima are exactly the bins nearest the bump centres. */
static float *blobs(const mmd_cfg_grid *az, const mmd_cfg_grid *el, const blob *b, int n)
{
    float *m = calloc((size_t)az->count * el->count, sizeof *m);
    for (int j = 0; j < el->count; j++)
        for (int i = 0; i < az->count; i++) {
            double a = az->start + i * az->step, e = el->start + j * el->step, v = 1e-12;
            for (int k = 0; k < n; k++) {
                double d = mmd_eval_angle_deg(a, e, b[k].az, b[k].el);
                v += pow(10.0, 0.1 * b[k].db) * exp(-0.5 * d * d / 4.0);
            }
            m[(size_t)j * az->count + i] = (float)v;
        }
    return m;
}

static void test_angle(void)
{
    CHECK_NEAR(mmd_eval_angle_deg(0, 0, 90, 0), 90, 1e-12, "quarter turn");
    CHECK_NEAR(mmd_eval_angle_deg(10, 0, 12, 0), 2, 1e-12, "2 deg along the equator");
    CHECK_NEAR(mmd_eval_angle_deg(359, 0, 1, 0), 2, 1e-12, "across the seam");
    CHECK_NEAR(mmd_eval_angle_deg(-180, 0, 180, 0), 0, 1e-12, "-180 = 180");
    CHECK_NEAR(mmd_eval_angle_deg(0, 89, 180, 89), 2, 1e-12, "over the pole");
    CHECK_NEAR(mmd_eval_angle_deg(30, 60, 30, 60.001), 0.001, 1e-9, "tiny angles keep their digits");
    CHECK_NEAR(mmd_eval_angle_deg(0, 0, 180, 0), 180, 1e-12, "opposite");
}

static void test_peaks(void)
{
    mmd_eval_peak pk[16];
    int n = 0, all = 0;
    /* wrap-around: a bump at azimuth 0 on a 360-degree grid is one peak */
    mmd_cfg_grid az = grid(0, 359, 1), el = grid(-10, 10, 1);
    blob b0 = {0, 0, 0};
    float *m = blobs(&az, &el, &b0, 1);
    CHECK(mmd_eval_find_peaks(m, az.count, el.count, &az, &el, 60, pk, 16, &n, &all) == MMD_OK && n == 1 &&
              all == 1 && pk[0].az_deg == 0 && pk[0].el_deg == 0,
          "wrap: one peak at (0, 0), got %d (first at %g, %g)", all, n ? pk[0].az_deg : NAN, n ? pk[0].el_deg : NAN);
    free(m);
    /* the same bump on a grid that ends at 359 without wrapping ([0, 358]: 359 bins) has
     * an edge maximum at 358 (its only neighbour is lower) and one at 0 */
    az = grid(0, 358, 1);
    m = blobs(&az, &el, &b0, 1);
    CHECK(mmd_eval_find_peaks(m, az.count, el.count, &az, &el, 60, pk, 16, &n, &all) == MMD_OK && all == 2,
          "no wrap on a 359-degree grid: edge maxima count (%d)", all);
    free(m);
    /* [-180, 180]: the last column repeats the first; a bump at 180 is one peak */
    az = grid(-180, 180, 1);
    blob b180 = {180, 5, -3};
    m = blobs(&az, &el, &b180, 1);
    CHECK(mmd_eval_find_peaks(m, az.count, el.count, &az, &el, 60, pk, 16, &n, &all) == MMD_OK && all == 1 &&
              pk[0].az_deg == -180 && pk[0].el_deg == 5 && fabs(pk[0].power_db + 3) < 1e-3,
          "seam column: one peak at (-180, 5) of -3 dB, got %d at (%g, %g) %g dB", all, pk[0].az_deg, pk[0].el_deg,
          pk[0].power_db);
    free(m);

    /* dynamic range and order */
    az = grid(-90, 90, 1);
    blob three[3] = {{-40, 0, -25}, {20, 5, 0}, {60, -5, -10}};
    m = blobs(&az, &el, three, 3);
    CHECK(mmd_eval_find_peaks(m, az.count, el.count, &az, &el, 20, pk, 16, &n, &all) == MMD_OK && n == 2 &&
              pk[0].az_deg == 20 && pk[1].az_deg == 60 && fabs(pk[1].power_db + 10) < 1e-3,
          "20 dB range keeps two peaks, strongest first (%d)", n);
    CHECK(mmd_eval_find_peaks(m, az.count, el.count, &az, &el, 30, pk, 16, &n, &all) == MMD_OK && n == 3 &&
              pk[2].az_deg == -40,
          "30 dB range keeps the third (%d)", n);
    CHECK(mmd_eval_find_peaks(m, az.count, el.count, &az, &el, 30, pk, 1, &n, &all) == MMD_OK && n == 1 && all == 3 &&
              pk[0].az_deg == 20,
          "max = 1 keeps the strongest, counts all (%d of %d)", n, all);
    free(m);

    /* plateaus and ties, on a 5 x 8 map */
    mmd_cfg_grid a8 = grid(0, 70, 10), e5 = grid(-20, 20, 10);
    float p[40];
    for (int i = 0; i < 40; i++) p[i] = 0.01f;
    p[2 * 8 + 2] = p[2 * 8 + 3] = p[2 * 8 + 4] = 1.0f; /* a ridge of three: one peak, its middle */
    p[0 * 8 + 7] = 0.5f, p[1 * 8 + 7] = 0.5f;           /* a vertical pair at the right edge */
    p[4 * 8 + 0] = 0.5f;                                 /* same value as the pair: a tie */
    CHECK(mmd_eval_find_peaks(p, 8, 5, &a8, &e5, 40, pk, 16, &n, &all) == MMD_OK && all == 3,
          "ridge + pair + single: three peaks, got %d", all);
    if (all == 3) {
        CHECK(pk[0].az_deg == 30 && pk[0].el_deg == 0, "ridge peak at its middle (30, 0), got (%g, %g)", pk[0].az_deg,
              pk[0].el_deg);
        /* tie of the pair (rows 0-1, column 7) and the single (row 4, column 0): scan order,
         * the pair's representative is its first bin in scan order (equal distances) */
        CHECK(pk[1].i_el == 0 && pk[1].i_az == 7 && pk[2].i_el == 4 && pk[2].i_az == 0,
              "tie broken by scan order: (%d,%d) then (%d,%d)", pk[1].i_el, pk[1].i_az, pk[2].i_el, pk[2].i_az);
    }
    /* a plateau next to a higher bin is not a peak */
    for (int i = 0; i < 40; i++) p[i] = 0.01f;
    p[8 + 1] = p[8 + 2] = 0.5f;
    p[2 * 8 + 3] = 0.7f;
    CHECK(mmd_eval_find_peaks(p, 8, 5, &a8, &e5, 40, pk, 16, &n, &all) == MMD_OK && all == 1 && pk[0].i_az == 3,
          "plateau touching a higher bin is no peak (%d peaks)", all);
    /* a plateau across the azimuth seam of a 360-degree grid: one peak at its middle */
    mmd_cfg_grid a36 = grid(0, 350, 10);
    float q[36 * 3];
    for (int i = 0; i < 36 * 3; i++) q[i] = 0.1f;
    q[36 + 35] = q[36 + 0] = q[36 + 1] = 2.0f;
    mmd_cfg_grid e3 = grid(-10, 10, 10);
    CHECK(mmd_eval_find_peaks(q, 36, 3, &a36, &e3, 40, pk, 16, &n, &all) == MMD_OK && all == 1 && pk[0].az_deg == 0 &&
              pk[0].el_deg == 0,
          "plateau across the seam: one peak at 0, got %d at %g", all, pk[0].az_deg);
    /* a constant map is one plateau with no higher neighbour: one peak */
    for (int i = 0; i < 40; i++) p[i] = 0.25f;
    CHECK(mmd_eval_find_peaks(p, 8, 5, &a8, &e5, 40, pk, 16, &n, &all) == MMD_OK && all == 1,
          "constant map: one peak (%d)", all);

    /* empty and bad maps */
    for (int i = 0; i < 40; i++) p[i] = 0;
    CHECK(mmd_eval_find_peaks(p, 8, 5, &a8, &e5, 40, pk, 16, &n, &all) == MMD_OK && n == 0 && all == 0,
          "all-zero map: no peaks");
    p[13] = NAN;
    CHECK(mmd_eval_find_peaks(p, 8, 5, &a8, &e5, 40, pk, 16, &n, &all) == MMD_ERR_INVALID &&
              strstr(mmd_last_error(), "elevation 1, azimuth 5") && strstr(mmd_last_error(), "nan"),
          "NaN bin named: %s", mmd_last_error());
    p[13] = -1;
    CHECK(mmd_eval_find_peaks(p, 8, 5, &a8, &e5, 40, pk, 16, &n, &all) == MMD_ERR_INVALID &&
              strstr(mmd_last_error(), ">= 0"),
          "negative bin refused: %s", mmd_last_error());
}

/* every one-to-one assignment within the threshold, exhaustively */
static void brute_match(const mmd_eval_peak *a, int na, const mmd_eval_peak *b, int nb, double thr, int i, int used,
                        int cnt, double sum, int *best_cnt, double *best_sum)
{
    if (i == na) {
        if (cnt > *best_cnt || (cnt == *best_cnt && sum < *best_sum - 1e-12)) *best_cnt = cnt, *best_sum = sum;
        return;
    }
    brute_match(a, na, b, nb, thr, i + 1, used, cnt, sum, best_cnt, best_sum);
    for (int j = 0; j < nb; j++) {
        if (used & (1 << j)) continue;
        double d = mmd_eval_angle_deg(a[i].az_deg, a[i].el_deg, b[j].az_deg, b[j].el_deg);
        if (d <= thr) brute_match(a, na, b, nb, thr, i + 1, used | (1 << j), cnt + 1, sum + d, best_cnt, best_sum);
    }
}

static void test_match(void)
{
    /* the greedy trap: A is closest to X, but B can only take X */
    mmd_eval_peak pred[2] = {{10, 0, 0, 0, 0}, {6, 0, -3, 0, 0}}, truth[2] = {{9, 0, 0, 0, 0}, {12, 0, -1, 0, 0}};
    mmd_eval_topk t;
    CHECK(mmd_eval_match(pred, 2, truth, 2, 4, &t) == MMD_OK && t.n_matched == 2 && t.match[0] == 1 &&
              t.match[1] == 0,
          "optimal matching takes both pairs (%d: %d %d)", t.n_matched, t.match[0], t.match[1]);
    CHECK_NEAR(t.aae_deg, (2 + 3) / 2.0, 1e-9, "AAE of the optimal pairs");
    CHECK_NEAR(t.ape_db, (1 + 3) / 2.0, 1e-9, "APE of the optimal pairs");
    CHECK_NEAR(t.f1, 1, 0, "F1 of a full matching");
    /* random instances against brute force */
    mmd_rng r;
    mmd_rng_seed(&r, 7, 1);
    int bad = 0;
    for (int it = 0; it < 300; it++) {
        int na = (int)(mmd_rng_u32(&r) % 7), nb = (int)(mmd_rng_u32(&r) % 7);
        mmd_eval_peak a[6], b[6];
        for (int i = 0; i < na; i++) a[i] = (mmd_eval_peak){20 * mmd_rng_uniform(&r), 10 * mmd_rng_uniform(&r), 0, 0, 0};
        for (int i = 0; i < nb; i++) b[i] = (mmd_eval_peak){20 * mmd_rng_uniform(&r), 10 * mmd_rng_uniform(&r), 0, 0, 0};
        int bc = 0;
        double bs = 0;
        brute_match(a, na, b, nb, 6, 0, 0, 0, 0, &bc, &bs);
        if (mmd_eval_match(a, na, b, nb, 6, &t) != MMD_OK) bad++;
        double s = 0;
        int used = 0, dup = 0;
        for (int i = 0; i < na; i++)
            if (t.match[i] >= 0) {
                s += t.err_deg[i];
                dup |= used & (1 << t.match[i]);
                used |= 1 << t.match[i];
            }
        if (t.n_matched != bc || fabs(s - bs) > 1e-9 || dup) bad++;
    }
    CHECK(bad == 0, "Hungarian matching equals brute force on 300 random instances (%d differ)", bad);
    /* empty lists */
    CHECK(mmd_eval_match(pred, 0, truth, 0, 5, &t) == MMD_OK && t.f1 == 1 && isnan(t.aae_deg),
          "both empty: F1 1, no AAE");
    CHECK(mmd_eval_match(pred, 2, truth, 0, 5, &t) == MMD_OK && t.f1 == 0 && t.n_matched == 0,
          "nothing to match: F1 0");
}

static void test_metrics(void)
{
    mmd_eval_options o = mmd_eval_defaults();
    mmd_cfg_grid az = grid(-180, 179, 1), el = grid(-40, 40, 1);
    size_t per = (size_t)az.count * el.count;
    blob tb[4] = {{0, 0, 0}, {-120, 10, -6}, {90, -20, -9}, {179, 0, -12}};
    float *truth = blobs(&az, &el, tb, 4);
    mmd_eval_pose e;
    /* identical maps */
    CHECK(mmd_eval_pose_metrics(truth, truth, az.count, el.count, &az, &el, &o, &e) == MMD_OK, "identical: %s",
          mmd_last_error());
    CHECK(e.top[0].f1 == 1 && e.top[0].aae_deg == 0 && e.top[0].ape_db == 0 && e.top[1].f1 == 1 &&
              e.top[1].aae_deg == 0 && e.top[1].ape_db == 0 && e.power_err_db == 0,
          "identical maps: F1 1, AAE 0, APE 0, power 0");
    CHECK(e.n_peaks_truth == 4 && e.top[1].n_truth == 4 && e.top[1].n_pred == 4,
          "fewer than K = 5 peaks: lists of 4 (%d, %d)", e.top[1].n_truth, e.top[1].n_pred);
    /* shifted: every peak 2 deg further in azimuth (the one at 179 wraps to -179) */
    blob sb[4];
    for (int k = 0; k < 4; k++) sb[k] = tb[k], sb[k].az += 2;
    float *shifted = blobs(&az, &el, sb, 4);
    CHECK(mmd_eval_pose_metrics(shifted, truth, az.count, el.count, &az, &el, &o, &e) == MMD_OK, "shifted");
    double want = 0;
    for (int k = 0; k < 4; k++) want += 2 * asin(cos(tb[k].el * DEG) * sin(1 * DEG)) / DEG;
    want /= 4;
    CHECK(e.top[1].n_matched == 4, "shifted: all four matched (%d)", e.top[1].n_matched);
    CHECK_NEAR(e.top[1].aae_deg, want, 1e-9, "shifted by 2 deg of azimuth: AAE = mean 2 asin(cos el sin 1 deg)");
    CHECK_NEAR(e.top[0].aae_deg, 2, 1e-9, "top-1 on the equator: AAE 2 deg");
    CHECK(e.top[1].ape_db < 1e-4, "shifted: APE ~0 (%g)", e.top[1].ape_db);
    /* beyond the threshold: nothing matches */
    mmd_eval_options o2 = o;
    o2.match_threshold_deg = 1.5;
    CHECK(mmd_eval_pose_metrics(shifted, truth, az.count, el.count, &az, &el, &o2, &e) == MMD_OK &&
              e.top[0].n_matched == 0 && e.top[0].f1 == 0 && isnan(e.top[0].aae_deg),
          "shift beyond the threshold: F1 0");
    /* scaled by +3 dB */
    float *scaled = malloc(per * sizeof *scaled);
    for (size_t i = 0; i < per; i++) scaled[i] = truth[i] * (float)pow(10.0, 0.3);
    CHECK(mmd_eval_pose_metrics(scaled, truth, az.count, el.count, &az, &el, &o, &e) == MMD_OK && e.top[1].f1 == 1 &&
              e.top[1].aae_deg == 0,
          "scaled: same peaks");
    CHECK_NEAR(e.top[1].ape_db, 3, 1e-5, "scaled by 3 dB: APE 3 dB");
    CHECK_NEAR(e.power_err_db, 3, 1e-5, "scaled by 3 dB: power error 3 dB");
    /* one predicted peak missing: top-5 F1 = 2 * 3 / (3 + 4) */
    float *miss = blobs(&az, &el, tb, 3);
    CHECK(mmd_eval_pose_metrics(miss, truth, az.count, el.count, &az, &el, &o, &e) == MMD_OK &&
              e.top[1].n_matched == 3,
          "one missing peak");
    CHECK_NEAR(e.top[1].f1, 6.0 / 7.0, 1e-12, "F1 with a missing peak");
    /* empty prediction */
    float *zero = calloc(per, sizeof *zero);
    CHECK(mmd_eval_pose_metrics(zero, truth, az.count, el.count, &az, &el, &o, &e) == MMD_OK && e.top[0].f1 == 0 &&
              e.n_peaks_pred == 0 && isnan(e.power_err_db) && isinf(e.power_pred_db),
          "empty prediction: F1 0, power error undefined");
    CHECK(mmd_eval_pose_metrics(zero, zero, az.count, el.count, &az, &el, &o, &e) == MMD_OK && e.top[0].f1 == 1 &&
              isnan(e.top[0].aae_deg),
          "two empty maps agree: F1 1");

    /* several poses: pooled F1, AAE over all pairs, summary, files */
    float *pred = malloc(3 * per * sizeof *pred), *tr = malloc(3 * per * sizeof *tr);
    memcpy(pred, truth, per * sizeof *pred), memcpy(tr, truth, per * sizeof *tr);
    memcpy(pred + per, shifted, per * sizeof *pred), memcpy(tr + per, truth, per * sizeof *tr);
    memcpy(pred + 2 * per, miss, per * sizeof *pred), memcpy(tr + 2 * per, truth, per * sizeof *tr);
    mmd_eval_pose *pp = NULL;
    mmd_eval_summary s;
    CHECK(mmd_eval_spectra(pred, tr, 3, az.count, el.count, &az, &el, &o, &pp, &s) == MMD_OK, "three poses: %s",
          mmd_last_error());
    CHECK(s.top[1].n_matched == 11 && s.top[1].n_pred == 11 && s.top[1].n_truth == 12, "pooled counts %zu %zu %zu",
          s.top[1].n_matched, s.top[1].n_pred, s.top[1].n_truth);
    CHECK_NEAR(s.top[1].f1, 22.0 / 23.0, 1e-12, "pooled top-5 F1");
    CHECK_NEAR(s.top[1].aae_deg, 4 * want / 11, 1e-9, "pooled AAE: the shifted pose's 4 pairs among 11");
    CHECK_NEAR(s.top[0].f1, 1, 0, "top-1 F1");
    CHECK_NEAR(s.top[0].aae_deg, 2.0 / 3, 1e-9, "top-1 AAE over 3 poses");
    CHECK(s.n_power == 3 && s.power_error_db < 0.15, "power error over 3 poses (%g)", s.power_error_db);
    CHECK(mmd_eval_write_csv(tmp("per_pose.csv"), pp, 3, NULL, &o) == MMD_OK, "per-pose CSV: %s", mmd_last_error());
    char *text = NULL;
    size_t len = 0;
    if (mmd_read_file(tmp("per_pose.csv"), &text, &len) == MMD_OK) {
        int lines = 0;
        for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
        CHECK(lines == 4 && !strncmp(text, "pose,pred_peaks,truth_peaks", 27) && strstr(text, "top5_aae_deg"),
              "CSV: header + 3 rows (%d lines)", lines);
        free(text);
    }
    mmd_json j;
    mmd_json_init(&j);
    mmd_json_begin_object(&j);
    mmd_eval_json(&j, &s);
    mmd_eval_json_thresholds(&j, &o);
    mmd_json_end_object(&j);
    const char *js = mmd_json_text(&j);
    CHECK(mmd_json_status(&j) == MMD_OK && strstr(js, "\"top1\": {") && strstr(js, "\"top5\": {") &&
              strstr(js, "\"aae_deg\"") && strstr(js, "\"ape_db\"") && strstr(js, "\"power_error_db\"") &&
              strstr(js, "\"match_threshold_deg\": 5") && strstr(js, "\"dynamic_range_db\": 20"),
          "metrics JSON keys and thresholds: %.300s", js);
    mmd_json_free(&j);
    /* a NaN in the prediction names the pose */
    free(pp);
    pred[per + 77] = NAN;
    CHECK(mmd_eval_spectra(pred, tr, 3, az.count, el.count, &az, &el, &o, &pp, &s) == MMD_ERR_INVALID &&
              strstr(mmd_last_error(), "pose 1") && strstr(mmd_last_error(), "predicted"),
          "NaN in a predicted spectrum: %s", mmd_last_error());
    CHECK(pp == NULL, "no per-pose array after a failure");
    free(pred);
    free(tr);
    free(zero);
    free(miss);
    free(scaled);
    free(shifted);
    free(truth);
}

/* ---------------------------------------------------------------------------------------
 * Pose sets
 */

/* Brute force, written differently from the library: the nearest point of the plane,
 * kept when its barycentric coordinates are inside, else the nearest point of the edges. */
static double brute_seg(const double p[3], const double *a, const double *b)
{
    double ab[3], ap[3], l = 0, t = 0;
    for (int k = 0; k < 3; k++) ab[k] = b[k] - a[k], ap[k] = p[k] - a[k], l += ab[k] * ab[k], t += ap[k] * ab[k];
    t = l > 0 ? fmin(fmax(t / l, 0), 1) : 0;
    double d = 0;
    for (int k = 0; k < 3; k++) d += (ap[k] - t * ab[k]) * (ap[k] - t * ab[k]);
    return sqrt(d);
}

static double brute_distance(const mmd_scene *s, const double p[3])
{
    double best = INFINITY;
    for (uint32_t t = 0; t < s->n_triangles; t++) {
        double v[3][3];
        for (int i = 0; i < 3; i++)
            for (int k = 0; k < 3; k++) v[i][k] = s->vertices[3 * s->indices[3 * t + i] + k];
        double e0[3], e1[3], w[3];
        for (int k = 0; k < 3; k++) e0[k] = v[1][k] - v[0][k], e1[k] = v[2][k] - v[0][k], w[k] = p[k] - v[0][k];
        double a = 0, b = 0, c = 0, d = 0, e = 0;
        for (int k = 0; k < 3; k++) a += e0[k] * e0[k], b += e0[k] * e1[k], c += e1[k] * e1[k], d += w[k] * e0[k], e += w[k] * e1[k];
        double den = a * c - b * b, dist = INFINITY;
        if (den > 1e-18 * a * c) {
            double u = (c * d - b * e) / den, vv = (a * e - b * d) / den;
            if (u >= 0 && vv >= 0 && u + vv <= 1) {
                double q = 0;
                for (int k = 0; k < 3; k++) {
                    double x = w[k] - u * e0[k] - vv * e1[k];
                    q += x * x;
                }
                dist = sqrt(q);
            }
        }
        if (!isfinite(dist))
            dist = fmin(brute_seg(p, v[0], v[1]), fmin(brute_seg(p, v[1], v[2]), brute_seg(p, v[2], v[0])));
        if (dist < best) best = dist;
    }
    return best;
}

static int brute_inside(const mmd_scene *s, const double p[3], double reach)
{
    for (int k = 0; k < 6; k++) {
        float d[3] = {0, 0, 0};
        d[k / 2] = k & 1 ? -1.0f : 1.0f;
        mmd_ray r = {(float)p[0], (float)p[1], (float)p[2], 0, d[0], d[1], d[2], (float)reach};
        if (!mmd_brute_any(s->vertices, s->indices, s->n_triangles, &r)) return 0;
    }
    return 1;
}

/* A closed 4 x 3 x 2.5 m room with a 0.4 m square pillar from floor to ceiling. */
static void box(FILE *f, const double lo[3], const double hi[3])
{
    for (int i = 0; i < 8; i++)
        fprintf(f, "%g %g %g\n", i & 1 ? hi[0] : lo[0], i & 2 ? hi[1] : lo[1], i & 4 ? hi[2] : lo[2]);
}

static const char *write_room(void)
{
    const char *path = tmp("room.ply");
    FILE *f = fopen(path, "w");
    if (!f) return path;
    fprintf(f, "ply\nformat ascii 1.0\nelement vertex 16\nproperty float x\nproperty float y\nproperty float z\n"
               "element face 24\nproperty list uchar int vertex_indices\nend_header\n");
    double a[3] = {0, 0, 0}, b[3] = {4, 3, 2.5}, c[3] = {1.8, 1.3, 0}, d[3] = {2.2, 1.7, 2.5};
    box(f, a, b);
    box(f, c, d);
    static const int q[6][4] = {{0, 1, 3, 2}, {4, 5, 7, 6}, {0, 1, 5, 4}, {2, 3, 7, 6}, {0, 2, 6, 4}, {1, 3, 7, 5}};
    for (int o = 0; o < 2; o++)
        for (int k = 0; k < 6; k++) {
            fprintf(f, "3 %d %d %d\n", 8 * o + q[k][0], 8 * o + q[k][1], 8 * o + q[k][2]);
            fprintf(f, "3 %d %d %d\n", 8 * o + q[k][0], 8 * o + q[k][2], 8 * o + q[k][3]);
        }
    fclose(f);
    return path;
}

static void check_sets(const char *label, const mmd_scene *s, const mmd_bvh *b, const mmd_cfg_dataset *d)
{
    mmd_cfg_pose *rp = NULL, *tp = NULL;
    size_t nr = 0, nt = 0;
    mmd_status st = mmd_poses_rand(s, b, d, &rp, &nr);
    CHECK(st == MMD_OK && nr == (size_t)d->rand_poses, "%s: RAND: %s", label, st ? mmd_last_error() : "ok");
    st = mmd_poses_traj(s, b, d, &tp, &nt);
    CHECK(st == MMD_OK && nt == (size_t)d->traj_poses, "%s: TRAJ: %s", label, st ? mmd_last_error() : "ok");
    double reach = 0;
    for (int k = 0; k < 3; k++) reach += pow(s->bbox_max[k] - s->bbox_min[k], 2);
    reach = sqrt(reach) * 1.01;
    int outside = 0, close = 0, badz = 0, badyaw = 0;
    double pitch2 = 0;
    for (size_t k = 0; k < nr; k++) {
        const double *p = rp[k].position_m;
        outside += !brute_inside(s, p, reach);
        close += brute_distance(s, p) < d->clearance_m - 1e-9;
        badz += p[2] < d->height_m[0] || p[2] > d->height_m[1];
        badyaw += !(rp[k].yaw_deg >= -180 && rp[k].yaw_deg < 180);
        pitch2 += rp[k].pitch_deg * rp[k].pitch_deg;
    }
    CHECK(nr && !outside && !close && !badz && !badyaw,
          "%s: RAND poses inside (%d out), >= clearance (%d closer), in height (%d), yaw range (%d)", label, outside,
          close, badz, badyaw);
    if (nr > 50)
        CHECK(fabs(sqrt(pitch2 / nr) - d->pitch_jitter_deg) < 0.3 * d->pitch_jitter_deg, "%s: RAND pitch std %g",
              label, sqrt(pitch2 / nr));
    outside = close = badz = 0;
    int steplen = 0, blocked = 0, midclose = 0, yawoff = 0, sharp = 0;
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (size_t k = 0; k < nt; k++) {
        const double *p = tp[k].position_m;
        outside += !brute_inside(s, p, reach);
        close += brute_distance(s, p) < d->clearance_m - 1e-9;
        badz += p[2] < d->height_m[0] - 1e-12 || p[2] > d->height_m[1] + 1e-12;
        xlo = fmin(xlo, p[0]), xhi = fmax(xhi, p[0]), ylo = fmin(ylo, p[1]), yhi = fmax(yhi, p[1]);
        if (k + 1 == nt) break;
        const double *q = tp[k + 1].position_m;
        double dd[3] = {q[0] - p[0], q[1] - p[1], q[2] - p[2]}, m[3];
        double len = sqrt(dd[0] * dd[0] + dd[1] * dd[1] + dd[2] * dd[2]);
        steplen += fabs(len - d->traj_step_m) > 1e-9;
        mmd_ray r = {(float)p[0], (float)p[1], (float)p[2], 0, (float)dd[0], (float)dd[1], (float)dd[2], 1.0f};
        blocked += mmd_brute_any(s->vertices, s->indices, s->n_triangles, &r);
        for (int i = 0; i < 3; i++) m[i] = p[i] + 0.5 * dd[i];
        midclose += brute_distance(s, m) < d->clearance_m - 0.5 * d->traj_step_m;
        double yaw = atan2(dd[1], dd[0]) / DEG, diff = fmod(fabs(yaw - tp[k].yaw_deg), 360.0);
        yawoff += fmin(diff, 360 - diff) > 1e-9;
        if (k > 0) {
            double t = fmod(fabs(tp[k].yaw_deg - tp[k - 1].yaw_deg), 360.0);
            sharp += fmin(t, 360 - t) > 10.0;
        }
    }
    CHECK(nt && !outside && !close && !badz, "%s: TRAJ poses inside (%d out), >= clearance (%d), in height (%d)",
          label, outside, close, badz);
    CHECK(!steplen && !blocked && !midclose,
          "%s: TRAJ steps exactly traj_step_m (%d off), crossing no triangle (%d), away from surfaces (%d)", label,
          steplen, blocked, midclose);
    CHECK(!yawoff, "%s: TRAJ yaw = heading of the step that leaves the pose (%d off)", label, yawoff);
    CHECK(sharp <= (int)(nt / 50), "%s: TRAJ turns smoothly (%d of %zu yaw changes > 10 deg)", label, sharp, nt);
    CHECK(xhi - xlo > 1.0 && yhi - ylo > 1.0, "%s: TRAJ goes through the room (%.2f x %.2f m)", label, xhi - xlo,
          yhi - ylo);
    /* determinism */
    mmd_cfg_pose *r2 = NULL, *t2 = NULL;
    size_t n2 = 0, m2 = 0;
    if (mmd_poses_rand(s, b, d, &r2, &n2) == MMD_OK && mmd_poses_traj(s, b, d, &t2, &m2) == MMD_OK)
        CHECK(n2 == nr && m2 == nt && !memcmp(r2, rp, nr * sizeof *rp) && !memcmp(t2, tp, nt * sizeof *tp),
              "%s: same seed, same poses", label);
    free(r2);
    free(t2);
    mmd_cfg_dataset d2 = *d;
    d2.seed++;
    if (mmd_poses_traj(s, b, &d2, &t2, &m2) == MMD_OK)
        CHECK(memcmp(t2, tp, nt * sizeof *tp) != 0, "%s: another seed, another trajectory", label);
    free(t2);
    free(rp);
    free(tp);
}

static void test_poses(void)
{
    mmd_cfg_dataset d = {.traj_poses = 600, .rand_poses = 150, .traj_step_m = 0.05, .clearance_m = 0.3,
                         .height_m = {1.0, 2.0}, .pitch_jitter_deg = 5, .seed = 3};
    const char *scenes[2] = {write_room(), mmd_test_path("scenes/indoor/nist_conference_room/scene.yaml")};
    for (int k = 0; k < 2; k++) {
        mmd_scene *s = NULL;
        mmd_bvh *b = NULL;
        if (mmd_scene_load(scenes[k], &s) != MMD_OK || mmd_bvh_build(s->vertices, s->indices, s->n_triangles, NULL, &b) != MMD_OK) {
            CHECK(0, "scene %s: %s", scenes[k], mmd_last_error());
            mmd_scene_destroy(s);
            continue;
        }
        /* the BVH sphere query equals brute force */
        mmd_rng r;
        mmd_rng_seed(&r, 5, 9);
        int diff = 0;
        for (int i = 0; i < 300; i++) {
            double p[3];
            for (int c = 0; c < 3; c++)
                p[c] = s->bbox_min[c] - 0.2 + (s->bbox_max[c] - s->bbox_min[c] + 0.4) * mmd_rng_uniform(&r);
            double want = brute_distance(s, p), got = mmd_eval_surface_distance(b, p, 10.0);
            diff += fabs(fmin(want, 10.0) - got) > 1e-6;
            got = mmd_eval_surface_distance(b, p, 0.3);
            diff += fabs(fmin(want, 0.3) - got) > 1e-6;
        }
        CHECK(diff == 0, "%s: surface distance = brute force at 300 points (%d differ)", scenes[k], diff);
        check_sets(k ? "conference room" : "box room with pillar", s, b, &d);
        /* bad settings name the key */
        mmd_cfg_dataset bad = d;
        bad.clearance_m = 2.0;
        mmd_cfg_pose *p = NULL;
        size_t n = 0;
        CHECK(mmd_poses_rand(s, b, &bad, &p, &n) == MMD_ERR_INVALID && strstr(mmd_last_error(), "clearance_m"),
              "clearance wider than the room: %s", mmd_last_error());
        bad = d;
        bad.height_m[0] = 5, bad.height_m[1] = 6;
        CHECK(mmd_poses_traj(s, b, &bad, &p, &n) == MMD_ERR_INVALID && strstr(mmd_last_error(), "dataset.height_m"),
              "heights above the ceiling: %s", mmd_last_error());
        mmd_bvh_destroy(b);
        mmd_scene_destroy(s);
    }
}

static void test_noise(void)
{
    enum { NE = 20, NA = 50, N = 3 };
    float *a = malloc(sizeof(float) * N * NE * NA), *b = malloc(sizeof(float) * N * NE * NA);
    for (int i = 0; i < N * NE * NA; i++) a[i] = (float)pow(10.0, -0.1 * (i % 70)); /* 0 .. -69 dB */
    memcpy(b, a, sizeof(float) * N * NE * NA);
    CHECK(mmd_eval_measurement_noise(b, N, NE, NA, 0, 0, 0, 1, 1) == MMD_OK &&
              !memcmp(a, b, sizeof(float) * N * NE * NA),
          "no noise, no floor: unchanged");
    CHECK(mmd_eval_measurement_noise(b, N, NE, NA, 1.0, 0, 0, 1, 1) == MMD_OK, "1 dB noise");
    double s = 0, s2 = 0;
    for (int i = 0; i < N * NE * NA; i++) {
        double x = 10 * log10(b[i] / a[i]);
        s += x, s2 += x * x;
    }
    double mean = s / (N * NE * NA), sd = sqrt(s2 / (N * NE * NA) - mean * mean);
    CHECK(fabs(sd - 1) < 0.05 && fabs(mean) < 0.06, "log-normal noise: %g dB mean, %g dB std", mean, sd);
    float *c = malloc(sizeof(float) * N * NE * NA);
    memcpy(c, a, sizeof(float) * N * NE * NA);
    mmd_eval_measurement_noise(c, N, NE, NA, 1.0, 0, 0, 1, 1);
    CHECK(!memcmp(b, c, sizeof(float) * N * NE * NA), "noise is seeded");
    memcpy(c, a, sizeof(float) * N * NE * NA);
    CHECK(mmd_eval_measurement_noise(c, N, NE, NA, 0, 1, -40, 1, 1) == MMD_OK, "floor");
    int bad = 0;
    for (int k = 0; k < N; k++) {
        float mx = 0;
        for (int i = 0; i < NE * NA; i++) mx = fmaxf(mx, a[k * NE * NA + i]);
        for (int i = 0; i < NE * NA; i++) {
            float want = fmaxf(a[k * NE * NA + i], mx * 1e-4f);
            bad += fabsf(c[k * NE * NA + i] - want) > 1e-6f * want;
        }
    }
    CHECK(bad == 0, "floor at -40 dB of each maximum (%d bins off)", bad);
    CHECK(mmd_eval_measurement_noise(c, N, NE, NA, -1, 0, 0, 1, 1) == MMD_ERR_INVALID &&
              strstr(mmd_last_error(), "measurement_noise_db"),
          "negative sigma: %s", mmd_last_error());
    free(a);
    free(b);
    free(c);
}

/* ---------------------------------------------------------------------------------------
 * NeRF²
 */

static int write_png(const char *path, int w, int h, int comp, const unsigned char *px)
{
    return stbi_write_png(path, w, h, comp, px, w * comp);
}

static const char *k_gateway = "dataset_name: s23\ngateway1:\n  position: [5.0, 0.26, 0]\n"
                               "  orientation:  [ 0.51291602, -0.48674136, -0.48674136,  0.51291602]  # quaternion";

static void make_nerf2_dir(const char *dir, int n_png, int n_rows)
{
    char p[1100];
    snprintf(p, sizeof p, "mkdir -p %s/spectrum", dir);
    if (system(p) != 0) return;
    unsigned char *px = malloc(360 * 90);
    for (int k = 1; k <= n_png; k++) {
        memset(px, 10, 360 * 90);
        px[30 * 360 + 100] = 255;  /* az 100, el 30 */
        px[60 * 360 + 359] = 200;  /* az 359, el 60: its right neighbour wraps to column 0 */
        px[60 * 360 + 0] = 150;
        px[(k % 90) * 360 + 200] = 120; /* one per file */
        snprintf(p, sizeof p, "%s/spectrum/%05d.png", dir, k);
        write_png(p, 360, 90, 1, px);
    }
    free(px);
    char text[4096];
    size_t n = (size_t)snprintf(text, sizeof text, "x,y,z\r\n");
    for (int k = 0; k < n_rows; k++) n += (size_t)snprintf(text + n, sizeof text - n, "%.4f,%.4f,1.0%d\r\n", 0.1 * k, -0.2 * k, k);
    snprintf(p, sizeof p, "%s/tx_pos.csv", dir);
    write_text(p, text);
    snprintf(p, sizeof p, "%s/gateway_info.yml", dir);
    write_text(p, k_gateway);
    snprintf(p, sizeof p, "%s/train_index.txt", dir);
    write_text(p, "00002\n00001\n");
    snprintf(p, sizeof p, "%s/test_index.txt", dir);
    write_text(p, "00003\n");
}

static void rot_of_quat(const double q[4], double R[9])
{
    double x = q[0], y = q[1], z = q[2], w = q[3];
    R[0] = 1 - 2 * (y * y + z * z), R[1] = 2 * (x * y - z * w), R[2] = 2 * (x * z + y * w);
    R[3] = 2 * (x * y + z * w), R[4] = 1 - 2 * (x * x + z * z), R[5] = 2 * (y * z - x * w);
    R[6] = 2 * (x * z - y * w), R[7] = 2 * (y * z + x * w), R[8] = 1 - 2 * (x * x + y * y);
}

static void test_nerf2(void)
{
    /* poses: the ypr of the quaternion gives back its rotation */
    double qs[4][4] = {{0.51291602, -0.48674136, -0.48674136, 0.51291602},
                       {0.1, 0.2, 0.3, 0.927},
                       {0, 0.7071067811865476, 0, 0.7071067811865476}, /* pitch 90: gimbal lock */
                       {0, 0, 0, 1}};
    for (int k = 0; k < 4; k++) {
        double n = sqrt(qs[k][0] * qs[k][0] + qs[k][1] * qs[k][1] + qs[k][2] * qs[k][2] + qs[k][3] * qs[k][3]);
        for (int i = 0; i < 4; i++) qs[k][i] /= n;
        double pos[3] = {1, 2, 3}, R[9], Q[9], e = 0;
        mmd_cfg_pose p;
        mmd_nerf2_pose_from_quat(qs[k], pos, &p);
        mmd_rotation_ypr(p.yaw_deg * DEG, p.pitch_deg * DEG, p.roll_deg * DEG, R);
        rot_of_quat(qs[k], Q);
        for (int i = 0; i < 9; i++) e = fmax(e, fabs(R[i] - Q[i]));
        CHECK(e < 1e-9 && p.position_m[2] == 3, "quaternion %d -> yaw %g pitch %g roll %g reproduces R (%g)", k,
              p.yaw_deg, p.pitch_deg, p.roll_deg, e);
    }
    mmd_cfg_pose gp;
    double gpos[3] = {5, 0.26, 0};
    mmd_nerf2_pose_from_quat(qs[0], gpos, &gp);
    CHECK(fabs(gp.yaw_deg + 87.0) < 0.01 && fabs(gp.pitch_deg) < 1e-6 && fabs(gp.roll_deg - 90) < 1e-6,
          "the s23 gateway: yaw -87, pitch 0, roll 90 (%g %g %g)", gp.yaw_deg, gp.pitch_deg, gp.roll_deg);

    /* a hand-made set */
    const char *dir = tmp("nerf2");
    make_nerf2_dir(dir, 3, 3);
    mmd_nerf2_set s;
    mmd_status st = mmd_nerf2_read(dir, "train", &s);
    CHECK(st == MMD_OK, "hand-made NeRF² set: %s", mmd_last_error());
    if (st == MMD_OK) {
        CHECK(s.m.n_poses == 2 && s.stems[0] == 1 && s.stems[1] == 2 && s.m.n_el == 90 && s.m.n_az == 360 &&
                  s.m.frequency_hz == 920e6 && s.m.azimuth_deg.count == 360 && s.m.elevation_deg.stop == 89,
              "train split: 2 spectra in order, 90 x 360, 920 MHz");
        CHECK(s.m.spectra[30 * 360 + 100] == 1.0f &&
                  fabsf(s.m.spectra[0 * 360 + 5] - (float)pow(10 / 255.0, 2)) < 1e-7f,
              "pixel values are (p/255)^2");
        CHECK(s.tx_m[3] == 0.1 && s.tx_m[4] == -0.2 && s.tx_m[5] == 1.01, "tag of spectrum 2 = row 2 of tx_pos.csv");
        CHECK(fabs(s.m.poses[1].yaw_deg + 87) < 0.01 && s.m.poses[1].position_m[0] == 5, "gateway pose");
        mmd_eval_peak pk[4];
        int n = 0, all = 0;
        st = mmd_eval_find_peaks(s.m.spectra, 360, 90, &s.m.azimuth_deg, &s.m.elevation_deg, 60, pk, 4, &n, &all);
        CHECK(st == MMD_OK && all == 3 && pk[0].az_deg == 100 && pk[0].el_deg == 30 && pk[1].az_deg == 359 &&
                  pk[1].el_deg == 60 && pk[2].az_deg == 200 && pk[2].el_deg == 1,
              "bright pixels are the peaks at their (az, el), wrap included (%d: %g,%g %g,%g)", all, pk[0].az_deg,
              pk[0].el_deg, pk[1].az_deg, pk[1].el_deg);
        /* round trip through a measurement set */
        const char *out = tmp("nerf2_set");
        CHECK(mmd_nerf2_write(&s, out) == MMD_OK, "write: %s", mmd_last_error());
        mmd_measurements m;
        if (mmd_measurements_read(out, &m) == MMD_OK) {
            CHECK(m.n_poses == 2 && m.frequency_hz == 920e6 && m.azimuth_deg.start == 0 && m.azimuth_deg.stop == 359 &&
                      !memcmp(m.spectra, s.m.spectra, 2 * 360 * 90 * sizeof(float)) &&
                      fabs(m.poses[0].roll_deg - s.m.poses[0].roll_deg) < 1e-12,
                  "the written set reads back");
            mmd_measurements_free(&m);
        } else {
            CHECK(0, "read back: %s", mmd_last_error());
        }
        mmd_nerf2_free(&s);
    }
    CHECK(mmd_nerf2_read(dir, "all", &s) == MMD_OK && s.m.n_poses == 3 && s.stems[2] == 3, "all = both splits");
    mmd_nerf2_free(&s);
    CHECK(mmd_nerf2_read(dir, "validation", &s) == MMD_ERR_INVALID && strstr(mmd_last_error(), "train, test or all"),
          "unknown split: %s", mmd_last_error());
    /* bad input */
    const char *d2 = tmp("nerf2_rows");
    make_nerf2_dir(d2, 3, 2); /* the test split's spectrum 3 has no tag position */
    CHECK(mmd_nerf2_read(d2, "test", &s) == MMD_ERR_INVALID && strstr(mmd_last_error(), "tx_pos.csv") &&
              strstr(mmd_last_error(), "00003") && strstr(mmd_last_error(), "missing pose row"),
          "missing pose row: %s", mmd_last_error());
    char p[1100];
    snprintf(p, sizeof p, "%s/spectrum/00003.png", d2);
    unsigned char small[359 * 90];
    memset(small, 7, sizeof small);
    write_png(p, 359, 90, 1, small);
    static float img[360 * 90];
    CHECK(mmd_nerf2_read_png(p, img) == MMD_ERR_INVALID &&
              strstr(mmd_last_error(), "00003.png") && strstr(mmd_last_error(), "359 x 90") &&
              strstr(mmd_last_error(), "360 x 90"),
          "wrong PNG size: %s", mmd_last_error());
    static unsigned char rgb[360 * 90 * 3];
    write_png(p, 360, 90, 3, rgb);
    CHECK(mmd_nerf2_read_png(p, img) == MMD_ERR_INVALID && strstr(mmd_last_error(), "greyscale"),
          "RGB PNG: %s", mmd_last_error());
    write_text(p, "not a png");
    CHECK(mmd_nerf2_read_png(p, img) == MMD_ERR_PARSE && strstr(mmd_last_error(), "00003.png"),
          "garbage PNG: %s", mmd_last_error());
    snprintf(p, sizeof p, "%s/tx_pos.csv", d2);
    write_text(p, "x,y\r\n1,2\r\n");
    CHECK(mmd_nerf2_read(d2, "train", &s) == MMD_ERR_PARSE && strstr(mmd_last_error(), "tx_pos.csv:1") &&
              strstr(mmd_last_error(), "'z'"),
          "tag CSV without z: %s", mmd_last_error());
    write_text(p, "x,y,z\r\n1,2,3\r\n4,abc,6\r\n");
    CHECK(mmd_nerf2_read(d2, "train", &s) == MMD_ERR_PARSE && strstr(mmd_last_error(), "tx_pos.csv:3") &&
              strstr(mmd_last_error(), "abc"),
          "non-number in the tag CSV: %s", mmd_last_error());
    snprintf(p, sizeof p, "%s/gateway_info.yml", d2);
    write_text(p, "gateway1:\n  position: [5.0, 0.26]\n  orientation: [0, 0, 0, 1]\n");
    CHECK(mmd_nerf2_read(d2, "train", &s) == MMD_ERR_INVALID && strstr(mmd_last_error(), "gateway_info.yml:2") &&
              strstr(mmd_last_error(), "gateway1.position"),
          "gateway position of two numbers: %s", mmd_last_error());

    /* the real subset: shape, value range, frame */
    const char *real = mmd_test_path("measurements/nerf2_rfid_s23_subset");
    st = mmd_nerf2_read(real, "test", &s);
    CHECK(st == MMD_OK && s.m.n_poses == 40, "real subset, test split: %s", st ? mmd_last_error() : "40 spectra");
    if (st == MMD_OK) {
        int range = 0;
        for (size_t k = 0; k < s.m.n_poses; k++) {
            float lo = 2, hi = -1;
            for (int i = 0; i < 360 * 90; i++) {
                float v = s.m.spectra[k * 360 * 90 + i];
                lo = fminf(lo, v), hi = fmaxf(hi, v);
            }
            range += lo != 0.0f || hi != 1.0f; /* every image is min-max scaled to 0..255 */
        }
        CHECK(range == 0, "every real spectrum spans exactly [0, 1] (%d do not)", range);
        mmd_nerf2_free(&s);
    }
    st = mmd_nerf2_read(real, NULL, &s);
    CHECK(st == MMD_OK && s.m.n_poses == 200 && s.stems[199] == 200, "real subset, all: %s",
          st ? mmd_last_error() : "200");
    if (st == MMD_OK) {
        /* the line of sight through the stored pose: pixels near it are brighter than average
         * (README: +74 levels), which checks the frame, the grid and the row/column order */
        double R[9], near = 0, mean = 0;
        long nn = 0, na = 0;
        const mmd_cfg_pose *g = &s.m.poses[0];
        mmd_rotation_ypr(g->yaw_deg * DEG, g->pitch_deg * DEG, g->roll_deg * DEG, R);
        for (size_t k = 0; k < s.m.n_poses; k++) {
            double v[3], u[3], az, el;
            for (int i = 0; i < 3; i++) v[i] = s.tx_m[3 * k + i] - g->position_m[i];
            mmd_to_local(R, v, u);
            mmd_dir_to_az_el(u, &az, &el);
            for (int r = 0; r < 90; r++)
                for (int c = 0; c < 360; c++) {
                    double a = sqrt(s.m.spectra[k * 32400 + r * 360 + c]) * 255;
                    mean += a, na++;
                    if (mmd_eval_angle_deg(c, r, az / DEG, el / DEG) < 10) near += a, nn++;
                }
        }
        near /= nn ? nn : 1, mean /= na;
        CHECK(near - mean > 50, "pixels within 10 deg of the line of sight: %.1f levels above the mean", near - mean);
        mmd_nerf2_free(&s);
    }
}

/* ---------------------------------------------------------------------------------------
 * Bad input of issue 6 that the library reads (the measurement catalogue of test_train
 * covers the NPY/manifest grid and NaN cases; these are the rest)
 */

static void test_bad_input(void)
{
    /* a measurement set whose poses CSV lacks a column */
    const char *dir = tmp("set_nocol");
    mmd_measurements m;
    memset(&m, 0, sizeof m);
    mmd_cfg_pose poses[2] = {{{1, 2, 1.5}, 10, 0, 0}, {{2, 2, 1.5}, 20, 0, 0}};
    float spec[2 * 3 * 4];
    for (int i = 0; i < 24; i++) spec[i] = 1e-6f * (float)(i + 1);
    m.n_poses = 2, m.poses = poses, m.n_el = 3, m.n_az = 4, m.spectra = spec, m.frequency_hz = 60e9;
    m.azimuth_deg = grid(-30, 60, 30), m.elevation_deg = grid(-10, 10, 10);
    CHECK(mmd_measurements_write(dir, &m, NULL, NULL, 0, "test set") == MMD_OK, "write a set: %s", mmd_last_error());
    mmd_measurements back;
    CHECK(mmd_measurements_read(dir, &back) == MMD_OK && back.n_poses == 2 && back.poses[1].yaw_deg == 20 &&
              back.spectra[23] == spec[23],
          "it reads back: %s", mmd_last_error());
    mmd_measurements_free(&back);
    /* a NaN is refused before anything is touched: the old set still reads */
    spec[5] = NAN;
    CHECK(mmd_measurements_write(dir, &m, NULL, NULL, 0, NULL) == MMD_ERR_INVALID && strstr(mmd_last_error(), "nan") &&
              strstr(mmd_last_error(), "pose 0, bin [elevation 1, azimuth 1]"),
          "NaN refused on write: %s", mmd_last_error());
    CHECK(mmd_measurements_read(dir, &back) == MMD_OK && back.spectra[5] == 6e-6f, "the old set is intact");
    mmd_measurements_free(&back);
    char p[1100];
    snprintf(p, sizeof p, "%s/poses.csv", dir);
    write_text(p, "x_m,y_m,yaw_deg\n1,2,10\n2,2,20\n");
    CHECK(mmd_measurements_read(dir, &back) == MMD_ERR_PARSE && strstr(mmd_last_error(), "poses.csv") &&
              strstr(mmd_last_error(), "z_m"),
          "pose CSV missing z_m: %s", mmd_last_error());
    /* experiment blocks with negative values name their key */
    mmd_experiment e;
    const char *neg = "scene: {file: room.ply, noise: {sigma_m: -0.01}}\ntx: {position_m: [0, 0, 1]}\n";
    CHECK(mmd_experiment_load_string(neg, tmp("neg.yaml"), NULL, 0, &e) == MMD_ERR_INVALID &&
              strstr(mmd_last_error(), "neg.yaml:1") && strstr(mmd_last_error(), "scene.noise.sigma_m"),
          "noise block with negative sigma: %s", mmd_last_error());
    const char *neg2 = "scene: {file: room.ply}\ntx: {position_m: [0, 0, 1]}\ndataset: {measurement_noise_db: -1}\n";
    CHECK(mmd_experiment_load_string(neg2, tmp("neg2.yaml"), NULL, 0, &e) == MMD_ERR_INVALID &&
              strstr(mmd_last_error(), "dataset.measurement_noise_db"),
          "negative measurement noise: %s", mmd_last_error());
}

/* ---------------------------------------------------------------------------------------
 * The commands
 */

static int run(const char *cmd, const char **out)
{
    static char buf[65536];
    char full[16500];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    size_t n = p ? fread(buf, 1, sizeof buf - 1, p) : 0;
    buf[n] = 0;
    int status = p ? pclose(p) : -1;
    *out = buf;
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void expect_fail(const char *bin, const char *what, const char *args, const char *n1, const char *n2,
                        const char *no_file)
{
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "cd %s && MMDIFF_LOG=0 %s %s", g_dir, bin, args);
    const char *out;
    int rc = run(cmd, &out);
    CHECK(rc != 0 && rc < 128 && strstr(out, "error") && strstr(out, n1) && (!n2 || strstr(out, n2)),
          "%s: rc %d, should name '%s'%s%s: %.400s", what, rc, n1, n2 ? " and " : "", n2 ? n2 : "", out);
    if (no_file) CHECK(!exists(tmp(no_file)), "%s: %s not written", what, no_file);
}

static void test_commands(void)
{
    const char *bin = getenv("MMD_BIN");
    char absbin[4096];
    if (!bin || !bin[0]) bin = "build/mmdiff";
    if (realpath(bin, absbin)) bin = absbin;
    if (!exists(bin)) {
        CHECK(0, "no mmdiff binary at %s (set MMD_BIN)", bin);
        return;
    }
    /* the experiment lives in the temp folder: its scene path must be absolute */
    char scene[4096], nerf2[4096];
    if (!realpath(mmd_test_path("scenes/indoor/nist_conference_room/scene.yaml"), scene) ||
        !realpath(mmd_test_path("measurements/nerf2_rfid_s23_subset"), nerf2)) {
        CHECK(0, "shared data not found under %s", mmd_test_shared());
        return;
    }
    char exp[8192];
    snprintf(exp, sizeof exp,
             "scene:\n  file: %s\n  frequency_hz: 60e9\n"
             "  materials: {concrete: {itu: concrete, scattering: 0.2}, wood: {itu: wood, scattering: 0.3}}\n"
             "  noise: {sigma_m: 0.01, hole_fraction: 0.02, seed: 2}\n"
             "tx: {position_m: [1.5, 4.2, 2.2]}\n"
             "rx: {array: {rows: 4, cols: 4, spacing_wavelengths: 0.5, window: hann, element: patch}}\n"
             "aoa: {azimuth_deg: [-180, 175, 5], elevation_deg: [-40, 40, 5]}\n"
             "solver: {rays: 4000, max_depth: 2, seed: 3}\n"
             "dataset: {traj_poses: 8, rand_poses: 5, traj_step_m: 0.05, clearance_m: 0.3, height_m: [1.2, 1.8],\n"
             "          measurement_noise_db: 0.5, noise_floor_db: -40, seed: 4}\n"
             "evaluate: {dynamic_range_db: 15, match_threshold_deg: 8}\n"
             "output: {png: false}\n",
             scene);
    write_text(tmp("exp.yaml"), exp);
    char cmd[16384];
    const char *out;
    snprintf(cmd, sizeof cmd, "cd %s && MMDIFF_LOG=0 %s dataset exp.yaml -o data", g_dir, bin);
    int rc = run(cmd, &out);
    CHECK(rc == 0 && strstr(out, "TRAJ: 8 poses") && strstr(out, "RAND: 5 poses"), "dataset: rc %d: %.600s", rc, out);
    mmd_experiment e;
    int have_e = mmd_experiment_load(tmp("exp.yaml"), NULL, 0, &e) == MMD_OK;
    const char *sets[2] = {"data/TRAJ", "data/RAND"};
    for (int k = 0; k < 2 && have_e; k++) {
        mmd_measurements m;
        mmd_status st = mmd_measurements_read(tmp(sets[k]), &m);
        CHECK(st == MMD_OK, "%s reads: %s", sets[k], mmd_last_error());
        if (st != MMD_OK) continue;
        CHECK(mmd_measurements_check(&m, &e) == MMD_OK, "%s matches the experiment: %s", sets[k], mmd_last_error());
        CHECK(m.n_poses == (k ? 5u : 8u) && m.n_az == 72 && m.n_el == 17, "%s: %zu poses", sets[k], m.n_poses);
        int floor_ok = 1;
        for (size_t i = 0; i < m.n_poses; i++) {
            float mx = 0, mn = INFINITY;
            for (int b = 0; b < m.n_az * m.n_el; b++) {
                float v = m.spectra[i * (size_t)m.n_az * m.n_el + b];
                mx = fmaxf(mx, v), mn = fminf(mn, v);
            }
            floor_ok &= mx > 0 && mn >= mx * 0.99e-4f;
        }
        CHECK(floor_ok, "%s: the noise floor holds every bin within 40 dB of the maximum", sets[k]);
        mmd_measurements_free(&m);
    }
    CHECK(exists(tmp("data/dataset.json")) && exists(tmp("data/experiment.resolved.yaml")) &&
              exists(tmp("data/command.txt")),
          "dataset records");
    /* determinism through the CLI */
    snprintf(cmd, sizeof cmd, "cd %s && MMDIFF_LOG=0 %s dataset exp.yaml -o data2 && cmp data/RAND/spectra.npy "
                              "data2/RAND/spectra.npy && cmp data/TRAJ/poses.csv data2/TRAJ/poses.csv",
             g_dir, bin);
    CHECK(run(cmd, &out) == 0, "dataset is reproducible: %.300s", out);

    /* evaluate: truth against itself, then a prediction on the noisy mesh */
    snprintf(cmd, sizeof cmd, "cd %s && MMDIFF_LOG=0 %s evaluate exp.yaml --pred data/RAND --truth data/RAND -o ev0",
             g_dir, bin);
    rc = run(cmd, &out);
    CHECK(rc == 0 && strstr(out, "top-1") && strstr(out, "1.000"), "evaluate truth vs truth: rc %d: %.500s", rc, out);
    char *js = NULL;
    size_t len = 0;
    if (mmd_read_file(tmp("ev0/metrics.json"), &js, &len) == MMD_OK) {
        CHECK(strstr(js, "\"top1\": {\n    \"f1\": 1,\n    \"aae_deg\": 0,\n    \"ape_db\": 0") &&
                  strstr(js, "\"match_threshold_deg\": 8") && strstr(js, "\"dynamic_range_db\": 15") &&
                  strstr(js, "\"power_error_db\": 0") && strstr(js, "\"n_poses\": 5"),
              "metrics.json of identical sets: %.600s", js);
        free(js);
    } else {
        CHECK(0, "metrics.json: %s", mmd_last_error());
    }
    CHECK(exists(tmp("ev0/per_pose.csv")) && exists(tmp("ev0/command.txt")), "evaluate writes per_pose.csv");
    snprintf(cmd, sizeof cmd, "cd %s && MMDIFF_LOG=0 %s simulate exp.yaml --set rx.poses_csv=data/RAND/poses.csv -o sim "
                              ">/dev/null && MMDIFF_LOG=0 %s evaluate exp.yaml --pred sim --truth data/RAND -o ev1",
             g_dir, bin, bin);
    rc = run(cmd, &out);
    CHECK(rc == 0 && strstr(out, "top-5") && strstr(out, "received-power error"), "evaluate a prediction: rc %d: %.500s",
          rc, out);

    /* bad input through the commands: clear errors, nothing written */
    expect_fail(bin, "evaluate: pose counts differ", "evaluate exp.yaml --pred sim --truth data/TRAJ -o evx",
                "5 poses", "data/TRAJ/poses.csv", "evx");
    expect_fail(bin, "evaluate: other grid", "evaluate exp.yaml --pred sim/spectra.npy --truth data/RAND -o evx "
                                             "--set 'aoa.azimuth_deg=[-90, 90, 5]'",
                "spectra.npy", "azimuth", "evx");
    expect_fail(bin, "evaluate: --pred missing", "evaluate exp.yaml --truth data/RAND -o evx", "--pred", NULL, "evx");
    /* a NaN in the prediction */
    mmd_array a;
    if (mmd_npy_read_f32(tmp("sim/spectra.npy"), &a) == MMD_OK) {
        a.data[17] = NAN;
        mmd_npy_write(tmp("simnan.npy"), MMD_DT_F32, a.shape, a.ndim, a.data);
        mmd_array_free(&a);
    }
    expect_fail(bin, "evaluate: NaN in the prediction", "evaluate exp.yaml --pred simnan.npy --truth data/RAND -o evx",
                "simnan.npy", "nan", "evx");
    /* a truth set whose manifest grid does not match its NPY */
    snprintf(cmd, sizeof cmd, "cd %s && cp -r data/RAND badgrid && sed -i 's/^elevation_deg: .*/elevation_deg: [-45, 45, "
                              "5]/; /^shape:/d' badgrid/manifest.yaml",
             g_dir);
    if (system(cmd) != 0) CHECK(0, "prepare badgrid");
    expect_fail(bin, "evaluate: manifest grid vs NPY", "evaluate exp.yaml --pred sim --truth badgrid -o evx",
                "badgrid/spectra.npy", "shape", "evx");
    /* a noise block with a negative sigma, and bad dataset settings */
    expect_fail(bin, "dataset: negative sigma", "dataset exp.yaml -o datax --set scene.noise.sigma_m=-0.01",
                "scene.noise.sigma_m", NULL, "datax");
    expect_fail(bin, "dataset: clearance too wide", "dataset exp.yaml -o datax --set dataset.clearance_m=3",
                "dataset.clearance_m", NULL, "datax");

    /* import-nerf2 */
    snprintf(cmd, sizeof cmd, "cd %s && MMDIFF_LOG=0 %s import-nerf2 %s n2 --split test", g_dir, bin, nerf2);
    rc = run(cmd, &out);
    CHECK(rc == 0 && strstr(out, "40 spectra"), "import-nerf2: rc %d: %.300s", rc, out);
    mmd_measurements m;
    if (mmd_measurements_read(tmp("n2"), &m) == MMD_OK) {
        CHECK(m.n_poses == 40 && m.n_el == 90 && m.n_az == 360 && m.frequency_hz == 920e6, "imported set reads");
        mmd_measurements_free(&m);
    } else {
        CHECK(0, "imported set: %s", mmd_last_error());
    }
    make_nerf2_dir(tmp("nerf2_rows2"), 3, 2);
    expect_fail(bin, "import-nerf2: missing pose row", "import-nerf2 nerf2_rows2 n2x --split test", "missing pose row",
                NULL, "n2x");
    expect_fail(bin, "import-nerf2: no such directory", "import-nerf2 nowhere n2x", "nowhere", NULL, "n2x");
    if (have_e) mmd_experiment_free(&e);
}

int main(void)
{
    if (!mkdtemp(g_dir)) return 1;
    test_angle();
    test_peaks();
    test_match();
    test_metrics();
    test_noise();
    test_poses();
    test_nerf2();
    test_bad_input();
    test_commands();
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (!getenv("MMD_TEST_KEEP") && system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
    return TEST_DONE();
}
