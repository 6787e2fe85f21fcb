//! A container process's standard streams on the agent's side, and the started process as
//! the relay ([`super::session`]) sees it.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};

use hull_executor::spawn::{Spawned, Stdio};
use hull_executor::{Error, Stage};
use hull_protocol::StdioSpec;
use nix::fcntl::OFlag;
use nix::unistd::pipe2;

/// The agent's ends of a process's stdio.
pub struct ParentStdio {
    /// Write end of stdin (pipe, or the terminal's master); `None` when the host sends no
    /// input.
    pub stdin: Option<File>,
    /// stdout (pipe) or the terminal's master.
    pub stdout: File,
    /// stderr pipe (`None` with a terminal: it shares it).
    pub stderr: Option<File>,
    /// Whether `stdout` is a terminal's master.
    pub tty: bool,
}

/// A started process.
pub struct Child {
    /// PID in the agent's PID namespace.
    pub pid: i32,
    /// The agent's ends of the child's stdio.
    pub stdio: ParentStdio,
    /// Becomes readable (4 bytes, the exit code) when the process ends.
    pub exit: File,
}

/// Pipes made before the process: the child's ends go to the executor, the agent keeps
/// the others. With a terminal the executor makes it inside the container (in its own
/// devpts) and hands back the master.
pub enum Streams {
    /// Pipes for stdin (if kept open), stdout and stderr.
    Pipes {
        /// (child's read end, agent's write end).
        stdin: Option<(OwnedFd, File)>,
        /// (agent's read end, child's write end).
        stdout: (File, OwnedFd),
        /// (agent's read end, child's write end).
        stderr: (File, OwnedFd),
    },
    /// A terminal; `stdin`: the host writes to it.
    Terminal {
        /// Whether the host sends input.
        stdin: bool,
    },
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| Error::system(Stage::Stdio, "create a pipe", &std::io::Error::from(e)))
}

impl Streams {
    /// The streams `spec` asks for.
    pub fn new(spec: &StdioSpec) -> Result<Streams, Error> {
        if spec.tty {
            return Ok(Streams::Terminal { stdin: spec.stdin });
        }
        let stdin = if spec.stdin {
            let (r, w) = pipe()?;
            Some((r, File::from(w)))
        } else {
            None
        };
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        Ok(Streams::Pipes {
            stdin,
            stdout: (File::from(out_r), out_w),
            stderr: (File::from(err_r), err_w),
        })
    }

    /// What the executor connects in the child.
    pub fn child(&self) -> Stdio<'_> {
        match self {
            Streams::Pipes {
                stdin,
                stdout,
                stderr,
            } => Stdio::Pipes {
                stdin: stdin.as_ref().map(|(r, _)| r.as_fd()),
                stdout: stdout.1.as_fd(),
                stderr: stderr.1.as_fd(),
            },
            Streams::Terminal { .. } => Stdio::Terminal,
        }
    }

    /// The agent's ends once the process runs (the child's ends are closed here).
    pub fn into_child(self, spawned: Spawned, exit: File) -> Result<Child, Error> {
        let stdio = match self {
            Streams::Pipes {
                stdin,
                stdout,
                stderr,
            } => ParentStdio {
                stdin: stdin.map(|(_, w)| w),
                stdout: stdout.0,
                stderr: Some(stderr.0),
                tty: false,
            },
            Streams::Terminal { stdin } => {
                let master = File::from(spawned.terminal.ok_or_else(|| {
                    Error::new(
                        hull_executor::ErrorKind::Protocol,
                        Stage::Terminal,
                        "the container process sent no terminal",
                    )
                })?);
                let input = if stdin {
                    Some(
                        master
                            .try_clone()
                            .map_err(|e| Error::system(Stage::Terminal, "dup the terminal", &e))?,
                    )
                } else {
                    None
                };
                ParentStdio {
                    stdin: input,
                    stdout: master,
                    stderr: None,
                    tty: true,
                }
            }
        };
        Ok(Child {
            pid: spawned.pid,
            stdio,
            exit,
        })
    }
}
