//! virtio-vsock with its host side on Unix sockets (docs/vmm.md, "vsock host side").
//!
//! The device is an event-loop subscriber: its queue notifications (ioeventfds), the host
//! listener, the host and guest connections and a deadline timerfd all wake the same loop,
//! which moves packets between the virtqueues and the Unix streams through
//! [`muxer::Muxer`]. There is no periodic wake-up.

pub mod muxer;
pub mod packet;

use std::os::fd::RawFd;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_queue::QueueT;

use super::{Activation, QueueEvents, VirtioDevice};
use crate::config::VsockConfig;
use crate::error::{Error, Result};
use muxer::{ActiveQueues, Muxer};

/// virtio device id of vsock.
pub const VIRTIO_ID_VSOCK: u32 = 19;
/// Queue size of rx, tx and event queues.
pub const QUEUE_SIZE: u16 = 256;
/// Queue indices.
const RX_QUEUE: usize = 0;

/// The vsock device.
pub struct Vsock {
    cid: u64,
    evts: QueueEvents,
    active: Option<ActiveQueues>,
    muxer: Muxer,
}

impl Vsock {
    /// Binds the host socket and creates the device.
    pub fn new(config: &VsockConfig) -> Result<Vsock> {
        let cid = u64::from(config.guest_cid);
        let muxer = Muxer::bind(&config.uds_path, cid).map_err(|e| {
            Error::Config(format!(
                "vsock: cannot listen on {}: {e}",
                config.uds_path.display()
            ))
        })?;
        Ok(Vsock {
            cid,
            evts: QueueEvents::new(3)?,
            active: None,
            muxer,
        })
    }

    /// The host side (tests look at its connections).
    pub fn muxer(&self) -> &Muxer {
        &self.muxer
    }

    /// One round of work after an event: guest packets, host data, then registrations.
    fn service(&mut self, readable: &[RawFd], writable: &[RawFd], ops: &mut EventOps) {
        self.muxer.service_host_side();
        self.muxer.flush_writable(writable);
        if let Some(q) = self.active.as_mut() {
            let tx_used = self.muxer.process_tx(q);
            let rx_used = self.muxer.process_rx(q, readable);
            if tx_used || rx_used {
                q.interrupt.signal_used();
            }
        }
        self.muxer.sync_registrations(ops);
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_VSOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE, QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        0 // VIRTIO_VSOCK_F_STREAM is implied; seqpacket is not offered
    }

    fn config_space(&self) -> Vec<u8> {
        self.cid.to_le_bytes().to_vec()
    }

    fn queue_events(&self) -> &QueueEvents {
        &self.evts
    }

    fn activate(&mut self, activation: Activation) -> Result<()> {
        let Activation {
            mem,
            queues,
            interrupt,
        } = activation;
        let mut queues = queues.into_iter();
        let (Some(rx), Some(tx)) = (queues.next(), queues.next()) else {
            return Err(Error::Device("vsock: missing queues".into()));
        };
        if !rx.ready() || !tx.ready() {
            return Err(Error::Device("vsock: rx/tx queues not ready".into()));
        }
        self.active = Some(ActiveQueues {
            mem,
            rx,
            tx,
            interrupt,
        });
        self.muxer.rx_refilled();
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
        self.muxer.reset();
        // Nudge the loop so the closed streams are deregistered and dropped now.
        self.evts.kick(RX_QUEUE);
    }
}

impl MutEventSubscriber for Vsock {
    fn init(&mut self, ops: &mut EventOps) {
        self.evts.register(ops);
        self.muxer.init(ops);
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let (mut readable, mut writable) = (Vec::new(), Vec::new());
        match self.evts.fired(&events) {
            Some(RX_QUEUE) => self.muxer.rx_refilled(),
            Some(_) => {} // TX: handled by `service`; event queue: nothing to do
            None if self.muxer.timer_fired(events.fd()) => {}
            None => {
                let set = events.event_set();
                if set.intersects(EventSet::IN | EventSet::HANG_UP | EventSet::ERROR) {
                    readable.push(events.fd());
                }
                if set.intersects(EventSet::OUT | EventSet::ERROR) {
                    writable.push(events.fd());
                }
            }
        }
        self.service(&readable, &writable, ops);
    }
}

#[cfg(test)]
mod tests {
    use super::muxer::CONN_BUF_ALLOC;
    use super::packet::*;
    use super::*;
    use crate::devices::virtio::Interrupt;
    use event_manager::{EventManager, SubscriberOps};
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestMemoryMmap;
    use vm_memory::{Bytes, GuestAddress};
    use vmm_sys_util::eventfd::EventFd;

    const CID: u64 = 3;
    const RX_BUF: u64 = 0x10_0000;
    const TX_BUF: u64 = 0x20_0000;
    const BUF_LEN: u32 = 4096 + HEADER_LEN as u32;

    struct Rig {
        mem: &'static GuestMemoryMmap,
        rxq: MockSplitQueue<'static, GuestMemoryMmap>,
        txq: MockSplitQueue<'static, GuestMemoryMmap>,
        dev: Arc<Mutex<Vsock>>,
        events: EventManager<Arc<Mutex<Vsock>>>,
        irq: EventFd,
        dir: tempfile::TempDir,
        rx_added: u16,
        rx_seen: u16,
        tx_added: u16,
    }

    fn rig() -> Rig {
        let mem: &'static GuestMemoryMmap =
            Box::leak(Box::new(crate::memory::create_guest_memory(16).unwrap()));
        let dir = tempfile::tempdir().unwrap();
        let config = VsockConfig {
            uds_path: dir.path().join("v.sock"),
            guest_cid: CID as u32,
        };
        let dev = Arc::new(Mutex::new(Vsock::new(&config).unwrap()));
        let mut events = EventManager::new().unwrap();
        events.add_subscriber(dev.clone());
        let rxq = MockSplitQueue::create(mem, GuestAddress(0x1_0000), 64);
        let txq = MockSplitQueue::create(mem, GuestAddress(0x3_0000), 64);
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        dev.lock()
            .unwrap()
            .activate(Activation {
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
            events,
            irq,
            dir,
            rx_added: 0,
            rx_seen: 0,
            tx_added: 0,
        }
    }

    impl Rig {
        fn path(&self) -> std::path::PathBuf {
            self.dir.path().join("v.sock")
        }
        /// Notifies queue `index` the way KVM's ioeventfd does.
        fn notify(&self, index: usize) {
            self.dev.lock().unwrap().evts.kick(index);
        }
        fn connections(&self) -> usize {
            self.dev.lock().unwrap().muxer().connection_count()
        }
        fn add_rx_buffers(&mut self, n: u16) {
            for _ in 0..n {
                let i = self.rx_added;
                let d = RawDescriptor::from(SplitDescriptor::new(
                    RX_BUF + u64::from(i) * 0x2000,
                    BUF_LEN,
                    VRING_DESC_F_WRITE as u16,
                    0,
                ));
                self.rxq.add_desc_chains(&[d], i).unwrap();
                self.rx_added += 1;
            }
            self.notify(0);
        }
        fn send(&mut self, hdr: Header, payload: &[u8]) {
            let i = self.tx_added;
            let addr = TX_BUF + u64::from(i) * 0x2000;
            self.mem
                .write_slice(&hdr.encode(), GuestAddress(addr))
                .unwrap();
            self.mem
                .write_slice(payload, GuestAddress(addr + HEADER_LEN as u64))
                .unwrap();
            self.send_raw(addr, (HEADER_LEN + payload.len()) as u32);
        }
        fn send_raw(&mut self, addr: u64, len: u32) {
            let i = self.tx_added;
            let d = RawDescriptor::from(SplitDescriptor::new(addr, len, 0, 0));
            self.txq.add_desc_chains(&[d], i).unwrap();
            self.tx_added += 1;
            self.notify(1);
        }
        /// Runs the event loop until it has been idle for 50 ms (all events handled).
        fn step(&mut self) {
            while self.events.run_with_timeout(50).unwrap() > 0 {}
        }
        /// Packets the device put on RX since the last call.
        fn received(&mut self) -> Vec<(Header, Vec<u8>)> {
            let mut out = Vec::new();
            let used = self.rxq.used().idx().load();
            while self.rx_seen != used {
                let elem = self
                    .rxq
                    .used()
                    .ring()
                    .ref_at(self.rx_seen as usize % 64)
                    .unwrap()
                    .load();
                let addr = RX_BUF + u64::from(elem.id()) * 0x2000;
                let mut raw = [0u8; HEADER_LEN];
                self.mem.read_slice(&mut raw, GuestAddress(addr)).unwrap();
                let hdr = Header::decode(&raw);
                let mut payload = vec![0u8; hdr.len as usize];
                self.mem
                    .read_slice(&mut payload, GuestAddress(addr + HEADER_LEN as u64))
                    .unwrap();
                assert_eq!(elem.len(), HEADER_LEN as u32 + hdr.len);
                out.push((hdr, payload));
                self.rx_seen += 1;
            }
            out
        }
    }

    fn guest_hdr(src_port: u32, dst_port: u32, op: u16) -> Header {
        Header {
            src_cid: CID,
            dst_cid: HOST_CID,
            src_port,
            dst_port,
            len: 0,
            kind: TYPE_STREAM,
            op,
            flags: 0,
            buf_alloc: 64 << 10,
            fwd_cnt: 0,
        }
    }

    fn read_line(s: &mut UnixStream) -> String {
        let mut line = Vec::new();
        let mut b = [0u8];
        while s.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
            line.push(b[0]);
        }
        String::from_utf8(line).unwrap()
    }

    #[test]
    fn host_initiated_connection_carries_data_both_ways() {
        let mut r = rig();
        r.add_rx_buffers(8);
        let mut host = UnixStream::connect(r.path()).unwrap();
        host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        host.write_all(b"CONNECT 1234\n").unwrap();
        r.step();
        let pkts = r.received();
        assert_eq!(pkts.len(), 1);
        let req = pkts[0].0;
        assert_eq!(
            (req.op, req.dst_port, req.dst_cid, req.src_cid),
            (OP_REQUEST, 1234, CID, HOST_CID)
        );
        let local = req.src_port;
        assert!(local >= 1024);
        r.send(guest_hdr(1234, local, OP_RESPONSE), &[]);
        r.step();
        assert_eq!(read_line(&mut host), format!("OK {local}"));
        host.write_all(b"ping").unwrap();
        r.step();
        let pkts = r.received();
        assert_eq!(pkts.len(), 1);
        assert_eq!((pkts[0].0.op, pkts[0].1.as_slice()), (OP_RW, &b"ping"[..]));
        assert_eq!(pkts[0].0.buf_alloc, CONN_BUF_ALLOC);
        let mut h = guest_hdr(1234, local, OP_RW);
        h.len = 4;
        r.send(h, b"pong");
        r.step();
        let mut got = [0u8; 4];
        host.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pong");
        assert!(r.irq.read().unwrap() >= 1, "guest interrupted");
        // Host half-closes: the guest is told the host sends no more, and can still send.
        host.shutdown(std::net::Shutdown::Write).unwrap();
        r.step();
        let pkts = r.received();
        let last = pkts.last().unwrap().0;
        assert_eq!((last.op, last.flags), (OP_SHUTDOWN, SHUTDOWN_SEND));
        let mut h = guest_hdr(1234, local, OP_RW);
        h.len = 3;
        r.send(h, b"bye");
        r.step();
        let mut got = [0u8; 3];
        host.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"bye");
        r.send(guest_hdr(1234, local, OP_RST), &[]);
        r.step();
        assert_eq!(r.connections(), 0);
    }

    #[test]
    fn guest_initiated_connection_reaches_path_port() {
        let mut r = rig();
        r.add_rx_buffers(8);
        let listener = UnixListener::bind(format!("{}_5000", r.path().display())).unwrap();
        r.send(guest_hdr(49152, 5000, OP_REQUEST), &[]);
        r.step();
        let pkts = r.received();
        assert_eq!(
            (pkts[0].0.op, pkts[0].0.src_port, pkts[0].0.dst_port),
            (OP_RESPONSE, 5000, 49152)
        );
        let (mut conn, _) = listener.accept().unwrap();
        // The host side may speak first: the request's buf_alloc is the guest's credit.
        conn.write_all(b"banner").unwrap();
        r.step();
        let pkts = r.received();
        assert_eq!(
            (pkts[0].0.op, pkts[0].1.as_slice()),
            (OP_RW, &b"banner"[..])
        );
        let mut h = guest_hdr(49152, 5000, OP_RW);
        h.len = 5;
        r.send(h, b"hello");
        r.step();
        let mut got = [0u8; 5];
        conn.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        // Nobody listens on port 6000: the guest gets RST.
        r.send(guest_hdr(49153, 6000, OP_REQUEST), &[]);
        r.step();
        let pkts = r.received();
        assert_eq!((pkts[0].0.op, pkts[0].0.dst_port), (OP_RST, 49153));
        // Full shutdown from the guest: the host side sees EOF, the guest gets RST.
        let mut h = guest_hdr(49152, 5000, OP_SHUTDOWN);
        h.flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
        r.send(h, &[]);
        r.step();
        assert_eq!(r.received()[0].0.op, OP_RST);
        let mut rest = Vec::new();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        conn.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }

    #[test]
    fn guest_credit_limits_what_the_host_sends() {
        let mut r = rig();
        r.add_rx_buffers(8);
        let mut host = UnixStream::connect(r.path()).unwrap();
        host.write_all(b"CONNECT 80\n").unwrap();
        r.step();
        let local = r.received()[0].0.src_port;
        let mut resp = guest_hdr(80, local, OP_RESPONSE);
        resp.buf_alloc = 8;
        r.send(resp, &[]);
        r.step();
        host.write_all(&[7u8; 100]).unwrap();
        r.step();
        let total: usize = r.received().iter().map(|(_, p)| p.len()).sum();
        assert_eq!(total, 8, "no more than the guest's buf_alloc");
        let mut upd = guest_hdr(80, local, OP_CREDIT_UPDATE);
        upd.buf_alloc = 8;
        upd.fwd_cnt = 8;
        r.send(upd, &[]);
        r.step();
        let total: usize = r.received().iter().map(|(_, p)| p.len()).sum();
        assert_eq!(total, 8, "another 8 after the guest consumed the first");
    }

    #[test]
    fn malformed_guest_packets_are_refused() {
        let mut r = rig();
        r.add_rx_buffers(8);
        // Shorter than a header: consumed, ignored.
        r.send_raw(TX_BUF + 0x10_0000, 10);
        // Claims more payload than the buffer holds: RST.
        let mut h = guest_hdr(1, 2, OP_RW);
        h.len = 1000;
        r.send(h, b"abc");
        // Wrong destination CID: RST.
        let mut h = guest_hdr(3, 4, OP_REQUEST);
        h.dst_cid = 7;
        r.send(h, &[]);
        // Data on a connection that does not exist: RST.
        let mut h = guest_hdr(5, 6, OP_RW);
        h.len = 1;
        r.send(h, b"x");
        // Buffer outside guest memory: consumed, ignored.
        r.send_raw(0x4000_0000, 64);
        r.step();
        assert_eq!(r.txq.used().idx().load(), 5, "every TX chain returned");
        let ops: Vec<(u16, u32)> = r
            .received()
            .iter()
            .map(|(h, _)| (h.op, h.dst_port))
            .collect();
        assert_eq!(ops, vec![(OP_RST, 1), (OP_RST, 3), (OP_RST, 5)]);
        assert_eq!(r.connections(), 0);
    }

    #[test]
    fn bad_connect_lines_are_dropped() {
        let mut r = rig();
        for line in [&b"HELLO 5\n"[..], b"CONNECT x\n", &[b'A'; 40]] {
            let mut host = UnixStream::connect(r.path()).unwrap();
            host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            host.write_all(line).unwrap();
            r.step();
            let mut buf = Vec::new();
            match host.read_to_end(&mut buf) {
                Ok(_) => assert!(buf.is_empty(), "closed without a reply"),
                // Closing with unread bytes resets the connection: also "no reply".
                Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
            }
        }
        assert_eq!(r.connections(), 0);
    }

    #[test]
    fn socket_file_is_removed_and_existing_path_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = VsockConfig {
            uds_path: dir.path().join("s"),
            guest_cid: 3,
        };
        let made = Vsock::new(&config).unwrap();
        assert!(Vsock::new(&config).is_err(), "path in use");
        drop(made);
        assert!(!config.uds_path.exists(), "socket removed");
    }

    /// A host connection that never sends its CONNECT line is dropped when the deadline timer
    /// fires: the loop sleeps until then (no periodic wake-up) and still meets the deadline.
    #[test]
    fn silent_host_connection_is_dropped_at_its_deadline() {
        let mut r = rig();
        let mut host = UnixStream::connect(r.path()).unwrap();
        r.step();
        assert_eq!(r.connections(), 1, "handshake pending");
        let start = std::time::Instant::now();
        // One blocking wait: only the deadline timer can end it.
        let woken = r.events.run_with_timeout(10_000).unwrap();
        let waited = start.elapsed();
        assert!(woken > 0, "the timer woke the loop");
        assert!(
            waited + Duration::from_millis(200) >= muxer::HANDSHAKE_TIMEOUT,
            "woke after {waited:?}, before the deadline"
        );
        assert_eq!(r.connections(), 0);
        host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        assert_eq!(host.read_to_end(&mut buf).unwrap(), 0, "closed, no reply");
    }

    /// A guest connecting to a host socket whose accept backlog is full gets RST at once;
    /// the event loop does not block in connect(2) (issue 10).
    #[test]
    fn guest_connect_to_a_full_backlog_is_refused_without_blocking() {
        use std::os::fd::AsRawFd;
        let mut r = rig();
        r.add_rx_buffers(8);
        let path = format!("{}_7000", r.path().display());
        // A listener with backlog 0 that never accepts: one pending connection fills it.
        let listener = UnixListener::bind(&path).unwrap();
        // SAFETY: listen(2) again on our own socket, with a smaller backlog.
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
        let _first = UnixStream::connect(&path).unwrap();
        r.send(guest_hdr(49152, 7000, OP_REQUEST), &[]);
        let start = std::time::Instant::now();
        r.step();
        assert!(start.elapsed() < Duration::from_secs(5), "the loop blocked");
        let pkts = r.received();
        assert_eq!((pkts[0].0.op, pkts[0].0.dst_port), (OP_RST, 49152));
        assert_eq!(r.connections(), 0);
        drop(listener);
    }
}
