//! A byte budget for hull's own log lines on stderr.
//!
//! Interactive `hull` writes its log lines to the operator's terminal with no cap. The
//! detached supervisor's stderr is `supervisor.log` in the container's state directory
//! (RAM on most systems) and lives as long as the container: what a guest or a container
//! provokes there (errors, unexpected frames) must not grow it without bound. The
//! supervisor sets a budget ([`limit_stderr`]); past it, lines are dropped after one note.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest `supervisor.log` hull lets grow, across the container's restarts.
pub const MAX_SUPERVISOR_LOG: u64 = 1 << 20;

/// Bytes stderr may still take; `u64::MAX` means no cap.
static STDERR_BUDGET: AtomicU64 = AtomicU64::new(u64::MAX);

const NOTE: &[u8] = b"[hull: log limit reached, further lines dropped]\n";

/// From now on, stderr takes at most `bytes` more (the note included).
pub fn limit_stderr(bytes: u64) {
    STDERR_BUDGET.store(bytes, Ordering::SeqCst);
}

/// Takes `len` bytes from `budget`: `Ok(true)` if they fit, `Ok(false)` if they do not
/// (the first time, with room for the note: `Err(())` tells the caller to write it).
fn take(budget: &AtomicU64, len: u64) -> Result<bool, ()> {
    let mut left = budget.load(Ordering::SeqCst);
    loop {
        if left == u64::MAX {
            return Ok(true);
        }
        let (next, verdict) = if left >= len + NOTE.len() as u64 {
            (left - len, Ok(true))
        } else if left >= NOTE.len() as u64 {
            (0, Err(()))
        } else {
            return Ok(false);
        };
        match budget.compare_exchange(left, next, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return verdict,
            Err(now) => left = now,
        }
    }
}

/// A writer that passes to `inner` what fits in `budget`, then the note once, then nothing.
/// Dropped bytes are reported as written: a log line never fails its caller.
pub struct Capped<'a, W: Write> {
    inner: W,
    budget: &'a AtomicU64,
}

impl<'a, W: Write> Capped<'a, W> {
    /// `inner` limited by `budget`.
    pub fn new(inner: W, budget: &'a AtomicU64) -> Self {
        Capped { inner, budget }
    }
}

impl<W: Write> Write for Capped<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match take(self.budget, buf.len() as u64) {
            Ok(true) => self.inner.write(buf),
            Ok(false) => Ok(buf.len()),
            Err(()) => {
                self.inner.write_all(NOTE)?;
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// hull's stderr under the budget set by [`limit_stderr`] (for `tracing`'s writer).
pub fn stderr() -> Capped<'static, io::Stderr> {
    Capped::new(io::stderr(), &STDERR_BUDGET)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capped_log_stops_at_its_budget_with_one_note() {
        let budget = AtomicU64::new(1000);
        let mut out = Vec::new();
        for _ in 0..10_000 {
            Capped::new(&mut out, &budget)
                .write_all(b"a line a guest provoked, again and again\n")
                .unwrap();
        }
        assert!(out.len() <= 1000, "{} bytes", out.len());
        assert!(out.ends_with(NOTE));
        assert_eq!(out.windows(NOTE.len()).filter(|w| *w == NOTE).count(), 1);
        // Without a budget nothing is dropped.
        let free = AtomicU64::new(u64::MAX);
        let mut out = Vec::new();
        for _ in 0..100 {
            Capped::new(&mut out, &free)
                .write_all(b"0123456789")
                .unwrap();
        }
        assert_eq!(out.len(), 1000);
    }
}
