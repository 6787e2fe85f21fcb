//! The vm model: each container is a KVM microVM (hull-vmm, hull's guest kernel, the guest
//! agent as PID 1) booted from the bundle's root filesystem, built at `create` into an erofs
//! disk with the bundle's bound files in place (`vm_disk`, `vm_mounts`).
//!
//! The `--pid-file` process is a host process per container, the *keeper*
//! (`hull-oci vm-keeper`, see `vm_keeper`): `create` starts it, it boots the VM (hull-vmm is
//! its child and dies with it), waits for the agent's hello and reports back; it then waits
//! at the start gate (`exec.fifo`, as in the process model), has the agent start the
//! container's process, relays the caller's stdio (or the terminal) to it, and exits with its
//! status. conmon and containerd's shim wait on it as they wait on runc's init.
//!
//! `kill` goes to the agent (the container's main process); `pause`/`resume` stop and
//! continue hull-vmm (its vCPUs stop); `exec` is a second keeper that has the agent run the
//! process and relays it; `delete` kills the keeper (and so the VM) and removes the disk.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hull_executor::cgroups::Layout;
use hull_protocol::{self as proto, Message};
use hull_runtime::paths::StatePaths;
use hull_runtime::vm::ids::IdRange;
use hull_runtime::vm::{self as hvm, channel, initramfs, jail, machine, machine::MachineState};
use nix::sys::termios;
use oci_spec::runtime::{LinuxResources, Process, Spec};
use serde::{Deserialize, Serialize};

use super::vm_disk;
use super::vm_mounts;
use super::vm_net;
use crate::error::{OciError, Result};
use crate::procref::ProcRef;
use crate::runner::{CreateRequest, ExecRequest, Runner, Waitable};
use crate::state::{Locked, Model, Phase, Record};

/// What the keeper boots, written by `create`.
pub const BOOT_FILE: &str = "vm-boot.json";
/// The jailed VMM's uid/gid, written by the keeper as soon as it holds the lease.
pub const JAIL_ID_FILE: &str = "vm-jail-id";
/// The keeper's own log.
pub const KEEPER_LOG: &str = "keeper.log";
/// The hidden command that runs a keeper.
pub const KEEPER_COMMAND: &str = "vm-keeper";
/// Default guest RAM when the spec sets no memory limit.
const DEFAULT_MEMORY_MIB: u64 = 256;
/// Guest RAM added to the spec's memory limit for the guest kernel and agent.
const MEMORY_OVERHEAD_MIB: u64 = 64;
/// Longest message a keeper reports back.
const MAX_REPORT: u64 = 16 << 10;

/// What the keeper boots and runs.
#[derive(Debug, Serialize, Deserialize)]
pub struct Boot {
    /// hull-vmm.
    pub vmm: PathBuf,
    /// Guest kernel.
    pub kernel: PathBuf,
    /// Agent initramfs.
    pub initramfs: PathBuf,
    /// Root disk.
    pub disk: PathBuf,
    /// Guest RAM.
    pub memory_mib: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// How long the guest may take to boot.
    pub boot_timeout_secs: u64,
    /// The container as the agent gets it.
    pub container: proto::ContainerSpec,
    /// The interface of the caller's network namespace the VM takes over (`vm_net`).
    #[serde(default)]
    pub net: Option<vm_net::BootNet>,
    /// The VMM's cgroup (the bundle's cgroupsPath, else `hull-oci/<id>`), relative.
    pub cgroup: PathBuf,
    /// The uid/gid range of jailed VMMs (hull's `vm.jail_ids`); `None`: `vm.jail: false`.
    pub jail: Option<IdRange>,
}

/// The vm model.
#[derive(Debug, Default)]
pub struct VmRunner;

fn vm_err(e: impl std::fmt::Display) -> OciError {
    OciError::Runtime(e.to_string())
}

/// How long a guest may take to boot (`HULL_VM_BOOT_TIMEOUT` seconds, as for `hull`).
fn boot_timeout() -> Duration {
    std::env::var("HULL_VM_BOOT_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(hvm::DEFAULT_BOOT_TIMEOUT)
}

fn check_host() -> Result<()> {
    if std::env::var_os("HULL_VM_SKIP_HOST_CHECK").is_some() {
        return Ok(());
    }
    match hvm::host_problem(Path::new("/")) {
        Some(why) => Err(OciError::Unsupported(why)),
        None => Ok(()),
    }
}

fn resources(spec: &Spec) -> Option<&LinuxResources> {
    spec.linux().as_ref().and_then(|l| l.resources().as_ref())
}

fn memory_limit(spec: &Spec) -> Option<u64> {
    resources(spec)
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .filter(|l| *l > 0)
        .map(|l| l as u64)
}

fn cpu_millis(spec: &Spec) -> Option<u64> {
    let cpu = resources(spec).and_then(|r| r.cpu().as_ref())?;
    let quota = cpu.quota().filter(|q| *q > 0)? as u64;
    let period = cpu.period().unwrap_or(100_000).max(1);
    Some((quota * 1000).div_ceil(period))
}

/// Guest RAM and vCPUs: the memory limit plus room for the guest kernel, the CPU limit
/// rounded up to whole vCPUs (at most the host's).
pub fn machine_size(spec: &Spec) -> (u64, u32) {
    let memory = memory_limit(spec)
        .map(|b| b.div_ceil(1 << 20) + MEMORY_OVERHEAD_MIB)
        .unwrap_or(DEFAULT_MEMORY_MIB)
        .clamp(128, 65536);
    let host = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let vcpus = cpu_millis(spec)
        .map(|m| m.div_ceil(1000) as u32)
        .unwrap_or(1)
        .clamp(1, host.clamp(1, 32));
    (memory, vcpus)
}

/// How a process's stdio reaches the keeper: stdin kept open, a terminal when the process
/// asks for one (the keeper fills in the size from its own terminal).
fn guest_stdio(process: &Process) -> proto::StdioSpec {
    proto::StdioSpec {
        tty: process.terminal().unwrap_or(false),
        stdin: true,
        tty_size: None,
    }
}

/// An `exec`'s process as the agent gets it.
fn guest_exec(process: &Process) -> proto::ExecSpec {
    proto::ExecSpec {
        process: Box::new(process.clone()),
        user: None,
        stdio: guest_stdio(process),
    }
}

/// The container as the agent gets it: the bundle's spec, which the agent carries out with
/// the executor, less what was done on the host (`vm_mounts`: bound files are in the root
/// disk; hooks ran at create) or only means something there (namespace paths, the host's
/// cgroup path, which may be in systemd's notation: the guest's cgroup is its own).
pub fn guest_container(spec: &Spec) -> Result<proto::ContainerSpec> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| OciError::Usage("config.json has no process".into()))?;
    let mut guest = spec.clone();
    guest.set_hooks(None);
    if let Some(mounts) = spec.mounts() {
        let is_bind = |m: &oci_spec::runtime::Mount| {
            m.typ().as_deref() == Some("bind")
                || m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind")
        };
        guest.set_mounts(Some(
            mounts.iter().filter(|m| !is_bind(m)).cloned().collect(),
        ));
    }
    if let Some(mut linux) = spec.linux().clone() {
        if let Some(ns) = linux.namespaces().clone() {
            linux.set_namespaces(Some(
                ns.into_iter()
                    .map(|mut n| {
                        n.set_path(None);
                        n
                    })
                    .collect(),
            ));
        }
        linux.set_cgroups_path(Some("/container".into()));
        // The guest's executor refuses names x86_64 lacks; libseccomp (runc) ignores them.
        if let Some(seccomp) = linux.seccomp().clone() {
            linux.set_seccomp(Some(super::seccomp::known_syscalls_only(seccomp)));
        }
        guest.set_linux(Some(linux));
    }
    Ok(proto::ContainerSpec {
        spec: Box::new(guest),
        stdio: guest_stdio(process),
        network: None,
    })
}

/// A pty whose master goes to the caller's console socket; the slave (raw: the guest's own
/// pty does the line discipline) is the keeper's stdio.
fn console_pty(socket: &Path) -> Result<OwnedFd> {
    let pty = nix::pty::openpty(None, None).map_err(|e| OciError::io("openpty", e))?;
    let mut attrs =
        termios::tcgetattr(&pty.slave).map_err(|e| OciError::io("tcgetattr on the pty", e))?;
    termios::cfmakeraw(&mut attrs);
    termios::tcsetattr(&pty.slave, termios::SetArg::TCSANOW, &attrs)
        .map_err(|e| OciError::io("make the pty raw", e))?;
    let name = nix::unistd::ttyname(&pty.slave)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    crate::console::send_master(socket, std::os::fd::AsFd::as_fd(&pty.master), &name)?;
    Ok(pty.slave)
}

/// Starts a keeper (`hull-oci vm-keeper --dir DIR [--exec FILE]`) with `stdio` as its fds
/// 0-2 (or ours), and waits for its report: `Ok(pid)` once it says "ok".
fn spawn_keeper(dir: &Path, exec: Option<&Path>, stdio: Option<&OwnedFd>) -> Result<ProcRef> {
    let exe = std::env::current_exe().map_err(|e| OciError::io("find hull-oci itself", e))?;
    let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| OciError::io("pipe for the keeper's report", e))?;
    let mut cmd = Command::new(exe);
    cmd.arg0("hull-oci")
        .arg(KEEPER_COMMAND)
        .arg("--dir")
        .arg(dir);
    if let Some(f) = exec {
        cmd.arg("--exec").arg(f);
    }
    if let Some(fd) = stdio {
        let dup = || {
            fd.try_clone()
                .map(Stdio::from)
                .map_err(|e| OciError::io("dup the terminal", e))
        };
        cmd.stdin(dup()?).stdout(dup()?).stderr(dup()?);
    }
    let report_fd = report_w.as_raw_fd();
    let with_tty = stdio.is_some();
    // SAFETY: between fork and exec only async-signal-safe calls (setsid, dup2, ioctl) on
    // descriptors that exist in the child.
    unsafe {
        cmd.pre_exec(move || {
            // Its own session, so the caller's terminal signals do not reach it; with a
            // console, the pty becomes its controlling terminal.
            libc::setsid();
            if with_tty {
                libc::ioctl(0, libc::TIOCSCTTY, 0);
            }
            if libc::dup2(report_fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| OciError::io("start the VM keeper", e))?;
    drop(report_w);
    let keeper = ProcRef::of(child.id() as i32)
        .ok_or_else(|| OciError::Runtime("the VM keeper ended at once".into()))?;
    // Everything up to end-of-file (the keeper closes it after its report, or dies): "ok",
    // or the error, which may span lines (a VMM's log and console tails).
    let mut report = String::new();
    let _ = fs::File::from(report_r)
        .take(MAX_REPORT)
        .read_to_string(&mut report);
    match report.trim_end() {
        "ok" => Ok(keeper),
        other => {
            // SAFETY: kill(2) of our own child (not yet reaped: its pid is still ours).
            unsafe { libc::kill(keeper.pid, libc::SIGKILL) };
            let mut child = child;
            let _ = child.wait();
            let why = other.strip_prefix("error: ").unwrap_or(other);
            Err(OciError::Runtime(if why.is_empty() {
                format!(
                    "the VM keeper ended without a report (see {})",
                    dir.join(KEEPER_LOG).display()
                )
            } else {
                why.to_string()
            }))
        }
    }
}

fn machine(dir: &Locked) -> Option<MachineState> {
    MachineState::load(&dir.dir).filter(|m| m.alive())
}

/// Sends `signal` to the container's main process through the agent.
fn agent_signal(dir: &Locked, signal: i32) -> Result<()> {
    let state_dir =
        channel::StateDir::open(&hull_runtime::vm::jail::dir(&dir.dir)).map_err(vm_err)?;
    let deadline = Instant::now() + channel::SIGNAL_TIMEOUT;
    let conn = channel::connect_agent(&state_dir, deadline).map_err(vm_err)?;
    match channel::request(&conn, &Message::Signal { signal }, "signal", deadline)
        .map_err(vm_err)?
    {
        Message::Ok => Ok(()),
        Message::Error(e) => Err(OciError::Runtime(e.into_error().to_string())),
        other => Err(OciError::Runtime(format!(
            "guest agent: expected ok, got {other:?}"
        ))),
    }
}

/// Stops (`true`) or continues hull-vmm, and waits until /proc says it is done.
fn stop_vmm(vmm: &MachineState, stop: bool) -> Result<()> {
    let signal = if stop { libc::SIGSTOP } else { libc::SIGCONT };
    // SAFETY: kill(2) of the VMM, checked by start time just before.
    if unsafe { libc::kill(vmm.vmm_pid as i32, signal) } != 0 {
        return Err(OciError::io(
            "signal hull-vmm",
            std::io::Error::last_os_error(),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = crate::procref::stat(vmm.vmm_pid as i32).map(|s| s.state);
        let stopped = matches!(state, Some('T'));
        if stopped == stop || state.is_none() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(OciError::Runtime(format!(
                "hull-vmm (pid {}) did not {} within 10 s",
                vmm.vmm_pid,
                if stop { "stop" } else { "continue" }
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// An exec keeper the caller waits for.
struct ExecKeeper(i32);

impl Waitable for ExecKeeper {
    fn wait(self: Box<Self>) -> Result<i32> {
        crate::procref::wait_child(self.0)
    }
}

impl Runner for VmRunner {
    fn model(&self) -> Model {
        Model::Vm
    }

    fn create(&self, req: &CreateRequest<'_>) -> Result<ProcRef> {
        if req.preserve_fds > 0 {
            return Err(OciError::Unsupported(
                "--preserve-fds in the vm model (descriptors cannot cross into the guest)".into(),
            ));
        }
        check_host()?;
        let spec = &req.bundle.spec;
        // hull's own settings: every VMM is jailed the same way, whoever started it.
        let settings = jail::VmSettings::load(req.hull_config).map_err(OciError::Runtime)?;
        let mounts = vm_mounts::plan(
            spec.mounts().as_deref().unwrap_or_default(),
            &req.bundle.dir,
        )?;
        let mut container = guest_container(spec)?;
        let net = vm_net::plan(spec)?;
        container.network = net.as_ref().map(|n| Box::new(vm_net::guest(n)));
        let kernel = hvm::locate_kernel(None).map_err(vm_err)?;
        let vmm = hvm::locate_vmm().map_err(vm_err)?;
        let agent = hvm::locate_agent().map_err(vm_err)?;
        // Cached per container (a few MB): the state root holds only containers.
        let initramfs = initramfs::ensure_initramfs(&StatePaths::new(Some(&req.dir.dir)), &agent)
            .map_err(vm_err)?;
        let disk = req.dir.file(vm_disk::ROOTFS_IMAGE);
        vm_disk::build_with(&req.bundle.rootfs, &mounts.files, &disk)?;
        let (memory_mib, vcpus) = machine_size(spec);
        let boot = Boot {
            vmm,
            kernel,
            initramfs,
            disk,
            memory_mib,
            vcpus,
            boot_timeout_secs: boot_timeout().as_secs(),
            container,
            net,
            cgroup: super::cgroup::relative_path(spec, &req.dir.id),
            jail: settings.jail_range(),
        };
        let bytes = serde_json::to_vec(&boot).map_err(vm_err)?;
        fs::write(req.dir.file(BOOT_FILE), bytes)
            .map_err(|e| OciError::io(format!("write {BOOT_FILE}"), e))?;
        super::gate::make(req.dir)?;
        let tty = req.console_socket.as_deref().map(console_pty).transpose()?;
        spawn_keeper(&req.dir.dir, None, tty.as_ref())
    }

    fn start(&self, dir: &Locked, record: &Record) -> Result<()> {
        let fifo = super::gate::open(dir)?;
        // The keeper's open for writing returns now; it has the agent start the process and
        // writes "ok" or the error, then closes.
        let deadline = Instant::now() + boot_timeout();
        let mut report = Vec::new();
        let mut buf = [0u8; 512];
        let mut writer_seen = false;
        loop {
            match (&fifo).read(&mut buf) {
                Ok(0) if writer_seen => break,
                Ok(0) => {}
                Ok(n) => {
                    writer_seen = true;
                    report.extend_from_slice(&buf[..n]);
                    if report.len() as u64 > MAX_REPORT {
                        break;
                    }
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => writer_seen = true,
                Err(e) => return Err(OciError::io("read the start gate", e)),
            }
            let keeper_alive = record.init.is_some_and(|k| k.alive());
            if !keeper_alive || Instant::now() > deadline {
                break;
            }
            let mut pfd = libc::pollfd {
                fd: fifo.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; bounded wait so the keeper's death is noticed.
            unsafe { libc::poll(&mut pfd, 1, 100) };
        }
        let report = String::from_utf8_lossy(&report);
        match report.trim_end() {
            "ok" => Ok(()),
            "" => Err(OciError::Runtime(format!(
                "the VM did not start the container's process (see {})",
                dir.file(KEEPER_LOG).display()
            ))),
            other => Err(OciError::Runtime(
                other.strip_prefix("error: ").unwrap_or(other).to_string(),
            )),
        }
    }

    fn signal(&self, dir: &Locked, record: &Record, signal: i32, _all: bool) -> Result<()> {
        let keeper = record
            .init
            .filter(|k| k.alive())
            .ok_or_else(|| OciError::NotRunning(record.id.clone()))?;
        // Before `start` the guest runs no process of the container yet: the signal goes to
        // the keeper, whose VM dies with it.
        if record.phase != Phase::Started {
            keeper
                .signal(signal)
                .map_err(|e| OciError::io("signal the VM keeper", e))?;
            return Ok(());
        }
        match agent_signal(dir, signal) {
            Ok(()) => Ok(()),
            // An unresponsive (or paused) guest cannot ignore SIGKILL: the VM itself goes,
            // and the keeper reports 137.
            Err(_) if signal == libc::SIGKILL => {
                if let Some(m) = MachineState::load(&dir.dir) {
                    let _ = stop_vmm(&m, false);
                    m.kill();
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn exec(
        &self,
        dir: &Locked,
        record: &Record,
        req: ExecRequest,
    ) -> Result<Option<Box<dyn Waitable>>> {
        if req.preserve_fds > 0 {
            return Err(OciError::Unsupported(
                "--preserve-fds in the vm model (descriptors cannot cross into the guest)".into(),
            ));
        }
        if machine(dir).is_none() || record.phase != Phase::Started {
            return Err(OciError::NotRunning(record.id.clone()));
        }
        // The agent applies the container's seccomp profile and namespaces from the spec
        // it started.
        let process = guest_exec(&req.process);
        let file = dir.file(&format!("exec-{}.json", std::process::id()));
        fs::write(&file, serde_json::to_vec(&process).map_err(vm_err)?)
            .map_err(|e| OciError::io(format!("write {}", file.display()), e))?;
        let tty = req.console_socket.as_deref().map(console_pty).transpose();
        let keeper = tty.and_then(|tty| spawn_keeper(&dir.dir, Some(&file), tty.as_ref()));
        let _ = fs::remove_file(&file);
        let keeper = keeper?;
        if let Some(path) = &req.pid_file {
            crate::pidfile::write(path, keeper.pid)?;
        }
        if req.detach {
            return Ok(None);
        }
        Ok(Some(Box::new(ExecKeeper(keeper.pid))))
    }

    fn pids(&self, dir: &Locked, record: &Record) -> Result<Vec<i32>> {
        let mut pids: Vec<i32> = record
            .init
            .filter(|k| k.alive())
            .map(|k| k.pid)
            .into_iter()
            .collect();
        if let Some(m) = machine(dir) {
            pids.push(m.vmm_pid as i32);
        }
        Ok(pids)
    }

    fn pause(&self, dir: &Locked, record: &Record) -> Result<()> {
        let m = machine(dir).ok_or_else(|| OciError::NotRunning(record.id.clone()))?;
        stop_vmm(&m, true)
    }

    fn resume(&self, dir: &Locked, record: &Record) -> Result<()> {
        let m = machine(dir).ok_or_else(|| OciError::NotRunning(record.id.clone()))?;
        stop_vmm(&m, false)
    }

    fn update(&self, _dir: &Locked, _record: &Record, _resources: &LinuxResources) -> Result<()> {
        Err(OciError::Unsupported(
            "update in the vm model (the guest's limits are set when it boots)".into(),
        ))
    }

    fn destroy(&self, dir: &Locked, record: &Record) -> Result<()> {
        if let Some(keeper) = record.init {
            // hull-vmm dies with it (PR_SET_PDEATHSIG).
            let _ = keeper.signal(libc::SIGKILL);
        }
        let machine = MachineState::load(&dir.dir);
        if let Some(m) = &machine {
            let _ = stop_vmm(m, false);
            m.kill();
            if m.alive() {
                return Err(OciError::Runtime(format!(
                    "hull-vmm (pid {}) did not die after SIGKILL",
                    m.vmm_pid
                )));
            }
        }
        // The VMM is gone: its cgroup, jail directory and uid lease go too (whatever the
        // keeper got to; a lease whose holder died is released, a live one never), and the
        // redirect off the caller's interface.
        if let Ok(boot) = read_json::<Boot>(&dir.file(BOOT_FILE)) {
            if let Some(net) = &boot.net {
                vm_net::detach(net);
            }
            let jail_id = machine.and_then(|m| m.jail_id).or_else(|| {
                fs::read_to_string(dir.file(JAIL_ID_FILE))
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
            });
            machine::release(&boot.cgroup, &dir.dir, jail_id);
            super::cgroup::remove_default_parent(&Layout::host(), &boot.cgroup);
        }
        super::gate::remove(dir);
        for name in [
            BOOT_FILE,
            JAIL_ID_FILE,
            vm_disk::ROOTFS_IMAGE,
            hull_runtime::vm::machine::STATE_FILE,
            channel::VSOCK_SOCKET,
            &channel::hello_socket_name(),
        ] {
            let _ = fs::remove_file(dir.file(name));
        }
        let _ = fs::remove_dir_all(dir.file("vm"));
        Ok(())
    }
}

/// Reads a JSON file the creator wrote into the state directory (bounded).
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(4 << 20).read_to_end(&mut bytes))
        .map_err(|e| OciError::io(format!("read {}", path.display()), e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| OciError::Runtime(format!("{}: {e}", path.display())))
}

/// The keeper's report descriptor (fd 3), written once.
pub struct Report(Option<fs::File>);

impl Report {
    /// Takes fd 3 as the creator set it up.
    ///
    /// # Safety
    /// Only in a keeper process, whose fd 3 is the report pipe.
    pub unsafe fn from_fd3() -> Report {
        // Close-on-exec: hull-vmm, started later, must not hold the pipe open (the creator
        // would then wait for the VM's end instead of the report).
        // SAFETY: fcntl on fd 3 with integer arguments.
        unsafe { libc::fcntl(3, libc::F_SETFD, libc::FD_CLOEXEC) };
        // SAFETY: the caller guarantees fd 3 is the report pipe and nothing else owns it.
        Report(Some(unsafe { fs::File::from_raw_fd(3) }))
    }

    /// Sends `ok` or the error, and closes.
    pub fn send(&mut self, result: std::result::Result<(), String>) {
        if let Some(mut f) = self.0.take() {
            let text = match result {
                Ok(()) => "ok\n".to_string(),
                Err(e) => format!("error: {e}\n"),
            };
            let _ = f.write_all(text.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn memory_and_cpu_limits_size_the_vm() {
        let none = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}}}"#,
        );
        assert_eq!(machine_size(&none), (DEFAULT_MEMORY_MIB, 1));
        let sized = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}},
            "linux":{"resources":{"memory":{"limit":536870912},"cpu":{"quota":150000,"period":100000},"pids":{"limit":20}}}}"#,
        );
        let host = std::thread::available_parallelism().unwrap().get() as u32;
        assert_eq!(
            machine_size(&sized),
            (512 + MEMORY_OVERHEAD_MIB, 2.min(host))
        );
        let c = guest_container(&sized).unwrap();
        assert_eq!(
            c.spec.linux().as_ref().unwrap().resources(),
            sized.linux().as_ref().unwrap().resources(),
            "the agent applies the spec's limits"
        );
    }

    #[test]
    fn the_agent_gets_the_specs_process() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs","readonly":true},"hostname":"box",
            "process":{"cwd":"/srv","args":["echo","hi"],"env":["A=b"],"user":{"uid":1000,"gid":100},
            "noNewPrivileges":true,"capabilities":{"bounding":["CAP_KILL"]}},
            "linux":{"seccomp":{"defaultAction":"SCMP_ACT_ALLOW"}}}"#,
        );
        let c = guest_container(&s).unwrap();
        assert_eq!(
            c.spec.process(),
            s.process(),
            "the spec's process, as it is"
        );
        assert_eq!(c.spec.hostname().as_deref(), Some("box"));
        assert!(c.stdio.stdin && !c.stdio.tty);
        assert_eq!(
            c.spec.linux().as_ref().unwrap().cgroups_path().as_deref(),
            Some(Path::new("/container"))
        );
        let podmans = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}},
            "linux":{"seccomp":{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {"names":["pciconfig_iobase","read"],"action":"SCMP_ACT_ALLOW"},
                {"names":["pciconfig_read"],"action":"SCMP_ACT_ALLOW"}]}}}"#,
        );
        let c = guest_container(&podmans).unwrap();
        let rules = c.spec.linux().as_ref().unwrap().seccomp().as_ref().unwrap();
        let names: Vec<&String> = rules
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|r| r.names())
            .collect();
        assert_eq!(
            names,
            ["read"],
            "names x86_64 lacks are dropped, as runc does"
        );
        let no_process = spec(r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"}}"#);
        assert!(guest_container(&no_process).is_err());
    }
}
