//! Benchmark (not a test): time from launching the VMM to the guest's /init, hull-vmm
//! against QEMU's `-M microvm`, both booting the same guest kernel (vmlinux) and initramfs
//! with 1 vCPU and 128 MiB, inside one nested-harness run. Boots alternate between the two
//! VMMs so that load on the machine hits both alike; the medians (and the fastest boot,
//! the least disturbed by other load) are printed.
//!
//! Everything runs under TCG inside the harness, so the absolute figures are far above what
//! real hardware gives; only the comparison within one run means something.
//!
//! ```text
//! cargo build --release -p hull-vmm -p hull-tests --bins
//! cargo bench -p hull-tests --bench harness_boot            # HULL_BENCH_BOOTS=N (default 7)
//! ```

use std::time::Duration;

use hull_tests::guest::{self, GUEST_CMDLINE, INIT_MARKER};
use hull_tests::harness::Harness;

/// One boot's figures, from `hull-probe time-to-marker`.
#[derive(Clone, Copy, Debug)]
struct Boot {
    to_init_us: u64,
    to_exit_us: u64,
}

fn main() {
    // `cargo bench` passes --bench; under `cargo test --benches/--all-targets` (no --bench)
    // this is no test and does nothing, rather than boot machines for a minute.
    if !std::env::args().any(|a| a == "--bench") {
        println!("harness_boot: a benchmark; run it with `cargo bench --bench harness_boot`");
        return;
    }
    if let Err(why) = Harness::available() {
        eprintln!("harness_boot: nested harness unavailable: {why}");
        std::process::exit(1);
    }
    let boots: u32 = std::env::var("HULL_BENCH_BOOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=50).contains(n))
        .unwrap_or(7);

    let dir = tempfile::tempdir().expect("temp dir");
    let probe = hull_tests::binary("hull-probe");
    let vmm = hull_tests::binary("hull-vmm");
    let initramfs = dir.path().join("guest-initramfs.cpio");
    // The guest reaches /init, prints the marker, and powers off at once.
    guest::write_initramfs(&initramfs, &probe, "true");

    let hull_vmm = format!(
        "hull-vmm --kernel /guest/vmlinux --initramfs /guest/initramfs.cpio \
         --cmdline '{GUEST_CMDLINE} reboot=k' --memory 128 --vcpus 1 --serial stdout"
    );
    let qemu = format!(
        "qemu-system-x86_64 -M microvm,acpi=off -enable-kvm -cpu host -smp 1 -m 128 \
         -nodefaults -no-user-config -display none -no-reboot -serial stdio \
         -kernel /guest/vmlinux -initrd /guest/initramfs.cpio \
         -append '{GUEST_CMDLINE} reboot=t'"
    );
    let script = format!(
        r#"
for i in $(seq 1 {boots}); do
    echo "hull-vmm $(hull-probe time-to-marker {INIT_MARKER} 120 /tmp/hull-vmm.log -- {hull_vmm} 2>&1)"
    echo "qemu-microvm $(hull-probe time-to-marker {INIT_MARKER} 120 /tmp/qemu.log -- {qemu} 2>&1)"
done
"#
    );
    let run = Harness::new()
        .binary(&probe, "/usr/bin/hull-probe")
        .binary(&vmm, "/usr/bin/hull-vmm")
        .qemu()
        .file(&Harness::guest_kernel(), "/guest/vmlinux")
        .file(&initramfs, "/guest/initramfs.cpio")
        .run(&script, Duration::from_secs(60 + 60 * u64::from(boots)));
    if !run.success() {
        eprintln!("harness_boot: the harness run failed\n{run}");
        std::process::exit(1);
    }

    println!(
        "boot to guest /init inside the nested harness (TCG + emulated AMD-V), {boots} boots each"
    );
    println!("guest: {}", Harness::guest_kernel().display());
    println!(
        "{:<14} {:>16} {:>16} {:>16} {:>8}",
        "vmm", "median to /init", "fastest to /init", "median to exit", "boots"
    );
    let mut failed = false;
    for name in ["hull-vmm", "qemu-microvm"] {
        let (boots_ok, errors) = parse(&run.output, name);
        for error in &errors {
            eprintln!("{name}: {error}");
        }
        failed |= !errors.is_empty();
        if boots_ok.is_empty() {
            println!("{name:<14} {:>16} {:>16} {:>16} {:>8}", "-", "-", "-", 0);
            continue;
        }
        let to_init = median(boots_ok.iter().map(|b| b.to_init_us).collect());
        let fastest = boots_ok.iter().map(|b| b.to_init_us).min().unwrap_or(0);
        let to_exit = median(boots_ok.iter().map(|b| b.to_exit_us).collect());
        println!(
            "{name:<14} {:>13.1} ms {:>13.1} ms {:>13.1} ms {:>8}",
            to_init as f64 / 1000.0,
            fastest as f64 / 1000.0,
            to_exit as f64 / 1000.0,
            boots_ok.len()
        );
        let all: Vec<String> = boots_ok
            .iter()
            .map(|b| format!("{:.0}", b.to_init_us as f64 / 1000.0))
            .collect();
        println!("{:<14} to /init, every boot (ms): {}", "", all.join(" "));
    }
    if failed {
        std::process::exit(1);
    }
}

/// The boots of `name` in the script output, and the lines that were not a clean boot.
fn parse(output: &str, name: &str) -> (Vec<Boot>, Vec<String>) {
    let mut boots = Vec::new();
    let mut errors = Vec::new();
    for line in output.lines() {
        let Some(rest) = line.strip_prefix(name).and_then(|r| r.strip_prefix(' ')) else {
            continue;
        };
        let field = |key: &str| {
            rest.split_whitespace()
                .find_map(|f| f.strip_prefix(key))
                .and_then(|v| v.parse::<u64>().ok())
        };
        match (
            field("marker_us="),
            field("total_us="),
            rest.contains("exit=0"),
        ) {
            (Some(to_init_us), Some(to_exit_us), true) => boots.push(Boot {
                to_init_us,
                to_exit_us,
            }),
            _ => errors.push(rest.to_string()),
        }
    }
    (boots, errors)
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2
    }
}
