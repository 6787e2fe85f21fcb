//! `--systemd-cgroup`: `linux.cgroupsPath` is `slice:prefix:name` and systemd creates the
//! cgroup (a transient scope). hull-oci does not talk to systemd; where systemd runs,
//! callers should use the cgroupfs driver (the default of podman without systemd and of
//! containerd's runc shim). The flag is refused with the reason, never ignored: silently
//! placing the container elsewhere than the caller's slice would escape its accounting.

use std::path::Path;

use crate::error::{OciError, Result};

/// The three parts of a systemd cgroupsPath.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemdPath {
    /// The parent slice (`system.slice`; empty means systemd's default).
    pub slice: String,
    /// The scope name prefix (`cri-containerd`, `libpod`...).
    pub prefix: String,
    /// The container's name part.
    pub name: String,
}

/// Parses `slice:prefix:name`.
pub fn parse(path: &str) -> Result<SystemdPath> {
    let parts: Vec<&str> = path.split(':').collect();
    match parts.as_slice() {
        [slice, prefix, name] if !name.is_empty() => Ok(SystemdPath {
            slice: slice.to_string(),
            prefix: prefix.to_string(),
            name: name.to_string(),
        }),
        _ => Err(OciError::Usage(format!(
            "--systemd-cgroup: linux.cgroupsPath {path:?} is not \"slice:prefix:name\""
        ))),
    }
}

/// Checks a create with `--systemd-cgroup`: the path's form, then whether systemd runs
/// (`run_dir` is `/run/systemd/system` outside tests).
pub fn check(cgroups_path: Option<&str>, run_dir: &Path) -> Result<()> {
    if let Some(p) = cgroups_path {
        parse(p)?;
    }
    if !run_dir.is_dir() {
        return Err(OciError::Unsupported(format!(
            "--systemd-cgroup: systemd is not running on this host ({} is missing); \
             use the cgroupfs driver (leave out --systemd-cgroup, SystemdCgroup = false)",
            run_dir.display()
        )));
    }
    Err(OciError::Unsupported(
        "--systemd-cgroup: hull-oci creates cgroups itself (cgroupfs driver); \
         configure the caller without the systemd cgroup driver"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_and_absent_systemd_is_named() {
        let p = parse("system.slice:cri-containerd:abc").unwrap();
        assert_eq!(p.slice, "system.slice");
        assert_eq!(p.prefix, "cri-containerd");
        assert_eq!(p.name, "abc");
        assert!(parse(":libpod:x").is_ok());
        for bad in ["/plain/path", "a:b", "a:b:"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let err = check(Some("s:p:n"), Path::new("/nonexistent/systemd")).unwrap_err();
        assert!(err.to_string().contains("systemd is not running"), "{err}");
        let err = check(Some("bad"), Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("slice:prefix:name"), "{err}");
    }
}
