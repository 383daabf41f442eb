/*
 * trace.cl - BVH8 traversal kernels: closest hit and any hit (shadow rays), one
 * work-item per ray. This is the "traverse (closest hit)" stage of SPEC section 7 and
 * the shadow-ray query of its "interact" stage.
 *
 * Acceleration structure: the Karras (2012) LBVH built on the host and collapsed to
 * 8-wide nodes (mmd_shared.h). Triangle test: the watertight test of Woop, Benthin and
 * Wald (JCGT 2013) from mmd_isect.h, shared verbatim with the host references, so hits
 * (prim, t, u, v) are bit-identical to mmd_bvh_closest_ref / mmd_brute_closest; the
 * closest-hit tie rule (equal t: smaller scene triangle id wins) is mmd_isect_better.
 *
 * Why it looks like this: CPU OpenCL drivers (PoCL) do not vectorise this kernel across
 * work-items because its loop diverges, so each work-item runs as scalar code; speed
 * comes from explicit vectors inside one work-item. The 8 child boxes of a node are
 * tested at once with float8 slab arithmetic (one AVX register per quantity), the hit
 * children are sorted near-to-far with an 8-lane sorting network and pushed farthest
 * first so the nearest is popped next, and closest-hit shrinks its tmax as hits are
 * found so popped entries farther than the best hit are dropped without touching memory.
 * On GPUs the float8 code simply becomes scalar per lane.
 *
 * The traversal functions live in traverse.h so other ray-shooting kernels (aoa.cl)
 * share them; this file holds the two batch kernels. Leaves are tested 4 triangles at a
 * time (float4 lanes running mmd_isect_tri's exact operation sequence), and on CPUs
 * the children pushed on the stack are prefetched.
 *
 * Build options (set by src/trace/trace.c, mmd_trace_cl_options):
 *   MMD_TRACE_CPU=1  sorting network + software prefetch (pays on CPUs, see trace.c)
 *   -cl-fp32-correctly-rounded-divide-sqrt where supported (bit-identical division)
 */
#pragma OPENCL FP_CONTRACT OFF
#include "mmd_shared.h"
#include "traverse.h"

static inline void trace_ray_init(mmd_trace_ray *tr, __global const mmd_ray *ray)
{
    float8 a = vload8(0, (__global const float *)ray);
    trace_ray_setup(tr, a.s0, a.s1, a.s2, a.s4, a.s5, a.s6, a.s3);
}

__kernel void mmd_trace_closest(__global const mmd_bvh8_node *nodes, __global const mmd_tri *tris,
                                __global const mmd_ray *rays, __global mmd_hit *hits, uint n)
{
    uint gid = get_global_id(0);
    if (gid >= n) return;
    mmd_trace_ray tr;
    trace_ray_init(&tr, rays + gid);
    mmd_hit h;
    float t, u, v;
    uint prim;
    if (trav_closest(nodes, tris, &tr, rays[gid].tmax, &t, &prim, &u, &v)) {
        h.t = t;
        h.u = u;
        h.v = v;
        h.prim = (int)prim;
    } else {
        h.t = INFINITY;
        h.u = h.v = 0.0f;
        h.prim = -1;
    }
    hits[gid] = h;
}

__kernel void mmd_trace_any(__global const mmd_bvh8_node *nodes, __global const mmd_tri *tris,
                            __global const mmd_ray *rays, __global uint *occluded, uint n)
{
    uint gid = get_global_id(0);
    if (gid >= n) return;
    mmd_trace_ray tr;
    trace_ray_init(&tr, rays + gid);
    occluded[gid] = (uint)trav_any(nodes, tris, &tr, rays[gid].tmax);
}
