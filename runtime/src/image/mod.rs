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
pub mod import;
mod limits;
mod progress;
pub mod reference;
mod store;
pub mod unpack;

pub use digest::Sha256Digest;
pub use error::ImageError;
pub use limits::Limits;
pub use reference::Reference;
pub use store::{ImageRecord, ImageStore, LayerRecord};

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
