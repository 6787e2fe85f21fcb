//! hull runtime library: the image store, the one `Isolation` interface, and its two
//! backends (`process`: namespaced process on the host kernel; `vm`: KVM microVM with a
//! guest agent).

pub mod backends;
pub mod bench;
pub mod container;
pub mod doctor;
#[doc(hidden)]
pub mod fuzzing;
pub mod image;
pub mod isolation;
pub mod logcap;
pub mod network;
pub mod paths;
pub mod private_fs;
pub mod process;
pub mod registry;
pub mod sanitize;
pub mod storage;
pub mod vm;
