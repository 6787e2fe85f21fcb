//! A descriptor chain read once into the VMM's own memory and checked: every device works
//! from this copy, so a guest that rewrites its descriptor table while a request is being
//! handled cannot change what was checked (issue 10: the old code walked a chain three
//! times, and `available_bytes() - 1` could underflow between walks).

use virtio_queue::desc::split::Descriptor;
use virtio_queue::QueueT;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, GuestMemoryMmap};

/// Size of one split-queue descriptor in the table.
const DESCRIPTOR_BYTES: u64 = 16;

/// One guest buffer of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical address.
    pub addr: GuestAddress,
    /// Length in bytes (> 0: empty descriptors are dropped).
    pub len: u32,
}

/// Why a descriptor chain was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The chain loops, is longer than the queue, or references a descriptor that cannot be read.
    #[error("descriptor chain loops, is too long or is truncated")]
    Truncated,
    /// A descriptor refers to an indirect table, a feature the device does not offer.
    #[error(
        "descriptor chain uses an indirect table (VIRTIO_RING_F_INDIRECT_DESC is not offered)"
    )]
    Indirect,
    /// A device-readable descriptor follows a device-writable one.
    #[error("readable descriptor after a writable one")]
    BadOrder,
    /// A descriptor's buffer is not inside guest memory.
    #[error("descriptor buffer {addr:#x}+{len:#x} is outside guest memory")]
    OutOfRange {
        /// Buffer address.
        addr: u64,
        /// Buffer length.
        len: u32,
    },
}

/// A checked copy of a chain: device-readable buffers, then device-writable ones, all inside
/// guest memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Index of the head descriptor (what goes back on the used ring).
    pub head: u16,
    /// Device-readable buffers, in order.
    pub readable: Vec<Segment>,
    /// Device-writable buffers, in order.
    pub writable: Vec<Segment>,
}

impl Chain {
    /// Walks the chain at `head` of `queue`'s descriptor table once. The walk ends (no loop,
    /// at most the queue size of descriptors, indices inside the table, at most 4 GiB in
    /// total as virtio-queue counts it), readable buffers come first, every buffer lies in
    /// guest memory, and no descriptor refers to an indirect table; anything else is a
    /// [`ChainError`].
    ///
    /// The walk is ours, not virtio-queue's iterator: that one follows
    /// `VIRTQ_DESC_F_INDIRECT` into a guest-chosen table of up to 65 535 descriptors, while
    /// hull-vmm's own devices never offer `VIRTIO_RING_F_INDIRECT_DESC` (virtio 1.2,
    /// 2.7.5.3.1: a driver must not use it then). Refusing such a chain keeps a request at
    /// most the queue size long, the bound every device was written against.
    pub fn read(
        queue: &impl QueueT,
        head: u16,
        mem: &GuestMemoryMmap,
    ) -> Result<Chain, ChainError> {
        let table = GuestAddress(queue.desc_table());
        let size = queue.size();
        let mut out = Chain {
            head,
            readable: Vec::new(),
            writable: Vec::new(),
        };
        let mut index = head;
        let mut bytes: u32 = 0;
        for _ in 0..size {
            if index >= size {
                return Err(ChainError::Truncated);
            }
            // Read once: the guest may rewrite the table while we look.
            let desc: Descriptor = table
                .checked_add(u64::from(index) * DESCRIPTOR_BYTES)
                .and_then(|at| mem.read_obj(at).ok())
                .ok_or(ChainError::Truncated)?;
            if desc.refers_to_indirect_table() {
                return Err(ChainError::Indirect);
            }
            let len = desc.len();
            bytes = bytes.checked_add(len).ok_or(ChainError::Truncated)?;
            if len > 0 {
                if !GuestMemory::check_range(
                    mem,
                    desc.addr(),
                    len as usize,
                    vm_memory::Permissions::ReadWrite,
                ) {
                    return Err(ChainError::OutOfRange {
                        addr: desc.addr().0,
                        len,
                    });
                }
                let segment = Segment {
                    addr: desc.addr(),
                    len,
                };
                if desc.is_write_only() {
                    out.writable.push(segment);
                } else if out.writable.is_empty() {
                    out.readable.push(segment);
                } else {
                    return Err(ChainError::BadOrder);
                }
            }
            if !desc.has_next() {
                return Ok(out);
            }
            index = desc.next();
        }
        Err(ChainError::Truncated)
    }

    /// Total bytes in device-readable buffers.
    pub fn readable_len(&self) -> u64 {
        total(&self.readable)
    }

    /// Total bytes in device-writable buffers.
    pub fn writable_len(&self) -> u64 {
        total(&self.writable)
    }
}

/// Total length of `segments`.
pub fn total(segments: &[Segment]) -> u64 {
    segments.iter().map(|s| u64::from(s.len)).sum()
}

/// The part of `segments` from byte `offset` on (at most `limit` bytes).
pub fn sub_range(segments: &[Segment], offset: u64, limit: u64) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut skip = offset;
    let mut left = limit;
    for s in segments {
        if left == 0 {
            break;
        }
        let len = u64::from(s.len);
        if skip >= len {
            skip -= len;
            continue;
        }
        let take = (len - skip).min(left);
        out.push(Segment {
            addr: GuestAddress(s.addr.0 + skip),
            len: take as u32,
        });
        left -= take;
        skip = 0;
    }
    out
}

/// The host iovecs of `segments` (each already checked to lie in guest memory; a segment
/// spanning two memory regions becomes two iovecs), for `readv`/`writev` and friends
/// straight into and out of guest memory.
pub fn iovecs(mem: &GuestMemoryMmap, segments: &[Segment]) -> std::io::Result<Vec<libc::iovec>> {
    use vm_memory::GuestMemoryBackend;
    let mut out = Vec::with_capacity(segments.len());
    for s in segments {
        for slice in GuestMemoryBackend::get_slices(mem, s.addr, s.len as usize) {
            let slice =
                slice.map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            out.push(libc::iovec {
                iov_base: slice.ptr_guard_mut().as_ptr().cast(),
                iov_len: slice.len(),
            });
        }
    }
    Ok(out)
}

/// Copies the first `buf.len()` bytes of `segments` into `buf`; the number copied.
pub fn read_into(mem: &GuestMemoryMmap, segments: &[Segment], buf: &mut [u8]) -> usize {
    let mut done = 0;
    for s in segments {
        if done == buf.len() {
            break;
        }
        let n = (s.len as usize).min(buf.len() - done);
        if mem.read_slice(&mut buf[done..done + n], s.addr).is_err() {
            break;
        }
        done += n;
    }
    done
}

/// Copies `data` into `segments` (as much as fits); the number of bytes copied.
pub fn write_from(mem: &GuestMemoryMmap, segments: &[Segment], data: &[u8]) -> usize {
    let mut done = 0;
    for s in segments {
        if done == data.len() {
            break;
        }
        let n = (s.len as usize).min(data.len() - done);
        if mem.write_slice(&data[done..done + n], s.addr).is_err() {
            break;
        }
        done += n;
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_bindings::bindings::virtio_ring::{
        VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
    };
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use virtio_queue::Queue;

    /// Offers the chain at descriptor 0 of `table` (addr, len, flags, next) on a queue of 8;
    /// what `Chain::read` makes of it.
    fn offer(mem: &GuestMemoryMmap, table: &[(u64, u32, u32, u16)]) -> Result<Chain, ChainError> {
        let vq = MockSplitQueue::create(mem, GuestAddress(0x1000), 8);
        for (i, &(addr, len, flags, next)) in table.iter().enumerate() {
            let d = SplitDescriptor::new(addr, len, flags as u16, next);
            vq.desc_table()
                .store(i as u16, RawDescriptor::from(d))
                .unwrap();
        }
        vq.avail().ring().ref_at(0).unwrap().store(0);
        vq.avail().idx().store(1);
        let mut q: Queue = vq.create_queue().unwrap();
        let head = q.pop_descriptor_chain(mem).unwrap().head_index();
        Chain::read(&q, head, mem)
    }

    #[test]
    fn a_direct_chain_is_read_readable_first() {
        let mem = crate::memory::create_guest_memory(16).unwrap();
        let c = offer(
            &mem,
            &[
                (0x8000, 16, VRING_DESC_F_NEXT, 1),
                (0x9000, 0, VRING_DESC_F_NEXT, 2),
                (0xa000, 512, VRING_DESC_F_WRITE, 0),
            ],
        )
        .unwrap();
        assert_eq!(
            (c.readable, c.writable),
            (vec![seg(0x8000, 16)], vec![seg(0xa000, 512)])
        );
    }

    /// virtio-queue's iterator would follow the indirect table (8 descriptors here, and up
    /// to 65 535 in general); no hull-vmm device offers the feature, so the chain is refused.
    #[test]
    fn a_chain_that_refers_to_an_indirect_table_is_refused() {
        let mem = crate::memory::create_guest_memory(16).unwrap();
        for i in 0..8u64 {
            let d = SplitDescriptor::new(
                0x9000 + i * 0x100,
                0x100,
                VRING_DESC_F_NEXT as u16,
                (i + 1) as u16,
            );
            mem.write_obj(RawDescriptor::from(d), GuestAddress(0x20000 + i * 16))
                .unwrap();
        }
        let direct_then_indirect = [
            (0x8000, 16, VRING_DESC_F_NEXT, 1),
            (0x20000, 8 * 16, VRING_DESC_F_INDIRECT, 0),
        ];
        assert_eq!(
            offer(&mem, &direct_then_indirect),
            Err(ChainError::Indirect)
        );
        let indirect_head = [(0x20000, 8 * 16, VRING_DESC_F_INDIRECT, 0)];
        assert_eq!(offer(&mem, &indirect_head), Err(ChainError::Indirect));
    }

    #[test]
    fn loops_out_of_table_links_and_bad_order_are_refused() {
        let mem = crate::memory::create_guest_memory(16).unwrap();
        let looping = [
            (0x8000, 16, VRING_DESC_F_NEXT, 1),
            (0x9000, 16, VRING_DESC_F_NEXT, 0),
        ];
        assert_eq!(offer(&mem, &looping), Err(ChainError::Truncated));
        let outside = [(0x8000, 16, VRING_DESC_F_NEXT, 8)];
        assert_eq!(offer(&mem, &outside), Err(ChainError::Truncated));
        let order = [
            (0x8000, 16, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1),
            (0x9000, 16, 0, 0),
        ];
        assert_eq!(offer(&mem, &order), Err(ChainError::BadOrder));
        let beyond = [(15 << 20, 2 << 20, 0, 0)];
        assert!(matches!(
            offer(&mem, &beyond),
            Err(ChainError::OutOfRange { .. })
        ));
    }

    fn seg(addr: u64, len: u32) -> Segment {
        Segment {
            addr: GuestAddress(addr),
            len,
        }
    }

    #[test]
    fn sub_range_skips_and_limits() {
        let segs = [seg(0x1000, 16), seg(0x2000, 100), seg(0x3000, 50)];
        assert_eq!(
            sub_range(&segs, 16, u64::MAX),
            vec![seg(0x2000, 100), seg(0x3000, 50)]
        );
        assert_eq!(
            sub_range(&segs, 20, 120),
            vec![seg(0x2004, 96), seg(0x3000, 24)]
        );
        assert!(sub_range(&segs, 166, 10).is_empty());
        assert_eq!(total(&segs), 166);
    }

    #[test]
    fn copies_across_segments() {
        let mem = crate::memory::create_guest_memory(16).unwrap();
        let segs = [seg(0x1000, 3), seg(0x2000, 5)];
        assert_eq!(write_from(&mem, &segs, b"abcdefghij"), 8);
        let mut buf = [0u8; 10];
        assert_eq!(read_into(&mem, &segs, &mut buf), 8);
        assert_eq!(&buf[..8], b"abcdefgh");
    }
}
