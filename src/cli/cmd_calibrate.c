/*
 * `mmdiff calibrate EXP.yaml [-o DIR] [--resume] [--set key=value ...]`: learn the radio
 * materials of the scene from a measured (or simulated) AoA measurement set (SPEC 5,
 * docs/calibration.md). Reads train.measurements, fits the model with the differentiable
 * engine (mmd_calib.h) driven by the training loop (mmd_train.h), and writes into the run
 * directory:
 *   model/materials.yaml       learned material per scene object (per_object model)
 *   model/geometry.yaml        with a calibrate_geometry block: the learned pose of that object
 *   result.json                loss per epoch, best epoch, scale, timings, device, seed, ...
 *   checkpoint.bin             everything needed to continue (--resume), written every
 *                              train.checkpoint_every epochs, at the end and on SIGINT/SIGTERM
 *   experiment.resolved.yaml, command.txt
 * SIGINT / SIGTERM finish the current step, write the checkpoint and exit with 130 / 143;
 * a second signal ends the process at once (the last checkpoint stays valid).
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mmd_calib.h"
#include "mmd_calib_geom.h"
#include "mmd_par.h"
#include "mmd_train.h"
#include "run.h"

static volatile sig_atomic_t g_stop;
static volatile sig_atomic_t g_signal;

static void on_signal(int sig)
{
    if (g_stop) {
        /* asked twice: the user wants out now; the last checkpoint is intact */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    g_stop = 1;
    g_signal = sig;
    static const char msg[] = "\n[mmdiff] interrupt: finishing the current step and writing a checkpoint "
                              "(again to quit at once)\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
}

/* The engine as a training objective (mmd_train_objective's callbacks). With a
 * calibrate_geometry block the parameter vector is the engine's followed by the object's
 * five pose parameters (mmd_calib_geom.h), and so are the Adam moments in checkpoints:
 * the pose state is kept float-exact (mmd_calib_geom_set_float_state) so that --resume
 * continues bit for bit. The pose takes one Adam step per training step for the first
 * calibrate_geometry.steps steps, then stays. */
typedef struct calib_obj {
    mmd_calib *c;
    mmd_calib_geom *g;      /* NULL without calibrate_geometry */
    size_t n_mat;           /* the engine's parameters */
    double geo_lr;
    int64_t geo_steps;
    const mmd_measurements *ms;
    mmd_cfg_pose *poses;    /* batch scratch */
    const float **measured; /* batch scratch */
    size_t cap;
} calib_obj;

#define NG MMD_CALIB_GEOM_NPARAM

static void o_get(void *ctx, float *raw)
{
    calib_obj *k = ctx;
    mmd_calib_get_params(k->c, raw);
    if (!k->g) return;
    double p[NG];
    mmd_calib_geom_get_params(k->g, p);
    for (int j = 0; j < NG; j++) raw[k->n_mat + j] = (float)p[j];
}
static mmd_status o_set(void *ctx, const float *raw)
{
    calib_obj *k = ctx;
    mmd_status st = mmd_calib_set_params(k->c, raw);
    if (st != MMD_OK || !k->g) return st;
    double p[NG], q[NG];
    mmd_calib_geom_get_params(k->g, q);
    int same = 1;
    for (int j = 0; j < NG; j++) p[j] = raw[k->n_mat + j], same &= p[j] == q[j];
    if (same) return MMD_OK; /* moving the object rebuilds the tree: only when it moves */
    st = mmd_calib_geom_set_params(k->g, p);
    return st == MMD_OK ? mmd_calib_geom_apply(k->g) : st;
}
static void o_zero(void *ctx)
{
    calib_obj *k = ctx;
    mmd_calib_zero_grad(k->c);
    if (k->g) mmd_calib_geom_zero_grad(k->g);
}
static mmd_status o_step(void *ctx, double lr)
{
    calib_obj *k = ctx;
    mmd_status st = mmd_calib_adam(k->c, lr);
    if (st != MMD_OK || !k->g) return st;
    int64_t gs;
    double m[NG], v[NG];
    mmd_calib_geom_get_adam(k->g, &gs, m, v);
    return gs < k->geo_steps ? mmd_calib_geom_adam(k->g, k->geo_lr) : MMD_OK;
}
static void o_get_opt(void *ctx, int64_t *step, float *m, float *v)
{
    calib_obj *k = ctx;
    mmd_calib_get_adam(k->c, step, m, v);
    if (!k->g) return;
    int64_t gs;
    double gm[NG], gv[NG];
    mmd_calib_geom_get_adam(k->g, &gs, gm, gv);
    for (int j = 0; j < NG; j++) m[k->n_mat + j] = (float)gm[j], v[k->n_mat + j] = (float)gv[j];
}
static mmd_status o_set_opt(void *ctx, int64_t step, const float *m, const float *v)
{
    calib_obj *k = ctx;
    mmd_status st = mmd_calib_set_adam(k->c, step, m, v);
    if (st != MMD_OK || !k->g) return st;
    double gm[NG], gv[NG];
    for (int j = 0; j < NG; j++) gm[j] = m[k->n_mat + j], gv[j] = v[k->n_mat + j];
    return mmd_calib_geom_set_adam(k->g, step < k->geo_steps ? step : k->geo_steps, gm, gv);
}
static mmd_status o_loss(void *ctx, const size_t *ids, size_t n, double *loss, int want_grad)
{
    calib_obj *k = ctx;
    if (n > k->cap) return mmd_error(MMD_ERR_INTERNAL, "calibrate: batch of %zu poses over %zu", n, k->cap);
    size_t per = (size_t)k->ms->n_el * (size_t)k->ms->n_az;
    for (size_t i = 0; i < n; i++) {
        k->poses[i] = k->ms->poses[ids[i]];
        k->measured[i] = k->ms->spectra + ids[i] * per;
    }
    return mmd_calib_loss(k->c, k->poses, ids, k->measured, n, loss, want_grad, NULL);
}

static mmd_status write_geometry(const mmd_cli_run *r, const calib_obj *k, const char *dir)
{
    char path[4300], comment[4400];
    double p[NG], c[3];
    mmd_calib_geom_get_params(k->g, p);
    mmd_calib_geom_centroid(k->g, c);
    snprintf(path, sizeof path, "%s/model", dir);
    mmd_status st = mmd_mkdirs(path);
    snprintf(path, sizeof path, "%s/model/geometry.yaml", dir);
    snprintf(comment, sizeof comment,
             "mmdiff calibrate: learned pose of one object (calibrate_geometry, paper Supp. E).\n"
             "Experiment: %s\n"
             "mmdiff predict EXP.yaml --model RUN_DIR moves the object by it before tracing.",
             r->exp_path);
    if (st == MMD_OK)
        st = mmd_geometry_yaml_write(path, r->scene->objects[mmd_calib_geom_object(k->g)].name, p, c, comment);
    return st;
}

static mmd_status write_materials(const mmd_cli_run *r, mmd_calib *c, const char *dir)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/model", dir);
    if (mmd_calib_mlp(c)) return mmd_mlp_save(mmd_calib_mlp(c), path); /* model.yaml + weight NPYs */
    mmd_status st = mmd_mkdirs(path);
    mmd_material *mats = mmd_malloc(r->scene->n_objects, sizeof *mats, "materials");
    if (!mats) return MMD_ERR_NOMEM;
    if (st == MMD_OK) st = mmd_calib_materials(c, mats); /* also pushes them into the simulator */
    snprintf(path, sizeof path, "%s/model/materials.yaml", dir);
    char comment[4400];
    snprintf(comment, sizeof comment,
             "mmdiff calibrate: learned radio materials (per_object model), one entry per scene object.\n"
             "Experiment: %s\n"
             "Use with: mmdiff predict EXP.yaml --model RUN_DIR, or paste `materials` under scene.materials.",
             r->exp_path);
    if (st == MMD_OK) st = mmd_materials_yaml_write(path, r->scene, mats, r->e.scene.frequency_hz, comment);
    free(mats);
    return st;
}

static mmd_status write_result(const mmd_cli_run *r, mmd_calib *c, const mmd_calib_geom *g,
                               const mmd_train_result *t, const mmd_measurements *ms, const char *ckpt)
{
    const mmd_experiment *e = &r->e;
    char path[4300];
    snprintf(path, sizeof path, "%s/result.json", r->dir);
    mmd_json j;
    mmd_json_init(&j);
    mmd_json_begin_object(&j);
    mmd_json_kv_string(&j, "tool", "mmdiff calibrate");
    mmd_json_key(&j, "epochs");
    mmd_json_begin_array(&j);
    for (size_t i = 0; i < t->n_epochs; i++) {
        mmd_json_begin_object(&j);
        mmd_json_kv_double(&j, "loss", t->epochs[i].loss);
        mmd_json_kv_double(&j, "val_loss", t->epochs[i].val_loss);
        mmd_json_kv_double(&j, "seconds", t->epochs[i].seconds);
        mmd_json_end_object(&j);
    }
    mmd_json_end_array(&j);
    mmd_json_kv_double(&j, "final_loss", t->final_loss);
    mmd_json_kv_double(&j, "best_val_loss", t->monitor_is_val ? t->best_loss : NAN);
    mmd_json_kv_double(&j, "best_loss", t->best_loss);
    mmd_json_kv_string(&j, "best_loss_of", t->monitor_is_val ? "validation" : "training");
    mmd_json_kv_int(&j, "best_epoch", t->best_epoch);
    mmd_json_kv_bool(&j, "stopped_early", t->stopped_early != 0);
    mmd_json_kv_bool(&j, "resumed", t->resumed != 0);
    mmd_json_kv_int(&j, "steps", (long long)t->steps);
    mmd_json_kv_double(&j, "scale", mmd_calib_scale(c));
    mmd_json_kv_string(&j, "model", mmd_cfg_enum_name("train.model", e->train.model));
    mmd_json_kv_string(&j, "model_dir", "model");
    mmd_json_kv_string(&j, "checkpoint", ckpt);
    if (g) {
        double p[NG];
        mmd_calib_geom_get_params(g, p);
        mmd_json_key(&j, "geometry");
        mmd_json_begin_object(&j);
        mmd_json_kv_string(&j, "object", r->scene->objects[mmd_calib_geom_object(g)].name);
        mmd_json_kv_string(&j, "file", "model/geometry.yaml");
        mmd_json_key(&j, "translation_m");
        mmd_json_begin_array_inline(&j);
        for (int q = 0; q < 3; q++) mmd_json_double(&j, p[q]);
        mmd_json_end_array(&j);
        mmd_json_key(&j, "rotation_deg");
        mmd_json_begin_array_inline(&j);
        for (int q = 3; q < 5; q++) mmd_json_double(&j, p[q] * 180.0 / M_PI);
        mmd_json_end_array(&j);
        mmd_json_kv_double(&j, "lr", r->e.calibrate_geometry.lr);
        mmd_json_kv_int(&j, "steps", r->e.calibrate_geometry.steps);
        mmd_json_end_object(&j);
    }
    mmd_json_key(&j, "data");
    mmd_json_begin_object(&j);
    mmd_json_kv_string(&j, "measurements", ms->manifest);
    mmd_json_kv_int(&j, "poses", (long long)ms->n_poses);
    mmd_json_kv_int(&j, "train_poses", (long long)t->n_train);
    mmd_json_kv_int(&j, "val_poses", (long long)t->n_val);
    mmd_json_key(&j, "val_pose_ids");
    mmd_json_begin_array_inline(&j);
    for (size_t i = 0; i < t->n_val; i++) mmd_json_int(&j, (long long)t->val_ids[i]);
    mmd_json_end_array(&j);
    char fp[32];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)ms->hash);
    mmd_json_kv_string(&j, "fingerprint", fp);
    mmd_json_end_object(&j);
    double train_s = 0;
    for (size_t i = 0; i < t->n_epochs; i++) train_s += t->epochs[i].seconds;
    mmd_calib_timing tm = mmd_calib_get_timing(c);
    mmd_json_key(&j, "timings");
    mmd_json_begin_object(&j);
    mmd_json_kv_double(&j, "total", mmd_now() - r->t0);
    mmd_json_kv_double(&j, "training", train_s); /* all epochs, resumed legs included */
    mmd_json_kv_double(&j, "this_run", t->seconds);
    mmd_json_kv_double(&j, "per_step", t->steps ? train_s / (double)t->steps : 0);
    mmd_json_kv_double(&j, "trace", tm.trace);
    mmd_json_kv_double(&j, "replay", tm.replay);
    mmd_json_kv_double(&j, "beam", tm.beam);
    mmd_json_kv_double(&j, "backward", tm.backward);
    mmd_json_kv_double(&j, "host", tm.host);
    mmd_json_kv_int(&j, "cache_hits", (long long)tm.cache_hits);
    mmd_json_kv_int(&j, "cache_misses", (long long)tm.cache_misses);
    mmd_json_kv_int(&j, "cache_bytes_used", (long long)tm.cache_bytes_used);
    mmd_json_end_object(&j);
    mmd_cli_run_json_common(r, &j); /* device, seed, command, materials (the learned ones) */
    mmd_json_key(&j, "parameters");
    mmd_json_begin_object(&j);
    mmd_json_kv_double(&j, "lr", e->train.lr);
    mmd_json_kv_int(&j, "batch_poses", e->train.batch_poses);
    mmd_json_kv_int(&j, "epochs", e->train.epochs);
    mmd_json_kv_double(&j, "val_fraction", e->train.val_fraction);
    mmd_json_kv_int(&j, "early_stop_patience", e->train.early_stop_patience);
    mmd_json_kv_double(&j, "loss_floor_db", e->train.loss_floor_db);
    mmd_json_kv_bool(&j, "fit_scale", e->train.fit_scale != 0);
    mmd_json_kv_int(&j, "train_seed", (long long)e->train.seed);
    mmd_json_kv_int(&j, "checkpoint_every", e->train.checkpoint_every);
    mmd_json_kv_int(&j, "rays", e->solver.rays);
    mmd_json_kv_int(&j, "max_depth", e->solver.max_depth);
    mmd_json_kv_int(&j, "cache_mb", e->solver.cache_mb);
    mmd_json_kv_double(&j, "frequency_hz", e->scene.frequency_hz);
    mmd_json_end_object(&j);
    mmd_json_end_object(&j);
    mmd_status st = mmd_json_save(&j, path);
    mmd_json_free(&j);
    return st;
}

int mmd_cmd_calibrate(const mmd_cli_opts *o, int argc, char **argv)
{
    int resume = 0;
    mmd_cli_extra_opt extra[] = {{"--resume", NULL, &resume, 0}};
    mmd_cli_run r;
    int rc = mmd_cli_run_open_ex(&r, o, "calibrate", argc, argv, 0, extra, 1);
    if (rc) return rc;
    const mmd_experiment *e = &r.e;
    mmd_status st = MMD_OK;
    if (!e->train.measurements.path)
        st = mmd_error(MMD_ERR_INVALID, "%s: train.measurements is required by calibrate (a measurement set: the "
                       "measurements/ directory `mmdiff simulate` writes with output.measurements: true)",
                       r.exp_path);
    mmd_measurements ms;
    memset(&ms, 0, sizeof ms);
    if (st == MMD_OK) st = mmd_measurements_read(e->train.measurements.path, &ms);
    if (st == MMD_OK) st = mmd_measurements_check(&ms, e);
    if (st == MMD_OK)
        mmd_info("measurements %s: %zu poses, %d x %d bins", ms.manifest, ms.n_poses, ms.n_el, ms.n_az);

    mmd_calib *c = NULL;
    if (st == MMD_OK) {
        mmd_calib_options co = mmd_calib_defaults();
        co.model = e->train.model == MMD_CFG_MODEL_NEURAL ? MMD_CALIB_NEURAL : MMD_CALIB_PER_OBJECT;
        co.field_at_triangle = e->train.field_at == MMD_CFG_FIELD_AT_TRIANGLE;
        co.mlp.octaves = e->train.octaves;
        co.mlp.n_hidden = e->train.n_hidden;
        for (int q = 0; q < e->train.n_hidden && q < MMD_MLP_MAX_HIDDEN; q++) co.mlp.hidden[q] = e->train.hidden[q];
        co.mlp.seed = (uint64_t)e->train.seed;
        co.loss_floor_db = e->train.loss_floor_db;
        co.fit_scale = e->train.fit_scale;
        co.cache_bytes = (size_t)e->solver.cache_mb << 20;
        st = mmd_calib_create(r.sim, &co, &c);
    }
    calib_obj k = {c, NULL, c ? mmd_calib_n_params(c) : 0, e->calibrate_geometry.lr, e->calibrate_geometry.steps,
                   &ms, NULL, NULL, (size_t)e->train.batch_poses};
    if (st == MMD_OK && e->calibrate_geometry.enabled) {
        st = mmd_calib_geom_create(c, r.scene, e->calibrate_geometry.object, &k.g);
        if (st != MMD_OK)
            st = mmd_error(st, "%s: calibrate_geometry.object: %s", r.exp_path, mmd_last_error());
        else
            mmd_calib_geom_set_float_state(k.g, 1);
    }
    size_t n_params = k.n_mat + (k.g ? NG : 0);
    if (st == MMD_OK) {
        k.poses = mmd_malloc(k.cap, sizeof *k.poses, "batch poses");
        k.measured = mmd_malloc(k.cap, sizeof *k.measured, "batch spectra");
        if (!k.poses || !k.measured) st = MMD_ERR_NOMEM;
    }
    char ckpt[4300], path[4300];
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.bin", r.dir);
    mmd_train_options to = mmd_train_defaults();
    mmd_train_options_from_cfg(&e->train, &to);
    to.checkpoint_path = ckpt;
    to.resume = resume;
    to.data_hash = ms.hash;
    to.stop = &g_stop;
    /* a resume that would be refused is refused before anything is written */
    if (st == MMD_OK && resume) st = mmd_train_resume_check(n_params, ms.n_poses, &to);
    /* across MPI ranks every rank trains the same model on its share of each batch
     * (mmd_calib_loss); rank 0 alone writes checkpoints and outputs (docs/cluster.md) */
    int root = mmd_par_rank() == 0;
    st = mmd_par_agree(st);
    if (st == MMD_OK && root && !resume && access(ckpt, F_OK) == 0)
        mmd_warn("%s exists: starting afresh and replacing it (--resume continues it)", ckpt);
    if (st == MMD_OK && root) st = mmd_cli_run_write_records(&r);
    st = mmd_par_agree(st);
    if (st == MMD_OK && root) {
        /* result.json marks a complete run: a previous one's must not outlive this start */
        snprintf(path, sizeof path, "%s/result.json", r.dir);
        remove(path);
    }

    mmd_train_result t;
    memset(&t, 0, sizeof t);
    if (st == MMD_OK) {
        mmd_train_objective obj = {&k, n_params, o_get, o_set, o_zero, o_loss, o_step, o_get_opt, o_set_opt};
        struct sigaction sa, old_int, old_term;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        g_stop = 0;
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        mmd_info("calibrate: %s model, %zu parameters, lr %g, %d poses per step, %d epochs",
                 mmd_calib_mlp(c) ? "neural" : "per_object", obj.n_params, to.lr, to.batch_poses, to.epochs);
        if (k.g)
            mmd_info("calibrate: and the pose of object '%s' (5 parameters, lr %g, the first %lld steps)",
                     e->calibrate_geometry.object, k.geo_lr, (long long)k.geo_steps);
        size_t sum0, gat0, sum1, gat1;
        mmd_par_traffic(&sum0, &gat0);
        st = mmd_train_run(&obj, ms.n_poses, &to, &t);
        mmd_par_traffic(&sum1, &gat1);
        /* what goes over the network, averaged over this run's steps (validation included;
         * tools/bench_mpi.sh reads this line) */
        if (st == MMD_OK && mmd_par_size() > 1 && t.steps > 0)
            mmd_info("MPI: %d ranks; per rank and step %.0f bytes summed (gradient, loss, stop flag) and %.0f bytes "
                     "gathered (scale-fit ratios)",
                     mmd_par_size(), (double)(sum1 - sum0) / (double)t.steps, (double)(gat1 - gat0) / (double)t.steps);
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
    }
    st = mmd_par_agree(st);
    if (st == MMD_OK && t.interrupted) {
        if (root)
            fprintf(stderr, "mmdiff: interrupted after %zu epochs; checkpoint %s\n"
                        "mmdiff: continue with: mmdiff calibrate %s -o %s --resume\n",
                            t.n_epochs, ckpt, r.exp_path, r.dir);
        rc = g_signal ? 128 + (int)g_signal : 130;
    } else {
        if (st == MMD_OK && root) st = write_materials(&r, c, r.dir);
        if (st == MMD_OK && root && k.g) st = write_geometry(&r, &k, r.dir);
        if (st == MMD_OK && root) st = write_result(&r, c, k.g, &t, &ms, "checkpoint.bin");
        st = mmd_par_agree(st);
        if (st != MMD_OK) {
            rc = mmd_cli_fail();
        } else if (root) {
            printf("%-6s %12s %12s %9s\n", "epoch", "loss", "val_loss", "seconds");
            for (size_t i = 0; i < t.n_epochs; i++)
                printf("%-6zu %12.6g %12.6g %9.2f%s\n", i + 1, t.epochs[i].loss, t.epochs[i].val_loss,
                       t.epochs[i].seconds, (int)i + 1 == t.best_epoch ? "  <- kept" : "");
            const mmd_sim *sim = r.sim;
            if (!mmd_calib_mlp(c)) printf("%-24s %10s %14s %10s %10s\n", "object", "eps_r", "sigma [S/m]", "S", "K_x");
            for (uint32_t k2 = 0; !mmd_calib_mlp(c) && k2 < sim->n_mat; k2++) {
                const mmd_material *m = &sim->materials[k2];
                printf("%-24s %10.4g %14.4g %10.4g %10.4g\n", r.scene->objects[k2].name, m->eps_r, m->sigma_s_per_m,
                       m->scattering, m->xpd);
            }
            if (k.g) {
                double p[NG];
                mmd_calib_geom_get_params(k.g, p);
                printf("object '%s' moved by (%.4f, %.4f, %.4f) m, rotated by %.3f deg about x, %.3f deg about y "
                       "(model/geometry.yaml)\n",
                       e->calibrate_geometry.object, p[0], p[1], p[2], p[3] * 180.0 / M_PI, p[4] * 180.0 / M_PI);
            }
            printf("best epoch %d (%s loss %.6g)%s; scale %.6g\n", t.best_epoch,
                   t.monitor_is_val ? "validation" : "training", t.best_loss, t.stopped_early ? ", stopped early" : "",
                   mmd_calib_scale(c));
            printf("outputs: %s/ (model/%s, result.json, checkpoint.bin)\n", r.dir,
                   mmd_calib_mlp(c) ? "model.yaml + weight NPYs" : "materials.yaml");
            printf("time: %.2f s total, %.3f s per step\n", mmd_now() - r.t0,
                   t.steps ? t.seconds / (double)t.steps : 0.0);
        }
    }
    mmd_train_result_free(&t);
    free(k.poses);
    free(k.measured);
    mmd_calib_geom_destroy(k.g); /* before the engine, whose hook it removes (mmd_calib_geom.h) */
    mmd_calib_destroy(c);
    mmd_measurements_free(&ms);
    mmd_cli_run_close(&r);
    return rc;
}
