//! Helpers for testing `hull-oci` the way its callers drive it: OCI bundles with a busybox
//! root, podman with private storage, a private containerd, images made locally (no
//! registry is reachable here).
//!
//! The runtime under test is `target/<profile>/hull-oci`; `HULL_OCI_TEST_RUNTIME=/usr/sbin/runc`
//! runs the same tests against runc, which shows that a test checks what runc does.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::initramfs::BUSYBOX;

/// The image config's PATH (an imported root filesystem has no environment).
const IMAGE_PATH_ENV: &str =
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The OCI runtime binary the tests drive.
pub fn runtime() -> PathBuf {
    match std::env::var_os("HULL_OCI_TEST_RUNTIME") {
        Some(p) => PathBuf::from(p),
        None => crate::binary("hull-oci"),
    }
}

/// Whether the tests drive hull-oci itself (not a peer runtime given by the environment).
pub fn is_hull() -> bool {
    std::env::var_os("HULL_OCI_TEST_RUNTIME").is_none()
}

/// `hull-oci-vm`: a link to the runtime under test in `dir`, named so that hull-oci runs
/// every workload in a VM.
pub fn vm_runtime(dir: &Path) -> PathBuf {
    let link = dir.join("hull-oci-vm");
    if !link.exists() {
        std::os::unix::fs::symlink(runtime(), &link).expect("link hull-oci-vm");
    }
    link
}

/// A unique name for ids and paths other engineers' tests cannot take at the same time.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

/// Fills `root` with a small busybox userland: /bin/busybox and a link per applet,
/// /etc/passwd and /etc/group with root and `user` (1000), the usual empty directories.
pub fn busybox_rootfs(root: &Path) {
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "root",
        "tmp",
        "proc",
        "sys",
        "dev",
        "run",
        "home/user",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy(BUSYBOX, root.join("bin/busybox")).expect("copy static busybox");
    fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o755)).unwrap();
    let list = Command::new(BUSYBOX)
        .arg("--list-full")
        .output()
        .expect("busybox --list-full");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet.is_empty() || applet == "bin/busybox" {
            continue;
        }
        let path = root.join(applet);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let _ = std::os::unix::fs::symlink("/bin/busybox", &path);
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
    )
    .unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\nuser:x:1000:\n").unwrap();
}

/// The config.json `runc spec` would write, for `args`, without a terminal: the usual
/// namespaces, mounts, masked and read-only paths, docker's capabilities.
pub fn default_config(args: &[&str]) -> Value {
    let caps = json!([
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE"
    ]);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "hull-oci-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                           {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// An OCI bundle in a temporary directory: `rootfs/` (busybox) and `config.json`.
pub struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    /// A bundle running `args` with the default config.
    pub fn new(args: &[&str]) -> Bundle {
        Bundle::with_config(default_config(args))
    }

    /// A bundle with this config.json.
    pub fn with_config(config: Value) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("hull-oci-bundle-")
            .tempdir()
            .unwrap();
        busybox_rootfs(&dir.path().join("rootfs"));
        let b = Bundle { dir };
        b.set_config(&config);
        b
    }

    /// Replaces config.json.
    pub fn set_config(&self, config: &Value) {
        fs::write(
            self.path().join("config.json"),
            serde_json::to_vec_pretty(config).unwrap(),
        )
        .unwrap();
    }

    /// The bundle directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub fn poll<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Output as text, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A rootfs tarball of busybox with `extra` files (path, content) added.
pub fn busybox_tar(dir: &Path, extra: &[(&str, &str)]) -> PathBuf {
    let root = dir.join("tar-root");
    busybox_rootfs(&root);
    for (path, content) in extra {
        let p = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let tar = dir.join("rootfs.tar");
    let out = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success(), "tar: {}", show(&out));
    fs::remove_dir_all(&root).unwrap();
    tar
}

/// podman with storage, run root and tmp dir of its own (nothing shared with the host's
/// or another test's podman), cgroupfs, no systemd, no network.
pub struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    /// A podman with empty private storage.
    pub fn new() -> Podman {
        Podman {
            dir: tempfile::Builder::new()
                .prefix("hull-oci-podman-")
                .tempdir()
                .unwrap(),
        }
    }

    /// Its private directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `podman GLOBALS ARGS`.
    pub fn command(&self, args: &[&str]) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args([
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
                "--storage-driver",
                "vfs",
            ])
            .args(args)
            .env("TMPDIR", d.join("tmp"))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs podman to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        fs::create_dir_all(self.dir.path().join("tmp")).unwrap();
        self.command(args).output().expect("run podman")
    }

    /// Runs podman, asserting success; stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "podman {args:?}: {}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Imports a busybox image as `name`.
    pub fn import_busybox(&self, name: &str) {
        let tar = busybox_tar(self.dir.path(), &[]);
        self.ok(&[
            "import",
            "--change",
            "CMD [\"sh\"]",
            "--change",
            IMAGE_PATH_ENV,
            tar.to_str().unwrap(),
            name,
        ]);
    }

    /// The `podman run` options every test needs here: the runtime, no network, and limits
    /// at or below this host's hard limits (root lacks CAP_SYS_RESOURCE here).
    pub fn run_options(runtime: &Path) -> Vec<String> {
        vec![
            "--runtime".into(),
            runtime.display().to_string(),
            "--network".into(),
            "none".into(),
            "--ulimit".into(),
            "nofile=1024:1024".into(),
            "--ulimit".into(),
            "nproc=1024:1024".into(),
        ]
    }
}

impl Default for Podman {
    fn default() -> Self {
        Podman::new()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Containers left by a failed test: remove them (and their mounts) before the dir.
        let _ = self.run(&["rm", "-af", "-t", "0"]);
        let _ = self.run(&["system", "reset", "-f"]);
    }
}

/// A containerd of its own (root, state, sockets in a temp dir), with the CRI plugin
/// configured for the runtime handlers `hull` and `hull-vm`; stopped when dropped.
pub struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
    /// (runtime binary, state root) of every runtime that may hold containers of this
    /// containerd: the CRI handlers' and those given to `ctr run --runc-root`.
    runtime_roots: std::cell::RefCell<Vec<(PathBuf, PathBuf)>>,
}

impl Containerd {
    /// Starts containerd with `cri_runtimes`: (handler name, runtime binary) pairs.
    pub fn start(cri_runtimes: &[(&str, &Path)], sandbox_image: &str) -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("hull-oci-ctd-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let mut config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = "{debug}"
[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  disable_cgroup = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "{default_runtime}"
"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("containerd.sock").display(),
            debug = d.join("debug.sock").display(),
            default_runtime = cri_runtimes.first().map_or("runc", |r| r.0),
        );
        for (name, binary) in cri_runtimes {
            config.push_str(&format!(
                r#"  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}]
    runtime_type = "io.containerd.runc.v2"
    pod_annotations = ["io.hull.isolation"]
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}.options]
      BinaryName = "{binary}"
      Root = "{root}"
"#,
                binary = binary.display(),
                root = d.join(format!("oci-root-{name}")).display(),
            ));
        }
        fs::write(d.join("config.toml"), &config).unwrap();
        let log = fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd (apt-get install containerd)");
        let runtime_roots = cri_runtimes
            .iter()
            .map(|(name, binary)| (binary.to_path_buf(), d.join(format!("oci-root-{name}"))))
            .collect();
        let c = Containerd {
            dir,
            child,
            runtime_roots: std::cell::RefCell::new(runtime_roots),
        };
        let sock = c.socket();
        poll("containerd's socket", Duration::from_secs(30), || {
            c.ctr(&["version"]).status.success().then_some(())
        });
        assert!(sock.exists());
        c
    }

    /// The gRPC socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// Its private directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// containerd's own log (for assertion messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr --address SOCK ARGS`.
    pub fn ctr_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address").arg(self.socket()).args(args);
        cmd
    }

    /// Runs ctr to completion.
    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr")
    }

    /// Says that `runtime` keeps containers of this containerd under `root` (a `ctr run
    /// --runc-root`), so that dropping it removes them even when the test failed midway.
    pub fn runtime_root(&self, runtime: &Path, root: &Path) {
        self.runtime_roots
            .borrow_mut()
            .push((runtime.to_path_buf(), root.to_path_buf()));
    }

    /// Deletes (`--force`) every container the runtimes keep under their roots: the shim
    /// adds the namespace to the root, so each subdirectory is a runtime root of its own.
    fn delete_containers(&self) {
        for (runtime, root) in self.runtime_roots.borrow().iter() {
            let Ok(namespaces) = fs::read_dir(root) else {
                continue;
            };
            for ns in namespaces.flatten().map(|e| e.path()) {
                let Ok(ids) = fs::read_dir(&ns) else { continue };
                for id in ids.flatten().map(|e| e.file_name()) {
                    let _ = Command::new(runtime)
                        .arg("--root")
                        .arg(&ns)
                        .args(["delete", "--force"])
                        .arg(&id)
                        .stdin(Stdio::null())
                        .output();
                }
            }
        }
    }

    /// Imports `archive` (docker-archive or oci-archive) into `namespace`.
    pub fn import(&self, namespace: &str, archive: &Path, base_name: Option<&str>) {
        let mut args = vec!["-n", namespace, "images", "import"];
        if let Some(b) = base_name {
            args.extend(["--base-name", b]);
        }
        let archive = archive.to_str().unwrap();
        args.push(archive);
        let out = self.ctr(&args);
        assert!(out.status.success(), "ctr import: {}", show(&out));
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Also after a failed test (a panic mid-pod): the containers first, while their
        // runtime can still find them, then containerd, its shims, and their mounts.
        self.delete_containers();
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        // Shims outlive containerd by design; stop the ones that served this instance.
        let shims = Command::new("pgrep")
            .args(["-f", "--", &format!("-address {}", self.socket().display())])
            .output();
        if let Ok(out) = shims {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: kill(2) of a shim started for this test's containerd.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        unmount_under(self.dir.path());
    }
}

/// Detaches every mount at or below `dir` (the shim's rootfs bind mounts, the CRI's shm
/// mounts), deepest first. `umount -R DIR` does nothing when DIR itself is no mount point.
pub fn unmount_under(dir: &Path) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    // Field 5 is the mount point, with spaces and the like escaped as octal.
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // SAFETY: umount2(2) with a NUL-terminated path that lives across the call.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Makes a docker-archive of a busybox image called `name` whose entrypoint is
/// `entrypoint`, through a private podman (import, then save).
pub fn busybox_archive(podman: &Podman, name: &str, entrypoint: &[&str], out: &Path) {
    let tar = busybox_tar(podman.dir(), &[]);
    let change = format!("ENTRYPOINT {}", serde_json::to_string(entrypoint).unwrap());
    podman.ok(&[
        "import",
        "--change",
        &change,
        "--change",
        IMAGE_PATH_ENV,
        tar.to_str().unwrap(),
        name,
    ]);
    podman.ok(&[
        "save",
        "--format",
        "docker-archive",
        "-o",
        out.to_str().unwrap(),
        name,
    ]);
}
