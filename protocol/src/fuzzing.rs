//! Fuzzing entry points (the `protocol_*` targets of `fuzz/`, docs/fuzzing.md): a byte
//! stream from a hostile peer, read frame by frame as the receiving side reads it.
//!
//! Both directions share the decoder; what differs is the conversation, so each entry
//! point reads a stream as its receiver does (a first control message, then frames until
//! the end) and checks, for every frame, what the receivers rely on: control messages are
//! valid, payloads are bounded, a frame is read exactly (nothing of the next one is
//! swallowed), and a decoded frame encodes back to a frame that decodes to itself.
//!
//! The first input byte shapes the stream: its low six bits are the most bytes one
//! `read` returns (0: no limit), bit 6 makes every other read fail with `Interrupted`, as
//! sockets do, and the rest of the input is what the peer sent.

use std::io::{self, Cursor, Read};

use crate::{read_frame, read_message, read_request, write_frame, Frame, Message, ProtocolError};
use crate::{HEADER_LEN, MAX_PAYLOAD, MAX_REQUEST_PAYLOAD};

/// How a conversation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// The process's exit code arrived (guest to host).
    Exit,
    /// The peer closed the stream between frames.
    Closed,
    /// The first message is not one that opens this conversation.
    Refused,
    /// The stream broke the protocol (the error, as the receiver reports it).
    Broken(String),
}

/// What the host reads from the guest: the agent's hello on the boot connection, then a
/// process's output until its exit code.
pub fn guest_to_host(data: &[u8]) -> (Vec<Frame>, Ended) {
    converse(data, false, |m| matches!(m, Message::Hello { .. }))
}

/// What the agent reads from the host: a request (start, exec, signal) on a new
/// connection, then stdin, signal and resize frames.
pub fn host_to_guest(data: &[u8]) -> (Vec<Frame>, Ended) {
    converse(data, true, |m| {
        matches!(
            m,
            Message::Start(_) | Message::Exec(_) | Message::Signal { .. }
        )
    })
}

/// Reads a first control message (stopping unless `opens` accepts it), then frames until
/// the stream ends or breaks the protocol.
fn converse(data: &[u8], to_agent: bool, opens: impl Fn(&Message) -> bool) -> (Vec<Frame>, Ended) {
    let Some((&shape, stream)) = data.split_first() else {
        return (Vec::new(), Ended::Closed);
    };
    let mut peer = Peer {
        data: Cursor::new(stream),
        max_read: usize::from(shape & 0x3f),
        interrupt: shape & 0x40 != 0,
        reads: 0,
    };
    let mut frames = Vec::new();
    let start = peer.data.position();
    let first = if to_agent {
        read_request(&mut peer)
    } else {
        read_message(&mut peer)
    };
    let first_limit = if to_agent {
        MAX_REQUEST_PAYLOAD
    } else {
        MAX_PAYLOAD
    };
    match first {
        Ok(first) => {
            let frame = Frame::Control(first);
            check(&frame, stream, start, peer.data.position(), first_limit);
            let go_on = matches!(&frame, Frame::Control(m) if opens(m));
            frames.push(frame);
            if !go_on {
                return (frames, Ended::Refused);
            }
        }
        Err(e) => return (frames, ended(e)),
    }
    loop {
        let start = peer.data.position();
        match read_frame(&mut peer) {
            Ok(frame) => {
                check(&frame, stream, start, peer.data.position(), MAX_PAYLOAD);
                let exit = matches!(frame, Frame::Control(Message::Exit { .. }));
                frames.push(frame);
                if exit {
                    return (frames, Ended::Exit);
                }
            }
            Err(e) => return (frames, ended(e)),
        }
    }
}

/// What must hold for every frame a receiver accepted from `stream[start..end]`.
fn check(frame: &Frame, stream: &[u8], start: u64, end: u64, limit: usize) {
    let payload = match frame {
        Frame::Control(m) => {
            m.validate()
                .unwrap_or_else(|e| panic!("accepted an invalid message {m:?}: {e}"));
            serde_json::to_vec(m).expect("a message serializes").len()
        }
        Frame::Stdin(d) | Frame::Stdout(d) | Frame::Stderr(d) => d.len(),
    };
    assert!(payload <= limit, "a {payload}-byte payload was accepted");
    // Read exactly: the header and the payload it announced, not a byte more.
    let at = usize::try_from(start).expect("in memory") + 4;
    let declared = u32::from_be_bytes(stream[at..at + 4].try_into().expect("4 bytes"));
    assert_eq!(
        end - start,
        HEADER_LEN as u64 + u64::from(declared),
        "{frame:?} consumed the wrong number of bytes"
    );
    let mut encoded = Vec::new();
    write_frame(&mut encoded, frame).expect("an accepted frame encodes");
    let again = if limit > MAX_PAYLOAD {
        read_request(&mut Cursor::new(&encoded)).map(Frame::Control)
    } else {
        read_frame(&mut Cursor::new(&encoded))
    }
    .expect("a re-encoded frame decodes");
    assert_eq!(&again, frame, "a frame does not survive encoding");
}

/// A receiver may fail, but only with a protocol error (never a panic or a hang), and
/// never with the `Interrupted` a socket read may return: that one is retried.
fn ended(e: ProtocolError) -> Ended {
    match e {
        ProtocolError::Closed => Ended::Closed,
        ProtocolError::Io(io) if io.kind() == io::ErrorKind::Interrupted => {
            panic!("EINTR must be retried, not reported")
        }
        other => Ended::Broken(other.to_string()),
    }
}

/// The peer's side of the socket: the input, in reads as short as the shape byte says.
struct Peer<'a> {
    data: Cursor<&'a [u8]>,
    max_read: usize,
    interrupt: bool,
    reads: u64,
}

impl Read for Peer<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        if self.interrupt && self.reads % 2 == 0 {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = match self.max_read {
            0 => buf.len(),
            max => buf.len().min(max),
        };
        self.data.read(&mut buf[..n])
    }
}

#[cfg(test)]
mod tests {
    //! Tier 1 replay of the fuzz corpora (`fuzz/corpus/protocol_*`, the seeds, and
    //! `fuzz/regressions/protocol_*`, inputs that once crashed a target): seeds named
    //! `seed-ok-*` must be accepted to their last byte, `seed-bad-*` stop early.

    use super::*;
    use std::path::{Path, PathBuf};

    fn replay(target: &str, entry: impl Fn(&[u8]) -> (Vec<Frame>, Ended)) {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut count = 0;
        for kind in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            files.sort();
            for file in files {
                let data = std::fs::read(&file).unwrap();
                let name = file.file_name().unwrap().to_string_lossy().into_owned();
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| entry(&data)));
                let Ok((frames, ended)) = run else {
                    panic!("{target}: {} panics", file.display());
                };
                let clean = matches!(ended, Ended::Exit | Ended::Closed);
                if name.starts_with("seed-ok-") {
                    assert!(clean, "{target}: {name} ended {ended:?} after {frames:?}");
                }
                if name.starts_with("seed-bad-") {
                    assert!(!clean, "{target}: {name} was accepted: {frames:?}");
                }
                count += 1;
            }
        }
        assert!(
            count > 0,
            "no corpus for fuzz target {target} under {fuzz:?}"
        );
    }

    #[test]
    fn protocol_guest_to_host_corpus() {
        replay("protocol_guest_to_host", guest_to_host);
    }

    #[test]
    fn protocol_host_to_guest_corpus() {
        replay("protocol_host_to_guest", host_to_guest);
    }

    #[test]
    fn short_and_interrupted_reads_decode_the_same_frames() {
        let mut stream = Vec::new();
        crate::write_message(
            &mut stream,
            &Message::Hello {
                protocol: 1,
                kernel: "6.12".into(),
            },
        )
        .unwrap();
        write_frame(&mut stream, &Frame::Stdout(b"hi".to_vec())).unwrap();
        crate::write_message(&mut stream, &Message::Exit { code: 3 }).unwrap();
        let whole = guest_to_host(&[&[0u8][..], &stream].concat());
        assert_eq!((whole.0.len(), &whole.1), (3, &Ended::Exit));
        for shape in [1u8, 3, 0x40 | 1, 0x40 | 7] {
            let trickled = guest_to_host(&[&[shape][..], &stream].concat());
            assert_eq!(trickled, whole, "shape {shape:#x}");
        }
    }
}
