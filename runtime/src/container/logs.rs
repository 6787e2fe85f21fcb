//! Container logs: everything the container writes to stdout and stderr, in order, in
//! `container.log` as records `[stream: u8][length: u32 LE][bytes]` (stream 1 = stdout,
//! 2 = stderr), so `hull logs` can replay each stream to the right place.
//!
//! A container is hostile: records are at most 64 KiB and a log stops growing at
//! [`MAX_LOG_BYTES`], or earlier when the filesystem it lives on (the run root: RAM on most
//! systems) has less than [`MIN_FREE_BYTES`] or [`MIN_FREE_PERCENT`] left, which bounds all
//! containers' logs together (a note is written once).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

/// Log file name in the container's state directory.
pub const LOG_FILE: &str = "container.log";
/// Largest log kept per container.
pub const MAX_LOG_BYTES: u64 = 256 << 20;
/// Largest record payload.
pub const MAX_RECORD: usize = 64 << 10;
/// A log stops growing when its filesystem has less free than this...
pub const MIN_FREE_BYTES: u64 = 64 << 20;
/// ...or than this share of its size.
pub const MIN_FREE_PERCENT: u64 = 10;
/// How often (in bytes written) the free space is checked again.
const FREE_CHECK_EVERY: u64 = 1 << 20;

/// Free and total bytes of the filesystem holding `dir`.
type SpaceProbe = fn(&Path) -> io::Result<(u64, u64)>;

fn statvfs_space(dir: &Path) -> io::Result<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(io::Error::from)?;
    let unit = st.fragment_size() as u64;
    Ok((
        st.blocks_available() as u64 * unit,
        st.blocks() as u64 * unit,
    ))
}

/// Whether a filesystem with `free` of `total` bytes left is too full for more log.
fn too_full(free: u64, total: u64) -> bool {
    free < MIN_FREE_BYTES || free < total / 100 * MIN_FREE_PERCENT
}

/// Which output stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// fd 1 (or the terminal).
    Stdout = 1,
    /// fd 2.
    Stderr = 2,
}

/// Appends records to a container log. The file is created on the first write, so a
/// silent container costs no file.
pub struct LogWriter {
    path: std::path::PathBuf,
    file: Option<File>,
    written: u64,
    full: bool,
    space: SpaceProbe,
    /// `written` when the free space was last checked (`None`: not yet).
    checked_at: Option<u64>,
}

impl LogWriter {
    /// A writer appending to the log in `dir`.
    pub fn open(dir: &Path) -> io::Result<LogWriter> {
        Self::with_space_probe(dir, statvfs_space)
    }

    fn with_space_probe(dir: &Path, space: SpaceProbe) -> io::Result<LogWriter> {
        Ok(LogWriter {
            path: dir.join(LOG_FILE),
            file: None,
            written: 0,
            full: false,
            space,
            checked_at: None,
        })
    }

    /// Whether the log's filesystem is too full for more (checked every
    /// [`FREE_CHECK_EVERY`] bytes; a failed check counts as full: fail closed).
    fn filesystem_full(&mut self) -> bool {
        if self
            .checked_at
            .is_some_and(|at| self.written < at + FREE_CHECK_EVERY)
        {
            return false;
        }
        self.checked_at = Some(self.written);
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        (self.space)(dir).map_or(true, |(free, total)| too_full(free, total))
    }

    fn file(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            let file = crate::private_fs::open_append(&self.path)?;
            self.written = file.metadata()?.len();
            self.file = Some(file);
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    /// Records `data` from `stream`.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        self.file()?;
        for chunk in data.chunks(MAX_RECORD) {
            if self.full {
                return Ok(());
            }
            let note: &[u8] = if self.written + chunk.len() as u64 + 5 > MAX_LOG_BYTES {
                b"[hull: log limit reached, further output dropped]\n"
            } else if self.filesystem_full() {
                b"[hull: log stopped: the run root's filesystem is nearly full, further output dropped]\n"
            } else {
                b""
            };
            if !note.is_empty() {
                self.full = true;
                return self.append(Stream::Stderr, note);
            }
            self.append(stream, chunk)?;
        }
        Ok(())
    }

    fn append(&mut self, stream: Stream, chunk: &[u8]) -> io::Result<()> {
        let mut rec = Vec::with_capacity(chunk.len() + 5);
        rec.push(stream as u8);
        rec.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        rec.extend_from_slice(chunk);
        self.file()?.write_all(&rec)?;
        self.written += rec.len() as u64;
        Ok(())
    }
}

/// Reads records from a log, remembering where it stopped (for following).
pub struct LogReader {
    file: File,
    pending: Vec<u8>,
}

impl LogReader {
    /// Opens the log in `dir` (an empty reader if there is none yet).
    pub fn open(dir: &Path) -> io::Result<Option<LogReader>> {
        match File::open(dir.join(LOG_FILE)) {
            Ok(file) => Ok(Some(LogReader {
                file,
                pending: Vec::new(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Copies every complete record available now to `out`/`err`. Returns false if the
    /// log is corrupt.
    pub fn pump(&mut self, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<bool> {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = self.file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            self.pending.extend_from_slice(&buf[..n]);
            if !self.drain(out, err)? {
                return Ok(false);
            }
        }
        out.flush()?;
        err.flush()?;
        Ok(true)
    }

    fn drain(&mut self, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<bool> {
        let mut pos = 0;
        while self.pending.len() - pos >= 5 {
            let stream = self.pending[pos];
            let len = u32::from_le_bytes([
                self.pending[pos + 1],
                self.pending[pos + 2],
                self.pending[pos + 3],
                self.pending[pos + 4],
            ]) as usize;
            if len > MAX_RECORD || !(1..=2).contains(&stream) {
                return Ok(false);
            }
            if self.pending.len() - pos - 5 < len {
                break;
            }
            let data = &self.pending[pos + 5..pos + 5 + len];
            if stream == 1 {
                out.write_all(data)?;
            } else {
                err.write_all(data)?;
            }
            pos += 5 + len;
        }
        self.pending.drain(..pos);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_per_stream() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path()).unwrap();
        w.write(Stream::Stdout, b"hello ").unwrap();
        w.write(Stream::Stderr, b"oops\n").unwrap();
        w.write(Stream::Stdout, b"world\n").unwrap();
        let mut r = LogReader::open(dir.path()).unwrap().unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert!(r.pump(&mut out, &mut err).unwrap());
        assert_eq!(out, b"hello world\n");
        assert_eq!(err, b"oops\n");
    }

    /// Many containers together cannot fill the run root: each log stops when the
    /// filesystem runs low, whatever its own size.
    #[test]
    fn a_log_stops_when_its_filesystem_runs_low() {
        fn plenty(_: &Path) -> io::Result<(u64, u64)> {
            Ok((900 << 20, 1 << 30))
        }
        fn low(_: &Path) -> io::Result<(u64, u64)> {
            Ok((90 << 20, 1 << 30)) // 90 MiB free of 1 GiB: under 10 %
        }
        fn unknown(_: &Path) -> io::Result<(u64, u64)> {
            Err(io::Error::other("statvfs failed"))
        }
        let chunk = vec![b'x'; 4096];
        for (probe, stops) in [(plenty as SpaceProbe, false), (low, true), (unknown, true)] {
            let dir = tempfile::tempdir().unwrap();
            let mut w = LogWriter::with_space_probe(dir.path(), probe).unwrap();
            for _ in 0..1024 {
                w.write(Stream::Stdout, &chunk).unwrap();
            }
            let mut r = LogReader::open(dir.path()).unwrap().unwrap();
            let (mut out, mut err) = (Vec::new(), Vec::new());
            r.pump(&mut out, &mut err).unwrap();
            if stops {
                assert!(out.is_empty(), "{} bytes logged", out.len());
                assert!(String::from_utf8_lossy(&err).contains("nearly full"));
            } else {
                assert_eq!(out.len(), 4 << 20);
                assert!(err.is_empty());
            }
        }
        assert!(!too_full(1 << 30, 4 << 30) && too_full(63 << 20, 1 << 40));
    }

    #[test]
    fn corrupt_logs_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOG_FILE), [9u8, 1, 0, 0, 0, b'x']).unwrap();
        let mut r = LogReader::open(dir.path()).unwrap().unwrap();
        assert!(!r.pump(&mut Vec::new(), &mut Vec::new()).unwrap());
    }
}
