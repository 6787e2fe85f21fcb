//! The VMM's typed errors and the process exit code each maps to (docs/vmm.md lists them).

use std::path::PathBuf;

/// Exit code: bad configuration or arguments.
pub const EXIT_CONFIG: i32 = 101;
/// Exit code: KVM is missing or unusable.
pub const EXIT_KVM_UNAVAILABLE: i32 = 102;
/// Exit code: the kernel or initramfs could not be read or loaded.
pub const EXIT_LOAD: i32 = 103;
/// Exit code: the VM could not be set up.
pub const EXIT_SETUP: i32 = 104;
/// Exit code: a vCPU failed while running the guest.
pub const EXIT_VCPU: i32 = 105;
/// Exit code: the device event loop failed.
pub const EXIT_EVENT_LOOP: i32 = 106;

/// Exit code: the guest did not stop within the time limit.
pub const EXIT_TIMEOUT: i32 = 107;

/// Everything that can go wrong while configuring, building or running a microVM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid; the message names the offending option.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// /dev/kvm is absent, inaccessible or lacks something the VMM needs.
    #[error("KVM is unavailable: {0}")]
    KvmUnavailable(String),
    /// A file given in the configuration could not be opened or read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The kernel image could not be loaded.
    #[error("cannot load kernel {path}: {reason}")]
    KernelLoad {
        /// The kernel image.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The initramfs could not be placed in guest memory.
    #[error("cannot load initramfs {path}: {reason}")]
    InitramfsLoad {
        /// The initramfs.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The kernel command line is invalid or too long.
    #[error("invalid kernel command line: {0}")]
    Cmdline(String),
    /// Guest memory could not be created or written.
    #[error("guest memory: {0}")]
    Memory(String),
    /// A KVM ioctl failed while setting up the VM.
    #[error("VM setup failed: {what}: {source}")]
    Kvm {
        /// The step that failed.
        what: &'static str,
        /// The ioctl's error.
        source: kvm_ioctls::Error,
    },
    /// A device could not be set up.
    #[error("device setup failed: {0}")]
    Device(String),
    /// Any other OS-level setup failure (threads, eventfds, signals).
    #[error("VM setup failed: {what}: {source}")]
    Os {
        /// The step that failed.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A vCPU failed while running the guest.
    #[error("vCPU {cpu} failed: {reason}")]
    Vcpu {
        /// Index of the vCPU.
        cpu: u8,
        /// What happened.
        reason: String,
    },
    /// The device event loop failed.
    #[error("device event loop failed: {0}")]
    EventLoop(String),
    /// The VMM was asked to stop by this signal (SIGTERM, SIGINT, SIGHUP).
    #[error("stopped by signal {0}")]
    Stopped(i32),
    /// The guest did not end the VM within the caller's time limit.
    #[error("the guest did not stop within {0:?}")]
    Timeout(std::time::Duration),
}

impl Error {
    /// The process exit code documented for this error (docs/vmm.md, "Exit codes").
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Cmdline(_) => EXIT_CONFIG,
            Error::KvmUnavailable(_) => EXIT_KVM_UNAVAILABLE,
            Error::ReadFile { .. } | Error::KernelLoad { .. } | Error::InitramfsLoad { .. } => {
                EXIT_LOAD
            }
            Error::Memory(_) | Error::Kvm { .. } | Error::Device(_) | Error::Os { .. } => {
                EXIT_SETUP
            }
            Error::Vcpu { .. } => EXIT_VCPU,
            Error::EventLoop(_) => EXIT_EVENT_LOOP,
            Error::Timeout(_) => EXIT_TIMEOUT,
            Error::Stopped(signal) => 128 + signal,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Wraps a KVM ioctl error with the step that failed.
pub(crate) fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |source| Error::Kvm { what, source }
}

/// Wraps an OS error with the step that failed.
pub(crate) fn os(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Os { what, source }
}
