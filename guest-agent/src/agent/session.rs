//! Relaying one process's stdio, signals and exit status over its vsock connection.
//!
//! Two threads per process: this one forwards output and finally the exit code
//! (guest to host); a reader thread applies the host's frames (stdin, signals, resize).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use anyhow::Result;
use hull_protocol::{self as protocol, Frame, Message, MAX_DATA_CHUNK};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::stdio::Child;

/// After the process ends, keep forwarding output that is still buffered, but stop when the
/// pipes have been quiet this long (a background process may hold them open).
const DRAIN_QUIET: Duration = Duration::from_millis(300);
/// After the exit code is sent, how long to wait for the host to close the connection,
/// which says it has read the code. Without that wait the main process's code could be
/// lost: the VM powers off right after, and data still queued in the guest's vsock
/// driver would never reach the host. A host that never closes only delays power-off.
const HOST_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

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
    // Dropped when the host's side of the connection is closed (the reader thread ends).
    let (host_closed_tx, host_closed) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name(format!("host-frames-{pid}"))
        .spawn(move || {
            apply_host_frames(reader_conn, pid, stdin, tty_master);
            drop(host_closed_tx);
        })?;

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
    if host_closed.recv_timeout(HOST_CLOSE_TIMEOUT) == Err(RecvTimeoutError::Timeout) {
        super::log(&format!(
            "the host did not close the connection of pid {pid} within {HOST_CLOSE_TIMEOUT:?} \
             of its exit code"
        ));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::stdio::ParentStdio;
    use std::time::Duration;

    fn pipe() -> (File, File) {
        let (r, w) = nix::unistd::pipe().unwrap();
        (File::from(r), File::from(w))
    }

    /// The process's output and exit code reach the host, and the relay (after which the
    /// agent powers the VM off) waits until the host has closed the connection.
    #[test]
    fn the_exit_code_is_sent_and_the_relay_waits_for_the_host_to_close() {
        let (host, guest) = UnixStream::pair().unwrap();
        let (out_r, mut out_w) = pipe();
        let (exit_r, mut exit_w) = pipe();
        let child = Child {
            pid: i32::MAX,
            stdio: ParentStdio {
                stdin: None,
                stdout: out_r,
                stderr: None,
                tty: false,
            },
            exit: exit_r,
        };
        let relay = std::thread::spawn(move || relay(guest, child).unwrap());
        out_w.write_all(b"bye\n").unwrap();
        drop(out_w);
        exit_w.write_all(&7i32.to_ne_bytes()).unwrap();

        let mut host_reader = host.try_clone().unwrap();
        host_reader
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(
            protocol::read_frame(&mut host_reader).unwrap(),
            Frame::Stdout(b"bye\n".to_vec())
        );
        assert_eq!(
            protocol::read_frame(&mut host_reader).unwrap(),
            Frame::Control(Message::Exit { code: 7 })
        );
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !relay.is_finished(),
            "the relay ended before the host closed the connection"
        );
        host.shutdown(std::net::Shutdown::Both).unwrap();
        assert_eq!(relay.join().unwrap(), 7);
    }
}
