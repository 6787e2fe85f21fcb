#!/usr/bin/env bash
# Prepares the nested test harness (tier 4): the "test host" kernel that QEMU/TCG boots with
# an emulated AMD-V CPU, and the KVM modules that make /dev/kvm inside it.
#
# Takes Debian's linux-image-cloud-amd64 kernel with `apt-get download` + `dpkg-deb -x`
# (never installs it on this machine) and caches, under $HULL_HARNESS_CACHE (default
# /var/cache/hull/harness)/<package>_<version>/:
#   vmlinuz                  the test-host kernel
#   modules/*.ko             kvm-amd, vhost_vsock and everything they depend on
#   modules/kvm.load         insmod order for /dev/kvm        (file names, one a line)
#   modules/vhost-vsock.load insmod order for /dev/vhost-vsock (QEMU's vsock, reference runs)
#   modules/overlay.load     insmod order for overlayfs (process-mode containers in the harness)
#   modules/network.load     insmod order for container networks: veth, bridge, tun, the
#                            nf_tables/xtables modules iptables-nft and the CNI plugins use,
#                            and tc's ingress qdisc, u32 filter and mirred action
#   release                  the kernel release string
# and points $HULL_HARNESS_CACHE/current at it. Idempotent: a second run only checks.
# Also checks the host tools the harness runs (QEMU, static busybox).
#
# Needs (Debian): qemu-system-x86 busybox-static (apt-get, dpkg-deb: always there)
# Prints the prepared directory on stdout.
#
# Usage: tests/harness/prepare.sh [--check]
#   --check   fetch nothing; exit 1 (reason on the last line of stderr) unless the harness
#             and the guest kernel (kernel-config/build.sh) are ready to use
set -euo pipefail

cache="${HULL_HARNESS_CACHE:-/var/cache/hull/harness}"
guest_kernel="${HULL_GUEST_KERNEL:-/usr/local/lib/hull/vmlinux}"
meta_package="linux-image-cloud-amd64"
check=0

die() { echo "tests/harness/prepare.sh: $*" >&2; exit 1; }

for arg in "$@"; do
    case "$arg" in
        --check) check=1 ;;
        -h|--help) sed -n '2,22p' "$0" >&2; exit 0 ;;
        *) die "unknown argument '$arg' (usage: prepare.sh [--check])" ;;
    esac
done

missing=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=("qemu-system-x86_64 (package qemu-system-x86)")
if [[ ! -x /bin/busybox ]]; then
    missing+=("/bin/busybox (package busybox-static)")
elif ldd /bin/busybox >/dev/null 2>&1; then
    missing+=("a static /bin/busybox (package busybox-static, not busybox)")
fi
if ((${#missing[@]})); then
    printf '  missing: %s\n' "${missing[@]}" >&2
    die "install with: apt-get install -y qemu-system-x86 busybox-static"
fi

if ((check)); then
    current="$cache/current"
    for part in vmlinuz modules/kvm.load modules/vhost-vsock.load modules/overlay.load \
                modules/network.load; do
        [[ -f "$current/$part" ]] || die "$current/$part missing: run tests/harness/prepare.sh"
    done
    [[ -f "$guest_kernel" ]] || die "guest kernel $guest_kernel missing: run kernel-config/build.sh"
    echo "harness ready: $(readlink -f "$current"), guest kernel $(readlink -f "$guest_kernel")" >&2
    exit 0
fi

# The concrete kernel package the meta-package points at (apt lists may need a refresh).
resolve_package() {
    apt-cache depends "$meta_package" 2>/dev/null \
        | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}
package="$(resolve_package)"
if [[ -z "$package" ]]; then
    echo "apt lists do not know $meta_package; running apt-get update ..." >&2
    apt-get update -qq >&2 || die "apt-get update failed"
    package="$(resolve_package)"
    [[ -n "$package" ]] || die "apt-cache cannot resolve $meta_package to a kernel package"
fi
version="$(apt-cache show --no-all-versions "$package" | awk '/^Version:/ { print $2; exit }')"
[[ -n "$version" ]] || die "apt-cache show $package gave no version"

dest="$cache/${package}_${version//[^A-Za-z0-9.+-]/_}"
if [[ -f "$dest/vmlinuz" && -f "$dest/modules/kvm.load" && -f "$dest/modules/vhost-vsock.load" \
      && -f "$dest/modules/overlay.load" && -f "$dest/modules/network.load" ]]; then
    ln -sfn "$dest" "$cache/current"
    echo "$dest"
    exit 0
fi

mkdir -p "$cache"
work="$(mktemp -d "$cache/.prepare.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "fetching $package $version ..." >&2
(cd "$work" && apt-get download "$package=$version" >/dev/null 2>"$work/apt.err") \
    || { cat "$work/apt.err" >&2; die "apt-get download $package=$version failed"; }
deb="$(ls "$work"/*.deb)"
dpkg-deb -x "$deb" "$work/root" || die "dpkg-deb -x $deb failed"

vmlinuz="$(ls "$work"/root/boot/vmlinuz-* 2>/dev/null | head -n1)"
[[ -n "$vmlinuz" ]] || die "$deb holds no /boot/vmlinuz-*"
release="${vmlinuz##*/vmlinuz-}"
moddir="$work/root/lib/modules/$release"
[[ -f "$moddir/modules.dep" ]] || depmod -b "$work/root" "$release" \
    || die "$deb has no modules.dep and depmod failed"

mkdir -p "$work/out/modules"
# Writes the insmod order for MODULE (a name like kvm-amd) into LIST: its dependencies from
# modules.dep (already the full closure; modprobe loads them last-listed first), then itself.
collect() {
    local module="$1" list="$2" line path deps i
    line="$(grep -E "(^|/)${module}\.ko(\.[a-z]+)?:" "$moddir/modules.dep" | head -n1)"
    [[ -n "$line" ]] || die "module $module not in $release's modules.dep"
    path="${line%%:*}"
    read -r -a deps <<<"${line#*:}"
    : >"$list"
    for ((i = ${#deps[@]} - 1; i >= 0; i--)); do
        cp "$moddir/${deps[i]}" "$work/out/modules/"
        basename "${deps[i]}" >>"$list"
    done
    cp "$moddir/$path" "$work/out/modules/"
    basename "$path" >>"$list"
}
# Writes the insmod order for several modules into LIST: each one's closure, every file once.
collect_all() {
    local list="$1" one="$work/one.load" m f
    shift
    : >"$list"
    for m in "$@"; do
        collect "$m" "$one"
        while read -r f; do
            grep -qxF "$f" "$list" || echo "$f" >>"$list"
        done <"$one"
    done
    rm -f "$one"
}
collect kvm-amd "$work/out/modules/kvm.load"
collect vhost_vsock "$work/out/modules/vhost-vsock.load"
collect overlay "$work/out/modules/overlay.load"
# What hull's bridge networks need in the test host (CNI bridge/portmap/firewall through
# iptables-nft, and the VM's TAP tied to the veth with tc).
collect_all "$work/out/modules/network.load" veth bridge tun nf_tables nft_compat nft_chain_nat \
    xt_MASQUERADE xt_nat xt_mark xt_comment xt_addrtype xt_multiport xt_conntrack xt_tcpudp \
    sch_ingress cls_u32 act_mirred
if ls "$work/out/modules" | grep -qv '\.ko$\|\.load$'; then
    die "$release ships compressed modules; busybox insmod needs plain .ko files"
fi
cp "$vmlinuz" "$work/out/vmlinuz"
echo "$release" >"$work/out/release"

rm -rf "$dest"
mv "$work/out" "$dest"
ln -sfn "$dest" "$cache/current"
echo "prepared $package $version in $dest" >&2
echo "$dest"
