#!/bin/sh
# The README's first command ends here (after `make deps`-style package installation and
# `make all`): the robustness protocol at demo size on the shipped NIST conference room
# (docs/protocol.md). Ground truth on the clean mesh, then the specular baseline and the
# directional model (before and after calibration) on a simulated noisy scan, scored on the
# calibration trajectory and on unseen poses. About 6 minutes on 2 CPU cores (PoCL).
#
#   sh tools/demo.sh                      # writes runs/demo
#   MMDIFF_DEMO_OUT=/tmp/d sh tools/demo.sh
set -e
cd "$(dirname "$0")/.."
BIN=build/mmdiff
EXP=scenes/examples/conference_room_protocol.yaml
OUT=${MMDIFF_DEMO_OUT:-runs/demo}
# compiled kernels are cached next to the build, so a second demo skips the OpenCL compile
export MMDIFF_CACHE_DIR="${MMDIFF_CACHE_DIR:-$(pwd)/build/clcache}"
echo "== OpenCL devices"
$BIN devices
echo
echo "== mmdiff protocol $EXP -o $OUT"
start=$(date +%s)
$BIN protocol "$EXP" -o "$OUT"
end=$(date +%s)
echo
echo "== done in $((end - start)) s; the table is $OUT/metrics.md, the figures:"
ls -1 "$OUT"/figures/*.png
