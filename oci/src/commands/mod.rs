//! The commands: ids, records, locks, statuses and runc's rules about which command is
//! allowed in which state. The isolation models do the rest ([`Runner`]).

mod exec;
mod info;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::bundle;
use crate::cli::{Command, CreateArgs, DeleteArgs, KillArgs, RunArgs};
use crate::error::{OciError, Result};
use crate::features;
use crate::hooks;
use crate::isolation::{self, HullConfig, Invocation};
use crate::pidfile;
use crate::procref::ProcRef;
use crate::runner::{CreateRequest, Runner};
use crate::signal;
use crate::state::{self, Model, Phase, Record, Status, Store};
use crate::systemd;

pub use exec::exec;
pub use exec::load_recorded_spec as recorded_spec;
pub use info::{list, pause, ps, update};

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
    /// hull's configuration file (isolation policy), see `isolation::config_path`.
    pub hull_config: PathBuf,
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
        Command::Spec(args) => info::spec(&args).map(|_| 0),
        Command::VmKeeper(a) => Ok(crate::models::vm_keeper::run(&a.dir, a.exec.as_deref())),
    }
}

pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<()> {
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
    let config = HullConfig::load(&ctx.hull_config)?;
    let model = isolation::choose(&annotations, ctx.invocation, &config)?;
    if ctx.systemd_cgroup {
        let path = bundle
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone());
        systemd::check(
            path.as_deref().and_then(|p| p.to_str()),
            Path::new("/run/systemd/system"),
        )?;
    }
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

    let hooks = bundle.spec.hooks().clone().unwrap_or_default();
    let in_container =
        |l: &Option<Vec<oci_spec::runtime::Hook>>| l.as_ref().is_some_and(|l| !l.is_empty());
    if in_container(hooks.create_container()) || in_container(hooks.start_container()) {
        return Err(OciError::Unsupported(
            "createContainer and startContainer hooks (they run inside the container's \
             namespaces); prestart, createRuntime, poststart and poststop are run"
                .into(),
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
        exec::save_spec(&dir, &bundle.spec)?;
        let init = runner.create(&CreateRequest {
            dir: &dir,
            bundle: &bundle,
            console_socket,
            preserve_fds: args.preserve_fds,
            no_new_keyring: args.no_new_keyring,
            systemd_cgroup: ctx.systemd_cgroup,
            hull_config: &ctx.hull_config,
        })?;
        record.init = Some(init);
        record.phase = Phase::Created;
        record.creator = None;
        dir.write(&record)?;
        // The setup hooks run in the runtime's namespaces once the container exists (its
        // process waits at the start gate); a failing one fails the create.
        for (list, what) in [
            (hooks.prestart(), "prestart"),
            (hooks.create_runtime(), "createRuntime"),
        ] {
            if let Some(list) = list {
                hooks::run_all(list, &record.runc_state(), what)?;
            }
        }
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
    dir.write(&record)?;
    if let Some(hooks) = recorded_hooks(&dir).and_then(|h| h.poststart().clone()) {
        // The state as of the start: running, with the init's pid, even if a short-lived
        // process has already ended by the time the hook reads it.
        let mut running = record.runc_state();
        running.status = Status::Running.as_str().to_string();
        running.pid = record.init.map_or(0, |p| p.pid);
        hooks::run_warn(&hooks, &running, "poststart");
    }
    Ok(())
}

/// The hooks of the spec as created (none when it cannot be read back).
fn recorded_hooks(dir: &state::Locked) -> Option<oci_spec::runtime::Hooks> {
    exec::load_recorded_spec(dir).ok()?.hooks().clone()
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
    let code = crate::procref::wait_child(init.pid);
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
        // As runc: `kill --all` of a stopped container signals whatever is left in its
        // cgroup and succeeds (containerd's shim sends it after every task exit).
        Status::Stopped if args.all => {
            if let Err(e) = ctx
                .runner(record.model)?
                .signal(&dir, &record, signal, true)
            {
                tracing::debug!("kill --all of a stopped container: {e}");
            }
            return Ok(());
        }
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
    if let Some(hooks) = recorded_hooks(&dir).and_then(|h| h.poststop().clone()) {
        let mut stopped = record.runc_state();
        stopped.status = Status::Stopped.as_str().to_string();
        hooks::run_warn(&hooks, &stopped, "poststop");
    }
    dir.remove()?;
    tracing::info!(id = %args.id, "deleted");
    Ok(())
}
