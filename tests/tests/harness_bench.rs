//! Tier 4: `hull bench --harness` measures VM mode inside the nested harness, where this
//! host's own KVM (PVM) cannot boot the guest, and says that it did.

use std::path::Path;

use hull_tests::harness::Harness;
use hull_tests::TestRoot;
use serde_json::Value;

#[test]
fn bench_in_the_harness_measures_vm_mode_and_says_so() {
    Harness::require();
    let root = TestRoot::new();
    let rootfs = root.path().join("busybox-rootfs");
    for dir in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(dir)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox-static");
    for applet in ["sh", "echo"] {
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
    let svg = root.path().join("harness.svg");
    let out = root.run([
        "bench",
        "--harness",
        "--isolation",
        "vm",
        "--peers",
        "none",
        "--runs",
        "2",
        "--warmup",
        "0",
        "--density",
        "1",
        "--format",
        "json",
        "--svg",
        svg.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); stderr:\n{stderr}"));
    let env = &report["environment"];
    assert_eq!(env["nested_harness"], true, "{env}");
    assert_eq!(
        env["kvm"], "amd-v",
        "the harness's KVM is emulated AMD-V: {env}"
    );
    let host_kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert!(
        env["outer_host"]
            .as_str()
            .is_some_and(|h| h.contains(host_kernel.trim())),
        "the real host is recorded: {env}"
    );
    let subjects = report["subjects"].as_array().unwrap();
    assert_eq!(subjects.len(), 1);
    let vm = &subjects[0];
    assert_eq!(vm["name"], "hull-vm");
    assert_eq!(vm["available"], true, "{vm:#}\nstderr:\n{stderr}");
    assert_eq!(vm["runs_ok"], 2, "{vm:#}");
    assert_eq!(vm["density"]["answering"], 1, "{vm:#}");
    assert!(vm["density"]["pss_kib"]["median"].as_f64().unwrap() > 0.0);
    assert_eq!(out.status.code(), Some(0));
    let chart = std::fs::read_to_string(&svg).unwrap();
    roxmltree::Document::parse(&chart).expect("well-formed SVG");
    assert!(chart.contains("nested harness"));
    // Nothing of the run stays on the host.
    assert!(
        !Path::new(&root.path().join("run/bench")).exists()
            || std::fs::read_dir(root.path().join("run/bench"))
                .unwrap()
                .next()
                .is_none()
    );
}
