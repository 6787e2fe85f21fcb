//! The plan for each runtime-spec feature, checked without root.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilities, LinuxCpu, LinuxMemory, LinuxNamespace,
    LinuxNamespaceType, LinuxResources, PosixRlimit, PosixRlimitType, Process, Root, Spec,
    UserBuilder,
};

use super::*;
use crate::cgroups::{Layout, Version};
use crate::error::ErrorKind;

fn host(version: Version) -> Host {
    Host {
        last_cap: 40,
        cgroups: Layout {
            root: PathBuf::from("/sys/fs/cgroup"),
            version,
        },
        cgroup_v1: vec![
            ("memory".into(), vec!["memory".into()]),
            ("systemd".into(), vec!["name=systemd".into()]),
        ],
    }
}

fn caps(list: &[Capability]) -> LinuxCapabilities {
    let set: oci_spec::runtime::Capabilities = list.iter().copied().collect();
    let mut c = LinuxCapabilities::default();
    c.set_bounding(Some(set.clone()))
        .set_effective(Some(set.clone()))
        .set_permitted(Some(set))
        .set_inheritable(None)
        .set_ambient(None);
    c
}

/// A spec like the one `hull run` writes.
fn spec() -> Spec {
    let mut process = Process::default();
    process
        .set_args(Some(vec!["sh".into(), "-c".into(), "true".into()]))
        .set_env(Some(vec!["PATH=/usr/bin:/bin".into(), "HOSTNAME=box".into()]))
        .set_cwd(PathBuf::from("/srv/app"))
        .set_user(
            UserBuilder::default()
                .uid(1000u32)
                .gid(1000u32)
                .additional_gids(vec![10u32, 1000])
                .build()
                .unwrap(),
        )
        .set_capabilities(Some(caps(crate::defaults::CAPABILITIES)))
        .set_no_new_privileges(Some(true))
        .set_rlimits(Some(vec![{
            let mut r = PosixRlimit::default();
            r.set_typ(PosixRlimitType::RlimitNofile).set_soft(1024).set_hard(2048);
            r
        }]));
    let mut mem = LinuxMemory::default();
    mem.set_limit(Some(64 << 20)).set_swap(Some(64 << 20));
    let mut cpu = LinuxCpu::default();
    cpu.set_quota(Some(50_000)).set_period(Some(100_000));
    let mut res = LinuxResources::default();
    res.set_memory(Some(mem))
        .set_cpu(Some(cpu))
        .set_devices(Some(crate::defaults::device_rules()));
    let linux = LinuxBuilder::default()
        .namespaces(oci_spec::runtime::get_default_namespaces())
        .masked_paths(crate::defaults::MASKED_PATHS.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .readonly_paths(crate::defaults::READONLY_PATHS.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .resources(res)
        .cgroups_path(PathBuf::from("/hull/abc"))
        .sysctl(HashMap::from([("net.ipv4.ip_unprivileged_port_start".to_string(), "0".to_string())]))
        .build()
        .unwrap();
    let mut root = Root::default();
    root.set_path(PathBuf::from("rootfs"));
    let mut s = Spec::default();
    s.set_process(Some(process))
        .set_root(Some(root))
        .set_hostname(Some("box".into()))
        .set_mounts(Some(crate::defaults::mounts(64 << 20)))
        .set_linux(Some(linux));
    s
}

fn plan_of(s: &Spec) -> Result<Plan, crate::Error> {
    Plan::new(
        s,
        Path::new("/run/hull/c1"),
        &RootSource::Layers {
            layers: vec!["/layers/a".into(), "/layers/b".into()],
            upper: "/var/lib/hull/containers/c1/upper".into(),
            work: "/var/lib/hull/containers/c1/work".into(),
        },
        &host(Version::V1),
    )
}

#[test]
fn a_docker_like_spec_plans_every_part() {
    let p = plan_of(&spec()).unwrap();
    let c = &p.container;
    assert_eq!(c.root.path.to_str().unwrap(), "/run/hull/c1/rootfs");
    let overlay = c.root.overlay.as_ref().unwrap();
    assert_eq!(
        overlay.data.to_str().unwrap(),
        "lowerdir=/layers/b:/layers/a,upperdir=/var/lib/hull/containers/c1/upper,workdir=/var/lib/hull/containers/c1/work"
    );
    assert_eq!(c.root.propagation, (libc::MS_PRIVATE | libc::MS_REC) as u64);
    assert!(c.namespaces.new_cgroup && c.loopback);
    assert_eq!(c.mounts.len(), 7);
    assert_eq!(c.devices.len(), 6);
    assert!(c.dev_symlinks && c.ptmx_symlink);
    assert_eq!(c.masked.len(), crate::defaults::MASKED_PATHS.len());
    assert_eq!(c.hostname.as_deref().unwrap().to_str().unwrap(), "box");
    assert_eq!(c.sysctls[0].path.to_str().unwrap(), "/proc/sys/net/ipv4/ip_unprivileged_port_start");
    assert_eq!(c.cgroup.path, PathBuf::from("hull/abc"));
    assert!(c.cgroup.devices.is_some());
    assert_eq!(c.cgroup_v1.len(), 2);

    let pr = &p.process;
    assert_eq!(
        pr.candidates.iter().map(|c| c.to_str().unwrap()).collect::<Vec<_>>(),
        ["/usr/bin/sh", "/bin/sh"]
    );
    assert_eq!(pr.envp.len(), 2, "the executor adds nothing to the spec's environment");
    assert_eq!(pr.cwd.to_str().unwrap(), "/srv/app");
    assert_eq!(pr.identity.groups, [1000, 10], "primary group first, no duplicates");
    assert_eq!(pr.caps.bounding.count_ones(), 14);
    assert!(pr.caps.bounding & (1 << 27) != 0, "CAP_MKNOD is docker's default");
    assert_eq!(pr.rlimits[0].resource, libc::RLIMIT_NOFILE as u32);
    assert!(pr.no_new_privileges && pr.seccomp.is_none());
}

#[test]
fn cgroup_values_follow_the_host_version() {
    let v2 = Plan::new(&spec(), Path::new("/b"), &RootSource::Ready, &host(Version::V2)).unwrap();
    let files: Vec<&str> = v2.container.cgroup.settings.iter().map(|s| s.file.as_str()).collect();
    assert_eq!(files, ["memory.max", "memory.swap.max", "cpu.max"]);
    assert!(v2.container.cgroup_v1.is_empty(), "v2: cgroup2 is mounted");
    let v1 = plan_of(&spec()).unwrap();
    let files: Vec<&str> = v1.container.cgroup.settings.iter().map(|s| s.file.as_str()).collect();
    assert_eq!(
        files,
        ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "cpu.cfs_period_us", "cpu.cfs_quota_us"]
    );
    assert!(v2.container.root.overlay.is_none(), "a ready root is not rebuilt");
}

#[test]
fn a_spec_with_a_seccomp_profile_gets_a_program() {
    let mut s = spec();
    let caps: std::collections::BTreeSet<String> =
        crate::defaults::CAPABILITIES.iter().map(|c| format!("CAP_{c}")).collect();
    let profile = crate::seccomp::profile::resolve(
        &crate::seccomp::profile::Profile::default_profile(),
        &crate::seccomp::profile::Target {
            capabilities: &caps,
            kernel: (6, 1),
        },
    )
    .unwrap();
    s.linux_mut().as_mut().unwrap().set_seccomp(Some(profile));
    let p = plan_of(&s).unwrap();
    assert!(p.process.seccomp.as_ref().unwrap().program.len() > 100);
}

#[test]
fn namespace_paths_are_joined_for_a_cni_network() {
    let mut s = spec();
    let mut ns = oci_spec::runtime::get_default_namespaces();
    for n in ns.iter_mut() {
        if n.typ() == LinuxNamespaceType::Network {
            n.set_path(Some(PathBuf::from("/run/netns/cni-1234")));
        }
    }
    s.linux_mut().as_mut().unwrap().set_namespaces(Some(ns));
    let p = plan_of(&s).unwrap();
    let j = &p.container.namespaces.join;
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].path, PathBuf::from("/run/netns/cni-1234"));
    assert!(!p.container.loopback, "a joined network is the caller's: lo is left alone");
    assert_eq!(p.container.sysctls.len(), 1, "net sysctls apply in a joined netns");
}

#[test]
fn sysctls_that_would_change_the_host_are_refused() {
    for (name, ns_to_drop) in [
        ("kernel.panic", None),
        ("vm.swappiness", None),
        ("net.ipv4.ip_forward", Some(LinuxNamespaceType::Network)),
        ("kernel.shmmax", Some(LinuxNamespaceType::Ipc)),
        ("../../../etc/passwd", None),
    ] {
        let mut s = spec();
        let l = s.linux_mut().as_mut().unwrap();
        l.set_sysctl(Some(HashMap::from([(name.to_string(), "1".to_string())])));
        if let Some(t) = ns_to_drop {
            let ns: Vec<LinuxNamespace> = l
                .namespaces()
                .clone()
                .unwrap()
                .into_iter()
                .filter(|n| n.typ() != t)
                .collect();
            l.set_namespaces(Some(ns));
        }
        let e = plan_of(&s).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidSpec, "{name}: {e}");
    }
}

#[test]
fn a_hostname_needs_a_uts_namespace() {
    let mut s = spec();
    let l = s.linux_mut().as_mut().unwrap();
    let ns: Vec<LinuxNamespace> = l
        .namespaces()
        .clone()
        .unwrap()
        .into_iter()
        .filter(|n| n.typ() != LinuxNamespaceType::Uts)
        .collect();
    l.set_namespaces(Some(ns));
    assert!(plan_of(&s).unwrap_err().to_string().contains("UTS"));
}

#[test]
fn root_propagation_and_read_only_root() {
    let mut s = spec();
    s.linux_mut()
        .as_mut()
        .unwrap()
        .set_rootfs_propagation(Some("rslave".into()));
    s.root_mut().as_mut().unwrap().set_readonly(Some(true));
    let p = plan_of(&s).unwrap();
    assert_eq!(p.container.root.propagation, (libc::MS_SLAVE | libc::MS_REC) as u64);
    assert!(p.container.root.readonly);
    s.linux_mut()
        .as_mut()
        .unwrap()
        .set_rootfs_propagation(Some("sideways".into()));
    assert!(plan_of(&s).is_err());
}

#[test]
fn unsupported_fields_are_refused_not_dropped() {
    let cases: Vec<(&str, Box<dyn Fn(&mut Spec)>)> = vec![
        ("apparmor", Box::new(|s| {
            s.process_mut().as_mut().unwrap().set_apparmor_profile(Some("docker-default".into()));
        })),
        ("selinux", Box::new(|s| {
            s.process_mut().as_mut().unwrap().set_selinux_label(Some("x".into()));
        })),
        ("time namespace", Box::new(|s| {
            let l = s.linux_mut().as_mut().unwrap();
            let mut ns = l.namespaces().clone().unwrap();
            let mut t = LinuxNamespace::default();
            t.set_typ(LinuxNamespaceType::Time);
            ns.push(t);
            l.set_namespaces(Some(ns));
        })),
        ("hooks", Box::new(|s| {
            let mut h = oci_spec::runtime::Hooks::default();
            h.set_prestart(Some(vec![oci_spec::runtime::Hook::default()]));
            s.set_hooks(Some(h));
        })),
        ("hugepages", Box::new(|s| {
            let l = s.linux_mut().as_mut().unwrap();
            let mut r = l.resources().clone().unwrap();
            r.set_hugepage_limits(Some(vec![oci_spec::runtime::LinuxHugepageLimit::default()]));
            l.set_resources(Some(r));
        })),
        ("windows", Box::new(|s| {
            s.set_windows(Some(Default::default()));
        })),
    ];
    for (what, f) in cases {
        let mut s = spec();
        f(&mut s);
        let e = plan_of(&s).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unsupported, "{what}: {e}");
    }
}

#[test]
fn hostile_specs_are_clear_errors() {
    let cases: Vec<(&str, Box<dyn Fn(&mut Spec)>)> = vec![
        ("cwd with ..", Box::new(|s| {
            s.process_mut().as_mut().unwrap().set_cwd(PathBuf::from("/../../etc"));
        })),
        ("relative cwd", Box::new(|s| {
            s.process_mut().as_mut().unwrap().set_cwd(PathBuf::from("srv"));
        })),
        ("no args", Box::new(|s| {
            s.process_mut().as_mut().unwrap().set_args(Some(vec![]));
        })),
        ("env without =", Box::new(|s| {
            s.process_mut().as_mut().unwrap().set_env(Some(vec!["JUNK".into()]));
        })),
        ("uid -1", Box::new(|s| {
            s.process_mut().as_mut().unwrap().user_mut().set_uid(u32::MAX);
        })),
        ("soft above hard", Box::new(|s| {
            let mut r = PosixRlimit::default();
            r.set_typ(PosixRlimitType::RlimitNproc).set_soft(10).set_hard(5);
            s.process_mut().as_mut().unwrap().set_rlimits(Some(vec![r]));
        })),
        ("oom score", Box::new(|s| {
            s.process_mut().as_mut().unwrap().set_oom_score_adj(Some(5000));
        })),
        ("huge arg", Box::new(|s| {
            s.process_mut().as_mut().unwrap().set_args(Some(vec!["x".repeat(1 << 20)]));
        })),
        ("cgroup path escape", Box::new(|s| {
            s.linux_mut().as_mut().unwrap().set_cgroups_path(Some(PathBuf::from("/../../sys")));
        })),
        ("long hostname", Box::new(|s| {
            s.set_hostname(Some("h".repeat(100)));
        })),
        ("no root", Box::new(|s| {
            s.set_root(None);
        })),
    ];
    for (what, f) in cases {
        let mut s = spec();
        f(&mut s);
        let e = plan_of(&s).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidSpec, "{what}: {e}");
    }
}

#[test]
fn failures_are_described_from_the_plan() {
    let p = plan_of(&spec()).unwrap();
    assert_eq!(p.describe(crate::Stage::Mount, 0), "/proc (proc)");
    assert_eq!(p.describe(crate::Stage::Device, 5), "c 5:0 /dev/tty");
    assert_eq!(
        p.describe(crate::Stage::Exec, u32::MAX),
        "sh: executable file not found in $PATH"
    );
    assert_eq!(p.describe(crate::Stage::Cwd, 0), "/srv/app");
}

#[test]
fn v1_hierarchies_come_from_mountinfo() {
    let info = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n\
                41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
    assert_eq!(
        v1_hierarchies(info, Path::new("/sys/fs/cgroup")),
        [
            ("memory".to_string(), vec!["memory".to_string()]),
            ("cpu,cpuacct".to_string(), vec!["cpu".to_string(), "cpuacct".to_string()]),
            ("systemd".to_string(), vec!["name=systemd".to_string()]),
        ]
    );
}
