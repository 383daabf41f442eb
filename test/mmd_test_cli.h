/*
 * mmd_test_cli.h - helpers for the tests that run the mmdiff binary (MMD_BIN) in a
 * scratch directory and look at what it printed and wrote.
 *
 *     const char *out;
 *     int rc = mmd_tc_run(dir, "build/mmdiff info bad.ply", &out);   // exit code, output
 *     CHECK(rc == 1 && strstr(out, "line 3"), "...");
 *     CHECK(mmd_tc_exists(dir, "run/result.json"), "...");
 */
#ifndef MMD_TEST_CLI_H
#define MMD_TEST_CLI_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "mmd_core.h"

/* Run `cmd` through the shell in `dir` (NULL: here) with stderr folded into stdout and
 * logging off unless MMDIFF_LOG says otherwise; *out is the output (a static buffer, the
 * first 64 KiB), the return value the exit code (128 + signal when killed). */
static inline int mmd_tc_run(const char *dir, const char *cmd, const char **out)
{
    static char buf[65536];
    char full[8192];
    if (dir)
        snprintf(full, sizeof full, "cd %s && MMDIFF_LOG=${MMDIFF_LOG:-0} %s 2>&1", dir, cmd);
    else
        snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    size_t n = p ? fread(buf, 1, sizeof buf - 1, p) : 0;
    buf[n] = 0;
    int status = p ? pclose(p) : -1;
    *out = buf;
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Write `text` to dir/name. */
static inline void mmd_tc_write(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* 1 when dir/rel exists and is not empty. */
static inline int mmd_tc_exists(const char *dir, const char *rel)
{
    char p[1024];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    return stat(p, &sb) == 0 && sb.st_size > 0;
}

/* The contents of dir/rel (malloc'ed, NUL-terminated), or NULL. */
static inline char *mmd_tc_slurp(const char *dir, const char *rel)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    char *d = NULL;
    if (mmd_read_file(p, &d, NULL) != MMD_OK) return NULL;
    return d;
}

#endif
