//! Container commands: run, create, start, exec, ps, logs, stop, kill, rm, inspect.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use hull_runtime::backends;
use hull_runtime::container::config::Config;
use hull_runtime::container::lifecycle::{self, LifecycleError, Listed};
use hull_runtime::container::logs::LogReader;
use hull_runtime::container::spec::{self, ImageFacts, RunOptions};
use hull_runtime::container::state::{now, ContainerState, ContainerStore, ProcRef, Status};
use hull_runtime::container::supervisor::{self, Mode};
use hull_runtime::image::ImageStore;
use hull_runtime::isolation::{self, IsolationError, IsolationKind, ProcessSpec};
use hull_runtime::network::NetworkMode;
use hull_runtime::paths::StatePaths;
use hull_runtime::process::syscalls;
use hull_runtime::sanitize;
use hull_runtime::storage::opts::StorageOpts;

/// Options shared by `run` and `create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Isolation model: `process` (namespaced process) or `vm` (microVM). Default from
    /// the config file, else `process`.
    #[arg(long)]
    isolation: Option<IsolationKind>,
    /// Container name.
    #[arg(long)]
    name: Option<String>,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Keep stdin open.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from here).
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines).
    #[arg(long = "env-file")]
    env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// User: name, uid, name:group or uid:gid (resolved in the image).
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Override the image's entrypoint ("" clears it).
    #[arg(long)]
    entrypoint: Option<String>,
    /// Container hostname (default: short id).
    #[arg(long)]
    hostname: Option<String>,
    /// Memory limit (e.g. 64m, 1g).
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// CPU limit in CPUs (e.g. 0.5).
    #[arg(long)]
    cpus: Option<String>,
    /// Maximum number of processes (default 2048; 0 or -1: unlimited).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Mount the root filesystem read-only.
    #[arg(long = "read-only")]
    read_only: bool,
    /// Bind mount HOST:CONTAINER[:ro].
    #[arg(short = 'v', long = "volume")]
    volume: Vec<String>,
    /// Network: `bridge` (default: a veth to hull's bridge, NAT, published ports),
    /// `none` (loopback only) or `host` (the host's network, process isolation only).
    #[arg(long = "network", visible_alias = "net")]
    network: Option<NetworkMode>,
    /// Publish a container port on the host: [IP:][HOSTPORT:]CONTAINERPORT[/tcp|/udp].
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Name server for the container's /etc/resolv.conf (instead of the host's).
    #[arg(long)]
    dns: Vec<String>,
    /// Add NAME:ADDRESS to the container's /etc/hosts (ADDRESS may be `host-gateway`).
    #[arg(long = "add-host")]
    add_host: Vec<String>,
    /// MAC address of the container's eth0 (bridge network).
    #[arg(long = "mac-address")]
    mac_address: Option<String>,
    /// Add a capability (`NET_ADMIN`, `CAP_SYS_TIME`, `ALL`); vm containers start without
    /// `MKNOD`, which this gives back.
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop a capability (or `ALL`).
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// Give the container a host device: HOST[:CONTAINER[:PERMS]] (PERMS of `rwm`). In vm
    /// mode the node is made in the guest with the host device's numbers.
    #[arg(long)]
    device: Vec<String>,
    /// Writable layer option: `size=N` caps it (`--isolation=vm`: the layer's disk size).
    #[arg(long = "storage-opt")]
    storage_opt: Vec<String>,
    /// Guest kernel to boot (`--isolation=vm` only; default: the installed one).
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Pull the image first: `missing` (when not stored), `always`, `never`.
    #[arg(long, value_enum, default_value_t)]
    pull: super::registry::PullPolicy,
    /// Image to run.
    image: String,
    /// Command and arguments (default: the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `hull run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short = 'd', long)]
    detach: bool,
    #[command(flatten)]
    create: CreateArgs,
}

/// `hull exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin open.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// Set an environment variable.
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Working directory.
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// User.
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Container name or id.
    container: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

/// `hull ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default: running only).
    #[arg(short = 'a', long)]
    all: bool,
    /// Output format: `table` or `json`.
    #[arg(long, default_value = "table")]
    format: String,
    /// Only print ids.
    #[arg(short = 'q', long)]
    quiet: bool,
}

/// `hull logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow output until the container exits.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Container name or id.
    container: String,
}

/// `hull stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(short = 't', long = "time", default_value_t = 10)]
    time: u64,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `hull kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal (name like KILL/SIGTERM, or number).
    #[arg(short = 's', long, default_value = "KILL")]
    signal: String,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `hull rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill the container first if it runs.
    #[arg(short = 'f', long)]
    force: bool,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `hull start` / `hull inspect`.
#[derive(Debug, Args)]
pub struct ContainersArgs {
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

fn image_facts(store: &ImageStore, image: &str) -> Result<ImageFacts> {
    let img = store.get(image).with_context(|| format!("image {image}"))?;
    Ok(img.into())
}

fn run_options(a: &CreateArgs, network: NetworkMode, kind: IsolationKind) -> RunOptions {
    RunOptions {
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        devices: a.device.clone(),
        vm: kind == IsolationKind::Vm,
        network,
        publish: a.publish.clone(),
        dns: a.dns.clone(),
        add_hosts: a.add_host.clone(),
        mac_address: a.mac_address.clone(),
        command: a.command.clone(),
        entrypoint: a.entrypoint.clone(),
        env: a.env.clone(),
        env_files: a.env_file.clone(),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        memory: a.memory.clone(),
        cpus: a.cpus.clone(),
        pids_limit: a.pids_limit,
        volumes: a.volume.clone(),
        read_only: a.read_only,
        tty: a.tty,
        interactive: a.interactive,
    }
}

/// `--kernel`, checked: only for vm isolation, and the file must exist (made absolute so
/// a later `hull start` from another directory finds it).
fn kernel_option(a: &CreateArgs, kind: IsolationKind) -> Result<Option<PathBuf>> {
    let Some(kernel) = &a.kernel else {
        return Ok(None);
    };
    if kind != IsolationKind::Vm {
        bail!("--kernel applies only to --isolation=vm (this container uses {kind})");
    }
    let path =
        std::fs::canonicalize(kernel).with_context(|| format!("--kernel {}", kernel.display()))?;
    if !path.is_file() {
        bail!("--kernel {}: not a file", kernel.display());
    }
    Ok(Some(path))
}

/// The container's network mode: the policy's, the flag, or the config's default (see
/// `Config::network_for`), checked against the isolation model.
fn network_mode(config: &Config, a: &CreateArgs, kind: IsolationKind) -> Result<NetworkMode> {
    let mode = config
        .network_for(&a.image, a.network)
        .map_err(|e| anyhow!(e))?;
    match (kind, mode) {
        (IsolationKind::Vm, NetworkMode::Host) => bail!(
            "--network host is not available with --isolation=vm: the VM has its own kernel \
             and network stack, so it cannot share the host's (publish ports with -p)"
        ),
        (_, mode) => Ok(mode),
    }
}

/// Creates the container record; returns it with the chosen backend.
fn create_container(
    paths: &StatePaths,
    store: &ContainerStore,
    a: &CreateArgs,
    supervisor: Option<ProcRef>,
) -> Result<(ContainerState, Box<dyn isolation::Isolation>)> {
    let config = Config::load(paths)?;
    let kind = config.isolation_for(&a.image, a.isolation);
    let backend = backends::backend(kind)?;
    // Before the users lock: a pull's commit takes it exclusively.
    super::registry::ensure_image(paths, &a.image, a.pull)?;
    let images = ImageStore::open(paths).context("open image store")?;
    // Held until the record naming the image's layers is saved: `hull image rm` either
    // ran before (the image is gone) or sees this container.
    let _image_users = images.lock_users_shared()?;
    let image = image_facts(&images, &a.image)?;
    let network = network_mode(&config, a, kind)?;
    let opts = run_options(a, network, kind);
    let new = store.allocate(a.name.as_deref())?;
    let spec = match spec::build(&new.id, &image, &opts)
        .map_err(anyhow::Error::from)
        .and_then(|mut spec| {
            spec.kernel = kernel_option(a, kind)?;
            spec.storage = StorageOpts::parse(&a.storage_opt, kind).map_err(|e| anyhow!(e))?;
            Ok(spec)
        }) {
        Ok(s) => s,
        Err(e) => {
            store.abandon(new);
            return Err(e);
        }
    };
    let state = ContainerState {
        id: new.id.clone(),
        name: new.name.clone(),
        isolation: kind,
        spec,
        status: Status::Created,
        created: now(),
        started: None,
        finished: None,
        exit_code: None,
        pid: None,
        supervisor,
        auto_remove: a.rm,
        error: None,
        network: None,
    };
    store.commit(new, &state)?;
    Ok((state, backend))
}

/// `hull run`.
pub fn run(args: RunArgs, paths: &StatePaths) -> Result<i32> {
    let store = ContainerStore::new(paths);
    let supervisor = (!args.detach).then(ProcRef::current);
    let (state, backend) = create_container(paths, &store, &args.create, supervisor)?;
    if args.detach {
        let id = state.id.clone();
        if let Err(e) = supervisor::start_detached(&store, &*backend, state) {
            return start_error(e);
        }
        println!("{id}");
        return Ok(0);
    }
    let outcome = supervisor::supervise(&store, &*backend, state, Mode::Foreground);
    if let Some(e) = outcome.error {
        print_error(&e.to_string());
    }
    Ok(outcome.code)
}

/// Start errors end `hull` with their own code (126 not executable, 127 not found, 125).
fn start_error(e: IsolationError) -> Result<i32> {
    print_error(&e.to_string());
    Ok(e.exit_code())
}

/// `hull: error: ...` on stderr; the message may quote a guest, an image or a container.
fn print_error(message: &str) {
    eprintln!("hull: error: {}", sanitize::for_terminal(message));
}

/// `hull create`.
pub fn create(args: CreateArgs, paths: &StatePaths) -> Result<i32> {
    let store = ContainerStore::new(paths);
    let (state, _) = create_container(paths, &store, &args, None)?;
    println!("{}", state.id);
    Ok(0)
}

/// `hull start`.
pub fn start(args: ContainersArgs, paths: &StatePaths) -> Result<i32> {
    let store = ContainerStore::new(paths);
    for key in &args.containers {
        let id = store.resolve(key)?;
        let mut state = lifecycle::load_fresh(&store, &id)?
            .ok_or_else(|| anyhow!("no such container: {key}"))?;
        if state.status == Status::Running {
            println!("{key}");
            continue;
        }
        let backend = backends::backend(state.isolation)?;
        state.status = Status::Created;
        state.exit_code = None;
        state.error = None;
        state.finished = None;
        if let Err(e) = supervisor::start_detached(&store, &*backend, state) {
            return start_error(e);
        }
        println!("{key}");
    }
    Ok(0)
}

/// `hull exec`.
pub fn exec(args: ExecArgs, paths: &StatePaths) -> Result<i32> {
    let store = ContainerStore::new(paths);
    let id = store.resolve(&args.container)?;
    let state = lifecycle::load_fresh(&store, &id)?
        .ok_or_else(|| anyhow!("no such container: {}", args.container))?;
    if state.status != Status::Running {
        bail!("container {} is not running", args.container);
    }
    let backend = backends::backend(state.isolation)?;
    let mut oci = state.spec.process().clone();
    let mut env = oci.env().clone().unwrap_or_default();
    for e in &args.env {
        spec::merge_env(&mut env, spec::expand_env(e)?);
    }
    oci.set_args(Some(args.command.clone()))
        .set_env(Some(env))
        .set_terminal(Some(args.tty))
        .set_console_size(None);
    if let Some(w) = &args.workdir {
        if !w.starts_with('/') {
            bail!("working directory {w:?} must be an absolute path");
        }
        oci.set_cwd(PathBuf::from(w));
    }
    let process = ProcessSpec {
        oci,
        stdin: args.interactive,
        user: args.user.clone(),
    };
    if let Some(user) = &process.user {
        hull_executor::user::check_spec(user)?;
    }
    hull_protocol::check_command(
        process.oci.args().as_deref().unwrap_or_default(),
        process.oci.env().as_deref().unwrap_or_default(),
    )
    .map_err(|e| anyhow!(e))?;
    match supervisor::exec_attached(&store.context(&id), &*backend, &state.spec, &process) {
        Ok(code) => Ok(code),
        Err(e) => start_error(e),
    }
}

fn short(id: &str) -> &str {
    &id[..12.min(id.len())]
}

fn ago(t: u64) -> String {
    let d = now().saturating_sub(t);
    match d {
        0..=59 => format!("{d} seconds ago"),
        60..=3599 => format!("{} minutes ago", d / 60),
        3600..=86399 => format!("{} hours ago", d / 3600),
        _ => format!("{} days ago", d / 86400),
    }
}

fn status_text(s: &ContainerState) -> String {
    match s.status {
        Status::Created => "Created".into(),
        Status::Running => format!(
            "Up {}",
            ago(s.started.unwrap_or(s.created)).trim_end_matches(" ago")
        ),
        Status::Exited => match s.exit_code {
            Some(c) => format!("Exited ({c}) {}", ago(s.finished.unwrap_or(s.created))),
            None => format!("Exited (unknown) {}", ago(s.finished.unwrap_or(s.created))),
        },
    }
}

/// A running container's published ports, docker's way (`0.0.0.0:8080->80/tcp`).
fn ports_text(s: &ContainerState) -> Vec<String> {
    s.network
        .iter()
        .flat_map(|n| n.ports.iter().map(|p| p.to_string()))
        .collect()
}

/// `hull ps`. A container whose record cannot be read is listed (always, it needs
/// attention) with the reason, and never stops the others from being listed.
pub fn ps(args: PsArgs, paths: &StatePaths) -> Result<i32> {
    let store = ContainerStore::new(paths);
    let mut all = Vec::new();
    let mut unreadable = Vec::new();
    for entry in lifecycle::list(&store) {
        match entry {
            Listed::Record(s) if args.all || s.status == Status::Running => all.push(*s),
            Listed::Record(_) => {}
            Listed::Unreadable { id, reason } => {
                let name = store.name_of(&id).unwrap_or_default();
                let reason = sanitize::one_line(&reason, 200).into_owned();
                eprintln!(
                    "hull: warning: the record of container {} cannot be read ({reason}); \
                     remove it with `hull rm -f {}`",
                    short(&id),
                    short(&id)
                );
                unreadable.push((id, name, reason));
            }
        }
    }
    let mut out = std::io::stdout().lock();
    if args.quiet {
        for id in all
            .iter()
            .map(|s| &s.id)
            .chain(unreadable.iter().map(|u| &u.0))
        {
            writeln!(out, "{}", short(id))?;
        }
        return Ok(0);
    }
    match args.format.as_str() {
        "json" => {
            let rows: Vec<serde_json::Value> = all
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "id": s.id,
                        "name": s.name,
                        "image": s.spec.image,
                        "command": s.spec.args().join(" "),
                        "created": s.created,
                        "status": s.status,
                        "state": status_text(s),
                        "exit_code": s.exit_code,
                        "isolation": s.isolation,
                        "pid": s.pid,
                        "network": s.spec.network.mode,
                        "address": s.network.as_ref().and_then(|n| n.interface.as_ref()).map(|i| i.address),
                        "ports": ports_text(s),
                    })
                })
                .chain(unreadable.iter().map(|(id, name, reason)| {
                    serde_json::json!({
                        "id": id,
                        "name": name,
                        "status": "unreadable",
                        "state": format!("Unreadable ({reason})"),
                        "error": reason,
                    })
                }))
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        }
        "table" => {
            writeln!(
                out,
                "{:<12}  {:<24}  {:<22}  {:<16}  {:<24}  {:<9}  {:<22}  NAMES",
                "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "ISOLATION", "PORTS"
            )?;
            for s in &all {
                // The command comes from the image: no control characters reach the
                // operator's terminal through `ps`.
                let args = s.spec.args().join(" ");
                let mut cmd = format!("\"{}\"", sanitize::one_line(&args, 256));
                if cmd.len() > 22 {
                    cmd = format!(
                        "{}…\"",
                        &cmd[..cmd.char_indices().nth(19).map_or(cmd.len(), |(i, _)| i)]
                    );
                }
                writeln!(
                    out,
                    "{:<12}  {:<24}  {:<22}  {:<16}  {:<24}  {:<9}  {:<22}  {}",
                    short(&s.id),
                    s.spec.image,
                    cmd,
                    ago(s.created),
                    status_text(s),
                    s.isolation,
                    ports_text(s).join(", "),
                    s.name
                )?;
            }
            for (id, name, _) in &unreadable {
                writeln!(
                    out,
                    "{:<12}  {:<24}  {:<22}  {:<16}  {:<24}  {:<9}  {}",
                    short(id),
                    "?",
                    "?",
                    "?",
                    "Unreadable record",
                    "?",
                    name
                )?;
            }
        }
        other => bail!("unknown --format {other:?} (table or json)"),
    }
    Ok(0)
}

/// `hull inspect`.
pub fn inspect(args: ContainersArgs, paths: &StatePaths) -> Result<i32> {
    let store = ContainerStore::new(paths);
    let mut all = Vec::new();
    for key in &args.containers {
        let id = store.resolve(key)?;
        let s = lifecycle::load_fresh(&store, &id)?
            .ok_or_else(|| anyhow!("no such container: {key}"))?;
        // The record, and the OCI runtime spec the container runs (its config.json).
        let mut v = serde_json::to_value(&s)?;
        v["config"] = serde_json::to_value(&s.spec.oci)?;
        all.push(v);
    }
    println!("{}", serde_json::to_string_pretty(&all)?);
    Ok(0)
}

/// `hull logs`.
pub fn logs(args: LogsArgs, paths: &StatePaths) -> Result<i32> {
    let store = ContainerStore::new(paths);
    let id = store.resolve(&args.container)?;
    let state = lifecycle::load_fresh(&store, &id)?
        .ok_or_else(|| anyhow!("no such container: {}", args.container))?;
    let dir = store.dir_of(&id);
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    let follow = args.follow && state.status == Status::Running;
    // Watch before the first read so no write between the read and the watch is missed.
    let watch = if follow { Watch::new(&dir) } else { None };
    let mut reader = LogReader::open(&dir)?;
    if let Some(r) = reader.as_mut() {
        if !r.pump(&mut out, &mut err)? {
            bail!("log of {} is corrupt", args.container);
        }
    }
    if !follow {
        return Ok(0);
    }
    let Some(watch) = watch else { return Ok(0) };
    let sup = state
        .supervisor
        .and_then(|s| syscalls::open_verified(s.pid, s.start_time));
    loop {
        let done = watch.wait(sup.as_ref().map(|f| f.as_fd()));
        if reader.is_none() {
            reader = LogReader::open(&dir)?;
        }
        if let Some(r) = reader.as_mut() {
            if !r.pump(&mut out, &mut err)? {
                bail!("log of {} is corrupt", args.container);
            }
        }
        if done {
            return Ok(0);
        }
    }
}

/// inotify watch on a container directory, to follow its log without polling.
struct Watch {
    fd: std::os::fd::OwnedFd,
}

impl Watch {
    fn new(dir: &std::path::Path) -> Option<Watch> {
        use std::os::fd::FromRawFd;
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: plain syscall; returns a new fd or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: the kernel gave us this new fd.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        // SAFETY: valid inotify fd and NUL-terminated path.
        let wd = unsafe {
            libc::inotify_add_watch(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                path.as_ptr(),
                libc::IN_MODIFY | libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_DELETE_SELF,
            )
        };
        (wd >= 0).then_some(Watch { fd })
    }

    /// Waits for a change in the directory or the supervisor's exit; true when it exited.
    fn wait(&self, supervisor: Option<std::os::fd::BorrowedFd<'_>>) -> bool {
        use std::os::fd::AsRawFd;
        let mut fds = vec![libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(s) = supervisor {
            fds.push(libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: valid pollfd array of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            return io_interrupted_is_not_done();
        }
        if fds[0].revents != 0 {
            let mut buf = [0u8; 4096];
            let _ = nix::unistd::read(self.fd.as_fd(), &mut buf);
        }
        supervisor.is_none() || fds.get(1).is_some_and(|f| f.revents != 0)
    }
}

fn io_interrupted_is_not_done() -> bool {
    std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
}

fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        bail!("invalid signal {s:?}");
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| anyhow!("invalid signal {s:?}"))
}

fn for_each(
    keys: &[String],
    paths: &StatePaths,
    f: impl Fn(&ContainerStore, &str) -> Result<(), LifecycleError>,
) -> Result<i32> {
    let store = ContainerStore::new(paths);
    let mut code = 0;
    for key in keys {
        let result = store
            .resolve(key)
            .map_err(LifecycleError::from)
            .and_then(|id| f(&store, &id));
        match result {
            Ok(()) => println!("{key}"),
            Err(e) => {
                print_error(&format!("{key}: {e}"));
                code = 1;
            }
        }
    }
    Ok(code)
}

/// `hull stop`.
pub fn stop(args: StopArgs, paths: &StatePaths) -> Result<i32> {
    for_each(&args.containers, paths, |s, id| {
        lifecycle::stop(s, id, args.time)
    })
}

/// `hull kill`.
pub fn kill(args: KillArgs, paths: &StatePaths) -> Result<i32> {
    let sig = parse_signal(&args.signal)?;
    for_each(&args.containers, paths, |s, id| lifecycle::kill(s, id, sig))
}

/// `hull rm`.
pub fn rm(args: RmArgs, paths: &StatePaths) -> Result<i32> {
    for_each(&args.containers, paths, |s, id| {
        lifecycle::remove(s, id, args.force)
    })
}
