//! containerd 1.6 with hull-oci: `ctr run --runc-binary` (the runc shim running hull-oci),
//! and the CRI plugin with the runtime handler `hull`, driven through the CRI API by a
//! Python client the way a kubelet does for a pod whose RuntimeClass names that handler.
//! The handler `hull-vm` and `ctr run` in the vm model run in the nested harness.

use std::path::Path;

use hull_tests::oci::{busybox_archive, runtime, show, unique, Containerd, Podman};

const IMAGE: &str = "localhost/hull-oci-test/busybox:1";
const PAUSE: &str = "registry.k8s.io/pause:3.6";

/// A containerd with the busybox image in `namespace` (and the pause image for the CRI).
fn containerd_with_images(namespace: &str, work: &Path) -> Containerd {
    let rt = runtime();
    let ctd = Containerd::start(&[("hull", rt.as_path())], PAUSE);
    let podman = Podman::new();
    let app = work.join("app.tar");
    busybox_archive(&podman, IMAGE, &["sh"], &app);
    ctd.import(namespace, &app, None);
    if namespace == "k8s.io" {
        // The pod sandbox: waits for SIGTERM, as the pause image does.
        let pause = work.join("pause.tar");
        busybox_archive(
            &podman,
            PAUSE,
            &["sh", "-c", "trap 'exit 0' TERM; sleep 2147483647 & wait"],
            &pause,
        );
        ctd.import(namespace, &pause, None);
    }
    ctd
}

#[test]
fn ctr_run_with_runc_binary() {
    let work = tempfile::tempdir().unwrap();
    let ctd = containerd_with_images("default", work.path());
    let rt = runtime();
    let root = work.path().join("oci-root");
    // Dropped first on a panic: the containers under this root go with containerd.
    ctd.runtime_root(&rt, &root);
    let id = unique("ctr");
    let out = ctd.ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        rt.to_str().unwrap(),
        "--runc-root",
        root.to_str().unwrap(),
        IMAGE,
        &id,
        "sh",
        "-c",
        "echo hello-ctr; cat /proc/1/cmdline | tr '\\0' ' '; exit 6",
    ]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}\ncontainerd: {}",
        show(&out),
        ctd.log()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("hello-ctr\nsh -c echo hello-ctr"),
        "{}",
        show(&out)
    );
    // --rm deleted it: nothing left in the runtime's state root (the shim adds the
    // namespace to --runc-root).
    let ns_root = root.join("default");
    let left = std::fs::read_dir(&ns_root).map_or(0, |d| d.count());
    assert_eq!(left, 0, "state left under {}", ns_root.display());

    // Detached, then a task kill: the shim reports the signal status.
    let id2 = unique("ctr-d");
    let out = ctd.ctr(&[
        "run",
        "-d",
        "--runc-binary",
        rt.to_str().unwrap(),
        "--runc-root",
        root.to_str().unwrap(),
        IMAGE,
        &id2,
        "sleep",
        "1000",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let tasks = String::from_utf8_lossy(&ctd.ctr(&["tasks", "ls"]).stdout).into_owned();
    assert!(tasks.contains(&id2) && tasks.contains("RUNNING"), "{tasks}");
    let out = ctd.ctr(&["tasks", "kill", "-s", "SIGKILL", &id2]);
    assert!(out.status.success(), "{}", show(&out));
    hull_tests::oci::poll("task stopped", std::time::Duration::from_secs(30), || {
        let t = String::from_utf8_lossy(&ctd.ctr(&["tasks", "ls"]).stdout).into_owned();
        t.contains("STOPPED").then_some(())
    });
    let out = ctd.ctr(&["tasks", "rm", &id2]);
    assert!(out.status.success(), "{}", show(&out));
    let out = ctd.ctr(&["containers", "rm", &id2]);
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn cri_runtime_handler_runs_a_pod() {
    let work = tempfile::tempdir().unwrap();
    let ctd = containerd_with_images("k8s.io", work.path());
    let client = hull_tests::workspace_root().join("tests/oci/cri/cri_pod.py");
    let out = std::process::Command::new("/usr/bin/python3")
        .arg(&client)
        .arg(ctd.socket())
        .arg("hull")
        .arg(IMAGE)
        .arg(work.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\ncontainerd: {}",
        show(&out),
        ctd.log()
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["handler"], "hull");
    assert_eq!(report["sandbox_runtime_handler"], "hull");
    assert_eq!(report["exit_code"], 3, "{report}");
    let log: Vec<String> = serde_json::from_value(report["log"].clone()).unwrap();
    assert_eq!(log[0], "hello-from-cri", "{report}");
    // The pod shares one PID namespace (CRI's default): PID 1 is the sandbox's process.
    assert!(log[2].starts_with("sh -c trap"), "{report}");
    eprintln!("CRI pod with handler hull, ms per call: {}", report["ms"]);
}
