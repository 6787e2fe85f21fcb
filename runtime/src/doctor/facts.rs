//! `HostFacts`: everything `hull doctor` reads about the host, through one injectable root.
//!
//! Every file the checks look at (`/proc`, `/sys`, `/dev/kvm`, `/lib/modules`, the guest
//! kernel under `/usr/local/lib/hull`, `$PATH` entries) is read below `host_root`, which is
//! `/` on a real run. Tests point it at a crafted tree to assert the verdicts for hosts they
//! cannot be on (VT-x, cgroup v2, no overlayfs ...).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::paths::StatePaths;

/// Largest file the doctor reads; /proc and /sys files are far smaller, so anything bigger
/// is not what we expect and is cut off rather than read whole.
const MAX_FACT_FILE: u64 = 4 << 20;

/// The host as the doctor sees it.
#[derive(Debug, Clone)]
pub struct HostFacts {
    /// Prefix for every host path (`/` on a real run).
    pub host_root: PathBuf,
    /// Effective user id of the caller.
    pub euid: u32,
    /// Directory of the running `hull` binary: `hull-vmm` and `hull-agent` are looked up
    /// beside it first (that is where cargo and the install script put them).
    pub exe_dir: Option<PathBuf>,
    /// `$PATH`, searched below `host_root` for `hull-vmm` and `qemu-system-x86_64`.
    pub path_var: String,
    /// State directories that must be writable (not prefixed: they are the real ones).
    pub state: StatePaths,
    /// `$HULL_VMM`, `$HULL_AGENT`, `$HULL_KERNEL`: explicit paths the vm backend uses first.
    pub vmm_override: Option<PathBuf>,
    /// See `vmm_override`.
    pub agent_override: Option<PathBuf>,
    /// See `vmm_override`.
    pub kernel_override: Option<PathBuf>,
}

impl HostFacts {
    /// Facts about the machine this process runs on.
    pub fn this_host(state: &StatePaths) -> Self {
        Self::with_root(Path::new("/"), state)
    }

    /// Facts read below `host_root` (the running process's euid, exe dir and `$PATH`).
    pub fn with_root(host_root: &Path, state: &StatePaths) -> Self {
        HostFacts {
            host_root: host_root.to_path_buf(),
            euid: nix::unistd::geteuid().as_raw(),
            exe_dir: std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(Path::to_path_buf)),
            path_var: std::env::var("PATH")
                .unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            state: state.clone(),
            vmm_override: std::env::var_os("HULL_VMM").map(PathBuf::from),
            agent_override: std::env::var_os("HULL_AGENT").map(PathBuf::from),
            kernel_override: std::env::var_os("HULL_KERNEL").map(PathBuf::from),
        }
    }

    /// The host path `abs` (an absolute path like `/proc/cpuinfo`) below `host_root`.
    pub fn host_path(&self, abs: &str) -> PathBuf {
        self.host_root.join(abs.trim_start_matches('/'))
    }

    /// Contents of a host file, or `None` when it is missing or unreadable.
    pub fn read(&self, abs: &str) -> Option<String> {
        let file = std::fs::File::open(self.host_path(abs)).ok()?;
        let mut text = String::new();
        file.take(MAX_FACT_FILE).read_to_string(&mut text).ok()?;
        Some(text)
    }

    /// First line of a host file, trimmed.
    pub fn read_trimmed(&self, abs: &str) -> Option<String> {
        self.read(abs).map(|t| t.trim().to_string())
    }

    /// Whether a host path exists.
    pub fn exists(&self, abs: &str) -> bool {
        self.host_path(abs).exists()
    }

    /// Finds an executable named `name` in `$PATH` (below `host_root`).
    pub fn which(&self, name: &str) -> Option<PathBuf> {
        self.path_var
            .split(':')
            .filter(|dir| !dir.is_empty())
            .map(|dir| self.host_path(dir).join(name))
            .find(|candidate| is_executable(candidate))
    }

    /// The kernel release (`uname -r`), read from /proc so tests can set it.
    pub fn kernel_release(&self) -> Option<String> {
        self.read_trimmed("/proc/sys/kernel/osrelease")
    }
}

/// Whether `path` is a regular file with an execute bit.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
