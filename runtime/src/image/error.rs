//! Typed errors of the image store. Each names what was wrong (the entry path, the
//! digest, the limit) so a user can tell a hostile archive from a broken one.

use std::path::PathBuf;

/// Everything that can go wrong importing, resolving or removing an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No image matches the reference.
    #[error("no such image: {0}")]
    NotFound(String),

    /// A short reference matched more than one image.
    #[error("reference {reference:?} is ambiguous: matches {}", candidates.join(", "))]
    Ambiguous {
        reference: String,
        candidates: Vec<String>,
    },

    /// A name or tag that does not follow `namespace/name:tag`.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },

    /// An I/O error, with what hull was doing.
    #[error("{context}: {error}")]
    Io {
        context: String,
        error: std::io::Error,
    },

    /// Content whose sha256 is not the one it was declared with.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    /// Content whose size is not the one it was declared with.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },

    /// Content beyond a configured bound (see `Limits`).
    #[error("{what} exceeds the limit of {limit} {unit}")]
    TooLarge {
        what: String,
        limit: u64,
        unit: &'static str,
    },

    /// An archive entry that would escape its layer or is otherwise unsafe to write.
    #[error("unsafe archive entry {path:?}: {reason}")]
    UnsafeEntry { path: String, reason: String },

    /// The same path appears twice in one layer.
    #[error("duplicate archive entry {0:?} in one layer")]
    DuplicateEntry(String),

    /// Malformed input: not a tar, missing files, bad JSON, unsupported media type.
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },

    /// An error in one layer, with the layer's digest.
    #[error("layer {digest}: {error}")]
    Layer {
        digest: String,
        error: Box<ImageError>,
    },

    /// The store directory is not usable.
    #[error("image store at {path}: {reason}")]
    Store { path: PathBuf, reason: String },

    /// `image rm` without force of an image that containers were made from.
    #[error(
        "image {image} is being used by container{} {} (remove {} first, or use -f)",
        if containers.len() == 1 { "" } else { "s" },
        containers.join(", "),
        if containers.len() == 1 { "it" } else { "them" }
    )]
    InUse {
        /// The image name.
        image: String,
        /// `shortid (name)` of each container.
        containers: Vec<String>,
    },

    /// Some container records cannot be read, so which layers are in use is unknown:
    /// nothing is deleted (failing closed) until they are removed.
    #[error(
        "cannot tell which images are in use: the record of container{} {} cannot be read \
         (remove {} with `hull rm -f`, then retry; nothing was deleted)",
        if containers.len() == 1 { "" } else { "s" },
        containers.join(", "),
        if containers.len() == 1 { "it" } else { "them" }
    )]
    UnreadableRecords {
        /// `id (reason)` of each unreadable record.
        containers: Vec<String>,
    },
}

impl ImageError {
    /// Wraps an I/O error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ImageError::Io {
            context: context.into(),
            error: source,
        }
    }

    /// Shorthand for `ImageError::Invalid`.
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        ImageError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for `ImageError::UnsafeEntry`.
    pub fn unsafe_entry(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ImageError::UnsafeEntry {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
