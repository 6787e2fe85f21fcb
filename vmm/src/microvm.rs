//! A whole microVM: builds memory, VM, devices, boot state and vCPUs from a [`VmConfig`],
//! runs the vCPU threads and the device event loop, and returns how the guest ended.

use std::fs::File;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vm_memory::GuestMemoryMmap;

use crate::boot::{self, LinuxBoot};
use crate::config::{SerialOutput, VmConfig};
use crate::devices::bus::Bus;
use crate::devices::legacy::{
    DebugExit, DEBUG_EXIT_PORT, I8042, I8042_BASE, I8042_KBD_IRQ, I8042_LEN,
};
use crate::devices::serial::{
    SerialDevice, SerialSink, SERIAL_IRQ, SERIAL_PORT_BASE, SERIAL_PORT_LEN,
};
use crate::devices::virtio::block::Block;
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::vsock::{Vsock, VsockEventLoop};
use crate::error::{os, Error, Result};
use crate::exit::{ExitNotifier, ExitReason};
use crate::memory::{create_guest_memory, VIRTIO_MMIO_BASE, VIRTIO_MMIO_SIZE};
use crate::vcpu::{self, Vcpu, VcpuContext};
use crate::vm::Vm;

/// IRQ of the first virtio device (the n-th gets FIRST_VIRTIO_IRQ + n).
pub const FIRST_VIRTIO_IRQ: u32 = 5;
/// How long stopping the vCPU threads may take before the VMM gives up on joining them.
const VCPU_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Signal used to kick vCPU threads out of KVM_RUN.
fn kick_signal() -> i32 {
    vmm_sys_util::signal::SIGRTMIN() + 1
}

extern "C" fn noop_signal_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

fn install_kick_handler() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = vmm_sys_util::signal::register_signal_handler(kick_signal(), noop_signal_handler)
            .map_err(|e| Error::Os {
                what: "registering the vCPU kick signal handler",
                source: std::io::Error::from_raw_os_error(e.errno()),
            });
    });
    result
}

/// A built, not yet running microVM.
pub struct MicroVm {
    mem: GuestMemoryMmap,
    // Keeps the VM (and its memory slots) alive while the vCPUs run.
    _vm: Vm,
    vcpus: Vec<Vcpu>,
    exit: Arc<ExitNotifier>,
    serial: Arc<Mutex<SerialDevice>>,
    vsock_loop: Option<VsockEventLoop>,
}

fn serial_sink(out: &SerialOutput) -> Result<SerialSink> {
    Ok(match out {
        SerialOutput::Stdout => Box::new(std::io::stdout()),
        SerialOutput::None => Box::new(std::io::sink()),
        SerialOutput::File(path) => Box::new(File::create(path).map_err(|e| {
            Error::Config(format!("serial: cannot create {}: {e}", path.display()))
        })?),
    })
}

impl MicroVm {
    /// Builds the microVM described by `config` (nothing runs yet).
    pub fn new(config: &VmConfig) -> Result<MicroVm> {
        config.validate()?;
        install_kick_handler()?;
        let mem = create_guest_memory(config.memory_mib)?;
        let vm = Vm::new(&mem)?;
        let exit = Arc::new(ExitNotifier::new());

        let mut pio = Bus::new();
        let serial = Arc::new(Mutex::new(SerialDevice::new(
            vm.irqfd(SERIAL_IRQ)?,
            serial_sink(&config.serial)?,
        )));
        pio.insert(SERIAL_PORT_BASE, SERIAL_PORT_LEN, serial.clone())?;
        let i8042 = I8042::new(exit.clone(), Some(vm.irqfd(I8042_KBD_IRQ)?));
        pio.insert(I8042_BASE, I8042_LEN, Arc::new(Mutex::new(i8042)))?;
        pio.insert(
            DEBUG_EXIT_PORT,
            1,
            Arc::new(Mutex::new(DebugExit::new(exit.clone()))),
        )?;

        let mut mmio = Bus::new();
        let mut virtio_slots = Vec::new();
        let mut next_slot = |bus: &mut Bus, transport: MmioTransport| -> Result<()> {
            let n = virtio_slots.len() as u64;
            let addr = VIRTIO_MMIO_BASE + n * VIRTIO_MMIO_SIZE;
            bus.insert(addr, VIRTIO_MMIO_SIZE, Arc::new(Mutex::new(transport)))?;
            virtio_slots.push((addr, FIRST_VIRTIO_IRQ + n as u32));
            Ok(())
        };
        for (i, disk) in config.disks.iter().enumerate() {
            let block = Block::open(disk)?;
            let irq = vm.irqfd(FIRST_VIRTIO_IRQ + i as u32)?;
            next_slot(
                &mut mmio,
                MmioTransport::new(Box::new(block), mem.clone(), irq),
            )?;
        }
        let mut vsock_loop = None;
        if let Some(vsock_config) = &config.vsock {
            let irq = vm.irqfd(FIRST_VIRTIO_IRQ + config.disks.len() as u32)?;
            let (device, event_loop) = Vsock::new(vsock_config)?;
            next_slot(
                &mut mmio,
                MmioTransport::new(Box::new(device), mem.clone(), irq),
            )?;
            vsock_loop = Some(event_loop);
        }

        let boot_info = boot::load_linux(
            &mem,
            &LinuxBoot {
                kernel: &config.kernel,
                initramfs: config.initramfs.as_deref(),
                cmdline: &config.cmdline,
                virtio_devices: &virtio_slots,
                vcpus: config.vcpus,
            },
        )?;

        let ctx = VcpuContext {
            pio: Arc::new(pio),
            mmio: Arc::new(mmio),
            exit: exit.clone(),
        };
        let supported = vcpu::supported_cpuid(&vm)?;
        let msr_list = vm
            .kvm
            .get_msr_index_list()
            .map_err(crate::error::kvm("KVM_GET_MSR_INDEX_LIST"))?;
        let mut vcpus = Vec::with_capacity(usize::from(config.vcpus));
        for index in 0..config.vcpus {
            vcpus.push(Vcpu::new(
                &vm,
                index,
                config.vcpus,
                &supported,
                msr_list.as_slice(),
                ctx.clone(),
            )?);
        }
        vcpus[0].setup_boot(&mem, boot_info)?;
        Ok(MicroVm {
            mem,
            _vm: vm,
            vcpus,
            exit,
            serial,
            vsock_loop,
        })
    }

    /// Guest memory (tests use it to prepare and inspect guest state).
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// Runs the guest until it ends the VM, a vCPU or device fails, or `timeout` (if any)
    /// passes. Stops every thread it started before returning.
    pub fn run(mut self, timeout: Option<Duration>) -> Result<ExitReason> {
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        let mut outcome = None;
        if let Some(event_loop) = self.vsock_loop.take() {
            match event_loop.spawn(self.exit.clone()) {
                Ok(t) => threads.push(t),
                Err(e) => outcome = Some(Err(e)),
            }
        }
        if outcome.is_none() {
            for mut vcpu in self.vcpus.drain(..) {
                let spawned = std::thread::Builder::new()
                    .name(format!("vcpu{}", vcpu.index()))
                    .spawn(move || vcpu.run())
                    .map_err(os("spawning a vCPU thread"));
                match spawned {
                    Ok(t) => threads.push(t),
                    Err(e) => {
                        outcome = Some(Err(e));
                        break;
                    }
                }
            }
        }
        let outcome = match outcome {
            Some(o) => {
                self.exit
                    .report(Err(Error::EventLoop("startup failed".into())));
                o
            }
            None => self.wait_for_outcome(timeout),
        };
        stop_threads(threads);
        self.serial
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .flush();
        outcome
    }
}

impl MicroVm {
    /// Waits for the guest's outcome in short slices, so a stop signal (see
    /// [`install_stop_signal_handlers`]) or the time limit ends the wait too.
    fn wait_for_outcome(&self, timeout: Option<Duration>) -> Result<ExitReason> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(outcome) = self.exit.wait(Some(WAIT_SLICE)) {
                return outcome;
            }
            let signal = STOP_SIGNAL.load(Ordering::SeqCst);
            if signal != 0 {
                self.exit.report(Err(Error::Stopped(signal)));
                return Err(Error::Stopped(signal));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let t = timeout.unwrap_or_default();
                self.exit.report(Err(Error::Timeout(t)));
                return Err(Error::Timeout(t));
            }
        }
    }
}

/// How often the waiting thread checks for stop signals and the time limit.
const WAIT_SLICE: Duration = Duration::from_millis(20);

/// The stop signal received (0: none).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn stop_signal_handler(
    signal: libc::c_int,
    _: *mut libc::siginfo_t,
    _: *mut libc::c_void,
) {
    // Only an atomic store: async-signal-safe.
    STOP_SIGNAL.store(signal, Ordering::SeqCst);
}

/// Makes SIGTERM, SIGINT and SIGHUP stop a running [`MicroVm`] cleanly (threads stopped,
/// serial flushed, vsock socket removed; `run` returns [`Error::Stopped`]) instead of killing
/// the process outright. For the `hull-vmm` binary; a library user may keep its own handlers.
pub fn install_stop_signal_handlers() -> Result<()> {
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        vmm_sys_util::signal::register_signal_handler(signal, stop_signal_handler).map_err(
            |e| Error::Os {
                what: "installing the stop signal handlers",
                source: std::io::Error::from_raw_os_error(e.errno()),
            },
        )?;
    }
    Ok(())
}

/// Kicks every thread (vCPUs out of KVM_RUN; the event loop polls the exit flag) and joins
/// them, giving up after [`VCPU_STOP_TIMEOUT`].
fn stop_threads(threads: Vec<JoinHandle<()>>) {
    let deadline = Instant::now() + VCPU_STOP_TIMEOUT;
    for t in threads {
        while !t.is_finished() && Instant::now() < deadline {
            // SAFETY: the handle's pthread is alive (not yet joined); the signal has a no-op
            // handler installed, so delivering it only interrupts blocking syscalls.
            unsafe { libc::pthread_kill(t.as_pthread_t(), kick_signal()) };
            std::thread::sleep(Duration::from_millis(1));
        }
        if t.is_finished() {
            let _ = t.join();
        } else {
            tracing::warn!("a VMM thread did not stop in time");
        }
    }
}
