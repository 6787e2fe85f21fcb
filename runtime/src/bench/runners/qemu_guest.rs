//! The guest the QEMU microvm peer boots: hull's guest kernel, the image's erofs disk (the
//! one hull's vm model boots), and a small initramfs whose `/init` (busybox sh) mounts the
//! disk, runs the command chrooted into it on the serial console, prints an end marker
//! with its exit status, then resets the machine (`reboot=t` + QEMU's `-no-reboot` end
//! QEMU).

use std::io::Write;
use std::path::Path;

use cpio::newc::{Builder, ModeFileType};

/// What `/init` prints after the command, before its exit status and the command's stderr.
pub const END_MARKER: &str = "@@hull-bench-qemu-end@@ ";
/// Kernel command line: hull's (console on the serial port, reset on reboot, quiet) with
/// the console further silenced, so the serial port carries the command's output only.
pub const CMDLINE: &str = "console=ttyS0 reboot=t panic=-1 quiet loglevel=1 rdinit=/init";

/// Single-quotes `arg` for /bin/sh.
fn quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// Whether `entry` is `NAME=value` with a shell variable name.
fn is_env_entry(entry: &str) -> bool {
    let Some((name, _)) = entry.split_once('=') else {
        return false;
    };
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The `/init` script: `argv` with the image's `env`, stdin and stdout on the console,
/// stderr kept apart and printed after the end marker.
pub fn init_script(argv: &[String], env: &[String]) -> String {
    let exports: String = env
        .iter()
        .filter(|e| is_env_entry(e))
        .map(|e| {
            let (name, value) = e.split_once('=').unwrap_or_default();
            format!("export {name}={}\n", quote(value))
        })
        .collect();
    let command: Vec<String> = argv.iter().map(|a| quote(a)).collect();
    format!(
        r#"#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox mount -t tmpfs tmpfs /run
/bin/busybox mount -t erofs -o ro /dev/vda /mnt || {{ echo "{END_MARKER}125"; /bin/busybox reboot -f; }}
for d in proc dev; do [ -d /mnt/$d ] && /bin/busybox mount --bind /$d /mnt/$d; done
[ -d /mnt/tmp ] && /bin/busybox mount -t tmpfs tmpfs /mnt/tmp
# Input typed on the console must not come back as output.
/bin/busybox stty -echo < /dev/console
export HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
{exports}cd /mnt
/bin/busybox chroot /mnt {command} 2>/run/stderr
echo "{END_MARKER}$?"
/bin/busybox cat /run/stderr
/bin/busybox reboot -f
"#,
        command = command.join(" ")
    )
}

/// Writes the initramfs: directories, /dev/console, the static busybox, `/init`.
pub fn write_initramfs(out: &Path, busybox: &[u8], init: &str) -> std::io::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut ino = 1;
    for dir in ["bin", "dev", "proc", "run", "mnt"] {
        Builder::new(dir)
            .ino(ino)
            .mode(0o755)
            .nlink(2)
            .set_mode_file_type(ModeFileType::Directory)
            .write(&mut file, 0)
            .finish()?;
        ino += 1;
    }
    // The kernel opens /dev/console for init's stdio before anything is mounted.
    Builder::new("dev/console")
        .ino(ino)
        .mode(0o600)
        .rdev_major(5)
        .rdev_minor(1)
        .set_mode_file_type(ModeFileType::Char)
        .write(&mut file, 0)
        .finish()?;
    for (name, data, mode) in [
        ("bin/busybox", busybox, 0o755),
        ("init", init.as_bytes(), 0o755),
    ] {
        ino += 1;
        let mut w = Builder::new(name)
            .ino(ino)
            .mode(mode)
            .set_mode_file_type(ModeFileType::Regular)
            .write(&mut file, data.len() as u32);
        w.write_all(data)?;
        w.finish()?;
    }
    cpio::newc::trailer(&mut file)?;
    file.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_and_environment_reach_the_script_quoted() {
        let script = init_script(
            &["sh".into(), "-c".into(), "echo 'it''s'; exit 3".into()],
            &[
                "PATH=/bin".into(),
                "A=b c".into(),
                "bad name=x".into(),
                "novalue".into(),
            ],
        );
        assert!(script.contains(r"chroot /mnt 'sh' '-c' 'echo '\''it'\'''\''s'\''; exit 3'"));
        assert!(script.contains("export PATH='/bin'\n"));
        assert!(script.contains("export A='b c'\n"));
        assert!(!script.contains("bad name"));
        assert!(!script.contains("novalue"));
        assert!(script.contains(&format!("echo \"{END_MARKER}$?\"")));
    }
}
