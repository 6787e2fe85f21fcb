//! Backend-neutral container management: specs from flags and image config, records on
//! disk with locking, the supervisor that owns a running container's stdio and exit, logs,
//! the isolation config file, and lifecycle operations (stop/kill/rm, crash repair).

pub mod attach;
pub mod config;
pub mod lifecycle;
pub mod logs;
pub mod resident;
pub mod spec;
pub mod state;
pub mod supervisor;
