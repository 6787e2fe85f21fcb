//! `hull doctor`: can this host run containers under each isolation model, and if not, why
//! and how to fix it.
//!
//! The checks read the host through [`HostFacts`] (an injectable root), produce a list of
//! [`Check`]s in plain words with a fix for each problem, and a [`Verdict`] per isolation
//! model. The CLI turns the verdict into the exit status (see [`Report::exit_code`]).

mod checks;
mod facts;
mod network;

use serde::Serialize;

pub use checks::{cgroup_layout, kvm_kind, CgroupLayout, CgroupVersion, KvmKind};
pub use facts::{is_executable, HostFacts};

/// Exit-status bit set when `--isolation=process` is not usable on this host. (Bits 4 and 8
/// rather than 1 and 2 so they never look like a usage error, which exits 2.)
pub const EXIT_PROCESS_UNUSABLE: i32 = 4;
/// Exit-status bit set when `--isolation=vm` cannot run directly on this host.
pub const EXIT_VM_UNUSABLE: i32 = 8;

/// Where the guest kernel is installed (`kernel-config/build.sh` puts it there).
pub const GUEST_KERNEL_PATH: &str = "/usr/local/lib/hull/vmlinux";

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Works as hull needs it.
    Ok,
    /// Works, with a limitation worth knowing.
    Warn,
    /// Missing or broken: the models in `affects` cannot run.
    Fail,
}

/// Which isolation models a check matters for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Affects {
    /// `--isolation=process` only.
    Process,
    /// `--isolation=vm` only.
    Vm,
    /// Both models.
    Both,
}

impl Affects {
    fn process(self) -> bool {
        matches!(self, Affects::Process | Affects::Both)
    }
    fn vm(self) -> bool {
        matches!(self, Affects::Vm | Affects::Both)
    }
}

/// One finding, explained.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable identifier (`kvm`, `cgroups`, `overlayfs`, ...), for scripts.
    pub id: &'static str,
    /// Short title.
    pub title: &'static str,
    /// Outcome.
    pub status: Status,
    /// What was found, in plain words.
    pub finding: String,
    /// What to do about it (present for `warn` and `fail`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Which isolation models depend on it.
    pub affects: Affects,
}

/// Whether one isolation model can be used here.
#[derive(Debug, Clone, Serialize)]
pub struct ModelVerdict {
    /// True when no check this model depends on failed.
    pub usable: bool,
    /// Ids of the failed checks that make it unusable.
    pub blocked_by: Vec<&'static str>,
    /// One sentence for a person.
    pub summary: String,
}

/// The verdict for both models.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// `--isolation=process`.
    pub process: ModelVerdict,
    /// `--isolation=vm`, run directly on this host's /dev/kvm.
    pub vm: ModelVerdict,
    /// Whether the nested QEMU harness (emulated AMD-V) can run VM mode instead.
    pub vm_in_nested_harness: bool,
}

/// Facts about the host worth printing above the checks.
#[derive(Debug, Clone, Serialize)]
pub struct HostSummary {
    /// Kernel release.
    pub kernel: Option<String>,
    /// CPU model name from /proc/cpuinfo.
    pub cpu_model: Option<String>,
    /// Kind of KVM.
    pub kvm: KvmKind,
    /// cgroup layout.
    pub cgroup_version: CgroupVersion,
    /// Whether this host is itself a virtual machine (`hypervisor` CPU flag).
    pub is_virtual_machine: bool,
}

/// Everything `hull doctor` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Host summary.
    pub host: HostSummary,
    /// Every check, in the order they are printed.
    pub checks: Vec<Check>,
    /// Per-model verdict.
    pub verdict: Verdict,
    /// The exit status `hull doctor` returns for this report.
    pub exit_code: i32,
}

impl Report {
    /// Exit status: 0 when both models are usable, plus [`EXIT_PROCESS_UNUSABLE`] and/or
    /// [`EXIT_VM_UNUSABLE`] for each model that is not.
    pub fn compute_exit_code(verdict: &Verdict) -> i32 {
        let mut code = 0;
        if !verdict.process.usable {
            code |= EXIT_PROCESS_UNUSABLE;
        }
        if !verdict.vm.usable {
            code |= EXIT_VM_UNUSABLE;
        }
        code
    }

    /// The check with this id, if it ran.
    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }
}

/// Runs every check against `facts` and returns the report.
pub fn diagnose(facts: &HostFacts) -> Report {
    let checks = checks::all(facts);
    let kvm = kvm_kind(facts);
    let process = model_verdict(&checks, Affects::process, "--isolation=process");
    let mut vm = model_verdict(&checks, Affects::vm, "--isolation=vm");
    let harness = checks
        .iter()
        .any(|c| c.id == "nested-harness" && c.status == Status::Ok);
    if !vm.usable && kvm == KvmKind::Pvm {
        vm.summary = format!(
            "{} (this host's KVM is PVM: an unmodified Linux guest cannot boot usefully on it{})",
            vm.summary,
            if harness {
                "; run VM mode inside the nested harness: `hull bench --harness`, tests/harness"
            } else {
                ""
            }
        );
    }
    let verdict = Verdict {
        process,
        vm,
        vm_in_nested_harness: harness,
    };
    let cpuinfo = facts.read("/proc/cpuinfo").unwrap_or_default();
    let host = HostSummary {
        kernel: facts.kernel_release(),
        cpu_model: cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string()),
        kvm,
        cgroup_version: cgroup_layout(facts).version,
        is_virtual_machine: checks::cpu_flags(&cpuinfo).any(|f| f == "hypervisor"),
    };
    Report {
        host,
        exit_code: Report::compute_exit_code(&verdict),
        checks,
        verdict,
    }
}

fn model_verdict(checks: &[Check], relevant: fn(Affects) -> bool, name: &str) -> ModelVerdict {
    let blocked_by: Vec<&'static str> = checks
        .iter()
        .filter(|c| relevant(c.affects) && c.status == Status::Fail)
        .map(|c| c.id)
        .collect();
    let summary = if blocked_by.is_empty() {
        format!("{name} is usable on this host")
    } else {
        format!(
            "{name} is NOT usable here: failed {}",
            blocked_by.join(", ")
        )
    };
    ModelVerdict {
        usable: blocked_by.is_empty(),
        blocked_by,
        summary,
    }
}

#[cfg(test)]
mod tests;
