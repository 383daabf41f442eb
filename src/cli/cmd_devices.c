/* `mmdiff devices`: the table of every OpenCL device, and which one `auto` picks. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "mmd_cl.h"

int mmd_cmd_devices(const mmd_cli_opts *o, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    mmd_cl_device_info *list;
    int n;
    if (mmd_cl_list_devices(&list, &n) != MMD_OK) return mmd_cli_fail();
    printf("%-6s | %-28s | %-44s | %-4s | %-18s | %-4s | %-10s | %s\n", "[P:D]", "platform", "device", "type",
           "OpenCL C", "fp64", "global mem", "max work-group");
    for (int i = 0; i < n; i++) {
        const mmd_cl_device_info *d = &list[i];
        const char *t = (d->type & CL_DEVICE_TYPE_GPU) ? "GPU" : (d->type & CL_DEVICE_TYPE_CPU) ? "CPU" : "ACC";
        char id[16];
        snprintf(id, sizeof id, "[%d:%d]", d->platform_index, d->device_index);
        printf("%-6s | %-28.28s | %-44.44s | %-4s | %-18.18s | %-4s | %7.1f GiB | %zu\n", id, d->platform_name,
               d->device_name, t, d->c_version, d->fp64 ? "yes" : "no",
               (double)d->global_mem / (1024.0 * 1024.0 * 1024.0), d->max_work_group);
    }
    mmd_cl_device_info sel;
    if (mmd_cl_select(o->device, &sel) == MMD_OK)
        printf("selected: [%d:%d] %s\n", sel.platform_index, sel.device_index, sel.device_name);
    else
        fprintf(stderr, "mmdiff: warning: %s\n", mmd_last_error());
    free(list);
    return 0;
}
