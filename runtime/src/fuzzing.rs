//! Fuzzing entry points: one function per target of the `fuzz/` cargo-fuzz workspace
//! (docs/fuzzing.md). The fuzz targets are one-line calls to these, and the tests below
//! replay every committed seed and regression input through the same functions on stable
//! Rust, so a crash once found stays fixed without a nightly toolchain.
//!
//! Each entry point takes arbitrary bytes, never returns an error, and panics only when
//! hull misbehaved (an invariant broke); errors from the code under test are expected.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub use crate::image::import::fuzzing::{image_archive, layer_unpack};
use crate::image::Reference;

/// An image reference, parsed and normalized: a reference that parses must print, in its
/// stored form and in its full form, as strings that parse back to the same reference
/// (the stored form is the image's name in the store: two different references must not
/// share it). Returns the stored form.
pub fn image_reference(data: &[u8]) -> Option<String> {
    let input = std::str::from_utf8(data).ok()?;
    let reference = Reference::parse(input).ok()?;
    let fields = |r: &Reference| {
        (
            r.domain.clone(),
            r.namespace.clone(),
            r.name.clone(),
            r.tag.clone(),
            r.digest.clone(),
        )
    };
    let shown = reference.to_string();
    for form in [shown.clone(), reference.full()] {
        let again = Reference::parse(&form)
            .unwrap_or_else(|e| panic!("{input:?} normalized to {form:?}, which fails: {e}"));
        assert_eq!(
            fields(&again),
            fields(&reference),
            "{input:?} printed as {form:?} parses as another reference"
        );
        assert_eq!(
            again.to_string(),
            shown,
            "normalizing {input:?} is not stable"
        );
    }
    Some(shown)
}

/// A private directory for one run of an entry point, removed on drop. Under
/// `$HULL_FUZZ_SCRATCH` when set (the fuzz scripts point it at a `nodev` tmpfs, so device
/// nodes a hostile layer creates cannot be opened), else the system temp dir.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates the directory.
    pub fn new() -> Scratch {
        let base =
            std::env::var_os("HULL_FUZZ_SCRATCH").map_or_else(std::env::temp_dir, PathBuf::from);
        let path = nix::unistd::mkdtemp(&base.join("hull-fuzz-XXXXXX"))
            .unwrap_or_else(|e| panic!("create a scratch dir in {}: {e}", base.display()));
        Scratch { path }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Layers may hold read-only directories; as root they go anyway.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Every path below `root`, relative to it (symlinks listed, never followed).
pub fn tree(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&rel)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = rel.join(entry.file_name());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path.clone());
            }
            out.insert(path);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    //! Tier 1 replay of the fuzz corpora: `fuzz/corpus/TARGET` (the committed seeds, a
    //! smoke run of each entry point) and `fuzz/regressions/TARGET` (every input that once
    //! crashed a target, kept after the fix).

    use super::*;

    /// Runs `entry` over every file of the target's seed and regression corpora. Seeds
    /// named `seed-ok-*` must be accepted and `seed-bad-*` refused (as root: unpacking
    /// needs chown and mknod), so a harness that stopped reaching the code under test, or
    /// an importer that stopped refusing, fails here.
    fn replay<T, E: std::fmt::Display>(target: &str, entry: impl Fn(&[u8]) -> Result<T, E>) {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let root = nix::unistd::geteuid().is_root();
        let mut count = 0;
        for kind in ["corpus", "regressions"] {
            let dir = fuzz.join(kind).join(target);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            files.sort();
            for file in files {
                let data = std::fs::read(&file).unwrap();
                let name = file.file_name().unwrap().to_string_lossy().into_owned();
                // Name the input that failed: the panic alone would not.
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| entry(&data)));
                let Ok(verdict) = run else {
                    panic!("{target}: {} panics", file.display());
                };
                match verdict {
                    Err(e) if root && name.starts_with("seed-ok-") => {
                        panic!("{target}: {name} was refused: {e}")
                    }
                    Ok(_) if name.starts_with("seed-bad-") => {
                        panic!("{target}: {name} was accepted")
                    }
                    _ => {}
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
    fn layer_unpack_corpus() {
        replay("layer_unpack", layer_unpack);
    }

    #[test]
    fn oci_archive_corpus() {
        replay("oci_archive", |d| image_archive(d, true));
    }

    #[test]
    fn docker_archive_corpus() {
        replay("docker_archive", |d| image_archive(d, false));
    }

    #[test]
    fn image_reference_corpus() {
        replay("image_reference", |d| image_reference(d).ok_or("refused"));
    }

    #[test]
    fn scratch_is_removed_and_tree_lists_everything() {
        let scratch = Scratch::new();
        let path = scratch.path().to_path_buf();
        std::fs::create_dir_all(path.join("a/b")).unwrap();
        std::os::unix::fs::symlink("/", path.join("a/l")).unwrap();
        let t = tree(&path);
        let want: BTreeSet<PathBuf> = ["a", "a/b", "a/l"].iter().map(PathBuf::from).collect();
        assert_eq!(t, want);
        drop(scratch);
        assert!(!path.exists());
    }
}
