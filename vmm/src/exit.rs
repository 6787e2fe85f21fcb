//! Why a microVM stopped, and the one-shot notifier vCPUs and devices use to report it.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use vmm_sys_util::eventfd::EventFd;

use crate::error::Error;

/// Exit status used when the guest triple-faults (KVM_EXIT_SHUTDOWN).
pub const EXIT_TRIPLE_FAULT: i32 = 100;
/// Largest status the guest can report through the debug-exit port.
pub const MAX_GUEST_STATUS: u8 = 99;

/// How the guest ended the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// The guest reset the machine through the i8042 controller (Linux `reboot=k`).
    I8042Reset,
    /// The guest wrote this status byte to the debug-exit port.
    DebugExit(u8),
    /// The guest triple-faulted (KVM_EXIT_SHUTDOWN).
    TripleFault,
}

impl ExitReason {
    /// The process exit code for this reason (docs/vmm.md, "Exit codes").
    pub fn exit_code(self) -> i32 {
        match self {
            ExitReason::I8042Reset => 0,
            ExitReason::DebugExit(status) => i32::from(status.min(MAX_GUEST_STATUS)),
            ExitReason::TripleFault => EXIT_TRIPLE_FAULT,
        }
    }
}

/// The first outcome reported wins; later reports are ignored.
pub type Outcome = std::result::Result<ExitReason, Error>;

/// A one-shot, thread-safe "the VM is over" flag carrying the outcome; a report also wakes
/// the event loop through an eventfd.
#[derive(Debug)]
pub struct ExitNotifier {
    done: AtomicBool,
    outcome: Mutex<Option<Outcome>>,
    wake: EventFd,
}

impl ExitNotifier {
    /// Creates a notifier nobody has reported to yet.
    pub fn new() -> std::io::Result<Self> {
        Ok(ExitNotifier {
            done: AtomicBool::new(false),
            outcome: Mutex::new(None),
            wake: EventFd::new(libc::EFD_NONBLOCK)?,
        })
    }

    /// Records the outcome unless one was already recorded, and wakes the event loop.
    pub fn report(&self, outcome: Outcome) {
        let mut slot = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() && !self.done.load(Ordering::SeqCst) {
            *slot = Some(outcome);
            self.done.store(true, Ordering::SeqCst);
            let _ = self.wake.write(1);
        }
    }

    /// Whether an outcome has been reported (cheap; checked by vCPUs after every exit).
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    /// The outcome, if one was reported (taken out: later calls return `None`).
    pub fn take(&self) -> Option<Outcome> {
        self.outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// A second handle on the wake-up eventfd, for the event loop to watch.
    pub fn wake_handle(&self) -> std::io::Result<EventFd> {
        self.wake.try_clone()
    }

    /// The wake-up eventfd's number (for the stop signal handler, which may only write(2)).
    pub fn wake_fd(&self) -> i32 {
        self.wake.as_raw_fd()
    }
}
