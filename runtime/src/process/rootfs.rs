//! The container's root filesystem, set up by the init process inside its own mount
//! namespace (so no mount is ever visible on the host, and all of them vanish with the
//! namespace when the container's last process exits):
//!
//! 1. `/` becomes private, so nothing propagates back to the host;
//! 2. overlayfs of the image layers plus the container's upper/work directories;
//! 3. host sources of volumes are opened (O_PATH) while the host is still visible;
//! 4. pivot_root into the overlay; the old root is detached;
//! 5. /proc, a minimal /dev (tmpfs with null zero full random urandom tty, devpts with its
//!    own ptmx, shm, mqueue), /sys read-only;
//! 6. volumes, then docker's masked and read-only paths, then `--read-only`.
//!
//! From step 4 on the process's root is the container root, so `..` and absolute symlinks
//! cannot lead out of it; mount targets are also resolved with openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS) so a symlink to /proc/self/fd/N cannot redirect a mount onto a
//! host file. No other process runs in the container yet, so nothing can race us.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use crate::isolation::Volume;

use super::syscalls::open_in_root;

/// Paths docker hides from containers (kernel internals, host hardware details).
const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths docker makes read-only (kernel tunables).
const READ_ONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Device nodes of the minimal /dev: (name, major, minor).
const DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Largest overlay option string the kernel takes in one mount call.
const MAX_MOUNT_DATA: usize = 4000;

/// What the init process needs to build the root filesystem.
pub struct RootfsPlan<'a> {
    /// Mount point of the overlay (an empty directory in the container's state dir).
    pub rootfs: &'a Path,
    /// Image layers, lowest first.
    pub layers: &'a [PathBuf],
    /// Per-container writable layer and overlay work directory.
    pub upper: &'a Path,
    /// Overlay work directory (same filesystem as `upper`).
    pub work: &'a Path,
    /// Remount the root read-only at the end.
    pub read_only: bool,
    /// Bind mounts.
    pub volumes: &'a [Volume],
}

fn err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Builds the root filesystem and pivots into it. Runs in the init process, in its new
/// mount namespace. Afterwards `/` is the container root.
pub fn enter(plan: &RootfsPlan<'_>) -> Result<(), String> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| err("make / private", e))?;
    mount_overlay(plan)?;
    let sources = plan
        .volumes
        .iter()
        .map(|v| {
            File::options()
                .read(true)
                .custom_flags_path()
                .open(&v.host)
                .map(OwnedFd::from)
                .map_err(|e| err(format!("volume source {}", v.host.display()), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    pivot(plan.rootfs)?;
    mount_proc()?;
    mount_dev()?;
    mount_sys()?;
    for (volume, source) in plan.volumes.iter().zip(&sources) {
        bind_volume(volume, source)?;
    }
    drop(sources);
    for path in MASKED {
        mask(path)?;
    }
    for path in READ_ONLY {
        make_read_only(path)?;
    }
    if plan.read_only {
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| err("remount / read-only", e))?;
    }
    Ok(())
}

/// `OpenOptions` for an O_PATH descriptor (a handle on a path, not its content).
trait PathOnly {
    fn custom_flags_path(&mut self) -> &mut Self;
}

impl PathOnly for std::fs::OpenOptions {
    fn custom_flags_path(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_PATH | libc::O_CLOEXEC)
    }
}

fn mount_overlay(plan: &RootfsPlan<'_>) -> Result<(), String> {
    if plan.layers.is_empty() {
        return Err("image has no layers".into());
    }
    let mut lower = String::new();
    for layer in plan.layers.iter().rev() {
        let s = layer.to_str().ok_or("layer path is not UTF-8")?;
        if s.contains([':', ',']) {
            return Err(format!("layer path {s:?} contains ':' or ','"));
        }
        if !lower.is_empty() {
            lower.push(':');
        }
        lower.push_str(s);
    }
    let data = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        plan.upper.display(),
        plan.work.display()
    );
    if data.len() > MAX_MOUNT_DATA {
        return Err(format!(
            "too many image layers for one overlay mount ({} layers)",
            plan.layers.len()
        ));
    }
    mount(
        Some("overlay"),
        plan.rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| err("mount overlay root filesystem", e))
}

fn pivot(rootfs: &Path) -> Result<(), String> {
    nix::unistd::chdir(rootfs).map_err(|e| err("chdir into rootfs", e))?;
    // pivot_root(".", "."): the old root ends up stacked on top of the new one, and is
    // detached right away; no directory for it is needed inside the image.
    nix::unistd::pivot_root(".", ".").map_err(|e| err("pivot_root", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| err("detach old root", e))?;
    nix::unistd::chdir("/").map_err(|e| err("chdir /", e))?;
    Ok(())
}

/// Creates `path` (and missing parents) inside the root, without following symlinks out
/// of it or through magic links; `dir` selects a directory or an empty file as the last
/// component. Returns an O_PATH descriptor of the result.
fn ensure_in_root(path: &str, dir: bool) -> Result<OwnedFd, String> {
    let root = File::open("/").map_err(|e| err("open /", e))?;
    let rel = Path::new(path);
    match open_in_root(root.as_fd(), rel, libc::O_PATH) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(err(path, e)),
        Err(_) => {}
    }
    let comps: Vec<_> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            _ => None,
        })
        .collect();
    let mut parent =
        open_in_root(root.as_fd(), Path::new("/"), libc::O_PATH).map_err(|e| err("/", e))?;
    let mut sofar = PathBuf::from("/");
    for (i, name) in comps.iter().enumerate() {
        sofar.push(name);
        let last = i + 1 == comps.len();
        match open_in_root(root.as_fd(), &sofar, libc::O_PATH) {
            Ok(fd) => parent = fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(
                    name.as_os_str(),
                ))
                .map_err(|_| format!("{path}: NUL in path"))?;
                // SAFETY: valid dirfd and NUL-terminated single path component; mkdirat /
                // openat of one name cannot follow a symlink in a parent.
                let ret = unsafe {
                    if last && !dir {
                        let fd = libc::openat(
                            parent.as_raw_fd(),
                            c.as_ptr(),
                            libc::O_CREAT
                                | libc::O_EXCL
                                | libc::O_WRONLY
                                | libc::O_CLOEXEC
                                | libc::O_NOFOLLOW,
                            0o644,
                        );
                        if fd >= 0 {
                            libc::close(fd);
                        }
                        fd
                    } else {
                        libc::mkdirat(parent.as_raw_fd(), c.as_ptr(), 0o755)
                    }
                };
                if ret < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::AlreadyExists {
                        return Err(err(format!("create {}", sofar.display()), e));
                    }
                }
                parent = open_in_root(root.as_fd(), &sofar, libc::O_PATH)
                    .map_err(|e| err(sofar.display(), e))?;
            }
            Err(e) => return Err(err(sofar.display(), e)),
        }
    }
    Ok(parent)
}

/// The path through which the kernel reaches an O_PATH descriptor (needs /proc mounted).
fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn mount_proc() -> Result<(), String> {
    // Before /proc exists there are no magic links to abuse, but /proc itself must be a
    // real directory, not a symlink to somewhere else in the image.
    let _ = std::fs::create_dir("/proc");
    let meta = std::fs::symlink_metadata("/proc").map_err(|e| err("/proc", e))?;
    if !meta.is_dir() {
        return Err("/proc in the image is not a directory".into());
    }
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| err("mount /proc", e))
}

fn mount_at(
    source: &str,
    target: &str,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), String> {
    let fd = ensure_in_root(target, true)?;
    mount(
        Some(source),
        fd_path(&fd).as_str(),
        Some(fstype),
        flags,
        data,
    )
    .map_err(|e| err(format!("mount {target}"), e))
}

fn mount_dev() -> Result<(), String> {
    let nosuid_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    mount_at(
        "tmpfs",
        "/dev",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for (name, major, minor) in DEVICES {
        let path = format!("/dev/{name}");
        mknod(
            path.as_str(),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(*major, *minor),
        )
        .map_err(|e| err(format!("mknod {path}"), e))?;
    }
    mount_at(
        "devpts",
        "/dev/pts",
        "devpts",
        nosuid_noexec,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    mount_at(
        "shm",
        "/dev/shm",
        "tmpfs",
        nosuid_noexec | MsFlags::MS_NODEV,
        Some("mode=1777,size=65536k"),
    )?;
    mount_at(
        "mqueue",
        "/dev/mqueue",
        "mqueue",
        nosuid_noexec | MsFlags::MS_NODEV,
        None,
    )?;
    for (link, target) in [
        ("/dev/ptmx", "pts/ptmx"),
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, link).map_err(|e| err(format!("symlink {link}"), e))?;
    }
    Ok(())
}

fn mount_sys() -> Result<(), String> {
    mount_at(
        "sysfs",
        "/sys",
        "sysfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
        None,
    )
}

fn bind_volume(volume: &Volume, source: &OwnedFd) -> Result<(), String> {
    if !volume.container.starts_with('/') {
        return Err(format!(
            "volume target {:?} is not absolute",
            volume.container
        ));
    }
    let is_dir = std::fs::metadata(fd_path(source))
        .map_err(|e| err(volume.host.display(), e))?
        .is_dir();
    let target = ensure_in_root(&volume.container, is_dir)?;
    let target_path = fd_path(&target);
    mount(
        Some(fd_path(source).as_str()),
        target_path.as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| {
        err(
            format!("bind {} to {}", volume.host.display(), volume.container),
            e,
        )
    })?;
    if volume.read_only {
        // The mount now sits on top of `target`'s old inode: reach it by path (resolved in
        // root again) to remount the new mount itself read-only.
        let mounted = ensure_in_root(&volume.container, is_dir)?;
        mount(
            None::<&str>,
            fd_path(&mounted).as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| err(format!("make volume {} read-only", volume.container), e))?;
    }
    Ok(())
}

fn mask(path: &str) -> Result<(), String> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(()); // absent on this kernel
    };
    let result = if meta.is_dir() {
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("size=0"),
        )
    } else {
        mount(
            Some("/dev/null"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    result.map_err(|e| err(format!("mask {path}"), e))
}

fn make_read_only(path: &str) -> Result<(), String> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    mount(
        Some(path),
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| err(format!("bind {path}"), e))?;
    mount(
        None::<&str>,
        path,
        None::<&str>,
        MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| err(format!("make {path} read-only"), e))
}
