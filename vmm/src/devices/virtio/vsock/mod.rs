//! virtio-vsock with its host side on Unix sockets (docs/vmm.md, "vsock host side").
//!
//! The device model (owned by the MMIO transport, called on vCPU threads) only records the
//! queues and kicks the event loop; the event loop thread owns all socket work and moves
//! packets between the virtqueues and the Unix streams through [`muxer::Muxer`].

pub mod muxer;
pub mod packet;

use std::os::unix::io::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::{read_config_bytes, Interrupt, VirtioDevice};
use crate::config::VsockConfig;
use crate::error::{Error, Result};
use crate::exit::ExitNotifier;
use muxer::{ActiveQueues, Muxer};

/// virtio device id of vsock.
pub const VIRTIO_ID_VSOCK: u32 = 19;
/// Queue size of rx, tx and event queues.
pub const QUEUE_SIZE: u16 = 256;
/// How often the event loop wakes without events (deadlines, exit flag).
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// State shared by the device model and the event loop.
pub struct VsockState {
    /// Queues, once the driver activated the device.
    pub active: Option<ActiveQueues>,
    /// The host side.
    pub muxer: Muxer,
}

/// The vsock device model.
pub struct Vsock {
    config_space: [u8; 8],
    state: Arc<Mutex<VsockState>>,
    kick: EventFd,
}

/// The event loop to start once the VM runs.
pub struct VsockEventLoop {
    state: Arc<Mutex<VsockState>>,
    kick: EventFd,
}

impl Vsock {
    /// Binds the host socket and creates the device and its (not yet running) event loop.
    pub fn new(config: &VsockConfig) -> Result<(Vsock, VsockEventLoop)> {
        let cid = u64::from(config.guest_cid);
        let muxer = Muxer::bind(&config.uds_path, cid).map_err(|e| {
            Error::Config(format!(
                "vsock: cannot listen on {}: {e}",
                config.uds_path.display()
            ))
        })?;
        let state = Arc::new(Mutex::new(VsockState {
            active: None,
            muxer,
        }));
        let kick = EventFd::new(libc::EFD_NONBLOCK)
            .map_err(|e| Error::Device(format!("vsock eventfd: {e}")))?;
        let kick2 = kick
            .try_clone()
            .map_err(|e| Error::Device(format!("vsock eventfd: {e}")))?;
        Ok((
            Vsock {
                config_space: cid.to_le_bytes(),
                state: state.clone(),
                kick,
            },
            VsockEventLoop { state, kick: kick2 },
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VsockState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config_space, offset, data);
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        queues: Vec<Queue>,
        interrupt: Arc<Interrupt>,
    ) -> Result<()> {
        let mut queues = queues.into_iter();
        let (Some(rx), Some(tx)) = (queues.next(), queues.next()) else {
            return Err(Error::Device("vsock: missing queues".into()));
        };
        if !rx.ready() || !tx.ready() {
            return Err(Error::Device("vsock: rx/tx queues not ready".into()));
        }
        self.lock().active = Some(ActiveQueues {
            mem,
            rx,
            tx,
            interrupt,
        });
        let _ = self.kick.write(1);
        Ok(())
    }

    fn queue_notify(&mut self, index: u32) {
        if index == 0 {
            self.lock().muxer.rx_refilled();
        }
        let _ = self.kick.write(1);
    }

    fn reset(&mut self) {
        let mut state = self.lock();
        state.active = None;
        state.muxer.reset();
    }
}

impl VsockState {
    /// One round of work after `poll` returned: `ready` lists (fd, revents).
    pub fn service(&mut self, ready: &[(i32, i16)]) {
        self.muxer.service_host_side();
        let readable: Vec<i32> = ready
            .iter()
            .filter(|(_, r)| r & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
            .map(|(fd, _)| *fd)
            .collect();
        let writable: Vec<i32> = ready
            .iter()
            .filter(|(_, r)| r & (libc::POLLOUT | libc::POLLERR) != 0)
            .map(|(fd, _)| *fd)
            .collect();
        self.muxer.flush_writable(&writable);
        let Some(q) = self.active.as_mut() else {
            return;
        };
        let tx_used = self.muxer.process_tx(q);
        let rx_used = self.muxer.process_rx(q, &readable);
        if tx_used || rx_used {
            q.interrupt.signal_used();
        }
    }

    /// Polls the muxer's fds plus `extra` for up to `timeout` and services the result.
    pub fn poll_and_service(
        state: &Mutex<VsockState>,
        extra: &EventFd,
        timeout: Duration,
    ) -> std::io::Result<()> {
        let interests = state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .muxer
            .interests();
        let mut fds: Vec<libc::pollfd> = interests
            .iter()
            .map(|i| libc::pollfd {
                fd: i.fd,
                events: i.events,
                revents: 0,
            })
            .collect();
        fds.push(libc::pollfd {
            fd: extra.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd of the given length.
        let n = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                timeout.as_millis() as i32,
            )
        };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        let _ = extra.read();
        let ready: Vec<(i32, i16)> = fds
            .iter()
            .filter(|p| p.revents != 0)
            .map(|p| (p.fd, p.revents))
            .collect();
        state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .service(&ready);
        Ok(())
    }
}

impl VsockEventLoop {
    /// Starts the event loop thread; it ends when `exit` is reported.
    pub fn spawn(self, exit: Arc<ExitNotifier>) -> Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("vsock".into())
            .spawn(move || {
                while !exit.is_done() {
                    if let Err(e) =
                        VsockState::poll_and_service(&self.state, &self.kick, POLL_INTERVAL)
                    {
                        exit.report(Err(Error::EventLoop(format!("vsock poll: {e}"))));
                        break;
                    }
                }
            })
            .map_err(|e| Error::Os {
                what: "spawning the vsock event loop",
                source: e,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::muxer::CONN_BUF_ALLOC;
    use super::packet::*;
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    const CID: u64 = 3;
    const RX_BUF: u64 = 0x10_0000;
    const TX_BUF: u64 = 0x20_0000;
    const BUF_LEN: u32 = 4096 + HEADER_LEN as u32;

    struct Rig {
        mem: &'static GuestMemoryMmap,
        rxq: MockSplitQueue<'static, GuestMemoryMmap>,
        txq: MockSplitQueue<'static, GuestMemoryMmap>,
        state: Arc<Mutex<VsockState>>,
        kick: EventFd,
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
        let (_device, event_loop) = Vsock::new(&config).unwrap();
        let rxq = MockSplitQueue::create(mem, GuestAddress(0x1_0000), 64);
        let txq = MockSplitQueue::create(mem, GuestAddress(0x3_0000), 64);
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        event_loop.state.lock().unwrap().active = Some(ActiveQueues {
            mem: mem.clone(),
            rx: rxq.create_queue().unwrap(),
            tx: txq.create_queue().unwrap(),
            interrupt: Arc::new(Interrupt::new(irq.try_clone().unwrap())),
        });
        Rig {
            mem,
            rxq,
            txq,
            state: event_loop.state,
            kick: event_loop.kick,
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
            self.state.lock().unwrap().muxer.rx_refilled();
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
        }
        fn step(&self) {
            for _ in 0..3 {
                VsockState::poll_and_service(&self.state, &self.kick, Duration::from_millis(20))
                    .unwrap();
            }
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
        assert_eq!(r.state.lock().unwrap().muxer.connection_count(), 0);
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
        assert_eq!(r.state.lock().unwrap().muxer.connection_count(), 0);
    }

    #[test]
    fn bad_connect_lines_are_dropped() {
        let r = rig();
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
        assert_eq!(r.state.lock().unwrap().muxer.connection_count(), 0);
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
}
