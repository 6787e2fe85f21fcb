//! Tier 3 through the `hull-vmm` binary: exit codes, serial output, JSON config, clear
//! errors, and nothing left behind.

mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::{require_kvm, write_guest, Asm};

fn hull_vmm(args: &[&str]) -> Output {
    hull_vmm_with_log(args, None)
}

/// Runs hull-vmm with `RUST_LOG` set to `log` (or unset).
fn hull_vmm_with_log(args: &[&str], log: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hull-vmm"));
    match log {
        Some(spec) => cmd.env("RUST_LOG", spec),
        None => cmd.env_remove("RUST_LOG"),
    };
    let mut child = cmd
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start hull-vmm");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("hull-vmm did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn guest_status_becomes_the_exit_code_and_serial_goes_to_stdout() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let mut asm = Asm::new();
    asm.serial_print(b"tiny guest says hi\n").debug_exit(3);
    let kernel = write_guest(dir.path(), "g.elf", &asm);
    let out = hull_vmm(&["--kernel", kernel.to_str().unwrap(), "--memory", "32"]);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "tiny guest says hi\n");
}

#[test]
fn rust_log_turns_on_more_logging_and_help_and_version_exit_zero() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let mut asm = Asm::new();
    asm.debug_exit(0);
    let kernel = write_guest(dir.path(), "g.elf", &asm);
    let args = ["--kernel", kernel.to_str().unwrap(), "--memory", "32"];
    let quiet = hull_vmm_with_log(&args, None);
    assert_eq!(quiet.status.code(), Some(0), "stderr: {}", stderr(&quiet));
    assert_eq!(stderr(&quiet), "", "warnings only by default");
    let verbose = hull_vmm_with_log(&args, Some("hull_vmm=info"));
    assert_eq!(
        verbose.status.code(),
        Some(0),
        "stderr: {}",
        stderr(&verbose)
    );
    assert!(
        stderr(&verbose).contains("guest stopped"),
        "{}",
        stderr(&verbose)
    );
    let bad = hull_vmm_with_log(&args, Some("[span]=x"));
    assert_eq!(bad.status.code(), Some(0), "a bad RUST_LOG is not fatal");
    assert!(
        stderr(&bad).contains("ignoring RUST_LOG"),
        "{}",
        stderr(&bad)
    );

    let help = hull_vmm(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--kernel <PATH>"));
    let version = hull_vmm(&["--version"]);
    assert_eq!(version.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("hull-vmm "));
}

#[test]
fn json_config_and_i8042_reset_exit_zero_with_two_vcpus() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let mut asm = Asm::new();
    asm.serial_print(b"ok").i8042_reset().spin();
    let kernel = write_guest(dir.path(), "g.elf", &asm);
    let serial = dir.path().join("console.log");
    let sock = dir.path().join("vsock.sock");
    let config = serde_json::json!({
        "kernel": kernel, "memory_mib": 48, "vcpus": 2, "serial": serial,
        "vsock": { "uds_path": sock, "guest_cid": 5 },
    });
    let cfg = dir.path().join("vm.json");
    std::fs::write(&cfg, config.to_string()).unwrap();
    let out = hull_vmm(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&serial).unwrap(), "ok");
    assert!(!sock.exists(), "vsock socket removed on exit");
}

#[test]
fn triple_fault_exits_100() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let mut asm = Asm::new();
    asm.ud2(); // no IDT entries: #UD escalates to a triple fault
    let kernel = write_guest(dir.path(), "g.elf", &asm);
    let out = hull_vmm(&[
        "--kernel",
        kernel.to_str().unwrap(),
        "--serial",
        "none",
        "--memory",
        "32",
    ]);
    assert_eq!(out.status.code(), Some(100), "stderr: {}", stderr(&out));
}

#[test]
fn bad_input_gets_a_clear_error_and_documented_code() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-kernel");
    let out = hull_vmm(&["--kernel", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(103), "stderr: {}", stderr(&out));
    assert!(stderr(&out).contains("no-such-kernel"), "{}", stderr(&out));

    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, b"not a kernel at all").unwrap();
    let out = hull_vmm(&["--kernel", garbage.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(103));
    assert!(stderr(&out).contains("not a vmlinux"), "{}", stderr(&out));

    for (args, needle) in [
        (vec!["--kernel", "/k", "--vcpus", "0"], "vcpus"),
        (vec!["--kernel", "/k", "--memory", "1"], "memory"),
        (vec!["--kernel", "/k", "--disk", "/d,zz"], "zz"),
        (vec!["--kernel", "/k", "--vsock-cid", "9"], "--vsock"),
        (vec!["--memory", "64"], "--kernel"),
        (vec!["--bogus"], "--bogus"),
    ] {
        let out = hull_vmm(&args);
        assert_eq!(out.status.code(), Some(101), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }

    let sock = dir.path().join("v.sock");
    let out = hull_vmm(&[
        "--kernel",
        missing.to_str().unwrap(),
        "--vsock",
        sock.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(103));
    assert!(!sock.exists(), "no socket left behind after a failed start");
}

#[test]
fn missing_disk_image_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut asm = Asm::new();
    asm.debug_exit(0);
    let kernel = write_guest(dir.path(), "g.elf", &asm);
    let out = hull_vmm(&[
        "--kernel",
        kernel.to_str().unwrap(),
        "--disk",
        "/nonexistent/disk.img,ro",
    ]);
    // Either KVM is missing (102) or the disk is named in a config error (101).
    if std::path::Path::new("/dev/kvm").exists() {
        assert_eq!(out.status.code(), Some(101), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("/nonexistent/disk.img"),
            "{}",
            stderr(&out)
        );
    } else {
        assert_eq!(out.status.code(), Some(102), "{}", stderr(&out));
    }
}

#[test]
fn sigterm_stops_the_vm_cleanly() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let mut asm = Asm::new();
    asm.serial_print(b"up").spin();
    let kernel = write_guest(dir.path(), "g.elf", &asm);
    let sock = dir.path().join("v.sock");
    let serial = dir.path().join("console");
    let child = Command::new(env!("CARGO_BIN_EXE_hull-vmm"))
        .args(["--kernel", kernel.to_str().unwrap(), "--memory", "32"])
        .args([
            "--vsock",
            sock.to_str().unwrap(),
            "--serial",
            serial.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read(&serial).unwrap_or_default() != b"up" {
        assert!(Instant::now() < deadline, "guest never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(sock.exists(), "vsock socket listening while the VM runs");
    // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(128 + libc::SIGTERM),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("signal"), "{}", stderr(&out));
    assert!(!sock.exists(), "vsock socket removed after SIGTERM");
}
