//! `hull push`: the store keeps unpacked layers only, so each layer is rebuilt as a
//! deterministic tar (`image::export`), gzipped into a temp file while both digests are
//! computed, and uploaded unless the registry has it already (`HEAD`) or can mount it
//! from another repository it was pushed to before. Blobs up to the chunk size go up in
//! one `PUT`; larger ones in `PATCH` chunks with `Content-Range`, then a closing `PUT`.
//! The config gets the rebuilt layers' diff_ids (so the pushed image id can differ from
//! the stored one); the manifest is an OCI image manifest.
//!
//! `<root>/registry-blobs.json` remembers, per stored layer, the blob it was pushed as,
//! and per blob, the repositories it was pushed to: a second push of the same layer
//! skips the rebuild when the registry has the blob, and mounts it across repositories.
//! It is only a cache: lost or stale entries cost a rebuild, never correctness (every
//! mount and every skipped upload is confirmed by the registry).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use ureq::http::{Method, StatusCode};

use super::auth::query_escape;
use super::client::{expect_ok, Payload, Redirects, Registry};
use super::manifest::{Descriptor, Manifest, OCI_MANIFEST};
use super::{Registries, RegistryError};
use crate::image::export::write_layer_tar;
use crate::image::{ImageError, ImageStore, Reference, Sha256Digest};
use crate::paths::StatePaths;

/// Default size of one upload chunk (`HULL_PUSH_CHUNK_BYTES` overrides it).
const DEFAULT_CHUNK: u64 = 32 << 20;
/// Most entries kept in the push cache.
const MAX_CACHE_ENTRIES: usize = 10_000;
const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// How to push.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Print a line per layer.
    pub verbose: bool,
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushOutcome {
    /// Digest of the pushed manifest.
    pub manifest_digest: String,
    /// Id (config digest) of the image as pushed.
    pub id: String,
    /// Layers uploaded.
    pub uploaded: usize,
    /// Layers the registry had already.
    pub existing: usize,
    /// Layers mounted from another repository.
    pub mounted: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PushedLayer {
    digest: String,
    size: u64,
    diff_id: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PushCache {
    /// Stored diff_id -> the blob it was pushed as.
    #[serde(default)]
    layers: BTreeMap<String, PushedLayer>,
    /// Blob digest -> `domain/repository` it was pushed to.
    #[serde(default)]
    blobs: BTreeMap<String, Vec<String>>,
}

impl PushCache {
    fn path(paths: &StatePaths) -> PathBuf {
        paths.root.join("registry-blobs.json")
    }

    fn load(paths: &StatePaths) -> PushCache {
        // A cache that cannot be read is an empty one.
        std::fs::read(Self::path(paths))
            .ok()
            .filter(|b| b.len() < 64 << 20)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&mut self, paths: &StatePaths) {
        while self.layers.len() > MAX_CACHE_ENTRIES {
            let first = self.layers.keys().next().cloned().expect("non-empty");
            self.layers.remove(&first);
        }
        while self.blobs.len() > MAX_CACHE_ENTRIES {
            let first = self.blobs.keys().next().cloned().expect("non-empty");
            self.blobs.remove(&first);
        }
        let bytes = serde_json::to_vec(self).expect("cache serializes");
        if let Err(e) = crate::image::write_private_atomic(&Self::path(paths), &bytes) {
            tracing::warn!(error = %e, "could not save the push cache");
        }
    }

    fn remember(&mut self, digest: &str, place: &str) {
        let places = self.blobs.entry(digest.to_string()).or_default();
        if !places.iter().any(|p| p == place) {
            places.push(place.to_string());
            if places.len() > 16 {
                places.remove(0);
            }
        }
    }
}

/// Pushes stored image `source` to `dest`.
pub fn push(
    store: &ImageStore,
    paths: &StatePaths,
    registries: &Registries,
    source: &str,
    dest: &Reference,
    opts: &PushOptions,
) -> Result<PushOutcome, RegistryError> {
    if dest.digest.is_some() {
        return Err(RegistryError::invalid(
            format!("destination {}", dest.full()),
            "push to a tag, not a digest",
        ));
    }
    let record = store.find(source)?;
    let config_bytes = store.read_blob(&Sha256Digest::parse(&record.id)?)?;
    let mut config: serde_json::Value = serde_json::from_slice(&config_bytes)
        .map_err(|e| RegistryError::invalid("stored config", e.to_string()))?;
    let registry = registries.client(&dest.domain)?;
    let repo = dest.repository();
    let here = format!("{}/{repo}", dest.domain);
    let mut cache = PushCache::load(paths);
    // Repositories of this registry the layers were pushed to before: mount sources,
    // which the token must cover too.
    let mut sources: Vec<String> = Vec::new();
    for layer in &record.layers {
        if let Some(p) = cache.layers.get(&layer.diff_id) {
            for place in cache.blobs.get(&p.digest).into_iter().flatten() {
                if let Some(r) = place.strip_prefix(&format!("{}/", dest.domain)) {
                    if r != repo && !sources.iter().any(|s| s == r) {
                        sources.push(r.to_string());
                    }
                }
            }
        }
    }
    sources.truncate(8);
    let mut scope = format!("repository:{repo}:pull,push");
    for s in &sources {
        scope.push_str(&format!(" repository:{s}:pull"));
    }
    let chunk = std::env::var("HULL_PUSH_CHUNK_BYTES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|v| *v > 0)
        .unwrap_or(DEFAULT_CHUNK);
    let work = TempDir::new(&paths.root)?;

    let mut outcome = PushOutcome {
        manifest_digest: String::new(),
        id: String::new(),
        uploaded: 0,
        existing: 0,
        mounted: 0,
    };
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, layer) in record.layers.iter().enumerate() {
        let cached = cache.layers.get(&layer.diff_id).cloned();
        if let Some(c) = &cached {
            let digest = Sha256Digest::parse(&c.digest)?;
            let mut done = blob_exists(&registry, &repo, &digest, &scope)?;
            if done {
                outcome.existing += 1;
            } else {
                for from in cache.blobs.get(&c.digest).into_iter().flatten() {
                    let Some(from) = from.strip_prefix(&format!("{}/", dest.domain)) else {
                        continue;
                    };
                    if from != repo && mount(&registry, &repo, &digest, from, &scope)? {
                        outcome.mounted += 1;
                        done = true;
                        break;
                    }
                }
            }
            if done {
                if opts.verbose {
                    eprintln!("layer {}: {}", i + 1, &c.digest);
                }
                descriptors.push(layer_descriptor(&c.digest, c.size));
                diff_ids.push(c.diff_id.clone());
                cache.remember(&c.digest, &here);
                continue;
            }
        }
        let layer_dir = store.layer_path(&Sha256Digest::parse(&layer.diff_id)?);
        let file = work.path().join(format!("layer-{i}.tar.gz"));
        let built = build_layer_blob(&layer_dir, &file)?;
        let digest = Sha256Digest::parse(&built.digest)?;
        if blob_exists(&registry, &repo, &digest, &scope)? {
            outcome.existing += 1;
        } else {
            upload(&registry, &repo, &digest, built.size, &file, chunk, &scope)?;
            outcome.uploaded += 1;
        }
        let _ = std::fs::remove_file(&file);
        if opts.verbose {
            eprintln!("layer {}: {}", i + 1, built.digest);
        }
        descriptors.push(layer_descriptor(&built.digest, built.size));
        diff_ids.push(built.diff_id.clone());
        cache.remember(&built.digest, &here);
        cache.layers.insert(layer.diff_id.clone(), built);
    }

    config["rootfs"] = serde_json::json!({"type": "layers", "diff_ids": diff_ids});
    let config_out = if diff_ids.iter().eq(record.layers.iter().map(|l| &l.diff_id)) {
        config_bytes
    } else {
        serde_json::to_vec(&config).expect("config serializes")
    };
    let config_digest = Sha256Digest::of(&config_out);
    if !blob_exists(&registry, &repo, &config_digest, &scope)? {
        let file = work.path().join("config.json");
        std::fs::write(&file, &config_out)
            .map_err(|e| ImageError::io(format!("write {}", file.display()), e))?;
        upload(
            &registry,
            &repo,
            &config_digest,
            config_out.len() as u64,
            &file,
            chunk,
            &scope,
        )?;
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        config: Descriptor {
            media_type: OCI_CONFIG.into(),
            digest: config_digest.to_string(),
            size: config_out.len() as u64,
            platform: None,
        },
        layers: descriptors,
    };
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest serializes");
    let response = registry.send(
        Method::PUT,
        &format!("/v2/{repo}/manifests/{}", dest.tag),
        &[("Content-Type", OCI_MANIFEST.to_string())],
        Payload::Bytes(&manifest_bytes),
        &scope,
        Redirects::SameOrigin,
    )?;
    expect_ok(response, &format!("manifest {}", dest.full()))?;
    cache.save(paths);
    outcome.manifest_digest = Sha256Digest::of(&manifest_bytes).to_string();
    outcome.id = config_digest.to_string();
    Ok(outcome)
}

fn layer_descriptor(digest: &str, size: u64) -> Descriptor {
    Descriptor {
        media_type: GZIP_LAYER.into(),
        digest: digest.to_string(),
        size,
        platform: None,
    }
}

/// `HEAD /v2/REPO/blobs/DIGEST`: whether the registry has the blob in this repository.
fn blob_exists(
    registry: &Registry,
    repo: &str,
    digest: &Sha256Digest,
    scope: &str,
) -> Result<bool, RegistryError> {
    let response = registry.send(
        Method::HEAD,
        &format!("/v2/{repo}/blobs/{digest}"),
        &[],
        Payload::Empty,
        scope,
        Redirects::AnyHostWithoutCredentials,
    )?;
    match response.status() {
        s if s.is_success() => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        _ => expect_ok(response, &format!("blob {digest}")).map(|_| false),
    }
}

/// Cross-repository mount; false when the registry started an upload instead (that
/// upload is cancelled).
fn mount(
    registry: &Registry,
    repo: &str,
    digest: &Sha256Digest,
    from: &str,
    scope: &str,
) -> Result<bool, RegistryError> {
    let path = format!(
        "/v2/{repo}/blobs/uploads/?mount={}&from={}",
        query_escape(&digest.to_string()),
        query_escape(from)
    );
    let response = registry.send(
        Method::POST,
        &path,
        &[],
        Payload::Empty,
        scope,
        Redirects::SameOrigin,
    )?;
    match response.status() {
        StatusCode::CREATED => Ok(true),
        StatusCode::ACCEPTED => {
            if let Some(loc) = location(&response) {
                let _ = registry.send(
                    Method::DELETE,
                    &loc,
                    &[],
                    Payload::Empty,
                    scope,
                    Redirects::SameOrigin,
                );
            }
            Ok(false)
        }
        _ => expect_ok(response, &format!("mount of {digest} from {from}")).map(|_| false),
    }
}

fn location(response: &ureq::http::Response<ureq::Body>) -> Option<String> {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Uploads `file` (`size` bytes, digest `digest`): one PUT up to `chunk` bytes, PATCH
/// chunks beyond.
fn upload(
    registry: &Registry,
    repo: &str,
    digest: &Sha256Digest,
    size: u64,
    file: &Path,
    chunk: u64,
    scope: &str,
) -> Result<(), RegistryError> {
    let what = format!("upload of {digest}");
    let response = registry.send(
        Method::POST,
        &format!("/v2/{repo}/blobs/uploads/"),
        &[],
        Payload::Empty,
        scope,
        Redirects::SameOrigin,
    )?;
    let response = expect_ok(response, &what)?;
    let mut loc = location(&response)
        .ok_or_else(|| RegistryError::invalid(what.clone(), "no Location for the upload"))?;
    let mut f =
        File::open(file).map_err(|e| ImageError::io(format!("open {}", file.display()), e))?;
    let octet = ("Content-Type", "application/octet-stream".to_string());
    let with_digest = |loc: &str| {
        let sep = if loc.contains('?') { '&' } else { '?' };
        format!("{loc}{sep}digest={}", query_escape(&digest.to_string()))
    };
    if size <= chunk {
        let response = registry.send(
            Method::PUT,
            &with_digest(&loc),
            &[octet],
            Payload::Stream(&mut f, size),
            scope,
            Redirects::SameOrigin,
        )?;
        expect_ok(response, &what)?;
        return Ok(());
    }
    let mut offset = 0;
    while offset < size {
        let n = chunk.min(size - offset);
        let mut part = (&mut f).take(n);
        let response = registry.send(
            Method::PATCH,
            &loc,
            &[
                octet.clone(),
                ("Content-Range", format!("{offset}-{}", offset + n - 1)),
            ],
            Payload::Stream(&mut part, n),
            scope,
            Redirects::SameOrigin,
        )?;
        let response = expect_ok(response, &what)?;
        loc = location(&response)
            .ok_or_else(|| RegistryError::invalid(what.clone(), "no Location after a chunk"))?;
        offset += n;
    }
    let response = registry.send(
        Method::PUT,
        &with_digest(&loc),
        &[],
        Payload::Empty,
        scope,
        Redirects::SameOrigin,
    )?;
    expect_ok(response, &what)?;
    Ok(())
}

/// Rebuilds a layer as a gzip blob in `out`: its digest, size and diff_id.
fn build_layer_blob(layer_dir: &Path, out: &Path) -> Result<PushedLayer, RegistryError> {
    let file =
        File::create(out).map_err(|e| ImageError::io(format!("create {}", out.display()), e))?;
    let compressed = Hashing::new(std::io::BufWriter::with_capacity(1 << 20, file));
    let gz = flate2::write::GzEncoder::new(compressed, flate2::Compression::default());
    let plain = Hashing::new(gz);
    let plain = write_layer_tar(layer_dir, plain)?;
    let (diff_id, _, gz) = plain.finish();
    let compressed = gz
        .finish()
        .map_err(|e| ImageError::io(format!("write {}", out.display()), e))?;
    let (digest, size, mut buffered) = compressed.finish();
    buffered
        .flush()
        .map_err(|e| ImageError::io(format!("write {}", out.display()), e))?;
    Ok(PushedLayer {
        digest: digest.to_string(),
        size,
        diff_id: diff_id.to_string(),
    })
}

/// A writer that hashes and counts what goes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    fn finish(self) -> (Sha256Digest, u64, W) {
        (
            Sha256Digest::from_hasher(self.hasher),
            self.count,
            self.inner,
        )
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A private work directory under the state root, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(root: &Path) -> Result<TempDir, RegistryError> {
        use std::os::unix::fs::DirBuilderExt;
        let base = root.join("tmp");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&base)
            .map_err(|e| ImageError::io(format!("create {}", base.display()), e))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!("push-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| ImageError::io(format!("create {}", dir.display()), e))?;
        Ok(TempDir(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
