//! The process backend: a container as a namespaced process on the host kernel, the way
//! runc, crun and youki run one. The container's OCI spec is carried out by the executor
//! (`hull_executor`), the same code the guest agent runs inside a microVM: this module only
//! supplies the bundle (the state directory, with `rootfs/` where the image layers are
//! assembled), the host's facts, the I/O, and remembers the init process.
//!
//! Per-container files (in the container's state dir): `process.json` (the cgroup path,
//! then the init pid and start time) and `rootfs/` (the mount point of the overlay, used
//! only inside the container's own mount namespace). The overlay's writable layer
//! (`upper/`, `work/`) is on disk in the container's storage directory (`crate::storage`),
//! kept across stop/start.

pub mod syscalls;
pub mod tty;

use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use hull_executor::cgroups::{driver, Layout};
use hull_executor::plan::{Host, Plan, ProcessPlan, RootSource};
use hull_executor::spawn::{self, ExecTarget, Options, Stdio};
use serde::{Deserialize, Serialize};

use crate::isolation::{
    ContainerContext, ContainerProcess, ContainerSpec, ExitStatus, Isolation, IsolationError,
    IsolationKind, ProcessIo, ProcessSpec, Started, WinSize,
};

/// How long the child may take to reach execve.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long cleanup waits for a killed init process to go away.
const KILL_TIMEOUT_MS: i32 = 5_000;
/// Backend state file in the container's state dir.
const STATE_FILE: &str = "process.json";

/// The `process` isolation backend.
#[derive(Debug, Default)]
pub struct ProcessIsolation;

impl ProcessIsolation {
    /// A new backend handle (holds no state).
    pub fn new() -> Self {
        ProcessIsolation
    }
}

/// What another hull invocation needs to find the container's process and cgroup again.
#[derive(Debug, Default, Serialize, Deserialize)]
struct InitRecord {
    /// Host pid of the container's init process (0 until it runs).
    pid: i32,
    /// Its start time (clock ticks since boot) to detect pid reuse.
    start_time: u64,
    /// The container's cgroup, relative to the hierarchy roots (written before it exists,
    /// so a crash in between leaves nothing cleanup cannot find).
    #[serde(default)]
    cgroup: Option<PathBuf>,
}

fn read_record(ctx: &ContainerContext) -> Option<InitRecord> {
    let mut text = String::new();
    fs::File::open(ctx.file(STATE_FILE))
        .ok()?
        .take(4096)
        .read_to_string(&mut text)
        .ok()?;
    serde_json::from_str(&text).ok()
}

fn write_record(ctx: &ContainerContext, record: &InitRecord) -> io::Result<()> {
    let data = serde_json::to_vec(record).map_err(io::Error::other)?;
    crate::private_fs::write_atomic(&ctx.file(".process.json.tmp"), &ctx.file(STATE_FILE), &data)
}

/// pidfd of the running init process, or `NotRunning`.
fn init_pidfd(ctx: &ContainerContext) -> Result<(OwnedFd, i32), IsolationError> {
    let record = read_record(ctx).ok_or(IsolationError::NotRunning)?;
    if record.pid <= 0 {
        return Err(IsolationError::NotRunning);
    }
    syscalls::open_verified(record.pid, record.start_time)
        .map(|fd| (fd, record.pid))
        .ok_or(IsolationError::NotRunning)
}

fn os(what: &str) -> impl FnOnce(io::Error) -> IsolationError + '_ {
    move |e| IsolationError::os(what, e)
}

/// A process we started: a container's init or an exec.
struct ForkedProcess {
    pid: i32,
    pidfd: OwnedFd,
    terminal: Option<OwnedFd>,
}

impl ContainerProcess for ForkedProcess {
    fn pid(&self) -> u32 {
        self.pid as u32
    }

    fn exit_fd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    fn wait(&mut self) -> Result<ExitStatus, IsolationError> {
        syscalls::wait_pidfd(self.pidfd.as_fd()).map_err(os("wait for container process"))
    }

    fn signal(&self, signal: i32) -> Result<(), IsolationError> {
        syscalls::pidfd_signal(self.pidfd.as_fd(), signal).map_err(os("signal container process"))
    }

    fn resize(&self, size: WinSize) -> Result<(), IsolationError> {
        match &self.terminal {
            Some(t) => tty::set_size(t, size).map_err(os("resize terminal")),
            None => Ok(()),
        }
    }
}

/// The executor's view of the caller's I/O choice.
fn stdio(io: &ProcessIo) -> Stdio<'_> {
    match io {
        ProcessIo::Pipes {
            stdin,
            stdout,
            stderr,
        } => Stdio::Pipes {
            stdin: stdin.as_ref().map(|f| f.as_fd()),
            stdout: stdout.as_fd(),
            stderr: stderr.as_fd(),
        },
        ProcessIo::Terminal { .. } => Stdio::Terminal,
    }
}

fn console_size(io: &ProcessIo) -> Option<(u16, u16)> {
    match io {
        ProcessIo::Terminal { size } => Some((size.rows, size.cols)),
        ProcessIo::Pipes { .. } => None,
    }
}

fn started(spawned: hull_executor::spawn::Spawned) -> Result<Started, IsolationError> {
    let dup = spawned
        .terminal
        .as_ref()
        .map(|t| t.try_clone())
        .transpose()
        .map_err(os("dup terminal"))?;
    Ok(Started {
        process: Box::new(ForkedProcess {
            pid: spawned.pid,
            pidfd: spawned.pidfd,
            terminal: dup,
        }),
        terminal: spawned.terminal,
    })
}

impl ProcessIsolation {
    fn start_inner(
        &self,
        ctx: &ContainerContext,
        spec: &ContainerSpec,
        io: ProcessIo,
    ) -> Result<Started, IsolationError> {
        let rootfs = ctx.file("rootfs");
        crate::private_fs::create_dir(&rootfs)
            .map_err(|e| IsolationError::os(format!("create {}", rootfs.display()), e))?;
        let writable = crate::storage::ensure_layer_dirs(ctx)?;
        for layer in &spec.layers {
            if !layer.is_dir() {
                return Err(IsolationError::InvalidSpec(format!(
                    "image layer {} is missing",
                    layer.display()
                )));
            }
        }
        let host = Host::detect();
        // This start's network (CNI's namespace, the /etc files) is part of what it runs.
        let oci = match &spec.attachment {
            Some(a) => crate::container::spec::network::attach(&spec.oci, a),
            None => spec.oci.clone(),
        };
        let mut plan = Plan::new(
            &oci,
            ctx.dir(),
            &RootSource::Layers {
                layers: spec.layers.clone(),
                upper: writable.upper,
                work: writable.work,
            },
            &host,
        )?;
        plan.process.console_size = console_size(&io);
        let cgroup =
            (!plan.container.cgroup.is_empty()).then(|| plan.container.cgroup.path.clone());
        write_record(
            ctx,
            &InitRecord {
                cgroup: cgroup.clone(),
                ..Default::default()
            },
        )
        .map_err(os("write process.json"))?;
        let spawned = spawn::create(
            &plan,
            &host.cgroups,
            &Options {
                stdio: stdio(&io),
                die_with_parent: true,
                start_gate: None,
                timeout: START_TIMEOUT,
            },
        )?;
        drop(io);
        let start_time = syscalls::start_time(spawned.pid).unwrap_or(0);
        write_record(
            ctx,
            &InitRecord {
                pid: spawned.pid,
                start_time,
                cgroup,
            },
        )
        .map_err(os("write process.json"))?;
        started(spawned)
    }
}

impl Isolation for ProcessIsolation {
    fn kind(&self) -> IsolationKind {
        IsolationKind::Process
    }

    fn start(
        &self,
        ctx: &ContainerContext,
        spec: &ContainerSpec,
        io: ProcessIo,
    ) -> Result<Started, IsolationError> {
        let result = self.start_inner(ctx, spec, io);
        if result.is_err() {
            let _ = self.cleanup(ctx);
        }
        result
    }

    fn exec(
        &self,
        ctx: &ContainerContext,
        spec: &ContainerSpec,
        process: &ProcessSpec,
        io: ProcessIo,
    ) -> Result<Started, IsolationError> {
        let (init_fd, init_pid) = init_pidfd(ctx)?;
        let record = read_record(ctx).unwrap_or_default();
        let mut oci = process.oci.clone();
        if let Some(user) = &process.user {
            // The running container's own account files, read inside its root.
            let root = PathBuf::from(format!("/proc/{init_pid}/root"));
            let who = crate::container::spec::resolve_user_in(user, &root)
                .map_err(|e| IsolationError::InvalidSpec(e.to_string()))?;
            crate::container::spec::set_identity(&mut oci, &who);
        }
        let host = Host::detect();
        let seccomp = spec.oci.linux().as_ref().and_then(|l| l.seccomp().as_ref());
        let mut plan = ProcessPlan::new(&oci, seccomp, host.last_cap)?;
        plan.console_size = console_size(&io);
        // Non-dumpable before the clone, so the child (a copy of hull joining the
        // container) is never ptrace-able or inspectable from inside it.
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        let spawned = spawn::exec(
            &plan,
            &ExecTarget {
                init: init_fd.as_fd(),
                namespaces: spawn::namespace_flags(&spec.oci),
                cgroup_path: record.cgroup.as_deref(),
            },
            &host.cgroups,
            &Options {
                stdio: stdio(&io),
                die_with_parent: true,
                start_gate: None,
                timeout: START_TIMEOUT,
            },
        )?;
        drop(io);
        started(spawned)
    }

    fn signal(&self, ctx: &ContainerContext, signal: i32) -> Result<(), IsolationError> {
        let (fd, _) = init_pidfd(ctx)?;
        syscalls::pidfd_signal(fd.as_fd(), signal).map_err(os("signal container"))
    }

    fn is_alive(&self, ctx: &ContainerContext) -> bool {
        read_record(ctx)
            .is_some_and(|r| r.pid > 0 && syscalls::is_same_process_alive(r.pid, r.start_time))
    }

    fn cleanup(&self, ctx: &ContainerContext) -> Result<(), IsolationError> {
        // The PID namespace ends with its init: killing it kills every container process,
        // and the mounts go with the mount namespace.
        if let Ok((fd, _)) = init_pidfd(ctx) {
            let _ = syscalls::pidfd_signal(fd.as_fd(), libc::SIGKILL);
            let _ = syscalls::poll_exit(fd.as_fd(), KILL_TIMEOUT_MS);
        }
        let mut first_err: Option<IsolationError> = None;
        // The record names the cgroup; without one (a crash before it was written) the
        // spec's naming convention still finds it.
        let cgroup = read_record(ctx)
            .and_then(|r| r.cgroup)
            .unwrap_or_else(|| PathBuf::from(format!("hull/{}", ctx.id)));
        if let Err(e) = driver::remove(&Layout::host(), &cgroup) {
            first_err.get_or_insert(IsolationError::os("remove cgroups", e));
        }
        for file in [
            ctx.file("rootfs"),
            ctx.file(STATE_FILE),
            ctx.file(".process.json.tmp"),
        ] {
            let r = if file.is_dir() {
                fs::remove_dir(&file)
            } else {
                fs::remove_file(&file)
            };
            match r {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    first_err
                        .get_or_insert(IsolationError::os(format!("remove {}", file.display()), e));
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
