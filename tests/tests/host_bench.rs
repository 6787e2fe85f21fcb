//! `hull bench` as a user runs it: the report's shape, that every requested subject is
//! measured or says why not, a well-formed SVG, clear errors for bad flags, and nothing left
//! behind. Never timings: those are the bench's output, not something a test can assert.

use std::path::{Path, PathBuf};
use std::process::Output;

use hull_tests::TestRoot;
use serde_json::Value;

const ALL_SUBJECTS: [&str; 5] = ["hull-process", "hull-vm", "crun", "runc", "qemu-microvm"];

/// A state root holding `hull/busybox:latest`, a one-layer image of the static busybox.
fn root_with_busybox() -> TestRoot {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "/bin/busybox is missing: apt-get install busybox-static"
    );
    BENCH_CGROUPS_BEFORE.get_or_init(bench_cgroups);
    let root = TestRoot::new();
    let rootfs = root.path().join("busybox-rootfs");
    for dir in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(dir)).unwrap();
    }
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "echo", "cat", "sleep", "true"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    root.ok([
        "image",
        "import",
        "--rootfs",
        rootfs.to_str().unwrap(),
        "-t",
        "hull/busybox:latest",
        "--env",
        "PATH=/bin",
    ]);
    std::fs::remove_dir_all(&rootfs).unwrap();
    root
}

fn installed(program: &str) -> bool {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .any(|dir| !dir.is_empty() && Path::new(dir).join(program).is_file())
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bench JSON did not parse ({e}):\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn subject<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("subject {name} missing from {report:#}"))
}

/// A summary must be internally consistent: n samples, min <= median <= p95 <= max.
fn assert_summary(summary: &Value, n: u64, what: &str) {
    assert_eq!(summary["n"], n, "{what}: {summary}");
    let get = |k: &str| {
        summary[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{what}.{k}: {summary}"))
    };
    let (min, median, p95, max) = (get("min"), get("median"), get("p95"), get("max"));
    assert!(
        0.0 <= min && min <= median && median <= p95 && p95 <= max,
        "{what}: {summary}"
    );
}

/// hull-bench cgroups already on this host when this binary's first bench started (left by
/// an earlier, killed run): not counted against these tests.
static BENCH_CGROUPS_BEFORE: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();

/// Every `hull-bench-*` cgroup in every hierarchy, directly or under `hull/`.
fn bench_cgroups() -> Vec<PathBuf> {
    let mut cgroups = Vec::new();
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        for dir in [hierarchy.path(), hierarchy.path().join("hull")] {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().starts_with("hull-bench-") {
                        cgroups.push(e.path());
                    }
                }
            }
        }
    }
    cgroups
}

/// Things a bench run must not leave: mounts under the state root, cgroups, processes,
/// scratch dirs.
fn assert_nothing_left(root: &TestRoot) {
    let root_path = root.path().to_str().unwrap().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&root_path)).collect();
    assert!(left.is_empty(), "mounts left behind: {left:#?}");

    // Another bench may run at the same time on this host; any hull-bench cgroup without a
    // live process that was not there before this binary's first bench is a leak of ours.
    let before = BENCH_CGROUPS_BEFORE.get().cloned().unwrap_or_default();
    let stale: Vec<PathBuf> = bench_cgroups()
        .into_iter()
        .filter(|p| !before.contains(p))
        .filter(|p| {
            std::fs::read_to_string(p.join("cgroup.procs")).is_ok_and(|s| s.trim().is_empty())
        })
        .collect();
    assert!(stale.is_empty(), "cgroups left behind: {stale:#?}");

    let bench_dir = root.path().join("run/bench");
    let leftovers: Vec<_> = std::fs::read_dir(&bench_dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "scratch left behind: {leftovers:#?}");

    let ids = root.ok(["ps", "-a", "-q"]);
    assert!(ids.trim().is_empty(), "hull containers left behind: {ids}");
    let containers = root.path().join("run/containers");
    let left: Vec<_> = std::fs::read_dir(&containers)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    !p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "container state left behind: {left:#?}");
    let names = containers.join(".names");
    let names_left: Vec<_> = std::fs::read_dir(&names)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        names_left.is_empty(),
        "container names left behind: {names_left:#?}"
    );

    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(
            !cmdline.contains(&root_path),
            "process left behind: {cmdline}"
        );
    }
}

#[test]
fn every_subject_is_measured_or_says_why_and_nothing_is_left() {
    assert!(hull_tests::is_root(), "hull bench needs root");
    let root = root_with_busybox();
    let svg = root.path().join("chart.svg");
    let runs = 3;
    let out = root.run([
        "bench",
        "--runs",
        &runs.to_string(),
        "--warmup",
        "1",
        "--density",
        "2",
        "--format",
        "json",
        "--svg",
        svg.to_str().unwrap(),
    ]);
    let report = json_of(&out);
    assert_eq!(report["schema"], "hull-bench/1");

    // Conditions recorded with the results.
    let env = &report["environment"];
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(env["kernel"], kernel.trim());
    let pvm = Path::new("/sys/module/kvm_pvm").exists();
    assert_eq!(env["kvm"] == "pvm", pvm, "{env}");
    assert_eq!(report["settings"]["runs"], runs);
    assert_eq!(report["settings"]["image"], "hull/busybox:latest");

    // Every requested subject appears once, measured or with a reason.
    let subjects = report["subjects"].as_array().unwrap();
    assert_eq!(subjects.len(), ALL_SUBJECTS.len(), "{report:#}");
    for name in ALL_SUBJECTS {
        let s = subject(&report, name);
        if s["available"] == true {
            assert_eq!(s["runs_ok"], runs, "{name}: {s:#}");
            for metric in ["start_latency_ms", "end_to_end_ms", "teardown_ms"] {
                assert_summary(&s[metric], runs, &format!("{name}.{metric}"));
            }
            let density = &s["density"];
            assert_eq!(density["started"], 2, "{name}: {density}");
            assert_eq!(density["answering"], 2, "{name}: {density}");
            assert_summary(&density["pss_kib"], 2, &format!("{name}.pss_kib"));
            assert!(density["pss_kib"]["min"].as_f64().unwrap() > 0.0);
        } else {
            let reason = s["unavailable_reason"].as_str().unwrap_or("");
            assert!(
                !reason.is_empty(),
                "{name} unavailable without a reason: {s:#}"
            );
        }
    }
    // Peers that are installed here must really have been measured.
    for peer in ["crun", "runc"] {
        if installed(peer) {
            assert_eq!(
                subject(&report, peer)["available"],
                true,
                "{peer} is installed"
            );
        }
    }
    // On a PVM host, VM mode cannot run directly, and the bench says so.
    if pvm {
        let vm = subject(&report, "hull-vm");
        assert_eq!(vm["available"], false);
        assert!(vm["unavailable_reason"].as_str().unwrap().contains("PVM"));
    }
    // Ratios are between measured subjects only.
    for r in report["ratios"].as_array().unwrap() {
        for side in ["subject", "baseline"] {
            let name = r[side].as_str().unwrap();
            assert_eq!(subject(&report, name)["available"], true, "{r}");
        }
        assert!(r["ratio"].as_f64().unwrap() > 0.0);
    }

    // The SVG is well-formed and names every measured subject.
    let text = std::fs::read_to_string(&svg).expect("--svg file written");
    let doc = roxmltree::Document::parse(&text).expect("SVG is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect();
    for s in subjects.iter().filter(|s| s["available"] == true) {
        let name = s["name"].as_str().unwrap();
        assert!(
            texts.iter().any(|t| t.starts_with(name)),
            "{name} not in the chart"
        );
    }

    let measured = subjects.iter().any(|s| s["runs_ok"].as_u64() > Some(0));
    assert_eq!(out.status.code(), Some(if measured { 0 } else { 1 }));

    // A saved report renders again, identically, without measuring anything.
    let saved = root.path().join("saved.json");
    std::fs::write(&saved, &out.stdout).unwrap();
    let again = root.run([
        "bench",
        "--from-json",
        saved.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(again.status.success());
    assert_eq!(json_of(&again), report);
    let table = root.ok(["bench", "--from-json", saved.to_str().unwrap()]);
    assert!(
        table.starts_with("hull bench: hull/busybox:latest"),
        "{table}"
    );
    assert_nothing_left(&root);
}

#[test]
fn table_lists_measured_subjects_and_reasons() {
    let root = root_with_busybox();
    let out = root.run([
        "bench",
        "--runs",
        "1",
        "--warmup",
        "0",
        "--density",
        "0",
        "--peers",
        "runc,qemu-microvm",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("hull bench: hull/busybox:latest"),
        "{text}"
    );
    assert!(text.contains("start latency to first output"), "{text}");
    if installed("runc") {
        assert!(text.contains("runc (process)"), "{text}");
    }
    if Path::new("/sys/module/kvm_pvm").exists() {
        let not_measured = text
            .split("not measured:")
            .nth(1)
            .unwrap_or_else(|| panic!("no 'not measured' section on a PVM host:\n{text}"));
        assert!(not_measured.contains("hull-vm"), "{text}");
        assert!(not_measured.contains("qemu-microvm"), "{text}");
    }
    assert!(!text.contains("crun"), "crun was not requested:\n{text}");
    assert_nothing_left(&root);
}

#[test]
fn nothing_measurable_exits_1_with_reasons() {
    if !Path::new("/sys/module/kvm_pvm").exists() {
        // On a host with hardware KVM, VM mode may well be measurable.
        return;
    }
    let root = root_with_busybox();
    let out = root.run([
        "bench",
        "--isolation",
        "vm",
        "--peers",
        "none",
        "--runs",
        "1",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report = json_of(&out);
    assert_eq!(report["subjects"].as_array().unwrap().len(), 1);
    assert_eq!(subject(&report, "hull-vm")["available"], false);
}

fn assert_usage_error(root: &TestRoot, args: &[&str], mentions: &[&str]) {
    let out = root.run(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(out.stdout.is_empty(), "{args:?} printed a report");
    let err = String::from_utf8_lossy(&out.stderr);
    for m in mentions {
        assert!(
            err.contains(m),
            "{args:?}: error does not mention {m:?}: {err}"
        );
    }
}

#[test]
fn bad_flags_give_clear_errors_and_measure_nothing() {
    let root = root_with_busybox();
    assert_usage_error(&root, &["bench", "--runs", "0"], &["--runs", "at least 1"]);
    assert_usage_error(
        &root,
        &["bench", "--isolation", "kvm"],
        &["kvm", "process", "vm"],
    );
    assert_usage_error(&root, &["bench", "--peers", "podman"], &["podman", "crun"]);
    assert_usage_error(
        &root,
        &["bench", "--peers", "none,runc"],
        &["--peers none cannot be combined"],
    );
    assert_usage_error(&root, &["bench", "--timeout", "0"], &["--timeout"]);
    assert_usage_error(&root, &["bench", "--format", "csv"], &["csv", "json"]);
    assert_usage_error(
        &root,
        &["bench", "--svg", "/nonexistent-dir/chart.svg"],
        &["/nonexistent-dir", "does not exist"],
    );
    assert_usage_error(&root, &["bench", "no/such:image"], &["no/such:image"]);
    let junk = root.path().join("junk.json");
    std::fs::write(&junk, "{\"not\": \"a report\"}").unwrap();
    assert_usage_error(
        &root,
        &["bench", "--from-json", junk.to_str().unwrap()],
        &["not a hull bench JSON report"],
    );
    assert_nothing_left(&root);
}
