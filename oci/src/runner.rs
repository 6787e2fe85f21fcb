//! What each isolation model does for `hull-oci`, behind one trait. The commands in
//! `commands` handle ids, records, locking, statuses and runc's rules; a [`Runner`] only
//! makes and tears down the container's processes and resources.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxResources, Process};

use crate::bundle::Bundle;
use crate::error::Result;
use crate::procref::ProcRef;
use crate::state::{Locked, Model, Record};

/// Everything `create` hands to a model.
#[derive(Debug)]
pub struct CreateRequest<'a> {
    /// The container's locked state directory (the model keeps its files there).
    pub dir: &'a Locked,
    /// The checked bundle.
    pub bundle: &'a Bundle,
    /// Where to send the pty master when `process.terminal` is set.
    pub console_socket: Option<PathBuf>,
    /// Descriptors 3..3+N of the caller to hand to the container's process.
    pub preserve_fds: u32,
    /// Keep the caller's session keyring.
    pub no_new_keyring: bool,
    /// `--systemd-cgroup`: cgroupsPath is `slice:prefix:name`.
    pub systemd_cgroup: bool,
    /// hull's configuration file (the vm model's jail settings).
    pub hull_config: &'a Path,
}

/// Everything `exec` hands to a model.
#[derive(Debug)]
pub struct ExecRequest {
    /// The process to run.
    pub process: Process,
    /// Return once it runs (pid in `pid_file`) instead of waiting for it.
    pub detach: bool,
    /// Where to send the pty master when `process.terminal` is set.
    pub console_socket: Option<PathBuf>,
    /// Where to write the new process's pid.
    pub pid_file: Option<PathBuf>,
    /// Descriptors 3..3+N to hand over.
    pub preserve_fds: u32,
}

/// A process an `exec` started and waits for.
pub trait Waitable {
    /// Waits for the end; the exit code as a shell gives it (128+N for signal N).
    fn wait(self: Box<Self>) -> Result<i32>;
}

/// What a model does.
pub trait Runner {
    /// Which model this is.
    fn model(&self) -> Model;

    /// Creates the container (namespaces, mounts, cgroups, or the VM) with its process
    /// waiting for `start`, and returns the process `--pid-file` names: it lives as long
    /// as the container and exits with its status. On error, what was made is removed.
    fn create(&self, req: &CreateRequest<'_>) -> Result<ProcRef>;

    /// Lets the created container's process run the user's program.
    fn start(&self, dir: &Locked, record: &Record) -> Result<()>;

    /// Sends `signal` to the init process, or to every process of the container.
    fn signal(&self, dir: &Locked, record: &Record, signal: i32, all: bool) -> Result<()>;

    /// Runs another process in the running container. `Some` to wait for, `None` when
    /// detached.
    fn exec(
        &self,
        dir: &Locked,
        record: &Record,
        req: ExecRequest,
    ) -> Result<Option<Box<dyn Waitable>>>;

    /// Host pids of the container's processes.
    fn pids(&self, dir: &Locked, record: &Record) -> Result<Vec<i32>>;

    /// Freezes the container.
    fn pause(&self, dir: &Locked, record: &Record) -> Result<()>;

    /// Thaws the container.
    fn resume(&self, dir: &Locked, record: &Record) -> Result<()>;

    /// Applies new resource limits.
    fn update(&self, dir: &Locked, record: &Record, resources: &LinuxResources) -> Result<()>;

    /// Kills whatever is left and removes every resource of the container except its
    /// state directory. Idempotent; works after a crash of any hull-oci invocation.
    fn destroy(&self, dir: &Locked, record: &Record) -> Result<()>;
}
