//! Terminals for `-t`: the pseudo-terminal is created *inside* the container (from its
//! own devpts instance), so `tty` and `/proc/self/fd/0` name a device the container can
//! see; the master end is sent to the host side over the sync socket (SCM_RIGHTS), as
//! runc's console socket does.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::isolation::WinSize;

/// Creates a pty in the current mount namespace, makes its slave the controlling
/// terminal and fds 0-2 of the calling process (in a new session), and returns the
/// master.
pub fn open_in_container(size: WinSize) -> io::Result<OwnedFd> {
    let master = nix::pty::posix_openpt(
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC,
    )?;
    nix::pty::grantpt(&master)?;
    nix::pty::unlockpt(&master)?;
    let name = nix::pty::ptsname_r(&master)?;
    let slave = nix::fcntl::open(
        name.as_str(),
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    set_size(&slave, size)?;
    nix::unistd::setsid()?;
    // SAFETY: TIOCSCTTY on a pty slave fd we own, argument 0 (do not steal).
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    for target in 0..3 {
        // SAFETY: duplicating a valid fd onto 0-2, which we own as the process's stdio.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: into_raw_fd gives up PtyMaster's ownership of the fd, which we take over.
    Ok(unsafe { OwnedFd::from_raw_fd(master.into_raw_fd()) })
}

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

/// Sends `fd` with a one-byte tag over a unix socket.
pub fn send_fd(sock: BorrowedFd<'_>, tag: u8, fd: BorrowedFd<'_>) -> io::Result<()> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let buf = [tag];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(&buf)],
        &cmsg,
        MsgFlags::empty(),
        None,
    )?;
    Ok(())
}

/// Receives one message (up to `buf.len()` bytes) and any fd sent with it.
pub fn recv_with_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other?,
        }
    };
    let mut fd = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for raw in fds {
                // SAFETY: the kernel installed this fd in our table for us.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                if fd.is_none() {
                    fd = Some(owned);
                }
            }
        }
    }
    Ok((msg.bytes, fd))
}
