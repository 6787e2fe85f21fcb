//! The cgroup of a container, shared by both models: the process model's container
//! processes live in it, the vm model's VMM does (with the guest's memory plus the VMM's
//! overhead as its limit, `hull_runtime::vm::jail`).

use std::fs;
use std::path::{Path, PathBuf};

use hull_executor::cgroups::Layout;
use oci_spec::runtime::Spec;

/// Parent of the cgroups hull-oci names when the spec names none (runc uses `/<id>`).
pub const DEFAULT_PARENT: &str = "hull-oci";

/// The spec's `cgroupsPath`, else `/hull-oci/<id>` (the executor does not invent names;
/// runc and crun default to one per container).
pub fn spec_path(spec: &Spec, id: &str) -> PathBuf {
    spec.linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .unwrap_or_else(|| Path::new("/").join(DEFAULT_PARENT).join(id))
}

/// [`spec_path`] relative to each hierarchy's root, as the cgroup driver takes it.
pub fn relative_path(spec: &Spec, id: &str) -> PathBuf {
    let path = spec_path(spec, id);
    path.strip_prefix("/")
        .map(Path::to_path_buf)
        .unwrap_or(path)
}

/// Removes hull-oci's own parent cgroup (`/hull-oci`) where it is left empty, so no empty
/// cgroup outlives the last container (a failed rmdir means another container is there).
pub fn remove_default_parent(layout: &Layout, path: &Path) {
    let parent = Path::new(DEFAULT_PARENT);
    if path.parent() != Some(parent) {
        return;
    }
    let Ok(hierarchies) = fs::read_dir(&layout.root) else {
        return;
    };
    let mut dirs = vec![layout.root.join(parent)];
    dirs.extend(
        hierarchies
            .filter_map(|e| e.ok())
            .map(|e| e.path().join(parent)),
    );
    for dir in dirs {
        let _ = fs::remove_dir(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specs_path_else_one_per_container_under_hull_oci() {
        let mut spec = Spec::default();
        let mut linux = spec.linux().clone().unwrap_or_default();
        linux.set_cgroups_path(None);
        spec.set_linux(Some(linux.clone()));
        assert_eq!(relative_path(&spec, "c1"), Path::new("hull-oci/c1"));
        linux.set_cgroups_path(Some("/libpod_parent/libpod-c1".into()));
        spec.set_linux(Some(linux));
        assert_eq!(
            spec_path(&spec, "c1"),
            Path::new("/libpod_parent/libpod-c1")
        );
        assert_eq!(
            relative_path(&spec, "c1"),
            Path::new("libpod_parent/libpod-c1")
        );
    }
}
