/*
 * `mmdiff protocol EXP.yaml [-o DIR] [--set key=value ...]`: the robustness protocol of
 * SPEC 6 / paper Sec. 4 in one command (docs/protocol.md):
 *
 *   1. ground truth: TRAJ and RAND measurement sets on the clean mesh with the experiment's
 *      (ground-truth) materials                                  (mmdiff dataset -> data/)
 *   2. on the noisy mesh (scene.noise), starting from protocol.initial_materials:
 *        specular                  the exact-specular baseline, calibrated on TRAJ
 *                                  (mmdiff calibrate in specular mode; see
 *                                  protocol.specular_materials for the fallback)
 *        directional_uncalibrated  the directional model with the initial materials
 *        directional_calibrated    the directional model calibrated on TRAJ
 *        directional_ground_truth  the directional model with the ground-truth materials:
 *                                  what a perfect calibration would give on this scan,
 *                                  so the table separates material from geometry error
 *      each predicting the TRAJ and RAND poses   (calibrate / predict / simulate -> ARM/)
 *   3. metrics of every model on TRAJ and RAND (docs/evaluation.md): metrics.json,
 *      metrics.md (the tables, in the shape of the paper's Tables 4/5), metrics.csv,
 *      per_pose/SET_ARM.csv
 *   4. figures/: predicted vs ground-truth spectra for a few RAND poses, and coverage maps
 *      (ground truth, specular, before and after calibration) on one colour scale
 *
 * Each step is the same code as the sub-command of that name, called in-process with the
 * arguments written in DIR/steps.txt (so every step directory holds its own
 * experiment.resolved.yaml, command.txt, run.json, log.txt and result files, and its
 * stdout in stdout.txt). The protocol's own settings live in the experiment file's
 * top-level `protocol:` block, read here (the experiment schema does not know it: the
 * block is cut out of the text, line numbers kept, before the experiment is loaded).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "mmd_coverage.h"
#include "mmd_eval.h"
#include "mmd_plot.h"
#include "mmd_train.h"
#include "run.h"

#define PATHN 4400

enum { ARM_SPECULAR, ARM_UNCAL, ARM_CAL, ARM_REF, N_ARMS };
static const char *const ARM_NAME[N_ARMS] = {"specular", "directional_uncalibrated", "directional_calibrated",
                                             "directional_ground_truth"};
static const char *const ARM_LABEL[N_ARMS] = {"specular baseline", "directional, uncalibrated",
                                              "directional, calibrated",
                                              "directional, ground-truth materials (reference)"};
/* the arms drawn in the figures and coverage maps (the reference is a table row only) */
#define N_FIG_ARMS 3
enum { SET_TRAJ, SET_RAND, N_SETS };
static const char *const SET_NAME[N_SETS] = {"TRAJ", "RAND"};

enum { SPEC_CALIBRATED, SPEC_GROUND_TRUTH, SPEC_INITIAL };
static const char *const SPEC_MAT_NAME[3] = {"calibrated", "ground_truth", "initial"};

/* ---- the protocol block ---------------------------------------------------------------- */

typedef struct proto_cfg {
    int truth_mode;          /* MMD_CFG_SOLVER_* of the ground truth */
    char *initial_materials; /* flow YAML of scene.materials for the noisy-mesh models ("{}" = the scene's own) */
    int specular_materials;  /* SPEC_* */
    int figure_poses;        /* RAND poses drawn as spectra figures */
    int coverage;            /* coverage maps before/after calibration */
} proto_cfg;

static const char *const PROTO_KEYS = "truth_mode, initial_materials, specular_materials, figure_poses, coverage";

/* growable string */
typedef struct sbuf {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if (b->n + (size_t)k + 1 > b->cap) {
        size_t cap = 2 * (b->n + (size_t)k + 1) + 256;
        char *s = realloc(b->s, cap);
        if (!s) return;
        b->s = s;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

/* A YAML node as flow YAML (what --set takes). */
static void flow_yaml(sbuf *b, const mmd_ynode *n)
{
    if (!n) {
        sb_add(b, "null");
    } else if (n->kind == MMD_YAML_SCALAR) {
        if (n->is_null) {
            sb_add(b, "null");
        } else if (n->quoted || strpbrk(n->text, ",:{}[]#&*!|>'\"%@`") || !n->text[0]) {
            sb_add(b, "\"");
            for (const char *p = n->text; *p; p++) {
                if (*p == '"' || *p == '\\') sb_add(b, "\\%c", *p);
                else if (*p == '\n') sb_add(b, "\\n");
                else sb_add(b, "%c", *p);
            }
            sb_add(b, "\"");
        } else {
            sb_add(b, "%s", n->text);
        }
    } else {
        int map = n->kind == MMD_YAML_MAP;
        sb_add(b, map ? "{" : "[");
        for (size_t i = 0; i < n->n; i++) {
            if (i) sb_add(b, ", ");
            if (map) {
                flow_yaml(b, n->keys[i]);
                sb_add(b, ": ");
            }
            flow_yaml(b, n->items[i]);
        }
        sb_add(b, map ? "}" : "]");
    }
}

static int is_true(const char *t)
{
    return !strcmp(t, "true") || !strcmp(t, "True") || !strcmp(t, "TRUE");
}
static int is_false(const char *t)
{
    return !strcmp(t, "false") || !strcmp(t, "False") || !strcmp(t, "FALSE");
}

/* One key of the protocol block (from the file or a --set). */
static mmd_status proto_key(proto_cfg *p, const char *key, const mmd_ynode *knode, const mmd_ynode *v)
{
    char where[PATHN];
    mmd_yaml_where(v, where, sizeof where);
    int scalar = v->kind == MMD_YAML_SCALAR && !v->is_null;
    if (!strcmp(key, "truth_mode")) {
        if (scalar && !v->quoted && !strcmp(v->text, "directional")) p->truth_mode = MMD_CFG_SOLVER_DIRECTIONAL;
        else if (scalar && !v->quoted && !strcmp(v->text, "specular")) p->truth_mode = MMD_CFG_SOLVER_SPECULAR;
        else
            return mmd_error(MMD_ERR_INVALID, "%s: protocol.truth_mode: expected one of directional, specular, got '%s'",
                             where, scalar ? v->text : "a block");
    } else if (!strcmp(key, "specular_materials")) {
        int k = -1;
        for (int i = 0; scalar && i < 3; i++)
            if (!strcmp(v->text, SPEC_MAT_NAME[i])) k = i;
        if (k < 0)
            return mmd_error(MMD_ERR_INVALID, "%s: protocol.specular_materials: expected one of calibrated, "
                             "ground_truth, initial, got '%s'",
                             where, scalar ? v->text : "a block");
        p->specular_materials = k;
    } else if (!strcmp(key, "figure_poses")) {
        char *end = NULL;
        long k = scalar && !v->quoted ? strtol(v->text, &end, 10) : -1;
        if (!scalar || v->quoted || !end || *end || k < 0 || k > 16)
            return mmd_error(MMD_ERR_INVALID, "%s: protocol.figure_poses: expected an integer in [0, 16], got '%s'",
                             where, scalar ? v->text : "a block");
        p->figure_poses = (int)k;
    } else if (!strcmp(key, "coverage")) {
        if (scalar && !v->quoted && is_true(v->text)) p->coverage = 1;
        else if (scalar && !v->quoted && is_false(v->text)) p->coverage = 0;
        else
            return mmd_error(MMD_ERR_INVALID, "%s: protocol.coverage: expected true or false, got '%s'", where,
                             scalar ? v->text : "a block");
    } else if (!strcmp(key, "initial_materials")) {
        if (v->kind == MMD_YAML_SCALAR && !v->is_null)
            return mmd_error(MMD_ERR_INVALID, "%s: protocol.initial_materials: expected a block of NAME: material "
                             "entries (as scene.materials) or null, got '%s'",
                             where, v->text);
        if (v->kind == MMD_YAML_SEQ)
            return mmd_error(MMD_ERR_INVALID, "%s: protocol.initial_materials: expected a block of NAME: material "
                             "entries (as scene.materials), got a list",
                             where);
        sbuf b = {0};
        if (v->kind == MMD_YAML_SCALAR) sb_add(&b, "{}");
        else flow_yaml(&b, v);
        if (!b.s) return mmd_error(MMD_ERR_NOMEM, "out of memory");
        free(p->initial_materials);
        p->initial_materials = b.s;
    } else {
        if (knode) mmd_yaml_where(knode, where, sizeof where);
        return mmd_error(MMD_ERR_INVALID, "%s: unknown key 'protocol.%s'; valid keys in protocol: %s", where, key,
                         PROTO_KEYS);
    }
    return MMD_OK;
}

/* Blank the lines of top-level block `key` of a YAML text (spaces, newlines kept, so
 * every other line keeps its number). 0 when the key is absent; -1 when it is not a
 * block key at the start of its line. */
static int blank_block(char *text, size_t len, const mmd_ynode *root, const char *key)
{
    int key_line = 0, next_line = 0;
    for (size_t i = 0; root && root->kind == MMD_YAML_MAP && i < root->n; i++) {
        if (strcmp(root->keys[i]->text, key)) continue;
        if (root->keys[i]->col != 1) return -1;
        key_line = root->keys[i]->line;
    }
    if (!key_line) return 0;
    for (size_t k = 0; k < root->n; k++)
        if (root->keys[k]->line > key_line && (!next_line || root->keys[k]->line < next_line))
            next_line = root->keys[k]->line;
    int line = 1;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\n') line++;
        else if (line >= key_line && (!next_line || line < next_line)) text[i] = ' ';
    }
    return 1;
}

/* The experiment text without its protocol block (same line numbers), and the block's
 * settings. */
static mmd_status read_protocol(const char *path, char **text_out, proto_cfg *p)
{
    char *text = NULL;
    size_t len = 0;
    *text_out = NULL;
    mmd_status st = mmd_read_file(path, &text, &len);
    if (st != MMD_OK) return st;
    mmd_ynode *root = NULL;
    st = mmd_yaml_load_string(text, len, path, 1, &root);
    if (st == MMD_OK && (!root || root->kind != MMD_YAML_MAP))
        st = mmd_error(MMD_ERR_INVALID, "%s: expected an experiment (a block of keys)", path);
    const mmd_ynode *blk = NULL;
    for (size_t i = 0; st == MMD_OK && i < root->n; i++) {
        if (strcmp(root->keys[i]->text, "protocol")) continue;
        blk = root->items[i];
        if (root->keys[i]->col != 1)
            st = mmd_error(MMD_ERR_INVALID, "%s:%d:%d: the protocol block must be a top-level block key at the start "
                           "of its line",
                           path, root->keys[i]->line, root->keys[i]->col);
    }
    if (st == MMD_OK && !blk)
        st = mmd_error(MMD_ERR_INVALID, "%s: no protocol block; `mmdiff protocol` needs one (at least `protocol: "
                       "{initial_materials: ...}`, docs/protocol.md)",
                       path);
    if (st == MMD_OK && blk->kind == MMD_YAML_SEQ)
        st = mmd_error(MMD_ERR_INVALID, "%s:%d:%d: protocol: expected a block of keys (%s), got a list", path,
                       blk->line, blk->col, PROTO_KEYS);
    if (st == MMD_OK && blk->kind == MMD_YAML_SCALAR && !blk->is_null)
        st = mmd_error(MMD_ERR_INVALID, "%s:%d:%d: protocol: expected a block of keys (%s), got '%s'", path,
                       blk->line, blk->col, PROTO_KEYS, blk->text);
    for (size_t i = 0; st == MMD_OK && blk->kind == MMD_YAML_MAP && i < blk->n; i++)
        st = proto_key(p, blk->keys[i]->text, blk->keys[i], blk->items[i]);
    if (st == MMD_OK) blank_block(text, len, root, "protocol");
    mmd_yaml_free(root);
    if (st != MMD_OK) {
        free(text);
        return st;
    }
    *text_out = text;
    return MMD_OK;
}

/* ---- running the steps ----------------------------------------------------------------- */

typedef struct proto {
    const mmd_cli_opts *o;
    const char *dir;
    char base[PATHN];     /* DIR/experiment.base.yaml: the resolved experiment every step runs */
    mmd_experiment e;     /* the same, loaded */
    proto_cfg p;
    char *init_set;       /* "scene.materials=<initial_materials>" */
    FILE *steps;          /* DIR/steps.txt */
    double t_step[32];
    char step_name[32][48];
    double cov_extent[4]; /* the clean scene's footprint (or coverage.extent_m): one grid for every map */
    int n_steps;
    int spec_used;        /* SPEC_* actually used */
    double cov_err[3];    /* mean |coverage - ground truth| [dB] of the three models */
    char spec_reason[1024];
} proto;

/* the arguments of one step after `CMD BASE -o DIR` */
typedef struct args {
    const char *v[48];
    int n;
} args;
static void args_init(args *a) { a->n = 0; }
static void args_add(args *a, const char *x, const char *y)
{
    if (a->n + 2 <= 48) {
        a->v[a->n++] = x;
        a->v[a->n++] = y;
    }
}
static void args_set(args *a, const char *kv) { args_add(a, "--set", kv); }

/* remove a directory's files (one level; a previous run's map before a rename over it) */
static void rm_tree_shallow(const char *dir)
{
    static const char *const names[] = {"path_gain_db.npy", "rss_dbm.npy", "coverage.png", "coverage.json", "rss.png",
                                        "rss.json", "result.json"};
    char p[PATHN + 64];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        remove(p);
    }
    rmdir(dir);
}

static int mmd_cli_fail_msg(mmd_status st)
{
    (void)st;
    return mmd_cli_fail();
}

/* Run `mmdiff CMD BASE -o DIR/SUB ARGS...` in-process, its stdout into DIR/SUB/stdout.txt. */
static int step(proto *P, const char *label, const char *cmd, const char *sub, const args *A)
{
    const char *const *args = A->v;
    int n_args = A->n;
    char out[PATHN], so[PATHN + 32];
    snprintf(out, sizeof out, "%s/%s", P->dir, sub);
    if (mmd_mkdirs(out) != MMD_OK) return mmd_cli_fail();
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)cmd;
    argv[argc++] = P->base;
    argv[argc++] = "-o";
    argv[argc++] = out;
    for (int i = 0; i < n_args && argc < 62; i++) argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    fprintf(P->steps, "mmdiff%s%s", P->o->device ? " --device " : "", P->o->device ? P->o->device : "");
    for (int i = 0; i < argc; i++) fprintf(P->steps, strpbrk(argv[i], " {}[]:,'\"") ? " '%s'" : " %s", argv[i]);
    fprintf(P->steps, "\n");
    fflush(P->steps);
    mmd_info("protocol: %s (mmdiff %s -> %s)", label, cmd, out);
    /* the step's stdout (its tables) goes to a file; the protocol prints its own */
    snprintf(so, sizeof so, "%s/stdout.txt", out);
    fflush(stdout);
    int saved = dup(1);
    FILE *f = fopen(so, "w");
    if (f && saved >= 0) dup2(fileno(f), 1);
    double t0 = mmd_now();
    int rc = 1;
    if (!strcmp(cmd, "dataset")) rc = mmd_cmd_dataset(P->o, argc, argv);
    else if (!strcmp(cmd, "calibrate")) rc = mmd_cmd_calibrate(P->o, argc, argv);
    else if (!strcmp(cmd, "predict")) rc = mmd_cmd_predict(P->o, argc, argv);
    else if (!strcmp(cmd, "simulate")) rc = mmd_cmd_simulate(P->o, argc, argv);
    else if (!strcmp(cmd, "coverage")) rc = mmd_cmd_coverage(P->o, argc, argv);
    fflush(stdout);
    if (f && saved >= 0) dup2(saved, 1);
    if (saved >= 0) close(saved);
    if (f) fclose(f);
    double dt = mmd_now() - t0;
    if (P->n_steps < 32) {
        snprintf(P->step_name[P->n_steps], sizeof P->step_name[0], "%s", label);
        P->t_step[P->n_steps++] = dt;
    }
    mmd_info("protocol: %s %s in %.1f s", label, rc ? "FAILED" : "done", dt);
    return rc;
}

/* ---- metrics ----------------------------------------------------------------------------- */

typedef struct set_data {
    mmd_measurements truth;
    int have;
    float *pred[N_ARMS];
    mmd_eval_summary sum[N_ARMS];
} set_data;

static mmd_status eval_set(proto *P, int s, set_data *d)
{
    char path[PATHN + 64];
    snprintf(path, sizeof path, "%s/data/%s", P->dir, SET_NAME[s]);
    mmd_status st = mmd_measurements_read(path, &d->truth);
    if (st != MMD_OK) return st;
    d->have = 1;
    mmd_eval_options opt = mmd_eval_defaults();
    mmd_eval_options_from_cfg(&P->e.evaluate, &opt);
    snprintf(path, sizeof path, "%s/per_pose", P->dir);
    st = mmd_mkdirs(path);
    const mmd_measurements *t = &d->truth;
    for (int a = 0; st == MMD_OK && a < N_ARMS; a++) {
        mmd_array arr;
        snprintf(path, sizeof path, "%s/%s/%s/spectra.npy", P->dir, ARM_NAME[a], SET_NAME[s]);
        st = mmd_npy_read_f32(path, &arr);
        if (st != MMD_OK) break;
        if (arr.ndim != 3 || arr.shape[0] != t->n_poses || arr.shape[1] != (size_t)t->n_el ||
            arr.shape[2] != (size_t)t->n_az) {
            st = mmd_error(MMD_ERR_INVALID, "%s: shape does not match the ground truth %s (%zu x %d x %d)", path,
                           t->manifest, t->n_poses, t->n_el, t->n_az);
            mmd_array_free(&arr);
            break;
        }
        d->pred[a] = arr.data;
        mmd_eval_pose *per = NULL;
        st = mmd_eval_spectra(d->pred[a], t->spectra, t->n_poses, t->n_az, t->n_el, &t->azimuth_deg,
                              &t->elevation_deg, &opt, &per, &d->sum[a]);
        if (st == MMD_OK) {
            snprintf(path, sizeof path, "%s/per_pose/%s_%s.csv", P->dir, SET_NAME[s], ARM_NAME[a]);
            st = mmd_eval_write_csv(path, per, t->n_poses, t->poses, &opt);
        }
        free(per);
    }
    return st;
}

static void set_free(set_data *d)
{
    if (d->have) mmd_measurements_free(&d->truth);
    for (int a = 0; a < N_ARMS; a++) free(d->pred[a]);
    memset(d, 0, sizeof *d);
}

static void fmt_num(char *buf, size_t cap, double v, const char *f)
{
    if (isfinite(v)) snprintf(buf, cap, f, v);
    else snprintf(buf, cap, "n/a");
}

/* metrics.md: one table per set, in the shape of the paper's Tables 4/5 */
static void table_md(sbuf *b, const proto *P, const set_data *sets)
{
    for (int s = N_SETS - 1; s >= 0; s--) {
        const set_data *d = &sets[s];
        sb_add(b, "### %s (%zu poses%s)\n\n", SET_NAME[s], d->truth.n_poses,
               s == SET_TRAJ ? ", the calibration poses" : ", unseen poses");
        sb_add(b, "| model | top-1 F1 ↑ | top-1 AAE [°] ↓ | top-1 APE [dB] ↓ | top-5 F1 ↑ | top-5 AAE [°] ↓ | "
                  "top-5 APE [dB] ↓ | power error [dB] ↓ |\n");
        sb_add(b, "|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for (int a = 0; a < N_ARMS; a++) {
            const mmd_eval_summary *m = &d->sum[a];
            char c[7][32];
            fmt_num(c[0], 32, m->top[0].f1, "%.3f");
            fmt_num(c[1], 32, m->top[0].aae_deg, "%.2f");
            fmt_num(c[2], 32, m->top[0].ape_db, "%.2f");
            fmt_num(c[3], 32, m->top[1].f1, "%.3f");
            fmt_num(c[4], 32, m->top[1].aae_deg, "%.2f");
            fmt_num(c[5], 32, m->top[1].ape_db, "%.2f");
            fmt_num(c[6], 32, m->power_error_db, "%.2f");
            char label[128];
            if (a == ARM_SPECULAR)
                snprintf(label, sizeof label, "%s (%s)", ARM_LABEL[a],
                         P->spec_used == SPEC_CALIBRATED    ? "calibrated"
                         : P->spec_used == SPEC_GROUND_TRUTH ? "ground-truth materials"
                                                              : "initial materials");
            else
                snprintf(label, sizeof label, "%s", ARM_LABEL[a]);
            sb_add(b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", label, c[0], c[1], c[2], c[3], c[4], c[5], c[6]);
        }
        sb_add(b, "\n");
    }
}

static void table_csv(sbuf *b, const set_data *sets)
{
    sb_add(b, "set,model,n_poses,top1_f1,top1_aae_deg,top1_ape_db,top5_f1,top5_aae_deg,top5_ape_db,power_error_db\n");
    for (int s = 0; s < N_SETS; s++)
        for (int a = 0; a < N_ARMS; a++) {
            const mmd_eval_summary *m = &sets[s].sum[a];
            sb_add(b, "%s,%s,%zu,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g\n", SET_NAME[s], ARM_NAME[a], m->n_poses,
                   m->top[0].f1, m->top[0].aae_deg, m->top[0].ape_db, m->top[1].f1, m->top[1].aae_deg,
                   m->top[1].ape_db, m->power_error_db);
        }
}

static void write_settings(mmd_json *j, const proto *P)
{
    const mmd_experiment *e = &P->e;
    mmd_json_key(j, "settings");
    mmd_json_begin_object(j);
    mmd_json_kv_string(j, "scene", e->scene.file.path);
    mmd_json_kv_double(j, "frequency_hz", e->scene.frequency_hz);
    mmd_json_kv_string(j, "truth", "clean mesh, ground-truth materials (scene.materials)");
    mmd_json_kv_string(j, "truth_mode", P->p.truth_mode == MMD_CFG_SOLVER_SPECULAR ? "specular" : "directional");
    mmd_json_key(j, "noise");
    mmd_json_begin_object(j);
    const mmd_cfg_noise *n = &e->scene.noise;
    if (n->has_subdivide) mmd_json_kv_double(j, "subdivide_m", n->subdivide_m);
    else {
        mmd_json_key(j, "subdivide_m");
        mmd_json_null(j);
    }
    mmd_json_kv_double(j, "sigma_m", n->sigma_m);
    mmd_json_kv_double(j, "hole_fraction", n->hole_fraction);
    mmd_json_kv_double(j, "hole_radius_m", n->hole_radius_m);
    mmd_json_kv_double(j, "decimate", n->decimate);
    mmd_json_kv_int(j, "seed", (long long)n->seed);
    mmd_json_end_object(j);
    mmd_json_kv_string(j, "initial_materials", P->p.initial_materials);
    mmd_json_kv_string(j, "specular_materials", SPEC_MAT_NAME[P->spec_used]);
    mmd_json_kv_string(j, "specular_materials_requested", SPEC_MAT_NAME[P->p.specular_materials]);
    mmd_json_kv_string(j, "specular_materials_reason", P->spec_reason[0] ? P->spec_reason : NULL);
    mmd_json_kv_int(j, "traj_poses", e->dataset.traj_poses);
    mmd_json_kv_int(j, "rand_poses", e->dataset.rand_poses);
    mmd_json_kv_int(j, "rays", e->solver.rays);
    mmd_json_kv_int(j, "max_depth", e->solver.max_depth);
    mmd_json_kv_int(j, "alpha_r", e->solver.alpha_r);
    double g[3] = {e->aoa.azimuth_deg.start, e->aoa.azimuth_deg.stop, e->aoa.azimuth_deg.step};
    mmd_json_kv_doubles(j, "azimuth_deg", g, 3);
    g[0] = e->aoa.elevation_deg.start, g[1] = e->aoa.elevation_deg.stop, g[2] = e->aoa.elevation_deg.step;
    mmd_json_kv_doubles(j, "elevation_deg", g, 3);
    mmd_json_kv_int(j, "rx_rows", e->rx.array.rows);
    mmd_json_kv_int(j, "rx_cols", e->rx.array.cols);
    mmd_json_key(j, "train");
    mmd_json_begin_object(j);
    mmd_json_kv_string(j, "model", mmd_cfg_enum_name("train.model", e->train.model));
    mmd_json_kv_double(j, "lr", e->train.lr);
    mmd_json_kv_int(j, "epochs", e->train.epochs);
    mmd_json_kv_int(j, "batch_poses", e->train.batch_poses);
    mmd_json_kv_double(j, "val_fraction", e->train.val_fraction);
    mmd_json_kv_bool(j, "fit_scale", e->train.fit_scale != 0);
    mmd_json_end_object(j);
    mmd_json_key(j, "seeds");
    mmd_json_begin_object(j);
    mmd_json_kv_int(j, "solver", (long long)e->solver.seed);
    mmd_json_kv_int(j, "dataset", (long long)e->dataset.seed);
    mmd_json_kv_int(j, "train", (long long)e->train.seed);
    mmd_json_kv_int(j, "noise", (long long)e->scene.noise.seed);
    mmd_json_end_object(j);
    mmd_eval_options opt = mmd_eval_defaults();
    mmd_eval_options_from_cfg(&e->evaluate, &opt);
    mmd_eval_json_thresholds(j, &opt);
    mmd_json_key(j, "timings_s");
    mmd_json_begin_object(j);
    for (int i = 0; i < P->n_steps; i++) mmd_json_kv_double(j, P->step_name[i], P->t_step[i]);
    mmd_json_end_object(j);
    mmd_json_kv_string(j, "version", mmd_cli_version());
    mmd_json_end_object(j);
}

/* ---- figures ----------------------------------------------------------------------------- */

static mmd_status spectra_figure(const proto *P, const set_data *d, size_t pose, const char *path)
{
    const mmd_measurements *t = &d->truth;
    size_t per = (size_t)t->n_el * (size_t)t->n_az;
    const mmd_cfg_grid *az = &t->azimuth_deg, *el = &t->elevation_deg;
    float *db = mmd_malloc(4 * per, sizeof(float), "figure");
    if (!db) return MMD_ERR_NOMEM;
    const float *src[4] = {t->spectra + pose * per, d->pred[0] + pose * per, d->pred[1] + pose * per,
                           d->pred[2] + pose * per};
    static const char *const titles[4] = {"ground truth (clean mesh)", "specular baseline", "directional, uncalibrated",
                                          "directional, calibrated"};
    mmd_heatmap_params panels[4];
    mmd_plot_marker marks[4][5];
    char ptitle[4][96];
    mmd_status st = MMD_OK;
    for (int k = 0; k < 4 && st == MMD_OK; k++) {
        for (size_t i = 0; i < per; i++) db[k * per + i] = src[k][i] > 0 ? 10.0f * log10f(src[k][i]) : -INFINITY;
        mmd_eval_peak pk[5];
        int nf = 0;
        st = mmd_eval_find_peaks(src[k], t->n_az, t->n_el, az, el, P->e.evaluate.dynamic_range_db, pk, 5, &nf, NULL);
        for (int q = 0; q < nf; q++)
            marks[k][q] = (mmd_plot_marker){pk[q].az_deg, pk[q].el_deg, k ? MMD_MARKER_CIRCLE : MMD_MARKER_CROSS,
                                            q == 0 ? "1" : NULL};
        panels[k] = mmd_heatmap_defaults();
        mmd_heatmap_params *p = &panels[k];
        p->data = db + k * per;
        p->nx = t->n_az;
        p->ny = t->n_el;
        p->x0 = az->start - 0.5 * az->step;
        p->x1 = az->start + (t->n_az - 0.5) * az->step;
        p->y0 = el->start - 0.5 * el->step;
        p->y1 = el->start + (t->n_el - 0.5) * el->step;
        snprintf(ptitle[k], sizeof ptitle[k], "%s", titles[k]);
        p->title = ptitle[k];
        p->xlabel = "azimuth [°]";
        p->ylabel = k ? NULL : "elevation [°]";
        p->cbar_label = "power [dB]";
        p->dynamic_range = 40;
        p->x_angle_ticks = p->y_angle_ticks = true;
        p->markers = marks[k];
        p->n_markers = nf;
    }
    char title[256];
    const mmd_cfg_pose *ps = &t->poses[pose];
    snprintf(title, sizeof title, "RAND pose %zu at (%.2f, %.2f, %.2f) m, yaw %.0f°: noisy scan, top-5 peaks marked", pose,
             ps->position_m[0], ps->position_m[1], ps->position_m[2], ps->yaw_deg);
    mmd_heatmap_figure fig = {panels, 4, title, 0, 0, NULL};
    if (st == MMD_OK) st = mmd_plot_heatmaps(path, NULL, &fig);
    free(db);
    return st;
}

static mmd_status coverage_figure(proto *P, const char *path)
{
    static const char *const sub[4] = {"coverage/ground_truth", "coverage/specular", "coverage/uncalibrated",
                                       "coverage/calibrated"};
    static const char *const titles[4] = {"ground truth (clean mesh)", "specular baseline", "before calibration",
                                          "after calibration"};
    mmd_array a[4];
    memset(a, 0, sizeof a);
    mmd_status st = MMD_OK;
    char p[PATHN + 64];
    for (int k = 0; k < 4 && st == MMD_OK; k++) {
        snprintf(p, sizeof p, "%s/%s/path_gain_db.npy", P->dir, sub[k]);
        st = mmd_npy_read_f32(p, &a[k]);
        if (st == MMD_OK && (a[k].ndim != 2 || a[k].shape[0] != a[0].shape[0] || a[k].shape[1] != a[0].shape[1]))
            st = mmd_error(MMD_ERR_INVALID, "%s: not a map of the same grid as %s", p, sub[0]);
    }
    /* grid and floor plan: the clean scene, cut at the map height */
    mmd_scene *scene = NULL;
    double *outline = NULL;
    size_t n_outline = 0;
    const mmd_cfg_coverage *c = &P->e.coverage;
    const double *ext = P->cov_extent;
    if (st == MMD_OK) st = mmd_scene_load(P->e.scene.file.path, &scene);
    if (st == MMD_OK) st = mmd_scene_slice_z(scene, c->z_m, ext, &outline, &n_outline);
    mmd_heatmap_params panels[4];
    mmd_plot_polyline plan = {outline, n_outline, false};
    mmd_plot_marker tx = {P->e.tx.position_m[0], P->e.tx.position_m[1], MMD_MARKER_TRIANGLE, "TX"};
    for (int k = 0; k < 4 && st == MMD_OK; k++) {
        int nx = (int)a[k].shape[1], ny = (int)a[k].shape[0];
        panels[k] = mmd_heatmap_defaults();
        mmd_heatmap_params *q = &panels[k];
        q->data = a[k].data;
        q->nx = nx;
        q->ny = ny;
        q->x0 = ext[0];
        q->x1 = ext[0] + nx * c->cell_m;
        q->y0 = ext[2];
        q->y1 = ext[2] + ny * c->cell_m;
        q->title = titles[k];
        q->xlabel = "x [m]";
        q->ylabel = k ? NULL : "y [m]";
        q->cbar_label = "path gain [dB]";
        q->equal_aspect = true;
        q->dynamic_range = 50;
        q->markers = &tx;
        q->n_markers = 1;
        q->overlays = &plan;
        q->n_overlays = n_outline ? 1 : 0;
    }
    char title[256];
    snprintf(title, sizeof title, "Coverage at z = %.2f m, %.4g GHz: noisy scan (specular, directional before/after "
             "calibration) vs ground truth", c->z_m, P->e.scene.frequency_hz * 1e-9);
    mmd_heatmap_figure fig = {panels, 4, title, 0, 0, NULL};
    if (st == MMD_OK) st = mmd_plot_heatmaps(path, NULL, &fig);
    /* |model - ground truth| per cell, and its mean over the cells both maps reach */
    size_t n = st == MMD_OK ? a[0].count : 0;
    float *err = n ? mmd_malloc(3 * n, sizeof *err, "coverage error") : NULL;
    if (n && !err) st = MMD_ERR_NOMEM;
    char etitle[3][96];
    static const char *const names[3] = {"specular baseline", "before calibration", "after calibration"};
    for (int k = 1; k < 4 && err; k++) {
        double sum = 0;
        size_t cnt = 0;
        for (size_t i = 0; i < n; i++) {
            float g = a[0].data[i], m = a[k].data[i];
            float e = isfinite(g) && isfinite(m) ? fabsf(m - g) : NAN;
            err[(k - 1) * n + i] = e;
            if (isfinite(e)) sum += e, cnt++;
        }
        P->cov_err[k - 1] = cnt ? sum / (double)cnt : NAN;
        snprintf(etitle[k - 1], sizeof etitle[k - 1], "%s: mean %.2f dB", names[k - 1], P->cov_err[k - 1]);
        panels[k - 1] = panels[k];
        panels[k - 1].data = err + (k - 1) * n;
        panels[k - 1].title = etitle[k - 1];
        panels[k - 1].ylabel = k == 1 ? "y [m]" : NULL;
        panels[k - 1].cbar_label = "|model - ground truth| [dB]";
        panels[k - 1].cmap = MMD_CMAP_MAGMA;
        panels[k - 1].vmin = 0;
        panels[k - 1].vmax = 6;
    }
    if (st == MMD_OK && err) {
        char epath[PATHN + 64];
        snprintf(epath, sizeof epath, "%.*s_error.png", (int)(strlen(path) - 4), path);
        snprintf(title, sizeof title, "Coverage error at z = %.2f m: |path gain of the model on the noisy scan - ground "
                 "truth|", c->z_m);
        mmd_heatmap_figure ef = {panels, 3, title, 0, 0, NULL};
        st = mmd_plot_heatmaps(epath, NULL, &ef);
    }
    free(err);
    for (int k = 0; k < 4; k++) mmd_array_free(&a[k]);
    free(outline);
    mmd_scene_destroy(scene);
    return st;
}

/* ---- the command ------------------------------------------------------------------------- */

static int usage(void)
{
    fprintf(stderr, "usage: mmdiff protocol EXP.yaml [-o DIR] [--set key=value ...]\n"
                    "       (--set protocol.KEY=VALUE sets a key of the protocol block; docs/protocol.md)\n");
    return 2;
}

static char *join_cmdline(const mmd_cli_opts *o, int argc, char **argv)
{
    sbuf b = {0};
    sb_add(&b, "mmdiff%s%s protocol", o->device ? " --device " : "", o->device ? o->device : "");
    for (int i = 1; i < argc; i++) sb_add(&b, strpbrk(argv[i], " {}[]'\"$*?;&|") ? " '%s'" : " %s", argv[i]);
    return b.s;
}

static void run_extra(mmd_json *j, const void *user)
{
    const proto *P = user;
    mmd_json_key(j, "timings_s");
    mmd_json_begin_object(j);
    for (int i = 0; i < P->n_steps; i++) mmd_json_kv_double(j, P->step_name[i], P->t_step[i]);
    mmd_json_end_object(j);
    mmd_json_kv_string(j, "steps", "steps.txt");
}

int mmd_cmd_protocol(const mmd_cli_opts *o, int argc, char **argv)
{
    const char *exp_path = NULL, *out_dir = NULL;
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    const char **psets = calloc((size_t)argc + 1, sizeof *psets);
    size_t n_sets = 0, n_psets = 0;
    if (!sets || !psets) {
        free(sets);
        free(psets);
        mmd_error(MMD_ERR_NOMEM, "out of memory");
        return mmd_cli_fail();
    }
    for (int i = 1; i < argc; i++) {
        const char *s = NULL;
        if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "--out")) && i + 1 < argc) out_dir = argv[++i];
        else if (!strcmp(argv[i], "--set") && i + 1 < argc) s = argv[++i];
        else if (!strncmp(argv[i], "--set=", 6)) s = argv[i] + 6;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "mmdiff protocol: error: unknown option '%s'\n", argv[i]);
            free(sets);
            free(psets);
            return usage();
        } else if (!exp_path) exp_path = argv[i];
        else {
            fprintf(stderr, "mmdiff protocol: error: more than one experiment file given ('%s', '%s')\n", exp_path,
                    argv[i]);
            free(sets);
            free(psets);
            return usage();
        }
        if (s && !strncmp(s, "protocol.", 9)) psets[n_psets++] = s;
        else if (s) sets[n_sets++] = s;
    }
    if (!exp_path) {
        free(sets);
        free(psets);
        return usage();
    }

    proto P;
    memset(&P, 0, sizeof P);
    P.o = o;
    P.p.truth_mode = MMD_CFG_SOLVER_DIRECTIONAL;
    P.p.specular_materials = SPEC_CALIBRATED;
    P.p.figure_poses = 3;
    P.p.coverage = 1;
    double t0 = mmd_now();
    long long started = (long long)time(NULL);
    mmd_cli_log *log = mmd_cli_log_begin();
    char *cmdline = join_cmdline(o, argc, argv);
    char *text = NULL;
    int have_e = 0;
    mmd_status st = read_protocol(exp_path, &text, &P.p);
    for (size_t i = 0; st == MMD_OK && i < n_psets; i++) {
        /* --set protocol.KEY=VALUE */
        const char *eq = strchr(psets[i], '=');
        char key[128], origin[600];
        snprintf(origin, sizeof origin, "--set %s", psets[i]);
        if (!eq || eq - psets[i] - 9 <= 0 || eq - psets[i] - 9 >= (long)sizeof key) {
            st = mmd_error(MMD_ERR_INVALID, "--set %s: expected --set protocol.KEY=VALUE (keys: %s)", psets[i],
                           PROTO_KEYS);
            break;
        }
        snprintf(key, sizeof key, "%.*s", (int)(eq - psets[i] - 9), psets[i] + 9);
        if (strchr(key, '.')) {
            st = mmd_error(MMD_ERR_INVALID, "--set %s: set protocol.%.*s as a whole (e.g. --set "
                           "'protocol.initial_materials={concrete: {itu: concrete, scattering: 0.3}}')",
                           psets[i], (int)strcspn(key, "."), key);
            break;
        }
        mmd_ynode *v = NULL;
        st = mmd_yaml_load_string(eq + 1, strlen(eq + 1), origin, 0, &v);
        if (st == MMD_OK && !v) st = mmd_yaml_load_string("~", 1, origin, 0, &v);
        if (st == MMD_OK) st = proto_key(&P.p, key, NULL, v);
        mmd_yaml_free(v);
    }
    if (st == MMD_OK && !P.p.initial_materials) {
        P.p.initial_materials = strdup("{}");
        if (!P.p.initial_materials) st = mmd_error(MMD_ERR_NOMEM, "out of memory");
    }
    if (st == MMD_OK) st = mmd_experiment_load_string(text, exp_path, sets, n_sets, &P.e);
    if (st == MMD_OK) have_e = 1;
    P.dir = out_dir ? out_dir : have_e ? P.e.output.dir.path : NULL;
    if (st == MMD_OK && P.e.dataset.traj_poses < 1)
        st = mmd_error(MMD_ERR_INVALID, "%s: dataset.traj_poses is 0: the protocol calibrates on TRAJ", exp_path);
    if (st == MMD_OK && P.e.dataset.rand_poses < 1)
        st = mmd_error(MMD_ERR_INVALID, "%s: dataset.rand_poses is 0: the protocol reports metrics on RAND", exp_path);
    if (st == MMD_OK && !P.e.scene.noise.enabled)
        mmd_warn("%s: no scene.noise block: the models run on the clean mesh (the protocol is meant for a noisy "
                 "scan: scene.noise {subdivide_m, sigma_m, hole_fraction})",
                 exp_path);
    if (st == MMD_OK && P.e.train.model != MMD_CFG_MODEL_PER_OBJECT)
        mmd_warn("%s: train.model is %s; the protocol is written for per_object", exp_path,
                 mmd_cfg_enum_name("train.model", P.e.train.model));
    /* the initial materials must make a valid experiment (checked here, before any work) */
    size_t init_len = P.p.initial_materials ? strlen(P.p.initial_materials) + 32 : 32;
    P.init_set = malloc(init_len);
    if (st == MMD_OK && !P.init_set) st = mmd_error(MMD_ERR_NOMEM, "out of memory");
    if (st == MMD_OK) {
        snprintf(P.init_set, init_len, "scene.materials=%s", P.p.initial_materials);
        mmd_experiment e2;
        const char *s1[1] = {P.init_set};
        char *y = mmd_experiment_to_yaml(&P.e);
        st = y ? mmd_experiment_load_string(y, exp_path, s1, 1, &e2) : mmd_error(MMD_ERR_NOMEM, "out of memory");
        free(y);
        if (st != MMD_OK) st = mmd_error(st, "protocol.initial_materials: %s", mmd_last_error());
        else {
            /* names against the scene */
            mmd_scene *sc = NULL;
            st = mmd_scene_load(e2.scene.file.path, &sc);
            if (st == MMD_OK) {
                const mmd_cfg_coverage *c = &P.e.coverage;
                if (c->has_extent) memcpy(P.cov_extent, c->extent_m, sizeof P.cov_extent);
                else {
                    P.cov_extent[0] = sc->bbox_min[0], P.cov_extent[1] = sc->bbox_max[0];
                    P.cov_extent[2] = sc->bbox_min[1], P.cov_extent[3] = sc->bbox_max[1];
                }
            }
            if (st == MMD_OK) {
                const char **known = malloc(((size_t)sc->n_materials + sc->n_objects + 1) * sizeof *known);
                size_t nk = 0;
                for (uint32_t i = 0; known && i < sc->n_materials; i++) known[nk++] = sc->materials[i].name;
                for (uint32_t i = 0; known && i < sc->n_objects; i++) known[nk++] = sc->objects[i].name;
                st = known ? mmd_experiment_check_material_names(&e2, known, nk, e2.scene.file.path)
                           : mmd_error(MMD_ERR_NOMEM, "out of memory");
                if (st != MMD_OK) st = mmd_error(st, "protocol.initial_materials: %s", mmd_last_error());
                free(known);
            }
            mmd_scene_destroy(sc);
            mmd_experiment_free(&e2);
        }
    }
    /* records: the resolved experiment + protocol block, the base every step runs */
    char path[PATHN + 64];
    if (st == MMD_OK) st = mmd_mkdirs(P.dir);
    if (st == MMD_OK) st = mmd_cli_log_attach(log, P.dir);
    if (st == MMD_OK) {
        /* without its coverage block: `predict` would make a map for every pose set (the
         * coverage steps set the coverage keys themselves) */
        snprintf(P.base, sizeof P.base, "%s/experiment.base.yaml", P.dir);
        char *y = mmd_experiment_to_yaml(&P.e);
        mmd_ynode *root = NULL;
        st = y ? mmd_yaml_load_string(y, strlen(y), P.base, 1, &root) : mmd_error(MMD_ERR_NOMEM, "out of memory");
        if (st == MMD_OK) blank_block(y, strlen(y), root, "coverage");
        mmd_yaml_free(root);
        if (st == MMD_OK) st = mmd_write_file_atomic(P.base, y, strlen(y));
        free(y);
    }
    if (st == MMD_OK) {
        char *y = mmd_experiment_to_yaml(&P.e);
        sbuf b = {0};
        if (y) sb_add(&b, "%s", y);
        sb_add(&b, "protocol:\n  truth_mode: %s\n  initial_materials: %s\n  specular_materials: %s\n"
                   "  figure_poses: %d\n  coverage: %s\n",
               P.p.truth_mode == MMD_CFG_SOLVER_SPECULAR ? "specular" : "directional", P.p.initial_materials,
               SPEC_MAT_NAME[P.p.specular_materials], P.p.figure_poses, P.p.coverage ? "true" : "false");
        free(y);
        snprintf(path, sizeof path, "%s/experiment.resolved.yaml", P.dir);
        st = b.s ? mmd_write_file_atomic(path, b.s, b.n) : mmd_error(MMD_ERR_NOMEM, "out of memory");
        free(b.s);
    }
    if (st == MMD_OK) {
        char cwd[4096];
        sbuf b = {0};
        sb_add(&b, "# working directory: %s\n%s\n", getcwd(cwd, sizeof cwd) ? cwd : "?", cmdline ? cmdline : "");
        snprintf(path, sizeof path, "%s/command.txt", P.dir);
        st = b.s ? mmd_write_file_atomic(path, b.s, b.n) : mmd_error(MMD_ERR_NOMEM, "out of memory");
        free(b.s);
    }
    if (st == MMD_OK) {
        snprintf(path, sizeof path, "%s/steps.txt", P.dir);
        P.steps = fopen(path, "w");
        if (!P.steps) st = mmd_error(MMD_ERR_IO, "%s: cannot create", path);
        else fprintf(P.steps, "# the steps of `%s`, in order (each reads %s)\n", cmdline ? cmdline : "", P.base);
    }
    int rc = st == MMD_OK ? 0 : 1;
    if (st != MMD_OK) mmd_cli_fail();

    /* ---- the steps ---- */
    char truth_mode[64], model[PATHN], smodel[PATHN], poses_csv[N_SETS][PATHN], meas[PATHN], cov[4][160];
    snprintf(truth_mode, sizeof truth_mode, "solver.mode=%s",
             P.p.truth_mode == MMD_CFG_SOLVER_SPECULAR ? "specular" : "directional");
    if (P.dir) {
        for (int s = 0; s < N_SETS; s++)
            snprintf(poses_csv[s], sizeof poses_csv[s], "rx.poses_csv=%s/data/%s/poses.csv", P.dir, SET_NAME[s]);
        snprintf(meas, sizeof meas, "train.measurements=%s/data/TRAJ", P.dir);
        snprintf(model, sizeof model, "%s/directional_calibrated/calibration", P.dir);
        snprintf(smodel, sizeof smodel, "%s/specular/calibration", P.dir);
    }
    /* every map on one grid: the coverage block's, with the clean footprint as extent */
    const mmd_cfg_coverage *cv = &P.e.coverage;
    snprintf(cov[0], sizeof cov[0], "coverage.z_m=%.17g", cv->z_m);
    snprintf(cov[1], sizeof cov[1], "coverage.cell_m=%.17g", cv->cell_m);
    snprintf(cov[2], sizeof cov[2], "coverage.rays=%d", cv->rays);
    snprintf(cov[3], sizeof cov[3], "coverage.extent_m=[%.17g, %.17g, %.17g, %.17g]", P.cov_extent[0],
             P.cov_extent[1], P.cov_extent[2], P.cov_extent[3]);
    args A;
    if (!rc) {
        args_init(&A);
        args_set(&A, truth_mode);
        rc = step(&P, "dataset", "dataset", "data", &A);
    }
    /* the specular baseline */
    P.spec_used = P.p.specular_materials;
    if (!rc && P.spec_used == SPEC_CALIBRATED) {
        args_init(&A);
        args_set(&A, "solver.mode=specular");
        args_set(&A, P.init_set);
        args_set(&A, meas);
        if (step(&P, "specular_calibrate", "calibrate", "specular/calibration", &A)) {
            snprintf(P.spec_reason, sizeof P.spec_reason, "calibrate refused specular mode: %s", mmd_last_error());
            mmd_warn("protocol: the specular baseline could not be calibrated (%s); it runs with the ground-truth "
                     "materials instead (settings.specular_materials in metrics.json)",
                     mmd_last_error());
            P.spec_used = SPEC_GROUND_TRUTH;
        }
    }
    /* per arm: how it predicts (calibrated: predict --model; else simulate) */
    const char *arm_mode[N_ARMS] = {"solver.mode=specular", "solver.mode=directional", "solver.mode=directional",
                                    "solver.mode=directional"};
    const char *arm_model[N_ARMS] = {P.spec_used == SPEC_CALIBRATED ? smodel : NULL, NULL, model, NULL};
    /* NULL: the experiment's own scene.materials, the ground truth */
    const char *arm_mat[N_ARMS] = {P.spec_used == SPEC_GROUND_TRUTH ? NULL : P.init_set, P.init_set, P.init_set, NULL};
    static const char *const arm_step[N_ARMS] = {"specular", "uncalibrated", "calibrated", "ground_truth_materials"};
    for (int a = 0; !rc && a < N_ARMS; a++) {
        if (a == ARM_CAL) {
            args_init(&A);
            args_set(&A, arm_mode[a]);
            args_set(&A, P.init_set);
            args_set(&A, meas);
            rc = step(&P, "directional_calibrate", "calibrate", "directional_calibrated/calibration", &A);
        }
        for (int s = 0; !rc && s < N_SETS; s++) {
            char sub[96], label[64];
            snprintf(sub, sizeof sub, "%s/%s", ARM_NAME[a], SET_NAME[s]);
            snprintf(label, sizeof label, "%s_%s", arm_step[a], SET_NAME[s]);
            args_init(&A);
            if (arm_model[a]) args_add(&A, "--model", arm_model[a]);
            args_set(&A, arm_mode[a]);
            if (arm_mat[a]) args_set(&A, arm_mat[a]);
            args_set(&A, "rx.poses=[]");
            args_set(&A, poses_csv[s]);
            args_set(&A, "output.png=false");
            rc = step(&P, label, arm_model[a] ? "predict" : "simulate", sub, &A);
        }
    }
    /* coverage maps: ground truth, then each model */
    static const char *const cov_sub[4] = {"coverage/ground_truth", "coverage/specular", "coverage/uncalibrated",
                                           "coverage/calibrated"};
    static const char *const cov_label[4] = {"coverage_ground_truth", "coverage_specular", "coverage_uncalibrated",
                                             "coverage_calibrated"};
    for (int k = 0; !rc && P.p.coverage && k < 4; k++) {
        int a = k - 1; /* the arm, -1 = ground truth */
        args_init(&A);
        if (a >= 0 && arm_model[a]) args_add(&A, "--model", arm_model[a]);
        args_set(&A, a < 0 ? truth_mode : arm_mode[a]);
        if (a < 0) args_set(&A, "scene.noise=");
        else if (arm_mat[a]) args_set(&A, arm_mat[a]);
        args_set(&A, "rx.poses=[]");
        for (int q = 0; q < 4; q++) args_set(&A, cov[q]);
        char sub[96];
        /* predict writes its map into OUT/coverage/ */
        snprintf(sub, sizeof sub, "%s%s", cov_sub[k], a >= 0 && arm_model[a] ? "_run" : "");
        rc = step(&P, cov_label[k], a >= 0 && arm_model[a] ? "predict" : "coverage", sub, &A);
        if (!rc && a >= 0 && arm_model[a]) {
            char from[PATHN], to[PATHN];
            snprintf(from, sizeof from, "%s/%s/coverage", P.dir, sub);
            snprintf(to, sizeof to, "%s/%s", P.dir, cov_sub[k]);
            rm_tree_shallow(to);
            if (rename(from, to)) rc = mmd_cli_fail_msg(mmd_error(MMD_ERR_IO, "cannot move %s to %s", from, to));
        }
    }
    if (rc && st == MMD_OK) st = MMD_ERR_INVALID; /* a step failed: its message is on stderr and in log.txt */

    /* ---- metrics, tables, figures ---- */
    set_data sd[N_SETS];
    memset(sd, 0, sizeof sd);
    for (int s = 0; !rc && s < N_SETS; s++) {
        st = eval_set(&P, s, &sd[s]);
        if (st != MMD_OK) rc = mmd_cli_fail();
    }
    sbuf md = {0}, csv = {0};
    if (!rc) {
        sb_add(&md, "## mmdiff protocol: %s\n\n", P.e.name ? P.e.name : exp_path);
        const mmd_cfg_noise *n = &P.e.scene.noise;
        sb_add(&md, "Ground truth: clean mesh, ground-truth materials, %s model. Models: noisy scan "
                    "(subdivide %g m, vertex noise %g m, holes %g%%, seed %lld), starting from protocol.initial_materials; "
                    "calibration on TRAJ. Specular baseline materials: %s. The reference row is the directional model with "
                    "the ground-truth materials on the same scan: what a perfect calibration would reach, so the gap "
                    "between it and the ground truth is the scan's, not the materials'. %d rays, depth %d; peaks "
                    "within %g dB, matched within %g°.\n\n",
               P.p.truth_mode == MMD_CFG_SOLVER_SPECULAR ? "specular" : "directional",
               n->has_subdivide ? n->subdivide_m : 0.0, n->sigma_m, 100 * n->hole_fraction, (long long)n->seed,
               P.spec_used == SPEC_CALIBRATED ? "calibrated on TRAJ" : P.spec_used == SPEC_GROUND_TRUTH
                                                                          ? "ground truth (not calibrated)"
                                                                          : "initial (not calibrated)",
               P.e.solver.rays, P.e.solver.max_depth, P.e.evaluate.dynamic_range_db,
               P.e.evaluate.match_threshold_deg);
        table_md(&md, &P, sd);
        table_csv(&csv, sd);
        /* figures */
        char fig[PATHN];
        snprintf(fig, sizeof fig, "%s/figures", P.dir);
        st = mmd_mkdirs(fig);
        size_t nr = sd[SET_RAND].truth.n_poses;
        int nf = P.p.figure_poses < (int)nr ? P.p.figure_poses : (int)nr;
        for (int k = 0; st == MMD_OK && k < nf; k++) {
            size_t pose = (size_t)k * nr / (size_t)nf;
            snprintf(path, sizeof path, "%s/spectra_RAND_pose%04zu.png", fig, pose);
            st = spectra_figure(&P, &sd[SET_RAND], pose, path);
        }
        if (st == MMD_OK && P.p.coverage) {
            snprintf(path, sizeof path, "%s/coverage.png", fig);
            st = coverage_figure(&P, path);
        }
        if (st == MMD_OK && P.p.coverage)
            sb_add(&md, "Coverage maps at z = %g m, mean |model - ground truth| over the cells both reach: specular "
                        "%.2f dB, directional before calibration %.2f dB, after %.2f dB (figures/coverage.png, "
                        "figures/coverage_error.png).\n\n",
                   P.e.coverage.z_m, P.cov_err[0], P.cov_err[1], P.cov_err[2]);
        if (st == MMD_OK) {
            snprintf(path, sizeof path, "%s/metrics.md", P.dir);
            st = md.s ? mmd_write_file_atomic(path, md.s, md.n) : mmd_error(MMD_ERR_NOMEM, "out of memory");
        }
        if (st == MMD_OK) {
            snprintf(path, sizeof path, "%s/metrics.csv", P.dir);
            st = csv.s ? mmd_write_file_atomic(path, csv.s, csv.n) : mmd_error(MMD_ERR_NOMEM, "out of memory");
        }
        if (st == MMD_OK) {
            mmd_json j;
            mmd_json_init(&j);
            mmd_json_begin_object(&j);
            mmd_json_kv_string(&j, "tool", "mmdiff protocol");
            for (int s = N_SETS - 1; s >= 0; s--) {
                mmd_json_key(&j, SET_NAME[s]);
                mmd_json_begin_object(&j);
                for (int a = 0; a < N_ARMS; a++) {
                    mmd_json_key(&j, ARM_NAME[a]);
                    mmd_json_begin_object(&j);
                    mmd_eval_json(&j, &sd[s].sum[a]);
                    mmd_json_end_object(&j);
                }
                mmd_json_end_object(&j);
            }
            if (P.p.coverage) {
                mmd_json_key(&j, "coverage");
                mmd_json_begin_object(&j);
                mmd_json_kv_double(&j, "z_m", P.e.coverage.z_m);
                mmd_json_key(&j, "mean_abs_error_db");
                mmd_json_begin_object(&j);
                for (int a = 0; a < N_FIG_ARMS; a++) mmd_json_kv_double(&j, ARM_NAME[a], P.cov_err[a]);
                mmd_json_end_object(&j);
                mmd_json_end_object(&j);
            }
            write_settings(&j, &P);
            mmd_json_kv_string(&j, "command", cmdline);
            mmd_json_end_object(&j);
            snprintf(path, sizeof path, "%s/metrics.json", P.dir);
            st = mmd_json_save(&j, path);
            mmd_json_free(&j);
        }
        if (st != MMD_OK) rc = mmd_cli_fail();
    }
    if (!rc) {
        printf("%s", md.s);
        printf("timings [s]:");
        for (int i = 0; i < P.n_steps; i++) printf(" %s %.1f%s", P.step_name[i], P.t_step[i], i + 1 < P.n_steps ? "," : "");
        printf("; total %.1f\n\n", mmd_now() - t0);
        printf("outputs:\n  %s/metrics.md\n  %s/metrics.csv\n  %s/metrics.json\n", P.dir, P.dir, P.dir);
        size_t nr = sd[SET_RAND].truth.n_poses;
        int nf = P.p.figure_poses < (int)nr ? P.p.figure_poses : (int)nr;
        for (int k = 0; k < nf; k++)
            printf("  %s/figures/spectra_RAND_pose%04zu.png\n", P.dir, (size_t)k * nr / (size_t)nf);
        if (P.p.coverage) printf("  %s/figures/coverage.png\n  %s/figures/coverage_error.png\n", P.dir, P.dir);
    }
    if (P.dir && P.steps) {
        mmd_cli_run_info in = {"mmdiff protocol", cmdline, have_e ? &P.e : NULL, NULL, t0, started, rc != 0,
                               rc ? mmd_last_error() : NULL, run_extra, &P};
        if (mmd_cli_run_json_write(P.dir, &in) != MMD_OK) mmd_warn("%s/run.json: %s", P.dir, mmd_last_error());
    }
    free(md.s);
    free(csv.s);
    for (int s = 0; s < N_SETS; s++) set_free(&sd[s]);
    if (P.steps) fclose(P.steps);
    if (have_e) mmd_experiment_free(&P.e);
    free(P.p.initial_materials);
    free(P.init_set);
    free(text);
    free(cmdline);
    free(sets);
    free(psets);
    mmd_cli_log_end(log);
    return rc;
}
