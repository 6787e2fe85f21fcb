//! The individual checks. Each reads [`HostFacts`] only and returns one [`Check`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Affects, Check, HostFacts, Status, GUEST_KERNEL_PATH};

/// What kind of KVM the host offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KvmKind {
    /// Hardware virtualisation, Intel VT-x (`vmx`, kvm_intel).
    VtX,
    /// Hardware virtualisation, AMD-V (`svm`, kvm_amd).
    AmdV,
    /// PVM (kvm_pvm): KVM without hardware support; guest kernel mode is emulated.
    Pvm,
    /// /dev/kvm exists but none of the known back-ends was recognised.
    Unknown,
    /// No /dev/kvm.
    None,
}

impl KvmKind {
    /// Words for a person.
    pub fn describe(self) -> &'static str {
        match self {
            KvmKind::VtX => "hardware KVM (Intel VT-x)",
            KvmKind::AmdV => "hardware KVM (AMD-V)",
            KvmKind::Pvm => "PVM (paravirtualised KVM, no hardware virtualisation)",
            KvmKind::Unknown => "KVM of an unrecognised kind",
            KvmKind::None => "no KVM",
        }
    }
}

/// cgroup layout of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// Only legacy v1 hierarchies.
    V1,
    /// v1 controller hierarchies plus a cgroup2 mount (systemd's "hybrid").
    Hybrid,
    /// The unified v2 hierarchy only.
    V2,
    /// No cgroup filesystem mounted.
    None,
}

/// Which cgroup controllers exist and where.
#[derive(Debug, Clone, Serialize)]
pub struct CgroupLayout {
    /// Version/layout.
    pub version: CgroupVersion,
    /// Controllers that can be used (mounted v1 hierarchies, or listed in v2
    /// `cgroup.controllers`).
    pub controllers: Vec<String>,
    /// Where the cgroup2 hierarchy is mounted, if anywhere.
    pub unified_mount: Option<String>,
}

/// Controllers hull sets limits with.
const NEEDED_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];
/// v1 controller names we recognise in mount options (others are flags like `rw`).
const V1_CONTROLLERS: [&str; 13] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "blkio",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
];
/// Namespaces the process backend creates for every container.
const NAMESPACES: [&str; 6] = ["mnt", "pid", "uts", "ipc", "net", "cgroup"];

/// All checks, in display order.
pub fn all(facts: &HostFacts) -> Vec<Check> {
    vec![
        check_root(facts),
        check_namespaces(facts),
        check_user_namespaces(facts),
        check_cgroups(facts),
        check_overlayfs(facts),
        check_seccomp(facts),
        check_state_dirs(facts),
        check_kvm(facts),
        check_vmm(facts),
        check_guest_kernel(facts),
        check_guest_agent(facts),
        check_vm_disk_tool(facts),
        check_nested_harness(facts),
        super::network::check_network(facts),
    ]
}

/// Flags of the first CPU in /proc/cpuinfo.
pub(super) fn cpu_flags(cpuinfo: &str) -> impl Iterator<Item = &str> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, flags)| flags.split_whitespace())
        .into_iter()
        .flatten()
}

/// Which KVM the host has.
pub fn kvm_kind(facts: &HostFacts) -> KvmKind {
    if !facts.exists("/dev/kvm") {
        return KvmKind::None;
    }
    if facts.exists("/sys/module/kvm_pvm") {
        return KvmKind::Pvm;
    }
    let cpuinfo = facts.read("/proc/cpuinfo").unwrap_or_default();
    let has = |flag: &str| cpu_flags(&cpuinfo).any(|f| f == flag);
    if has("vmx") && facts.exists("/sys/module/kvm_intel") {
        KvmKind::VtX
    } else if has("svm") && facts.exists("/sys/module/kvm_amd") {
        KvmKind::AmdV
    } else {
        KvmKind::Unknown
    }
}

pub(super) fn ok(
    id: &'static str,
    title: &'static str,
    affects: Affects,
    finding: String,
) -> Check {
    Check {
        id,
        title,
        status: Status::Ok,
        finding,
        fix: None,
        affects,
    }
}

pub(super) fn problem(
    id: &'static str,
    title: &'static str,
    status: Status,
    affects: Affects,
    finding: String,
    fix: String,
) -> Check {
    Check {
        id,
        title,
        status,
        finding,
        fix: Some(fix),
        affects,
    }
}

fn check_root(facts: &HostFacts) -> Check {
    const ID: &str = "privileges";
    const TITLE: &str = "Privileges";
    if facts.euid == 0 {
        ok(ID, TITLE, Affects::Both, "running as root".into())
    } else {
        problem(
            ID,
            TITLE,
            Status::Fail,
            Affects::Both,
            format!(
                "running as uid {}; hull mounts filesystems, creates cgroups and opens /dev/kvm, \
                 which needs root (rootless mode is not supported)",
                facts.euid
            ),
            "run hull as root (e.g. with sudo)".into(),
        )
    }
}

fn check_namespaces(facts: &HostFacts) -> Check {
    const ID: &str = "namespaces";
    const TITLE: &str = "Namespaces";
    let missing: Vec<&str> = NAMESPACES
        .iter()
        .copied()
        .filter(|ns| !facts.exists(&format!("/proc/self/ns/{ns}")))
        .collect();
    if missing.is_empty() {
        ok(
            ID,
            TITLE,
            Affects::Process,
            format!("{} namespaces are available", NAMESPACES.join(", ")),
        )
    } else {
        problem(
            ID,
            TITLE,
            Status::Fail,
            Affects::Process,
            format!(
                "the kernel lacks the {} namespace(s); every process container gets its own \
                 mount, PID, UTS, IPC, network and cgroup namespace",
                missing.join(", ")
            ),
            "use a kernel built with CONFIG_NAMESPACES and the matching CONFIG_*_NS options".into(),
        )
    }
}

fn check_user_namespaces(facts: &HostFacts) -> Check {
    const ID: &str = "user-namespaces";
    const TITLE: &str = "User namespaces";
    let max = facts
        .read_trimmed("/proc/sys/user/max_user_namespaces")
        .and_then(|v| v.parse::<u64>().ok());
    // Debian/Ubuntu kernels carry an extra switch for unprivileged users.
    let unprivileged = facts.read_trimmed("/proc/sys/kernel/unprivileged_userns_clone");
    match max {
        None | Some(0) => problem(
            ID,
            TITLE,
            Status::Warn,
            Affects::Process,
            "user namespaces are disabled (max_user_namespaces is 0 or missing); hull runs \
             containers as root without them, but rootless tools on this host cannot run"
                .into(),
            "sysctl -w user.max_user_namespaces=15000 (and CONFIG_USER_NS=y in the kernel)".into(),
        ),
        Some(n) if unprivileged.as_deref() == Some("0") => problem(
            ID,
            TITLE,
            Status::Warn,
            Affects::Process,
            format!(
                "available to root (max {n}) but not to unprivileged users \
                 (kernel.unprivileged_userns_clone=0); hull runs as root, so this only matters \
                 for rootless tools"
            ),
            "sysctl -w kernel.unprivileged_userns_clone=1 if unprivileged users need them".into(),
        ),
        Some(n) => ok(
            ID,
            TITLE,
            Affects::Process,
            format!("available (up to {n} per user)"),
        ),
    }
}

/// Reads the cgroup layout from /proc/self/mounts.
pub fn cgroup_layout(facts: &HostFacts) -> CgroupLayout {
    let mounts = facts.read("/proc/self/mounts").unwrap_or_default();
    let mut v1: Vec<String> = Vec::new();
    let mut unified: Option<String> = None;
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(mountpoint), Some(fstype), Some(opts)) =
            (fields.get(1), fields.get(2), fields.get(3))
        else {
            continue;
        };
        match *fstype {
            "cgroup2" => {
                unified.get_or_insert_with(|| mountpoint.to_string());
            }
            "cgroup" => v1.extend(
                opts.split(',')
                    .filter(|o| V1_CONTROLLERS.contains(o))
                    .map(str::to_string),
            ),
            _ => {}
        }
    }
    let mut controllers = v1.clone();
    if let Some(mp) = &unified {
        if let Some(list) = facts.read(&format!("{mp}/cgroup.controllers")) {
            controllers.extend(list.split_whitespace().map(str::to_string));
        }
    }
    controllers.sort();
    controllers.dedup();
    let version = match (v1.is_empty(), unified.is_some()) {
        (false, true) => CgroupVersion::Hybrid,
        (false, false) => CgroupVersion::V1,
        (true, true) => CgroupVersion::V2,
        (true, false) => CgroupVersion::None,
    };
    CgroupLayout {
        version,
        controllers,
        unified_mount: unified,
    }
}

fn check_cgroups(facts: &HostFacts) -> Check {
    const ID: &str = "cgroups";
    const TITLE: &str = "cgroups";
    let layout = cgroup_layout(facts);
    let version = match layout.version {
        CgroupVersion::V1 => "v1 (legacy hierarchies only)".to_string(),
        CgroupVersion::Hybrid => format!(
            "hybrid: v1 controller hierarchies plus cgroup2 at {}",
            layout.unified_mount.as_deref().unwrap_or("?")
        ),
        CgroupVersion::V2 => format!(
            "v2 (unified hierarchy at {})",
            layout.unified_mount.as_deref().unwrap_or("?")
        ),
        CgroupVersion::None => {
            return problem(
                ID,
                TITLE,
                Status::Fail,
                Affects::Both,
                "no cgroup filesystem is mounted: hull cannot limit or account for containers"
                    .into(),
                "mount cgroup2 at /sys/fs/cgroup (mount -t cgroup2 none /sys/fs/cgroup) or boot \
                 with systemd"
                    .into(),
            );
        }
    };
    let missing: Vec<&str> = NEEDED_CONTROLLERS
        .iter()
        .copied()
        .filter(|c| !layout.controllers.iter().any(|have| have == c))
        .collect();
    let finding = format!(
        "{version}; controllers: {}",
        if layout.controllers.is_empty() {
            "none".to_string()
        } else {
            layout.controllers.join(", ")
        }
    );
    if missing.is_empty() {
        ok(ID, TITLE, Affects::Both, finding)
    } else {
        problem(
            ID,
            TITLE,
            Status::Warn,
            Affects::Both,
            format!(
                "{finding}; missing {}: the matching limits (--memory, --cpus, --pids-limit) \
                 cannot be enforced",
                missing.join(", ")
            ),
            format!(
                "enable the {} controller(s): on v2 add them to cgroup.subtree_control of the \
                 parent group; on v1 mount their hierarchies under /sys/fs/cgroup",
                missing.join(", ")
            ),
        )
    }
}

fn check_overlayfs(facts: &HostFacts) -> Check {
    const ID: &str = "overlayfs";
    const TITLE: &str = "overlayfs";
    let filesystems = facts.read("/proc/filesystems").unwrap_or_default();
    if filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
    {
        return ok(
            ID,
            TITLE,
            Affects::Process,
            "overlay is in /proc/filesystems: container root filesystems are image layers plus \
             a writable layer"
                .into(),
        );
    }
    let module = facts.kernel_release().and_then(|release| {
        let dir = format!("/lib/modules/{release}/kernel/fs/overlayfs");
        [
            "overlay.ko",
            "overlay.ko.xz",
            "overlay.ko.zst",
            "overlay.ko.gz",
        ]
        .iter()
        .map(|f| format!("{dir}/{f}"))
        .find(|p| facts.exists(p))
    });
    match module {
        Some(path) => problem(
            ID,
            TITLE,
            Status::Warn,
            Affects::Process,
            format!("overlay is not loaded but its module exists ({path}); mounting loads it"),
            "modprobe overlay (or add it to /etc/modules-load.d)".into(),
        ),
        None => problem(
            ID,
            TITLE,
            Status::Fail,
            Affects::Process,
            "overlayfs is neither in the kernel nor available as a module: process containers \
             need it for their root filesystem"
                .into(),
            "install a kernel with CONFIG_OVERLAY_FS (y or m)".into(),
        ),
    }
}

fn check_seccomp(facts: &HostFacts) -> Check {
    const ID: &str = "seccomp";
    const TITLE: &str = "seccomp";
    let status = facts.read("/proc/self/status").unwrap_or_default();
    let has_field = status.lines().any(|l| l.starts_with("Seccomp:"));
    let actions = facts.read_trimmed("/proc/sys/kernel/seccomp/actions_avail");
    match (has_field, actions) {
        (true, Some(actions)) if actions.split_whitespace().any(|a| a == "errno") => ok(
            ID,
            TITLE,
            Affects::Process,
            format!("seccomp filters are supported (actions: {actions})"),
        ),
        (true, _) => problem(
            ID,
            TITLE,
            Status::Fail,
            Affects::Process,
            "the kernel has seccomp strict mode but no filter mode (no \
             /proc/sys/kernel/seccomp/actions_avail with `errno`): hull cannot install its \
             syscall filter"
                .into(),
            "use a kernel built with CONFIG_SECCOMP_FILTER=y".into(),
        ),
        (false, _) => problem(
            ID,
            TITLE,
            Status::Fail,
            Affects::Process,
            "the kernel has no seccomp (no Seccomp field in /proc/self/status): hull cannot \
             install its syscall filter in process containers"
                .into(),
            "use a kernel built with CONFIG_SECCOMP=y and CONFIG_SECCOMP_FILTER=y".into(),
        ),
    }
}

/// Whether `dir` is, or could be created as, a writable directory. Writes nothing.
fn writable_dir(dir: &Path) -> Result<String, String> {
    let mut probe: PathBuf = dir.to_path_buf();
    loop {
        match probe.metadata() {
            Ok(meta) if !meta.is_dir() => {
                return Err(format!("{} exists and is not a directory", probe.display()))
            }
            Ok(_) => break,
            Err(_) => match probe.parent() {
                Some(parent) => probe = parent.to_path_buf(),
                None => return Err(format!("no existing parent of {}", dir.display())),
            },
        }
    }
    match nix::unistd::access(&probe, nix::unistd::AccessFlags::W_OK) {
        Ok(()) if probe == dir => Ok(format!("{} is writable", dir.display())),
        Ok(()) => Ok(format!(
            "{} will be created (its parent {} is writable)",
            dir.display(),
            probe.display()
        )),
        Err(err) => Err(format!("{} is not writable: {err}", probe.display())),
    }
}

fn check_state_dirs(facts: &HostFacts) -> Check {
    const ID: &str = "state-dirs";
    const TITLE: &str = "State directories";
    let results = [&facts.state.root, &facts.state.run_root].map(|d| writable_dir(d));
    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    if errors.is_empty() {
        let found: Vec<&String> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        ok(
            ID,
            TITLE,
            Affects::Both,
            found
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        )
    } else {
        problem(
            ID,
            TITLE,
            Status::Fail,
            Affects::Both,
            format!(
                "hull cannot keep its state: {}",
                errors
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            format!(
                "run as root, or point --root (HULL_ROOT) at a writable directory (now {} and {})",
                facts.state.root.display(),
                facts.state.run_root.display()
            ),
        )
    }
}

fn check_kvm(facts: &HostFacts) -> Check {
    const ID: &str = "kvm";
    const TITLE: &str = "KVM";
    let cpuinfo = facts.read("/proc/cpuinfo").unwrap_or_default();
    let has = |flag: &str| cpu_flags(&cpuinfo).any(|f| f == flag);
    match kvm_kind(facts) {
        kind @ (KvmKind::VtX | KvmKind::AmdV) => {
            let path = facts.host_path("/dev/kvm");
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
            {
                Ok(_) => ok(
                    ID,
                    TITLE,
                    Affects::Vm,
                    format!(
                        "{}: /dev/kvm is usable; microVMs boot an unmodified Linux guest kernel",
                        kind.describe()
                    ),
                ),
                Err(err) => problem(
                    ID,
                    TITLE,
                    Status::Fail,
                    Affects::Vm,
                    format!(
                        "{} is present but /dev/kvm cannot be opened: {err}",
                        kind.describe()
                    ),
                    "run as root or add the user to the `kvm` group".into(),
                ),
            }
        }
        KvmKind::Pvm => problem(
            ID,
            TITLE,
            Status::Fail,
            Affects::Vm,
            "/dev/kvm is PVM (kvm_pvm is loaded; the CPU has no vmx/svm): guest user mode runs \
             natively but guest kernel mode is emulated instruction by instruction, so an \
             unmodified Linux guest does not boot usefully (only PVM-enlightened guest kernels \
             do). --isolation=vm cannot run directly on this host"
                .into(),
            "run VM mode inside the nested harness (QEMU/TCG with emulated AMD-V, see \
             tests/harness and `hull bench --harness`), or use a host with hardware \
             virtualisation (VT-x/AMD-V)"
                .into(),
        ),
        KvmKind::Unknown => problem(
            ID,
            TITLE,
            Status::Fail,
            Affects::Vm,
            "/dev/kvm exists but neither kvm_intel (with vmx) nor kvm_amd (with svm) nor \
             kvm_pvm is loaded: hull cannot tell whether it boots a Linux guest"
                .into(),
            "load kvm_intel or kvm_amd for this CPU (modprobe kvm_intel / kvm_amd)".into(),
        ),
        KvmKind::None => {
            let (finding, fix) = if has("vmx") || has("svm") {
                (
                    "the CPU supports hardware virtualisation but /dev/kvm is missing",
                    if has("vmx") {
                        "modprobe kvm_intel"
                    } else {
                        "modprobe kvm_amd"
                    },
                )
            } else {
                (
                    "no /dev/kvm and the CPU shows no vmx/svm flag: --isolation=vm cannot run",
                    "enable VT-x/AMD-V in the firmware, or nested virtualisation in the \
                     hypervisor this host runs in; meanwhile use the nested harness",
                )
            };
            problem(
                ID,
                TITLE,
                Status::Fail,
                Affects::Vm,
                finding.into(),
                fix.into(),
            )
        }
    }
}

/// Where the vm backend looks for a hull binary (`hull-vmm`, `hull-agent`), in its order:
/// the `$HULL_*` override, the workspace's static build (agent), beside `hull`,
/// /usr/local/lib/hull, then `$PATH`. Candidates that exist, first to last.
fn hull_binary_candidates(facts: &HostFacts, name: &str) -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    let overridden = match name {
        "hull-vmm" => facts.vmm_override.clone(),
        "hull-agent" => facts.agent_override.clone(),
        _ => None,
    };
    candidates.extend(overridden);
    if let Some(dir) = &facts.exe_dir {
        if name == "hull-agent" {
            if let (Some(profile), Some(target)) = (dir.file_name(), dir.parent()) {
                candidates.push(
                    target
                        .join("x86_64-unknown-linux-gnu")
                        .join(profile)
                        .join(name),
                );
            }
        }
        candidates.push(dir.join(name));
    }
    candidates.push(facts.host_path("/usr/local/lib/hull").join(name));
    candidates.extend(facts.which(name));
    candidates.retain(|p| super::facts::is_executable(p));
    candidates
}

fn check_vmm(facts: &HostFacts) -> Check {
    const ID: &str = "vmm";
    const TITLE: &str = "VMM (hull-vmm)";
    match hull_binary_candidates(facts, "hull-vmm").first() {
        Some(path) => ok(ID, TITLE, Affects::Vm, format!("found {}", path.display())),
        None => problem(
            ID,
            TITLE,
            Status::Fail,
            Affects::Vm,
            "hull-vmm (the microVM monitor, one process per VM) is not beside hull, in \
             /usr/local/lib/hull, nor in $PATH"
                .into(),
            "cargo build --release -p hull-vmm and install it beside hull (or set HULL_VMM)".into(),
        ),
    }
}

fn check_guest_kernel(facts: &HostFacts) -> Check {
    const ID: &str = "guest-kernel";
    const TITLE: &str = "Guest kernel";
    let path = facts
        .kernel_override
        .clone()
        .unwrap_or_else(|| facts.host_path(GUEST_KERNEL_PATH));
    let shown = if facts.kernel_override.is_some() {
        path.display().to_string()
    } else {
        GUEST_KERNEL_PATH.to_string()
    };
    let mut magic = [0u8; 4];
    let read =
        std::fs::File::open(&path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic));
    match read {
        Ok(()) if magic == *b"\x7fELF" => ok(
            ID,
            TITLE,
            Affects::Vm,
            format!("{shown} is an ELF kernel image"),
        ),
        Ok(()) => problem(
            ID,
            TITLE,
            Status::Fail,
            Affects::Vm,
            format!("{shown} exists but is not an ELF vmlinux"),
            "rebuild it: kernel-config/build.sh".into(),
        ),
        Err(_) => problem(
            ID,
            TITLE,
            Status::Fail,
            Affects::Vm,
            format!("no guest kernel at {shown}: every microVM boots that kernel"),
            "build and install it: kernel-config/build.sh (about 4 minutes on 2 cores), or set \
             HULL_KERNEL"
                .into(),
        ),
    }
}

fn check_guest_agent(facts: &HostFacts) -> Check {
    const ID: &str = "guest-agent";
    const TITLE: &str = "Guest agent";
    const BUILD: &str = "build it static and install it beside hull or in /usr/local/lib/hull: \
                         RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release -p \
                         hull-agent --target x86_64-unknown-linux-gnu (or set HULL_AGENT)";
    let candidates = hull_binary_candidates(facts, "hull-agent");
    let dynamic = |p: &PathBuf| {
        std::fs::read(p)
            .ok()
            .and_then(|elf| crate::vm::initramfs::is_dynamically_linked(&elf).ok())
    };
    if let Some(path) = candidates.iter().find(|p| dynamic(p) == Some(false)) {
        return ok(
            ID,
            TITLE,
            Affects::Vm,
            format!(
                "found {} (static; PID 1 inside every microVM)",
                path.display()
            ),
        );
    }
    match candidates.first() {
        Some(path) => problem(
            ID,
            TITLE,
            Status::Fail,
            Affects::Vm,
            format!(
                "{} is {}: the guest has no C library, so the agent (PID 1 inside every \
                 microVM) must be a static ELF",
                path.display(),
                if dynamic(path) == Some(true) {
                    "dynamically linked"
                } else {
                    "not a 64-bit ELF executable"
                }
            ),
            BUILD.into(),
        ),
        None => problem(
            ID,
            TITLE,
            Status::Fail,
            Affects::Vm,
            "hull-agent (PID 1 inside every microVM) is not beside hull, in /usr/local/lib/hull, \
             nor in $PATH"
                .into(),
            BUILD.into(),
        ),
    }
}

fn check_vm_disk_tool(facts: &HostFacts) -> Check {
    const ID: &str = "vm-disk-tool";
    const TITLE: &str = "VM disk builder";
    match facts.which("mkfs.erofs") {
        Some(path) => ok(
            ID,
            TITLE,
            Affects::Vm,
            format!("{} turns images into read-only VM disks", path.display()),
        ),
        None => problem(
            ID,
            TITLE,
            Status::Fail,
            Affects::Vm,
            "mkfs.erofs is not installed: the vm backend turns each image into an erofs disk \
             for the guest with it"
                .into(),
            "apt-get install erofs-utils".into(),
        ),
    }
}

fn check_nested_harness(facts: &HostFacts) -> Check {
    const ID: &str = "nested-harness";
    const TITLE: &str = "Nested harness";
    match facts.which("qemu-system-x86_64") {
        Some(path) => ok(
            ID,
            TITLE,
            Affects::Vm,
            format!(
                "{} can emulate an AMD-V machine (TCG) whose KVM boots the guest: VM mode can be \
                 tested and benchmarked there (slow, for correctness and relative timings)",
                path.display()
            ),
        ),
        None => problem(
            ID,
            TITLE,
            Status::Warn,
            Affects::Vm,
            "qemu-system-x86_64 is not installed: the nested harness (VM mode inside an \
             emulated AMD-V machine) is not available"
                .into(),
            "apt-get install qemu-system-x86".into(),
        ),
    }
}
