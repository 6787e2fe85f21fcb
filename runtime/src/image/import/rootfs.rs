//! `--rootfs`: a directory or tar of a root filesystem becomes a one-layer image (like
//! `docker import`), with a config built from `ConfigChanges`.
//!
//! A directory is streamed as a deterministic tar (sorted names, numeric owners, no
//! atime) from a writer thread into the same unpack pipeline every layer takes, so the
//! diff_id is computed on the way and the same tree always gives the same image id.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use serde_json::{json, Value};

use super::layer::{bring_layer, Compression, LayerInput};
use super::{ImportOptions, InputKind, Plan, MEDIA_CONFIG, MEDIA_MANIFEST};
use crate::image::store::Transaction;
use crate::image::{ImageError, Sha256Digest};

/// Config for a rootfs import (the `docker import --change` subset hull supports).
#[derive(Debug, Default, Clone)]
pub struct ConfigChanges {
    /// `Cmd`.
    pub cmd: Option<Vec<String>>,
    /// `Entrypoint`.
    pub entrypoint: Option<Vec<String>>,
    /// `Env` entries (`KEY=VALUE`).
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub workdir: Option<String>,
    /// `User`.
    pub user: Option<String>,
    /// `Labels`.
    pub labels: Vec<(String, String)>,
    /// `ExposedPorts` (`80/tcp`, `53/udp`; bare numbers mean tcp).
    pub exposed_ports: Vec<String>,
}

pub(crate) fn import(
    txn: &Transaction<'_>,
    path: &Path,
    kind: InputKind,
    opts: &ImportOptions,
) -> Result<Plan, ImageError> {
    let name = opts.tag.clone().ok_or_else(|| {
        ImageError::invalid(
            "rootfs import",
            "a root filesystem has no name: pass --tag NAME[:TAG]",
        )
    })?;
    let (layer, unpacked) = match kind {
        InputKind::RootfsDir => import_dir(txn, path, opts.progress)?,
        _ => {
            let file = File::open(path)
                .map_err(|e| ImageError::io(format!("open {}", path.display()), e))?;
            let length = file.metadata().map(|m| m.len()).ok();
            let compression = super::sniff_file(&file);
            bring_layer(
                txn,
                LayerInput {
                    reader: Box::new(file),
                    length,
                    compression,
                    declared: None,
                    expected_diff_id: None,
                    media_type: compression.media_type().to_string(),
                    label: path.display().to_string(),
                },
                opts.progress,
            )?
        }
    };
    let config_bytes = build_config(&layer.diff_id, &opts.changes)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {
            "mediaType": MEDIA_CONFIG,
            "digest": Sha256Digest::of(&config_bytes).to_string(),
            "size": config_bytes.len(),
        },
        "layers": [{
            "mediaType": layer.media_type,
            "digest": layer.digest,
            "size": layer.size,
        }],
    });
    Ok(Plan {
        name,
        kind,
        config_bytes,
        manifest_bytes: serde_json::to_vec(&manifest).expect("manifest serializes"),
        layers: vec![layer],
        unpacked: usize::from(unpacked),
        reused: usize::from(!unpacked),
    })
}

fn import_dir(
    txn: &Transaction<'_>,
    root: &Path,
    progress: bool,
) -> Result<(crate::image::LayerRecord, bool), ImageError> {
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| ImageError::io("create pipe", e.into()))?;
    let (reader, writer) = (File::from(reader), File::from(writer));
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || write_tree_tar(root, writer));
        let result = bring_layer(
            txn,
            LayerInput {
                reader: Box::new(reader),
                length: None,
                compression: Compression::None,
                declared: None,
                expected_diff_id: None,
                media_type: Compression::None.media_type().to_string(),
                label: root.display().to_string(),
            },
            progress,
        );
        let produced = producer.join().expect("tar writer thread panicked");
        // A reader error makes the writer fail with EPIPE: report the reader's error.
        let layer = result?;
        produced
            .map_err(|e| ImageError::io(format!("read root filesystem {}", root.display()), e))?;
        Ok(layer)
    })
}

/// Writes `root` as a tar: the root itself as `./`, then every entry, sorted by name.
fn write_tree_tar(root: &Path, out: File) -> io::Result<()> {
    let mut builder = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, out));
    let mut hardlinks: HashMap<(u64, u64), String> = HashMap::new();
    let meta = fs::symlink_metadata(root)?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            root.display()
        )));
    }
    append_entry(&mut builder, root, "./", &meta, &mut hardlinks)?;
    walk(&mut builder, root, "", &mut hardlinks)?;
    builder.into_inner()?.flush()
}

fn walk<W: Write>(
    builder: &mut tar::Builder<W>,
    dir: &Path,
    prefix: &str,
    hardlinks: &mut HashMap<(u64, u64), String>,
) -> io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        let Some(name_str) = name.to_str() else {
            return Err(io::Error::other(format!(
                "non-UTF-8 file name under {}",
                dir.display()
            )));
        };
        let path = dir.join(&name);
        let rel = format!("{prefix}{name_str}");
        let meta = fs::symlink_metadata(&path)?;
        append_entry(builder, &path, &rel, &meta, hardlinks)?;
        if meta.is_dir() {
            walk(builder, &path, &format!("{rel}/"), hardlinks)?;
        }
    }
    Ok(())
}

fn append_entry<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    rel: &str,
    meta: &fs::Metadata,
    hardlinks: &mut HashMap<(u64, u64), String>,
) -> io::Result<()> {
    let ft = meta.file_type();
    if ft.is_socket() {
        tracing::warn!(path = %path.display(), "skipping socket");
        return Ok(());
    }
    write_xattrs(builder, path, rel)?;
    let mut header = tar::Header::new_gnu();
    header.set_mode(meta.mode() & 0o7777);
    header.set_uid(meta.uid().into());
    header.set_gid(meta.gid().into());
    header.set_mtime(meta.mtime().max(0) as u64);
    header.set_size(0);
    if ft.is_dir() {
        header.set_entry_type(tar::EntryType::Directory);
        let rel = if rel.ends_with('/') {
            rel.to_string()
        } else {
            format!("{rel}/")
        };
        builder.append_data(&mut header, rel, io::empty())
    } else if ft.is_symlink() {
        header.set_entry_type(tar::EntryType::Symlink);
        let target = fs::read_link(path)?;
        builder.append_link(&mut header, rel, target)
    } else if ft.is_file() {
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = hardlinks.get(&key) {
                header.set_entry_type(tar::EntryType::Link);
                return builder.append_link(&mut header, rel, first);
            }
            hardlinks.insert(key, rel.to_string());
        }
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(meta.len());
        let file = File::open(path)?;
        builder.append_data(&mut header, rel, ExactReader::new(file, meta.len(), path))
    } else {
        let kind = if ft.is_char_device() {
            tar::EntryType::Char
        } else if ft.is_block_device() {
            tar::EntryType::Block
        } else {
            tar::EntryType::Fifo
        };
        header.set_entry_type(kind);
        if kind != tar::EntryType::Fifo {
            let rdev = meta.rdev();
            header.set_device_major(libc::major(rdev))?;
            header.set_device_minor(libc::minor(rdev))?;
        }
        builder.append_data(&mut header, rel, io::empty())
    }
}

/// Emits a PAX header carrying the entry's xattrs (`SCHILY.xattr.NAME`), if it has any.
fn write_xattrs<W: Write>(builder: &mut tar::Builder<W>, path: &Path, rel: &str) -> io::Result<()> {
    let xattrs = read_xattrs(path)?;
    if xattrs.is_empty() {
        return Ok(());
    }
    let mut records = Vec::new();
    for (name, value) in xattrs {
        let mut body = b"SCHILY.xattr.".to_vec();
        body.extend_from_slice(&name);
        body.push(b'=');
        body.extend_from_slice(&value);
        body.push(b'\n');
        // A record is "LEN BODY" where LEN counts itself, the space and the body.
        let mut len = body.len() + 2;
        while len != body.len() + 1 + len.to_string().len() {
            len = body.len() + 1 + len.to_string().len();
        }
        records.extend_from_slice(format!("{len} ").as_bytes());
        records.extend_from_slice(&body);
    }
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::XHeader);
    header.set_size(records.len() as u64);
    header.set_mode(0o644);
    let short: String = rel
        .chars()
        .rev()
        .take(80)
        .collect::<String>()
        .chars()
        .rev()
        .collect();
    header.set_path(format!("PaxHeaders/{}", short.trim_start_matches('/')))?;
    header.set_cksum();
    builder.append(&header, &records[..])
}

/// All xattrs of `path` (not following symlinks), except `trusted.*`, which are the
/// host's overlayfs bookkeeping, not image content.
fn read_xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let cpath = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut names = vec![0u8; 4096];
    // SAFETY: cpath is NUL-terminated; names is a writable buffer of names.len() bytes.
    let n = unsafe { libc::llistxattr(cpath.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENOTSUP) => Ok(Vec::new()),
            _ => Err(err),
        };
    }
    let mut out = Vec::new();
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        if name.starts_with(b"trusted.") {
            continue;
        }
        let cname = CString::new(name).map_err(io::Error::other)?;
        let mut value = vec![0u8; 65536];
        // SAFETY: both strings are NUL-terminated; value is a writable buffer of
        // value.len() bytes.
        let len = unsafe {
            libc::lgetxattr(
                cpath.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if len < 0 {
            return Err(io::Error::last_os_error());
        }
        value.truncate(len as usize);
        out.push((name.to_vec(), value));
    }
    Ok(out)
}

/// Reads exactly `len` bytes of a file, failing if it changed size while being read (a
/// short read would corrupt the tar stream).
struct ExactReader<'a> {
    file: File,
    left: u64,
    path: &'a Path,
}

impl<'a> ExactReader<'a> {
    fn new(file: File, len: u64, path: &'a Path) -> Self {
        ExactReader {
            file,
            left: len,
            path,
        }
    }
}

impl Read for ExactReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = self.left.min(buf.len() as u64) as usize;
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::other(format!(
                "{} shrank while being imported",
                self.path.display()
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The config of a rootfs image. No creation time, so the same tree and changes always
/// give the same image id (imports are idempotent).
fn build_config(diff_id: &str, changes: &ConfigChanges) -> Result<Vec<u8>, ImageError> {
    let mut config = serde_json::Map::new();
    if !changes.env.is_empty() {
        for e in &changes.env {
            if !e.contains('=') {
                return Err(ImageError::invalid(
                    "--env",
                    format!("{e:?} is not KEY=VALUE"),
                ));
            }
        }
        config.insert("Env".into(), json!(changes.env));
    }
    if let Some(cmd) = &changes.cmd {
        config.insert("Cmd".into(), json!(cmd));
    }
    if let Some(ep) = &changes.entrypoint {
        config.insert("Entrypoint".into(), json!(ep));
    }
    if let Some(wd) = &changes.workdir {
        if !wd.starts_with('/') {
            return Err(ImageError::invalid(
                "--workdir",
                format!("{wd:?} is not absolute"),
            ));
        }
        config.insert("WorkingDir".into(), json!(wd));
    }
    if let Some(user) = &changes.user {
        config.insert("User".into(), json!(user));
    }
    if !changes.labels.is_empty() {
        let labels: serde_json::Map<String, Value> = changes
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        config.insert("Labels".into(), Value::Object(labels));
    }
    if !changes.exposed_ports.is_empty() {
        let mut ports = serde_json::Map::new();
        for p in &changes.exposed_ports {
            let p = if p.contains('/') {
                p.clone()
            } else {
                format!("{p}/tcp")
            };
            let (num, proto) = p.split_once('/').expect("has a slash");
            if num.parse::<u16>().is_err() || !matches!(proto, "tcp" | "udp" | "sctp") {
                return Err(ImageError::invalid(
                    "--expose",
                    format!("{p:?} is not PORT[/tcp|udp|sctp]"),
                ));
            }
            ports.insert(p, json!({}));
        }
        config.insert("ExposedPorts".into(), Value::Object(ports));
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let doc = json!({
        "architecture": arch,
        "os": "linux",
        "config": Value::Object(config),
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "hull image import --rootfs"}],
    });
    let bytes = serde_json::to_vec(&doc).expect("config serializes");
    // Validate with oci-spec, as every consumer will parse it that way.
    serde_json::from_slice::<oci_spec::image::ImageConfiguration>(&bytes)
        .map_err(|e| ImageError::invalid("image config", e.to_string()))?;
    Ok(bytes)
}
