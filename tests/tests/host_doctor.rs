//! `hull doctor` on this machine and on crafted host trees, driven through the CLI.

use std::path::Path;

use hull_tests::TestRoot;
use serde_json::Value;

const EXIT_PROCESS_UNUSABLE: i32 = 4;
const EXIT_VM_UNUSABLE: i32 = 8;

fn doctor_json(root: &TestRoot, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["doctor", "--format", "json"];
    args.extend_from_slice(extra);
    let out = root.run(&args);
    let code = out.status.code().expect("hull doctor exited by a signal");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor JSON did not parse ({e}):\n{}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, json)
}

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks is an array")
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"))
}

#[test]
fn reports_pvm_exactly_when_the_kvm_pvm_module_is_loaded() {
    let root = TestRoot::new();
    let (code, report) = doctor_json(&root, &[]);
    let pvm_here = Path::new("/sys/module/kvm_pvm").exists();
    assert_eq!(
        report["host"]["kvm"] == "pvm",
        pvm_here,
        "kvm kind {} but /sys/module/kvm_pvm exists: {pvm_here}",
        report["host"]["kvm"]
    );
    assert_eq!(
        report["exit_code"], code,
        "JSON exit_code matches the exit status"
    );
    if pvm_here {
        assert_eq!(report["verdict"]["vm"]["usable"], false);
        assert_ne!(code & EXIT_VM_UNUSABLE, 0);
        let kvm = check(&report, "kvm");
        assert_eq!(kvm["status"], "fail");
        assert!(kvm["fix"].as_str().unwrap().contains("nested harness"));
    }
    // Every check says what it found; every problem says how to fix it.
    for c in report["checks"].as_array().unwrap() {
        assert!(!c["finding"].as_str().unwrap().is_empty(), "{c}");
        if c["status"] != "ok" {
            assert!(c["fix"].as_str().is_some_and(|f| !f.is_empty()), "{c}");
        }
    }
}

#[test]
fn cgroup_version_matches_the_mounts_of_this_host() {
    let root = TestRoot::new();
    let (_, report) = doctor_json(&root, &[]);
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let v1 = mounts
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("cgroup"));
    let v2 = mounts
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("cgroup2"));
    let expected = match (v1, v2) {
        (true, true) => "hybrid",
        (true, false) => "v1",
        (false, true) => "v2",
        (false, false) => "none",
    };
    assert_eq!(report["host"]["cgroup_version"], expected);
}

#[test]
fn table_output_names_each_model_and_gives_fixes() {
    let root = TestRoot::new();
    let out = root.run(["doctor"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("process:"), "{text}");
    assert!(text.contains("vm:"), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("[FAIL]") || line.starts_with("[warn]") {
            assert!(
                lines.get(i + 1).is_some_and(|next| next.contains("fix:")),
                "no fix after {line}"
            );
        }
    }
    assert!(text.contains(&format!("exit status {}", out.status.code().unwrap())));
}

#[test]
fn crafted_host_without_overlay_or_kvm_fails_both_bits() {
    let host = tempfile::tempdir().unwrap();
    let write = |rel: &str, text: &str| {
        let p = host.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("proc/filesystems", "nodev\tproc\n\text4\n");
    write(
        "proc/self/mounts",
        "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n",
    );
    write("sys/fs/cgroup/cgroup.controllers", "cpu memory pids\n");
    write("proc/cpuinfo", "flags\t\t: fpu sse2\n");
    let root = TestRoot::new();
    let (code, report) = doctor_json(&root, &["--host-root", host.path().to_str().unwrap()]);
    assert_eq!(report["host"]["kvm"], "none");
    assert_eq!(report["host"]["cgroup_version"], "v2");
    assert_eq!(check(&report, "overlayfs")["status"], "fail");
    assert_eq!(check(&report, "kvm")["status"], "fail");
    // No CNI plugins in the crafted tree: a warning naming them, not a verdict.
    let net = check(&report, "network");
    assert_eq!(net["status"], "warn");
    assert!(
        net["finding"]
            .as_str()
            .unwrap()
            .contains("bridge, host-local"),
        "{net}"
    );
    assert_eq!(code, EXIT_PROCESS_UNUSABLE | EXIT_VM_UNUSABLE);
}

#[test]
fn network_check_finds_the_cni_plugins_and_iptables_hull_uses() {
    let root = TestRoot::new();
    let (code, report) = doctor_json(&root, &[]);
    let net = check(&report, "network");
    assert_eq!(net["status"], "ok", "{net}");
    assert!(
        net["finding"]
            .as_str()
            .unwrap()
            .contains("reads the nat table"),
        "{net}"
    );
    // The plugin directory the config names is where the check looks.
    std::fs::write(
        root.path().join("config.json"),
        r#"{"network": {"cni_path": ["/nonexistent/cni"]}}"#,
    )
    .unwrap();
    let (code_without, report) = doctor_json(&root, &[]);
    let net = check(&report, "network");
    assert_eq!(net["status"], "warn", "{net}");
    let finding = net["finding"].as_str().unwrap();
    assert!(
        finding.contains("/nonexistent/cni") && finding.contains("portmap"),
        "{finding}"
    );
    assert!(net["fix"]
        .as_str()
        .unwrap()
        .contains("containernetworking-plugins"));
    assert_eq!(code_without, code, "a warning does not change the verdict");
}

#[test]
fn unwritable_state_root_is_reported_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let state = file.join("state");
    let out = std::process::Command::new(hull_tests::binary("hull"))
        .arg("--root")
        .arg(&state)
        .args(["doctor", "--format", "json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = check(&report, "state-dirs");
    assert_eq!(c["status"], "fail");
    assert!(c["finding"].as_str().unwrap().contains("not a directory"));
    let code = out.status.code().unwrap();
    assert_eq!(code & (EXIT_PROCESS_UNUSABLE | EXIT_VM_UNUSABLE), 12);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
}

#[test]
fn bad_flags_give_clear_errors() {
    let root = TestRoot::new();
    let out = root.run(["doctor", "--format", "yaml"]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("yaml") && err.contains("table"), "{err}");

    let out = root.run(["doctor", "--host-root", "/nonexistent/hull-host"]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/hull-host"), "{err}");
}
