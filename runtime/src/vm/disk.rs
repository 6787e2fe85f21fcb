//! The image as a block device: one read-only erofs image per image id, built once from the
//! image's layers with whiteouts already applied, cached under `<root>/vm/disks/`.
//!
//! The layers are merged by the kernel: `mkfs.erofs` runs in a private mount namespace in
//! which the layers are mounted as a read-only overlay, so it reads the image exactly as a
//! container sees it (deleted files gone, opaque directories honoured) and nothing is
//! copied or left mounted on the host. The result is written to a temporary name and
//! renamed into place, so a crash never leaves a half-built image under the final name.

use std::ffi::CString;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::VmError;
use crate::paths::StatePaths;

/// Directory holding the cached disk images.
pub fn disks_dir(paths: &StatePaths) -> PathBuf {
    paths.root.join("vm").join("disks")
}

/// Cache path of the disk image for `image_id` (`sha256:<hex>`).
pub fn disk_path(paths: &StatePaths, image_id: &str) -> Result<PathBuf, VmError> {
    let hex = image_id.strip_prefix("sha256:").unwrap_or(image_id);
    if hex.is_empty() || hex.len() > 128 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(VmError::Invalid(format!(
            "image id {image_id:?} is not a sha256 digest"
        )));
    }
    Ok(disks_dir(paths).join(format!("{hex}.erofs")))
}

/// Removes the cached disk images of images no longer in the store (`live_ids` are the
/// ids still present). Returns how many were removed.
pub fn prune(paths: &StatePaths, live_ids: &[String]) -> Result<usize, VmError> {
    let dir = disks_dir(paths);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(VmError::io(format!("read {}", dir.display()), e)),
    };
    let live: Vec<PathBuf> = live_ids
        .iter()
        .filter_map(|id| disk_path(paths, id).ok())
        .collect();
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let is_disk = path.extension().is_some_and(|e| e == "erofs");
        if is_disk && !live.contains(&path) {
            fs::remove_file(&path)
                .map_err(|e| VmError::io(format!("remove {}", path.display()), e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The overlay `lowerdir=` option for layers given lowest first (overlay wants topmost
/// first).
pub fn lowerdir_option(layers: &[PathBuf]) -> Result<String, VmError> {
    let mut parts = Vec::with_capacity(layers.len());
    for layer in layers.iter().rev() {
        let s = layer.to_str().ok_or_else(|| {
            VmError::Invalid(format!("layer path {} is not UTF-8", layer.display()))
        })?;
        if s.contains([',', ':']) || !layer.is_absolute() {
            return Err(VmError::Invalid(format!(
                "layer path {s:?} must be absolute and free of ',' and ':'"
            )));
        }
        parts.push(s);
    }
    Ok(format!("lowerdir={}", parts.join(":")))
}

/// Returns the disk image for the image, building it on first use.
pub fn ensure_disk(
    paths: &StatePaths,
    image_id: &str,
    layers: &[PathBuf],
) -> Result<PathBuf, VmError> {
    let path = disk_path(paths, image_id)?;
    if path.exists() {
        return Ok(path);
    }
    let dir = disks_dir(paths);
    crate::private_fs::create_dir_all(&dir)
        .map_err(|e| VmError::io(format!("create {}", dir.display()), e))?;
    let tmp = dir.join(format!(".building-{}-{}", std::process::id(), unique()));
    let mountpoint = dir.join(format!(".merge-{}-{}", std::process::id(), unique()));
    let result = build(layers, &tmp, &mountpoint);
    let _ = fs::remove_dir(&mountpoint);
    match result {
        Ok(()) => {
            // mkfs.erofs creates it with the umask's mode; the image is root's only.
            crate::private_fs::narrow(&tmp)
                .map_err(|e| VmError::io(format!("chmod {}", tmp.display()), e))?;
            fs::rename(&tmp, &path).map_err(|e| {
                let _ = fs::remove_file(&tmp);
                VmError::io(format!("rename disk image into {}", path.display()), e)
            })?;
            Ok(path)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn build(layers: &[PathBuf], out: &Path, mountpoint: &Path) -> Result<(), VmError> {
    let mut cmd = Command::new("mkfs.erofs");
    cmd.arg("--quiet")
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let empty;
    match layers {
        [] => {
            empty = mountpoint.to_path_buf();
            fs::create_dir_all(&empty).map_err(|e| VmError::io("create empty root", e))?;
            cmd.arg(&empty);
        }
        [single] => {
            cmd.arg(single);
        }
        _ => {
            fs::create_dir_all(mountpoint)
                .map_err(|e| VmError::io(format!("create {}", mountpoint.display()), e))?;
            let target = CString::new(mountpoint.as_os_str().as_encoded_bytes())
                .map_err(|_| VmError::Invalid("mount point path has a NUL byte".into()))?;
            let options = CString::new(lowerdir_option(layers)?)
                .map_err(|_| VmError::Invalid("layer path has a NUL byte".into()))?;
            cmd.arg(mountpoint);
            // SAFETY: runs in the forked child before exec; only makes system calls on
            // strings allocated before the fork. The mount lives in the child's private
            // mount namespace and disappears when mkfs.erofs exits.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::unshare(libc::CLONE_NEWNS) != 0
                        || libc::mount(
                            std::ptr::null(),
                            c"/".as_ptr(),
                            std::ptr::null(),
                            libc::MS_REC | libc::MS_PRIVATE,
                            std::ptr::null(),
                        ) != 0
                        || libc::mount(
                            c"overlay".as_ptr(),
                            target.as_ptr(),
                            c"overlay".as_ptr(),
                            libc::MS_RDONLY,
                            options.as_ptr().cast(),
                        ) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
    }
    let output = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            VmError::Unavailable(
                "mkfs.erofs is not installed (apt-get install erofs-utils); it turns images \
                 into VM disks"
                    .into(),
            )
        } else {
            VmError::io("run mkfs.erofs (merging the image layers)", e)
        }
    })?;
    if !output.status.success() {
        return Err(VmError::Backend(format!(
            "mkfs.erofs failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowerdir_lists_the_top_layer_first() {
        let layers = vec![PathBuf::from("/l/base"), PathBuf::from("/l/top")];
        assert_eq!(lowerdir_option(&layers).unwrap(), "lowerdir=/l/top:/l/base");
    }

    // Building a real disk (root, mkfs.erofs, loop mounts) is tier 2:
    // tests/tests/host_vm_disk.rs.

    #[test]
    fn prune_removes_only_disks_of_removed_images() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = StatePaths::new(Some(tmp.path()));
        fs::create_dir_all(disks_dir(&paths)).unwrap();
        let (kept, gone) = (
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "b".repeat(64)),
        );
        for id in [&kept, &gone] {
            fs::write(disk_path(&paths, id).unwrap(), "disk").unwrap();
        }
        assert_eq!(prune(&paths, std::slice::from_ref(&kept)).unwrap(), 1);
        assert!(disk_path(&paths, &kept).unwrap().exists());
        assert!(!disk_path(&paths, &gone).unwrap().exists());
    }

    #[test]
    fn hostile_layer_paths_and_ids_are_rejected() {
        assert!(lowerdir_option(&[PathBuf::from("/a,upperdir=/etc")]).is_err());
        assert!(lowerdir_option(&[PathBuf::from("relative")]).is_err());
        let paths = StatePaths::new(Some(Path::new("/tmp/x")));
        assert!(disk_path(&paths, "sha256:../../etc").is_err());
        assert_eq!(
            disk_path(&paths, "sha256:abc123").unwrap(),
            Path::new("/tmp/x/vm/disks/abc123.erofs")
        );
    }
}
