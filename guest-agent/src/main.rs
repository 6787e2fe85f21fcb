//! `hull-agent`: PID 1 of a hull microVM.
//!
//! Boot: mount the guest's filesystems, say hello to the host over vsock, receive the
//! container spec, assemble the container root from the image disk, start the container's
//! main process and relay it; serve exec/signal requests meanwhile. When the main process
//! ends, report its status and reboot, which (with `reboot=k`) ends the VMM.

mod agent;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hull_executor::{Error, ErrorKind, Stage};
use hull_protocol::{self as protocol, Message, WireError, HOST_HELLO_PORT, PROTOCOL_VERSION};

use agent::container::Running;
use agent::{mounts, network, reaper, server, session, vsock};

/// How long the host has to send the container spec after the hello.
const START_TIMEOUT: Duration = Duration::from_secs(60);

fn main() {
    if std::process::id() != 1 {
        eprintln!("hull-agent: must run as PID 1 inside a hull microVM");
        std::process::exit(2);
    }
    if let Err(e) = run() {
        agent::log(&format!("{e:#}"));
    }
    power_off();
}

/// One of the agent's own steps (the guest's disks, eth0) as a setup failure.
fn agent_step(stage: Stage, what: &str) -> impl FnOnce(anyhow::Error) -> Error + '_ {
    move |e| Error::new(ErrorKind::System, stage, format!("{what}: {e:#}"))
}

fn run() -> Result<()> {
    mounts::leave_initramfs().context("leave the initramfs")?;
    mounts::mount_basics().context("mount guest filesystems")?;
    // Processes the agent starts in a container begin as copies of it: no one in there may
    // ptrace or read them before they exec.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    reaper::start();
    let mut conn =
        vsock::connect_host(HOST_HELLO_PORT, Duration::from_secs(10)).context("say hello")?;
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    protocol::write_message(
        &mut conn,
        &Message::Hello {
            protocol: PROTOCOL_VERSION,
            kernel,
        },
    )?;
    conn.set_read_timeout(Some(START_TIMEOUT))?;
    let req = match protocol::read_request(&mut conn).context("wait for the container spec")? {
        Message::Start(req) => req,
        other => bail!("expected start, host sent {}", message_type(&other)),
    };
    conn.set_read_timeout(None)?;

    let started = (|| -> Result<_, Error> {
        let readonly = req
            .spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false);
        let root = mounts::mount_container_root(readonly)
            .map_err(agent_step(Stage::Rootfs, "mount the container root"))?;
        let net = req.network.as_deref();
        let interface = net.and_then(|n| n.interface.as_ref());
        if let Some(iface) = interface {
            network::configure(iface).map_err(agent_step(Stage::Network, "configure eth0"))?;
        }
        if let Some(n) = net {
            network::install_files(&root, &n.files)
                .map_err(agent_step(Stage::Network, "the container's /etc files"))?;
        }
        Running::start(&req, &root, interface.is_some())
    })();
    let (container, child) = match started {
        Ok(s) => s,
        Err(e) => {
            protocol::write_message(&mut conn, &Message::Error(WireError::from(&e)))?;
            return Err(e.into());
        }
    };
    protocol::write_message(&mut conn, &Message::Started { pid: child.pid })?;
    let container = Arc::new(container);
    server::start(Arc::clone(&container))?;
    let code = session::relay(conn, child)?;
    agent::debug(&format!("container exited with {code}"));
    container.kill_all();
    Ok(())
}

/// A message's type for a log line (never its contents: they come from outside).
fn message_type(m: &Message) -> &'static str {
    match m {
        Message::Hello { .. } => "hello",
        Message::Start(_) => "start",
        Message::Exec(_) => "exec",
        Message::Signal { .. } => "signal",
        Message::Resize { .. } => "resize",
        Message::Started { .. } => "started",
        Message::Exit { .. } => "exit",
        Message::Error(_) => "error",
        Message::Ok => "ok",
    }
}

/// Ends the VM: reboot with `reboot=k` makes the VMM exit.
fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    // Still here (no permission?): PID 1 must not exit, that panics the kernel.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
