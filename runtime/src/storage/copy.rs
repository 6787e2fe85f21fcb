//! `hull cp` and `hull export` of process containers: the container's root as a directory
//! descriptor, read and written with the executor's tar streams
//! ([`hull_executor::archive`]: paths resolved inside the root, nothing below followed).
//!
//! A running container's root is its init's `/proc/PID/root` (what its processes see,
//! volumes included), opened between a pidfd of the init and a check that the pidfd's
//! process is still alive, so a recycled PID cannot hand over another process's root. A
//! stopped container's root is assembled for this command alone: an overlay of its image
//! layers and writable layer, mounted in a mount namespace private to the calling thread
//! (it goes with the process whatever happens: nothing to clean up), under the container's
//! lock so that no `start` mounts the same layer meanwhile.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::container::state::{ContainerLock, ContainerState, ContainerStore, Status};
use crate::isolation::IsolationKind;

/// Errors of reaching a container's files.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading or writing the files.
    #[error(transparent)]
    Archive(#[from] hull_executor::archive::ArchiveError),
    /// The container's record or lock.
    #[error(transparent)]
    Store(#[from] crate::container::state::StoreError),
    /// A system call failed.
    #[error("{what}: {source}")]
    Os {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Not possible for this container.
    #[error("{0}")]
    Unsupported(String),
}

fn os(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CopyError {
    let what = what.into();
    move |source| CopyError::Os { what, source }
}

/// A container's root directory, open.
pub struct ContainerRoot {
    dir: OwnedFd,
    /// Held while a stopped container's layer is mounted here.
    _lock: Option<ContainerLock>,
}

impl ContainerRoot {
    /// The root's descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }
}

fn check(r: libc::c_int, what: &str) -> Result<(), CopyError> {
    if r < 0 {
        return Err(os(what)(std::io::Error::last_os_error()));
    }
    Ok(())
}

fn open_dir(path: &Path) -> Result<OwnedFd, CopyError> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| CopyError::Unsupported(format!("{}: NUL in path", path.display())))?;
    // SAFETY: NUL-terminated path; the result is checked.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    check(fd, &format!("open {}", path.display()))?;
    // SAFETY: a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The root of a running container's init `pid`.
fn running_root(pid: u32) -> Result<OwnedFd, CopyError> {
    // SAFETY: pidfd_open with no flags; the result is checked.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) } as i32;
    check(pidfd, "pidfd_open of the container's init")?;
    // SAFETY: a new descriptor nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let dir = open_dir(Path::new(&format!("/proc/{pid}/root")))?;
    // Still the process the pidfd names: the root opened is its root.
    // SAFETY: valid pidfd, signal 0 (a check), no siginfo.
    let alive = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if alive != 0 {
        return Err(CopyError::Unsupported(
            "the container stopped while its files were opened".into(),
        ));
    }
    Ok(dir)
}

/// Mounts a stopped container's root in a mount namespace of this thread's own, over its
/// state directory (which exists, and which only this thread then sees covered).
fn stopped_root(
    store: &ContainerStore,
    state: &ContainerState,
    write: bool,
) -> Result<(OwnedFd, ContainerLock), CopyError> {
    let lock = store.lock(&state.id)?;
    let ctx = store.context(&state.id);
    let dirs = super::layer_dirs(&ctx);
    // SAFETY: unshare of the calling thread's mount namespace.
    let r = unsafe { libc::unshare(libc::CLONE_NEWNS) };
    check(r, "unshare the mount namespace")?;
    // SAFETY: constant strings; makes every mount private so nothing propagates out.
    let r = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    check(r, "make the mounts private")?;
    let mut lower: Vec<String> = Vec::new();
    if !write {
        // Read-only: the writable layer is the topmost lower layer (its whiteouts and
        // opaque directories count there as well); its work directory is not touched.
        lower.push(dirs.upper.display().to_string());
    }
    lower.extend(
        state
            .spec
            .layers
            .iter()
            .rev()
            .map(|l| l.display().to_string()),
    );
    if lower.iter().any(|l| l.contains([':', ',', '\\'])) {
        return Err(CopyError::Unsupported(
            "a layer path holds ':' or ',', which overlay options cannot carry".into(),
        ));
    }
    let mut data = format!("lowerdir={}", lower.join(":"));
    if write {
        data.push_str(&format!(
            ",upperdir={},workdir={}",
            dirs.upper.display(),
            dirs.work.display()
        ));
    }
    let (flags, data) = (
        if write { 0 } else { libc::MS_RDONLY } | libc::MS_NODEV | libc::MS_NOSUID,
        CString::new(data).map_err(|_| CopyError::Unsupported("NUL in a layer path".into()))?,
    );
    let target = CString::new(ctx.state_dir.as_os_str().as_bytes())
        .map_err(|_| CopyError::Unsupported("NUL in the state path".into()))?;
    // SAFETY: NUL-terminated strings; the result is checked.
    let r = unsafe {
        libc::mount(
            c"overlay".as_ptr(),
            target.as_ptr(),
            c"overlay".as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    check(r, "mount the container's layers")?;
    Ok((open_dir(&ctx.state_dir)?, lock))
}

/// Opens the root of process container `state` (`write`: to change it).
pub fn open_root(
    store: &ContainerStore,
    state: &ContainerState,
    write: bool,
) -> Result<ContainerRoot, CopyError> {
    if state.isolation != IsolationKind::Process {
        return Err(CopyError::Unsupported(
            "not available for --isolation=vm containers yet: their files are on a disk \
             only the guest reads (hull never mounts a disk a guest wrote), so they have to \
             come through the guest agent"
                .into(),
        ));
    }
    match (state.status, state.pid) {
        (Status::Running, Some(pid)) => Ok(ContainerRoot {
            dir: running_root(pid)?,
            _lock: None,
        }),
        _ => {
            let (dir, lock) = stopped_root(store, state, write)?;
            Ok(ContainerRoot {
                dir,
                _lock: Some(lock),
            })
        }
    }
}

/// What is at `path` in the root: `Some(true)` a directory, `Some(false)` something else,
/// `None` nothing (symlinks followed inside the root).
pub fn kind_in_root(root: BorrowedFd<'_>, path: &Path) -> Result<Option<bool>, CopyError> {
    match hull_executor::in_root::open_in_root(root, path, libc::O_PATH) {
        Ok(fd) => {
            let meta = File::from(fd)
                .metadata()
                .map_err(os(format!("stat {}", path.display())))?;
            Ok(Some(meta.is_dir()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(os(format!("{}", path.display()))(e)),
    }
}
