//! The plan for one process: what to execute and with which identity, privileges and limits.
//! Everything the child needs is ready-made here (C strings, masks, the seccomp program), so
//! it only makes system calls.

use std::ffi::CString;
use std::path::{Component, Path};

use oci_spec::runtime::{LinuxSeccomp, PosixRlimitType, Process};

use super::caps::CapSets;
use crate::defaults::DEFAULT_PATH;
use crate::error::Error;
use crate::seccomp::{self, Filter};

/// Bounds on what a process may carry (hostile specs).
pub const MAX_ARGS: usize = 4096;
/// Maximum environment entries.
pub const MAX_ENV: usize = 4096;
/// Maximum length of one argument, environment entry or path.
pub const MAX_STRING: usize = 64 * 1024;
/// Maximum supplementary groups (the kernel's NGROUPS_MAX).
pub const MAX_GROUPS: usize = 65536;

/// One resource limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// RLIMIT_* number.
    pub resource: u32,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
    /// The OCI name, for messages.
    pub name: &'static str,
}

/// Who the process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// setgroups(2) list.
    pub groups: Vec<u32>,
    /// umask to set before exec, if any.
    pub umask: Option<u32>,
}

/// Everything about the process itself.
#[derive(Debug, Clone)]
pub struct ProcessPlan {
    /// `args[0]`, for messages.
    pub command: String,
    /// Paths to try with execve, in order (a PATH search done ahead of time).
    pub candidates: Vec<CString>,
    /// argv.
    pub argv: Vec<CString>,
    /// envp, exactly the spec's.
    pub envp: Vec<CString>,
    /// Working directory (absolute, inside the container).
    pub cwd: CString,
    /// uid, gid, groups, umask.
    pub identity: Identity,
    /// The five capability sets.
    pub caps: CapSets,
    /// Highest capability number of the kernel.
    pub last_cap: u32,
    /// Resource limits.
    pub rlimits: Vec<Rlimit>,
    /// Set no_new_privs.
    pub no_new_privileges: bool,
    /// The seccomp program, if any.
    pub seccomp: Option<Filter>,
    /// oom_score_adj to write.
    pub oom_score_adj: Option<i32>,
    /// Create a terminal.
    pub terminal: bool,
    /// Initial terminal size (rows, columns).
    pub console_size: Option<(u16, u16)>,
}

pub(crate) fn cstring(what: &str, s: &str) -> Result<CString, Error> {
    if s.len() > MAX_STRING {
        return Err(Error::invalid(format!(
            "{what} is {} bytes long (the limit is {MAX_STRING})",
            s.len()
        )));
    }
    CString::new(s).map_err(|_| Error::invalid(format!("{what} {s:?} contains a NUL byte")))
}

/// An absolute path inside the container without `..` components, as a C string.
pub(crate) fn container_path(what: &str, p: &Path) -> Result<CString, Error> {
    let s = p
        .to_str()
        .ok_or_else(|| Error::invalid(format!("{what} {} is not UTF-8", p.display())))?;
    if !s.starts_with('/') {
        return Err(Error::invalid(format!(
            "{what} {s:?} must be an absolute path"
        )));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(Error::invalid(format!(
            "{what} {s:?} must not contain \"..\""
        )));
    }
    cstring(what, s)
}

fn rlimit_of(t: PosixRlimitType) -> (u32, &'static str) {
    use PosixRlimitType::*;
    let (r, n) = match t {
        RlimitCpu => (libc::RLIMIT_CPU, "RLIMIT_CPU"),
        RlimitFsize => (libc::RLIMIT_FSIZE, "RLIMIT_FSIZE"),
        RlimitData => (libc::RLIMIT_DATA, "RLIMIT_DATA"),
        RlimitStack => (libc::RLIMIT_STACK, "RLIMIT_STACK"),
        RlimitCore => (libc::RLIMIT_CORE, "RLIMIT_CORE"),
        RlimitRss => (libc::RLIMIT_RSS, "RLIMIT_RSS"),
        RlimitNproc => (libc::RLIMIT_NPROC, "RLIMIT_NPROC"),
        RlimitNofile => (libc::RLIMIT_NOFILE, "RLIMIT_NOFILE"),
        RlimitMemlock => (libc::RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK"),
        RlimitAs => (libc::RLIMIT_AS, "RLIMIT_AS"),
        RlimitLocks => (libc::RLIMIT_LOCKS, "RLIMIT_LOCKS"),
        RlimitSigpending => (libc::RLIMIT_SIGPENDING, "RLIMIT_SIGPENDING"),
        RlimitMsgqueue => (libc::RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE"),
        RlimitNice => (libc::RLIMIT_NICE, "RLIMIT_NICE"),
        RlimitRtprio => (libc::RLIMIT_RTPRIO, "RLIMIT_RTPRIO"),
        RlimitRttime => (libc::RLIMIT_RTTIME, "RLIMIT_RTTIME"),
    };
    (r, n)
}

/// `KEY`'s value in an environment list (the last entry wins, as getenv would see it).
pub fn env_value<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// The execve attempts for `cmd`: itself when it has a `/`, else each PATH directory.
pub fn exec_candidates(cmd: &str, path: &str) -> Vec<String> {
    if cmd.contains('/') {
        return vec![cmd.to_string()];
    }
    path.split(':')
        .map(|dir| if dir.is_empty() { "." } else { dir })
        .map(|dir| format!("{}/{cmd}", dir.trim_end_matches('/')))
        .collect()
}

impl ProcessPlan {
    /// The plan for `process`, confined by `seccomp` (the container's `linux.seccomp`).
    pub fn new(
        process: &Process,
        seccomp: Option<&LinuxSeccomp>,
        last_cap: u32,
    ) -> Result<ProcessPlan, Error> {
        if process.command_line().is_some() {
            return Err(Error::unsupported(
                "process.commandLine (Windows only); use process.args",
            ));
        }
        if process.user().username().is_some() {
            return Err(Error::unsupported(
                "process.user.username (Windows only); give uid and gid",
            ));
        }
        for (set, what) in [
            (
                process.apparmor_profile().is_some(),
                "process.apparmorProfile",
            ),
            (process.selinux_label().is_some(), "process.selinuxLabel"),
            (process.io_priority().is_some(), "process.ioPriority"),
            (process.scheduler().is_some(), "process.scheduler"),
            (
                process.exec_cpu_affinity().is_some(),
                "process.execCPUAffinity",
            ),
        ] {
            if set {
                return Err(Error::unsupported(format!(
                    "{what} is not supported by hull"
                )));
            }
        }
        let args = process.args().clone().unwrap_or_default();
        let Some(cmd) = args.first().cloned() else {
            return Err(Error::invalid("process.args is empty: no command to run"));
        };
        if cmd.is_empty() {
            return Err(Error::invalid("process.args[0] is empty"));
        }
        let env = process.env().clone().unwrap_or_default();
        if args.len() > MAX_ARGS || env.len() > MAX_ENV {
            return Err(Error::invalid(format!(
                "at most {MAX_ARGS} arguments and {MAX_ENV} environment entries"
            )));
        }
        for e in &env {
            if !e.contains('=') || e.starts_with('=') {
                return Err(Error::invalid(format!(
                    "environment entry {e:?} is not KEY=VALUE"
                )));
            }
        }
        let argv = args
            .iter()
            .map(|a| cstring("argument", a))
            .collect::<Result<Vec<_>, _>>()?;
        let envp = env
            .iter()
            .map(|e| cstring("environment entry", e))
            .collect::<Result<Vec<_>, _>>()?;
        let path = env_value(&env, "PATH").unwrap_or(DEFAULT_PATH);
        let candidates = exec_candidates(&cmd, path)
            .iter()
            .map(|c| cstring("command path", c))
            .collect::<Result<Vec<_>, _>>()?;

        let cwd = container_path("process.cwd", process.cwd())?;

        let user = process.user();
        let mut groups = vec![user.gid()];
        for g in user.additional_gids().iter().flatten() {
            if !groups.contains(g) {
                groups.push(*g);
            }
        }
        if groups.len() > MAX_GROUPS {
            return Err(Error::invalid(format!(
                "more than {MAX_GROUPS} additional groups"
            )));
        }
        for (id, what) in [(user.uid(), "uid"), (user.gid(), "gid")] {
            // (uid_t)-1 means "unchanged" to setresuid: it cannot be anyone's id.
            if id == u32::MAX {
                return Err(Error::invalid(format!(
                    "process.user.{what} {id} is reserved (it means \"no change\" to the kernel)"
                )));
            }
        }
        if let Some(m) = user.umask() {
            if m > 0o777 {
                return Err(Error::invalid(format!(
                    "process.user.umask {m:#o} is not a mode"
                )));
            }
        }

        let mut rlimits: Vec<Rlimit> = Vec::new();
        for r in process.rlimits().iter().flatten() {
            let (resource, name) = rlimit_of(r.typ());
            if r.soft() > r.hard() {
                return Err(Error::invalid(format!(
                    "{name}: the soft limit {} is above the hard limit {}",
                    r.soft(),
                    r.hard()
                )));
            }
            if rlimits.iter().any(|x| x.resource == resource) {
                return Err(Error::invalid(format!("{name} is given twice")));
            }
            rlimits.push(Rlimit {
                resource,
                soft: r.soft(),
                hard: r.hard(),
                name,
            });
        }
        if let Some(adj) = process.oom_score_adj() {
            if !(-1000..=1000).contains(&adj) {
                return Err(Error::invalid(format!(
                    "process.oomScoreAdj {adj} is outside -1000..1000"
                )));
            }
        }
        let seccomp = seccomp
            .map(seccomp::compile)
            .transpose()
            .map_err(|e| match e {
                seccomp::CompileError::Unsupported(_) => Error::unsupported(e.to_string()),
                _ => Error::invalid(e.to_string()),
            })?;
        let console_size = process.console_size().map(|b| {
            (
                b.height().min(u16::MAX as u64) as u16,
                b.width().min(u16::MAX as u64) as u16,
            )
        });
        Ok(ProcessPlan {
            command: cmd,
            candidates,
            argv,
            envp,
            cwd,
            identity: Identity {
                uid: user.uid(),
                gid: user.gid(),
                groups,
                umask: user.umask(),
            },
            caps: CapSets::new(process.capabilities().as_ref(), last_cap)?,
            last_cap,
            rlimits,
            no_new_privileges: process.no_new_privileges().unwrap_or(false),
            seccomp,
            oom_score_adj: process.oom_score_adj(),
            terminal: process.terminal().unwrap_or(false),
            console_size,
        })
    }
}
