//! Registry credentials in docker's `config.json` "auths" format.
//!
//! `hull login` writes `<root>/auth.json` (mode 0600, replaced atomically):
//! `{"auths": {"HOST[:PORT]": {"auth": "<base64 of user:password>"}}}`. Lookups read that
//! file first, then docker's own (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`), which hull never writes. Docker Hub's key there is
//! `https://index.docker.io/v1/`; hull accepts it and `docker.io` alike.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::RegistryError;
use crate::paths::StatePaths;

/// Largest credentials file read.
const MAX_FILE: u64 = 1 << 20;
/// Docker Hub's key in docker's config.json.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// A user name and password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <password>)", self.username)
    }
}

impl Credentials {
    /// The `Authorization: Basic ...` value.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    /// Anything else a docker config holds (kept when hull rewrites its own file).
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

/// hull's credentials file and the docker config it falls back to.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    path: PathBuf,
    docker: Option<PathBuf>,
}

impl CredentialStore {
    /// The store of a state root.
    pub fn new(paths: &StatePaths) -> CredentialStore {
        let docker = std::env::var_os("DOCKER_CONFIG")
            .map(|d| PathBuf::from(d).join("config.json"))
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
            });
        CredentialStore {
            path: paths.root.join("auth.json"),
            docker,
        }
    }

    /// The file `login` writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Credentials for `domain`, if any file has them.
    pub fn get(&self, domain: &str) -> Result<Option<Credentials>, RegistryError> {
        for path in std::iter::once(&self.path).chain(self.docker.as_ref()) {
            let file = read_file(path)?;
            for key in keys_for(domain) {
                if let Some(entry) = file.auths.get(&key) {
                    if let Some(c) = decode(entry, path)? {
                        return Ok(Some(c));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Saves credentials for `domain` (replacing any).
    pub fn set(&self, domain: &str, creds: &Credentials) -> Result<(), RegistryError> {
        let mut file = read_file(&self.path)?;
        let raw = format!("{}:{}", creds.username, creds.password);
        file.auths.insert(
            domain.to_string(),
            AuthEntry {
                auth: Some(base64::engine::general_purpose::STANDARD.encode(raw)),
                ..Default::default()
            },
        );
        self.write(&file)
    }

    /// Forgets the credentials for `domain`; whether there were any in hull's file.
    pub fn remove(&self, domain: &str) -> Result<bool, RegistryError> {
        let mut file = read_file(&self.path)?;
        let mut removed = false;
        for key in keys_for(domain) {
            removed |= file.auths.remove(&key).is_some();
        }
        if removed {
            self.write(&file)?;
        }
        Ok(removed)
    }

    fn write(&self, file: &AuthFile) -> Result<(), RegistryError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| RegistryError::Config {
                path: dir.display().to_string(),
                reason: e.to_string(),
            })?;
        }
        let bytes = serde_json::to_vec_pretty(file).expect("auth file serializes");
        // write_atomic creates the file 0600.
        crate::image::write_private_atomic(&self.path, &bytes).map_err(|e| RegistryError::Config {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })
    }
}

/// The keys a registry may be stored under.
fn keys_for(domain: &str) -> Vec<String> {
    let mut keys = vec![domain.to_string(), format!("https://{domain}")];
    if domain == "docker.io" {
        keys.extend([
            DOCKER_HUB_KEY.to_string(),
            "index.docker.io".to_string(),
            "registry-1.docker.io".to_string(),
        ]);
    }
    keys
}

fn read_file(path: &Path) -> Result<AuthFile, RegistryError> {
    let err = |reason: String| RegistryError::Config {
        path: path.display().to_string(),
        reason,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AuthFile::default()),
        Err(e) => return Err(err(e.to_string())),
    };
    let mut text = String::new();
    file.take(MAX_FILE)
        .read_to_string(&mut text)
        .map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(e.to_string()))
}

fn decode(entry: &AuthEntry, path: &Path) -> Result<Option<Credentials>, RegistryError> {
    if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
        return Ok(Some(Credentials {
            username: u.clone(),
            password: p.clone(),
        }));
    }
    let Some(auth) = &entry.auth else {
        return Ok(None);
    };
    let bad = |reason: &str| RegistryError::Config {
        path: path.display().to_string(),
        reason: reason.to_string(),
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| bad("an \"auth\" value is not base64"))?;
    let raw = String::from_utf8(raw).map_err(|_| bad("an \"auth\" value is not UTF-8"))?;
    let (u, p) = raw
        .split_once(':')
        .ok_or_else(|| bad("an \"auth\" value is not user:password"))?;
    Ok(Some(Credentials {
        username: u.to_string(),
        password: p.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn login_logout_and_docker_fallback() {
        let tmp = tempfile::tempdir().unwrap();
        let docker = tmp.path().join("docker.json");
        std::fs::write(
            &docker,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="}},"credsStore":"x"}"#,
        )
        .unwrap();
        let store = CredentialStore {
            path: tmp.path().join("root/auth.json"),
            docker: Some(docker),
        };
        let hub = store.get("docker.io").unwrap().unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("hub", "secret")
        );
        assert_eq!(store.get("localhost:5000").unwrap(), None);

        let c = Credentials {
            username: "u".into(),
            password: "p:w".into(),
        };
        store.set("localhost:5000", &c).unwrap();
        assert_eq!(store.get("localhost:5000").unwrap(), Some(c.clone()));
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(c.basic_header(), "Basic dTpwOnc=");
        assert!(store.remove("localhost:5000").unwrap());
        assert!(!store.remove("localhost:5000").unwrap());
        assert_eq!(store.get("localhost:5000").unwrap(), None);
    }
}
