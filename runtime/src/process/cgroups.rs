//! Control groups for one container: memory, CPU (CFS quota) and PID limits, on both
//! cgroup v1 (this machine: one hierarchy per controller) and v2 (one unified hierarchy).
//! Every container has at least one cgroup, limits or not (v1: the `pids` hierarchy, v2:
//! its directory): whatever happens to hull, every process of a container can be found
//! by the container's id and killed (`remove`). Device access is confined by `nodev`
//! mounts (see `rootfs`), so no devices cgroup is needed.
//!
//! The cgroup directories are named after the container id (`.../hull/<id>`), so cleanup
//! finds them from the id alone, even after a crash.

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::isolation::Limits;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// CFS period used for `--cpus` (docker's default).
const CFS_PERIOD_US: u64 = 100_000;

/// Which cgroup layout the host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// One hierarchy per controller under /sys/fs/cgroup/<controller>.
    V1,
    /// The unified hierarchy mounted at /sys/fs/cgroup.
    V2,
}

/// The host's cgroup layout.
pub fn version() -> Version {
    if Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
        Version::V2
    } else {
        Version::V1
    }
}

/// Every directory a container with this id may have (for creation and cleanup).
fn dirs(id: &str) -> Vec<(&'static str, PathBuf)> {
    match version() {
        Version::V2 => vec![("", Path::new(CGROUP_ROOT).join("hull").join(id))],
        Version::V1 => ["memory", "cpu", "pids"]
            .into_iter()
            .map(|c| (c, Path::new(CGROUP_ROOT).join(c).join("hull").join(id)))
            .collect(),
    }
}

/// Cgroups of a created container: the `cgroup.procs` files to join.
#[derive(Debug)]
pub struct Cgroups {
    /// `cgroup.procs` of every directory the container belongs to.
    pub procs_files: Vec<PathBuf>,
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("write {value:?} to {}: {e}", path.display()),
        )
    })
}

fn mkdir(path: &Path) -> io::Result<()> {
    match fs::create_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("create {}: {e}", path.display()),
        )),
    }
}

/// Creates the container's cgroups and sets its limits. On v1, controllers without a
/// limit are not created, except `pids`, which every container gets.
pub fn create(id: &str, limits: &Limits) -> io::Result<Cgroups> {
    let result = match version() {
        Version::V1 => create_v1(id, limits),
        Version::V2 => create_v2(id, limits),
    };
    if result.is_err() {
        let _ = remove(id);
    }
    result
}

fn create_v1(id: &str, limits: &Limits) -> io::Result<Cgroups> {
    let mut procs_files = Vec::new();
    for (controller, dir) in dirs(id) {
        let wanted = match controller {
            "memory" => limits.memory_bytes.is_some(),
            "cpu" => limits.nano_cpus.is_some(),
            // Always: the one hierarchy that holds every container's processes.
            "pids" => true,
            _ => false,
        };
        if !wanted {
            continue;
        }
        mkdir(&dir)?;
        match controller {
            "memory" => {
                let bytes = limits.memory_bytes.unwrap_or_default().to_string();
                write(&dir.join("memory.limit_in_bytes"), &bytes)?;
                // Without swap accounting the file is absent and there is nothing to cap.
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write(&memsw, &bytes)?;
                }
            }
            "cpu" => {
                let quota = cfs_quota(limits.nano_cpus.unwrap_or_default());
                write(&dir.join("cpu.cfs_period_us"), &CFS_PERIOD_US.to_string())?;
                write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
            }
            "pids" => {
                if let Some(pids) = limits.pids {
                    write(&dir.join("pids.max"), &pids.to_string())?;
                }
            }
            _ => {}
        }
        procs_files.push(dir.join("cgroup.procs"));
    }
    Ok(Cgroups { procs_files })
}

fn create_v2(id: &str, limits: &Limits) -> io::Result<Cgroups> {
    let parent = Path::new(CGROUP_ROOT).join("hull");
    mkdir(&parent)?;
    // Delegate the controllers we use to our subtree (ignored when already enabled).
    for ctl in ["+memory", "+cpu", "+pids"] {
        let _ = write(&Path::new(CGROUP_ROOT).join("cgroup.subtree_control"), ctl);
        let _ = write(&parent.join("cgroup.subtree_control"), ctl);
    }
    let dir = parent.join(id);
    mkdir(&dir)?;
    if let Some(bytes) = limits.memory_bytes {
        write(&dir.join("memory.max"), &bytes.to_string())?;
        let swap = dir.join("memory.swap.max");
        if swap.exists() {
            write(&swap, "0")?;
        }
    }
    if let Some(nano) = limits.nano_cpus {
        write(
            &dir.join("cpu.max"),
            &format!("{} {CFS_PERIOD_US}", cfs_quota(nano)),
        )?;
    }
    if let Some(pids) = limits.pids {
        write(&dir.join("pids.max"), &pids.to_string())?;
    }
    Ok(Cgroups {
        procs_files: vec![dir.join("cgroup.procs")],
    })
}

/// CFS quota (µs per period) for a CPU limit in nano-CPUs; at least 1 ms as the kernel needs.
fn cfs_quota(nano_cpus: u64) -> u64 {
    (nano_cpus.saturating_mul(CFS_PERIOD_US) / 1_000_000_000).max(1000)
}

/// The `cgroup.procs` files of an existing container (for `exec`).
pub fn existing(id: &str) -> Cgroups {
    Cgroups {
        procs_files: dirs(id)
            .into_iter()
            .map(|(_, d)| d.join("cgroup.procs"))
            .filter(|p| p.exists())
            .collect(),
    }
}

impl Cgroups {
    /// Opens the `cgroup.procs` files for writing, before a fork, so the child can join
    /// without path lookups.
    pub fn open_for_join(&self) -> io::Result<Vec<OwnedFd>> {
        self.procs_files
            .iter()
            .map(|p| {
                fs::OpenOptions::new()
                    .write(true)
                    .open(p)
                    .map(OwnedFd::from)
                    .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", p.display())))
            })
            .collect()
    }
}

/// Moves the calling process into the cgroups whose `cgroup.procs` are open in `fds`.
pub fn join(fds: &[OwnedFd]) -> io::Result<()> {
    for fd in fds {
        // "0" means the writing process.
        nix::unistd::write(fd.as_fd(), b"0").map_err(io::Error::from)?;
    }
    Ok(())
}

/// Removes the container's cgroups, killing any process left in them first. Idempotent.
pub fn remove(id: &str) -> io::Result<()> {
    let mut first_err = None;
    for (_, dir) in dirs(id) {
        if !dir.exists() {
            continue;
        }
        if let Err(e) = remove_dir(&dir) {
            tracing::warn!("removing cgroup {}: {e}", dir.display());
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

fn remove_dir(dir: &Path) -> io::Result<()> {
    // Bounded: a process killed with SIGKILL leaves the cgroup within milliseconds; retry
    // a few times with a short pause only when something is still inside.
    for attempt in 0..50 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 49 => {
                kill_members(dir);
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("remove {}: {e}", dir.display()),
                ))
            }
        }
    }
    Ok(())
}

fn kill_members(dir: &Path) {
    let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) else {
        return;
    };
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// The cgroup directories that exist for `id` (used by tests and `inspect`).
pub fn existing_dirs(id: &str) -> Vec<PathBuf> {
    dirs(id)
        .into_iter()
        .map(|(_, d)| d)
        .filter(|d| d.exists())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_become_cfs_quota() {
        assert_eq!(cfs_quota(1_500_000_000), 150_000);
        assert_eq!(cfs_quota(500_000_000), 50_000);
        assert_eq!(cfs_quota(1), 1000, "kernel minimum");
    }
}
