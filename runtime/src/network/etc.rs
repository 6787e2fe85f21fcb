//! The three files every container gets for its network, as docker writes them:
//! `/etc/resolv.conf`, `/etc/hosts` and `/etc/hostname`. Built here as text; the caller
//! writes them into the container's state directory and the backend puts them in place
//! (bind mounts in process mode, files written by the guest agent in vm mode).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use super::request::{ExtraHost, NetworkMode, HOST_GATEWAY};

/// Largest host file read (/etc/resolv.conf, /etc/hosts).
const MAX_HOST_FILE: u64 = 64 * 1024;

/// The host's `path`, bounded; empty when unreadable.
pub fn read_host_file(path: &Path) -> String {
    use std::io::Read;
    let mut text = String::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(MAX_HOST_FILE).read_to_string(&mut text);
    }
    text
}

/// The container's resolv.conf: `dns` if given, else the host's name servers; the host's
/// `search`/`domain` and `options` lines are kept. Unless `keep_loopback` (the host's own
/// network namespace), loopback name servers are dropped: 127.0.0.53 in a container's own
/// namespace is the container itself, not the host's resolver.
pub fn resolv_conf(host: &str, dns: &[IpAddr], keep_loopback: bool) -> String {
    let mut servers: Vec<String> = dns.iter().map(IpAddr::to_string).collect();
    let mut dropped = Vec::new();
    let mut other = Vec::new();
    for line in host.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") if dns.is_empty() => {
                if let Some(server) = words.next() {
                    let loopback = server.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
                    if loopback && !keep_loopback {
                        dropped.push(server.to_string());
                    } else {
                        servers.push(server.to_string());
                    }
                }
            }
            Some("search" | "domain" | "options") => other.push(line.to_string()),
            _ => {}
        }
    }
    let mut out = String::from("# Written by hull for this container.\n");
    if !dropped.is_empty() && servers.is_empty() {
        out.push_str(&format!(
            "# The host's name servers ({}) are on its loopback and cannot be reached from \
             here: use --dns or network.dns in hull's config.\n",
            dropped.join(", ")
        ));
    }
    for s in &servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    for line in &other {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The container's /etc/hosts. With `--network host` the host's file plus the extra
/// entries; otherwise loopback names, the container's own address under its hostname (when
/// it has one) and the extra entries (`host-gateway` resolved to `gateway`).
pub fn hosts(
    mode: NetworkMode,
    host_file: &str,
    hostname: &str,
    address: Option<Ipv4Addr>,
    gateway: Option<Ipv4Addr>,
    extra: &[ExtraHost],
) -> String {
    let mut out = String::new();
    if mode == NetworkMode::Host {
        out.push_str(host_file);
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
    } else {
        out.push_str("127.0.0.1\tlocalhost\n");
        out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
        if let Some(ip) = address {
            out.push_str(&format!("{ip}\t{hostname}\n"));
        }
    }
    for e in extra {
        let address = if e.address == HOST_GATEWAY {
            match gateway {
                Some(g) => g.to_string(),
                None => continue, // refused at validation: only bridge mode has a gateway
            }
        } else {
            e.address.clone()
        };
        out.push_str(&format!("{address}\t{}\n", e.name));
    }
    out
}

/// The container's /etc/hostname.
pub fn hostname(name: &str) -> String {
    format!("{name}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "# comment\nnameserver 127.0.0.53\nnameserver 192.0.2.1\nsearch example.org\noptions edns0\n";

    #[test]
    fn resolv_conf_drops_loopback_servers_in_own_namespace() {
        let r = resolv_conf(HOST, &[], false);
        assert!(r.contains("nameserver 192.0.2.1\n"));
        assert!(!r.contains("127.0.0.53"), "{r}");
        assert!(r.contains("search example.org\n") && r.contains("options edns0\n"));
        let r = resolv_conf(HOST, &[], true);
        assert!(
            r.contains("nameserver 127.0.0.53\n"),
            "host mode keeps them: {r}"
        );
    }

    #[test]
    fn resolv_conf_dns_flag_wins_and_unreachable_is_explained() {
        let r = resolv_conf(HOST, &["198.51.100.7".parse().unwrap()], false);
        assert!(r.contains("nameserver 198.51.100.7\n"));
        assert!(!r.contains("192.0.2.1"), "{r}");
        let r = resolv_conf("nameserver 127.0.0.53\n", &[], false);
        assert!(!r.contains("nameserver"), "{r}");
        assert!(r.contains("--dns"), "{r}");
    }

    #[test]
    fn hosts_for_bridge_and_host() {
        let extra = vec![
            ExtraHost {
                name: "db".into(),
                address: "10.0.0.5".into(),
            },
            ExtraHost {
                name: "gw".into(),
                address: HOST_GATEWAY.into(),
            },
        ];
        let h = hosts(
            NetworkMode::Bridge,
            "",
            "box",
            Some(Ipv4Addr::new(10, 87, 0, 2)),
            Some(Ipv4Addr::new(10, 87, 0, 1)),
            &extra,
        );
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"), "{h}");
        assert!(h.contains("10.87.0.2\tbox\n"));
        assert!(h.contains("10.0.0.5\tdb\n"));
        assert!(h.contains("10.87.0.1\tgw\n"));
        let h = hosts(
            NetworkMode::Host,
            "127.0.0.1 myhost",
            "box",
            None,
            None,
            &extra[..1],
        );
        assert_eq!(h, "127.0.0.1 myhost\n10.0.0.5\tdb\n");
        let h = hosts(NetworkMode::None, "", "box", None, None, &[]);
        assert!(!h.contains("box"), "no address, no hostname line: {h}");
    }
}
