//! Requests on the agent's vsock port: `exec` of a further process (one connection each)
//! and signals for the container's main process.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hull_protocol::{self as protocol, Message, AGENT_PORT};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{session, spawn, vsock};

/// What exec requests need to know about the running container.
pub struct Container {
    /// PID of the main process (agent's namespace).
    pub main_pid: i32,
    /// Container root as the agent sees it.
    pub root: PathBuf,
    /// The container cgroup's `cgroup.procs`.
    pub cgroup_procs: OwnedFd,
}

/// Serves the agent port on a background thread.
pub fn start(container: Arc<Container>) -> Result<()> {
    let listener = vsock::Listener::bind(AGENT_PORT)?;
    std::thread::Builder::new()
        .name("agent-port".into())
        .spawn(move || loop {
            match listener.accept() {
                Ok(None) => {}
                Ok(Some(conn)) => {
                    let c = Arc::clone(&container);
                    let _ = std::thread::Builder::new()
                        .name("request".into())
                        .spawn(move || {
                            if let Err(e) = handle(conn, &c) {
                                super::log(&format!("request failed: {e:#}"));
                            }
                        });
                }
                Err(e) => {
                    super::log(&format!("accept: {e:#}"));
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })?;
    Ok(())
}

fn handle(mut conn: UnixStream, c: &Container) -> Result<()> {
    // The first frame must come promptly; afterwards the connection lives as long as the
    // process it started.
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let request = protocol::read_message(&mut conn).context("read request")?;
    conn.set_read_timeout(None)?;
    match request {
        Message::Exec(spec) => {
            let ns = spawn::Namespaces::Join {
                main_pid: c.main_pid,
            };
            match spawn::spawn(&spec, ns, &c.root, &c.cgroup_procs) {
                Ok(child) => {
                    protocol::write_message(&mut conn, &Message::Started { pid: child.pid })?;
                    session::relay(conn, child)?;
                }
                Err(e) => protocol::write_message(
                    &mut conn,
                    &Message::Error {
                        message: format!("{e:#}"),
                    },
                )?,
            }
        }
        Message::Signal { signal } => {
            let reply = match Signal::try_from(signal) {
                Ok(sig) => match kill(Pid::from_raw(c.main_pid), sig) {
                    Ok(()) => Message::Ok,
                    Err(e) => Message::Error {
                        message: format!("kill: {e}"),
                    },
                },
                Err(e) => Message::Error {
                    message: format!("signal {signal}: {e}"),
                },
            };
            protocol::write_message(&mut conn, &reply)?;
        }
        other => protocol::write_message(
            &mut conn,
            &Message::Error {
                message: format!("unexpected request {other:?}"),
            },
        )?,
    }
    Ok(())
}
