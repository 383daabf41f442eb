/*
 * par.c - mmd_par.h: MPI behind a narrow interface, or one rank of one without it.
 */
#include "mmd_par.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef MMD_HAVE_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1, g_local_rank = 0, g_local_size = 1, g_started = 0;
static size_t g_bytes_summed, g_bytes_gathered; /* this rank's contributions (mmd_par_traffic) */

void mmd_par_traffic(size_t *summed, size_t *gathered)
{
    *summed = g_bytes_summed;
    *gathered = g_bytes_gathered;
}
#ifdef MMD_HAVE_MPI
static int g_mpi = 0; /* MPI_Init done by us */
#endif
static char g_host[256] = "";

int mmd_par_rank(void) { return g_rank; }
int mmd_par_size(void) { return g_size; }
int mmd_par_local_rank(void) { return g_local_rank; }
int mmd_par_local_size(void) { return g_local_size; }

int mmd_par_built_with_mpi(void)
{
#ifdef MMD_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

const char *mmd_par_host(void)
{
    if (!g_host[0] && gethostname(g_host, sizeof g_host - 1) != 0) strcpy(g_host, "unknown");
    return g_host;
}

void mmd_par_share(size_t n, size_t *lo, size_t *hi)
{
    size_t p = (size_t)g_size, r = (size_t)g_rank, base = n / p, extra = n % p;
    *lo = r * base + (r < extra ? r : extra);
    *hi = *lo + base + (r < extra ? 1 : 0);
}

#ifdef MMD_HAVE_MPI

static mmd_status mpi_fail(int rc, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return mmd_error(MMD_ERR_IO, "MPI: %s failed on rank %d: %s", what, g_rank, msg);
}

mmd_status mmd_par_init(int *argc, char ***argv)
{
    if (g_started) return MMD_OK;
    g_started = 1;
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        int rc = MPI_Init(argc, argv);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Init");
    }
    g_mpi = 1;
    /* errors come back as codes, so a failing rank can report instead of dying */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_rank(node, &g_local_rank);
        MPI_Comm_size(node, &g_local_size);
        MPI_Comm_free(&node);
    }
    return MMD_OK;
}

void mmd_par_finalize(void)
{
    int fin = 0;
    if (g_mpi && MPI_Finalized(&fin) == MPI_SUCCESS && !fin) MPI_Finalize();
    g_mpi = 0;
}

mmd_status mmd_par_sum(double *buf, size_t n)
{
    if (g_size == 1 || n == 0) return MMD_OK;
    g_bytes_summed += n * sizeof *buf;
    if (n > (size_t)(0x7fffffff / g_size))
        return mmd_error(MMD_ERR_INVALID, "MPI: sum of %zu values over %d ranks is too large", n, g_size);
    double *all = g_rank == 0 ? mmd_malloc(n * (size_t)g_size, sizeof *all, "MPI sum") : NULL;
    int bad = g_rank == 0 && !all;
    /* rank 0's allocation failure must not leave the others waiting in the gather */
    MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (bad) return mmd_error(MMD_ERR_NOMEM, "MPI: out of memory for the sum on rank 0");
    int rc = MPI_Gather(buf, (int)n, MPI_DOUBLE, all, (int)n, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) {
        free(all);
        return mpi_fail(rc, "MPI_Gather");
    }
    if (g_rank == 0)
        for (size_t i = 0; i < n; i++) {
            double s = 0;
            for (int r = 0; r < g_size; r++) s += all[(size_t)r * n + i];
            buf[i] = s;
        }
    free(all);
    rc = MPI_Bcast(buf, (int)n, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? MMD_OK : mpi_fail(rc, "MPI_Bcast");
}

mmd_status mmd_par_gather(const void *send, size_t n, void **out, size_t **counts)
{
    *out = NULL;
    if (counts) *counts = NULL;
    if (n > 0x7fffffff) return mmd_error(MMD_ERR_INVALID, "MPI: a gathered block of %zu bytes is too large", n);
    g_bytes_gathered += n;
    int mine = (int)n, *cnt = NULL, *disp = NULL;
    if (g_rank == 0) {
        cnt = mmd_malloc((size_t)g_size, sizeof *cnt, "MPI gather");
        disp = mmd_malloc((size_t)g_size, sizeof *disp, "MPI gather");
    }
    int rc = MPI_Gather(&mine, 1, MPI_INT, cnt, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) {
        free(cnt), free(disp);
        return mpi_fail(rc, "MPI_Gather");
    }
    char *buf = NULL;
    int bad = 0;
    if (g_rank == 0) {
        size_t total = 0;
        bad = !cnt || !disp;
        for (int r = 0; !bad && r < g_size; r++) {
            disp[r] = (int)total;
            total += (size_t)cnt[r];
            bad |= total > 0x7fffffff;
        }
        if (!bad) buf = malloc(total ? total : 1);
        bad |= !buf;
        if (!bad && counts) {
            *counts = malloc((size_t)g_size * sizeof **counts);
            bad |= !*counts;
            for (int r = 0; !bad && r < g_size; r++) (*counts)[r] = (size_t)cnt[r];
        }
    }
    MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (bad) {
        free(cnt), free(disp), free(buf);
        if (counts) free(*counts), *counts = NULL;
        return mmd_error(MMD_ERR_NOMEM, "MPI: rank 0 cannot hold the gathered blocks");
    }
    rc = MPI_Gatherv(send, mine, MPI_BYTE, buf, cnt, disp, MPI_BYTE, 0, MPI_COMM_WORLD);
    free(cnt), free(disp);
    if (rc != MPI_SUCCESS) {
        free(buf);
        if (counts) free(*counts), *counts = NULL;
        return mpi_fail(rc, "MPI_Gatherv");
    }
    *out = buf;
    return MMD_OK;
}

mmd_status mmd_par_bcast(void *buf, size_t n, int root)
{
    if (g_size == 1 || n == 0) return MMD_OK;
    if (n > 0x7fffffff) return mmd_error(MMD_ERR_INVALID, "MPI: a broadcast of %zu bytes is too large", n);
    int rc = MPI_Bcast(buf, (int)n, MPI_BYTE, root, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? MMD_OK : mpi_fail(rc, "MPI_Bcast");
}

mmd_status mmd_par_agree(mmd_status st)
{
    if (g_size == 1) return st;
    int mine = (int)st, *all = malloc((size_t)g_size * sizeof *all);
    if (!all) MPI_Abort(MPI_COMM_WORLD, 3); /* cannot even agree: stop everything */
    int rc = MPI_Allgather(&mine, 1, MPI_INT, all, 1, MPI_INT, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) {
        free(all);
        return mpi_fail(rc, "MPI_Allgather");
    }
    int first = -1;
    for (int r = 0; r < g_size && first < 0; r++)
        if (all[r] != MMD_OK) first = r;
    mmd_status out = first < 0 ? MMD_OK : (mmd_status)all[first];
    free(all);
    if (first < 0) return MMD_OK;
    char msg[1024];
    memset(msg, 0, sizeof msg);
    if (g_rank == first) snprintf(msg, sizeof msg, "%s", mmd_last_error());
    MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, first, MPI_COMM_WORLD);
    msg[sizeof msg - 1] = 0;
    if (g_rank == first)
        mmd_error(out, "%s", msg);
    else
        mmd_error(out, "rank %d: %s", first, msg);
    return out;
}

void mmd_par_abort(int code)
{
    if (g_mpi && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

#else /* one rank of one */

mmd_status mmd_par_init(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    g_started = 1;
    return MMD_OK;
}
void mmd_par_finalize(void) {}
mmd_status mmd_par_sum(double *buf, size_t n)
{
    (void)buf, (void)n;
    return MMD_OK;
}
mmd_status mmd_par_gather(const void *send, size_t n, void **out, size_t **counts)
{
    *out = malloc(n ? n : 1);
    if (counts) *counts = malloc(sizeof **counts);
    if (!*out || (counts && !*counts)) {
        free(*out), *out = NULL;
        if (counts) free(*counts), *counts = NULL;
        return mmd_error(MMD_ERR_NOMEM, "out of memory gathering %zu bytes", n);
    }
    if (n) memcpy(*out, send, n);
    if (counts) (*counts)[0] = n;
    return MMD_OK;
}
mmd_status mmd_par_bcast(void *buf, size_t n, int root)
{
    (void)buf, (void)n, (void)root;
    return MMD_OK;
}
mmd_status mmd_par_agree(mmd_status st) { return st; }
void mmd_par_abort(int code) { exit(code); }

#endif
