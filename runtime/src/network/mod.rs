//! Container networking, the same for both isolation models.
//!
//! ```text
//!  run flags ──► request (NetworkSpec, saved with the container's spec)
//!                   │  at each start, by the supervisor:
//!                   ▼
//!  attach::setup ── ports: bind the published host ports (held while the container runs)
//!                ── netns: a new network namespace pinned at STATE_DIR/netns
//!                ── cni: loopback on lo; bridge (+host-local) → portmap → firewall on eth0
//!                ── etc: resolv.conf, hosts, hostname in STATE_DIR
//!                   ▼
//!  Attachment (to the backend): join this namespace, put these /etc files in place,
//!  configure eth0 like this (vm: the guest's eth0 behind a TAP in that namespace)
//!  attach::teardown (at exit, rm, or crash repair): CNI DEL in reverse, unpin the
//!  namespace, delete the bridge when hull made it and its last container left
//! ```
//!
//! The CNI reference plugins do the networking (veth, bridge, addresses, masquerade, DNAT);
//! hull runs them as the CNI specification says and records what it did in
//! `STATE_DIR/network.json` *before* doing it, so a crash at any point leaves a record that
//! the next teardown completes. This module knows nothing of isolation backends: it works
//! on a container id and state directory.

pub mod attach;
pub mod bridge;
pub mod cni;
pub mod discover;
pub mod etc;
pub mod netdev;
pub mod netns;
pub mod ports;
pub mod request;
pub mod settings;
pub mod vmlink;

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use attach::{check, setup, teardown, Setup};
pub use ports::{PortReservation, PublishedPort};
pub use request::{NetworkMode, NetworkSpec, PortMapping, Protocol};
pub use settings::NetworkSettings;

/// Which network namespace the container's processes (or VMM) run in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "path")]
pub enum Namespace {
    /// A new, empty one with loopback only, made by the backend.
    New,
    /// The host's.
    Host,
    /// The pinned namespace at this path.
    Join(PathBuf),
}

/// A file the container gets at `container` (read-only), made by hull at `host`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcFile {
    /// The file in the container's state directory.
    pub host: PathBuf,
    /// Absolute path inside the container (`/etc/resolv.conf`...).
    pub container: String,
}

/// The container's interface as CNI configured it (for a VM guest to configure the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Name (`eth0`).
    pub name: String,
    /// MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// IPv4 address.
    pub address: Ipv4Addr,
    /// Prefix length of the subnet.
    pub prefix: u8,
    /// Default gateway (the bridge).
    pub gateway: Ipv4Addr,
    /// MTU.
    pub mtu: u32,
}

/// What the backend must do for the container's network at this start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The network namespace.
    pub namespace: Namespace,
    /// resolv.conf, hosts, hostname.
    pub files: Vec<EtcFile>,
    /// eth0, in bridge mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<Interface>,
}

/// The network of a running container, as `ps`, `port` and `inspect` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkStatus {
    /// Mode.
    pub mode: NetworkMode,
    /// Bridge (bridge mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    /// eth0 (bridge mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<Interface>,
    /// The host's end of eth0's veth pair (bridge mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_interface: Option<String>,
    /// Published ports, host side resolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PublishedPort>,
}

/// Why a container's network could not be set up, checked or torn down.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// Bad flags or configuration.
    #[error("{0}")]
    Invalid(String),
    /// A published host port cannot be had.
    #[error("{0}")]
    Port(String),
    /// A CNI plugin failed or is missing.
    #[error("network {network}: {source}{hint}")]
    Cni {
        /// `bridge NAME (SUBNET)`.
        network: String,
        /// The plugin's failure.
        #[source]
        source: Box<cni::CniError>,
        /// What to do about it, when known.
        hint: &'static str,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl NetworkError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetworkError {
        let what = what.into();
        move |source| NetworkError::Io { what, source }
    }
}
