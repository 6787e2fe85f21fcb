//! The disks a VM container boots with, built at `create` in its state directory: the
//! bundle's root filesystem as a read-only erofs image (the guest puts a writable tmpfs
//! layer over it unless `root.readonly`), and, when the bundle binds files, a second erofs
//! image holding copies of them (see `vm_mounts`). Until the guest can see host
//! directories (virtio-fs), changes the container makes to its root stay in the VM.
//!
//! mkfs.erofs writes to a temporary name that is renamed into place, so a crash never
//! leaves a half-built image under the final name; `destroy` removes both.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::vm_mounts::CopiedFile;
use crate::error::{OciError, Result};

/// The root filesystem image in the container's state directory.
pub const ROOTFS_IMAGE: &str = "rootfs.erofs";
/// The copied bind-mounted files' image.
pub const FILES_IMAGE: &str = "bind-files.erofs";

/// Builds an erofs image of directory `source` at `image`.
pub fn build(source: &Path, image: &Path) -> Result<()> {
    let tmp = image.with_extension("erofs.tmp");
    let out = Command::new("mkfs.erofs")
        .arg("--quiet")
        .arg(&tmp)
        .arg(source)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            OciError::io(
                "run mkfs.erofs (apt-get install erofs-utils) for the VM's root disk",
                e,
            )
        })?;
    if !out.status.success() {
        let _ = fs::remove_file(&tmp);
        return Err(OciError::Runtime(format!(
            "mkfs.erofs {}: {}",
            source.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    fs::rename(&tmp, image).map_err(|e| OciError::io(format!("rename {}", tmp.display()), e))
}

/// Copies `files` into a staging directory under `state_dir` and builds their image there.
/// Returns the image path, or `None` when there are no files.
pub fn build_files(files: &[CopiedFile], state_dir: &Path) -> Result<Option<PathBuf>> {
    if files.is_empty() {
        return Ok(None);
    }
    let staging = state_dir.join("bind-files");
    fs::create_dir(&staging)
        .map_err(|e| OciError::io(format!("create {}", staging.display()), e))?;
    let result = (|| {
        for f in files {
            fs::copy(&f.source, staging.join(&f.name))
                .map_err(|e| OciError::io(format!("copy {} for the VM", f.source.display()), e))?;
        }
        let image = state_dir.join(FILES_IMAGE);
        build(&staging, &image)?;
        Ok(Some(image))
    })();
    let _ = fs::remove_dir_all(&staging);
    result
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
    fn images_are_built_and_staging_is_removed() {
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
        fs::write(dir.path().join("hosts"), "127.0.0.1 x\n").unwrap();
        let files = [CopiedFile {
            source: dir.path().join("hosts"),
            name: "0".into(),
        }];
        let state = dir.path().join("state");
        fs::create_dir(&state).unwrap();
        let img = build_files(&files, &state).unwrap().unwrap();
        assert!(img.is_file());
        assert!(!state.join("bind-files").exists());
        assert_eq!(build_files(&[], &state).unwrap(), None);
        let err = build(&dir.path().join("missing"), &dir.path().join("x.erofs")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        assert!(!dir.path().join("x.erofs.tmp").exists());
    }
}
