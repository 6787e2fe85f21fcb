//! Named network namespaces: a namespace kept alive by a bind mount of its nsfs file onto
//! a plain file (what `ip netns add` and podman do), so CNI plugins, the container and the
//! VMM can all find it by path, and it outlives any one process.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;

/// `NSFS_MAGIC` from linux/magic.h: the filesystem of /proc/PID/ns/* files.
const NSFS_MAGIC: nix::sys::statfs::FsType = nix::sys::statfs::FsType(0x6e73_6673);

/// Creates a new network namespace and pins it at `path` (a new file).
///
/// The namespace is made by a short-lived helper thread (unshare affects only the calling
/// thread), so the caller's own namespace never changes.
pub fn create(path: &Path) -> io::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    let pinned = std::thread::scope(|s| {
        s.spawn(|| -> io::Result<()> {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET)?;
            mount(
                Some("/proc/thread-self/ns/net"),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )?;
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("netns helper thread panicked")))
    });
    if let Err(e) = pinned {
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(())
}

/// Whether `path` is a pinned namespace (an nsfs mount), not just the file under it.
pub fn is_pinned(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

/// Opens the namespace at `path` for setns(2).
pub fn open(path: &Path) -> io::Result<OwnedFd> {
    if !is_pinned(path) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is not a network namespace", path.display()),
        ));
    }
    // std opens with O_CLOEXEC: the descriptor reaches no program hull runs.
    Ok(fs::File::open(path)?.into())
}

/// Unpins and removes the namespace file. The namespace itself ends when nothing else
/// uses it (its interfaces go with it). Missing is fine.
pub fn remove(path: &Path) -> io::Result<()> {
    if is_pinned(path) {
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Runs `f` on a helper thread that has joined the namespace at `path` (the caller's
/// thread stays where it is).
pub fn run_in<T: Send>(path: &Path, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let ns = open(path)?;
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("netns helper thread panicked")))
    })
}
