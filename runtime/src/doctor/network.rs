//! The container network's host parts: the CNI reference plugins hull runs for
//! `--network bridge` (the default) and a working iptables (the bridge, portmap and
//! firewall plugins write their rules with it). Missing either, `--network none` and
//! `--network host` still work, so it is a warning, not a verdict on the models.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::checks::{ok, problem};
use super::{Affects, Check, HostFacts, Status};
use crate::network::settings::DEFAULT_CNI_PATH;
use crate::network::NetworkSettings;

/// The plugins hull's bridge network runs (docs/network.md).
const PLUGINS: [&str; 5] = ["bridge", "host-local", "portmap", "firewall", "loopback"];

const ID: &str = "network";
const TITLE: &str = "Container networks (CNI plugins, iptables)";

/// The plugin directories of the state root's config (`network.cni_path`), else hull's
/// defaults.
fn plugin_dirs(facts: &HostFacts) -> Vec<PathBuf> {
    let configured = std::fs::read(facts.state.config_file())
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| serde_json::from_value::<NetworkSettings>(v.get("network")?.clone()).ok())
        .map(|n| n.cni_path);
    configured.unwrap_or_else(|| DEFAULT_CNI_PATH.iter().map(PathBuf::from).collect())
}

/// Whether iptables answers for the nat table (only on the real host: a crafted
/// `--host-root` has no kernel to ask). `None`: not probed.
fn iptables_works(facts: &HostFacts, iptables: &std::path::Path) -> Option<Result<(), String>> {
    if facts.host_root != std::path::Path::new("/") {
        return None;
    }
    let out = Command::new(iptables)
        .args(["-w", "5", "-t", "nat", "-S", "POSTROUTING"])
        .stdin(Stdio::null())
        .output();
    Some(match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
        Err(e) => Err(e.to_string()),
    })
}

pub(super) fn check_network(facts: &HostFacts) -> Check {
    let dirs = plugin_dirs(facts);
    let missing: Vec<&str> = PLUGINS
        .into_iter()
        .filter(|p| {
            !dirs.iter().any(|d| {
                super::facts::is_executable(&facts.host_path(&d.to_string_lossy()).join(p))
            })
        })
        .collect();
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    if !missing.is_empty() {
        return problem(
            ID,
            TITLE,
            Status::Warn,
            Affects::Both,
            format!(
                "CNI plugin(s) {} not found in {}: `--network bridge` (the default) and `-p` \
                 fail; `--network none` works",
                missing.join(", "),
                shown.join(":")
            ),
            "apt-get install containernetworking-plugins (or set network.cni_path in the \
             config file to where the plugins are)"
                .into(),
        );
    }
    let Some(iptables) = facts.which("iptables") else {
        return problem(
            ID,
            TITLE,
            Status::Warn,
            Affects::Both,
            "iptables is not installed: the bridge plugin's masquerade and portmap's published \
             ports need it; `--network none` works"
                .into(),
            "apt-get install iptables".into(),
        );
    };
    match iptables_works(facts, &iptables) {
        Some(Err(why)) => problem(
            ID,
            TITLE,
            Status::Warn,
            Affects::Both,
            format!(
                "{} cannot read the nat table ({why}): bridge networking will fail",
                iptables.display()
            ),
            "load the nf_tables (or ip_tables) and nf_nat modules, and run hull as root".into(),
        ),
        probed => ok(
            ID,
            TITLE,
            Affects::Both,
            format!(
                "CNI plugins {} in {}; {}{}",
                PLUGINS.join(", "),
                shown.join(":"),
                iptables.display(),
                if probed.is_some() {
                    " reads the nat table"
                } else {
                    ""
                }
            ),
        ),
    }
}
