//! What a container gets unless told otherwise, written once for every user of the executor:
//! docker's defaults (capabilities, mounts, masked and read-only paths, device rules) for the
//! spec generator, and the OCI runtime spec's default devices for the executor itself.

use std::path::PathBuf;

use oci_spec::runtime::{Capability, LinuxDeviceCgroup, LinuxDeviceType, Mount};

/// PATH when the image sets none (docker's), also the search path for a command when the
/// spec's environment has no PATH.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// docker's default capability set.
pub const CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability (for `--privileged` and `--cap-add ALL`).
pub const ALL_CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::LinuxImmutable,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetAdmin,
    Capability::NetRaw,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::SysModule,
    Capability::SysRawio,
    Capability::SysChroot,
    Capability::SysPtrace,
    Capability::SysPacct,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysNice,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Mknod,
    Capability::Lease,
    Capability::AuditWrite,
    Capability::AuditControl,
    Capability::Setfcap,
    Capability::MacOverride,
    Capability::MacAdmin,
    Capability::Syslog,
    Capability::WakeAlarm,
    Capability::BlockSuspend,
    Capability::AuditRead,
    Capability::Perfmon,
    Capability::Bpf,
    Capability::CheckpointRestore,
];

/// Paths docker hides from containers (kernel internals, host hardware details), and the
/// page-frame tables (`/proc/kpage*`: flags, map counts and memory cgroup of every physical
/// page, readable by a container's root): they show where memory sits physically, which
/// row-hammer and cache side-channel attacks need.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/kpagecgroup",
    "/proc/kpagecount",
    "/proc/kpageflags",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths docker makes read-only (kernel tunables).
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Process limit of a container that asks for none (`--pids-limit` unset): podman's
/// default. Without one, a fork bomb in a container takes every pid of the host (process
/// mode) or of the guest. `--pids-limit 0` or `-1` asks for no limit.
pub const PIDS_LIMIT: i64 = 2048;

/// Size of /dev and /dev/shm (docker's 64 MiB).
pub const DEV_SHM_BYTES: u64 = 64 << 20;

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest))
        .set_typ(Some(typ.to_string()))
        .set_source(Some(PathBuf::from(source)))
        .set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

/// docker's mounts: /proc, a tmpfs /dev with its own devpts, /dev/shm (of `shm_bytes`),
/// /dev/mqueue, read-only /sys and the container's cgroup tree.
pub fn mounts(shm_bytes: u64) -> Vec<Mount> {
    let shm_size = format!("size={}k", shm_bytes.div_ceil(1024));
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm_size],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ]
}

/// A default device node: (path, type, major, minor, mode).
pub type DefaultDevice = (&'static str, LinuxDeviceType, i64, i64, u32);

/// The devices the OCI runtime spec says every container has, created by the executor
/// whether or not `linux.devices` lists them.
pub const DEVICES: &[DefaultDevice] = &[
    ("/dev/null", LinuxDeviceType::C, 1, 3, 0o666),
    ("/dev/zero", LinuxDeviceType::C, 1, 5, 0o666),
    ("/dev/full", LinuxDeviceType::C, 1, 7, 0o666),
    ("/dev/random", LinuxDeviceType::C, 1, 8, 0o666),
    ("/dev/urandom", LinuxDeviceType::C, 1, 9, 0o666),
    ("/dev/tty", LinuxDeviceType::C, 5, 0, 0o666),
];

/// One device cgroup rule (the spec's `linux.resources.devices` entry).
pub fn rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow)
        .set_typ(Some(typ))
        .set_major(major)
        .set_minor(minor)
        .set_access(Some(access.to_string()));
    r
}

/// docker's device cgroup rules: nothing, except the [`allowed_devices`].
pub fn device_rules() -> Vec<LinuxDeviceCgroup> {
    let mut rules = vec![rule(false, LinuxDeviceType::A, None, None, "rwm")];
    rules.extend(allowed_devices());
    rules
}

/// What every container may use whatever its spec's device rules say (runc's
/// AllowedDevices, docker's defaults): creating (not opening) any node, the default devices
/// and the terminal devices. Appended after the spec's rules, as runc does.
pub fn allowed_devices() -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{B, C};
    let mut rules = vec![
        rule(true, C, None, None, "m"),
        rule(true, B, None, None, "m"),
    ];
    for (_, typ, major, minor, _) in DEVICES {
        rules.push(rule(true, *typ, Some(*major), Some(*minor), "rwm"));
    }
    rules.push(rule(true, C, Some(5), Some(1), "rwm")); // /dev/console
    rules.push(rule(true, C, Some(5), Some(2), "rwm")); // /dev/ptmx
    rules.push(rule(true, C, Some(136), None, "rwm")); // /dev/pts/*
    rules
}
