//! Resolving `--user` against the image's /etc/passwd and /etc/group.
//!
//! Shared by both isolation models, so `--user` means the same in a process container and
//! in a VM. The agent is a static binary without NSS, and the runtime must not trust the
//! image's NSS setup either, so the files are parsed here. Their contents are hostile:
//! [`resolve_in_root`] reads them through [`crate::in_root`], bounded.

use std::path::Path;

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, Process};

/// Largest /etc/passwd or /etc/group read.
pub const MAX_ACCOUNT_FILE: u64 = 1 << 20;
/// At most this many groups go to setgroups(2) (the kernel allows 65536; no real image
/// needs more, and a hostile group file cannot make the list huge).
pub const MAX_GROUPS: usize = 64;
/// `(uid_t) -1`: to setresuid/setresgid/chown it means "leave unchanged", so a process
/// meant to run as this id would keep running as root. Never a valid id (runc refuses
/// it too).
pub const INVALID_ID: u32 = u32::MAX;

/// Who a process runs as after resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (from /etc/group membership).
    pub groups: Vec<u32>,
    /// Home directory from /etc/passwd, if the user is listed.
    pub home: Option<String>,
}

impl ResolvedUser {
    /// The list for setgroups(2): the primary group, then the supplementary ones, at most
    /// [`MAX_GROUPS`] (as initgroups(3) would give).
    pub fn setgroups_list(&self) -> Vec<u32> {
        let mut all = vec![self.gid];
        all.extend(self.groups.iter().copied().filter(|&g| g != self.gid));
        all.truncate(MAX_GROUPS);
        all
    }

    /// `HOME` for the process: the passwd entry's home, `/` when unlisted or empty.
    pub fn home_or_root(&self) -> &str {
        self.home
            .as_deref()
            .filter(|h| !h.is_empty())
            .unwrap_or("/")
    }
}

/// The capability sets of a process: `bounding` for everyone; a non-root user starts with
/// none effective or permitted (as the kernel gives a non-root program without file caps).
pub fn capabilities(bounding: &[Capability], uid: u32) -> LinuxCapabilities {
    let set: Capabilities = bounding.iter().copied().collect();
    let own = if uid == 0 {
        set.clone()
    } else {
        Capabilities::new()
    };
    let mut c = LinuxCapabilities::default();
    c.set_bounding(Some(set))
        .set_effective(Some(own.clone()))
        .set_permitted(Some(own))
        .set_inheritable(Some(Capabilities::new()))
        .set_ambient(Some(Capabilities::new()));
    c
}

/// Gives `process` the identity `who` (`exec --user`, resolved by the side that sees the
/// running container's files): ids, groups, and the capabilities a process of that uid
/// starts with (the bounding set stays the container's).
pub fn apply_identity(p: &mut Process, who: &ResolvedUser) {
    let groups: Vec<u32> = who.setgroups_list().into_iter().skip(1).collect();
    p.user_mut()
        .set_uid(who.uid)
        .set_gid(who.gid)
        .set_additional_gids(Some(groups));
    let bounding: Vec<Capability> = p
        .capabilities()
        .as_ref()
        .and_then(|c| c.bounding().clone())
        .map(|b| b.into_iter().collect())
        .unwrap_or_default();
    p.set_capabilities(Some(capabilities(&bounding, who.uid)));
}

/// Resolves `spec` against /etc/passwd and /etc/group of the root filesystem at `root`
/// (missing or unsuitable files count as empty).
pub fn resolve_in_root(spec: &str, root: &Path) -> Result<ResolvedUser, UserError> {
    let read = |path: &str| {
        crate::in_root::read_small_file(root, Path::new(path), MAX_ACCOUNT_FILE).unwrap_or_default()
    };
    resolve(spec, &read("/etc/passwd"), &read("/etc/group"))
}

/// Errors resolving a user spec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    /// A name that /etc/passwd does not list.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    /// A group name that /etc/group does not list.
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    /// The user or a group resolves to 4294967295, which the kernel reads as "unchanged".
    #[error(
        "{what} {spec:?} resolves to id 4294967295 ((uid_t) -1, which setuid/setgid read as \
         \"leave unchanged\"): not a usable id"
    )]
    InvalidId {
        /// `user`, `group` or `supplementary group`.
        what: &'static str,
        /// The spec or entry that led to it.
        spec: String,
    },
}

/// Refuses [`INVALID_ID`].
fn valid_id(id: u32, what: &'static str, spec: &str) -> Result<u32, UserError> {
    if id == INVALID_ID {
        return Err(UserError::InvalidId {
            what,
            spec: spec.to_string(),
        });
    }
    Ok(id)
}

/// Checks the numeric parts of a `--user` value (`uid[:gid]`) before anything is created,
/// so an impossible id is refused at `create` time; names are resolved later, in the
/// image, by [`resolve`] (which refuses the same ids).
pub fn check_spec(spec: &str) -> Result<(), UserError> {
    let (user, group) = spec.split_once(':').unwrap_or((spec, ""));
    if let Ok(uid) = user.parse::<u32>() {
        valid_id(uid, "user", spec)?;
    }
    if let Ok(gid) = group.parse::<u32>() {
        valid_id(gid, "group", spec)?;
    }
    Ok(())
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        let members = f[3].split(',').filter(|m| !m.is_empty()).collect();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

/// Resolves `spec` (`""`, `name`, `uid`, `name:group`, `uid:gid`, ...) with the contents of
/// /etc/passwd and /etc/group (either may be empty when the image lacks them).
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ResolvedUser, UserError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };

    let entry = passwd_entries(passwd)
        .find(|e| e.name == user_part || user_part.parse::<u32>().ok() == Some(e.uid));
    let (uid, mut gid, name, home) = match (entry, user_part.parse::<u32>()) {
        (Some(e), _) => (e.uid, e.gid, Some(e.name), Some(e.home.to_string())),
        // A numeric uid need not be listed (Docker behaves the same).
        (None, Ok(uid)) => (uid, 0, None, None),
        (None, Err(_)) => return Err(UserError::NoUser(user_part.to_string())),
    };

    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        gid = match group_entries(group).find(|(n, _, _)| *n == g) {
            Some((_, id, _)) => id,
            None => g.parse().map_err(|_| UserError::NoGroup(g.to_string()))?,
        };
    }

    let mut groups = Vec::new();
    if group_part.is_none() {
        if let Some(name) = name {
            for (group_name, id, members) in group_entries(group) {
                if members.contains(&name) && id != gid && !groups.contains(&id) {
                    groups.push(valid_id(id, "supplementary group", group_name)?);
                }
            }
        }
    }
    valid_id(uid, "user", spec)?;
    valid_id(gid, "group", spec)?;
    Ok(ResolvedUser {
        uid,
        gid,
        groups,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
                          nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
                          broken-line\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:nobody,daemon\nnogroup:x:65534:\n";

    #[test]
    fn empty_means_root() {
        let u = resolve("", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (0, 0));
        assert_eq!(u.home.as_deref(), Some("/root"));
    }

    #[test]
    fn names_and_numbers_resolve() {
        let u = resolve("nobody", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid, u.groups.clone()), (65534, 65534, vec![10]));
        let u = resolve("1", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (1, 1));
        let u = resolve("1234:5678", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid, u.groups), (1234, 5678, vec![]));
        let u = resolve("daemon:wheel", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (1, 10));
    }

    #[test]
    fn setgroups_gets_the_primary_group_first_and_home_defaults_to_root() {
        let u = resolve("nobody", PASSWD, GROUP).unwrap();
        assert_eq!(u.setgroups_list(), vec![65534, 10]);
        assert_eq!(u.home_or_root(), "/nonexistent");
        let raw = resolve("4242:4343", PASSWD, GROUP).unwrap();
        assert_eq!(raw.setgroups_list(), vec![4343]);
        assert_eq!(raw.home_or_root(), "/");
        // A hostile group file cannot make the list long.
        let many: String = (1..=500).map(|g| format!("g{g}:x:{g}:nobody\n")).collect();
        assert_eq!(
            resolve("nobody", PASSWD, &many)
                .unwrap()
                .setgroups_list()
                .len(),
            MAX_GROUPS
        );
    }

    #[test]
    fn files_are_read_from_inside_the_given_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(root.path().join("etc/passwd"), PASSWD).unwrap();
        std::os::unix::fs::symlink("/nonexistent/group", root.path().join("etc/group")).unwrap();
        let u = resolve_in_root("daemon", root.path()).unwrap();
        assert_eq!((u.uid, u.gid, u.groups.clone()), (1, 1, vec![]));
        assert_eq!(
            resolve_in_root("daemon:wheel", root.path()),
            Err(UserError::NoGroup("wheel".into()))
        );
    }

    /// (uid_t) -1 would leave the process running as root: refused however it is reached,
    /// by number or through the image's own passwd and group files.
    #[test]
    fn id_4294967295_is_refused_everywhere() {
        let passwd = "ghost:x:4294967295:0::/:/bin/sh\nspook:x:7:4294967295::/:/bin/sh\n\
                      member:x:8:8::/:/bin/sh\n";
        let group = "root:x:0:\nminus:x:4294967295:member\n";
        for spec in [
            "4294967295",
            "4294967295:0",
            "0:4294967295",
            "ghost",
            "spook",
            "member",
            "member:minus",
        ] {
            assert!(
                matches!(
                    resolve(spec, passwd, group),
                    Err(UserError::InvalidId { .. })
                ),
                "{spec}: {:?}",
                resolve(spec, passwd, group)
            );
        }
        assert!(check_spec("4294967295").is_err());
        assert!(check_spec("1:4294967295").is_err());
        assert!(check_spec("4294967294:4294967294").is_ok());
        assert!(
            check_spec("ghost").is_ok(),
            "names are checked in the image"
        );
        let msg = resolve("ghost", passwd, group).unwrap_err().to_string();
        assert!(msg.contains("4294967295") && msg.contains("ghost"), "{msg}");
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(
            resolve("mallory", PASSWD, GROUP),
            Err(UserError::NoUser("mallory".into()))
        );
        assert_eq!(
            resolve("root:nosuch", PASSWD, GROUP),
            Err(UserError::NoGroup("nosuch".into()))
        );
    }
}
