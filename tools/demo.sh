#!/bin/sh
# The README's first command ends here (after installing packages and `make all`): run
# the shipped example experiment on the shipped NIST conference room and show where the
# results are. Today that is the AoA forward model (mmdiff simulate); calibration and the
# metrics table of the robustness protocol are added by later work (see the issues).
set -e
cd "$(dirname "$0")/.."
BIN=build/mmdiff
EXP=scenes/examples/conference_room_aoa.yaml
OUT=${MMDIFF_DEMO_OUT:-runs/demo}
echo "== OpenCL devices"
$BIN devices
echo
echo "== scene"
$BIN info scenes/nist_conference_room/scene.yaml --bvh
echo
echo "== mmdiff simulate $EXP -o $OUT"
$BIN simulate "$EXP" -o "$OUT"
echo
echo "== results"
ls -1 "$OUT"/spectra.npy "$OUT"/result.json "$OUT"/experiment.resolved.yaml "$OUT"/png/*.png
