//! Manifests and indexes as registries serve them, and platform selection.

use serde::{Deserialize, Serialize};

use super::RegistryError;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 1 (signed or not): refused.
const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];
/// The `Accept` header of manifest requests.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// A content descriptor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the content.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Platform (index entries only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// An index entry's platform.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `linux`, ...
    pub os: String,
    /// `v7`, `v8`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// This host's platform (`linux/amd64` on x86_64).
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            other => other,
        };
        Platform {
            architecture: architecture.into(),
            os: "linux".into(),
            variant: None,
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, RegistryError> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok =
            |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
            }),
            _ => Err(RegistryError::invalid(
                format!("platform {s:?}"),
                "expected OS/ARCH[/VARIANT], e.g. linux/amd64",
            )),
        }
    }

    /// Whether an index entry's platform serves this wanted platform (a wanted variant
    /// must match; an entry's variant is accepted when none is wanted).
    fn serves(&self, entry: &Platform) -> bool {
        entry.os == self.os
            && entry.architecture == self.architecture
            && (self.variant.is_none() || self.variant == entry.variant)
    }
}

/// An image manifest (OCI or docker schema 2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// Present in docker manifests and (optionally) OCI ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// Layers, lowest first.
    pub layers: Vec<Descriptor>,
}

/// An index / manifest list.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The platform manifests.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// What a manifest request returned, by its type.
#[derive(Debug)]
pub enum Fetched {
    /// An image manifest.
    Manifest(Manifest),
    /// An index to choose from.
    Index(Index),
}

/// Decides the kind of a manifest body from its Content-Type and its own mediaType.
pub fn classify(content_type: &str, bytes: &[u8]) -> Result<Fetched, RegistryError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        schema_version: Option<u32>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::invalid("manifest", e.to_string()))?;
    let declared = probe.media_type.clone().unwrap_or_else(|| {
        content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    });
    if DOCKER_SCHEMA1.contains(&declared.as_str()) || probe.schema_version == Some(1) {
        return Err(RegistryError::invalid(
            "manifest",
            "docker schema 1 manifests are not supported (deprecated since 2017)",
        ));
    }
    if probe.schema_version != Some(2) {
        return Err(RegistryError::invalid("manifest", "schemaVersion is not 2"));
    }
    let is_index = matches!(declared.as_str(), OCI_INDEX | DOCKER_LIST)
        || (declared.is_empty() && probe.manifests.is_some());
    if is_index {
        let index: Index = serde_json::from_slice(bytes)
            .map_err(|e| RegistryError::invalid("image index", e.to_string()))?;
        return Ok(Fetched::Index(index));
    }
    if !matches!(declared.as_str(), OCI_MANIFEST | DOCKER_MANIFEST | "") {
        return Err(RegistryError::invalid(
            "manifest",
            format!("unsupported media type {declared:?}"),
        ));
    }
    let manifest: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::invalid("manifest", e.to_string()))?;
    Ok(Fetched::Manifest(manifest))
}

/// Picks the entry of `index` for `wanted`: image manifests only; an exact variant
/// match first, then the first entry of that OS and architecture.
pub fn choose<'a>(index: &'a Index, wanted: &Platform) -> Result<&'a Descriptor, RegistryError> {
    let images = || {
        index
            .manifests
            .iter()
            .filter(|d| matches!(d.media_type.as_str(), OCI_MANIFEST | DOCKER_MANIFEST))
    };
    let exact = images().find(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| wanted.serves(p) && p.variant == wanted.variant)
    });
    if let Some(d) =
        exact.or_else(|| images().find(|d| d.platform.as_ref().is_some_and(|p| wanted.serves(p))))
    {
        return Ok(d);
    }
    let available: Vec<String> = images()
        .filter_map(|d| d.platform.as_ref())
        .filter(|p| p.os != "unknown")
        .map(|p| p.to_string())
        .collect();
    Err(RegistryError::NoPlatform {
        wanted: wanted.to_string(),
        available: if available.is_empty() {
            "none".into()
        } else {
            available.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(os: &str, arch: &str, variant: Option<&str>, n: u8) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{}", format!("{n:02x}").repeat(32)),
            size: 1,
            platform: Some(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(Into::into),
            }),
        }
    }

    #[test]
    fn chooses_the_platform() {
        let index = Index {
            schema_version: 2,
            manifests: vec![
                entry("unknown", "unknown", None, 0),
                entry("linux", "arm", Some("v6"), 1),
                entry("linux", "arm", Some("v7"), 2),
                entry("linux", "amd64", None, 3),
                entry("linux", "arm64", Some("v8"), 4),
            ],
        };
        let pick = |p: &str| {
            choose(&index, &Platform::parse(p).unwrap())
                .unwrap()
                .digest
                .clone()
        };
        assert_eq!(pick("linux/amd64"), index.manifests[3].digest);
        assert_eq!(pick("linux/arm/v7"), index.manifests[2].digest);
        assert_eq!(pick("linux/arm"), index.manifests[1].digest);
        assert_eq!(pick("linux/arm64"), index.manifests[4].digest);
        let err = choose(&index, &Platform::parse("linux/s390x").unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no image for linux/s390x in the index (it has linux/arm/v6, linux/arm/v7, linux/amd64, linux/arm64/v8)"
        );
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux/../x").is_err());
    }

    #[test]
    fn classifies_manifests() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"x","digest":"sha256:00","size":1},"layers":[]}"#;
        assert!(matches!(classify("", m).unwrap(), Fetched::Manifest(_)));
        let i = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(classify(OCI_INDEX, i).unwrap(), Fetched::Index(_)));
        assert!(matches!(classify("", i).unwrap(), Fetched::Index(_)));
        let s1 = br#"{"schemaVersion":1,"name":"x"}"#;
        assert!(classify("", s1)
            .unwrap_err()
            .to_string()
            .contains("schema 1"));
        assert!(classify("", b"[").is_err());
    }
}
