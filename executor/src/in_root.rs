//! Opening files of a container's root filesystem from outside it (the agent, or the
//! runtime before the container runs) without letting the container's content choose
//! what is opened: symlinks and `..` resolve inside the root, magic links are refused,
//! and only bounded regular files are read.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// openat2(2) of `path` beneath `dirfd`, treating `dirfd` as the root: `..` and absolute
/// symlinks stay inside it and magic links (/proc/self/fd/...) are refused.
pub fn open_in_root(dirfd: BorrowedFd<'_>, path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: open_how is plain data; zero is valid for all fields.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid dirfd, NUL-terminated path, open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Reads the text file `path` of the root filesystem at `root`, at most `limit` bytes.
/// `None` when it is absent or not a regular file: a FIFO, device or directory planted
/// there by the image (or by a running container) can neither block nor flood the reader.
pub fn read_small_file(root: &Path, path: &Path, limit: u64) -> Option<String> {
    let dir = File::open(root).ok()?;
    let fd = open_in_root(
        std::os::fd::AsFd::as_fd(&dir),
        path,
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
    )
    .ok()?;
    let file = File::from(fd);
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root_and_only_regular_files_are_read() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "host secret\n").unwrap();
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        std::fs::write(etc.join("passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        symlink(outside.path().join("secret"), etc.join("escape")).unwrap();
        symlink("../../../../passwd", etc.join("dotdot")).unwrap();
        nix::unistd::mkfifo(
            &etc.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let read = |p: &str| read_small_file(root.path(), Path::new(p), 1 << 20);

        assert_eq!(
            read("/etc/passwd").as_deref(),
            Some("root:x:0:0::/root:/bin/sh\n")
        );
        // An absolute symlink is taken relative to the root, where there is no such file.
        assert_eq!(read("/etc/escape"), None);
        // `..` stops at the root: ../../../../passwd is /passwd, which does not exist.
        assert_eq!(read("/etc/dotdot"), None);
        assert_eq!(read("/etc/fifo"), None, "a FIFO must not block the reader");
        assert_eq!(read("/etc"), None);
        assert_eq!(
            read_small_file(root.path(), Path::new("/etc/passwd"), 4).as_deref(),
            Some("root")
        );
    }
}
