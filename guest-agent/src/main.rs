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
use hull_protocol::{self as protocol, Message, HOST_HELLO_PORT, PROTOCOL_VERSION};

use agent::{cgroup, mounts, network, reaper, server, session, spawn, vsock};

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

fn run() -> Result<()> {
    mounts::mount_basics().context("mount guest filesystems")?;
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
    let spec = match protocol::read_message(&mut conn).context("wait for the container spec")? {
        Message::Start(spec) => spec,
        other => bail!("expected start, host sent {other:?}"),
    };
    conn.set_read_timeout(None)?;

    let started = (|| -> Result<_> {
        let root = mounts::mount_container_root(spec.readonly_rootfs)
            .context("mount the container root")?;
        let net = spec.network.as_deref();
        let interface = net.and_then(|n| n.interface.as_ref());
        if let Some(iface) = interface {
            network::configure(iface).context("configure eth0")?;
        }
        if let Some(n) = net {
            network::install_files(&root, &n.files).context("the container's /etc files")?;
        }
        let cg = cgroup::Cgroup::create(&spec.limits).context("set up the container cgroup")?;
        let procs = cg.procs_fd()?;
        let ns = spawn::Namespaces::Create {
            root: root.to_string_lossy().into_owned(),
            hostname: spec.hostname.clone(),
            // With an interface the container shares the guest's namespace (eth0 is
            // its); without, it gets one of its own with loopback only.
            new_network: interface.is_none(),
        };
        let child = spawn::spawn(&spec.process, ns, &root, &procs)?;
        Ok((root, cg, procs, child))
    })();
    let (root, cg, procs, child) = match started {
        Ok(s) => s,
        Err(e) => {
            protocol::write_message(
                &mut conn,
                &Message::Error {
                    message: format!("{e:#}"),
                },
            )?;
            return Err(e);
        }
    };
    protocol::write_message(&mut conn, &Message::Started { pid: child.pid })?;
    server::start(Arc::new(server::Container {
        main_pid: child.pid,
        root,
        cgroup_procs: procs,
    }))?;
    let code = session::relay(conn, child)?;
    agent::debug(&format!("container exited with {code}"));
    cg.kill_all();
    Ok(())
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
