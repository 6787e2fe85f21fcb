//! `vsock_muxer`: a hostile guest's packets and a host's Unix-socket clients, interleaved,
//! through the vsock device's host side ([`Muxer`]), as its event loop drives it.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::RawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::tempdir::TempDir;

use super::guest::{self, Desc, GuestQueue, Input, F_NEXT, F_WRITE};
use crate::devices::virtio::vsock::muxer::{ActiveQueues, Muxer, MAX_CONNECTIONS, MAX_PKT_PAYLOAD};
use crate::devices::virtio::vsock::packet::*;
use crate::devices::virtio::Interrupt;

const GUEST_CID: u64 = 3;
const QUEUE: u16 = 64;
/// Host ports with a listener (guest connections to others are refused).
const HOST_PORTS: [u32; 2] = [52, 1024];
/// RX buffers live here, TX packets there.
const RX_BUFFERS: u64 = 0x2_0000;
const TX_BUFFERS: u64 = 0x4_0000;
/// Most bytes a host client writes at once.
const HOST_WRITE: usize = 4096;

/// The guest's view of one connection (key: guest port, host port), to check that the host
/// never sends more than the guest's credit allows.
#[derive(Default)]
struct GuestConn {
    buf_alloc: u32,
    /// Bytes received from the host on this connection.
    received: u32,
    /// Bytes the guest has consumed (its fwd_cnt).
    consumed: u32,
    /// Packets went out with values the harness does not control: no credit check.
    tainted: bool,
    /// Packets were sent since the last reset.
    spoke: bool,
}

struct Rig {
    mem: GuestMemoryMmap,
    rx: GuestQueue,
    tx: GuestQueue,
    queues: ActiveQueues,
    muxer: Muxer,
    listeners: Vec<UnixListener>,
    clients: Vec<UnixStream>,
    conns: HashMap<(u32, u32), GuestConn>,
    /// RX heads offered and not yet used, with their buffer sizes.
    rx_pending: HashMap<u16, Vec<(u64, u32)>>,
    rx_next: u16,
    delivered: usize,
    _dir: TempDir,
}

/// Input: a sequence of operations (guest sends a packet, host client connects, writes or
/// closes, guest offers receive buffers, the muxer services its sockets, the guest
/// consumes data). After each step: every packet the guest receives is addressed to it,
/// fits its buffer and is reported with its exact length; data never exceeds the guest's
/// credit; connections stay within their limit. Returns the packets delivered.
pub fn vsock_muxer(data: &[u8]) -> usize {
    let mut input = Input::new(data);
    let mut rig = Rig::new();
    let mut steps = 0;
    while !input.is_empty() && steps < 64 {
        steps += 1;
        match input.u8() % 8 {
            0 | 1 => rig.guest_sends(&mut input),
            2 => rig.client_connects(&mut input),
            3 => rig.client_writes(&mut input),
            4 => rig.client_closes(&mut input),
            5 => rig.guest_receives(&mut input),
            6 => {
                rig.muxer.service_host_side();
                rig.muxer.flush_writable(&all_fds());
            }
            _ => rig.guest_consumes(&mut input),
        }
        rig.host_side();
        assert!(
            rig.muxer.connection_count() <= MAX_CONNECTIONS,
            "{} connections",
            rig.muxer.connection_count()
        );
    }
    // Whatever is queued for the guest still arrives well-formed.
    rig.offer_rx(8, 4096);
    rig.process_rx();
    rig.delivered
}

impl Rig {
    fn new() -> Rig {
        let base = std::env::var_os("HULL_FUZZ_SCRATCH")
            .map_or_else(std::env::temp_dir, std::path::PathBuf::from);
        let dir = TempDir::new_in(&base).expect("scratch dir");
        let uds = dir.as_path().join("v.sock");
        let muxer = Muxer::bind(&uds, GUEST_CID).expect("bind the vsock socket");
        let listeners = HOST_PORTS
            .iter()
            .map(|p| {
                let mut path = uds.clone().into_os_string();
                path.push(format!("_{p}"));
                let l = UnixListener::bind(path).expect("bind a host port");
                l.set_nonblocking(true).expect("non-blocking listener");
                l
            })
            .collect();
        let mem = guest::memory();
        let rx = GuestQueue::new(&mem, 0, QUEUE);
        let tx = GuestQueue::new(&mem, 1, QUEUE);
        let queues = ActiveQueues {
            mem: mem.clone(),
            rx: rx.device_queue(&mem),
            tx: tx.device_queue(&mem),
            interrupt: Arc::new(Interrupt::new(
                EventFd::new(libc::EFD_NONBLOCK).expect("eventfd"),
            )),
        };
        Rig {
            mem,
            rx,
            tx,
            queues,
            muxer,
            listeners,
            clients: Vec::new(),
            conns: HashMap::new(),
            rx_pending: HashMap::new(),
            rx_next: 0,
            delivered: 0,
            _dir: dir,
        }
    }

    /// The guest queues one packet on TX and the device processes it.
    fn guest_sends(&mut self, input: &mut Input<'_>) {
        let shape = input.u8();
        let fixed = shape & 0x80 != 0;
        let mut raw = [0u8; HEADER_LEN];
        raw.copy_from_slice(&pad(input.bytes(HEADER_LEN), HEADER_LEN));
        let mut hdr = Header::decode(&raw);
        let payload_len = match input.u8() {
            0xff => usize::from(input.u16()),
            n => usize::from(n),
        };
        let payload = pad(input.bytes(payload_len), payload_len);
        if fixed {
            // A well-behaved guest's addressing and credit, so the fuzzer reaches the
            // connection logic; the rest (ports, op, flags, length) stays as fuzzed.
            hdr.src_cid = GUEST_CID;
            hdr.dst_cid = HOST_CID;
            hdr.kind = TYPE_STREAM;
            hdr.op = 1 + hdr.op % 7;
            if shape & 0x40 != 0 {
                hdr.dst_port = HOST_PORTS[usize::from(shape & 1)];
            }
            if hdr.op == OP_RW || shape & 0x20 == 0 {
                hdr.len = payload.len() as u32;
            }
            let key = (hdr.src_port, hdr.dst_port);
            let conn = self.conns.entry(key).or_default();
            if hdr.op == OP_REQUEST {
                // A new connection on this key starts from zero.
                *conn = GuestConn::default();
            }
            if conn.buf_alloc == 0 {
                conn.buf_alloc = 1 + u32::from(input.u16());
            }
            hdr.buf_alloc = conn.buf_alloc;
            hdr.fwd_cnt = conn.consumed;
            conn.spoke = true;
        } else {
            let conn = self.conns.entry((hdr.src_port, hdr.dst_port)).or_default();
            conn.tainted = true;
        }
        let bytes = [&hdr.encode()[..], &payload].concat();
        // Split the packet over one to three readable descriptors.
        let cut1 = usize::from(shape & 0x1f).min(bytes.len());
        let cut2 = (cut1 + usize::from(input.u8())).min(bytes.len());
        let parts = [&bytes[..cut1], &bytes[cut1..cut2], &bytes[cut2..]];
        let mut at = TX_BUFFERS;
        let used: Vec<&[u8]> = parts.into_iter().filter(|p| !p.is_empty()).collect();
        for (index, part) in (0u16..).zip(&used) {
            self.mem
                .write_slice(part, GuestAddress(at))
                .expect("TX buffer");
            let last = usize::from(index) + 1 == used.len();
            self.tx.set_desc(
                &self.mem,
                index,
                Desc {
                    addr: at,
                    len: part.len() as u32,
                    flags: if last { 0 } else { F_NEXT },
                    next: index + 1,
                },
            );
            at += part.len() as u64 + 16;
        }
        if used.is_empty() {
            return;
        }
        self.tx.push(&self.mem, 0);
        self.muxer.process_tx(&mut self.queues);
        let returned = self.tx.take_used(&self.mem);
        assert_eq!(
            returned,
            vec![(0, 0)],
            "a TX chain comes back at once, empty"
        );
        self.process_rx();
    }

    /// A host client connects and sends (mostly) a CONNECT line.
    fn client_connects(&mut self, input: &mut Input<'_>) {
        if self.clients.len() >= 16 {
            return;
        }
        let path = self._dir.as_path().join("v.sock");
        let Ok(mut c) = UnixStream::connect(&path) else {
            return;
        };
        let _ = c.set_nonblocking(true);
        let line = match input.u8() % 4 {
            0 => {
                let n = usize::from(input.u8() % 48);
                input.bytes(n).to_vec()
            }
            1 => format!("CONNECT {}\r\n", input.u32()).into_bytes(),
            _ => format!("CONNECT {}\n", 1024 + u32::from(input.u8() % 4)).into_bytes(),
        };
        let _ = c.write_all(&line);
        self.clients.push(c);
    }

    fn client_writes(&mut self, input: &mut Input<'_>) {
        let n = usize::from(input.u16()) % HOST_WRITE;
        let which = usize::from(input.u8());
        let data = pad(input.bytes(n), n);
        if let Some(c) = self.client(which) {
            let _ = c.write(&data);
        }
    }

    fn client_closes(&mut self, input: &mut Input<'_>) {
        let which = usize::from(input.u8());
        if self.clients.is_empty() {
            return;
        }
        let i = which % self.clients.len();
        if input.u8() & 1 == 0 {
            let _ = self.clients[i].shutdown(std::net::Shutdown::Write);
        } else {
            self.clients.swap_remove(i);
        }
    }

    fn client(&mut self, which: usize) -> Option<&mut UnixStream> {
        let n = self.clients.len();
        (n > 0).then(|| &mut self.clients[which % n])
    }

    /// The guest offers receive buffers and the device fills what it can.
    fn guest_receives(&mut self, input: &mut Input<'_>) {
        let count = 1 + input.u8() % 8;
        let size = match input.u8() % 4 {
            0 => u32::from(input.u8()),
            1 => HEADER_LEN as u32,
            _ => 64 + u32::from(input.u16() % 8192),
        };
        self.offer_rx(count, size);
        self.process_rx();
    }

    fn guest_consumes(&mut self, input: &mut Input<'_>) {
        let n = u32::from(input.u16());
        for conn in self.conns.values_mut() {
            let unread = conn.received.wrapping_sub(conn.consumed);
            conn.consumed = conn.consumed.wrapping_add(n.min(unread));
        }
    }

    /// Offers `count` RX buffers of `size` bytes (two descriptors each when large).
    fn offer_rx(&mut self, count: u8, size: u32) {
        for _ in 0..count {
            if self.rx_pending.len() >= usize::from(QUEUE / 2) {
                return;
            }
            let head = self.free_rx_head();
            let addr = RX_BUFFERS + u64::from(head) * 0x2000;
            let size = size.min(0x2000);
            let segments = if size > HEADER_LEN as u32 * 2 {
                vec![
                    (addr, HEADER_LEN as u32),
                    (addr + 0x1000, size - HEADER_LEN as u32),
                ]
            } else {
                vec![(addr, size)]
            };
            for (i, &(a, l)) in segments.iter().enumerate() {
                let index = head + i as u16;
                let last = i + 1 == segments.len();
                self.rx.set_desc(
                    &self.mem,
                    index,
                    Desc {
                        addr: a,
                        len: l,
                        flags: F_WRITE | if last { 0 } else { F_NEXT },
                        next: index + 1,
                    },
                );
            }
            self.rx_pending.insert(head, segments);
            self.rx.push(&self.mem, head);
        }
        self.muxer.rx_refilled();
    }

    /// An even descriptor index not in use (each buffer takes two).
    fn free_rx_head(&mut self) -> u16 {
        loop {
            let head = self.rx_next;
            self.rx_next = (self.rx_next + 2) % QUEUE;
            if !self.rx_pending.contains_key(&head) {
                return head;
            }
        }
    }

    /// Runs the device's RX side and checks every packet the guest got.
    fn process_rx(&mut self) {
        self.muxer.process_rx(&mut self.queues, &all_fds());
        for (id, len) in self.rx.take_used(&self.mem) {
            let head = u16::try_from(id).expect("a head index");
            let segments = self
                .rx_pending
                .remove(&head)
                .unwrap_or_else(|| panic!("RX buffer {head} used but never offered"));
            let room: u64 = segments.iter().map(|&(_, l)| u64::from(l)).sum();
            assert!(u64::from(len) <= room, "RX used {len} of {room} bytes");
            if len == 0 {
                continue;
            }
            let mut bytes = vec![0u8; len as usize];
            let mut done = 0;
            for &(a, l) in &segments {
                let n = (l as usize).min(bytes.len() - done);
                self.mem
                    .read_slice(&mut bytes[done..done + n], GuestAddress(a))
                    .expect("RX buffer");
                done += n;
            }
            assert!(bytes.len() >= HEADER_LEN, "RX packet of {len} bytes");
            let mut raw = [0u8; HEADER_LEN];
            raw.copy_from_slice(&bytes[..HEADER_LEN]);
            let hdr = Header::decode(&raw);
            self.delivered += 1;
            assert_eq!(
                (hdr.src_cid, hdr.dst_cid, hdr.kind),
                (HOST_CID, GUEST_CID, TYPE_STREAM),
                "{hdr:?}"
            );
            assert_eq!(
                len as usize,
                HEADER_LEN + hdr.len as usize,
                "used length and header length differ: {hdr:?}"
            );
            assert!(hdr.len as usize <= MAX_PKT_PAYLOAD);
            assert!(hdr.op == OP_RW || hdr.len == 0, "{hdr:?} carries data");
            let key = (hdr.dst_port, hdr.src_port);
            let conn = self.conns.entry(key).or_default();
            match hdr.op {
                OP_REQUEST => {
                    // A host-initiated connection: fresh counters, unless the guest already
                    // sent this key values the device may have taken.
                    let tainted = conn.tainted || conn.spoke;
                    *conn = GuestConn {
                        tainted,
                        ..GuestConn::default()
                    };
                }
                OP_RW => {
                    if !conn.tainted && conn.buf_alloc > 0 {
                        let in_flight = conn.received.wrapping_sub(conn.consumed);
                        let credit = conn.buf_alloc.saturating_sub(in_flight);
                        assert!(
                            hdr.len <= credit,
                            "{} bytes sent with {credit} bytes of credit ({key:?})",
                            hdr.len
                        );
                    }
                    conn.received = conn.received.wrapping_add(hdr.len);
                }
                _ => {}
            }
        }
    }

    /// The host's listeners accept what the device connected; clients drain what arrived.
    fn host_side(&mut self) {
        for l in &self.listeners {
            while let Ok((s, _)) = l.accept() {
                let _ = s.set_nonblocking(true);
                if self.clients.len() < 32 {
                    self.clients.push(s);
                }
            }
        }
        let mut buf = [0u8; 4096];
        for c in &mut self.clients {
            loop {
                match c.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
    }
}

/// `bytes` zero-padded to `n`.
fn pad(bytes: &[u8], n: usize) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.resize(n, 0);
    v
}

/// Every descriptor number this process might have open: the device's streams are its own,
/// so "readable" is everything (it reads without blocking).
fn all_fds() -> Vec<RawFd> {
    (0..1024).collect()
}
