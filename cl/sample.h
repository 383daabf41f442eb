/*
 * sample.h - deterministic sampling for the Monte Carlo estimators (SPEC 4): a
 * counter-based hash RNG keyed by (seed, pose, ray, dimension), the Fibonacci sphere and
 * a seeded random rotation. Results depend only on the seed and the indices, never on
 * scheduling, so a fixed seed gives bitwise identical results on the same device.
 */
#ifndef MMD_CL_SAMPLE_H
#define MMD_CL_SAMPLE_H

inline uint hash_u32(uint x)
{
    /* PCG output permutation on an LCG step (Jarzynski & Olano 2020, "pcg") */
    uint s = x * 747796405u + 2891336453u;
    uint w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

inline uint hash3(uint a, uint b, uint c) { return hash_u32(a ^ hash_u32(b ^ hash_u32(c))); }

/* uniform in [0, 1) with 24 random bits */
inline float rnd(uint seed, uint stream, uint index, uint dim)
{
    return (float)(hash3(seed, stream * 0x9E3779B9u + dim, index) >> 8) * (1.0f / 16777216.0f);
}

/* Point i of the N-point Fibonacci sphere (equal-area rings; golden-angle azimuths
 * computed in 32-bit fixed point so large i keeps full precision). */
inline float3 fibonacci_dir(uint i, uint n)
{
    float z = 1.0f - (2.0f * (float)i + 1.0f) / (float)n;
    float r = sqrt(fmax(0.0f, 1.0f - z * z));
    float phi = (float)(i * 2654435769u) * (2.0f * 3.14159265358979f / 4294967296.0f);
    float c, s = sincos(phi, &c);
    return (float3)(r * c, r * s, z);
}

/* Uniform random rotation (Shoemake's quaternion from 3 uniforms), row-major 3x3. */
inline void random_rotation(uint seed, uint stream, float m[9])
{
    float u1 = rnd(seed, stream, 0u, 101u), u2 = rnd(seed, stream, 0u, 102u), u3 = rnd(seed, stream, 0u, 103u);
    float a = sqrt(1.0f - u1), b = sqrt(u1);
    float s2, c2 = 0.0f, s3, c3 = 0.0f;
    s2 = sincos(2.0f * 3.14159265358979f * u2, &c2);
    s3 = sincos(2.0f * 3.14159265358979f * u3, &c3);
    float x = a * s2, y = a * c2, z = b * s3, w = b * c3;
    m[0] = 1 - 2 * (y * y + z * z); m[1] = 2 * (x * y - z * w);     m[2] = 2 * (x * z + y * w);
    m[3] = 2 * (x * y + z * w);     m[4] = 1 - 2 * (x * x + z * z); m[5] = 2 * (y * z - x * w);
    m[6] = 2 * (x * z - y * w);     m[7] = 2 * (y * z + x * w);     m[8] = 1 - 2 * (x * x + y * y);
}

inline float3 mat3_mul(const float m[9], float3 v)
{
    return (float3)(m[0] * v.x + m[1] * v.y + m[2] * v.z, m[3] * v.x + m[4] * v.y + m[5] * v.z,
                    m[6] * v.x + m[7] * v.y + m[8] * v.z);
}

inline float3 mat3_mul_t(const float m[9], float3 v)
{
    return (float3)(m[0] * v.x + m[3] * v.y + m[6] * v.z, m[1] * v.x + m[4] * v.y + m[7] * v.z,
                    m[2] * v.x + m[5] * v.y + m[8] * v.z);
}

#endif
