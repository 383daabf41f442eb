/* NeRF² spectrum PNG adapter (src/io/nerf2.c on stb_image): one PNG file. */
#include "fuzz_common.h"
#include "mmd_eval.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static float out[MMD_NERF2_WIDTH * MMD_NERF2_HEIGHT];
    const char *path = fuzz_write("00001.png", data, size);
    mmd_status st = mmd_nerf2_read_png(path, out);
    fuzz_check_status(st);
    return 0;
}
