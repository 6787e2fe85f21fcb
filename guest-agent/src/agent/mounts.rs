//! The guest's own filesystems and the container's root.
//!
//! The container root is the image's read-only block device (`/dev/vda`, erofs or ext4)
//! with an overlay on top. The overlay's upper layer lives on the container's writable
//! layer disk when the host attached one (`hull.upper=vdb` on the kernel command line: an
//! ext4 image the host keeps per container, so writes survive stop/start), else on a tmpfs
//! in guest RAM.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::mount::{mount, MsFlags};

/// Where the container's root filesystem is assembled.
pub const CONTAINER_ROOT: &str = "/run/hull/root";
const LOWER: &str = "/run/hull/lower";
const SCRATCH: &str = "/run/hull/rw";
/// The block device carrying the image.
const ROOT_DEVICE: &str = "/dev/vda";
/// Kernel command line word naming the writable layer's disk.
const UPPER_PARAM: &str = "hull.upper=";

fn mount_fs(
    src: &str,
    target: &str,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    fs::create_dir_all(target).with_context(|| format!("mkdir {target}"))?;
    mount(Some(src), target, Some(fstype), flags, data)
        .with_context(|| format!("mount {fstype} on {target}"))
}

/// Moves PID 1 off the initramfs onto a tmpfs of its own, as switch_root does: the kernel
/// refuses pivot_root(2) while the caller's root is the initramfs (rootfs), and the
/// executor pivots into every container root, as runc does. The initramfs held only the
/// agent, which is already running.
pub fn leave_initramfs() -> Result<()> {
    const NEW_ROOT: &str = "/guest";
    fs::create_dir_all(NEW_ROOT).with_context(|| format!("mkdir {NEW_ROOT}"))?;
    mount(
        Some("tmpfs"),
        NEW_ROOT,
        Some("tmpfs"),
        MsFlags::MS_NOSUID,
        Some("mode=0755"),
    )
    .context("mount the guest's root tmpfs")?;
    nix::unistd::chdir(NEW_ROOT)?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .context("move the guest's root over the initramfs")?;
    nix::unistd::chroot(".").context("chroot into the guest's root")?;
    nix::unistd::chdir("/")?;
    Ok(())
}

/// Mounts /proc, /sys, /dev, /dev/pts, /dev/shm and cgroup2 for the agent itself.
pub fn mount_basics() -> Result<()> {
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_fs("proc", "/proc", "proc", nosuid, None)?;
    mount_fs("sysfs", "/sys", "sysfs", nosuid, None)?;
    // The kernel may already have mounted devtmpfs (CONFIG_DEVTMPFS_MOUNT).
    if !Path::new("/dev/null").exists() {
        mount_fs(
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
        )?;
    }
    mount_fs(
        "devpts",
        "/dev/pts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    mount_fs(
        "shm",
        "/dev/shm",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )?;
    mount_fs("cgroup2", "/sys/fs/cgroup", "cgroup2", nosuid, None)?;
    mount_fs(
        "tmpfs",
        "/run",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )?;
    Ok(())
}

/// Waits for a block device (probing can lag PID 1 a little).
fn wait_for_device(device: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !Path::new(device).exists() {
        if Instant::now() > deadline {
            bail!("{device} did not appear within {timeout:?}: disk not attached?");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// The writable layer's device from the kernel command line (`hull.upper=vdb` gives
/// `/dev/vdb`); only a virtio disk name is accepted.
pub fn upper_device(cmdline: &str) -> Option<String> {
    let name = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(UPPER_PARAM))?;
    let valid = name.len() == 3
        && name.starts_with("vd")
        && name.as_bytes()[2].is_ascii_lowercase()
        && name != "vda";
    valid.then(|| format!("/dev/{name}"))
}

/// Mounts the writable layer at [`SCRATCH`]: the host's layer disk when it attached one,
/// else a tmpfs.
fn mount_scratch() -> Result<()> {
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    match upper_device(&cmdline) {
        Some(device) => {
            wait_for_device(&device, Duration::from_secs(10))?;
            // ext4 as the host formatted it; a container that filled it sees ENOSPC and
            // an unclean end is replayed from the journal here. noinit_itable: the kernel
            // would otherwise zero every inode table in the background (160 MiB for the
            // default 10 GiB), making the sparse image dense for nothing (unused inodes
            // are tracked per group and never read).
            mount_fs(
                &device,
                SCRATCH,
                "ext4",
                MsFlags::empty(),
                Some("noinit_itable"),
            )
            .with_context(|| format!("mount the writable layer disk {device}"))
        }
        None => mount_fs(
            "tmpfs",
            SCRATCH,
            "tmpfs",
            MsFlags::empty(),
            Some("mode=0755"),
        ),
    }
}

/// Mounts the image read-only and an overlay with the writable layer on top at
/// [`CONTAINER_ROOT`]. Everything else in the container's root (/proc, /dev and its nodes,
/// /sys, masked paths...) is the spec's, made by the executor.
///
/// Every mount of the root is `nodev`: a device node the image ships (or an earlier run
/// left in the layer) opens nothing, even to a process the device cgroup would let open it
/// (and for a container without a device cgroup, the guest's disks and console). Only the
/// spec's /dev (a mount of its own on top) carries usable nodes.
pub fn mount_container_root(readonly: bool) -> Result<PathBuf> {
    wait_for_device(ROOT_DEVICE, Duration::from_secs(10))?;
    fs::create_dir_all(LOWER)?;
    let ro = MsFlags::MS_RDONLY | MsFlags::MS_NODEV;
    let lower_ok = ["erofs", "ext4"]
        .iter()
        .any(|fstype| mount(Some(ROOT_DEVICE), LOWER, Some(*fstype), ro, None::<&str>).is_ok());
    if !lower_ok {
        bail!("cannot mount {ROOT_DEVICE} as erofs or ext4");
    }
    let root = Path::new(CONTAINER_ROOT);
    fs::create_dir_all(root)?;
    if readonly {
        mount(
            Some(LOWER),
            root,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .context("bind image root")?;
        mount(
            None::<&str>,
            root,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NODEV,
            None::<&str>,
        )
        .context("remount image root read-only")?;
    } else {
        mount_scratch()?;
        fs::create_dir_all(format!("{SCRATCH}/upper"))?;
        fs::create_dir_all(format!("{SCRATCH}/work"))?;
        let opts = format!("lowerdir={LOWER},upperdir={SCRATCH}/upper,workdir={SCRATCH}/work");
        // nodev, as the executor mounts a process container's overlay: device nodes are
        // the spec's, on the container's /dev.
        mount_fs(
            "overlay",
            CONTAINER_ROOT,
            "overlay",
            MsFlags::MS_NODEV,
            Some(&opts),
        )?;
    }
    Ok(root.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_virtio_disk_other_than_the_image_is_a_layer_device() {
        let dev = |c: &str| upper_device(c);
        assert_eq!(
            dev("quiet hull.upper=vdb rdinit=/init"),
            Some("/dev/vdb".into())
        );
        assert_eq!(dev("quiet"), None);
        for bad in [
            "hull.upper=vda",
            "hull.upper=../sda",
            "hull.upper=vdbb",
            "hull.upper=",
        ] {
            assert_eq!(dev(bad), None, "{bad}");
        }
    }
}
