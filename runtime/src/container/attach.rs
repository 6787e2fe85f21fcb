//! Relaying a container process's standard streams to and from hull's own, in one
//! poll(2) loop: output (pipes or the terminal's host end) to the log and to hull's
//! stdout/stderr, hull's stdin to the process, signals hull receives to the process.
//!
//! A container never gets one of hull's own descriptors: its stdin, stdout and stderr are
//! pipes (or a terminal created inside the container) whose other ends only hull holds.
//! Handing it hull's terminal instead would let it inject keystrokes into the operator's
//! shell (TIOCSTI), change the terminal's modes, or keep reading the operator's typing
//! after hull has exited, from a process it left behind.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::sys::signalfd::SignalFd;

use crate::isolation::ContainerProcess;
use crate::process::tty;

use super::logs::{LogWriter, Stream};

/// How long output is still drained after the container's process ended.
const DRAIN_TIMEOUT_MS: i32 = 2_000;
/// Largest chunk read from any stream at once.
const CHUNK: usize = 64 << 10;

/// How the process learns that hull's stdin ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputEnd {
    /// Close the pipe: the process reads end-of-file.
    Close,
    /// Type the terminal's end-of-file character (^D): the terminal stays open.
    ControlD,
}

/// Forwards hull's stdin (fd 0) to the process without ever blocking the loop: the
/// target is non-blocking and at most one chunk waits in `pending`, so a process that
/// stops reading its input only stops hull reading more of it, never its output.
pub struct StdinRelay {
    target: Option<OwnedFd>,
    end: InputEnd,
    pending: Vec<u8>,
    source_open: bool,
}

impl StdinRelay {
    /// A relay into `target` (a pipe's write end or the terminal's host end).
    pub fn new(target: OwnedFd, end: InputEnd) -> io::Result<StdinRelay> {
        let flags = nix::fcntl::fcntl(&target, nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&target, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        Ok(StdinRelay {
            target: Some(target),
            end,
            pending: Vec::new(),
            source_open: true,
        })
    }

    fn wants_input(&self) -> bool {
        self.source_open && self.pending.is_empty() && self.target.is_some()
    }

    fn wants_output(&self) -> bool {
        !self.pending.is_empty() && self.target.is_some()
    }

    /// Reads one chunk of hull's stdin.
    fn read_input(&mut self, buf: &mut [u8]) {
        match nix::unistd::read(io::stdin().as_fd(), buf) {
            Ok(0) | Err(_) => {
                self.source_open = false;
                if self.end == InputEnd::ControlD {
                    self.pending.push(4);
                }
            }
            Ok(n) => self.pending.extend_from_slice(&buf[..n]),
        }
        self.flush();
    }

    /// Writes what it can of `pending`; closes a pipe target once the input has ended.
    fn flush(&mut self) {
        let Some(target) = &self.target else { return };
        while !self.pending.is_empty() {
            match nix::unistd::write(target, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => return,
                // The process closed its stdin (EPIPE) or the terminal is gone.
                Err(_) => {
                    self.target = None;
                    self.pending.clear();
                    self.source_open = false;
                    return;
                }
            }
        }
        if !self.source_open && self.end == InputEnd::Close {
            self.target = None;
        }
    }
}

/// The process's output descriptors (`None` once closed).
pub struct Outputs {
    /// stdout pipe, or the terminal's host end with `-t`.
    pub out: Option<OwnedFd>,
    /// stderr pipe (`None` with `-t`).
    pub err: Option<OwnedFd>,
}

/// Relays until both outputs closed (bounded by [`DRAIN_TIMEOUT_MS`] after exit).
/// `foreground`: output also goes to hull's stdout/stderr.
pub fn pump(
    process: &mut dyn ContainerProcess,
    mut outputs: Outputs,
    mut log: Option<&mut LogWriter>,
    foreground: bool,
    mut stdin: Option<StdinRelay>,
    sigfd: Option<&SignalFd>,
) {
    let mut exited = false;
    let mut buf = vec![0u8; CHUNK];
    loop {
        if outputs.out.is_none() && outputs.err.is_none() && exited {
            return;
        }
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(6);
        let mut kinds: Vec<u8> = Vec::with_capacity(6);
        let mut add = |fd: RawFd, events: libc::c_short, kind: u8| {
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
            kinds.push(kind);
        };
        if let Some(o) = &outputs.out {
            add(o.as_raw_fd(), libc::POLLIN, b'o');
        }
        if let Some(e) = &outputs.err {
            add(e.as_raw_fd(), libc::POLLIN, b'e');
        }
        if !exited {
            add(process.exit_fd().as_raw_fd(), libc::POLLIN, b'x');
        }
        if let Some(s) = sigfd {
            add(s.as_raw_fd(), libc::POLLIN, b's');
        }
        if let Some(relay) = stdin.as_ref().filter(|_| !exited) {
            if relay.wants_input() {
                add(0, libc::POLLIN, b'i');
            }
            if let Some(t) = relay.target.as_ref().filter(|_| relay.wants_output()) {
                add(t.as_raw_fd(), libc::POLLOUT, b'w');
            }
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
                    relay_output(slot, stream, &mut buf, log.as_deref_mut(), foreground);
                }
                b'x' => exited = true,
                b's' => forward_signals(process, sigfd),
                b'i' => {
                    if let Some(relay) = stdin.as_mut() {
                        relay.read_input(&mut buf);
                    }
                }
                b'w' => {
                    if let Some(relay) = stdin.as_mut() {
                        relay.flush();
                    }
                }
                _ => {}
            }
        }
    }
}

/// Moves one chunk from an output descriptor to the log and (foreground) to hull's own.
fn relay_output(
    slot: &mut Option<OwnedFd>,
    stream: Stream,
    buf: &mut [u8],
    log: Option<&mut LogWriter>,
    foreground: bool,
) {
    let Some(fd) = slot.as_ref() else { return };
    match nix::unistd::read(fd.as_fd(), buf) {
        // A terminal's host end may be non-blocking (it is shared with the stdin relay).
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
        Ok(0) | Err(_) => *slot = None, // EOF, or EIO: pty slave closed
        Ok(n) => {
            if let Some(l) = log {
                if let Err(e) = l.write(stream, &buf[..n]) {
                    tracing::warn!("writing log: {e}");
                }
            }
            if foreground {
                let target = if stream == Stream::Stdout { 1 } else { 2 };
                if let Err(e) = write_all(target, &buf[..n]) {
                    // Our reader went away (`hull run ... | head`): close the container's
                    // end too, so it gets SIGPIPE like any process in a pipeline.
                    if e.raw_os_error() == Some(libc::EPIPE) {
                        *slot = None;
                    }
                }
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

fn write_all(fd: RawFd, mut data: &[u8]) -> io::Result<()> {
    // SAFETY: fd 1/2 stay open for the life of the process.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
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
pub struct RawTerminal {
    fd: RawFd,
    saved: nix::sys::termios::Termios,
}

impl RawTerminal {
    /// Puts `fd` (hull's stdin) in raw mode, if it is a terminal.
    pub fn enter(fd: RawFd) -> Option<RawTerminal> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A process that never reads its input does not block the relay: what does not fit
    /// in the pipe waits, and hull stops reading its own stdin meanwhile.
    #[test]
    fn a_full_pipe_never_blocks_the_relay() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let mut relay = StdinRelay::new(w, InputEnd::Close).unwrap();
        relay.pending = vec![7u8; 1 << 20];
        relay.flush();
        assert!(!relay.pending.is_empty(), "a pipe holds less than 1 MiB");
        assert!(!relay.wants_input() && relay.wants_output());
        drop(r);
        relay.flush();
        assert!(relay.target.is_none(), "EPIPE ends the relay");
        assert!(!relay.wants_input() && !relay.wants_output());
    }

    #[test]
    fn end_of_input_closes_a_pipe_and_types_eof_on_a_terminal() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let mut relay = StdinRelay::new(w, InputEnd::Close).unwrap();
        relay.source_open = false;
        relay.flush();
        assert!(relay.target.is_none());
        let mut buf = [0u8; 4];
        assert_eq!(nix::unistd::read(r.as_fd(), &mut buf).unwrap(), 0);

        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let mut relay = StdinRelay::new(w, InputEnd::ControlD).unwrap();
        relay.source_open = false;
        relay.pending.push(4);
        relay.flush();
        assert!(relay.target.is_some(), "a terminal stays open after ^D");
        assert_eq!(nix::unistd::read(r.as_fd(), &mut buf).unwrap(), 1);
        assert_eq!(buf[0], 4);
    }
}
