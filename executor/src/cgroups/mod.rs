//! Control groups for one container: the values (pure, [`settings`], [`devices`]) and the
//! driver that creates the directories, writes the values, attaches the device program and
//! removes it all again ([`driver`]). Works on cgroup v1 (the build hosts) and v2 (the nested
//! test host and every guest), with the container's cgroup at `linux.cgroupsPath` below the
//! hierarchy root.

pub mod devices;
pub mod driver;
pub mod settings;

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use crate::error::Error;

/// Which cgroup layout a host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// One hierarchy per controller under ROOT/<controller>.
    V1,
    /// The unified hierarchy at ROOT.
    V2,
}

/// Where the hierarchies are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Mount point of the cgroup filesystems (`/sys/fs/cgroup`).
    pub root: PathBuf,
    /// v1 or v2.
    pub version: Version,
}

/// The usual mount point.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

impl Layout {
    /// The layout mounted at `root`: v2 when the unified hierarchy is there.
    pub fn detect(root: &Path) -> Layout {
        let version = if root.join("cgroup.controllers").exists() {
            Version::V2
        } else {
            Version::V1
        };
        Layout {
            root: root.to_path_buf(),
            version,
        }
    }

    /// This machine's layout at [`DEFAULT_ROOT`].
    pub fn host() -> Layout {
        Layout::detect(Path::new(DEFAULT_ROOT))
    }
}

/// What to create for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupPlan {
    /// The container's cgroup, relative to each hierarchy's root (`hull/<id>`).
    pub path: PathBuf,
    /// Values to write.
    pub settings: Vec<settings::Setting>,
    /// Device rules (`None`: no device cgroup, every device allowed): the spec's, then
    /// [`crate::defaults::allowed_devices`] (the last matching rule decides).
    pub devices: Option<Vec<devices::Rule>>,
}

impl CgroupPlan {
    /// The plan for `cgroups_path` and `resources` on a host with `version`.
    pub fn new(
        cgroups_path: Option<&Path>,
        resources: Option<&LinuxResources>,
        version: Version,
    ) -> Result<CgroupPlan, Error> {
        let path = relative_path(cgroups_path)?;
        let (settings, devices) = match resources {
            Some(r) => (
                settings::settings(r, version)?,
                match r.devices() {
                    Some(list) if !list.is_empty() => {
                        let mut rules = devices::rules(list)?;
                        rules.extend(devices::rules(&crate::defaults::allowed_devices())?);
                        Some(rules)
                    }
                    _ => None,
                },
            ),
            None => (Vec::new(), None),
        };
        if path.is_none() && (!settings.is_empty() || devices.is_some()) {
            return Err(Error::invalid(
                "linux.resources needs linux.cgroupsPath (hull does not invent cgroup names)",
            ));
        }
        Ok(CgroupPlan {
            path: path.unwrap_or_default(),
            settings,
            devices,
        })
    }

    /// Whether the container gets no cgroup: only without `linux.cgroupsPath`. With a path
    /// it gets one in every hierarchy even without limits, as runc gives it: `ps`, `kill
    /// --all`, pause (the v1 freezer) and cleanup find the container's processes there.
    pub fn is_empty(&self) -> bool {
        self.path.as_os_str().is_empty()
    }
}

/// `linux.cgroupsPath` as a relative path without `..`.
fn relative_path(p: Option<&Path>) -> Result<Option<PathBuf>, Error> {
    let Some(p) = p else { return Ok(None) };
    let s = p.to_string_lossy();
    if s.contains(':') {
        return Err(Error::unsupported(format!(
            "linux.cgroupsPath {s:?}: systemd slice notation (hull writes cgroupfs paths)"
        )));
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            _ => {
                return Err(Error::invalid(format!(
                    "linux.cgroupsPath {s:?} must not contain \"..\""
                )))
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(Error::invalid(
            "linux.cgroupsPath must name a cgroup below the root",
        ));
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_paths_stay_below_the_root() {
        assert_eq!(
            relative_path(Some(Path::new("/hull/abc"))).unwrap(),
            Some(PathBuf::from("hull/abc"))
        );
        assert!(relative_path(Some(Path::new("/hull/../../x"))).is_err());
        assert!(relative_path(Some(Path::new("/"))).is_err());
        assert!(relative_path(Some(Path::new("system.slice:hull:abc"))).is_err());
        assert!(CgroupPlan::new(None, None, Version::V2).unwrap().is_empty());
        let no_limits = CgroupPlan::new(Some(Path::new("/x/c")), None, Version::V1).unwrap();
        assert!(!no_limits.is_empty(), "a cgroupsPath alone gives a cgroup");
    }

    /// runtime-tools' and many callers' specs deny every device and list none: the
    /// container's own /dev/null, /dev/pts and mknod must still work (runc appends its
    /// AllowedDevices after the spec's rules), while other devices stay denied.
    #[test]
    fn default_devices_stay_allowed_after_a_deny_all_spec() {
        let mut deny = oci_spec::runtime::LinuxDeviceCgroup::default();
        deny.set_allow(false).set_access(Some("rwm".into()));
        let mut resources = LinuxResources::default();
        resources.set_devices(Some(vec![deny]));
        for version in [Version::V1, Version::V2] {
            let plan = CgroupPlan::new(Some(Path::new("/x/c")), Some(&resources), version).unwrap();
            let rules = plan.devices.unwrap();
            assert!(!rules[0].allow, "the spec's own rule comes first");
            let p = devices::program(&rules);
            let (r, w, m) = (2, 4, 1);
            assert_eq!(devices::run(&p, 'c', 1, 3, r | w), 1, "/dev/null");
            assert_eq!(devices::run(&p, 'c', 1, 9, r), 1, "/dev/urandom");
            assert_eq!(devices::run(&p, 'c', 136, 0, r | w), 1, "/dev/pts/0");
            assert_eq!(devices::run(&p, 'c', 10, 229, m), 1, "mknod of any node");
            assert_eq!(devices::run(&p, 'c', 10, 229, r), 0, "opening /dev/fuse");
            assert_eq!(devices::run(&p, 'b', 8, 0, r), 0, "opening a host disk");
        }
    }
}
