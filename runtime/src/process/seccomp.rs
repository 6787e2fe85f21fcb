//! The default seccomp filter: one policy shared with the guest agent (see
//! `hull_agent::seccomp`), so both isolation models deny the same system calls.

pub use hull_agent::seccomp::{build, install, SeccompError};
