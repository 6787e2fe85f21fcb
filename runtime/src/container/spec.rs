//! Building a [`ContainerSpec`] from `run`/`create` options and the image configuration,
//! applying Entrypoint/Cmd/Env/WorkingDir/User the way docker does:
//! - `--entrypoint` replaces the image Entrypoint and drops the image Cmd;
//! - arguments after the image replace the image Cmd;
//! - argv = Entrypoint ++ Cmd;
//! - Env = image Env, then `--env-file` lines, then `-e` (later wins per key);
//! - `-w` overrides WorkingDir (default `/`), `-u` overrides User (default root).

use std::path::{Path, PathBuf};

use crate::isolation::{ContainerSpec, Limits, ProcessSpec, Volume};
use crate::network::request::{self as net, NetworkMode, NetworkSpec};

/// Largest `--env-file` we read.
const MAX_ENV_FILE: u64 = 1 << 20;
/// Longest working directory (PATH_MAX).
pub const MAX_PATH: usize = 4096;
/// Longest `--user` / image User.
pub const MAX_USER: usize = 256;
/// Most `-v` volumes.
pub const MAX_VOLUMES: usize = 64;

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
    pub network: NetworkMode,
    /// `-p/--publish` as given.
    pub publish: Vec<String>,
    /// `--dns` as given.
    pub dns: Vec<String>,
    /// `--add-host` as given.
    pub add_hosts: Vec<String>,
    /// `--mac-address` as given.
    pub mac_address: Option<String>,
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

fn bad(msg: impl Into<String>) -> SpecError {
    SpecError(msg.into())
}

/// Builds the spec for container `id`.
pub fn build(id: &str, image: &ImageFacts, opts: &RunOptions) -> Result<ContainerSpec, SpecError> {
    let entrypoint: Vec<String> = match &opts.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => image.entrypoint.clone(),
    };
    let cmd: Vec<String> = if !opts.command.is_empty() {
        opts.command.clone()
    } else if opts.entrypoint.is_some() {
        Vec::new()
    } else {
        image.cmd.clone()
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(bad(
            "no command specified and the image has no Entrypoint or Cmd",
        ));
    }

    let mut env = image.env.clone();
    for file in &opts.env_files {
        for line in read_env_file(file)? {
            merge_env(&mut env, line);
        }
    }
    for e in &opts.env {
        merge_env(&mut env, expand_env(e)?);
    }

    // Bounded here, at create time, with the limit named: the record of the container
    // (state.json) and the guest's start message carry all of it, and an image's config may
    // hold megabytes of Env.
    hull_protocol::check_command(&args, &env).map_err(bad)?;
    let cwd = opts
        .workdir
        .clone()
        .or_else(|| Some(image.working_dir.clone()).filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    if cwd.len() > MAX_PATH || cwd.contains('\0') {
        return Err(bad(format!(
            "working directory: at most {MAX_PATH} bytes, no NUL byte"
        )));
    }
    if opts.volumes.len() > MAX_VOLUMES {
        return Err(bad(format!(
            "{} volumes: at most {MAX_VOLUMES} are allowed",
            opts.volumes.len()
        )));
    }
    if !cwd.starts_with('/') {
        return Err(bad(format!(
            "working directory {cwd:?} must be an absolute path"
        )));
    }
    let hostname = opts
        .hostname
        .clone()
        .unwrap_or_else(|| id[..12.min(id.len())].to_string());
    validate_hostname(&hostname)?;
    let user = opts.user.clone().unwrap_or_else(|| image.user.clone());
    if user.len() > MAX_USER || user.contains('\0') {
        return Err(bad(format!("user: at most {MAX_USER} bytes, no NUL byte")));
    }
    hull_executor::user::check_spec(&user).map_err(|e| bad(e.to_string()))?;

    Ok(ContainerSpec {
        image: image.name.clone(),
        image_id: image.id.clone(),
        layers: image.layers.clone(),
        process: ProcessSpec {
            args,
            env,
            cwd,
            user,
            tty: opts.tty,
            stdin: opts.interactive,
        },
        hostname,
        limits: Limits {
            memory_bytes: opts.memory.as_deref().map(parse_memory).transpose()?,
            nano_cpus: opts.cpus.as_deref().map(parse_cpus).transpose()?,
            pids: match opts.pids_limit {
                None | Some(0) => None,
                Some(n) if n < 0 => None,
                Some(n) => Some(n as u64),
            },
        },
        volumes: opts
            .volumes
            .iter()
            .map(|v| parse_volume(v))
            .collect::<Result<_, _>>()?,
        read_only: opts.read_only,
        storage: Default::default(),
        kernel: None,
        network: network_spec(opts)?,
        attachment: None,
    })
}

/// `--network`, `-p`, `--dns`, `--add-host`, `--mac-address` → the network request.
fn network_spec(opts: &RunOptions) -> Result<NetworkSpec, SpecError> {
    let spec = NetworkSpec {
        mode: opts.network,
        ports: opts
            .publish
            .iter()
            .map(|p| net::parse_publish(p))
            .collect::<Result<_, _>>()
            .map_err(SpecError)?,
        dns: opts
            .dns
            .iter()
            .map(|d| net::parse_dns(d))
            .collect::<Result<_, _>>()
            .map_err(SpecError)?,
        extra_hosts: opts
            .add_hosts
            .iter()
            .map(|h| net::parse_add_host(h))
            .collect::<Result<_, _>>()
            .map_err(SpecError)?,
        mac: opts
            .mac_address
            .as_deref()
            .map(net::parse_mac)
            .transpose()
            .map_err(SpecError)?,
    };
    spec.validate().map_err(SpecError)?;
    Ok(spec)
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
fn expand_env(e: &str) -> Result<String, SpecError> {
    if e.is_empty() || e.starts_with('=') {
        return Err(bad(format!("invalid environment variable {e:?}")));
    }
    if e.contains('=') {
        return Ok(e.to_string());
    }
    Ok(format!("{e}={}", std::env::var(e).unwrap_or_default()))
}

fn read_env_file(path: &Path) -> Result<Vec<String>, SpecError> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|e| bad(format!("env file {}: {e}", path.display())))?;
    let mut text = String::new();
    file.take(MAX_ENV_FILE)
        .read_to_string(&mut text)
        .map_err(|e| bad(format!("env file {}: {e}", path.display())))?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(expand_env)
        .collect()
}

/// `512`, `512k`, `64m`, `1g` (also `kb`, `mb`, `gb`, case-insensitive) → bytes.
pub fn parse_memory(s: &str) -> Result<u64, SpecError> {
    let lower = s.trim().to_ascii_lowercase();
    let lower = lower
        .strip_suffix('b')
        .filter(|r| !r.is_empty() && !r.ends_with(|c: char| c.is_ascii_digit()))
        .unwrap_or(&lower);
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1u64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        _ => (lower, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| bad(format!("invalid --memory {s:?} (e.g. 64m, 1g)")))?;
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| bad(format!("--memory {s:?} is too large")))?;
    if bytes < 6 << 20 {
        return Err(bad(format!("--memory {s:?} is below the minimum of 6m")));
    }
    Ok(bytes)
}

/// `1.5` → 1_500_000_000 nano-CPUs.
pub fn parse_cpus(s: &str) -> Result<u64, SpecError> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| bad(format!("invalid --cpus {s:?} (e.g. 0.5, 2)")))?;
    if !(v > 0.0 && v <= 1024.0) {
        return Err(bad(format!("--cpus {s:?} must be between 0 and 1024")));
    }
    Ok((v * 1e9).round() as u64)
}

/// `HOST:CONTAINER[:ro|rw]` with absolute paths.
pub fn parse_volume(s: &str) -> Result<Volume, SpecError> {
    let parts: Vec<&str> = s.split(':').collect();
    let (host, container, mode) = match parts.as_slice() {
        [h, c] => (*h, *c, ""),
        [h, c, m] => (*h, *c, *m),
        _ => {
            return Err(bad(format!(
                "invalid volume {s:?}: expected HOST:CONTAINER[:ro]"
            )))
        }
    };
    let read_only = match mode {
        "" | "rw" => false,
        "ro" => true,
        other => {
            return Err(bad(format!(
                "invalid volume mode {other:?} in {s:?} (ro or rw)"
            )))
        }
    };
    if host.len() > MAX_PATH || container.len() > MAX_PATH {
        return Err(bad(format!("volume paths: at most {MAX_PATH} bytes each")));
    }
    if !host.starts_with('/') {
        return Err(bad(format!(
            "volume host path {host:?} must be absolute (named volumes are not supported)"
        )));
    }
    if !container.starts_with('/') || container == "/" {
        return Err(bad(format!(
            "volume container path {container:?} must be an absolute path other than /"
        )));
    }
    let host_path =
        std::fs::canonicalize(host).map_err(|e| bad(format!("volume host path {host}: {e}")))?;
    Ok(Volume {
        host: host_path,
        container: container.to_string(),
        read_only,
    })
}

fn validate_hostname(h: &str) -> Result<(), SpecError> {
    let ok = !h.is_empty()
        && h.len() <= 64
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !h.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(bad(format!("invalid hostname {h:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageFacts {
        ImageFacts {
            name: "hull/test:latest".into(),
            id: "sha256:00".into(),
            layers: vec![],
            entrypoint: vec!["/entry".into()],
            cmd: vec!["default".into()],
            env: vec!["PATH=/bin".into(), "A=1".into()],
            working_dir: "/srv".into(),
            user: "user".into(),
        }
    }

    const ID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn docker_rules_for_entrypoint_and_cmd() {
        let s = build(ID, &image(), &RunOptions::default()).unwrap();
        assert_eq!(s.process.args, ["/entry", "default"]);
        let s = build(
            ID,
            &image(),
            &RunOptions {
                command: vec!["x".into()],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.process.args, ["/entry", "x"]);
        let s = build(
            ID,
            &image(),
            &RunOptions {
                entrypoint: Some("sh".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.process.args, ["sh"], "--entrypoint drops the image Cmd");
        let s = build(
            ID,
            &image(),
            &RunOptions {
                entrypoint: Some(String::new()),
                command: vec!["ls".into()],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.process.args, ["ls"]);
        assert_eq!(s.process.cwd, "/srv");
        assert_eq!(s.process.user, "user");
        assert_eq!(s.hostname, "0123456789ab");
    }

    #[test]
    fn env_overrides_by_key() {
        let s = build(
            ID,
            &image(),
            &RunOptions {
                env: vec!["A=2".into(), "B=3".into()],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.process.env, ["PATH=/bin", "A=2", "B=3"]);
    }

    #[test]
    fn sizes_and_cpus_parse() {
        assert_eq!(parse_memory("64m").unwrap(), 64 << 20);
        assert_eq!(parse_memory("1G").unwrap(), 1 << 30);
        assert_eq!(parse_memory("8mb").unwrap(), 8 << 20);
        assert!(parse_memory("1k").is_err(), "below minimum");
        assert!(parse_memory("lots").is_err());
        assert_eq!(parse_cpus("1.5").unwrap(), 1_500_000_000);
        assert!(parse_cpus("-1").is_err());
    }

    /// An image whose Env alone is megabytes (the review's example: more than 1 MiB, which
    /// made its record unreadable) is refused at create with the limit named; so are too
    /// many `-e`, arguments or volumes.
    #[test]
    fn big_commands_and_environments_are_refused_with_the_limit_named() {
        let mut img = image();
        img.env = (0..300)
            .map(|i| format!("K{i}={}", "x".repeat(4000)))
            .collect();
        let err = build(ID, &img, &RunOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("131072"), "{err}");
        let err = build(
            ID,
            &image(),
            &RunOptions {
                command: vec!["x".repeat(70_000)],
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("65536"), "{err}");
        let err = build(
            ID,
            &image(),
            &RunOptions {
                volumes: vec!["/tmp:/data".into(); MAX_VOLUMES + 1],
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("64"), "{err}");
        let err = build(
            ID,
            &image(),
            &RunOptions {
                workdir: Some(format!("/{}", "d".repeat(MAX_PATH))),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("4096"), "{err}");
    }

    #[test]
    fn uid_4294967295_is_refused_at_create() {
        for (flag, image_user) in [(Some("4294967295"), ""), (None, "0:4294967295")] {
            let mut img = image();
            img.user = image_user.into();
            let err = build(
                ID,
                &img,
                &RunOptions {
                    user: flag.map(str::to_string),
                    ..Default::default()
                },
            )
            .unwrap_err();
            assert!(err.to_string().contains("4294967295"), "{err}");
        }
    }

    #[test]
    fn volumes_parse() {
        let v = parse_volume("/tmp:/data:ro").unwrap();
        assert!(v.read_only);
        assert_eq!(v.container, "/data");
        assert!(parse_volume("rel:/data").is_err());
        assert!(parse_volume("/tmp:/data:xx").is_err());
        assert!(parse_volume("/tmp:/").is_err());
    }
}
