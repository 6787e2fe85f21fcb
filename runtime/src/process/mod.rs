//! The process backend: a container as a namespaced process on the host kernel, the way
//! runc, crun and youki run one.
//!
//! One module per concern; `init` holds the child's sequence from fork to execve:
//! - `namespaces`: which namespaces, joining them for exec, loopback;
//! - `rootfs`: overlayfs, pivot_root, /proc, /dev, /sys, volumes, masked paths;
//! - `cgroups`: limits (v1 and v2);
//! - `capabilities`, `seccomp`: privileges (`--user` is resolved by `hull_executor::user`,
//!   shared with the vm backend's agent so both models agree);
//! - `tty`: pseudo-terminals created inside the container;
//! - `syscalls`: clone3/pidfd/openat2 wrappers.
//!
//! Per-container files (in the container's state dir): `process.json` (init pid and start
//! time) and `rootfs/` (the mount point of the overlay, used only inside the container's own
//! mount namespace). The overlay's writable layer (`upper/`, `work/`) is on disk in the
//! container's storage directory (`crate::storage`), kept across stop/start. Cgroups are
//! named by id.

pub mod capabilities;
pub mod cgroups;
pub mod init;
pub mod namespaces;
pub mod rootfs;
pub mod seccomp;
pub mod syscalls;
pub mod tty;

use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::isolation::{
    ContainerContext, ContainerProcess, ContainerSpec, ExitStatus, Isolation, IsolationError,
    IsolationKind, ProcessIo, ProcessSpec, Started, Volume, WinSize,
};
use crate::network::Namespace;

use init::{ChildStdio, Launch, Role};
use syscalls::Forked;

/// How long the parent waits for the child to exec before giving up on it.
const START_TIMEOUT_MS: i32 = 60_000;
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

/// What another hull invocation needs to find the init process again.
#[derive(Debug, Serialize, Deserialize)]
struct InitRecord {
    /// Host pid of the container's init process.
    pid: i32,
    /// Its start time (clock ticks since boot) to detect pid reuse.
    start_time: u64,
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
fn init_pidfd(ctx: &ContainerContext) -> Result<OwnedFd, IsolationError> {
    let record = read_record(ctx).ok_or(IsolationError::NotRunning)?;
    syscalls::open_verified(record.pid, record.start_time).ok_or(IsolationError::NotRunning)
}

struct Dirs {
    rootfs: PathBuf,
}

fn dirs(ctx: &ContainerContext) -> Dirs {
    Dirs {
        rootfs: ctx.file("rootfs"),
    }
}

fn os(what: &str) -> impl FnOnce(io::Error) -> IsolationError + '_ {
    move |e| IsolationError::os(what, e)
}

/// A process we forked: a container's init or an exec.
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

/// Stdio descriptors the child inherits, and what the parent must close after the fork.
fn child_stdio(io: &ProcessIo) -> ChildStdio {
    match io {
        ProcessIo::Pipes {
            stdin,
            stdout,
            stderr,
        } => ChildStdio::Pipes {
            stdin: stdin.as_ref().map(|f| f.as_raw_fd()),
            stdout: stdout.as_raw_fd(),
            stderr: stderr.as_raw_fd(),
        },
        ProcessIo::Terminal { size } => ChildStdio::Terminal(*size),
    }
}

fn sync_pair() -> Result<(OwnedFd, OwnedFd), IsolationError> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| IsolationError::os("create sync socket", e))
}

/// Waits for the child's verdict: EOF = it exec'd; `T` + fd = terminal master; `E...` =
/// failure. Kills and reaps the child on failure or timeout.
fn await_exec(sock: &OwnedFd, pidfd: &OwnedFd) -> Result<Option<OwnedFd>, IsolationError> {
    let mut terminal = None;
    let result = loop {
        let mut pfd = libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, START_TIMEOUT_MS) };
        if ready < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break Err(IsolationError::os("wait for container start", e));
        }
        if ready == 0 {
            break Err(IsolationError::Backend(
                "container process did not start within 60 s".into(),
            ));
        }
        let mut buf = [0u8; 4096];
        match tty::recv_with_fd(sock.as_fd(), &mut buf) {
            Ok((0, _)) => break Ok(()),
            Ok((n, fd)) if buf[0] == init::TAG_TERMINAL && fd.is_some() && n == 1 => {
                terminal = fd;
            }
            Ok((n, _)) if buf[0] == init::TAG_ERROR => {
                // The message may quote the image (a command, a user name, a path).
                let text = crate::sanitize::for_terminal(&String::from_utf8_lossy(&buf[1..n]))
                    .into_owned();
                let (code, message) = text.split_once(' ').unwrap_or(("125", &text));
                let message = message.to_string();
                break Err(match code {
                    "127" => IsolationError::CommandNotFound(message),
                    "126" => IsolationError::NotExecutable(message),
                    _ => IsolationError::Backend(message),
                });
            }
            Ok(_) => {
                break Err(IsolationError::Backend(
                    "malformed message from container setup".into(),
                ))
            }
            Err(e) => break Err(IsolationError::os("read from container setup", e)),
        }
    };
    match result {
        Ok(()) => Ok(terminal),
        Err(e) => {
            kill_and_reap(pidfd);
            Err(e)
        }
    }
}

/// How the init process gets its network (see `crate::network`).
struct NetworkPlan {
    /// Namespaces for the fork: with CLONE_NEWNET unless it joins one or uses the host's.
    fork_flags: libc::c_int,
    /// The namespace to join.
    netns: Option<OwnedFd>,
    /// The spec's volumes plus the network's /etc files, bound read-only.
    volumes: Vec<Volume>,
}

fn network_plan(spec: &ContainerSpec) -> Result<NetworkPlan, IsolationError> {
    let mut volumes = spec.volumes.clone();
    let Some(attachment) = &spec.attachment else {
        return Ok(NetworkPlan {
            fork_flags: namespaces::AT_FORK,
            netns: None,
            volumes,
        });
    };
    volumes.extend(attachment.files.iter().map(|f| Volume {
        host: f.host.clone(),
        container: f.container.clone(),
        read_only: true,
    }));
    let (fork_flags, netns) = match &attachment.namespace {
        Namespace::New => (namespaces::AT_FORK, None),
        Namespace::Host => (namespaces::AT_FORK & !libc::CLONE_NEWNET, None),
        Namespace::Join(path) => (
            namespaces::AT_FORK & !libc::CLONE_NEWNET,
            Some(
                crate::network::netns::open(path)
                    .map_err(|e| IsolationError::os(format!("open {}", path.display()), e))?,
            ),
        ),
    };
    Ok(NetworkPlan {
        fork_flags,
        netns,
        volumes,
    })
}

fn kill_and_reap(pidfd: &OwnedFd) {
    let _ = syscalls::pidfd_signal(pidfd.as_fd(), libc::SIGKILL);
    let _ = syscalls::wait_pidfd(pidfd.as_fd());
}

fn go_pipe() -> Result<(OwnedFd, OwnedFd), IsolationError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| IsolationError::os("create go pipe", e))
}

/// Tells the child it may exec (`init::TAG_GO`). Until then it only sets up; if this
/// process dies first, the child reads end-of-file instead and exits, so no container
/// process ever runs without a live parent that knows it. A child that already failed
/// (EPIPE) has its report waiting on the sync socket. The caller keeps `go` open until
/// the child has exec'd: the child takes a writer-less pipe for a dead parent.
fn release(go: &OwnedFd, pidfd: &OwnedFd) -> Result<(), IsolationError> {
    match nix::unistd::write(go, &[init::TAG_GO]) {
        Ok(_) | Err(nix::errno::Errno::EPIPE) => Ok(()),
        Err(e) => {
            kill_and_reap(pidfd);
            Err(IsolationError::os("release the container process", e))
        }
    }
}

impl ProcessIsolation {
    fn start_inner(
        &self,
        ctx: &ContainerContext,
        spec: &ContainerSpec,
        io: ProcessIo,
    ) -> Result<Started, IsolationError> {
        let d = dirs(ctx);
        crate::private_fs::create_dir(&d.rootfs)
            .map_err(|e| IsolationError::os(format!("create {}", d.rootfs.display()), e))?;
        let layer = crate::storage::ensure_layer_dirs(ctx)?;
        for layer in &spec.layers {
            if !layer.is_dir() {
                return Err(IsolationError::InvalidSpec(format!(
                    "image layer {} is missing",
                    layer.display()
                )));
            }
        }
        for v in &spec.volumes {
            if !v.host.exists() {
                return Err(IsolationError::InvalidSpec(format!(
                    "volume source {} does not exist",
                    v.host.display()
                )));
            }
        }
        let network = network_plan(spec)?;
        let cgroup_fds = cgroups::create(&ctx.id, &spec.limits)
            .and_then(|c| c.open_for_join())
            .map_err(os("set up cgroups"))?;
        let (parent_sock, child_sock) = sync_pair()?;
        let (go_r, go_w) = go_pipe()?;
        let stdio = child_stdio(&io);
        let caps = capabilities::container_set();

        // SAFETY: `hull` is single-threaded whenever it starts a container (documented
        // precondition of Isolation::start); the child only runs `init::child_main`.
        let forked = unsafe { syscalls::fork_into(network.fork_flags, 0) }
            .map_err(os("fork container init"))?;
        let (pid, pidfd) = match forked {
            Forked::Child => init::child_main(
                Role::Init {
                    cgroups: cgroup_fds,
                    rootfs: rootfs::RootfsPlan {
                        rootfs: &d.rootfs,
                        layers: &spec.layers,
                        upper: &layer.upper,
                        work: &layer.work,
                        read_only: spec.read_only,
                        volumes: &network.volumes,
                    },
                    hostname: &spec.hostname,
                    netns: network.netns.as_ref().map(|f| f.as_fd()),
                    new_network: network.fork_flags & libc::CLONE_NEWNET != 0,
                },
                Launch {
                    process: &spec.process,
                    stdio,
                    sync: child_sock.as_fd(),
                    go: go_r.as_fd(),
                    go_writer: go_w.as_raw_fd(),
                    caps,
                    hostname: &spec.hostname,
                },
            ),
            Forked::Parent { pid, pidfd } => (pid, pidfd),
        };
        drop(child_sock);
        drop(cgroup_fds);
        drop(io);
        // The record that lets any hull find (and kill) this process exists before the
        // process may run anything of the image: the child waits for `go` before execve.
        let start_time = syscalls::start_time(pid).unwrap_or(0);
        if let Err(e) = write_record(ctx, &InitRecord { pid, start_time }) {
            kill_and_reap(&pidfd);
            return Err(os("write process.json")(e));
        }
        drop(go_r);
        release(&go_w, &pidfd)?;
        let terminal = await_exec(&parent_sock, &pidfd)?;
        // Held until the child exec'd: its last check before execve sees a writer.
        drop(go_w);
        let dup = terminal
            .as_ref()
            .map(|t| t.try_clone())
            .transpose()
            .map_err(os("dup terminal"))?;
        Ok(Started {
            process: Box::new(ForkedProcess {
                pid,
                pidfd,
                terminal: dup,
            }),
            terminal,
        })
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
        let init_fd = init_pidfd(ctx)?;
        let cgroup_fds = cgroups::existing(&ctx.id)
            .open_for_join()
            .map_err(os("open cgroups"))?;
        // Non-dumpable before the fork, so the child is never ptrace-able or inspectable
        // from inside the container, not even for an instant.
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        namespaces::enter_pid_namespace_for_children(init_fd.as_fd())
            .map_err(os("enter container PID namespace"))?;
        let (parent_sock, child_sock) = sync_pair()?;
        let (go_r, go_w) = go_pipe()?;
        let stdio = child_stdio(&io);
        let caps = capabilities::container_set();
        // SAFETY: `hull exec` is single-threaded; the child only runs `init::child_main`.
        let forked = unsafe { syscalls::fork_into(0, 0) }.map_err(os("fork exec process"))?;
        let (pid, pidfd) = match forked {
            Forked::Child => init::child_main(
                Role::Exec {
                    cgroups: cgroup_fds,
                    init: init_fd.as_fd(),
                },
                Launch {
                    process,
                    stdio,
                    sync: child_sock.as_fd(),
                    go: go_r.as_fd(),
                    go_writer: go_w.as_raw_fd(),
                    caps,
                    hostname: &spec.hostname,
                },
            ),
            Forked::Parent { pid, pidfd } => (pid, pidfd),
        };
        drop(child_sock);
        drop(cgroup_fds);
        drop(io);
        drop(go_r);
        release(&go_w, &pidfd)?;
        let terminal = await_exec(&parent_sock, &pidfd)?;
        // Held until the child exec'd: its last check before execve sees a writer.
        drop(go_w);
        let dup = terminal
            .as_ref()
            .map(|t| t.try_clone())
            .transpose()
            .map_err(os("dup terminal"))?;
        Ok(Started {
            process: Box::new(ForkedProcess {
                pid,
                pidfd,
                terminal: dup,
            }),
            terminal,
        })
    }

    fn signal(&self, ctx: &ContainerContext, signal: i32) -> Result<(), IsolationError> {
        let fd = init_pidfd(ctx)?;
        syscalls::pidfd_signal(fd.as_fd(), signal).map_err(os("signal container"))
    }

    fn is_alive(&self, ctx: &ContainerContext) -> bool {
        read_record(ctx).is_some_and(|r| syscalls::is_same_process_alive(r.pid, r.start_time))
    }

    fn cleanup(&self, ctx: &ContainerContext) -> Result<(), IsolationError> {
        // The PID namespace ends with its init: killing it kills every container process,
        // and the mounts go with the mount namespace.
        if let Ok(fd) = init_pidfd(ctx) {
            let _ = syscalls::pidfd_signal(fd.as_fd(), libc::SIGKILL);
            let _ = syscalls::poll_exit(fd.as_fd(), KILL_TIMEOUT_MS);
        }
        let mut first_err: Option<IsolationError> = None;
        if let Err(e) = cgroups::remove(&ctx.id) {
            first_err.get_or_insert(IsolationError::os("remove cgroups", e));
        }
        let d = dirs(ctx);
        for file in [
            d.rootfs,
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
