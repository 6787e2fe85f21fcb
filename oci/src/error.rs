//! The errors of `hull-oci`, worded the way runc words them where callers depend on it:
//! containerd's shim and podman match substrings such as "does not exist" (an already
//! removed container) and "not running" (a signal to a finished container).

use std::io;
use std::path::PathBuf;

/// What can go wrong in a `hull-oci` command.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// No container has this id under `--root`.
    #[error("container {0} does not exist")]
    NotExist(String),
    /// `create` with an id that is taken.
    #[error("container with id {0} already exists")]
    Exists(String),
    /// An id runc would refuse (it becomes a directory name).
    #[error("invalid container id {0:?}: use 1 to 1024 characters of [A-Za-z0-9_+.-], not \".\" or \"..\"")]
    InvalidId(String),
    /// A signal or exec to a container whose init has ended.
    #[error("container {0} is not running")]
    NotRunning(String),
    /// `start` of a container that was already started.
    #[error("cannot start an already running container")]
    AlreadyRunning,
    /// `start` of a container whose init ended.
    #[error("cannot start a container that has stopped")]
    StartStopped,
    /// `start` of a container in another state (paused, creating).
    #[error("cannot start a container in the {0} state")]
    StartInState(String),
    /// `delete` without `--force` of a container that runs.
    #[error("cannot delete container {id} that is not stopped: {status}")]
    DeleteNotStopped {
        /// Container id.
        id: String,
        /// Its status.
        status: String,
    },
    /// `pause` of a container that is not running.
    #[error("container {0} is not running (cannot pause it)")]
    PauseNotRunning(String),
    /// `resume` of a container that is not paused.
    #[error("container {0} is not paused")]
    NotPaused(String),
    /// The bundle cannot be used: what is wrong with it.
    #[error("bundle {bundle}: {reason}")]
    Bundle {
        /// The bundle directory as given.
        bundle: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A command-line value hull-oci cannot use (bad signal name, bad JSON in --process...).
    #[error("{0}")]
    Usage(String),
    /// Something the OCI runtime spec allows that hull cannot do (here, or in this model).
    #[error("not supported by hull-oci: {0}")]
    Unsupported(String),
    /// An operating-system call failed while doing `what`.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The container's process could not be created or started.
    #[error("{0}")]
    Runtime(String),
}

impl OciError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: impl Into<io::Error>) -> Self {
        OciError::Io {
            what: what.into(),
            source: source.into(),
        }
    }

    /// A bundle problem.
    pub fn bundle(bundle: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        OciError::Bundle {
            bundle: bundle.into(),
            reason: reason.into(),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = OciError> = std::result::Result<T, E>;
