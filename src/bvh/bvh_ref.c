/*
 * bvh_ref.c - structural validation of the wide BVH and the plain-C reference
 * traversals the kernels are tested against.
 *
 * Traversal is the usual stack-based depth-first walk (near children popped first);
 * the ray/triangle test is the watertight test of Woop, Benthin and Wald (JCGT 2013)
 * from mmd_isect.h and the closest hit is the smallest (t, scene triangle index) pair,
 * so the result does not depend on visiting order and equals brute force bit for bit.
 * Box tests are conservative (mmd_isect_box), so they only ever cost time.
 */
#include "mmd_bvh.h"
#include "mmd_isect.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NO_PRIM 0xffffffffu

/* ------------------------------------------------------------------------------ */
/* validation                                                                     */

static int box_inverted(const mmd_bvh8_node *nd, int j)
{
    return nd->lo_x[j] == INFINITY && nd->lo_y[j] == INFINITY && nd->lo_z[j] == INFINITY &&
           nd->hi_x[j] == -INFINITY && nd->hi_y[j] == -INFINITY && nd->hi_z[j] == -INFINITY;
}

static int box_ok(const mmd_bvh8_node *nd, int j)
{
    /* finite and not inverted (flat boxes are fine: axis-aligned triangles) */
    return isfinite(nd->lo_x[j]) && isfinite(nd->lo_y[j]) && isfinite(nd->lo_z[j]) &&
           isfinite(nd->hi_x[j]) && isfinite(nd->hi_y[j]) && isfinite(nd->hi_z[j]) &&
           nd->lo_x[j] <= nd->hi_x[j] && nd->lo_y[j] <= nd->hi_y[j] && nd->lo_z[j] <= nd->hi_z[j];
}

static int point_in(const mmd_bvh8_node *nd, int j, const float *p)
{
    return p[0] >= nd->lo_x[j] && p[0] <= nd->hi_x[j] && p[1] >= nd->lo_y[j] &&
           p[1] <= nd->hi_y[j] && p[2] >= nd->lo_z[j] && p[2] <= nd->hi_z[j];
}

/* box of slot cj of node c inside box of slot pj of node p */
static int box_inside(const mmd_bvh8_node *c, int cj, const mmd_bvh8_node *p, int pj)
{
    return c->lo_x[cj] >= p->lo_x[pj] && c->lo_y[cj] >= p->lo_y[pj] && c->lo_z[cj] >= p->lo_z[pj] &&
           c->hi_x[cj] <= p->hi_x[pj] && c->hi_y[cj] <= p->hi_y[pj] && c->hi_z[cj] <= p->hi_z[pj];
}

mmd_status mmd_bvh_validate(const mmd_bvh *b)
{
    if (!b || !b->nodes || !b->tris || b->n_nodes == 0 || b->n_tris == 0)
        return mmd_error(MMD_ERR_INTERNAL, "BVH validate: empty or missing arrays");
    if (b->n_tris > MMD_BVH_MAX_TRIS || b->n_nodes >= 0x80000000u)
        return mmd_error(MMD_ERR_INTERNAL, "BVH validate: %u nodes / %u triangles out of range",
                         b->n_nodes, b->n_tris);
    const uint32_t nn = b->n_nodes, nt = b->n_tris;
    mmd_status st = MMD_OK;
    unsigned char *prim_seen = calloc(nt, 1);
    unsigned char *covered = calloc(nt, 1);
    unsigned char *refd = calloc(nn, 1);
    uint32_t *stack = malloc((size_t)nn * sizeof *stack);
    unsigned char *sdepth = malloc(nn);
    if (!prim_seen || !covered || !refd || !stack || !sdepth) {
        st = mmd_error(MMD_ERR_NOMEM, "out of memory validating the BVH");
        goto done;
    }
    for (uint32_t i = 0; i < nt; i++) {
        const mmd_tri *t = &b->tris[i];
        if (t->prim >= nt || prim_seen[t->prim]++) {
            st = mmd_error(MMD_ERR_INTERNAL, "BVH validate: tris[%u].prim = %u is out of range or repeated",
                           i, t->prim);
            goto done;
        }
        if (t->pad1 || t->pad2) {
            st = mmd_error(MMD_ERR_INTERNAL, "BVH validate: tris[%u] has non-zero padding", i);
            goto done;
        }
    }
    int sp = 0, max_depth = 0;
    uint32_t visited = 0;
    stack[sp] = 0;
    sdepth[sp++] = 1;
    while (sp > 0) {
        sp--;
        uint32_t ni = stack[sp];
        int depth = sdepth[sp];
        const mmd_bvh8_node *nd = &b->nodes[ni];
        visited++;
        if (depth > max_depth) max_depth = depth;
        if (depth > MMD_BVH_MAX_DEPTH) {
            st = mmd_error(MMD_ERR_INTERNAL, "BVH validate: node %u at depth %d exceeds the limit %d",
                           ni, depth, MMD_BVH_MAX_DEPTH);
            goto done;
        }
        int used = 0;
        for (int j = 0; j < 8; j++) {
            int32_t c = nd->child[j];
            if (c == 0) {
                if (!box_inverted(nd, j)) {
                    st = mmd_error(MMD_ERR_INTERNAL, "BVH validate: node %u slot %d is empty but its box is not inverted",
                                   ni, j);
                    goto done;
                }
                continue;
            }
            used++;
            if (!box_ok(nd, j)) {
                st = mmd_error(MMD_ERR_INTERNAL, "BVH validate: node %u slot %d has an invalid box", ni, j);
                goto done;
            }
            if (ni == 0) {
                const float lo[3] = {nd->lo_x[j], nd->lo_y[j], nd->lo_z[j]};
                const float hi[3] = {nd->hi_x[j], nd->hi_y[j], nd->hi_z[j]};
                for (int k = 0; k < 3; k++)
                    if (lo[k] < b->bbox_min[k] || hi[k] > b->bbox_max[k]) {
                        st = mmd_error(MMD_ERR_INTERNAL, "BVH validate: root slot %d outside the scene box", j);
                        goto done;
                    }
            }
            if (c > 0) {
                uint32_t ci = (uint32_t)c;
                if (ci >= nn) {
                    st = mmd_error(MMD_ERR_INTERNAL, "BVH validate: node %u slot %d points to node %u of %u",
                                   ni, j, ci, nn);
                    goto done;
                }
                if (refd[ci]++) {
                    st = mmd_error(MMD_ERR_INTERNAL, "BVH validate: node %u is referenced more than once", ci);
                    goto done;
                }
                const mmd_bvh8_node *cn = &b->nodes[ci];
                for (int k = 0; k < 8; k++)
                    if (cn->child[k] != 0 && !box_inside(cn, k, nd, j)) {
                        st = mmd_error(MMD_ERR_INTERNAL,
                                       "BVH validate: node %u slot %d box is not inside its parent's (node %u slot %d)",
                                       ci, k, ni, j);
                        goto done;
                    }
                stack[sp] = ci;
                sdepth[sp++] = (unsigned char)(depth + 1);
            } else {
                uint32_t code = ~(uint32_t)c;
                uint32_t first = code >> MMD_LEAF_COUNT_BITS, count = (code & MMD_LEAF_COUNT_MASK) + 1;
                if ((uint64_t)first + count > nt) {
                    st = mmd_error(MMD_ERR_INTERNAL, "BVH validate: node %u slot %d leaf [%u, +%u) beyond %u triangles",
                                   ni, j, first, count, nt);
                    goto done;
                }
                for (uint32_t i = first; i < first + count; i++) {
                    if (covered[i]++) {
                        st = mmd_error(MMD_ERR_INTERNAL, "BVH validate: tris[%u] is in more than one leaf", i);
                        goto done;
                    }
                    const mmd_tri *t = &b->tris[i];
                    if (!point_in(nd, j, t->v0) || !point_in(nd, j, t->v1) || !point_in(nd, j, t->v2)) {
                        st = mmd_error(MMD_ERR_INTERNAL,
                                       "BVH validate: tris[%u] (prim %u) is not inside its leaf box (node %u slot %d)",
                                       i, t->prim, ni, j);
                        goto done;
                    }
                }
            }
        }
        if (used == 0) {
            st = mmd_error(MMD_ERR_INTERNAL, "BVH validate: node %u has no children", ni);
            goto done;
        }
    }
    if (visited != nn) {
        st = mmd_error(MMD_ERR_INTERNAL, "BVH validate: %u of %u nodes are unreachable", nn - visited, nn);
        goto done;
    }
    for (uint32_t i = 0; i < nt; i++)
        if (!covered[i]) {
            st = mmd_error(MMD_ERR_INTERNAL, "BVH validate: tris[%u] (prim %u) is in no leaf", i,
                           b->tris[i].prim);
            goto done;
        }
    if (max_depth != b->depth) {
        st = mmd_error(MMD_ERR_INTERNAL, "BVH validate: recorded depth %d, actual %d", b->depth, max_depth);
        goto done;
    }
done:
    free(prim_seen);
    free(covered);
    free(refd);
    free(stack);
    free(sdepth);
    return st;
}

/* ------------------------------------------------------------------------------ */
/* traversal                                                                      */

typedef struct best {
    float t, u, v;
    uint32_t prim;
} best;

static inline void test_tri(const mmd_isect_ray *pr, const mmd_tri *tr, float tmin, best *bs)
{
    float t, u, v;
    if (mmd_isect_tri_ptr(pr, tr->v0, tr->v1, tr->v2, tmin, bs->t, &t, &u, &v) &&
        mmd_isect_better(t, tr->prim, bs->t, bs->prim)) {
        bs->t = t;
        bs->u = u;
        bs->v = v;
        bs->prim = tr->prim;
    }
}

static mmd_hit to_hit(const best *bs)
{
    mmd_hit h;
    if (bs->prim == NO_PRIM) {
        h.t = INFINITY;
        h.u = h.v = 0.0f;
        h.prim = -1;
    } else {
        h.t = bs->t;
        h.u = bs->u;
        h.v = bs->v;
        h.prim = (mmd_i32)bs->prim;
    }
    return h;
}

/* Closest hit over the leaf-ordered triangle array: what the traversal falls back to if
 * its stack would overflow (impossible for trees that pass mmd_bvh_validate). */
static mmd_hit closest_all(const mmd_bvh *b, const mmd_isect_ray *pr, const mmd_ray *r)
{
    best bs = {r->tmax, 0.0f, 0.0f, NO_PRIM};
    for (uint32_t i = 0; i < b->n_tris; i++) test_tri(pr, &b->tris[i], r->tmin, &bs);
    return to_hit(&bs);
}

typedef struct entry {
    int32_t code; /* > 0 node, < 0 leaf, 0 root */
    float tn;
} entry;

mmd_hit mmd_bvh_closest_ref(const mmd_bvh *b, const mmd_ray *r)
{
    mmd_isect_ray pr;
    mmd_isect_ray_init(&pr, r->ox, r->oy, r->oz, r->dx, r->dy, r->dz);
    best bs = {r->tmax, 0.0f, 0.0f, NO_PRIM};
    entry stack[MMD_BVH_STACK];
    int sp = 0;
    stack[sp++] = (entry){0, -INFINITY};
    while (sp > 0) {
        entry e = stack[--sp];
        if (!(e.tn <= bs.t)) continue; /* the box starts beyond the current best */
        if (e.code < 0) {
            uint32_t code = ~(uint32_t)e.code;
            uint32_t first = code >> MMD_LEAF_COUNT_BITS, count = (code & MMD_LEAF_COUNT_MASK) + 1;
            for (uint32_t i = first; i < first + count; i++) test_tri(&pr, &b->tris[i], r->tmin, &bs);
            continue;
        }
        const mmd_bvh8_node *nd = &b->nodes[e.code];
        entry hit[8];
        int nh = 0;
        for (int j = 0; j < 8; j++) {
            float tn;
            if (nd->child[j] == 0) continue;
            if (!mmd_isect_box(&pr, nd->lo_x[j], nd->lo_y[j], nd->lo_z[j], nd->hi_x[j], nd->hi_y[j],
                               nd->hi_z[j], r->tmin, bs.t, &tn))
                continue;
            /* insertion sort, farthest first, so the nearest is popped next */
            int k = nh++;
            while (k > 0 && hit[k - 1].tn < tn) {
                hit[k] = hit[k - 1];
                k--;
            }
            hit[k] = (entry){nd->child[j], tn};
        }
        if (sp + nh > MMD_BVH_STACK) return closest_all(b, &pr, r);
        for (int k = 0; k < nh; k++) stack[sp++] = hit[k];
    }
    return to_hit(&bs);
}

int mmd_bvh_any_ref(const mmd_bvh *b, const mmd_ray *r)
{
    mmd_isect_ray pr;
    mmd_isect_ray_init(&pr, r->ox, r->oy, r->oz, r->dx, r->dy, r->dz);
    int32_t stack[MMD_BVH_STACK];
    int sp = 0;
    stack[sp++] = 0;
    while (sp > 0) {
        int32_t code = stack[--sp];
        float t, u, v;
        if (code < 0) {
            uint32_t c = ~(uint32_t)code;
            uint32_t first = c >> MMD_LEAF_COUNT_BITS, count = (c & MMD_LEAF_COUNT_MASK) + 1;
            for (uint32_t i = first; i < first + count; i++) {
                const mmd_tri *tr = &b->tris[i];
                if (mmd_isect_tri_ptr(&pr, tr->v0, tr->v1, tr->v2, r->tmin, r->tmax, &t, &u, &v))
                    return 1;
            }
            continue;
        }
        const mmd_bvh8_node *nd = &b->nodes[code];
        for (int j = 0; j < 8; j++) {
            float tn;
            if (nd->child[j] == 0) continue;
            if (!mmd_isect_box(&pr, nd->lo_x[j], nd->lo_y[j], nd->lo_z[j], nd->hi_x[j], nd->hi_y[j],
                               nd->hi_z[j], r->tmin, r->tmax, &tn))
                continue;
            if (sp == MMD_BVH_STACK) {
                /* cannot happen for validated trees; stay correct anyway */
                return mmd_bvh_closest_ref(b, r).prim >= 0;
            }
            stack[sp++] = nd->child[j];
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------------ */
/* brute force                                                                    */

static inline int brute_tri(const mmd_isect_ray *pr, const float *vtx, const uint32_t *ix,
                            float tmin, float tmax, float *t, float *u, float *v)
{
    const float *a = vtx + 3 * (size_t)ix[0], *b = vtx + 3 * (size_t)ix[1], *c = vtx + 3 * (size_t)ix[2];
    return mmd_isect_tri_ptr(pr, a, b, c, tmin, tmax, t, u, v);
}

#if defined(__GNUC__)
/* Brute force is the oracle for every traversal test, and 100k rays x 20k triangles is
 * 2e9 triangle tests, so it runs the edge-function part of the watertight test on four
 * triangles at once (GCC/Clang vector extensions; IEEE single operations in the same
 * order as mmd_isect_tri_perm, so the lane results equal the scalar ones) and calls
 * the scalar test only for triangles that pass. Bit 0..3 of the result: lane passes. */
typedef float brute_v4 __attribute__((vector_size(16)));
typedef int brute_v4i __attribute__((vector_size(16)));

static inline __attribute__((always_inline)) unsigned brute_edges4(const mmd_isect_ray *pr, const float *vtx,
                                                                  const uint32_t *ix)
{
    /* built element-wise: scalar stores reloaded as one vector would stall store
     * forwarding */
    const float *p0 = vtx + 3 * (size_t)ix[0], *q0 = vtx + 3 * (size_t)ix[1], *r0 = vtx + 3 * (size_t)ix[2];
    const float *p1 = vtx + 3 * (size_t)ix[3], *q1 = vtx + 3 * (size_t)ix[4], *r1 = vtx + 3 * (size_t)ix[5];
    const float *p2 = vtx + 3 * (size_t)ix[6], *q2 = vtx + 3 * (size_t)ix[7], *r2 = vtx + 3 * (size_t)ix[8];
    const float *p3 = vtx + 3 * (size_t)ix[9], *q3 = vtx + 3 * (size_t)ix[10], *r3 = vtx + 3 * (size_t)ix[11];
    const int kx = pr->kx, ky = pr->ky, kz = pr->kz;
    brute_v4 a0 = {p0[kx], p1[kx], p2[kx], p3[kx]}, a1 = {p0[ky], p1[ky], p2[ky], p3[ky]};
    brute_v4 a2 = {p0[kz], p1[kz], p2[kz], p3[kz]};
    brute_v4 b0 = {q0[kx], q1[kx], q2[kx], q3[kx]}, b1 = {q0[ky], q1[ky], q2[ky], q3[ky]};
    brute_v4 b2 = {q0[kz], q1[kz], q2[kz], q3[kz]};
    brute_v4 c0 = {r0[kx], r1[kx], r2[kx], r3[kx]}, c1 = {r0[ky], r1[ky], r2[ky], r3[ky]};
    brute_v4 c2 = {r0[kz], r1[kz], r2[kz], r3[kz]};
    const brute_v4 zero = {0, 0, 0, 0};
    const brute_v4 pox = zero + pr->pox, poy = zero + pr->poy, poz = zero + pr->poz;
    const brute_v4 sx = zero + pr->sx, sy = zero + pr->sy;
    brute_v4 ax = a0 - pox, ay = a1 - poy, az = a2 - poz;
    brute_v4 bx = b0 - pox, by = b1 - poy, bz = b2 - poz;
    brute_v4 cx = c0 - pox, cy = c1 - poy, cz = c2 - poz;
    brute_v4 Ax = ax - sx * az, Ay = ay - sy * az;
    brute_v4 Bx = bx - sx * bz, By = by - sy * bz;
    brute_v4 Cx = cx - sx * cz, Cy = cy - sy * cz;
    brute_v4 U = Cx * By - Cy * Bx;
    brute_v4 V = Ax * Cy - Ay * Cx;
    brute_v4 W = Bx * Ay - By * Ax;
    brute_v4i neg = (U < zero) | (V < zero) | (W < zero);
    brute_v4i pos = (U > zero) | (V > zero) | (W > zero);
    brute_v4i pass = ~(neg & pos);
    return (pass[0] ? 1u : 0u) | (pass[1] ? 2u : 0u) | (pass[2] ? 4u : 0u) | (pass[3] ? 8u : 0u);
}
#define BRUTE_LANES 4
#else
#define BRUTE_LANES 1
static inline __attribute__((always_inline)) unsigned brute_edges4(const mmd_isect_ray *pr, const float *vtx,
                                                                  const uint32_t *ix)
{
    (void)pr;
    (void)vtx;
    (void)ix;
    return 1u;
}
#endif

mmd_hit mmd_brute_closest(const float *vertices, const uint32_t *indices, uint32_t n_tris,
                          const mmd_ray *r)
{
    mmd_isect_ray pr;
    mmd_isect_ray_init(&pr, r->ox, r->oy, r->oz, r->dx, r->dy, r->dz);
    best bs = {r->tmax, 0.0f, 0.0f, NO_PRIM};
    uint32_t i = 0;
    for (; i + BRUTE_LANES <= n_tris; i += BRUTE_LANES) {
        unsigned m = brute_edges4(&pr, vertices, indices + 3 * (size_t)i);
        for (uint32_t l = 0; m; l++, m >>= 1) {
            float t, u, v;
            if ((m & 1u) &&
                brute_tri(&pr, vertices, indices + 3 * (size_t)(i + l), r->tmin, bs.t, &t, &u, &v) &&
                mmd_isect_better(t, i + l, bs.t, bs.prim)) {
                bs.t = t;
                bs.u = u;
                bs.v = v;
                bs.prim = i + l;
            }
        }
    }
    for (; i < n_tris; i++) {
        float t, u, v;
        if (brute_tri(&pr, vertices, indices + 3 * (size_t)i, r->tmin, bs.t, &t, &u, &v) &&
            mmd_isect_better(t, i, bs.t, bs.prim)) {
            bs.t = t;
            bs.u = u;
            bs.v = v;
            bs.prim = i;
        }
    }
    return to_hit(&bs);
}

int mmd_brute_any(const float *vertices, const uint32_t *indices, uint32_t n_tris, const mmd_ray *r)
{
    mmd_isect_ray pr;
    mmd_isect_ray_init(&pr, r->ox, r->oy, r->oz, r->dx, r->dy, r->dz);
    uint32_t i = 0;
    float t, u, v;
    for (; i + BRUTE_LANES <= n_tris; i += BRUTE_LANES) {
        unsigned m = brute_edges4(&pr, vertices, indices + 3 * (size_t)i);
        for (uint32_t l = 0; m; l++, m >>= 1)
            if ((m & 1u) &&
                brute_tri(&pr, vertices, indices + 3 * (size_t)(i + l), r->tmin, r->tmax, &t, &u, &v))
                return 1;
    }
    for (; i < n_tris; i++)
        if (brute_tri(&pr, vertices, indices + 3 * (size_t)i, r->tmin, r->tmax, &t, &u, &v)) return 1;
    return 0;
}
