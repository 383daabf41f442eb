/* Status, error, logging, allocation, file and hashing helpers (see mmd_core.h). */
#define _POSIX_C_SOURCE 200809L
#include "mmd_core.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

static _Thread_local char g_error[4096];
static int g_log_level = -1;

const char *mmd_status_name(mmd_status st)
{
    switch (st) {
    case MMD_OK: return "ok";
    case MMD_ERR_IO: return "io";
    case MMD_ERR_PARSE: return "parse";
    case MMD_ERR_INVALID: return "invalid";
    case MMD_ERR_NOMEM: return "nomem";
    case MMD_ERR_NODEVICE: return "nodevice";
    case MMD_ERR_CL: return "opencl";
    case MMD_ERR_BUILD: return "build";
    case MMD_ERR_INTERNAL: return "internal";
    }
    return "unknown";
}

mmd_status mmd_error(mmd_status st, const char *fmt, ...)
{
    /* format into a copy first: callers may wrap the previous message,
     * mmd_error(st, "%s: %s", where, mmd_last_error()) */
    char tmp[sizeof g_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    memcpy(g_error, tmp, sizeof g_error);
    mmd_debug("error set: %s", g_error);
    return st;
}

const char *mmd_last_error(void) { return g_error[0] ? g_error : "no error message"; }
void mmd_clear_error(void) { g_error[0] = 0; }

void mmd_log_set_level(int level) { g_log_level = level; }

int mmd_log_level(void)
{
    if (g_log_level < 0) {
        const char *e = getenv("MMDIFF_LOG");
        g_log_level = e ? atoi(e) : 1;
    }
    return g_log_level;
}

void mmd_log(int level, const char *fmt, ...)
{
    if (level > mmd_log_level()) return;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "[mmdiff] %s\n", buf);
}

static int mul_overflows(size_t a, size_t b, size_t *out)
{
    if (a && b > SIZE_MAX / a) return 1;
    *out = a * b;
    return 0;
}

void *mmd_malloc(size_t count, size_t size, const char *what)
{
    size_t n;
    if (mul_overflows(count, size, &n)) {
        mmd_error(MMD_ERR_NOMEM, "size overflow allocating %zu x %zu bytes for %s", count, size, what);
        return NULL;
    }
    void *p = malloc(n ? n : 1);
    if (!p) mmd_error(MMD_ERR_NOMEM, "out of memory allocating %zu bytes for %s", n, what);
    return p;
}

void *mmd_calloc(size_t count, size_t size, const char *what)
{
    size_t n;
    if (mul_overflows(count, size, &n)) {
        mmd_error(MMD_ERR_NOMEM, "size overflow allocating %zu x %zu bytes for %s", count, size, what);
        return NULL;
    }
    void *p = calloc(n ? count : 1, n ? size : 1);
    if (!p) mmd_error(MMD_ERR_NOMEM, "out of memory allocating %zu bytes for %s", n, what);
    return p;
}

void *mmd_realloc(void *p, size_t count, size_t size, const char *what)
{
    size_t n;
    if (mul_overflows(count, size, &n)) {
        mmd_error(MMD_ERR_NOMEM, "size overflow allocating %zu x %zu bytes for %s", count, size, what);
        return NULL;
    }
    void *q = realloc(p, n ? n : 1);
    if (!q) mmd_error(MMD_ERR_NOMEM, "out of memory allocating %zu bytes for %s", n, what);
    return q;
}

mmd_status mmd_read_file(const char *path, char **data, size_t *size)
{
    *data = NULL;
    if (size) *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return mmd_error(MMD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = mmd_malloc(cap, 1, path);
    if (!buf) { fclose(f); return MMD_ERR_NOMEM; }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = mmd_realloc(buf, cap, 2, path);
            if (!nb) { free(buf); fclose(f); return MMD_ERR_NOMEM; }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) { free(buf); return mmd_error(MMD_ERR_IO, "%s: read error", path); }
    buf[n] = 0;
    *data = buf;
    if (size) *size = n;
    return MMD_OK;
}

mmd_status mmd_write_file_atomic2(const char *path, const void *a, size_t na, const void *b, size_t nb)
{
    size_t len = strlen(path) + 32;
    char *tmp = mmd_malloc(len, 1, "temp path");
    if (!tmp) return MMD_ERR_NOMEM;
    snprintf(tmp, len, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        mmd_status st = mmd_error(MMD_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        free(tmp);
        return st;
    }
    int bad = 0, e = 0;
    if (na && fwrite(a, 1, na, f) != na) bad = 1, e = errno;
    if (!bad && nb && fwrite(b, 1, nb, f) != nb) bad = 1, e = errno;
    if (fflush(f) != 0 && !bad) bad = 1, e = errno;
    if (fclose(f) != 0 && !bad) bad = 1, e = errno;
    if (bad) {
        remove(tmp);
        free(tmp);
        return mmd_error(MMD_ERR_IO, "%s: write failed: %s", path, strerror(e ? e : EIO));
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        remove(tmp);
        free(tmp);
        return mmd_error(MMD_ERR_IO, "%s: cannot rename temp file into place: %s", path, strerror(e));
    }
    free(tmp);
    return MMD_OK;
}

mmd_status mmd_write_file_atomic(const char *path, const void *data, size_t size)
{
    return mmd_write_file_atomic2(path, data, size, NULL, 0);
}

char *mmd_path_join(const char *base, const char *rel, int base_is_file)
{
    if (!rel) return NULL;
    if (rel[0] == '/' || !base || !base[0]) return strdup(rel);
    size_t blen = strlen(base);
    if (base_is_file) {
        const char *slash = strrchr(base, '/');
        if (!slash) return strdup(rel);
        blen = (size_t)(slash - base);
    }
    size_t n = blen + 1 + strlen(rel) + 1;
    char *out = malloc(n);
    if (!out) return NULL;
    memcpy(out, base, blen);
    out[blen] = '/';
    strcpy(out + blen + 1, rel);
    return out;
}

double mmd_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int mmd_num_threads(void)
{
    const char *e = getenv("MMDIFF_THREADS");
    if (e && atoi(e) > 0) return atoi(e);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    if (n > 256) n = 256;
    return (int)n;
}

uint64_t mmd_hash64(const void *data, size_t size, uint64_t h)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < size; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

void mmd_rng_seed(mmd_rng *r, uint64_t seed, uint64_t stream)
{
    r->state = 0;
    r->inc = (stream << 1) | 1u;
    mmd_rng_u32(r);
    r->state += seed;
    mmd_rng_u32(r);
}

uint32_t mmd_rng_u32(mmd_rng *r)
{
    uint64_t old = r->state;
    r->state = old * 6364136223846793005ULL + r->inc;
    uint32_t xs = (uint32_t)(((old >> 18) ^ old) >> 27);
    uint32_t rot = (uint32_t)(old >> 59);
    return (xs >> rot) | (xs << ((32 - rot) & 31));
}

double mmd_rng_uniform(mmd_rng *r)
{
    uint64_t hi = mmd_rng_u32(r), lo = mmd_rng_u32(r);
    return (double)((hi << 21) ^ lo) * (1.0 / 9007199254740992.0);
}

mmd_status mmd_mkdirs(const char *path)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return mmd_error(MMD_ERR_IO, "%s: path too long", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return mmd_error(MMD_ERR_IO, "%s: cannot create directory %s: %s", path, tmp, strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return mmd_error(MMD_ERR_IO, "%s: cannot create directory: %s", path, strerror(errno));
    struct stat sb;
    if (stat(tmp, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return mmd_error(MMD_ERR_IO, "%s: exists and is not a directory", path);
    return MMD_OK;
}
