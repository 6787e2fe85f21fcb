//! How a microVM joins the container network that CNI made (Kata Containers' "tcfilter"
//! model): a TAP is created *inside the container's network namespace*, next to the CNI
//! veth `eth0`, and tc ties the two together with a mirred redirect in each direction:
//! every frame arriving on eth0 leaves through the TAP to the guest, every frame the
//! guest sends leaves through eth0 to the bridge. The guest's eth0 takes the veth's MAC,
//! address and MTU, so to the bridge, portmap's DNAT and the masquerade rules the VM *is*
//! the container the CNI plugins attached. The same network setup serves both isolation
//! models.
//!
//! The TAP is opened by hull (non-persistent, with the virtio-net header) and its
//! descriptor handed to hull-vmm, which therefore needs neither /dev/net/tun nor the
//! namespace. It disappears when the VMM exits; the tc rules go with the namespace.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::{netns, Attachment, Interface, Namespace, NetworkError};

/// The TAP's name inside the container's namespace.
pub const TAP_NAME: &str = "tap0";

// linux/if_tun.h
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;

/// What hull-vmm needs for its virtio-net device.
#[derive(Debug)]
pub struct VmLink {
    /// The TAP (pass to the VMM; hull closes its copy after the VMM started).
    pub tap: OwnedFd,
    /// The guest's MAC (the veth's).
    pub mac: String,
    /// The MTU (the veth's).
    pub mtu: u32,
}

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    value: libc::c_int,
    _pad: [u8; 20],
}

impl IfReq {
    fn named(name: &str) -> IfReq {
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            value: 0,
            _pad: [0; 20],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        req
    }
}

fn ioctl(fd: i32, request: libc::c_ulong, req: &mut IfReq) -> io::Result<()> {
    // SAFETY: the TUN and interface ioctls read and write one 40-byte ifreq we own.
    if unsafe { libc::ioctl(fd, request, req as *mut IfReq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates the TAP in the namespace the calling thread is in: MTU set, brought up.
fn create_tap(mtu: u32) -> io::Result<OwnedFd> {
    let tun: File = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("open /dev/net/tun: {e} (create it with `mknod /dev/net/tun c 10 200`)"),
            )
        })?;
    let mut req = IfReq::named(TAP_NAME);
    req.value = i32::from(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
    ioctl(tun.as_raw_fd(), TUNSETIFF, &mut req)?;
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)?;
    let mut req = IfReq::named(TAP_NAME);
    req.value = mtu as libc::c_int;
    ioctl(sock.as_raw_fd(), libc::SIOCSIFMTU, &mut req)?;
    let mut req = IfReq::named(TAP_NAME);
    ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req)?;
    req.value |= libc::IFF_UP;
    ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &mut req)?;
    Ok(tun.into())
}

/// Runs `tc ARGS` inside the namespace `ns`.
fn tc(ns: &OwnedFd, args: &[&str]) -> Result<(), NetworkError> {
    let raw = ns.as_raw_fd();
    let mut cmd = Command::new("tc");
    cmd.args(args)
        .env_clear()
        .env("PATH", super::cni::PLUGIN_PATH)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: setns is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(raw, libc::CLONE_NEWNET) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().map_err(|e| {
        NetworkError::io(if e.kind() == io::ErrorKind::NotFound {
            "run tc (package iproute2)".to_string()
        } else {
            format!("run tc {}", args.join(" "))
        })(e)
    })?;
    if !out.status.success() {
        return Err(NetworkError::Invalid(format!(
            "tc {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// For a container attached to a bridge: creates its VM's TAP in its namespace and ties
/// it to eth0 both ways. `None` when the container has no bridge interface (`none`).
pub fn link(attachment: &Attachment) -> Result<Option<VmLink>, NetworkError> {
    let (Namespace::Join(path), Some(iface)) = (&attachment.namespace, &attachment.interface)
    else {
        return Ok(None);
    };
    link_in(path, iface).map(Some)
}

/// Creates a TAP in the namespace at `path` and ties it to `iface` both ways. On error
/// nothing of it is left: the TAP goes with its descriptor, the qdiscs are removed.
pub fn link_in(path: &Path, iface: &Interface) -> Result<VmLink, NetworkError> {
    let tap = netns::run_in(path, || create_tap(iface.mtu)).map_err(NetworkError::io(
        "create the VM's TAP in the container's namespace",
    ))?;
    let ns =
        netns::open(path).map_err(NetworkError::io("open the container's network namespace"))?;
    if let Err(e) = mirror(&ns, &iface.name) {
        remove_qdiscs(&ns, &iface.name);
        return Err(e);
    }
    Ok(VmLink {
        tap,
        mac: iface.mac.clone(),
        mtu: iface.mtu,
    })
}

/// The ingress qdiscs and mirred filters between `dev` and the TAP, both ways.
fn mirror(ns: &OwnedFd, dev: &str) -> Result<(), NetworkError> {
    for d in [dev, TAP_NAME] {
        tc(
            ns,
            &["qdisc", "add", "dev", d, "handle", "ffff:", "ingress"],
        )?;
    }
    // u32 with an all-matching key, as Kata does (cls_matchall is not in every kernel).
    for (from, to) in [(dev, TAP_NAME), (TAP_NAME, dev)] {
        tc(
            ns,
            &[
                "filter", "add", "dev", from, "parent", "ffff:", "protocol", "all", "u32", "match",
                "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", to,
            ],
        )?;
    }
    Ok(())
}

/// Removes the ingress qdisc (and its filters) from `dev`; missing is fine.
fn remove_qdiscs(ns: &OwnedFd, dev: &str) {
    let _ = tc(ns, &["qdisc", "del", "dev", dev, "ingress"]);
}

/// Undoes [`link_in`] on an interface that outlives the VM (the caller's namespace in the
/// OCI path: the TAP went with the VMM, the redirect on `dev` would stay). Missing
/// namespace or qdisc is fine.
pub fn unlink_in(path: &Path, dev: &str) {
    if let Ok(ns) = netns::open(path) {
        remove_qdiscs(&ns, dev);
    }
}
