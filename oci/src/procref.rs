//! A host process named robustly across `hull-oci` invocations: its pid plus its start
//! time, so a recycled pid is never mistaken for the container's process.

use std::fs;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use serde::{Deserialize, Serialize};

use crate::error::{OciError, Result};

/// A process identified by pid and start time (clock ticks after boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRef {
    /// Host pid.
    pub pid: i32,
    /// Field 22 of /proc/PID/stat.
    pub start_time: u64,
}

/// What /proc says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// One-letter state (R, S, D, Z, T, t, X...).
    pub state: char,
    /// Start time in clock ticks after boot.
    pub start_time: u64,
}

/// Reads the state and start time of `pid` from /proc; `None` when there is no such process.
pub fn stat(pid: i32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses /proc/PID/stat. The command name (field 2) may hold spaces and parentheses, so
/// the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // Field 3 is the state; the start time is field 22, i.e. 19 after the state.
    let state = fields.next()?.chars().next()?;
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

impl ProcRef {
    /// The process `pid` as it is now, if it exists.
    pub fn of(pid: i32) -> Option<ProcRef> {
        stat(pid).map(|s| ProcRef {
            pid,
            start_time: s.start_time,
        })
    }

    /// Whether this very process still exists and has not ended (a zombie has ended).
    pub fn alive(&self) -> bool {
        stat(self.pid)
            .is_some_and(|s| s.start_time == self.start_time && !matches!(s.state, 'Z' | 'X'))
    }

    /// A pidfd for this process, if it still is this process (and has not ended).
    pub fn pidfd(self) -> Option<OwnedFd> {
        // SAFETY: pidfd_open with a pid and no flags; returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: the kernel just returned this descriptor to us.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // Checked after opening: the pidfd now pins the process, so the check cannot race.
        self.alive().then_some(fd)
    }

    /// Sends `signal` to this process through a pidfd (never to a process that reused its
    /// pid); `false` when it has ended.
    pub fn signal(self, signal: i32) -> std::io::Result<bool> {
        match self.pidfd() {
            Some(fd) => pidfd_signal(std::os::fd::AsFd::as_fd(&fd), signal).map(|()| true),
            None => Ok(false),
        }
    }
}

/// pidfd_send_signal(2).
pub fn pidfd_signal(fd: BorrowedFd<'_>, signal: i32) -> std::io::Result<()> {
    // SAFETY: pidfd_send_signal on a valid pidfd, no siginfo, no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Waits for `pid`, a child of ours; its exit code as a shell gives it (128+N for signal N).
pub fn wait_child(pid: i32) -> Result<i32> {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(OciError::io(format!("wait for process {pid}"), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.start_time, 987654);
    }

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let me = ProcRef::of(std::process::id() as i32).unwrap();
        assert!(me.alive());
        let other = ProcRef {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!other.alive());
        assert!(other.pidfd().is_none() && !other.signal(0).unwrap());
        assert!(me.signal(0).unwrap(), "signal 0 reaches a live process");
    }

    #[test]
    fn a_childs_status_as_a_shell_gives_it() {
        let child = |script: &str| {
            std::process::Command::new("/bin/sh")
                .args(["-c", script])
                .spawn()
                .unwrap()
                .id() as i32
        };
        assert_eq!(wait_child(child("exit 7")).unwrap(), 7);
        assert_eq!(wait_child(child("kill -KILL $$")).unwrap(), 137);
        assert!(wait_child(i32::MAX).is_err(), "not our child");
    }
}
