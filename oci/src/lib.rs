//! `hull-oci`: hull's OCI runtime command line. It accepts what runc accepts as podman,
//! containerd and Kubernetes (through containerd's CRI plugin) use it, and runs each
//! container in the isolation model its annotation or hull's policy chooses.
//!
//! - `cli`: the command line; `commands`: ids, records and runc's rules per command;
//! - `bundle`: loading and checking config.json and the root filesystem;
//! - `state`: records under `--root`, locking, runc's state JSON;
//! - `isolation`: which model runs a container; `runner`: what a model does;
//! - `console`, `pidfile`, `signal`, `log`, `features`: runc's protocols and formats.

pub mod bundle;
pub mod cli;
pub mod commands;
pub mod console;
pub mod error;
pub mod features;
pub mod hooks;
pub mod isolation;
pub mod log;
pub mod models;
pub mod pidfile;
pub mod procref;
pub mod runner;
pub mod signal;
pub mod state;
pub mod systemd;

pub use error::{OciError, Result};
