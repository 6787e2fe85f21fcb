//! The subjects of a bench: hull under each isolation model and the peers, behind one
//! [`Runner`] interface.

mod hull;
mod oci;
mod qemu;
mod qemu_guest;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::measure::{LiveChild, Timed};
use super::{BenchConfig, BenchError, Peer};
use crate::isolation::IsolationKind;
use crate::paths::StatePaths;

/// A container started for the density phase, talking over its stdin/stdout.
#[derive(Debug)]
pub struct LiveContainer {
    /// The runtime process (foreground `run`), whose stdio is the container's.
    pub child: LiveChild,
    /// The id or name the runtime knows it by.
    pub id: String,
}

/// One subject of the bench.
pub trait Runner {
    /// Name in reports (`hull-process`, `crun`, ...).
    fn name(&self) -> &'static str;
    /// Which isolation model it provides.
    fn isolation(&self) -> IsolationKind;
    /// Version string of the runtime, when it can tell.
    fn version(&self) -> Option<String>;
    /// Gets ready to run (finds binaries, builds bundles). `Err` says why this subject is
    /// not available on this host.
    fn prepare(&mut self) -> Result<(), String>;
    /// One foreground `run --rm` of `argv`, timed.
    fn run_once(&mut self, argv: &[String], timeout: Duration) -> Result<Timed, BenchError>;
    /// Starts container number `index` running `argv` in the foreground with piped stdio.
    fn spawn_live(&mut self, index: usize, argv: &[String]) -> Result<LiveContainer, BenchError>;
    /// Every host process that belongs to a live container (runtime, shim, VMM, workload).
    fn members(&self, live: &LiveContainer) -> BTreeSet<u32>;
    /// For a VM: guest RAM actually touched, in KiB.
    fn guest_touched_kib(&self, _live: &LiveContainer) -> Option<u64> {
        None
    }
    /// How this subject was run differently from the defaults, if at all.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
    /// Ends a live container's input (its script's `read` then sees end of input).
    fn end_input(&mut self, live: &mut LiveContainer) {
        live.child.close_stdin();
    }
    /// Called once a live container's runtime exited; removes whatever it left.
    fn forget(&mut self, _live: &LiveContainer) {}
    /// Removes everything the runner created; returns what could not be removed.
    fn cleanup(&mut self) -> Vec<String>;
}

/// The runners for `config`, hull models first, then peers, in the order given.
pub fn select(config: &BenchConfig, paths: &StatePaths, work: &Path) -> Vec<Box<dyn Runner>> {
    let mut runners: Vec<Box<dyn Runner>> = Vec::new();
    for &model in &config.models {
        runners.push(Box::new(hull::HullRunner::new(model, config, paths)));
    }
    for &peer in &config.peers {
        match peer {
            Peer::Crun | Peer::Runc => {
                runners.push(Box::new(oci::OciRunner::new(peer, config, paths, work)))
            }
            Peer::QemuMicrovm => runners.push(Box::new(qemu::QemuRunner::new(config, paths, work))),
        }
    }
    runners
}

/// First line of `PROGRAM ARGS`'s stdout, for version strings.
fn first_line_of(program: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
}

/// Finds `name` in `$PATH`.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| crate::doctor::is_executable(p))
}
