#!/bin/sh
# MPI figures of issue 7 (needs `make MPI=1`), on the shipped conference room:
#   BENCH mpi_dataset_speedup_2 <t1 / t2> x       dataset simulation, 1 vs 2 ranks, each
#                                                 rank's PoCL limited to one core
#   BENCH mpi_allreduce_bytes_per_step <B> B      bytes each rank sums per calibration step
#   BENCH mpi_gather_bytes_per_step <B> B         and gathers (the power-scale fit's ratios)
# Usage: tools/bench_mpi.sh [TRAJ_POSES (default 24)]
set -eu
cd "$(dirname "$0")/.."
B=build-mpi/mmdiff
[ -x $B ] || { echo "bench_mpi: build it first: make MPI=1" >&2; exit 1; }
N=${1:-24}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 POCL_MAX_PTHREAD_COUNT=1
export MMDIFF_CACHE_DIR=${MMDIFF_CACHE_DIR:-$PWD/build-mpi/clcache}
T=$(mktemp -d /tmp/mmd_bench_mpi_XXXXXX)
EXP=scenes/examples/conference_room_aoa.yaml
S="--set dataset.traj_poses=$N --set dataset.rand_poses=0 --set solver.rays=100000"
$B dataset $EXP $S -o $T/warm >/dev/null 2>&1 # compile the kernels into the cache first
now() { date +%s.%N; }
t0=$(now); $B dataset $EXP $S -o $T/one >/dev/null 2>&1; t1=$(now)
mpirun -np 2 --oversubscribe -x POCL_MAX_PTHREAD_COUNT -x MMDIFF_CACHE_DIR $B dataset $EXP $S -o $T/two >/dev/null 2>&1
t2=$(now)
cmp -s $T/one/TRAJ/spectra.npy $T/two/TRAJ/spectra.npy || { echo "bench_mpi: outputs differ" >&2; exit 1; }
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) hardware threads"
awk -v a="$t0" -v b="$t1" -v c="$t2" -v n="$N" 'BEGIN {
    printf "dataset, %d poses x 100k rays, one PoCL core per rank: 1 rank %.2f s, 2 ranks %.2f s\n", n, b - a, c - b
    printf "BENCH mpi_dataset_speedup_2 %.3f x\n", (b - a) / (c - b) }'
# a short per-object calibration on 2 ranks: the traffic per step from its log
$B simulate $EXP --set solver.rays=20000 --set output.png=false --set output.measurements=true -o $T/truth >/dev/null 2>&1
line=$(mpirun -np 2 --oversubscribe -x POCL_MAX_PTHREAD_COUNT -x MMDIFF_CACHE_DIR $B calibrate $EXP \
    --set train.measurements=$T/truth/measurements --set train.model=per_object --set train.epochs=2 \
    --set train.batch_poses=3 --set train.val_fraction=0 --set solver.rays=20000 -o $T/cal 2>&1 | grep "MPI: ")
echo "$line" | awk '{ for (i = 1; i <= NF; i++) { if ($i == "summed") s = $(i - 2); if ($i == "gathered") g = $(i - 2) } }
    END { printf "BENCH mpi_allreduce_bytes_per_step %s B\nBENCH mpi_gather_bytes_per_step %s B\n", s, g }'
rm -rf $T
