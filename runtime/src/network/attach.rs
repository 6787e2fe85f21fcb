//! Setting up, checking and tearing down one container's network.
//!
//! Files in the container's state directory:
//! - `network.json`: what was (or is being) set up: the namespace path, the bridge, the
//!   CNI plugin configurations given to ADD and ADD's result. Written before the first
//!   change, so teardown after a crash at any point knows what to undo;
//! - `netns`: the pinned network namespace (bridge mode);
//! - `resolv.conf`, `hosts`, `hostname`: the container's files.
//!
//! Order of ADD (CNI runtime conventions): loopback on `lo`, then the chain bridge
//! (addresses from host-local) → portmap (only with `-p`) → firewall on `eth0`, each given
//! the previous one's result. DEL runs the chain in reverse with ADD's result, while the
//! namespace still exists (the bridge plugin finds its masquerade rule through eth0).

use std::fs;
use std::io::{self, Read};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::cni::{self, CniError, Command, Context};
use super::ports::{self, PortReservation, PublishedPort};
use super::request::{NetworkMode, NetworkSpec};
use super::settings::NetworkSettings;
use super::{
    bridge, etc, netdev, netns, Attachment, EtcFile, Interface, Namespace, NetworkError,
    NetworkStatus,
};

/// CNI network name (in iptables comments; chain names hash it with the container id).
pub const NETWORK_NAME: &str = "hull";
/// The container's interface.
pub const IFNAME: &str = "eth0";
/// Record file in the state directory.
const RECORD: &str = "network.json";
/// The pinned namespace in the state directory.
const NETNS: &str = "netns";
/// The container's files: (file in the state directory, path in the container).
const FILES: [(&str, &str); 3] = [
    ("resolv.conf", "/etc/resolv.conf"),
    ("hosts", "/etc/hosts"),
    ("hostname", "/etc/hostname"),
];
/// Plugins the bridge mode needs, checked before anything is done.
const PLUGINS: [&str; 5] = ["loopback", "bridge", "host-local", "portmap", "firewall"];
/// Largest record read.
const MAX_RECORD: u64 = 1 << 20;

/// What teardown needs to undo a container's network.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    mode: NetworkMode,
    #[serde(default)]
    netns: Option<PathBuf>,
    #[serde(default)]
    bridge: Option<String>,
    #[serde(default)]
    plugin_dirs: Vec<PathBuf>,
    /// The chain's network configurations as given to ADD, without `prevResult`.
    #[serde(default)]
    chain: Vec<Value>,
    #[serde(default)]
    loopback: Option<Value>,
    /// ADD's final result; `None` while ADD has not completed.
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    ports: Vec<PublishedPort>,
}

impl Record {
    fn load(state_dir: &Path) -> Result<Option<Record>, NetworkError> {
        let path = state_dir.join(RECORD);
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(NetworkError::io(format!("read {}", path.display()))(e)),
        };
        let mut text = String::new();
        file.take(MAX_RECORD)
            .read_to_string(&mut text)
            .map_err(NetworkError::io(format!("read {}", path.display())))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| NetworkError::io(format!("parse {}", path.display()))(io::Error::other(e)))
    }

    fn save(&self, state_dir: &Path) -> Result<(), NetworkError> {
        let tmp = state_dir.join(".network.json.tmp");
        let data = serde_json::to_vec_pretty(self)
            .map_err(|e| NetworkError::io("encode network.json")(io::Error::other(e)))?;
        fs::write(&tmp, data).map_err(NetworkError::io("write network.json"))?;
        fs::rename(&tmp, state_dir.join(RECORD)).map_err(NetworkError::io("write network.json"))
    }

    fn context<'a>(&'a self, id: &'a str, ifname: &'a str) -> Context<'a> {
        Context {
            container_id: id,
            // A namespace that is gone (or was never pinned) is passed as empty, which
            // the specification allows for DEL.
            netns: self.netns.as_deref().filter(|p| netns::is_pinned(p)),
            ifname,
            plugin_dirs: &self.plugin_dirs,
            exec_path: None,
        }
    }

    fn network_name(&self) -> String {
        match &self.bridge {
            Some(b) => format!("bridge {b}"),
            None => "network".into(),
        }
    }
}

/// A container's network, set up for one start.
#[derive(Debug)]
pub struct Setup {
    /// For the backend.
    pub attachment: Attachment,
    /// For the container's record (`ps`, `port`, `inspect`).
    pub status: NetworkStatus,
    /// The published host ports, bound: keep this until the container has exited.
    pub ports: PortReservation,
}

/// Sets up the network of container `id` (state directory `state_dir`) as `spec` asks.
/// On error nothing is left: not a port, namespace, interface, rule, lease or file.
pub fn setup(
    id: &str,
    state_dir: &Path,
    spec: &NetworkSpec,
    hostname: &str,
    settings: &NetworkSettings,
) -> Result<Setup, NetworkError> {
    spec.validate().map_err(NetworkError::Invalid)?;
    // A previous run whose teardown did not finish (a failed DEL) is finished first.
    teardown(id, state_dir)?;
    let result = match spec.mode {
        NetworkMode::None | NetworkMode::Host => setup_local(state_dir, spec, hostname),
        NetworkMode::Bridge => setup_bridge(id, state_dir, spec, hostname, settings),
    };
    if result.is_err() {
        if let Err(e) = teardown(id, state_dir) {
            tracing::warn!("undoing the failed network setup of {id}: {e}");
        }
    }
    result
}

/// `none` and `host`: no CNI, only the files.
fn setup_local(
    state_dir: &Path,
    spec: &NetworkSpec,
    hostname: &str,
) -> Result<Setup, NetworkError> {
    Record {
        mode: spec.mode,
        ..Default::default()
    }
    .save(state_dir)?;
    let host = spec.mode == NetworkMode::Host;
    let files = write_files(state_dir, spec, hostname, None, None, host)?;
    Ok(Setup {
        attachment: Attachment {
            namespace: if host {
                Namespace::Host
            } else {
                Namespace::New
            },
            files,
            interface: None,
        },
        status: NetworkStatus {
            mode: spec.mode,
            bridge: None,
            interface: None,
            host_interface: None,
            ports: Vec::new(),
        },
        ports: PortReservation::default(),
    })
}

fn setup_bridge(
    id: &str,
    state_dir: &Path,
    spec: &NetworkSpec,
    hostname: &str,
    settings: &NetworkSettings,
) -> Result<Setup, NetworkError> {
    let network = format!("bridge {} ({})", settings.bridge, settings.subnet);
    let cni_err = |source: CniError| NetworkError::Cni {
        network: network.clone(),
        hint: hint(&source),
        source: Box::new(source),
    };
    // Everything that can be checked is checked before the first change.
    for plugin in PLUGINS {
        cni::find(&settings.cni_path, plugin).map_err(cni_err)?;
    }
    let (reservation, published) = ports::reserve(&spec.ports).map_err(NetworkError::Port)?;

    let netns_path = state_dir.join(NETNS);
    let mut record = Record {
        mode: NetworkMode::Bridge,
        netns: Some(netns_path.clone()),
        bridge: Some(settings.bridge.clone()),
        plugin_dirs: settings.cni_path.clone(),
        chain: chain(settings, spec, &published),
        loopback: Some(named(json!({"type": "loopback"}))),
        result: None,
        ports: published.clone(),
    };
    record.save(state_dir)?;
    netns::create(&netns_path).map_err(NetworkError::io("create network namespace"))?;

    let lo = record.context(id, "lo");
    if let Some(conf) = &record.loopback {
        cni::exec(&lo, Command::Add, conf).map_err(cni_err)?;
    }
    let result = {
        let _attaching =
            bridge::attach_lock(&settings.bridge).map_err(NetworkError::io("lock the bridge"))?;
        let ctx = record.context(id, IFNAME);
        let mut prev: Option<Value> = None;
        for conf in &record.chain {
            let conf = with_prev(conf, prev.as_ref());
            prev = Some(cni::exec(&ctx, Command::Add, &conf).map_err(cni_err)?);
        }
        prev.unwrap_or(Value::Null)
    };
    record.result = Some(result.clone());
    record.save(state_dir)?;

    let mut interface = parse_interface(&result).ok_or_else(|| {
        NetworkError::Invalid(format!(
            "{network}: the CNI result names no address on {IFNAME}: {result}"
        ))
    })?;
    interface.mtu = netns::run_in(&netns_path, || netdev::mtu(IFNAME))
        .map_err(NetworkError::io("read the MTU of eth0"))?;
    let files = write_files(
        state_dir,
        spec,
        hostname,
        Some(interface.address),
        Some(interface.gateway),
        false,
    )?;
    Ok(Setup {
        attachment: Attachment {
            namespace: Namespace::Join(netns_path),
            files,
            interface: Some(interface.clone()),
        },
        status: NetworkStatus {
            mode: NetworkMode::Bridge,
            bridge: Some(settings.bridge.clone()),
            interface: Some(interface),
            host_interface: host_veth(&result, &settings.bridge),
            ports: published,
        },
        ports: reservation,
    })
}

/// What to tell the user about a plugin failure, when hull knows.
fn hint(e: &CniError) -> &'static str {
    match e {
        CniError::Failed { msg, .. } if msg.contains("no IP addresses available") => {
            ": the subnet is exhausted (every address is leased); remove containers or give \
             network.subnet in the config file more room"
        }
        _ => "",
    }
}

/// Adds the fields every configuration of the network carries.
fn named(mut conf: Value) -> Value {
    conf["name"] = json!(NETWORK_NAME);
    conf["cniVersion"] = json!(cni::CNI_VERSION);
    conf
}

/// `conf` with `prevResult` set (when there is one).
fn with_prev(conf: &Value, prev: Option<&Value>) -> Value {
    let mut conf = conf.clone();
    if let Some(p) = prev {
        conf["prevResult"] = p.clone();
    }
    conf
}

/// The plugin chain for eth0.
fn chain(settings: &NetworkSettings, spec: &NetworkSpec, ports: &[PublishedPort]) -> Vec<Value> {
    let mut bridge = json!({
        "type": "bridge",
        "bridge": settings.bridge,
        "isGateway": true,
        "ipMasq": true,
        "hairpinMode": true,
        "ipam": {
            "type": "host-local",
            "ranges": [[{
                "subnet": settings.subnet.to_string(),
                "gateway": settings.subnet.gateway().to_string(),
            }]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": bridge::ipam_dir(&settings.bridge),
        },
    });
    if let Some(mtu) = settings.mtu {
        bridge["mtu"] = json!(mtu);
    }
    if let Some(mac) = &spec.mac {
        bridge["capabilities"] = json!({"mac": true});
        bridge["runtimeConfig"] = json!({"mac": mac});
    }
    let mut chain = vec![named(bridge)];
    if !ports.is_empty() {
        let mappings: Vec<Value> = ports
            .iter()
            .map(|p| {
                let mut m = json!({
                    "hostPort": p.host_port,
                    "containerPort": p.container_port,
                    "protocol": p.protocol.as_str(),
                });
                if !p.host_ip.is_unspecified() {
                    m["hostIP"] = json!(p.host_ip.to_string());
                }
                m
            })
            .collect();
        chain.push(named(json!({
            "type": "portmap",
            "capabilities": {"portMappings": true},
            "runtimeConfig": {"portMappings": mappings},
        })));
    }
    chain.push(named(json!({"type": "firewall", "backend": "iptables"})));
    chain
}

/// eth0 from a CNI 1.0 result: the sandbox interface and its IPv4 address.
fn parse_interface(result: &Value) -> Option<Interface> {
    let interfaces = result.get("interfaces")?.as_array()?;
    let index = interfaces.iter().position(|i| {
        i.get("sandbox")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
            && i.get("name").and_then(Value::as_str) == Some(IFNAME)
    })?;
    let mac = interfaces[index].get("mac")?.as_str()?.to_string();
    let ip = result.get("ips")?.as_array()?.iter().find(|ip| {
        ip.get("interface").and_then(Value::as_u64) == Some(index as u64)
            && ip.get("address").and_then(Value::as_str).is_some_and(|a| {
                a.split_once('/')
                    .is_some_and(|(a, _)| a.parse::<Ipv4Addr>().is_ok())
            })
    })?;
    let (address, prefix) = ip.get("address")?.as_str()?.split_once('/')?;
    Some(Interface {
        name: IFNAME.to_string(),
        mac,
        address: address.parse().ok()?,
        prefix: prefix.parse().ok().filter(|p| *p <= 32)?,
        gateway: ip.get("gateway")?.as_str()?.parse().ok()?,
        mtu: 1500,
    })
}

/// The host end of the veth pair from a CNI result: the interface outside the container
/// that is not the bridge.
fn host_veth(result: &Value, bridge: &str) -> Option<String> {
    result
        .get("interfaces")?
        .as_array()?
        .iter()
        .filter(|i| {
            i.get("sandbox")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
        })
        .filter_map(|i| i.get("name").and_then(Value::as_str))
        .find(|n| *n != bridge)
        .map(str::to_string)
}

fn write_files(
    state_dir: &Path,
    spec: &NetworkSpec,
    hostname: &str,
    address: Option<Ipv4Addr>,
    gateway: Option<Ipv4Addr>,
    host_namespace: bool,
) -> Result<Vec<EtcFile>, NetworkError> {
    let host_resolv = etc::read_host_file(Path::new("/etc/resolv.conf"));
    let host_hosts = etc::read_host_file(Path::new("/etc/hosts"));
    let dns = spec.dns.clone();
    let texts = [
        etc::resolv_conf(&host_resolv, &dns, host_namespace),
        etc::hosts(
            spec.mode,
            &host_hosts,
            hostname,
            address,
            gateway,
            &spec.extra_hosts,
        ),
        etc::hostname(hostname),
    ];
    let mut files = Vec::with_capacity(FILES.len());
    for ((name, container), text) in FILES.iter().zip(texts) {
        let host = state_dir.join(name);
        fs::write(&host, text).map_err(NetworkError::io(format!("write {}", host.display())))?;
        files.push(EtcFile {
            host,
            container: container.to_string(),
        });
    }
    Ok(files)
}

/// Undoes [`setup`] from the record alone: CNI DEL (in reverse, with ADD's result), the
/// namespace, the bridge if hull made it and nobody uses it, the files. Idempotent. On a
/// failed DEL the record stays, so a later teardown (`hull rm`) can finish the job.
pub fn teardown(id: &str, state_dir: &Path) -> Result<(), NetworkError> {
    let Some(record) = Record::load(state_dir)? else {
        remove_files(state_dir);
        return Ok(());
    };
    if record.mode == NetworkMode::Bridge {
        let network = record.network_name();
        let cni_err = |source: CniError| NetworkError::Cni {
            network: network.clone(),
            hint: "",
            source: Box::new(source),
        };
        let ctx = record.context(id, IFNAME);
        for conf in record.chain.iter().rev() {
            let conf = with_prev(conf, record.result.as_ref());
            cni::exec(&ctx, Command::Del, &conf).map_err(cni_err)?;
        }
        if let Some(conf) = &record.loopback {
            cni::exec(&record.context(id, "lo"), Command::Del, conf).map_err(cni_err)?;
        }
        if let Some(path) = &record.netns {
            netns::remove(path).map_err(NetworkError::io("remove network namespace"))?;
        }
        if let Some(name) = &record.bridge {
            if let Err(e) = bridge::remove_if_unused(name) {
                tracing::warn!("removing bridge {name}: {e}");
            }
        }
    }
    remove_files(state_dir);
    match fs::remove_file(state_dir.join(RECORD)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetworkError::io("remove network.json")(e)),
    }
}

fn remove_files(state_dir: &Path) {
    for (name, _) in FILES {
        let _ = fs::remove_file(state_dir.join(name));
    }
    let _ = fs::remove_file(state_dir.join(".network.json.tmp"));
}

/// Runs CNI CHECK for a running container's network: every plugin verifies that what its
/// ADD made is still in place. Returns what is wrong, named by plugin.
pub fn check(id: &str, state_dir: &Path) -> Result<(), NetworkError> {
    let Some(record) = Record::load(state_dir)? else {
        return Err(NetworkError::Invalid(
            "the container has no network set up (is it running?)".into(),
        ));
    };
    if record.mode != NetworkMode::Bridge {
        return Ok(());
    }
    let network = record.network_name();
    let Some(result) = &record.result else {
        return Err(NetworkError::Invalid(format!(
            "{network}: the container's network setup never completed"
        )));
    };
    let cni_err = |source: CniError| NetworkError::Cni {
        network: network.clone(),
        hint: "",
        source: Box::new(source),
    };
    if record.context(id, IFNAME).netns.is_none() {
        return Err(NetworkError::Invalid(format!(
            "{network}: the container's network namespace is gone"
        )));
    }
    if let Some(conf) = &record.loopback {
        cni::exec(&record.context(id, "lo"), Command::Check, conf).map_err(cni_err)?;
    }
    // Debian 12's portmap (1.1.1) CHECKs the IPv6 table too whenever ip6tables works, and
    // fails on IPv4-only networks like hull's ("could not check ipv6 dnat"); upstream fixed
    // it in 1.3.0 (commit fb5d195f, "Only check ipv6 when an IPv6 is configured"). Its
    // CHECK therefore runs with a PATH that offers iptables and no ip6tables.
    let v4_only = V4OnlyPath::new(state_dir)?;
    let mut ctx = record.context(id, IFNAME);
    for conf in &record.chain {
        ctx.exec_path = (conf["type"] == "portmap").then(|| v4_only.dir.as_os_str());
        cni::exec(&ctx, Command::Check, &with_prev(conf, Some(result))).map_err(cni_err)?;
    }
    Ok(())
}

/// A directory holding only an `iptables` link, removed on drop.
struct V4OnlyPath {
    dir: PathBuf,
}

impl V4OnlyPath {
    fn new(state_dir: &Path) -> Result<V4OnlyPath, NetworkError> {
        let iptables = std::env::split_paths(cni::PLUGIN_PATH)
            .map(|d| d.join("iptables"))
            .find(|p| p.exists())
            .ok_or_else(|| NetworkError::Invalid("iptables is not installed".into()))?;
        let dir = state_dir.join(".cni-check-path");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).map_err(NetworkError::io("create .cni-check-path"))?;
        let made = V4OnlyPath { dir };
        std::os::unix::fs::symlink(&iptables, made.dir.join("iptables"))
            .map_err(NetworkError::io("link iptables"))?;
        Ok(made)
    }
}

impl Drop for V4OnlyPath {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::request::{parse_publish, PortMapping};

    fn spec_with(ports: Vec<PortMapping>, mac: Option<&str>) -> NetworkSpec {
        NetworkSpec {
            mode: NetworkMode::Bridge,
            ports,
            mac: mac.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn chain_has_portmap_only_with_ports_and_names_every_plugin() {
        let settings = NetworkSettings::default();
        let c = chain(&settings, &spec_with(vec![], None), &[]);
        let types: Vec<&str> = c.iter().map(|p| p["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["bridge", "firewall"]);
        let published = [PublishedPort {
            host_ip: Ipv4Addr::LOCALHOST,
            host_port: 8080,
            container_port: 80,
            protocol: crate::network::Protocol::Tcp,
        }];
        let c = chain(
            &settings,
            &spec_with(
                vec![parse_publish("127.0.0.1:8080:80").unwrap()],
                Some("02:00:00:00:00:01"),
            ),
            &published,
        );
        let types: Vec<&str> = c.iter().map(|p| p["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["bridge", "portmap", "firewall"]);
        for p in &c {
            assert_eq!(p["name"], NETWORK_NAME);
            assert_eq!(p["cniVersion"], cni::CNI_VERSION);
        }
        assert_eq!(c[0]["bridge"], "hull0");
        assert_eq!(c[0]["ipam"]["ranges"][0][0]["gateway"], "10.87.0.1");
        assert_eq!(c[0]["runtimeConfig"]["mac"], "02:00:00:00:00:01");
        assert_eq!(
            c[1]["runtimeConfig"]["portMappings"][0],
            json!({"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"})
        );
    }

    #[test]
    fn interface_from_a_cni_result() {
        let result = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "hull0", "mac": "aa:aa:aa:aa:aa:aa"},
                {"name": "veth1", "mac": "bb:bb:bb:bb:bb:bb"},
                {"name": "eth0", "mac": "02:42:ac:11:00:02", "sandbox": "/x/netns"}
            ],
            "ips": [{"interface": 2, "address": "10.87.0.5/16", "gateway": "10.87.0.1"}]
        });
        let i = parse_interface(&result).unwrap();
        assert_eq!(i.address, Ipv4Addr::new(10, 87, 0, 5));
        assert_eq!(i.prefix, 16);
        assert_eq!(i.gateway, Ipv4Addr::new(10, 87, 0, 1));
        assert_eq!(i.mac, "02:42:ac:11:00:02");
        assert!(parse_interface(&json!({"interfaces": [], "ips": []})).is_none());
    }

    #[test]
    fn teardown_without_a_record_only_removes_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("hosts"), "x").unwrap();
        teardown("c", dir.path()).unwrap();
        assert!(!dir.path().join("hosts").exists());
    }

    #[test]
    fn none_mode_writes_files_and_no_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let spec = NetworkSpec {
            dns: vec!["192.0.2.53".parse().unwrap()],
            ..Default::default()
        };
        let s = setup("c", dir.path(), &spec, "box", &NetworkSettings::default()).unwrap();
        assert_eq!(s.attachment.namespace, Namespace::New);
        let names: Vec<&str> = s
            .attachment
            .files
            .iter()
            .map(|f| f.container.as_str())
            .collect();
        assert_eq!(names, ["/etc/resolv.conf", "/etc/hosts", "/etc/hostname"]);
        let resolv = fs::read_to_string(dir.path().join("resolv.conf")).unwrap();
        assert!(resolv.contains("nameserver 192.0.2.53"), "{resolv}");
        assert_eq!(
            fs::read_to_string(dir.path().join("hostname")).unwrap(),
            "box\n"
        );
        teardown("c", dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "nothing left");
    }
}
