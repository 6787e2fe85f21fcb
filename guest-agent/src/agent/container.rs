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

/// Takes CAP_MKNOD out of every capability set of `process`, whatever the host asked:
/// the guest has no device cgroup to refuse the nodes a container would make.
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

/// The host's spec as it applies in this guest:
/// - `root.path` is the root the agent assembled from the image disk;
/// - with the guest's eth0 (`--network bridge`) the container shares the guest's network
///   namespace (the VM is its boundary), so the spec's own network namespace goes;
/// - the device cgroup rules go: the guest kernel has no cgroup BPF (the v2 device
///   controller), and the spec's device nodes are still the only ones made. The VM is the
///   device boundary: the guest sees only its virtio disks, console and vsock. The
///   container still gets its cgroup (`linux.cgroupsPath`) in the guest;
/// - without a device cgroup, CAP_MKNOD would open any of those devices (the disks raw,
///   the console) to the container's root: it goes ([`without_mknod`]), and the root the
///   agent assembled is `nodev` (`mounts.rs`).
pub fn guest_spec(mut spec: Spec, root: &Path, shares_guest_network: bool) -> Spec {
    if let Some(mut process) = spec.process().clone() {
        without_mknod(&mut process);
        spec.set_process(Some(process));
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
        if let Some(mut res) = linux.resources().clone() {
            res.set_devices(None);
            linux.set_resources(Some(res));
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
        let spec = guest_spec((*req.spec).clone(), root, shares_guest_network);
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
            host,
        };
        Ok((running, child))
    }

    /// Starts another process in the container.
    pub fn exec(&self, req: &ExecSpec) -> Result<Child, Error> {
        let mut process = (*req.process).clone();
        without_mknod(&mut process);
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
        let s = guest_spec(spec(), Path::new("/run/hull/root"), true);
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
        assert!(res.devices().is_none());
        let own_net = guest_spec(spec(), Path::new("/r"), false);
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

    /// CAP_MKNOD is taken out of every set, for the first process and for exec.
    #[test]
    fn no_process_gets_cap_mknod_in_the_guest() {
        use oci_spec::runtime::LinuxCapabilities;
        let set: Capabilities = [Capability::Mknod, Capability::Chown].into_iter().collect();
        let mut caps = LinuxCapabilities::default();
        caps.set_bounding(Some(set.clone()))
            .set_effective(Some(set.clone()))
            .set_permitted(Some(set.clone()))
            .set_inheritable(Some(set.clone()))
            .set_ambient(Some(set));
        let mut s = spec();
        let mut process = Process::default();
        process.set_capabilities(Some(caps));
        s.set_process(Some(process));
        let s = guest_spec(s, Path::new("/r"), false);
        let caps = s
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap();
        for set in [
            caps.bounding(),
            caps.effective(),
            caps.permitted(),
            caps.inheritable(),
            caps.ambient(),
        ] {
            let set = set.as_ref().unwrap();
            assert!(!set.contains(&Capability::Mknod), "{set:?}");
            assert!(set.contains(&Capability::Chown), "{set:?}");
        }
    }

    /// Without device rules the container still gets a cgroup of its own.
    #[test]
    fn a_container_keeps_a_cgroup_of_its_own() {
        let mut s = spec();
        let mut linux = s.linux().clone().unwrap();
        linux.set_cgroups_path(Some("/hull/abc".into()));
        s.set_linux(Some(linux));
        let s = guest_spec(s, Path::new("/r"), false);
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
    }
}
