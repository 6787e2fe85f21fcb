//! QEMU `-M microvm` as the VM peer: boots the same guest kernel and initramfs as hull's vm
//! model.
//!
//! It needs hardware KVM (`-enable-kvm`); on a PVM host an unmodified guest kernel does not
//! boot usefully, so it is reported unavailable with that reason, as it is when the guest
//! kernel or initramfs is missing. Booting QEMU with the guest agent as PID 1 needs the
//! agent's host side (vsock) to give the command's output; until that is wired in, this peer
//! says so instead of reporting a figure that would not measure the same work.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use super::{first_line_of, which, LiveContainer, Runner};
use crate::bench::measure::Timed;
use crate::bench::{BenchConfig, BenchError};
use crate::doctor::{kvm_kind, HostFacts, KvmKind, GUEST_KERNEL_PATH};
use crate::isolation::IsolationKind;
use crate::paths::StatePaths;

/// QEMU microvm.
pub struct QemuRunner {
    paths: StatePaths,
    binary: Option<PathBuf>,
}

impl QemuRunner {
    /// A runner using `qemu-system-x86_64` from `$PATH`.
    pub fn new(_config: &BenchConfig, paths: &StatePaths) -> Self {
        QemuRunner {
            paths: paths.clone(),
            binary: which("qemu-system-x86_64"),
        }
    }

    fn unsupported() -> BenchError {
        BenchError::RunFailed("qemu-microvm runs are not available in this build".into())
    }
}

impl Runner for QemuRunner {
    fn name(&self) -> &'static str {
        "qemu-microvm"
    }

    fn isolation(&self) -> IsolationKind {
        IsolationKind::Vm
    }

    fn version(&self) -> Option<String> {
        first_line_of(self.binary.as_deref()?, &["--version"])
    }

    fn prepare(&mut self) -> Result<(), String> {
        if self.binary.is_none() {
            return Err(
                "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)".into(),
            );
        }
        let facts = HostFacts::this_host(&self.paths);
        match kvm_kind(&facts) {
            KvmKind::VtX | KvmKind::AmdV => {}
            KvmKind::Pvm => {
                return Err(
                    "KVM here is PVM: an unmodified Linux guest cannot boot usefully \
                            under -enable-kvm; use `hull bench --harness`"
                        .into(),
                )
            }
            other => {
                return Err(format!(
                    "needs hardware KVM, this host has {}",
                    other.describe()
                ))
            }
        }
        if !facts.exists(GUEST_KERNEL_PATH) {
            return Err(format!(
                "no guest kernel at {GUEST_KERNEL_PATH} (build it: kernel-config/build.sh)"
            ));
        }
        Err(
            "booting the guest agent under QEMU microvm without hull's host side gives no \
             command output to time; this peer is not wired in yet"
                .into(),
        )
    }

    fn run_once(&mut self, _argv: &[String], _timeout: Duration) -> Result<Timed, BenchError> {
        Err(Self::unsupported())
    }

    fn spawn_live(&mut self, _index: usize, _argv: &[String]) -> Result<LiveContainer, BenchError> {
        Err(Self::unsupported())
    }

    fn members(&self, _live: &LiveContainer) -> BTreeSet<u32> {
        BTreeSet::new()
    }

    fn cleanup(&mut self) -> Vec<String> {
        Vec::new()
    }
}
