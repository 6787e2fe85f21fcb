//! The TAP device behind virtio-net: a descriptor inherited from whoever started the VMM
//! (hull creates the TAP inside the container's network namespace and passes it, so the
//! VMM needs neither /dev/net/tun nor that namespace), or a TAP opened by name in the
//! VMM's own namespace when run by hand.
//!
//! Frames cross the TAP with a 12-byte virtio-net header in front (`IFF_VNET_HDR`,
//! `TUNSETVNETHDRSZ`): the same `virtio_net_hdr_v1` the guest reads and writes, so frames
//! go between guest memory and the TAP with one `readv`/`writev` and no copy, and the
//! checksum/segmentation offload fields reach the host stack as they are.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

/// Size of `virtio_net_hdr_v1` (VERSION_1 always has `num_buffers`).
pub const VNET_HDR_LEN: usize = 12;

// linux/if_tun.h
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNGETIFF: libc::c_ulong = 0x8004_54d2;
pub(crate) const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
/// `TUNSETOFFLOAD` flags: what the reader of the TAP (the guest) accepts.
pub const TUN_F_CSUM: u32 = 0x01;
/// TCPv4 segmentation offload.
pub const TUN_F_TSO4: u32 = 0x02;
/// TCPv6 segmentation offload.
pub const TUN_F_TSO6: u32 = 0x04;

/// `struct ifreq` with the flags member (40 bytes, as the kernel reads it).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An open TAP with the virtio-net header enabled, in non-blocking mode.
#[derive(Debug)]
pub struct Tap {
    file: File,
}

impl Tap {
    /// Takes over descriptor `fd` (inherited), after checking that it is a TAP with the
    /// virtio-net header and no packet information prefix.
    pub fn from_inherited_fd(fd: RawFd) -> io::Result<Tap> {
        if fd < 3 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("fd {fd} is a standard stream, not a TAP"),
            ));
        }
        // SAFETY: F_GETFD only asks whether the descriptor is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("fd {fd} is not open"),
            ));
        }
        // SAFETY: the descriptor is open and was handed to this process to own (`--net
        // fd=N`); nothing else in the VMM uses it.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let tap = Tap { file };
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: 0,
            _pad: [0; 22],
        };
        tap.ioctl(TUNGETIFF, &mut req).map_err(|e| {
            io::Error::new(e.kind(), format!("fd {fd} is not a TUN/TAP device ({e})"))
        })?;
        let want = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        if req.flags & want != want {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "fd {fd} is not a TAP opened with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR (flags {:#x})",
                    req.flags
                ),
            ));
        }
        tap.prepare()?;
        Ok(tap)
    }

    /// Opens (or creates) the TAP named `name` in the VMM's network namespace.
    pub fn open_named(name: &str) -> io::Result<Tap> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', '\0']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad TAP name {name:?}"),
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/net/tun")?;
        let tap = Tap { file };
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        tap.ioctl(TUNSETIFF, &mut req)
            .map_err(|e| io::Error::new(e.kind(), format!("TUNSETIFF {name}: {e}")))?;
        tap.prepare()?;
        Ok(tap)
    }

    /// Sets the header size and non-blocking mode.
    fn prepare(&self) -> io::Result<()> {
        let size: libc::c_int = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int from the pointer we pass.
        if unsafe { libc::ioctl(self.file.as_raw_fd(), TUNSETVNETHDRSZ, &size) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: F_GETFL/F_SETFL on our own descriptor.
        unsafe {
            let flags = libc::fcntl(self.file.as_raw_fd(), libc::F_GETFL);
            if flags < 0
                || libc::fcntl(
                    self.file.as_raw_fd(),
                    libc::F_SETFL,
                    flags | libc::O_NONBLOCK,
                ) < 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    fn ioctl(&self, request: libc::c_ulong, req: &mut IfReq) -> io::Result<()> {
        // SAFETY: TUNSETIFF/TUNGETIFF read and write an ifreq-sized buffer we own.
        if unsafe { libc::ioctl(self.file.as_raw_fd(), request, req as *mut IfReq) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Tells the TAP which offloads the guest accepts on frames it receives (TUN_F_*).
    pub fn set_offload(&self, flags: u32) -> io::Result<()> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        if unsafe { libc::ioctl(self.file.as_raw_fd(), TUNSETOFFLOAD, flags as libc::c_ulong) } < 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads one frame (header included) into `iov`; `Ok(None)` when none is waiting.
    pub fn read_frame(&self, iov: &[libc::iovec]) -> io::Result<Option<usize>> {
        loop {
            // SAFETY: every iovec points into guest memory the caller keeps mapped for the
            // call; the kernel writes at most iov_len bytes to each.
            let n = unsafe {
                libc::readv(
                    self.file.as_raw_fd(),
                    iov.as_ptr(),
                    iov.len().min(libc::UIO_MAXIOV as usize) as libc::c_int,
                )
            };
            if n >= 0 {
                return Ok(Some(n as usize));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(e),
            }
        }
    }

    /// Writes one frame (header included) from `iov`. `Ok(false)`: the TAP could not take
    /// it now (the frame is dropped, as a full NIC queue drops it).
    pub fn write_frame(&self, iov: &[libc::iovec]) -> io::Result<bool> {
        loop {
            // SAFETY: every iovec points into guest memory the caller keeps mapped; the
            // kernel only reads from them.
            let n = unsafe {
                libc::writev(
                    self.file.as_raw_fd(),
                    iov.as_ptr(),
                    iov.len().min(libc::UIO_MAXIOV as usize) as libc::c_int,
                )
            };
            if n >= 0 {
                return Ok(true);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) => return Ok(false),
                _ => return Err(e),
            }
        }
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

#[cfg(test)]
impl Tap {
    /// A datagram socket standing in for a TAP in unit tests: one frame per datagram,
    /// the same readv/writev semantics. The caller makes it non-blocking.
    pub fn from_socket(fd: OwnedFd) -> Tap {
        Tap {
            file: File::from(fd),
        }
    }
}
