//! The microVM configuration: from `hull-vmm` arguments or a JSON file (docs/vmm.md).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::boot::mptable::MAX_CPUS;
use crate::error::{Error, Result};
use crate::memory::{MAX_MEMORY_MIB, MIN_MEMORY_MIB};

/// Default kernel command line.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=1";
/// Default guest RAM (MiB).
pub const DEFAULT_MEMORY_MIB: u64 = 128;
/// Default guest CID.
pub const DEFAULT_GUEST_CID: u32 = 3;
/// Most virtio devices (disks + vsock); their IRQs are 5 ..= 20.
pub const MAX_VIRTIO_DEVICES: usize = 16;

fn default_cmdline() -> String {
    DEFAULT_CMDLINE.to_string()
}
fn default_memory() -> u64 {
    DEFAULT_MEMORY_MIB
}
fn default_vcpus() -> u8 {
    1
}
fn default_cid() -> u32 {
    DEFAULT_GUEST_CID
}

/// A virtio-blk disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// Backing file (raw image).
    pub path: PathBuf,
    /// Whether the guest may only read.
    #[serde(default)]
    pub read_only: bool,
}

impl DiskConfig {
    /// Parses `PATH[,ro]` (also `,rw`).
    pub fn parse(spec: &str) -> Result<DiskConfig> {
        let (path, read_only) = match spec.rsplit_once(',') {
            Some((path, "ro")) => (path, true),
            Some((path, "rw")) => (path, false),
            Some((_, opt)) => {
                return Err(Error::Config(format!(
                    "--disk {spec:?}: unknown option {opt:?} (expected PATH[,ro])"
                )))
            }
            None => (spec, false),
        };
        if path.is_empty() {
            return Err(Error::Config(format!("--disk {spec:?}: empty path")));
        }
        Ok(DiskConfig {
            path: PathBuf::from(path),
            read_only,
        })
    }
}

/// The virtio-vsock device and its host Unix socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VsockConfig {
    /// Host Unix socket path (guest connections to port P go to `PATH_P`).
    pub uds_path: PathBuf,
    /// The guest's CID (>= 3).
    #[serde(default = "default_cid")]
    pub guest_cid: u32,
}

/// Where the guest's serial console output goes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum SerialOutput {
    /// The VMM's stdout.
    #[default]
    Stdout,
    /// Discarded.
    None,
    /// A file (created or truncated).
    File(PathBuf),
}

impl From<String> for SerialOutput {
    fn from(s: String) -> Self {
        match s.as_str() {
            "stdout" => SerialOutput::Stdout,
            "none" => SerialOutput::None,
            _ => SerialOutput::File(PathBuf::from(s)),
        }
    }
}

impl From<SerialOutput> for String {
    fn from(s: SerialOutput) -> String {
        match s {
            SerialOutput::Stdout => "stdout".into(),
            SerialOutput::None => "none".into(),
            SerialOutput::File(p) => p.to_string_lossy().into_owned(),
        }
    }
}

/// A whole microVM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// vmlinux (ELF) or bzImage.
    pub kernel: PathBuf,
    /// Optional initramfs.
    #[serde(default)]
    pub initramfs: Option<PathBuf>,
    /// Kernel command line (the VMM appends reboot=k and the virtio devices).
    #[serde(default = "default_cmdline")]
    pub cmdline: String,
    /// Guest RAM in MiB.
    #[serde(default = "default_memory")]
    pub memory_mib: u64,
    /// Number of vCPUs.
    #[serde(default = "default_vcpus")]
    pub vcpus: u8,
    /// virtio-blk disks, in /dev/vda, /dev/vdb ... order.
    #[serde(default)]
    pub disks: Vec<DiskConfig>,
    /// Optional virtio-vsock device.
    #[serde(default)]
    pub vsock: Option<VsockConfig>,
    /// Serial console output.
    #[serde(default)]
    pub serial: SerialOutput,
}

impl VmConfig {
    /// A configuration with defaults for everything but the kernel.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        VmConfig {
            kernel: kernel.into(),
            initramfs: None,
            cmdline: default_cmdline(),
            memory_mib: DEFAULT_MEMORY_MIB,
            vcpus: 1,
            disks: Vec::new(),
            vsock: None,
            serial: SerialOutput::Stdout,
        }
    }

    /// Parses a JSON configuration.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::Config(format!("JSON config: {e}")))
    }

    /// Checks ranges and counts; file contents are checked when they are loaded.
    pub fn validate(&self) -> Result<()> {
        if self.vcpus == 0 || self.vcpus > MAX_CPUS {
            return Err(Error::Config(format!(
                "vcpus: {} is outside 1..={MAX_CPUS}",
                self.vcpus
            )));
        }
        if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&self.memory_mib) {
            return Err(Error::Config(format!(
                "memory: {} MiB is outside {MIN_MEMORY_MIB}..={MAX_MEMORY_MIB} MiB",
                self.memory_mib
            )));
        }
        let devices = self.disks.len() + usize::from(self.vsock.is_some());
        if devices > MAX_VIRTIO_DEVICES {
            return Err(Error::Config(format!(
                "{devices} virtio devices requested, at most {MAX_VIRTIO_DEVICES} are supported"
            )));
        }
        if let Some(vsock) = &self.vsock {
            if vsock.guest_cid < 3 || vsock.guest_cid == u32::MAX {
                return Err(Error::Config(format!(
                    "vsock-cid: {} is reserved (use 3 ..= 4294967294)",
                    vsock.guest_cid
                )));
            }
            if vsock.uds_path.as_os_str().is_empty() {
                return Err(Error::Config("vsock: empty socket path".into()));
            }
        }
        if self.kernel.as_os_str().is_empty() {
            return Err(Error::Config("kernel: empty path".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_spec_parsing() {
        assert_eq!(
            DiskConfig::parse("/a/b.img,ro").unwrap(),
            DiskConfig {
                path: "/a/b.img".into(),
                read_only: true
            }
        );
        assert!(!DiskConfig::parse("/a/b.img").unwrap().read_only);
        assert!(matches!(DiskConfig::parse("/a,xx"), Err(Error::Config(m)) if m.contains("xx")));
        assert!(DiskConfig::parse(",ro").is_err());
    }

    #[test]
    fn json_config_with_defaults_and_unknown_fields() {
        let c = VmConfig::from_json(r#"{"kernel":"/k","disks":[{"path":"/d","read_only":true}],"vsock":{"uds_path":"/v"},"serial":"none"}"#).unwrap();
        assert_eq!(c.memory_mib, DEFAULT_MEMORY_MIB);
        assert_eq!(c.vcpus, 1);
        assert_eq!(c.vsock.as_ref().unwrap().guest_cid, 3);
        assert_eq!(c.serial, SerialOutput::None);
        assert!(c.disks[0].read_only);
        let err = VmConfig::from_json(r#"{"kernel":"/k","memroy_mib":5}"#).unwrap_err();
        assert!(err.to_string().contains("memroy_mib"), "{err}");
        let round: VmConfig = VmConfig::from_json(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(round, c);
    }

    #[test]
    fn validation_names_the_bad_option() {
        let mut c = VmConfig::new("/k");
        c.vcpus = 0;
        assert!(c.validate().unwrap_err().to_string().contains("vcpus"));
        c.vcpus = 2;
        c.memory_mib = 1;
        assert!(c.validate().unwrap_err().to_string().contains("memory"));
        c.memory_mib = 64;
        c.vsock = Some(VsockConfig {
            uds_path: "/s".into(),
            guest_cid: 2,
        });
        assert!(c.validate().unwrap_err().to_string().contains("vsock-cid"));
        c.vsock = None;
        c.disks = vec![
            DiskConfig {
                path: "/d".into(),
                read_only: false
            };
            17
        ];
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("virtio devices"));
        c.disks.clear();
        c.validate().unwrap();
    }
}
