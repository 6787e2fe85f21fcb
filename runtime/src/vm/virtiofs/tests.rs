//! The launcher against the real virtiofsd (needs root and /usr/lib/qemu/virtiofsd, which
//! scripts/setup.sh installs with qemu-system-x86): what its sandbox looks like from the
//! host once a frontend connected (virtiofsd builds its sandbox after the connection).

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::*;

fn config(dir: &Path, source: &Path, read_only: bool) -> VirtiofsdConfig {
    assert!(
        Path::new(DEFAULT_VIRTIOFSD).exists(),
        "{DEFAULT_VIRTIOFSD} missing: apt-get install qemu-system-x86 (scripts/setup.sh)"
    );
    VirtiofsdConfig {
        binary: DEFAULT_VIRTIOFSD.into(),
        source: source.to_path_buf(),
        read_only,
        socket: dir.join("fs0.sock"),
        bind_path: dir.join("fs0.sock"),
        log: dir.join("virtiofsd-0.log"),
    }
}

/// The sandboxed virtiofsd process (the child in its own PID namespace) once its root is
/// the shared directory.
fn sandboxed(pid: u32, source: &Path, log: &Path) -> u32 {
    let want = std::fs::metadata(source).unwrap().ino();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for child in children.split_whitespace() {
            let root = std::fs::metadata(format!("/proc/{child}/root"));
            if root.is_ok_and(|m| m.ino() == want) {
                return child.parse().unwrap();
            }
        }
        assert!(
            Instant::now() < deadline,
            "virtiofsd {pid} never pivoted into {}: {}",
            source.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Mount options of `/` as process `pid` sees it.
fn root_mount_options(pid: u32) -> String {
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    info.lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .filter(|f| f.len() > 5 && f[4] == "/")
        .map(|f| f[5].to_string())
        .next_back()
        .expect("a / mount")
}

fn run(read_only: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("share");
    std::fs::create_dir(&source).unwrap();
    std::fs::write(source.join("f"), "x").unwrap();
    let cfg = config(dir.path(), &source, read_only);
    let mut fsd = Virtiofsd::spawn(&cfg).unwrap();
    assert!(cfg.socket.exists());
    // A frontend connects (what hull-vmm does at start-up): virtiofsd builds its sandbox.
    let conn = UnixStream::connect(&cfg.socket).unwrap();
    let child = sandboxed(fsd.pid(), &source, &cfg.log);
    let options = root_mount_options(child);
    // The host's mount table never sees the bind mounts.
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !host.contains(source.to_str().unwrap()),
        "a volume mount leaked into the host's mount namespace"
    );
    // The frontend goes away (the VMM ended): virtiofsd ends by itself.
    drop(conn);
    assert!(
        fsd.wait_exit(Duration::from_secs(20)),
        "virtiofsd outlived its frontend"
    );
    fsd.stop();
    assert!(!cfg.socket.exists(), "the socket was left behind");
    options
}

#[test]
fn a_read_only_volume_is_a_read_only_mount_in_virtiofsds_sandbox() {
    let options = run(true);
    assert!(
        options.split(',').any(|o| o == "ro"),
        "virtiofsd's / is {options}"
    );
}

#[test]
fn a_read_write_volume_is_writable_in_virtiofsds_sandbox() {
    let options = run(false);
    assert!(
        options.split(',').any(|o| o == "rw"),
        "virtiofsd's / is {options}"
    );
}

#[test]
fn stop_kills_a_virtiofsd_nobody_connected_to_and_removes_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), dir.path(), false);
    let fsd = Virtiofsd::spawn(&cfg).unwrap();
    let pid = fsd.pid();
    fsd.stop();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "virtiofsd {pid} still there"
    );
    assert!(!cfg.socket.exists());
}

#[test]
fn bad_sources_are_refused_by_name_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    for (source, word) in [
        (file.clone(), "not a directory"),
        (dir.path().join("missing"), "missing"),
        (Path::new("relative/dir").to_path_buf(), "absolute"),
    ] {
        let cfg = config(dir.path(), &source, false);
        let err = Virtiofsd::spawn(&cfg).unwrap_err().to_string();
        assert!(err.contains(word), "{}: {err}", source.display());
        assert!(!cfg.socket.exists());
    }
}
