/* `mmdiff info SCENE [--bvh]`: what a scene file holds, optionally with BVH statistics. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "mmd_bvh.h"
#include "mmd_scene.h"

int mmd_cmd_info(const mmd_cli_opts *o, int argc, char **argv)
{
    (void)o;
    const char *path = NULL;
    int want_bvh = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--bvh")) {
            want_bvh = 1;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "mmdiff info: error: unknown option '%s'\nusage: mmdiff info SCENE [--bvh]\n", argv[i]);
            return 2;
        } else if (!path) {
            path = argv[i];
        } else {
            fprintf(stderr, "mmdiff info: error: more than one scene given\n");
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "usage: mmdiff info SCENE [--bvh]   (SCENE: .ply, Mitsuba .xml, or scene .yaml)\n");
        return 2;
    }
    mmd_scene *s = NULL;
    if (mmd_scene_load(path, &s) != MMD_OK) return mmd_cli_fail();
    mmd_scene_print_info(s, stdout);
    int rc = 0;
    if (want_bvh) {
        mmd_bvh *b = NULL;
        if (mmd_bvh_build(s->vertices, s->indices, s->n_triangles, NULL, &b) != MMD_OK) {
            rc = mmd_cli_fail();
        } else {
            printf("bvh: %u nodes (8-wide), depth %d, built in %.3f ms (%.2f Mprims/s)\n", b->n_nodes, b->depth,
                   1e3 * b->build_seconds, b->build_seconds > 0 ? 1e-6 * s->n_triangles / b->build_seconds : 0.0);
            mmd_bvh_destroy(b);
        }
    }
    mmd_scene_destroy(s);
    return rc;
}
