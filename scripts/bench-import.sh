#!/usr/bin/env bash
# Benchmark (not a test): `hull image import` of a layer vs `tar -x` of the same archive,
# measured side by side, medians reported.
#
# usage: scripts/bench-import.sh [HULL_BINARY]      (default: target/release/hull)
# env:   BENCH_DIR  scratch dir (default: a temp dir under /var/tmp; use /dev/shm/... to
#                   take the disk out of the measurement)
#        RUNS       rounds per archive (default 11)
#
# Archives: a layer of 10,000 small files (1 KiB each, 100 directories) and a layer of a
# few large files (4 x 128 MiB, incompressible), each as .tar and .tar.gz.
# tar side:  `tar -xf A -C out` (or -xzf), as root, so it also restores owners and modes.
# hull side: `hull --root R image import --rootfs -q --tag bench A`: sha256 of the blob
#            and of the uncompressed stream, safe unpack, blob/index writes with fsync.
# Both start from an empty destination with the archive in the page cache. Runs are
# interleaved (tar, hull, hull, tar, ...) so load from other processes hits both sides
# alike; hyperfine (if installed) is then run once per command for its summary.
# Reference column "sha256 floor": the archive's size over this CPU's sha256 rate
# (`openssl speed -evp sha256`, SHA-NI where the CPU has it): the least time hull can take
# on an uncompressed layer, whose every byte must be hashed on one thread. For a .tar.gz
# it is printed as n/a: its floor (inflate + two hashes) is not measured here.
set -euo pipefail

HULL=${1:-$(cd "$(dirname "$0")/.." && pwd)/target/release/hull}
RUNS=${RUNS:-11}
[ -x "$HULL" ] || { echo "bench-import: $HULL not found; cargo build --release -p hull" >&2; exit 1; }
HULL=$(realpath "$HULL")

BENCH_DIR=${BENCH_DIR:-$(mktemp -d /var/tmp/hull-bench.XXXXXX)}
mkdir -p "$BENCH_DIR"
trap 'rm -rf "$BENCH_DIR"' EXIT
cd "$BENCH_DIR"

echo "generating archives in $BENCH_DIR ..." >&2
python3 - <<'PY'
import os
for d in range(100):
    os.makedirs(f"src-small/d{d:03}", exist_ok=True)
    for f in range(100):
        with open(f"src-small/d{d:03}/f{f:03}", "wb") as fh:
            fh.write(os.urandom(1024))
os.makedirs("src-large", exist_ok=True)
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

python3 - "$HULL" "$RUNS" <<'PY'
import os, shutil, statistics, subprocess, sys, time
hull, runs = sys.argv[1], int(sys.argv[2])

def reset():
    for d in ("out", "root"):
        shutil.rmtree(d, ignore_errors=True)
    os.mkdir("out")
    subprocess.run(["sync"], check=True)  # start each run with no dirty pages

def timed(cmd):
    """Wall time and CPU time (user+sys of the process, its threads and children)."""
    reset()
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        sys.exit(f"{cmd} failed")
    return wall, ru.ru_utime + ru.ru_stime

sha_rate = None  # bytes/s
if shutil.which("openssl"):
    out = subprocess.run(["openssl", "speed", "-evp", "sha256", "-bytes", "1048576",
                          "-seconds", "2"], capture_output=True, text=True).stdout
    line = [l for l in out.splitlines() if l.startswith("sha256")]
    if line:
        sha_rate = float(line[-1].split()[-1].rstrip("k")) * 1000
        print(f"sha256: {sha_rate/1e9:.2f} GB/s (openssl speed, one thread)", flush=True)
print(f"load average: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs", flush=True)
print(f"{'archive':<14} {'tar -x median':>14} {'hull median':>14} {'ratio':>7}"
      f"   {'tar CPU':>9} {'hull CPU':>9} {'ratio':>6}   {'sha256 floor':>12}   (n={runs}, medians)")
for archive in ("small.tar", "small.tar.gz", "large.tar", "large.tar.gz"):
    flag = "-xzf" if archive.endswith(".gz") else "-xf"
    tar_cmd = ["tar", flag, archive, "-C", "out"]
    hull_cmd = [hull, "--root", "root", "image", "import", "--rootfs", "-q", "--tag", "bench", archive]
    open(archive, "rb").read()  # page cache
    tar_t, hull_t = [], []
    timed(tar_cmd); timed(hull_cmd)  # warm-up
    for i in range(runs):
        order = [(tar_t, tar_cmd), (hull_t, hull_cmd)]
        if i % 2:
            order.reverse()
        for acc, cmd in order:
            acc.append(timed(cmd))
    # Only an uncompressed layer has a floor from its size alone; a .tar.gz is hashed
    # compressed and uncompressed and inflated too, none of which is measured here: n/a.
    floor = None
    if sha_rate and not archive.endswith(".gz"):
        floor = os.path.getsize(archive) / sha_rate
    sha = f"{floor*1000:9.1f} ms" if floor else f"{'n/a':>12}"
    t = statistics.median(w for w, _ in tar_t)
    h = statistics.median(w for w, _ in hull_t)
    tc = statistics.median(c for _, c in tar_t)
    hc = statistics.median(c for _, c in hull_t)
    print(f"{archive:<14} {t*1000:11.1f} ms {h*1000:11.1f} ms {h/t:6.2f}x"
          f"   {tc*1000:6.0f} ms {hc*1000:6.0f} ms {hc/tc:5.2f}x   {sha}", flush=True)
reset()
PY

if command -v hyperfine >/dev/null; then
    hyperfine --runs 5 --style basic --prepare "rm -rf out root && mkdir out && sync" \
        "tar -xf small.tar -C out" \
        "$HULL --root root image import --rootfs -q --tag bench small.tar" >&2
fi
