//! The container, carried out from the OCI spec the host sent by the executor crate — the
//! same code the process model runs on the host (the way kata's agent uses rustjail). The
//! agent only puts the spec on the guest ([`guest_spec`]) and connects the processes'
//! streams; it has no container setup code of its own.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hull_executor::cgroups::driver;
use hull_executor::plan::{Host, Plan, ProcessPlan, RootSource};
use hull_executor::spawn::{self, ExecTarget, Options, Spawned};
use hull_executor::{Error, Stage};
use hull_protocol::{ContainerSpec, ExecSpec, StdioSpec};
use oci_spec::runtime::{
    Capabilities, Capability, LinuxNamespaceType, LinuxSeccomp, Process, Spec,
};

use super::reaper;
use super::stdio::{Child, Streams};

/// Takes CAP_MKNOD out of every capability set of `process`: for a container the guest
/// has no device cgroup for ([`has_device_cgroup`]), nothing would refuse the nodes it made.
pub fn without_mknod(process: &mut Process) {
    let Some(mut caps) = process.capabilities().clone() else {
        return;
    };
    let strip = |set: &Option<Capabilities>| {
        set.as_ref().map(|s| {
            s.iter()
                .filter(|c| **c != Capability::Mknod)
                .copied()
                .collect()
        })
    };
    caps.set_bounding(strip(caps.bounding()));
    caps.set_effective(strip(caps.effective()));
    caps.set_inheritable(strip(caps.inheritable()));
    caps.set_permitted(strip(caps.permitted()));
    caps.set_ambient(strip(caps.ambient()));
    process.set_capabilities(Some(caps));
}

/// How long a new process may take to reach execve.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether the container gets a device cgroup in the guest: a cgroup of its own
/// (`linux.cgroupsPath`) and device rules, carried out by the executor as the v2 device
/// program. A kernel with the bpf syscall but without CONFIG_CGROUP_BPF fails the start
/// (the attach is refused), never runs the container without its rules.
pub fn has_device_cgroup(spec: &Spec) -> bool {
    spec.linux().as_ref().is_some_and(|l| {
        l.cgroups_path().is_some()
            && l.resources()
                .as_ref()
                .and_then(|r| r.devices().as_ref())
                .is_some_and(|d| !d.is_empty())
    })
}

/// Whether this guest kernel has the bpf syscall (the file exists only with
/// CONFIG_BPF_SYSCALL). hull's kernel config has it with CONFIG_CGROUP_BPF; an older guest
/// kernel (`--kernel`) without it runs containers as before the device controller: no
/// rules, no CAP_MKNOD.
pub fn kernel_has_bpf() -> bool {
    Path::new("/proc/sys/kernel/unprivileged_bpf_disabled").exists()
}

/// The host's spec as it applies in this guest:
/// - `root.path` is the root the agent assembled from the image disk;
/// - with the guest's eth0 (`--network bridge`) the container shares the guest's network
///   namespace (the VM is its boundary), so the spec's own network namespace goes;
/// - the device rules stay (`bpf`: the kernel has the bpf syscall): the executor attaches
///   them to the container's cgroup as an eBPF program, as on a cgroup v2 host, so a node
///   made with CAP_MKNOD (`--cap-add MKNOD`) opens only what the rules allow, not the
///   guest's disks or console. Without bpf they go;
/// - a container without a device cgroup gets no CAP_MKNOD ([`without_mknod`]). hull
///   leaves CAP_MKNOD out of a vm container's default set anyway, and the root the agent
///   assembled is `nodev` (`mounts.rs`): image-shipped nodes open nothing.
pub fn guest_spec(mut spec: Spec, root: &Path, shares_guest_network: bool, bpf: bool) -> Spec {
    if !bpf {
        if let Some(mut linux) = spec.linux().clone() {
            if let Some(mut res) = linux.resources().clone() {
                res.set_devices(None);
                linux.set_resources(Some(res));
            }
            spec.set_linux(Some(linux));
        }
    }
    if !has_device_cgroup(&spec) {
        if let Some(mut process) = spec.process().clone() {
            without_mknod(&mut process);
            spec.set_process(Some(process));
        }
    }
    let mut r = spec.root().clone().unwrap_or_default();
    r.set_path(root.to_path_buf());
    spec.set_root(Some(r));
    if let Some(mut linux) = spec.linux().clone() {
        if shares_guest_network {
            if let Some(ns) = linux.namespaces().clone() {
                linux.set_namespaces(Some(
                    ns.into_iter()
                        .filter(|n| n.typ() != LinuxNamespaceType::Network)
                        .collect(),
                ));
            }
        }
        spec.set_linux(Some(linux));
    }
    spec
}

fn options<'a>(streams: &'a Streams) -> Options<'a> {
    Options {
        stdio: streams.child(),
        // The agent is PID 1: when it goes, the VM goes.
        die_with_parent: false,
        start_gate: None,
        timeout: SETUP_TIMEOUT,
    }
}

fn console_size(stdio: &StdioSpec) -> Option<(u16, u16)> {
    stdio.tty.then_some(stdio.tty_size).flatten()
}

/// Runs `spawn` with the reaper told about the new process.
fn watched(
    spawn: impl FnOnce() -> Result<Spawned, Error>,
) -> Result<(Spawned, std::fs::File), Error> {
    reaper::spawn_watched(
        spawn,
        |s| s.pid,
        |e| Error::system(Stage::Prepare, "create the exit pipe", &e),
    )
}

/// The running container: what `exec` joins.
pub struct Running {
    /// PID of the container's first process (the agent's PID namespace).
    pub main_pid: i32,
    /// pidfd of it.
    init: OwnedFd,
    /// CLONE_NEW* flags of the namespaces an exec joins.
    namespaces: u64,
    /// The container's cgroup, if it has one.
    cgroup: Option<PathBuf>,
    /// The container's seccomp profile (every process gets it).
    seccomp: Option<LinuxSeccomp>,
    /// Whether a device program guards the container's cgroup (else exec'd processes get
    /// no CAP_MKNOD either).
    device_cgroup: bool,
    /// The guest's facts.
    host: Host,
}

impl Running {
    /// Starts the container's first process in `root` (assembled by the agent).
    pub fn start(
        req: &ContainerSpec,
        root: &Path,
        shares_guest_network: bool,
    ) -> Result<(Running, Child), Error> {
        let spec = guest_spec(
            (*req.spec).clone(),
            root,
            shares_guest_network,
            kernel_has_bpf(),
        );
        let host = Host::detect();
        let mut plan = Plan::new(&spec, Path::new("/"), &RootSource::Ready, &host)?;
        plan.process.console_size = console_size(&req.stdio);
        let streams = Streams::new(&req.stdio)?;
        let (spawned, exit) = watched(|| spawn::create(&plan, &host.cgroups, &options(&streams)))?;
        let init = spawned
            .pidfd
            .try_clone()
            .map_err(|e| Error::system(Stage::Prepare, "keep the container's pidfd", &e))?;
        let main_pid = spawned.pid;
        let child = streams.into_child(spawned, exit)?;
        let cgroup = &plan.container.cgroup;
        let running = Running {
            main_pid,
            init,
            namespaces: spawn::namespace_flags(&spec),
            cgroup: (!cgroup.is_empty()).then(|| cgroup.path.clone()),
            seccomp: spec.linux().as_ref().and_then(|l| l.seccomp().clone()),
            device_cgroup: !cgroup.is_empty() && cgroup.devices.is_some(),
            host,
        };
        Ok((running, child))
    }

    /// Starts another process in the container.
    pub fn exec(&self, req: &ExecSpec) -> Result<Child, Error> {
        let mut process = (*req.process).clone();
        if !self.device_cgroup {
            without_mknod(&mut process);
        }
        if let Some(user) = &req.user {
            // The running container's own account files, read inside its root.
            let root = PathBuf::from(format!("/proc/{}/root", self.main_pid));
            let who = hull_executor::user::resolve_in_root(user, &root).map_err(|e| {
                Error::new(
                    hull_executor::ErrorKind::InvalidSpec,
                    Stage::User,
                    e.to_string(),
                )
            })?;
            hull_executor::user::apply_identity(&mut process, &who);
        }
        let mut plan = ProcessPlan::new(&process, self.seccomp.as_ref(), self.host.last_cap)?;
        plan.console_size = console_size(&req.stdio);
        let streams = Streams::new(&req.stdio)?;
        let target = ExecTarget {
            init: self.init.as_fd(),
            namespaces: self.namespaces,
            cgroup_path: self.cgroup.as_deref(),
        };
        let (spawned, exit) =
            watched(|| spawn::exec(&plan, &target, &self.host.cgroups, &options(&streams)))?;
        streams.into_child(spawned, exit)
    }

    /// Kills whatever is left in the container's cgroup (after its first process ended).
    pub fn kill_all(&self) {
        if let Some(path) = &self.cgroup {
            driver::kill_all(&self.host.cgroups, path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxDeviceCgroup, LinuxNamespace, LinuxResources};

    fn spec() -> Spec {
        let mut spec = Spec::default();
        spec.set_hostname(None);
        let mut linux = spec.linux().clone().unwrap_or_default();
        let ns = [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Network,
        ]
        .into_iter()
        .map(|t| {
            let mut n = LinuxNamespace::default();
            n.set_typ(t);
            n
        })
        .collect();
        linux.set_namespaces(Some(ns));
        let mut res = LinuxResources::default();
        res.set_devices(Some(vec![LinuxDeviceCgroup::default()]));
        linux.set_resources(Some(res));
        spec.set_linux(Some(linux));
        spec
    }

    #[test]
    fn the_spec_runs_on_the_guest_root_and_network() {
        let s = guest_spec(spec(), Path::new("/run/hull/root"), true, true);
        assert_eq!(
            s.root().as_ref().unwrap().path(),
            Path::new("/run/hull/root")
        );
        let linux = s.linux().as_ref().unwrap();
        let types: Vec<_> = linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect();
        assert_eq!(
            types,
            [LinuxNamespaceType::Pid, LinuxNamespaceType::Mount],
            "eth0 is the guest's"
        );
        let res = linux.resources().as_ref().unwrap();
        assert_eq!(
            res.devices().as_ref().map(Vec::len),
            Some(1),
            "the device rules stay: the guest has the v2 device controller"
        );
        let own_net = guest_spec(spec(), Path::new("/r"), false, true);
        let n = own_net
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .len();
        assert_eq!(n, 3, "--network none: a namespace of its own");
    }

    fn mknod_chown() -> oci_spec::runtime::LinuxCapabilities {
        let set: Capabilities = [Capability::Mknod, Capability::Chown].into_iter().collect();
        let mut caps = oci_spec::runtime::LinuxCapabilities::default();
        caps.set_bounding(Some(set.clone()))
            .set_effective(Some(set.clone()))
            .set_permitted(Some(set.clone()))
            .set_inheritable(Some(set.clone()))
            .set_ambient(Some(set));
        caps
    }

    fn sets(s: &Spec) -> Vec<Capabilities> {
        let caps = s
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap();
        [
            caps.bounding(),
            caps.effective(),
            caps.permitted(),
            caps.inheritable(),
            caps.ambient(),
        ]
        .into_iter()
        .map(|s| s.clone().unwrap())
        .collect()
    }

    /// CAP_MKNOD is taken out of every set when no device cgroup would stand behind it (no
    /// cgroupsPath, or no device rules), and kept when the executor attaches the rules.
    #[test]
    fn cap_mknod_only_where_a_device_cgroup_stands_behind_it() {
        let mut process = Process::default();
        process.set_capabilities(Some(mknod_chown()));
        let mut no_path = spec();
        no_path.set_process(Some(process.clone()));
        let mut no_rules = no_path.clone();
        let mut guarded = no_path.clone();
        let mut linux = guarded.linux().clone().unwrap();
        linux.set_cgroups_path(Some("/hull/abc".into()));
        guarded.set_linux(Some(linux.clone()));
        linux.set_resources(None);
        no_rules.set_linux(Some(linux));
        for unguarded in [no_path, no_rules] {
            assert!(!has_device_cgroup(&unguarded));
            for set in sets(&guest_spec(unguarded, Path::new("/r"), false, true)) {
                assert!(!set.contains(&Capability::Mknod), "{set:?}");
                assert!(set.contains(&Capability::Chown), "{set:?}");
            }
        }
        assert!(has_device_cgroup(&guarded));
        for set in sets(&guest_spec(guarded.clone(), Path::new("/r"), false, true)) {
            assert!(set.contains(&Capability::Mknod), "{set:?}");
        }
        // A guest kernel without bpf: no rules, so no CAP_MKNOD either.
        let old_kernel = guest_spec(guarded, Path::new("/r"), false, false);
        assert!(!has_device_cgroup(&old_kernel));
        for set in sets(&old_kernel) {
            assert!(!set.contains(&Capability::Mknod), "{set:?}");
        }
    }

    /// A container gets its cgroup in the guest, with the device program when it has
    /// rules, and without one when it has none.
    #[test]
    fn a_container_keeps_a_cgroup_of_its_own() {
        let mut s = spec();
        let mut linux = s.linux().clone().unwrap();
        linux.set_cgroups_path(Some("/hull/abc".into()));
        s.set_linux(Some(linux.clone()));
        let guarded = guest_spec(s.clone(), Path::new("/r"), false, true);
        linux.set_resources(None);
        s.set_linux(Some(linux));
        let s = guest_spec(s, Path::new("/r"), false, true);
        let host = Host {
            last_cap: 40,
            cgroups: hull_executor::cgroups::Layout {
                root: "/sys/fs/cgroup".into(),
                version: hull_executor::cgroups::Version::V2,
            },
            cgroup_v1: Vec::new(),
        };
        let plan = Plan::new(&s, Path::new("/"), &RootSource::Ready, &host).unwrap();
        assert!(!plan.container.cgroup.is_empty());
        assert_eq!(plan.container.cgroup.path, Path::new("hull/abc"));
        assert!(plan.container.cgroup.devices.is_none());
        let plan = Plan::new(&guarded, Path::new("/"), &RootSource::Ready, &host).unwrap();
        assert!(
            plan.container.cgroup.devices.is_some(),
            "the device program"
        );
    }
}
