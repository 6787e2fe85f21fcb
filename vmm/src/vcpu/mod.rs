//! vCPUs: creation and configuration (CPUID, MSRs, FPU, LAPIC, boot registers) and the run
//! loop that routes PIO/MMIO exits to the buses until the VM ends.

pub mod cpuid;

use std::cell::Cell;
use std::os::unix::thread::JoinHandleExt;
use std::sync::{Arc, Once};
use std::thread::JoinHandle;

use kvm_bindings::{kvm_fpu, kvm_msr_entry, CpuId, Msrs, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{VcpuExit, VcpuFd};
use vm_memory::GuestMemoryMmap;

use crate::boot::{longmode, BootInfo};
use crate::devices::bus::Bus;
use crate::error::{kvm, Error, Result};
use crate::exit::{ExitNotifier, ExitReason};
use crate::vm::Vm;

const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MISC_ENABLE_FAST_STRING: u64 = 1;
const MTRR_ENABLE: u64 = 1 << 11;
const MTRR_TYPE_WB: u64 = 6;

const APIC_LVT_LINT0: usize = 0x350;
const APIC_LVT_LINT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

/// The boot MSR values (what Firecracker sets).
fn boot_msrs() -> [(u32, u64); 11] {
    [
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        (MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_TYPE_WB),
    ]
}

/// Signal used to kick vCPU threads out of KVM_RUN.
fn kick_signal() -> i32 {
    vmm_sys_util::signal::SIGRTMIN() + 1
}

thread_local! {
    /// This thread's vCPU run area, while it runs a vCPU (null otherwise). `const`: no lazy
    /// initialisation, so the signal handler may read it.
    static RUN_AREA: Cell<*mut kvm_bindings::kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let run = RUN_AREA.with(|r| r.get());
    if !run.is_null() {
        // SAFETY: RUN_AREA points at this thread's vCPU kvm_run mapping, set while the vCPU
        // runs on this thread and cleared before it is dropped; a volatile byte store.
        unsafe { std::ptr::addr_of_mut!((*run).immediate_exit).write_volatile(1) };
    }
}

/// Installs the kick signal's handler: it sets the vCPU's `immediate_exit`, so a kick that
/// lands just before KVM_RUN is entered still makes KVM_RUN return at once (one signal is
/// enough; no retry loop).
pub fn install_kick_handler() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = vmm_sys_util::signal::register_signal_handler(kick_signal(), kick_handler)
            .map_err(|e| Error::Os {
                what: "registering the vCPU kick signal handler",
                source: std::io::Error::from_raw_os_error(e.errno()),
            });
    });
    result
}

/// Makes the vCPU running on `thread` leave KVM_RUN and see that the VM is over.
pub fn kick(thread: &JoinHandle<()>) {
    if !thread.is_finished() {
        // SAFETY: the handle's pthread is not joined yet; the signal's handler only stores a
        // byte (install_kick_handler ran before any vCPU thread was started).
        unsafe { libc::pthread_kill(thread.as_pthread_t(), kick_signal()) };
    }
}

/// What a vCPU thread needs to run: the buses and the VM-wide exit notifier.
#[derive(Clone)]
pub struct VcpuContext {
    /// Port I/O bus.
    pub pio: Arc<Bus>,
    /// MMIO bus.
    pub mmio: Arc<Bus>,
    /// Where the end of the VM is reported.
    pub exit: Arc<ExitNotifier>,
}

/// One configured vCPU.
pub struct Vcpu {
    index: u8,
    fd: VcpuFd,
    ctx: VcpuContext,
}

fn vcpu_err(index: u8, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Vcpu {
        cpu: index,
        reason: format!("{what}: {e}"),
    }
}

/// The host's supported CPUID list (queried once, patched per vCPU).
pub fn supported_cpuid(vm: &Vm) -> Result<CpuId> {
    vm.kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm("KVM_GET_SUPPORTED_CPUID"))
}

fn set_lvt_mode(regs: &mut [std::os::raw::c_char; 1024], offset: usize, mode: u32) {
    let mut bytes = [0u8; 4];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = regs[offset + i] as u8;
    }
    let value = (u32::from_le_bytes(bytes) & !0x700) | (mode << 8);
    for (i, b) in value.to_le_bytes().iter().enumerate() {
        regs[offset + i] = *b as std::os::raw::c_char;
    }
}

impl Vcpu {
    /// Creates vCPU `index` of `cpus` and configures CPUID, MSRs, FPU and LAPIC.
    pub fn new(
        vm: &Vm,
        index: u8,
        cpus: u8,
        supported: &CpuId,
        msr_list: &[u32],
        ctx: VcpuContext,
    ) -> Result<Vcpu> {
        let fd = vm
            .fd
            .create_vcpu(u64::from(index))
            .map_err(kvm("KVM_CREATE_VCPU"))?;
        let mut cpuid = supported.clone();
        let tsc_deadline = vm.kvm.check_extension(kvm_ioctls::Cap::TscDeadlineTimer);
        cpuid::patch_cpuid(&mut cpuid, index, cpus, tsc_deadline);
        fd.set_cpuid2(&cpuid).map_err(kvm("KVM_SET_CPUID2"))?;

        // Only MSRs this KVM knows; PVM, for one, lacks some.
        let entries: Vec<kvm_msr_entry> = boot_msrs()
            .iter()
            .filter(|(msr, _)| msr_list.contains(msr))
            .map(|(index, data)| kvm_msr_entry {
                index: *index,
                data: *data,
                ..Default::default()
            })
            .collect();
        let msrs =
            Msrs::from_entries(&entries).map_err(|e| Error::Device(format!("MSR list: {e:?}")))?;
        let written = fd.set_msrs(&msrs).map_err(kvm("KVM_SET_MSRS"))?;
        if written != entries.len() {
            let failed = entries.get(written).map(|e| e.index).unwrap_or_default();
            return Err(Error::Device(format!(
                "KVM_SET_MSRS set {written} of {} MSRs (failed at {failed:#x})",
                entries.len()
            )));
        }

        let fpu = kvm_fpu {
            fcw: 0x37f,
            mxcsr: 0x1f80,
            ..Default::default()
        };
        fd.set_fpu(&fpu).map_err(kvm("KVM_SET_FPU"))?;

        let mut lapic = fd.get_lapic().map_err(kvm("KVM_GET_LAPIC"))?;
        set_lvt_mode(&mut lapic.regs, APIC_LVT_LINT0, APIC_MODE_EXTINT);
        set_lvt_mode(&mut lapic.regs, APIC_LVT_LINT1, APIC_MODE_NMI);
        fd.set_lapic(&lapic).map_err(kvm("KVM_SET_LAPIC"))?;
        Ok(Vcpu { index, fd, ctx })
    }

    /// Index (and APIC id) of this vCPU.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// Puts the boot vCPU at the kernel's 64-bit entry with long mode and paging on.
    pub fn setup_boot(&self, mem: &GuestMemoryMmap, boot: BootInfo) -> Result<()> {
        longmode::write_boot_tables(mem)?;
        let mut sregs = self.fd.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
        longmode::configure_sregs(&mut sregs);
        self.fd.set_sregs(&sregs).map_err(kvm("KVM_SET_SREGS"))?;
        let regs = longmode::boot_regs(boot.entry.0, boot.zero_page.0);
        self.fd.set_regs(&regs).map_err(kvm("KVM_SET_REGS"))?;
        Ok(())
    }

    /// Runs the guest until the VM ends (reported through the exit notifier) or this vCPU
    /// fails (reported too).
    pub fn run(&mut self) {
        let exit = self.ctx.exit.clone();
        RUN_AREA.with(|r| r.set(self.fd.get_kvm_run()));
        while !exit.is_done() {
            match self.run_once() {
                Ok(None) => {}
                Ok(Some(reason)) => exit.report(Ok(reason)),
                Err(e) => exit.report(Err(e)),
            }
        }
        RUN_AREA.with(|r| r.set(std::ptr::null_mut()));
    }

    /// One KVM_RUN and the handling of its exit.
    fn run_once(&mut self) -> Result<Option<ExitReason>> {
        let index = self.index;
        match self.fd.run() {
            Ok(VcpuExit::IoOut(port, data)) => {
                if !self.ctx.pio.write(u64::from(port), data) {
                    tracing::trace!(port, "unclaimed PIO write");
                }
                Ok(None)
            }
            Ok(VcpuExit::IoIn(port, data)) => {
                if !self.ctx.pio.read(u64::from(port), data) {
                    data.fill(0xff);
                }
                Ok(None)
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                if !self.ctx.mmio.read(addr, data) {
                    tracing::trace!(addr, "unclaimed MMIO read");
                    data.fill(0);
                }
                Ok(None)
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                if !self.ctx.mmio.write(addr, data) {
                    tracing::trace!(addr, "unclaimed MMIO write");
                }
                Ok(None)
            }
            Ok(VcpuExit::Shutdown) => {
                tracing::info!(vcpu = index, "guest shut down (triple fault)");
                Ok(Some(ExitReason::TripleFault))
            }
            Ok(VcpuExit::SystemEvent(kind, _)) => match kind {
                kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN | kvm_bindings::KVM_SYSTEM_EVENT_RESET => {
                    Ok(Some(ExitReason::I8042Reset))
                }
                _ => Ok(Some(ExitReason::TripleFault)),
            },
            Ok(VcpuExit::Hlt) => Err(vcpu_err(
                index,
                "guest halted",
                "KVM_EXIT_HLT (the in-kernel irqchip should handle HLT)",
            )),
            Ok(VcpuExit::FailEntry(reason, cpu)) => Err(vcpu_err(
                index,
                "KVM_EXIT_FAIL_ENTRY",
                format!("hardware entry failure reason {reason:#x} on host cpu {cpu}"),
            )),
            Ok(VcpuExit::InternalError) => {
                let regs = self.fd.get_regs().map(|r| r.rip).unwrap_or_default();
                Err(vcpu_err(
                    index,
                    "KVM_EXIT_INTERNAL_ERROR",
                    format!("at rip {regs:#x}"),
                ))
            }
            Ok(VcpuExit::Intr) => Ok(None),
            Ok(other) => Err(vcpu_err(index, "unhandled exit", format!("{other:?}"))),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Ok(None),
            Err(e) => Err(vcpu_err(index, "KVM_RUN", e)),
        }
    }
}
