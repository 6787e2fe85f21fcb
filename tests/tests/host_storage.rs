//! Tier 2: the process model's writable layer is on disk under the state root, kept across
//! stop/start, removed by `rm`, and a full layer gives the container ENOSPC and nothing
//! worse. (The vm model's counterparts run in the harness: harness_storage.rs.)

mod process_common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use process_common::{Env, IMAGE};

/// Reads back across a restart: the first run writes, every later one reads.
const WRITE_OR_READ: &str = "if [ -f /data/kept ]; then cat /data/kept; test -e /etc/group || \
     echo group-deleted; else mkdir -p /data; echo first-run > /data/kept; rm /etc/group; \
     echo wrote; fi";

#[test]
fn writable_layer_survives_stop_and_start_and_rm_removes_it() {
    let env = Env::new();
    let id = env.detached("keep", &[], WRITE_OR_READ);
    env.wait_exited("keep", Duration::from_secs(20));
    assert_eq!(env.ok(["logs", "keep"]), "wrote\n");

    // On disk under the persistent root (not on the run root), as overlay's upper layer.
    let storage = env.root.path().join("containers").join(&id);
    assert_eq!(
        fs::read_to_string(storage.join("upper/data/kept")).unwrap(),
        "first-run\n"
    );
    let run_dir = env.root.path().join("run/containers").join(&id);
    assert!(
        !run_dir.join("upper").exists(),
        "no writable layer on the run root"
    );

    env.ok(["start", "keep"]);
    env.wait_exited("keep", Duration::from_secs(20));
    // The file written and the image file deleted are both still so.
    assert_eq!(
        env.ok(["logs", "keep"]),
        "wrote\nfirst-run\ngroup-deleted\n"
    );
    let id2 = env.detached("peek", &[], "test -f /etc/group && echo image-intact");
    env.wait_exited("peek", Duration::from_secs(20));
    assert_eq!(
        env.ok(["logs", "peek"]),
        "image-intact\n",
        "another container from the image still sees the file"
    );

    env.ok(["rm", "keep", "peek"]);
    assert!(!storage.exists(), "rm leaves the writable layer behind");
    env.assert_clean(&[id, id2]);
}

/// Unmounts the test's small filesystem even when an assertion fails first.
struct SmallFs<'a>(&'a Path);

impl Drop for SmallFs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

#[test]
fn a_full_writable_layer_gives_enospc_and_hull_keeps_working() {
    let env = Env::new();
    // The layers' filesystem is its own small one, as a dedicated /var/lib/hull/containers
    // would be; the container records (run root) are elsewhere.
    let layers = env.root.path().join("containers");
    fs::create_dir_all(&layers).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs"])
        .arg(&layers)
        .status()
        .unwrap();
    assert!(status.success(), "mount a small tmpfs");
    let small = SmallFs(&layers);

    let (out, err, code) = env.sh(
        &[],
        "dd if=/dev/zero of=/fill bs=1M count=64 2>&1; echo dd=$?",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("dd=1"), "dd must fail: {out}");
    assert!(
        out.contains("No space left on device"),
        "the container sees ENOSPC: {out}"
    );
    // hull still records and removes containers on that root.
    let (out, err, code) = env.sh(&[], "echo still-fine");
    assert_eq!((out.as_str(), code), ("still-fine\n", 0), "{err}");
    assert!(env.ps().is_empty(), "--rm removed both");
    let left: Vec<_> = fs::read_dir(&layers).unwrap().collect();
    assert!(left.is_empty(), "rm freed the layers: {left:?}");
    drop(small);
    env.assert_clean(&[]);
}

#[test]
fn storage_opt_size_is_refused_where_the_layer_cannot_be_capped() {
    let env = Env::new();
    let out = env.run(["run", "--rm", "--storage-opt", "size=64m", IMAGE, "true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--storage-opt size") && err.contains("--isolation=vm"),
        "the refusal says why and what works: {err}"
    );
    let out = env.run(["run", "--rm", "--storage-opt", "sise=1g", IMAGE, "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sise"));
    env.assert_clean(&[]);
}

/// `hull diff` lists the container's changes to its image, docker's way; a vm container
/// is refused with the reason.
#[test]
fn diff_lists_what_the_container_changed() {
    let env = Env::new();
    let id = env.detached(
        "chg",
        &[],
        "echo more >> /etc/passwd; rm /etc/group; mkdir /data; echo y > /data/f; \
         ln -s / /data/root",
    );
    env.wait_exited("chg", Duration::from_secs(20));
    let out = env.ok(["diff", "chg"]);
    assert_eq!(
        out,
        "A /data\nA /data/f\nA /data/root\nC /etc\nD /etc/group\nC /etc/passwd\n"
    );

    let vm = env.run(["create", "--isolation=vm", "--name", "vmc", IMAGE, "true"]);
    if vm.status.success() {
        let out = env.run(["diff", "vmc"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--isolation=vm"), "{err}");
        env.ok(["rm", "vmc"]);
    }
    env.ok(["rm", "chg"]);
    env.assert_clean(&[id]);
}
