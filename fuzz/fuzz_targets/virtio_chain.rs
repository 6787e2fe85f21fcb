#![no_main]
//! Descriptor tables as a hostile driver writes them, read as every device reads them: see hull_vmm::fuzzing::virtio_chain.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hull_vmm::fuzzing::virtio_chain(data);
});
