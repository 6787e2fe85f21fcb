//! The process model: the container is a namespaced process on the host, set up from the
//! bundle's spec by hull's executor (`hull_executor`, shared with the guest agent). `create`
//! leaves the fully set-up init waiting at the start gate, a FIFO in the container's state
//! directory (runc's exec.fifo): its blocking open for writing returns when `start` opens
//! the FIFO for reading. The init is the `--pid-file` process; once `hull-oci create`
//! exits it is re-parented to the caller's subreaper (conmon, containerd's shim), which
//! reaps it and reads the container's status.

use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hull_executor::cgroups::{driver, Layout, Version};
use hull_executor::plan::{Host, Plan, ProcessPlan, RootSource};
use hull_executor::spawn::{self, ExecTarget, Options, Stdio};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources, Spec};
use serde::{Deserialize, Serialize};

use crate::error::{OciError, Result};
use crate::pidfile;
use crate::procref::ProcRef;
use crate::runner::{CreateRequest, ExecRequest, Runner, Waitable};
use crate::state::{Locked, Model, Record};

/// The model's own record in the state directory.
const RECORD: &str = "process.json";
/// How long the init may take to reach the gate, and `start` to see it pass.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `destroy` waits for the container's processes to be gone.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// What `destroy`, `ps`, `pause` need to find again.
#[derive(Debug, Serialize, Deserialize)]
struct ProcessRecord {
    /// The container's cgroup, relative to each hierarchy's root.
    cgroup: PathBuf,
}

/// The process model.
#[derive(Debug, Default)]
pub struct ProcessRunner;

fn exec_err(e: hull_executor::Error) -> OciError {
    OciError::Runtime(e.to_string())
}

fn read_record(dir: &Locked) -> Option<ProcessRecord> {
    let mut text = String::new();
    fs::File::open(dir.file(RECORD))
        .ok()?
        .take(64 << 10)
        .read_to_string(&mut text)
        .ok()?;
    serde_json::from_str(&text).ok()
}

fn device_rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow);
    r.set_typ(Some(typ));
    r.set_major(major);
    r.set_minor(minor);
    r.set_access(Some(access.to_string()));
    r
}

/// The device cgroup as runc builds it from a spec: deny everything unless the spec's own
/// rules say otherwise, the spec's rules, then an allow rule per device of `linux.devices`
/// (the executor appends runc's always-allowed devices after them; last match wins).
fn device_rules(spec: &Spec) -> Vec<LinuxDeviceCgroup> {
    let linux = spec.linux().as_ref();
    let own: Vec<LinuxDeviceCgroup> = linux
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    let mut rules = Vec::with_capacity(own.len() + 1);
    if own.is_empty() {
        rules.push(device_rule(false, LinuxDeviceType::A, None, None, "rwm"));
    }
    rules.extend(own);
    for d in linux.and_then(|l| l.devices().clone()).unwrap_or_default() {
        if matches!(
            d.typ(),
            LinuxDeviceType::C | LinuxDeviceType::U | LinuxDeviceType::B
        ) {
            let typ = if d.typ() == LinuxDeviceType::B {
                LinuxDeviceType::B
            } else {
                LinuxDeviceType::C
            };
            rules.push(device_rule(
                true,
                typ,
                Some(d.major()),
                Some(d.minor()),
                "rwm",
            ));
        }
    }
    rules
}

/// A bind mount without filesystem data options (`mode=`, `size=`...): mount(2) ignores
/// data for MS_BIND, runc passes them along unused, the executor refuses them.
fn without_bind_data(mut m: oci_spec::runtime::Mount) -> oci_spec::runtime::Mount {
    let bind = m.typ().as_deref() == Some("bind")
        || m.options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind");
    if bind {
        if let Some(options) = m.options().clone() {
            let kept: Vec<String> = options.into_iter().filter(|o| !o.contains('=')).collect();
            m.set_options(Some(kept));
        }
    }
    m
}

/// The spec as the executor gets it: hull-oci names a cgroup when the bundle does not (the
/// executor does not invent names; runc and crun default to one per container), and the
/// device rules are runc's (which also gives every container its cgroup).
fn executor_spec(spec: &Spec, id: &str) -> Spec {
    let mut spec = spec.clone();
    // hull-oci runs the hooks itself (commands::create, start, delete).
    spec.set_hooks(None);
    if let Some(mut process) = spec.process().clone() {
        if let Some(caps) = process.capabilities().clone() {
            process.set_capabilities(Some(ambient_within_inheritable(caps)));
            spec.set_process(Some(process));
        }
    }
    if let Some(mounts) = spec.mounts().clone() {
        spec.set_mounts(Some(mounts.into_iter().map(without_bind_data).collect()));
    }
    let rules = device_rules(&spec);
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_cgroups_path(Some(super::cgroup::spec_path(&spec, id)));
    let mut resources = linux.resources().clone().unwrap_or_default();
    resources.set_devices(Some(rules));
    if let Some(memory) = *resources.memory() {
        if memory.kernel().is_some() || memory.kernel_tcp().is_some() {
            // As runc since 1.0: kernel memory accounting is deprecated in the kernel and
            // in the runtime spec; the values are ignored, with a warning.
            tracing::warn!("linux.resources.memory.kernel/kernelTCP ignored (deprecated)");
            let mut memory = memory;
            memory.set_kernel(None);
            memory.set_kernel_tcp(None);
            resources.set_memory(Some(memory));
        }
    }
    linux.set_resources(Some(resources));
    if let Some(seccomp) = linux.seccomp().clone() {
        linux.set_seccomp(Some(super::seccomp::known_syscalls_only(seccomp)));
    }
    spec.set_linux(Some(linux));
    spec
}

/// The ambient set cut to what is also permitted and inheritable: the kernel cannot raise
/// anything else, and runc and crun go on without it (`crun spec` writes an ambient set
/// with an empty inheritable one); the executor refuses it.
fn ambient_within_inheritable(
    mut caps: oci_spec::runtime::LinuxCapabilities,
) -> oci_spec::runtime::LinuxCapabilities {
    if let Some(ambient) = caps.ambient().clone() {
        let inheritable = caps.inheritable().clone().unwrap_or_default();
        let permitted = caps.permitted().clone().unwrap_or_default();
        let kept: std::collections::HashSet<_> = ambient
            .iter()
            .filter(|c| inheritable.contains(c) && permitted.contains(c))
            .copied()
            .collect();
        if kept.len() != ambient.len() {
            tracing::debug!("ambient capabilities outside inheritable/permitted dropped");
        }
        caps.set_ambient(Some(kept));
    }
    caps
}

/// The container's processes: `cgroup.procs` of its cgroup in the first hierarchy that has it.
fn cgroup_pids(layout: &Layout, path: &Path) -> Vec<i32> {
    for dir in driver::existing_dirs(layout, path) {
        if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
            return text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        }
    }
    Vec::new()
}

/// Stdio for the container's process: the console socket's connection, or our own 0-2.
fn stdio_for<'a>(console: Option<&'a UnixStream>) -> Stdio<'a> {
    match console {
        Some(s) => Stdio::ConsoleSocket(s.as_fd()),
        // SAFETY: fds 0-2 are this process's standard streams for its whole life.
        None => unsafe {
            Stdio::Pipes {
                stdin: Some(BorrowedFd::borrow_raw(0)),
                stdout: BorrowedFd::borrow_raw(1),
                stderr: BorrowedFd::borrow_raw(2),
            }
        },
    }
}

fn connect_console(path: Option<&PathBuf>) -> Result<Option<UnixStream>> {
    path.map(|p| {
        UnixStream::connect(p)
            .map_err(|e| OciError::io(format!("connect to console socket {}", p.display()), e))
    })
    .transpose()
}

/// The v1 freezer hierarchy's directory of the container (the executor puts the container
/// in every hierarchy, the freezer included).
fn freezer_dir(layout: &Layout, path: &Path) -> Option<PathBuf> {
    (layout.version == Version::V1).then(|| layout.root.join("freezer").join(path))
}

/// Freezes (`true`) or thaws the cgroup, and waits until the kernel says it is done.
fn freeze(layout: &Layout, path: &Path, frozen: bool) -> Result<()> {
    let (file, value, done_file, done): (&str, &str, &str, &str) = match layout.version {
        Version::V2 => (
            "cgroup.freeze",
            if frozen { "1" } else { "0" },
            "cgroup.events",
            if frozen { "frozen 1" } else { "frozen 0" },
        ),
        _ => (
            "freezer.state",
            if frozen { "FROZEN" } else { "THAWED" },
            "freezer.state",
            if frozen { "FROZEN" } else { "THAWED" },
        ),
    };
    let dir = freezer_dir(layout, path)
        .into_iter()
        .chain(driver::existing_dirs(layout, path))
        .find(|d| d.join(file).exists())
        .ok_or_else(|| OciError::Unsupported("no freezer cgroup for this container".into()))?;
    fs::write(dir.join(file), value)
        .map_err(|e| OciError::io(format!("write {}", dir.join(file).display()), e))?;
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        let now = fs::read_to_string(dir.join(done_file)).unwrap_or_default();
        if now.lines().any(|l| l.trim() == done) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(OciError::Runtime(format!(
                "the container's cgroup did not reach {value} within {} s",
                SETUP_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An exec'd process we wait for.
struct ExecChild(OwnedFd);

impl Waitable for ExecChild {
    fn wait(self: Box<Self>) -> Result<i32> {
        // SAFETY: siginfo_t is plain data.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: waitid on our own child's pidfd, writing into `info`.
            let r = unsafe {
                libc::waitid(
                    libc::P_PIDFD,
                    self.0.as_raw_fd() as libc::id_t,
                    &mut info,
                    libc::WEXITED,
                )
            };
            if r == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(OciError::io("wait for the exec'd process", e));
            }
        }
        // SAFETY: waitid filled in a child's exit information.
        let (code, status) = (info.si_code, unsafe { info.si_status() });
        Ok(if code == libc::CLD_EXITED {
            status
        } else {
            128 + status
        })
    }
}

impl Runner for ProcessRunner {
    fn model(&self) -> Model {
        Model::Process
    }

    fn create(&self, req: &CreateRequest<'_>) -> Result<ProcRef> {
        if req.preserve_fds > 0 {
            return Err(OciError::Unsupported(
                "--preserve-fds (the executor hands over fds 0-2 only)".into(),
            ));
        }
        let spec = executor_spec(&req.bundle.spec, &req.dir.id);
        let host = Host::detect();
        let plan =
            Plan::new(&spec, &req.bundle.dir, &RootSource::Ready, &host).map_err(exec_err)?;
        let record = ProcessRecord {
            cgroup: plan.container.cgroup.path.clone(),
        };
        fs::write(
            req.dir.file(RECORD),
            serde_json::to_vec(&record).map_err(|e| OciError::Runtime(e.to_string()))?,
        )
        .map_err(|e| OciError::io("write process.json", e))?;
        super::gate::make(req.dir)?;
        let gate = req.dir.file(super::gate::GATE);
        let console = connect_console(req.console_socket.as_ref())?;
        let spawned = spawn::create(
            &plan,
            &host.cgroups,
            &Options {
                stdio: stdio_for(console.as_ref()),
                die_with_parent: false,
                start_gate: Some(&gate),
                timeout: SETUP_TIMEOUT,
            },
        )
        .map_err(exec_err)?;
        ProcRef::of(spawned.pid)
            .ok_or_else(|| OciError::Runtime("the container's process ended during create".into()))
    }

    fn start(&self, dir: &Locked, _record: &Record) -> Result<()> {
        let fifo = super::gate::open(dir)?;
        // The init's open for writing returns now; it writes one byte and goes on to exec.
        let mut pfd = libc::pollfd {
            fd: fifo.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, SETUP_TIMEOUT.as_millis() as i32) };
        let mut byte = [0u8; 1];
        let n = if ready > 0 {
            (&fifo).read(&mut byte).unwrap_or(0)
        } else {
            0
        };
        if n != 1 {
            return Err(OciError::Runtime(
                "the container's process did not pass the start gate (it ended, or timed out)"
                    .into(),
            ));
        }
        Ok(())
    }

    fn signal(&self, dir: &Locked, record: &Record, signal: i32, all: bool) -> Result<()> {
        let id = || OciError::NotRunning(record.id.clone());
        if all {
            let rec = read_record(dir).ok_or_else(id)?;
            for pid in cgroup_pids(&Layout::host(), &rec.cgroup) {
                // SAFETY: kill(2) of a process in the container's cgroup.
                unsafe { libc::kill(pid, signal) };
            }
            return Ok(());
        }
        let init = record.init.ok_or_else(id)?;
        match init.signal(signal) {
            Ok(true) => Ok(()),
            Ok(false) => Err(id()),
            Err(e) => Err(OciError::io("signal the container", e)),
        }
    }

    fn exec(
        &self,
        dir: &Locked,
        record: &Record,
        req: ExecRequest,
    ) -> Result<Option<Box<dyn Waitable>>> {
        if req.preserve_fds > 0 {
            return Err(OciError::Unsupported(
                "--preserve-fds (the executor hands over fds 0-2 only)".into(),
            ));
        }
        let spec = crate::commands::recorded_spec(dir)?;
        let host = Host::detect();
        let seccomp = spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().clone())
            .map(super::seccomp::known_syscalls_only);
        let plan =
            ProcessPlan::new(&req.process, seccomp.as_ref(), host.last_cap).map_err(exec_err)?;
        let init = record
            .init
            .and_then(ProcRef::pidfd)
            .ok_or_else(|| OciError::NotRunning(record.id.clone()))?;
        let cgroup = read_record(dir).map(|r| r.cgroup);
        let console = connect_console(req.console_socket.as_ref())?;
        let spawned = spawn::exec(
            &plan,
            &ExecTarget {
                init: init.as_fd(),
                namespaces: spawn::namespace_flags(&spec),
                cgroup_path: cgroup.as_deref(),
            },
            &host.cgroups,
            &Options {
                stdio: stdio_for(console.as_ref()),
                die_with_parent: false,
                start_gate: None,
                timeout: SETUP_TIMEOUT,
            },
        )
        .map_err(exec_err)?;
        if let Some(path) = &req.pid_file {
            pidfile::write(path, spawned.pid)?;
        }
        if req.detach {
            return Ok(None);
        }
        Ok(Some(Box::new(ExecChild(spawned.pidfd))))
    }

    fn pids(&self, dir: &Locked, _record: &Record) -> Result<Vec<i32>> {
        Ok(read_record(dir)
            .map(|r| cgroup_pids(&Layout::host(), &r.cgroup))
            .unwrap_or_default())
    }

    fn pause(&self, dir: &Locked, record: &Record) -> Result<()> {
        let rec = read_record(dir).ok_or_else(|| OciError::NotRunning(record.id.clone()))?;
        freeze(&Layout::host(), &rec.cgroup, true)
    }

    fn resume(&self, dir: &Locked, record: &Record) -> Result<()> {
        let rec = read_record(dir).ok_or_else(|| OciError::NotRunning(record.id.clone()))?;
        freeze(&Layout::host(), &rec.cgroup, false)
    }

    fn update(&self, dir: &Locked, record: &Record, resources: &LinuxResources) -> Result<()> {
        let layout = Layout::host();
        let rec = read_record(dir).ok_or_else(|| OciError::NotRunning(record.id.clone()))?;
        let settings = hull_executor::cgroups::settings::settings(resources, layout.version)
            .map_err(exec_err)?;
        let dirs = driver::existing_dirs(&layout, &rec.cgroup);
        for s in settings {
            let target = dirs
                .iter()
                .map(|d| d.join(&s.file))
                .find(|p| p.exists())
                .ok_or_else(|| {
                    OciError::Unsupported(format!(
                        "update of {} (the container has no {} cgroup)",
                        s.file, s.controller
                    ))
                })?;
            fs::write(&target, &s.value)
                .map_err(|e| OciError::io(format!("write {}", target.display()), e))?;
        }
        Ok(())
    }

    fn destroy(&self, dir: &Locked, record: &Record) -> Result<()> {
        if let Some(init) = record.init {
            let _ = init.signal(libc::SIGKILL);
        }
        let layout = Layout::host();
        if let Some(rec) = read_record(dir) {
            // A paused container's processes die only once thawed.
            let _ = freeze(&layout, &rec.cgroup, false);
            driver::kill_all(&layout, &rec.cgroup);
            let deadline = Instant::now() + KILL_TIMEOUT;
            while !cgroup_pids(&layout, &rec.cgroup).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            driver::remove(&layout, &rec.cgroup)
                .map_err(|e| OciError::io("remove the container's cgroups", e))?;
            super::cgroup::remove_default_parent(&layout, &rec.cgroup);
        }
        super::gate::remove(dir);
        Ok(())
    }
}
