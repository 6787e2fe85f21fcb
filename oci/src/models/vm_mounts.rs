//! What becomes of a bundle's mounts when its container runs in a VM, until the storage
//! issue's shared directories (virtio-fs) let the guest see host directories.
//!
//! The guest kernel mounts `proc`, `sysfs`, `tmpfs`, `devpts`, `mqueue` and `cgroup` itself,
//! so those entries pass through unchanged. A host path cannot be bind-mounted into another
//! kernel; what callers bind in practice is:
//!
//! - small regular files (`/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname` from podman and
//!   the CRI, `/run/.containerenv`, `/dev/termination-log`): copied at `create` onto a
//!   second read-only disk and bind-mounted from there in the guest. A copy is a snapshot:
//!   later host edits are not seen, and writes in the guest stay there (a CRI termination
//!   message does not reach the kubelet);
//! - `/dev/shm` from a directory (podman's and the CRI's shared shm): a tmpfs of the guest
//!   with the same size and mode; it is shared with no other container, which a VM is not;
//! - anything else (a host directory, a device, a socket, a file over [`MAX_COPIED_FILE`]):
//!   refused at `create` with the mount named, never silently dropped.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, MountBuilder};

use crate::error::{OciError, Result};

/// Largest bound file copied onto the VM's extra disk.
pub const MAX_COPIED_FILE: u64 = 16 << 20;
/// Where the guest finds the extra disk's files.
pub const GUEST_FILES_DIR: &str = "/run/hull/bind-files";
/// Filesystems the guest kernel provides itself.
const GUEST_FILESYSTEMS: &[&str] = &[
    "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2",
];

/// A file to copy onto the VM's extra disk: `source` on the host becomes `name` there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedFile {
    /// Host path (symlinks resolved).
    pub source: PathBuf,
    /// File name on the extra disk.
    pub name: String,
}

/// The mounts as the guest will perform them, and the files to put on the extra disk.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestMounts {
    /// The spec's mounts rewritten for the guest, in order.
    pub mounts: Vec<Mount>,
    /// Files for the extra disk (empty: no extra disk).
    pub files: Vec<CopiedFile>,
}

fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|o| o == "bind" || o == "rbind"))
}

/// Rewrites `mounts` for a guest, resolving relative bind sources against `bundle`.
pub fn plan(mounts: &[Mount], bundle: &Path) -> Result<GuestMounts> {
    let mut out = GuestMounts {
        mounts: Vec::with_capacity(mounts.len()),
        files: Vec::new(),
    };
    for m in mounts {
        let dest = m.destination();
        if !is_bind(m) {
            let typ = m.typ().as_deref().unwrap_or("");
            if GUEST_FILESYSTEMS.contains(&typ) {
                out.mounts.push(m.clone());
                continue;
            }
            return Err(OciError::Unsupported(format!(
                "mount of type {typ:?} at {} in the vm model (the guest mounts only {})",
                dest.display(),
                GUEST_FILESYSTEMS.join(", ")
            )));
        }
        let source = m.source().as_deref().unwrap_or(Path::new(""));
        let source = if source.is_absolute() {
            source.to_path_buf()
        } else {
            bundle.join(source)
        };
        let refuse = |why: &str| {
            OciError::Unsupported(format!(
                "bind mount of {} at {} in the vm model: {why}",
                source.display(),
                dest.display()
            ))
        };
        let meta = fs::metadata(&source).map_err(|e| refuse(&e.to_string()))?;
        if meta.is_dir() && dest == Path::new("/dev/shm") {
            out.mounts.push(shm_tmpfs(m)?);
        } else if meta.is_file() {
            if meta.len() > MAX_COPIED_FILE {
                return Err(refuse(&format!(
                    "a file over {} MiB is not copied into the VM",
                    MAX_COPIED_FILE >> 20
                )));
            }
            let name = out.files.len().to_string();
            let resolved = fs::canonicalize(&source).map_err(|e| refuse(&e.to_string()))?;
            out.files.push(CopiedFile {
                source: resolved,
                name: name.clone(),
            });
            let mut guest = m.clone();
            guest.set_source(Some(Path::new(GUEST_FILES_DIR).join(name)));
            out.mounts.push(guest);
        } else if meta.is_dir() {
            return Err(refuse(
                "a host directory cannot reach the guest until shared directories \
                 (virtio-fs) are available; run this container with io.hull.isolation=process",
            ));
        } else {
            return Err(refuse("only regular files are copied into a VM"));
        }
    }
    Ok(out)
}

/// `/dev/shm` as a tmpfs of the guest, keeping the size and mode the caller asked for.
fn shm_tmpfs(m: &Mount) -> Result<Mount> {
    let kept: Vec<String> = m
        .options()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|o| !matches!(o.as_str(), "bind" | "rbind" | "private" | "rprivate"))
        .collect();
    MountBuilder::default()
        .destination("/dev/shm")
        .typ("tmpfs")
        .source("shm")
        .options(kept)
        .build()
        .map_err(|e| OciError::Runtime(format!("shm mount: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(json: &str) -> Mount {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn kernel_filesystems_pass_files_are_copied_shm_becomes_tmpfs() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("hosts"), "127.0.0.1 localhost\n").unwrap();
        fs::create_dir(dir.path().join("shm")).unwrap();
        let mounts = vec![
            mount(r#"{"destination":"/proc","type":"proc","source":"proc"}"#),
            mount(&format!(
                r#"{{"destination":"/etc/hosts","type":"bind","source":"{}","options":["rbind","ro"]}}"#,
                dir.path().join("hosts").display()
            )),
            mount(
                r#"{"destination":"/dev/shm","type":"bind","source":"shm","options":["bind","private","nodev","mode=1777","size=65536k"]}"#,
            ),
        ];
        let g = plan(&mounts, dir.path()).unwrap();
        assert_eq!(g.mounts.len(), 3);
        assert_eq!(g.mounts[0], mounts[0]);
        assert_eq!(
            g.mounts[1].source().as_deref(),
            Some(Path::new("/run/hull/bind-files/0"))
        );
        assert_eq!(g.mounts[1].options(), mounts[1].options());
        assert_eq!(g.files.len(), 1);
        assert_eq!(
            g.files[0].source,
            fs::canonicalize(dir.path().join("hosts")).unwrap()
        );
        assert_eq!(g.mounts[2].typ().as_deref(), Some("tmpfs"));
        assert_eq!(
            g.mounts[2].options().as_ref().unwrap(),
            &vec![
                "nodev".to_string(),
                "mode=1777".into(),
                "size=65536k".into()
            ]
        );
    }

    #[test]
    fn directories_devices_and_big_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs::create_dir(&data).unwrap();
        let m = mount(&format!(
            r#"{{"destination":"/data","type":"bind","source":"{}","options":["rbind"]}}"#,
            data.display()
        ));
        let err = plan(&[m], dir.path()).unwrap_err().to_string();
        assert!(err.contains("/data") && err.contains("virtio-fs"), "{err}");
        let m = mount(r#"{"destination":"/dev/null2","options":["bind"],"source":"/dev/null"}"#);
        let err = plan(&[m], dir.path()).unwrap_err().to_string();
        assert!(err.contains("only regular files"), "{err}");
        let big = dir.path().join("big");
        fs::File::create(&big)
            .unwrap()
            .set_len(MAX_COPIED_FILE + 1)
            .unwrap();
        let m = mount(&format!(
            r#"{{"destination":"/big","type":"bind","source":"{}"}}"#,
            big.display()
        ));
        assert!(plan(&[m], dir.path())
            .unwrap_err()
            .to_string()
            .contains("MiB"));
        let m = mount(r#"{"destination":"/x","type":"nfs","source":"server:/x"}"#);
        assert!(plan(&[m], dir.path())
            .unwrap_err()
            .to_string()
            .contains("nfs"));
        let m = mount(r#"{"destination":"/x","type":"bind","source":"/no/such/file"}"#);
        assert!(plan(&[m], dir.path())
            .unwrap_err()
            .to_string()
            .contains("/no/such/file"));
    }
}
