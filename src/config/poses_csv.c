/* rx.poses_csv: the pose CSV of SPEC 6 (x_m,y_m,z_m,yaw_deg,pitch_deg,roll_deg) read with
 * the one CSV reader in src/io/csv.c and converted to the experiment's pose type. */
#include "mmd_config.h"
#include "mmd_io.h"

#include <stdlib.h>

mmd_status mmd_cfg_read_poses_csv(const char *path, mmd_cfg_pose **poses, size_t *n_poses)
{
    *poses = NULL;
    *n_poses = 0;
    mmd_pose_row *rows = NULL;
    size_t n = 0;
    mmd_status st = mmd_poses_csv_read(path, &rows, &n);
    if (st != MMD_OK) return st;
    mmd_cfg_pose *p = mmd_calloc(n ? n : 1, sizeof *p, "poses");
    if (!p) {
        free(rows);
        return MMD_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        p[i].position_m[0] = rows[i].x_m;
        p[i].position_m[1] = rows[i].y_m;
        p[i].position_m[2] = rows[i].z_m;
        p[i].yaw_deg = rows[i].yaw_deg;
        p[i].pitch_deg = rows[i].pitch_deg;
        p[i].roll_deg = rows[i].roll_deg;
    }
    free(rows);
    *poses = p;
    *n_poses = n;
    return MMD_OK;
}
