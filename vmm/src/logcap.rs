//! Bounds on what a guest makes the VMM write to the host's disk (hull keeps both files in
//! the container's state directory, RAM on most systems): the serial console file and the
//! VMM's own log each stop after a budget ([`Capped`]), with one note. A guest can provoke
//! warnings (bad virtqueues, status resets) and print to its console in a loop; neither
//! grows without bound. (Plain `write` only: the vCPU threads that write the console are
//! confined by seccomp, which has no `lseek` or `ftruncate` for a file that starts over.)

use std::io::{self, Write};

/// Largest serial console file (boot messages, what hull shows when a boot fails, come
/// first).
pub const MAX_CONSOLE_FILE: u64 = 4 << 20;
/// Largest amount of log the VMM writes to its stderr.
pub const MAX_VMM_LOG: u64 = 1 << 20;

const CAPPED: &[u8] = b"\n[hull-vmm: output limit reached, the rest is dropped]\n";

/// Passes at most `left` bytes to `inner`, then one note, then nothing (reported as
/// written: a log line never fails its caller).
pub struct Capped<W: Write> {
    inner: W,
    left: u64,
    noted: bool,
}

impl<W: Write> Capped<W> {
    /// `inner` limited to `cap` bytes (the note comes on top).
    pub fn new(inner: W, cap: u64) -> Self {
        Capped {
            inner,
            left: cap,
            noted: false,
        }
    }
}

impl<W: Write> Write for Capped<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 <= self.left {
            let n = self.inner.write(buf)?;
            self.left -= n as u64;
            return Ok(n);
        }
        if !self.noted {
            self.noted = true;
            self.left = 0;
            self.inner.write_all(CAPPED)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_console_that_prints_forever_stops_at_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let mut w = Capped::new(std::fs::File::create(&path).unwrap(), 64 << 10);
        for i in 0..100_000 {
            writeln!(w, "line {i} of a guest that never stops").unwrap();
        }
        w.flush().unwrap();
        let mut text = String::new();
        std::fs::File::open(&path)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert!(
            text.len() as u64 <= (64 << 10) + CAPPED.len() as u64,
            "{} bytes",
            text.len()
        );
        assert!(text.starts_with("line 0 of"));
        assert!(text.ends_with(std::str::from_utf8(CAPPED).unwrap()));
    }

    #[test]
    fn the_vmm_log_stops_at_its_cap_with_one_note() {
        let mut w = Capped::new(Vec::new(), 1000);
        for _ in 0..10_000 {
            w.write_all(b"WARN virtio driver cleared status bits\n")
                .unwrap();
        }
        let out = w.inner;
        assert!(out.len() <= 1000 + CAPPED.len(), "{}", out.len());
        assert!(out.ends_with(CAPPED));
    }
}
