//! `virtio_chain`: descriptor tables as a hostile driver writes them, popped from the
//! queue and read by [`Chain::read`], the one place every device takes its buffers from.
//! No device offers indirect descriptors, so a chain that uses one must be refused.

use virtio_queue::QueueT;
use vm_memory::GuestMemoryBackend;

use super::guest::{self, Desc, GuestQueue, Input, Walk, F_INDIRECT, F_NEXT, F_WRITE};
use crate::devices::virtio::chain::{self, Chain};

/// Where the harness may write one indirect table.
const INDIRECT_AT: u64 = 0x4_0000;

/// Input: queue size, the descriptor table, an indirect table, then the heads offered.
/// Every chain the device accepts must be what the reference walk says (which refuses a
/// chain that refers to an indirect table), lie in guest memory, and keep its readable buffers first; the helpers that
/// cut ranges out of a chain must stay inside it. Returns the number of chains accepted.
pub fn virtio_chain(data: &[u8]) -> usize {
    let mut input = Input::new(data);
    let mem = guest::memory();
    let size = 1u16 << (input.u8() % 9);
    let mut q = GuestQueue::new(&mem, 0, size);
    for i in 0..size {
        let d = descriptor(&mut input, size);
        q.set_desc(&mem, i, d);
    }
    // One indirect table, for descriptors that point at it.
    let entries = input.u8() % 33;
    for i in 0..u64::from(entries) {
        let d = descriptor(&mut input, u16::from(entries).max(1));
        guest::write_desc(&mem, INDIRECT_AT + i * 16, d);
    }
    let heads = input.u8() % 17;
    for _ in 0..heads {
        let head = match input.u8() {
            0xff => input.u16(),
            h => u16::from(h) % size,
        };
        q.push(&mem, head);
    }
    let mut device = q.device_queue(&mem);
    let mut accepted = 0;
    while let Some(desc_chain) = device.pop_descriptor_chain(&mem) {
        let head = desc_chain.head_index();
        let model = guest::walk(&mem, guest::QUEUES_AT, size, head);
        match Chain::read(&device, head, &mem) {
            Ok(c) => {
                accepted += 1;
                check(&mem, &c, &model, &mut input);
            }
            Err(e) => assert!(
                model == Walk::Refused,
                "chain at {head} refused ({e}), but the reference walk accepts it: {model:?}"
            ),
        }
    }
    accepted
}

/// One descriptor: links mostly inside the table, flags mostly the meaningful ones.
fn descriptor(input: &mut Input<'_>, size: u16) -> Desc {
    let addr = input.addr();
    let len = input.len();
    let f = input.u8();
    let mut flags = u16::from(f) & (F_NEXT | F_WRITE);
    if f & 0x80 != 0 {
        flags |= F_INDIRECT;
    }
    let (addr, len) = if flags & F_INDIRECT != 0 && f & 0x40 != 0 {
        (INDIRECT_AT, u32::from(input.u8() % 33) * 16)
    } else {
        (addr, len)
    };
    let next = match input.u8() {
        0xff => input.u16(),
        n => u16::from(n) % size,
    };
    Desc {
        addr,
        len,
        flags,
        next,
    }
}

fn check(mem: &vm_memory::GuestMemoryMmap, c: &Chain, model: &Walk, input: &mut Input<'_>) {
    let as_pairs = |s: &[chain::Segment]| s.iter().map(|s| (s.addr.0, s.len)).collect::<Vec<_>>();
    if let Walk::Chain { readable, writable } = model {
        assert_eq!(
            (&as_pairs(&c.readable), &as_pairs(&c.writable)),
            (readable, writable),
            "the device's chain differs from the reference walk"
        );
    } else {
        panic!("accepted a chain the reference refuses: {model:?}");
    }
    for s in c.readable.iter().chain(&c.writable) {
        assert!(s.len > 0, "an empty segment was kept");
        assert!(
            GuestMemoryBackend::check_range(mem, s.addr, s.len as usize),
            "segment {s:?} is outside guest memory"
        );
    }
    // Cutting a range out of the chain (what devices do for headers, data and status).
    let segments = if input.u8() & 1 == 0 {
        &c.readable
    } else {
        &c.writable
    };
    let total = chain::total(segments);
    let (offset, limit) = (u64::from(input.u32()), u64::from(input.u32()));
    let cut = chain::sub_range(segments, offset, limit);
    assert_eq!(
        chain::total(&cut),
        limit.min(total.saturating_sub(offset)),
        "sub_range({offset}, {limit}) of {total} bytes"
    );
    for s in &cut {
        assert!(s.len > 0);
        let end = s.addr.0 + u64::from(s.len);
        assert!(
            segments
                .iter()
                .any(|o| s.addr >= o.addr && end <= o.addr.0 + u64::from(o.len)),
            "sub_range produced {s:?} outside the chain"
        );
    }
    let mut buf = vec![0u8; (total.min(4096)) as usize];
    assert_eq!(chain::read_into(mem, segments, &mut buf), buf.len());
    assert_eq!(chain::write_from(mem, segments, &buf), buf.len());
}
