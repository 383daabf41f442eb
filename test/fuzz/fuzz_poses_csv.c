/* Pose CSV reader (src/io/csv.c, and its experiment wrapper src/config/poses_csv.c). */
#include "fuzz_common.h"
#include "mmd_config.h"
#include "mmd_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write("poses.csv", data, size);
    mmd_cfg_pose *p = NULL;
    size_t n = 0;
    mmd_status st = mmd_cfg_read_poses_csv(path, &p, &n);
    fuzz_check_status(st);
    /* a row needs at least "0,0,0\n"-ish bytes: the count is bounded by the file */
    if (st == MMD_OK && n > size) abort();
    free(p);
    return 0;
}
