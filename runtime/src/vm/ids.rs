//! The unprivileged uid/gid each jailed VMM runs as: one per VM, from a range in hull's
//! config file, never shared by two live VMMs and never one that another mechanism hands
//! out (the subordinate id ranges of /etc/subuid and /etc/subgid, which user-namespace
//! tools such as podman and `--userns=auto` allocate from).
//!
//! The VMM's uid is also what its process limit (RLIMIT_NPROC, counted per uid) and its
//! kill-ability by other processes hinge on, so two VMMs must never share one, not even two
//! VMMs of different hull state roots. Leases are therefore host-wide, in
//! [`REGISTRY`] (on /run: they last as long as the processes they protect):
//!
//! ```text
//! /run/hull-vm-ids/lock     flock: held while an id is chosen or released
//! /run/hull-vm-ids/next     where the next search starts (round robin: a just-freed id is
//!                           the last to be handed out again)
//! /run/hull-vm-ids/<id>     a lease: "PID START_TIME" of its holder (the launching hull,
//!                           then the VMM)
//! ```
//!
//! An id is free when it has no lease whose holder still runs AND no process on the host
//! runs with it as any of its user or group ids (so a VMM whose lease was lost still
//! blocks its id). The uid and the gid of a VM are the same number.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::machine::process_start_time;

/// Host-wide lease directory.
pub const REGISTRY: &str = "/run/hull-vm-ids";
/// First id of the default range: far above the conventional allocations (shadow's
/// subordinate ids from 100000, systemd's dynamic users below 65536, systemd-nspawn's
/// container ranges up to 0x6fffffff, its foreign range at 0x7ffe0000).
pub const DEFAULT_START: u32 = 0xc000_0000;
/// Ids in the default range: as many VMs at once.
pub const DEFAULT_COUNT: u32 = 65536;

/// The `vm.jail_ids` section of the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdRange {
    /// First id.
    pub start: u32,
    /// How many ids.
    pub count: u32,
}

impl Default for IdRange {
    fn default() -> Self {
        IdRange {
            start: DEFAULT_START,
            count: DEFAULT_COUNT,
        }
    }
}

impl std::fmt::Display for IdRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}..={}",
            self.start,
            u64::from(self.start) + u64::from(self.count) - 1
        )
    }
}

/// What the id range must not overlap: `(where, first, count)`.
pub type Reserved = (String, u64, u64);

impl IdRange {
    fn end(&self) -> u64 {
        u64::from(self.start) + u64::from(self.count)
    }

    fn contains(&self, id: u32) -> bool {
        id >= self.start && u64::from(id) < self.end()
    }

    /// Checks the range itself and that it overlaps none of `reserved`.
    pub fn check(&self, reserved: &[Reserved]) -> Result<(), String> {
        if self.count == 0 {
            return Err(format!("vm.jail_ids: count is 0 (start {})", self.start));
        }
        // 0 is root; 4294967295 is "no id" ((uid_t) -1) to the kernel's set*id calls.
        if self.start == 0 || self.end() > u64::from(u32::MAX) {
            return Err(format!(
                "vm.jail_ids {self}: ids must lie in 1..=4294967294 (0 is root, 4294967295 \
                 means no id)"
            ));
        }
        for (what, first, count) in reserved {
            if *count > 0 && *first < self.end() && u64::from(self.start) < first + count {
                return Err(format!(
                    "vm.jail_ids {self} overlaps {what} ({first}..={}): a VMM could share its \
                     uid with a user namespace; move one of them",
                    first + count - 1
                ));
            }
        }
        Ok(())
    }
}

/// The subordinate id ranges of an /etc/subuid or /etc/subgid text (`name:first:count`
/// lines; comments and malformed lines are skipped, as shadow's tools do).
pub fn subordinate_ranges(file: &str, text: &str) -> Vec<Reserved> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let owner = f.next()?;
            let first: u64 = f.next()?.trim().parse().ok()?;
            let count: u64 = f.next()?.trim().parse().ok()?;
            Some((format!("{file} ({owner})"), first, count))
        })
        .collect()
}

/// The host's reserved ranges: /etc/subuid and /etc/subgid.
pub fn host_reserved() -> Vec<Reserved> {
    let mut all = Vec::new();
    for file in ["/etc/subuid", "/etc/subgid"] {
        let mut text = String::new();
        if let Ok(f) = fs::File::open(file) {
            let _ = f.take(1 << 20).read_to_string(&mut text);
        }
        all.extend(subordinate_ranges(file, &text));
    }
    all
}

/// A process identity that survives pid reuse: pid and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    /// Host pid.
    pub pid: u32,
    /// Field 22 of /proc/PID/stat.
    pub start_time: u64,
}

impl Holder {
    /// The calling process.
    pub fn this_process() -> io::Result<Holder> {
        let pid = std::process::id();
        let start_time = process_start_time(pid)
            .ok_or_else(|| io::Error::other("cannot read this process's start time"))?;
        Ok(Holder { pid, start_time })
    }

    fn alive(&self) -> bool {
        process_start_time(self.pid) == Some(self.start_time)
    }

    fn parse(text: &str) -> Option<Holder> {
        let mut f = text.split_whitespace();
        Some(Holder {
            pid: f.next()?.parse().ok()?,
            start_time: f.next()?.parse().ok()?,
        })
    }
}

/// The lease directory, held locked.
struct Registry {
    dir: PathBuf,
    _lock: Flock<fs::File>,
}

fn io_err(what: impl std::fmt::Display, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Registry {
    fn open(dir: &Path) -> io::Result<Registry> {
        fs::create_dir_all(dir).map_err(|e| io_err(format!("create {}", dir.display()), e))?;
        let lock = dir.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(|e| io_err(format!("open {}", lock.display()), e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| io_err("lock the VM id registry", e.into()))?;
        Ok(Registry {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    fn lease_path(&self, id: u32) -> PathBuf {
        self.dir.join(id.to_string())
    }

    fn holder(&self, id: u32) -> Option<Holder> {
        let text = fs::read_to_string(self.lease_path(id)).ok()?;
        Holder::parse(&text)
    }

    fn write_lease(&self, id: u32, holder: Holder) -> io::Result<()> {
        let tmp = self.dir.join(format!(".{id}.tmp"));
        fs::write(&tmp, format!("{} {}\n", holder.pid, holder.start_time))
            .and_then(|()| fs::rename(&tmp, self.lease_path(id)))
            .map_err(|e| io_err(format!("write the lease of VM id {id}"), e))
    }

    fn cursor(&self, range: IdRange) -> u32 {
        fs::read_to_string(self.dir.join("next"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|id| range.contains(*id))
            .unwrap_or(range.start)
    }
}

/// The ids in `range` that some process on the host runs with (as a real, effective, saved
/// or filesystem uid or gid).
fn ids_in_use(proc_root: &Path, range: IdRange) -> Vec<u32> {
    let mut used = Vec::new();
    let Ok(entries) = fs::read_dir(proc_root) else {
        return used;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(status) = fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        for line in status.lines() {
            if let Some(ids) = line
                .strip_prefix("Uid:")
                .or_else(|| line.strip_prefix("Gid:"))
            {
                used.extend(
                    ids.split_whitespace()
                        .filter_map(|s| s.parse::<u32>().ok())
                        .filter(|id| range.contains(*id)),
                );
            }
        }
    }
    used
}

/// One VM's id, leased until [`release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The uid and gid.
    pub id: u32,
}

/// Leases a free id of `range` to `holder`, searching from where the last search ended.
pub fn allocate(registry: &Path, range: IdRange, holder: Holder) -> io::Result<Lease> {
    allocate_with(registry, Path::new("/proc"), range, holder)
}

fn allocate_with(
    registry: &Path,
    proc_root: &Path,
    range: IdRange,
    holder: Holder,
) -> io::Result<Lease> {
    let reg = Registry::open(registry)?;
    let in_use = ids_in_use(proc_root, range);
    let first = reg.cursor(range);
    let offset = first - range.start;
    for i in 0..range.count {
        let id = range.start + ((offset as u64 + i as u64) % range.count as u64) as u32;
        if in_use.contains(&id) || reg.holder(id).is_some_and(|h| h.alive()) {
            continue;
        }
        reg.write_lease(id, holder)?;
        let next = if u64::from(id) + 1 < range.end() {
            id + 1
        } else {
            range.start
        };
        // Only a hint: a lost cursor restarts the search at the range's start.
        let _ = fs::write(reg.dir.join("next"), next.to_string());
        return Ok(Lease { id });
    }
    Err(io::Error::other(format!(
        "no free VM id in vm.jail_ids {range}: every one belongs to a running VM (raise \
         vm.jail_ids.count in hull's config file)"
    )))
}

/// Hands the lease of `id` from `from` to `to` (the launcher to the VMM it started).
pub fn transfer(registry: &Path, id: u32, from: Holder, to: Holder) -> io::Result<()> {
    let reg = Registry::open(registry)?;
    if reg.holder(id) != Some(from) {
        return Err(io::Error::other(format!(
            "the lease of VM id {id} is no longer this process's"
        )));
    }
    reg.write_lease(id, to)
}

/// Ends the lease of `id` if `holder` (or a holder that no longer runs) has it; a lease a
/// live process took over meanwhile is left alone.
pub fn release(registry: &Path, id: u32, holder: Option<Holder>) -> io::Result<()> {
    let reg = Registry::open(registry)?;
    match reg.holder(id) {
        Some(h) if Some(h) == holder || !h.alive() => {}
        None if reg.lease_path(id).exists() => {}
        _ => return Ok(()),
    }
    match fs::remove_file(reg.lease_path(id)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(io_err(format!("remove the lease of VM id {id}"), e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: u32, count: u32) -> IdRange {
        IdRange { start, count }
    }

    #[test]
    fn the_range_must_be_unprivileged_and_apart_from_subordinate_ids() {
        IdRange::default().check(&[]).unwrap();
        assert!(range(0, 10).check(&[]).unwrap_err().contains("0 is root"));
        assert!(range(u32::MAX - 5, 6).check(&[]).is_err(), "reaches -1");
        range(u32::MAX - 5, 5).check(&[]).unwrap();
        assert!(range(7, 0).check(&[]).unwrap_err().contains("count is 0"));
        let subuid = subordinate_ranges(
            "/etc/subuid",
            "# comment\nalice:100000:65536\nbroken line\n1001:3000000000:65536\n",
        );
        assert_eq!(subuid.len(), 2);
        let err = range(3_000_060_000, 100).check(&subuid).unwrap_err();
        assert!(
            err.contains("/etc/subuid (1001)") && err.contains("3000000000..=3000065535"),
            "{err}"
        );
        range(3_000_065_536, 100).check(&subuid).unwrap();
        range(165_536, 10).check(&subuid).unwrap();
        assert!(range(100, 100_000).check(&subuid).is_err());
    }

    fn fake_proc(dir: &Path, pid: u32, uid: u32) {
        let p = dir.join(pid.to_string());
        fs::create_dir_all(&p).unwrap();
        fs::write(
            p.join("status"),
            format!("Name:\thull-vmm\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t7\t7\t7\t7\n"),
        )
        .unwrap();
    }

    #[test]
    fn ids_are_leased_round_robin_and_never_while_in_use() {
        let reg = tempfile::tempdir().unwrap();
        let proc_root = tempfile::tempdir().unwrap();
        let me = Holder::this_process().unwrap();
        let r = range(5000, 3);
        // 5000 runs a process of its own (a VMM whose lease is gone): skipped.
        fake_proc(proc_root.path(), 42, 5000);
        let a = allocate_with(reg.path(), proc_root.path(), r, me).unwrap();
        assert_eq!(a.id, 5001);
        let b = allocate_with(reg.path(), proc_root.path(), r, me).unwrap();
        assert_eq!(b.id, 5002);
        let err = allocate_with(reg.path(), proc_root.path(), r, me).unwrap_err();
        assert!(err.to_string().contains("no free VM id"), "{err}");
        // Released, 5001 is free again; a lease whose holder died is free as well.
        release(reg.path(), a.id, Some(me)).unwrap();
        let dead = Holder {
            pid: me.pid,
            start_time: me.start_time + 1,
        };
        transfer(reg.path(), b.id, me, dead).unwrap();
        let c = allocate_with(reg.path(), proc_root.path(), r, me).unwrap();
        let d = allocate_with(reg.path(), proc_root.path(), r, me).unwrap();
        assert_eq!((c.id, d.id), (5001, 5002));
        assert!(!reg.path().join("5000").exists());
    }

    #[test]
    fn a_lease_taken_over_by_a_live_process_is_not_released_by_the_old_holder() {
        let reg = tempfile::tempdir().unwrap();
        let proc_root = tempfile::tempdir().unwrap();
        let me = Holder::this_process().unwrap();
        let lease = allocate_with(reg.path(), proc_root.path(), range(9, 1), me).unwrap();
        let stranger = Holder {
            pid: 1,
            start_time: process_start_time(1).unwrap(),
        };
        transfer(reg.path(), lease.id, me, stranger).unwrap();
        assert!(transfer(reg.path(), lease.id, me, me).is_err());
        release(reg.path(), lease.id, Some(me)).unwrap();
        assert!(reg.path().join("9").exists(), "pid 1 still holds it");
        release(reg.path(), lease.id, Some(stranger)).unwrap();
        assert!(!reg.path().join("9").exists());
    }
}
