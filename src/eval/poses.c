/* Pose sets of the robustness protocol (SPEC 6, mmd_eval.h): RAND poses uniform in the
 * free space of the room and a TRAJ camera-like walk through it. Everything is checked
 * on the host against the same tree the device traverses: exact point-to-triangle
 * distances (a sphere query on the wide BVH) for the clearance and the reference ray
 * traversal for "inside" and for collision-free steps. */
#include "mmd_eval.h"
#include "mmd_physics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEG (M_PI / 180.0)
/* RNG streams: the two sets and the noise never share random numbers */
#define STREAM_RAND 0x52414e44u
#define STREAM_TRAJ 0x5452414au

/* ---------------------------------------------------------------------------------------
 * Geometry queries
 */

static double seg_dist2(const double p[3], const double a[3], const double b[3])
{
    double ab[3] = {b[0] - a[0], b[1] - a[1], b[2] - a[2]}, ap[3] = {p[0] - a[0], p[1] - a[1], p[2] - a[2]};
    double l2 = ab[0] * ab[0] + ab[1] * ab[1] + ab[2] * ab[2];
    double t = l2 > 0 ? (ap[0] * ab[0] + ap[1] * ab[1] + ap[2] * ab[2]) / l2 : 0;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double d[3] = {ap[0] - t * ab[0], ap[1] - t * ab[1], ap[2] - t * ab[2]};
    return d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
}

/* Squared distance from p to triangle abc (Ericson, Real-Time Collision Detection 5.1.5,
 * in double; a degenerate triangle is the union of its edges). */
static double tri_dist2(const double p[3], const double a[3], const double b[3], const double c[3])
{
    double ab[3], ac[3], ap[3], n[3];
    for (int k = 0; k < 3; k++) ab[k] = b[k] - a[k], ac[k] = c[k] - a[k], ap[k] = p[k] - a[k];
    n[0] = ab[1] * ac[2] - ab[2] * ac[1];
    n[1] = ab[2] * ac[0] - ab[0] * ac[2];
    n[2] = ab[0] * ac[1] - ab[1] * ac[0];
    double nn = n[0] * n[0] + n[1] * n[1] + n[2] * n[2];
    double l = ab[0] * ab[0] + ab[1] * ab[1] + ab[2] * ab[2] + ac[0] * ac[0] + ac[1] * ac[1] + ac[2] * ac[2];
    if (!(nn > 1e-24 * l * l)) {
        double d = seg_dist2(p, a, b), e = seg_dist2(p, b, c), f = seg_dist2(p, c, a);
        return d < e ? (d < f ? d : f) : (e < f ? e : f);
    }
    /* inside the prism over the triangle: the plane distance; else the nearest edge */
    int inside = 1;
    const double *v[3] = {a, b, c};
    for (int k = 0; k < 3 && inside; k++) {
        const double *s = v[k], *t = v[(k + 1) % 3];
        double e[3] = {t[0] - s[0], t[1] - s[1], t[2] - s[2]}, q[3] = {p[0] - s[0], p[1] - s[1], p[2] - s[2]};
        double cx = e[1] * q[2] - e[2] * q[1], cy = e[2] * q[0] - e[0] * q[2], cz = e[0] * q[1] - e[1] * q[0];
        if (cx * n[0] + cy * n[1] + cz * n[2] < 0) inside = 0;
    }
    if (inside) {
        double h = ap[0] * n[0] + ap[1] * n[1] + ap[2] * n[2];
        return h * h / nn;
    }
    double d = seg_dist2(p, a, b), e = seg_dist2(p, b, c), f = seg_dist2(p, c, a);
    return d < e ? (d < f ? d : f) : (e < f ? e : f);
}

static double box_dist2(const mmd_bvh8_node *nd, int j, const double p[3])
{
    double lo[3] = {nd->lo_x[j], nd->lo_y[j], nd->lo_z[j]}, hi[3] = {nd->hi_x[j], nd->hi_y[j], nd->hi_z[j]};
    double s = 0;
    for (int k = 0; k < 3; k++) {
        double d = p[k] < lo[k] ? lo[k] - p[k] : p[k] > hi[k] ? p[k] - hi[k] : 0;
        s += d * d;
    }
    return s;
}

static void leaf_dist(const mmd_bvh *b, int32_t child, const double p[3], double *best2)
{
    uint32_t c = ~(uint32_t)child, first = c >> MMD_LEAF_COUNT_BITS, count = (c & MMD_LEAF_COUNT_MASK) + 1;
    for (uint32_t t = first; t < first + count && t < b->n_tris; t++) {
        const mmd_tri *tr = &b->tris[t];
        double a[3] = {tr->v0[0], tr->v0[1], tr->v0[2]}, bb[3] = {tr->v1[0], tr->v1[1], tr->v1[2]},
               cc[3] = {tr->v2[0], tr->v2[1], tr->v2[2]};
        double d = tri_dist2(p, a, bb, cc);
        if (d < *best2) *best2 = d;
    }
}

double mmd_eval_surface_distance(const mmd_bvh *b, const double p[3], double radius)
{
    if (!b || b->n_nodes == 0 || !(radius > 0)) return radius > 0 ? radius : 0;
    double best2 = radius * radius;
    /* each popped node pushes at most 8 children: 8 per level of the bounded depth */
    uint32_t stack[8 * (MMD_BVH_MAX_DEPTH + 2)];
    int sp = 0;
    stack[sp++] = 0;
    while (sp > 0) {
        const mmd_bvh8_node *nd = &b->nodes[stack[--sp]];
        for (int j = 0; j < MMD_BVH_WIDTH; j++) {
            int32_t ch = nd->child[j];
            if (ch == 0 || !(box_dist2(nd, j, p) < best2)) continue;
            if (ch < 0) leaf_dist(b, ch, p, &best2);
            else if (sp < (int)(sizeof stack / sizeof *stack)) stack[sp++] = (uint32_t)ch;
        }
    }
    double d = sqrt(best2);
    return d < radius ? d : radius;
}

int mmd_eval_inside(const mmd_bvh *b, const double p[3], double reach)
{
    static const double dirs[14][3] = {{1, 0, 0},  {-1, 0, 0}, {0, 1, 0},   {0, -1, 0},  {0, 0, 1},
                                       {0, 0, -1}, {1, 1, 1},  {1, 1, -1},  {1, -1, 1},  {1, -1, -1},
                                       {-1, 1, 1}, {-1, 1, -1}, {-1, -1, 1}, {-1, -1, -1}};
    for (int k = 0; k < 14; k++) {
        double s = k < 6 ? 1.0 : 1.0 / sqrt(3.0);
        mmd_ray r = {(float)p[0], (float)p[1], (float)p[2], 0.0f,
                     (float)(s * dirs[k][0]), (float)(s * dirs[k][1]), (float)(s * dirs[k][2]), (float)reach};
        if (!mmd_bvh_any_ref(b, &r)) return 0;
    }
    return 1;
}

int mmd_eval_segment_free(const mmd_bvh *b, const double a[3], const double c[3], double clearance)
{
    double d[3] = {c[0] - a[0], c[1] - a[1], c[2] - a[2]};
    double len = sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
    if (len > 0) {
        mmd_ray r = {(float)a[0], (float)a[1], (float)a[2], 0.0f, (float)d[0], (float)d[1], (float)d[2], 1.0f};
        if (mmd_bvh_any_ref(b, &r)) return 0;
    }
    if (!(clearance > 0)) return 1;
    int ns = (int)ceil(len / (0.25 * clearance));
    if (ns < 1) ns = 1;
    for (int k = 0; k <= ns; k++) {
        double t = (double)k / ns, q[3] = {a[0] + t * d[0], a[1] + t * d[1], a[2] + t * d[2]};
        if (mmd_eval_surface_distance(b, q, clearance) < clearance) return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------------------------------
 * Sampling
 */

static double gauss(mmd_rng *r)
{
    double u = 1.0 - mmd_rng_uniform(r), v = mmd_rng_uniform(r);
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

typedef struct space {
    const mmd_bvh *b;
    double lo[3], hi[3]; /* sampling box: bbox shrunk by the clearance, z within height_m */
    double clearance, reach;
} space;

static mmd_status space_init(const mmd_scene *s, const mmd_bvh *b, const mmd_cfg_dataset *d, const char *set,
                             space *sp)
{
    memset(sp, 0, sizeof *sp);
    sp->b = b;
    sp->clearance = d->clearance_m;
    double diag = 0;
    for (int k = 0; k < 3; k++) {
        sp->lo[k] = s->bbox_min[k] + d->clearance_m;
        sp->hi[k] = s->bbox_max[k] - d->clearance_m;
        diag += (double)(s->bbox_max[k] - s->bbox_min[k]) * (s->bbox_max[k] - s->bbox_min[k]);
    }
    sp->reach = sqrt(diag) * 1.001 + 1e-3;
    if (!(d->traj_step_m > 0) || !(d->clearance_m >= 0) || !(d->height_m[0] <= d->height_m[1]))
        return mmd_error(MMD_ERR_INVALID, "dataset: traj_step_m %g, clearance_m %g, height_m [%g, %g]: expected a "
                         "step > 0, a clearance >= 0 and min <= max heights",
                         d->traj_step_m, d->clearance_m, d->height_m[0], d->height_m[1]);
    for (int k = 0; k < 2; k++)
        if (sp->lo[k] > sp->hi[k])
            return mmd_error(MMD_ERR_INVALID, "dataset.clearance_m: %g m leaves no room for %s poses: the scene is "
                             "only %g m wide along %c (%s)",
                             d->clearance_m, set, (double)(s->bbox_max[k] - s->bbox_min[k]), "xy"[k], s->path);
    double zlo = d->height_m[0] > sp->lo[2] ? d->height_m[0] : sp->lo[2];
    double zhi = d->height_m[1] < sp->hi[2] ? d->height_m[1] : sp->hi[2];
    if (zlo > zhi)
        return mmd_error(MMD_ERR_INVALID, "dataset.height_m: [%g, %g] m is outside the heights the room leaves "
                         "with clearance_m %g: [%g, %g] m (scene %s, z from %g to %g m)",
                         d->height_m[0], d->height_m[1], d->clearance_m, sp->lo[2], sp->hi[2], s->path,
                         (double)s->bbox_min[2], (double)s->bbox_max[2]);
    sp->lo[2] = zlo;
    sp->hi[2] = zhi;
    return MMD_OK;
}

static int point_ok(const space *sp, const double p[3])
{
    for (int k = 0; k < 3; k++)
        if (p[k] < sp->lo[k] || p[k] > sp->hi[k]) return 0;
    if (sp->clearance > 0 && mmd_eval_surface_distance(sp->b, p, sp->clearance) < sp->clearance) return 0;
    return mmd_eval_inside(sp->b, p, sp->reach);
}

/* A uniform point of the free space (rejection sampling); 0 after `tries` failures. */
static int sample_free(const space *sp, mmd_rng *r, long tries, double p[3], long *used)
{
    for (long t = 0; t < tries; t++) {
        for (int k = 0; k < 3; k++) p[k] = sp->lo[k] + (sp->hi[k] - sp->lo[k]) * mmd_rng_uniform(r);
        if (point_ok(sp, p)) {
            if (used) *used += t + 1;
            return 1;
        }
    }
    if (used) *used += tries;
    return 0;
}

static double clip(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

mmd_status mmd_poses_rand(const mmd_scene *s, const mmd_bvh *b, const mmd_cfg_dataset *d, mmd_cfg_pose **out,
                          size_t *n)
{
    *out = NULL;
    *n = 0;
    space sp;
    mmd_status st = space_init(s, b, d, "RAND", &sp);
    if (st != MMD_OK) return st;
    size_t want = d->rand_poses > 0 ? (size_t)d->rand_poses : 0;
    mmd_cfg_pose *p = mmd_calloc(want ? want : 1, sizeof *p, "RAND poses");
    if (!p) return MMD_ERR_NOMEM;
    mmd_rng r;
    mmd_rng_seed(&r, (uint64_t)d->seed, STREAM_RAND);
    /* a free space of 0.1% of the box still fills 500 poses well within this */
    long budget = 200000 + 2000 * (long)want, used = 0;
    for (size_t k = 0; k < want; k++) {
        if (!sample_free(&sp, &r, budget - used, p[k].position_m, &used)) {
            free(p);
            return mmd_error(MMD_ERR_INVALID, "dataset: found only %zu of %zu RAND poses in %ld tries: the space inside "
                             "%s that is at least clearance_m = %g m from every surface at height_m [%g, %g] is "
                             "too small (or the room is not closed)",
                             k, want, used, s->path, d->clearance_m, d->height_m[0], d->height_m[1]);
        }
        p[k].yaw_deg = -180.0 + 360.0 * mmd_rng_uniform(&r);
        p[k].pitch_deg = d->pitch_jitter_deg > 0 ? clip(d->pitch_jitter_deg * gauss(&r), -89, 89) : 0;
        p[k].roll_deg = 0;
    }
    *out = p;
    *n = want;
    return MMD_OK;
}

/* ---------------------------------------------------------------------------------------
 * TRAJ: a walker with a random, correlated turn rate that looks ahead and steers away
 * from surfaces, so that the path is smooth like a hand-held scan, and that never takes
 * a step which is not collision-free.
 */

#define TRAJ_CORR_M 1.0       /* correlation length of turn rate and climb [m] */
#define TRAJ_TURN_SIGMA 1.5   /* std of the turn rate [rad/m] */
#define TRAJ_CLIMB_SIGMA 0.15 /* std of the climb (dz per horizontal m) */
#define TRAJ_CLIMB_MAX 0.5
#define TRAJ_CLIMB_RATE 0.1   /* largest change of the climb per step when steering */
#define TRAJ_MIN_RADIUS 0.3   /* smallest turning radius when steering [m] */
#define TRAJ_PITCH_CORR_M 0.5 /* correlation length of the pitch jitter [m] */

typedef struct walker {
    const space *sp;
    double step, look;
} walker;

static void step_dir(double psi, double climb, double u[3])
{
    double h = 1.0 / sqrt(1.0 + climb * climb);
    u[0] = h * cos(psi);
    u[1] = h * sin(psi);
    u[2] = h * climb;
}

static int look_free(const walker *w, const double p[3], double psi, double climb)
{
    double u[3], q[3];
    step_dir(psi, climb, u);
    for (int k = 0; k < 3; k++) q[k] = p[k] + w->look * u[k];
    /* the lookahead may leave the height band (the climb turns back there), not the floor plan */
    for (int k = 0; k < 2; k++)
        if (q[k] < w->sp->lo[k] || q[k] > w->sp->hi[k]) return 0;
    return mmd_eval_segment_free(w->sp->b, p, q, w->sp->clearance);
}

static int step_ok(const walker *w, const double p[3], double psi, double climb, double q[3])
{
    double u[3];
    step_dir(psi, climb, u);
    for (int k = 0; k < 3; k++) q[k] = p[k] + w->step * u[k];
    return point_ok(w->sp, q) && mmd_eval_segment_free(w->sp->b, p, q, w->sp->clearance);
}

mmd_status mmd_poses_traj(const mmd_scene *s, const mmd_bvh *b, const mmd_cfg_dataset *d, mmd_cfg_pose **out,
                          size_t *n)
{
    *out = NULL;
    *n = 0;
    space sp;
    mmd_status st = space_init(s, b, d, "TRAJ", &sp);
    if (st != MMD_OK) return st;
    size_t want = d->traj_poses > 0 ? (size_t)d->traj_poses : 0;
    mmd_cfg_pose *p = mmd_calloc(want ? want : 1, sizeof *p, "TRAJ poses");
    if (!p) return MMD_ERR_NOMEM;
    if (want == 0) {
        *out = p;
        return MMD_OK;
    }
    mmd_rng r;
    mmd_rng_seed(&r, (uint64_t)d->seed, STREAM_TRAJ);
    walker w = {&sp, d->traj_step_m, 0};
    w.look = fmax(fmax(2.0 * d->clearance_m, 5.0 * d->traj_step_m), 0.3);
    double max_turn = fmin(d->traj_step_m / TRAJ_MIN_RADIUS, 30 * DEG);
    double a = exp(-d->traj_step_m / TRAJ_CORR_M), sa = sqrt(1 - a * a);
    double ap = exp(-d->traj_step_m / TRAJ_PITCH_CORR_M), sap = sqrt(1 - ap * ap);

    /* start: a free point and the first of 16 headings with a free lookahead */
    double pos[3], psi = 0;
    long used = 0;
    int found = 0;
    for (int attempt = 0; attempt < 200 && !found; attempt++) {
        if (!sample_free(&sp, &r, 200000, pos, &used)) break;
        double psi0 = 2 * M_PI * mmd_rng_uniform(&r);
        for (int k = 0; k < 16 && !found; k++) {
            double q[3];
            psi = psi0 + k * (M_PI / 8);
            found = look_free(&w, pos, psi, 0) && step_ok(&w, pos, psi, 0, q);
        }
    }
    if (!found) {
        free(p);
        return mmd_error(MMD_ERR_INVALID, "dataset: no start for the TRAJ walk in %s: no free point with %g m of free "
                         "space ahead at clearance_m = %g m within height_m [%g, %g]",
                         s->path, w.look, d->clearance_m, d->height_m[0], d->height_m[1]);
    }
    double omega = 0, climb = 0, pitch = d->pitch_jitter_deg * gauss(&r);
    long stuck = 0;
    memcpy(p[0].position_m, pos, sizeof pos);
    p[0].pitch_deg = clip(pitch, -89, 89);
    for (size_t k = 1; k < want; k++) {
        omega = a * omega + sa * TRAJ_TURN_SIGMA * gauss(&r);
        /* the climb drifts at random, pulled gently toward the middle of the height band (low
         * down, furniture makes pockets the walk would spend its time in) */
        double zmid = 0.5 * (sp.lo[2] + sp.hi[2]), half = fmax(0.5 * (sp.hi[2] - sp.lo[2]), 1e-3);
        climb = clip(a * climb + (1 - a) * 0.5 * (zmid - pos[2]) / half + sa * TRAJ_CLIMB_SIGMA * gauss(&r),
                     -TRAJ_CLIMB_MAX, TRAJ_CLIMB_MAX);
        double want_psi = psi + clip(omega * d->traj_step_m, -max_turn, max_turn);
        if (!look_free(&w, pos, want_psi, 0)) {
            /* steer toward the nearest free heading, turning the way we already turn first;
             * where no level heading is free, one that climbs toward the middle of the band */
            double sgn = omega >= 0 ? 1 : -1, up = pos[2] < zmid ? TRAJ_CLIMB_MAX : -TRAJ_CLIMB_MAX;
            int found_dir = 0;
            for (int m = 0; m <= 18 && !found_dir; m++)
                for (int c = 0; c < 4 && !found_dir; c++) {
                    if (m == 0 && (c & 1)) continue;
                    double cand = want_psi + (c & 1 ? -sgn : sgn) * m * 10 * DEG, slope = c < 2 ? 0 : up;
                    if (!look_free(&w, pos, cand, slope)) continue;
                    found_dir = 1;
                    want_psi = psi + clip(cand - psi, -max_turn, max_turn);
                    if (c >= 2) climb += clip(up - climb, -TRAJ_CLIMB_RATE, TRAJ_CLIMB_RATE);
                    omega = 0;
                }
        }
        double zn = pos[2] + d->traj_step_m * climb;
        if (zn < sp.lo[2] || zn > sp.hi[2]) climb = -climb;
        double q[3];
        int ok = step_ok(&w, pos, want_psi, climb, q);
        /* blocked right in front: the nearest heading (any turn) whose step is free */
        for (int m = 1; !ok && m <= 36; m++)
            for (int c = 0; c < 4 && !ok; c++) {
                double cand = want_psi + (c & 1 ? -1 : 1) * m * 5 * DEG;
                ok = step_ok(&w, pos, cand, c < 2 ? climb : 0, q);
                if (ok) want_psi = cand, climb = c < 2 ? climb : 0, omega = 0;
            }
        if (ok) stuck = 0;
        else {
            /* boxed in: retrace the last step (it was free, and so is its reverse) */
            if (k < 2 || ++stuck > 1000) {
                free(p);
                return mmd_error(MMD_ERR_INVALID, "dataset: the TRAJ walk got stuck after %zu poses in %s (free space "
                                 "at clearance_m = %g m too narrow for steps of traj_step_m = %g m)",
                                 k, s->path, d->clearance_m, d->traj_step_m);
            }
            memcpy(q, p[k - 2].position_m, sizeof q);
            want_psi = atan2(q[1] - pos[1], q[0] - pos[0]);
            climb = 0;
            omega = 0;
        }
        psi = want_psi;
        memcpy(pos, q, sizeof q);
        memcpy(p[k].position_m, pos, sizeof pos);
        pitch = ap * pitch + sap * d->pitch_jitter_deg * gauss(&r);
        p[k].pitch_deg = clip(pitch, -89, 89);
    }
    /* yaw: the heading of the step that leaves the pose (the camera looks where it goes) */
    for (size_t k = 0; k < want; k++) {
        size_t i = k + 1 < want ? k : (k ? k - 1 : 0), j = i + 1 < want ? i + 1 : i;
        double dx = p[j].position_m[0] - p[i].position_m[0], dy = p[j].position_m[1] - p[i].position_m[1];
        p[k].yaw_deg = (dx == 0 && dy == 0) ? psi / DEG : atan2(dy, dx) / DEG;
        p[k].roll_deg = 0;
    }
    *out = p;
    *n = want;
    return MMD_OK;
}
