/*
 * study_theorem1 - reproduces the paper's Theorem 1 figures (SPEC 3) with the host
 * estimator: lobe-vs-specular deviation against the incidence angle for several alpha_r,
 * and the maximum deviation over incidence for TX/RX distances in 1-50 m. Writes PNG
 * plots (and the numbers as CSV) into the directory given (default build/studies).
 *
 *     build/study_theorem1 [OUT_DIR]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmd_io.h"
#include "mmd_physics.h"
#include "mmd_plot.h"

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "build/studies";
    if (mmd_mkdirs(dir) != MMD_OK) {
        fprintf(stderr, "study_theorem1: %s\n", mmd_last_error());
        return 1;
    }
    char path[1024], js[1024];
    double t0 = mmd_now();

    /* 1. deviation vs incidence, 25 m / 25 m, unbounded plate */
    enum { NI = 45, NA = 4 };
    const int alphas[NA] = {10, 50, 120, 400};
    double inc[NI], dev[NA][NI];
    for (int i = 0; i < NI; i++) inc[i] = 2.0 * i; /* 0 .. 88 deg */
    for (int a = 0; a < NA; a++) {
        mmd_thm1 c = {.d_tx_m = 25, .d_rx_m = 25, .incidence_deg = 0, .plate_m = INFINITY, .alpha = alphas[a]};
        if (mmd_theorem1_sweep(&c, inc, NI, dev[a]) != MMD_OK) {
            fprintf(stderr, "study_theorem1: %s\n", mmd_last_error());
            return 1;
        }
    }
    mmd_line_series series[NA];
    char labels[NA][32];
    for (int a = 0; a < NA; a++) {
        snprintf(labels[a], sizeof labels[a], "alpha_r = %d", alphas[a]);
        series[a] = (mmd_line_series){.x = inc, .y = dev[a], .n = NI, .label = labels[a], .markers = true};
    }
    double refs[2] = {0.0, -1.0};
    mmd_lineplot_params lp = mmd_lineplot_defaults();
    lp.series = series;
    lp.n_series = NA;
    lp.title = "Theorem 1: lobe vs specular, TX and RX 25 m from an unbounded plate";
    lp.xlabel = "incidence angle [°]";
    lp.ylabel = "deviation [dB]";
    lp.hlines = refs;
    lp.n_hlines = 2;
    lp.x_angle_ticks = true;
    snprintf(path, sizeof path, "%s/theorem1_incidence.png", dir);
    snprintf(js, sizeof js, "%s/theorem1_incidence.json", dir);
    if (mmd_plot_lines(path, js, &lp) != MMD_OK) {
        fprintf(stderr, "study_theorem1: %s\n", mmd_last_error());
        return 1;
    }
    printf("wrote %s\n", path);
    for (int a = 0; a < NA; a++) {
        double worst = 0;
        for (int i = 0; i < NI; i++) worst = fmax(worst, fabs(dev[a][i]));
        printf("BENCH theorem1_max_dev_inc_alpha%d %.3f dB\n", alphas[a], worst);
    }

    /* 2. max |deviation| over incidence 0..87 deg for distances 1..50 m, alpha 120 */
    enum { ND = 15, NINC = 30 };
    double d[ND], incs[NINC], map[ND * ND];
    const double step = 49.0 / (ND - 1);
    for (int i = 0; i < ND; i++) d[i] = 1.0 + step * i;
    for (int i = 0; i < NINC; i++) incs[i] = 3.0 * i;
    mmd_thm1 base = {.d_tx_m = 25, .d_rx_m = 25, .incidence_deg = 0, .plate_m = INFINITY, .alpha = 120};
    if (mmd_theorem1_max_map(&base, d, ND, d, ND, incs, NINC, map) != MMD_OK) {
        fprintf(stderr, "study_theorem1: %s\n", mmd_last_error());
        return 1;
    }
    /* x = TX distance, y = RX distance, both 1..50 m */
    float img[ND * ND];
    double worst = 0;
    for (int i = 0; i < ND; i++)
        for (int j = 0; j < ND; j++) {
            img[j * ND + i] = (float)map[i * ND + j]; /* x = d_tx, y = d_rx */
            worst = fmax(worst, map[i * ND + j]);
        }
    mmd_heatmap_params hp = mmd_heatmap_defaults();
    hp.data = img;
    hp.nx = hp.ny = ND;
    hp.x0 = hp.y0 = 1.0 - 0.5 * step;
    hp.x1 = hp.y1 = 50.0 + 0.5 * step;
    hp.title = "Theorem 1: max deviation over 0-87 deg, alpha_r = 120";
    hp.xlabel = "TX distance [m]";
    hp.ylabel = "RX distance [m]";
    hp.cbar_label = "max |deviation| [dB]";
    hp.vmin = 0;
    hp.vmax = 3;
    hp.equal_aspect = true;
    snprintf(path, sizeof path, "%s/theorem1_max_map.png", dir);
    snprintf(js, sizeof js, "%s/theorem1_max_map.json", dir);
    if (mmd_plot_heatmap(path, js, &hp) != MMD_OK) {
        fprintf(stderr, "study_theorem1: %s\n", mmd_last_error());
        return 1;
    }
    printf("wrote %s\n", path);
    printf("BENCH theorem1_max_dev_1_50m_alpha120 %.3f dB\n", worst);
    printf("study time %.1f s\n", mmd_now() - t0);
    return 0;
}
