//! A network namespace made and wired the way containerd's CRI plugin does it for a pod
//! (and podman for `--network ns:PATH` callers): `ip netns add`, then the CNI reference
//! plugins loopback and bridge (host-local IPAM) run by the caller, not by hull. The OCI
//! runtime then only gets the namespace's path in config.json.

use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

const PLUGINS: &str = "/usr/lib/cni";

/// A wired namespace on bridge `hullt<slot>`; CNI DEL, `ip netns del` and the bridge's
/// removal on drop.
pub struct CniNetns {
    /// `ip netns` name.
    pub name: String,
    /// `/var/run/netns/NAME`.
    pub path: PathBuf,
    /// The bridge (made by the bridge plugin, gateway address on it).
    pub bridge: String,
    /// eth0's address, from the plugin's result.
    pub address: Ipv4Addr,
    /// The gateway.
    pub gateway: Ipv4Addr,
    /// eth0's MAC.
    pub mac: String,
    /// The host end of the veth pair.
    pub host_veth: String,
    /// The IPAM's lease directory.
    pub ipam_dir: tempfile::TempDir,
    config: String,
    id: String,
    deleted: bool,
}

fn plugin(kind: &str, command: &str, id: &str, netns: &Path, ifname: &str, conf: &str) -> Value {
    let mut child = Command::new(Path::new(PLUGINS).join(kind))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", PLUGINS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run CNI plugin {kind}: {e} (containernetworking-plugins)"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "CNI {kind} {command}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

impl CniNetns {
    /// `ip netns add` + loopback + bridge on `hullt<slot>` with `10.234.<slot>.0/24`.
    pub fn new(slot: u8, tag: &str) -> CniNetns {
        let name = hull_tests::oci::unique(tag);
        let bridge = format!("hullt{slot}");
        // A bridge left by an earlier, killed run on this slot.
        let _ = Command::new("ip").args(["link", "del", &bridge]).output();
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap();
        assert!(out.status.success(), "ip netns add {name}: {out:?}");
        let path = PathBuf::from("/var/run/netns").join(&name);
        let ipam_dir = tempfile::Builder::new()
            .prefix("hull-test-ipam-")
            .tempdir()
            .unwrap();
        let config = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": format!("hull-test-{slot}"),
            "type": "bridge",
            "bridge": bridge,
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "subnet": format!("10.234.{slot}.0/24"),
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": ipam_dir.path(),
            }
        })
        .to_string();
        let lo = r#"{"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}"#;
        plugin("loopback", "ADD", &name, &path, "lo", lo);
        let result = plugin("bridge", "ADD", &name, &path, "eth0", &config);
        let ip = result["ips"][0]["address"]
            .as_str()
            .unwrap_or_else(|| panic!("bridge result without an address: {result}"));
        let address: Ipv4Addr = ip.split('/').next().unwrap().parse().unwrap();
        let gateway: Ipv4Addr = result["ips"][0]["gateway"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let ifaces = result["interfaces"].as_array().unwrap();
        let eth0 = ifaces.iter().find(|i| i["name"] == "eth0").unwrap();
        let host_veth = ifaces
            .iter()
            .find(|i| i["name"] != "eth0" && i["name"] != bridge.as_str())
            .map(|i| i["name"].as_str().unwrap().to_string())
            .unwrap();
        CniNetns {
            mac: eth0["mac"].as_str().unwrap().to_string(),
            name: name.clone(),
            path,
            bridge,
            address,
            gateway,
            host_veth,
            ipam_dir,
            config,
            id: name,
            deleted: false,
        }
    }

    /// Runs `args` inside the namespace (`ip netns exec`).
    pub fn exec(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap()
    }

    /// CNI DEL, `ip netns del`, bridge removed; then checks nothing of it is left: no
    /// veth, no lease, no namespace file.
    pub fn delete_and_check(mut self) {
        self.delete();
        assert!(
            !Path::new("/sys/class/net").join(&self.host_veth).exists(),
            "veth {} left",
            self.host_veth
        );
        assert!(!self.path.exists(), "{} left", self.path.display());
        let leases: Vec<String> = fs::read_dir(self.ipam_dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|d| fs::read_dir(d.path()).into_iter().flatten().flatten())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("10."))
            .collect();
        assert!(leases.is_empty(), "leases left: {leases:?}");
    }

    fn delete(&mut self) {
        if self.deleted {
            return;
        }
        self.deleted = true;
        plugin("bridge", "DEL", &self.id, &self.path, "eth0", &self.config);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

impl Drop for CniNetns {
    fn drop(&mut self) {
        if !self.deleted && !std::thread::panicking() {
            self.delete();
        } else if !self.deleted {
            // After a failed assertion: remove what we can without asserting again.
            self.deleted = true;
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .output();
            let _ = Command::new("ip")
                .args(["link", "del", &self.host_veth])
                .output();
            let _ = Command::new("ip")
                .args(["link", "del", &self.bridge])
                .output();
        }
    }
}
