/*
 * mmd_scene.h - scene loading: every supported input becomes one triangle soup with a
 * material id and an object id per triangle.
 *
 * Inputs (chosen by file extension / content):
 *   *.ply   ASCII or binary (little/big endian) PLY; polygons fan-split; extra vertex and
 *           face properties and extra elements skipped. Without per-face ids: one object
 *           (the file stem) and one unassigned material "default". A face `object_id`
 *           gives one object per distinct id ("object_<id>", triangles regrouped so each
 *           object is contiguous); a face `material` / `material_index` gives one
 *           unassigned material per distinct index ("material_<i>").
 *   *.xml   Mitsuba XML as written by Sionna RT / Blender: <shape type="ply"> with
 *           <string name="filename">, <ref id=.. name="bsdf">, optional <transform>;
 *           bsdf types itu-radio-material / radio-material / any bsdf whose id is
 *           mat-itu_<name> or itu_<name>. Each shape is an object named by its id;
 *           per-face ids inside its PLY are ignored. A shape without a bsdf gets an
 *           unassigned material "default".
 *   *.yaml  scene list (as in shared/scenes/indoor): `shapes: [{file, material}, ...]`.
 *           Each entry is an object named by the file stem; materials are ITU names,
 *           deduplicated; `material: null` (or no key) maps to the one unassigned
 *           material "unassigned" (the experiment file must give it one).
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

/* Long enough for the longest shape id in Sionna's Munich scene (78 chars); longer
 * names are truncated. */
#define MMD_NAME_MAX 128

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

/* The same names as one comma-separated string, for error messages. */
const char *mmd_itu_names(void);

/* ---- Scene-stage internals: shared by the PLY, XML and YAML loaders (and their tests);
 * other stages should not need them. ---- */

/* One PLY file as read, before it becomes (part of) a scene. Vertex and face numbers in
 * error messages are 0-based, like PLY indices. */
typedef struct mmd_ply_mesh {
    uint32_t n_vertices, n_triangles;
    float *vertices;          /* 3 * n_vertices */
    uint32_t *indices;        /* 3 * n_triangles (polygons fan-split) */
    int64_t *tri_object_id;   /* per triangle, from face `object_id`, or NULL */
    int64_t *tri_material_id; /* per triangle, from face `material`/`material_index`, or NULL */
} mmd_ply_mesh;

mmd_status mmd_ply_read(const char *path, mmd_ply_mesh *out);
void mmd_ply_mesh_free(mmd_ply_mesh *m);

/* A scene under construction (arrays grow geometrically). */
typedef struct mmd_scene_builder {
    mmd_scene *s;
    size_t cap_vertices, cap_triangles, cap_objects, cap_materials;
    /* material name -> index + 1 (open addressing, cap_mat_slots a power of two): a PLY
     * with a million distinct per-face material indices must not cost a million^2 name
     * comparisons */
    uint32_t *mat_slots;
    size_t cap_mat_slots;
} mmd_scene_builder;

mmd_status mmd_scene_builder_init(mmd_scene_builder *b, const char *path);
/* Index of the material named m->name, adding a copy of *m when the name is new. */
mmd_status mmd_scene_builder_material(mmd_scene_builder *b, const mmd_scene_material *m,
                                      uint32_t *index);
/* Append vertices, transformed by the optional 4x4 row-major matrix xf (p' = xf * p);
 * *base receives the scene index of the first one. */
mmd_status mmd_scene_builder_vertices(mmd_scene_builder *b, const float *v, uint32_t n,
                                      const double *xf, uint32_t *base);
/* Append one object made of n_tris triangles (indices relative to `base`); tri_material
 * (per triangle, scene material indices) may be NULL to use `material` for all. */
mmd_status mmd_scene_builder_object(mmd_scene_builder *b, const char *name, uint32_t material,
                                    const uint32_t *indices, uint32_t n_tris, uint32_t base,
                                    const uint32_t *tri_material);
/* Vertices + one object: a whole PLY mesh as one object (the XML / YAML case). */
mmd_status mmd_scene_builder_mesh(mmd_scene_builder *b, const mmd_ply_mesh *m,
                                  const char *object_name, uint32_t material, const double *xf);
/* Reject an empty scene, compute the bbox and hand the scene over (the builder is reset
 * either way). */
mmd_status mmd_scene_builder_finish(mmd_scene_builder *b, mmd_scene **out);
void mmd_scene_builder_abort(mmd_scene_builder *b);

/* Copy the file stem of `path` ("dir/wall.ply" -> "wall") into out. */
void mmd_scene_file_stem(const char *path, char *out, size_t size);

/* ---- Reconstructed-scan simulation (src/scene/perturb.c) and scene writers
 * (src/scene/scene_write.c); docs/perturb.md. ---- */

/* What a LiDAR / photogrammetry reconstruction does to a clean CAD room. Every field at 0
 * means "leave the geometry as it is". */
typedef struct mmd_perturb_params {
    double subdivide_m;   /* target max edge length (scan density), 0 = none; (0, 1e4] m */
    double sigma_m;       /* Gaussian vertex displacement std-dev per axis; [0, 10] m */
    double hole_fraction; /* fraction of surface AREA removed in round patches; [0, 0.9] */
    double hole_radius_m; /* patch radius; (0, 100] m, needed when hole_fraction > 0 */
    double decimate;      /* fraction of triangles removed by vertex clustering; [0, 0.9] */
    uint64_t seed;        /* same input + params + seed = same output bytes */
} mmd_perturb_params;

/* Refuse to build scenes larger than this (about 2.4 GB of host arrays). */
#define MMD_PERTURB_MAX_TRIANGLES 50000000u

/* What a perturbation did (for logs and the CLI summary). */
typedef struct mmd_perturb_stats {
    uint32_t tris_in, tris_subdivided, tris_decimated, tris_out;
    double area_in_m2;        /* before anything */
    double area_holes_m2;     /* removed by holes (measured before the displacement) */
    double hole_fraction;     /* area_holes_m2 / area before holes: what was achieved */
    double max_edge_m;        /* longest edge after subdivision (0 if not subdivided) */
    double mean_edge_m;       /* mean triangle edge length of the result */
    double seconds;
} mmd_perturb_stats;

/* Turn `in` into a simulated scan, in this order: subdivide (every triangle whose longest
 * edge exceeds subdivide_m is split n x n, n = ceil(longest / subdivide_m); points on an
 * edge are shared by every triangle using that edge (by vertex-index identity), so a
 * watertight surface stays watertight; triangles next to a finer neighbour get a
 * conforming transition band), then decimate (vertex clustering on a grid whose cell size
 * is searched so that the requested fraction of triangles collapses), then holes (patch
 * centres sampled area-uniformly; each patch removes the triangle under its centre and
 * every triangle whose centroid lies within hole_radius_m, until hole_fraction of the
 * area is gone), then displacement (each vertex + N(0, sigma^2) per axis; shared
 * vertices move together, so no cracks open). Objects (even emptied ones), names and
 * materials are kept; unreferenced vertices are dropped. Deterministic for a seed and
 * single-threaded. Invalid params -> MMD_ERR_INVALID naming the field and its range;
 * more than MMD_PERTURB_MAX_TRIANGLES -> MMD_ERR_NOMEM giving the count needed.
 *
 *     mmd_perturb_params p = {.subdivide_m = 0.05, .sigma_m = 0.01, .hole_fraction = 0.1,
 *                             .hole_radius_m = 0.2, .seed = 7};
 *     mmd_scene *noisy = NULL;
 *     if (mmd_scene_perturb(clean, &p, &noisy) != MMD_OK) { ...mmd_last_error()... }
 *     mmd_scene_write(noisy, "runs/noisy/room.yaml");
 *     mmd_scene_destroy(noisy);
 */
mmd_status mmd_scene_perturb(const mmd_scene *in, const mmd_perturb_params *p, mmd_scene **out);
/* The same, also filling *stats (may be NULL). */
mmd_status mmd_scene_perturb_stats(const mmd_scene *in, const mmd_perturb_params *p, mmd_scene **out,
                                   mmd_perturb_stats *stats);

/* Check params (what mmd_scene_perturb does first). */
mmd_status mmd_perturb_validate(const mmd_perturb_params *p);

struct mmd_cfg_noise; /* include/mmd_config.h */
/* Params from an experiment's `scene.noise` block. The block's `decimate` is the fraction
 * of triangles KEPT (default 1), so p->decimate = 1 - decimate; an absent block (enabled =
 * 0) gives all-zero params (no change); values the perturbation cannot honour (e.g.
 * hole_fraction > 0.9) are MMD_ERR_INVALID naming the scene.noise key. */
mmd_status mmd_perturb_from_cfg(const struct mmd_cfg_noise *n, mmd_perturb_params *p);

/* One binary little-endian PLY of the whole scene with per-face `object_id` (object index)
 * and `material_index` (material index). Loading it back gives the same triangles, but
 * objects and materials come back as "object_<i>" / unassigned "material_<i>": use
 * mmd_scene_write to keep names and materials. Written atomically (temp + rename). */
mmd_status mmd_scene_write_ply(const mmd_scene *s, const char *path);

/* A scene YAML (the `shapes:` list mmd_scene_load_yaml reads) plus one binary PLY per
 * object in the folder <stem>_meshes/ next to it ("runs/a/room.yaml" -> "runs/a/room.yaml"
 * and "runs/a/room_meshes/<object>.ply"). File names are the object names made
 * file-safe and unique; an entry's `name:` keeps the exact object name when they differ,
 * and its `material:` is an ITU name, null, or a mapping with the material's name and
 * parameters, so mmd_scene_load gives back the same triangles, objects and materials.
 * An object whose triangles use several materials (possible only in a PLY with both
 * per-face ids) becomes one entry per material. Each file is written atomically and the
 * YAML last, so the YAML never names a missing mesh; on failure the meshes written by
 * this call are removed.
 *
 *     if (mmd_scene_write(s, "out/room.yaml") != MMD_OK) { ...mmd_last_error()... }
 */
mmd_status mmd_scene_write(const mmd_scene *s, const char *out_yaml_path);

#ifdef __cplusplus
}
#endif
#endif
