//! The VMM's one event loop: rust-vmm's event-manager (epoll) on the main thread. Devices are
//! subscribers (their queue eventfds, backend sockets and timers); the [`Wakeup`] subscriber
//! lets the end of the VM and stop signals interrupt the wait. Nothing here wakes on a
//! timer of its own: every wait is for an fd, or for a caller's deadline.
//!
//! Why event-manager rather than a bare `vmm_sys_util::epoll`: it keeps the fd → device
//! dispatch table and lets each device add and remove its own fds while it handles an
//! event (vsock connections come and go), which is the part every device would otherwise
//! re-implement; Firecracker's devices are written against the same crate.

use std::sync::{Arc, Mutex};

use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber};
use vmm_sys_util::eventfd::EventFd;

use crate::error::{Error, Result};

/// What the event loop holds: any subscriber, shared with whoever else needs it.
pub type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// The event loop.
pub type EventLoop = EventManager<Subscriber>;

/// Creates an empty event loop.
pub fn new_event_loop() -> Result<EventLoop> {
    EventManager::new().map_err(|e| Error::Device(format!("event loop: {e}")))
}

/// An eventfd whose only job is to end the loop's current wait.
pub struct Wakeup(pub EventFd);

impl MutEventSubscriber for Wakeup {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.0, EventSet::IN)) {
            tracing::error!("cannot watch the wake-up eventfd: {e}");
        }
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.0.read();
    }
}
