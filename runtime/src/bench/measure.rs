//! Timing a command from the outside, the way a user experiences it: from spawn to its first
//! byte of output, to its last byte, to its exit; and talking to long-lived containers over
//! their standard streams.
//!
//! The child's exit is watched through a pidfd, polled together with its output pipes, so
//! every timestamp is taken when the event happens (no sleep loops), and every wait has a
//! deadline after which the child's whole process group is killed.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::BenchError;

/// Output kept per stream (for error messages and checks); the rest is counted, not kept.
const KEPT_OUTPUT: usize = 64 * 1024;

/// What one timed run of a command saw.
#[derive(Debug, Clone)]
pub struct Timed {
    /// Spawn to the first byte on stdout.
    pub first_output: Option<Duration>,
    /// Spawn to the last byte on stdout.
    pub last_output: Option<Duration>,
    /// Spawn to exit.
    pub end_to_end: Duration,
    /// Exit code (128+N for signal N).
    pub exit_code: i32,
    /// The first [`KEPT_OUTPUT`] bytes of stdout.
    pub stdout: Vec<u8>,
    /// The first [`KEPT_OUTPUT`] bytes of stderr.
    pub stderr: Vec<u8>,
    /// When stdout's kept bytes arrived: (length of `stdout` after a read, its time).
    pub stdout_marks: Vec<(usize, Duration)>,
}

impl Timed {
    /// Stderr as text, trimmed, for error messages.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }

    /// Ends stdout where `marker` begins (for a subject whose stdout carries more than the
    /// command's output, like a VM's serial console) and retimes the first and last output
    /// to the bytes before it; returns what followed the marker, or `None` when there is no
    /// marker (nothing is changed then).
    pub fn cut_stdout_at(&mut self, marker: &[u8]) -> Option<Vec<u8>> {
        let at = self
            .stdout
            .windows(marker.len())
            .position(|w| w == marker)?;
        let rest = self.stdout[at + marker.len()..].to_vec();
        self.stdout.truncate(at);
        // The read that brought byte `n - 1` is the first whose end is past it.
        let time_of = |n: usize| {
            self.stdout_marks
                .iter()
                .find(|(end, _)| *end >= n)
                .map(|&(_, t)| t)
        };
        (self.first_output, self.last_output) = if at == 0 {
            (None, None)
        } else {
            (time_of(1), time_of(at))
        };
        Some(rest)
    }
}

/// Opens a pidfd for `pid` (readable once the process has exited).
fn pidfd_open(pid: u32) -> Result<OwnedFd, BenchError> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; it
    // touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(BenchError::Io(
            "pidfd_open".into(),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: the syscall just returned this descriptor to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Kills the process group of `child` (it was spawned as a group leader).
pub fn kill_group(child: &Child) {
    // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
    unsafe {
        libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
    }
}

/// Sets `cmd` up as a group leader with piped stdout/stderr and stdin from /dev/null.
fn prepare(cmd: &mut Command, stdin: Stdio) {
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
}

/// Runs `cmd` to completion (at most `timeout`) and times it.
pub fn run_timed(mut cmd: Command, timeout: Duration) -> Result<Timed, BenchError> {
    prepare(&mut cmd, Stdio::null());
    let what = format!("{:?}", cmd.get_program());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| BenchError::Io(format!("spawn {what}"), e))?;
    let result = watch(&mut child, start, timeout, &what);
    if result.is_err() {
        kill_group(&child);
        let _ = child.wait();
    }
    result
}

fn watch(
    child: &mut Child,
    start: Instant,
    timeout: Duration,
    what: &str,
) -> Result<Timed, BenchError> {
    let pidfd = pidfd_open(child.id())?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let mut timed = Timed {
        first_output: None,
        last_output: None,
        end_to_end: Duration::ZERO,
        exit_code: -1,
        stdout: Vec::new(),
        stderr: Vec::new(),
        stdout_marks: Vec::new(),
    };
    let (mut out_open, mut err_open) = (true, true);
    let mut buf = vec![0u8; 16 * 1024];
    let exited_at = loop {
        let left = timeout
            .checked_sub(start.elapsed())
            .ok_or_else(|| BenchError::Timeout(what.to_string(), timeout))?;
        let mut fds = vec![PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        if out_open {
            fds.push(PollFd::new(stdout.as_fd(), PollFlags::POLLIN));
        }
        if err_open {
            fds.push(PollFd::new(stderr.as_fd(), PollFlags::POLLIN));
        }
        let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32 + 1)
            .unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(BenchError::Io("poll".into(), e.into())),
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let pid_ready = ready(0);
        let out_ready = out_open && ready(1);
        let err_ready = err_open && ready(if out_open { 2 } else { 1 });
        let now = start.elapsed();
        drop(fds);
        if out_ready {
            let n = stdout
                .read(&mut buf)
                .map_err(|e| BenchError::Io("read stdout".into(), e))?;
            if n == 0 {
                out_open = false;
            } else {
                timed.first_output.get_or_insert(now);
                timed.last_output = Some(now);
                keep(&mut timed.stdout, &buf[..n]);
                if timed.stdout_marks.last().map(|m| m.0) != Some(timed.stdout.len()) {
                    timed.stdout_marks.push((timed.stdout.len(), now));
                }
            }
        }
        if err_ready {
            let n = stderr
                .read(&mut buf)
                .map_err(|e| BenchError::Io("read stderr".into(), e))?;
            if n == 0 {
                err_open = false;
            } else {
                keep(&mut timed.stderr, &buf[..n]);
            }
        }
        if pid_ready {
            break now;
        }
    };
    timed.end_to_end = exited_at;
    // Collect what the child wrote just before exiting (writers may remain, e.g. a
    // daemonised helper that inherited the pipe, so read without blocking).
    for (stream, sink) in [
        (stdout.as_raw_fd(), &mut timed.stdout),
        (stderr.as_raw_fd(), &mut timed.stderr),
    ] {
        drain_nonblocking(stream, sink);
    }
    let status = child
        .wait()
        .map_err(|e| BenchError::Io(format!("wait {what}"), e))?;
    timed.exit_code = exit_code(status);
    Ok(timed)
}

fn keep(sink: &mut Vec<u8>, data: &[u8]) {
    let room = KEPT_OUTPUT.saturating_sub(sink.len());
    sink.extend_from_slice(&data[..data.len().min(room)]);
}

fn drain_nonblocking(fd: i32, sink: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    // Bounded: at most 64 reads of what is already buffered in the pipe.
    for _ in 0..64 {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: p is one valid pollfd for the duration of the call.
        if unsafe { libc::poll(&mut p, 1, 0) } <= 0 || p.revents & libc::POLLIN == 0 {
            return;
        }
        // SAFETY: fd is open (its owner lives in the caller), buf is writable for its
        // length, and poll said a read will not block.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return;
        }
        keep(sink, &buf[..n as usize]);
    }
}

/// Shell-style exit code of a status.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// A long-lived container process the bench talks to over its stdin/stdout.
#[derive(Debug)]
pub struct LiveChild {
    /// The runtime process we spawned (`hull run`, `crun run`, ...).
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    pending: Vec<u8>,
}

impl LiveChild {
    /// Spawns `cmd` with piped stdin/stdout as a process group leader.
    pub fn spawn(mut cmd: Command) -> Result<LiveChild, BenchError> {
        prepare(&mut cmd, Stdio::piped());
        cmd.stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .map_err(|e| BenchError::Io(format!("spawn {:?}", cmd.get_program()), e))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        Ok(LiveChild {
            child,
            stdin,
            stdout,
            pending: Vec::new(),
        })
    }

    /// Waits (until `deadline`) for a line of output that starts with `prefix`; returns it.
    pub fn expect_line(&mut self, prefix: &str, deadline: Instant) -> Result<String, BenchError> {
        let mut buf = [0u8; 4096];
        loop {
            while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line).trim_end().to_string();
                if line.starts_with(prefix) {
                    return Ok(line);
                }
            }
            if self.pending.len() > KEPT_OUTPUT {
                return Err(BenchError::Protocol(format!(
                    "no newline in {KEPT_OUTPUT} bytes of container output"
                )));
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or_else(|| BenchError::Protocol(format!("no {prefix:?} line in time")))?;
            let mut fds = [PollFd::new(self.stdout.as_fd(), PollFlags::POLLIN)];
            let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32 + 1)
                .unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, ms) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(BenchError::Io("poll".into(), e.into())),
            }
            let n = self
                .stdout
                .read(&mut buf)
                .map_err(|e| BenchError::Io("read container output".into(), e))?;
            if n == 0 {
                return Err(BenchError::Protocol(format!(
                    "container output ended before a {prefix:?} line"
                )));
            }
            self.pending.extend_from_slice(&buf[..n]);
        }
    }

    /// Writes one line to the container's stdin.
    pub fn send_line(&mut self, line: &str) -> Result<(), BenchError> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| BenchError::Protocol("stdin already closed".into()))?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .map_err(|e| BenchError::Io("write container stdin".into(), e))
    }

    /// Writes raw bytes to the container's stdin (e.g. a terminal's end-of-file, ^D).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), BenchError> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| BenchError::Protocol("stdin already closed".into()))?;
        stdin
            .write_all(bytes)
            .map_err(|e| BenchError::Io("write container stdin".into(), e))
    }

    /// Closes stdin (the container's `read` then sees end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the runtime process to exit, killing its group after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Result<i32, BenchError> {
        let deadline = Instant::now() + timeout;
        let pidfd = pidfd_open(self.child.id())?;
        loop {
            let left = match deadline.checked_duration_since(Instant::now()) {
                Some(left) => left,
                None => {
                    kill_group(&self.child);
                    let _ = self.child.wait();
                    return Err(BenchError::Timeout("container exit".into(), timeout));
                }
            };
            let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32 + 1)
                .unwrap_or(PollTimeout::MAX);
            if let Ok(n) = poll(&mut fds, ms) {
                if n > 0 {
                    break;
                }
            }
        }
        let status = self
            .child
            .wait()
            .map_err(|e| BenchError::Io("wait".into(), e))?;
        Ok(exit_code(status))
    }

    /// Kills the runtime's process group and reaps it (used on errors).
    pub fn kill(&mut self) {
        kill_group(&self.child);
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timed(stdout: &[u8], marks: Vec<(usize, u64)>) -> Timed {
        Timed {
            first_output: marks.first().map(|m| Duration::from_millis(m.1)),
            last_output: marks.last().map(|m| Duration::from_millis(m.1)),
            end_to_end: Duration::from_millis(1000),
            exit_code: 0,
            stdout: stdout.to_vec(),
            stderr: Vec::new(),
            stdout_marks: marks
                .into_iter()
                .map(|(n, ms)| (n, Duration::from_millis(ms)))
                .collect(),
        }
    }

    #[test]
    fn output_before_a_marker_is_timed_by_the_reads_that_brought_it() {
        // "hello\n" came in two reads (at 10 ms and 20 ms), the marker at 30 ms.
        let mut t = timed(b"hello\n@@end 0\n", vec![(3, 10), (6, 20), (15, 30)]);
        let rest = t.cut_stdout_at(b"@@end ").unwrap();
        assert_eq!(rest, b"0\n");
        assert_eq!(t.stdout, b"hello\n");
        assert_eq!(
            (t.first_output, t.last_output),
            (Some(ms(10)), Some(ms(20)))
        );
    }

    #[test]
    fn a_command_that_printed_nothing_has_no_output_times() {
        let mut t = timed(b"@@end 0\n", vec![(8, 30)]);
        assert_eq!(t.cut_stdout_at(b"@@end "), Some(b"0\n".to_vec()));
        assert_eq!((t.first_output, t.last_output), (None, None));
        // Without the marker nothing changes.
        let mut t = timed(b"hi\n", vec![(3, 5)]);
        assert_eq!(t.cut_stdout_at(b"@@end "), None);
        assert_eq!(t.first_output, Some(ms(5)));
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
}
