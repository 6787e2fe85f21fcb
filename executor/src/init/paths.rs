//! Creating mount targets and the working directory inside the container root, after the
//! switch into it: every lookup is openat2 with RESOLVE_IN_ROOT (symlinks and `..` stay
//! inside the root, magic links are refused); a missing component is made with mkdirat in
//! its parent, and a symlink that points nowhere is followed — inside the root — to create
//! what it names, as runc does. No allocation: paths are composed in stack buffers.

use std::ffi::CStr;
use std::io;

use crate::sys::{Fd, Sys};

/// Symlinks followed while creating one path (the kernel's limit).
const MAX_SYMLINKS: usize = 40;
/// Longest path handled (PATH_MAX).
const PATH_MAX: usize = 4096;

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// Opens directory `path` (O_PATH), creating it and its parents if missing.
pub fn ensure_dir(sys: &dyn Sys, path: &CStr) -> io::Result<Fd> {
    ensure(sys, path, true, 0)
}

/// Opens `path` (O_PATH), creating a directory (`dir`) or an empty file there if missing.
pub fn ensure_target(sys: &dyn Sys, path: &CStr, dir: bool) -> io::Result<Fd> {
    ensure(sys, path, dir, 0)
}

/// The parent directory's descriptor (created if missing) and the last name of `path`.
pub fn parent_of<'p>(sys: &dyn Sys, path: &'p CStr) -> io::Result<(Fd, &'p CStr)> {
    parent_at(sys, path, 0)
}

fn split(path: &CStr) -> io::Result<(&[u8], &CStr)> {
    let bytes = path.to_bytes_with_nul();
    let slash = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|&b| b == b'/')
        .ok_or_else(|| errno(libc::EINVAL))?;
    let name = CStr::from_bytes_with_nul(&bytes[slash + 1..]).map_err(|_| errno(libc::EINVAL))?;
    if name.is_empty() || name.to_bytes() == b"." || name.to_bytes() == b".." {
        return Err(errno(libc::EINVAL));
    }
    // "/" for a top-level name.
    Ok((&bytes[..slash.max(1)], name))
}

fn parent_at<'p>(sys: &dyn Sys, path: &'p CStr, depth: usize) -> io::Result<(Fd, &'p CStr)> {
    let (dir, name) = split(path)?;
    let mut buf = [0u8; PATH_MAX];
    if dir.len() >= buf.len() {
        return Err(errno(libc::ENAMETOOLONG));
    }
    buf[..dir.len()].copy_from_slice(dir);
    let dir = CStr::from_bytes_with_nul(&buf[..=dir.len()]).map_err(|_| errno(libc::EINVAL))?;
    Ok((ensure(sys, dir, true, depth)?, name))
}

fn ensure(sys: &dyn Sys, path: &CStr, dir: bool, depth: usize) -> io::Result<Fd> {
    if depth > MAX_SYMLINKS {
        return Err(errno(libc::ELOOP));
    }
    let flags = if dir {
        libc::O_PATH | libc::O_DIRECTORY
    } else {
        libc::O_PATH
    };
    match sys.open_in_root(path, flags) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) && path.to_bytes() != b"/" => {}
        other => return other,
    }
    let (parent, name) = parent_at(sys, path, depth)?;
    let made = if dir {
        sys.mkdir_at(parent, name, 0o755)
    } else {
        sys.create_file_at(parent, name, 0o644)
    };
    let result = match made {
        Ok(()) => Ok(None),
        // Made meanwhile, or a symlink to nowhere: follow it inside the root.
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            follow(sys, parent, name, path, dir, depth)
        }
        Err(e) => Err(e),
    };
    sys.close(parent);
    match result? {
        Some(fd) => Ok(fd),
        None => sys.open_in_root(path, flags),
    }
}

/// When `name` in `parent` is a symlink, creates what it points to (relative to `path`'s
/// directory, or to the root) and returns it; `None` when it is not a symlink.
fn follow(
    sys: &dyn Sys,
    parent: Fd,
    name: &CStr,
    path: &CStr,
    dir: bool,
    depth: usize,
) -> io::Result<Option<Fd>> {
    let mut target = [0u8; PATH_MAX];
    let n = match sys.readlink_at(parent, name, &mut target) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(None),
        Err(e) => return Err(e),
    };
    if n == 0 || n >= target.len() {
        return Err(errno(libc::ENAMETOOLONG));
    }
    let mut next = [0u8; PATH_MAX];
    let mut len = 0;
    let mut push = |bytes: &[u8]| -> io::Result<()> {
        if len + bytes.len() + 1 >= next.len() {
            return Err(errno(libc::ENAMETOOLONG));
        }
        next[len..len + bytes.len()].copy_from_slice(bytes);
        len += bytes.len();
        Ok(())
    };
    if target[0] != b'/' {
        let (dir_part, _) = split(path)?;
        push(dir_part)?;
        push(b"/")?;
    }
    push(&target[..n])?;
    if target[..n].contains(&0) {
        return Err(errno(libc::EINVAL));
    }
    let next = CStr::from_bytes_with_nul(&next[..=len]).map_err(|_| errno(libc::EINVAL))?;
    ensure(sys, next, dir, depth + 1).map(Some)
}
