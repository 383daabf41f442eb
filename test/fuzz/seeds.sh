#!/bin/sh
# Seed corpora for the fuzz harnesses: seeds.sh OUT MAKE_SEEDS. Copies of the shared data
# ($MMD_SHARED, default ../shared) and of the repository's own scenes and examples, with
# the file names a document refers to rewritten to the names the harness provides
# (mesh.ply), plus what make_seeds writes with the library's writers. Cheap enough to
# redo on every run, so the seeds follow the shared data and the formats.
set -eu
out=$1; make_seeds=$2
shared=${MMD_SHARED:-../shared}
sep='@@@@'
for h in fuzz_ply fuzz_mitsuba fuzz_scene_yaml fuzz_yaml_tree fuzz_experiment fuzz_npy fuzz_poses_csv \
         fuzz_measurements fuzz_nerf2_png fuzz_nerf2_dir fuzz_checkpoint fuzz_mlp_model; do
    mkdir -p "$out/$h"
done
"$make_seeds" "$out"
small_ply=scenes/nist_conference_room/meshes/$(ls scenes/nist_conference_room/meshes | head -n 1)
# PLY: every mesh under 64 kB (the fuzzer mutates small inputs far faster)
find "$shared/scenes" scenes -name '*.ply' -size -64k 2>/dev/null | head -n 40 | while read -r f; do
    cp "$f" "$out/fuzz_ply/$(echo "$f" | tr '/' '_')"
done
# Mitsuba XML + FUZZ_SEP + a mesh; every filename becomes mesh.ply
if [ -d "$shared/scenes/sionna" ]; then
    for f in $(find "$shared"/scenes/sionna -name '*.xml' -size -64k); do
        { sed 's/name="filename" value="[^"]*"/name="filename" value="mesh.ply"/' "$f"
          printf '\n%s\n' "$sep"; cat "$small_ply"; } >"$out/fuzz_mitsuba/$(basename "$f")"
        cp "$f" "$out/fuzz_yaml_tree/$(basename "$f").notyaml"
    done
fi
# scene YAML + FUZZ_SEP + a mesh; every file: becomes mesh.ply
for f in "$shared"/scenes/indoor/*/scene.yaml scenes/*/scene.yaml; do
    [ -f "$f" ] || continue
    name=$(basename "$(dirname "$f")").yaml
    { sed 's/file: *[^,}]*/file: mesh.ply/' "$f"; printf '\n%s\n' "$sep"; cat "$small_ply"; } >"$out/fuzz_scene_yaml/$name"
    cp "$f" "$out/fuzz_yaml_tree/$name"
done
# experiments: the shipped examples, one with overrides
for f in scenes/examples/*.yaml; do
    cp "$f" "$out/fuzz_experiment/$(basename "$f")"
    cp "$f" "$out/fuzz_yaml_tree/$(basename "$f")"
done
{ cat scenes/examples/conference_room_aoa.yaml
  printf '#set solver.rays=1000\n#set tx.position_m=[1, 2, 1.5]\n#set rx.poses[1].yaw_deg=45\n'
  printf '#set scene.materials.wood.itu=wood\n#set train.hidden=[32, 32]\n'; } >"$out/fuzz_experiment/with_sets.yaml"
# NeRF²: the PNGs, the text files, and small directories made of them
nerf=$shared/measurements/nerf2_rfid_s23_subset
if [ -d "$nerf" ]; then
    for f in "$nerf"/spectrum/0000[1-5].png; do cp "$f" "$out/fuzz_nerf2_png/"; done
    cp "$nerf/tx_pos.csv" "$out/fuzz_poses_csv/nerf2_tx_pos.csv"
    cp "$nerf/gateway_info.yml" "$out/fuzz_yaml_tree/gateway_info.yml"
    { cat "$nerf/gateway_info.yml"; printf '\n%s\n' "$sep"; head -n 4 "$nerf/tx_pos.csv"
      printf '\n%s\n00002\n00001\n%s\n00003\n' "$sep" "$sep"; } >"$out/fuzz_nerf2_dir/split"
    { cat "$nerf/gateway_info.yml"; printf '\n%s\n' "$sep"; head -n 3 "$nerf/tx_pos.csv"
      printf '\n%s\n-\n%s\n-\n' "$sep" "$sep"; } >"$out/fuzz_nerf2_dir/no_index"
fi
printf 'x_m,y_m,z_m,yaw_deg,pitch_deg,roll_deg\n# comment\n1,2,3,4,5,6\n\r\n"7", 8 ,9,0,0,0\r\n' \
    >"$out/fuzz_poses_csv/quoted.csv"
printf '\357\273\277roll_deg,z_m,x_m,y_m,extra\n1,2,3,4,x\n' >"$out/fuzz_poses_csv/bom_reordered.csv"
