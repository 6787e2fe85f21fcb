#!/usr/bin/env bash
# Runs one fuzz target for a bounded time, politely, and prints its figures.
#
#   fuzz/run.sh TARGET [SECONDS] [extra libFuzzer flags...]
#
# - nightly + cargo-fuzz (`cargo install cargo-fuzz`), one libFuzzer process at nice 19;
# - corpus: fuzz/work/TARGET (grows, not committed) seeded from fuzz/corpus/TARGET;
# - crashes: fuzz/artifacts/TARGET/; log: fuzz/work/logs/TARGET-<date>.log;
# - as root, in a private mount namespace with a nodev,nosuid tmpfs as the scratch dir
#   (HULL_FUZZ_SCRATCH), so device nodes a hostile layer creates cannot be opened.
# The last lines printed are the figures docs/fuzzing.md reports: runs, exec/s,
# coverage (cov/ft), corpus size, new units, peak RSS.
# HULL_FUZZ_PREBUILT=1 runs the binary the last `cargo +nightly fuzz build` made instead of
# rebuilding first: a rotation keeps fuzzing the tree it was built from while the
# worktree moves on (a rebuild with AddressSanitizer takes 8-15 min here).
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: fuzz/run.sh TARGET [SECONDS] [libFuzzer flags...]}
seconds=${2:-600}
shift $(($# < 2 ? $# : 2))

case $target in
layer_unpack | oci_archive | docker_archive) max_len=16384 ;;
protocol_* | virtio_* | vsock_*) max_len=8192 ;;
*) max_len=4096 ;;
esac
dict=()
[[ -f dict/$target.dict ]] && dict=(-dict="dict/$target.dict")

mkdir -p "work/$target" "work/logs" "work/scratch" "artifacts/$target"
if [[ ${HULL_FUZZ_PREBUILT:-0} != 1 ]]; then
    nice -n 10 cargo +nightly fuzz build "$target" >&2
fi
log=work/logs/$target-$(date +%Y%m%d-%H%M%S).log
echo "fuzzing $target for ${seconds}s at nice 19; log: fuzz/$log" >&2

flags=(-max_total_time="$seconds" -max_len="$max_len" -timeout=20 -rss_limit_mb=2048
    -print_final_stats=1 "${dict[@]}" "$@")
run=(nice -n 19 cargo +nightly fuzz run "$target" "work/$target" "corpus/$target" -- "${flags[@]}")
if [[ ${HULL_FUZZ_PREBUILT:-0} == 1 ]]; then
    bin=target/x86_64-unknown-linux-gnu/release/$target
    [[ -x $bin ]] || { echo "no built $bin: run cargo +nightly fuzz build first" >&2; exit 2; }
    # What `cargo fuzz run` adds: crashes go to artifacts/TARGET/.
    run=(nice -n 19 "$bin" -artifact_prefix="artifacts/$target/" "work/$target" "corpus/$target" "${flags[@]}")
fi
start=$(date +%s)
if [[ $(id -u) -eq 0 ]]; then
    unshare -m --propagation private sh -c '
        mount -t tmpfs -o nodev,nosuid,size=2g hull-fuzz work/scratch &&
        HULL_FUZZ_SCRATCH=$PWD/work/scratch exec "$@"' sh "${run[@]}" >"$log" 2>&1 || rc=$?
else
    "${run[@]}" >"$log" 2>&1 || rc=$?
fi
end=$(date +%s)
# The fuzzing time of this run (the build came before), for fuzz/report.py.
echo "hull-fuzz: target=$target seconds=$((end - start)) exit=${rc:-0}" | tee -a "$log"
grep -E '^#[0-9]+' "$log" | tail -n 1 || true
grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" || true
ls "artifacts/$target" 2>/dev/null | sed 's/^/artifact: /'
exit "${rc:-0}"
