//! hull's state is for root only: container records hold the environment (`-e
//! DB_PASSWORD=...`), logs hold everything containers print, images hold whatever their
//! authors put in them. Directories are 0700 and files 0600, in both roots, and they get
//! that mode when they are created (the mode is given to mkdir/open and set again on the
//! open descriptor, so neither the umask nor a leftover file with a wider mode opens a
//! window). Directories an older hull created with wider modes are narrowed on use.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every directory hull creates for its state.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every state or log file hull creates.
pub const FILE_MODE: u32 = 0o600;

/// Creates `path` and its missing parents, each 0700; narrows `path` if it existed.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)?;
    narrow(path)
}

/// Creates the directory `path` (its parent must exist), 0700.
pub fn create_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new().mode(DIR_MODE).create(path)?;
    // mkdir applies the umask: a umask wider than 077 cannot widen it, a narrower one
    // (0777) would leave root unable to use it.
    fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE))
}

/// Removes group and other access from an existing directory or file (no-op when absent
/// or already private).
pub fn narrow(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_symlink() && meta.permissions().mode() & 0o077 != 0 => {
            let mode = meta.permissions().mode() & 0o700;
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens (creating) `path` for appending, 0600 whatever existed before.
pub fn open_append(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Creates (truncating) `path` for writing, 0600 whatever existed before.
pub fn create(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(FILE_MODE)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Replaces `dest` with `data` atomically: written to `tmp` (0600), then renamed. No
/// fsync: for volatile run-root state a rename is atomic against crashes of hull, and a
/// power loss ends the containers too.
pub fn write_atomic(tmp: &Path, dest: &Path, data: &[u8]) -> io::Result<()> {
    let mut file = create(tmp)?;
    file.write_all(data)?;
    drop(file);
    fs::rename(tmp, dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn everything_is_created_private_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: umask has no failure mode; restored below (tests in this module only
        // create files through the functions under test).
        let old = unsafe { libc::umask(0) };
        let nested = dir.path().join("a/b");
        create_dir_all(&nested).unwrap();
        create_dir(&nested.join("c")).unwrap();
        write_atomic(&nested.join(".t"), &nested.join("state"), b"{}").unwrap();
        open_append(&nested.join("log")).unwrap();
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&nested.join("c")), 0o700);
        assert_eq!(mode(&nested.join("state")), 0o600);
        assert_eq!(mode(&nested.join("log")), 0o600);
    }

    #[test]
    fn wide_leftovers_are_narrowed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("old");
        fs::create_dir(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        let f = d.join("log");
        fs::write(&f, "x").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        let tmp = d.join(".tmp");
        fs::write(&tmp, "x").unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o666)).unwrap();
        create_dir_all(&d).unwrap();
        open_append(&f).unwrap();
        write_atomic(&tmp, &d.join("state"), b"new").unwrap();
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&f), 0o600);
        assert_eq!(mode(&d.join("state")), 0o600);
        narrow(&dir.path().join("absent")).unwrap();
    }
}
