#![no_main]
//! A layer blob (tar, gzip or zstd) imported into a scratch store: see hull_runtime::fuzzing::layer_unpack.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hull_runtime::fuzzing::layer_unpack(data);
});
