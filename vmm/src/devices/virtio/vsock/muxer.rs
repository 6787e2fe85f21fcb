//! The vsock host side: connections between guest vsock ports and host Unix sockets
//! (Firecracker's protocol, docs/vmm.md "vsock host side"), with credit-based flow control
//! and bounded buffers. Driven by the event loop; everything here is non-blocking (the
//! guest's connections to host sockets included), and it wakes only for its fds and for a
//! timerfd armed at the earliest handshake deadline.
//!
//! epoll registrations are kept in step with what each connection can do
//! ([`Muxer::sync_registrations`]); a stream is never closed while registered: closing moves
//! it to `closing`, and the sync pass deregisters it before dropping it (a closed fd's
//! number may come back at the next accept, and event-manager keys its table by fd).

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_manager::{EventOps, EventSet, Events};
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::timerfd::TimerFd;

use super::packet::*;
use crate::devices::virtio::chain::{self, Chain};
use crate::devices::virtio::Interrupt;

/// Receive buffer the VMM advertises per connection (guest → host bytes in flight).
pub const CONN_BUF_ALLOC: u32 = 256 << 10;
/// Most connections (established, connecting and handshaking together).
pub const MAX_CONNECTIONS: usize = 1024;
/// Longest "CONNECT <port>\n" line.
pub const MAX_CONNECT_LINE: usize = 32;
/// How long a host connection may take to send its CONNECT line, and the guest to answer
/// a connection request or a shutdown.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest payload the VMM accepts in one guest packet or puts in one packet to the guest.
pub const MAX_PKT_PAYLOAD: usize = 64 << 10;
/// Most control packets queued for the guest (beyond that the oldest are dropped).
const MAX_PENDING_CONTROL: usize = 4096;
/// First local port handed to host-initiated connections.
const FIRST_LOCAL_PORT: u32 = 1024;

/// The queues of an activated device.
pub struct ActiveQueues {
    /// Guest memory.
    pub mem: GuestMemoryMmap,
    /// Queue 0: device → guest.
    pub rx: Queue,
    /// Queue 1: guest → device.
    pub tx: Queue,
    /// The device's interrupt.
    pub interrupt: Arc<Interrupt>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnState {
    /// Host-initiated: REQUEST sent to the guest, waiting for RESPONSE.
    Connecting(Instant),
    /// Data flows (in the directions not shut down).
    Established,
}

struct Conn {
    stream: UnixStream,
    state: ConnState,
    /// Bytes from the guest not yet written to the Unix stream.
    to_host: VecDeque<u8>,
    /// Bytes ever written to the Unix stream (our fwd_cnt).
    fwd_cnt: u32,
    /// fwd_cnt last told to the guest.
    fwd_cnt_told: u32,
    /// Bytes ever sent to the guest.
    tx_cnt: u32,
    /// The guest's receive buffer and consumption.
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    /// The guest will send nothing more: shut the Unix write side once drained.
    peer_done_sending: bool,
    /// The Unix side reached EOF.
    host_eof: bool,
}

impl Conn {
    fn new(stream: UnixStream, state: ConnState) -> Conn {
        Conn {
            stream,
            state,
            to_host: VecDeque::new(),
            fwd_cnt: 0,
            fwd_cnt_told: 0,
            tx_cnt: 0,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            peer_done_sending: false,
            host_eof: false,
        }
    }

    /// Bytes the guest can still take.
    fn peer_credit(&self) -> u32 {
        let in_flight = self.tx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// Writes buffered guest data to the Unix stream; false if the stream failed.
    fn flush_to_host(&mut self) -> bool {
        while !self.to_host.is_empty() {
            let (front, _) = self.to_host.as_slices();
            match self.stream.write(front) {
                Ok(0) => return false,
                Ok(n) => {
                    self.to_host.drain(..n);
                    self.fwd_cnt = self.fwd_cnt.wrapping_add(n as u32);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if self.peer_done_sending {
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
        }
        true
    }
}

/// (local port, peer port): local is the host-side port, peer the guest's.
type ConnKey = (u32, u32);

struct Handshake {
    stream: UnixStream,
    line: Vec<u8>,
    deadline: Instant,
}

/// The host side of the vsock device.
pub struct Muxer {
    guest_cid: u64,
    uds_path: PathBuf,
    listener: UnixListener,
    handshakes: Vec<Handshake>,
    conns: HashMap<ConnKey, Conn>,
    control: VecDeque<Header>,
    next_local_port: u32,
    rx_starved: bool,
    /// Fires at the earliest handshake deadline.
    timer: TimerFd,
    timer_armed_for: Option<Instant>,
    /// What each stream fd is registered for in the event loop.
    registered: HashMap<RawFd, EventSet>,
    /// Streams closed since the last sync; dropped once deregistered.
    closing: Vec<UnixStream>,
}

impl Muxer {
    /// Binds the host Unix socket at `uds_path` (which must not exist).
    pub fn bind(uds_path: &Path, guest_cid: u64) -> std::io::Result<Muxer> {
        let listener = UnixListener::bind(uds_path)?;
        listener.set_nonblocking(true)?;
        let timer = TimerFd::new().map_err(std::io::Error::from)?;
        Ok(Muxer {
            timer,
            timer_armed_for: None,
            registered: HashMap::new(),
            closing: Vec::new(),
            guest_cid,
            uds_path: uds_path.to_path_buf(),
            listener,
            handshakes: Vec::new(),
            conns: HashMap::new(),
            control: VecDeque::new(),
            next_local_port: FIRST_LOCAL_PORT,
            rx_starved: false,
        })
    }

    /// Number of live connections (for tests and limits).
    pub fn connection_count(&self) -> usize {
        self.conns.len() + self.handshakes.len()
    }

    /// Drops every connection (device reset).
    pub fn reset(&mut self) {
        let conns: Vec<ConnKey> = self.conns.keys().copied().collect();
        for key in conns {
            self.close(key);
        }
        self.closing
            .extend(self.handshakes.drain(..).map(|h| h.stream));
        self.control.clear();
        self.rx_starved = false;
    }

    /// Ends a connection: its stream is dropped at the next sync, after deregistration.
    fn close(&mut self, key: ConnKey) {
        if let Some(conn) = self.conns.remove(&key) {
            self.closing.push(conn.stream);
        }
    }

    /// Registers the listener and the deadline timer (the subscriber's `init`).
    pub fn init(&mut self, ops: &mut EventOps) {
        for (fd, what) in [
            (self.listener.as_raw_fd(), "vsock listener"),
            (self.timer.as_raw_fd(), "vsock timer"),
        ] {
            if let Err(e) = ops.add(Events::new_raw(fd, EventSet::IN)) {
                tracing::error!("cannot watch the {what}: {e}");
            }
        }
    }

    /// Whether `fd` is the deadline timer (whose expiry is then consumed).
    pub fn timer_fired(&mut self, fd: RawFd) -> bool {
        if fd != self.timer.as_raw_fd() {
            return false;
        }
        // Reading a non-blocking-ready timerfd returns at once: epoll said it expired.
        let _ = self.timer.wait();
        self.timer_armed_for = None;
        true
    }

    /// The guest added RX buffers: try sending again.
    pub fn rx_refilled(&mut self) {
        self.rx_starved = false;
    }

    fn header(&self, key: ConnKey, op: u16) -> Header {
        let fwd_cnt = self.conns.get(&key).map(|c| c.fwd_cnt).unwrap_or(0);
        make_header(self.guest_cid, key, op, fwd_cnt)
    }

    fn queue_control(&mut self, mut hdr: Header) {
        if self.control.len() >= MAX_PENDING_CONTROL {
            self.control.pop_front();
        }
        if let Some(conn) = self.conns.get_mut(&(hdr.src_port, hdr.dst_port)) {
            hdr.fwd_cnt = conn.fwd_cnt;
            conn.fwd_cnt_told = conn.fwd_cnt;
        }
        self.control.push_back(hdr);
    }

    fn reset_to_guest(&mut self, local: u32, peer: u32) {
        let hdr = self.header((local, peer), OP_RST);
        self.close((local, peer));
        self.queue_control(hdr);
    }

    /// What each live stream should be watched for now.
    fn wanted(&self) -> HashMap<RawFd, EventSet> {
        let mut want = HashMap::with_capacity(self.handshakes.len() + self.conns.len());
        for h in &self.handshakes {
            want.insert(h.stream.as_raw_fd(), EventSet::IN);
        }
        for conn in self.conns.values() {
            let mut events = EventSet::empty();
            if conn.state == ConnState::Established
                && !conn.host_eof
                && !self.rx_starved
                && conn.peer_credit() > 0
            {
                events |= EventSet::IN;
            }
            if !conn.to_host.is_empty() {
                events |= EventSet::OUT;
            }
            // Nothing wanted: not registered at all (epoll would still report hang-ups,
            // and a hung-up stream nobody reads would wake the loop forever).
            if !events.is_empty() {
                want.insert(conn.stream.as_raw_fd(), events);
            }
        }
        want
    }

    /// Brings the event loop's registrations in line with [`Muxer::wanted`], drops closed
    /// streams once they are deregistered, and arms the timer for the earliest deadline.
    pub fn sync_registrations(&mut self, ops: &mut EventOps) {
        let want = self.wanted();
        let stale: Vec<RawFd> = self
            .registered
            .keys()
            .filter(|fd| !want.contains_key(fd))
            .copied()
            .collect();
        for fd in stale {
            if let Some(set) = self.registered.remove(&fd) {
                if let Err(e) = ops.remove(Events::new_raw(fd, set)) {
                    tracing::warn!("vsock: cannot stop watching fd {fd}: {e}");
                }
            }
        }
        // Every fd of a closed stream is deregistered now: safe to close them.
        self.closing.clear();
        for (fd, set) in want {
            let result = match self.registered.get(&fd) {
                Some(old) if *old == set => continue,
                Some(_) => ops.modify(Events::new_raw(fd, set)),
                None => ops.add(Events::new_raw(fd, set)),
            };
            match result {
                Ok(()) => {
                    self.registered.insert(fd, set);
                }
                Err(e) => tracing::warn!("vsock: cannot watch fd {fd}: {e}"),
            }
        }
        self.arm_timer();
    }

    /// Arms the timerfd for the earliest handshake or connection deadline (or disarms it).
    fn arm_timer(&mut self) {
        let earliest = self
            .handshakes
            .iter()
            .map(|h| h.deadline)
            .chain(self.conns.values().filter_map(|c| match c.state {
                ConnState::Connecting(d) => Some(d),
                ConnState::Established => None,
            }))
            .min();
        if earliest == self.timer_armed_for {
            return;
        }
        let result = match earliest {
            // A zero duration would disarm the timer: at least 1 ns.
            Some(at) => self.timer.reset(
                at.saturating_duration_since(Instant::now())
                    .max(Duration::from_nanos(1)),
                None,
            ),
            None => self.timer.clear(),
        };
        match result {
            Ok(()) => self.timer_armed_for = earliest,
            Err(e) => tracing::warn!("vsock: cannot arm the deadline timer: {e}"),
        }
    }

    /// Accepts host connections and reads their CONNECT lines; expires deadlines.
    pub fn service_host_side(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.connection_count() >= MAX_CONNECTIONS
                        || stream.set_nonblocking(true).is_err()
                    {
                        tracing::warn!("vsock: refusing a host connection (limit reached)");
                        continue;
                    }
                    self.handshakes.push(Handshake {
                        stream,
                        line: Vec::new(),
                        deadline: Instant::now() + HANDSHAKE_TIMEOUT,
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!("vsock: accept failed: {e}");
                    break;
                }
            }
        }
        let now = Instant::now();
        let mut i = 0;
        while i < self.handshakes.len() {
            match read_connect_line(&mut self.handshakes[i]) {
                LineState::Pending if now < self.handshakes[i].deadline => i += 1,
                LineState::Pending | LineState::Invalid => {
                    tracing::debug!(
                        "vsock: dropping a host connection without a valid CONNECT line"
                    );
                    let hs = self.handshakes.swap_remove(i);
                    self.closing.push(hs.stream);
                }
                LineState::Port(port) => {
                    let hs = self.handshakes.swap_remove(i);
                    self.start_host_connection(hs.stream, port);
                }
            }
        }
        // Connections the guest never answered.
        let expired: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.state, ConnState::Connecting(d) if now >= d))
            .map(|(k, _)| *k)
            .collect();
        for (local, peer) in expired {
            self.reset_to_guest(local, peer);
        }
    }

    fn allocate_local_port(&mut self) -> Option<u32> {
        for _ in 0..=MAX_CONNECTIONS {
            let port = self.next_local_port;
            self.next_local_port = if port == u32::MAX - 1 {
                FIRST_LOCAL_PORT
            } else {
                port + 1
            };
            if !self.conns.keys().any(|(local, _)| *local == port) {
                return Some(port);
            }
        }
        None
    }

    fn start_host_connection(&mut self, stream: UnixStream, guest_port: u32) {
        let Some(local) = self.allocate_local_port() else {
            self.closing.push(stream);
            return;
        };
        let key = (local, guest_port);
        self.conns.insert(
            key,
            Conn::new(
                stream,
                ConnState::Connecting(Instant::now() + HANDSHAKE_TIMEOUT),
            ),
        );
        let hdr = self.header(key, OP_REQUEST);
        self.queue_control(hdr);
    }

    /// Handles one packet from the guest (header already checked for size).
    fn handle_guest_packet(&mut self, hdr: Header, payload: &[u8]) {
        if hdr.dst_cid != HOST_CID || hdr.src_cid != self.guest_cid || hdr.kind != TYPE_STREAM {
            tracing::debug!(?hdr, "vsock: packet with bad addressing or type");
            if hdr.op != OP_RST && hdr.src_cid == self.guest_cid {
                self.queue_control(Header {
                    src_cid: HOST_CID,
                    dst_cid: self.guest_cid,
                    src_port: hdr.dst_port,
                    dst_port: hdr.src_port,
                    kind: TYPE_STREAM,
                    op: OP_RST,
                    ..Default::default()
                });
            }
            return;
        }
        let key = (hdr.dst_port, hdr.src_port);
        if let Some(conn) = self.conns.get_mut(&key) {
            conn.peer_buf_alloc = hdr.buf_alloc;
            conn.peer_fwd_cnt = hdr.fwd_cnt;
        }
        match hdr.op {
            OP_REQUEST => self.guest_connect(key, &hdr),
            OP_RESPONSE => match self.conns.get_mut(&key) {
                Some(conn) if matches!(conn.state, ConnState::Connecting(_)) => {
                    conn.state = ConnState::Established;
                    // The "OK" line is not guest data: it bypasses the buffer and fwd_cnt.
                    // A fresh socket's send buffer always has room for it.
                    let ok = format!("OK {}\n", key.0);
                    if conn.stream.write_all(ok.as_bytes()).is_err() {
                        self.reset_to_guest(key.0, key.1);
                    }
                }
                _ => self.reset_to_guest(key.0, key.1),
            },
            OP_RW => {
                let Some(conn) = self.conns.get_mut(&key) else {
                    self.reset_to_guest(key.0, key.1);
                    return;
                };
                let buffered = conn.to_host.len() as u64;
                if conn.state != ConnState::Established
                    || buffered + payload.len() as u64 > u64::from(CONN_BUF_ALLOC)
                {
                    tracing::debug!("vsock: guest overran its credit or sent on a closed stream");
                    self.reset_to_guest(key.0, key.1);
                    return;
                }
                conn.to_host.extend(payload);
                if !conn.flush_to_host() {
                    self.reset_to_guest(key.0, key.1);
                }
            }
            OP_SHUTDOWN => {
                let both = SHUTDOWN_RCV | SHUTDOWN_SEND;
                let Some(conn) = self.conns.get_mut(&key) else {
                    self.reset_to_guest(key.0, key.1);
                    return;
                };
                if hdr.flags & SHUTDOWN_SEND != 0 {
                    conn.peer_done_sending = true;
                }
                if hdr.flags & both == both {
                    // Full close: deliver what we can, then RST completes the guest's close.
                    let _ = conn.flush_to_host();
                    self.reset_to_guest(key.0, key.1);
                } else if !conn.flush_to_host() {
                    self.reset_to_guest(key.0, key.1);
                }
            }
            OP_RST => self.close(key),
            OP_CREDIT_UPDATE => {}
            OP_CREDIT_REQUEST => {
                if self.conns.contains_key(&key) {
                    let hdr = self.header(key, OP_CREDIT_UPDATE);
                    self.queue_control(hdr);
                } else {
                    self.reset_to_guest(key.0, key.1);
                }
            }
            _ => self.reset_to_guest(key.0, key.1),
        }
    }

    /// The guest connects to host port `key.0`: connect to the Unix socket `PATH_<port>`.
    fn guest_connect(&mut self, key: ConnKey, request: &Header) {
        if self.conns.contains_key(&key) || self.connection_count() >= MAX_CONNECTIONS {
            self.reset_to_guest(key.0, key.1);
            return;
        }
        let mut path = self.uds_path.clone().into_os_string();
        path.push(format!("_{}", key.0));
        match connect_nonblocking(&path) {
            Ok(stream) => {
                let mut conn = Conn::new(stream, ConnState::Established);
                // The request carries the guest's receive buffer: the host may speak first.
                conn.peer_buf_alloc = request.buf_alloc;
                conn.peer_fwd_cnt = request.fwd_cnt;
                self.conns.insert(key, conn);
                let hdr = self.header(key, OP_RESPONSE);
                self.queue_control(hdr);
            }
            Err(e) => {
                tracing::debug!(path = ?path, "vsock: guest connection refused: {e}");
                self.reset_to_guest(key.0, key.1);
            }
        }
    }

    /// Consumes every packet the guest queued on TX; returns whether any was used.
    pub fn process_tx(&mut self, q: &mut ActiveQueues) -> bool {
        let mut used = false;
        let mut payload = Vec::new();
        while let Some(desc_chain) = q.tx.pop_descriptor_chain(&q.mem) {
            let head = desc_chain.head_index();
            match Chain::read(&q.tx, head, &q.mem) {
                Ok(c) if c.readable_len() >= HEADER_LEN as u64 => {
                    let mut raw = [0u8; HEADER_LEN];
                    if chain::read_into(&q.mem, &c.readable, &mut raw) == HEADER_LEN {
                        let hdr = Header::decode(&raw);
                        let len = hdr.len as usize;
                        let fits = len <= MAX_PKT_PAYLOAD
                            && len as u64 <= c.readable_len() - HEADER_LEN as u64
                            && (hdr.op == OP_RW || len == 0);
                        if fits {
                            payload.resize(len, 0);
                            let body = chain::sub_range(&c.readable, HEADER_LEN as u64, len as u64);
                            if chain::read_into(&q.mem, &body, &mut payload) == len {
                                self.handle_guest_packet(hdr, &payload);
                            }
                        } else {
                            tracing::debug!(?hdr, "vsock: malformed packet length");
                            self.reset_to_guest(hdr.dst_port, hdr.src_port);
                        }
                    }
                }
                Ok(_) => tracing::debug!("vsock: TX chain shorter than a header"),
                Err(e) => tracing::debug!("vsock: refusing TX chain: {e}"),
            }
            if let Err(e) = q.tx.add_used(&q.mem, head, 0) {
                tracing::warn!("vsock: cannot return TX descriptor: {e}");
            }
            used = true;
        }
        used
    }

    /// Fills RX buffers with control packets then data from readable Unix streams; returns
    /// whether any buffer was used.
    pub fn process_rx(&mut self, q: &mut ActiveQueues, readable: &[RawFd]) -> bool {
        let mut used = false;
        while let Some(hdr) = self.control.front().copied() {
            if !self.put_rx(q, hdr, &[]) {
                return used;
            }
            self.control.pop_front();
            used = true;
        }
        // Credit updates for connections whose consumption the guest has not heard of.
        let stale: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, c)| c.fwd_cnt.wrapping_sub(c.fwd_cnt_told) >= CONN_BUF_ALLOC / 4)
            .map(|(k, _)| *k)
            .collect();
        for key in stale {
            let hdr = self.header(key, OP_CREDIT_UPDATE);
            if !self.put_rx(q, hdr, &[]) {
                return used;
            }
            if let Some(conn) = self.conns.get_mut(&key) {
                conn.fwd_cnt_told = conn.fwd_cnt;
            }
            used = true;
        }
        let keys: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, c)| readable.contains(&c.stream.as_raw_fd()))
            .map(|(k, _)| *k)
            .collect();
        let mut buf = vec![0u8; MAX_PKT_PAYLOAD];
        for key in keys {
            while let Some(conn) = self.conns.get_mut(&key) {
                if conn.state != ConnState::Established || conn.host_eof {
                    break;
                }
                let credit = conn.peer_credit() as usize;
                if credit == 0 {
                    break;
                }
                let Some(desc_chain) = q.rx.pop_descriptor_chain(&q.mem) else {
                    self.rx_starved = true;
                    return used;
                };
                let head = desc_chain.head_index();
                let rx_chain = match Chain::read(&q.rx, head, &q.mem) {
                    Ok(c) if c.readable.is_empty() && c.writable_len() > HEADER_LEN as u64 => c,
                    _ => {
                        // Unusable buffer: give it back empty.
                        let _ = q.rx.add_used(&q.mem, head, 0);
                        used = true;
                        continue;
                    }
                };
                let room = (rx_chain.writable_len() as usize - HEADER_LEN).min(MAX_PKT_PAYLOAD);
                let want = room.min(credit);
                let (hdr, n) = match conn.stream.read(&mut buf[..want]) {
                    Ok(0) => {
                        // The host will send nothing more; it may still read (half close).
                        // The guest's full close (SHUTDOWN both / RST) ends the connection.
                        conn.host_eof = true;
                        let mut h = make_header(self.guest_cid, key, OP_SHUTDOWN, conn.fwd_cnt);
                        h.flags = SHUTDOWN_SEND;
                        (h, 0)
                    }
                    Ok(n) => {
                        conn.tx_cnt = conn.tx_cnt.wrapping_add(n as u32);
                        conn.fwd_cnt_told = conn.fwd_cnt;
                        let mut h = make_header(self.guest_cid, key, OP_RW, conn.fwd_cnt);
                        h.len = n as u32;
                        (h, n)
                    }
                    Err(e)
                        if e.kind() == ErrorKind::WouldBlock
                            || e.kind() == ErrorKind::Interrupted =>
                    {
                        q.rx.go_to_previous_position();
                        break;
                    }
                    Err(_) => {
                        self.close(key);
                        (make_header(self.guest_cid, key, OP_RST, 0), 0)
                    }
                };
                write_rx_chain(&q.mem, &mut q.rx, &rx_chain, &hdr, &buf[..n]);
                used = true;
                if hdr.op != OP_RW {
                    break;
                }
            }
        }
        used
    }

    /// Writes one packet into the next RX buffer; false if none is available.
    fn put_rx(&mut self, q: &mut ActiveQueues, hdr: Header, payload: &[u8]) -> bool {
        loop {
            let Some(desc_chain) = q.rx.pop_descriptor_chain(&q.mem) else {
                self.rx_starved = true;
                return false;
            };
            let head = desc_chain.head_index();
            match Chain::read(&q.rx, head, &q.mem) {
                Ok(c)
                    if c.readable.is_empty()
                        && c.writable_len() >= (HEADER_LEN + payload.len()) as u64 =>
                {
                    write_rx_chain(&q.mem, &mut q.rx, &c, &hdr, payload);
                    return true;
                }
                _ => {
                    let _ = q.rx.add_used(&q.mem, head, 0);
                }
            }
        }
    }

    /// Writes buffered guest data to Unix streams that became writable.
    pub fn flush_writable(&mut self, writable: &[RawFd]) {
        let failed: Vec<ConnKey> = self
            .conns
            .iter_mut()
            .filter(|(_, c)| writable.contains(&c.stream.as_raw_fd()))
            .filter_map(|(k, c)| (!c.flush_to_host()).then_some(*k))
            .collect();
        for (local, peer) in failed {
            self.reset_to_guest(local, peer);
        }
    }
}

/// Connects to the Unix socket at `path` without blocking: a listener whose backlog is full
/// makes `connect` fail with EAGAIN at once instead of stalling the event loop (and so every
/// device) until the host side accepts.
fn connect_nonblocking(path: &OsStr) -> std::io::Result<UnixStream> {
    let bytes = path.as_bytes();
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid (empty) value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            "socket path too long",
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    // SAFETY: `addr` is a valid sockaddr_un and `len` does not exceed its size.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            std::ptr::addr_of!(addr).cast(),
            len as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(UnixStream::from(fd))
}

impl Drop for Muxer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.uds_path);
    }
}

fn make_header(guest_cid: u64, key: ConnKey, op: u16, fwd_cnt: u32) -> Header {
    Header {
        src_cid: HOST_CID,
        dst_cid: guest_cid,
        src_port: key.0,
        dst_port: key.1,
        len: 0,
        kind: TYPE_STREAM,
        op,
        flags: 0,
        buf_alloc: CONN_BUF_ALLOC,
        fwd_cnt,
    }
}

fn write_rx_chain(mem: &GuestMemoryMmap, rx: &mut Queue, c: &Chain, hdr: &Header, payload: &[u8]) {
    let header_room = chain::sub_range(&c.writable, 0, HEADER_LEN as u64);
    let body_room = chain::sub_range(&c.writable, HEADER_LEN as u64, payload.len() as u64);
    let written = if chain::write_from(mem, &header_room, &hdr.encode()) == HEADER_LEN
        && chain::write_from(mem, &body_room, payload) == payload.len()
    {
        (HEADER_LEN + payload.len()) as u32
    } else {
        0
    };
    if let Err(e) = rx.add_used(mem, c.head, written) {
        tracing::warn!("vsock: cannot return RX descriptor: {e}");
    }
}

enum LineState {
    Pending,
    Invalid,
    Port(u32),
}

/// Reads the CONNECT line one byte at a time, so no data after it is consumed.
fn read_connect_line(hs: &mut Handshake) -> LineState {
    let mut byte = [0u8; 1];
    loop {
        match hs.stream.read(&mut byte) {
            Ok(0) => return LineState::Invalid,
            Ok(_) if byte[0] == b'\n' => {
                let line = String::from_utf8_lossy(&hs.line);
                return match line.trim_end_matches('\r').strip_prefix("CONNECT ") {
                    Some(port) => port
                        .trim()
                        .parse::<u32>()
                        .map(LineState::Port)
                        .unwrap_or(LineState::Invalid),
                    None => LineState::Invalid,
                };
            }
            Ok(_) => {
                hs.line.push(byte[0]);
                if hs.line.len() > MAX_CONNECT_LINE {
                    return LineState::Invalid;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return LineState::Pending,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return LineState::Invalid,
        }
    }
}
