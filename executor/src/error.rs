//! The one error type of container setup: what kind of failure, at which stage, with which
//! errno. It travels from the container's child process to its parent as a fixed-size
//! record ([`ChildReport`]: no text, no allocation in the child) and from the guest agent to
//! the host as JSON, so no side ever parses an error message.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What went wrong, as the caller acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum ErrorKind {
    /// The spec is malformed or asks for something impossible (a bad path, a size out of
    /// range, a device the policy forbids).
    InvalidSpec = 1,
    /// The spec asks for something hull does not implement: refused, never dropped.
    Unsupported = 2,
    /// The command does not exist in the container (exit code 127).
    CommandNotFound = 3,
    /// The command exists but cannot be executed (exit code 126).
    NotExecutable = 4,
    /// A system call failed while setting the container up.
    System = 5,
    /// The container process did not report within its deadline.
    Timeout = 6,
    /// The other side broke the setup protocol.
    Protocol = 7,
}

impl ErrorKind {
    /// The kind whose number (its wire code, `kind as u8`) is `b`.
    pub fn from_u8(b: u8) -> Option<ErrorKind> {
        use ErrorKind::*;
        [
            InvalidSpec,
            Unsupported,
            CommandNotFound,
            NotExecutable,
            System,
            Timeout,
            Protocol,
        ]
        .into_iter()
        .find(|k| *k as u8 == b)
    }

    /// The exit code docker gives this failure: 127 not found, 126 not executable, 125 else.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::CommandNotFound => 127,
            ErrorKind::NotExecutable => 126,
            _ => 125,
        }
    }
}

macro_rules! stages {
    ($($(#[$doc:meta])* $name:ident = $n:literal => $text:literal,)*) => {
        /// The step of container setup that failed.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[repr(u8)]
        pub enum Stage {
            $($(#[$doc])* $name = $n,)*
        }

        impl Stage {
            /// The stage whose number (its wire code, `stage as u8`) is `b`.
            pub fn from_u8(b: u8) -> Option<Stage> {
                match b {
                    $($n => Some(Stage::$name),)*
                    _ => None,
                }
            }

            /// What the stage does, for messages.
            pub fn describe(self) -> &'static str {
                match self {
                    $(Stage::$name => $text,)*
                }
            }
        }
    };
}

stages! {
    /// Checking the spec and computing the plan.
    Spec = 1 => "check the container spec",
    /// Opening what the child needs (namespace files, mount sources, devices).
    Prepare = 2 => "prepare the container",
    /// Creating cgroups, writing limits, joining them.
    Cgroups = 3 => "set up cgroups",
    /// Creating the child process.
    Clone = 4 => "create the container process",
    /// Writing uid/gid maps of a new user namespace.
    UserNamespace = 5 => "set up the user namespace",
    /// Joining or creating namespaces.
    Namespaces = 6 => "enter namespaces",
    /// Building the root filesystem (overlay, propagation).
    Rootfs = 7 => "set up the root filesystem",
    /// Switching into the root filesystem.
    PivotRoot = 8 => "switch to the container root",
    /// One entry of `mounts`.
    Mount = 9 => "mount",
    /// One entry of `linux.devices` (or a default device).
    Device = 10 => "create device",
    /// One entry of `linux.maskedPaths`.
    MaskedPath = 11 => "mask path",
    /// One entry of `linux.readonlyPaths`.
    ReadonlyPath = 12 => "make path read-only",
    /// hostname / domainname.
    Hostname = 13 => "set hostname",
    /// One entry of `linux.sysctl`.
    Sysctl = 14 => "set sysctl",
    /// Bringing up the loopback interface.
    Network = 15 => "bring up the loopback interface",
    /// One entry of `process.rlimits`.
    Rlimit = 16 => "set rlimit",
    /// `process.oomScoreAdj`.
    OomScoreAdj = 17 => "set oom_score_adj",
    /// Connecting standard streams.
    Stdio = 18 => "set up stdio",
    /// Creating the terminal.
    Terminal = 19 => "set up the terminal",
    /// The working directory.
    Cwd = 20 => "change to the working directory",
    /// uid, gid and supplementary groups.
    User = 21 => "switch user",
    /// The capability sets.
    Capabilities = 22 => "set capabilities",
    /// no_new_privs.
    NoNewPrivileges = 23 => "set no_new_privs",
    /// Loading the seccomp filter.
    Seccomp = 24 => "load the seccomp filter",
    /// Waiting for `start` (create/start split).
    StartGate = 25 => "wait for start",
    /// execve of the command.
    Exec = 26 => "exec",
    /// A lifecycle hook.
    Hook = 27 => "run hook",
    /// Talking to the other side (guest agent, child).
    Channel = 28 => "talk to the container",
}

/// A container setup failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// Where in the setup.
    pub stage: Stage,
    /// The errno of the failed system call, if one failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    /// What was being done (a path, a command, a field), for people.
    pub detail: String,
}

impl Error {
    /// An error without an errno.
    pub fn new(kind: ErrorKind, stage: Stage, detail: impl Into<String>) -> Error {
        Error {
            kind,
            stage,
            errno: None,
            detail: detail.into(),
        }
    }

    /// A malformed spec.
    pub fn invalid(detail: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidSpec, Stage::Spec, detail)
    }

    /// A spec field hull does not implement.
    pub fn unsupported(detail: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unsupported, Stage::Spec, detail)
    }

    /// A failed system call.
    pub fn system(stage: Stage, detail: impl Into<String>, err: &std::io::Error) -> Error {
        Error {
            kind: ErrorKind::System,
            stage,
            errno: err.raw_os_error(),
            detail: detail.into(),
        }
    }

    /// The exit code `hull run` returns for it.
    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::InvalidSpec | ErrorKind::Unsupported => write!(f, "{}", self.detail)?,
            ErrorKind::CommandNotFound | ErrorKind::NotExecutable => {
                write!(f, "exec {}", self.detail)?
            }
            _ => write!(f, "{}: {}", self.stage.describe(), self.detail)?,
        }
        if let Some(errno) = self.errno {
            write!(f, ": {}", std::io::Error::from_raw_os_error(errno))?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// The child's failure report: fixed size, written with one `write` and no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildReport {
    /// [`ErrorKind`] as a byte.
    pub kind: ErrorKind,
    /// [`Stage`] as a byte.
    pub stage: Stage,
    /// errno (0: none).
    pub errno: i32,
    /// Which entry of the stage's list failed (mount number, rlimit number...).
    pub index: u32,
}

impl ChildReport {
    /// Encoded size.
    pub const LEN: usize = 10;

    /// The wire form.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.kind as u8;
        b[1] = self.stage as u8;
        b[2..6].copy_from_slice(&self.errno.to_le_bytes());
        b[6..10].copy_from_slice(&self.index.to_le_bytes());
        b
    }

    /// Decodes a report; `None` if it is not one (a protocol violation).
    pub fn decode(b: &[u8]) -> Option<ChildReport> {
        if b.len() != Self::LEN {
            return None;
        }
        Some(ChildReport {
            kind: ErrorKind::from_u8(b[0])?,
            stage: Stage::from_u8(b[1])?,
            errno: i32::from_le_bytes([b[2], b[3], b[4], b[5]]),
            index: u32::from_le_bytes([b[6], b[7], b[8], b[9]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_and_garbage_is_refused() {
        let r = ChildReport {
            kind: ErrorKind::System,
            stage: Stage::Mount,
            errno: libc::ENOENT,
            index: 3,
        };
        assert_eq!(ChildReport::decode(&r.encode()), Some(r));
        assert_eq!(ChildReport::decode(&[0u8; ChildReport::LEN]), None);
        assert_eq!(ChildReport::decode(&[1, 99, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(ChildReport::decode(&[1, 1]), None);
    }

    #[test]
    fn errors_serialise_for_the_agent_protocol_and_read_well() {
        let e = Error {
            kind: ErrorKind::CommandNotFound,
            stage: Stage::Exec,
            errno: None,
            detail: "nope: executable file not found in $PATH".into(),
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Error>(&json).unwrap(), e);
        assert_eq!(
            e.to_string(),
            "exec nope: executable file not found in $PATH"
        );
        assert_eq!(e.exit_code(), 127);
        let e = Error::system(
            Stage::Mount,
            "/data",
            &std::io::Error::from_raw_os_error(libc::ENOENT),
        );
        assert!(
            e.to_string().starts_with("mount: /data: No such file"),
            "{e}"
        );
        assert_eq!(e.exit_code(), 125);
    }
}
