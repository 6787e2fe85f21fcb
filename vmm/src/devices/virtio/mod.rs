//! virtio devices behind the virtio-mmio transport.

//!
//! A device is one struct shared (`Arc<Mutex<_>>`) by two sides:
//! - the virtio-mmio transport ([`mmio`]), on the vCPU threads: it reads the device's fixed
//!   identity once, and takes the device's lock only to activate or reset it;
//! - the event loop ([`crate::event_loop`]), on the main thread: the device is an
//!   event-manager subscriber whose queue notifications arrive as eventfds (KVM ioeventfds
//!   on the QueueNotify register), so queue work never runs on a vCPU thread nor under the
//!   MMIO bus lock. Interrupts go out through an irqfd.
//!
//! docs/vmm.md ("Adding a virtio device") lists the steps for a new device.

pub mod block;
pub mod chain;
pub mod fs;
pub mod manager;
pub mod mmio;
pub mod net;
pub mod vsock;

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use crate::error::{Error, Result};

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

/// What a device gets when the driver sets DRIVER_OK: its queues (validated against guest
/// memory), guest memory and its interrupt.
pub struct Activation {
    /// Guest memory.
    pub mem: GuestMemoryMmap,
    /// The queues, in index order (only those the device declared).
    pub queues: Vec<Queue>,
    /// The device's interrupt.
    pub interrupt: Arc<Interrupt>,
}

/// One eventfd per virtqueue: written by KVM when the guest writes the queue's index to
/// QueueNotify (ioeventfd), or by the transport when ioeventfds are unavailable.
pub struct QueueEvents {
    evts: Vec<EventFd>,
}

impl QueueEvents {
    /// `n` fresh, non-blocking eventfds.
    pub fn new(n: usize) -> Result<QueueEvents> {
        let evts = (0..n)
            .map(|_| EventFd::new(libc::EFD_NONBLOCK))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| Error::Device(format!("queue eventfd: {e}")))?;
        Ok(QueueEvents { evts })
    }

    /// The eventfds, by queue index.
    pub fn as_slice(&self) -> &[EventFd] {
        &self.evts
    }

    /// Registers every queue's eventfd with the event loop (for a subscriber's `init`).
    pub fn register(&self, ops: &mut EventOps) {
        for evt in &self.evts {
            if let Err(e) = ops.add(Events::new(evt, EventSet::IN)) {
                tracing::error!("cannot watch a queue eventfd: {e}");
            }
        }
    }

    /// The queue whose eventfd fired, if `events` is one of them; its counter is drained.
    pub fn fired(&self, events: &Events) -> Option<usize> {
        let index = self
            .evts
            .iter()
            .position(|e| e.as_raw_fd() == events.fd())?;
        let _ = self.evts[index].read();
        Some(index)
    }

    /// Makes queue `index` look notified (after activation, so work queued before it runs).
    pub fn kick(&self, index: usize) {
        if let Some(evt) = self.evts.get(index) {
            let _ = evt.write(1);
        }
    }
}

/// A virtio device: its fixed identity (read once by the transport), its activation and
/// reset (called on a vCPU thread with the device locked), and, as a
/// [`MutEventSubscriber`], everything else (queue work, backend sockets, timers) on the
/// event loop.
pub trait VirtioDevice: MutEventSubscriber + Send {
    /// virtio device id (2 = block, 19 = vsock).
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Feature bits offered (VIRTIO_F_VERSION_1 is added by the transport).
    fn features(&self) -> u64;
    /// The device configuration space (read-only for the driver; fixed for the device's life).
    fn config_space(&self) -> Vec<u8>;
    /// The queue notification eventfds (one per queue, same order as `queue_max_sizes`).
    fn queue_events(&self) -> &QueueEvents;
    /// The features the driver accepted, told right before [`VirtioDevice::activate`]
    /// (a device whose behaviour depends on them keeps them; most ignore them).
    fn ack_features(&mut self, _features: u64) {}
    /// Starts the device once the driver set DRIVER_OK.
    fn activate(&mut self, activation: Activation) -> Result<()>;
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
