//! Fuzzing entry points of the image import (see `crate::fuzzing` and docs/fuzzing.md).
//!
//! They live here because they drive the import's own crate-private pieces
//! (`bring_layer`, the store transaction) exactly as an import does, each into a fresh
//! store in a scratch directory, and check what must hold for any input: no panic,
//! nothing written outside the store's work directory, nothing left behind.

use std::io::Read;
use std::path::Path;

use super::layer::{bring_layer, LayerInput};
use super::{import, Compression, ImportOptions, ImportOutcome};
use crate::fuzzing::{tree, Scratch};
use crate::image::{ImageError, ImageStore, Limits, Reference, Sha256Digest};

/// Bounds small enough that a fuzzer reaches every limit check with small inputs.
pub(crate) fn fuzz_limits() -> Limits {
    Limits {
        max_json_bytes: 64 << 10,
        max_entry_bytes: 256 << 10,
        max_layer_bytes: 1 << 20,
        max_entries: 256,
        max_layers: 8,
        max_path_bytes: 4096,
        max_header_bytes: 64 << 10,
        max_names_bytes: 64 << 10,
    }
}

/// One layer blob (`data[1..]`, plain tar, gzip or zstd by its magic) brought into a
/// fresh store the way an import does: hashed, decompressed and unpacked. Bit 0 of
/// `data[0]` hides the blob's length (a compressed blob is then decompressed on a second
/// thread, as for large or streamed blobs). Whatever the outcome, dropping the import
/// must leave the store exactly as it was before. Returns the import's verdict.
pub fn layer_unpack(data: &[u8]) -> Result<(), ImageError> {
    let Some((&flags, blob)) = data.split_first() else {
        return Ok(());
    };
    let scratch = Scratch::new();
    let store = ImageStore::open_dir(&scratch.path().join("store"), fuzz_limits())
        .expect("open the scratch store");
    let txn = store.begin().expect("begin an import");
    let before = tree(scratch.path());
    let input = LayerInput {
        reader: Box::new(blob),
        length: (flags & 1 == 0).then_some(blob.len() as u64),
        compression: Compression::sniff(blob),
        declared: None,
        expected_diff_id: None,
        media_type: Compression::sniff(blob).media_type().to_string(),
        label: "fuzz".into(),
    };
    let result = bring_layer(&txn, input, false);
    if let Ok((record, fresh)) = &result {
        assert!(fresh, "an empty store has no cached layer");
        // The record's digests must be the blob's own.
        assert_eq!(record.digest, Sha256Digest::of(blob).to_string());
        assert_eq!(record.size, blob.len() as u64);
        if Compression::sniff(blob) == Compression::None {
            assert_eq!(
                record.diff_id, record.digest,
                "a plain tar is its own diff_id"
            );
        }
    }
    // Anything new outside the layer's own directory was written through an escape.
    let during = tree(scratch.path());
    let escaped: Vec<_> = during
        .difference(&before)
        .filter(|p| !in_layer_dir(p))
        .collect();
    assert!(
        escaped.is_empty(),
        "layer unpack wrote outside its directory: {escaped:?}"
    );
    let removed: Vec<_> = before.difference(&during).collect();
    assert!(removed.is_empty(), "layer unpack removed {removed:?}");
    drop(txn);
    // Dropping the import removes its work dir and nothing else.
    let after = tree(scratch.path());
    let left: Vec<_> = after.difference(&before).collect();
    assert!(left.is_empty(), "a dropped import left {left:?}");
    let gone: Vec<_> = before
        .difference(&after)
        .filter(|p| !in_work_dir(p))
        .collect();
    assert!(gone.is_empty(), "a dropped import removed {gone:?}");
    result.map(|_| ())
}

/// `store/tmp/import-*` or below: the import's work dir.
fn in_work_dir(path: &Path) -> bool {
    let c: Vec<_> = path.components().map(|c| c.as_os_str()).collect();
    c.len() >= 3 && c[0] == "store" && c[1] == "tmp"
}

/// `store/tmp/import-*/layer-*` or below: where a layer is unpacked.
fn in_layer_dir(path: &Path) -> bool {
    let c: Vec<_> = path.components().map(|c| c.as_os_str()).collect();
    in_work_dir(path) && c.len() >= 4 && c[3].to_string_lossy().starts_with("layer-")
}

/// Most files in one structured archive.
const MAX_FILES: usize = 16;

/// An image archive imported into a fresh store. `data` is either a tar as is (an
/// oci-archive or docker-archive) or, when it starts with `==> `, a list of files the
/// harness packs into a tar:
///
/// ```text
/// ==> NAME                 a regular file; its content follows up to the next "\n==> "
/// ==> NAME -> TARGET       a symlink        ==> NAME => TARGET   a hardlink
/// ==> --tag                not a file: the content is passed as --tag
/// ```
///
/// Names and contents may hold `{dN}` (`sha256:<hex>` of file N), `{hN}` (the hex
/// alone), `{sN}` (file N's size) and `{uN}` (`sha256:` of file N decompressed, a
/// diff_id), resolved from the last file to the first, so that a mutated manifest still
/// names its blobs by their real digests and the fuzzer gets past digest checks.
/// `oci` adds an `oci-layout` file when there is none. Returns the import's verdict.
pub fn image_archive(data: &[u8], oci: bool) -> Result<ImportOutcome, ImageError> {
    let scratch = Scratch::new();
    let archive = scratch.path().join("archive.tar");
    let mut tag = None;
    if data.starts_with(b"==> ") {
        let (files, t) = parse_files(data);
        tag = t;
        let mut files = resolve(files);
        if oci && !files.iter().any(|f| f.name == b"oci-layout") {
            files.push(File {
                name: b"oci-layout".to_vec(),
                link: None,
                content: br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            });
        }
        std::fs::write(&archive, pack(&files)).expect("write the archive");
    } else {
        std::fs::write(&archive, data).expect("write the archive");
    }
    let store = ImageStore::open_dir(&scratch.path().join("store"), fuzz_limits())
        .expect("open the scratch store");
    let opts = ImportOptions {
        tag,
        ..ImportOptions::default()
    };
    let result = import(&store, &archive, &opts);
    if let Ok(outcome) = &result {
        // What was imported is usable: the name normalizes to itself, the config and
        // every layer are in the store.
        let reference = Reference::parse(&outcome.name).expect("stored name parses");
        assert_eq!(reference.to_string(), outcome.name);
        let image = store.get(&outcome.name).expect("imported image resolves");
        assert_eq!(image.id, outcome.id);
        for layer in &image.layers {
            assert!(
                layer.starts_with(store.dir()),
                "{layer:?} outside the store"
            );
        }
        store.remove(&outcome.name, true).expect("remove the image");
    }
    // Only the archive and the store in the scratch dir; nothing in the store's tmp.
    let top: Vec<_> = std::fs::read_dir(scratch.path())
        .expect("read scratch")
        .map(|e| e.expect("scratch entry").file_name())
        .collect();
    assert!(top.len() == 2, "import wrote next to its store: {top:?}");
    assert!(
        std::fs::read_dir(scratch.path().join("store/tmp"))
            .expect("read store/tmp")
            .next()
            .is_none(),
        "an import left its work dir behind"
    );
    result
}

/// One file of a structured archive.
struct File {
    name: Vec<u8>,
    /// Symlink (`false`) or hardlink (`true`) target.
    link: Option<(bool, Vec<u8>)>,
    content: Vec<u8>,
}

/// Splits `==> NAME\ncontent` sections; returns the files and the `--tag` section.
fn parse_files(data: &[u8]) -> (Vec<File>, Option<String>) {
    let mut files = Vec::new();
    let mut tag = None;
    let body = &data[b"==> ".len()..];
    for section in split_sections(body).take(MAX_FILES) {
        let (header, content) = match section.iter().position(|&b| b == b'\n') {
            Some(i) => (&section[..i], &section[i + 1..]),
            None => (section, &[][..]),
        };
        if header == b"--tag" {
            tag = Some(String::from_utf8_lossy(content).into_owned());
            continue;
        }
        let link = |sep: &[u8]| {
            find(header, sep).map(|i| (header[..i].to_vec(), header[i + sep.len()..].to_vec()))
        };
        let file = if let Some((name, target)) = link(b" -> ") {
            File {
                name,
                link: Some((false, target)),
                content: Vec::new(),
            }
        } else if let Some((name, target)) = link(b" => ") {
            File {
                name,
                link: Some((true, target)),
                content: Vec::new(),
            }
        } else {
            File {
                name: header.to_vec(),
                link: None,
                content: content.to_vec(),
            }
        };
        files.push(file);
    }
    (files, tag)
}

/// The sections of `body` between `\n==> ` separators.
fn split_sections(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    const SEP: &[u8] = b"\n==> ";
    let mut rest = Some(body);
    std::iter::from_fn(move || {
        let cur = rest?;
        match find(cur, SEP) {
            Some(i) => {
                rest = Some(&cur[i + SEP.len()..]);
                Some(&cur[..i])
            }
            None => {
                rest = None;
                Some(cur)
            }
        }
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Replaces the `{dN}`/`{hN}`/`{sN}`/`{uN}` placeholders, last file first: a file's
/// content refers to files after it, its name and link target to itself too (anything
/// else stays as written).
fn resolve(mut files: Vec<File>) -> Vec<File> {
    let mut facts: Vec<Option<Facts>> = vec![None; files.len()];
    for i in (0..files.len()).rev() {
        let f = &mut files[i];
        f.content = substitute(&f.content, i + 1, &facts);
        facts[i] = Some(Facts {
            digest: Sha256Digest::of(&f.content),
            size: f.content.len(),
            diff_id: Sha256Digest::of(&decompressed(&f.content)),
        });
        f.name = substitute(&f.name, i, &facts);
        if let Some((_, target)) = &mut f.link {
            *target = substitute(target, i, &facts);
        }
    }
    files
}

/// What placeholders can say about a file.
#[derive(Clone)]
struct Facts {
    digest: Sha256Digest,
    size: usize,
    diff_id: Sha256Digest,
}

/// `text` with the placeholders of files `first..` replaced.
fn substitute(text: &[u8], first: usize, facts: &[Option<Facts>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if let [b'{', kind @ (b'd' | b'h' | b's' | b'u'), n @ b'0'..=b'9', b'}', ..] = text[i..] {
            let n = usize::from(n - b'0');
            if let (true, Some(Some(f))) = (n >= first, facts.get(n)) {
                let value = match kind {
                    b'd' => f.digest.to_string(),
                    b'h' => f.digest.hex().to_string(),
                    b's' => f.size.to_string(),
                    _ => f.diff_id.to_string(),
                };
                out.extend_from_slice(value.as_bytes());
                i += 4;
                continue;
            }
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

/// `content` decompressed by its magic (bounded), or as is.
fn decompressed(content: &[u8]) -> Vec<u8> {
    let bound = fuzz_limits().max_layer_bytes;
    let mut out = Vec::new();
    let _ = match Compression::sniff(content) {
        Compression::None => return content.to_vec(),
        Compression::Gzip => flate2::read::MultiGzDecoder::new(content)
            .take(bound)
            .read_to_end(&mut out),
        Compression::Zstd => match zstd::stream::read::Decoder::new(content) {
            Ok(d) => d.take(bound).read_to_end(&mut out),
            Err(_) => return Vec::new(),
        },
    };
    out
}

/// A tar of `files` (names taken as they are, so hostile ones reach the importer).
fn pack(files: &[File]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in files {
        let mut header = tar::Header::new_gnu();
        let kind = match f.link {
            None => tar::EntryType::Regular,
            Some((false, _)) => tar::EntryType::Symlink,
            Some((true, _)) => tar::EntryType::Link,
        };
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_size(f.content.len() as u64);
        // Raw header fields: the builder's own checks (no `..`) would hide what the
        // importer must refuse. Over-long names are cut; the importer sees them cut.
        let gnu = header.as_gnu_mut().expect("gnu header");
        copy_field(&mut gnu.name, &f.name);
        if let Some((_, target)) = &f.link {
            copy_field(&mut gnu.linkname, target);
        }
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&f.content);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn copy_field(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_resolve_to_later_files() {
        let data =
            b"==> index {d1} {s1} {h2}\nsee {d1} and {h2} and {d0} and {s9}\n==> b\nhello\n==> c\n";
        let (files, tag) = parse_files(data);
        assert!(tag.is_none());
        let files = resolve(files);
        let d1 = Sha256Digest::of(b"hello");
        let d2 = Sha256Digest::of(b"");
        assert_eq!(
            String::from_utf8(files[0].name.clone()).unwrap(),
            format!("index {d1} 5 {}", d2.hex())
        );
        assert_eq!(
            String::from_utf8(files[0].content.clone()).unwrap(),
            format!("see {d1} and {} and {{d0}} and {{s9}}", d2.hex())
        );
    }

    #[test]
    fn sections_links_and_tag_are_parsed() {
        let (files, tag) = parse_files(b"==> a -> b\n==> c => d\n==> --tag\nx/y:1\n==> e");
        assert_eq!(tag.as_deref(), Some("x/y:1"));
        assert_eq!(files.len(), 3);
        assert_eq!(files[0].link, Some((false, b"b".to_vec())));
        assert_eq!(files[1].link, Some((true, b"d".to_vec())));
        assert_eq!(files[2].name, b"e");
    }
}
