//! Where hull keeps its state.
//!
//! Persistent state (images, layers, block-device images, containers' writable layers)
//! lives under `/var/lib/hull`; runtime state (container records, sockets) under `/run/hull`. `--root DIR` or `HULL_ROOT=DIR`
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
    /// A relative root is made absolute (mount options and the VMM need absolute paths).
    pub fn new(root: Option<&Path>) -> Self {
        match root {
            Some(root) => {
                let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
                StatePaths {
                    run_root: root.join("run"),
                    root,
                }
            }
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

    /// Containers' writable layers, one directory per container id, on disk (docker's
    /// /var/lib/docker/overlay2): what a container writes survives `stop`/`start` and never
    /// fills the RAM-backed run root.
    pub fn container_storage(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// The optional configuration file (`config.json` under the persistent root).
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.json")
    }

    /// Takes group and other access away from the state directories an older hull may
    /// have created readable (0755): both roots, the containers and the image store.
    /// Absent ones are left for their first use, which creates them 0700.
    pub fn narrow_existing(&self) -> std::io::Result<()> {
        for dir in [
            &self.root,
            &self.run_root,
            &self.containers(),
            &self.images(),
        ] {
            crate::private_fs::narrow(dir)?;
        }
        Ok(())
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
        assert_eq!(p.container_storage(), Path::new("/tmp/h/containers"));
    }

    #[test]
    fn a_relative_root_is_made_absolute() {
        let p = StatePaths::new(Some(Path::new("rel/h")));
        assert!(p.root.is_absolute() && p.root.ends_with("rel/h"));
        assert!(p.container_storage().is_absolute());
    }

    /// Without --root, state goes where README and docs/ say (written out here, not taken
    /// from the constants: moving the store is a change users and docs must follow).
    #[test]
    fn without_a_root_state_goes_where_the_docs_say() {
        let p = StatePaths::new(None);
        assert_eq!(p.images(), Path::new("/var/lib/hull/images"));
        assert_eq!(p.config_file(), Path::new("/var/lib/hull/config.json"));
        assert_eq!(p.containers(), Path::new("/run/hull/containers"));
    }
}
