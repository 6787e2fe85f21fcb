//! A descriptor chain read once into the VMM's own memory and checked: every device works
//! from this copy, so a guest that rewrites its descriptor table while a request is being
//! handled cannot change what was checked (issue 10: the old code walked a chain three
//! times, and `available_bytes() - 1` could underflow between walks).

use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryMmap};

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
    /// Walks `chain` once. The walk ends (no loop, at most the queue size of descriptors,
    /// virtio-queue enforces it), readable buffers come first, and every buffer lies in
    /// guest memory; anything else is a [`ChainError`].
    pub fn read<M>(chain: DescriptorChain<M>, mem: &GuestMemoryMmap) -> Result<Chain, ChainError>
    where
        M: std::ops::Deref + Clone,
        M::Target: GuestMemory,
    {
        let mut out = Chain {
            head: chain.head_index(),
            readable: Vec::new(),
            writable: Vec::new(),
        };
        let mut last_has_next = true;
        let mut descriptors = 0usize;
        for desc in chain {
            descriptors += 1;
            last_has_next = desc.has_next();
            let len = desc.len();
            if len == 0 {
                continue;
            }
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
        if descriptors == 0 || last_has_next {
            return Err(ChainError::Truncated);
        }
        Ok(out)
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
