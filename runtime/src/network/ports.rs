//! Host ports for `-p`: each published port is bound (not listened on) by the process that
//! supervises the container, for as long as the container runs.
//!
//! The DNAT rules that publish a port (CNI portmap) hold no socket, so by themselves they
//! would let two containers, or a container and a host program, claim the same port, the
//! later one silently losing. Binding first (as podman's conmon does) makes a port in use
//! a clear error before anything is set up, keeps host programs off a published port, and
//! picks the port for `-p CONTAINERPORT` (host port 0). The sockets close by themselves
//! when the supervisor ends, however it ends.

use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn};
use serde::{Deserialize, Serialize};

use super::request::{PortMapping, Protocol};

/// A port as published: the host side resolved (address 0.0.0.0 = every address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    /// Host address.
    pub host_ip: Ipv4Addr,
    /// Host port (never 0).
    pub host_port: u16,
    /// Port in the container.
    pub container_port: u16,
    /// Protocol.
    pub protocol: Protocol,
}

impl std::fmt::Display for PublishedPort {
    /// docker's form: `0.0.0.0:8080->80/tcp`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}->{}/{}",
            self.host_ip,
            self.host_port,
            self.container_port,
            self.protocol.as_str()
        )
    }
}

/// The bound host sockets of a container's published ports (released on drop).
#[derive(Debug, Default)]
pub struct PortReservation {
    _sockets: Vec<OwnedFd>,
}

/// Binds every host port of `ports`. On error nothing stays bound, and the error names the
/// port: in use, or an address this host does not have.
pub fn reserve(ports: &[PortMapping]) -> Result<(PortReservation, Vec<PublishedPort>), String> {
    let mut sockets = Vec::with_capacity(ports.len());
    let mut published = Vec::with_capacity(ports.len());
    for p in ports {
        let ip = p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let kind = match p.protocol {
            Protocol::Tcp => SockType::Stream,
            Protocol::Udp => SockType::Datagram,
        };
        let name = format!("{ip}:{}/{}", p.host_port, p.protocol.as_str());
        let fd = socket::socket(AddressFamily::Inet, kind, SockFlag::SOCK_CLOEXEC, None)
            .map_err(|e| format!("host port {name}: socket: {e}"))?;
        let addr = SockaddrIn::from(std::net::SocketAddrV4::new(ip, p.host_port));
        socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr).map_err(|e| match e {
            nix::errno::Errno::EADDRINUSE => format!(
                "host port {name} is already in use (by a program on this host or another container)"
            ),
            nix::errno::Errno::EADDRNOTAVAIL => {
                format!("host address {ip} of -p {name} is not an address of this host")
            }
            nix::errno::Errno::EACCES => format!("host port {name}: permission denied"),
            other => format!("host port {name}: bind: {other}"),
        })?;
        let bound: SockaddrIn = socket::getsockname(std::os::fd::AsRawFd::as_raw_fd(&fd))
            .map_err(|e| format!("host port {name}: getsockname: {e}"))?;
        published.push(PublishedPort {
            host_ip: ip,
            host_port: bound.port(),
            container_port: p.container_port,
            protocol: p.protocol,
        });
        sockets.push(fd);
    }
    Ok((PortReservation { _sockets: sockets }, published))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(port: u16, protocol: Protocol) -> PortMapping {
        PortMapping {
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_port: port,
            container_port: 80,
            protocol,
        }
    }

    #[test]
    fn any_port_is_chosen_and_held() {
        let (held, published) = reserve(&[mapping(0, Protocol::Tcp)]).unwrap();
        let port = published[0].host_port;
        assert_ne!(port, 0);
        assert_eq!(
            published[0].to_string(),
            format!("127.0.0.1:{port}->80/tcp")
        );
        let e = reserve(&[mapping(port, Protocol::Tcp)]).unwrap_err();
        assert!(e.contains("already in use"), "{e}");
        assert!(
            reserve(&[mapping(port, Protocol::Udp)]).is_ok(),
            "udp is a separate port space"
        );
        drop(held);
        assert!(
            reserve(&[mapping(port, Protocol::Tcp)]).is_ok(),
            "released on drop"
        );
    }

    #[test]
    fn a_listener_makes_the_port_in_use_and_foreign_addresses_are_named() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(reserve(&[mapping(port, Protocol::Tcp)]).is_err());
        let mut foreign = mapping(0, Protocol::Tcp);
        foreign.host_ip = Some(Ipv4Addr::new(203, 0, 113, 9));
        let e = reserve(&[foreign]).unwrap_err();
        assert!(e.contains("not an address of this host"), "{e}");
    }
}
