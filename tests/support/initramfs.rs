//! Builds initramfs images (newc cpio archives) from host files: the outer machine's root in
//! the nested harness, and small guest roots for the microVMs booted inside it.
//!
//! Host files are streamed into the archive when it is written, so a builder is cheap to
//! clone. A dynamically linked binary brings its shared libraries (as `ldd` lists them) at
//! the same absolute paths, so it runs unchanged in the initramfs.
//!
//! Misuse (a missing host file, a bad guest path, a library `ldd` cannot find) panics with a
//! message naming the path: this is test support, and a test cannot go on without it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One archive entry.
#[derive(Clone, Debug)]
enum Entry {
    Dir,
    File { source: Source, mode: u32 },
    Symlink(String),
}

#[derive(Clone, Debug)]
enum Source {
    Host(PathBuf),
    Bytes(Vec<u8>),
}

// File type bits of st_mode, as newc stores them.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// The newc format stores sizes in 32 bits.
const MAX_FILE_SIZE: u64 = u32::MAX as u64;

/// An initramfs under construction: guest path → entry. Parent directories are added
/// automatically.
#[derive(Clone, Debug, Default)]
pub struct Initramfs {
    entries: BTreeMap<String, Entry>,
}

impl Initramfs {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the host file `host` at `guest`, keeping its permission bits.
    pub fn file(&mut self, host: &Path, guest: &str) -> &mut Self {
        let meta = fs::metadata(host)
            .unwrap_or_else(|e| panic!("initramfs: cannot add {}: {e}", host.display()));
        assert!(
            meta.is_file(),
            "initramfs: {} is not a regular file",
            host.display()
        );
        assert!(
            meta.len() <= MAX_FILE_SIZE,
            "initramfs: {} is larger than a cpio entry can hold",
            host.display()
        );
        let mode = meta.permissions().mode() & 0o7777;
        self.insert(
            guest,
            Entry::File {
                source: Source::Host(host.to_path_buf()),
                mode,
            },
        );
        self
    }

    /// Adds an executable at `guest` plus the shared libraries it needs, each at the path
    /// `ldd` resolves it to on the host (the dynamic loader included).
    pub fn binary(&mut self, host: &Path, guest: &str) -> &mut Self {
        self.file(host, guest);
        for lib in shared_libraries(host) {
            let guest_lib = lib.to_str().unwrap_or_else(|| {
                panic!("initramfs: library path {} is not UTF-8", lib.display())
            });
            let guest_lib = guest_lib.to_string();
            self.file(&lib, &guest_lib);
        }
        self
    }

    /// Adds the host directory tree `host` at `guest` (files, directories, symlinks as they
    /// are; other file types are skipped).
    pub fn dir(&mut self, host: &Path, guest: &str) -> &mut Self {
        let guest = normalize(guest);
        self.insert(&guest, Entry::Dir);
        let mut children: Vec<_> = fs::read_dir(host)
            .unwrap_or_else(|e| panic!("initramfs: cannot read dir {}: {e}", host.display()))
            .map(|entry| entry.expect("read_dir entry").path())
            .collect();
        children.sort();
        for child in children {
            let name = child
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_else(|| panic!("initramfs: {} is not UTF-8", child.display()))
                .to_string();
            let guest_child = format!("{guest}/{name}");
            let meta = fs::symlink_metadata(&child)
                .unwrap_or_else(|e| panic!("initramfs: cannot stat {}: {e}", child.display()));
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&child).expect("read_link");
                let target = target.to_str().expect("UTF-8 symlink target").to_string();
                self.symlink(&guest_child, &target);
            } else if meta.is_dir() {
                self.dir(&child, &guest_child);
            } else if meta.is_file() {
                self.file(&child, &guest_child);
            }
        }
        self
    }

    /// Adds a file with the given content and permission bits.
    pub fn bytes(&mut self, guest: &str, content: impl Into<Vec<u8>>, mode: u32) -> &mut Self {
        let content = content.into();
        assert!(
            content.len() as u64 <= MAX_FILE_SIZE,
            "initramfs: {guest} too large"
        );
        self.insert(
            guest,
            Entry::File {
                source: Source::Bytes(content),
                mode: mode & 0o7777,
            },
        );
        self
    }

    /// Adds a symbolic link `guest` → `target`.
    pub fn symlink(&mut self, guest: &str, target: &str) -> &mut Self {
        self.insert(guest, Entry::Symlink(target.to_string()));
        self
    }

    /// Adds the host's static busybox at /bin/busybox (the shell and tools of every
    /// harness root; the init scripts install the applet links at boot).
    pub fn busybox(&mut self) -> &mut Self {
        let busybox = Path::new(BUSYBOX);
        assert!(
            is_static_executable(busybox),
            "initramfs: {BUSYBOX} must be a static busybox (apt-get install busybox-static)"
        );
        self.file(busybox, "/bin/busybox")
    }

    /// Whether the archive has an entry at `guest`.
    pub fn contains(&self, guest: &str) -> bool {
        self.entries.contains_key(&normalize(guest))
    }

    /// Writes the archive (uncompressed newc, which the kernel unpacks fastest) to `path`.
    pub fn write_to(&self, path: &Path) -> io::Result<()> {
        let mut out = BufWriter::new(File::create(path)?);
        // Entries are sorted by path, so every directory comes before what it holds.
        for (ino, (name, entry)) in self.entries.iter().enumerate() {
            let header = cpio::newc::Builder::new(name)
                .ino(ino as u32 + 1)
                .uid(0)
                .gid(0)
                .mtime(0);
            match entry {
                Entry::Dir => {
                    header
                        .mode(S_IFDIR | 0o755)
                        .nlink(2)
                        .write(&mut out, 0)
                        .finish()?;
                }
                Entry::Symlink(target) => {
                    let mut w = header
                        .mode(S_IFLNK | 0o777)
                        .nlink(1)
                        .write(&mut out, target.len() as u32);
                    w.write_all(target.as_bytes())?;
                    w.finish()?;
                }
                Entry::File { source, mode } => {
                    let header = header.mode(S_IFREG | mode).nlink(1);
                    match source {
                        Source::Bytes(content) => {
                            let mut w = header.write(&mut out, content.len() as u32);
                            w.write_all(content)?;
                            w.finish()?;
                        }
                        Source::Host(host) => {
                            let file = File::open(host)?;
                            let len = file.metadata()?.len();
                            if len > MAX_FILE_SIZE {
                                return Err(io::Error::other(format!(
                                    "{} too large for cpio",
                                    host.display()
                                )));
                            }
                            let mut w = header.write(&mut out, len as u32);
                            // Copy exactly the size written in the header, even if the file
                            // changes underneath (the writer rejects a short copy).
                            io::copy(&mut file.take(len), &mut w)?;
                            w.finish()?;
                        }
                    }
                }
            }
        }
        cpio::newc::trailer(&mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    }

    fn insert(&mut self, guest: &str, entry: Entry) {
        let name = normalize(guest);
        assert!(
            !name.is_empty(),
            "initramfs: cannot replace the root directory"
        );
        // Parent directories first; an existing entry that is not a directory is a conflict.
        let mut parent = String::new();
        for component in name.split('/').take(name.split('/').count() - 1) {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(component);
            match self.entries.get(&parent) {
                None => {
                    self.entries.insert(parent.clone(), Entry::Dir);
                }
                Some(Entry::Dir) => {}
                Some(_) => panic!("initramfs: /{parent} is not a directory (needed for /{name})"),
            }
        }
        if matches!(entry, Entry::Dir) && self.entries.contains_key(&name) {
            return; // keep what is there; adding a directory twice is harmless
        }
        self.entries.insert(name, entry);
    }
}

/// Where the static busybox of Debian's busybox-static lives.
pub const BUSYBOX: &str = "/bin/busybox";

/// A guest path as a cpio name: no leading slash, no `.`/`..`/empty components.
fn normalize(guest: &str) -> String {
    let parts: Vec<&str> = guest.split('/').filter(|p| !p.is_empty()).collect();
    for part in &parts {
        assert!(
            *part != "." && *part != "..",
            "initramfs: guest path {guest:?} must not contain . or .."
        );
    }
    parts.join("/")
}

/// Whether `path` is an executable that needs no dynamic loader.
pub fn is_static_executable(path: &Path) -> bool {
    path.is_file() && shared_libraries_checked(path).is_ok_and(|libs| libs.is_empty())
}

/// The shared libraries (and dynamic loader) `ldd` lists for `binary`; empty for a static one.
pub fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    shared_libraries_checked(binary).unwrap_or_else(|e| panic!("initramfs: {e}"))
}

fn shared_libraries_checked(binary: &Path) -> Result<Vec<PathBuf>, String> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| format!("cannot run ldd on {}: {e}", binary.display()))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    if !out.status.success() {
        return Err(format!("ldd {} failed: {}", binary.display(), text.trim()));
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO has no file.
        let path = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    return Err(format!(
                        "{} needs {} which ldd cannot find",
                        binary.display(),
                        name.trim()
                    ));
                }
                rest.split_whitespace().next().unwrap_or("")
            }
            None => line.split_whitespace().next().unwrap_or(""),
        };
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_names(archive: &Path) -> Vec<(String, u32, Vec<u8>)> {
        let mut data = Vec::new();
        File::open(archive).unwrap().read_to_end(&mut data).unwrap();
        let mut cursor = io::Cursor::new(data);
        let mut out = Vec::new();
        loop {
            let mut reader = cpio::NewcReader::new(&mut cursor).unwrap();
            if reader.entry().is_trailer() {
                break;
            }
            let name = reader.entry().name().to_string();
            let mode = reader.entry().mode();
            let mut content = Vec::new();
            reader.read_to_end(&mut content).unwrap();
            reader.finish().unwrap();
            out.push((name, mode, content));
        }
        out
    }

    #[test]
    fn archive_has_parents_first_and_the_content_given() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.cpio");
        let mut initramfs = Initramfs::new();
        initramfs
            .bytes("/etc/hull/hello.txt", "hello\n", 0o644)
            .symlink("/bin/sh", "busybox");
        initramfs.write_to(&archive).unwrap();
        let entries = read_names(&archive);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            ["bin", "bin/sh", "etc", "etc/hull", "etc/hull/hello.txt"]
        );
        assert_eq!(entries[1].1 & 0o170000, S_IFLNK);
        assert_eq!(entries[1].2, b"busybox");
        assert_eq!(entries[4].1, S_IFREG | 0o644);
        assert_eq!(entries[4].2, b"hello\n");
    }

    #[test]
    fn a_dynamic_binary_brings_its_loader_and_libc() {
        let mut initramfs = Initramfs::new();
        initramfs.binary(Path::new("/bin/ls"), "/bin/ls");
        let libs = shared_libraries(Path::new("/bin/ls"));
        assert!(libs.iter().any(|l| l.to_str().unwrap().contains("libc.so")));
        assert!(libs
            .iter()
            .any(|l| l.to_str().unwrap().contains("ld-linux")));
        for lib in libs {
            assert!(
                initramfs.contains(lib.to_str().unwrap()),
                "{}",
                lib.display()
            );
        }
    }

    #[test]
    #[should_panic(expected = "must not contain . or ..")]
    fn a_guest_path_cannot_climb_out() {
        Initramfs::new().bytes("/etc/../../x", "", 0o644);
    }

    #[test]
    #[should_panic(expected = "is not a directory")]
    fn a_file_cannot_hold_children() {
        Initramfs::new()
            .bytes("/etc", "x", 0o644)
            .bytes("/etc/passwd", "", 0o644);
    }
}
