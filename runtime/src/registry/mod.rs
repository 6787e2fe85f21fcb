//! Registries: the OCI distribution API over a blocking HTTP client (ureq with rustls),
//! for `hull pull`, `push` and `login`.
//!
//! Everything a registry sends is hostile: manifests, indexes, configs and error bodies
//! are bounded before they are read, every digest and size is verified, layers go
//! through the image store's verified import (nothing is stored unless all of it
//! verified), redirects follow the policy in `client`, and credentials never leave for
//! another host except the token server the registry named.

mod auth;
mod blob;
mod client;
pub mod config;
pub mod credentials;
pub mod manifest;
mod pull;
mod push;

use std::sync::Arc;

pub use client::Registry;
pub use config::RegistriesConfig;
pub use credentials::{CredentialStore, Credentials};
pub use manifest::Platform;
pub use pull::{pull, PullOptions, PullOutcome};
pub use push::{push, PushOptions, PushOutcome};

use crate::image::ImageError;
use crate::paths::StatePaths;

/// Everything that can go wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The connection failed (refused, reset, TLS, timeout).
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },

    /// The registry answered with an unexpected status.
    #[error("{what}: HTTP {status}: {message}")]
    Status {
        what: String,
        status: u16,
        message: String,
    },

    /// Authentication failed or is needed.
    #[error("{registry}: {reason}")]
    Unauthorized {
        registry: String,
        scope: String,
        reason: String,
    },

    /// The tag or digest does not exist.
    #[error("{reference}: not found in the registry ({message})")]
    NotFound { reference: String, message: String },

    /// A redirect hull does not follow.
    #[error("refusing redirect from {from} to {to}: {reason}")]
    Redirect {
        from: String,
        to: String,
        reason: String,
    },

    /// Content over a bound.
    #[error("{what} exceeds the limit of {limit} bytes")]
    TooLarge { what: String, limit: u64 },

    /// An index without this platform.
    #[error("no image for {wanted} in the index (it has {available})")]
    NoPlatform { wanted: String, available: String },

    /// Malformed content.
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },

    /// A configuration or credentials file that cannot be used.
    #[error("{path}: {reason}")]
    Config { path: String, reason: String },

    /// The image store refused the content.
    #[error(transparent)]
    Image(#[from] ImageError),
}

impl RegistryError {
    /// Shorthand for `Invalid`.
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        RegistryError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// The registry settings and credentials of one state root.
#[derive(Debug, Clone)]
pub struct Registries {
    config: RegistriesConfig,
    credentials: CredentialStore,
}

impl Registries {
    /// Loads `registries.json` and finds the credential files of `paths`.
    pub fn open(paths: &StatePaths) -> Result<Registries, RegistryError> {
        Ok(Registries {
            config: RegistriesConfig::load(paths)?,
            credentials: CredentialStore::new(paths),
        })
    }

    /// The settings.
    pub fn config(&self) -> &RegistriesConfig {
        &self.config
    }

    /// The credential store.
    pub fn credentials(&self) -> &CredentialStore {
        &self.credentials
    }

    /// A client for `domain` with its stored credentials.
    pub fn client(&self, domain: &str) -> Result<Arc<Registry>, RegistryError> {
        let creds = self.credentials.get(domain)?;
        Registry::new(domain, &self.config, creds)
    }
}
