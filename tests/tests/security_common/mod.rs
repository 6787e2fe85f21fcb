//! Helpers for the security tests: an image that carries `hull-probe` (the attacker's
//! tool, see tests/probe/attack.rs) next to busybox, and an operator's interactive shell
//! on a pseudo-terminal the test owns, typed into and read like a person at a terminal.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Copies hull-probe and the shared libraries it needs into `rootfs` (same paths).
pub fn add_probe(rootfs: &Path) {
    let probe = hull_tests::binary("hull-probe");
    let mut files = hull_tests::initramfs::shared_libraries(&probe);
    files.push(probe.clone());
    for file in files {
        let target = if file == probe {
            rootfs.join("bin/hull-probe")
        } else {
            rootfs.join(file.strip_prefix("/").expect("absolute library path"))
        };
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&file, &target).unwrap_or_else(|e| panic!("copy {}: {e}", file.display()));
    }
}

/// `name=value` lines a probe printed (the last value of each name wins).
pub fn reports(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// An interactive shell on a pseudo-terminal: its controlling terminal, like the shell of
/// an operator who types `hull` commands.
pub struct OperatorShell {
    master: File,
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
}

impl OperatorShell {
    /// Starts `sh -i` in a new session on a new pty, with `env` set.
    pub fn start(env: &[(&str, &str)]) -> OperatorShell {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two descriptors; name, termios and size may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: fresh descriptors from openpty, owned from here on.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-i")
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("PS1", "$ ")
            .envs(env.iter().copied())
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: setsid and ioctl are async-signal-safe; the terminal becomes the new
        // session's controlling terminal, as login does for a user's shell.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn the operator's shell");
        let master = File::from(master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        OperatorShell {
            master,
            child,
            output,
        }
    }

    /// Types `line` and Enter.
    pub fn type_line(&mut self, line: &str) {
        self.master.write_all(line.as_bytes()).unwrap();
        self.master.write_all(b"\n").unwrap();
    }

    /// Everything the terminal showed so far.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).replace('\r', "")
    }

    /// Waits until the screen shows `text` (bounded); panics with the screen otherwise.
    pub fn wait_for(&self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.screen().contains(text) {
            assert!(
                Instant::now() < deadline,
                "the terminal did not show {text:?} within {timeout:?}:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `command` at the prompt and returns what it printed. Output is framed by
    /// markers that only the shell's arithmetic produces, so the terminal's echo of the
    /// typed line never matches them. Afterwards a last marker is typed and awaited:
    /// anything pushed into the terminal's input while `command` ran has been read and
    /// run by the shell by then.
    pub fn run(&mut self, step: u32, command: &str, during: impl FnOnce(&mut Self)) -> String {
        let (begin, end, after) = (
            format!("B{}", 10_000 + step),
            format!("E{}", 10_000 + step),
            format!("A{}", 10_000 + step),
        );
        self.type_line(&format!(
            "echo B$((10000+{step})); {command}; echo E$((10000+{step}))"
        ));
        self.wait_for(&format!("\n{begin}\n"), Duration::from_secs(60));
        during(self);
        self.wait_for(&format!("\n{end}\n"), Duration::from_secs(120));
        self.type_line(&format!("echo A$((10000+{step}))"));
        self.wait_for(&format!("\n{after}\n"), Duration::from_secs(60));
        let screen = self.screen();
        let start = screen.find(&format!("\n{begin}\n")).unwrap() + begin.len() + 2;
        let stop = screen.find(&format!("\n{end}\n")).unwrap();
        screen[start..stop].to_string()
    }
}

impl Drop for OperatorShell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The kernel's own TIOCSTI switch (`dev.tty.legacy_tiocsti`; absent before 6.2, where
/// TIOCSTI is always allowed on one's controlling terminal).
pub fn legacy_tiocsti() -> bool {
    std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti")
        .map(|s| s.trim() == "1")
        .unwrap_or(true)
}
