//! QEMU `-M microvm` as the VM peer: the same guest kernel as hull's vm model, the same
//! image as its erofs disk (the one hull builds for the vm model), the same command.
//!
//! What differs is all of hull's VM side: QEMU is the VMM, and instead of hull's guest
//! agent (vsock protocol, container setup, confinement) a busybox `/init` mounts the disk
//! and runs the command chrooted on the serial console ([`qemu_guest`]). So its figures are
//! the floor of a VM boot running that command, which hull-vm's figures build on; the
//! ratio hull-vm / qemu-microvm is what hull's VMM, agent and container setup cost on top.
//!
//! It needs hardware KVM (`-enable-kvm`); on a PVM host an unmodified guest kernel does not
//! boot usefully, so it is reported unavailable there (`hull bench --harness` measures it
//! inside the nested harness, next to hull-vm).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::qemu_guest::{self, CMDLINE, END_MARKER};
use super::{first_line_of, which, LiveContainer, Runner};
use crate::bench::measure::{run_timed, LiveChild, Timed};
use crate::bench::{procfs, BenchConfig, BenchError};
use crate::doctor::{kvm_kind, HostFacts, KvmKind};
use crate::isolation::IsolationKind;
use crate::paths::StatePaths;

/// Where Debian's busybox-static puts the static busybox the guest's `/init` runs on.
const BUSYBOX: &str = "/bin/busybox";

/// What the guest is booted from, once prepared.
struct Guest {
    kernel: PathBuf,
    disk: PathBuf,
    /// The image's environment (`PATH` ...), exported by `/init`.
    env: Vec<String>,
    busybox: Vec<u8>,
}

/// QEMU microvm.
pub struct QemuRunner {
    image: String,
    paths: StatePaths,
    binary: Option<PathBuf>,
    /// Scratch dir for the initramfs of each command.
    dir: PathBuf,
    guest: Option<Guest>,
    counter: usize,
}

impl QemuRunner {
    /// A runner using `qemu-system-x86_64` from `$PATH`, working under `work`.
    pub fn new(config: &BenchConfig, paths: &StatePaths, work: &Path) -> Self {
        QemuRunner {
            image: config.image.clone(),
            paths: paths.clone(),
            binary: which("qemu-system-x86_64"),
            dir: work.join("qemu-microvm"),
            guest: None,
            counter: 0,
        }
    }

    /// The QEMU command booting `argv`'s guest; its serial console is QEMU's stdio.
    fn command(&mut self, argv: &[String]) -> Result<Command, BenchError> {
        let (Some(binary), Some(guest)) = (&self.binary, &self.guest) else {
            return Err(BenchError::RunFailed("qemu-microvm is not prepared".into()));
        };
        self.counter += 1;
        let initramfs = self.dir.join(format!("initramfs-{}.cpio", self.counter));
        let init = qemu_guest::init_script(argv, &guest.env);
        qemu_guest::write_initramfs(&initramfs, &guest.busybox, &init)
            .map_err(|e| BenchError::Io(format!("write {}", initramfs.display()), e))?;
        let mut cmd = Command::new(binary);
        cmd.args(["-M", "microvm,acpi=off", "-enable-kvm", "-cpu", "host"])
            // hull's defaults for a VM without --memory/--cpus.
            .args([
                "-smp",
                "1",
                "-m",
                &crate::vm::DEFAULT_MEMORY_MIB.to_string(),
            ])
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-no-reboot", "-serial", "stdio"])
            .arg("-kernel")
            .arg(&guest.kernel)
            .arg("-initrd")
            .arg(&initramfs)
            .args(["-append", CMDLINE])
            .arg("-drive")
            .arg(format!(
                "id=root,file={},format=raw,if=none,readonly=on",
                guest.disk.display()
            ))
            .args(["-device", "virtio-blk-device,drive=root"]);
        Ok(cmd)
    }

    /// Everything about the guest that does not depend on the command.
    fn prepare_guest(&self) -> Result<Guest, String> {
        let kernel = crate::vm::locate_kernel(None).map_err(|e| e.to_string())?;
        let busybox = std::fs::read(BUSYBOX).map_err(|e| {
            format!("{BUSYBOX} for the guest's /init: {e} (apt-get install busybox-static)")
        })?;
        if crate::vm::initramfs::is_dynamically_linked(&busybox).map_err(|e| e.to_string())? {
            return Err(format!(
                "{BUSYBOX} is dynamically linked; the guest's /init needs a static one \
                 (apt-get install busybox-static)"
            ));
        }
        let store = crate::image::ImageStore::open(&self.paths).map_err(|e| e.to_string())?;
        let image = store.get(&self.image).map_err(|e| e.to_string())?;
        let env = image
            .config
            .config()
            .as_ref()
            .and_then(|c| c.env().clone())
            .unwrap_or_default();
        let disk = crate::vm::disk::ensure_disk(&self.paths, &image.id, &image.layers)
            .map_err(|e| format!("the image's VM disk: {e}"))?;
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("create {}: {e}", self.dir.display()))?;
        Ok(Guest {
            kernel,
            disk,
            env,
            busybox,
        })
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
        self.guest = Some(self.prepare_guest()?);
        Ok(())
    }

    fn notes(&self) -> Vec<String> {
        vec![
            "QEMU microvm boots hull's guest kernel and the image's erofs disk (the one \
             hull-vm boots) with hull's default size (1 vCPU, 256 MiB); a busybox /init \
             runs the command chrooted on the serial console: no guest agent, vsock or \
             container confinement, so its figures are the floor hull-vm builds on"
                .into(),
        ]
    }

    fn run_once(&mut self, argv: &[String], timeout: Duration) -> Result<Timed, BenchError> {
        let cmd = self.command(argv)?;
        let mut timed = run_timed(cmd, timeout)?;
        let Some(after) = timed.cut_stdout_at(END_MARKER.as_bytes()) else {
            return Err(BenchError::RunFailed(format!(
                "the guest never reported the command's end (QEMU exit {}): {}",
                timed.exit_code,
                String::from_utf8_lossy(&timed.stdout).trim()
            )));
        };
        // The guest's console turns "\n" into "\r\n"; the command's output had none.
        timed.stdout.retain(|&b| b != b'\r');
        let after = String::from_utf8_lossy(&after).replace('\r', "");
        let (status, stderr) = after.split_once('\n').unwrap_or((after.as_str(), ""));
        let status: i32 = status.trim().parse().map_err(|_| {
            BenchError::Protocol(format!("bad exit status from the guest: {status:?}"))
        })?;
        if timed.exit_code != 0 {
            return Err(BenchError::RunFailed(format!(
                "QEMU exited {}: {}",
                timed.exit_code,
                timed.stderr_text()
            )));
        }
        timed.exit_code = status;
        timed.stderr = stderr.as_bytes().to_vec();
        Ok(timed)
    }

    fn spawn_live(&mut self, index: usize, argv: &[String]) -> Result<LiveContainer, BenchError> {
        let cmd = self.command(argv)?;
        Ok(LiveContainer {
            child: LiveChild::spawn(cmd)?,
            id: format!("qemu-microvm-{index}"),
        })
    }

    fn end_input(&mut self, live: &mut LiveContainer) {
        // Closing QEMU's stdin is no end of input for the guest's console; a ^D at the
        // start of a line is, as on any terminal.
        let _ = live.child.send_raw(b"\x04");
        live.child.close_stdin();
    }

    fn members(&self, live: &LiveContainer) -> BTreeSet<u32> {
        procfs::tree(&[live.child.child.id()])
    }

    fn guest_touched_kib(&self, live: &LiveContainer) -> Option<u64> {
        procfs::largest_anon_mapping_rss_kib(live.child.child.id())
    }

    fn cleanup(&mut self) -> Vec<String> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                vec![format!("remove {}: {e}", self.dir.display())]
            }
            _ => Vec::new(),
        }
    }
}
