//! Container records on disk and the locking that makes concurrent `hull` invocations safe.
//!
//! ```text
//! <run_root>/containers/
//!   <id>/state.json        the record (replaced atomically: write temp + rename)
//!   <id>/config.json       the container's OCI runtime spec (written once, at creation)
//!   <id>/container.log     stdout/stderr records (see `logs`)
//!   <id>/...               backend files (process.json, upper/, work/, rootfs/)
//!   .names/<name> -> <id>  name reservations (symlink creation is atomic)
//!   .new-<id>/             a container being created (locked by its creator)
//!   .del-<id>/             a container being removed (locked by its remover)
//! <root>/containers/<id>/  the writable layer, on disk (see `ContainerContext::storage_dir`)
//! ```
//!
//! Mutations of one container happen under flock(2) on its directory. A waiter that gets
//! the lock after the container was removed sees no state.json and reports it gone.
//!
//! A `<id>` directory always holds a record: a container is made in `.new-<id>` (its
//! creator holding the lock) and renamed into place with its record written, and it is
//! renamed to `.del-<id>` before its files go. A `hull` killed half way leaves only
//! `.new-`/`.del-` directories that nobody holds locked, which [`ContainerStore::collect_leftovers`]
//! (run by `ps` and `rm`) removes; one still locked belongs to a live `hull` and is left.

use std::fs;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::isolation::{ContainerContext, ContainerSpec, IsolationKind};
use crate::network::NetworkStatus;
use crate::paths::StatePaths;

/// Largest state.json or config.json written or read. What goes into a record is bounded
/// at create time (`spec::build`) far below this; `save` refuses anything larger, so no
/// record is ever written that could not be read back.
pub const MAX_STATE: u64 = 1 << 20;
/// The container's OCI runtime spec, beside state.json.
pub const CONFIG_FILE: &str = "config.json";

/// Lifecycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created, never started (or being started).
    Created,
    /// Its init process runs.
    Running,
    /// Its init process ended.
    Exited,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        })
    }
}

/// A process identified robustly: pid plus start time (against pid reuse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRef {
    /// Host pid.
    pub pid: i32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
}

impl ProcRef {
    /// The calling process.
    pub fn current() -> ProcRef {
        let pid = std::process::id() as i32;
        ProcRef {
            pid,
            start_time: crate::process::syscalls::start_time(pid).unwrap_or(0),
        }
    }

    /// Whether this process still runs.
    pub fn alive(&self) -> bool {
        crate::process::syscalls::is_same_process_alive(self.pid, self.start_time)
    }
}

/// The record of one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    /// 64 hex digits.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Isolation model.
    pub isolation: IsolationKind,
    /// What to run.
    pub spec: ContainerSpec,
    /// Lifecycle status.
    pub status: Status,
    /// Unix time of creation.
    pub created: u64,
    /// Unix time of the last start.
    #[serde(default)]
    pub started: Option<u64>,
    /// Unix time the init process ended.
    #[serde(default)]
    pub finished: Option<u64>,
    /// Exit code (status, or 128+signal) once exited; `None` if unknown.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Host pid of the container's main process while running.
    #[serde(default)]
    pub pid: Option<u32>,
    /// The process supervising the container (foreground `hull run` or the shim).
    #[serde(default)]
    pub supervisor: Option<ProcRef>,
    /// Remove the container when it exits (`--rm`).
    #[serde(default)]
    pub auto_remove: bool,
    /// Why the container ended abnormally, if it did.
    #[serde(default)]
    pub error: Option<String>,
    /// Its network while it runs (address, published ports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStatus>,
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Errors of the container store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No container matches.
    #[error("no such container: {0}")]
    NotFound(String),
    /// More than one container matches an id prefix.
    #[error("container id prefix {0:?} is ambiguous")]
    Ambiguous(String),
    /// The name is taken.
    #[error("the container name {0:?} is already in use")]
    NameInUse(String),
    /// Invalid name.
    #[error(
        "invalid container name {0:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 128 characters"
    )]
    BadName(String),
    /// A record that cannot be used: larger than [`MAX_STATE`], not JSON, not a record.
    #[error(
        "the record of container {id} is unreadable ({reason}): remove it with `hull rm -f {id}`"
    )]
    Unreadable {
        /// The container.
        id: String,
        /// Why.
        reason: String,
    },
    /// A record that would be too large to read back.
    #[error("the container's record would take {0} bytes: at most {MAX_STATE} are allowed")]
    TooLarge(usize),
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let what = what.into();
    move |source| StoreError::Io { what, source }
}

/// The container records of one hull state root.
#[derive(Debug, Clone)]
pub struct ContainerStore {
    paths: StatePaths,
    dir: PathBuf,
}

/// An exclusive lock on one container (released on drop).
pub struct ContainerLock {
    _dir: fs::File,
}

/// A container being created: its directory (`.new-<id>`, locked) and reserved name,
/// until [`ContainerStore::commit`] puts it in place with its record, or
/// [`ContainerStore::abandon`] removes it.
pub struct NewContainer {
    /// 64 hex digits.
    pub id: String,
    /// The reserved name.
    pub name: String,
    _lock: fs::File,
}

const PENDING: &str = ".new-";
const DELETING: &str = ".del-";

/// flock(2) on an open directory; `wait: false` fails with `WouldBlock` when held.
fn flock(dir: &fs::File, wait: bool) -> io::Result<()> {
    let how = if wait {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(dir.as_raw_fd(), how) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl ContainerStore {
    /// The store of `paths` (directories are created on first use).
    pub fn new(paths: &StatePaths) -> ContainerStore {
        ContainerStore {
            paths: paths.clone(),
            dir: paths.containers(),
        }
    }

    /// Directory of container `id`.
    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Backend context of container `id`.
    pub fn context(&self, id: &str) -> ContainerContext {
        ContainerContext {
            id: id.to_string(),
            state_dir: self.dir_of(id),
            paths: self.paths.clone(),
        }
    }

    fn names_dir(&self) -> PathBuf {
        self.dir.join(".names")
    }

    fn pending_dir(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{PENDING}{id}"))
    }

    /// Whether container `id` exists, being created or created. Checked in that order: a
    /// creation renames `.new-<id>` to `<id>`, so one of the two is always seen.
    fn exists(&self, id: &str) -> bool {
        self.pending_dir(id).exists() || self.dir_of(id).exists()
    }

    /// Starts a container: a locked directory of its own and `name` (or a generated one)
    /// reserved. Nothing of it is visible as a container until [`Self::commit`].
    pub fn allocate(&self, name: Option<&str>) -> Result<NewContainer, StoreError> {
        crate::private_fs::create_dir_all(&self.names_dir())
            .map_err(io_err("create container state directory"))?;
        if let Some(n) = name {
            validate_name(n)?;
        }
        let id = random_id();
        let pending = self.pending_dir(&id);
        crate::private_fs::create_dir(&pending).map_err(io_err("create container directory"))?;
        let lock = fs::File::open(&pending)
            .and_then(|dir| flock(&dir, true).map(|()| dir))
            .map_err(io_err("lock container directory"));
        let lock = match lock {
            Ok(l) => l,
            Err(e) => {
                let _ = fs::remove_dir(&pending);
                return Err(e);
            }
        };
        match self.reserve_some(name, &id) {
            Ok(name) => Ok(NewContainer {
                id,
                name,
                _lock: lock,
            }),
            Err(e) => {
                let _ = fs::remove_dir(&pending);
                Err(e)
            }
        }
    }

    /// Reserves `name`, or the first free generated one.
    fn reserve_some(&self, name: Option<&str>, id: &str) -> Result<String, StoreError> {
        if let Some(n) = name {
            self.reserve(n, id)?;
            return Ok(n.to_string());
        }
        for attempt in 0..8 {
            let candidate = generated_name(id, attempt);
            match self.reserve(&candidate, id) {
                Ok(()) => return Ok(candidate),
                Err(StoreError::NameInUse(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        let n = format!("hull_{}", &id[..12]);
        self.reserve(&n, id)?;
        Ok(n)
    }

    /// Puts a new container in place with its first record. On error it is abandoned.
    pub fn commit(&self, new: NewContainer, state: &ContainerState) -> Result<(), StoreError> {
        let pending = self.pending_dir(&new.id);
        // config.json first: a record without its spec would be unreadable.
        let result = self
            .write_config(&pending, state)
            .and_then(|()| self.write_record(&pending, state))
            .and_then(|()| {
                fs::rename(&pending, self.dir_of(&new.id)).map_err(io_err("create container"))
            });
        if result.is_err() {
            self.abandon(new);
        }
        result
    }

    /// Removes a container that was never committed (its directory and name).
    pub fn abandon(&self, new: NewContainer) {
        self.release_name(&new.name, &new.id);
        let _ = fs::remove_dir_all(self.pending_dir(&new.id));
    }

    fn release_name(&self, name: &str, id: &str) {
        let link = self.names_dir().join(name);
        if fs::read_link(&link).is_ok_and(|t| t == Path::new(id)) {
            let _ = fs::remove_file(&link);
        }
    }

    /// Removes what `hull` invocations killed half way left behind: directories of
    /// containers being created or removed that nobody holds locked any more, and name
    /// reservations of containers that do not exist. Never touches one in progress.
    pub fn collect_leftovers(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name
                .strip_prefix(PENDING)
                .or_else(|| name.strip_prefix(DELETING))
            else {
                continue;
            };
            let Ok(dir) = fs::File::open(entry.path()) else {
                continue;
            };
            if flock(&dir, false).is_err() {
                continue; // a live hull is creating or removing it
            }
            tracing::info!("removing {name}, left by an interrupted hull");
            if let Some(reserved) = self.name_of(id) {
                self.release_name(&reserved, id);
            }
            // A removal killed while the writable layer went left a part of it.
            let _ = self.remove_storage(id);
            let _ = fs::remove_dir_all(entry.path());
        }
        let Ok(names) = fs::read_dir(self.names_dir()) else {
            return;
        };
        for entry in names.filter_map(|e| e.ok()) {
            if let Ok(target) = fs::read_link(entry.path()) {
                if !self.exists(&target.to_string_lossy()) {
                    // Re-read: the name may have been taken over meanwhile.
                    if fs::read_link(entry.path()).is_ok_and(|t| t == target) {
                        let _ = fs::remove_file(entry.path());
                    }
                }
            }
        }
    }

    fn reserve(&self, name: &str, id: &str) -> Result<(), StoreError> {
        match std::os::unix::fs::symlink(id, self.names_dir().join(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // A reservation whose container is gone is stale: take it over.
                let owner = fs::read_link(self.names_dir().join(name)).ok();
                if let Some(owner) = owner {
                    if !self.exists(&owner.to_string_lossy()) {
                        let _ = fs::remove_file(self.names_dir().join(name));
                        return std::os::unix::fs::symlink(id, self.names_dir().join(name))
                            .map_err(|_| StoreError::NameInUse(name.to_string()));
                    }
                }
                Err(StoreError::NameInUse(name.to_string()))
            }
            Err(e) => Err(io_err(format!("reserve name {name}"))(e)),
        }
    }

    /// Writes a record atomically (temp file + rename in the same directory).
    pub fn save(&self, state: &ContainerState) -> Result<(), StoreError> {
        let dir = self.dir_of(&state.id);
        if !dir.is_dir() {
            return Err(StoreError::NotFound(state.id.clone()));
        }
        self.write_record(&dir, state)
    }

    fn write_record(&self, dir: &Path, state: &ContainerState) -> Result<(), StoreError> {
        let tmp = dir.join(".state.json.tmp");
        let data = serde_json::to_vec_pretty(state)
            .map_err(|e| io_err("encode state")(io::Error::other(e)))?;
        if data.len() as u64 > MAX_STATE {
            return Err(StoreError::TooLarge(data.len()));
        }
        crate::private_fs::write_atomic(&tmp, &dir.join("state.json"), &data)
            .map_err(io_err("write state"))
    }

    /// Writes the container's OCI spec as `config.json` into `dir` (once, at creation).
    fn write_config(&self, dir: &Path, state: &ContainerState) -> Result<(), StoreError> {
        let data = serde_json::to_vec_pretty(&state.spec.oci)
            .map_err(|e| io_err("encode config.json")(io::Error::other(e)))?;
        if data.len() as u64 > MAX_STATE {
            return Err(StoreError::TooLarge(data.len()));
        }
        crate::private_fs::write_atomic(
            &dir.join(".config.json.tmp"),
            &dir.join(CONFIG_FILE),
            &data,
        )
        .map_err(io_err("write config.json"))
    }

    /// Reads the record of `id`, with its OCI spec from config.json.
    pub fn load(&self, id: &str) -> Result<ContainerState, StoreError> {
        let mut state = self.load_record(id)?;
        let path = self.dir_of(id).join(CONFIG_FILE);
        let unreadable = |reason: String| StoreError::Unreadable {
            id: id.to_string(),
            reason: format!("{CONFIG_FILE}: {reason}"),
        };
        let mut data = Vec::new();
        fs::File::open(&path)
            .and_then(|f| f.take(MAX_STATE + 1).read_to_end(&mut data))
            .map_err(|e| unreadable(e.to_string()))?;
        if data.len() as u64 > MAX_STATE {
            return Err(unreadable(format!("larger than {MAX_STATE} bytes")));
        }
        state.spec.oci = serde_json::from_slice(&data)
            .map_err(|e| unreadable(crate::sanitize::one_line(&e.to_string(), 200).into_owned()))?;
        Ok(state)
    }

    fn load_record(&self, id: &str) -> Result<ContainerState, StoreError> {
        let path = self.dir_of(id).join("state.json");
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(id.to_string()))
            }
            Err(e) => return Err(io_err(format!("read {}", path.display()))(e)),
        };
        let mut data = Vec::new();
        file.take(MAX_STATE + 1)
            .read_to_end(&mut data)
            .map_err(io_err(format!("read {}", path.display())))?;
        let unreadable = |reason: String| StoreError::Unreadable {
            id: id.to_string(),
            reason,
        };
        if data.len() as u64 > MAX_STATE {
            return Err(unreadable(format!("larger than {MAX_STATE} bytes")));
        }
        let state: ContainerState = serde_json::from_slice(&data)
            .map_err(|e| unreadable(crate::sanitize::one_line(&e.to_string(), 200).into_owned()))?;
        if state.id != id {
            return Err(unreadable(format!(
                "it names container {:?}",
                crate::sanitize::one_line(&state.id, 80)
            )));
        }
        Ok(state)
    }

    /// Locks container `id` exclusively (blocking until other holders are done).
    pub fn lock(&self, id: &str) -> Result<ContainerLock, StoreError> {
        let dir = fs::File::open(self.dir_of(id)).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::NotFound(id.to_string())
            } else {
                io_err("open container directory")(e)
            }
        })?;
        flock(&dir, true).map_err(io_err("lock container"))?;
        Ok(ContainerLock { _dir: dir })
    }

    /// All container ids (directories with a record).
    pub fn ids(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect()
    }

    /// The name reserved for container `id`, found from the reservations (for a container
    /// whose record cannot be read).
    pub fn name_of(&self, id: &str) -> Option<String> {
        fs::read_dir(self.names_dir())
            .ok()?
            .filter_map(|e| e.ok())
            .find(|e| fs::read_link(e.path()).is_ok_and(|t| t == Path::new(id)))
            .map(|e| e.file_name().to_string_lossy().into_owned())
    }

    /// Every record, for a decision that must see all of them (which layers are in use):
    /// fails, naming them, if any record cannot be read, instead of skipping it.
    /// Containers removed meanwhile are skipped.
    pub fn all_records(&self) -> Result<Vec<ContainerState>, Vec<(String, String)>> {
        let mut records = Vec::new();
        let mut unreadable = Vec::new();
        for id in self.ids() {
            match self.load(&id) {
                Ok(s) => records.push(s),
                Err(StoreError::NotFound(_)) => {}
                Err(StoreError::Unreadable { reason, .. }) => unreadable.push((id, reason)),
                Err(e) => unreadable.push((id, e.to_string())),
            }
        }
        if unreadable.is_empty() {
            Ok(records)
        } else {
            Err(unreadable)
        }
    }

    /// Resolves a full id, a unique id prefix, or a name to an id.
    pub fn resolve(&self, key: &str) -> Result<String, StoreError> {
        if key.is_empty() || key.contains('/') || key.starts_with('.') {
            return Err(StoreError::NotFound(key.to_string()));
        }
        if let Ok(target) = fs::read_link(self.names_dir().join(key)) {
            let id = target.to_string_lossy().into_owned();
            if self.dir_of(&id).join("state.json").exists() {
                return Ok(id);
            }
        }
        let matches: Vec<String> = self
            .ids()
            .into_iter()
            .filter(|id| id.starts_with(key))
            .collect();
        match matches.len() {
            0 => Err(StoreError::NotFound(key.to_string())),
            1 => Ok(matches.into_iter().next().unwrap_or_default()),
            _ => Err(StoreError::Ambiguous(key.to_string())),
        }
    }

    /// Deletes everything hull keeps for `id` (writable layer, record, logs, name). The
    /// backend must have cleaned up first. The caller holds the container's lock.
    ///
    /// The writable layer goes first: a failure there leaves the record, so a later
    /// `hull rm` finds the container and tries again. The directory is then renamed out of
    /// the way (`.del-<id>`), so a `hull` killed while the files go leaves no half-removed
    /// container, only a leftover that [`Self::collect_leftovers`] finishes.
    pub fn delete(&self, id: &str, name: &str) -> Result<(), StoreError> {
        self.remove_storage(id)?;
        self.release_name(name, id);
        let doomed = self.dir.join(format!("{DELETING}{id}"));
        match fs::rename(self.dir_of(id), &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("remove container directory")(e)),
        }
        match fs::remove_dir_all(&doomed) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove container directory")(e)),
        }
    }

    /// Removes the writable layer of `id` (absent is fine).
    fn remove_storage(&self, id: &str) -> Result<(), StoreError> {
        let storage = self.context(id).storage_dir();
        match fs::remove_dir_all(&storage) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!(
                "remove the writable layer {}",
                storage.display()
            ))(e)),
        }
    }
}

fn validate_name(n: &str) -> Result<(), StoreError> {
    let ok = !n.is_empty()
        && n.len() <= 128
        && n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadName(n.to_string()))
    }
}

/// 32 random bytes as 64 hex digits.
pub fn random_id() -> String {
    let mut buf = [0u8; 32];
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: getrandom writes at most the given length into our buffer.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n > 0 {
            filled += n as usize;
        }
    }
    hex::encode(buf)
}

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nimble", "proud", "quiet", "rapid", "sharp", "tidy", "vivid", "witty", "zen", "bold",
];
const NOUNS: &[&str] = &[
    "anchor", "beacon", "canal", "dock", "ferry", "galley", "harbor", "keel", "lagoon", "mast",
    "oar", "pier", "quay", "reef", "sail", "tide", "wharf", "yacht", "buoy", "cove",
];

fn generated_name(id: &str, attempt: usize) -> String {
    let bytes = hex::decode(&id[..16]).unwrap_or_default();
    let a = bytes.get(attempt * 2).copied().unwrap_or(0) as usize;
    let b = bytes.get(attempt * 2 + 1).copied().unwrap_or(0) as usize;
    if attempt >= 4 {
        return format!(
            "{}_{}_{}",
            ADJECTIVES[a % ADJECTIVES.len()],
            NOUNS[b % NOUNS.len()],
            &id[..4]
        );
    }
    format!(
        "{}_{}",
        ADJECTIVES[a % ADJECTIVES.len()],
        NOUNS[b % NOUNS.len()]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_hex() {
        let a = random_id();
        assert_eq!(a.len(), 64);
        assert_ne!(a, random_id());
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("web-1.a_b").is_ok());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name("").is_err());
    }

    #[test]
    fn names_are_unique_while_reserved() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerStore::new(&StatePaths::new(Some(dir.path())));
        let web = store.allocate(Some("web")).unwrap();
        assert_eq!(web.name, "web");
        assert!(matches!(
            store.allocate(Some("web")),
            Err(StoreError::NameInUse(_))
        ));
        let other = store.allocate(None).unwrap();
        assert_ne!(other.name, "web");
        assert_ne!(web.id, other.id);
    }

    /// A creation or removal that a killed hull left half done is collected; one that a
    /// live hull holds is not, and a created container is never touched.
    #[test]
    fn leftovers_are_collected_but_never_work_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerStore::new(&StatePaths::new(Some(dir.path())));
        let live = store.allocate(Some("live")).unwrap();
        let crashed = store.allocate(Some("crashed")).unwrap();
        let crashed_id = crashed.id.clone();
        drop(crashed); // its creator died: the lock is gone, the directory is not
        let done = store.allocate(Some("done")).unwrap();
        let done_id = done.id.clone();
        store.commit(done, &record(&done_id, "done")).unwrap();
        std::fs::create_dir(
            dir.path()
                .join(format!("run/containers/.del-{}", random_id())),
        )
        .unwrap();

        store.collect_leftovers();
        let left: Vec<String> = std::fs::read_dir(dir.path().join("run/containers"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != ".names")
            .collect();
        assert!(left.contains(&format!(".new-{}", live.id)), "{left:?}");
        assert!(left.contains(&done_id), "{left:?}");
        assert_eq!(left.len(), 2, "{left:?}");
        assert_eq!(store.name_of(&crashed_id), None);
        assert_eq!(store.resolve("done").unwrap(), done_id);
        // The name of the crashed creation is free again; the live one's is not.
        assert!(store.allocate(Some("crashed")).is_ok());
        assert!(matches!(
            store.allocate(Some("live")),
            Err(StoreError::NameInUse(_))
        ));
    }

    fn record(id: &str, name: &str) -> ContainerState {
        ContainerState {
            id: id.into(),
            name: name.into(),
            isolation: IsolationKind::Process,
            spec: {
                let image = crate::container::spec::ImageFacts {
                    name: "i".into(),
                    id: "sha256:00".into(),
                    layers: vec![],
                    entrypoint: vec![],
                    cmd: vec!["true".into()],
                    env: vec![],
                    working_dir: String::new(),
                    user: String::new(),
                };
                crate::container::spec::build(
                    "0123456789abcdef",
                    &image,
                    &crate::container::spec::RunOptions::default(),
                )
                .unwrap()
            },
            status: Status::Created,
            created: 0,
            started: None,
            finished: None,
            exit_code: None,
            pid: None,
            supervisor: None,
            auto_remove: false,
            error: None,
            network: None,
        }
    }
}
