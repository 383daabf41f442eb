/*
 * fuzz_common.h - shared by the libFuzzer harnesses in test/fuzz (make fuzz).
 *
 * Most parsers take a path, not a buffer, and resolve the files a document names against
 * its own directory, so each harness writes the fuzz input into a private scratch
 * directory (one per process, removed at exit) and calls the public loader on it. Inputs
 * for formats that span several files (a Mitsuba XML and its PLY, a measurement manifest
 * with its CSV and NPY, a NeRF² directory) are one buffer cut at FUZZ_SEP lines; missing
 * parts get a small valid default, so the fuzzer spends its time inside the parsers.
 *
 * Every harness checks the one contract all loaders share: a failure returns a non-OK
 * status and leaves a non-empty message (naming the file); success leaves a usable
 * result. Crashes, leaks, undefined behaviour and allocations beyond -rss_limit_mb are
 * what libFuzzer + ASan + UBSan report on their own.
 */
#ifndef MMD_FUZZ_COMMON_H
#define MMD_FUZZ_COMMON_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mmd_core.h"

/* The line that separates the parts of a multi-file input. */
#define FUZZ_SEP "\n@@@@\n"
#define FUZZ_MAX_PARTS 8

static char fuzz_dir_path[256];

static inline void fuzz_rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char sub[1024];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        fuzz_rm_tree(sub);
    }
    closedir(d);
    rmdir(path);
}

static inline void fuzz_cleanup(void)
{
    if (fuzz_dir_path[0]) fuzz_rm_tree(fuzz_dir_path);
}

/* The scratch directory, created on first use. Abort on failure: a harness that cannot
 * write its input would report nothing but look healthy. */
static inline const char *fuzz_dir(void)
{
    if (!fuzz_dir_path[0]) {
        /* a RAM file system when there is one: every input is written as a file, and on
         * a disk-backed /tmp that costs milliseconds (50x fewer executions) */
        const char *tmp = getenv("MMD_FUZZ_TMP");
        if (!tmp || !tmp[0]) tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
        snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/mmd_fuzz_XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
        if (!mkdtemp(fuzz_dir_path)) {
            perror("mmd fuzz: mkdtemp");
            abort();
        }
        atexit(fuzz_cleanup);
        mmd_log_set_level(0);
    }
    return fuzz_dir_path;
}

/* Full path of `name` inside the scratch directory (static rotating buffers). */
static inline const char *fuzz_path(const char *name)
{
    static char buf[4][512];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", fuzz_dir(), name);
    return b;
}

/* Write `size` bytes to `name` in the scratch directory; returns its path. */
static inline const char *fuzz_write(const char *name, const void *data, size_t size)
{
    const char *path = fuzz_path(name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror("mmd fuzz: write");
        abort();
    }
    return path;
}

static inline void fuzz_mkdir(const char *name)
{
    if (mkdir(fuzz_path(name), 0700) != 0 && access(fuzz_path(name), F_OK) != 0) {
        perror("mmd fuzz: mkdir");
        abort();
    }
}

typedef struct fuzz_part {
    const uint8_t *p;
    size_t n;
} fuzz_part;

/* Cut data at FUZZ_SEP lines into at most max parts; returns the number found. */
static inline int fuzz_split(const uint8_t *data, size_t size, fuzz_part *parts, int max)
{
    const size_t sl = sizeof FUZZ_SEP - 1;
    int k = 0;
    size_t start = 0;
    while (k < max - 1) {
        const uint8_t *hit = NULL;
        for (size_t i = start; i + sl <= size; i++)
            if (data[i] == '\n' && !memcmp(data + i, FUZZ_SEP, sl)) {
                hit = data + i;
                break;
            }
        if (!hit) break;
        parts[k++] = (fuzz_part){data + start, (size_t)(hit - data) - start};
        start = (size_t)(hit - data) + sl;
    }
    parts[k++] = (fuzz_part){data + start, size - start};
    return k;
}

/* Write part i of parts (or `def`, a NUL-terminated default, when the input has fewer). */
static inline const char *fuzz_write_part(const char *name, const fuzz_part *parts, int n, int i, const char *def)
{
    if (i < n) return fuzz_write(name, parts[i].p, parts[i].n);
    return fuzz_write(name, def, strlen(def));
}

/* The shared contract of every loader: a failure comes with a message. */
static inline void fuzz_check_status(mmd_status st)
{
    static int verbose = -1; /* MMD_FUZZ_VERBOSE=1: print each input's outcome (replaying) */
    if (verbose < 0) verbose = getenv("MMD_FUZZ_VERBOSE") != NULL;
    if (verbose) fprintf(stderr, "mmd fuzz: %s: %s\n", mmd_status_name(st), st ? mmd_last_error() : "ok");
    if (st != MMD_OK) {
        const char *msg = mmd_last_error();
        if (!msg || !msg[0]) {
            fprintf(stderr, "mmd fuzz: status %s without an error message\n", mmd_status_name(st));
            abort();
        }
    }
    mmd_clear_error();
}

/* A small valid PLY (one triangle) for documents that name a mesh. */
static const char fuzz_default_ply[] =
    "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
    "element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n";

#endif
