//! Tar streams of a container's files, read and written from outside the container
//! (`hull cp`, `hull export`): by the runtime on the host for process containers, and by
//! the guest agent inside a VM. The container's content is hostile and may change while it
//! is read (a running container): every path given by the user is resolved with
//! [`crate::in_root::open_in_root`] (symlinks and `..` stay inside the root), every entry
//! below it is opened relative to its parent with `O_NOFOLLOW` and checked to be what was
//! listed, so a symlink planted or swapped in by the container never leads outside its root
//! (docker's CVE-2018-15664). Nothing here loads code or reads configuration from the
//! container (CVE-2019-14271: docker's helper loaded the container's libnss).
//!
//! - [`read`]: a path of the root as a tar stream;
//! - [`write`]: a tar stream unpacked below a directory of the root.

pub mod read;
pub mod write;

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Most entries one archive may hold (either direction).
pub const MAX_ENTRIES: usize = 1_000_000;
/// Deepest directory nesting walked or created.
pub const MAX_DEPTH: usize = 512;

/// Errors of reading or writing a container's files.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A system call on `path` failed.
    #[error("{path}: {source}")]
    Io {
        /// The path inside the container (or the entry's name).
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The archive or the request is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// A bound was reached.
    #[error("{0}")]
    TooLarge(String),
}

impl ArchiveError {
    fn io(path: &Path, source: io::Error) -> ArchiveError {
        ArchiveError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// Whether the error is "no such file or directory".
    pub fn is_not_found(&self) -> bool {
        matches!(self, ArchiveError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

fn cstr(name: &std::ffi::OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)` (`name` empty: `dir` itself).
fn stat_at(dir: std::os::fd::BorrowedFd<'_>, name: &std::ffi::OsStr) -> io::Result<libc::stat> {
    use std::os::fd::AsRawFd;
    let c = cstr(name)?;
    let flags = if name.is_empty() {
        libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW
    } else {
        libc::AT_SYMLINK_NOFOLLOW
    };
    // SAFETY: stat is plain data, written by the kernel.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid dirfd, NUL-terminated name, a stat buffer of the right type.
    let r = unsafe { libc::fstatat(dir.as_raw_fd(), c.as_ptr(), &mut st, flags) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// The file type bits of a mode.
fn kind(mode: u32) -> u32 {
    mode & libc::S_IFMT
}

#[cfg(test)]
mod tests;
