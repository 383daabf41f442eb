/* Gauss-Legendre rules for the host-side quadratures (Theorem 1, tests). */
#include "mmd_physics.h"

#include <math.h>

mmd_status mmd_gauss_legendre(int n, double *x, double *w)
{
    if (n < 1 || n > 1024)
        return mmd_error(MMD_ERR_INVALID, "gauss_legendre: n must be in [1, 1024] (got %d)", n);
    for (int i = 0; i < (n + 1) / 2; i++) {
        /* Tricomi's initial guess for the i-th largest root, then Newton. */
        double z = cos(M_PI * (i + 0.75) / (n + 0.5)), dp = 1;
        for (int it = 0; it < 100; it++) {
            double p0 = 1, p1 = z;
            for (int k = 2; k <= n; k++) {
                double p2 = ((2.0 * k - 1) * z * p1 - (k - 1.0) * p0) / k;
                p0 = p1, p1 = p2;
            }
            dp = n * (z * p1 - p0) / (z * z - 1.0);
            double dz = p1 / dp;
            z -= dz;
            if (fabs(dz) < 1e-16) break;
        }
        /* recompute the derivative at the converged root for the weight */
        double p0 = 1, p1 = z;
        for (int k = 2; k <= n; k++) {
            double p2 = ((2.0 * k - 1) * z * p1 - (k - 1.0) * p0) / k;
            p0 = p1, p1 = p2;
        }
        dp = n * (z * p1 - p0) / (z * z - 1.0);
        double wi = 2.0 / ((1.0 - z * z) * dp * dp);
        x[i] = -z, x[n - 1 - i] = z;
        w[i] = wi, w[n - 1 - i] = wi;
    }
    if (n % 2) x[n / 2] = 0; /* exact middle node */
    return MMD_OK;
}
