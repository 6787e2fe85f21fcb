//! `hull diff`: what a container changed in its image, read from its writable layer
//! (docker's `A`dded, `C`hanged, `D`eleted).
//!
//! Process model only: the layer is an overlay upper directory on the host. The walk never
//! follows a symlink: the container may be running and renaming things in its layer while
//! hull reads it, so every directory is opened relative to its parent with `O_NOFOLLOW`
//! (a directory swapped for a symlink to `/` is skipped, not listed). The image layers
//! (hull's own store) decide whether a path existed before: the topmost layer holding the
//! path, or hiding it with a whiteout or an opaque directory, wins.

use std::ffi::{CStr, OsStr, OsString};
use std::fmt;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::dir::{Dir, Type};
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};

/// Most entries one `hull diff` lists (a layer holding more is reported as an error).
pub const MAX_ENTRIES: usize = 1_000_000;
/// Deepest directory nesting walked.
pub const MAX_DEPTH: usize = 1024;

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `A`, `C` or `D`.
    pub kind: ChangeKind,
    /// Absolute path inside the container.
    pub path: PathBuf,
}

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Not in the image.
    Added,
    /// In the image, changed (content, metadata, or a directory whose entries changed).
    Changed,
    /// In the image, deleted.
    Deleted,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = match self.kind {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
        };
        write!(f, "{k} {}", self.path.display())
    }
}

/// Errors of `hull diff`.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// Reading the layer failed.
    #[error("read the writable layer at {path}: {source}")]
    Read {
        /// Where.
        path: String,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// The layer is larger or deeper than hull lists.
    #[error("the writable layer has more than {MAX_ENTRIES} entries or is nested deeper than {MAX_DEPTH}")]
    TooLarge,
}

/// What hull itself adds to a process container's layer as mount points when the image
/// lacks them (the network files are bind-mounted over, the API filesystems mounted on):
/// not the container's changes, so, left empty, they are not listed (docker keeps them in
/// a layer of its own for the same reason).
pub const HULL_MOUNT_POINTS: &[&str] = &[
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/proc",
    "/sys",
    "/dev",
    "/tmp",
];

/// Lists what the writable layer `upper` changed against the image layers `lowers`
/// (lowest first), sorted by path. A missing `upper` (never started) is no change. Paths in
/// `mount_points` that the image lacks and the layer holds as an empty file or directory
/// are hull's, not the container's, and are left out (with a directory listed only
/// because of them).
pub fn diff(
    upper: &Path,
    lowers: &[PathBuf],
    mount_points: &[&str],
) -> Result<Vec<Change>, DiffError> {
    let read_err = |path: &Path, source| DiffError::Read {
        path: path.display().to_string(),
        source,
    };
    let root = match Dir::open(
        upper,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(d) => d,
        Err(nix::Error::ENOENT) => return Ok(Vec::new()),
        Err(e) => return Err(read_err(upper, e)),
    };
    let mut out = Vec::new();
    let mut skipped: Vec<PathBuf> = Vec::new();
    // (directory, its path in the container, whether its image contents are hidden)
    let mut stack = vec![(root, PathBuf::from("/"), false, 0usize)];
    while let Some((mut dir, at, hidden, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(DiffError::TooLarge);
        }
        let mut names: Vec<(OsString, Option<Type>)> = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|e| read_err(&at, e))?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            names.push((OsStr::from_bytes(name).to_owned(), entry.file_type()));
            if names.len() > MAX_ENTRIES {
                return Err(DiffError::TooLarge);
            }
        }
        for (name, _) in names {
            let path = at.join(&name);
            let cname = std::ffi::CString::new(name.as_bytes()).expect("no NUL in a file name");
            let st = match fstatat(dir.as_fd(), cname.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Removed by the running container meanwhile.
                Err(nix::Error::ENOENT) => continue,
                Err(e) => return Err(read_err(&path, e)),
            };
            let fmt = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
            let in_image = !hidden && exists_in_image(lowers, &path);
            if fmt == SFlag::S_IFCHR && st.st_rdev == 0 {
                // An overlay whiteout: deleted (a whiteout of something the image does not
                // have hides nothing).
                if in_image {
                    out.push(Change {
                        kind: ChangeKind::Deleted,
                        path,
                    });
                }
                continue;
            }
            let empty = (fmt == SFlag::S_IFREG && st.st_size == 0)
                || (fmt == SFlag::S_IFDIR && st.st_nlink <= 2 && is_empty_dir(&dir, &cname));
            if !in_image && empty && mount_points.iter().any(|m| Path::new(m) == path) {
                skipped.push(path);
                continue;
            }
            let kind = if in_image {
                ChangeKind::Changed
            } else {
                ChangeKind::Added
            };
            out.push(Change {
                kind,
                path: path.clone(),
            });
            if fmt == SFlag::S_IFDIR {
                let sub = match Dir::openat(
                    dir.as_fd(),
                    cname.as_c_str(),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(d) => d,
                    // Replaced by something else meanwhile (a symlink: ELOOP/ENOTDIR).
                    Err(nix::Error::ENOENT | nix::Error::ELOOP | nix::Error::ENOTDIR) => continue,
                    Err(e) => return Err(read_err(&path, e)),
                };
                let opaque = is_opaque(sub.as_fd());
                stack.push((sub, path, !in_image || opaque, depth + 1));
            }
            if out.len() > MAX_ENTRIES {
                return Err(DiffError::TooLarge);
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    // A directory listed as changed only because hull put a mount point in it.
    let only_for_mount_points = |c: &Change, all: &[Change]| {
        c.kind == ChangeKind::Changed
            && skipped
                .iter()
                .any(|s| s != &c.path && s.starts_with(&c.path))
            && !all
                .iter()
                .any(|o| o.path != c.path && o.path.starts_with(&c.path))
    };
    let drop: Vec<bool> = out.iter().map(|c| only_for_mount_points(c, &out)).collect();
    let mut keep = drop.into_iter().map(|d| !d);
    out.retain(|_| keep.next().unwrap_or(true));
    Ok(out)
}

/// Whether directory `name` in `dir` has no entries (not following a symlink).
fn is_empty_dir(dir: &Dir, name: &CStr) -> bool {
    let Ok(mut sub) = Dir::openat(
        dir.as_fd(),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    let empty = sub
        .iter()
        .flatten()
        .all(|e| matches!(e.file_name().to_bytes(), b"." | b".."));
    empty
}

/// Whether `path` (absolute, in the container) is in the image made of `lowers` (lowest
/// first): the topmost layer that has it or hides it decides.
pub fn exists_in_image(lowers: &[PathBuf], path: &Path) -> bool {
    let rel = path.strip_prefix("/").unwrap_or(path);
    for layer in lowers.iter().rev() {
        if let Ok(meta) = fs::symlink_metadata(layer.join(rel)) {
            return !(meta.file_type().is_char_device() && meta.rdev() == 0);
        }
        // Hidden in this layer by an ancestor that is a whiteout, not a directory, or an
        // opaque directory.
        for ancestor in rel.ancestors().skip(1) {
            if ancestor.as_os_str().is_empty() {
                break;
            }
            let Ok(meta) = fs::symlink_metadata(layer.join(ancestor)) else {
                continue;
            };
            if !meta.is_dir() {
                return false;
            }
            if let Ok(d) = fs::File::open(layer.join(ancestor)) {
                if is_opaque(d.as_fd()) {
                    return false;
                }
            }
        }
    }
    false
}

/// Whether a directory carries overlayfs's opaque marker (its lower contents are hidden).
fn is_opaque(dir: BorrowedFd<'_>) -> bool {
    const NAME: &CStr = c"trusted.overlay.opaque";
    let mut value = [0u8; 2];
    // SAFETY: fgetxattr writes at most `value.len()` bytes into `value`, which outlives the
    // call; the name is a NUL-terminated constant and the fd is borrowed for the call.
    let n = unsafe {
        libc::fgetxattr(
            dir.as_raw_fd(),
            NAME.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    n == 1 && value[0] == b'y'
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::stat::{makedev, mknod};
    use std::os::unix::fs::symlink;

    fn whiteout(path: &Path) {
        mknod(path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).unwrap();
    }

    fn set_opaque(dir: &Path) {
        let f = fs::File::open(dir).unwrap();
        // SAFETY: the value and name outlive the call; the fd is open.
        let r = unsafe {
            libc::fsetxattr(
                f.as_raw_fd(),
                c"trusted.overlay.opaque".as_ptr(),
                b"y".as_ptr().cast(),
                1,
                0,
            )
        };
        assert_eq!(r, 0, "set opaque: {}", std::io::Error::last_os_error());
    }

    /// An image of two layers and a container layer with each kind of change.
    #[test]
    fn each_kind_of_change_is_listed_against_the_image() {
        let tmp = tempfile::tempdir().unwrap();
        let (base, top, upper) = (
            tmp.path().join("base"),
            tmp.path().join("top"),
            tmp.path().join("upper"),
        );
        for d in ["etc", "srv/old", "gone"] {
            fs::create_dir_all(base.join(d)).unwrap();
        }
        fs::write(base.join("etc/passwd"), "root").unwrap();
        fs::write(base.join("etc/group"), "root").unwrap();
        fs::write(base.join("srv/old/file"), "x").unwrap();
        fs::write(base.join("gone/file"), "x").unwrap();
        // The top image layer deletes /gone.
        fs::create_dir_all(&top).unwrap();
        whiteout(&top.join("gone"));
        // ... and replaces /srv2 with an opaque directory: base's /srv2/old is gone.
        fs::create_dir_all(base.join("srv2")).unwrap();
        fs::write(base.join("srv2/old"), "x").unwrap();
        fs::create_dir_all(top.join("srv2")).unwrap();
        set_opaque(&top.join("srv2"));
        // The container: changes /etc/passwd, deletes /etc/group, adds /etc/new and
        // /data/x, replaces /srv with an opaque directory holding old/ anew.
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::write(upper.join("etc/passwd"), "root\nuser").unwrap();
        whiteout(&upper.join("etc/group"));
        fs::write(upper.join("etc/new"), "n").unwrap();
        fs::create_dir_all(upper.join("data")).unwrap();
        fs::write(upper.join("data/x"), "x").unwrap();
        fs::create_dir_all(upper.join("srv/old")).unwrap();
        set_opaque(&upper.join("srv"));
        fs::create_dir_all(upper.join("srv2")).unwrap();
        fs::write(upper.join("srv2/old"), "new").unwrap();
        // A file the image had deleted, created again: added.
        fs::create_dir_all(upper.join("gone")).unwrap();
        // A whiteout of something the image never had is no change.
        whiteout(&upper.join("etc/never"));
        symlink("/", upper.join("etc/rootlink")).unwrap();

        // hull's mount points: an empty /etc/hosts and /proc, not in the image.
        fs::write(upper.join("etc/hosts"), "").unwrap();
        fs::create_dir_all(upper.join("proc")).unwrap();
        let got: Vec<String> = diff(&upper, &[base, top], HULL_MOUNT_POINTS)
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(
            got,
            [
                "A /data",
                "A /data/x",
                "C /etc",
                "D /etc/group",
                "A /etc/new",
                "C /etc/passwd",
                "A /etc/rootlink",
                "A /gone",
                "C /srv",
                "A /srv/old",
                "C /srv2",
                "A /srv2/old",
            ]
        );
    }

    #[test]
    fn a_layer_never_started_has_no_changes() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(diff(&tmp.path().join("none"), &[], &[]).unwrap().is_empty());
    }

    /// A container that changed nothing but got hull's mount points lists nothing; one that
    /// wrote into such a file lists it.
    #[test]
    fn hull_mount_points_are_not_changes_unless_written() {
        let tmp = tempfile::tempdir().unwrap();
        let (base, upper) = (tmp.path().join("base"), tmp.path().join("upper"));
        fs::create_dir_all(base.join("etc")).unwrap();
        fs::create_dir_all(upper.join("etc")).unwrap();
        for f in ["hostname", "hosts", "resolv.conf"] {
            fs::write(upper.join("etc").join(f), "").unwrap();
        }
        for d in ["proc", "sys", "dev", "tmp"] {
            fs::create_dir_all(upper.join(d)).unwrap();
        }
        let lowers = [base];
        assert_eq!(diff(&upper, &lowers, HULL_MOUNT_POINTS).unwrap(), []);
        fs::write(upper.join("etc/hosts"), "10.0.0.1 x").unwrap();
        fs::write(upper.join("tmp/t"), "").unwrap();
        let got: Vec<String> = diff(&upper, &lowers, HULL_MOUNT_POINTS)
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(got, ["C /etc", "A /etc/hosts", "A /tmp", "A /tmp/t"]);
    }
}
