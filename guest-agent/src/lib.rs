//! The hull guest agent's library: the host/guest protocol (shared with the runtime's vm
//! backend) and the pure pieces of the agent that unit tests can reach without a VM.

pub mod in_root;
pub mod protocol;
pub mod seccomp;
pub mod user;
