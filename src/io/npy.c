/* NPY reader and writer (see mmd_io.h; format in docs/outputs.md). */
#define _POSIX_C_SOURCE 200809L
#include "mmd_io.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char npy_magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

/* Headers longer than this are not produced by numpy for any sane shape; refusing them
 * keeps a corrupt length field from allocating gigabytes. */
#define NPY_MAX_HEADER (1u << 20)

static int host_is_little(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

size_t mmd_dtype_size(mmd_dtype dt)
{
    switch (dt) {
    case MMD_DT_F32: return 4;
    case MMD_DT_F64: return 8;
    case MMD_DT_I32: return 4;
    case MMD_DT_U8: return 1;
    }
    return 0;
}

static const char *dtype_descr(mmd_dtype dt)
{
    switch (dt) {
    case MMD_DT_F32: return "<f4";
    case MMD_DT_F64: return "<f8";
    case MMD_DT_I32: return "<i4";
    case MMD_DT_U8: return "|u1";
    }
    return NULL;
}

static void swap_bytes(unsigned char *p, size_t count, size_t esize)
{
    for (size_t i = 0; i < count; i++, p += esize)
        for (size_t a = 0, b = esize - 1; a < b; a++, b--) {
            unsigned char t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

/* ---------------------------------------------------------------------------------------
 * Writing
 */

mmd_status mmd_npy_write(const char *path, mmd_dtype dtype, const size_t *shape, int ndim,
                         const void *data)
{
    const char *descr = dtype_descr(dtype);
    if (!descr) return mmd_error(MMD_ERR_INVALID, "%s: unknown dtype %d", path, (int)dtype);
    if (ndim < 0 || ndim > MMD_NPY_MAX_DIMS)
        return mmd_error(MMD_ERR_INVALID, "%s: rank %d outside 0..%d", path, ndim,
                         MMD_NPY_MAX_DIMS);
    size_t esize = mmd_dtype_size(dtype), count = 1;
    for (int k = 0; k < ndim; k++) {
        if (shape[k] && count > SIZE_MAX / esize / shape[k])
            return mmd_error(MMD_ERR_INVALID, "%s: shape too large", path);
        count *= shape[k];
    }
    if (count && !data) return mmd_error(MMD_ERR_INVALID, "%s: no data to write", path);

    /* Header: magic, version 1.0, uint16 length, dict padded with spaces and ended by
     * '\n' so the data starts on a 64-byte boundary (what numpy >= 1.14 writes: lets
     * readers memory-map the data aligned). */
    char dict[64 + 24 * MMD_NPY_MAX_DIMS];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                     descr);
    for (int k = 0; k < ndim; k++)
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%zu%s", shape[k],
                      ndim == 1 ? "," : (k + 1 < ndim ? ", " : ""));
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    size_t hlen = 10 + (size_t)n + 1; /* preamble + dict + '\n' */
    size_t total = (hlen + 63) / 64 * 64;
    unsigned char hdr[sizeof dict + 128];
    memcpy(hdr, npy_magic, 6);
    hdr[6] = 1;
    hdr[7] = 0;
    size_t dlen = total - 10;
    hdr[8] = (unsigned char)(dlen & 0xff);
    hdr[9] = (unsigned char)(dlen >> 8);
    memcpy(hdr + 10, dict, (size_t)n);
    memset(hdr + 10 + n, ' ', total - 10 - (size_t)n - 1);
    hdr[total - 1] = '\n';

    size_t nbytes = count * esize;
    if (esize == 1 || host_is_little()) return mmd_write_file_atomic2(path, hdr, total, data, nbytes);
    /* Big-endian host: the file is always little-endian ('<'), so swap a copy. */
    unsigned char *tmp = mmd_malloc(nbytes, 1, "NPY byte-swap buffer");
    if (!tmp) return MMD_ERR_NOMEM;
    memcpy(tmp, data, nbytes);
    swap_bytes(tmp, count, esize);
    mmd_status st = mmd_write_file_atomic2(path, hdr, total, tmp, nbytes);
    free(tmp);
    return st;
}

/* ---------------------------------------------------------------------------------------
 * Reading: a strict parser for the Python-literal header dict
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (91, 181), }
 */

typedef struct hdr_parser {
    const char *p, *end;
    const char *path;
} hdr_parser;

static void skip_ws(hdr_parser *h)
{
    while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r'))
        h->p++;
}

static mmd_status hdr_fail(hdr_parser *h, const char *expected)
{
    char near[24];
    size_t left = (size_t)(h->end - h->p), k = 0;
    for (size_t i = 0; i < left && k + 1 < sizeof near && i < 16; i++) {
        unsigned char c = (unsigned char)h->p[i];
        near[k++] = (c >= 32 && c < 127) ? (char)c : '?';
    }
    near[k] = 0;
    return mmd_error(MMD_ERR_PARSE, "%s: malformed NPY header: expected %s at \"%s\"%s",
                     h->path, expected, near, left ? "" : " (end of header)");
}

/* A quoted Python string without escapes (numpy never writes any in these fields). */
static mmd_status parse_str(hdr_parser *h, char *out, size_t cap)
{
    skip_ws(h);
    if (h->p >= h->end || (*h->p != '\'' && *h->p != '"')) return hdr_fail(h, "a quoted string");
    char q = *h->p++;
    size_t n = 0;
    while (h->p < h->end && *h->p != q) {
        if (*h->p == '\\' || *h->p == '\n') return hdr_fail(h, "a simple quoted string");
        if (n + 1 >= cap) return hdr_fail(h, "a short string");
        out[n++] = *h->p++;
    }
    if (h->p >= h->end) return hdr_fail(h, "a closing quote");
    h->p++;
    out[n] = 0;
    return MMD_OK;
}

static int expect_char(hdr_parser *h, char c)
{
    skip_ws(h);
    if (h->p < h->end && *h->p == c) {
        h->p++;
        return 1;
    }
    return 0;
}

static mmd_status parse_shape(hdr_parser *h, size_t *shape, int *ndim)
{
    skip_ws(h);
    if (!expect_char(h, '(')) return hdr_fail(h, "'(' starting the shape tuple");
    int n = 0;
    for (;;) {
        skip_ws(h);
        if (h->p < h->end && *h->p == ')') {
            h->p++;
            break;
        }
        if (h->p >= h->end || *h->p < '0' || *h->p > '9')
            return hdr_fail(h, "a non-negative integer dimension");
        if (n >= MMD_NPY_MAX_DIMS)
            return mmd_error(MMD_ERR_INVALID, "%s: NPY shape has more than %d dimensions",
                             h->path, MMD_NPY_MAX_DIMS);
        size_t v = 0;
        while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
            unsigned d = (unsigned)(*h->p++ - '0');
            if (v > (SIZE_MAX - d) / 10)
                return mmd_error(MMD_ERR_INVALID, "%s: NPY shape dimension %d is absurdly large",
                                 h->path, n);
            v = v * 10 + d;
        }
        if (h->p < h->end && (*h->p == 'L' || *h->p == 'l')) h->p++; /* Python 2 longs */
        shape[n++] = v;
        skip_ws(h);
        if (h->p < h->end && *h->p == ',') {
            h->p++;
            continue;
        }
        skip_ws(h);
        if (h->p < h->end && *h->p == ')') {
            /* (5) would be an int, not a tuple: numpy always writes (5,) */
            if (n == 1) return hdr_fail(h, "',' after the only dimension, as in (5,)");
            h->p++;
            break;
        }
        return hdr_fail(h, "',' or ')' in the shape tuple");
    }
    *ndim = n;
    return MMD_OK;
}

typedef struct npy_header {
    int big_endian; /* data byte order */
    size_t esize;   /* 4 or 8 */
    int ndim;
    size_t shape[MMD_NPY_MAX_DIMS];
} npy_header;

static mmd_status parse_dict(hdr_parser *h, npy_header *out)
{
    int have_descr = 0, have_fortran = 0, have_shape = 0, fortran = 0;
    char descr[32] = "";
    skip_ws(h);
    if (!expect_char(h, '{')) return hdr_fail(h, "'{' starting the header dict");
    for (;;) {
        skip_ws(h);
        if (expect_char(h, '}')) break;
        char key[32];
        mmd_status st = parse_str(h, key, sizeof key);
        if (st) return st;
        if (!expect_char(h, ':')) return hdr_fail(h, "':' after a key");
        if (!strcmp(key, "descr")) {
            if (have_descr++) return hdr_fail(h, "no duplicate 'descr' key");
            if ((st = parse_str(h, descr, sizeof descr))) return st;
        } else if (!strcmp(key, "fortran_order")) {
            if (have_fortran++) return hdr_fail(h, "no duplicate 'fortran_order' key");
            skip_ws(h);
            size_t left = (size_t)(h->end - h->p);
            if (left >= 4 && !memcmp(h->p, "True", 4)) {
                fortran = 1;
                h->p += 4;
            } else if (left >= 5 && !memcmp(h->p, "False", 5)) {
                h->p += 5;
            } else {
                return hdr_fail(h, "True or False for 'fortran_order'");
            }
        } else if (!strcmp(key, "shape")) {
            if (have_shape++) return hdr_fail(h, "no duplicate 'shape' key");
            if ((st = parse_shape(h, out->shape, &out->ndim))) return st;
        } else {
            return mmd_error(MMD_ERR_PARSE,
                             "%s: malformed NPY header: unexpected key '%s' (expected exactly "
                             "'descr', 'fortran_order' and 'shape')",
                             h->path, key);
        }
        skip_ws(h);
        if (expect_char(h, ',')) continue;
        if (expect_char(h, '}')) break;
        return hdr_fail(h, "',' or '}' after a value");
    }
    skip_ws(h); /* padding: spaces and the final newline */
    if (h->p != h->end) return hdr_fail(h, "only padding after the header dict");
    if (!have_descr || !have_fortran || !have_shape)
        return mmd_error(MMD_ERR_PARSE, "%s: malformed NPY header: missing key '%s'", h->path,
                         !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");
    if (fortran)
        return mmd_error(MMD_ERR_INVALID,
                         "%s: NPY array is in Fortran (column-major) order; expected C order "
                         "(save with np.ascontiguousarray)",
                         h->path);
    /* Floats need a byte order: '<' little, '>' big, '=' native. */
    if (strlen(descr) == 3 && (descr[0] == '<' || descr[0] == '>' || descr[0] == '=') &&
        descr[1] == 'f' && (descr[2] == '4' || descr[2] == '8')) {
        out->big_endian = descr[0] == '>' || (descr[0] == '=' && !host_is_little());
        out->esize = descr[2] == '4' ? 4 : 8;
        return MMD_OK;
    }
    return mmd_error(MMD_ERR_INVALID,
                     "%s: unsupported NPY dtype '%s'; expected float32 or float64 "
                     "('<f4', '>f4', '<f8', '>f8')",
                     h->path, descr);
}

mmd_status mmd_npy_read_f32(const char *path, mmd_array *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return mmd_error(MMD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    mmd_status st = MMD_OK;
    char *hbuf = NULL;
    unsigned char *raw = NULL;
    float *data = NULL;

    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = mmd_error(MMD_ERR_IO, "%s: not a regular file", path);
        goto done;
    }
    size_t fsize = (size_t)sb.st_size;

    unsigned char pre[12];
    size_t got = fread(pre, 1, 10, f);
    if (got < 10 || memcmp(pre, npy_magic, 6) != 0) {
        st = mmd_error(MMD_ERR_PARSE,
                       "%s: not an NPY file (expected the magic \"\\x93NUMPY\" and a version "
                       "in the first 8 bytes)",
                       path);
        goto done;
    }
    int major = pre[6], minor = pre[7];
    if (!((major == 1 || major == 2 || major == 3) && minor == 0)) {
        st = mmd_error(MMD_ERR_PARSE, "%s: unsupported NPY version %d.%d (expected 1.0, 2.0 or 3.0)",
                       path, major, minor);
        goto done;
    }
    size_t hlen, pre_len;
    if (major == 1) {
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
        pre_len = 10;
    } else {
        if (fread(pre + 10, 1, 2, f) != 2) {
            st = mmd_error(MMD_ERR_PARSE, "%s: NPY file truncated in the header length", path);
            goto done;
        }
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 |
               (size_t)pre[11] << 24;
        pre_len = 12;
    }
    if (hlen == 0 || hlen > NPY_MAX_HEADER || pre_len + hlen > fsize) {
        st = mmd_error(MMD_ERR_PARSE,
                       "%s: NPY header length %zu is impossible (file has %zu bytes; expected "
                       "1..%u bytes within the file)",
                       path, hlen, fsize, NPY_MAX_HEADER);
        goto done;
    }
    hbuf = mmd_malloc(hlen + 1, 1, "NPY header");
    if (!hbuf) {
        st = MMD_ERR_NOMEM;
        goto done;
    }
    if (fread(hbuf, 1, hlen, f) != hlen) {
        st = mmd_error(MMD_ERR_IO, "%s: read error in the NPY header", path);
        goto done;
    }
    hbuf[hlen] = 0;
    if (hbuf[hlen - 1] != '\n') {
        st = mmd_error(MMD_ERR_PARSE, "%s: malformed NPY header: expected it to end with a newline",
                       path);
        goto done;
    }
    if (memchr(hbuf, 0, hlen)) {
        st = mmd_error(MMD_ERR_PARSE, "%s: malformed NPY header: NUL byte in the header dict", path);
        goto done;
    }
    npy_header h = {0};
    hdr_parser hp = {hbuf, hbuf + hlen, path};
    if ((st = parse_dict(&hp, &h))) goto done;

    char shp[24 * MMD_NPY_MAX_DIMS + 4];
    int sn = snprintf(shp, sizeof shp, "(");
    for (int k = 0; k < h.ndim; k++)
        sn += snprintf(shp + sn, sizeof shp - (size_t)sn, "%zu%s", h.shape[k],
                       k + 1 < h.ndim ? ", " : h.ndim == 1 ? "," : "");
    snprintf(shp + sn, sizeof shp - (size_t)sn, ")");

    /* Size checks before any allocation: an absurd shape in a small file is an error,
     * not a multi-gigabyte malloc. */
    size_t count = 1;
    double approx = 1;
    int too_many = 0;
    for (int k = 0; k < h.ndim; k++) {
        approx *= (double)h.shape[k];
        if (h.shape[k] && count > MMD_NPY_MAX_ELEMS / h.shape[k]) too_many = 1;
        else count *= h.shape[k];
    }
    if (too_many && approx > 0) {
        st = mmd_error(MMD_ERR_INVALID,
                       "%s: NPY shape %s claims %.4g elements, more than the limit of %zu; "
                       "refusing it",
                       path, shp, approx, (size_t)MMD_NPY_MAX_ELEMS);
        goto done;
    }
    if (too_many) count = 0; /* a zero dimension makes the array empty whatever the rest */
    size_t data_bytes = count * h.esize, avail = fsize - pre_len - hlen;
    if (data_bytes != avail) {
        st = mmd_error(MMD_ERR_PARSE,
                       "%s: NPY data size mismatch: shape %s of %zu-byte elements needs %zu "
                       "bytes after the header, the file has %zu (%s)",
                       path, shp, h.esize, data_bytes, avail,
                       data_bytes > avail ? "truncated?" : "trailing bytes");
        goto done;
    }
    data = mmd_malloc(count ? count : 1, sizeof(float), path);
    if (!data) {
        st = MMD_ERR_NOMEM;
        goto done;
    }
    if (h.esize == 4) {
        raw = (unsigned char *)data;
    } else {
        raw = mmd_malloc(count ? count : 1, 8, "NPY float64 buffer");
        if (!raw) {
            st = MMD_ERR_NOMEM;
            goto done;
        }
    }
    if (data_bytes && fread(raw, 1, data_bytes, f) != data_bytes) {
        st = mmd_error(MMD_ERR_IO, "%s: read error in the NPY data", path);
        goto done;
    }
    if (h.big_endian == host_is_little()) swap_bytes(raw, count, h.esize);
    if (h.esize == 8) {
        for (size_t i = 0; i < count; i++) {
            double d;
            memcpy(&d, raw + 8 * i, 8);
            data[i] = (float)d;
        }
    }
    out->ndim = h.ndim;
    memcpy(out->shape, h.shape, sizeof h.shape);
    out->count = count;
    out->data = data;
    data = NULL;

done:
    if (raw && raw != (unsigned char *)data && raw != (unsigned char *)out->data) free(raw);
    free(data);
    free(hbuf);
    fclose(f);
    return st;
}

void mmd_array_free(mmd_array *a)
{
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}
