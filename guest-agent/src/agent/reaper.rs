//! PID 1 duty: reap every child (orphans too) and hand each watched process's exit status
//! to whoever waits for it, so the per-process relays never race each other on waitpid.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// Watched PIDs and the pipe their exit code goes to.
#[derive(Default)]
pub struct Watches {
    waiting: HashMap<i32, File>,
}

fn watches() -> &'static Mutex<Watches> {
    static W: OnceLock<Mutex<Watches>> = OnceLock::new();
    W.get_or_init(Mutex::default)
}

/// Locks the watch table. Hold the guard across creating a child and [`Watches::watch`] so
/// the reaper cannot collect the child before it is watched.
pub fn lock() -> MutexGuard<'static, Watches> {
    watches().lock().unwrap_or_else(|e| e.into_inner())
}

impl Watches {
    /// Sends `pid`'s exit code (4 bytes, native endian) to `notify` when it ends.
    pub fn watch(&mut self, pid: i32, notify: File) {
        self.waiting.insert(pid, notify);
    }
}

/// Runs `spawn` (which creates one process and returns its pid) with the watch table
/// locked, then watches that pid: the reaper cannot collect the process before it is
/// watched. Returns the pipe that becomes readable with its exit code.
pub fn spawn_watched<T, E>(
    spawn: impl FnOnce() -> Result<T, E>,
    pid: impl Fn(&T) -> i32,
    pipe_failed: impl FnOnce(std::io::Error) -> E,
) -> Result<(T, File), E> {
    let (read, write) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return Err(pipe_failed(e.into())),
    };
    let mut watches = lock();
    let spawned = spawn()?;
    watches.watch(pid(&spawned), File::from(write));
    Ok((spawned, File::from(read)))
}

/// Exit code as a shell reports it.
pub fn exit_code(status: WaitStatus) -> Option<(i32, i32)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), code)),
        WaitStatus::Signaled(pid, sig, _) => Some((pid.as_raw(), 128 + sig as i32)),
        _ => None,
    }
}

/// Starts the reaper thread.
pub fn start() {
    std::thread::Builder::new()
        .name("reaper".into())
        .spawn(|| loop {
            match waitpid(Pid::from_raw(-1), None) {
                Ok(status) => {
                    if let Some((pid, code)) = exit_code(status) {
                        let notify = lock().waiting.remove(&pid);
                        if let Some(mut pipe) = notify {
                            let _ = pipe.write_all(&code.to_ne_bytes());
                        }
                    }
                }
                Err(Errno::ECHILD) => std::thread::sleep(Duration::from_millis(20)),
                Err(Errno::EINTR) => {}
                Err(e) => {
                    super::log(&format!("waitpid: {e}"));
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })
        .expect("spawn reaper thread");
}
