//! Benchmark (not a test of speed): container networks, in one nested-harness run.
//!
//! - TCP throughput (iperf3, host → container and container → host) and the round trip
//!   of one-byte requests (`hull-probe tcp-rr` against `nc -e cat`), host ↔ container, for:
//!   a process container and a vm container on hull's bridge (CNI veth; for the VM a TAP
//!   tied to it with tc), and, for the VMM alone, the same guest kernel booted with a
//!   busybox+iperf3 initramfs on a plain TAP by hull-vmm and by QEMU's `-M microvm`
//!   (`virtio-net-device`, userspace, `vhost=off`, as hull-vmm's);
//! - the start latency networking adds to `hull run --rm IMAGE true`: `--network bridge`
//!   against `--network none`, in each model.
//!
//! Prints medians and ratios; asserts only that every run succeeded. Everything runs under
//! TCG inside the harness: only the ratios carry over, not the absolute numbers.
//!
//! Run: `cargo build --release --workspace --bins` (and the static agent, see README), then
//! `cargo bench -p hull-tests --bench harness_network` (HULL_BENCH_RUNS: start-latency runs
//! per subject, default 5; HULL_BENCH_SECONDS: seconds per iperf3 run, default 5).

#[path = "../tests/vm_common/mod.rs"]
mod vm_common;

use std::collections::BTreeMap;
use std::path::Path;

use hull_tests::guest::GUEST_CMDLINE;
use hull_tests::initramfs::{shared_libraries, Initramfs};

/// Round trips per `tcp-rr` measurement.
const RR_COUNT: u32 = 500;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("harness_network: a benchmark; run it with `cargo bench --bench harness_network`");
        return;
    }
    let env_num = |name: &str, default: u32| -> u32 {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let runs = env_num("HULL_BENCH_RUNS", 5);
    let seconds = env_num("HULL_BENCH_SECONDS", 5);
    let iperf3 = Path::new("/usr/bin/iperf3");
    assert!(
        iperf3.is_file(),
        "iperf3 is not installed (apt-get install iperf3; scripts/setup.sh does)"
    );

    // The containers' image: the tests' busybox root plus iperf3 and its libraries.
    let rootfs = vm_common::busybox_rootfs();
    copy_with_libraries(iperf3, rootfs.path());
    // The bare VMs' initramfs: busybox, iperf3, and an /init that takes its address from
    // the kernel command line (bench.ip=) and serves iperf3 and an echo port.
    let dir = tempfile::tempdir().unwrap();
    let initramfs = dir.path().join("net-initramfs.cpio");
    let init = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /usr/bin /usr/sbin /sbin
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
export PATH=/usr/bin:/usr/sbin:/bin:/sbin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
ip=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^bench.ip=//p')
ip link set lo up
ip addr add $ip/24 dev eth0
ip link set eth0 up
nc -ll -p 7 -e /bin/cat &
exec iperf3 -s
"#;
    let mut guest = Initramfs::new();
    guest
        .busybox()
        .binary(iperf3, "/usr/bin/iperf3")
        .bytes("/init", init, 0o755);
    guest.write_to(&initramfs).unwrap();

    let harness = vm_common::vm_network_harness(rootfs.path())
        .qemu()
        .binary(iperf3, "/usr/bin/iperf3")
        .binary(&hull_tests::binary("hull-probe"), "/usr/bin/hull-probe")
        .file(&initramfs, "/guest/net-initramfs.cpio")
        .memory_mib(3072);
    let body = format!(
        r#"
RUNS={runs}
SECS={seconds}
echo '{{"network": {{"bridge": "hull0", "subnet": "10.88.0.0/24"}}}}' > /var/lib/hull/config.json
touch /tmp/r/failures.out
fail() {{ echo "$*" >> /tmp/r/failures.out; }}
now() {{ cut -d' ' -f1 /proc/uptime | tr -d . ; }}
bench() {{
    name=$1; shift
    "$@" >/dev/null 2>&1 || fail "$name warm-up failed: $?"
    i=0; times=""
    while [ $i -lt $RUNS ]; do
        a=$(now); "$@" >/dev/null 2>&1; rc=$?; b=$(now)
        [ $rc -eq 0 ] || fail "$name run $i failed: $rc"
        times="$times $((b - a))"; i=$((i + 1))
    done
    record start_$name "$times"
}}
# Start latency, none vs bridge, both models (interleaved per pair).
bench p_none P hull run --rm --network none $I true
bench p_bridge P hull run --rm --network bridge $I true
bench v_none hull run --rm --isolation=vm --network none $I true
bench v_bridge hull run --rm --isolation=vm --network bridge $I true
# measure NAME ADDR: round trips, then iperf3 both ways.
measure() {{
    hull-probe tcp-rr $2 7 5 >/dev/null 2>&1 || fail "$1: echo server not reachable at $2"
    record rr_$1 "$(hull-probe tcp-rr $2 7 {RR_COUNT} 2>&1)"
    iperf3 -c $2 -t $SECS -J > /tmp/r/up_$1.out 2>&1 || fail "$1: iperf3 -c failed"
    emit /tmp/r/up_$1.out
    iperf3 -c $2 -t $SECS -R -J > /tmp/r/down_$1.out 2>&1 || fail "$1: iperf3 -R failed"
    emit /tmp/r/down_$1.out
}}
address() {{ "$@" | tr -d ' \n' | sed -n 's/.*"address":"\([0-9.]*\)".*/\1/p'; }}
SERVE='nc -ll -p 7 -e /bin/cat & exec iperf3 -s'
P hull run -d --name pperf $I sh -c "$SERVE" >/dev/null || fail "process server did not start"
measure process $(address P hull inspect pperf)
P hull rm -f pperf >/dev/null
hull run -d --isolation=vm --name vperf $I sh -c "$SERVE" >/dev/null || fail "vm server did not start"
measure vm $(address hull inspect vperf)
hull rm -f vperf >/dev/null
# The VMMs alone on a plain TAP: hull-vmm, then QEMU microvm, same kernel and initramfs.
bare() {{
    name=$1 tap=$2; shift 2
    "$@" > /tmp/r/$name.console 2>&1 &
    pid=$!
    for i in $(seq 300); do [ -e /sys/class/net/$tap ] && break; sleep 0.2; done
    ip addr add 10.99.0.1/24 dev $tap && ip link set $tap up || fail "$name: no TAP $tap"
    measure $name 10.99.0.2
    kill -9 $pid; wait $pid 2>/dev/null
    ip link del $tap 2>/dev/null
}}
bare hull_vmm htap0 hull-vmm --kernel /usr/local/lib/hull/vmlinux --initramfs /guest/net-initramfs.cpio --cmdline '{GUEST_CMDLINE} bench.ip=10.99.0.2' --memory 256 --serial none --net tap=htap0,mac=02:00:00:00:99:02
bare qemu qtap0 qemu-system-x86_64 -M microvm,acpi=off -enable-kvm -cpu host -smp 1 -m 256 -nodefaults -no-user-config -display none -no-reboot -serial none -netdev tap,id=n0,ifname=qtap0,script=no,downscript=no,vhost=off -device virtio-net-device,netdev=n0,mac=02:00:00:00:99:03 -kernel /usr/local/lib/hull/vmlinux -initrd /guest/net-initramfs.cpio -append '{GUEST_CMDLINE} reboot=t bench.ip=10.99.0.2'
emit /tmp/r/failures.out
"#
    );
    let mut r = vm_common::Results::collect(&vm_common::VmTestHost::Harness(harness), &body);
    let failures = r.out("failures").to_string();
    r.check(
        failures.is_empty(),
        format!("bench runs failed: {failures}"),
    );

    let median = |v: &mut Vec<f64>| -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    println!(
        "\nstart latency of `hull run --rm IMAGE true`, median of {runs} runs, seconds (TCG):"
    );
    let mut start = BTreeMap::new();
    for s in ["p_none", "p_bridge", "v_none", "v_bridge"] {
        let mut v: Vec<f64> = r
            .out(&format!("start_{s}"))
            .split_whitespace()
            .filter_map(|t| t.parse::<f64>().ok())
            .map(|cs| cs / 100.0)
            .collect();
        r.check(!v.is_empty(), format!("no start timings for {s}"));
        let m = median(&mut v);
        println!("  {s:<10} {m:>7.2}");
        start.insert(s, m);
    }
    println!(
        "  networking adds: process {:+.2} s ({:.2}x), vm {:+.2} s ({:.2}x)",
        start["p_bridge"] - start["p_none"],
        start["p_bridge"] / start["p_none"],
        start["v_bridge"] - start["v_none"],
        start["v_bridge"] / start["v_none"],
    );

    println!("\nhost <-> guest, iperf3 {seconds} s per direction and {RR_COUNT} one-byte round trips (TCG):");
    println!(
        "  {:<10} {:>14} {:>14} {:>12} {:>12}",
        "subject", "host->guest", "guest->host", "rr median", "rr p90"
    );
    let mut table = BTreeMap::new();
    for s in ["process", "vm", "hull_vmm", "qemu"] {
        let up = gbits(r.out(&format!("up_{s}")));
        let down = gbits(r.out(&format!("down_{s}")));
        let rr = r.out(&format!("rr_{s}")).to_string();
        let field = |k: &str| -> f64 {
            rr.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN)
        };
        let (rr_med, rr_p90) = (field("rr_us_median="), field("rr_us_p90="));
        r.check(
            up.is_finite() && down.is_finite() && rr_med.is_finite(),
            format!("{s}: missing results (up {up}, down {down}, rr {rr:?})"),
        );
        println!(
            "  {s:<10} {:>9.3} Gb/s {:>9.3} Gb/s {:>9.0} us {:>9.0} us",
            up, down, rr_med, rr_p90
        );
        table.insert(s, (up, down, rr_med));
    }
    let ratio = |a: &str, b: &str, f: fn(&(f64, f64, f64)) -> f64| f(&table[a]) / f(&table[b]);
    println!(
        "  throughput host->guest: vm/process {:.2}x, hull-vmm/qemu {:.2}x; guest->host: \
         vm/process {:.2}x, hull-vmm/qemu {:.2}x",
        ratio("vm", "process", |t| t.0),
        ratio("hull_vmm", "qemu", |t| t.0),
        ratio("vm", "process", |t| t.1),
        ratio("hull_vmm", "qemu", |t| t.1),
    );
    println!(
        "  round trip: vm/process {:.2}x, hull-vmm/qemu {:.2}x, vm/hull-vmm {:.2}x",
        ratio("vm", "process", |t| t.2),
        ratio("hull_vmm", "qemu", |t| t.2),
        ratio("vm", "hull_vmm", |t| t.2),
    );
    r.finish();
}

/// Received throughput in Gb/s from iperf3's JSON (`end.sum_received.bits_per_second`).
fn gbits(json: &str) -> f64 {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v["end"]["sum_received"]["bits_per_second"].as_f64())
        .map(|b| b / 1e9)
        .unwrap_or(f64::NAN)
}

/// Copies `binary` and the shared libraries it needs into `root` at the same paths.
fn copy_with_libraries(binary: &Path, root: &Path) {
    for file in std::iter::once(binary.to_path_buf()).chain(shared_libraries(binary)) {
        let dest = root.join(file.strip_prefix("/").unwrap_or(&file));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&file, &dest)
            .unwrap_or_else(|e| panic!("copy {} into the image: {e}", file.display()));
    }
}
