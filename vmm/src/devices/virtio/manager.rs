//! Puts virtio devices on the MMIO bus: one 4 KiB register window and one IRQ per device,
//! an irqfd for its interrupt, a KVM ioeventfd per queue on its QueueNotify register (with
//! the queue index as datamatch), and the device itself on the event loop.

use std::sync::{Arc, Mutex};

use kvm_ioctls::IoEventAddress;
use vm_memory::GuestMemoryMmap;

use super::mmio::{MmioTransport, REG_QUEUE_NOTIFY};
use super::VirtioDevice;
use crate::config::MAX_VIRTIO_DEVICES;
use crate::devices::bus::Bus;
use crate::error::{Error, Result};
use crate::event_loop::EventLoop;
use crate::memory::{VIRTIO_MMIO_BASE, VIRTIO_MMIO_SIZE};
use crate::vm::Vm;
use event_manager::SubscriberOps;

/// IRQ of the first virtio device (the n-th gets FIRST_VIRTIO_IRQ + n).
pub const FIRST_VIRTIO_IRQ: u32 = 5;

/// The virtio-mmio devices of a VM, in slot order.
#[derive(Default)]
pub struct VirtioMmioDevices {
    slots: Vec<(u64, u32)>,
}

impl VirtioMmioDevices {
    /// No devices yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// (MMIO base, IRQ) of each device, for the kernel command line.
    pub fn slots(&self) -> &[(u64, u32)] {
        &self.slots
    }

    /// Attaches `device` in the next free slot and returns the shared handle.
    pub fn attach<D: VirtioDevice + 'static>(
        &mut self,
        vm: &Vm,
        mem: &GuestMemoryMmap,
        mmio: &mut Bus,
        events: &mut EventLoop,
        device: D,
    ) -> Result<Arc<Mutex<D>>> {
        let n = self.slots.len();
        if n >= MAX_VIRTIO_DEVICES {
            return Err(Error::Config(format!(
                "at most {MAX_VIRTIO_DEVICES} virtio devices"
            )));
        }
        let addr = VIRTIO_MMIO_BASE + n as u64 * VIRTIO_MMIO_SIZE;
        let irq = FIRST_VIRTIO_IRQ + n as u32;
        if vm.ioeventfds {
            for (index, evt) in device.queue_events().as_slice().iter().enumerate() {
                vm.fd
                    .register_ioevent(
                        evt,
                        &IoEventAddress::Mmio(addr + REG_QUEUE_NOTIFY),
                        index as u32,
                    )
                    .map_err(crate::error::kvm("KVM_IOEVENTFD"))?;
            }
        }
        let device = Arc::new(Mutex::new(device));
        let transport = MmioTransport::new(device.clone(), mem.clone(), vm.irqfd(irq)?)?;
        mmio.insert(addr, VIRTIO_MMIO_SIZE, Arc::new(Mutex::new(transport)))?;
        events.add_subscriber(device.clone());
        self.slots.push((addr, irq));
        Ok(device)
    }
}
