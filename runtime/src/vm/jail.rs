//! The host side of a VMM's jail (docs/vmm.md, "Jail"): its directory, its uid/gid and its
//! cgroup. hull-vmm itself does the rest (namespaces, pivot_root, capabilities, seccomp).
//!
//! - The jail directory `<state dir>/jail` (mode 0700, owned by the VM's uid) becomes the
//!   VMM's `/`. It holds only sockets: the VMM's vsock listener (`vsock.sock`, made by the
//!   VMM while still root, so only root, i.e. hull, can connect) and the host ports the
//!   guest may call (`vsock.sock_<port>`: the agent's hello port while the VM boots, owned
//!   by the VM's uid so the VMM can connect). The kernel, initramfs and disks are not in
//!   it: the VMM opens them by the paths hull gives before it jails itself, so the jailed
//!   VMM has them as open descriptors only and cannot reach any file by name.
//! - The uid/gid comes from `vm.jail_ids` of the config file (see `ids`).
//! - The cgroup (`hull/<container id>`, as a process container's) caps the VMM's memory at
//!   guest RAM plus [`VMM_OVERHEAD_MIB`], its tasks at the vCPUs plus [`EXTRA_TASKS`], and
//!   its CPU time at its vCPU count when `--cpus` is given. The VMM joins it before exec.
//!
//! Everything here is removed by `cleanup`, whatever state the VM ended in.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ids::IdRange;
use hull_executor::cgroups::{CgroupPlan, Version};
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

/// The jail directory's name in the container's state directory.
pub const JAIL_DIR: &str = "jail";
/// Memory the VMM may use beyond guest RAM: its own code, heap and stacks (about 3 MiB,
/// docs/vmm.md "Benchmarks") and what KVM charges to it (page tables, vCPU state).
pub const VMM_OVERHEAD_MIB: u64 = 64;
/// Tasks beyond one per vCPU: the main thread (event loop) and KVM's per-VM kernel worker,
/// with room to spare. The VMM cannot start more (seccomp, RLIMIT_NPROC); this bounds it
/// even if it could.
pub const EXTRA_TASKS: u64 = 4;

/// The `vm` section of hull's config file:
/// `{"vm": {"jail": true, "jail_ids": {"start": 3221225472, "count": 65536}}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSettings {
    /// Jail every VMM (the default). `false` runs it with hull's rights: for debugging and
    /// for measuring what the jail costs, never for untrusted images.
    #[serde(default = "jail_by_default")]
    pub jail: bool,
    /// The uids/gids of jailed VMMs, one per VM (`ids`).
    #[serde(default)]
    pub jail_ids: IdRange,
}

fn jail_by_default() -> bool {
    true
}

impl Default for VmSettings {
    fn default() -> Self {
        VmSettings {
            jail: true,
            jail_ids: IdRange::default(),
        }
    }
}

/// Largest config file read.
const MAX_CONFIG: u64 = 1 << 20;

impl VmSettings {
    /// The `vm` section of the config file at `path` (defaults without a file or section).
    pub fn load(path: &Path) -> Result<VmSettings, String> {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            vm: VmSettings,
        }
        let file = match fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(VmSettings::default()),
            Err(e) => return Err(format!("config file {}: {e}", path.display())),
        };
        let mut text = String::new();
        file.take(MAX_CONFIG)
            .read_to_string(&mut text)
            .map_err(|e| format!("config file {}: {e}", path.display()))?;
        serde_json::from_str::<File>(&text)
            .map(|f| f.vm)
            .map_err(|e| format!("config file {}: {e}", path.display()))
    }

    /// The id range when VMMs are jailed.
    pub fn jail_range(&self) -> Option<IdRange> {
        self.jail.then_some(self.jail_ids)
    }
}

/// The jail directory of a container's state directory.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join(JAIL_DIR)
}

/// Makes a fresh, empty jail directory owned by `id` (what an earlier run left is removed).
pub fn prepare(state_dir: &Path, id: u32) -> io::Result<PathBuf> {
    let dir = dir(state_dir);
    remove(state_dir)?;
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| io::Error::new(e.kind(), format!("create {}: {e}", dir.display())))?;
    std::os::unix::fs::chown(&dir, Some(id), Some(id))
        .map_err(|e| io::Error::new(e.kind(), format!("chown {}: {e}", dir.display())))?;
    Ok(dir)
}

/// Hands a socket hull made in the jail to the VM's uid, so the VMM can connect to it;
/// nobody else but root can.
pub fn give_socket(path: &Path, id: u32) -> io::Result<()> {
    std::os::unix::fs::chown(path, Some(id), Some(id))
        .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(0o600)))
        .map_err(|e| io::Error::new(e.kind(), format!("hand {} to the VM: {e}", path.display())))
}

/// Removes the jail directory and whatever is in it.
pub fn remove(state_dir: &Path) -> io::Result<()> {
    let dir = dir(state_dir);
    match fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io::Error::new(
            e.kind(),
            format!("remove {}: {e}", dir.display()),
        )),
        _ => Ok(()),
    }
}

/// The cgroup of the VMM of hull's container `container_id` (hull-oci names its own).
pub fn vmm_cgroup(container_id: &str) -> PathBuf {
    PathBuf::from(format!("hull/{container_id}"))
}

/// The VMM's cgroup `path` (hull's: [`vmm_cgroup`]) for a VM of `memory_mib` and `vcpus`, written
/// by the executor's cgroup driver as a process container's limits are. With a CPU limit
/// (`--cpus`, which also sets the vCPU count by rounding up) the whole VMM gets as many
/// CPUs as it has vCPUs: the exact fraction is enforced inside the guest by the container's
/// own cgroup, while a host quota of the fraction would also throttle the guest kernel and
/// the VMM's device work (a 0.2-CPU container would boot five times slower).
pub fn cgroup_plan(
    path: &Path,
    memory_mib: u64,
    vcpus: u32,
    cpu_limited: bool,
    version: Version,
) -> Result<CgroupPlan, hull_executor::Error> {
    let mut memory = LinuxMemory::default();
    memory.set_limit(Some(((memory_mib + VMM_OVERHEAD_MIB) << 20) as i64));
    let mut pids = LinuxPids::default();
    pids.set_limit((u64::from(vcpus) + EXTRA_TASKS) as i64);
    let mut resources = LinuxResources::default();
    resources.set_memory(Some(memory)).set_pids(Some(pids));
    if cpu_limited {
        const PERIOD_US: u64 = 100_000;
        let mut cpu = LinuxCpu::default();
        cpu.set_period(Some(PERIOD_US))
            .set_quota(Some((u64::from(vcpus) * PERIOD_US) as i64));
        resources.set_cpu(Some(cpu));
    }
    CgroupPlan::new(Some(path), Some(&resources), version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vmm_is_limited_to_its_guest_plus_a_bounded_overhead() {
        let files = |plan: CgroupPlan| -> Vec<(String, String)> {
            plan.settings
                .into_iter()
                .map(|s| (s.file, s.value))
                .collect()
        };
        let plan = cgroup_plan(&vmm_cgroup("c1"), 256, 2, true, Version::V2).unwrap();
        assert_eq!(plan.path, Path::new("hull/c1"));
        let memory = ((256 + VMM_OVERHEAD_MIB) << 20).to_string();
        let pids = (2 + EXTRA_TASKS).to_string();
        let mut got = files(plan);
        got.sort();
        let mut want = vec![
            ("memory.max".to_string(), memory.clone()),
            ("pids.max".to_string(), pids.clone()),
            ("cpu.max".to_string(), "200000 100000".to_string()),
        ];
        want.sort();
        assert_eq!(got, want, "whole vCPUs of CPU time");
        let v1 = files(cgroup_plan(&vmm_cgroup("c1"), 128, 1, false, Version::V1).unwrap());
        assert!(v1.iter().all(|(f, _)| !f.starts_with("cpu.")), "{v1:?}");
        assert!(v1.contains(&("pids.max".into(), (1 + EXTRA_TASKS).to_string())));
    }

    #[test]
    fn the_vm_section_of_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        assert_eq!(VmSettings::load(&path).unwrap(), VmSettings::default());
        fs::write(&path, r#"{"network": {"default": "none"}}"#).unwrap();
        let s = VmSettings::load(&path).unwrap();
        assert!(s.jail && s.jail_range() == Some(IdRange::default()));
        fs::write(
            &path,
            r#"{"vm": {"jail": false, "jail_ids": {"start": 5000, "count": 10}}}"#,
        )
        .unwrap();
        let s = VmSettings::load(&path).unwrap();
        assert_eq!(s.jail_range(), None);
        assert_eq!(
            s.jail_ids,
            IdRange {
                start: 5000,
                count: 10
            }
        );
        fs::write(&path, r#"{"vm": {"jail_uids": 1}}"#).unwrap();
        let err = VmSettings::load(&path).unwrap_err();
        assert!(
            err.contains("jail_uids") && err.contains("config.json"),
            "{err}"
        );
    }

    #[test]
    fn the_jail_directory_is_fresh_private_and_the_vms() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: chown needs root");
            return;
        }
        use std::os::unix::fs::MetadataExt;
        let state = tempfile::tempdir().unwrap();
        let first = prepare(state.path(), 3_500_000_000).unwrap();
        fs::write(first.join("left-over"), "x").unwrap();
        let dir = prepare(state.path(), 3_500_000_001).unwrap();
        let meta = fs::metadata(&dir).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (3_500_000_001, 3_500_000_001));
        assert_eq!(meta.mode() & 0o777, 0o700);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "emptied");
        remove(state.path()).unwrap();
        assert!(!dir.exists());
        remove(state.path()).unwrap();
    }
}
