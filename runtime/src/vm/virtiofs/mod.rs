//! One `virtiofsd` per volume of a vm container: the vhost-user backend of hull-vmm's
//! virtio-fs device (docs/storage.md, "Host directories in vm mode").
//!
//! Debian's C virtiofsd (QEMU 7.2, `/usr/lib/qemu/virtiofsd`) is started with the listening
//! socket hull bound (`--fd=3`), so the VMM can connect as soon as it starts, with no race
//! and no polling. Its sandbox is layered:
//! - hull starts it in a mount namespace of its own, where the volume's source is bind
//!   mounted on itself and, for `:ro`, remounted read-only: the host kernel refuses every
//!   write (EROFS), whatever the guest sends and whatever virtiofsd does;
//! - virtiofsd's own `sandbox=namespace` (new mount, PID and network namespaces,
//!   `pivot_root` into the source, capabilities dropped to what file serving needs, its
//!   seccomp filter): a symlink inside the volume resolves inside it, never to the host's
//!   `/etc`;
//! - it dies with the process that started it (PDEATHSIG) and ends by itself when the
//!   VMM's connection closes, so a killed hull or a crashed VMM leaves no virtiofsd.

use std::ffi::CString;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::VmError;

/// Debian's (QEMU 7.2) virtiofsd.
pub const DEFAULT_VIRTIOFSD: &str = "/usr/lib/qemu/virtiofsd";
/// The descriptor number virtiofsd finds its listening socket at.
const SOCKET_FD: RawFd = 3;
/// Most open files virtiofsd asks for (it keeps one O_PATH descriptor per inode the guest
/// looked up); never above the hard limit hull itself has.
const MAX_NOFILE: u64 = 1_000_000;

/// One volume's backend, as configured.
#[derive(Debug, Clone)]
pub struct VirtiofsdConfig {
    /// The virtiofsd binary.
    pub binary: PathBuf,
    /// The host directory shared (absolute, already resolved by the caller).
    pub source: PathBuf,
    /// Whether the guest may only read it.
    pub read_only: bool,
    /// The listening socket's path (the VMM connects here; removed at the end).
    pub socket: PathBuf,
    /// The path `bind` uses for it: the same file, possibly named by a shorter path
    /// (a Unix socket path is limited to 107 bytes).
    pub bind_path: PathBuf,
    /// virtiofsd's stderr.
    pub log: PathBuf,
}

/// A running virtiofsd.
#[derive(Debug)]
pub struct Virtiofsd {
    child: Child,
    socket: PathBuf,
}

impl Virtiofsd {
    /// Binds the socket and starts virtiofsd on it.
    pub fn spawn(cfg: &VirtiofsdConfig) -> Result<Virtiofsd, VmError> {
        if !cfg.source.is_absolute() {
            return Err(VmError::Invalid(format!(
                "volume source {} is not an absolute path",
                cfg.source.display()
            )));
        }
        let meta = std::fs::metadata(&cfg.source).map_err(|e| {
            VmError::Invalid(format!("volume source {}: {e}", cfg.source.display()))
        })?;
        if !meta.is_dir() {
            return Err(VmError::Invalid(format!(
                "volume source {} is not a directory (vm mode shares directories only)",
                cfg.source.display()
            )));
        }
        match std::fs::remove_file(&cfg.bind_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(VmError::io("remove a stale virtiofsd socket", e)),
        }
        let listener = UnixListener::bind(&cfg.bind_path)
            .map_err(|e| VmError::io(format!("bind {}", cfg.socket.display()), e))?;
        let log = crate::private_fs::create(&cfg.log)
            .map_err(|e| VmError::io(format!("create {}", cfg.log.display()), e))?;
        let source = CString::new(cfg.source.as_os_str().as_bytes())
            .map_err(|_| VmError::Invalid("volume source contains a NUL byte".into()))?;
        let mut cmd = Command::new(&cfg.binary);
        cmd.arg(format!("--fd={SOCKET_FD}"))
            .arg("-o")
            .arg(format!("source={}", cfg.source.display()))
            .arg("-o")
            .arg("sandbox=namespace")
            .arg("-o")
            .arg("cache=auto")
            .arg(format!("--rlimit-nofile={}", nofile_limit()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let listen_fd = listener.as_raw_fd();
        let read_only = cfg.read_only;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls (setsid, prctl, getppid, unshare, mount,
        // dup2, fcntl) on memory prepared before the fork (`source`), nothing allocated.
        unsafe {
            cmd.pre_exec(move || {
                let check = |ok: bool| {
                    if ok {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                };
                libc::setsid();
                check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0)?;
                if libc::getppid() != parent {
                    return Err(std::io::Error::other(
                        "hull exited while starting virtiofsd",
                    ));
                }
                check(libc::unshare(libc::CLONE_NEWNS) == 0)?;
                let none = c"none".as_ptr();
                // Nothing mounted here propagates back to the host.
                check(
                    libc::mount(
                        none,
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) == 0,
                )?;
                check(
                    libc::mount(
                        source.as_ptr(),
                        source.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND | libc::MS_REC,
                        std::ptr::null(),
                    ) == 0,
                )?;
                if read_only {
                    check(
                        libc::mount(
                            none,
                            source.as_ptr(),
                            std::ptr::null(),
                            libc::MS_REMOUNT
                                | libc::MS_BIND
                                | libc::MS_RDONLY
                                | libc::MS_NOSUID
                                | libc::MS_NODEV,
                            std::ptr::null(),
                        ) == 0,
                    )?;
                }
                // The listener at a fixed number, without close-on-exec.
                if listen_fd == SOCKET_FD {
                    check(libc::fcntl(listen_fd, libc::F_SETFD, 0) == 0)?;
                } else {
                    check(libc::dup2(listen_fd, SOCKET_FD) == SOCKET_FD)?;
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            let _ = std::fs::remove_file(&cfg.socket);
            VmError::io(format!("start {}", cfg.binary.display()), e)
        })?;
        // virtiofsd holds the listener now; hull's copy closes here.
        drop(listener);
        Ok(Virtiofsd {
            child,
            socket: cfg.socket.clone(),
        })
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has ended (reaps it if so).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Ends it (SIGKILL if it is still running), reaps it and removes its socket.
    pub fn stop(mut self) {
        self.kill_and_reap();
    }

    fn kill_and_reap(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Waits up to `timeout` for it to end by itself (after the VMM closed its connection).
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.exited() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Virtiofsd {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// What to pass as `--rlimit-nofile`: virtiofsd's own default, capped by hull's hard limit
/// (raising beyond it needs CAP_SYS_RESOURCE, which some hosts' root lacks).
fn nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0; // 0: virtiofsd leaves the limit as it is
    }
    lim.rlim_max.min(MAX_NOFILE)
}

#[cfg(test)]
mod tests;
