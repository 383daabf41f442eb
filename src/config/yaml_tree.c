/* YAML tree on libyaml's event API: every node keeps its origin and 1-based position so
 * that later validation can point at the exact spot (see mmd_config.h). */
#include "mmd_config.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* Bounds that keep hostile input (deep nesting, alias bombs) from exhausting the stack or
 * memory; real experiment files and manifests are far below both. Nodes written out in the
 * text are bounded by the text's size; only alias copies can multiply, so only they count. */
#define MAX_DEPTH 128
#define MAX_ALIAS_NODES 100000
/* Alias copies also duplicate text: one long anchored scalar aliased 100000 times would
 * be gigabytes from a file of a few hundred kB, so the copied bytes are bounded too. */
#define MAX_ALIAS_BYTES ((size_t)16 << 20)

#define TAG_PREFIX "tag:yaml.org,2002:"

typedef struct anchor {
    char *name;
    const mmd_ynode *node;
} anchor;

typedef struct loader {
    yaml_parser_t parser;
    const char *origin;
    int positions;
    anchor *anchors;
    size_t n_anchors, cap_anchors;
    size_t n_copied; /* nodes created by alias expansion */
    size_t n_copied_bytes; /* text those nodes duplicated */
    int alias_bomb;  /* a copy stopped at MAX_ALIAS_NODES / MAX_ALIAS_BYTES (message set) */
} loader;

static char *dup_str(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = mmd_malloc(n, 1, "YAML text");
    if (d) memcpy(d, s, n);
    return d;
}

/* "ORIGIN:LINE:COL: " for a libyaml mark (0-based), or "ORIGIN: " without positions. */
static void mark_prefix(const loader *L, yaml_mark_t m, char *buf, size_t cap)
{
    if (L->positions)
        snprintf(buf, cap, "%s:%zu:%zu", L->origin, m.line + 1, m.column + 1);
    else
        snprintf(buf, cap, "%s", L->origin);
}

static mmd_status err_at(const loader *L, yaml_mark_t m, const char *fmt, ...)
{
    char where[1024], msg[2048];
    mark_prefix(L, m, where, sizeof where);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mmd_error(MMD_ERR_PARSE, "%s: %s", where, msg);
}

static mmd_status parser_error(const loader *L)
{
    const yaml_parser_t *p = &L->parser;
    if (p->error == YAML_MEMORY_ERROR)
        return mmd_error(MMD_ERR_NOMEM, "%s: out of memory while parsing YAML", L->origin);
    const char *problem = p->problem ? p->problem : "invalid YAML";
    char where[1024];
    mark_prefix(L, p->problem_mark, where, sizeof where);
    if (p->context) {
        /* The context mark is where the unfinished construct began (e.g. the '[' of an
         * unclosed flow sequence): the place the user has to look. */
        if (L->positions && p->context_mark.line != p->problem_mark.line)
            return mmd_error(MMD_ERR_PARSE, "%s: %s %s (started at line %zu, column %zu)", where,
                             problem, p->context, p->context_mark.line + 1,
                             p->context_mark.column + 1);
        return mmd_error(MMD_ERR_PARSE, "%s: %s %s", where, problem, p->context);
    }
    if (!L->positions)
        return mmd_error(MMD_ERR_PARSE, "%s: %s (at offset %zu of the value)", where, problem,
                         p->problem_mark.index);
    return mmd_error(MMD_ERR_PARSE, "%s: %s", where, problem);
}

static mmd_status next_event(loader *L, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&L->parser, ev)) return parser_error(L);
    return MMD_OK;
}

static mmd_ynode *new_node(loader *L, mmd_ynode_kind kind, yaml_mark_t m)
{
    mmd_ynode *n = mmd_calloc(1, sizeof *n, "YAML node");
    if (!n) return NULL;
    n->kind = kind;
    n->origin = dup_str(L->origin);
    if (!n->origin) { free(n); return NULL; }
    if (L->positions) {
        n->line = (int)m.line + 1;
        n->col = (int)m.column + 1;
    }
    return n;
}

void mmd_yaml_free(mmd_ynode *n)
{
    if (!n) return;
    for (size_t i = 0; i < n->n; i++) {
        if (n->keys) mmd_yaml_free(n->keys[i]);
        if (n->items) mmd_yaml_free(n->items[i]);
    }
    free(n->keys);
    free(n->items);
    free(n->text);
    free(n->origin);
    free(n);
}

static mmd_ynode *copy_node(loader *L, const mmd_ynode *src)
{
    if (++L->n_copied > MAX_ALIAS_NODES) {
        L->alias_bomb = 1;
        mmd_error(MMD_ERR_PARSE, "%s: aliases expand to more than %d nodes (alias expansion bomb?)",
                  L->origin, MAX_ALIAS_NODES);
        return NULL;
    }
    L->n_copied_bytes += (src->text ? strlen(src->text) : 0) + (src->origin ? strlen(src->origin) : 0);
    if (L->n_copied_bytes > MAX_ALIAS_BYTES) {
        L->alias_bomb = 1;
        mmd_error(MMD_ERR_PARSE, "%s: aliases expand to more than %zu MiB of text (alias expansion bomb?)",
                  L->origin, MAX_ALIAS_BYTES >> 20);
        return NULL;
    }
    mmd_ynode *n = mmd_calloc(1, sizeof *n, "YAML node");
    if (!n) return NULL;
    *n = *src;
    n->origin = NULL;
    n->text = NULL;
    n->items = n->keys = NULL;
    n->n = 0;
    n->origin = dup_str(src->origin);
    if (!n->origin || (src->text && !(n->text = dup_str(src->text)))) goto fail;
    if (src->n) {
        n->items = mmd_calloc(src->n, sizeof *n->items, "YAML items");
        if (!n->items) goto fail;
        if (src->keys) {
            n->keys = mmd_calloc(src->n, sizeof *n->keys, "YAML keys");
            if (!n->keys) goto fail;
        }
        for (size_t i = 0; i < src->n; i++) {
            n->n = i + 1;
            if (!(n->items[i] = copy_node(L, src->items[i]))) goto fail;
            if (src->keys && !(n->keys[i] = copy_node(L, src->keys[i]))) goto fail;
        }
    }
    return n;
fail:
    mmd_yaml_free(n);
    return NULL;
}

static mmd_status push_child(mmd_ynode *parent, size_t *cap, mmd_ynode *key, mmd_ynode *value)
{
    if (parent->n == *cap) {
        size_t nc = *cap ? 2 * *cap : 4;
        mmd_ynode **ni = mmd_realloc(parent->items, nc, sizeof *ni, "YAML items");
        if (!ni) return MMD_ERR_NOMEM;
        parent->items = ni;
        if (parent->kind == MMD_YAML_MAP) {
            mmd_ynode **nk = mmd_realloc(parent->keys, nc, sizeof *nk, "YAML keys");
            if (!nk) return MMD_ERR_NOMEM;
            parent->keys = nk;
        }
        *cap = nc;
    }
    if (parent->kind == MMD_YAML_MAP) parent->keys[parent->n] = key;
    parent->items[parent->n++] = value;
    return MMD_OK;
}

/* Only the YAML core schema's own tags are accepted: a custom tag would silently mean
 * nothing to the validator. */
static mmd_status check_tag(loader *L, const yaml_char_t *tag, yaml_mark_t m, const char *kind,
                            int *is_str)
{
    if (is_str) *is_str = 0;
    if (!tag) return MMD_OK;
    const char *t = (const char *)tag;
    if (!strcmp(t, "!")) return MMD_OK; /* non-specific tag: as if untagged */
    static const char *const scalar_ok[] = {"str", "int", "float", "bool", "null", NULL};
    size_t plen = strlen(TAG_PREFIX);
    if (!strncmp(t, TAG_PREFIX, plen)) {
        const char *s = t + plen;
        if (!strcmp(kind, "scalar")) {
            for (int i = 0; scalar_ok[i]; i++)
                if (!strcmp(s, scalar_ok[i])) {
                    if (is_str && !strcmp(s, "str")) *is_str = 1;
                    return MMD_OK;
                }
        } else if ((!strcmp(kind, "mapping") && !strcmp(s, "map")) ||
                   (!strcmp(kind, "sequence") && !strcmp(s, "seq"))) {
            return MMD_OK;
        }
    }
    return err_at(L, m, "tag '%s' is not supported on a %s", t, kind);
}

static mmd_status register_anchor(loader *L, const yaml_char_t *name, const mmd_ynode *node)
{
    if (!name) return MMD_OK;
    /* A redefined anchor shadows the earlier one from here on (YAML 1.2 semantics). */
    for (size_t i = 0; i < L->n_anchors; i++)
        if (!strcmp(L->anchors[i].name, (const char *)name)) {
            L->anchors[i].node = node;
            return MMD_OK;
        }
    if (L->n_anchors == L->cap_anchors) {
        size_t nc = L->cap_anchors ? 2 * L->cap_anchors : 8;
        anchor *na = mmd_realloc(L->anchors, nc, sizeof *na, "YAML anchors");
        if (!na) return MMD_ERR_NOMEM;
        L->anchors = na;
        L->cap_anchors = nc;
    }
    char *nm = dup_str((const char *)name);
    if (!nm) return MMD_ERR_NOMEM;
    L->anchors[L->n_anchors].name = nm;
    L->anchors[L->n_anchors++].node = node;
    return MMD_OK;
}

/* Duplicate-key detection in a mapping: key index + 1 by hash of the key text (open
 * addressing, *cap a power of two, at most half full), so a mapping with n keys costs
 * O(n), not n^2 / 2 string comparisons (a 2 MB file of 200000 keys took minutes). */
static size_t key_slot(const mmd_ynode *map, const uint32_t *slots, size_t cap, const char *text)
{
    size_t h = (size_t)mmd_hash64(text, strlen(text), MMD_FNV_SEED) & (cap - 1);
    while (slots[h] && strcmp(map->keys[slots[h] - 1]->text, text) != 0) h = (h + 1) & (cap - 1);
    return h;
}

/* Make room for one more key (rebuilding the table from map's keys). */
static mmd_status key_reserve(const mmd_ynode *map, uint32_t **slots, size_t *cap)
{
    if (2 * (map->n + 1) <= *cap) return MMD_OK;
    if (map->n >= UINT32_MAX / 2) return mmd_error(MMD_ERR_NOMEM, "YAML mapping with too many keys");
    size_t nc = *cap ? 2 * *cap : 16;
    uint32_t *ns = mmd_calloc(nc, sizeof *ns, "YAML key index");
    if (!ns) return MMD_ERR_NOMEM;
    for (size_t i = 0; i < map->n; i++) ns[key_slot(map, ns, nc, map->keys[i]->text)] = (uint32_t)i + 1;
    free(*slots);
    *slots = ns;
    *cap = nc;
    return MMD_OK;
}

static int plain_is_null(const char *s)
{
    return !s[0] || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

/* Build the node whose first event is *ev (consumed here, always deleted). */
static mmd_status build_node(loader *L, yaml_event_t *ev, int depth, mmd_ynode **out)
{
    *out = NULL;
    yaml_mark_t m = ev->start_mark;
    mmd_status st = MMD_OK;
    mmd_ynode *n = NULL;
    if (depth > MAX_DEPTH) {
        yaml_event_delete(ev);
        return err_at(L, m, "nesting deeper than %d levels", MAX_DEPTH);
    }
    switch (ev->type) {
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        const mmd_ynode *target = NULL;
        for (size_t i = 0; i < L->n_anchors; i++)
            if (!strcmp(L->anchors[i].name, name)) target = L->anchors[i].node;
        if (!target) {
            st = err_at(L, m, "unknown anchor '*%s' (an alias must follow its anchor '&%s')",
                        name, name);
            break;
        }
        n = copy_node(L, target);
        if (!n) {
            st = L->alias_bomb ? MMD_ERR_PARSE : MMD_ERR_NOMEM;
            if (L->n_copied > MAX_ALIAS_NODES)
                err_at(L, m, "aliases expand to more than %d nodes (alias expansion bomb?)",
                       MAX_ALIAS_NODES);
            else if (L->alias_bomb)
                err_at(L, m, "aliases expand to more than %zu MiB of text (alias expansion bomb?)",
                       MAX_ALIAS_BYTES >> 20);
        }
        break;
    }
    case YAML_SCALAR_EVENT: {
        int is_str;
        st = check_tag(L, ev->data.scalar.tag, m, "scalar", &is_str);
        if (st) break;
        n = new_node(L, MMD_YAML_SCALAR, m);
        if (!n) { st = MMD_ERR_NOMEM; break; }
        n->text = dup_str((const char *)ev->data.scalar.value);
        if (!n->text) { st = MMD_ERR_NOMEM; break; }
        n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || is_str;
        n->is_null = !n->quoted && plain_is_null(n->text);
        if (ev->data.scalar.tag &&
            !strcmp((const char *)ev->data.scalar.tag, TAG_PREFIX "null"))
            n->is_null = 1;
        st = register_anchor(L, ev->data.scalar.anchor, n);
        break;
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        int is_map = ev->type == YAML_MAPPING_START_EVENT;
        const yaml_char_t *tag = is_map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag;
        yaml_char_t *anchor_name = NULL;
        const yaml_char_t *a = is_map ? ev->data.mapping_start.anchor
                                      : ev->data.sequence_start.anchor;
        st = check_tag(L, tag, m, is_map ? "mapping" : "sequence", NULL);
        if (st) break;
        /* The anchor becomes usable only once the node is complete, so keep its name. */
        if (a && !(anchor_name = (yaml_char_t *)dup_str((const char *)a))) {
            st = MMD_ERR_NOMEM;
            break;
        }
        n = new_node(L, is_map ? MMD_YAML_MAP : MMD_YAML_SEQ, m);
        if (!n) { free(anchor_name); st = MMD_ERR_NOMEM; break; }
        yaml_event_delete(ev);
        size_t cap = 0, cap_slots = 0;
        uint32_t *slots = NULL; /* mappings: key index, see key_slot */
        for (;;) {
            yaml_event_t e;
            if ((st = next_event(L, &e))) break;
            if (e.type == YAML_SEQUENCE_END_EVENT || e.type == YAML_MAPPING_END_EVENT) {
                yaml_event_delete(&e);
                break;
            }
            mmd_ynode *key = NULL, *val = NULL;
            if (is_map) {
                yaml_mark_t km = e.start_mark;
                if (e.type == YAML_SEQUENCE_START_EVENT || e.type == YAML_MAPPING_START_EVENT) {
                    yaml_event_delete(&e);
                    st = err_at(L, km, "complex (non-scalar) mapping keys are not supported");
                    break;
                }
                if ((st = build_node(L, &e, depth + 1, &key))) break;
                if (key->kind != MMD_YAML_SCALAR) {
                    mmd_yaml_free(key);
                    st = err_at(L, km, "complex (non-scalar) mapping keys are not supported");
                    break;
                }
                if (!key->quoted && !strcmp(key->text, "<<")) {
                    mmd_yaml_free(key);
                    st = err_at(L, km, "merge keys ('<<') are not supported; write the keys out "
                                       "or use an alias as a whole value");
                    break;
                }
                size_t slot = 0;
                if ((st = key_reserve(n, &slots, &cap_slots)) == MMD_OK) {
                    slot = key_slot(n, slots, cap_slots, key->text);
                    if (slots[slot]) {
                        const mmd_ynode *first = n->keys[slots[slot] - 1];
                        if (L->positions)
                            st = err_at(L, km, "duplicate key '%s' (first at line %d, column %d)",
                                        key->text, first->line, first->col);
                        else
                            st = err_at(L, km, "duplicate key '%s'", key->text);
                    }
                }
                if (st) { mmd_yaml_free(key); break; }
                slots[slot] = (uint32_t)n->n + 1; /* the index push_child gives the key */
                if ((st = next_event(L, &e))) { mmd_yaml_free(key); break; }
            }
            if ((st = build_node(L, &e, depth + 1, &val))) { mmd_yaml_free(key); break; }
            if ((st = push_child(n, &cap, key, val))) {
                mmd_yaml_free(key);
                mmd_yaml_free(val);
                break;
            }
        }
        free(slots);
        if (!st && anchor_name) st = register_anchor(L, anchor_name, n);
        free(anchor_name);
        *out = st ? NULL : n;
        if (st) mmd_yaml_free(n);
        return st; /* event already deleted */
    }
    default:
        st = err_at(L, m, "unexpected YAML event %d", (int)ev->type);
        break;
    }
    yaml_event_delete(ev);
    if (st) {
        mmd_yaml_free(n);
        return st;
    }
    *out = n;
    return MMD_OK;
}

static mmd_status load_stream(loader *L, mmd_ynode **root)
{
    yaml_event_t ev;
    mmd_status st;
    mmd_ynode *doc = NULL;
    int n_docs = 0;
    if ((st = next_event(L, &ev))) return st;
    yaml_event_delete(&ev); /* STREAM-START */
    for (;;) {
        if ((st = next_event(L, &ev))) break;
        if (ev.type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (ev.type != YAML_DOCUMENT_START_EVENT) {
            st = err_at(L, ev.start_mark, "expected a YAML document");
            yaml_event_delete(&ev);
            break;
        }
        if (++n_docs > 1) {
            st = err_at(L, ev.start_mark,
                        "a second YAML document ('---'); only one document is allowed per file");
            yaml_event_delete(&ev);
            break;
        }
        yaml_event_delete(&ev);
        if ((st = next_event(L, &ev))) break;
        if ((st = build_node(L, &ev, 0, &doc))) break;
        if ((st = next_event(L, &ev))) break;
        yaml_event_delete(&ev); /* DOCUMENT-END */
    }
    if (st) {
        mmd_yaml_free(doc);
        return st;
    }
    *root = doc;
    return MMD_OK;
}

mmd_status mmd_yaml_load_string(const char *text, size_t len, const char *origin, int positions,
                                mmd_ynode **root)
{
    *root = NULL;
    loader L;
    memset(&L, 0, sizeof L);
    L.origin = origin ? origin : "<string>";
    L.positions = positions;
    if (!yaml_parser_initialize(&L.parser))
        return mmd_error(MMD_ERR_NOMEM, "%s: cannot initialise the YAML parser", L.origin);
    yaml_parser_set_input_string(&L.parser, (const unsigned char *)text, len);
    mmd_status st = load_stream(&L, root);
    yaml_parser_delete(&L.parser);
    for (size_t i = 0; i < L.n_anchors; i++) free(L.anchors[i].name);
    free(L.anchors);
    return st;
}

mmd_status mmd_yaml_load_file(const char *path, mmd_ynode **root)
{
    *root = NULL;
    char *data;
    size_t size;
    mmd_status st = mmd_read_file(path, &data, &size);
    if (st) return st;
    st = mmd_yaml_load_string(data, size, path, 1, root);
    free(data);
    return st;
}

const mmd_ynode *mmd_yaml_get(const mmd_ynode *map, const char *key)
{
    if (!map || map->kind != MMD_YAML_MAP) return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (!strcmp(map->keys[i]->text, key)) return map->items[i];
    return NULL;
}

const char *mmd_yaml_where(const mmd_ynode *n, char *buf, size_t cap)
{
    if (!n)
        snprintf(buf, cap, "?");
    else if (n->line > 0)
        snprintf(buf, cap, "%s:%d:%d", n->origin, n->line, n->col);
    else
        snprintf(buf, cap, "%s", n->origin);
    return buf;
}
