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
    size_t local_size;        /* work-group size of the trace kernels (0 = driver's choice) */
} mmd_trace;

mmd_status mmd_trace_create(mmd_cl *cl, const mmd_bvh *bvh, mmd_trace **out);
void mmd_trace_destroy(mmd_trace *t);

/* Build options every program that includes cl/traverse.h must use on this device
 * (correctly rounded division where supported, the CPU traversal variant on CPUs). */
void mmd_trace_cl_options(const mmd_cl *cl, char *opts, size_t cap);

/* Host-array convenience wrappers (upload, run, read back). */
mmd_status mmd_trace_closest(mmd_trace *t, const mmd_ray *rays, size_t n, mmd_hit *hits);
mmd_status mmd_trace_any(mmd_trace *t, const mmd_ray *rays, size_t n, uint32_t *occluded);

/* Device-buffer variants for pipelines that keep rays on the device: `rays` holds n
 * mmd_ray, `hits` n mmd_hit, `occluded` n uint32 (1 = occluded). They only enqueue the
 * kernel on t->cl->queue (in order, so later commands see the results); call
 * clFinish(t->cl->queue) before reading on the host or timing. n == 0 enqueues nothing. */
mmd_status mmd_trace_closest_dev(mmd_trace *t, cl_mem rays, cl_mem hits, size_t n);
mmd_status mmd_trace_any_dev(mmd_trace *t, cl_mem rays, cl_mem occluded, size_t n);

/* Offset a point on a surface with (unnormalised) geometric normal n so that a ray
 * leaving towards `dir` (with tmin = 0) does not re-hit the surface it starts on: moves
 * along +-n (the side `dir` points into) by 1024 float ulps of the point's largest
 * coordinate, at least 1 m's (1.2e-4 m near the origin, 2 mm at 16 m, 6 cm at 800 m).
 * A zero or non-finite n leaves the point unchanged. */
void mmd_offset_origin(const float p[3], const float n[3], const float dir[3], float out[3]);

#ifdef __cplusplus
}
#endif
#endif
