//! `hull save`: stored images into a docker-archive or an oci-archive tar that `hull load`
//! (`image import`), `docker load`, `podman load` and skopeo read.
//!
//! Layers are rebuilt from the layer cache (`export`), uncompressed, so each layer's
//! digest is its diff_id and the config gets the rebuilt diff_ids. The archive is written
//! to a temporary file next to the destination and renamed into place when complete.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::export::write_layer_tar;
use super::{ImageError, ImageStore, Reference, Sha256Digest};

/// The archive format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    /// `manifest.json`, `<config>.json`, `<layer>/layer.tar` (docker save).
    DockerArchive,
    /// An OCI image layout in a tar.
    OciArchive,
}

/// Writes the images named by `references` to `out`.
pub fn save(
    store: &ImageStore,
    references: &[String],
    format: SaveFormat,
    out: &Path,
) -> Result<(), ImageError> {
    let tmp = out.with_file_name(format!(
        ".{}.hull-save-{}",
        out.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("archive"),
        std::process::id()
    ));
    let result = write_archive(store, references, format, &tmp);
    match result {
        Ok(()) => std::fs::rename(&tmp, out)
            .map_err(|e| ImageError::io(format!("rename to {}", out.display()), e)),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn write_archive(
    store: &ImageStore,
    references: &[String],
    format: SaveFormat,
    path: &Path,
) -> Result<(), ImageError> {
    let file =
        File::create(path).map_err(|e| ImageError::io(format!("create {}", path.display()), e))?;
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
    let mut written = std::collections::HashSet::new();
    let mut docker_manifest = Vec::new();
    let mut oci_manifests = Vec::new();
    let layer_dir = path.with_extension("layers");
    std::fs::create_dir_all(&layer_dir)
        .map_err(|e| ImageError::io(format!("create {}", layer_dir.display()), e))?;
    let _cleanup = RemoveDir(layer_dir.clone());
    for reference in references {
        let record = store.find(reference)?;
        let name = Reference::parse(&record.name).ok();
        let config_bytes = store.read_blob(&Sha256Digest::parse(&record.id)?)?;
        let mut config: serde_json::Value = serde_json::from_slice(&config_bytes)
            .map_err(|e| ImageError::invalid("stored config", e.to_string()))?;
        let mut layers = Vec::new();
        for layer in &record.layers {
            let src = store.layer_path(&Sha256Digest::parse(&layer.diff_id)?);
            let staged = layer_dir.join(layer.diff_id.trim_start_matches("sha256:"));
            let (digest, size) = stage_layer(&src, &staged)?;
            if written.insert(digest.clone()) {
                let entry = match format {
                    SaveFormat::DockerArchive => format!("{}/layer.tar", digest.hex()),
                    SaveFormat::OciArchive => format!("blobs/sha256/{}", digest.hex()),
                };
                append_file(&mut tar, &entry, &staged)?;
            }
            let _ = std::fs::remove_file(&staged);
            layers.push((digest, size));
        }
        config["rootfs"] = json!({"type": "layers",
            "diff_ids": layers.iter().map(|(d, _)| d.to_string()).collect::<Vec<_>>()});
        let config_out = serde_json::to_vec(&config).expect("config serializes");
        let config_digest = Sha256Digest::of(&config_out);
        match format {
            SaveFormat::DockerArchive => {
                let config_name = format!("{}.json", config_digest.hex());
                if written.insert(config_digest.clone()) {
                    append_bytes(&mut tar, &config_name, &config_out)?;
                }
                docker_manifest.push(json!({
                    "Config": config_name,
                    "RepoTags": name.iter().filter(|n| n.digest.is_none()).map(|n| n.to_string()).collect::<Vec<_>>(),
                    "Layers": layers.iter().map(|(d, _)| format!("{}/layer.tar", d.hex())).collect::<Vec<_>>(),
                }));
            }
            SaveFormat::OciArchive => {
                if written.insert(config_digest.clone()) {
                    append_bytes(
                        &mut tar,
                        &format!("blobs/sha256/{}", config_digest.hex()),
                        &config_out,
                    )?;
                }
                let manifest = json!({
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": config_digest.to_string(), "size": config_out.len()},
                    "layers": layers.iter().map(|(d, s)| json!({
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": d.to_string(), "size": s})).collect::<Vec<_>>(),
                });
                let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest serializes");
                let manifest_digest = Sha256Digest::of(&manifest_bytes);
                if written.insert(manifest_digest.clone()) {
                    append_bytes(
                        &mut tar,
                        &format!("blobs/sha256/{}", manifest_digest.hex()),
                        &manifest_bytes,
                    )?;
                }
                let mut desc = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest.to_string(), "size": manifest_bytes.len()});
                if let Some(n) = &name {
                    desc["annotations"] = json!({
                        "org.opencontainers.image.ref.name": n.full(),
                        "io.containerd.image.name": n.full(),
                    });
                }
                oci_manifests.push(desc);
            }
        }
    }
    match format {
        SaveFormat::DockerArchive => {
            append_bytes(
                &mut tar,
                "manifest.json",
                &serde_json::to_vec(&docker_manifest).expect("json"),
            )?;
        }
        SaveFormat::OciArchive => {
            append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
            let index = json!({"schemaVersion": 2, "manifests": oci_manifests});
            append_bytes(
                &mut tar,
                "index.json",
                &serde_json::to_vec(&index).expect("json"),
            )?;
        }
    }
    let mut out = tar
        .into_inner()
        .map_err(|e| ImageError::io(format!("write {}", path.display()), e))?;
    out.flush()
        .map_err(|e| ImageError::io(format!("write {}", path.display()), e))?;
    Ok(())
}

/// Writes the layer's tar to `staged`; its digest (= diff_id) and size.
fn stage_layer(src: &Path, staged: &Path) -> Result<(Sha256Digest, u64), ImageError> {
    struct Hashing<W>(W, Sha256, u64);
    impl<W: Write> Write for Hashing<W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.0.write(buf)?;
            self.1.update(&buf[..n]);
            self.2 += n as u64;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.0.flush()
        }
    }
    let file = File::create(staged)
        .map_err(|e| ImageError::io(format!("create {}", staged.display()), e))?;
    let w = Hashing(BufWriter::with_capacity(1 << 20, file), Sha256::new(), 0);
    let mut w = write_layer_tar(src, w)?;
    w.flush()
        .map_err(|e| ImageError::io(format!("write {}", staged.display()), e))?;
    Ok((Sha256Digest::from_hasher(w.1), w.2))
}

fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    path: &Path,
) -> Result<(), ImageError> {
    let mut file =
        File::open(path).map_err(|e| ImageError::io(format!("open {}", path.display()), e))?;
    tar.append_file(name, &mut file)
        .map_err(|e| ImageError::io(format!("add {name} to the archive"), e))
}

fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    bytes: &[u8],
) -> Result<(), ImageError> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, bytes)
        .map_err(|e| ImageError::io(format!("add {name} to the archive"), e))
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
