//! Why a microVM stopped, and the one-shot notifier vCPUs and devices use to report it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

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

/// A one-shot, thread-safe "the VM is over" flag carrying the outcome.
#[derive(Debug, Default)]
pub struct ExitNotifier {
    done: AtomicBool,
    outcome: Mutex<Option<Outcome>>,
    cond: Condvar,
}

impl ExitNotifier {
    /// Creates a notifier nobody has reported to yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the outcome unless one was already recorded, and wakes the waiter.
    pub fn report(&self, outcome: Outcome) {
        let mut slot = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() && !self.done.load(Ordering::SeqCst) {
            *slot = Some(outcome);
            self.done.store(true, Ordering::SeqCst);
            self.cond.notify_all();
        }
    }

    /// Whether an outcome has been reported (cheap; checked by vCPUs after every exit).
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    /// Waits for an outcome, at most `timeout` if given; returns it (taking it out).
    pub fn wait(&self, timeout: Option<Duration>) -> Option<Outcome> {
        let mut slot = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        while slot.is_none() {
            match deadline {
                None => slot = self.cond.wait(slot).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = std::time::Instant::now();
                    if now >= deadline {
                        return None;
                    }
                    slot = self
                        .cond
                        .wait_timeout(slot, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        slot.take()
    }
}
