//! Helpers for the network tests: a test root with its own bridge and subnet (so tests of
//! this and other suites running at the same moment never share one), HTTP and TCP probes
//! with deadlines, and leak checks for everything a container network consists of
//! (namespaces, veths, the bridge, iptables rules, address leases).

#![allow(dead_code)]

pub mod cni_netns;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

// Not every test crate that includes this module uses both.
#[allow(unused_imports)]
pub use crate::process_common::{Env, IMAGE};

/// Where slots are claimed (flock, released when the test process ends, however it ends).
const SLOTS: &str = "/run/hull-test-networks";
/// Where hull keeps per-bridge state (leases).
const NETWORKS: &str = "/run/hull-networks";

/// A test root whose config gives it bridge `hullt<N>` and subnet `10.234.<N>.0/24`.
pub struct NetEnv {
    pub env: Env,
    pub bridge: String,
    /// `10.234.N.` — every address of the subnet starts with it.
    pub prefix: String,
    pub gateway: Ipv4Addr,
    _slot: File,
}

impl NetEnv {
    /// A root on its own bridge, bridge networking by default.
    pub fn new() -> NetEnv {
        NetEnv::with_network("")
    }

    /// As `new`, with extra fields for the config's `network` section (`"k": v, ...`); the
    /// subnet may be narrowed with `subnet_len`.
    pub fn with_network(extra: &str) -> NetEnv {
        NetEnv::with_config(extra, 24, "")
    }

    /// Full control: extra `network` fields, subnet prefix length, extra top-level fields.
    pub fn with_config(extra: &str, subnet_len: u8, top: &str) -> NetEnv {
        let (slot_file, slot) = claim_slot();
        let env = Env::new();
        let bridge = format!("hullt{slot}");
        let mut network =
            format!(r#""bridge": "{bridge}", "subnet": "10.234.{slot}.0/{subnet_len}""#);
        if !extra.is_empty() {
            network.push_str(", ");
            network.push_str(extra);
        }
        let mut config = format!(r#"{{"network": {{{network}}}"#);
        if !top.is_empty() {
            config.push_str(", ");
            config.push_str(top);
        }
        config.push('}');
        fs::write(env.root.path().join("config.json"), config).unwrap();
        let net = NetEnv {
            env,
            bridge,
            prefix: format!("10.234.{slot}."),
            gateway: Ipv4Addr::new(10, 234, slot, 1),
            _slot: slot_file,
        };
        // A bridge left by an earlier, killed run of a test on this slot.
        let _ = Command::new("ip")
            .args(["link", "del", &net.bridge])
            .output();
        net
    }

    /// The container's eth0 address from `hull inspect`.
    pub fn address(&self, name: &str) -> Ipv4Addr {
        let c = self.env.inspect(name);
        c["network"]["interface"]["address"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no address: {c}"))
            .parse()
            .unwrap()
    }

    /// The host side veth of a running container.
    pub fn host_veth(&self, name: &str) -> String {
        let c = self.env.inspect(name);
        c["network"]["host_interface"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no host veth: {c}"))
            .to_string()
    }

    /// The host port a container port was published on (`hull port NAME PORT`).
    pub fn host_port(&self, name: &str, port: &str) -> u16 {
        let out = self.env.ok(["port", name, port]);
        let line = out.lines().next().unwrap_or_default();
        line.rsplit(':')
            .next()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("hull port {name} {port}: {out:?}"))
    }

    /// Everything [`Env::assert_clean`] checks, plus: no lease in the bridge's store, the
    /// bridge gone (hull made it; its last container left), none of `veths` left, and no
    /// iptables rule naming the subnet or one of `ids`.
    pub fn assert_clean(&self, ids: &[String], veths: &[String]) {
        self.env.assert_clean(ids);
        let leases = Path::new(NETWORKS).join(&self.bridge).join("ipam/hull");
        let held: Vec<String> = fs::read_dir(&leases)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&self.prefix))
                    .collect()
            })
            .unwrap_or_default();
        assert!(held.is_empty(), "address leases left: {held:?}");
        assert!(
            !Path::new("/sys/class/net").join(&self.bridge).exists(),
            "bridge {} left behind",
            self.bridge
        );
        for v in veths {
            assert!(
                !Path::new("/sys/class/net").join(v).exists(),
                "veth {v} left behind"
            );
        }
        let rules = iptables_rules();
        let left: Vec<&str> = rules
            .lines()
            .filter(|l| l.contains(&self.prefix) || ids.iter().any(|id| l.contains(id.as_str())))
            .collect();
        assert!(left.is_empty(), "iptables rules left: {left:#?}");
    }

    /// Ids of all containers of the root (`ps -a`).
    pub fn ids(&self) -> Vec<String> {
        self.env
            .ps()
            .values()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for NetEnv {
    fn drop(&mut self) {
        // Leave nothing for the next test on this slot, even after a failed assertion:
        // the containers first (while the bridge's record exists), then the bridge.
        let out = self.env.run(["ps", "-a", "-q"]);
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.env.run(["rm", "-f", id]);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

/// Claims a free slot 1..=250 (an flock held by this process until the File drops).
pub fn claim_slot() -> (File, u8) {
    fs::create_dir_all(SLOTS).unwrap();
    let start = (std::process::id() % 250) as u8;
    for i in 0..250u16 {
        let slot = ((start as u16 + i) % 250 + 1) as u8;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(Path::new(SLOTS).join(format!("slot-{slot}")))
            .unwrap();
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return (file, slot);
        }
    }
    panic!("no free network test slot in {SLOTS}");
}

/// `iptables-save` of every table (nat and filter are where CNI puts rules).
pub fn iptables_rules() -> String {
    let out = Command::new("iptables-save")
        .output()
        .expect("iptables-save (package iptables)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One HTTP/1.0 GET, bounded by `timeout`; the response body.
pub fn http_get(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(timeout)).unwrap();
    s.set_write_timeout(Some(timeout)).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut resp = Vec::new();
    s.take(1 << 20)
        .read_to_end(&mut resp)
        .map_err(|e| format!("{addr}: {e}"))?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
            Ok(body.to_string())
        }
        _ => Err(format!("{addr}: unexpected response {text:?}")),
    }
}

/// Polls `http_get` until it answers (a server just started) or `deadline` passes.
pub fn http_get_eventually(addr: SocketAddr, within: Duration) -> String {
    let end = Instant::now() + within;
    loop {
        match http_get(addr, Duration::from_secs(5)) {
            Ok(body) => return body,
            Err(e) if Instant::now() >= end => {
                panic!("no answer from {addr} within {within:?}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The shell script of a busybox httpd serving one page that names the container.
pub fn httpd_script(page: &str) -> String {
    format!("mkdir -p /www && echo {page} > /www/index.html && exec httpd -f -p 80 -h /www")
}
