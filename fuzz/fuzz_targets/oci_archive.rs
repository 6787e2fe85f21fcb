#![no_main]
//! An oci-archive (index, manifests, config, layers) imported: see hull_runtime::fuzzing::image_archive.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hull_runtime::fuzzing::image_archive(data, true);
});
