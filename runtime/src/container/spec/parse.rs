//! Parsing docker-style option values: sizes, CPU counts, volumes, hostnames, env files.

use std::path::{Path, PathBuf};

use super::{bad, expand_env, SpecError};

/// Largest `--env-file` we read.
const MAX_ENV_FILE: u64 = 1 << 20;

/// A bind mount `-v HOST:CONTAINER[:ro]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Absolute host path (a directory or a file), canonical.
    pub host: PathBuf,
    /// Absolute path inside the container.
    pub container: String,
    /// Mount read-only.
    pub read_only: bool,
}

/// A byte size: `512`, `512k`, `64m`, `1g` (also `kb`, `mb`, `gb`, case-insensitive).
pub fn parse_size(s: &str, what: &str) -> Result<u64, SpecError> {
    let lower = s.trim().to_ascii_lowercase();
    let lower = lower
        .strip_suffix('b')
        .filter(|r| !r.is_empty() && !r.ends_with(|c: char| c.is_ascii_digit()))
        .unwrap_or(&lower);
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1u64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some('t') => (&lower[..lower.len() - 1], 1 << 40),
        _ => (lower, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| bad(format!("invalid {what} {s:?} (e.g. 64m, 1g)")))?;
    n.checked_mul(mult)
        .filter(|b| *b <= i64::MAX as u64)
        .ok_or_else(|| bad(format!("{what} {s:?} is too large")))
}

/// `--memory`: a size of at least 6 MiB (docker's minimum).
pub fn parse_memory(s: &str) -> Result<u64, SpecError> {
    let bytes = parse_size(s, "--memory")?;
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
    if host.len() > super::process::MAX_PATH || container.len() > super::process::MAX_PATH {
        return Err(bad(format!(
            "volume paths: at most {} bytes each",
            super::process::MAX_PATH
        )));
    }
    if !host.starts_with('/') {
        return Err(bad(format!(
            "volume host path {host:?} must be absolute (named volumes are not supported)"
        )));
    }
    check_container_path(container, "volume container path")?;
    let host_path =
        std::fs::canonicalize(host).map_err(|e| bad(format!("volume host path {host}: {e}")))?;
    Ok(Volume {
        host: host_path,
        container: container.to_string(),
        read_only,
    })
}

/// An absolute container path other than `/`, without `..`.
pub fn check_container_path(p: &str, what: &str) -> Result<(), SpecError> {
    if !p.starts_with('/')
        || p == "/"
        || Path::new(p)
            .components()
            .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(bad(format!(
            "{what} {p:?} must be an absolute path other than /, without \"..\""
        )));
    }
    Ok(())
}

/// A hostname: letters, digits, `-` and `.`, at most 64 characters.
pub fn validate_hostname(h: &str) -> Result<(), SpecError> {
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

/// `KEY=VALUE` lines of an env file (blank lines and `#` comments skipped).
pub fn read_env_file(path: &Path) -> Result<Vec<String>, SpecError> {
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
