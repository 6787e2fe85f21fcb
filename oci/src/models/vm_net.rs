//! The vm model's network: the caller (containerd/CRI, podman with `--network ns:PATH`)
//! made a network namespace, ran CNI in it and gave its path in config.json. The VM takes
//! the place of the interface found there, exactly as hull's own vm containers do with
//! the interface hull's CNI setup made (`hull_runtime::network::vmlink`, one copy of that
//! code): a TAP in that namespace tied to the interface by tc mirred both ways, the VMM
//! living in the namespace, and the agent configuring the guest's eth0 with the
//! interface's MAC, address, gateway and MTU.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use hull_protocol as proto;
use hull_runtime::network::{discover, netns, vmlink, Interface};
use hull_runtime::vm::machine::NetDevice;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};

use crate::error::{OciError, Result};

/// What `create` found in the caller's namespace, for the keeper.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootNet {
    /// The namespace's path from config.json.
    pub netns: PathBuf,
    /// The interface the VM takes the place of.
    pub interface: Interface,
}

/// The spec's network namespace path, if it names one to join.
fn netns_path(spec: &Spec) -> Option<&Path> {
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Network)?
        .path()
        .as_deref()
}

/// Reads the interface of the namespace config.json names. `None` without a path, or
/// when the namespace has loopback only (the guest then has loopback only too).
pub fn plan(spec: &Spec) -> Result<Option<BootNet>> {
    let Some(path) = netns_path(spec) else {
        return Ok(None);
    };
    if !netns::is_pinned(path) {
        return Err(OciError::Usage(format!(
            "linux.namespaces: network path {} is not a network namespace",
            path.display()
        )));
    }
    let interface = discover::interface(path).map_err(|e| OciError::Runtime(e.to_string()))?;
    Ok(interface.map(|interface| BootNet {
        netns: path.to_path_buf(),
        interface,
    }))
}

/// The guest's network: eth0 as the interface was. The /etc files reach the guest as the
/// spec's bind mounts (copied into the root disk), not here.
pub fn guest(net: &BootNet) -> proto::Network {
    let i = &net.interface;
    proto::Network {
        interface: Some(proto::Interface {
            mac: i.mac.clone(),
            address: i.address,
            prefix: i.prefix,
            gateway: i.gateway,
            mtu: i.mtu,
        }),
        files: Vec::new(),
    }
}

/// The VM's NIC, made in the keeper: the TAP (keep it until the VMM runs) and its device.
/// The calling thread joins the namespace, so the VMM it starts lives there (what the
/// jail's `--jail-netns` does for a jailed VMM).
pub fn attach(net: &BootNet) -> Result<(OwnedFd, NetDevice)> {
    let link = vmlink::link_in(&net.netns, &net.interface)
        .map_err(|e| OciError::Runtime(format!("network: {e}")))?;
    let joined = netns::open(&net.netns).and_then(|ns| {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(Into::into)
    });
    if let Err(e) = joined {
        detach(net);
        return Err(OciError::io(
            format!("join network namespace {}", net.netns.display()),
            e,
        ));
    }
    let device = NetDevice {
        tap_fd: link.tap.as_raw_fd(),
        mac: link.mac.clone(),
        mtu: link.mtu,
        netns: net.netns.clone(),
    };
    Ok((link.tap, device))
}

/// Removes the redirect from the caller's interface (the TAP went with the VMM); the
/// namespace and the interface are the caller's and stay.
pub fn detach(net: &BootNet) {
    vmlink::unlink_in(&net.netns, &net.interface.name);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_that_is_no_namespace_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-netns");
        std::fs::write(&file, "").unwrap();
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2", "root": {"path": "rootfs"},
            "linux": {"namespaces": [{"type": "mount"},
                {"type": "network", "path": file}]}
        }))
        .unwrap();
        let e = plan(&spec).unwrap_err().to_string();
        assert!(
            e.contains("not a network namespace") && e.contains("not-a-netns"),
            "{e}"
        );
        let no_path: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2", "root": {"path": "rootfs"},
            "linux": {"namespaces": [{"type": "mount"}, {"type": "network"}]}
        }))
        .unwrap();
        assert!(plan(&no_path).unwrap().is_none());
    }
}
