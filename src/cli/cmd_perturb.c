/* `mmdiff perturb SCENE OUT.yaml [options]`: a clean scene made to look like a LiDAR /
 * photogrammetry reconstruction (docs/perturb.md). OUT.yaml gets one PLY per object in
 * OUT_meshes/ (names and materials kept); OUT.ply is one PLY with per-face ids. One
 * summary line on stdout, logs on stderr; nothing is written when anything fails. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "mmd_scene.h"

#define USAGE                                                                                           \
    "usage: mmdiff perturb SCENE OUT.yaml [--subdivide M] [--sigma M] [--holes FRACTION]\n"             \
    "                      [--hole-radius M] [--decimate FRACTION] [--seed N]\n"                        \
    "  --subdivide M      split faces until no edge is longer than M metres (0 = no, default)\n"        \
    "  --sigma M          std-dev of the Gaussian vertex displacement per axis, metres (default 0)\n"   \
    "  --holes FRACTION   fraction of the surface area removed in round patches, [0, 0.9] (default 0)\n" \
    "  --hole-radius M    radius of a hole patch, metres (default 0.1)\n"                               \
    "  --decimate F       fraction of triangles removed by vertex clustering, [0, 0.9] (default 0)\n"   \
    "  --seed N           seed (default 1): same seed, same output\n"                                   \
    "OUT: .yaml/.yml (scene list + OUT_meshes/*.ply, keeps names and materials) or .ply (one file)\n"

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "mmdiff perturb: error: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: mmdiff perturb SCENE OUT.yaml [options]   (mmdiff perturb --help lists them)\n");
    return 2;
}

static int ends_with(const char *s, const char *ext)
{
    size_t n = strlen(s), m = strlen(ext);
    return n > m && !strcasecmp(s + n - m, ext);
}

/* A finite number; the library checks the range and names it. */
static int parse_number(const char *opt, const char *v, double *out)
{
    char *end = NULL;
    errno = 0;
    double x = v ? strtod(v, &end) : NAN;
    if (!v || !*v || end == v || *end || errno == ERANGE || !isfinite(x)) {
        fprintf(stderr, "mmdiff perturb: error: %s: expected a number, got '%s'\n", opt, v ? v : "");
        return 0;
    }
    *out = x;
    return 1;
}

int mmd_cmd_perturb(const mmd_cli_opts *o, int argc, char **argv)
{
    (void)o;
    const char *in = NULL, *out = NULL;
    mmd_perturb_params p = {.hole_radius_m = 0.1, .seed = 1};
    static const struct {
        const char *name;
        size_t off;
    } num[] = {
        {"--subdivide", offsetof(mmd_perturb_params, subdivide_m)},
        {"--sigma", offsetof(mmd_perturb_params, sigma_m)},
        {"--holes", offsetof(mmd_perturb_params, hole_fraction)},
        {"--hole-radius", offsetof(mmd_perturb_params, hole_radius_m)},
        {"--decimate", offsetof(mmd_perturb_params, decimate)},
    };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(USAGE, stdout);
            return 0;
        }
        if (a[0] != '-' || !a[1]) {
            if (!in) in = a;
            else if (!out) out = a;
            else return usage_error("unexpected argument '%s'", a);
            continue;
        }
        /* --opt VALUE or --opt=VALUE */
        char name[64];
        const char *eq = strchr(a, '='), *val;
        size_t nl = eq ? (size_t)(eq - a) : strlen(a);
        if (nl >= sizeof name) return usage_error("unknown option '%s'", a);
        memcpy(name, a, nl);
        name[nl] = 0;
        size_t k = 0;
        while (k < sizeof num / sizeof *num && strcmp(name, num[k].name)) k++;
        int is_seed = !strcmp(name, "--seed");
        if (k == sizeof num / sizeof *num && !is_seed) return usage_error("unknown option '%s'", a);
        if (eq) val = eq + 1;
        else if (i + 1 < argc) val = argv[++i];
        else return usage_error("%s needs a value", name);
        if (is_seed) {
            char *end = NULL;
            errno = 0;
            unsigned long long s = strtoull(val, &end, 10);
            if (!*val || *end || errno || val[0] == '-' || val[0] == '+') {
                fprintf(stderr, "mmdiff perturb: error: --seed: expected an integer in [0, 2^64-1], got '%s'\n", val);
                return 2;
            }
            p.seed = (uint64_t)s;
        } else if (!parse_number(name, val, (double *)((char *)&p + num[k].off))) {
            return 2;
        }
    }
    if (!in || !out) return usage_error("%s", !in ? "no SCENE given" : "no OUT file given");
    int as_ply = ends_with(out, ".ply");
    if (!as_ply && !ends_with(out, ".yaml") && !ends_with(out, ".yml"))
        return usage_error("OUT '%s' must end in .yaml, .yml or .ply", out);
    /* Bad parameters fail before the scene is read, named as the option that set them. */
    if (mmd_perturb_validate(&p) != MMD_OK) {
        static const char *opt[][2] = {{"subdivide_m", "--subdivide"}, {"sigma_m", "--sigma"},
                                       {"hole_fraction", "--holes"},   {"hole_radius_m", "--hole-radius"},
                                       {"decimate", "--decimate"}};
        const char *msg = mmd_last_error(), *rest = strchr(msg, ':');
        for (size_t k = 0; rest && k < sizeof opt / sizeof *opt; k++) {
            size_t n = strlen(opt[k][0]);
            if (!strncmp(rest + 2, opt[k][0], n) && rest[2 + n] == ':') {
                fprintf(stderr, "mmdiff perturb: error: %s (%s)%s\n", opt[k][1], opt[k][0], rest + 2 + n);
                return 2;
            }
        }
        return mmd_cli_fail();
    }

    mmd_scene *s = NULL, *r = NULL;
    if (mmd_scene_load(in, &s) != MMD_OK) return mmd_cli_fail();
    mmd_info("perturb: %s: %u triangles, %u objects", in, s->n_triangles, s->n_objects);
    mmd_perturb_stats st;
    if (mmd_scene_perturb_stats(s, &p, &r, &st) != MMD_OK) {
        mmd_scene_destroy(s);
        return mmd_cli_fail();
    }
    mmd_scene_destroy(s);
    mmd_status ws = as_ply ? mmd_scene_write_ply(r, out) : mmd_scene_write(r, out);
    mmd_scene_destroy(r);
    if (ws != MMD_OK) return mmd_cli_fail();
    printf("perturb: %u -> %u triangles, area %.4g m2, holes removed %.4g m2 (%.2f%%), mean edge %.4g m, "
           "seed %" PRIu64 ", %.2f s -> %s\n",
           st.tris_in, st.tris_out, st.area_in_m2, st.area_holes_m2, 100.0 * st.hole_fraction, st.mean_edge_m, p.seed,
           st.seconds, out);
    return 0;
}
