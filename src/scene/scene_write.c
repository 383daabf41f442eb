/* Scene writers (see mmd_scene.h): one binary PLY of the whole scene, and a scene YAML with
 * one PLY per object that mmd_scene_load reads back to the same triangles, objects and
 * materials. Every file is written to "<path>.tmp.<pid>" and renamed into place, like
 * mmd_write_file_atomic, but streamed so a 50M-triangle scene needs no second copy. */
#include "mmd_scene.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------- */
/* Atomic streamed file                                                                */

typedef struct afile {
    FILE *f;
    char *tmp;
    const char *path;
    int err; /* first errno, 0 = fine */
} afile;

static mmd_status af_open(afile *a, const char *path)
{
    memset(a, 0, sizeof *a);
    a->path = path;
    size_t len = strlen(path) + 32;
    a->tmp = mmd_malloc(len, 1, "temp path");
    if (!a->tmp) return MMD_ERR_NOMEM;
    snprintf(a->tmp, len, "%s.tmp.%ld", path, (long)getpid());
    a->f = fopen(a->tmp, "wb");
    if (!a->f) {
        mmd_status st = mmd_error(MMD_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        free(a->tmp);
        a->tmp = NULL;
        return st;
    }
    return MMD_OK;
}

static void af_write(afile *a, const void *p, size_t n)
{
    if (!a->err && n && fwrite(p, 1, n, a->f) != n) a->err = errno ? errno : EIO;
}

static void af_abort(afile *a)
{
    if (a->f) fclose(a->f);
    if (a->tmp) remove(a->tmp);
    free(a->tmp);
    memset(a, 0, sizeof *a);
}

static mmd_status af_commit(afile *a)
{
    if (fflush(a->f) != 0 && !a->err) a->err = errno ? errno : EIO;
    if (fclose(a->f) != 0 && !a->err) a->err = errno ? errno : EIO;
    a->f = NULL;
    mmd_status st = MMD_OK;
    if (a->err)
        st = mmd_error(MMD_ERR_IO, "%s: write failed: %s", a->path, strerror(a->err));
    else if (rename(a->tmp, a->path) != 0)
        st = mmd_error(MMD_ERR_IO, "%s: cannot rename temp file into place: %s", a->path, strerror(errno));
    af_abort(a);
    return st;
}

/* ---------------------------------------------------------------------------------- */
/* Binary little-endian PLY                                                            */

/* Output buffer flushed to the file in 1 MiB pieces. */
typedef struct obuf {
    afile *a;
    unsigned char d[1 << 20];
    size_t n;
} obuf;

static int host_le(void)
{
    uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

static void ob_put(obuf *b, const void *p, size_t n)
{
    if (b->n + n > sizeof b->d) {
        af_write(b->a, b->d, b->n);
        b->n = 0;
    }
    unsigned char *d = b->d + b->n;
    memcpy(d, p, n);
    if (!host_le())
        for (size_t i = 0; i < n / 2; i++) {
            unsigned char x = d[i];
            d[i] = d[n - 1 - i];
            d[n - 1 - i] = x;
        }
    b->n += n;
}

static void ob_flush(obuf *b)
{
    af_write(b->a, b->d, b->n);
    b->n = 0;
}

/* Write a PLY of the given vertices and triangles (indices into `verts`, or through `map`
 * when it is not NULL); with ids, each face also gets object_id and material_index. */
static mmd_status write_ply(const char *path, const float *v, const uint32_t *vlist, uint32_t nv, const uint32_t *idx,
                            const uint32_t *tlist, uint32_t nt, const uint32_t *map, const uint32_t *obj,
                            const uint32_t *mat)
{
    if (nv > INT32_MAX)
        return mmd_error(MMD_ERR_INVALID, "%s: %u vertices do not fit PLY 'int' indices", path, nv);
    obuf *b = mmd_malloc(1, sizeof *b, "PLY write buffer");
    if (!b) return MMD_ERR_NOMEM;
    afile a;
    mmd_status st = af_open(&a, path);
    if (st) {
        free(b);
        return st;
    }
    b->a = &a;
    b->n = 0;
    char hdr[512];
    int n = snprintf(hdr, sizeof hdr,
                     "ply\nformat binary_little_endian 1.0\ncomment written by mmdiff\n"
                     "element vertex %u\nproperty float x\nproperty float y\nproperty float z\n"
                     "element face %u\nproperty list uchar int vertex_indices\n%s"
                     "end_header\n",
                     nv, nt, obj ? "property int object_id\nproperty int material_index\n" : "");
    af_write(&a, hdr, (size_t)n);
    for (uint32_t i = 0; i < nv; i++) {
        const float *p = v + 3 * (size_t)(vlist ? vlist[i] : i);
        for (int k = 0; k < 3; k++) ob_put(b, &p[k], 4);
    }
    for (uint32_t i = 0; i < nt; i++) {
        uint32_t t = tlist ? tlist[i] : i;
        unsigned char three = 3;
        ob_put(b, &three, 1);
        for (int k = 0; k < 3; k++) {
            uint32_t x = idx[3 * (size_t)t + k];
            int32_t q = (int32_t)(map ? map[x] : x);
            ob_put(b, &q, 4);
        }
        if (obj) {
            int32_t o = (int32_t)obj[t], m = (int32_t)mat[t];
            ob_put(b, &o, 4);
            ob_put(b, &m, 4);
        }
    }
    ob_flush(b);
    free(b);
    return af_commit(&a);
}

mmd_status mmd_scene_write_ply(const mmd_scene *s, const char *path)
{
    if (!s || !path || !path[0]) return mmd_error(MMD_ERR_INVALID, "mmd_scene_write_ply: no scene or path");
    if (s->n_objects > INT32_MAX || s->n_materials > INT32_MAX)
        return mmd_error(MMD_ERR_INVALID, "%s: too many objects or materials for PLY 'int' ids", path);
    return write_ply(path, s->vertices, NULL, s->n_vertices, s->indices, NULL, s->n_triangles, NULL, s->tri_object,
                     s->tri_material);
}

/* ---------------------------------------------------------------------------------- */
/* Scene YAML + one PLY per object                                                     */

/* Growable text. */
typedef struct text {
    char *d;
    size_t n, cap;
    int oom;
} text;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void tprintf(text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = t->cap - t->n;
        int k = vsnprintf(t->d ? t->d + t->n : NULL, t->d ? room : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            t->oom = 1;
            return;
        }
        if (t->d && (size_t)k < room) {
            t->n += (size_t)k;
            return;
        }
        size_t nc = t->cap ? 2 * t->cap : 4096;
        while (nc < t->n + (size_t)k + 1) nc *= 2;
        char *q = realloc(t->d, nc);
        if (!q) {
            t->oom = 1;
            return;
        }
        t->d = q;
        t->cap = nc;
    }
}

/* A YAML double-quoted string (any bytes survive: escapes for quotes, backslashes and
 * control characters). */
static void tquote(text *t, const char *s)
{
    tprintf(t, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') tprintf(t, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f) tprintf(t, "\\x%02x", *p);
        else tprintf(t, "%c", *p);
    }
    tprintf(t, "\"");
}

/* The file-safe form of an object name: [A-Za-z0-9._-], no leading dot, at most 100
 * characters (MMD_NAME_MAX leaves room for a suffix). */
static void safe_name(const char *name, char *out, size_t size)
{
    size_t n = 0;
    for (const char *p = name; *p && n + 1 < size && n < 100; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                 c == '-' || (c == '.' && n > 0);
        out[n++] = ok ? c : '_';
    }
    if (n == 0) n = (size_t)snprintf(out, size, "object");
    out[n] = 0;
}

/* Case-insensitive set of file names taken so far (so the files stay distinct on
 * case-insensitive file systems too). */
typedef struct name_set {
    char **slot;
    size_t n, cap;
} name_set;

static uint64_t name_hash(const char *s)
{
    uint64_t h = MMD_FNV_SEED;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 'A' && c <= 'Z') c = (unsigned char)(c - 'A' + 'a');
        h = (h ^ c) * 0x100000001b3ULL;
    }
    return h;
}

/* 1 if added, 0 if already there, -1 out of memory. */
static int name_add(name_set *ns, const char *s)
{
    if (2 * (ns->n + 1) > ns->cap) {
        size_t nc = ns->cap ? 2 * ns->cap : 256;
        char **q = calloc(nc, sizeof *q);
        if (!q) return -1;
        for (size_t i = 0; i < ns->cap; i++) {
            if (!ns->slot[i]) continue;
            size_t j = (size_t)name_hash(ns->slot[i]) & (nc - 1);
            while (q[j]) j = (j + 1) & (nc - 1);
            q[j] = ns->slot[i];
        }
        free(ns->slot);
        ns->slot = q;
        ns->cap = nc;
    }
    size_t j = (size_t)name_hash(s) & (ns->cap - 1);
    for (; ns->slot[j]; j = (j + 1) & (ns->cap - 1))
        if (!strcasecmp(ns->slot[j], s)) return 0;
    if (!(ns->slot[j] = strdup(s))) return -1;
    ns->n++;
    return 1;
}

static void name_set_free(name_set *ns)
{
    for (size_t i = 0; i < ns->cap; i++) free(ns->slot[i]);
    free(ns->slot);
    memset(ns, 0, sizeof *ns);
}

/* The shortest decimal that reads back as the same double (0.1, not 0.10000000000000001). */
static void tnum(text *t, double x)
{
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) break;
    }
    tprintf(t, "%s", buf);
}

/* The material as a scene-YAML value: the short forms where they load back identically,
 * else the mapping. */
static void material_yaml(text *t, const mmd_scene_material *m)
{
    int plain = m->thickness_m == 0.1 && m->scattering == 0 && m->xpd == 0 && m->eps_r == 1.0 && m->sigma_s_per_m == 0;
    if (plain && m->kind == MMD_MAT_UNASSIGNED && !strcmp(m->name, "unassigned")) {
        tprintf(t, "null");
        return;
    }
    if (plain && m->kind == MMD_MAT_ITU && !strcmp(m->name, m->itu_name)) {
        tquote(t, m->itu_name);
        return;
    }
    tprintf(t, "{name: ");
    tquote(t, m->name);
    if (m->kind == MMD_MAT_ITU) {
        tprintf(t, ", itu: ");
        tquote(t, m->itu_name);
    } else if (m->kind == MMD_MAT_RADIO) {
        tprintf(t, ", eps_r: ");
        tnum(t, m->eps_r);
        tprintf(t, ", sigma_s_per_m: ");
        tnum(t, m->sigma_s_per_m);
    }
    tprintf(t, ", thickness_m: ");
    tnum(t, m->thickness_m);
    tprintf(t, ", scattering: ");
    tnum(t, m->scattering);
    tprintf(t, ", xpd: ");
    tnum(t, m->xpd);
    tprintf(t, "}");
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Files written by this call, removed again if a later step fails. */
typedef struct written {
    char **path;
    size_t n, cap;
} written;

static int written_add(written *w, const char *p)
{
    if (w->n == w->cap) {
        size_t nc = w->cap ? 2 * w->cap : 64;
        char **q = realloc(w->path, nc * sizeof *q);
        if (!q) return -1;
        w->path = q;
        w->cap = nc;
    }
    if (!(w->path[w->n] = strdup(p))) return -1;
    w->n++;
    return 0;
}

mmd_status mmd_scene_write(const mmd_scene *s, const char *out_yaml_path)
{
    if (!s || !out_yaml_path || !out_yaml_path[0])
        return mmd_error(MMD_ERR_INVALID, "mmd_scene_write: no scene or path");
    const char *path = out_yaml_path;
    const char *slash = strrchr(path, '/'), *dot = strrchr(slash ? slash + 1 : path, '.');
    if (!dot || (strcasecmp(dot, ".yaml") && strcasecmp(dot, ".yml")))
        return mmd_error(MMD_ERR_INVALID, "%s: a scene is written as a .yaml (or .yml) file", path);
    for (uint32_t t = 0; t < s->n_triangles; t++)
        if (s->tri_object[t] >= s->n_objects || s->tri_material[t] >= s->n_materials)
            return mmd_error(MMD_ERR_INVALID, "%s: triangle %u has an object or material out of range", path, t);
    for (uint32_t o = 0; o < s->n_objects; o++)
        if ((uint64_t)s->objects[o].first_tri + s->objects[o].n_tris > s->n_triangles ||
            s->objects[o].material >= s->n_materials)
            return mmd_error(MMD_ERR_INVALID, "%s: object %u has triangles or a material out of range", path, o);

    char stem[MMD_NAME_MAX], dirname[MMD_NAME_MAX + 16];
    mmd_scene_file_stem(path, stem, sizeof stem);
    snprintf(dirname, sizeof dirname, "%s_meshes", stem);
    char *dir = mmd_path_join(path, dirname, 1);
    if (!dir) return mmd_error(MMD_ERR_NOMEM, "out of memory joining paths");
    struct stat sb;
    int had_dir = stat(dir, &sb) == 0;
    mmd_status st = mmd_mkdirs(dir);
    if (st) {
        free(dir);
        return st;
    }

    text y = {0};
    name_set names = {0};
    written done = {0};
    uint32_t *map = NULL, *vl = NULL, *tl = NULL, *mats = NULL;
    size_t vcap = 0, tcap = 0;
    map = mmd_malloc(s->n_vertices ? s->n_vertices : 1, sizeof *map, "vertex map");
    if (!map) { st = MMD_ERR_NOMEM; goto fail; }
    for (uint32_t v = 0; v < s->n_vertices; v++) map[v] = UINT32_MAX;

    tprintf(&y, "# Written by mmdiff (mmd_scene_write) from ");
    tquote(&y, s->path ? s->path : "(memory)");
    tprintf(&y, "\nname: ");
    tquote(&y, stem);
    tprintf(&y, "\nunits: \"m\"\nup_axis: \"z\"\ntriangles: %u\nbbox_min: [%.9g, %.9g, %.9g]\n"
                "bbox_max: [%.9g, %.9g, %.9g]\n# material: ITU name, null (unassigned), or "
                "{name, itu | eps_r + sigma_s_per_m, thickness_m, scattering, xpd}\nshapes:\n",
            s->n_triangles, s->bbox_min[0], s->bbox_min[1], s->bbox_min[2], s->bbox_max[0], s->bbox_max[1],
            s->bbox_max[2]);

    for (uint32_t o = 0; o < s->n_objects; o++) {
        const mmd_scene_object *ob = &s->objects[o];
        /* The materials this object's triangles use, in order of first use; normally one. */
        uint32_t nm = 0;
        free(mats);
        mats = mmd_malloc(ob->n_tris ? ob->n_tris : 1, sizeof *mats, "object materials");
        if (!mats) { st = MMD_ERR_NOMEM; goto fail; }
        for (uint32_t t = ob->first_tri; t < ob->first_tri + ob->n_tris; t++) {
            uint32_t m = s->tri_material[t], k = 0;
            while (k < nm && mats[k] != m) k++;
            if (k == nm) mats[nm++] = m;
        }
        if (nm == 0) mats[nm++] = ob->material; /* an emptied object keeps its entry */
        if (nm > 1)
            mmd_info("%s: object '%s' uses %u materials: written as one shape per material", path, ob->name, nm);
        for (uint32_t k = 0; k < nm; k++) {
            uint32_t mat = mats[k];
            /* This part's triangles and, sorted, the vertices they use (the vertex order
             * of the scene is kept, so a loaded YAML scene comes back array for array). */
            uint32_t ntl = 0, nvl = 0;
            if (ob->n_tris > tcap) {
                free(tl);
                tcap = ob->n_tris;
                if (!(tl = mmd_malloc(tcap, sizeof *tl, "object triangles"))) { st = MMD_ERR_NOMEM; goto fail; }
            }
            for (uint32_t t = ob->first_tri; t < ob->first_tri + ob->n_tris; t++) {
                if (s->tri_material[t] != mat) continue;
                tl[ntl++] = t;
                for (int c = 0; c < 3; c++) {
                    uint32_t v = s->indices[3 * (size_t)t + c];
                    if (map[v] != UINT32_MAX) continue;
                    if (nvl == vcap) {
                        vcap = vcap ? 2 * vcap : 1024;
                        uint32_t *q = mmd_realloc(vl, vcap, sizeof *q, "object vertices");
                        if (!q) { st = MMD_ERR_NOMEM; goto fail; }
                        vl = q;
                    }
                    map[v] = 0;
                    vl[nvl++] = v;
                }
            }
            if (nvl) qsort(vl, nvl, sizeof *vl, cmp_u32);
            for (uint32_t i = 0; i < nvl; i++) map[vl[i]] = i;

            char base[MMD_NAME_MAX + 32], file[2 * MMD_NAME_MAX + 64];
            if (nm > 1) {
                char both[2 * MMD_NAME_MAX + 4];
                snprintf(both, sizeof both, "%s__%s", ob->name, s->materials[mat].name);
                safe_name(both, base, sizeof base);
            } else {
                safe_name(ob->name, base, sizeof base);
            }
            snprintf(file, sizeof file, "%s.ply", base);
            int r;
            for (unsigned sfx = 2; (r = name_add(&names, file)) == 0; sfx++)
                snprintf(file, sizeof file, "%s_%u.ply", base, sfx);
            if (r < 0) { st = mmd_error(MMD_ERR_NOMEM, "out of memory for file names"); goto fail; }
            char *fp = mmd_path_join(dir, file, 0);
            if (!fp) { st = mmd_error(MMD_ERR_NOMEM, "out of memory joining paths"); goto fail; }
            st = write_ply(fp, s->vertices, vl, nvl, s->indices, tl, ntl, map, NULL, NULL);
            if (!st && written_add(&done, fp)) st = mmd_error(MMD_ERR_NOMEM, "out of memory");
            free(fp);
            for (uint32_t i = 0; i < nvl; i++) map[vl[i]] = UINT32_MAX;
            if (st) goto fail;

            char fstem[MMD_NAME_MAX + 40];
            mmd_scene_file_stem(file, fstem, sizeof fstem);
            tprintf(&y, "  - file: ");
            char rel[3 * MMD_NAME_MAX + 96];
            snprintf(rel, sizeof rel, "%s/%s", dirname, file);
            tquote(&y, rel);
            if (strcmp(fstem, ob->name)) {
                tprintf(&y, "\n    name: ");
                tquote(&y, ob->name);
            }
            tprintf(&y, "\n    material: ");
            material_yaml(&y, &s->materials[mat]);
            tprintf(&y, "\n    triangles: %u\n", ntl);
        }
    }
    if (y.oom) { st = mmd_error(MMD_ERR_NOMEM, "%s: out of memory formatting the scene", path); goto fail; }
    if ((st = mmd_write_file_atomic(path, y.d, y.n))) goto fail;
    mmd_info("wrote %s (%u objects, %zu meshes in %s/)", path, s->n_objects, done.n, dirname);
    goto out;
fail:
    /* Leave nothing half-written behind: the meshes of this call, and their folder when
     * this call created it. */
    for (size_t i = 0; i < done.n; i++) remove(done.path[i]);
    if (!had_dir) rmdir(dir);
out:
    for (size_t i = 0; i < done.n; i++) free(done.path[i]);
    free(done.path);
    name_set_free(&names);
    free(y.d);
    free(map);
    free(vl);
    free(tl);
    free(mats);
    free(dir);
    return st;
}
