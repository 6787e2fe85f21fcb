//! A bound on what the tar parser reads, and keeps in memory, while it assembles one
//! entry's headers.
//!
//! The `tar` crate reads a PAX extension, a GNU long name or long link entry whole into a
//! `Vec` before returning the entry they describe, and keeps one record per block of a
//! GNU sparse map; the only bound is the stream itself. A hostile layer can therefore make
//! the importer allocate about as much memory as the layer's uncompressed size (64 GiB by
//! default) from a small compressed blob. The parser reads those bytes only inside
//! `Entries::next`; the importer arms the budget around that call, and a read beyond it
//! fails, so the parser stops with an error instead of allocating.

use std::cell::Cell;
use std::io::{self, Read, Seek, SeekFrom};

use super::ImageError;

/// Counts the bytes read while armed.
#[derive(Debug)]
pub(crate) struct HeaderBudget {
    limit: u64,
    armed: Cell<bool>,
    used: Cell<u64>,
    exceeded: Cell<bool>,
}

impl HeaderBudget {
    pub fn new(limit: u64) -> Self {
        HeaderBudget {
            limit,
            armed: Cell::new(false),
            used: Cell::new(0),
            exceeded: Cell::new(false),
        }
    }

    /// Runs `f` (the parser's `next`) with the budget armed and fresh.
    pub fn around<T>(&self, f: impl FnOnce() -> T) -> T {
        self.used.set(0);
        self.exceeded.set(false);
        self.armed.set(true);
        let out = f();
        self.armed.set(false);
        out
    }

    /// Maps a parser failure: over the budget, or `otherwise` (the parser's own error).
    pub fn map_error(
        &self,
        what: &str,
        error: io::Error,
        otherwise: impl FnOnce(io::Error) -> ImageError,
    ) -> ImageError {
        if self.exceeded.get() {
            ImageError::TooLarge {
                what: format!(
                    "headers of one {what} entry (PAX extensions, GNU long names, sparse maps)"
                ),
                limit: self.limit,
                unit: "bytes",
            }
        } else {
            otherwise(error)
        }
    }

    /// Wraps the parser's input.
    pub fn reader<R>(&self, inner: R) -> Budgeted<'_, R> {
        Budgeted {
            inner,
            budget: self,
        }
    }

    fn take(&self, n: usize) -> io::Result<usize> {
        if !self.armed.get() {
            return Ok(n);
        }
        let left = self.limit.saturating_sub(self.used.get());
        if left == 0 && n > 0 {
            self.exceeded.set(true);
            return Err(io::Error::other("tar headers over the budget"));
        }
        Ok(n.min(usize::try_from(left).unwrap_or(usize::MAX)))
    }
}

/// The parser's input, reading through a [`HeaderBudget`]. Seeks are not counted: they
/// skip data without keeping it.
pub(crate) struct Budgeted<'b, R> {
    inner: R,
    budget: &'b HeaderBudget,
}

impl<R: Read> Read for Budgeted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = self.budget.take(buf.len())?;
        let n = self.inner.read(&mut buf[..want])?;
        if self.budget.armed.get() {
            self.budget.used.set(self.budget.used.get() + n as u64);
        }
        Ok(n)
    }
}

impl<R: Seek> Seek for Budgeted<'_, R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounded_only_while_armed() {
        let budget = HeaderBudget::new(10);
        let mut r = budget.reader(io::repeat(7));
        let mut buf = [0u8; 64];
        assert_eq!(r.read(&mut buf).unwrap(), 64, "disarmed: not counted");
        let got = budget.around(|| {
            let mut total = 0;
            loop {
                match r.read(&mut buf) {
                    Ok(n) => total += n,
                    Err(e) => return (total, e),
                }
            }
        });
        assert_eq!(got.0, 10);
        assert!(matches!(
            budget.map_error("layer tar", got.1, |_| unreachable!()),
            ImageError::TooLarge { limit: 10, .. }
        ));
        // Armed again: a fresh budget.
        assert_eq!(budget.around(|| r.read(&mut buf).unwrap()), 10);
    }
}
