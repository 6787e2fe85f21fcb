//! The start gate both models park a created container at: a FIFO in its state directory
//! (runc's exec.fifo). The waiting side (the process model's init, the vm model's keeper)
//! blocks in its open for writing until `start` opens the FIFO for reading, then reports
//! through it: one byte (process) or "ok"/the error (vm).

use std::fs;
use std::os::unix::fs::OpenOptionsExt;

use crate::error::{OciError, Result};
use crate::state::Locked;

/// The gate's name in the state directory.
pub const GATE: &str = "exec.fifo";

/// Makes the gate (`create`).
pub fn make(dir: &Locked) -> Result<()> {
    let gate = dir.file(GATE);
    nix::unistd::mkfifo(&gate, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| OciError::io(format!("create {}", gate.display()), e))
}

/// Opens the gate for reading without blocking (`start`): the waiting side's open returns.
/// The gate's name is removed at once, so it opens only once.
pub fn open(dir: &Locked) -> Result<fs::File> {
    let gate = dir.file(GATE);
    let fifo = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&gate)
        .map_err(|e| OciError::io(format!("open {}", gate.display()), e))?;
    let _ = fs::remove_file(&gate);
    Ok(fifo)
}

/// Removes the gate, if still there (`destroy`).
pub fn remove(dir: &Locked) {
    let _ = fs::remove_file(dir.file(GATE));
}
