#![no_main]
//! A docker-archive (manifest.json, config, layers) imported: see hull_runtime::fuzzing::image_archive.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hull_runtime::fuzzing::image_archive(data, false);
});
