//! hull-vmm: a KVM microVM monitor built on the rust-vmm crates.
