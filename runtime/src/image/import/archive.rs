//! Random access to the files of an image given as a directory or as a tar.
//!
//! A tar is indexed once (headers only, data skipped by seeking) and files are then read
//! in place with pread, so a multi-gigabyte archive is never copied or extracted.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::super::header_budget::HeaderBudget;
use super::super::{ImageError, Limits};
use super::Compression;

/// Files of an image, by relative path (`index.json`, `blobs/sha256/<hex>`, ...).
pub(crate) trait Source {
    /// Opens a file: a reader, its size, and its compression (sniffed).
    fn open(&self, path: &str)
        -> Result<(Box<dyn Read + Send + '_>, u64, Compression), ImageError>;
    /// Whether the file exists.
    fn contains(&self, path: &str) -> bool;
    /// A name for messages.
    fn describe(&self) -> String;
}

/// Normalizes a relative path from hostile metadata (manifest.json layer paths, ...):
/// no absolute paths, no `..`.
pub(crate) fn clean_path(path: &str) -> Result<String, ImageError> {
    if path.starts_with('/') || path.contains('\0') {
        return Err(ImageError::unsafe_entry(
            path,
            "absolute path or NUL in an image file reference",
        ));
    }
    let mut parts = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => return Err(ImageError::unsafe_entry(path, "path contains '..'")),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(ImageError::unsafe_entry(path, "empty path"));
    }
    Ok(parts.join("/"))
}

/// An OCI layout directory.
pub(crate) struct DirSource {
    root: PathBuf,
}

impl DirSource {
    pub fn new(root: &Path) -> Self {
        DirSource {
            root: root.to_path_buf(),
        }
    }
}

impl Source for DirSource {
    fn open(
        &self,
        path: &str,
    ) -> Result<(Box<dyn Read + Send + '_>, u64, Compression), ImageError> {
        let full = self.root.join(clean_path(path)?);
        let file =
            File::open(&full).map_err(|e| ImageError::io(format!("open {}", full.display()), e))?;
        let meta = file
            .metadata()
            .map_err(|e| ImageError::io(format!("stat {}", full.display()), e))?;
        if !meta.is_file() {
            return Err(ImageError::invalid(
                full.display().to_string(),
                "not a regular file",
            ));
        }
        let compression = super::sniff_file(&file);
        Ok((Box::new(file), meta.len(), compression))
    }

    fn contains(&self, path: &str) -> bool {
        clean_path(path).is_ok_and(|p| self.root.join(p).is_file())
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

#[derive(Debug, Clone)]
enum Member {
    File { offset: u64, size: u64 },
    Link(String),
}

/// An indexed tar archive.
pub(crate) struct TarSource {
    path: PathBuf,
    file: File,
    members: HashMap<String, Member>,
}

impl TarSource {
    /// Indexes the archive at `path`.
    pub fn open(path: &Path, limits: &Limits) -> Result<Self, ImageError> {
        let what = format!("archive {}", path.display());
        let file =
            File::open(path).map_err(|e| ImageError::io(format!("open {}", path.display()), e))?;
        if super::sniff_file(&file) != Compression::None {
            return Err(ImageError::invalid(
                &what,
                "compressed image archives are not supported; decompress it first \
                 (or pass --rootfs if it is a root filesystem)",
            ));
        }
        let budget = HeaderBudget::new(limits.max_header_bytes);
        let mut archive =
            tar::Archive::new(budget.reader(BufReader::with_capacity(64 << 10, &file)));
        let mut members = HashMap::new();
        let mut entries = archive
            .entries_with_seek()
            .map_err(|e| ImageError::invalid(&what, e.to_string()))?;
        let mut n = 0u64;
        while let Some(entry) = budget.around(|| entries.next()) {
            if n >= limits.max_entries {
                return Err(ImageError::TooLarge {
                    what: format!("number of entries in {what}"),
                    limit: limits.max_entries,
                    unit: "entries",
                });
            }
            n += 1;
            let entry = entry.map_err(|e| {
                budget.map_error("archive", e, |e| {
                    ImageError::invalid(&what, format!("not a valid tar: {e}"))
                })
            })?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            if raw.len() > limits.max_path_bytes {
                return Err(ImageError::unsafe_entry(
                    raw.chars().take(64).collect::<String>(),
                    format!("path longer than {} bytes", limits.max_path_bytes),
                ));
            }
            let kind = entry.header().entry_type();
            if kind.is_dir() || kind == tar::EntryType::XGlobalHeader {
                continue;
            }
            let name = match clean_path(&raw) {
                Ok(n) => n,
                Err(e) => {
                    return Err(ImageError::invalid(&what, e.to_string()));
                }
            };
            let member = match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => Member::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                },
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .map(|t| String::from_utf8_lossy(&t).into_owned())
                        .unwrap_or_default();
                    // Symlink targets are relative to the link's directory, hardlink
                    // targets to the archive root.
                    let base = if kind == tar::EntryType::Symlink {
                        name.rsplit_once('/').map_or("", |(d, _)| d).to_string()
                    } else {
                        String::new()
                    };
                    Member::Link(join_lexically(&base, &target))
                }
                _ => continue,
            };
            if members.insert(name.clone(), member).is_some() {
                return Err(ImageError::invalid(
                    &what,
                    format!("duplicate entry {name:?}"),
                ));
            }
        }
        drop(archive);
        Ok(TarSource {
            path: path.to_path_buf(),
            file,
            members,
        })
    }

    fn resolve(&self, path: &str) -> Result<(u64, u64), ImageError> {
        let mut name = clean_path(path)?;
        for _ in 0..8 {
            match self.members.get(&name) {
                Some(Member::File { offset, size }) => return Ok((*offset, *size)),
                Some(Member::Link(target)) => name = clean_path(target)?,
                None => break,
            }
        }
        Err(ImageError::invalid(
            format!("archive {}", self.path.display()),
            format!("missing file {path:?}"),
        ))
    }
}

/// `base/target`, with `.`/`..` applied lexically (a `..` above the root is kept so
/// `clean_path` refuses it).
fn join_lexically(base: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        base.split('/').filter(|c| !c.is_empty()).collect()
    };
    for comp in target.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return format!("../{target}");
                }
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

impl Source for TarSource {
    fn open(
        &self,
        path: &str,
    ) -> Result<(Box<dyn Read + Send + '_>, u64, Compression), ImageError> {
        let (offset, size) = self.resolve(path)?;
        let mut magic = [0u8; 4];
        let n = self
            .file
            .read_at(&mut magic[..size.min(4) as usize], offset)
            .unwrap_or(0);
        let reader = RangeReader {
            file: &self.file,
            pos: offset,
            end: offset + size,
        };
        Ok((Box::new(reader), size, Compression::sniff(&magic[..n])))
    }

    fn contains(&self, path: &str) -> bool {
        self.resolve(path).is_ok()
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// Reads `[pos, end)` of a file with pread (no shared file offset).
struct RangeReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive is truncated",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive_with(first: tar::Header, data: &[u8]) -> tempfile::NamedTempFile {
        let mut b = tar::Builder::new(Vec::new());
        b.append(&first, data).unwrap();
        // The entry the first one (an extension header) describes.
        let mut x = tar::Header::new_ustar();
        x.set_path("x").unwrap();
        x.set_size(0);
        x.set_cksum();
        b.append(&x, &b""[..]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_path("index.json").unwrap();
        h.set_size(2);
        h.set_cksum();
        b.append(&h, &b"{}"[..]).unwrap();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, &b.into_inner().unwrap()).unwrap();
        f
    }

    #[test]
    fn oversized_headers_and_paths_are_refused() {
        let limits = Limits {
            max_header_bytes: 4096,
            max_path_bytes: 200,
            ..Limits::default()
        };
        let mut pax = tar::Header::new_ustar();
        pax.set_entry_type(tar::EntryType::XHeader);
        pax.set_size(64 << 10);
        pax.set_cksum();
        let f = archive_with(pax, &vec![b'a'; 64 << 10]);
        let err = TarSource::open(f.path(), &limits).err().unwrap();
        assert!(
            matches!(err, ImageError::TooLarge { limit: 4096, .. }),
            "{err}"
        );

        let mut long = tar::Header::new_gnu();
        long.set_entry_type(tar::EntryType::GNULongName);
        long.set_size(301);
        long.set_cksum();
        let mut name = vec![b'n'; 300];
        name.push(0);
        let f = archive_with(long, &name);
        let err = TarSource::open(f.path(), &limits).err().unwrap();
        assert!(err.to_string().contains("longer than 200"), "{err}");
        let ok = TarSource::open(f.path(), &Limits::default()).unwrap();
        assert!(ok.contains("index.json"));
    }

    #[test]
    fn cleans_and_joins_paths() {
        assert_eq!(clean_path("./blobs//sha256/x").unwrap(), "blobs/sha256/x");
        assert!(clean_path("../x").is_err());
        assert!(clean_path("/etc/passwd").is_err());
        assert_eq!(join_lexically("a/b", "../c/layer.tar"), "a/c/layer.tar");
        assert!(clean_path(&join_lexically("a", "../../x")).is_err());
    }
}
