//! The OCI image store: content-addressed blobs, an index of named images, and a layer
//! cache of unpacked layers shared by all images.
//!
//! Layout under `StatePaths::images()`:
//!
//! ```text
//! lock                       flock(2) target: import/rm hold it exclusively
//! index.json                 named images (replaced atomically; readers take no lock)
//! blobs/sha256/<hex>         manifests and configs, by digest
//! layers/sha256/<hex>        unpacked layers by diff_id (uncompressed digest); each is a
//!                            ready-to-use overlayfs lowerdir (whiteouts already converted)
//! tmp/                       work space of the import in progress (cleared under the lock)
//! ```
//!
//! Compressed layer blobs are not kept once unpacked (like containers/storage): the image
//! record keeps their digests and sizes, and the unpacked layer is the only copy.

mod digest;
mod error;
pub mod export;
mod header_budget;
pub mod import;
mod limits;
mod progress;
pub mod reference;
pub mod save;
mod store;
pub mod unpack;

pub use digest::Sha256Digest;
pub use error::ImageError;
pub use limits::Limits;
pub use reference::Reference;
pub(crate) use store::write_atomic as write_private_atomic;
pub use store::{ImageRecord, ImageStore, LayerRecord, Removal, UsersLock};

use std::path::PathBuf;

/// An image ready to run: its configuration and its unpacked layers.
#[derive(Debug, Clone)]
pub struct StoredImage {
    /// Normalized `namespace/name:tag`.
    pub name: String,
    /// `sha256:<config digest hex>`.
    pub id: String,
    /// The image configuration (Entrypoint, Cmd, Env, WorkingDir, User, ...).
    pub config: oci_spec::image::ImageConfiguration,
    /// Unpacked layer directories in the shared layer cache, lowest first. Each can be
    /// used directly as an overlayfs lowerdir (`lowerdir=top:...:bottom`).
    pub layers: Vec<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::import::{import, ConfigChanges, ImportOptions};
    use super::*;
    use crate::paths::StatePaths;

    #[test]
    fn get_returns_config_and_unpacked_layers() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::write(rootfs.join("etc/hello"), b"hi\n").unwrap();
        let paths = StatePaths::new(Some(&tmp.path().join("state")));
        let store = ImageStore::open(&paths).unwrap();
        let opts = ImportOptions {
            tag: Some("hull/unit".into()),
            rootfs: true,
            changes: ConfigChanges {
                cmd: Some(vec!["sh".into()]),
                ..Default::default()
            },
            progress: false,
        };
        let outcome = import(&store, &rootfs, &opts).unwrap();

        let image = store.get("unit").unwrap();
        assert_eq!(image.name, "hull/unit:latest");
        assert_eq!(image.id, outcome.id);
        let cmd = image.config.config().as_ref().unwrap().cmd().clone();
        assert_eq!(cmd, Some(vec!["sh".to_string()]));
        assert_eq!(image.layers.len(), 1);
        assert_eq!(
            std::fs::read(image.layers[0].join("etc/hello")).unwrap(),
            b"hi\n"
        );
        assert!(image.layers[0].starts_with(paths.images()));

        assert!(matches!(store.get("nope"), Err(ImageError::NotFound(_))));
        assert!(matches!(
            store.get("Bad Name"),
            Err(ImageError::NotFound(_))
        ));
        store.remove("hull/unit", false).unwrap();
        assert!(!image.layers[0].exists());
    }
}
