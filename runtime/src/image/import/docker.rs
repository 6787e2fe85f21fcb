//! docker-archive (what `docker save` / `podman save` / `skopeo copy docker-archive:`
//! write): `manifest.json` listing a config file and layer tars per image.
//!
//! The archive has no digests of its own beyond file names; hull computes every digest,
//! checks those the file names claim (`<hex>.json`, `blobs/sha256/<hex>`), checks each
//! layer's diff_id against the config, and writes an OCI manifest for the image.

use serde::Deserialize;
use serde_json::json;

use super::archive::{clean_path, Source};
use super::layer::{bring_layer, LayerInput};
use super::{parse_config, parse_json, read_all_bounded, ImportOptions, InputKind, Plan};
use super::{MEDIA_CONFIG, MEDIA_MANIFEST};
use crate::image::reference::Reference;
use crate::image::store::Transaction;
use crate::image::{ImageError, Sha256Digest};

#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

pub(crate) fn import(
    txn: &Transaction<'_>,
    source: &dyn Source,
    opts: &ImportOptions,
) -> Result<Plan, ImageError> {
    let limits = *txn.store().limits();
    let (reader, _, _) = source.open("manifest.json")?;
    let entries: Vec<Entry> = parse_json(
        &read_all_bounded(reader, limits.max_json_bytes, "manifest.json")?,
        "manifest.json",
    )?;
    let entry = choose(entries, opts.tag.as_deref())?;
    if entry.layers.len() > limits.max_layers {
        return Err(ImageError::TooLarge {
            what: "number of layers".into(),
            limit: limits.max_layers as u64,
            unit: "layers",
        });
    }

    let (reader, _, _) = source.open(&entry.config)?;
    let config_bytes = read_all_bounded(reader, limits.max_json_bytes, "image config")?;
    let config_digest = Sha256Digest::of(&config_bytes);
    if let Some(claimed) = digest_in_name(&entry.config) {
        if claimed != config_digest {
            return Err(ImageError::DigestMismatch {
                what: format!("image config {:?}", entry.config),
                expected: claimed.to_string(),
                actual: config_digest.to_string(),
            });
        }
    }
    let diff_ids = parse_config(&config_bytes, entry.layers.len())?;

    let name = match (&opts.tag, entry.repo_tags.as_ref().and_then(|t| t.first())) {
        (Some(tag), _) => tag.clone(),
        (None, Some(tag)) => tag.clone(),
        (None, None) => {
            return Err(ImageError::invalid(
                format!("image {}", source.describe()),
                "the archive has no RepoTags: pass --tag NAME[:TAG]",
            ))
        }
    };

    let mut layers = Vec::new();
    let (mut unpacked, mut reused) = (0, 0);
    for (path, diff_id) in entry.layers.iter().zip(diff_ids) {
        let (reader, length, compression) = source.open(path)?;
        // The digest is only known by reading the blob; claimed ones are checked.
        let declared = digest_in_name(path).map(|d| (d, length));
        let (record, fresh) = bring_layer(
            txn,
            LayerInput {
                reader,
                length: Some(length),
                compression,
                declared,
                expected_diff_id: Some(diff_id),
                media_type: compression.media_type().to_string(),
                label: path.clone(),
            },
            opts.progress,
        )?;
        if fresh {
            unpacked += 1;
        } else {
            reused += 1;
        }
        layers.push(record);
    }

    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {
            "mediaType": MEDIA_CONFIG,
            "digest": config_digest.to_string(),
            "size": config_bytes.len(),
        },
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type,
            "digest": l.digest,
            "size": l.size,
        })).collect::<Vec<_>>(),
    });
    Ok(Plan {
        name,
        kind: InputKind::DockerArchive,
        config_bytes,
        manifest_bytes: serde_json::to_vec(&manifest).expect("manifest serializes"),
        layers,
        unpacked,
        reused,
    })
}

/// Picks the entry: the only one, or the one whose RepoTags contain `--tag`.
fn choose(entries: Vec<Entry>, tag: Option<&str>) -> Result<Entry, ImageError> {
    if entries.len() <= 1 {
        return entries
            .into_iter()
            .next()
            .ok_or_else(|| ImageError::invalid("manifest.json", "lists no image"));
    }
    if let Some(tag) = tag {
        let wanted = Reference::parse(tag)?;
        let found = entries.iter().position(|e| {
            e.repo_tags
                .iter()
                .flatten()
                .any(|t| Reference::parse(t).is_ok_and(|r| r == wanted))
        });
        if let Some(i) = found {
            return Ok(entries.into_iter().nth(i).expect("index in range"));
        }
    }
    let names: Vec<String> = entries
        .iter()
        .map(|e| {
            e.repo_tags
                .as_ref()
                .map_or("<untagged>".into(), |t| t.join(" "))
        })
        .collect();
    Err(ImageError::invalid(
        "manifest.json",
        format!(
            "the archive holds {} images ({}); choose one with --tag",
            entries.len(),
            names.join(", ")
        ),
    ))
}

/// A digest the file name claims: `blobs/sha256/<hex>` or `<hex>.json`. Legacy
/// `<id>/layer.tar` names carry a v1 id, not a content digest.
fn digest_in_name(path: &str) -> Option<Sha256Digest> {
    let clean = clean_path(path).ok()?;
    if let Some(hex) = clean.strip_prefix("blobs/sha256/") {
        return Sha256Digest::from_hex(hex);
    }
    if let Some(hex) = clean.strip_suffix(".json") {
        return Sha256Digest::from_hex(hex);
    }
    None
}
