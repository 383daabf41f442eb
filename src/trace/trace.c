/*
 * Device ray queries (see mmd_trace.h): uploads a flattened BVH8 once and runs the
 * closest-hit / any-hit kernels of cl/trace.cl on batches of rays (SPEC section 7,
 * "traverse (closest hit)" and the shadow rays of "interact").
 */
#include "mmd_trace.h"

#include "mmd_isect.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Work-group size. PoCL's CPU device runs a work-group as a loop on one thread and does
 * not vectorise this kernel across work-items (its traversal loop diverges), so the size
 * only sets the scheduling grain: 64 was as fast as any other on the bench. On GPUs 64 is
 * two warps / one wavefront, a safe size for a register-heavy kernel with a private
 * stack. MMDIFF_TRACE_WG overrides it (0 = let the driver choose) for tuning. */
#define MMD_TRACE_DEFAULT_WG 64

void mmd_trace_cl_options(const mmd_cl *cl, char *opts, size_t cap)
{
    if (cap < 128) {
        if (cap) opts[0] = 0;
        return;
    }
    opts[0] = 0;
    /* The triangle test divides (shear, 1/det); results must be correctly rounded to
     * stay bit-identical to the host reference (mmd_isect.h). OpenCL only guarantees
     * 2.5 ulp division unless asked, and only devices that report the capability may be
     * asked (PoCL's CPU device divides exactly either way). */
    cl_device_fp_config fp = 0;
    if (clGetDeviceInfo(cl->info.device, CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp, &fp, NULL) == CL_SUCCESS &&
        (fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT))
        strcat(opts, "-cl-fp32-correctly-rounded-divide-sqrt ");
    /* Sorting the hit children near-to-far with a vector sorting network pays on CPUs
     * (float8 maps to one AVX register) but costs dozens of scalar instructions per node
     * on GPUs, where a nearest-first partial order is the usual choice. */
    if (cl->info.type & CL_DEVICE_TYPE_CPU) strcat(opts, "-DMMD_TRACE_CPU=1 ");
}

static mmd_status trace_build(mmd_trace *t)
{
    mmd_cl *cl = t->cl;
    char opts[256];
    mmd_trace_cl_options(cl, opts, sizeof opts);
    cl_program prog;
    mmd_status st = mmd_cl_program(cl, "trace.cl", opts, &prog);
    if (st == MMD_OK) st = mmd_cl_kernel(cl, prog, "mmd_trace_closest", &t->k_closest);
    if (st == MMD_OK) st = mmd_cl_kernel(cl, prog, "mmd_trace_any", &t->k_any);
    return st;
}

mmd_status mmd_trace_create(mmd_cl *cl, const mmd_bvh *bvh, mmd_trace **out)
{
    *out = NULL;
    if (!cl || !bvh) return mmd_error(MMD_ERR_INVALID, "mmd_trace_create: no OpenCL context or BVH");
    /* The kernels' private stack holds MMD_BVH_STACK entries, enough for the builder's
     * depth limit; a deeper tree would silently lose nodes, so refuse it here. */
    if (bvh->depth > MMD_BVH_MAX_DEPTH)
        return mmd_error(MMD_ERR_INVALID,
                         "BVH depth %d exceeds the traversal stack limit (%d wide levels)", bvh->depth,
                         MMD_BVH_MAX_DEPTH);
    if (bvh->n_tris >= MMD_BVH_MAX_TRIS)
        return mmd_error(MMD_ERR_INVALID, "BVH has %u triangles; at most %u are supported", bvh->n_tris,
                         MMD_BVH_MAX_TRIS - 1);
    mmd_trace *t = mmd_calloc(1, sizeof *t, "trace context");
    if (!t) return MMD_ERR_NOMEM;
    t->cl = cl;
    t->n_nodes = bvh->n_nodes;
    t->n_tris = bvh->n_tris;

    const char *wg = getenv("MMDIFF_TRACE_WG");
    t->local_size = wg && wg[0] ? (size_t)strtoul(wg, NULL, 10) : MMD_TRACE_DEFAULT_WG;
    if (t->local_size > cl->info.max_work_group) t->local_size = cl->info.max_work_group;

    /* An empty scene still needs a root: one node whose slots are all empty (inverted
     * boxes, child 0) so the kernels need no special case. */
    mmd_bvh8_node empty;
    for (int i = 0; i < 8; i++) {
        empty.lo_x[i] = empty.lo_y[i] = empty.lo_z[i] = INFINITY;
        empty.hi_x[i] = empty.hi_y[i] = empty.hi_z[i] = -INFINITY;
        empty.child[i] = 0;
    }
    const mmd_bvh8_node *nodes = bvh->n_nodes ? bvh->nodes : &empty;
    size_t n_nodes = bvh->n_nodes ? bvh->n_nodes : 1;
    mmd_status st = mmd_cl_buffer(cl, CL_MEM_READ_ONLY, n_nodes * sizeof(mmd_bvh8_node), nodes,
                                  "BVH nodes", &t->nodes);
    if (st == MMD_OK)
        st = mmd_cl_buffer(cl, CL_MEM_READ_ONLY, (size_t)bvh->n_tris * sizeof(mmd_tri), bvh->tris,
                           "BVH triangles", &t->tris);
    if (st == MMD_OK) st = trace_build(t);
    if (st != MMD_OK) {
        mmd_trace_destroy(t);
        return st;
    }
    *out = t;
    return MMD_OK;
}

void mmd_trace_destroy(mmd_trace *t)
{
    if (!t) return;
    if (t->k_closest) clReleaseKernel(t->k_closest);
    if (t->k_any) clReleaseKernel(t->k_any);
    if (t->nodes) clReleaseMemObject(t->nodes);
    if (t->tris) clReleaseMemObject(t->tris);
    if (t->rays) clReleaseMemObject(t->rays);
    if (t->hits) clReleaseMemObject(t->hits);
    if (t->flags) clReleaseMemObject(t->flags);
    free(t);
}

/* Grow the scratch buffers to hold n rays (geometric growth so a sequence of slowly
 * increasing batches does not reallocate every time). */
static mmd_status trace_reserve(mmd_trace *t, size_t n)
{
    if (n <= t->cap_rays) return MMD_OK;
    size_t cap = t->cap_rays ? t->cap_rays : 1024;
    while (cap < n) cap = cap > SIZE_MAX / 4 ? n : cap * 2;
    if (t->rays) clReleaseMemObject(t->rays);
    if (t->hits) clReleaseMemObject(t->hits);
    if (t->flags) clReleaseMemObject(t->flags);
    t->rays = t->hits = t->flags = NULL;
    t->cap_rays = 0;
    mmd_status st = mmd_cl_buffer(t->cl, CL_MEM_READ_ONLY, cap * sizeof(mmd_ray), NULL, "ray buffer", &t->rays);
    if (st == MMD_OK)
        st = mmd_cl_buffer(t->cl, CL_MEM_WRITE_ONLY, cap * sizeof(mmd_hit), NULL, "hit buffer", &t->hits);
    if (st == MMD_OK)
        st = mmd_cl_buffer(t->cl, CL_MEM_WRITE_ONLY, cap * sizeof(uint32_t), NULL, "occlusion buffer",
                           &t->flags);
    if (st == MMD_OK) t->cap_rays = cap;
    return st;
}

static mmd_status trace_launch(mmd_trace *t, cl_kernel k, cl_mem rays, cl_mem out, size_t n,
                               const char *what)
{
    if (n == 0) return MMD_OK;
    if (n > UINT32_MAX - 1024) return mmd_error(MMD_ERR_INVALID, "%s: %zu rays in one batch is too many", what, n);
    cl_uint nn = (cl_uint)n;
    cl_int err = clSetKernelArg(k, 0, sizeof(cl_mem), &t->nodes);
    if (err == CL_SUCCESS) err = clSetKernelArg(k, 1, sizeof(cl_mem), &t->tris);
    if (err == CL_SUCCESS) err = clSetKernelArg(k, 2, sizeof(cl_mem), &rays);
    if (err == CL_SUCCESS) err = clSetKernelArg(k, 3, sizeof(cl_mem), &out);
    if (err == CL_SUCCESS) err = clSetKernelArg(k, 4, sizeof(cl_uint), &nn);
    if (err != CL_SUCCESS) return mmd_cl_check(err, what);
    size_t local = t->local_size;
    size_t global = local ? (n + local - 1) / local * local : n;
    err = clEnqueueNDRangeKernel(t->cl->queue, k, 1, NULL, &global, local ? &local : NULL, 0, NULL, NULL);
    return mmd_cl_check(err, what);
}

mmd_status mmd_trace_closest_dev(mmd_trace *t, cl_mem rays, cl_mem hits, size_t n)
{
    return trace_launch(t, t->k_closest, rays, hits, n, "closest-hit kernel launch");
}

mmd_status mmd_trace_any_dev(mmd_trace *t, cl_mem rays, cl_mem occluded, size_t n)
{
    return trace_launch(t, t->k_any, rays, occluded, n, "any-hit kernel launch");
}

/* Upload, run, read back: the shared body of the two host-array wrappers. */
static mmd_status trace_host(mmd_trace *t, int any, const mmd_ray *rays, size_t n, void *out,
                             size_t out_size)
{
    if (n == 0) return MMD_OK;
    mmd_status st = trace_reserve(t, n);
    if (st != MMD_OK) return st;
    cl_command_queue q = t->cl->queue;
    cl_int err = clEnqueueWriteBuffer(q, t->rays, CL_FALSE, 0, n * sizeof(mmd_ray), rays, 0, NULL, NULL);
    if (err != CL_SUCCESS) return mmd_cl_check(err, "ray upload");
    cl_mem dst = any ? t->flags : t->hits;
    st = any ? mmd_trace_any_dev(t, t->rays, dst, n) : mmd_trace_closest_dev(t, t->rays, dst, n);
    if (st != MMD_OK) {
        clFinish(q); /* the upload reads `rays`, which the caller may free after we return */
        return st;
    }
    err = clEnqueueReadBuffer(q, dst, CL_TRUE, 0, n * out_size, out, 0, NULL, NULL);
    return mmd_cl_check(err, any ? "occlusion read-back" : "hit read-back");
}

mmd_status mmd_trace_closest(mmd_trace *t, const mmd_ray *rays, size_t n, mmd_hit *hits)
{
    return trace_host(t, 0, rays, n, hits, sizeof(mmd_hit));
}

mmd_status mmd_trace_any(mmd_trace *t, const mmd_ray *rays, size_t n, uint32_t *occluded)
{
    return trace_host(t, 1, rays, n, occluded, sizeof(uint32_t));
}

/* Self-intersection avoidance: move the point off the surface along the normal by
 * MMD_OFFSET_ULPS float ulps of the point's largest coordinate (at least 1 m). Scaling with
 * the largest coordinate rather than per coordinate (Wächter and Binder, Ray Tracing Gems
 * ch. 6) matters here: the watertight test computes t from vertices relative to the ray
 * origin, so its error grows with the distances to the triangle's vertices (a 19 m
 * wall, a 100 m street) rather than with the one coordinate across the surface, which
 * for a wall at x = 0 is ~0 and would get a 1e-5 m offset that the test's t error
 * (measured up to 5e-5 m on the shared rooms) overwhelms. MMD_OFFSET_ULPS was set with
 * test_trace (25k rays leaving surfaces per shared scene): 256 ulps still let 10 rays
 * re-hit nist_l_room's 19 m x 3 mm wall strips, 512 is the smallest with none, 1024
 * keeps a factor 2 (1.2e-4 m at 1 m, 2 mm at 16 m, 6 cm at 800 m in munich). */
#define MMD_OFFSET_ULPS 1024.0f

void mmd_offset_origin(const float p[3], const float n[3], const float dir[3], float out[3])
{
    double len = sqrt((double)n[0] * n[0] + (double)n[1] * n[1] + (double)n[2] * n[2]);
    if (!(len > 0.0) || !isfinite(len)) { /* no usable normal: leave the point alone */
        out[0] = p[0], out[1] = p[1], out[2] = p[2];
        return;
    }
    double side = (double)n[0] * dir[0] + (double)n[1] * dir[1] + (double)n[2] * dir[2];
    float m = fmaxf(fmaxf(fabsf(p[0]), fabsf(p[1])), fmaxf(fabsf(p[2]), 1.0f));
    int e;
    frexpf(m, &e); /* m = f * 2^e, f in [0.5, 1): one ulp of m is 2^(e - 24) */
    double h = (double)MMD_OFFSET_ULPS * ldexp(1.0, e - 24);
    double s = (side < 0.0 ? -h : h) / len;
    for (int k = 0; k < 3; k++) out[k] = (float)((double)p[k] + s * n[k]);
}
