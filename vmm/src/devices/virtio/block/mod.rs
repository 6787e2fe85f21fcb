//! virtio-blk: a raw image file as a disk, read-only or writable. Requests are parsed once
//! into a typed [`request::Request`] (or refused with a named error and an error status);
//! the file I/O runs on the event loop, straight between the file and guest memory
//! (`preadv`/`pwritev`), never on a vCPU thread.

pub mod io;
pub mod request;

use std::fs::{File, OpenOptions};

use event_manager::{EventOps, Events, MutEventSubscriber};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use super::chain::{self, Chain};
use super::{Activation, Interrupt, QueueEvents, VirtioDevice};
use crate::config::DiskConfig;
use crate::error::{Error, Result};
pub use request::{
    DiskGeometry, Op, Rejected, Request, RequestError, SECTOR_SIZE, VIRTIO_BLK_S_IOERR,
    VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT,
};

/// virtio device id of a block device.
pub const VIRTIO_ID_BLOCK: u32 = 2;
/// Queue size.
pub const QUEUE_SIZE: u16 = 256;
/// Largest segment the driver may use.
pub const SIZE_MAX: u32 = 256 << 10;
/// Most data segments per request.
pub const SEG_MAX: u32 = 126;

const VIRTIO_BLK_F_SIZE_MAX: u64 = 1 << 1;
const VIRTIO_BLK_F_SEG_MAX: u64 = 1 << 2;
const VIRTIO_BLK_F_RO: u64 = 1 << 5;
const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;

/// Length of the device id string.
const ID_BYTES: usize = 20;

struct Active {
    mem: GuestMemoryMmap,
    queue: Queue,
    interrupt: std::sync::Arc<Interrupt>,
}

/// A virtio-blk device backed by a file.
pub struct Block {
    file: File,
    geometry: DiskGeometry,
    id: [u8; ID_BYTES],
    evts: QueueEvents,
    active: Option<Active>,
}

impl Block {
    /// Opens the disk image described by `disk`.
    pub fn open(disk: &DiskConfig) -> Result<Block> {
        let file = OpenOptions::new()
            .read(true)
            .write(!disk.read_only)
            .open(&disk.path)
            .map_err(|e| Error::Config(format!("disk {}: {e}", disk.path.display())))?;
        let name = disk
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Block::from_file(file, disk.read_only, &name)
            .map_err(|e| Error::Config(format!("disk {}: {e}", disk.path.display())))
    }

    /// Wraps an open file; `name` becomes the device id (truncated to 20 bytes).
    pub fn from_file(file: File, read_only: bool, name: &str) -> Result<Block> {
        let len = file
            .metadata()
            .map_err(|e| Error::Device(format!("stat: {e}")))?
            .len();
        if len == 0 || len % SECTOR_SIZE != 0 {
            return Err(Error::Config(format!(
                "size {len} is not a positive multiple of {SECTOR_SIZE} bytes"
            )));
        }
        let mut id = [0u8; ID_BYTES];
        let n = name.len().min(ID_BYTES);
        id[..n].copy_from_slice(&name.as_bytes()[..n]);
        Ok(Block {
            file,
            geometry: DiskGeometry {
                sectors: len / SECTOR_SIZE,
                read_only,
            },
            id,
            evts: QueueEvents::new(1)?,
            active: None,
        })
    }

    /// Disk size in sectors.
    pub fn sectors(&self) -> u64 {
        self.geometry.sectors
    }

    /// Processes every available request; signals the guest if any completed.
    pub fn process_queue(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let mut completed = false;
        while let Some(desc_chain) = active.queue.pop_descriptor_chain(&active.mem) {
            let head = desc_chain.head_index();
            let used_len = match Chain::read(&active.queue, head, &active.mem) {
                Ok(chain) => {
                    let parsed = Request::parse(&chain, &active.mem, self.geometry);
                    complete(&self.file, &self.id, &active.mem, parsed)
                }
                Err(e) => {
                    tracing::debug!("virtio-blk: refusing request: {e}");
                    0 // no trustworthy status byte to write
                }
            };
            if let Err(e) = active.queue.add_used(&active.mem, head, used_len) {
                tracing::warn!("virtio-blk: cannot return descriptor {head}: {e}");
            }
            completed = true;
        }
        if completed {
            active.interrupt.signal_used();
        }
    }
}

/// Executes a parsed request (or reports its refusal) and writes the status byte; returns
/// the number of bytes written to the guest (data + status), the used length.
fn complete(
    file: &File,
    id: &[u8; ID_BYTES],
    mem: &GuestMemoryMmap,
    parsed: std::result::Result<Request, Rejected>,
) -> u32 {
    let (status_addr, status, written) = match parsed {
        Ok(request) => {
            let (status, written) = execute(file, id, mem, &request.op);
            (request.status, status, written)
        }
        Err(Rejected {
            error,
            status: Some(addr),
        }) => {
            tracing::debug!("virtio-blk: refusing request: {error}");
            (addr, error.status(), 0)
        }
        Err(Rejected {
            error,
            status: None,
        }) => {
            tracing::debug!("virtio-blk: refusing request: {error}");
            return 0;
        }
    };
    use vm_memory::Bytes;
    if mem.write_obj(status, status_addr).is_err() {
        return 0;
    }
    // At most 32 MiB + 1 (MAX_REQUEST_BYTES bounds every transfer).
    (written + 1) as u32
}

/// Runs one operation; returns (status, bytes of data written to the guest).
fn execute(file: &File, id: &[u8; ID_BYTES], mem: &GuestMemoryMmap, op: &Op) -> (u8, u64) {
    match op {
        Op::Read { sector, data, len } => {
            match io::read_to_guest(file, *sector * SECTOR_SIZE, mem, data) {
                Ok(()) => (VIRTIO_BLK_S_OK, *len),
                Err(e) => {
                    tracing::warn!("virtio-blk: read at sector {sector}: {e}");
                    (VIRTIO_BLK_S_IOERR, 0)
                }
            }
        }
        Op::Write { sector, data, .. } => {
            match io::write_from_guest(file, *sector * SECTOR_SIZE, mem, data) {
                Ok(()) => (VIRTIO_BLK_S_OK, 0),
                Err(e) => {
                    tracing::warn!("virtio-blk: write at sector {sector}: {e}");
                    (VIRTIO_BLK_S_IOERR, 0)
                }
            }
        }
        Op::Flush => match file.sync_data() {
            Ok(()) => (VIRTIO_BLK_S_OK, 0),
            Err(_) => (VIRTIO_BLK_S_IOERR, 0),
        },
        Op::GetId { data } => {
            let n = chain::total(data).min(ID_BYTES as u64) as usize;
            if chain::write_from(mem, data, &id[..n]) != n {
                return (VIRTIO_BLK_S_IOERR, 0);
            }
            (VIRTIO_BLK_S_OK, n as u64)
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        let mut f = VIRTIO_BLK_F_SIZE_MAX | VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_FLUSH;
        if self.geometry.read_only {
            f |= VIRTIO_BLK_F_RO;
        }
        f
    }

    fn config_space(&self) -> Vec<u8> {
        // capacity (u64), size_max (u32), seg_max (u32).
        let mut config = Vec::with_capacity(16);
        config.extend_from_slice(&self.geometry.sectors.to_le_bytes());
        config.extend_from_slice(&SIZE_MAX.to_le_bytes());
        config.extend_from_slice(&SEG_MAX.to_le_bytes());
        config
    }

    fn queue_events(&self) -> &QueueEvents {
        &self.evts
    }

    fn activate(&mut self, activation: Activation) -> Result<()> {
        let Activation {
            mem,
            mut queues,
            interrupt,
        } = activation;
        let queue = queues
            .pop()
            .filter(|q| q.ready())
            .ok_or_else(|| Error::Device("virtio-blk: request queue not ready".into()))?;
        self.active = Some(Active {
            mem,
            queue,
            interrupt,
        });
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
    }
}

impl MutEventSubscriber for Block {
    fn init(&mut self, ops: &mut EventOps) {
        self.evts.register(ops);
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if self.evts.fired(&events).is_some() {
            self.process_queue();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;
    use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};
    use vmm_sys_util::eventfd::EventFd;

    const HDR: u64 = 0x10_0000;
    const DATA: u64 = 0x20_0000;
    const STATUS: u64 = 0x30_0000;
    const W: u16 = VRING_DESC_F_WRITE as u16;

    struct Rig {
        mem: GuestMemoryMmap,
        dev: Block,
        irq: EventFd,
        disk: tempfile::NamedTempFile,
    }

    fn rig(read_only: bool, sectors: u64) -> Rig {
        let mut disk = tempfile::NamedTempFile::new().unwrap();
        let content: Vec<u8> = (0..sectors * SECTOR_SIZE)
            .map(|i| (i % 251) as u8)
            .collect();
        disk.write_all(&content).unwrap();
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(disk.path())
            .unwrap();
        let dev = Block::from_file(file, read_only, "test-disk").unwrap();
        let mem = crate::memory::create_guest_memory(16).unwrap();
        Rig {
            mem,
            dev,
            irq: EventFd::new(libc::EFD_NONBLOCK).unwrap(),
            disk,
        }
    }

    fn desc(addr: u64, len: u32, flags: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
    }

    fn header(mem: &GuestMemoryMmap, kind: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        mem.write_slice(&h, GuestAddress(HDR)).unwrap();
    }

    /// Submits one chain (descriptors linked in order) and returns (used len, status byte).
    fn submit(r: &mut Rig, descs: &[RawDescriptor]) -> (u32, u8) {
        let mem = r.mem.clone();
        let vq = MockSplitQueue::new(&mem, 16);
        vq.build_desc_chain(descs).unwrap();
        submit_prepared(r, &vq)
    }

    fn submit_prepared(r: &mut Rig, vq: &MockSplitQueue<GuestMemoryMmap>) -> (u32, u8) {
        r.mem.write_obj(0xaau8, GuestAddress(STATUS)).unwrap();
        let q: Queue = vq.create_queue().unwrap();
        r.dev
            .activate(Activation {
                mem: r.mem.clone(),
                queues: vec![q],
                interrupt: Arc::new(Interrupt::new(r.irq.try_clone().unwrap())),
            })
            .unwrap();
        r.dev.process_queue();
        assert_eq!(
            vq.used().idx().load(),
            1,
            "the request was returned to the guest"
        );
        assert_eq!(r.irq.read().unwrap(), 1, "interrupt raised");
        let used = vq.used().ring().ref_at(0).unwrap().load();
        let status: u8 = r.mem.read_obj(GuestAddress(STATUS)).unwrap();
        (used.len(), status)
    }

    #[test]
    fn read_returns_disk_contents() {
        let mut r = rig(true, 16);
        header(&r.mem, VIRTIO_BLK_T_IN, 2);
        let (len, status) = submit(
            &mut r,
            &[desc(HDR, 16, 0), desc(DATA, 1024, W), desc(STATUS, 1, W)],
        );
        assert_eq!((len, status), (1025, VIRTIO_BLK_S_OK));
        let mut got = vec![0u8; 1024];
        r.mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
        let want: Vec<u8> = (1024..2048u64).map(|i| (i % 251) as u8).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn write_reaches_the_file_and_flush_succeeds() {
        let mut r = rig(false, 16);
        header(&r.mem, VIRTIO_BLK_T_OUT, 3);
        r.mem.write_slice(&[0x5a; 512], GuestAddress(DATA)).unwrap();
        let (len, status) = submit(
            &mut r,
            &[desc(HDR, 16, 0), desc(DATA, 512, 0), desc(STATUS, 1, W)],
        );
        assert_eq!((len, status), (1, VIRTIO_BLK_S_OK));
        let content = std::fs::read(r.disk.path()).unwrap();
        assert!(content[3 * 512..4 * 512].iter().all(|b| *b == 0x5a));
        assert_eq!(
            content[2 * 512],
            ((2 * 512) % 251) as u8,
            "neighbour untouched"
        );
        header(&r.mem, VIRTIO_BLK_T_FLUSH, 0);
        let (_, status) = submit(&mut r, &[desc(HDR, 16, 0), desc(STATUS, 1, W)]);
        assert_eq!(status, VIRTIO_BLK_S_OK);
    }

    #[test]
    fn read_only_disk_refuses_writes() {
        let mut r = rig(true, 16);
        assert_ne!(r.dev.features() & VIRTIO_BLK_F_RO, 0);
        header(&r.mem, VIRTIO_BLK_T_OUT, 0);
        let (_, status) = submit(
            &mut r,
            &[desc(HDR, 16, 0), desc(DATA, 512, 0), desc(STATUS, 1, W)],
        );
        assert_eq!(status, VIRTIO_BLK_S_IOERR);
        let content = std::fs::read(r.disk.path()).unwrap();
        assert_eq!(content[0], 0, "file unchanged");
    }

    #[test]
    fn sector_range_is_checked() {
        let mut r = rig(false, 16);
        for (sector, len) in [(15u64, 1024u32), (16, 512), (u64::MAX, 512), (0, 100)] {
            header(&r.mem, VIRTIO_BLK_T_IN, sector);
            let (len, status) = submit(
                &mut r,
                &[desc(HDR, 16, 0), desc(DATA, len, W), desc(STATUS, 1, W)],
            );
            assert_eq!((len, status), (1, VIRTIO_BLK_S_IOERR), "sector {sector}");
        }
    }

    #[test]
    fn oversized_request_is_refused() {
        let mut r = rig(false, 1 << 17); // 64 MiB disk
        header(&r.mem, VIRTIO_BLK_T_IN, 0);
        let descs = [desc(HDR, 16, 0), desc(0x100_0000, 0, W), desc(STATUS, 1, W)];
        // A zero-length data descriptor is a valid empty read; now a 33 MiB one.
        let (_, status) = submit(&mut r, &descs);
        assert_eq!(status, VIRTIO_BLK_S_OK);
        let mut r = rig(false, 1 << 17);
        r.mem = crate::memory::create_guest_memory(64).unwrap();
        header(&r.mem, VIRTIO_BLK_T_IN, 0);
        let (len, status) = submit(
            &mut r,
            &[
                desc(HDR, 16, 0),
                desc(0x100_0000, (33 << 20) as u32, W),
                desc(STATUS, 1, W),
            ],
        );
        assert_eq!(
            (len, status),
            (1, VIRTIO_BLK_S_IOERR),
            "33 MiB exceeds MAX_REQUEST_BYTES"
        );
    }

    #[test]
    fn wrong_directions_are_refused() {
        let mut r = rig(false, 16);
        header(&r.mem, VIRTIO_BLK_T_IN, 0);
        let (_, status) = submit(
            &mut r,
            &[desc(HDR, 16, 0), desc(DATA, 512, 0), desc(STATUS, 1, W)],
        );
        assert_eq!(
            status, VIRTIO_BLK_S_IOERR,
            "IN with a device-readable data buffer"
        );
        header(&r.mem, VIRTIO_BLK_T_OUT, 0);
        let (_, status) = submit(
            &mut r,
            &[desc(HDR, 16, 0), desc(DATA, 512, W), desc(STATUS, 1, W)],
        );
        assert_eq!(
            status, VIRTIO_BLK_S_IOERR,
            "OUT with a device-writable data buffer"
        );
        let content = std::fs::read(r.disk.path()).unwrap();
        assert_eq!(content[0], 0);
        // Header device-writable: no readable header at all.
        let (_, status) = submit(&mut r, &[desc(HDR, 16, W), desc(STATUS, 1, W)]);
        assert_eq!(status, VIRTIO_BLK_S_IOERR);
        // Readable after writable.
        let (len, status) = submit(
            &mut r,
            &[
                desc(HDR, 16, 0),
                desc(DATA, 512, W),
                desc(DATA, 512, 0),
                desc(STATUS, 1, W),
            ],
        );
        assert_eq!((len, status), (0, 0xaa));
    }

    #[test]
    fn short_header_and_missing_status_are_handled() {
        let mut r = rig(false, 16);
        header(&r.mem, VIRTIO_BLK_T_IN, 0);
        let (len, status) = submit(&mut r, &[desc(HDR, 8, 0), desc(STATUS, 1, W)]);
        assert_eq!((len, status), (1, VIRTIO_BLK_S_IOERR));
        let (len, status) = submit(&mut r, &[desc(HDR, 16, 0), desc(DATA, 512, 0)]);
        assert_eq!((len, status), (0, 0xaa), "no status byte: nothing written");
    }

    #[test]
    fn out_of_range_and_looping_chains_are_refused() {
        let mut r = rig(false, 16);
        header(&r.mem, VIRTIO_BLK_T_IN, 0);
        let (len, _) = submit(
            &mut r,
            &[
                desc(HDR, 16, 0),
                desc(0xfff_fe00, 1024, W),
                desc(STATUS, 1, W),
            ],
        );
        assert_eq!(len, 0, "data buffer crossing the end of guest RAM");
        // A chain whose descriptors point at each other forever.
        let mem = r.mem.clone();
        let vq = MockSplitQueue::new(&mem, 16);
        let looping = [
            RawDescriptor::from(SplitDescriptor::new(HDR, 16, VRING_DESC_F_NEXT as u16, 1)),
            RawDescriptor::from(SplitDescriptor::new(
                STATUS,
                1,
                (VRING_DESC_F_NEXT | VRING_DESC_F_WRITE) as u16,
                0,
            )),
        ];
        vq.add_desc_chains(&looping, 0).unwrap();
        let (len, status) = submit_prepared(&mut r, &vq);
        assert_eq!((len, status), (0, 0xaa));
    }

    #[test]
    fn get_id_and_unknown_type() {
        let mut r = rig(true, 16);
        header(&r.mem, VIRTIO_BLK_T_GET_ID, 0);
        let (len, status) = submit(
            &mut r,
            &[desc(HDR, 16, 0), desc(DATA, 20, W), desc(STATUS, 1, W)],
        );
        assert_eq!((len, status), (21, VIRTIO_BLK_S_OK));
        let mut id = [0u8; 9];
        r.mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
        assert_eq!(&id, b"test-disk");
        header(&r.mem, 99, 0);
        let (_, status) = submit(&mut r, &[desc(HDR, 16, 0), desc(STATUS, 1, W)]);
        assert_eq!(status, VIRTIO_BLK_S_UNSUPP);
    }

    #[test]
    fn config_reports_capacity() {
        let r = rig(false, 16);
        let config = r.dev.config_space();
        assert_eq!(u64::from_le_bytes(config[..8].try_into().unwrap()), 16);
        assert!(
            Block::from_file(tempfile::tempfile().unwrap(), true, "x").is_err(),
            "empty disk"
        );
    }
}
