//! Tier 4: `hull bench --harness` measures VM mode inside the nested harness, where this
//! host's own KVM (PVM) cannot boot the guest, next to QEMU microvm booting the same kernel
//! and image in the same machine, reports their ratio, and says that it ran there.

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
        "qemu-microvm",
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
    assert_eq!(subjects.len(), 2, "{report:#}");
    for (name, vm) in ["hull-vm", "qemu-microvm"].iter().zip(subjects) {
        assert_eq!(vm["name"], *name);
        assert_eq!(vm["available"], true, "{vm:#}\nstderr:\n{stderr}");
        assert_eq!(vm["runs_ok"], 2, "{vm:#}\nstderr:\n{stderr}");
        assert_eq!(vm["errors_total"], 0, "{vm:#}");
        for metric in ["start_latency_ms", "end_to_end_ms", "teardown_ms"] {
            assert_eq!(vm[metric]["n"], 2, "{name}.{metric}: {vm:#}");
        }
        assert_eq!(vm["density"]["answering"], 1, "{vm:#}");
        assert!(vm["density"]["pss_kib"]["median"].as_f64().unwrap() > 0.0);
    }
    // The two VMMs are compared within this one run: QEMU microvm against hull-vm.
    let ratio = report["ratios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["subject"] == "qemu-microvm"
                && r["baseline"] == "hull-vm"
                && r["metric"] == "end_to_end_ms"
        })
        .unwrap_or_else(|| panic!("no qemu-microvm / hull-vm ratio: {report:#}"));
    assert!(ratio["ratio"].as_f64().unwrap() > 0.0, "{ratio}");
    assert_eq!(out.status.code(), Some(0));
    let chart = std::fs::read_to_string(&svg).unwrap();
    roxmltree::Document::parse(&chart).expect("well-formed SVG");
    assert!(chart.contains("nested harness"));
    assert!(chart.contains("qemu-microvm"));
    // Nothing of the run stays on the host.
    assert!(
        !Path::new(&root.path().join("run/bench")).exists()
            || std::fs::read_dir(root.path().join("run/bench"))
                .unwrap()
                .next()
                .is_none()
    );
}
