//! Blob downloads: small JSON blobs read whole (bounded, verified), layer blobs as a
//! stream that survives dropped connections by resuming with an HTTP Range request.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ureq::http::{Method, StatusCode};

use super::client::{expect_ok, read_bounded, Payload, Redirects, Registry};
use super::manifest::Descriptor;
use super::RegistryError;
use crate::image::Sha256Digest;

/// Consecutive failed attempts (no byte received in between) before a download gives up.
const MAX_ATTEMPTS: u32 = 6;
/// First pause before retrying; doubled after each failure (0.25 s ... 8 s).
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Downloads a small blob (config) whole: size bounded before reading, size and digest
/// verified after.
pub fn fetch_small(
    registry: &Registry,
    repo: &str,
    desc: &Descriptor,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    let digest = Sha256Digest::parse(&desc.digest)?;
    if desc.size > limit {
        return Err(RegistryError::TooLarge {
            what: format!("{what} {digest} ({} bytes)", desc.size),
            limit,
        });
    }
    let path = format!("/v2/{repo}/blobs/{digest}");
    let response = registry.send(
        Method::GET,
        &path,
        &[],
        Payload::Empty,
        &pull_scope(repo),
        Redirects::AnyHostWithoutCredentials,
    )?;
    let response = expect_ok(response, &format!("{what} {digest}"))?;
    let bytes = read_bounded(response, desc.size.min(limit), what, &path)?;
    verify(&bytes, &digest, desc.size, what)?;
    Ok(bytes)
}

/// Checks the size and digest of downloaded bytes.
pub fn verify(
    bytes: &[u8],
    digest: &Sha256Digest,
    size: u64,
    what: &str,
) -> Result<(), RegistryError> {
    if bytes.len() as u64 != size {
        return Err(RegistryError::Image(
            crate::image::ImageError::SizeMismatch {
                what: format!("{what} {digest}"),
                expected: size,
                actual: bytes.len() as u64,
            },
        ));
    }
    let actual = Sha256Digest::of(bytes);
    if &actual != digest {
        return Err(RegistryError::Image(
            crate::image::ImageError::DigestMismatch {
                what: what.to_string(),
                expected: digest.to_string(),
                actual: actual.to_string(),
            },
        ));
    }
    Ok(())
}

/// The pull scope of a repository.
pub fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

/// A layer blob as a reader: at most `size` bytes, reconnecting with
/// `Range: bytes=OFFSET-` after a dropped connection or a short body, with backoff.
/// The digest is checked by whoever reads it (the import), over all the bytes.
pub struct BlobReader<'a> {
    registry: &'a Registry,
    repo: String,
    digest: Sha256Digest,
    size: u64,
    offset: u64,
    body: Option<Box<dyn Read + Send>>,
    failures: u32,
    cancel: &'a AtomicBool,
    /// Number of times the download was resumed (for messages and tests).
    pub resumed: u32,
}

impl<'a> BlobReader<'a> {
    /// A reader of blob `digest` (`size` bytes) of `repo`; `cancel` stops it early.
    pub fn new(
        registry: &'a Registry,
        repo: &str,
        digest: Sha256Digest,
        size: u64,
        cancel: &'a AtomicBool,
    ) -> Self {
        BlobReader {
            registry,
            repo: repo.to_string(),
            digest,
            size,
            offset: 0,
            body: None,
            failures: 0,
            cancel,
            resumed: 0,
        }
    }

    /// Opens the body at `self.offset`.
    fn open(&mut self) -> Result<Box<dyn Read + Send>, Attempt> {
        let mut headers = Vec::new();
        if self.offset > 0 {
            headers.push(("Range", format!("bytes={}-", self.offset)));
        }
        let path = format!("/v2/{}/blobs/{}", self.repo, self.digest);
        let response = self
            .registry
            .send(
                Method::GET,
                &path,
                &headers,
                Payload::Empty,
                &pull_scope(&self.repo),
                Redirects::AnyHostWithoutCredentials,
            )
            .map_err(|e| match e {
                RegistryError::Transport { .. } => Attempt::Retry(e.to_string()),
                other => Attempt::Fatal(other),
            })?;
        let status = response.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(Attempt::Retry(format!("HTTP {status}")));
        }
        if status == StatusCode::PARTIAL_CONTENT && self.offset > 0 {
            let start = response
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse::<u64>().ok());
            if start != Some(self.offset) {
                return Err(Attempt::Fatal(RegistryError::invalid(
                    format!("blob {}", self.digest),
                    format!(
                        "asked for bytes from {}, got Content-Range starting at {start:?}",
                        self.offset
                    ),
                )));
            }
            return Ok(Box::new(response.into_body().into_reader()));
        }
        let response =
            expect_ok(response, &format!("blob {}", self.digest)).map_err(Attempt::Fatal)?;
        let mut reader: Box<dyn Read + Send> = Box::new(response.into_body().into_reader());
        if self.offset > 0 {
            // The server ignored the Range: skip what was read before.
            let skipped = io::copy(&mut (&mut reader).take(self.offset), &mut io::sink())
                .map_err(|e| Attempt::Retry(e.to_string()))?;
            if skipped != self.offset {
                return Err(Attempt::Retry("short body".into()));
            }
        }
        Ok(reader)
    }

    fn fail(&mut self, reason: String) -> io::Result<()> {
        self.body = None;
        self.failures += 1;
        if self.failures >= MAX_ATTEMPTS {
            return Err(io::Error::other(format!(
                "download of blob {} failed {MAX_ATTEMPTS} times in a row at byte {} of {}: {reason}",
                self.digest, self.offset, self.size
            )));
        }
        let pause = FIRST_BACKOFF * 2u32.pow(self.failures - 1);
        tracing::warn!(blob = %self.digest, offset = self.offset, %reason, ?pause, "download interrupted; retrying");
        std::thread::sleep(pause);
        Ok(())
    }
}

enum Attempt {
    Retry(String),
    Fatal(RegistryError),
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(io::Error::other("cancelled"));
            }
            if self.offset >= self.size || buf.is_empty() {
                return Ok(0);
            }
            if self.body.is_none() {
                match self.open() {
                    Ok(body) => {
                        if self.offset > 0 {
                            self.resumed += 1;
                            tracing::info!(blob = %self.digest, offset = self.offset, "download resumed");
                        }
                        self.body = Some(body);
                    }
                    Err(Attempt::Retry(reason)) => {
                        self.fail(reason)?;
                        continue;
                    }
                    Err(Attempt::Fatal(e)) => return Err(io::Error::other(e.to_string())),
                }
            }
            let want = buf
                .len()
                .min((self.size - self.offset).min(usize::MAX as u64) as usize);
            let body = self.body.as_mut().expect("opened above");
            match body.read(&mut buf[..want]) {
                // A body that ended cleanly (its Content-Length reached) is the registry's
                // whole answer, not a dropped connection: no point in retrying.
                Ok(0) => {
                    return Err(io::Error::other(format!(
                    "size mismatch for blob {}: the registry sent {} bytes, the manifest says {}",
                    self.digest, self.offset, self.size
                )))
                }
                Ok(n) => {
                    self.offset += n as u64;
                    self.failures = 0;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.fail(e.to_string())?,
            }
        }
    }
}
