//! Tier 3: the `hull-vmm` binary's seccomp filters on this machine's /dev/kvm. Every thread
//! is confined (Seccomp: 2) once the guest runs; the event loop still serves the vsock host
//! side under its filter; a forbidden call from either thread kind ends the VMM with exit
//! 108 and a report naming the thread and the call (the test-only trigger
//! `HULL_VMM_SECCOMP_TEST` makes the call an exploited device would).

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{require_kvm, write_guest, Asm};

/// A running hull-vmm, killed if the test fails before it ends.
struct Vmm(Option<Child>);

impl Vmm {
    fn id(&self) -> u32 {
        self.0.as_ref().map(|c| c.id()).unwrap_or(0)
    }
}

impl Drop for Vmm {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts hull-vmm on a guest that prints "up" and spins.
fn start_spinning_vm(dir: &Path, extra: &[&str], trigger: Option<&str>) -> Vmm {
    let mut asm = Asm::new();
    asm.serial_print(b"up").spin();
    let kernel = write_guest(dir, "g.elf", &asm);
    let serial = dir.join("console");
    let sock = dir.join("v.sock");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hull-vmm"));
    cmd.args(["--kernel", kernel.to_str().unwrap(), "--memory", "32"])
        .args(["--vcpus", "2"])
        .args(["--vsock", sock.to_str().unwrap()])
        .args(["--serial", serial.to_str().unwrap()])
        .args(extra)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped());
    match trigger {
        Some(kind) => cmd.env("HULL_VMM_SECCOMP_TEST", kind),
        None => cmd.env_remove("HULL_VMM_SECCOMP_TEST"),
    };
    Vmm(Some(cmd.spawn().expect("start hull-vmm")))
}

fn wait_for_guest(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read(dir.join("console")).unwrap_or_default() != b"up" {
        assert!(Instant::now() < deadline, "guest never started");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (bounded) for the child to end; its exit code and stderr.
fn finish(mut vmm: Vmm) -> (Option<i32>, String) {
    let mut child = vmm.0.take().expect("running");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("hull-vmm did not end within 20 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `Seccomp:` of the main thread and the vCPU threads of `pid`, by thread name. (KVM lists
/// a kernel worker of its own with the process, kvm-nx-lpage-recovery, which is named like
/// the process for an instant after it starts: it is left out.)
fn seccomp_modes(pid: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap();
        let status = std::fs::read_to_string(task.path().join("status")).unwrap();
        let main = task.file_name().to_string_lossy() == pid.to_string();
        if !main && !status.lines().any(|l| l.starts_with("Name:\tvcpu")) {
            continue;
        }
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or("")
                .trim()
                .to_string()
        };
        out.push((field("Name:"), field("Seccomp:")));
    }
    out.sort();
    out
}

fn sigterm(vmm: &Vmm) {
    // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
    assert_eq!(unsafe { libc::kill(vmm.id() as i32, libc::SIGTERM) }, 0);
}

#[test]
fn every_thread_is_confined_and_the_event_loop_still_serves_vsock() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let child = start_spinning_vm(dir.path(), &[], None);
    wait_for_guest(dir.path());
    // The guest prints once vCPU 0 runs; vCPU 1's thread may not have taken its name yet.
    let deadline = Instant::now() + Duration::from_secs(10);
    let modes = loop {
        let modes = seccomp_modes(child.id());
        if modes.len() == 3 || Instant::now() >= deadline {
            break modes;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(modes.len(), 3, "main + 2 vCPUs: {modes:?}");
    for (name, mode) in &modes {
        assert_eq!(mode, "2", "thread {name} is not filtered: {modes:?}");
    }
    // The host side under the main thread's filter: a bad CONNECT line is read and the
    // connection closed (accept, FIONBIO, recv, close), and a silent one is dropped by the
    // deadline timer (timerfd).
    let mut bad = UnixStream::connect(dir.path().join("v.sock")).unwrap();
    bad.write_all(b"HELLO\n").unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let _ = bad.read_to_end(&mut buf);
    assert!(buf.is_empty());
    let mut silent = UnixStream::connect(dir.path().join("v.sock")).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        silent.read(&mut [0u8; 8]).unwrap(),
        0,
        "dropped at its deadline"
    );
    sigterm(&child);
    let (code, err) = finish(child);
    assert_eq!(code, Some(128 + libc::SIGTERM), "{err}");
    assert!(!err.contains("seccomp"), "{err}");
}

#[test]
fn without_seccomp_the_threads_are_not_filtered() {
    // The check above can fail: --no-seccomp (debugging only) leaves every thread at 0.
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let child = start_spinning_vm(dir.path(), &["--no-seccomp"], None);
    wait_for_guest(dir.path());
    assert!(seccomp_modes(child.id()).iter().all(|(_, m)| m == "0"));
    sigterm(&child);
    finish(child);
}

#[test]
fn a_forbidden_call_from_a_vcpu_thread_ends_the_vmm_with_a_report() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = finish(start_spinning_vm(dir.path(), &[], Some("vcpu")));
    assert_eq!(code, Some(108), "{err}");
    assert!(
        err.contains("seccomp violation: thread vcpu ")
            && err.contains("made the forbidden system call socket (41) with domain 2"),
        "{err}"
    );
}

#[test]
fn a_forbidden_call_from_the_event_loop_ends_the_vmm_with_a_report() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = finish(start_spinning_vm(dir.path(), &[], Some("main")));
    assert_eq!(code, Some(108), "{err}");
    assert!(
        err.contains(
            "seccomp violation: thread main (event loop) made the forbidden system call \
             socket (41) with domain 2"
        ),
        "{err}"
    );
}
