/*
 * sim_common.h - pieces every estimator kernel shares (aoa.cl, coverage.cl, calib.cl):
 * the receiver-launched sample directions (SPEC 4: Fibonacci sphere turned by a
 * per-pose seeded rotation, so a pose always gets the same rays) and the origin offset
 * of secondary rays.
 */
#ifndef MMD_CL_SIM_COMMON_H
#define MMD_CL_SIM_COMMON_H
#include "physics.h"
#include "sample.h"

/* The per-pose rotation of the Fibonacci sphere (the same for every ray of the pose). */
inline void aoa_ray_rotation(__constant const mmd_sim_params *P, uint pose_index, float rot[9])
{
    random_rotation(P->seed_lo, pose_index * 2u + 1u, rot);
}

/* Direction of ray `i` of pose `pose_index` in the receiver's local frame. */
inline float3 aoa_ray_local(__constant const mmd_sim_params *P, uint pose_index, uint i)
{
    float rot[9];
    aoa_ray_rotation(P, pose_index, rot);
    return mat3_mul(rot, fibonacci_dir(i, P->n_rays));
}

inline float offset_eps(__constant const mmd_sim_params *P, float3 p)
{
    return P->eps_scale * (1.0f + fmax(fabs(p.x), fmax(fabs(p.y), fabs(p.z))));
}

/* The reflection event at a hit (SPEC 4 key rule: fixed probabilities), once transmission
 * (probability 1 - p_refl) is ruled out and u0 rescaled to [0, 1): diffuse with
 * p_diffuse, else the lobe around the specular direction (the exact specular direction in
 * specular mode). Returns 1 for diffuse, 0 for lobe/specular, -1 when the path ends (below
 * the surface, or zero weight); *omega is the continuation, *weight = f / pdf without the
 * Fresnel factors. The lobe's normaliser F belongs to the physical incidence angle: the
 * arriving ray's for TX-launched paths (coverage), the continuation's for
 * receiver-launched ones (AoA, calibration: reciprocity), hence rx_launched. */
inline int sim_reflect_event(__constant const mmd_sim_params *P, uint flags, const mmd_gpu_material *m,
                             __global const float *lobe_coef, float3 d, float3 n, float p_refl, float u0, float u1,
                             float u2, int rx_launched, float3 *omega_out, float *weight_out)
{
    const int specular = (flags & MMD_SIM_SPECULAR) != 0;
    float p_d = (flags & MMD_SIM_DIFFUSE) ? P->p_diffuse : 0.0f;
    float S2 = m->scattering * m->scattering;
    int diffuse_event = u0 < p_d;
    float3 omega;
    if (diffuse_event)
        omega = diffuse_sample(n, u1, u2);
    else if (specular)
        omega = reflect3(d, n);
    else
        omega = lobe_sample(m->alpha, reflect3(d, n), u1, u2);
    float cos_o = dot(omega, n);
    if (cos_o <= 0.0f) return -1;
    float weight;
    if (diffuse_event) {
        weight = S2 / (p_refl * p_d); /* f/pdf = 1 for cosine sampling */
    } else if (specular) {
        weight = (1.0f - S2) / (p_refl * (1.0f - p_d));
    } else {
        float F = lobe_norm(m->lobe_A, lobe_coef + m->coef_off, (int)m->ncoef, rx_launched ? cos_o : -dot(d, n));
        weight = (1.0f - S2) * (4.0f * MMD_PI / ((float)(m->alpha + 1) * F)) / (p_refl * (1.0f - p_d));
    }
    if (!(weight > 0.0f)) return -1;
    *omega_out = omega;
    *weight_out = weight;
    return diffuse_event;
}

#endif
