//! The `hull-vmm` child process of one container, and the state file that lets any `hull`
//! invocation find (and kill) it again.

use std::ffi::OsString;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use hull_executor::cgroups::{driver, Layout};

use super::channel::VSOCK_SOCKET;
use super::launch::{self, VmmProcess};
use super::{ids, jail, VmError};

/// State file of the VM in the container's state directory.
pub const STATE_FILE: &str = "vm.json";
/// The guest's serial console log.
pub const CONSOLE_LOG: &str = "console.log";
/// The VMM's own log (stderr).
pub const VMM_LOG: &str = "vmm.log";

/// What the VM is made of.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    /// hull-vmm binary.
    pub vmm: PathBuf,
    /// Guest kernel.
    pub kernel: PathBuf,
    /// The agent initramfs.
    pub initramfs: PathBuf,
    /// The image disk (attached read-only, the guest's `vda`).
    pub disk: PathBuf,
    /// The container's writable layer disk (read-write, the guest's `vdb`), unless the
    /// root is read-only.
    pub layer_disk: Option<PathBuf>,
    /// Guest RAM.
    pub memory_mib: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// Extra kernel command line words.
    pub extra_cmdline: String,
    /// The container's CPU limit (`--cpus`), for the VMM's cgroup.
    pub nano_cpus: Option<u64>,
    /// Jail the VMM with a uid/gid from this range (`None`: config `vm.jail: false`).
    pub jail: Option<ids::IdRange>,
    /// virtio-net on the container's TAP (`--network bridge`).
    pub net: Option<NetDevice>,
    /// virtio-fs devices: (socket name in the jail directory, the VMM's cwd; tag), one
    /// per volume.
    pub fs: Vec<(String, String)>,
}
/// The VM's NIC: a TAP descriptor hull opened in the container's network namespace,
/// inherited by the VMM as fd [`NET_FD`].
#[derive(Debug, Clone)]
pub struct NetDevice {
    /// hull's descriptor of the TAP (close-on-exec; duplicated to [`NET_FD`] in the child).
    pub tap_fd: std::os::fd::RawFd,
    /// The guest's MAC.
    pub mac: String,
    /// The MTU.
    pub mtu: u32,
    /// The container's network namespace (its pinned path), where the TAP was made: a
    /// jailed VMM joins it rather than making an empty one of its own (Firecracker's jailer
    /// `--netns`). Either way the VMM reaches no network: seccomp lets it make Unix sockets
    /// only, it has no capabilities, and its TAP is the inherited fd; the namespace's job is
    /// to keep abstract Unix sockets (scoped by network namespace) out of its reach, which
    /// the container's own namespace does as well, for a few microseconds instead of the
    /// ~0.5 ms a new namespace costs (docs/vmm.md "Benchmarks").
    pub netns: PathBuf,
}

/// The descriptor number the VMM finds its TAP at.
pub const NET_FD: std::os::fd::RawFd = 3;

/// Identifies the VMM process across hull invocations (pid + start time against reuse).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MachineState {
    /// Host pid of hull-vmm.
    pub vmm_pid: u32,
    /// Its start time (field 22 of /proc/PID/stat).
    pub start_time: u64,
    /// Guest kernel release reported by the agent (empty until it said hello).
    #[serde(default)]
    pub guest_kernel: String,
    /// The jailed VMM's uid/gid (its lease is released at cleanup).
    #[serde(default)]
    pub jail_id: Option<u32>,
}

/// Start time of a process, or `None` if it is gone (zombies count as gone).
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

impl MachineState {
    /// Whether this VMM still runs.
    pub fn alive(&self) -> bool {
        process_start_time(self.vmm_pid) == Some(self.start_time)
    }

    /// Reads the state file, if any.
    pub fn load(state_dir: &Path) -> Option<MachineState> {
        let data = fs::read(state_dir.join(STATE_FILE)).ok()?;
        if data.len() > 64 * 1024 {
            return None;
        }
        serde_json::from_slice(&data).ok()
    }

    /// Writes the state file atomically.
    pub fn save(&self, state_dir: &Path) -> Result<(), VmError> {
        let tmp = state_dir.join(format!(".{STATE_FILE}.tmp"));
        let data = serde_json::to_vec(self).map_err(|e| VmError::Backend(e.to_string()))?;
        let write = || -> std::io::Result<()> {
            let f = crate::private_fs::create(&tmp)?;
            std::io::Write::write_all(&mut &f, &data)?;
            f.sync_all()?;
            fs::rename(&tmp, state_dir.join(STATE_FILE))
        };
        write().map_err(|e| VmError::io("write vm.json", e))
    }

    /// SIGKILLs the VMM (if it is still this process) and waits, bounded, until it is gone.
    pub fn kill(&self) {
        if !self.alive() {
            return;
        }
        // SAFETY: kill(2) on a pid we verified by start time; no memory is involved.
        unsafe { libc::kill(self.vmm_pid as libc::pid_t, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The jail of a VMM to be started: its uid/gid lease, directory and cgroup
/// (`jail`, docs/vmm.md "Jail"). `None` for an unjailed VMM (config `vm.jail: false`).
#[derive(Debug)]
pub struct JailPlan {
    /// The VM's uid and gid.
    pub id: u32,
    /// The VM's cgroups: its `cgroup.procs` files, open, for the VMM to join before exec.
    pub cgroups: Vec<OwnedFd>,
}

/// Prepares what the VMM of a container runs in: its socket directory (`<state>/jail`,
/// owned by the VM's uid when jailed) and, when jailed, its uid/gid lease and its cgroup
/// `cgroup` (hull's: `jail::vmm_cgroup`; hull-oci's follows the bundle's cgroupsPath).
/// On error nothing is left behind.
pub fn prepare(
    cfg: &MachineConfig,
    cgroup: &Path,
    state_dir: &Path,
) -> Result<Option<JailPlan>, VmError> {
    let Some(range) = cfg.jail else {
        jail::prepare(state_dir, 0).map_err(|e| VmError::io("the VM's directory", e))?;
        return Ok(None);
    };
    range
        .check(&ids::host_reserved())
        .map_err(VmError::Invalid)?;
    let me = ids::Holder::this_process().map_err(|e| VmError::io("VM id lease", e))?;
    let lease = ids::allocate(Path::new(ids::REGISTRY), range, me)
        .map_err(|e| VmError::io("VM id lease", e))?;
    let made = (|| -> Result<JailPlan, VmError> {
        jail::prepare(state_dir, lease.id).map_err(|e| VmError::io("the jail directory", e))?;
        let layout = Layout::host();
        let cgroups = jail::cgroup_plan(
            cgroup,
            cfg.memory_mib,
            cfg.vcpus,
            cfg.nano_cpus.is_some(),
            layout.version,
        )
        .and_then(|plan| driver::create(&layout, &plan))
        .map_err(|e| VmError::Backend(format!("the VMM's cgroup: {e}")))?;
        Ok(JailPlan {
            id: lease.id,
            cgroups,
        })
    })();
    if made.is_err() {
        release(cgroup, state_dir, Some(lease.id));
    }
    made.map(Some)
}

/// Removes what [`prepare`] made (the VMM must be gone): cgroup, jail directory, id lease.
pub fn release(cgroup: &Path, state_dir: &Path, jail_id: Option<u32>) {
    if let Err(e) = driver::remove(&Layout::host(), cgroup) {
        tracing::warn!("removing the VMM's cgroup: {e}");
    }
    if let Err(e) = jail::remove(state_dir) {
        tracing::warn!("{e}");
    }
    if let Some(id) = jail_id {
        if let Err(e) = ids::release(Path::new(ids::REGISTRY), id, None) {
            tracing::warn!("{e}");
        }
    }
}

/// Starts hull-vmm for a container, as PID 1 of a new PID namespace, in its jail when
/// `plan` says so. Its working directory is the jail directory (its vsock socket and the
/// guest's port sockets are relative names there); the console goes to `console.log` and
/// its own messages to `vmm.log` in the state directory, both opened here.
pub fn launch(
    cfg: &MachineConfig,
    state_dir: &Path,
    plan: Option<&JailPlan>,
) -> Result<VmmProcess, VmError> {
    let layer_param = match cfg.layer_disk {
        Some(_) => format!("hull.upper={}", super::upper::GUEST_DEVICE),
        None => String::new(),
    };
    let cmdline = format!(
        "console=ttyS0 reboot=k panic=-1 quiet rdinit=/init {layer_param} {}",
        cfg.extra_cmdline
    );
    let log = crate::private_fs::create(&state_dir.join(VMM_LOG))
        .map_err(|e| VmError::io("create vmm.log", e))?;
    let console = crate::private_fs::create(&state_dir.join(CONSOLE_LOG))
        .map_err(|e| VmError::io("create console.log", e))?;
    let dir = jail::dir(state_dir);
    let cwd = fs::File::open(&dir).map_err(|e| VmError::io("open the jail directory", e))?;
    let mut args: Vec<OsString> = vec![
        "--kernel".into(),
        cfg.kernel.clone().into(),
        "--initramfs".into(),
        cfg.initramfs.clone().into(),
        "--cmdline".into(),
        cmdline.trim().into(),
        "--memory".into(),
        cfg.memory_mib.to_string().into(),
        "--vcpus".into(),
        cfg.vcpus.to_string().into(),
        "--disk".into(),
        format!("{},ro", cfg.disk.display()).into(),
    ];
    if let Some(layer) = &cfg.layer_disk {
        args.push("--disk".into());
        args.push(layer.clone().into());
    }
    for (socket, tag) in &cfg.fs {
        args.push("--fs".into());
        args.push(format!("socket={socket},tag={tag}").into());
    }
    args.extend([
        "--vsock".into(),
        VSOCK_SOCKET.into(),
        "--serial".into(),
        "stdout".into(),
    ]);
    let cgroups = match plan {
        Some(plan) => {
            args.extend([
                "--jail".into(),
                dir.clone().into(),
                "--jail-uid".into(),
                plan.id.to_string().into(),
                "--jail-gid".into(),
                plan.id.to_string().into(),
            ]);
            if let Some(n) = &cfg.net {
                args.push("--jail-netns".into());
                args.push(n.netns.clone().into());
            }
            plan.cgroups.as_slice()
        }
        None => &[],
    };
    if let Some(n) = &cfg.net {
        args.push("--net".into());
        args.push(format!("fd={NET_FD},mac={},mtu={}", n.mac, n.mtu).into());
    }
    let vmm = launch::spawn(&launch::Launch {
        program: &cfg.vmm,
        args,
        cwd: cwd.as_fd(),
        stdout: console.as_fd(),
        stderr: log.as_fd(),
        cgroups,
        inherit: cfg.net.as_ref().map(|n| (n.tap_fd, NET_FD)),
    })
    .map_err(|e| VmError::io(format!("start the VMM {}", cfg.vmm.display()), e))?;
    if let Some(plan) = plan {
        // The lease now protects the VMM's life, not ours.
        let to = ids::Holder {
            pid: vmm.pid,
            start_time: vmm.start_time,
        };
        let from = ids::Holder::this_process().map_err(|e| VmError::io("VM id lease", e))?;
        ids::transfer(Path::new(ids::REGISTRY), plan.id, from, to)
            .map_err(|e| VmError::io("VM id lease", e))?;
    }
    Ok(vmm)
}

/// Exit code of hull-vmm when its seccomp filter stopped it (docs/vmm.md, "Exit codes").
pub const VMM_EXIT_SECCOMP: i32 = 108;

/// What hull tells the user when the VMM ended with `code` for a reason of its own: today a
/// seccomp violation, whose report line (thread and system call) the VMM wrote to its log.
pub fn vmm_failure(code: i32, log: &Path) -> Option<String> {
    if code != VMM_EXIT_SECCOMP {
        return None;
    }
    let text = tail(log, 20);
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("seccomp violation"))
        .unwrap_or("no report in its log");
    Some(format!(
        "the VM's monitor was stopped by its seccomp filter (a forbidden system call, as an \
         exploited device would make): {line}"
    ))
}

/// Last lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    // Only the end is read: the guest decides how long its console log grows.
    let mut text = Vec::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f
            .seek(SeekFrom::End(-16 * 1024))
            .or_else(|_| f.seek(SeekFrom::Start(0)));
        let _ = f.take(16 * 1024).read_to_end(&mut text);
    }
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    // The guest writes the console: its lines are escaped before anyone prints them.
    crate::sanitize::for_terminal(&all[all.len().saturating_sub(lines)..].join("\n")).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seccomp_stop_is_explained_with_the_vmms_report() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(VMM_LOG);
        fs::write(
            &log,
            "warming up\nhull-vmm: seccomp violation: thread vcpu 0 made the forbidden \
             system call socket (41) with domain 2; the VMM is stopped (exit 108)\n",
        )
        .unwrap();
        let msg = vmm_failure(VMM_EXIT_SECCOMP, &log).unwrap();
        assert!(
            msg.contains("seccomp filter") && msg.contains("thread vcpu 0"),
            "{msg}"
        );
        assert!(msg.contains("socket (41)"), "{msg}");
        assert_eq!(vmm_failure(0, &log), None);
        assert_eq!(vmm_failure(137, &log), None);
    }
}
