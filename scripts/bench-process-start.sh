#!/usr/bin/env bash
# Start+teardown latency of one container running `true`, side by side:
#   hull run --rm IMAGE true            (--isolation=process)
#   crun run -b BUNDLE ID               (same busybox rootfs, same namespaces)
#   runc run -b BUNDLE ID
# with hyperfine (median of many runs). A benchmark, not a test: it prints numbers.
#
# usage: scripts/bench-process-start.sh [HULL_BINARY] [RUNS]
#
# crun 1.8 refuses to run on a cgroup "hybrid" host whose unified hierarchy has a
# controller attached (here: hugetlb). So all three runtimes are measured inside one private
# mount namespace in which /sys/fs/cgroup/unified is unmounted: the host is untouched and
# all three see the same pure cgroup v1 layout.
#
# Differences in the work done, all at hull's expense: hull mounts an overlayfs (image layer
# + fresh writable layer) and removes the writable layer afterwards, installs a seccomp
# filter, and writes/removes its container records; the crun/runc bundles use the rootfs
# directory directly with no seccomp profile (the `crun spec` default config).
set -euo pipefail

HULL=${1:-$(dirname "$0")/../target/release/hull}
RUNS=${2:-200}
HULL=$(readlink -f "$HULL")
for tool in hyperfine crun runc busybox unshare; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is not installed" >&2; exit 1; }
done

work=$(mktemp -d /tmp/hull-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs="$work/bundle/rootfs"
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,proc,sys,dev}
cp "$(command -v busybox)" "$rootfs/bin/busybox"
for applet in $(busybox --list-full); do
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$rootfs/$(dirname "$applet")"
    ln -sf /bin/busybox "$rootfs/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\n' > "$rootfs/etc/group"

(cd "$work/bundle" && crun spec)
python3 - "$work/bundle/config.json" <<'EOF'
import json, sys
path = sys.argv[1]
c = json.load(open(path))
c["process"]["terminal"] = False
c["process"]["args"] = ["true"]
c["root"]["readonly"] = False
if not any(n["type"] == "cgroup" for n in c["linux"]["namespaces"]):
    c["linux"]["namespaces"].append({"type": "cgroup"})
json.dump(c, open(path, "w"), indent=1)
EOF

root="$work/hull-root"
"$HULL" --root "$root" image import --rootfs "$rootfs" --tag bench/busybox -q >/dev/null

cat > "$work/inner.sh" <<'INNER'
set -euo pipefail
HULL=$1; root=$2; work=$3; runs=$4
if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi
"$HULL" --root "$root" run --rm bench/busybox true </dev/null
crun run -b "$work/bundle" bench-warmup </dev/null
runc run -b "$work/bundle" bench-warmup </dev/null
hyperfine -N --warmup 20 --runs "$runs" --export-json "$work/result.json" \
    -n hull "$HULL --root $root run --rm bench/busybox true" \
    -n crun "crun run -b $work/bundle bench-crun" \
    -n runc "runc run -b $work/bundle bench-runc"
python3 - "$work/result.json" <<'EOF'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
med = {k: v["median"] * 1000 for k, v in r.items()}
for k, v in med.items():
    print(f"{k}: median {v:.2f} ms (mean {r[k]['mean']*1000:.2f}, stddev {r[k]['stddev']*1000:.2f})")
print(f"hull/crun = {med['hull']/med['crun']:.2f}   hull/runc = {med['hull']/med['runc']:.2f}")
EOF
INNER
unshare -m --propagation private bash "$work/inner.sh" "$HULL" "$root" "$work" "$RUNS" </dev/null
