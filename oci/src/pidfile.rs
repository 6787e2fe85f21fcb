//! `--pid-file`: the pid of the process that stands for the container, written the way
//! runc writes it (decimal, no newline, replaced atomically so a reader never sees half).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{OciError, Result};

/// The absolute path for a `--pid-file` given relative to the caller's directory.
pub fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(|e| OciError::io("current directory", e))?;
    Ok(cwd.join(path))
}

/// Writes `pid` to `path` through a temporary file in the same directory and a rename.
pub fn write(path: &Path, pid: i32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .ok_or_else(|| OciError::Usage(format!("--pid-file {} names no file", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        write!(f, "{pid}")?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        OciError::io(format!("write pid file {}", path.display()), e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_is_written_without_newline_and_replaces_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pid");
        fs::write(&path, "999999\n").unwrap();
        write(&path, 4242).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "4242");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
        assert!(write(&dir.path().join("no/such/dir/pid"), 1).is_err());
    }

    #[test]
    fn relative_paths_are_taken_from_the_current_directory() {
        let abs = absolute(Path::new("x.pid")).unwrap();
        assert_eq!(abs, std::env::current_dir().unwrap().join("x.pid"));
        assert_eq!(absolute(Path::new("/a/b")).unwrap(), Path::new("/a/b"));
    }
}
