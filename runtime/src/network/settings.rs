//! The `network` section of hull's config file (`ROOT/config.json`):
//!
//! ```json
//! {"network": {"default": "bridge", "bridge": "hull0", "subnet": "10.87.0.0/16",
//!              "cni_path": ["/usr/lib/cni"], "dns": ["192.0.2.53"], "mtu": 1500}}
//! ```
//!
//! Every field is optional. The bridge is a host-wide object: every hull state root that
//! uses the same bridge name shares it, its subnet and its address leases, so roots that
//! must not see each other (tests running side by side) give each its own bridge and subnet.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::request::NetworkMode;

/// Bridge used when the config names none.
pub const DEFAULT_BRIDGE: &str = "hull0";
/// Subnet used when the config names none.
pub const DEFAULT_SUBNET: &str = "10.87.0.0/16";
/// Where Debian's containernetworking-plugins and upstream's installer put the plugins.
pub const DEFAULT_CNI_PATH: &[&str] = &["/usr/lib/cni", "/opt/cni/bin"];

/// An IPv4 subnet `a.b.c.d/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Subnet {
    /// Network address (host bits zero).
    pub network: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

impl Ipv4Subnet {
    /// The netmask as an integer.
    fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    /// Whether `ip` lies in this subnet.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network)
    }

    /// The first host address, which the bridge (gateway) takes.
    pub fn gateway(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }
}

impl std::fmt::Display for Ipv4Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl std::str::FromStr for Ipv4Subnet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| format!("subnet {s:?} must be written a.b.c.d/len"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("subnet {s:?}: {addr:?} is not an IPv4 address"))?;
        let prefix: u8 = len
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("subnet {s:?}: prefix length must be 8 to 30"))?;
        let subnet = Ipv4Subnet {
            network: addr,
            prefix,
        };
        if u32::from(addr) & !subnet.mask() != 0 {
            return Err(format!("subnet {s:?} has host bits set"));
        }
        Ok(subnet)
    }
}

impl Serialize for Ipv4Subnet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Subnet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The `network` section of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSettings {
    /// Network mode when neither `--network` nor a policy says (default `bridge`).
    #[serde(default)]
    pub default: Option<NetworkMode>,
    /// Bridge name (at most 15 characters).
    #[serde(default = "default_bridge", deserialize_with = "bridge_name")]
    pub bridge: String,
    /// The bridge's subnet; the bridge takes its first address, containers the rest.
    #[serde(default = "default_subnet")]
    pub subnet: Ipv4Subnet,
    /// Directories searched for CNI plugins, in order.
    #[serde(default = "default_cni_path")]
    pub cni_path: Vec<PathBuf>,
    /// Name servers written to containers' resolv.conf when `--dns` is not given, instead
    /// of the host's.
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    /// MTU of the bridge and container interfaces (default: the kernel's, 1500).
    #[serde(default)]
    pub mtu: Option<u32>,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        NetworkSettings {
            default: None,
            bridge: default_bridge(),
            subnet: default_subnet(),
            cni_path: default_cni_path(),
            dns: Vec::new(),
            mtu: None,
        }
    }
}

fn default_bridge() -> String {
    DEFAULT_BRIDGE.to_string()
}

fn default_subnet() -> Ipv4Subnet {
    DEFAULT_SUBNET.parse().expect("the default subnet is valid")
}

fn default_cni_path() -> Vec<PathBuf> {
    DEFAULT_CNI_PATH.iter().map(PathBuf::from).collect()
}

/// Whether `name` can be a Linux interface name hull manages.
pub fn valid_bridge_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn bridge_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if valid_bridge_name(&s) {
        Ok(s)
    } else {
        Err(serde::de::Error::custom(format!(
            "bridge name {s:?}: use 1 to 15 letters, digits, '-' or '_'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_contain() {
        let s: Ipv4Subnet = "10.87.0.0/16".parse().unwrap();
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 87, 0, 1));
        assert!(s.contains(Ipv4Addr::new(10, 87, 200, 3)));
        assert!(!s.contains(Ipv4Addr::new(10, 88, 0, 3)));
        assert!("10.87.0.1/16".parse::<Ipv4Subnet>().is_err(), "host bits");
        assert!("10.87.0.0/31".parse::<Ipv4Subnet>().is_err(), "no room");
        assert!("10.87.0.0".parse::<Ipv4Subnet>().is_err());
        assert_eq!(s.to_string(), "10.87.0.0/16");
    }

    #[test]
    fn settings_default_and_validate() {
        let d: NetworkSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(d, NetworkSettings::default());
        assert_eq!(d.bridge, "hull0");
        let s: NetworkSettings =
            serde_json::from_str(r#"{"default":"none","bridge":"hn7","subnet":"10.200.7.0/24"}"#)
                .unwrap();
        assert_eq!(s.default, Some(NetworkMode::None));
        assert!(
            serde_json::from_str::<NetworkSettings>(r#"{"bridge":"much-too-long-name"}"#).is_err()
        );
        assert!(serde_json::from_str::<NetworkSettings>(r#"{"bridge":"a/b"}"#).is_err());
        assert!(serde_json::from_str::<NetworkSettings>(r#"{"subnet":"x"}"#).is_err());
        assert!(serde_json::from_str::<NetworkSettings>(r#"{"colour":"red"}"#).is_err());
    }
}
