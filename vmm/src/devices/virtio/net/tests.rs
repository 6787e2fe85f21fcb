//! The device against a datagram socket pair standing in for the TAP (one frame per
//! datagram, the same readv/writev behaviour): what the guest transmits arrives whole,
//! what arrives is delivered into the guest's buffers, malformed chains are refused.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::*;

const MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];
const BUF: u64 = 0x10_0000;
const W: u16 = VRING_DESC_F_WRITE as u16;
const N: u16 = VRING_DESC_F_NEXT as u16;

struct Rig {
    mem: &'static GuestMemoryMmap,
    rxq: MockSplitQueue<'static, GuestMemoryMmap>,
    txq: MockSplitQueue<'static, GuestMemoryMmap>,
    dev: Net,
    peer: OwnedFd,
    irq: EventFd,
}

/// A non-blocking SOCK_DGRAM pair.
fn socket_pair() -> (OwnedFd, OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [0i32; 2];
    // SAFETY: socketpair writes two new descriptors into our array.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0, "socketpair: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are new and owned by nothing else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn rig(mtu: Option<u16>) -> Rig {
    let mem: &'static GuestMemoryMmap =
        Box::leak(Box::new(crate::memory::create_guest_memory(16).unwrap()));
    let (ours, peer) = socket_pair();
    let mut dev = Net::with_tap(Tap::from_socket(ours), MAC, mtu).unwrap();
    let rxq = MockSplitQueue::create(mem, GuestAddress(0x1_0000), 16);
    let txq = MockSplitQueue::create(mem, GuestAddress(0x3_0000), 16);
    let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    dev.ack_features(dev.features());
    dev.activate(Activation {
        mem: mem.clone(),
        queues: vec![rxq.create_queue().unwrap(), txq.create_queue().unwrap()],
        interrupt: Arc::new(Interrupt::new(irq.try_clone().unwrap())),
    })
    .unwrap();
    Rig {
        mem,
        rxq,
        txq,
        dev,
        peer,
        irq,
    }
}

fn desc(addr: u64, len: u32, flags: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
}

/// Makes one chain of `descs` available at descriptor table index `first` (chains built
/// by `build_desc_chain` all start at index 0 and would overwrite each other).
fn offer(q: &MockSplitQueue<'static, GuestMemoryMmap>, first: u16, descs: &[RawDescriptor]) {
    let linked: Vec<RawDescriptor> = descs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let d = SplitDescriptor::from(*d);
            let last = i + 1 == descs.len();
            let flags = if last { d.flags() & !N } else { d.flags() | N };
            let next = if last { 0 } else { first + i as u16 + 1 };
            RawDescriptor::from(SplitDescriptor::new(d.addr().0, d.len(), flags, next))
        })
        .collect();
    q.add_desc_chains(&linked, first).unwrap();
}

fn send(peer: &OwnedFd, frame: &[u8]) {
    // SAFETY: write from a live buffer to our own socket.
    let n = unsafe { libc::write(peer.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
    assert_eq!(n, frame.len() as isize);
}

fn recv(peer: &OwnedFd) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 70_000];
    // SAFETY: read into a live buffer of the given length from our own socket.
    let n = unsafe { libc::read(peer.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect()
}

#[test]
fn identity_features_and_config_space() {
    let r = rig(Some(1400));
    assert_eq!(r.dev.device_type(), VIRTIO_ID_NET);
    assert_eq!(r.dev.queue_max_sizes(), &[QUEUE_SIZE, QUEUE_SIZE]);
    let config = r.dev.config_space();
    assert_eq!(&config[..6], &MAC);
    assert_eq!(u16::from_le_bytes([config[10], config[11]]), 1400);
    assert_ne!(r.dev.features() & bit(VIRTIO_NET_F_MTU), 0);
    assert_eq!(rig(None).dev.features() & bit(VIRTIO_NET_F_MTU), 0);
}

#[test]
fn offloads_follow_what_the_driver_accepted() {
    let all =
        bit(VIRTIO_NET_F_GUEST_CSUM) | bit(VIRTIO_NET_F_GUEST_TSO4) | bit(VIRTIO_NET_F_GUEST_TSO6);
    assert_eq!(
        Net::offload_for(all),
        tap::TUN_F_CSUM | tap::TUN_F_TSO4 | tap::TUN_F_TSO6
    );
    assert_eq!(
        Net::offload_for(bit(VIRTIO_NET_F_GUEST_TSO4)),
        0,
        "TSO needs CSUM"
    );
    assert_eq!(Net::offload_for(0), 0);
}

#[test]
fn transmitted_frames_reach_the_tap_whole() {
    let mut r = rig(None);
    let f = frame(VNET_HDR_LEN + 60, 1);
    // Header and payload in two descriptors, as Linux sends them.
    r.mem
        .write_slice(&f[..VNET_HDR_LEN], GuestAddress(BUF))
        .unwrap();
    r.mem
        .write_slice(&f[VNET_HDR_LEN..], GuestAddress(BUF + 0x1000))
        .unwrap();
    offer(
        &r.txq,
        0,
        &[desc(BUF, VNET_HDR_LEN as u32, N), desc(BUF + 0x1000, 60, 0)],
    );
    assert!(!r.dev.transmit(), "nothing left");
    assert_eq!(recv(&r.peer).as_deref(), Some(&f[..]));
    assert_eq!(r.txq.used().idx().load(), 1);
    assert_eq!(r.irq.read().unwrap(), 1);
    assert_eq!(r.dev.drops(), Drops::default());
}

#[test]
fn malformed_transmit_chains_are_returned_and_dropped() {
    let mut r = rig(None);
    // A writable descriptor in a transmit chain, a header alone, and an oversized frame.
    offer(&r.txq, 0, &[desc(BUF, 100, W)]);
    offer(&r.txq, 1, &[desc(BUF + 0x1000, VNET_HDR_LEN as u32, 0)]);
    offer(&r.txq, 2, &[desc(BUF + 0x2_0000, MAX_FRAME as u32 + 1, 0)]);
    // And one good frame after them, which goes through.
    offer(
        &r.txq,
        3,
        &[desc(BUF + 0x4_0000, VNET_HDR_LEN as u32 + 60, 0)],
    );
    r.dev.transmit();
    assert_eq!(
        r.txq.used().idx().load(),
        4,
        "every chain goes back to the guest"
    );
    assert_eq!(r.dev.drops().tx_refused, 3);
    assert_eq!(recv(&r.peer).map(|f| f.len()), Some(VNET_HDR_LEN + 60));
    assert!(
        recv(&r.peer).is_none(),
        "only the good frame reached the TAP"
    );
}

#[test]
fn received_frames_land_in_the_guests_buffers() {
    let mut r = rig(None);
    offer(&r.rxq, 0, &[desc(BUF, 2048, W)]);
    offer(&r.rxq, 1, &[desc(BUF + 0x1000, 2048, W)]);
    let a = frame(VNET_HDR_LEN + 98, 2);
    let b = frame(VNET_HDR_LEN + 1514, 3);
    send(&r.peer, &a);
    send(&r.peer, &b);
    assert_eq!(r.dev.receive(), RxEnd::NoBuffers, "two buffers, two frames");
    let used = r.rxq.used();
    assert_eq!(used.idx().load(), 2);
    assert_eq!(
        used.ring().ref_at(0).unwrap().load().len() as usize,
        a.len()
    );
    assert_eq!(
        used.ring().ref_at(1).unwrap().load().len() as usize,
        b.len()
    );
    let mut got = vec![0u8; a.len()];
    r.mem.read_slice(&mut got, GuestAddress(BUF)).unwrap();
    assert_eq!(got, a);
    let mut got = vec![0u8; b.len()];
    r.mem
        .read_slice(&mut got, GuestAddress(BUF + 0x1000))
        .unwrap();
    assert_eq!(got, b);
    assert_eq!(r.irq.read().unwrap(), 1, "one interrupt for the batch");
}

#[test]
fn receive_waits_for_buffers_and_keeps_an_unused_one() {
    let mut r = rig(None);
    let a = frame(VNET_HDR_LEN + 40, 4);
    send(&r.peer, &a);
    assert_eq!(
        r.dev.receive(),
        RxEnd::NoBuffers,
        "no buffer yet: the frame waits"
    );
    offer(&r.rxq, 0, &[desc(BUF, 2048, W)]);
    offer(&r.rxq, 1, &[desc(BUF + 0x1000, 2048, W)]);
    assert_eq!(r.dev.receive(), RxEnd::Drained);
    assert_eq!(
        r.rxq.used().idx().load(),
        1,
        "the waiting frame, and no more"
    );
    // The second buffer was put back: the next frame uses it.
    let b = frame(VNET_HDR_LEN + 40, 5);
    send(&r.peer, &b);
    assert_eq!(r.dev.receive(), RxEnd::NoBuffers, "b took the last buffer");
    assert_eq!(r.rxq.used().idx().load(), 2);
    let mut got = vec![0u8; b.len()];
    r.mem
        .read_slice(&mut got, GuestAddress(BUF + 0x1000))
        .unwrap();
    assert_eq!(got, b);
}

#[test]
fn readable_receive_chains_are_refused() {
    let mut r = rig(None);
    offer(&r.rxq, 0, &[desc(BUF, 2048, 0)]);
    send(&r.peer, &frame(VNET_HDR_LEN + 40, 6));
    r.dev.receive();
    assert_eq!(r.rxq.used().idx().load(), 1);
    assert_eq!(r.rxq.used().ring().ref_at(0).unwrap().load().len(), 0);
    assert_eq!(r.dev.drops().rx_refused, 1);
}
