#![no_main]
//! Guest vsock packets and host socket clients through the vsock muxer: see hull_vmm::fuzzing::vsock_muxer.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hull_vmm::fuzzing::vsock_muxer(data);
});
