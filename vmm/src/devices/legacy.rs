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

/// ISA IRQ of the keyboard.
pub const I8042_KBD_IRQ: u32 = 1;

/// The debug-exit port.
pub const DEBUG_EXIT_PORT: u64 = 0x501;

/// i8042 controller commands (written to port 0x64).
const CMD_READ_CTR: u8 = 0x20;
const CMD_WRITE_CTR: u8 = 0x60;
const CMD_DISABLE_AUX: u8 = 0xa7;
const CMD_ENABLE_AUX: u8 = 0xa8;
const CMD_TEST_AUX: u8 = 0xa9;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_TEST_KBD: u8 = 0xab;
const CMD_DISABLE_KBD: u8 = 0xad;
const CMD_ENABLE_KBD: u8 = 0xae;
const CMD_READ_OUTPUT_PORT: u8 = 0xd0;
const CMD_WRITE_OUTPUT_PORT: u8 = 0xd1;
/// Status: output buffer full (a byte waits on port 0x60).
const STATUS_OUTPUT_FULL: u8 = 0x01;
/// Status: system flag (self-test passed).
const STATUS_SYSTEM: u8 = 0x04;
/// Status: last write was a command.
const STATUS_COMMAND: u8 = 0x08;
/// Status: keyboard not inhibited.
const STATUS_KBD_ENABLED: u8 = 0x10;
/// Keyboard reply: acknowledge.
const KBD_ACK: u8 = 0xfa;
/// Most bytes waiting on the data port (the guest reads them one by one).
const OUTPUT_QUEUE_MAX: usize = 16;

/// A minimal i8042 keyboard controller: enough for Linux's i8042/atkbd probe to finish
/// quickly (controller commands answer, keyboard commands are acknowledged) and for
/// `reboot=k`: command 0xFE ends the VM with [`ExitReason::I8042Reset`].
pub struct I8042 {
    exit: Arc<ExitNotifier>,
    /// Keyboard interrupt (IRQ 1), raised when a keyboard reply is queued.
    kbd_irq: Option<vmm_sys_util::eventfd::EventFd>,
    control: u8,
    status: u8,
    output: std::collections::VecDeque<u8>,
    /// A command waiting for its data byte on port 0x60.
    pending: Option<u8>,
}

impl I8042 {
    /// Creates the device reporting to `exit`, raising `kbd_irq` (IRQ 1) if given.
    pub fn new(exit: Arc<ExitNotifier>, kbd_irq: Option<vmm_sys_util::eventfd::EventFd>) -> Self {
        I8042 {
            exit,
            kbd_irq,
            // Keyboard interrupt enabled, system flag, translation on.
            control: 0x45,
            status: STATUS_SYSTEM | STATUS_KBD_ENABLED,
            output: std::collections::VecDeque::new(),
            pending: None,
        }
    }

    fn push_output(&mut self, byte: u8, keyboard: bool) {
        if self.output.len() < OUTPUT_QUEUE_MAX {
            self.output.push_back(byte);
        }
        self.status |= STATUS_OUTPUT_FULL;
        if keyboard && self.control & 0x01 != 0 {
            if let Some(irq) = &self.kbd_irq {
                let _ = irq.write(1);
            }
        }
    }

    fn command(&mut self, cmd: u8) {
        self.status |= STATUS_COMMAND;
        match cmd {
            CMD_READ_CTR => self.push_output(self.control, false),
            CMD_WRITE_CTR | CMD_WRITE_OUTPUT_PORT => self.pending = Some(cmd),
            CMD_SELF_TEST => self.push_output(0x55, false),
            CMD_TEST_KBD => self.push_output(0x00, false),
            // No auxiliary (mouse) port: its test reports a clock line stuck low.
            CMD_TEST_AUX => self.push_output(0x01, false),
            CMD_READ_OUTPUT_PORT => self.push_output(0x01, false),
            CMD_DISABLE_KBD => self.status &= !STATUS_KBD_ENABLED,
            CMD_ENABLE_KBD => self.status |= STATUS_KBD_ENABLED,
            CMD_DISABLE_AUX | CMD_ENABLE_AUX => {}
            I8042_CMD_RESET => {
                tracing::info!("guest reset the machine through the i8042");
                self.exit.report(Ok(ExitReason::I8042Reset));
            }
            _ => tracing::debug!(cmd, "unhandled i8042 command"),
        }
    }

    fn data(&mut self, byte: u8) {
        self.status &= !STATUS_COMMAND;
        match self.pending.take() {
            Some(CMD_WRITE_CTR) => self.control = byte,
            Some(CMD_WRITE_OUTPUT_PORT) => {
                // Bit 0 low pulses the CPU reset line.
                if byte & 1 == 0 {
                    self.exit.report(Ok(ExitReason::I8042Reset));
                }
            }
            // A byte for the keyboard: acknowledge every command.
            _ => self.push_output(KBD_ACK, true),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match offset {
            0 => {
                let byte = self.output.pop_front().unwrap_or(0);
                if self.output.is_empty() {
                    self.status &= !STATUS_OUTPUT_FULL;
                }
                byte
            }
            I8042_COMMAND_OFFSET => self.status,
            _ => 0xff,
        };
        data.fill(value);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&byte) = data.first() else {
            return;
        };
        match offset {
            0 => self.data(byte),
            I8042_COMMAND_OFFSET => self.command(byte),
            _ => {}
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

    fn status(dev: &mut I8042) -> u8 {
        let mut b = [0u8];
        dev.read(I8042_COMMAND_OFFSET, &mut b);
        b[0]
    }

    fn data(dev: &mut I8042) -> u8 {
        let mut b = [0u8];
        dev.read(0, &mut b);
        b[0]
    }

    #[test]
    fn i8042_reset_command_ends_the_vm() {
        let exit = Arc::new(ExitNotifier::new().unwrap());
        let mut dev = I8042::new(exit.clone(), None);
        assert_eq!(
            status(&mut dev) & 0x02,
            0,
            "input buffer empty: ready for commands"
        );
        dev.write(0, &[0xfe]);
        assert!(
            !exit.is_done(),
            "0xFE on the data port is a keyboard byte, not a reset"
        );
        dev.write(I8042_COMMAND_OFFSET, &[0xfe]);
        assert_eq!(exit.take().unwrap().unwrap(), ExitReason::I8042Reset);
    }

    #[test]
    fn i8042_answers_the_linux_probe() {
        let exit = Arc::new(ExitNotifier::new().unwrap());
        let irq = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut dev = I8042::new(exit.clone(), Some(irq.try_clone().unwrap()));
        assert_eq!(status(&mut dev) & STATUS_OUTPUT_FULL, 0);
        dev.write(I8042_COMMAND_OFFSET, &[CMD_READ_CTR]);
        assert_ne!(status(&mut dev) & STATUS_OUTPUT_FULL, 0);
        let ctr = data(&mut dev);
        assert_eq!(status(&mut dev) & STATUS_OUTPUT_FULL, 0, "buffer drained");
        dev.write(I8042_COMMAND_OFFSET, &[CMD_WRITE_CTR]);
        dev.write(0, &[ctr | 0x02]);
        dev.write(I8042_COMMAND_OFFSET, &[CMD_READ_CTR]);
        assert_eq!(data(&mut dev), ctr | 0x02);
        dev.write(I8042_COMMAND_OFFSET, &[CMD_SELF_TEST]);
        assert_eq!(data(&mut dev), 0x55);
        dev.write(0, &[0xf2]); // keyboard: identify
        assert_eq!(data(&mut dev), KBD_ACK);
        assert_eq!(irq.read().unwrap(), 1, "keyboard reply raises IRQ 1");
        for _ in 0..100 {
            dev.write(0, &[0xed]);
        }
        assert!(dev.output.len() <= OUTPUT_QUEUE_MAX, "bounded");
        // Output-port write with the reset bit low also resets.
        dev.write(I8042_COMMAND_OFFSET, &[CMD_WRITE_OUTPUT_PORT]);
        dev.write(0, &[0xfe]);
        assert_eq!(exit.take().unwrap().unwrap(), ExitReason::I8042Reset);
    }

    #[test]
    fn debug_exit_reports_status_and_first_report_wins() {
        let exit = Arc::new(ExitNotifier::new().unwrap());
        let mut dev = DebugExit::new(exit.clone());
        dev.write(0, &[42]);
        dev.write(0, &[7]);
        let reason = exit.take().unwrap().unwrap();
        assert_eq!(reason, ExitReason::DebugExit(42));
        assert_eq!(reason.exit_code(), 42);
        assert_eq!(ExitReason::DebugExit(250).exit_code(), 99);
    }
}
