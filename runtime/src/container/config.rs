//! The optional configuration file (`StatePaths::config_file()`, JSON):
//!
//! ```json
//! {"default_isolation": "process",
//!  "policies": [{"image": "untrusted/*", "isolation": "vm", "network": "none"}],
//!  "network": {"default": "bridge", "bridge": "hull0", "subnet": "10.87.0.0/16"},
//!  "vm": {"jail": true, "jail_ids": {"start": 3221225472, "count": 65536}}}
//! ```
//!
//! The isolation of a new container is `--isolation` if given, else the first policy whose
//! image pattern (`*` matches any run of characters) matches the image reference, else
//! `default_isolation`, else `process`.
//!
//! Its network mode is `--network` if given, else `network.default`, else `bridge` (docker's
//! default). A policy's `network` is forced on the images it matches: a container of such an
//! image gets that mode, and asking for another one with `--network` is refused. The
//! `network` section is described in `crate::network::settings`.

use std::io::Read;

use serde::Deserialize;

use crate::isolation::IsolationKind;
use crate::network::{NetworkMode, NetworkSettings};
use crate::paths::StatePaths;

/// Largest config file read.
const MAX_CONFIG: u64 = 1 << 20;

/// One image → isolation rule.
#[derive(Debug, Clone, Deserialize)]
pub struct Policy {
    /// Image pattern, `*` as wildcard.
    pub image: String,
    /// Isolation for matching images.
    pub isolation: IsolationKind,
    /// Network mode forced on matching images (e.g. `none` for untrusted ones).
    #[serde(default)]
    pub network: Option<NetworkMode>,
}

/// The configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Isolation when neither the flag nor a policy decides.
    #[serde(default)]
    pub default_isolation: Option<IsolationKind>,
    /// Per-image rules, first match wins.
    #[serde(default)]
    pub policies: Vec<Policy>,
    /// Networking: default mode, bridge, subnet, CNI plugin directories.
    #[serde(default)]
    pub network: NetworkSettings,
    /// VM mode: the VMM's jail and its id range (read by the vm backend itself; here so
    /// that the file is checked as a whole).
    #[serde(default)]
    pub vm: crate::vm::jail::VmSettings,
}

/// A config file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("config file {path}: {reason}")]
pub struct ConfigError {
    path: String,
    reason: String,
}

impl Config {
    /// Loads the config file of `paths` (defaults when there is none).
    pub fn load(paths: &StatePaths) -> Result<Config, ConfigError> {
        let path = paths.config_file();
        let err = |reason: String| ConfigError {
            path: path.display().to_string(),
            reason,
        };
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(err(e.to_string())),
        };
        let mut text = String::new();
        file.take(MAX_CONFIG)
            .read_to_string(&mut text)
            .map_err(|e| err(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| err(e.to_string()))
    }

    /// The isolation for `image` given an optional explicit choice.
    pub fn isolation_for(&self, image: &str, explicit: Option<IsolationKind>) -> IsolationKind {
        explicit
            .or_else(|| {
                self.policies
                    .iter()
                    .find(|p| glob_match(&p.image, image))
                    .map(|p| p.isolation)
            })
            .or(self.default_isolation)
            .unwrap_or(IsolationKind::Process)
    }
}

impl Config {
    /// The network mode for `image` given an optional explicit `--network`: a policy's
    /// forced mode, else the flag, else `network.default`, else `bridge`. A flag that
    /// contradicts a policy is refused, naming the policy.
    pub fn network_for(
        &self,
        image: &str,
        explicit: Option<NetworkMode>,
    ) -> Result<NetworkMode, String> {
        let forced = self
            .policies
            .iter()
            .find(|p| glob_match(&p.image, image))
            .and_then(|p| p.network.map(|n| (n, &p.image)));
        match (forced, explicit) {
            (Some((forced, pattern)), Some(asked)) if asked != forced => Err(format!(
                "--network {asked} is not allowed for image {image}: the config file's policy \
                 for {pattern:?} forces --network {forced}"
            )),
            (Some((forced, _)), _) => Ok(forced),
            (None, Some(asked)) => Ok(asked),
            (None, None) => Ok(self.network.default.unwrap_or(NetworkMode::Bridge)),
        }
    }
}

/// `*`-only glob matching.
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
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

    #[test]
    fn policies_then_default_then_process() {
        let c: Config = serde_json::from_str(
            r#"{"default_isolation":"vm","policies":[{"image":"trusted/*","isolation":"process"}]}"#,
        )
        .unwrap();
        assert_eq!(
            c.isolation_for("trusted/web:1", None),
            IsolationKind::Process
        );
        assert_eq!(c.isolation_for("other/web:1", None), IsolationKind::Vm);
        assert_eq!(
            c.isolation_for("other/web:1", Some(IsolationKind::Process)),
            IsolationKind::Process
        );
        assert_eq!(
            Config::default().isolation_for("x", None),
            IsolationKind::Process
        );
    }

    #[test]
    fn globs() {
        assert!(glob_match("a*c", "abc"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("hull/*:latest", "hull/busybox:latest"));
        assert!(!glob_match("a*c", "abd"));
        assert!(!glob_match("abc", "abcd"));
    }

    #[test]
    fn network_mode_policy_flag_default() {
        let c: Config = serde_json::from_str(
            r#"{"policies":[{"image":"untrusted/*","isolation":"vm","network":"none"}],
                "network":{"default":"host"}}"#,
        )
        .unwrap();
        assert_eq!(c.network_for("untrusted/x", None), Ok(NetworkMode::None));
        assert_eq!(
            c.network_for("untrusted/x", Some(NetworkMode::None)),
            Ok(NetworkMode::None)
        );
        let e = c
            .network_for("untrusted/x", Some(NetworkMode::Bridge))
            .unwrap_err();
        assert!(
            e.contains("untrusted/*") && e.contains("forces --network none"),
            "{e}"
        );
        assert_eq!(c.network_for("other", None), Ok(NetworkMode::Host));
        assert_eq!(
            c.network_for("other", Some(NetworkMode::Bridge)),
            Ok(NetworkMode::Bridge)
        );
        assert_eq!(
            Config::default().network_for("x", None),
            Ok(NetworkMode::Bridge),
            "docker's default"
        );
    }

    #[test]
    fn bad_config_is_an_error() {
        assert!(serde_json::from_str::<Config>(r#"{"default_isolation":"hyperv"}"#).is_err());
    }
}
