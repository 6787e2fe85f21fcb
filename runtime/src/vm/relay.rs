//! A process running in the guest, seen from the host: its stdio relayed between the
//! caller's descriptors and the process's vsock connection, its exit code from the agent.
//!
//! One thread reads the connection (output frames to the caller's stdout/stderr, then the
//! exit code); one more forwards the caller's stdin when there is one. Writes to the
//! connection (stdin, signals, resize) share a mutex so frames never interleave.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hull_protocol::{self as protocol, Frame, Message, ProtocolError, MAX_DATA_CHUNK};

use crate::isolation::{ContainerProcess, ExitStatus, IsolationError, WinSize};

use super::launch::VmmProcess;

/// How long the VM has to power off after the agent reported the exit code.
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the relayed output goes and where input comes from.
pub struct RelayIo {
    /// Source of stdin frames (`None`: the process reads /dev/null or stdin stays closed).
    pub input: Option<File>,
    /// Sink for stdout frames.
    pub stdout: File,
    /// Sink for stderr frames (`None` with a tty: there are none).
    pub stderr: Option<File>,
    /// A socket to shut down once the process ended (the terminal's relay end), so the
    /// caller sees end-of-file although the input side still holds a descriptor of it.
    pub shutdown_on_exit: Option<UnixStream>,
}

/// The VMM child of a container's main process, and its log.
pub struct OwnedVmm {
    /// The hull-vmm process.
    pub process: VmmProcess,
    /// Its stderr (where it writes why it stopped, e.g. a seccomp violation).
    pub log: std::path::PathBuf,
    /// The virtiofsd of each volume (they end with the VMM's connection; stopped and
    /// their sockets removed when the VMM is reaped, or when this is dropped).
    pub backends: Vec<super::virtiofs::Virtiofsd>,
}

/// A guest process as a [`ContainerProcess`].
pub struct VmProcess {
    vmm_pid: u32,
    /// The VMM child when this is the container's main process (we reap it).
    vmm: Option<OwnedVmm>,
    writer: Arc<Mutex<UnixStream>>,
    exit_read: OwnedFd,
    output: Option<JoinHandle<Option<i32>>>,
}

fn write_frame(writer: &Mutex<UnixStream>, frame: &Frame) -> Result<(), ProtocolError> {
    let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
    protocol::write_frame(&mut *w, frame)
}

impl VmProcess {
    /// Starts relaying on `conn` (the agent already reported the process as started).
    pub fn start(
        conn: UnixStream,
        io: RelayIo,
        vmm_pid: u32,
        vmm: Option<OwnedVmm>,
    ) -> Result<VmProcess, IsolationError> {
        // Output can legitimately take forever; the VM's death closes the stream.
        conn.set_read_timeout(None)
            .map_err(|e| IsolationError::os("configure vsock connection", e))?;
        let reader = conn
            .try_clone()
            .map_err(|e| IsolationError::os("clone vsock connection", e))?;
        let writer = Arc::new(Mutex::new(conn));
        let (exit_read, exit_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| IsolationError::os("pipe", std::io::Error::from(e)))?;
        let RelayIo {
            input,
            stdout,
            stderr,
            shutdown_on_exit,
        } = io;
        let output = std::thread::Builder::new()
            .name("vm-output".into())
            .spawn(move || {
                let code = relay_output(&reader, stdout, stderr);
                // Closing tells the agent the exit code arrived: it waits for that before
                // powering the VM off, so the code cannot be lost in the guest's queues.
                let _ = reader.shutdown(std::net::Shutdown::Both);
                if let Some(sock) = shutdown_on_exit {
                    let _ = sock.shutdown(std::net::Shutdown::Both);
                }
                let _ = File::from(exit_write).write_all(&[1]);
                code
            })
            .map_err(|e| IsolationError::os("spawn relay thread", e))?;
        if let Some(input) = input {
            let w = Arc::clone(&writer);
            std::thread::Builder::new()
                .name("vm-input".into())
                .spawn(move || relay_input(input, &w))
                .map_err(|e| IsolationError::os("spawn relay thread", e))?;
        }
        Ok(VmProcess {
            vmm_pid,
            vmm,
            writer,
            exit_read,
            output: Some(output),
        })
    }

    fn send(&self, msg: Message) -> Result<(), IsolationError> {
        write_frame(&self.writer, &Frame::Control(msg)).map_err(|e| match e {
            ProtocolError::Io(io) => IsolationError::os("send to the guest agent", io),
            other => IsolationError::Backend(other.to_string()),
        })
    }
}

/// Output frames to the sinks until the exit code arrives; `None` if the stream ended
/// without one (the VM died).
fn relay_output(mut conn: &UnixStream, mut stdout: File, mut stderr: Option<File>) -> Option<i32> {
    // A sink that fails (reader gone) is dropped; the process keeps running, as with a pipe
    // whose reader left in process mode.
    let mut out_ok = true;
    let mut err_ok = true;
    let mut unexpected = Unexpected::default();
    loop {
        match protocol::read_frame(&mut conn) {
            Ok(Frame::Stdout(data)) => {
                if out_ok && stdout.write_all(&data).is_err() {
                    out_ok = false;
                }
            }
            Ok(Frame::Stderr(data)) => {
                if let Some(e) = stderr.as_mut().filter(|_| err_ok) {
                    if e.write_all(&data).is_err() {
                        err_ok = false;
                    }
                }
            }
            Ok(Frame::Control(Message::Exit { code })) => return Some(code),
            Ok(other) => unexpected.note(&other),
            Err(ProtocolError::Closed) => return None,
            Err(e) => {
                // A hostile or broken guest: stop listening to it.
                tracing::warn!("dropping the guest connection: {e}");
                return None;
            }
        }
    }
}

/// Frames a guest sends that the host did not ask for are logged by kind and size only
/// (never their contents, up to 256 KiB each), the first [`Unexpected::LOGGED`] of them one
/// by one, then one line per [`Unexpected::EVERY`] more: a guest cannot fill the
/// supervisor's log with them.
#[derive(Default)]
struct Unexpected {
    count: u64,
}

impl Unexpected {
    const LOGGED: u64 = 5;
    const EVERY: u64 = 100_000;

    /// Counts `frame`; returns the line to log, if any.
    fn line(&mut self, frame: &Frame) -> Option<String> {
        self.count += 1;
        if self.count <= Self::LOGGED {
            Some(format!(
                "ignoring an unexpected {} from the guest",
                what(frame)
            ))
        } else if self.count % Self::EVERY == 0 {
            Some(format!(
                "ignored {} unexpected frames from the guest so far (last: {})",
                self.count,
                what(frame)
            ))
        } else {
            None
        }
    }

    fn note(&mut self, frame: &Frame) {
        if let Some(line) = self.line(frame) {
            tracing::warn!("{line}");
        }
    }
}

/// A frame's kind and size, or a control message's variant name: never the guest's text.
fn what(frame: &Frame) -> String {
    match frame {
        Frame::Control(msg) => {
            // Debug starts with the variant's name; stop formatting right after it.
            let mut name = Prefix(String::new());
            let _ = std::fmt::Write::write_fmt(&mut name, format_args!("{msg:?}"));
            let name: String = name
                .0
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
            format!("control message {name}")
        }
        Frame::Stdin(d) => format!("stdin frame of {} bytes", d.len()),
        Frame::Stdout(d) => format!("stdout frame of {} bytes", d.len()),
        Frame::Stderr(d) => format!("stderr frame of {} bytes", d.len()),
    }
}

/// Keeps the first 32 bytes written to it, then refuses more.
struct Prefix(String);

impl std::fmt::Write for Prefix {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        for c in s.chars() {
            if self.0.len() >= 32 {
                return Err(std::fmt::Error);
            }
            self.0.push(c);
        }
        Ok(())
    }
}

fn relay_input(mut input: File, writer: &Mutex<UnixStream>) {
    let mut buf = vec![0u8; MAX_DATA_CHUNK];
    loop {
        match input.read(&mut buf) {
            Ok(0) => {
                let _ = write_frame(writer, &Frame::Stdin(Vec::new()));
                return;
            }
            Ok(n) => {
                if write_frame(writer, &Frame::Stdin(buf[..n].to_vec())).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => {
                let _ = write_frame(writer, &Frame::Stdin(Vec::new()));
                return;
            }
        }
    }
}

impl ContainerProcess for VmProcess {
    fn pid(&self) -> u32 {
        self.vmm_pid
    }

    fn exit_fd(&self) -> BorrowedFd<'_> {
        self.exit_read.as_fd()
    }

    fn wait(&mut self) -> Result<ExitStatus, IsolationError> {
        let code = self.output.take().and_then(|h| h.join().ok()).flatten();
        if let Some(vmm) = self.vmm.as_mut() {
            let timeout = if code.is_some() {
                POWEROFF_TIMEOUT
            } else {
                Duration::from_millis(500)
            };
            // Bounded: a guest that does not power off in time is killed.
            let status = vmm.process.wait_or_kill(timeout);
            tracing::debug!("hull-vmm ended: {status:?}");
            for backend in vmm.backends.drain(..) {
                backend.stop();
            }
            if let Some(ExitStatus::Code(code)) = status {
                if let Some(report) = super::machine::vmm_failure(code, &vmm.log) {
                    tracing::error!("{report}");
                }
            }
        }
        Ok(match code {
            Some(code) => ExitStatus::Code(code),
            // The VM ended without the agent reporting: it was killed (or crashed).
            None => ExitStatus::Signal(libc::SIGKILL),
        })
    }

    fn signal(&self, signal: i32) -> Result<(), IsolationError> {
        self.send(Message::Signal { signal })
    }

    fn resize(&self, size: WinSize) -> Result<(), IsolationError> {
        self.send(Message::Resize {
            rows: size.rows,
            cols: size.cols,
        })
    }
}

impl Drop for VmProcess {
    fn drop(&mut self) {
        // Never leave a VM behind because its owner forgot to wait.
        if let Some(mut vmm) = self.vmm.take() {
            vmm.process.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    /// A guest sending a million unexpected 256 KiB frames costs a few short log lines,
    /// none with the frames' contents.
    #[test]
    fn unexpected_frames_are_logged_briefly_and_rarely() {
        let mut u = super::Unexpected::default();
        let big = super::Frame::Stdin(vec![0x1b; 256 << 10]);
        let error = super::Frame::Control(super::Message::Error(hull_protocol::WireError {
            code: 5,
            stage: 9,
            errno: 0,
            detail: "\x1b]0;owned\x07".repeat(1000),
        }));
        let mut logged = 0usize;
        for i in 0..1_000_000u32 {
            let frame = if i % 2 == 0 { &big } else { &error };
            if let Some(line) = u.line(frame) {
                assert!(line.len() < 120, "{line}");
                assert!(!line.contains('\x1b') && !line.contains("owned"), "{line}");
                logged += line.len();
            }
        }
        assert!(logged < 4096, "{logged} bytes of log for one guest's noise");
    }

    use super::*;
    use hull_protocol::{FrameKind, PROTOCOL_VERSION};

    /// Runs the host side against a fake guest that sends `guest` bytes; returns the exit
    /// status and what reached stdout.
    fn host_against(guest: Vec<u8>) -> (ExitStatus, Vec<u8>) {
        let (host, mut fake_guest) = UnixStream::pair().unwrap();
        let (out_r, out_w) = UnixStream::pair().unwrap();
        let (_err_r, err_w) = UnixStream::pair().unwrap();
        let io = RelayIo {
            input: None,
            stdout: File::from(OwnedFd::from(out_w)),
            stderr: Some(File::from(OwnedFd::from(err_w))),
            shutdown_on_exit: None,
        };
        let mut p = VmProcess::start(host, io, 1, None).unwrap();
        fake_guest.write_all(&guest).unwrap();
        drop(fake_guest);
        let status = p.wait().unwrap();
        drop(p);
        let mut out = Vec::new();
        let mut r = out_r;
        r.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = r.read_to_end(&mut out);
        (status, out)
    }

    #[test]
    fn output_and_exit_code_come_through() {
        let mut g = Vec::new();
        protocol::write_frame(&mut g, &Frame::Stdout(b"hello\n".to_vec())).unwrap();
        protocol::write_message(&mut g, &Message::Exit { code: 3 }).unwrap();
        let (status, out) = host_against(g);
        assert_eq!(status, ExitStatus::Code(3));
        assert_eq!(out, b"hello\n");
    }

    #[test]
    fn a_guest_that_breaks_the_protocol_is_dropped_and_reported_killed() {
        let mut oversized = Vec::new();
        protocol::write_frame(&mut oversized, &Frame::Stdout(b"before\n".to_vec())).unwrap();
        oversized.extend_from_slice(&[PROTOCOL_VERSION, FrameKind::Stdout as u8, 0, 0]);
        oversized.extend_from_slice(&(64u32 << 20).to_be_bytes());
        let mut bad_code = Vec::new();
        protocol::write_raw(
            &mut bad_code,
            FrameKind::Control,
            br#"{"type":"exit","code":999}"#,
        )
        .unwrap();
        let mut truncated = Vec::new();
        protocol::write_message(&mut truncated, &Message::Exit { code: 0 }).unwrap();
        truncated.truncate(truncated.len() - 3);
        for guest in [oversized, bad_code, truncated, Vec::new()] {
            let (status, _) = host_against(guest.clone());
            assert_eq!(status, ExitStatus::Signal(libc::SIGKILL), "{guest:?}");
        }
    }

    /// The agent waits for the host to close the connection before it powers the VM off
    /// (so the exit code is never lost): the host closes as soon as it has the code.
    #[test]
    fn the_host_closes_the_connection_once_it_has_the_exit_code() {
        let (host, mut fake_guest) = UnixStream::pair().unwrap();
        let (_out_r, out_w) = UnixStream::pair().unwrap();
        let io = RelayIo {
            input: None,
            stdout: File::from(OwnedFd::from(out_w)),
            stderr: None,
            shutdown_on_exit: None,
        };
        let mut p = VmProcess::start(host, io, 1, None).unwrap();
        protocol::write_message(&mut fake_guest, &Message::Exit { code: 5 }).unwrap();
        fake_guest
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // The fake guest keeps its end open: end-of-file can only come from the host.
        let mut rest = Vec::new();
        fake_guest.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{rest:?}");
        assert_eq!(p.wait().unwrap(), ExitStatus::Code(5));
    }
}
