//! hull's executor: turns an OCI runtime spec into a running container process, for both
//! isolation models — the process backend on the host and the guest agent inside the
//! microVM — so a container is set up the same way in either.
//!
//! - [`plan`]: everything computed from the spec before any process exists (pure, tested
//!   without root);
//! - [`init`]: the child's sequence from clone to execve, through the syscall seam [`sys`];
//! - [`spawn`]: the parent's side (cgroups, descriptors, clone3, the sync protocol, the
//!   create/start split);
//! - [`cgroups`], [`seccomp`]: values and programs, and their drivers;
//! - [`defaults`]: docker's defaults for spec generators;
//! - [`user`], [`in_root`]: `--user` resolution and file reads inside a root;
//! - [`archive`]: tar streams of a root's files, read and written from outside it (`hull cp`);
//! - [`error`]: the one error type (kind, stage, errno) that crosses every boundary.

pub mod archive;
pub mod cgroups;
pub mod defaults;
pub mod error;
pub mod fork;
pub mod in_root;
pub mod init;
pub mod plan;
pub mod seccomp;
pub mod spawn;
pub mod sys;
pub mod user;

pub use error::{Error, ErrorKind, Stage};
