/* model/materials.yaml: the learned per-object materials that `calibrate` writes and
 * `predict` reads (mmd_train.h). Numbers are written with round-trip precision so that a
 * prediction uses exactly the parameters the calibration ended with. */
#include "mmd_io.h"
#include "mmd_train.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MATERIALS_FORMAT "mmdiff-materials-1"

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int bad;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->bad) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->bad = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }
static void put_num(sbuf *b, const char *key, double v)
{
    char num[40], line[128];
    mmd_fmt_double(num, v);
    snprintf(line, sizeof line, "    %s: %s\n", key, num);
    puts_(b, line);
}

/* Write the buffer atomically to path and free it. */
static mmd_status finish(sbuf *b, const char *path)
{
    mmd_status st = b->bad ? mmd_error(MMD_ERR_NOMEM, "%s: out of memory", path) : mmd_write_file_atomic(path, b->p, b->n);
    free(b->p);
    return st;
}

/* `comment` (may be NULL) as '#' lines. */
static void put_comment(sbuf *b, const char *comment)
{
    for (const char *s = comment; s && *s;) {
        const char *e = strchr(s, '\n');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        puts_(b, "# ");
        put(b, s, n);
        puts_(b, "\n");
        s += n + (e ? 1 : 0);
    }
}

/* A YAML double-quoted scalar: object names may hold anything a file name can. */
static void put_quoted(sbuf *b, const char *s)
{
    puts_(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char e[8];
        if (*p == '"' || *p == '\\') {
            e[0] = '\\', e[1] = (char)*p, e[2] = 0;
        } else if (*p < 0x20 || *p == 0x7f) {
            snprintf(e, sizeof e, "\\x%02x", *p);
        } else {
            e[0] = (char)*p, e[1] = 0;
        }
        puts_(b, e);
    }
    puts_(b, "\"");
}

mmd_status mmd_materials_yaml_write(const char *path, const mmd_scene *scene, const mmd_material *mats,
                                    double frequency_hz, const char *comment)
{
    sbuf b = {0};
    put_comment(&b, comment);
    char num[40];
    mmd_fmt_double(num, frequency_hz);
    puts_(&b, "format: " MATERIALS_FORMAT "\nmodel: per_object\nfrequency_hz: ");
    puts_(&b, num);
    puts_(&b, "\nmaterials:  # per scene object; the shape of an experiment's scene.materials\n");
    for (uint32_t o = 0; o < scene->n_objects; o++) {
        const mmd_material *m = &mats[o];
        puts_(&b, "  ");
        put_quoted(&b, scene->objects[o].name);
        puts_(&b, ":\n");
        put_num(&b, "eps_r", m->eps_r);
        put_num(&b, "sigma_s_per_m", m->sigma_s_per_m);
        put_num(&b, "scattering", m->scattering);
        put_num(&b, "xpd", m->xpd);
        if (m->thickness_m > 0) put_num(&b, "thickness_m", m->thickness_m);
        else puts_(&b, "    thickness_m: null  # half-space\n");
        snprintf(num, sizeof num, "    alpha_r: %d\n", m->alpha_r);
        puts_(&b, num);
    }
    return finish(&b, path);
}

/* A plain number node, or 0. */
static int number(const mmd_ynode *n, double *v)
{
    if (!n || n->kind != MMD_YAML_SCALAR || n->quoted || n->is_null || !n->text || !n->text[0]) return 0;
    char *end;
    errno = 0;
    double x = strtod(n->text, &end);
    if (*end || errno == ERANGE || !isfinite(x)) return 0;
    *v = x;
    return 1;
}

static mmd_status bad(const mmd_ynode *n, const char *name, const char *key, const char *want)
{
    char where[1200];
    mmd_yaml_where(n, where, sizeof where);
    return mmd_error(MMD_ERR_INVALID, "%s: materials.%s.%s: expected %s, got '%s'", where, name, key, want,
                     n->kind == MMD_YAML_SCALAR && n->text ? n->text : "(a list or map)");
}

static mmd_status read_entry(const mmd_ynode *v, const char *name, mmd_material *m)
{
    char where[1200];
    if (v->kind != MMD_YAML_MAP) {
        mmd_yaml_where(v, where, sizeof where);
        return mmd_error(MMD_ERR_INVALID, "%s: materials.%s: expected a map of eps_r, sigma_s_per_m, scattering, "
                         "xpd, thickness_m, alpha_r",
                         where, name);
    }
    for (size_t i = 0; i < v->n; i++) {
        const char *k = v->keys[i]->text;
        const mmd_ynode *x = v->items[i];
        double d = 0;
        if (!strcmp(k, "eps_r")) {
            if (!number(x, &d) || d < 1 || d > 1e4) return bad(x, name, k, "a number in [1, 10000]");
            m->eps_r = d;
        } else if (!strcmp(k, "sigma_s_per_m")) {
            if (!number(x, &d) || d < 0 || d > 1e9) return bad(x, name, k, "a conductivity in [0, 1e9] S/m");
            m->sigma_s_per_m = d;
        } else if (!strcmp(k, "scattering") || !strcmp(k, "xpd")) {
            if (!number(x, &d) || d < 0 || d > 1) return bad(x, name, k, "a number in [0, 1]");
            if (k[0] == 's') m->scattering = d;
            else m->xpd = d;
        } else if (!strcmp(k, "thickness_m")) {
            if (x->kind == MMD_YAML_SCALAR && x->is_null) m->thickness_m = 0;
            else if (!number(x, &d) || !(d > 0) || d > 100)
                return bad(x, name, k, "a thickness in (0, 100] m, or null for a half-space");
            else m->thickness_m = d;
        } else if (!strcmp(k, "alpha_r")) {
            if (!number(x, &d) || d != floor(d) || d < 1 || d > MMD_ALPHA_R_MAX)
                return bad(x, name, k, "an integer in [1, 1000]");
            m->alpha_r = (int)d;
        } else {
            mmd_yaml_where(v->keys[i], where, sizeof where);
            return mmd_error(MMD_ERR_INVALID, "%s: materials.%s: unknown key '%s' (expected eps_r, sigma_s_per_m, "
                             "scattering, xpd, thickness_m, alpha_r)",
                             where, name, k);
        }
    }
    return MMD_OK;
}

mmd_status mmd_materials_yaml_read(const char *path, const mmd_scene *scene, mmd_material *mats, int *given,
                                   double *frequency_hz)
{
    if (given) memset(given, 0, scene->n_objects * sizeof *given);
    if (frequency_hz) *frequency_hz = 0;
    mmd_ynode *root = NULL;
    mmd_status st = mmd_yaml_load_file(path, &root);
    if (st != MMD_OK) return st;
    char where[1200];
    const mmd_ynode *n;
    if (!root || root->kind != MMD_YAML_MAP)
        st = mmd_error(MMD_ERR_PARSE, "%s: expected a YAML map with format, model, frequency_hz and materials", path);
    if (st == MMD_OK && (n = mmd_yaml_get(root, "format")) &&
        !(n->kind == MMD_YAML_SCALAR && n->text && !strcmp(n->text, MATERIALS_FORMAT)))
        st = mmd_error(MMD_ERR_INVALID, "%s: format: '%s' is not a format this version reads; expected %s",
                       mmd_yaml_where(n, where, sizeof where), n->text ? n->text : "(not text)", MATERIALS_FORMAT);
    if (st == MMD_OK && (n = mmd_yaml_get(root, "model")) &&
        !(n->kind == MMD_YAML_SCALAR && n->text && !strcmp(n->text, "per_object")))
        st = mmd_error(MMD_ERR_INVALID, "%s: model: '%s'; this file type holds the per_object model",
                       mmd_yaml_where(n, where, sizeof where), n->text ? n->text : "(not text)");
    if (st == MMD_OK && (n = mmd_yaml_get(root, "frequency_hz"))) {
        double f = 0;
        if (!number(n, &f) || !(f > 0))
            st = mmd_error(MMD_ERR_INVALID, "%s: frequency_hz: expected a frequency in Hz > 0",
                           mmd_yaml_where(n, where, sizeof where));
        else if (frequency_hz) *frequency_hz = f;
    }
    const mmd_ynode *ms = st == MMD_OK ? mmd_yaml_get(root, "materials") : NULL;
    if (st == MMD_OK && (!ms || ms->kind != MMD_YAML_MAP))
        st = mmd_error(MMD_ERR_INVALID, "%s: materials: %s", ms ? mmd_yaml_where(ms, where, sizeof where) : path,
                       ms ? "expected a map from object name to material" : "missing");
    for (size_t i = 0; st == MMD_OK && i < ms->n; i++) {
        const char *name = ms->keys[i]->text;
        uint32_t o = 0;
        while (o < scene->n_objects && strcmp(scene->objects[o].name, name) != 0) o++;
        if (o == scene->n_objects) {
            /* list the names the scene does know, as the experiment loader does */
            size_t cap = 64;
            for (uint32_t k = 0; k < scene->n_objects; k++) cap += strlen(scene->objects[k].name) + 2;
            char *known = malloc(cap);
            if (known) {
                known[0] = 0;
                for (uint32_t k = 0; k < scene->n_objects; k++) {
                    if (k) strcat(known, ", ");
                    strcat(known, scene->objects[k].name);
                }
            }
            st = mmd_error(MMD_ERR_INVALID, "%s: materials: '%s' is not an object of the scene (its objects: %s); "
                           "was the model learned on another scene?",
                           mmd_yaml_where(ms->keys[i], where, sizeof where), name, known ? known : "?");
            free(known);
            break;
        }
        mmd_material m = mats[o];
        st = read_entry(ms->items[i], name, &m);
        if (st == MMD_OK) {
            char what[300];
            snprintf(what, sizeof what, "%s: materials.%s", path, name);
            st = mmd_material_validate(&m, what);
        }
        if (st == MMD_OK) {
            mats[o] = m;
            if (given) given[o] = 1;
        }
    }
    mmd_yaml_free(root);
    return st;
}

/* ---- model/geometry.yaml: the pose of the object calibrate_geometry moved ---------- */

#define GEOMETRY_FORMAT "mmdiff-geometry-1"

static void put_vec(sbuf *b, const char *key, const double *v, int n)
{
    char num[40];
    puts_(b, key);
    puts_(b, ": [");
    for (int i = 0; i < n; i++) {
        mmd_fmt_double(num, v[i]);
        puts_(b, i ? ", " : "");
        puts_(b, num);
    }
    puts_(b, "]\n");
}

mmd_status mmd_geometry_yaml_write(const char *path, const char *object, const double p[5], const double centroid[3],
                                   const char *comment)
{
    sbuf b = {0};
    put_comment(&b, comment);
    puts_(&b, "format: " GEOMETRY_FORMAT "\nobject: ");
    put_quoted(&b, object);
    puts_(&b, "\n# x' = R_y(a_y) R_x(a_x) (x - centroid) + centroid + translation, for every vertex x of the object\n");
    put_vec(&b, "translation_m", p, 3);
    put_vec(&b, "rotation_rad", p + 3, 2);
    put_vec(&b, "centroid_m", centroid, 3);
    char line[160];
    snprintf(line, sizeof line, "# rotation about x, y: %.4f, %.4f deg\n", p[3] * 180.0 / M_PI, p[4] * 180.0 / M_PI);
    puts_(&b, line);
    return finish(&b, path);
}

static mmd_status read_vec(const char *path, const mmd_ynode *root, const char *key, double *v, int n, double lim)
{
    char where[1200];
    const mmd_ynode *x = mmd_yaml_get(root, key);
    if (!x) return mmd_error(MMD_ERR_INVALID, "%s: %s: missing (expected a list of %d numbers)", path, key, n);
    int ok = x->kind == MMD_YAML_SEQ && x->n == (size_t)n;
    for (int i = 0; ok && i < n; i++) ok = number(x->items[i], &v[i]) && fabs(v[i]) <= lim;
    if (!ok)
        return mmd_error(MMD_ERR_INVALID, "%s: %s: expected a list of %d numbers of magnitude <= %g",
                         mmd_yaml_where(x, where, sizeof where), key, n, lim);
    return MMD_OK;
}

mmd_status mmd_geometry_yaml_read(const char *path, char *object, size_t cap, double p[5], double centroid[3])
{
    mmd_ynode *root = NULL;
    mmd_status st = mmd_yaml_load_file(path, &root);
    if (st != MMD_OK) return st;
    char where[1200];
    const mmd_ynode *n;
    if (!root || root->kind != MMD_YAML_MAP)
        st = mmd_error(MMD_ERR_PARSE, "%s: expected a YAML map with format, object, translation_m, rotation_rad and "
                       "centroid_m",
                       path);
    if (st == MMD_OK && (!(n = mmd_yaml_get(root, "format")) ||
                         !(n->kind == MMD_YAML_SCALAR && n->text && !strcmp(n->text, GEOMETRY_FORMAT))))
        st = mmd_error(MMD_ERR_INVALID, "%s: format: expected %s", n ? mmd_yaml_where(n, where, sizeof where) : path,
                       GEOMETRY_FORMAT);
    if (st == MMD_OK) {
        n = mmd_yaml_get(root, "object");
        if (!n || n->kind != MMD_YAML_SCALAR || !n->text || !n->text[0] || strlen(n->text) >= cap)
            st = mmd_error(MMD_ERR_INVALID, "%s: object: expected the name of a scene object",
                           n ? mmd_yaml_where(n, where, sizeof where) : path);
        else
            strcpy(object, n->text);
    }
    /* 1 km and 2 pi bound what a calibration of one object in a room can mean */
    if (st == MMD_OK) st = read_vec(path, root, "translation_m", p, 3, 1e3);
    if (st == MMD_OK) st = read_vec(path, root, "rotation_rad", p + 3, 2, 2 * M_PI);
    if (st == MMD_OK) st = read_vec(path, root, "centroid_m", centroid, 3, 1e7);
    mmd_yaml_free(root);
    return st;
}
