//! Resource limits for the container with cgroup2 inside the guest (on top of the VM's own
//! size, which the host sets).

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hull_protocol::Limits;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The container's cgroup.
pub struct Cgroup {
    dir: PathBuf,
}

fn enable_controller(name: &str) -> bool {
    let available =
        fs::read_to_string(Path::new(CGROUP_ROOT).join("cgroup.controllers")).unwrap_or_default();
    available.split_whitespace().any(|c| c == name)
        && fs::write(
            Path::new(CGROUP_ROOT).join("cgroup.subtree_control"),
            format!("+{name}"),
        )
        .is_ok()
}

impl Cgroup {
    /// Creates the container cgroup and writes the limits. A requested limit whose
    /// controller the guest kernel lacks is an error, not a silent no-op.
    pub fn create(limits: &Limits) -> Result<Cgroup> {
        let dir = Path::new(CGROUP_ROOT).join("container");
        let want = [
            ("memory", limits.memory_bytes.is_some()),
            ("cpu", limits.cpu_millis.is_some()),
            ("pids", limits.pids.is_some()),
        ];
        for (controller, needed) in want {
            if !enable_controller(controller) && needed {
                bail!("the guest kernel has no cgroup2 {controller} controller for the requested limit");
            }
        }
        fs::create_dir_all(&dir).context("create container cgroup")?;
        let write = |file: &str, value: String| {
            fs::write(dir.join(file), &value).with_context(|| format!("write {value} to {file}"))
        };
        if let Some(bytes) = limits.memory_bytes {
            write("memory.max", bytes.to_string())?;
            if dir.join("memory.swap.max").exists() {
                write("memory.swap.max", "0".into())?;
            }
        }
        if let Some(millis) = limits.cpu_millis {
            // period 100 ms; quota in microseconds.
            write("cpu.max", format!("{} 100000", millis.max(1) * 100))?;
        }
        if let Some(pids) = limits.pids {
            write("pids.max", pids.to_string())?;
        }
        Ok(Cgroup { dir })
    }

    /// An fd to `cgroup.procs`; a child writes "0" to it to join before exec.
    pub fn procs_fd(&self) -> Result<OwnedFd> {
        let f = fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.procs"))
            .context("open cgroup.procs")?;
        Ok(f.into())
    }

    /// Kills every process left in the cgroup (cgroup.kill, Linux 5.14+).
    pub fn kill_all(&self) {
        let _ = fs::write(self.dir.join("cgroup.kill"), "1");
    }
}
