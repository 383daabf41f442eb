/*
 * mmd_par.h - the one door to MPI (issue 7): rank, size, a deterministic sum, gather,
 * broadcast, agreement on failure, abort. Nothing else in mmdiff includes mpi.h.
 *
 * Built with `make MPI=1` (Open MPI's mpicc, MMD_HAVE_MPI) this wraps MPI; otherwise, or
 * when the program was not started by mpirun, it is one rank of one and every call is
 * trivial, so single-process behaviour is unchanged.
 *
 * Determinism: mmd_par_sum adds the ranks' vectors in rank order, in double precision,
 * on rank 0 and broadcasts the result, so a sum never depends on message timing or on
 * the reduction tree MPI would choose.
 *
 * Failure: a rank that fails keeps its message (mmd_error) and goes on to the next
 * agreement point; mmd_par_agree(st) there returns the lowest failing rank's status on
 * every rank, with that rank's message as mmd_last_error(), so the job ends cleanly with
 * the message of the rank that failed.
 *
 * Example (data-parallel loop over poses):
 *     mmd_par_init(&argc, &argv);
 *     size_t lo, hi;
 *     mmd_par_share(n_poses, &lo, &hi);          // this rank's contiguous share
 *     mmd_status st = work(poses + lo, hi - lo, grad);
 *     st = mmd_par_agree(st);                    // every rank: same status, same message
 *     if (st == MMD_OK) st = mmd_par_sum(grad, n_params);
 *     mmd_par_finalize();
 */
#ifndef MMD_PAR_H
#define MMD_PAR_H

#include "mmd_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Start (MPI_Init when built with MPI); safe to call more than once. */
mmd_status mmd_par_init(int *argc, char ***argv);
void mmd_par_finalize(void);

int mmd_par_rank(void);
int mmd_par_size(void);
/* Rank and number of ranks on this node (device selection "gpu:local"). */
int mmd_par_local_rank(void);
int mmd_par_local_size(void);
/* This node's host name. */
const char *mmd_par_host(void);
/* 1 when built with MPI. */
int mmd_par_built_with_mpi(void);

/* This rank's contiguous share [*lo, *hi) of n items (earlier ranks take the remainder). */
void mmd_par_share(size_t n, size_t *lo, size_t *hi);

/* buf (n doubles, every rank) <- the sum over ranks, added in rank order. */
mmd_status mmd_par_sum(double *buf, size_t n);

/* Rank 0 receives every rank's block in rank order: *out (malloc'ed, rank 0 only; NULL
 * elsewhere) holds the concatenation, counts[r] (malloc'ed, rank 0 only) the bytes of
 * rank r. */
mmd_status mmd_par_gather(const void *send, size_t n, void **out, size_t **counts);

/* n bytes from rank `root` to every rank. */
mmd_status mmd_par_bcast(void *buf, size_t n, int root);

/* Collective: every rank passes its status; returns the lowest failing rank's status on
 * every rank (MMD_OK when none failed) and sets that rank's message everywhere. */
mmd_status mmd_par_agree(mmd_status st);

/* Bytes this rank has put into mmd_par_sum and mmd_par_gather so far (single process: 0). */
void mmd_par_traffic(size_t *summed, size_t *gathered);

/* End every rank now (a fatal error outside an agreement point). */
void mmd_par_abort(int code);

#ifdef __cplusplus
}
#endif
#endif
