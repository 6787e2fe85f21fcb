//! Host-wide state of one hull bridge, shared by every hull state root that uses it:
//!
//! ```text
//! /run/hull-networks/<bridge>/
//!   lock        flock: shared while a container is attached, exclusive to delete the bridge
//!   created     present when hull's CNI call created the bridge (so hull may delete it)
//!   ipam/       host-local's leases (one file per leased address, holding the container id)
//! ```
//!
//! The bridge, its addresses and its leases are host objects, so they are keyed by the
//! bridge name, not by state root: two roots on one bridge share one lease store and never
//! hand out the same address. It lives on /run: leases last as long as the containers
//! holding them can (across restarts of hull, not of the host).
//!
//! A bridge hull created is deleted when its last container leaves (as netavark does), so
//! nothing of a network outlives its containers; a bridge that existed before is left.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use super::netdev;

/// Root of the per-bridge directories.
pub const NETWORKS_DIR: &str = "/run/hull-networks";

/// The state directory of `bridge`.
pub fn dir(bridge: &str) -> PathBuf {
    PathBuf::from(NETWORKS_DIR).join(bridge)
}

/// The host-local data directory of `bridge`.
pub fn ipam_dir(bridge: &str) -> PathBuf {
    dir(bridge).join("ipam")
}

/// A held flock on a bridge's lock file (released on drop).
pub struct BridgeLock {
    _file: File,
}

fn lock(bridge: &str, mode: libc::c_int) -> io::Result<BridgeLock> {
    let d = dir(bridge);
    fs::create_dir_all(&d)?;
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(d.join("lock"))?;
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), mode) } == 0 {
            return Ok(BridgeLock { _file: file });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Locks `bridge` for attaching a container: many at once, but never while it is deleted.
/// Notes whether the bridge is new, so that hull knows it may delete it later.
pub fn attach_lock(bridge: &str) -> io::Result<BridgeLock> {
    let held = lock(bridge, libc::LOCK_SH)?;
    if !netdev::exists(bridge) {
        fs::write(dir(bridge).join("created"), b"")?;
    }
    Ok(held)
}

/// Deletes `bridge` if hull created it and no interface is attached to it any more.
/// Waits for attachments in progress (they hold the lock shared). Returns whether it was
/// deleted.
pub fn remove_if_unused(bridge: &str) -> io::Result<bool> {
    let _held = lock(bridge, libc::LOCK_EX)?;
    let marker = dir(bridge).join("created");
    if !marker.exists() {
        return Ok(false);
    }
    match netdev::bridge_ports(bridge) {
        Ok(ports) if !ports.is_empty() => return Ok(false),
        Ok(_) => netdev::delete_bridge(bridge)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {} // already gone
        Err(e) => return Err(e),
    }
    fs::remove_file(&marker)?;
    Ok(true)
}
