//! The nested test harness (tier 4): a QEMU/TCG machine with an emulated AMD-V CPU boots
//! Debian's cloud kernel, loads kvm-amd, and runs a shell script with a real `/dev/kvm`.
//! Inside it a VMM (hull-vmm, or QEMU's microvm for reference) boots an unmodified Linux
//! guest — which this machine's own /dev/kvm (PVM) cannot do.
//!
//! ```no_run
//! use hull_tests::harness::Harness;
//! use std::time::Duration;
//! Harness::require();
//! let run = Harness::new()
//!     .binary(&hull_tests::binary("hull-vmm"), "/usr/bin/hull-vmm")
//!     .run("hull-vmm --version", Duration::from_secs(120));
//! run.assert_success();
//! ```
//!
//! Every run gets a fresh outer machine built from the files given here; nothing is shared
//! between runs, and the temporary directory (archive, serial logs) goes when the run ends.
//! Each boot costs seconds, so tests group their checks into few runs.
//!
//! Prepared by `tests/harness/prepare.sh` (cloud kernel + modules, cached under
//! /var/cache/hull/harness) and `kernel-config/build.sh` (the guest kernel).

use std::fmt;
use std::fs;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::initramfs::{self, Initramfs};

/// Outer machine memory when the test does not say.
const DEFAULT_MEMORY_MIB: u32 = 2048;
/// Outer machine vCPUs. One: with two, QEMU 7.2's TCG emulation of SVM sometimes leaves
/// both outer CPUs spinning with interrupts off (QEMU's monitor showed both at the same
/// kernel instruction, IF=0, the timer interrupt pending and never taken), a hard lockup
/// that no watchdog inside can report. It hit 2 of 2 runs of the vm benchmark in a row
/// and about one tier-4 run in three; with one outer CPU the same benchmark ran clean at
/// once. Inner guests with 2 vCPUs still boot (their vCPUs take turns); a test that
/// needs two outer CPUs asks for them with [`Harness::cpus`].
pub const DEFAULT_CPUS: u32 = 1;
/// Guest paths the harness itself uses; a test's files must stay out of them.
const HARNESS_DIR: &str = "/harness";
/// Outer kernel command line: quiet boot, panic ends QEMU (-no-reboot) at once, and
/// mitigations cost a lot under TCG while protecting nothing here. `no_timer_check`: at
/// boot the kernel checks that timer interrupts arrive through the IO-APIC within a few
/// ticks of its calibrated delay loop; on a loaded host TCG's emulated timer misses that
/// window and the kernel panics ("IO-APIC + timer doesn't work!", seen at load ~20 on 2
/// cores). The timer works, it is only slow to start; hypervisor guests skip the check
/// the same way.
const OUTER_CMDLINE: &str =
    "console=ttyS0 rdinit=/init quiet panic=-1 mitigations=off no_timer_check";
/// Upper bound on the script output kept in memory (a runaway guest cannot eat the host).
const MAX_OUTPUT_BYTES: u64 = 16 << 20;

/// Where Debian's QEMU keeps firmware, and what `-M microvm` with `-kernel` loads from it.
const QEMU_DATA_DIR: &str = "/usr/share/qemu";
const QEMU_MICROVM_FIRMWARE: &[&str] = &[
    "qboot.rom",
    "bios-microvm.bin",
    "pvh.bin",
    "linuxboot_dma.bin",
    "kvmvapic.bin",
];

/// Shell lines that build /newroot: a tmpfs holding rbind mounts of the harness's directories
/// (the same files), for what must not run from the initramfs root (hull-vmm's jail
/// pivot_roots, which the kernel refuses while the root is the initramfs). A macro so that
/// scripts kept as string constants can `concat!` it.
#[macro_export]
macro_rules! newroot_setup {
    () => {
        r#"mkdir -p /newroot /run
mount -t tmpfs tmpfs /newroot
for d in /*; do
    case "$d" in /newroot|/proc|/sys|/dev|/init) continue;; esac
    if [ -d "$d" ] && [ ! -L "$d" ]; then mkdir -p "/newroot$d"; mount --rbind "$d" "/newroot$d";
    elif [ -L "$d" ]; then cp -a "$d" /newroot/; fi
done
for d in /proc /sys /dev; do mkdir -p "/newroot$d"; mount --rbind "$d" "/newroot$d"; done
"#
    };
}

/// Status the outer /init reports when it could not run the script at all (no /dev/kvm).
pub const STATUS_NO_KVM: i32 = 125;

/// Where the harness finds its parts; each can be moved by an environment variable.
#[derive(Clone, Debug)]
pub struct HarnessPaths {
    /// Prepared test-host kernel dir (`vmlinuz`, `modules/`): `$HULL_HARNESS_CACHE/current`.
    pub host_kernel_dir: PathBuf,
    /// Guest kernel (vmlinux) built by kernel-config/build.sh: `$HULL_GUEST_KERNEL`.
    pub guest_kernel: PathBuf,
    /// QEMU for the outer machine: `$HULL_QEMU`, else `qemu-system-x86_64` on PATH.
    pub qemu: Option<PathBuf>,
}

impl HarnessPaths {
    /// Resolves the paths from the environment and the defaults.
    pub fn resolve() -> Self {
        let cache = std::env::var_os("HULL_HARNESS_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/hull/harness"));
        let guest_kernel = std::env::var_os("HULL_GUEST_KERNEL")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/local/lib/hull/vmlinux"));
        let qemu = match std::env::var_os("HULL_QEMU") {
            Some(path) => Some(PathBuf::from(path)),
            None => find_in_path("qemu-system-x86_64"),
        };
        HarnessPaths {
            host_kernel_dir: cache.join("current"),
            guest_kernel,
            qemu,
        }
    }

    /// Ok when every part is in place; otherwise what is missing and how to get it.
    pub fn check(&self) -> Result<(), String> {
        let mut missing = Vec::new();
        match &self.qemu {
            Some(qemu) if qemu.is_file() => {}
            _ => missing
                .push("qemu-system-x86_64 not found (apt-get install qemu-system-x86)".to_string()),
        }
        if !initramfs::is_static_executable(Path::new(initramfs::BUSYBOX)) {
            missing.push(format!(
                "no static {} (apt-get install busybox-static)",
                initramfs::BUSYBOX
            ));
        }
        let host = &self.host_kernel_dir;
        for part in ["vmlinuz", "modules/kvm.load", "modules/vhost-vsock.load"] {
            if !host.join(part).is_file() {
                missing.push(format!(
                    "test-host kernel part {} missing (run tests/harness/prepare.sh)",
                    host.join(part).display()
                ));
            }
        }
        if !self.guest_kernel.is_file() {
            missing.push(format!(
                "guest kernel {} missing (run kernel-config/build.sh)",
                self.guest_kernel.display()
            ));
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.join("; "))
        }
    }
}

/// Finds an executable on `$PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// One nested-harness machine to boot: the files it carries and its size.
#[derive(Clone, Debug)]
pub struct Harness {
    root: Initramfs,
    memory_mib: u32,
    cpus: u32,
    vhost_vsock: bool,
    silence_limit: Duration,
    retry_frozen: Option<bool>,
}

/// What a harness run produced.
#[derive(Debug)]
pub struct HarnessRun {
    /// Everything the script wrote to stdout and stderr (the outer machine's second
    /// serial port), carriage returns removed.
    pub output: String,
    /// The script's exit status, from the end marker; `None` when the machine never
    /// printed it (timeout, panic, QEMU failure).
    pub status: Option<i32>,
    /// The outer kernel's console (first serial port): boot warnings, panics.
    pub console: String,
    /// QEMU's own stderr (argument errors, emulation failures).
    pub qemu_stderr: String,
    /// Wall time from starting QEMU until it exited or was killed.
    pub elapsed: Duration,
    /// The run hit its timeout, or the outer machine locked up, and QEMU was killed.
    pub timed_out: bool,
    /// The outer kernel reported a soft lockup (a fault of the emulated test host).
    pub outer_lockup: bool,
    /// The outer machine stopped printing its heartbeat: it froze (a fault of the
    /// emulated test host; the script's own step timeouts run inside it and stop too).
    pub outer_silent: bool,
    /// Machines booted for this result: 2 only when the first one froze and a retry was
    /// opted into ([`RETRY_FROZEN_ENV`]); then [`HarnessRun::retried_after`] says why.
    pub attempts: u32,
    /// The fault of the first machine, when this result comes from a retry.
    pub retried_after: Option<OuterFault>,
    /// What QEMU's monitor said about the outer vCPUs when the machine locked up or went
    /// silent (halted or running, and where), for telling the kinds of failure apart.
    pub monitor: String,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// Ok when everything a run needs is in place; otherwise why not and how to fix it.
    pub fn available() -> Result<(), String> {
        HarnessPaths::resolve().check()
    }

    /// Panics, loudly and with the reason, when the harness is not available: a tier-4
    /// test must never pass without having run.
    pub fn require() {
        if let Err(why) = Self::available() {
            panic!("nested harness unavailable: {why}");
        }
    }

    /// The guest kernel (vmlinux) for microVMs booted inside the harness.
    pub fn guest_kernel() -> PathBuf {
        HarnessPaths::resolve().guest_kernel
    }

    /// A machine with busybox and nothing else of the test's yet.
    pub fn new() -> Self {
        Harness {
            root: Initramfs::new(),
            memory_mib: DEFAULT_MEMORY_MIB,
            cpus: DEFAULT_CPUS,
            vhost_vsock: false,
            silence_limit: HEARTBEAT_SILENCE_LIMIT,
            retry_frozen: None,
        }
    }

    /// Adds an executable (plus the shared libraries `ldd` lists) at `guest_path`.
    pub fn binary(mut self, host_path: &Path, guest_path: &str) -> Self {
        check_guest_path(guest_path);
        self.root.binary(host_path, guest_path);
        self
    }

    /// Adds a host file at `guest_path`.
    pub fn file(mut self, host_path: &Path, guest_path: &str) -> Self {
        check_guest_path(guest_path);
        self.root.file(host_path, guest_path);
        self
    }

    /// Adds a host directory tree at `guest_path`.
    pub fn dir(mut self, host_path: &Path, guest_path: &str) -> Self {
        check_guest_path(guest_path);
        self.root.dir(host_path, guest_path);
        self
    }

    /// Adds a file with the given content (mode 0644, or 0755 with `executable`).
    pub fn text(mut self, guest_path: &str, content: &str, executable: bool) -> Self {
        check_guest_path(guest_path);
        let mode = if executable { 0o755 } else { 0o644 };
        self.root.bytes(guest_path, content, mode);
        self
    }

    /// Adds QEMU (with its libraries and the firmware its `microvm` machine loads), for
    /// reference boots of a guest next to hull-vmm. Adds about 50 MB to the outer machine.
    pub fn qemu(mut self) -> Self {
        let qemu = HarnessPaths::resolve()
            .qemu
            .unwrap_or_else(|| panic!("harness: qemu-system-x86_64 not found"));
        self.root.binary(&qemu, "/usr/bin/qemu-system-x86_64");
        for firmware in QEMU_MICROVM_FIRMWARE {
            let host = Path::new(QEMU_DATA_DIR).join(firmware);
            self.root
                .file(&host, &format!("{QEMU_DATA_DIR}/{firmware}"));
        }
        self
    }

    /// Outer machine memory in MiB (default 2048). Everything in the initramfs lives in it.
    pub fn memory_mib(mut self, mib: u32) -> Self {
        assert!(
            (256..=16384).contains(&mib),
            "harness memory {mib} MiB out of range"
        );
        self.memory_mib = mib;
        self
    }

    /// Outer machine vCPUs (default [`DEFAULT_CPUS`]).
    pub fn cpus(mut self, cpus: u32) -> Self {
        assert!((1..=8).contains(&cpus), "harness cpus {cpus} out of range");
        self.cpus = cpus;
        self
    }

    /// How long the outer machine's heartbeat may stop before the machine counts as frozen
    /// (default 150 s; the harness's own test shortens it).
    pub fn heartbeat_silence_limit(mut self, limit: Duration) -> Self {
        self.silence_limit = limit;
        self
    }

    /// Whether a run whose test host froze may be retried once on a fresh machine
    /// (default: only when [`RETRY_FROZEN_ENV`] is `1`). Nothing else is ever retried.
    pub fn retry_frozen(mut self, allow: bool) -> Self {
        self.retry_frozen = Some(allow);
        self
    }

    /// Also loads vhost_vsock in the outer machine (QEMU's vhost-vsock-device needs
    /// /dev/vhost-vsock; hull-vmm does not).
    pub fn vhost_vsock(mut self) -> Self {
        self.vhost_vsock = true;
        self
    }

    /// Boots the machine, runs `script` with `/bin/sh` as root in `/tmp` (a tmpfs), and
    /// powers off. Kills QEMU when `timeout` passes. Panics only when the run cannot be
    /// set up (harness unavailable, a file missing); a failing script is reported in the
    /// returned [`HarnessRun`].
    pub fn run(&self, script: &str, timeout: Duration) -> HarnessRun {
        let run = self.run_once(script, timeout);
        let Some(fault) = run.outer_fault() else {
            return run;
        };
        let opted_in = self.retry_frozen.unwrap_or_else(retry_frozen_from_env);
        if !retry_allowed(fault, opted_in) {
            eprintln!(
                "harness: the outer machine failed ({fault}) after {:.0?}; not retried{}",
                run.elapsed,
                if fault == OuterFault::Frozen && !opted_in {
                    format!(" (set {RETRY_FROZEN_ENV}=1 to allow one retry of a frozen machine)")
                } else {
                    String::new()
                }
            );
            return run;
        }
        // Opted into: the machine froze (no heartbeat, no timers: nothing inside runs any
        // more). A second machine shows whether the script passes on a healthy one; the
        // WARNING makes scripts/test.sh fail the tier all the same.
        eprintln!(
            "harness: WARNING: the outer machine froze after {:.0?}; retrying once on a fresh \
             machine ({RETRY_FROZEN_ENV}=1). Console tail:\n{}\nQEMU monitor:\n{}",
            run.elapsed,
            tail_lines(&run.console, 15),
            tail_lines(&run.monitor, 60)
        );
        HarnessRun {
            attempts: 2,
            retried_after: Some(fault),
            ..self.run_once(script, timeout)
        }
    }

    fn run_once(&self, script: &str, timeout: Duration) -> HarnessRun {
        Self::require();
        let paths = HarnessPaths::resolve();
        let qemu = paths.qemu.expect("checked by available()");
        let host_kernel = &paths.host_kernel_dir;

        let work = tempfile::Builder::new()
            .prefix("hull-harness-")
            .tempdir()
            .expect("create harness temp dir");
        let nonce = nonce();
        let mut root = self.root.clone();
        root.busybox();
        let mut load_lists = vec!["kvm.load"];
        if self.vhost_vsock {
            load_lists.push("vhost-vsock.load");
        }
        let mut load_order = Vec::new();
        for list in load_lists {
            let list_path = host_kernel.join("modules").join(list);
            let text = fs::read_to_string(&list_path)
                .unwrap_or_else(|e| panic!("harness: read {}: {e}", list_path.display()));
            for module in text.lines().map(str::trim).filter(|m| !m.is_empty()) {
                assert!(
                    !module.contains('/'),
                    "harness: bad module name {module:?} in {}",
                    list_path.display()
                );
                if !load_order.iter().any(|m| m == module) {
                    root.file(
                        &host_kernel.join("modules").join(module),
                        &format!("{HARNESS_DIR}/modules/{module}"),
                    );
                    load_order.push(module.to_string());
                }
            }
        }
        root.bytes(&format!("{HARNESS_DIR}/script.sh"), script, 0o755);
        root.bytes("/init", outer_init(&load_order, &nonce), 0o755);
        let archive = work.path().join("initramfs.cpio");
        root.write_to(&archive)
            .unwrap_or_else(|e| panic!("harness: write {}: {e}", archive.display()));

        let console_log = work.path().join("console.log");
        let output_log = work.path().join("output.log");
        let qemu_err = work.path().join("qemu.stderr");
        let monitor_sock = work.path().join("monitor.sock");
        let mut cmd = Command::new(&qemu);
        cmd.args(["-M", "q35", "-accel", "tcg", "-cpu", "EPYC,+svm,+npt"])
            .args(["-smp", &self.cpus.to_string()])
            .args(["-m", &self.memory_mib.to_string()])
            .args([
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-no-reboot",
            ])
            .arg("-serial")
            .arg(serial_file(&console_log))
            .arg("-serial")
            .arg(serial_file(&output_log))
            .arg("-monitor")
            .arg(format!(
                "unix:{},server=on,wait=off",
                checked_path(&monitor_sock)
            ))
            .arg("-kernel")
            .arg(host_kernel.join("vmlinuz"))
            .arg("-initrd")
            .arg(&archive)
            .arg("-append")
            .arg(outer_cmdline())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&qemu_err).expect("create qemu stderr file"));

        let start = Instant::now();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("harness: start {}: {e}", qemu.display()));
        let mut guard = KillOnDrop(Some(child));
        let end = guard.wait_until(start + timeout, &console_log, self.silence_limit);
        let elapsed = start.elapsed();
        let monitor = match end {
            WaitEnd::Lockup | WaitEnd::Silent => ask_monitor(&monitor_sock),
            WaitEnd::Exited | WaitEnd::TimedOut => String::new(),
        };
        drop(guard);

        let output = read_bounded(&output_log).replace('\r', "");
        let console = without_heartbeats(&read_bounded(&console_log).replace('\r', ""));
        // TCG lacks a few EPYC features and says so at every start: noise, not news.
        let qemu_stderr = read_bounded(&qemu_err)
            .lines()
            .filter(|line| !line.contains("TCG doesn't support requested feature"))
            .collect::<Vec<_>>()
            .join("\n");
        let (output, status) = split_marker(&output, &nonce);
        HarnessRun {
            output,
            status,
            console,
            qemu_stderr,
            elapsed,
            timed_out: end != WaitEnd::Exited,
            outer_lockup: end == WaitEnd::Lockup,
            outer_silent: end == WaitEnd::Silent,
            attempts: 1,
            retried_after: None,
            monitor,
        }
    }
}

impl HarnessRun {
    /// The script ran and exited 0, and the test host's kernel did not crash meanwhile.
    pub fn success(&self) -> bool {
        self.status == Some(0) && self.outer_fault().is_none()
    }

    /// Panics with the whole story unless the script exited 0.
    pub fn assert_success(&self) {
        assert!(self.success(), "harness script failed\n{self}");
    }

    /// The value of the first output line `KEY=VALUE`, for scripts that report results.
    pub fn value(&self, key: &str) -> Option<&str> {
        let prefix = format!("{key}=");
        self.output
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
    }
}

impl fmt::Display for HarnessRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match (self.status, self.timed_out) {
            (Some(code), _) => format!("exit status {code}"),
            (None, true) => "timed out (QEMU killed)".to_string(),
            (None, false) => "no end marker (outer machine crashed or QEMU failed)".to_string(),
        };
        writeln!(f, "harness run: {status} after {:.1?}", self.elapsed)?;
        if let Some(fault) = self.outer_fault() {
            writeln!(f, "test host failed: {fault}")?;
        }
        if let Some(first) = self.retried_after {
            writeln!(
                f,
                "this is a second machine: the first one failed ({first})"
            )?;
        }
        writeln!(f, "--- script output ---\n{}", self.output.trim_end())?;
        writeln!(f, "--- outer console ---\n{}", tail(&self.console, 60))?;
        if !self.qemu_stderr.trim().is_empty() {
            writeln!(f, "--- qemu stderr ---\n{}", self.qemu_stderr.trim_end())?;
        }
        if !self.monitor.is_empty() {
            writeln!(f, "--- QEMU monitor ---\n{}", tail(&self.monitor, 60))?;
        }
        Ok(())
    }
}

/// The outer kernel's command line; `$HULL_HARNESS_APPEND` adds to it (e.g. `loglevel=7`
/// to see the whole outer boot when diagnosing).
fn outer_cmdline() -> String {
    match std::env::var("HULL_HARNESS_APPEND") {
        Ok(extra) if !extra.trim().is_empty() => format!("{OUTER_CMDLINE} {}", extra.trim()),
        _ => OUTER_CMDLINE.to_string(),
    }
}

/// The outer machine's /init: mounts, loads KVM, runs the script with its output on the
/// second serial port, prints the end marker with the status, powers off.
fn outer_init(load_order: &[String], nonce: &str) -> String {
    let modules = load_order.join(" ");
    format!(
        r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /usr/bin /usr/sbin /sbin
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
export PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin HOME=/root
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /root
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
# A heartbeat on the console tells the host this machine is alive (see WaitEnd::Silent).
(n=0; while :; do n=$((n + 1)); echo "{HEARTBEAT} $n" >/dev/ttyS0; sleep {HEARTBEAT_EVERY_SECS}; done) &
echo $! >{HARNESS_DIR}/heartbeat.pid
out=/dev/ttyS1
status=0
for m in {modules}; do
    insmod {HARNESS_DIR}/modules/$m 2>>$out || echo "harness: insmod $m failed" >>$out
done
if [ ! -c /dev/kvm ]; then
    echo "harness: /dev/kvm missing after loading kvm-amd (see the outer console)" >>$out
    status={STATUS_NO_KVM}
else
    cd /tmp
    /bin/sh {HARNESS_DIR}/script.sh >>$out 2>&1 </dev/null
    status=$?
fi
sync
echo "HULL-HARNESS-END-{nonce} status=$status" >>$out
poweroff -f
reboot -f
"#
    )
}

/// Splits the script output at the end marker; the status is what the marker says.
fn split_marker(output: &str, nonce: &str) -> (String, Option<i32>) {
    let marker = format!("HULL-HARNESS-END-{nonce} status=");
    match output.find(&marker) {
        Some(pos) => {
            let rest = &output[pos + marker.len()..];
            let status = rest.lines().next().and_then(|s| s.trim().parse().ok());
            (output[..pos].to_string(), status)
        }
        None => (output.to_string(), None),
    }
}

/// Guest paths under /harness, /init and the busybox belong to the harness.
fn check_guest_path(guest: &str) {
    let trimmed = guest.trim_start_matches('/');
    let harness_dir = HARNESS_DIR.trim_start_matches('/');
    let reserved = trimmed == harness_dir
        || trimmed.starts_with(&format!("{harness_dir}/"))
        || trimmed == "init"
        || trimmed == "bin/busybox";
    assert!(
        !reserved,
        "harness: guest path {guest} is reserved for the harness itself"
    );
}

/// A QEMU `-serial` argument writing to `path` (QEMU options must not contain commas).
fn serial_file(path: &Path) -> String {
    format!("file:{}", checked_path(path))
}

/// A temp path as QEMU's option syntax can take it.
fn checked_path(path: &Path) -> &str {
    let path = path.to_str().expect("temp path is UTF-8");
    assert!(!path.contains(','), "harness: temp path {path} has a comma");
    path
}

/// Asks QEMU's human monitor where the outer vCPUs are (halted or running, and their
/// registers); bounded in time and size, best effort.
fn ask_monitor(socket: &Path) -> String {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    let Ok(mut conn) = UnixStream::connect(socket) else {
        return "(monitor unreachable)".into();
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    // The local APICs show whether a CPU still has a timer armed (a halted CPU without
    // one never wakes up again).
    let _ = conn.write_all(b"info cpus\ninfo registers -a\ninfo lapic 0\ninfo lapic 1\n");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while answer.len() < 64 << 10 && Instant::now() < deadline {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    // Of the registers, the general ones, RIP with the halt flag, and the control ones.
    let keep = [
        "CPU#", "RAX=", "RSI=", "R8 =", "R12=", "RIP=", "CR0=", "EFER=",
    ];
    String::from_utf8_lossy(&answer)
        .replace('\r', "")
        .lines()
        // (The monitor echoes each command keystroke by keystroke; its prompt lines go.)
        .filter(|l| !l.starts_with("(qemu)"))
        .filter(|l| {
            let register_dump = l.len() > 3 && l.as_bytes()[2..4].contains(&b'=')
                || l.starts_with("YMM")
                || l.starts_with("FPR")
                || l.starts_with("FCW");
            !register_dump || keep.iter().any(|k| l.trim_start().starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A value the script cannot guess, so nothing it prints can fake the end marker.
fn nonce() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", nanos, std::process::id())
}

/// Reads at most MAX_OUTPUT_BYTES of a log file as text ("" when it does not exist).
fn read_bounded(path: &Path) -> String {
    let mut data = Vec::new();
    match fs::File::open(path) {
        Ok(file) => {
            let _ = file.take(MAX_OUTPUT_BYTES).read_to_end(&mut data);
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return format!("<cannot read {}: {e}>", path.display()),
    }
    String::from_utf8_lossy(&data).into_owned()
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A QEMU process that is killed and reaped however the run ends (timeout, panic).
/// What the outer kernel prints when a CPU is stuck; under TCG's SVM emulation it does not
/// recover, so waiting on would only burn the run's whole timeout.
const OUTER_LOCKUP: &str = "soft lockup - CPU#";
/// How often the console is scanned for [`OUTER_LOCKUP`] and the heartbeat.
const LOCKUP_CHECK_EVERY: Duration = Duration::from_secs(2);
/// What the outer /init prints on its console every [`HEARTBEAT_EVERY_SECS`], numbered.
const HEARTBEAT: &str = "hull-harness-heartbeat";
const HEARTBEAT_EVERY_SECS: u32 = 5;
/// A machine whose heartbeat stopped for this long has frozen. Seen under TCG's SVM
/// emulation: the outer machine stops dead (no console output, no timer: the script's
/// own step timeouts never fire), and without this the run would sit out its whole
/// timeout. Generous against a merely slow machine (a heartbeat is due every 5 s).
const HEARTBEAT_SILENCE_LIMIT: Duration = Duration::from_secs(150);
/// The first heartbeat comes after the outer kernel booted; booting is slower still.
const FIRST_HEARTBEAT_LIMIT: Duration = Duration::from_secs(600);

/// How a wait for QEMU ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitEnd {
    Exited,
    TimedOut,
    Lockup,
    Silent,
}

/// The number of the last heartbeat on `console`.
fn last_heartbeat(console: &str) -> Option<u64> {
    console
        .lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix(HEARTBEAT)?.trim().parse().ok())
}

/// `console` without the heartbeat lines (noise in a failure report).
fn without_heartbeats(console: &str) -> String {
    console
        .lines()
        .filter(|line| !line.trim().starts_with(HEARTBEAT))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// What the outer kernel prints when it crashes. Its console carries only the outer
/// kernel's own messages (the script's output and the inner guests' consoles go
/// elsewhere), so one of these there means the test host's kernel failed, and a crash of
/// the host kernel's KVM under hull-vmm looks exactly like this: always a failure, never
/// retried.
const OUTER_CRASHES: &[&str] = &["Kernel panic", "Oops:", "BUG: ", "RIP: 0010:"];

/// Environment variable that, set to `1`, allows one retry of a run whose test host froze
/// (its heartbeat stopped). Off by default; `scripts/test.sh` fails the tier anyway.
pub const RETRY_FROZEN_ENV: &str = "HULL_HARNESS_RETRY_FROZEN";

fn retry_frozen_from_env() -> bool {
    std::env::var(RETRY_FROZEN_ENV).is_ok_and(|v| v == "1")
}

/// How the emulated test host failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OuterFault {
    /// Its heartbeat stopped: nothing inside runs any more, not even timers (seen under
    /// TCG's SVM emulation with the CPUs spinning with interrupts off).
    Frozen,
    /// Its kernel reported a soft lockup.
    Lockup,
    /// Its kernel crashed or reported a bug (the signature found on its console).
    Crash(&'static str),
}

impl fmt::Display for OuterFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OuterFault::Frozen => write!(f, "the heartbeat stopped: the machine froze"),
            OuterFault::Lockup => write!(f, "the outer kernel reported a soft lockup"),
            OuterFault::Crash(sig) => write!(f, "the outer kernel crashed: {sig:?} on its console"),
        }
    }
}

/// Whether a run that failed with `fault` may be booted again: only a freeze, and only when
/// opted into. A crash or lockup of the test host's kernel may be hull-vmm's doing (a host
/// KVM bug it triggers looks the same), so it is a failure of the run, never a host fault.
pub fn retry_allowed(fault: OuterFault, opted_in: bool) -> bool {
    opted_in && fault == OuterFault::Frozen
}

impl HarnessRun {
    /// How the test host failed, if it did: frozen, a soft lockup, or a kernel crash on its
    /// console (even when the script finished).
    pub fn outer_fault(&self) -> Option<OuterFault> {
        if self.outer_silent {
            return Some(OuterFault::Frozen);
        }
        if self.outer_lockup || self.console.contains(OUTER_LOCKUP) {
            return Some(OuterFault::Lockup);
        }
        OUTER_CRASHES
            .iter()
            .copied()
            .find(|sig| self.console.contains(sig))
            .map(OuterFault::Crash)
    }
}

/// The last `n` lines of `text`.
fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    /// Waits for QEMU to exit; kills it at `deadline` ([`WaitEnd::TimedOut`]). Returns as
    /// soon as the outer kernel reports a soft lockup on `console` ([`WaitEnd::Lockup`]) or
    /// the machine's heartbeat stops ([`WaitEnd::Silent`]), leaving QEMU running for a
    /// look at its monitor; dropping `self` kills it.
    fn wait_until(
        &mut self,
        deadline: Instant,
        console: &Path,
        silence_limit: Duration,
    ) -> WaitEnd {
        let Some(child) = self.0.as_mut() else {
            return WaitEnd::Exited;
        };
        let mut next_console_check = Instant::now() + LOCKUP_CHECK_EVERY;
        let mut heartbeat: Option<u64> = None;
        let mut heartbeat_deadline = Instant::now() + FIRST_HEARTBEAT_LIMIT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => {
                    self.0 = None;
                    return WaitEnd::Exited;
                }
                Ok(None) if Instant::now() >= deadline => {
                    self.kill();
                    return WaitEnd::TimedOut;
                }
                Ok(None) if Instant::now() >= next_console_check => {
                    next_console_check = Instant::now() + LOCKUP_CHECK_EVERY;
                    let text = read_bounded(console);
                    // (The caller asks QEMU's monitor, then kills it.)
                    if text.contains(OUTER_LOCKUP) {
                        return WaitEnd::Lockup;
                    }
                    let beat = last_heartbeat(&text);
                    if beat.is_some() && beat != heartbeat {
                        heartbeat = beat;
                        heartbeat_deadline = Instant::now() + silence_limit;
                    } else if Instant::now() >= heartbeat_deadline {
                        return WaitEnd::Silent;
                    }
                }
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("harness: waiting for QEMU: {e}"),
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_gives_the_status_and_ends_the_output() {
        let (out, status) = split_marker("a\nb\nHULL-HARNESS-END-x1 status=3\n", "x1");
        assert_eq!(out, "a\nb\n");
        assert_eq!(status, Some(3));
    }

    #[test]
    fn heartbeats_are_counted_and_left_out_of_the_console() {
        let console = format!("boot\n{HEARTBEAT} 1\nwarning\n{HEARTBEAT} 2\n");
        assert_eq!(last_heartbeat(&console), Some(2));
        assert_eq!(last_heartbeat("boot\n"), None);
        assert_eq!(without_heartbeats(&console), "boot\nwarning\n");
    }

    #[test]
    fn a_marker_with_another_nonce_is_only_output() {
        let text = "HULL-HARNESS-END-guess status=0\n";
        let (out, status) = split_marker(text, "real");
        assert_eq!(out, text);
        assert_eq!(status, None);
    }

    #[test]
    fn missing_parts_are_named_with_the_fix() {
        let empty = tempfile::tempdir().unwrap();
        let paths = HarnessPaths {
            host_kernel_dir: empty.path().join("current"),
            guest_kernel: empty.path().join("vmlinux"),
            qemu: Some(empty.path().join("qemu-system-x86_64")),
        };
        let why = paths.check().unwrap_err();
        assert!(why.contains("qemu-system-x86_64 not found"), "{why}");
        assert!(why.contains("run tests/harness/prepare.sh"), "{why}");
        assert!(why.contains("run kernel-config/build.sh"), "{why}");
    }

    fn run_with_console(console: &str, status: Option<i32>) -> HarnessRun {
        HarnessRun {
            output: String::new(),
            status,
            console: console.to_string(),
            qemu_stderr: String::new(),
            elapsed: Duration::ZERO,
            timed_out: status.is_none(),
            outer_lockup: false,
            outer_silent: false,
            attempts: 1,
            retried_after: None,
            monitor: String::new(),
        }
    }

    #[test]
    fn a_kernel_crash_of_the_test_host_is_a_failure_and_never_retried() {
        for console in [
            "Kernel panic - not syncing: Fatal exception",
            "Oops: general protection fault, probably for non-canonical address",
            "BUG: kernel NULL pointer dereference, address: 0000000000000000",
            "RIP: 0010:kvm_arch_vcpu_ioctl_run+0x12/0x40 [kvm]",
        ] {
            // Even when the script itself got to exit 0.
            for status in [None, Some(0)] {
                let run = run_with_console(&format!("boot\n{console}\n"), status);
                let fault = run.outer_fault().expect(console);
                assert!(matches!(fault, OuterFault::Crash(_)), "{console}: {fault}");
                assert!(!run.success(), "{console}");
                assert!(!retry_allowed(fault, false), "{console}");
                assert!(!retry_allowed(fault, true), "{console}: even when opted in");
            }
        }
    }

    #[test]
    fn only_a_frozen_machine_may_be_retried_and_only_when_opted_in() {
        let mut frozen = run_with_console("boot\n", None);
        frozen.outer_silent = true;
        assert_eq!(frozen.outer_fault(), Some(OuterFault::Frozen));
        assert!(
            !retry_allowed(OuterFault::Frozen, false),
            "never by default"
        );
        assert!(retry_allowed(OuterFault::Frozen, true));
        let mut lockup = run_with_console("watchdog: BUG: soft lockup - CPU#0 stuck\n", None);
        lockup.outer_lockup = true;
        assert_eq!(lockup.outer_fault(), Some(OuterFault::Lockup));
        assert!(!retry_allowed(OuterFault::Lockup, true));
        let healthy = run_with_console("boot\n", Some(0));
        assert_eq!(healthy.outer_fault(), None);
        assert!(healthy.success());
    }

    #[test]
    #[should_panic(expected = "reserved for the harness")]
    fn tests_cannot_replace_the_init() {
        let _ = Harness::new().text("/init", "#!/bin/sh\n", true);
    }
}
