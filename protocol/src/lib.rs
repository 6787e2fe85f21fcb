//! The host/guest protocol: framed messages over vsock streams.
//!
//! Every frame is an 8-byte header followed by a payload of at most [`MAX_PAYLOAD`] bytes:
//!
//! ```text
//!  0         1         2         4                     8
//!  +---------+---------+---------+---------------------+----------------------+
//!  | version | kind    | zero    | payload length (BE) | payload ...          |
//!  +---------+---------+---------+---------------------+----------------------+
//! ```
//!
//! `kind` is [`FrameKind`]: a JSON control [`Message`] or a chunk of stdin/stdout/stderr.
//! An empty stdin chunk means end of input. Both sides reject a frame with an unknown version
//! or kind, a non-zero reserved field, or a length above the bound, before reading the
//! payload, so a hostile peer cannot make the other side allocate more than one bounded
//! frame. See docs/protocol.md for the connection flow.

#[doc(hidden)]
pub mod fuzzing;

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// Protocol version carried in every frame header and in [`Message::Hello`].
pub const PROTOCOL_VERSION: u8 = 1;
/// Size of the frame header in bytes.
pub const HEADER_LEN: usize = 8;
/// Largest payload accepted in one frame (control or data).
pub const MAX_PAYLOAD: usize = 256 * 1024;
/// Largest stdio chunk a sender puts in one data frame.
pub const MAX_DATA_CHUNK: usize = 32 * 1024;

/// Vsock port on the host (guest connects to CID 2) where the agent says hello at boot;
/// the host's VMM exposes it as the Unix socket `<vsock socket>_1024`.
pub const HOST_HELLO_PORT: u32 = 1024;
/// Vsock port the agent listens on for further requests (exec, signal).
pub const AGENT_PORT: u32 = 1025;

/// Upper bounds on what a [`ProcessSpec`] may hold; checked on both sides.
pub const MAX_ARGS: usize = 4096;
/// Maximum number of environment entries.
pub const MAX_ENV: usize = 4096;
/// Maximum length of one string in a spec (argument, env entry, path, name).
pub const MAX_STRING: usize = 64 * 1024;
/// Most bytes the arguments and environment of one process take together (each string
/// counted with its NUL, as execve counts them). Far above what images use, far below
/// what would make a container's record or its start message unmanageable.
pub const MAX_COMMAND_BYTES: usize = 128 * 1024;
/// Most bytes the arguments and environment take JSON-encoded (control characters are
/// escaped to six bytes each): what a container record and the start frame carry.
pub const MAX_COMMAND_JSON: usize = 192 * 1024;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// A JSON-encoded [`Message`].
    Control = 1,
    /// Bytes for the process's stdin (host to guest); empty means EOF.
    Stdin = 2,
    /// Bytes the process wrote to stdout (or the pty, with a tty).
    Stdout = 3,
    /// Bytes the process wrote to stderr.
    Stderr = 4,
}

impl FrameKind {
    fn from_byte(b: u8) -> Option<FrameKind> {
        match b {
            1 => Some(FrameKind::Control),
            2 => Some(FrameKind::Stdin),
            3 => Some(FrameKind::Stdout),
            4 => Some(FrameKind::Stderr),
            _ => None,
        }
    }
}

/// Errors reading or writing frames.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The underlying stream failed (includes timeouts: `WouldBlock`/`TimedOut`).
    #[error("vsock stream: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the stream at a frame boundary.
    #[error("peer closed the connection")]
    Closed,
    /// The peer closed the stream in the middle of a frame.
    #[error("truncated frame: stream ended after {got} of {want} bytes")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes expected.
        want: usize,
    },
    /// Unknown protocol version in a frame header.
    #[error("unsupported protocol version {0} (this side speaks {PROTOCOL_VERSION})")]
    Version(u8),
    /// Unknown frame kind.
    #[error("unknown frame kind {0}")]
    Kind(u8),
    /// Reserved header bytes were not zero.
    #[error("malformed frame header (reserved bytes {0:#06x})")]
    Reserved(u16),
    /// The announced payload is larger than [`MAX_PAYLOAD`].
    #[error("frame of {0} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    TooLarge(usize),
    /// A control payload was not a valid message.
    #[error("bad control message: {0}")]
    Json(#[from] serde_json::Error),
    /// A message was valid JSON but broke a protocol rule.
    #[error("protocol violation: {0}")]
    Violation(String),
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A control message.
    Control(Message),
    /// Stdin bytes (empty = EOF).
    Stdin(Vec<u8>),
    /// Stdout bytes.
    Stdout(Vec<u8>),
    /// Stderr bytes.
    Stderr(Vec<u8>),
}

/// Who a process runs as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UserSpec {
    /// `user`, `uid`, `user:group` or `uid:gid`, resolved against the image's
    /// /etc/passwd and /etc/group in the guest. Empty means root.
    pub user: String,
}

/// Resource limits applied with cgroup2 inside the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Limits {
    /// memory.max in bytes.
    pub memory_bytes: Option<u64>,
    /// CPU quota in thousandths of a CPU (cpu.max).
    pub cpu_millis: Option<u64>,
    /// pids.max.
    pub pids: Option<u64>,
}

/// Everything the agent needs to start one process inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProcessSpec {
    /// argv; `args[0]` is resolved against PATH from `env` inside the container root.
    pub args: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// Working directory inside the container (absolute).
    pub cwd: String,
    /// User and group.
    pub user: UserSpec,
    /// Allocate a pty for the process (stdout frames then carry the terminal output).
    pub tty: bool,
    /// Keep stdin open (send stdin frames); otherwise stdin is /dev/null.
    pub stdin: bool,
    /// Capability names kept (e.g. `CAP_CHOWN`); all others are dropped.
    pub capabilities: Vec<String>,
    /// Set no_new_privs before exec.
    pub no_new_privs: bool,
    /// Load the default seccomp filter before exec.
    pub seccomp: bool,
    /// Initial terminal size (rows, cols) when `tty`.
    pub tty_size: Option<(u16, u16)>,
}

/// Settings for the container as a whole (sent once, with the main process).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ContainerSpec {
    /// Hostname inside the container.
    pub hostname: String,
    /// cgroup limits.
    pub limits: Limits,
    /// Mount the root read-only (no writable layer).
    pub readonly_rootfs: bool,
    /// The main process.
    pub process: ProcessSpec,
    /// The container's network: eth0 and the /etc files. `None`: a network namespace of
    /// its own with loopback only, and the image's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Box<Network>>,
}

/// What the host's network setup made for the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Network {
    /// eth0 (`--network bridge`): the agent configures the guest's eth0 so, and the
    /// container shares the guest's network namespace. `None` (`--network none`): the
    /// container gets a network namespace of its own with loopback only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<Interface>,
    /// Files bound read-only into the container (its /etc/resolv.conf, /etc/hosts,
    /// /etc/hostname, as the host wrote them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ContainerFile>,
}

/// eth0 as the host's network setup made it (the guest takes the veth's identity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// MAC address `aa:bb:cc:dd:ee:ff` (what the virtio-net device reports too).
    pub mac: String,
    /// IPv4 address.
    pub address: std::net::Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
    /// Default gateway.
    pub gateway: std::net::Ipv4Addr,
    /// MTU.
    pub mtu: u32,
}

/// A file the agent puts in place in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerFile {
    /// Absolute path in the container; one of [`CONTAINER_FILES`].
    pub path: String,
    /// Contents.
    pub contents: String,
}

/// The only paths [`ContainerFile`] may name.
pub const CONTAINER_FILES: [&str; 3] = ["/etc/resolv.conf", "/etc/hosts", "/etc/hostname"];

impl Network {
    /// Checks the bounds of every field.
    fn validate(&self) -> Result<(), ProtocolError> {
        if let Some(i) = &self.interface {
            let mac_ok = i.mac.len() == 17
                && i.mac
                    .split(':')
                    .all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()));
            if !mac_ok {
                return Err(ProtocolError::Violation(format!("bad MAC {:?}", i.mac)));
            }
            if i.prefix == 0 || i.prefix > 30 || !(68..=65_535).contains(&i.mtu) {
                return Err(ProtocolError::Violation(format!(
                    "bad interface prefix /{} or MTU {}",
                    i.prefix, i.mtu
                )));
            }
        }
        if self.files.len() > CONTAINER_FILES.len() {
            return Err(ProtocolError::Violation("too many files".into()));
        }
        for f in &self.files {
            if !CONTAINER_FILES.contains(&f.path.as_str()) {
                return Err(ProtocolError::Violation(format!(
                    "file {:?} is not one the host may set",
                    f.path
                )));
            }
            check_str("file contents", &f.contents)?;
        }
        Ok(())
    }
}

/// Control messages. Host-to-guest and guest-to-host share one enum so either side can
/// decode (and reject) anything it receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Message {
    /// Guest to host, first frame on the boot connection.
    Hello {
        /// The agent's protocol version.
        protocol: u8,
        /// `uname -r` of the guest kernel.
        kernel: String,
    },
    /// Host to guest on the boot connection: set up and start the container.
    Start(ContainerSpec),
    /// Host to guest on a new agent connection: run another process in the container.
    Exec(ProcessSpec),
    /// Host to guest: deliver a signal to the connection's process (or, on a fresh agent
    /// connection, to the container's main process).
    Signal {
        /// Signal number.
        signal: i32,
    },
    /// Host to guest: the terminal was resized.
    Resize {
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
    /// Guest to host: the process was started.
    Started {
        /// Its PID inside the guest.
        pid: i32,
    },
    /// Guest to host: the process ended (after all its output was sent).
    Exit {
        /// Exit status as a shell reports it (128+N for signal N).
        code: i32,
    },
    /// Guest to host: the request failed.
    Error {
        /// What went wrong.
        message: String,
    },
    /// Generic acknowledgement (e.g. of a Signal request).
    Ok,
}

fn check_str(what: &str, s: &str) -> Result<(), ProtocolError> {
    if s.len() > MAX_STRING {
        return Err(ProtocolError::Violation(format!(
            "{what} is {} bytes long (limit {MAX_STRING})",
            s.len()
        )));
    }
    if s.contains('\0') {
        return Err(ProtocolError::Violation(format!(
            "{what} contains a NUL byte"
        )));
    }
    Ok(())
}

/// Checks a process's arguments and environment against the bounds above, the same ones
/// on both sides of the protocol and when a container is created. The error names the
/// limit that was crossed (and never quotes the oversized text).
pub fn check_command(args: &[String], env: &[String]) -> Result<(), String> {
    if args.is_empty() {
        return Err("empty command".into());
    }
    if args.len() > MAX_ARGS {
        return Err(format!(
            "{} arguments: at most {MAX_ARGS} are allowed",
            args.len()
        ));
    }
    if env.len() > MAX_ENV {
        return Err(format!(
            "{} environment variables: at most {MAX_ENV} are allowed",
            env.len()
        ));
    }
    let mut total = 0usize;
    for (what, list) in [("argument", args), ("environment variable", env)] {
        for (i, s) in list.iter().enumerate() {
            if s.len() > MAX_STRING {
                return Err(format!(
                    "{what} {} is {} bytes long: at most {MAX_STRING} bytes are allowed",
                    i + 1,
                    s.len()
                ));
            }
            if s.contains('\0') {
                return Err(format!("{what} {} contains a NUL byte", i + 1));
            }
            total += s.len() + 1;
        }
    }
    if let Some(i) = env.iter().position(|e| !e.contains('=')) {
        return Err(format!("environment variable {} is not KEY=VALUE", i + 1));
    }
    if total > MAX_COMMAND_BYTES {
        return Err(format!(
            "the command and its environment take {total} bytes: at most {MAX_COMMAND_BYTES} \
             bytes are allowed"
        ));
    }
    let encoded = serde_json::to_vec(&(args, env)).map_or(usize::MAX, |v| v.len());
    if encoded > MAX_COMMAND_JSON {
        return Err(format!(
            "the command and its environment take {encoded} bytes encoded (control \
             characters are escaped): at most {MAX_COMMAND_JSON} bytes are allowed"
        ));
    }
    Ok(())
}

impl ProcessSpec {
    /// Checks the bounds every receiver relies on.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        check_command(&self.args, &self.env).map_err(ProtocolError::Violation)?;
        check_str("cwd", &self.cwd)?;
        if !self.cwd.is_empty() && !self.cwd.starts_with('/') {
            return Err(ProtocolError::Violation(format!(
                "cwd {:?} is not absolute",
                self.cwd
            )));
        }
        check_str("user", &self.user.user)?;
        for c in &self.capabilities {
            check_str("capability", c)?;
        }
        Ok(())
    }
}

impl Message {
    /// Checks a message's contents against the protocol bounds.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        match self {
            Message::Hello { kernel, .. } => {
                if kernel.len() > 256 || kernel.chars().any(|c| c.is_control()) {
                    return Err(ProtocolError::Violation(
                        "kernel release too long or has control characters".into(),
                    ));
                }
                Ok(())
            }
            Message::Start(c) => {
                check_str("hostname", &c.hostname)?;
                if c.hostname.len() > 64 {
                    return Err(ProtocolError::Violation("hostname longer than 64".into()));
                }
                if let Some(n) = &c.network {
                    n.validate()?;
                }
                c.process.validate()
            }
            Message::Exec(p) => p.validate(),
            Message::Signal { signal } => {
                if !(1..=64).contains(signal) {
                    return Err(ProtocolError::Violation(format!(
                        "signal {signal} out of range"
                    )));
                }
                Ok(())
            }
            Message::Exit { code } => {
                if !(0..=255).contains(code) {
                    return Err(ProtocolError::Violation(format!(
                        "exit code {code} out of range"
                    )));
                }
                Ok(())
            }
            Message::Error { message } => check_str("error message", message),
            Message::Resize { .. } | Message::Started { .. } | Message::Ok => Ok(()),
        }
    }
}

/// Encodes one frame header.
fn header(kind: FrameKind, len: usize) -> Result<[u8; HEADER_LEN], ProtocolError> {
    if len > MAX_PAYLOAD {
        return Err(ProtocolError::TooLarge(len));
    }
    let mut h = [0u8; HEADER_LEN];
    h[0] = PROTOCOL_VERSION;
    h[1] = kind as u8;
    h[4..8].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(h)
}

/// Writes one raw frame (header + payload) in a single buffer.
pub fn write_raw(w: &mut impl Write, kind: FrameKind, payload: &[u8]) -> Result<(), ProtocolError> {
    let h = header(kind, payload.len())?;
    let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
    buf.extend_from_slice(&h);
    buf.extend_from_slice(payload);
    w.write_all(&buf)?;
    Ok(())
}

/// Writes a control message.
pub fn write_message(w: &mut impl Write, msg: &Message) -> Result<(), ProtocolError> {
    let payload = serde_json::to_vec(msg)?;
    write_raw(w, FrameKind::Control, &payload)
}

/// Writes a frame.
pub fn write_frame(w: &mut impl Write, frame: &Frame) -> Result<(), ProtocolError> {
    match frame {
        Frame::Control(m) => write_message(w, m),
        Frame::Stdin(d) => write_raw(w, FrameKind::Stdin, d),
        Frame::Stdout(d) => write_raw(w, FrameKind::Stdout, d),
        Frame::Stderr(d) => write_raw(w, FrameKind::Stderr, d),
    }
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` if the stream ended before the first byte.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<bool, ProtocolError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(ProtocolError::Truncated {
                    got,
                    want: buf.len(),
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// Decodes and checks a frame header; returns the kind and payload length.
pub fn parse_header(h: &[u8; HEADER_LEN]) -> Result<(FrameKind, usize), ProtocolError> {
    if h[0] != PROTOCOL_VERSION {
        return Err(ProtocolError::Version(h[0]));
    }
    let kind = FrameKind::from_byte(h[1]).ok_or(ProtocolError::Kind(h[1]))?;
    let reserved = u16::from_be_bytes([h[2], h[3]]);
    if reserved != 0 {
        return Err(ProtocolError::Reserved(reserved));
    }
    let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(ProtocolError::TooLarge(len));
    }
    Ok((kind, len))
}

/// Reads one frame. Control messages are decoded and validated.
///
/// Blocks per the stream's read timeout; a timeout surfaces as [`ProtocolError::Io`].
pub fn read_frame(r: &mut impl Read) -> Result<Frame, ProtocolError> {
    let mut h = [0u8; HEADER_LEN];
    if !read_full(r, &mut h)? {
        return Err(ProtocolError::Closed);
    }
    let (kind, len) = parse_header(&h)?;
    let mut payload = vec![0u8; len];
    if len > 0 && !read_full(r, &mut payload)? {
        return Err(ProtocolError::Truncated { got: 0, want: len });
    }
    Ok(match kind {
        FrameKind::Control => {
            let msg: Message = serde_json::from_slice(&payload)?;
            msg.validate()?;
            Frame::Control(msg)
        }
        FrameKind::Stdin => Frame::Stdin(payload),
        FrameKind::Stdout => Frame::Stdout(payload),
        FrameKind::Stderr => Frame::Stderr(payload),
    })
}

/// Reads one frame that must be a control message.
pub fn read_message(r: &mut impl Read) -> Result<Message, ProtocolError> {
    match read_frame(r)? {
        Frame::Control(m) => Ok(m),
        other => Err(ProtocolError::Violation(format!(
            "expected a control message, got {} data",
            match other {
                Frame::Stdin(_) => "stdin",
                Frame::Stdout(_) => "stdout",
                _ => "stderr",
            }
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn spec() -> ProcessSpec {
        ProcessSpec {
            args: vec!["/bin/echo".into(), "hi".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            ..Default::default()
        }
    }

    fn roundtrip(f: Frame) -> Frame {
        let mut buf = Vec::new();
        write_frame(&mut buf, &f).unwrap();
        read_frame(&mut Cursor::new(buf)).unwrap()
    }

    /// What an image or `-e` can put in a command is bounded, with the limit named.
    #[test]
    fn commands_are_bounded() {
        let args = vec!["sh".to_string()];
        let env = |n: usize, len: usize| -> Vec<String> {
            (0..n)
                .map(|i| format!("K{i}={}", "v".repeat(len)))
                .collect()
        };
        assert!(check_command(&args, &env(10, 100)).is_ok());
        let err = check_command(&args, &env(40, 4000)).unwrap_err();
        assert!(err.contains("131072"), "{err}");
        let err = check_command(&args, &env(MAX_ENV + 1, 1)).unwrap_err();
        assert!(err.contains("4096"), "{err}");
        let err = check_command(&args, &env(1, MAX_STRING)).unwrap_err();
        assert!(err.contains("65536"), "{err}");
        // Under the raw limit, over the encoded one: control characters expand six-fold.
        let controls = vec![format!("K={}", "\u{1}".repeat(60_000))];
        let err = check_command(&args, &controls).unwrap_err();
        assert!(err.contains("encoded") && err.contains("196608"), "{err}");
        assert!(check_command(&[], &[]).is_err());
        assert!(check_command(&args, &["NOEQUALS".into()]).is_err());
    }

    #[test]
    fn frames_round_trip() {
        let start = Frame::Control(Message::Start(ContainerSpec {
            hostname: "box".into(),
            process: spec(),
            ..Default::default()
        }));
        assert_eq!(roundtrip(start.clone()), start);
        assert_eq!(
            roundtrip(Frame::Stdout(b"x".to_vec())),
            Frame::Stdout(b"x".to_vec())
        );
        assert_eq!(roundtrip(Frame::Stdin(vec![])), Frame::Stdin(vec![]));
        let exit = Frame::Control(Message::Exit { code: 3 });
        assert_eq!(roundtrip(exit.clone()), exit);
    }

    #[test]
    fn network_fields_round_trip_and_are_bounded() {
        let good = ContainerSpec {
            hostname: "box".into(),
            process: spec(),
            network: Some(Box::new(Network {
                interface: Some(Interface {
                    mac: "02:42:ac:11:00:02".into(),
                    address: "10.87.0.2".parse().unwrap(),
                    prefix: 16,
                    gateway: "10.87.0.1".parse().unwrap(),
                    mtu: 1500,
                }),
                files: vec![ContainerFile {
                    path: "/etc/hosts".into(),
                    contents: "127.0.0.1\tlocalhost\n".into(),
                }],
            })),
            ..Default::default()
        };
        let start = Frame::Control(Message::Start(good.clone()));
        assert_eq!(roundtrip(start.clone()), start);
        Message::Start(good.clone()).validate().unwrap();
        fn net(s: &mut ContainerSpec) -> &mut Network {
            s.network.as_mut().unwrap()
        }
        let mut bad = good.clone();
        net(&mut bad).files[0].path = "/etc/shadow".into();
        assert!(
            Message::Start(bad).validate().is_err(),
            "only the three files"
        );
        let mut bad = good.clone();
        net(&mut bad).interface.as_mut().unwrap().mac = "02:42:ac:11:00".into();
        assert!(Message::Start(bad).validate().is_err());
        let mut bad = good;
        net(&mut bad).interface.as_mut().unwrap().mtu = 70_000;
        assert!(Message::Start(bad).validate().is_err());
    }

    #[test]
    fn several_frames_in_one_stream_read_in_order() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &Frame::Stdout(b"a".to_vec())).unwrap();
        write_frame(&mut buf, &Frame::Stderr(b"b".to_vec())).unwrap();
        write_message(&mut buf, &Message::Exit { code: 0 }).unwrap();
        let mut c = Cursor::new(buf);
        assert_eq!(read_frame(&mut c).unwrap(), Frame::Stdout(b"a".to_vec()));
        assert_eq!(read_frame(&mut c).unwrap(), Frame::Stderr(b"b".to_vec()));
        assert_eq!(read_message(&mut c).unwrap(), Message::Exit { code: 0 });
        assert!(matches!(read_frame(&mut c), Err(ProtocolError::Closed)));
    }

    #[test]
    fn oversized_frame_is_rejected_before_reading_payload() {
        let mut h = [0u8; HEADER_LEN];
        h[0] = PROTOCOL_VERSION;
        h[1] = FrameKind::Stdout as u8;
        h[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        // No payload follows: the reader must fail on the header alone.
        let err = read_frame(&mut Cursor::new(h.to_vec())).unwrap_err();
        assert!(
            matches!(err, ProtocolError::TooLarge(n) if n == u32::MAX as usize),
            "{err}"
        );
        // And the writer refuses to produce one.
        let big = vec![0u8; MAX_PAYLOAD + 1];
        assert!(matches!(
            write_raw(&mut Vec::new(), FrameKind::Stdout, &big),
            Err(ProtocolError::TooLarge(_))
        ));
    }

    #[test]
    fn truncated_frames_are_errors_not_hangs() {
        let mut buf = Vec::new();
        write_message(&mut buf, &Message::Exit { code: 1 }).unwrap();
        // Cut inside the header.
        let err = read_frame(&mut Cursor::new(buf[..5].to_vec())).unwrap_err();
        assert!(
            matches!(err, ProtocolError::Truncated { got: 5, want: 8 }),
            "{err}"
        );
        // Cut inside the payload.
        let cut = buf.len() - 2;
        let err = read_frame(&mut Cursor::new(buf[..cut].to_vec())).unwrap_err();
        assert!(matches!(err, ProtocolError::Truncated { .. }), "{err}");
    }

    #[test]
    fn unknown_version_kind_and_reserved_bits_are_rejected() {
        let mut buf = Vec::new();
        write_raw(&mut buf, FrameKind::Stdout, b"x").unwrap();
        let mut v = buf.clone();
        v[0] = 2;
        assert!(matches!(
            read_frame(&mut Cursor::new(v)),
            Err(ProtocolError::Version(2))
        ));
        let mut k = buf.clone();
        k[1] = 99;
        assert!(matches!(
            read_frame(&mut Cursor::new(k)),
            Err(ProtocolError::Kind(99))
        ));
        let mut r = buf;
        r[3] = 1;
        assert!(matches!(
            read_frame(&mut Cursor::new(r)),
            Err(ProtocolError::Reserved(1))
        ));
    }

    #[test]
    fn bad_json_and_unknown_messages_are_rejected() {
        for payload in [
            &b"{not json"[..],
            br#"{"type":"format_host_disk"}"#,
            br#"{"type":"exit","code":0,"path":"/etc/shadow"}"#,
            br#"{"type":"exit","code":"zero"}"#,
            b"",
        ] {
            let mut buf = Vec::new();
            write_raw(&mut buf, FrameKind::Control, payload).unwrap();
            let err = read_frame(&mut Cursor::new(buf)).unwrap_err();
            assert!(matches!(err, ProtocolError::Json(_)), "{payload:?}: {err}");
        }
    }

    #[test]
    fn out_of_range_values_from_the_guest_are_violations() {
        for msg in [
            Message::Exit { code: 256 },
            Message::Exit { code: -1 },
            Message::Signal { signal: 0 },
            Message::Hello {
                protocol: 1,
                kernel: "6.12\n\x1b[2J".into(),
            },
            Message::Hello {
                protocol: 1,
                kernel: "x".repeat(1000),
            },
            Message::Exec(ProcessSpec::default()),
            Message::Exec(ProcessSpec {
                env: vec!["NOEQUALS".into()],
                ..spec()
            }),
            Message::Exec(ProcessSpec {
                cwd: "relative".into(),
                ..spec()
            }),
            Message::Exec(ProcessSpec {
                args: vec!["a\0b".into()],
                ..spec()
            }),
        ] {
            let mut buf = Vec::new();
            write_message(&mut buf, &msg).unwrap();
            let err = read_frame(&mut Cursor::new(buf)).unwrap_err();
            assert!(matches!(err, ProtocolError::Violation(_)), "{msg:?}: {err}");
        }
    }

    #[test]
    fn data_where_a_message_is_expected_is_a_violation() {
        let mut buf = Vec::new();
        write_raw(&mut buf, FrameKind::Stdout, b"junk").unwrap();
        assert!(matches!(
            read_message(&mut Cursor::new(buf)),
            Err(ProtocolError::Violation(_))
        ));
    }
}
