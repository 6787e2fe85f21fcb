//! The plan: everything about a container computed from its OCI spec before any process is
//! created — namespaces, the root filesystem, mounts, devices, masked and read-only paths,
//! hostname, sysctls, cgroup values, and for the process its command, environment, working
//! directory, identity, capabilities, rlimits and seccomp program. Pure (no system calls),
//! so every spec feature is unit-tested here without root; the child process only carries
//! the plan out (`init`).
//!
//! Whatever the spec asks for that hull cannot do is refused here with a reason: a field is
//! never silently dropped.

pub mod caps;
pub mod devices;
pub mod mounts;
pub mod namespaces;
pub mod process;

use std::ffi::CString;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::cgroups::{CgroupPlan, Layout, Version};
use crate::error::Error;
use devices::DeviceNode;
use mounts::{MountKind, MountStep, Param};
use namespaces::NamespacePlan;
pub use process::ProcessPlan;

/// Facts about the machine the container runs on (the host, or the guest for the agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The highest capability number the kernel knows.
    pub last_cap: u32,
    /// The cgroup layout.
    pub cgroups: Layout,
    /// The v1 hierarchies (mount point name, options): what `type: cgroup` mounts show.
    pub cgroup_v1: Vec<(String, Vec<String>)>,
}

impl Host {
    /// This machine's facts.
    pub fn detect() -> Host {
        let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40);
        let cgroups = Layout::host();
        let cgroup_v1 = if cgroups.version == Version::V1 {
            std::fs::read_to_string("/proc/self/mountinfo")
                .map(|m| v1_hierarchies(&m, &cgroups.root))
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        Host {
            last_cap,
            cgroups,
            cgroup_v1,
        }
    }
}

/// The cgroup v1 hierarchies mounted directly under `root`, from /proc/self/mountinfo.
pub fn v1_hierarchies(mountinfo: &str, root: &Path) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split_whitespace();
        if r.next() != Some("cgroup") {
            continue;
        }
        let super_opts = r.nth(1).unwrap_or("");
        let Some(mount_point) = left.split_whitespace().nth(4) else {
            continue;
        };
        let mp = Path::new(mount_point);
        if mp.parent() != Some(root) {
            continue;
        }
        let Some(name) = mp.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let opts: Vec<String> = super_opts
            .split(',')
            .filter(|o| !matches!(*o, "rw" | "ro" | "relatime" | "noatime"))
            .map(String::from)
            .collect();
        out.push((name.to_string(), opts));
    }
    out
}

/// Where the container's root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSource {
    /// `root.path` already holds it (an OCI bundle, the guest agent's disk).
    Ready,
    /// The executor builds it at `root.path`: an overlay of image layers under a writable
    /// layer the caller keeps (on disk, so it outlives the process).
    Layers {
        /// Read-only image layers, lowest first.
        layers: Vec<PathBuf>,
        /// The writable layer's overlay `upperdir` (an existing directory).
        upper: PathBuf,
        /// Its `workdir` (an existing directory on the same filesystem).
        work: PathBuf,
    },
}

/// An overlay root's ready-made arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayPlan {
    /// The overlay mount data.
    pub data: CString,
}

/// The root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootPlan {
    /// Absolute path of the root before the switch.
    pub path: CString,
    /// Built from layers, or `None` when ready.
    pub overlay: Option<OverlayPlan>,
    /// Remounted read-only at the end (`root.readonly`).
    pub readonly: bool,
    /// MS_* propagation flags for "/" (`linux.rootfsPropagation`, rprivate by default).
    pub propagation: u64,
}

/// One sysctl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    /// `net.ipv4.ip_forward`.
    pub name: String,
    /// `/proc/sys/net/ipv4/ip_forward`.
    pub path: CString,
    /// The value.
    pub value: String,
}

/// A cgroup v1 hierarchy shown under a `type: cgroup` mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupV1Mount {
    /// Directory name under the mount (`memory`, `cpu`...).
    pub name: CString,
    /// Mount parameters (`memory`; `name=systemd`).
    pub params: Vec<Param>,
}

/// Everything about the container but its process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPlan {
    /// The root filesystem.
    pub root: RootPlan,
    /// Namespaces.
    pub namespaces: NamespacePlan,
    /// `mounts`, in order.
    pub mounts: Vec<MountStep>,
    /// Device nodes.
    pub devices: Vec<DeviceNode>,
    /// Create /dev/fd, stdin, stdout, stderr (when /dev is a fresh mount).
    pub dev_symlinks: bool,
    /// Point /dev/ptmx at the container's own devpts.
    pub ptmx_symlink: bool,
    /// `linux.maskedPaths`.
    pub masked: Vec<CString>,
    /// `linux.readonlyPaths`.
    pub readonly_paths: Vec<CString>,
    /// `hostname`.
    pub hostname: Option<CString>,
    /// `domainname`.
    pub domainname: Option<CString>,
    /// `linux.sysctl`, sorted by name.
    pub sysctls: Vec<Sysctl>,
    /// Bring up `lo` (a new network namespace).
    pub loopback: bool,
    /// cgroup values.
    pub cgroup: CgroupPlan,
    /// For `type: cgroup` mounts on a v1 host.
    pub cgroup_v1: Vec<CgroupV1Mount>,
}

/// A container's first process: container and process plans.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The container.
    pub container: ContainerPlan,
    /// Its process.
    pub process: ProcessPlan,
}

/// Largest number of sysctls accepted.
pub const MAX_SYSCTLS: usize = 256;
/// IPC sysctls (namespaced with the IPC namespace).
const IPC_SYSCTLS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

fn sysctls(spec: &Spec, ns: &NamespacePlan) -> Result<Vec<Sysctl>, Error> {
    let Some(map) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(Vec::new());
    };
    if map.len() > MAX_SYSCTLS {
        return Err(Error::invalid(format!("more than {MAX_SYSCTLS} sysctls")));
    }
    let mut out = Vec::new();
    for (name, value) in map {
        let ok_name = !name.is_empty()
            && name.len() <= 256
            && !name.contains("..")
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !ok_name {
            return Err(Error::invalid(format!("sysctl name {name:?}")));
        }
        let isolated = if IPC_SYSCTLS.contains(&name.as_str()) || name.starts_with("fs.mqueue.") {
            ns.isolates(LinuxNamespaceType::Ipc)
        } else if name.starts_with("net.") {
            ns.isolates(LinuxNamespaceType::Network)
        } else if name == "kernel.hostname" || name == "kernel.domainname" {
            ns.isolates(LinuxNamespaceType::Uts)
        } else {
            return Err(Error::invalid(format!(
                "sysctl {name} is not namespaced: setting it would change the whole machine"
            )));
        };
        if !isolated {
            return Err(Error::invalid(format!(
                "sysctl {name} needs the container's own namespace for it (it would change the host's)"
            )));
        }
        if value.len() > 4096 {
            return Err(Error::invalid(format!("sysctl {name}: value too long")));
        }
        let path = format!("/proc/sys/{}", name.replace('.', "/"));
        out.push(Sysctl {
            name: name.clone(),
            path: process::cstring("sysctl", &path)?,
            value: value.clone(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn propagation(p: Option<&str>) -> Result<u64, Error> {
    let p = p.filter(|p| !p.is_empty()).unwrap_or("rprivate");
    let (prop, rec) = mounts::Propagation::parse(p).ok_or_else(|| {
        Error::invalid(format!(
            "linux.rootfsPropagation {p:?} (shared, slave, private or unbindable, r-prefixed for the whole tree)"
        ))
    })?;
    Ok(prop.flag() | if rec { libc::MS_REC } else { 0 })
}

fn root_plan(spec: &Spec, bundle: &Path, source: &RootSource) -> Result<RootPlan, Error> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::invalid("the spec has no root"))?;
    let path = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    let path_str = path
        .to_str()
        .ok_or_else(|| Error::invalid("root.path is not UTF-8"))?
        .trim_end_matches('/')
        .to_string();
    let overlay = match source {
        RootSource::Ready => None,
        RootSource::Layers {
            layers,
            upper,
            work,
        } => {
            if layers.is_empty() {
                return Err(Error::invalid("the image has no layers"));
            }
            let option_path = |p: &Path, what: &str| -> Result<String, Error> {
                let s = p
                    .to_str()
                    .ok_or_else(|| Error::invalid(format!("{what} path is not UTF-8")))?;
                if s.contains([':', ',']) || !s.starts_with('/') {
                    return Err(Error::invalid(format!(
                        "{what} path {s:?} must be absolute, without ':' or ','"
                    )));
                }
                Ok(s.to_string())
            };
            let mut lower = String::new();
            for layer in layers.iter().rev() {
                if !lower.is_empty() {
                    lower.push(':');
                }
                lower.push_str(&option_path(layer, "an image layer")?);
            }
            // Not `volatile`: the writable layer outlives the process, and overlay refuses
            // to mount a volatile upper again after an unclean end.
            let data = format!(
                "lowerdir={lower},upperdir={},workdir={}",
                option_path(upper, "the writable layer")?,
                option_path(work, "the overlay work")?
            );
            // The kernel takes one page of mount data.
            if data.len() > 4000 {
                return Err(Error::invalid(format!(
                    "too many image layers for one overlay mount ({})",
                    layers.len()
                )));
            }
            Some(OverlayPlan {
                data: process::cstring("overlay data", &data)?,
            })
        }
    };
    let linux = spec.linux().as_ref();
    Ok(RootPlan {
        path: process::cstring("root.path", &path_str)?,
        overlay,
        readonly: root.readonly().unwrap_or(false),
        propagation: propagation(linux.and_then(|l| l.rootfs_propagation().as_deref()))?,
    })
}

/// Refuses the parts of a spec hull has no implementation for.
fn refuse_unsupported(spec: &Spec) -> Result<(), Error> {
    for (present, what) in [
        (spec.solaris().is_some(), "solaris"),
        (spec.windows().is_some(), "windows"),
        (
            spec.vm().is_some(),
            "vm (hypervisor containers are hull's --isolation=vm)",
        ),
        (spec.zos().is_some(), "zos"),
    ] {
        if present {
            return Err(Error::unsupported(format!(
                "the spec's {what} section is not supported"
            )));
        }
    }
    if let Some(h) = spec.hooks() {
        let any = [
            h.prestart(),
            h.create_runtime(),
            h.create_container(),
            h.start_container(),
            h.poststart(),
            h.poststop(),
        ]
        .iter()
        .any(|l| l.as_ref().is_some_and(|l| !l.is_empty()));
        if any {
            return Err(Error::unsupported(
                "hooks are run by the caller (hull-oci), not by the executor",
            ));
        }
    }
    if let Some(l) = spec.linux() {
        for (present, what) in [
            (l.intel_rdt().is_some(), "linux.intelRdt"),
            (l.memory_policy().is_some(), "linux.memoryPolicy"),
            (l.time_offsets().is_some(), "linux.timeOffsets"),
            (
                l.net_devices().as_ref().is_some_and(|n| !n.is_empty()),
                "linux.netDevices",
            ),
            (l.mount_label().is_some(), "linux.mountLabel (SELinux)"),
        ] {
            if present {
                return Err(Error::unsupported(format!(
                    "{what} is not supported by hull"
                )));
            }
        }
        if let Some(p) = l.personality() {
            let plain = p.domain() == oci_spec::runtime::LinuxPersonalityDomain::PerLinux
                && !p.flags().as_ref().is_some_and(|f| !f.is_empty());
            if !plain {
                return Err(Error::unsupported(
                    "linux.personality other than LINUX without flags",
                ));
            }
        }
    }
    Ok(())
}

/// Path `dir/name` (both C strings) for messages and the parent's use.
pub fn join_path(dir: &std::ffi::CStr, name: &std::ffi::CStr) -> CString {
    let mut v = dir.to_bytes().to_vec();
    if v.last() != Some(&b'/') {
        v.push(b'/');
    }
    v.extend_from_slice(name.to_bytes());
    CString::new(v).unwrap_or_default()
}

impl ContainerPlan {
    /// The container part of `spec`, whose relative `root.path` is under `bundle`.
    pub fn new(
        spec: &Spec,
        bundle: &Path,
        source: &RootSource,
        host: &Host,
    ) -> Result<ContainerPlan, Error> {
        refuse_unsupported(spec)?;
        let linux = spec.linux().clone().unwrap_or_default();
        let namespaces = NamespacePlan::new(
            linux.namespaces().as_deref().unwrap_or(&[]),
            linux.uid_mappings().as_deref().unwrap_or(&[]),
            linux.gid_mappings().as_deref().unwrap_or(&[]),
        )?;
        let root = root_plan(spec, bundle, source)?;
        let mounts = mounts::plan(spec.mounts().as_deref().unwrap_or(&[]))?;
        let devices = devices::plan(linux.devices().as_deref().unwrap_or(&[]))?;
        let dev_is_mount = mounts.iter().any(|m| m.destination.as_bytes() == b"/dev");
        let ptmx_symlink = mounts.iter().any(|m| {
            m.destination.as_bytes() == b"/dev/pts"
                && matches!(&m.kind, MountKind::Fs { fstype, .. } if fstype.as_bytes() == b"devpts")
        });
        let uts = namespaces.isolates(LinuxNamespaceType::Uts);
        let name = |v: &Option<String>, what: &str| -> Result<Option<CString>, Error> {
            match v.as_deref().filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(_) if !uts => Err(Error::invalid(format!(
                    "{what} needs the container's own UTS namespace"
                ))),
                Some(s) if s.len() > 64 => Err(Error::invalid(format!(
                    "{what} {s:?} is longer than 64 characters"
                ))),
                Some(s) => process::cstring(what, s).map(Some),
            }
        };
        let hostname = name(spec.hostname(), "hostname")?;
        let domainname = name(spec.domainname(), "domainname")?;
        let sysctls = sysctls(spec, &namespaces)?;
        let cgroup = CgroupPlan::new(
            linux.cgroups_path().as_deref(),
            linux.resources().as_ref(),
            host.cgroups.version,
        )?;
        let cgroup_v1 = if host.cgroups.version == Version::V1 {
            host.cgroup_v1
                .iter()
                .map(|(n, opts)| {
                    Ok(CgroupV1Mount {
                        name: process::cstring("cgroup hierarchy", n)?,
                        params: opts
                            .iter()
                            .map(|o| {
                                Ok(match o.split_once('=') {
                                    Some((k, v)) => Param::Value(
                                        process::cstring("cgroup option", k)?.into(),
                                        process::cstring("cgroup option", v)?.into(),
                                    ),
                                    None => {
                                        Param::Flag(process::cstring("cgroup option", o)?.into())
                                    }
                                })
                            })
                            .collect::<Result<_, Error>>()?,
                    })
                })
                .collect::<Result<_, Error>>()?
        } else {
            Vec::new()
        };
        Ok(ContainerPlan {
            root,
            loopback: namespaces.creates(LinuxNamespaceType::Network),
            namespaces,
            mounts,
            devices,
            dev_symlinks: dev_is_mount,
            ptmx_symlink,
            masked: mounts::paths(
                linux.masked_paths().as_deref().unwrap_or(&[]),
                "linux.maskedPaths",
            )?,
            readonly_paths: mounts::paths(
                linux.readonly_paths().as_deref().unwrap_or(&[]),
                "linux.readonlyPaths",
            )?,
            hostname,
            domainname,
            sysctls,
            cgroup,
            cgroup_v1,
        })
    }
}

impl Plan {
    /// The plan for a container's first process.
    pub fn new(
        spec: &Spec,
        bundle: &Path,
        source: &RootSource,
        host: &Host,
    ) -> Result<Plan, Error> {
        let container = ContainerPlan::new(spec, bundle, source, host)?;
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| Error::invalid("the spec has no process"))?;
        let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
        Ok(Plan {
            container,
            process: ProcessPlan::new(process, seccomp, host.last_cap)?,
        })
    }

    /// Describes entry `index` of `stage` for an error message (the child reports only
    /// numbers).
    pub fn describe(&self, stage: crate::error::Stage, index: u32) -> String {
        describe(Some(&self.container), &self.process, stage, index)
    }
}

/// Describes entry `index` of `stage` (see [`Plan::describe`]).
pub fn describe(
    container: Option<&ContainerPlan>,
    process: &ProcessPlan,
    stage: crate::error::Stage,
    index: u32,
) -> String {
    use crate::error::Stage::*;
    let i = index as usize;
    let lossy = |c: &CString| c.to_string_lossy().into_owned();
    let from_container = container.and_then(|c| match stage {
        Mount => c.mounts.get(i).map(|m| match &m.kind {
            MountKind::Bind { source, .. } => {
                format!("{} (bind of {})", lossy(&m.destination), lossy(source))
            }
            MountKind::Fs { fstype, .. } => {
                format!("{} ({})", lossy(&m.destination), fstype.to_string_lossy())
            }
            MountKind::Cgroup => format!("{} (cgroup)", lossy(&m.destination)),
        }),
        Device => c.devices.get(i).map(DeviceNode::describe),
        MaskedPath => c.masked.get(i).map(lossy),
        ReadonlyPath => c.readonly_paths.get(i).map(lossy),
        Sysctl => c
            .sysctls
            .get(i)
            .map(|s| format!("{} = {}", s.name, s.value)),
        Rootfs => Some(lossy(&c.root.path)),
        PivotRoot => Some(lossy(&c.root.path)),
        Hostname => Some(match i {
            0 => c.hostname.as_ref().map(lossy).unwrap_or_default(),
            _ => c.domainname.as_ref().map(lossy).unwrap_or_default(),
        }),
        _ => None,
    });
    if let Some(d) = from_container {
        return d;
    }
    match stage {
        Exec => match process.candidates.get(i) {
            Some(c) if index != u32::MAX => lossy(c),
            _ if process.command.contains('/') => {
                format!("{}: no such file or directory", process.command)
            }
            _ => format!("{}: executable file not found in $PATH", process.command),
        },
        Rlimit => process
            .rlimits
            .get(i)
            .map(|r| format!("{} soft {} hard {}", r.name, r.soft, r.hard))
            .unwrap_or_default(),
        Cwd => lossy(&process.cwd),
        User => format!(
            "uid {} gid {} groups {:?}",
            process.identity.uid, process.identity.gid, process.identity.groups
        ),
        OomScoreAdj => process
            .oom_score_adj
            .map(|a| a.to_string())
            .unwrap_or_default(),
        other => other.describe().to_string(),
    }
}
