/* Status, error, logging, allocation, file and hashing helpers (see mmd_core.h). */
#define _POSIX_C_SOURCE 200809L
#include "mmd_core.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
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

static mmd_log_sink_fn g_log_sink;
static void *g_log_sink_user;

void mmd_log_set_sink(mmd_log_sink_fn sink, void *user, mmd_log_sink_fn *old_sink, void **old_user)
{
    if (old_sink) *old_sink = g_log_sink;
    if (old_user) *old_user = g_log_sink_user;
    g_log_sink = sink;
    g_log_sink_user = user;
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
    if (g_log_sink) g_log_sink(level, buf, g_log_sink_user);
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
    /* inputs are files: a device or FIFO named in a document (/dev/zero, ...) would be read
     * until memory runs out */
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return mmd_error(MMD_ERR_IO, "%s: not a regular file (expected a file to read)", path);
    }
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

/* Make a rename durable: fsync the directory that holds `path`. */
static void sync_dir_of(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return; /* best effort: the data itself is already synced */
    (void)fsync(fd);
    close(fd);
}

mmd_status mmd_write_file_atomic_ex(const char *path, const void *a, size_t na, const void *b, size_t nb,
                                    unsigned flags)
{
    size_t len = strlen(path) + 32;
    char *tmp = mmd_malloc(len, 1, "temp path");
    if (!tmp) return MMD_ERR_NOMEM;
    snprintf(tmp, len, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = NULL;
    if (mmd_fault("write_open", path)) errno = EROFS;
    else f = fopen(tmp, "wb");
    if (!f) {
        mmd_status st = mmd_error(MMD_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        free(tmp);
        return st;
    }
    int bad = 0, e = 0;
    int full = mmd_fault("write", path), die = mmd_fault("write_kill", path);
    if (full || die) {
        /* injected: half of the content reaches the temp file, then the disk is full (or the
         * process dies), as a real failure would leave it */
        size_t half = (na + nb) / 2, ha = half < na ? half : na, hb = half - ha;
        if (ha) (void)fwrite(a, 1, ha, f);
        if (hb) (void)fwrite(b, 1, hb, f);
        fflush(f);
        if (die) raise(SIGKILL);
        bad = 1, e = ENOSPC;
    }
    if (!bad && na && fwrite(a, 1, na, f) != na) bad = 1, e = errno;
    if (!bad && nb && fwrite(b, 1, nb, f) != nb) bad = 1, e = errno;
    if (fflush(f) != 0 && !bad) bad = 1, e = errno;
    if (!bad && (flags & MMD_WRITE_SYNC) && fsync(fileno(f)) != 0) bad = 1, e = errno;
    if (fclose(f) != 0 && !bad) bad = 1, e = errno;
    if (bad) {
        remove(tmp);
        free(tmp);
        return mmd_error(MMD_ERR_IO, "%s: write failed: %s (nothing was written; an existing file is unchanged)",
                         path, strerror(e ? e : EIO));
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        remove(tmp);
        free(tmp);
        return mmd_error(MMD_ERR_IO, "%s: cannot rename temp file into place: %s", path, strerror(e));
    }
    free(tmp);
    if (flags & MMD_WRITE_SYNC) sync_dir_of(path);
    return MMD_OK;
}

mmd_status mmd_write_file_atomic2(const char *path, const void *a, size_t na, const void *b, size_t nb)
{
    return mmd_write_file_atomic_ex(path, a, na, b, nb, 0);
}

mmd_status mmd_write_file_atomic(const char *path, const void *data, size_t size)
{
    return mmd_write_file_atomic_ex(path, data, size, NULL, 0, 0);
}

/* ---- fault injection (mmd_core.h) ------------------------------------------------ */

typedef struct fault_item {
    char site[24];
    char match[232];
    unsigned long nth;   /* 0 = every time */
    atomic_ulong count;  /* matching calls so far */
} fault_item;

#define MAX_FAULTS 16
static fault_item g_faults[MAX_FAULTS];
static int g_n_faults;
static atomic_int g_fault_state; /* 0 not parsed yet, 1 off, 2 on */
static pthread_once_t g_fault_once = PTHREAD_ONCE_INIT;

static void fault_parse(void)
{
    static const char *const known[] = {"cl_alloc", "cl_run", "cl_build", "write", "write_open", "write_kill",
                                        "sigint", "sigterm", "sigkill"};
    const char *env = getenv("MMDIFF_FAULT");
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", env ? env : "");
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok && g_n_faults < MAX_FAULTS; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        if (!*tok) continue;
        fault_item *it = &g_faults[g_n_faults];
        char *colon = strchr(tok, ':');
        if (colon) {
            *colon = 0;
            snprintf(it->match, sizeof it->match, "%s", colon + 1);
        }
        char *at = strchr(tok, '@');
        if (at) {
            *at = 0;
            it->nth = strtoul(at + 1, NULL, 10);
        }
        snprintf(it->site, sizeof it->site, "%s", tok);
        int ok = 0;
        for (size_t k = 0; k < sizeof known / sizeof *known; k++) ok |= !strcmp(known[k], it->site);
        if (!ok) {
            mmd_warn("MMDIFF_FAULT: unknown site '%s' ignored (known: cl_alloc, cl_run, cl_build, write, "
                     "write_open, write_kill, sigint, sigterm, sigkill)", it->site);
            continue;
        }
        atomic_init(&it->count, 0);
        g_n_faults++;
    }
    if (g_n_faults) mmd_warn("fault injection active: MMDIFF_FAULT=%s", env);
    atomic_store(&g_fault_state, g_n_faults ? 2 : 1);
}

int mmd_fault(const char *site, const char *subject)
{
    int state = atomic_load_explicit(&g_fault_state, memory_order_acquire);
    if (state == 1) return 0;
    if (state == 0) {
        pthread_once(&g_fault_once, fault_parse);
        if (atomic_load(&g_fault_state) == 1) return 0;
    }
    int fire = 0;
    for (int i = 0; i < g_n_faults; i++) {
        fault_item *it = &g_faults[i];
        if (strcmp(it->site, site) != 0) continue;
        if (it->match[0] && !(subject && strstr(subject, it->match))) continue;
        unsigned long n = atomic_fetch_add(&it->count, 1) + 1;
        if (!it->nth || n == it->nth) fire = 1;
    }
    return fire;
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

int mmd_utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int n;
    unsigned cp;
    if (c >= 0xc2 && c <= 0xdf) { n = 2; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { n = 3; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 4; cp = c & 0x07; }
    else return 0;
    for (int k = 1; k < n; k++) {
        if ((s[k] & 0xc0) != 0x80) return 0; /* also stops at the NUL terminator */
        cp = cp << 6 | (s[k] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

int mmd_utf8_valid(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int n = mmd_utf8_len(p);
        if (!n) return 0;
        p += n;
    }
    return 1;
}
