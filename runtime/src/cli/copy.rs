//! `hull cp` and `hull export`: a container's files as tar streams (process containers;
//! vm containers are refused with the reason until the guest agent serves them).

use std::ffi::OsStr;
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use hull_executor::archive::read::write_tar;
use hull_executor::archive::write::{unpack_tar, Destination, Ownership, Resolve, WriteOptions};
use hull_runtime::container::lifecycle;
use hull_runtime::container::state::{ContainerState, ContainerStore};
use hull_runtime::paths::StatePaths;
use hull_runtime::storage::copy;

/// `hull cp`.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// Keep the archive's owners when copying into the container (default: root).
    #[arg(short = 'a', long = "archive")]
    archive: bool,
    /// `CONTAINER:PATH` or a host path (`-`: a tar stream on stdin/stdout).
    source: String,
    /// `CONTAINER:PATH` or a host path (`-`: a tar stream on stdout).
    destination: String,
}

/// `hull export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write to this file instead of stdout.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// Container name or id.
    container: String,
}

/// One side of `hull cp`.
#[derive(Debug, PartialEq, Eq)]
enum Side {
    Host(PathBuf),
    Container(String, PathBuf),
}

/// docker's rule: `NAME:PATH` names a container's path unless the argument starts like a
/// path (`/`, `.`).
fn side(arg: &str) -> Side {
    if arg.starts_with('/') || arg.starts_with('.') || arg == "-" {
        return Side::Host(arg.into());
    }
    match arg.split_once(':') {
        Some((name, path)) if !name.is_empty() => {
            let path = if path.starts_with('/') {
                PathBuf::from(path)
            } else {
                Path::new("/").join(path)
            };
            Side::Container(name.to_string(), path)
        }
        _ => Side::Host(arg.into()),
    }
}

fn load(store: &ContainerStore, key: &str) -> Result<ContainerState> {
    let id = store.resolve(key)?;
    lifecycle::load_fresh(store, &id)?.ok_or_else(|| anyhow!("no such container: {key}"))
}

/// The last name of `path` (`/` has none: the archive then holds its contents' parent
/// as `.`).
fn last_name(path: &Path) -> Result<&OsStr> {
    path.file_name().ok_or_else(|| {
        anyhow!(
            "{}: name a file or directory, not a root or `..`",
            path.display()
        )
    })
}

/// `hull cp`.
pub fn cp(args: CpArgs, paths: &StatePaths) -> Result<i32> {
    let store = ContainerStore::new(paths);
    match (side(&args.source), side(&args.destination)) {
        (Side::Container(name, from), Side::Host(to)) => copy_out(&store, &name, &from, &to),
        (Side::Host(from), Side::Container(name, to)) => {
            copy_in(&store, &from, &name, &to, args.archive)
        }
        (Side::Container(..), Side::Container(..)) => {
            bail!("copying between two containers is not supported: copy to the host first")
        }
        (Side::Host(..), Side::Host(..)) => {
            bail!("one of SOURCE and DESTINATION must be CONTAINER:PATH")
        }
    }
}

fn copy_out(store: &ContainerStore, name: &str, from: &Path, to: &Path) -> Result<i32> {
    let state = load(store, name)?;
    let root = copy::open_root(store, &state, false)?;
    let top = last_name(from).map(Path::new).unwrap_or(Path::new("."));
    if to == Path::new("-") {
        let out = std::io::stdout().lock();
        let (mut out, _) = write_tar(root.fd(), from, Some(top), true, out)
            .with_context(|| format!("{name}:{}", from.display()))?;
        out.flush()?;
        return Ok(0);
    }
    // docker's rules: into an existing directory under the source's name, else as `to`.
    let (dir, entry) = match std::fs::metadata(to) {
        Ok(m) if m.is_dir() => (to.to_path_buf(), top.to_path_buf()),
        _ => {
            let parent = match to.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            (parent, PathBuf::from(last_name(to)?))
        }
    };
    let dest_dir = File::open(&dir).with_context(|| format!("{}", dir.display()))?;
    let (reader, writer) = pipe()?;
    let from_owned = from.to_path_buf();
    let entry_owned = entry.clone();
    let stats = std::thread::scope(|s| {
        let producer = s.spawn(move || {
            write_tar(root.fd(), &from_owned, Some(&entry_owned), true, writer).map(|(_, st)| st)
        });
        let dest = Destination {
            base: dest_dir.as_fd(),
            path: PathBuf::new(),
        };
        let unpacked = unpack_tar(
            &dest,
            reader,
            WriteOptions {
                resolve: Resolve::Beneath,
                ownership: Ownership::Caller,
                special_bits: false,
            },
        );
        let read = producer
            .join()
            .map_err(|_| anyhow!("the copy thread panicked"))?;
        read.with_context(|| format!("{name}:{}", from.display()))?;
        unpacked.with_context(|| format!("{}", to.display()))
    })?;
    warn_skipped(&stats.skipped);
    Ok(0)
}

fn copy_in(
    store: &ContainerStore,
    from: &Path,
    name: &str,
    to: &Path,
    archive: bool,
) -> Result<i32> {
    let state = load(store, name)?;
    let root = copy::open_root(store, &state, true)?;
    let opts = WriteOptions {
        resolve: Resolve::InRoot,
        ownership: if archive {
            Ownership::Archive
        } else {
            Ownership::Caller
        },
        special_bits: true,
    };
    let shown = format!("{name}:{}", to.display());
    if from == Path::new("-") {
        if copy::kind_in_root(root.fd(), to)? != Some(true) {
            bail!("{shown}: not a directory in the container (a tar stream unpacks into one)");
        }
        let dest = Destination {
            base: root.fd(),
            path: to.to_path_buf(),
        };
        let stats = unpack_tar(&dest, std::io::stdin().lock(), opts).context(shown)?;
        warn_skipped(&stats.skipped);
        return Ok(0);
    }
    let host_from = std::path::absolute(from).with_context(|| format!("{}", from.display()))?;
    let source_is_dir = std::fs::symlink_metadata(&host_from)
        .with_context(|| format!("{}", from.display()))?
        .is_dir();
    let (dir, entry) = match copy::kind_in_root(root.fd(), to)? {
        Some(true) => (to.to_path_buf(), PathBuf::from(last_name(&host_from)?)),
        Some(false) if source_is_dir => {
            bail!("{shown}: cannot copy a directory over a file")
        }
        _ => {
            let parent = to.parent().unwrap_or(Path::new("/")).to_path_buf();
            if copy::kind_in_root(root.fd(), &parent)? != Some(true) {
                bail!(
                    "{name}:{}: no such directory in the container",
                    parent.display()
                );
            }
            (parent, PathBuf::from(last_name(to)?))
        }
    };
    let host_root = File::open("/").context("open /")?;
    let (reader, writer) = pipe()?;
    let stats = std::thread::scope(|s| {
        let producer = s.spawn(|| {
            write_tar(host_root.as_fd(), &host_from, Some(&entry), false, writer).map(|(_, st)| st)
        });
        let dest = Destination {
            base: root.fd(),
            path: dir.clone(),
        };
        let unpacked = unpack_tar(&dest, reader, opts);
        let read = producer
            .join()
            .map_err(|_| anyhow!("the copy thread panicked"))?;
        read.with_context(|| format!("{}", from.display()))?;
        unpacked.context(shown)
    })?;
    warn_skipped(&stats.skipped);
    Ok(0)
}

/// A pipe between the thread writing the tar stream and the one unpacking it.
fn pipe() -> Result<(File, File)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("a pipe for the copy")?;
    Ok((File::from(r), File::from(w)))
}

fn warn_skipped(skipped: &[String]) {
    for s in skipped.iter().take(20) {
        eprintln!("hull cp: {s}: device node or hard link, not copied");
    }
    if skipped.len() > 20 {
        eprintln!("hull cp: ... and {} more not copied", skipped.len() - 20);
    }
}

/// `hull export`: the container's root filesystem (its own files, not its mounts) as a
/// tar stream, as `docker export`.
pub fn export(args: ExportArgs, paths: &StatePaths) -> Result<i32> {
    let store = ContainerStore::new(paths);
    let state = load(&store, &args.container)?;
    let root = copy::open_root(&store, &state, false)?;
    match &args.output {
        Some(path) => {
            let file = File::create(path).with_context(|| format!("{}", path.display()))?;
            let (mut file, _) = write_tar(root.fd(), Path::new("/"), None, true, file)
                .with_context(|| args.container.clone())?;
            file.flush()?;
        }
        None => {
            if std::io::stdout().is_terminal() {
                bail!("refusing to write a tar stream to a terminal: use -o FILE or redirect");
            }
            let (mut out, _) = write_tar(
                root.fd(),
                Path::new("/"),
                None,
                true,
                std::io::stdout().lock(),
            )
            .with_context(|| args.container.clone())?;
            out.flush()?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_follow_dockers_rule() {
        assert_eq!(
            side("web:/etc/hosts"),
            Side::Container("web".into(), "/etc/hosts".into())
        );
        assert_eq!(
            side("web:tmp"),
            Side::Container("web".into(), "/tmp".into())
        );
        assert_eq!(side("./a:b"), Side::Host("./a:b".into()));
        assert_eq!(side("/x:y"), Side::Host("/x:y".into()));
        assert_eq!(side("-"), Side::Host("-".into()));
        assert_eq!(side("plain"), Side::Host("plain".into()));
    }
}
