/* Mitsuba XML scenes as written by Sionna RT and Blender's Mitsuba exporter.
 *
 * A small non-validating XML parser builds a tree (elements, attributes, line numbers;
 * text content is ignored because Mitsuba puts everything in attributes), then the scene
 * semantics are read from it: bsdfs become materials following Sionna RT's rules, each
 * <shape type="ply"> becomes one object. */
#include "mmd_scene.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ---------------------------------------------------------------------------------- */
/* XML tree                                                                            */

#define MAX_ATTRS 64 /* per element */

typedef struct xattr {
    const char *name, *value;
} xattr;

typedef struct xnode {
    const char *name;
    int line, parent, first_child, last_child, next;
    uint32_t attr0, nattr;
} xnode;

typedef struct xdoc {
    const char *path;
    const char *src;
    size_t size;
    char *arena; /* decoded names and values; never longer than their source text */
    size_t arena_used, arena_cap;
    xnode *nodes;
    int n_nodes, cap_nodes, root;
    xattr *attrs;
    uint32_t n_attrs, cap_attrs;
    size_t line_pos; /* line counting is incremental: positions mostly increase */
    int line;
    char **extra; /* strings made by $default substitution */
    int n_extra, cap_extra;
} xdoc;

static int line_at(xdoc *d, size_t pos)
{
    if (pos > d->size) pos = d->size;
    if (pos < d->line_pos) {
        d->line_pos = 0;
        d->line = 1;
    }
    for (size_t i = d->line_pos; i < pos; i++)
        if (d->src[i] == '\n') d->line++;
    d->line_pos = pos;
    return d->line;
}

static int is_name_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '-' || c == '.' || c == ':' || c >= 0x80;
}

static size_t find_str(const xdoc *d, size_t from, const char *pat)
{
    size_t m = strlen(pat);
    for (size_t i = from; i + m <= d->size; i++)
        if (d->src[i] == pat[0] && memcmp(d->src + i, pat, m) == 0) return i;
    return (size_t)-1;
}

static int starts(const xdoc *d, size_t i, const char *pat)
{
    size_t m = strlen(pat);
    return i + m <= d->size && memcmp(d->src + i, pat, m) == 0;
}

static void put_utf8(char *out, size_t *n, unsigned long cp)
{
    if (cp < 0x80) out[(*n)++] = (char)cp;
    else if (cp < 0x800) {
        out[(*n)++] = (char)(0xC0 | (cp >> 6));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out[(*n)++] = (char)(0xE0 | (cp >> 12));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*n)++] = (char)(0xF0 | (cp >> 18));
        out[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    }
}

/* Copy src[s, e) into the arena, decoding entity references when `decode`. */
static mmd_status arena_str(xdoc *d, size_t s, size_t e, int decode, const char **out)
{
    if (d->arena_used + (e - s) + 1 > d->arena_cap)
        return mmd_error(MMD_ERR_INTERNAL, "%s: XML string arena overflow", d->path);
    char *o = d->arena + d->arena_used;
    size_t n = 0;
    for (size_t i = s; i < e; i++) {
        char c = d->src[i];
        if (c != '&' || !decode) {
            o[n++] = c;
            continue;
        }
        size_t semi = i + 1;
        while (semi < e && semi < i + 12 && d->src[semi] != ';') semi++;
        if (semi >= e || d->src[semi] != ';')
            return mmd_error(MMD_ERR_PARSE, "%s:%d: '&' not followed by an entity reference like &amp;",
                             d->path, line_at(d, i));
        const char *ent = d->src + i + 1;
        size_t len = semi - i - 1;
        static const struct { const char *name; char ch; } ents[] = {
            {"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}};
        int done = 0;
        for (size_t k = 0; k < 5 && !done; k++)
            if (strlen(ents[k].name) == len && memcmp(ent, ents[k].name, len) == 0) {
                o[n++] = ents[k].ch;
                done = 1;
            }
        if (!done && len >= 2 && ent[0] == '#') {
            char buf[16];
            memcpy(buf, ent + 1, len - 1);
            buf[len - 1] = 0;
            char *end;
            int hex = buf[0] == 'x' || buf[0] == 'X';
            unsigned long cp = strtoul(buf + hex, &end, hex ? 16 : 10);
            /* A numeric reference is never longer decoded (<= 4 bytes) than written (>= 4). */
            if (end != buf + hex && !*end && cp > 0 && cp <= 0x10FFFF) {
                put_utf8(o, &n, cp);
                done = 1;
            }
        }
        if (!done)
            return mmd_error(MMD_ERR_PARSE, "%s:%d: unknown entity reference '&%.*s;'", d->path,
                             line_at(d, i), (int)len, ent);
        i = semi;
    }
    o[n] = 0;
    d->arena_used += n + 1;
    *out = o;
    return MMD_OK;
}

static mmd_status new_node(xdoc *d, int parent, int line, int *out)
{
    if (d->n_nodes == d->cap_nodes) {
        int nc = d->cap_nodes ? 2 * d->cap_nodes : 256;
        xnode *q = mmd_realloc(d->nodes, (size_t)nc, sizeof *q, "XML nodes");
        if (!q) return MMD_ERR_NOMEM;
        d->nodes = q;
        d->cap_nodes = nc;
    }
    int k = d->n_nodes++;
    xnode *x = &d->nodes[k];
    memset(x, 0, sizeof *x);
    x->line = line;
    x->parent = parent;
    x->first_child = x->last_child = x->next = -1;
    x->attr0 = d->n_attrs;
    if (parent >= 0) {
        xnode *p = &d->nodes[parent];
        if (p->last_child >= 0) d->nodes[p->last_child].next = k;
        else p->first_child = k;
        p->last_child = k;
    }
    *out = k;
    return MMD_OK;
}

static mmd_status xml_parse(xdoc *d)
{
    const char *p = d->src;
    size_t n = d->size, i = 0;
    int cur = -1;
    d->root = -1;
    d->line = 1;
    if (n >= 3 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB &&
        (unsigned char)p[2] == 0xBF)
        i = 3;
    while (i < n) {
        if (p[i] != '<') {
            i++;
            continue;
        }
        size_t lt = i;
        if (starts(d, i, "<!--") || starts(d, i, "<?") || starts(d, i, "<![CDATA[") ||
            starts(d, i, "<!")) {
            const char *close = starts(d, i, "<!--") ? "-->" : starts(d, i, "<?") ? "?>"
                                : starts(d, i, "<![CDATA[") ? "]]>" : ">";
            const char *what = close[0] == '-' ? "comment" : close[0] == '?' ? "<? ... ?> declaration"
                               : close[0] == ']' ? "CDATA section" : "<! ... > declaration";
            size_t e = find_str(d, i + 2, close);
            if (e == (size_t)-1)
                return mmd_error(MMD_ERR_PARSE, "%s:%d: unterminated %s (expected '%s')", d->path,
                                 line_at(d, lt), what, close);
            i = e + strlen(close);
            continue;
        }
        if (starts(d, i, "</")) {
            size_t s = i + 2;
            i = s;
            while (i < n && is_name_char((unsigned char)p[i])) i++;
            size_t e = i;
            while (i < n && isspace((unsigned char)p[i])) i++;
            if (i >= n || p[i] != '>')
                return mmd_error(MMD_ERR_PARSE, "%s:%d: expected '>' to end the closing tag </%.*s",
                                 d->path, line_at(d, i), (int)(e - s), p + s);
            if (cur < 0)
                return mmd_error(MMD_ERR_PARSE, "%s:%d: closing tag </%.*s> without an open element",
                                 d->path, line_at(d, lt), (int)(e - s), p + s);
            const char *want = d->nodes[cur].name;
            if (strlen(want) != e - s || memcmp(want, p + s, e - s) != 0)
                return mmd_error(MMD_ERR_PARSE,
                                 "%s:%d: closing tag </%.*s> does not match <%s> opened at line %d",
                                 d->path, line_at(d, lt), (int)(e - s), p + s, want, d->nodes[cur].line);
            cur = d->nodes[cur].parent;
            i++;
            continue;
        }
        /* Start tag. */
        size_t s = ++i;
        while (i < n && is_name_char((unsigned char)p[i])) i++;
        if (i == s)
            return mmd_error(MMD_ERR_PARSE, "%s:%d: expected an element name after '<'", d->path,
                             line_at(d, lt));
        int line = line_at(d, lt);
        if (cur < 0 && d->root >= 0)
            return mmd_error(MMD_ERR_PARSE, "%s:%d: second top-level element <%.*s> (the document's "
                             "root <%s> ended at an earlier line)", d->path, line, (int)(i - s),
                             p + s, d->nodes[d->root].name);
        int k;
        mmd_status st = new_node(d, cur, line, &k);
        if (st) return st;
        if (cur < 0) d->root = k;
        const char *name;
        if ((st = arena_str(d, s, i, 0, &name))) return st;
        d->nodes[k].name = name;
        for (;;) {
            while (i < n && isspace((unsigned char)p[i])) i++;
            if (i >= n)
                return mmd_error(MMD_ERR_PARSE, "%s:%d: expected '>' to end <%s> (opened at line %d), "
                                 "but the file ends", d->path, line_at(d, n), name, line);
            if (p[i] == '>') {
                i++;
                cur = k;
                break;
            }
            if (p[i] == '/') {
                if (i + 1 < n && p[i + 1] == '>') {
                    i += 2;
                    break;
                }
                return mmd_error(MMD_ERR_PARSE, "%s:%d: expected '>' after '/' in <%s>", d->path,
                                 line_at(d, i), name);
            }
            if (!is_name_char((unsigned char)p[i]))
                return mmd_error(MMD_ERR_PARSE, "%s:%d: expected '>' or an attribute in <%s>, got '%c'",
                                 d->path, line_at(d, i), name, isprint((unsigned char)p[i]) ? p[i] : '?');
            size_t as = i;
            while (i < n && is_name_char((unsigned char)p[i])) i++;
            size_t ae = i;
            while (i < n && isspace((unsigned char)p[i])) i++;
            if (i >= n || p[i] != '=')
                return mmd_error(MMD_ERR_PARSE, "%s:%d: expected '=' after attribute '%.*s' in <%s>",
                                 d->path, line_at(d, i), (int)(ae - as), p + as, name);
            i++;
            while (i < n && isspace((unsigned char)p[i])) i++;
            if (i >= n || (p[i] != '"' && p[i] != '\''))
                return mmd_error(MMD_ERR_PARSE,
                                 "%s:%d: expected a quoted value for attribute '%.*s' in <%s>", d->path,
                                 line_at(d, i), (int)(ae - as), p + as, name);
            char q = p[i++];
            size_t vs = i;
            while (i < n && p[i] != q && p[i] != '<') i++;
            if (i >= n || p[i] != q)
                return mmd_error(MMD_ERR_PARSE,
                                 "%s:%d: unterminated value of attribute '%.*s' in <%s> (expected %c)",
                                 d->path, line_at(d, vs), (int)(ae - as), p + as, name, q);
            if (d->n_attrs == d->cap_attrs) {
                uint32_t nc = d->cap_attrs ? 2 * d->cap_attrs : 512;
                xattr *a = mmd_realloc(d->attrs, nc, sizeof *a, "XML attributes");
                if (!a) return MMD_ERR_NOMEM;
                d->attrs = a;
                d->cap_attrs = nc;
            }
            /* Mitsuba elements carry a handful of attributes; each is checked against the
             * element's earlier ones, so 10^5 of them would be 5 x 10^9 comparisons. */
            if (d->nodes[k].nattr >= MAX_ATTRS)
                return mmd_error(MMD_ERR_PARSE, "%s:%d: more than %d attributes in <%s>", d->path, line_at(d, as),
                                 MAX_ATTRS, name);
            xattr *a = &d->attrs[d->n_attrs];
            if ((st = arena_str(d, as, ae, 0, &a->name))) return st;
            if ((st = arena_str(d, vs, i, 1, &a->value))) return st;
            for (uint32_t j = d->nodes[k].attr0; j < d->n_attrs; j++)
                if (!strcmp(d->attrs[j].name, a->name))
                    return mmd_error(MMD_ERR_PARSE, "%s:%d: attribute '%s' repeated in <%s>", d->path,
                                     line_at(d, as), a->name, name);
            d->n_attrs++;
            d->nodes[k].nattr++;
            i++;
        }
    }
    if (cur >= 0)
        return mmd_error(MMD_ERR_PARSE, "%s:%d: element <%s> opened at line %d is never closed",
                         d->path, line_at(d, n), d->nodes[cur].name, d->nodes[cur].line);
    if (d->root < 0) return mmd_error(MMD_ERR_PARSE, "%s: no XML element found", d->path);
    return MMD_OK;
}

static const char *attr(const xdoc *d, int k, const char *name)
{
    const xnode *x = &d->nodes[k];
    for (uint32_t j = 0; j < x->nattr; j++)
        if (!strcmp(d->attrs[x->attr0 + j].name, name)) return d->attrs[x->attr0 + j].value;
    return NULL;
}

static void xdoc_free(xdoc *d)
{
    free(d->arena);
    free(d->nodes);
    free(d->attrs);
    for (int i = 0; i < d->n_extra; i++) free(d->extra[i]);
    free(d->extra);
}

/* ---------------------------------------------------------------------------------- */
/* <default name=.. value=..> and $name substitution                                    */

/* Defaults are substituted in document order, so a default's value may use the defaults
 * before it: ten defaults of ten $refs each to the previous one would expand a 600-byte
 * file to 10^10 bytes. All substituted text together is held to this bound. */
#define MAX_SUBSTITUTED ((size_t)16 << 20)

/* Defaults sorted by name, so each $name is a binary search (a file of 10^5 defaults and
 * 10^6 $refs would otherwise take 10^11 comparisons). */
typedef struct xdefault {
    const char *name;
    int node;
} xdefault;

/* By name, then document order (qsort is not stable; the first default of a name wins). */
static int cmp_default(const void *a, const void *b)
{
    const xdefault *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->node > y->node) - (x->node < y->node);
}

/* The value of the default named by the nl bytes at s, or NULL. */
static const char *find_default(const xdoc *d, const xdefault *defs, int n_def, const char *s, size_t nl)
{
    int lo = 0, hi = n_def;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strncmp(defs[mid].name, s, nl);
        if (c == 0 && defs[mid].name[nl]) c = 1; /* longer name sorts after */
        if (c == 0) {
            /* the first default of that name wins, as with the linear search before */
            while (mid > lo && !strcmp(defs[mid - 1].name, defs[mid].name)) mid--;
            return attr(d, defs[mid].node, "value");
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* `v` with each $name of a known default replaced (unknown $names stay as written: they
 * only matter if that attribute is read later, which then reports it). NULL: no memory,
 * or (*over set) the result would take the total past *budget bytes. */
static char *substitute(const xdoc *d, const xdefault *defs, int n_def, const char *v, size_t *budget, int *over)
{
    size_t cap = strlen(v) + 1, n = 0;
    char *out = malloc(cap);
    for (const char *c = v; out && *c;) {
        const char *repl = NULL;
        size_t nl = 0;
        if (*c == '$') {
            while (isalnum((unsigned char)c[1 + nl]) || c[1 + nl] == '_') nl++;
            if (nl) repl = find_default(d, defs, n_def, c + 1, nl);
        }
        size_t add = repl ? strlen(repl) : 1;
        if (n + add > *budget) {
            *over = 1;
            free(out);
            return NULL;
        }
        if (n + add + 1 > cap) {
            cap = 2 * (n + add + 1);
            char *q = realloc(out, cap);
            if (!q) free(out);
            out = q;
            if (!out) break;
        }
        if (repl) {
            memcpy(out + n, repl, add);
            c += 1 + nl;
        } else {
            out[n] = *c++;
        }
        n += add;
    }
    if (out) {
        out[n] = 0;
        *budget -= n;
    }
    return out;
}

static mmd_status substitute_defaults(xdoc *d)
{
    int root = d->root, n_def = 0;
    for (int k = d->nodes[root].first_child; k >= 0; k = d->nodes[k].next)
        n_def += !strcmp(d->nodes[k].name, "default");
    if (n_def == 0) return MMD_OK;
    xdefault *defs = mmd_malloc((size_t)n_def, sizeof *defs, "XML defaults");
    if (!defs) return MMD_ERR_NOMEM;
    n_def = 0;
    /* only defaults with a name and a value can substitute anything */
    for (int k = d->nodes[root].first_child; k >= 0; k = d->nodes[k].next)
        if (!strcmp(d->nodes[k].name, "default") && attr(d, k, "name") && attr(d, k, "value"))
            defs[n_def++] = (xdefault){attr(d, k, "name"), k};
    qsort(defs, (size_t)n_def, sizeof *defs, cmp_default);
    mmd_status st = MMD_OK;
    size_t budget = MAX_SUBSTITUTED;
    for (int k = 0; k < d->n_nodes && !st; k++) {
        for (uint32_t j = d->nodes[k].attr0; j < d->nodes[k].attr0 + d->nodes[k].nattr && !st; j++) {
            if (!strchr(d->attrs[j].value, '$')) continue;
            if (d->n_extra == d->cap_extra) {
                int nc = d->cap_extra ? 2 * d->cap_extra : 16;
                char **q = mmd_realloc(d->extra, (size_t)nc, sizeof *q, "XML substitutions");
                if (!q) {
                    st = MMD_ERR_NOMEM;
                    break;
                }
                d->extra = q;
                d->cap_extra = nc;
            }
            int over = 0;
            char *out = substitute(d, defs, n_def, d->attrs[j].value, &budget, &over);
            if (!out && over) {
                st = mmd_error(MMD_ERR_INVALID,
                               "%s:%d: attribute '%s': $name substitution of <default> values expands to more than "
                               "%zu MiB (defaults that nest other defaults?)",
                               d->path, d->nodes[k].line, d->attrs[j].name, MAX_SUBSTITUTED >> 20);
                break;
            }
            if (!out) {
                st = mmd_error(MMD_ERR_NOMEM, "out of memory substituting defaults");
                break;
            }
            d->extra[d->n_extra++] = out;
            d->attrs[j].value = out;
        }
    }
    free(defs);
    return st;
}

/* ---------------------------------------------------------------------------------- */
/* Scene semantics                                                                     */

typedef struct bsdf_entry {
    const char *id;
    uint32_t material;
    int line;
} bsdf_entry;

typedef struct mctx {
    xdoc *d;
    mmd_scene_builder *b;
    bsdf_entry *bsdfs;
    int n_bsdfs;
    int have_default;
    uint32_t default_material;
} mctx;

/* Numbers separated by whitespace and/or commas (Mitsuba accepts both). */
static int parse_numbers(const char *s, double *out, int max)
{
    int k = 0;
    while (*s) {
        while (*s && (isspace((unsigned char)*s) || *s == ',')) s++;
        if (!*s) break;
        if (k == max) return -1;
        char *end;
        double v = strtod(s, &end);
        if (end == s || !isfinite(v)) return -1;
        out[k++] = v;
        s = end;
        if (*s && !isspace((unsigned char)*s) && *s != ',') return -1;
    }
    return k;
}

static mmd_status number_attr(mctx *c, int k, const char *name, double def, double *out)
{
    const char *v = attr(c->d, k, name);
    if (!v) {
        *out = def;
        return MMD_OK;
    }
    if (parse_numbers(v, out, 1) != 1)
        return mmd_error(MMD_ERR_PARSE, "%s:%d: <%s> attribute %s=\"%s\" is not a number", c->d->path,
                         c->d->nodes[k].line, c->d->nodes[k].name, name, v);
    return MMD_OK;
}

/* Value of the child <tag name="pname" value=..> of node k, or NULL. */
static int find_param(const xdoc *d, int k, const char *tag, const char *pname)
{
    for (int ch = d->nodes[k].first_child; ch >= 0; ch = d->nodes[ch].next) {
        const char *n = attr(d, ch, "name");
        if (!strcmp(d->nodes[ch].name, tag) && n && !strcmp(n, pname)) return ch;
    }
    return -1;
}

static mmd_status float_param(mctx *c, int k, const char *pname, double lo, double hi, double *out)
{
    int ch = find_param(c->d, k, "float", pname);
    if (ch < 0) return MMD_OK;
    const char *v = attr(c->d, ch, "value");
    double x;
    if (!v || parse_numbers(v, &x, 1) != 1)
        return mmd_error(MMD_ERR_PARSE, "%s:%d: <float name=\"%s\"> needs a numeric value, got \"%s\"",
                         c->d->path, c->d->nodes[ch].line, pname, v ? v : "");
    if (x < lo || x > hi)
        return mmd_error(MMD_ERR_INVALID, "%s:%d: %s = %g is out of range [%g, %g]", c->d->path,
                         c->d->nodes[ch].line, pname, x, lo, hi);
    *out = x;
    return MMD_OK;
}

static mmd_status unknown_itu(mctx *c, int line, const char *bsdf, const char *name)
{
    return mmd_error(MMD_ERR_INVALID,
                     "%s:%d: bsdf '%s': unknown ITU material '%s' (expected one of: %s)", c->d->path,
                     line, bsdf, name, mmd_itu_names());
}

/* Turn <bsdf> node k into a scene material (Sionna RT's rules; see LICENSE-NOTE.md). */
static mmd_status define_bsdf(mctx *c, int k, const char *name, uint32_t *index)
{
    xdoc *d = c->d;
    int line = d->nodes[k].line;
    const char *type = attr(d, k, "type");
    if (!type) return mmd_error(MMD_ERR_PARSE, "%s:%d: <bsdf> without a type attribute", d->path, line);
    mmd_scene_material m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "%s", name);
    m.thickness_m = 0.1;
    m.eps_r = 1.0;
    mmd_status st = MMD_OK;
    if (!strcmp(type, "itu-radio-material")) {
        int ch = find_param(d, k, "string", "type");
        const char *itu = ch >= 0 ? attr(d, ch, "value") : NULL;
        if (!itu)
            return mmd_error(MMD_ERR_PARSE, "%s:%d: itu-radio-material '%s' has no <string name=\"type\" "
                             "value=..> (expected one of: %s)", d->path, line, name, mmd_itu_names());
        if (!mmd_itu_known(itu)) return unknown_itu(c, d->nodes[ch].line, name, itu);
        m.kind = MMD_MAT_ITU;
        snprintf(m.itu_name, sizeof m.itu_name, "%s", itu);
    } else if (!strcmp(type, "radio-material")) {
        m.kind = MMD_MAT_RADIO;
        if (!st) st = float_param(c, k, "relative_permittivity", 0.0, INFINITY, &m.eps_r);
        if (!st) st = float_param(c, k, "conductivity", 0.0, INFINITY, &m.sigma_s_per_m);
    } else {
        /* Blender-exported materials: the id carries the ITU name. */
        const char *id = name;
        if (!strncmp(id, "mat-", 4)) id += 4;
        if (!strncmp(id, "itu_", 4)) {
            char itu[MMD_NAME_MAX];
            snprintf(itu, sizeof itu, "%s", id + 4);
            if (!mmd_itu_known(itu)) {
                /* Blender de-duplicates names as "itu_wood.001"; accept that suffix. */
                char *dot = strrchr(itu, '.');
                int digits = dot && dot[1];
                for (char *q = dot ? dot + 1 : NULL; q && *q; q++) digits &= isdigit((unsigned char)*q) != 0;
                if (digits) *dot = 0;
                if (!digits || !mmd_itu_known(itu)) return unknown_itu(c, line, name, id + 4);
            }
            m.kind = MMD_MAT_ITU;
            snprintf(m.itu_name, sizeof m.itu_name, "%s", itu);
        } else {
            m.kind = MMD_MAT_RADIO;
        }
        return mmd_scene_builder_material(c->b, &m, index);
    }
    if (!st) st = float_param(c, k, "thickness", 0.0, INFINITY, &m.thickness_m);
    if (!st) st = float_param(c, k, "scattering_coefficient", 0.0, 1.0, &m.scattering);
    if (!st) st = float_param(c, k, "xpd_coefficient", 0.0, 1.0, &m.xpd);
    if (st) return st;
    return mmd_scene_builder_material(c->b, &m, index);
}

static int cmp_bsdf(const void *a, const void *b)
{
    return strcmp(((const bsdf_entry *)a)->id, ((const bsdf_entry *)b)->id);
}

static const bsdf_entry *find_bsdf(const mctx *c, const char *id)
{
    bsdf_entry key = {id, 0, 0};
    return c->n_bsdfs ? bsearch(&key, c->bsdfs, (size_t)c->n_bsdfs, sizeof key, cmp_bsdf) : NULL;
}

static void mat_mul(double r[16], const double a[16], const double b[16])
{
    double t[16];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            double s = 0;
            for (int k = 0; k < 4; k++) s += a[4 * i + k] * b[4 * k + j];
            t[4 * i + j] = s;
        }
    memcpy(r, t, sizeof t);
}

/* A vector given as x=/y=/z= attributes or as value="x y z". */
static mmd_status vec3_attr(mctx *c, int k, double def, double v[3])
{
    const char *val = attr(c->d, k, "value");
    if (val) {
        int n = parse_numbers(val, v, 3);
        if (n == 1 && def == 1.0) { /* uniform scale */
            v[1] = v[2] = v[0];
            return MMD_OK;
        }
        if (n != 3)
            return mmd_error(MMD_ERR_PARSE, "%s:%d: <%s value=\"%s\">: expected 3 numbers", c->d->path,
                             c->d->nodes[k].line, c->d->nodes[k].name, val);
        return MMD_OK;
    }
    static const char *xyz[3] = {"x", "y", "z"};
    for (int a = 0; a < 3; a++) {
        mmd_status st = number_attr(c, k, xyz[a], def, &v[a]);
        if (st) return st;
    }
    return MMD_OK;
}

static mmd_status point_attr(mctx *c, int k, const char *name, int required, const double def[3],
                             double v[3])
{
    const char *s = attr(c->d, k, name);
    if (!s) {
        if (required)
            return mmd_error(MMD_ERR_PARSE, "%s:%d: <%s> needs a '%s' attribute", c->d->path,
                             c->d->nodes[k].line, c->d->nodes[k].name, name);
        memcpy(v, def, 3 * sizeof *v);
        return MMD_OK;
    }
    if (parse_numbers(s, v, 3) != 3)
        return mmd_error(MMD_ERR_PARSE, "%s:%d: <%s %s=\"%s\">: expected 3 numbers", c->d->path,
                         c->d->nodes[k].line, c->d->nodes[k].name, name, s);
    return MMD_OK;
}

static double norm3(const double v[3]) { return sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]); }

static void cross3(double r[3], const double a[3], const double b[3])
{
    r[0] = a[1] * b[2] - a[2] * b[1];
    r[1] = a[2] * b[0] - a[0] * b[2];
    r[2] = a[0] * b[1] - a[1] * b[0];
}

/* <transform>: each op left-multiplies the matrix built so far (Mitsuba semantics). */
static mmd_status parse_transform(mctx *c, int k, double m[16])
{
    xdoc *d = c->d;
    static const double id[16] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
    memcpy(m, id, sizeof id);
    for (int ch = d->nodes[k].first_child; ch >= 0; ch = d->nodes[ch].next) {
        const char *op = d->nodes[ch].name;
        int line = d->nodes[ch].line;
        double t[16];
        memcpy(t, id, sizeof id);
        double v[3];
        mmd_status st = MMD_OK;
        if (!strcmp(op, "translate")) {
            if (!(st = vec3_attr(c, ch, 0.0, v))) t[3] = v[0], t[7] = v[1], t[11] = v[2];
        } else if (!strcmp(op, "scale")) {
            if (!(st = vec3_attr(c, ch, 1.0, v))) t[0] = v[0], t[5] = v[1], t[10] = v[2];
        } else if (!strcmp(op, "rotate")) {
            double deg;
            if (!(st = vec3_attr(c, ch, 0.0, v))) st = number_attr(c, ch, "angle", 0.0, &deg);
            if (st) return st;
            double len = norm3(v);
            if (!(len > 0))
                return mmd_error(MMD_ERR_INVALID, "%s:%d: <rotate> needs a non-zero axis", d->path, line);
            double a[3] = {v[0] / len, v[1] / len, v[2] / len};
            double th = deg * (M_PI / 180.0), cs = cos(th), sn = sin(th);
            /* Rodrigues: R = cos I + sin [a]x + (1 - cos) a a^T */
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++) t[4 * i + j] = (1 - cs) * a[i] * a[j] + (i == j ? cs : 0);
            t[1] -= sn * a[2]; t[2] += sn * a[1];
            t[4] += sn * a[2]; t[6] -= sn * a[0];
            t[8] -= sn * a[1]; t[9] += sn * a[0];
        } else if (!strcmp(op, "matrix")) {
            const char *val = attr(d, ch, "value");
            double x[16];
            int n = val ? parse_numbers(val, x, 16) : -1;
            if (n == 16) memcpy(t, x, sizeof x);
            else if (n == 9)
                for (int i = 0; i < 3; i++)
                    for (int j = 0; j < 3; j++) t[4 * i + j] = x[3 * i + j];
            else
                return mmd_error(MMD_ERR_PARSE, "%s:%d: <matrix> value must hold 16 (or 9) numbers",
                                 d->path, line);
        } else if (!strcmp(op, "lookat")) {
            static const double zup[3] = {0, 0, 1};
            double o[3], tg[3], up[3], dir[3], left[3], nup[3];
            if (!(st = point_attr(c, ch, "origin", 1, zup, o)) &&
                !(st = point_attr(c, ch, "target", 1, zup, tg)))
                st = point_attr(c, ch, "up", 0, zup, up);
            if (st) return st;
            for (int i = 0; i < 3; i++) dir[i] = tg[i] - o[i];
            double dl = norm3(dir);
            cross3(left, up, dir);
            double ll = norm3(left);
            if (!(dl > 0) || !(ll > 0))
                return mmd_error(MMD_ERR_INVALID, "%s:%d: degenerate <lookat>", d->path, line);
            for (int i = 0; i < 3; i++) dir[i] /= dl, left[i] /= ll;
            cross3(nup, dir, left);
            for (int i = 0; i < 3; i++) {
                t[4 * i + 0] = left[i];
                t[4 * i + 1] = nup[i];
                t[4 * i + 2] = dir[i];
                t[4 * i + 3] = o[i];
            }
        } else {
            return mmd_error(MMD_ERR_PARSE, "%s:%d: unsupported transform operation <%s> (expected "
                             "translate, scale, rotate, matrix or lookat)", d->path, line, op);
        }
        if (st) return st;
        mat_mul(m, t, m);
    }
    return MMD_OK;
}

static mmd_status default_material(mctx *c, uint32_t *index)
{
    if (!c->have_default) {
        mmd_scene_material m;
        memset(&m, 0, sizeof m);
        snprintf(m.name, sizeof m.name, "default");
        m.kind = MMD_MAT_UNASSIGNED;
        m.thickness_m = 0.1;
        m.eps_r = 1.0;
        mmd_status st = mmd_scene_builder_material(c->b, &m, &c->default_material);
        if (st) return st;
        c->have_default = 1;
    }
    *index = c->default_material;
    return MMD_OK;
}

static mmd_status load_shape(mctx *c, int k)
{
    xdoc *d = c->d;
    int line = d->nodes[k].line;
    const char *type = attr(d, k, "type"), *id = attr(d, k, "id");
    char label[MMD_NAME_MAX + 8];
    snprintf(label, sizeof label, "%s%s%s", id ? "'" : "", id ? id : "(no id)", id ? "'" : "");
    if (!type || strcmp(type, "ply"))
        return mmd_error(MMD_ERR_PARSE, "%s:%d: shape %s: unsupported shape type '%s' (only type=\"ply\" "
                         "is supported)", d->path, line, label, type ? type : "");
    const char *filename = NULL;
    uint32_t material = 0;
    int have_mat = 0, have_xf = 0;
    double xf[16];
    mmd_status st = MMD_OK;
    for (int ch = d->nodes[k].first_child; ch >= 0 && !st; ch = d->nodes[ch].next) {
        const char *tag = d->nodes[ch].name, *pname = attr(d, ch, "name");
        if (!strcmp(tag, "string") && pname && !strcmp(pname, "filename")) {
            filename = attr(d, ch, "value");
        } else if (!strcmp(tag, "ref") && (!pname || !strcmp(pname, "bsdf"))) {
            const char *rid = attr(d, ch, "id");
            const bsdf_entry *e = rid ? find_bsdf(c, rid) : NULL;
            if (!e)
                return mmd_error(MMD_ERR_INVALID, "%s:%d: shape %s references unknown bsdf '%s'",
                                 d->path, d->nodes[ch].line, label, rid ? rid : "");
            material = e->material;
            have_mat = 1;
        } else if (!strcmp(tag, "bsdf")) {
            const char *bid = attr(d, ch, "id");
            char name[MMD_NAME_MAX];
            snprintf(name, sizeof name, "%s%s", bid ? bid : id ? id : "shape",
                     bid ? "" : "-bsdf");
            st = define_bsdf(c, ch, name, &material);
            have_mat = 1;
        } else if (!strcmp(tag, "transform") && (!pname || !strcmp(pname, "to_world"))) {
            st = parse_transform(c, ch, xf);
            have_xf = 1;
        }
    }
    if (st) return st;
    if (!filename || !filename[0])
        return mmd_error(MMD_ERR_PARSE, "%s:%d: shape %s has no <string name=\"filename\" value=..>",
                         d->path, line, label);
    if (!have_mat && (st = default_material(c, &material))) return st;
    char *path = mmd_path_join(d->path, filename, 1);
    if (!path) return mmd_error(MMD_ERR_NOMEM, "out of memory joining paths");
    mmd_ply_mesh mesh;
    st = mmd_ply_read(path, &mesh);
    if (st) {
        char inner[2048];
        snprintf(inner, sizeof inner, "%s", mmd_last_error());
        mmd_error(st, "%s:%d: shape %s: %s", d->path, line, label, inner);
        free(path);
        return st;
    }
    char oname[MMD_NAME_MAX];
    if (id) snprintf(oname, sizeof oname, "%s", id);
    else mmd_scene_file_stem(path, oname, sizeof oname);
    st = mmd_scene_builder_mesh(c->b, &mesh, oname, material, have_xf ? xf : NULL);
    mmd_ply_mesh_free(&mesh);
    if (st) {
        char inner[2048];
        snprintf(inner, sizeof inner, "%s", mmd_last_error());
        mmd_error(st, "%s:%d: shape %s: %s", d->path, line, label, inner);
    }
    free(path);
    return st;
}

/* A bsdf node with an id, for finding repeated ids by sorting (comparing every pair took
 * minutes for 10^5 bsdfs). */
typedef struct bsdf_node {
    const char *id;
    int node;
} bsdf_node;

static int cmp_bsdf_node(const void *a, const void *b)
{
    const bsdf_node *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x->node > y->node) - (x->node < y->node);
}

/* The first bsdf node, in document order, whose id an earlier bsdf already has (-1: none),
 * and that earlier one. */
static mmd_status first_repeated_bsdf(xdoc *d, int nb, int *dup, int *orig)
{
    *dup = *orig = -1;
    bsdf_node *v = mmd_malloc((size_t)(nb ? nb : 1), sizeof *v, "bsdf ids");
    if (!v) return MMD_ERR_NOMEM;
    int n = 0;
    for (int k = d->nodes[d->root].first_child; k >= 0; k = d->nodes[k].next)
        if (!strcmp(d->nodes[k].name, "bsdf") && attr(d, k, "id")) v[n++] = (bsdf_node){attr(d, k, "id"), k};
    qsort(v, (size_t)n, sizeof *v, cmp_bsdf_node);
    for (int i = 1, first = 0; i < n; i++) {
        if (strcmp(v[i - 1].id, v[i].id)) {
            first = i; /* a new run of equal ids starts */
        } else if (*dup < 0 || v[i].node < *dup) {
            *dup = v[i].node;
            *orig = v[first].node;
        }
    }
    free(v);
    return MMD_OK;
}

static mmd_status load_scene(xdoc *d, mmd_scene_builder *b)
{
    mctx c = {d, b, NULL, 0, 0, 0};
    int root = d->root;
    if (strcmp(d->nodes[root].name, "scene"))
        return mmd_error(MMD_ERR_PARSE, "%s:%d: root element is <%s>, expected <scene>", d->path,
                         d->nodes[root].line, d->nodes[root].name);
    mmd_status st = substitute_defaults(d);
    if (st) return st;
    int nb = 0;
    for (int k = d->nodes[root].first_child; k >= 0; k = d->nodes[k].next)
        nb += !strcmp(d->nodes[k].name, "bsdf");
    int dup, orig;
    if ((st = first_repeated_bsdf(d, nb, &dup, &orig))) return st;
    c.bsdfs = mmd_malloc((size_t)(nb ? nb : 1), sizeof *c.bsdfs, "bsdf table");
    if (!c.bsdfs) return MMD_ERR_NOMEM;
    /* Materials first, in file order, so shapes may refer to bsdfs defined after them. */
    for (int k = d->nodes[root].first_child; k >= 0 && !st; k = d->nodes[k].next) {
        if (strcmp(d->nodes[k].name, "bsdf")) continue;
        const char *id = attr(d, k, "id");
        if (!id) continue; /* unreferenceable */
        if (k == dup) {
            st = mmd_error(MMD_ERR_INVALID, "%s:%d: bsdf id '%s' already defined at line %d", d->path,
                           d->nodes[k].line, id, d->nodes[orig].line);
            break;
        }
        bsdf_entry *e = &c.bsdfs[c.n_bsdfs];
        e->id = id;
        e->line = d->nodes[k].line;
        st = define_bsdf(&c, k, id, &e->material);
        if (!st) c.n_bsdfs++;
    }
    if (!st) qsort(c.bsdfs, (size_t)c.n_bsdfs, sizeof *c.bsdfs, cmp_bsdf);
    for (int k = d->nodes[root].first_child; k >= 0 && !st; k = d->nodes[k].next) {
        const char *tag = d->nodes[k].name;
        if (!strcmp(tag, "shape")) st = load_shape(&c, k);
        else if (!strcmp(tag, "include"))
            st = mmd_error(MMD_ERR_PARSE, "%s:%d: <include> is not supported; merge the included "
                           "file into the scene", d->path, d->nodes[k].line);
        /* Everything else (integrator, sensor, emitter, default, ...) does not affect
         * radio propagation. */
    }
    free(c.bsdfs);
    return st;
}

mmd_status mmd_scene_load_mitsuba(const char *path, mmd_scene **out)
{
    *out = NULL;
    xdoc d;
    memset(&d, 0, sizeof d);
    d.path = path;
    char *src = NULL;
    mmd_status st = mmd_read_file(path, &src, &d.size);
    if (st) return st;
    d.src = src;
    /* Decoded strings are never longer than their source text and the source text of
     * distinct strings does not overlap, so size + one NUL each fits in 2 * size. */
    d.arena_cap = 2 * d.size + 16;
    d.arena = mmd_malloc(d.arena_cap, 1, "XML strings");
    if (!d.arena) st = MMD_ERR_NOMEM;
    if (!st) st = xml_parse(&d);
    mmd_scene_builder b;
    memset(&b, 0, sizeof b);
    if (!st) st = mmd_scene_builder_init(&b, path);
    if (!st) st = load_scene(&d, &b);
    xdoc_free(&d);
    free(src);
    if (st) {
        mmd_scene_builder_abort(&b);
        return st;
    }
    return mmd_scene_builder_finish(&b, out);
}
