//! The spec's `mounts` and `linux` sections: namespaces, masked and read-only paths, device
//! rules, seccomp, cgroup limits and path.

use std::collections::BTreeSet;
use std::path::PathBuf;

use hull_executor::defaults;
use hull_executor::seccomp::profile::{self, Profile, Target};
use oci_spec::runtime::{
    get_default_namespaces, Linux, LinuxBuilder, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources,
    LinuxSeccomp, Mount, Process,
};

use super::{bad, parse, RunOptions, SpecError};

/// CFS period for `--cpus` (docker's).
const CFS_PERIOD_US: u64 = 100_000;

/// Most `-v` volumes.
pub const MAX_VOLUMES: usize = 64;

/// docker's mounts, then the volumes.
pub fn mounts(opts: &RunOptions) -> Result<Vec<Mount>, SpecError> {
    if opts.volumes.len() > MAX_VOLUMES {
        return Err(bad(format!(
            "{} volumes: at most {MAX_VOLUMES} are allowed",
            opts.volumes.len()
        )));
    }
    let mut out = defaults::mounts(defaults::DEV_SHM_BYTES);
    for v in &opts.volumes {
        let v = parse::parse_volume(v)?;
        let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
        if v.read_only {
            options.push("ro".into());
        }
        let mut m = Mount::default();
        m.set_destination(PathBuf::from(&v.container))
            .set_typ(Some("bind".into()))
            .set_source(Some(v.host))
            .set_options(Some(options));
        out.push(m);
    }
    Ok(out)
}

/// The kernel's (major, minor) version.
fn kernel_version() -> (u32, u32) {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// docker's default seccomp profile for a process with these capabilities.
pub fn seccomp(process: &Process) -> Result<LinuxSeccomp, SpecError> {
    let caps: BTreeSet<String> = process
        .capabilities()
        .as_ref()
        .and_then(|c| c.bounding().as_ref())
        .map(|b| b.iter().map(|c| format!("CAP_{c}")).collect())
        .unwrap_or_default();
    profile::resolve(
        &Profile::default_profile(),
        &Target {
            capabilities: &caps,
            kernel: kernel_version(),
        },
    )
    .map_err(|e| bad(e.to_string()))
}

fn resources(opts: &RunOptions) -> Result<LinuxResources, SpecError> {
    let mut r = LinuxResources::default();
    let mut rules = defaults::device_rules();
    rules.extend(super::privileges::devices(opts)?.1);
    r.set_devices(Some(rules));
    if let Some(m) = &opts.memory {
        let bytes = parse::parse_memory(m)? as i64;
        let mut mem = LinuxMemory::default();
        // No swap beyond the memory limit (swap is memory plus swap).
        mem.set_limit(Some(bytes)).set_swap(Some(bytes));
        r.set_memory(Some(mem));
    }
    if let Some(c) = &opts.cpus {
        let nano = parse::parse_cpus(c)?;
        // docker's conversion; the kernel's minimum quota is 1 ms.
        let quota = (nano.saturating_mul(CFS_PERIOD_US) / 1_000_000_000).max(1000);
        let mut cpu = LinuxCpu::default();
        cpu.set_quota(Some(quota as i64))
            .set_period(Some(CFS_PERIOD_US));
        r.set_cpu(Some(cpu));
    }
    // Unset: the default limit; 0 or negative: none (docker's and podman's meaning).
    match opts.pids_limit.unwrap_or(defaults::PIDS_LIMIT) {
        n if n > 0 => {
            let mut p = LinuxPids::default();
            p.set_limit(n);
            r.set_pids(Some(p));
        }
        _ => {}
    }
    Ok(r)
}

/// The `linux` section of container `id`.
pub fn build(id: &str, opts: &RunOptions, process: &Process) -> Result<Linux, SpecError> {
    let strings = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (devices, _) = super::privileges::devices(opts)?;
    let mut linux = LinuxBuilder::default()
        .namespaces(get_default_namespaces())
        .masked_paths(strings(defaults::MASKED_PATHS))
        .readonly_paths(strings(defaults::READONLY_PATHS))
        .resources(resources(opts)?)
        .cgroups_path(PathBuf::from(format!("/hull/{id}")))
        .seccomp(seccomp(process)?)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    if !devices.is_empty() {
        linux.set_devices(Some(devices));
    }
    Ok(linux)
}
