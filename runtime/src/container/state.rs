//! Container records on disk and the locking that makes concurrent `hull` invocations safe.
//!
//! ```text
//! <run_root>/containers/
//!   <id>/state.json        the record (replaced atomically: write temp + rename)
//!   <id>/container.log     stdout/stderr records (see `logs`)
//!   <id>/...               backend files (process.json, upper/, work/, rootfs/)
//!   .names/<name> -> <id>  name reservations (symlink creation is atomic)
//! <root>/containers/<id>/  the writable layer, on disk (see `ContainerContext::storage_dir`)
//! ```
//!
//! Mutations of one container happen under flock(2) on its directory. A waiter that gets
//! the lock after the container was removed sees no state.json and reports it gone.

use std::fs;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::isolation::{ContainerContext, ContainerSpec, IsolationKind};
use crate::network::NetworkStatus;
use crate::paths::StatePaths;

/// Largest state.json we read.
const MAX_STATE: u64 = 1 << 20;

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

    /// Reserves `name` (or a generated one) and creates the directory of a new container.
    /// Returns (id, name).
    pub fn allocate(&self, name: Option<&str>) -> Result<(String, String), StoreError> {
        fs::create_dir_all(self.names_dir()).map_err(io_err("create container state directory"))?;
        let id = random_id();
        let name = match name {
            Some(n) => {
                validate_name(n)?;
                self.reserve(n, &id)?;
                n.to_string()
            }
            None => {
                let mut chosen = None;
                for attempt in 0..8 {
                    let candidate = generated_name(&id, attempt);
                    match self.reserve(&candidate, &id) {
                        Ok(()) => {
                            chosen = Some(candidate);
                            break;
                        }
                        Err(StoreError::NameInUse(_)) => continue,
                        Err(e) => return Err(e),
                    }
                }
                let n = chosen.unwrap_or_else(|| format!("hull_{}", &id[..12]));
                if n.starts_with("hull_") {
                    self.reserve(&n, &id)?;
                }
                n
            }
        };
        if let Err(e) = fs::create_dir(self.dir_of(&id)) {
            let _ = fs::remove_file(self.names_dir().join(&name));
            return Err(io_err("create container directory")(e));
        }
        Ok((id, name))
    }

    fn reserve(&self, name: &str, id: &str) -> Result<(), StoreError> {
        match std::os::unix::fs::symlink(id, self.names_dir().join(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // A reservation whose container is gone is stale: take it over.
                let owner = fs::read_link(self.names_dir().join(name)).ok();
                if let Some(owner) = owner {
                    if !self.dir_of(&owner.to_string_lossy()).exists() {
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
        let tmp = dir.join(".state.json.tmp");
        let data = serde_json::to_vec_pretty(state)
            .map_err(|e| io_err("encode state")(io::Error::other(e)))?;
        fs::write(&tmp, data).map_err(io_err("write state"))?;
        // Volatile run-root state: rename gives atomicity against crashes; no fsync.
        fs::rename(&tmp, dir.join("state.json")).map_err(io_err("replace state"))
    }

    /// Reads the record of `id`.
    pub fn load(&self, id: &str) -> Result<ContainerState, StoreError> {
        let path = self.dir_of(id).join("state.json");
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(id.to_string()))
            }
            Err(e) => return Err(io_err(format!("read {}", path.display()))(e)),
        };
        let mut text = String::new();
        file.take(MAX_STATE)
            .read_to_string(&mut text)
            .map_err(io_err(format!("read {}", path.display())))?;
        serde_json::from_str(&text)
            .map_err(|e| io_err(format!("parse {}", path.display()))(io::Error::other(e)))
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
        loop {
            // SAFETY: flock on a descriptor we own.
            let r = unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) };
            if r == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(io_err("lock container")(e));
            }
        }
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
    /// backend must have cleaned up first. The writable layer goes first: a failure there
    /// leaves the record, so a later `hull rm` finds the container and tries again.
    pub fn delete(&self, id: &str, name: &str) -> Result<(), StoreError> {
        let storage = self.context(id).storage_dir();
        match fs::remove_dir_all(&storage) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io_err(format!(
                    "remove the writable layer {}",
                    storage.display()
                ))(e))
            }
        }
        let link = self.names_dir().join(name);
        if fs::read_link(&link).is_ok_and(|t| t == Path::new(id)) {
            let _ = fs::remove_file(&link);
        }
        match fs::remove_dir_all(self.dir_of(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove container directory")(e)),
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
        let (id, name) = store.allocate(Some("web")).unwrap();
        assert_eq!(name, "web");
        assert!(matches!(
            store.allocate(Some("web")),
            Err(StoreError::NameInUse(_))
        ));
        let (id2, generated) = store.allocate(None).unwrap();
        assert_ne!(generated, "web");
        assert_ne!(id, id2);
    }
}
