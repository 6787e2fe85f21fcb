//! A fake guest for the fuzzing entry points: small guest memory with a gap, split
//! virtqueues written straight into it (any descriptor table a driver could write, not only
//! well-formed ones), the fuzz input as a stream of choices, and a reference walk of a
//! descriptor chain to check the device's view against.

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Guest RAM: two adjacent regions (a buffer may span both) and one after a hole.
pub const REGIONS: [(u64, usize); 3] = [(0, 0x8_0000), (0x8_0000, 0x8_0000), (0x20_0000, 0x8_0000)];
/// Where the harness lays out queues (each queue gets `QUEUE_STRIDE` bytes from here).
pub const QUEUES_AT: u64 = 0x1000;
/// Bytes between two queues' areas: descriptor table, avail ring and used ring of 256.
pub const QUEUE_STRIDE: u64 = 0x3000;
/// Buffers the harness allocates start here.
pub const BUFFERS_AT: u64 = 0x1_0000;
/// The descriptor flags.
pub const F_NEXT: u16 = 1;
/// Device-writable.
pub const F_WRITE: u16 = 2;
/// An indirect table.
pub const F_INDIRECT: u16 = 4;

/// The fuzz input read as a sequence of choices; zeroes once it runs out.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Wraps `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// Whether everything was consumed.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Up to `n` bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.data.split_at(n.min(self.data.len()));
        self.data = tail;
        head
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let b = self.bytes(N);
        out[..b.len()].copy_from_slice(b);
        out
    }

    /// One byte.
    pub fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    /// Little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    /// Little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    /// Little-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    /// A guest address: mostly inside RAM, sometimes at an edge, sometimes anything.
    pub fn addr(&mut self) -> u64 {
        match self.u8() % 8 {
            0 => 0x7_ff00 + u64::from(self.u8()), // across the two adjacent regions
            1 => 0x10_0000 - u64::from(self.u8()), // running into the hole
            2 => 0x20_0000 + u64::from(self.u16()), // the region after the hole
            3 => 0x28_0000 - u64::from(self.u8()), // the end of RAM
            4 => self.u64(),
            5 => QUEUES_AT + u64::from(self.u16() % 0x3000), // the rings themselves
            _ => BUFFERS_AT + u64::from(self.u16()) * 4,
        }
    }

    /// A buffer length: mostly small or sector-sized, sometimes anything.
    pub fn len(&mut self) -> u32 {
        match self.u8() % 8 {
            0 => 0,
            1 => 1,
            2 => 16,
            3 => 512 * u32::from(self.u8() % 17),
            4 => self.u32(),
            _ => u32::from(self.u16()),
        }
    }
}

/// Maps the guest memory of [`REGIONS`].
pub fn memory() -> GuestMemoryMmap {
    let ranges: Vec<(GuestAddress, usize)> =
        REGIONS.iter().map(|&(a, l)| (GuestAddress(a), l)).collect();
    GuestMemoryMmap::from_ranges(&ranges).expect("map fuzz guest memory")
}

/// Every byte of guest memory, region after region.
pub fn snapshot(mem: &GuestMemoryMmap) -> Vec<u8> {
    let mut out = Vec::new();
    for &(addr, len) in &REGIONS {
        let start = out.len();
        out.resize(start + len, 0);
        mem.read_slice(&mut out[start..], GuestAddress(addr))
            .expect("read guest memory");
    }
    out
}

/// The guest address of byte `i` of a [`snapshot`].
pub fn snapshot_addr(mut i: usize) -> u64 {
    for &(addr, len) in &REGIONS {
        if i < len {
            return addr + i as u64;
        }
        i -= len;
    }
    unreachable!("index past the snapshot")
}

/// One raw descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desc {
    /// Buffer address.
    pub addr: u64,
    /// Buffer length.
    pub len: u32,
    /// F_NEXT | F_WRITE | F_INDIRECT (and anything else a guest sets).
    pub flags: u16,
    /// Next descriptor index.
    pub next: u16,
}

/// A split virtqueue of the fake guest: queue `n` lives at `QUEUES_AT + n * QUEUE_STRIDE`.
pub struct GuestQueue {
    /// Queue size (a power of two, at most 256).
    pub size: u16,
    desc: u64,
    avail: u64,
    used: u64,
    avail_idx: u16,
    used_seen: u16,
}

impl GuestQueue {
    /// Lays out queue `n` of `size` entries (zeroed rings).
    pub fn new(mem: &GuestMemoryMmap, n: u64, size: u16) -> GuestQueue {
        let base = QUEUES_AT + n * QUEUE_STRIDE;
        let q = GuestQueue {
            size,
            desc: base,
            avail: base + 0x1000,
            used: base + 0x2000,
            avail_idx: 0,
            used_seen: 0,
        };
        mem.write_slice(&[0u8; QUEUE_STRIDE as usize], GuestAddress(base))
            .expect("clear the rings");
        q
    }

    /// The device's side of it, ready.
    pub fn device_queue(&self, mem: &GuestMemoryMmap) -> Queue {
        let mut q = Queue::new(256).expect("a queue of 256");
        q.set_size(self.size);
        q.set_desc_table_address(Some(self.desc as u32), Some(0));
        q.set_avail_ring_address(Some(self.avail as u32), Some(0));
        q.set_used_ring_address(Some(self.used as u32), Some(0));
        q.set_ready(true);
        assert!(q.is_valid(mem), "the harness laid out an invalid queue");
        q
    }

    /// Writes descriptor `index` of the table.
    pub fn set_desc(&self, mem: &GuestMemoryMmap, index: u16, d: Desc) {
        write_desc(mem, self.desc + u64::from(index) * 16, d);
    }

    /// Reads descriptor `index` of the table.
    pub fn desc(&self, mem: &GuestMemoryMmap, index: u16) -> Desc {
        read_desc(mem, self.desc + u64::from(index) * 16).expect("the table is in RAM")
    }

    /// Offers the chain starting at `head` to the device.
    pub fn push(&mut self, mem: &GuestMemoryMmap, head: u16) {
        let slot = self.avail + 4 + u64::from(self.avail_idx % self.size) * 2;
        mem.write_obj(head, GuestAddress(slot)).expect("avail ring");
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write_obj(self.avail_idx, GuestAddress(self.avail + 2))
            .expect("avail idx");
    }

    /// Used ring entries (id, len) added since the last call.
    pub fn take_used(&mut self, mem: &GuestMemoryMmap) -> Vec<(u32, u32)> {
        let idx: u16 = mem.read_obj(GuestAddress(self.used + 2)).expect("used idx");
        let mut out = Vec::new();
        while self.used_seen != idx {
            let slot = self.used + 4 + u64::from(self.used_seen % self.size) * 8;
            let id: u32 = mem.read_obj(GuestAddress(slot)).expect("used id");
            let len: u32 = mem.read_obj(GuestAddress(slot + 4)).expect("used len");
            out.push((id, len));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        out
    }

    /// The bytes of this queue's rings (which the device writes: used ring).
    pub fn area(&self) -> std::ops::Range<u64> {
        self.desc..self.desc + QUEUE_STRIDE
    }
}

/// Writes a descriptor at `at`.
pub fn write_desc(mem: &GuestMemoryMmap, at: u64, d: Desc) {
    let mut b = [0u8; 16];
    b[0..8].copy_from_slice(&d.addr.to_le_bytes());
    b[8..12].copy_from_slice(&d.len.to_le_bytes());
    b[12..14].copy_from_slice(&d.flags.to_le_bytes());
    b[14..16].copy_from_slice(&d.next.to_le_bytes());
    let _ = mem.write_slice(&b, GuestAddress(at));
}

fn read_desc(mem: &GuestMemoryMmap, at: u64) -> Option<Desc> {
    let mut b = [0u8; 16];
    mem.read_slice(&mut b, GuestAddress(at)).ok()?;
    Some(Desc {
        addr: u64::from_le_bytes(b[0..8].try_into().ok()?),
        len: u32::from_le_bytes(b[8..12].try_into().ok()?),
        flags: u16::from_le_bytes(b[12..14].try_into().ok()?),
        next: u16::from_le_bytes(b[14..16].try_into().ok()?),
    })
}

/// What a chain is, by the virtio rules, walked independently of virtio-queue and of the
/// device: buffers in order, each (address, length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Walk {
    /// A usable chain: non-empty device-readable buffers, then device-writable ones.
    Chain {
        /// Device-readable buffers.
        readable: Vec<(u64, u32)>,
        /// Device-writable buffers.
        writable: Vec<(u64, u32)>,
    },
    /// A chain a device must refuse (loops, too long, truncated, a buffer outside RAM, a
    /// readable buffer after a writable one, a reference to an indirect table: no device
    /// offers them).
    Refused,
}

impl Walk {
    /// Device-writable bytes of a usable chain (0 otherwise).
    pub fn writable_len(&self) -> u64 {
        match self {
            Walk::Chain { writable, .. } => writable.iter().map(|&(_, l)| u64::from(l)).sum(),
            _ => 0,
        }
    }
}

/// Walks the chain at `head` of a table of `size` descriptors at `table`: at most `size`
/// descriptors, indices inside the table, lengths summing within u32 (virtio-queue's
/// rule), buffers inside guest memory, readable before writable; empty buffers ignored.
pub fn walk(mem: &GuestMemoryMmap, table: u64, size: u16, head: u16) -> Walk {
    let mut readable = Vec::new();
    let mut writable = Vec::new();
    let mut index = head;
    let mut total: u32 = 0;
    for _ in 0..size {
        if index >= size {
            return Walk::Refused;
        }
        let Some(d) = read_desc(mem, table + u64::from(index) * 16) else {
            return Walk::Refused;
        };
        if d.flags & F_INDIRECT != 0 {
            return Walk::Refused;
        }
        let Some(sum) = total.checked_add(d.len) else {
            return Walk::Refused;
        };
        total = sum;
        if d.len > 0 {
            if !GuestMemoryBackend::check_range(mem, GuestAddress(d.addr), d.len as usize) {
                return Walk::Refused;
            }
            if d.flags & F_WRITE != 0 {
                writable.push((d.addr, d.len));
            } else if writable.is_empty() {
                readable.push((d.addr, d.len));
            } else {
                return Walk::Refused;
            }
        }
        if d.flags & F_NEXT == 0 {
            return Walk::Chain { readable, writable };
        }
        index = d.next;
    }
    // Still linked after `size` descriptors: a loop or a chain longer than the queue.
    Walk::Refused
}

/// Whether `addr` lies in one of `segments`.
pub fn inside(segments: &[(u64, u32)], addr: u64) -> bool {
    segments
        .iter()
        .any(|&(a, l)| addr >= a && addr - a < u64::from(l))
}

/// Whether any byte of `segments` lies inside `others` (interval arithmetic: a byte loop
/// over megabytes of buffers would be slow under the fuzzer's instrumentation).
pub fn overlaps(segments: &[(u64, u32)], others: &[(u64, u32)]) -> bool {
    segments.iter().any(|&(a, l)| {
        others.iter().any(|&(b, m)| {
            l > 0
                && m > 0
                && a < b.saturating_add(u64::from(m))
                && b < a.saturating_add(u64::from(l))
        })
    })
}

/// The indexes where `before` and `after` differ, in order. Equal page-sized chunks are
/// skipped with one slice comparison: comparing megabytes byte by byte runs libFuzzer's
/// comparison hooks for every byte and made a target a hundred times slower.
pub fn changed<'a>(before: &'a [u8], after: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    const CHUNK: usize = 4096;
    before
        .chunks(CHUNK)
        .zip(after.chunks(CHUNK))
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .flat_map(|(n, (a, b))| {
            a.iter()
                .zip(b.iter())
                .enumerate()
                .filter(|(_, (x, y))| x != y)
                .map(move |(i, _)| n * CHUNK + i)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_walk_follows_the_rules() {
        let mem = memory();
        let q = GuestQueue::new(&mem, 0, 4);
        let d = |addr, len, flags, next| Desc {
            addr,
            len,
            flags,
            next,
        };
        q.set_desc(&mem, 0, d(0x1_0000, 16, F_NEXT, 1));
        q.set_desc(&mem, 1, d(0x2_0000, 1, F_WRITE, 0));
        assert_eq!(
            walk(&mem, q.desc, 4, 0),
            Walk::Chain {
                readable: vec![(0x1_0000, 16)],
                writable: vec![(0x2_0000, 1)]
            }
        );
        q.set_desc(&mem, 1, d(0x2_0000, 1, F_WRITE | F_NEXT, 0));
        assert_eq!(walk(&mem, q.desc, 4, 0), Walk::Refused, "a loop");
        q.set_desc(&mem, 1, d(0x7_fff0, 0x20, 0, 0));
        assert!(
            matches!(walk(&mem, q.desc, 4, 0), Walk::Chain { .. }),
            "spans regions"
        );
        q.set_desc(&mem, 1, d(0xf_fff0, 0x20, 0, 0));
        assert_eq!(
            walk(&mem, q.desc, 4, 0),
            Walk::Refused,
            "runs into the hole"
        );
        assert_eq!(
            walk(&mem, q.desc, 4, 9),
            Walk::Refused,
            "head outside the table"
        );
    }
}
