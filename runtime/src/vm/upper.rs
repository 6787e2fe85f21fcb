//! The vm model's writable layer: a per-container sparse ext4 disk image under the state
//! root (`<root>/containers/<id>/upper.ext4`), attached as the VM's second virtio-blk disk
//! (`/dev/vdb`). The guest agent mounts it and keeps the overlay's upper and work
//! directories on it, so what a container writes survives `stop`/`start` and `hull rm`
//! removes it with the container's storage directory.
//!
//! The image is formatted once, on the host, by `mkfs.ext4` (e2fsprogs, part of every
//! Debian system) and never mounted on the host afterwards: after the first boot its
//! contents are written by the guest, which is hostile, so only a guest kernel parses it.
//! Its size is `--storage-opt size=` (default [`DEFAULT_SIZE`]); being sparse, it takes
//! host disk only for what the container writes, and a full layer is `ENOSPC` inside the
//! guest, never on the host.

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::VmError;
use crate::isolation::ContainerContext;

/// Size of the layer disk without `--storage-opt size=` (docker's devicemapper default).
pub const DEFAULT_SIZE: u64 = 10 << 30;
/// File name of the layer disk in the container's storage directory.
pub const LAYER_DISK: &str = "upper.ext4";
/// The guest device the layer disk becomes (the image disk is `vda`).
pub const GUEST_DEVICE: &str = "vdb";

/// Path of the container's layer disk (it may not exist yet).
pub fn layer_disk_path(ctx: &ContainerContext) -> PathBuf {
    ctx.storage_dir().join(LAYER_DISK)
}

/// Returns the container's layer disk, creating and formatting it on the first start. A
/// later start reuses it as it is (its size was fixed when the container was created).
pub fn ensure_layer_disk(ctx: &ContainerContext, size: Option<u64>) -> Result<PathBuf, VmError> {
    let dir =
        crate::storage::ensure_storage_dir(ctx).map_err(|e| VmError::Backend(e.to_string()))?;
    let path = dir.join(LAYER_DISK);
    if path.is_file() {
        return Ok(path);
    }
    let size = size.unwrap_or(DEFAULT_SIZE);
    let tmp = dir.join(format!(".{LAYER_DISK}.{}.tmp", std::process::id()));
    let result = format(&tmp, size);
    match result.and_then(|()| {
        fs::rename(&tmp, &path).map_err(|e| VmError::io(format!("rename {}", path.display()), e))
    }) {
        Ok(()) => Ok(path),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Creates a sparse file of `size` bytes at `path` and makes an ext4 filesystem on it.
fn format(path: &std::path::Path, size: u64) -> Result<(), VmError> {
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| VmError::io(format!("create {}", path.display()), e))?;
    file.set_len(size)
        .map_err(|e| VmError::io(format!("size {} to {size} bytes", path.display()), e))?;
    drop(file);
    // -m 0: no blocks reserved for root (the container's root should get the whole size);
    // lazy init: no zeroing of inode tables or journal, so the file stays sparse and mkfs
    // takes milliseconds whatever the size (the guest kernel initialises them on demand).
    let output = Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-m",
            "0",
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
            "-L",
            "hull-upper",
        ])
        .arg(path)
        .env(
            "PATH",
            "/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                VmError::Unavailable(
                    "mkfs.ext4 is not installed (apt-get install e2fsprogs); it formats the \
                     vm containers' writable layer disks"
                        .into(),
                )
            } else {
                VmError::io("run mkfs.ext4 (formatting the writable layer disk)", e)
            }
        })?;
    if !output.status.success() {
        return Err(VmError::Backend(format!(
            "mkfs.ext4 failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::StatePaths;
    use std::os::unix::fs::MetadataExt;

    fn ctx(root: &std::path::Path) -> ContainerContext {
        ContainerContext {
            id: "cd".repeat(32),
            state_dir: root.join("run/containers").join("cd".repeat(32)),
            paths: StatePaths::new(Some(root)),
        }
    }

    /// The disk has the asked size, is sparse, is ext4, and a second start reuses it.
    #[test]
    fn the_layer_disk_is_a_sparse_ext4_image_made_once() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = ctx(tmp.path());
        let disk = ensure_layer_disk(&ctx, Some(64 << 20)).unwrap();
        assert_eq!(disk, layer_disk_path(&ctx));
        assert!(disk.starts_with(tmp.path().join("containers")));
        let meta = fs::metadata(&disk).unwrap();
        assert_eq!(meta.len(), 64 << 20);
        assert!(
            meta.blocks() * 512 < 16 << 20,
            "sparse: {} bytes allocated",
            meta.blocks() * 512
        );
        let image = fs::read(&disk).unwrap();
        // ext4 superblock at 1024, magic 0xEF53 at offset 56 of it.
        assert_eq!(&image[1024 + 56..1024 + 58], &[0x53, 0xef]);
        // A second start keeps the disk as it is (its contents are the container's).
        fs::write(&disk, b"kept").unwrap();
        assert_eq!(ensure_layer_disk(&ctx, Some(64 << 20)).unwrap(), disk);
        assert_eq!(fs::read(&disk).unwrap(), b"kept");
        // Nothing else is left in the storage directory.
        let names: Vec<_> = fs::read_dir(ctx.storage_dir()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
