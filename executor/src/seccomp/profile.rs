//! Seccomp profiles in the format docker reads (`--security-opt seccomp=FILE`), and hull's
//! default profile in that format.
//!
//! A profile is the OCI `linux.seccomp` object plus, per entry, `includes`/`excludes`
//! conditions on the container's capabilities, the architecture and the kernel version, and
//! an `archMap`. [`resolve`] evaluates those conditions for one container, the way docker
//! does when it writes config.json, and yields plain OCI seccomp: so `--cap-add SYS_ADMIN`
//! also opens the system calls that capability governs. An OCI `linux.seccomp` object is a
//! valid profile too. Unknown fields are errors, not silently ignored.

use std::collections::BTreeSet;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};
use serde::Deserialize;

/// hull's default profile (see the comment inside it).
const DEFAULT_PROFILE: &str = include_str!("default.json");

/// Largest profile file accepted.
pub const MAX_PROFILE_BYTES: usize = 1 << 20;

/// A profile as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profile {
    #[serde(default, rename = "comment")]
    _comment: Option<String>,
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    #[serde(default)]
    architectures: Vec<Arch>,
    #[serde(default)]
    flags: Vec<LinuxSeccompFilterFlag>,
    #[serde(default)]
    listener_path: Option<std::path::PathBuf>,
    #[serde(default)]
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Vec<Entry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Vec<Arch>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Entry {
    #[serde(default, rename = "comment")]
    _comment: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Vec<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<Arg>,
    #[serde(default)]
    includes: Condition,
    #[serde(default)]
    excludes: Condition,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Arg {
    index: usize,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: LinuxSeccompOperator,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Condition {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// A profile that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Not valid JSON for a profile (unknown fields included).
    #[error("seccomp profile: {0}")]
    Parse(#[from] serde_json::Error),
    /// Too big.
    #[error("seccomp profile is larger than {MAX_PROFILE_BYTES} bytes")]
    TooLarge,
    /// A `minKernel` that is not `MAJOR.MINOR`.
    #[error("seccomp profile: bad minKernel {0:?}")]
    BadKernelVersion(String),
}

/// What a profile's conditions are evaluated against.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The container's capabilities (`CAP_...`; bounding set, as docker uses).
    pub capabilities: &'a BTreeSet<String>,
    /// The kernel version (major, minor) the container will run on.
    pub kernel: (u32, u32),
}

impl Profile {
    /// Parses a profile.
    pub fn parse(text: &str) -> Result<Profile, ProfileError> {
        if text.len() > MAX_PROFILE_BYTES {
            return Err(ProfileError::TooLarge);
        }
        Ok(serde_json::from_str(text)?)
    }

    /// hull's default profile.
    pub fn default_profile() -> Profile {
        Profile::parse(DEFAULT_PROFILE).expect("the built-in profile parses")
    }
}

/// docker's architecture names for x86_64 in `includes`/`excludes.arches`.
const NATIVE_ARCH_NAMES: &[&str] = &["amd64", "x86_64"];

fn kernel_at_least(have: (u32, u32), want: &str) -> Result<bool, ProfileError> {
    let bad = || ProfileError::BadKernelVersion(want.to_string());
    let mut parts = want.split('.');
    let major: u32 = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let minor: u32 = parts.next().unwrap_or("0").parse().map_err(|_| bad())?;
    Ok(have >= (major, minor))
}

fn holds(c: &Condition, t: &Target<'_>, include: bool) -> Result<bool, ProfileError> {
    let native = c
        .arches
        .iter()
        .any(|a| NATIVE_ARCH_NAMES.contains(&a.as_str()));
    let kernel = match &c.min_kernel {
        Some(v) => Some(kernel_at_least(t.kernel, v)?),
        None => None,
    };
    Ok(if include {
        c.caps.iter().all(|cap| t.capabilities.contains(cap))
            && (c.arches.is_empty() || native)
            && kernel.unwrap_or(true)
    } else {
        // Excluded when any listed capability is held, the architecture is listed, or the
        // kernel is at least the version given.
        !(c.caps.iter().any(|cap| t.capabilities.contains(cap)) || native || kernel == Some(true))
    })
}

/// Evaluates `profile` for one container: plain OCI `linux.seccomp`.
pub fn resolve(profile: &Profile, target: &Target<'_>) -> Result<LinuxSeccomp, ProfileError> {
    let mut arches: Vec<Arch> = profile.architectures.clone();
    for m in &profile.arch_map {
        if m.architecture == Arch::ScmpArchX86_64 {
            arches.push(m.architecture);
            arches.extend(m.sub_architectures.iter().copied());
        }
    }
    let mut syscalls = Vec::new();
    for e in &profile.syscalls {
        if !holds(&e.includes, target, true)? || !holds(&e.excludes, target, false)? {
            continue;
        }
        let mut names = e.names.clone();
        names.extend(e.name.iter().cloned());
        let args: Vec<LinuxSeccompArg> = e
            .args
            .iter()
            .map(|a| {
                let b = LinuxSeccompArgBuilder::default()
                    .index(a.index)
                    .value(a.value)
                    .op(a.op);
                let b = if a.value_two != 0 || a.op == LinuxSeccompOperator::ScmpCmpMaskedEq {
                    b.value_two(a.value_two)
                } else {
                    b
                };
                b.build().expect("every field of the argument is set")
            })
            .collect();
        let mut s = LinuxSyscall::default();
        s.set_names(names)
            .set_action(e.action)
            .set_errno_ret(e.errno_ret)
            .set_args((!args.is_empty()).then_some(args));
        syscalls.push(s);
    }
    let mut out = LinuxSeccomp::default();
    out.set_default_action(profile.default_action)
        .set_default_errno_ret(profile.default_errno_ret)
        .set_architectures((!arches.is_empty()).then_some(arches))
        .set_flags((!profile.flags.is_empty()).then(|| profile.flags.clone()))
        .set_listener_path(profile.listener_path.clone())
        .set_listener_metadata(profile.listener_metadata.clone())
        .set_syscalls(Some(syscalls));
    Ok(out)
}
