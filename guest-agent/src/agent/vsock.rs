//! AF_VSOCK sockets, wrapped as `UnixStream` so the std stream API (timeouts, shutdown,
//! try_clone) applies: those calls are plain socket syscalls that work on any stream socket.

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::socket::{
    accept4, bind, connect, getpeername, listen, socket, AddressFamily, Backlog, SockFlag,
    SockType, VsockAddr,
};

/// The host's vsock context id.
pub const HOST_CID: u32 = 2;
/// Listen on any local CID.
const ANY_CID: u32 = u32::MAX;

fn new_socket() -> Result<std::os::fd::OwnedFd> {
    socket(
        AddressFamily::Vsock,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("create AF_VSOCK socket (is the guest kernel built with vsock?)")
}

/// Connects to the host's `port`, retrying until `deadline` (the vsock device may still be
/// probing when PID 1 starts).
pub fn connect_host(port: u32, timeout: Duration) -> Result<UnixStream> {
    let deadline = Instant::now() + timeout;
    loop {
        let fd = new_socket()?;
        match connect(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &VsockAddr::new(HOST_CID, port),
        ) {
            Ok(()) => return Ok(UnixStream::from(fd)),
            Err(e) if Instant::now() < deadline => {
                super::debug(&format!("connect to host port {port}: {e}; retrying"));
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e).with_context(|| format!("connect to host vsock port {port}")),
        }
    }
}

/// A listening vsock socket.
pub struct Listener {
    fd: std::os::fd::OwnedFd,
}

impl Listener {
    /// Listens on `port` of every local CID.
    pub fn bind(port: u32) -> Result<Listener> {
        let fd = new_socket()?;
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        bind(raw, &VsockAddr::new(ANY_CID, port)).context("bind vsock")?;
        listen(&fd, Backlog::new(16).expect("16 is a valid backlog")).context("listen vsock")?;
        Ok(Listener { fd })
    }

    /// Accepts the next connection from the host. A peer with another CID (the guest
    /// itself, through a loopback transport, or another VM) is hung up on and `None`
    /// returned: only the host may ask the agent for anything.
    pub fn accept(&self) -> Result<Option<UnixStream>> {
        let fd = accept4(&self.fd, SockFlag::SOCK_CLOEXEC).context("accept vsock")?;
        let peer = getpeername::<VsockAddr>(std::os::fd::AsRawFd::as_raw_fd(&fd))
            .context("peer of an accepted vsock connection")?;
        if !peer_is_host(&peer) {
            super::log(&format!(
                "refused a connection from vsock CID {} port {}: only the host (CID {HOST_CID}) \
                 may connect",
                peer.cid(),
                peer.port()
            ));
            return Ok(None);
        }
        Ok(Some(UnixStream::from(fd)))
    }
}

/// Whether a connection came from the host.
pub fn peer_is_host(peer: &VsockAddr) -> bool {
    peer.cid() == HOST_CID
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_host_cid_is_accepted() {
        assert!(peer_is_host(&VsockAddr::new(HOST_CID, 1234)));
        // VMADDR_CID_LOCAL, the hypervisor, a guest's own CID, another guest, any.
        for cid in [0, 1, 3, 4, 42, u32::MAX] {
            assert!(!peer_is_host(&VsockAddr::new(cid, 1234)), "CID {cid}");
        }
    }
}
