//! The guest's initramfs: the static `hull-agent` as `/init` plus the few directories and
//! the console node the kernel needs before the agent mounts anything. Built once per agent
//! binary (cached by the binary's sha256) under `<root>/vm/`.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use cpio::newc::{Builder, ModeFileType};
use sha2::{Digest, Sha256};

use super::VmError;
use crate::paths::StatePaths;

/// Largest agent binary accepted (a sanity bound; the real one is a few MiB).
const MAX_AGENT_SIZE: u64 = 256 << 20;

/// Whether an ELF file asks for a dynamic loader (has a PT_INTERP program header).
pub fn is_dynamically_linked(elf: &[u8]) -> Result<bool, VmError> {
    let bad = || VmError::Invalid("hull-agent is not a 64-bit little-endian ELF file".into());
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return Err(bad());
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[32..40].try_into().map_err(|_| bad())?) as usize;
    let phentsize = u16_at(54);
    let phnum = u16_at(56);
    for i in 0..phnum {
        let off = phoff
            .checked_add(i.checked_mul(phentsize).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        let p_type = elf.get(off..off + 4).ok_or_else(bad)?;
        if u32::from_le_bytes(p_type.try_into().map_err(|_| bad())?) == 3 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Returns the cached initramfs for `agent`, building it on first use.
pub fn ensure_initramfs(paths: &StatePaths, agent: &Path) -> Result<PathBuf, VmError> {
    let meta = fs::metadata(agent)
        .map_err(|e| VmError::io(format!("read guest agent {}", agent.display()), e))?;
    if meta.len() > MAX_AGENT_SIZE {
        return Err(VmError::Invalid(format!(
            "{} is implausibly large",
            agent.display()
        )));
    }
    let mut binary = Vec::with_capacity(meta.len() as usize);
    File::open(agent)
        .and_then(|f| f.take(MAX_AGENT_SIZE).read_to_end(&mut binary))
        .map_err(|e| VmError::io(format!("read guest agent {}", agent.display()), e))?;
    if is_dynamically_linked(&binary)? {
        return Err(VmError::Unavailable(format!(
            "the guest agent {} is dynamically linked, but the guest has no C library; build \
             it static: RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release -p \
             hull-agent --target x86_64-unknown-linux-gnu",
            agent.display()
        )));
    }
    let digest = hex::encode(Sha256::digest(&binary));
    let dir = paths.root.join("vm");
    let path = dir.join(format!("initramfs-{}.cpio", &digest[..16]));
    if path.exists() {
        return Ok(path);
    }
    crate::private_fs::create_dir_all(&dir)
        .map_err(|e| VmError::io(format!("create {}", dir.display()), e))?;
    let tmp = dir.join(format!(".initramfs-{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut out = BufWriter::new(crate::private_fs::create(&tmp)?);
        write_archive(&mut out, &binary)?;
        out.into_inner()?.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(VmError::io("write initramfs", e));
    }
    fs::rename(&tmp, &path).map_err(|e| VmError::io("rename initramfs into place", e))?;
    Ok(path)
}

/// Writes the newc archive: directories, /dev/console, /init.
pub fn write_archive<W: Write>(out: W, agent: &[u8]) -> std::io::Result<W> {
    let mut out = out;
    let mut ino = 1;
    for dir in ["dev", "proc", "sys", "run", "tmp"] {
        out = Builder::new(dir)
            .ino(ino)
            .mode(0o755)
            .nlink(2)
            .set_mode_file_type(ModeFileType::Directory)
            .write(out, 0)
            .finish()?;
        ino += 1;
    }
    // The kernel opens /dev/console for init's stdio before anything is mounted.
    out = Builder::new("dev/console")
        .ino(ino)
        .mode(0o600)
        .rdev_major(5)
        .rdev_minor(1)
        .set_mode_file_type(ModeFileType::Char)
        .write(out, 0)
        .finish()?;
    ino += 1;
    let mut w = Builder::new("init")
        .ino(ino)
        .mode(0o755)
        .set_mode_file_type(ModeFileType::Regular)
        .write(out, agent.len() as u32);
    w.write_all(agent)?;
    out = w.finish()?;
    cpio::newc::trailer(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_holds_init_and_console() {
        let buf = write_archive(Vec::new(), b"\x7fELF-agent").unwrap();
        let mut names = Vec::new();
        let mut rest: &[u8] = &buf;
        loop {
            let r = cpio::NewcReader::new(rest).unwrap();
            if r.entry().is_trailer() {
                break;
            }
            let e = r.entry();
            names.push((e.name().to_string(), e.mode(), e.file_size()));
            rest = r.finish().unwrap();
        }
        assert!(names.contains(&("dev/console".into(), 0o020600, 0)));
        assert!(names.contains(&("init".into(), 0o100755, 10)));
    }

    #[test]
    fn dynamic_binaries_are_detected() {
        let me = fs::read("/proc/self/exe").unwrap();
        // Test binaries are dynamically linked glibc executables.
        assert!(is_dynamically_linked(&me).unwrap());
        assert!(is_dynamically_linked(
            b"not an elf file at all, just text........................................"
        )
        .is_err());
    }
}
