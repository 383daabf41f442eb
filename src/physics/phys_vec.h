/* Small 3-vector helpers private to src/physics (static inline, double precision). */
#ifndef MMD_PHYS_VEC_H
#define MMD_PHYS_VEC_H

#include <math.h>

static inline double v3_dot(const double a[3], const double b[3])
{
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

static inline void v3_cross(const double a[3], const double b[3], double out[3])
{
    double x = a[1] * b[2] - a[2] * b[1];
    double y = a[2] * b[0] - a[0] * b[2];
    double z = a[0] * b[1] - a[1] * b[0];
    out[0] = x, out[1] = y, out[2] = z;
}

static inline double v3_norm(const double a[3]) { return sqrt(v3_dot(a, a)); }

/* Normalise in place; returns the old length (the vector is left alone when 0). */
static inline double v3_normalize(double a[3])
{
    double l = v3_norm(a);
    if (l > 0) a[0] /= l, a[1] /= l, a[2] /= l;
    return l;
}

static inline void v3_set(double out[3], double x, double y, double z)
{
    out[0] = x, out[1] = y, out[2] = z;
}

#endif
