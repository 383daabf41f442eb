/* NPY reader (src/io/npy.c): the whole input is one .npy file. */
#include "fuzz_common.h"
#include "mmd_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write("in.npy", data, size);
    mmd_array a;
    mmd_status st = mmd_npy_read_f32(path, &a);
    fuzz_check_status(st);
    if (st == MMD_OK) {
        size_t count = 1;
        for (int k = 0; k < a.ndim; k++) count *= a.shape[k];
        /* the data is exactly what the header promised, and all of it is readable */
        if (count != a.count || a.count > size) abort();
        volatile float sum = 0;
        for (size_t i = 0; i < a.count; i++) sum += a.data[i];
    }
    mmd_array_free(&a);
    return 0;
}
