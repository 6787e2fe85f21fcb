//! The disk a VM container boots with, built at `create` in its state directory: the
//! bundle's root filesystem as a read-only erofs image (the guest puts a writable tmpfs
//! layer over it unless `root.readonly`), with the bundle's bound files (see `vm_mounts`)
//! in place at their destinations. Until the guest can see host directories (virtio-fs),
//! changes the container makes to its root stay in the VM.
//!
//! The bound files get into the image without touching the bundle's files: mkfs.erofs runs
//! in a mount namespace of its own where each file is bind-mounted over its destination in
//! the root (runc creates the same empty mount points in the root). mkfs.erofs writes to a
//! temporary name that is renamed into place, so a crash never leaves a half-built image
//! under the final name; `destroy` removes it.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use super::vm_mounts::CopiedFile;
use crate::error::{OciError, Result};

/// The root filesystem image in the container's state directory.
pub const ROOTFS_IMAGE: &str = "rootfs.erofs";

/// Builds an erofs image of directory `source` at `image`.
pub fn build(source: &Path, image: &Path) -> Result<()> {
    build_with(source, &[], image)
}

/// Builds an erofs image of the root `rootfs` at `image`, with `files` at their places.
pub fn build_with(rootfs: &Path, files: &[CopiedFile], image: &Path) -> Result<()> {
    let mut binds: Vec<(CString, CString)> = Vec::with_capacity(files.len());
    for f in files {
        let target = mount_point(rootfs, &f.destination)?;
        let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).ok();
        let (Some(src), Some(dst)) = (c(&f.source), c(&target)) else {
            return Err(OciError::Unsupported(format!(
                "a NUL byte in the mount of {}",
                f.source.display()
            )));
        };
        binds.push((src, dst));
    }
    let tmp = image.with_extension("erofs.tmp");
    let mut cmd = Command::new("mkfs.erofs");
    cmd.arg("--quiet")
        .arg(&tmp)
        .arg(rootfs)
        .stdin(Stdio::null());
    if !binds.is_empty() {
        // SAFETY: between fork and exec this only makes system calls on memory prepared
        // before the fork (no allocation, no locks).
        unsafe {
            cmd.pre_exec(move || bind_in_own_namespace(&binds));
        }
    }
    let out = cmd.output().map_err(|e| {
        OciError::io(
            "run mkfs.erofs (apt-get install erofs-utils) for the VM's root disk",
            e,
        )
    })?;
    if !out.status.success() {
        let _ = fs::remove_file(&tmp);
        return Err(OciError::Runtime(format!(
            "mkfs.erofs {}: {}",
            rootfs.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    fs::rename(&tmp, image).map_err(|e| OciError::io(format!("rename {}", tmp.display()), e))
}

/// In the forked child: a private mount namespace with each `(source, target)` bound.
fn bind_in_own_namespace(binds: &[(CString, CString)]) -> io::Result<()> {
    // SAFETY: unshare with a flag, no memory involved.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: mount with static C strings and null data; makes our copy of the tree private
    // so the binds below never propagate back to the host.
    if unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    for (src, dst) in binds {
        // SAFETY: bind mount between two NUL-terminated paths prepared before the fork.
        if unsafe {
            libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The file `destination` names inside `rootfs`, created empty (with its directories) when
/// missing, as runc makes mount points. A symlink on the way is refused: it could point
/// out of the root.
fn mount_point(rootfs: &Path, destination: &Path) -> Result<PathBuf> {
    let refuse = |why: String| {
        OciError::Unsupported(format!(
            "bind mount at {} in the vm model: {why}",
            destination.display()
        ))
    };
    let parts: Vec<_> = destination
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut path = rootfs.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        let last = i + 1 == parts.len();
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(refuse(format!(
                    "{} is a symbolic link in the root",
                    path.display()
                )))
            }
            Ok(m) if last && !m.is_file() => {
                return Err(refuse(format!("{} is not a regular file", path.display())))
            }
            Ok(m) if !last && !m.is_dir() => {
                return Err(refuse(format!("{} is not a directory", path.display())))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let made = if last {
                    fs::File::create(&path).map(drop)
                } else {
                    fs::create_dir(&path)
                };
                made.map_err(|e| refuse(format!("create {}: {e}", path.display())))?;
            }
            Err(e) => return Err(refuse(format!("{}: {e}", path.display()))),
        }
    }
    if parts.is_empty() {
        return Err(refuse("not a file".into()));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn have_mkfs() -> bool {
        Command::new("mkfs.erofs")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    }

    #[test]
    fn images_are_built_and_a_failed_build_leaves_nothing() {
        assert!(
            have_mkfs(),
            "mkfs.erofs missing: scripts/setup.sh installs erofs-utils"
        );
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/motd"), "hi").unwrap();
        let image = dir.path().join(ROOTFS_IMAGE);
        build(&root, &image).unwrap();
        let bytes = fs::read(&image).unwrap();
        // erofs superblock magic at offset 1024.
        assert_eq!(&bytes[1024..1028], &0xE0F5_E1E2u32.to_le_bytes());
        let err = build(&dir.path().join("missing"), &dir.path().join("x.erofs")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        assert!(!dir.path().join("x.erofs.tmp").exists());

        // A bound file lands in the image at its destination; the bundle's root keeps only
        // the empty mount point, and no mount is left on the host.
        fs::write(dir.path().join("hosts"), "10.0.0.1 box\n").unwrap();
        let files = [CopiedFile {
            source: dir.path().join("hosts"),
            destination: "/etc/hosts".into(),
        }];
        let with = dir.path().join("with.erofs");
        build_with(&root, &files, &with).unwrap();
        assert_eq!(fs::read(root.join("etc/hosts")).unwrap(), b"");
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(root.to_str().unwrap()), "{mounts}");
        let out = dir.path().join("out");
        let st = Command::new("fsck.erofs")
            .arg(format!("--extract={}", out.display()))
            .arg(&with)
            .output()
            .unwrap();
        assert!(st.status.success(), "{st:?}");
        assert_eq!(fs::read(out.join("etc/hosts")).unwrap(), b"10.0.0.1 box\n");
        assert_eq!(fs::read(out.join("etc/motd")).unwrap(), b"hi");
    }

    #[test]
    fn mount_points_are_made_in_the_root_and_symlinks_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let p = mount_point(root, Path::new("/run/secrets/token")).unwrap();
        assert_eq!(p, root.join("run/secrets/token"));
        assert!(p.is_file());
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        let err = mount_point(root, Path::new("/link/passwd")).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = mount_point(root, Path::new("/run")).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
