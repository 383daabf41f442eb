/* The MPI layer (mmd_par.h). As one process (the normal build, or MPI=1 without mpirun):
 * one rank of one, every collective trivial. Under `mpirun -np P` (make test-mpi): the
 * sum adds the ranks in rank order (bit-identical to the serial sum of the same numbers),
 * shares partition the items, gather concatenates in rank order, and an agreement point
 * hands every rank the status and message of the lowest failing rank. */
#include "mmd_par.h"
#include "mmd_test.h"

int main(int argc, char **argv)
{
    CHECK(mmd_par_init(&argc, &argv) == MMD_OK, "init: %s", mmd_last_error());
    int rank = mmd_par_rank(), size = mmd_par_size();
    CHECK(size >= 1 && rank >= 0 && rank < size, "rank %d of %d", rank, size);
    CHECK(mmd_par_local_rank() >= 0 && mmd_par_local_rank() < mmd_par_local_size(), "local rank");
    CHECK(mmd_par_host()[0] != 0, "host name");

    /* shares: contiguous, disjoint, covering, sizes differ by at most one */
    for (size_t n = 0; n < 20; n++) {
        size_t lo, hi, mine[2];
        mmd_par_share(n, &lo, &hi);
        mine[0] = lo, mine[1] = hi;
        void *all = NULL;
        size_t *cnt = NULL;
        CHECK(mmd_par_gather(mine, sizeof mine, &all, &cnt) == MMD_OK, "gather shares");
        if (rank == 0 && all) {
            const size_t *s = all;
            int ok = s[0] == 0 && s[2 * (size - 1) + 1] == n;
            for (int r = 0; r < size; r++) {
                ok &= cnt[r] == sizeof mine && s[2 * r] <= s[2 * r + 1];
                if (r) ok &= s[2 * r] == s[2 * r - 1];
                size_t len = s[2 * r + 1] - s[2 * r];
                ok &= len == n / size || len == n / size + 1;
            }
            CHECK(ok, "shares of %zu items partition them", n);
        }
        free(all);
        free(cnt);
    }

    /* sum: each rank contributes values whose order of addition matters in floating point */
    double v[3] = {1e16 * (rank + 1), 1.0 + rank, -1e16 * (rank + 1)}, expect[3] = {0, 0, 0};
    for (int r = 0; r < size; r++) {
        double w[3] = {1e16 * (r + 1), 1.0 + r, -1e16 * (r + 1)};
        for (int k = 0; k < 3; k++) expect[k] += w[k];
    }
    CHECK(mmd_par_sum(v, 3) == MMD_OK, "sum: %s", mmd_last_error());
    CHECK(!memcmp(v, expect, sizeof v), "sum added in rank order: %.17g %.17g %.17g", v[0], v[1], v[2]);

    /* broadcast */
    int token = rank == 0 ? 4242 : -1;
    CHECK(mmd_par_bcast(&token, sizeof token, 0) == MMD_OK && token == 4242, "broadcast from rank 0");

    /* agreement: all fine, then the last rank fails with a message */
    CHECK(mmd_par_agree(MMD_OK) == MMD_OK, "agree: nobody failed");
    mmd_status mine = MMD_OK;
    if (rank == size - 1) mine = mmd_error(MMD_ERR_PARSE, "bad.yaml: line 3: expected a number");
    mmd_status got = mmd_par_agree(mine);
    CHECK(got == MMD_ERR_PARSE, "agree: every rank gets the failing rank's status (%d)", (int)got);
    CHECK(strstr(mmd_last_error(), "bad.yaml: line 3: expected a number") != NULL,
          "agree: every rank gets the failing rank's message: %s", mmd_last_error());
    printf("rank %d of %d on %s (MPI %s)\n", rank, size, mmd_par_host(), mmd_par_built_with_mpi() ? "on" : "off");
    int rc = TEST_DONE();
    mmd_par_finalize();
    return rc;
}
