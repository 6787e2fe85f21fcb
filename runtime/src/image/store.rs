//! The on-disk store: index of named images, blobs by digest, layer cache by diff_id.
//!
//! Concurrency: `import` and `rm` hold an exclusive flock(2) on `lock` for their whole
//! run, so two hull invocations never interleave changes; `get`/`list` take no lock,
//! because `index.json` is only ever replaced by an atomic rename and blobs/layers are
//! moved into place before the index names them.
//!
//! Containers: a container's overlay uses the layer directories of its image, so layers
//! named by any container record count as in use when garbage is collected, and
//! `remove` refuses (without force) an image that containers were made from. Checking the
//! records and deleting layers happen under an exclusive flock on `users.lock`;
//! `hull create`/`run` hold it shared from resolving the image until the container record
//! is saved (`lock_users`), so no container can start using layers being removed.
//!
//! Failure: an import works in `tmp/<work>/` and moves its layers and blobs into place
//! only at commit; a failed import removes its work dir, and anything a crash left in
//! `tmp/` or unreferenced in `blobs/`/`layers/` is collected by the next import or rm.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::reference::Reference;
use super::{ImageError, Limits, Sha256Digest, StoredImage};
use crate::container::state::{ContainerState, ContainerStore};
use crate::paths::StatePaths;

/// Format version of `index.json`.
const INDEX_VERSION: u32 = 1;

/// One layer of a stored image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Digest of the layer blob as imported (compressed, if it was).
    pub digest: String,
    /// Size of the layer blob as imported.
    pub size: u64,
    /// Media type of the layer blob.
    pub media_type: String,
    /// Digest of the uncompressed tar; names the unpacked layer in the cache.
    pub diff_id: String,
}

/// One named image in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Normalized `namespace/name:tag`.
    pub name: String,
    /// Image id: the config digest.
    pub id: String,
    /// Digest of the manifest blob.
    pub manifest_digest: String,
    /// Size of the manifest blob.
    pub manifest_size: u64,
    /// Size of the config blob.
    pub config_size: u64,
    /// Layers, lowest first.
    pub layers: Vec<LayerRecord>,
    /// Unix time of the import.
    pub imported_at: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    version: u32,
    images: Vec<ImageRecord>,
}

/// The image store of one hull state root.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
    limits: Limits,
    /// The container records whose layers must be kept; `None` for a store opened
    /// without a state root (`open_dir`).
    containers: Option<ContainerStore>,
}

/// A lock held while containers are being made from images (shared) or while layers are
/// being checked and removed (exclusive). Released on drop.
pub struct UsersLock {
    _lock: Flock<File>,
}

/// What `ImageStore::remove` did.
#[derive(Debug, Clone)]
pub struct Removal {
    /// The index record that was removed.
    pub record: ImageRecord,
    /// `shortid (name)` of containers still using the image (only with force); its
    /// layers stay until they are removed.
    pub kept_for: Vec<String>,
}

impl ImageStore {
    /// Opens (creating if needed) the store under `paths.images()`.
    pub fn open(paths: &StatePaths) -> Result<ImageStore, ImageError> {
        let mut store = Self::open_dir(&paths.images(), Limits::from_env())?;
        store.containers = Some(ContainerStore::new(paths));
        Ok(store)
    }

    /// Opens the store in `dir` with explicit limits.
    pub fn open_dir(dir: &Path, limits: Limits) -> Result<ImageStore, ImageError> {
        let store = ImageStore {
            dir: dir.to_path_buf(),
            limits,
            containers: None,
        };
        // 0700: layers hold setuid binaries and device nodes of arbitrary images.
        for sub in [
            store.dir.clone(),
            store.dir.join("blobs/sha256"),
            store.dir.join("layers/sha256"),
            store.dir.join("tmp"),
        ] {
            crate::private_fs::create_dir_all(&sub)
                .map_err(|e| ImageError::io(format!("create {}", sub.display()), e))?;
        }
        Ok(store)
    }

    /// The limits applied to imports.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of a blob.
    pub fn blob_path(&self, digest: &Sha256Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.hex())
    }

    /// Path of an unpacked layer, by diff_id.
    pub fn layer_path(&self, diff_id: &Sha256Digest) -> PathBuf {
        self.dir.join("layers/sha256").join(diff_id.hex())
    }

    /// All images, sorted by name.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let mut images = self.load_index()?.images;
        images.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(images)
    }

    /// Resolves `reference` to an image ready to run.
    ///
    /// Accepts a name (`busybox`, `hull/busybox:latest`), an image id (`sha256:<hex>`) or
    /// an unambiguous id prefix. A name without namespace that matches no `library/`
    /// image resolves to the one image of that `name:tag` in any namespace.
    pub fn get(&self, reference: &str) -> Result<StoredImage, ImageError> {
        let record = self.find(reference)?;
        let config = self.read_config(&record)?;
        let mut layers = Vec::with_capacity(record.layers.len());
        for layer in &record.layers {
            let path = self.layer_path(&Sha256Digest::parse(&layer.diff_id)?);
            if !path.is_dir() {
                return Err(ImageError::Store {
                    path,
                    reason: format!("layer {} of {} is missing", layer.diff_id, record.name),
                });
            }
            layers.push(path);
        }
        Ok(StoredImage {
            name: record.name,
            id: record.id,
            config,
            layers,
        })
    }

    /// Finds the index record for a reference (see `get`).
    pub fn find(&self, reference: &str) -> Result<ImageRecord, ImageError> {
        let images = self.load_index()?.images;
        let parsed = Reference::parse(reference);
        if let Ok(r) = &parsed {
            let full = r.to_string();
            if let Some(img) = images.iter().find(|i| i.name == full) {
                return Ok(img.clone());
            }
        }
        // An id or id prefix.
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        let is_hex = hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if is_hex && (hex.len() >= 4 || reference.starts_with("sha256:")) {
            let mut matches: Vec<&ImageRecord> = images
                .iter()
                .filter(|i| i.id.trim_start_matches("sha256:").starts_with(hex))
                .collect();
            let mut ids: Vec<&str> = matches.iter().map(|i| i.id.as_str()).collect();
            ids.dedup();
            if ids.len() == 1 {
                return Ok(matches.remove(0).clone());
            }
            if ids.len() > 1 {
                return Err(ImageError::Ambiguous {
                    reference: reference.to_string(),
                    candidates: ids.iter().map(|s| s.to_string()).collect(),
                });
            }
        }
        // A bare name: unique match of name:tag across namespaces.
        if let Ok(r) = parsed {
            if !r.explicit_namespace {
                let suffix = format!("/{}", r.short());
                let matches: Vec<&ImageRecord> = images
                    .iter()
                    .filter(|i| i.name.ends_with(&suffix))
                    .collect();
                match matches.len() {
                    0 => {}
                    1 => return Ok(matches[0].clone()),
                    _ => {
                        return Err(ImageError::Ambiguous {
                            reference: reference.to_string(),
                            candidates: matches.iter().map(|i| i.name.clone()).collect(),
                        })
                    }
                }
            }
        }
        Err(ImageError::NotFound(reference.to_string()))
    }

    /// The parsed config of a stored image (digest re-verified).
    pub fn read_config(
        &self,
        record: &ImageRecord,
    ) -> Result<oci_spec::image::ImageConfiguration, ImageError> {
        let bytes = self.read_blob(&Sha256Digest::parse(&record.id)?)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::invalid(format!("config of {}", record.name), e.to_string()))
    }

    /// Reads a stored blob (manifest or config), checking its digest.
    pub fn read_blob(&self, digest: &Sha256Digest) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(digest);
        let bytes = read_bounded(&path, self.limits.max_json_bytes)?;
        let actual = Sha256Digest::of(&bytes);
        if &actual != digest {
            return Err(ImageError::DigestMismatch {
                what: format!("stored blob {}", path.display()),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    /// Removes the image named by `reference` (the name only; other names of the same
    /// id stay) and every blob and layer no remaining image and no container uses.
    ///
    /// Removing the last name of an image that containers were made from is refused
    /// unless `force`; with `force` the name goes but layers those containers use stay
    /// until a later import or rm finds them unused.
    pub fn remove(&self, reference: &str, force: bool) -> Result<Removal, ImageError> {
        let _lock = self.lock()?;
        let _users = self.lock_users(FlockArg::LockExclusive)?;
        let record = self.find(reference)?;
        let mut index = self.load_index()?;
        index.images.retain(|i| i.name != record.name);
        let other_name = index.images.iter().any(|i| i.id == record.id);
        // An unreadable record may use this image: refused, or with force only the name
        // goes (its layers stay, as for any container still using them).
        let containers = match self.container_records() {
            Err(e) if !force && !other_name => return Err(e),
            other => other,
        };
        let users = match &containers {
            _ if other_name => Vec::new(),
            Ok(records) => users_of(records, &record.id),
            Err(ImageError::UnreadableRecords { containers }) => containers.clone(),
            Err(_) => Vec::new(),
        };
        if !users.is_empty() && !force {
            return Err(ImageError::InUse {
                image: record.name,
                containers: users,
            });
        }
        self.save_index(&index)?;
        match containers {
            Ok(records) => self.collect_garbage_locked(&index, &records)?,
            Err(e) => tracing::warn!("not collecting unused layers: {e}"),
        }
        Ok(Removal {
            record,
            kept_for: users,
        })
    }

    /// Gives the image `source` the name `target` too (`hull tag`); an image already
    /// named `target` loses the name. Returns the stored form of `target`.
    pub fn tag(&self, source: &str, target: &str) -> Result<String, ImageError> {
        let name = Reference::parse(target)?.to_string();
        let _lock = self.lock()?;
        let mut record = self.find(source)?;
        let mut index = self.load_index()?;
        index.images.retain(|i| i.name != name);
        record.name = name.clone();
        index.images.push(record);
        self.save_index(&index)?;
        // The image that lost the name may have nothing left naming it.
        self.collect_garbage(&index)?;
        Ok(name)
    }

    /// Takes the users lock shared: hold it from resolving an image until the record of
    /// the container made from it is saved, so `remove` sees that container.
    pub fn lock_users_shared(&self) -> Result<UsersLock, ImageError> {
        Ok(UsersLock {
            _lock: self.lock_users(FlockArg::LockShared)?,
        })
    }

    fn lock_users(&self, how: FlockArg) -> Result<Flock<File>, ImageError> {
        let path = self.dir.join("users.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| ImageError::io(format!("open {}", path.display()), e))?;
        Flock::lock(file, how)
            .map_err(|(_, e)| ImageError::io(format!("lock {}", path.display()), e.into()))
    }

    /// Every container record, or [`ImageError::UnreadableRecords`] if any cannot be read:
    /// an unreadable record may name any layer, so nothing may be collected then.
    fn container_records(&self) -> Result<Vec<ContainerState>, ImageError> {
        let Some(containers) = &self.containers else {
            return Ok(Vec::new());
        };
        containers
            .all_records()
            .map_err(|bad| ImageError::UnreadableRecords {
                containers: bad
                    .into_iter()
                    .map(|(id, reason)| format!("{id} ({reason})"))
                    .collect(),
            })
    }

    /// Starts an import: takes the store lock, clears leftovers of crashed imports and
    /// makes a private work dir.
    pub(crate) fn begin(&self) -> Result<Transaction<'_>, ImageError> {
        let lock = self.lock()?;
        let tmp = self.dir.join("tmp");
        for entry in fs::read_dir(&tmp).map_err(|e| ImageError::io("read tmp dir", e))? {
            let entry = entry.map_err(|e| ImageError::io("read tmp dir", e))?;
            remove_any(&entry.path())?;
        }
        let index = self.load_index()?;
        match self.collect_garbage(&index) {
            // An import goes on without collecting; `image rm` reports it.
            Err(e @ ImageError::UnreadableRecords { .. }) => {
                tracing::warn!("not collecting unused layers: {e}")
            }
            other => other?,
        }
        let work = tmp.join(format!("import-{}", std::process::id()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&work)
            .map_err(|e| ImageError::io(format!("create {}", work.display()), e))?;
        Ok(Transaction {
            store: self,
            _lock: lock,
            work,
            counter: AtomicU64::new(0),
            layers: Mutex::new(Vec::new()),
            blobs: Mutex::new(Vec::new()),
            committed: false,
        })
    }

    fn lock(&self) -> Result<Flock<File>, ImageError> {
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| ImageError::io(format!("open {}", path.display()), e))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| ImageError::io(format!("lock {}", path.display()), e.into()))
    }

    fn load_index(&self) -> Result<Index, ImageError> {
        let path = self.dir.join("index.json");
        if !path.exists() {
            return Ok(Index {
                version: INDEX_VERSION,
                images: Vec::new(),
            });
        }
        let bytes = read_bounded(&path, 256 << 20)?;
        let index: Index = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::invalid(format!("{}", path.display()), e.to_string()))?;
        if index.version != INDEX_VERSION {
            return Err(ImageError::Store {
                path,
                reason: format!("unsupported index version {}", index.version),
            });
        }
        Ok(index)
    }

    fn save_index(&self, index: &Index) -> Result<(), ImageError> {
        let bytes = serde_json::to_vec_pretty(index).expect("index serializes");
        write_atomic(&self.dir.join("index.json"), &bytes)
    }

    /// Removes blobs and layers that no image in `index` and no container references.
    fn collect_garbage(&self, index: &Index) -> Result<(), ImageError> {
        let _users = self.lock_users(FlockArg::LockExclusive)?;
        let records = self.container_records()?;
        self.collect_garbage_locked(index, &records)
    }

    /// `collect_garbage` for a caller that holds the users lock exclusively and has read
    /// every container record.
    fn collect_garbage_locked(
        &self,
        index: &Index,
        containers: &[ContainerState],
    ) -> Result<(), ImageError> {
        let mut blobs = HashSet::new();
        // By name only: the same root may be spelled differently by different
        // invocations, and keeping a layer too many is harmless.
        let mut layers: HashSet<String> = containers
            .iter()
            .flat_map(|c| c.spec.layers.iter())
            .filter_map(|layer| layer.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        for image in &index.images {
            blobs.insert(image.id.trim_start_matches("sha256:").to_string());
            blobs.insert(
                image
                    .manifest_digest
                    .trim_start_matches("sha256:")
                    .to_string(),
            );
            for layer in &image.layers {
                layers.insert(layer.diff_id.trim_start_matches("sha256:").to_string());
            }
        }
        for (sub, keep) in [("blobs/sha256", &blobs), ("layers/sha256", &layers)] {
            let dir = self.dir.join(sub);
            for entry in fs::read_dir(&dir)
                .map_err(|e| ImageError::io(format!("read {}", dir.display()), e))?
            {
                let entry = entry.map_err(|e| ImageError::io("read store dir", e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if !keep.contains(&name) {
                    tracing::debug!(path = %entry.path().display(), "removing unreferenced");
                    remove_any(&entry.path())?;
                }
            }
        }
        Ok(())
    }
}

/// An import in progress: holds the store lock; its layers and blobs live in a private
/// work dir until `commit`. Dropped without commit, it removes everything it wrote.
/// Layers may be brought in by several threads at once (a pull downloads in parallel),
/// so staging takes `&self`.
pub(crate) struct Transaction<'a> {
    store: &'a ImageStore,
    _lock: Flock<File>,
    work: PathBuf,
    counter: AtomicU64,
    layers: Mutex<Vec<(PathBuf, Sha256Digest)>>,
    blobs: Mutex<Vec<(PathBuf, Sha256Digest)>>,
    committed: bool,
}

impl Transaction<'_> {
    /// The store this import writes to.
    pub fn store(&self) -> &ImageStore {
        self.store
    }

    /// Whether the layer cache (or this import) already has the layer.
    pub fn has_layer(&self, diff_id: &Sha256Digest) -> bool {
        self.staged_layers().iter().any(|(_, d)| d == diff_id)
            || self.store.layer_path(diff_id).is_dir()
    }

    fn staged_layers(&self) -> std::sync::MutexGuard<'_, Vec<(PathBuf, Sha256Digest)>> {
        // A thread that panicked holding it only pushed whole entries.
        self.layers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_name(&self, prefix: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        self.work.join(format!("{prefix}-{n}"))
    }

    /// A fresh, empty directory in the work dir to unpack a layer into.
    pub fn new_layer_dir(&self) -> Result<PathBuf, ImageError> {
        let dir = self.next_name("layer");
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&dir)
            .map_err(|e| ImageError::io(format!("create {}", dir.display()), e))?;
        Ok(dir)
    }

    /// Records an unpacked layer dir (from `new_layer_dir`) under its verified diff_id;
    /// when the same layer was staged already (by another thread), removes this copy.
    pub fn add_layer(&self, dir: PathBuf, diff_id: Sha256Digest) {
        let mut layers = self.staged_layers();
        if layers.iter().any(|(_, d)| *d == diff_id) || self.store.layer_path(&diff_id).is_dir() {
            drop(layers);
            let _ = fs::remove_dir_all(&dir);
        } else {
            layers.push((dir, diff_id));
        }
    }

    /// Stages a blob (manifest or config); returns its digest.
    pub fn add_blob(&self, bytes: &[u8]) -> Result<Sha256Digest, ImageError> {
        let digest = Sha256Digest::of(bytes);
        let path = self.next_name("blob");
        fs::write(&path, bytes)
            .map_err(|e| ImageError::io(format!("write {}", path.display()), e))?;
        self.blobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((path, digest.clone()));
        Ok(digest)
    }

    /// Whether an image of this name already exists with this id and manifest.
    pub fn existing(&self, name: &str) -> Result<Option<ImageRecord>, ImageError> {
        Ok(self
            .store
            .load_index()?
            .images
            .into_iter()
            .find(|i| i.name == name))
    }

    /// Moves staged layers and blobs into place and names the image in the index (an
    /// image of the same name is replaced).
    pub fn commit(mut self, record: ImageRecord) -> Result<(), ImageError> {
        // Layer files are not fsynced (as with docker's overlay2 and containers/storage):
        // that costs far more than the unpack itself. Operators who want an import to be
        // durable before it is named set HULL_IMAGE_SYNC=1: one syncfs for the whole
        // import, not one fsync per file. Blobs and the index are always fsynced.
        if std::env::var_os("HULL_IMAGE_SYNC").is_some_and(|v| v == "1") {
            sync_filesystem(&self.work)?;
        }
        let layers = std::mem::take(&mut *self.staged_layers());
        let blobs = std::mem::take(&mut *self.blobs.lock().unwrap_or_else(|e| e.into_inner()));
        for (dir, diff_id) in &layers {
            let target = self.store.layer_path(diff_id);
            if !target.exists() {
                fs::rename(dir, &target).map_err(|e| {
                    ImageError::io(format!("move layer into {}", target.display()), e)
                })?;
            }
        }
        for (path, digest) in &blobs {
            File::open(path)
                .and_then(|f| f.sync_all())
                .map_err(|e| ImageError::io(format!("fsync {}", path.display()), e))?;
            let target = self.store.blob_path(digest);
            if !target.exists() {
                fs::rename(path, &target).map_err(|e| {
                    ImageError::io(format!("move blob into {}", target.display()), e)
                })?;
            }
        }
        sync_dir(&self.store.dir.join("layers/sha256"))?;
        sync_dir(&self.store.dir.join("blobs/sha256"))?;
        let mut index = self.store.load_index()?;
        index.images.retain(|i| i.name != record.name);
        index.images.push(record);
        self.store.save_index(&index)?;
        self.committed = true;
        let _ = remove_any(&self.work);
        self.store.collect_garbage(&index)
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.committed {
            if let Err(e) = remove_any(&self.work) {
                tracing::warn!(error = %e, "could not clean up a failed import");
            }
        }
    }
}

/// Reads a whole file, refusing files larger than `limit`.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ImageError> {
    let file =
        File::open(path).map_err(|e| ImageError::io(format!("open {}", path.display()), e))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ImageError::io(format!("read {}", path.display()), e))?;
    if bytes.len() as u64 > limit {
        return Err(ImageError::TooLarge {
            what: path.display().to_string(),
            limit,
            unit: "bytes",
        });
    }
    Ok(bytes)
}

/// Writes a file atomically: temp file, fsync, rename, fsync of the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let ctx = |what: &str| format!("{what} {}", tmp.display());
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| ImageError::io(ctx("create"), e))?;
    file.write_all(bytes)
        .map_err(|e| ImageError::io(ctx("write"), e))?;
    file.sync_all()
        .map_err(|e| ImageError::io(ctx("fsync"), e))?;
    fs::rename(&tmp, path)
        .map_err(|e| ImageError::io(format!("rename to {}", path.display()), e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ImageError::io(format!("fsync {}", dir.display()), e))
}

fn sync_filesystem(path: &Path) -> Result<(), ImageError> {
    let dir =
        File::open(path).map_err(|e| ImageError::io(format!("open {}", path.display()), e))?;
    nix::unistd::syncfs(dir.as_fd()).map_err(|e| ImageError::io("syncfs", e.into()))
}

/// Removes a file, symlink or directory tree (std's remove_dir_all does not follow
/// symlinks).
fn remove_any(path: &Path) -> Result<(), ImageError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ImageError::io(format!("stat {}", path.display()), e)),
    };
    let result = if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    result.map_err(|e| ImageError::io(format!("remove {}", path.display()), e))
}

/// `shortid (name)` of every container in `records` made from image `id`.
fn users_of(records: &[ContainerState], id: &str) -> Vec<String> {
    let mut users: Vec<String> = records
        .iter()
        .filter(|c| c.spec.image_id == id)
        .map(|c| format!("{} ({})", &c.id[..12.min(c.id.len())], c.name))
        .collect();
    users.sort();
    users
}
