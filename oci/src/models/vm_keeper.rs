//! The keeper: the host process of one VM container (or of one `exec` in it), started by
//! `hull-oci create` / `exec` as `hull-oci vm-keeper --dir DIR [--exec FILE]`. It is the
//! `--pid-file` process: it lives as long as the container's process and exits with its
//! status (128+N for signal N). Its fds 0-2 are the container's stdio (or the terminal);
//! it logs only to `keeper.log` in the state directory; fd 3 carries its one report to the
//! creator ("ok" or "error: ...").

use std::fs::{self, File};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

use hull_protocol::{self as proto, Message};
use hull_runtime::isolation::{ContainerProcess, ExitStatus};
use hull_runtime::vm::launch::VmmProcess;
use hull_runtime::vm::machine::{self, MachineConfig, MachineState};
use hull_runtime::vm::relay::{OwnedVmm, RelayIo, VmProcess};
use hull_runtime::vm::{channel, jail};

use super::gate::GATE;
use super::vm::{self, Boot, Report, BOOT_FILE};
use super::vm_net;
use crate::error::{OciError, Result};

fn vm_err(e: impl std::fmt::Display) -> OciError {
    OciError::Runtime(e.to_string())
}

/// Runs a keeper; returns its exit code.
pub fn run(dir: &Path, exec: Option<&Path>) -> i32 {
    // SAFETY: a keeper is only ever started by `spawn_keeper`, which sets up fd 3.
    let mut report = unsafe { Report::from_fd3() };
    let outcome = match exec {
        None => container(dir, &mut report),
        Some(file) => exec_process(dir, file, &mut report),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e}");
            report.send(Err(e.to_string()));
            1
        }
    }
}

/// The terminal size of fd 0, when it is a terminal.
fn tty_size() -> Option<(u16, u16)> {
    // SAFETY: winsize is plain data; TIOCGWINSZ writes one into it.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: ioctl on our fd 0 with a valid winsize pointer.
    if unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) } != 0 {
        return None;
    }
    Some((ws.ws_row, ws.ws_col)).filter(|(r, c)| *r > 0 && *c > 0)
}

fn is_tty() -> bool {
    // SAFETY: isatty on fd 0.
    unsafe { libc::isatty(0) == 1 }
}

/// Our fds 0-2 as relay ends: with a terminal its one stream, else the three.
fn relay_io() -> Result<RelayIo> {
    let dup = |fd: i32| -> Result<File> {
        // SAFETY: F_DUPFD_CLOEXEC of one of our standard descriptors.
        let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if new < 0 {
            return Err(OciError::io(
                format!("dup fd {fd}"),
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: fcntl just gave us this descriptor.
        Ok(File::from(unsafe { OwnedFd::from_raw_fd(new) }))
    };
    if is_tty() {
        return Ok(RelayIo {
            input: Some(dup(0)?),
            stdout: dup(1)?,
            stderr: None,
            shutdown_on_exit: None,
        });
    }
    Ok(RelayIo {
        input: Some(dup(0)?),
        stdout: dup(1)?,
        stderr: Some(dup(2)?),
        shutdown_on_exit: None,
    })
}

fn exit_code(status: ExitStatus) -> i32 {
    match status {
        ExitStatus::Code(c) => c,
        ExitStatus::Signal(s) => 128 + s,
    }
}

/// Boots the VM, its VMM jailed as hull's own are (`machine::prepare`/`launch`: its uid
/// lease, jail directory and cgroup), and waits for the agent's hello. On error the VMM is
/// gone and what `prepare` made is released.
fn boot(dir: &Path, b: &Boot) -> Result<(std::os::unix::net::UnixStream, VmmProcess)> {
    let mut cfg = MachineConfig {
        vmm: b.vmm.clone(),
        kernel: b.kernel.clone(),
        initramfs: b.initramfs.clone(),
        disk: b.disk.clone(),
        memory_mib: b.memory_mib,
        vcpus: b.vcpus,
        extra_cmdline: String::new(),
        // Set below when the caller's network namespace has an interface.
        net: None,
        // The root's writable layer stays in guest memory (tmpfs), as before.
        layer_disk: None,
        nano_cpus: None,
        jail: b.jail,
        // No virtio-fs volumes: the bundle's bound files are in the rootfs disk.
        fs: Vec::new(),
    };
    let plan = machine::prepare(&cfg, &b.cgroup, dir).map_err(vm_err)?;
    let jail_id = plan.as_ref().map(|p| p.id);
    let booted = (|| {
        if let Some(id) = jail_id {
            // `delete` releases the lease even if this keeper dies before vm.json exists.
            fs::write(dir.join(vm::JAIL_ID_FILE), id.to_string())
                .map_err(|e| OciError::io(format!("write {}", vm::JAIL_ID_FILE), e))?;
        }
        let state_dir = channel::StateDir::open(&jail::dir(dir)).map_err(vm_err)?;
        let hello = channel::hello_socket_name();
        let listener = UnixListener::bind(state_dir.short(&hello))
            .map_err(|e| OciError::io("listen for the guest agent", e))?;
        if let Some(id) = jail_id {
            jail::give_socket(&state_dir.real(&hello), id)
                .map_err(|e| OciError::io("the hello socket", e))?;
        }
        // The TAP in the caller's namespace: ours is closed once the VMM holds it. A jailed
        // VMM joins that namespace (`--jail-netns`, machine::launch).
        let tap = match &b.net {
            Some(net) => {
                let (tap, device) = vm_net::attach(net)?;
                cfg.net = Some(device);
                Some(tap)
            }
            None => None,
        };
        let launched = machine::launch(&cfg, dir, plan.as_ref()).map_err(vm_err);
        drop(tap);
        let mut child = launched?;
        let mut state = MachineState {
            vmm_pid: child.pid,
            start_time: child.start_time,
            guest_kernel: String::new(),
            jail_id,
        };
        let hello_result = (|| {
            state.save(dir).map_err(vm_err)?;
            let console = dir.join(machine::CONSOLE_LOG);
            let vmm_log = dir.join(machine::VMM_LOG);
            let (conn, kernel) =
                channel::accept_hello(&listener, Duration::from_secs(b.boot_timeout_secs), || {
                    child.try_status().map(|status| {
                        let why = match status {
                            ExitStatus::Code(code) => machine::vmm_failure(code, &vmm_log),
                            ExitStatus::Signal(_) => None,
                        };
                        format!(
                            "hull-vmm exited ({status:?}) before the guest agent started.{}\n\
                             vmm.log: {}\nconsole: {}",
                            why.map(|w| format!(" {w}")).unwrap_or_default(),
                            machine::tail(&vmm_log, 5),
                            machine::tail(&console, 10)
                        )
                    })
                })
                .map_err(vm_err)?;
            state.guest_kernel = kernel;
            state.save(dir).map_err(vm_err)?;
            Ok(conn)
        })();
        drop(listener);
        let _ = fs::remove_file(state_dir.real(&hello));
        match hello_result {
            Ok(conn) => Ok((conn, child)),
            Err(e) => {
                let _ = child.kill();
                Err(e)
            }
        }
    })();
    if booted.is_err() {
        b.net.iter().for_each(vm_net::detach);
        machine::release(&b.cgroup, dir, jail_id);
    }
    booted
}

/// Blocks until `start` opens the gate for reading; returns the gate for the answer.
fn wait_for_start(dir: &Path) -> Result<File> {
    let gate = dir.join(GATE);
    loop {
        match fs::OpenOptions::new().write(true).open(&gate) {
            Ok(f) => return Ok(f),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(OciError::io(format!("open {}", gate.display()), e)),
        }
    }
}

/// The container's keeper.
fn container(dir: &Path, report: &mut Report) -> Result<i32> {
    let mut b: Boot = vm::read_json(&dir.join(BOOT_FILE))?;
    let (conn, child) = boot(dir, &b)?;
    let vmm_pid = child.pid;
    tracing::info!(vmm_pid, "guest agent ready");
    report.send(Ok(()));
    let mut gate = wait_for_start(dir)?;
    if b.container.stdio.tty {
        b.container.stdio.tty_size = tty_size();
    }
    let answer = match channel::request(
        &conn,
        &Message::Start(b.container),
        "start",
        Instant::now() + channel::START_TIMEOUT,
    ) {
        Ok(Message::Started { .. }) => Ok(()),
        Ok(Message::Error(e)) => Err(e.into_error()),
        Ok(other) => Err(protocol_failure(format!(
            "guest agent: expected started, got {other:?}"
        ))),
        Err(e) => Err(protocol_failure(e.to_string())),
    };
    let text = match &answer {
        Ok(()) => "ok\n".to_string(),
        Err(e) => format!("error: {e}\n"),
    };
    let _ = std::io::Write::write_all(&mut gate, text.as_bytes());
    drop(gate);
    if let Err(e) = answer {
        tracing::error!("start: {e}");
        // The executor's kind decides, as in the process model: 127 not found, 126 not
        // executable, 125 anything else.
        return Ok(e.exit_code());
    }
    tracing::info!("container process started");
    let mut process = VmProcess::start(
        conn,
        relay_io()?,
        vmm_pid,
        Some(OwnedVmm {
            process: child,
            log: dir.join(machine::VMM_LOG),
            backends: Vec::new(),
        }),
    )
    .map_err(vm_err)?;
    let status = process.wait().map_err(vm_err)?;
    tracing::info!(?status, "container process ended");
    Ok(exit_code(status))
}

fn protocol_failure(detail: String) -> hull_executor::Error {
    hull_executor::Error::new(
        hull_executor::ErrorKind::Protocol,
        hull_executor::Stage::Channel,
        detail,
    )
}

/// An `exec` keeper: has the agent run the process, relays it, exits with its status.
fn exec_process(dir: &Path, file: &Path, report: &mut Report) -> Result<i32> {
    let mut process: proto::ExecSpec = vm::read_json(file)?;
    process.stdio.tty = is_tty();
    process.stdio.tty_size = if process.stdio.tty { tty_size() } else { None };
    let vmm = MachineState::load(dir)
        .filter(|m| m.alive())
        .ok_or_else(|| OciError::Runtime("the container's VM is not running".into()))?;
    let state_dir = channel::StateDir::open(&jail::dir(dir)).map_err(vm_err)?;
    let deadline = Instant::now() + channel::REPLY_TIMEOUT;
    let conn = channel::connect_agent(&state_dir, deadline).map_err(vm_err)?;
    match channel::request(&conn, &Message::Exec(process), "exec", deadline).map_err(vm_err)? {
        Message::Started { .. } => {}
        Message::Error(e) => return Err(OciError::Runtime(e.into_error().to_string())),
        other => {
            return Err(OciError::Runtime(format!(
                "guest agent: expected started, got {other:?}"
            )))
        }
    }
    report.send(Ok(()));
    let mut p = VmProcess::start(conn, relay_io()?, vmm.vmm_pid, None).map_err(vm_err)?;
    Ok(exit_code(p.wait().map_err(vm_err)?))
}
