//! The lifecycle hooks the runtime command itself runs: `poststart` (after `start` has let
//! the user's process run) and `poststop` (at `delete`, once the container is gone). The
//! hooks that run inside the container's setup (`prestart`, `createRuntime`,
//! `createContainer`, `startContainer`) belong to the executor.
//!
//! As the runtime spec says: each hook gets the container's state JSON on stdin, runs with
//! exactly its `env` and `args` (args[0] as argv[0]), is killed after its `timeout`; a
//! failing poststart or poststop hook is logged as a warning and the lifecycle goes on.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use oci_spec::runtime::Hook;

use crate::error::{OciError, Result};
use crate::state::RuncState;

/// A hook with no timeout of its own may run this long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `hooks` in order with `state` on their stdin; the first failure is returned.
pub fn run_all(hooks: &[Hook], state: &RuncState, what: &str) -> Result<()> {
    let input = serde_json::to_vec(state).map_err(|e| OciError::Runtime(e.to_string()))?;
    for (i, hook) in hooks.iter().enumerate() {
        run_one(hook, &input).map_err(|e| {
            OciError::Runtime(format!("{what} hook {i} ({}): {e}", hook.path().display()))
        })?;
    }
    Ok(())
}

/// Runs hooks whose failure only warrants a warning (poststart, poststop).
pub fn run_warn(hooks: &[Hook], state: &RuncState, what: &str) {
    if let Err(e) = run_all(hooks, state, what) {
        tracing::warn!("{e}");
    }
}

fn run_one(hook: &Hook, input: &[u8]) -> std::result::Result<(), String> {
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args() {
        if let Some((first, rest)) = args.split_first() {
            cmd.arg0(first).args(rest);
        }
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is not an error.
        let _ = stdin.write_all(input);
    }
    let timeout = hook
        .timeout()
        .filter(|t| *t > 0)
        .map_or(DEFAULT_TIMEOUT, |t| Duration::from_secs(t as u64));
    if !exited_within(child.id() as i32, timeout) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("timed out after {} s", timeout.as_secs()));
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("exited with {status}"))
    }
}

/// Waits (poll on a pidfd) up to `timeout` for our child `pid` to exit.
fn exited_within(pid: i32, timeout: Duration) -> bool {
    // SAFETY: pidfd_open with a pid and no flags; returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return true; // already gone and reaped: wait() tells how it ended
    }
    // SAFETY: the kernel just returned this descriptor to us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r >= 0 {
            return r > 0;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: &str) -> Hook {
        serde_json::from_str(json).unwrap()
    }

    fn state() -> RuncState {
        RuncState {
            oci_version: "1.2.0".into(),
            id: "c1".into(),
            pid: 42,
            status: "running".into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: "T".into(),
            annotations: Default::default(),
            owner: String::new(),
        }
    }

    #[test]
    fn hooks_get_the_state_on_stdin_their_env_and_argv0() {
        let dir = tempfile::tempdir().unwrap();
        let (stdin_copy, argv_env) = (dir.path().join("stdin"), dir.path().join("argv"));
        let h = hook(&format!(
            r#"{{"path":"/bin/sh","args":["my-hook","-c","cat > {s}; echo \"$0 $X\" > {a}"],"env":["X=1"]}}"#,
            s = stdin_copy.display(),
            a = argv_env.display()
        ));
        run_all(&[h], &state(), "poststart").unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&stdin_copy).unwrap()).unwrap();
        assert_eq!(v["id"], "c1");
        assert_eq!(v["status"], "running");
        assert_eq!(std::fs::read_to_string(&argv_env).unwrap(), "my-hook 1\n");
    }

    #[test]
    fn failures_and_timeouts_are_named() {
        let fail = hook(r#"{"path":"/bin/sh","args":["sh","-c","exit 3"]}"#);
        let err = run_all(&[fail], &state(), "poststop")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("poststop hook 0") && err.contains("3"),
            "{err}"
        );
        let slow = hook(r#"{"path":"/bin/sh","args":["sh","-c","sleep 30"],"timeout":1}"#);
        let started = std::time::Instant::now();
        let err = run_all(&[slow], &state(), "poststart")
            .unwrap_err()
            .to_string();
        assert!(err.contains("timed out after 1 s"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let missing = hook(r#"{"path":"/no/such/hook"}"#);
        assert!(run_all(&[missing], &state(), "poststart").is_err());
    }
}
