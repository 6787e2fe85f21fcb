//! The OCI runtime path's network: containerd (CRI) and podman make a network namespace,
//! wire it with CNI themselves, and give hull-oci its path in config.json
//! (`linux.namespaces: {type: network, path}`). The container must run in *that*
//! namespace (reachable at the address CNI gave it), and hull-oci must leave the namespace
//! and its interface to their owner. The vm model's half of this (the interface found
//! there, a TAP tied to it) is checked here on the host without a VM, and end to end in
//! the harness (harness_oci_vm).
//!
//! `HULL_OCI_TEST_RUNTIME=/usr/sbin/runc` runs the process tests against runc.

mod network_common;
mod process_common;

use std::fs;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use hull_tests::oci::{default_config, poll, runtime, show, unique, Bundle};
use network_common::cni_netns::CniNetns;
use network_common::{claim_slot, http_get};
use serde_json::{json, Value};

fn oci(root: &Path, args: &[&str]) -> Output {
    Command::new(runtime())
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the runtime")
}

/// config.json for `args` with the network namespace at `netns` joined.
fn config_joining(netns: &Path, args: &[&str]) -> Value {
    let mut config = default_config(args);
    config["linux"]["namespaces"] = json!([
        {"type": "pid"}, {"type": "network", "path": netns}, {"type": "ipc"},
        {"type": "uts"}, {"type": "mount"}
    ]);
    config
}

/// `create` with the container's output to files in the bundle; `start` unless it failed.
fn create(root: &Path, bundle: &Bundle, id: &str) -> Output {
    let out = |n: &str| fs::File::create(bundle.path().join(n)).unwrap();
    let pid_file = bundle.path().join("pid");
    let created = Command::new(runtime())
        .arg("--root")
        .arg(root)
        .args(["create", "--bundle"])
        .arg(bundle.path())
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(out("stdout"))
        .stderr(out("stderr"))
        .output()
        .unwrap();
    Output {
        stderr: fs::read(bundle.path().join("stderr")).unwrap_or_default(),
        ..created
    }
}

/// A state root whose containers are force-deleted when the test ends, even on a failed
/// assertion (the containers' cgroups and processes must not outlive the test).
struct OciRoot(tempfile::TempDir);

impl OciRoot {
    fn new() -> OciRoot {
        OciRoot(
            tempfile::Builder::new()
                .prefix("hull-oci-root-")
                .tempdir()
                .unwrap(),
        )
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for OciRoot {
    fn drop(&mut self) {
        for id in leftovers(self.path()) {
            let _ = oci(self.path(), &["delete", "--force", &id]);
        }
    }
}

fn leftovers(root: &Path) -> Vec<String> {
    fs::read_dir(root)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_process_container_runs_in_the_namespace_containerd_made() {
    let (_slot_lock, slot) = claim_slot();
    let ns = CniNetns::new(slot, "hoci-net");
    let root = OciRoot::new();
    // The page is what the container sees as its eth0: served from inside, fetched from
    // the host through the bridge at the address CNI gave.
    let bundle = Bundle::with_config(config_joining(
        &ns.path,
        &[
            "sh",
            "-c",
            "mkdir /www && ip -4 -o addr show dev eth0 > /www/index.html && \
             cat /sys/class/net/eth0/address >> /www/index.html && \
             exec httpd -f -p 8080 -h /www",
        ],
    ));
    let id = unique("onet");
    let out = create(root.path(), &bundle, &id);
    assert!(out.status.success(), "create: {}", show(&out));
    let out = oci(root.path(), &["start", &id]);
    assert!(out.status.success(), "start: {}", show(&out));

    let addr = SocketAddr::from((ns.address, 8080));
    let page = poll(
        &format!("the container's httpd at {addr}"),
        Duration::from_secs(30),
        || http_get(addr, Duration::from_secs(5)).ok(),
    );
    assert!(
        page.contains(&format!("inet {}/24", ns.address)),
        "the container's eth0 is not the one CNI made: {page}"
    );
    assert!(page.contains(&ns.mac), "eth0's MAC {}: {page}", ns.mac);

    let out = oci(root.path(), &["kill", &id, "KILL"]);
    assert!(out.status.success(), "kill: {}", show(&out));
    poll("the container stopped", Duration::from_secs(30), || {
        let st = oci(root.path(), &["state", &id]);
        String::from_utf8_lossy(&st.stdout)
            .contains("\"stopped\"")
            .then_some(())
    });
    let out = oci(root.path(), &["delete", &id]);
    assert!(out.status.success(), "delete: {}", show(&out));
    assert_eq!(leftovers(root.path()), Vec::<String>::new());

    // The namespace and its interface are containerd's: still there, still addressed.
    assert!(
        ns.path.exists(),
        "the runtime removed the caller's namespace"
    );
    let ip = ns.exec(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(
        String::from_utf8_lossy(&ip.stdout).contains(&ns.address.to_string()),
        "eth0 changed: {}",
        show(&ip)
    );
    ns.delete_and_check();
}

#[test]
fn a_network_path_that_is_no_namespace_is_refused_and_leaves_nothing() {
    let root = OciRoot::new();
    let scratch = tempfile::tempdir().unwrap();
    let plain = scratch.path().join("plain-file");
    fs::write(&plain, "").unwrap();
    let missing = scratch.path().join("no-such-netns");
    for bad in [&plain, &missing] {
        let bundle = Bundle::with_config(config_joining(bad, &["true"]));
        let id = unique("onet-bad");
        let out = create(root.path(), &bundle, &id);
        assert!(
            !out.status.success(),
            "{} accepted: {}",
            bad.display(),
            show(&out)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        if hull_tests::oci::is_hull() {
            assert!(
                err.contains(&bad.display().to_string()),
                "the error does not name the path: {err}"
            );
        }
        assert!(!bundle.path().join("pid").exists());
        assert_eq!(leftovers(root.path()), Vec::<String>::new(), "{err}");
    }
}

/// The vm model's network half, on this host (no VM): the interface found in the
/// caller's namespace is the one CNI made; the TAP tied to it carries frames both ways
/// (an ARP request written as the guest would comes back answered by the bridge); a
/// second VM in the namespace is refused; undone, nothing of it is left.
#[test]
fn the_vm_models_tap_takes_the_place_of_the_interface_found() {
    use hull_runtime::network::{discover, vmlink};
    let (_slot_lock, slot) = claim_slot();
    let ns = CniNetns::new(slot, "hoci-vmnet");
    let found = discover::interface(&ns.path)
        .unwrap()
        .expect("an interface in the namespace");
    assert_eq!(found.name, "eth0");
    assert_eq!(found.address, ns.address);
    assert_eq!(found.prefix, 24);
    assert_eq!(found.gateway, ns.gateway);
    assert_eq!(found.mac, ns.mac);
    assert_eq!(found.mtu, 1500);

    let link = vmlink::link_in(&ns.path, &found).unwrap();
    let again = discover::interface(&ns.path).unwrap_err().to_string();
    assert!(again.contains("already holds a VM's NIC"), "{again}");

    // An ARP who-has for the gateway, from the container's MAC and address, behind the
    // 10-byte virtio-net header the TAP was opened with.
    let mac: Vec<u8> = found
        .mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    let mut frame = vec![0u8; 10];
    frame.extend([0xff; 6]);
    frame.extend(&mac);
    frame.extend([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    frame.extend(&mac);
    frame.extend(found.address.octets());
    frame.extend([0; 6]);
    frame.extend(found.gateway.octets());
    let mut tap = fs::File::from(link.tap);
    tap.write_all(&frame).unwrap();
    let mut pfd = libc::pollfd {
        fd: tap.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let mut reply = vec![0u8; 2048];
    poll("an ARP reply on the TAP", Duration::from_secs(10), || {
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 200) } <= 0 {
            return None;
        }
        let n = tap.read(&mut reply).ok()?;
        let f = &reply[10..n];
        // ARP, opcode 2 (reply), sender = the gateway, addressed to us.
        (f.len() >= 42
            && f[12..14] == [0x08, 0x06]
            && f[20..22] == [0, 2]
            && f[28..32] == found.gateway.octets()
            && f[0..6] == mac[..])
            .then_some(())
    });

    drop(tap);
    vmlink::unlink_in(&ns.path, &found.name);
    let qdiscs = ns.exec(&["tc", "qdisc", "show", "dev", "eth0"]);
    assert!(
        !String::from_utf8_lossy(&qdiscs.stdout).contains("ingress"),
        "the redirect stayed on eth0: {}",
        show(&qdiscs)
    );
    let links = ns.exec(&["ip", "-o", "link"]);
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains(vmlink::TAP_NAME),
        "the TAP outlived its descriptor: {}",
        show(&links)
    );
    ns.delete_and_check();
}
