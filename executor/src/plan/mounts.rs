//! `mounts`, `linux.maskedPaths` and `linux.readonlyPaths` as mount steps.
//!
//! Every option of an OCI mount is classified here, before anything runs: mount attributes
//! (ro, nosuid, nodev, noexec, atime, nosymfollow; `r`-prefixed ones for the whole tree),
//! propagation, bind/rbind, superblock flags, and filesystem parameters (`mode=755`). An
//! option hull cannot apply is an error naming it.

use std::borrow::Cow;
use std::ffi::{CStr, CString};
use std::path::Path;

use oci_spec::runtime::Mount;

use super::process::{container_path, cstring};
use crate::error::Error;

/// MOUNT_ATTR_* bits (linux/mount.h).
pub mod attr {
    /// Read-only.
    pub const RDONLY: u64 = 0x1;
    /// No setuid/setgid.
    pub const NOSUID: u64 = 0x2;
    /// No device access.
    pub const NODEV: u64 = 0x4;
    /// No execution.
    pub const NOEXEC: u64 = 0x8;
    /// The atime field (a mode, not a flag).
    pub const ATIME_MASK: u64 = 0x70;
    /// Update atime relative to mtime (the default).
    pub const RELATIME: u64 = 0x0;
    /// Never update atime.
    pub const NOATIME: u64 = 0x10;
    /// Always update atime.
    pub const STRICTATIME: u64 = 0x20;
    /// Do not update directory atime.
    pub const NODIRATIME: u64 = 0x80;
    /// Do not follow symlinks.
    pub const NOSYMFOLLOW: u64 = 0x0020_0000;
}

/// Mount propagation (MS_* values as mount_setattr takes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// MS_SHARED.
    Shared,
    /// MS_SLAVE.
    Slave,
    /// MS_PRIVATE.
    Private,
    /// MS_UNBINDABLE.
    Unbindable,
}

impl Propagation {
    /// The MS_* flag.
    pub fn flag(self) -> u64 {
        match self {
            Propagation::Shared => libc::MS_SHARED,
            Propagation::Slave => libc::MS_SLAVE,
            Propagation::Private => libc::MS_PRIVATE,
            Propagation::Unbindable => libc::MS_UNBINDABLE,
        }
    }

    /// Parses `shared`, `rslave`, ...; returns it and whether it is recursive.
    pub fn parse(s: &str) -> Option<(Propagation, bool)> {
        let (rec, base) = match s.strip_prefix('r') {
            Some(b) if ["shared", "slave", "private", "unbindable"].contains(&b) => (true, b),
            _ => (false, s),
        };
        let p = match base {
            "shared" => Propagation::Shared,
            "slave" => Propagation::Slave,
            "private" => Propagation::Private,
            "unbindable" => Propagation::Unbindable,
            _ => return None,
        };
        Some((p, rec))
    }
}

/// Attribute changes: bits to set and to clear, on the mount itself or its whole tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attrs {
    /// Set on the top mount.
    pub set: u64,
    /// Cleared on the top mount.
    pub clear: u64,
    /// Set on every mount of the tree.
    pub rec_set: u64,
    /// Cleared on every mount of the tree.
    pub rec_clear: u64,
    /// The atime mode (RELATIME, NOATIME or STRICTATIME), for the top mount or the tree.
    pub atime: Option<(u64, bool)>,
    /// Propagation, and whether for the whole tree.
    pub propagation: Option<(Propagation, bool)>,
}

/// A C string that is either built from the spec or a constant (so that the child can use
/// constant parameters without allocating).
pub type Text = Cow<'static, CStr>;

/// A filesystem parameter for fsconfig(2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// `key` alone (FSCONFIG_SET_FLAG).
    Flag(Text),
    /// `key=value` (FSCONFIG_SET_STRING).
    Value(Text, Text),
}

/// What a mount step mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A new filesystem instance (fsopen/fsconfig/fsmount).
    Fs {
        /// Filesystem type.
        fstype: CString,
        /// The `source` parameter (shown in /proc/mounts), if any.
        source: Option<CString>,
        /// Its parameters.
        params: Vec<Param>,
    },
    /// A bind of a path outside the container root, opened before the switch into it.
    Bind {
        /// The source path (as the executor sees it).
        source: CString,
        /// rbind: with the mounts below it.
        recursive: bool,
    },
    /// `type: cgroup`: the container's cgroup tree, in whatever form the host has (cgroup2,
    /// or a tmpfs with the v1 hierarchies).
    Cgroup,
}

/// One entry of `mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountStep {
    /// Where, inside the container.
    pub destination: CString,
    /// What.
    pub kind: MountKind,
    /// Attributes and propagation.
    pub attrs: Attrs,
}

/// Largest number of mounts accepted (hostile specs).
pub const MAX_MOUNTS: usize = 1024;
/// Largest number of options on one mount.
pub const MAX_OPTIONS: usize = 256;

/// Superblock flags a new filesystem takes as fsconfig flags.
const SB_FLAGS: &[&str] = &[
    "sync",
    "dirsync",
    "mand",
    "nomand",
    "lazytime",
    "nolazytime",
    "silent",
    "iversion",
    "noiversion",
];

/// Options refused with a reason rather than passed on.
const REFUSED: &[(&str, &str)] = &[
    ("remount", "remounting"),
    ("idmap", "idmapped mounts"),
    ("ridmap", "idmapped mounts"),
    ("tmpcopyup", "tmpcopyup"),
    ("copy-symlink", "copy-symlink"),
];

fn apply_attr(a: &mut Attrs, name: &str) -> bool {
    let known = |n: &str| attr_of(n).is_some() || atime_of(n).is_some();
    let (rec, base) = match name.strip_prefix('r') {
        Some(b) if known(b) => (true, b),
        _ => (false, name),
    };
    if let Some(mode) = atime_of(base) {
        a.atime = Some((mode, rec));
        return true;
    }
    let Some((set, clear)) = attr_of(base) else {
        return false;
    };
    let (s, c) = if rec {
        (&mut a.rec_set, &mut a.rec_clear)
    } else {
        (&mut a.set, &mut a.clear)
    };
    *s = (*s & !clear) | set;
    *c = (*c & !set) | clear;
    true
}

/// (bits to set, bits to clear) of an attribute option.
fn attr_of(name: &str) -> Option<(u64, u64)> {
    use attr::*;
    Some(match name {
        "ro" => (RDONLY, 0),
        "rw" => (0, RDONLY),
        "nosuid" => (NOSUID, 0),
        "suid" => (0, NOSUID),
        "nodev" => (NODEV, 0),
        "dev" => (0, NODEV),
        "noexec" => (NOEXEC, 0),
        "exec" => (0, NOEXEC),
        "nosymfollow" => (NOSYMFOLLOW, 0),
        "symfollow" => (0, NOSYMFOLLOW),
        "nodiratime" => (NODIRATIME, 0),
        "diratime" => (0, NODIRATIME),
        _ => return None,
    })
}

/// The atime mode an option selects.
fn atime_of(name: &str) -> Option<u64> {
    use attr::*;
    Some(match name {
        "relatime" => RELATIME,
        "noatime" => NOATIME,
        "strictatime" | "norelatime" | "atime" => STRICTATIME,
        _ => return None,
    })
}

impl MountStep {
    /// Classifies one OCI mount.
    pub fn new(m: &Mount) -> Result<MountStep, Error> {
        let dest = m.destination();
        let destination = container_path("mount destination", dest)?;
        let what = || format!("mount on {}", dest.display());
        if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
            return Err(Error::unsupported(format!(
                "{}: uidMappings/gidMappings (idmapped mounts) are not supported by hull",
                what()
            )));
        }
        let options = m.options().clone().unwrap_or_default();
        if options.len() > MAX_OPTIONS {
            return Err(Error::invalid(format!("{}: too many options", what())));
        }
        let typ = m.typ().clone().unwrap_or_default();
        let mut attrs = Attrs::default();
        let mut bind: Option<bool> = None;
        let mut sb_flags = Vec::new();
        let mut params = Vec::new();
        for o in &options {
            if let Some((_, why)) = REFUSED.iter().find(|(n, _)| n == o) {
                return Err(Error::unsupported(format!(
                    "{}: option {o:?} ({why}) is not supported by hull",
                    what()
                )));
            }
            if o == "defaults" || apply_attr(&mut attrs, o) {
                continue;
            }
            if let Some(p) = Propagation::parse(o) {
                attrs.propagation = Some(p);
            } else if o == "bind" || o == "rbind" {
                bind = Some(o == "rbind");
            } else if SB_FLAGS.contains(&o.as_str()) {
                sb_flags.push(o.clone());
            } else {
                params.push(o.clone());
            }
        }
        let is_bind = bind.is_some() || typ == "bind";
        if is_bind {
            if let Some(p) = params.first().or(sb_flags.first()) {
                return Err(Error::invalid(format!(
                    "{}: option {p:?} does not apply to a bind mount",
                    what()
                )));
            }
            let source = m.source().as_ref().ok_or_else(|| {
                Error::invalid(format!("{}: a bind mount needs a source", what()))
            })?;
            let s = source_path(source, &what())?;
            return Ok(MountStep {
                destination,
                kind: MountKind::Bind {
                    source: s,
                    // A plain `type: bind` without options is recursive, as in runc.
                    recursive: bind.unwrap_or(true),
                },
                attrs,
            });
        }
        if typ.is_empty() {
            return Err(Error::invalid(format!(
                "{}: no filesystem type and not a bind mount",
                what()
            )));
        }
        if typ == "cgroup" {
            if let Some(p) = params.first().or(sb_flags.first()) {
                return Err(Error::invalid(format!(
                    "{}: option {p:?} does not apply to a cgroup mount",
                    what()
                )));
            }
            return Ok(MountStep {
                destination,
                kind: MountKind::Cgroup,
                attrs,
            });
        }
        let mut fs_params = Vec::new();
        for f in sb_flags {
            fs_params.push(Param::Flag(cstring("mount option", &f)?.into()));
        }
        for p in params {
            fs_params.push(match p.split_once('=') {
                Some((k, v)) => Param::Value(
                    cstring("mount option", k)?.into(),
                    cstring("mount option", v)?.into(),
                ),
                None => Param::Flag(cstring("mount option", &p)?.into()),
            });
        }
        let source = m
            .source()
            .as_ref()
            .map(|s| {
                cstring(
                    "mount source",
                    s.to_str().ok_or_else(|| {
                        Error::invalid(format!("{}: source is not UTF-8", what()))
                    })?,
                )
            })
            .transpose()?;
        Ok(MountStep {
            destination,
            kind: MountKind::Fs {
                fstype: cstring("filesystem type", &typ)?,
                source,
                params: fs_params,
            },
            attrs,
        })
    }
}

fn source_path(p: &Path, what: &str) -> Result<CString, Error> {
    let s = p
        .to_str()
        .ok_or_else(|| Error::invalid(format!("{what}: source is not UTF-8")))?;
    if !s.starts_with('/') {
        return Err(Error::invalid(format!(
            "{what}: bind source {s:?} must be an absolute path"
        )));
    }
    cstring("bind source", s)
}

/// The mount steps of a spec, in order.
pub fn plan(mounts: &[Mount]) -> Result<Vec<MountStep>, Error> {
    if mounts.len() > MAX_MOUNTS {
        return Err(Error::invalid(format!(
            "{} mounts (at most {MAX_MOUNTS})",
            mounts.len()
        )));
    }
    mounts.iter().map(MountStep::new).collect()
}

/// Masked or read-only paths, checked.
pub fn paths(list: &[String], what: &str) -> Result<Vec<CString>, Error> {
    if list.len() > MAX_MOUNTS {
        return Err(Error::invalid(format!("too many {what}")));
    }
    list.iter()
        .map(|p| container_path(what, Path::new(p)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn m(dest: &str, typ: Option<&str>, source: Option<&str>, opts: &[&str]) -> Mount {
        let mut m = Mount::default();
        m.set_destination(PathBuf::from(dest))
            .set_typ(typ.map(String::from))
            .set_source(source.map(PathBuf::from))
            .set_options(Some(opts.iter().map(|o| o.to_string()).collect()));
        m
    }

    #[test]
    fn docker_default_mounts_classify() {
        let steps = plan(&crate::defaults::mounts(64 << 20)).unwrap();
        let dev = &steps[1];
        assert_eq!(dev.destination.to_str().unwrap(), "/dev");
        assert_eq!(dev.attrs.set, attr::NOSUID);
        assert_eq!(dev.attrs.atime, Some((attr::STRICTATIME, false)));
        match &dev.kind {
            MountKind::Fs { fstype, params, .. } => {
                assert_eq!(fstype.to_str().unwrap(), "tmpfs");
                assert_eq!(
                    params,
                    &[
                        Param::Value(c"mode".into(), c"755".into()),
                        Param::Value(c"size".into(), c"65536k".into()),
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        let pts = &steps[2];
        assert!(
            matches!(&pts.kind, MountKind::Fs { params, .. } if params[0] == Param::Flag(c"newinstance".into()))
        );
        assert_eq!(
            steps[5].attrs.set,
            attr::NOSUID | attr::NOEXEC | attr::NODEV | attr::RDONLY
        );
        assert_eq!(steps[6].kind, MountKind::Cgroup);
    }

    #[test]
    fn binds_take_attributes_and_propagation() {
        let s = MountStep::new(&m(
            "/data",
            Some("bind"),
            Some("/srv/data"),
            &["rbind", "ro", "rnosuid", "rslave", "nodev"],
        ))
        .unwrap();
        assert_eq!(
            s.kind,
            MountKind::Bind {
                source: c"/srv/data".into(),
                recursive: true
            }
        );
        assert_eq!(s.attrs.set, attr::RDONLY | attr::NODEV);
        assert_eq!(s.attrs.rec_set, attr::NOSUID);
        assert_eq!(s.attrs.propagation, Some((Propagation::Slave, true)));
        let plain =
            MountStep::new(&m("/f", Some("none"), Some("/etc/hosts"), &["bind", "rw"])).unwrap();
        assert_eq!(
            plain.kind,
            MountKind::Bind {
                source: c"/etc/hosts".into(),
                recursive: false
            }
        );
        assert_eq!(plain.attrs.clear, attr::RDONLY);
    }

    #[test]
    fn later_options_override_earlier_ones() {
        let s = MountStep::new(&m(
            "/t",
            Some("tmpfs"),
            Some("tmpfs"),
            &["ro", "rw", "noatime", "strictatime"],
        ))
        .unwrap();
        assert_eq!(s.attrs.atime, Some((attr::STRICTATIME, false)));
        assert_eq!((s.attrs.set, s.attrs.clear), (0, attr::RDONLY));
    }

    #[test]
    fn hostile_and_unsupported_mounts_are_refused_with_the_reason() {
        let err = |m: Mount| MountStep::new(&m).unwrap_err().to_string();
        assert!(err(m("relative", Some("tmpfs"), None, &[])).contains("absolute"));
        assert!(err(m("/a/../../etc", Some("tmpfs"), None, &[])).contains(".."));
        assert!(err(m("/x", Some("bind"), Some("rel/dir"), &[])).contains("absolute"));
        assert!(err(m("/x", Some("bind"), None, &[])).contains("source"));
        assert!(err(m("/x", Some("bind"), Some("/y"), &["size=1m"])).contains("size=1m"));
        assert!(err(m("/x", Some("tmpfs"), None, &["remount"])).contains("remount"));
        assert!(err(m("/x", Some("tmpfs"), None, &["idmap"])).contains("idmapped"));
        assert!(err(m("/x", None, Some("/y"), &[])).contains("type"));
        assert!(err(m("/x\0y", Some("tmpfs"), None, &[])).contains("NUL"));
        let many: Vec<Mount> = (0..=MAX_MOUNTS)
            .map(|i| m(&format!("/m{i}"), Some("tmpfs"), None, &[]))
            .collect();
        assert!(plan(&many).is_err());
        assert!(paths(&["proc/kcore".into()], "maskedPaths").is_err());
    }
}
