//! The one interface both isolation models implement.
//!
//! A container is described once, backend-neutrally, by a [`ContainerSpec`]: an OCI runtime
//! spec (built by `container::spec` from the image config and the `run` flags, the way docker
//! and podman write config.json) plus the image layers of its root filesystem. A backend
//! ([`Isolation`]) turns it into a running
//! init process (`process`: a namespaced process on the host kernel; `vm`: a microVM whose
//! guest agent runs the process) and offers the per-container operations the supervisor
//! ("shim", `container::supervisor`) and the CLI need: start, exec, signal, cleanup.
//!
//! Rules every backend follows:
//! - Everything a backend needs to find a container again (pids, cgroup paths, VM sockets)
//!   it keeps in files under [`ContainerContext::state_dir`], written atomically, so that a
//!   *different* `hull` invocation (`exec`, `kill`, `rm`, `ps` after a crash) can act on it.
//! - [`Isolation::start`] and [`Isolation::exec`] return only once the process runs (or
//!   with an error saying why it could not, e.g. [`IsolationError::CommandNotFound`]).
//! - [`Isolation::cleanup`] is idempotent and works from those files alone: it kills what
//!   is left and removes mounts, cgroups, VMs and backend files, whether the container
//!   exited cleanly, its supervisor crashed, or it was never started.
//! - Nothing from inside the container is trusted: sizes are bounded, waits time out.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Process, Spec};
use serde::{Deserialize, Serialize};

use crate::network::{Attachment, NetworkSpec};
use crate::paths::StatePaths;

/// Which isolation model runs a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IsolationKind {
    /// A namespaced process on the host kernel (runc/crun/youki style).
    Process,
    /// A KVM microVM with its own kernel and a guest agent (Kata/Firecracker style).
    Vm,
}

impl IsolationKind {
    /// The name used on the command line and in state files (`process`, `vm`).
    pub fn as_str(self) -> &'static str {
        match self {
            IsolationKind::Process => "process",
            IsolationKind::Vm => "vm",
        }
    }
}

impl std::fmt::Display for IsolationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for IsolationKind {
    type Err = IsolationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "process" => Ok(IsolationKind::Process),
            "vm" => Ok(IsolationKind::Vm),
            other => Err(IsolationError::InvalidSpec(format!(
                "unknown isolation {other:?} (expected \"process\" or \"vm\")"
            ))),
        }
    }
}

/// Everything needed to run one container, independent of the isolation model: the OCI
/// runtime spec (config.json) that describes it, and the image its root filesystem is made
/// of (the bundle's `rootfs`, which hull assembles from the image layers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Image reference as the user gave it (e.g. `hull/busybox:latest`).
    pub image: String,
    /// Content id of the image (`sha256:...`).
    pub image_id: String,
    /// Read-only image layers, overlay-ready directories, lowest first.
    pub layers: Vec<PathBuf>,
    /// Keep the init process's stdin open (`-i`): how the supervisor wires its input.
    #[serde(default)]
    pub interactive: bool,
    /// `--storage-opt`: the writable layer's options (its size cap).
    #[serde(default)]
    pub storage: crate::storage::opts::StorageOpts,
    /// Guest kernel for `--isolation=vm` (`--kernel`); `None`: the installed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<PathBuf>,
    /// Networking as asked for (`--network`, `-p`, `--dns`, `--add-host`...).
    #[serde(default)]
    pub network: NetworkSpec,
    /// The network set up for this start (by `crate::network`, before [`Isolation::start`]):
    /// which network namespace to run in, the /etc files to put in place, eth0's
    /// configuration. `None`: a new namespace with loopback only and the image's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
    /// The OCI runtime spec: the one description both backends carry out. Stored as
    /// `config.json` in the container's state directory (not inside state.json).
    #[serde(skip)]
    pub oci: Spec,
}

impl ContainerSpec {
    /// The init process as the OCI spec gives it.
    pub fn process(&self) -> &Process {
        static NONE: std::sync::OnceLock<Process> = std::sync::OnceLock::new();
        self.oci
            .process()
            .as_ref()
            .unwrap_or_else(|| NONE.get_or_init(Process::default))
    }

    /// Whether the init process has a terminal (`-t`).
    pub fn tty(&self) -> bool {
        self.process().terminal().unwrap_or(false)
    }

    /// The init process's argv.
    pub fn args(&self) -> &[String] {
        self.process().args().as_deref().unwrap_or(&[])
    }

    /// The init process as an exec-style request.
    pub fn init_process(&self) -> ProcessSpec {
        ProcessSpec {
            oci: self.process().clone(),
            stdin: self.interactive,
            user: None,
        }
    }
}

/// One process to run inside a container (the init process, or one `exec`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSpec {
    /// The OCI process: args, env, cwd, uid/gid, terminal, capabilities, rlimits...
    pub oci: Process,
    /// Keep stdin open (`-i`); without it the process reads from /dev/null.
    pub stdin: bool,
    /// A `--user` still to be resolved against the *running* container's /etc/passwd and
    /// /etc/group (`exec -u`), by the side that sees its files; `oci.user` is replaced.
    pub user: Option<String>,
}

impl ProcessSpec {
    /// Whether the process has a terminal (`-t`).
    pub fn tty(&self) -> bool {
        self.oci.terminal().unwrap_or(false)
    }
}

/// Where a backend may keep its files for one container.
#[derive(Debug, Clone)]
pub struct ContainerContext {
    /// Container id (64 hex digits).
    pub id: String,
    /// The container's runtime directory (`StatePaths::containers()/ID`). The backend owns
    /// the files it creates here and removes them in [`Isolation::cleanup`].
    pub state_dir: PathBuf,
    /// hull's state roots (image store, run root).
    pub paths: StatePaths,
}

impl ContainerContext {
    /// A path for a backend-private file in the state directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.state_dir.join(name)
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.state_dir
    }

    /// The container's persistent storage directory (its writable layer) under the state
    /// root: kept across stop and start, removed with the container (`hull rm`). Backends
    /// create it on first start.
    pub fn storage_dir(&self) -> PathBuf {
        self.paths.container_storage().join(&self.id)
    }
}

/// Terminal size in character cells.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WinSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// How the caller connects a process's standard streams.
#[derive(Debug)]
pub enum ProcessIo {
    /// Plain descriptors. `stdin: None` means /dev/null inside the container.
    Pipes {
        /// Read end given to the process as fd 0, or `None` for /dev/null.
        stdin: Option<OwnedFd>,
        /// Given to the process as fd 1.
        stdout: OwnedFd,
        /// Given to the process as fd 2.
        stderr: OwnedFd,
    },
    /// A terminal created by the backend (inside the container or guest) of this size;
    /// its host-side end comes back as [`Started::terminal`].
    Terminal {
        /// Initial window size.
        size: WinSize,
    },
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "value")]
pub enum ExitStatus {
    /// Exited with this status (0-255).
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// The shell-style exit code: the status, or 128+N for signal N (docker does the same).
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}

/// A started process: the init process of a container or one `exec`.
///
/// Owned by whoever started it (the supervisor for init, `hull exec` for an exec).
pub trait ContainerProcess: Send {
    /// Host pid that best represents the process (the process itself, or the VMM).
    fn pid(&self) -> u32;

    /// A descriptor that becomes readable (POLLIN) once the process has exited, so the
    /// supervisor can wait in one `poll` together with its I/O (a pidfd, an eventfd...).
    fn exit_fd(&self) -> BorrowedFd<'_>;

    /// Waits for the process to end (blocking) and returns how it ended. Called once.
    fn wait(&mut self) -> Result<ExitStatus, IsolationError>;

    /// Sends a signal to this process.
    fn signal(&self, signal: i32) -> Result<(), IsolationError>;

    /// Resizes the process's terminal (no-op without `-t`).
    fn resize(&self, size: WinSize) -> Result<(), IsolationError>;
}

/// What [`Isolation::start`] / [`Isolation::exec`] hand back.
pub struct Started {
    /// The running process.
    pub process: Box<dyn ContainerProcess>,
    /// Host end of the terminal for `ProcessIo::Terminal`: read output, write input.
    pub terminal: Option<OwnedFd>,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("pid", &self.process.pid())
            .field("terminal", &self.terminal)
            .finish()
    }
}

/// An isolation backend. Implementations hold no per-container state in memory: all of it
/// is in [`ContainerContext::state_dir`], so any `hull` process can act on any container.
pub trait Isolation: Send + Sync {
    /// Which model this is.
    fn kind(&self) -> IsolationKind;

    /// Creates the container's resources (root filesystem, cgroups or VM) and starts its
    /// init process with the given I/O. Returns once the process runs. On error nothing is
    /// left behind. The caller must be single-threaded (the process backend forks).
    fn start(
        &self,
        ctx: &ContainerContext,
        spec: &ContainerSpec,
        io: ProcessIo,
    ) -> Result<Started, IsolationError>;

    /// Starts another process in the running container (`hull exec`), with the container's
    /// limits, privileges and namespaces. `spec` is the container's spec as created.
    fn exec(
        &self,
        ctx: &ContainerContext,
        spec: &ContainerSpec,
        process: &ProcessSpec,
        io: ProcessIo,
    ) -> Result<Started, IsolationError>;

    /// Sends a signal to the container's init process (from any hull invocation).
    fn signal(&self, ctx: &ContainerContext, signal: i32) -> Result<(), IsolationError>;

    /// Whether the container's init process is still alive (from any hull invocation).
    fn is_alive(&self, ctx: &ContainerContext) -> bool;

    /// Ends the container without relying on anything inside it: `stop` and `rm -f` call
    /// it when a SIGKILL sent through [`Isolation::signal`] did not end the container in
    /// time (a VM whose guest acknowledges and does nothing). The kernel delivers the
    /// process model's SIGKILL itself, so the default sends it again.
    fn terminate(&self, ctx: &ContainerContext) -> Result<(), IsolationError> {
        self.signal(ctx, libc::SIGKILL)
    }

    /// Kills whatever is left of the container and removes its mounts, cgroups, VM and
    /// backend files. Idempotent; safe on a container that never started or whose
    /// supervisor crashed.
    fn cleanup(&self, ctx: &ContainerContext) -> Result<(), IsolationError>;
}

/// Errors of the isolation layer.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// The requested backend is not available on this build or host.
    #[error("isolation {0} is not available: {1}")]
    Unavailable(IsolationKind, String),
    /// The spec or a flag is invalid (bad path, bad user...).
    #[error("invalid container configuration: {0}")]
    InvalidSpec(String),
    /// The command was not found in the container (exit code 127).
    #[error("command not found in container: {0}")]
    CommandNotFound(String),
    /// The command exists but cannot be executed (exit code 126).
    #[error("command not executable in container: {0}")]
    NotExecutable(String),
    /// The container is not running (needed by exec/signal).
    #[error("container is not running")]
    NotRunning,
    /// An operating-system call failed while doing `what`.
    #[error("{what}: {source}")]
    Os {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The container could not be set up: the executor's typed error (kind, stage,
    /// errno), from the child process or from the guest agent.
    #[error(transparent)]
    Setup(#[from] hull_executor::Error),
    /// Any other backend failure, described.
    #[error("{0}")]
    Backend(String),
}

impl IsolationError {
    /// Wraps an I/O error with what was being done.
    pub fn os(what: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        IsolationError::Os {
            what: what.into(),
            source: source.into(),
        }
    }

    /// The exit code `hull run`/`hull exec` returns for this error (docker's convention):
    /// 127 command not found, 126 not executable, 125 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            IsolationError::CommandNotFound(_) => 127,
            IsolationError::NotExecutable(_) => 126,
            IsolationError::Setup(e) => e.exit_code(),
            _ => 125,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_exit_codes_follow_the_shell() {
        assert_eq!(ExitStatus::Code(3).code(), 3);
        assert_eq!(ExitStatus::Signal(9).code(), 137);
    }

    #[test]
    fn isolation_names_round_trip() {
        for k in [IsolationKind::Process, IsolationKind::Vm] {
            assert_eq!(k.as_str().parse::<IsolationKind>().unwrap(), k);
        }
        assert!("hyperv".parse::<IsolationKind>().is_err());
    }
}
