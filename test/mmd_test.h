/*
 * mmd_test.h - the tiny test harness every test/test_*.c uses.
 *
 *     #include "mmd_test.h"
 *     int main(void) {
 *         CHECK(1 + 1 == 2, "arithmetic: got %d", 1 + 1);
 *         CHECK_NEAR(x, 0.39301, 1e-4 * 0.39301, "|r_TE| at 0 deg");
 *         return TEST_DONE();
 *     }
 *
 * Each binary prints "NAME: N passed, N failed" as its last line; test/run_tests.sh sums
 * them. MMD_SHARED (default ../shared) locates the shared data.
 */
#ifndef MMD_TEST_H
#define MMD_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int mmd_t_pass, mmd_t_fail;

#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        if (cond) {                                                                   \
            mmd_t_pass++;                                                             \
        } else {                                                                      \
            mmd_t_fail++;                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                      \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
        }                                                                             \
    } while (0)

#define CHECK_NEAR(a, b, tol, ...)                                                    \
    do {                                                                              \
        double mmd_t_a = (double)(a), mmd_t_b = (double)(b), mmd_t_tol = (double)(tol); \
        if (fabs(mmd_t_a - mmd_t_b) <= mmd_t_tol) {                                   \
            mmd_t_pass++;                                                             \
        } else {                                                                      \
            mmd_t_fail++;                                                             \
            fprintf(stderr, "FAIL %s:%d: %.9g vs %.9g (tol %g): ", __FILE__, __LINE__, \
                    mmd_t_a, mmd_t_b, mmd_t_tol);                                     \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
        }                                                                             \
    } while (0)

static inline const char *mmd_test_shared(void)
{
    const char *s = getenv("MMD_SHARED");
    return s && s[0] ? s : "../shared";
}

/* Path under the shared folder, in a static rotating buffer. */
static inline const char *mmd_test_path(const char *rel)
{
    static char buf[8][1024];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, 1024, "%s/%s", mmd_test_shared(), rel);
    return b;
}

static inline int mmd_test_done(const char *file)
{
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    char name[256];
    snprintf(name, sizeof name, "%s", base);
    char *dot = strrchr(name, '.');
    if (dot) *dot = 0;
    fflush(stderr);
    printf("%s: %d passed, %d failed\n", name, mmd_t_pass, mmd_t_fail);
    return mmd_t_fail ? 1 : 0;
}
#define TEST_DONE() mmd_test_done(__FILE__)


/* Write n separate triangles (9 floats each) as a binary PLY at dir/name; 0 on failure. */
static inline int mmd_test_write_ply(const char *dir, const char *name, const float *tri, int n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fprintf(f, "ply\nformat binary_little_endian 1.0\nelement vertex %d\nproperty float x\nproperty float y\n"
               "property float z\nelement face %d\nproperty list uchar int vertex_indices\nend_header\n",
            3 * n, n);
    fwrite(tri, sizeof(float), (size_t)9 * n, f);
    for (int i = 0; i < n; i++) {
        unsigned char c = 3;
        int idx[3] = {3 * i, 3 * i + 1, 3 * i + 2};
        fwrite(&c, 1, 1, f);
        fwrite(idx, sizeof(int), 3, f);
    }
    return fclose(f) == 0;
}

#endif
