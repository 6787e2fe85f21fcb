//! crun and runc as peers: the same image, as an OCI bundle, run with `RUNTIME run`.
//!
//! The bundle's root filesystem is the image's layers merged: one overlay mount of the
//! stored (already unpacked) layers, made once before timing and shared by all runs, like a
//! bundle a user prepared. Each runtime starts from its own default spec (`RUNTIME spec`),
//! changed only where the bench needs it (command, no terminal, read-only root, a cgroup
//! path we can check is gone). Each peer keeps its state under the bench's work dir
//! (`--root`), so nothing it does touches other containers on the host.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use oci_spec::runtime::Spec;

use super::{first_line_of, which, LiveContainer, Runner};
use crate::bench::measure::{run_timed, LiveChild, Timed};
use crate::bench::{procfs, BenchConfig, BenchError, Peer};
use crate::isolation::IsolationKind;
use crate::paths::StatePaths;

/// crun or runc.
pub struct OciRunner {
    peer: Peer,
    image: String,
    paths: StatePaths,
    binary: Option<PathBuf>,
    /// This runner's scratch dir: `bundle/`, `state/`, and the shared merged rootfs.
    dir: PathBuf,
    /// Shared merged rootfs (one per bench run, mounted by whichever OCI peer comes first).
    rootfs: PathBuf,
    /// Whether this runner mounted `rootfs` (and so unmounts it).
    mounted: bool,
    counter: usize,
    /// The argv `config.json` currently holds.
    spec_args: Vec<String>,
    /// Run the runtime in a private mount namespace without the cgroup2 mount of a hybrid
    /// host (crun 1.8 refuses hybrid hosts whose cgroup2 mount holds controllers).
    hide_unified: Option<PathBuf>,
    notes: Vec<String>,
}

impl OciRunner {
    /// A runner for `peer` working under `work`.
    pub fn new(peer: Peer, config: &BenchConfig, paths: &StatePaths, work: &Path) -> Self {
        OciRunner {
            peer,
            image: config.image.clone(),
            paths: paths.clone(),
            binary: which(peer.name()),
            dir: work.join(peer.name()),
            rootfs: work.join("rootfs"),
            mounted: false,
            counter: 0,
            spec_args: Vec::new(),
            hide_unified: None,
            notes: Vec::new(),
        }
    }

    fn binary(&self) -> &Path {
        self.binary.as_deref().unwrap_or(Path::new("/nonexistent"))
    }

    fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }

    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// `RUNTIME --root STATE`.
    fn command(&self) -> Command {
        let mut cmd = Command::new(self.binary());
        cmd.arg("--root").arg(self.state());
        if let Some(unified) = &self.hide_unified {
            hide_mount(&mut cmd, unified);
        }
        cmd
    }

    fn next_id(&mut self) -> String {
        self.counter += 1;
        format!(
            "hull-bench-{}-{}-{}",
            std::process::id(),
            self.peer.name(),
            self.counter
        )
    }

    /// Writes `config.json` for `argv` and container `id` (its cgroup is named after it).
    fn write_spec(&mut self, argv: &[String], id: &str) -> Result<(), BenchError> {
        let path = self.bundle().join("config.json");
        let mut spec = Spec::load(&path)
            .map_err(|e| BenchError::Protocol(format!("read {}: {e}", path.display())))?;
        if let Some(process) = spec.process_mut() {
            process.set_args(Some(argv.to_vec()));
            process.set_terminal(Some(false));
        }
        if let Some(root) = spec.root_mut() {
            root.set_path(self.rootfs.clone());
            root.set_readonly(Some(true));
        }
        if let Some(linux) = spec.linux_mut() {
            linux.set_cgroups_path(Some(PathBuf::from(format!("/{id}"))));
        }
        spec.save(&path)
            .map_err(|e| BenchError::Protocol(format!("write {}: {e}", path.display())))?;
        self.spec_args = argv.to_vec();
        Ok(())
    }

    /// Mounts the image's layers, merged, at `rootfs` (unless another peer already did).
    fn mount_rootfs(&mut self) -> Result<(), String> {
        if is_mountpoint(&self.rootfs) {
            return Ok(());
        }
        let store = crate::image::ImageStore::open(&self.paths).map_err(|e| e.to_string())?;
        let image = store.get(&self.image).map_err(|e| e.to_string())?;
        let upper = self.rootfs.with_file_name("rootfs-upper");
        let workdir = self.rootfs.with_file_name("rootfs-work");
        for dir in [&self.rootfs, &upper, &workdir] {
            std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
        // overlayfs wants the top layer first.
        let lower: Vec<String> = image
            .layers
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            upper.display(),
            workdir.display()
        );
        nix::mount::mount(
            Some("hull-bench"),
            &self.rootfs,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(options.as_str()),
        )
        .map_err(|e| format!("mount the image's layers at {}: {e}", self.rootfs.display()))?;
        self.mounted = true;
        Ok(())
    }
}

/// Makes `cmd` run in a private mount namespace in which `mountpoint` is unmounted. Only the
/// child's view changes; the host's mounts stay as they are.
fn hide_mount(cmd: &mut Command, mountpoint: &Path) {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let target = std::ffi::CString::new(mountpoint.as_os_str().as_bytes()).unwrap_or_default();
    let root = c"/";
    // SAFETY: the closure runs in the forked child before exec and only makes the
    // async-signal-safe unshare/mount/umount2 system calls on strings allocated before fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_SLAVE,
                    std::ptr::null(),
                ) != 0
                || libc::umount2(target.as_ptr(), libc::MNT_DETACH) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Whether `path` is a mount point (its device differs from its parent's).
fn is_mountpoint(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (path.metadata(), path.parent().map(Path::metadata)) {
        (Ok(me), Some(Ok(parent))) => me.dev() != parent.dev(),
        _ => false,
    }
}

impl Runner for OciRunner {
    fn name(&self) -> &'static str {
        self.peer.name()
    }

    fn isolation(&self) -> IsolationKind {
        IsolationKind::Process
    }

    fn version(&self) -> Option<String> {
        first_line_of(self.binary.as_deref()?, &["--version"])
    }

    fn prepare(&mut self) -> Result<(), String> {
        if self.binary.is_none() {
            return Err(format!(
                "{} is not installed (apt-get install {})",
                self.peer.name(),
                self.peer.name()
            ));
        }
        if self.peer == Peer::Crun {
            let facts = crate::doctor::HostFacts::this_host(&self.paths);
            let layout = crate::doctor::cgroup_layout(&facts);
            if let (crate::doctor::CgroupVersion::Hybrid, Some(unified)) =
                (layout.version, &layout.unified_mount)
            {
                let controllers = facts
                    .read_trimmed(&format!("{unified}/cgroup.controllers"))
                    .unwrap_or_default();
                if !controllers.is_empty() {
                    self.hide_unified = Some(PathBuf::from(unified));
                    self.notes.push(format!(
                        "crun refuses hybrid cgroup hosts whose cgroup2 mount holds controllers \
                         ({controllers} at {unified}); it ran in a private mount namespace \
                         without that mount, so it used the v1 hierarchies (as runc does)"
                    ));
                }
            }
        }
        let bundle = self.bundle();
        for dir in [&bundle, &self.state()] {
            std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
        // The runtime's own default spec, as its users start from.
        let out = Command::new(self.binary())
            .arg("spec")
            .arg("--bundle")
            .arg(&bundle)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run {} spec: {e}", self.peer.name()))?;
        if !out.status.success() {
            return Err(format!(
                "{} spec failed: {}",
                self.peer.name(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        self.mount_rootfs()
    }

    fn run_once(&mut self, argv: &[String], timeout: Duration) -> Result<Timed, BenchError> {
        let id = self.next_id();
        self.write_spec(argv, &id)?;
        let mut cmd = self.command();
        cmd.args(["run", "--bundle"]).arg(self.bundle()).arg(&id);
        let timed = run_timed(cmd, timeout);
        if !matches!(&timed, Ok(t) if t.exit_code == 0) {
            self.delete(&id);
        }
        timed
    }

    fn spawn_live(&mut self, _index: usize, argv: &[String]) -> Result<LiveContainer, BenchError> {
        let id = self.next_id();
        // The runtime reads config.json while creating the container, before `ready`.
        self.write_spec(argv, &id)?;
        let mut cmd = self.command();
        cmd.args(["run", "--bundle"]).arg(self.bundle()).arg(&id);
        Ok(LiveContainer {
            child: LiveChild::spawn(cmd)?,
            id,
        })
    }

    fn members(&self, live: &LiveContainer) -> BTreeSet<u32> {
        let mut pids = procfs::tree(&[live.child.child.id()]);
        for pid in procfs::in_cgroup_matching(&live.id) {
            pids.extend(procfs::tree(&[pid]));
        }
        pids
    }

    fn forget(&mut self, live: &LiveContainer) {
        self.delete(&live.id);
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    fn cleanup(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.binary.is_some() && self.state().exists() {
            let listed = self.command().args(["list", "-q"]).output();
            if let Ok(out) = listed {
                for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    problems.push(format!(
                        "{} container {id} was left; deleting it",
                        self.name()
                    ));
                    self.delete(id);
                }
            }
        }
        if self.mounted {
            if let Err(e) = nix::mount::umount2(&self.rootfs, nix::mount::MntFlags::MNT_DETACH) {
                problems.push(format!("unmount {}: {e}", self.rootfs.display()));
            }
            self.mounted = false;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                problems.push(format!("remove {}: {e}", self.dir.display()));
            }
        }
        problems
    }
}

impl OciRunner {
    fn delete(&self, id: &str) {
        let _ = self
            .command()
            .args(["delete", "-f", id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        remove_peer_cgroups(id);
    }
}

/// Removes the cgroup named after bench container `id` from every hierarchy. crun's
/// `delete -f` of a container killed a moment ago can leave its `name=systemd` cgroup
/// behind (rmdir raced the last task's exit); the bench named it, so the bench removes it.
/// Bounded: a cgroup that still holds tasks after the deadline is left for the caller's
/// leak report.
fn remove_peer_cgroups(id: &str) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut dirs: Vec<PathBuf> = hierarchies
        .flatten()
        .map(|h| h.path().join(id))
        .chain(std::iter::once(Path::new("/sys/fs/cgroup").join(id)))
        .filter(|p| p.is_dir())
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while !dirs.is_empty() && std::time::Instant::now() < deadline {
        dirs.retain(|d| match std::fs::remove_dir(d) {
            Ok(()) => false,
            Err(e) => e.kind() != std::io::ErrorKind::NotFound,
        });
        if !dirs.is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
