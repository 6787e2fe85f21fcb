//! Container logs: everything the container writes to stdout and stderr, in order, in
//! `container.log` as records `[stream: u8][length: u32 LE][bytes]` (stream 1 = stdout,
//! 2 = stderr), so `hull logs` can replay each stream to the right place.
//!
//! A container is hostile: records are at most 64 KiB and a log stops growing at
//! [`MAX_LOG_BYTES`] (a note is written once).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

/// Log file name in the container's state directory.
pub const LOG_FILE: &str = "container.log";
/// Largest log kept per container.
pub const MAX_LOG_BYTES: u64 = 256 << 20;
/// Largest record payload.
pub const MAX_RECORD: usize = 64 << 10;

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
}

impl LogWriter {
    /// A writer appending to the log in `dir`.
    pub fn open(dir: &Path) -> io::Result<LogWriter> {
        Ok(LogWriter {
            path: dir.join(LOG_FILE),
            file: None,
            written: 0,
            full: false,
        })
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
            if self.written + chunk.len() as u64 + 5 > MAX_LOG_BYTES {
                if !self.full {
                    self.full = true;
                    let note = b"[hull: log limit reached, further output dropped]\n";
                    self.append(Stream::Stderr, note)?;
                }
                return Ok(());
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

    #[test]
    fn corrupt_logs_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOG_FILE), [9u8, 1, 0, 0, 0, b'x']).unwrap();
        let mut r = LogReader::open(dir.path()).unwrap().unwrap();
        assert!(!r.pump(&mut Vec::new(), &mut Vec::new()).unwrap());
    }
}
