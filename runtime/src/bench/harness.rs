//! `hull bench --harness`: the whole bench run inside the nested harness (QEMU/TCG with an
//! emulated AMD-V CPU, whose KVM boots an unmodified Linux guest), for hosts whose own KVM
//! cannot (PVM).
//!
//! The machine is the tier-4 tests' harness, driven through its CLI (`hull-harness`, built
//! with the workspace's binaries and installed beside hull by scripts/setup.sh). It
//! carries hull, hull-vmm, the guest agent and kernel, this state root's image store, and
//! the peers asked for: crun/runc, and QEMU with its microvm firmware, which boots the same
//! guest kernel and image disk in the same machine. Inside, `hull bench --format json` runs
//! with the same settings and its report comes back between markers. Everything inside
//! runs on an emulated CPU: figures compare only with each other, as the ratios do.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::report::BenchReport;
use super::runners::which;
use super::{BenchError, Peer};
use crate::paths::StatePaths;

const BEGIN: &str = "@@HULL-BENCH-JSON-BEGIN@@";
const END: &str = "@@HULL-BENCH-JSON-END@@";
/// Largest image store carried into the harness (it lives in the outer machine's RAM).
const MAX_STORE_BYTES: u64 = 512 << 20;
/// Where Debian's QEMU keeps firmware, and what `-M microvm` with `-kernel` loads from it.
const QEMU_DATA_DIR: &str = "/usr/share/qemu";
const QEMU_MICROVM_FIRMWARE: &[&str] = &[
    "qboot.rom",
    "bios-microvm.bin",
    "pvh.bin",
    "linuxboot_dma.bin",
    "kvmvapic.bin",
];
/// Outer machine memory: the bench's files (copied once more into its root), hull-vm's
/// guests, and QEMU with its guests when that peer runs.
fn harness_memory_mib(density: usize, qemu: bool) -> u64 {
    let base = 1536 + density as u64 * 384;
    let qemu = if qemu { 512 + density as u64 * 256 } else { 0 };
    (base + qemu).min(8192)
}

/// Where scripts/setup.sh installs `hull-harness` (next to hull-vmm and the guest agent).
const INSTALLED_HARNESS_CLI: &str = "/usr/local/lib/hull/hull-harness";

/// Where `hull-harness` may be, in order: `$HULL_HARNESS_BIN`, beside `hull` (a build
/// tree), `../lib/hull/` from `hull` (an installed prefix: /usr/local/bin/hull and
/// /usr/local/lib/hull/hull-harness), and [`INSTALLED_HARNESS_CLI`].
fn harness_cli_candidates(exe: Option<&Path>) -> Vec<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("HULL_HARNESS_BIN") {
        candidates.push(p.into());
    }
    if let Some(dir) = exe.and_then(Path::parent) {
        candidates.push(dir.join("hull-harness"));
        if let Some(prefix) = dir.parent() {
            candidates.push(prefix.join("lib/hull/hull-harness"));
        }
    }
    candidates.push(INSTALLED_HARNESS_CLI.into());
    candidates
}

fn locate_harness_cli() -> Result<PathBuf, BenchError> {
    let exe = std::env::current_exe().ok();
    harness_cli_candidates(exe.as_deref())
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| {
            BenchError::InvalidConfig(format!(
                "--harness needs hull-harness, found neither beside hull nor in \
                 {INSTALLED_HARNESS_CLI} (scripts/setup.sh installs it; in a build tree \
                 cargo build --workspace --bins builds it; or set HULL_HARNESS_BIN)"
            ))
        })
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// The overlayfs module for the harness's kernel (tests/harness/prepare.sh keeps it beside
/// the KVM modules): hull's process mode (overlay root), vm mode (layers merged into the VM
/// disk) and the OCI peers all need overlayfs inside, and Debian's cloud kernel has it as a
/// module.
fn overlay_module() -> Option<PathBuf> {
    let cache = std::env::var_os("HULL_HARNESS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/hull/harness"));
    let module = cache.join("current/modules/overlay.ko");
    module.is_file().then_some(module)
}

/// Single-quotes `arg` for /bin/sh.
fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// Runs `hull bench INNER_ARGS --format json` inside the harness and returns its report.
pub fn run(
    inner_args: &[String],
    peers: &[Peer],
    density: usize,
    paths: &StatePaths,
    work: &Path,
    timeout: Duration,
) -> Result<BenchReport, BenchError> {
    let cli = locate_harness_cli()?;
    let unavailable = |e: crate::vm::VmError| BenchError::InvalidConfig(format!("--harness: {e}"));
    let exe = std::env::current_exe()
        .map_err(|e| BenchError::Io("find the running hull binary".into(), e))?;
    let vmm = crate::vm::locate_vmm().map_err(unavailable)?;
    let agent = crate::vm::locate_agent().map_err(unavailable)?;
    let kernel = crate::vm::locate_kernel(None).map_err(unavailable)?;
    let images = paths.images();
    let size = dir_size(&images);
    if size > MAX_STORE_BYTES {
        return Err(BenchError::InvalidConfig(format!(
            "--harness: the image store {} holds {} MiB; at most {} MiB can be carried into the \
             harness (use a --root with only the image to bench)",
            images.display(),
            size >> 20,
            MAX_STORE_BYTES >> 20
        )));
    }

    std::fs::create_dir_all(work)
        .map_err(|e| BenchError::Io(format!("create {}", work.display()), e))?;
    let args: Vec<String> = inner_args.iter().map(|a| shell_quote(a)).collect();
    let overlay = overlay_module();
    // The harness's root is the initramfs (rootfs), where pivot_root(2) is refused, so
    // the bench runs chrooted into a copy of it on a tmpfs, as containers run on real hosts.
    let script = format!(
        "mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null\n\
         echo '+memory +pids +cpu' > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null\n\
         insmod /lib/hull-bench/overlay.ko 2>/dev/null\n\
         mkdir -p /newroot && mount -t tmpfs -o size=90% tmpfs /newroot || exit 125\n\
         for d in bin sbin usr lib lib64 etc root state; do\n\
             [ -e /$d ] && cp -a /$d /newroot/\n\
         done\n\
         mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/tmp /newroot/run\n\
         mount -t proc proc /newroot/proc && mount --rbind /sys /newroot/sys \\\n\
             && mount --rbind /dev /newroot/dev && mount -t tmpfs tmpfs /newroot/tmp \\\n\
             && mount -t tmpfs tmpfs /newroot/run || exit 125\n\
         cat > /newroot/run-bench.sh <<'HULL_BENCH_EOF'\n\
         export HULL_IN_HARNESS=1 PATH=/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin\n\
         hull --root /state bench {} --format json > /tmp/bench.json 2> /tmp/bench.err\n\
         rc=$?\n\
         echo {BEGIN}\n\
         cat /tmp/bench.json\n\
         echo {END}\n\
         cat /tmp/bench.err\n\
         exit $rc\n\
         HULL_BENCH_EOF\n\
         chroot /newroot /bin/sh /run-bench.sh\n",
        args.join(" ")
    );
    let script_path = work.join("harness-script.sh");
    std::fs::write(&script_path, script)
        .map_err(|e| BenchError::Io(format!("write {}", script_path.display()), e))?;

    let qemu = if peers.contains(&Peer::QemuMicrovm) {
        which("qemu-system-x86_64")
    } else {
        None
    };
    let mut cmd = Command::new(&cli);
    cmd.arg("--timeout")
        .arg(timeout.as_secs().max(1).to_string())
        .arg("--memory")
        .arg(harness_memory_mib(density, qemu.is_some()).to_string())
        .arg("--binary")
        .arg(format!("{}=/usr/bin/hull", exe.display()))
        .arg("--binary")
        .arg(format!("{}=/usr/bin/hull-vmm", vmm.display()))
        .arg("--file")
        .arg(format!(
            "{}=/usr/local/lib/hull/hull-agent",
            agent.display()
        ))
        .arg("--file")
        .arg(format!("{}=/usr/local/lib/hull/vmlinux", kernel.display()))
        .arg("--dir")
        .arg(format!("{}=/state/images", images.display()))
        .arg("--script")
        .arg(&script_path);
    if let Some(module) = &overlay {
        cmd.arg("--file")
            .arg(format!("{}=/lib/hull-bench/overlay.ko", module.display()));
    }
    // The vm backend turns images into erofs disks with mkfs.erofs and formats each vm
    // container's writable layer disk with mkfs.ext4 (mke2fs picks ext4 from that name).
    if let Some(mkfs) = which("mkfs.erofs") {
        cmd.arg("--binary")
            .arg(format!("{}=/usr/bin/mkfs.erofs", mkfs.display()));
    }
    if let Some(mkfs) = which("mkfs.ext4") {
        cmd.arg("--binary")
            .arg(format!("{}=/usr/sbin/mkfs.ext4", mkfs.display()));
    }
    for peer in peers {
        if matches!(peer, Peer::Crun | Peer::Runc) {
            if let Some(binary) = which(peer.name()) {
                cmd.arg("--binary")
                    .arg(format!("{}=/usr/bin/{}", binary.display(), peer.name()));
            }
        }
    }
    // The QEMU microvm peer: QEMU (with its libraries) and the firmware its microvm
    // machine loads; it boots the same guest kernel as hull-vm, inside the same machine.
    if let Some(qemu) = &qemu {
        cmd.arg("--binary")
            .arg(format!("{}=/usr/bin/qemu-system-x86_64", qemu.display()));
        for firmware in QEMU_MICROVM_FIRMWARE {
            let host = Path::new(QEMU_DATA_DIR).join(firmware);
            if host.exists() {
                cmd.arg("--file")
                    .arg(format!("{}={QEMU_DATA_DIR}/{firmware}", host.display()));
            }
        }
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| BenchError::Io(format!("run {}", cli.display()), e))?;
    let _ = std::fs::remove_dir_all(work);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout
        .split_once(BEGIN)
        .and_then(|(_, rest)| rest.split_once(END))
        .map(|(json, _)| json.trim());
    let explain = || {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        format!(
            "the bench inside the harness gave no report ({}):\n{}\n{}",
            out.status,
            stdout.trim(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    };
    let json = match json {
        Some(json) if !json.is_empty() => json,
        _ => return Err(BenchError::Protocol(explain())),
    };
    let mut report: BenchReport = serde_json::from_str(json)
        .map_err(|e| BenchError::Protocol(format!("{}\n(report did not parse: {e})", explain())))?;
    if overlay.is_none() {
        report.settings.method.push(
            "no overlayfs module for the harness's kernel was found (run \
             tests/harness/prepare.sh): hull and the OCI peers need overlayfs inside the harness"
                .into(),
        );
    }
    // QEMU could not be carried in: say so rather than "not installed".
    if qemu.is_none() {
        for subject in report
            .subjects
            .iter_mut()
            .filter(|s| s.name == "qemu-microvm" && !s.available)
        {
            subject.unavailable_reason = Some(
                "qemu-system-x86_64 is not installed on this host, so it was not carried \
                 into the harness (apt-get install qemu-system-x86)"
                    .into(),
            );
        }
    }
    let host = super::env::Environment::collect(paths);
    report.environment.nested_harness = true;
    report.environment.outer_host = Some(format!(
        "{} (Linux {}, {}, KVM {})",
        host.hostname,
        host.kernel,
        host.cpu_model,
        super::report::wire_name(&host.kvm)
    ));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_installed_hull_finds_hull_harness_under_its_prefix() {
        let candidates = harness_cli_candidates(Some(Path::new("/opt/x/bin/hull")));
        let beside = candidates
            .iter()
            .position(|p| p == Path::new("/opt/x/bin/hull-harness"));
        let prefix = candidates
            .iter()
            .position(|p| p == Path::new("/opt/x/lib/hull/hull-harness"));
        assert!(
            beside.is_some() && prefix.is_some() && beside < prefix,
            "{candidates:?}"
        );
        assert_eq!(candidates.last().unwrap(), Path::new(INSTALLED_HARNESS_CLI));
    }

    #[test]
    fn quoting_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
