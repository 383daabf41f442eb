/*
 * `mmdiff import-nerf2 SRC_DIR OUT_DIR [--split train|test|all]`: NeRF²'s RFID spatial
 * spectra (spectrum/NNNNN.png, tx_pos.csv, gateway_info.yml, *_index.txt) as an mmdiff
 * measurement set in OUT_DIR (poses.csv with the tag positions as extra columns,
 * spectra.npy [n, 90, 360], manifest.yaml at 920 MHz). Conventions: docs/evaluation.md.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "mmd_eval.h"

static int usage(void)
{
    fprintf(stderr, "usage: mmdiff import-nerf2 SRC_DIR OUT_DIR [--split train|test|all]\n");
    return 2;
}

int mmd_cmd_import_nerf2(const mmd_cli_opts *o, int argc, char **argv)
{
    (void)o;
    const char *src = NULL, *out = NULL, *split = "all";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--split") && i + 1 < argc) split = argv[++i];
        else if (!strncmp(argv[i], "--split=", 8)) split = argv[i] + 8;
        else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "mmdiff import-nerf2: error: unknown option '%s'\n", argv[i]);
            return usage();
        } else if (!src) src = argv[i];
        else if (!out) out = argv[i];
        else {
            fprintf(stderr, "mmdiff import-nerf2: error: unexpected argument '%s'\n", argv[i]);
            return usage();
        }
    }
    if (!src || !out) return usage();
    mmd_nerf2_set s;
    mmd_status st = mmd_nerf2_read(src, split, &s);
    if (st != MMD_OK) return mmd_cli_fail();
    st = mmd_nerf2_write(&s, out);
    if (st == MMD_OK) {
        const mmd_cfg_pose *p = &s.m.poses[0];
        printf("%zu spectra (%s split) -> %s\n", s.m.n_poses, split, out);
        printf("gateway at (%g, %g, %g) m, yaw %.3f pitch %.3f roll %.3f deg; grid azimuth [0, 359, 1] x elevation "
               "[0, 89, 1] deg; 920 MHz\n",
               p->position_m[0], p->position_m[1], p->position_m[2], p->yaw_deg, p->pitch_deg, p->roll_deg);
    }
    mmd_nerf2_free(&s);
    return st == MMD_OK ? 0 : mmd_cli_fail();
}
