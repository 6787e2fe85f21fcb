//! A stored layer back into a tar stream (for `hull push` and `hull save`): the store
//! keeps unpacked layers only, so the tar is rebuilt from the layer directory.
//!
//! The stream is deterministic (entries sorted by name, metadata as stored), so the same
//! layer always gives the same bytes and digests. Overlay whiteouts go back to OCI ones (a
//! 0:0 character device `NAME` becomes an empty `.wh.NAME`, `trusted.overlay.opaque=y`
//! an empty `DIR/.wh..wh..opq`); hardlinked files become tar hardlinks to their first
//! path; xattrs other than `trusted.*` are kept as `SCHILY.xattr.*` PAX records. The
//! result usually differs from the tar the layer came from (entry order, headers), so its
//! diff_id does too, and an exported image carries a config with the new diff_ids.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::ImageError;

/// Writes layer directory `dir` as a tar to `out` and returns `out`.
pub fn write_layer_tar<W: Write>(dir: &Path, out: W) -> Result<W, ImageError> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut links = HashMap::new();
    walk(&mut builder, dir, "", &mut links)?;
    builder
        .into_inner()
        .map_err(|e| ImageError::io("finish layer tar", e))
}

fn walk<W: Write>(
    builder: &mut tar::Builder<W>,
    dir: &Path,
    prefix: &str,
    links: &mut HashMap<(u64, u64), String>,
) -> Result<(), ImageError> {
    let ctx = |p: &Path| format!("read {}", p.display());
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(|e| ImageError::io(ctx(dir), e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| ImageError::io(ctx(dir), e))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let path = dir.join(&name);
        let name = name.to_str().ok_or_else(|| {
            ImageError::unsafe_entry(path.display().to_string(), "name is not UTF-8")
        })?;
        let rel = format!("{prefix}{name}");
        let meta = fs::symlink_metadata(&path).map_err(|e| ImageError::io(ctx(&path), e))?;
        let ft = meta.file_type();
        let err = |e: std::io::Error| ImageError::io(format!("add {rel} to the layer tar"), e);
        if ft.is_char_device() && meta.rdev() == 0 {
            // An overlay whiteout.
            let mut header = empty_file_header(&meta);
            builder
                .append_data(&mut header, format!("{prefix}.wh.{name}"), std::io::empty())
                .map_err(err)?;
            continue;
        }
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        let xattrs = read_xattrs(&path)?;
        let opaque = xattrs
            .iter()
            .any(|(k, v)| k == "trusted.overlay.opaque" && v == b"y");
        let pax: Vec<(String, Vec<u8>)> = xattrs
            .into_iter()
            .filter(|(k, _)| !k.starts_with("trusted."))
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v))
            .collect();
        if !pax.is_empty() {
            builder
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(err)?;
        }
        if ft.is_dir() {
            header.set_size(0);
            builder
                .append_data(&mut header, format!("{rel}/"), std::io::empty())
                .map_err(err)?;
            if opaque {
                let mut h = empty_file_header(&meta);
                builder
                    .append_data(&mut h, format!("{rel}/.wh..wh..opq"), std::io::empty())
                    .map_err(err)?;
            }
            walk(builder, &path, &format!("{rel}/"), links)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(err)?;
            header.set_size(0);
            builder
                .append_link(&mut header, &rel, target)
                .map_err(err)?;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_size(0);
                    builder.append_link(&mut header, &rel, first).map_err(err)?;
                    continue;
                }
                links.insert((meta.dev(), meta.ino()), rel.clone());
            }
            let file = fs::File::open(&path).map_err(err)?;
            builder.append_data(&mut header, &rel, file).map_err(err)?;
        } else {
            // Devices and fifos: the header carries everything.
            header.set_size(0);
            builder
                .append_data(&mut header, &rel, std::io::empty())
                .map_err(err)?;
        }
    }
    Ok(())
}

fn empty_file_header(meta: &fs::Metadata) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o600);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(meta.mtime().max(0) as u64);
    header.set_size(0);
    header
}

/// The extended attributes of `path` (not following a symlink), sorted by name.
fn read_xattrs(path: &Path) -> Result<Vec<(String, Vec<u8>)>, ImageError> {
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| ImageError::invalid("layer path", "contains NUL"))?;
    let err = |e: std::io::Error| ImageError::io(format!("list xattrs of {}", path.display()), e);
    let mut names = vec![0u8; 4096];
    let n = loop {
        // SAFETY: cpath is NUL-terminated; the buffer pointer and length describe `names`.
        let n = unsafe { libc::llistxattr(cpath.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        if n >= 0 {
            break n as usize;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) if names.len() < 1 << 20 => names.resize(names.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(err(e)),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let key = String::from_utf8_lossy(name).into_owned();
        let cname = CString::new(name).expect("split at NUL");
        let mut value = vec![0u8; 4096];
        let len = loop {
            // SAFETY: both strings are NUL-terminated; pointer and length describe `value`.
            let len = unsafe {
                libc::lgetxattr(
                    cpath.as_ptr(),
                    cname.as_ptr(),
                    value.as_mut_ptr().cast(),
                    value.len(),
                )
            };
            if len >= 0 {
                break len as usize;
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ERANGE) if value.len() < 1 << 20 => value.resize(value.len() * 4, 0),
                _ => return Err(err(e)),
            }
        };
        value.truncate(len);
        out.push((key, value));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::unpack::unpack_layer;
    use crate::image::Limits;

    #[test]
    fn a_layer_round_trips_through_unpack() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir_all(src.join("etc/sub")).unwrap();
        fs::write(src.join("etc/a"), b"a").unwrap();
        fs::hard_link(src.join("etc/a"), src.join("etc/b")).unwrap();
        std::os::unix::fs::symlink("a", src.join("etc/link")).unwrap();
        let tar1 = write_layer_tar(&src, Vec::new()).unwrap();
        let tar2 = write_layer_tar(&src, Vec::new()).unwrap();
        assert_eq!(tar1, tar2, "deterministic");
        let dest = tmp.path().join("dest");
        fs::create_dir(&dest).unwrap();
        unpack_layer(&tar1[..], &dest, &Limits::default()).unwrap();
        assert_eq!(fs::read(dest.join("etc/b")).unwrap(), b"a");
        assert_eq!(
            fs::metadata(dest.join("etc/a")).unwrap().ino(),
            fs::metadata(dest.join("etc/b")).unwrap().ino()
        );
        assert_eq!(
            fs::read_link(dest.join("etc/link")).unwrap(),
            Path::new("a")
        );
        assert!(dest.join("etc/sub").is_dir());
    }
}
