//! File I/O straight into and out of guest memory: one `preadv`/`pwritev` per request
//! (more only after a short transfer), no bounce buffer.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use vm_memory::GuestMemoryMmap;

use crate::devices::virtio::chain::{iovecs, Segment};

/// Drops the first `n` bytes from `iov`.
fn advance(iov: &mut Vec<libc::iovec>, mut n: usize) {
    let mut skip = 0;
    while skip < iov.len() && n >= iov[skip].iov_len {
        n -= iov[skip].iov_len;
        skip += 1;
    }
    iov.drain(..skip);
    if n > 0 {
        if let Some(first) = iov.first_mut() {
            // SAFETY: n < iov_len, so the new base stays inside the same guest buffer.
            first.iov_base = unsafe { first.iov_base.cast::<u8>().add(n) }.cast();
            first.iov_len -= n;
        }
    }
}

/// Repeats `op` (preadv or pwritev) until every byte moved; a zero-length transfer
/// before that is an error (end of file, or a file that shrank).
fn transfer_all(
    file: &File,
    mut offset: u64,
    mut iov: Vec<libc::iovec>,
    op: unsafe extern "C" fn(libc::c_int, *const libc::iovec, libc::c_int, libc::off_t) -> isize,
) -> io::Result<()> {
    while !iov.is_empty() {
        let count = iov.len().min(libc::UIO_MAXIOV as usize);
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        // SAFETY: every iovec points into guest memory that `mem` (borrowed by the caller
        // for the whole call) keeps mapped; the kernel reads or writes at most iov_len bytes
        // of each. The guest may touch the same bytes concurrently, which is its business:
        // no Rust reference to them exists.
        let n = unsafe { op(file.as_raw_fd(), iov.as_ptr(), count as libc::c_int, off) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "short transfer at the end of the file",
            ));
        }
        advance(&mut iov, n as usize);
        offset += n as u64;
    }
    Ok(())
}

/// Reads from `file` at `offset` into the guest buffers `segments`.
pub fn read_to_guest(
    file: &File,
    offset: u64,
    mem: &GuestMemoryMmap,
    segments: &[Segment],
) -> io::Result<()> {
    transfer_all(file, offset, iovecs(mem, segments)?, libc::preadv)
}

/// Writes the guest buffers `segments` to `file` at `offset`.
pub fn write_from_guest(
    file: &File,
    offset: u64,
    mem: &GuestMemoryMmap,
    segments: &[Segment],
) -> io::Result<()> {
    transfer_all(file, offset, iovecs(mem, segments)?, libc::pwritev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use vm_memory::{Bytes, GuestAddress};

    #[test]
    fn scattered_read_and_write_move_every_byte() {
        let mut f = tempfile::tempfile().unwrap();
        let content: Vec<u8> = (0..8192u32).map(|i| (i % 241) as u8).collect();
        f.write_all(&content).unwrap();
        let mem = crate::memory::create_guest_memory(16).unwrap();
        let segs = [
            Segment {
                addr: GuestAddress(0x1_0000),
                len: 100,
            },
            Segment {
                addr: GuestAddress(0x2_0000),
                len: 412,
            },
        ];
        read_to_guest(&f, 1024, &mem, &segs).unwrap();
        let mut a = [0u8; 100];
        mem.read_slice(&mut a, GuestAddress(0x1_0000)).unwrap();
        assert_eq!(&a[..], &content[1024..1124]);
        let mut b = [0u8; 412];
        mem.read_slice(&mut b, GuestAddress(0x2_0000)).unwrap();
        assert_eq!(&b[..], &content[1124..1536]);
        write_from_guest(&f, 0, &mem, &segs).unwrap();
        let mut back = vec![0u8; 512];
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut back, 0).unwrap();
        assert_eq!(&back[..], &content[1024..1536]);
        let past_end = read_to_guest(&f, 8000, &mem, &segs).unwrap_err();
        assert_eq!(past_end.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn advance_splits_inside_an_iovec() {
        let mut buf = [0u8; 30];
        let base = buf.as_mut_ptr();
        let mut iov = vec![
            libc::iovec {
                iov_base: base.cast(),
                iov_len: 10,
            },
            libc::iovec {
                // SAFETY: inside `buf`.
                iov_base: unsafe { base.add(10) }.cast(),
                iov_len: 20,
            },
        ];
        advance(&mut iov, 15);
        assert_eq!(iov.len(), 1);
        assert_eq!(iov[0].iov_len, 15);
        // SAFETY: inside `buf`.
        assert_eq!(iov[0].iov_base.cast::<u8>(), unsafe { base.add(15) });
    }
}
