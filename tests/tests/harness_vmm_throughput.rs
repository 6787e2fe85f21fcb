//! Tier 4 measurement (ignored by default, run by hand): block and vsock throughput inside a
//! Linux guest under hull-vmm, this build side by side with an earlier one
//! (`HULL_VMM_BEFORE=PATH`, e.g. main's build before the event loop) in the same harness
//! run, alternating, three boots each. Prints one line per boot; asserts only that every
//! transfer completed (speeds are figures for the notes, never asserts).
//!
//! ```sh
//! HULL_VMM_BEFORE=/path/to/old/hull-vmm flock /work/team/harness.lock \
//!   cargo test --release -p hull-tests --test harness_vmm_throughput -- --ignored --nocapture
//! ```

use std::path::PathBuf;
use std::time::Duration;

use hull_tests::guest::{self, GUEST_CMDLINE};
use hull_tests::harness::Harness;

/// Size of the raw disk the guest reads end to end, and of the vsock transfer.
const DISK_MIB: u32 = 256;
const VSOCK_MIB: u32 = 64;
const BOOTS: u32 = 3;

/// The guest reads the whole disk with dd, timed by /proc/uptime (busybox's dd prints no
/// rate), then sends VSOCK_MIB MiB to the host's port 7000.
fn guest_body() -> String {
    format!(
        r#"
t0=$(cut -d' ' -f1 /proc/uptime)
dd if=/dev/vda of=/dev/null bs=1M 2>/dev/null && t1=$(cut -d' ' -f1 /proc/uptime)
echo "blk=$t0 $t1"
echo "vsock=$(hull-probe vsock-send 2 7000 {VSOCK_MIB} 2>&1)"
"#
    )
}

/// MiB/s of a `blk=T0 T1` report (uptime seconds before and after reading the disk).
fn blk_rate(report: &str) -> Option<f64> {
    let mut t = report.split_whitespace().map(|v| v.parse::<f64>().ok());
    let (t0, t1) = (t.next()??, t.next()??);
    (t1 > t0).then(|| f64::from(DISK_MIB) / (t1 - t0))
}

#[test]
#[ignore = "a measurement: run by hand with --ignored (and HULL_VMM_BEFORE for a comparison)"]
fn block_and_vsock_throughput_before_and_after() {
    Harness::require();
    let dir = tempfile::tempdir().unwrap();
    let probe = hull_tests::binary("hull-probe");
    let initramfs = dir.path().join("guest-initramfs.cpio");
    guest::write_initramfs(&initramfs, &probe, &guest_body());
    let mut harness = Harness::new()
        .memory_mib(2048)
        .binary(&probe, "/usr/bin/hull-probe")
        .binary(&hull_tests::binary("hull-vmm"), "/usr/bin/hull-vmm-after")
        .file(&Harness::guest_kernel(), "/guest/vmlinux")
        .file(&initramfs, "/guest/initramfs.cpio");
    let mut builds = vec!["after"];
    if let Some(before) = std::env::var_os("HULL_VMM_BEFORE").map(PathBuf::from) {
        harness = harness.binary(&before, "/usr/bin/hull-vmm-before");
        builds.insert(0, "before");
    }
    let mut script =
        format!("dd if=/dev/zero of=/tmp/disk.img bs=1M count={DISK_MIB} 2>/dev/null\n");
    for boot in 0..BOOTS {
        for build in &builds {
            script.push_str(&format!(
                r#"
rm -f /tmp/v.sock /tmp/v.sock_7000
hull-probe uds-sink /tmp/v.sock_7000 > /tmp/sink.out 2>&1 &
sink=$!
timeout -s KILL 300 hull-vmm-{build} --kernel /guest/vmlinux --initramfs /guest/initramfs.cpio \
  --cmdline '{GUEST_CMDLINE} reboot=k' --memory 256 --disk /tmp/disk.img,ro \
  --vsock /tmp/v.sock --serial stdout > /tmp/serial.log 2> /tmp/vmm.err
echo "{build}-{boot}-exit=$?"
wait $sink
echo "{build}-{boot}-$(grep '^blk=' /tmp/serial.log | tr -d '\r')"
echo "{build}-{boot}-$(grep '^vsock=' /tmp/serial.log | tr -d '\r')"
"#
            ));
        }
    }
    let run = harness.run(&script, Duration::from_secs(1800));
    eprintln!("{run}");
    assert!(run.success(), "{run}");
    for boot in 0..BOOTS {
        for build in &builds {
            assert_eq!(
                run.value(&format!("{build}-{boot}-exit")),
                Some("0"),
                "{run}"
            );
            let blk = run.value(&format!("{build}-{boot}-blk")).unwrap_or("");
            let vsock = run.value(&format!("{build}-{boot}-vsock")).unwrap_or("");
            let rate = blk_rate(blk);
            assert!(rate.is_some(), "{build} boot {boot}: {blk}\n{run}");
            assert!(
                vsock.contains(&format!("got {}", u64::from(VSOCK_MIB) << 20)),
                "{build} boot {boot}: {vsock}\n{run}"
            );
            println!(
                "THROUGHPUT {build} boot {boot}: blk {:.1} MiB/s ({DISK_MIB} MiB) | {vsock}",
                rate.unwrap_or_default()
            );
        }
    }
}
