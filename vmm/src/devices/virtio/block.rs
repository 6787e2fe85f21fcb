//! virtio-blk: a raw image file as a disk, read-only or writable. Every request is bounded
//! and checked (chain shape, lengths, directions, sector range, status descriptor); a bad
//! request is answered with an error status, never trusted.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use super::{check_chain, read_config_bytes, Interrupt, VirtioDevice};
use crate::config::DiskConfig;
use crate::error::{Error, Result};

/// virtio device id of a block device.
pub const VIRTIO_ID_BLOCK: u32 = 2;
/// Queue size.
pub const QUEUE_SIZE: u16 = 256;
/// Sector size.
pub const SECTOR_SIZE: u64 = 512;
/// Largest data transfer of one request (the driver is told SEG_MAX x SIZE_MAX below it).
pub const MAX_REQUEST_BYTES: u64 = 32 << 20;
/// Largest segment the driver may use.
pub const SIZE_MAX: u32 = 256 << 10;
/// Most data segments per request.
pub const SEG_MAX: u32 = 126;
/// Bytes copied per step between the file and guest memory.
const CHUNK: usize = 64 << 10;

const VIRTIO_BLK_F_SIZE_MAX: u64 = 1 << 1;
const VIRTIO_BLK_F_SEG_MAX: u64 = 1 << 2;
const VIRTIO_BLK_F_RO: u64 = 1 << 5;
const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;

/// Request types.
pub const VIRTIO_BLK_T_IN: u32 = 0;
/// Write.
pub const VIRTIO_BLK_T_OUT: u32 = 1;
/// Flush.
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
/// Device id string.
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;

/// Status: success.
pub const VIRTIO_BLK_S_OK: u8 = 0;
/// Status: I/O error (also: bad request).
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
/// Status: unsupported request type.
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

/// Length of the device id string.
const ID_BYTES: usize = 20;
/// Length of the request header (type, reserved, sector).
const HEADER_BYTES: u64 = 16;

struct Active {
    mem: GuestMemoryMmap,
    queue: Queue,
    interrupt: Arc<Interrupt>,
}

/// A virtio-blk device backed by a file.
pub struct Block {
    file: File,
    read_only: bool,
    sectors: u64,
    id: [u8; ID_BYTES],
    config: Vec<u8>,
    active: Option<Active>,
    buf: Vec<u8>,
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
        let sectors = len / SECTOR_SIZE;
        let mut id = [0u8; ID_BYTES];
        let n = name.len().min(ID_BYTES);
        id[..n].copy_from_slice(&name.as_bytes()[..n]);
        // Config space: capacity (u64), size_max (u32), seg_max (u32).
        let mut config = Vec::with_capacity(16);
        config.extend_from_slice(&sectors.to_le_bytes());
        config.extend_from_slice(&SIZE_MAX.to_le_bytes());
        config.extend_from_slice(&SEG_MAX.to_le_bytes());
        Ok(Block {
            file,
            read_only,
            sectors,
            id,
            config,
            active: None,
            buf: vec![0; CHUNK],
        })
    }

    /// Disk size in sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Processes every available request; signals the guest if any completed.
    pub fn process_queue(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let mut completed = false;
        while let Some(chain) = active.queue.pop_descriptor_chain(&active.mem) {
            let head = chain.head_index();
            let used_len = handle_request(
                &self.file,
                self.read_only,
                self.sectors,
                &self.id,
                &mut self.buf,
                &active.mem,
                chain,
            );
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

/// Checks and executes one request; returns the number of bytes written to the guest.
fn handle_request(
    file: &File,
    read_only: bool,
    sectors: u64,
    id: &[u8; ID_BYTES],
    buf: &mut [u8],
    mem: &GuestMemoryMmap,
    chain: virtio_queue::DescriptorChain<&GuestMemoryMmap>,
) -> u32 {
    let layout = match check_chain(&chain, mem) {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!("virtio-blk: refusing request: {e}");
            return 0; // no trustworthy status byte to write
        }
    };
    if layout.writable == 0 {
        tracing::debug!("virtio-blk: request without a status byte");
        return 0;
    }
    let (Ok(mut reader), Ok(mut writer)) = (chain.clone().reader(mem), chain.writer(mem)) else {
        return 0;
    };
    // The last writable byte is the status; everything before it is data for IN / GET_ID.
    let Ok(mut status_writer) = writer.split_at(writer.available_bytes() - 1) else {
        return 0;
    };
    let data_in_len = layout.writable - 1;
    let (status, written) = if layout.readable < HEADER_BYTES {
        (VIRTIO_BLK_S_IOERR, 0)
    } else {
        let mut header = [0u8; HEADER_BYTES as usize];
        if reader.read_exact(&mut header).is_err() {
            (VIRTIO_BLK_S_IOERR, 0)
        } else {
            let kind = u32::from_le_bytes(header[0..4].try_into().unwrap_or_default());
            let sector = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
            let data_out_len = layout.readable - HEADER_BYTES;
            execute(
                file,
                read_only,
                sectors,
                id,
                buf,
                kind,
                sector,
                data_out_len,
                data_in_len,
                &mut reader,
                &mut writer,
            )
        }
    };
    if status_writer.write_all(&[status]).is_err() {
        return 0;
    }
    (written + 1) as u32
}

/// Runs a parsed request; returns (status, bytes of data written to the guest).
#[allow(clippy::too_many_arguments)]
fn execute<R: Read, W: Write>(
    file: &File,
    read_only: bool,
    sectors: u64,
    id: &[u8; ID_BYTES],
    buf: &mut [u8],
    kind: u32,
    sector: u64,
    data_out_len: u64,
    data_in_len: u64,
    reader: &mut R,
    writer: &mut W,
) -> (u8, u64) {
    let in_range = |len: u64| {
        len % SECTOR_SIZE == 0
            && len <= MAX_REQUEST_BYTES
            && sector
                .checked_add(len / SECTOR_SIZE)
                .is_some_and(|end| end <= sectors)
    };
    match kind {
        VIRTIO_BLK_T_IN => {
            // Data must be device-writable only: no readable bytes past the header.
            if data_out_len != 0 || !in_range(data_in_len) {
                return (VIRTIO_BLK_S_IOERR, 0);
            }
            let mut done = 0u64;
            while done < data_in_len {
                let n = (data_in_len - done).min(buf.len() as u64) as usize;
                let offset = sector * SECTOR_SIZE + done;
                if file.read_exact_at(&mut buf[..n], offset).is_err()
                    || writer.write_all(&buf[..n]).is_err()
                {
                    return (VIRTIO_BLK_S_IOERR, done);
                }
                done += n as u64;
            }
            (VIRTIO_BLK_S_OK, done)
        }
        VIRTIO_BLK_T_OUT => {
            // Data must be device-readable only: the status is the only writable byte.
            if read_only || data_in_len != 0 || !in_range(data_out_len) {
                return (VIRTIO_BLK_S_IOERR, 0);
            }
            let mut done = 0u64;
            while done < data_out_len {
                let n = (data_out_len - done).min(buf.len() as u64) as usize;
                let offset = sector * SECTOR_SIZE + done;
                if reader.read_exact(&mut buf[..n]).is_err()
                    || file.write_all_at(&buf[..n], offset).is_err()
                {
                    return (VIRTIO_BLK_S_IOERR, 0);
                }
                done += n as u64;
            }
            (VIRTIO_BLK_S_OK, 0)
        }
        VIRTIO_BLK_T_FLUSH => {
            if read_only {
                return (VIRTIO_BLK_S_OK, 0);
            }
            match file.sync_data() {
                Ok(()) => (VIRTIO_BLK_S_OK, 0),
                Err(_) => (VIRTIO_BLK_S_IOERR, 0),
            }
        }
        VIRTIO_BLK_T_GET_ID => {
            let n = data_in_len.min(ID_BYTES as u64) as usize;
            if writer.write_all(&id[..n]).is_err() {
                return (VIRTIO_BLK_S_IOERR, 0);
            }
            (VIRTIO_BLK_S_OK, n as u64)
        }
        _ => (VIRTIO_BLK_S_UNSUPP, 0),
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
        if self.read_only {
            f |= VIRTIO_BLK_F_RO;
        }
        f
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        mut queues: Vec<Queue>,
        interrupt: Arc<Interrupt>,
    ) -> Result<()> {
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

    fn queue_notify(&mut self, index: u32) {
        if index == 0 {
            self.process_queue();
        }
    }

    fn reset(&mut self) {
        self.active = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            .activate(
                r.mem.clone(),
                vec![q],
                Arc::new(Interrupt::new(r.irq.try_clone().unwrap())),
            )
            .unwrap();
        r.dev.queue_notify(0);
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
        let mut cap = [0u8; 8];
        r.dev.read_config(0, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 16);
        assert!(
            Block::from_file(tempfile::tempfile().unwrap(), true, "x").is_err(),
            "empty disk"
        );
    }
}
