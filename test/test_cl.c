/* OpenCL runtime: enumeration, selection, embedded-source build with includes, struct
 * layout agreement host/device, binary cache, kernel-dir override, build-failure log. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include "mmd_cl.h"
#include "mmd_shared.h"
#include "mmd_test.h"

static int count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name), s = strlen(suffix);
        if (l > s && !strcmp(e->d_name + l - s, suffix)) n++;
    }
    closedir(d);
    return n;
}

static void rm_dir(const char *dir)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

int main(void)
{
    mmd_log_set_level(0);
    mmd_cl_device_info *list = NULL;
    int n = 0;
    mmd_status st = mmd_cl_list_devices(&list, &n);
    CHECK(st == MMD_OK && n > 0, "list devices: %s", mmd_last_error());
    if (st != MMD_OK) return TEST_DONE();

    mmd_cl_device_info sel;
    CHECK(mmd_cl_select("auto", &sel) == MMD_OK, "auto selects a device");
    char pd[32];
    snprintf(pd, sizeof pd, "%d:%d", list[0].platform_index, list[0].device_index);
    CHECK(mmd_cl_select(pd, &sel) == MMD_OK && sel.device == list[0].device, "P:D selection");
    /* a case-flipped substring of the device name selects it */
    char sub[8] = {0};
    for (int k = 0; k < 4 && list[0].device_name[k]; k++) {
        char c = list[0].device_name[k];
        sub[k] = (char)((c >= 'a' && c <= 'z') ? c - 32 : (c >= 'A' && c <= 'Z') ? c + 32 : c);
    }
    CHECK(mmd_cl_select(sub, &sel) == MMD_OK, "substring selection '%s'", sub);
    st = mmd_cl_select("no-such-device-xyz", &sel);
    CHECK(st == MMD_ERR_NODEVICE && strstr(mmd_last_error(), "no-such-device-xyz") &&
              strstr(mmd_last_error(), "Available"),
          "bad selector error: %s", mmd_last_error());
    CHECK(mmd_cl_select("99:0", &sel) == MMD_ERR_NODEVICE, "out-of-range P:D is an error");
    free(list);

    char cache[] = "/tmp/mmd_clcache_XXXXXX";
    CHECK(mkdtemp(cache) != NULL, "mkdtemp");
    setenv("MMDIFF_CACHE_DIR", cache, 1);
    unsetenv("MMDIFF_CACHE");
    unsetenv("MMDIFF_KERNEL_DIR");

    /* include resolution: util.cl includes mmd_shared.h, whose text must appear inline */
    char *src = NULL;
    CHECK(mmd_cl_source("util.cl", &src) == MMD_OK && src && strstr(src, "mmd_bvh8_node") &&
              !strstr(src, "\n#include \"mmd_shared.h\""),
          "util.cl source expanded");
    free(src);
    CHECK(mmd_cl_source("nope.cl", &src) == MMD_ERR_IO && strstr(mmd_last_error(), "nope.cl"),
          "missing kernel source: %s", mmd_last_error());

    mmd_cl *cl = NULL;
    st = mmd_cl_create(NULL, &cl);
    CHECK(st == MMD_OK, "create: %s", mmd_last_error());
    if (st != MMD_OK) return TEST_DONE();
    cl_program prog;
    st = mmd_cl_program(cl, "util.cl", "", &prog);
    CHECK(st == MMD_OK, "build util.cl: %s", mmd_last_error());
    CHECK(count_files(cache, ".clbin") == 1, "one cached binary after first build");
    cl_program again;
    CHECK(mmd_cl_program(cl, "util.cl", "", &again) == MMD_OK && again == prog, "in-memory program reuse");

    /* device struct sizes equal the host's */
    cl_kernel k;
    CHECK(mmd_cl_kernel(cl, prog, "mmd_struct_sizes", &k) == MMD_OK, "kernel");
    cl_mem buf;
    CHECK(mmd_cl_buffer(cl, CL_MEM_READ_WRITE, 32, NULL, "sizes", &buf) == MMD_OK, "buffer");
    clSetKernelArg(k, 0, sizeof buf, &buf);
    size_t g = 1;
    CHECK(clEnqueueNDRangeKernel(cl->queue, k, 1, NULL, &g, NULL, 0, NULL, NULL) == CL_SUCCESS, "enqueue");
    uint32_t sizes[8] = {0};
    clEnqueueReadBuffer(cl->queue, buf, CL_TRUE, 0, sizeof sizes, sizes, 0, NULL, NULL);
    CHECK(sizes[0] == sizeof(mmd_bvh8_node) && sizes[1] == sizeof(mmd_tri) && sizes[2] == sizeof(mmd_ray) &&
              sizes[3] == sizeof(mmd_hit) && sizes[4] == sizeof(mmd_gpu_material) &&
              sizes[5] == sizeof(mmd_prim_info) && sizes[6] == sizeof(mmd_gpu_pose) &&
              sizes[7] == sizeof(mmd_sim_params),
          "device struct sizes %u %u %u %u %u %u %u %u", sizes[0], sizes[1], sizes[2], sizes[3], sizes[4],
          sizes[5], sizes[6], sizes[7]);
    clReleaseMemObject(buf);
    clReleaseKernel(k);
    CHECK(mmd_cl_kernel(cl, prog, "no_such_kernel", &k) == MMD_ERR_CL && strstr(mmd_last_error(), "no_such_kernel"),
          "missing kernel name reported");
    mmd_cl_destroy(cl);

    /* a second context loads the binary from the cache (no new file), and produces a
     * working program */
    CHECK(mmd_cl_create(NULL, &cl) == MMD_OK, "create 2");
    double t0 = mmd_now();
    CHECK(mmd_cl_program(cl, "util.cl", "", &prog) == MMD_OK, "cached build");
    double t_cached = mmd_now() - t0;
    CHECK(count_files(cache, ".clbin") == 1, "still one cached binary");
    fprintf(stderr, "  cached program load: %.1f ms\n", 1e3 * t_cached);
    /* different options -> a different cache entry */
    CHECK(mmd_cl_program(cl, "util.cl", "-DMMD_TEST_OPTION=1", &prog) == MMD_OK, "build with options");
    CHECK(count_files(cache, ".clbin") == 2, "options are part of the cache key");
    mmd_cl_destroy(cl);

    /* kernel dir override with a broken kernel: build fails with the full log */
    char kdir[] = "/tmp/mmd_kdir_XXXXXX";
    CHECK(mkdtemp(kdir) != NULL, "mkdtemp");
    char path[1200];
    snprintf(path, sizeof path, "%s/util.cl", kdir);
    FILE *f = fopen(path, "w");
    fprintf(f, "#include \"mmd_shared.h\"\n__kernel void mmd_fill_u32(__global uint *d) { d[0] = undeclared_thing; }\n");
    fclose(f);
    setenv("MMDIFF_KERNEL_DIR", kdir, 1);
    setenv("MMDIFF_CACHE", "off", 1);
    CHECK(mmd_cl_create(NULL, &cl) == MMD_OK, "create 3");
    st = mmd_cl_program(cl, "util.cl", "", &prog);
    CHECK(st == MMD_ERR_BUILD && strstr(mmd_last_error(), "undeclared_thing") && strstr(mmd_last_error(), "util.cl"),
          "build failure carries the log: %.300s", mmd_last_error());
    mmd_cl_destroy(cl);
    unsetenv("MMDIFF_KERNEL_DIR");
    CHECK(count_files(cache, ".clbin") == 2, "MMDIFF_CACHE=off writes nothing");
    rm_dir(kdir);
    rm_dir(cache);
    return TEST_DONE();
}
