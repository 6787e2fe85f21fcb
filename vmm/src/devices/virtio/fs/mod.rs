//! virtio-fs (device id 26) as a vhost-user frontend: the guest's FUSE requests are served
//! by a backend process (virtiofsd) that maps guest RAM (a shared memfd) and runs the
//! queues itself. The VMM never reads these queues: it hands the backend each ring's
//! addresses, the KVM ioeventfd of the queue as its kick, and an eventfd of its own as its
//! call, which the event loop turns into the virtio-mmio interrupt (InterruptStatus must
//! say "used ring" before the irqfd fires, so the backend cannot write the irqfd itself).
//!
//! Threads: `activate`/`reset` run on a vCPU thread, where the seccomp filter allows no
//! socket call; `activate` computes what to send (no system call) and wakes the event
//! loop, which sends it (sendmsg only: nothing on the loop waits for the backend). The
//! backend is only as trusted as the guest it serves: the memfd is sealed (it cannot
//! shrink it under the VMM), only memory and ring addresses checked against guest RAM are
//! sent, and the one exchange that waits for an answer (GET_FEATURES, at start-up) has a
//! deadline.
//!
//! A device reset only silences the device (the backend's calls no longer reach the
//! guest); starting it again after a reset is refused (DEVICE_NEEDS_RESET), because
//! stopping the backend's rings needs GET_VRING_BASE's answer, which the event loop must
//! not wait for. Linux resets the device only when its driver is unbound.

pub mod backend;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util_vhost::eventfd::EventFd as VhostEventFd;

use self::backend::{memory_table, ring_setup, vhost_eventfd, Backend, StartPlan, RING_FEATURES};
use super::{Activation, Interrupt, QueueEvents, VirtioDevice};
use crate::config::{FsConfig, MAX_FS_TAG_LEN};
use crate::error::{Error, Result};

/// virtio device id of a file system device.
pub const VIRTIO_ID_FS: u32 = 26;
/// Queues: one high-priority queue (FUSE interrupts and forgets) and one request queue.
pub const NUM_QUEUES: usize = 2;
/// Size of each queue.
pub const QUEUE_SIZE: u16 = 256;

/// What the event loop must tell the backend next.
enum Pending {
    Nothing,
    Start(StartPlan, Arc<Interrupt>),
}

/// A virtio-fs device backed by a vhost-user backend.
pub struct Fs {
    tag: String,
    backend: Backend,
    /// Queue notifications: KVM ioeventfds, handed to the backend as its kicks (not
    /// watched by the VMM).
    kicks: QueueEvents,
    kicks_for_backend: Vec<VhostEventFd>,
    /// The backend's "used buffers" signals, one per queue, watched by the event loop.
    calls: Vec<VhostEventFd>,
    /// Wakes the event loop when `pending` changed (written on a vCPU thread).
    wake: EventFd,
    pending: Pending,
    acked: u64,
    interrupt: Option<Arc<Interrupt>>,
    started: bool,
    /// The driver reset the device after starting it.
    was_reset: bool,
    /// The backend hung up or broke the protocol: the device stays silent.
    broken: bool,
}

impl Fs {
    /// Connects to the backend named by `config`.
    pub fn new(config: &FsConfig) -> Result<Fs> {
        config
            .validate()
            .map_err(|e| Error::Config(format!("--fs: {e}")))?;
        let backend = Backend::connect(&config.socket, NUM_QUEUES)?;
        Fs::with_backend(config.tag.clone(), backend)
    }

    /// Wraps a connected backend.
    pub fn with_backend(tag: String, backend: Backend) -> Result<Fs> {
        if tag.is_empty() || tag.len() > MAX_FS_TAG_LEN {
            return Err(Error::Config(format!(
                "virtio-fs tag {tag:?}: 1 to 36 bytes"
            )));
        }
        let kicks = QueueEvents::new(NUM_QUEUES)?;
        let kicks_for_backend = kicks
            .as_slice()
            .iter()
            .map(vhost_eventfd)
            .collect::<Result<Vec<_>>>()?;
        let calls = (0..NUM_QUEUES)
            .map(|_| VhostEventFd::new(libc::EFD_NONBLOCK))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| Error::Device(format!("virtio-fs call eventfd: {e}")))?;
        let wake = EventFd::new(libc::EFD_NONBLOCK)
            .map_err(|e| Error::Device(format!("virtio-fs eventfd: {e}")))?;
        Ok(Fs {
            tag,
            backend,
            kicks,
            kicks_for_backend,
            calls,
            wake,
            pending: Pending::Nothing,
            acked: 0,
            interrupt: None,
            started: false,
            was_reset: false,
            broken: false,
        })
    }

    /// Whether the backend has the rings.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Whether the backend hung up or failed (the device then stays silent).
    pub fn broken(&self) -> bool {
        self.broken
    }

    /// Does what `activate`/`reset` asked for (on the event loop).
    fn apply_pending(&mut self) {
        match std::mem::replace(&mut self.pending, Pending::Nothing) {
            Pending::Nothing => {}
            Pending::Start(plan, interrupt) => {
                if self.broken {
                    return;
                }
                match self
                    .backend
                    .start(&plan, &self.calls, &self.kicks_for_backend)
                {
                    Ok(()) => {
                        self.interrupt = Some(interrupt);
                        self.started = true;
                    }
                    Err(e) => self.fail(&format!("starting the rings: {e}")),
                }
            }
        }
    }

    fn fail(&mut self, why: &str) {
        tracing::error!(
            "virtio-fs {:?}: the vhost-user backend failed ({why}); the guest's file system \
             requests on this tag will not be answered",
            self.tag
        );
        self.broken = true;
    }

    /// The backend used buffers on queue `index`: raise the guest's interrupt.
    fn relay_call(&mut self, index: usize) {
        if let Some(call) = self.calls.get(index) {
            let _ = call.read();
        }
        if let Some(interrupt) = &self.interrupt {
            interrupt.signal_used();
        }
    }
}

impl VirtioDevice for Fs {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_FS
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE; NUM_QUEUES]
    }

    fn features(&self) -> u64 {
        self.backend.features() & RING_FEATURES
    }

    fn config_space(&self) -> Vec<u8> {
        // struct virtio_fs_config: tag[36] (NUL-padded, not terminated when 36 long),
        // le32 num_request_queues.
        let mut config = vec![0u8; MAX_FS_TAG_LEN + 4];
        config[..self.tag.len()].copy_from_slice(self.tag.as_bytes());
        config[MAX_FS_TAG_LEN..].copy_from_slice(&(NUM_QUEUES as u32 - 1).to_le_bytes());
        config
    }

    fn queue_events(&self) -> &QueueEvents {
        &self.kicks
    }

    fn ack_features(&mut self, features: u64) {
        self.acked = features;
    }

    fn activate(&mut self, activation: Activation) -> Result<()> {
        if self.was_reset {
            return Err(Error::Device(format!(
                "virtio-fs {:?}: starting the device again after a reset is not supported",
                self.tag
            )));
        }
        let Activation {
            mem,
            queues,
            interrupt,
        } = activation;
        if queues.len() != NUM_QUEUES || queues.iter().any(|q| !virtio_queue::QueueT::ready(q)) {
            return Err(Error::Device(format!(
                "virtio-fs {:?}: the driver must make both queues ready",
                self.tag
            )));
        }
        let plan = StartPlan {
            features: self.acked,
            regions: memory_table(&mem)?,
            rings: queues
                .iter()
                .map(|q| ring_setup(&mem, q))
                .collect::<Result<_>>()?,
        };
        self.pending = Pending::Start(plan, interrupt);
        self.wake
            .write(1)
            .map_err(|e| Error::Device(format!("virtio-fs wake-up: {e}")))
    }

    fn reset(&mut self) {
        self.pending = Pending::Nothing;
        self.interrupt = None;
        self.was_reset = true;
        self.started = false;
    }
}

impl MutEventSubscriber for Fs {
    fn init(&mut self, ops: &mut EventOps) {
        use std::os::fd::AsRawFd;
        let mut fds = vec![self.wake.as_raw_fd()];
        fds.extend(self.calls.iter().map(|c| c.as_raw_fd()));
        // Nothing arrives on the socket unasked: readable means hang-up or a broken
        // backend.
        fds.push(self.backend.socket().as_raw_fd());
        for fd in fds {
            if let Err(e) = ops.add(Events::new_raw(fd, EventSet::IN)) {
                tracing::error!("virtio-fs: cannot watch a descriptor: {e}");
            }
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        use std::os::fd::AsRawFd;
        let fd = events.fd();
        if fd == self.wake.as_raw_fd() {
            let _ = self.wake.read();
            self.apply_pending();
        } else if let Some(index) = self.calls.iter().position(|c| c.as_raw_fd() == fd) {
            self.relay_call(index);
        } else if fd == self.backend.socket().as_raw_fd() {
            let _ = ops.remove(Events::new(self.backend.socket(), EventSet::IN));
            self.fail("it closed the connection or sent an unrequested message");
        }
    }
}
