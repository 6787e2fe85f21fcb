//! Reading a file of an image as the container will see it, from the unpacked layers on the
//! host, before any container exists: the overlay's union view done in userspace (upper
//! layers win, OCI whiteouts — 0:0 character devices — hide what is below, opaque
//! directories stop the lookup), with symlinks resolved inside the union. Used to resolve
//! `--user` into the numeric ids the OCI spec carries, the way docker and podman read the
//! image's /etc/passwd when they write config.json.
//!
//! The layers' contents are hostile: symlinks are followed at most [`MAX_SYMLINKS`] times
//! and never out of the union, only regular files are read, and at most `limit` bytes.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// Symlinks followed in one lookup (like the kernel's limit).
pub const MAX_SYMLINKS: usize = 40;

/// What one layer has at a path.
enum Entry {
    Missing,
    Whiteout,
    Dir { opaque: bool },
    Symlink(PathBuf),
    File(PathBuf),
}

fn entry(layer: &Path, rel: &Path) -> Entry {
    let p = layer.join(rel);
    let Ok(meta) = fs::symlink_metadata(&p) else {
        return Entry::Missing;
    };
    let ft = meta.file_type();
    if ft.is_char_device() && meta.rdev() == 0 {
        return Entry::Whiteout;
    }
    if ft.is_symlink() {
        return match fs::read_link(&p) {
            Ok(t) => Entry::Symlink(t),
            Err(_) => Entry::Missing,
        };
    }
    if ft.is_dir() {
        let opaque = matches!(
            xattr_get(&p, "trusted.overlay.opaque").as_deref(),
            Some(b"y")
        );
        return Entry::Dir { opaque };
    }
    Entry::File(p)
}

fn xattr_get(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let n = std::ffi::CString::new(name).ok()?;
    let mut buf = [0u8; 8];
    // SAFETY: NUL-terminated strings and a buffer of the given length.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| buf[..r as usize].to_vec())
}

/// The union lookup of `path` (absolute) in `layers` (lowest first). Returns the host path
/// of the regular file (or other non-directory) the container would see there.
pub fn find(layers: &[PathBuf], path: &Path) -> Option<PathBuf> {
    let mut comps: Vec<PathBuf> = Vec::new();
    push_components(&mut comps, path);
    resolve(layers, comps, 0)
}

fn push_components(out: &mut Vec<PathBuf>, path: &Path) {
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(PathBuf::from(n)),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
}

fn resolve(layers: &[PathBuf], comps: Vec<PathBuf>, depth: usize) -> Option<PathBuf> {
    if depth > MAX_SYMLINKS {
        return None;
    }
    // Layers that still contribute to the directory reached so far, topmost first.
    let mut active: Vec<&PathBuf> = layers.iter().rev().collect();
    let mut prefix = PathBuf::new();
    for (i, name) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let rel = prefix.join(name);
        let mut below: Vec<&PathBuf> = Vec::new();
        let mut found_dir = false;
        for layer in &active {
            match entry(layer, &rel) {
                Entry::Missing => continue,
                Entry::Whiteout => break,
                Entry::Symlink(target) if !found_dir => {
                    let mut next = Vec::new();
                    if !target.is_absolute() {
                        push_components(&mut next, &prefix);
                    }
                    push_components(&mut next, &target);
                    next.extend(comps[i + 1..].iter().cloned());
                    return resolve(layers, next, depth + 1);
                }
                Entry::File(p) if !found_dir => return last.then_some(p),
                Entry::Dir { opaque } => {
                    found_dir = true;
                    below.push(layer);
                    if opaque {
                        break;
                    }
                }
                // A non-directory under a directory of an upper layer is hidden by it.
                _ => break,
            }
        }
        if !found_dir || last {
            return None;
        }
        active = below;
        prefix = rel;
    }
    None
}

/// Reads the file the container would see at `path`, at most `limit` bytes; `None` when it
/// is absent or not a regular file (a FIFO or device cannot block or flood the reader).
pub fn read(layers: &[PathBuf], path: &Path, limit: u64) -> Option<String> {
    let host = find(layers, path)?;
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(host)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn layer(root: &Path, name: &str) -> PathBuf {
        let p = root.join(name);
        fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn upper_layers_win_and_symlinks_stay_in_the_union() {
        let t = tempfile::tempdir().unwrap();
        let low = layer(t.path(), "low");
        let up = layer(t.path(), "up");
        fs::create_dir_all(low.join("etc")).unwrap();
        fs::write(low.join("etc/passwd"), "low\n").unwrap();
        fs::write(low.join("etc/group"), "g\n").unwrap();
        fs::create_dir_all(up.join("etc")).unwrap();
        fs::write(up.join("etc/passwd"), "up\n").unwrap();
        // /data -> /etc (absolute: resolved in the union), /x -> ../../../../etc/group.
        symlink("/etc", up.join("data")).unwrap();
        symlink("../../../../etc/group", up.join("x")).unwrap();
        let outside = t.path().join("secret");
        fs::write(&outside, "host secret\n").unwrap();
        symlink(&outside, up.join("escape")).unwrap();
        symlink("loop", up.join("loop")).unwrap();
        let layers = vec![low, up];
        let r = |p: &str| read(&layers, Path::new(p), 1 << 20);
        assert_eq!(r("/etc/passwd").as_deref(), Some("up\n"));
        assert_eq!(r("/etc/group").as_deref(), Some("g\n"), "merged directory");
        assert_eq!(r("/data/passwd").as_deref(), Some("up\n"));
        assert_eq!(
            r("/x").as_deref(),
            Some("g\n"),
            ".. stops at the union's root"
        );
        assert_eq!(
            r("/escape"),
            None,
            "an absolute symlink points into the union, not the host"
        );
        assert_eq!(r("/loop"), None);
        assert_eq!(r("/etc"), None, "directories are not read");
        assert_eq!(r("/nope/passwd"), None);
    }

    #[test]
    fn a_file_in_an_upper_layer_hides_a_directory_below() {
        let t = tempfile::tempdir().unwrap();
        let low = layer(t.path(), "low");
        let up = layer(t.path(), "up");
        fs::create_dir_all(low.join("etc")).unwrap();
        fs::write(low.join("etc/passwd"), "low\n").unwrap();
        fs::write(up.join("etc"), "not a dir").unwrap();
        assert_eq!(read(&[low, up], Path::new("/etc/passwd"), 100), None);
    }
}
