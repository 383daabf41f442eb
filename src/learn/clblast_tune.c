/*
 * Per-device CLBlast tuning for the MLP's GEMMs (mmd_mlp.h, docs/mlp.md).
 *
 * Why: CLBlast ships tuned parameters for many GPUs but has none for PoCL's CPU device,
 * where its defaults run our tall-skinny GEMMs (rows x 64 x 64, and the weight gradient
 * 64 x 64 x rows) at a few GFLOP/s. CLBlast's answer is to run its tuners on the device
 * and hand it the result through CLBlastOverrideParameters, which is what this file does
 * at start-up, from a table kept in the repository.
 *
 * Where the numbers come from: tools/clblast_tune.sh runs clblast_tuner_xgemm,
 * clblast_tuner_xgemm_direct (and the copy/transpose tuners) on our shapes, and
 * tools/clblast_tune_pick.sh turns their JSON into the lines below; the strategy line
 * (layout, padding, weight-gradient chunks) and the routine switch were then chosen by
 * timing the whole MLP step with `bench_mlp` (docs/mlp.md has the procedure and the
 * measurements). To add a device, run the script there and paste its output here.
 */
#include "mmd_mlp.h"

#include <clblast_c.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_KERNELS 8
#define MAX_PARAMS 24

typedef struct tune_entry {
    const char *device;   /* CL_DEVICE_NAME, exact */
    const char *family;   /* else: used for any device whose name contains this (NULL: exact only) */
    const char *measured; /* where, when, with what */
    const char *kernels[MAX_KERNELS]; /* "Kernel: NAME=VALUE ..." as CLBlastOverrideParameters takes them */
    const char *strategy; /* mmd_mlp_strategy, "hybrid=.. fq=.. oq=.. rq=.. chunks=.. batched=.." */
} tune_entry;

static const tune_entry k_table[] = {
    {
        "pthread-skylake-avx512-Intel(R) Xeon(R) Processor @ 2.50GHz",
        "pthread-",
        "PoCL 3.1 (LLVM 15), 2 cores, CLBlast 1.5.3; tools/clblast_tune.sh + bench_mlp",
        {
            "Xgemm: GEMMK=0 KREG=1 KWG=32 KWI=2 MDIMA=16 MDIMC=16 MWG=64 NDIMB=8 NDIMC=8 NWG=64 SA=0 SB=0 "
            "STRM=0 STRN=0 VWM=4 VWN=4",
            NULL,
        },
        "hybrid=0 fq=1 oq=1 rq=1 chunks=8 batched=0",
    },
};

/* ---- parsing ------------------------------------------------------------------------- */

/* "Kernel: A=1 B=2" -> kernel name and parallel arrays; returns the count or -1 */
static int parse_kernel_line(const char *line, char *kernel, size_t kcap, char names[][32], size_t *values)
{
    const char *colon = strchr(line, ':');
    if (!colon || (size_t)(colon - line) >= kcap) return -1;
    memcpy(kernel, line, (size_t)(colon - line));
    kernel[colon - line] = 0;
    int n = 0;
    const char *p = colon + 1;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        if (!*p) break;
        const char *eq = strchr(p, '=');
        if (!eq || eq - p >= 32 || n >= MAX_PARAMS) return -1;
        memcpy(names[n], p, (size_t)(eq - p));
        names[n][eq - p] = 0;
        char *end;
        values[n] = strtoul(eq + 1, &end, 10);
        if (end == eq + 1) return -1;
        n++;
        p = end;
    }
    return n;
}

static void parse_strategy(const char *s, mmd_mlp_strategy *st)
{
    const char *p = s;
    while (p && *p) {
        while (*p == ' ' || *p == ',') p++;
        if (!*p) break;
        char key[16];
        int k = 0;
        while (*p && *p != '=' && *p != ' ' && *p != ',' && k < 15) key[k++] = *p++;
        key[k] = 0;
        if (*p != '=') break;
        char *end;
        long v = strtol(p + 1, &end, 10);
        p = end;
        if (v < 0 || v > 4096) continue;
        if (!strcmp(key, "hybrid")) st->hybrid = v != 0;
        else if (!strcmp(key, "rowmajor")) st->rowmajor = v != 0;
        else if (!strcmp(key, "fq") && v >= 1) st->feature_quantum = (int)v;
        else if (!strcmp(key, "oq") && v >= 1) st->out_quantum = (int)v;
        else if (!strcmp(key, "rq") && v >= 1) st->row_quantum = (int)v;
        else if (!strcmp(key, "chunks") && v >= 1) st->dw_chunks = (int)v;
        else if (!strcmp(key, "batched")) st->batched = v != 0;
        else mmd_info("MMDIFF_MLP_STRATEGY: unknown or invalid key '%s' ignored", key);
    }
}

static const tune_entry *find_entry(const char *device_name, int *exact)
{
    size_t n = sizeof k_table / sizeof k_table[0];
    for (size_t i = 0; i < n; i++)
        if (!strcmp(k_table[i].device, device_name)) {
            *exact = 1;
            return &k_table[i];
        }
    for (size_t i = 0; i < n; i++)
        if (k_table[i].family && strstr(device_name, k_table[i].family)) {
            *exact = 0;
            return &k_table[i];
        }
    return NULL;
}

static int tuning_disabled(void)
{
    const char *e = getenv("MMDIFF_CLBLAST_TUNE");
    return e && (!strcmp(e, "off") || !strcmp(e, "0") || !strcmp(e, "no"));
}

/* ---- public ------------------------------------------------------------------------- */

void mmd_mlp_device_strategy(const mmd_cl *cl, mmd_mlp_strategy *out)
{
    /* Portable default: row-major, no padding, the weight gradient in 8 chunks (a single
     * 64 x 64 output tile would occupy one work-group of any device). */
    mmd_mlp_strategy s = {0, 0, 1, 1, 1, 8, 0};
    int exact = 0;
    const tune_entry *e = cl ? find_entry(cl->info.device_name, &exact) : NULL;
    if (e && !tuning_disabled()) parse_strategy(e->strategy, &s);
    const char *env = getenv("MMDIFF_MLP_STRATEGY");
    if (env && env[0]) parse_strategy(env, &s);
    *out = s;
}

/* One "Kernel: NAME=V ..." line through CLBlastOverrideParameters; 1 on success. */
static int apply_line(const mmd_cl *cl, const char *line)
{
    char kernel[32], names[MAX_PARAMS][32];
    size_t values[MAX_PARAMS];
    const char *ptrs[MAX_PARAMS];
    int n = parse_kernel_line(line, kernel, sizeof kernel, names, values);
    if (n <= 0) {
        mmd_info("CLBlast: malformed tuning line '%s' skipped", line);
        return 0;
    }
    for (int i = 0; i < n; i++) ptrs[i] = names[i];
    CLBlastStatusCode s =
        CLBlastOverrideParameters(cl->info.device, kernel, CLBlastPrecisionSingle, (size_t)n, ptrs, values);
    if (s != CLBlastSuccess) {
        mmd_info("CLBlast: overriding %s parameters failed (status %d: %s); keeping CLBlast's", kernel, (int)s,
                 s == CLBlastMissingOverrideParameter ? "every parameter of the kernel must be given"
                 : s == CLBlastInvalidOverrideKernel  ? "no such kernel"
                                                      : "see clblast_c.h");
        return 0;
    }
    return 1;
}

/* ---- per-device state: the lines in force, resolved per GEMM class ------------------- */

#define MAX_NAMES 8 /* distinct CLBlast kernels a device's lines set */
#define LINE_CAP 384
#define N_CLASSES 6 /* mmd_mlp_gemm_class */

static const char *const k_class_tags[N_CLASSES] = {"fwd", "dx", "dw", "ofwd", "odx", "odw"};

typedef struct dev_state {
    cl_device_id device;
    int n_names;
    char names[MAX_NAMES][32];
    /* per class, per kernel name: the line to apply ("" = none), base lines overridden by
     * the class's own; classes[N_CLASSES] holds the base lines alone */
    char lines[N_CLASSES + 1][MAX_NAMES][LINE_CAP];
    int current; /* class whose lines are in force (N_CLASSES = base) */
} dev_state;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static dev_state *g_states[16];
static int g_n_states;

static dev_state *find_state(cl_device_id d)
{
    for (int i = 0; i < g_n_states; i++)
        if (g_states[i]->device == d) return g_states[i];
    return NULL;
}

/* Add "[class ]Kernel: NAME=V ..." to the state; returns 0 on a malformed line. */
static int add_line(dev_state *ds, const char *line)
{
    while (*line == ' ') line++;
    int cls = N_CLASSES;
    for (int c = 0; c < N_CLASSES; c++) {
        size_t l = strlen(k_class_tags[c]);
        if (!strncmp(line, k_class_tags[c], l) && line[l] == ' ') {
            cls = c;
            line += l + 1;
            while (*line == ' ') line++;
        }
    }
    const char *colon = strchr(line, ':');
    if (!colon || colon == line || colon - line >= 32 || strlen(line) >= LINE_CAP) return 0;
    char name[32];
    memcpy(name, line, (size_t)(colon - line));
    name[colon - line] = 0;
    int k = 0;
    while (k < ds->n_names && strcmp(ds->names[k], name)) k++;
    if (k == ds->n_names) {
        if (k == MAX_NAMES) return 0;
        snprintf(ds->names[k], sizeof ds->names[k], "%s", name);
        ds->n_names++;
    }
    if (cls == N_CLASSES) /* a base line: every class that has no line of its own uses it */
        for (int c = 0; c <= N_CLASSES; c++) {
            if (c < N_CLASSES && ds->lines[c][k][0] && strcmp(ds->lines[c][k], ds->lines[N_CLASSES][k])) continue;
            snprintf(ds->lines[c][k], LINE_CAP, "%s", line);
        }
    else
        snprintf(ds->lines[cls][k], LINE_CAP, "%s", line);
    return 1;
}

/* Make class `to` (N_CLASSES = base) current: apply the lines that differ. */
static int switch_class(const mmd_cl *cl, dev_state *ds, int to)
{
    int applied = 0;
    for (int k = 0; k < ds->n_names; k++) {
        const char *want = ds->lines[to][k];
        if (!want[0]) continue;
        if (ds->current >= 0 && !strcmp(ds->lines[ds->current][k], want)) continue;
        applied += apply_line(cl, want);
    }
    ds->current = to;
    return applied;
}

/* ---- public ------------------------------------------------------------------------- */

int mmd_mlp_clblast_tune(mmd_cl *cl)
{
    if (!cl) return 0;
    pthread_mutex_lock(&g_lock);
    dev_state *ds = find_state(cl->info.device);
    if (ds) {
        pthread_mutex_unlock(&g_lock);
        return ds->n_names > 0;
    }
    ds = calloc(1, sizeof *ds);
    if (!ds || g_n_states == 16) {
        free(ds);
        pthread_mutex_unlock(&g_lock);
        return 0;
    }
    ds->device = cl->info.device;
    ds->current = -1;
    g_states[g_n_states++] = ds;
    int exact = 0;
    const tune_entry *e = find_entry(cl->info.device_name, &exact);
    if (tuning_disabled()) {
        mmd_info("CLBlast: tuned parameters disabled by MMDIFF_CLBLAST_TUNE, using CLBlast's defaults for %s",
                 cl->info.device_name);
        e = NULL;
    } else if (!e) {
        mmd_debug("CLBlast: no tuned parameters for %s in the repository; CLBlast's defaults apply",
                  cl->info.device_name);
    }
    for (int k = 0; e && k < MAX_KERNELS && e->kernels[k]; k++)
        if (!add_line(ds, e->kernels[k])) mmd_info("CLBlast: malformed tuning line '%s' skipped", e->kernels[k]);
    /* MMDIFF_CLBLAST_PARAMS: "[class ]Kernel: NAME=V ...; ..." on top of the table, for
     * trying candidates on the whole MLP step (tools/clblast_tune.sh) */
    const char *env = getenv("MMDIFF_CLBLAST_PARAMS");
    if (env && env[0]) {
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", env);
        char *save = NULL;
        for (char *line = strtok_r(buf, ";", &save); line; line = strtok_r(NULL, ";", &save))
            if (!add_line(ds, line)) mmd_info("MMDIFF_CLBLAST_PARAMS: malformed line '%s' skipped", line);
    }
    for (int k = 0; k < ds->n_names; k++)
        if (!ds->lines[N_CLASSES][k][0])
            mmd_info("CLBlast: %s has per-GEMM tuning lines but no common one; GEMMs of other classes may run "
                     "with another class's %s parameters (give a line without a class tag too)",
                     ds->names[k], ds->names[k]);
    int applied = switch_class(cl, ds, N_CLASSES);
    if (applied) {
        char list[256] = "";
        for (int k = 0; k < ds->n_names; k++) {
            int per_class = 0;
            for (int c = 0; c < N_CLASSES; c++) per_class |= strcmp(ds->lines[c][k], ds->lines[N_CLASSES][k]) != 0;
            if (strlen(list) + strlen(ds->names[k]) + 16 < sizeof list) {
                if (list[0]) strcat(list, ", ");
                strcat(list, ds->names[k]);
                if (per_class) strcat(list, " (per GEMM)");
            }
        }
        mmd_info("CLBlast: applied tuned parameters (%s) for %s%s%s%s", list, cl->info.device_name,
                 e && !exact ? ", tuned on " : "", e && !exact ? e->device : "",
                 env && env[0] ? ", with MMDIFF_CLBLAST_PARAMS" : "");
    }
    pthread_mutex_unlock(&g_lock);
    return applied > 0;
}

void mmd_mlp_clblast_use(mmd_cl *cl, mmd_mlp_gemm_class cls)
{
    if (!cl || (int)cls < 0 || (int)cls >= N_CLASSES) return;
    pthread_mutex_lock(&g_lock);
    dev_state *ds = find_state(cl->info.device);
    if (ds && ds->current != (int)cls) switch_class(cl, ds, (int)cls);
    pthread_mutex_unlock(&g_lock);
}
