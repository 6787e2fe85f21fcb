//! Emulated devices: the PIO/MMIO bus, legacy PIO devices and virtio-mmio devices.

pub mod bus;
pub mod legacy;
pub mod serial;
pub mod virtio;
