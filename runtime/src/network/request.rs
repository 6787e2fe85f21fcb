//! What a container asks of the network, from docker's flags: `--network none|bridge|host`,
//! `-p/--publish`, `--dns`, `--add-host`, `--mac-address`. Parsed and validated here, saved
//! with the container's spec, and turned into a real network by [`super::setup`].

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

/// How a container is connected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Its own network namespace with only loopback (`--network none`). The default of
    /// records written before networking existed, which had exactly that.
    #[default]
    None,
    /// Its own network namespace with a veth to hull's bridge, an address from the
    /// bridge's subnet, masquerade for egress and published ports (docker's default).
    Bridge,
    /// The host's network namespace (process isolation only).
    Host,
}

impl NetworkMode {
    /// The name used on the command line and in records.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::None => "none",
            NetworkMode::Bridge => "bridge",
            NetworkMode::Host => "host",
        }
    }
}

impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for NetworkMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(NetworkMode::None),
            "bridge" => Ok(NetworkMode::Bridge),
            "host" => Ok(NetworkMode::Host),
            other => Err(format!(
                "unknown network {other:?} (expected none, bridge or host)"
            )),
        }
    }
}

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One `-p [IP:][HOSTPORT:]CONTAINERPORT[/PROTO]` as asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Host address to publish on; `None` = every address (0.0.0.0).
    #[serde(default)]
    pub host_ip: Option<Ipv4Addr>,
    /// Host port; 0 = any free port, chosen when the container starts.
    pub host_port: u16,
    /// Port inside the container.
    pub container_port: u16,
    /// Protocol.
    #[serde(default)]
    pub protocol: Protocol,
}

/// An `--add-host NAME:ADDRESS` line for the container's /etc/hosts. `address` is an IP
/// address or `host-gateway` (the bridge's address on the host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraHost {
    /// Host name.
    pub name: String,
    /// IP address (validated), or [`HOST_GATEWAY`].
    pub address: String,
}

/// The `--add-host` value that stands for the host's address on the bridge (docker's).
pub const HOST_GATEWAY: &str = "host-gateway";

/// Everything a container asked of the network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// Connection mode.
    #[serde(default)]
    pub mode: NetworkMode,
    /// Published ports (bridge mode only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
    /// Name servers for /etc/resolv.conf (`--dns`); empty = the host's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<IpAddr>,
    /// Extra /etc/hosts lines (`--add-host`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<ExtraHost>,
    /// MAC address of eth0 (`--mac-address`, bridge mode only), lower case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl NetworkSpec {
    /// Checks the combination of options (each was validated when parsed).
    pub fn validate(&self) -> Result<(), String> {
        if self.mode != NetworkMode::Bridge {
            if let Some(p) = self.ports.first() {
                return Err(format!(
                    "-p {}: publishing ports needs --network bridge (this container uses --network {})",
                    p.container_port, self.mode
                ));
            }
            if self.mac.is_some() {
                return Err(format!(
                    "--mac-address needs --network bridge (this container uses --network {})",
                    self.mode
                ));
            }
            if let Some(h) = self.extra_hosts.iter().find(|h| h.address == HOST_GATEWAY) {
                return Err(format!(
                    "--add-host {}:{HOST_GATEWAY} needs --network bridge (there is no bridge gateway with --network {})",
                    h.name, self.mode
                ));
            }
        }
        for (i, a) in self.ports.iter().enumerate() {
            for b in &self.ports[i + 1..] {
                let same_ip = a.host_ip.is_none() || b.host_ip.is_none() || a.host_ip == b.host_ip;
                if a.host_port != 0
                    && a.host_port == b.host_port
                    && a.protocol == b.protocol
                    && same_ip
                {
                    return Err(format!(
                        "host port {}/{} is published twice",
                        a.host_port,
                        a.protocol.as_str()
                    ));
                }
            }
        }
        Ok(())
    }
}

fn parse_port(s: &str, what: &str, spec: &str) -> Result<u16, String> {
    if s.contains('-') {
        return Err(format!(
            "invalid -p {spec:?}: port ranges are not supported (publish each port)"
        ));
    }
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!(
            "invalid -p {spec:?}: {what} {s:?} is not a port number (1-65535)"
        )),
    }
}

/// Parses `-p [IP:][HOSTPORT:]CONTAINERPORT[/tcp|/udp]` (docker's syntax; `IP::PORT` and a
/// bare `PORT` publish on a free host port). IPv4 host addresses only.
pub fn parse_publish(spec: &str) -> Result<PortMapping, String> {
    let (ports, protocol) = match spec.rsplit_once('/') {
        Some((p, "tcp")) => (p, Protocol::Tcp),
        Some((p, "udp")) => (p, Protocol::Udp),
        Some((_, other)) => {
            return Err(format!(
                "invalid -p {spec:?}: protocol {other:?} (tcp or udp)"
            ))
        }
        None => (spec, Protocol::Tcp),
    };
    if ports.starts_with('[') || ports.matches(':').count() > 2 {
        return Err(format!(
            "invalid -p {spec:?}: IPv6 host addresses are not supported"
        ));
    }
    let parts: Vec<&str> = ports.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => (None, "", *c),
        [h, c] => (None, *h, *c),
        [ip, h, c] => (Some(*ip), *h, *c),
        _ => unreachable!("at most two ':' were checked above"),
    };
    let host_ip = match ip {
        None | Some("") => None,
        Some(text) => Some(text.parse::<Ipv4Addr>().map_err(|_| {
            format!("invalid -p {spec:?}: host address {text:?} is not an IPv4 address")
        })?),
    };
    let host_port = if host.is_empty() {
        0
    } else {
        parse_port(host, "host port", spec)?
    };
    if container.is_empty() {
        return Err(format!(
            "invalid -p {spec:?}: expected [IP:]HOSTPORT:CONTAINERPORT[/tcp|/udp]"
        ));
    }
    let container_port = parse_port(container, "container port", spec)?;
    Ok(PortMapping {
        host_ip: host_ip.filter(|ip| !ip.is_unspecified()),
        host_port,
        container_port,
        protocol,
    })
}

/// Whether `name` is a valid host name for /etc/hosts (letters, digits, `-`, `.`).
fn valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
}

/// Parses `--add-host NAME:ADDRESS` (also `NAME=ADDRESS`); ADDRESS is an IPv4/IPv6 address
/// or `host-gateway`.
pub fn parse_add_host(spec: &str) -> Result<ExtraHost, String> {
    let (name, address) = spec
        .split_once('=')
        .or_else(|| spec.split_once(':'))
        .ok_or_else(|| format!("invalid --add-host {spec:?}: expected NAME:ADDRESS"))?;
    if !valid_host_name(name) {
        return Err(format!(
            "invalid --add-host {spec:?}: bad host name {name:?}"
        ));
    }
    let address = address.trim_start_matches('[').trim_end_matches(']');
    if address != HOST_GATEWAY && address.parse::<IpAddr>().is_err() {
        return Err(format!(
            "invalid --add-host {spec:?}: {address:?} is neither an IP address nor {HOST_GATEWAY}"
        ));
    }
    Ok(ExtraHost {
        name: name.to_string(),
        address: address.to_string(),
    })
}

/// Parses `--dns ADDRESS`.
pub fn parse_dns(spec: &str) -> Result<IpAddr, String> {
    spec.parse()
        .map_err(|_| format!("invalid --dns {spec:?}: not an IP address"))
}

/// Parses `--mac-address` (six hex pairs separated by `:` or `-`); it must be a unicast
/// address. Returned in lower case with `:`.
pub fn parse_mac(spec: &str) -> Result<String, String> {
    let bad =
        || format!("invalid --mac-address {spec:?}: expected six hex pairs like 02:42:ac:11:00:02");
    let bytes: Vec<u8> = spec
        .split([':', '-'])
        .map(|p| {
            if p.len() == 2 {
                u8::from_str_radix(p, 16).map_err(|_| bad())
            } else {
                Err(bad())
            }
        })
        .collect::<Result<_, _>>()?;
    if bytes.len() != 6 {
        return Err(bad());
    }
    if bytes[0] & 1 != 0 {
        return Err(format!(
            "invalid --mac-address {spec:?}: a multicast address cannot be an interface's"
        ));
    }
    if bytes.iter().all(|b| *b == 0) {
        return Err(format!("invalid --mac-address {spec:?}: all zeroes"));
    }
    Ok(bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_forms() {
        let p = parse_publish("8080:80").unwrap();
        assert_eq!((p.host_ip, p.host_port, p.container_port), (None, 8080, 80));
        assert_eq!(p.protocol, Protocol::Tcp);
        let p = parse_publish("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(p.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(p.protocol, Protocol::Udp);
        let p = parse_publish("80").unwrap();
        assert_eq!((p.host_port, p.container_port), (0, 80));
        let p = parse_publish("127.0.0.1::80").unwrap();
        assert_eq!((p.host_ip, p.host_port), (Some(Ipv4Addr::LOCALHOST), 0));
        let p = parse_publish("0.0.0.0:1:2").unwrap();
        assert_eq!(p.host_ip, None, "0.0.0.0 means every address");
    }

    #[test]
    fn malformed_publish_is_named() {
        for (bad, word) in [
            ("", "expected"),
            ("80:", "expected"),
            ("x:80", "host port"),
            ("8080:0", "container port"),
            ("70000:80", "host port"),
            ("8080:80/sctp", "protocol"),
            ("1.2.3:8080:80", "IPv4"),
            ("[::1]:8080:80", "IPv6"),
            ("8000-8010:80", "ranges"),
            ("a:b:c:d", "IPv6"),
        ] {
            let e = parse_publish(bad).unwrap_err();
            assert!(e.contains(word), "{bad:?}: {e}");
            assert!(e.contains(&format!("{bad:?}")), "{bad:?} is quoted: {e}");
        }
    }

    #[test]
    fn add_host_and_dns() {
        let h = parse_add_host("db:10.0.0.5").unwrap();
        assert_eq!((h.name.as_str(), h.address.as_str()), ("db", "10.0.0.5"));
        let h = parse_add_host("gw=host-gateway").unwrap();
        assert_eq!(h.address, HOST_GATEWAY);
        let h = parse_add_host("v6:[::1]").unwrap();
        assert_eq!(h.address, "::1");
        assert!(parse_add_host("nocolon").is_err());
        assert!(parse_add_host("bad name:1.2.3.4").is_err());
        assert!(parse_add_host("x:notanip").is_err());
        assert!(parse_dns("1.1.1.1").is_ok());
        assert!(parse_dns("dns.example").is_err());
    }

    #[test]
    fn mac_addresses() {
        assert_eq!(parse_mac("02:42:AC:11:00:02").unwrap(), "02:42:ac:11:00:02");
        assert_eq!(parse_mac("02-42-ac-11-00-02").unwrap(), "02:42:ac:11:00:02");
        assert!(parse_mac("01:00:5e:00:00:01")
            .unwrap_err()
            .contains("multicast"));
        assert!(parse_mac("02:42:ac:11:00").is_err());
        assert!(parse_mac("02:42:ac:11:00:0g").is_err());
        assert!(parse_mac("00:00:00:00:00:00").is_err());
    }

    #[test]
    fn combinations_are_checked() {
        let mut s = NetworkSpec {
            mode: NetworkMode::None,
            ports: vec![parse_publish("8080:80").unwrap()],
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().contains("--network bridge"));
        s.mode = NetworkMode::Bridge;
        assert!(s.validate().is_ok());
        s.ports.push(parse_publish("127.0.0.1:8080:81").unwrap());
        assert!(s.validate().unwrap_err().contains("twice"));
        s.ports[1] = parse_publish("8080:81/udp").unwrap();
        assert!(s.validate().is_ok(), "tcp and udp may share a number");
        let s = NetworkSpec {
            mode: NetworkMode::Host,
            extra_hosts: vec![parse_add_host("gw:host-gateway").unwrap()],
            ..Default::default()
        };
        assert!(s.validate().is_err());
    }

    #[test]
    fn old_records_have_no_network() {
        let s: NetworkSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(s.mode, NetworkMode::None);
    }
}
