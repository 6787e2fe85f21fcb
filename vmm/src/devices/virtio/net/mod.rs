//! virtio-net with a TAP backend: queue 0 receives (TAP → guest), queue 1 transmits
//! (guest → TAP). Frames move between guest memory and the TAP with one `readv`/`writev`
//! each, header included (see [`tap`]); all of it on the event loop.
//!
//! Offloads: the device accepts partially checksummed and TSO frames from the guest
//! (`CSUM`, `HOST_TSO4/6`; the TAP takes them as they are), and offers the guest the same
//! on receive (`GUEST_CSUM`, `GUEST_TSO4/6`): what the driver accepts is told to the TAP
//! (`TUNSETOFFLOAD`) on the event loop after activation, so large segments cross the
//! TAP whole in both directions. Without `MRG_RXBUF`, a Linux driver that takes
//! `GUEST_TSO4` posts 64 KiB receive buffers.
//!
//! The guest is hostile: every chain is read once and checked ([`Chain::read`]); a transmit
//! chain must be readable only and between the header and [`MAX_FRAME`] bytes long, or it
//! is returned unused and dropped. Receive stops (the TAP is no longer watched) while the
//! guest has no buffers, and resumes when it adds some. Each event handles at most
//! [`BUDGET`] frames, so one busy queue cannot starve the other devices on the loop.
//!
//! System calls on the event loop thread: `readv`/`writev` on the TAP, one `ioctl`
//! (`TUNSETOFFLOAD`) per activation, `epoll_ctl` to watch or unwatch it; at start-up
//! (before any filter) `ioctl(TUNGETIFF|TUNSETIFF|TUNSETVNETHDRSZ)` and `fcntl`.

pub mod tap;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
    VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MTU,
};
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;

use super::chain::{self, Chain};
use super::{Activation, Interrupt, QueueEvents, VirtioDevice};
use crate::config::{NetConfig, TapSource};
use crate::error::{Error, Result};
pub use tap::{Tap, VNET_HDR_LEN};

/// virtio device id of a network card.
pub const VIRTIO_ID_NET: u32 = 1;
/// Size of both queues.
pub const QUEUE_SIZE: u16 = 256;
/// Index of the receive queue.
pub const RX: usize = 0;
/// Index of the transmit queue.
pub const TX: usize = 1;
/// Largest frame accepted from the guest, header included: a 64 KiB TSO segment plus
/// Ethernet and VLAN headers.
pub const MAX_FRAME: u64 = VNET_HDR_LEN as u64 + 65_535 + 18;
/// Frames handled per event before the loop serves others.
pub const BUDGET: usize = 256;

const fn bit(b: u32) -> u64 {
    1 << b
}

struct Active {
    mem: GuestMemoryMmap,
    rx: Queue,
    tx: Queue,
    interrupt: std::sync::Arc<Interrupt>,
}

/// Frames dropped, by cause (logged at debug level; the guest sees them as lost frames).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drops {
    /// Transmit chains refused (malformed, too short or too long).
    pub tx_refused: u64,
    /// Transmit frames the TAP did not take (its queue full).
    pub tx_busy: u64,
    /// Receive chains refused or frames that did not fit.
    pub rx_refused: u64,
}

/// What one receive pass ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxEnd {
    /// The TAP has nothing more to read.
    Drained,
    /// The guest has no receive buffer left: stop watching the TAP until it adds some.
    NoBuffers,
    /// [`BUDGET`] frames were delivered; more may be waiting.
    Budget,
}

/// A virtio-net device.
pub struct Net {
    tap: Tap,
    mac: [u8; 6],
    mtu: Option<u16>,
    evts: QueueEvents,
    active: Option<Active>,
    acked: u64,
    /// TUNSETOFFLOAD flags to apply on the event loop (negotiated on a vCPU thread).
    pending_offload: Option<u32>,
    tap_watched: bool,
    drops: Drops,
}

impl Net {
    /// Opens the TAP `config` names.
    pub fn new(config: &NetConfig) -> Result<Net> {
        let tap = match &config.tap {
            TapSource::Fd(fd) => Tap::from_inherited_fd(*fd),
            TapSource::Name(name) => Tap::open_named(name),
        }
        .map_err(|e| Error::Config(format!("--net: {e}")))?;
        Net::with_tap(tap, config.mac, config.mtu)
    }

    /// Wraps an open TAP.
    pub fn with_tap(tap: Tap, mac: [u8; 6], mtu: Option<u16>) -> Result<Net> {
        Ok(Net {
            tap,
            mac,
            mtu,
            evts: QueueEvents::new(2)?,
            active: None,
            acked: 0,
            pending_offload: None,
            tap_watched: true,
            drops: Drops::default(),
        })
    }

    /// Frames dropped so far.
    pub fn drops(&self) -> Drops {
        self.drops
    }

    /// TUNSETOFFLOAD flags for what the driver accepted on receive.
    fn offload_for(acked: u64) -> u32 {
        let mut flags = 0;
        if acked & bit(VIRTIO_NET_F_GUEST_CSUM) != 0 {
            flags |= tap::TUN_F_CSUM;
            if acked & bit(VIRTIO_NET_F_GUEST_TSO4) != 0 {
                flags |= tap::TUN_F_TSO4;
            }
            if acked & bit(VIRTIO_NET_F_GUEST_TSO6) != 0 {
                flags |= tap::TUN_F_TSO6;
            }
        }
        flags
    }

    fn apply_offload(&mut self) {
        if let Some(flags) = self.pending_offload.take() {
            if let Err(e) = self.tap.set_offload(flags) {
                tracing::warn!("virtio-net: TUNSETOFFLOAD {flags:#x}: {e}");
            }
        }
    }

    /// Moves frames from the TAP into the guest's receive buffers.
    pub fn receive(&mut self) -> RxEnd {
        let Some(active) = self.active.as_mut() else {
            return RxEnd::NoBuffers;
        };
        let mut delivered = false;
        let mut end = RxEnd::Budget;
        for _ in 0..BUDGET {
            let Some(desc_chain) = active.rx.pop_descriptor_chain(&active.mem) else {
                end = RxEnd::NoBuffers;
                break;
            };
            let head = desc_chain.head_index();
            let chain = match Chain::read(&active.rx, head, &active.mem) {
                Ok(c) if c.readable.is_empty() && c.writable_len() > VNET_HDR_LEN as u64 => c,
                other => {
                    if let Err(e) = other {
                        tracing::debug!("virtio-net: refusing receive chain: {e}");
                    }
                    self.drops.rx_refused += 1;
                    let _ = active.rx.add_used(&active.mem, head, 0);
                    delivered = true;
                    continue;
                }
            };
            let iov = match chain::iovecs(&active.mem, &chain.writable) {
                Ok(iov) => iov,
                Err(e) => {
                    tracing::debug!("virtio-net: receive buffer: {e}");
                    self.drops.rx_refused += 1;
                    let _ = active.rx.add_used(&active.mem, head, 0);
                    delivered = true;
                    continue;
                }
            };
            match self.tap.read_frame(&iov) {
                Ok(Some(n)) => {
                    // n <= the chain's writable length (the kernel wrote into it).
                    let _ = active.rx.add_used(&active.mem, head, n as u32);
                    delivered = true;
                }
                Ok(None) => {
                    // Nothing to read: the chain stays available for the next frame.
                    active.rx.go_to_previous_position();
                    end = RxEnd::Drained;
                    break;
                }
                Err(e) => {
                    // A frame that does not fit the guest's buffer is lost (EFAULT/EINVAL).
                    tracing::debug!("virtio-net: TAP read: {e}");
                    self.drops.rx_refused += 1;
                    let _ = active.rx.add_used(&active.mem, head, 0);
                    delivered = true;
                }
            }
        }
        if delivered {
            active.interrupt.signal_used();
        }
        end
    }

    /// Sends the guest's transmit chains to the TAP. Returns whether [`BUDGET`] ran out
    /// with chains left.
    pub fn transmit(&mut self) -> bool {
        let Some(active) = self.active.as_mut() else {
            return false;
        };
        let mut sent = false;
        let mut more = true;
        for _ in 0..BUDGET {
            let Some(desc_chain) = active.tx.pop_descriptor_chain(&active.mem) else {
                more = false;
                break;
            };
            let head = desc_chain.head_index();
            match Chain::read(&active.tx, head, &active.mem) {
                Ok(c)
                    if c.writable.is_empty()
                        && c.readable_len() > VNET_HDR_LEN as u64
                        && c.readable_len() <= MAX_FRAME =>
                {
                    match chain::iovecs(&active.mem, &c.readable)
                        .and_then(|iov| self.tap.write_frame(&iov))
                    {
                        Ok(true) => {}
                        Ok(false) => self.drops.tx_busy += 1,
                        Err(e) => {
                            tracing::debug!("virtio-net: TAP write: {e}");
                            self.drops.tx_refused += 1;
                        }
                    }
                }
                Ok(c) => {
                    tracing::debug!(
                        "virtio-net: refusing transmit chain of {} readable / {} writable bytes",
                        c.readable_len(),
                        c.writable_len()
                    );
                    self.drops.tx_refused += 1;
                }
                Err(e) => {
                    tracing::debug!("virtio-net: refusing transmit chain: {e}");
                    self.drops.tx_refused += 1;
                }
            }
            let _ = active.tx.add_used(&active.mem, head, 0);
            sent = true;
        }
        if sent {
            active.interrupt.signal_used();
        }
        more
    }

    fn watch_tap(&mut self, ops: &mut EventOps, watch: bool) {
        if self.tap_watched == watch {
            return;
        }
        let set = if watch {
            EventSet::IN
        } else {
            EventSet::empty()
        };
        match ops.modify(Events::new(&self.tap, set)) {
            Ok(()) => self.tap_watched = watch,
            Err(e) => tracing::warn!("virtio-net: cannot change the TAP's watch: {e}"),
        }
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        let mut f = bit(VIRTIO_NET_F_MAC)
            | bit(VIRTIO_NET_F_CSUM)
            | bit(VIRTIO_NET_F_HOST_TSO4)
            | bit(VIRTIO_NET_F_HOST_TSO6)
            | bit(VIRTIO_NET_F_GUEST_CSUM)
            | bit(VIRTIO_NET_F_GUEST_TSO4)
            | bit(VIRTIO_NET_F_GUEST_TSO6);
        if self.mtu.is_some() {
            f |= bit(VIRTIO_NET_F_MTU);
        }
        f
    }

    fn config_space(&self) -> Vec<u8> {
        // struct virtio_net_config: mac[6], status, max_virtqueue_pairs, mtu (le16 each).
        let mut config = Vec::with_capacity(12);
        config.extend_from_slice(&self.mac);
        config.extend_from_slice(&0u16.to_le_bytes());
        config.extend_from_slice(&1u16.to_le_bytes());
        config.extend_from_slice(&self.mtu.unwrap_or(0).to_le_bytes());
        config
    }

    fn queue_events(&self) -> &QueueEvents {
        &self.evts
    }

    fn ack_features(&mut self, features: u64) {
        self.acked = features;
    }

    fn activate(&mut self, activation: Activation) -> Result<()> {
        let Activation {
            mem,
            queues,
            interrupt,
        } = activation;
        let mut queues = queues.into_iter();
        let (Some(rx), Some(tx)) = (queues.next(), queues.next()) else {
            return Err(Error::Device("virtio-net: needs two queues".into()));
        };
        if !rx.ready() || !tx.ready() {
            return Err(Error::Device("virtio-net: queues not ready".into()));
        }
        self.active = Some(Active {
            mem,
            rx,
            tx,
            interrupt,
        });
        // Applied by the event loop: the transport kicks every queue after activation.
        self.pending_offload = Some(Net::offload_for(self.acked));
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
        self.acked = 0;
        self.pending_offload = Some(0);
    }
}

impl MutEventSubscriber for Net {
    fn init(&mut self, ops: &mut EventOps) {
        self.evts.register(ops);
        if let Err(e) = ops.add(Events::new(&self.tap, EventSet::IN)) {
            tracing::error!("virtio-net: cannot watch the TAP: {e}");
            self.tap_watched = false;
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        self.apply_offload();
        match self.evts.fired(&events) {
            Some(TX) => {
                if self.transmit() {
                    self.evts.kick(TX); // come back for the rest after the others
                }
            }
            Some(_) => {
                // New receive buffers: frames may have waited for them.
                self.watch_tap(ops, true);
                let end = self.receive();
                self.watch_tap(ops, end != RxEnd::NoBuffers);
            }
            None => {
                let end = self.receive();
                self.watch_tap(ops, end != RxEnd::NoBuffers);
            }
        }
        if self.drops != Drops::default() {
            tracing::trace!("virtio-net: drops so far {:?}", self.drops);
        }
    }
}

#[cfg(test)]
mod tests;
