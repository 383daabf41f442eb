/* PLY reader: ASCII and binary (either endianness), any scalar types, extra properties and
 * elements skipped, polygons fan-split. Every count in the header is checked against the
 * file size before anything is allocated, so a corrupt or hostile header cannot make us
 * allocate more than the file could possibly describe. */
#include "mmd_scene.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum ply_type { T_I8, T_U8, T_I16, T_U16, T_I32, T_U32, T_F32, T_F64 } ply_type;

static const struct {
    const char *name;
    ply_type type;
} type_names[] = {
    {"char", T_I8},    {"uchar", T_U8},     {"short", T_I16},   {"ushort", T_U16},
    {"int", T_I32},    {"uint", T_U32},     {"float", T_F32},   {"double", T_F64},
    {"int8", T_I8},    {"uint8", T_U8},     {"int16", T_I16},   {"uint16", T_U16},
    {"int32", T_I32},  {"uint32", T_U32},   {"float32", T_F32}, {"float64", T_F64},
};
static const unsigned type_size[] = {1, 1, 2, 2, 4, 4, 4, 8};

static int type_is_int(ply_type t) { return t != T_F32 && t != T_F64; }

enum { R_SKIP, R_X, R_Y, R_Z, R_INDICES, R_OBJECT, R_MATERIAL };
enum { F_NONE, F_ASCII, F_BLE, F_BBE };

#define PLY_NAME 64

typedef struct ply_prop {
    char name[PLY_NAME];
    int is_list, line, role;
    ply_type type, count_type;
} ply_prop;

typedef struct ply_elem {
    char name[PLY_NAME];
    uint64_t count;
    int line, n_props, cap_props;
    ply_prop *props;
} ply_elem;

typedef struct ply_ctx {
    const char *path;
    const unsigned char *data;
    size_t size, pos;
    int format, swap, line;
    ply_elem *elems;
    int n_elems, cap_elems;
} ply_ctx;

typedef struct scalar {
    double d;
    int64_t i;
} scalar;

typedef struct tok {
    const char *s;
    size_t n;
} tok;

static int tok_eq(tok t, const char *s) { return strlen(s) == t.n && memcmp(t.s, s, t.n) == 0; }

/* A header token quoted for a message: printable, bounded. */
static const char *tok_show(tok t, char *buf, size_t size)
{
    size_t n = 0;
    for (size_t i = 0; i < t.n && n + 4 < size; i++) {
        unsigned char ch = (unsigned char)t.s[i];
        buf[n++] = (ch >= 32 && ch < 127) ? (char)ch : '?';
        if (i == 40 && t.n > 44) {
            memcpy(buf + n, "...", 3);
            n += 3;
            break;
        }
    }
    buf[n] = 0;
    return buf;
}

static int lookup_type(tok t, ply_type *out)
{
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
        if (tok_eq(t, type_names[i].name)) {
            *out = type_names[i].type;
            return 1;
        }
    return 0;
}

static void ctx_free(ply_ctx *c)
{
    for (int i = 0; i < c->n_elems; i++) free(c->elems[i].props);
    free(c->elems);
    c->elems = NULL;
    c->n_elems = 0;
}

static void copy_name(char *dst, tok t)
{
    size_t n = t.n < PLY_NAME - 1 ? t.n : PLY_NAME - 1;
    memcpy(dst, t.s, n);
    dst[n] = 0;
}

/* ---------------------------------------------------------------------------------- */
/* Header                                                                              */

static mmd_status parse_header(ply_ctx *c)
{
    size_t pos = 0;
    int line = 0;
    char show[64];
    for (;;) {
        if (pos >= c->size)
            return mmd_error(MMD_ERR_PARSE, "%s: line %d: file ends before end_header", c->path,
                             line ? line : 1);
        line++;
        const char *ls = (const char *)c->data + pos;
        const char *nl = memchr(ls, '\n', c->size - pos);
        size_t len = nl ? (size_t)(nl - ls) : c->size - pos;
        size_t next = pos + len + (nl ? 1 : 0);
        tok t[6];
        int nt = 0;
        for (size_t i = 0; i < len;) {
            while (i < len && (ls[i] == ' ' || ls[i] == '\t' || ls[i] == '\r')) i++;
            if (i >= len) break;
            size_t s = i;
            while (i < len && ls[i] != ' ' && ls[i] != '\t' && ls[i] != '\r') i++;
            if (nt < 6) t[nt] = (tok){ls + s, i - s};
            nt++;
            /* A comment's words are not tokens we care about, and a huge binary "line"
             * must not cost more than the few tokens we look at. */
            if (nt == 1 && (tok_eq(t[0], "comment") || tok_eq(t[0], "obj_info"))) break;
            if (nt > 6) break;
        }
        pos = next;
        if (line == 1) {
            if (nt != 1 || !tok_eq(t[0], "ply"))
                return mmd_error(MMD_ERR_PARSE, "%s: line 1: not a PLY file (first line must be 'ply')",
                                 c->path);
            continue;
        }
        if (nt == 0 || tok_eq(t[0], "comment") || tok_eq(t[0], "obj_info")) continue;
        if (tok_eq(t[0], "end_header")) {
            if (c->format == F_NONE)
                return mmd_error(MMD_ERR_PARSE, "%s: line %d: end_header before any 'format' line",
                                 c->path, line);
            c->pos = pos;
            c->line = line + 1;
            return MMD_OK;
        }
        if (tok_eq(t[0], "format")) {
            if (nt != 3)
                return mmd_error(MMD_ERR_PARSE, "%s: line %d: expected 'format <type> 1.0'", c->path,
                                 line);
            if (tok_eq(t[1], "ascii")) c->format = F_ASCII;
            else if (tok_eq(t[1], "binary_little_endian")) c->format = F_BLE;
            else if (tok_eq(t[1], "binary_big_endian")) c->format = F_BBE;
            else
                return mmd_error(MMD_ERR_PARSE,
                                 "%s: line %d: unknown PLY format '%s' (expected ascii, "
                                 "binary_little_endian or binary_big_endian)",
                                 c->path, line, tok_show(t[1], show, sizeof show));
            continue;
        }
        if (tok_eq(t[0], "element")) {
            if (nt != 3)
                return mmd_error(MMD_ERR_PARSE, "%s: line %d: expected 'element <name> <count>'",
                                 c->path, line);
            uint64_t count = 0;
            for (size_t i = 0; i < t[2].n; i++) {
                unsigned d = (unsigned)((unsigned char)t[2].s[i] - '0');
                if (d > 9)
                    return mmd_error(MMD_ERR_PARSE,
                                     "%s: line %d: element count '%s' is not a non-negative integer",
                                     c->path, line, tok_show(t[2], show, sizeof show));
                if (count > (UINT64_MAX - d) / 10)
                    return mmd_error(MMD_ERR_PARSE, "%s: line %d: element count is too large",
                                     c->path, line);
                count = count * 10 + d;
            }
            if (c->n_elems == c->cap_elems) {
                int nc = c->cap_elems ? 2 * c->cap_elems : 4;
                ply_elem *e = mmd_realloc(c->elems, (size_t)nc, sizeof *e, "PLY elements");
                if (!e) return MMD_ERR_NOMEM;
                c->elems = e;
                c->cap_elems = nc;
            }
            ply_elem *e = &c->elems[c->n_elems++];
            memset(e, 0, sizeof *e);
            copy_name(e->name, t[1]);
            e->count = count;
            e->line = line;
            continue;
        }
        if (tok_eq(t[0], "property")) {
            if (c->n_elems == 0)
                return mmd_error(MMD_ERR_PARSE, "%s: line %d: property before any element",
                                 c->path, line);
            ply_elem *e = &c->elems[c->n_elems - 1];
            ply_prop p;
            memset(&p, 0, sizeof p);
            p.line = line;
            tok bad = {0, 0};
            if (nt >= 2 && tok_eq(t[1], "list")) {
                if (nt != 5)
                    return mmd_error(MMD_ERR_PARSE,
                                     "%s: line %d: expected 'property list <count type> <item type> "
                                     "<name>'", c->path, line);
                p.is_list = 1;
                if (!lookup_type(t[2], &p.count_type)) bad = t[2];
                else if (!lookup_type(t[3], &p.type)) bad = t[3];
                else if (!type_is_int(p.count_type))
                    return mmd_error(MMD_ERR_PARSE, "%s: line %d: list count type must be an integer type",
                                     c->path, line);
                copy_name(p.name, t[4]);
            } else {
                if (nt != 3)
                    return mmd_error(MMD_ERR_PARSE, "%s: line %d: expected 'property <type> <name>'",
                                     c->path, line);
                if (!lookup_type(t[1], &p.type)) bad = t[1];
                copy_name(p.name, t[2]);
            }
            if (bad.s)
                return mmd_error(MMD_ERR_PARSE, "%s: line %d: unknown property type '%s'", c->path,
                                 line, tok_show(bad, show, sizeof show));
            if (e->n_props == e->cap_props) {
                int nc = e->cap_props ? 2 * e->cap_props : 8;
                ply_prop *q = mmd_realloc(e->props, (size_t)nc, sizeof *q, "PLY properties");
                if (!q) return MMD_ERR_NOMEM;
                e->props = q;
                e->cap_props = nc;
            }
            e->props[e->n_props++] = p;
            continue;
        }
        return mmd_error(MMD_ERR_PARSE,
                         "%s: line %d: unexpected '%s' in header (expected format, element, "
                         "property, comment or end_header; is end_header missing?)",
                         c->path, line, tok_show(t[0], show, sizeof show));
    }
}

/* Give each property of the vertex and face elements its role; check what is required. */
static mmd_status assign_roles(ply_ctx *c, ply_elem **vert, ply_elem **face)
{
    *vert = *face = NULL;
    for (int k = 0; k < c->n_elems; k++) {
        ply_elem *e = &c->elems[k];
        int is_v = strcmp(e->name, "vertex") == 0, is_f = strcmp(e->name, "face") == 0;
        if (!is_v && !is_f) continue;
        if ((is_v && *vert) || (is_f && *face))
            return mmd_error(MMD_ERR_PARSE, "%s: line %d: second '%s' element", c->path, e->line,
                             e->name);
        if (is_v) *vert = e;
        else *face = e;
        int have[7] = {0};
        for (int i = 0; i < e->n_props; i++) {
            ply_prop *p = &e->props[i];
            int role = R_SKIP;
            if (is_v) {
                if (!strcmp(p->name, "x")) role = R_X;
                else if (!strcmp(p->name, "y")) role = R_Y;
                else if (!strcmp(p->name, "z")) role = R_Z;
                if (role != R_SKIP && p->is_list)
                    return mmd_error(MMD_ERR_PARSE, "%s: line %d: vertex property '%s' must not be a list",
                                     c->path, p->line, p->name);
            } else if (p->is_list) {
                if (!strcmp(p->name, "vertex_indices") || !strcmp(p->name, "vertex_index")) {
                    role = R_INDICES;
                    if (!type_is_int(p->type))
                        return mmd_error(MMD_ERR_PARSE,
                                         "%s: line %d: face property '%s' must have an integer item type",
                                         c->path, p->line, p->name);
                }
            } else if (type_is_int(p->type)) {
                /* object ids / material indices are only meaningful as integers; a float
                 * property of that name is just another extra property. */
                if (!strcmp(p->name, "object_id")) role = R_OBJECT;
                else if (!strcmp(p->name, "material") || !strcmp(p->name, "material_index"))
                    role = R_MATERIAL;
            }
            if (role != R_SKIP && have[role]) role = R_SKIP; /* first one wins */
            if (role != R_SKIP) have[role] = 1;
            p->role = role;
        }
        if (is_v) {
            static const char *xyz[3] = {"x", "y", "z"};
            for (int a = 0; a < 3; a++)
                if (!have[R_X + a])
                    return mmd_error(MMD_ERR_PARSE, "%s: line %d: element vertex has no property '%s'",
                                     c->path, e->line, xyz[a]);
        } else if (!have[R_INDICES] && e->count > 0) {
            return mmd_error(MMD_ERR_PARSE,
                             "%s: line %d: element face has no 'vertex_indices' list property",
                             c->path, e->line);
        }
    }
    if (!*vert)
        return mmd_error(MMD_ERR_PARSE, "%s: header has no 'vertex' element", c->path);
    return MMD_OK;
}

/* Reject headers whose counts need more bytes than the file has, before allocating. */
static mmd_status check_sizes(ply_ctx *c)
{
    uint64_t avail = c->size - c->pos, used = 0, tokens = 0;
    for (int k = 0; k < c->n_elems; k++) {
        ply_elem *e = &c->elems[k];
        uint64_t per = 0;
        int has_list = 0;
        for (int i = 0; i < e->n_props; i++) {
            const ply_prop *p = &e->props[i];
            if (c->format == F_ASCII) per += 1;
            else per += type_size[p->is_list ? p->count_type : p->type];
            has_list |= p->is_list;
        }
        if (per == 0 || e->count == 0) continue;
        if (c->format == F_ASCII) {
            /* n tokens need at least 2n - 1 bytes (one character plus a separator each). */
            if (e->count > (UINT64_MAX / 4) / per || tokens + e->count * per > avail / 2 + 1)
                return mmd_error(MMD_ERR_PARSE,
                                 "%s: truncated: header line %d declares %" PRIu64 " %s elements "
                                 "but only %" PRIu64 " bytes of data follow the header",
                                 c->path, e->line, e->count, e->name, avail);
            tokens += e->count * per;
            continue;
        }
        uint64_t need = e->count > UINT64_MAX / per ? UINT64_MAX : e->count * per;
        if (need > avail - used)
            return mmd_error(MMD_ERR_PARSE,
                             "%s: truncated: expected %s%" PRIu64 " bytes of %s data (%" PRIu64
                             " elements), file ends after %" PRIu64,
                             c->path, has_list ? "at least " : "", need, e->name, e->count,
                             avail - used);
        used += need;
    }
    return MMD_OK;
}

/* ---------------------------------------------------------------------------------- */
/* Data                                                                                */

/* 0 ok, -1 end of data, -2 malformed (ASCII only). `want` = 0 just skips the value. */
static int read_scalar(ply_ctx *c, ply_type t, scalar *v, int want)
{
    if (c->format != F_ASCII) {
        unsigned n = type_size[t];
        if (c->size - c->pos < n) return -1;
        if (!want) {
            c->pos += n;
            return 0;
        }
        unsigned char b[8];
        memcpy(b, c->data + c->pos, n);
        c->pos += n;
        if (c->swap)
            for (unsigned i = 0; i < n / 2; i++) {
                unsigned char x = b[i];
                b[i] = b[n - 1 - i];
                b[n - 1 - i] = x;
            }
        switch (t) {
        case T_I8: { int8_t x; memcpy(&x, b, 1); v->i = x; break; }
        case T_U8: { uint8_t x; memcpy(&x, b, 1); v->i = x; break; }
        case T_I16: { int16_t x; memcpy(&x, b, 2); v->i = x; break; }
        case T_U16: { uint16_t x; memcpy(&x, b, 2); v->i = x; break; }
        case T_I32: { int32_t x; memcpy(&x, b, 4); v->i = x; break; }
        case T_U32: { uint32_t x; memcpy(&x, b, 4); v->i = x; break; }
        case T_F32: { float x; memcpy(&x, b, 4); v->d = x; v->i = 0; return 0; }
        case T_F64: { double x; memcpy(&x, b, 8); v->d = x; v->i = 0; return 0; }
        }
        v->d = (double)v->i;
        return 0;
    }
    const unsigned char *d = c->data;
    while (c->pos < c->size && isspace(d[c->pos])) {
        if (d[c->pos] == '\n') c->line++;
        c->pos++;
    }
    if (c->pos >= c->size) return -1;
    size_t s = c->pos;
    while (c->pos < c->size && !isspace(d[c->pos])) c->pos++;
    if (!want) return 0;
    size_t n = c->pos - s;
    char buf[72];
    if (n >= sizeof buf) return -2;
    memcpy(buf, d + s, n);
    buf[n] = 0;
    char *end;
    errno = 0;
    if (type_is_int(t)) {
        long long x = strtoll(buf, &end, 10);
        if (end != buf && !*end && errno == 0) {
            v->i = x;
            v->d = (double)x;
            return 0;
        }
        /* Some writers print integers as "3.0"; accept exact integral values. */
        double f = strtod(buf, &end);
        if (end == buf || *end || !(f == floor(f)) || fabs(f) > 9.0e15) return -2;
        v->i = (int64_t)f;
        v->d = f;
        return 0;
    }
    double x = strtod(buf, &end);
    if (end == buf || *end) return -2;
    v->d = x;
    v->i = 0;
    return 0;
}

typedef struct mesh_acc {
    mmd_ply_mesh *m;
    size_t cap_tris;
    int want_obj, want_mat;
} mesh_acc;

static mmd_status push_tri(ply_ctx *c, mesh_acc *a, uint32_t i0, uint32_t i1, uint32_t i2)
{
    mmd_ply_mesh *m = a->m;
    if (m->n_triangles == UINT32_MAX)
        return mmd_error(MMD_ERR_NOMEM, "%s: more than 2^32-1 triangles", c->path);
    if (m->n_triangles == a->cap_tris) {
        size_t nc = a->cap_tris ? 2 * a->cap_tris : 64;
        uint32_t *q = mmd_realloc(m->indices, nc, 3 * sizeof(uint32_t), "PLY triangles");
        if (!q) return MMD_ERR_NOMEM;
        m->indices = q;
        if (a->want_obj) {
            int64_t *o = mmd_realloc(m->tri_object_id, nc, sizeof(int64_t), "PLY object ids");
            if (!o) return MMD_ERR_NOMEM;
            m->tri_object_id = o;
        }
        if (a->want_mat) {
            int64_t *o = mmd_realloc(m->tri_material_id, nc, sizeof(int64_t), "PLY material ids");
            if (!o) return MMD_ERR_NOMEM;
            m->tri_material_id = o;
        }
        a->cap_tris = nc;
    }
    uint32_t *t = m->indices + 3 * (size_t)m->n_triangles++;
    t[0] = i0;
    t[1] = i1;
    t[2] = i2;
    return MMD_OK;
}

static mmd_status data_error(ply_ctx *c, int r, const ply_elem *e, uint64_t i, const ply_prop *p)
{
    if (r == -2)
        return mmd_error(MMD_ERR_PARSE, "%s: line %d: expected a number for property '%s' of %s %" PRIu64,
                         c->path, c->line, p->name, e->name, i);
    if (c->format == F_ASCII)
        return mmd_error(MMD_ERR_PARSE,
                         "%s: truncated: data ends in %s %" PRIu64 " of %" PRIu64 " (line %d)",
                         c->path, e->name, i, e->count, c->line);
    return mmd_error(MMD_ERR_PARSE,
                     "%s: truncated: file ends in %s %" PRIu64 " of %" PRIu64 " (file has %zu bytes)",
                     c->path, e->name, i, e->count, c->size);
}

static mmd_status read_element(ply_ctx *c, ply_elem *e, mesh_acc *a, int kind)
{
    mmd_ply_mesh *m = a->m;
    /* Nothing to read, however large the count (which check_sizes cannot bound). */
    if (e->n_props == 0) return MMD_OK;
    int fixed = 1;
    uint64_t stride = 0;
    for (int i = 0; i < e->n_props; i++) {
        fixed &= !e->props[i].is_list;
        stride += type_size[e->props[i].type];
    }
    if (kind == 0 && fixed && c->format != F_ASCII) {
        /* check_sizes() bounded count * stride by the file size, but earlier list
         * elements may have used more than their minimum, so check what is left. */
        uint64_t need = e->count * stride;
        if (need > c->size - c->pos)
            return mmd_error(MMD_ERR_PARSE,
                             "%s: truncated: expected %" PRIu64 " bytes of %s data, file ends after %zu",
                             c->path, need, e->name, c->size - c->pos);
        c->pos += (size_t)need;
        return MMD_OK;
    }
    for (uint64_t i = 0; i < e->count; i++) {
        double xyz[3] = {0, 0, 0};
        int64_t obj = 0, mat = 0;
        uint32_t first_tri = m->n_triangles;
        for (int k = 0; k < e->n_props; k++) {
            const ply_prop *p = &e->props[k];
            scalar v = {0, 0};
            int r;
            if (!p->is_list) {
                r = read_scalar(c, p->type, &v, p->role != R_SKIP);
                if (r) return data_error(c, r, e, i, p);
                switch (p->role) {
                case R_X: case R_Y: case R_Z: xyz[p->role - R_X] = v.d; break;
                case R_OBJECT: obj = v.i; break;
                case R_MATERIAL: mat = v.i; break;
                default: break;
                }
                continue;
            }
            scalar cnt;
            r = read_scalar(c, p->count_type, &cnt, 1);
            if (r) return data_error(c, r, e, i, p);
            if (cnt.i < 0)
                return mmd_error(MMD_ERR_PARSE, "%s: %s %" PRIu64 ": negative list length %" PRId64,
                                 c->path, e->name, i, cnt.i);
            uint64_t n = (uint64_t)cnt.i, isz = type_size[p->type];
            if (c->format != F_ASCII && n > (c->size - c->pos) / isz)
                return mmd_error(MMD_ERR_PARSE,
                                 "%s: truncated: %s %" PRIu64 " has a list of %" PRIu64
                                 " items but the file ends after %zu more bytes",
                                 c->path, e->name, i, n, c->size - c->pos);
            if (p->role != R_INDICES) {
                if (c->format != F_ASCII) {
                    c->pos += (size_t)(n * isz);
                } else {
                    for (uint64_t j = 0; j < n; j++)
                        if ((r = read_scalar(c, p->type, &v, 0))) return data_error(c, r, e, i, p);
                }
                continue;
            }
            if (n < 3)
                return mmd_error(MMD_ERR_INVALID,
                                 "%s: face %" PRIu64 ": has %" PRIu64 " vertices (need at least 3)",
                                 c->path, i, n);
            uint32_t first = 0, prev = 0;
            for (uint64_t j = 0; j < n; j++) {
                if ((r = read_scalar(c, p->type, &v, 1))) return data_error(c, r, e, i, p);
                if (v.i < 0 || (uint64_t)v.i >= m->n_vertices)
                    return mmd_error(MMD_ERR_INVALID,
                                     "%s: face %" PRIu64 ": vertex index %" PRId64
                                     " out of range (file has %u vertices)",
                                     c->path, i, v.i, m->n_vertices);
                uint32_t idx = (uint32_t)v.i;
                if (j == 0) first = idx;
                else if (j >= 2) {
                    mmd_status st = push_tri(c, a, first, prev, idx);
                    if (st) return st;
                }
                prev = idx;
            }
        }
        if (kind == 1) {
            static const char axis[3] = {'x', 'y', 'z'};
            for (int k = 0; k < 3; k++) {
                float f = (float)xyz[k];
                if (isnan(xyz[k]))
                    return mmd_error(MMD_ERR_INVALID, "%s: vertex %" PRIu64 ": coordinate is NaN (%c)",
                                     c->path, i, axis[k]);
                if (!isfinite(f))
                    return mmd_error(MMD_ERR_INVALID,
                                     "%s: vertex %" PRIu64 ": coordinate is infinite or beyond "
                                     "float range (%c = %g)", c->path, i, axis[k], xyz[k]);
                m->vertices[3 * i + (uint64_t)k] = f;
            }
        } else if (kind == 2) {
            for (uint32_t t = first_tri; t < m->n_triangles; t++) {
                if (a->want_obj) m->tri_object_id[t] = obj;
                if (a->want_mat) m->tri_material_id[t] = mat;
            }
        }
    }
    return MMD_OK;
}

void mmd_ply_mesh_free(mmd_ply_mesh *m)
{
    if (!m) return;
    free(m->vertices);
    free(m->indices);
    free(m->tri_object_id);
    free(m->tri_material_id);
    memset(m, 0, sizeof *m);
}

static mmd_status ply_parse(ply_ctx *c, mmd_ply_mesh *out)
{
    mmd_status st = parse_header(c);
    if (st) return st;
    ply_elem *vert, *face;
    if ((st = assign_roles(c, &vert, &face))) return st;
    if ((st = check_sizes(c))) return st;
    if (vert->count > UINT32_MAX)
        return mmd_error(MMD_ERR_INVALID, "%s: line %d: %" PRIu64 " vertices (at most 2^32-1 supported)",
                         c->path, vert->line, vert->count);
    uint16_t one = 1;
    int host_le = *(const unsigned char *)&one == 1;
    c->swap = (c->format == F_BLE && !host_le) || (c->format == F_BBE && host_le);

    mesh_acc a = {out, 0, 0, 0};
    out->n_vertices = (uint32_t)vert->count;
    out->vertices = mmd_malloc(3 * (size_t)vert->count, sizeof(float), "PLY vertices");
    if (!out->vertices) return MMD_ERR_NOMEM;
    if (face) {
        for (int i = 0; i < face->n_props; i++) {
            a.want_obj |= face->props[i].role == R_OBJECT;
            a.want_mat |= face->props[i].role == R_MATERIAL;
        }
    }
    for (int k = 0; k < c->n_elems; k++) {
        ply_elem *e = &c->elems[k];
        st = read_element(c, e, &a, e == vert ? 1 : e == face ? 2 : 0);
        if (st) return st;
    }
    return MMD_OK;
}

mmd_status mmd_ply_read(const char *path, mmd_ply_mesh *out)
{
    memset(out, 0, sizeof *out);
    char *data = NULL;
    size_t size = 0;
    mmd_status st = mmd_read_file(path, &data, &size);
    if (st) return st;
    ply_ctx c;
    memset(&c, 0, sizeof c);
    c.path = path;
    c.data = (const unsigned char *)data;
    c.size = size;
    st = ply_parse(&c, out);
    ctx_free(&c);
    free(data);
    if (st) mmd_ply_mesh_free(out);
    return st;
}

/* ---------------------------------------------------------------------------------- */
/* A bare PLY as a scene                                                               */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Sorted distinct values of v[0..n) into a new array. */
static int64_t *distinct(const int64_t *v, uint32_t n, uint32_t *count)
{
    int64_t *u = mmd_malloc(n ? n : 1, sizeof *u, "PLY id table");
    if (!u) return NULL;
    memcpy(u, v, (size_t)n * sizeof *u);
    qsort(u, n, sizeof *u, cmp_i64);
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++)
        if (k == 0 || u[k - 1] != u[i]) u[k++] = u[i];
    *count = k;
    return u;
}

static uint32_t find_id(const int64_t *u, uint32_t n, int64_t x)
{
    const int64_t *p = bsearch(&x, u, n, sizeof *u, cmp_i64);
    return p ? (uint32_t)(p - u) : 0;
}

static void default_material(mmd_scene_material *m, const char *name)
{
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", name);
    m->kind = MMD_MAT_UNASSIGNED;
    m->thickness_m = 0.1;
    m->eps_r = 1.0;
}

/* Per-face object ids / material indices: one object per distinct id (triangles
 * regrouped so each object is contiguous), one material per distinct index. */
static mmd_status build_split(mmd_scene_builder *b, const mmd_ply_mesh *m, const char *stem)
{
    mmd_status st = MMD_OK;
    uint32_t nt = m->n_triangles, n_mat = 0, n_obj = 0, base;
    int64_t *mats = NULL, *objs = NULL;
    uint32_t *tri_mat = mmd_malloc(nt ? nt : 1, sizeof *tri_mat, "triangle materials");
    uint32_t *order = NULL, *start = NULL, *idx = NULL, *pmat = NULL;
    if (!tri_mat) return MMD_ERR_NOMEM;
    mmd_scene_material mat;
    if (m->tri_material_id) {
        if (!(mats = distinct(m->tri_material_id, nt, &n_mat))) { st = MMD_ERR_NOMEM; goto done; }
        uint32_t *map = mmd_malloc(n_mat ? n_mat : 1, sizeof *map, "material map");
        if (!map) { st = MMD_ERR_NOMEM; goto done; }
        for (uint32_t k = 0; k < n_mat && !st; k++) {
            char name[MMD_NAME_MAX];
            snprintf(name, sizeof name, "material_%" PRId64, mats[k]);
            default_material(&mat, name);
            st = mmd_scene_builder_material(b, &mat, &map[k]);
        }
        for (uint32_t t = 0; t < nt && !st; t++)
            tri_mat[t] = map[find_id(mats, n_mat, m->tri_material_id[t])];
        free(map);
        if (st) goto done;
    } else {
        uint32_t mi;
        default_material(&mat, "default");
        if ((st = mmd_scene_builder_material(b, &mat, &mi))) goto done;
        for (uint32_t t = 0; t < nt; t++) tri_mat[t] = mi;
    }
    if ((st = mmd_scene_builder_vertices(b, m->vertices, m->n_vertices, NULL, &base))) goto done;
    if (!m->tri_object_id) {
        st = mmd_scene_builder_object(b, stem, nt ? tri_mat[0] : 0, m->indices, nt, base, tri_mat);
        goto done;
    }
    if (!(objs = distinct(m->tri_object_id, nt, &n_obj))) { st = MMD_ERR_NOMEM; goto done; }
    order = mmd_malloc(nt ? nt : 1, sizeof *order, "triangle order");
    start = mmd_calloc((size_t)n_obj + 1, sizeof *start, "object offsets");
    idx = mmd_malloc(3 * (size_t)(nt ? nt : 1), sizeof *idx, "regrouped triangles");
    pmat = mmd_malloc(nt ? nt : 1, sizeof *pmat, "regrouped materials");
    if (!order || !start || !idx || !pmat) { st = MMD_ERR_NOMEM; goto done; }
    /* Counting sort keeps the file order within each object. */
    for (uint32_t t = 0; t < nt; t++) {
        order[t] = find_id(objs, n_obj, m->tri_object_id[t]);
        start[order[t] + 1]++;
    }
    for (uint32_t k = 0; k < n_obj; k++) start[k + 1] += start[k];
    {
        uint32_t *fill = mmd_malloc(n_obj ? n_obj : 1, sizeof *fill, "object fill");
        if (!fill) { st = MMD_ERR_NOMEM; goto done; }
        memcpy(fill, start, (size_t)n_obj * sizeof *fill);
        for (uint32_t t = 0; t < nt; t++) {
            uint32_t dst = fill[order[t]]++;
            memcpy(idx + 3 * (size_t)dst, m->indices + 3 * (size_t)t, 3 * sizeof *idx);
            pmat[dst] = tri_mat[t];
        }
        free(fill);
    }
    for (uint32_t k = 0; k < n_obj && !st; k++) {
        char name[MMD_NAME_MAX];
        snprintf(name, sizeof name, "object_%" PRId64, objs[k]);
        uint32_t f = start[k];
        st = mmd_scene_builder_object(b, name, pmat[f], idx + 3 * (size_t)f, start[k + 1] - f, base,
                                      pmat + f);
    }
done:
    free(tri_mat);
    free(mats);
    free(objs);
    free(order);
    free(start);
    free(idx);
    free(pmat);
    return st;
}

mmd_status mmd_scene_load_ply(const char *path, mmd_scene **out)
{
    *out = NULL;
    mmd_ply_mesh m;
    mmd_status st = mmd_ply_read(path, &m);
    if (st) return st;
    mmd_scene_builder b;
    if ((st = mmd_scene_builder_init(&b, path))) {
        mmd_ply_mesh_free(&m);
        return st;
    }
    char stem[MMD_NAME_MAX];
    mmd_scene_file_stem(path, stem, sizeof stem);
    if (m.tri_object_id || m.tri_material_id) {
        st = build_split(&b, &m, stem);
    } else {
        mmd_scene_material mat;
        uint32_t mi;
        default_material(&mat, "default");
        st = mmd_scene_builder_material(&b, &mat, &mi);
        if (!st) st = mmd_scene_builder_mesh(&b, &m, stem, mi, NULL);
    }
    mmd_ply_mesh_free(&m);
    if (st) {
        mmd_scene_builder_abort(&b);
        return st;
    }
    return mmd_scene_builder_finish(&b, out);
}
