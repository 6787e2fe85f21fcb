//! A whole microVM: builds memory, VM, devices, boot state and vCPUs from a [`VmConfig`],
//! runs the vCPU threads, runs the device event loop on the calling thread, and returns how
//! the guest ended.

use std::fs::File;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
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
use crate::devices::virtio::fs::Fs;
use crate::devices::virtio::manager::VirtioMmioDevices;
use crate::devices::virtio::net::Net;
use crate::devices::virtio::vsock::Vsock;
use crate::error::{os, Error, Result};
use crate::event_loop::{new_event_loop, EventLoop, Wakeup};
use crate::exit::{ExitNotifier, ExitReason};
use crate::memory::{create_guest_memory, create_shared_guest_memory};
use crate::seccomp::{self, ThreadKind};
use crate::vcpu::{self, Vcpu, VcpuContext};
use crate::vm::Vm;
use event_manager::SubscriberOps;

pub use crate::devices::virtio::manager::FIRST_VIRTIO_IRQ;

/// How long stopping the vCPU threads may take before the VMM gives up on joining them.
const VCPU_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// A built, not yet running microVM.
pub struct MicroVm {
    mem: GuestMemoryMmap,
    // Keeps the VM (and its memory slots) alive while the vCPUs run.
    _vm: Vm,
    vcpus: Vec<Vcpu>,
    exit: Arc<ExitNotifier>,
    serial: Arc<Mutex<SerialDevice>>,
    events: EventLoop,
    seccomp: bool,
}

fn serial_sink(out: &SerialOutput) -> Result<SerialSink> {
    Ok(match out {
        SerialOutput::Stdout => Box::new(std::io::stdout()),
        SerialOutput::None => Box::new(std::io::sink()),
        SerialOutput::File(path) => Box::new(crate::logcap::Capped::new(
            File::create(path).map_err(|e| {
                Error::Config(format!("serial: cannot create {}: {e}", path.display()))
            })?,
            crate::logcap::MAX_CONSOLE_FILE,
        )),
    })
}

impl MicroVm {
    /// Builds the microVM described by `config` (nothing runs yet).
    pub fn new(config: &VmConfig) -> Result<MicroVm> {
        config.validate()?;
        vcpu::install_kick_handler()?;
        // A vhost-user backend (virtio-fs) maps guest RAM itself: then RAM is a shared memfd.
        let mem = if config.fs.is_empty() {
            create_guest_memory(config.memory_mib)?
        } else {
            create_shared_guest_memory(config.memory_mib)?
        };
        let vm = Vm::new(&mem)?;
        let exit = Arc::new(ExitNotifier::new().map_err(os("creating the exit eventfd"))?);
        let mut events = new_event_loop()?;
        events.add_subscriber(Arc::new(Mutex::new(Wakeup(
            exit.wake_handle()
                .map_err(os("creating the exit eventfd"))?,
        ))));

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
        let mut virtio = VirtioMmioDevices::new();
        for disk in &config.disks {
            virtio.attach(&vm, &mem, &mut mmio, &mut events, Block::open(disk)?)?;
        }
        if let Some(vsock_config) = &config.vsock {
            virtio.attach(&vm, &mem, &mut mmio, &mut events, Vsock::new(vsock_config)?)?;
        }
        if let Some(net_config) = &config.net {
            virtio.attach(&vm, &mem, &mut mmio, &mut events, Net::new(net_config)?)?;
        }
        for fs_config in &config.fs {
            virtio.attach(&vm, &mem, &mut mmio, &mut events, Fs::new(fs_config)?)?;
        }

        let boot_info = boot::load_linux(
            &mem,
            &LinuxBoot {
                kernel: &config.kernel,
                initramfs: config.initramfs.as_deref(),
                cmdline: &config.cmdline,
                virtio_devices: virtio.slots(),
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
            events,
            seccomp: config.seccomp,
        })
    }

    /// Guest memory (tests use it to prepare and inspect guest state).
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// Runs the guest until it ends the VM, a vCPU or device fails, or `timeout` (if any)
    /// passes. The device event loop runs on the calling thread. Stops every thread it
    /// started before returning.
    ///
    /// With `seccomp` on, every vCPU thread confines itself before its first KVM_RUN and
    /// then waits until the calling thread has confined itself too (a gate), so no guest
    /// instruction runs before both filters are in place.
    pub fn run(mut self, timeout: Option<Duration>) -> Result<ExitReason> {
        let trigger = seccomp::test_trigger();
        if self.seccomp {
            seccomp::install_violation_handler()?;
        }
        let (finished_tx, finished) = mpsc::channel();
        let start = Arc::new(Gate::default());
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        let mut spawn_error = None;
        let confine = self.seccomp;
        for mut vcpu in self.vcpus.drain(..) {
            let finished_tx = finished_tx.clone();
            let start = start.clone();
            let exit = self.exit.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("vcpu{}", vcpu.index()))
                .spawn(move || {
                    let confined = if confine {
                        seccomp::confine_current_thread(ThreadKind::Vcpu, vcpu.index())
                    } else {
                        Ok(())
                    };
                    start.wait();
                    match confined {
                        Ok(()) => {
                            seccomp::maybe_trigger(trigger, ThreadKind::Vcpu);
                            vcpu.run();
                        }
                        Err(e) => exit.report(Err(e)),
                    }
                    let _ = finished_tx.send(());
                })
                .map_err(os("spawning a vCPU thread"));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    spawn_error = Some(e);
                    break;
                }
            }
        }
        let outcome = match spawn_error {
            Some(e) => {
                self.exit
                    .report(Err(Error::EventLoop("startup failed".into())));
                start.open();
                Err(e)
            }
            None => {
                let confined = if self.seccomp {
                    seccomp::confine_current_thread(ThreadKind::Main, 0)
                } else {
                    Ok(())
                };
                if let Err(e) = &confined {
                    self.exit.report(Err(Error::EventLoop(format!("{e}"))));
                }
                start.open();
                match confined {
                    Ok(()) => {
                        seccomp::maybe_trigger(trigger, ThreadKind::Main);
                        self.event_loop(timeout)
                    }
                    Err(e) => Err(e),
                }
            }
        };
        stop_threads(threads, &finished);
        self.serial
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .flush();
        outcome
    }

    /// Runs the device event loop until an outcome is reported, a stop signal arrives (its
    /// handler writes the exit notifier's wake-up eventfd) or the time limit passes.
    fn event_loop(&mut self, timeout: Option<Duration>) -> Result<ExitReason> {
        let deadline = timeout.map(|t| Instant::now() + t);
        STOP_WAKE_FD.store(self.exit.wake_fd(), Ordering::SeqCst);
        let outcome = loop {
            // Checked after publishing the wake-up fd: a signal that came earlier is seen here.
            let signal = STOP_SIGNAL.load(Ordering::SeqCst);
            if signal != 0 {
                self.exit.report(Err(Error::Stopped(signal)));
            }
            if let Some(outcome) = self.exit.take() {
                break outcome;
            }
            let wait_ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        let t = timeout.unwrap_or_default();
                        self.exit.report(Err(Error::Timeout(t)));
                        continue;
                    }
                    // Rounded up, so the wait does not end just before the deadline.
                    i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
                }
            };
            if let Err(e) = self.events.run_with_timeout(wait_ms) {
                self.exit
                    .report(Err(Error::EventLoop(format!("epoll: {e}"))));
            }
        };
        STOP_WAKE_FD.store(-1, Ordering::SeqCst);
        outcome
    }
}

/// A one-shot gate: vCPU threads wait at it until the main thread opens it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cond: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cond.notify_all();
    }

    fn wait(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while !*open {
            open = self.cond.wait(open).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The stop signal received (0: none).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// The running VM's wake-up eventfd (-1: none), written by the stop signal handler.
static STOP_WAKE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn stop_signal_handler(
    signal: libc::c_int,
    _: *mut libc::siginfo_t,
    _: *mut libc::c_void,
) {
    // Only an atomic store and write(2): async-signal-safe.
    STOP_SIGNAL.store(signal, Ordering::SeqCst);
    let fd = STOP_WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to an eventfd; an error (the fd closed
        // meanwhile) is harmless: the loop checks STOP_SIGNAL before every wait.
        unsafe { libc::write(fd, std::ptr::addr_of!(one).cast(), 8) };
    }
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

/// Kicks every vCPU thread out of KVM_RUN (see [`vcpu::kick`]) and joins them, waiting at
/// most [`VCPU_STOP_TIMEOUT`] for them all to report that they finished.
fn stop_threads(threads: Vec<JoinHandle<()>>, finished: &mpsc::Receiver<()>) {
    for t in &threads {
        vcpu::kick(t);
    }
    let deadline = Instant::now() + VCPU_STOP_TIMEOUT;
    let mut done = 0;
    while done < threads.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match finished.recv_timeout(left) {
            Ok(()) => done += 1,
            Err(_) => break,
        }
    }
    if done == threads.len() {
        // Each reported its end as its last act: joining waits only for the thread's exit.
        for t in threads {
            let _ = t.join();
        }
    } else {
        tracing::warn!(
            "{} of {} vCPU threads did not stop in time",
            threads.len() - done,
            threads.len()
        );
    }
}
