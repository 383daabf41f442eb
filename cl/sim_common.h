/*
 * sim_common.h - pieces every estimator kernel shares (aoa.cl, coverage.cl, calib.cl):
 * the receiver-launched sample directions (SPEC 4: Fibonacci sphere turned by a
 * per-pose seeded rotation, so a pose always gets the same rays) and the origin offset
 * of secondary rays.
 */
#ifndef MMD_CL_SIM_COMMON_H
#define MMD_CL_SIM_COMMON_H
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

#endif
