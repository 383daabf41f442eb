#!/bin/sh
# `make test-mpi`, CLI part (issue 7): the MPI build's simulate, dataset and coverage under
# `mpirun -np 2` against one process of the same binary: byte-identical spectra and
# measurement files, the same coverage map, calibration learning the same materials; a
# rank that fails ends the job with its message, a non-zero exit and no output directory;
# commands not yet spread across ranks refuse cleanly. Usage: test/mpi_cli.sh BUILD_DIR (build-mpi).
set -u
B=${1:-build-mpi}/mmdiff
MPIRUN="mpirun -np 2 --oversubscribe"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
T=$(mktemp -d /tmp/mmd_mpi_cli_XXXXXX)
EXP=scenes/examples/conference_room_aoa.yaml
COV=scenes/examples/conference_room_coverage.yaml
pass=0 fail=0
check() { if [ "$1" = 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL test/mpi_cli.sh: $2"; fi; }

S="--set solver.rays=5000 --set output.png=false"
$B simulate $EXP $S -o $T/s1 >/dev/null 2>&1
$MPIRUN $B simulate $EXP $S -o $T/s2 >/dev/null 2>&1
check $? "simulate under mpirun exits 0"
cmp -s $T/s1/spectra.npy $T/s2/spectra.npy
check $? "simulate: spectra.npy of 2 ranks = one process, byte for byte"

D="--set dataset.traj_poses=6 --set dataset.rand_poses=5 --set solver.rays=4000 --set dataset.measurement_noise_db=1"
$B dataset $EXP $D -o $T/d1 >/dev/null 2>&1
$MPIRUN $B dataset $EXP $D -o $T/d2 >/dev/null 2>&1
check $? "dataset under mpirun exits 0"
for f in TRAJ/spectra.npy TRAJ/poses.csv RAND/spectra.npy RAND/poses.csv; do
    cmp -s $T/d1/$f $T/d2/$f
    check $? "dataset: $f of 2 ranks = one process, byte for byte"
done

C="--set coverage.rays=100001 --set output.png=false"
$B coverage $COV $C -o $T/c1 >/dev/null 2>&1
$MPIRUN $B coverage $COV $C -o $T/c2 >/dev/null 2>&1
check $? "coverage under mpirun exits 0"
cmp -s $T/c1/path_gain_db.npy $T/c2/path_gain_db.npy
check $? "coverage: the map of 2 ranks = one process (float32 dB, byte for byte here)"

# rank 1 cannot get its device: one message, naming the rank; non-zero exit; nothing written
out=$(mpirun -np 1 $B simulate $EXP $S -o $T/bad : -np 1 $B --device nosuchdevice simulate $EXP $S -o $T/bad 2>&1)
rc=$?
[ $rc -ne 0 ] && echo "$out" | grep -q "error: rank 1: no OpenCL device matches 'nosuchdevice'"
check $? "a failing rank ends the job with its message (rc $rc)"
[ ! -e $T/bad ]
check $? "a failing rank: no output directory"
out=$($MPIRUN $B --device cpu:local simulate $EXP $S -o $T/local 2>&1)
[ $? = 0 ] && [ $(echo "$out" | grep -c "rank [01] of 2 on .*: device") = 2 ]
check $? "--device cpu:local: every rank opens its node-local device and logs host and device"
gl=$($B --device gpu:local simulate $EXP $S -o $T/gl 2>&1)
rc=$?
if $B devices 2>/dev/null | grep -q "GPU"; then
    [ $rc = 0 ]
    check $? "--device gpu:local picks this node's GPU"
else
    [ $rc != 0 ] && echo "$gl" | grep -q "error: --device gpu:local: this node has no GPU device"
    check $? "--device gpu:local without a GPU: one clear error"
fi
# calibration: each rank takes its share of every batch; the learned materials of 2 ranks
# equal one process's (1e-6 relative)
$B simulate $EXP --set solver.rays=6000 --set output.png=false --set output.measurements=true -o $T/truth >/dev/null 2>&1
K="--set train.measurements=$T/truth/measurements --set train.model=per_object --set train.epochs=3
   --set train.batch_poses=3 --set train.val_fraction=0 --set solver.rays=3000
   --set scene.materials.concrete.itu=plasterboard"
$B calibrate $EXP $K -o $T/k1 >/dev/null 2>&1
$MPIRUN $B calibrate $EXP $K -o $T/k2 >/dev/null 2>&1
check $? "calibrate under mpirun exits 0"
[ -f $T/k1/model/materials.yaml ] && [ -f $T/k2/model/materials.yaml ] &&
    paste -d' ' $T/k1/model/materials.yaml $T/k2/model/materials.yaml >/dev/null &&
    awk 'NR == FNR { for (i = 1; i <= NF; i++) if ($i + 0 == $i && $i != "") a[n++] = $i + 0; next }
         { for (i = 1; i <= NF; i++) if ($i + 0 == $i && $i != "") b[m++] = $i + 0 }
         END { if (n != m || n == 0) exit 1
               for (k = 0; k < n; k++) { d = a[k] - b[k]; if (d < 0) d = -d; s = a[k] < 0 ? -a[k] : a[k]
                                          if (d > 1e-6 * s + 1e-12) exit 1 } }' \
        $T/k1/model/materials.yaml $T/k2/model/materials.yaml
check $? "calibrate: 2 ranks learn one process's materials (1e-6 relative)"
# the neural field: its weights after training on 2 ranks = one process's (the MLP's
# gradients leave the device, are summed in rank order and go back)
$B calibrate $EXP $K --set train.model=neural --set train.epochs=2 -o $T/n1 >/dev/null 2>&1
$MPIRUN $B calibrate $EXP $K --set train.model=neural --set train.epochs=2 -o $T/n2 >/dev/null 2>&1
check $? "neural calibrate under mpirun exits 0"
same=0
for f in $T/n1/model/layer*.npy; do
    [ -f $T/n2/model/$(basename $f) ] && cmp -s $f $T/n2/model/$(basename $f) || same=1
done
[ -f $T/n1/model/layer0_weight.npy ] && [ $same = 0 ]
check $? "neural calibrate: 2 ranks learn one process's weights (byte for byte here)"
out=$($MPIRUN $B calibrate $EXP $K --set solver.mode=specular -o $T/k3 2>&1)
[ $? != 0 ] && echo "$out" | grep -q "the specular baseline is not split over ranks"
check $? "calibrate: the specular baseline refuses more than one rank cleanly"
out=$($MPIRUN $B evaluate $EXP 2>&1)
echo "$out" | grep -q "does not run across MPI ranks yet"
check $? "a command not spread across ranks refuses more than one rank cleanly"

rm -rf $T
echo "mpi_cli.sh: $pass passed, $fail failed"
[ $fail = 0 ]
