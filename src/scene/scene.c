/* Scene container: loading dispatch, the builder the format loaders share, bbox, info
 * printing and ITU-R P.2040 name checks (see mmd_scene.h). */
#include "mmd_scene.h"
#include "mmd_physics.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The ITU-R P.2040 names are those of the physics module's table (one list). */
int mmd_itu_known(const char *name)
{
    if (!name) return 0;
    for (int i = 0; i < mmd_material_itu_count(); i++)
        if (strcmp(name, mmd_material_itu_name(i)) == 0) return 1;
    return 0;
}

const char *mmd_itu_names(void)
{
    static _Thread_local char list[512];
    size_t off = 0;
    list[0] = 0;
    for (int i = 0; i < mmd_material_itu_count() && off < sizeof list; i++)
        off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", i ? ", " : "", mmd_material_itu_name(i));
    return list;
}

void mmd_scene_file_stem(const char *path, char *out, size_t size)
{
    if (!size) return;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    if (n >= size) n = size - 1;
    memcpy(out, base, n);
    out[n] = 0;
}

/* ---------------------------------------------------------------------------------- */
/* Builder                                                                             */

mmd_status mmd_scene_builder_init(mmd_scene_builder *b, const char *path)
{
    memset(b, 0, sizeof *b);
    b->s = mmd_calloc(1, sizeof *b->s, "scene");
    if (!b->s) return MMD_ERR_NOMEM;
    b->s->path = strdup(path ? path : "");
    if (!b->s->path) {
        free(b->s);
        b->s = NULL;
        return mmd_error(MMD_ERR_NOMEM, "out of memory for scene path");
    }
    return MMD_OK;
}

void mmd_scene_builder_abort(mmd_scene_builder *b)
{
    mmd_scene_destroy(b->s);
    free(b->mat_slots);
    memset(b, 0, sizeof *b);
}

/* Grow *p (elem bytes each, capacity *cap) to hold `need` elements. */
static mmd_status grow(void **p, size_t *cap, size_t need, size_t elem, const char *what)
{
    if (need <= *cap) return MMD_OK;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) nc = nc > SIZE_MAX / 2 ? need : nc * 2;
    void *q = mmd_realloc(*p, nc, elem, what);
    if (!q) return MMD_ERR_NOMEM;
    *p = q;
    *cap = nc;
    return MMD_OK;
}

/* Slot of material name `name` in b->mat_slots: the one holding it, or the empty one
 * where it belongs. */
static size_t mat_slot(const mmd_scene_builder *b, const char *name)
{
    size_t mask = b->cap_mat_slots - 1;
    size_t h = (size_t)mmd_hash64(name, strlen(name), MMD_FNV_SEED) & mask;
    while (b->mat_slots[h] && strcmp(b->s->materials[b->mat_slots[h] - 1].name, name) != 0) h = (h + 1) & mask;
    return h;
}

mmd_status mmd_scene_builder_material(mmd_scene_builder *b, const mmd_scene_material *m,
                                      uint32_t *index)
{
    mmd_scene *s = b->s;
    if (b->cap_mat_slots < 2 * ((size_t)s->n_materials + 1)) {
        /* keep the table at most half full; rebuild it from the materials so far */
        size_t nc = b->cap_mat_slots ? 2 * b->cap_mat_slots : 64;
        uint32_t *slots = mmd_calloc(nc, sizeof *slots, "scene material index");
        if (!slots) return MMD_ERR_NOMEM;
        free(b->mat_slots);
        b->mat_slots = slots;
        b->cap_mat_slots = nc;
        for (uint32_t i = 0; i < s->n_materials; i++) b->mat_slots[mat_slot(b, s->materials[i].name)] = i + 1;
    }
    size_t slot = mat_slot(b, m->name);
    if (b->mat_slots[slot]) {
        *index = b->mat_slots[slot] - 1;
        return MMD_OK;
    }
    if (s->n_materials >= UINT32_MAX - 1) return mmd_error(MMD_ERR_NOMEM, "too many materials");
    mmd_status st = grow((void **)&s->materials, &b->cap_materials, (size_t)s->n_materials + 1,
                         sizeof *s->materials, "scene materials");
    if (st) return st;
    s->materials[s->n_materials] = *m;
    *index = s->n_materials++;
    b->mat_slots[slot] = *index + 1;
    return MMD_OK;
}

mmd_status mmd_scene_builder_vertices(mmd_scene_builder *b, const float *v, uint32_t n,
                                      const double *xf, uint32_t *base)
{
    mmd_scene *s = b->s;
    *base = s->n_vertices;
    if (n == 0) return MMD_OK; /* arrays may still be NULL */
    if ((uint64_t)s->n_vertices + n > UINT32_MAX)
        return mmd_error(MMD_ERR_NOMEM, "%s: scene has more than 2^32-1 vertices", s->path);
    mmd_status st = grow((void **)&s->vertices, &b->cap_vertices,
                         3 * ((size_t)s->n_vertices + n), sizeof(float), "scene vertices");
    if (st) return st;
    float *dst = s->vertices + 3 * (size_t)s->n_vertices;
    if (!xf) {
        memcpy(dst, v, 3 * (size_t)n * sizeof(float));
    } else {
        for (uint32_t i = 0; i < n; i++) {
            double p[3] = {v[3 * i], v[3 * i + 1], v[3 * i + 2]};
            for (int r = 0; r < 3; r++) {
                double q = xf[4 * r] * p[0] + xf[4 * r + 1] * p[1] + xf[4 * r + 2] * p[2] + xf[4 * r + 3];
                /* Mitsuba matrices may carry a projective row; honour it rather than
                 * silently ignore it. */
                double w = xf[12] * p[0] + xf[13] * p[1] + xf[14] * p[2] + xf[15];
                if (w != 1.0 && w != 0.0) q /= w;
                float f = (float)q;
                if (!isfinite(f))
                    return mmd_error(MMD_ERR_INVALID,
                                     "%s: transformed vertex %u is not finite (bad transform?)",
                                     s->path, i);
                dst[3 * i + r] = f;
            }
        }
    }
    *base = s->n_vertices;
    s->n_vertices += n;
    return MMD_OK;
}

mmd_status mmd_scene_builder_object(mmd_scene_builder *b, const char *name, uint32_t material,
                                    const uint32_t *indices, uint32_t n_tris, uint32_t base,
                                    const uint32_t *tri_material)
{
    mmd_scene *s = b->s;
    if ((uint64_t)s->n_triangles + n_tris > UINT32_MAX || s->n_objects == UINT32_MAX)
        return mmd_error(MMD_ERR_NOMEM, "%s: scene has more than 2^32-1 triangles", s->path);
    size_t nt = (size_t)s->n_triangles + n_tris;
    if (nt > b->cap_triangles) {
        /* The three per-triangle arrays share one capacity, counted in triangles. */
        size_t nc = b->cap_triangles ? b->cap_triangles : 64;
        while (nc < nt) nc *= 2;
        uint32_t *p = mmd_realloc(s->indices, nc, 3 * sizeof(uint32_t), "scene triangles");
        if (!p) return MMD_ERR_NOMEM;
        s->indices = p;
        if (!(p = mmd_realloc(s->tri_material, nc, sizeof(uint32_t), "triangle materials")))
            return MMD_ERR_NOMEM;
        s->tri_material = p;
        if (!(p = mmd_realloc(s->tri_object, nc, sizeof(uint32_t), "triangle objects")))
            return MMD_ERR_NOMEM;
        s->tri_object = p;
        b->cap_triangles = nc;
    }
    mmd_status st;
    st = grow((void **)&s->objects, &b->cap_objects, (size_t)s->n_objects + 1, sizeof *s->objects,
              "scene objects");
    if (st) return st;

    uint32_t first = s->n_triangles, obj = s->n_objects;
    for (size_t i = 0; i < 3 * (size_t)n_tris; i++) s->indices[3 * (size_t)first + i] = indices[i] + base;
    for (uint32_t t = 0; t < n_tris; t++) {
        s->tri_material[first + t] = tri_material ? tri_material[t] : material;
        s->tri_object[first + t] = obj;
    }
    mmd_scene_object *o = &s->objects[obj];
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", name);
    o->material = material;
    o->first_tri = first;
    o->n_tris = n_tris;
    s->n_objects++;
    s->n_triangles += n_tris;
    return MMD_OK;
}

mmd_status mmd_scene_builder_mesh(mmd_scene_builder *b, const mmd_ply_mesh *m,
                                  const char *object_name, uint32_t material, const double *xf)
{
    uint32_t base;
    mmd_status st = mmd_scene_builder_vertices(b, m->vertices, m->n_vertices, xf, &base);
    if (st) return st;
    return mmd_scene_builder_object(b, object_name, material, m->indices, m->n_triangles, base, NULL);
}

mmd_status mmd_scene_builder_finish(mmd_scene_builder *b, mmd_scene **out)
{
    mmd_scene *s = b->s;
    *out = NULL;
    if (s->n_triangles == 0) {
        mmd_status st = mmd_error(MMD_ERR_INVALID, "%s: scene has no triangles", s->path);
        mmd_scene_builder_abort(b);
        return st;
    }
    mmd_scene_update_bbox(s);
    *out = s;
    free(b->mat_slots);
    memset(b, 0, sizeof *b);
    return MMD_OK;
}

/* ---------------------------------------------------------------------------------- */
/* Public API                                                                          */

void mmd_scene_destroy(mmd_scene *s)
{
    if (!s) return;
    free(s->vertices);
    free(s->indices);
    free(s->tri_material);
    free(s->tri_object);
    free(s->objects);
    free(s->materials);
    free(s->path);
    free(s);
}

void mmd_scene_update_bbox(mmd_scene *s)
{
    float lo[3] = {INFINITY, INFINITY, INFINITY}, hi[3] = {-INFINITY, -INFINITY, -INFINITY};
    size_t n = 3 * (size_t)s->n_triangles;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = s->indices[i];
        if (v >= s->n_vertices) continue; /* loaders never produce this; stay safe anyway */
        const float *p = s->vertices + 3 * (size_t)v;
        for (int k = 0; k < 3; k++) {
            if (p[k] < lo[k]) lo[k] = p[k];
            if (p[k] > hi[k]) hi[k] = p[k];
        }
    }
    for (int k = 0; k < 3; k++) {
        if (lo[k] > hi[k]) lo[k] = hi[k] = 0.0f; /* no triangles */
        s->bbox_min[k] = lo[k];
        s->bbox_max[k] = hi[k];
    }
}

static int ext_is(const char *path, const char *ext)
{
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    return dot && strcasecmp(dot + 1, ext) == 0;
}

/* For files with an unexpected extension: guess from the first bytes. */
static int sniff(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char buf[64] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    if (n >= 4 && memcmp(buf, "ply", 3) == 0 && (buf[3] == '\n' || buf[3] == '\r')) return 'p';
    size_t i = 0;
    if (n >= 3 && (unsigned char)buf[0] == 0xEF && (unsigned char)buf[1] == 0xBB) i = 3;
    while (i < n && isspace((unsigned char)buf[i])) i++;
    if (i < n && buf[i] == '<') return 'x';
    return 0;
}

mmd_status mmd_scene_load(const char *path, mmd_scene **out)
{
    if (!out) return mmd_error(MMD_ERR_INTERNAL, "mmd_scene_load: out is NULL");
    *out = NULL;
    if (!path || !path[0]) return mmd_error(MMD_ERR_INVALID, "scene path is empty");
    if (ext_is(path, "ply")) return mmd_scene_load_ply(path, out);
    if (ext_is(path, "xml")) return mmd_scene_load_mitsuba(path, out);
    if (ext_is(path, "yaml") || ext_is(path, "yml")) return mmd_scene_load_yaml(path, out);
    FILE *f = fopen(path, "rb");
    if (!f) return mmd_error(MMD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    fclose(f);
    switch (sniff(path)) {
    case 'p': return mmd_scene_load_ply(path, out);
    case 'x': return mmd_scene_load_mitsuba(path, out);
    default: break;
    }
    return mmd_error(MMD_ERR_INVALID,
                     "%s: unknown scene format (expected a .ply, .xml, .yaml or .yml file)", path);
}

static const char *kind_name(mmd_material_kind k)
{
    switch (k) {
    case MMD_MAT_UNASSIGNED: return "unassigned";
    case MMD_MAT_ITU: return "itu";
    case MMD_MAT_RADIO: return "radio";
    }
    return "?";
}

void mmd_scene_print_info(const mmd_scene *s, FILE *f)
{
    if (!s || !f) return;
    fprintf(f, "scene: %s\n", s->path ? s->path : "(memory)");
    fprintf(f, "  triangles: %u  vertices: %u  objects: %u  materials: %u\n", s->n_triangles,
            s->n_vertices, s->n_objects, s->n_materials);
    fprintf(f, "  bbox: (%.3f, %.3f, %.3f) .. (%.3f, %.3f, %.3f) m  size %.3f x %.3f x %.3f m\n",
            s->bbox_min[0], s->bbox_min[1], s->bbox_min[2], s->bbox_max[0], s->bbox_max[1],
            s->bbox_max[2], s->bbox_max[0] - s->bbox_min[0], s->bbox_max[1] - s->bbox_min[1],
            s->bbox_max[2] - s->bbox_min[2]);

    uint32_t *count = calloc(s->n_materials ? s->n_materials : 1, sizeof *count);
    if (count)
        for (uint32_t t = 0; t < s->n_triangles; t++)
            if (s->tri_material[t] < s->n_materials) count[s->tri_material[t]]++;
    fprintf(f, "materials:\n  %4s  %-28s %-10s %-18s %11s %10s  %s\n", "#", "name", "kind",
            "itu name", "thickness_m", "triangles", "parameters");
    for (uint32_t i = 0; i < s->n_materials; i++) {
        const mmd_scene_material *m = &s->materials[i];
        char params[160] = "";
        if (m->kind == MMD_MAT_RADIO)
            snprintf(params, sizeof params, "eps_r %g  sigma %g S/m", m->eps_r, m->sigma_s_per_m);
        if (m->scattering != 0 || m->xpd != 0) {
            size_t l = strlen(params);
            snprintf(params + l, sizeof params - l, "%sS %g  K_x %g", l ? "  " : "", m->scattering,
                     m->xpd);
        }
        fprintf(f, "  %4u  %-28s %-10s %-18s %11.3f %10u%s%s\n", i, m->name, kind_name(m->kind),
                m->itu_name[0] ? m->itu_name : "-", m->thickness_m, count ? count[i] : 0,
                params[0] ? "  " : "", params);
    }
    free(count);

    const uint32_t max_rows = 50;
    fprintf(f, "objects:\n  %5s  %-48s %-28s %10s\n", "#", "name", "material", "triangles");
    for (uint32_t i = 0; i < s->n_objects && i < max_rows; i++) {
        const mmd_scene_object *o = &s->objects[i];
        fprintf(f, "  %5u  %-48s %-28s %10u\n", i, o->name,
                o->material < s->n_materials ? s->materials[o->material].name : "?", o->n_tris);
    }
    if (s->n_objects > max_rows) fprintf(f, "  ... %u more\n", s->n_objects - max_rows);
}
