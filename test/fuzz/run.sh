#!/bin/sh
# Runs every fuzz harness for a fixed time: run.sh BUILD SECONDS "LIBFUZZER ARGS" HARNESS...
# (make fuzz SECONDS=N). Each harness starts from its seeds (made here from ../shared, the
# repository and make_seeds), the committed crash reproducers in test/fuzz/regress/<harness>
# (replayed first: a fixed bug must stay fixed) and what earlier runs added to
# BUILD/corpus/<harness>. Prints one line per harness (executions, corpus, result) and a
# total; exits non-zero if any harness crashed, leaked, hung or ran out of memory, with the
# input in BUILD/artifacts/ and the log in BUILD/logs/<harness>.log.
set -u
build=$1; secs=$2; args=$3; shift 3
here=$(cd "$(dirname "$0")" && pwd)
sh "$here/seeds.sh" "$build/seeds" "$build/make_seeds" || exit 1
mkdir -p "$build/artifacts" "$build/logs"
fail=0; total=0
for h in "$@"; do
    mkdir -p "$build/corpus/$h" "$build/seeds/$h"
    dirs="$build/corpus/$h $build/seeds/$h"
    [ -d "$here/regress/$h" ] && dirs="$dirs $here/regress/$h"
    log="$build/logs/$h.log"
    start=$(date +%s)
    # shellcheck disable=SC2086
    "$build/$h" -max_total_time="$secs" $args -artifact_prefix="$build/artifacts/$h-" $dirs >"$log" 2>&1
    rc=$?
    end=$(date +%s)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | sed -n 's/.*cov: \([0-9]*\).*corp: \([0-9]*\).*/cov \1, corpus \2/p')
    if [ "$rc" -eq 0 ]; then res=ok; else res="FAILED (exit $rc, see $log)"; fail=$((fail + 1)); fi
    printf '%-22s %10s execs %5ss  %-24s %s\n' "$h" "${execs:-?}" "$((end - start))" "${cov:-}" "$res"
    total=$((total + ${execs:-0}))
    if [ "$rc" -ne 0 ]; then grep -E 'ERROR|SUMMARY|mmd fuzz|runtime error' "$log" | head -n 5 | sed 's/^/    /'; fi
done
echo "FUZZ TOTAL: $total executions, $fail harness(es) failed"
[ "$fail" -eq 0 ]
