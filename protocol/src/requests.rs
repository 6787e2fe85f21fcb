//! What the host asks the agent to run: the container's OCI runtime spec (`Start`) and
//! further processes (`Exec`), with how their standard streams reach the host and what the
//! host's network setup made for the container. The agent carries them out with the same
//! executor the process model uses on the host.

use oci_spec::runtime::{Process, Spec};
use serde::{Deserialize, Serialize};

use crate::{check_command, check_str, ProtocolError};

/// Longest hostname (the kernel's limit).
pub const MAX_HOSTNAME: usize = 64;
/// Longest `--user` an exec may ask the agent to resolve.
pub const MAX_USER: usize = 256;

/// How a process's standard streams are connected to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StdioSpec {
    /// A terminal made inside the container (stdout frames then carry its output).
    pub tty: bool,
    /// Keep stdin open (stdin frames follow); otherwise stdin is /dev/null (or the
    /// terminal, which the host then never writes to).
    pub stdin: bool,
    /// Initial terminal size (rows, cols) with `tty`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty_size: Option<(u16, u16)>,
}

/// `Start`: the container, as its OCI runtime spec describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    /// The container's `config.json` as the host keeps it. The agent puts it on the guest:
    /// `root.path` becomes the root it assembled from the image disk; nothing else in it
    /// names a host resource (the vm backend refuses bind mounts and namespace paths).
    pub spec: Box<Spec>,
    /// The first process's standard streams.
    pub stdio: StdioSpec,
    /// The container's network: eth0 and the /etc files. `None`: a network namespace of
    /// its own with loopback only, and the image's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Box<Network>>,
}

/// `Exec`: another process in the running container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecSpec {
    /// The OCI process (command, environment, cwd, identity, capabilities, rlimits...).
    pub process: Box<Process>,
    /// A `--user` still to resolve against the running container's /etc/passwd and
    /// /etc/group, which only the guest sees; replaces `process.user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Its standard streams.
    pub stdio: StdioSpec,
}

fn check_process(p: &Process) -> Result<(), ProtocolError> {
    check_command(
        p.args().as_deref().unwrap_or(&[]),
        p.env().as_deref().unwrap_or(&[]),
    )
    .map_err(ProtocolError::Violation)?;
    if !p.cwd().is_absolute() {
        return Err(ProtocolError::Violation(format!(
            "cwd {:?} is not absolute",
            p.cwd()
        )));
    }
    Ok(())
}

impl ContainerSpec {
    /// Checks what the agent relies on before planning (the executor checks the rest).
    pub fn validate(&self) -> Result<(), ProtocolError> {
        let process = self
            .spec
            .process()
            .as_ref()
            .ok_or_else(|| ProtocolError::Violation("the spec has no process".into()))?;
        check_process(process)?;
        if let Some(h) = self.spec.hostname() {
            check_str("hostname", h)?;
            if h.len() > MAX_HOSTNAME {
                return Err(ProtocolError::Violation(format!(
                    "hostname longer than {MAX_HOSTNAME}"
                )));
            }
        }
        if let Some(n) = &self.network {
            n.validate()?;
        }
        Ok(())
    }
}

impl ExecSpec {
    /// Checks what the agent relies on before planning.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        check_process(&self.process)?;
        if let Some(u) = &self.user {
            check_str("user", u)?;
            if u.len() > MAX_USER {
                return Err(ProtocolError::Violation(format!(
                    "user longer than {MAX_USER}"
                )));
            }
        }
        Ok(())
    }
}

/// What the host's network setup made for the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Network {
    /// eth0 (`--network bridge`): the agent configures the guest's eth0 so, and the
    /// container shares the guest's network namespace. `None` (`--network none`): the
    /// container gets a network namespace of its own with loopback only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<Interface>,
    /// Files bound read-only into the container (its /etc/resolv.conf, /etc/hosts,
    /// /etc/hostname, as the host wrote them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ContainerFile>,
}

/// eth0 as the host's network setup made it (the guest takes the veth's identity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// MAC address `aa:bb:cc:dd:ee:ff` (what the virtio-net device reports too).
    pub mac: String,
    /// IPv4 address.
    pub address: std::net::Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
    /// Default gateway.
    pub gateway: std::net::Ipv4Addr,
    /// MTU.
    pub mtu: u32,
}

/// A file the agent puts in place in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerFile {
    /// Absolute path in the container; one of [`CONTAINER_FILES`].
    pub path: String,
    /// Contents.
    pub contents: String,
}

/// The only paths [`ContainerFile`] may name.
pub const CONTAINER_FILES: [&str; 3] = ["/etc/resolv.conf", "/etc/hosts", "/etc/hostname"];

impl Network {
    /// Checks the bounds of every field.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        if let Some(i) = &self.interface {
            let mac_ok = i.mac.len() == 17
                && i.mac
                    .split(':')
                    .all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()));
            if !mac_ok {
                return Err(ProtocolError::Violation(format!("bad MAC {:?}", i.mac)));
            }
            if i.prefix == 0 || i.prefix > 30 || !(68..=65_535).contains(&i.mtu) {
                return Err(ProtocolError::Violation(format!(
                    "bad interface prefix /{} or MTU {}",
                    i.prefix, i.mtu
                )));
            }
        }
        if self.files.len() > CONTAINER_FILES.len() {
            return Err(ProtocolError::Violation("too many files".into()));
        }
        for f in &self.files {
            if !CONTAINER_FILES.contains(&f.path.as_str()) {
                return Err(ProtocolError::Violation(format!(
                    "file {:?} is not one the host may set",
                    f.path
                )));
            }
            check_str("file contents", &f.contents)?;
        }
        Ok(())
    }
}
