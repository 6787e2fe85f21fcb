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

/// Where virtio-net's TAP comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TapSource {
    /// A TAP descriptor the VMM inherited (opened with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR by
    /// whoever started it, e.g. inside a container's network namespace).
    Fd(i32),
    /// A TAP to open (or create) by name in the VMM's own network namespace.
    Name(String),
}

/// A virtio-net device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    /// The TAP backend.
    pub tap: TapSource,
    /// The guest's MAC address.
    pub mac: [u8; 6],
    /// MTU told to the guest (VIRTIO_NET_F_MTU); none: the driver's default (1500).
    #[serde(default)]
    pub mtu: Option<u16>,
}

impl NetConfig {
    /// Parses `fd=N|tap=NAME,mac=aa:bb:cc:dd:ee:ff[,mtu=M]`.
    pub fn parse(spec: &str) -> Result<NetConfig> {
        let bad = |why: &str| Error::Config(format!("--net {spec:?}: {why}"));
        let (mut tap, mut mac, mut mtu) = (None, None, None);
        for part in spec.split(',') {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| bad(&format!("{part:?} is not KEY=VALUE")))?;
            match key {
                "fd" => {
                    let fd: i32 = value.parse().map_err(|_| bad("fd must be a number"))?;
                    if fd < 3 {
                        return Err(bad("fd must be 3 or more (0-2 are stdio)"));
                    }
                    tap = Some(TapSource::Fd(fd));
                }
                "tap" => {
                    if value.is_empty() || value.len() > 15 || value.contains('/') {
                        return Err(bad("tap must be an interface name of 1 to 15 characters"));
                    }
                    tap = Some(TapSource::Name(value.to_string()));
                }
                "mac" => mac = Some(parse_mac(value).ok_or_else(|| bad("bad mac"))?),
                "mtu" => {
                    let m: u16 = value.parse().map_err(|_| bad("mtu must be a number"))?;
                    if !(68..=65_535).contains(&m) {
                        return Err(bad("mtu must be 68 to 65535"));
                    }
                    mtu = Some(m);
                }
                other => return Err(bad(&format!("unknown option {other:?}"))),
            }
        }
        Ok(NetConfig {
            tap: tap.ok_or_else(|| bad("fd=N or tap=NAME is required"))?,
            mac: mac.ok_or_else(|| bad("mac=aa:bb:cc:dd:ee:ff is required"))?,
            mtu,
        })
    }
}

/// `aa:bb:cc:dd:ee:ff` → bytes; a unicast address only.
fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    if parts.next().is_some() || mac[0] & 1 != 0 {
        return None;
    }
    Some(mac)
}

/// Longest virtio-fs tag (the device's configuration space holds 36 bytes).
pub const MAX_FS_TAG_LEN: usize = 36;

/// A virtio-fs device served by a vhost-user backend (virtiofsd) on a Unix socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsConfig {
    /// The backend's listening socket (connected to before the jail is entered).
    pub socket: PathBuf,
    /// The tag the guest mounts (`mount -t virtiofs TAG DIR`).
    pub tag: String,
}

impl FsConfig {
    /// Parses `socket=PATH,tag=TAG`.
    pub fn parse(spec: &str) -> Result<FsConfig> {
        let bad = |why: &str| Error::Config(format!("--fs {spec:?}: {why}"));
        let (mut socket, mut tag) = (None, None);
        for part in spec.split(',') {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| bad(&format!("{part:?} is not KEY=VALUE")))?;
            match key {
                "socket" => socket = Some(PathBuf::from(value)),
                "tag" => tag = Some(value.to_string()),
                other => return Err(bad(&format!("unknown option {other:?}"))),
            }
        }
        let fs = FsConfig {
            socket: socket.ok_or_else(|| bad("socket=PATH is required"))?,
            tag: tag.ok_or_else(|| bad("tag=TAG is required"))?,
        };
        fs.validate().map_err(|e| bad(&e))?;
        Ok(fs)
    }

    /// A non-empty socket path and a tag of 1 to 36 printable ASCII bytes without spaces.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.socket.as_os_str().is_empty() {
            return Err("empty socket path".into());
        }
        let printable = self.tag.bytes().all(|b| b.is_ascii_graphic());
        if self.tag.is_empty() || self.tag.len() > MAX_FS_TAG_LEN || !printable {
            return Err(format!(
                "tag {:?} must be 1 to {MAX_FS_TAG_LEN} printable ASCII characters without spaces",
                self.tag
            ));
        }
        Ok(())
    }
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
    /// Optional virtio-net device.
    #[serde(default)]
    pub net: Option<NetConfig>,
    /// virtio-fs devices (vhost-user); with any, guest RAM is a shared memfd.
    #[serde(default)]
    pub fs: Vec<FsConfig>,
    /// Serial console output.
    #[serde(default)]
    pub serial: SerialOutput,
    /// Confine each VMM thread with its seccomp filter before the guest runs (docs/vmm.md,
    /// "Seccomp"). On by default in the `hull-vmm` binary and JSON files; off in
    /// [`VmConfig::new`], because a library caller's own thread becomes the event loop and
    /// would stay confined after `run` returns.
    #[serde(default = "default_true")]
    pub seccomp: bool,
    /// Run jailed (docs/vmm.md, "Jail"): entered after the VM is built, before the guest runs.
    #[serde(default)]
    pub jail: Option<crate::jail::JailConfig>,
}

fn default_true() -> bool {
    true
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
            net: None,
            fs: Vec::new(),
            serial: SerialOutput::Stdout,
            seccomp: false,
            jail: None,
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
        let devices = self.disks.len()
            + usize::from(self.vsock.is_some())
            + usize::from(self.net.is_some())
            + self.fs.len();
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
        for fs in &self.fs {
            fs.validate()
                .map_err(|e| Error::Config(format!("fs {:?}: {e}", fs.tag)))?;
        }
        let mut tags: Vec<&str> = self.fs.iter().map(|f| f.tag.as_str()).collect();
        tags.sort_unstable();
        if let Some(w) = tags.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::Config(format!("fs: tag {:?} given twice", w[0])));
        }
        if let Some(jail) = &self.jail {
            jail.validate()?;
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
    fn net_spec_parsing() {
        let n = NetConfig::parse("fd=3,mac=02:42:ac:11:00:02,mtu=1400").unwrap();
        assert_eq!(n.tap, TapSource::Fd(3));
        assert_eq!(n.mac, [0x02, 0x42, 0xac, 0x11, 0, 2]);
        assert_eq!(n.mtu, Some(1400));
        let n = NetConfig::parse("tap=tap0,mac=02:00:00:00:00:01").unwrap();
        assert_eq!(n.tap, TapSource::Name("tap0".into()));
        assert_eq!(n.mtu, None);
        for (bad, word) in [
            ("mac=02:00:00:00:00:01", "required"),
            ("fd=3", "mac"),
            ("fd=1,mac=02:00:00:00:00:01", "3 or more"),
            ("fd=3,mac=01:00:00:00:00:01", "bad mac"),
            ("fd=3,mac=02:00:00:00:00", "bad mac"),
            ("fd=3,mac=02:00:00:00:00:01,mtu=9", "mtu"),
            ("fd=3,mac=02:00:00:00:00:01,speed=10", "speed"),
            ("tap=a/b,mac=02:00:00:00:00:01", "tap"),
        ] {
            let e = NetConfig::parse(bad).unwrap_err().to_string();
            assert!(e.contains(word) && e.contains("--net"), "{bad}: {e}");
        }
    }

    #[test]
    fn fs_spec_parsing() {
        let f = FsConfig::parse("socket=/j/fs0.sock,tag=hullvol0").unwrap();
        assert_eq!(f.socket, PathBuf::from("/j/fs0.sock"));
        assert_eq!(f.tag, "hullvol0");
        for (bad, word) in [
            ("tag=a", "socket"),
            ("socket=/s", "tag"),
            ("socket=/s,tag=", "tag"),
            ("socket=/s,tag=a b", "tag"),
            ("socket=/s,tag=0123456789012345678901234567890123456", "36"),
            ("socket=,tag=a", "socket"),
            ("socket=/s,tag=a,cache=always", "cache"),
        ] {
            let e = FsConfig::parse(bad).unwrap_err().to_string();
            assert!(e.contains(word) && e.contains("--fs"), "{bad}: {e}");
        }
        let mut c = VmConfig::new("/k");
        c.fs = vec![f.clone(), f];
        assert!(c.validate().unwrap_err().to_string().contains("twice"));
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
