#![no_main]
//! Frames the host sends, read as the guest agent reads them: see hull_protocol::fuzzing.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hull_protocol::fuzzing::host_to_guest(data);
});
