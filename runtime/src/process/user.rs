//! Resolving `--user` (or the image's `User`) against the container's own /etc/passwd and
//! /etc/group, as docker does: `name`, `uid`, `name:group`, `uid:gid`, `:group`...
//!
//! Called after pivot_root, so the files are the container's and paths cannot lead out of
//! its root. Their content is hostile: only regular files are read, at most 1 MiB each.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

/// Largest passwd/group file we read.
const MAX_FILE: u64 = 1 << 20;

/// A resolved identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (from /etc/group membership of the user name).
    pub groups: Vec<u32>,
    /// Home directory (for `HOME`), `/` when unknown.
    pub home: String,
}

/// Reads a small regular file from the container, or `None` if absent/unsuitable.
fn read_small(path: &str) -> Option<String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(MAX_FILE).read_to_string(&mut text).ok()?;
    Some(text)
}

/// One `/etc/passwd` entry: (name, uid, gid, home).
fn passwd_entries(text: &str) -> impl Iterator<Item = (&str, u32, u32, &str)> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        Some((f[0], f[2].parse().ok()?, f[3].parse().ok()?, f[5]))
    })
}

/// One `/etc/group` entry: (name, gid, members).
fn group_entries(text: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        let members = f[3].split(',').filter(|m| !m.is_empty()).collect();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

/// Resolves `spec` against the container's /etc/passwd and /etc/group.
pub fn resolve(spec: &str) -> Result<Identity, String> {
    resolve_with(
        spec,
        read_small("/etc/passwd").as_deref(),
        read_small("/etc/group").as_deref(),
    )
}

/// Resolves `spec` with the given file contents (`None` = file missing).
pub fn resolve_with(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<Identity, String> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = passwd.unwrap_or("");
    let group = group.unwrap_or("");

    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let (uid, mut gid, home, name) = match user_part.parse::<u32>() {
        Ok(uid) => match passwd_entries(passwd).find(|e| e.1 == uid) {
            Some((name, _, gid, home)) => (uid, gid, home.to_string(), Some(name)),
            None => (uid, 0, "/".to_string(), None),
        },
        Err(_) => match passwd_entries(passwd).find(|e| e.0 == user_part) {
            Some((name, uid, gid, home)) => (uid, gid, home.to_string(), Some(name)),
            None => {
                return Err(format!(
                    "unable to find user {user_part}: no matching entries in passwd file"
                ))
            }
        },
    };
    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => match group_entries(group).find(|e| e.0 == g) {
                Some((_, gid, _)) => gid,
                None => {
                    return Err(format!(
                        "unable to find group {g}: no matching entries in group file"
                    ))
                }
            },
        };
    }
    let mut groups = vec![gid];
    if let Some(name) = name {
        for (_, g, members) in group_entries(group) {
            if members.contains(&name) && !groups.contains(&g) {
                groups.push(g);
            }
        }
    }
    groups.truncate(64);
    Ok(Identity {
        uid,
        gid,
        groups,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nuser:x:1000:1000:user:/home/user:/bin/sh\nbroken line\n";
    const GROUP: &str = "root:x:0:\nusers:x:100:user\nuser:x:1000:\nnogroup:x:65534:\n";

    #[test]
    fn names_and_numbers_resolve() {
        let u = resolve_with("user", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1000, 1000, "/home/user"));
        assert_eq!(u.groups, vec![1000, 100]);
        let n = resolve_with("1000:users", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((n.uid, n.gid), (1000, 100));
        let raw = resolve_with("4242:4343", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((raw.uid, raw.gid, raw.home.as_str()), (4242, 4343, "/"));
        assert_eq!(resolve_with("", None, None).unwrap().uid, 0);
    }

    #[test]
    fn unknown_names_are_errors() {
        assert!(resolve_with("ghost", Some(PASSWD), Some(GROUP))
            .unwrap_err()
            .contains("ghost"));
        assert!(resolve_with("user:ghosts", Some(PASSWD), Some(GROUP)).is_err());
    }
}
