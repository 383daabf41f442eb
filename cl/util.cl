/*
 * util.cl - small utility kernels (buffer fill, runtime self-test). No paper equation;
 * used by the runtime tests and by later stages to clear accumulators on the device.
 */
#pragma OPENCL FP_CONTRACT OFF
#include "mmd_shared.h"

__kernel void mmd_fill_u32(__global uint *dst, uint value, uint n)
{
    uint i = get_global_id(0);
    if (i < n) dst[i] = value;
}

/* Writes sizeof of every shared struct as the device compiler sees it, so the tests can
 * compare them with the host's _Static_assert'ed sizes. */
__kernel void mmd_struct_sizes(__global uint *out)
{
    if (get_global_id(0) != 0) return;
    out[0] = (uint)sizeof(mmd_bvh8_node);
    out[1] = (uint)sizeof(mmd_tri);
    out[2] = (uint)sizeof(mmd_ray);
    out[3] = (uint)sizeof(mmd_hit);
    out[4] = (uint)sizeof(mmd_gpu_material);
    out[5] = (uint)sizeof(mmd_prim_info);
    out[6] = (uint)sizeof(mmd_gpu_pose);
    out[7] = (uint)sizeof(mmd_sim_params);
}
