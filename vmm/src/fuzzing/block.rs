//! `virtio_block`: request chains from a hostile driver, processed by the virtio-blk device
//! against an in-memory disk (a memfd), the way its event loop does (`process_queue`).

use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::guest::{self, Desc, GuestQueue, Input, Walk, F_NEXT, F_WRITE};
use crate::devices::virtio::block::request::{HEADER_BYTES, MAX_REQUEST_BYTES};
use crate::devices::virtio::block::{
    Block, SECTOR_SIZE, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT,
};
use crate::devices::virtio::{Activation, Interrupt, VirtioDevice};

const QUEUE: u16 = 16;

/// One chain the harness offered.
struct Offered {
    head: u16,
    walk: Walk,
}

/// Input: disk shape, then chains built from roles (header, data out, data in, status, raw
/// descriptor) with any lengths, addresses and links. After the device ran, what must hold
/// for any input: every chain came back once, in order, with a used length within its
/// writable bytes (0 for a chain it must refuse); guest memory changed only inside
/// writable buffers; a read-only disk is unchanged and a writable one changed only where
/// a write request pointed; an accepted read returned the disk's bytes. Returns the used
/// entries.
pub fn virtio_block(data: &[u8]) -> Vec<(u32, u32)> {
    let mut input = Input::new(data);
    let shape = input.u8();
    let read_only = shape & 1 != 0;
    let sectors = 1 + u64::from(input.u8() % 64);
    let disk = memfd_disk(sectors);
    let mem = guest::memory();
    let mut q = GuestQueue::new(&mem, 0, QUEUE);
    let mut offered = Vec::new();
    let mut next_index = 0u16;
    let mut next_buffer = guest::BUFFERS_AT;
    for _ in 0..1 + input.u8() % 8 {
        let count = 1 + u16::from(input.u8() % 6);
        if next_index + count > QUEUE {
            break;
        }
        let head = next_index;
        for j in 0..count {
            let mut d = request_part(&mut input, &mem, &mut next_buffer, sectors);
            let last = j + 1 == count;
            if !last && d.flags & F_NEXT == 0 && d.next == u16::MAX {
                d.flags |= F_NEXT;
                d.next = next_index + 1;
            } else if last && d.next == u16::MAX {
                d.flags &= !F_NEXT;
            }
            q.set_desc(&mem, next_index, d);
            next_index += 1;
        }
        q.push(&mem, head);
        offered.push(head);
    }
    let offered: Vec<Offered> = offered
        .into_iter()
        .map(|head| Offered {
            head,
            walk: guest::walk(&mem, guest::QUEUES_AT, QUEUE, head),
        })
        .collect();
    let mem_before = guest::snapshot(&mem);
    let disk_before = read_disk(&disk, sectors);

    let mut block = Block::from_file(
        disk.try_clone().expect("dup the disk"),
        read_only,
        "fuzz-disk",
    )
    .expect("a disk of whole sectors");
    let irq = EventFd::new(libc::EFD_NONBLOCK).expect("eventfd");
    block
        .activate(Activation {
            mem: mem.clone(),
            queues: vec![q.device_queue(&mem)],
            interrupt: Arc::new(Interrupt::new(irq)),
        })
        .expect("activate the block device");
    block.process_queue();

    let used = q.take_used(&mem);
    check(
        &mem,
        &q,
        &offered,
        &used,
        &mem_before,
        &disk_before,
        &read_disk(&disk, sectors),
        read_only,
    );
    used
}

/// One descriptor of a request, its buffer filled as its role wants.
fn request_part(
    input: &mut Input<'_>,
    mem: &GuestMemoryMmap,
    next_buffer: &mut u64,
    sectors: u64,
) -> Desc {
    let role = input.u8();
    let (len, flags) = match role % 5 {
        0 => (if role & 0x80 != 0 { input.len() } else { 16 }, 0),
        1 => (data_len(input, role), 0),
        2 => (data_len(input, role), F_WRITE),
        3 => (if role & 0x80 != 0 { input.len() } else { 1 }, F_WRITE),
        _ => (input.len(), u16::from(input.u8()) & (F_NEXT | F_WRITE)),
    };
    let addr = if role & 0x40 != 0 {
        // Anywhere but the rings (a chain that rewrites the table under the device is the
        // virtio_chain target's business; here the reference walk must stay valid).
        let a = input.addr();
        if (guest::QUEUES_AT..guest::BUFFERS_AT).contains(&a) {
            guest::BUFFERS_AT + a
        } else {
            a
        }
    } else {
        let a = *next_buffer;
        *next_buffer = (a + u64::from(len.min(1 << 20)) + 15) & !15;
        a
    };
    if role % 5 == 0 {
        let kind = match input.u8() % 6 {
            0 => VIRTIO_BLK_T_IN,
            1 => VIRTIO_BLK_T_OUT,
            2 => VIRTIO_BLK_T_FLUSH,
            3 => VIRTIO_BLK_T_GET_ID,
            _ => input.u32(),
        };
        let sector = match input.u8() {
            0xff => input.u64(),
            s => u64::from(s) % (sectors + 2),
        };
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        let _ = mem.write_slice(&h, GuestAddress(addr));
    } else if role % 5 == 1 && len <= 1 << 20 {
        let fill = input.u8();
        let _ = mem.write_slice(&vec![fill; len as usize], GuestAddress(addr));
    }
    let next = if role & 0x20 != 0 {
        input.u16() % QUEUE
    } else {
        u16::MAX // linked to the following descriptor by the caller
    };
    Desc {
        addr,
        len,
        flags,
        next,
    }
}

fn data_len(input: &mut Input<'_>, role: u8) -> u32 {
    if role & 0x80 != 0 {
        input.len()
    } else {
        512 * u32::from(input.u8() % 9)
    }
}

/// A memfd of `sectors` sectors with a recognisable pattern.
fn memfd_disk(sectors: u64) -> File {
    // SAFETY: memfd_create with a NUL-terminated name; the result is checked.
    let fd = unsafe { libc::memfd_create(c"hull-fuzz-disk".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor nobody else owns.
    let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let content: Vec<u8> = (0..sectors * SECTOR_SIZE)
        .map(|i| (i % 251) as u8 ^ (i / SECTOR_SIZE) as u8)
        .collect();
    file.write_all(&content).expect("fill the disk");
    file
}

fn read_disk(disk: &File, sectors: u64) -> Vec<u8> {
    let mut out = vec![0u8; (sectors * SECTOR_SIZE) as usize];
    disk.read_exact_at(&mut out, 0).expect("read the disk");
    out
}

#[allow(clippy::too_many_arguments)]
fn check(
    mem: &GuestMemoryMmap,
    q: &GuestQueue,
    offered: &[Offered],
    used: &[(u32, u32)],
    mem_before: &[u8],
    disk_before: &[u8],
    disk_after: &[u8],
    read_only: bool,
) {
    let heads: Vec<u32> = offered.iter().map(|o| u32::from(o.head)).collect();
    let ids: Vec<u32> = used.iter().map(|&(id, _)| id).collect();
    assert_eq!(ids, heads, "every chain comes back once, in order");
    for (o, &(_, len)) in offered.iter().zip(used) {
        let room = o.walk.writable_len();
        match o.walk {
            Walk::Refused => assert_eq!(len, 0, "a refused chain reported {len} bytes"),
            _ => assert!(
                u64::from(len) <= room && u64::from(len) <= MAX_REQUEST_BYTES + 1,
                "used length {len} for {room} writable bytes"
            ),
        }
    }
    // Memory: only writable buffers and the used ring change.
    let writable: Vec<(u64, u32)> = offered
        .iter()
        .flat_map(|o| match &o.walk {
            Walk::Chain { writable, .. } => writable.clone(),
            _ => Vec::new(),
        })
        .collect();
    let mem_after = guest::snapshot(mem);
    let rings = q.area();
    for i in guest::changed(mem_before, &mem_after) {
        let addr = guest::snapshot_addr(i);
        assert!(
            rings.contains(&addr) || guest::inside(&writable, addr),
            "the device wrote guest memory at {addr:#x}, outside every writable buffer"
        );
    }
    if read_only {
        assert!(disk_before == disk_after, "a read-only disk changed");
        return;
    }
    // A writable disk changes only under write requests (when no request's readable bytes
    // could have been rewritten by an earlier one: then the header is the one seen here).
    let overlapping = offered.iter().any(|o| match &o.walk {
        Walk::Chain { readable, .. } => guest::overlaps(readable, &writable),
        _ => true,
    });
    if overlapping {
        return;
    }
    let allowed: Vec<(u64, u64)> = offered
        .iter()
        .filter_map(|o| match &o.walk {
            Walk::Chain { readable, .. } => {
                let (kind, sector) = header(mem_before, readable)?;
                let len = readable.iter().map(|&(_, l)| u64::from(l)).sum::<u64>() - HEADER_BYTES;
                (kind == VIRTIO_BLK_T_OUT).then(|| (sector.saturating_mul(SECTOR_SIZE), len))
            }
            _ => None,
        })
        .collect();
    for i in guest::changed(disk_before, disk_after) {
        let at = i as u64;
        assert!(
            allowed.iter().any(|&(s, l)| at >= s && at - s < l),
            "disk byte {at} changed outside every write request"
        );
    }
    // Reads that succeeded returned the disk's bytes (the disk did not change).
    if allowed.is_empty() {
        for (o, &(_, len)) in offered.iter().zip(used) {
            let Walk::Chain { readable, writable } = &o.walk else {
                continue;
            };
            let Some((VIRTIO_BLK_T_IN, sector)) = header(mem_before, readable) else {
                continue;
            };
            let Some(&(last, last_len)) = writable.last() else {
                continue;
            };
            let status = mem_after[index_of(last + u64::from(last_len) - 1)];
            if status != VIRTIO_BLK_S_OK || len < 1 {
                continue;
            }
            let mut got = Vec::new();
            for &(a, l) in writable.iter().filter(|&&(_, l)| l > 0) {
                // A buffer the walk accepted is contiguous RAM, so contiguous in the
                // snapshot (the regions are listed in address order).
                let start = index_of(a);
                assert_eq!(index_of(a + u64::from(l) - 1), start + l as usize - 1);
                got.extend_from_slice(&mem_after[start..start + l as usize]);
            }
            got.truncate(len as usize - 1);
            let start = (sector * SECTOR_SIZE) as usize;
            assert_eq!(
                got,
                disk_after[start..start + got.len()],
                "a read at sector {sector} returned other bytes than the disk's"
            );
        }
    }
}

/// (type, sector) of a request whose readable buffers start with a header.
fn header(mem: &[u8], readable: &[(u64, u32)]) -> Option<(u32, u64)> {
    let mut h = Vec::with_capacity(16);
    for &(a, l) in readable {
        for k in 0..u64::from(l) {
            if h.len() == 16 {
                break;
            }
            h.push(mem[index_of(a + k)]);
        }
    }
    if h.len() < 16 {
        return None;
    }
    let kind = u32::from_le_bytes(h[0..4].try_into().ok()?);
    let sector = u64::from_le_bytes(h[8..16].try_into().ok()?);
    Some((kind, sector))
}

/// The snapshot index of guest address `addr` (which lies in RAM).
fn index_of(addr: u64) -> usize {
    let mut base = 0usize;
    for &(a, l) in &guest::REGIONS {
        if addr >= a && addr - a < l as u64 {
            return base + (addr - a) as usize;
        }
        base += l;
    }
    panic!("{addr:#x} is not in guest RAM")
}
