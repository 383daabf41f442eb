/* Experiment configuration: one schema table drives defaults, extraction from the YAML
 * tree, strict validation, `--set` overrides, the resolved-config writer and equality, so
 * a key added to the schema is automatically parsed, checked, written and compared
 * (see mmd_config.h; the key reference is docs/experiment.md). */
#include "mmd_config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------ */
/* Schema                                                                                */
/* ------------------------------------------------------------------------------------ */

typedef enum fkind {
    F_MAP,     /* nested block: struct at off, fields in sub */
    F_INT,     /* int */
    F_I64,     /* int64_t */
    F_FLOAT,   /* double */
    F_BOOL,    /* int 0/1 */
    F_ENUM,    /* int index into names */
    F_STR,     /* char * (NULL = absent); names, when set, are the allowed values */
    F_PATH,    /* mmd_cfg_path */
    F_VEC,     /* double[n] */
    F_GRID,    /* mmd_cfg_grid */
    F_INTLIST, /* int[n] plus an int count at cnt */
    F_SEQ,     /* list of sub-structs: pointer at off, size_t count at cnt */
    F_NAMED    /* map NAME -> sub-struct; items start with char *name, char *where */
} fkind;

enum {
    REQUIRED = 1u,   /* must be given, not null */
    NULLABLE = 2u,   /* may be absent or null; numbers/vectors/blocks record it in `has` */
    LO_OPEN = 4u,    /* range excludes lo */
    HI_OPEN = 8u,    /* range excludes hi */
    NAME_CHARS = 16u /* string restricted to [A-Za-z0-9._-] (it names a directory) */
};

typedef struct field {
    const char *key;
    fkind kind;
    unsigned flags;
    size_t off;
    size_t has;       /* NULLABLE F_INT/F_FLOAT/F_VEC/F_MAP: offset of an int flag */
    size_t cnt;       /* F_INTLIST: int count; F_SEQ/F_NAMED: size_t count */
    size_t item_size; /* F_SEQ/F_NAMED */
    double lo, hi;    /* numeric range (elements of F_VEC/F_GRID/F_INTLIST too) */
    double def;
    const double *def_vec;
    int n;     /* F_VEC length; F_INTLIST maximum length */
    int def_n; /* F_INTLIST default length */
    int order; /* F_VEC: 1 = pairs strictly increasing (v0 < v1, v2 < v3), 2 = v0 <= v1 */
    const struct field *sub;
    const char *const *names;
    const char *unit;
} field;

#define O(type, member) offsetof(type, member)
#define I32MAX 2147483647.0
#define I63MAX 9223372036854775807.0

static const char *const k_elements[] = {"iso", "dipole", "hw_dipole", "tr38901", "patch", NULL};
static const char *const k_windows[] = {"hann", "none", NULL};
static const char *const k_rx_modes[] = {"synthetic_aperture", "mechanical", NULL};
static const char *const k_solver_modes[] = {"directional", "specular", NULL};
static const char *const k_pols[] = {"jones", "scalar", NULL};
static const char *const k_models[] = {"neural", "per_object", NULL};
static const char *const k_field_at[] = {"hit", "triangle", NULL};
/* ITU-R P.2040 names (SPEC 3); the physics module owns the coefficients and frequency
 * ranges, this list only catches typos where they are written. */
static const char *const k_itu[] = {"vacuum",       "concrete",        "brick",
                                    "plasterboard", "wood",            "glass",
                                    "ceiling_board", "chipboard",      "plywood",
                                    "marble",       "floorboard",      "metal",
                                    "very_dry_ground", "medium_dry_ground", "wet_ground",
                                    NULL};

_Static_assert(offsetof(mmd_cfg_material, name) == 0, "F_NAMED items start with name");
_Static_assert(offsetof(mmd_cfg_material, where) == sizeof(char *), "then where");

static const field k_material[] = {
    {.key = "itu", .kind = F_STR, .flags = NULLABLE, .off = O(mmd_cfg_material, itu),
     .names = k_itu},
    {.key = "eps_r", .kind = F_FLOAT, .flags = NULLABLE, .off = O(mmd_cfg_material, eps_r),
     .has = O(mmd_cfg_material, has_eps_r), .lo = 1, .hi = 1e4},
    {.key = "sigma_s_per_m", .kind = F_FLOAT, .flags = NULLABLE,
     .off = O(mmd_cfg_material, sigma_s_per_m), .has = O(mmd_cfg_material, has_sigma), .lo = 0,
     .hi = 1e9, .unit = "S/m"},
    {.key = "scattering", .kind = F_FLOAT, .off = O(mmd_cfg_material, scattering), .lo = 0,
     .hi = 1, .def = 0},
    {.key = "xpd", .kind = F_FLOAT, .off = O(mmd_cfg_material, xpd), .lo = 0, .hi = 1, .def = 0},
    {.key = "thickness_m", .kind = F_FLOAT, .flags = NULLABLE | LO_OPEN,
     .off = O(mmd_cfg_material, thickness_m), .has = O(mmd_cfg_material, has_thickness),
     .lo = 0, .hi = 100, .unit = "m"},
    {.key = "alpha_r", .kind = F_INT, .flags = NULLABLE, .off = O(mmd_cfg_material, alpha_r),
     .has = O(mmd_cfg_material, has_alpha_r), .lo = 1, .hi = 1000},
    {0}};

static const field k_noise[] = {
    {.key = "subdivide_m", .kind = F_FLOAT, .flags = NULLABLE | LO_OPEN,
     .off = O(mmd_cfg_noise, subdivide_m), .has = O(mmd_cfg_noise, has_subdivide), .lo = 0,
     .hi = 100, .unit = "m"},
    {.key = "sigma_m", .kind = F_FLOAT, .off = O(mmd_cfg_noise, sigma_m), .lo = 0, .hi = 10,
     .def = 0, .unit = "m"},
    {.key = "hole_fraction", .kind = F_FLOAT, .off = O(mmd_cfg_noise, hole_fraction), .lo = 0,
     .hi = 0.9, .def = 0},
    {.key = "hole_radius_m", .kind = F_FLOAT, .flags = LO_OPEN,
     .off = O(mmd_cfg_noise, hole_radius_m), .lo = 0, .hi = 100, .def = 0.1, .unit = "m"},
    {.key = "decimate", .kind = F_FLOAT, .off = O(mmd_cfg_noise, decimate), .lo = 0, .hi = 0.9,
     .def = 0},
    {.key = "seed", .kind = F_I64, .off = O(mmd_cfg_noise, seed), .lo = 0, .hi = I63MAX, .def = 1},
    {0}};

static const field k_scene[] = {
    {.key = "file", .kind = F_PATH, .flags = REQUIRED, .off = O(mmd_cfg_scene, file)},
    {.key = "frequency_hz", .kind = F_FLOAT, .flags = LO_OPEN,
     .off = O(mmd_cfg_scene, frequency_hz), .lo = 0, .hi = 1e13, .def = 60e9, .unit = "Hz"},
    {.key = "materials", .kind = F_NAMED, .off = O(mmd_cfg_scene, materials),
     .cnt = O(mmd_cfg_scene, n_materials), .item_size = sizeof(mmd_cfg_material),
     .sub = k_material},
    {.key = "noise", .kind = F_MAP, .flags = NULLABLE, .off = O(mmd_cfg_scene, noise),
     .has = O(mmd_cfg_scene, noise.enabled), .sub = k_noise},
    {0}};

#define ANGLE(type, member, lo_, hi_)                                                      \
    {.key = #member, .kind = F_FLOAT, .off = O(type, member), .lo = lo_, .hi = hi_, .def = 0, \
     .unit = "deg"}

static const field k_tx[] = {
    {.key = "position_m", .kind = F_VEC, .flags = REQUIRED, .off = O(mmd_cfg_tx, position_m),
     .n = 3, .lo = -1e6, .hi = 1e6, .unit = "m"},
    {.key = "pattern", .kind = F_ENUM, .off = O(mmd_cfg_tx, pattern), .names = k_elements,
     .def = MMD_CFG_ELEMENT_ISO},
    {.key = "power_dbm", .kind = F_FLOAT, .off = O(mmd_cfg_tx, power_dbm), .lo = -200,
     .hi = 200, .def = 20, .unit = "dBm"},
    ANGLE(mmd_cfg_tx, yaw_deg, -360, 360),
    ANGLE(mmd_cfg_tx, pitch_deg, -360, 360),
    ANGLE(mmd_cfg_tx, roll_deg, -360, 360),
    {0}};

static const field k_pose[] = {
    {.key = "position_m", .kind = F_VEC, .flags = REQUIRED, .off = O(mmd_cfg_pose, position_m),
     .n = 3, .lo = -1e6, .hi = 1e6, .unit = "m"},
    ANGLE(mmd_cfg_pose, yaw_deg, -360, 360),
    ANGLE(mmd_cfg_pose, pitch_deg, -360, 360),
    ANGLE(mmd_cfg_pose, roll_deg, -360, 360),
    {0}};

static const field k_horn[] = {
    {.key = "hpbw_deg", .kind = F_FLOAT, .flags = LO_OPEN, .off = O(mmd_cfg_horn, hpbw_deg),
     .lo = 0, .hi = 180, .def = 10, .unit = "deg"},
    {0}};

static const field k_array[] = {
    {.key = "rows", .kind = F_INT, .off = O(mmd_cfg_array, rows), .lo = 1, .hi = 1024, .def = 8},
    {.key = "cols", .kind = F_INT, .off = O(mmd_cfg_array, cols), .lo = 1, .hi = 1024, .def = 8},
    {.key = "spacing_wavelengths", .kind = F_FLOAT, .flags = LO_OPEN,
     .off = O(mmd_cfg_array, spacing_wavelengths), .lo = 0, .hi = 100, .def = 0.5,
     .unit = "wavelengths"},
    {.key = "window", .kind = F_ENUM, .off = O(mmd_cfg_array, window), .names = k_windows,
     .def = MMD_CFG_WINDOW_HANN},
    {.key = "element", .kind = F_ENUM, .off = O(mmd_cfg_array, element), .names = k_elements,
     .def = MMD_CFG_ELEMENT_PATCH},
    {.key = "mode", .kind = F_ENUM, .off = O(mmd_cfg_array, mode), .names = k_rx_modes,
     .def = MMD_CFG_RX_SYNTHETIC_APERTURE},
    {.key = "horn", .kind = F_MAP, .off = O(mmd_cfg_array, horn), .sub = k_horn},
    {0}};

static const field k_rx[] = {
    {.key = "array", .kind = F_MAP, .off = O(mmd_cfg_rx, array), .sub = k_array},
    {.key = "poses", .kind = F_SEQ, .off = O(mmd_cfg_rx, poses), .cnt = O(mmd_cfg_rx, n_poses),
     .item_size = sizeof(mmd_cfg_pose), .sub = k_pose},
    {.key = "poses_csv", .kind = F_PATH, .flags = NULLABLE, .off = O(mmd_cfg_rx, poses_csv)},
    {0}};

static const double k_def_az[3] = {-90, 90, 1};
static const double k_def_el[3] = {-45, 45, 1};
static const field k_aoa[] = {
    {.key = "azimuth_deg", .kind = F_GRID, .off = O(mmd_cfg_aoa, azimuth_deg), .lo = -360,
     .hi = 360, .def_vec = k_def_az, .unit = "deg"},
    {.key = "elevation_deg", .kind = F_GRID, .off = O(mmd_cfg_aoa, elevation_deg), .lo = -90,
     .hi = 90, .def_vec = k_def_el, .unit = "deg"},
    {0}};

static const field k_solver[] = {
    {.key = "mode", .kind = F_ENUM, .off = O(mmd_cfg_solver, mode), .names = k_solver_modes,
     .def = MMD_CFG_SOLVER_DIRECTIONAL},
    {.key = "rays", .kind = F_INT, .off = O(mmd_cfg_solver, rays), .lo = 1, .hi = I32MAX,
     .def = 200000},
    {.key = "max_depth", .kind = F_INT, .off = O(mmd_cfg_solver, max_depth), .lo = 0, .hi = 32,
     .def = 3},
    {.key = "alpha_r", .kind = F_INT, .off = O(mmd_cfg_solver, alpha_r), .lo = 1, .hi = 1000,
     .def = 50},
    {.key = "diffuse", .kind = F_BOOL, .off = O(mmd_cfg_solver, diffuse), .def = 1},
    {.key = "transmission", .kind = F_BOOL, .off = O(mmd_cfg_solver, transmission), .def = 0},
    {.key = "polarization", .kind = F_ENUM, .off = O(mmd_cfg_solver, polarization),
     .names = k_pols, .def = MMD_CFG_POL_JONES},
    {.key = "seed", .kind = F_I64, .off = O(mmd_cfg_solver, seed), .lo = 0, .hi = I63MAX,
     .def = 42},
    {.key = "cache_mb", .kind = F_INT, .off = O(mmd_cfg_solver, cache_mb), .lo = 0,
     .hi = 1048576, .def = 1024, .unit = "MiB"},
    {.key = "normal_radius_m", .kind = F_FLOAT, .off = O(mmd_cfg_solver, normal_radius_m), .lo = 0,
     .hi = 100, .def = 0.1, .unit = "m"},
    {0}};

static const field k_coverage[] = {
    {.key = "z_m", .kind = F_FLOAT, .off = O(mmd_cfg_coverage, z_m), .lo = -1e6, .hi = 1e6,
     .def = 1.2, .unit = "m"},
    {.key = "cell_m", .kind = F_FLOAT, .flags = LO_OPEN, .off = O(mmd_cfg_coverage, cell_m),
     .lo = 0, .hi = 1e4, .def = 0.1, .unit = "m"},
    {.key = "rays", .kind = F_INT, .off = O(mmd_cfg_coverage, rays), .lo = 1, .hi = I32MAX,
     .def = 1000000},
    {.key = "extent_m", .kind = F_VEC, .flags = NULLABLE, .off = O(mmd_cfg_coverage, extent_m),
     .has = O(mmd_cfg_coverage, has_extent), .n = 4, .lo = -1e6, .hi = 1e6, .order = 1,
     .unit = "m"},
    {0}};

static const double k_def_hidden[4] = {64, 64, 64, 64};
static const field k_train[] = {
    {.key = "measurements", .kind = F_PATH, .flags = NULLABLE,
     .off = O(mmd_cfg_train, measurements)},
    {.key = "model", .kind = F_ENUM, .off = O(mmd_cfg_train, model), .names = k_models,
     .def = MMD_CFG_MODEL_NEURAL},
    {.key = "hidden", .kind = F_INTLIST, .off = O(mmd_cfg_train, hidden),
     .cnt = O(mmd_cfg_train, n_hidden), .n = MMD_CFG_MAX_LAYERS, .lo = 1, .hi = 4096,
     .def_vec = k_def_hidden, .def_n = 4},
    {.key = "octaves", .kind = F_INT, .off = O(mmd_cfg_train, octaves), .lo = 0, .hi = 16,
     .def = 6},
    {.key = "lr", .kind = F_FLOAT, .flags = LO_OPEN, .off = O(mmd_cfg_train, lr), .lo = 0,
     .hi = 10, .def = 5e-4},
    {.key = "batch_poses", .kind = F_INT, .off = O(mmd_cfg_train, batch_poses), .lo = 1,
     .hi = 1048576, .def = 8},
    {.key = "epochs", .kind = F_INT, .off = O(mmd_cfg_train, epochs), .lo = 1, .hi = 10000000,
     .def = 100},
    {.key = "val_fraction", .kind = F_FLOAT, .off = O(mmd_cfg_train, val_fraction), .lo = 0,
     .hi = 0.9, .def = 0.1},
    {.key = "early_stop_patience", .kind = F_INT, .off = O(mmd_cfg_train, early_stop_patience),
     .lo = 0, .hi = 10000000, .def = 5, .unit = "epochs"},
    {.key = "loss_floor_db", .kind = F_FLOAT, .off = O(mmd_cfg_train, loss_floor_db),
     .lo = -300, .hi = 0, .def = -60, .unit = "dB"},
    {.key = "fit_scale", .kind = F_BOOL, .off = O(mmd_cfg_train, fit_scale), .def = 1},
    {.key = "seed", .kind = F_I64, .off = O(mmd_cfg_train, seed), .lo = 0, .hi = I63MAX, .def = 1},
    {.key = "checkpoint_every", .kind = F_INT, .off = O(mmd_cfg_train, checkpoint_every),
     .lo = 1, .hi = 10000000, .def = 1, .unit = "epochs"},
    {.key = "field_at", .kind = F_ENUM, .off = O(mmd_cfg_train, field_at), .names = k_field_at,
     .def = MMD_CFG_FIELD_AT_HIT},
    {0}};

static const field k_geometry[] = {
    {.key = "object", .kind = F_STR, .flags = REQUIRED, .off = O(mmd_cfg_geometry, object)},
    {.key = "lr", .kind = F_FLOAT, .flags = LO_OPEN, .off = O(mmd_cfg_geometry, lr), .lo = 0,
     .hi = 10, .def = 0.02},
    {.key = "steps", .kind = F_INT, .off = O(mmd_cfg_geometry, steps), .lo = 1, .hi = 10000000,
     .def = 200},
    {0}};

static const double k_def_height[2] = {1.0, 2.0};
static const field k_dataset[] = {
    {.key = "traj_poses", .kind = F_INT, .off = O(mmd_cfg_dataset, traj_poses), .lo = 0,
     .hi = 10000000, .def = 2800},
    {.key = "rand_poses", .kind = F_INT, .off = O(mmd_cfg_dataset, rand_poses), .lo = 0,
     .hi = 10000000, .def = 500},
    {.key = "traj_step_m", .kind = F_FLOAT, .flags = LO_OPEN,
     .off = O(mmd_cfg_dataset, traj_step_m),
     .lo = 0, .hi = 100, .def = 0.05, .unit = "m"},
    {.key = "clearance_m", .kind = F_FLOAT, .off = O(mmd_cfg_dataset, clearance_m), .lo = 0,
     .hi = 100, .def = 0.3, .unit = "m"},
    {.key = "height_m", .kind = F_VEC, .off = O(mmd_cfg_dataset, height_m), .n = 2, .lo = -1e6,
     .hi = 1e6, .order = 2, .def_vec = k_def_height, .unit = "m"},
    {.key = "pitch_jitter_deg", .kind = F_FLOAT, .off = O(mmd_cfg_dataset, pitch_jitter_deg),
     .lo = 0, .hi = 90, .def = 5, .unit = "deg"},
    {.key = "measurement_noise_db", .kind = F_FLOAT,
     .off = O(mmd_cfg_dataset, measurement_noise_db), .lo = 0, .hi = 100, .def = 0, .unit = "dB"},
    {.key = "noise_floor_db", .kind = F_FLOAT, .flags = NULLABLE,
     .off = O(mmd_cfg_dataset, noise_floor_db), .has = O(mmd_cfg_dataset, has_noise_floor),
     .lo = -300, .hi = 0, .unit = "dB"},
    {.key = "seed", .kind = F_I64, .off = O(mmd_cfg_dataset, seed), .lo = 0, .hi = I63MAX,
     .def = 1},
    {0}};

static const field k_evaluate[] = {
    {.key = "dynamic_range_db", .kind = F_FLOAT, .flags = LO_OPEN,
     .off = O(mmd_cfg_evaluate, dynamic_range_db), .lo = 0, .hi = 300, .def = 20, .unit = "dB"},
    {.key = "match_threshold_deg", .kind = F_FLOAT, .flags = LO_OPEN,
     .off = O(mmd_cfg_evaluate, match_threshold_deg), .lo = 0, .hi = 180, .def = 5,
     .unit = "deg"},
    {0}};

static const field k_output[] = {
    {.key = "dir", .kind = F_PATH, .flags = NULLABLE, .off = O(mmd_cfg_output, dir)},
    {.key = "measurements", .kind = F_BOOL, .off = O(mmd_cfg_output, measurements), .def = 0},
    {.key = "png", .kind = F_BOOL, .off = O(mmd_cfg_output, png), .def = 1},
    {.key = "paths", .kind = F_BOOL, .off = O(mmd_cfg_output, paths), .def = 0},
    {0}};

static const field k_top[] = {
    {.key = "name", .kind = F_STR, .flags = NULLABLE | NAME_CHARS, .off = O(mmd_experiment, name)},
    {.key = "description", .kind = F_STR, .flags = NULLABLE,
     .off = O(mmd_experiment, description)},
    {.key = "scene", .kind = F_MAP, .off = O(mmd_experiment, scene), .sub = k_scene},
    {.key = "tx", .kind = F_MAP, .off = O(mmd_experiment, tx), .sub = k_tx},
    {.key = "rx", .kind = F_MAP, .off = O(mmd_experiment, rx), .sub = k_rx},
    {.key = "aoa", .kind = F_MAP, .off = O(mmd_experiment, aoa), .sub = k_aoa},
    {.key = "solver", .kind = F_MAP, .off = O(mmd_experiment, solver), .sub = k_solver},
    {.key = "coverage", .kind = F_MAP, .off = O(mmd_experiment, coverage), .sub = k_coverage},
    {.key = "train", .kind = F_MAP, .off = O(mmd_experiment, train), .sub = k_train},
    {.key = "calibrate_geometry", .kind = F_MAP, .flags = NULLABLE,
     .off = O(mmd_experiment, calibrate_geometry),
     .has = O(mmd_experiment, calibrate_geometry.enabled), .sub = k_geometry},
    {.key = "dataset", .kind = F_MAP, .off = O(mmd_experiment, dataset), .sub = k_dataset},
    {.key = "evaluate", .kind = F_MAP, .off = O(mmd_experiment, evaluate), .sub = k_evaluate},
    {.key = "output", .kind = F_MAP, .off = O(mmd_experiment, output), .sub = k_output},
    {0}};

/* ------------------------------------------------------------------------------------ */
/* Small helpers                                                                         */
/* ------------------------------------------------------------------------------------ */

#define AT(base, off, type) ((type *)((char *)(base) + (off)))
#define CAT(base, off, type) ((const type *)((const char *)(base) + (off)))

static char *dup_str(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = mmd_malloc(n, 1, "config string");
    if (d) memcpy(d, s, n);
    return d;
}

static char *fmt_alloc(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
static char *fmt_alloc(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *s = mmd_malloc((size_t)n + 1, 1, "config string");
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* snprintf for key paths and other bounded texts, where truncation of an absurdly deep
 * path is acceptable (and gcc's -Wformat-truncation would object to plain snprintf). */
static void spath(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, cap, fmt, ap);
    va_end(ap);
}

/* Growable string for messages and the YAML writer. */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_vprintf(sbuf *b, const char *fmt, va_list ap)
{
    if (b->oom) return;
    va_list aq;
    va_copy(aq, ap);
    int need = vsnprintf(NULL, 0, fmt, aq);
    va_end(aq);
    if (need < 0) { b->oom = 1; return; }
    if (b->n + (size_t)need + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + (size_t)need + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) { b->oom = 1; return; }
        b->p = np;
        b->cap = nc;
    }
    vsnprintf(b->p + b->n, (size_t)need + 1, fmt, ap);
    b->n += (size_t)need;
}

static void sb_printf(sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(b, fmt, ap);
    va_end(ap);
}

static const char *sb_str(const sbuf *b) { return b->p && !b->oom ? b->p : ""; }

/* Numbers in messages and in the written YAML: the shortest text that reads back to the
 * same double, with the exponent written the way people write it (1e6, 5e-4). */
static void fmt_num(double v, char *buf, size_t cap)
{
    char tmp[64];
    if (v == floor(v) && fabs(v) < 1e6) {
        spath(buf, cap, "%.0f", v == 0 ? 0.0 : v); /* no "-0" */
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    /* tidy "1e+06" -> "1e6", "5e-04" -> "5e-4" */
    char *e = strchr(tmp, 'e');
    if (e) {
        char mant[64], *m = mant;
        size_t ml = (size_t)(e - tmp);
        memcpy(mant, tmp, ml);
        mant[ml] = 0;
        const char *x = e + 1;
        int neg = *x == '-';
        if (*x == '+' || *x == '-') x++;
        while (*x == '0' && x[1]) x++;
        spath(buf, cap, "%se%s%s", m, neg ? "-" : "", x);
    } else {
        snprintf(buf, cap, "%s", tmp);
    }
}

static void fmt_int_bound(double v, char *buf, size_t cap)
{
    if (v >= I63MAX)
        snprintf(buf, cap, "2^63-1");
    else if (v == I32MAX)
        snprintf(buf, cap, "2^31-1");
    else
        snprintf(buf, cap, "%.0f", v);
}

/* Levenshtein distance, for "did you mean". */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return (size_t)-1;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            int differ = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            size_t sub = prev + (size_t)differ;
            size_t del = row[j] + 1, ins = row[j - 1] + 1;
            row[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            prev = cur;
        }
    }
    return row[lb];
}

/* The closest candidate when it is close enough to be a plausible typo, else NULL. */
static const char *nearest(const char *word, const char *const *cands, size_t n)
{
    const char *best = NULL;
    size_t bd = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(word, cands[i]);
        if (d < bd) { bd = d; best = cands[i]; }
    }
    size_t len = strlen(word);
    size_t limit = len <= 3 ? 1 : (len <= 8 ? 2 : 3);
    if (bd <= limit) return best;
    /* "hanning" for "hann", "yaw" for "yaw_deg": one is a prefix (3+ characters) of the other. */
    for (size_t i = 0; i < n; i++) {
        size_t lc = strlen(cands[i]), m = len < lc ? len : lc;
        if (m >= 3 && !strncasecmp(word, cands[i], m)) return cands[i];
    }
    return NULL;
}

static size_t schema_len(const field *s)
{
    size_t n = 0;
    while (s[n].key) n++;
    return n;
}

static const field *schema_find(const field *s, const char *key)
{
    for (; s->key; s++)
        if (!strcmp(s->key, key)) return s;
    return NULL;
}

static void schema_key_list(const field *s, sbuf *b)
{
    for (size_t i = 0; s[i].key; i++) sb_printf(b, "%s%s", i ? ", " : "", s[i].key);
}

static void names_list(const char *const *names, sbuf *b)
{
    for (size_t i = 0; names[i]; i++) sb_printf(b, "%s%s", i ? ", " : "", names[i]);
}

static size_t names_len(const char *const *names)
{
    size_t n = 0;
    while (names[n]) n++;
    return n;
}

static void join_path(char *out, size_t cap, const char *parent, const char *key)
{
    if (parent && parent[0])
        spath(out, cap, "%s.%s", parent, key);
    else
        spath(out, cap, "%s", key);
}

/* ------------------------------------------------------------------------------------ */
/* Messages                                                                              */
/* ------------------------------------------------------------------------------------ */

/* What a field accepts, in words ("an integer in [1, 2^31-1]"). */
static void describe(const field *f, sbuf *b)
{
    char lo[32], hi[32];
    const char *lb = (f->flags & LO_OPEN) ? "(" : "[", *rb = (f->flags & HI_OPEN) ? ")" : "]";
    const char *unit = f->unit ? f->unit : "";
    const char *sp = f->unit ? " " : "";
    switch (f->kind) {
    case F_INT:
    case F_I64:
    case F_INTLIST:
        fmt_int_bound(f->lo, lo, sizeof lo);
        fmt_int_bound(f->hi, hi, sizeof hi);
        if (f->kind == F_INTLIST)
            sb_printf(b, "a list of 1 to %d integers, each in [%s, %s]", f->n, lo, hi);
        else
            sb_printf(b, "an integer in [%s, %s]%s%s", lo, hi, sp, unit);
        break;
    case F_FLOAT:
    case F_VEC:
        fmt_num(f->lo, lo, sizeof lo);
        fmt_num(f->hi, hi, sizeof hi);
        if (f->kind == F_VEC) {
            sb_printf(b, "a list of %d numbers, each in %s%s, %s%s%s%s", f->n, lb, lo, hi, rb, sp,
                      unit);
            if (f->order == 1)
                sb_printf(b, ", with %s", f->n == 4 ? "xmin < xmax and ymin < ymax" : "min < max");
            if (f->order == 2) sb_printf(b, ", with min <= max");
        } else {
            sb_printf(b, "a number in %s%s, %s%s%s%s", lb, lo, hi, rb, sp, unit);
        }
        break;
    case F_GRID:
        fmt_num(f->lo, lo, sizeof lo);
        fmt_num(f->hi, hi, sizeof hi);
        sb_printf(b, "[start, stop, step] in %s with %s <= start <= stop <= %s, step > 0 and "
                     "stop - start a whole number of steps",
                  unit, lo, hi);
        if (f->hi - f->lo > 360) sb_printf(b, " spanning at most 360");
        break;
    case F_BOOL: sb_printf(b, "true or false"); break;
    case F_ENUM:
        sb_printf(b, "one of ");
        names_list(f->names, b);
        break;
    case F_STR:
        if (f->names) {
            sb_printf(b, "one of ");
            names_list(f->names, b);
        } else if (f->flags & NAME_CHARS) {
            sb_printf(b, "a name made of letters, digits, '.', '_' and '-'");
        } else {
            sb_printf(b, "a string");
        }
        break;
    case F_PATH: sb_printf(b, "a path"); break;
    case F_MAP:
        sb_printf(b, "a mapping with keys ");
        schema_key_list(f->sub, b);
        break;
    case F_SEQ:
        sb_printf(b, "a list of mappings with keys ");
        schema_key_list(f->sub, b);
        break;
    case F_NAMED:
        sb_printf(b, "a mapping of NAME: {");
        schema_key_list(f->sub, b);
        sb_printf(b, "}");
        break;
    }
}

/* What was found, for "got ...". */
static void describe_got(const mmd_ynode *v, sbuf *b)
{
    if (!v) {
        sb_printf(b, "nothing");
    } else if (v->kind == MMD_YAML_SEQ) {
        /* Short lists of scalars are shown as written: that is what the user will look for. */
        int simple = v->n <= 8;
        for (size_t i = 0; i < v->n && simple; i++)
            if (v->items[i]->kind != MMD_YAML_SCALAR) simple = 0;
        if (!simple) {
            sb_printf(b, "a list of %zu items", v->n);
            return;
        }
        sb_printf(b, "[");
        for (size_t i = 0; i < v->n; i++)
            sb_printf(b, "%s%s", i ? ", " : "", v->items[i]->is_null ? "null" : v->items[i]->text);
        sb_printf(b, "]");
    } else if (v->kind == MMD_YAML_MAP) {
        sb_printf(b, "a mapping");
    } else if (v->is_null) {
        sb_printf(b, "null");
    } else {
        const char *q = v->quoted ? "\"" : "";
        size_t len = strlen(v->text);
        if (len > 80)
            sb_printf(b, "'%s%.77s...%s'", q, v->text, q);
        else
            sb_printf(b, "'%s%s%s'", q, v->text, q);
        if (v->quoted) sb_printf(b, " (a quoted string)");
    }
}

static mmd_status fail_at(mmd_status st, const mmd_ynode *at, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static mmd_status fail_at(mmd_status st, const mmd_ynode *at, const char *fmt, ...)
{
    char where[1200];
    mmd_yaml_where(at, where, sizeof where);
    sbuf b = {0};
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(&b, fmt, ap);
    va_end(ap);
    mmd_error(st, "%s: %s", where, sb_str(&b));
    free(b.p);
    return st;
}

/* "WHERE: PATH: expected WHAT, got GOT[ extra]" */
static mmd_status bad_value(const field *f, const char *path, const mmd_ynode *v,
                            const char *extra)
{
    sbuf b = {0};
    describe(f, &b);
    sb_printf(&b, ", got ");
    describe_got(v, &b);
    if (extra) sb_printf(&b, "%s", extra);
    mmd_status st = fail_at(MMD_ERR_INVALID, v, "%s: expected %s", path, sb_str(&b));
    free(b.p);
    return st;
}

static mmd_status unknown_key(const mmd_ynode *at, const char *prefix, const char *parent,
                              const char *key, const field *schema)
{
    size_t n = schema_len(schema);
    const char *cands[64];
    for (size_t i = 0; i < n && i < 64; i++) cands[i] = schema[i].key;
    const char *near = nearest(key, cands, n < 64 ? n : 64);
    char full[600];
    join_path(full, sizeof full, parent, key);
    sbuf b = {0};
    sb_printf(&b, "unknown key '%s'", full);
    if (near) sb_printf(&b, " (did you mean '%s'?)", near);
    if (parent && parent[0])
        sb_printf(&b, "; valid keys in %s: ", parent);
    else
        sb_printf(&b, "; valid top-level keys: ");
    schema_key_list(schema, &b);
    mmd_status st;
    if (prefix)
        st = mmd_error(MMD_ERR_INVALID, "%s: %s", prefix, sb_str(&b));
    else
        st = fail_at(MMD_ERR_INVALID, at, "%s", sb_str(&b));
    free(b.p);
    return st;
}

/* ------------------------------------------------------------------------------------ */
/* Scalars                                                                               */
/* ------------------------------------------------------------------------------------ */

enum { NUM_OK = 0, NUM_BAD = 1, NUM_NONFINITE = 2, NUM_RANGE = 3 };

static int parse_number(const char *s, double *out)
{
    const char *q = s;
    if (*q == '+' || *q == '-') q++;
    if (!strcasecmp(q, ".inf") || !strcasecmp(q, "inf") || !strcasecmp(q, "infinity") ||
        !strcasecmp(q, ".nan") || !strcasecmp(q, "nan"))
        return NUM_NONFINITE;
    /* Decimal notation only: strtod alone would also take hex floats and "nan(...)". */
    const char *p = q;
    int digits = 0;
    while (isdigit((unsigned char)*p)) p++, digits++;
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p)) p++, digits++;
    }
    if (!digits) return NUM_BAD;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!isdigit((unsigned char)*p)) return NUM_BAD;
        while (isdigit((unsigned char)*p)) p++;
    }
    if (*p) return NUM_BAD;
    double d = strtod(s, NULL);
    if (!isfinite(d)) return NUM_NONFINITE; /* overflow, e.g. 1e999 */
    *out = d;
    return NUM_OK;
}

/* Integers may be written as 200000 or 2e5 (a whole number below 2^53). */
static int parse_integer(const char *s, int64_t *out)
{
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    int all_digits = *p != 0;
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char)*q)) all_digits = 0;
    if (all_digits) {
        errno = 0;
        long long v = strtoll(s, NULL, 10);
        if (errno == ERANGE) return NUM_RANGE;
        *out = v;
        return NUM_OK;
    }
    double d;
    int r = parse_number(s, &d);
    if (r) return r;
    if (d != floor(d)) return NUM_BAD;
    if (fabs(d) > 9007199254740992.0) return NUM_RANGE;
    *out = (int64_t)d;
    return NUM_OK;
}

static int in_range(const field *f, double v)
{
    if ((f->flags & LO_OPEN) ? !(v > f->lo) : !(v >= f->lo)) return 0;
    if ((f->flags & HI_OPEN) ? !(v < f->hi) : !(v <= f->hi)) return 0;
    return 1;
}

static int is_plain_scalar(const mmd_ynode *v)
{
    return v && v->kind == MMD_YAML_SCALAR && !v->quoted && !v->is_null;
}

/* A number for float-valued fields (element checks of vectors and grids too). */
static mmd_status get_float(const field *f, const char *path, const mmd_ynode *v, double *out)
{
    if (!is_plain_scalar(v)) return bad_value(f, path, v, NULL);
    int r = parse_number(v->text, out);
    if (r == NUM_NONFINITE) return bad_value(f, path, v, " (NaN and infinity are not allowed)");
    if (r || !in_range(f, *out)) return bad_value(f, path, v, NULL);
    return MMD_OK;
}

static mmd_status get_int(const field *f, const char *path, const mmd_ynode *v, int64_t *out)
{
    if (!is_plain_scalar(v)) return bad_value(f, path, v, NULL);
    int r = parse_integer(v->text, out);
    if (r == NUM_NONFINITE) return bad_value(f, path, v, " (NaN and infinity are not allowed)");
    if (r || (double)*out < f->lo || (double)*out > f->hi) return bad_value(f, path, v, NULL);
    return MMD_OK;
}

static mmd_status get_enum(const field *f, const char *const *names, const char *path,
                           const mmd_ynode *v, int *out)
{
    if (!v || v->kind != MMD_YAML_SCALAR || v->is_null) return bad_value(f, path, v, NULL);
    for (int i = 0; names[i]; i++)
        if (!strcmp(names[i], v->text)) {
            *out = i;
            return MMD_OK;
        }
    const char *near = nearest(v->text, names, names_len(names));
    char extra[128] = "";
    if (near) snprintf(extra, sizeof extra, " (did you mean '%s'?)", near);
    return bad_value(f, path, v, extra);
}

/* ------------------------------------------------------------------------------------ */
/* Paths                                                                                 */
/* ------------------------------------------------------------------------------------ */

/* Lexical clean-up ("a/./b/../c" -> "a/c"), so paths in messages and in the resolved
 * config read naturally. */
static char *clean_path(const char *p)
{
    size_t len = strlen(p);
    char *out = mmd_malloc(len + 2, 1, "path");
    if (!out) return NULL;
    int abs = p[0] == '/';
    size_t on = 0;
    if (abs) out[on++] = '/';
    size_t base = on; /* where the first segment starts */
    const char *s = p;
    while (*s) {
        while (*s == '/') s++;
        if (!*s) break;
        const char *e = s;
        while (*e && *e != '/') e++;
        size_t sl = (size_t)(e - s);
        if (sl == 1 && s[0] == '.') {
            /* skip */
        } else if (sl == 2 && s[0] == '.' && s[1] == '.') {
            /* Drop the previous segment unless there is none or it is itself "..". */
            size_t k = on;
            while (k > base && out[k - 1] != '/') k--;
            int prev_dotdot = on - k == 2 && out[k] == '.' && out[k + 1] == '.';
            if (on > base && !prev_dotdot) {
                on = k > base ? k - 1 : base;
            } else if (!abs) {
                if (on > base) out[on++] = '/';
                out[on++] = '.';
                out[on++] = '.';
            }
        } else {
            if (on > base) out[on++] = '/';
            memcpy(out + on, s, sl);
            on += sl;
        }
        s = e;
    }
    if (on == 0) out[on++] = '.';
    out[on] = 0;
    return out;
}

typedef struct ctx {
    char cwd[4096];
} ctx;

/* Relative to the directory of the YAML file that wrote it (overrides: the working
 * directory), made absolute. */
static char *resolve_path(const ctx *c, const mmd_ynode *v)
{
    const char *t = v->text;
    char *joined;
    if (t[0] == '/') {
        joined = dup_str(t);
    } else {
        char *rel = v->line > 0 ? mmd_path_join(v->origin, t, 1) : dup_str(t);
        if (!rel) return NULL;
        if (rel[0] != '/' && c->cwd[0]) {
            joined = mmd_path_join(c->cwd, rel, 0);
            free(rel);
        } else {
            joined = rel;
        }
    }
    if (!joined) return NULL;
    char *out = clean_path(joined);
    free(joined);
    return out;
}

static void path_free(mmd_cfg_path *p)
{
    free(p->path);
    free(p->text);
    free(p->where);
    memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------------------------------ */
/* Defaults and freeing                                                                  */
/* ------------------------------------------------------------------------------------ */

static void init_fields(const field *s, void *base)
{
    for (; s->key; s++) {
        switch (s->kind) {
        case F_MAP:
            init_fields(s->sub, AT(base, s->off, char));
            if (s->flags & NULLABLE) *AT(base, s->has, int) = 0;
            break;
        case F_INT:
            *AT(base, s->off, int) = (int)s->def;
            if (s->flags & NULLABLE) *AT(base, s->has, int) = 0;
            break;
        case F_I64: *AT(base, s->off, int64_t) = (int64_t)s->def; break;
        case F_FLOAT:
            *AT(base, s->off, double) = s->def;
            if (s->flags & NULLABLE) *AT(base, s->has, int) = 0;
            break;
        case F_BOOL:
        case F_ENUM: *AT(base, s->off, int) = (int)s->def; break;
        case F_VEC:
            for (int i = 0; i < s->n; i++)
                AT(base, s->off, double)[i] = s->def_vec ? s->def_vec[i] : 0;
            if (s->flags & NULLABLE) *AT(base, s->has, int) = 0;
            break;
        case F_GRID: {
            mmd_cfg_grid *g = AT(base, s->off, mmd_cfg_grid);
            g->start = s->def_vec[0];
            g->stop = s->def_vec[1];
            g->step = s->def_vec[2];
            g->count = (int)llround((g->stop - g->start) / g->step) + 1;
            break;
        }
        case F_INTLIST:
            for (int i = 0; i < s->n; i++)
                AT(base, s->off, int)[i] = i < s->def_n ? (int)s->def_vec[i] : 0;
            *AT(base, s->cnt, int) = s->def_n;
            break;
        case F_STR:
        case F_PATH:
        case F_SEQ:
        case F_NAMED: break; /* zero = absent / empty */
        }
    }
}

static void free_fields(const field *s, void *base)
{
    for (; s->key; s++) {
        switch (s->kind) {
        case F_MAP: free_fields(s->sub, AT(base, s->off, char)); break;
        case F_STR:
            free(*AT(base, s->off, char *));
            *AT(base, s->off, char *) = NULL;
            break;
        case F_PATH: path_free(AT(base, s->off, mmd_cfg_path)); break;
        case F_SEQ:
        case F_NAMED: {
            char *items = *AT(base, s->off, char *);
            size_t n = *AT(base, s->cnt, size_t);
            for (size_t i = 0; items && i < n; i++) {
                char *item = items + i * s->item_size;
                if (s->kind == F_NAMED) {
                    free(((char **)item)[0]);
                    free(((char **)item)[1]);
                }
                free_fields(s->sub, item);
            }
            free(items);
            *AT(base, s->off, char *) = NULL;
            *AT(base, s->cnt, size_t) = 0;
            break;
        }
        default: break;
        }
    }
}

void mmd_experiment_defaults(mmd_experiment *e)
{
    memset(e, 0, sizeof *e);
    init_fields(k_top, e);
}

void mmd_experiment_free(mmd_experiment *e)
{
    if (!e) return;
    free_fields(k_top, e);
    free(e->source);
    memset(e, 0, sizeof *e);
}

/* ------------------------------------------------------------------------------------ */
/* Extraction                                                                            */
/* ------------------------------------------------------------------------------------ */

static mmd_status extract_fields(const ctx *c, const field *schema, void *base,
                                 const mmd_ynode *map, const char *path, const mmd_ynode *near);

static mmd_status check_grid(const field *f, const char *path, const mmd_ynode *v,
                             mmd_cfg_grid *g)
{
    double t[3];
    if (v->kind != MMD_YAML_SEQ || v->n != 3) return bad_value(f, path, v, NULL);
    for (int i = 0; i < 3; i++) {
        const mmd_ynode *x = v->items[i];
        if (!is_plain_scalar(x)) return bad_value(f, path, v, NULL);
        int r = parse_number(x->text, &t[i]);
        if (r == NUM_NONFINITE)
            return bad_value(f, path, v, " (NaN and infinity are not allowed)");
        if (r) return bad_value(f, path, v, NULL);
    }
    double span = t[1] - t[0];
    if (!(t[0] >= f->lo && t[1] <= f->hi && t[0] <= t[1] && t[2] > 0))
        return bad_value(f, path, v, NULL);
    if (f->hi - f->lo > 360 && span > 360) return bad_value(f, path, v, " (spans more than 360)");
    double k = span / t[2];
    double kr = floor(k + 0.5);
    if (fabs(k - kr) > 1e-6 * (kr > 1 ? kr : 1))
        return bad_value(f, path, v, " (stop - start is not a whole number of steps)");
    if (kr + 1 > 1e6) return bad_value(f, path, v, " (more than 1e6 bins)");
    g->start = t[0];
    g->stop = t[1];
    g->step = t[2];
    g->count = (int)kr + 1;
    return MMD_OK;
}

static mmd_status extract_value(const ctx *c, const field *f, void *base, const mmd_ynode *v,
                                const char *path, const mmd_ynode *near)
{
    mmd_status st;
    int absent = !v || (v->kind == MMD_YAML_SCALAR && v->is_null);
    if (absent) {
        if (f->flags & REQUIRED) {
            if (v) return bad_value(f, path, v, NULL);
        {
            sbuf b = {0};
            describe(f, &b);
            st = fail_at(MMD_ERR_INVALID, near, "missing required key '%s' (%s)", path, sb_str(&b));
            free(b.p);
            return st;
        }
        }
        switch (f->kind) {
        case F_MAP:
            if (f->flags & NULLABLE) {
                *AT(base, f->has, int) = 0;
                return MMD_OK;
            }
            /* An absent block still has to satisfy its required keys. */
            return extract_fields(c, f->sub, AT(base, f->off, char), NULL, path, near);
        case F_SEQ:
        case F_NAMED: return MMD_OK;
        case F_STR:
        case F_PATH:
            if (v && !(f->flags & NULLABLE)) return bad_value(f, path, v, NULL);
            return MMD_OK;
        default:
            if (!(f->flags & NULLABLE)) {
                if (v) return bad_value(f, path, v, NULL);
                return MMD_OK; /* keep the default */
            }
            *AT(base, f->has, int) = 0;
            return MMD_OK;
        }
    }

    switch (f->kind) {
    case F_MAP:
        if (v->kind != MMD_YAML_MAP) return bad_value(f, path, v, NULL);
        if (f->flags & NULLABLE) *AT(base, f->has, int) = 1;
        return extract_fields(c, f->sub, AT(base, f->off, char), v, path, v);
    case F_INT:
    case F_I64: {
        int64_t x;
        if ((st = get_int(f, path, v, &x))) return st;
        if (f->kind == F_INT)
            *AT(base, f->off, int) = (int)x;
        else
            *AT(base, f->off, int64_t) = x;
        if (f->kind == F_INT && (f->flags & NULLABLE)) *AT(base, f->has, int) = 1;
        return MMD_OK;
    }
    case F_FLOAT: {
        double x;
        if ((st = get_float(f, path, v, &x))) return st;
        *AT(base, f->off, double) = x;
        if (f->flags & NULLABLE) *AT(base, f->has, int) = 1;
        return MMD_OK;
    }
    case F_BOOL: {
        if (!is_plain_scalar(v)) return bad_value(f, path, v, NULL);
        const char *t = v->text;
        /* YAML 1.1's yes/no/on/off are deliberately not booleans here: "no" as a value
         * is far more often a typo or a name than a considered false. */
        if (!strcmp(t, "true") || !strcmp(t, "True") || !strcmp(t, "TRUE"))
            *AT(base, f->off, int) = 1;
        else if (!strcmp(t, "false") || !strcmp(t, "False") || !strcmp(t, "FALSE"))
            *AT(base, f->off, int) = 0;
        else
            return bad_value(f, path, v, NULL);
        return MMD_OK;
    }
    case F_ENUM: return get_enum(f, f->names, path, v, AT(base, f->off, int));
    case F_STR: {
        if (v->kind != MMD_YAML_SCALAR) return bad_value(f, path, v, NULL);
        if (f->names) {
            int idx;
            if ((st = get_enum(f, f->names, path, v, &idx))) return st;
        }
        if (f->flags & NAME_CHARS) {
            const char *t = v->text;
            int ok = t[0] != 0;
            for (; *t; t++)
                if (!isalnum((unsigned char)*t) && *t != '.' && *t != '_' && *t != '-') ok = 0;
            if (!ok) return bad_value(f, path, v, NULL);
        } else if (!v->text[0]) {
            return bad_value(f, path, v, " (empty)");
        }
        char *s = dup_str(v->text);
        if (!s) return MMD_ERR_NOMEM;
        free(*AT(base, f->off, char *));
        *AT(base, f->off, char *) = s;
        return MMD_OK;
    }
    case F_PATH: {
        if (v->kind != MMD_YAML_SCALAR || !v->text[0]) return bad_value(f, path, v, NULL);
        mmd_cfg_path *p = AT(base, f->off, mmd_cfg_path);
        path_free(p);
        char where[1200];
        p->path = resolve_path(c, v);
        p->text = dup_str(v->text);
        p->where = dup_str(mmd_yaml_where(v, where, sizeof where));
        if (!p->path || !p->text || !p->where) {
            path_free(p);
            return mmd_error(MMD_ERR_NOMEM, "out of memory resolving path %s", path);
        }
        return MMD_OK;
    }
    case F_VEC: {
        if (v->kind != MMD_YAML_SEQ || v->n != (size_t)f->n) return bad_value(f, path, v, NULL);
        double *out = AT(base, f->off, double);
        field ef = *f; /* an element is described as a single number */
        ef.kind = F_FLOAT;
        for (int i = 0; i < f->n; i++) {
            char ep[600];
            spath(ep, sizeof ep, "%s[%d]", path, i);
            if ((st = get_float(&ef, ep, v->items[i], &out[i]))) return st;
        }
        for (int i = 0; f->order && i + 1 < f->n; i += 2) {
            int ok = f->order == 1 ? out[i] < out[i + 1] : out[i] <= out[i + 1];
            if (!ok) return bad_value(f, path, v, NULL);
        }
        if (f->flags & NULLABLE) *AT(base, f->has, int) = 1;
        return MMD_OK;
    }
    case F_GRID: return check_grid(f, path, v, AT(base, f->off, mmd_cfg_grid));
    case F_INTLIST: {
        if (v->kind != MMD_YAML_SEQ || v->n < 1 || v->n > (size_t)f->n)
            return bad_value(f, path, v, NULL);
        int *out = AT(base, f->off, int);
        field ef = *f;
        ef.kind = F_INT;
        for (size_t i = 0; i < v->n; i++) {
            char ep[600];
            int64_t x;
            spath(ep, sizeof ep, "%s[%zu]", path, i);
            if ((st = get_int(&ef, ep, v->items[i], &x))) return st;
            out[i] = (int)x;
        }
        for (int i = (int)v->n; i < f->n; i++) out[i] = 0;
        *AT(base, f->cnt, int) = (int)v->n;
        return MMD_OK;
    }
    case F_SEQ:
    case F_NAMED: {
        int named = f->kind == F_NAMED;
        if (v->kind != (named ? MMD_YAML_MAP : MMD_YAML_SEQ)) return bad_value(f, path, v, NULL);
        if (!v->n) return MMD_OK;
        char *items = mmd_calloc(v->n, f->item_size, path);
        if (!items) return MMD_ERR_NOMEM;
        *AT(base, f->off, char *) = items;
        *AT(base, f->cnt, size_t) = v->n;
        for (size_t i = 0; i < v->n; i++) {
            char *item = items + i * f->item_size;
            init_fields(f->sub, item);
            char ip[600];
            const mmd_ynode *val = v->items[i];
            if (named) {
                const mmd_ynode *k = v->keys[i];
                char where[1200];
                if (!k->text[0] || k->is_null)
                    return fail_at(MMD_ERR_INVALID, k, "%s: empty name", path);
                ((char **)item)[0] = dup_str(k->text);
                ((char **)item)[1] = dup_str(mmd_yaml_where(k, where, sizeof where));
                if (!((char **)item)[0] || !((char **)item)[1]) return MMD_ERR_NOMEM;
                spath(ip, sizeof ip, "%s.%s", path, k->text);
                /* `NAME:` with nothing under it is an empty entry, judged below. */
                if (val->kind == MMD_YAML_SCALAR && val->is_null) val = NULL;
            } else {
                spath(ip, sizeof ip, "%s[%zu]", path, i);
            }
            if (val && val->kind != MMD_YAML_MAP) {
                field itemf = {.key = f->key, .kind = F_MAP, .sub = f->sub};
                return bad_value(&itemf, ip, val, NULL);
            }
            const mmd_ynode *near_item = val ? val : (named ? v->keys[i] : v);
            if ((st = extract_fields(c, f->sub, item, val, ip, near_item))) return st;
        }
        return MMD_OK;
    }
    }
    return mmd_error(MMD_ERR_INTERNAL, "config: unhandled field kind for %s", path);
}

static mmd_status extract_fields(const ctx *c, const field *schema, void *base,
                                 const mmd_ynode *map, const char *path, const mmd_ynode *near)
{
    mmd_status st;
    if (map) {
        /* Unknown keys first: a misspelt key is the likeliest cause of any later error. */
        for (size_t i = 0; i < map->n; i++)
            if (!schema_find(schema, map->keys[i]->text))
                return unknown_key(map->keys[i], NULL, path, map->keys[i]->text, schema);
    }
    for (const field *f = schema; f->key; f++) {
        char sub[600];
        join_path(sub, sizeof sub, path, f->key);
        const mmd_ynode *v = mmd_yaml_get(map, f->key);
        if ((st = extract_value(c, f, base, v, sub, map ? map : near))) return st;
    }
    return MMD_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Checks across keys                                                                    */
/* ------------------------------------------------------------------------------------ */

static mmd_status cross_check(mmd_experiment *e)
{
    for (size_t i = 0; i < e->scene.n_materials; i++) {
        const mmd_cfg_material *m = &e->scene.materials[i];
        if (m->itu && (m->has_eps_r || m->has_sigma))
            return mmd_error(MMD_ERR_INVALID,
                             "%s: scene.materials.%s: 'itu' and explicit '%s' exclude each "
                             "other; give either itu: NAME (with optional scattering, xpd, "
                             "thickness_m, alpha_r) or eps_r and sigma_s_per_m",
                             m->where, m->name, m->has_eps_r ? "eps_r" : "sigma_s_per_m");
        if (!m->itu && !(m->has_eps_r && m->has_sigma)) {
            sbuf b = {0};
            names_list(k_itu, &b);
            mmd_status st = mmd_error(
                MMD_ERR_INVALID,
                "%s: scene.materials.%s: expected either itu: NAME (one of %s) or both eps_r "
                "and sigma_s_per_m; %s",
                m->where, m->name, sb_str(&b),
                m->has_eps_r ? "sigma_s_per_m is missing"
                             : (m->has_sigma ? "eps_r is missing" : "neither is given"));
            free(b.p);
            return st;
        }
    }
    if (e->rx.n_poses > 0 && e->rx.poses_csv.path)
        return mmd_error(MMD_ERR_INVALID,
                         "%s: rx.poses_csv: give either rx.poses (a list) or rx.poses_csv (a "
                         "file), not both",
                         e->rx.poses_csv.where);
    return MMD_OK;
}

/* The default name is the experiment file's stem, made safe to use as a directory name. */
static char *stem_name(const char *origin)
{
    const char *b = strrchr(origin, '/');
    b = b ? b + 1 : origin;
    size_t len = strlen(b);
    const char *dot = strrchr(b, '.');
    if (dot && dot != b) len = (size_t)(dot - b);
    if (!len) return dup_str("experiment");
    char *s = mmd_malloc(len + 1, 1, "name");
    if (!s) return NULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)b[i];
        s[i] = (isalnum(ch) || ch == '.' || ch == '_' || ch == '-') ? (char)ch : '_';
    }
    s[len] = 0;
    return s;
}

/* ------------------------------------------------------------------------------------ */
/* Overrides (--set KEY=VALUE)                                                           */
/* ------------------------------------------------------------------------------------ */

static mmd_ynode *node_new(const char *origin, mmd_ynode_kind kind, const char *text)
{
    mmd_ynode *n = mmd_calloc(1, sizeof *n, "YAML node");
    if (!n) return NULL;
    n->kind = kind;
    n->origin = dup_str(origin);
    if (text) n->text = dup_str(text);
    if (!n->origin || (text && !n->text)) {
        mmd_yaml_free(n);
        return NULL;
    }
    if (kind == MMD_YAML_SCALAR && !text[0]) n->is_null = 1;
    return n;
}

/* The value slot for `key` in a map, appending an empty pair when absent. */
static mmd_ynode **map_slot(mmd_ynode *map, const char *key, const char *origin)
{
    for (size_t i = 0; i < map->n; i++)
        if (!strcmp(map->keys[i]->text, key)) return &map->items[i];
    mmd_ynode **ni = mmd_realloc(map->items, map->n + 1, sizeof *ni, "YAML items");
    if (!ni) return NULL;
    map->items = ni;
    mmd_ynode **nk = mmd_realloc(map->keys, map->n + 1, sizeof *nk, "YAML keys");
    if (!nk) return NULL;
    map->keys = nk;
    mmd_ynode *k = node_new(origin, MMD_YAML_SCALAR, key);
    if (!k) return NULL;
    map->keys[map->n] = k;
    map->items[map->n] = NULL;
    return &map->items[map->n++];
}

static mmd_status apply_set(mmd_ynode *root, const char *arg)
{
    mmd_status st = MMD_OK;
    char *origin = fmt_alloc("--set %s", arg);
    if (!origin) return MMD_ERR_NOMEM;
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) {
        st = mmd_error(MMD_ERR_INVALID, "%s: expected KEY=VALUE (e.g. --set solver.rays=1000)",
                       origin);
        free(origin);
        return st;
    }
    /* Key: "a.b[2].c" is read as "a.b.2.c"; surrounding spaces are ignored. The value goes
     * through libyaml, which checks its encoding; the key does not, and a key becomes a
     * name in the resolved YAML, which must load back (found by fuzz_experiment). */
    size_t klen = (size_t)(eq - arg);
    for (size_t i = 0; i < klen; i++) {
        unsigned char ch = (unsigned char)arg[i];
        int n = mmd_utf8_len((const unsigned char *)arg + i);
        if (ch < 0x20 || ch == 0x7f || !n || i + (size_t)n > klen) {
            st = mmd_error(MMD_ERR_INVALID, "--set: the key (before '=') has %s at byte %zu; expected printable UTF-8 "
                           "text such as scene.materials.concrete.eps_r",
                           n ? "a control character" : "an invalid UTF-8 byte", i + 1);
            free(origin);
            return st;
        }
        i += (size_t)n - 1;
    }
    char *key = mmd_malloc(klen + 1, 1, "override key");
    if (!key) { free(origin); return MMD_ERR_NOMEM; }
    size_t kn = 0;
    for (size_t i = 0; i < klen; i++) {
        char ch = arg[i];
        if (ch == '[') ch = '.';
        if (ch == ']' || ch == ' ' || ch == '\t') continue;
        key[kn++] = ch;
    }
    key[kn] = 0;

    mmd_ynode *val = NULL;
    if ((st = mmd_yaml_load_string(eq + 1, strlen(eq + 1), origin, 0, &val))) goto done;
    if (!val && !(val = node_new(origin, MMD_YAML_SCALAR, ""))) { st = MMD_ERR_NOMEM; goto done; }

    const field *schema = k_top;  /* fields of the mapping `cur` (NULL inside a container) */
    const field *container = NULL; /* F_SEQ/F_NAMED whose node `cur` is */
    mmd_ynode *cur = root;
    char done_path[600] = "";
    char *save = NULL;
    for (char *seg = strtok_r(key, ".", &save); seg; seg = strtok_r(NULL, ".", &save)) {
        int last = save == NULL || *save == 0;
        /* strtok_r leaves save at the rest; an empty rest means this was the last one. */
        char parent[600];
        snprintf(parent, sizeof parent, "%s", done_path);
        mmd_ynode **slot;
        const field *f = NULL;
        if (container && container->kind == F_SEQ) {
            char *endp;
            errno = 0;
            unsigned long idx = strtoul(seg, &endp, 10);
            size_t dl = strlen(done_path);
            spath(done_path + dl, sizeof done_path - dl, "[%s]", seg);
            if (!isdigit((unsigned char)seg[0]) || *endp || errno) {
                st = mmd_error(MMD_ERR_INVALID,
                               "%s: '%s' is a list; expected an item index, got '%s'", origin,
                               parent, seg);
                goto done;
            }
            if (cur->kind != MMD_YAML_SEQ || idx >= cur->n) {
                st = mmd_error(MMD_ERR_INVALID, "%s: no item %lu in '%s' (it has %zu)", origin,
                               idx, parent, cur->kind == MMD_YAML_SEQ ? cur->n : (size_t)0);
                goto done;
            }
            slot = &cur->items[idx];
        } else {
            if (!seg[0]) {
                st = mmd_error(MMD_ERR_INVALID, "%s: empty key segment", origin);
                goto done;
            }
            if (!container) {
                f = schema_find(schema, seg);
                if (!f) {
                    st = unknown_key(NULL, origin, parent, seg, schema);
                    goto done;
                }
            }
            join_path(parent, sizeof parent, done_path, seg);
            snprintf(done_path, sizeof done_path, "%s", parent);
            if (cur->kind != MMD_YAML_MAP) {
                char where[1200];
                st = mmd_error(MMD_ERR_INVALID,
                               "%s: cannot set '%s': its parent (%s) is not a mapping", origin,
                               done_path, mmd_yaml_where(cur, where, sizeof where));
                goto done;
            }
            slot = map_slot(cur, seg, origin);
            if (!slot) { st = MMD_ERR_NOMEM; goto done; }
        }
        if (last) {
            mmd_yaml_free(*slot);
            *slot = val;
            val = NULL;
            break;
        }
        /* Descend: decide what the next level is and make sure the tree has it. */
        const field *next_schema = NULL, *next_container = NULL;
        mmd_ynode_kind need;
        if (container) { /* an item of a list or of a NAME: map */
            next_schema = container->sub;
            need = MMD_YAML_MAP;
        } else if (f->kind == F_MAP) {
            next_schema = f->sub;
            need = MMD_YAML_MAP;
        } else if (f->kind == F_NAMED) {
            next_container = f;
            need = MMD_YAML_MAP;
        } else if (f->kind == F_SEQ) {
            next_container = f;
            need = MMD_YAML_SEQ;
        } else {
            st = mmd_error(MMD_ERR_INVALID, "%s: '%s' is a single value, not a block; it has no "
                                            "key '%s'", origin, done_path, save);
            goto done;
        }
        if (!*slot || ((*slot)->kind == MMD_YAML_SCALAR && (*slot)->is_null)) {
            if (need == MMD_YAML_SEQ) {
                st = mmd_error(MMD_ERR_INVALID, "%s: '%s' has no items to set; set the whole "
                                                "list instead (e.g. --set %s=[...])",
                               origin, done_path, done_path);
                goto done;
            }
            mmd_yaml_free(*slot);
            if (!(*slot = node_new(origin, MMD_YAML_MAP, NULL))) { st = MMD_ERR_NOMEM; goto done; }
        } else if ((*slot)->kind != need) {
            char where[1200];
            st = mmd_error(MMD_ERR_INVALID, "%s: '%s' at %s is not a %s", origin, done_path,
                           mmd_yaml_where(*slot, where, sizeof where),
                           need == MMD_YAML_MAP ? "mapping" : "list");
            goto done;
        }
        cur = *slot;
        schema = next_schema;
        container = next_container;
    }
done:
    mmd_yaml_free(val);
    free(key);
    free(origin);
    return st;
}

/* ------------------------------------------------------------------------------------ */
/* Loading                                                                               */
/* ------------------------------------------------------------------------------------ */

static mmd_status load_text(const char *text, size_t len, const char *origin,
                            const char *const *sets, size_t n_sets, mmd_experiment *out)
{
    memset(out, 0, sizeof *out);
    ctx c;
    if (!getcwd(c.cwd, sizeof c.cwd)) c.cwd[0] = 0;
    mmd_ynode *root = NULL;
    mmd_status st = mmd_yaml_load_string(text, len, origin, 1, &root);
    if (st) return st;
    if (!root) {
        /* Empty file: validation will name the first missing required key. */
        root = node_new(origin, MMD_YAML_MAP, NULL);
        if (!root) return MMD_ERR_NOMEM;
        root->line = root->col = 1;
    }
    if (root->kind != MMD_YAML_MAP) {
        field topf = {.key = "", .kind = F_MAP, .sub = k_top};
        sbuf b = {0};
        describe(&topf, &b);
        st = fail_at(MMD_ERR_INVALID, root, "expected the experiment as %s", sb_str(&b));
        free(b.p);
        mmd_yaml_free(root);
        return st;
    }
    for (size_t i = 0; i < n_sets && !st; i++) st = apply_set(root, sets[i]);
    if (!st) {
        mmd_experiment_defaults(out);
        st = extract_fields(&c, k_top, out, root, "", root);
    }
    if (!st) st = cross_check(out);
    if (!st && !(out->source = dup_str(origin))) st = MMD_ERR_NOMEM;
    if (!st && !out->name && !(out->name = stem_name(origin))) st = MMD_ERR_NOMEM;
    if (!st && !out->output.dir.path) {
        mmd_cfg_path *d = &out->output.dir;
        d->text = fmt_alloc("runs/%s", out->name);
        d->where = dup_str("default");
        char *abs = NULL;
        if (d->text) abs = c.cwd[0] ? mmd_path_join(c.cwd, d->text, 0) : dup_str(d->text);
        d->path = abs ? clean_path(abs) : NULL;
        free(abs);
        if (!d->text || !d->where || !d->path) st = MMD_ERR_NOMEM;
    }
    mmd_yaml_free(root);
    if (st) mmd_experiment_free(out);
    return st;
}

mmd_status mmd_experiment_load_string(const char *text, const char *origin,
                                      const char *const *sets, size_t n_sets,
                                      mmd_experiment *out)
{
    return load_text(text, strlen(text), origin ? origin : "<string>", sets, n_sets, out);
}

mmd_status mmd_experiment_load(const char *path, const char *const *sets, size_t n_sets,
                               mmd_experiment *out)
{
    memset(out, 0, sizeof *out);
    char *data;
    size_t size;
    mmd_status st = mmd_read_file(path, &data, &size);
    if (st) return st;
    st = load_text(data, size, path, sets, n_sets, out);
    free(data);
    return st;
}

/* ------------------------------------------------------------------------------------ */
/* Writer                                                                                */
/* ------------------------------------------------------------------------------------ */

static void emit_quoted(sbuf *b, const char *s)
{
    sb_printf(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            sb_printf(b, "\\%c", *p);
        else if (*p == '\n')
            sb_printf(b, "\\n");
        else if (*p == '\t')
            sb_printf(b, "\\t");
        else if (*p < 0x20 || *p == 0x7f)
            sb_printf(b, "\\x%02x", *p);
        else
            sb_printf(b, "%c", *p);
    }
    sb_printf(b, "\"");
}

static void emit_num(sbuf *b, double v)
{
    char t[64];
    fmt_num(v, t, sizeof t);
    sb_printf(b, "%s", t);
}

static void emit_fields(sbuf *b, const field *s, const void *base, int indent);

/* A scalar-ish value on the current line (no newline). Returns 0 for block values. */
static int emit_inline(sbuf *b, const field *f, const void *base)
{
    switch (f->kind) {
    case F_INT:
        if ((f->flags & NULLABLE) && !*CAT(base, f->has, int)) sb_printf(b, "null");
        else sb_printf(b, "%d", *CAT(base, f->off, int));
        return 1;
    case F_I64: sb_printf(b, "%lld", (long long)*CAT(base, f->off, int64_t)); return 1;
    case F_FLOAT:
        if ((f->flags & NULLABLE) && !*CAT(base, f->has, int)) sb_printf(b, "null");
        else emit_num(b, *CAT(base, f->off, double));
        return 1;
    case F_BOOL: sb_printf(b, "%s", *CAT(base, f->off, int) ? "true" : "false"); return 1;
    case F_ENUM: sb_printf(b, "%s", f->names[*CAT(base, f->off, int)]); return 1;
    case F_STR: {
        const char *s = *CAT(base, f->off, char *);
        if (s) emit_quoted(b, s);
        else sb_printf(b, "null");
        return 1;
    }
    case F_PATH: {
        const mmd_cfg_path *p = CAT(base, f->off, mmd_cfg_path);
        if (p->path) emit_quoted(b, p->path);
        else sb_printf(b, "null");
        return 1;
    }
    case F_VEC:
        if ((f->flags & NULLABLE) && !*CAT(base, f->has, int)) {
            sb_printf(b, "null");
            return 1;
        }
        sb_printf(b, "[");
        for (int i = 0; i < f->n; i++) {
            if (i) sb_printf(b, ", ");
            emit_num(b, CAT(base, f->off, double)[i]);
        }
        sb_printf(b, "]");
        return 1;
    case F_GRID: {
        const mmd_cfg_grid *g = CAT(base, f->off, mmd_cfg_grid);
        sb_printf(b, "[");
        emit_num(b, g->start);
        sb_printf(b, ", ");
        emit_num(b, g->stop);
        sb_printf(b, ", ");
        emit_num(b, g->step);
        sb_printf(b, "]");
        return 1;
    }
    case F_INTLIST: {
        int n = *CAT(base, f->cnt, int);
        sb_printf(b, "[");
        for (int i = 0; i < n; i++) sb_printf(b, "%s%d", i ? ", " : "", CAT(base, f->off, int)[i]);
        sb_printf(b, "]");
        return 1;
    }
    default: return 0;
    }
}

static void emit_flow_map(sbuf *b, const field *s, const void *base)
{
    sb_printf(b, "{");
    for (size_t i = 0; s[i].key; i++) {
        sb_printf(b, "%s%s: ", i ? ", " : "", s[i].key);
        if (!emit_inline(b, &s[i], base)) {
            if (s[i].kind == F_MAP) emit_flow_map(b, s[i].sub, CAT(base, s[i].off, char));
            else sb_printf(b, "null");
        }
    }
    sb_printf(b, "}");
}

static void emit_fields(sbuf *b, const field *s, const void *base, int indent)
{
    for (; s->key; s++) {
        sb_printf(b, "%*s%s:", indent, "", s->key);
        if (s->kind != F_MAP && s->kind != F_SEQ && s->kind != F_NAMED) {
            sb_printf(b, " ");
            emit_inline(b, s, base);
            sb_printf(b, "\n");
            continue;
        }
        if (s->kind == F_MAP) {
            if ((s->flags & NULLABLE) && !*CAT(base, s->has, int)) {
                sb_printf(b, " null\n");
                continue;
            }
            sb_printf(b, "\n");
            emit_fields(b, s->sub, CAT(base, s->off, char), indent + 2);
            continue;
        }
        const char *items = *CAT(base, s->off, char *);
        size_t n = *CAT(base, s->cnt, size_t);
        if (!n) {
            sb_printf(b, " %s\n", s->kind == F_SEQ ? "[]" : "{}");
            continue;
        }
        sb_printf(b, "\n");
        for (size_t i = 0; i < n; i++) {
            const char *item = items + i * s->item_size;
            if (s->kind == F_SEQ) {
                sb_printf(b, "%*s- ", indent + 2, "");
                emit_flow_map(b, s->sub, item);
                sb_printf(b, "\n");
            } else {
                sb_printf(b, "%*s", indent + 2, "");
                emit_quoted(b, ((char *const *)item)[0]);
                sb_printf(b, ":\n");
                emit_fields(b, s->sub, item, indent + 4);
            }
        }
    }
}

char *mmd_experiment_to_yaml(const mmd_experiment *e)
{
    sbuf b = {0};
    sb_printf(&b, "# mmdiff resolved experiment: every key with its effective value (defaults\n"
                  "# filled in, paths absolute). Loading this file reproduces the run's\n"
                  "# settings.\n");
    if (e->source) {
        sb_printf(&b, "# source: ");
        for (const char *p = e->source; *p; p++) sb_printf(&b, "%c", *p == '\n' ? ' ' : *p);
        sb_printf(&b, "\n");
    }
    emit_fields(&b, k_top, e, 0);
    if (b.oom) {
        free(b.p);
        mmd_error(MMD_ERR_NOMEM, "out of memory writing the resolved experiment");
        return NULL;
    }
    return b.p;
}

mmd_status mmd_experiment_write_resolved(const mmd_experiment *e, const char *path)
{
    char *text = mmd_experiment_to_yaml(e);
    if (!text) return MMD_ERR_NOMEM;
    mmd_status st = mmd_write_file_atomic(path, text, strlen(text));
    free(text);
    return st;
}

/* ------------------------------------------------------------------------------------ */
/* Equality, names, schema listing                                                       */
/* ------------------------------------------------------------------------------------ */

static int str_eq(const char *a, const char *b)
{
    if (!a || !b) return a == b;
    return !strcmp(a, b);
}

static int fields_equal(const field *s, const void *a, const void *b)
{
    for (; s->key; s++) {
        int nullable_num = (s->flags & NULLABLE) &&
                           (s->kind == F_INT || s->kind == F_FLOAT || s->kind == F_VEC ||
                            s->kind == F_MAP);
        if (nullable_num) {
            int ha = *CAT(a, s->has, int), hb = *CAT(b, s->has, int);
            if (ha != hb) return 0;
            if (!ha) continue;
        }
        switch (s->kind) {
        case F_MAP:
            if (!fields_equal(s->sub, CAT(a, s->off, char), CAT(b, s->off, char))) return 0;
            break;
        case F_INT:
        case F_BOOL:
        case F_ENUM:
            if (*CAT(a, s->off, int) != *CAT(b, s->off, int)) return 0;
            break;
        case F_I64:
            if (*CAT(a, s->off, int64_t) != *CAT(b, s->off, int64_t)) return 0;
            break;
        case F_FLOAT:
            if (*CAT(a, s->off, double) != *CAT(b, s->off, double)) return 0;
            break;
        case F_STR:
            if (!str_eq(*CAT(a, s->off, char *), *CAT(b, s->off, char *))) return 0;
            break;
        case F_PATH:
            if (!str_eq(CAT(a, s->off, mmd_cfg_path)->path, CAT(b, s->off, mmd_cfg_path)->path))
                return 0;
            break;
        case F_VEC:
            for (int i = 0; i < s->n; i++)
                if (CAT(a, s->off, double)[i] != CAT(b, s->off, double)[i]) return 0;
            break;
        case F_GRID: {
            const mmd_cfg_grid *ga = CAT(a, s->off, mmd_cfg_grid);
            const mmd_cfg_grid *gb = CAT(b, s->off, mmd_cfg_grid);
            if (ga->start != gb->start || ga->stop != gb->stop || ga->step != gb->step ||
                ga->count != gb->count)
                return 0;
            break;
        }
        case F_INTLIST: {
            int n = *CAT(a, s->cnt, int);
            if (n != *CAT(b, s->cnt, int)) return 0;
            for (int i = 0; i < n; i++)
                if (CAT(a, s->off, int)[i] != CAT(b, s->off, int)[i]) return 0;
            break;
        }
        case F_SEQ:
        case F_NAMED: {
            size_t n = *CAT(a, s->cnt, size_t);
            if (n != *CAT(b, s->cnt, size_t)) return 0;
            const char *ia = *CAT(a, s->off, char *), *ib = *CAT(b, s->off, char *);
            for (size_t i = 0; i < n; i++) {
                const char *xa = ia + i * s->item_size, *xb = ib + i * s->item_size;
                if (s->kind == F_NAMED && !str_eq(((char *const *)xa)[0], ((char *const *)xb)[0]))
                    return 0;
                if (!fields_equal(s->sub, xa, xb)) return 0;
            }
            break;
        }
        }
    }
    return 1;
}

int mmd_experiment_equal(const mmd_experiment *a, const mmd_experiment *b)
{
    return fields_equal(k_top, a, b);
}

mmd_status mmd_experiment_check_material_names(const mmd_experiment *e,
                                               const char *const *known, size_t n_known,
                                               const char *scene_label)
{
    for (size_t i = 0; i < e->scene.n_materials; i++) {
        const mmd_cfg_material *m = &e->scene.materials[i];
        int found = 0;
        for (size_t j = 0; j < n_known && !found; j++)
            found = known[j] && !strcmp(known[j], m->name);
        if (found) continue;
        const char *near = nearest(m->name, known, n_known);
        sbuf b = {0};
        for (size_t j = 0; j < n_known; j++) sb_printf(&b, "%s%s", j ? ", " : "", known[j]);
        mmd_status st = mmd_error(MMD_ERR_INVALID,
                                  "%s: scene.materials.%s: no material or object named '%s' in "
                                  "%s%s%s%s; known names: %s",
                                  m->where, m->name, m->name,
                                  scene_label ? scene_label : "the scene",
                                  near ? " (did you mean '" : "", near ? near : "",
                                  near ? "'?)" : "",
                                  n_known ? sb_str(&b) : "(none)");
        free(b.p);
        return st;
    }
    return MMD_OK;
}

static const field *find_field(const char *path)
{
    const field *s = k_top;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    char *save = NULL;
    const field *f = NULL;
    for (char *seg = strtok_r(buf, ".", &save); seg; seg = strtok_r(NULL, ".", &save)) {
        if (!s) return NULL;
        f = schema_find(s, seg);
        if (!f) return NULL;
        s = f->kind == F_MAP ? f->sub : NULL;
    }
    return f;
}

const char *mmd_cfg_enum_name(const char *key, int value)
{
    const field *f = find_field(key);
    if (!f || f->kind != F_ENUM || value < 0 || (size_t)value >= names_len(f->names)) return NULL;
    return f->names[value];
}

static void list_keys(const field *s, const char *prefix, sbuf *b)
{
    for (; s->key; s++) {
        char p[256];
        join_path(p, sizeof p, prefix, s->key);
        sb_printf(b, "%s\n", p);
        char sub[300];
        if (s->kind == F_MAP) list_keys(s->sub, p, b);
        if (s->kind == F_SEQ) {
            spath(sub, sizeof sub, "%s[]", p);
            list_keys(s->sub, sub, b);
        }
        if (s->kind == F_NAMED) {
            spath(sub, sizeof sub, "%s.<name>", p);
            list_keys(s->sub, sub, b);
        }
    }
}

char *mmd_experiment_schema_keys(void)
{
    sbuf b = {0};
    list_keys(k_top, "", &b);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
