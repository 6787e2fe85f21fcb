//! hull's executor: the pieces that turn a container description into a running process,
//! shared by both isolation models (the process backend on the host, the guest agent in
//! the microVM), so a container is set up alike in either.

pub mod in_root;
pub mod seccomp;
pub mod user;
