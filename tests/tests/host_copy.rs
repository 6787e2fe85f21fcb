//! Tier 2: `hull cp` and `hull export` of process containers, running and stopped: files
//! and directories both ways with docker's naming rules, symlinks copied as symlinks, and a
//! symlink the container plants toward a host path never leads `hull cp` to the host's files
//! (docker's CVE-2018-15664), in either direction. Nothing is left mounted afterwards.
//! (vm containers: refused with the reason until the guest agent serves their files.)

mod process_common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use process_common::Env;

/// The container's mounts of `id` the host can see (a stopped container's layer is mounted
/// for `cp` in a private namespace only).
fn host_mounts_of(id: &str) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(id))
        .map(String::from)
        .collect()
}

fn err_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn cp_round_trips_files_into_and_out_of_running_and_stopped_containers() {
    let env = Env::new();
    let host = tempfile::tempdir().unwrap();
    let src = host.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.txt"), "hello\n").unwrap();
    fs::write(src.join("sub/b.txt"), "deep\n").unwrap();
    symlink("/etc/passwd", src.join("link")).unwrap();

    let id = env.detached(
        "cp1",
        &[],
        "echo from-container > /made.txt; exec sleep 1000",
    );
    // Into an existing directory: under the source's name.
    env.ok(["cp", src.to_str().unwrap(), "cp1:/tmp"]);
    let seen = env.ok([
        "exec",
        "cp1",
        "sh",
        "-c",
        "cat /tmp/src/a.txt /tmp/src/sub/b.txt; readlink /tmp/src/link; stat -c %u:%g /tmp/src/a.txt",
    ]);
    assert_eq!(seen, "hello\ndeep\n/etc/passwd\n0:0\n");
    // A file to a new name.
    env.ok([
        "cp",
        src.join("a.txt").to_str().unwrap(),
        "cp1:/renamed.txt",
    ]);
    assert_eq!(env.ok(["exec", "cp1", "cat", "/renamed.txt"]), "hello\n");

    // Out of the running container: to a new name, and into an existing directory.
    let out = host.path().join("out");
    env.ok(["cp", "cp1:/tmp/src", out.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(out.join("sub/b.txt")).unwrap(), "deep\n");
    assert_eq!(
        fs::read_link(out.join("link")).unwrap(),
        Path::new("/etc/passwd")
    );
    env.ok(["cp", "cp1:/made.txt", host.path().to_str().unwrap()]);
    assert_eq!(
        fs::read_to_string(host.path().join("made.txt")).unwrap(),
        "from-container\n"
    );
    // As a tar stream.
    let tar = env.run(["cp", "cp1:/made.txt", "-"]);
    assert!(tar.status.success(), "{}", err_of(&tar));
    let names: Vec<String> = tar::Archive::new(&tar.stdout[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["made.txt"]);

    // Stopped: read and write its layer; the next start sees what was copied in.
    env.ok(["stop", "-t", "1", "cp1"]);
    env.wait_exited("cp1", Duration::from_secs(20));
    let back = host.path().join("stopped.txt");
    env.ok(["cp", "cp1:/renamed.txt", back.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(&back).unwrap(), "hello\n");
    fs::write(host.path().join("late.txt"), "while stopped\n").unwrap();
    env.ok([
        "cp",
        host.path().join("late.txt").to_str().unwrap(),
        "cp1:/late.txt",
    ]);
    assert!(host_mounts_of(&id).is_empty(), "{:?}", host_mounts_of(&id));
    env.ok(["start", "cp1"]);
    assert_eq!(
        env.ok(["exec", "cp1", "cat", "/late.txt"]),
        "while stopped\n"
    );

    // Bad input: named, nothing made.
    let r = env.run(["cp", "no-such-container:/x", host.path().to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(125));
    assert!(err_of(&r).contains("no-such-container"), "{}", err_of(&r));
    let r = env.run([
        "cp",
        "cp1:/no/such/file",
        host.path().join("nothing").to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(125));
    assert!(err_of(&r).contains("/no/such/file"), "{}", err_of(&r));
    assert!(!host.path().join("nothing").exists());
    let r = env.run(["cp", src.to_str().unwrap(), "cp1:/no/such/dir/x"]);
    assert_eq!(r.status.code(), Some(125));

    env.ok(["rm", "-f", "cp1"]);
    env.assert_clean(&[id]);
}

/// The container points symlinks at a host directory holding a secret (absolute, and by
/// `..`); `hull cp` through them reads and writes inside the container only.
#[test]
fn cp_never_follows_a_container_symlink_to_the_host() {
    let env = Env::new();
    let host = tempfile::tempdir().unwrap();
    let secret_dir = host.path().join("secret");
    fs::create_dir(&secret_dir).unwrap();
    fs::write(secret_dir.join("key"), "host-secret\n").unwrap();
    let target = secret_dir.to_str().unwrap();
    let script = format!(
        "ln -s {target} /abs; ln -s ../../../../../../../../..{target} /rel; mkdir /d; \
         ln -s {target}/key /d/key; exec sleep 1000"
    );
    let id = env.detached("cp2", &[], &script);
    // Poll until the links exist (the script made them before sleeping).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while env
        .run(["exec", "cp2", "test", "-L", "/d/key"])
        .status
        .code()
        != Some(0)
    {
        assert!(std::time::Instant::now() < deadline, "links not made");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Out: a path through the link resolves in the container, where it does not exist.
    for path in ["cp2:/abs/key", "cp2:/rel/key"] {
        let dest = host.path().join("leak");
        let r = env.run(["cp", path, dest.to_str().unwrap()]);
        assert_eq!(r.status.code(), Some(125), "{path}: {}", err_of(&r));
        assert!(!dest.exists(), "{path}: copied something");
    }
    // The link itself is copied as a link; a tree holding a link keeps it a link.
    let dest = host.path().join("d-copy");
    env.ok(["cp", "cp2:/d", dest.to_str().unwrap()]);
    assert!(fs::symlink_metadata(dest.join("key"))
        .unwrap()
        .file_type()
        .is_symlink());
    let tar = env.run(["cp", "cp2:/d", "-"]);
    assert!(!String::from_utf8_lossy(&tar.stdout).contains("host-secret"));

    // In: through the links, nothing reaches the host directory.
    let file = host.path().join("payload");
    fs::write(&file, "payload\n").unwrap();
    for dest in ["cp2:/abs/", "cp2:/rel/payload", "cp2:/abs/key"] {
        let _ = env.run(["cp", file.to_str().unwrap(), dest]);
    }
    // Over the planted link to the host file: the link is replaced in the container.
    env.ok(["cp", file.to_str().unwrap(), "cp2:/d/key"]);
    assert_eq!(env.ok(["exec", "cp2", "cat", "/d/key"]), "payload\n");
    let mut left: Vec<_> = fs::read_dir(&secret_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["key"],
        "something was written into the host directory"
    );
    assert_eq!(
        fs::read_to_string(secret_dir.join("key")).unwrap(),
        "host-secret\n"
    );

    env.ok(["rm", "-f", "cp2"]);
    env.assert_clean(&[id]);
}

#[test]
fn export_writes_the_containers_own_files_as_a_tar() {
    let env = Env::new();
    let host = tempfile::tempdir().unwrap();
    let id = env.detached(
        "ex",
        &[],
        "echo added > /added.txt; rm /etc/group; exec sleep 1000",
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while env
        .run(["exec", "ex", "test", "-f", "/added.txt"])
        .status
        .code()
        != Some(0)
    {
        assert!(std::time::Instant::now() < deadline, "file not written");
        std::thread::sleep(Duration::from_millis(50));
    }
    let names = |file: &Path| -> Vec<String> {
        tar::Archive::new(fs::File::open(file).unwrap())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    };
    let running = host.path().join("running.tar");
    env.ok(["export", "-o", running.to_str().unwrap(), "ex"]);
    let list = names(&running);
    assert!(list.contains(&"added.txt".to_string()), "{list:?}");
    assert!(list.contains(&"bin/busybox".to_string()), "{list:?}");
    assert!(
        !list.contains(&"etc/group".to_string()),
        "a deleted file is exported"
    );
    // Its own files only: /proc's and /sys's contents are other filesystems.
    assert!(list.contains(&"proc".to_string()), "{list:?}");
    assert!(!list.iter().any(|n| n.starts_with("proc/")), "{list:?}");

    env.ok(["stop", "-t", "1", "ex"]);
    env.wait_exited("ex", Duration::from_secs(20));
    let stopped = host.path().join("stopped.tar");
    env.ok(["export", "-o", stopped.to_str().unwrap(), "ex"]);
    let list = names(&stopped);
    assert!(list.contains(&"added.txt".to_string()), "{list:?}");
    assert!(!list.contains(&"etc/group".to_string()), "{list:?}");
    assert!(host_mounts_of(&id).is_empty());

    let r = env.run([
        "export",
        "-o",
        host.path().join("x.tar").to_str().unwrap(),
        "nope",
    ]);
    assert_eq!(r.status.code(), Some(125));
    env.ok(["rm", "-f", "ex"]);
    env.assert_clean(&[id]);
}
