use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use super::read::write_tar;
use super::write::{unpack_tar, Destination, Ownership, Resolve, WriteOptions};

const IN_ROOT: WriteOptions = WriteOptions {
    resolve: Resolve::InRoot,
    ownership: Ownership::Archive,
    special_bits: true,
};
const HOST: WriteOptions = WriteOptions {
    resolve: Resolve::Beneath,
    ownership: Ownership::Caller,
    special_bits: false,
};

fn dir_fd(p: &Path) -> fs::File {
    fs::File::open(p).unwrap()
}

fn tar_of(root: &Path, path: &str, name: Option<&str>) -> Vec<u8> {
    let r = dir_fd(root);
    write_tar(
        r.as_fd(),
        Path::new(path),
        name.map(Path::new),
        false,
        Vec::new(),
    )
    .unwrap()
    .0
}

#[test]
fn a_tree_round_trips_with_links_kept_as_links() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    fs::create_dir_all(a.join("tree/sub")).unwrap();
    fs::create_dir_all(b.join("dest")).unwrap();
    fs::write(a.join("tree/f"), "hello").unwrap();
    fs::set_permissions(a.join("tree/f"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(a.join("tree/sub/g"), vec![7u8; 100_000]).unwrap();
    symlink("/etc/passwd", a.join("tree/link")).unwrap();
    nix::unistd::mkfifo(
        &a.join("tree/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let bytes = tar_of(&a, "/tree", Some("copy"));
    let root = dir_fd(&b);
    let dest = Destination {
        base: root.as_fd(),
        path: "/dest".into(),
    };
    let stats = unpack_tar(&dest, &bytes[..], IN_ROOT).unwrap();
    assert_eq!(stats.entries, 6, "{stats:?}");
    let out = b.join("dest/copy");
    assert_eq!(fs::read_to_string(out.join("f")).unwrap(), "hello");
    assert_eq!(fs::metadata(out.join("f")).unwrap().mode() & 0o7777, 0o4755);
    assert_eq!(fs::read(out.join("sub/g")).unwrap(), vec![7u8; 100_000]);
    assert_eq!(
        fs::read_link(out.join("link")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert!(fs::symlink_metadata(out.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());

    // The host side strips setuid and never follows links either.
    let host = tmp.path().join("host");
    fs::create_dir(&host).unwrap();
    let h = dir_fd(&host);
    let dest = Destination {
        base: h.as_fd(),
        path: "".into(),
    };
    unpack_tar(&dest, &bytes[..], HOST).unwrap();
    assert_eq!(
        fs::metadata(host.join("copy/f")).unwrap().mode() & 0o7777,
        0o755
    );
}

#[test]
fn export_lists_the_contents_without_a_top_entry() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("bin")).unwrap();
    fs::write(tmp.path().join("bin/sh"), "x").unwrap();
    let bytes = tar_of(tmp.path(), "/", None);
    let mut names: Vec<String> = tar::Archive::new(&bytes[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["bin", "bin/sh"]);
}

/// A symlink in the container pointing outside (absolute or `..`) resolves inside its root
/// when read: the host's file is never archived.
#[test]
fn reading_through_a_planted_symlink_stays_in_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(tmp.path().join("secret"), "host-secret").unwrap();
    symlink("../secret", root.join("up")).unwrap();
    symlink(tmp.path().join("secret"), root.join("abs")).unwrap();
    symlink("/", root.join("dir")).unwrap();
    let r = dir_fd(&root);
    for path in ["/up", "/abs", "/dir/../secret"] {
        let res = write_tar(
            r.as_fd(),
            Path::new(path),
            Some(Path::new("x")),
            false,
            Vec::new(),
        );
        match res {
            // The last component is the link itself, archived as a link.
            Ok((bytes, _)) => {
                let text = String::from_utf8_lossy(&bytes);
                assert!(
                    !text.contains("host-secret"),
                    "{path}: read the host's file"
                );
            }
            Err(e) => assert!(e.is_not_found(), "{path}: {e}"),
        }
    }
    // A parent that is a link to outside: resolved in the root, the host file is absent.
    symlink(tmp.path(), root.join("outside")).unwrap();
    let e = write_tar(
        r.as_fd(),
        Path::new("/outside/secret"),
        Some(Path::new("x")),
        false,
        Vec::new(),
    )
    .unwrap_err();
    assert!(e.is_not_found(), "{e}");
}

/// Unpacking into a container whose destination is a symlink to outside its root, or holds
/// a symlink where a file goes: nothing outside the root changes.
#[test]
fn unpacking_never_writes_through_container_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let victim = tmp.path().join("victim");
    fs::create_dir_all(&root).unwrap();
    fs::create_dir_all(&victim).unwrap();
    fs::write(victim.join("file"), "untouched").unwrap();
    symlink(&victim, root.join("data")).unwrap();
    symlink("../../victim", root.join("rel")).unwrap();
    fs::create_dir(root.join("ok")).unwrap();
    symlink(victim.join("file"), root.join("ok/file")).unwrap();

    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("file")).unwrap_or(());
    fs::remove_dir(src.join("file")).unwrap();
    fs::write(src.join("file"), "new").unwrap();
    let bytes = tar_of(&src, "/file", Some("file"));
    let r = dir_fd(&root);
    for dest in ["/data", "/rel"] {
        let d = Destination {
            base: r.as_fd(),
            path: dest.into(),
        };
        // Resolved inside the root: /victim does not exist there.
        let e = unpack_tar(&d, &bytes[..], IN_ROOT).unwrap_err();
        assert!(e.is_not_found(), "{dest}: {e}");
    }
    let d = Destination {
        base: r.as_fd(),
        path: "/ok".into(),
    };
    unpack_tar(&d, &bytes[..], IN_ROOT).unwrap();
    assert_eq!(fs::read_to_string(root.join("ok/file")).unwrap(), "new");
    assert!(!fs::symlink_metadata(root.join("ok/file"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        fs::read_to_string(victim.join("file")).unwrap(),
        "untouched"
    );
}

/// A hostile archive (from a guest): a symlink entry followed by an entry through it, and
/// names with `..`: refused, nothing written outside the destination.
#[test]
fn a_hostile_archive_cannot_leave_the_host_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let dest_dir = tmp.path().join("dest");
    let victim = tmp.path().join("victim");
    fs::create_dir_all(&dest_dir).unwrap();
    fs::create_dir_all(&victim).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "esc", &victim).unwrap();
    let mut f = tar::Header::new_gnu();
    f.set_entry_type(tar::EntryType::Regular);
    f.set_size(3);
    f.set_mode(0o644);
    b.append_data(&mut f, "esc/pwned", &b"bad"[..]).unwrap();
    let bytes = b.into_inner().unwrap();
    let d = dir_fd(&dest_dir);
    let dest = Destination {
        base: d.as_fd(),
        path: "".into(),
    };
    assert!(unpack_tar(&dest, &bytes[..], HOST).is_err());
    assert!(!victim.join("pwned").exists());

    // `..` in a name (written raw: the tar crate's builder refuses it).
    let mut raw = tar::Header::new_gnu();
    raw.set_entry_type(tar::EntryType::Regular);
    raw.set_size(0);
    raw.set_mode(0o644);
    raw.as_old_mut().name[..9].copy_from_slice(b"../pwned2");
    raw.set_cksum();
    let mut bytes = raw.as_bytes().to_vec();
    bytes.extend([0u8; 1024]);
    let e = unpack_tar(&dest, &bytes[..], HOST).unwrap_err();
    assert!(e.to_string().contains("leaves its directory"), "{e}");
    assert!(!tmp.path().join("pwned2").exists());
}
