//! `hull-oci`: parses runc's command line, sets up logging and runs one command.
//! Exit status as runc's: 0, 1 for any error, or an `exec`/`run` process's own status.

use std::path::PathBuf;

use clap::Parser;
use hull_oci::cli::{Cli, Command};
use hull_oci::commands::{self, Context};
use hull_oci::isolation::Invocation;
use hull_oci::log::{self, Destination};
use hull_oci::state::{Store, DEFAULT_ROOT, OCI_VERSION};

/// runc's exit status for every failure.
const EXIT_ERROR: i32 = 1;

fn main() {
    let argv0 = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .unwrap_or_default();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { EXIT_ERROR } else { 0 };
            let _ = err.print();
            std::process::exit(code);
        }
    };
    if cli.version {
        println!("hull-oci version {}", env!("CARGO_PKG_VERSION"));
        println!(
            "commit: {}",
            option_env!("HULL_GIT_COMMIT").unwrap_or("unknown")
        );
        println!("spec: {OCI_VERSION}");
        return;
    }
    let Some(command) = cli.command else {
        eprintln!("hull-oci: no command given (see hull-oci --help)");
        std::process::exit(EXIT_ERROR);
    };
    // A VM keeper's stdio is the container's: it logs to its state directory only.
    let log_file = match &command {
        Command::VmKeeper(k) => Some(k.dir.join(hull_oci::models::vm::KEEPER_LOG)),
        _ => cli.log.clone(),
    };
    let destination = match log::init(log_file.as_deref(), cli.log_format, cli.debug) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("hull-oci: {e}");
            std::process::exit(EXIT_ERROR);
        }
    };
    let ctx = Context {
        store: Store::new(cli.root.unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))),
        invocation: Invocation::from_argv0(&argv0),
        systemd_cgroup: cli.systemd_cgroup,
        hull_config: hull_oci::isolation::config_path(),
        runners: Box::new(hull_oci::models::runner),
    };
    match commands::run(&ctx, command) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            // Callers read the error from the log file (containerd, podman) or from stderr.
            if destination == Destination::File {
                tracing::error!("{err}");
            }
            eprintln!("hull-oci: {err}");
            std::process::exit(EXIT_ERROR);
        }
    }
}
