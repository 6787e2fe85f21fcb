//! OCI image layout (directory or tar): `oci-layout`, `index.json`, `blobs/sha256/...`.

use std::collections::HashMap;

use serde::Deserialize;

use super::archive::Source;
use super::layer::{bring_layer, Compression, LayerInput};
use super::{parse_config, parse_json, read_all_bounded, ImportOptions, InputKind, Plan};
use crate::image::reference::Reference;
use crate::image::store::Transaction;
use crate::image::{ImageError, Sha256Digest};

const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The annotation OCI layouts use to name a manifest (a tag or a full reference).
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation with the full image name.
const CONTAINERD_NAME: &str = "io.containerd.image.name";

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Platform {
    pub architecture: String,
    pub os: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Layout {
    image_layout_version: String,
}

pub(crate) fn import(
    txn: &Transaction<'_>,
    source: &dyn Source,
    kind: InputKind,
    opts: &ImportOptions,
) -> Result<Plan, ImageError> {
    let limits = *txn.store().limits();
    let (reader, _, _) = source.open("oci-layout")?;
    let layout: Layout = parse_json(
        &read_all_bounded(reader, limits.max_json_bytes, "oci-layout")?,
        "oci-layout",
    )?;
    if !layout.image_layout_version.starts_with("1.") {
        return Err(ImageError::invalid(
            "oci-layout",
            format!(
                "unsupported imageLayoutVersion {:?}",
                layout.image_layout_version
            ),
        ));
    }
    let (reader, _, _) = source.open("index.json")?;
    let index: Index = parse_json(
        &read_all_bounded(reader, limits.max_json_bytes, "index.json")?,
        "index.json",
    )?;
    if index.schema_version != 2 {
        return Err(ImageError::invalid("index.json", "schemaVersion is not 2"));
    }

    let chosen = choose_manifest(
        source,
        &index.manifests,
        opts.tag.as_deref(),
        limits.max_json_bytes,
        0,
    )?;
    let manifest_bytes = read_blob(source, &chosen, limits.max_json_bytes, "manifest")?;
    let manifest: Manifest = parse_json(&manifest_bytes, "manifest")?;
    if manifest.schema_version != 2 {
        return Err(ImageError::invalid("manifest", "schemaVersion is not 2"));
    }
    if manifest.layers.len() > limits.max_layers {
        return Err(ImageError::TooLarge {
            what: "number of layers".into(),
            limit: limits.max_layers as u64,
            unit: "layers",
        });
    }
    let config_bytes = read_blob(
        source,
        &manifest.config,
        limits.max_json_bytes,
        "image config",
    )?;
    let diff_ids = parse_config(&config_bytes, manifest.layers.len())?;

    let name = match &opts.tag {
        Some(tag) => tag.clone(),
        None => name_from_annotations(&chosen.annotations).ok_or_else(|| {
            ImageError::invalid(
                format!("image {}", source.describe()),
                "the layout does not name the image with a full reference: pass --tag NAME[:TAG]",
            )
        })?,
    };

    let mut layers = Vec::new();
    let (mut unpacked, mut reused) = (0, 0);
    for (desc, diff_id) in manifest.layers.iter().zip(diff_ids) {
        let digest = Sha256Digest::parse(&desc.digest)?;
        let compression = Compression::from_media_type(&desc.media_type)?;
        let blob_path = format!("blobs/sha256/{}", digest.hex());
        let input = if txn.has_layer(&diff_id) {
            // Not read at all: bring_layer returns the cached layer.
            LayerInput {
                reader: Box::new(std::io::empty()),
                length: None,
                compression,
                declared: Some((digest.clone(), desc.size)),
                expected_diff_id: Some(diff_id),
                media_type: desc.media_type.clone(),
                label: digest.to_string(),
            }
        } else {
            let (reader, length, _) = source.open(&blob_path)?;
            if length != desc.size {
                return Err(ImageError::Layer {
                    digest: digest.to_string(),
                    error: Box::new(ImageError::SizeMismatch {
                        what: "layer blob".into(),
                        expected: desc.size,
                        actual: length,
                    }),
                });
            }
            LayerInput {
                reader,
                length: Some(length),
                compression,
                declared: Some((digest.clone(), desc.size)),
                expected_diff_id: Some(diff_id),
                media_type: desc.media_type.clone(),
                label: digest.to_string(),
            }
        };
        let (record, fresh) = bring_layer(txn, input, opts.progress)?;
        if fresh {
            unpacked += 1;
        } else {
            reused += 1;
        }
        layers.push(record);
    }
    Ok(Plan {
        name,
        kind,
        config_bytes,
        manifest_bytes,
        layers,
        unpacked,
        reused,
    })
}

/// Picks the image manifest to import: the only one, the one whose ref name matches
/// `--tag`, or (through nested indexes) the one for this platform.
fn choose_manifest(
    source: &dyn Source,
    manifests: &[Descriptor],
    tag: Option<&str>,
    max_json: u64,
    depth: u32,
) -> Result<Descriptor, ImageError> {
    if depth > 2 {
        return Err(ImageError::invalid(
            "index.json",
            "image indexes nested too deeply",
        ));
    }
    let mut candidates: Vec<&Descriptor> = manifests
        .iter()
        .filter(|d| {
            matches!(
                d.media_type.as_str(),
                MEDIA_OCI_MANIFEST | MEDIA_DOCKER_MANIFEST | MEDIA_OCI_INDEX | MEDIA_DOCKER_LIST
            )
        })
        .collect();
    if candidates.len() > 1 {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        let platform: Vec<&Descriptor> = candidates
            .iter()
            .copied()
            .filter(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == arch)
            })
            .collect();
        if !platform.is_empty() {
            candidates = platform;
        }
    }
    if candidates.len() > 1 {
        if let Some(tag) = tag {
            let wanted = Reference::parse(tag)?;
            let matching: Vec<&Descriptor> = candidates
                .iter()
                .copied()
                .filter(|d| {
                    d.annotations.get(REF_NAME).is_some_and(|r| {
                        r == &wanted.tag || Reference::parse(r).is_ok_and(|r| r == wanted)
                    })
                })
                .collect();
            if !matching.is_empty() {
                candidates = matching;
            }
        }
    }
    let chosen = match candidates.as_slice() {
        [] => {
            return Err(ImageError::invalid(
                "index.json",
                "no image manifest in the layout",
            ))
        }
        [one] => (*one).clone(),
        many => {
            let names: Vec<String> = many
                .iter()
                .map(|d| {
                    d.annotations
                        .get(REF_NAME)
                        .cloned()
                        .unwrap_or_else(|| d.digest.clone())
                })
                .collect();
            return Err(ImageError::invalid(
                "index.json",
                format!(
                    "the layout holds {} images ({}); choose one with --tag",
                    many.len(),
                    names.join(", ")
                ),
            ));
        }
    };
    if matches!(
        chosen.media_type.as_str(),
        MEDIA_OCI_INDEX | MEDIA_DOCKER_LIST
    ) {
        let bytes = read_blob(source, &chosen, max_json, "image index")?;
        let nested: Index = parse_json(&bytes, "image index")?;
        let mut inner = choose_manifest(source, &nested.manifests, tag, max_json, depth + 1)?;
        // Keep the outer name when the inner manifest has none.
        for (k, v) in chosen.annotations {
            inner.annotations.entry(k).or_insert(v);
        }
        return Ok(inner);
    }
    Ok(chosen)
}

/// A full image name from the manifest's annotations, if they carry one (an OCI
/// `ref.name` is often only a tag, which does not name the repository).
fn name_from_annotations(annotations: &HashMap<String, String>) -> Option<String> {
    for key in [CONTAINERD_NAME, REF_NAME] {
        if let Some(v) = annotations.get(key) {
            if (v.contains('/') || v.contains(':')) && Reference::parse(v).is_ok() {
                return Some(v.clone());
            }
        }
    }
    None
}

/// Reads a small blob (JSON), verifying its size and digest against the descriptor.
pub(crate) fn read_blob(
    source: &dyn Source,
    desc: &Descriptor,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, ImageError> {
    let digest = Sha256Digest::parse(&desc.digest)?;
    if desc.size > limit {
        return Err(ImageError::TooLarge {
            what: format!("{what} {digest} ({} bytes)", desc.size),
            limit,
            unit: "bytes",
        });
    }
    let (reader, _, _) = source.open(&format!("blobs/sha256/{}", digest.hex()))?;
    let bytes = read_all_bounded(reader, limit, what)?;
    if bytes.len() as u64 != desc.size {
        return Err(ImageError::SizeMismatch {
            what: format!("{what} {digest}"),
            expected: desc.size,
            actual: bytes.len() as u64,
        });
    }
    let actual = Sha256Digest::of(&bytes);
    if actual != digest {
        return Err(ImageError::DigestMismatch {
            what: what.to_string(),
            expected: digest.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(bytes)
}
