/*
 * mmd_config.h - experiment files: a YAML tree whose every node knows its file, line and
 * column (built on libyaml's event API), and the validated experiment configuration
 * (mmd_experiment) extracted from it against a schema of types, units, ranges and defaults.
 *
 * Every user error names where it happened and what was expected, e.g.
 *     exp.yaml:12:9: solver.rays: expected an integer in [1, 2^31-1], got 'abc'
 *     --set solver.rays=abc: solver.rays: expected an integer in [1, 2^31-1], got 'abc'
 * Relative paths resolve against the directory of the YAML file that names them (paths from
 * `--set` against the working directory) and are stored absolute. The full key reference
 * (type, unit, default, range, meaning) is docs/experiment.md.
 *
 *     const char *sets[] = {"solver.rays=1000", "tx.position_m=[1, 2, 1.5]"};
 *     mmd_experiment e;
 *     if (mmd_experiment_load("exp.yaml", sets, 2, &e) != MMD_OK) {
 *         fprintf(stderr, "mmdiff: %s\n", mmd_last_error());
 *         return 1;
 *     }
 *     printf("%d rays at %g Hz\n", e.solver.rays, e.scene.frequency_hz);
 *     mmd_experiment_write_resolved(&e, "runs/x/experiment.resolved.yaml");
 *     mmd_experiment_free(&e);
 *
 * The YAML tree on its own (for manifests and other small YAML files):
 *
 *     mmd_ynode *root;
 *     if (mmd_yaml_load_file("manifest.yaml", &root) == MMD_OK) {
 *         const mmd_ynode *f = mmd_yaml_get(root, "frequency_hz");
 *         ...
 *         mmd_yaml_free(root);
 *     }
 */
#ifndef MMD_CONFIG_H
#define MMD_CONFIG_H

#include "mmd_core.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------ */
/* YAML tree                                                                             */
/* ------------------------------------------------------------------------------------ */

typedef enum mmd_ynode_kind { MMD_YAML_SCALAR, MMD_YAML_SEQ, MMD_YAML_MAP } mmd_ynode_kind;

typedef struct mmd_ynode {
    mmd_ynode_kind kind;
    char *origin;    /* file path, or "--set KEY=VALUE" for nodes that came from an override */
    int line, col;   /* 1-based; 0 when the node has no position (overrides) */
    char *text;      /* scalar: raw text as written (without quotes); NULL otherwise */
    int quoted;      /* scalar: quoted, block (| >) or tagged !!str, so always a string */
    int is_null;     /* scalar: plain empty, ~, null, Null or NULL */
    size_t n;        /* seq: number of items; map: number of key/value pairs */
    struct mmd_ynode **items; /* seq: items; map: values */
    struct mmd_ynode **keys;  /* map: keys (always scalars); NULL for seq and scalar */
} mmd_ynode;

/* Parse one YAML document into a tree. Anchors and aliases are supported (an alias is a
 * copy of its anchored node, positions included, so messages point at the value's text;
 * a node with an anchor starts at its '&'). Merge keys (<<), custom tags, complex
 * (non-scalar) keys, duplicate keys and multiple documents are errors (MMD_ERR_PARSE)
 * naming FILE:LINE:COL. An empty stream gives *root = NULL and MMD_OK. */
mmd_status mmd_yaml_load_file(const char *path, mmd_ynode **root);

/* The same from memory. `origin` names the source in nodes and messages; with
 * `positions` = 0 nodes get line = col = 0 and messages say only "ORIGIN: ..." (used for
 * command-line overrides, where a line number would mislead). */
mmd_status mmd_yaml_load_string(const char *text, size_t len, const char *origin, int positions,
                                mmd_ynode **root);

void mmd_yaml_free(mmd_ynode *node);

/* Value of `key` in a map, or NULL (also when `map` is NULL or not a map). */
const mmd_ynode *mmd_yaml_get(const mmd_ynode *map, const char *key);

/* "FILE:LINE:COL" (or just ORIGIN for nodes without a position) into buf; returns buf. */
const char *mmd_yaml_where(const mmd_ynode *node, char *buf, size_t cap);

/* ------------------------------------------------------------------------------------ */
/* Experiment configuration                                                              */
/* ------------------------------------------------------------------------------------ */

/* Enumerations, in the order of their YAML names (mmd_cfg_enum_name gives the name). */
typedef enum mmd_cfg_element {
    MMD_CFG_ELEMENT_ISO, MMD_CFG_ELEMENT_DIPOLE, MMD_CFG_ELEMENT_HW_DIPOLE,
    MMD_CFG_ELEMENT_TR38901, MMD_CFG_ELEMENT_PATCH
} mmd_cfg_element;
typedef enum mmd_cfg_window { MMD_CFG_WINDOW_HANN, MMD_CFG_WINDOW_NONE } mmd_cfg_window;
typedef enum mmd_cfg_rx_mode {
    MMD_CFG_RX_SYNTHETIC_APERTURE, MMD_CFG_RX_MECHANICAL
} mmd_cfg_rx_mode;
typedef enum mmd_cfg_solver_mode {
    MMD_CFG_SOLVER_DIRECTIONAL, MMD_CFG_SOLVER_SPECULAR
} mmd_cfg_solver_mode;
typedef enum mmd_cfg_polarization {
    MMD_CFG_POL_JONES, MMD_CFG_POL_SCALAR
} mmd_cfg_polarization;
typedef enum mmd_cfg_model { MMD_CFG_MODEL_NEURAL, MMD_CFG_MODEL_PER_OBJECT } mmd_cfg_model;
typedef enum mmd_cfg_field_at { MMD_CFG_FIELD_AT_HIT, MMD_CFG_FIELD_AT_TRIANGLE } mmd_cfg_field_at;

/* YAML name of an enum value, by the dotted key it belongs to ("rx.array.element",
 * "tx.pattern", "rx.array.window", "rx.array.mode", "solver.mode", "solver.polarization",
 * "train.model", "train.field_at"); NULL for an unknown key or value. */
const char *mmd_cfg_enum_name(const char *key, int value);

/* A path from the experiment file. */
typedef struct mmd_cfg_path {
    char *path;  /* resolved, absolute and lexically cleaned; NULL when not given */
    char *text;  /* as written (or the default's text) */
    char *where; /* "FILE:LINE:COL" of the value, "--set ...", or "default" */
} mmd_cfg_path;

/* scene.materials.NAME: either an ITU-R P.2040 material (itu) with optional overrides,
 * or explicit eps_r + sigma_s_per_m. */
typedef struct mmd_cfg_material {
    char *name;  /* key under scene.materials: a scene material or object name */
    char *where; /* "FILE:LINE:COL" of the key */
    char *itu;   /* P.2040 name, NULL for an explicit material */
    int has_eps_r, has_sigma;
    double eps_r, sigma_s_per_m;
    double scattering, xpd; /* S and K_x in [0, 1], default 0 */
    int has_thickness;
    double thickness_m;     /* slab thickness; absent = half-space */
    int has_alpha_r;
    int alpha_r;            /* absent = solver.alpha_r */
} mmd_cfg_material;

typedef struct mmd_cfg_noise {
    int enabled; /* the scene.noise block is present */
    int has_subdivide;
    double subdivide_m; /* target edge length; absent = no subdivision */
    double sigma_m, hole_fraction, hole_radius_m, decimate;
    int64_t seed;
} mmd_cfg_noise;

typedef struct mmd_cfg_scene {
    mmd_cfg_path file;
    double frequency_hz;
    mmd_cfg_material *materials;
    size_t n_materials;
    mmd_cfg_noise noise;
} mmd_cfg_scene;

typedef struct mmd_cfg_pose {
    double position_m[3];
    double yaw_deg, pitch_deg, roll_deg;
} mmd_cfg_pose;

typedef struct mmd_cfg_tx {
    double position_m[3];
    int pattern; /* mmd_cfg_element */
    double power_dbm, yaw_deg, pitch_deg, roll_deg;
} mmd_cfg_tx;

typedef struct mmd_cfg_horn { double hpbw_deg; } mmd_cfg_horn;

typedef struct mmd_cfg_array {
    int rows, cols;
    double spacing_wavelengths;
    int window;  /* mmd_cfg_window */
    int element; /* mmd_cfg_element */
    int mode;    /* mmd_cfg_rx_mode */
    mmd_cfg_horn horn;
} mmd_cfg_array;

typedef struct mmd_cfg_rx {
    mmd_cfg_array array;
    mmd_cfg_pose *poses;
    size_t n_poses;
    mmd_cfg_path poses_csv; /* exclusive with a non-empty poses list */
} mmd_cfg_rx;

/* [start, stop, step], stop inclusive; count = (stop - start) / step + 1 bins. */
typedef struct mmd_cfg_grid {
    double start, stop, step;
    int count;
} mmd_cfg_grid;

typedef struct mmd_cfg_aoa { mmd_cfg_grid azimuth_deg, elevation_deg; } mmd_cfg_aoa;

typedef struct mmd_cfg_solver {
    int mode; /* mmd_cfg_solver_mode */
    int rays, max_depth, alpha_r;
    int diffuse, transmission;
    int polarization; /* mmd_cfg_polarization */
    int64_t seed;
    int cache_mb;
    double normal_radius_m; /* directional mode: surface normals averaged over this radius */
} mmd_cfg_solver;

typedef struct mmd_cfg_coverage {
    double z_m, cell_m;
    int rays;
    int has_extent;
    double extent_m[4]; /* xmin, xmax, ymin, ymax; absent = scene footprint */
} mmd_cfg_coverage;

#define MMD_CFG_MAX_LAYERS 16
typedef struct mmd_cfg_train {
    mmd_cfg_path measurements; /* absent until calibration needs it */
    int model;                 /* mmd_cfg_model */
    int hidden[MMD_CFG_MAX_LAYERS];
    int n_hidden;
    int octaves;
    double lr;
    int batch_poses, epochs;
    double val_fraction;
    int early_stop_patience; /* epochs without validation improvement; 0 = off */
    double loss_floor_db;    /* relative to the measured maximum */
    int fit_scale;
    int64_t seed;
    int checkpoint_every; /* epochs */
    int field_at;         /* mmd_cfg_field_at */
} mmd_cfg_train;

typedef struct mmd_cfg_geometry {
    int enabled; /* the calibrate_geometry block is present */
    char *object;
    double lr;
    int steps;
} mmd_cfg_geometry;

typedef struct mmd_cfg_dataset {
    int traj_poses, rand_poses;
    double traj_step_m, clearance_m;
    double height_m[2]; /* min, max receiver height */
    double pitch_jitter_deg;
    double measurement_noise_db;
    int has_noise_floor;
    double noise_floor_db; /* relative to each spectrum's maximum */
    int64_t seed;
} mmd_cfg_dataset;

typedef struct mmd_cfg_evaluate {
    double dynamic_range_db;
    double match_threshold_deg;
} mmd_cfg_evaluate;

typedef struct mmd_cfg_output {
    mmd_cfg_path dir; /* default runs/NAME under the working directory */
    int measurements, png, paths;
} mmd_cfg_output;

typedef struct mmd_experiment {
    char *source;      /* the experiment file as given to the loader */
    char *name;        /* default: the file's stem */
    char *description; /* NULL when absent */
    mmd_cfg_scene scene;
    mmd_cfg_tx tx;
    mmd_cfg_rx rx;
    mmd_cfg_aoa aoa;
    mmd_cfg_solver solver;
    mmd_cfg_coverage coverage;
    mmd_cfg_train train;
    mmd_cfg_geometry calibrate_geometry;
    mmd_cfg_dataset dataset;
    mmd_cfg_evaluate evaluate;
    mmd_cfg_output output;
} mmd_experiment;

/* Load and validate an experiment file. `sets` are "KEY=VALUE" overrides (dotted key,
 * list items by index: rx.poses.0.yaw_deg or rx.poses[0].yaw_deg; VALUE is YAML: a
 * scalar or a flow collection), applied to the tree in order before validation. On
 * failure *out is zeroed (nothing to free) and the message says where and what. */
mmd_status mmd_experiment_load(const char *path, const char *const *sets, size_t n_sets,
                               mmd_experiment *out);

/* The same from memory; `origin` is the path used for messages and for resolving relative
 * paths (it need not exist). */
mmd_status mmd_experiment_load_string(const char *text, const char *origin,
                                      const char *const *sets, size_t n_sets,
                                      mmd_experiment *out);

/* Every default filled in, nothing given (tx.position_m = 0 and scene.file absent). */
void mmd_experiment_defaults(mmd_experiment *e);

void mmd_experiment_free(mmd_experiment *e);

/* The full configuration, every default filled, as YAML that loads back into an equal
 * experiment (paths absolute). Returns a malloc'ed string, NULL on allocation failure. */
char *mmd_experiment_to_yaml(const mmd_experiment *e);

/* mmd_experiment_to_yaml written atomically to `path`. */
mmd_status mmd_experiment_write_resolved(const mmd_experiment *e, const char *path);

/* 1 when a and b describe the same experiment (values and resolved paths; the source
 * file, the paths' original text and the positions are not compared), else 0. */
int mmd_experiment_equal(const mmd_experiment *a, const mmd_experiment *b);

/* Check every scene.materials key against the names the scene knows (its materials and
 * objects); an unknown one is MMD_ERR_INVALID naming the key, where it was written, and
 * the known names. `scene_label` (e.g. the scene path) goes into the message. */
mmd_status mmd_experiment_check_material_names(const mmd_experiment *e,
                                               const char *const *known, size_t n_known,
                                               const char *scene_label);

/* Read a pose CSV (header with x_m, y_m, z_m and optionally yaw_deg, pitch_deg, roll_deg
 * in any order; missing angles are 0). Errors name FILE:LINE and the column. *poses is
 * malloc'ed. */
mmd_status mmd_cfg_read_poses_csv(const char *path, mmd_cfg_pose **poses, size_t *n_poses);

/* Every key the schema knows, one dotted path per line ("solver.rays",
 * "scene.materials.<name>.itu", "rx.poses[].yaw_deg"); malloc'ed. Used to check that
 * docs/experiment.md documents them all. */
char *mmd_experiment_schema_keys(void);

#ifdef __cplusplus
}
#endif
#endif
