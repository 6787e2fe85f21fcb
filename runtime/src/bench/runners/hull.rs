//! hull itself, under one isolation model, driven through its CLI exactly as a user runs it
//! (`hull run --rm --isolation MODEL IMAGE CMD`), so the figures include everything a user
//! waits for: CLI start, image lookup, rootfs setup, and teardown.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::{LiveContainer, Runner};
use crate::bench::measure::{run_timed, LiveChild, Timed};
use crate::bench::procfs;
use crate::bench::{BenchConfig, BenchError};
use crate::isolation::IsolationKind;
use crate::paths::StatePaths;

/// hull under one isolation model.
pub struct HullRunner {
    model: IsolationKind,
    image: String,
    paths: StatePaths,
    exe: Option<PathBuf>,
    /// Tag so this bench's containers are recognisable (`hull-bench-PID-MODEL-N`).
    tag: String,
}

impl HullRunner {
    /// A runner for `model`, using the same state root as the bench itself.
    pub fn new(model: IsolationKind, config: &BenchConfig, paths: &StatePaths) -> Self {
        HullRunner {
            model,
            image: config.image.clone(),
            paths: paths.clone(),
            exe: std::env::current_exe().ok(),
            tag: format!("hull-bench-{}-{}", std::process::id(), model),
        }
    }

    fn command(&self) -> Command {
        let exe = self.exe.clone().unwrap_or_else(|| PathBuf::from("hull"));
        let mut cmd = Command::new(exe);
        cmd.arg("--root").arg(&self.paths.root);
        cmd
    }

    fn run_args(&self, cmd: &mut Command, name: &str, interactive: bool, argv: &[String]) {
        cmd.args([
            "run",
            "--rm",
            "--isolation",
            self.model.as_str(),
            "--name",
            name,
            // Like the OCI peers' bundles (a new, empty network namespace) and the QEMU
            // peer (no network device): the network's own cost is `hull bench --network`'s.
            "--network",
            "none",
        ]);
        if interactive {
            cmd.arg("-i");
        }
        cmd.arg(&self.image).args(argv);
    }
}

impl Runner for HullRunner {
    fn name(&self) -> &'static str {
        match self.model {
            IsolationKind::Process => "hull-process",
            IsolationKind::Vm => "hull-vm",
        }
    }

    fn isolation(&self) -> IsolationKind {
        self.model
    }

    fn version(&self) -> Option<String> {
        Some(format!("hull {}", env!("CARGO_PKG_VERSION")))
    }

    fn prepare(&mut self) -> Result<(), String> {
        if self.exe.is_none() {
            return Err("cannot find the running hull binary".into());
        }
        // The vm model's host requirements; the process model's show up in its warm-up run.
        if self.model == IsolationKind::Vm {
            let facts = crate::doctor::HostFacts::this_host(&self.paths);
            let report = crate::doctor::diagnose(&facts);
            if !report.verdict.vm.usable {
                return Err(format!(
                    "`hull doctor` says VM isolation cannot run directly on this host (failed: \
                     {}){}",
                    report.verdict.vm.blocked_by.join(", "),
                    if report.host.kvm == crate::doctor::KvmKind::Pvm {
                        "; KVM here is PVM, where an unmodified Linux guest cannot boot: run \
                         `hull bench --harness` to measure VM mode inside the nested harness"
                    } else {
                        ""
                    }
                ));
            }
        }
        Ok(())
    }

    fn run_once(&mut self, argv: &[String], timeout: Duration) -> Result<Timed, BenchError> {
        let mut cmd = self.command();
        let name = format!("{}-run", self.tag);
        self.run_args(&mut cmd, &name, false, argv);
        run_timed(cmd, timeout)
    }

    fn spawn_live(&mut self, index: usize, argv: &[String]) -> Result<LiveContainer, BenchError> {
        let mut cmd = self.command();
        let name = format!("{}-{index}", self.tag);
        self.run_args(&mut cmd, &name, true, argv);
        Ok(LiveContainer {
            child: LiveChild::spawn(cmd)?,
            id: name,
        })
    }

    fn members(&self, live: &LiveContainer) -> BTreeSet<u32> {
        // The foreground `hull run` and everything below it (supervisor, workload, VMM) ...
        let mut pids = procfs::tree(&[live.child.child.id()]);
        // ... plus anything that left the tree but sits in the container's cgroup.
        for pid in procfs::in_cgroup_matching(&live.id) {
            pids.extend(procfs::tree(&[pid]));
        }
        pids
    }

    fn guest_touched_kib(&self, live: &LiveContainer) -> Option<u64> {
        if self.model != IsolationKind::Vm {
            return None;
        }
        self.members(live)
            .into_iter()
            .filter(|&pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "hull-vmm")
            })
            .filter_map(procfs::largest_anon_mapping_rss_kib)
            .reduce(|a, b| a + b)
    }

    fn forget(&mut self, live: &LiveContainer) {
        // `run --rm` removes its container; this only matters when it was killed.
        let _ = self
            .command()
            .args(["rm", "-f", &live.id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }

    fn cleanup(&mut self) -> Vec<String> {
        Vec::new()
    }
}
