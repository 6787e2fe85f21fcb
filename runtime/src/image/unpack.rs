//! Safe unpacking of one layer tar into its own directory, ready to be an overlayfs
//! lowerdir.
//!
//! The archive is hostile. Every entry path is normalized by hand (no `..`, no absolute
//! paths, bounded length); parents are opened one component at a time relative to the
//! layer root with `O_NOFOLLOW | O_DIRECTORY`, so no symlink (one from an earlier entry
//! of the same archive included) is ever followed; files are created with `O_EXCL |
//! O_NOFOLLOW`; hardlink targets must be earlier non-directory entries of the same
//! layer; a path appearing twice is an error (except a directory repeated). Nothing is
//! ever written outside the layer directory.
//!
//! OCI whiteouts become overlayfs whiteouts: `.wh.NAME` a 0:0 character device `NAME`,
//! `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its directory.
//!
//! Modes (setuid included), numeric ownership, mtimes, symlinks, hardlinks, device nodes,
//! fifos and xattrs (`SCHILY.xattr.*`, except `trusted.*`, which would let an image steer
//! overlayfs) are kept.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fchmodat, fstatat, mkdirat, mknodat, FchmodatFlags, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, Gid, Uid};
use tar::EntryType;

use super::header_budget::HeaderBudget;
use super::{ImageError, Limits};

/// The OCI whiteout prefix.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The OCI opaque-directory marker.
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// Size of the copy buffer for file contents.
const COPY_BUFFER: usize = 1 << 20;

/// What an unpack produced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UnpackStats {
    /// Tar entries applied.
    pub entries: u64,
    /// Bytes of file content written.
    pub file_bytes: u64,
}

/// Unpacks the layer tar read from `reader` into the existing, empty directory `dest`.
pub fn unpack_layer<R: Read>(
    reader: R,
    dest: &Path,
    limits: &Limits,
) -> Result<UnpackStats, ImageError> {
    let budget = HeaderBudget::new(limits.max_header_bytes);
    let mut archive = tar::Archive::new(budget.reader(reader));
    let entries = archive
        .entries()
        .map_err(|e| ImageError::invalid("layer tar", e.to_string()))?;
    unpack_entries(entries, &budget, None, dest, limits)
}

/// A layer stream whose file contents the unpacker can write out straight from the
/// stream's own buffers, instead of copying them through the tar parser.
pub trait DirectStream {
    /// How many bytes of the stream the tar parser has consumed.
    fn parser_position(&self) -> u64;
    /// Writes the next `len` bytes of the stream to `out`. The parser has not seen them
    /// and skips them with a forward seek.
    fn write_next_to(&self, len: u64, out: &mut File) -> Result<(), DirectError>;
}

/// Why a direct write failed.
#[derive(Debug)]
pub enum DirectError {
    /// Reading the layer stream (truncated, unreadable, over its limit).
    Read(std::io::Error),
    /// Writing the destination file.
    Write(std::io::Error),
}

/// Like [`unpack_layer`], with regular files' contents written directly from `stream`
/// (which must seek forward over them for the parser).
pub fn unpack_layer_direct<S>(
    stream: &S,
    dest: &Path,
    limits: &Limits,
) -> Result<UnpackStats, ImageError>
where
    S: DirectStream,
    for<'s> &'s S: Read + Seek,
{
    let budget = HeaderBudget::new(limits.max_header_bytes);
    let mut archive = tar::Archive::new(budget.reader(stream));
    let entries = archive
        .entries_with_seek()
        .map_err(|e| ImageError::invalid("layer tar", e.to_string()))?;
    unpack_entries(entries, &budget, Some(stream), dest, limits)
}

fn unpack_entries<R: Read>(
    mut entries: tar::Entries<'_, R>,
    budget: &HeaderBudget,
    direct: Option<&dyn DirectStream>,
    dest: &Path,
    limits: &Limits,
) -> Result<UnpackStats, ImageError> {
    let root = open_dir_path(dest)?;
    let mut unpacker = Unpacker {
        root,
        limits: *limits,
        seen: HashMap::new(),
        names_bytes: 0,
        dir_times: Vec::new(),
        parent_cache: None,
        buffer: Vec::new(),
        direct,
        stats: UnpackStats::default(),
    };
    // The parser reads (and keeps) an entry's extension headers inside `next`: only
    // there is the header budget armed.
    while let Some(entry) = budget.around(|| entries.next()) {
        let mut entry = entry.map_err(|e| {
            budget.map_error("layer tar", e, |e| {
                ImageError::invalid("layer tar", e.to_string())
            })
        })?;
        unpacker.stats.entries += 1;
        if unpacker.stats.entries > limits.max_entries {
            return Err(ImageError::TooLarge {
                what: "number of entries in the layer".into(),
                limit: limits.max_entries,
                unit: "entries",
            });
        }
        unpacker.apply(&mut entry)?;
        // Data of entries that are not files (a directory or link with a size), read
        // here rather than skipped by the parser under the header budget.
        if !matches!(
            entry.header().entry_type(),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse
        ) {
            discard_data(&mut entry, limits)?;
        }
    }
    unpacker.finish_directories()?;
    Ok(unpacker.stats)
}

/// Reads and drops what is left of an entry's data, bounded like a file's.
fn discard_data<R: Read>(entry: &mut tar::Entry<'_, R>, limits: &Limits) -> Result<(), ImageError> {
    let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    let n = std::io::copy(
        &mut entry.take(limits.max_entry_bytes + 1),
        &mut std::io::sink(),
    )
    .map_err(|e| ImageError::invalid(format!("layer tar at {shown:?}"), e.to_string()))?;
    if n > limits.max_entry_bytes {
        return Err(ImageError::TooLarge {
            what: format!("data of entry {shown:?}"),
            limit: limits.max_entry_bytes,
            unit: "bytes",
        });
    }
    Ok(())
}

/// Whether a path is the same as or under another, both as component lists.
type Components = Vec<Vec<u8>>;

struct Unpacker<'s> {
    root: OwnedFd,
    limits: Limits,
    /// Explicit entries so far: normalized path -> is a directory.
    seen: HashMap<Vec<u8>, bool>,
    /// Bytes of paths held in `seen` and `dir_times` (bounded by `max_names_bytes`).
    names_bytes: u64,
    /// Directory mtimes, applied at the end (creating children changes them).
    dir_times: Vec<(Components, i64)>,
    /// The last parent directory opened, reused by consecutive entries.
    parent_cache: Option<(Components, OwnedFd)>,
    /// Copy buffer for contents read through the parser (allocated on first use).
    buffer: Vec<u8>,
    /// Where file contents can be written from without the parser.
    direct: Option<&'s dyn DirectStream>,
    stats: UnpackStats,
}

impl Unpacker<'_> {
    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ImageError> {
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let components = normalize(&raw_path, &self.limits)
            .map_err(|reason| ImageError::unsafe_entry(&shown, reason))?;
        let kind = entry.header().entry_type();

        // The layer root itself ("./"): only its metadata can be set.
        let Some((name, parents)) = components.split_last() else {
            if !kind.is_dir() {
                return Err(ImageError::unsafe_entry(
                    &shown,
                    "the layer root must be a directory",
                ));
            }
            let meta = Metadata::of(entry, &shown)?;
            let root = self
                .root
                .try_clone()
                .map_err(|e| ImageError::io("dup", e))?;
            meta.apply_to_fd(&root, &shown)?;
            self.dir_times.push((Vec::new(), meta.mtime));
            return Ok(());
        };
        let (name, parents) = (name.clone(), parents.to_vec());

        if name.starts_with(WHITEOUT_PREFIX) {
            return self.whiteout(&parents, &name, &shown);
        }

        let key = components.join(&b'/');
        if let Some(&was_dir) = self.seen.get(&key) {
            if !(was_dir && kind.is_dir()) {
                return Err(ImageError::DuplicateEntry(shown));
            }
        }
        self.remember(key, kind.is_dir())?;

        let meta = Metadata::of(entry, &shown)?;
        self.ensure_parent(&parents, true, &shown)?;
        let parent = self.cached_parent();
        let cname = cstring(&name, &shown)?;
        match kind {
            EntryType::Directory => {
                match mkdirat(
                    parent.as_fd(),
                    cname.as_c_str(),
                    Mode::from_bits_truncate(0o700),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(sys_error(&shown, "mkdir", e)),
                }
                // O_NOFOLLOW: an existing non-directory at this name fails here.
                let dir = openat(
                    parent.as_fd(),
                    cname.as_c_str(),
                    OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
                    Mode::empty(),
                )
                .map_err(|e| sys_error(&shown, "open directory", e))?;
                meta.apply_to_fd(&dir, &shown)?;
                let mut full = parents.clone();
                full.push(name.clone());
                self.count_names(full.iter().map(|c| c.len() + 1).sum())?;
                self.dir_times.push((full.clone(), meta.mtime));
                // Entries that follow are usually this directory's children.
                self.parent_cache = Some((full, dir));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                if entry.size() > self.limits.max_entry_bytes {
                    return Err(ImageError::TooLarge {
                        what: format!("entry {shown:?} ({} bytes)", entry.size()),
                        limit: self.limits.max_entry_bytes,
                        unit: "bytes",
                    });
                }
                let fd = openat(
                    parent.as_fd(),
                    cname.as_c_str(),
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| sys_error(&shown, "create file", e))?;
                let mut file = File::from(fd);
                let written = match self.direct {
                    // Plain data right behind the headers (not a sparse map): write it
                    // from the stream's buffers.
                    Some(direct)
                        if kind != EntryType::GNUSparse
                            && entry.raw_file_position() == direct.parser_position() =>
                    {
                        direct
                            .write_next_to(entry.size(), &mut file)
                            .map_err(|e| match e {
                                DirectError::Read(e) => ImageError::invalid(
                                    format!("layer tar at {shown:?}"),
                                    e.to_string(),
                                ),
                                DirectError::Write(e) => {
                                    ImageError::io(format!("write {shown}"), e)
                                }
                            })?;
                        entry.size()
                    }
                    _ => {
                        if self.buffer.is_empty() {
                            self.buffer = vec![0u8; COPY_BUFFER];
                        }
                        copy_data(entry, &mut file, &mut self.buffer, &self.limits, &shown)?
                    }
                };
                self.stats.file_bytes += written;
                meta.apply_to_fd(&file, &shown)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| ImageError::unsafe_entry(&shown, "symlink without a target"))?;
                if target.is_empty() || target.len() > self.limits.max_path_bytes {
                    return Err(ImageError::unsafe_entry(
                        &shown,
                        "symlink target empty or too long",
                    ));
                }
                // The target is stored, never followed by the unpacker; inside a container
                // it resolves against the container's root.
                let ctarget = cstring(&target, &shown)?;
                symlinkat(ctarget.as_c_str(), parent.as_fd(), cname.as_c_str())
                    .map_err(|e| sys_error(&shown, "symlink", e))?;
                meta.apply_at(parent.as_fd(), &cname, false, &shown)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| ImageError::unsafe_entry(&shown, "hardlink without a target"))?
                    .into_owned();
                let shown_target = String::from_utf8_lossy(&target).into_owned();
                let tcomps = normalize(&target, &self.limits).map_err(|reason| {
                    ImageError::unsafe_entry(
                        &shown,
                        format!("hardlink target {shown_target:?}: {reason}"),
                    )
                })?;
                match self.seen.get(&tcomps.join(&b'/')) {
                    Some(false) => {}
                    Some(true) => {
                        return Err(ImageError::unsafe_entry(&shown, "hardlink to a directory"))
                    }
                    None => {
                        return Err(ImageError::unsafe_entry(
                            &shown,
                            format!(
                                "hardlink target {shown_target:?} is not an earlier entry of this layer"
                            ),
                        ))
                    }
                }
                let (tname, tparents) = tcomps.split_last().ok_or_else(|| {
                    ImageError::unsafe_entry(&shown, "hardlink to the layer root")
                })?;
                let tparent_fd = walk(&self.root, tparents, false, &shown)?;
                let ctname = cstring(tname, &shown)?;
                // No AT_SYMLINK_FOLLOW: a symlink target is linked itself, not followed.
                linkat(
                    tparent_fd.as_fd(),
                    ctname.as_c_str(),
                    parent.as_fd(),
                    cname.as_c_str(),
                    nix::fcntl::AtFlags::empty(),
                )
                .map_err(|e| sys_error(&shown, "hardlink", e))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let header = entry.header();
                let sflag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                mknodat(
                    parent.as_fd(),
                    cname.as_c_str(),
                    sflag,
                    Mode::from_bits_truncate(0o600),
                    nix::sys::stat::makedev(major.into(), minor.into()),
                )
                .map_err(|e| sys_error(&shown, "mknod", e))?;
                meta.apply_at(parent.as_fd(), &cname, true, &shown)?;
            }
            EntryType::XGlobalHeader => {}
            other => {
                return Err(ImageError::unsafe_entry(
                    &shown,
                    format!("unsupported entry type {other:?}"),
                ))
            }
        }
        Ok(())
    }

    /// Applies a whiteout entry (`.wh.NAME` or `.wh..wh..opq`) in `parents`.
    fn whiteout(
        &mut self,
        parents: &[Vec<u8>],
        name: &[u8],
        shown: &str,
    ) -> Result<(), ImageError> {
        if name == OPAQUE_MARKER {
            self.ensure_parent(parents, true, shown)?;
            set_xattr_fd(self.cached_parent(), "trusted.overlay.opaque", b"y")
                .map_err(|e| ImageError::io(format!("{shown}: mark directory opaque"), e))?;
            return Ok(());
        }
        if name.starts_with(b".wh..wh.") {
            // aufs bookkeeping (e.g. .wh..wh.plnk); meaningless for overlayfs.
            tracing::debug!(entry = shown, "skipping aufs metadata entry");
            return Ok(());
        }
        let hidden = &name[WHITEOUT_PREFIX.len()..];
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(ImageError::unsafe_entry(
                shown,
                "whiteout of an invalid name",
            ));
        }
        let mut key: Vec<Vec<u8>> = parents.to_vec();
        key.push(hidden.to_vec());
        let key = key.join(&b'/');
        if self.seen.contains_key(&key) {
            return Err(ImageError::DuplicateEntry(shown.to_string()));
        }
        self.remember(key, false)?;
        let chidden = cstring(hidden, shown)?;
        self.ensure_parent(parents, true, shown)?;
        mknodat(
            self.cached_parent(),
            chidden.as_c_str(),
            SFlag::S_IFCHR,
            Mode::empty(),
            nix::sys::stat::makedev(0, 0),
        )
        .map_err(|e| sys_error(shown, "create whiteout", e))?;
        Ok(())
    }

    /// Records an explicit entry (see `seen`).
    fn remember(&mut self, key: Vec<u8>, is_dir: bool) -> Result<(), ImageError> {
        if !self.seen.contains_key(&key) {
            self.count_names(key.len())?;
        }
        self.seen.insert(key, is_dir);
        Ok(())
    }

    /// Counts path bytes the unpacker keeps until the end of the layer: millions of long
    /// names compress well, and must not make the importer hold gigabytes.
    fn count_names(&mut self, bytes: usize) -> Result<(), ImageError> {
        self.names_bytes += bytes as u64;
        if self.names_bytes > self.limits.max_names_bytes {
            return Err(ImageError::TooLarge {
                what: "paths of the entries of one layer".into(),
                limit: self.limits.max_names_bytes,
                unit: "bytes",
            });
        }
        Ok(())
    }

    /// Opens (creating when `create`) the directory `parents`, relative to the layer root,
    /// without following symlinks, into the one-entry parent cache.
    fn ensure_parent(
        &mut self,
        parents: &[Vec<u8>],
        create: bool,
        shown: &str,
    ) -> Result<(), ImageError> {
        let hit = matches!(&self.parent_cache, Some((p, _)) if p.as_slice() == parents);
        if !hit {
            let fd = walk(&self.root, parents, create, shown)?;
            self.parent_cache = Some((parents.to_vec(), fd));
        }
        Ok(())
    }

    /// The directory `ensure_parent` opened.
    fn cached_parent(&self) -> BorrowedFd<'_> {
        self.parent_cache
            .as_ref()
            .map(|(_, fd)| fd.as_fd())
            .expect("ensure_parent filled the cache")
    }

    /// Sets directory mtimes once all their children exist.
    fn finish_directories(&mut self) -> Result<(), ImageError> {
        self.parent_cache = None;
        for (path, mtime) in std::mem::take(&mut self.dir_times).into_iter().rev() {
            let fd = walk(&self.root, &path, false, "directory mtime")?;
            let t = TimeSpec::new(mtime, 0);
            nix::sys::stat::futimens(fd.as_fd(), &t, &t)
                .map_err(|e| sys_error("directory", "set mtime", e))?;
        }
        Ok(())
    }
}

/// Copies an entry's data into `file`, bounded by the per-entry limit.
fn copy_data<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    file: &mut File,
    buffer: &mut [u8],
    limits: &Limits,
    shown: &str,
) -> Result<u64, ImageError> {
    let mut written = 0u64;
    loop {
        let n = match entry.read(buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(ImageError::invalid(
                    format!("layer tar at {shown:?}"),
                    e.to_string(),
                ))
            }
        };
        written += n as u64;
        if written > limits.max_entry_bytes {
            return Err(ImageError::TooLarge {
                what: format!("entry {shown:?}"),
                limit: limits.max_entry_bytes,
                unit: "bytes",
            });
        }
        file.write_all(&buffer[..n])
            .map_err(|e| ImageError::io(format!("write {shown}"), e))?;
    }
    Ok(written)
}

/// Splits an entry path into components: `.` and empty components are dropped, `..`,
/// absolute paths, NUL bytes and over-long names are refused.
fn normalize(raw: &[u8], limits: &Limits) -> Result<Components, String> {
    if raw.len() > limits.max_path_bytes {
        return Err(format!("path longer than {} bytes", limits.max_path_bytes));
    }
    // A lone "/" is the layer root (umoci writes it so); any other absolute path is
    // refused rather than silently re-rooted.
    if raw.first() == Some(&b'/') && raw.iter().any(|&b| b != b'/') {
        return Err("absolute path".into());
    }
    if raw.contains(&0) {
        return Err("NUL byte in path".into());
    }
    let mut out = Vec::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("path contains '..'".into()),
            c if c.len() > 255 => return Err("path component longer than 255 bytes".into()),
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

/// Opens `components` below `root` one directory at a time with O_NOFOLLOW, creating
/// missing ones (mode 0755) when `create`.
fn walk(
    root: &OwnedFd,
    components: &[Vec<u8>],
    create: bool,
    shown: &str,
) -> Result<OwnedFd, ImageError> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
    let mut cur = root.try_clone().map_err(|e| ImageError::io("dup", e))?;
    for comp in components {
        let c = cstring(comp, shown)?;
        let next = match openat(cur.as_fd(), c.as_c_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create => {
                match mkdirat(cur.as_fd(), c.as_c_str(), Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(sys_error(shown, "create parent directory", e)),
                }
                openat(cur.as_fd(), c.as_c_str(), flags, Mode::empty())
                    .map_err(|e| sys_error(shown, "open parent directory", e))?
            }
            Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
                let what = String::from_utf8_lossy(comp);
                let is_link = fstatat(
                    cur.as_fd(),
                    c.as_c_str(),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK)
                .unwrap_or(false);
                let reason = if is_link {
                    format!("parent {what:?} is a symlink; refusing to write through it")
                } else {
                    format!("parent {what:?} is not a directory")
                };
                return Err(ImageError::unsafe_entry(shown, reason));
            }
            Err(e) => return Err(sys_error(shown, "open parent directory", e)),
        };
        cur = next;
    }
    Ok(cur)
}

fn open_dir_path(path: &Path) -> Result<OwnedFd, ImageError> {
    nix::fcntl::open(
        path,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
        Mode::empty(),
    )
    .map_err(|e| ImageError::io(format!("open {}", path.display()), e.into()))
}

fn cstring(bytes: &[u8], shown: &str) -> Result<CString, ImageError> {
    CString::new(bytes).map_err(|_| ImageError::unsafe_entry(shown, "NUL byte in name"))
}

fn sys_error(shown: &str, op: &str, errno: Errno) -> ImageError {
    let reason = match errno {
        Errno::EEXIST => "an entry of that name already exists in this layer".to_string(),
        e => format!("{op} failed: {}", e.desc()),
    };
    if matches!(
        errno,
        Errno::EEXIST | Errno::ELOOP | Errno::ENOTDIR | Errno::EISDIR
    ) {
        ImageError::unsafe_entry(shown, reason)
    } else {
        ImageError::io(format!("{shown}: {op}"), errno.into())
    }
}

/// Ownership, permissions, mtime and xattrs of one entry.
struct Metadata {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(CString, Vec<u8>)>,
}

impl Metadata {
    fn of<R: Read>(entry: &mut tar::Entry<'_, R>, shown: &str) -> Result<Metadata, ImageError> {
        let header = entry.header();
        let bad = |what: &str| {
            ImageError::invalid(
                format!("layer tar entry {shown:?}"),
                format!("bad {what} field"),
            )
        };
        let mode = header.mode().map_err(|_| bad("mode"))? & 0o7777;
        let uid = u32::try_from(header.uid().map_err(|_| bad("uid"))?).map_err(|_| bad("uid"))?;
        let gid = u32::try_from(header.gid().map_err(|_| bad("gid"))?).map_err(|_| bad("gid"))?;
        let mtime = i64::try_from(header.mtime().map_err(|_| bad("mtime"))?).unwrap_or(0);
        let mut xattrs = Vec::new();
        if let Some(exts) = entry
            .pax_extensions()
            .map_err(|e| ImageError::invalid(format!("pax header of {shown:?}"), e.to_string()))?
        {
            for ext in exts {
                let ext = ext.map_err(|e| {
                    ImageError::invalid(format!("pax header of {shown:?}"), e.to_string())
                })?;
                let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
                    continue;
                };
                if name.starts_with(b"trusted.") {
                    tracing::warn!(entry = shown, xattr = %String::from_utf8_lossy(name), "ignoring trusted.* xattr from an image");
                    continue;
                }
                if xattrs.len() >= 64 || ext.value_bytes().len() > 65536 {
                    return Err(ImageError::unsafe_entry(
                        shown,
                        "too many or too large xattrs",
                    ));
                }
                xattrs.push((cstring(name, shown)?, ext.value_bytes().to_vec()));
            }
        }
        Ok(Metadata {
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        })
    }

    /// Applies everything to an open file or directory: owner first (chown clears the
    /// setuid bits), then mode, xattrs, mtime.
    fn apply_to_fd(&self, fd: &impl AsFd, shown: &str) -> Result<(), ImageError> {
        let fd = fd.as_fd();
        nix::unistd::fchown(
            fd,
            Some(Uid::from_raw(self.uid)),
            Some(Gid::from_raw(self.gid)),
        )
        .map_err(|e| sys_error(shown, "chown", e))?;
        nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(self.mode))
            .map_err(|e| sys_error(shown, "chmod", e))?;
        for (name, value) in &self.xattrs {
            set_xattr_fd(fd, name.to_str().unwrap_or_default(), value)
                .map_err(|e| ImageError::io(format!("{shown}: set xattr {name:?}"), e))?;
        }
        let t = TimeSpec::new(self.mtime, 0);
        nix::sys::stat::futimens(fd, &t, &t).map_err(|e| sys_error(shown, "set mtime", e))
    }

    /// Applies metadata to `name` in `parent` without following it (symlinks, devices).
    fn apply_at(
        &self,
        parent: BorrowedFd<'_>,
        name: &CString,
        chmod: bool,
        shown: &str,
    ) -> Result<(), ImageError> {
        fchownat(
            parent,
            name.as_c_str(),
            Some(Uid::from_raw(self.uid)),
            Some(Gid::from_raw(self.gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| sys_error(shown, "chown", e))?;
        if chmod {
            // Only for device nodes and fifos, which cannot be symlinks.
            fchmodat(
                parent,
                name.as_c_str(),
                Mode::from_bits_truncate(self.mode),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(|e| sys_error(shown, "chmod", e))?;
        }
        if !self.xattrs.is_empty() {
            let path = proc_fd_path(parent, name);
            for (xname, value) in &self.xattrs {
                // SAFETY: both strings are NUL-terminated and outlive the call; value is a
                // valid buffer of value.len() bytes.
                let rc = unsafe {
                    libc::lsetxattr(
                        path.as_ptr(),
                        xname.as_ptr(),
                        value.as_ptr().cast(),
                        value.len(),
                        0,
                    )
                };
                if rc != 0 {
                    return Err(ImageError::io(
                        format!("{shown}: set xattr {xname:?}"),
                        std::io::Error::last_os_error(),
                    ));
                }
            }
        }
        let t = TimeSpec::new(self.mtime, 0);
        nix::sys::stat::utimensat(
            parent,
            name.as_c_str(),
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| sys_error(shown, "set mtime", e))
    }
}

/// `/proc/self/fd/<parent>/<name>`: names `name` in an open directory for calls that
/// only take paths (lsetxattr). The last component is not followed by l* calls.
fn proc_fd_path(parent: BorrowedFd<'_>, name: &CString) -> CString {
    let mut p = format!("/proc/self/fd/{}/", parent.as_raw_fd()).into_bytes();
    p.extend_from_slice(name.as_bytes());
    CString::new(p).expect("no NUL: both parts are NUL-free")
}

fn set_xattr_fd(fd: BorrowedFd<'_>, name: &str, value: &[u8]) -> std::io::Result<()> {
    let cname = CString::new(name).map_err(std::io::Error::other)?;
    // SAFETY: fd is an open descriptor, cname is NUL-terminated, value is a valid buffer
    // of value.len() bytes; all outlive the call.
    let rc = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A raw tar header block (ustar) of `kind`, `name` and `size`.
    fn header(kind: EntryType, name: &str, size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_path(name).unwrap();
        h.set_size(size);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    /// `header` followed by `size` bytes of `fill`, padded to a block.
    fn entry(kind: EntryType, name: &str, size: usize, fill: u8) -> Vec<u8> {
        let mut out = header(kind, name, size as u64);
        out.resize(out.len() + size.next_multiple_of(512), 0);
        out[512..512 + size].fill(fill);
        out
    }

    fn unpack(tar: &[u8], limits: &Limits) -> Result<UnpackStats, ImageError> {
        let dir = tempfile::tempdir().unwrap();
        unpack_layer(tar, dir.path(), limits)
    }

    fn limits() -> Limits {
        Limits {
            max_header_bytes: 4096,
            ..Limits::default()
        }
    }

    /// The tar crate reads a PAX extension or GNU long name whole into memory: one larger
    /// than the header budget stops the parser instead (a gzip of a 60 GiB PAX header is
    /// a few MiB).
    #[test]
    fn oversized_extension_headers_are_refused_before_they_are_read() {
        for kind in [EntryType::XHeader, EntryType::GNULongName] {
            let mut tar = entry(kind, "ext", 64 << 10, b'a');
            tar.extend(entry(EntryType::Regular, "f", 1, b'x'));
            tar.extend([0; 1024]);
            let err = unpack(&tar, &limits()).unwrap_err();
            assert!(
                matches!(err, ImageError::TooLarge { limit: 4096, ref what, .. } if what.contains("headers")),
                "{kind:?}: {err}"
            );
        }
        // Within the budget the same kind of entry is fine.
        let mut tar = entry(EntryType::GNULongName, "ext", 300, b'/');
        tar[512..812].copy_from_slice("d/".repeat(150).as_bytes());
        tar.extend(entry(EntryType::Regular, "f", 1, b'x'));
        tar.extend([0; 1024]);
        unpack(&tar, &limits()).unwrap();
    }

    /// Data of a non-file entry is read by the unpacker, not counted as headers.
    #[test]
    fn data_of_directories_does_not_count_as_headers() {
        let mut tar = entry(EntryType::Directory, "d/", 16 << 10, b'z');
        tar.extend(entry(EntryType::Regular, "d/f", 3, b'x'));
        tar.extend([0; 1024]);
        let stats = unpack(&tar, &limits()).unwrap();
        assert_eq!(stats.entries, 2);
    }

    /// Every path is remembered until the end of the layer: their total is bounded.
    #[test]
    fn remembered_paths_are_bounded() {
        let mut tar = Vec::new();
        for i in 0..40 {
            tar.extend(entry(EntryType::Regular, &format!("file-{i:04}"), 0, 0));
        }
        tar.extend([0; 1024]);
        let tight = Limits {
            max_names_bytes: 200,
            ..Limits::default()
        };
        let err = unpack(&tar, &tight).unwrap_err();
        assert!(
            matches!(err, ImageError::TooLarge { limit: 200, ref what, .. } if what.contains("paths")),
            "{err}"
        );
        unpack(&tar, &Limits::default()).unwrap();
    }

    #[test]
    fn normalize_refuses_escapes() {
        let l = Limits::default();
        assert_eq!(
            normalize(b"./a//b/./c", &l).unwrap(),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        assert!(normalize(b"./", &l).unwrap().is_empty());
        assert!(normalize(b"/", &l).unwrap().is_empty());
        assert!(normalize(b"/etc/passwd", &l).is_err());
        assert!(normalize(b"a/../../b", &l).is_err());
        assert!(normalize(b"..", &l).is_err());
        assert!(normalize(&[b'a'; 5000], &l).is_err());
    }
}
