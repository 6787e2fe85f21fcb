//! Terminal sizes for `-t`. The pseudo-terminal itself is created *inside* the container by
//! the executor (from the container's own devpts), and its master end comes back to hull
//! over the sync socket, as runc's console socket does.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use crate::isolation::WinSize;

/// Sets a terminal's window size.
pub fn set_size(fd: &impl AsRawFd, size: WinSize) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct from our stack.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The window size of a terminal, if `fd` is one.
pub fn get_size(fd: RawFd) -> Option<WinSize> {
    // SAFETY: winsize is plain data.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize struct to our stack.
    if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } < 0 || ws.ws_row == 0 || ws.ws_col == 0
    {
        return None;
    }
    Some(WinSize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}
