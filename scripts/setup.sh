#!/usr/bin/env bash
# Installs everything hull needs on a fresh Debian 12 machine (run as root), then builds
# hull, the guest kernel, the nested test harness and the default image.
#
#   scripts/setup.sh            # packages + build everything
#   SETUP_SKIP_APT=1 ...        # skip apt (packages already there)
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step says when it started (seconds into setup), so a slow CI setup shows which step.
log() { printf '\033[1m==> [%4d s] %s\033[0m\n' "$SECONDS" "$*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    echo "setup.sh: run as root (it installs packages and builds into /usr/local/lib/hull)" >&2
    exit 1
fi

# Debian packages, each for a reason:
#   busybox-static              the default image's userland, and the harness shells
#   qemu-system-x86             the nested harness (outer machine), QEMU microvm peer
#   build-essential linux-source-6.12 bc bison flex libelf-dev libssl-dev xz-utils cpio
#                               the guest kernel build
#   erofs-utils e2fsprogs       block-device images of container roots for the VM mode
#   crun runc                   peers for the process-mode benchmark
#   skopeo umoci                images written by other tools, for the import tests
#   docker-registry apache2-utils
#                               real registries (distribution 2.8, htpasswd) for the
#                               pull/push tests (podman, below, is their second client)
#   hyperfine                   side-by-side command timing in benchmarks
#   iproute2 kmod util-linux socat
#                               networking checks, module loading, vsock test helper
#   librsvg2-bin                renders `hull bench --svg` charts to PNG for checking
#   golang-go                   builds the vendored OCI conformance suite (tests/oci/conformance)
#   podman containerd           hull-oci's callers in its tests (podman --runtime, ctr, CRI)
#   python3-grpcio protobuf-compiler
#                               the CRI client of hull-oci's Kubernetes RuntimeClass test
#   containernetworking-plugins iptables
#                               container networks: the CNI reference plugins (bridge,
#                               host-local, portmap, firewall, loopback) and the iptables
#                               they run
#   iperf3                      the network benchmark (tests/benches/harness_network.rs)
PACKAGES=(
    busybox-static qemu-system-x86
    build-essential linux-source-6.12 bc bison flex libelf-dev libssl-dev xz-utils cpio
    erofs-utils e2fsprogs crun runc skopeo umoci hyperfine
    docker-registry apache2-utils
    iproute2 kmod util-linux socat librsvg2-bin
    golang-go podman containerd python3-grpcio protobuf-compiler
    containernetworking-plugins iptables iperf3
)
if [[ -z ${SETUP_SKIP_APT:-} ]]; then
    missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        log "installing packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi
[[ -e /dev/net/tun ]] || { mkdir -p /dev/net && mknod /dev/net/tun c 10 200 || true; }

log "building hull (release)"
cargo build --release --workspace --bins
# The guest agent is PID 1 of a microVM with no libc of its own: link it statically (no
# musl target here, so glibc with crt-static; it lands in target/x86_64-unknown-linux-gnu/).
log "building the static guest agent"
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release -p hull-agent --target x86_64-unknown-linux-gnu
# A guest agent that breaks the protocol on purpose, for the tier-4 test harness_vm_hostile
# (not installed).
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release -p hull-tests --bin hull-hostile-agent --target x86_64-unknown-linux-gnu
TARGET=${CARGO_TARGET_DIR:-target}
log "installing hull, hull-oci, hull-vmm, hull-agent and hull-harness"
install -D -m 0755 "$TARGET"/release/hull /usr/local/bin/hull
install -D -m 0755 "$TARGET"/release/hull-oci /usr/local/bin/hull-oci
# hull-oci under this name runs every workload in a VM (a runtime handler picks a binary).
ln -sfn hull-oci /usr/local/bin/hull-oci-vm
install -D -m 0755 "$TARGET"/release/hull-vmm /usr/local/lib/hull/hull-vmm
# `hull bench --harness` runs the nested harness through it (on hosts whose KVM is PVM).
install -D -m 0755 "$TARGET"/release/hull-harness /usr/local/lib/hull/hull-harness
install -D -m 0755 "$TARGET"/x86_64-unknown-linux-gnu/release/hull-agent /usr/local/lib/hull/hull-agent

if [[ -x kernel-config/build.sh ]]; then
    log "guest kernel (cached by configuration hash)"
    kernel-config/build.sh
fi
if [[ -x tests/harness/prepare.sh ]]; then
    log "nested test harness"
    tests/harness/prepare.sh
fi
log "setup done"
