/*
 * fit_colormap.c - generator of the colormap coefficients in src/io/colormap.c.
 *
 * Reads a 256-entry reference colormap (one "r, g, b" line per entry, values in [0,1];
 * e.g. matplotlib's _viridis_data / _magma_data lists from lib/matplotlib/_cm_listed.py,
 * which are CC0) and fits each channel with a least-squares Chebyshev polynomial in
 * x = 2 i/255 - 1 (modified Gram-Schmidt QR in double precision). Prints the coefficient
 * table as C and the fit error against the reference, in 8-bit units.
 *
 *     python3 -c "from matplotlib._cm_listed import _viridis_data as d
 *     for v in d: print(*v, sep=', ')" > viridis.txt
 *     cc -O2 -o fit_colormap tools/fit_colormap.c -lm
 *     ./fit_colormap viridis.txt 17 viridis     # paste the output into src/io/colormap.c
 *
 * Degree 17 keeps both viridis and magma within 0.35/255 of the reference everywhere, so
 * no 8-bit value is more than one level off (degree 15 reaches 0.59/255 on magma).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define N 256
#define MAXC 32

static double ref[N][3];

static void cheb_row(double x, int m, double *row)
{
    row[0] = 1;
    if (m > 1) row[1] = x;
    for (int k = 2; k < m; k++) row[k] = 2 * x * row[k - 1] - row[k - 2];
}

static void fit_channel(int m, int ch, double *c)
{
    static double A[N][MAXC], Q[N][MAXC];
    double R[MAXC][MAXC] = {{0}}, qty[MAXC];
    for (int i = 0; i < N; i++) cheb_row(2.0 * i / (N - 1) - 1.0, m, A[i]);
    for (int k = 0; k < m; k++) {
        for (int i = 0; i < N; i++) Q[i][k] = A[i][k];
        for (int j = 0; j < k; j++) {
            double d = 0;
            for (int i = 0; i < N; i++) d += Q[i][j] * Q[i][k];
            R[j][k] = d;
            for (int i = 0; i < N; i++) Q[i][k] -= d * Q[i][j];
        }
        double nn = 0;
        for (int i = 0; i < N; i++) nn += Q[i][k] * Q[i][k];
        nn = sqrt(nn);
        R[k][k] = nn;
        for (int i = 0; i < N; i++) Q[i][k] /= nn;
    }
    for (int k = 0; k < m; k++) {
        double d = 0;
        for (int i = 0; i < N; i++) d += Q[i][k] * ref[i][ch];
        qty[k] = d;
    }
    for (int k = m - 1; k >= 0; k--) {
        double s = qty[k];
        for (int j = k + 1; j < m; j++) s -= R[k][j] * c[j];
        c[k] = s / R[k][k];
    }
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s REF.txt DEGREE NAME\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (!f) { perror(argv[1]); return 1; }
    for (int i = 0; i < N; i++)
        if (fscanf(f, " %lf , %lf , %lf", &ref[i][0], &ref[i][1], &ref[i][2]) != 3) {
            fprintf(stderr, "%s: entry %d unreadable\n", argv[1], i);
            return 1;
        }
    fclose(f);
    int m = atoi(argv[2]) + 1;
    if (m < 2 || m > MAXC) { fprintf(stderr, "degree out of range\n"); return 2; }
    double c[3][MAXC];
    for (int ch = 0; ch < 3; ch++) fit_channel(m, ch, c[ch]);

    double maxe = 0;
    int same = 0, off1 = 0, worse = 0;
    for (int i = 0; i < N; i++) {
        double row[MAXC];
        cheb_row(2.0 * i / (N - 1) - 1.0, m, row);
        for (int ch = 0; ch < 3; ch++) {
            double v = 0;
            for (int k = 0; k < m; k++) v += c[ch][k] * row[k];
            maxe = fmax(maxe, fabs(v - ref[i][ch]));
            long a = lround(255 * fmin(1, fmax(0, v))), b = lround(255 * ref[i][ch]);
            if (a == b) same++;
            else if (labs(a - b) == 1) off1++;
            else worse++;
        }
    }
    printf("/* %s: Chebyshev degree %d; max |error| %.5f = %.2f/255;\n"
           " * 8-bit values: %d equal to the reference, %d off by one, %d worse (of %d) */\n",
           argv[3], m - 1, maxe, 255 * maxe, same, off1, worse, 3 * N);
    printf("static const double %s_cheb[3][%d] = {\n", argv[3], m);
    for (int ch = 0; ch < 3; ch++) {
        printf("    {");
        for (int k = 0; k < m; k++)
            printf("%s%.10e", k == 0 ? "" : k % 4 == 0 ? ",\n     " : ", ", c[ch][k]);
        printf("},\n");
    }
    printf("};\n");
    return 0;
}
