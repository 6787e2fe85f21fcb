//! Seccomp: profiles (docker's format, hull's default), their resolution into OCI
//! `linux.seccomp` for one container, and the compiler from OCI seccomp to the BPF program
//! the kernel runs.
//!
//! hull compiles the program itself: seccompiler (Firecracker's) gives every rule of a filter
//! the same action, while OCI profiles give each rule its own action and errno, and
//! libseccomp is a C library the static guest agent would have to link.

pub mod bpf;
mod compile;
mod names;
pub mod profile;
mod x86_64;

pub use compile::{compile, ret, CompileError, Filter, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64};
pub use names::{is_foreign, number};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod denial_tests;
