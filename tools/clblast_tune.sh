#!/bin/sh
# clblast_tune.sh - tune CLBlast for the MLP's GEMMs on this machine's OpenCL device and
# print a table entry for src/learn/clblast_tune.c (procedure and rationale: docs/mlp.md).
#
#   tools/clblast_tune.sh tuners  DIR          run CLBlast's tuners on our shapes; JSON in DIR
#   tools/clblast_tune.sh pick    DIR [K]      the K (default 4) fastest parameter sets of each
#                                              tuner run, as tuning lines
#   tools/clblast_tune.sh sweep   [ROWS [full]] time the forward GEMM (row-major ROWS x 64 x
#                                              64, default 16384) for GEMMK=1 Xgemm parameter
#                                              sets of CLBlast's own GEMMK=1 search space
#                                              (a subset unless "full"), fastest last
#   tools/clblast_tune.sh compare FILE [ROUNDS] time the whole MLP step for every candidate
#                                              of FILE, ROUNDS (default 3) alternating rounds
#
# Needs: clblast-utils (the tuners), a built tree (make), cc. Every run uses the default
# OpenCL device ($MMDIFF_DEVICE selects another one).
#
# The tuners time one GEMM kernel on a fixed shape, by wall clock. They shortlist; the pick
# is made on the whole training step (forward + backward of the default 39-64-64-64-64-4
# net at 65536 rows, tools/clblast_tune_step.c), because what matters is the sum of all
# GEMMs with their CLBlast-internal copies and our own kernels, and by process CPU time,
# which on a machine shared with other work is far steadier than wall time.
#
# Candidate file (for compare): one candidate per line, "name|params|strategy", where
# params is MMDIFF_CLBLAST_PARAMS ("[class ]Kernel: NAME=V ...; ...", classes fwd dx dw
# ofwd odx odw) and strategy is MMDIFF_MLP_STRATEGY ("rowmajor=1,fq=32,..."); '#' starts a
# comment. Shapes tuned, in CLBlast's m x n x k (see docs/mlp.md for why these):
#   rows x 128 x 64   forward / input-gradient kernel (the tuner needs n % 128 == 0;
#                     our n is 64): all four tuner stages, incl. the GEMMK=1 kernel
#   64 x 64 x 8192    weight gradient, one row chunk (stage 1 only: the later stages
#                     need m, n % 128 == 0 and stop there with an error)
set -u

here=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-}
[ -n "$cmd" ] || { sed -n '2,16p' "$0"; exit 2; }
shift

tuner() { # DIR NAME TUNER ARGS...
    d=$1/$2
    t=$3
    shift 3
    mkdir -p "$d"
    echo "== $t $* -> $d"
    (cd "$d" && "$t" "$@" -precision 32 > log.txt 2>&1)
    echo "   exit $? ($(ls "$d"/*.json 2>/dev/null | wc -l) JSON files)"
}

build_step() {
    bin=$here/build/clblast_tune_step
    [ -f "$here/build/libmmdiff.a" ] || { echo "build first (make)"; exit 1; }
    cflags=$(pkg-config --cflags OpenCL yaml-0.1 2>/dev/null)
    libs=$(pkg-config --libs OpenCL yaml-0.1 clblast 2>/dev/null || echo "-lOpenCL -lyaml -lclblast")
    cc -std=c11 -O2 -D_GNU_SOURCE -I"$here/include" $cflags -o "$bin" "$here/tools/clblast_tune_step.c" \
        "$here/build/libmmdiff.a" $libs -lm -lpthread || exit 1
}

case $cmd in
tuners)
    out=${1:?usage: $0 tuners DIR}
    mkdir -p "$out"
    out=$(cd "$out" && pwd)
    command -v clblast_tuner_xgemm > /dev/null || { echo "clblast_tuner_xgemm not found (apt-get install clblast-utils)"; exit 1; }
    tuner "$out" fwd clblast_tuner_xgemm -m 4096 -n 128 -k 64 -runs 2 -fraction 2048
    tuner "$out" dw clblast_tuner_xgemm -m 64 -n 64 -k 8192 -runs 3
    tuner "$out" direct clblast_tuner_xgemm_direct -m 16384 -n 64 -k 64 -runs 2 -fraction 64
    # the copy/transpose kernels CLBlast runs around Xgemm when operands need reshaping
    # (the 1.5.3 transpose tuners crash on non-square sizes, hence the defaults)
    tuner "$out" transpose clblast_tuner_transpose_fast -runs 2
    tuner "$out" padtranspose clblast_tuner_transpose_pad -runs 2
    tuner "$out" copy clblast_tuner_copy_fast -runs 2
    tuner "$out" pad clblast_tuner_copy_pad -runs 2
    ;;
pick)
    out=${1:?usage: $0 pick DIR [K]}
    k=${2:-4}
    for f in "$out"/*/*.json; do
        [ -f "$f" ] || continue
        # results[]: {"kernel": ..., "time": T, "parameters": {...}} one per line group;
        # print "T Kernel: NAME=V ..." (PRECISION dropped), fastest first
        awk -v file="$f" '
            /"kernel":/ { gsub(/[",]/, "", $2); kern = $2 }
            /"time":/ { gsub(/,/, "", $2); t = $2 }
            /"parameters":/ {
                line = $0; sub(/.*\{/, "", line); sub(/\}.*/, "", line)
                gsub(/"/, "", line); gsub(/: /, "=", line); gsub(/,/, " ", line)
                n = split(line, kv, " "); s = ""
                for (i = 1; i <= n; i++) if (kv[i] !~ /^PRECISION=/) s = s " " kv[i]
                # kernel function -> the name CLBlastOverrideParameters takes
                name = kern; sub(/^XgemmDirect.*/, "XgemmDirect", name)
                if (kern == "CopyMatrixFast") name = "Copy"
                if (kern == "CopyPadMatrix") name = "Pad"
                if (kern == "TransposeMatrixFast") name = "Transpose"
                if (kern == "TransposePadMatrix") name = "Padtranspose"
                print t, name ":" s
            }' "$f" | sort -n | head -n "$k" | while read -r t line; do
            echo "$(basename "$(dirname "$f")") $t ms: $line"
        done
    done
    ;;
compare)
    file=${1:?usage: $0 compare FILE [ROUNDS]}
    rounds=${2:-3}
    rows=${MMD_TUNE_ROWS:-65536}
    build_step
    tmp=$(mktemp -d)
    r=1
    while [ "$r" -le "$rounds" ]; do
        grep -v '^[[:space:]]*#' "$file" | grep -v '^[[:space:]]*$' | while IFS='|' read -r name params strategy; do
            line=$(MMDIFF_LOG=0 MMDIFF_CLBLAST_TUNE=off MMDIFF_CLBLAST_PARAMS="$params" \
                   MMDIFF_MLP_STRATEGY="$strategy" "$bin" "$rows" 5 2>&1 | tail -n 1)
            echo "round $r $name: $line"
            echo "$line" | awk '/cpu_ms/ {print $6, $4}' >> "$tmp/$name"
        done
        r=$((r + 1))
    done
    echo
    echo "median over rounds (CPU ms per step, wall ms), fastest first:"
    for f in "$tmp"/*; do
        n=$(wc -l < "$f")
        [ "$n" -gt 0 ] || continue
        cpu=$(awk '{print $1}' "$f" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
        wall=$(awk '{print $2}' "$f" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
        echo "$cpu $wall $(basename "$f")"
    done | sort -n | awk '{printf "  %-24s cpu %8.1f ms  wall %8.1f ms\n", $3, $1, $2}'
    best=$(for f in "$tmp"/*; do awk '{print $1}' "$f" | sort -n | awk -v n="$(basename "$f")" '{a[NR]=$1} END {print a[int((NR+1)/2)], n}'; done | sort -n | head -n 1 | awk '{print $2}')
    echo
    echo "table entry for src/learn/clblast_tune.c (device: $(MMDIFF_LOG=1 "$bin" 64 1 2>&1 | sed -n 's/.*device \[[0-9:]*\] \([^|]*\) |.*/\1/p' | sed 's/ *$//')):"
    grep -v '^[[:space:]]*#' "$file" | while IFS='|' read -r name params strategy; do
        [ "$name" = "$best" ] || continue
        echo "$params" | tr ';' '\n' | sed 's/^ *//; s/^/    "/; s/$/",/'
        echo "    strategy \"$(echo "$strategy" | tr ',' ' ')\""
    done
    rm -rf "$tmp"
    ;;
sweep)
    # CLBlast 1.5.3's clblast_tuner_xgemm reaches its GEMMK=1 stage only after a random
    # GEMMK=0 stage that needs n % 128 == 0 and whose -fraction also thins the GEMMK=1
    # stage, so the GEMMK=1 space (its V=11 set: MWG, NWG in 16..64, MDIMC = MDIMA and
    # NDIMC = NDIMB in 4..16, VWM = VWN in 1..4, KREG a multiple of VWN) is swept here with
    # the same override API, on our own shape.
    # "full" sweeps all 407 sets (~2.5 h on 2 cores: each set compiles CLBlast's GEMM
    # program anew); the default keeps the sets that can suit our shape (MWG = 64 over the
    # long row dimension, NWG 32/64 over the 64 features, vector width 2/4): 30 sets.
    rows=${1:-16384}
    if [ "${2:-}" = full ]; then mwgs="16 32 64" nwgs="16 32 64" mds="4 8 16" vws="1 2 4" kregs="1 2 4"
    else mwgs="64" nwgs="32 64" mds="8 16" vws="2 4" kregs="2 4 8"; fi
    build_step
    for mwg in $mwgs; do for nwg in $nwgs; do for md in $mds; do for nd in 4 8 16; do
    for vw in $vws; do for kreg in $kregs; do
        [ $((kreg % vw)) -eq 0 ] || continue
        [ $((mwg % (md * vw))) -eq 0 ] && [ $((nwg % (nd * vw))) -eq 0 ] || continue
        p="Xgemm: GEMMK=1 KREG=$kreg KWG=1 KWI=1 MDIMA=$md MDIMC=$md MWG=$mwg NDIMB=$nd NDIMC=$nd NWG=$nwg SA=0 SB=0 STRM=0 STRN=0 VWM=$vw VWN=$vw; GemmRoutine: XGEMM_MIN_INDIRECT_SIZE=1"
        line=$(MMDIFF_LOG=0 MMDIFF_CLBLAST_TUNE=off MMDIFF_CLBLAST_PARAMS="$p" "$bin" gemm "$rows" 3 2>/dev/null | tail -n 1)
        echo "$line" | awk -v p="$p" '/cpu_ms/ {print $6, $10, p}'
    done; done; done; done; done; done | sort -rn -k1,1 | awk '{printf "%8.3f ms cpu %7.2f GFLOP/s per core-s: ", $1, $2; for (i = 3; i <= NF; i++) printf "%s ", $i; print ""}'
    ;;
*)
    sed -n '2,16p' "$0"
    exit 2
    ;;
esac
