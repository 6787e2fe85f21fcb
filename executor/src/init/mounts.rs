//! Mount steps, devices, /dev symlinks, masked and read-only paths, carried out inside the
//! container root after the switch into it (see `init`).

use std::borrow::Cow;
use std::ffi::CStr;
use std::io;

use super::paths::{ensure_dir, ensure_target, parent_of};
use crate::plan::devices::DeviceNode;
use crate::plan::mounts::{attr, MountKind, MountStep, Param};
use crate::plan::CgroupV1Mount;
use crate::sys::{Fd, Sys};

pub fn mount_step(
    sys: &dyn Sys,
    step: &MountStep,
    bind: Option<Fd>,
    cgroup_v1: &[CgroupV1Mount],
) -> io::Result<()> {
    let a = &step.attrs;
    let (mut set, mut clear) = (a.set, a.clear);
    if let Some((mode, false)) = a.atime {
        set |= mode;
        clear |= attr::ATIME_MASK;
    }
    let mount = match &step.kind {
        MountKind::Fs {
            fstype,
            source,
            params,
        } => sys.fs_mount(fstype, source.as_deref(), params, set & !clear)?,
        MountKind::Bind { .. } => {
            let src = bind.ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
            if set != 0 || clear != 0 {
                sys.set_mount_attrs(src, set, clear, 0, false)?;
            }
            src
        }
        MountKind::Cgroup => return mount_cgroup(sys, step, set, clear, cgroup_v1),
    };
    let is_dir = match step.kind {
        MountKind::Bind { .. } => sys.is_dir(mount)?,
        _ => true,
    };
    let result = (|| {
        let target = ensure_target(sys, &step.destination, is_dir)?;
        let moved = sys.move_mount(mount, target);
        sys.close(target);
        moved?;
        finish_attrs(sys, mount, step)
    })();
    sys.close(mount);
    result
}

/// Attributes for the whole tree and propagation, once the mount is attached.
fn finish_attrs(sys: &dyn Sys, mount: Fd, step: &MountStep) -> io::Result<()> {
    let a = &step.attrs;
    let (mut set, mut clear) = (a.rec_set, a.rec_clear);
    if let Some((mode, true)) = a.atime {
        set |= mode;
        clear |= attr::ATIME_MASK;
    }
    if set != 0 || clear != 0 {
        sys.set_mount_attrs(mount, set, clear, 0, true)?;
    }
    if let Some((p, rec)) = a.propagation {
        sys.set_mount_attrs(mount, 0, 0, p.flag(), rec)?;
    }
    Ok(())
}

/// `type: cgroup`: cgroup2 where the host has it, else a tmpfs with each v1 hierarchy.
fn mount_cgroup(
    sys: &dyn Sys,
    step: &MountStep,
    set: u64,
    clear: u64,
    cgroup_v1: &[CgroupV1Mount],
) -> io::Result<()> {
    let target = ensure_dir(sys, &step.destination)?;
    let flags = set & !clear;
    let r = if cgroup_v1.is_empty() {
        sys.fs_mount(c"cgroup2", Some(c"cgroup"), &[], flags)
            .and_then(|m| {
                let r = sys.move_mount(m, target);
                sys.close(m);
                r
            })
    } else {
        mount_cgroup_v1(sys, target, flags, cgroup_v1)
    };
    sys.close(target);
    r
}

fn mount_cgroup_v1(
    sys: &dyn Sys,
    target: Fd,
    flags: u64,
    hierarchies: &[CgroupV1Mount],
) -> io::Result<()> {
    // A writable tmpfs first, to make the hierarchy directories in; read-only at the end.
    let tmp = sys.fs_mount(c"tmpfs", Some(c"tmpfs"), MODE_755, flags & !attr::RDONLY)?;
    let r = (|| {
        sys.move_mount(tmp, target)?;
        for h in hierarchies {
            sys.mkdir_at(tmp, &h.name, 0o755)?;
            let m = sys.fs_mount(c"cgroup", Some(c"cgroup"), &h.params, flags)?;
            let moved = sys
                .open_at(tmp, &h.name, libc::O_PATH | libc::O_DIRECTORY)
                .and_then(|dir| {
                    let r = sys.move_mount(m, dir);
                    sys.close(dir);
                    r
                });
            sys.close(m);
            moved?;
        }
        if flags & attr::RDONLY != 0 {
            sys.set_mount_attrs(tmp, attr::RDONLY, 0, 0, false)?;
        }
        Ok(())
    })();
    sys.close(tmp);
    r
}

/// Parameters of constant filesystem mounts (no allocation in the child).
const MODE_755: &[Param] = &[Param::Value(Cow::Borrowed(c"mode"), Cow::Borrowed(c"755"))];
const EMPTY_TMPFS: &[Param] = &[Param::Value(Cow::Borrowed(c"size"), Cow::Borrowed(c"0"))];

pub fn make_device(sys: &dyn Sys, dev: &DeviceNode, source: Option<Fd>) -> io::Result<()> {
    let (parent, name) = parent_of(sys, &dev.path)?;
    let r = (|| {
        if let Some(src) = source {
            // In a user namespace: bind the node from outside onto an empty file.
            match sys.create_file_at(parent, name, 0o644) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(e),
            }
            let target = sys.open_in_root(&dev.path, libc::O_PATH)?;
            let r = sys.move_mount(src, target);
            sys.close(target);
            return r;
        }
        let devno = libc::makedev(dev.major, dev.minor);
        match sys.mknod_at(parent, name, dev.kind | dev.mode, devno) {
            Ok(()) => {}
            // A node the image already has stays (runc does the same).
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => return Ok(()),
            Err(e) => return Err(e),
        }
        if dev.uid != 0 || dev.gid != 0 {
            sys.chown_at(parent, name, dev.uid, dev.gid)?;
        }
        Ok(())
    })();
    sys.close(parent);
    r
}

pub fn dev_symlinks(sys: &dyn Sys, ptmx: bool) -> io::Result<()> {
    let dev = sys.open_in_root(c"/dev", libc::O_PATH | libc::O_DIRECTORY)?;
    let r = (|| {
        for (target, name) in [
            (c"/proc/self/fd", c"fd"),
            (c"/proc/self/fd/0", c"stdin"),
            (c"/proc/self/fd/1", c"stdout"),
            (c"/proc/self/fd/2", c"stderr"),
        ] {
            match sys.symlink_at(target, dev, name) {
                Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
                _ => {}
            }
        }
        if ptmx {
            match sys.unlink_at(dev, c"ptmx") {
                Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
                _ => {}
            }
            sys.symlink_at(c"pts/ptmx", dev, c"ptmx")?;
        }
        Ok(())
    })();
    sys.close(dev);
    r
}

/// Hides `path`: an empty read-only tmpfs over a directory, the container's /dev/null over
/// a file. That /dev/null must really be the null device (an image could put anything at
/// /dev/null when the spec mounts no /dev of its own).
pub fn mask(sys: &dyn Sys, path: &CStr) -> io::Result<()> {
    let target = match sys.open_in_root(path, libc::O_PATH | libc::O_NOFOLLOW) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        other => other?,
    };
    let r = (|| {
        let m = if sys.is_dir(target)? {
            sys.fs_mount(
                c"tmpfs",
                Some(c"tmpfs"),
                EMPTY_TMPFS,
                attr::RDONLY | attr::NOSUID | attr::NODEV | attr::NOEXEC,
            )?
        } else {
            let null = sys.open_in_root(c"/dev/null", libc::O_PATH | libc::O_NOFOLLOW)?;
            let cloned = match sys.is_dev_null(null) {
                Ok(true) => sys.clone_tree(null, false),
                Ok(false) => Err(io::Error::from_raw_os_error(libc::ENODEV)),
                Err(e) => Err(e),
            };
            sys.close(null);
            cloned?
        };
        let r = sys.move_mount(m, target);
        sys.close(m);
        r
    })();
    sys.close(target);
    r
}

/// `root.readonly`: the container's root mount made read-only with its other flags kept.
/// A bind remount (`MS_BIND|MS_REMOUNT|MS_RDONLY`, what this did before) sets exactly the
/// flags it is given and so dropped `nodev`: device nodes shipped in the image opened again
/// under `--read-only`, which in a guest (no device cgroup there) reached the VM's disks.
/// mount_setattr changes only the flag named, as runc's remount with the mount's own flags.
pub fn root_read_only(sys: &dyn Sys) -> io::Result<()> {
    let root = sys.open_in_root(c"/", libc::O_PATH | libc::O_DIRECTORY)?;
    let r = sys.set_mount_attrs(root, attr::RDONLY, 0, 0, false);
    sys.close(root);
    r
}

pub fn read_only(sys: &dyn Sys, path: &CStr) -> io::Result<()> {
    let target = match sys.open_in_root(path, libc::O_PATH | libc::O_NOFOLLOW) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        other => other?,
    };
    let r = (|| {
        let m = sys.clone_tree(target, true)?;
        let r = sys
            .set_mount_attrs(
                m,
                attr::RDONLY | attr::NOSUID | attr::NODEV | attr::NOEXEC,
                0,
                0,
                true,
            )
            .and_then(|()| sys.move_mount(m, target));
        sys.close(m);
        r
    })();
    sys.close(target);
    r
}
