//! A tar stream unpacked below a directory. Each entry's parent is resolved from that
//! directory (inside the container's root, or with no symlink at all on the host side,
//! [`Resolve`]); the entry itself is made relative to the parent's descriptor with
//! `O_NOFOLLOW`/`AT_SYMLINK_NOFOLLOW`, an existing non-directory in its place removed first,
//! so no symlink (planted by the container, or by an earlier entry of a hostile archive)
//! is ever written through.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::{cstr, kind, stat_at, ArchiveError, MAX_DEPTH, MAX_ENTRIES};

/// How an entry's parent directory is looked up from the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// Symlinks are followed, inside the root the destination descriptor belongs to
    /// (`hull cp` into a container: the container's own links, as docker resolves them).
    InRoot,
    /// No symlink is followed and nothing outside the destination is reached (the host
    /// side: an archive from a container can never write through a link it made).
    Beneath,
}

/// Who owns what is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// The caller (root: 0:0), as docker's `cp` makes files.
    Caller,
    /// The archive's uid/gid (`cp -a`).
    Archive,
}

/// How to unpack.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// Parent lookups.
    pub resolve: Resolve,
    /// Owners.
    pub ownership: Ownership,
    /// Keep setuid/setgid/sticky bits (off on the host side).
    pub special_bits: bool,
}

/// What [`unpack_tar`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteStats {
    /// Entries made.
    pub entries: usize,
    /// Entries not made (device nodes, hard links), by name.
    pub skipped: Vec<String>,
}

/// The destination of an unpack: a directory descriptor, and for [`Resolve::InRoot`] the
/// root it belongs to with the directory's path in it.
pub struct Destination<'a> {
    /// The root (InRoot) or the destination directory itself (Beneath).
    pub base: BorrowedFd<'a>,
    /// The destination's path from `base` (InRoot), or empty (Beneath).
    pub path: PathBuf,
}

fn openat2(dir: BorrowedFd<'_>, path: &Path, flags: i32, resolve: u64) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: open_how is plain data; zero is valid for all fields.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    // SAFETY: valid dirfd, NUL-terminated path, open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An archive path as plain names (no root, `..` or `.` other than a leading `./`).
fn entry_path(p: &Path) -> Result<PathBuf, ArchiveError> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => {
                return Err(ArchiveError::Invalid(format!(
                    "archive entry {:?} leaves its directory",
                    p.display()
                )))
            }
        }
    }
    if out.components().count() > MAX_DEPTH {
        return Err(ArchiveError::TooLarge(format!(
            "archive entry {:?}: deeper than {MAX_DEPTH} directories",
            p.display()
        )));
    }
    Ok(out)
}

/// Unpacks the tar stream `input` below `dest`.
pub fn unpack_tar<R: Read>(
    dest: &Destination<'_>,
    input: R,
    opts: WriteOptions,
) -> Result<WriteStats, ArchiveError> {
    let mut archive = tar::Archive::new(input);
    let mut stats = WriteStats::default();
    let entries = archive
        .entries()
        .map_err(|e| ArchiveError::Invalid(format!("archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ArchiveError::Invalid(format!("archive: {e}")))?;
        if stats.entries + stats.skipped.len() >= MAX_ENTRIES {
            return Err(ArchiveError::TooLarge(format!(
                "archive: more than {MAX_ENTRIES} entries"
            )));
        }
        let raw = entry
            .path()
            .map_err(|e| ArchiveError::Invalid(format!("archive entry name: {e}")))?
            .into_owned();
        let rel = entry_path(&raw)?;
        let (Some(name), parent) = (rel.file_name().map(OsStr::to_os_string), rel.parent()) else {
            // The destination itself (`.`): nothing to make.
            continue;
        };
        let parent = parent.unwrap_or(Path::new(""));
        let shown = dest.path.join(&rel);
        let err = |e: io::Error| ArchiveError::io(&shown, e);
        let dir = open_parent(dest, parent, opts.resolve).map_err(err)?;
        let made = make(&dir, &name, &mut entry, opts).map_err(err)?;
        if made {
            stats.entries += 1;
        } else {
            stats.skipped.push(shown.display().to_string());
        }
    }
    Ok(stats)
}

fn open_parent(dest: &Destination<'_>, parent: &Path, resolve: Resolve) -> io::Result<OwnedFd> {
    let flags = libc::O_PATH | libc::O_DIRECTORY;
    match resolve {
        Resolve::InRoot => openat2(
            dest.base,
            &dest.path.join(parent),
            flags,
            libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
        ),
        Resolve::Beneath => {
            let p = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            openat2(
                dest.base,
                p,
                flags,
                libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
            )
        }
    }
}

/// Removes whatever non-directory is at `name` (a directory stays: a non-directory entry
/// there fails with EISDIR-like errors from the kernel, as docker refuses it).
fn clear(dir: &OwnedFd, name: &CString, keep_dir: bool) -> io::Result<bool> {
    match stat_at(dir.as_fd(), OsStr::from_bytes(name.as_bytes())) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
        Ok(st) if kind(st.st_mode) == libc::S_IFDIR => {
            if keep_dir {
                Ok(true)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "cannot overwrite a directory with a non-directory",
                ))
            }
        }
        Ok(_) => {
            // SAFETY: valid dirfd, NUL-terminated single name.
            check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) })?;
            Ok(false)
        }
    }
}

/// Makes one entry in `dir`; false when its kind is not made (devices, hard links).
fn make<R: Read>(
    dir: &OwnedFd,
    name: &OsStr,
    entry: &mut tar::Entry<'_, R>,
    opts: WriteOptions,
) -> io::Result<bool> {
    let c = cstr(name)?;
    let h = entry.header();
    let mask = if opts.special_bits { 0o7777 } else { 0o777 };
    let mode = h.mode()? & mask;
    let owner = match opts.ownership {
        Ownership::Caller => None,
        Ownership::Archive => Some((h.uid()? as u32, h.gid()? as u32)),
    };
    let mtime = h.mtime().unwrap_or(0);
    let d = dir.as_raw_fd();
    match h.entry_type() {
        tar::EntryType::Directory => {
            if !clear(dir, &c, true)? {
                // SAFETY: valid dirfd, NUL-terminated name.
                check(unsafe { libc::mkdirat(d, c.as_ptr(), 0o700) })?;
            }
            let fd = openat2(
                dir.as_fd(),
                Path::new(name),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
            )?;
            finish(&fd, owner, mode, None)?;
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            clear(dir, &c, false)?;
            // SAFETY: valid dirfd, NUL-terminated name; O_EXCL|O_NOFOLLOW: a new file only.
            let raw = unsafe {
                libc::openat(
                    d,
                    c.as_ptr(),
                    libc::O_WRONLY
                        | libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    0o600,
                )
            };
            check(raw)?;
            // SAFETY: a new descriptor nothing else owns.
            let mut file = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
            io::copy(entry, &mut file)?;
            finish(&OwnedFd::from(file), owner, mode, Some(mtime))?;
        }
        tar::EntryType::Symlink => {
            let target = entry.link_name()?.ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "symlink without target")
            })?;
            let t = cstr(target.as_os_str())?;
            clear(dir, &c, false)?;
            // SAFETY: valid dirfd, NUL-terminated target and name.
            check(unsafe { libc::symlinkat(t.as_ptr(), d, c.as_ptr()) })?;
            if let Some((uid, gid)) = owner {
                // SAFETY: valid dirfd and name; the link itself, not its target.
                check(unsafe {
                    libc::fchownat(d, c.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW)
                })?;
            }
        }
        tar::EntryType::Fifo => {
            clear(dir, &c, false)?;
            // SAFETY: valid dirfd, NUL-terminated name; a FIFO node.
            check(unsafe { libc::mknodat(d, c.as_ptr(), libc::S_IFIFO | 0o600, 0) })?;
            if let Some((uid, gid)) = owner {
                // SAFETY: as above.
                check(unsafe {
                    libc::fchownat(d, c.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW)
                })?;
            }
            // SAFETY: valid dirfd and name; a FIFO made just now (no symlink).
            check(unsafe { libc::fchmodat(d, c.as_ptr(), mode, 0) })?;
        }
        // Device nodes and hard links are not made: a copy must not open devices, and a
        // hard link names a file elsewhere.
        _ => return Ok(false),
    }
    Ok(true)
}

/// Owner, then mode (chown clears setuid), then mtime, all on the descriptor.
fn finish(
    fd: &OwnedFd,
    owner: Option<(u32, u32)>,
    mode: u32,
    mtime: Option<u64>,
) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    if let Some((uid, gid)) = owner {
        // SAFETY: a descriptor we own.
        check(unsafe { libc::fchown(raw, uid, gid) })?;
    }
    // SAFETY: as above.
    check(unsafe { libc::fchmod(raw, mode) })?;
    if let Some(secs) = mtime {
        let times = [
            libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
            libc::timespec {
                tv_sec: secs.min(i64::MAX as u64) as i64,
                tv_nsec: 0,
            },
        ];
        // SAFETY: a descriptor we own, two timespecs.
        check(unsafe { libc::futimens(raw, times.as_ptr()) })?;
    }
    Ok(())
}
