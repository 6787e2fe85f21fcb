//! Running CNI plugins as the CNI specification (1.0.0) says a runtime does: one plugin
//! binary per call, found in the configured plugin directories, its command and context in
//! `CNI_*` environment variables, its network configuration on stdin (with `prevResult` and
//! `runtimeConfig` filled in by the runtime), its result or error as JSON on stdout.
//!
//! The plugins are real, separate programs (Debian's containernetworking-plugins), so each
//! call is bounded: the output read is capped, and a plugin that does not finish within
//! [`PLUGIN_TIMEOUT`] is killed and reported.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The CNI specification version hull speaks.
pub const CNI_VERSION: &str = "1.0.0";
/// How long one plugin call may take (iptables under contention is the slow part).
pub const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest stdout/stderr kept from a plugin.
const MAX_OUTPUT: usize = 1 << 20;
/// PATH given to plugins: they run iptables, which lives in the sbin directories.
pub const PLUGIN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A CNI command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach the container to the network.
    Add,
    /// Verify an attachment made by ADD is still intact.
    Check,
    /// Undo ADD (succeeds when there is nothing left to undo).
    Del,
}

impl Command {
    /// The value of `CNI_COMMAND`.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Check => "CHECK",
            Command::Del => "DEL",
        }
    }
}

/// The runtime side of a call: which container, namespace and interface.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// `CNI_CONTAINERID`.
    pub container_id: &'a str,
    /// `CNI_NETNS`; `None` when the namespace is already gone (allowed for DEL only).
    pub netns: Option<&'a Path>,
    /// `CNI_IFNAME`.
    pub ifname: &'a str,
    /// `CNI_PATH`: plugin directories.
    pub plugin_dirs: &'a [PathBuf],
    /// `PATH` for the plugin instead of the standard one (see `attach::check`).
    pub exec_path: Option<&'a std::ffi::OsStr>,
}

/// A plugin call that failed.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The plugin binary is not in any plugin directory.
    #[error(
        "CNI plugin {plugin:?} not found in {dirs} (install Debian's containernetworking-plugins, \
         or set network.cni_path in the config file)"
    )]
    Missing {
        /// Plugin type.
        plugin: String,
        /// The directories searched.
        dirs: String,
    },
    /// The plugin reported an error (CNI error codes: 7 invalid config, 11 try again...).
    #[error("CNI plugin {plugin} {command}: {msg}{details} (code {code})")]
    Failed {
        /// Plugin type.
        plugin: String,
        /// Command.
        command: &'static str,
        /// CNI error code.
        code: u64,
        /// Its message.
        msg: String,
        /// `: details`, or empty.
        details: String,
    },
    /// The plugin did not finish in time and was killed.
    #[error("CNI plugin {plugin} {command} did not finish within {} s and was killed", PLUGIN_TIMEOUT.as_secs())]
    Timeout {
        /// Plugin type.
        plugin: String,
        /// Command.
        command: &'static str,
    },
    /// Running the plugin failed.
    #[error("CNI plugin {plugin} {command}: {what}: {source}")]
    Io {
        /// Plugin type.
        plugin: String,
        /// Command.
        command: &'static str,
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The plugin's output is not what the specification says.
    #[error("CNI plugin {plugin} {command}: {reason}")]
    Protocol {
        /// Plugin type.
        plugin: String,
        /// Command.
        command: &'static str,
        /// What was wrong.
        reason: String,
    },
}

/// Finds plugin `name` in `dirs` (the first directory holding it wins).
pub fn find(dirs: &[PathBuf], name: &str) -> Result<PathBuf, CniError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        for dir in dirs {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(CniError::Missing {
        plugin: name.to_string(),
        dirs: dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":"),
    })
}

/// Runs plugin `conf["type"]` with `command` and the network configuration `conf` (already
/// carrying `name`, `cniVersion` and, where due, `prevResult` and `runtimeConfig`).
/// Returns the plugin's result for ADD and `Value::Null` otherwise.
pub fn exec(ctx: &Context<'_>, command: Command, conf: &Value) -> Result<Value, CniError> {
    let plugin = conf
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let binary = find(ctx.plugin_dirs, &plugin)?;
    let cmd_name = command.as_str();
    let io_err = |what: &'static str| {
        let plugin = plugin.clone();
        move |source| CniError::Io {
            plugin,
            command: cmd_name,
            what,
            source,
        }
    };
    let stdin = serde_json::to_vec(conf).map_err(|e| io_err("encode config")(e.into()))?;
    let cni_path = std::env::join_paths(ctx.plugin_dirs)
        .map_err(|e| io_err("join CNI_PATH")(std::io::Error::other(e)))?;
    let mut proc = Process::new(&binary);
    proc.env_clear()
        .env("PATH", ctx.exec_path.unwrap_or(PLUGIN_PATH.as_ref()))
        .env("CNI_COMMAND", cmd_name)
        .env("CNI_CONTAINERID", ctx.container_id)
        .env(
            "CNI_NETNS",
            ctx.netns.map(Path::as_os_str).unwrap_or_default(),
        )
        .env("CNI_IFNAME", ctx.ifname)
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = proc.spawn().map_err(io_err("start"))?;
    let deadline = Instant::now() + PLUGIN_TIMEOUT;
    // Configurations are a few KiB, far below a pipe's buffer: writing cannot block on a
    // plugin that has not started reading yet.
    if let Some(mut input) = child.stdin.take() {
        if let Err(e) = input.write_all(&stdin) {
            // A plugin that exits before reading its config reports why on stdout.
            tracing::debug!("writing config to CNI plugin {plugin}: {e}");
        }
    }
    let (stdout, stderr, finished) = read_until(&mut child, deadline);
    if !finished {
        let _ = child.kill();
        let _ = child.wait();
        return Err(CniError::Timeout {
            plugin,
            command: cmd_name,
        });
    }
    let status = child.wait().map_err(io_err("wait"))?;
    tracing::debug!(
        "CNI {plugin} {cmd_name} for {}: {status}, stderr {:?}",
        ctx.container_id,
        String::from_utf8_lossy(&stderr)
    );
    if status.success() {
        if command != Command::Add {
            return Ok(Value::Null);
        }
        return serde_json::from_slice(&stdout).map_err(|e| CniError::Protocol {
            plugin,
            command: cmd_name,
            reason: format!("result is not JSON: {e}"),
        });
    }
    Err(plugin_error(plugin, cmd_name, &stdout, &stderr, status))
}

/// The error a failed plugin reported, from its stdout (CNI error JSON) or its stderr.
fn plugin_error(
    plugin: String,
    command: &'static str,
    stdout: &[u8],
    stderr: &[u8],
    status: std::process::ExitStatus,
) -> CniError {
    if let Ok(err) = serde_json::from_slice::<Value>(stdout) {
        if let Some(msg) = err.get("msg").and_then(Value::as_str) {
            let details = err
                .get("details")
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty() && *d != msg)
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            return CniError::Failed {
                plugin,
                command,
                code: err.get("code").and_then(Value::as_u64).unwrap_or(999),
                msg: msg.to_string(),
                details,
            };
        }
    }
    let text = String::from_utf8_lossy(if stderr.is_empty() { stdout } else { stderr });
    CniError::Protocol {
        plugin,
        command,
        reason: format!("exited with {status}: {}", text.trim()),
    }
}

/// Reads the child's stdout and stderr until both close or the deadline passes. Returns
/// what was read (each capped at [`MAX_OUTPUT`]) and whether both closed in time.
fn read_until(child: &mut std::process::Child, deadline: Instant) -> (Vec<u8>, Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut streams: [Option<Box<dyn ReadFd>>; 2] = [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn ReadFd>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn ReadFd>),
    ];
    let mut buf = [0u8; 16 * 1024];
    while streams.iter().any(Option::is_some) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (out, err, false);
        }
        let mut fds: Vec<libc::pollfd> = streams
            .iter()
            .map(|s| libc::pollfd {
                fd: s.as_ref().map_or(-1, |s| s.raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a valid array of pollfd of the given length (negative fds are
        // ignored by poll).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms.max(1)) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return (out, err, false);
        }
        for (i, pfd) in fds.iter().enumerate() {
            if pfd.revents == 0 {
                continue;
            }
            let Some(stream) = streams[i].as_mut() else {
                continue;
            };
            let sink = if i == 0 { &mut out } else { &mut err };
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => streams[i] = None,
                Ok(n) => {
                    let room = MAX_OUTPUT.saturating_sub(sink.len());
                    sink.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
    }
    (out, err, true)
}

/// A readable pipe with a descriptor to poll.
trait ReadFd: Read {
    fn raw_fd(&self) -> i32;
}

impl ReadFd for std::process::ChildStdout {
    fn raw_fd(&self) -> i32 {
        self.as_raw_fd()
    }
}

impl ReadFd for std::process::ChildStderr {
    fn raw_fd(&self) -> i32 {
        self.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn fake_plugin(dir: &Path, name: &str, script: &str) {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn ctx(dirs: &[PathBuf]) -> Context<'_> {
        Context {
            container_id: "c1",
            netns: Some(Path::new("/run/netns/x")),
            ifname: "eth0",
            plugin_dirs: dirs,
            exec_path: None,
        }
    }

    #[test]
    fn missing_plugins_name_the_directories() {
        let dirs = vec![
            PathBuf::from("/nonexistent/a"),
            PathBuf::from("/nonexistent/b"),
        ];
        let e = find(&dirs, "bridge").unwrap_err().to_string();
        assert!(
            e.contains("\"bridge\"") && e.contains("/nonexistent/a:/nonexistent/b"),
            "{e}"
        );
        assert!(
            find(&dirs, "../bin/sh").is_err(),
            "no path in a plugin type"
        );
    }

    // The tests below run small shell scripts standing in for plugins: they check the
    // calling convention (environment, stdin, stdout, errors), not networking.
    #[test]
    fn calling_convention_env_stdin_and_result() {
        let dir = tempfile::tempdir().unwrap();
        fake_plugin(
            dir.path(),
            "echoer",
            r#"read -r conf; printf '{"cmd":"%s","id":"%s","netns":"%s","if":"%s","conf":%s}' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$conf""#,
        );
        let dirs = vec![dir.path().to_path_buf()];
        let conf = serde_json::json!({"type": "echoer", "name": "n", "cniVersion": CNI_VERSION});
        let r = exec(&ctx(&dirs), Command::Add, &conf).unwrap();
        assert_eq!(r["cmd"], "ADD");
        assert_eq!(r["id"], "c1");
        assert_eq!(r["netns"], "/run/netns/x");
        assert_eq!(r["if"], "eth0");
        assert_eq!(r["conf"]["name"], "n");
        assert_eq!(exec(&ctx(&dirs), Command::Del, &conf).unwrap(), Value::Null);
    }

    #[test]
    fn plugin_errors_are_reported_with_their_message() {
        let dir = tempfile::tempdir().unwrap();
        fake_plugin(
            dir.path(),
            "failer",
            r#"echo '{"cniVersion":"1.0.0","code":11,"msg":"no IP addresses available","details":"range full"}'; exit 1"#,
        );
        fake_plugin(dir.path(), "crasher", "echo boom >&2; exit 2");
        let dirs = vec![dir.path().to_path_buf()];
        let e = exec(
            &ctx(&dirs),
            Command::Add,
            &serde_json::json!({"type": "failer"}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("no IP addresses available: range full (code 11)"),
            "{e}"
        );
        let e = exec(
            &ctx(&dirs),
            Command::Add,
            &serde_json::json!({"type": "crasher"}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("boom"), "{e}");
    }
}
