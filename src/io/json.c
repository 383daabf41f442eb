/* Streaming JSON writer (see mmd_io.h). */
#include "mmd_io.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int mmd_fmt_double(char *buf, double v)
{
    if (isnan(v)) return snprintf(buf, 32, "nan");
    if (isinf(v)) return snprintf(buf, 32, v > 0 ? "inf" : "-inf");
    /* Fewest digits that survive a round trip: 0.1 stays "0.1", not 0.10000000000000001. */
    for (int prec = 15; prec < 17; prec++) {
        int n = snprintf(buf, 32, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return n;
    }
    return snprintf(buf, 32, "%.17g", v);
}

int mmd_fmt_float(char *buf, float v)
{
    if (isnan(v)) return snprintf(buf, 32, "nan");
    if (isinf(v)) return snprintf(buf, 32, v > 0 ? "inf" : "-inf");
    for (int prec = 6; prec < 9; prec++) {
        int n = snprintf(buf, 32, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) return n;
    }
    return snprintf(buf, 32, "%.9g", (double)v);
}

void mmd_json_init(mmd_json *j)
{
    memset(j, 0, sizeof *j);
}

void mmd_json_free(mmd_json *j)
{
    free(j->buf);
    memset(j, 0, sizeof *j);
}

static void fail(mmd_json *j, mmd_status st, const char *fmt, ...)
{
    if (j->st) return;
    j->st = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->err, sizeof j->err, fmt, ap);
    va_end(ap);
}

static void put(mmd_json *j, const char *s, size_t n)
{
    if (j->st) return;
    if (j->len + n + 1 > j->cap) {
        size_t cap = j->cap ? j->cap : 1024;
        while (cap < j->len + n + 1) {
            if (cap > SIZE_MAX / 2) {
                fail(j, MMD_ERR_NOMEM, "JSON document too large");
                return;
            }
            cap *= 2;
        }
        char *nb = realloc(j->buf, cap);
        if (!nb) {
            fail(j, MMD_ERR_NOMEM, "out of memory growing a JSON document to %zu bytes", cap);
            return;
        }
        j->buf = nb;
        j->cap = cap;
    }
    memcpy(j->buf + j->len, s, n);
    j->len += n;
    j->buf[j->len] = 0;
}

static void puts_(mmd_json *j, const char *s) { put(j, s, strlen(s)); }

static void newline_indent(mmd_json *j, int depth)
{
    static const char spaces[] = "                                ";
    put(j, "\n", 1);
    size_t n = 2 * (size_t)depth;
    while (n > 0 && !j->st) {
        size_t k = n < sizeof spaces - 1 ? n : sizeof spaces - 1;
        put(j, spaces, k);
        n -= k;
    }
}

static int inline_here(const mmd_json *j) { return j->depth > 0 && j->inl[j->depth - 1]; }

/* Separator and indentation before any value (or key) at the current level. */
static int before_value(mmd_json *j, int is_key)
{
    if (j->st) return 0;
    if (j->done) {
        fail(j, MMD_ERR_INTERNAL, "JSON misuse: a second top-level value");
        return 0;
    }
    if (j->depth == 0) return 1;
    int d = j->depth - 1;
    if (j->kind[d] == 'o') {
        if (is_key && j->have_key) {
            fail(j, MMD_ERR_INTERNAL, "JSON misuse: two keys in a row");
            return 0;
        }
        if (!is_key && !j->have_key) {
            fail(j, MMD_ERR_INTERNAL, "JSON misuse: a value in an object without a key");
            return 0;
        }
        if (!is_key) { /* value right after its key */
            j->have_key = false;
            return 1;
        }
    } else if (is_key) {
        fail(j, MMD_ERR_INTERNAL, "JSON misuse: a key inside an array");
        return 0;
    }
    if (j->count[d]) put(j, ",", 1);
    if (inline_here(j)) {
        if (j->count[d]) put(j, " ", 1);
    } else {
        newline_indent(j, j->depth);
    }
    j->count[d] = 1;
    return 1;
}

static void after_value(mmd_json *j)
{
    if (j->depth == 0 && !j->st) j->done = true;
}

static void begin(mmd_json *j, char kind, int inl)
{
    if (!before_value(j, 0)) return;
    if (j->depth >= MMD_JSON_MAX_DEPTH) {
        fail(j, MMD_ERR_INTERNAL, "JSON misuse: nesting deeper than %d", MMD_JSON_MAX_DEPTH);
        return;
    }
    put(j, kind == 'o' ? "{" : "[", 1);
    j->kind[j->depth] = (unsigned char)kind;
    j->count[j->depth] = 0;
    j->inl[j->depth] = (unsigned char)(inl || inline_here(j));
    j->depth++;
}

static void end(mmd_json *j, char kind)
{
    if (j->st) return;
    if (j->depth == 0 || j->kind[j->depth - 1] != kind) {
        fail(j, MMD_ERR_INTERNAL, "JSON misuse: '%c' does not close an open %s",
             kind == 'o' ? '}' : ']', kind == 'o' ? "object" : "array");
        return;
    }
    if (kind == 'o' && j->have_key) {
        fail(j, MMD_ERR_INTERNAL, "JSON misuse: object closed after a key without a value");
        return;
    }
    j->depth--;
    if (j->count[j->depth] && !j->inl[j->depth]) newline_indent(j, j->depth);
    put(j, kind == 'o' ? "}" : "]", 1);
    after_value(j);
}

void mmd_json_begin_object(mmd_json *j) { begin(j, 'o', 0); }
void mmd_json_end_object(mmd_json *j) { end(j, 'o'); }
void mmd_json_begin_array(mmd_json *j) { begin(j, 'a', 0); }
void mmd_json_begin_array_inline(mmd_json *j) { begin(j, 'a', 1); }
void mmd_json_end_array(mmd_json *j) { end(j, 'a'); }

static void put_string(mmd_json *j, const char *s)
{
    put(j, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    while (*p && !j->st) {
        const unsigned char *run = p;
        /* copy plain runs in one go */
        while (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') p++;
        if (p > run) put(j, (const char *)run, (size_t)(p - run));
        if (!*p) break;
        char esc[8];
        switch (*p) {
        case '"': puts_(j, "\\\""); p++; continue;
        case '\\': puts_(j, "\\\\"); p++; continue;
        case '\b': puts_(j, "\\b"); p++; continue;
        case '\f': puts_(j, "\\f"); p++; continue;
        case '\n': puts_(j, "\\n"); p++; continue;
        case '\r': puts_(j, "\\r"); p++; continue;
        case '\t': puts_(j, "\\t"); p++; continue;
        default: break;
        }
        if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            puts_(j, esc);
            p++;
            continue;
        }
        int n = mmd_utf8_len(p);
        if (n) {
            put(j, (const char *)p, (size_t)n);
            p += n;
        } else {
            puts_(j, "\\ufffd"); /* keep the document valid UTF-8 */
            p++;
        }
    }
    put(j, "\"", 1);
}

void mmd_json_key(mmd_json *j, const char *key)
{
    if (!key) {
        fail(j, MMD_ERR_INTERNAL, "JSON misuse: NULL key");
        return;
    }
    if (j->depth == 0 || j->kind[j->depth - 1] != 'o') {
        fail(j, MMD_ERR_INTERNAL, "JSON misuse: key \"%.40s\" outside an object", key);
        return;
    }
    if (!before_value(j, 1)) return;
    put_string(j, key);
    put(j, ": ", 2);
    j->have_key = true;
}

void mmd_json_string(mmd_json *j, const char *s)
{
    if (!before_value(j, 0)) return;
    if (s) put_string(j, s);
    else puts_(j, "null");
    after_value(j);
}

static void put_raw_value(mmd_json *j, const char *text)
{
    if (!before_value(j, 0)) return;
    puts_(j, text);
    after_value(j);
}

void mmd_json_float(mmd_json *j, float v)
{
    char b[32];
    if (!isfinite(v)) strcpy(b, "null");
    else mmd_fmt_float(b, v);
    put_raw_value(j, b);
}

void mmd_json_double(mmd_json *j, double v)
{
    char b[32];
    if (!isfinite(v)) strcpy(b, "null");
    else mmd_fmt_double(b, v);
    put_raw_value(j, b);
}

void mmd_json_int(mmd_json *j, long long v)
{
    char b[32];
    snprintf(b, sizeof b, "%lld", v);
    put_raw_value(j, b);
}

void mmd_json_bool(mmd_json *j, bool v) { put_raw_value(j, v ? "true" : "false"); }
void mmd_json_null(mmd_json *j) { put_raw_value(j, "null"); }

void mmd_json_kv_string(mmd_json *j, const char *key, const char *s)
{
    mmd_json_key(j, key);
    mmd_json_string(j, s);
}
void mmd_json_kv_float(mmd_json *j, const char *key, float v)
{
    mmd_json_key(j, key);
    mmd_json_float(j, v);
}
void mmd_json_kv_double(mmd_json *j, const char *key, double v)
{
    mmd_json_key(j, key);
    mmd_json_double(j, v);
}
void mmd_json_kv_int(mmd_json *j, const char *key, long long v)
{
    mmd_json_key(j, key);
    mmd_json_int(j, v);
}
void mmd_json_kv_bool(mmd_json *j, const char *key, bool v)
{
    mmd_json_key(j, key);
    mmd_json_bool(j, v);
}
void mmd_json_kv_doubles(mmd_json *j, const char *key, const double *v, size_t n)
{
    mmd_json_key(j, key);
    mmd_json_begin_array_inline(j);
    for (size_t i = 0; i < n; i++) mmd_json_double(j, v[i]);
    mmd_json_end_array(j);
}

mmd_status mmd_json_status(const mmd_json *j)
{
    if (j->st) return mmd_error(j->st, "%s", j->err);
    return MMD_OK;
}

const char *mmd_json_text(const mmd_json *j) { return j->buf ? j->buf : ""; }

mmd_status mmd_json_save(const mmd_json *j, const char *path)
{
    if (j->st) return mmd_error(j->st, "%s: not written: %s", path, j->err);
    if (!j->done)
        return mmd_error(MMD_ERR_INTERNAL, "%s: not written: JSON document is incomplete (%d open "
                         "level%s)", path, j->depth, j->depth == 1 ? "" : "s");
    /* Text files end with a newline; add it to a copy since the builder is const here. */
    char *tmp = mmd_malloc(j->len + 1, 1, "JSON output");
    if (!tmp) return MMD_ERR_NOMEM;
    memcpy(tmp, j->buf, j->len);
    tmp[j->len] = '\n';
    mmd_status st = mmd_write_file_atomic(path, tmp, j->len + 1);
    free(tmp);
    return st;
}
