//! `linux.namespaces` (and the user namespace's id mappings): which namespaces the child is
//! created in, which it joins by path, and in what order.

use std::collections::BTreeSet;
use std::path::PathBuf;

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespace, LinuxNamespaceType};

use crate::error::Error;

/// CLONE_NEWTIME (absent from older libc).
const CLONE_NEWTIME: u64 = 0x80;

/// The CLONE_NEW* flag of a namespace type.
pub fn flag(t: LinuxNamespaceType) -> u64 {
    (match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => return CLONE_NEWTIME,
    }) as u64
}

/// The spec's name of a namespace type given as its CLONE_NEW* flag.
pub fn flag_name(f: u64) -> &'static str {
    [
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::User,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Time,
    ]
    .into_iter()
    .find(|t| flag(*t) == f)
    .map_or("unknown", |t| match t {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Time => "time",
    })
}

/// A namespace joined by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    /// Its CLONE_NEW* flag.
    pub flag: u64,
    /// The namespace file (`/proc/PID/ns/net`, `/run/netns/NAME`...).
    pub path: PathBuf,
}

/// The uid and gid maps of a new user namespace, as written to /proc/PID/{uid,gid}_map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMaps {
    /// uid_map contents.
    pub uid_map: String,
    /// gid_map contents.
    pub gid_map: String,
}

/// How the child gets its namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespacePlan {
    /// Created at clone (CLONE_NEW*, without the cgroup namespace).
    pub clone_flags: u64,
    /// Created by unshare after the child has joined its cgroups, so that its own cgroup
    /// is the root of the tree it sees.
    pub new_cgroup: bool,
    /// Joined by path, in this order (user first, mount last). A PID namespace is not
    /// here: it is entered by the parent before the clone ([`NamespacePlan::join_pid`]).
    pub join: Vec<Join>,
    /// A PID namespace to create the child in.
    pub join_pid: Option<PathBuf>,
    /// Maps for a new user namespace.
    pub user: Option<IdMaps>,
}

/// Largest number of lines in an id map (the kernel's limit).
const MAX_MAP_LINES: usize = 340;

fn map_text(maps: &[LinuxIdMapping], what: &str) -> Result<String, Error> {
    if maps.is_empty() {
        return Err(Error::invalid(format!(
            "a new user namespace needs linux.{what}Mappings"
        )));
    }
    if maps.len() > MAX_MAP_LINES {
        return Err(Error::invalid(format!(
            "linux.{what}Mappings has {} entries (the kernel takes {MAX_MAP_LINES})",
            maps.len()
        )));
    }
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut text = String::new();
    for m in maps {
        let (c, h, n) = (m.container_id() as u64, m.host_id() as u64, m.size() as u64);
        if n == 0 || c + n > 1 << 32 || h + n > 1 << 32 {
            return Err(Error::invalid(format!(
                "linux.{what}Mappings entry {c} {h} {n} is empty or leaves the 32-bit id space"
            )));
        }
        if ranges.iter().any(|&(s, e)| c < e && s < c + n) {
            return Err(Error::invalid(format!(
                "linux.{what}Mappings entries overlap inside the container"
            )));
        }
        ranges.push((c, c + n));
        text.push_str(&format!("{c} {h} {n}\n"));
    }
    Ok(text)
}

impl NamespacePlan {
    /// The plan for `namespaces` with the user namespace's maps.
    pub fn new(
        namespaces: &[LinuxNamespace],
        uid_mappings: &[LinuxIdMapping],
        gid_mappings: &[LinuxIdMapping],
    ) -> Result<NamespacePlan, Error> {
        let mut seen = BTreeSet::new();
        let mut plan = NamespacePlan {
            clone_flags: 0,
            new_cgroup: false,
            join: Vec::new(),
            join_pid: None,
            user: None,
        };
        for ns in namespaces {
            let t = ns.typ();
            if !seen.insert(flag(t)) {
                return Err(Error::invalid(format!(
                    "namespace {t} is listed twice in linux.namespaces"
                )));
            }
            if t == LinuxNamespaceType::Time {
                return Err(Error::unsupported(
                    "time namespaces are not supported by hull",
                ));
            }
            match (ns.path(), t) {
                (None, LinuxNamespaceType::Cgroup) => plan.new_cgroup = true,
                (None, _) => plan.clone_flags |= flag(t),
                (Some(p), _) if !p.is_absolute() => {
                    return Err(Error::invalid(format!(
                        "namespace path {} must be absolute",
                        p.display()
                    )))
                }
                (Some(p), LinuxNamespaceType::Pid) => plan.join_pid = Some(p.clone()),
                (Some(p), _) => plan.join.push(Join {
                    flag: flag(t),
                    path: p.clone(),
                }),
            }
        }
        if !seen.contains(&flag(LinuxNamespaceType::Mount)) {
            return Err(Error::unsupported(
                "a container without a mount namespace (hull always gives it its own root)",
            ));
        }
        // Joining: the user namespace first (it grants the rights for the others), the
        // mount namespace last (it changes what paths mean).
        let rank = |f: u64| match f {
            x if x == libc::CLONE_NEWUSER as u64 => 0,
            x if x == libc::CLONE_NEWNS as u64 => 2,
            _ => 1,
        };
        plan.join.sort_by_key(|j| rank(j.flag));
        let new_user = plan.clone_flags & libc::CLONE_NEWUSER as u64 != 0;
        if new_user {
            plan.user = Some(IdMaps {
                uid_map: map_text(uid_mappings, "uid")?,
                gid_map: map_text(gid_mappings, "gid")?,
            });
        } else if !uid_mappings.is_empty() || !gid_mappings.is_empty() {
            return Err(Error::invalid(
                "linux.uidMappings/gidMappings are given but no new user namespace is",
            ));
        }
        Ok(plan)
    }

    /// Whether the child gets a new namespace of this type.
    pub fn creates(&self, t: LinuxNamespaceType) -> bool {
        if t == LinuxNamespaceType::Cgroup {
            return self.new_cgroup;
        }
        self.clone_flags & flag(t) != 0
    }

    /// Whether the child has its own namespace of this type (new or joined).
    pub fn isolates(&self, t: LinuxNamespaceType) -> bool {
        self.creates(t)
            || self.join.iter().any(|j| j.flag == flag(t))
            || (t == LinuxNamespaceType::Pid && self.join_pid.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(t: LinuxNamespaceType, path: Option<&str>) -> LinuxNamespace {
        let mut n = LinuxNamespace::default();
        n.set_typ(t).set_path(path.map(PathBuf::from));
        n
    }

    fn map(c: u32, h: u32, n: u32) -> LinuxIdMapping {
        oci_spec::runtime::LinuxIdMappingBuilder::default()
            .container_id(c)
            .host_id(h)
            .size(n)
            .build()
            .unwrap()
    }

    #[test]
    fn docker_namespaces_are_created_at_clone_except_cgroup() {
        let p = NamespacePlan::new(&oci_spec::runtime::get_default_namespaces(), &[], &[]).unwrap();
        let want = libc::CLONE_NEWPID
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWNS;
        assert_eq!(p.clone_flags, want as u64);
        assert!(p.new_cgroup);
        assert!(p.join.is_empty() && p.user.is_none());
    }

    #[test]
    fn paths_are_joined_user_first_mount_last_and_pid_by_the_parent() {
        use LinuxNamespaceType::*;
        let p = NamespacePlan::new(
            &[
                ns(Mount, Some("/proc/1/ns/mnt")),
                ns(Network, Some("/run/netns/cni-1")),
                ns(User, Some("/proc/1/ns/user")),
                ns(Pid, Some("/proc/1/ns/pid")),
            ],
            &[],
            &[],
        )
        .unwrap();
        let order: Vec<u64> = p.join.iter().map(|j| j.flag).collect();
        assert_eq!(order, [flag(User), flag(Network), flag(Mount)]);
        assert_eq!(p.join_pid, Some(PathBuf::from("/proc/1/ns/pid")));
        assert_eq!(p.clone_flags, 0);
        assert!(p.isolates(Network) && !p.creates(Network));
    }

    #[test]
    fn user_namespaces_need_sane_maps() {
        use LinuxNamespaceType::*;
        let spec = [ns(Mount, None), ns(User, None)];
        let p =
            NamespacePlan::new(&spec, &[map(0, 100000, 65536)], &[map(0, 100000, 65536)]).unwrap();
        assert_eq!(p.user.unwrap().uid_map, "0 100000 65536\n");
        assert!(NamespacePlan::new(&spec, &[], &[map(0, 1, 1)]).is_err());
        assert!(NamespacePlan::new(&spec, &[map(0, 1, 0)], &[map(0, 1, 1)]).is_err());
        assert!(
            NamespacePlan::new(&spec, &[map(0, 1, 10), map(5, 100, 10)], &[map(0, 1, 1)]).is_err()
        );
        assert!(NamespacePlan::new(&spec, &[map(0, u32::MAX, 2)], &[map(0, 1, 1)]).is_err());
        let lots: Vec<_> = (0..400).map(|i| map(i, 1000 + i, 1)).collect();
        assert!(NamespacePlan::new(&spec, &lots, &[map(0, 1, 1)]).is_err());
        // Maps without a user namespace are a mistake, not something to ignore.
        assert!(NamespacePlan::new(&[ns(Mount, None)], &[map(0, 1, 1)], &[]).is_err());
    }

    #[test]
    fn impossible_namespace_lists_are_refused() {
        use LinuxNamespaceType::*;
        assert!(NamespacePlan::new(&[ns(Mount, None), ns(Mount, None)], &[], &[]).is_err());
        assert!(
            NamespacePlan::new(&[ns(Pid, None)], &[], &[]).is_err(),
            "no mount namespace"
        );
        assert!(NamespacePlan::new(&[ns(Mount, None), ns(Time, None)], &[], &[]).is_err());
        assert!(
            NamespacePlan::new(&[ns(Mount, None), ns(Network, Some("netns"))], &[], &[]).is_err()
        );
    }
}
