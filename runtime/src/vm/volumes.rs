//! Host directories in a vm container (`-v HOST:CONTAINER[:ro]`, any `bind` mount of the
//! spec): one virtiofsd per directory on the host, one virtio-fs device per directory in
//! hull-vmm, and in the spec the guest carries out, the bind mount replaced by a `virtiofs`
//! mount of that device's tag. The guest's executor mounts it like any other mount of the
//! spec (in order, with its flags, the destination resolved inside the container root).
//!
//! `:ro` is enforced on the host: virtiofsd serves a read-only mount of the directory
//! ([`super::virtiofs`]); the guest's mount is read-only as well, so writes fail at once
//! with EROFS. A symlink inside the volume is resolved by the guest inside the guest, and
//! virtiofsd, pivoted into the shared directory, cannot follow it out.

use std::path::PathBuf;

use oci_spec::runtime::{Mount, Spec};

use super::channel::StateDir;
use super::virtiofs;
use crate::isolation::{ContainerContext, IsolationError, IsolationKind};

/// Most volumes a vm container may have: each is a virtio device, hull-vmm has 16 slots
/// and the disks, vsock and NIC may take four.
pub const MAX_VOLUMES: usize = 12;

/// A host directory bound into a vm container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmVolume {
    /// Index of its mount in the spec's `mounts`.
    pub mount: usize,
    /// The host directory, symlinks resolved.
    pub source: PathBuf,
    /// `:ro`.
    pub read_only: bool,
}

fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
}

/// The spec's bind mounts as volumes; what a VM cannot share (a single file, a missing
/// directory, too many) is refused by name.
pub fn from_spec(spec: &Spec) -> Result<Vec<VmVolume>, IsolationError> {
    let mut volumes = Vec::new();
    for (index, m) in spec.mounts().iter().flatten().enumerate() {
        if !is_bind(m) {
            continue;
        }
        let destination = m.destination().display();
        let source = m.source().as_ref().ok_or_else(|| {
            IsolationError::InvalidSpec(format!("bind mount {destination}: no source"))
        })?;
        let source = std::fs::canonicalize(source).map_err(|e| {
            IsolationError::InvalidSpec(format!("volume {}:{destination}: {e}", source.display()))
        })?;
        if !source.is_dir() {
            return Err(IsolationError::InvalidSpec(format!(
                "volume {}:{destination}: only directories can be shared with --isolation=vm \
                 (virtio-fs), not single files",
                source.display()
            )));
        }
        volumes.push(VmVolume {
            mount: index,
            source,
            read_only: m.options().iter().flatten().any(|o| o == "ro"),
        });
    }
    if volumes.len() > MAX_VOLUMES {
        return Err(IsolationError::InvalidSpec(format!(
            "{} volumes: at most {MAX_VOLUMES} with --isolation=vm",
            volumes.len()
        )));
    }
    Ok(volumes)
}

/// The virtio-fs tag of volume `index`.
pub fn tag(index: usize) -> String {
    format!("hullvol{index}")
}

/// Where volume `index`'s virtiofsd listens: in the jail directory (the VMM's cwd; the VMM
/// connects before it enters its jail, as root, so the socket stays root's).
pub fn socket(index: usize) -> String {
    format!("fs{index}.sock")
}

/// The spec as the guest carries it out: each volume's bind mount becomes a `virtiofs`
/// mount of its tag, keeping its place in `mounts` and its flags (`ro`, `nosuid`,
/// propagation...), plus `nodev`: a device node in a host directory must not open the
/// guest's disks or console (the guest's device cgroup refuses them too; nodev also holds
/// for a container without one).
pub fn guest_spec(spec: &Spec, volumes: &[VmVolume]) -> Spec {
    let mut spec = spec.clone();
    let Some(mut mounts) = spec.mounts().clone() else {
        return spec;
    };
    for (index, v) in volumes.iter().enumerate() {
        let Some(m) = mounts.get_mut(v.mount) else {
            continue;
        };
        let mut options: Vec<String> = m
            .options()
            .iter()
            .flatten()
            .filter(|o| *o != "bind" && *o != "rbind")
            .cloned()
            .collect();
        if !options.iter().any(|o| o == "nodev") {
            options.push("nodev".into());
        }
        m.set_typ(Some("virtiofs".into()))
            .set_source(Some(PathBuf::from(tag(index))))
            .set_options(Some(options));
    }
    spec.set_mounts(Some(mounts));
    spec
}

/// Starts one virtiofsd per volume (before the VMM, which connects at start-up). Each one
/// is killed and its socket removed when the returned value is dropped.
pub fn start_backends(
    ctx: &ContainerContext,
    dir: &StateDir,
    volumes: &[VmVolume],
) -> Result<Vec<virtiofs::Virtiofsd>, IsolationError> {
    if volumes.is_empty() {
        return Ok(Vec::new());
    }
    let binary = std::env::var_os("HULL_VIRTIOFSD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(virtiofs::DEFAULT_VIRTIOFSD));
    if !binary.exists() {
        return Err(IsolationError::Unavailable(
            IsolationKind::Vm,
            format!(
                "volumes (-v) with --isolation=vm need virtiofsd at {} (Debian: apt-get \
                 install qemu-system-x86, which brings qemu-system-common)",
                binary.display()
            ),
        ));
    }
    let mut backends = Vec::with_capacity(volumes.len());
    for (index, v) in volumes.iter().enumerate() {
        let name = socket(index);
        backends.push(virtiofs::Virtiofsd::spawn(&virtiofs::VirtiofsdConfig {
            binary: binary.clone(),
            source: v.source.clone(),
            read_only: v.read_only,
            bind_path: dir.short(&name),
            socket: dir.real(&name),
            log: ctx.file(&format!("virtiofsd-{index}.log")),
        })?);
    }
    Ok(backends)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(dest: &str, source: &str, opts: &[&str]) -> Mount {
        let mut m = Mount::default();
        m.set_destination(PathBuf::from(dest))
            .set_typ(Some("bind".into()))
            .set_source(Some(PathBuf::from(source)))
            .set_options(Some(opts.iter().map(|o| o.to_string()).collect()));
        m
    }

    fn spec_with(mounts: Vec<Mount>) -> Spec {
        let mut spec = Spec::default();
        let mut all = hull_executor::defaults::mounts(64 << 20);
        all.extend(mounts);
        spec.set_mounts(Some(all));
        spec
    }

    #[test]
    fn bind_mounts_become_virtiofs_mounts_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        let spec = spec_with(vec![
            bind("/data", a.to_str().unwrap(), &["rbind", "rprivate"]),
            bind("/srv/ro", b.to_str().unwrap(), &["rbind", "rprivate", "ro"]),
        ]);
        let volumes = from_spec(&spec).unwrap();
        let defaults = hull_executor::defaults::mounts(64 << 20).len();
        assert_eq!(volumes.len(), 2);
        assert_eq!(volumes[0].mount, defaults);
        assert!(!volumes[0].read_only);
        assert!(volumes[1].read_only);
        let guest = guest_spec(&spec, &volumes);
        let mounts = guest.mounts().as_ref().unwrap();
        assert_eq!(mounts.len(), defaults + 2, "nothing added or dropped");
        assert_eq!(
            &mounts[..defaults],
            &spec.mounts().as_ref().unwrap()[..defaults]
        );
        let data = &mounts[defaults];
        assert_eq!(data.typ().as_deref(), Some("virtiofs"));
        assert_eq!(data.source().as_deref(), Some("hullvol0".as_ref()));
        assert_eq!(data.destination(), &PathBuf::from("/data"));
        assert_eq!(
            data.options().as_deref(),
            Some(&["rprivate".to_string(), "nodev".into()][..])
        );
        let ro = &mounts[defaults + 1];
        assert_eq!(ro.source().as_deref(), Some("hullvol1".as_ref()));
        assert!(ro.options().as_ref().unwrap().contains(&"ro".into()));
        // The guest's executor accepts what it is given.
        hull_executor::plan::mounts::plan(mounts).unwrap();
    }

    #[test]
    fn what_a_vm_cannot_share_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        let e = from_spec(&spec_with(vec![bind("/f", file.to_str().unwrap(), &[])]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("only directories"), "{e}");
        let e = from_spec(&spec_with(vec![bind("/m", "/nonexistent/hull-x", &[])]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/hull-x"), "{e}");
        let d = dir.path().to_str().unwrap();
        let many = (0..=MAX_VOLUMES)
            .map(|i| bind(&format!("/v{i}"), d, &[]))
            .collect();
        let e = from_spec(&spec_with(many)).unwrap_err().to_string();
        assert!(e.contains("at most 12"), "{e}");
    }
}
