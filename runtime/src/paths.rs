//! Where hull keeps its state.
//!
//! Persistent state (images, layers, block-device images) lives under `/var/lib/hull`;
//! runtime state (containers, sockets) under `/run/hull`. `--root DIR` or `HULL_ROOT=DIR`
//! moves both: persistent state to `DIR`, runtime state to `DIR/run`, so tests can run side
//! by side without touching each other or the host's default store.

use std::path::{Path, PathBuf};

/// Default persistent state directory.
pub const DEFAULT_ROOT: &str = "/var/lib/hull";
/// Default runtime state directory.
pub const DEFAULT_RUN_ROOT: &str = "/run/hull";

/// The two state roots of one hull instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePaths {
    /// Persistent state: image store, layer cache, disk images.
    pub root: PathBuf,
    /// Volatile state: containers, sockets, VMs. Cleared by a reboot.
    pub run_root: PathBuf,
}

impl StatePaths {
    /// State paths for an explicit root (`--root`/`HULL_ROOT`), or the defaults when `None`.
    pub fn new(root: Option<&Path>) -> Self {
        match root {
            Some(root) => StatePaths {
                root: root.to_path_buf(),
                run_root: root.join("run"),
            },
            None => StatePaths {
                root: PathBuf::from(DEFAULT_ROOT),
                run_root: PathBuf::from(DEFAULT_RUN_ROOT),
            },
        }
    }

    /// Image store directory (blobs, image index, layer cache).
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    /// Per-container runtime state directories.
    pub fn containers(&self) -> PathBuf {
        self.run_root.join("containers")
    }

    /// The optional configuration file (`config.json` under the persistent root).
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_root_moves_both_roots() {
        let p = StatePaths::new(Some(Path::new("/tmp/h")));
        assert_eq!(p.root, Path::new("/tmp/h"));
        assert_eq!(p.run_root, Path::new("/tmp/h/run"));
        assert_eq!(p.containers(), Path::new("/tmp/h/run/containers"));
    }

    #[test]
    fn defaults_are_the_system_dirs() {
        let p = StatePaths::new(None);
        assert_eq!(p.root, Path::new(DEFAULT_ROOT));
        assert_eq!(p.run_root, Path::new(DEFAULT_RUN_ROOT));
    }
}
