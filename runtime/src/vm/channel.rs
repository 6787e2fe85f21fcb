//! The host side of the vsock channel to the guest agent.
//!
//! Every request has one deadline for the whole of it, not one per read: the hello by the
//! boot timeout (and the VMM's death), the VMM's `CONNECT` handshake and a request's reply
//! by the caller's deadline ([`REPLY_TIMEOUT`] for start and exec, [`SIGNAL_TIMEOUT`] for
//! a signal). A guest that trickles one byte at a time cannot stretch a request past it:
//! [`Deadline`] gives each read and write only the time that is left. Unix socket paths are
//! reached through `/proc/self/fd/N/NAME` of the state directory, so a long `--root` never
//! exceeds the 108-byte `sun_path` limit.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hull_protocol::{self as protocol, Message, ProtocolError, AGENT_PORT, HOST_HELLO_PORT};

use super::VmError;

/// The VMM's vsock socket, relative to the container's state directory.
pub const VSOCK_SOCKET: &str = "vsock.sock";
/// How long the VMM has to complete a `CONNECT` handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the agent has to answer a start or exec request, connection included.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// Deadline for the Start request: the guest mounts the root, the writable layer disk and
/// brings up eth0 before it answers, which under emulation (the nested harness) can take
/// longer than an exec. Still one bound for the whole request.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the agent has to acknowledge a signal, connection included.
pub const SIGNAL_TIMEOUT: Duration = Duration::from_secs(5);

/// A stream whose reads and writes together must end by a deadline: each call gets the
/// time left as its socket timeout, and fails with `TimedOut` once none is left.
pub struct Deadline<'a> {
    stream: &'a UnixStream,
    at: Instant,
}

impl<'a> Deadline<'a> {
    /// `stream` until `at`.
    pub fn new(stream: &'a UnixStream, at: Instant) -> Self {
        Deadline { stream, at }
    }

    fn left(&self) -> std::io::Result<Duration> {
        let left = self.at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the guest did not answer in time",
            ));
        }
        Ok(left)
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        (&mut &*self.stream).read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        (&mut &*self.stream).write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A state directory held open so its entries can be named by a short path.
pub struct StateDir {
    dir: File,
    path: PathBuf,
}

impl StateDir {
    /// Opens the directory.
    pub fn open(path: &Path) -> Result<StateDir, VmError> {
        let dir = File::open(path)
            .map_err(|e| VmError::io(format!("open state dir {}", path.display()), e))?;
        Ok(StateDir {
            dir,
            path: path.to_path_buf(),
        })
    }

    /// A short path naming `name` inside the directory (valid while `self` lives).
    pub fn short(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}/{name}", self.dir.as_raw_fd()))
    }

    /// The real path of `name` inside the directory.
    pub fn real(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The Unix socket where the guest's connections to host port `port` arrive.
    pub fn guest_port_socket(&self, port: u32) -> String {
        format!("{VSOCK_SOCKET}_{port}")
    }
}

/// Waits for the agent's hello on the boot listener. `vmm_alive` is polled so a VMM that
/// dies during boot ends the wait at once.
pub fn accept_hello(
    listener: &UnixListener,
    timeout: Duration,
    mut vmm_alive: impl FnMut() -> Option<String>,
) -> Result<(UnixStream, String), VmError> {
    listener
        .set_nonblocking(true)
        .map_err(|e| VmError::io("set listener non-blocking", e))?;
    let deadline = Instant::now() + timeout;
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Some(why) = vmm_alive() {
                    return Err(VmError::Boot(why));
                }
                if Instant::now() >= deadline {
                    return Err(VmError::Boot(format!(
                        "the guest agent did not report within {}s (the guest kernel may not \
                         boot on this host's KVM, or boots too slowly; raise \
                         HULL_VM_BOOT_TIMEOUT to wait longer)",
                        timeout.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(VmError::io("accept the agent's connection", e)),
        }
    };
    stream
        .set_nonblocking(false)
        .map_err(|e| VmError::io("configure agent connection", e))?;
    // The whole hello, however the guest spreads its bytes, within the reply timeout.
    let hello = protocol::read_message(&mut Deadline::new(&stream, Instant::now() + REPLY_TIMEOUT));
    match hello {
        Ok(Message::Hello { protocol, kernel }) => {
            if protocol != protocol::PROTOCOL_VERSION {
                return Err(VmError::Protocol(format!(
                    "guest agent speaks protocol {protocol}, hull speaks {}",
                    protocol::PROTOCOL_VERSION
                )));
            }
            // Kept in vm.json and shown by hull: the guest's text, escaped and cut short.
            Ok((stream, crate::sanitize::one_line(&kernel, 200).into_owned()))
        }
        Ok(other) => Err(VmError::Protocol(format!(
            "expected hello, got {}",
            describe(&other)
        ))),
        Err(e) => Err(protocol_error("hello", e)),
    }
}

/// A guest's message as hull may quote it in an error or a log line: escaped, cut short.
pub fn describe(msg: &Message) -> String {
    crate::sanitize::one_line(&format!("{msg:?}"), 200).into_owned()
}

/// Maps a protocol error (a timeout included) to a VmError naming the step.
pub fn protocol_error(step: &str, e: ProtocolError) -> VmError {
    match e {
        ProtocolError::Io(io) if is_timeout(&io) => {
            VmError::Protocol(format!("timed out waiting for the guest agent ({step})"))
        }
        other => VmError::Protocol(format!("{step}: {other}")),
    }
}

/// The boot listener path (`vsock.sock_1024`).
pub fn hello_socket_name() -> String {
    format!("{VSOCK_SOCKET}_{HOST_HELLO_PORT}")
}

/// Opens a new connection to the agent's request port through the VMM; the handshake
/// must end by `deadline` (and within [`CONNECT_TIMEOUT`]).
pub fn connect_agent(dir: &StateDir, deadline: Instant) -> Result<UnixStream, VmError> {
    let path = dir.short(VSOCK_SOCKET);
    let stream = UnixStream::connect(&path).map_err(|e| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
        ) {
            VmError::NotRunning
        } else {
            VmError::io("connect to the VM's vsock socket", e)
        }
    })?;
    let mut handshake = Deadline::new(&stream, deadline.min(Instant::now() + CONNECT_TIMEOUT));
    handshake
        .write_all(format!("CONNECT {AGENT_PORT}\n").as_bytes())
        .map_err(|e| VmError::io("vsock CONNECT", e))?;
    // "OK <port>\n", read byte by byte so no frame data is swallowed; at most 32 bytes.
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match handshake.read(&mut byte) {
            Ok(0) => {
                return Err(VmError::Protocol(
                    "the guest agent refused the connection (VM shutting down?)".into(),
                ))
            }
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => {
                line.push(byte[0]);
                if line.len() > 32 {
                    return Err(VmError::Protocol("overlong vsock handshake reply".into()));
                }
            }
            Err(e) if is_timeout(&e) => {
                return Err(VmError::Protocol(
                    "timed out waiting for the VMM to connect to the guest agent".into(),
                ))
            }
            Err(e) => return Err(VmError::io("vsock handshake", e)),
        }
    }
    if !line.starts_with(b"OK ") {
        return Err(VmError::Protocol(format!(
            "unexpected vsock handshake reply {:?}",
            String::from_utf8_lossy(&line)
        )));
    }
    Ok(stream)
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Sends `msg` and waits for the reply, all of it by `deadline`.
pub fn request(
    stream: &UnixStream,
    msg: &Message,
    step: &str,
    deadline: Instant,
) -> Result<Message, VmError> {
    let mut io = Deadline::new(stream, deadline);
    protocol::write_message(&mut io, msg).map_err(|e| protocol_error(step, e))?;
    protocol::read_message(&mut io).map_err(|e| protocol_error(step, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hull_protocol::{FrameKind, PROTOCOL_VERSION};

    fn listener() -> (tempfile::TempDir, UnixListener, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(hello_socket_name());
        let l = UnixListener::bind(&path).unwrap();
        (dir, l, path)
    }

    /// A fake guest that connects and sends `bytes`.
    fn guest_sends(path: PathBuf, bytes: Vec<u8>) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut s = UnixStream::connect(path).unwrap();
            let _ = s.write_all(&bytes);
            std::thread::sleep(Duration::from_millis(200));
        })
    }

    #[test]
    fn a_good_hello_is_accepted() {
        let (_d, l, path) = listener();
        let mut hello = Vec::new();
        protocol::write_message(
            &mut hello,
            &Message::Hello {
                protocol: PROTOCOL_VERSION,
                kernel: "6.12.1".into(),
            },
        )
        .unwrap();
        let g = guest_sends(path, hello);
        let (_, kernel) = accept_hello(&l, Duration::from_secs(5), || None).unwrap();
        assert_eq!(kernel, "6.12.1");
        g.join().unwrap();
    }

    #[test]
    fn hostile_or_wrong_hellos_are_refused() {
        let mut wrong_version = Vec::new();
        protocol::write_message(
            &mut wrong_version,
            &Message::Hello {
                protocol: PROTOCOL_VERSION + 1,
                kernel: "x".into(),
            },
        )
        .unwrap();
        let mut not_hello = Vec::new();
        protocol::write_message(&mut not_hello, &Message::Exit { code: 0 }).unwrap();
        let mut oversized = vec![PROTOCOL_VERSION, FrameKind::Control as u8, 0, 0];
        oversized.extend_from_slice(&u32::MAX.to_be_bytes());
        let garbage = b"GET / HTTP/1.1\r\n\r\n".to_vec();
        for bytes in [wrong_version, not_hello, oversized, garbage] {
            let (_d, l, path) = listener();
            let g = guest_sends(path, bytes.clone());
            let err = accept_hello(&l, Duration::from_secs(5), || None).unwrap_err();
            assert!(matches!(err, VmError::Protocol(_)), "{bytes:?}: {err}");
            g.join().unwrap();
        }
    }

    #[test]
    fn waiting_for_the_guest_is_bounded() {
        let (_d, l, _path) = listener();
        let start = std::time::Instant::now();
        let err = accept_hello(&l, Duration::from_millis(200), || None).unwrap_err();
        assert!(
            matches!(err, VmError::Boot(ref m) if m.contains("did not report")),
            "{err}"
        );
        // It waited its whole timeout (how much longer a busy host took is not asserted:
        // the error above says the deadline, not a closed socket, ended the wait).
        assert!(start.elapsed() >= Duration::from_millis(200));
        // A VMM that dies ends the wait at once with its reason.
        let err =
            accept_hello(&l, Duration::from_secs(60), || Some("vmm died".into())).unwrap_err();
        assert!(
            matches!(err, VmError::Boot(ref m) if m == "vmm died"),
            "{err}"
        );
    }

    #[test]
    fn a_silent_guest_after_connecting_times_out() {
        let (_d, l, path) = listener();
        let g = std::thread::spawn(move || {
            let _s = UnixStream::connect(path).unwrap();
            // Connected, then says nothing for longer than the reply timeout.
            std::thread::sleep(REPLY_TIMEOUT + Duration::from_secs(1));
        });
        let err = accept_hello(&l, Duration::from_secs(5), || None).unwrap_err();
        assert!(
            matches!(err, VmError::Protocol(ref m) if m.contains("timed out")),
            "{err}"
        );
        g.join().unwrap();
    }

    /// Writes `bytes` one at a time, `gap` apart (a guest stretching its answer).
    fn trickle(mut to: &UnixStream, bytes: &[u8], gap: Duration) {
        for b in bytes {
            std::thread::sleep(gap);
            if to.write_all(&[*b]).is_err() {
                return;
            }
        }
    }

    /// A guest that answers a request one byte every 150 ms: each read alone is quick, the
    /// whole answer is not. The request ends at its deadline, not at the guest's pace.
    #[test]
    fn a_guest_trickling_its_reply_cannot_stretch_a_request() {
        let mut reply = Vec::new();
        protocol::write_message(&mut reply, &Message::Ok).unwrap();
        assert!(
            reply.len() >= 6,
            "the reply must take longer than the deadline"
        );
        for (deadline, should_finish) in [
            (Duration::from_millis(400), false),
            (Duration::from_secs(30), true),
        ] {
            let (host, guest) = UnixStream::pair().unwrap();
            let bytes = reply.clone();
            let g = std::thread::spawn(move || {
                let _ = protocol::read_message(&mut &guest);
                trickle(&guest, &bytes, Duration::from_millis(150));
            });
            let got = request(
                &host,
                &Message::Signal { signal: 15 },
                "signal",
                Instant::now() + deadline,
            );
            if should_finish {
                assert!(matches!(got, Ok(Message::Ok)), "{got:?}");
            } else {
                assert!(
                    matches!(got, Err(VmError::Protocol(ref m)) if m.contains("timed out")),
                    "{got:?}"
                );
            }
            drop(host);
            g.join().unwrap();
        }
    }

    /// The same for the VMM's CONNECT handshake.
    #[test]
    fn a_trickled_connect_handshake_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let l = UnixListener::bind(dir.path().join(VSOCK_SOCKET)).unwrap();
        let vmm = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut line = [0u8; 32];
            let _ = (&s).read(&mut line);
            trickle(&s, b"OK 1073741824\n", Duration::from_millis(150));
        });
        let state = StateDir::open(dir.path()).unwrap();
        let err = connect_agent(&state, Instant::now() + Duration::from_millis(400)).unwrap_err();
        assert!(
            matches!(err, VmError::Protocol(ref m) if m.contains("timed out")),
            "{err}"
        );
        vmm.join().unwrap();
    }
}
