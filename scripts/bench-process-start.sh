#!/usr/bin/env bash
# Start+teardown latency of one container running `true`, side by side:
#   hull run --rm IMAGE true            (--isolation=process)
#   crun run -b BUNDLE ID               (same busybox rootfs, same namespaces)
#   runc run -b BUNDLE ID
# with hyperfine (median of many runs). A benchmark, not a test: it prints numbers.
#
# usage: scripts/bench-process-start.sh [HULL_BINARY] [RUNS]
#        BENCH_NICE=1 scripts/bench-process-start.sh ...   (high CPU priority, see below)
#
# On a shared, busy machine the medians are dominated by waiting for a CPU. BENCH_NICE=1
# runs hyperfine (and so all three runtimes alike) at nice -19, which measures the runtimes'
# own cost rather than the scheduling noise of other work.
#        BENCH_RT=1 scripts/bench-process-start.sh ...
# runs everything under SCHED_FIFO (chrt -f 10), which removes the noise of a busy machine.
# A real-time task cannot join a v1 cpu cgroup without an RT budget, so in this mode crun
# runs with --cgroup-manager=disabled (hull creates no cgroup for a container without
# limits either) and runc, which cannot run without cgroups, is left out.
#
# crun 1.8 refuses to run on a cgroup "hybrid" host whose unified hierarchy has a
# controller attached (here: hugetlb). So all three runtimes are measured inside one private
# mount namespace in which /sys/fs/cgroup/unified is unmounted: the host is untouched and
# all three see the same pure cgroup v1 layout.
#
# STATE_ON_TMPFS=1 keeps all three runtimes' state on a tmpfs (hull's run root, crun's and
# runc's --root), as on a standard system where /run is a tmpfs; by default their state goes
# to /tmp and the runtimes' own defaults.
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
rt_state=""
if [ "${STATE_ON_TMPFS:-0}" = 1 ]; then
    rt_state=$(mktemp -d /dev/shm/hull-bench-XXXXXX)
    trap 'rm -rf "$work" "$rt_state"' EXIT
    mkdir -p "$rt_state/hull-run" "$rt_state/crun" "$rt_state/runc"
    ln -s "$rt_state/hull-run" "$root/run"
fi

cat > "$work/inner.sh" <<'INNER'
set -euo pipefail
HULL=$1; root=$2; work=$3; runs=$4; rt_state=${5:-}
crun_root=(); runc_root=()
if [ -n "$rt_state" ]; then crun_root=(--root "$rt_state/crun"); runc_root=(--root "$rt_state/runc"); fi
if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi
"$HULL" --root "$root" run --rm bench/busybox true </dev/null
crun "${crun_root[@]}" run -b "$work/bundle" bench-warmup </dev/null
runc "${runc_root[@]}" run -b "$work/bundle" bench-warmup </dev/null
if [ "${BENCH_RT:-0}" = 1 ]; then
    chrt -f 10 hyperfine -N --warmup 20 --runs "$runs" --export-json "$work/result.json" \
        -n hull "$HULL --root $root run --rm bench/busybox true" \
        -n crun "crun ${crun_root[*]} --cgroup-manager=disabled run -b $work/bundle bench-crun"
else
    prefix=()
    if [ "${BENCH_NICE:-0}" = 1 ]; then prefix=(nice -n -19); fi
    "${prefix[@]}" hyperfine -N --warmup 20 --runs "$runs" --export-json "$work/result.json" \
        -n hull "$HULL --root $root run --rm bench/busybox true" \
        -n crun "crun ${crun_root[*]} run -b $work/bundle bench-crun" \
        -n runc "runc ${runc_root[*]} run -b $work/bundle bench-runc"
fi
python3 - "$work/result.json" <<'EOF'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
med = {k: v["median"] * 1000 for k, v in r.items()}
for k, v in med.items():
    print(f"{k}: median {v:.2f} ms (mean {r[k]['mean']*1000:.2f}, stddev {r[k]['stddev']*1000:.2f})")
for other in ("crun", "runc"):
    if other in med:
        print(f"hull/{other} = {med['hull']/med[other]:.2f}")
EOF
INNER
BENCH_RT=${BENCH_RT:-0} BENCH_NICE=${BENCH_NICE:-0} unshare -m --propagation private bash "$work/inner.sh" "$HULL" "$root" "$work" "$RUNS" "$rt_state" </dev/null
