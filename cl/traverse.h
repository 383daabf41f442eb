/*
 * traverse.h - BVH8 traversal as device functions, shared by every kernel that shoots
 * rays (trace.cl, aoa.cl, ...): closest hit and any hit (shadow rays).
 *
 * Acceleration structure: the Karras (2012) LBVH built on the host and collapsed to
 * 8-wide nodes (mmd_shared.h). Triangle test: the watertight test of Woop, Benthin and
 * Wald (JCGT 2013) from mmd_isect.h, shared verbatim with the host references, so hits
 * (prim, t, u, v) are bit-identical to mmd_bvh_closest_ref / mmd_brute_closest.
 * See trace.cl for why the code is shaped for explicit float8 vectors.
 */
#ifndef MMD_CL_TRAVERSE_H
#define MMD_CL_TRAVERSE_H
#include "mmd_shared.h"
#include "mmd_isect.h"

/* 7 * depth + 1 entries are live at most (mmd_isect.h); the push below stores 8
 * entries unconditionally (the tail beyond the hit count is scratch), hence +8. */
#define MMD_TRACE_STACK (MMD_BVH_STACK + 8)

#ifndef MMD_TRACE_CPU
#define MMD_TRACE_CPU 0
#endif

/* Software prefetch of the children pushed on the stack (CPU devices): a CPU core
 * otherwise stalls on every node and leaf it pops (one work-item is one dependent chain
 * of loads), while the children below the top of the stack are visited many
 * instructions later, long enough for their cache lines to arrive. Clang-based
 * compilers (PoCL) provide __builtin_prefetch; elsewhere it is a no-op. */
#ifndef MMD_TRACE_PREFETCH
#define MMD_TRACE_PREFETCH MMD_TRACE_CPU
#endif
#if MMD_TRACE_PREFETCH && defined(__has_builtin)
#if __has_builtin(__builtin_prefetch)
#define MMD_PF(p) __builtin_prefetch(p)
#endif
#endif
#ifndef MMD_PF
#define MMD_PF(p) ((void)0)
#endif

/* any() of a mask vector as one OR-reduction and one branch. PoCL (3.1, LLVM 15) lowers
 * the built-in any() to a chain of early-exit branches, one per lane pair, which
 * mispredict on incoherent rays: with these, closest hit and shadow rays got 10-15%
 * faster on the CPU device, with the same results. */
static inline int any8(int8 m)
{
    int4 a = m.lo | m.hi;
    int2 b = a.lo | a.hi;
    return (b.x | b.y) != 0;
}

static inline int any4(int4 m)
{
    int2 b = m.lo | m.hi;
    return (b.x | b.y) != 0;
}

/* Box slack as in mmd_isect_box: widen [tn, tf] away from zero on each side. */
#define MMD_BOX_LO (1.0f - MMD_ISECT_BOX_EPS)
#define MMD_BOX_HI (1.0f + MMD_ISECT_BOX_EPS)

/* Per-ray constants for the float8 box test: the node's SoA array offsets (in floats)
 * of the near and far planes per axis, chosen by the direction's sign as in
 * mmd_isect_slab, so the empty-slot marker (lo = +INF, hi = -INF) gives near > far. */
typedef struct mmd_trace_ray {
    mmd_isect_ray r;
    float tmin;
    int nx, fx, ny, fy, nz, fz;
} mmd_trace_ray;

/* Per-ray setup from an origin, a direction (need not be unit) and tmin. */
static inline void trace_ray_setup(mmd_trace_ray *tr, float ox, float oy, float oz, float dx, float dy, float dz,
                                   float tmin)
{
    mmd_isect_ray_init(&tr->r, ox, oy, oz, dx, dy, dz);
    tr->tmin = tmin;
    /* offsets of lo_x, hi_x, lo_y, hi_y, lo_z, hi_z in the node: 0, 8, 16, 24, 32, 40 */
    tr->nx = tr->r.idx >= 0.0f ? 0 : 8;
    tr->fx = 8 - tr->nx;
    tr->ny = tr->r.idy >= 0.0f ? 16 : 24;
    tr->fy = 40 - tr->ny;
    tr->nz = tr->r.idz >= 0.0f ? 32 : 40;
    tr->fz = 72 - tr->nz;
}

/* One axis of the 8-wide slab test. A parallel axis (direction component zero or
 * subnormal, 1/d stored as 0) is all-or-nothing, as in mmd_isect_slab. */
static inline void slab8(int parallel, __global const float *nd, int near_off, int far_off,
                         float o, float id, float8 *tn, float8 *tf)
{
    float8 lo = vload8(0, nd + near_off), hi = vload8(0, nd + far_off);
    if (parallel) {
        int8 in = (lo <= o) & (o <= hi);
        *tn = select((float8)(INFINITY), (float8)(-INFINITY), in);
        *tf = select((float8)(-INFINITY), (float8)(INFINITY), in);
    } else {
        *tn = (lo - o) * id;
        *tf = (hi - o) * id;
    }
}

/* Test the 8 child boxes of node `nd` against [tmin, tmax]; returns the hit mask (-1 =
 * hit) and the widened entry distances. Same decisions as mmd_isect_box lane by lane. */
static inline int8 box8(const mmd_trace_ray *tr, __global const float *nd, float tmax, float8 *tn_out)
{
    float8 tnx, tfx, tny, tfy, tnz, tfz;
    if (tr->r.par == 0) {
        tnx = (vload8(0, nd + tr->nx) - tr->r.ox) * tr->r.idx;
        tfx = (vload8(0, nd + tr->fx) - tr->r.ox) * tr->r.idx;
        tny = (vload8(0, nd + tr->ny) - tr->r.oy) * tr->r.idy;
        tfy = (vload8(0, nd + tr->fy) - tr->r.oy) * tr->r.idy;
        tnz = (vload8(0, nd + tr->nz) - tr->r.oz) * tr->r.idz;
        tfz = (vload8(0, nd + tr->fz) - tr->r.oz) * tr->r.idz;
    } else {
        slab8(tr->r.par & 1, nd, tr->nx, tr->fx, tr->r.ox, tr->r.idx, &tnx, &tfx);
        slab8(tr->r.par & 2, nd, tr->ny, tr->fy, tr->r.oy, tr->r.idy, &tny, &tfy);
        slab8(tr->r.par & 4, nd, tr->nz, tr->fz, tr->r.oz, tr->r.idz, &tnz, &tfz);
    }
    float8 tn = max(max(tnx, tny), tnz);
    float8 tf = min(min(tfx, tfy), tfz);
    tn = tn * select((float8)(MMD_BOX_HI), (float8)(MMD_BOX_LO), tn > 0.0f);
    tf = tf * select((float8)(MMD_BOX_LO), (float8)(MMD_BOX_HI), tf > 0.0f);
    *tn_out = tn;
    return (tn <= tf) & (tn <= tmax) & (tf >= tr->tmin);
}

/* One compare-exchange layer of a descending sorting network: `p` is the key vector
 * permuted to each lane's partner, `first` marks lanes that take the larger key. */
#define MMD_CX(k, p, first) select(min((k), (p)), max((k), (p)), (int8)first)

/* Sort 8 int keys in descending order (Knuth's 19-comparator, 6-layer network for 8
 * inputs). Keys are (distance bits | lane) for hit lanes and -1 for missed lanes, so the
 * hit children come first, farthest first, and the count of hits is where -1 starts. */
static inline int8 sort8_desc(int8 k)
{
    k = MMD_CX(k, k.s23016745, (int8)(-1, -1, 0, 0, -1, -1, 0, 0));
    k = MMD_CX(k, k.s45670123, (int8)(-1, -1, -1, -1, 0, 0, 0, 0));
    k = MMD_CX(k, k.s10325476, (int8)(-1, 0, -1, 0, -1, 0, -1, 0));
    k = MMD_CX(k, k.s01452367, (int8)(0, 0, -1, -1, 0, 0, 0, 0));
    k = MMD_CX(k, k.s04261537, (int8)(0, -1, 0, -1, 0, 0, 0, 0));
    k = MMD_CX(k, k.s02143657, (int8)(0, -1, 0, -1, 0, -1, 0, 0));
    return k;
}

/* Push the hit children of a node so that the nearest ends on top of the stack.
 * Returns the new stack pointer. */
static inline int push_children(__global const mmd_bvh8_node *nodes, __global const mmd_tri *tris,
                                __global const float *nd, int8 hit, float8 tn, int sp, int *stack_c, float *stack_t)
{
    int8 lane = (int8)(0, 1, 2, 3, 4, 5, 6, 7);
#if MMD_TRACE_CPU
    /* distances are >= 0 after the clamp, so their bit patterns order like the floats;
     * the low 3 mantissa bits make room for the lane (a relative change of 2^-20, and
     * only downwards, so the stored distance stays a conservative entry distance) */
    int8 key = select((int8)(-1), (as_int8(max(tn, 0.0f)) & (int8)(~7)) | lane, hit);
    key = sort8_desc(key);
    vstore8(as_float8(key & (int8)(~7)), 0, stack_t + sp);
    __global const int *child = (__global const int *)(nd + 48);
    int4 h4 = hit.lo + hit.hi;
    int2 h2 = h4.lo + h4.hi;
    int cnt = -(h2.x + h2.y);
    int keys[8];
    vstore8(key, 0, keys);
    for (int j = 0; j < cnt; j++) {
        int c = child[keys[j] & 7];
        stack_c[sp + j] = c;
#ifdef MMD_PF
        /* a node spans up to 5 cache lines, a leaf of <= 4 triangles up to 4 */
        __global const char *p = c >= 0 ? (__global const char *)(nodes + c)
                                        : (__global const char *)(tris + ((uint)~c >> MMD_LEAF_COUNT_BITS));
        MMD_PF(p);
        MMD_PF(p + 64);
        MMD_PF(p + 128);
        MMD_PF(p + 191);
        if (c >= 0) MMD_PF(p + 223);
#endif
    }
    return sp + cnt;
#else
    /* nearest-first partial order: push the others in slot order, the nearest last */
    __global const int *child = (__global const int *)(nd + 48);
    float best = INFINITY;
    int bi = -1;
    float tns[8];
    int hs[8];
    vstore8(tn, 0, tns);
    vstore8(hit, 0, hs);
    for (int j = 0; j < 8; j++) {
        if (!hs[j]) continue;
        if (tns[j] < best) {
            if (bi >= 0) {
                stack_c[sp] = child[bi];
                stack_t[sp++] = best;
            }
            best = tns[j];
            bi = j;
        } else {
            stack_c[sp] = child[j];
            stack_t[sp++] = tns[j];
        }
    }
    if (bi >= 0) {
        stack_c[sp] = child[bi];
        stack_t[sp++] = best;
    }
    (void)lane;
    return sp;
#endif
}

/* Decode a leaf child entry into its triangle range. */
static inline void leaf_range(int c, uint *first, uint *count)
{
    uint l = (uint)~c;
    *first = l >> MMD_LEAF_COUNT_BITS;
    *count = (l & MMD_LEAF_COUNT_MASK) + 1u;
}

/* mmd_isect_tri on up to 4 triangles of a leaf at once, lane by lane the same
 * operations in the same order (so the same bits) as the scalar test: selecting vertex
 * component kx by loading element kx gives exactly mmd_isect_sel's value, and every
 * arithmetic step below mirrors one line of mmd_isect_tri. Lanes past the leaf's end
 * repeat its last triangle, which cannot change the result. Returns the mask of lanes
 * that hit within [tmin, tmax], with t, the scaled barycentrics V, W and 1/det. */
static inline int4 isect_tri4(const mmd_isect_ray *r, __global const float *tf, uint first, uint last, uint j,
                              float tmin, float tmax, float4 *t_out, float4 *v_out, float4 *w_out,
                              float4 *rcp_out, uint4 *prim_out)
{
    /* scalar addressing: computing the 4 indices as a uint4 costs an extract per load */
    uint i0 = first + j;
    __global const float *p0 = tf + 12u * i0, *p1 = tf + 12u * min(i0 + 1u, last),
                         *p2 = tf + 12u * min(i0 + 2u, last), *p3 = tf + 12u * min(i0 + 3u, last);
    int kx = r->kx, ky = r->ky, kz = r->kz;
#define MMD_G(off, k) (float4)(p0[(off) + (k)], p1[(off) + (k)], p2[(off) + (k)], p3[(off) + (k)])
    float4 ax = MMD_G(0, kx) - r->pox, ay = MMD_G(0, ky) - r->poy, az = MMD_G(0, kz) - r->poz;
    float4 bx = MMD_G(4, kx) - r->pox, by = MMD_G(4, ky) - r->poy, bz = MMD_G(4, kz) - r->poz;
    float4 cx = MMD_G(8, kx) - r->pox, cy = MMD_G(8, ky) - r->poy, cz = MMD_G(8, kz) - r->poz;
    *prim_out = as_uint4(MMD_G(3, 0));
#undef MMD_G
    float4 Ax = ax - r->sx * az, Ay = ay - r->sy * az;
    float4 Bx = bx - r->sx * bz, By = by - r->sy * bz;
    float4 Cx = cx - r->sx * cz, Cy = cy - r->sy * cz;
    float4 U = Cx * By - Cy * Bx;
    float4 V = Ax * Cy - Ay * Cx;
    float4 W = Bx * Ay - By * Ax;
    int4 outside = ((U < 0.0f) | (V < 0.0f) | (W < 0.0f)) & ((U > 0.0f) | (V > 0.0f) | (W > 0.0f));
    float4 det = U + V + W;
    float4 Az = r->sz * az, Bz = r->sz * bz, Cz = r->sz * cz;
    float4 T = U * Az + V * Bz + W * Cz;
    float4 rcp = 1.0f / det;
    float4 t = T * rcp;
    *t_out = t;
    *v_out = V;
    *w_out = W;
    *rcp_out = rcp;
    return ~outside & (det != 0.0f) & (t >= tmin) & (t <= tmax);
}


/* Traversal state of one ray, advanced one node or leaf at a time by trav_*_step. The
 * whole-ray queries below are loops over these steps; kernels that keep two rays per
 * work-item (aoa.cl on CPU devices) alternate the steps of both, so one ray's node loads
 * are in flight while the other's box tests run (a CPU core otherwise waits on every
 * dependent load of a single traversal). Each ray takes the same decisions either way. */
typedef struct mmd_trav {
    mmd_trace_ray tr;
    float best_t, best_u, best_v;
    uint best_prim; /* 0xffffffff: no hit (any-hit queries set 0 when occluded) */
    int sp;
    int stack_c[MMD_TRACE_STACK];
    float stack_t[MMD_TRACE_STACK];
} mmd_trav;

/* Start a query of the ray in s->tr over [s->tr.tmin, tmax]. */
static inline void trav_start(mmd_trav *s, float tmax)
{
    s->best_t = tmax;
    s->best_prim = 0xffffffffu;
    s->best_u = s->best_v = 0.0f;
    s->stack_c[0] = 0;
    s->stack_t[0] = -INFINITY;
    s->sp = 1;
}

/* One step of a closest-hit query; 0 once the query is finished. Equal t resolves to the
 * smaller scene triangle id (mmd_isect_better). */
static inline int trav_closest_step(__global const mmd_bvh8_node *nodes, __global const mmd_tri *tris, mmd_trav *s)
{
    if (s->sp == 0) return 0;
    int sp = --s->sp;
    int c = s->stack_c[sp];
    /* entries were pushed with their entry distance; drop those beyond the best hit
     * (same decision the box test would now make) */
    if (s->stack_t[sp] > s->best_t) return 1;
    if (c < 0) {
        uint first, count;
        leaf_range(c, &first, &count);
        for (uint j = 0; j < count; j += 4) {
            float4 t, V, W, rcp;
            uint4 prim;
            int4 ok = isect_tri4(&s->tr.r, (__global const float *)tris, first, first + count - 1, j, s->tr.tmin,
                                 s->best_t, &t, &V, &W, &rcp, &prim);
            if (!any4(ok)) continue;
            /* the scalar loop's order: each candidate against the best so far */
            float ts[4], vs[4], ws[4], rs[4];
            uint ps[4];
            int oks[4];
            vstore4(t, 0, ts), vstore4(V, 0, vs), vstore4(W, 0, ws), vstore4(rcp, 0, rs);
            vstore4(prim, 0, ps), vstore4(ok, 0, oks);
            for (int l = 0; l < 4; l++) {
                if (oks[l] && mmd_isect_better(ts[l], ps[l], s->best_t, s->best_prim)) {
                    s->best_t = ts[l];
                    s->best_prim = ps[l];
                    s->best_u = vs[l] * rs[l];
                    s->best_v = ws[l] * rs[l];
                }
            }
        }
        return 1;
    }
    __global const float *nd = (__global const float *)(nodes + c);
    float8 tn;
    int8 hit = box8(&s->tr, nd, s->best_t, &tn);
    if (any8(hit)) s->sp = push_children(nodes, tris, nd, hit, tn, sp, s->stack_c, s->stack_t);
    return 1;
}

/* One step of an any-hit query over [tmin, tmax]; 0 once finished (best_prim == 0 then
 * means occluded). */
static inline int trav_any_step(__global const mmd_bvh8_node *nodes, __global const mmd_tri *tris, mmd_trav *s)
{
    if (s->sp == 0) return 0;
    int sp = --s->sp;
    int c = s->stack_c[sp];
    if (c < 0) {
        uint first, count;
        leaf_range(c, &first, &count);
        for (uint j = 0; j < count; j += 4) {
            float4 t, V, W, rcp;
            uint4 prim;
            if (any4(isect_tri4(&s->tr.r, (__global const float *)tris, first, first + count - 1, j, s->tr.tmin,
                                s->best_t, &t, &V, &W, &rcp, &prim))) {
                s->best_prim = 0;
                s->sp = 0;
                return 0;
            }
        }
        return 1;
    }
    __global const float *nd = (__global const float *)(nodes + c);
    float8 tn;
    int8 hit = box8(&s->tr, nd, s->best_t, &tn);
    if (any8(hit)) s->sp = push_children(nodes, tris, nd, hit, tn, sp, s->stack_c, s->stack_t);
    return 1;
}

/* Closest hit within [tr->tmin, tmax]: returns 1 and (t, prim, u, v) on a hit, else 0. */
static inline int trav_closest(__global const mmd_bvh8_node *nodes, __global const mmd_tri *tris,
                               const mmd_trace_ray *trp, float tmax, float *t_out, uint *prim_out, float *u_out,
                               float *v_out)
{
    mmd_trav s;
    s.tr = *trp;
    trav_start(&s, tmax);
    while (trav_closest_step(nodes, tris, &s)) {
    }
    *t_out = s.best_t;
    *prim_out = s.best_prim;
    *u_out = s.best_u;
    *v_out = s.best_v;
    return s.best_prim != 0xffffffffu;
}

/* Any hit within [tr->tmin, tmax] (shadow rays): 1 if occluded. */
static inline int trav_any(__global const mmd_bvh8_node *nodes, __global const mmd_tri *tris,
                           const mmd_trace_ray *trp, float tmax)
{
    mmd_trav s;
    s.tr = *trp;
    trav_start(&s, tmax);
    while (trav_any_step(nodes, tris, &s)) {
    }
    return s.best_prim == 0;
}

#endif
