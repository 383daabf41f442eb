/* NeRF² directory adapter (src/io/nerf2.c): gateway_info.yml, FUZZ_SEP, tx_pos.csv,
 * FUZZ_SEP, train_index.txt, FUZZ_SEP, test_index.txt (an index part that is exactly
 * "-" means: no such file). spectrum/00001.png .. 00003.png are valid 360 x 90 PNGs. */
#include "fuzz_common.h"
#include "mmd_eval.h"
#include "mmd_plot.h"

static const char def_gw[] = "gateway1:\n  position: [5.0, 0.26, 0]\n  orientation: [0.5, -0.5, -0.5, 0.5]\n";
static const char def_tx[] = "x,y,z\n-0.3,-0.5,1.0\n-0.04,-0.8,1.0\n0,0,1\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        fuzz_mkdir("spectrum");
        static unsigned char px[MMD_NERF2_HEIGHT][MMD_NERF2_WIDTH][3];
        for (int r = 0; r < MMD_NERF2_HEIGHT; r++)
            for (int c = 0; c < MMD_NERF2_WIDTH; c++) px[r][c][0] = px[r][c][1] = px[r][c][2] = (unsigned char)(r + c);
        /* a real NeRF² spectrum (8-bit greyscale) when the shared data is there; else an
         * RGB PNG, which the adapter refuses (the error paths still run) */
        const char *shared = getenv("MMD_SHARED");
        char src[1024];
        snprintf(src, sizeof src, "%s/measurements/nerf2_rfid_s23_subset/spectrum/00001.png",
                 shared && shared[0] ? shared : "../shared");
        char *d = NULL;
        size_t dn = 0;
        if (mmd_read_file(src, &d, &dn) == MMD_OK) {
            fuzz_write("spectrum/00001.png", d, dn);
            fuzz_write("spectrum/00002.png", d, dn);
            free(d);
        } else if (mmd_png_write_rgb(fuzz_path("spectrum/00001.png"), &px[0][0][0], MMD_NERF2_WIDTH,
                                     MMD_NERF2_HEIGHT) != MMD_OK) {
            abort();
        }
        mmd_clear_error();
        init = 1;
    }
    fuzz_part parts[FUZZ_MAX_PARTS];
    int n = fuzz_split(data, size, parts, 4);
    fuzz_write_part("gateway_info.yml", parts, n, 0, def_gw);
    fuzz_write_part("tx_pos.csv", parts, n, 1, def_tx);
    static const char *idx[2] = {"train_index.txt", "test_index.txt"};
    for (int k = 0; k < 2; k++) {
        if (n > 2 + k && !(parts[2 + k].n == 1 && parts[2 + k].p[0] == '-'))
            fuzz_write(idx[k], parts[2 + k].p, parts[2 + k].n);
        else
            unlink(fuzz_path(idx[k]));
    }
    static const char *splits[3] = {"all", "train", "test"};
    for (int k = 0; k < 3; k++) {
        mmd_nerf2_set s;
        mmd_status st = mmd_nerf2_read(fuzz_dir(), splits[k], &s);
        fuzz_check_status(st);
        if (st == MMD_OK) mmd_nerf2_free(&s);
    }
    return 0;
}
