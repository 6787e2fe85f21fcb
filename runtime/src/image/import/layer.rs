//! One layer blob through one pass: read -> sha256 + count (blob digest and size) ->
//! decompress -> sha256 + count (diff_id, bounded) -> safe unpack into the work dir.
//!
//! An uncompressed blob is its own diff_id: it is read once by the unpacker and hashed on
//! a second thread behind it (`plain`). A compressed blob of some size is read, hashed
//! and decompressed on a second thread while the unpacker hashes the tar stream.

use std::io::{BufReader, Read};

use super::super::digest::Tracked;
use super::super::store::{LayerRecord, Transaction};
use super::super::unpack::{unpack_layer, unpack_layer_direct, UnpackStats};
use super::super::Limits;
use super::super::{ImageError, Sha256Digest};
use crate::image::progress::Progress;

/// Read buffer between the blob and the decompressor.
const READ_BUFFER: usize = 1 << 20;

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (one or more members).
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// From a layer media type (OCI or Docker); unknown types are an error.
    pub fn from_media_type(media_type: &str) -> Result<Compression, ImageError> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Ok(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Compression::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Ok(Compression::Zstd),
            other => Err(ImageError::invalid(
                "layer media type",
                format!("unsupported media type {other:?}"),
            )),
        }
    }

    /// From the first bytes of a blob.
    pub fn sniff(magic: &[u8]) -> Compression {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The OCI media type for a layer with this compression.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

enum Decoder<R: Read> {
    /// Read straight into the chunk buffers: a BufReader would only add a copy.
    Plain(R),
    Gzip(flate2::bufread::MultiGzDecoder<BufReader<R>>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<R>>),
}

impl<R: Read> Decoder<R> {
    fn new(compression: Compression, inner: R) -> Result<Self, ImageError> {
        let buffered = |inner| BufReader::with_capacity(READ_BUFFER, inner);
        Ok(match compression {
            Compression::None => Decoder::Plain(inner),
            Compression::Gzip => {
                Decoder::Gzip(flate2::bufread::MultiGzDecoder::new(buffered(inner)))
            }
            Compression::Zstd => Decoder::Zstd(
                zstd::stream::read::Decoder::with_buffer(buffered(inner))
                    .map_err(|e| ImageError::io("start zstd decoder", e))?,
            ),
        })
    }

    /// The blob reader, for draining what the decoder did not consume.
    fn into_inner(self) -> R {
        match self {
            Decoder::Plain(r) => r,
            Decoder::Gzip(d) => d.into_inner().into_inner(),
            Decoder::Zstd(d) => d.finish().into_inner(),
        }
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
            Decoder::Zstd(r) => r.read(buf),
        }
    }
}

/// One layer to bring in.
pub(crate) struct LayerInput<'a> {
    /// The blob.
    pub reader: Box<dyn Read + Send + 'a>,
    /// Blob length when known (for the progress bar).
    pub length: Option<u64>,
    /// How the blob is compressed.
    pub compression: Compression,
    /// Digest and size a manifest declared for the blob, to verify.
    pub declared: Option<(Sha256Digest, u64)>,
    /// The diff_id the image config declared, to verify.
    pub expected_diff_id: Option<Sha256Digest>,
    /// Media type to record.
    pub media_type: String,
    /// A name for messages and the progress bar.
    pub label: String,
}

/// Brings one layer into the transaction: unpacks it (unless the cache has its declared
/// diff_id already) and verifies digest, size and diff_id. Returns its record and
/// whether it was unpacked.
pub(crate) fn bring_layer(
    txn: &Transaction<'_>,
    input: LayerInput<'_>,
    show_progress: bool,
) -> Result<(LayerRecord, bool), ImageError> {
    let limits = *txn.store().limits();
    let label = input.label.clone();
    let wrap = |e: ImageError| ImageError::Layer {
        digest: label.clone(),
        error: Box::new(e),
    };

    if let (Some((digest, size)), Some(diff_id)) = (&input.declared, &input.expected_diff_id) {
        if txn.has_layer(diff_id) {
            // The cached layer is the one named by the (verified) config; the blob is
            // not needed.
            return Ok((
                LayerRecord {
                    digest: digest.to_string(),
                    size: *size,
                    media_type: input.media_type,
                    diff_id: diff_id.to_string(),
                },
                false,
            ));
        }
    }

    if let (None, Some(diff_id)) = (&input.declared, &input.expected_diff_id) {
        if txn.has_layer(diff_id) {
            // Cached, but the blob digest is unknown (docker-archive): hash it only.
            let mut raw = Tracked::new(input.reader, true, limits.max_layer_bytes);
            let over = raw.over_limit();
            if let Err(e) = raw.drain() {
                return Err(wrap(if over.hit() {
                    ImageError::TooLarge {
                        what: "layer blob".into(),
                        limit: limits.max_layer_bytes,
                        unit: "bytes",
                    }
                } else {
                    ImageError::io("read layer blob", e)
                }));
            }
            let (digest, size, _) = raw.finish();
            let digest = digest.expect("hashed");
            return Ok((
                LayerRecord {
                    digest: digest.to_string(),
                    size,
                    media_type: input.media_type,
                    diff_id: diff_id.to_string(),
                },
                false,
            ));
        }
    }

    let progress = Progress::new(
        show_progress,
        input.length.unwrap_or(0),
        short_label(&input.label),
    );
    let raw_limit = input
        .declared
        .as_ref()
        .map_or(limits.max_layer_bytes, |(_, size)| *size);
    let dir = txn.new_layer_dir().map_err(wrap)?;
    let reader = progress.wrap(input.reader);
    let compression = input.compression;
    let threaded = input.length.map_or(true, |len| len >= PIPELINE_THRESHOLD);
    let (unpacked, drained, plain_over, plain_digest, produced) =
        if compression == Compression::None {
            // One read of the blob, by the unpacker; a second thread hashes behind it. The
            // blob is also the uncompressed layer: one bound for both.
            let limit = raw_limit.min(limits.max_layer_bytes);
            let (unpacked, consumed) = super::plain::unpack_hashed(reader, limit, |stream| {
                unpack_layer_direct(stream, &dir, &limits)
            });
            let over_raw = consumed.over_limit && raw_limit <= limits.max_layer_bytes;
            let produced = Produced {
                digest: consumed.digest,
                size: consumed.size,
                over_limit: over_raw,
                error: consumed.error,
            };
            (
                unpacked,
                Ok(()),
                consumed.over_limit && !over_raw,
                None,
                produced,
            )
        } else if threaded {
            // Two threads: one reads, hashes and decompresses the blob, the other unpacks
            // (and hashes the uncompressed stream), like `gzip -d | tar -x` with digests.
            std::thread::scope(|scope| {
                let (tx, rx) = std::sync::mpsc::sync_channel(CHANNEL_DEPTH);
                // Spent buffers go back to the reader thread, so chunks are not reallocated.
                let (recycle_tx, recycle_rx) = std::sync::mpsc::sync_channel(CHANNEL_DEPTH + 2);
                let producer =
                    scope.spawn(move || produce(reader, compression, raw_limit, tx, recycle_rx));
                let mut plain = Tracked::new(
                    ChannelReader::new(rx, recycle_tx),
                    compression != Compression::None,
                    limits.max_layer_bytes,
                );
                let plain_over = plain.over_limit();
                let (unpacked, drained) = unpack_and_drain(&mut plain, &dir, &limits);
                let (plain_digest, _, channel) = plain.finish();
                drop(channel); // stops a producer still sending after an unpack error
                let produced = producer.join().expect("layer reader thread panicked");
                (unpacked, drained, plain_over.hit(), plain_digest, produced)
            })
        } else {
            // Small blobs: one thread; handing chunks between threads would cost more. The
            // buffer spares a read(2) per 512-byte tar header.
            let raw = Tracked::new(
                BufReader::with_capacity(READ_BUFFER, reader),
                true,
                raw_limit,
            );
            let raw_over = raw.over_limit();
            let decoder = Decoder::new(compression, raw).map_err(wrap)?;
            let mut plain = Tracked::new(
                decoder,
                compression != Compression::None,
                limits.max_layer_bytes,
            );
            let plain_over = plain.over_limit();
            let (unpacked, drained) = unpack_and_drain(&mut plain, &dir, &limits);
            let (plain_digest, _, decoder) = plain.finish();
            let mut raw = decoder.into_inner();
            // Read to the end even after a failure: the blob's digest tells a tampered
            // blob from a broken one.
            let error = raw.drain().err();
            let (digest, size, _) = raw.finish();
            let produced = Produced {
                digest: digest.expect("raw stream is hashed"),
                size,
                over_limit: raw_over.hit(),
                error,
            };
            (unpacked, drained, plain_over.hit(), plain_digest, produced)
        };
    progress.finish();

    // A blob that is not the one the manifest names is the error to report, whatever
    // else failed while unpacking it.
    if let Some((want_digest, want_size)) = &input.declared {
        if produced.size == *want_size && &produced.digest != want_digest {
            return Err(wrap(ImageError::DigestMismatch {
                what: "layer blob".into(),
                expected: want_digest.to_string(),
                actual: produced.digest.to_string(),
            }));
        }
    }
    if produced.over_limit {
        return Err(wrap(match &input.declared {
            Some((_, size)) => ImageError::SizeMismatch {
                what: "layer blob (longer than declared)".into(),
                expected: *size,
                actual: produced.size,
            },
            None => ImageError::TooLarge {
                what: "layer blob".into(),
                limit: limits.max_layer_bytes,
                unit: "bytes",
            },
        }));
    }
    if plain_over {
        return Err(wrap(ImageError::TooLarge {
            what: "uncompressed layer".into(),
            limit: limits.max_layer_bytes,
            unit: "bytes",
        }));
    }
    if let Some(e) = produced.error {
        return Err(wrap(ImageError::invalid(
            format!("{compression:?} layer stream"),
            e.to_string(),
        )));
    }
    unpacked.map_err(wrap)?;
    drained.map_err(|e| wrap(ImageError::invalid("layer stream", e.to_string())))?;
    let (digest, size) = (produced.digest, produced.size);
    let diff_id = plain_digest.unwrap_or_else(|| digest.clone());

    if let Some((want_digest, want_size)) = &input.declared {
        if size != *want_size {
            return Err(wrap(ImageError::SizeMismatch {
                what: "layer blob".into(),
                expected: *want_size,
                actual: size,
            }));
        }
        if &digest != want_digest {
            return Err(wrap(ImageError::DigestMismatch {
                what: "layer blob".into(),
                expected: want_digest.to_string(),
                actual: digest.to_string(),
            }));
        }
    }
    if let Some(want) = &input.expected_diff_id {
        if &diff_id != want {
            return Err(wrap(ImageError::DigestMismatch {
                what: "uncompressed layer (diff_id in the image config)".into(),
                expected: want.to_string(),
                actual: diff_id.to_string(),
            }));
        }
    }
    // Same content as a layer already cached or staged: add_layer keeps that one.
    txn.add_layer(dir, diff_id.clone());
    Ok((
        LayerRecord {
            digest: digest.to_string(),
            size,
            media_type: input.media_type,
            diff_id: diff_id.to_string(),
        },
        true,
    ))
}

/// Compressed blobs at least this large (or of unknown length) are read on a second
/// thread.
const PIPELINE_THRESHOLD: u64 = 1 << 20;
/// Chunks in flight between the reader and the unpacker.
const CHANNEL_DEPTH: usize = 8;
/// Size of one chunk of uncompressed data.
const CHUNK: usize = 1 << 20;

type Chunk = std::io::Result<Vec<u8>>;

/// What the reader thread saw of the blob.
struct Produced {
    digest: Sha256Digest,
    size: u64,
    over_limit: bool,
    error: Option<std::io::Error>,
}

/// Reader thread: blob -> sha256/count (bounded) -> decompress -> chunks to `tx`; then
/// the rest of the blob, so digest and size cover all of it.
/// Unpacks the tar stream, then reads the rest of it (tar end blocks, padding), which
/// counts toward the digests too.
fn unpack_and_drain<R: Read>(
    plain: &mut Tracked<R>,
    dir: &std::path::Path,
    limits: &Limits,
) -> (Result<UnpackStats, ImageError>, std::io::Result<()>) {
    let unpacked = unpack_layer(&mut *plain, dir, limits);
    let drained = if unpacked.is_ok() {
        plain.drain()
    } else {
        Ok(())
    };
    (unpacked, drained)
}

fn produce(
    reader: Box<dyn Read + Send + '_>,
    compression: Compression,
    raw_limit: u64,
    tx: std::sync::mpsc::SyncSender<Chunk>,
    recycled: std::sync::mpsc::Receiver<Vec<u8>>,
) -> Produced {
    let raw = Tracked::new(reader, true, raw_limit);
    let over = raw.over_limit();
    let finish = |raw: Tracked<Box<dyn Read + Send + '_>>, error: Option<std::io::Error>| {
        let (digest, size, _) = raw.finish();
        Produced {
            digest: digest.expect("raw stream is hashed"),
            size,
            over_limit: over.hit(),
            error,
        }
    };
    let mut decoder = match Decoder::new(compression, raw) {
        Ok(d) => d,
        Err(e) => {
            let _ = tx.send(Err(std::io::Error::other(e.to_string())));
            return Produced {
                digest: Sha256Digest::of(b""),
                size: 0,
                over_limit: false,
                error: Some(std::io::Error::other(e.to_string())),
            };
        }
    };
    loop {
        let mut chunk = recycled.try_recv().unwrap_or_default();
        chunk.resize(CHUNK, 0);
        let mut filled = 0;
        let result = loop {
            match decoder.read(&mut chunk[filled..]) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    filled += n;
                    if filled == CHUNK {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = result {
            let _ = tx.send(Err(std::io::Error::new(e.kind(), e.to_string())));
            // The whole blob's digest tells a tampered blob from a broken one.
            let mut raw = decoder.into_inner();
            let _ = raw.drain();
            return finish(raw, Some(e));
        }
        if filled == 0 {
            break;
        }
        chunk.truncate(filled);
        if tx.send(Ok(chunk)).is_err() {
            // The unpacker stopped (its error is reported, unless the blob's digest
            // shows the blob itself was wrong).
            let mut raw = decoder.into_inner();
            let _ = raw.drain();
            return finish(raw, None);
        }
    }
    drop(tx);
    let mut raw = decoder.into_inner();
    let error = raw.drain().err();
    finish(raw, error)
}

/// The unpacker's end of the channel, as a reader.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Chunk>,
    recycle: std::sync::mpsc::SyncSender<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    fn new(
        rx: std::sync::mpsc::Receiver<Chunk>,
        recycle: std::sync::mpsc::SyncSender<Vec<u8>>,
    ) -> Self {
        ChannelReader {
            rx,
            recycle,
            chunk: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    let spent = std::mem::replace(&mut self.chunk, chunk);
                    if spent.capacity() > 0 {
                        // Full or closed: the reader thread allocates instead.
                        let _ = self.recycle.try_send(spent);
                    }
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0), // the reader thread finished
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn short_label(label: &str) -> String {
    let hex = label.trim_start_matches("sha256:");
    hex.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{ImageStore, Limits};

    fn plain_tar(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o640);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(1);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, name, &data[..]).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn input(
        blob: &[u8],
        declared: Option<(Sha256Digest, u64)>,
        expected_diff_id: Option<Sha256Digest>,
    ) -> LayerInput<'_> {
        let compression = Compression::sniff(blob);
        LayerInput {
            reader: Box::new(blob),
            length: Some(blob.len() as u64),
            compression,
            declared,
            expected_diff_id,
            media_type: compression.media_type().into(),
            label: "test".into(),
        }
    }

    /// Imports `blob` as an uncompressed layer; the error if any, and whether the work
    /// dir was left empty after the failed transaction.
    fn bring(
        blob: &[u8],
        declared: Option<(Sha256Digest, u64)>,
    ) -> (Result<LayerRecord, ImageError>, bool) {
        bring_checked(blob, declared, None)
    }

    fn bring_checked(
        blob: &[u8],
        declared: Option<(Sha256Digest, u64)>,
        expected_diff_id: Option<Sha256Digest>,
    ) -> (Result<LayerRecord, ImageError>, bool) {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open_dir(tmp.path(), Limits::default()).unwrap();
        let result = {
            let txn = store.begin().unwrap();
            let result =
                bring_layer(&txn, input(blob, declared, expected_diff_id), false).map(|(r, _)| r);
            if let Ok(record) = &result {
                // The one staged layer: tmp/import-PID/<layer dir>.
                let work = std::fs::read_dir(tmp.path().join("tmp")).unwrap();
                let work = work.map(|e| e.unwrap().path()).next().unwrap();
                let layer = std::fs::read_dir(work).unwrap();
                let layer = layer.map(|e| e.unwrap().path()).next().unwrap();
                let big = std::fs::read(layer.join("dir/big")).unwrap();
                assert_eq!(big.len(), 3 << 20);
                assert!(big.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
                assert_eq!(std::fs::read(layer.join("small")).unwrap(), b"hello");
                assert_eq!(
                    record.diff_id == record.digest,
                    Compression::sniff(blob) == Compression::None
                );
            }
            result
        };
        let left = std::fs::read_dir(tmp.path().join("tmp")).unwrap().count();
        (result, left == 0)
    }

    #[test]
    fn uncompressed_layers_are_verified_and_leave_nothing_on_failure() {
        let big: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
        let blob = plain_tar(&[("small", b"hello".to_vec()), ("dir/big", big)]);
        let digest = Sha256Digest::of(&blob);
        let size = blob.len() as u64;

        let (ok, _) = bring(&blob, Some((digest.clone(), size)));
        assert_eq!(ok.unwrap().digest, digest.to_string());
        let (ok, _) = bring(&blob, None);
        assert_eq!(ok.unwrap().size, size);

        let other = Sha256Digest::of(b"other");
        let (err, clean) = bring(&blob, Some((other, size)));
        assert!(clean);
        assert!(
            err.unwrap_err().to_string().contains("digest mismatch"),
            "digest"
        );
        let (err, clean) = bring(&blob, Some((digest.clone(), size - 512)));
        assert!(clean);
        assert!(err.unwrap_err().to_string().contains("size mismatch"));
        let (err, clean) = bring(&blob, Some((digest, size + 1)));
        assert!(clean);
        assert!(err.unwrap_err().to_string().contains("size mismatch"));

        // Cut inside the big file's data.
        let (err, clean) = bring(&blob[..2 << 20], None);
        assert!(clean);
        assert!(err.unwrap_err().to_string().contains("dir/big"));
    }

    #[test]
    fn compressed_layers_past_the_pipeline_threshold_are_verified() {
        use std::io::Write as _;
        // Incompressible, so the gzip blob is past PIPELINE_THRESHOLD (the threaded path).
        let mut x = 1u32;
        let noise: Vec<u8> = (0..2 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let big: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
        let tar = plain_tar(&[
            ("small", b"hello".to_vec()),
            ("noise", noise),
            ("dir/big", big),
        ]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let blob = gz.finish().unwrap();
        assert!(blob.len() as u64 >= PIPELINE_THRESHOLD);
        let digest = Sha256Digest::of(&blob);
        let diff_id = Sha256Digest::of(&tar);
        let declared = Some((digest.clone(), blob.len() as u64));

        let (ok, _) = bring_checked(&blob, declared.clone(), Some(diff_id.clone()));
        let record = ok.unwrap();
        assert_eq!(record.digest, digest.to_string());
        assert_eq!(record.diff_id, diff_id.to_string());

        let (err, clean) = bring_checked(&blob, declared, Some(Sha256Digest::of(b"x")));
        assert!(clean);
        assert!(err.unwrap_err().to_string().contains("diff_id"));
        let (err, clean) = bring_checked(&blob[..blob.len() / 2], None, None);
        assert!(clean);
        assert!(err.is_err());
    }
}
