//! Creating, joining and removing a container's cgroups on the running machine.
//!
//! Directories are named by the plan's path, so cleanup finds them from the path alone, even
//! after a crash. A container with a cgroupsPath gets its cgroup in every hierarchy (v1:
//! each mounted one, freezer and named ones included, as runc does), limits or not.

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::devices::{self, BpfInsn};
use super::{CgroupPlan, Layout, Version};
use crate::error::{Error, Stage};

/// The v1 hierarchies mounted under `root` (`cpu,cpuacct`, `freezer`, `name=systemd`'s
/// `systemd`, the hybrid `unified`...), each once: the `cpu` -> `cpu,cpuacct` symlinks
/// are skipped. Sorted, so every container joins them in the same order.
fn v1_hierarchies(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").exists())
        .collect();
    v.sort();
    v
}

/// The controllers of a v1 hierarchy, from its directory name (`cpu,cpuacct`).
fn controllers_of(hierarchy: &Path) -> Vec<String> {
    hierarchy
        .file_name()
        .map(|n| n.to_string_lossy().split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

fn sys(what: impl Into<String>, e: io::Error) -> Error {
    Error::system(Stage::Cgroups, what, &e)
}

fn write(path: &Path, value: &str) -> Result<(), Error> {
    let r = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    r.map_err(|e| sys(format!("write {value:?} to {}", path.display()), e))
}

/// Creates `dir` and missing parents; for cpuset, each new directory gets its parent's CPUs
/// and memory nodes (an empty cpuset cannot hold tasks).
fn make_dir(dir: &Path, cpuset: bool) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        make_dir(parent, cpuset)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(sys(format!("create {}", dir.display()), e)),
    }
    if cpuset {
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let parent = dir.parent().unwrap_or(dir);
            let v = fs::read_to_string(parent.join(f))
                .map_err(|e| sys(format!("read {}", parent.join(f).display()), e))?;
            write(&dir.join(f), v.trim())?;
        }
    }
    Ok(())
}

/// Directories of the container's cgroup that may exist, per hierarchy.
fn dirs(layout: &Layout, path: &Path) -> Vec<PathBuf> {
    match layout.version {
        Version::V2 => vec![layout.root.join(path)],
        Version::V1 => v1_hierarchies(&layout.root)
            .into_iter()
            .map(|h| h.join(path))
            .collect(),
    }
}

fn open_procs(dir: &Path) -> Result<OwnedFd, Error> {
    fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.procs"))
        .map(OwnedFd::from)
        .map_err(|e| sys(format!("open {}/cgroup.procs", dir.display()), e))
}

/// Whether a missing file may be skipped: a swap limit equal to "no swap" on a kernel
/// without swap accounting asks for nothing.
fn skippable(file: &str, value: &str, plan: &CgroupPlan) -> bool {
    match file {
        "memory.swap.max" => value == "0",
        "memory.memsw.limit_in_bytes" => plan
            .settings
            .iter()
            .any(|s| s.file == "memory.limit_in_bytes" && s.value == value),
        _ => false,
    }
}

/// Creates the cgroup of `plan`, writes its values and device rules, and returns the
/// `cgroup.procs` descriptors the child writes to join. On error nothing is left.
pub fn create(layout: &Layout, plan: &CgroupPlan) -> Result<Vec<OwnedFd>, Error> {
    if plan.is_empty() {
        return Ok(Vec::new());
    }
    let result = match layout.version {
        Version::V1 => create_v1(layout, plan),
        Version::V2 => create_v2(layout, plan),
    };
    if result.is_err() {
        let _ = remove(layout, &plan.path);
    }
    result
}

fn apply(dir: &Path, plan: &CgroupPlan, controller: Option<&str>) -> Result<(), Error> {
    for s in &plan.settings {
        if controller.is_some_and(|c| c != s.controller) {
            continue;
        }
        let file = dir.join(&s.file);
        if !file.exists() {
            if skippable(&s.file, &s.value, plan) {
                continue;
            }
            return Err(Error::new(
                crate::error::ErrorKind::Unsupported,
                Stage::Cgroups,
                format!(
                    "{} is not available on this kernel (needed for {} = {})",
                    file.display(),
                    s.file,
                    s.value
                ),
            ));
        }
        write(&file, &s.value)?;
    }
    Ok(())
}

fn create_v1(layout: &Layout, plan: &CgroupPlan) -> Result<Vec<OwnedFd>, Error> {
    let hierarchies: Vec<(PathBuf, Vec<String>)> = v1_hierarchies(&layout.root)
        .into_iter()
        .map(|h| {
            let c = controllers_of(&h);
            (h, c)
        })
        .collect();
    let mut needed: Vec<&str> = plan.settings.iter().map(|s| s.controller).collect();
    if plan.devices.is_some() {
        needed.push("devices");
    }
    for c in needed {
        if !hierarchies.iter().any(|(_, cs)| cs.iter().any(|x| x == c)) {
            return Err(Error::new(
                crate::error::ErrorKind::Unsupported,
                Stage::Cgroups,
                format!(
                    "this host has no cgroup v1 {c} hierarchy under {}",
                    layout.root.display()
                ),
            ));
        }
    }
    let mut procs = Vec::new();
    for (hierarchy, controllers) in &hierarchies {
        let dir = hierarchy.join(&plan.path);
        make_dir(&dir, controllers.iter().any(|c| c == "cpuset"))?;
        for c in controllers {
            apply(&dir, plan, Some(c))?;
        }
        if controllers.iter().any(|c| c == "devices") {
            for r in plan.devices.iter().flatten() {
                let (file, line) = devices::v1_line(r);
                write(&dir.join(file), &line)?;
            }
        }
        procs.push(open_procs(&dir)?);
    }
    Ok(procs)
}

fn create_v2(layout: &Layout, plan: &CgroupPlan) -> Result<Vec<OwnedFd>, Error> {
    let mut controllers: Vec<&str> = Vec::new();
    for s in &plan.settings {
        if !controllers.contains(&s.controller) {
            controllers.push(s.controller);
        }
    }
    let available = fs::read_to_string(layout.root.join("cgroup.controllers")).unwrap_or_default();
    for c in &controllers {
        if !available.split_whitespace().any(|a| a == *c) {
            return Err(Error::new(
                crate::error::ErrorKind::Unsupported,
                Stage::Cgroups,
                format!("this kernel's cgroup v2 has no {c} controller"),
            ));
        }
    }
    // Delegate the controllers down to the container's parent (already enabled: no-op).
    let mut at = layout.root.clone();
    let parents: Vec<_> = plan
        .path
        .parent()
        .map(|p| p.components().collect())
        .unwrap_or_default();
    for next in std::iter::once(None).chain(parents.into_iter().map(Some)) {
        if let Some(c) = next {
            at.push(c);
            make_dir(&at, false)?;
        }
        for c in &controllers {
            let control = at.join("cgroup.subtree_control");
            let enabled = fs::read_to_string(&control).unwrap_or_default();
            if !enabled.split_whitespace().any(|e| e == *c) {
                write(&control, &format!("+{c}"))?;
            }
        }
    }
    let dir = layout.root.join(&plan.path);
    make_dir(&dir, false)?;
    apply(&dir, plan, None)?;
    if let Some(rules) = &plan.devices {
        attach_device_program(&dir, &devices::program(rules))?;
    }
    Ok(vec![open_procs(&dir)?])
}

/// Loads the device program and attaches it to the cgroup at `dir`.
fn attach_device_program(dir: &Path, program: &[BpfInsn]) -> Result<(), Error> {
    #[repr(C)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        rest: [u8; 96],
    }
    #[repr(C)]
    struct ProgAttach {
        target_fd: u32,
        attach_bpf_fd: u32,
        attach_type: u32,
        attach_flags: u32,
        rest: [u8; 112],
    }
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_ATTACH: libc::c_long = 8;
    const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
    const BPF_CGROUP_DEVICE: u32 = 6;
    const BPF_F_ALLOW_MULTI: u32 = 2;

    let license = c"Apache-2.0";
    let load = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: program.len() as u32,
        insns: program.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        rest: [0; 96],
    };
    // SAFETY: bpf(BPF_PROG_LOAD) reads the attribute struct and the instruction array and
    // license it points to, all alive across the call; it returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &load as *const ProgLoad,
            std::mem::size_of::<ProgLoad>(),
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        let kind =
            if e.raw_os_error() == Some(libc::ENOSYS) || e.raw_os_error() == Some(libc::EINVAL) {
                crate::error::ErrorKind::Unsupported
            } else {
                crate::error::ErrorKind::System
            };
        return Err(Error {
            kind,
            stage: Stage::Cgroups,
            errno: e.raw_os_error(),
            detail: "load the device cgroup program (cgroup v2 device rules need a kernel with CONFIG_CGROUP_BPF)".into(),
        });
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    let prog = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let cgroup = fs::File::open(dir).map_err(|e| sys(format!("open {}", dir.display()), e))?;
    let attach = ProgAttach {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        rest: [0; 112],
    };
    // SAFETY: bpf(BPF_PROG_ATTACH) reads the attribute struct; both fds are open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attach as *const ProgAttach,
            std::mem::size_of::<ProgAttach>(),
        )
    };
    if r < 0 {
        return Err(sys(
            format!("attach the device program to {}", dir.display()),
            io::Error::last_os_error(),
        ));
    }
    // The cgroup holds the program from now on; our descriptor can go.
    Ok(())
}

/// The `cgroup.procs` descriptors of an existing container cgroup (for `exec`).
pub fn open_existing(layout: &Layout, path: &Path) -> Result<Vec<OwnedFd>, Error> {
    dirs(layout, path)
        .iter()
        .filter(|d| d.join("cgroup.procs").exists())
        .map(|d| open_procs(d))
        .collect()
}

/// Moves the calling process into the cgroups whose `cgroup.procs` are open in `fds`.
pub fn join(fds: &[OwnedFd]) -> io::Result<()> {
    for fd in fds {
        // "0" means the writing process.
        // SAFETY: writing one byte from a static buffer to a descriptor we hold.
        if unsafe { libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Kills every process in the container's cgroups (v2: cgroup.kill; v1: each pid).
pub fn kill_all(layout: &Layout, path: &Path) {
    for dir in dirs(layout, path) {
        if layout.version == Version::V2 && fs::write(dir.join("cgroup.kill"), "1").is_ok() {
            continue;
        }
        kill_members(&dir);
    }
}

fn kill_members(dir: &Path) {
    let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) else {
        return;
    };
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        // SAFETY: kill with a pid read from the cgroup and a constant signal.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Removes the container's cgroups, killing any process left in them first. Idempotent.
pub fn remove(layout: &Layout, path: &Path) -> io::Result<()> {
    if path.as_os_str().is_empty() {
        return Ok(());
    }
    let mut first_err = None;
    for dir in dirs(layout, path) {
        if !dir.exists() {
            continue;
        }
        if let Err(e) = remove_dir(&dir) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

fn remove_dir(dir: &Path) -> io::Result<()> {
    // Bounded: a process killed with SIGKILL leaves the cgroup within milliseconds; retry a
    // few times with a short pause only while something is still inside.
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

/// The cgroup directories that exist for `path` (tests, `inspect`).
pub fn existing_dirs(layout: &Layout, path: &Path) -> Vec<PathBuf> {
    dirs(layout, path)
        .into_iter()
        .filter(|d| d.exists())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every mounted v1 hierarchy holds the container's cgroup, not just those hull writes
    /// limits to: the freezer (pause), named ones (systemd) and the hybrid unified one.
    #[test]
    fn a_v1_container_cgroup_is_in_every_mounted_hierarchy_once() {
        let root = tempfile::tempdir().unwrap();
        for h in ["cpu,cpuacct", "freezer", "memory", "systemd", "unified"] {
            fs::create_dir(root.path().join(h)).unwrap();
            fs::write(root.path().join(h).join("cgroup.procs"), "").unwrap();
        }
        std::os::unix::fs::symlink("cpu,cpuacct", root.path().join("cpu")).unwrap();
        fs::create_dir(root.path().join("not-a-cgroup")).unwrap();
        let layout = Layout {
            root: root.path().to_path_buf(),
            version: Version::V1,
        };
        let got: Vec<String> = dirs(&layout, Path::new("hull-oci/c1"))
            .iter()
            .map(|d| d.strip_prefix(root.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            got,
            [
                "cpu,cpuacct/hull-oci/c1",
                "freezer/hull-oci/c1",
                "memory/hull-oci/c1",
                "systemd/hull-oci/c1",
                "unified/hull-oci/c1"
            ]
        );
        assert_eq!(
            controllers_of(&root.path().join("cpu,cpuacct")),
            ["cpu", "cpuacct"]
        );
    }
}
