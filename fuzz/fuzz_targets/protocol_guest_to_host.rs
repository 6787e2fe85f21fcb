#![no_main]
//! Frames a hostile guest sends, read as the host reads them: see hull_protocol::fuzzing.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hull_protocol::fuzzing::guest_to_host(data);
});
