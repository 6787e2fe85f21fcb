//! sha256 digests and a reader that hashes, counts and bounds what passes through it.

use std::fmt;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::ImageError;

/// A validated `sha256:<64 lowercase hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest {
    hex: String,
}

impl Sha256Digest {
    /// Parses `sha256:<hex>`; any other algorithm or a malformed hex part is an error
    /// (digests come from hostile manifests and become file names).
    pub fn parse(s: &str) -> Result<Self, ImageError> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| {
            ImageError::invalid(
                format!("digest {s:?}"),
                "only sha256:<64 hex digits> digests are supported",
            )
        })?;
        Self::from_hex(hex).ok_or_else(|| {
            ImageError::invalid(format!("digest {s:?}"), "not 64 lowercase hex digits")
        })
    }

    /// Builds a digest from its hex part, if it is 64 lowercase hex digits.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let ok = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| Sha256Digest {
            hex: hex.to_string(),
        })
    }

    /// The digest of a byte string.
    pub fn of(data: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(data))
    }

    /// Finishes a hasher.
    pub fn from_hasher(hasher: Sha256) -> Self {
        Sha256Digest {
            hex: hex::encode(hasher.finalize()),
        }
    }

    /// The 64 hex digits (used as a file name).
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

/// Set when a `Tracked` reader went over its bound, so the caller can report the limit
/// instead of whatever error a decoder or the tar parser made of the truncated stream.
#[derive(Debug, Clone, Default)]
pub struct OverLimit(Arc<AtomicBool>);

impl OverLimit {
    /// Whether the bound was crossed.
    pub fn hit(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A reader that hashes (optionally) and counts the bytes read through it, failing once
/// more than `limit` bytes were read.
pub struct Tracked<R> {
    inner: R,
    hasher: Option<Sha256>,
    count: u64,
    limit: u64,
    over: OverLimit,
}

impl<R: Read> Tracked<R> {
    /// Wraps `inner`; hashes when `hash` is true.
    pub fn new(inner: R, hash: bool, limit: u64) -> Self {
        Tracked {
            inner,
            hasher: hash.then(Sha256::new),
            count: 0,
            limit,
            over: OverLimit::default(),
        }
    }

    /// A handle that tells whether the limit was hit.
    pub fn over_limit(&self) -> OverLimit {
        self.over.clone()
    }

    /// Reads the rest of the stream (hashing and counting it).
    pub fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(drop)
    }

    /// The digest of everything read (None when not hashing), the count, the reader.
    pub fn finish(self) -> (Option<Sha256Digest>, u64, R) {
        (
            self.hasher.map(Sha256Digest::from_hasher),
            self.count,
            self.inner,
        )
    }
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        self.count += n as u64;
        if self.count > self.limit {
            self.over.0.store(true, Ordering::Relaxed);
            return Err(io::Error::other(format!(
                "stream exceeds the limit of {} bytes",
                self.limit
            )));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_digests() {
        let d = Sha256Digest::of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Sha256Digest::parse(&d.to_string()).unwrap(), d);
        assert!(Sha256Digest::parse("sha512:00").is_err());
        assert!(Sha256Digest::parse("sha256:../../etc/passwd").is_err());
        assert!(Sha256Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
    }

    #[test]
    fn tracked_reader_bounds_the_stream() {
        let mut r = Tracked::new(&[0u8; 100][..], true, 50);
        let over = r.over_limit();
        assert!(r.drain().is_err());
        assert!(over.hit());
        let mut r = Tracked::new(&b"abc"[..], true, 3);
        r.drain().unwrap();
        let (digest, count, _) = r.finish();
        assert_eq!(count, 3);
        assert_eq!(digest.unwrap(), Sha256Digest::of(b"abc"));
    }
}
