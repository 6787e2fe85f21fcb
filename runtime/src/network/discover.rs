//! Reads the interface a caller's network setup made in a network namespace it hands us
//! (the OCI runtime path: containerd/CRI and podman make the namespace and run CNI
//! themselves, then give its path in config.json). A VM joining that namespace takes the
//! interface's identity, as it does for hull's own CNI setup: MAC, IPv4 address, prefix,
//! default gateway and MTU, read here with getifaddrs, an ioctl and the namespace's
//! routing table (no netlink library, no `ip` binary).

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;

use super::{netdev, netns, vmlink, Interface, NetworkError};

/// The interface the caller's setup made, if the namespace has one with an IPv4 address
/// besides loopback; `None` when it has only loopback. An error when it has several (which
/// one the VM should take is not ours to guess), when one has no default route, or when a
/// VM's TAP is already there (one VM per network namespace).
pub fn interface(path: &Path) -> Result<Option<Interface>, NetworkError> {
    let found = netns::run_in(path, read_namespace).map_err(NetworkError::io(format!(
        "read the interfaces of network namespace {}",
        path.display()
    )))?;
    let Found { interfaces, tap } = found;
    if tap {
        return Err(NetworkError::Invalid(format!(
            "network namespace {} already holds a VM's NIC ({}): hull-oci gives one VM per \
             network namespace",
            path.display(),
            vmlink::TAP_NAME
        )));
    }
    let mut candidates: Vec<Candidate> = interfaces.into_values().collect();
    match candidates.len() {
        0 => Ok(None),
        1 => candidates.remove(0).into_interface(path).map(Some),
        _ => {
            // containerd and podman name the pod's interface eth0 (CNI_IFNAME).
            if let Some(i) = candidates.iter().position(|c| c.name == "eth0") {
                return candidates.remove(i).into_interface(path).map(Some);
            }
            let names: Vec<&str> = candidates.iter().map(|c| c.name.as_str()).collect();
            Err(NetworkError::Invalid(format!(
                "network namespace {} has several interfaces with an IPv4 address ({}) and \
                 none named eth0: the VM's one NIC cannot take them all",
                path.display(),
                names.join(", ")
            )))
        }
    }
}

#[derive(Debug, Default)]
struct Candidate {
    name: String,
    mac: Option<[u8; 6]>,
    address: Option<(Ipv4Addr, u8)>,
    gateway: Option<Ipv4Addr>,
    mtu: u32,
}

impl Candidate {
    fn into_interface(self, path: &Path) -> Result<Interface, NetworkError> {
        let what = |missing: &str| {
            NetworkError::Invalid(format!(
                "interface {} in network namespace {} has no {missing}: a VM needs it to \
                 take the interface's place",
                self.name,
                path.display()
            ))
        };
        let mac = self.mac.ok_or_else(|| what("MAC address"))?;
        let (address, prefix) = self.address.ok_or_else(|| what("IPv4 address"))?;
        let gateway = self.gateway.ok_or_else(|| what("default route"))?;
        if !(1..=30).contains(&prefix) {
            return Err(what("usable prefix (1..30)"));
        }
        Ok(Interface {
            mac: format_mac(mac),
            address,
            prefix,
            gateway,
            mtu: self.mtu,
            name: self.name,
        })
    }
}

struct Found {
    /// Non-loopback interfaces with an IPv4 address, by name.
    interfaces: BTreeMap<String, Candidate>,
    /// Whether a VM's TAP is there already.
    tap: bool,
}

/// Runs on a thread inside the namespace: getifaddrs, MTUs and the routing table all
/// answer for the calling thread's namespace.
fn read_namespace() -> io::Result<Found> {
    let mut all: BTreeMap<String, Candidate> = BTreeMap::new();
    let mut tap = false;
    for a in nix::ifaddrs::getifaddrs().map_err(io::Error::from)? {
        if a.interface_name == vmlink::TAP_NAME {
            tap = true;
            continue;
        }
        if a.flags
            .contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK)
        {
            continue;
        }
        let c = all
            .entry(a.interface_name.clone())
            .or_insert_with(|| Candidate {
                name: a.interface_name.clone(),
                ..Candidate::default()
            });
        let Some(addr) = a.address else { continue };
        if let Some(link) = addr.as_link_addr() {
            c.mac = link.addr().filter(|m| m.iter().any(|b| *b != 0));
        } else if let Some(sin) = addr.as_sockaddr_in() {
            // The first IPv4 address is the one CNI's IPAM assigned.
            if c.address.is_none() {
                let prefix = a
                    .netmask
                    .as_ref()
                    .and_then(|m| m.as_sockaddr_in())
                    .map_or(32, |m| u32::from(m.ip()).count_ones() as u8);
                c.address = Some((sin.ip(), prefix));
            }
        }
    }
    all.retain(|_, c| c.address.is_some());
    let routes = std::fs::read_to_string("/proc/thread-self/net/route")?;
    for c in all.values_mut() {
        c.mtu = netdev::mtu(&c.name)?;
        c.gateway = default_gateway(&routes, &c.name);
    }
    Ok(Found {
        interfaces: all,
        tap,
    })
}

/// The default route's gateway through `dev` in a /proc/net/route table.
fn default_gateway(routes: &str, dev: &str) -> Option<Ipv4Addr> {
    const RTF_GATEWAY: u32 = 0x2;
    routes.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (iface, dest, gw, flags, mask) =
            (f.first()?, f.get(1)?, f.get(2)?, f.get(3)?, f.get(7)?);
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        let is_default = *iface == dev && hex(dest)? == 0 && hex(mask)? == 0;
        (is_default && hex(flags)? & RTF_GATEWAY != 0)
            // The kernel prints the big-endian address as a native u32.
            .then(|| Ipv4Addr::from(hex(gw).unwrap_or(0).to_ne_bytes()))
    })
}

fn format_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_route_is_read_from_the_kernels_table() {
        // As /proc/net/route prints it on a little-endian host: 10.88.0.1 via eth0.
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t0100580A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            eth0\t0000580A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        if cfg!(target_endian = "little") {
            assert_eq!(
                default_gateway(table, "eth0"),
                Some(Ipv4Addr::new(10, 88, 0, 1))
            );
        }
        assert_eq!(default_gateway(table, "eth1"), None);
        // A subnet route alone is no default route.
        let subnet_only = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
            eth0\t0000580A\t00000000\t0001\t0\t0\t0\t0000FFFF\n";
        assert_eq!(default_gateway(subnet_only, "eth0"), None);
        assert_eq!(default_gateway("garbage\nx y\n", "eth0"), None);
    }

    #[test]
    fn a_candidate_without_a_gateway_or_mac_is_refused_by_name() {
        let c = Candidate {
            name: "eth0".into(),
            mac: Some([2, 0, 0, 0, 0, 1]),
            address: Some((Ipv4Addr::new(10, 88, 0, 5), 16)),
            gateway: None,
            mtu: 1500,
        };
        let e = c.into_interface(Path::new("/run/netns/x")).unwrap_err();
        assert!(e.to_string().contains("eth0") && e.to_string().contains("default route"));
        let ok = Candidate {
            name: "eth0".into(),
            mac: Some([2, 0, 0, 0, 0, 1]),
            address: Some((Ipv4Addr::new(10, 88, 0, 5), 16)),
            gateway: Some(Ipv4Addr::new(10, 88, 0, 1)),
            mtu: 1500,
        }
        .into_interface(Path::new("/run/netns/x"))
        .unwrap();
        assert_eq!(ok.mac, "02:00:00:00:00:01");
        assert_eq!((ok.prefix, ok.mtu), (16, 1500));
    }
}
