//! Relaying one process's stdio, signals and exit status over its vsock connection.
//!
//! Two threads per process: this one forwards output and finally the exit code
//! (guest to host); a reader thread applies the host's frames (stdin, signals, resize).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::Result;
use hull_agent::protocol::{self, Frame, Message, MAX_DATA_CHUNK};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::spawn::Child;

/// After the process ends, keep forwarding output that is still buffered, but stop when the
/// pipes have been quiet this long (a background process may hold them open).
const DRAIN_QUIET: Duration = Duration::from_millis(300);

/// Relays until the process ends; returns its exit code (already reported to the host).
pub fn relay(conn: UnixStream, child: Child) -> Result<i32> {
    let Child {
        pid,
        stdio,
        mut exit,
    } = child;
    let reader_conn = conn.try_clone()?;
    let stdin = stdio.stdin;
    let tty_master = if stdio.tty {
        Some(stdio.stdout.try_clone()?)
    } else {
        None
    };
    std::thread::Builder::new()
        .name(format!("host-frames-{pid}"))
        .spawn(move || apply_host_frames(reader_conn, pid, stdin, tty_master))?;

    let mut out = conn;
    let mut sources: Vec<(File, bool)> = vec![(stdio.stdout, false)];
    if let Some(err) = stdio.stderr {
        sources.push((err, true));
    }
    let mut code: Option<i32> = None;
    let mut quiet_since = Instant::now();
    let mut buf = vec![0u8; MAX_DATA_CHUNK];
    loop {
        if sources.is_empty() && code.is_some() {
            break;
        }
        if code.is_some() && quiet_since.elapsed() >= DRAIN_QUIET {
            break;
        }
        let mut fds: Vec<PollFd> = sources
            .iter()
            .map(|(f, _)| PollFd::new(f.as_fd(), PollFlags::POLLIN))
            .collect();
        if code.is_none() {
            fds.push(PollFd::new(exit.as_fd(), PollFlags::POLLIN));
        }
        let timeout = if code.is_some() { 50u16 } else { 1000 };
        match poll(&mut fds, PollTimeout::from(timeout)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if code.is_none() && ready[sources.len()] {
            let mut b = [0u8; 4];
            exit.read_exact(&mut b)?;
            code = Some(i32::from_ne_bytes(b));
            quiet_since = Instant::now();
        }
        let mut closed = Vec::new();
        for (i, (f, is_err)) in sources.iter_mut().enumerate() {
            if !ready[i] {
                continue;
            }
            match f.read(&mut buf) {
                // EIO on a pty master means the terminal's last user went away.
                Ok(0) | Err(_) => closed.push(i),
                Ok(n) => {
                    let data = buf[..n].to_vec();
                    let frame = if *is_err {
                        Frame::Stderr(data)
                    } else {
                        Frame::Stdout(data)
                    };
                    protocol::write_frame(&mut out, &frame)?;
                    quiet_since = Instant::now();
                }
            }
        }
        for i in closed.into_iter().rev() {
            sources.remove(i);
        }
    }
    let code = code.unwrap_or(255);
    protocol::write_message(&mut out, &Message::Exit { code })?;
    Ok(code)
}

/// Applies stdin, signal and resize frames from the host until the connection ends.
fn apply_host_frames(
    mut conn: UnixStream,
    pid: i32,
    mut stdin: Option<File>,
    tty_master: Option<File>,
) {
    loop {
        let frame = match protocol::read_frame(&mut conn) {
            Ok(f) => f,
            Err(protocol::ProtocolError::Closed) => return,
            Err(e) => {
                super::log(&format!("bad frame from host for pid {pid}: {e}"));
                return;
            }
        };
        match frame {
            Frame::Stdin(data) if data.is_empty() => {
                if let (Some(master), true) = (&tty_master, stdin.is_some()) {
                    // End of input on a terminal is the EOF character, not a close.
                    let _ = (&*master).write_all(&[4]);
                }
                stdin = None;
            }
            Frame::Stdin(data) => {
                if let Some(w) = stdin.as_mut() {
                    if w.write_all(&data).is_err() {
                        stdin = None;
                    }
                }
            }
            Frame::Control(Message::Signal { signal }) => {
                if let Ok(sig) = Signal::try_from(signal) {
                    let _ = kill(Pid::from_raw(pid), sig);
                }
            }
            Frame::Control(Message::Resize { rows, cols }) => {
                if let Some(master) = &tty_master {
                    let ws = libc::winsize {
                        ws_row: rows,
                        ws_col: cols,
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    // SAFETY: TIOCSWINSZ reads a winsize struct that lives across the call.
                    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                }
            }
            other => super::log(&format!("unexpected frame from host: {other:?}")),
        }
    }
}
