//! Fuzzing entry points: one function per virtio target of the `fuzz/` cargo-fuzz
//! workspace (docs/fuzzing.md). The targets are one-line calls; the tests below replay
//! every committed seed and regression input through the same functions on stable Rust.
//!
//! The device code runs as the event loop runs it, against a fake guest ([`guest`]) whose
//! descriptor tables are whatever the fuzzer writes; each entry point panics only when an
//! invariant the devices promise broke (see each function).

pub mod guest;

mod block;
mod chain;
mod vsock;

pub use block::virtio_block;
pub use chain::virtio_chain;
pub use vsock::vsock_muxer;

#[cfg(test)]
mod tests {
    //! Tier 1 replay of `fuzz/corpus/TARGET` (seeds: `seed-ok-*` must reach the device's
    //! success path, `seed-bad-*` must not) and `fuzz/regressions/TARGET` (inputs that once
    //! crashed a target, kept after the fix).

    use super::*;
    use std::path::{Path, PathBuf};

    fn replay(target: &str, entry: impl Fn(&[u8]) -> bool) {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut count = 0;
        for kind in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            files.sort();
            for file in files {
                let data = std::fs::read(&file).unwrap();
                let name = file.file_name().unwrap().to_string_lossy().into_owned();
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| entry(&data)));
                let Ok(ok) = run else {
                    panic!("{target}: {} panics", file.display());
                };
                if name.starts_with("seed-ok-") {
                    assert!(ok, "{target}: {name} did not reach the success path");
                }
                if name.starts_with("seed-bad-") {
                    assert!(!ok, "{target}: {name} was accepted");
                }
                count += 1;
            }
        }
        assert!(
            count > 0,
            "no corpus for fuzz target {target} under {fuzz:?}"
        );
    }

    #[test]
    fn virtio_chain_corpus() {
        replay("virtio_chain", |d| virtio_chain(d) > 0);
    }

    #[test]
    fn virtio_block_corpus() {
        // Success: every chain came back with its status written.
        replay("virtio_block", |d| {
            let used = virtio_block(d);
            !used.is_empty() && used.iter().all(|&(_, len)| len > 0)
        });
    }

    #[test]
    fn vsock_muxer_corpus() {
        replay("vsock_muxer", |d| vsock_muxer(d) > 0);
    }
}
