//! Device nodes: the OCI default devices plus `linux.devices`, created with mknod (or, in a
//! new user namespace where mknod is not allowed, bound from the same path outside).

use std::ffi::CString;
use std::path::Path;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::process::container_path;
use crate::defaults;
use crate::error::Error;

/// One device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// Path inside the container.
    pub path: CString,
    /// S_IFCHR, S_IFBLK or S_IFIFO.
    pub kind: u32,
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

impl DeviceNode {
    /// `c 1:3 /dev/null`, for messages.
    pub fn describe(&self) -> String {
        let t = match self.kind {
            libc::S_IFBLK => 'b',
            libc::S_IFIFO => 'p',
            _ => 'c',
        };
        format!(
            "{t} {}:{} {}",
            self.major,
            self.minor,
            self.path.to_string_lossy()
        )
    }
}

/// Largest number of devices accepted.
pub const MAX_DEVICES: usize = 1024;

fn node(
    path: &Path,
    typ: LinuxDeviceType,
    major: i64,
    minor: i64,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<DeviceNode, Error> {
    let path_c = container_path("device path", path)?;
    let what = || format!("device {}", path.display());
    let kind = match typ {
        LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
        LinuxDeviceType::B => libc::S_IFBLK,
        LinuxDeviceType::P => libc::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(Error::invalid(format!(
                "{}: type \"a\" is for device cgroup rules, not nodes",
                what()
            )))
        }
    };
    // The kernel's dev_t: 12-bit major, 20-bit minor.
    if !(0..4096).contains(&major) || !(0..1 << 20).contains(&minor) {
        return Err(Error::invalid(format!(
            "{}: device number {major}:{minor} is out of range",
            what()
        )));
    }
    if path == Path::new("/dev") || !path.starts_with("/dev") {
        return Err(Error::invalid(format!(
            "{}: device nodes belong under /dev",
            what()
        )));
    }
    Ok(DeviceNode {
        path: path_c,
        kind,
        major: major as u32,
        minor: minor as u32,
        mode: mode & 0o777,
        uid,
        gid,
    })
}

/// The nodes to create: the defaults, then `linux.devices` (which may replace a default).
pub fn plan(devices: &[LinuxDevice]) -> Result<Vec<DeviceNode>, Error> {
    if devices.len() > MAX_DEVICES {
        return Err(Error::invalid(format!(
            "{} devices (at most {MAX_DEVICES})",
            devices.len()
        )));
    }
    let mut out: Vec<DeviceNode> = Vec::new();
    for (path, typ, major, minor, mode) in defaults::DEVICES {
        if devices.iter().any(|d| d.path() == Path::new(path)) {
            continue;
        }
        out.push(node(Path::new(path), *typ, *major, *minor, *mode, 0, 0)?);
    }
    for d in devices {
        let n = node(
            d.path(),
            d.typ(),
            d.major(),
            d.minor(),
            d.file_mode().unwrap_or(0o666),
            d.uid().unwrap_or(0),
            d.gid().unwrap_or(0),
        )?;
        if out.iter().any(|o| o.path == n.path) {
            return Err(Error::invalid(format!(
                "device {} is listed twice",
                d.path().display()
            )));
        }
        out.push(n);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(path: &str, typ: LinuxDeviceType, major: i64, minor: i64) -> LinuxDevice {
        let mut d = LinuxDevice::default();
        d.set_path(path.into())
            .set_typ(typ)
            .set_major(major)
            .set_minor(minor)
            .set_file_mode(Some(0o660))
            .set_gid(Some(5));
        d
    }

    #[test]
    fn defaults_come_first_and_spec_devices_follow_or_replace_them() {
        let nodes = plan(&[dev("/dev/fuse", LinuxDeviceType::C, 10, 229)]).unwrap();
        let names: Vec<String> = nodes.iter().map(DeviceNode::describe).collect();
        assert_eq!(
            names,
            [
                "c 1:3 /dev/null",
                "c 1:5 /dev/zero",
                "c 1:7 /dev/full",
                "c 1:8 /dev/random",
                "c 1:9 /dev/urandom",
                "c 5:0 /dev/tty",
                "c 10:229 /dev/fuse"
            ]
        );
        assert_eq!((nodes[6].mode, nodes[6].gid), (0o660, 5));
        let replaced = plan(&[dev("/dev/null", LinuxDeviceType::C, 1, 3)]).unwrap();
        assert_eq!(replaced.len(), 6);
        assert_eq!(replaced[5].mode, 0o660);
    }

    #[test]
    fn hostile_devices_are_refused() {
        for bad in [
            dev("/etc/passwd", LinuxDeviceType::C, 1, 3),
            dev("/dev/../etc/x", LinuxDeviceType::C, 1, 3),
            dev("dev/x", LinuxDeviceType::C, 1, 3),
            dev("/dev", LinuxDeviceType::C, 1, 3),
            dev("/dev/x", LinuxDeviceType::C, 5000, 0),
            dev("/dev/x", LinuxDeviceType::B, 8, -1),
            dev("/dev/x", LinuxDeviceType::A, 1, 1),
        ] {
            assert!(plan(std::slice::from_ref(&bad)).is_err(), "{bad:?}");
        }
        let twice = [
            dev("/dev/x", LinuxDeviceType::C, 1, 3),
            dev("/dev/x", LinuxDeviceType::C, 1, 5),
        ];
        assert!(plan(&twice).is_err());
    }
}
