/* YAML scene list (shared/scenes/indoor/<room>/scene.yaml): `shapes:` entries with a PLY
 * `file` and an ITU-R P.2040 `material` name (or null). All other keys are metadata and
 * ignored here. Parsed with libyaml's document API; its marks are 0-based, messages
 * print them 1-based.
 *
 * Two optional forms let mmd_scene_write round-trip any scene: an entry's `name` (the
 * object name; default the file stem) and a `material` mapping
 * `{name, itu | eps_r + sigma_s_per_m, thickness_m, scattering, xpd}` for materials that
 * are not a bare ITU name (a Mitsuba bsdf id, explicit parameters, an unassigned material
 * with its own name). */
#include "mmd_scene.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef struct yctx {
    const char *path;
    yaml_document_t *doc;
    mmd_scene_builder *b;
} yctx;

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static mmd_status node_error(const yctx *c, mmd_status st, const yaml_node_t *n, const char *fmt, ...)
{
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mmd_error(st, "%s:%zu:%zu: %s", c->path, n->start_mark.line + 1, n->start_mark.column + 1,
                     msg);
}

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* YAML 1.1 null: a plain ~, null, Null, NULL or nothing (a quoted "null" is a string). */
static int is_null(const yaml_node_t *n)
{
    if (!n || n->type != YAML_SCALAR_NODE) return 0;
    if (n->tag && !strcmp((const char *)n->tag, YAML_NULL_TAG)) return 1;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *v = (const char *)n->data.scalar.value;
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const char *k = scalar(yaml_document_get_node(doc, p->key));
        if (k && !strcmp(k, key)) return yaml_document_get_node(doc, p->value);
    }
    return NULL;
}

/* A finite number in [lo, hi] from a plain scalar. */
static mmd_status number(const yctx *c, yaml_node_t *n, const char *key, double lo, double hi, double *out)
{
    const char *v = scalar(n);
    char *end = NULL;
    double x = v && !is_null(n) ? strtod(v, &end) : NAN;
    /* a null value (`eps_r:` with nothing after it) leaves end NULL: test it before *end */
    if (!v || !end || end == v || *end || !isfinite(x) || x < lo || x > hi)
        return node_error(c, MMD_ERR_INVALID, n, "material '%s': expected a number in [%g, %g], got '%.60s'", key, lo,
                          hi, v ? v : "(not a scalar)");
    *out = x;
    return MMD_OK;
}

/* `material: {name, itu | eps_r + sigma_s_per_m, thickness_m, scattering, xpd}`; neither
 * itu nor eps_r = an unassigned material with that name. */
static mmd_status material_map(const yctx *c, yaml_node_t *mn, mmd_scene_material *m)
{
    static const char *keys[] = {"name", "itu", "eps_r", "sigma_s_per_m", "thickness_m", "scattering", "xpd"};
    int have_radio = 0;
    for (yaml_node_pair_t *p = mn->data.mapping.pairs.start; p < mn->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(c->doc, p->key), *vn = yaml_document_get_node(c->doc, p->value);
        const char *k = scalar(kn), *v = scalar(vn);
        size_t ki = 0;
        while (k && ki < sizeof keys / sizeof *keys && strcmp(k, keys[ki])) ki++;
        if (!k || ki == sizeof keys / sizeof *keys)
            return node_error(c, MMD_ERR_PARSE, kn, "unknown material key '%.60s' (expected name, itu, eps_r, "
                              "sigma_s_per_m, thickness_m, scattering, xpd)", k ? k : "?");
        mmd_status st = MMD_OK;
        switch (ki) {
        case 0:
            if (!v || is_null(vn) || !v[0])
                return node_error(c, MMD_ERR_PARSE, vn, "material 'name' must be a non-empty string");
            snprintf(m->name, sizeof m->name, "%s", v);
            break;
        case 1:
            if (!v || !mmd_itu_known(v))
                return node_error(c, MMD_ERR_INVALID, vn, "unknown material '%.100s' (expected one of: %s)",
                                  v ? v : "?", mmd_itu_names());
            snprintf(m->itu_name, sizeof m->itu_name, "%s", v);
            m->kind = MMD_MAT_ITU;
            break;
        case 2:
            st = number(c, vn, "eps_r", 0, 1e9, &m->eps_r);
            have_radio = 1;
            break;
        case 3:
            st = number(c, vn, "sigma_s_per_m", 0, 1e12, &m->sigma_s_per_m);
            have_radio = 1;
            break;
        case 4: st = number(c, vn, "thickness_m", 0, 1e6, &m->thickness_m); break;
        case 5: st = number(c, vn, "scattering", 0, 1, &m->scattering); break;
        default: st = number(c, vn, "xpd", 0, 1, &m->xpd); break;
        }
        if (st) return st;
    }
    if (have_radio && m->kind == MMD_MAT_ITU)
        return node_error(c, MMD_ERR_INVALID, mn, "material: give either 'itu' or 'eps_r'/'sigma_s_per_m', not both");
    if (have_radio) m->kind = MMD_MAT_RADIO;
    if (!m->name[0]) {
        if (m->kind == MMD_MAT_RADIO)
            return node_error(c, MMD_ERR_PARSE, mn, "material with eps_r/sigma_s_per_m needs a 'name'");
        snprintf(m->name, sizeof m->name, "%s", m->kind == MMD_MAT_ITU ? m->itu_name : "unassigned");
    }
    return MMD_OK;
}

static mmd_status load_entry(yctx *c, yaml_node_t *e, size_t idx)
{
    if (e->type != YAML_MAPPING_NODE)
        return node_error(c, MMD_ERR_PARSE, e, "shapes[%zu] is not a mapping with 'file' and 'material'",
                          idx);
    yaml_node_t *fn = map_get(c->doc, e, "file"), *mn = map_get(c->doc, e, "material");
    const char *file = scalar(fn);
    if (!fn)
        return node_error(c, MMD_ERR_PARSE, e, "shapes[%zu] has no 'file'", idx);
    if (!file || is_null(fn) || !file[0])
        return node_error(c, MMD_ERR_PARSE, fn, "'file' must be a PLY file name");

    mmd_scene_material m;
    memset(&m, 0, sizeof m);
    m.thickness_m = 0.1;
    m.eps_r = 1.0;
    yaml_node_t *nn = map_get(c->doc, e, "name");
    const char *obj_name = scalar(nn);
    if (nn && (!obj_name || is_null(nn)))
        return node_error(c, MMD_ERR_PARSE, nn, "'name' must be an object name (a string)");

    mmd_status st;
    if (mn && mn->type == YAML_MAPPING_NODE) {
        if ((st = material_map(c, mn, &m))) return st;
    } else if (!mn || is_null(mn)) {
        /* No mapping known: one shared material the experiment file must assign. */
        snprintf(m.name, sizeof m.name, "unassigned");
        m.kind = MMD_MAT_UNASSIGNED;
    } else {
        const char *name = scalar(mn);
        if (!name)
            return node_error(c, MMD_ERR_PARSE, mn, "'material' must be an ITU material name, a mapping or null");
        if (!mmd_itu_known(name)) {
            return node_error(c, MMD_ERR_INVALID, mn, "unknown material '%.100s' (expected one of: %s, or null)",
                              name, mmd_itu_names());
        }
        snprintf(m.name, sizeof m.name, "%s", name);
        snprintf(m.itu_name, sizeof m.itu_name, "%s", name);
        m.kind = MMD_MAT_ITU;
    }
    uint32_t mi;
    st = mmd_scene_builder_material(c->b, &m, &mi);
    if (st) return st;

    char *path = mmd_path_join(c->path, file, 1);
    if (!path) return mmd_error(MMD_ERR_NOMEM, "out of memory joining paths");
    mmd_ply_mesh mesh;
    st = mmd_ply_read(path, &mesh);
    if (!st) {
        char stem[MMD_NAME_MAX];
        mmd_scene_file_stem(path, stem, sizeof stem);
        st = mmd_scene_builder_mesh(c->b, &mesh, obj_name ? obj_name : stem, mi, NULL);
        mmd_ply_mesh_free(&mesh);
    }
    free(path);
    if (st) {
        char inner[2048];
        snprintf(inner, sizeof inner, "%s", mmd_last_error());
        mmd_error(st, "%s:%zu:%zu: shapes[%zu] '%s': %s", c->path, fn->start_mark.line + 1,
                  fn->start_mark.column + 1, idx, file, inner);
    }
    return st;
}

static mmd_status load_doc(yctx *c)
{
    yaml_node_t *root = yaml_document_get_root_node(c->doc);
    if (!root) return mmd_error(MMD_ERR_PARSE, "%s: empty YAML document (expected a 'shapes:' list)", c->path);
    if (root->type != YAML_MAPPING_NODE)
        return node_error(c, MMD_ERR_PARSE, root, "expected a mapping with a 'shapes:' list at the top");
    yaml_node_t *shapes = map_get(c->doc, root, "shapes");
    if (!shapes)
        return mmd_error(MMD_ERR_PARSE, "%s: no 'shapes:' list (expected shapes: [{file: .., material: ..}, ...])",
                         c->path);
    if (shapes->type != YAML_SEQUENCE_NODE)
        return node_error(c, MMD_ERR_PARSE, shapes, "'shapes' must be a list");
    size_t idx = 0;
    for (yaml_node_item_t *it = shapes->data.sequence.items.start; it < shapes->data.sequence.items.top;
         it++, idx++) {
        mmd_status st = load_entry(c, yaml_document_get_node(c->doc, *it), idx);
        if (st) return st;
    }
    return MMD_OK;
}

mmd_status mmd_scene_load_yaml(const char *path, mmd_scene **out)
{
    *out = NULL;
    char *src = NULL;
    size_t size = 0;
    mmd_status st = mmd_read_file(path, &src, &size);
    if (st) return st;
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        free(src);
        return mmd_error(MMD_ERR_NOMEM, "%s: cannot initialise the YAML parser", path);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)src, size);
    yaml_document_t doc;
    if (!yaml_parser_load(&parser, &doc)) {
        const char *problem = parser.problem ? parser.problem : "malformed YAML";
        if (parser.error == YAML_READER_ERROR)
            st = mmd_error(MMD_ERR_PARSE, "%s: byte %zu: %s", path, parser.problem_offset, problem);
        else if (parser.context)
            st = mmd_error(MMD_ERR_PARSE, "%s:%zu:%zu: %s %s (started at line %zu)", path,
                           parser.problem_mark.line + 1, parser.problem_mark.column + 1, problem,
                           parser.context, parser.context_mark.line + 1);
        else
            st = mmd_error(MMD_ERR_PARSE, "%s:%zu:%zu: %s", path, parser.problem_mark.line + 1,
                           parser.problem_mark.column + 1, problem);
        if (parser.error == YAML_MEMORY_ERROR) st = MMD_ERR_NOMEM;
        yaml_parser_delete(&parser);
        free(src);
        return st;
    }
    mmd_scene_builder b;
    st = mmd_scene_builder_init(&b, path);
    if (!st) {
        yctx c = {path, &doc, &b};
        st = load_doc(&c);
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    free(src);
    if (st) {
        mmd_scene_builder_abort(&b);
        return st;
    }
    return mmd_scene_builder_finish(&b, out);
}
