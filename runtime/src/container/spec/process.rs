//! The spec's `process`: argv, environment, working directory, user and privileges.

use std::path::{Path, PathBuf};

use hull_executor::defaults;
use hull_executor::user::{self, ResolvedUser, MAX_ACCOUNT_FILE};
use oci_spec::runtime::{Process, UserBuilder};

use super::{bad, expand_env, layers, merge_env, parse, ImageFacts, RunOptions, SpecError};

fn argv(image: &ImageFacts, opts: &RunOptions) -> Result<Vec<String>, SpecError> {
    let entrypoint: Vec<String> = match &opts.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => image.entrypoint.clone(),
    };
    let cmd: Vec<String> = if !opts.command.is_empty() {
        opts.command.clone()
    } else if opts.entrypoint.is_some() {
        Vec::new()
    } else {
        image.cmd.clone()
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(bad(
            "no command specified and the image has no Entrypoint or Cmd",
        ));
    }
    Ok(args)
}

/// Resolves `spec` against the image's /etc/passwd and /etc/group (as the container will
/// see them: the union of its layers).
pub fn resolve_user(spec: &str, layers: &[PathBuf]) -> Result<ResolvedUser, SpecError> {
    let read = |p: &str| layers::read(layers, Path::new(p), MAX_ACCOUNT_FILE).unwrap_or_default();
    user::resolve(spec, &read("/etc/passwd"), &read("/etc/group")).map_err(|e| bad(e.to_string()))
}

/// The environment, docker's way (see the module doc of `spec`).
fn environment(
    image: &ImageFacts,
    opts: &RunOptions,
    hostname: &str,
    home: &str,
) -> Result<Vec<String>, SpecError> {
    let mut env = Vec::new();
    if !image.env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={}", defaults::DEFAULT_PATH));
    }
    env.push(format!("HOSTNAME={hostname}"));
    if opts.tty {
        env.push("TERM=xterm".into());
    }
    for e in &image.env {
        merge_env(&mut env, e.clone());
    }
    for file in &opts.env_files {
        for line in parse::read_env_file(file)? {
            merge_env(&mut env, line);
        }
    }
    for e in &opts.env {
        merge_env(&mut env, expand_env(e)?);
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={home}"));
    }
    Ok(env)
}

pub use hull_executor::user::capabilities;

/// Longest working directory (PATH_MAX).
pub const MAX_PATH: usize = 4096;
/// Longest `--user` / image User.
pub const MAX_USER: usize = 256;

/// The spec's process for `image` run with `opts`.
pub fn build(image: &ImageFacts, opts: &RunOptions, hostname: &str) -> Result<Process, SpecError> {
    let args = argv(image, opts)?;
    let cwd = opts
        .workdir
        .clone()
        .or_else(|| Some(image.working_dir.clone()).filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    if cwd.len() > MAX_PATH || cwd.contains('\0') {
        return Err(bad(format!(
            "working directory: at most {MAX_PATH} bytes, no NUL byte"
        )));
    }
    if !cwd.starts_with('/') {
        return Err(bad(format!(
            "working directory {cwd:?} must be an absolute path"
        )));
    }
    let user_spec = opts.user.clone().unwrap_or_else(|| image.user.clone());
    if user_spec.len() > MAX_USER || user_spec.contains('\0') {
        return Err(bad(format!("user: at most {MAX_USER} bytes, no NUL byte")));
    }
    hull_executor::user::check_spec(&user_spec).map_err(|e| bad(e.to_string()))?;
    let who = resolve_user(&user_spec, &image.layers)?;
    if who.uid == u32::MAX || who.gid == u32::MAX {
        return Err(bad(format!(
            "user {user_spec:?}: id 4294967295 is reserved (it means \"no change\" to the kernel)"
        )));
    }
    let env = environment(image, opts, hostname, who.home_or_root())?;
    // Bounded here, at create time, with the limit named: the record of the container
    // (config.json) and the guest's start message carry all of it, and an image's config
    // may hold megabytes of Env.
    hull_protocol::check_command(&args, &env).map_err(bad)?;
    let groups: Vec<u32> = who.setgroups_list().into_iter().skip(1).collect();
    let mut p = Process::default();
    p.set_terminal(Some(opts.tty))
        .set_console_size(None)
        .set_args(Some(args))
        .set_env(Some(env))
        .set_cwd(PathBuf::from(cwd))
        .set_user(
            UserBuilder::default()
                .uid(who.uid)
                .gid(who.gid)
                .additional_gids(groups)
                .build()
                .map_err(|e| bad(e.to_string()))?,
        )
        .set_capabilities(Some(capabilities(
            &super::privileges::bounding(opts)?,
            who.uid,
        )))
        .set_rlimits(None)
        .set_no_new_privileges(Some(true))
        .set_apparmor_profile(None)
        .set_oom_score_adj(None);
    Ok(p)
}
