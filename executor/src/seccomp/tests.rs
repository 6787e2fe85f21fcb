//! The compiled programs run in a BPF interpreter (`bpf::run`): each test asks what the
//! kernel would answer to one system call.

use std::collections::BTreeSet;

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSyscall};

use super::bpf::run;
use super::profile::{resolve, Profile, Target};
use super::*;

const EPERM: u32 = ret::ERRNO | libc::EPERM as u32;
const ENOSYS: u32 = ret::ERRNO | libc::ENOSYS as u32;

pub(super) fn docker_caps() -> BTreeSet<String> {
    [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

pub(super) fn default_filter(caps: &BTreeSet<String>) -> Filter {
    let oci = resolve(
        &Profile::default_profile(),
        &Target {
            capabilities: caps,
            kernel: (6, 12),
        },
    )
    .unwrap();
    compile(&oci).unwrap()
}

fn call(f: &Filter, name: &str, args: [u64; 6]) -> u32 {
    run(&f.program, number(name).unwrap(), AUDIT_ARCH_X86_64, args)
}

#[test]
fn the_default_profile_allows_ordinary_calls_and_refuses_host_management() {
    let f = default_filter(&docker_caps());
    for name in [
        "read", "write", "openat", "execve", "futex", "chroot", "mknod",
    ] {
        assert_eq!(call(&f, name, [0; 6]), ret::ALLOW, "{name}");
    }
    for name in [
        "mount",
        "umount2",
        "unshare",
        "setns",
        "pivot_root",
        "bpf",
        "keyctl",
        "kexec_load",
        "init_module",
        "io_uring_setup",
        "ptrace",
        "reboot",
        "sethostname",
    ] {
        assert_eq!(call(&f, name, [0; 6]), EPERM, "{name}");
    }
    // clone: threads and forks yes, new namespaces no; clone3 falls back with ENOSYS.
    let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
    assert_eq!(call(&f, "clone", [thread, 0, 0, 0, 0, 0]), ret::ALLOW);
    for ns in [libc::CLONE_NEWUSER, libc::CLONE_NEWNS, libc::CLONE_NEWNET] {
        assert_eq!(call(&f, "clone", [ns as u64, 0, 0, 0, 0, 0]), EPERM);
    }
    assert_eq!(call(&f, "clone3", [0; 6]), ENOSYS);
    // socket: every family but AF_VSOCK.
    assert_eq!(
        call(&f, "socket", [libc::AF_INET as u64, 0, 0, 0, 0, 0]),
        ret::ALLOW
    );
    assert_eq!(
        call(&f, "socket", [libc::AF_VSOCK as u64, 0, 0, 0, 0, 0]),
        EPERM
    );
    // The kernel reads an int: a set upper half must not slip past (low 32 bits compared).
    let high = 0xdead_0000_0000_u64;
    for name in ["socket", "socketpair"] {
        assert_eq!(
            call(&f, name, [high | libc::AF_VSOCK as u64, 0, 0, 0, 0, 0]),
            EPERM,
            "{name}"
        );
    }
    // netlink: every protocol but the kernel's device events (uevents), whose multicast
    // group reaches a container's network namespace.
    let netlink = libc::AF_NETLINK as u64;
    for protocol in [libc::NETLINK_ROUTE, libc::NETLINK_AUDIT] {
        assert_eq!(
            call(&f, "socket", [netlink, 2, protocol as u64, 0, 0, 0]),
            ret::ALLOW
        );
    }
    for upper in [0, high] {
        let uevent = libc::NETLINK_KOBJECT_UEVENT as u64;
        assert_eq!(
            call(&f, "socket", [upper | netlink, 2, upper | uevent, 0, 0, 0]),
            EPERM
        );
    }
    assert_eq!(
        call(&f, "socket", [libc::AF_INET as u64, 2, 15, 0, 0, 0]),
        ret::ALLOW,
        "protocol 15 of another family"
    );
    // ioctl: terminal input injection refused (TIOCSTI, TIOCLINUX), the rest allowed.
    for request in [libc::TIOCSTI, libc::TIOCLINUX] {
        for upper in [0, high] {
            assert_eq!(
                call(&f, "ioctl", [0, upper | request, 0, 0, 0, 0]),
                EPERM,
                "{request:#x}"
            );
        }
    }
    assert_eq!(
        call(&f, "ioctl", [0, libc::TIOCGWINSZ, 0, 0, 0, 0]),
        ret::ALLOW
    );
    // personality: the listed values only, compared as 64-bit values.
    assert_eq!(call(&f, "personality", [8, 0, 0, 0, 0, 0]), ret::ALLOW);
    assert_eq!(
        call(&f, "personality", [0xffff_ffff, 0, 0, 0, 0, 0]),
        ret::ALLOW
    );
    assert_eq!(call(&f, "personality", [0x40000, 0, 0, 0, 0, 0]), EPERM);
    assert_eq!(
        call(&f, "personality", [(1 << 32) | 8, 0, 0, 0, 0, 0]),
        EPERM
    );
}

#[test]
fn capabilities_open_the_calls_they_govern() {
    let mut caps = docker_caps();
    caps.insert("CAP_SYS_ADMIN".into());
    caps.insert("CAP_SYS_PTRACE".into());
    let f = default_filter(&caps);
    for name in ["mount", "unshare", "setns", "ptrace", "process_vm_readv"] {
        assert_eq!(call(&f, name, [0; 6]), ret::ALLOW, "{name}");
    }
    assert_eq!(
        call(&f, "clone", [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0]),
        ret::ALLOW
    );
    assert_eq!(call(&f, "clone3", [0; 6]), ret::ALLOW);
    caps.remove("CAP_SYS_CHROOT");
    assert_eq!(call(&default_filter(&caps), "chroot", [0; 6]), EPERM);
}

#[test]
fn other_abis_cannot_bypass_the_rules() {
    let f = default_filter(&docker_caps());
    // The default profile lists x86 and x32: their calls get ENOSYS.
    assert_eq!(run(&f.program, 21, AUDIT_ARCH_I386, [0; 6]), ENOSYS);
    assert_eq!(
        run(&f.program, 0x4000_0000 | 165, AUDIT_ARCH_X86_64, [0; 6]),
        ENOSYS
    );
    // An architecture not listed at all kills.
    assert_eq!(run(&f.program, 0, 0xc000_00b7, [0; 6]), ret::KILL_PROCESS);
    // A deny-list profile (default allow) without x86: 32-bit calls kill, not allow.
    let deny = profile(
        LinuxSeccompAction::ScmpActAllow,
        vec![syscall(
            &["mount"],
            LinuxSeccompAction::ScmpActErrno,
            None,
            vec![],
        )],
    );
    let f = compile(&deny).unwrap();
    assert_eq!(
        run(&f.program, 21, AUDIT_ARCH_I386, [0; 6]),
        ret::KILL_PROCESS
    );
    assert_eq!(call(&f, "mount", [0; 6]), EPERM);
    assert_eq!(call(&f, "read", [0; 6]), ret::ALLOW);
}

fn profile(default: LinuxSeccompAction, syscalls: Vec<LinuxSyscall>) -> LinuxSeccomp {
    let mut p = LinuxSeccomp::default();
    p.set_default_action(default).set_syscalls(Some(syscalls));
    p
}

fn syscall(
    names: &[&str],
    action: LinuxSeccompAction,
    errno: Option<u32>,
    args: Vec<LinuxSeccompArg>,
) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names.iter().map(|n| n.to_string()).collect())
        .set_action(action)
        .set_errno_ret(errno)
        .set_args((!args.is_empty()).then_some(args));
    s
}

fn arg(index: usize, op: oci_spec::runtime::LinuxSeccompOperator, value: u64) -> LinuxSeccompArg {
    oci_spec::runtime::LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value)
        .build()
        .unwrap()
}

#[test]
fn comparisons_are_64_bit_and_unsigned() {
    use oci_spec::runtime::LinuxSeccompOperator as Op;
    let v = 0x1_0000_0005u64;
    let cases = [
        (Op::ScmpCmpEq, [false, true, false]),
        (Op::ScmpCmpNe, [true, false, true]),
        (Op::ScmpCmpGt, [false, false, true]),
        (Op::ScmpCmpGe, [false, true, true]),
        (Op::ScmpCmpLt, [true, false, false]),
        (Op::ScmpCmpLe, [true, true, false]),
    ];
    // Probes below, at and above v, each differing in one half only.
    let probes = [0x0_ffff_ffffu64, v, 0x2_0000_0000];
    for (op, want) in cases {
        let p = profile(
            LinuxSeccompAction::ScmpActAllow,
            vec![syscall(
                &["write"],
                LinuxSeccompAction::ScmpActErrno,
                Some(7),
                vec![arg(2, op, v)],
            )],
        );
        let f = compile(&p).unwrap();
        for (probe, hit) in probes.iter().zip(want) {
            let got = call(&f, "write", [0, 0, *probe, 0, 0, 0]);
            let expect = if hit { ret::ERRNO | 7 } else { ret::ALLOW };
            assert_eq!(got, expect, "{op:?} {probe:#x}");
        }
    }
    // Equal low halves must not fool the high-half comparison.
    let p = profile(
        LinuxSeccompAction::ScmpActAllow,
        vec![syscall(
            &["write"],
            LinuxSeccompAction::ScmpActKillProcess,
            None,
            vec![arg(0, Op::ScmpCmpLt, 5)],
        )],
    );
    let f = compile(&p).unwrap();
    assert_eq!(
        call(&f, "write", [(1 << 32) | 4, 0, 0, 0, 0, 0]),
        ret::ALLOW
    );
    assert_eq!(call(&f, "write", [4, 0, 0, 0, 0, 0]), ret::KILL_PROCESS);
}

#[test]
fn masked_eq_and_conditions_on_several_arguments() {
    use oci_spec::runtime::LinuxSeccompOperator as Op;
    let masked = oci_spec::runtime::LinuxSeccompArgBuilder::default()
        .index(0usize)
        .op(Op::ScmpCmpMaskedEq)
        .value(0xf0u64)
        .value_two(0x30u64)
        .build()
        .unwrap();
    let p = profile(
        LinuxSeccompAction::ScmpActErrno,
        vec![syscall(
            &["ioctl"],
            LinuxSeccompAction::ScmpActAllow,
            None,
            vec![masked, arg(1, Op::ScmpCmpEq, 9)],
        )],
    );
    let f = compile(&p).unwrap();
    assert_eq!(call(&f, "ioctl", [0x3f, 9, 0, 0, 0, 0]), ret::ALLOW);
    assert_eq!(
        call(&f, "ioctl", [0x3f, 8, 0, 0, 0, 0]),
        EPERM,
        "both must hold"
    );
    assert_eq!(call(&f, "ioctl", [0x4f, 9, 0, 0, 0, 0]), EPERM);
    // Two conditions on one argument: either may match (runc's reading).
    let p = profile(
        LinuxSeccompAction::ScmpActErrno,
        vec![syscall(
            &["ioctl"],
            LinuxSeccompAction::ScmpActAllow,
            None,
            vec![arg(0, Op::ScmpCmpEq, 1), arg(0, Op::ScmpCmpEq, 2)],
        )],
    );
    let f = compile(&p).unwrap();
    assert_eq!(call(&f, "ioctl", [1, 0, 0, 0, 0, 0]), ret::ALLOW);
    assert_eq!(call(&f, "ioctl", [2, 0, 0, 0, 0, 0]), ret::ALLOW);
    assert_eq!(call(&f, "ioctl", [3, 0, 0, 0, 0, 0]), EPERM);
}

#[test]
fn rules_apply_in_order_with_their_own_actions_and_errnos() {
    use oci_spec::runtime::LinuxSeccompOperator as Op;
    let p = profile(
        LinuxSeccompAction::ScmpActAllow,
        vec![
            syscall(
                &["kill"],
                LinuxSeccompAction::ScmpActErrno,
                Some(13),
                vec![arg(1, Op::ScmpCmpEq, 9)],
            ),
            syscall(&["kill"], LinuxSeccompAction::ScmpActTrap, None, vec![]),
            syscall(&["getpid"], LinuxSeccompAction::ScmpActLog, None, vec![]),
        ],
    );
    let f = compile(&p).unwrap();
    assert_eq!(call(&f, "kill", [1, 9, 0, 0, 0, 0]), ret::ERRNO | 13);
    assert_eq!(call(&f, "kill", [1, 15, 0, 0, 0, 0]), ret::TRAP);
    assert_eq!(call(&f, "getpid", [0; 6]), ret::LOG);
    assert_eq!(call(&f, "read", [0; 6]), ret::ALLOW);
}

#[test]
fn every_x86_64_call_gets_a_verdict_from_a_large_profile() {
    // Every other call allowed: the search tree must find each one.
    let all: Vec<&str> = super::x86_64::SYSCALLS.iter().map(|(n, _)| *n).collect();
    let listed: Vec<&str> = all.iter().copied().step_by(2).collect();
    let p = profile(
        LinuxSeccompAction::ScmpActErrno,
        vec![syscall(
            &listed,
            LinuxSeccompAction::ScmpActAllow,
            None,
            vec![],
        )],
    );
    let f = compile(&p).unwrap();
    for (i, name) in all.iter().enumerate() {
        let want = if i % 2 == 0 { ret::ALLOW } else { EPERM };
        assert_eq!(call(&f, name, [0; 6]), want, "{name}");
    }
    assert_eq!(run(&f.program, 10_000, AUDIT_ARCH_X86_64, [0; 6]), EPERM);
}

#[test]
fn hostile_or_unsupported_profiles_are_clear_errors() {
    let bad_name = profile(
        LinuxSeccompAction::ScmpActErrno,
        vec![syscall(
            &["frobnicate"],
            LinuxSeccompAction::ScmpActAllow,
            None,
            vec![],
        )],
    );
    assert_eq!(
        compile(&bad_name),
        Err(CompileError::UnknownSyscall("frobnicate".into()))
    );
    // 32-bit names are skipped, not refused.
    let foreign = profile(
        LinuxSeccompAction::ScmpActErrno,
        vec![syscall(
            &["socketcall", "read"],
            LinuxSeccompAction::ScmpActAllow,
            None,
            vec![],
        )],
    );
    assert!(compile(&foreign).is_ok());
    let notify = profile(
        LinuxSeccompAction::ScmpActErrno,
        vec![syscall(
            &["read"],
            LinuxSeccompAction::ScmpActNotify,
            None,
            vec![],
        )],
    );
    assert!(matches!(
        compile(&notify),
        Err(CompileError::Unsupported(_))
    ));
    let errno = profile(
        LinuxSeccompAction::ScmpActErrno,
        vec![syscall(
            &["read"],
            LinuxSeccompAction::ScmpActErrno,
            Some(70000),
            vec![],
        )],
    );
    assert!(matches!(compile(&errno), Err(CompileError::Invalid(_))));
    let index = profile(
        LinuxSeccompAction::ScmpActErrno,
        vec![syscall(
            &["read"],
            LinuxSeccompAction::ScmpActAllow,
            None,
            vec![arg(
                6,
                oci_spec::runtime::LinuxSeccompOperator::ScmpCmpEq,
                0,
            )],
        )],
    );
    assert!(matches!(compile(&index), Err(CompileError::Invalid(_))));
    // Unknown fields in a profile file are refused, not dropped.
    let err = Profile::parse(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscallz":[]}"#).unwrap_err();
    assert!(err.to_string().contains("syscallz"), "{err}");
}

#[test]
fn min_kernel_and_arch_conditions_are_evaluated() {
    let text = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
            {"names": ["mbind"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
            {"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
            {"names": ["write"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}}
        ]
    }"#;
    let caps = BTreeSet::new();
    let oci = resolve(
        &Profile::parse(text).unwrap(),
        &Target {
            capabilities: &caps,
            kernel: (6, 1),
        },
    )
    .unwrap();
    let names: Vec<String> = oci
        .syscalls()
        .iter()
        .flatten()
        .flat_map(|s| s.names().clone())
        .collect();
    assert_eq!(names, ["ptrace"]);
}
