/*
 * `mmdiff predict EXP.yaml --model DIR [-o OUT] [--set key=value ...]`: the forward model
 * with the materials learned by `mmdiff calibrate` (SPEC 5). DIR is a calibration run
 * directory or its model/ folder. Writes into the run directory exactly what `simulate`
 * writes for the experiment's receiver poses (spectra.npy, result.json with "tool":
 * "mmdiff predict" and a "model" key, png/, measurements/ per output.*), and, when the
 * experiment has a `coverage` block, the coverage map of `mmdiff coverage` in coverage/.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mmd_train.h"
#include "outputs.h"
#include "mmd_calib.h"
#include "mmd_calib_geom.h"
#include "run.h"

static void progress(size_t done, size_t total, void *user)
{
    (void)user;
    mmd_cli_progress("predict", "poses", done, total);
}

static int is_file(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* DIR/materials.yaml or DIR/model/materials.yaml (per-object model), or the neural
 * model's DIR/model.yaml or DIR/model/model.yaml (*neural = 1, path = its directory). */
static mmd_status find_model(const char *dir, char *path, size_t cap, int *neural_out)
{
    *neural_out = 0;
    const char *cand[2] = {"materials.yaml", "model/materials.yaml"};
    for (int k = 0; k < 2; k++) {
        snprintf(path, cap, "%s/%s", dir, cand[k]);
        if (is_file(path)) return MMD_OK;
    }
    const char *neural[2] = {"model.yaml", "model/model.yaml"};
    for (int k = 0; k < 2; k++) {
        snprintf(path, cap, "%s/%s", dir, neural[k]);
        if (is_file(path)) {
            snprintf(path, cap, "%s%s", dir, k ? "/model" : "");
            *neural_out = 1;
            return MMD_OK;
        }
    }
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return mmd_error(MMD_ERR_IO, "--model %s: no such directory (expected the output directory of `mmdiff "
                         "calibrate` or its model/ folder)",
                         dir);
    return mmd_error(MMD_ERR_IO, "--model %s: no materials.yaml in it or in %s/model (expected the output directory "
                     "of `mmdiff calibrate`)",
                     dir, dir);
}

/* Whether the experiment asks for a coverage map: a `coverage` block in its file or a
 * --set coverage.* override. (The configuration fills coverage defaults either way, so
 * the file itself is looked at.) */
static int wants_coverage(const mmd_cli_run *r, int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--set") && !strncmp(argv[i + 1], "coverage.", 9)) return 1;
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], "--set=coverage.", 15)) return 1;
    mmd_ynode *root = NULL;
    if (mmd_yaml_load_file(r->exp_path, &root) != MMD_OK) return 0;
    const mmd_ynode *c = mmd_yaml_get(root, "coverage");
    int yes = c && !(c->kind == MMD_YAML_SCALAR && c->is_null);
    mmd_yaml_free(root);
    return yes;
}

typedef struct extra_keys {
    const char *model_file;
    const char *geometry_file; /* NULL: no learned object pose */
    int coverage;
    const mmd_cli_coverage *cov;
} extra_keys;

/* model/geometry.yaml beside a per-object materials.yaml (calibrate_geometry): move that
 * object as calibrate left it, with the same code that moved it there (mmd_calib_geom.h),
 * before anything is traced. *gc and *g hold the moved scene's tree until the end. */
static mmd_status apply_geometry(mmd_cli_run *r, const char *materials_file, char *gpath, size_t cap, mmd_calib **gc,
                                 mmd_calib_geom **g)
{
    snprintf(gpath, cap, "%s", materials_file);
    char *slash = strrchr(gpath, '/');
    size_t dir_len = slash ? (size_t)(slash - gpath) + 1 : 0;
    if (dir_len + sizeof "geometry.yaml" > cap) return MMD_OK;
    strcpy(gpath + dir_len, "geometry.yaml");
    if (!is_file(gpath)) {
        gpath[0] = 0;
        return MMD_OK;
    }
    char object[1024];
    double p[MMD_CALIB_GEOM_NPARAM], c_file[3], c_now[3];
    mmd_status st = mmd_geometry_yaml_read(gpath, object, sizeof object, p, c_file);
    mmd_calib_options co = mmd_calib_defaults();
    co.cache_bytes = 0;
    if (st == MMD_OK) st = mmd_calib_create(r->sim, &co, gc);
    if (st == MMD_OK) {
        st = mmd_calib_geom_create(*gc, r->scene, object, g);
        if (st != MMD_OK) st = mmd_error(st, "%s: object: %s", gpath, mmd_last_error());
    }
    if (st == MMD_OK) {
        mmd_calib_geom_centroid(*g, c_now);
        double d = sqrt((c_now[0] - c_file[0]) * (c_now[0] - c_file[0]) + (c_now[1] - c_file[1]) * (c_now[1] - c_file[1]) +
                        (c_now[2] - c_file[2]) * (c_now[2] - c_file[2]));
        /* the pose is about the centroid the object had where it was learned */
        if (d > 1e-3)
            mmd_warn("%s: object '%s' has its centroid %.3f m from where it was learned (another scene or scan?); "
                     "moving it by the learned pose all the same",
                     gpath, object, d);
        st = mmd_calib_geom_set_params(*g, p);
    }
    if (st == MMD_OK) st = mmd_calib_geom_apply(*g);
    if (st == MMD_OK)
        mmd_info("predict: object '%s' moved by (%.4f, %.4f, %.4f) m and %.3f / %.3f deg about x / y (%s)", object, p[0],
                 p[1], p[2], p[3] * 180.0 / M_PI, p[4] * 180.0 / M_PI, gpath);
    return st;
}

static void add_keys(mmd_json *j, const void *user)
{
    const extra_keys *x = user;
    mmd_json_kv_string(j, "model", x->model_file);
    if (x->geometry_file) mmd_json_kv_string(j, "geometry", x->geometry_file);
    if (x->coverage) {
        mmd_json_key(j, "coverage");
        mmd_json_begin_object(j);
        mmd_json_kv_string(j, "result", "coverage/result.json");
        mmd_json_kv_int(j, "cells_with_power", (long long)x->cov->covered);
        mmd_json_kv_double(j, "max_path_gain_db", x->cov->max_db);
        mmd_json_kv_double(j, "median_path_gain_db", x->cov->median_db);
        mmd_json_end_object(j);
    }
}

int mmd_cmd_predict(const mmd_cli_opts *o, int argc, char **argv)
{
    const char *model_dir = NULL;
    mmd_cli_extra_opt extra[] = {{"--model", &model_dir, NULL, 1}};
    mmd_cli_run r;
    int rc = mmd_cli_run_open_ex(&r, o, "predict", argc, argv, 0, extra, 1);
    if (rc) return rc;
    const mmd_experiment *e = &r.e;
    char model[4200], path[4300];
    int neural = 0;
    mmd_status st = find_model(model_dir, model, sizeof model, &neural);
    mmd_material *mats = NULL;
    int *given = NULL;
    uint32_t n_obj = r.scene->n_objects;
    if (st == MMD_OK) {
        mats = mmd_malloc(n_obj, sizeof *mats, "materials");
        given = mmd_calloc(n_obj, sizeof *given, "materials");
        if (!mats || !given) st = MMD_ERR_NOMEM;
    }
    double f_model = 0;
    if (st == MMD_OK && !neural) {
        memcpy(mats, r.sim->materials, n_obj * sizeof *mats);
        st = mmd_materials_yaml_read(model, r.scene, mats, given, &f_model);
    }
    for (uint32_t k = 0; st == MMD_OK && !neural && k < n_obj; k++) {
        if (!given[k]) mmd_warn("%s: no learned material for object '%s'; it keeps the experiment's", model,
                                r.scene->objects[k].name);
        st = mmd_sim_set_material(r.sim, k, &mats[k]);
    }
    if (st == MMD_OK && f_model > 0 && fabs(f_model - e->scene.frequency_hz) > 1e-6 * f_model)
        mmd_warn("%s: learned at %.6g GHz, predicting at %.6g GHz (conductivity and permittivity are frequency "
                 "dependent)",
                 model, f_model * 1e-9, e->scene.frequency_hz * 1e-9);
    int cov = st == MMD_OK && wants_coverage(&r, argc, argv);
    if (st == MMD_OK && neural && cov && e->solver.mode != MMD_CFG_SOLVER_DIRECTIONAL)
        st = mmd_error(MMD_ERR_INVALID, "%s: solver.mode: coverage maps with the neural model need the directional "
                       "mode (the specular path solver takes per-object materials)",
                       r.exp_path);
    mmd_calib *nc = NULL, *gc = NULL;
    mmd_calib_geom *g = NULL;
    char gpath[4300] = "";
    if (st == MMD_OK && !neural) st = apply_geometry(&r, model, gpath, sizeof gpath, &gc, &g);
    if (st == MMD_OK && neural) {
        mmd_calib_options co = mmd_calib_defaults();
        co.model = MMD_CALIB_NEURAL;
        co.field_at_triangle = e->train.field_at == MMD_CFG_FIELD_AT_TRIANGLE;
        co.model_dir = model;
        st = mmd_calib_create(r.sim, &co, &nc);
    }
    /* coverage with the neural field: a second simulator whose material table holds the
     * field at every triangle's centroid (mmd_calib_triangle_materials) */
    mmd_sim *cov_sim = NULL;
    if (st == MMD_OK && neural && cov) {
        mmd_material *tm = mmd_malloc(r.scene->n_triangles ? r.scene->n_triangles : 1, sizeof *tm, "materials");
        st = tm ? mmd_sim_create(r.cl, r.scene, r.bvh, &r.e, &cov_sim) : MMD_ERR_NOMEM;
        if (st == MMD_OK) st = mmd_calib_triangle_materials(nc, tm);
        if (st == MMD_OK) st = mmd_sim_set_triangle_materials(cov_sim, tm);
        if (st == MMD_OK)
            mmd_info("predict: coverage with the neural field evaluated at the centroids of %u triangles",
                     r.scene->n_triangles);
        free(tm);
    }
    if (st == MMD_OK && r.n_poses == 0 && !cov)
        st = mmd_error(MMD_ERR_INVALID, "%s: nothing to predict: no receiver poses (rx.poses / rx.poses_csv) and no "
                       "coverage block",
                       r.exp_path);
    if (st == MMD_OK) mmd_info("predict: model %s (%u objects)", model, n_obj);
    /* compute everything before writing anything */
    mmd_aoa_result res = {0};
    if (st == MMD_OK && r.n_poses)
        st = nc ? mmd_calib_predict(nc, r.poses, NULL, r.n_poses, &res)
                : mmd_sim_aoa(r.sim, r.poses, r.n_poses, &res, progress, NULL);
    mmd_cli_coverage c;
    memset(&c, 0, sizeof c);
    if (st == MMD_OK && cov) {
        mmd_sim *keep = r.sim;
        if (cov_sim) r.sim = cov_sim;
        st = mmd_cli_coverage_compute(&r, &c);
        r.sim = keep;
    }
    if (st == MMD_OK) st = mmd_cli_run_write_records(&r);
    if (st == MMD_OK && r.n_poses) st = mmd_cli_aoa_write(&r, r.dir, &res);
    if (st == MMD_OK && cov) {
        snprintf(path, sizeof path, "%s/coverage", r.dir);
        st = mmd_cli_coverage_write(&r, path, "mmdiff predict", &c);
    }
    if (st == MMD_OK) {
        char abs_model[4200];
        extra_keys x = {realpath(model, abs_model) ? abs_model : model, gpath[0] ? gpath : NULL, cov, &c};
        snprintf(path, sizeof path, "%s/result.json", r.dir);
        st = mmd_cli_aoa_write_result(&r, path, &res, "mmdiff predict", add_keys, &x);
    }
    if (st != MMD_OK) {
        rc = mmd_cli_fail();
    } else {
        if (r.n_poses) mmd_cli_aoa_print(&res);
        if (cov) {
            snprintf(path, sizeof path, "%s/coverage", r.dir);
            mmd_cli_coverage_print(&r, path, &c);
        }
        printf("outputs: %s/ (%sresult.json%s%s)\n", r.dir, r.n_poses ? "spectra.npy, " : "",
               r.n_poses && e->output.png ? ", png/" : "", cov ? ", coverage/" : "");
    }
    mmd_cli_coverage_free(&c);
    mmd_aoa_result_free(&res);
    mmd_sim_destroy(cov_sim);
    mmd_calib_destroy(nc);
    mmd_calib_geom_destroy(g); /* g, then its engine, then the simulator (mmd_calib_geom.h) */
    mmd_calib_destroy(gc);
    free(mats);
    free(given);
    mmd_cli_run_close(&r);
    return rc;
}
