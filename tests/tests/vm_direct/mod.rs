//! VM mode checked directly on a host whose KVM is hardware virtualisation: no nested
//! harness, `hull run --isolation=vm` as a user runs it. Used by tier 2 (tests/host_vm.rs)
//! on such hosts and by tier 4 (tests/harness_direct.rs), which on a PVM host runs these
//! same checks inside the harness's test host, whose KVM is hardware-style.

#![allow(dead_code)]

// The test crate including this module provides `process_common` at its root.
use super::process_common::{Env, IMAGE};

/// The guest kernel release `kernel-config/build.sh` builds (linux-source-6.12).
const GUEST_KERNEL_PREFIX: &str = "6.12.";

/// A vm container runs its command in its own kernel, with streams and exit code as in
/// process mode; a detached one runs, answers exec, and goes with `rm -f`; nothing is
/// left behind.
pub fn vm_mode_works_here() {
    assert_eq!(
        hull_tests::host_kvm(),
        hull_tests::HostKvm::Hardware,
        "these checks need a host whose KVM is hardware virtualisation"
    );
    let env = Env::new();
    let host_kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let out = env.run([
        "run",
        "--rm",
        "--isolation=vm",
        IMAGE,
        "sh",
        "-c",
        "uname -r; echo out; echo err >&2; exit 3",
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "stdout {stdout:?}, stderr {stderr:?}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines.len() == 2
            && lines[0].starts_with(GUEST_KERNEL_PREFIX)
            && lines[0] != host_kernel.trim(),
        "the guest's own kernel, not the host's ({}): {stdout:?}",
        host_kernel.trim()
    );
    assert_eq!(lines[1], "out");
    assert!(stderr.contains("err"), "{stderr:?}");

    let id = env.detached("direct", &["--isolation=vm"], "sleep 1000");
    let c = env.inspect("direct");
    assert_eq!(c["status"], "running", "{c}");
    assert_eq!(c["isolation"], "vm", "{c}");
    let version = env.ok(["exec", "direct", "cat", "/proc/version"]);
    assert!(version.contains(GUEST_KERNEL_PREFIX), "{version}");
    env.ok(["rm", "-f", "direct"]);
    env.assert_clean(&[id]);
}
