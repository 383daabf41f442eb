#!/bin/sh
# The robustness protocol at a size whose numbers mean something (docs/protocol.md):
#
#   sh tools/protocol_large.sh            400 TRAJ / 200 RAND poses: about an hour on 2 CPU
#                                         cores (PoCL), minutes on a GPU
#   sh tools/protocol_large.sh --paper    the paper's 2800 TRAJ / 500 RAND poses (the only change;
#                                         several hours on a CPU: use a GPU)
#   OUT=runs/x sh tools/protocol_large.sh [--paper] [--set KEY=VALUE ...]
#
# It is the demo's experiment (scenes/examples/conference_room_protocol.yaml) with more
# poses: everything else (rays, grid, noise, materials, epochs) is the demo's, so the two
# runs differ only in what is listed here; extra --set arguments are passed on (e.g.
# --set solver.rays=200000 --set 'aoa.azimuth_deg=[-90, 90, 1]' for finer spectra, about 4x
# the time). The run directory's experiment.resolved.yaml records every value. Also
# `make paper` (= --paper).
set -e
cd "$(dirname "$0")/.."
BIN=${MMDIFF_BIN:-build/mmdiff}
EXP=scenes/examples/conference_room_protocol.yaml
TRAJ=400
RAND=200
NAME=large
if [ "$1" = "--paper" ]; then
    TRAJ=2800
    RAND=500
    NAME=paper
    shift
fi
OUT=${OUT:-runs/protocol_$NAME}
export MMDIFF_CACHE_DIR="${MMDIFF_CACHE_DIR:-$(pwd)/build/clcache}"
[ -n "$MMDIFF_BIN" ] || [ -x "$BIN" ] || make all
echo "== mmdiff protocol: $TRAJ TRAJ / $RAND RAND poses -> $OUT"
start=$(date +%s)
$BIN protocol "$EXP" -o "$OUT" \
    --set dataset.traj_poses=$TRAJ --set dataset.rand_poses=$RAND \
    --set solver.cache_mb=8192 \
    --set protocol.figure_poses=4 \
    "$@"
end=$(date +%s)
echo "== done in $((end - start)) s: $OUT/metrics.md"
