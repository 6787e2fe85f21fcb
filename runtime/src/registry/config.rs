//! Per-registry settings: `<root>/registries.json` and docker's certificate layout.
//!
//! ```json
//! {"insecure": ["build.lan:5000"],
//!  "mirrors": {"docker.io": ["mirror.lan:5000"]}}
//! ```
//!
//! - `insecure`: registries that may be reached over plain HTTP, and over HTTPS without
//!   certificate verification (docker's `insecure-registries`). Loopback registries
//!   (`localhost`, `127.0.0.0/8`, `::1`) may always fall back to plain HTTP, but their
//!   certificates are verified when they speak TLS.
//! - `mirrors`: registries tried in order before the named one, with the same
//!   repository path; the first that serves the manifest serves the blobs too. Every
//!   digest is still verified, so a mirror can serve an older tag but never other bytes
//!   for a digest.
//! - `<root>/certs.d/HOST:PORT/ca.crt` (or `HOST/ca.crt`): extra CA certificates (PEM)
//!   trusted for that registry, besides the system roots.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::RegistryError;
use crate::paths::StatePaths;

/// Largest registries.json read.
const MAX_CONFIG: u64 = 1 << 20;
/// Largest ca.crt read.
const MAX_CA_FILE: u64 = 1 << 20;

/// The settings of `registries.json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConfig {
    /// Registries allowed over plain HTTP or unverified TLS.
    #[serde(default)]
    pub insecure: Vec<String>,
    /// Mirrors per registry domain.
    #[serde(default)]
    pub mirrors: HashMap<String, Vec<String>>,
    /// Where `certs.d` is (not in the file).
    #[serde(skip)]
    pub certs_dir: PathBuf,
}

impl RegistriesConfig {
    /// Loads `<root>/registries.json` (defaults when there is none).
    pub fn load(paths: &StatePaths) -> Result<RegistriesConfig, RegistryError> {
        let path = paths.root.join("registries.json");
        let err = |reason: String| RegistryError::Config {
            path: path.display().to_string(),
            reason,
        };
        let mut config = match std::fs::File::open(&path) {
            Ok(file) => {
                let mut text = String::new();
                file.take(MAX_CONFIG)
                    .read_to_string(&mut text)
                    .map_err(|e| err(e.to_string()))?;
                serde_json::from_str(&text).map_err(|e| err(e.to_string()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RegistriesConfig::default(),
            Err(e) => return Err(err(e.to_string())),
        };
        config.certs_dir = paths.root.join("certs.d");
        Ok(config)
    }

    /// Whether `domain` is listed as insecure.
    pub fn is_insecure(&self, domain: &str) -> bool {
        self.insecure.iter().any(|d| d == domain)
    }

    /// Whether plain HTTP may be used for `domain`: loopback or listed insecure.
    pub fn allows_http(&self, domain: &str) -> bool {
        is_loopback(domain) || self.is_insecure(domain)
    }

    /// The mirrors configured for `domain`, in order.
    pub fn mirrors_of(&self, domain: &str) -> &[String] {
        self.mirrors.get(domain).map_or(&[], Vec::as_slice)
    }

    /// PEM bytes of the extra CA certificates for `domain` (docker's `certs.d` layout:
    /// `HOST:PORT/` first, then `HOST/`; every `*.crt` in the directory).
    pub fn extra_ca_pem(&self, domain: &str) -> Result<Vec<Vec<u8>>, RegistryError> {
        let host = host_of(domain);
        let mut pems = Vec::new();
        for dir in [self.certs_dir.join(domain), self.certs_dir.join(host)] {
            if !dir.is_dir() {
                continue;
            }
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|e| RegistryError::Config {
                    path: dir.display().to_string(),
                    reason: e.to_string(),
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "crt"))
                .collect();
            files.sort();
            for file in files {
                pems.push(read_small(&file)?);
            }
            break;
        }
        Ok(pems)
    }
}

fn read_small(path: &Path) -> Result<Vec<u8>, RegistryError> {
    let err = |reason: String| RegistryError::Config {
        path: path.display().to_string(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_CA_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| err(e.to_string()))?;
    if bytes.len() as u64 > MAX_CA_FILE {
        return Err(err(format!("larger than {MAX_CA_FILE} bytes")));
    }
    Ok(bytes)
}

/// The host part of `host[:port]` (`[v6]` keeps its brackets).
pub fn host_of(domain: &str) -> &str {
    if domain.starts_with('[') {
        return domain
            .split_once(']')
            .map_or(domain, |(h, _)| &domain[..h.len() + 1]);
    }
    domain.split_once(':').map_or(domain, |(h, _)| h)
}

/// `localhost`, `127.0.0.0/8` and `::1`, with or without a port.
pub fn is_loopback(domain: &str) -> bool {
    let host = host_of(domain);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_insecure() {
        for d in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:1",
            "127.5.0.1",
            "[::1]:5000",
        ] {
            assert!(is_loopback(d), "{d}");
        }
        for d in [
            "example.com",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[::2]:5",
        ] {
            assert!(!is_loopback(d), "{d}");
        }
        let config: RegistriesConfig =
            serde_json::from_str(r#"{"insecure":["build.lan:5000"]}"#).unwrap();
        assert!(config.allows_http("build.lan:5000"));
        assert!(!config.allows_http("build.lan"));
        assert!(config.allows_http("localhost:1"));
        assert!(serde_json::from_str::<RegistriesConfig>(r#"{"bogus":1}"#).is_err());
    }

    #[test]
    fn ca_files_by_host_and_port_first() {
        let tmp = tempfile::tempdir().unwrap();
        let config = RegistriesConfig {
            certs_dir: tmp.path().to_path_buf(),
            ..Default::default()
        };
        std::fs::create_dir_all(tmp.path().join("reg.lan:5000")).unwrap();
        std::fs::create_dir_all(tmp.path().join("reg.lan")).unwrap();
        std::fs::write(tmp.path().join("reg.lan:5000/ca.crt"), b"port").unwrap();
        std::fs::write(tmp.path().join("reg.lan/ca.crt"), b"host").unwrap();
        assert_eq!(config.extra_ca_pem("reg.lan:5000").unwrap(), vec![b"port"]);
        assert_eq!(config.extra_ca_pem("reg.lan").unwrap(), vec![b"host"]);
        assert_eq!(config.extra_ca_pem("reg.lan:6000").unwrap(), vec![b"host"]);
        assert!(config.extra_ca_pem("other").unwrap().is_empty());
    }
}
