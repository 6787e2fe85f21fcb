#!/usr/bin/env bash
# Measures flakiness: runs one test tier N times and reports, per test, how many runs it
# failed, with each run's wall time. Nothing is retried or hidden: every failure of every
# run is counted, and the exit status is 1 if any test failed in any run.
#
#   scripts/test-repeat.sh N TIER        e.g. scripts/test-repeat.sh 10 2
#
# Tiers as in scripts/test.sh (1 unit, 2 host integration, 3 direct KVM, 4 harness; run
# tier 4 under /work/team/harness.lock on a shared machine). Build first (scripts/test.sh
# does); this script only runs the tests. Logs stay in $HULL_TEST_LOGDIR (or a temp dir).
set -uo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: scripts/test-repeat.sh N TIER   (N >= 1, TIER 1-4)" >&2; exit 2; }
[[ $# -eq 2 && $1 =~ ^[1-9][0-9]*$ ]] || usage
runs=$1 tier=$2
case $tier in
    1) args=(--workspace --lib --bins) ;;
    2) args=(--workspace --test 'host_*' -- --test-threads=2) ;;
    3) args=(--workspace --test 'kvm_*') ;;
    4) args=(--workspace --test 'harness_*' -- --test-threads=1 --nocapture) ;;
    *) usage ;;
esac
LOGDIR=${HULL_TEST_LOGDIR:-$(mktemp -d /tmp/hull-test-repeat.XXXXXX)}
mkdir -p "$LOGDIR"
export HULL_TEST_LOGDIR=$LOGDIR

declare -A FAILS RUNS
failed_runs=0
for ((i = 1; i <= runs; i++)); do
    log=$LOGDIR/tier$tier-run$i.log
    started=$SECONDS
    cargo test --release --no-fail-fast "${args[@]}" >"$log" 2>&1
    rc=$?
    secs=$((SECONDS - started))
    # cargo's per-test lines, named by their test binary: "BINARY NAME ok|FAILED" from
    # "Running tests/host_x.rs (...)" and "test NAME ... ok" (ignored tests are skipped).
    results=$(awk '/^ *Running /{bin=$2; sub(/.*\//, "", bin); sub(/\.rs$/, "", bin)}
        /^test .* \.\.\. (ok|FAILED)$/{print bin "::" $2, $NF}' "$log")
    ok=$(grep -c ' ok$' <<<"$results")
    bad=$(grep -c ' FAILED$' <<<"$results")
    while read -r name result; do
        [[ -z $name ]] && continue
        RUNS[$name]=$((${RUNS[$name]:-0} + 1))
        [[ $result == FAILED ]] && FAILS[$name]=$((${FAILS[$name]:-0} + 1))
    done <<<"$results"
    note=""
    # A run that failed without a failed test line (build error, crashed test binary).
    if [[ $rc -ne 0 && $bad -eq 0 ]]; then note=" (cargo exited $rc: see $log)"; fi
    [[ $rc -ne 0 ]] && failed_runs=$((failed_runs + 1))
    printf 'run %2d: %4d passed, %3d failed, %5d s%s\n' "$i" "$ok" "$bad" "$secs" "$note"
done

echo
echo "tier $tier, $runs runs: $failed_runs run(s) failed"
if [[ ${#FAILS[@]} -gt 0 ]]; then
    printf '%-6s %-6s %s\n' failed of test
    for name in "${!FAILS[@]}"; do
        printf '%-6s %-6s %s\n' "${FAILS[$name]}" "${RUNS[$name]}" "$name"
    done | sort -rn
fi
echo "logs: $LOGDIR"
[[ $failed_runs -eq 0 ]]
