//! The `vm` backend: each container is a KVM microVM (`hull-vmm` child process) with its own
//! guest kernel; the guest agent (PID 1) runs the container's processes.
//!
//! Per container, in its state directory: `vm.json` (VMM pid + start time + jail id),
//! `console.log` (guest serial console), `vmm.log`, and the VMM's jail directory `jail/`
//! (its root once jailed) holding only sockets: `vsock.sock` (the VMM's vsock socket) and
//! `vsock.sock_1024` (where the agent says hello at boot). Each VMM runs jailed (`jail`,
//! `launch`, `ids`; docs/vmm.md "Jail") unless the config file says `vm.jail: false`. Shared and cached under the state
//! root: the image's erofs disk (`vm/disks/`, one per image id) and the agent initramfs.
//! Per container under the state root: the writable layer's ext4 disk
//! (`containers/<id>/upper.ext4`, see [`upper`]), kept across stop/start.
//! The guest is hostile: every message is bounded and validated, every wait has a timeout,
//! and nothing the guest says selects a host path or resource (the sockets, disk and
//! kernel are all chosen by the host before the VM starts).

pub mod channel;
pub mod disk;
pub mod ids;
pub mod initramfs;
pub mod jail;
pub mod launch;
pub mod machine;
pub mod relay;
pub mod upper;
pub mod virtiofs;
pub mod volumes;

use std::fs::File;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hull_protocol::{self as proto, Message};

use crate::isolation::{
    ContainerContext, ContainerSpec, ExitStatus, Isolation, IsolationError, IsolationKind,
    ProcessIo, ProcessSpec, Started,
};
use channel::StateDir;
use machine::{MachineConfig, MachineState};
use relay::{RelayIo, VmProcess};

/// Where `kernel-config/build.sh` installs the guest kernel.
pub const DEFAULT_KERNEL: &str = "/usr/local/lib/hull/vmlinux";
/// Where an installed hull keeps the static guest agent.
pub const INSTALLED_AGENT: &str = "/usr/local/lib/hull/hull-agent";
/// Default guest RAM when no `--memory` is given.
pub const DEFAULT_MEMORY_MIB: u64 = 256;
/// Guest RAM added on top of `--memory` for the guest kernel and agent.
pub const MEMORY_OVERHEAD_MIB: u64 = 64;
/// Default wait for the agent's hello.
pub const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of the vm backend.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The host cannot run VMs (PVM, missing binary, ...).
    #[error("{0}")]
    Unavailable(String),
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// The VM did not boot far enough.
    #[error("the microVM did not start: {0}")]
    Boot(String),
    /// The guest broke the protocol or did not answer in time.
    #[error("guest agent: {0}")]
    Protocol(String),
    /// The container's VM is not running.
    #[error("container is not running")]
    NotRunning,
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Anything else.
    #[error("{0}")]
    Backend(String),
}

impl VmError {
    /// Wraps an I/O error.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> VmError {
        VmError::Io {
            what: what.into(),
            source,
        }
    }
}

impl From<VmError> for IsolationError {
    fn from(e: VmError) -> Self {
        match e {
            VmError::Unavailable(why) => IsolationError::Unavailable(IsolationKind::Vm, why),
            VmError::Invalid(why) => IsolationError::InvalidSpec(why),
            VmError::NotRunning => IsolationError::NotRunning,
            VmError::Io { what, source } => IsolationError::Os { what, source },
            other => IsolationError::Backend(other.to_string()),
        }
    }
}

/// Explains why this host's KVM cannot boot the guest, if it cannot.
pub fn host_problem(sys_root: &Path) -> Option<String> {
    if sys_root.join("sys/module/kvm_pvm").exists() {
        return Some(
            "this host's /dev/kvm is PVM (the kvm_pvm module is loaded): it runs guest kernel \
             code in a slow instruction emulator and cannot boot hull's unmodified Linux guest \
             kernel. Use --isolation=process here, or run --isolation=vm on a host with \
             hardware virtualization (VT-x/AMD-V), e.g. inside the nested test harness"
                .into(),
        );
    }
    if !sys_root.join("dev/kvm").exists() {
        return Some(
            "/dev/kvm does not exist: load kvm_intel or kvm_amd (hardware virtualization must \
             be enabled), or use --isolation=process"
                .into(),
        );
    }
    None
}

/// Directory of the running `hull` binary.
fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()?
        .parent()
        .map(Path::to_path_buf)
}

/// The hull-vmm binary: `$HULL_VMM`, beside `hull`, or /usr/local/lib/hull.
pub fn locate_vmm() -> Result<PathBuf, VmError> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("HULL_VMM") {
        candidates.push(p.into());
    }
    if let Some(d) = exe_dir() {
        candidates.push(d.join("hull-vmm"));
    }
    candidates.push("/usr/local/lib/hull/hull-vmm".into());
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        VmError::Unavailable(
            "hull-vmm not found beside hull or in /usr/local/lib/hull (set HULL_VMM)".into(),
        )
    })
}

/// The static guest agent: `$HULL_AGENT`, the static build of this workspace
/// (`target/x86_64-unknown-linux-gnu/<profile>/`), beside `hull` (if static), or
/// /usr/local/lib/hull.
pub fn locate_agent() -> Result<PathBuf, VmError> {
    if let Some(p) = std::env::var_os("HULL_AGENT") {
        return Ok(p.into());
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(d) = exe_dir() {
        if let (Some(profile), Some(target)) = (d.file_name(), d.parent()) {
            candidates.push(
                target
                    .join("x86_64-unknown-linux-gnu")
                    .join(profile)
                    .join("hull-agent"),
            );
        }
        candidates.push(d.join("hull-agent"));
    }
    candidates.push(INSTALLED_AGENT.into());
    let is_static = |p: &Path| {
        std::fs::read(p)
            .ok()
            .and_then(|b| initramfs::is_dynamically_linked(&b).ok())
            == Some(false)
    };
    if let Some(p) = candidates.iter().find(|p| p.is_file() && is_static(p)) {
        return Ok(p.clone());
    }
    // Report the first one that exists so the error explains the static-build requirement.
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        VmError::Unavailable(
            "the guest agent hull-agent was not found (build it static: RUSTFLAGS=\"-C \
                 target-feature=+crt-static\" cargo build -p hull-agent --target \
                 x86_64-unknown-linux-gnu, or set HULL_AGENT)"
                .into(),
        )
    })
}

/// The guest kernel: `--kernel`, `$HULL_KERNEL` or the installed one.
pub fn locate_kernel(explicit: Option<&Path>) -> Result<PathBuf, VmError> {
    let path = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("HULL_KERNEL").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_KERNEL));
    if !path.is_file() {
        return Err(VmError::Unavailable(format!(
            "guest kernel {} not found (build it with kernel-config/build.sh, or pass --kernel)",
            path.display()
        )));
    }
    Ok(path)
}

/// How a process's standard streams reach the host, for the agent.
fn guest_stdio(p: &ProcessSpec, tty_size: Option<(u16, u16)>) -> proto::StdioSpec {
    proto::StdioSpec {
        tty: p.tty(),
        stdin: p.stdin,
        tty_size,
    }
}

/// The agent's failure as the runtime's error: the executor's typed error, with the
/// guest's text escaped and bounded before it goes anywhere (a record, a terminal).
fn guest_error(e: proto::WireError) -> IsolationError {
    let mut e = e.into_error();
    e.detail = crate::sanitize::one_line(&e.detail, 1024).into_owned();
    IsolationError::Setup(e)
}

/// The guest's view of the container network: eth0 (bridge mode) and the /etc files.
fn guest_network(spec: &ContainerSpec) -> Result<Option<Box<proto::Network>>, IsolationError> {
    let Some(a) = &spec.attachment else {
        return Ok(None);
    };
    let interface = a.interface.as_ref().map(|i| proto::Interface {
        mac: i.mac.clone(),
        address: i.address,
        prefix: i.prefix,
        gateway: i.gateway,
        mtu: i.mtu,
    });
    let mut files = Vec::with_capacity(a.files.len());
    for f in &a.files {
        use std::io::Read;
        let mut contents = String::new();
        File::open(&f.host)
            .and_then(|file| {
                file.take(proto::MAX_STRING as u64)
                    .read_to_string(&mut contents)
            })
            .map_err(|e| IsolationError::os(format!("read {}", f.host.display()), e))?;
        files.push(proto::ContainerFile {
            path: f.container.clone(),
            contents,
        });
    }
    Ok(Some(Box::new(proto::Network { interface, files })))
}

/// The spec's memory limit in bytes, if any.
fn memory_limit(spec: &ContainerSpec) -> Option<u64> {
    spec.oci
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .filter(|l| *l > 0)
        .map(|l| l as u64)
}

/// The spec's CPU limit in thousandths of a CPU, if any (quota / period, rounded up).
fn cpu_millis(spec: &ContainerSpec) -> Option<u64> {
    let cpu = spec
        .oci
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.cpu().clone())?;
    let quota = cpu.quota().filter(|q| *q > 0)? as u64;
    let period = cpu.period().unwrap_or(100_000).max(1);
    Some((quota * 1000).div_ceil(period))
}

/// VM size for a spec: the memory limit plus room for the guest kernel, the CPU limit
/// rounded up to whole vCPUs.
pub fn machine_size(spec: &ContainerSpec) -> (u64, u32) {
    let memory = memory_limit(spec)
        .map(|b| b.div_ceil(1 << 20) + MEMORY_OVERHEAD_MIB)
        .unwrap_or(DEFAULT_MEMORY_MIB)
        .clamp(128, 65536);
    let host_cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let vcpus = cpu_millis(spec)
        .map(|m| m.div_ceil(1000) as u32)
        .unwrap_or(1)
        .clamp(1, host_cpus.clamp(1, 32));
    (memory, vcpus)
}

/// Refuses what a VM cannot give: host namespaces. (Host directories are shared by
/// virtio-fs, [`volumes`].)
fn check_vm_spec(spec: &ContainerSpec) -> Result<(), IsolationError> {
    let namespaces = spec
        .oci
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref());
    if let Some(ns) = namespaces
        .into_iter()
        .flatten()
        .find(|n| n.path().is_some())
    {
        return Err(IsolationError::InvalidSpec(format!(
            "joining a host namespace ({:?}) is not possible with --isolation=vm: the guest has \
             its own kernel",
            ns.typ()
        )));
    }
    Ok(())
}

fn boot_timeout() -> Duration {
    std::env::var("HULL_VM_BOOT_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_BOOT_TIMEOUT)
}

/// Relay sinks, the terminal's host end (with `-t`) and the initial terminal size.
type PreparedIo = (RelayIo, Option<std::os::fd::OwnedFd>, Option<(u16, u16)>);

/// Turns the caller's I/O choice into relay sinks (and, for a terminal, the host end).
fn relay_io(io: ProcessIo) -> Result<PreparedIo, IsolationError> {
    match io {
        ProcessIo::Pipes {
            stdin,
            stdout,
            stderr,
        } => Ok((
            RelayIo {
                input: stdin.map(File::from),
                stdout: File::from(stdout),
                stderr: Some(File::from(stderr)),
                shutdown_on_exit: None,
            },
            None,
            None,
        )),
        ProcessIo::Terminal { size } => {
            let (host_end, our_end) = std::os::unix::net::UnixStream::pair()
                .map_err(|e| IsolationError::os("socketpair for the terminal", e))?;
            let dup = || {
                our_end
                    .try_clone()
                    .map_err(|e| IsolationError::os("dup terminal socket", e))
            };
            let input = File::from(std::os::fd::OwnedFd::from(dup()?));
            let output = File::from(std::os::fd::OwnedFd::from(dup()?));
            Ok((
                RelayIo {
                    input: Some(input),
                    stdout: output,
                    stderr: None,
                    shutdown_on_exit: Some(our_end),
                },
                Some(host_end.into()),
                Some((size.rows, size.cols)),
            ))
        }
    }
}

/// The `vm` isolation backend.
#[derive(Debug, Default)]
pub struct VmIsolation {
    /// Root for host checks (`/` normally; tests point it at a crafted tree).
    sys_root: Option<PathBuf>,
}

impl VmIsolation {
    /// A backend handle (holds no per-container state).
    pub fn new() -> Self {
        VmIsolation::default()
    }

    fn check_host(&self) -> Result<(), VmError> {
        if std::env::var_os("HULL_VM_SKIP_HOST_CHECK").is_some() {
            return Ok(());
        }
        let root = self.sys_root.clone().unwrap_or_else(|| PathBuf::from("/"));
        match host_problem(&root) {
            Some(why) => Err(VmError::Unavailable(why)),
            None => Ok(()),
        }
    }

    fn start_vm(
        &self,
        ctx: &ContainerContext,
        spec: &ContainerSpec,
        io: ProcessIo,
    ) -> Result<Started, IsolationError> {
        self.check_host()?;
        check_vm_spec(spec)?;
        let volumes = volumes::from_spec(&spec.oci)?;
        if spec
            .attachment
            .as_ref()
            .is_some_and(|a| a.namespace == crate::network::Namespace::Host)
        {
            return Err(IsolationError::InvalidSpec(
                "--network host is not available with --isolation=vm: the VM has its own \
                 kernel and network stack"
                    .into(),
            ));
        }
        let kernel = locate_kernel(spec.kernel.as_deref())?;
        let vmm = locate_vmm()?;
        let agent = locate_agent()?;
        let initramfs = initramfs::ensure_initramfs(&ctx.paths, &agent)?;
        let disk = disk::ensure_disk(&ctx.paths, &spec.image_id, &spec.layers)?;
        let read_only = spec
            .oci
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false);
        let layer_disk = if read_only {
            None
        } else {
            Some(upper::ensure_layer_disk(ctx, spec.storage.size_bytes)?)
        };
        let (memory_mib, vcpus) = machine_size(spec);
        let settings =
            jail::VmSettings::load(&ctx.paths.config_file()).map_err(VmError::Invalid)?;
        let debug = tracing::enabled!(tracing::Level::DEBUG);
        // The TAP in the container's namespace, tied to its veth; ours is closed once the
        // VMM holds it.
        let link = match &spec.attachment {
            Some(a) => crate::network::vmlink::link(a)
                .map_err(|e| IsolationError::Backend(format!("network: {e}")))?,
            None => None,
        };
        // The namespace the TAP lives in (a link exists only for a joined one).
        let netns = spec.attachment.as_ref().and_then(|a| match &a.namespace {
            crate::network::Namespace::Join(path) => Some(path.clone()),
            _ => None,
        });
        let guest_network = guest_network(spec)?;
        let cfg = MachineConfig {
            vmm,
            kernel,
            initramfs,
            disk,
            layer_disk,
            memory_mib,
            vcpus,
            extra_cmdline: if debug {
                "hull.debug".into()
            } else {
                String::new()
            },
            nano_cpus: cpu_millis(spec).map(|m| m * 1_000_000),
            jail: settings.jail_range(),
            net: link
                .as_ref()
                .zip(netns)
                .map(|(l, netns)| machine::NetDevice {
                    tap_fd: std::os::fd::AsRawFd::as_raw_fd(&l.tap),
                    mac: l.mac.clone(),
                    mtu: l.mtu,
                    netns,
                }),
            fs: (0..volumes.len())
                .map(|i| (volumes::socket(i), volumes::tag(i)))
                .collect(),
        };
        let (relay_io, terminal, tty_size) = relay_io(io)?;

        let plan = machine::prepare(&cfg, &jail::vmm_cgroup(&ctx.id), ctx.dir())?;
        let jail_id = plan.as_ref().map(|p| p.id);
        let launched = (|| -> Result<_, IsolationError> {
            let dir = StateDir::open(&jail::dir(ctx.dir()))?;
            let hello_name = channel::hello_socket_name();
            let listener = UnixListener::bind(dir.short(&hello_name))
                .map_err(|e| IsolationError::os("listen for the guest agent", e))?;
            if let Some(id) = jail_id {
                jail::give_socket(&dir.real(&hello_name), id)
                    .map_err(|e| IsolationError::os("the hello socket", e))?;
            }
            // Dropped (killed, sockets removed) if anything below fails.
            let backends = volumes::start_backends(ctx, &dir, &volumes)?;
            let vmm = machine::launch(&cfg, ctx.dir(), plan.as_ref())?;
            Ok((dir, hello_name, listener, vmm, backends))
        })();
        let (dir, hello_name, listener, mut vmm, backends) = match launched {
            Ok(l) => l,
            Err(e) => {
                machine::release(&jail::vmm_cgroup(&ctx.id), ctx.dir(), jail_id);
                return Err(e);
            }
        };
        drop(link);
        let vmm_pid = vmm.pid;
        let mut state = MachineState {
            vmm_pid,
            start_time: vmm.start_time,
            guest_kernel: String::new(),
            jail_id,
        };
        let booted = (|| -> Result<_, IsolationError> {
            state.save(ctx.dir())?;
            let console = ctx.file(machine::CONSOLE_LOG);
            let vmm_log = ctx.file(machine::VMM_LOG);
            let (conn, guest_kernel) = channel::accept_hello(&listener, boot_timeout(), || {
                vmm.try_status().map(|status| {
                    let (how, why) = match status {
                        ExitStatus::Code(code) => (
                            format!("exit status {code}"),
                            machine::vmm_failure(code, &vmm_log),
                        ),
                        ExitStatus::Signal(s) => (format!("signal {s}"), None),
                    };
                    format!(
                        "hull-vmm exited ({how}) before the guest agent started.{}\nvmm.log: \
                             {}\nconsole: {}",
                        why.map(|w| format!(" {w}")).unwrap_or_default(),
                        machine::tail(&vmm_log, 5),
                        machine::tail(&console, 10)
                    )
                })
            })
            .map_err(|e| match e {
                VmError::Boot(why) if !why.contains("console:") => VmError::Boot(format!(
                    "{why}\nlast console lines:\n{}",
                    machine::tail(&console, 10)
                )),
                other => other,
            })?;
            state.guest_kernel = guest_kernel;
            state.save(ctx.dir())?;
            // The container's spec as it is stored, its host directories turned into
            // virtio-fs mounts; the agent carries it out with the executor, as the
            // process backend does on the host.
            let container = proto::ContainerSpec {
                spec: Box::new(volumes::guest_spec(&spec.oci, &volumes)),
                stdio: guest_stdio(&spec.init_process(), tty_size),
                network: guest_network.clone(),
            };
            let deadline = Instant::now() + channel::START_TIMEOUT;
            match channel::request(&conn, &Message::Start(container), "start", deadline)? {
                Message::Started { .. } => Ok(conn),
                Message::Error(e) => Err(guest_error(e)),
                other => Err(VmError::Protocol(format!(
                    "expected started, got {}",
                    channel::describe(&other)
                ))
                .into()),
            }
        })();
        drop(listener);
        let _ = std::fs::remove_file(dir.real(&hello_name));
        let conn = match booted {
            Ok(conn) => conn,
            Err(e) => {
                vmm.kill();
                self.remove_files(ctx, jail_id);
                return Err(e);
            }
        };
        let vmm = relay::OwnedVmm {
            process: vmm,
            log: ctx.file(machine::VMM_LOG),
            backends,
        };
        let process = VmProcess::start(conn, relay_io, vmm_pid, Some(vmm))?;
        Ok(Started {
            process: Box::new(process),
            terminal,
        })
    }

    /// Removes the VM's files, jail directory, cgroup and id lease (its VMM is gone).
    fn remove_files(&self, ctx: &ContainerContext, jail_id: Option<u32>) {
        machine::release(&jail::vmm_cgroup(&ctx.id), ctx.dir(), jail_id);
        let _ = std::fs::remove_file(ctx.file(machine::STATE_FILE));
    }
}

impl Isolation for VmIsolation {
    fn kind(&self) -> IsolationKind {
        IsolationKind::Vm
    }

    fn start(
        &self,
        ctx: &ContainerContext,
        spec: &ContainerSpec,
        io: ProcessIo,
    ) -> Result<Started, IsolationError> {
        self.start_vm(ctx, spec, io)
    }

    /// The agent takes the container's seccomp profile and namespaces from the spec it
    /// was started with.
    fn exec(
        &self,
        ctx: &ContainerContext,
        _spec: &ContainerSpec,
        process: &ProcessSpec,
        io: ProcessIo,
    ) -> Result<Started, IsolationError> {
        let state = MachineState::load(ctx.dir()).ok_or(IsolationError::NotRunning)?;
        if !state.alive() {
            return Err(IsolationError::NotRunning);
        }
        let (relay_io, terminal, tty_size) = relay_io(io)?;
        let dir = StateDir::open(&jail::dir(ctx.dir()))?;
        let deadline = Instant::now() + channel::REPLY_TIMEOUT;
        let conn = channel::connect_agent(&dir, deadline)?;
        let request = proto::ExecSpec {
            process: Box::new(process.oci.clone()),
            user: process.user.clone(),
            stdio: guest_stdio(process, tty_size),
        };
        match channel::request(&conn, &Message::Exec(request), "exec", deadline)? {
            Message::Started { .. } => {}
            Message::Error(e) => return Err(guest_error(e)),
            other => {
                return Err(VmError::Protocol(format!(
                    "expected started, got {}",
                    channel::describe(&other)
                ))
                .into())
            }
        }
        let process = VmProcess::start(conn, relay_io, state.vmm_pid, None)?;
        Ok(Started {
            process: Box::new(process),
            terminal,
        })
    }

    fn signal(&self, ctx: &ContainerContext, signal: i32) -> Result<(), IsolationError> {
        let state = MachineState::load(ctx.dir()).ok_or(IsolationError::NotRunning)?;
        if !state.alive() {
            return Err(IsolationError::NotRunning);
        }
        let via_agent = (|| -> Result<(), IsolationError> {
            let dir = StateDir::open(&jail::dir(ctx.dir()))?;
            // Connection and answer together within the signal timeout, however the guest
            // spreads its bytes: stop/kill/rm never wait longer on it.
            let deadline = Instant::now() + channel::SIGNAL_TIMEOUT;
            let conn = channel::connect_agent(&dir, deadline)?;
            match channel::request(&conn, &Message::Signal { signal }, "signal", deadline)? {
                Message::Ok => Ok(()),
                Message::Error(e) => Err(guest_error(e)),
                other => Err(VmError::Protocol(format!(
                    "expected ok, got {}",
                    channel::describe(&other)
                ))
                .into()),
            }
        })();
        match via_agent {
            Ok(()) => Ok(()),
            // An unresponsive guest cannot ignore SIGKILL: the VM itself goes.
            Err(_) if signal == libc::SIGKILL => {
                state.kill();
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn is_alive(&self, ctx: &ContainerContext) -> bool {
        MachineState::load(ctx.dir()).is_some_and(|s| s.alive())
    }

    /// The VM goes, whatever its guest says.
    fn terminate(&self, ctx: &ContainerContext) -> Result<(), IsolationError> {
        if let Some(state) = MachineState::load(ctx.dir()) {
            state.kill();
        }
        Ok(())
    }

    fn cleanup(&self, ctx: &ContainerContext) -> Result<(), IsolationError> {
        let mut jail_id = None;
        if let Some(state) = MachineState::load(ctx.dir()) {
            state.kill();
            if state.alive() {
                return Err(IsolationError::Backend(format!(
                    "hull-vmm (pid {}) did not die after SIGKILL",
                    state.vmm_pid
                )));
            }
            jail_id = state.jail_id;
        }
        self.remove_files(ctx, jail_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvm_hosts_are_refused_with_an_explanation() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("sys/module/kvm_pvm")).unwrap();
        std::fs::create_dir_all(root.path().join("dev")).unwrap();
        std::fs::write(root.path().join("dev/kvm"), "").unwrap();
        let why = host_problem(root.path()).expect("PVM must be refused");
        assert!(
            why.contains("PVM") && why.contains("--isolation=process"),
            "{why}"
        );
        std::fs::remove_dir_all(root.path().join("sys/module/kvm_pvm")).unwrap();
        assert_eq!(host_problem(root.path()), None);
        std::fs::remove_file(root.path().join("dev/kvm")).unwrap();
        assert!(host_problem(root.path()).unwrap().contains("/dev/kvm"));
    }

    fn spec_with(opts: crate::container::spec::RunOptions) -> ContainerSpec {
        let image = crate::container::spec::ImageFacts {
            name: "i".into(),
            id: "sha256:00".into(),
            layers: vec![],
            entrypoint: vec![],
            cmd: vec!["true".into()],
            env: vec![],
            working_dir: String::new(),
            user: String::new(),
        };
        crate::container::spec::build("0123456789abcdef", &image, &opts).unwrap()
    }

    /// What a user can count on, not the formula: the guest gets at least the memory asked
    /// for plus room for its kernel and agent, more when more is asked, and never a
    /// uselessly small machine; `--cpus` is rounded up to whole vCPUs, one by default, never
    /// more than the host has. (tests/harness_vm.rs checks the guest's own view.)
    #[test]
    fn memory_and_cpus_size_the_vm() {
        use crate::container::spec::RunOptions;
        let size = |memory: Option<String>, cpus: Option<&str>| {
            machine_size(&spec_with(RunOptions {
                memory,
                cpus: cpus.map(str::to_string),
                ..Default::default()
            }))
        };
        let mib = |m: u64| Some(format!("{m}m"));
        for asked in [6, 32, 64, 100, 512, 2048] {
            let (mem, _) = size(mib(asked), None);
            assert!(mem >= asked + 32, "{asked} MiB asked, VM of {mem} MiB");
            assert!(
                mem >= 128,
                "{asked} MiB asked, VM of {mem} MiB is too small to boot"
            );
        }
        assert!(size(mib(2048), None).0 > size(mib(512), None).0);
        // An odd byte count is not rounded down below what was asked.
        assert!(size(Some(((512u64 << 20) + 1).to_string()), None).0 > 512);
        assert!(size(None, None).0 >= 128, "a default VM boots");

        let host = std::thread::available_parallelism().unwrap().get() as u32;
        assert_eq!(size(None, None).1, 1, "one vCPU by default");
        assert_eq!(size(None, Some("0.2")).1, 1, "0.2 CPU is one vCPU");
        assert_eq!(size(None, Some("1.5")).1, 2.min(host), "1.5 rounds up");
        let many = size(None, Some("64")).1;
        assert!(
            many <= host && many >= 2.min(host),
            "64 CPUs asked: {many} of {host}"
        );
    }

    /// What the agent reports reaches the user as the process model's error would: a
    /// missing command exits 127 naming it, an unexecutable one 126, anything else 125;
    /// the guest's text is escaped and bounded.
    #[test]
    fn the_agent_s_typed_failures_give_the_process_model_s_exit_codes() {
        use hull_executor::{Error, ErrorKind, Stage};
        let wire = |kind, detail: &str| {
            proto::WireError::from(Error::new(kind, Stage::Exec, detail.to_string()))
        };
        let e = guest_error(wire(
            ErrorKind::CommandNotFound,
            "nope: executable file not found in $PATH",
        ));
        assert_eq!(e.exit_code(), 127);
        assert!(e.to_string().contains("nope"), "{e}");
        assert_eq!(
            guest_error(wire(ErrorKind::NotExecutable, "/etc")).exit_code(),
            126
        );
        assert_eq!(
            guest_error(wire(ErrorKind::System, "cgroup")).exit_code(),
            125
        );
        let hostile = guest_error(wire(
            ErrorKind::System,
            &format!("\x1b[2J{}", "x".repeat(5000)),
        ));
        let text = hostile.to_string();
        assert!(!text.contains('\x1b') && text.len() < 2000, "{text:?}");
    }

    #[test]
    fn host_namespaces_are_refused_in_vm_mode() {
        let mut spec = spec_with(Default::default());
        let mut linux = spec.oci.linux().clone().unwrap();
        let mut ns = linux.namespaces().clone().unwrap();
        ns[0].set_path(Some("/proc/1/ns/net".into()));
        linux.set_namespaces(Some(ns));
        spec.oci.set_linux(Some(linux));
        let err = check_vm_spec(&spec).unwrap_err();
        assert!(err.to_string().contains("host namespace"), "{err}");
    }
}
