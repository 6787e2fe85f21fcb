#![no_main]
//! Block request chains processed against an in-memory disk: see hull_vmm::fuzzing::virtio_block.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hull_vmm::fuzzing::virtio_block(data);
});
