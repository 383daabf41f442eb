/* Shared set-up and record keeping of the experiment-driven sub-commands (run.h). */
#include "run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

int mmd_cli_run_open_flags(mmd_cli_run *r, const mmd_cli_opts *o, const char *cmd, int argc, char **argv,
                           int need_poses, const mmd_cli_extra_opt *extra, size_t n_extra, unsigned flags)
{
    memset(r, 0, sizeof *r);
    r->cmd = cmd;
    r->t0 = mmd_now();
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
    if (st == MMD_OK) st = mmd_cl_create(o->device, &r->cl);
    if (st == MMD_OK) st = mmd_sim_create(r->cl, r->scene, r->bvh, e, &r->sim);
    if (st != MMD_OK) {
        int rc = mmd_cli_fail();
        mmd_cli_run_close(r);
        return rc;
    }
    return 0;
}

void mmd_cli_run_close(mmd_cli_run *r)
{
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
