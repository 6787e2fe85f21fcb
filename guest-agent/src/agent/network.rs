//! The container's network inside the guest.
//!
//! With `--network bridge` the host ties the container's CNI veth to the VM's TAP (tc
//! mirred both ways), so the guest's eth0 *is* the container's interface: it gets the
//! veth's address, prefix, gateway and MTU (its MAC is the virtio-net device's, which the
//! host set to the veth's). The container then shares the guest's network namespace: the
//! VM is its boundary. The configuration is done with interface ioctls (no netlink
//! library, no `ip` binary in the guest).
//!
//! The host also sends the container's /etc/resolv.conf, /etc/hosts and /etc/hostname;
//! they are written to the guest's /run and bound read-only over the container root's
//! files, as process mode binds them.

use std::ffi::CString;
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hull_protocol::{ContainerFile, Interface, CONTAINER_FILES};
use nix::mount::{mount, MsFlags};

/// The guest's NIC (the first, and only, virtio-net device).
const IFNAME: &str = "eth0";
/// Where the container's files are kept in the guest.
const FILES_DIR: &str = "/run/hull/etc";
/// How long the virtio-net driver may take to register eth0 after boot.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the new descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is new and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req
}

fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; the kernel reads it as the
    // family says.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn ioctl(sock: &OwnedFd, request: libc::c_ulong, req: &mut libc::ifreq, what: &str) -> Result<()> {
    // SAFETY: the interface ioctls read and write one ifreq we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), request as _, req as *mut libc::ifreq) } < 0 {
        return Err(io::Error::last_os_error()).with_context(|| what.to_string());
    }
    Ok(())
}

fn set_up(sock: &OwnedFd, name: &str) -> Result<()> {
    let mut req = ifreq(name);
    ioctl(
        sock,
        libc::SIOCGIFFLAGS,
        &mut req,
        &format!("get {name} flags"),
    )?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    ioctl(
        sock,
        libc::SIOCSIFFLAGS,
        &mut req,
        &format!("bring {name} up"),
    )
}

/// Configures eth0 as `iface` says: MTU, address and netmask, up, default route.
pub fn configure(iface: &Interface) -> Result<()> {
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let sys = Path::new("/sys/class/net").join(IFNAME);
    while !sys.exists() {
        if Instant::now() > deadline {
            bail!("{IFNAME} did not appear within {PROBE_TIMEOUT:?}: no virtio-net device?");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mac = fs::read_to_string(sys.join("address")).unwrap_or_default();
    if !mac.trim().eq_ignore_ascii_case(&iface.mac) {
        bail!(
            "{IFNAME} has MAC {} but the container's interface is {}",
            mac.trim(),
            iface.mac
        );
    }
    let sock = socket()?;
    set_up(&sock, "lo")?;

    let mut req = ifreq(IFNAME);
    req.ifr_ifru.ifru_mtu = iface.mtu as libc::c_int;
    ioctl(&sock, libc::SIOCSIFMTU, &mut req, "set the MTU")?;

    let mut req = ifreq(IFNAME);
    req.ifr_ifru.ifru_addr = sockaddr(iface.address);
    ioctl(&sock, libc::SIOCSIFADDR, &mut req, "set the address")?;
    let mask = if iface.prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(iface.prefix.min(32)))
    };
    let mut req = ifreq(IFNAME);
    req.ifr_ifru.ifru_netmask = sockaddr(Ipv4Addr::from(mask));
    ioctl(&sock, libc::SIOCSIFNETMASK, &mut req, "set the netmask")?;
    set_up(&sock, IFNAME)?;

    let dev = CString::new(IFNAME)?;
    // SAFETY: rtentry is plain data (the dev pointer is set below); all-zero is valid.
    let mut route: libc::rtentry = unsafe { std::mem::zeroed() };
    route.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
    route.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
    route.rt_gateway = sockaddr(iface.gateway);
    route.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    route.rt_dev = dev.as_ptr() as *mut libc::c_char;
    // SAFETY: SIOCADDRT reads one rtentry, whose dev string outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT as _, &route) } < 0 {
        return Err(io::Error::last_os_error()).context("add the default route");
    }
    Ok(())
}

/// Writes `files` to the guest's /run and binds each read-only over its path in `root`
/// (created when the image lacks it; skipped, with a note, on a read-only root that lacks
/// it). Paths are only the three the protocol allows, so nothing the host sends selects
/// another file; targets are resolved inside `root` without following a symlink out.
pub fn install_files(root: &Path, files: &[ContainerFile]) -> Result<()> {
    fs::create_dir_all(FILES_DIR).context("create the container files' directory")?;
    for f in files {
        if !CONTAINER_FILES.contains(&f.path.as_str()) {
            bail!("refusing file {:?}", f.path);
        }
        let name = f.path.trim_start_matches("/etc/");
        let source = Path::new(FILES_DIR).join(name);
        fs::write(&source, &f.contents).with_context(|| format!("write {}", source.display()))?;
        let etc = root.join("etc");
        if fs::symlink_metadata(&etc).is_ok_and(|m| m.file_type().is_symlink()) {
            bail!(
                "/etc in the image is a symlink: refusing to bind {}",
                f.path
            );
        }
        let target = etc.join(name);
        let exists = match fs::symlink_metadata(&target) {
            Ok(m) if m.file_type().is_symlink() => {
                // A symlinked /etc/resolv.conf (systemd images) is replaced in the bind's
                // place: bind onto the link itself is not possible, so remove it.
                fs::remove_file(&target).is_ok() && fs::write(&target, b"").is_ok()
            }
            Ok(m) => m.is_file(),
            Err(_) => fs::create_dir_all(&etc).is_ok() && fs::write(&target, b"").is_ok(),
        };
        if !exists {
            super::log(&format!(
                "{} is missing from the read-only image: not provided",
                f.path
            ));
            continue;
        }
        mount(
            Some(&source),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("bind {}", f.path))?;
        mount(
            None::<&str>,
            &target,
            None::<&str>,
            MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .with_context(|| format!("make {} read-only", f.path))?;
    }
    Ok(())
}
