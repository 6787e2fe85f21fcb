//! Requests on the agent's vsock port: `exec` of a further process (one connection each)
//! and signals for the container's main process.

use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hull_executor::{Error, ErrorKind, Stage};
use hull_protocol::{self as protocol, Message, WireError, AGENT_PORT};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::container::Running;
use super::{session, vsock};

fn failure(e: &Error) -> Message {
    Message::Error(WireError::from(e))
}

/// Serves the agent port on a background thread.
pub fn start(container: Arc<Running>) -> Result<()> {
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

fn handle(mut conn: UnixStream, c: &Running) -> Result<()> {
    // The first frame must come promptly; afterwards the connection lives as long as the
    // process it started.
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let request = protocol::read_request(&mut conn).context("read request")?;
    conn.set_read_timeout(None)?;
    match request {
        Message::Exec(req) => match c.exec(&req) {
            Ok(child) => {
                protocol::write_message(&mut conn, &Message::Started { pid: child.pid })?;
                session::relay(conn, child)?;
            }
            Err(e) => protocol::write_message(&mut conn, &failure(&e))?,
        },
        Message::Signal { signal } => {
            let sent = Signal::try_from(signal)
                .and_then(|sig| kill(Pid::from_raw(c.main_pid), sig))
                .map_err(|e| Error {
                    kind: ErrorKind::System,
                    stage: Stage::Channel,
                    errno: Some(e as i32),
                    detail: format!("signal {signal} to the container's main process"),
                });
            let reply = match sent {
                Ok(()) => Message::Ok,
                Err(e) => failure(&e),
            };
            protocol::write_message(&mut conn, &reply)?;
        }
        _ => {
            let e = Error::new(
                ErrorKind::Protocol,
                Stage::Channel,
                "the agent port takes exec and signal requests only",
            );
            protocol::write_message(&mut conn, &failure(&e))?;
        }
    }
    Ok(())
}
