//! `--isolation=vm` on this host as it is. Where KVM cannot boot hull's guest kernel (PVM,
//! as on the build machines, or no /dev/kvm), `hull run --isolation=vm` must refuse at once
//! with an explanation instead of hanging on a guest that never boots, and leave nothing
//! behind. Where KVM is hardware virtualisation, VM mode runs directly and must work. (The
//! whole VM mode is tested in tier 4: tests/harness_vm.rs, directly on such hosts, in the
//! nested harness elsewhere.)

mod process_common;
mod vm_direct;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hull_tests::HostKvm;
use process_common::{Env, IMAGE};

/// A guard against a hang, not a speed check: a refusal is told from a boot that timed
/// out by its message (the boot timeout's error says something else), however busy the
/// host is.
const NO_HANG: Duration = Duration::from_secs(300);

#[test]
fn vm_isolation_runs_or_refuses_at_once_with_an_explanation() {
    match hull_tests::host_kvm() {
        HostKvm::Hardware => vm_direct::vm_mode_works_here(),
        HostKvm::Pvm | HostKvm::Missing => refuses_fast_with_an_explanation(),
    }
}

fn refuses_fast_with_an_explanation() {
    let pvm = Path::new("/sys/module/kvm_pvm").exists();
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
