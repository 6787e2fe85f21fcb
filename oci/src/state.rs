//! Container records under `--root`, their locking, and the state JSON as runc prints it.
//!
//! ```text
//! <root>/                    0700, created on first use
//!   <id>/                    one directory per container (mkdir is the atomic id claim)
//!     state.json             the record, replaced atomically (write temp + rename)
//!     ...                    files of the isolation model (fifo, sockets, disk image)
//! ```
//!
//! Every command that changes a container holds flock(2) on its directory. A record is
//! never trusted to describe a live process on its own: the init process is named by pid
//! and start time ([`ProcRef`]), so a recycled pid reads as "stopped".

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{OciError, Result};
use crate::procref::ProcRef;

/// Where runc keeps state is /run/runc; hull-oci's own default.
pub const DEFAULT_ROOT: &str = "/run/hull-oci";
/// The runtime-spec version hull-oci implements (printed in `state` and `--version`).
pub const OCI_VERSION: &str = "1.2.0";
/// Largest state.json read back (a record is a few KiB; annotations are bounded by this).
const MAX_RECORD: u64 = 4 << 20;
const RECORD: &str = "state.json";
const RECORD_TMP: &str = ".state.json.tmp";

/// Which isolation model runs a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    /// A namespaced process on the host kernel.
    Process,
    /// A KVM microVM with its own kernel.
    Vm,
}

impl Model {
    /// `process` or `vm`, as in the `io.hull.isolation` annotation.
    pub fn as_str(self) -> &'static str {
        match self {
            Model::Process => "process",
            Model::Vm => "vm",
        }
    }
}

/// How far the lifecycle has come, as recorded (the live status also asks the kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// `create` is still setting the container up.
    Creating,
    /// The init process waits for `start`.
    Created,
    /// `start` released the init process.
    Started,
}

/// The status a caller sees (runtime-spec's four, plus runc's `paused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `create` is in progress.
    Creating,
    /// Created, waiting for `start`.
    Created,
    /// The user's process runs.
    Running,
    /// Frozen by `pause`.
    Paused,
    /// Its init process has ended (or never came to be).
    Stopped,
}

impl Status {
    /// The lowercase name runc prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What hull-oci remembers about one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The container id.
    pub id: String,
    /// Absolute bundle directory.
    pub bundle: PathBuf,
    /// Absolute root filesystem directory (symlinks resolved).
    pub rootfs: PathBuf,
    /// RFC 3339 time of `create`.
    pub created: String,
    /// User owning the container (empty for root, as runc prints it).
    #[serde(default)]
    pub owner: String,
    /// The config's annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Which model runs it.
    pub model: Model,
    /// Lifecycle as recorded.
    pub phase: Phase,
    /// The `create` invocation while it runs, to tell a crashed create from a live one.
    #[serde(default)]
    pub creator: Option<ProcRef>,
    /// The process `--pid-file` names: the container's init (process model) or the host
    /// process standing for the VM (vm model).
    #[serde(default)]
    pub init: Option<ProcRef>,
    /// Set by `pause`, cleared by `resume`.
    #[serde(default)]
    pub paused: bool,
}

impl Record {
    /// The status now: the record, checked against the live processes.
    pub fn status(&self) -> Status {
        match self.phase {
            Phase::Creating => {
                if self.creator.is_some_and(|c| c.alive()) {
                    Status::Creating
                } else {
                    // `create` died half-way: nothing runs, and `delete` must be allowed.
                    Status::Stopped
                }
            }
            _ if !self.init.is_some_and(|p| p.alive()) => Status::Stopped,
            Phase::Created => Status::Created,
            Phase::Started if self.paused => Status::Paused,
            Phase::Started => Status::Running,
        }
    }

    /// The state JSON as `runc state` prints it (runtime-spec State plus runc's `rootfs`,
    /// `created` and `owner`).
    pub fn runc_state(&self) -> RuncState {
        let status = self.status();
        let pid = match status {
            Status::Stopped | Status::Creating => 0,
            _ => self.init.map_or(0, |p| p.pid),
        };
        RuncState {
            oci_version: OCI_VERSION.to_string(),
            id: self.id.clone(),
            pid,
            status: status.as_str().to_string(),
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            annotations: self.annotations.clone(),
            owner: self.owner.clone(),
        }
    }
}

/// `runc state` / `runc list --format json` output for one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuncState {
    /// Runtime-spec version.
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Host pid of the init process; 0 once stopped.
    pub pid: i32,
    /// created, running, paused, stopped (or creating).
    pub status: String,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute root filesystem path.
    pub rootfs: PathBuf,
    /// RFC 3339 creation time.
    pub created: String,
    /// The config's annotations (left out when there are none, as runc does).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Owner user name; empty for root.
    pub owner: String,
}

/// Checks an id the way runc does: it names a directory under `--root`.
pub fn validate_id(id: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.');
    if id.is_empty() || id.len() > 1024 || id == "." || id == ".." || !id.chars().all(ok_char) {
        return Err(OciError::InvalidId(id.to_string()));
    }
    Ok(())
}

/// The containers under one `--root`.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// One container's directory, locked (flock, exclusive) for as long as this lives.
#[derive(Debug)]
pub struct Locked {
    /// Container id.
    pub id: String,
    /// Its directory.
    pub dir: PathBuf,
    lock: fs::File,
}

impl Store {
    /// The store at `root` (not touched until used).
    pub fn new(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Claims `id` for a new container: creates its directory (failing if the id is
    /// taken) and locks it. The caller writes the first record.
    pub fn claim(&self, id: &str) -> Result<Locked> {
        validate_id(id)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(|e| OciError::io(format!("create state root {}", self.root.display()), e))?;
        let dir = self.root.join(id);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(OciError::Exists(id.to_string()))
            }
            Err(e) => return Err(OciError::io(format!("create {}", dir.display()), e)),
        }
        lock_dir(id, dir)
    }

    /// Locks the directory of an existing container.
    pub fn open(&self, id: &str) -> Result<Locked> {
        validate_id(id)?;
        lock_dir(id, self.root.join(id))
    }

    /// Ids of every container directory, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(OciError::io(
                    format!("read state root {}", self.root.display()),
                    e,
                ))
            }
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|id| validate_id(id).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The record of `id` without locking (for `state` and `list`, which only read).
    pub fn peek(&self, id: &str) -> Result<Record> {
        validate_id(id)?;
        read_record(id, &self.root.join(id))
    }
}

fn lock_dir(id: &str, dir: PathBuf) -> Result<Locked> {
    let lock = match fs::File::open(&dir) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(OciError::NotExist(id.to_string()))
        }
        Err(e) => return Err(OciError::io(format!("open {}", dir.display()), e)),
    };
    // SAFETY: flock on a descriptor we own; blocking until another command is done.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(OciError::io(
            format!("lock {}", dir.display()),
            io::Error::last_os_error(),
        ));
    }
    Ok(Locked {
        id: id.to_string(),
        dir,
        lock,
    })
}

fn read_record(id: &str, dir: &Path) -> Result<Record> {
    let path = dir.join(RECORD);
    let mut text = Vec::new();
    match fs::File::open(&path) {
        Ok(f) => f
            .take(MAX_RECORD)
            .read_to_end(&mut text)
            .map_err(|e| OciError::io(format!("read {}", path.display()), e))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(OciError::NotExist(id.to_string()))
        }
        Err(e) => return Err(OciError::io(format!("open {}", path.display()), e)),
    };
    serde_json::from_slice(&text).map_err(|e| {
        OciError::Runtime(format!(
            "state of container {id} ({}) is unreadable: {e}",
            path.display()
        ))
    })
}

impl Locked {
    /// The record (NotExist when the container was deleted while we waited for the lock).
    pub fn read(&self) -> Result<Record> {
        read_record(&self.id, &self.dir)
    }

    /// Replaces the record atomically.
    pub fn write(&self, record: &Record) -> Result<()> {
        let tmp = self.dir.join(RECORD_TMP);
        let bytes = serde_json::to_vec(record).map_err(|e| OciError::Runtime(e.to_string()))?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| OciError::io(format!("write {}", tmp.display()), e))?;
        f.write_all(&bytes)
            .map_err(|e| OciError::io(format!("write {}", tmp.display()), e))?;
        // /run is volatile: a rename is atomic against a crash of hull-oci, and power loss
        // ends the containers as well, so no fsync.
        fs::rename(&tmp, self.dir.join(RECORD))
            .map_err(|e| OciError::io(format!("replace {}", self.dir.display()), e))
    }

    /// A path for a file of this container.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Removes the container's directory and everything in it (the last step of delete).
    pub fn remove(self) -> Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(OciError::io(format!("remove {}", self.dir.display()), e)),
        }?;
        drop(self.lock);
        Ok(())
    }
}

/// The current time in RFC 3339 with nanoseconds, UTC (Go's RFC3339Nano parses it).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> Record {
        Record {
            id: id.into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: now_rfc3339(),
            owner: String::new(),
            annotations: BTreeMap::new(),
            model: Model::Process,
            phase: Phase::Created,
            creator: None,
            init: ProcRef::of(std::process::id() as i32),
            paused: false,
        }
    }

    #[test]
    fn ids_follow_runc_rules() {
        for ok in ["a", "abc-DEF_1.2+3", &"x".repeat(1024)] {
            validate_id(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a b", "../x", &"x".repeat(1025), "é"] {
            assert!(
                matches!(validate_id(bad), Err(OciError::InvalidId(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn claim_refuses_a_taken_id_and_keeps_the_first() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path().join("root"));
        let first = store.claim("c1").unwrap();
        first.write(&record("c1")).unwrap();
        drop(first);
        assert!(matches!(store.claim("c1"), Err(OciError::Exists(_))));
        assert_eq!(store.peek("c1").unwrap().id, "c1");
        assert_eq!(store.ids().unwrap(), vec!["c1".to_string()]);
    }

    #[test]
    fn a_missing_container_does_not_exist() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        let err = store.open("nope").unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        let err = store.peek("nope").unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn status_follows_phase_and_liveness() {
        let mut r = record("c");
        assert_eq!(r.status(), Status::Created);
        r.phase = Phase::Started;
        assert_eq!(r.status(), Status::Running);
        r.paused = true;
        assert_eq!(r.status(), Status::Paused);
        r.init = Some(ProcRef {
            pid: std::process::id() as i32,
            start_time: r.init.unwrap().start_time + 7,
        });
        assert_eq!(r.status(), Status::Stopped);
        assert_eq!(r.runc_state().pid, 0);
        // A create whose process is gone leaves a stopped (deletable) container.
        r.phase = Phase::Creating;
        r.creator = None;
        assert_eq!(r.status(), Status::Stopped);
    }

    #[test]
    fn runc_state_has_runc_field_names() {
        let mut r = record("c");
        r.annotations.insert("k".into(), "v".into());
        let v = serde_json::to_value(r.runc_state()).unwrap();
        for key in [
            "ociVersion",
            "id",
            "pid",
            "status",
            "bundle",
            "rootfs",
            "created",
            "annotations",
            "owner",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
        assert_eq!(v["status"], "created");
        assert_eq!(v["pid"], std::process::id());
        r.annotations.clear();
        let v = serde_json::to_value(r.runc_state()).unwrap();
        assert!(v.get("annotations").is_none());
    }

    #[test]
    fn removed_container_reads_as_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        let c = store.claim("gone").unwrap();
        c.write(&record("gone")).unwrap();
        c.remove().unwrap();
        assert!(matches!(store.peek("gone"), Err(OciError::NotExist(_))));
        assert!(store.ids().unwrap().is_empty());
    }
}
