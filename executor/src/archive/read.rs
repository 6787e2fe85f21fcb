//! A path of a root filesystem as a tar stream. The path is resolved inside the root; the
//! walk below it opens every entry relative to its directory with `O_NOFOLLOW` and reads
//! it through the descriptor it opened (never by name again), so a container renaming
//! things while it is read can at worst change what is listed, never where it is read.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{cstr, kind, stat_at, ArchiveError, MAX_DEPTH, MAX_ENTRIES};
use crate::in_root::open_in_root;

/// What [`write_tar`] wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadStats {
    /// Entries in the archive.
    pub entries: usize,
    /// Sockets left out (tar cannot hold them).
    pub skipped: usize,
}

/// Writes `path` of the root at `root` to `out` as a tar stream: as an entry named `name`
/// (a directory with everything below it), or, with `name` `None`, the directory's
/// contents alone (`hull export`). With `one_file_system` the walk lists mount points but
/// does not enter them (`/proc`, `/sys`, volumes...).
pub fn write_tar<W: Write>(
    root: BorrowedFd<'_>,
    path: &Path,
    name: Option<&Path>,
    one_file_system: bool,
    out: W,
) -> Result<(W, ReadStats), ArchiveError> {
    let top = open_in_root(root, path, libc::O_PATH | libc::O_NOFOLLOW)
        .map_err(|e| ArchiveError::io(path, e))?;
    let st = stat_at(top.as_fd(), "".as_ref()).map_err(|e| ArchiveError::io(path, e))?;
    let mut builder = tar::Builder::new(out);
    let mut walk = Walk {
        builder: &mut builder,
        stats: ReadStats::default(),
        device: st.st_dev,
        one_file_system,
    };
    match name {
        Some(name) => walk.entry(top, &st, name, path, 0)?,
        None if kind(st.st_mode) == libc::S_IFDIR => {
            walk.children(&top, Path::new(""), path, 0)?;
        }
        None => {
            return Err(ArchiveError::Invalid(format!(
                "{}: not a directory",
                path.display()
            )))
        }
    }
    let stats = walk.stats;
    let out = builder
        .into_inner()
        .map_err(|e| ArchiveError::io(path, e))?;
    Ok((out, stats))
}

struct Walk<'b, W: Write> {
    builder: &'b mut tar::Builder<W>,
    stats: ReadStats,
    /// The device of the walk's top (for `one_file_system`).
    device: libc::dev_t,
    one_file_system: bool,
}

/// Reopens an `O_PATH` descriptor for reading: through its /proc/self/fd magic link, which
/// names the very file the descriptor holds (no lookup by name).
fn reopen(fd: &OwnedFd, flags: i32) -> io::Result<File> {
    let link = format!("/proc/self/fd/{}\0", fd.as_raw_fd());
    // SAFETY: NUL-terminated path; the result is checked.
    let raw = unsafe { libc::open(link.as_ptr().cast(), flags | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(raw) }))
}

/// The target of the symlink held by an `O_PATH | O_NOFOLLOW` descriptor.
fn read_link(fd: &OwnedFd) -> io::Result<PathBuf> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: valid fd, empty path (the fd itself), a buffer of the length passed.
    let n = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(&buf)))
}

/// Reads exactly `left` bytes: a file that shrank while it was read is padded with zeros,
/// one that grew is cut, so the archive stays well formed.
struct Exactly<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = match self.inner.read(&mut buf[..want])? {
            0 => {
                buf[..want].fill(0);
                want
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}

impl<W: Write> Walk<'_, W> {
    /// One entry, `fd` an `O_PATH | O_NOFOLLOW` descriptor of it; `shown` names it in errors.
    fn entry(
        &mut self,
        fd: OwnedFd,
        st: &libc::stat,
        name: &Path,
        shown: &Path,
        depth: usize,
    ) -> Result<(), ArchiveError> {
        self.stats.entries += 1;
        if self.stats.entries > MAX_ENTRIES {
            return Err(ArchiveError::TooLarge(format!(
                "more than {MAX_ENTRIES} entries"
            )));
        }
        let err = |e: io::Error| ArchiveError::io(shown, e);
        let mut h = tar::Header::new_gnu();
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(st.st_uid.into());
        h.set_gid(st.st_gid.into());
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        match kind(st.st_mode) {
            libc::S_IFDIR => {
                h.set_entry_type(tar::EntryType::Directory);
                self.builder
                    .append_data(&mut h, name, io::empty())
                    .map_err(err)?;
                if self.one_file_system && st.st_dev != self.device {
                    return Ok(());
                }
                self.children(&fd, name, shown, depth + 1)
            }
            libc::S_IFREG => {
                let file = reopen(&fd, libc::O_RDONLY | libc::O_NOCTTY).map_err(err)?;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(st.st_size as u64);
                let data = Exactly {
                    inner: file,
                    left: st.st_size as u64,
                };
                self.builder.append_data(&mut h, name, data).map_err(err)
            }
            libc::S_IFLNK => {
                let target = read_link(&fd).map_err(err)?;
                h.set_entry_type(tar::EntryType::Symlink);
                self.builder.append_link(&mut h, name, target).map_err(err)
            }
            libc::S_IFCHR | libc::S_IFBLK => {
                h.set_entry_type(if kind(st.st_mode) == libc::S_IFCHR {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                });
                h.set_device_major(libc::major(st.st_rdev)).map_err(err)?;
                h.set_device_minor(libc::minor(st.st_rdev)).map_err(err)?;
                self.builder
                    .append_data(&mut h, name, io::empty())
                    .map_err(err)
            }
            libc::S_IFIFO => {
                h.set_entry_type(tar::EntryType::Fifo);
                self.builder
                    .append_data(&mut h, name, io::empty())
                    .map_err(err)
            }
            _ => {
                self.stats.skipped += 1;
                Ok(())
            }
        }
    }

    /// The entries of directory `fd`, by name order.
    fn children(
        &mut self,
        fd: &OwnedFd,
        name: &Path,
        shown: &Path,
        depth: usize,
    ) -> Result<(), ArchiveError> {
        if depth > MAX_DEPTH {
            return Err(ArchiveError::TooLarge(format!(
                "{}: deeper than {MAX_DEPTH} directories",
                shown.display()
            )));
        }
        let err = |e: io::Error| ArchiveError::io(shown, e);
        let dir = reopen(fd, libc::O_RDONLY | libc::O_DIRECTORY).map_err(err)?;
        let list = format!("/proc/self/fd/{}", dir.as_raw_fd());
        let mut names: Vec<OsString> = Vec::new();
        for e in std::fs::read_dir(&list).map_err(err)? {
            names.push(e.map_err(err)?.file_name());
            if names.len() > MAX_ENTRIES {
                return Err(ArchiveError::TooLarge(format!(
                    "{}: more than {MAX_ENTRIES} entries",
                    shown.display()
                )));
            }
        }
        names.sort();
        for n in names {
            let c = cstr(&n).map_err(err)?;
            // SAFETY: valid dirfd, NUL-terminated single-component name.
            let raw = unsafe {
                libc::openat(
                    dir.as_raw_fd(),
                    c.as_ptr(),
                    libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            };
            let child_shown = shown.join(&n);
            if raw < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::NotFound {
                    // Removed while listed (a running container).
                    continue;
                }
                return Err(ArchiveError::io(&child_shown, e));
            }
            // SAFETY: a new descriptor nothing else owns.
            let child = unsafe { OwnedFd::from_raw_fd(raw) };
            let st = stat_at(child.as_fd(), "".as_ref())
                .map_err(|e| ArchiveError::io(&child_shown, e))?;
            self.entry(child, &st, &name.join(&n), &child_shown, depth)?;
        }
        Ok(())
    }
}
