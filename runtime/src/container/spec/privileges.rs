//! docker's privilege flags: `--cap-add`/`--cap-drop` (names with or without `CAP_`, any
//! case, `ALL`) and `--device HOST[:CONTAINER[:PERMS]]`.
//!
//! A vm container's default set is docker's without CAP_MKNOD (the guest is the device
//! boundary; defence in depth on top of the device cgroup the guest enforces): `--cap-add
//! MKNOD` gives it back. Either way the device cgroup decides which nodes open.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use hull_executor::defaults;
use oci_spec::runtime::{Capability, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use super::{bad, RunOptions, SpecError};

/// Most `--cap-add`/`--cap-drop`/`--device` values each.
pub const MAX_FLAGS: usize = 64;

/// One capability name as docker takes it: `MKNOD`, `mknod`, `CAP_MKNOD`.
fn capability(name: &str) -> Result<Capability, SpecError> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    bare.parse::<Capability>()
        .ok()
        .filter(|c| defaults::ALL_CAPABILITIES.contains(c))
        .ok_or_else(|| {
            bad(format!(
                "unknown capability {name:?} (e.g. NET_ADMIN, CAP_SYS_TIME, ALL)"
            ))
        })
}

fn count(what: &str, n: usize) -> Result<(), SpecError> {
    if n > MAX_FLAGS {
        return Err(bad(format!("{n} {what} values: at most {MAX_FLAGS}")));
    }
    Ok(())
}

/// The bounding set as docker computes it: `--cap-add ALL` is every capability less the
/// drops; otherwise docker's defaults (less CAP_MKNOD for a vm container; none after
/// `--cap-drop ALL`) less the drops, plus the adds (an add wins over a drop).
pub fn bounding(opts: &RunOptions) -> Result<Vec<Capability>, SpecError> {
    count("--cap-add", opts.cap_add.len())?;
    count("--cap-drop", opts.cap_drop.len())?;
    let is_all = |c: &String| c.eq_ignore_ascii_case("ALL");
    let named = |l: &[String]| -> Result<Vec<Capability>, SpecError> {
        l.iter()
            .filter(|c| !is_all(c))
            .map(|c| capability(c))
            .collect()
    };
    let (adds, drops) = (named(&opts.cap_add)?, named(&opts.cap_drop)?);
    if opts.cap_add.iter().any(is_all) {
        return Ok(defaults::ALL_CAPABILITIES
            .iter()
            .copied()
            .filter(|c| !drops.contains(c))
            .collect());
    }
    let mut set: Vec<Capability> = if opts.cap_drop.iter().any(is_all) {
        Vec::new()
    } else {
        defaults::CAPABILITIES
            .iter()
            .copied()
            .filter(|c| !drops.contains(c))
            .filter(|c| !(opts.vm && *c == Capability::Mknod))
            .collect()
    };
    for c in adds {
        if !set.contains(&c) {
            set.push(c);
        }
    }
    Ok(set)
}

/// One `--device`: the node to make and the device cgroup rule that lets it be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Path on the host.
    pub host: PathBuf,
    /// Path in the container.
    pub container: PathBuf,
    /// `r`, `w`, `m` letters.
    pub access: String,
}

/// Parses `HOST[:CONTAINER[:PERMS]]` (PERMS: letters of `rwm`, default `rwm`).
pub fn parse_device(s: &str) -> Result<Device, SpecError> {
    let parts: Vec<&str> = s.split(':').collect();
    let (host, container, access) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, c] if !c.is_empty() && c.chars().all(|x| "rwm".contains(x)) && !c.starts_with('/') => {
            (*h, *h, *c)
        }
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] => (*h, *c, *p),
        _ => {
            return Err(bad(format!(
                "--device {s:?}: expected HOST[:CONTAINER[:PERMS]]"
            )))
        }
    };
    let absolute = |p: &str, what: &str| {
        let path = Path::new(p);
        if !path.is_absolute()
            || p.len() > super::process::MAX_PATH
            || path.components().any(|c| c == Component::ParentDir)
        {
            return Err(bad(format!(
                "--device {s:?}: the {what} path must be absolute, without \"..\""
            )));
        }
        Ok(path.to_path_buf())
    };
    let mut letters: Vec<char> = access.chars().collect();
    letters.sort();
    letters.dedup();
    if access.is_empty()
        || letters.len() != access.len()
        || !access.chars().all(|c| "rwm".contains(c))
    {
        return Err(bad(format!(
            "--device {s:?}: permissions {access:?} must be letters of \"rwm\""
        )));
    }
    Ok(Device {
        host: absolute(host, "host")?,
        container: absolute(container, "container")?,
        access: access.to_string(),
    })
}

/// The spec's `linux.devices` entries and device cgroup rules for `opts.devices`, from the
/// host's nodes (type and numbers as stat says; docker does the same).
pub fn devices(opts: &RunOptions) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), SpecError> {
    count("--device", opts.devices.len())?;
    let mut nodes = Vec::new();
    let mut rules = Vec::new();
    for s in &opts.devices {
        let d = parse_device(s)?;
        let meta = std::fs::metadata(&d.host)
            .map_err(|e| bad(format!("--device {}: {e}", d.host.display())))?;
        let ft = meta.file_type();
        let typ = if ft.is_char_device() {
            LinuxDeviceType::C
        } else if ft.is_block_device() {
            LinuxDeviceType::B
        } else {
            return Err(bad(format!(
                "--device {}: not a character or block device",
                d.host.display()
            )));
        };
        let rdev = meta.rdev();
        let (major, minor) = (libc::major(rdev) as i64, libc::minor(rdev) as i64);
        let mut node = LinuxDevice::default();
        node.set_path(d.container.clone())
            .set_typ(typ)
            .set_major(major)
            .set_minor(minor)
            .set_file_mode(Some(meta.mode() & 0o777))
            .set_uid(Some(0))
            .set_gid(Some(0));
        nodes.push(node);
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true)
            .set_typ(Some(typ))
            .set_major(Some(major))
            .set_minor(Some(minor))
            .set_access(Some(d.access.clone()));
        rules.push(rule);
    }
    Ok((nodes, rules))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(add: &[&str], drop: &[&str], vm: bool) -> RunOptions {
        RunOptions {
            cap_add: add.iter().map(|s| s.to_string()).collect(),
            cap_drop: drop.iter().map(|s| s.to_string()).collect(),
            vm,
            ..Default::default()
        }
    }

    #[test]
    fn cap_flags_follow_docker() {
        let process = bounding(&opts(&[], &[], false)).unwrap();
        assert_eq!(process, defaults::CAPABILITIES);
        let vm = bounding(&opts(&[], &[], true)).unwrap();
        assert!(!vm.contains(&Capability::Mknod), "vm default: no CAP_MKNOD");
        assert_eq!(vm.len(), process.len() - 1);
        let vm = bounding(&opts(&["mknod"], &[], true)).unwrap();
        assert!(
            vm.contains(&Capability::Mknod),
            "--cap-add MKNOD gives it back"
        );
        let s = bounding(&opts(
            &["CAP_SYS_ADMIN", "net_admin"],
            &["chown", "CAP_KILL"],
            false,
        ))
        .unwrap();
        assert!(s.contains(&Capability::SysAdmin) && s.contains(&Capability::NetAdmin));
        assert!(!s.contains(&Capability::Chown) && !s.contains(&Capability::Kill));
        let s = bounding(&opts(&["NET_BIND_SERVICE"], &["ALL"], false)).unwrap();
        assert_eq!(s, [Capability::NetBindService], "add wins over drop ALL");
        let s = bounding(&opts(&["all"], &[], false)).unwrap();
        assert_eq!(s.len(), defaults::ALL_CAPABILITIES.len());
        let s = bounding(&opts(&["ALL"], &["sys_admin"], true)).unwrap();
        assert!(!s.contains(&Capability::SysAdmin));
        assert!(s.contains(&Capability::Mknod));
        for bad in ["FLY", "CAP_", "", "SYS ADMIN"] {
            let e = bounding(&opts(&[bad], &[], false)).unwrap_err().to_string();
            assert!(e.contains("unknown capability"), "{bad}: {e}");
        }
        let many: Vec<&str> = std::iter::repeat_n("KILL", MAX_FLAGS + 1).collect();
        assert!(bounding(&opts(&many, &[], false)).is_err());
    }

    #[test]
    fn device_flags_parse_like_docker() {
        let d = parse_device("/dev/fuse").unwrap();
        assert_eq!(
            (d.container.to_str(), d.access.as_str()),
            (Some("/dev/fuse"), "rwm")
        );
        let d = parse_device("/dev/fuse:r").unwrap();
        assert_eq!(
            (d.container.to_str(), d.access.as_str()),
            (Some("/dev/fuse"), "r")
        );
        let d = parse_device("/dev/kmsg:/dev/log:rw").unwrap();
        assert_eq!(
            (d.container.to_str(), d.access.as_str()),
            (Some("/dev/log"), "rw")
        );
        for s in [
            "dev/fuse",
            "/dev/fuse:x",
            "/dev/fuse:/d:rwx",
            "/dev/a:/b:r:w",
            "/dev/../x",
            "/dev/f:/d:rr",
            "/dev/f:/d:",
        ] {
            assert!(parse_device(s).is_err(), "{s}");
        }
    }

    #[test]
    fn a_device_takes_the_host_nodes_numbers() {
        let o = RunOptions {
            devices: vec!["/dev/null:/dev/other:rw".into()],
            ..Default::default()
        };
        let (nodes, rules) = devices(&o).unwrap();
        assert_eq!(nodes[0].path(), Path::new("/dev/other"));
        assert_eq!((nodes[0].major(), nodes[0].minor()), (1, 3));
        assert_eq!(rules[0].access().as_deref(), Some("rw"));
        for s in ["/etc/passwd", "/no/such/device"] {
            let o = RunOptions {
                devices: vec![s.into()],
                ..Default::default()
            };
            let e = devices(&o).unwrap_err().to_string();
            assert!(e.contains(s), "{e}");
        }
    }
}
