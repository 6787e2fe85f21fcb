//! Writing a container's OCI runtime spec (config.json) from the image configuration and the
//! `run`/`create` options, the way podman and containerd write one for docker's flags:
//!
//! - argv: `--entrypoint` replaces the image Entrypoint and drops the image Cmd; arguments
//!   after the image replace the image Cmd; argv = Entrypoint ++ Cmd;
//! - env: PATH (when the image has none), HOSTNAME and with `-t` TERM first, then the image
//!   Env, `--env-file` lines and `-e`, each replacing an earlier value of its key; HOME from
//!   the user's passwd entry when still unset;
//! - `-w` overrides WorkingDir (default `/`); `-u` overrides User (default root), resolved
//!   against the image's /etc/passwd and /etc/group into numeric ids;
//! - docker's capabilities, mounts, masked and read-only paths, device rules and a seccomp
//!   profile in OCI form, namespaces, cgroup limits and the container's cgroup path.
//!
//! Nothing downstream adds to it: both isolation models run exactly this spec.

mod layers;
mod linux;
pub mod network;
pub mod parse;
pub mod privileges;
mod process;

use std::path::PathBuf;

use oci_spec::runtime::{Root, Spec};

use crate::isolation::ContainerSpec;
pub use parse::{parse_cpus, parse_memory, parse_volume, Volume};

/// Container options as given on the command line (backend-neutral).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Command and arguments after the image (replace the image Cmd).
    pub command: Vec<String>,
    /// `--entrypoint` (empty string = no entrypoint).
    pub entrypoint: Option<String>,
    /// `-e KEY=VALUE` or `-e KEY` (taken from hull's environment).
    pub env: Vec<String>,
    /// `--env-file` paths.
    pub env_files: Vec<PathBuf>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `--hostname` (default: the first 12 characters of the id).
    pub hostname: Option<String>,
    /// `--memory` as given (`512m`, `1g`, bytes).
    pub memory: Option<String>,
    /// `--cpus` as given (`1.5`).
    pub cpus: Option<String>,
    /// `--pids-limit`.
    pub pids_limit: Option<i64>,
    /// `-v HOST:CONTAINER[:ro|rw]`.
    pub volumes: Vec<String>,
    /// `--read-only`.
    pub read_only: bool,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub interactive: bool,
    /// `--network`, resolved against the config file (default, policies).
    pub network: crate::network::NetworkMode,
    /// `-p/--publish` as given.
    pub publish: Vec<String>,
    /// `--dns` as given.
    pub dns: Vec<String>,
    /// `--add-host` as given.
    pub add_hosts: Vec<String>,
    /// `--mac-address` as given.
    pub mac_address: Option<String>,
    /// `--cap-add` as given.
    pub cap_add: Vec<String>,
    /// `--cap-drop` as given.
    pub cap_drop: Vec<String>,
    /// `--device` as given.
    pub devices: Vec<String>,
    /// The container runs in a microVM (its default capabilities differ: see
    /// [`privileges`]).
    pub vm: bool,
}

/// The image facts a spec needs (from the image store).
#[derive(Debug, Clone)]
pub struct ImageFacts {
    /// Reference as stored (`hull/busybox:latest`).
    pub name: String,
    /// `sha256:...`.
    pub id: String,
    /// Layer directories, lowest first.
    pub layers: Vec<PathBuf>,
    /// Image Entrypoint.
    pub entrypoint: Vec<String>,
    /// Image Cmd.
    pub cmd: Vec<String>,
    /// Image Env.
    pub env: Vec<String>,
    /// Image WorkingDir.
    pub working_dir: String,
    /// Image User.
    pub user: String,
}

impl From<crate::image::StoredImage> for ImageFacts {
    fn from(img: crate::image::StoredImage) -> Self {
        let c = img.config.config().clone().unwrap_or_default();
        ImageFacts {
            name: img.name,
            id: img.id,
            layers: img.layers,
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            env: c.env().clone().unwrap_or_default(),
            working_dir: c.working_dir().clone().unwrap_or_default(),
            user: c.user().clone().unwrap_or_default(),
        }
    }
}

/// A bad option, named.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

pub(crate) fn bad(msg: impl Into<String>) -> SpecError {
    SpecError(msg.into())
}

/// The OCI version hull writes.
pub const OCI_VERSION: &str = "1.2.0";

/// Builds the spec of container `id`.
pub fn build(id: &str, image: &ImageFacts, opts: &RunOptions) -> Result<ContainerSpec, SpecError> {
    let hostname = opts
        .hostname
        .clone()
        .unwrap_or_else(|| id[..12.min(id.len())].to_string());
    parse::validate_hostname(&hostname)?;
    let process = process::build(image, opts, &hostname)?;
    let mut root = Root::default();
    root.set_path(PathBuf::from("rootfs"))
        .set_readonly(opts.read_only.then_some(true));
    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_string())
        .set_root(Some(root))
        .set_hostname(Some(hostname))
        .set_domainname(None)
        .set_annotations(None)
        .set_mounts(Some(linux::mounts(opts)?))
        .set_linux(Some(linux::build(id, opts, &process)?))
        .set_process(Some(process));
    Ok(ContainerSpec {
        image: image.name.clone(),
        image_id: image.id.clone(),
        layers: image.layers.clone(),
        interactive: opts.interactive,
        storage: Default::default(),
        kernel: None,
        network: network::request(opts)?,
        attachment: None,
        oci: spec,
    })
}

/// Replaces or appends `KEY=VALUE` in `env`.
pub fn merge_env(env: &mut Vec<String>, entry: String) {
    let key = entry
        .split_once('=')
        .map_or(entry.as_str(), |(k, _)| k)
        .to_string();
    env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
    env.push(entry);
}

/// `-e KEY` takes KEY from hull's own environment (dropped when unset), like docker.
pub fn expand_env(e: &str) -> Result<String, SpecError> {
    if e.is_empty() || e.starts_with('=') {
        return Err(bad(format!("invalid environment variable {e:?}")));
    }
    if e.contains('=') {
        return Ok(e.to_string());
    }
    Ok(format!("{e}={}", std::env::var(e).unwrap_or_default()))
}

/// The user name of a `--user` resolved against the running container's files (for
/// `exec -u`): the process's uid, gid and groups.
pub fn resolve_user_in(
    user: &str,
    root: &std::path::Path,
) -> Result<hull_executor::user::ResolvedUser, SpecError> {
    hull_executor::user::resolve_in_root(user, root).map_err(|e| bad(e.to_string()))
}

/// Gives `process` the identity `who` (an `exec -u`).
pub fn set_identity(p: &mut oci_spec::runtime::Process, who: &hull_executor::user::ResolvedUser) {
    hull_executor::user::apply_identity(p, who);
}

#[cfg(test)]
mod tests;
