//! `hull-oci features`: what this runtime implements, in the runtime-spec's features.md
//! format (containerd and CRI-O read it to decide what they may ask for).

use serde_json::{json, Value};

use crate::state::OCI_VERSION;

/// Annotation choosing the isolation model of one container.
pub const ISOLATION_ANNOTATION: &str = "io.hull.isolation";

/// Namespaces a container can get or join (by path).
pub const NAMESPACES: &[&str] = &["pid", "network", "ipc", "uts", "mount", "user", "cgroup"];

/// Lifecycle hooks run (OCI `hooks`).
pub const HOOKS: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// mount(2) options understood in `mounts[].options`.
pub const MOUNT_OPTIONS: &[&str] = &[
    "bind",
    "rbind",
    "ro",
    "rw",
    "nosuid",
    "suid",
    "nodev",
    "dev",
    "noexec",
    "exec",
    "noatime",
    "relatime",
    "strictatime",
    "nodiratime",
    "sync",
    "dirsync",
    "remount",
    "defaults",
    "private",
    "rprivate",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "unbindable",
    "runbindable",
];

/// Seccomp actions of the OCI format.
pub const SECCOMP_ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_TRAP",
];

/// Seccomp argument operators.
pub const SECCOMP_OPERATORS: &[&str] = &[
    "SCMP_CMP_EQ",
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_GT",
    "SCMP_CMP_GE",
    "SCMP_CMP_MASKED_EQ",
];

/// The features document.
pub fn document() -> Value {
    let capabilities: Vec<String> = caps_names();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": HOOKS,
        "mountOptions": MOUNT_OPTIONS,
        "linux": {
            "namespaces": NAMESPACES,
            "capabilities": capabilities,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": SECCOMP_ACTIONS,
                "operators": SECCOMP_OPERATORS,
                "archs": ["SCMP_ARCH_X86_64"],
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
        },
        "annotations": {
            ISOLATION_ANNOTATION: "process|vm: the isolation model of this container \
                                   (default: hull-oci's configured policy, else process)",
        },
    })
}

/// Every capability name of this kernel family, `CAP_` prefixed as the spec writes them.
fn caps_names() -> Vec<String> {
    const NAMES: &[&str] = &[
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    NAMES.iter().map(|n| format!("CAP_{n}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_the_runtime_spec_features_schema() {
        let doc = document();
        let parsed: oci_spec::runtime::Features = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(parsed.oci_version_max(), OCI_VERSION);
        let linux = parsed.linux().as_ref().unwrap();
        assert_eq!(linux.namespaces().as_ref().unwrap().len(), NAMESPACES.len());
        assert!(linux
            .capabilities()
            .as_ref()
            .unwrap()
            .contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(doc["annotations"][ISOLATION_ANNOTATION]
            .as_str()
            .unwrap()
            .contains("vm"));
    }
}
