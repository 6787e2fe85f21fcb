//! Helpers for the tier-4 vm-isolation tests and benchmark: where VM mode can run (this
//! host, when its KVM is hardware virtualisation; otherwise a nested-harness machine
//! carrying hull, hull-vmm, the static agent, the guest kernel and the process tests'
//! busybox root filesystem), and a script runner that records every step's stdout, stderr
//! and exit code and collects failed checks.
//!
//! The scripts use `$HULL_ROOT` (hull's state), `$R` (the step records), `$ROOTFS` (the
//! busybox root filesystem), `$K` (the guest kernel) and `P CMD` (CMD in process mode's
//! root: a chroot in the harness, itself directly), so the same script runs in both.

#![allow(dead_code)]

#[path = "../process_common/mod.rs"]
pub mod process_common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use hull_tests::harness::{Harness, HarnessPaths, HarnessRun};
use hull_tests::HostKvm;

/// Everything inside runs under TCG; a loaded machine is slower still.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(2400);
/// The guest kernel release `kernel-config/build.sh` builds (linux-source-6.12).
pub const GUEST_KERNEL_PREFIX: &str = "6.12.";

/// One harness at a time: two TCG machines on two cores only slow each other down.
static HARNESS: Mutex<()> = Mutex::new(());

/// The static guest agent built by `RUSTFLAGS="-C target-feature=+crt-static" cargo build
/// -p hull-agent --target x86_64-unknown-linux-gnu` (`$HULL_AGENT` overrides).
pub fn static_agent() -> PathBuf {
    if let Some(p) = std::env::var_os("HULL_AGENT") {
        return PathBuf::from(p);
    }
    let bin = hull_tests::bin_dir();
    let profile = bin.file_name().expect("profile dir").to_owned();
    let target = bin.parent().expect("target dir");
    let candidates = [
        target
            .join("x86_64-unknown-linux-gnu")
            .join(&profile)
            .join("hull-agent"),
        target.join("x86_64-unknown-linux-gnu/release/hull-agent"),
        target.join("x86_64-unknown-linux-gnu/debug/hull-agent"),
    ];
    for c in &candidates {
        if c.is_file() && hull_tests::initramfs::is_static_executable(c) {
            return c.clone();
        }
    }
    panic!(
        "no static hull-agent in {candidates:?}: build it with RUSTFLAGS=\"-C \
         target-feature=+crt-static\" cargo build -p hull-agent --target \
         x86_64-unknown-linux-gnu"
    );
}

/// Set to `1` to test VM mode in the nested harness even on a host with hardware KVM.
pub const IN_HARNESS_ENV: &str = "HULL_VM_TESTS_IN_HARNESS";

/// Where a VM-mode test script runs.
pub enum VmTestHost {
    /// In a nested-harness machine (this host's KVM cannot boot the guest).
    Harness(Harness),
    /// Directly on this host, whose KVM is hardware virtualisation, with a state root and
    /// record directory of its own.
    Direct {
        /// The busybox root filesystem.
        rootfs: PathBuf,
        /// vCPUs the test wants the host to have (the harness's `.cpus`).
        cpus: u32,
    },
}

impl VmTestHost {
    /// A host of at least `n` CPUs (the harness machine gets them; a direct host has what
    /// it has, and the test adapts to [`VmTestHost::cpus_available`]).
    pub fn cpus(self, n: u32) -> Self {
        match self {
            VmTestHost::Harness(h) => VmTestHost::Harness(h.cpus(n)),
            VmTestHost::Direct { rootfs, .. } => VmTestHost::Direct { rootfs, cpus: n },
        }
    }

    /// The CPUs a VM can get there.
    pub fn cpus_available(&self) -> u32 {
        match self {
            VmTestHost::Harness(_) => u32::MAX,
            VmTestHost::Direct { .. } => std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
        }
    }

    /// Whether the scripts run in the harness (where process mode has cgroup v2).
    pub fn is_harness(&self) -> bool {
        matches!(self, VmTestHost::Harness(_))
    }
}

/// Where VM mode is tested: directly when this host's KVM is hardware virtualisation
/// (unless [`IN_HARNESS_ENV`] asks for the harness), else in the nested harness.
pub fn vm_test_host(rootfs: &Path) -> VmTestHost {
    let forced = std::env::var(IN_HARNESS_ENV).is_ok_and(|v| v == "1");
    if hull_tests::host_kvm() == HostKvm::Hardware && !forced {
        eprintln!(
            "vm-mode tests: running directly on this host's hardware KVM (no nested harness; \
             {IN_HARNESS_ENV}=1 to use it)"
        );
        return VmTestHost::Direct {
            rootfs: rootfs.to_path_buf(),
            cpus: 1,
        };
    }
    VmTestHost::Harness(vm_harness(rootfs))
}

/// A harness machine carrying hull, hull-vmm, the static agent, the guest kernel,
/// mkfs.erofs and mkfs.ext4 (the image disk and the containers' writable layer disks are
/// built inside, as on a user's host) and the busybox
/// root filesystem of the process-mode tests.
pub fn vm_harness(rootfs: &Path) -> Harness {
    vm_harness_loading(rootfs, &["overlay.load"])
}

/// [`vm_harness`] plus what container networks need in the test host: the network
/// modules (veth, bridge, tun, nf_tables/xtables, tc's ingress/u32/mirred), the CNI
/// plugins, iptables (nf_tables) with its extensions, and tc.
pub fn vm_network_harness(rootfs: &Path) -> Harness {
    let mut h = vm_harness_loading(rootfs, &["overlay.load", "network.load"]);
    for plugin in ["bridge", "host-local", "portmap", "firewall", "loopback"] {
        h = h.binary(
            &Path::new("/usr/lib/cni").join(plugin),
            &format!("/usr/lib/cni/{plugin}"),
        );
    }
    // iptables is one multi-call binary that looks at its name.
    let xtables = Path::new("/usr/sbin/xtables-nft-multi");
    h.binary(xtables, "/usr/sbin/iptables")
        .binary(xtables, "/usr/sbin/iptables-save")
        .binary(xtables, "/usr/sbin/ip6tables")
        .dir(
            Path::new("/usr/lib/x86_64-linux-gnu/xtables"),
            "/usr/lib/x86_64-linux-gnu/xtables",
        )
        .binary(Path::new("/usr/sbin/tc"), "/usr/sbin/tc")
}

fn vm_harness_loading(rootfs: &Path, load_lists: &[&str]) -> Harness {
    Harness::require();
    let bin = hull_tests::bin_dir();
    // Modules of the test-host kernel that tests/harness/prepare.sh collected with their
    // insmod order: overlayfs for the process-mode containers of the comparison, and the
    // network set for the network tests.
    let modules = HarnessPaths::resolve().host_kernel_dir.join("modules");
    let mut harness = Harness::new();
    let mut insmod = String::new();
    let mut loaded: Vec<String> = Vec::new();
    for list in load_lists {
        let order = std::fs::read_to_string(modules.join(list)).unwrap_or_else(|e| {
            panic!(
                "{}/{list}: {e} (re-run tests/harness/prepare.sh)",
                modules.display()
            )
        });
        for module in order.lines().map(str::trim).filter(|m| !m.is_empty()) {
            if loaded.iter().any(|m| m == module) {
                continue;
            }
            harness = harness.file(&modules.join(module), &format!("/lib/hull-extra/{module}"));
            insmod.push_str(&format!("insmod /lib/hull-extra/{module}\n"));
            loaded.push(module.to_string());
        }
    }
    harness
        .text("/lib/hull-extra/load.sh", &insmod, true)
        .binary(&bin.join("hull"), "/usr/local/bin/hull")
        .binary(&bin.join("hull-vmm"), "/usr/local/bin/hull-vmm")
        .binary(Path::new("/usr/bin/mkfs.erofs"), "/usr/bin/mkfs.erofs")
        .binary(Path::new("/usr/sbin/mke2fs"), "/usr/sbin/mkfs.ext4")
        .binary(Path::new("/usr/bin/script"), "/usr/bin/script")
        .file(&static_agent(), "/usr/local/lib/hull/hull-agent")
        .file(&Harness::guest_kernel(), "/usr/local/lib/hull/vmlinux")
        .dir(rootfs, "/images/busybox")
}

/// Shell prelude: `t NAME CMD...` recording CMD's stdout, stderr and status under NAME
/// (each step bounded by `STEP_TIMEOUT` seconds, default 300), `record`, `wait_for`,
/// `vmms`, and the image imported as in the process tests.
pub const PRELUDE: &str = r#"
# Under TCG (and on a loaded machine) a guest boot can take far longer than on hardware.
export HULL_VM_BOOT_TIMEOUT=180
I=hull/busybox
mkdir -p $R
# Prints one recorded file as `@@@NAME HEX` (hex keeps bytes exact), as soon as it exists,
# so a run that times out still reports what it did.
emit() { for f in "$@"; do [ -f "$f" ] && printf '@@@%s %s\n' "${f##*/}" "$(od -An -tx1 -v "$f" | tr -d ' \n')"; done; }
# On a step that timed out: the VMs' consoles and logs, and the process list.
diag() {
    for f in $HULL_ROOT/run/containers/*/console.log $HULL_ROOT/run/containers/*/vmm.log; do
        [ -f "$f" ] && { echo "== $f"; tail -n 15 "$f"; }
    done > $R/$1.diag 2>&1
    ps >> $R/$1.diag
    emit $R/$1.diag
}
# t NAME CMD...: runs CMD (bounded) with stdin from /dev/null and records stdout, stderr
# and status under NAME; ti: the same with the caller's stdin.
run_step() {
    n=$1; shift
    limit=${STEP_TIMEOUT:-300}
    a=$(cut -d. -f1 /proc/uptime)
    timeout -s KILL $limit "$@" >$R/$n.out 2>$R/$n.err
    c=$?; echo $c >$R/$n.code
    b=$(cut -d. -f1 /proc/uptime)
    emit $R/$n.out $R/$n.err $R/$n.code
    [ $((b - a)) -ge $limit ] && diag $n
    return 0
}
t() { run_step "$@" </dev/null; }
ti() { run_step "$@"; }
# A value computed by the script itself.
record() { n=$1; shift; printf '%s\n' "$*" > $R/$n.out; emit $R/$n.out; }
# wait_for NAME SECS CMD...: polls CMD every 0.2 s until it succeeds or SECS pass, and
# records under NAME the wait in centiseconds, or `timeout` (checked by the test). A
# condition with a deadline, never a fixed sleep: TCG on a loaded machine is slow.
cs() { cut -d' ' -f1 /proc/uptime | tr -d .; }
wait_for() {
    n=$1; limit=$2; shift 2
    a=$(cs)
    until "$@" >/dev/null 2>&1; do
        if [ $(($(cs) - a)) -ge $((limit * 100)) ]; then record $n timeout; return 1; fi
        sleep 0.2
    done
    record $n "$(($(cs) - a))"
}
# vmms: how many hull-vmm processes of this state root run (their working directory is a
# container's state directory), so other hull users on a shared host do not count.
vmms() {
    for p in /proc/[0-9]*; do
        [ "$(cat $p/comm 2>/dev/null)" = hull-vmm ] || continue
        case "$(readlink $p/cwd 2>/dev/null)" in "$HULL_ROOT"/*) echo $p;; esac
    done | wc -l
}
no_vmms() { [ "$(vmms)" -eq 0 ]; }
# record_jailed_vmm CGROUP: the (one) running hull-vmm seen from the host, as steps vmm_*
# for `check_jailed_vmm`: every thread's ids, capabilities and seccomp mode, its root and
# mounts, its cgroup and that cgroup's limits (CGROUP: its path under /sys/fs/cgroup, a
# glob), the VM id leases.
record_jailed_vmm() {
    vmm=$(for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = hull-vmm ] && echo ${p#/proc/}; done | head -n 1)
    record vmm_threads "$(for t in /proc/$vmm/task/*; do grep -E '^(Name|Uid|Gid|CapEff|CapBnd|NoNewPrivs|Seccomp|NSpid):' $t/status | tr -s '\t\n' '  '; echo; done)"
    record vmm_root "$(ls -A /proc/$vmm/root/ | tr '\n' ' ')|$(wc -l < /proc/$vmm/mountinfo)|$(ls -A /proc/$vmm/root/proc /proc/$vmm/root/etc 2>&1 | wc -l)"
    record vmm_cgroup "$(cat /proc/$vmm/cgroup)|$(cat /sys/fs/cgroup/$1/memory.max)|$(cat /sys/fs/cgroup/$1/pids.max)"
    record vmm_leases "$(ls /run/hull-vm-ids | grep -c '^[0-9]')"
}
# Process-mode limits are checked where the cgroup tree is v2 (the harness mounts it).
[ -f /sys/fs/cgroup/cgroup.controllers ] && record cgroup2 yes || record cgroup2 no
# These scenarios are not about networking: containers get loopback only, as they had
# before hull had networks (the network tests set up CNI themselves).
mkdir -p $HULL_ROOT
echo '{"network": {"default": "none"}}' > $HULL_ROOT/config.json
t import hull image import --rootfs $ROOTFS -t hull/busybox --cmd '["sh"]' -q
"#;

/// What the harness machine does before the prelude: its own state root and records,
/// cgroup2 and overlayfs for process-mode containers, and `P`.
pub const HARNESS_SETUP: &str = concat!(
    r#"
export HULL_ROOT=/var/lib/hull R=/tmp/r ROOTFS=/images/busybox K=/usr/local/lib/hull/vmlinux
# (Made before the bind mounts below, so that process mode sees the same state root.)
mkdir -p $HULL_ROOT $R
mount -t cgroup2 none /sys/fs/cgroup
sh /lib/hull-extra/load.sh
# Process-mode containers pivot_root out of their parent's root, which the kernel refuses
# when that root is the initramfs itself: `P CMD...` runs CMD chrooted into a tmpfs mount
# holding bind mounts of the harness's directories (the same files, the same state root).
"#,
    hull_tests::newroot_setup!(),
    r#"printf '#!/bin/sh\nexec chroot /newroot "$@"\n' > /usr/local/bin/P
chmod 755 /usr/local/bin/P
# hull-vmm's jail pivot_roots into its directory, which the kernel refuses while the root
# is the initramfs itself (as on no real host): hull always runs chrooted into /newroot,
# like the process-mode containers above (`P` is then harmless).
mv /usr/local/bin/hull /usr/local/bin/hull.bin
printf '#!/bin/sh\n[ -d /newroot/usr ] && exec chroot /newroot /usr/local/bin/hull.bin "$@"\nexec /usr/local/bin/hull.bin "$@"\n' > /usr/local/bin/hull
chmod 755 /usr/local/bin/hull
"#
);

/// Shell epilogue: marks that the script ran to its end.
pub const EPILOGUE: &str = r#"
record script_end done
"#;

/// The recorded results of one harness run.
pub struct Results {
    files: HashMap<String, String>,
    run: HarnessRun,
    failures: Vec<String>,
}

fn unhex(s: &str) -> String {
    let bytes: Vec<u8> = (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex from od"))
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

impl Results {
    /// Runs `body` between the prelude and epilogue, where `host` says.
    pub fn collect(host: &VmTestHost, body: &str) -> Results {
        let _one = HARNESS.lock().unwrap_or_else(|e| e.into_inner());
        let run = match host {
            VmTestHost::Harness(harness) => {
                let script = format!("{HARNESS_SETUP}\n{PRELUDE}\n{body}\n{EPILOGUE}");
                harness.run(&script, RUN_TIMEOUT)
            }
            VmTestHost::Direct { rootfs, .. } => {
                run_direct(rootfs, &format!("{PRELUDE}\n{body}\n{EPILOGUE}"))
            }
        };
        let mut files = HashMap::new();
        for line in run.output.lines() {
            if let Some(rest) = line.strip_prefix("@@@") {
                let (name, hex) = rest.split_once(' ').unwrap_or((rest, ""));
                files.insert(name.to_string(), unhex(hex.trim()));
            }
        }
        let mut r = Results {
            files,
            run,
            failures: Vec::new(),
        };
        if !r.run.success() || r.run.timed_out || !r.files.contains_key("script_end.out") {
            let fault = r
                .run
                .outer_fault()
                .map(|f| format!(", test host failed: {f}"))
                .unwrap_or_default();
            let why = format!(
                "harness script did not finish (status {:?}, timed out {}{fault})",
                r.run.status, r.run.timed_out
            );
            r.failures.push(why);
        }
        r.expect_code("import", 0);
        r
    }

    /// stdout of step `name`.
    pub fn out(&self, name: &str) -> &str {
        self.files
            .get(&format!("{name}.out"))
            .map(String::as_str)
            .unwrap_or("<missing>")
    }

    /// stderr of step `name`.
    pub fn err(&self, name: &str) -> &str {
        self.files
            .get(&format!("{name}.err"))
            .map(String::as_str)
            .unwrap_or("<missing>")
    }

    /// Exit code of step `name`.
    pub fn code(&self, name: &str) -> Option<i32> {
        self.files
            .get(&format!("{name}.code"))
            .and_then(|c| c.trim().parse().ok())
    }

    /// Records a failed check unless `ok`.
    pub fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.failures.push(what.into());
        }
    }

    /// Step `name` exited with `code`.
    pub fn expect_code(&mut self, name: &str, code: i32) {
        let got = self.code(name);
        let what = format!(
            "{name}: exit code {got:?}, expected {code}\n  stdout: {:?}\n  stderr: {:?}",
            self.out(name),
            self.err(name)
        );
        self.check(got == Some(code), what);
    }

    /// Step `name` printed exactly `expected` on stdout.
    pub fn expect_out(&mut self, name: &str, expected: &str) {
        let what = format!(
            "{name}: stdout {:?}, expected {expected:?} (stderr {:?})",
            self.out(name),
            self.err(name)
        );
        self.check(self.out(name) == expected, what);
    }

    /// Step `name`'s stdout contains `needle`.
    pub fn expect_out_contains(&mut self, name: &str, needle: &str) {
        let what = format!(
            "{name}: stdout {:?} lacks {needle:?} (stderr {:?})",
            self.out(name),
            self.err(name)
        );
        self.check(self.out(name).contains(needle), what);
    }

    /// The `wait_for` recorded under `name` saw its condition before its deadline.
    pub fn expect_waited(&mut self, name: &str) {
        let got = self.out(name).trim().to_string();
        let ok = got.parse::<u64>().is_ok();
        self.check(
            ok,
            format!("{name}: the condition did not come true in time ({got})"),
        );
    }

    /// Step `name`'s stderr contains `needle`.
    pub fn expect_err_contains(&mut self, name: &str, needle: &str) {
        let what = format!("{name}: stderr {:?} lacks {needle:?}", self.err(name));
        self.check(self.err(name).contains(needle), what);
    }

    /// Panics listing every failed check (with the run's output tail and the
    /// diagnostics of steps that timed out, for context).
    pub fn finish(self) {
        if self.failures.is_empty() {
            return;
        }
        let mut msg = format!("{} check(s) failed:\n", self.failures.len());
        for f in &self.failures {
            let _ = writeln!(msg, "- {f}");
        }
        let mut diags: Vec<_> = self
            .files
            .iter()
            .filter(|(k, _)| k.ends_with(".diag"))
            .collect();
        diags.sort();
        for (name, text) in diags {
            let _ = writeln!(msg, "--- {name} (step killed after its timeout)\n{text}");
        }
        let tail: Vec<&str> = self
            .run
            .output
            .lines()
            .filter(|l| !l.starts_with("@@@"))
            .collect();
        let _ = writeln!(
            msg,
            "--- script output (last lines)\n{}\n--- harness console (last lines)\n{}",
            tail[tail.len().saturating_sub(40)..].join("\n"),
            last_lines(&self.run.console, 30)
        );
        if !self.run.monitor.is_empty() {
            let _ = writeln!(
                msg,
                "--- QEMU monitor at the failure\n{}",
                last_lines(&self.run.monitor, 60)
            );
        }
        panic!("{msg}");
    }
}

/// Runs a test script on this host (hardware KVM) with busybox's shell, as the harness
/// would: a state root, record directory and `P` of its own, hull from this build, stdout
/// and stderr together, killed at [`RUN_TIMEOUT`].
fn run_direct(rootfs: &Path, script: &str) -> HarnessRun {
    use std::process::{Command, Stdio};
    use std::time::Instant;
    let dir = tempfile::Builder::new()
        .prefix("hull-vm-direct-")
        .tempdir()
        .expect("temp dir for the direct run");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // Process mode needs no chroot here: the host's root is a real filesystem.
    std::fs::write(bin.join("P"), "#!/bin/sh\nexec \"$@\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("P"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}:{}",
        bin.display(),
        hull_tests::bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = dir.path().join("output.log");
    let start = Instant::now();
    let mut child = Command::new("/bin/busybox")
        .args(["sh", "-c", script])
        .env("PATH", path)
        .env("HULL_ROOT", dir.path().join("state"))
        .env("HULL_AGENT", static_agent())
        .env("R", dir.path().join("r"))
        .env("ROOTFS", rootfs)
        .env("K", Harness::guest_kernel())
        .env("HULL_KERNEL", Harness::guest_kernel())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
        .spawn()
        .expect("run the test script with /bin/busybox sh");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() >= RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut output = std::fs::read_to_string(&log).unwrap_or_default();
    output.push_str(&std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default());
    HarnessRun {
        output,
        status: status.and_then(|s| s.code()),
        console: String::new(),
        qemu_stderr: String::new(),
        elapsed: start.elapsed(),
        timed_out: status.is_none(),
        outer_lockup: false,
        outer_silent: false,
        attempts: 1,
        retried_after: None,
        monitor: String::new(),
    }
}

fn last_lines(s: &str, n: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(n)..].join("\n")
}

/// The busybox root filesystem the process-mode tests use, in a temporary directory that
/// goes when the returned guard is dropped.
pub fn busybox_rootfs() -> tempfile::TempDir {
    busybox_rootfs_with(&[])
}

/// [`busybox_rootfs`] with symlinks (path in the root, target).
pub fn busybox_rootfs_with(symlinks: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("hull-vm-rootfs-")
        .tempdir()
        .expect("temp dir for the rootfs");
    process_common::build_rootfs(dir.path(), symlinks);
    dir
}

/// The jailed VMM recorded by `record_jailed_vmm` (steps `vmm_*`): the VM's own
/// unprivileged uid on every thread, no capabilities, no_new_privs, seccomp, PID 1 of its
/// own PID namespace; its root (the jail directory) holds only its socket and nothing of
/// the host (no /proc, no /etc) and its mount table one entry; its cgroup `cgroup` caps
/// memory (256 MiB guest + 64) and tasks; one VM id lease.
pub fn check_jailed_vmm(r: &mut Results, cgroup: &str) {
    let threads = r.out("vmm_threads").to_string();
    let (mut seen, mut pid_1) = (0, 0);
    for line in threads
        .lines()
        .filter(|l| l.starts_with("Name: hull-vmm") || l.starts_with("Name: vcpu"))
    {
        seen += 1;
        // "Name: vcpu0 Uid: 1 1 1 1 Gid: ...": the words after `key`, up to the next key.
        let words: Vec<&str> = line.split_whitespace().collect();
        let field = |key: &str| -> Vec<String> {
            words
                .iter()
                .skip_while(|w| **w != key)
                .skip(1)
                .take_while(|w| !w.ends_with(':'))
                .map(|w| w.to_string())
                .collect()
        };
        let uid = field("Uid:");
        let first: u64 = uid.first().and_then(|u| u.parse().ok()).unwrap_or(0);
        let ok = uid.len() == 4
            && first >= 0xc000_0000
            && uid.iter().all(|u| *u == uid[0])
            && field("Gid:") == uid
            && field("CapEff:") == ["0000000000000000"]
            && field("CapBnd:") == ["0000000000000000"]
            && field("NoNewPrivs:") == ["1"]
            && field("Seccomp:") == ["2"]
            && field("NSpid:").len() == 2;
        r.check(ok, format!("a jailed VMM thread: {line:?}"));
        if field("NSpid:").last().map(String::as_str) == Some("1") {
            pid_1 += 1;
        }
    }
    r.check(
        seen >= 2 && pid_1 == 1,
        format!("the VMM's main (PID 1 of its namespace) and vCPU threads: {threads:?}"),
    );
    let root = r.out("vmm_root").trim().to_string();
    r.check(
        root == "vsock.sock |1|2",
        format!("the VMM's root holds its socket only, one mount, no /proc or /etc: {root:?}"),
    );
    let limits = r.out("vmm_cgroup").to_string();
    r.check(
        limits.contains(&format!("0::/{cgroup}|"))
            && limits.contains(&format!("|{}|5", (256u64 + 64) << 20)),
        format!("the VMM's cgroup {cgroup} and its limits: {limits:?}"),
    );
    r.expect_out("vmm_leases", "1\n");
}
