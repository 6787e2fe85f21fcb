//! virtio devices behind the virtio-mmio transport.

pub mod block;
pub mod mmio;
pub mod vsock;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use crate::error::Result;

/// VIRTIO_F_VERSION_1: the only mode the transport offers.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// Interrupt status bit: a used ring was updated.
pub const INT_USED_RING: u32 = 1;
/// Interrupt status bit: the configuration changed.
pub const INT_CONFIG: u32 = 2;

/// A device's interrupt: the virtio-mmio InterruptStatus register plus its irqfd.
pub struct Interrupt {
    status: AtomicU32,
    irqfd: EventFd,
}

impl Interrupt {
    /// Wraps an irqfd.
    pub fn new(irqfd: EventFd) -> Self {
        Interrupt {
            status: AtomicU32::new(0),
            irqfd,
        }
    }

    /// Tells the driver a used ring changed.
    pub fn signal_used(&self) {
        self.status.fetch_or(INT_USED_RING, Ordering::SeqCst);
        if let Err(e) = self.irqfd.write(1) {
            tracing::warn!("virtio irqfd write failed: {e}");
        }
    }

    /// Current InterruptStatus.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// InterruptACK: clears the acknowledged bits.
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// Clears everything (device reset).
    pub fn reset(&self) {
        self.status.store(0, Ordering::SeqCst);
    }
}

/// A virtio device model as the transport sees it.
pub trait VirtioDevice: Send {
    /// virtio device id (2 = block, 19 = vsock).
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Feature bits offered (VIRTIO_F_VERSION_1 is added by the transport).
    fn features(&self) -> u64;
    /// Reads the device configuration space.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Starts the device once the driver set DRIVER_OK; `queues` are ready and validated.
    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        queues: Vec<Queue>,
        interrupt: Arc<Interrupt>,
    ) -> Result<()>;
    /// The driver notified queue `index`.
    fn queue_notify(&mut self, index: u32);
    /// Stops the device and forgets its queues (status 0 written).
    fn reset(&mut self);
}

/// Reads `data.len()` bytes at `offset` of a config space held in `config`; out of range reads
/// yield zeroes.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if start >= config.len() {
        return;
    }
    let end = (start + data.len()).min(config.len());
    data[..end - start].copy_from_slice(&config[start..end]);
}

/// The shape of a descriptor chain that passed [`check_chain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainLayout {
    /// Total bytes in device-readable descriptors.
    pub readable: u64,
    /// Total bytes in device-writable descriptors.
    pub writable: u64,
    /// Number of descriptors.
    pub descriptors: usize,
}

/// Why a descriptor chain was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The chain loops, is longer than the queue, or references a descriptor that cannot be read.
    #[error("descriptor chain loops, is too long or is truncated")]
    Truncated,
    /// A device-readable descriptor follows a device-writable one.
    #[error("readable descriptor after a writable one")]
    BadOrder,
    /// A descriptor's buffer is not inside guest memory.
    #[error("descriptor buffer {addr:#x}+{len:#x} is outside guest memory")]
    OutOfRange {
        /// Buffer address.
        addr: u64,
        /// Buffer length.
        len: u32,
    },
}

/// Walks a chain without consuming it and checks everything a device relies on: it ends
/// (no loop, not longer than the queue), readable buffers come before writable ones, and
/// every buffer lies in guest memory.
pub fn check_chain<M>(
    chain: &virtio_queue::DescriptorChain<M>,
    mem: &GuestMemoryMmap,
) -> std::result::Result<ChainLayout, ChainError>
where
    M: std::ops::Deref + Clone,
    M::Target: vm_memory::GuestMemory,
{
    use vm_memory::GuestMemory as _;
    let mut layout = ChainLayout {
        readable: 0,
        writable: 0,
        descriptors: 0,
    };
    let mut last_has_next = true;
    let mut seen_writable = false;
    for desc in chain.clone() {
        layout.descriptors += 1;
        last_has_next = desc.has_next();
        let len = desc.len();
        if len > 0 && !mem.check_range(desc.addr(), len as usize, vm_memory::Permissions::ReadWrite)
        {
            return Err(ChainError::OutOfRange {
                addr: desc.addr().0,
                len,
            });
        }
        if desc.is_write_only() {
            seen_writable = true;
            layout.writable += u64::from(len);
        } else {
            if seen_writable {
                return Err(ChainError::BadOrder);
            }
            layout.readable += u64::from(len);
        }
    }
    if layout.descriptors == 0 || last_has_next {
        return Err(ChainError::Truncated);
    }
    Ok(layout)
}
