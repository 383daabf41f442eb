/* Shared set-up and record keeping of the experiment-driven sub-commands (run.h). */
#include "run.h"
#include "mmd_par.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* ---- run records: log capture ----------------------------------------------------------- */

struct mmd_cli_log {
    pthread_mutex_t mu;
    FILE *f;             /* DIR/log.txt once attached */
    char *buf;           /* lines before that */
    size_t len, cap;
    mmd_log_sink_fn prev; /* an outer capture (the protocol around a step) */
    void *prev_user;
};

static void log_sink(int level, const char *line, void *user)
{
    mmd_cli_log *l = user;
    pthread_mutex_lock(&l->mu);
    if (l->f) {
        fprintf(l->f, "[mmdiff] %s\n", line);
        fflush(l->f);
    } else {
        size_t n = strlen(line) + 10;
        if (l->len + n + 1 > l->cap) {
            size_t cap = 2 * (l->len + n + 1) + 4096;
            char *b = realloc(l->buf, cap);
            if (b) {
                l->buf = b;
                l->cap = cap;
            }
        }
        if (l->len + n + 1 <= l->cap) l->len += (size_t)snprintf(l->buf + l->len, l->cap - l->len, "[mmdiff] %s\n", line);
    }
    pthread_mutex_unlock(&l->mu);
    if (l->prev) l->prev(level, line, l->prev_user);
}

mmd_cli_log *mmd_cli_log_begin(void)
{
    mmd_cli_log *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    pthread_mutex_init(&l->mu, NULL);
    mmd_log_set_sink(log_sink, l, &l->prev, &l->prev_user);
    return l;
}

mmd_status mmd_cli_log_attach(mmd_cli_log *l, const char *dir)
{
    if (!l) return MMD_OK;
    char path[4200];
    snprintf(path, sizeof path, "%s/log.txt", dir);
    pthread_mutex_lock(&l->mu);
    if (l->f) fclose(l->f);
    l->f = fopen(path, "w");
    mmd_status st = MMD_OK;
    if (!l->f) {
        st = mmd_error(MMD_ERR_IO, "%s: cannot create the log file", path);
    } else {
        if (l->len) fwrite(l->buf, 1, l->len, l->f);
        fflush(l->f);
    }
    free(l->buf);
    l->buf = NULL;
    l->len = l->cap = 0;
    pthread_mutex_unlock(&l->mu);
    return st;
}

void mmd_cli_log_end(mmd_cli_log *l)
{
    if (!l) return;
    mmd_log_set_sink(l->prev, l->prev_user, NULL, NULL);
    if (l->f) fclose(l->f);
    free(l->buf);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

/* ---- run records: run.json ---------------------------------------------------------------- */

/* the device of the last run opened in this process (the protocol reports its steps') */
static mmd_cl_device_info g_last_device;
static int g_have_last_device;

static void utc_string(long long t, char *buf, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm)) strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
    else snprintf(buf, cap, "?");
}

mmd_status mmd_cli_run_json_write(const char *dir, const mmd_cli_run_info *in)
{
    char path[4200], cwd[4096], t[64];
    mmd_json j;
    mmd_json_init(&j);
    mmd_json_begin_object(&j);
    mmd_json_kv_string(&j, "tool", in->tool);
    mmd_json_kv_string(&j, "version", mmd_cli_version());
    mmd_json_kv_string(&j, "command", in->cmdline);
    mmd_json_kv_string(&j, "working_directory", getcwd(cwd, sizeof cwd) ? cwd : NULL);
    utc_string(in->started_unix, t, sizeof t);
    mmd_json_kv_string(&j, "started_utc", t);
    utc_string((long long)time(NULL), t, sizeof t);
    mmd_json_kv_string(&j, "finished_utc", t);
    mmd_json_kv_double(&j, "seconds", mmd_now() - in->t0);
    mmd_json_kv_string(&j, "status", in->failed ? "failed" : "ok");
    mmd_json_kv_string(&j, "error", in->failed ? in->error : NULL);
    const mmd_cl_device_info *d = in->cl ? &in->cl->info : g_have_last_device ? &g_last_device : NULL;
    mmd_json_key(&j, "device");
    if (d) {
        mmd_json_begin_object(&j);
        mmd_json_kv_string(&j, "platform", d->platform_name);
        mmd_json_kv_string(&j, "name", d->device_name);
        mmd_json_kv_string(&j, "version", d->device_version);
        mmd_json_kv_string(&j, "driver", d->driver_version);
        mmd_json_end_object(&j);
    } else {
        mmd_json_null(&j);
    }
    mmd_json_key(&j, "seeds");
    if (in->e) {
        const mmd_experiment *e = in->e;
        mmd_json_begin_object(&j);
        mmd_json_kv_int(&j, "solver", (long long)e->solver.seed);
        mmd_json_kv_int(&j, "train", (long long)e->train.seed);
        mmd_json_kv_int(&j, "dataset", (long long)e->dataset.seed);
        mmd_json_key(&j, "noise");
        if (e->scene.noise.enabled) mmd_json_int(&j, (long long)e->scene.noise.seed);
        else mmd_json_null(&j);
        mmd_json_end_object(&j);
    } else {
        mmd_json_null(&j);
    }
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    mmd_json_key(&j, "host");
    mmd_json_begin_object(&j);
    mmd_json_kv_string(&j, "name", host);
    mmd_json_kv_int(&j, "cpus", sysconf(_SC_NPROCESSORS_ONLN));
    mmd_json_end_object(&j);
    mmd_json_key(&j, "files");
    mmd_json_begin_object(&j);
    mmd_json_kv_string(&j, "config", "experiment.resolved.yaml");
    mmd_json_kv_string(&j, "command", "command.txt");
    mmd_json_kv_string(&j, "log", "log.txt");
    mmd_json_end_object(&j);
    if (in->extra) in->extra(&j, in->user);
    mmd_json_end_object(&j);
    snprintf(path, sizeof path, "%s/run.json", dir);
    mmd_status st = mmd_json_save(&j, path);
    mmd_json_free(&j);
    return st;
}

static int usage(const char *cmd, const mmd_cli_extra_opt *extra, size_t n_extra)
{
    fprintf(stderr, "usage: mmdiff %s EXP.yaml [-o DIR]", cmd);
    for (size_t k = 0; k < n_extra; k++)
        fprintf(stderr, " %s%s%s%s", extra[k].required ? "" : "[", extra[k].name, extra[k].value ? " VALUE" : "",
                extra[k].required ? "" : "]");
    fprintf(stderr, " [--set key=value ...]\n");
    return 2;
}

/* A command's own option at argv[*i] ("--name VALUE", "--name=VALUE" or a flag): stores
 * it and advances *i past its value. */
static int match_extra(const mmd_cli_extra_opt *extra, size_t n_extra, int argc, char **argv, int *i)
{
    for (size_t k = 0; k < n_extra; k++) {
        const mmd_cli_extra_opt *x = &extra[k];
        size_t len = strlen(x->name);
        if (!x->value && !strcmp(argv[*i], x->name)) {
            if (x->flag) *x->flag = 1;
            return 1;
        }
        if (x->value && !strcmp(argv[*i], x->name)) {
            if (*i + 1 >= argc) return -1;
            *x->value = argv[++*i];
            return 1;
        }
        if (x->value && !strncmp(argv[*i], x->name, len) && argv[*i][len] == '=') {
            *x->value = argv[*i] + len + 1;
            return 1;
        }
    }
    return 0;
}

static char *join_cmdline(const mmd_cli_opts *o, const char *cmd, int argc, char **argv)
{
    size_t n = 64 + strlen(cmd) + (o->device ? strlen(o->device) + 16 : 0);
    for (int i = 1; i < argc; i++) n += 4 * strlen(argv[i]) + 4;
    char *s = malloc(n);
    if (!s) return NULL;
    size_t k = (size_t)snprintf(s, n, "mmdiff%s%s %s", o->device ? " --device " : "", o->device ? o->device : "",
                                cmd);
    for (int i = 1; i < argc; i++) {
        /* quote arguments a shell would split */
        int plain = argv[i][0] != 0 && strcspn(argv[i], " \t\n'\"\\$`*?[]{}()<>|&;#~!") == strlen(argv[i]);
        s[k++] = ' ';
        if (plain) {
            strcpy(s + k, argv[i]);
            k += strlen(argv[i]);
            continue;
        }
        s[k++] = '\'';
        for (const char *p = argv[i]; *p; p++) {
            if (*p == '\'') {
                memcpy(s + k, "'\\''", 4);
                k += 4;
            } else {
                s[k++] = *p;
            }
        }
        s[k++] = '\'';
        s[k] = 0;
    }
    s[k] = 0;
    return s;
}

int mmd_cli_run_open(mmd_cli_run *r, const mmd_cli_opts *o, const char *cmd, int argc, char **argv, int need_poses)
{
    return mmd_cli_run_open_ex(r, o, cmd, argc, argv, need_poses, NULL, 0);
}

int mmd_cli_run_open_ex(mmd_cli_run *r, const mmd_cli_opts *o, const char *cmd, int argc, char **argv,
                        int need_poses, const mmd_cli_extra_opt *extra, size_t n_extra)
{
    return mmd_cli_run_open_flags(r, o, cmd, argc, argv, need_poses, extra, n_extra, 0);
}

/* "gpu:local" / "cpu:local": the node-local MPI rank's device of that kind (the i-th
 * rank on a node takes the i-th such device, wrapping), written as "P:D" into buf. Other
 * selectors pass through. */
static mmd_status resolve_device(const char *sel, char *buf, size_t n, const char **out)
{
    *out = sel;
    if (!sel || !sel[0]) sel = getenv("MMDIFF_DEVICE");
    if (!sel || (strcasecmp(sel, "gpu:local") && strcasecmp(sel, "cpu:local"))) return MMD_OK;
    cl_device_type want = !strncasecmp(sel, "gpu", 3) ? CL_DEVICE_TYPE_GPU : CL_DEVICE_TYPE_CPU;
    mmd_cl_device_info *list;
    int count, k = 0, pick = -1;
    mmd_status st = mmd_cl_list_devices(&list, &count);
    if (st != MMD_OK) return st;
    int have = 0;
    for (int i = 0; i < count; i++) have += (list[i].type & want) != 0;
    int want_k = have ? mmd_par_local_rank() % have : 0;
    for (int i = 0; i < count && pick < 0; i++)
        if ((list[i].type & want) && k++ == want_k) pick = i;
    if (pick >= 0) snprintf(buf, n, "%d:%d", list[pick].platform_index, list[pick].device_index);
    free(list);
    if (pick < 0)
        return mmd_error(MMD_ERR_NODEVICE, "--device %s: this node has no %s device", sel,
                         want == CL_DEVICE_TYPE_GPU ? "GPU" : "CPU");
    *out = buf;
    return MMD_OK;
}

int mmd_cli_run_open_flags(mmd_cli_run *r, const mmd_cli_opts *o, const char *cmd, int argc, char **argv,
                           int need_poses, const mmd_cli_extra_opt *extra, size_t n_extra, unsigned flags)
{
    memset(r, 0, sizeof *r);
    r->cmd = cmd;
    r->t0 = mmd_now();
    r->started_unix = (long long)time(NULL);
    r->fails_at_open = mmd_cli_fail_count();
    const char *out_dir = NULL;
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    size_t n_sets = 0;
    if (!sets) {
        mmd_error(MMD_ERR_NOMEM, "out of memory");
        return mmd_cli_fail();
    }
    int x;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "--out")) && i + 1 < argc) {
            out_dir = argv[++i];
        } else if (!strcmp(argv[i], "--set") && i + 1 < argc) {
            sets[n_sets++] = argv[++i];
        } else if (!strncmp(argv[i], "--set=", 6)) {
            sets[n_sets++] = argv[i] + 6;
        } else if (argv[i][0] == '-' && (x = match_extra(extra, n_extra, argc, argv, &i)) != 0) {
            if (x > 0) continue;
            fprintf(stderr, "mmdiff %s: error: %s needs a value\n", cmd, argv[i]);
            free(sets);
            return usage(cmd, extra, n_extra);
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "mmdiff %s: error: unknown option '%s'\n", cmd, argv[i]);
            free(sets);
            return usage(cmd, extra, n_extra);
        } else if (!r->exp_path) {
            r->exp_path = argv[i];
        } else {
            fprintf(stderr, "mmdiff %s: error: more than one experiment file given ('%s', '%s')\n", cmd,
                    r->exp_path, argv[i]);
            free(sets);
            return usage(cmd, extra, n_extra);
        }
    }
    for (size_t k = 0; r->exp_path && k < n_extra; k++)
        if (extra[k].required && !(extra[k].value ? *extra[k].value : NULL)) {
            fprintf(stderr, "mmdiff %s: error: %s is required\n", cmd, extra[k].name);
            free(sets);
            return usage(cmd, extra, n_extra);
        }
    if (!r->exp_path) {
        free(sets);
        return usage(cmd, extra, n_extra);
    }
    r->log = mmd_cli_log_begin(); /* log.txt: every line from here on */
    r->cmdline = join_cmdline(o, cmd, argc, argv);
    mmd_status st = r->cmdline ? MMD_OK : mmd_error(MMD_ERR_NOMEM, "out of memory");
    if (st == MMD_OK) st = mmd_experiment_load(r->exp_path, sets, n_sets, &r->e);
    free(sets);
    if (st == MMD_OK) r->have_e = 1;
    mmd_experiment *e = &r->e;
    if (st == MMD_OK) r->dir = out_dir ? out_dir : e->output.dir.path;
    if (st == MMD_OK && (flags & MMD_CLI_RUN_CONFIG_ONLY)) return 0;
    if (st == MMD_OK && !e->scene.file.path) st = mmd_error(MMD_ERR_INVALID, "%s: scene.file is required", r->exp_path);
    if (st == MMD_OK) st = mmd_scene_load(e->scene.file.path, &r->scene);
    if (st == MMD_OK && e->scene.noise.enabled && !(flags & MMD_CLI_RUN_CLEAN_SCENE)) {
        /* scene.noise: trace a simulated scan of the room instead of the clean mesh */
        mmd_perturb_params pp;
        mmd_perturb_stats ps;
        mmd_scene *noisy = NULL;
        st = mmd_perturb_from_cfg(&e->scene.noise, &pp);
        if (st == MMD_OK) st = mmd_scene_perturb_stats(r->scene, &pp, &noisy, &ps);
        if (st == MMD_OK) {
            mmd_info("scene.noise: %u -> %u triangles (subdivide %g m, sigma %g m, holes %.1f%%, decimate %g, "
                     "seed %llu)",
                     ps.tris_in, ps.tris_out, pp.subdivide_m, pp.sigma_m, 100 * ps.hole_fraction, pp.decimate,
                     (unsigned long long)pp.seed);
            mmd_scene_destroy(r->scene);
            r->scene = noisy;
        }
    }
    if (st == MMD_OK) {
        mmd_scene *sc = r->scene;
        mmd_info("scene %s: %u triangles, %u objects", e->scene.file.path, sc->n_triangles, sc->n_objects);
        const char **known = malloc(((size_t)sc->n_materials + sc->n_objects + 1) * sizeof *known);
        if (!known) st = mmd_error(MMD_ERR_NOMEM, "out of memory");
        size_t nk = 0;
        for (uint32_t i = 0; known && i < sc->n_materials; i++) known[nk++] = sc->materials[i].name;
        for (uint32_t i = 0; known && i < sc->n_objects; i++) known[nk++] = sc->objects[i].name;
        if (st == MMD_OK) st = mmd_experiment_check_material_names(e, known, nk, e->scene.file.path);
        free(known);
    }
    r->poses = e->rx.poses;
    r->n_poses = e->rx.n_poses;
    if (st == MMD_OK && e->rx.poses_csv.path) {
        st = mmd_cfg_read_poses_csv(e->rx.poses_csv.path, &r->csv_poses, &r->n_poses);
        r->poses = r->csv_poses;
    }
    if (st == MMD_OK && need_poses && r->n_poses == 0)
        st = mmd_error(MMD_ERR_INVALID, "%s: rx.poses: no receiver poses given", r->exp_path);
    if (st == MMD_OK) {
        /* the tree is built once and traversed by millions of rays: the SAH build pays */
        mmd_bvh_options bo = {0};
        bo.quality = MMD_BVH_SAH;
        st = mmd_bvh_build(r->scene->vertices, r->scene->indices, r->scene->n_triangles, &bo, &r->bvh);
    }
    if (st == MMD_OK) mmd_info("bvh: %u nodes, built in %.1f ms", r->bvh->n_nodes, 1e3 * r->bvh->build_seconds);
    char dev_buf[32];
    const char *dev = o->device;
    if (st == MMD_OK) st = resolve_device(o->device, dev_buf, sizeof dev_buf, &dev);
    if (st == MMD_OK) st = mmd_cl_create(dev, &r->cl);
    if (st == MMD_OK) {
        g_last_device = r->cl->info;
        g_have_last_device = 1;
    }
    if (st == MMD_OK) st = mmd_sim_create(r->cl, r->scene, r->bvh, e, &r->sim);
    if (st == MMD_OK && mmd_par_size() > 1) /* every rank, whatever its log level */
        fprintf(stderr, "[mmdiff] rank %d of %d on %s: device %s (%s)\n", mmd_par_rank(), mmd_par_size(),
                mmd_par_host(), r->cl->info.device_name, r->cl->info.platform_name);
    st = mmd_par_agree(st); /* one rank's bad input or device ends every rank, with its message */
    if (st != MMD_OK) {
        int rc = mmd_cli_fail();
        mmd_cli_run_close(r);
        return rc;
    }
    return 0;
}

void mmd_cli_run_close(mmd_cli_run *r)
{
    if (r->records_written && r->dir) {
        /* run.json: the record of how this run went (written last, at close) */
        char tool[64];
        snprintf(tool, sizeof tool, "mmdiff %s", r->cmd ? r->cmd : "?");
        int failed = mmd_cli_fail_count() > r->fails_at_open;
        mmd_cli_run_info in = {tool, r->cmdline, r->have_e ? &r->e : NULL, r->cl, r->t0, r->started_unix,
                               failed, failed ? mmd_last_error() : NULL, NULL, NULL};
        if (mmd_cli_run_json_write(r->dir, &in) != MMD_OK)
            mmd_warn("%s/run.json: %s", r->dir, mmd_last_error());
    }
    mmd_cli_log_end(r->log);
    mmd_sim_destroy(r->sim);
    mmd_cl_destroy(r->cl);
    mmd_bvh_destroy(r->bvh);
    mmd_scene_destroy(r->scene);
    free(r->csv_poses);
    free(r->cmdline);
    if (r->have_e) mmd_experiment_free(&r->e);
    memset(r, 0, sizeof *r);
}

mmd_status mmd_cli_run_write_records(mmd_cli_run *r)
{
    char path[4200];
    mmd_status st = mmd_mkdirs(r->dir);
    if (st == MMD_OK) {
        snprintf(path, sizeof path, "%s/experiment.resolved.yaml", r->dir);
        st = mmd_experiment_write_resolved(&r->e, path);
    }
    if (st == MMD_OK) {
        char cwd[4096];
        char *text = malloc(strlen(r->cmdline) + sizeof cwd + 64);
        if (!text) return mmd_error(MMD_ERR_NOMEM, "out of memory");
        int n = sprintf(text, "# working directory: %s\n%s\n", getcwd(cwd, sizeof cwd) ? cwd : "?", r->cmdline);
        snprintf(path, sizeof path, "%s/command.txt", r->dir);
        st = mmd_write_file_atomic(path, text, (size_t)n);
        free(text);
    }
    if (st == MMD_OK && r->log && !r->records_written) st = mmd_cli_log_attach(r->log, r->dir);
    if (st == MMD_OK) r->records_written = 1;
    return st;
}

void mmd_cli_run_json_common(const mmd_cli_run *r, mmd_json *j)
{
    const mmd_cl *cl = r->cl;
    mmd_json_key(j, "device");
    mmd_json_begin_object(j);
    mmd_json_kv_string(j, "platform", cl->info.platform_name);
    mmd_json_kv_string(j, "name", cl->info.device_name);
    mmd_json_kv_string(j, "driver", cl->info.driver_version);
    mmd_json_end_object(j);
    mmd_json_kv_int(j, "seed", (long long)r->e.solver.seed);
    mmd_json_kv_string(j, "command", r->cmdline);
    mmd_json_key(j, "materials");
    mmd_json_begin_object(j);
    const mmd_sim *sim = r->sim;
    for (uint32_t o = 0; o < sim->n_mat; o++) {
        const mmd_material *m = &sim->materials[o];
        mmd_json_key(j, sim->scene->objects[o].name);
        mmd_json_begin_object(j);
        mmd_json_kv_double(j, "eps_r", m->eps_r);
        mmd_json_kv_double(j, "sigma_s_per_m", m->sigma_s_per_m);
        mmd_json_kv_double(j, "scattering", m->scattering);
        mmd_json_kv_double(j, "xpd", m->xpd);
        mmd_json_kv_double(j, "thickness_m", m->thickness_m);
        mmd_json_kv_int(j, "alpha_r", m->alpha_r);
        mmd_json_end_object(j);
    }
    mmd_json_end_object(j);
}

void mmd_cli_progress(const char *what, const char *unit, size_t done, size_t total)
{
    if (isatty(2)) {
        int w = 30, f = total ? (int)(w * (double)done / (double)total) : w;
        fprintf(stderr, "\r[mmdiff] %s [", what);
        for (int i = 0; i < w; i++) fputc(i < f ? '#' : '.', stderr);
        fprintf(stderr, "] %zu/%zu %s", done, total, unit);
        if (done == total) fputc('\n', stderr);
    } else if (done == total) {
        mmd_info("%s: %zu %s done", what, total, unit);
    }
}
