//! Legacy PIO devices through which the guest ends the VM: the i8042 reset line and a
//! debug-exit port (docs/vmm.md, "Ending the VM").

use std::sync::Arc;

use super::bus::BusDevice;
use crate::exit::{ExitNotifier, ExitReason};

/// Base port of the i8042 range (0x60 data .. 0x64 command/status).
pub const I8042_BASE: u64 = 0x60;
/// Length of the i8042 range.
pub const I8042_LEN: u64 = 5;
/// Offset of the command/status port (0x64) in the range.
const I8042_COMMAND_OFFSET: u64 = 4;
/// i8042 command "pulse the reset line".
const I8042_CMD_RESET: u8 = 0xfe;

/// The debug-exit port.
pub const DEBUG_EXIT_PORT: u64 = 0x501;

/// Just enough of an i8042 for Linux's `reboot=k`: reads say "ready, no data", command
/// 0xFE ends the VM with [`ExitReason::I8042Reset`].
pub struct I8042 {
    exit: Arc<ExitNotifier>,
}

impl I8042 {
    /// Creates the device reporting to `exit`.
    pub fn new(exit: Arc<ExitNotifier>) -> Self {
        I8042 { exit }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Status 0: input buffer empty (Linux's kb_wait loop ends), output buffer empty.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == I8042_COMMAND_OFFSET && data.first() == Some(&I8042_CMD_RESET) {
            tracing::info!("guest reset the machine through the i8042");
            self.exit.report(Ok(ExitReason::I8042Reset));
        }
    }
}

/// A write of byte N ends the VM with [`ExitReason::DebugExit`]`(N)`.
pub struct DebugExit {
    exit: Arc<ExitNotifier>,
}

impl DebugExit {
    /// Creates the device reporting to `exit`.
    pub fn new(exit: Arc<ExitNotifier>) -> Self {
        DebugExit { exit }
    }
}

impl BusDevice for DebugExit {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        if let Some(status) = data.first() {
            tracing::info!(status, "guest wrote the debug-exit port");
            self.exit.report(Ok(ExitReason::DebugExit(*status)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i8042_reset_command_ends_the_vm() {
        let exit = Arc::new(ExitNotifier::new());
        let mut dev = I8042::new(exit.clone());
        let mut status = [0xffu8];
        dev.read(I8042_COMMAND_OFFSET, &mut status);
        assert_eq!(status[0], 0, "controller reports ready");
        dev.write(0, &[0xfe]);
        assert!(!exit.is_done(), "0xFE on the data port is not a reset");
        dev.write(I8042_COMMAND_OFFSET, &[0xd1]);
        assert!(!exit.is_done());
        dev.write(I8042_COMMAND_OFFSET, &[0xfe]);
        assert_eq!(exit.wait(None).unwrap().unwrap(), ExitReason::I8042Reset);
    }

    #[test]
    fn debug_exit_reports_status_and_first_report_wins() {
        let exit = Arc::new(ExitNotifier::new());
        let mut dev = DebugExit::new(exit.clone());
        dev.write(0, &[42]);
        dev.write(0, &[7]);
        let reason = exit.wait(None).unwrap().unwrap();
        assert_eq!(reason, ExitReason::DebugExit(42));
        assert_eq!(reason.exit_code(), 42);
        assert_eq!(ExitReason::DebugExit(250).exit_code(), 99);
    }
}
