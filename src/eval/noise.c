/* Measurement noise of synthetic data sets (mmd_eval.h): log-normal per bin, then a
 * noise floor relative to each spectrum's maximum, as a receiver with a limited dynamic
 * range would report. */
#include "mmd_eval.h"

#include <math.h>

mmd_status mmd_eval_measurement_noise(float *spectra, size_t n, int n_el, int n_az, double sigma_db, int has_floor,
                                      double floor_db, uint64_t seed, uint64_t stream)
{
    if (!(sigma_db >= 0) || !isfinite(sigma_db))
        return mmd_error(MMD_ERR_INVALID, "dataset.measurement_noise_db: %g; expected a standard deviation >= 0 dB",
                         sigma_db);
    if (has_floor && (!isfinite(floor_db) || floor_db > 0))
        return mmd_error(MMD_ERR_INVALID, "dataset.noise_floor_db: %g; expected a level <= 0 dB below each "
                         "spectrum's maximum",
                         floor_db);
    size_t per = (size_t)n_el * (size_t)n_az;
    mmd_rng r;
    mmd_rng_seed(&r, seed, stream);
    for (size_t k = 0; k < n; k++) {
        float *s = spectra + k * per;
        if (sigma_db > 0)
            for (size_t i = 0; i < per; i++) {
                /* every bin draws its pair, so one pose's noise does not depend on another's values */
                double u = 1.0 - mmd_rng_uniform(&r), v = mmd_rng_uniform(&r);
                double g = sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
                s[i] = (float)((double)s[i] * pow(10.0, 0.1 * sigma_db * g));
            }
        if (!has_floor) continue;
        float mx = 0;
        for (size_t i = 0; i < per; i++)
            if (s[i] > mx) mx = s[i];
        float fl = (float)((double)mx * pow(10.0, 0.1 * floor_db));
        for (size_t i = 0; i < per; i++)
            if (s[i] < fl) s[i] = fl;
    }
    return MMD_OK;
}
