#!/usr/bin/env bash
# Benchmark (not a test): `hull image import` of a layer vs `tar -x` of the same archive,
# side by side with hyperfine, medians reported.
#
# usage: scripts/bench-import.sh [HULL_BINARY]      (default: target/release/hull)
# env:   BENCH_DIR (scratch dir, default a temp dir under /var/tmp), RUNS (default 10)
#
# Two layers: 10,000 small files (1 KiB each, 100 directories) and a few large files
# (4 x 128 MiB, incompressible). Each is measured as an uncompressed tar and as
# tar.gz (hull: `image import --rootfs`, a one-layer image; tar: `tar -xf` / `tar -xzf`
# into an empty directory, as root, so it also restores owners and modes).
# Both sides start from an empty destination; the archives are in the page cache.
# hull's number includes what tar does not do: sha256 of the stream, the layer
# bookkeeping and one syncfs before the image is named in the index.
set -euo pipefail

HULL=${1:-$(cd "$(dirname "$0")/.." && pwd)/target/release/hull}
RUNS=${RUNS:-10}
command -v hyperfine >/dev/null || { echo "bench-import: hyperfine is not installed (apt-get install hyperfine)" >&2; exit 1; }
[ -x "$HULL" ] || { echo "bench-import: $HULL not found; cargo build --release -p hull" >&2; exit 1; }

BENCH_DIR=${BENCH_DIR:-$(mktemp -d /var/tmp/hull-bench.XXXXXX)}
trap 'rm -rf "$BENCH_DIR"' EXIT
cd "$BENCH_DIR"

echo "generating archives in $BENCH_DIR ..." >&2
mkdir -p src-small src-large
python3 - <<'PY'
import os
for d in range(100):
    os.makedirs(f"src-small/d{d:03}", exist_ok=True)
    for f in range(100):
        with open(f"src-small/d{d:03}/f{f:03}", "wb") as fh:
            fh.write(os.urandom(1024))
for i in range(4):
    with open(f"src-large/big{i}", "wb") as fh:
        for _ in range(128):
            fh.write(os.urandom(1 << 20))
PY
for set in small large; do
    tar -C "src-$set" -cf "$set.tar" .
    gzip -1 -c "$set.tar" > "$set.tar.gz"
done
rm -rf src-small src-large
cat small.tar small.tar.gz large.tar large.tar.gz > /dev/null  # warm the page cache

results=()
for archive in small.tar small.tar.gz large.tar large.tar.gz; do
    flag=-xf; [[ $archive == *.gz ]] && flag=-xzf
    hyperfine --runs "$RUNS" --warmup 1 --export-json "$archive.json" --style basic \
        --prepare "rm -rf out root && mkdir out" \
        -n "tar $flag $archive" "tar $flag $archive -C out" \
        -n "hull import $archive" "$HULL --root root image import --rootfs -q --tag bench $archive" \
        >&2
    results+=("$archive.json")
done

echo
printf '%-14s %14s %14s %8s\n' archive "tar -x median" "hull median" ratio
for json in "${results[@]}"; do
    python3 - "$json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
tar, hull = r[0]["median"], r[1]["median"]
print(f"{sys.argv[1][:-5]:<14} {tar*1000:11.1f} ms {hull*1000:11.1f} ms {hull/tar:7.2f}x")
PY
done
