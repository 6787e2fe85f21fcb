//! Shared helpers for hull's integration tests: find the built binaries, give each test its
//! own state root, and run `hull` as a user would.

pub mod guest;
pub mod harness;
pub mod initramfs;
pub mod oci;
pub mod registry;
pub mod tiny_guest;
pub mod vsock;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Directory holding the workspace's built binaries (`target/<profile>/`).
///
/// Test executables live in `target/<profile>/deps/`; the binaries one level up. Run
/// `cargo build --workspace --bins` before the tests (scripts/test.sh does).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HULL_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary has a parent dir");
    deps.parent().expect("deps has a parent dir").to_path_buf()
}

/// Path of a workspace binary (`hull`, `hull-vmm`, `hull-agent`), panicking with a clear
/// message when it was not built.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} not found: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// What this host's /dev/kvm can do, which decides where VM mode is tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKvm {
    /// Hardware virtualisation (VT-x or AMD-V, also the nested harness's emulated AMD-V):
    /// hull's guest kernel boots here, VM mode is tested directly.
    Hardware,
    /// PVM (`kvm_pvm` loaded): runs only tiny guests; VM mode is tested in the harness.
    Pvm,
    /// No /dev/kvm at all.
    Missing,
}

/// This host's kind of KVM.
pub fn host_kvm() -> HostKvm {
    if Path::new("/sys/module/kvm_pvm").exists() {
        return HostKvm::Pvm;
    }
    if !Path::new("/dev/kvm").exists() {
        return HostKvm::Missing;
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let hardware = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if hardware {
        HostKvm::Hardware
    } else {
        // A /dev/kvm without vmx/svm and without PVM: nothing hull's guest boots on.
        HostKvm::Missing
    }
}

/// Whether the tests run as root (tier 2 and up need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Workspace root directory (where Cargo.toml of the workspace is).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A private hull state root for one test, removed when dropped.
pub struct TestRoot {
    dir: tempfile::TempDir,
}

impl TestRoot {
    /// Creates a fresh, empty state root.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hull-test-")
            .tempdir()
            .expect("create temp state root");
        TestRoot { dir }
    }

    /// The state root path (pass as `--root`).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A `hull` command with `--root` set to this test's root.
    pub fn hull<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(binary("hull"));
        cmd.arg("--root").arg(self.path()).args(args);
        cmd
    }

    /// Runs `hull ARGS` to completion and returns its output.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.hull(args).output().expect("spawn hull")
    }

    /// Runs `hull ARGS`, asserting success, and returns its stdout as a string.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "hull failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }
}

impl Default for TestRoot {
    fn default() -> Self {
        Self::new()
    }
}
