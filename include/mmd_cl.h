/*
 * mmd_cl.h - OpenCL runtime: device enumeration and selection, program build from the
 * kernels embedded at build time (or from MMDIFF_KERNEL_DIR), and an on-disk cache of
 * compiled program binaries keyed by source + options + device + driver.
 *
 * Device selection (`--device` or MMDIFF_DEVICE): "auto" (first GPU, else first CPU,
 * else first device), "gpu", "cpu", "P:D" (platform and device index as listed by
 * `mmdiff devices`), or a case-insensitive substring of the platform or device name.
 *
 * Example:
 *     mmd_cl *cl = NULL;
 *     if (mmd_cl_create(NULL, &cl) != MMD_OK) ...;            // NULL = $MMDIFF_DEVICE or auto
 *     cl_program p; mmd_cl_program(cl, "trace.cl", "", &p);   // built or loaded from cache
 *     cl_kernel k = clCreateKernel(p, "mmd_trace_closest", &err);
 *     ...
 *     mmd_cl_destroy(cl);
 */
#ifndef MMD_CL_H
#define MMD_CL_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "mmd_core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mmd_cl_device_info {
    int platform_index, device_index;
    cl_platform_id platform;
    cl_device_id device;
    char platform_name[256];
    char device_name[256];
    char device_version[128];
    char c_version[128];     /* CL_DEVICE_OPENCL_C_VERSION */
    char driver_version[128];
    cl_device_type type;
    int fp64;
    cl_ulong global_mem;
    cl_ulong max_alloc;      /* CL_DEVICE_MAX_MEM_ALLOC_SIZE: the largest single buffer */
    size_t max_work_group;
    cl_uint compute_units;
} mmd_cl_device_info;

/* Enumerate all devices of all platforms. `*out` is malloc'ed (free it). Returns
 * MMD_ERR_NODEVICE with a helpful message when there is no platform at all. */
mmd_status mmd_cl_list_devices(mmd_cl_device_info **out, int *count);

/* Pick one device by selector (see above); NULL or "" means $MMDIFF_DEVICE or "auto". */
mmd_status mmd_cl_select(const char *selector, mmd_cl_device_info *out);

typedef struct mmd_cl {
    mmd_cl_device_info info;
    cl_context ctx;
    cl_command_queue queue;
    struct mmd_cl_prog *progs; /* built programs, by name + options */
    struct mmd_cl_acct *acct;  /* device bytes held by buffers of mmd_cl_buffer */
    cl_ulong mem_budget;       /* what mmdiff may hold on the device (see mmd_cl_buffer) */
} mmd_cl;

/* Create a context and an in-order queue on the selected device; logs the choice. */
mmd_status mmd_cl_create(const char *selector, mmd_cl **out);
void mmd_cl_destroy(mmd_cl *cl);

/* Build (or fetch from the in-memory table or the on-disk cache) the program whose main
 * source is `name` (e.g. "trace.cl"). `#include "x.h"` lines are resolved against the
 * embedded headers (or MMDIFF_KERNEL_DIR). The program stays owned by `cl`. */
mmd_status mmd_cl_program(mmd_cl *cl, const char *name, const char *options, cl_program *out);

/* Create a kernel from a program; error message names the kernel. Caller releases. */
mmd_status mmd_cl_kernel(mmd_cl *cl, cl_program prog, const char *kernel_name, cl_kernel *out);

/* Allocate a device buffer, optionally initialised from host memory.
 *
 * Device memory is budgeted so that a run too large for the device is refused with the
 * numbers (MMD_ERR_NOMEM: the bytes asked for, in use and available, and what to lower)
 * when the buffer is created, instead of failing later inside a kernel launch: drivers
 * (PoCL, most GPU drivers) allocate lazily, so clCreateBuffer alone rarely says no. The
 * budget is the device's global memory, or MMDIFF_DEVICE_MEM_MB when set (to share a GPU,
 * or to test the limits); one buffer may not exceed CL_DEVICE_MAX_MEM_ALLOC_SIZE. Buffers
 * are counted until released (a destructor callback), whoever releases them. */
mmd_status mmd_cl_buffer(mmd_cl *cl, cl_mem_flags flags, size_t size, const void *host,
                         const char *what, cl_mem *out);

/* Device bytes currently held through mmd_cl_buffer, and the budget (both in bytes). A
 * caller that needs several buffers checks the sum up front with mmd_cl_mem_check, so the
 * error names the whole need rather than the buffer that happened to be last. */
cl_ulong mmd_cl_mem_in_use(const mmd_cl *cl);
/* Bytes one more buffer may have now: the budget left, capped at the largest allocation.
 * For chunked work that sizes its chunks to the device (coverage batches). */
cl_ulong mmd_cl_mem_available(const mmd_cl *cl);
/* MMD_OK when `bytes` more fit in the budget (and no single one of them is larger than
 * `largest` > the device's max allocation); otherwise MMD_ERR_NOMEM with a message naming
 * `what` (e.g. "calibration: solver.rays 1000000 x max_depth 5 path records"), the
 * numbers and `hint` (what to lower). */
mmd_status mmd_cl_mem_check(const mmd_cl *cl, cl_ulong bytes, cl_ulong largest, const char *what,
                            const char *hint);

/* Human-readable name of an OpenCL error code. */
const char *mmd_cl_errstr(cl_int err);

/* Turn an OpenCL error into an mmd_status with a message naming `what`. */
mmd_status mmd_cl_check(cl_int err, const char *what);

/* The preprocessed source of an embedded/overridden kernel file (includes resolved);
 * malloc'ed. Exposed for tests and for the cache key. */
mmd_status mmd_cl_source(const char *name, char **out);

/* Cache directory: $MMDIFF_CACHE_DIR, else $XDG_CACHE_HOME/mmdiff, else ~/.cache/mmdiff.
 * MMDIFF_CACHE=off disables the cache. */
const char *mmd_cl_cache_dir(void);

#ifdef __cplusplus
}
#endif
#endif
