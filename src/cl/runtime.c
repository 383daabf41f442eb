/*
 * OpenCL runtime (see mmd_cl.h): device enumeration and selection, program build with
 * include resolution from the embedded kernel sources, and the on-disk binary cache.
 *
 * Why a cache: PoCL compiles kernels through LLVM, which takes seconds per program; a
 * GPU driver may take longer. The key covers everything that changes the binary (the
 * fully preprocessed source, build options, platform, device and driver versions), and
 * the stored file repeats the key so a hash collision can never load a wrong binary.
 */
#include "mmd_cl.h"

#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct mmd_embedded_file { const char *name; const char *data; size_t size; };
extern const struct mmd_embedded_file mmd_embedded_files[];

/* Device bytes held by the buffers of one mmd_cl. Reference counted (the mmd_cl holds one
 * reference, every live buffer another) because a buffer's destructor callback may run
 * after mmd_cl_destroy, from a driver thread. */
struct mmd_cl_acct {
    atomic_ullong bytes;
    atomic_int refs;
};

typedef struct buf_note {
    struct mmd_cl_acct *acct;
    size_t size;
} buf_note;

static void acct_unref(struct mmd_cl_acct *a)
{
    if (a && atomic_fetch_sub(&a->refs, 1) == 1) free(a);
}

static void CL_CALLBACK on_buffer_freed(cl_mem m, void *user)
{
    (void)m;
    buf_note *n = user;
    atomic_fetch_sub(&n->acct->bytes, (unsigned long long)n->size);
    acct_unref(n->acct);
    free(n);
}

struct mmd_cl_prog {
    char *key; /* name + "\n" + options */
    cl_program prog;
    struct mmd_cl_prog *next;
};

const char *mmd_cl_errstr(cl_int e)
{
    switch (e) {
#define E(x) case x: return #x;
    E(CL_SUCCESS) E(CL_DEVICE_NOT_FOUND) E(CL_DEVICE_NOT_AVAILABLE) E(CL_COMPILER_NOT_AVAILABLE)
    E(CL_MEM_OBJECT_ALLOCATION_FAILURE) E(CL_OUT_OF_RESOURCES) E(CL_OUT_OF_HOST_MEMORY)
    E(CL_PROFILING_INFO_NOT_AVAILABLE) E(CL_MEM_COPY_OVERLAP) E(CL_IMAGE_FORMAT_MISMATCH)
    E(CL_IMAGE_FORMAT_NOT_SUPPORTED) E(CL_BUILD_PROGRAM_FAILURE) E(CL_MAP_FAILURE)
    E(CL_INVALID_VALUE) E(CL_INVALID_DEVICE_TYPE) E(CL_INVALID_PLATFORM) E(CL_INVALID_DEVICE)
    E(CL_INVALID_CONTEXT) E(CL_INVALID_QUEUE_PROPERTIES) E(CL_INVALID_COMMAND_QUEUE)
    E(CL_INVALID_HOST_PTR) E(CL_INVALID_MEM_OBJECT) E(CL_INVALID_BINARY) E(CL_INVALID_BUILD_OPTIONS)
    E(CL_INVALID_PROGRAM) E(CL_INVALID_PROGRAM_EXECUTABLE) E(CL_INVALID_KERNEL_NAME)
    E(CL_INVALID_KERNEL_DEFINITION) E(CL_INVALID_KERNEL) E(CL_INVALID_ARG_INDEX)
    E(CL_INVALID_ARG_VALUE) E(CL_INVALID_ARG_SIZE) E(CL_INVALID_KERNEL_ARGS)
    E(CL_INVALID_WORK_DIMENSION) E(CL_INVALID_WORK_GROUP_SIZE) E(CL_INVALID_WORK_ITEM_SIZE)
    E(CL_INVALID_GLOBAL_OFFSET) E(CL_INVALID_EVENT_WAIT_LIST) E(CL_INVALID_EVENT)
    E(CL_INVALID_OPERATION) E(CL_INVALID_BUFFER_SIZE) E(CL_INVALID_GLOBAL_WORK_SIZE)
#undef E
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR (no OpenCL platform: is an ICD installed?)";
    }
    return "unknown OpenCL error";
}

mmd_status mmd_cl_check(cl_int err, const char *what)
{
    /* injected: a call that worked is reported as the device giving up, the way a GPU
     * that runs out of memory inside a launch reports it */
    if (err == CL_SUCCESS && mmd_fault("cl_run", what))
        return mmd_error(MMD_ERR_CL, "OpenCL: %s failed: %s (%d): the device ran out of memory or resources "
                         "(injected by MMDIFF_FAULT)",
                         what, mmd_cl_errstr(CL_OUT_OF_RESOURCES), (int)CL_OUT_OF_RESOURCES);
    if (err == CL_SUCCESS) return MMD_OK;
    if (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_RESOURCES ||
        err == CL_OUT_OF_HOST_MEMORY)
        return mmd_error(MMD_ERR_CL, "OpenCL: %s failed: %s (%d): the device ran out of memory or resources",
                         what, mmd_cl_errstr(err), (int)err);
    return mmd_error(MMD_ERR_CL, "OpenCL: %s failed: %s (%d)", what, mmd_cl_errstr(err), (int)err);
}

static void info_str(cl_device_id d, cl_device_info p, char *buf, size_t n)
{
    buf[0] = 0;
    if (clGetDeviceInfo(d, p, n, buf, NULL) != CL_SUCCESS) buf[0] = 0;
    buf[n - 1] = 0;
}

mmd_status mmd_cl_list_devices(mmd_cl_device_info **out, int *count)
{
    *out = NULL;
    *count = 0;
    cl_uint np = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &np);
    if (err != CL_SUCCESS || np == 0)
        return mmd_error(MMD_ERR_NODEVICE,
                         "no OpenCL platform found (%s). Install an OpenCL driver: for the CPU, "
                         "`apt-get install pocl-opencl-icd`; for GPUs, the vendor's ICD",
                         err == CL_SUCCESS ? "0 platforms" : mmd_cl_errstr(err));
    cl_platform_id *plats = mmd_calloc(np, sizeof *plats, "platform list");
    if (!plats) return MMD_ERR_NOMEM;
    clGetPlatformIDs(np, plats, NULL);
    mmd_cl_device_info *list = NULL;
    int n = 0;
    for (cl_uint p = 0; p < np; p++) {
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS || nd == 0) continue;
        cl_device_id *devs = mmd_calloc(nd, sizeof *devs, "device list");
        mmd_cl_device_info *nl = mmd_realloc(list, (size_t)n + nd, sizeof *list, "device list");
        if (!devs || !nl) {
            free(devs);
            free(nl ? nl : list);
            free(plats);
            return MMD_ERR_NOMEM;
        }
        list = nl;
        clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, nd, devs, NULL);
        char pname[256] = "";
        clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof pname, pname, NULL);
        pname[sizeof pname - 1] = 0;
        for (cl_uint d = 0; d < nd; d++) {
            mmd_cl_device_info *x = &list[n++];
            memset(x, 0, sizeof *x);
            x->platform_index = (int)p;
            x->device_index = (int)d;
            x->platform = plats[p];
            x->device = devs[d];
            snprintf(x->platform_name, sizeof x->platform_name, "%s", pname);
            info_str(devs[d], CL_DEVICE_NAME, x->device_name, sizeof x->device_name);
            info_str(devs[d], CL_DEVICE_VERSION, x->device_version, sizeof x->device_version);
            info_str(devs[d], CL_DEVICE_OPENCL_C_VERSION, x->c_version, sizeof x->c_version);
            info_str(devs[d], CL_DRIVER_VERSION, x->driver_version, sizeof x->driver_version);
            clGetDeviceInfo(devs[d], CL_DEVICE_TYPE, sizeof x->type, &x->type, NULL);
            cl_device_fp_config fp = 0;
            clGetDeviceInfo(devs[d], CL_DEVICE_DOUBLE_FP_CONFIG, sizeof fp, &fp, NULL);
            x->fp64 = fp != 0;
            clGetDeviceInfo(devs[d], CL_DEVICE_GLOBAL_MEM_SIZE, sizeof x->global_mem, &x->global_mem, NULL);
            clGetDeviceInfo(devs[d], CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof x->max_alloc, &x->max_alloc, NULL);
            clGetDeviceInfo(devs[d], CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof x->max_work_group,
                            &x->max_work_group, NULL);
            clGetDeviceInfo(devs[d], CL_DEVICE_MAX_COMPUTE_UNITS, sizeof x->compute_units,
                            &x->compute_units, NULL);
        }
        free(devs);
    }
    free(plats);
    if (n == 0) {
        free(list);
        return mmd_error(MMD_ERR_NODEVICE, "OpenCL platforms found, but no devices");
    }
    *out = list;
    *count = n;
    return MMD_OK;
}

static int contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0) return 1;
    return n == 0;
}

static const char *type_name(cl_device_type t)
{
    if (t & CL_DEVICE_TYPE_GPU) return "GPU";
    if (t & CL_DEVICE_TYPE_CPU) return "CPU";
    if (t & CL_DEVICE_TYPE_ACCELERATOR) return "accelerator";
    return "other";
}

mmd_status mmd_cl_select(const char *sel, mmd_cl_device_info *out)
{
    if (!sel || !sel[0]) sel = getenv("MMDIFF_DEVICE");
    if (!sel || !sel[0]) sel = "auto";
    mmd_cl_device_info *list;
    int n;
    mmd_status st = mmd_cl_list_devices(&list, &n);
    if (st != MMD_OK) return st;
    int pick = -1;
    if (!strcasecmp(sel, "auto")) {
        for (int i = 0; i < n && pick < 0; i++)
            if (list[i].type & CL_DEVICE_TYPE_GPU) pick = i;
        for (int i = 0; i < n && pick < 0; i++)
            if (list[i].type & CL_DEVICE_TYPE_CPU) pick = i;
        if (pick < 0) pick = 0;
    } else if (!strcasecmp(sel, "gpu") || !strcasecmp(sel, "cpu")) {
        cl_device_type want = !strcasecmp(sel, "gpu") ? CL_DEVICE_TYPE_GPU : CL_DEVICE_TYPE_CPU;
        for (int i = 0; i < n && pick < 0; i++)
            if (list[i].type & want) pick = i;
    } else {
        int p, d;
        char tail;
        if (sscanf(sel, "%d:%d%c", &p, &d, &tail) == 2) {
            for (int i = 0; i < n; i++)
                if (list[i].platform_index == p && list[i].device_index == d) pick = i;
        } else {
            for (int i = 0; i < n && pick < 0; i++)
                if (contains_ci(list[i].device_name, sel) || contains_ci(list[i].platform_name, sel)) pick = i;
        }
    }
    if (pick < 0) {
        char avail[2048] = "";
        size_t off = 0;
        for (int i = 0; i < n && off < sizeof avail - 1; i++)
            off += (size_t)snprintf(avail + off, sizeof avail - off, "%s[%d:%d] %s (%s)", i ? ", " : "",
                                    list[i].platform_index, list[i].device_index, list[i].device_name,
                                    type_name(list[i].type));
        free(list);
        return mmd_error(MMD_ERR_NODEVICE,
                         "no OpenCL device matches '%s' (selector from --device or MMDIFF_DEVICE; "
                         "expected auto, gpu, cpu, P:D or a name substring). Available: %s",
                         sel, avail);
    }
    *out = list[pick];
    free(list);
    return MMD_OK;
}

mmd_status mmd_cl_create(const char *selector, mmd_cl **out)
{
    *out = NULL;
    mmd_cl *cl = mmd_calloc(1, sizeof *cl, "OpenCL context");
    if (!cl) return MMD_ERR_NOMEM;
    mmd_status st = mmd_cl_select(selector, &cl->info);
    if (st != MMD_OK) {
        free(cl);
        return st;
    }
    cl_int err;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)cl->info.platform, 0};
    cl->ctx = clCreateContext(props, 1, &cl->info.device, NULL, NULL, &err);
    if (err != CL_SUCCESS) {
        free(cl);
        return mmd_cl_check(err, "clCreateContext");
    }
    cl->queue = clCreateCommandQueue(cl->ctx, cl->info.device, 0, &err);
    if (err != CL_SUCCESS) {
        clReleaseContext(cl->ctx);
        free(cl);
        return mmd_cl_check(err, "clCreateCommandQueue");
    }
    cl->acct = malloc(sizeof *cl->acct);
    if (!cl->acct) {
        clReleaseCommandQueue(cl->queue);
        clReleaseContext(cl->ctx);
        free(cl);
        return mmd_error(MMD_ERR_NOMEM, "out of memory (device memory accounting)");
    }
    atomic_init(&cl->acct->bytes, 0);
    atomic_init(&cl->acct->refs, 1);
    cl->mem_budget = cl->info.global_mem;
    const char *lim = getenv("MMDIFF_DEVICE_MEM_MB");
    if (lim && lim[0]) {
        char *end;
        double mb = strtod(lim, &end);
        if (end == lim || *end || !(mb > 0)) {
            mmd_cl_destroy(cl);
            return mmd_error(MMD_ERR_INVALID, "MMDIFF_DEVICE_MEM_MB: '%s'; expected a positive number of MiB", lim);
        }
        cl_ulong b = (cl_ulong)(mb * 1048576.0);
        if (b < cl->mem_budget || !cl->mem_budget) cl->mem_budget = b;
    }
    mmd_info("device [%d:%d] %s | %s | %s | %s", cl->info.platform_index, cl->info.device_index,
             cl->info.device_name, cl->info.platform_name, type_name(cl->info.type),
             cl->info.driver_version);
    *out = cl;
    return MMD_OK;
}

void mmd_cl_destroy(mmd_cl *cl)
{
    if (!cl) return;
    for (struct mmd_cl_prog *p = cl->progs, *next; p; p = next) {
        next = p->next;
        clReleaseProgram(p->prog);
        free(p->key);
        free(p);
    }
    if (cl->queue) clReleaseCommandQueue(cl->queue);
    if (cl->ctx) clReleaseContext(cl->ctx);
    acct_unref(cl->acct);
    free(cl);
}

/* ---- sources: embedded, or overridden from MMDIFF_KERNEL_DIR --------------------- */

static mmd_status raw_source(const char *name, char **out)
{
    const char *dir = getenv("MMDIFF_KERNEL_DIR");
    if (dir && dir[0]) {
        char *path = mmd_path_join(dir, name, 0);
        if (!path) return mmd_error(MMD_ERR_NOMEM, "out of memory");
        struct stat sb;
        if (stat(path, &sb) == 0) {
            mmd_status st = mmd_read_file(path, out, NULL);
            free(path);
            return st;
        }
        free(path);
        /* Not overridden: fall back to the embedded copy (lets a kernel developer
         * override one file without copying the shared headers). */
    }
    for (const struct mmd_embedded_file *f = mmd_embedded_files; f->name; f++) {
        if (!strcmp(f->name, name)) {
            *out = mmd_malloc(f->size + 1, 1, name);
            if (!*out) return MMD_ERR_NOMEM;
            memcpy(*out, f->data, f->size + 1);
            return MMD_OK;
        }
    }
    return mmd_error(MMD_ERR_IO, "kernel source '%s' is neither embedded nor in MMDIFF_KERNEL_DIR (%s)",
                     name, dir && dir[0] ? dir : "unset");
}

typedef struct strbuf { char *p; size_t n, cap; } strbuf;

static int sb_add(strbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->n + n + 1 > cap) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) return 0;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 1;
}

/* Textual include resolution: the OpenCL compiler cannot see our embedded headers, so
 * `#include "x.h"` lines are replaced by the file's content (once per file, which also
 * makes include guards unnecessary), with #line markers so build logs name the file. */
static mmd_status expand(const char *name, strbuf *b, char seen[][64], int *nseen, int depth)
{
    if (depth > 16) return mmd_error(MMD_ERR_BUILD, "kernel include depth exceeded at '%s'", name);
    for (int i = 0; i < *nseen; i++)
        if (!strcmp(seen[i], name)) return MMD_OK;
    if (*nseen >= 64) return mmd_error(MMD_ERR_BUILD, "too many kernel includes");
    snprintf(seen[(*nseen)++], 64, "%s", name);
    char *src;
    mmd_status st = raw_source(name, &src);
    if (st != MMD_OK) return st;
    char marker[160];
    int line = 1;
    snprintf(marker, sizeof marker, "#line 1 \"%s\"\n", name);
    if (!sb_add(b, marker, strlen(marker))) goto nomem;
    for (const char *p = src; *p;) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) + 1 : strlen(p);
        const char *q = p;
        while (*q == ' ' || *q == '\t') q++;
        char inc[128];
        if (!strncmp(q, "#include", 8) && sscanf(q + 8, " \"%127[^\"]\"", inc) == 1) {
            st = expand(inc, b, seen, nseen, depth + 1);
            if (st != MMD_OK) {
                free(src);
                return st;
            }
            snprintf(marker, sizeof marker, "\n#line %d \"%s\"\n", line + 1, name);
            if (!sb_add(b, marker, strlen(marker))) goto nomem;
        } else if (!sb_add(b, p, len)) {
            goto nomem;
        }
        line++;
        p += len;
    }
    free(src);
    return MMD_OK;
nomem:
    free(src);
    return mmd_error(MMD_ERR_NOMEM, "out of memory expanding kernel source %s", name);
}

mmd_status mmd_cl_source(const char *name, char **out)
{
    strbuf b = {0};
    char seen[64][64];
    int nseen = 0;
    mmd_status st = expand(name, &b, seen, &nseen, 0);
    if (st != MMD_OK) {
        free(b.p);
        return st;
    }
    *out = b.p;
    return MMD_OK;
}

/* ---- binary cache ---------------------------------------------------------------- */

const char *mmd_cl_cache_dir(void)
{
    static _Thread_local char dir[1024];
    const char *off = getenv("MMDIFF_CACHE");
    if (off && (!strcasecmp(off, "off") || !strcmp(off, "0") || !strcasecmp(off, "no"))) return NULL;
    const char *e = getenv("MMDIFF_CACHE_DIR");
    if (e && e[0]) {
        snprintf(dir, sizeof dir, "%s", e);
        return dir;
    }
    e = getenv("XDG_CACHE_HOME");
    if (e && e[0]) {
        snprintf(dir, sizeof dir, "%s/mmdiff", e);
        return dir;
    }
    e = getenv("HOME");
    if (e && e[0]) {
        snprintf(dir, sizeof dir, "%s/.cache/mmdiff", e);
        return dir;
    }
    return NULL;
}

static char *cache_key(const mmd_cl *cl, const char *src, const char *opts)
{
    const mmd_cl_device_info *i = &cl->info;
    size_t n = strlen(src) + strlen(opts) + 1024;
    char *k = malloc(n);
    if (!k) return NULL;
    snprintf(k, n, "mmdiff-cl-cache 1\n%s\n%s\n%s\n%s\n%s\nopts:%s\n", i->platform_name, i->device_name,
             i->device_version, i->driver_version, i->c_version, opts);
    strcat(k, src);
    return k;
}

static cl_program cache_load(mmd_cl *cl, const char *path, const char *key)
{
    char *data;
    size_t size;
    mmd_status st = mmd_read_file(path, &data, &size);
    mmd_clear_error();
    if (st != MMD_OK) return NULL;
    size_t klen = strlen(key);
    cl_program prog = NULL;
    if (size > klen + 8 && !memcmp(data, key, klen) && data[klen] == 0) {
        uint64_t blen;
        memcpy(&blen, data + klen + 1, 8);
        if (blen == size - klen - 9) {
            const unsigned char *bin = (const unsigned char *)data + klen + 9;
            size_t bl = (size_t)blen;
            cl_int err, bst;
            prog = clCreateProgramWithBinary(cl->ctx, 1, &cl->info.device, &bl, &bin, &bst, &err);
            if (err != CL_SUCCESS || bst != CL_SUCCESS) {
                if (prog) clReleaseProgram(prog);
                prog = NULL;
            } else if (clBuildProgram(prog, 1, &cl->info.device, NULL, NULL, NULL) != CL_SUCCESS) {
                clReleaseProgram(prog);
                prog = NULL;
            }
        }
    }
    free(data);
    return prog;
}

static void cache_store(mmd_cl *cl, cl_program prog, const char *path, const char *key)
{
    size_t bl = 0;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof bl, &bl, NULL) != CL_SUCCESS || !bl) return;
    size_t klen = strlen(key);
    unsigned char *buf = malloc(klen + 9 + bl);
    if (!buf) return;
    memcpy(buf, key, klen + 1);
    uint64_t b64 = bl;
    memcpy(buf + klen + 1, &b64, 8);
    unsigned char *bin = buf + klen + 9;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) == CL_SUCCESS) {
        if (mmd_write_file_atomic(path, buf, klen + 9 + bl) != MMD_OK) {
            mmd_debug("kernel cache: cannot write %s: %s", path, mmd_last_error());
            mmd_clear_error();
        }
    }
    (void)cl;
    free(buf);
}

mmd_status mmd_cl_program(mmd_cl *cl, const char *name, const char *options, cl_program *out)
{
    if (!options) options = "";
    char opts[1024];
    /* Kernels are written for OpenCL C 1.2; fast-relaxed math is never on by default
     * because the host references compare bit-for-bit. */
    snprintf(opts, sizeof opts, "-cl-std=CL1.2 %s", options);
    size_t klen = strlen(name) + strlen(opts) + 2;
    char *mkey = malloc(klen);
    if (!mkey) return mmd_error(MMD_ERR_NOMEM, "out of memory");
    snprintf(mkey, klen, "%s\n%s", name, opts);
    for (struct mmd_cl_prog *p = cl->progs; p; p = p->next) {
        if (!strcmp(p->key, mkey)) {
            free(mkey);
            *out = p->prog;
            return MMD_OK;
        }
    }
    if (mmd_fault("cl_build", name)) {
        /* injected: what a driver whose compiler rejects the kernel reports (before the
         * cache, which would otherwise hide it) */
        mmd_error(MMD_ERR_BUILD, "OpenCL build of kernel '%s' failed on %s (%s), options '%s'. Build log:\n"
                  "(injected by MMDIFF_FAULT)",
                  name, cl->info.device_name, mmd_cl_errstr(CL_BUILD_PROGRAM_FAILURE), opts);
        free(mkey);
        return MMD_ERR_BUILD;
    }
    char *src;
    mmd_status st = mmd_cl_source(name, &src);
    if (st != MMD_OK) {
        free(mkey);
        return st;
    }
    double t0 = mmd_now();
    cl_program prog = NULL;
    char path[1300] = "";
    char *key = NULL;
    const char *dir = mmd_cl_cache_dir();
    if (dir) {
        key = cache_key(cl, src, opts);
        if (key) {
            snprintf(path, sizeof path, "%s/%016llx.clbin", dir,
                     (unsigned long long)mmd_hash64(key, strlen(key), MMD_FNV_SEED));
            prog = cache_load(cl, path, key);
            if (prog) mmd_debug("kernel %s: loaded from cache %s", name, path);
        }
    }
    if (!prog) {
        cl_int err;
        const char *srcs[] = {src};
        prog = clCreateProgramWithSource(cl->ctx, 1, srcs, NULL, &err);
        if (err != CL_SUCCESS) {
            free(src);
            free(key);
            free(mkey);
            return mmd_cl_check(err, "clCreateProgramWithSource");
        }
        err = clBuildProgram(prog, 1, &cl->info.device, opts, NULL, NULL);
        if (err != CL_SUCCESS) {
            size_t ln = 0;
            clGetProgramBuildInfo(prog, cl->info.device, CL_PROGRAM_BUILD_LOG, 0, NULL, &ln);
            char *log = malloc(ln + 1);
            if (log) {
                log[0] = 0;
                clGetProgramBuildInfo(prog, cl->info.device, CL_PROGRAM_BUILD_LOG, ln, log, NULL);
                log[ln] = 0;
            }
            mmd_error(MMD_ERR_BUILD, "OpenCL build of kernel '%s' failed on %s (%s), options '%s'. Build log:\n%s",
                      name, cl->info.device_name, mmd_cl_errstr(err), opts, log ? log : "(no log)");
            free(log);
            clReleaseProgram(prog);
            free(src);
            free(key);
            free(mkey);
            return MMD_ERR_BUILD;
        }
        mmd_debug("kernel %s: compiled in %.2f s", name, mmd_now() - t0);
        if (dir && key) {
            if (mmd_mkdirs(dir) == MMD_OK)
                cache_store(cl, prog, path, key);
            else
                mmd_clear_error(); /* the cache is an optimisation: never fail the build */
        }
    }
    free(src);
    free(key);
    struct mmd_cl_prog *e = malloc(sizeof *e);
    if (!e) {
        clReleaseProgram(prog);
        free(mkey);
        return mmd_error(MMD_ERR_NOMEM, "out of memory");
    }
    e->key = mkey;
    e->prog = prog;
    e->next = cl->progs;
    cl->progs = e;
    *out = prog;
    return MMD_OK;
}

mmd_status mmd_cl_kernel(mmd_cl *cl, cl_program prog, const char *kernel_name, cl_kernel *out)
{
    (void)cl;
    cl_int err;
    *out = clCreateKernel(prog, kernel_name, &err);
    if (err != CL_SUCCESS) {
        *out = NULL;
        return mmd_error(MMD_ERR_CL, "OpenCL: cannot create kernel '%s': %s", kernel_name, mmd_cl_errstr(err));
    }
    return MMD_OK;
}

static double mib(cl_ulong b) { return (double)b / 1048576.0; }

cl_ulong mmd_cl_mem_in_use(const mmd_cl *cl)
{
    return cl->acct ? (cl_ulong)atomic_load(&cl->acct->bytes) : 0;
}

cl_ulong mmd_cl_mem_available(const mmd_cl *cl)
{
    cl_ulong used = mmd_cl_mem_in_use(cl), budget = cl->mem_budget ? cl->mem_budget : cl->info.global_mem;
    cl_ulong left = budget > used ? budget - used : 0;
    if (cl->info.max_alloc && left > cl->info.max_alloc) left = cl->info.max_alloc;
    return left;
}

mmd_status mmd_cl_mem_check(const mmd_cl *cl, cl_ulong bytes, cl_ulong largest, const char *what, const char *hint)
{
    cl_ulong used = mmd_cl_mem_in_use(cl), budget = cl->mem_budget ? cl->mem_budget : cl->info.global_mem;
    const char *env = getenv("MMDIFF_DEVICE_MEM_MB");
    int capped = env && env[0] && budget < cl->info.global_mem;
    if (cl->info.max_alloc && largest > cl->info.max_alloc)
        return mmd_error(MMD_ERR_NOMEM,
                         "%s: one device buffer of %.1f MiB is needed, but %s allocates at most %.1f MiB per buffer "
                         "(CL_DEVICE_MAX_MEM_ALLOC_SIZE)%s%s",
                         what, mib(largest), cl->info.device_name, mib(cl->info.max_alloc), hint ? "; " : "",
                         hint ? hint : "");
    if (budget && (bytes > budget || used > budget - bytes))
        return mmd_error(MMD_ERR_NOMEM,
                         "%s: %.1f MiB of device memory are needed, but only %.1f MiB of %s's %.1f MiB%s are free "
                         "(%.1f MiB in use)%s%s",
                         what, mib(bytes), used < budget ? mib(budget - used) : 0.0, cl->info.device_name,
                         mib(budget), capped ? " (MMDIFF_DEVICE_MEM_MB)" : "", mib(used), hint ? "; " : "",
                         hint ? hint : "");
    return MMD_OK;
}

mmd_status mmd_cl_buffer(mmd_cl *cl, cl_mem_flags flags, size_t size, const void *host, const char *what,
                         cl_mem *out)
{
    cl_int err;
    if (size == 0) { /* zero-size buffers are invalid in OpenCL */
        size = 16;
        host = NULL;
    }
    if (host) flags |= CL_MEM_COPY_HOST_PTR;
    *out = NULL;
    char what2[300];
    snprintf(what2, sizeof what2, "OpenCL buffer for %s", what);
    mmd_status st = mmd_cl_mem_check(cl, size, size, what2,
                                     "a smaller solver.rays, solver.max_depth, solver.cache_mb or grid needs less");
    if (st != MMD_OK) return st;
    int injected = mmd_fault("cl_alloc", what);
    if (injected) err = CL_MEM_OBJECT_ALLOCATION_FAILURE;
    else *out = clCreateBuffer(cl->ctx, flags, size, (void *)host, &err);
    if (err != CL_SUCCESS) {
        *out = NULL;
        return mmd_error(MMD_ERR_CL, "OpenCL: cannot allocate %zu bytes for %s on %s: %s%s", size, what,
                         cl->info.device_name, mmd_cl_errstr(err), injected ? " (injected by MMDIFF_FAULT)" : "");
    }
    if (cl->acct) {
        buf_note *n = malloc(sizeof *n);
        if (n) {
            n->acct = cl->acct;
            n->size = size;
            atomic_fetch_add(&cl->acct->refs, 1);
            atomic_fetch_add(&cl->acct->bytes, (unsigned long long)size);
            if (clSetMemObjectDestructorCallback(*out, on_buffer_freed, n) != CL_SUCCESS) {
                /* not counted: the driver cannot tell us when it goes */
                atomic_fetch_sub(&cl->acct->bytes, (unsigned long long)size);
                acct_unref(cl->acct);
                free(n);
            }
        }
    }
    return MMD_OK;
}
