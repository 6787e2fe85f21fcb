#!/usr/bin/env bash
# Benchmark (not a test): pull of a multi-layer image from a local registry,
#   hull pull   vs   podman pull   vs   skopeo copy to an OCI layout + hull image import,
# measured side by side (interleaved rounds), medians and ratios reported.
#
# usage: scripts/bench-pull.sh [HULL_BINARY]       (default: target/release/hull)
# env:   BENCH_DIR  work dir, kept between runs as a cache of the rootfs and the layers
#                   (default /var/tmp/hull-bench-pull)
#        RUNS       rounds (default 5)
#
# The image: a Debian bookworm rootfs made by debootstrap (minbase + python3 + perl),
# split into 4 gzip layers (usr/lib, usr/share, usr/bin+sbin+libexec+include, the rest),
# pushed by skopeo to Debian's docker-registry on 127.0.0.1 (plain HTTP, loopback).
# Each round pulls into an empty store: hull with a fresh --root; podman with a fresh
# --root/--runroot (overlay driver, its default); skopeo into a fresh oci: directory and
# then `hull image import` of that directory into a fresh --root. The registry's files
# are in the page cache for all of them. Needs root (debootstrap, podman's overlay).
set -euo pipefail

HULL=${1:-$(cd "$(dirname "$0")/.." && pwd)/target/release/hull}
RUNS=${RUNS:-5}
[ -x "$HULL" ] || { echo "bench-pull: $HULL not found; cargo build --release -p hull" >&2; exit 1; }
HULL=$(realpath "$HULL")
for tool in debootstrap docker-registry skopeo podman python3; do
    command -v "$tool" >/dev/null || { echo "bench-pull: $tool missing" >&2; exit 1; }
done

BENCH_DIR=${BENCH_DIR:-/var/tmp/hull-bench-pull}
mkdir -p "$BENCH_DIR"
cd "$BENCH_DIR"

if [ ! -f rootfs.done ]; then
    echo "debootstrap (once, cached in $BENCH_DIR) ..." >&2
    rm -rf rootfs
    debootstrap --variant=minbase --include=python3,perl bookworm rootfs \
        http://deb.debian.org/debian >debootstrap.log 2>&1
    touch rootfs.done
fi

if [ ! -f layout.done ]; then
    echo "building the 4-layer OCI layout ..." >&2
    rm -rf layers layout && mkdir -p layers
    tar -C rootfs -cf layers/1.tar usr/lib
    tar -C rootfs -cf layers/2.tar usr/share
    tar -C rootfs -cf layers/3.tar usr/bin usr/sbin usr/libexec usr/include 2>/dev/null ||
        tar -C rootfs -cf layers/3.tar usr/bin usr/sbin
    tar -C rootfs --exclude=./usr/lib --exclude=./usr/share --exclude=./usr/bin \
        --exclude=./usr/sbin --exclude=./usr/libexec --exclude=./usr/include -cf layers/4.tar .
    for i in 1 2 3 4; do gzip -6 -f layers/$i.tar; done
    python3 - <<'PY'
import hashlib, json, os, gzip
os.makedirs("layout/blobs/sha256", exist_ok=True)
def put(data):
    h = hashlib.sha256(data).hexdigest()
    with open(f"layout/blobs/sha256/{h}", "wb") as f:
        f.write(data)
    return f"sha256:{h}", len(data)
layers, diff_ids = [], []
for i in range(1, 5):
    blob = open(f"layers/{i}.tar.gz", "rb").read()
    d, n = put(blob)
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n})
    diff_ids.append("sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest())
config = {"architecture": "amd64", "os": "linux",
          "config": {"Cmd": ["bash"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
          "rootfs": {"type": "layers", "diff_ids": diff_ids}}
cd, cn = put(json.dumps(config).encode())
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
            "layers": layers}
md, mn = put(json.dumps(manifest).encode())
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
           "digest": md, "size": mn, "annotations": {"org.opencontainers.image.ref.name": "1"}}]},
          open("layout/index.json", "w"))
open("layout/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
    touch layout.done
fi

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
rm -rf registry && mkdir -p registry
cat >registry/config.yml <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $BENCH_DIR/registry/data
http:
  addr: 127.0.0.1:$PORT
EOF
docker-registry serve registry/config.yml >registry/log 2>&1 &
REGISTRY_PID=$!
trap 'kill $REGISTRY_PID 2>/dev/null; wait $REGISTRY_PID 2>/dev/null || true; rm -rf "$BENCH_DIR/work"' EXIT
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break
    sleep 0.1
done
IMAGE=127.0.0.1:$PORT/bench/debian:1
skopeo --insecure-policy copy -q --dest-tls-verify=false oci:layout:1 "docker://$IMAGE"
echo "image: $(du -sh rootfs | cut -f1) rootfs, layers (gzip): $(du -ch layers/*.tar.gz | tail -1 | cut -f1)" >&2

python3 - "$HULL" "$RUNS" "$IMAGE" <<'PY'
import os, resource, shutil, statistics, subprocess, sys, time
hull, runs, image = sys.argv[1], int(sys.argv[2]), sys.argv[3]
work = os.path.abspath("work")

def fresh():
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)

cpu = {"now": 0.0}

def run(cmd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu["now"] += (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if r.returncode != 0:
        sys.exit(f"{cmd[0]} failed: {r.stderr.decode()[-2000:]}")
    return dt

def hull_pull():
    fresh()
    return run([hull, "--root", f"{work}/hull", "pull", "-q", image])

def podman_pull():
    fresh()
    t = run(["podman", "--root", f"{work}/podman", "--runroot", f"{work}/podman-run",
             "--storage-driver", "overlay", "--events-backend", "none",
             "--cgroup-manager", "cgroupfs", "pull", "-q", "--tls-verify=false", image])
    # podman's overlay mounts its layers' parents; unmount before removal.
    subprocess.run(["podman", "--root", f"{work}/podman", "--runroot", f"{work}/podman-run",
                    "--storage-driver", "overlay", "--events-backend", "none",
                    "--cgroup-manager", "cgroupfs", "system", "reset", "-f"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return t

def skopeo_import():
    fresh()
    t = run(["skopeo", "--insecure-policy", "copy", "-q", "--src-tls-verify=false",
             f"docker://{image}", f"oci:{work}/oci:1"])
    return t + run([hull, "--root", f"{work}/hull", "image", "import", "-q",
                    "--tag", "bench/debian:1", f"{work}/oci"])

sides = {"hull pull": hull_pull, "podman pull": podman_pull,
         "skopeo copy + hull image import": skopeo_import}
times = {k: [] for k in sides}
cpus = {k: [] for k in sides}
for f in sides.values():
    f()  # warm-up: registry files into the page cache, binaries loaded
for i in range(runs):
    order = list(sides) if i % 2 == 0 else list(reversed(sides))
    for k in order:
        cpu["now"] = 0.0
        times[k].append(sides[k]())
        cpus[k].append(cpu["now"])
fresh()
load = os.getloadavg()[0]
print(f"pull of {image} ({runs} rounds, interleaved; load average {load:.2f})")
base = statistics.median(times["podman pull"])
cbase = statistics.median(cpus["podman pull"])
for k, v in times.items():
    m, c = statistics.median(v), statistics.median(cpus[k])
    print(f"  {k:34} wall median {m:6.2f} s (min {min(v):.2f}, max {max(v):.2f}) {m / base:.2f}x podman;"
          f"  CPU (user+sys) median {c:5.2f} s {c / cbase:.2f}x podman")
PY
