/*
 * Plain-C double-precision reference of mmd_calib_forward (cl/calib.cl): the power one
 * recorded ray delivers for given materials, written independently of the kernel (own
 * Jones maps in double) so tests can check the kernel, and take central differences in
 * double precision for the gradient checks (SPEC 5, docs/calibration.md).
 */
#include "mmd_calib.h"

#include <complex.h>
#include <math.h>
#include <string.h>

typedef double complex cplx;

static double dot3(const double a[3], const double b[3]) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
static void cross3(const double a[3], const double b[3], double o[3])
{
    double r[3] = {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
    memcpy(o, r, sizeof r);
}
static void neg3(const double a[3], double o[3])
{
    for (int k = 0; k < 3; k++) o[k] = -a[k];
}
static void reflect(const double k[3], const double n[3], double o[3])
{
    double d = 2 * dot3(k, n);
    for (int q = 0; q < 3; q++) o[q] = k[q] - d * n[q];
}
static void te_vec(const double k[3], const double n[3], double e[3])
{
    cross3(k, n, e);
    double l = sqrt(dot3(e, e));
    if (l < 1e-6) {
        double b[3];
        mmd_onb(k, e, b);
        return;
    }
    for (int q = 0; q < 3; q++) e[q] /= l;
}
/* Rodrigues rotation taking unit `from` to unit `to`, applied to complex v */
static void rot_min(const double from[3], const double to[3], const cplx v[3], cplx o[3])
{
    double ax[3];
    cross3(from, to, ax);
    double s = sqrt(dot3(ax, ax)), c = dot3(from, to);
    if (s < 1e-7) {
        if (c > 0) {
            memcpy(o, v, 3 * sizeof *v);
            return;
        }
        double t[3], b[3];
        mmd_onb(from, t, b);
        cplx tv = t[0] * v[0] + t[1] * v[1] + t[2] * v[2];
        for (int q = 0; q < 3; q++) o[q] = 2.0 * tv * t[q] - v[q];
        return;
    }
    for (int q = 0; q < 3; q++) ax[q] /= s;
    cplx av = ax[0] * v[0] + ax[1] * v[1] + ax[2] * v[2];
    cplx cr[3] = {ax[1] * v[2] - ax[2] * v[1], ax[2] * v[0] - ax[0] * v[2], ax[0] * v[1] - ax[1] * v[0]};
    for (int q = 0; q < 3; q++) o[q] = v[q] * c + cr[q] * s + ax[q] * (av * (1 - c));
}
static cplx dotc(const cplx w[3], const double e[3]) { return w[0] * e[0] + w[1] * e[1] + w[2] * e[2]; }

/* forward maps (jones.h): lobe, diffuse; transmission is symmetric */
static void lobe_fwd(const double ki[3], const double n[3], const double ks[3], cplx Rte, cplx Rtm, const cplx E[3],
                     cplx o[3])
{
    double kr[3], ete[3], etmi[3], etmr[3];
    reflect(ki, n, kr);
    te_vec(ki, n, ete);
    cross3(ete, ki, etmi);
    cross3(ete, kr, etmr);
    cplx a = Rte * dotc(E, ete), b = Rtm * dotc(E, etmi), r[3];
    for (int q = 0; q < 3; q++) r[q] = a * ete[q] + b * etmr[q];
    rot_min(kr, ks, r, o);
}
static void lobe_tr(const double ki[3], const double n[3], const double ks[3], cplx Rte, cplx Rtm, const cplx w[3],
                    cplx o[3])
{
    double kr[3], ete[3], etmi[3], etmr[3];
    reflect(ki, n, kr);
    cplx wr[3];
    rot_min(ks, kr, w, wr);
    te_vec(ki, n, ete);
    cross3(ete, ki, etmi);
    cross3(ete, kr, etmr);
    cplx a = Rte * dotc(wr, ete), b = Rtm * dotc(wr, etmr);
    for (int q = 0; q < 3; q++) o[q] = a * ete[q] + b * etmi[q];
}
static void diff_fwd(const double ki[3], const double n[3], const double ks[3], cplx Rte, cplx Rtm, double kx,
                     const cplx E[3], cplx o[3])
{
    double ete[3], etm[3], ste[3], stm[3];
    te_vec(ki, n, ete);
    cross3(ete, ki, etm);
    te_vec(ks, n, ste);
    cross3(ste, ks, stm);
    double a = sqrt(1 - kx), b = sqrt(kx);
    cplx a0 = Rte * dotc(E, ete), a1 = Rtm * dotc(E, etm);
    for (int q = 0; q < 3; q++) o[q] = ste[q] * (a0 * a - a1 * b) + stm[q] * (a0 * b + a1 * a);
}
static void diff_tr(const double ki[3], const double n[3], const double ks[3], cplx Rte, cplx Rtm, double kx,
                    const cplx w[3], cplx o[3])
{
    double ete[3], etm[3], ste[3], stm[3];
    te_vec(ki, n, ete);
    cross3(ete, ki, etm);
    te_vec(ks, n, ste);
    cross3(ste, ks, stm);
    double a = sqrt(1 - kx), b = sqrt(kx);
    cplx pte = dotc(w, ste), ptm = dotc(w, stm);
    cplx q0 = pte * a + ptm * b, q1 = ptm * a - pte * b;
    for (int q = 0; q < 3; q++) o[q] = ete[q] * (Rte * q0) + etm[q] * (Rtm * q1);
}
static void trans(const double k[3], const double n[3], cplx Tte, cplx Ttm, const cplx w[3], cplx o[3])
{
    double ete[3], etm[3];
    te_vec(k, n, ete);
    cross3(ete, k, etm);
    cplx a = Tte * dotc(w, ete), b = Ttm * dotc(w, etm);
    for (int q = 0; q < 3; q++) o[q] = a * ete[q] + b * etm[q];
}
static void theta_hat(const double u[3], double o[3])
{
    double rho = sqrt(u[0] * u[0] + u[1] * u[1]);
    if (rho < 1e-7) {
        o[0] = u[2] > 0 ? 1 : -1, o[1] = o[2] = 0;
        return;
    }
    o[0] = u[2] * u[0] / rho, o[1] = u[2] * u[1] / rho, o[2] = -rho;
}
static cplx bidot(const cplx a[3], const cplx b[3]) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

double mmd_calib_ref_ray_power(const mmd_calib_ref *x, const mmd_cal_vertex *rv, int K, const double *theta,
                               const double pose_rot[9])
{
    return mmd_calib_ref_ray_power_v(x, rv, K, theta, 0, pose_rot);
}

double mmd_calib_ref_ray_power_v(const mmd_calib_ref *x, const mmd_cal_vertex *rv, int K, const double *theta,
                                 int per_vertex, const double pose_rot[9])
{
    if (K < 1 || rv[0].obj == 0xffffffffu) return 0.0;
    double d0[3] = {rv[0].d[0], rv[0].d[1], rv[0].d[2]}, ul[3], th[3];
    mmd_to_local(pose_rot, d0, ul);
    theta_hat(ul, th);
    double w0[3];
    mmd_to_world(pose_rot, th, w0);
    cplx w[3] = {w0[0], w0[1], w0[2]};
    double thr = 1.0, total = 0.0;
    for (int k = 0; k < K; k++) {
        const mmd_cal_vertex *vx = &rv[k];
        if (vx->obj == 0xffffffffu) break;
        const double *tp = per_vertex ? theta + 4 * k : theta + 4 * vx->obj;
        double complex eta = tp[0] - I * tp[1] * x->sig2im;
        double thick = x->thickness[vx->obj], S = tp[2], kx = tp[3], S2 = S * S;
        double n[3] = {vx->n[0], vx->n[1], vx->n[2]}, d[3] = {vx->d[0], vx->d[1], vx->d[2]};
        cplx R[2], T[2];
        if (vx->g_nee > 0) {
            double v[3] = {vx->v[0], vx->v[1], vx->v[2]}, mv[3], md[3];
            neg3(v, mv);
            neg3(d, md);
            mmd_fresnel_slab(eta, dot3(v, n), thick, x->wavelength, R, T);
            double rho;
            if (x->jones) {
                double txl[3], eth[3], etx[3];
                mmd_to_local(x->tx_rot, mv, txl);
                theta_hat(txl, eth);
                mmd_to_world(x->tx_rot, eth, etx);
                cplx E[3] = {etx[0], etx[1], etx[2]}, u[3];
                double al = 0, ad = 0;
                if (vx->f_lobe > 0) {
                    lobe_fwd(mv, n, md, R[0], R[1], E, u);
                    cplx a = bidot(w, u);
                    al = creal(a * conj(a));
                }
                if (vx->f_diff > 0) {
                    diff_fwd(mv, n, md, R[0], R[1], kx, E, u);
                    cplx a = bidot(w, u);
                    ad = creal(a * conj(a));
                }
                rho = (1 - S2) * vx->f_lobe * al + S2 * vx->f_diff * ad;
            } else {
                double g2 = 0.5 * (creal(R[0] * conj(R[0])) + creal(R[1] * conj(R[1])));
                rho = thr * g2 * ((1 - S2) * vx->f_lobe + S2 * vx->f_diff);
            }
            total += vx->g_nee * rho;
        }
        if (vx->event == MMD_CAL_END) break;
        double o[3] = {vx->o[0], vx->o[1], vx->o[2]};
        int tr = vx->event == MMD_CAL_TRANSMIT;
        double cos_c = tr ? -dot3(d, n) : dot3(o, n);
        mmd_fresnel_slab(eta, cos_c, thick, x->wavelength, R, T);
        cplx C0 = tr ? T[0] : R[0], C1 = tr ? T[1] : R[1];
        double sfac = vx->event == MMD_CAL_DIFFUSE ? S2 : tr ? 1.0 : 1.0 - S2;
        double sf = vx->w_cont * sfac;
        if (x->jones) {
            cplx nw[3], mo[3];
            double mo_r[3], md[3];
            neg3(o, mo_r);
            neg3(d, md);
            (void)mo;
            if (tr)
                trans(d, n, C0, C1, w, nw);
            else if (vx->event == MMD_CAL_DIFFUSE)
                diff_tr(mo_r, n, md, C0, C1, kx, w, nw);
            else
                lobe_tr(mo_r, n, md, C0, C1, w, nw);
            double s = sqrt(sf);
            for (int q = 0; q < 3; q++) w[q] = nw[q] * s;
        } else {
            thr *= sf * 0.5 * (creal(C0 * conj(C0)) + creal(C1 * conj(C1)));
        }
    }
    return total;
}
