//! `--isolation=vm` on this kind of host: its /dev/kvm is PVM, which cannot boot hull's
//! guest kernel, so `hull run --isolation=vm` must refuse at once with an explanation
//! instead of hanging on a guest that never boots, and leave nothing behind. (The VM mode
//! itself is tested inside the nested harness: tests/harness_vm.rs.)

mod process_common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use process_common::{Env, IMAGE};

/// Upper bound for the refusal: far beyond a fast failure, far below a boot timeout.
const NO_HANG: Duration = Duration::from_secs(20);

#[test]
fn vm_isolation_fails_fast_with_an_explanation_where_kvm_cannot_boot_the_guest() {
    let pvm = Path::new("/sys/module/kvm_pvm").exists();
    let no_kvm = !Path::new("/dev/kvm").exists();
    assert!(
        pvm || no_kvm,
        "this test checks the refusal on hosts whose KVM cannot boot the guest (PVM or no \
         /dev/kvm); this host has hardware KVM: run tests/harness_vm.rs's checks directly"
    );
    let env = Env::new();
    for args in [
        vec!["run", "--rm", "--isolation", "vm", IMAGE, "true"],
        vec![
            "run",
            "-d",
            "--isolation",
            "vm",
            "--name",
            "v",
            IMAGE,
            "sleep",
            "100",
        ],
    ] {
        let mut child = env
            .hull(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > NO_HANG {
                let _ = child.kill();
                panic!("hull {args:?} still running after {NO_HANG:?}: it hangs");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        let explained = if pvm {
            err.contains("PVM") && err.contains("--isolation=process")
        } else {
            err.contains("/dev/kvm")
        };
        assert!(explained, "{args:?}: unclear error: {err}");
    }
    // The refusal comes before anything is built or started.
    assert!(
        !env.root.path().join("vm").exists(),
        "no disk image or initramfs was built"
    );
    let ps = env.ps();
    assert!(
        ps.values().all(|c| c["status"] != "running"),
        "no container runs: {ps:?}"
    );
    for name in ps.keys() {
        env.ok(["rm", "-f", name]);
    }
    env.assert_clean(&[]);
}
