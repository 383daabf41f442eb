/*
 * bench.h - interface between tools/bench.c and the Embree reference in
 * tools/bench_embree.c (stubs when Embree is absent).
 */
#ifndef MMD_BENCH_H
#define MMD_BENCH_H

#include "mmd_core.h"
#include "mmd_shared.h"

typedef struct bench_embree bench_embree;

int bench_embree_available(void);
const char *bench_embree_version(void);
/* A device whose internal builder threads are limited to `threads`. */
bench_embree *bench_embree_create(int threads);
void bench_embree_destroy(bench_embree *e);
/* Build (quality 0 = LOW: Morton; 1 = MEDIUM: binned SAH) and keep the scene for
 * tracing; returns the commit time in seconds, or < 0 on failure. The vertex array must
 * have 4 readable floats after the last vertex (Embree loads vertices as 16 bytes). */
double bench_embree_build(bench_embree *e, const float *vertices, uint32_t n_vertices, const uint32_t *indices,
                          uint32_t n_tris, int quality);
/* Single-ray rtcIntersect1 (any = 0) or rtcOccluded1 (any = 1) over the rays, split
 * over `threads` host threads; optional outputs. Returns seconds, or < 0. */
double bench_embree_trace(bench_embree *e, const mmd_ray *rays, size_t n, int any, int threads, int32_t *prim,
                          uint32_t *occluded);

/* CLBlast MLP (the neural material field, mmd_mlp.h) forward + backward at 65536 and
 * 262144 rows next to OpenBLAS cblas_sgemm on the same GEMM shapes in this process
 * (tools/bench_mlp.c). Prints human lines and BENCH lines; returns 0 on success. */
struct mmd_cl;
int bench_mlp(struct mmd_cl *cl);

/* Coverage maps (both solver modes) and calibration steps (per-object and neural, path
 * cache on and off) on a room PLY (tools/bench_calib.c); `dir` is a scratch directory. */
int bench_coverage(struct mmd_cl *cl, const char *dir, const char *room_ply);
int bench_calib(struct mmd_cl *cl, const char *dir, const char *room_ply);

#endif
