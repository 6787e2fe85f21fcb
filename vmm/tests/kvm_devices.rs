//! Tier 3: tiny guests on /dev/kvm exercising PIO/MMIO exits and a virtio-blk read and
//! write driven by the guest through the virtio-mmio registers.

mod support;

use std::time::Duration;

use hull_vmm::{DiskConfig, ExitReason, MicroVm, SerialOutput, VmConfig};
use support::{require_kvm, write_guest, Asm};
use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(20));
const MMIO: u64 = 0xd000_0000;

#[test]
fn pio_and_mmio_exits_reach_the_buses() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let mut asm = Asm::new();
    // Unclaimed port: 0xff. Unclaimed MMIO: 0. virtio-mmio magic "virt": 'v'.
    // i8042 status: 0x14 (system flag, keyboard enabled, buffers empty).
    asm.mov_dx(0x80).in_al_dx().mov_dx(0x3f8).out_dx_al();
    asm.print_byte_at(MMIO + 0x8000);
    asm.print_byte_at(MMIO);
    asm.mov_dx(0x64).in_al_dx().mov_dx(0x3f8).out_dx_al();
    asm.debug_exit(0);
    let kernel = write_guest(dir.path(), "guest.elf", &asm);
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 4096]).unwrap();
    let serial = dir.path().join("serial");
    let mut c = VmConfig::new(kernel);
    c.memory_mib = 32;
    c.serial = SerialOutput::File(serial.clone());
    c.disks = vec![DiskConfig {
        path: disk,
        read_only: true,
    }];
    let reason = MicroVm::new(&c).unwrap().run(TIMEOUT).unwrap();
    assert_eq!(reason, ExitReason::DebugExit(0));
    assert_eq!(std::fs::read(serial).unwrap(), vec![0xff, 0, b'v', 0x14]);
}

/// Guest-physical layout of the virtio-blk test.
const QUEUE_BASE: u64 = 0x40_0000;
const HDR_READ: u64 = 0x50_0000;
const HDR_WRITE: u64 = 0x50_1000;
const DATA_READ: u64 = 0x51_0000;
const DATA_WRITE: u64 = 0x52_0000;
const STATUS_READ: u64 = 0x53_0000;
const STATUS_WRITE: u64 = 0x53_1000;

fn queue_addresses() -> (u64, u64, u64) {
    let scratch = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
    let vq = MockSplitQueue::create(&scratch, GuestAddress(QUEUE_BASE), 16);
    (vq.desc_table_addr().0, vq.avail_addr().0, vq.used_addr().0)
}

fn blk_header(mem: &GuestMemoryMmap, addr: u64, kind: u32, sector: u64) {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&kind.to_le_bytes());
    h[8..16].copy_from_slice(&sector.to_le_bytes());
    mem.write_slice(&h, GuestAddress(addr)).unwrap();
}

#[test]
fn guest_driven_virtio_blk_read_and_write() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    let content: Vec<u8> = (0..64 * 512u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&disk, &content).unwrap();

    let (desc, avail, used) = queue_addresses();
    let mut asm = Asm::new();
    let reg = |off: u64| MMIO + off;
    asm.write32(reg(0x70), 1) // ACKNOWLEDGE
        .write32(reg(0x70), 3) // DRIVER
        .write32(reg(0x24), 1)
        .write32(reg(0x20), 1) // VIRTIO_F_VERSION_1
        .write32(reg(0x70), 11) // FEATURES_OK
        .write32(reg(0x30), 0)
        .write32(reg(0x38), 16)
        .write32(reg(0x80), desc as u32)
        .write32(reg(0x90), avail as u32)
        .write32(reg(0xa0), used as u32)
        .write32(reg(0x44), 1)
        .write32(reg(0x70), 15) // DRIVER_OK
        .write32(reg(0x50), 0); // QUEUE_NOTIFY: an ioeventfd, the VMM's event loop does the I/O
    asm.wait_nonzero(reg(0x60)); // interrupt status: set once both requests are done
    asm.print_byte_at(reg(0x70)); // status: 15 = DRIVER_OK, no NEEDS_RESET
    asm.print_byte_at(reg(0x60)); // interrupt status: used ring updated
    asm.write32(reg(0x64), 1); // ack
    asm.print_byte_at(reg(0x60));
    asm.print_byte_at(used + 2); // used.idx
    asm.debug_exit(0);

    let kernel = write_guest(dir.path(), "guest.elf", &asm);
    let serial = dir.path().join("serial");
    let mut c = VmConfig::new(kernel);
    c.memory_mib = 32;
    c.serial = SerialOutput::File(serial.clone());
    c.disks = vec![DiskConfig {
        path: disk.clone(),
        read_only: false,
    }];
    let vm = MicroVm::new(&c).unwrap();

    // The "driver" side prepared from the host: read sectors 2..4, write sector 10.
    let mem = vm.memory().clone();
    let vq = MockSplitQueue::create(&mem, GuestAddress(QUEUE_BASE), 16);
    assert_eq!(vq.desc_table_addr().0, desc);
    blk_header(&mem, HDR_READ, 0, 2);
    blk_header(&mem, HDR_WRITE, 1, 10);
    mem.write_slice(&[0xabu8; 512], GuestAddress(DATA_WRITE))
        .unwrap();
    mem.write_obj(0xffu8, GuestAddress(STATUS_READ)).unwrap();
    mem.write_obj(0xffu8, GuestAddress(STATUS_WRITE)).unwrap();
    let w = VRING_DESC_F_WRITE as u16;
    let d = |addr: u64, len: u32, flags: u16| {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
    };
    let next = virtio_bindings::bindings::virtio_ring::VRING_DESC_F_NEXT as u16;
    let chains = [
        RawDescriptor::from(SplitDescriptor::new(HDR_READ, 16, next, 1)),
        RawDescriptor::from(SplitDescriptor::new(DATA_READ, 1024, w | next, 2)),
        d(STATUS_READ, 1, w),
        RawDescriptor::from(SplitDescriptor::new(HDR_WRITE, 16, next, 4)),
        RawDescriptor::from(SplitDescriptor::new(DATA_WRITE, 512, next, 5)),
        d(STATUS_WRITE, 1, w),
    ];
    vq.add_desc_chains(&chains, 0).unwrap();
    assert_eq!(vq.avail().idx().load(), 2);

    let reason = vm.run(TIMEOUT).unwrap();
    assert_eq!(reason, ExitReason::DebugExit(0));
    assert_eq!(
        std::fs::read(&serial).unwrap(),
        vec![15, 1, 0, 2],
        "status, irq, acked, used.idx"
    );
    assert_eq!(
        hull_vmm::devices::virtio::mmio::notify_exits(),
        0,
        "the QueueNotify write went to KVM's ioeventfd, not through the VMM"
    );
    let status_read: u8 = mem.read_obj(GuestAddress(STATUS_READ)).unwrap();
    let status_write: u8 = mem.read_obj(GuestAddress(STATUS_WRITE)).unwrap();
    assert_eq!((status_read, status_write), (0, 0), "both requests OK");
    let mut got = vec![0u8; 1024];
    mem.read_slice(&mut got, GuestAddress(DATA_READ)).unwrap();
    assert_eq!(got, content[1024..2048], "guest read sectors 2-3");
    let after = std::fs::read(&disk).unwrap();
    assert!(
        after[10 * 512..11 * 512].iter().all(|b| *b == 0xab),
        "sector 10 written"
    );
    assert_eq!(
        after[..10 * 512],
        content[..10 * 512],
        "nothing else changed"
    );
    assert_eq!(vq.used().ring().ref_at(0).unwrap().load().len(), 1025);
}

/// irqfd under this host's KVM: a write to a device's irqfd raises its interrupt line. KVM
/// injects it as a pulse from a work queue; the in-kernel master PIC latches the rising edge
/// in its IRR (the line is masked, so nothing reaches a vCPU), which the test polls for.
#[test]
fn irqfd_write_raises_the_interrupt_line() {
    require_kvm();
    let mem = hull_vmm::memory::create_guest_memory(16).unwrap();
    let vm = hull_vmm::vm::Vm::new(&mem).unwrap();
    let gsi = 5;
    let irq = vm.irqfd(gsi).unwrap();
    let pic_irr = |vm: &hull_vmm::vm::Vm| {
        let mut chip = kvm_bindings::kvm_irqchip {
            chip_id: kvm_bindings::KVM_IRQCHIP_PIC_MASTER,
            ..Default::default()
        };
        vm.fd.get_irqchip(&mut chip).unwrap();
        // SAFETY: chip_id PIC_MASTER selects the pic member of the union.
        unsafe { chip.chip.pic.irr }
    };
    assert_eq!(pic_irr(&vm) & (1 << gsi), 0, "line low before");
    irq.write(1).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while pic_irr(&vm) & (1 << gsi) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the irqfd write never raised IRQ {gsi}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}
