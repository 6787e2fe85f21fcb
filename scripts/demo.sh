#!/usr/bin/env bash
# hull's main job on a fresh machine: install and build everything, import the built-in
# default image, and run the same container in both isolation models.
#
# usage: scripts/demo.sh (as root)       (state root: $HULL_ROOT, default /var/lib/hull)
#
# Where this host's KVM cannot boot the guest kernel itself (PVM, or no KVM), the vm run
# happens inside the nested QEMU harness (a test host with an emulated AMD-V CPU), and the
# script says so.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
TARGET=${CARGO_TARGET_DIR:-target}
HULL=$TARGET/release/hull
ROOT=${HULL_ROOT:-/var/lib/hull}
export HULL_ROOT=$ROOT

heading() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

heading "default image"
scripts/build-default-image.sh "$HULL"
"$HULL" image ls

# The same image, command and flags in both models; only --isolation differs.
CMD='echo "hello from $(hostname): kernel $(uname -r), $(nproc) cpu(s), I am pid $$"'

heading "hull run --rm --isolation=process hull/busybox"
"$HULL" run --rm --isolation=process hull/busybox sh -c "$CMD"

heading "hull run --rm --isolation=vm hull/busybox"
doctor_rc=0
"$HULL" doctor >/dev/null 2>&1 || doctor_rc=$?
if ((doctor_rc & 8)) || ((doctor_rc >= 125)); then
    kvm=$({ "$HULL" doctor --format json 2>/dev/null || true; } |
        grep -o '"kvm": *"[^"]*"' | head -n 1 | cut -d'"' -f4)
    echo "this host's KVM (${kvm:-unknown}) cannot boot a Linux guest itself (see 'hull doctor');"
    echo "running the vm container inside the nested QEMU harness instead"
    script=$(mktemp)
    trap 'rm -f "$script"' EXIT
    modules=/var/cache/hull/harness/current/modules
    args=()
    {
        echo 'set -e'
        echo 'mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null || true'
        while read -r m; do
            [[ -n $m ]] || continue
            args+=(--file "$modules/$m=/lib/hull-extra/$m")
            echo "insmod /lib/hull-extra/$m"
        done <"$modules/overlay.load"
        echo "export HULL_ROOT=/var/lib/hull"
        # The harness's root is the initramfs, where pivot_root(2) is refused, and hull-vmm's
        # jail pivot_roots into its directory: hull runs chrooted into a tmpfs holding bind
        # mounts of the harness's directories (the same files), as on a real root.
        echo 'mkdir -p /newroot && mount -t tmpfs tmpfs /newroot'
        echo 'for d in /*; do case $d in /newroot|/proc|/sys|/dev) continue;; esac
            if [ -d "$d" ] && [ ! -L "$d" ]; then mkdir -p "/newroot$d" && mount --rbind "$d" "/newroot$d"
            else cp -a "$d" /newroot/; fi; done'
        echo 'for d in /proc /sys /dev; do mkdir -p "/newroot$d" && mount --rbind "$d" "/newroot$d"; done'
        # The emulated test host carries no CNI plugins or bridge modules: no network here.
        printf 'chroot /newroot hull run --rm --isolation=vm --network none hull/busybox sh -c %q\n' "$CMD"
    } >"$script"
    "$TARGET/release/hull-harness" --timeout 900 \
        --binary "$HULL=/usr/local/bin/hull" \
        --binary "$TARGET/release/hull-vmm=/usr/local/bin/hull-vmm" \
        --binary "$(command -v mkfs.erofs)=/usr/bin/mkfs.erofs" \
        --binary "$(command -v mkfs.ext4)=/usr/sbin/mkfs.ext4" \
        --file "/usr/local/lib/hull/hull-agent=/usr/local/lib/hull/hull-agent" \
        --file "/usr/local/lib/hull/vmlinux=/usr/local/lib/hull/vmlinux" \
        --dir "$ROOT/images=/var/lib/hull/images" \
        "${args[@]}" --script "$script"
else
    "$HULL" run --rm --isolation=vm hull/busybox sh -c "$CMD"
fi
