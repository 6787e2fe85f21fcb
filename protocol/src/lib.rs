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

pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod requests;

pub use error::WireError;
pub use requests::{
    ContainerFile, ContainerSpec, ExecSpec, Interface, Network, StdioSpec, CONTAINER_FILES,
};

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// Protocol version carried in every frame header and in [`Message::Hello`].
pub const PROTOCOL_VERSION: u8 = 1;
/// Size of the frame header in bytes.
pub const HEADER_LEN: usize = 8;
/// Largest payload accepted in one frame (control or data), except a request's.
pub const MAX_PAYLOAD: usize = 256 * 1024;
/// Largest payload of a request from the host (`Start`, `Exec`): a container's whole OCI
/// spec (its command and environment up to [`MAX_COMMAND_JSON`], the seccomp profile,
/// mounts, limits) and the network's /etc files. Only the agent reads frames this large,
/// and only as the first frame of a connection; the host never accepts more than
/// [`MAX_PAYLOAD`] from the guest.
pub const MAX_REQUEST_PAYLOAD: usize = 1024 * 1024;
/// Largest stdio chunk a sender puts in one data frame.
pub const MAX_DATA_CHUNK: usize = 32 * 1024;

/// Vsock port on the host (guest connects to CID 2) where the agent says hello at boot;
/// the host's VMM exposes it as the Unix socket `<vsock socket>_1024`.
pub const HOST_HELLO_PORT: u32 = 1024;
/// Vsock port the agent listens on for further requests (exec, signal).
pub const AGENT_PORT: u32 = 1025;

/// Upper bounds on what a process's command may hold; checked on both sides.
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
    /// A request (the container's spec, an exec) is larger than [`MAX_REQUEST_PAYLOAD`].
    #[error(
        "the {what} request takes {bytes} bytes encoded: at most {MAX_REQUEST_PAYLOAD} bytes \
         can be sent to the guest agent (the container's spec is too large)"
    )]
    RequestTooLarge {
        /// `start` or `exec`.
        what: &'static str,
        /// Its encoded size.
        bytes: usize,
    },
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

/// Control messages. Host-to-guest and guest-to-host share one enum so either side can
/// decode (and reject) anything it receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    Exec(ExecSpec),
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
    /// Guest to host: the request failed (the executor's typed error, see [`error`]).
    Error(WireError),
    /// Generic acknowledgement (e.g. of a Signal request).
    Ok,
}

pub(crate) fn check_str(what: &str, s: &str) -> Result<(), ProtocolError> {
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
            Message::Start(c) => c.validate(),
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
            Message::Error(e) => check_str("error detail", &e.detail),
            Message::Resize { .. } | Message::Started { .. } | Message::Ok => Ok(()),
        }
    }
}

/// Encodes one frame header.
fn header(kind: FrameKind, len: usize) -> Result<[u8; HEADER_LEN], ProtocolError> {
    if len > MAX_REQUEST_PAYLOAD || (kind != FrameKind::Control && len > MAX_PAYLOAD) {
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

/// Writes a control message: a request (`Start`, `Exec`) of at most
/// [`MAX_REQUEST_PAYLOAD`] bytes, anything else of at most [`MAX_PAYLOAD`].
pub fn write_message(w: &mut impl Write, msg: &Message) -> Result<(), ProtocolError> {
    let payload = serde_json::to_vec(msg)?;
    let request = match msg {
        Message::Start(_) => Some("start"),
        Message::Exec(_) => Some("exec"),
        _ => None,
    };
    match request {
        Some(what) if payload.len() > MAX_REQUEST_PAYLOAD => {
            return Err(ProtocolError::RequestTooLarge {
                what,
                bytes: payload.len(),
            })
        }
        None if payload.len() > MAX_PAYLOAD => return Err(ProtocolError::TooLarge(payload.len())),
        _ => {}
    }
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
    parse_header_up_to(h, MAX_PAYLOAD)
}

/// [`parse_header`] allowing control payloads up to `control_limit` bytes.
fn parse_header_up_to(
    h: &[u8; HEADER_LEN],
    control_limit: usize,
) -> Result<(FrameKind, usize), ProtocolError> {
    if h[0] != PROTOCOL_VERSION {
        return Err(ProtocolError::Version(h[0]));
    }
    let kind = FrameKind::from_byte(h[1]).ok_or(ProtocolError::Kind(h[1]))?;
    let reserved = u16::from_be_bytes([h[2], h[3]]);
    if reserved != 0 {
        return Err(ProtocolError::Reserved(reserved));
    }
    let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
    let limit = match kind {
        FrameKind::Control => control_limit,
        _ => MAX_PAYLOAD,
    };
    if len > limit {
        return Err(if limit > MAX_PAYLOAD {
            ProtocolError::RequestTooLarge {
                what: "incoming",
                bytes: len,
            }
        } else {
            ProtocolError::TooLarge(len)
        });
    }
    Ok((kind, len))
}

/// Reads one frame. Control messages are decoded and validated.
///
/// Blocks per the stream's read timeout; a timeout surfaces as [`ProtocolError::Io`].
pub fn read_frame(r: &mut impl Read) -> Result<Frame, ProtocolError> {
    read_frame_up_to(r, MAX_PAYLOAD)
}

fn read_frame_up_to(r: &mut impl Read, control_limit: usize) -> Result<Frame, ProtocolError> {
    let mut h = [0u8; HEADER_LEN];
    if !read_full(r, &mut h)? {
        return Err(ProtocolError::Closed);
    }
    let (kind, len) = parse_header_up_to(&h, control_limit)?;
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
    control(read_frame(r)?)
}

/// The agent's read of a request from the host (the first frame of a connection): a
/// control message of up to [`MAX_REQUEST_PAYLOAD`] bytes.
pub fn read_request(r: &mut impl Read) -> Result<Message, ProtocolError> {
    control(read_frame_up_to(r, MAX_REQUEST_PAYLOAD)?)
}

fn control(frame: Frame) -> Result<Message, ProtocolError> {
    match frame {
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

    fn process() -> oci_spec::runtime::Process {
        let mut p = oci_spec::runtime::Process::default();
        p.set_args(Some(vec!["/bin/echo".into(), "hi".into()]));
        p.set_env(Some(vec!["PATH=/bin".into()]));
        p
    }

    fn container() -> ContainerSpec {
        let mut spec = oci_spec::runtime::Spec::default();
        spec.set_hostname(Some("box".into()));
        spec.set_process(Some(process()));
        ContainerSpec {
            spec: Box::new(spec),
            stdio: StdioSpec::default(),
            network: None,
        }
    }

    fn exec(p: oci_spec::runtime::Process) -> Message {
        Message::Exec(ExecSpec {
            process: Box::new(p),
            user: None,
            stdio: StdioSpec::default(),
        })
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
        let start = Frame::Control(Message::Start(container()));
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
            ..container()
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

    /// A container's spec may be larger than any frame the guest may send, up to its own
    /// named bound; only the agent's request read accepts it.
    #[test]
    fn requests_have_their_own_bound_and_a_named_error() {
        let mut big = container();
        let mut notes = std::collections::HashMap::new();
        notes.insert("k".to_string(), "v".repeat(MAX_PAYLOAD));
        big.spec.set_annotations(Some(notes));
        let mut buf = Vec::new();
        write_message(&mut buf, &Message::Start(big.clone())).unwrap();
        assert!(buf.len() > MAX_PAYLOAD);
        assert_eq!(
            read_request(&mut Cursor::new(buf.clone())).unwrap(),
            Message::Start(big.clone())
        );
        // The host reads the guest's frames with the ordinary bound.
        assert!(matches!(
            read_message(&mut Cursor::new(buf)),
            Err(ProtocolError::TooLarge(_))
        ));
        let mut huge = big;
        let mut notes = std::collections::HashMap::new();
        notes.insert("k".to_string(), "v".repeat(MAX_REQUEST_PAYLOAD));
        huge.spec.set_annotations(Some(notes));
        let err = write_message(&mut Vec::new(), &Message::Start(huge)).unwrap_err();
        assert!(
            matches!(err, ProtocolError::RequestTooLarge { what: "start", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("spec is too large"), "{err}");
        let mut h = [0u8; HEADER_LEN];
        h[0] = PROTOCOL_VERSION;
        h[1] = FrameKind::Control as u8;
        h[4..8].copy_from_slice(&(MAX_REQUEST_PAYLOAD as u32 + 1).to_be_bytes());
        assert!(matches!(
            read_request(&mut Cursor::new(h.to_vec())),
            Err(ProtocolError::RequestTooLarge { .. })
        ));
        // Data frames keep the ordinary bound even there.
        h[1] = FrameKind::Stdin as u8;
        h[4..8].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_be_bytes());
        assert!(matches!(
            read_request(&mut Cursor::new(h.to_vec())),
            Err(ProtocolError::TooLarge(_))
        ));
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
            {
                let mut p = process();
                p.set_args(None);
                exec(p)
            },
            {
                let mut p = process();
                p.set_env(Some(vec!["NOEQUALS".into()]));
                exec(p)
            },
            {
                let mut p = process();
                p.set_cwd("relative".into());
                exec(p)
            },
            {
                let mut p = process();
                p.set_args(Some(vec!["a\0b".into()]));
                exec(p)
            },
            {
                let mut c = container();
                c.spec.set_process(None);
                Message::Start(c)
            },
            {
                let mut c = container();
                c.spec.set_hostname(Some("h".repeat(65)));
                Message::Start(c)
            },
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
