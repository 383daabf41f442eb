/*
 * physics_test.cl - evaluates the device physics (physics.h: SPEC 3 Fresnel/slab and the
 * mmDiff Eq. 7 lobe normaliser) at given incidence cosines so test_sim.c can compare it
 * with the double-precision host reference. Not used by the simulator itself.
 */
#pragma OPENCL FP_CONTRACT OFF
#include "mmd_shared.h"
#include "physics.h"

/* out[10 i ..]: R_TE (re, im), T_TE (re, im), R_TM (re, im), T_TM (re, im), F, 0 */
__kernel void mmd_physics_eval(__global const mmd_gpu_material *m, __global const float *coef,
                               __global const float *cosv, float k0, uint n, __global float *out)
{
    uint i = get_global_id(0);
    if (i >= n) return;
    float2 R[2], T[2];
    fresnel_rt((float2)(m->eta_re, m->eta_im), m->thickness_m, k0, cosv[i], R, T);
    __global float *o = out + 10 * i;
    for (int p = 0; p < 2; p++) {
        o[4 * p] = R[p].x;
        o[4 * p + 1] = R[p].y;
        o[4 * p + 2] = T[p].x;
        o[4 * p + 3] = T[p].y;
    }
    o[8] = lobe_norm(m->lobe_A, coef + m->coef_off, (int)m->ncoef, cosv[i]);
    o[9] = 0.0f;
}
