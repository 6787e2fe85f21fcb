//! Uncompressed layers: the blob is read once, by the unpacking thread, into large
//! buffers; file contents are written straight from those buffers; each buffer, once
//! used, goes to a second thread that hashes it. The digest therefore covers exactly the
//! bytes that were unpacked (no second read of the blob that a concurrent writer could
//! make differ), and on two cores hashing (the slowest part) overlaps the unpack.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use sha2::{Digest as _, Sha256};

use crate::image::unpack::{DirectError, DirectStream};
use crate::image::Sha256Digest;

/// Size of one read from the blob (and of one buffer handed to the hasher).
const BUFFER: usize = 1 << 20;
/// Used buffers waiting to be hashed; the unpacker waits when the hasher is this far
/// behind.
const HASH_QUEUE: usize = 8;

/// What was read of the blob.
pub(crate) struct Consumed {
    /// sha256 of every byte read (the whole blob once drained).
    pub digest: Sha256Digest,
    /// Bytes read.
    pub size: u64,
    /// More than the limit was offered.
    pub over_limit: bool,
    /// The blob could not be read.
    pub error: Option<io::Error>,
}

/// Runs `unpack` over the blob read from `source` (at most `limit` bytes) with a hasher
/// thread behind it, then reads the rest of the blob so the digest covers all of it.
pub(crate) fn unpack_hashed<R, T>(
    source: R,
    limit: u64,
    unpack: impl FnOnce(&HashedStream<R>) -> T,
) -> (T, Consumed)
where
    R: Read,
{
    std::thread::scope(|scope| {
        let (to_hash, hash_rx) = sync_channel::<(Vec<u8>, usize)>(HASH_QUEUE);
        let (recycle_tx, recycled) = sync_channel::<Vec<u8>>(HASH_QUEUE + 2);
        let hasher = scope.spawn(move || {
            let mut sha = Sha256::new();
            for (buffer, len) in hash_rx {
                sha.update(&buffer[..len]);
                // Full: the reader allocates instead.
                let _ = recycle_tx.try_send(buffer);
            }
            sha
        });
        let stream = HashedStream {
            state: RefCell::new(State {
                source,
                buffer: Vec::new(),
                len: 0,
                pos: 0,
                read: 0,
                consumed: 0,
                parser_pos: 0,
                limit,
                over_limit: false,
                eof: false,
                error: None,
                to_hash: Some(to_hash),
                recycled,
            }),
        };
        let result = unpack(&stream);
        let mut state = stream.state.into_inner();
        if state.error.is_none() && !state.over_limit {
            // The rest (tar end blocks, padding) counts toward the digest; errors are
            // recorded in the state.
            let _ = state.skip(u64::MAX);
        }
        state.ship_current();
        drop(state.to_hash.take());
        let sha = hasher.join().expect("layer hasher thread panicked");
        (
            result,
            Consumed {
                digest: Sha256Digest::from_hasher(sha),
                size: state.read,
                over_limit: state.over_limit,
                error: state.error,
            },
        )
    })
}

/// The blob as the unpacker sees it: a `Read + Seek` for the tar parser (seeks only
/// forward, reading and hashing what they pass over) and a [`DirectStream`] for file
/// contents.
pub(crate) struct HashedStream<R> {
    state: RefCell<State<R>>,
}

struct State<R> {
    source: R,
    /// The buffer being consumed; `buffer[..len]` is blob data, `buffer[..pos]` used.
    buffer: Vec<u8>,
    len: usize,
    pos: usize,
    /// Bytes read from the source (all of them are, or will be, hashed).
    read: u64,
    /// Bytes used by the parser or written out directly.
    consumed: u64,
    /// Where the tar parser believes it is; behind `consumed` after a direct write,
    /// until the parser seeks past the entry.
    parser_pos: u64,
    limit: u64,
    over_limit: bool,
    eof: bool,
    error: Option<io::Error>,
    /// None once the hasher was told the stream ended.
    to_hash: Option<SyncSender<(Vec<u8>, usize)>>,
    recycled: Receiver<Vec<u8>>,
}

impl<R: Read> State<R> {
    /// The unused bytes of the current buffer, reading the next buffer when it is spent;
    /// empty at the end of the blob.
    fn available(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.len && !self.eof {
            self.refill()?;
        }
        Ok(&self.buffer[self.pos..self.len])
    }

    fn refill(&mut self) -> io::Result<()> {
        if let Some(e) = &self.error {
            return Err(io::Error::new(e.kind(), e.to_string()));
        }
        if self.over_limit {
            return Err(self.limit_error());
        }
        self.ship_current();
        let mut buffer = self
            .recycled
            .try_recv()
            .unwrap_or_else(|_| vec![0u8; BUFFER]);
        // At most one byte past the limit is ever read: enough to tell it was crossed.
        let room = (self.limit - self.read).saturating_add(1);
        let want = BUFFER.min(usize::try_from(room).unwrap_or(BUFFER));
        let mut filled = 0;
        while filled < want {
            match self.source.read(&mut buffer[filled..want]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let copy = io::Error::new(e.kind(), e.to_string());
                    self.error = Some(e);
                    self.buffer = buffer;
                    (self.len, self.pos) = (filled, 0);
                    self.read += filled as u64;
                    return Err(copy);
                }
            }
        }
        self.buffer = buffer;
        (self.len, self.pos) = (filled, 0);
        self.read += filled as u64;
        if self.read > self.limit {
            self.over_limit = true;
            return Err(self.limit_error());
        }
        Ok(())
    }

    /// Hands the current buffer's data to the hasher.
    fn ship_current(&mut self) {
        if self.len == 0 {
            return;
        }
        let buffer = std::mem::take(&mut self.buffer);
        let len = std::mem::take(&mut self.len);
        self.pos = 0;
        if let Some(tx) = &self.to_hash {
            // Only fails if the hasher is gone, which join() reports.
            let _ = tx.send((buffer, len));
        }
    }

    /// Uses `n` bytes (up to the end of the blob); returns how many were there.
    fn skip(&mut self, mut n: u64) -> io::Result<u64> {
        let start = n;
        while n > 0 {
            let step = (self.available()?.len() as u64).min(n);
            if step == 0 {
                break;
            }
            self.pos += step as usize;
            self.consumed += step;
            n -= step;
        }
        Ok(start - n)
    }

    fn limit_error(&self) -> io::Error {
        io::Error::other(format!("stream exceeds the limit of {} bytes", self.limit))
    }

    fn check_in_step(&self) -> io::Result<()> {
        if self.consumed == self.parser_pos {
            Ok(())
        } else {
            Err(io::Error::other(
                "tar parser read entry data that was already written out",
            ))
        }
    }
}

impl<R: Read> Read for &HashedStream<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut state = self.state.borrow_mut();
        state.check_in_step()?;
        let data = state.available()?;
        let n = data.len().min(out.len());
        out[..n].copy_from_slice(&data[..n]);
        state.pos += n;
        state.consumed += n as u64;
        state.parser_pos += n as u64;
        Ok(n)
    }
}

impl<R: Read> Seek for &HashedStream<R> {
    /// Only `SeekFrom::Current(n >= 0)`, what the tar parser uses to skip entry data
    /// and padding: the bytes passed over are read and hashed all the same.
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let mut state = self.state.borrow_mut();
        let SeekFrom::Current(delta) = to else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "layer stream seeks only forward",
            ));
        };
        let target = u64::try_from(delta)
            .ok()
            .and_then(|d| state.parser_pos.checked_add(d))
            .filter(|&t| t >= state.consumed)
            .ok_or_else(|| io::Error::other("layer stream seeks only forward"))?;
        let want = target - state.consumed;
        if state.skip(want)? < want {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "unexpected EOF during skip",
            ));
        }
        state.parser_pos = target;
        Ok(target)
    }
}

impl<R: Read> DirectStream for HashedStream<R> {
    fn parser_position(&self) -> u64 {
        self.state.borrow().parser_pos
    }

    fn write_next_to(&self, mut len: u64, out: &mut File) -> Result<(), DirectError> {
        let mut state = self.state.borrow_mut();
        state.check_in_step().map_err(DirectError::Read)?;
        while len > 0 {
            let data = state.available().map_err(DirectError::Read)?;
            if data.is_empty() {
                return Err(DirectError::Read(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "layer ends inside this entry's data",
                )));
            }
            let n = data.len().min(usize::try_from(len).unwrap_or(usize::MAX));
            out.write_all(&data[..n]).map_err(DirectError::Write)?;
            state.pos += n;
            state.consumed += n as u64;
            len -= n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_covers_everything_read_and_skipped() {
        let data: Vec<u8> = (0..3 * BUFFER + 1234).map(|i| (i % 251) as u8).collect();
        let ((), consumed) = unpack_hashed(&data[..], u64::MAX, |s| {
            let mut r = s;
            let mut head = [0u8; 10];
            r.read_exact(&mut head).unwrap();
            assert_eq!(head[..], data[..10]);
            r.seek(SeekFrom::Current(BUFFER as i64)).unwrap();
            let mut next = [0u8; 4];
            r.read_exact(&mut next).unwrap();
            assert_eq!(next[..], data[BUFFER + 10..BUFFER + 14]);
        });
        assert!(consumed.error.is_none() && !consumed.over_limit);
        assert_eq!(consumed.size, data.len() as u64);
        assert_eq!(consumed.digest, Sha256Digest::of(&data));
    }

    #[test]
    fn direct_writes_are_skipped_by_the_parser() {
        let data: Vec<u8> = (0..2 * BUFFER + 77).map(|i| (i % 13) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let ((), consumed) = unpack_hashed(&data[..], u64::MAX, |s| {
            let mut r = s;
            let mut head = [0u8; 5];
            r.read_exact(&mut head).unwrap();
            let mut file = File::create(&path).unwrap();
            s.write_next_to(BUFFER as u64 + 3, &mut file).unwrap();
            // The parser may not read what was written out directly ...
            assert!(r.read(&mut head).is_err());
            // ... and seeks past it (and a little more) instead.
            assert_eq!(
                r.seek(SeekFrom::Current(BUFFER as i64 + 10)).unwrap(),
                BUFFER as u64 + 15
            );
            r.read_exact(&mut head).unwrap();
            assert_eq!(head[..], data[BUFFER + 15..BUFFER + 20]);
            assert!(r.seek(SeekFrom::Current(-1)).is_err());
        });
        assert_eq!(std::fs::read(&path).unwrap(), data[5..BUFFER + 8]);
        assert_eq!(consumed.digest, Sha256Digest::of(&data));
    }

    #[test]
    fn the_limit_is_enforced_without_reading_far_past_it() {
        let data = vec![7u8; 3 * BUFFER];
        let (result, consumed) = unpack_hashed(&data[..], 1000, |s| {
            let mut r = s;
            io::copy(&mut r, &mut io::sink())
        });
        assert!(result.is_err());
        assert!(consumed.over_limit);
        assert_eq!(consumed.size, 1001);
    }

    #[test]
    fn truncated_data_is_an_error() {
        let data = [1u8; 100];
        let dir = tempfile::tempdir().unwrap();
        let mut file = File::create(dir.path().join("out")).unwrap();
        let (result, _) = unpack_hashed(&data[..], u64::MAX, |s| s.write_next_to(200, &mut file));
        assert!(matches!(result, Err(DirectError::Read(_))));
        let (result, _) = unpack_hashed(&data[..], u64::MAX, |s| {
            let mut r = s;
            r.seek(SeekFrom::Current(101))
        });
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
