//! Benchmark (not a test of speed): file I/O of a container, in one nested-harness run,
//! process model against vm model, in the writable layer (process: overlayfs upper on the
//! host's disk; vm: ext4 on the per-container virtio-blk disk under the guest's overlay)
//! and on a `-v` volume (process: a bind mount; vm: virtio-fs served by virtiofsd):
//!
//! - sequential: `dd` of 64 MiB in 1 MiB blocks with `conv=fsync`;
//! - small files: 300 files of 4 KiB created (shell builtin `printf`, no process per file)
//!   then `sync`; read back and removed.
//!
//! Times are taken inside the container from `/proc/uptime` (10 ms steps; every figure is
//! far above that under TCG). Prints medians and vm/process ratios; asserts only that every
//! run succeeded. Everything runs under TCG inside the harness: only the ratios carry over.
//!
//! Run: `cargo build --release --workspace --bins` (and the static agent, see README), then
//! `cargo bench -p hull-tests --bench harness_storage` (HULL_BENCH_RUNS: runs per subject,
//! default 3).

#[path = "../tests/vm_common/mod.rs"]
mod vm_common;

use std::path::Path;

/// The measurement, run by `sh -c SCRIPT DIR` in the container: prints
/// `SEQ_CS SMALL_CREATE_CS SMALL_READ_RM_CS` (centiseconds).
const WORKLOAD: &str = r#"D=$0; mkdir -p $D || exit 3
t() { read u rest < /proc/uptime; echo ${u/./}; }
t0=$(t); dd if=/dev/zero of=$D/seq bs=1M count=64 conv=fsync 2>/dev/null || exit 4; t1=$(t)
mkdir $D/small; i=0
while [ $i -lt 300 ]; do printf "%4096s" x > $D/small/f$i || exit 5; i=$((i+1)); done
sync; t2=$(t)
cat $D/small/* > /dev/null || exit 6; rm -rf $D/small $D/seq; t3=$(t)
echo $((t1-t0)) $((t2-t1)) $((t3-t2))"#;

const SUBJECTS: [(&str, &str); 4] = [
    ("process_layer", "--isolation=process"),
    ("process_volume", "--isolation=process -v /tmp/vol-p:/vol"),
    ("vm_layer", "--isolation=vm"),
    ("vm_volume", "--isolation=vm -v /tmp/vol-v:/vol"),
];

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("harness_storage: a benchmark; run it with `cargo bench --bench harness_storage`");
        return;
    }
    let runs: u32 = std::env::var("HULL_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let rootfs = vm_common::busybox_rootfs();
    let mut body = String::from("mkdir -p /tmp/vol-p /tmp/vol-v\ncat > /tmp/workload <<'SCRIPT'\n");
    body.push_str(WORKLOAD);
    body.push_str("\nSCRIPT\n");
    // Interleaved: one run of each subject per round.
    for i in 0..runs {
        for (name, flags) in SUBJECTS {
            let dir = if name.ends_with("volume") {
                "/vol/bench"
            } else {
                "/bench"
            };
            body.push_str(&format!(
                "t {name}_{i} hull run --rm {flags} $I sh -c \"$(cat /tmp/workload)\" {dir}\n"
            ));
        }
    }
    let harness = vm_common::vm_harness(rootfs.path()).binary(
        Path::new("/usr/lib/qemu/virtiofsd"),
        "/usr/lib/qemu/virtiofsd",
    );
    let mut r = vm_common::Results::collect(&vm_common::VmTestHost::Harness(harness), &body);

    // [subject][measure] -> centiseconds per run.
    let mut figures = vec![vec![Vec::new(); 3]; SUBJECTS.len()];
    for i in 0..runs {
        for (s, (name, _)) in SUBJECTS.iter().enumerate() {
            let step = format!("{name}_{i}");
            r.expect_code(&step, 0);
            let values: Vec<u64> = r
                .out(&step)
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            r.check(values.len() == 3, format!("{step}: {:?}", r.out(&step)));
            for (m, v) in values.into_iter().take(3).enumerate() {
                figures[s][m].push(v);
            }
        }
    }
    let median = |v: &[u64]| -> Option<f64> {
        let mut v = v.to_vec();
        v.sort_unstable();
        (!v.is_empty()).then(|| v[v.len() / 2] as f64 * 10.0)
    };
    println!(
        "\nfile I/O in one harness run (TCG: compare ratios only), median of {runs} runs, ms:"
    );
    println!(
        "{:<16} {:>14} {:>18} {:>18}",
        "subject", "seq 64 MiB", "300x4K create", "300x4K read+rm"
    );
    let med: Vec<Vec<Option<f64>>> = figures
        .iter()
        .map(|f| f.iter().map(|m| median(m)).collect())
        .collect();
    let show = |v: Option<f64>| v.map_or("n/a".to_string(), |x| format!("{x:.0}"));
    for (s, (name, _)) in SUBJECTS.iter().enumerate() {
        println!(
            "{:<16} {:>14} {:>18} {:>18}",
            name,
            show(med[s][0]),
            show(med[s][1]),
            show(med[s][2])
        );
    }
    println!("\nvm / process (same place):");
    for (label, p, v) in [("layer", 0, 2), ("volume", 1, 3)] {
        let ratio = |m: usize| match (med[p][m], med[v][m]) {
            (Some(a), Some(b)) if a > 0.0 => format!("{:.2}x", b / a),
            _ => "n/a".into(),
        };
        println!(
            "{:<16} {:>14} {:>18} {:>18}",
            label,
            ratio(0),
            ratio(1),
            ratio(2)
        );
    }
    r.finish();
}
