/* Measurement-set reader (src/io/measurements.c): manifest.yaml, FUZZ_SEP, poses.csv,
 * FUZZ_SEP, spectra.npy. Missing parts get valid defaults for a 1-pose 2 x 3 set; the
 * scratch directory also holds p0.npy / p1.npy (one pose each) for per-pose lists. */
#include "fuzz_common.h"
#include "mmd_io.h"
#include "mmd_train.h"

static const char def_manifest[] =
    "format: mmdiff-measurements-1\nfrequency_hz: 60.0e9\nposes: poses.csv\nspectra: spectra.npy\n"
    "units: linear_power\nazimuth_deg: [0, 2, 1]\nelevation_deg: [0, 1, 1]\nshape: [1, 2, 3]\n";
static const char def_poses[] = "x_m,y_m,z_m,yaw_deg,pitch_deg,roll_deg\n1,2,1.5,0,0,0\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        /* fixed per-pose spectra, written through the library's own writer */
        float v[6] = {1, 0.5f, 0.25f, 0.125f, 0, 2};
        size_t shape3[3] = {1, 2, 3}, shape2[2] = {2, 3};
        if (mmd_npy_write(fuzz_path("default.npy"), MMD_DT_F32, shape3, 3, v) ||
            mmd_npy_write(fuzz_path("p0.npy"), MMD_DT_F32, shape2, 2, v) ||
            mmd_npy_write(fuzz_path("p1.npy"), MMD_DT_F32, shape2, 2, v))
            abort();
        init = 1;
    }
    fuzz_part parts[FUZZ_MAX_PARTS];
    int n = fuzz_split(data, size, parts, 3);
    fuzz_write_part("manifest.yaml", parts, n, 0, def_manifest);
    fuzz_write_part("poses.csv", parts, n, 1, def_poses);
    if (n > 2) {
        fuzz_write("spectra.npy", parts[2].p, parts[2].n);
    } else {
        char *d = NULL;
        size_t dn = 0;
        if (mmd_read_file(fuzz_path("default.npy"), &d, &dn)) abort();
        fuzz_write("spectra.npy", d, dn);
        free(d);
    }
    mmd_measurements m;
    mmd_status st = mmd_measurements_read(fuzz_dir(), &m);
    fuzz_check_status(st);
    if (st == MMD_OK) {
        /* every spectrum value is there and readable */
        volatile float sum = 0;
        size_t count = m.n_poses * (size_t)m.n_el * (size_t)m.n_az;
        for (size_t i = 0; i < count; i++) sum += m.spectra[i];
        mmd_measurements_free(&m);
    }
    return 0;
}
