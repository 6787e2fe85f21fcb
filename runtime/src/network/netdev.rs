//! The few interface operations hull does itself, through ioctls on a socket (no netlink
//! library needed): read an interface's MTU, bring one down, delete a bridge, list a
//! bridge's ports. Everything else is done by the CNI plugins.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// `SIOCBRDELBR` from linux/sockios.h.
const SIOCBRDELBR: libc::c_ulong = 0x89a1;

/// `struct ifreq` with the union as an int/short (flags, mtu) plus padding to 40 bytes.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    value: libc::c_int,
    _pad: [u8; 20],
}

impl IfReq {
    fn new(name: &str) -> io::Result<IfReq> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', '\0']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad interface name {name:?}"),
            ));
        }
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            value: 0,
            _pad: [0; 20],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        Ok(req)
    }
}

fn control_socket() -> io::Result<OwnedFd> {
    nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)
}

fn ioctl(sock: &OwnedFd, request: libc::c_ulong, req: &mut IfReq) -> io::Result<()> {
    // SAFETY: `req` is an ifreq-sized buffer (40 bytes) that these interface ioctls read
    // and write; the socket is ours.
    if unsafe { libc::ioctl(sock.as_raw_fd(), request, req as *mut IfReq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether interface `name` exists in the caller's network namespace.
pub fn exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// The MTU of interface `name` in the calling thread's network namespace.
pub fn mtu(name: &str) -> io::Result<u32> {
    let sock = control_socket()?;
    let mut req = IfReq::new(name)?;
    ioctl(&sock, libc::SIOCGIFMTU, &mut req)?;
    Ok(req.value as u32)
}

/// The interfaces enslaved to bridge `name` (empty when it has none; error when it is not
/// a bridge or does not exist).
pub fn bridge_ports(name: &str) -> io::Result<Vec<String>> {
    let dir = Path::new("/sys/class/net").join(name).join("brif");
    let mut ports = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        ports.push(entry?.file_name().to_string_lossy().into_owned());
    }
    Ok(ports)
}

/// Brings bridge `name` down and deletes it.
pub fn delete_bridge(name: &str) -> io::Result<()> {
    let sock = control_socket()?;
    let mut req = IfReq::new(name)?;
    ioctl(&sock, libc::SIOCGIFFLAGS, &mut req)?;
    req.value &= !(libc::IFF_UP as libc::c_int);
    ioctl(&sock, libc::SIOCSIFFLAGS, &mut req)?;
    // SIOCBRDELBR takes the bare name, read as IFNAMSIZ bytes: our ifreq starts with it.
    // SAFETY: the ioctl reads IFNAMSIZ bytes of a NUL-terminated name from our buffer.
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCBRDELBR, req.name.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_any_ioctl() {
        assert!(IfReq::new("").is_err());
        assert!(IfReq::new("sixteen-chars-xx").is_err());
        assert!(IfReq::new("a/b").is_err());
        assert!(IfReq::new("eth0").is_ok());
    }

    #[test]
    fn loopback_mtu_reads() {
        // Every network namespace has lo; its MTU is 65536 on any recent kernel.
        assert!(mtu("lo").unwrap() >= 1500);
        assert!(mtu("no-such-if0").is_err());
    }
}
