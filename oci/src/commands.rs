//! The commands: ids, records, locks, statuses and runc's rules about which command is
//! allowed in which state. The isolation models do the rest ([`Runner`]).

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::path::Path;

use oci_spec::runtime::{LinuxResources, Process, Spec};

use crate::bundle;
use crate::cli::{
    Command, CreateArgs, DeleteArgs, ExecArgs, KillArgs, ListArgs, PsArgs, RunArgs, SpecArgs,
    UpdateArgs,
};
use crate::error::{OciError, Result};
use crate::features;
use crate::isolation::{self, HullConfig, Invocation};
use crate::pidfile;
use crate::procref::ProcRef;
use crate::runner::{CreateRequest, ExecRequest, Runner};
use crate::signal;
use crate::state::{self, Locked, Model, Phase, Record, Status, Store};

/// Largest `--process` or `--resources` JSON read.
const MAX_JSON: u64 = 4 << 20;
/// The container's spec as created, in its state directory.
pub const SPEC_COPY: &str = "config.json";

/// What every command needs besides its own arguments.
pub struct Context {
    /// The containers under `--root`.
    pub store: Store,
    /// `hull-oci` or `hull-oci-vm`.
    pub invocation: Invocation,
    /// `--systemd-cgroup`.
    pub systemd_cgroup: bool,
    /// Gives the runner of a model.
    pub runners: Box<dyn Fn(Model) -> Result<Box<dyn Runner>>>,
}

impl Context {
    fn runner(&self, model: Model) -> Result<Box<dyn Runner>> {
        (self.runners)(model)
    }
}

/// Runs one command; returns the exit code.
pub fn run(ctx: &Context, command: Command) -> Result<i32> {
    match command {
        Command::Create(args) => create(ctx, &args).map(|_| 0),
        Command::Start(a) => start(ctx, &a.id).map(|_| 0),
        Command::Run(args) => run_container(ctx, &args),
        Command::State(a) => state(ctx, &a.id).map(|_| 0),
        Command::Kill(args) => kill(ctx, &args).map(|_| 0),
        Command::Delete(args) => delete(ctx, &args).map(|_| 0),
        Command::Exec(args) => exec(ctx, args),
        Command::Ps(args) => ps(ctx, &args).map(|_| 0),
        Command::Pause(a) => pause(ctx, &a.id, true).map(|_| 0),
        Command::Resume(a) => pause(ctx, &a.id, false).map(|_| 0),
        Command::Update(args) => update(ctx, &args).map(|_| 0),
        Command::List(args) => list(ctx, &args).map(|_| 0),
        Command::Features => print_json(&features::document()).map(|_| 0),
        Command::Spec(args) => spec(&args).map(|_| 0),
    }
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| OciError::Runtime(e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// `create`: check the bundle, claim the id, let the model build the container, record
/// it, write the pid file. Any failure removes everything made so far.
pub fn create(ctx: &Context, args: &CreateArgs) -> Result<ProcRef> {
    state::validate_id(&args.id)?;
    let bundle = bundle::load(&args.bundle)?;
    let annotations = bundle.spec.annotations().clone().unwrap_or_default();
    let config = HullConfig::load(&isolation::config_path())?;
    let model = isolation::choose(&annotations, ctx.invocation, &config)?;
    let runner = ctx.runner(model)?;
    let pid_file = args
        .pid_file
        .as_deref()
        .map(pidfile::absolute)
        .transpose()?;
    let console_socket = args
        .console_socket
        .as_deref()
        .map(pidfile::absolute)
        .transpose()?;
    let terminal = bundle
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    if terminal && console_socket.is_none() {
        return Err(OciError::Usage(
            "process.terminal is set: --console-socket is required".into(),
        ));
    }
    if !terminal && console_socket.is_some() {
        return Err(OciError::Usage(
            "--console-socket given but process.terminal is not set".into(),
        ));
    }

    let dir = ctx.store.claim(&args.id)?;
    let mut record = Record {
        id: args.id.clone(),
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: state::now_rfc3339(),
        owner: String::new(),
        annotations: annotations.into_iter().collect::<BTreeMap<_, _>>(),
        model,
        phase: Phase::Creating,
        creator: ProcRef::of(std::process::id() as i32),
        init: None,
        paused: false,
    };
    let made = (|| {
        dir.write(&record)?;
        save_spec(&dir, &bundle.spec)?;
        let init = runner.create(&CreateRequest {
            dir: &dir,
            bundle: &bundle,
            console_socket,
            preserve_fds: args.preserve_fds,
            no_new_keyring: args.no_new_keyring,
            systemd_cgroup: ctx.systemd_cgroup,
        })?;
        record.init = Some(init);
        record.phase = Phase::Created;
        record.creator = None;
        dir.write(&record)?;
        if let Some(path) = &pid_file {
            pidfile::write(path, init.pid)?;
        }
        Ok(init)
    })();
    match made {
        Ok(init) => {
            tracing::info!(id = %args.id, pid = init.pid, model = model.as_str(), "created");
            Ok(init)
        }
        Err(e) => {
            if let Err(cleanup) = runner.destroy(&dir, &record) {
                tracing::warn!("cleaning up after a failed create: {cleanup}");
            }
            if let Some(path) = &pid_file {
                let _ = std::fs::remove_file(path);
            }
            let _ = dir.remove();
            Err(e)
        }
    }
}

/// `start`.
pub fn start(ctx: &Context, id: &str) -> Result<()> {
    let dir = ctx.store.open(id)?;
    let mut record = dir.read()?;
    match record.status() {
        Status::Created => {}
        Status::Stopped => return Err(OciError::StartStopped),
        Status::Running | Status::Paused => return Err(OciError::AlreadyRunning),
        Status::Creating => return Err(OciError::StartInState("creating".into())),
    }
    ctx.runner(record.model)?.start(&dir, &record)?;
    record.phase = Phase::Started;
    dir.write(&record)
}

/// `run`: create, start, and unless detached wait for the end and delete.
fn run_container(ctx: &Context, args: &RunArgs) -> Result<i32> {
    let init = create(ctx, &args.create)?;
    if let Err(e) = start(ctx, &args.create.id) {
        let _ = delete(
            ctx,
            &DeleteArgs {
                force: true,
                id: args.create.id.clone(),
            },
        );
        return Err(e);
    }
    if args.detach {
        return Ok(0);
    }
    let code = wait_for_child(init.pid);
    if !args.keep {
        delete(
            ctx,
            &DeleteArgs {
                force: true,
                id: args.create.id.clone(),
            },
        )?;
    }
    code
}

/// Waits for `pid`, our child; its exit code as a shell gives it.
fn wait_for_child(pid: i32) -> Result<i32> {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(OciError::io("wait for the container", e)),
        }
    }
}

/// `state`: the record checked against the kernel, as runc prints it.
pub fn state(ctx: &Context, id: &str) -> Result<()> {
    let record = ctx.store.peek(id)?;
    print_json(&record.runc_state())
}

/// `kill`.
pub fn kill(ctx: &Context, args: &KillArgs) -> Result<()> {
    let signal = signal::parse(&args.signal)?;
    let dir = ctx.store.open(&args.id)?;
    let record = dir.read()?;
    match record.status() {
        Status::Created | Status::Running | Status::Paused => {}
        Status::Stopped | Status::Creating => return Err(OciError::NotRunning(args.id.clone())),
    }
    ctx.runner(record.model)?
        .signal(&dir, &record, signal, args.all)
}

/// `delete`: a stopped or created container, or with `--force` any.
pub fn delete(ctx: &Context, args: &DeleteArgs) -> Result<()> {
    let dir = ctx.store.open(&args.id)?;
    let record = match dir.read() {
        Ok(r) => r,
        // A directory without a record: a create that died before writing anything.
        Err(OciError::NotExist(_)) if args.force => return dir.remove(),
        Err(e) => return Err(e),
    };
    let status = record.status();
    match status {
        Status::Stopped | Status::Created => {}
        _ if args.force => {}
        _ => {
            return Err(OciError::DeleteNotStopped {
                id: args.id.clone(),
                status: status.to_string(),
            })
        }
    }
    ctx.runner(record.model)?.destroy(&dir, &record)?;
    dir.remove()?;
    tracing::info!(id = %args.id, "deleted");
    Ok(())
}

/// `exec`.
pub fn exec(ctx: &Context, args: ExecArgs) -> Result<i32> {
    let dir = ctx.store.open(&args.id)?;
    let record = dir.read()?;
    match record.status() {
        Status::Running => {}
        Status::Paused if args.ignore_paused => {}
        Status::Paused => {
            return Err(OciError::Usage(format!(
                "container {} is paused (--ignore-paused to exec anyway)",
                args.id
            )))
        }
        _ => return Err(OciError::NotRunning(args.id.clone())),
    }
    let process = exec_process(&args, &dir)?;
    let runner = ctx.runner(record.model)?;
    let req = ExecRequest {
        process,
        detach: args.detach,
        console_socket: args
            .console_socket
            .as_deref()
            .map(pidfile::absolute)
            .transpose()?,
        pid_file: args
            .pid_file
            .as_deref()
            .map(pidfile::absolute)
            .transpose()?,
        preserve_fds: args.preserve_fds,
    };
    let waiter = runner.exec(&dir, &record, req)?;
    // The container lock is not held while the process runs: other commands (kill, ps,
    // another exec) must work meanwhile.
    drop(dir);
    match waiter {
        Some(w) => w.wait(),
        None => Ok(0),
    }
}

/// The Process of an `exec`: `--process FILE`, or the container's own process with the
/// command line and flags applied (what runc does).
fn exec_process(args: &ExecArgs, dir: &Locked) -> Result<Process> {
    if args.apparmor.is_some() {
        return Err(OciError::Unsupported(
            "AppArmor profiles (--apparmor)".into(),
        ));
    }
    if args.process_label.is_some() {
        return Err(OciError::Unsupported(
            "SELinux labels (--process-label)".into(),
        ));
    }
    if let Some(path) = &args.process {
        if !args.command.is_empty() {
            return Err(OciError::Usage(
                "give either --process or a command, not both".into(),
            ));
        }
        let bytes = read_json_input(path)?;
        return serde_json::from_slice(&bytes).map_err(|e| {
            OciError::Usage(format!(
                "--process {}: not a runtime-spec Process: {e}",
                path.display()
            ))
        });
    }
    if args.command.is_empty() {
        return Err(OciError::Usage(
            "exec needs a command or --process FILE".into(),
        ));
    }
    let spec = load_recorded_spec(dir)?;
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(args.command.clone()));
    process.set_terminal(Some(args.tty));
    if let Some(cwd) = &args.cwd {
        process.set_cwd(cwd.into());
    }
    let mut env = process.env().clone().unwrap_or_default();
    env.extend(args.env.iter().cloned());
    process.set_env(Some(env));
    if let Some(user) = &args.user {
        let (uid, gid) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (user.as_str(), None),
        };
        let num = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| OciError::Usage(format!("--user {user:?}: expected UID[:GID]")))
        };
        let mut u = process.user().clone();
        u.set_uid(num(uid)?);
        u.set_gid(gid.map(num).transpose()?.unwrap_or(0));
        process.set_user(u);
    }
    if !args.additional_gids.is_empty() {
        let mut u = process.user().clone();
        u.set_additional_gids(Some(args.additional_gids.clone()));
        process.set_user(u);
    }
    if args.no_new_privs {
        process.set_no_new_privileges(Some(true));
    }
    if !args.caps.is_empty() {
        add_capabilities(&mut process, &args.caps)?;
    }
    Ok(process)
}

fn add_capabilities(process: &mut Process, names: &[String]) -> Result<()> {
    use oci_spec::runtime::{Capabilities, Capability};
    use std::str::FromStr;
    let mut caps = process.capabilities().clone().unwrap_or_default();
    for name in names {
        let cap = Capability::from_str(name)
            .map_err(|_| OciError::Usage(format!("unknown capability {name:?}")))?;
        let with = |set: &Option<Capabilities>| {
            let mut set = set.clone().unwrap_or_default();
            set.insert(cap);
            Some(set)
        };
        let (b, e, p, i, a) = (
            with(caps.bounding()),
            with(caps.effective()),
            with(caps.permitted()),
            with(caps.inheritable()),
            with(caps.ambient()),
        );
        caps.set_bounding(b);
        caps.set_effective(e);
        caps.set_permitted(p);
        caps.set_inheritable(i);
        caps.set_ambient(a);
    }
    process.set_capabilities(Some(caps));
    Ok(())
}

/// The spec as it was at `create` (later edits of the bundle's config.json do not change
/// a container, as the runtime spec requires).
fn load_recorded_spec(dir: &Locked) -> Result<Spec> {
    let path = dir.file(SPEC_COPY);
    let bytes = std::fs::File::open(&path)
        .and_then(|f| {
            let mut b = Vec::new();
            f.take(bundle::MAX_CONFIG_BYTES).read_to_end(&mut b)?;
            Ok(b)
        })
        .map_err(|e| OciError::io(format!("read {}", path.display()), e))?;
    bundle::parse_config(&bytes).map_err(OciError::Runtime)
}

/// Saves the spec as created.
fn save_spec(dir: &Locked, spec: &Spec) -> Result<()> {
    let path = dir.file(SPEC_COPY);
    let bytes = serde_json::to_vec(spec).map_err(|e| OciError::Runtime(e.to_string()))?;
    std::fs::write(&path, bytes).map_err(|e| OciError::io(format!("write {}", path.display()), e))
}

/// Reads a JSON input: a file, or stdin for `-`.
fn read_json_input(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let what = path.display().to_string();
    if path == Path::new("-") {
        std::io::stdin()
            .take(MAX_JSON)
            .read_to_end(&mut bytes)
            .map_err(|e| OciError::io("read stdin", e))?;
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_JSON).read_to_end(&mut bytes))
            .map_err(|e| OciError::io(format!("read {what}"), e))?;
    }
    Ok(bytes)
}

/// `ps`.
pub fn ps(ctx: &Context, args: &PsArgs) -> Result<()> {
    let dir = ctx.store.open(&args.id)?;
    let record = dir.read()?;
    let pids = match record.status() {
        Status::Stopped | Status::Creating => Vec::new(),
        _ => ctx.runner(record.model)?.pids(&dir, &record)?,
    };
    drop(dir);
    match args.format.as_str() {
        "json" => print_json(&pids),
        "table" => ps_table(&pids, &args.ps_args),
        other => Err(OciError::Usage(format!(
            "unknown format {other:?} (expected table or json)"
        ))),
    }
}

/// runc's table: ps(1)'s header, then its lines whose PID column is one of `pids`.
fn ps_table(pids: &[i32], ps_args: &[String]) -> Result<()> {
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| OciError::io("run ps", e))?;
    if !out.status.success() {
        return Err(OciError::Runtime(format!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let column = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| OciError::Usage("ps output has no PID column".into()))?;
    let wanted: HashSet<i32> = pids.iter().copied().collect();
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(column)
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| wanted.contains(&p)) {
            let _ = writeln!(stdout, "{line}");
        }
    }
    Ok(())
}

/// `pause` (`freeze` true) and `resume`.
pub fn pause(ctx: &Context, id: &str, freeze: bool) -> Result<()> {
    let dir = ctx.store.open(id)?;
    let mut record = dir.read()?;
    let runner = ctx.runner(record.model)?;
    match (freeze, record.status()) {
        (true, Status::Running) => runner.pause(&dir, &record)?,
        (true, _) => return Err(OciError::PauseNotRunning(id.to_string())),
        (false, Status::Paused) => runner.resume(&dir, &record)?,
        (false, _) => return Err(OciError::NotPaused(id.to_string())),
    }
    record.paused = freeze;
    dir.write(&record)
}

/// `update`.
pub fn update(ctx: &Context, args: &UpdateArgs) -> Result<()> {
    let mut resources: LinuxResources = match &args.resources {
        Some(path) => {
            let bytes = read_json_input(path)?;
            serde_json::from_slice(&bytes).map_err(|e| {
                OciError::Usage(format!(
                    "--resources {}: not runtime-spec linux.resources: {e}",
                    path.display()
                ))
            })?
        }
        None => LinuxResources::default(),
    };
    apply_update_flags(&mut resources, args);
    let dir = ctx.store.open(&args.id)?;
    let record = dir.read()?;
    if record.status() == Status::Stopped {
        return Err(OciError::NotRunning(args.id.clone()));
    }
    ctx.runner(record.model)?.update(&dir, &record, &resources)
}

fn apply_update_flags(r: &mut LinuxResources, args: &UpdateArgs) {
    use oci_spec::runtime::LinuxPids;
    if args.memory.is_some() || args.memory_swap.is_some() {
        let mut m = r.memory().unwrap_or_default();
        if let Some(v) = args.memory {
            m.set_limit(Some(v));
        }
        if let Some(v) = args.memory_swap {
            m.set_swap(Some(v));
        }
        r.set_memory(Some(m));
    }
    if args.cpu_shares.is_some()
        || args.cpu_quota.is_some()
        || args.cpu_period.is_some()
        || args.cpuset_cpus.is_some()
        || args.cpuset_mems.is_some()
    {
        let mut c = r.cpu().clone().unwrap_or_default();
        if let Some(v) = args.cpu_shares {
            c.set_shares(Some(v));
        }
        if let Some(v) = args.cpu_quota {
            c.set_quota(Some(v));
        }
        if let Some(v) = args.cpu_period {
            c.set_period(Some(v));
        }
        if let Some(v) = &args.cpuset_cpus {
            c.set_cpus(Some(v.clone()));
        }
        if let Some(v) = &args.cpuset_mems {
            c.set_mems(Some(v.clone()));
        }
        r.set_cpu(Some(c));
    }
    if let Some(v) = args.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(v);
        r.set_pids(Some(p));
    }
}

/// `list`.
pub fn list(ctx: &Context, args: &ListArgs) -> Result<()> {
    let mut states = Vec::new();
    for id in ctx.store.ids()? {
        match ctx.store.peek(&id) {
            Ok(r) => states.push(r.runc_state()),
            // Being created or deleted right now, or unreadable: runc skips those too.
            Err(e) => tracing::debug!(%id, "not listed: {e}"),
        }
    }
    if args.quiet {
        for s in &states {
            println!("{}", s.id);
        }
        return Ok(());
    }
    match args.format.as_str() {
        "json" => print_json(&states),
        "table" => {
            let mut rows = vec![[
                "ID".to_string(),
                "PID".into(),
                "STATUS".into(),
                "BUNDLE".into(),
                "CREATED".into(),
                "OWNER".into(),
            ]];
            for s in &states {
                rows.push([
                    s.id.clone(),
                    s.pid.to_string(),
                    s.status.clone(),
                    s.bundle.display().to_string(),
                    s.created.clone(),
                    if s.owner.is_empty() {
                        "root".into()
                    } else {
                        s.owner.clone()
                    },
                ]);
            }
            print!("{}", table(&rows));
            Ok(())
        }
        other => Err(OciError::Usage(format!(
            "unknown format {other:?} (expected table or json)"
        ))),
    }
}

/// Columns padded to their widest cell plus a space (Go's tabwriter, as runc uses it).
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}", w = widths[i] + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `spec`: a default config.json (a shell on a terminal), as `runc spec` writes it.
fn spec(args: &SpecArgs) -> Result<()> {
    let path = args.bundle.join("config.json");
    if path.exists() {
        return Err(OciError::Usage(format!(
            "{} exists; remove it first",
            path.display()
        )));
    }
    let spec = Spec::default();
    let text = serde_json::to_string_pretty(&spec).map_err(|e| OciError::Runtime(e.to_string()))?;
    std::fs::write(&path, text + "\n")
        .map_err(|e| OciError::io(format!("write {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_like_tabwriter() {
        let rows = [
            ["ID".to_string(), "PID".into()],
            ["long-id".to_string(), "1".into()],
        ];
        assert_eq!(table(&rows), "ID        PID\nlong-id   1\n");
    }
}
