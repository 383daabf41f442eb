/* ITU-R P.2040-3 Table 3 materials, explicit-material validation and the complex
 * permittivity (see mmd_physics.h, docs/physics.md). */
#include "mmd_physics.h"

#include <complex.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct itu_band {
    double lo_ghz, hi_ghz; /* inclusive */
    double a, b, c, d;     /* eps_r = a f^b, sigma = c f^d, f in GHz */
} itu_band;

typedef struct itu_entry {
    const char *name;
    int n_bands;
    itu_band band[2];
} itu_entry;

/* Values as in Sionna RT's table (NVlabs/sionna rt/itu_materials.py, P.2040-2/-3): the
 * ground parameters are ITU's 15 f^-0.1 / 0.035 f^1.63 and 30 f^-0.4 / 0.15 f^1.30.
 * Sionna RT >= 1.0 adds further sub-THz rows (110-330, 100-400 GHz) that overlap each
 * other; they are left out on purpose (docs/physics.md), only glass and ceiling_board
 * keep their 220-450 GHz band of P.2040-2. Order = Sionna's, and = mmd_itu_names(). */
static const itu_entry itu_table[] = {
    {"vacuum", 1, {{0.001, 100, 1.0, 0, 0.0, 0}}},
    {"concrete", 1, {{1, 100, 5.24, 0, 0.0462, 0.7822}}},
    {"brick", 1, {{1, 40, 3.91, 0, 0.0238, 0.16}}},
    {"plasterboard", 1, {{1, 100, 2.73, 0, 0.0085, 0.9395}}},
    {"wood", 1, {{0.001, 100, 1.99, 0, 0.0047, 1.0718}}},
    {"glass", 2, {{0.1, 100, 6.31, 0, 0.0036, 1.3394}, {220, 450, 5.79, 0, 0.0004, 1.658}}},
    {"ceiling_board", 2, {{1, 100, 1.48, 0, 0.0011, 1.0750}, {220, 450, 1.52, 0, 0.0029, 1.029}}},
    {"chipboard", 1, {{1, 100, 2.58, 0, 0.0217, 0.7800}}},
    {"plywood", 1, {{1, 40, 2.71, 0, 0.33, 0}}},
    {"marble", 1, {{1, 60, 7.074, 0, 0.0055, 0.9262}}},
    {"floorboard", 1, {{50, 100, 3.66, 0, 0.0044, 1.3515}}},
    {"metal", 1, {{1, 100, 1.0, 0, 1e7, 0}}},
    {"very_dry_ground", 1, {{1, 10, 3.0, 0, 0.00015, 2.52}}},
    {"medium_dry_ground", 1, {{1, 10, 15.0, -0.1, 0.035, 1.63}}},
    {"wet_ground", 1, {{1, 10, 30.0, -0.4, 0.15, 1.30}}},
};
#define N_ITU ((int)(sizeof itu_table / sizeof itu_table[0]))

int mmd_material_itu_count(void) { return N_ITU; }

const char *mmd_material_itu_name(int i) { return i >= 0 && i < N_ITU ? itu_table[i].name : NULL; }

static void names_list(char *buf, size_t size)
{
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < N_ITU && k < size; i++) {
        int w = snprintf(buf + k, size - k, "%s%s", i ? ", " : "", itu_table[i].name);
        if (w < 0) break;
        k += (size_t)w;
    }
}

mmd_status mmd_material_itu(const char *name, double freq_hz, mmd_material *out)
{
    const itu_entry *e = NULL;
    for (int i = 0; name && i < N_ITU; i++)
        if (strcmp(name, itu_table[i].name) == 0) e = &itu_table[i];
    if (!e) {
        char list[512];
        names_list(list, sizeof list);
        return mmd_error(MMD_ERR_INVALID, "unknown ITU material '%s' (valid: %s)",
                         name ? name : "(null)", list);
    }
    double f = freq_hz / 1e9;
    /* Round-off in "28e9 / 1e9" must not push a frequency given exactly at a range end
     * out of it: compare with a relative slack far below any physical meaning. */
    const double slack = 1e-12;
    for (int k = 0; k < e->n_bands; k++) {
        const itu_band *b = &e->band[k];
        if (isfinite(f) && f >= b->lo_ghz * (1 - slack) && f <= b->hi_ghz * (1 + slack)) {
            out->eps_r = b->a * pow(f, b->b);
            out->sigma_s_per_m = b->c * pow(f, b->d);
            out->scattering = 0;
            out->xpd = 0;
            out->thickness_m = MMD_DEFAULT_THICKNESS_M;
            out->alpha_r = MMD_DEFAULT_ALPHA_R;
            return MMD_OK;
        }
    }
    char ranges[160];
    size_t k = 0;
    ranges[0] = 0;
    for (int i = 0; i < e->n_bands; i++) {
        int w = snprintf(ranges + k, sizeof ranges - k, "%s%g-%g GHz", i ? " or " : "",
                         e->band[i].lo_ghz, e->band[i].hi_ghz);
        if (w < 0 || (size_t)w >= sizeof ranges - k) break;
        k += (size_t)w;
    }
    return mmd_error(MMD_ERR_INVALID,
                     "ITU material '%s' is defined for %s (ends inclusive), not for %g GHz "
                     "(frequency_hz %g)",
                     e->name, ranges, f, freq_hz);
}

mmd_status mmd_material_validate(const mmd_material *m, const char *what)
{
    const char *w = what && what[0] ? what : "material";
    /* Written as !(x >= lo) so NaN fails too. */
    if (!(m->eps_r >= 1.0) || !isfinite(m->eps_r))
        return mmd_error(MMD_ERR_INVALID, "%s: eps_r must be a finite number >= 1 (got %g)", w,
                         m->eps_r);
    if (!(m->sigma_s_per_m >= 0.0) || !isfinite(m->sigma_s_per_m))
        return mmd_error(MMD_ERR_INVALID,
                         "%s: sigma_s_per_m must be a finite number >= 0 S/m (got %g)", w,
                         m->sigma_s_per_m);
    if (!(m->scattering >= 0.0 && m->scattering <= 1.0))
        return mmd_error(MMD_ERR_INVALID, "%s: scattering must be in [0, 1] (got %g)", w,
                         m->scattering);
    if (!(m->xpd >= 0.0 && m->xpd <= 1.0))
        return mmd_error(MMD_ERR_INVALID, "%s: xpd must be in [0, 1] (got %g)", w, m->xpd);
    if (!(m->thickness_m >= 0.0) || !isfinite(m->thickness_m))
        return mmd_error(MMD_ERR_INVALID,
                         "%s: thickness_m must be > 0 m, or 0 for a half-space (got %g)", w,
                         m->thickness_m);
    if (m->alpha_r < 1 || m->alpha_r > MMD_ALPHA_R_MAX)
        return mmd_error(MMD_ERR_INVALID, "%s: alpha_r must be an integer in [1, %d] (got %d)",
                         w, MMD_ALPHA_R_MAX, m->alpha_r);
    return MMD_OK;
}

double _Complex mmd_material_eta(const mmd_material *m, double freq_hz)
{
    return CMPLX(m->eps_r, -m->sigma_s_per_m / (MMD_EPS0 * 2.0 * M_PI * freq_hz));
}
