//! Loading and checking an OCI bundle (`config.json` + a root filesystem) before anything
//! is created for it, so a bad bundle leaves nothing behind.
//!
//! What is refused, with the reason named: a missing bundle or config.json, a config that
//! is not JSON or does not match the runtime spec (a value of the wrong type, an unknown
//! namespace type, signal or capability name...), an ociVersion other than 1.x, a missing
//! `root` or `process`, empty `process.args`, and a root filesystem that is missing, not a
//! directory, or — for a `root.path` relative to the bundle — outside the bundle once
//! symlinks are resolved. Unknown *properties* are ignored: the runtime spec requires it
//! ("Runtimes MUST NOT generate an error if they encounter an unknown property"), and runc
//! does the same. An absolute `root.path` is the caller's choice (podman points it into its
//! own storage) and is used as given.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::error::{OciError, Result};

/// Largest config.json accepted (real ones, seccomp profile included, are under 100 KiB).
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// A bundle that passed the checks.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Absolute, symlink-free bundle directory.
    pub dir: PathBuf,
    /// The parsed config.json.
    pub spec: Spec,
    /// Absolute, symlink-free root filesystem directory.
    pub rootfs: PathBuf,
}

/// Loads `dir/config.json` and checks the bundle.
pub fn load(dir: &Path) -> Result<Bundle> {
    let bad = |reason: String| OciError::bundle(dir, reason);
    let canonical = fs::canonicalize(dir).map_err(|e| bad(format!("cannot open it: {e}")))?;
    if !canonical.is_dir() {
        return Err(bad("not a directory".into()));
    }
    let config_path = canonical.join("config.json");
    let file = match fs::File::open(&config_path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(bad("JSON specification file config.json not found".into()))
        }
        Err(e) => return Err(bad(format!("cannot read config.json: {e}"))),
    };
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("cannot read config.json: {e}")))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(bad(format!(
            "config.json is larger than {} MiB",
            MAX_CONFIG_BYTES >> 20
        )));
    }
    let spec = parse_config(&bytes).map_err(bad)?;
    check_spec(&spec).map_err(bad)?;
    let rootfs = resolve_rootfs(&canonical, &spec).map_err(bad)?;
    Ok(Bundle {
        dir: canonical,
        spec,
        rootfs,
    })
}

/// Parses config.json, naming where it went wrong.
pub fn parse_config(bytes: &[u8]) -> Result<Spec, String> {
    serde_json::from_slice(bytes).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            format!("config.json is not valid JSON: {e}")
        } else {
            format!("config.json does not match the OCI runtime spec: {e}")
        }
    })
}

/// The checks that need only the spec.
pub fn check_spec(spec: &Spec) -> Result<(), String> {
    let version = spec.version();
    let major = version.split('.').next().unwrap_or_default();
    if version.is_empty() {
        return Err("config.json has no ociVersion".into());
    }
    if major != "1" {
        return Err(format!(
            "ociVersion {version:?} is not supported (hull-oci implements runtime-spec 1.x)"
        ));
    }
    if spec.root().is_none() {
        return Err("config.json has no root".into());
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or("config.json has no process")?;
    if process.args().as_ref().map(Vec::len).unwrap_or(0) == 0 {
        return Err("process.args must not be empty".into());
    }
    if !process.cwd().is_absolute() {
        return Err(format!(
            "process.cwd {:?} must be an absolute path",
            process.cwd()
        ));
    }
    Ok(())
}

/// The root filesystem: `root.path` absolute, or relative to the bundle and then inside it.
pub fn resolve_rootfs(bundle: &Path, spec: &Spec) -> Result<PathBuf, String> {
    let root = spec.root().as_ref().ok_or("config.json has no root")?;
    let given = root.path();
    if given.as_os_str().is_empty() {
        return Err("root.path is empty".into());
    }
    let joined = bundle.join(given);
    let resolved =
        fs::canonicalize(&joined).map_err(|e| format!("root.path {}: {e}", joined.display()))?;
    if given.is_relative() && !resolved.starts_with(bundle) {
        return Err(format!(
            "root.path {:?} resolves to {}, outside the bundle (through a symlink); \
             give an absolute root.path to use a root filesystem elsewhere",
            given,
            resolved.display()
        ));
    }
    if !resolved.is_dir() {
        return Err(format!(
            "root.path {} is not a directory",
            resolved.display()
        ));
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},
        "process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}}}"#;

    fn bundle_with(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("rootfs")).unwrap();
        fs::write(dir.path().join("config.json"), config).unwrap();
        dir
    }

    fn reason(dir: &Path) -> String {
        load(dir).unwrap_err().to_string()
    }

    #[test]
    fn a_minimal_bundle_loads() {
        let dir = bundle_with(MINIMAL);
        let b = load(dir.path()).unwrap();
        assert_eq!(
            b.rootfs,
            fs::canonicalize(dir.path().join("rootfs")).unwrap()
        );
    }

    #[test]
    fn missing_and_malformed_configs_are_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(reason(dir.path()).contains("config.json not found"));
        fs::write(dir.path().join("config.json"), "{\"ociVersion\": ").unwrap();
        let r = reason(dir.path());
        assert!(r.contains("not valid JSON") && r.contains("line 1"), "{r}");
        fs::write(dir.path().join("config.json"), r#"{"ociVersion": 3}"#).unwrap();
        assert!(reason(dir.path()).contains("does not match the OCI runtime spec"));
        assert!(reason(&dir.path().join("nope")).contains("cannot open it"));
    }

    #[test]
    fn unknown_properties_are_ignored_but_unknown_values_are_not() {
        let dir = bundle_with(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs","future":1},"hullFuture":{"x":[]},
                "process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}}}"#,
        );
        load(dir.path()).unwrap();
        let dir = bundle_with(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},
                "linux":{"namespaces":[{"type":"bogus"}]}}"#,
        );
        let r = reason(dir.path());
        assert!(r.contains("bogus"), "{r}");
    }

    #[test]
    fn required_parts_are_checked() {
        for (config, want) in [
            (
                r#"{"root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}}}"#,
                "no ociVersion",
            ),
            (
                r#"{"ociVersion":"2.0.0","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}}}"#,
                "not supported",
            ),
            (
                r#"{"ociVersion":"1.0.0","process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}}}"#,
                "no root",
            ),
            (
                r#"{"ociVersion":"1.0.0","root":{"path":"rootfs"}}"#,
                "no process",
            ),
            (
                r#"{"ociVersion":"1.0.0","root":{"path":"rootfs"},"process":{"args":[],"cwd":"/","user":{"uid":0,"gid":0}}}"#,
                "args must not be empty",
            ),
            (
                r#"{"ociVersion":"1.0.0","root":{"path":"rootfs"},"process":{"args":["x"],"cwd":"rel","user":{"uid":0,"gid":0}}}"#,
                "absolute",
            ),
            (
                r#"{"ociVersion":"1.0.0","root":{"path":"nothere"},"process":{"args":["x"],"cwd":"/","user":{"uid":0,"gid":0}}}"#,
                "nothere",
            ),
        ] {
            let dir = bundle_with(config);
            let r = reason(dir.path());
            assert!(r.contains(want), "{config}: {r}");
        }
    }

    #[test]
    fn a_relative_rootfs_may_not_leave_the_bundle_through_a_symlink() {
        let dir = bundle_with(MINIMAL);
        fs::remove_dir(dir.path().join("rootfs")).unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("rootfs")).unwrap();
        let r = reason(dir.path());
        assert!(r.contains("outside the bundle"), "{r}");
        // A symlink that stays inside is fine, and so is an absolute path elsewhere.
        fs::remove_file(dir.path().join("rootfs")).unwrap();
        fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("rootfs")).unwrap();
        load(dir.path()).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let config = MINIMAL.replace(
            "\"rootfs\"",
            &format!("{:?}", elsewhere.path().display().to_string()),
        );
        fs::write(dir.path().join("config.json"), config).unwrap();
        assert_eq!(
            load(dir.path()).unwrap().rootfs,
            fs::canonicalize(elsewhere.path()).unwrap()
        );
        // A file is not a root filesystem.
        let config = MINIMAL.replace("\"rootfs\"", "\"config.json\"");
        fs::write(dir.path().join("config.json"), config).unwrap();
        assert!(reason(dir.path()).contains("not a directory"));
    }
}
