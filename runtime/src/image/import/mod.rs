//! `hull image import`: reads an OCI layout (directory or tar), a docker-archive, or a
//! root filesystem (directory or tar), verifies every digest and size, unpacks layers
//! into the cache and names the image.

mod archive;
mod docker;
pub(crate) mod fuzzing;
mod layer;
mod oci;
mod plain;
mod rootfs;

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use archive::Source;

use super::reference::Reference;
use super::store::{ImageRecord, LayerRecord, Transaction};
use super::{ImageError, ImageStore, Sha256Digest};

pub use layer::Compression;
pub(crate) use layer::{bring_layer, LayerInput};
pub use rootfs::ConfigChanges;

/// OCI media types hull writes in manifests it synthesizes.
pub(crate) const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// What to import and how.
#[derive(Debug, Default, Clone)]
pub struct ImportOptions {
    /// Name to give the image (`NAME[:TAG]`); required when the input carries none.
    pub tag: Option<String>,
    /// Treat the input as a root filesystem (directory or tar), like `docker import`.
    pub rootfs: bool,
    /// Config for a `--rootfs` import (Cmd, Env, ...).
    pub changes: ConfigChanges,
    /// Show a progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
}

/// The kinds of input `import` understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// An OCI image layout directory (`oci-layout`, `index.json`, `blobs/`).
    OciLayout,
    /// A tar of an OCI image layout.
    OciArchive,
    /// A `docker save` / `podman save` tar (`manifest.json`).
    DockerArchive,
    /// A directory holding a root filesystem.
    RootfsDir,
    /// A tar (optionally gzip/zstd) of a root filesystem.
    RootfsTar,
    /// Pulled from a registry.
    Registry,
}

/// The result of an import.
#[derive(Debug, Clone)]
pub struct ImportOutcome {
    /// Normalized name.
    pub name: String,
    /// Image id (config digest).
    pub id: String,
    /// What the input was.
    pub kind: InputKind,
    /// The image was already stored under this name with the same content.
    pub unchanged: bool,
    /// Layers unpacked by this import.
    pub layers_unpacked: usize,
    /// Layers found already in the cache.
    pub layers_reused: usize,
}

/// Imports the image at `path` into `store`.
pub fn import(
    store: &ImageStore,
    path: &Path,
    opts: &ImportOptions,
) -> Result<ImportOutcome, ImageError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| ImageError::io(format!("open {}", path.display()), e))?;
    if let Some(tag) = &opts.tag {
        Reference::parse(tag)?;
    }
    let txn = store.begin()?;
    if opts.rootfs {
        let kind = if meta.is_dir() {
            InputKind::RootfsDir
        } else {
            InputKind::RootfsTar
        };
        return rootfs::import(&txn, path, kind, opts).and_then(|plan| finish(txn, plan));
    }
    if meta.is_dir() {
        if !path.join("oci-layout").is_file() {
            return Err(ImageError::invalid(
                format!("image {}", path.display()),
                "directory is not an OCI image layout (no oci-layout file); \
                 pass --rootfs to import a root filesystem directory",
            ));
        }
        let source = archive::DirSource::new(path);
        let plan = oci::import(&txn, &source, InputKind::OciLayout, opts)?;
        return finish(txn, plan);
    }
    let source = archive::TarSource::open(path, store.limits())?;
    if source.contains("oci-layout") && source.contains("index.json") {
        let plan = oci::import(&txn, &source, InputKind::OciArchive, opts)?;
        finish(txn, plan)
    } else if source.contains("manifest.json") {
        let plan = docker::import(&txn, &source, opts)?;
        finish(txn, plan)
    } else {
        Err(ImageError::invalid(
            format!("image {}", path.display()),
            "tar has neither oci-layout/index.json (OCI archive) nor manifest.json \
             (docker archive); pass --rootfs to import a root filesystem tar",
        ))
    }
}

/// Everything verified and staged, ready to be committed.
pub(crate) struct Plan {
    pub name: String,
    pub kind: InputKind,
    pub config_bytes: Vec<u8>,
    pub manifest_bytes: Vec<u8>,
    pub layers: Vec<LayerRecord>,
    pub unpacked: usize,
    pub reused: usize,
}

pub(crate) fn finish(txn: Transaction<'_>, plan: Plan) -> Result<ImportOutcome, ImageError> {
    let name = Reference::parse(&plan.name)?.to_string();
    let config_digest = txn.add_blob(&plan.config_bytes)?;
    let manifest_digest = txn.add_blob(&plan.manifest_bytes)?;
    let id = config_digest.to_string();
    let mut outcome = ImportOutcome {
        name: name.clone(),
        id: id.clone(),
        kind: plan.kind,
        unchanged: false,
        layers_unpacked: plan.unpacked,
        layers_reused: plan.reused,
    };
    if let Some(existing) = txn.existing(&name)? {
        if existing.id == id && existing.layers == plan.layers {
            outcome.unchanged = true;
            return Ok(outcome);
        }
    }
    let record = ImageRecord {
        name,
        id,
        manifest_digest: manifest_digest.to_string(),
        manifest_size: plan.manifest_bytes.len() as u64,
        config_size: plan.config_bytes.len() as u64,
        layers: plan.layers,
        imported_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    txn.commit(record)?;
    Ok(outcome)
}

/// Parses and checks an image config: it must be JSON oci-spec accepts, with one
/// sha256 diff_id per layer.
pub(crate) fn parse_config(
    bytes: &[u8],
    layer_count: usize,
) -> Result<Vec<Sha256Digest>, ImageError> {
    let config: oci_spec::image::ImageConfiguration = serde_json::from_slice(bytes)
        .map_err(|e| ImageError::invalid("image config", e.to_string()))?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != layer_count {
        return Err(ImageError::invalid(
            "image config",
            format!(
                "{} diff_ids for {} layers in the manifest",
                diff_ids.len(),
                layer_count
            ),
        ));
    }
    diff_ids.iter().map(|d| Sha256Digest::parse(d)).collect()
}

/// Parses bounded JSON of type `T`, naming `what` on error.
pub(crate) fn parse_json<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    what: &str,
) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::invalid(what, e.to_string()))
}

/// Reads at most `limit` bytes from a reader that is expected to hold fewer.
pub(crate) fn read_all_bounded(
    mut reader: impl Read,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, ImageError> {
    let mut bytes = Vec::new();
    (&mut reader)
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ImageError::io(format!("read {what}"), e))?;
    if bytes.len() as u64 > limit {
        return Err(ImageError::TooLarge {
            what: what.to_string(),
            limit,
            unit: "bytes",
        });
    }
    Ok(bytes)
}

/// Sniffs gzip/zstd magic at the start of a file.
pub(crate) fn sniff_file(file: &File) -> Compression {
    use std::os::unix::fs::FileExt;
    let mut magic = [0u8; 4];
    let n = file.read_at(&mut magic, 0).unwrap_or(0);
    Compression::sniff(&magic[..n])
}
