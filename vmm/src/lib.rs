//! hull-vmm: a KVM microVM monitor built on the rust-vmm crates.
//!
//! One process runs one microVM: guest memory ([`memory`]), a KVM VM with an in-kernel
//! irqchip ([`vm`]), a Linux 64-bit direct boot ([`boot`]), vCPU threads ([`vcpu`]) and the
//! devices ([`devices`]): 8250 serial, i8042 reset, a debug-exit port, virtio-mmio block and
//! vsock. [`microvm::MicroVm`] ties them together; `docs/vmm.md` describes the design.

pub mod boot;
pub mod cli;
pub mod config;
pub mod devices;
pub mod error;
pub mod event_loop;
pub mod exit;
#[doc(hidden)]
pub mod fuzzing;
pub mod jail;
pub mod logcap;
pub mod memory;
pub mod microvm;
pub mod seccomp;
pub mod vcpu;
pub mod vm;

pub use config::{DiskConfig, SerialOutput, VmConfig, VsockConfig};
pub use error::Error;
pub use exit::ExitReason;
pub use microvm::MicroVm;
