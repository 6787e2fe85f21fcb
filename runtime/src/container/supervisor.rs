//! The supervisor ("shim"): the process that owns a running container's stdio, writes its
//! logs, waits for it and records how it ended. Backend-neutral: it drives the container
//! only through [`Isolation`] and [`ContainerProcess`].
//!
//! A foreground `hull run` is its own supervisor (no extra process on the fast path): it
//! relays output to its terminal as well as to the log, forwards signals it receives and,
//! with `-t`, puts its terminal into raw mode and relays input. `hull run -d` and `hull
//! start` fork a detached supervisor (new session, stdio on /dev/null) that only logs.
//!
//! Everything happens in one thread around one poll(2): output descriptors, the process's
//! exit descriptor, a signalfd and (with `-t -i`) stdin. No sleeping, no polling loops.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::isolation::{
    ContainerProcess, ExitStatus, Isolation, IsolationError, ProcessIo, WinSize,
};
use crate::network;
use crate::process::tty;

use super::config::Config;

use super::logs::{LogWriter, Stream};
use super::state::{now, ContainerState, ContainerStore, ProcRef, Status};

/// How long output is still drained after the container's process ended.
const DRAIN_TIMEOUT_MS: i32 = 2_000;

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
    let (io, out_r, err_r) = match make_io(&spec.process, foreground) {
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
    let raw = if foreground && spec.process.tty {
        RawTerminal::enter(0)
    } else {
        None
    };
    if foreground && spec.process.tty {
        if let Some(size) = tty::get_size(1).or_else(|| tty::get_size(0)) {
            let _ = process.resize(size);
        }
    }
    let relay_stdin = foreground && spec.process.tty && spec.process.stdin;
    pump(
        &mut *process,
        Outputs {
            out: terminal.or(out_r),
            err: err_r,
        },
        log.as_mut(),
        foreground,
        relay_stdin,
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
        &spec.hostname,
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

type IoParts = (ProcessIo, Option<OwnedFd>, Option<OwnedFd>);

fn make_io(
    process: &crate::isolation::ProcessSpec,
    foreground: bool,
) -> Result<IoParts, IsolationError> {
    if process.tty {
        let size = tty::get_size(1)
            .or_else(|| tty::get_size(0))
            .unwrap_or(WinSize { rows: 24, cols: 80 });
        return Ok((ProcessIo::Terminal { size }, None, None));
    }
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| IsolationError::os("create pipe", e))
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    // Foreground `-i`: the container reads hull's own stdin directly.
    let stdin = if foreground && process.stdin {
        Some(
            io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| IsolationError::os("dup stdin", e))?,
        )
    } else {
        None
    };
    Ok((
        ProcessIo::Pipes {
            stdin,
            stdout: out_w,
            stderr: err_w,
        },
        Some(out_r),
        Some(err_r),
    ))
}

struct Outputs {
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
}

/// Relays until both outputs closed (bounded by [`DRAIN_TIMEOUT_MS`] after exit).
fn pump(
    process: &mut dyn ContainerProcess,
    mut outputs: Outputs,
    mut log: Option<&mut LogWriter>,
    foreground: bool,
    relay_stdin: bool,
    sigfd: Option<&SignalFd>,
) {
    let mut exited = false;
    let mut stdin_open = relay_stdin;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if outputs.out.is_none() && outputs.err.is_none() && exited {
            return;
        }
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(5);
        let mut kinds: Vec<u8> = Vec::with_capacity(5);
        let mut add = |fd: RawFd, kind: u8| {
            fds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
            kinds.push(kind);
        };
        if let Some(o) = &outputs.out {
            add(o.as_raw_fd(), b'o');
        }
        if let Some(e) = &outputs.err {
            add(e.as_raw_fd(), b'e');
        }
        if !exited {
            add(process.exit_fd().as_raw_fd(), b'x');
        }
        if let Some(s) = sigfd {
            add(s.as_raw_fd(), b's');
        }
        if stdin_open && outputs.out.is_some() {
            add(0, b'i');
        }
        if fds.is_empty() {
            return;
        }
        let timeout = if exited { DRAIN_TIMEOUT_MS } else { -1 };
        // SAFETY: `fds` is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if n == 0 {
            return; // exited and output went quiet: stop draining
        }
        for (pfd, kind) in fds.iter().zip(&kinds) {
            if pfd.revents == 0 {
                continue;
            }
            match kind {
                b'o' | b'e' => {
                    let (slot, stream) = if *kind == b'o' {
                        (&mut outputs.out, Stream::Stdout)
                    } else {
                        (&mut outputs.err, Stream::Stderr)
                    };
                    let Some(fd) = slot.as_ref() else { continue };
                    match nix::unistd::read(fd.as_fd(), &mut buf) {
                        Ok(0) | Err(_) => *slot = None, // EOF, or EIO: pty slave closed
                        Ok(n) => {
                            if let Some(l) = log.as_deref_mut() {
                                if let Err(e) = l.write(stream, &buf[..n]) {
                                    tracing::warn!("writing log: {e}");
                                }
                            }
                            if foreground {
                                let target = if stream == Stream::Stdout { 1 } else { 2 };
                                if let Err(e) = write_all(target, &buf[..n]) {
                                    // Our reader went away (`hull run ... | head`): close
                                    // the container's end too, so it gets SIGPIPE like any
                                    // process in a pipeline.
                                    if e.raw_os_error() == Some(libc::EPIPE) {
                                        *slot = None;
                                    }
                                }
                            }
                        }
                    }
                }
                b'x' => exited = true,
                b's' => forward_signals(process, sigfd),
                b'i' => match nix::unistd::read(io::stdin().as_fd(), &mut buf) {
                    Ok(0) | Err(_) => {
                        stdin_open = false;
                        if let Some(t) = &outputs.out {
                            let _ = nix::unistd::write(t.as_fd(), &[4u8]); // ^D: end of input
                        }
                    }
                    Ok(n) => {
                        if let Some(t) = &outputs.out {
                            let _ = write_all_fd(t.as_fd(), &buf[..n]);
                        }
                    }
                },
                _ => {}
            }
        }
    }
}

fn forward_signals(process: &dyn ContainerProcess, sigfd: Option<&SignalFd>) {
    let Some(sigfd) = sigfd else { return };
    while let Ok(Some(info)) = sigfd.read_signal() {
        let sig = info.ssi_signo as i32;
        if sig == libc::SIGWINCH {
            if let Some(size) = tty::get_size(1).or_else(|| tty::get_size(0)) {
                let _ = process.resize(size);
            }
        } else if let Err(e) = process.signal(sig) {
            tracing::debug!("forwarding signal {sig}: {e}");
        }
    }
}

fn write_all(fd: RawFd, data: &[u8]) -> io::Result<()> {
    // SAFETY: fd 1/2 stay open for the life of the process.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    write_all_fd(fd, data)
}

fn write_all_fd(fd: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The user's terminal in raw mode while attached with `-t`; restored on drop.
struct RawTerminal {
    fd: RawFd,
    saved: nix::sys::termios::Termios,
}

impl RawTerminal {
    fn enter(fd: RawFd) -> Option<RawTerminal> {
        // SAFETY: stdin stays open for the life of the process.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let saved = nix::sys::termios::tcgetattr(borrowed).ok()?;
        let mut raw = saved.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        nix::sys::termios::tcsetattr(borrowed, nix::sys::termios::SetArg::TCSANOW, &raw).ok()?;
        Some(RawTerminal { fd, saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: stdin stays open for the life of the process.
        let borrowed = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ =
            nix::sys::termios::tcsetattr(borrowed, nix::sys::termios::SetArg::TCSANOW, &self.saved);
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
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("supervisor.log"));
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
}

/// Runs `process` in a running container attached to hull's own stdio (`hull exec`) and
/// returns its exit code. Without `-t` the process gets hull's descriptors directly; with
/// `-t` hull relays between its terminal (raw mode) and the container's pty. Signals hull
/// receives are forwarded. Must be called from a single-threaded process.
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
    let dup = |fd: RawFd| {
        // SAFETY: hull's stdio descriptors stay open for the life of the process.
        unsafe { BorrowedFd::borrow_raw(fd) }
            .try_clone_to_owned()
            .map_err(|e| IsolationError::os("dup stdio", e))
    };
    let io = if process.tty {
        let size = tty::get_size(1)
            .or_else(|| tty::get_size(0))
            .unwrap_or(WinSize { rows: 24, cols: 80 });
        ProcessIo::Terminal { size }
    } else {
        ProcessIo::Pipes {
            stdin: if process.stdin { Some(dup(0)?) } else { None },
            stdout: dup(1)?,
            stderr: dup(2)?,
        }
    };
    let started = backend.exec(ctx, spec, process, io)?;
    let mut child = started.process;
    let raw = if process.tty {
        RawTerminal::enter(0)
    } else {
        None
    };
    pump(
        &mut *child,
        Outputs {
            out: started.terminal,
            err: None,
        },
        None,
        true,
        process.tty && process.stdin,
        sigfd.as_ref(),
    );
    drop(raw);
    Ok(child.wait()?.code())
}
