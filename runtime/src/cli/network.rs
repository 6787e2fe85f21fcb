//! Network commands: `hull port` (docker's) and `hull network check` (CNI CHECK).

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use hull_runtime::container::lifecycle;
use hull_runtime::container::state::{ContainerStore, Status};
use hull_runtime::network::{self, Protocol};
use hull_runtime::paths::StatePaths;

/// `hull port`.
#[derive(Debug, Args)]
pub struct PortArgs {
    /// Container name or id.
    container: String,
    /// Only this container port: PORT or PORT/tcp, PORT/udp.
    private_port: Option<String>,
}

/// `hull network ...`.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Verify that a running container's network is intact (CNI CHECK of every plugin).
    Check(CheckArgs),
}

/// `hull network check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Container name or id.
    container: String,
}

fn parse_private(spec: &str) -> Result<(u16, Option<Protocol>)> {
    let (port, proto) = match spec.split_once('/') {
        Some((p, "tcp")) => (p, Some(Protocol::Tcp)),
        Some((p, "udp")) => (p, Some(Protocol::Udp)),
        Some(_) => bail!("invalid port {spec:?}: expected PORT[/tcp|/udp]"),
        None => (spec, None),
    };
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| anyhow!("invalid port {spec:?}: expected PORT[/tcp|/udp]"))?;
    Ok((port, proto))
}

/// `hull port CONTAINER [PORT[/PROTO]]`: `80/tcp -> 0.0.0.0:8080` per published port.
pub fn port(args: PortArgs, paths: &StatePaths) -> Result<i32> {
    let store = ContainerStore::new(paths);
    let id = store.resolve(&args.container)?;
    let state = lifecycle::load_fresh(&store, &id)?
        .ok_or_else(|| anyhow!("no such container: {}", args.container))?;
    let filter = args
        .private_port
        .as_deref()
        .map(parse_private)
        .transpose()?;
    let ports: Vec<_> = state
        .network
        .iter()
        .flat_map(|n| n.ports.iter())
        .filter(|p| match filter {
            None => true,
            Some((port, None)) => p.container_port == port,
            Some((port, Some(proto))) => p.container_port == port && p.protocol == proto,
        })
        .collect();
    if ports.is_empty() {
        if let Some(spec) = &args.private_port {
            bail!(
                "no public port {spec} published for {} (running: {})",
                args.container,
                state.status == Status::Running
            );
        }
    }
    for p in ports {
        if filter.is_some() {
            println!("{}:{}", p.host_ip, p.host_port);
        } else {
            println!(
                "{}/{} -> {}:{}",
                p.container_port,
                p.protocol.as_str(),
                p.host_ip,
                p.host_port
            );
        }
    }
    Ok(0)
}

/// Runs a `hull network` subcommand.
pub fn run(cmd: NetworkCommand, paths: &StatePaths) -> Result<i32> {
    match cmd {
        NetworkCommand::Check(args) => {
            let store = ContainerStore::new(paths);
            let id = store.resolve(&args.container)?;
            let state = lifecycle::load_fresh(&store, &id)?
                .ok_or_else(|| anyhow!("no such container: {}", args.container))?;
            if state.status != Status::Running {
                bail!("container {} is not running", args.container);
            }
            network::check(&id, &store.dir_of(&id))?;
            println!(
                "{}: network {} is intact",
                args.container, state.spec.network.mode
            );
            Ok(0)
        }
    }
}
