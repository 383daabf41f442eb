/*
 * mmd_scene.h - scene loading: every supported input becomes one triangle soup with a
 * material id and an object id per triangle.
 *
 * Inputs (chosen by file extension / content):
 *   *.ply   ASCII or binary (little/big endian) PLY; polygons fan-split; extra vertex and
 *           face properties skipped; per-face `object_id` / `material` (or
 *           `material_index`) kept when present. One object, one material ("default").
 *   *.xml   Mitsuba XML as written by Sionna RT / Blender: <shape type="ply"> with
 *           <string name="filename">, <ref id=.. name="bsdf">, optional <transform>;
 *           bsdf types itu-radio-material / radio-material / any bsdf whose id is
 *           mat-itu_<name> or itu_<name>. Each shape is an object.
 *   *.yaml  scene list (as in shared/scenes/indoor): `shapes: [{file, material}, ...]`.
 *           Each entry is an object; `material: null` means "unassigned" (the experiment
 *           file must give it one).
 *
 * Example:
 *     mmd_scene *s = NULL;
 *     if (mmd_scene_load("scenes/sionna/box/box.xml", &s) != MMD_OK) { ...mmd_last_error()... }
 *     printf("%u triangles\n", s->n_triangles);
 *     mmd_scene_destroy(s);
 */
#ifndef MMD_SCENE_H
#define MMD_SCENE_H

#include "mmd_core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MMD_NAME_MAX 64

typedef enum mmd_material_kind {
    MMD_MAT_UNASSIGNED = 0, /* no material known (YAML `material: null`, bare PLY) */
    MMD_MAT_ITU,            /* ITU-R P.2040 named material (itu_name valid) */
    MMD_MAT_RADIO           /* explicit parameters (eps_r, sigma) */
} mmd_material_kind;

typedef struct mmd_scene_material {
    char name[MMD_NAME_MAX];     /* id as written in the scene (bsdf id, YAML name) */
    char itu_name[MMD_NAME_MAX]; /* P.2040 name for MMD_MAT_ITU, else "" */
    mmd_material_kind kind;
    double thickness_m;          /* slab thickness; Sionna default 0.1 */
    double eps_r, sigma_s_per_m; /* for MMD_MAT_RADIO (Sionna radio-material defaults 1, 0) */
    double scattering, xpd;      /* S and K_x as given in the scene (default 0) */
} mmd_scene_material;

typedef struct mmd_scene_object {
    char name[MMD_NAME_MAX];     /* shape id / PLY file stem */
    uint32_t material;           /* index into materials */
    uint32_t first_tri, n_tris;  /* the object's triangles are contiguous */
} mmd_scene_object;

typedef struct mmd_scene {
    uint32_t n_vertices, n_triangles, n_objects, n_materials;
    float *vertices;        /* 3 * n_vertices, metres, z up */
    uint32_t *indices;      /* 3 * n_triangles */
    uint32_t *tri_material; /* n_triangles */
    uint32_t *tri_object;   /* n_triangles */
    mmd_scene_object *objects;
    mmd_scene_material *materials;
    float bbox_min[3], bbox_max[3];
    char *path;             /* the file it was loaded from */
} mmd_scene;

/* Load any supported scene file. Errors name the file (and line/field) and what was
 * expected: missing files, malformed content, out-of-range indices, NaN/Inf vertices,
 * unknown material names, and an empty scene are all errors. */
mmd_status mmd_scene_load(const char *path, mmd_scene **out);

/* Individual loaders (mmd_scene_load dispatches to these). */
mmd_status mmd_scene_load_ply(const char *path, mmd_scene **out);
mmd_status mmd_scene_load_mitsuba(const char *path, mmd_scene **out);
mmd_status mmd_scene_load_yaml(const char *path, mmd_scene **out);

void mmd_scene_destroy(mmd_scene *s);

/* Recompute bbox_min/bbox_max from the vertices actually referenced by triangles. */
void mmd_scene_update_bbox(mmd_scene *s);

/* Print counts, bbox and the material/object table (for `mmdiff info`). */
void mmd_scene_print_info(const mmd_scene *s, FILE *f);

/* ITU-R P.2040 material names known to mmdiff (concrete, brick, ..., wet_ground).
 * Returns 1 if `name` is one of them. */
int mmd_itu_known(const char *name);

#ifdef __cplusplus
}
#endif
#endif
