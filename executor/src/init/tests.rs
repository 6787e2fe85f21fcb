//! The child's sequence against the recording [`Fake`]: order of steps, what is created
//! where, and how failures are reported.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};

use crate::cgroups::{Layout, Version};
use crate::error::{ErrorKind, Stage};
use crate::init::{self, Child, ChildStdio, Role};
use crate::plan::{Host, Plan, RootSource};
use crate::sys::fake::Fake;

fn host() -> Host {
    Host {
        last_cap: 40,
        cgroups: Layout {
            root: PathBuf::from("/sys/fs/cgroup"),
            version: Version::V2,
        },
        cgroup_v1: vec![],
    }
}

fn spec(json: &str) -> Spec {
    serde_json::from_str(json).unwrap()
}

const BASE: &str = r#"{
    "ociVersion": "1.0.2",
    "root": {"path": "rootfs"},
    "hostname": "box",
    "process": {
        "args": ["app", "--serve"], "cwd": "/srv", "env": ["PATH=/bin"],
        "user": {"uid": 1000, "gid": 100, "additionalGids": [27]},
        "noNewPrivileges": true,
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 512}],
        "capabilities": {"bounding": ["CAP_KILL"], "effective": [], "permitted": []}
    },
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["newinstance"]},
        {"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind", "ro"]}
    ],
    "linux": {
        "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "network"}, {"type": "uts"}, {"type": "cgroup"}],
        "maskedPaths": ["/proc/kcore", "/sys/firmware", "/proc/absent"],
        "readonlyPaths": ["/proc/sys"],
        "sysctl": {"net.ipv4.ping_group_range": "0 0"},
        "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ERRNO"}]}
    }
}"#;

struct Run {
    fake: Fake,
    result: Result<std::convert::Infallible, init::Failed>,
}

fn run_with(
    spec: &Spec,
    fake: Fake,
    stdio: ChildStdio,
    gate: Option<(i32, &std::ffi::CStr)>,
) -> Run {
    let plan = Plan::new(spec, Path::new("/b"), &RootSource::Ready, &host()).unwrap();
    let binds: Vec<Option<i32>> = plan
        .container
        .mounts
        .iter()
        .map(|m| matches!(m.kind, crate::plan::mounts::MountKind::Bind { .. }).then_some(7))
        .collect();
    let null = [std::ptr::null()];
    let child = Child {
        role: Role::Init {
            plan: &plan.container,
            binds: &binds,
            device_sources: &[],
        },
        process: &plan.process,
        sync: 3,
        parent_end: 8,
        wait_for_maps: false,
        join: &[],
        cgroups: &[9],
        stdio,
        gate,
        argv: &null,
        envp: &null,
    };
    let result = init::run(&fake, &child);
    Run { fake, result }
}

fn pipes() -> ChildStdio {
    ChildStdio::Pipes {
        stdin: None,
        stdout: 4,
        stderr: 5,
    }
}

fn root_with_bin() -> Fake {
    let f = Fake::with_dirs(&["/proc", "/proc/sys", "/sys", "/sys/firmware", "/bin"]);
    f.files.borrow_mut().insert("/proc/kcore".into());
    f.files.borrow_mut().insert("/bin/app".into());
    f.inherit(7, "host:/srv/data", true);
    f
}

/// The fake's execve "succeeds" (errno 0) for a path it has as a file.
fn reached_exec(r: &Run, path: &str) {
    let e = r.result.as_ref().unwrap_err();
    assert_eq!((e.report.stage, e.report.errno), (Stage::Exec, 0), "{e:?}");
    assert!(
        r.fake.log().last().unwrap().ends_with(path),
        "{:#?}",
        r.fake.log()
    );
}

#[test]
fn the_first_process_is_set_up_in_order() {
    let r = run_with(&spec(BASE), root_with_bin(), pipes(), None);
    reached_exec(&r, "/bin/app");
    let f = &r.fake;
    let order = [
        "prepare_child",
        "orphan_check 3",
        "write fd9 0",
        "unshare 0x2000000",
        "write_file /proc/sys/net/ipv4/ping_group_range 0 0",
        "mount  / ",
        "mount /b/rootfs /b/rootfs",
        "pivot_root /b/rootfs",
        "fs_mount proc",
        "fs_mount tmpfs tmpfs [mode=755]",
        "fs_mount devpts devpts [newinstance]",
        "setattr host:/srv/data +0x1",
        "mknod /dev/null 20666 1:3",
        "symlink /dev/ptmx -> pts/ptmx",
        "clone_tree /dev/null",
        "fs_mount tmpfs tmpfs [size=0]",
        "clone_tree /proc/sys true",
        "hostname box",
        "loopback_up",
        "setsid",
        "stdio /dev/null fd4 fd5",
        "chdir /srv",
        "close_from_3",
        "rlimit 7 512 512",
        "drop_bounding 0",
        "keep_caps true",
        "setgroups [100, 27]",
        "setgid 100",
        "setuid 1000",
        "capset e=0x0 p=0x0",
        "umask 22",
        "no_new_privs",
        "seccomp",
        "execve /bin/app",
    ];
    let positions: Vec<usize> = order.iter().map(|o| f.pos(o)).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "out of order: {:?}\n{:#?}",
        order.iter().zip(&positions).collect::<Vec<_>>(),
        f.log()
    );
    // The death signal, cleared by setuid, is set again and the parent checked once more.
    let log = f.log();
    let last_check = log.iter().rposition(|c| c == "orphan_check 3").unwrap();
    assert!(f.pos("setuid 1000") < f.pos("pdeathsig") && f.pos("pdeathsig") < last_check);
    assert!(last_check < f.pos("execve /bin/app"));
    // The bind's target and the working directory were created inside the root.
    assert!(f.log().contains(&"mkdir_at /data".to_string()));
    assert!(f.log().contains(&"mkdir_at /srv".to_string()));
    // CAP_KILL (5) stays in the bounding set, everything else is dropped.
    assert!(!f.log().contains(&"drop_bounding 5".to_string()));
    assert!(f.log().contains(&"drop_bounding 40".to_string()));
    // A masked path the kernel does not have is skipped.
    assert!(!f
        .log()
        .iter()
        .any(|c| c.contains("move_mount") && c.contains("absent")));
}

#[test]
fn without_no_new_privs_seccomp_is_loaded_before_the_user_switch() {
    let mut s = spec(BASE);
    s.process_mut()
        .as_mut()
        .unwrap()
        .set_no_new_privileges(Some(false));
    let r = run_with(&s, root_with_bin(), pipes(), None);
    reached_exec(&r, "/bin/app");
    assert!(r.fake.pos("seccomp") < r.fake.pos("setuid"));
    assert!(!r.fake.log().contains(&"no_new_privs".to_string()));
}

#[test]
fn a_failing_step_is_reported_with_its_stage_and_entry() {
    let f = root_with_bin();
    *f.fail.borrow_mut() = Some(("fs_mount devpts".into(), libc::ENODEV));
    let r = run_with(&spec(BASE), f, pipes(), None);
    let e = r.result.unwrap_err().report;
    assert_eq!(
        (e.kind, e.stage, e.errno, e.index),
        (ErrorKind::System, Stage::Mount, libc::ENODEV, 2)
    );
    assert!(!r.fake.log().iter().any(|c| c.starts_with("execve")));
}

#[test]
fn a_missing_command_and_a_non_executable_one_are_told_apart() {
    let f = Fake::with_dirs(&["/bin"]);
    let r = run_with(&spec(BASE), f, pipes(), None);
    let e = r.result.unwrap_err().report;
    assert_eq!(
        (e.kind, e.stage, e.index),
        (ErrorKind::CommandNotFound, Stage::Exec, u32::MAX)
    );
    let f = Fake::with_dirs(&["/bin"]);
    f.exec_errno
        .borrow_mut()
        .insert("/bin/app".into(), libc::EACCES);
    let r = run_with(&spec(BASE), f, pipes(), None);
    let e = r.result.unwrap_err().report;
    assert_eq!(
        (e.kind, e.errno, e.index),
        (ErrorKind::NotExecutable, libc::EACCES, 0)
    );
}

#[test]
fn a_terminal_is_made_inside_and_its_master_sent_to_the_console() {
    let r = run_with(
        &spec(BASE),
        root_with_bin(),
        ChildStdio::Terminal { console: 6 },
        None,
    );
    reached_exec(&r, "/bin/app");
    let f = &r.fake;
    assert!(f.pos("symlink /dev/ptmx") < f.pos("open_pty"));
    assert!(f.pos("open_pty") < f.pos("send_fd 6 T ptmx"));
    assert!(f.log().contains(&"stdio pts pts pts".to_string()));
    assert!(f.log().contains(&"ctty pts".to_string()));
}

#[test]
fn the_start_gate_blocks_before_privileges_are_dropped() {
    let r = run_with(
        &spec(BASE),
        root_with_bin(),
        pipes(),
        Some((12, c"/proc/self/fd/12")),
    );
    reached_exec(&r, "/bin/app");
    let f = &r.fake;
    assert!(f.pos("write fd3 R") < f.pos("write_file /proc/self/fd/12"));
    assert!(f.pos("write_file /proc/self/fd/12") < f.pos("drop_bounding"));
}

#[test]
fn devices_are_made_with_mknod_and_owned_as_asked() {
    let mut s = spec(BASE);
    let mut d = LinuxDevice::default();
    d.set_path("/dev/fuse".into())
        .set_typ(LinuxDeviceType::C)
        .set_major(10)
        .set_minor(229)
        .set_file_mode(Some(0o600))
        .set_uid(Some(1000))
        .set_gid(Some(100));
    s.linux_mut().as_mut().unwrap().set_devices(Some(vec![d]));
    let r = run_with(&s, root_with_bin(), pipes(), None);
    reached_exec(&r, "/bin/app");
    assert!(r
        .fake
        .log()
        .contains(&"mknod /dev/fuse 20600 10:229".to_string()));
    assert!(r
        .fake
        .log()
        .contains(&"chown /dev/fuse 1000:100".to_string()));
}

fn with_mount(dest: &str) -> Spec {
    let mut s = spec(BASE);
    let mut m = Mount::default();
    m.set_destination(dest.into())
        .set_typ(Some("tmpfs".into()))
        .set_source(Some("tmpfs".into()));
    let mut mounts = s.mounts().clone().unwrap();
    mounts.push(m);
    s.set_mounts(Some(mounts));
    s
}

#[test]
fn a_dangling_symlink_on_the_way_is_followed_inside_the_root() {
    // The image has /escape -> /tmp/victim (absolute: inside the root) and /rel -> ../up.
    let f = root_with_bin();
    f.links
        .borrow_mut()
        .insert("/escape".into(), "/tmp/victim".into());
    let r = run_with(&with_mount("/escape/mnt"), f, pipes(), None);
    reached_exec(&r, "/bin/app");
    let log = r.fake.log();
    for made in [
        "mkdir_at /tmp",
        "mkdir_at /tmp/victim",
        "mkdir_at /tmp/victim/mnt",
    ] {
        assert!(log.contains(&made.to_string()), "{made}: {log:#?}");
    }
    let f = root_with_bin();
    f.links
        .borrow_mut()
        .insert("/rel".into(), "../../up".into());
    let r = run_with(&with_mount("/rel/x"), f, pipes(), None);
    reached_exec(&r, "/bin/app");
    assert!(
        r.fake.log().contains(&"mkdir_at /up".to_string()),
        "{:#?}",
        r.fake.log()
    );
}

#[test]
fn a_symlink_loop_is_an_error_not_a_hang() {
    let f = root_with_bin();
    f.links.borrow_mut().insert("/a".into(), "/a".into());
    let r = run_with(&with_mount("/a/x"), f, pipes(), None);
    let e = r.result.unwrap_err().report;
    assert_eq!((e.stage, e.index, e.errno), (Stage::Mount, 4, libc::ELOOP));
}

/// `--read-only` adds read-only to the root mount and clears nothing: a bind remount with
/// MS_RDONLY alone used to drop the root's nodev, so image-shipped device nodes opened.
#[test]
fn a_read_only_root_keeps_its_other_mount_flags() {
    let mut s = spec(BASE);
    s.root_mut().as_mut().unwrap().set_readonly(Some(true));
    let r = run_with(&s, root_with_bin(), pipes(), None);
    reached_exec(&r, "/bin/app");
    let log = r.fake.log();
    let ro = format!(
        "setattr / +{:#x} -0x0 prop 0x0 rec false",
        crate::plan::mounts::attr::RDONLY
    );
    assert!(log.contains(&ro), "{log:#?}");
    let remounts_root = |l: &String| {
        l.strip_prefix("mount  /  0x")
            .and_then(|f| u64::from_str_radix(f.trim(), 16).ok())
            .is_some_and(|flags| flags & libc::MS_REMOUNT != 0)
    };
    assert!(
        !log.iter().any(remounts_root),
        "no remount of / that sets its flags anew: {log:#?}"
    );
}
