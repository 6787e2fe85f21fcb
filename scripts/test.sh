#!/usr/bin/env bash
# Runs hull's tests in four tiers and prints what each tier ran and passed.
#
#   1 unit              no root, fast                     cargo test --lib --bins
#   2 host integration  root: namespaces, cgroups, CLI    tests/tests/host_*.rs
#   3 direct KVM        tiny guests on this /dev/kvm      vmm/tests/kvm_*.rs
#   4 harness           full VM mode: directly where KVM  tests/tests/harness_*.rs
#                       is hardware, else in nested QEMU/TCG
#
# A tier that cannot run says why and counts as NOT RUN, never as passed. Every tier runs
# once: nothing is re-run, and a failure anywhere (a test, the build, a test host of the
# nested harness that froze or crashed) fails the tier and the exit status.
# Exit status: 0 only if every tier ran and passed. Each tier's wall time is printed.
#
#   scripts/test.sh              every tier (what CI runs)
#   scripts/test.sh 2 4          only tiers 2 and 4; the others are listed as NOT SELECTED
#                                and the last line says this was a partial run
#   HULL_TEST_SETUP=0 ...        as root, only build (no scripts/setup.sh: nothing is
#                                installed on the machine; for engineers sharing one host)
set -uo pipefail
cd "$(dirname "$0")/.."

PROFILE_FLAG=--release
LOGDIR=${HULL_TEST_LOGDIR:-$(mktemp -d /tmp/hull-test-logs.XXXXXX)}
mkdir -p "$LOGDIR"
# Tests leave summaries here (hull-oci's conformance counts), printed at the end.
export HULL_TEST_LOGDIR=$LOGDIR
declare -A PASSED FAILED IGNORED STATUS WHY SECS
TIERS=(1 2 3 4)
NAMES=([1]="unit" [2]="host integration" [3]="direct KVM" [4]="nested harness")
declare -A SELECTED
if [[ $# -eq 0 ]]; then
    for t in "${TIERS[@]}"; do SELECTED[$t]=1; done
else
    for t in "$@"; do
        if [[ -z ${NAMES[$t]:-} ]]; then
            echo "scripts/test.sh: no tier '$t' (tiers are ${TIERS[*]})" >&2
            exit 2
        fi
        SELECTED[$t]=1
    done
fi

bold() { printf '\033[1m%s\033[0m\n' "$*"; }

# run_tier N WHY_NOT CARGO_ARGS... : runs cargo test and tallies its "test result" lines.
run_tier() {
    local tier=$1 why_not=$2
    shift 2
    if [[ -z ${SELECTED[$tier]:-} ]]; then
        STATUS[$tier]="NOT SELECTED"
        PASSED[$tier]=0 FAILED[$tier]=0 IGNORED[$tier]=0 SECS[$tier]=0
        return
    fi
    if [[ -n $why_not ]]; then
        STATUS[$tier]="NOT RUN"
        WHY[$tier]=$why_not
        PASSED[$tier]=0 FAILED[$tier]=0 IGNORED[$tier]=0 SECS[$tier]=0
        bold "!!!! tier $tier (${NAMES[$tier]}) NOT RUN: $why_not"
        return
    fi
    bold "==== tier $tier (${NAMES[$tier]}): cargo test $*"
    local log=$LOGDIR/tier$tier.log
    local started=$SECONDS
    cargo test $PROFILE_FLAG --no-fail-fast "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    SECS[$tier]=$((SECONDS - started))
    bold "==== tier $tier (${NAMES[$tier]}) took ${SECS[$tier]} s"
    # Only cargo's own summary lines count: "test result: ok. 3 passed; 0 failed; 1 ignored; ..."
    local results
    results=$(grep -E '^test result: ' "$log")
    PASSED[$tier]=$(grep -Eo '[0-9]+ passed' <<<"$results" | awk '{s+=$1} END {print s+0}')
    FAILED[$tier]=$(grep -Eo '[0-9]+ failed' <<<"$results" | awk '{s+=$1} END {print s+0}')
    IGNORED[$tier]=$(grep -Eo '[0-9]+ ignored' <<<"$results" | awk '{s+=$1} END {print s+0}')
    if [[ $rc -ne 0 ]]; then
        STATUS[$tier]="FAILED"
        # A build or harness error fails the tier even if no test result line counted it.
        [[ ${FAILED[$tier]} -eq 0 ]] && FAILED[$tier]=1
    elif [[ ${PASSED[$tier]} -eq 0 ]]; then
        STATUS[$tier]="NO TESTS"
    else
        STATUS[$tier]="ok"
    fi
}

# Install and build what the tiers need (idempotent and cached: packages, binaries,
# guest kernel, harness). The integration tests drive the built binaries as a user would.
setup_started=$SECONDS
if [[ $(id -u) -eq 0 && ${HULL_TEST_SETUP:-1} != 0 ]]; then
    if ! scripts/setup.sh; then
        echo "setup failed"
        echo "0 passed, 1 failed"
        exit 1
    fi
elif ! cargo build $PROFILE_FLAG --workspace --bins ||
    ! RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build $PROFILE_FLAG -p hull-agent -p hull-tests --bin hull-agent \
        --bin hull-hostile-agent --target x86_64-unknown-linux-gnu; then
    echo "build failed"
    echo "0 passed, 1 failed"
    exit 1
fi
setup_secs=$((SECONDS - setup_started))

# Every tier tests with --workspace: cargo unifies features across what it builds, so
# `-p hull-tests` would build hull and its dependencies again with other features (minutes
# each on a 2-core CI machine); the same selection for every tier builds them once.

# Tier 1: unit tests of every crate (libraries and binaries), no root needed.
run_tier 1 "" --workspace --lib --bins

# Tier 2: host integration tests, as root.
why2=""
[[ $(id -u) -eq 0 ]] || why2="needs root (namespaces, mounts, cgroups)"
compgen -G "tests/tests/host_*.rs" >/dev/null || why2="no tests/tests/host_*.rs present"
run_tier 2 "$why2" --workspace --test 'host_*' -- --test-threads=2

# Tier 3: the VMM directly on this machine's /dev/kvm with tiny guests.
why3=""
[[ -c /dev/kvm ]] || why3="/dev/kvm is missing on this host"
compgen -G "vmm/tests/kvm_*.rs" >/dev/null || why3="no vmm/tests/kvm_*.rs present"
run_tier 3 "$why3" --workspace --test 'kvm_*'

# Tier 4: full VM mode inside the nested QEMU/TCG harness (real KVM on emulated AMD-V).
why4=""
compgen -G "tests/tests/harness_*.rs" >/dev/null || why4="no tests/tests/harness_*.rs present"
if [[ -n ${SELECTED[4]:-} && -z $why4 && -x tests/harness/prepare.sh ]]; then
    tests/harness/prepare.sh --check >"$LOGDIR/harness-check.log" 2>&1 ||
        why4="harness unavailable: $(tail -n 1 "$LOGDIR/harness-check.log")"
fi
# --nocapture: the harness's notes and WARNING lines about failed test hosts reach the log.
run_tier 4 "$why4" --workspace --test 'harness_*' -- --test-threads=1 --nocapture
# A test host that froze is retried only with HULL_HARNESS_RETRY_FROZEN=1 (off by default),
# and then says so with a WARNING: the retried test may pass, the tier does not.
if [[ ${STATUS[4]} != "NOT RUN" && ${STATUS[4]} != "NOT SELECTED" ]]; then
    host_retries=$(grep -c '^harness: WARNING' "$LOGDIR/tier4.log" 2>/dev/null || true)
    if [[ $host_retries -gt 0 ]]; then
        STATUS[4]="FAILED"
        [[ ${FAILED[4]} -eq 0 ]] && FAILED[4]=$host_retries
        WHY[4]="$host_retries harness run(s) passed only on a second machine after the first froze (grep 'harness: WARNING' $LOGDIR/tier4.log)"
    fi
    if grep -q '^vm-mode tests: running directly' "$LOGDIR/tier4.log"; then
        WHY[4]="${WHY[4]:+${WHY[4]}; }VM mode ran directly on this host's hardware KVM"
    fi
fi

echo
bold "==== test tiers ===="
printf '%-4s %-18s %-12s %7s %7s %8s %7s  %s\n' tier name status passed failed ignored time note
printf '%-4s %-18s %-12s %7s %7s %8s %6ss  %s\n' - "setup and build" - - - - "$setup_secs" ""
total_pass=0 total_fail=0 exit=0 ran=0 unselected=()
for t in "${TIERS[@]}"; do
    printf '%-4s %-18s %-12s %7s %7s %8s %6ss  %s\n' "$t" "${NAMES[$t]}" "${STATUS[$t]}" \
        "${PASSED[$t]}" "${FAILED[$t]}" "${IGNORED[$t]}" "${SECS[$t]}" "${WHY[$t]:-}"
    total_pass=$((total_pass + PASSED[$t]))
    total_fail=$((total_fail + FAILED[$t]))
    if [[ ${STATUS[$t]} == "NOT SELECTED" ]]; then
        unselected+=("$t")
        continue
    fi
    # Every selected tier must run and pass: the VM mode is only tested end to end in tier 4.
    [[ ${STATUS[$t]} == ok ]] && ran=$((ran + 1))
    [[ ${STATUS[$t]} != ok ]] && exit=1
done
for t in "${TIERS[@]}"; do
    [[ ${STATUS[$t]} == "NOT SELECTED" ]] && continue
    if [[ ${STATUS[$t]} != ok ]]; then bold "!!!! tier $t (${NAMES[$t]}): ${STATUS[$t]} ${WHY[$t]:-}"; fi
    if [[ ${IGNORED[$t]} -gt 0 ]]; then bold "!!!! tier $t: ${IGNORED[$t]} test(s) ignored, see $LOGDIR/tier$t.log"; fi
done
for summary in "$LOGDIR"/oci-conformance-*.txt; do
    [[ -e $summary ]] && cat "$summary"
done
echo "logs: $LOGDIR"
if [[ ${#unselected[@]} -gt 0 ]]; then
    bold "!!!! PARTIAL RUN: tier(s) ${unselected[*]} not selected; this is not a full test run"
fi
echo "$ran of $((${#TIERS[@]} - ${#unselected[@]})) tier(s) passed; $total_pass passed, $total_fail failed in $SECONDS s"
exit $exit
