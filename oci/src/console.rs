//! The console-socket protocol runc's callers speak (`--console-socket PATH`): the runtime
//! connects to the Unix stream socket the caller listens on and sends one message whose
//! data is the terminal's name and whose SCM_RIGHTS control message carries the pty
//! master. containerd's shim and conmon then own the master; the runtime keeps no copy.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::error::{OciError, Result};

/// Longest terminal name sent or accepted.
const MAX_NAME: usize = 4096;

/// Connects to the caller's console socket at `path` and hands it `master`, named `name`.
pub fn send_master(path: &Path, master: BorrowedFd<'_>, name: &str) -> Result<()> {
    let stream = UnixStream::connect(path)
        .map_err(|e| OciError::io(format!("connect to console socket {}", path.display()), e))?;
    send_over(stream.as_raw_fd(), master, name)
        .map_err(|e| OciError::io(format!("send the terminal to {}", path.display()), e))
}

/// Sends `master` with `name` as the message data over a connected Unix socket.
pub fn send_over(sock: RawFd, master: BorrowedFd<'_>, name: &str) -> std::io::Result<()> {
    let fds = [master.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let data = name.as_bytes();
    let data = &data[..data.len().min(MAX_NAME)];
    let sent = sendmsg::<()>(sock, &[IoSlice::new(data)], &cmsg, MsgFlags::empty(), None)?;
    if sent != data.len() {
        return Err(std::io::Error::other("short write on the console socket"));
    }
    Ok(())
}

/// The receiving side (what containerd and conmon do): one message, one descriptor.
pub fn receive_master(sock: BorrowedFd<'_>) -> std::io::Result<(String, OwnedFd)> {
    let mut buf = vec![0u8; MAX_NAME];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [IoSliceMut::new(&mut buf)];
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
                // SAFETY: the kernel installed this descriptor in our table for us.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                fd.get_or_insert(owned);
            }
        }
    }
    let n = msg.bytes;
    let fd = fd.ok_or_else(|| std::io::Error::other("no descriptor on the console socket"))?;
    Ok((String::from_utf8_lossy(&buf[..n]).into_owned(), fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixListener;

    #[test]
    fn the_master_reaches_the_listener_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).unwrap();
        // A pipe stands in for the pty master: what matters is that the descriptor arrives.
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut r = std::fs::File::from(r);
        let sender = std::thread::spawn(move || send_master(&path, w.as_fd(), "/dev/pts/7"));
        let (conn, _) = listener.accept().unwrap();
        let (name, fd) = receive_master(conn.as_fd()).unwrap();
        sender.join().unwrap().unwrap();
        assert_eq!(name, "/dev/pts/7");
        let mut received = std::fs::File::from(fd);
        received.write_all(b"hi").unwrap();
        drop(received);
        let mut got = String::new();
        r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hi");
    }

    #[test]
    fn a_missing_socket_is_named() {
        let (_r, w) = nix::unistd::pipe().unwrap();
        let err = send_master(Path::new("/nonexistent/console.sock"), w.as_fd(), "x").unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/console.sock"),
            "{err}"
        );
    }
}
