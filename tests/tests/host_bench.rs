//! `hull bench` as a user runs it: the report's shape, that every requested subject is
//! measured or says why not, a well-formed SVG, clear errors for bad flags, and nothing left
//! behind. Never timings: those are the bench's output, not something a test can assert.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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
static BENCH_CGROUPS_BEFORE: OnceLock<Vec<PathBuf>> = OnceLock::new();

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

fn empty_bench_cgroups() -> Vec<PathBuf> {
    bench_cgroups()
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(p.join("cgroup.procs")).is_ok_and(|s| s.trim().is_empty())
        })
        .collect()
}

/// Things a bench run must not leave: mounts under the state root, cgroups, processes,
/// scratch dirs.
fn assert_nothing_left(root: &TestRoot) {
    let root_path = root.path().to_str().unwrap().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&root_path)).collect();
    assert!(left.is_empty(), "mounts left behind: {left:#?}");

    // Another bench may run at the same time on this host: only hull-bench cgroups that
    // were not there before this binary's first bench count, and one of those that is empty
    // for an instant (created, or being removed by crun/runc) is a leak only if it stays
    // empty for 30 s.
    let before = BENCH_CGROUPS_BEFORE.get().cloned().unwrap_or_default();
    let mut suspects: Vec<PathBuf> = empty_bench_cgroups()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !suspects.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = empty_bench_cgroups();
        suspects.retain(|p| now.contains(p));
    }
    assert!(
        suspects.is_empty(),
        "cgroups left behind (empty for 30 s): {suspects:#?}"
    );

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

fn hardware_kvm() -> bool {
    hull_tests::host_kvm() == hull_tests::HostKvm::Hardware
}

/// A subject that must have been measured: every run worked and its figures hang together
/// (for a command that prints, first output comes before the end; teardown is part of it).
fn assert_measured(report: &Value, name: &str, runs: u64) {
    let s = subject(report, name);
    assert_eq!(s["available"], true, "{name} must be measured here: {s:#}");
    assert_eq!(s["runs_ok"], runs, "{name}: {s:#}");
    assert_eq!(s["errors_total"], 0, "{name}: {s:#}");
    for metric in ["start_latency_ms", "end_to_end_ms", "teardown_ms"] {
        assert_summary(&s[metric], runs, &format!("{name}.{metric}"));
    }
    let median = |m: &str| s[m]["median"].as_f64().unwrap();
    assert!(
        median("start_latency_ms") <= median("end_to_end_ms")
            && median("teardown_ms") <= median("end_to_end_ms"),
        "{name}: start latency and teardown are parts of the end-to-end time: {s:#}"
    );
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
    // hull's process mode always runs on these hosts: the bench must succeed.
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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

    // Every requested subject appears once.
    let subjects = report["subjects"].as_array().unwrap();
    assert_eq!(subjects.len(), ALL_SUBJECTS.len(), "{report:#}");
    for name in ALL_SUBJECTS {
        let s = subject(&report, name);
        if s["available"] != true {
            let reason = s["unavailable_reason"].as_str().unwrap_or("");
            assert!(
                !reason.is_empty(),
                "{name} unavailable without a reason: {s:#}"
            );
        }
    }
    // What must be measured on this host: hull's process mode always; the peers that
    // are installed; VM mode and QEMU microvm where KVM is hardware virtualisation.
    let mut must: Vec<&str> = vec!["hull-process"];
    must.extend(["crun", "runc"].into_iter().filter(|p| installed(p)));
    if hardware_kvm() {
        must.push("hull-vm");
        if installed("qemu-system-x86_64") {
            must.push("qemu-microvm");
        }
    }
    for name in &must {
        assert_measured(&report, name, runs);
        let density = &subject(&report, name)["density"];
        assert_eq!(density["started"], 2, "{name}: {density}");
        assert_eq!(density["answering"], 2, "{name}: {density}");
        assert_summary(&density["pss_kib"], 2, &format!("{name}.pss_kib"));
        assert!(density["pss_kib"]["min"].as_f64().unwrap() > 0.0);
    }
    // On a PVM host VM mode cannot run directly, and the bench says so and what to do.
    if pvm {
        for name in ["hull-vm", "qemu-microvm"] {
            let vm = subject(&report, name);
            assert_eq!(vm["available"], false, "{vm:#}");
            let reason = vm["unavailable_reason"].as_str().unwrap();
            assert!(
                reason.contains("PVM") && reason.contains("--harness"),
                "{reason}"
            );
        }
    }
    // Ratios are between measured subjects only, and every measured peer has one against
    // hull's process mode.
    let ratios = report["ratios"].as_array().unwrap();
    for r in ratios {
        for side in ["subject", "baseline"] {
            let name = r[side].as_str().unwrap();
            assert_eq!(subject(&report, name)["available"], true, "{r}");
        }
        assert!(r["ratio"].as_f64().unwrap() > 0.0);
    }
    for peer in must.iter().filter(|n| !n.starts_with("hull-")) {
        assert!(
            ratios.iter().any(|r| r["subject"] == *peer
                && r["baseline"] == "hull-process"
                && r["metric"] == "end_to_end_ms"),
            "no end-to-end ratio of {peer} to hull-process: {ratios:#?}"
        );
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
    for name in &must {
        assert!(
            texts.iter().any(|t| t.starts_with(name)),
            "{name} not in the chart"
        );
    }

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

/// The figures of one subject's row in the table's section `title`.
fn table_row<'a>(table: &'a str, title: &str, label: &str) -> Option<Vec<&'a str>> {
    let section = table.split(title).nth(1)?;
    let section = section.split("\n\n").next()?;
    section
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .map(|l| l.trim_start()[label.len()..].split_whitespace().collect())
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
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.starts_with("hull bench: hull/busybox:latest"),
        "{text}"
    );
    // hull's process mode has a figure in each per-run section; it is the baseline.
    for title in [
        "start latency to first output",
        "end-to-end run --rm",
        "teardown after last output",
    ] {
        let row = table_row(&text, title, "hull-process (process)")
            .unwrap_or_else(|| panic!("no hull-process row under {title:?}:\n{text}"));
        let median: f64 = row[0]
            .parse()
            .unwrap_or_else(|_| panic!("{title}: {row:?}\n{text}"));
        assert!(median >= 0.0, "{text}");
        assert_eq!(row.last(), Some(&"1.00x"), "{title}: {row:?}\n{text}");
    }
    if installed("runc") {
        let row = table_row(&text, "end-to-end run --rm", "runc (process)")
            .unwrap_or_else(|| panic!("runc is installed but has no row:\n{text}"));
        assert!(
            row.last().is_some_and(|r| r.ends_with('x')),
            "runc has a ratio to hull-process: {row:?}"
        );
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

/// A command that prints nothing has no first output and no last output: its start
/// latency and teardown are "n/a", not its end-to-end time and 0.
#[test]
fn figures_that_cannot_be_measured_are_na() {
    let root = root_with_busybox();
    let args = |format: &'static str| {
        [
            "bench",
            "--isolation",
            "process",
            "--peers",
            "none",
            "--runs",
            "2",
            "--warmup",
            "0",
            "--density",
            "0",
            "--format",
            format,
            "hull/busybox:latest",
            "--",
            "true",
        ]
    };
    let out = root.run(args("json"));
    assert_eq!(out.status.code(), Some(0));
    let report = json_of(&out);
    let s = subject(&report, "hull-process");
    assert_eq!(s["runs_ok"], 2, "{s:#}");
    assert_summary(&s["end_to_end_ms"], 2, "end_to_end_ms");
    assert!(s["start_latency_ms"].is_null(), "{s:#}");
    assert!(s["teardown_ms"].is_null(), "{s:#}");

    let table = root.ok(args("table"));
    for title in [
        "start latency to first output",
        "teardown after last output",
    ] {
        let row = table_row(&table, title, "hull-process (process)")
            .unwrap_or_else(|| panic!("no hull-process row under {title:?}:\n{table}"));
        assert_eq!(&row[..4], ["n/a"; 4], "{title}: {row:?}\n{table}");
    }
    let row = table_row(&table, "end-to-end run --rm", "hull-process (process)").unwrap();
    assert!(row[0].parse::<f64>().is_ok(), "{row:?}\n{table}");
    assert_nothing_left(&root);
}

/// When no subject can be measured (here: the command fails in every runtime, on any
/// host), the bench exits 1 and says why for each.
#[test]
fn nothing_measurable_exits_1_with_reasons() {
    let root = root_with_busybox();
    let out = root.run([
        "bench",
        "--isolation",
        "process,vm",
        "--peers",
        "none",
        "--runs",
        "1",
        "--density",
        "0",
        "--format",
        "json",
        "hull/busybox:latest",
        "--",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report = json_of(&out);
    assert_eq!(report["subjects"].as_array().unwrap().len(), 2);
    let process = subject(&report, "hull-process");
    assert_eq!(process["available"], false, "{process:#}");
    let reason = process["unavailable_reason"].as_str().unwrap();
    assert!(reason.contains("exit status 3"), "{reason}");
    let vm = subject(&report, "hull-vm");
    assert_eq!(vm["available"], false, "{vm:#}");
    assert!(vm["unavailable_reason"]
        .as_str()
        .is_some_and(|r| !r.is_empty()));
    assert!(report["ratios"].as_array().unwrap().is_empty());
    assert_nothing_left(&root);
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

/// An installed hull (`PREFIX/bin/hull`) runs `hull bench --harness` through the
/// `hull-harness` installed with it (`PREFIX/lib/hull/hull-harness`, where
/// scripts/setup.sh puts it), and hands it the parts and peers to carry in: QEMU and its
/// microvm firmware for the qemu-microvm peer. A stand-in hull-harness records its
/// arguments (booting the real harness is tier 4's job: tests/harness_bench.rs).
#[test]
fn bench_harness_uses_the_hull_harness_installed_with_hull() {
    let root = root_with_busybox();
    let prefix = root.path().join("prefix");
    std::fs::create_dir_all(prefix.join("bin")).unwrap();
    std::fs::create_dir_all(prefix.join("lib/hull")).unwrap();
    let hull = prefix.join("bin/hull");
    let args_file = root.path().join("harness-args");
    let fake_text = root.path().join("fake-harness.sh");
    std::fs::write(
        &fake_text,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\necho stand-in-hull-harness-ran >&2\nexit 125\n",
            args_file.display()
        ),
    )
    .unwrap();
    let fake = prefix.join("lib/hull/hull-harness");
    // Installed by another process: a file this (multi-threaded) test process had open
    // for writing could be inherited by a concurrent test's fork and make exec fail with
    // ETXTBSY.
    for (from, to) in [(hull_tests::binary("hull"), &hull), (fake_text, &fake)] {
        let status = std::process::Command::new("install")
            .args(["-m", "0755"])
            .arg(&from)
            .arg(to)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "install {} {}",
            from.display(),
            to.display()
        );
    }
    let bin = hull_tests::bin_dir();
    let out = std::process::Command::new(&hull)
        .arg("--root")
        .arg(root.path())
        .args([
            "bench",
            "--harness",
            "--isolation",
            "vm",
            "--peers",
            "qemu-microvm",
        ])
        .args(["--runs", "1", "--warmup", "0", "--density", "0"])
        .env("HULL_VMM", bin.join("hull-vmm"))
        .env_remove("HULL_HARNESS_BIN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("stand-in-hull-harness-ran"),
        "hull did not run PREFIX/lib/hull/hull-harness: {stderr}"
    );
    let args = std::fs::read_to_string(&args_file).unwrap();
    let carried: Vec<&str> = args.lines().collect();
    for guest in [
        "/usr/bin/hull",
        "/usr/bin/hull-vmm",
        "/usr/local/lib/hull/vmlinux",
    ] {
        assert!(
            carried.iter().any(|a| a.ends_with(&format!("={guest}"))),
            "{guest} not carried in: {carried:?}"
        );
    }
    if installed("qemu-system-x86_64") {
        for guest in ["/usr/bin/qemu-system-x86_64", "/usr/share/qemu/qboot.rom"] {
            assert!(
                carried.iter().any(|a| a.ends_with(&format!("={guest}"))),
                "{guest} not carried in for the qemu-microvm peer: {carried:?}"
            );
        }
    }
    assert_nothing_left(&root);
}
