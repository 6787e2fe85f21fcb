//! The `hull-vmm` child process of one container, and the state file that lets any `hull`
//! invocation find (and kill) it again.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::channel::VSOCK_SOCKET;
use super::VmError;

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
    /// virtio-net on the container's TAP (`--network bridge`).
    pub net: Option<NetDevice>,
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

/// Starts hull-vmm for a container. Its working directory is the state directory, so the
/// vsock socket, console log and the guest's port sockets are short relative names.
pub fn launch(cfg: &MachineConfig, state_dir: &Path) -> Result<Child, VmError> {
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
    let mut cmd = Command::new(&cfg.vmm);
    cmd.current_dir(state_dir)
        .arg("--kernel")
        .arg(&cfg.kernel)
        .arg("--initramfs")
        .arg(&cfg.initramfs)
        .arg("--cmdline")
        .arg(cmdline.trim())
        .arg("--memory")
        .arg(cfg.memory_mib.to_string())
        .arg("--vcpus")
        .arg(cfg.vcpus.to_string())
        .arg("--disk")
        .arg(format!("{},ro", cfg.disk.display()));
    if let Some(layer) = &cfg.layer_disk {
        cmd.arg("--disk").arg(layer);
    }
    cmd.arg("--vsock")
        .arg(VSOCK_SOCKET)
        .arg("--serial")
        .arg(CONSOLE_LOG)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let tap_fd = cfg.net.as_ref().map(|n| {
        cmd.arg("--net")
            .arg(format!("fd={NET_FD},mac={},mtu={}", n.mac, n.mtu));
        n.tap_fd
    });
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: setsid, umask, prctl, getppid, dup2 and fcntl are async-signal-safe and touch
    // no memory of the parent. The VMM gets its own session (a terminal's ^C goes to hull,
    // which forwards it to the container) and dies with the process that started it, so no
    // VM outlives its owner: if hull died before the death signal was set, the signal will
    // never come, so the parent is checked after setting it.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            // What the VMM creates (the console log, its vsock sockets) is root's only.
            libc::umask(0o077);
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::other("hull exited while starting the VMM"));
            }
            // The TAP at a fixed number, without close-on-exec (dup2 clears it; a
            // descriptor that already is NET_FD only needs the flag cleared).
            if let Some(fd) = tap_fd {
                let ok = if fd == NET_FD {
                    libc::fcntl(fd, libc::F_SETFD, 0) == 0
                } else {
                    libc::dup2(fd, NET_FD) == NET_FD
                };
                if !ok {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| VmError::io(format!("start the VMM {}", cfg.vmm.display()), e))
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
