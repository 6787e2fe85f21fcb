#!/usr/bin/env bash
# create + start + delete of one container through the OCI runtime command line, side by
# side: hull-oci, crun, runc, on the same bundle (busybox rootfs, `crun spec`'s config
# running `true`), with hyperfine (medians of many runs). youki's README measures the same.
# A benchmark, not a test: it prints numbers.
#
# usage: scripts/bench-oci.sh [HULL_OCI_BINARY] [RUNS]
#        BENCH_NICE=1 ...   run hyperfine (so every runtime alike) at nice -19
#        BENCH_SUBJECTS="crun runc" ...   measure only these (default: hull-oci crun runc)
#
# Each runtime's --root is on a tmpfs (as /run is on a standard system). crun 1.8 refuses
# this host's hybrid cgroup layout while /sys/fs/cgroup/unified holds a controller, so all
# three run inside one private mount namespace without that mount: the host is untouched
# and all three see the same pure cgroup v1 layout. Each command is
#   RT --root R create --bundle B ID && RT --root R start ID && RT --root R delete --force ID
# run through hyperfine's shell (the same shell cost for all three).
set -euo pipefail

HULL_OCI=${1:-$(dirname "$0")/../target/release/hull-oci}
RUNS=${2:-100}
HULL_OCI=$(readlink -f "$HULL_OCI")
for tool in hyperfine crun runc busybox unshare python3; do
    command -v "$tool" >/dev/null || { echo "bench-oci: $tool is not installed" >&2; exit 1; }
done

work=$(mktemp -d /tmp/hull-oci-bench-XXXXXX)
state=$(mktemp -d /dev/shm/hull-oci-bench-XXXXXX)
trap 'rm -rf "$work" "$state"' EXIT
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
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
path = sys.argv[1]
c = json.load(open(path))
c["process"]["terminal"] = False
c["process"]["args"] = ["true"]
c["root"]["readonly"] = False
json.dump(c, open(path, "w"), indent=1)
PY

cat > "$work/inner.sh" <<'INNER'
set -euo pipefail
HULL_OCI=$1; work=$2; state=$3; runs=$4
if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi
cycle() { # runtime name
    echo "$1 --root $state/$2 create --bundle $work/bundle b-$2 </dev/null && $1 --root $state/$2 start b-$2 && $1 --root $state/$2 delete --force b-$2"
}
args=()
for name in ${BENCH_SUBJECTS:-hull-oci crun runc}; do
    bin=$name
    [ "$name" = hull-oci ] && bin=$HULL_OCI
    # One cycle first: a runtime that cannot run here fails loudly before measuring.
    sh -c "$(cycle "$bin" "$name")" || { echo "bench-oci: $name failed a cycle" >&2; exit 1; }
    args+=(-n "$name" "$(cycle "$bin" "$name")")
done
prefix=()
if [ "${BENCH_NICE:-0}" = 1 ]; then prefix=(nice -n -19); fi
"${prefix[@]}" hyperfine --warmup 10 --runs "$runs" --export-json "$work/result.json" "${args[@]}"
python3 - "$work/result.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
med = {k: v["median"] * 1000 for k, v in r.items()}
for k, v in med.items():
    print(f"{k}: median {v:.2f} ms (mean {r[k]['mean']*1000:.2f}, stddev {r[k]['stddev']*1000:.2f}, n={len(r[k]['times'])})")
for other in ("crun", "runc"):
    if "hull-oci" in med and other in med:
        print(f"hull-oci/{other} = {med['hull-oci']/med[other]:.2f}")
PY
INNER
BENCH_SUBJECTS=${BENCH_SUBJECTS:-hull-oci crun runc} BENCH_NICE=${BENCH_NICE:-0} unshare -m --propagation private bash "$work/inner.sh" "$HULL_OCI" "$work" "$state" "$RUNS" </dev/null
