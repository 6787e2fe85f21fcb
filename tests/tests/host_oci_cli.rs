//! `hull-oci` as its callers run it, for what needs no container process: the version and
//! features formats, errors on stderr and in a JSON log file (what containerd's shim
//! reads), and bad bundles refused with a clear error and nothing left behind.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

use hull_tests::binary;

/// A private `--root` and a bundle directory, removed when dropped.
struct Env {
    tmp: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            tmp: tempfile::Builder::new()
                .prefix("hull-oci-cli-")
                .tempdir()
                .unwrap(),
        }
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    fn bundle(&self) -> PathBuf {
        self.tmp.path().join("bundle")
    }

    fn oci(&self, args: &[&str]) -> Output {
        Command::new(binary("hull-oci"))
            .arg("--root")
            .arg(self.root())
            .args(args)
            .output()
            .expect("run hull-oci")
    }

    /// A bundle whose config.json is `config` and whose rootfs is an empty directory.
    fn write_bundle(&self, config: &str) {
        let _ = fs::remove_dir_all(self.bundle());
        fs::create_dir_all(self.bundle().join("rootfs")).unwrap();
        fs::write(self.bundle().join("config.json"), config).unwrap();
    }

    /// What is under --root (nothing, once a failed create cleaned up).
    fn leftovers(&self) -> Vec<String> {
        fs::read_dir(self.root())
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

const GOOD: &str = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},
    "process":{"args":["/bin/true"],"cwd":"/","user":{"uid":0,"gid":0}}}"#;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn version_is_runcs_three_lines() {
    let out = Env::new().oci(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("hull-oci version "), "{text}");
    assert!(lines[1].starts_with("commit: "), "{text}");
    assert!(lines[2].starts_with("spec: 1."), "{text}");
}

#[test]
fn features_is_json_naming_the_isolation_annotation() {
    let out = Env::new().oci(&["features"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ociVersionMin"], "1.0.0");
    assert!(v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "network"));
    assert!(v["annotations"]["io.hull.isolation"].is_string());
}

#[test]
fn errors_go_to_stderr_and_to_the_json_log_with_exit_1() {
    let env = Env::new();
    let log = env.tmp.path().join("log.json");
    let out = env.oci(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "no-such-container",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("container no-such-container does not exist"),
        "{}",
        stderr(&out)
    );
    // containerd's shim takes the last "error" line's msg.
    let text = fs::read_to_string(&log).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert_eq!(last["msg"], "container no-such-container does not exist");
    assert!(last["time"].as_str().unwrap().contains('T'));
    for args in [
        &["kill", "no-such-container", "KILL"][..],
        &["delete", "no-such-container"],
        &["start", "no-such-container"],
    ] {
        let out = env.oci(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains("does not exist"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let out = env.oci(&["kill", "x", "SIGNOPE"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unknown signal"), "{}", stderr(&out));
    let out = env.oci(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(1), "bad usage is runc's exit 1");
}

#[test]
fn list_of_an_empty_root() {
    let env = Env::new();
    let out = env.oci(&["list"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ID   PID   STATUS   BUNDLE   CREATED   OWNER"
    );
    let out = env.oci(&["list", "--format", "json"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}

/// Runs `create` on the bundle; asserts exit 1, the error naming `want`, and that neither
/// state nor pid file was left.
fn refused(env: &Env, want: &str) {
    let pid_file = env.tmp.path().join("init.pid");
    let out = env.oci(&[
        "create",
        "--bundle",
        env.bundle().to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        "bad-bundle",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(want),
        "want {want:?}: {}",
        stderr(&out)
    );
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
    assert!(!pid_file.exists());
    let out = env.oci(&["state", "bad-bundle"]);
    assert!(stderr(&out).contains("does not exist"));
}

#[test]
fn bad_bundles_are_refused_and_leave_nothing() {
    let env = Env::new();
    env.write_bundle(GOOD);
    fs::remove_file(env.bundle().join("config.json")).unwrap();
    refused(&env, "JSON specification file config.json not found");

    env.write_bundle(r#"{"ociVersion": "1.0.2", "root": "#);
    refused(&env, "config.json is not valid JSON");

    env.write_bundle(&GOOD.replace(r#""args":["/bin/true"]"#, r#""args":"true""#));
    refused(&env, "does not match the OCI runtime spec");

    env.write_bundle(&GOOD.replace(
        r#""ociVersion""#,
        r#""linux":{"namespaces":[{"type":"timewarp"}]},"ociVersion""#,
    ));
    refused(&env, "timewarp");

    env.write_bundle(GOOD);
    fs::remove_dir(env.bundle().join("rootfs")).unwrap();
    std::os::unix::fs::symlink("/", env.bundle().join("rootfs")).unwrap();
    refused(&env, "outside the bundle");

    env.write_bundle(&GOOD.replace("1.0.2", "2.0.0"));
    refused(&env, "ociVersion");

    let out = env.oci(&["create", "--bundle", "/nonexistent-bundle", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/nonexistent-bundle"),
        "{}",
        stderr(&out)
    );
    assert!(env.leftovers().is_empty());
    let out = env.oci(&["create", "--bundle", env.bundle().to_str().unwrap(), "a/b"]);
    assert!(
        stderr(&out).contains("invalid container id"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn spec_writes_a_config_that_hull_oci_reads_back() {
    let env = Env::new();
    fs::create_dir_all(env.bundle()).unwrap();
    let out = env.oci(&["spec", "--bundle", env.bundle().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(env.bundle().join("config.json")).unwrap()).unwrap();
    assert_eq!(config["root"]["path"], "rootfs");
    let again = env.oci(&["spec", "--bundle", env.bundle().to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("exists"));
}
