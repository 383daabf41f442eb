/*
 * mmd_core.h - status codes, error reporting, logging and small utilities shared by
 * every stage of mmdiff.
 *
 * Library code never calls exit(): every fallible call returns an mmd_status and, on
 * failure, leaves one human-readable message (naming the file, line/field and what was
 * expected) in a thread-local buffer that the CLI prints once.
 *
 *     mmd_status st = mmd_scene_load("room.ply", &scene);
 *     if (st != MMD_OK) { fprintf(stderr, "mmdiff: %s\n", mmd_last_error()); return 1; }
 *
 * Long pipelines use sticky codes: `if (st == MMD_OK) st = next_step(...);`.
 */
#ifndef MMD_CORE_H
#define MMD_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mmd_status {
    MMD_OK = 0,
    MMD_ERR_IO,        /* file missing, unreadable, unwritable */
    MMD_ERR_PARSE,     /* malformed input file (PLY/XML/YAML/NPY/CSV) */
    MMD_ERR_INVALID,   /* well-formed input with an invalid value (range, NaN, unknown name) */
    MMD_ERR_NOMEM,     /* host allocation failed or a size limit was exceeded */
    MMD_ERR_NODEVICE,  /* no OpenCL platform/device, or none matches the selection */
    MMD_ERR_CL,        /* OpenCL runtime error (allocation, enqueue, ...) */
    MMD_ERR_BUILD,     /* OpenCL program build failure */
    MMD_ERR_INTERNAL   /* should not happen; a bug */
} mmd_status;

/* Short name of a status ("io", "parse", ...). */
const char *mmd_status_name(mmd_status st);

/* Record an error message (printf-style) for this thread and return `st`. A later call
 * overwrites the earlier message, so only the innermost (most specific) call should set
 * it; callers that merely propagate keep it with `return st;`. */
mmd_status mmd_error(mmd_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
const char *mmd_last_error(void);
void mmd_clear_error(void);

/* Logging to stderr. Level: 0 quiet, 1 info (default), 2 debug. MMDIFF_LOG overrides. */
void mmd_log_set_level(int level);
int mmd_log_level(void);
void mmd_log(int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* A copy of every printed log line (without the "[mmdiff] " prefix and newline) also goes
 * to `sink` when one is set (the run directory's log.txt, src/cli/run.c); NULL removes it.
 * The previous sink is returned through old_sink/old_user (may be NULL) so callers can
 * chain and restore. Not thread-safe: set it from the main thread. */
typedef void (*mmd_log_sink_fn)(int level, const char *line, void *user);
void mmd_log_set_sink(mmd_log_sink_fn sink, void *user, mmd_log_sink_fn *old_sink, void **old_user);
#define mmd_info(...) mmd_log(1, __VA_ARGS__)
#define mmd_debug(...) mmd_log(2, __VA_ARGS__)
/* Shown at every level, even quiet: something the user asked for did not happen. */
#define mmd_warn(fmt, ...) mmd_log(0, "warning: " fmt, __VA_ARGS__)

/* Allocation that reports MMD_ERR_NOMEM with what was being allocated. Returns NULL on
 * failure (message set). Sizes are checked for overflow. */
void *mmd_malloc(size_t count, size_t size, const char *what);
void *mmd_calloc(size_t count, size_t size, const char *what);
void *mmd_realloc(void *p, size_t count, size_t size, const char *what);

/* Read a whole file into a NUL-terminated buffer. */
mmd_status mmd_read_file(const char *path, char **data, size_t *size);

/* Write a file atomically: write to "<path>.tmp.<pid>" then rename over `path`, so a
 * reader never sees a half-written result (a failed write removes the temp file and
 * leaves an existing `path` untouched; a process killed mid-write leaves at most a stray
 * temp file). */
mmd_status mmd_write_file_atomic(const char *path, const void *data, size_t size);
/* The same for a file made of two parts (a header and a large array, say), streamed
 * without concatenating them in memory. */
mmd_status mmd_write_file_atomic2(const char *path, const void *a, size_t na, const void *b, size_t nb);
/* mmd_write_file_atomic2 with flags: MMD_WRITE_SYNC also fsyncs the file before the rename
 * and the directory after it, so the new content survives a power cut, not only a killed
 * process (used for checkpoints; too slow to do for every PNG). */
#define MMD_WRITE_SYNC 1u
mmd_status mmd_write_file_atomic_ex(const char *path, const void *a, size_t na, const void *b, size_t nb,
                                    unsigned flags);

/* Fault injection, for the reliability tests (test/test_faults.c, docs/RELIABILITY.md).
 * MMDIFF_FAULT is a comma-separated list of SITE[@N][:MATCH]:
 *   SITE   cl_alloc    a device buffer allocation fails (CL_MEM_OBJECT_ALLOCATION_FAILURE)
 *          cl_run      an OpenCL call that succeeded is reported as CL_OUT_OF_RESOURCES
 *                      (a device failure mid-run; MATCH against e.g. "launch mmd_aoa_trace")
 *          cl_build    a kernel program build fails (MATCH against the file, "aoa.cl")
 *          write       an atomic file write fails half way with ENOSPC (disk full)
 *          write_open  an atomic file write cannot create its temp file: EROFS (read-only)
 *          write_kill  the process kills itself (SIGKILL) half way through writing a file
 *          sigint, sigterm, sigkill
 *                      raised after a training step (calibration), as if sent by a user
 *   @N     fire only the N-th time the site is reached (1-based); without it, every time
 *   MATCH  count and fire only where the subject (buffer name, kernel file, output path,
 *          OpenCL call) contains MATCH
 * e.g. MMDIFF_FAULT=write:result.json  or  MMDIFF_FAULT=sigkill@7,cl_build:coverage.cl
 * mmd_fault() says whether the fault fires at this call. Unset (the normal case) it costs
 * one load and a branch, so the hooks stay in every build. A warning names the active
 * faults once per process. */
int mmd_fault(const char *site, const char *subject);

/* Create a directory and its parents (like mkdir -p); an existing one is fine. */
mmd_status mmd_mkdirs(const char *path);

/* Join a directory (or the directory part of a file path when `base_is_file`) and a
 * relative path; absolute `rel` is returned as is. Returns a malloc'ed string. */
char *mmd_path_join(const char *base, const char *rel, int base_is_file);

/* Monotonic wall clock in seconds. */
double mmd_now(void);

/* Length of the valid UTF-8 sequence at s (1..4), or 0 where it is invalid (overlong
 * forms, surrogates, code points above U+10FFFF, a sequence cut by the terminator). */
int mmd_utf8_len(const unsigned char *s);
/* 1 when the whole string is valid UTF-8. */
int mmd_utf8_valid(const char *s);

/* Number of hardware threads to use for host-side parallel work (MMDIFF_THREADS
 * overrides; at least 1). */
int mmd_num_threads(void);

/* 64-bit FNV-1a hash, chainable via `seed` (use MMD_FNV_SEED for the first call). */
#define MMD_FNV_SEED 0xcbf29ce484222325ULL
uint64_t mmd_hash64(const void *data, size_t size, uint64_t seed);

/* Small deterministic RNG (PCG32) for host-side sampling and tests. */
typedef struct mmd_rng { uint64_t state, inc; } mmd_rng;
void mmd_rng_seed(mmd_rng *r, uint64_t seed, uint64_t stream);
uint32_t mmd_rng_u32(mmd_rng *r);
double mmd_rng_uniform(mmd_rng *r); /* [0,1) */

#ifdef __cplusplus
}
#endif
#endif
