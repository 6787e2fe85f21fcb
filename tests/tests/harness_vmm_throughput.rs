//! Tier 4 measurement (ignored by default, run by hand): block and vsock throughput inside a
//! Linux guest under hull-vmm, this build side by side with an earlier one
//! (`HULL_VMM_BEFORE=PATH`, e.g. main's build before the event loop) in the same harness
//! run, alternating, three boots each; this build runs both unjailed (`after`) and jailed
//! as hull starts it (`jailed`: PID 1 of a new PID namespace, `--jail` into a directory of
//! its own, an unprivileged uid). Prints one line per boot and the medians; asserts only
//! that every transfer completed (speeds are figures for the notes, never asserts).
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
/// The jailed VMM's uid and gid (any unused id: the harness machine is ours alone).
const JAIL_ID: u32 = 1_000_000;

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
    let mut builds = vec!["after", "jailed"];
    if let Some(before) = std::env::var_os("HULL_VMM_BEFORE").map(PathBuf::from) {
        harness = harness.binary(&before, "/usr/bin/hull-vmm-before");
        builds.insert(0, "before");
    }
    let mut script =
        format!("dd if=/dev/zero of=/tmp/disk.img bs=1M count={DISK_MIB} 2>/dev/null\n");
    // The jail pivots into its directory, which the initramfs root cannot do: the jailed
    // VMM runs chrooted into a tmpfs holding binds of the root's directories (as the
    // tier-4 tests run hull).
    script.push('\n');
    script.push_str(hull_tests::newroot_setup!());
    let args = format!(
        "--kernel /guest/vmlinux --initramfs /guest/initramfs.cpio --cmdline \"{GUEST_CMDLINE} \
         reboot=k\" --memory 256 --disk /tmp/disk.img,ro --serial stdout"
    );
    for boot in 0..BOOTS {
        for build in &builds {
            let (dir, vmm) = match *build {
                "jailed" => (
                    "/tmp/jail",
                    format!(
                        "chroot /newroot sh -c 'cd /tmp/jail && exec unshare -p -f \
                         hull-vmm-after {args} --vsock v.sock --jail /tmp/jail \
                         --jail-uid {JAIL_ID} --jail-gid {JAIL_ID}'"
                    ),
                ),
                _ => (
                    "/tmp",
                    format!("hull-vmm-{build} {args} --vsock /tmp/v.sock"),
                ),
            };
            script.push_str(&format!(
                r#"
rm -rf /tmp/jail /tmp/v.sock /tmp/v.sock_7000
mkdir -m 700 /tmp/jail && chown {JAIL_ID}:{JAIL_ID} /tmp/jail
# umask 0: the jailed VMM (another uid) must be able to connect to the sink.
(umask 000; exec hull-probe uds-sink {dir}/v.sock_7000 > /tmp/sink.out 2>&1) &
sink=$!
timeout -s KILL 300 {vmm} > /tmp/serial.log 2> /tmp/vmm.err
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
    let mut rates: Vec<(Vec<f64>, Vec<f64>)> = vec![Default::default(); builds.len()];
    for boot in 0..BOOTS {
        for (build, (blk_rates, vsock_rates)) in builds.iter().zip(&mut rates) {
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
            blk_rates.push(rate.unwrap_or_default());
            vsock_rates.extend(vsock_rate(vsock));
            println!(
                "THROUGHPUT {build} boot {boot}: blk {:.1} MiB/s ({DISK_MIB} MiB) | {vsock}",
                rate.unwrap_or_default()
            );
        }
    }
    for (build, (blk_rates, vsock_rates)) in builds.iter().zip(&mut rates) {
        println!(
            "THROUGHPUT {build} median: blk {:.1} MiB/s, vsock {:.1} MiB/s",
            median(blk_rates),
            median(vsock_rates)
        );
    }
}

/// The MiB/s a `vsock-send` report ends with (`... MiB/s`), if it says.
fn vsock_rate(report: &str) -> Option<f64> {
    let words: Vec<&str> = report.split_whitespace().collect();
    let at = words.iter().position(|w| w.starts_with("MiB/s"))?;
    words.get(at.checked_sub(1)?)?.parse().ok()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}
