#!/usr/bin/env bash
# Builds hull's default image, hull/busybox:latest, from Debian's busybox-static and
# imports it, so hull runs on a machine with no registry.
#
# usage: scripts/build-default-image.sh [HULL_BINARY]     (state root: $HULL_ROOT if set)
#
# The root filesystem is built deterministically (fixed mtimes, sorted by hull's tar
# writer, no timestamps in the config), so a re-run gives the same image id and the
# import reports "up to date" without changing the store.
set -euo pipefail

HULL=${1:-hull}
BUSYBOX=${BUSYBOX:-/bin/busybox}
PATH_ENV="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed"; then
    echo "build-default-image: Debian's busybox-static is not installed (apt-get install busybox-static)" >&2
    exit 1
fi
if ! "$BUSYBOX" --list-full >/dev/null 2>&1; then
    echo "build-default-image: $BUSYBOX does not run or cannot list its applets" >&2
    exit 1
fi
if ldd "$BUSYBOX" >/dev/null 2>&1; then
    echo "build-default-image: $BUSYBOX is dynamically linked; need busybox-static's binary" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,usr/local/sbin,etc,root,home/user,tmp,dev,proc,sys,run,var/tmp}
install -m 0755 "$BUSYBOX" "$rootfs/bin/busybox"
# One symlink per applet, at the path busybox itself reports (bin/sh, usr/bin/awk, ...).
while read -r applet; do
    [ -n "$applet" ] || continue
    [ "$applet" = "bin/busybox" ] && continue
    mkdir -p "$rootfs/$(dirname "$applet")"
    ln -sfn /bin/busybox "$rootfs/$applet"
done < <("$BUSYBOX" --list-full | sort)

cat > "$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
user:x:1000:1000:user:/home/user:/bin/sh
PASSWD
cat > "$rootfs/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
user:x:1000:
GROUP
cat > "$rootfs/etc/shadow" <<'SHADOW'
root:*:19000:0:99999:7:::
nobody:*:19000:0:99999:7:::
user:*:19000:0:99999:7:::
SHADOW
echo "hull" > "$rootfs/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' > "$rootfs/etc/hosts"

chown -R 0:0 "$rootfs"
chown 1000:1000 "$rootfs/home/user"
chmod 0755 "$rootfs"
chmod 0700 "$rootfs/root"
chmod 0640 "$rootfs/etc/shadow"
chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"
find "$rootfs" -exec touch -h -d @0 {} +

"$HULL" image import --rootfs "$rootfs" --tag hull/busybox:latest \
    --cmd '["sh"]' --env "$PATH_ENV" --workdir / \
    --label "org.opencontainers.image.title=hull default image" \
    --label "org.opencontainers.image.version=$(dpkg-query -W -f='${Version}' busybox-static)"
