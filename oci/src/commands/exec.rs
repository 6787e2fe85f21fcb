//! `exec`: another process in a running container, from `--process FILE` or from the
//! command line applied to the container's own process (what runc does).

use std::io::Read;
use std::path::Path;

use oci_spec::runtime::{Process, Spec};

use super::{Context, MAX_JSON, SPEC_COPY};
use crate::bundle;
use crate::cli::ExecArgs;
use crate::error::{OciError, Result};
use crate::pidfile;
use crate::runner::ExecRequest;
use crate::state::{Locked, Status};

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
pub fn load_recorded_spec(dir: &Locked) -> Result<Spec> {
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
pub(super) fn save_spec(dir: &Locked, spec: &Spec) -> Result<()> {
    let path = dir.file(SPEC_COPY);
    let bytes = serde_json::to_vec(spec).map_err(|e| OciError::Runtime(e.to_string()))?;
    std::fs::write(&path, bytes).map_err(|e| OciError::io(format!("write {}", path.display()), e))
}

/// Reads a JSON input: a file, or stdin for `-`.
pub(super) fn read_json_input(path: &Path) -> Result<Vec<u8>> {
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
