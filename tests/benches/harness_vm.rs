//! Benchmark (not a test of speed): in one nested-harness run, the end-to-end time of
//! `hull run --rm IMAGE true` with `--isolation=vm` against `--isolation=process`, against
//! hull-vmm booting the same kernel with a plain busybox initramfs that runs `true`, and
//! against QEMU's `-M microvm` booting that same kernel and initramfs. Prints a table and
//! the ratios; asserts only that every run succeeded. Everything runs under TCG inside the
//! harness, so only the ratios carry over, not the absolute numbers.
//!
//! Run: `cargo build --release --workspace --bins` (and the static agent, see README), then
//! `cargo bench -p hull-tests --bench harness_vm` (HULL_BENCH_RUNS sets the runs per
//! subject, default 5).

#[path = "../tests/vm_common/mod.rs"]
mod vm_common;

use hull_tests::guest::{self, GUEST_CMDLINE};

fn main() {
    // `cargo bench` passes --bench; under `cargo test --benches/--all-targets` (no --bench)
    // this is no test and does nothing, rather than boot machines for minutes.
    if !std::env::args().any(|a| a == "--bench") {
        println!("harness_vm: a benchmark; run it with `cargo bench --bench harness_vm`");
        return;
    }
    let runs: u32 = std::env::var("HULL_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let initramfs = dir.path().join("true-initramfs.cpio");
    guest::write_initramfs(&initramfs, &hull_tests::binary("hull-probe"), "/bin/true");
    let rootfs = vm_common::busybox_rootfs();
    let harness = vm_common::vm_harness(rootfs.path())
        .qemu()
        .file(&initramfs, "/guest/true-initramfs.cpio");
    let body = format!(
        r#"
RUNS={runs}
# centiseconds since boot
now() {{ cut -d' ' -f1 /proc/uptime | tr -d . ; }}
bench() {{
    name=$1; shift
    "$@" >/dev/null 2>&1 || echo "$name warm-up failed: $?" >> $R/failures.out
    i=0; times=""
    while [ $i -lt $RUNS ]; do
        a=$(now); "$@" >/dev/null 2>&1; rc=$?; b=$(now)
        [ $rc -eq 0 ] || echo "$name run $i failed: $rc" >> $R/failures.out
        times="$times $((b - a))"; i=$((i + 1))
    done
    record bench_$name "$times"
}}
touch $R/failures.out
bench process P hull run --rm --isolation=process $I true
bench vm hull run --rm --isolation=vm $I true
bench hull_vmm_initramfs hull-vmm --kernel $K --initramfs /guest/true-initramfs.cpio --cmdline '{GUEST_CMDLINE}' --memory 256 --serial none
bench qemu_microvm qemu-system-x86_64 -M microvm,acpi=off -enable-kvm -cpu host -smp 1 -m 256 -nodefaults -no-user-config -display none -no-reboot -serial none -kernel $K -initrd /guest/true-initramfs.cpio -append '{GUEST_CMDLINE} reboot=t'
emit $R/failures.out
"#
    );
    let mut r = vm_common::Results::collect(&vm_common::VmTestHost::Harness(harness), &body);
    let failures = r.out("failures").to_string();
    r.check(
        failures.is_empty(),
        format!("bench runs failed: {failures}"),
    );
    let median = |name: &str, r: &vm_common::Results| -> Option<f64> {
        let mut v: Vec<f64> = r
            .out(&format!("bench_{name}"))
            .split_whitespace()
            .filter_map(|t| t.parse::<f64>().ok())
            .map(|cs| cs / 100.0)
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied()
    };
    println!("\nend-to-end, median of {runs} runs, seconds (under TCG in the nested harness):");
    let subjects = ["process", "vm", "hull_vmm_initramfs", "qemu_microvm"];
    let mut m = std::collections::HashMap::new();
    for s in subjects {
        let med = median(s, &r);
        println!(
            "  {s:<20} {:>8.2}   raw (centiseconds): {}",
            med.unwrap_or(f64::NAN),
            r.out(&format!("bench_{s}")).trim()
        );
        r.check(med.is_some(), format!("no timings for {s}"));
        m.insert(s, med.unwrap_or(f64::NAN));
    }
    println!(
        "ratios: vm/process = {:.1}x, vm/qemu-microvm = {:.2}x, vm/hull-vmm-initramfs = {:.2}x, \
         hull-vmm-initramfs/qemu-microvm = {:.2}x",
        m["vm"] / m["process"],
        m["vm"] / m["qemu_microvm"],
        m["vm"] / m["hull_vmm_initramfs"],
        m["hull_vmm_initramfs"] / m["qemu_microvm"],
    );
    r.finish();
}
