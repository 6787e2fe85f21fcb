//! A virtio-blk request, parsed once from a checked [`Chain`] into a typed [`Request`] or a
//! named [`RequestError`] (the idea of Firecracker's `Request::parse`). Nothing after the
//! parse looks at the descriptor table again.
//!
//! Layout (virtio 1.2, 5.2.6; any framing, VIRTIO_F_ANY_LAYOUT is implied by VERSION_1):
//! the first 16 device-readable bytes are the header (type u32, reserved u32, sector u64);
//! the last device-writable byte is the status; data is what lies between: the remaining
//! readable bytes for a write, the remaining writable bytes for a read or GET_ID.

use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::devices::virtio::chain::{self, Chain, ChainError, Segment};

/// Sector size.
pub const SECTOR_SIZE: u64 = 512;
/// Largest data transfer of one request (the driver is told SEG_MAX x SIZE_MAX below it).
pub const MAX_REQUEST_BYTES: u64 = 32 << 20;
/// Length of the request header (type, reserved, sector).
pub const HEADER_BYTES: u64 = 16;

/// Request type: read.
pub const VIRTIO_BLK_T_IN: u32 = 0;
/// Request type: write.
pub const VIRTIO_BLK_T_OUT: u32 = 1;
/// Request type: flush.
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
/// Request type: device id string.
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;

/// Status: success.
pub const VIRTIO_BLK_S_OK: u8 = 0;
/// Status: I/O error (also: bad request).
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
/// Status: unsupported request type.
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

/// What the disk looks like to the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskGeometry {
    /// Size in sectors.
    pub sectors: u64,
    /// Whether writes are refused.
    pub read_only: bool,
}

/// A request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What to do.
    pub op: Op,
    /// Where the status byte goes.
    pub status: GuestAddress,
}

/// The operation of a [`Request`], with its guest buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Read `len` bytes (a multiple of 512, inside the disk) at `sector` into `data`.
    Read {
        /// First sector.
        sector: u64,
        /// Device-writable buffers, `len` bytes in all.
        data: Vec<Segment>,
        /// Bytes.
        len: u64,
    },
    /// Write `len` bytes from `data` at `sector`.
    Write {
        /// First sector.
        sector: u64,
        /// Device-readable buffers, `len` bytes in all.
        data: Vec<Segment>,
        /// Bytes.
        len: u64,
    },
    /// Make earlier writes durable.
    Flush,
    /// Write the device id (at most 20 bytes) into `data`.
    GetId {
        /// Device-writable buffers.
        data: Vec<Segment>,
    },
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The chain itself is unusable.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// No device-writable byte for the status.
    #[error("request without a status byte")]
    NoStatus,
    /// Fewer than 16 device-readable bytes.
    #[error("request header is {0} bytes, expected {HEADER_BYTES}")]
    ShortHeader(u64),
    /// A request type this device does not implement.
    #[error("request type {0} is not supported")]
    Unsupported(u32),
    /// A read with device-readable data buffers.
    #[error("read request with device-readable data buffers")]
    ReadFromReadable,
    /// A write with device-writable data buffers.
    #[error("write request with device-writable data buffers")]
    WriteToWritable,
    /// A write to a read-only disk.
    #[error("write to a read-only disk")]
    ReadOnly,
    /// Data length not a multiple of the sector size.
    #[error("data length {0} is not a multiple of {SECTOR_SIZE}")]
    Unaligned(u64),
    /// Data length above [`MAX_REQUEST_BYTES`].
    #[error("data length {0} exceeds {MAX_REQUEST_BYTES}")]
    TooLarge(u64),
    /// Sectors outside the disk.
    #[error("sectors {sector}+{count} are outside the disk ({capacity} sectors)")]
    OutOfRange {
        /// First sector.
        sector: u64,
        /// Sectors asked for.
        count: u64,
        /// Disk size.
        capacity: u64,
    },
}

/// A refused request: the error, and where its status byte goes when there is one to trust
/// (then the guest gets [`RequestError::status`]; otherwise the chain goes back with
/// length 0 and nothing written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Why.
    pub error: RequestError,
    /// The status byte's address, if the chain has one.
    pub status: Option<GuestAddress>,
}

impl RequestError {
    /// The status byte reported to the guest for this error.
    pub fn status(&self) -> u8 {
        match self {
            RequestError::Unsupported(_) => VIRTIO_BLK_S_UNSUPP,
            _ => VIRTIO_BLK_S_IOERR,
        }
    }
}

impl Request {
    /// Parses the request carried by `chain` for a disk shaped like `disk`.
    pub fn parse(
        chain: &Chain,
        mem: &GuestMemoryMmap,
        disk: DiskGeometry,
    ) -> Result<Request, Rejected> {
        let Some(last) = chain.writable.last() else {
            return Err(Rejected {
                error: RequestError::NoStatus,
                status: None,
            });
        };
        // Segments are never empty, so `len - 1` cannot underflow.
        let status = GuestAddress(last.addr.0 + u64::from(last.len) - 1);
        let refuse = |error| Rejected {
            error,
            status: Some(status),
        };
        let readable = chain.readable_len();
        if readable < HEADER_BYTES {
            return Err(refuse(RequestError::ShortHeader(readable)));
        }
        let mut header = [0u8; HEADER_BYTES as usize];
        if chain::read_into(mem, &chain.readable, &mut header) != header.len() {
            return Err(refuse(RequestError::ShortHeader(readable)));
        }
        let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let mut sector_bytes = [0u8; 8];
        sector_bytes.copy_from_slice(&header[8..16]);
        let sector = u64::from_le_bytes(sector_bytes);
        let data_out = readable - HEADER_BYTES;
        let data_in = chain.writable_len() - 1;
        let op = match kind {
            VIRTIO_BLK_T_IN => {
                if data_out != 0 {
                    return Err(refuse(RequestError::ReadFromReadable));
                }
                check_range(sector, data_in, disk).map_err(refuse)?;
                Op::Read {
                    sector,
                    data: chain::sub_range(&chain.writable, 0, data_in),
                    len: data_in,
                }
            }
            VIRTIO_BLK_T_OUT => {
                if disk.read_only {
                    return Err(refuse(RequestError::ReadOnly));
                }
                if data_in != 0 {
                    return Err(refuse(RequestError::WriteToWritable));
                }
                check_range(sector, data_out, disk).map_err(refuse)?;
                Op::Write {
                    sector,
                    data: chain::sub_range(&chain.readable, HEADER_BYTES, data_out),
                    len: data_out,
                }
            }
            VIRTIO_BLK_T_FLUSH => Op::Flush,
            VIRTIO_BLK_T_GET_ID => Op::GetId {
                data: chain::sub_range(&chain.writable, 0, data_in),
            },
            other => return Err(refuse(RequestError::Unsupported(other))),
        };
        Ok(Request { op, status })
    }
}

/// Checks a transfer of `len` bytes at `sector`.
fn check_range(sector: u64, len: u64, disk: DiskGeometry) -> Result<(), RequestError> {
    if len % SECTOR_SIZE != 0 {
        return Err(RequestError::Unaligned(len));
    }
    if len > MAX_REQUEST_BYTES {
        return Err(RequestError::TooLarge(len));
    }
    let count = len / SECTOR_SIZE;
    match sector.checked_add(count) {
        Some(end) if end <= disk.sectors => Ok(()),
        _ => Err(RequestError::OutOfRange {
            sector,
            count,
            capacity: disk.sectors,
        }),
    }
}

/// Property test: random descriptor tables (loops, bad links, buffers outside guest memory,
/// zero lengths, any direction order, any header) parsed against a small reference model.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use virtio_queue::{Queue, QueueT};
    use vm_memory::Bytes;

    const QUEUE: u16 = 8;
    const MEM_BYTES: u64 = 16 << 20;

    #[derive(Debug, Clone)]
    struct Desc {
        addr: u64,
        len: u32,
        write: bool,
        next: Option<u16>,
    }

    /// One descriptor's raw material: an address (mostly in RAM), a "sane" length for each
    /// role it may get (header 16, data a multiple of 512, status 1) or an arbitrary one,
    /// a direction flip (rare) and a link (mostly in order; sometimes anywhere: loops).
    #[derive(Debug, Clone)]
    struct Raw {
        addr: u64,
        sane: bool,
        any_len: u32,
        data_len: u32,
        flip: bool,
        anywhere: Option<u16>,
    }

    fn raw() -> impl Strategy<Value = Raw> {
        let addr = prop_oneof![
            30 => (0u64..64).prop_map(|i| 0x10_0000 + i * 0x1000),
            1 => Just(MEM_BYTES - 8), // crosses the end of RAM when longer than 8
            1 => Just(0x4000_0000u64), // outside RAM
        ];
        let any_len = prop_oneof![
            Just(0u32),
            Just(1),
            Just(15),
            Just(16),
            Just(17),
            Just(511),
            Just(513),
            Just(528),
            0u32..5000,
        ];
        let data_len = prop_oneof![Just(512u32), Just(1024), Just(4096)];
        let anywhere = prop_oneof![12 => Just(None), 1 => (0u16..QUEUE + 2).prop_map(Some)];
        (
            addr,
            prop::bool::weighted(0.85),
            any_len,
            data_len,
            prop::bool::weighted(0.03),
            anywhere,
        )
            .prop_map(|(addr, sane, any_len, data_len, flip, anywhere)| Raw {
                addr,
                sane,
                any_len,
                data_len,
                flip,
                anywhere,
            })
    }

    /// Lays `n` descriptors out as a chain from 0: readable before `split`, writable after.
    fn layout(raws: &[Raw], n: usize, split: usize) -> Vec<Desc> {
        raws.iter()
            .enumerate()
            .map(|(i, r)| {
                let write = (i >= split) ^ r.flip;
                let len = if !r.sane {
                    r.any_len
                } else if i == 0 && !write {
                    16
                } else if i + 1 == n && write {
                    1
                } else {
                    r.data_len
                };
                let next = match r.anywhere {
                    Some(any) => Some(any),
                    None => (i + 1 < n).then_some(i as u16 + 1),
                };
                Desc {
                    addr: r.addr,
                    len,
                    write,
                    next,
                }
            })
            .collect()
    }

    /// The reference: walk the table as the virtio spec describes it.
    fn model(
        table: &[Desc],
        head: u16,
        kind: u32,
        sector: u64,
        disk: DiskGeometry,
    ) -> (Result<(&'static str, u64), &'static str>, bool) {
        let mut readable = Vec::new();
        let mut writable: Vec<(u64, u64)> = Vec::new();
        let mut idx = head;
        for step in 0.. {
            if step >= QUEUE as usize || idx >= QUEUE {
                return (Err("chain"), true);
            }
            let d = &table[idx as usize];
            if d.len > 0 {
                if d.addr + u64::from(d.len) > MEM_BYTES {
                    return (Err("chain"), true);
                }
                if d.write {
                    writable.push((d.addr, u64::from(d.len)));
                } else if writable.is_empty() {
                    readable.push(u64::from(d.len));
                } else {
                    return (Err("chain"), true);
                }
            }
            match d.next {
                Some(n) => idx = n,
                None => break,
            }
        }
        // The test writes the header at the start of every buffer: it reads back intact
        // when the first readable buffer holds all 16 bytes.
        let intact = readable.first().is_none_or(|len| *len >= 16);
        (
            model_request(&readable, &writable, kind, sector, disk),
            intact,
        )
    }

    fn model_request(
        readable: &[u64],
        writable: &[(u64, u64)],
        kind: u32,
        sector: u64,
        disk: DiskGeometry,
    ) -> Result<(&'static str, u64), &'static str> {
        let r: u64 = readable.iter().sum();
        let w: u64 = writable.iter().map(|s| s.1).sum();
        if w == 0 {
            return Err("nostatus");
        }
        if r < 16 {
            return Err("short");
        }
        let (data_out, data_in) = (r - 16, w - 1);
        let range = |len: u64| {
            len % 512 == 0
                && len <= MAX_REQUEST_BYTES
                && sector
                    .checked_add(len / 512)
                    .is_some_and(|e| e <= disk.sectors)
        };
        match kind {
            VIRTIO_BLK_T_IN if data_out == 0 && range(data_in) => Ok(("read", data_in)),
            VIRTIO_BLK_T_OUT if !disk.read_only && data_in == 0 && range(data_out) => {
                Ok(("write", data_out))
            }
            VIRTIO_BLK_T_IN | VIRTIO_BLK_T_OUT => Err("ioerr"),
            VIRTIO_BLK_T_FLUSH => Ok(("flush", 0)),
            VIRTIO_BLK_T_GET_ID => Ok(("getid", data_in)),
            _ => Err("unsupp"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        #[test]
        fn parse_matches_the_model(
            raws in proptest::collection::vec(raw(), QUEUE as usize),
            n in 1usize..6,
            split in 0usize..6,
            head in prop_oneof![6 => Just(0u16), 1 => 0u16..QUEUE],
            kind in prop_oneof![Just(0u32), Just(1), Just(4), Just(8), any::<u32>()],
            sector in prop_oneof![8 => 0u64..40, 1 => 40u64..70, 1 => Just(u64::MAX), 1 => any::<u64>()],
            sectors in prop_oneof![Just(64u64), 1u64..64],
            read_only in any::<bool>(),
        ) {
            let table = layout(&raws, n, split % (n + 1));
            let mem = crate::memory::create_guest_memory(16).unwrap();
            let vq = MockSplitQueue::create(&mem, GuestAddress(0x1000), QUEUE);
            for (i, d) in table.iter().enumerate() {
                let mut flags = if d.write { VRING_DESC_F_WRITE as u16 } else { 0 };
                if d.next.is_some() {
                    flags |= VRING_DESC_F_NEXT as u16;
                }
                let raw = SplitDescriptor::new(d.addr, d.len, flags, d.next.unwrap_or(0));
                vq.desc_table().store(i as u16, RawDescriptor::from(raw)).unwrap();
            }
            // Every readable buffer starts with the header (whichever comes first is used).
            let mut hdr = [0u8; 16];
            hdr[0..4].copy_from_slice(&kind.to_le_bytes());
            hdr[8..16].copy_from_slice(&sector.to_le_bytes());
            for d in &table {
                if d.addr + 16 <= MEM_BYTES {
                    mem.write_slice(&hdr, GuestAddress(d.addr)).unwrap();
                }
            }
            vq.avail().ring().ref_at(0).unwrap().store(head);
            vq.avail().idx().store(1);
            let mut q: Queue = vq.create_queue().unwrap();
            let disk = DiskGeometry { sectors, read_only };
            let head = q.pop_descriptor_chain(&mem).unwrap().head_index();
            let parsed = Chain::read(&q, head, &mem)
                .map_err(|e| Rejected { error: e.into(), status: None })
                .and_then(|c| Request::parse(&c, &mem, disk));
            let (want, header_intact) = model(&table, head, kind, sector, disk);
            let got: Result<(&str, u64), &str> = match &parsed {
                Ok(r) => Ok(match &r.op {
                    Op::Read { len, data, .. } => {
                        prop_assert_eq!(chain::total(data), *len);
                        ("read", *len)
                    }
                    Op::Write { len, data, .. } => {
                        prop_assert_eq!(chain::total(data), *len);
                        ("write", *len)
                    }
                    Op::Flush => ("flush", 0),
                    Op::GetId { data } => ("getid", chain::total(data)),
                }),
                Err(Rejected { error, status }) => {
                    prop_assert_eq!(status.is_some(), !matches!(error, RequestError::Chain(_) | RequestError::NoStatus));
                    Err(match error {
                        RequestError::Chain(_) => "chain",
                        RequestError::NoStatus => "nostatus",
                        RequestError::ShortHeader(_) => "short",
                        RequestError::Unsupported(_) => "unsupp",
                        _ => "ioerr",
                    })
                }
            };
            if header_intact {
                prop_assert_eq!(got, want);
            }
            // Whatever the outcome, every buffer handed to the I/O code lies in guest RAM.
            if let Ok(r) = &parsed {
                prop_assert!(r.status.0 < MEM_BYTES);
                if let Op::Read { data, .. } | Op::Write { data, .. } | Op::GetId { data } = &r.op {
                    for s in data {
                        prop_assert!(s.len > 0 && s.addr.0 + u64::from(s.len) <= MEM_BYTES);
                    }
                }
            }
        }
    }
}
