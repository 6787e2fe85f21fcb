//! The KVM VM: /dev/kvm checks, memory slots, TSS/identity map, in-kernel irqchip and PIT.

use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Cap, Kvm, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::error::{kvm as kvm_err, Error, Result};
use crate::memory::{KVM_IDENTITY_MAP_ADDR, KVM_TSS_ADDR};

/// Capabilities the VMM cannot run without.
const REQUIRED_CAPS: [(Cap, &str); 6] = [
    (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
    (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
    (Cap::SetTssAddr, "KVM_CAP_SET_TSS_ADDR"),
    (Cap::Pit2, "KVM_CAP_PIT2"),
    (Cap::Irqfd, "KVM_CAP_IRQFD"),
    (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
];

/// A KVM VM with its guest memory registered and its interrupt controllers created.
pub struct Vm {
    /// The /dev/kvm handle (for supported CPUID and MSR lists).
    pub kvm: Kvm,
    /// The VM file descriptor.
    pub fd: VmFd,
    /// Whether KVM_IOEVENTFD works here: queue notifications then never leave the kernel.
    /// Without it the transport forwards QueueNotify writes itself (slower: a vCPU exit each).
    pub ioeventfds: bool,
}

/// Opens /dev/kvm and checks the API version and the capabilities the VMM needs.
pub fn open_kvm() -> Result<Kvm> {
    open_kvm_at(c"/dev/kvm")
}

/// Opens the KVM device at `path` (normally /dev/kvm) and checks it.
pub fn open_kvm_at(path: &std::ffi::CStr) -> Result<Kvm> {
    let shown = path.to_string_lossy();
    let kvm = Kvm::new_with_path(path).map_err(|e| {
        let hint = match e.errno() {
            libc::ENOENT => " (it does not exist: load the kvm module, or run on a host or VM with (nested) virtualisation)",
            libc::EACCES | libc::EPERM => " (no permission: run as root or join the kvm group)",
            _ => "",
        };
        Error::KvmUnavailable(format!("cannot open {shown}: {e}{hint}"))
    })?;
    let version = kvm.get_api_version();
    if version != 12 {
        return Err(Error::KvmUnavailable(format!(
            "KVM API version {version}, expected 12"
        )));
    }
    for (cap, name) in REQUIRED_CAPS {
        if !kvm.check_extension(cap) {
            return Err(Error::KvmUnavailable(format!("{name} is not supported")));
        }
    }
    Ok(kvm)
}

impl Vm {
    /// Creates the VM, registers `mem` and creates the in-kernel irqchip and PIT.
    pub fn new(mem: &GuestMemoryMmap) -> Result<Vm> {
        let kvm = open_kvm()?;
        let fd = kvm
            .create_vm()
            .map_err(|e| Error::KvmUnavailable(format!("KVM_CREATE_VM failed: {e}")))?;
        for (slot, region) in mem.iter().enumerate() {
            let region_desc = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: region.as_ptr() as u64,
            };
            // SAFETY: the region's host mapping is owned by `mem`, which the caller keeps
            // alive (MicroVm holds it) for as long as the VM exists.
            unsafe { fd.set_user_memory_region(region_desc) }
                .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
        }
        fd.set_tss_address(KVM_TSS_ADDR as usize)
            .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
        if kvm.check_extension(Cap::SetIdentityMapAddr) {
            fd.set_identity_map_address(KVM_IDENTITY_MAP_ADDR)
                .map_err(kvm_err("KVM_SET_IDENTITY_MAP_ADDR"))?;
        }
        fd.create_irq_chip()
            .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
        let pit_config = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit_config)
            .map_err(kvm_err("KVM_CREATE_PIT2"))?;
        let ioeventfds = kvm.check_extension(Cap::Ioeventfd);
        if !ioeventfds {
            tracing::warn!("KVM_CAP_IOEVENTFD missing: virtio queue notifications exit to the VMM");
        }
        Ok(Vm {
            kvm,
            fd,
            ioeventfds,
        })
    }

    /// Creates an eventfd that raises interrupt line `gsi` when written (irqfd).
    pub fn irqfd(&self, gsi: u32) -> Result<EventFd> {
        let evt = EventFd::new(libc::EFD_NONBLOCK)
            .map_err(|e| Error::Device(format!("eventfd for IRQ {gsi}: {e}")))?;
        self.fd
            .register_irqfd(&evt, gsi)
            .map_err(kvm_err("KVM_IRQFD"))?;
        Ok(evt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_kvm_device_is_a_clear_kvm_error() {
        let Err(err) = open_kvm_at(c"/nonexistent/kvm") else {
            panic!("opening a missing device must fail")
        };
        assert_eq!(err.exit_code(), crate::error::EXIT_KVM_UNAVAILABLE);
        let msg = err.to_string();
        assert!(
            msg.contains("/nonexistent/kvm") && msg.contains("does not exist"),
            "{msg}"
        );
    }

    #[test]
    fn a_non_kvm_device_is_refused() {
        // /dev/null opens but answers no KVM ioctl.
        let Err(err) = open_kvm_at(c"/dev/null") else {
            panic!("/dev/null is not KVM")
        };
        assert_eq!(err.exit_code(), crate::error::EXIT_KVM_UNAVAILABLE, "{err}");
    }
}
