/*
 * mmd_trace.h - device-side ray queries on a scene's BVH: closest hit and any hit
 * (shadow rays), batched. The scene is uploaded once and queried many times.
 *
 * Robustness: rays may start on a surface; callers offset the origin along the surface
 * normal (mmd_offset_origin) and/or set tmin. Coincident and touching surfaces resolve
 * deterministically (equal t: the smaller triangle id wins), identically on host and
 * device because both use the watertight test in mmd_isect.h.
 *
 * Example:
 *     mmd_trace *t = NULL;
 *     mmd_trace_create(cl, bvh, &t);
 *     mmd_trace_closest(t, rays, n, hits);     // host arrays in and out
 *     mmd_trace_any(t, rays, n, occluded);     // 1 = something in [tmin, tmax]
 *     mmd_trace_destroy(t);
 */
#ifndef MMD_TRACE_H
#define MMD_TRACE_H

#include "mmd_bvh.h"
#include "mmd_cl.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mmd_trace {
    mmd_cl *cl;
    cl_mem nodes, tris;
    cl_kernel k_closest, k_any;
    cl_mem rays, hits, flags; /* scratch buffers, grown on demand */
    size_t cap_rays;
    uint32_t n_nodes, n_tris;
} mmd_trace;

mmd_status mmd_trace_create(mmd_cl *cl, const mmd_bvh *bvh, mmd_trace **out);
void mmd_trace_destroy(mmd_trace *t);

/* Host-array convenience wrappers (upload, run, read back). */
mmd_status mmd_trace_closest(mmd_trace *t, const mmd_ray *rays, size_t n, mmd_hit *hits);
mmd_status mmd_trace_any(mmd_trace *t, const mmd_ray *rays, size_t n, uint32_t *occluded);

/* Offset a point on a surface with (unnormalised) geometric normal n so that a ray
 * leaving towards `dir` does not re-hit the surface it starts on: moves along +-n
 * (the side `dir` points into) by an amount scaled to the point's magnitude. */
void mmd_offset_origin(const float p[3], const float n[3], const float dir[3], float out[3]);

#ifdef __cplusplus
}
#endif
#endif
