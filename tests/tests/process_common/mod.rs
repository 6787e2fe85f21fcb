//! Helpers for the `--isolation=process` tests: a busybox image built from Debian's
//! busybox-static and imported into each test's own state root (as a user would, with
//! `hull image import --rootfs`; removed with the root), and leak checks
//! run after every test: no mounts, cgroups, processes or state files left behind.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use hull_tests::TestRoot;

/// Image name used by the tests.
pub const IMAGE: &str = "hull/busybox";

/// Builds a busybox rootfs in `dir`, plus extra symlinks `(path, target)`.
pub fn build_rootfs(dir: &Path, symlinks: &[(&str, &str)]) {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "/bin/busybox missing: apt-get install busybox-static"
    );
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "root",
        "home/user",
        "tmp",
        "proc",
        "sys",
        "dev",
    ] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::copy(busybox, dir.join("bin/busybox")).unwrap();
    let list = Command::new(busybox).arg("--list-full").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet.is_empty() || applet == "bin/busybox" {
            continue;
        }
        let p = dir.join(applet);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let _ = std::os::unix::fs::symlink("/bin/busybox", &p);
    }
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
    )
    .unwrap();
    fs::write(
        dir.join("etc/group"),
        "root:x:0:\nusers:x:100:user\nnogroup:x:65534:\nuser:x:1000:\n",
    )
    .unwrap();
    for (path, target) in symlinks {
        std::os::unix::fs::symlink(target, dir.join(path)).unwrap();
    }
}

/// A test's own hull state root with the busybox image imported.
pub struct Env {
    pub root: TestRoot,
    /// The busybox root filesystem the image was imported from (inside the test root).
    pub rootfs: PathBuf,
}

impl Env {
    /// A fresh root with `hull/busybox` (Cmd `sh`).
    pub fn new() -> Env {
        assert!(hull_tests::is_root(), "process isolation tests need root");
        remember_abandoned_cgroups_before_this_run();
        let root = TestRoot::new();
        // Not a network test: loopback only, no CNI (the network tests use their own
        // bridge per root, see network_common).
        fs::write(
            root.path().join("config.json"),
            r#"{"network": {"default": "none"}}"#,
        )
        .unwrap();
        let rootfs = root.path().join("busybox-rootfs");
        build_rootfs(&rootfs, &[]);
        let env = Env { root, rootfs };
        env.import(&env.rootfs, IMAGE, &[]);
        env
    }

    /// Imports a rootfs directory as an image.
    pub fn import(&self, rootfs: &Path, tag: &str, extra: &[&str]) {
        let mut args = vec![
            "image".to_string(),
            "import".into(),
            "--rootfs".into(),
            rootfs.display().to_string(),
            "--tag".into(),
            tag.into(),
            "--cmd".into(),
            "sh".into(),
            "-q".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        self.root.ok(&args);
    }

    /// `hull ARGS` as a command.
    pub fn hull<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(&self, args: I) -> Command {
        let mut c = self.root.hull(args);
        c.stdin(Stdio::null());
        c
    }

    /// Runs `hull ARGS` to completion.
    pub fn run<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(&self, args: I) -> Output {
        self.hull(args).output().expect("spawn hull")
    }

    /// Runs `hull ARGS`, asserting success; returns stdout.
    pub fn ok<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(&self, args: I) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "hull failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `hull run --rm IMAGE sh -c SCRIPT` with extra flags before the image; returns
    /// (stdout, stderr, exit code).
    pub fn sh(&self, flags: &[&str], script: &str) -> (String, String, i32) {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[IMAGE, "sh", "-c", script]);
        let out = self.run(&args);
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.code().unwrap_or(-1),
        )
    }

    /// `hull run -d --name NAME [flags] IMAGE sh -c SCRIPT`; returns the container id.
    pub fn detached(&self, name: &str, flags: &[&str], script: &str) -> String {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[IMAGE, "sh", "-c", script]);
        let id = self.ok(&args).trim().to_string();
        assert_eq!(id.len(), 64, "run -d prints the id: {id:?}");
        id
    }

    /// The container record (`hull inspect`).
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let out = self.ok(["inspect", name]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0].clone()
    }

    /// `hull ps -a --format json`, keyed by name.
    pub fn ps(&self) -> HashMap<String, serde_json::Value> {
        let out = self.ok(["ps", "-a", "--format", "json"]);
        let v: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        v.into_iter()
            .map(|c| (c["name"].as_str().unwrap().to_string(), c))
            .collect()
    }

    /// Waits (bounded) until container `name` is reported exited; returns its record.
    pub fn wait_exited(&self, name: &str, timeout: Duration) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let c = self.inspect(name);
            if c["status"] == "exited" {
                return c;
            }
            assert!(
                start.elapsed() < timeout,
                "{name} still {} after {timeout:?}",
                c["status"]
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asserts that nothing of this root is left: no container state, no name
    /// reservation, no mount mentioning the root, no process started with this root, no
    /// cgroup of the given container ids, and no abandoned (empty) hull cgroup anywhere.
    pub fn assert_clean(&self, ids: &[String]) {
        let root = self.root.path();
        let containers = root.join("run/containers");
        if containers.exists() {
            let left: Vec<_> = fs::read_dir(&containers)
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".names")
                .collect();
            assert!(left.is_empty(), "container state left behind: {left:?}");
            let names: Vec<_> = fs::read_dir(containers.join(".names"))
                .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
                .unwrap_or_default();
            assert!(names.is_empty(), "name reservations left: {names:?}");
        }
        // Writable layers (on disk under the root) go with their containers.
        let layers: Vec<_> = fs::read_dir(root.join("containers"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(layers.is_empty(), "writable layers left behind: {layers:?}");
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root_s = root.display().to_string();
        assert!(
            !mounts.lines().any(|l| l.contains(&root_s)),
            "mounts under {root_s} left behind"
        );
        assert_no_process_mentions(&root_s);
        for id in ids {
            let left = cgroup_dirs(id);
            assert!(left.is_empty(), "cgroups of {id} left: {left:?}");
        }
        assert_no_abandoned_cgroups();
    }
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Env {
    /// A test that failed half-way leaves no running container behind (a spinning one
    /// would load the machine for every later test): remove whatever the root still holds
    /// before its directory goes.
    fn drop(&mut self) {
        let out = self.root.run(["ps", "-a", "-q"]);
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.root.run(["rm", "-f", id]);
        }
    }
}

/// /sys/fs/cgroup and each hierarchy mounted below it (containers have a cgroup in every one).
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut v = vec![root.to_path_buf()];
    for e in fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
    {
        if e.file_type().is_ok_and(|t| t.is_dir()) && e.path().join("cgroup.procs").exists() {
            v.push(e.path());
        }
    }
    v
}

/// The cgroup directories of hull container `id` that exist.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for c in cgroup_hierarchies() {
        let p = c.join("hull").join(id);
        if p.exists() {
            v.push(p);
        }
    }
    v
}

/// Fails if a process whose command line mentions `needle` (hull run with this --root,
/// or its supervisor) is still alive. Bounded wait for processes just exiting.
pub fn assert_no_process_mentions(needle: &str) {
    let me = std::process::id().to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut found = Vec::new();
        for e in fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
                continue;
            }
            let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let zombie = stat
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'));
            if cmd.contains(needle) && !zombie {
                found.push(format!("{name}: {cmd}"));
            }
        }
        if found.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes left behind: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Empty cgroups already under a `hull` parent when this test binary made its first Env:
/// left by an earlier run on this host (another binary, a killed run), not by these tests.
static ABANDONED_BEFORE: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();

/// Takes the snapshot `assert_no_abandoned_cgroups` excludes; the first Env of the binary
/// calls it, before any of its containers exist.
fn remember_abandoned_cgroups_before_this_run() {
    ABANDONED_BEFORE.get_or_init(|| {
        let before = empty_hull_cgroups();
        if !before.is_empty() {
            eprintln!(
                "warning: {} empty cgroup(s) under hull/ were left on this host before these \
                 tests started (not counted against them): {before:?}",
                before.len()
            );
        }
        before
    });
}

/// Fails if an empty container cgroup stays under a `hull` parent: a live container's
/// cgroup holds its processes, and one that is starting or ending (this test's or another
/// one's running at the same time) is filled or removed soon. One that stays empty for
/// 30 s was leaked by this test binary (cgroups already abandoned before its first Env are
/// left out, see ABANDONED_BEFORE). Polled: a busy host only makes a good run wait.
pub fn assert_no_abandoned_cgroups() {
    let before = ABANDONED_BEFORE.get().cloned().unwrap_or_default();
    let mut suspects: Vec<PathBuf> = empty_hull_cgroups()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !suspects.is_empty() {
        assert!(
            Instant::now() < deadline,
            "abandoned cgroups (empty for 30 s): {suspects:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
        let empty_now = empty_hull_cgroups();
        suspects.retain(|p| empty_now.contains(p));
    }
}

fn empty_hull_cgroups() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for c in cgroup_hierarchies() {
        let parent = c.join("hull");
        let Ok(entries) = fs::read_dir(&parent) else {
            continue;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            let procs = fs::read_to_string(p.join("cgroup.procs")).unwrap_or_default();
            if procs.trim().is_empty() {
                v.push(p);
            }
        }
    }
    v
}

/// Runs `cmd` under `script` so that hull's stdio is a terminal; returns (output, code).
pub fn in_pty(cmd: &str, input: Option<&str>) -> (String, i32) {
    let mut c = Command::new("script");
    c.args(["-qec", cmd, "/dev/null"]);
    c.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("script(1) from bsdutils");
    if let Some(text) = input {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// Shell-quotes a path for `in_pty` command lines.
pub fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
