//! Which isolation model runs a container created through `hull-oci`.
//!
//! In order: the bundle's annotation `io.hull.isolation=process|vm` (podman
//! `--annotation`, Kubernetes pod annotations that containerd passes through); then
//! hull's configuration file (`$HULL_ROOT/config.json`, default `/var/lib/hull/config.json`:
//! a `policies` entry whose `image` pattern matches the image named by the CRI's
//! `io.kubernetes.cri.image-name` annotation, else `default_isolation`); else `process`.
//!
//! Invoked as `hull-oci-vm` (a link to `hull-oci`, for a runtime handler that must always
//! give a VM, such as a Kubernetes RuntimeClass for untrusted pods) every workload runs in
//! a VM and an annotation asking for `process` is refused. The pod sandbox container
//! (`io.kubernetes.cri.container-type=sandbox`, the pause process that only holds the
//! pod's namespaces on the host) runs as a process there, as in Kata Containers, where the
//! pod's network namespace also stays on the host.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{OciError, Result};
use crate::features::ISOLATION_ANNOTATION;
use crate::state::Model;

/// Where hull keeps its configuration when `HULL_ROOT` is not set.
pub const DEFAULT_HULL_ROOT: &str = "/var/lib/hull";
/// The image name the CRI plugin of containerd writes into every container's spec.
pub const CRI_IMAGE_ANNOTATION: &str = "io.kubernetes.cri.image-name";
/// The CRI plugin's container type annotation (`sandbox` or `container`).
pub const CRI_TYPE_ANNOTATION: &str = "io.kubernetes.cri.container-type";
/// Largest configuration file read.
const MAX_CONFIG: u64 = 1 << 20;

/// How this binary was invoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invocation {
    /// `hull-oci`: annotation, then policy, then process.
    Default,
    /// `hull-oci-vm`: every workload in a VM.
    VmOnly,
}

impl Invocation {
    /// From argv[0]'s file name.
    pub fn from_argv0(argv0: &Path) -> Invocation {
        match argv0.file_name().and_then(|n| n.to_str()) {
            Some("hull-oci-vm") => Invocation::VmOnly,
            _ => Invocation::Default,
        }
    }
}

/// hull's configuration file, the parts hull-oci reads (others are ignored here).
#[derive(Debug, Default, Deserialize)]
pub struct HullConfig {
    /// Isolation when nothing else decides.
    #[serde(default)]
    pub default_isolation: Option<Model>,
    /// Per-image rules, first match wins.
    #[serde(default)]
    pub policies: Vec<Policy>,
}

/// One image → isolation rule.
#[derive(Debug, Clone, Deserialize)]
pub struct Policy {
    /// Image pattern, `*` as wildcard.
    pub image: String,
    /// Isolation for matching images.
    pub isolation: Model,
}

/// `$HULL_ROOT/config.json` (or the default root's).
pub fn config_path() -> PathBuf {
    let root = std::env::var_os("HULL_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_HULL_ROOT));
    root.join("config.json")
}

impl HullConfig {
    /// Reads the file; a missing file is the default configuration.
    pub fn load(path: &Path) -> Result<HullConfig> {
        let bad = |why: String| OciError::Runtime(format!("config file {}: {why}", path.display()));
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HullConfig::default()),
            Err(e) => return Err(bad(e.to_string())),
        };
        let mut text = Vec::new();
        file.take(MAX_CONFIG)
            .read_to_end(&mut text)
            .map_err(|e| bad(e.to_string()))?;
        serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))
    }
}

/// The model for a container with these annotations.
pub fn choose(
    annotations: &HashMap<String, String>,
    invocation: Invocation,
    config: &HullConfig,
) -> Result<Model> {
    let asked = match annotations.get(ISOLATION_ANNOTATION).map(String::as_str) {
        None => None,
        Some("process") => Some(Model::Process),
        Some("vm") => Some(Model::Vm),
        Some(other) => {
            return Err(OciError::Usage(format!(
                "annotation {ISOLATION_ANNOTATION}={other:?}: expected \"process\" or \"vm\""
            )))
        }
    };
    if invocation == Invocation::VmOnly {
        if asked == Some(Model::Process) {
            return Err(OciError::Usage(format!(
                "hull-oci-vm runs every container in a VM; annotation \
                 {ISOLATION_ANNOTATION}=process is refused"
            )));
        }
        let sandbox = annotations.get(CRI_TYPE_ANNOTATION).map(String::as_str) == Some("sandbox");
        return Ok(if sandbox && asked.is_none() {
            Model::Process
        } else {
            Model::Vm
        });
    }
    if let Some(model) = asked {
        return Ok(model);
    }
    if let Some(image) = annotations.get(CRI_IMAGE_ANNOTATION) {
        if let Some(p) = config.policies.iter().find(|p| glob_match(&p.image, image)) {
            return Ok(p.isolation);
        }
    }
    Ok(config.default_isolation.unwrap_or(Model::Process))
}

/// `*`-only glob matching (the same rule as hull's own policies).
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if text.len() < first.len() + last.len() || !text.starts_with(first) || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn annotation_then_policy_then_default_then_process() {
        let config: HullConfig = serde_json::from_str(
            r#"{"default_isolation":"vm","policies":[{"image":"docker.io/trusted/*","isolation":"process"}]}"#,
        )
        .unwrap();
        let none = HullConfig::default();
        let d = Invocation::Default;
        assert_eq!(choose(&ann(&[]), d, &none).unwrap(), Model::Process);
        assert_eq!(choose(&ann(&[]), d, &config).unwrap(), Model::Vm);
        let trusted = ann(&[(CRI_IMAGE_ANNOTATION, "docker.io/trusted/web:1")]);
        assert_eq!(choose(&trusted, d, &config).unwrap(), Model::Process);
        let asked = ann(&[
            (ISOLATION_ANNOTATION, "vm"),
            (CRI_IMAGE_ANNOTATION, "docker.io/trusted/web:1"),
        ]);
        assert_eq!(choose(&asked, d, &config).unwrap(), Model::Vm);
        let bad = ann(&[(ISOLATION_ANNOTATION, "hyperv")]);
        assert!(choose(&bad, d, &none)
            .unwrap_err()
            .to_string()
            .contains("hyperv"));
    }

    #[test]
    fn vm_only_invocation_gives_vms_except_to_the_pod_sandbox() {
        let v = Invocation::VmOnly;
        let none = HullConfig::default();
        assert_eq!(choose(&ann(&[]), v, &none).unwrap(), Model::Vm);
        let sandbox = ann(&[(CRI_TYPE_ANNOTATION, "sandbox")]);
        assert_eq!(choose(&sandbox, v, &none).unwrap(), Model::Process);
        let workload = ann(&[(CRI_TYPE_ANNOTATION, "container")]);
        assert_eq!(choose(&workload, v, &none).unwrap(), Model::Vm);
        let escape = ann(&[(ISOLATION_ANNOTATION, "process")]);
        assert!(choose(&escape, v, &none).is_err());
        assert_eq!(
            Invocation::from_argv0(Path::new("/usr/local/bin/hull-oci-vm")),
            Invocation::VmOnly
        );
        assert_eq!(
            Invocation::from_argv0(Path::new("hull-oci")),
            Invocation::Default
        );
    }

    #[test]
    fn globs() {
        assert!(glob_match("a*", "abc"));
        assert!(glob_match("*c", "abc"));
        assert!(glob_match("a*c*e", "abcde"));
        assert!(!glob_match("ab*ba", "aba"));
        assert!(!glob_match("a*", "b"));
        assert!(glob_match("exact", "exact"));
    }
}
