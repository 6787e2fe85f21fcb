#!/usr/bin/env bash
# Builds hull's guest kernel (vmlinux + bzImage) from Debian's linux-source-6.12 with the
# fragment microvm.config applied on top of tinyconfig.
#
# The result is cached under $HULL_KERNEL_CACHE (default /var/cache/hull/kernel) in a
# directory named by the sha256 of the fragment, the source package version and this
# script's recipe version, so a machine builds each configuration once. The cached kernel
# is linked at $HULL_KERNEL_DIR (default /usr/local/lib/hull)/{vmlinux,bzImage,config}.
# On success the path of vmlinux is printed on stdout (and nothing else).
#
# Needs (Debian): linux-source-6.12 build-essential bc bison flex libelf-dev libssl-dev
#                 cpio xz-utils
#
# Usage: kernel-config/build.sh [--force]     (--force rebuilds even when cached)
set -euo pipefail

RECIPE=1 # bump when the way the kernel is built changes (not the config: that is hashed)
APT_PACKAGES="linux-source-6.12 build-essential bc bison flex libelf-dev libssl-dev cpio xz-utils"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fragment="$here/microvm.config"
cache="${HULL_KERNEL_CACHE:-/var/cache/hull/kernel}"
install_dir="${HULL_KERNEL_DIR:-/usr/local/lib/hull}"
tarball="${HULL_KERNEL_TARBALL:-/usr/src/linux-source-6.12.tar.xz}"
force=0

die() { echo "kernel-config/build.sh: $*" >&2; exit 1; }

for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h|--help) sed -n '2,15p' "$0" >&2; exit 0 ;;
        *) die "unknown argument '$arg' (usage: build.sh [--force])" ;;
    esac
done

# --- prerequisites: say exactly what is missing and which packages bring it
missing=()
for tool in make gcc ld bc bison flex cpio xz tar sha256sum objcopy flock; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("command '$tool'")
done
[[ -f /usr/include/gelf.h ]] || missing+=("header gelf.h (libelf-dev)")
[[ -f /usr/include/openssl/ssl.h ]] || missing+=("header openssl/ssl.h (libssl-dev)")
[[ -f "$tarball" ]] || missing+=("kernel source $tarball (linux-source-6.12)")
[[ -f "$fragment" ]] || missing+=("config fragment $fragment")
if ((${#missing[@]})); then
    printf '  missing: %s\n' "${missing[@]}" >&2
    die "prerequisites missing; install them with: apt-get install -y $APT_PACKAGES"
fi

# The source version: Debian package version when installed from the package, else the
# tarball's own hash (a tarball given by HULL_KERNEL_TARBALL).
src_version="$(dpkg-query -W -f='${Version}' linux-source-6.12 2>/dev/null || true)"
if [[ -z "$src_version" || -n "${HULL_KERNEL_TARBALL:-}" ]]; then
    src_version="tarball-$(sha256sum "$tarball" | cut -c1-16)"
fi
hash="$( { cat "$fragment"; echo "source=$src_version"; echo "recipe=$RECIPE"; } \
    | sha256sum | cut -c1-16)"
out="$cache/$hash"

link_and_print() {
    mkdir -p "$install_dir"
    for f in vmlinux bzImage config; do
        ln -sfn "$out/$f" "$install_dir/$f"
    done
    echo "$install_dir/vmlinux"
}

if [[ $force == 0 && -f "$out/vmlinux" && -f "$out/bzImage" ]]; then
    link_and_print
    exit 0
fi

mkdir -p "$cache"
# One build at a time per machine (CI and a developer, or two test runs).
exec 9>"$cache/.lock"
flock -w 3600 9 || die "timed out waiting for another kernel build (lock $cache/.lock)"
if [[ $force == 0 && -f "$out/vmlinux" && -f "$out/bzImage" ]]; then
    link_and_print # built by whoever held the lock
    exit 0
fi

log="$cache/build-$hash.log"
: >"$log"
fail() {
    echo "kernel-config/build.sh: $* — last lines of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
}

# --- source: extracted once per source version, kept for later configurations
src="$cache/src/${src_version//[^A-Za-z0-9.+-]/_}"
if [[ ! -f "$src/Makefile" ]]; then
    echo "extracting $tarball ..." >&2
    rm -rf "$src.partial"
    mkdir -p "$src.partial"
    tar -xf "$tarball" -C "$src.partial" --strip-components=1 >>"$log" 2>&1 \
        || fail "extracting $tarball failed"
    rm -rf "$src"
    mv "$src.partial" "$src"
fi

# --- configuration: tinyconfig + fragment, then check every fragment line survived
build="$cache/build" # out-of-tree object dir, reused so config changes rebuild incrementally
mkdir -p "$build"
kmake() { make -C "$src" O="$build" ARCH=x86_64 "$@" >>"$log" 2>&1; }
echo "configuring (log: $log) ..." >&2
kmake tinyconfig || fail "make tinyconfig failed"
cat "$fragment" >>"$build/.config"
kmake olddefconfig || fail "make olddefconfig failed"

lost=()
while IFS= read -r line; do
    if [[ "$line" =~ ^CONFIG_[A-Za-z0-9_]+= ]]; then
        grep -qxF "$line" "$build/.config" || lost+=("$line")
    elif [[ "$line" =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
        ! grep -q "^${BASH_REMATCH[1]}=" "$build/.config" || lost+=("$line")
    fi
done <"$fragment"
if ((${#lost[@]})); then
    printf '  not in the final .config (a dependency is missing): %s\n' "${lost[@]}" >&2
    die "configuration fragment did not apply cleanly"
fi

# --- build
echo "building vmlinux and bzImage with make -j$(nproc) (a few minutes on 2 cores) ..." >&2
start=$(date +%s)
kmake -j"$(nproc)" vmlinux bzImage || fail "kernel build failed"
echo "built in $(( $(date +%s) - start )) s" >&2

rm -rf "$out.partial"
mkdir -p "$out.partial"
# The symbol table is of no use to a VMM and only makes the image bigger to copy around;
# the PVH note and the loadable segments stay.
objcopy --strip-all "$build/vmlinux" "$out.partial/vmlinux" || fail "objcopy vmlinux failed"
cp "$build/arch/x86/boot/bzImage" "$out.partial/bzImage"
cp "$build/.config" "$out.partial/config"
echo "source=$src_version recipe=$RECIPE" >"$out.partial/source"
rm -rf "$out"
mv "$out.partial" "$out"
link_and_print
