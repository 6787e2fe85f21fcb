//! The command line, as runc's callers write it (containerd's go-runc, podman's conmon,
//! CRI-O, runtime-tools): global options before the command, `--flag value` or
//! `--flag=value`, runc's short flags, and for `exec` everything after the container id
//! is the command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::log::LogFormat;

/// hull's OCI runtime: runs OCI bundles as namespaced processes or KVM microVMs
/// (annotation `io.hull.isolation=process|vm`), with runc's command line.
#[derive(Debug, Parser)]
#[command(
    name = "hull-oci",
    disable_version_flag = true,
    args_override_self = true
)]
pub struct Cli {
    /// Directory for container state (tmpfs recommended).
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Log file (default: stderr).
    #[arg(long, global = true, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Log format: text or json (one object per line: level, msg, time).
    #[arg(
        long = "log-format",
        global = true,
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,

    /// Log debug messages too.
    #[arg(long, global = true)]
    pub debug: bool,

    /// systemd's cgroup driver (cgroupsPath "slice:prefix:name"): refused with the reason,
    /// hull-oci creates cgroups itself (cgroupfs driver).
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,

    /// Accepted for runc compatibility (hull-oci runs as root): true, false or auto.
    #[arg(long, global = true, value_name = "VALUE", num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,

    /// Print the version (runc's three-line format).
    #[arg(short = 'v', long)]
    pub version: bool,

    /// The command.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The commands runc offers that hull-oci implements.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container from a bundle; its process waits for `start`.
    Create(CreateArgs),
    /// Start the user's process of a created container.
    Start(IdArg),
    /// Create and start a container; without --detach, wait for it and delete it.
    Run(RunArgs),
    /// Print a container's state as JSON.
    State(IdArg),
    /// Send a signal (default SIGTERM) to a container's init process, or all its processes.
    Kill(KillArgs),
    /// Delete a container and everything it holds.
    Delete(DeleteArgs),
    /// Run a new process in a running container.
    Exec(ExecArgs),
    /// List the processes of a container.
    Ps(PsArgs),
    /// Freeze every process of a container (vm: stop the VM's vCPUs).
    Pause(IdArg),
    /// Thaw a paused container.
    Resume(IdArg),
    /// Change a container's resource limits (linux.resources JSON).
    Update(UpdateArgs),
    /// List the containers under --root.
    List(ListArgs),
    /// Print the features this runtime implements (OCI features JSON).
    Features,
    /// Write a default config.json for a bundle.
    Spec(SpecArgs),
    /// (internal) The host process of a VM container or of one exec in it.
    #[command(name = "vm-keeper", hide = true)]
    VmKeeper(KeeperArgs),
}

/// `vm-keeper` (started by hull-oci itself).
#[derive(Debug, Args)]
pub struct KeeperArgs {
    /// The container's state directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// The process to exec (agent JSON), instead of the container's own.
    #[arg(long)]
    pub exec: Option<PathBuf>,
}

/// A container id.
#[derive(Debug, Args)]
pub struct IdArg {
    /// The container id.
    pub id: String,
}

/// `create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The bundle directory (holds config.json).
    #[arg(short = 'b', long, default_value = ".", value_name = "DIR")]
    pub bundle: PathBuf,
    /// Unix socket to which the pty master is sent (process.terminal = true).
    #[arg(long = "console-socket", value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Where to write the pid of the container's process.
    #[arg(long = "pid-file", value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Accepted for runc compatibility; hull always uses pivot_root where it can.
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not create a new session keyring for the container.
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass this many extra descriptors (from fd 3 on) to the container's process.
    #[arg(long = "preserve-fds", default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
    /// The container id.
    pub id: String,
}

/// `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Everything `create` takes.
    #[command(flatten)]
    pub create: CreateArgs,
    /// Return once the container runs instead of waiting for it.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep the container after it exits (no delete).
    #[arg(long)]
    pub keep: bool,
}

/// `kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal every process of the container, not only its init.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// The container id.
    pub id: String,
    /// Signal name (TERM, SIGTERM) or number.
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

/// `delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Kill the container first if it still runs.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// The container id.
    pub id: String,
}

/// `exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// process.json (runtime-spec Process) describing the new process.
    #[arg(short = 'p', long, value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// Return once the process runs instead of waiting for it.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Where to write the pid of the new process.
    #[arg(long = "pid-file", value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket to which the pty master is sent (with --tty).
    #[arg(long = "console-socket", value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Give the process a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Working directory inside the container.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// Set an environment variable (KEY=VALUE), repeatable.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// UID[:GID] to run as.
    #[arg(short = 'u', long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Extra group ids, repeatable.
    #[arg(short = 'g', long = "additional-gids", value_name = "GID")]
    pub additional_gids: Vec<u32>,
    /// Add a capability to the process's sets, repeatable.
    #[arg(short = 'c', long = "cap", value_name = "CAP")]
    pub caps: Vec<String>,
    /// Set no_new_privs for the process.
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// Pass this many extra descriptors (from fd 3 on) to the process.
    #[arg(long = "preserve-fds", default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
    /// AppArmor profile (refused: AppArmor is not supported).
    #[arg(long, value_name = "PROFILE")]
    pub apparmor: Option<String>,
    /// SELinux label (refused: SELinux is not supported).
    #[arg(long = "process-label", value_name = "LABEL")]
    pub process_label: Option<String>,
    /// Exec even into a paused container.
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
    /// The container id.
    pub id: String,
    /// The command and its arguments (when there is no --process).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

/// `ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// table (ps -ef of the container's processes) or json (their host pids).
    #[arg(short = 'f', long, default_value = "table", value_name = "FORMAT")]
    pub format: String,
    /// The container id.
    pub id: String,
    /// Options for ps(1) in table format (default -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

/// `update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// linux.resources JSON, from FILE or `-` for stdin.
    #[arg(short = 'r', long, value_name = "FILE")]
    pub resources: Option<PathBuf>,
    /// Memory limit in bytes.
    #[arg(long, value_name = "BYTES")]
    pub memory: Option<i64>,
    /// Memory plus swap limit in bytes.
    #[arg(long = "memory-swap", value_name = "BYTES")]
    pub memory_swap: Option<i64>,
    /// CPU shares (relative weight).
    #[arg(long = "cpu-shares", value_name = "N")]
    pub cpu_shares: Option<u64>,
    /// CPU CFS quota in microseconds per period.
    #[arg(long = "cpu-quota", value_name = "US")]
    pub cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds.
    #[arg(long = "cpu-period", value_name = "US")]
    pub cpu_period: Option<u64>,
    /// CPUs allowed (e.g. 0-1).
    #[arg(long = "cpuset-cpus", value_name = "LIST")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes allowed.
    #[arg(long = "cpuset-mems", value_name = "LIST")]
    pub cpuset_mems: Option<String>,
    /// Maximum number of tasks.
    #[arg(long = "pids-limit", value_name = "N")]
    pub pids_limit: Option<i64>,
    /// The container id.
    pub id: String,
}

/// `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// table or json.
    #[arg(short = 'f', long, default_value = "table", value_name = "FORMAT")]
    pub format: String,
    /// Print only the ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `spec`.
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Where to write config.json.
    #[arg(short = 'b', long, default_value = ".", value_name = "DIR")]
    pub bundle: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("hull-oci").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn containerd_create_and_globals() {
        // What containerd's runc shim runs.
        let cli = parse(&[
            "--root",
            "/run/containerd/runc/default",
            "--log",
            "/run/x/log.json",
            "--log-format",
            "json",
            "--systemd-cgroup",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/b/init.pid",
            "--console-socket",
            "/tmp/pty.sock",
            "c1",
        ]);
        assert_eq!(cli.log_format, LogFormat::Json);
        assert!(cli.systemd_cgroup);
        let Some(Command::Create(c)) = cli.command else {
            panic!()
        };
        assert_eq!(c.bundle, PathBuf::from("/b"));
        assert_eq!(c.id, "c1");
        assert_eq!(c.console_socket, Some(PathBuf::from("/tmp/pty.sock")));
    }

    #[test]
    fn conmon_create_with_equals_and_flags() {
        let cli = parse(&[
            "--root=/run/hull-oci",
            "--log-format=json",
            "--log=/x/oci-log",
            "create",
            "--bundle=/b",
            "--pid-file=/p",
            "--no-pivot",
            "--no-new-keyring",
            "--preserve-fds=2",
            "id",
        ]);
        let Some(Command::Create(c)) = cli.command else {
            panic!()
        };
        assert!(c.no_pivot && c.no_new_keyring);
        assert_eq!(c.preserve_fds, 2);
    }

    #[test]
    fn exec_takes_everything_after_the_id_as_the_command() {
        let cli = parse(&["exec", "-t", "-e", "A=1", "c1", "ls", "-la", "--color"]);
        let Some(Command::Exec(e)) = cli.command else {
            panic!()
        };
        assert!(e.tty);
        assert_eq!(e.env, vec!["A=1"]);
        assert_eq!(e.id, "c1");
        assert_eq!(e.command, vec!["ls", "-la", "--color"]);
        let cli = parse(&[
            "exec",
            "--process",
            "/p.json",
            "--detach",
            "--pid-file",
            "/x",
            "c1",
        ]);
        let Some(Command::Exec(e)) = cli.command else {
            panic!()
        };
        assert!(e.detach && e.command.is_empty());
    }

    #[test]
    fn kill_delete_ps_list_forms() {
        let Some(Command::Kill(k)) = parse(&["kill", "--all", "c1", "9"]).command else {
            panic!()
        };
        assert!(k.all);
        assert_eq!(k.signal, "9");
        let Some(Command::Kill(k)) = parse(&["kill", "c1"]).command else {
            panic!()
        };
        assert_eq!(k.signal, "SIGTERM");
        let Some(Command::Delete(d)) = parse(&["delete", "-f", "c1"]).command else {
            panic!()
        };
        assert!(d.force);
        let Some(Command::Ps(p)) = parse(&["ps", "--format", "json", "c1"]).command else {
            panic!()
        };
        assert_eq!(p.format, "json");
        let Some(Command::List(l)) = parse(&["list", "-q"]).command else {
            panic!()
        };
        assert!(l.quiet);
        assert!(parse(&["--version"]).version);
        assert!(parse(&["--rootless=false", "list"]).rootless.is_some());
    }

    #[test]
    fn bad_usage_is_refused() {
        for args in [
            &["create"][..],
            &["--log-format", "xml", "list"],
            &["create", "--preserve-fds", "x", "c"],
            &["frobnicate"],
        ] {
            assert!(
                Cli::try_parse_from(std::iter::once("hull-oci").chain(args.iter().copied()))
                    .is_err(),
                "{args:?}"
            );
        }
    }
}
