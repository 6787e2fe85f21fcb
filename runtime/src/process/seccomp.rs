//! The default seccomp filter: one policy shared with the guest agent (see
//! `hull_executor::seccomp`), so both isolation models deny the same system calls.

pub use hull_executor::seccomp::{build, install, SeccompError};
