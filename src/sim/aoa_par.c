/*
 * aoa_par.c - mmd_sim_aoa over MPI ranks (issue 7): each rank simulates a contiguous
 * share of the poses, seeded by the poses' global indices, and rank 0 collects the
 * results in pose order, so its result is the one a single process computes (every pose
 * is traced and reduced independently of the others).
 */
#include "mmd_par.h"
#include "mmd_paths.h"
#include "mmd_sim.h"

#include <stdlib.h>
#include <string.h>

/* Gather one per-pose array (elem bytes per pose) of the local result into dst (rank 0). */
static mmd_status gather_into(const void *src, size_t n_local, size_t elem, void *dst, size_t n_total)
{
    void *all = NULL;
    mmd_status st = mmd_par_gather(src, n_local * elem, &all, NULL);
    if (st == MMD_OK && mmd_par_rank() == 0 && dst) memcpy(dst, all, n_total * elem);
    free(all);
    return st;
}

mmd_status mmd_sim_aoa_par(mmd_sim *s, const mmd_cfg_pose *poses, size_t n, mmd_aoa_result *out,
                           void (*progress)(size_t, size_t, void *), void *user)
{
    if (mmd_par_size() == 1) return mmd_sim_aoa(s, poses, n, out, progress, user);
    memset(out, 0, sizeof *out);
    size_t lo, hi;
    mmd_par_share(n, &lo, &hi);
    size_t m = hi - lo;
    size_t *ids = mmd_malloc(m ? m : 1, sizeof *ids, "pose ids");
    mmd_status st = ids ? MMD_OK : MMD_ERR_NOMEM;
    for (size_t k = 0; k < m; k++) ids[k] = lo + k; /* the seeds a single process uses */
    mmd_aoa_result loc;
    memset(&loc, 0, sizeof loc);
    if (st == MMD_OK) st = mmd_sim_aoa_ex(s, poses + lo, ids, m, NULL, NULL, &loc, progress, user);
    free(ids);
    st = mmd_par_agree(st);
    if (st != MMD_OK) {
        mmd_aoa_result_free(&loc);
        return st;
    }
    const mmd_experiment *e = s->exp;
    int naz = e->aoa.azimuth_deg.count, nel = e->aoa.elevation_deg.count;
    size_t nb = (size_t)naz * nel;
    int root = mmd_par_rank() == 0, specular = e->solver.mode == MMD_CFG_SOLVER_SPECULAR;
    mmd_aoa_result r;
    memset(&r, 0, sizeof r);
    if (root) {
        r.n_poses = n, r.n_az = naz, r.n_el = nel;
        r.spectra = mmd_malloc(n * nb, sizeof(float), "spectra");
        r.total_power = mmd_malloc(n, sizeof(double), "powers");
        r.los_power = mmd_malloc(n, sizeof(double), "powers");
        r.los_az_deg = mmd_malloc(n, sizeof(double), "LoS");
        r.los_el_deg = mmd_malloc(n, sizeof(double), "LoS");
        r.los_visible = mmd_malloc(n, sizeof(int), "LoS");
        r.peaks = mmd_malloc(n * MMD_AOA_PEAKS, sizeof(mmd_aoa_peak), "peaks");
        r.n_peaks = mmd_malloc(n, sizeof(int), "peaks");
        if (specular) {
            r.paths = mmd_calloc(n, sizeof *r.paths, "paths");
            r.n_paths = mmd_calloc(n, sizeof *r.n_paths, "paths");
        }
        if (!r.spectra || !r.total_power || !r.los_power || !r.los_az_deg || !r.los_el_deg || !r.los_visible ||
            !r.peaks || !r.n_peaks || (specular && (!r.paths || !r.n_paths)))
            st = MMD_ERR_NOMEM;
    }
    /* every rank takes part in every gather, so an allocation failure on rank 0 is
     * reported after them */
    mmd_status sg = gather_into(loc.spectra, m, nb * sizeof(float), r.spectra, n);
    if (sg == MMD_OK) sg = gather_into(loc.total_power, m, sizeof(double), r.total_power, n);
    if (sg == MMD_OK) sg = gather_into(loc.los_power, m, sizeof(double), r.los_power, n);
    if (sg == MMD_OK) sg = gather_into(loc.los_az_deg, m, sizeof(double), r.los_az_deg, n);
    if (sg == MMD_OK) sg = gather_into(loc.los_el_deg, m, sizeof(double), r.los_el_deg, n);
    if (sg == MMD_OK) sg = gather_into(loc.los_visible, m, sizeof(int), r.los_visible, n);
    if (sg == MMD_OK) sg = gather_into(loc.peaks, m, MMD_AOA_PEAKS * sizeof(mmd_aoa_peak), r.peaks, n);
    if (sg == MMD_OK) sg = gather_into(loc.n_peaks, m, sizeof(int), r.n_peaks, n);
    if (sg == MMD_OK && specular) {
        /* the paths: counts per pose, then every path of the share in pose order */
        size_t tot = 0;
        for (size_t k = 0; k < m; k++) tot += loc.n_paths[k];
        mmd_path *flat = mmd_malloc(tot ? tot : 1, sizeof *flat, "paths");
        size_t at = 0;
        for (size_t k = 0; flat && k < m; k++) {
            if (loc.n_paths[k]) memcpy(flat + at, loc.paths[k], loc.n_paths[k] * sizeof *flat);
            at += loc.n_paths[k];
        }
        if (!flat) st = MMD_ERR_NOMEM; /* this rank sends none: caught below and at the agreement */
        void *all = NULL;
        size_t *cnt = NULL;
        sg = gather_into(loc.n_paths, m, sizeof(size_t), r.n_paths, n);
        if (sg == MMD_OK) sg = mmd_par_gather(flat, flat ? tot * sizeof *flat : 0, &all, &cnt);
        free(flat);
        if (sg == MMD_OK && root && st == MMD_OK) {
            size_t want = 0, got = 0;
            for (size_t k = 0; k < n; k++) want += r.n_paths[k];
            for (int q = 0; q < mmd_par_size(); q++) got += cnt[q];
            if (got != want * sizeof(mmd_path))
                st = mmd_error(MMD_ERR_NOMEM, "specular paths: a rank could not send its paths");
        }
        free(cnt);
        const mmd_path *src = all;
        for (size_t k = 0; sg == MMD_OK && root && st == MMD_OK && k < n; k++) {
            if (!r.n_paths[k]) continue;
            r.paths[k] = mmd_malloc(r.n_paths[k], sizeof(mmd_path), "paths");
            if (!r.paths[k]) {
                st = MMD_ERR_NOMEM;
                break;
            }
            memcpy(r.paths[k], src, r.n_paths[k] * sizeof(mmd_path));
            src += r.n_paths[k];
        }
        free(all);
    }
    mmd_aoa_result_free(&loc);
    if (st == MMD_OK) st = sg;
    st = mmd_par_agree(st);
    if (st != MMD_OK) {
        mmd_aoa_result_free(&r);
        return st;
    }
    *out = r; /* empty on ranks other than 0 */
    return MMD_OK;
}
