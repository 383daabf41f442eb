#!/usr/bin/env bash
# Runs every test binary given on the command line, prints each one's summary and a total
# "N passed, N failed" line; exits non-zero if any test failed or crashed.
set -u
pass=0; fail=0; bad=()
for t in "$@"; do
    name=$(basename "$t")
    start=$(date +%s.%N)
    out=$("$t" 2> >(sed "s/^/  [$name] /" >&2))
    rc=$?
    end=$(date +%s.%N)
    line=$(printf '%s\n' "$out" | grep -E '^[A-Za-z0-9_]+: [0-9]+ passed, [0-9]+ failed$' | tail -n 1)
    printf '%s\n' "$out" | grep -vE '^[A-Za-z0-9_]+: [0-9]+ passed, [0-9]+ failed$' || true
    if [ -n "$line" ]; then
        p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
        f=$(echo "$line" | sed -E 's/.*, ([0-9]+) failed/\1/')
    else
        p=0; f=1
        line="$name: no summary line (exit code $rc)"
    fi
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; line="$line (exit code $rc)"; fi
    printf '%-60s %6.1fs\n' "$line" "$(awk -v a="$start" -v b="$end" 'BEGIN{print b-a}')"
    pass=$((pass + p)); fail=$((fail + f))
    [ "$f" -ne 0 ] && bad+=("$name")
done
[ ${#bad[@]} -ne 0 ] && echo "failing: ${bad[*]}"
echo "TOTAL: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
