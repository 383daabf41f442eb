/* Experiment config: YAML tree positions, schema extraction and defaults, relative paths,
 * every error class with FILE:LINE:COL, --set overrides, resolved-config round trip,
 * pose CSV, and that docs/experiment.md documents every key. */
#include "mmd_config.h"
#include "mmd_test.h"

#include <limits.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[PATH_MAX]; /* temp directory (absolute, no symlinks) */

static const char *tpath(const char *rel)
{
    static char buf[8][PATH_MAX + 64];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, PATH_MAX + 64, "%s/%s", g_dir, rel);
    return b;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(2); }
    fputs(text, f);
    fclose(f);
}

static int has(const char *hay, const char *needle)
{
    int ok = hay && strstr(hay, needle) != NULL;
    if (!ok) fprintf(stderr, "  message: %s\n  missing: %s\n", hay ? hay : "(null)", needle);
    return ok;
}

/* Load `text` as FILE (written under the temp dir) with overrides; expect failure with
 * `want` status and every needle (NULL-terminated) in the message. */
static void expect_error(const char *name, const char *text, const char *const *sets, size_t n_sets,
                         mmd_status want, ...)
{
    const char *p = tpath(name);
    write_text(p, text);
    mmd_experiment e;
    mmd_clear_error();
    mmd_status st = mmd_experiment_load(p, sets, n_sets, &e);
    CHECK(st == want, "%s: status %s, want %s (%s)", name, mmd_status_name(st), mmd_status_name(want),
          mmd_last_error());
    if (st == MMD_OK) mmd_experiment_free(&e);
    va_list ap;
    va_start(ap, want);
    for (const char *needle; (needle = va_arg(ap, const char *));) {
        char full[PATH_MAX + 512];
        /* "@" stands for the file's path, so positions can be asserted as "@:3:12:". */
        if (needle[0] == '@')
            snprintf(full, sizeof full, "%s%s", p, needle + 1);
        else
            snprintf(full, sizeof full, "%s", needle);
        CHECK(has(mmd_last_error(), full), "%s: message lacks '%s'", name, full);
    }
    va_end(ap);
}

#define TXLINE "tx: {position_m: [1, 2, 3]}\n"
#define MINIMAL "scene: {file: room.yaml}\n" TXLINE

static const char *FULL =
    "name: full_test\n"
    "description: \"every block\"\n"
    "scene:\n"
    "  file: scenes/room.yaml\n"
    "  frequency_hz: 28.0e9\n"
    "  materials:\n"
    "    walls: {itu: concrete, scattering: 0.25, xpd: 0.1, thickness_m: 0.2, alpha_r: 30}\n"
    "    wood: {eps_r: 2.5, sigma_s_per_m: 0.02}\n"
    "    \"odd name\": {itu: metal}\n"
    "  noise: {subdivide_m: 0.05, sigma_m: 0.01, hole_fraction: 0.02, hole_radius_m: 0.2,\n"
    "          decimate: 0.5, seed: 9}\n"
    "tx: {position_m: [1.5, 4.2, 2.2], pattern: tr38901, power_dbm: 10, yaw_deg: -30,\n"
    "     pitch_deg: 5, roll_deg: 1}\n"
    "rx:\n"
    "  array:\n"
    "    rows: 4\n"
    "    cols: 16\n"
    "    spacing_wavelengths: 0.6\n"
    "    window: none\n"
    "    element: hw_dipole\n"
    "    mode: mechanical\n"
    "    horn: {hpbw_deg: 12.5}\n"
    "  poses:\n"
    "    - {position_m: [1, 2, 1.2], yaw_deg: 90}\n"
    "    - position_m: [0.5, 0.25, 1.0]\n"
    "      pitch_deg: -10\n"
    "      roll_deg: 15\n"
    "aoa: {azimuth_deg: [-180, 180, 2], elevation_deg: [-90, 90, 0.5]}\n"
    "solver: {mode: specular, rays: 2e5, max_depth: 5, alpha_r: 120, diffuse: false,\n"
    "         transmission: true, polarization: scalar, seed: 12345678901, cache_mb: 0}\n"
    "coverage: {z_m: 1.5, cell_m: 0.05, rays: 500000, extent_m: [-1, 4, -0.5, 5]}\n"
    "train:\n"
    "  measurements: ../meas\n"
    "  model: per_object\n"
    "  hidden: [128, 32]\n"
    "  octaves: 4\n"
    "  lr: 1.0e-3\n"
    "  batch_poses: 16\n"
    "  epochs: 7\n"
    "  val_fraction: 0.2\n"
    "  early_stop_patience: 0\n"
    "  loss_floor_db: -50\n"
    "  fit_scale: false\n"
    "  seed: 3\n"
    "  checkpoint_every: 2\n"
    "  field_at: triangle\n"
    "calibrate_geometry: {object: table, lr: 0.05, steps: 50}\n"
    "dataset: {traj_poses: 400, rand_poses: 200, traj_step_m: 0.1, clearance_m: 0.4,\n"
    "          height_m: [1.1, 1.7], pitch_jitter_deg: 3, measurement_noise_db: 0.5,\n"
    "          noise_floor_db: -40, seed: 11}\n"
    "evaluate: {dynamic_range_db: 25, match_threshold_deg: 3}\n"
    "output: {dir: out/run1, measurements: true, png: false, paths: true}\n";

static void test_full(void)
{
    mkdir(tpath("exp"), 0755);
    const char *p = tpath("exp/full.yaml");
    write_text(p, FULL);
    mmd_experiment e;
    mmd_status st = mmd_experiment_load(p, NULL, 0, &e);
    CHECK(st == MMD_OK, "full example loads: %s", mmd_last_error());
    if (st) return;
    CHECK(!strcmp(e.name, "full_test"), "name %s", e.name);
    CHECK(e.description && !strcmp(e.description, "every block"), "description");
    CHECK(!strcmp(e.scene.file.path, tpath("exp/scenes/room.yaml")), "scene.file %s", e.scene.file.path);
    CHECK(!strcmp(e.scene.file.text, "scenes/room.yaml"), "scene.file text %s", e.scene.file.text);
    CHECK(has(e.scene.file.where, ":4:9"), "scene.file where %s", e.scene.file.where);
    CHECK(e.scene.frequency_hz == 28e9, "frequency %g", e.scene.frequency_hz);
    CHECK(e.scene.n_materials == 3, "3 materials");
    if (e.scene.n_materials == 3) {
        const mmd_cfg_material *w = &e.scene.materials[0], *d = &e.scene.materials[1],
                               *o = &e.scene.materials[2];
        CHECK(!strcmp(w->name, "walls") && w->itu && !strcmp(w->itu, "concrete"), "walls itu");
        CHECK(w->scattering == 0.25 && w->xpd == 0.1, "walls S, K_x");
        CHECK(w->has_thickness && w->thickness_m == 0.2, "walls thickness");
        CHECK(w->has_alpha_r && w->alpha_r == 30, "walls alpha_r");
        CHECK(!w->has_eps_r && !w->has_sigma, "walls has no explicit eps");
        CHECK(has(w->where, ":7:5"), "walls where %s", w->where);
        CHECK(!strcmp(d->name, "wood") && !d->itu && d->has_eps_r && d->eps_r == 2.5 &&
                  d->has_sigma && d->sigma_s_per_m == 0.02,
              "wood explicit");
        CHECK(d->scattering == 0 && d->xpd == 0 && !d->has_thickness && !d->has_alpha_r,
              "wood defaults");
        CHECK(!strcmp(o->name, "odd name") && !strcmp(o->itu, "metal"), "quoted material name");
    }
    const mmd_cfg_noise *nz = &e.scene.noise;
    CHECK(nz->enabled && nz->has_subdivide && nz->subdivide_m == 0.05 && nz->sigma_m == 0.01 &&
              nz->hole_fraction == 0.02 && nz->hole_radius_m == 0.2 && nz->decimate == 0.5 &&
              nz->seed == 9,
          "noise block");
    CHECK(e.tx.position_m[0] == 1.5 && e.tx.position_m[1] == 4.2 && e.tx.position_m[2] == 2.2,
          "tx position");
    CHECK(e.tx.pattern == MMD_CFG_ELEMENT_TR38901 && e.tx.power_dbm == 10 && e.tx.yaw_deg == -30 &&
              e.tx.pitch_deg == 5 && e.tx.roll_deg == 1,
          "tx rest");
    const mmd_cfg_array *a = &e.rx.array;
    CHECK(a->rows == 4 && a->cols == 16 && a->spacing_wavelengths == 0.6 &&
              a->window == MMD_CFG_WINDOW_NONE && a->element == MMD_CFG_ELEMENT_HW_DIPOLE &&
              a->mode == MMD_CFG_RX_MECHANICAL && a->horn.hpbw_deg == 12.5,
          "array");
    CHECK(e.rx.n_poses == 2, "2 poses");
    if (e.rx.n_poses == 2) {
        CHECK(e.rx.poses[0].position_m[2] == 1.2 && e.rx.poses[0].yaw_deg == 90 &&
                  e.rx.poses[0].pitch_deg == 0,
              "pose 0");
        CHECK(e.rx.poses[1].position_m[1] == 0.25 && e.rx.poses[1].pitch_deg == -10 &&
                  e.rx.poses[1].roll_deg == 15 && e.rx.poses[1].yaw_deg == 0,
              "pose 1 (block style)");
    }
    CHECK(!e.rx.poses_csv.path, "no poses_csv");
    CHECK(e.aoa.azimuth_deg.start == -180 && e.aoa.azimuth_deg.stop == 180 &&
              e.aoa.azimuth_deg.step == 2 && e.aoa.azimuth_deg.count == 181,
          "azimuth grid count %d", e.aoa.azimuth_deg.count);
    CHECK(e.aoa.elevation_deg.count == 361, "elevation count %d", e.aoa.elevation_deg.count);
    const mmd_cfg_solver *s = &e.solver;
    CHECK(s->mode == MMD_CFG_SOLVER_SPECULAR && s->rays == 200000 && s->max_depth == 5 &&
              s->alpha_r == 120 && !s->diffuse && s->transmission &&
              s->polarization == MMD_CFG_POL_SCALAR && s->seed == 12345678901LL && s->cache_mb == 0,
          "solver");
    CHECK(e.coverage.z_m == 1.5 && e.coverage.cell_m == 0.05 && e.coverage.rays == 500000 &&
              e.coverage.has_extent && e.coverage.extent_m[0] == -1 && e.coverage.extent_m[3] == 5,
          "coverage");
    const mmd_cfg_train *t = &e.train;
    CHECK(t->measurements.path && !strcmp(t->measurements.path, tpath("meas")), "measurements %s",
          t->measurements.path);
    CHECK(t->model == MMD_CFG_MODEL_PER_OBJECT && t->n_hidden == 2 && t->hidden[0] == 128 &&
              t->hidden[1] == 32 && t->octaves == 4 && t->lr == 1e-3 && t->batch_poses == 16 &&
              t->epochs == 7 && t->val_fraction == 0.2 && t->early_stop_patience == 0 &&
              t->loss_floor_db == -50 && !t->fit_scale && t->seed == 3 && t->checkpoint_every == 2 &&
              t->field_at == MMD_CFG_FIELD_AT_TRIANGLE,
          "train");
    CHECK(e.calibrate_geometry.enabled && !strcmp(e.calibrate_geometry.object, "table") &&
              e.calibrate_geometry.lr == 0.05 && e.calibrate_geometry.steps == 50,
          "calibrate_geometry");
    CHECK(e.dataset.traj_poses == 400 && e.dataset.rand_poses == 200 && e.dataset.height_m[1] == 1.7 &&
              e.dataset.has_noise_floor && e.dataset.noise_floor_db == -40 && e.dataset.seed == 11,
          "dataset");
    CHECK(e.evaluate.dynamic_range_db == 25 && e.evaluate.match_threshold_deg == 3, "evaluate");
    CHECK(!strcmp(e.output.dir.path, tpath("exp/out/run1")) && e.output.measurements &&
              !e.output.png && e.output.paths,
          "output %s", e.output.dir.path);
    CHECK(!strcmp(mmd_cfg_enum_name("rx.array.element", e.rx.array.element), "hw_dipole"),
          "enum name");
    CHECK(!strcmp(mmd_cfg_enum_name("solver.mode", MMD_CFG_SOLVER_DIRECTIONAL), "directional"),
          "enum name 2");
    CHECK(mmd_cfg_enum_name("solver.rays", 0) == NULL && mmd_cfg_enum_name("tx.pattern", 99) == NULL,
          "enum name of a non-enum");

    /* Material names are checked against the scene by the caller. */
    const char *known[] = {"concrete", "walls", "wood", "odd name"};
    CHECK(mmd_experiment_check_material_names(&e, known, 4, "room.yaml") == MMD_OK, "names ok");
    const char *known2[] = {"concrete", "wall", "wood"};
    st = mmd_experiment_check_material_names(&e, known2, 3, "room.yaml");
    CHECK(st == MMD_ERR_INVALID && has(mmd_last_error(), "scene.materials.walls") &&
              has(mmd_last_error(), ":7:5") && has(mmd_last_error(), "did you mean 'wall'") &&
              has(mmd_last_error(), "room.yaml"),
          "unknown material name: %s", mmd_last_error());
    mmd_experiment_free(&e);
}

static void test_defaults(void)
{
    const char *p = tpath("minimal.yaml");
    write_text(p, MINIMAL);
    mmd_experiment e;
    mmd_status st = mmd_experiment_load(p, NULL, 0, &e);
    CHECK(st == MMD_OK, "minimal loads: %s", mmd_last_error());
    if (st) return;
    CHECK(!strcmp(e.name, "minimal"), "default name = stem: %s", e.name);
    CHECK(e.description == NULL, "no description");
    CHECK(e.scene.frequency_hz == 60e9 && e.scene.n_materials == 0 && !e.scene.noise.enabled,
          "scene defaults");
    CHECK(e.tx.pattern == MMD_CFG_ELEMENT_ISO && e.tx.power_dbm == 20 && e.tx.yaw_deg == 0, "tx defaults");
    CHECK(e.rx.array.rows == 8 && e.rx.array.cols == 8 && e.rx.array.spacing_wavelengths == 0.5 &&
              e.rx.array.window == MMD_CFG_WINDOW_HANN && e.rx.array.element == MMD_CFG_ELEMENT_PATCH &&
              e.rx.array.mode == MMD_CFG_RX_SYNTHETIC_APERTURE && e.rx.array.horn.hpbw_deg == 10,
          "array defaults");
    CHECK(e.rx.n_poses == 0 && e.rx.poses == NULL && !e.rx.poses_csv.path, "no poses");
    CHECK(e.aoa.azimuth_deg.start == -90 && e.aoa.azimuth_deg.stop == 90 && e.aoa.azimuth_deg.count == 181,
          "azimuth default");
    CHECK(e.aoa.elevation_deg.start == -45 && e.aoa.elevation_deg.count == 91, "elevation default");
    CHECK(e.solver.mode == MMD_CFG_SOLVER_DIRECTIONAL && e.solver.rays == 200000 &&
              e.solver.max_depth == 3 && e.solver.alpha_r == 50 && e.solver.diffuse &&
              !e.solver.transmission && e.solver.polarization == MMD_CFG_POL_JONES &&
              e.solver.seed == 42 && e.solver.cache_mb == 1024,
          "solver defaults");
    CHECK(e.coverage.z_m == 1.2 && e.coverage.cell_m == 0.1 && e.coverage.rays == 1000000 &&
              !e.coverage.has_extent,
          "coverage defaults");
    CHECK(!e.train.measurements.path && e.train.model == MMD_CFG_MODEL_NEURAL && e.train.n_hidden == 4 &&
              e.train.hidden[3] == 64 && e.train.octaves == 6 && e.train.lr == 5e-4 &&
              e.train.batch_poses == 8 && e.train.epochs == 100 && e.train.val_fraction == 0.1 &&
              e.train.early_stop_patience == 5 && e.train.loss_floor_db == -60 && e.train.fit_scale &&
              e.train.seed == 1 && e.train.checkpoint_every == 1 &&
              e.train.field_at == MMD_CFG_FIELD_AT_HIT,
          "train defaults");
    CHECK(!e.calibrate_geometry.enabled && !e.calibrate_geometry.object, "no geometry calibration");
    CHECK(e.dataset.traj_poses == 2800 && e.dataset.rand_poses == 500 && !e.dataset.has_noise_floor,
          "dataset defaults");
    CHECK(e.evaluate.dynamic_range_db == 20 && e.evaluate.match_threshold_deg == 5, "evaluate defaults");
    char cwd[PATH_MAX], want[PATH_MAX + 32];
    CHECK(getcwd(cwd, sizeof cwd) != NULL, "getcwd");
    snprintf(want, sizeof want, "%s/runs/minimal", cwd);
    CHECK(!strcmp(e.output.dir.path, want) && !strcmp(e.output.dir.text, "runs/minimal"),
          "default output dir %s", e.output.dir.path);
    CHECK(!e.output.measurements && e.output.png && !e.output.paths, "output defaults");

    /* mmd_experiment_defaults gives the same values without a file. */
    mmd_experiment d;
    mmd_experiment_defaults(&d);
    CHECK(d.solver.rays == 200000 && d.train.n_hidden == 4 && d.aoa.elevation_deg.count == 91 &&
              d.rx.array.element == MMD_CFG_ELEMENT_PATCH,
          "mmd_experiment_defaults");
    mmd_experiment_free(&d);
    mmd_experiment_free(&e);
}

static void test_paths(void)
{
    mkdir(tpath("a"), 0755);
    mkdir(tpath("a/b"), 0755);
    const char *p = tpath("a/b/exp.yaml");
    write_text(p, "scene: {file: ../../scenes/./room.yaml}\n"
                  "tx: {position_m: [0, 0, 1]}\n"
                  "rx: {poses_csv: poses.csv}\n"
                  "train: {measurements: /abs/meas//dir/}\n"
                  "output: {dir: ../out}\n");
    mmd_experiment e;
    mmd_status st = mmd_experiment_load(p, NULL, 0, &e);
    CHECK(st == MMD_OK, "paths load: %s", mmd_last_error());
    if (st) return;
    CHECK(!strcmp(e.scene.file.path, tpath("scenes/room.yaml")), "scene.file %s", e.scene.file.path);
    CHECK(!strcmp(e.scene.file.text, "../../scenes/./room.yaml"), "text kept");
    CHECK(!strcmp(e.rx.poses_csv.path, tpath("a/b/poses.csv")), "poses_csv %s", e.rx.poses_csv.path);
    CHECK(!strcmp(e.train.measurements.path, "/abs/meas/dir"), "absolute kept, cleaned: %s",
          e.train.measurements.path);
    CHECK(!strcmp(e.output.dir.path, tpath("a/out")), "output.dir %s", e.output.dir.path);
    mmd_experiment_free(&e);

    /* A path given with --set is relative to the working directory, not to the file. */
    const char *sets[] = {"scene.file=rel/room.yaml"};
    st = mmd_experiment_load(p, sets, 1, &e);
    CHECK(st == MMD_OK, "paths --set: %s", mmd_last_error());
    if (st) return;
    char cwd[PATH_MAX], want[PATH_MAX + 32];
    CHECK(getcwd(cwd, sizeof cwd) != NULL, "getcwd");
    snprintf(want, sizeof want, "%s/rel/room.yaml", cwd);
    CHECK(!strcmp(e.scene.file.path, want), "--set path %s", e.scene.file.path);
    CHECK(has(e.scene.file.where, "--set scene.file=rel/room.yaml"), "--set where %s", e.scene.file.where);
    mmd_experiment_free(&e);
}

static void test_errors(void)
{
    /* unknown key, with its path, a suggestion and the valid keys */
    expect_error("unknown.yaml", MINIMAL "solver:\n  rays: 10\n  raysx: 5\n", NULL, 0, MMD_ERR_INVALID,
                 "@:5:3: ", "unknown key 'solver.raysx'", "did you mean 'rays'", "valid keys in solver",
                 "max_depth", "cache_mb", NULL);
    expect_error("unknown_top.yaml", MINIMAL "solvr: {}\n", NULL, 0, MMD_ERR_INVALID, "@:3:1: ",
                 "unknown key 'solvr'", "did you mean 'solver'", "valid top-level keys", NULL);
    expect_error("unknown_nested.yaml", MINIMAL "rx:\n  poses:\n    - {position_m: [1, 2, 3], yaw: 5}\n",
                 NULL, 0, MMD_ERR_INVALID, "@:5:31: ", "unknown key 'rx.poses[0].yaw'",
                 "did you mean 'yaw_deg'", NULL);
    /* wrong type */
    expect_error("type.yaml", MINIMAL "solver: {rays: abc}\n", NULL, 0, MMD_ERR_INVALID,
                 "@:3:16: solver.rays: expected an integer in [1, 2^31-1], got 'abc'", NULL);
    expect_error("type_float_int.yaml", MINIMAL "solver: {rays: 1.5}\n", NULL, 0, MMD_ERR_INVALID,
                 "@:3:16: solver.rays: expected an integer", NULL);
    expect_error("type_quoted.yaml", MINIMAL "solver: {rays: \"5\"}\n", NULL, 0, MMD_ERR_INVALID,
                 "@:3:16: solver.rays: expected an integer in [1, 2^31-1], got '\"5\"' (a quoted string)",
                 NULL);
    expect_error("type_bool.yaml", MINIMAL "solver: {diffuse: yes}\n", NULL, 0, MMD_ERR_INVALID,
                 "@:3:19: solver.diffuse: expected true or false, got 'yes'", NULL);
    expect_error("type_enum.yaml", MINIMAL "solver: {mode: directonal}\n", NULL, 0, MMD_ERR_INVALID,
                 "@:3:16: solver.mode: expected one of directional, specular, got 'directonal'",
                 "did you mean 'directional'", NULL);
    expect_error("type_vec.yaml", "scene: {file: r.yaml}\ntx: {position_m: [1, 2]}\n", NULL, 0,
                 MMD_ERR_INVALID, "@:2:18: tx.position_m: expected a list of 3 numbers", "m, got [1, 2]",
                 NULL);
    expect_error("type_vec_elem.yaml", "scene: {file: r.yaml}\ntx: {position_m: [1, x, 3]}\n", NULL, 0,
                 MMD_ERR_INVALID, "@:2:22: tx.position_m[1]: expected a number in [-1e6, 1e6] m, got 'x'",
                 NULL);
    expect_error("type_map.yaml", MINIMAL "solver: 5\n", NULL, 0, MMD_ERR_INVALID,
                 "@:3:9: solver: expected a mapping with keys mode, rays", NULL);
    /* out of range */
    expect_error("range.yaml", MINIMAL "solver: {max_depth: 99}\n", NULL, 0, MMD_ERR_INVALID,
                 "@:3:21: solver.max_depth: expected an integer in [0, 32], got '99'", NULL);
    expect_error("range_open.yaml", MINIMAL "coverage: {cell_m: 0}\n", NULL, 0, MMD_ERR_INVALID,
                 "@:3:20: coverage.cell_m: expected a number in (0, 10000] m, got '0'", NULL);
    expect_error("range_freq.yaml", "scene: {file: r.yaml, frequency_hz: 0}\ntx: {position_m: [1, 2, 3]}\n",
                 NULL, 0, MMD_ERR_INVALID,
                 "@:1:37: scene.frequency_hz: expected a number in (0, 1e13] Hz, got '0'", NULL);
    expect_error("range_material.yaml",
                 "scene:\n  file: r.yaml\n  materials:\n    w: {itu: wood, scattering: 1.5}\n" TXLINE,
                 NULL, 0, MMD_ERR_INVALID,
                 "@:4:32: scene.materials.w.scattering: expected a number in [0, 1], got '1.5'", NULL);
    expect_error("range_noise.yaml",
                 "scene:\n  file: r.yaml\n  noise: {hole_fraction: 1}\n" TXLINE, NULL, 0,
                 MMD_ERR_INVALID, "@:3:26: scene.noise.hole_fraction: expected a number in [0, 0.9], got '1'",
                 NULL);
    /* NaN and infinity, for every float */
    expect_error("nan.yaml", MINIMAL "coverage:\n  z_m: .nan\n", NULL, 0, MMD_ERR_INVALID,
                 "@:4:8: coverage.z_m: expected a number in [-1e6, 1e6] m, got '.nan'",
                 "NaN and infinity are not allowed", NULL);
    expect_error("inf.yaml", MINIMAL "coverage: {cell_m: .inf}\n", NULL, 0, MMD_ERR_INVALID,
                 "@:3:20: coverage.cell_m: expected a number in (0, 10000] m, got '.inf'", "NaN", NULL);
    expect_error("inf2.yaml", "scene: {file: r.yaml}\ntx: {position_m: [1, 2, -.inf]}\n", NULL, 0,
                 MMD_ERR_INVALID, "@:2:25: tx.position_m[2]", "NaN and infinity", NULL);
    expect_error("nan3.yaml", MINIMAL "train: {lr: NaN}\n", NULL, 0, MMD_ERR_INVALID,
                 "@:3:13: train.lr: expected a number in (0, 10]", "NaN", NULL);
    expect_error("huge.yaml", MINIMAL "train: {lr: 1e999}\n", NULL, 0, MMD_ERR_INVALID,
                 "@:3:13: train.lr", "NaN and infinity", NULL);
    /* bad [start, stop, step] */
    expect_error("grid_order.yaml", MINIMAL "aoa: {azimuth_deg: [90, -90, 1]}\n", NULL, 0,
                 MMD_ERR_INVALID, "@:3:20: aoa.azimuth_deg: expected [start, stop, step]",
                 "start <= stop", "got [90, -90, 1]", NULL);
    expect_error("grid_step.yaml", MINIMAL "aoa: {elevation_deg: [-45, 45, 0]}\n", NULL, 0,
                 MMD_ERR_INVALID, "@:3:22: aoa.elevation_deg", "step > 0", NULL);
    expect_error("grid_elev.yaml", MINIMAL "aoa: {elevation_deg: [-100, 45, 1]}\n", NULL, 0,
                 MMD_ERR_INVALID, "@:3:22: aoa.elevation_deg", "-90 <= start <= stop <= 90", NULL);
    expect_error("grid_len.yaml", MINIMAL "aoa: {azimuth_deg: [0, 90]}\n", NULL, 0, MMD_ERR_INVALID,
                 "@:3:20: aoa.azimuth_deg", "got [0, 90]", NULL);
    expect_error("grid_frac.yaml", MINIMAL "aoa: {azimuth_deg: [0, 90, 7]}\n", NULL, 0,
                 MMD_ERR_INVALID, "whole number of steps", NULL);
    expect_error("grid_span.yaml", MINIMAL "aoa: {azimuth_deg: [-360, 360, 1]}\n", NULL, 0,
                 MMD_ERR_INVALID, "spans more than 360", NULL);
    /* poses and poses_csv together; pose without a position */
    expect_error("both_poses.yaml",
                 MINIMAL "rx:\n  poses: [{position_m: [1, 2, 1]}]\n  poses_csv: poses.csv\n", NULL, 0,
                 MMD_ERR_INVALID, "@:5:14: rx.poses_csv", "not both", NULL);
    expect_error("pose_nopos.yaml", MINIMAL "rx:\n  poses:\n    - {yaw_deg: 10}\n", NULL, 0,
                 MMD_ERR_INVALID, "@:5:7: missing required key 'rx.poses[0].position_m'", NULL);
    expect_error("missing_scene.yaml", "tx: {position_m: [1, 2, 3]}\n", NULL, 0, MMD_ERR_INVALID,
                 "@:1:1: missing required key 'scene.file'", NULL);
    expect_error("null_required.yaml", "scene: {file: ~}\ntx: {position_m: [1, 2, 3]}\n", NULL, 0,
                 MMD_ERR_INVALID, "@:1:15: scene.file: expected a path, got null", NULL);
    /* materials: itu xor explicit */
    expect_error("mat_both.yaml",
                 "scene:\n  file: r.yaml\n  materials:\n    w: {itu: wood, eps_r: 3}\n" TXLINE,
                 NULL, 0, MMD_ERR_INVALID, "@:4:5: scene.materials.w", "exclude each other", NULL);
    expect_error("mat_half.yaml",
                 "scene:\n  file: r.yaml\n  materials:\n    w: {eps_r: 3}\n" TXLINE, NULL, 0,
                 MMD_ERR_INVALID, "@:4:5: scene.materials.w", "sigma_s_per_m is missing", NULL);
    expect_error("mat_itu.yaml",
                 "scene:\n  file: r.yaml\n  materials:\n    w: {itu: concrette}\n" TXLINE, NULL, 0,
                 MMD_ERR_INVALID, "@:4:14: scene.materials.w.itu: expected one of vacuum, concrete",
                 "did you mean 'concrete'", NULL);
    /* malformed YAML: libyaml's message with 1-based positions */
    expect_error("unclosed.yaml", "scene: {file: r.yaml}\ntx:\n  position_m: [1, 2, 3\nsolver: {}\n",
                 NULL, 0, MMD_ERR_PARSE, "@:4:7: did not find expected ',' or ']'",
                 "while parsing a flow sequence", "started at line 3, column 15", NULL);
    expect_error("unclosed2.yaml", "scene: {file: r.yaml\n", NULL, 0, MMD_ERR_PARSE, "@:2:1: ",
                 "flow mapping", NULL);
    expect_error("tab.yaml", "scene:\n\tfile: r.yaml\n", NULL, 0, MMD_ERR_PARSE, "@:2:", NULL);
    /* duplicate key */
    expect_error("dup.yaml", MINIMAL "solver:\n  rays: 10\n  rays: 20\n", NULL, 0, MMD_ERR_PARSE,
                 "@:5:3: duplicate key 'rays'", "first at line 4, column 3", NULL);
    expect_error("dup_top.yaml", MINIMAL "tx: {}\n", NULL, 0, MMD_ERR_PARSE, "@:3:1: duplicate key 'tx'",
                 NULL);
    /* multiple documents, merge keys, custom tags, unknown alias */
    expect_error("multi.yaml", MINIMAL "---\nsolver: {}\n", NULL, 0, MMD_ERR_PARSE, "@:3:1: ",
                 "only one document", NULL);
    expect_error("merge.yaml", MINIMAL "solver: &s {rays: 5}\ncoverage: {<<: *s}\n", NULL, 0,
                 MMD_ERR_PARSE, "@:4:12: merge keys", NULL);
    expect_error("tag.yaml", MINIMAL "solver: {rays: !big 5}\n", NULL, 0, MMD_ERR_PARSE,
                 "@:3:16: tag '!big' is not supported", NULL);
    expect_error("alias.yaml", MINIMAL "solver: {rays: *nope}\n", NULL, 0, MMD_ERR_PARSE,
                 "@:3:16: unknown anchor '*nope'", NULL);
    expect_error("not_map.yaml", "- 1\n- 2\n", NULL, 0, MMD_ERR_INVALID, "@:1:1: expected the experiment as a mapping",
                 NULL);
    /* --set: unknown path, bad value, bad syntax */
    const char *set_unknown[] = {"solver.raysx=5"};
    expect_error("set_unknown.yaml", MINIMAL, set_unknown, 1, MMD_ERR_INVALID,
                 "--set solver.raysx=5: unknown key 'solver.raysx'", "did you mean 'rays'",
                 "valid keys in solver", NULL);
    const char *set_unknown_top[] = {"solvers.rays=5"};
    expect_error("set_unknown_top.yaml", MINIMAL, set_unknown_top, 1, MMD_ERR_INVALID,
                 "--set solvers.rays=5: unknown key 'solvers'", "valid top-level keys", NULL);
    const char *set_bad[] = {"solver.rays=1000", "solver.rays=abc"};
    expect_error("set_bad.yaml", MINIMAL, set_bad, 2, MMD_ERR_INVALID,
                 "--set solver.rays=abc: solver.rays: expected an integer in [1, 2^31-1], got 'abc'",
                 NULL);
    const char *set_range[] = {"tx.position_m=[1, 2, 1e9]"};
    expect_error("set_range.yaml", MINIMAL, set_range, 1, MMD_ERR_INVALID,
                 "--set tx.position_m=[1, 2, 1e9]: tx.position_m[2]: expected a number in [-1e6, 1e6] m",
                 NULL);
    const char *set_syntax[] = {"solver.rays"};
    expect_error("set_syntax.yaml", MINIMAL, set_syntax, 1, MMD_ERR_INVALID,
                 "--set solver.rays: expected KEY=VALUE", NULL);
    /* found by fuzz_experiment: a key with a byte that is not UTF-8 became a material name
     * the resolved YAML could not load back */
    const char *set_utf8[] = {"scene.materials.n\xf8\xf8.itu=wood"};
    expect_error("set_utf8.yaml", MINIMAL, set_utf8, 1, MMD_ERR_INVALID,
                 "--set: the key (before '=') has an invalid UTF-8 byte at byte 18", NULL);
    const char *set_ctrl[] = {"scene.materials.n\x01.itu=wood"};
    expect_error("set_ctrl.yaml", MINIMAL, set_ctrl, 1, MMD_ERR_INVALID,
                 "--set: the key (before '=') has a control character at byte 18", NULL);
    const char *set_yaml[] = {"tx.position_m=[1, 2"};
    expect_error("set_yaml.yaml", MINIMAL, set_yaml, 1, MMD_ERR_PARSE, "--set tx.position_m=[1, 2: ",
                 "flow", NULL);
    const char *set_leaf[] = {"solver.rays.x=1"};
    expect_error("set_leaf.yaml", MINIMAL, set_leaf, 1, MMD_ERR_INVALID,
                 "--set solver.rays.x=1: 'solver.rays' is a single value", NULL);
    const char *set_index[] = {"rx.poses.3.yaw_deg=1"};
    expect_error("set_index.yaml", MINIMAL "rx: {poses: [{position_m: [1, 2, 3]}]}\n", set_index, 1,
                 MMD_ERR_INVALID, "--set rx.poses.3.yaw_deg=1: no item 3 in 'rx.poses' (it has 1)", NULL);
    const char *set_item_key[] = {"rx.poses[0].yaw=1"};
    expect_error("set_item_key.yaml", MINIMAL "rx: {poses: [{position_m: [1, 2, 3]}]}\n", set_item_key, 1,
                 MMD_ERR_INVALID, "unknown key 'rx.poses[0].yaw'", "did you mean 'yaw_deg'", NULL);
    const char *set_mat_key[] = {"scene.materials.walls.eps=1"};
    expect_error("set_mat_key.yaml", MINIMAL, set_mat_key, 1, MMD_ERR_INVALID,
                 "unknown key 'scene.materials.walls.eps'", "valid keys in scene.materials.walls", NULL);
}

static void test_overrides(void)
{
    const char *p = tpath("over.yaml");
    write_text(p, MINIMAL "rx:\n  poses:\n    - {position_m: [1, 1, 1]}\n    - {position_m: [2, 2, 2]}\n");
    const char *sets[] = {"solver.rays=1000",
                          "tx.position_m=[1,2,1.5]",
                          "rx.poses.1.yaw_deg=45",
                          "rx.poses[0].position_m=[0, 0.5, 1]",
                          "scene.materials.metal_door={itu: metal, scattering: 0.1}",
                          "scene.materials.metal_door.xpd=0.2",
                          "coverage.extent_m=[0, 3, 0, 4.5]",
                          "scene.noise.sigma_m=0.01",
                          "solver = {mode: specular, rays: 77}",
                          "description=\"quoted: text\"",
                          "train.measurements=",
                          "output.png=false"};
    mmd_experiment e;
    mmd_status st = mmd_experiment_load(p, sets, sizeof sets / sizeof *sets, &e);
    CHECK(st == MMD_OK, "overrides load: %s", mmd_last_error());
    if (st) return;
    CHECK(e.solver.rays == 77 && e.solver.mode == MMD_CFG_SOLVER_SPECULAR && e.solver.max_depth == 3,
          "later --set replaces the whole solver block: rays %d", e.solver.rays);
    CHECK(e.tx.position_m[0] == 1 && e.tx.position_m[1] == 2 && e.tx.position_m[2] == 1.5, "tx.position_m");
    CHECK(e.rx.n_poses == 2 && e.rx.poses[1].yaw_deg == 45 && e.rx.poses[1].position_m[0] == 2,
          "pose 1 yaw");
    CHECK(e.rx.poses[0].position_m[1] == 0.5, "pose 0 position");
    CHECK(e.scene.n_materials == 1 && !strcmp(e.scene.materials[0].name, "metal_door") &&
              !strcmp(e.scene.materials[0].itu, "metal") && e.scene.materials[0].scattering == 0.1 &&
              e.scene.materials[0].xpd == 0.2,
          "material added by --set");
    CHECK(e.coverage.has_extent && e.coverage.extent_m[3] == 4.5, "coverage extent");
    CHECK(e.scene.noise.enabled && e.scene.noise.sigma_m == 0.01 && e.scene.noise.hole_radius_m == 0.1,
          "noise block created by --set");
    CHECK(e.description && !strcmp(e.description, "quoted: text"), "description %s", e.description);
    CHECK(!e.train.measurements.path, "empty value = null");
    CHECK(!e.output.png, "output.png");
    mmd_experiment_free(&e);

    /* An override of a key inside a block the file writes as a scalar is refused. */
    write_text(p, MINIMAL "coverage: 3\n");
    const char *sets2[] = {"coverage.z_m=1"};
    st = mmd_experiment_load(p, sets2, 1, &e);
    CHECK(st == MMD_ERR_INVALID && has(mmd_last_error(), "--set coverage.z_m=1") &&
              has(mmd_last_error(), "not a mapping"),
          "override into a scalar: %s", mmd_last_error());
}

static void test_round_trip(void)
{
    const char *sets[] = {"rx.poses_csv=null"};
    const char *srcs[] = {"exp/full.yaml", "minimal.yaml", "a/b/exp.yaml"};
    for (int k = 0; k < 3; k++) {
        mmd_experiment a, b;
        mmd_status st = mmd_experiment_load(tpath(srcs[k]), sets, k == 2, &a);
        CHECK(st == MMD_OK, "round trip load %s: %s", srcs[k], mmd_last_error());
        if (st) continue;
        /* Written into another directory: absolute paths keep their meaning. */
        mkdir(tpath("resolved"), 0755);
        char name[64];
        snprintf(name, sizeof name, "resolved/r%d.yaml", k);
        const char *out = tpath(name);
        st = mmd_experiment_write_resolved(&a, out);
        CHECK(st == MMD_OK, "write resolved: %s", mmd_last_error());
        st = mmd_experiment_load(out, NULL, 0, &b);
        CHECK(st == MMD_OK, "reload resolved %s: %s", name, mmd_last_error());
        if (st) {
            char *y = mmd_experiment_to_yaml(&a);
            fprintf(stderr, "%s\n", y);
            free(y);
            mmd_experiment_free(&a);
            continue;
        }
        CHECK(mmd_experiment_equal(&a, &b), "round trip of %s gives an equal experiment", srcs[k]);
        CHECK(!strcmp(a.name, b.name) && !strcmp(a.output.dir.path, b.output.dir.path), "name and dir");
        /* And the text is a fixed point. */
        char *ya = mmd_experiment_to_yaml(&a), *yb = mmd_experiment_to_yaml(&b);
        const char *ba = strstr(ya, "\nname:"), *bb = strstr(yb, "\nname:");
        CHECK(ba && bb && !strcmp(ba, bb), "resolved YAML is a fixed point");
        free(ya);
        free(yb);
        /* equal() notices a change. */
        b.solver.alpha_r++;
        CHECK(!mmd_experiment_equal(&a, &b), "changed alpha_r detected");
        b.solver.alpha_r--;
        b.coverage.has_extent = !b.coverage.has_extent;
        CHECK(!mmd_experiment_equal(&a, &b), "changed extent presence detected");
        mmd_experiment_free(&a);
        mmd_experiment_free(&b);
    }
    /* Awkward values survive: tiny/huge floats, quotes and backslashes in names. */
    write_text(tpath("odd.yaml"),
               "description: 'has \"quotes\", a \\\\ backslash and: colon'\n"
               "scene:\n  file: 'dir with space/r #1.yaml'\n  frequency_hz: 0.1234567890123e12\n"
               "  materials: {\"x\\\"y\": {eps_r: 1.000000000000001, sigma_s_per_m: 1e-300}}\n"
               "tx: {position_m: [0.1, -0.0, 3e-7]}\n");
    mmd_experiment a, b;
    mmd_status st = mmd_experiment_load(tpath("odd.yaml"), NULL, 0, &a);
    CHECK(st == MMD_OK, "odd loads: %s", mmd_last_error());
    if (st) return;
    char *y = mmd_experiment_to_yaml(&a);
    st = mmd_experiment_load_string(y, tpath("resolved/odd.yaml"), NULL, 0, &b);
    CHECK(st == MMD_OK, "odd reloads: %s\n%s", mmd_last_error(), y);
    if (!st) {
        CHECK(mmd_experiment_equal(&a, &b), "odd round trip");
        CHECK(!strcmp(b.scene.materials[0].name, "x\"y"), "name with quote: %s", b.scene.materials[0].name);
        CHECK(b.scene.materials[0].sigma_s_per_m == 1e-300 && b.scene.frequency_hz == 0.1234567890123e12,
              "exact floats");
        mmd_experiment_free(&b);
    }
    free(y);
    mmd_experiment_free(&a);
}

static void test_yaml_tree(void)
{
    const char *text = "a: 1\n"
                       "b:\n"
                       "  - &x {k: 'v', n: ~}\n"
                       "  - *x\n"
                       "c: \"5\"\n"
                       "d: |\n  block\n"
                       "e:\n"
                       "f: !!str 12\n";
    mmd_ynode *root;
    mmd_status st = mmd_yaml_load_string(text, strlen(text), "t.yaml", 1, &root);
    CHECK(st == MMD_OK && root && root->kind == MMD_YAML_MAP && root->n == 6, "tree: %s", mmd_last_error());
    if (st || !root) return;
    const mmd_ynode *a = mmd_yaml_get(root, "a");
    CHECK(a && a->kind == MMD_YAML_SCALAR && !strcmp(a->text, "1") && a->line == 1 && a->col == 4 &&
              !a->quoted && !a->is_null,
          "scalar a at 1:4");
    CHECK(root->keys[0]->line == 1 && root->keys[0]->col == 1, "key a at 1:1");
    const mmd_ynode *b = mmd_yaml_get(root, "b");
    CHECK(b && b->kind == MMD_YAML_SEQ && b->n == 2 && b->line == 3 && b->col == 3, "seq b at 3:3");
    if (b && b->n == 2) {
        const mmd_ynode *x0 = b->items[0], *x1 = b->items[1];
        CHECK(x0->kind == MMD_YAML_MAP && x0->line == 3 && x0->col == 5, "anchored map at 3:5 (its anchor)");
        CHECK(x1->kind == MMD_YAML_MAP && x1->n == 2 && x1 != x0, "alias is a copy");
        const mmd_ynode *k = mmd_yaml_get(x1, "k"), *n = mmd_yaml_get(x1, "n");
        CHECK(k && k->quoted && !strcmp(k->text, "v") && n && n->is_null, "copied values");
    }
    const mmd_ynode *c = mmd_yaml_get(root, "c");
    CHECK(c && c->quoted && !c->is_null && !strcmp(c->text, "5"), "quoted scalar");
    const mmd_ynode *d = mmd_yaml_get(root, "d");
    CHECK(d && d->quoted && !strcmp(d->text, "block\n"), "block scalar");
    const mmd_ynode *e = mmd_yaml_get(root, "e");
    CHECK(e && e->is_null && e->kind == MMD_YAML_SCALAR, "empty value is null");
    const mmd_ynode *f = mmd_yaml_get(root, "f");
    CHECK(f && f->quoted && !strcmp(f->text, "12"), "!!str is a string");
    CHECK(mmd_yaml_get(root, "zz") == NULL && mmd_yaml_get(a, "x") == NULL, "get misses");
    char w[256];
    CHECK(!strcmp(mmd_yaml_where(a, w, sizeof w), "t.yaml:1:4"), "where %s", w);
    mmd_yaml_free(root);

    st = mmd_yaml_load_string("", 0, "empty.yaml", 1, &root);
    CHECK(st == MMD_OK && root == NULL, "empty stream");
    st = mmd_yaml_load_string("# only a comment\n", 17, "c.yaml", 1, &root);
    CHECK(st == MMD_OK && root == NULL, "comment-only stream");
    st = mmd_yaml_load_string("[1, 2", 5, "--set x=[1, 2", 0, &root);
    CHECK(st == MMD_ERR_PARSE && has(mmd_last_error(), "--set x=[1, 2: ") &&
              !strstr(mmd_last_error(), ":1:"),
          "override parse error has no line: %s", mmd_last_error());
    st = mmd_yaml_load_string("? [a, b]\n: 1\n", 13, "k.yaml", 1, &root);
    CHECK(st == MMD_ERR_PARSE && has(mmd_last_error(), "k.yaml:1:3: complex"), "complex key: %s",
          mmd_last_error());
    /* An alias bomb is stopped, not expanded. */
    char bomb[4096];
    size_t bn = (size_t)snprintf(bomb, sizeof bomb, "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for (int i = 1; i < 10; i++)
        bn += (size_t)snprintf(bomb + bn, sizeof bomb - bn,
                               "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n",
                               i, i, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
    st = mmd_yaml_load_string(bomb, bn, "bomb.yaml", 1, &root);
    CHECK(st == MMD_ERR_PARSE && has(mmd_last_error(), "alias expansion"), "alias bomb: %s",
          mmd_last_error());
    st = mmd_yaml_load_file(tpath("does/not/exist.yaml"), &root);
    CHECK(st == MMD_ERR_IO && has(mmd_last_error(), "does/not/exist.yaml"), "missing file");
    mmd_experiment ex;
    st = mmd_experiment_load(tpath("nope.yaml"), NULL, 0, &ex);
    CHECK(st == MMD_ERR_IO && has(mmd_last_error(), "nope.yaml"), "missing experiment file");
}

static void test_poses_csv(void)
{
    const char *p = tpath("poses.csv");
    write_text(p, "# poses\r\nyaw_deg,x_m,y_m,z_m,extra\r\n90,1,2,3,a\r\n\r\n-45, 0.5 ,1.5,1.2,b\r\n");
    mmd_cfg_pose *poses;
    size_t n;
    mmd_status st = mmd_cfg_read_poses_csv(p, &poses, &n);
    CHECK(st == MMD_OK && n == 2, "poses csv: %s", mmd_last_error());
    if (!st && n == 2) {
        CHECK(poses[0].position_m[0] == 1 && poses[0].position_m[2] == 3 && poses[0].yaw_deg == 90 &&
                  poses[0].pitch_deg == 0,
              "row 1");
        CHECK(poses[1].position_m[0] == 0.5 && poses[1].yaw_deg == -45, "row 2 (spaces, CRLF)");
        free(poses);
    }
    write_text(p, "x_m,y_m,yaw_deg\n1,2,3\n");
    st = mmd_cfg_read_poses_csv(p, &poses, &n);
    CHECK(st == MMD_ERR_PARSE && has(mmd_last_error(), ":1: missing column 'z_m'"), "missing column: %s",
          mmd_last_error());
    write_text(p, "x_m,y_m,z_m\n1,2,3\n1,nan,3\n");
    st = mmd_cfg_read_poses_csv(p, &poses, &n);
    CHECK(st == MMD_ERR_INVALID && has(mmd_last_error(), ":3: field 'y_m'"), "nan cell: %s",
          mmd_last_error());
    write_text(p, "x_m,y_m,z_m\n1,2\n");
    st = mmd_cfg_read_poses_csv(p, &poses, &n);
    CHECK(st == MMD_ERR_PARSE && has(mmd_last_error(), ":2: expected 3 fields"), "short row: %s",
          mmd_last_error());
}

/* docs/experiment.md must document every key the schema knows. */
static void test_docs(void)
{
    char *keys = mmd_experiment_schema_keys();
    CHECK(keys && strstr(keys, "solver.rays\n") && strstr(keys, "scene.materials.<name>.itu\n") &&
              strstr(keys, "rx.poses[].yaw_deg\n"),
          "schema key list");
    char *doc = NULL;
    size_t size;
    const char *docs_path = getenv("MMD_DOCS") ? getenv("MMD_DOCS") : "docs/experiment.md";
    mmd_status st = mmd_read_file(docs_path, &doc, &size);
    CHECK(st == MMD_OK, "read %s (run from the repository root): %s", docs_path, mmd_last_error());
    if (keys && doc) {
        int missing = 0;
        for (char *k = keys, *nl; *k; k = nl + 1) {
            nl = strchr(k, '\n');
            *nl = 0;
            char want[300];
            snprintf(want, sizeof want, "`%s`", k);
            if (!strstr(doc, want)) {
                fprintf(stderr, "  docs/experiment.md does not document %s\n", want);
                missing++;
            }
        }
        CHECK(missing == 0, "%d keys undocumented", missing);
    }
    free(doc);
    free(keys);
}

/* The shipped examples load (their scene files exist) and round-trip. */
static void test_examples(void)
{
    const char *ex[] = {"scenes/examples/conference_room_aoa.yaml",
                        "scenes/examples/conference_room_coverage.yaml"};
    for (int i = 0; i < 2; i++) {
        mmd_experiment e;
        mmd_status st = mmd_experiment_load(ex[i], NULL, 0, &e);
        CHECK(st == MMD_OK, "example %s: %s", ex[i], mmd_last_error());
        if (st) continue;
        CHECK(access(e.scene.file.path, R_OK) == 0, "%s: scene file %s exists", ex[i], e.scene.file.path);
        char *y = mmd_experiment_to_yaml(&e);
        mmd_experiment b;
        st = mmd_experiment_load_string(y, "/tmp/x.yaml", NULL, 0, &b);
        CHECK(st == MMD_OK && mmd_experiment_equal(&e, &b), "example %s round trip", ex[i]);
        if (!st) mmd_experiment_free(&b);
        free(y);
        mmd_experiment_free(&e);
    }
}

int main(void)
{
    char tmpl[] = "/tmp/mmd_test_config_XXXXXX";
    if (!mkdtemp(tmpl)) { perror("mkdtemp"); return 2; }
    if (!realpath(tmpl, g_dir)) { perror("realpath"); return 2; }
    test_yaml_tree();
    test_full();
    test_defaults();
    test_paths();
    test_errors();
    test_overrides();
    test_round_trip();
    test_poses_csv();
    test_docs();
    test_examples();
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return TEST_DONE();
}
