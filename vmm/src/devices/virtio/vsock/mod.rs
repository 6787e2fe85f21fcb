//! placeholder
use crate::config::VsockConfig;
use crate::error::{Error, Result};
use crate::exit::ExitNotifier;
use std::sync::Arc;
use std::thread::JoinHandle;
use vm_memory::GuestMemoryMmap;
pub struct Vsock;
pub struct VsockEventLoop;
impl Vsock {
    pub fn new(_c: &VsockConfig) -> Result<(super::block::Block, VsockEventLoop)> {
        Err(Error::Config("--vsock: virtio-vsock is not built yet".into()))
    }
}
impl VsockEventLoop {
    pub fn spawn(self, _m: GuestMemoryMmap, _e: Arc<ExitNotifier>) -> Result<JoinHandle<()>> {
        Err(Error::Config("--vsock: virtio-vsock is not built yet".into()))
    }
}
