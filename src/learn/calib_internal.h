/*
 * calib_internal.h - pieces shared by the calibration backends (not a public header):
 * calib.c (directional model: recorded Monte Carlo paths replayed on the device) and
 * calib_spec.c (specular baseline: exact specular paths re-weighted on the host).
 *
 * Both minimise the same loss (SPEC 5, mmd_calib_log_loss) over the same raw parameter
 * vector; the backend only supplies spectra and dL/d(physical material) per object.
 */
#ifndef MMD_CALIB_INTERNAL_H
#define MMD_CALIB_INTERNAL_H

#include "mmd_calib.h"

/* The loss of n predicted spectra (unscaled) against measured ones, added to *loss_sum
 * as a mean over n_total poses x nbins bins; the global power scale is fitted in closed
 * form when o->fit_scale (*scale, else 1), or is forced_scale when that is > 0. g (may be NULL) receives dL/dspectra[k][q]
 * of the unscaled prediction, pred (may be NULL) the scaled prediction. */
mmd_status mmd_calib_log_loss(const mmd_calib_options *o, const float *spectra, const float *const *meas, size_t n,
                              size_t nbins, size_t n_total, double forced_scale, double *loss_sum, double *g,
                              float *pred, double *scale);
/* The pieces of the scale fit, for batches split over MPI ranks (forced_scale > 0 above
 * skips the fit): each pose's floor and the log10 ratios of its bins well above it
 * (returns how many, ratios may be NULL), and the scale from all ratios (sorted in place). */
size_t mmd_calib_log_ratios(const mmd_calib_options *o, const float *spectra, const float *const *meas, size_t n,
                            size_t nbins, double *floor, double *ratios);
double mmd_calib_median_scale(double *ratios, size_t n);

/* ---- specular baseline (calib_spec.c) -------------------------------------------------
 * Per pose, once: the exact specular paths (geometry), each path's response over the AoA
 * bins K_p[bin] = G_RX(u_p) B(u_p, bin), and the rest of the spectrum (LoS + the Monte
 * Carlo diffuse chains) at the starting materials, held fixed. A prediction is then
 *     S[bin] = fixed[bin] + sum_p g_p(materials) K_p[bin],
 * with g_p the path's gain (mmd_path_gain), whose derivative in eps_r and sigma of each
 * object on the path is taken by central differences in double precision. */
typedef struct mmd_calib_spec mmd_calib_spec;

/* start: the starting materials (one per object), copied; records are always built with
 * them, so a resumed run rebuilds exactly the records of an uninterrupted one. */
mmd_status mmd_calib_spec_create(mmd_sim *s, const mmd_material *start, size_t cache_bytes, mmd_calib_spec **out);
void mmd_calib_spec_destroy(mmd_calib_spec *x);

/* Loss of n poses with materials `mats` (one per object). grad_obj (may be NULL) gets
 * dL/d(eps_r) and dL/d(sigma) of object o added at [4 o] and [4 o + 1]. */
mmd_status mmd_calib_spec_loss(mmd_calib_spec *x, const mmd_calib_options *o, const mmd_material *mats,
                               const mmd_cfg_pose *poses, const size_t *ids, const float *const *meas, size_t n,
                               size_t n_total, double *loss_sum, double *grad_obj, float *pred, double *scale);

/* Records built, records served from the cache, and bytes held. */
void mmd_calib_spec_stats(const mmd_calib_spec *x, size_t *built, size_t *hits, size_t *bytes);

#endif
