//! Tiny "kernels" for hull's VM mode, given to `hull run --kernel`: hand-assembled x86-64
//! code (only the simple instructions this machine's PVM emulates) in an ELF64 file that
//! hull-vmm loads and enters in 64-bit mode like a vmlinux. They never start an agent, so
//! hull waits for the hello until its boot timeout: long enough for a test to look at the
//! jailed VMM, and to check that hull gives up cleanly.
//!
//! - [`ticking_kernel`]: a well-behaved guest that prints `t` on its console forever, a
//!   few times a second (so a test sees it keep running);
//! - [`hostile_kernel`]: a guest that drives hull-vmm's virtio devices itself with
//!   malformed input: descriptor chains that loop, leave the queue or guest RAM, claim
//!   4 GiB, point the wrong way or read past the disk; an available index 32768 entries
//!   ahead; notifications for queues that do not exist and a storm of real ones; and on the
//!   vsock device 200 connection requests (half to hull's hello port, half to ports with
//!   no listener) plus packets with spoofed CIDs, unknown types and operations, lengths
//!   beyond their buffers, short headers and headers outside RAM. Then it halts, never
//!   answering anything.
//!
//! hull attaches the image disk first and vsock second: virtio-mmio slots 0 and 1.

/// Where the code is loaded and entered.
const CODE: u64 = 0x20_0000;
/// Where the data (queues, requests, packets) is loaded.
const DATA: u64 = 0x40_0000;
/// The virtio-mmio slots hull-vmm gives the disk and vsock.
const BLK_MMIO: u64 = 0xd000_0000;
const VSOCK_MMIO: u64 = 0xd000_1000;

/// A few x86-64 instructions.
#[derive(Default)]
struct Asm(Vec<u8>);

impl Asm {
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    /// mov dword [addr], value (through rbx/eax).
    fn write32(&mut self, addr: u64, value: u32) -> &mut Self {
        self.bytes(&[0x48, 0xbb]).bytes(&addr.to_le_bytes()); // mov rbx, imm64
        self.bytes(&[0xb8]).bytes(&value.to_le_bytes()); // mov eax, imm32
        self.bytes(&[0x89, 0x03]) // mov [rbx], eax
    }
    /// out 0x3f8, byte
    fn serial(&mut self, byte: u8) -> &mut Self {
        self.bytes(&[0x66, 0xba, 0xf8, 0x03, 0xb0, byte, 0xee])
    }
    /// Repeats `body` `times` times (ecx as the counter; body must not touch ecx).
    fn repeat(&mut self, times: u32, body: impl FnOnce(&mut Asm)) -> &mut Self {
        self.bytes(&[0xb9]).bytes(&times.to_le_bytes()); // mov ecx, imm32
        let top = self.0.len();
        body(self);
        self.bytes(&[0xff, 0xc9]); // dec ecx
        let rel = top as isize - (self.0.len() as isize + 6);
        self.bytes(&[0x0f, 0x85]).bytes(&(rel as i32).to_le_bytes()) // jnz top
    }
    /// jmp back to `top` forever.
    fn jmp(&mut self, top: usize) -> &mut Self {
        let rel = top as isize - (self.0.len() as isize + 5);
        self.bytes(&[0xe9]).bytes(&(rel as i32).to_le_bytes())
    }
    /// cli; hlt; jmp back to the hlt.
    fn halt_forever(&mut self) -> &mut Self {
        self.bytes(&[0xfa]);
        let top = self.0.len();
        self.bytes(&[0xf4]).jmp(top)
    }
}

/// Guest data placed at [`DATA`] and up.
struct Data(Vec<u8>);

impl Data {
    fn at(&mut self, addr: u64, bytes: &[u8]) {
        let off = (addr - DATA) as usize;
        if self.0.len() < off + bytes.len() {
            self.0.resize(off + bytes.len(), 0);
        }
        self.0[off..off + bytes.len()].copy_from_slice(bytes);
    }
    fn desc(&mut self, table: u64, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = Vec::with_capacity(16);
        d.extend_from_slice(&addr.to_le_bytes());
        d.extend_from_slice(&len.to_le_bytes());
        d.extend_from_slice(&flags.to_le_bytes());
        d.extend_from_slice(&next.to_le_bytes());
        self.at(table + 16 * u64::from(index), &d);
    }
    /// The available ring: `heads` offered, idx = their number.
    fn avail(&mut self, avail: u64, heads: &[u16]) {
        self.at(avail, &0u16.to_le_bytes());
        self.at(avail + 2, &(heads.len() as u16).to_le_bytes());
        for (i, h) in heads.iter().enumerate() {
            self.at(avail + 4 + 2 * i as u64, &h.to_le_bytes());
        }
    }
}

const NEXT: u16 = 1;
const WRITE: u16 = 2;

/// One split virtqueue's three areas.
struct Queue {
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
}

impl Queue {
    fn at(base: u64, size: u16) -> Queue {
        let desc = base;
        let avail = desc + 16 * u64::from(size);
        // The used ring 4-byte aligned, on its own page for clarity.
        let used = (avail + 6 + 2 * u64::from(size) + 0xfff) & !0xfff;
        Queue {
            size,
            desc,
            avail,
            used,
        }
    }
}

/// Negotiates VERSION_1 and sets up `queues` (index, queue) on the device at `mmio`, then
/// DRIVER_OK.
fn init_device(asm: &mut Asm, mmio: u64, queues: &[(u32, &Queue)]) {
    asm.write32(mmio + 0x70, 0) // reset
        .write32(mmio + 0x70, 1) // ACKNOWLEDGE
        .write32(mmio + 0x70, 3) // DRIVER
        .write32(mmio + 0x24, 1)
        .write32(mmio + 0x20, 1) // VIRTIO_F_VERSION_1 (feature bit 32)
        .write32(mmio + 0x70, 11); // FEATURES_OK
    for (index, q) in queues {
        asm.write32(mmio + 0x30, *index)
            .write32(mmio + 0x38, u32::from(q.size))
            .write32(mmio + 0x80, q.desc as u32)
            .write32(mmio + 0x84, (q.desc >> 32) as u32)
            .write32(mmio + 0x90, q.avail as u32)
            .write32(mmio + 0x94, (q.avail >> 32) as u32)
            .write32(mmio + 0xa0, q.used as u32)
            .write32(mmio + 0xa4, (q.used >> 32) as u32)
            .write32(mmio + 0x44, 1);
    }
    asm.write32(mmio + 0x70, 15); // DRIVER_OK
}

/// virtio-blk request header: type, reserved, sector.
fn blk_header(kind: u32, sector: u64) -> Vec<u8> {
    let mut h = kind.to_le_bytes().to_vec();
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&sector.to_le_bytes());
    h
}

/// A vsock packet header (44 bytes).
#[allow(clippy::too_many_arguments)]
fn vsock_header(
    src_cid: u64,
    dst_cid: u64,
    src_port: u32,
    dst_port: u32,
    len: u32,
    kind: u16,
    op: u16,
    buf_alloc: u32,
) -> Vec<u8> {
    let mut h = Vec::with_capacity(44);
    h.extend_from_slice(&src_cid.to_le_bytes());
    h.extend_from_slice(&dst_cid.to_le_bytes());
    h.extend_from_slice(&src_port.to_le_bytes());
    h.extend_from_slice(&dst_port.to_le_bytes());
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&kind.to_le_bytes());
    h.extend_from_slice(&op.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes()); // flags
    h.extend_from_slice(&buf_alloc.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes()); // fwd_cnt
    h
}

/// Far outside any guest's RAM.
const NOWHERE: u64 = 0xffff_ffff_0000;

fn hostile_blk(asm: &mut Asm, data: &mut Data) {
    let q = Queue::at(DATA, 16);
    let req = DATA + 0x1_0000;
    let (hdr_read, hdr_far, hdr_write, buf, status) =
        (req, req + 0x100, req + 0x200, req + 0x1000, req + 0x3000);
    data.at(hdr_read, &blk_header(0, 0));
    data.at(hdr_far, &blk_header(0, 1 << 56));
    data.at(hdr_write, &blk_header(1, 0));
    let t = q.desc;
    // 0-1: a chain that loops back on itself.
    data.desc(t, 0, hdr_read, 16, NEXT, 1);
    data.desc(t, 1, buf, 512, WRITE | NEXT, 0);
    // 3-4: the header outside guest RAM.
    data.desc(t, 3, NOWHERE, 16, NEXT, 4);
    data.desc(t, 4, status, 1, WRITE, 0);
    // 5-7: a read claiming almost 4 GiB of buffer.
    data.desc(t, 5, hdr_read, 16, NEXT, 6);
    data.desc(t, 6, buf, 0xffff_fe00, WRITE | NEXT, 7);
    data.desc(t, 7, status + 1, 1, WRITE, 0);
    // 8-10: a read far past the end of the disk.
    data.desc(t, 8, hdr_far, 16, NEXT, 9);
    data.desc(t, 9, buf, 512, WRITE | NEXT, 10);
    data.desc(t, 10, status + 2, 1, WRITE, 0);
    // 11-12: directions reversed (writable header, readable status).
    data.desc(t, 11, hdr_read, 16, WRITE | NEXT, 12);
    data.desc(t, 12, status + 3, 1, 0, 0);
    // 13-15: a write to the read-only image disk.
    data.desc(t, 13, hdr_write, 16, NEXT, 14);
    data.desc(t, 14, buf, 512, NEXT, 15);
    data.desc(t, 15, status + 4, 1, WRITE, 0);
    // 200 is no descriptor of a 16-entry table; 2 links to a descriptor past the table.
    data.desc(t, 2, hdr_read, 16, NEXT, 999);
    data.avail(q.avail, &[0, 200, 3, 5, 8, 11, 13, 2]);

    init_device(asm, BLK_MMIO, &[(0, &q)]);
    asm.write32(BLK_MMIO + 0x50, 0) // the malformed chains
        .write32(BLK_MMIO + 0x50, 7) // a queue that does not exist
        .write32(q.avail, 0x8008 << 16) // avail.idx 32768 entries ahead of the device
        .write32(BLK_MMIO + 0x50, 0)
        .repeat(2000, |a| {
            a.write32(BLK_MMIO + 0x50, 0);
        });
}

fn hostile_vsock(asm: &mut Asm, data: &mut Data) {
    let rx = Queue::at(DATA + 0x2_0000, 16);
    let tx = Queue::at(DATA + 0x3_0000, 256);
    let ev = Queue::at(DATA + 0x4_0000, 16);
    let pkts = DATA + 0x5_0000;
    // rx: a few small buffers only (room for headers, not for much data).
    let mut rx_heads = Vec::new();
    for i in 0..4u16 {
        data.desc(
            rx.desc,
            i,
            DATA + 0x2_8000 + 64 * u64::from(i),
            64,
            WRITE,
            0,
        );
        rx_heads.push(i);
    }
    data.avail(rx.avail, &rx_heads);

    const GUEST: u64 = 3;
    const HOST: u64 = 2;
    const STREAM: u16 = 1;
    let (request, rw, shutdown, credit) = (1u16, 5u16, 4u16, 6u16);
    let mut heads = Vec::new();
    let mut slot = 0u16;
    let mut packet = |data: &mut Data, header: Vec<u8>, len: u32, flags: u16| {
        let addr = pkts + 64 * u64::from(slot);
        data.at(addr, &header);
        data.desc(tx.desc, slot, addr, len, flags, 0);
        heads.push(slot);
        slot += 1;
    };
    // 200 connection requests: even ones to hull's hello port, odd ones to nobody.
    for i in 0..200u32 {
        let port = if i % 2 == 0 { 1024 } else { 3000 + i };
        let h = vsock_header(GUEST, HOST, 10_000 + i, port, 0, STREAM, request, 1 << 16);
        packet(data, h, 44, 0);
    }
    // Malformed packets.
    let bad = [
        vsock_header(GUEST, HOST, 1, 1024, 0xffff_ffff, STREAM, rw, 0), // len beyond buffer
        vsock_header(HOST, HOST, 2, 1024, 0, STREAM, request, 0),       // spoofed source CID
        vsock_header(GUEST, 77, 3, 1024, 0, STREAM, request, 0),        // not the host
        vsock_header(GUEST, HOST, 4, 1024, 0, 2, request, 0),           // seqpacket
        vsock_header(GUEST, HOST, 5, 1024, 0, STREAM, 0, 0),            // op 0
        vsock_header(GUEST, HOST, 6, 1024, 0, STREAM, 99, 0),           // op 99
        vsock_header(GUEST, HOST, 7, 4242, 16, STREAM, rw, 0),          // data, no connection
        vsock_header(GUEST, HOST, 8, 1024, 0, STREAM, credit, u32::MAX),
        vsock_header(GUEST, HOST, 9, 4242, 0, STREAM, shutdown, 0),
    ];
    for h in bad {
        packet(data, h, 44, 0);
    }
    // A header cut to 10 bytes; a writable tx buffer.
    let h = vsock_header(GUEST, HOST, 10, 1024, 0, STREAM, request, 0);
    packet(data, h.clone(), 10, 0);
    packet(data, h, 44, WRITE);
    // A header outside guest RAM, a chain that loops.
    data.desc(tx.desc, slot, NOWHERE, 44, 0, 0);
    heads.push(slot);
    slot += 1;
    data.desc(tx.desc, slot, pkts, 44, NEXT, slot);
    heads.push(slot);
    data.avail(tx.avail, &heads);

    init_device(asm, VSOCK_MMIO, &[(0, &rx), (1, &tx), (2, &ev)]);
    asm.write32(VSOCK_MMIO + 0x50, 1) // tx: the requests and the malformed packets
        .write32(VSOCK_MMIO + 0x50, 0) // rx
        .write32(VSOCK_MMIO + 0x50, 9) // a queue that does not exist
        .repeat(2000, |a| {
            a.write32(VSOCK_MMIO + 0x50, 1);
        });
}

/// The hostile guest (module docs).
pub fn hostile_kernel() -> Vec<u8> {
    let mut asm = Asm::default();
    let mut data = Data(Vec::new());
    asm.serial(b'H');
    hostile_blk(&mut asm, &mut data);
    asm.serial(b'B');
    hostile_vsock(&mut asm, &mut data);
    asm.serial(b'V').serial(b'\n');
    asm.halt_forever();
    elf(&asm.0, &data.0)
}

/// A guest that prints `t` every few hundred thousand instructions, forever.
pub fn ticking_kernel() -> Vec<u8> {
    let mut asm = Asm::default();
    let top = asm.0.len();
    asm.serial(b't').repeat(300_000, |_| {}).jmp(top);
    elf(&asm.0, &[])
}

/// An ELF64 executable: `code` at [`CODE`] (entry), `data` at [`DATA`].
fn elf(code: &[u8], data: &[u8]) -> Vec<u8> {
    const EHDR: u16 = 64;
    const PHDR: u16 = 56;
    let segments: Vec<(u64, &[u8], u32)> = [(CODE, code, 5u32), (DATA, data, 6u32)]
        .into_iter()
        .filter(|(_, b, _)| !b.is_empty())
        .collect();
    let mut f = Vec::new();
    f.extend_from_slice(b"\x7fELF");
    f.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, little endian, version 1, SysV
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&CODE.to_le_bytes()); // e_entry
    f.extend_from_slice(&u64::from(EHDR).to_le_bytes()); // e_phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    f.extend_from_slice(&0u32.to_le_bytes()); // flags
    f.extend_from_slice(&EHDR.to_le_bytes());
    f.extend_from_slice(&PHDR.to_le_bytes());
    f.extend_from_slice(&(segments.len() as u16).to_le_bytes());
    f.extend_from_slice(&64u16.to_le_bytes()); // shentsize
    f.extend_from_slice(&0u16.to_le_bytes()); // shnum
    f.extend_from_slice(&0u16.to_le_bytes()); // shstrndx
    let mut offset = 0x1000u64;
    let mut bodies = Vec::new();
    for (addr, bytes, flags) in &segments {
        f.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        f.extend_from_slice(&flags.to_le_bytes());
        f.extend_from_slice(&offset.to_le_bytes());
        f.extend_from_slice(&addr.to_le_bytes()); // vaddr
        f.extend_from_slice(&addr.to_le_bytes()); // paddr
        f.extend_from_slice(&(bytes.len() as u64).to_le_bytes()); // filesz
        f.extend_from_slice(&(bytes.len() as u64).to_le_bytes()); // memsz
        f.extend_from_slice(&0x1000u64.to_le_bytes()); // align
        bodies.push((offset, *bytes));
        offset += (bytes.len() as u64 + 0xfff) & !0xfff;
    }
    for (at, bytes) in bodies {
        f.resize(at as usize, 0);
        f.extend_from_slice(bytes);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guests_are_elf_files_with_code_at_the_entry() {
        for image in [hostile_kernel(), ticking_kernel()] {
            assert_eq!(&image[..4], b"\x7fELF");
            assert_eq!(image[0x1000], 0x66, "code starts with the serial port load");
        }
        let hostile = hostile_kernel();
        assert_eq!(
            u16::from_le_bytes([hostile[56], hostile[57]]),
            2,
            "code + data"
        );
    }

    #[test]
    fn loops_jump_back_to_their_top() {
        let mut a = Asm::default();
        a.repeat(3, |a| {
            a.bytes(&[0x90]);
        });
        // mov ecx, 3 (5) | nop (1) | dec ecx (2) | jnz rel32 (6): back over 9 bytes.
        assert_eq!(&a.0[8..10], &[0x0f, 0x85]);
        assert_eq!(i32::from_le_bytes(a.0[10..14].try_into().unwrap()), -9);
    }
}
