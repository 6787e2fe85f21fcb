//! What becomes of a bundle's mounts when its container runs in a VM, until the storage
//! issue's shared directories (virtio-fs) let the guest see host directories.
//!
//! The guest agent carries out the spec with the executor, so a filesystem that names no
//! host source ([`GUEST_FILESYSTEMS`]: tmpfs, proc, sysfs, devpts, mqueue, cgroup) is
//! mounted by the guest kernel wherever the spec says (containerd's default spec has a
//! tmpfs at `/run`). A host path cannot be bind-mounted into another kernel; what callers
//! bind in practice is:
//!
//! - small regular files (`/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname` from podman and
//!   the CRI, `/run/.containerenv`, `/dev/termination-log`): put into the VM's root disk at
//!   their destination when it is built at `create` (see `vm_disk`). A copy is a snapshot:
//!   later host edits are not seen, and writes in the guest stay there (a CRI termination
//!   message does not reach the kubelet);
//! - `/dev/shm` from a directory (podman's and the CRI's shared shm): the guest's own
//!   `/dev/shm`, shared with no other container, which a VM is not;
//! - anything else (a host directory, a device, a socket, a file over [`MAX_COPIED_FILE`],
//!   a filesystem with a host source such as nfs or ext4): refused at `create` with the
//!   mount named, never silently dropped.

use std::fs;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Mount;

use crate::error::{OciError, Result};

/// Largest bound file copied into the VM's root disk.
pub const MAX_COPIED_FILE: u64 = 16 << 20;
/// Where the guest agent mounts a filesystem of its own for the container.
const GUEST_PROVIDED: &[&str] = &[
    "/proc",
    "/sys",
    "/sys/fs/cgroup",
    "/dev",
    "/dev/pts",
    "/dev/shm",
    "/dev/mqueue",
];

/// Filesystems the guest kernel makes from nothing of the host's: the agent's executor
/// mounts them in the guest as the spec says.
pub const GUEST_FILESYSTEMS: &[&str] = &[
    "tmpfs", "proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2",
];

/// A host file that becomes `destination` in the VM's root disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedFile {
    /// Host path (symlinks resolved).
    pub source: PathBuf,
    /// Absolute path in the container.
    pub destination: PathBuf,
}

/// The files to put into the VM's root disk; every other mount is the guest's own.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GuestMounts {
    /// Bound files, in the spec's order (a later one at the same place wins).
    pub files: Vec<CopiedFile>,
}

fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|o| o == "bind" || o == "rbind"))
}

/// `dest` without `.`/`..` tricks: an absolute path of normal components.
fn clean_destination(dest: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::from("/");
    for c in dest.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Plans `mounts` for a guest, resolving relative bind sources against `bundle`.
pub fn plan(mounts: &[Mount], bundle: &Path) -> Result<GuestMounts> {
    let mut out = GuestMounts::default();
    for m in mounts {
        let dest = clean_destination(m.destination()).ok_or_else(|| {
            OciError::Unsupported(format!(
                "mount destination {} (\"..\" in a destination)",
                m.destination().display()
            ))
        })?;
        let provided = GUEST_PROVIDED.iter().any(|p| dest == Path::new(p));
        if !is_bind(m) {
            let typ = m.typ().as_deref().unwrap_or("");
            if provided || GUEST_FILESYSTEMS.contains(&typ) {
                continue;
            }
            return Err(OciError::Unsupported(format!(
                "mount of type {typ:?} at {} in the vm model (its source is the host's; the \
                 guest mounts only {} itself)",
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
            // The guest's own /dev/shm.
        } else if meta.is_file() {
            if meta.len() > MAX_COPIED_FILE {
                return Err(refuse(&format!(
                    "a file over {} MiB is not copied into the VM",
                    MAX_COPIED_FILE >> 20
                )));
            }
            if provided || dest == Path::new("/") {
                return Err(refuse("the guest provides that path itself"));
            }
            let resolved = fs::canonicalize(&source).map_err(|e| refuse(&e.to_string()))?;
            out.files.push(CopiedFile {
                source: resolved,
                destination: dest,
            });
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

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(json: &str) -> Mount {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn guest_filesystems_pass_files_are_copied_shm_is_the_guests() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("hosts"), "127.0.0.1 localhost\n").unwrap();
        fs::create_dir(dir.path().join("shm")).unwrap();
        let mounts = vec![
            mount(r#"{"destination":"/proc","type":"proc","source":"proc"}"#),
            mount(r#"{"destination":"/dev/pts/","type":"devpts","source":"devpts"}"#),
            mount(&format!(
                r#"{{"destination":"/etc/hosts","type":"bind","source":"{}","options":["rbind","ro"]}}"#,
                dir.path().join("hosts").display()
            )),
            mount(
                r#"{"destination":"/dev/shm","type":"bind","source":"shm","options":["bind","private","nodev","mode=1777","size=65536k"]}"#,
            ),
        ];
        let g = plan(&mounts, dir.path()).unwrap();
        assert_eq!(
            g.files,
            vec![CopiedFile {
                source: fs::canonicalize(dir.path().join("hosts")).unwrap(),
                destination: "/etc/hosts".into(),
            }]
        );
    }

    #[test]
    fn directories_devices_big_files_and_other_filesystems_are_refused_by_name() {
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
        let m = mount(r#"{"destination":"/x","type":"ext4","source":"/dev/sda1"}"#);
        let err = plan(&[m], dir.path()).unwrap_err().to_string();
        assert!(err.contains("ext4") && err.contains("/x"), "{err}");
        // containerd's default spec: the guest mounts a tmpfs of its own.
        let m = mount(r#"{"destination":"/run","type":"tmpfs","source":"tmpfs"}"#);
        assert_eq!(plan(&[m], dir.path()).unwrap(), GuestMounts::default());
        let m = mount(r#"{"destination":"/x","type":"bind","source":"/no/such/file"}"#);
        assert!(plan(&[m], dir.path())
            .unwrap_err()
            .to_string()
            .contains("/no/such/file"));
        fs::write(dir.path().join("f"), "x").unwrap();
        let m = mount(r#"{"destination":"/etc/../../f","type":"bind","source":"f"}"#);
        assert!(plan(&[m], dir.path())
            .unwrap_err()
            .to_string()
            .contains(".."));
    }
}
