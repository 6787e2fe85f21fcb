//! The virtio-mmio (version 2) transport: the register window the guest driver programs,
//! feature negotiation, queue setup and the device status state machine.

use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::{read_config_bytes, Activation, Interrupt, VirtioDevice, VIRTIO_F_VERSION_1};
use crate::devices::bus::BusDevice;

const MMIO_MAGIC: u32 = 0x7472_6976; // "virt"
const MMIO_VERSION: u32 = 2;
const VENDOR_ID: u32 = 0x4c4c_5548; // "HULL"

const REG_MAGIC: u64 = 0x000;
const REG_VERSION: u64 = 0x004;
const REG_DEVICE_ID: u64 = 0x008;
const REG_VENDOR_ID: u64 = 0x00c;
const REG_DEVICE_FEATURES: u64 = 0x010;
const REG_DEVICE_FEATURES_SEL: u64 = 0x014;
const REG_DRIVER_FEATURES: u64 = 0x020;
const REG_DRIVER_FEATURES_SEL: u64 = 0x024;
const REG_QUEUE_SEL: u64 = 0x030;
const REG_QUEUE_NUM_MAX: u64 = 0x034;
const REG_QUEUE_NUM: u64 = 0x038;
const REG_QUEUE_READY: u64 = 0x044;
/// Offset of the QueueNotify register (KVM ioeventfds are registered on it).
pub const REG_QUEUE_NOTIFY: u64 = 0x050;
const REG_INTERRUPT_STATUS: u64 = 0x060;
const REG_INTERRUPT_ACK: u64 = 0x064;
const REG_STATUS: u64 = 0x070;
const REG_QUEUE_DESC_LOW: u64 = 0x080;
const REG_QUEUE_DESC_HIGH: u64 = 0x084;
const REG_QUEUE_AVAIL_LOW: u64 = 0x090;
const REG_QUEUE_AVAIL_HIGH: u64 = 0x094;
const REG_QUEUE_USED_LOW: u64 = 0x0a0;
const REG_QUEUE_USED_HIGH: u64 = 0x0a4;
const REG_CONFIG_GENERATION: u64 = 0x0fc;
const REG_CONFIG: u64 = 0x100;

/// Device status bits.
pub const STATUS_ACKNOWLEDGE: u32 = 1;
/// Driver found.
pub const STATUS_DRIVER: u32 = 2;
/// Driver ready.
pub const STATUS_DRIVER_OK: u32 = 4;
/// Features negotiated.
pub const STATUS_FEATURES_OK: u32 = 8;
/// Something went wrong on the device side.
pub const STATUS_DEVICE_NEEDS_RESET: u32 = 0x40;
/// The driver gave up.
pub const STATUS_FAILED: u32 = 0x80;

/// QueueNotify writes that reached the VMM (process-wide): zero while KVM's ioeventfds take
/// them all, which the direct-KVM tests check.
static NOTIFY_EXITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many QueueNotify writes reached the VMM instead of an ioeventfd, in this process.
pub fn notify_exits() -> u64 {
    NOTIFY_EXITS.load(std::sync::atomic::Ordering::Relaxed)
}

/// A shared handle to a virtio device (the transport and the event loop both hold one).
pub type SharedVirtioDevice = Arc<Mutex<dyn VirtioDevice>>;

/// A virtio device behind its MMIO register window.
pub struct MmioTransport {
    device: SharedVirtioDevice,
    // The device's fixed identity, read once so register reads never wait for the device
    // (which the event loop holds while it works).
    device_type: u32,
    queue_max_sizes: Vec<u16>,
    offered_features: u64,
    config_space: Vec<u8>,
    /// Duplicates of the device's queue eventfds: a QueueNotify write that reaches the VMM
    /// (no ioeventfd registered) is forwarded through them.
    notify: Vec<EventFd>,
    mem: GuestMemoryMmap,
    interrupt: Arc<Interrupt>,
    queues: Vec<Queue>,
    queue_sel: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    status: u32,
    activated: bool,
}

impl MmioTransport {
    /// Puts `device` behind a transport raising `irq`.
    pub fn new(
        device: SharedVirtioDevice,
        mem: GuestMemoryMmap,
        irq: EventFd,
    ) -> crate::error::Result<Self> {
        let (device_type, queue_max_sizes, offered_features, config_space, notify) = {
            let d = device.lock().unwrap_or_else(|e| e.into_inner());
            let notify = d
                .queue_events()
                .as_slice()
                .iter()
                .map(|e| e.try_clone())
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(|e| crate::error::Error::Device(format!("queue eventfd: {e}")))?;
            (
                d.device_type(),
                d.queue_max_sizes().to_vec(),
                d.features() | VIRTIO_F_VERSION_1,
                d.config_space(),
                notify,
            )
        };
        let queues = fresh_queues(&queue_max_sizes);
        Ok(MmioTransport {
            device,
            device_type,
            queue_max_sizes,
            offered_features,
            config_space,
            notify,
            mem,
            interrupt: Arc::new(Interrupt::new(irq)),
            queues,
            queue_sel: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            status: 0,
            activated: false,
        })
    }

    fn device_features(&self) -> u64 {
        self.offered_features
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        // Queue registers may change only before DRIVER_OK.
        if self.status & STATUS_DRIVER_OK != 0 {
            return None;
        }
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn lock_device(&self) -> std::sync::MutexGuard<'_, dyn VirtioDevice + 'static> {
        self.device.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reset(&mut self) {
        if self.activated {
            self.lock_device().reset();
        }
        self.activated = false;
        self.queues = fresh_queues(&self.queue_max_sizes);
        self.queue_sel = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.status = 0;
        self.interrupt.reset();
    }

    fn set_status(&mut self, new: u32) {
        if new == 0 {
            self.reset();
            return;
        }
        // The driver only adds bits (virtio 1.2, 3.1.1); anything else is a broken driver.
        if new & self.status != self.status {
            tracing::warn!(old = self.status, new, "virtio driver cleared status bits");
            self.status |= STATUS_FAILED;
            return;
        }
        let added = new & !self.status;
        if added & STATUS_FEATURES_OK != 0 {
            let ok = self.driver_features & !self.device_features() == 0
                && self.driver_features & VIRTIO_F_VERSION_1 != 0;
            if !ok {
                tracing::warn!(
                    features = self.driver_features,
                    "virtio driver accepted unoffered features or not VERSION_1"
                );
                // FEATURES_OK stays clear: the driver sees the refusal.
                self.status = new & !STATUS_FEATURES_OK;
                return;
            }
        }
        self.status = new;
        if added & STATUS_DRIVER_OK != 0 && !self.activated {
            self.activate();
        }
    }

    fn activate(&mut self) {
        if self.status & STATUS_FEATURES_OK == 0 {
            self.status |= STATUS_DEVICE_NEEDS_RESET;
            return;
        }
        let invalid = self
            .queues
            .iter()
            .enumerate()
            .find(|(_, q)| q.ready() && !q.is_valid(&self.mem));
        if let Some((i, _)) = invalid {
            tracing::warn!(queue = i, "virtio queue outside guest memory or misaligned");
            self.status |= STATUS_DEVICE_NEEDS_RESET;
            return;
        }
        let activation = Activation {
            mem: self.mem.clone(),
            queues: self.queues.iter().map(copy_queue).collect(),
            interrupt: self.interrupt.clone(),
        };
        let features = self.driver_features;
        let activated = {
            let mut device = self.lock_device();
            device.ack_features(features);
            device.activate(activation)
        };
        match activated {
            Ok(()) => {
                self.activated = true;
                // Buffers the driver queued before DRIVER_OK are looked at now.
                for evt in &self.notify {
                    let _ = evt.write(1);
                }
            }
            Err(e) => {
                tracing::warn!("virtio device activation failed: {e}");
                self.status |= STATUS_DEVICE_NEEDS_RESET;
            }
        }
    }

    fn read_reg(&self, offset: u64) -> u32 {
        match offset {
            REG_MAGIC => MMIO_MAGIC,
            REG_VERSION => MMIO_VERSION,
            REG_DEVICE_ID => self.device_type,
            REG_VENDOR_ID => VENDOR_ID,
            REG_DEVICE_FEATURES => match self.device_features_sel {
                0 => self.device_features() as u32,
                1 => (self.device_features() >> 32) as u32,
                _ => 0,
            },
            REG_QUEUE_NUM_MAX => self
                .queues
                .get(self.queue_sel as usize)
                .map(|q| u32::from(q.max_size()))
                .unwrap_or(0),
            REG_QUEUE_READY => self
                .queues
                .get(self.queue_sel as usize)
                .map(|q| u32::from(q.ready()))
                .unwrap_or(0),
            REG_INTERRUPT_STATUS => self.interrupt.status(),
            REG_STATUS => self.status,
            REG_CONFIG_GENERATION => 0,
            _ => 0,
        }
    }

    fn write_reg(&mut self, offset: u64, value: u32) {
        let driver_ok = self.status & STATUS_DRIVER_OK != 0;
        match offset {
            REG_DEVICE_FEATURES_SEL => self.device_features_sel = value,
            REG_DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            REG_DRIVER_FEATURES if self.status & STATUS_FEATURES_OK == 0 => {
                match self.driver_features_sel {
                    0 => {
                        self.driver_features =
                            (self.driver_features & !0xffff_ffff) | u64::from(value)
                    }
                    1 => {
                        self.driver_features =
                            (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32)
                    }
                    _ => {}
                }
            }
            REG_QUEUE_SEL => self.queue_sel = value,
            REG_QUEUE_NUM => {
                if let Some(q) = self.selected_queue() {
                    // Invalid sizes (0, > max, not a power of two) are refused by the queue,
                    // which then fails validation at DRIVER_OK.
                    let _ = q.try_set_size(value.min(u32::from(u16::MAX)) as u16);
                }
            }
            REG_QUEUE_READY => {
                if let Some(q) = self.selected_queue() {
                    q.set_ready(value == 1);
                }
            }
            REG_QUEUE_DESC_LOW => {
                if let Some(q) = self.selected_queue() {
                    q.set_desc_table_address(Some(value), None)
                }
            }
            REG_QUEUE_DESC_HIGH => {
                if let Some(q) = self.selected_queue() {
                    q.set_desc_table_address(None, Some(value))
                }
            }
            REG_QUEUE_AVAIL_LOW => {
                if let Some(q) = self.selected_queue() {
                    q.set_avail_ring_address(Some(value), None)
                }
            }
            REG_QUEUE_AVAIL_HIGH => {
                if let Some(q) = self.selected_queue() {
                    q.set_avail_ring_address(None, Some(value))
                }
            }
            REG_QUEUE_USED_LOW => {
                if let Some(q) = self.selected_queue() {
                    q.set_used_ring_address(Some(value), None)
                }
            }
            REG_QUEUE_USED_HIGH => {
                if let Some(q) = self.selected_queue() {
                    q.set_used_ring_address(None, Some(value))
                }
            }
            REG_QUEUE_NOTIFY => {
                // Only reached without an ioeventfd for this value (KVM lacks ioeventfds, or
                // the value names no queue): forward it the way KVM would have.
                NOTIFY_EXITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Some(evt) = self.notify.get(value as usize) {
                    let _ = evt.write(1);
                }
            }
            REG_INTERRUPT_ACK => self.interrupt.ack(value),
            REG_STATUS => self.set_status(value),
            _ => {
                tracing::debug!(
                    offset,
                    value,
                    driver_ok,
                    "ignored virtio-mmio register write"
                );
            }
        }
    }
}

fn fresh_queues(max_sizes: &[u16]) -> Vec<Queue> {
    max_sizes
        .iter()
        .map(|max| Queue::new(*max).expect("queue max sizes are powers of two"))
        .collect()
}

/// A copy of a queue's driver-programmed configuration (Queue is not Clone).
fn copy_queue(q: &Queue) -> Queue {
    let mut copy = Queue::new(q.max_size()).expect("max size was valid for the original");
    copy.set_size(q.size());
    let split = |a: u64| (Some(a as u32), Some((a >> 32) as u32));
    let (lo, hi) = split(q.desc_table());
    copy.set_desc_table_address(lo, hi);
    let (lo, hi) = split(q.avail_ring());
    copy.set_avail_ring_address(lo, hi);
    let (lo, hi) = split(q.used_ring());
    copy.set_used_ring_address(lo, hi);
    copy.set_ready(q.ready());
    copy
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= REG_CONFIG {
            read_config_bytes(&self.config_space, offset - REG_CONFIG, data);
            return;
        }
        // Registers are 32-bit and must be accessed as such.
        if data.len() != 4 || offset % 4 != 0 {
            data.fill(0);
            return;
        }
        data.copy_from_slice(&self.read_reg(offset).to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= REG_CONFIG {
            return; // configuration spaces here are read-only
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return;
        };
        if offset % 4 != 0 {
            return;
        }
        self.write_reg(offset, u32::from_le_bytes(bytes));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::devices::virtio::QueueEvents;
    use crate::error::Result;
    use event_manager::{EventOps, Events, MutEventSubscriber};

    /// A device recording what the transport does to it.
    pub struct Probe {
        pub log: Arc<Mutex<Vec<String>>>,
        evts: QueueEvents,
    }

    impl MutEventSubscriber for Probe {
        fn init(&mut self, _ops: &mut EventOps) {}
        fn process(&mut self, _events: Events, _ops: &mut EventOps) {}
    }

    impl VirtioDevice for Probe {
        fn device_type(&self) -> u32 {
            42
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16, 16]
        }
        fn features(&self) -> u64 {
            1 << 5
        }
        fn config_space(&self) -> Vec<u8> {
            vec![1, 2, 3, 4]
        }
        fn queue_events(&self) -> &QueueEvents {
            &self.evts
        }
        fn activate(&mut self, a: Activation) -> Result<()> {
            self.log
                .lock()
                .unwrap()
                .push(format!("activate {}", a.queues.len()));
            Ok(())
        }
        fn reset(&mut self) {
            self.log.lock().unwrap().push("reset".into());
        }
    }

    /// Reads (and clears) each queue eventfd's counter; 0 when it was not written.
    fn notified(t: &MmioTransport) -> Vec<u64> {
        t.notify.iter().map(|e| e.read().unwrap_or(0)).collect()
    }

    fn rd(t: &mut MmioTransport, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    }
    fn wr(t: &mut MmioTransport, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes());
    }

    /// What the test keeps of the probe.
    pub struct ProbeHandle {
        pub log: Arc<Mutex<Vec<String>>>,
    }

    fn transport() -> (MmioTransport, ProbeHandle) {
        let mem = crate::memory::create_guest_memory(16).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let probe = Probe {
            log: log.clone(),
            evts: QueueEvents::new(2).unwrap(),
        };
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let t = MmioTransport::new(Arc::new(Mutex::new(probe)), mem, irq).unwrap();
        (t, ProbeHandle { log })
    }

    fn setup_queue(t: &mut MmioTransport, sel: u32, base: u64) {
        wr(t, REG_QUEUE_SEL, sel);
        wr(t, REG_QUEUE_NUM, 16);
        wr(t, REG_QUEUE_DESC_LOW, base as u32);
        wr(t, REG_QUEUE_AVAIL_LOW, (base + 0x1000) as u32);
        wr(t, REG_QUEUE_USED_LOW, (base + 0x2000) as u32);
        wr(t, REG_QUEUE_READY, 1);
    }

    #[test]
    fn identification_registers() {
        let (mut t, _) = transport();
        assert_eq!(rd(&mut t, REG_MAGIC), MMIO_MAGIC);
        assert_eq!(rd(&mut t, REG_VERSION), 2);
        assert_eq!(rd(&mut t, REG_DEVICE_ID), 42);
        wr(&mut t, REG_DEVICE_FEATURES_SEL, 1);
        assert_eq!(rd(&mut t, REG_DEVICE_FEATURES), 1, "VERSION_1 offered");
        wr(&mut t, REG_DEVICE_FEATURES_SEL, 0);
        assert_eq!(rd(&mut t, REG_DEVICE_FEATURES), 1 << 5);
        assert_eq!(rd(&mut t, REG_QUEUE_NUM_MAX), 16);
        wr(&mut t, REG_QUEUE_SEL, 9);
        assert_eq!(rd(&mut t, REG_QUEUE_NUM_MAX), 0, "no such queue");
        let mut cfg = [0u8; 2];
        t.read(REG_CONFIG + 2, &mut cfg);
        assert_eq!(cfg, [3, 4]);
        let mut odd = [0xffu8; 2];
        t.read(REG_MAGIC, &mut odd);
        assert_eq!(odd, [0, 0], "sub-word register reads are refused");
    }

    #[test]
    fn full_negotiation_activates_and_notifies() {
        let (mut t, probe) = transport();
        wr(&mut t, REG_STATUS, STATUS_ACKNOWLEDGE);
        wr(&mut t, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        wr(&mut t, REG_DRIVER_FEATURES_SEL, 1);
        wr(&mut t, REG_DRIVER_FEATURES, 1);
        let s = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK;
        wr(&mut t, REG_STATUS, s);
        assert_eq!(rd(&mut t, REG_STATUS), s);
        setup_queue(&mut t, 0, 0x10000);
        setup_queue(&mut t, 1, 0x20000);
        assert!(probe.log.lock().unwrap().is_empty());
        wr(&mut t, REG_STATUS, s | STATUS_DRIVER_OK);
        assert_eq!(notified(&t), [1, 1], "activation looks at every queue once");
        // Without an ioeventfd, a QueueNotify write is forwarded to that queue's eventfd.
        wr(&mut t, REG_QUEUE_NOTIFY, 1);
        wr(&mut t, REG_QUEUE_NOTIFY, 7);
        assert_eq!(notified(&t), [0, 1], "queue 1 notified; no queue 7");
        wr(&mut t, REG_STATUS, 0);
        assert_eq!(*probe.log.lock().unwrap(), ["activate 2", "reset"]);
        assert_eq!(rd(&mut t, REG_STATUS), 0);
    }

    #[test]
    fn unoffered_features_are_refused() {
        let (mut t, probe) = transport();
        wr(&mut t, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        wr(&mut t, REG_DRIVER_FEATURES, 1 << 7); // not offered, and no VERSION_1
        wr(
            &mut t,
            REG_STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
        );
        assert_eq!(rd(&mut t, REG_STATUS) & STATUS_FEATURES_OK, 0);
        wr(
            &mut t,
            REG_STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_DRIVER_OK,
        );
        assert!(probe.log.lock().unwrap().is_empty(), "not activated");
        assert_ne!(rd(&mut t, REG_STATUS) & STATUS_DEVICE_NEEDS_RESET, 0);
    }

    #[test]
    fn queue_outside_guest_memory_is_not_activated() {
        let (mut t, probe) = transport();
        wr(&mut t, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        wr(&mut t, REG_DRIVER_FEATURES_SEL, 1);
        wr(&mut t, REG_DRIVER_FEATURES, 1);
        let s = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK;
        wr(&mut t, REG_STATUS, s);
        setup_queue(&mut t, 0, 0x10000);
        wr(&mut t, REG_QUEUE_SEL, 1);
        wr(&mut t, REG_QUEUE_NUM, 16);
        wr(&mut t, REG_QUEUE_DESC_HIGH, 0x10); // 64 GiB: outside the 16 MiB guest
        wr(&mut t, REG_QUEUE_READY, 1);
        wr(&mut t, REG_STATUS, s | STATUS_DRIVER_OK);
        assert!(probe.log.lock().unwrap().is_empty());
        assert_ne!(rd(&mut t, REG_STATUS) & STATUS_DEVICE_NEEDS_RESET, 0);
    }
}
