#![no_main]
//! An image reference parsed and normalized: see hull_runtime::fuzzing::image_reference.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hull_runtime::fuzzing::image_reference(data);
});
