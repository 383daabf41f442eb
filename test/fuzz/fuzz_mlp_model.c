/* Neural-field model directories (mmd_mlp_load, src/learn/mlp_io.c): the input is
 * model.yaml; the directory holds the tensors of a small valid network (octaves 0, one
 * hidden layer of 2) as layer0_weight.npy ... adam_v.npy, and the first seed is that
 * network's model.yaml with the right checksum. No OpenCL context is passed, so even a
 * fully valid directory ends in "no OpenCL context": everything before it is the parser. */
#include "fuzz_common.h"
#include "mmd_io.h"
#include "mmd_mlp.h"

static void init(void)
{
    mmd_mlp_config c = mmd_mlp_defaults();
    c.octaves = 0;
    c.n_hidden = 1;
    c.hidden[0] = 2;
    size_t n = mmd_mlp_config_params(&c);
    float v[64] = {0};
    if (n > 64) abort();
    for (size_t i = 0; i < n; i++) v[i] = 0.125f * (float)i;
    for (int t = 0; t < 2 * (c.n_hidden + 1); t++) {
        size_t off;
        int rows, cols;
        char name[64], file[80];
        mmd_mlp_config_tensor(&c, t, &off, &rows, &cols, name, sizeof name);
        snprintf(file, sizeof file, "%s.npy", name);
        size_t shape[2] = {(size_t)rows, (size_t)cols};
        if ((t % 2 ? mmd_npy_write(fuzz_path(file), MMD_DT_F32, shape + 1, 1, v + off)
                   : mmd_npy_write(fuzz_path(file), MMD_DT_F32, shape, 2, v + off)) != MMD_OK)
            abort();
    }
    if (mmd_npy_write(fuzz_path("adam_m.npy"), MMD_DT_F32, &n, 1, v) != MMD_OK ||
        mmd_npy_write(fuzz_path("adam_v.npy"), MMD_DT_F32, &n, 1, v) != MMD_OK)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int done;
    if (!done) {
        init();
        done = 1;
    }
    fuzz_write("model.yaml", data, size);
    mmd_mlp *m = NULL;
    mmd_status st = mmd_mlp_load(NULL, fuzz_dir(), &m);
    if (st == MMD_OK || m) abort(); /* without a context nothing can load */
    fuzz_check_status(st);
    return 0;
}
