//! Containers' writable layers and what reads them: where each model keeps the layer on
//! disk, `--storage-opt`, `hull diff` (`diff`) and `hull cp`/`hull export` (`copy`).
//!
//! The layer lives under the persistent state root (`<root>/containers/<id>/`, see
//! [`ContainerContext::storage_dir`]), not on the RAM-backed run root: it survives `stop` and
//! `start` and is removed by `rm`. The process model keeps the overlay's `upper/` and
//! `work/` there; the vm model a sparse ext4 disk image (`vm::upper`).

pub mod copy;
pub mod diff;
pub mod opts;

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

use crate::isolation::{ContainerContext, IsolationError};

/// The overlay directories of a process-model writable layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDirs {
    /// Overlay `upperdir`: what the container changed.
    pub upper: PathBuf,
    /// Overlay `workdir` (same filesystem as `upper`).
    pub work: PathBuf,
}

/// The process model's layer directories of a container (they may not exist yet).
pub fn layer_dirs(ctx: &ContainerContext) -> LayerDirs {
    let dir = ctx.storage_dir();
    LayerDirs {
        upper: dir.join("upper"),
        work: dir.join("work"),
    }
}

/// Creates the container's storage directory, private to root (the layer holds files with
/// the container's owners and modes, setuid ones included: no host user may reach them).
pub fn ensure_storage_dir(ctx: &ContainerContext) -> Result<PathBuf, IsolationError> {
    let dir = ctx.storage_dir();
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| IsolationError::os(format!("create {}", parent.display()), e))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(IsolationError::os(format!("create {}", dir.display()), e)),
    }
    Ok(dir)
}

/// Creates (first start) or reuses (later starts) the process model's writable layer.
pub fn ensure_layer_dirs(ctx: &ContainerContext) -> Result<LayerDirs, IsolationError> {
    ensure_storage_dir(ctx)?;
    let dirs = layer_dirs(ctx);
    for dir in [&dirs.upper, &dirs.work] {
        match fs::DirBuilder::new().mode(0o755).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(IsolationError::os(format!("create {}", dir.display()), e)),
        }
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::StatePaths;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn layer_dirs_live_under_the_persistent_root_and_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = ContainerContext {
            id: "ab".repeat(32),
            state_dir: tmp.path().join("run/containers").join("ab".repeat(32)),
            paths: StatePaths::new(Some(tmp.path())),
        };
        let dirs = ensure_layer_dirs(&ctx).unwrap();
        let storage = tmp.path().join("containers").join("ab".repeat(32));
        assert_eq!(dirs.upper, storage.join("upper"));
        assert_eq!(dirs.work, storage.join("work"));
        let mode = fs::metadata(&storage).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // A second start keeps what the first one wrote.
        fs::write(dirs.upper.join("kept"), "x").unwrap();
        assert_eq!(ensure_layer_dirs(&ctx).unwrap(), dirs);
        assert!(dirs.upper.join("kept").exists());
    }
}
