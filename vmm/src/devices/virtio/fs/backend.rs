//! The vhost-user session with one virtio-fs backend (virtiofsd), through rust-vmm's
//! `vhost` frontend.
//!
//! Connected and introduced (SET_OWNER, GET_FEATURES) at start-up, as root, before the
//! jail and before any vCPU runs; the rings are handed over on the event loop when the
//! driver starts the device. No protocol features are negotiated: without
//! `VHOST_USER_F_PROTOCOL_FEATURES` a ring is enabled as soon as it is configured and no
//! message but GET_FEATURES waits for an answer, so nothing on the event loop ever waits
//! for the backend. GET_FEATURES has a deadline ([`BACKEND_TIMEOUT`]): the `vhost` crate
//! retries a timed-out read forever, so a watchdog thread shuts the socket down instead,
//! which ends the read.
//!
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use vhost::vhost_user::Frontend;
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util_vhost::eventfd::EventFd as VhostEventFd;

use crate::error::{Error, Result};

/// Longest the backend may take to answer GET_FEATURES.
pub const BACKEND_TIMEOUT: Duration = Duration::from_secs(5);
/// VIRTIO_F_VERSION_1 (bit 32): required of the backend.
const VERSION_1: u64 = 1 << 32;
/// Ring features the backend may offer the driver (it runs the rings, not the VMM):
/// VIRTIO_RING_F_INDIRECT_DESC (28) and VIRTIO_RING_F_EVENT_IDX (29).
pub const RING_FEATURES: u64 = (1 << 28) | (1 << 29);
/// Most guest RAM regions (the VMM has at most two: below and above the MMIO gap).
const MAX_REGIONS: usize = 8;

/// One ring as the backend needs it: size and the frontend's virtual addresses of its
/// three parts (translated through the memory table by the backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingSetup {
    /// Negotiated queue size.
    pub size: u16,
    /// Descriptor table, in the VMM's address space.
    pub desc: u64,
    /// Available ring.
    pub avail: u64,
    /// Used ring.
    pub used: u64,
}

/// Everything the backend is told when the driver starts the device, computed on the vCPU
/// thread (no system call) and sent from the event loop.
pub struct StartPlan {
    /// Features to SET_FEATURES (the driver's accepted ones).
    pub features: u64,
    /// Guest RAM regions and their memfd.
    pub regions: Vec<VhostUserMemoryRegionInfo>,
    /// The rings, by queue index.
    pub rings: Vec<RingSetup>,
}

/// Builds the memory table from guest memory; every region must be backed by a file
/// (the shared memfd), or the backend could not see it.
pub fn memory_table(mem: &GuestMemoryMmap) -> Result<Vec<VhostUserMemoryRegionInfo>> {
    let mut regions = Vec::new();
    for region in mem.iter() {
        let file_offset = region.file_offset().ok_or_else(|| {
            Error::Device(
                "virtio-fs: guest RAM is not shared (the VMM maps a memfd when --fs is given)"
                    .into(),
            )
        })?;
        let host = mem
            .get_host_address(region.start_addr())
            .map_err(|e| Error::Device(format!("virtio-fs: guest RAM address: {e}")))?;
        regions.push(VhostUserMemoryRegionInfo {
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
            mmap_offset: file_offset.start(),
            mmap_handle: file_offset.file().as_raw_fd(),
        });
    }
    if regions.is_empty() || regions.len() > MAX_REGIONS {
        return Err(Error::Device(format!(
            "virtio-fs: {} guest RAM regions (1 ..= {MAX_REGIONS} supported)",
            regions.len()
        )));
    }
    Ok(regions)
}

/// The host addresses of a ready queue's parts; each part lies inside guest RAM (the
/// transport checked `is_valid` before activation; checked again here, the sizes
/// included, because the backend will access all of it).
pub fn ring_setup(mem: &GuestMemoryMmap, queue: &Queue) -> Result<RingSetup> {
    let size = queue.size();
    let n = u64::from(size);
    let parts = [
        ("descriptor table", queue.desc_table(), 16 * n),
        ("available ring", queue.avail_ring(), 6 + 2 * n),
        ("used ring", queue.used_ring(), 6 + 8 * n),
    ];
    let mut host = [0u64; 3];
    for (slot, (what, addr, len)) in host.iter_mut().zip(parts) {
        let addr = GuestAddress(addr);
        let inside = usize::try_from(len)
            .ok()
            .and_then(|len| mem.get_slice(addr, len).ok())
            .is_some();
        if !inside {
            return Err(Error::Device(format!(
                "virtio-fs: the {what} at {:#x} ({len} bytes) is not inside one guest RAM region",
                addr.0
            )));
        }
        *slot = mem
            .get_host_address(addr)
            .map_err(|e| Error::Device(format!("virtio-fs: {what}: {e}")))? as u64;
    }
    Ok(RingSetup {
        size,
        desc: host[0],
        avail: host[1],
        used: host[2],
    })
}

/// A connected backend.
pub struct Backend {
    frontend: Frontend,
    /// A second handle on the socket, watched by the event loop for a hang-up.
    watch: UnixStream,
    features: u64,
}

impl Backend {
    /// Connects to the backend listening at `path` and asks for its features.
    pub fn connect(path: &Path, queues: usize) -> Result<Backend> {
        let stream = UnixStream::connect(path).map_err(|e| {
            Error::Config(format!(
                "virtio-fs: cannot connect to the vhost-user backend at {}: {e}",
                path.display()
            ))
        })?;
        Backend::from_stream(stream, queues)
            .map_err(|e| Error::Config(format!("virtio-fs backend at {}: {e}", path.display())))
    }

    /// Introduces the VMM on a connected stream (at start-up: it may start a thread).
    pub fn from_stream(stream: UnixStream, queues: usize) -> Result<Backend> {
        let io = |what: &str, e: std::io::Error| Error::Device(format!("{what}: {e}"));
        let watch = stream.try_clone().map_err(|e| io("socket", e))?;
        let watchdog = stream.try_clone().map_err(|e| io("socket", e))?;
        let frontend = Frontend::from_stream(stream, queues as u64);
        frontend.set_owner().map_err(vhost_error("SET_OWNER"))?;
        let features = with_deadline(watchdog, || frontend.get_features()).map_err(|e| {
            Error::Device(format!(
                "vhost-user GET_FEATURES: {e} (no answer within {BACKEND_TIMEOUT:?}?)"
            ))
        })?;
        if features & VERSION_1 == 0 {
            return Err(Error::Device(format!(
                "the backend's features {features:#x} lack VIRTIO_F_VERSION_1"
            )));
        }
        Ok(Backend {
            frontend,
            watch,
            features,
        })
    }

    /// The backend's virtio features.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// The socket, for the event loop to notice a hang-up.
    pub fn socket(&self) -> &UnixStream {
        &self.watch
    }

    /// Hands the rings over: features, memory table, then per ring its size, base 0,
    /// addresses, call and kick eventfds (the kick last: it starts the backend's ring).
    pub fn start(
        &self,
        plan: &StartPlan,
        calls: &[VhostEventFd],
        kicks: &[VhostEventFd],
    ) -> Result<()> {
        let f = &self.frontend;
        f.set_features(plan.features & self.features)
            .map_err(vhost_error("SET_FEATURES"))?;
        f.set_mem_table(&plan.regions)
            .map_err(vhost_error("SET_MEM_TABLE"))?;
        for (index, ring) in plan.rings.iter().enumerate() {
            let (Some(call), Some(kick)) = (calls.get(index), kicks.get(index)) else {
                return Err(Error::Device(format!(
                    "virtio-fs: no eventfds for queue {index}"
                )));
            };
            f.set_vring_num(index, ring.size)
                .map_err(vhost_error("SET_VRING_NUM"))?;
            f.set_vring_base(index, 0)
                .map_err(vhost_error("SET_VRING_BASE"))?;
            let addr = VringConfigData {
                queue_max_size: ring.size,
                queue_size: ring.size,
                flags: 0,
                desc_table_addr: ring.desc,
                used_ring_addr: ring.used,
                avail_ring_addr: ring.avail,
                log_addr: None,
            };
            f.set_vring_addr(index, &addr)
                .map_err(vhost_error("SET_VRING_ADDR"))?;
            f.set_vring_call(index, call)
                .map_err(vhost_error("SET_VRING_CALL"))?;
            f.set_vring_kick(index, kick)
                .map_err(vhost_error("SET_VRING_KICK"))?;
        }
        Ok(())
    }
}

/// Runs `exchange`; if it has not returned after [`BACKEND_TIMEOUT`], shuts `socket` (a
/// duplicate of the session's) down, which makes its blocked read return.
fn with_deadline<T>(socket: UnixStream, exchange: impl FnOnce() -> T) -> T {
    let (done, finished) = mpsc::channel::<()>();
    let watchdog = std::thread::Builder::new()
        .name("vhost-deadline".into())
        .spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(BACKEND_TIMEOUT) {
                let _ = socket.shutdown(std::net::Shutdown::Both);
            }
        });
    let result = exchange();
    drop(done);
    if let Ok(handle) = watchdog {
        let _ = handle.join();
    }
    result
}

fn vhost_error(what: &'static str) -> impl Fn(vhost::Error) -> Error {
    move |e| Error::Device(format!("vhost-user {what}: {e}"))
}

/// The same eventfd as the `vhost` crate's type (it is built against another
/// vmm-sys-util): a duplicate descriptor, made at start-up, before seccomp.
pub fn vhost_eventfd(evt: &vmm_sys_util::eventfd::EventFd) -> Result<VhostEventFd> {
    // SAFETY: `evt` owns its descriptor and outlives this borrow, which is only duplicated.
    let borrowed = unsafe { BorrowedFd::borrow_raw(evt.as_raw_fd()) };
    let owned = borrowed
        .try_clone_to_owned()
        .map_err(|e| Error::Device(format!("duplicating a queue eventfd: {e}")))?;
    // SAFETY: the descriptor is a fresh duplicate of an eventfd, owned by nothing else.
    Ok(unsafe { VhostEventFd::from_raw_fd(owned.into_raw_fd()) })
}
