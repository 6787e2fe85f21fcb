//! `hull pull`: manifest (through an index for this platform), config, then the layers
//! downloaded in parallel, each streamed through the same verified import as a local
//! archive (blob digest and size, diff_id), so nothing that fails verification is
//! stored and a failed pull leaves nothing behind.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ureq::http::Method;

use super::blob::{fetch_small, pull_scope, verify, BlobReader};
use super::client::{expect_ok, read_bounded, Payload, Redirects, Registry};
use super::manifest::{self, Fetched, Manifest, Platform};
use super::{Registries, RegistryError};
use crate::image::import::{finish, parse_config, Compression, InputKind, LayerInput, Plan};
use crate::image::{ImageStore, LayerRecord, Reference, Sha256Digest};

/// Layers downloaded at once (docker's default is 3); `HULL_PULL_PARALLEL` overrides it.
const PARALLEL_LAYERS: usize = 3;

fn parallel_layers() -> usize {
    std::env::var("HULL_PULL_PARALLEL")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| (1..=16).contains(n))
        .unwrap_or(PARALLEL_LAYERS)
}

/// How to pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// The platform to choose from an index (default: this host's).
    pub platform: Option<Platform>,
    /// Show a progress bar per layer (only when stderr is a terminal).
    pub progress: bool,
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullOutcome {
    /// Stored name.
    pub name: String,
    /// Image id (config digest).
    pub id: String,
    /// Digest of the image manifest.
    pub manifest_digest: String,
    /// The registry that served it (a mirror or the named one).
    pub source: String,
    /// Already stored with the same content.
    pub unchanged: bool,
    /// Layers downloaded.
    pub layers_downloaded: usize,
    /// Layers found in the cache.
    pub layers_reused: usize,
}

/// A resolved image manifest.
pub(crate) struct Resolved {
    pub bytes: Vec<u8>,
    pub digest: Sha256Digest,
    pub manifest: Manifest,
}

/// Pulls `reference` into `store`.
pub fn pull(
    store: &ImageStore,
    registries: &Registries,
    reference: &Reference,
    opts: &PullOptions,
) -> Result<PullOutcome, RegistryError> {
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let repo = reference.repository();
    let limit = store.limits().max_json_bytes;
    // Mirrors first, in order; then the registry itself.
    let mut sources: Vec<String> = registries.config().mirrors_of(&reference.domain).to_vec();
    sources.push(reference.domain.clone());
    let mut last_error = None;
    for (i, source) in sources.iter().enumerate() {
        let is_mirror = i + 1 < sources.len();
        let attempt = registries.client(source).and_then(|registry| {
            let resolved = resolve(
                &registry,
                &repo,
                reference.tag_or_digest(),
                &platform,
                limit,
            )?;
            Ok((registry, resolved))
        });
        match attempt {
            Ok((registry, resolved)) => {
                return pull_resolved(store, &registry, reference, resolved, opts);
            }
            Err(e) if is_mirror => {
                tracing::warn!(mirror = %source, error = %e, "mirror failed; trying the next source");
                last_error = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error.expect("at least the registry itself was tried"))
}

/// Fetches the manifest for `tag_or_digest`, through an index if there is one; every
/// digest checked.
pub(crate) fn resolve(
    registry: &Registry,
    repo: &str,
    tag_or_digest: &str,
    platform: &Platform,
    limit: u64,
) -> Result<Resolved, RegistryError> {
    let (bytes, content_type, digest) = fetch_manifest(registry, repo, tag_or_digest, limit)?;
    match manifest::classify(&content_type, &bytes)? {
        Fetched::Manifest(manifest) => Ok(Resolved {
            bytes,
            digest,
            manifest,
        }),
        Fetched::Index(index) => {
            let chosen = manifest::choose(&index, platform)?;
            let want = Sha256Digest::parse(&chosen.digest)?;
            if chosen.size > limit {
                return Err(RegistryError::TooLarge {
                    what: format!("manifest {want} ({} bytes)", chosen.size),
                    limit,
                });
            }
            let (bytes, content_type, digest) =
                fetch_manifest(registry, repo, &want.to_string(), limit)?;
            verify(&bytes, &want, chosen.size, "manifest")?;
            match manifest::classify(&content_type, &bytes)? {
                Fetched::Manifest(manifest) => Ok(Resolved {
                    bytes,
                    digest,
                    manifest,
                }),
                Fetched::Index(_) => Err(RegistryError::invalid(
                    format!("manifest {want}"),
                    "an index inside an index is not supported",
                )),
            }
        }
    }
}

/// `GET /v2/REPO/manifests/REF`: body (bounded), content type, and its digest (checked
/// against the reference's digest or the registry's `Docker-Content-Digest`).
fn fetch_manifest(
    registry: &Registry,
    repo: &str,
    reference: &str,
    limit: u64,
) -> Result<(Vec<u8>, String, Sha256Digest), RegistryError> {
    let path = format!("/v2/{repo}/manifests/{reference}");
    let response = registry.send(
        Method::GET,
        &path,
        &[("Accept", manifest::ACCEPT.to_string())],
        Payload::Empty,
        &pull_scope(repo),
        Redirects::SameOrigin,
    )?;
    if response.status() == ureq::http::StatusCode::NOT_FOUND {
        let body = read_bounded(response, 64 << 10, "error response", &path).unwrap_or_default();
        return Err(RegistryError::NotFound {
            reference: format!("{}/{repo}:{reference}", registry.domain())
                .replace(":sha256:", "@sha256:"),
            message: super::client::error_message(&body),
        });
    }
    let response = expect_ok(response, &format!("manifest {repo}:{reference}"))?;
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let header_digest = response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = read_bounded(
        response,
        limit,
        &format!("manifest {repo}:{reference}"),
        &path,
    )?;
    let digest = Sha256Digest::of(&bytes);
    let expected = if reference.starts_with("sha256:") {
        Some(reference.to_string())
    } else {
        header_digest.filter(|d| d.starts_with("sha256:"))
    };
    if let Some(expected) = expected {
        if expected != digest.to_string() {
            return Err(RegistryError::Image(
                crate::image::ImageError::DigestMismatch {
                    what: format!("manifest {repo}:{reference}"),
                    expected,
                    actual: digest.to_string(),
                },
            ));
        }
    }
    Ok((bytes, content_type, digest))
}

fn pull_resolved(
    store: &ImageStore,
    registry: &Registry,
    reference: &Reference,
    resolved: Resolved,
    opts: &PullOptions,
) -> Result<PullOutcome, RegistryError> {
    let limits = *store.limits();
    let repo = reference.repository();
    let manifest = &resolved.manifest;
    if manifest.layers.len() > limits.max_layers {
        return Err(RegistryError::Image(crate::image::ImageError::TooLarge {
            what: "number of layers".into(),
            limit: limits.max_layers as u64,
            unit: "layers",
        }));
    }
    let config_bytes = fetch_small(
        registry,
        &repo,
        &manifest.config,
        limits.max_json_bytes,
        "image config",
    )?;
    let diff_ids = parse_config(&config_bytes, manifest.layers.len())?;
    // Everything about each layer checked before anything is downloaded.
    let mut layers = Vec::with_capacity(manifest.layers.len());
    for (desc, diff_id) in manifest.layers.iter().zip(diff_ids) {
        let digest = Sha256Digest::parse(&desc.digest)?;
        let compression = Compression::from_media_type(&desc.media_type)?;
        layers.push((desc.clone(), digest, compression, diff_id));
    }

    let txn = store.begin()?;
    let multi = MultiProgress::with_draw_target(if opts.progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let records: Mutex<Vec<Option<(LayerRecord, bool)>>> = Mutex::new(vec![None; layers.len()]);
    let first_error: Mutex<Option<RegistryError>> = Mutex::new(None);
    let cancel = AtomicBool::new(false);
    let next = AtomicUsize::new(0);
    let workers = parallel_layers().min(layers.len()).max(1);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= layers.len() || cancel.load(Ordering::Relaxed) {
                    return;
                }
                let (desc, digest, compression, diff_id) = &layers[i];
                let bar = if txn.has_layer(diff_id) {
                    ProgressBar::hidden()
                } else {
                    layer_bar(&multi, desc.size, digest)
                };
                let reader = BlobReader::new(registry, &repo, digest.clone(), desc.size, &cancel);
                let input = LayerInput {
                    reader: Box::new(bar.wrap_read(reader)),
                    length: Some(desc.size),
                    compression: *compression,
                    declared: Some((digest.clone(), desc.size)),
                    expected_diff_id: Some(diff_id.clone()),
                    media_type: desc.media_type.clone(),
                    label: digest.to_string(),
                };
                let result = crate::image::import::bring_layer(&txn, input, false);
                bar.finish_and_clear();
                match result {
                    Ok(record) => {
                        records.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(record)
                    }
                    Err(e) => {
                        cancel.store(true, Ordering::Relaxed);
                        let mut first = first_error.lock().unwrap_or_else(|e| e.into_inner());
                        // The cancelled downloads' errors are not the cause.
                        if first.is_none() {
                            *first = Some(RegistryError::Image(e));
                        }
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    let mut records_out = Vec::new();
    let (mut downloaded, mut reused) = (0, 0);
    for slot in records.into_inner().unwrap_or_else(|e| e.into_inner()) {
        let (record, fresh) = slot.expect("every layer brought in");
        if fresh {
            downloaded += 1;
        } else {
            reused += 1;
        }
        records_out.push(record);
    }
    let plan = Plan {
        name: reference.to_string(),
        kind: InputKind::Registry,
        config_bytes,
        manifest_bytes: resolved.bytes,
        layers: records_out,
        unpacked: downloaded,
        reused,
    };
    let outcome = finish(txn, plan)?;
    Ok(PullOutcome {
        name: outcome.name,
        id: outcome.id,
        manifest_digest: resolved.digest.to_string(),
        source: registry.domain().to_string(),
        unchanged: outcome.unchanged,
        layers_downloaded: downloaded,
        layers_reused: reused,
    })
}

fn layer_bar(multi: &MultiProgress, size: u64, digest: &Sha256Digest) -> ProgressBar {
    if multi.is_hidden() || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = multi.add(ProgressBar::new(size));
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_message(digest.hex()[..12].to_string());
    bar
}
