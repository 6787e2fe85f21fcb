//! The frontend against a recording vhost-user backend on a socketpair: the protocol is
//! decoded here from the specification's numbers (not the `vhost` crate's), so these tests
//! check what actually crosses the socket.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

use super::backend::Backend;
use super::*;
use crate::devices::virtio::INT_USED_RING;
use crate::memory::{create_guest_memory, create_shared_guest_memory};

// vhost-user request codes (vhost-user specification, "Front-end message types").
const GET_FEATURES: u32 = 1;
const SET_FEATURES: u32 = 2;
const SET_OWNER: u32 = 3;
const SET_MEM_TABLE: u32 = 5;
const SET_VRING_NUM: u32 = 8;
const SET_VRING_ADDR: u32 = 9;
const SET_VRING_BASE: u32 = 10;
const SET_VRING_KICK: u32 = 12;
const SET_VRING_CALL: u32 = 13;
const VERSION_1: u64 = 1 << 32;

/// One request as the backend received it.
struct Msg {
    request: u32,
    body: Vec<u8>,
    fd: Option<File>,
}

impl Msg {
    fn u64_at(&self, offset: usize) -> u64 {
        u64::from_le_bytes(self.body[offset..offset + 8].try_into().unwrap())
    }
    fn u32_at(&self, offset: usize) -> u32 {
        u32::from_le_bytes(self.body[offset..offset + 4].try_into().unwrap())
    }
}

/// A backend that answers GET_FEATURES with `features` and
/// sends every request it gets to the test.
fn recording_backend(features: u64) -> (UnixStream, mpsc::Receiver<Msg>) {
    let (frontend, backend) = UnixStream::pair().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sock = backend;
        loop {
            let mut hdr = [0u8; 12];
            let (n, fd) = match sock.recv_with_fd(&mut hdr) {
                Ok((n, fd)) if n > 0 => (n, fd),
                _ => return,
            };
            if n < 12 && sock.read_exact(&mut hdr[n..]).is_err() {
                return;
            }
            let request = u32::from_le_bytes(hdr[0..4].try_into().unwrap());
            let size = u32::from_le_bytes(hdr[8..12].try_into().unwrap()) as usize;
            let mut body = vec![0u8; size];
            if sock.read_exact(&mut body).is_err() {
                return;
            }
            let reply: Option<Vec<u8>> = match request {
                GET_FEATURES => Some(features.to_le_bytes().to_vec()),
                _ => None,
            };
            if let Some(payload) = reply {
                let mut out = Vec::new();
                out.extend_from_slice(&request.to_le_bytes());
                out.extend_from_slice(&(0x1u32 | 0x4).to_le_bytes()); // version 1, reply
                out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                out.extend_from_slice(&payload);
                if sock.write_all(&out).is_err() {
                    return;
                }
            }
            if tx.send(Msg { request, body, fd }).is_err() {
                return;
            }
        }
    });
    (frontend, rx)
}

fn next(rx: &mpsc::Receiver<Msg>) -> Msg {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the frontend sent the next request")
}

fn ready_queue(mem: &GuestMemoryMmap, base: u64) -> Queue {
    let mut q = Queue::new(QUEUE_SIZE).unwrap();
    q.try_set_desc_table_address(GuestAddress(base)).unwrap();
    q.try_set_avail_ring_address(GuestAddress(base + 0x1000))
        .unwrap();
    q.try_set_used_ring_address(GuestAddress(base + 0x2000))
        .unwrap();
    q.set_ready(true);
    assert!(q.is_valid(mem));
    q
}

fn host(mem: &GuestMemoryMmap, gpa: u64) -> u64 {
    mem.get_host_address(GuestAddress(gpa)).unwrap() as u64
}

#[test]
fn activation_hands_the_backend_shared_memory_rings_kicks_and_calls() {
    let (sock, rx) = recording_backend(VERSION_1 | (1 << 29) | (1 << 30));
    let fs = Fs::with_backend(
        "vol0".into(),
        Backend::from_stream(sock, NUM_QUEUES).unwrap(),
    )
    .unwrap();
    assert_eq!(next(&rx).request, SET_OWNER);
    assert_eq!(next(&rx).request, GET_FEATURES);
    // Only the ring features pass to the driver (VERSION_1 is the transport's; bit 30,
    // VHOST_USER_F_PROTOCOL_FEATURES, is the protocol's).
    assert_eq!(fs.features(), 1 << 29);
    let config = fs.config_space();
    assert_eq!(config.len(), 40);
    assert_eq!(&config[..4], b"vol0");
    assert!(config[4..36].iter().all(|b| *b == 0));
    assert_eq!(u32::from_le_bytes(config[36..].try_into().unwrap()), 1);

    let fs = Arc::new(Mutex::new(fs));
    let mut events = EventManager::<Arc<Mutex<dyn MutEventSubscriber + Send>>>::new().unwrap();
    events.add_subscriber(fs.clone());

    let mem = create_shared_guest_memory(16).unwrap();
    let irqfd = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let interrupt = Arc::new(Interrupt::new(irqfd.try_clone().unwrap()));
    let queues = vec![ready_queue(&mem, 0x10_0000), ready_queue(&mem, 0x20_0000)];
    {
        let mut dev = fs.lock().unwrap();
        dev.ack_features(VERSION_1 | (1 << 29));
        dev.activate(Activation {
            mem: mem.clone(),
            queues,
            interrupt: interrupt.clone(),
        })
        .unwrap();
        // Nothing crosses the socket on the vCPU thread.
        assert!(rx.try_recv().is_err());
    }
    events.run_with_timeout(5000).unwrap();
    assert!(fs.lock().unwrap().started());

    let m = next(&rx);
    assert_eq!(m.request, SET_FEATURES);
    assert_eq!(m.u64_at(0), VERSION_1 | (1 << 29));

    // The memory table: one region (16 MiB below the gap), the VMM's address of guest 0,
    // and the memfd itself: what the backend writes through it, the guest reads.
    let m = next(&rx);
    assert_eq!(m.request, SET_MEM_TABLE);
    assert_eq!(m.u32_at(0), 1, "one region");
    assert_eq!(m.u64_at(8), 0, "guest physical address");
    assert_eq!(m.u64_at(16), 16 << 20, "size");
    assert_eq!(m.u64_at(24), host(&mem, 0), "VMM address");
    assert_eq!(m.u64_at(32), 0, "offset in the memfd");
    let memfd = m.fd.expect("the memfd came with SET_MEM_TABLE");
    memfd.write_all_at(b"from the backend", 0x30_0000).unwrap();
    let mut seen = [0u8; 16];
    mem.read_slice(&mut seen, GuestAddress(0x30_0000)).unwrap();
    assert_eq!(&seen, b"from the backend");

    let mut kicks = Vec::new();
    let mut calls = Vec::new();
    for (index, base) in [(0u32, 0x10_0000u64), (1, 0x20_0000)] {
        let m = next(&rx);
        assert_eq!(
            (m.request, m.u32_at(0), m.u32_at(4)),
            (SET_VRING_NUM, index, 256)
        );
        let m = next(&rx);
        assert_eq!(
            (m.request, m.u32_at(0), m.u32_at(4)),
            (SET_VRING_BASE, index, 0)
        );
        // struct vhost_vring_addr: index, flags, desc, used, avail, log.
        let m = next(&rx);
        assert_eq!(m.request, SET_VRING_ADDR);
        assert_eq!(m.u32_at(0), index);
        assert_eq!(m.u64_at(8), host(&mem, base));
        assert_eq!(m.u64_at(16), host(&mem, base + 0x2000));
        assert_eq!(m.u64_at(24), host(&mem, base + 0x1000));
        let m = next(&rx);
        assert_eq!((m.request, m.u64_at(0)), (SET_VRING_CALL, u64::from(index)));
        calls.push(m.fd.expect("a call eventfd"));
        let m = next(&rx);
        assert_eq!((m.request, m.u64_at(0)), (SET_VRING_KICK, u64::from(index)));
        kicks.push(m.fd.expect("a kick eventfd"));
    }

    // The kick the backend waits on is the queue's notification eventfd (the one KVM's
    // ioeventfd writes when the guest notifies).
    (&kicks[1]).write_all(&1u64.to_ne_bytes()).unwrap();
    {
        let dev = fs.lock().unwrap();
        assert_eq!(dev.queue_events().as_slice()[1].read().unwrap(), 1);
        assert!(
            dev.queue_events().as_slice()[0].read().is_err(),
            "queue 0 not kicked"
        );
    }

    // The backend's call becomes the guest's interrupt with "used ring" in InterruptStatus.
    assert_eq!(interrupt.status(), 0);
    (&calls[0]).write_all(&1u64.to_ne_bytes()).unwrap();
    events.run_with_timeout(5000).unwrap();
    assert_eq!(interrupt.status() & INT_USED_RING, INT_USED_RING);
    assert_eq!(irqfd.read().unwrap(), 1);

    // After a reset the backend's call raises nothing, and starting again is refused.
    fs.lock().unwrap().reset();
    assert!(!fs.lock().unwrap().started());
    (&calls[0]).write_all(&1u64.to_ne_bytes()).unwrap();
    events.run_with_timeout(5000).unwrap();
    assert!(irqfd.read().is_err());
    let again = fs.lock().unwrap().activate(Activation {
        mem: mem.clone(),
        queues: vec![ready_queue(&mem, 0x10_0000), ready_queue(&mem, 0x20_0000)],
        interrupt,
    });
    assert!(again.unwrap_err().to_string().contains("after a reset"));
    assert!(rx.try_recv().is_err(), "nothing more was sent");
}

#[test]
fn rings_outside_guest_memory_and_private_memory_are_refused_before_anything_is_sent() {
    let (sock, rx) = recording_backend(VERSION_1);
    let mut fs =
        Fs::with_backend("v".into(), Backend::from_stream(sock, NUM_QUEUES).unwrap()).unwrap();
    let _ = (next(&rx), next(&rx));
    let interrupt = Arc::new(Interrupt::new(EventFd::new(0).unwrap()));

    // Private (anonymous) guest memory: the backend could not see it.
    let private = create_guest_memory(16).unwrap();
    let err = fs
        .activate(Activation {
            mem: private.clone(),
            queues: vec![
                ready_queue(&private, 0x1000),
                ready_queue(&private, 0x10_0000),
            ],
            interrupt: interrupt.clone(),
        })
        .unwrap_err();
    assert!(err.to_string().contains("not shared"), "{err}");

    // A used ring whose last entries run past the end of guest RAM (a hostile driver that
    // skipped the transport's own check would get this far).
    let mem = create_shared_guest_memory(16).unwrap();
    let mut hostile = ready_queue(&mem, 0x1000);
    let end = 16u64 << 20;
    hostile
        .try_set_used_ring_address(GuestAddress(end - 0x100))
        .unwrap();
    let err = fs
        .activate(Activation {
            mem: mem.clone(),
            queues: vec![ready_queue(&mem, 0x10_0000), hostile],
            interrupt: interrupt.clone(),
        })
        .unwrap_err();
    assert!(err.to_string().contains("used ring"), "{err}");

    // A queue the driver did not make ready.
    let mut idle = ready_queue(&mem, 0x1000);
    idle.set_ready(false);
    let err = fs
        .activate(Activation {
            mem: mem.clone(),
            queues: vec![ready_queue(&mem, 0x10_0000), idle],
            interrupt,
        })
        .unwrap_err();
    assert!(err.to_string().contains("ready"), "{err}");
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "nothing was sent to the backend"
    );
}

#[test]
fn a_backend_without_version_1_is_refused() {
    let (sock, _rx) = recording_backend(1 << 29);
    let err = Backend::from_stream(sock, NUM_QUEUES).err().unwrap();
    assert!(err.to_string().contains("VERSION_1"), "{err}");
}

#[test]
fn a_silent_backend_is_given_up_after_the_deadline() {
    let (sock, silent) = UnixStream::pair().unwrap();
    let err = Backend::from_stream(sock, NUM_QUEUES).err().unwrap();
    assert!(err.to_string().contains("GET_FEATURES"), "{err}");
    drop(silent);
}

#[test]
fn a_backend_hang_up_marks_the_device_broken() {
    let (frontend, backend) = UnixStream::pair().unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let mut sock = backend;
        let mut hdr = [0u8; 12];
        sock.read_exact(&mut hdr).unwrap(); // SET_OWNER
        sock.read_exact(&mut hdr).unwrap(); // GET_FEATURES
        let mut out = Vec::new();
        out.extend_from_slice(&GET_FEATURES.to_le_bytes());
        out.extend_from_slice(&5u32.to_le_bytes());
        out.extend_from_slice(&8u32.to_le_bytes());
        out.extend_from_slice(&VERSION_1.to_le_bytes());
        sock.write_all(&out).unwrap();
        rx.recv().unwrap();
        // The backend goes away.
    });
    let fs = Fs::with_backend(
        "v".into(),
        Backend::from_stream(frontend, NUM_QUEUES).unwrap(),
    )
    .unwrap();
    let fs = Arc::new(Mutex::new(fs));
    let mut events = EventManager::<Arc<Mutex<dyn MutEventSubscriber + Send>>>::new().unwrap();
    events.add_subscriber(fs.clone());
    assert!(!fs.lock().unwrap().broken());
    tx.send(()).unwrap();
    server.join().unwrap();
    events.run_with_timeout(5000).unwrap();
    assert!(fs.lock().unwrap().broken());
}
