//! The VM mode's root disk, built on this host as `hull run --isolation=vm` builds it: an
//! image's layers merged (whiteouts applied) into one erofs image, checked as the guest
//! will see it, by mounting it. Tier 2: needs root (overlay and loop mounts) and
//! mkfs.erofs, which tier 1 (no root) cannot count on.

use std::fs;
use std::path::Path;
use std::process::Command;

use hull_runtime::paths::StatePaths;
use hull_runtime::vm::disk::{disk_path, disks_dir, ensure_disk};

#[test]
fn layers_are_merged_with_whiteouts_applied() {
    assert!(
        hull_tests::is_root(),
        "needs root (overlay and loop mounts)"
    );
    assert!(
        Path::new("/usr/bin/mkfs.erofs").exists(),
        "mkfs.erofs missing: apt-get install erofs-utils (scripts/setup.sh installs it)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = (tmp.path().join("l1"), tmp.path().join("l2"));
    fs::create_dir_all(lower.join("a")).unwrap();
    fs::write(lower.join("a/keep"), "kept").unwrap();
    fs::write(lower.join("a/gone"), "deleted above").unwrap();
    fs::create_dir_all(upper.join("a")).unwrap();
    fs::write(upper.join("b"), "new").unwrap();
    // An overlay whiteout (a 0/0 character device) in the upper layer deletes a/gone.
    let whiteout = std::ffi::CString::new(upper.join("a/gone").to_str().unwrap()).unwrap();
    // SAFETY: mknod with a valid NUL-terminated path; no memory of ours is written.
    let made = unsafe { libc::mknod(whiteout.as_ptr(), libc::S_IFCHR, 0) };
    assert_eq!(
        made,
        0,
        "mknod whiteout: {}",
        std::io::Error::last_os_error()
    );
    let paths = StatePaths::new(Some(tmp.path()));
    let id = format!("sha256:{}", "ab".repeat(32));
    let disk = ensure_disk(&paths, &id, &[lower, upper]).unwrap();
    assert_eq!(disk, disk_path(&paths, &id).unwrap());
    // Nothing but the disk is left in the cache directory, and no mount of the build.
    let names: Vec<_> = fs::read_dir(disks_dir(&paths)).unwrap().collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = tmp.path().to_str().unwrap();
    assert!(
        !mounts.contains(root),
        "a mount of the build is left: {mounts}"
    );

    let mnt = tmp.path().join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let status = Command::new("mount")
        .args(["-t", "erofs", "-o", "loop,ro"])
        .arg(&disk)
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(status.success(), "mount the erofs disk");
    let keep = fs::read_to_string(mnt.join("a/keep"));
    let gone = mnt.join("a/gone").exists();
    let new = fs::read_to_string(mnt.join("b"));
    assert!(Command::new("umount").arg(&mnt).status().unwrap().success());
    assert_eq!(keep.unwrap(), "kept");
    assert!(!gone, "the whiteout must hide a/gone");
    assert_eq!(new.unwrap(), "new");
}
