#!/bin/sh
# The README's first command ends here (after `make deps` and `make all`): run the shipped
# example. Today: device list, scene summary and BVH of the shipped conference room.
set -e
cd "$(dirname "$0")/.."
BIN=build/mmdiff
SCENE=scenes/nist_conference_room/scene.yaml
echo "== OpenCL devices"
$BIN devices
echo
echo "== scene: $SCENE"
$BIN info "$SCENE" --bvh
