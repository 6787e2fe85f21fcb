//! The container's root filesystem, set up by the init process inside its own mount
//! namespace (so no mount is ever visible on the host, and all of them vanish with the
//! namespace when the container's last process exits):
//!
//! 1. `/` becomes private, so nothing propagates back to the host;
//! 2. overlayfs of the image layers plus the container's writable layer (upper/work
//!    directories on disk under the state root, kept across stop/start);
//! 3. host sources of volumes are opened (O_PATH) while the host is still visible;
//! 4. pivot_root into the overlay; the old root is detached;
//! 5. /proc, a minimal /dev (nodev tmpfs with null zero full random urandom tty bound from
//!    the host, devpts with its
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

use crate::isolation::Volume;

use super::syscalls::{attach_mount, clone_mount, open_in_root, restrict_mount};

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

/// Device nodes of the minimal /dev, bind-mounted from the host's /dev. Every other
/// filesystem the container can write to is `nodev`, so a node it creates with mknod
/// (CAP_MKNOD is in docker's default set) cannot be opened: no devices cgroup is needed.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Largest overlay option string the kernel takes in one mount call.
const MAX_MOUNT_DATA: usize = 4000;

/// What the init process needs to build the root filesystem.
pub struct RootfsPlan<'a> {
    /// Mount point of the overlay (an empty directory in the container's state dir).
    pub rootfs: &'a Path,
    /// Image layers, lowest first.
    pub layers: &'a [PathBuf],
    /// The writable layer's overlay upper directory (on disk, kept across runs).
    pub upper: &'a Path,
    /// Its overlay work directory (same filesystem).
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
    // Detached copies of the volume sources, taken while the host is still visible.
    let sources = plan
        .volumes
        .iter()
        .map(|v| {
            let mount = clone_mount(&v.host)
                .map_err(|e| err(format!("volume source {}", v.host.display()), e))?;
            restrict_mount(mount.as_fd(), v.read_only)
                .map_err(|e| err(format!("restrict volume {}", v.container), e))?;
            let is_dir = v.host.is_dir();
            Ok((mount, is_dir))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let devices = DEVICES
        .iter()
        .map(|name| {
            clone_mount(Path::new("/dev").join(name).as_path())
                .map_err(|e| err(format!("host device /dev/{name}"), e))
        })
        .collect::<Result<Vec<_>, String>>()?;
    pivot(plan.rootfs)?;
    mount_proc()?;
    mount_dev(&devices)?;
    drop(devices);
    mount_sys()?;
    for (volume, (mount, is_dir)) in plan.volumes.iter().zip(&sources) {
        attach_volume(volume, mount, *is_dir)?;
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
    // Not `volatile`: the layer outlives the container, so a crash must not leave it
    // unusable (overlay refuses to mount a volatile upper again after an unclean end).
    let (upper, work) = (overlay_path(plan.upper)?, overlay_path(plan.work)?);
    let data = format!("lowerdir={lower},upperdir={upper},workdir={work}");
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
        MsFlags::MS_NODEV,
        Some(data.as_str()),
    )
    .map_err(|e| err("mount overlay root filesystem", e))
}

/// A path for an overlay option: UTF-8, absolute, without the option separators.
fn overlay_path(p: &Path) -> Result<&str, String> {
    let s = p.to_str().ok_or("writable layer path is not UTF-8")?;
    if s.contains([':', ',']) || !p.is_absolute() {
        return Err(format!(
            "writable layer path {s:?} must be absolute, without ':' or ','"
        ));
    }
    Ok(s)
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
    ensure_in_root_at(path, dir, 0)
}

/// Symlinks followed at most while creating a path (like the kernel's MAXSYMLINKS).
const MAX_SYMLINKS: usize = 40;

fn ensure_in_root_at(path: &str, dir: bool, depth: usize) -> Result<OwnedFd, String> {
    if depth > MAX_SYMLINKS {
        return Err(format!("{path}: too many levels of symbolic links"));
    }
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
                    // A dangling symlink: create what it points to, inside the root.
                    if let Some(target) = read_link_at(&parent, &c) {
                        let base = if target.is_absolute() {
                            target
                        } else {
                            sofar.parent().unwrap_or(Path::new("/")).join(target)
                        };
                        let mut next = base;
                        for rest in &comps[i + 1..] {
                            next.push(rest);
                        }
                        let next = next.to_str().ok_or("path is not UTF-8")?.to_string();
                        return ensure_in_root_at(&next, dir, depth + 1);
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

/// The target of symlink `name` in directory `dir`, if it is one.
fn read_link_at(dir: &OwnedFd, name: &std::ffi::CStr) -> Option<PathBuf> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid dirfd, NUL-terminated name, buffer of the given length.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n <= 0 || n as usize >= buf.len() {
        return None;
    }
    buf.truncate(n as usize);
    Some(PathBuf::from(
        <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(buf),
    ))
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

fn mount_dev(devices: &[OwnedFd]) -> Result<(), String> {
    let nosuid_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    mount_at(
        "tmpfs",
        "/dev",
        "tmpfs",
        nosuid_noexec | MsFlags::MS_NODEV | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for (name, device) in DEVICES.iter().zip(devices) {
        let target = ensure_in_root(&format!("/dev/{name}"), false)?;
        attach_mount(device.as_fd(), target.as_fd())
            .map_err(|e| err(format!("bind /dev/{name}"), e))?;
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

fn attach_volume(volume: &Volume, mount: &OwnedFd, is_dir: bool) -> Result<(), String> {
    if !volume.container.starts_with('/') {
        return Err(format!(
            "volume target {:?} is not absolute",
            volume.container
        ));
    }
    let target = ensure_in_root(&volume.container, is_dir)?;
    attach_mount(mount.as_fd(), target.as_fd()).map_err(|e| {
        err(
            format!("mount {} on {}", volume.host.display(), volume.container),
            e,
        )
    })
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
