//! The supervisor ("shim"): the process that owns a running container's stdio, writes its
//! logs, waits for it and records how it ended. Backend-neutral: it drives the container
//! only through [`Isolation`] and [`ContainerProcess`].
//!
//! A foreground `hull run` is its own supervisor (no extra process on the fast path): it
//! relays output to its terminal as well as to the log, forwards signals it receives and,
//! with `-t`, puts its terminal into raw mode and relays input. `hull run -d` and `hull
//! start` fork a detached supervisor (new session, stdio on /dev/null) that only logs.
//!
//! Everything happens in one thread around one poll(2) (`attach::pump`): output
//! descriptors, the process's exit descriptor, a signalfd and (with `-i`) stdin. No
//! sleeping, no polling loops. The container's streams are always pipes or a terminal of
//! its own, never hull's descriptors (see `attach`).

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::isolation::{ExitStatus, Isolation, IsolationError, ProcessIo, WinSize};
use crate::network;
use crate::process::tty;

use super::attach::{self, InputEnd, Outputs, RawTerminal, StdinRelay};
use super::config::Config;
use super::logs::LogWriter;
use super::resident;
use super::state::{now, ContainerState, ContainerStore, ProcRef, Status};

/// Signals a foreground supervisor forwards to the container.
const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Where the supervisor's own stdio is.
pub enum Mode {
    /// Attached to the user's terminal/pipes (`hull run` without `-d`).
    Foreground,
    /// Detached; `ready` receives one line once the container runs (or failed).
    Detached {
        /// Write end of the readiness pipe.
        ready: OwnedFd,
    },
}

/// Outcome of a supervised run: the exit code `hull run` should return.
pub struct Outcome {
    /// Exit code (container status, 128+signal, or 125/126/127 for start failures).
    pub code: i32,
    /// Start error, if the container never ran.
    pub error: Option<IsolationError>,
}

/// Runs container `state` (already saved as Created) to completion. Returns the exit code.
///
/// Must be called from a single-threaded process (the backend may fork).
pub fn supervise(
    store: &ContainerStore,
    backend: &dyn Isolation,
    mut state: ContainerState,
    mode: Mode,
) -> Outcome {
    let ctx = store.context(&state.id);
    let foreground = matches!(mode, Mode::Foreground);
    let mut log = match LogWriter::open(&ctx.state_dir) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!("container log unavailable: {e}");
            None
        }
    };

    // Block forwarded signals before starting, so none is lost; the container's process
    // resets its mask before exec.
    let sigfd = if foreground {
        let mut set = SigSet::empty();
        for s in FORWARDED {
            set.add(*s);
        }
        set.add(Signal::SIGWINCH);
        let _ = set.thread_block();
        SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).ok()
    } else {
        None
    };

    let mut spec = state.spec.clone();
    // The network first: published ports are bound here and held by this process until
    // the container has exited and its network is torn down.
    let network = match set_up_network(&ctx, &spec) {
        Ok(n) => n,
        Err(e) => return fail(store, backend, state, mode, e),
    };
    spec.attachment = Some(network.attachment);
    state.network = Some(network.status);
    let _published_ports = network.ports;
    let (io, out_r, err_r, stdin_w) = match make_io(spec.tty(), spec.interactive, foreground) {
        Ok(v) => v,
        Err(e) => return fail(store, backend, state, mode, e),
    };
    let started = match backend.start(&ctx, &spec, io) {
        Ok(s) => s,
        Err(e) => return fail(store, backend, state, mode, e),
    };
    let mut process = started.process;
    state.status = Status::Running;
    state.started = Some(now());
    state.pid = Some(process.pid());
    if let Err(e) = store.save(&state) {
        tracing::warn!("saving state: {e}");
    }
    if let Mode::Detached { ready } = &mode {
        let _ = nix::unistd::write(ready.as_fd(), b"ok\n");
    }
    drop(mode);

    let terminal = started.terminal;
    let raw = if foreground && spec.tty() {
        RawTerminal::enter(0)
    } else {
        None
    };
    if foreground && spec.tty() {
        if let Some(size) = tty::get_size(1).or_else(|| tty::get_size(0)) {
            let _ = process.resize(size);
        }
    }
    let stdin = match stdin_relay(stdin_w, terminal.as_ref(), foreground && spec.interactive) {
        Ok(relay) => relay,
        Err(e) => {
            tracing::warn!("relaying stdin: {e}");
            None
        }
    };
    // From here on the supervisor only waits: what the start needed can go (M7).
    drop(spec);
    resident::shed_start_up_memory();
    attach::pump(
        &mut *process,
        Outputs {
            out: terminal.or(out_r),
            err: err_r,
        },
        log.as_mut(),
        foreground,
        stdin,
        sigfd.as_ref(),
    );
    drop(raw);

    let status = process.wait().unwrap_or_else(|e| {
        tracing::warn!("waiting for container: {e}");
        ExitStatus::Code(255)
    });
    finish(store, backend, state, Some(status), None);
    Outcome {
        code: status.code(),
        error: None,
    }
}

/// Sets up the container's network for this start, from the config file's settings.
fn set_up_network(
    ctx: &crate::isolation::ContainerContext,
    spec: &crate::isolation::ContainerSpec,
) -> Result<network::Setup, IsolationError> {
    let config = Config::load(&ctx.paths).map_err(|e| IsolationError::Backend(e.to_string()))?;
    network::setup(
        &ctx.id,
        &ctx.state_dir,
        &spec.network,
        spec.oci.hostname().as_deref().unwrap_or_default(),
        &config.network,
    )
    .map_err(|e| IsolationError::Backend(e.to_string()))
}

/// Releases everything a container holds: the backend's resources, then its network (CNI
/// DEL needs the processes gone, not the namespace). A network that could not be torn down
/// keeps its record, so that `hull rm` tries again.
pub fn release(
    backend: &dyn Isolation,
    ctx: &crate::isolation::ContainerContext,
) -> Result<(), IsolationError> {
    let backend_result = backend.cleanup(ctx);
    network::teardown(&ctx.id, &ctx.state_dir)
        .map_err(|e| IsolationError::Backend(format!("network teardown: {e}")))?;
    backend_result
}

/// Records the end of a container and releases its resources (removing it with `--rm`).
pub fn finish(
    store: &ContainerStore,
    backend: &dyn Isolation,
    mut state: ContainerState,
    status: Option<ExitStatus>,
    error: Option<String>,
) {
    let ctx = store.context(&state.id);
    let Ok(_lock) = store.lock(&state.id) else {
        return; // removed meanwhile (`rm -f`)
    };
    let mut error = error;
    let mut keep = false;
    if let Err(e) = backend.cleanup(&ctx) {
        tracing::warn!("cleanup of {}: {e}", state.id);
    }
    if let Err(e) = network::teardown(&state.id, &ctx.state_dir) {
        // Keep the record (even with --rm): it is what a later `hull rm` undoes.
        tracing::warn!("network teardown of {}: {e}", state.id);
        error.get_or_insert(format!(
            "network teardown failed ({e}); `hull rm` retries it"
        ));
        keep = true;
    }
    state.network = None;
    if state.auto_remove && !keep {
        if let Err(e) = store.delete(&state.id, &state.name) {
            tracing::warn!("removing {}: {e}", state.id);
        }
        return;
    }
    if store.load(&state.id).is_err() {
        return; // removed meanwhile
    }
    state.status = Status::Exited;
    state.finished = Some(now());
    state.exit_code = status.map(ExitStatus::code);
    state.pid = None;
    state.error = error;
    if let Err(e) = store.save(&state) {
        tracing::warn!("saving state: {e}");
    }
}

fn fail(
    store: &ContainerStore,
    backend: &dyn Isolation,
    state: ContainerState,
    mode: Mode,
    error: IsolationError,
) -> Outcome {
    let code = error.exit_code();
    if let Mode::Detached { ready } = &mode {
        let _ = nix::unistd::write(ready.as_fd(), format!("E{code} {error}\n").as_bytes());
    }
    finish(
        store,
        backend,
        state,
        Some(ExitStatus::Code(code)),
        Some(error.to_string()),
    );
    Outcome {
        code,
        error: Some(error),
    }
}

/// The process's I/O, and hull's ends: stdout and stderr to read, stdin to write.
type IoParts = (ProcessIo, Option<OwnedFd>, Option<OwnedFd>, Option<OwnedFd>);

fn pipe() -> Result<(OwnedFd, OwnedFd), IsolationError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| IsolationError::os("create pipe", e))
}

/// Pipes (or, with `-t`, a terminal the backend creates) for a process; `with_stdin`: a
/// stdin pipe that hull feeds from its own stdin. hull's own descriptors are never given.
fn make_io(tty: bool, stdin: bool, with_stdin: bool) -> Result<IoParts, IsolationError> {
    if tty {
        let size = tty::get_size(1)
            .or_else(|| tty::get_size(0))
            .unwrap_or(WinSize { rows: 24, cols: 80 });
        return Ok((ProcessIo::Terminal { size }, None, None, None));
    }
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (stdin, stdin_w) = if with_stdin && stdin {
        let (r, w) = pipe()?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    Ok((
        ProcessIo::Pipes {
            stdin,
            stdout: out_w,
            stderr: err_w,
        },
        Some(out_r),
        Some(err_r),
        stdin_w,
    ))
}

/// The stdin relay: into the stdin pipe, or typed into the terminal with `-t`.
fn stdin_relay(
    pipe: Option<OwnedFd>,
    terminal: Option<&OwnedFd>,
    wanted: bool,
) -> io::Result<Option<StdinRelay>> {
    if !wanted {
        return Ok(None);
    }
    match (pipe, terminal) {
        (Some(w), _) => StdinRelay::new(w, InputEnd::Close).map(Some),
        (None, Some(t)) => StdinRelay::new(t.try_clone()?, InputEnd::ControlD).map(Some),
        (None, None) => Ok(None),
    }
}

/// Starts container `state` under a detached supervisor and returns once it runs.
///
/// Forks: the child starts a new session, puts its stdio on /dev/null (its own messages go
/// to `supervisor.log` in the state directory) and supervises; the parent waits for the
/// readiness line. Must be called from a single-threaded process.
pub fn start_detached(
    store: &ContainerStore,
    backend: &dyn Isolation,
    mut state: ContainerState,
) -> Result<(), IsolationError> {
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| IsolationError::os("create pipe", e))?;
    let _ = io::stdout().flush();
    // SAFETY: hull is single-threaded here; the child only supervises and then exits.
    match unsafe { nix::unistd::fork() }.map_err(|e| IsolationError::os("fork supervisor", e))? {
        nix::unistd::ForkResult::Child => {
            drop(ready_r);
            let _ = nix::unistd::setsid();
            detach_stdio(&store.dir_of(&state.id));
            state.supervisor = Some(ProcRef::current());
            let _ = store.save(&state);
            let outcome = supervise(store, backend, state, Mode::Detached { ready: ready_w });
            // SAFETY: leave without running the parent's exit handlers.
            unsafe { libc::_exit(outcome.code.clamp(0, 255)) }
        }
        nix::unistd::ForkResult::Parent { .. } => {
            drop(ready_w);
            let mut line = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match nix::unistd::read(ready_r.as_fd(), &mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        line.extend_from_slice(&buf[..n]);
                        if line.ends_with(b"\n") || line.len() > 8192 {
                            break;
                        }
                    }
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(IsolationError::os("wait for supervisor", e)),
                }
            }
            let text = String::from_utf8_lossy(&line).trim().to_string();
            if text == "ok" {
                return Ok(());
            }
            let Some(rest) = text.strip_prefix('E') else {
                return Err(IsolationError::Backend(
                    "the supervisor exited before the container started".into(),
                ));
            };
            let (code, msg) = rest.split_once(' ').unwrap_or(("125", rest));
            let msg = msg.to_string();
            Err(match code {
                "127" => IsolationError::CommandNotFound(msg),
                "126" => IsolationError::NotExecutable(msg),
                _ => IsolationError::Backend(msg),
            })
        }
    }
}

fn detach_stdio(dir: &std::path::Path) {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null");
    let log = crate::private_fs::open_append(&dir.join("supervisor.log"));
    if let Ok(null) = &null {
        // SAFETY: dup2 onto our own stdio descriptors.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
    if let Ok(log) = log.as_ref().or(null.as_ref()) {
        // SAFETY: dup2 onto our own stderr.
        unsafe { libc::dup2(log.as_raw_fd(), 2) };
    }
    // The log outlives this supervisor (restarts append): its size so far counts.
    let used = log
        .as_ref()
        .ok()
        .and_then(|l| l.metadata().ok())
        .map_or(0, |m| m.len());
    crate::logcap::limit_stderr(crate::logcap::MAX_SUPERVISOR_LOG.saturating_sub(used));
}

/// Runs `process` in a running container attached to hull's own stdio (`hull exec`) and
/// returns its exit code. The process gets pipes (or, with `-t`, a terminal of its own)
/// that hull relays to and from its stdio, with its terminal in raw mode for `-t`.
/// Signals hull receives are forwarded. Must be called from a single-threaded process.
pub fn exec_attached(
    ctx: &crate::isolation::ContainerContext,
    backend: &dyn Isolation,
    spec: &crate::isolation::ContainerSpec,
    process: &crate::isolation::ProcessSpec,
) -> Result<i32, IsolationError> {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(*s);
    }
    set.add(Signal::SIGWINCH);
    let _ = set.thread_block();
    let sigfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).ok();
    let (io, out_r, err_r, stdin_w) = make_io(process.tty(), process.stdin, true)?;
    let started = backend.exec(ctx, spec, process, io)?;
    let mut child = started.process;
    let terminal = started.terminal;
    let raw = if process.tty() {
        RawTerminal::enter(0)
    } else {
        None
    };
    let stdin = stdin_relay(stdin_w, terminal.as_ref(), process.stdin)
        .map_err(|e| IsolationError::os("relay stdin", e))?;
    attach::pump(
        &mut *child,
        Outputs {
            out: terminal.or(out_r),
            err: err_r,
        },
        None,
        true,
        stdin,
        sigfd.as_ref(),
    );
    drop(raw);
    Ok(child.wait()?.code())
}
