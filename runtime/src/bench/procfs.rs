//! Host memory of a container: every host process that belongs to it, by PSS.
//!
//! PSS (proportional set size, /proc/PID/smaps_rollup) charges each shared page to its
//! sharers in equal parts, so the PSS of M containers adds up to what they really cost
//! together, and shared runtime or image pages are not counted M times.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// Bound on how much of a /proc file is read (they are small; a huge one is not ours).
const MAX_PROC_FILE: u64 = 1 << 20;

fn read_small(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_PROC_FILE)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// Every process on the host as (pid, parent pid).
pub fn process_table() -> Vec<(u32, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, parent_of(pid)?)))
        .collect()
}

/// Parent pid from /proc/PID/stat (the field after the state, past the last `)` of comm).
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = read_small(&Path::new("/proc").join(pid.to_string()).join("stat"))?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `roots` and all their descendants that are alive now.
pub fn tree(roots: &[u32]) -> BTreeSet<u32> {
    let table = process_table();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for &(pid, ppid) in &table {
        children.entry(ppid).or_default().push(pid);
    }
    let alive: BTreeSet<u32> = table.iter().map(|&(pid, _)| pid).collect();
    let mut found = BTreeSet::new();
    let mut stack: Vec<u32> = roots
        .iter()
        .copied()
        .filter(|p| alive.contains(p))
        .collect();
    while let Some(pid) = stack.pop() {
        if found.insert(pid) {
            stack.extend(children.get(&pid).into_iter().flatten().copied());
        }
    }
    found
}

/// Processes whose /proc/PID/cgroup mentions `needle` (a container id or cgroup name).
pub fn in_cgroup_matching(needle: &str) -> BTreeSet<u32> {
    process_table()
        .into_iter()
        .map(|(pid, _)| pid)
        .filter(|pid| {
            read_small(&Path::new("/proc").join(pid.to_string()).join("cgroup"))
                .is_some_and(|c| c.contains(needle))
        })
        .collect()
}

/// A `Key:   N kB` field of a smaps-style file, in KiB.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))
        .and_then(|l| l[key.len() + 1..].split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// PSS of one process in KiB (None when it has gone or is a kernel thread).
pub fn pss_kib(pid: u32) -> Option<u64> {
    let text = read_small(
        &Path::new("/proc")
            .join(pid.to_string())
            .join("smaps_rollup"),
    )?;
    kib_field(&text, "Pss")
}

/// Sum of the PSS of `pids`, in KiB, and how many of them were measured.
pub fn total_pss_kib(pids: &BTreeSet<u32>) -> (u64, usize) {
    pids.iter()
        .filter_map(|&p| pss_kib(p))
        .fold((0, 0), |(sum, n), kib| (sum + kib, n + 1))
}

/// Resident KiB of the largest anonymous or memfd mapping of `pid`: for a VMM process, the
/// guest RAM the guest has actually touched (untouched guest pages are never faulted in).
pub fn largest_anon_mapping_rss_kib(pid: u32) -> Option<u64> {
    let text = read_small(&Path::new("/proc").join(pid.to_string()).join("smaps"))?;
    let mut best: Option<(u64, u64)> = None; // (size, rss)
    let mut current: Option<(bool, u64)> = None; // (anonymous-like, size)
    for line in text.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let path = line.split_whitespace().nth(5).unwrap_or("");
            current = Some((path.is_empty() || path.starts_with("/memfd:"), 0));
        } else if let (Some((anon, _)), Some(size)) = (current, kib_field(line, "Size")) {
            current = Some((anon, size));
        } else if let (Some((true, size)), Some(rss)) = (current, kib_field(line, "Rss")) {
            match best {
                Some((biggest, _)) if biggest >= size => {}
                _ => best = Some((size, rss)),
            }
        }
    }
    best.map(|(_, rss)| rss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_a_parent_and_a_pss() {
        let me = std::process::id();
        assert!(parent_of(me).is_some());
        assert!(pss_kib(me).unwrap() > 0);
        assert!(tree(&[me]).contains(&me));
    }

    #[test]
    fn tree_includes_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let found = tree(&[std::process::id()]);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found.contains(&child.id()));
    }

    #[test]
    fn kib_fields_parse() {
        let text = "Rss:                 100 kB\nPss:                  42 kB\nPss_Anon: 7 kB\n";
        assert_eq!(kib_field(text, "Pss"), Some(42));
        assert_eq!(kib_field(text, "Pss_Anon"), Some(7));
        assert_eq!(kib_field(text, "Swap"), None);
    }
}
