//! Verdicts for crafted hosts: a fake /proc, /sys, /dev tree under a temp dir.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;
use crate::paths::StatePaths;

/// A crafted host tree, starting as a healthy cgroup-v2 VT-x host.
struct FakeHost {
    dir: tempfile::TempDir,
    euid: u32,
}

const V2_MOUNTS: &str = "proc /proc proc rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n";
const HYBRID_MOUNTS: &str = "proc /proc proc rw 0 0\n\
    tmpfs /sys/fs/cgroup tmpfs rw 0 0\n\
    cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n\
    cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n\
    cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0\n\
    cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0\n\
    cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";

impl FakeHost {
    fn healthy_vtx() -> Self {
        let host = FakeHost {
            dir: tempfile::tempdir().unwrap(),
            euid: 0,
        };
        host.write(
            "/proc/cpuinfo",
            "processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu vme vmx sse2\n",
        );
        host.write("/dev/kvm", "");
        host.mkdir("/sys/module/kvm_intel");
        host.mkdir("/sys/module/kvm");
        host.write("/proc/sys/kernel/osrelease", "6.1.0-test\n");
        host.write("/proc/self/mounts", V2_MOUNTS);
        host.write(
            "/sys/fs/cgroup/cgroup.controllers",
            "cpuset cpu io memory pids\n",
        );
        host.write("/proc/filesystems", "nodev\tproc\nnodev\toverlay\n\text4\n");
        host.write("/proc/sys/user/max_user_namespaces", "63000\n");
        host.write(
            "/proc/self/status",
            "Name:\tcat\nSeccomp:\t0\nSeccomp_filters:\t0\n",
        );
        host.write(
            "/proc/sys/kernel/seccomp/actions_avail",
            "kill_process kill_thread trap errno user_notif trace log allow\n",
        );
        for ns in ["mnt", "pid", "uts", "ipc", "net", "cgroup", "user"] {
            host.write(&format!("/proc/self/ns/{ns}"), "");
        }
        host.write(GUEST_KERNEL_PATH, "\x7fELF rest of a kernel");
        host.executable("/usr/local/lib/hull/hull-vmm");
        host.static_elf("/usr/local/lib/hull/hull-agent");
        host.executable("/usr/bin/qemu-system-x86_64");
        host.executable("/usr/bin/mkfs.erofs");
        for plugin in ["bridge", "host-local", "portmap", "firewall", "loopback"] {
            host.executable(&format!("/usr/lib/cni/{plugin}"));
        }
        host.executable("/usr/bin/iptables");
        host
    }

    fn path(&self, abs: &str) -> std::path::PathBuf {
        self.dir.path().join(abs.trim_start_matches('/'))
    }
    fn write(&self, abs: &str, contents: &str) {
        let p = self.path(abs);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
    }
    fn mkdir(&self, abs: &str) {
        std::fs::create_dir_all(self.path(abs)).unwrap();
    }
    fn executable(&self, abs: &str) {
        self.write(abs, "#!/bin/sh\n");
        std::fs::set_permissions(self.path(abs), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    /// A minimal 64-bit little-endian ELF header with no program headers: "static".
    fn static_elf(&self, abs: &str) {
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        self.write_bytes(abs, &elf);
        std::fs::set_permissions(self.path(abs), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    /// The same with one PT_INTERP program header: dynamically linked.
    fn dynamic_elf(&self, abs: &str) {
        let mut elf = vec![0u8; 64 + 56];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        elf[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        elf[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        elf[64..68].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
        self.write_bytes(abs, &elf);
        std::fs::set_permissions(self.path(abs), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    fn write_bytes(&self, abs: &str, contents: &[u8]) {
        let p = self.path(abs);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
    }
    fn remove(&self, abs: &str) {
        let p = self.path(abs);
        if p.is_dir() {
            std::fs::remove_dir_all(p).unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
    }

    fn diagnose(&self) -> Report {
        let state = StatePaths::new(Some(&self.dir.path().join("state")));
        let mut facts = HostFacts::with_root(self.dir.path(), &state);
        facts.euid = self.euid;
        facts.exe_dir = None;
        facts.path_var = "/usr/bin:/bin".into();
        facts.vmm_override = None;
        facts.agent_override = None;
        facts.kernel_override = None;
        diagnose(&facts)
    }
}

fn status(report: &Report, id: &str) -> Status {
    report
        .check(id)
        .unwrap_or_else(|| panic!("no check {id}"))
        .status
}

#[test]
fn healthy_vtx_host_runs_both_models() {
    let report = FakeHost::healthy_vtx().diagnose();
    assert_eq!(report.host.kvm, KvmKind::VtX);
    assert_eq!(report.host.cgroup_version, CgroupVersion::V2);
    assert!(
        report.checks.iter().all(|c| c.status == Status::Ok),
        "{:#?}",
        report.checks
    );
    assert!(report.verdict.process.usable && report.verdict.vm.usable);
    assert_eq!(report.exit_code, 0);
}

#[test]
fn pvm_host_blocks_vm_mode_and_points_at_the_harness() {
    let host = FakeHost::healthy_vtx();
    host.write(
        "/proc/cpuinfo",
        "processor\t: 0\nflags\t\t: fpu sse2 hypervisor\n",
    );
    host.remove("/sys/module/kvm_intel");
    host.mkdir("/sys/module/kvm_pvm");
    let report = host.diagnose();
    assert_eq!(report.host.kvm, KvmKind::Pvm);
    assert!(report.host.is_virtual_machine);
    let kvm = report.check("kvm").unwrap();
    assert_eq!(kvm.status, Status::Fail);
    assert!(kvm.finding.contains("PVM"), "{}", kvm.finding);
    assert!(kvm.fix.as_deref().unwrap().contains("nested harness"));
    assert!(report.verdict.process.usable);
    assert!(!report.verdict.vm.usable);
    assert_eq!(report.verdict.vm.blocked_by, vec!["kvm"]);
    assert!(report.verdict.vm_in_nested_harness);
    assert_eq!(report.exit_code, EXIT_VM_UNUSABLE);
}

#[test]
fn amd_host_is_amd_v() {
    let host = FakeHost::healthy_vtx();
    host.write("/proc/cpuinfo", "flags\t\t: fpu svm npt\n");
    host.remove("/sys/module/kvm_intel");
    host.mkdir("/sys/module/kvm_amd");
    assert_eq!(host.diagnose().host.kvm, KvmKind::AmdV);
}

#[test]
fn no_kvm_with_vmx_says_to_load_the_module() {
    let host = FakeHost::healthy_vtx();
    host.remove("/dev/kvm");
    host.remove("/sys/module/kvm_intel");
    let report = host.diagnose();
    assert_eq!(report.host.kvm, KvmKind::None);
    let kvm = report.check("kvm").unwrap();
    assert_eq!(kvm.status, Status::Fail);
    assert_eq!(kvm.fix.as_deref(), Some("modprobe kvm_intel"));
    assert_eq!(report.exit_code, EXIT_VM_UNUSABLE);
}

#[test]
fn no_kvm_and_no_cpu_support() {
    let host = FakeHost::healthy_vtx();
    host.remove("/dev/kvm");
    host.write("/proc/cpuinfo", "flags\t\t: fpu sse2\n");
    let report = host.diagnose();
    assert_eq!(report.host.kvm, KvmKind::None);
    assert!(report.check("kvm").unwrap().finding.contains("no vmx/svm"));
}

#[test]
fn hybrid_cgroups_list_v1_controllers() {
    let host = FakeHost::healthy_vtx();
    host.write("/proc/self/mounts", HYBRID_MOUNTS);
    host.write("/sys/fs/cgroup/unified/cgroup.controllers", "hugetlb\n");
    let report = host.diagnose();
    assert_eq!(report.host.cgroup_version, CgroupVersion::Hybrid);
    let check = report.check("cgroups").unwrap();
    assert_eq!(check.status, Status::Ok, "{}", check.finding);
    assert!(check.finding.contains("memory"), "{}", check.finding);
    assert!(check.finding.contains("hugetlb"), "{}", check.finding);
}

#[test]
fn pure_v1_cgroups() {
    let host = FakeHost::healthy_vtx();
    let v1_only: String = HYBRID_MOUNTS
        .lines()
        .filter(|l| !l.contains("cgroup2"))
        .map(|l| format!("{l}\n"))
        .collect();
    host.write("/proc/self/mounts", &v1_only);
    assert_eq!(host.diagnose().host.cgroup_version, CgroupVersion::V1);
}

#[test]
fn missing_controller_is_a_warning_naming_it() {
    let host = FakeHost::healthy_vtx();
    host.write("/sys/fs/cgroup/cgroup.controllers", "cpu memory\n");
    let report = host.diagnose();
    let check = report.check("cgroups").unwrap();
    assert_eq!(check.status, Status::Warn);
    assert!(check.finding.contains("missing pids"), "{}", check.finding);
    assert_eq!(report.exit_code, 0);
}

#[test]
fn no_cgroups_blocks_both_models() {
    let host = FakeHost::healthy_vtx();
    host.write("/proc/self/mounts", "proc /proc proc rw 0 0\n");
    let report = host.diagnose();
    assert_eq!(report.host.cgroup_version, CgroupVersion::None);
    assert_eq!(status(&report, "cgroups"), Status::Fail);
    assert_eq!(report.exit_code, EXIT_PROCESS_UNUSABLE | EXIT_VM_UNUSABLE);
}

#[test]
fn overlay_missing_blocks_process_mode_only() {
    let host = FakeHost::healthy_vtx();
    host.write("/proc/filesystems", "nodev\tproc\n\text4\n");
    let report = host.diagnose();
    assert_eq!(status(&report, "overlayfs"), Status::Fail);
    assert!(!report.verdict.process.usable);
    assert!(report.verdict.vm.usable);
    assert_eq!(report.exit_code, EXIT_PROCESS_UNUSABLE);
}

#[test]
fn overlay_as_loadable_module_is_a_warning() {
    let host = FakeHost::healthy_vtx();
    host.write("/proc/filesystems", "nodev\tproc\n\text4\n");
    host.write(
        "/lib/modules/6.1.0-test/kernel/fs/overlayfs/overlay.ko.xz",
        "",
    );
    let report = host.diagnose();
    assert_eq!(status(&report, "overlayfs"), Status::Warn);
    assert!(report.verdict.process.usable);
}

#[test]
fn user_namespaces_disabled_is_a_warning() {
    let host = FakeHost::healthy_vtx();
    host.write("/proc/sys/user/max_user_namespaces", "0\n");
    assert_eq!(status(&host.diagnose(), "user-namespaces"), Status::Warn);
    host.write("/proc/sys/user/max_user_namespaces", "100\n");
    host.write("/proc/sys/kernel/unprivileged_userns_clone", "0\n");
    let report = host.diagnose();
    assert_eq!(status(&report, "user-namespaces"), Status::Warn);
    assert!(report.verdict.process.usable);
}

#[test]
fn missing_namespace_blocks_process_mode() {
    let host = FakeHost::healthy_vtx();
    host.remove("/proc/self/ns/cgroup");
    let report = host.diagnose();
    assert_eq!(status(&report, "namespaces"), Status::Fail);
    assert!(report
        .check("namespaces")
        .unwrap()
        .finding
        .contains("cgroup"));
    assert!(!report.verdict.process.usable);
}

#[test]
fn seccomp_without_filter_mode_or_at_all_fails() {
    let host = FakeHost::healthy_vtx();
    host.remove("/proc/sys/kernel/seccomp/actions_avail");
    assert_eq!(status(&host.diagnose(), "seccomp"), Status::Fail);
    host.write("/proc/self/status", "Name:\tcat\n");
    let report = host.diagnose();
    assert_eq!(status(&report, "seccomp"), Status::Fail);
    assert!(report
        .check("seccomp")
        .unwrap()
        .finding
        .contains("no seccomp"));
    assert_eq!(report.exit_code, EXIT_PROCESS_UNUSABLE);
}

#[test]
fn missing_guest_kernel_agent_or_vmm_block_vm_mode() {
    for (path, id) in [
        ("/usr/bin/mkfs.erofs", "vm-disk-tool"),
        (GUEST_KERNEL_PATH, "guest-kernel"),
        ("/usr/local/lib/hull/hull-agent", "guest-agent"),
        ("/usr/local/lib/hull/hull-vmm", "vmm"),
    ] {
        let host = FakeHost::healthy_vtx();
        host.remove(path);
        let report = host.diagnose();
        assert_eq!(status(&report, id), Status::Fail, "{id}");
        assert_eq!(report.verdict.vm.blocked_by, vec![id]);
        assert_eq!(report.exit_code, EXIT_VM_UNUSABLE, "{id}");
    }
}

#[test]
fn dynamically_linked_agent_fails_and_says_build_it_static() {
    let host = FakeHost::healthy_vtx();
    host.dynamic_elf("/usr/local/lib/hull/hull-agent");
    let report = host.diagnose();
    let check = report.check("guest-agent").unwrap();
    assert_eq!(check.status, Status::Fail);
    assert!(
        check.finding.contains("dynamically linked"),
        "{}",
        check.finding
    );
    assert!(check.fix.as_deref().unwrap().contains("crt-static"));
    assert_eq!(report.exit_code, EXIT_VM_UNUSABLE);
}

#[test]
fn guest_kernel_that_is_not_elf_fails() {
    let host = FakeHost::healthy_vtx();
    host.write(GUEST_KERNEL_PATH, "MZ not an elf");
    let report = host.diagnose();
    assert!(report
        .check("guest-kernel")
        .unwrap()
        .finding
        .contains("not an ELF"));
}

#[test]
fn state_dir_under_a_file_is_not_writable() {
    let host = FakeHost::healthy_vtx();
    host.write("/blocker", "a file");
    let state = StatePaths::new(Some(&host.path("/blocker/state")));
    let mut facts = HostFacts::with_root(host.dir.path(), &state);
    facts.euid = 0;
    let report = diagnose(&facts);
    let check = report.check("state-dirs").unwrap();
    assert_eq!(check.status, Status::Fail);
    assert!(
        check.finding.contains("not a directory"),
        "{}",
        check.finding
    );
    assert_eq!(report.exit_code, EXIT_PROCESS_UNUSABLE | EXIT_VM_UNUSABLE);
    assert!(!Path::new(&host.path("/blocker/state")).exists());
}

#[test]
fn non_root_cannot_use_either_model() {
    let mut host = FakeHost::healthy_vtx();
    host.euid = 1000;
    let report = host.diagnose();
    assert_eq!(status(&report, "privileges"), Status::Fail);
    assert_eq!(report.exit_code, EXIT_PROCESS_UNUSABLE | EXIT_VM_UNUSABLE);
}

#[test]
fn missing_qemu_only_warns_about_the_harness() {
    let host = FakeHost::healthy_vtx();
    host.remove("/usr/bin/qemu-system-x86_64");
    let report = host.diagnose();
    assert_eq!(status(&report, "nested-harness"), Status::Warn);
    assert!(!report.verdict.vm_in_nested_harness);
    assert_eq!(report.exit_code, 0);
}
