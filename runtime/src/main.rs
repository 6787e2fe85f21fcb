//! `hull`: the command-line interface.
//!
//! Each group of subcommands lives in its own module under `cli/`; this file only parses
//! the global options and dispatches.

mod cli;

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use hull_runtime::paths::StatePaths;
use hull_runtime::sanitize;

/// One container runtime, two isolation models: a namespaced process on the host kernel
/// (`--isolation=process`) or a KVM microVM with its own kernel (`--isolation=vm`).
#[derive(Debug, Parser)]
#[command(name = "hull", version, about, propagate_version = true)]
struct Cli {
    /// State directory (images, layers); runtime state goes to ROOT/run.
    /// Defaults to /var/lib/hull and /run/hull.
    #[arg(long, env = "HULL_ROOT", global = true)]
    root: Option<PathBuf>,

    /// Log filter, e.g. `info`, `debug`, `hull_runtime=trace`.
    #[arg(long, env = "HULL_LOG", default_value = "warn", global = true)]
    log_level: String,

    #[command(subcommand)]
    command: cli::Command,
}

/// Exit status for hull's own failures (bad flags included), as docker and podman use.
const EXIT_HULL_ERROR: i32 = 125;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // --help and --version are not errors; a bad flag is hull's error, like docker's.
            let code = if err.use_stderr() { EXIT_HULL_ERROR } else { 0 };
            let _ = err.print();
            std::process::exit(code);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log_level))
        .with_writer(hull_runtime::logcap::stderr)
        .init();
    let paths = StatePaths::new(cli.root.as_deref());
    if let Err(e) = paths.narrow_existing() {
        tracing::warn!("cannot make the state directories private: {e}");
    }
    match run(cli.command, &paths) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            let text = format!("{err:#}");
            eprintln!("hull: error: {}", sanitize::for_terminal(&text));
            std::process::exit(EXIT_HULL_ERROR);
        }
    }
}

/// Runs one command; returns the process exit code (a container's own status for `run`).
fn run(command: cli::Command, paths: &StatePaths) -> Result<i32> {
    cli::dispatch(command, paths)
}
