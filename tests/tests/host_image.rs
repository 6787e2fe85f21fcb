//! `hull image import|ls|inspect|rm` on every input kind, checked the way a user would:
//! digests against `sha256sum` of the blobs, configs against what the producing tool set,
//! file metadata in the unpacked layers, and layers stacked by overlayfs.

mod image_common;

use std::ffi::CString;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use hull_tests::TestRoot;
use image_common::*;
use serde_json::{json, Value};

fn root() -> TestRoot {
    assert!(
        hull_tests::is_root(),
        "host image tests run as root (tier 2)"
    );
    TestRoot::new()
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn import(root: &TestRoot, path: &Path, args: &[&str]) -> String {
    let mut cmd = root.hull(["image", "import"]);
    cmd.arg(path).args(args);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "import {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn count_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |rd| rd.count())
}

fn layer_dir(info: &Value, i: usize) -> PathBuf {
    PathBuf::from(info["layers"][i]["path"].as_str().unwrap())
}

fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid NUL-terminated strings and a writable buffer of buf.len() bytes.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| buf[..len as usize].to_vec())
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let p = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings and a buffer of value.len() bytes.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// A small root filesystem with every kind of file and metadata hull must keep.
fn make_rootfs(dir: &Path) {
    let d = |p: &str| dir.join(p);
    for sub in ["bin", "etc", "tmp", "dev", "home/user"] {
        std::fs::create_dir_all(d(sub)).unwrap();
    }
    std::fs::copy("/bin/busybox", d("bin/busybox")).expect("busybox-static is installed");
    std::os::unix::fs::symlink("busybox", d("bin/sh")).unwrap();
    std::fs::write(d("etc/motd"), b"hello from hull\n").unwrap();
    std::fs::hard_link(d("etc/motd"), d("etc/motd.link")).unwrap();
    std::fs::write(d("bin/suid"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(d("bin/suid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::set_permissions(d("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::os::unix::fs::chown(d("home/user"), Some(1000), Some(1000)).unwrap();
    run(Command::new("mknod")
        .arg(d("dev/null"))
        .args(["c", "1", "3"]));
    run(Command::new("mkfifo").arg(d("dev/fifo")));
    set_xattr(&d("etc/motd"), "user.hull", b"kept");
}

fn check_rootfs_layer(layer: &Path) {
    let meta = |p: &str| std::fs::symlink_metadata(layer.join(p)).unwrap();
    assert_eq!(
        std::fs::read_link(layer.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(meta("bin/suid").mode() & 0o7777, 0o4755, "setuid bit kept");
    assert_eq!(meta("tmp").mode() & 0o7777, 0o1777, "sticky bit kept");
    assert_eq!(
        (meta("home/user").uid(), meta("home/user").gid()),
        (1000, 1000)
    );
    assert_eq!(
        meta("etc/motd").ino(),
        meta("etc/motd.link").ino(),
        "hardlink kept"
    );
    assert!(meta("dev/null").file_type().is_char_device());
    assert_eq!(meta("dev/null").rdev(), libc::makedev(1, 3));
    assert!(meta("dev/fifo").file_type().is_fifo());
    assert_eq!(
        get_xattr(&layer.join("etc/motd"), "user.hull").as_deref(),
        Some(&b"kept"[..])
    );
    assert_eq!(
        std::fs::read(layer.join("bin/busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
}

#[test]
fn rootfs_directory_import_keeps_metadata_and_config() {
    let root = root();
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("rootfs");
    make_rootfs(&rootfs);
    let args = [
        "--rootfs",
        "--tag",
        "hull/test:1",
        "--cmd",
        r#"["sh","-c","echo hi"]"#,
        "--env",
        "PATH=/bin",
        "--env",
        "A=b",
        "--workdir",
        "/home/user",
        "--user",
        "1000:1000",
        "--label",
        "k=v",
        "--expose",
        "8080",
    ];
    let out = import(&root, &rootfs, &args);
    assert!(out.contains("imported hull/test:1"), "{out}");

    let info = inspect(&root, "hull/test:1");
    let cfg = &info["config"]["config"];
    assert_eq!(cfg["Cmd"], json!(["sh", "-c", "echo hi"]));
    assert_eq!(cfg["Env"], json!(["PATH=/bin", "A=b"]));
    assert_eq!(cfg["WorkingDir"], "/home/user");
    assert_eq!(cfg["User"], "1000:1000");
    assert_eq!(cfg["Labels"], json!({"k": "v"}));
    assert_eq!(cfg["ExposedPorts"], json!({"8080/tcp": {}}));
    check_rootfs_layer(&layer_dir(&info, 0));

    // The stored blobs are what inspect says they are.
    let blobs = root.path().join("images/blobs/sha256");
    for key in ["id", "manifestDigest"] {
        let d = info[key].as_str().unwrap();
        assert_eq!(sha256sum_file(&blobs.join(&d[7..])), d[7..], "{key}");
    }

    // Same tree, same changes: same id, nothing to do.
    let again = import(&root, &rootfs, &args);
    assert!(again.contains("up to date"), "{again}");
    assert_eq!(inspect(&root, "hull/test:1")["id"], info["id"]);
}

#[test]
fn rootfs_tar_import_plain_gzip_zstd() {
    let root = root();
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("rootfs");
    make_rootfs(&rootfs);
    // Made by GNU tar, not by hull.
    let plain = work.path().join("rootfs.tar");
    run(Command::new("tar")
        .args([
            "--xattrs",
            "--xattrs-include=user.*",
            "--numeric-owner",
            "-C",
        ])
        .arg(&rootfs)
        .arg("-cf")
        .arg(&plain)
        .arg("."));
    let tar_bytes = std::fs::read(&plain).unwrap();
    let diff_id = format!("sha256:{}", sha256sum(&tar_bytes));
    let gz = work.path().join("rootfs.tar.gz");
    std::fs::write(&gz, gzip(&tar_bytes)).unwrap();
    let zst = work.path().join("rootfs.tar.zst");
    std::fs::write(&zst, zstd(&tar_bytes)).unwrap();

    for (path, tag, media) in [
        (&plain, "t/plain", LAYER_TAR),
        (&gz, "t/gzip", LAYER_GZIP),
        (&zst, "t/zstd", LAYER_ZSTD),
    ] {
        import(&root, path, &["--rootfs", "--tag", tag]);
        let info = inspect(&root, tag);
        let layer = &info["layers"][0];
        assert_eq!(layer["diffId"], diff_id.as_str(), "{tag}");
        assert_eq!(
            layer["digest"],
            format!("sha256:{}", sha256sum_file(path)).as_str()
        );
        assert_eq!(layer["size"], std::fs::metadata(path).unwrap().len());
        assert_eq!(layer["mediaType"], media);
        assert_eq!(info["config"]["rootfs"]["diff_ids"], json!([diff_id]));
        check_rootfs_layer(&layer_dir(&info, 0));
    }
    // One unpacked layer shared by the three images.
    assert_eq!(count_entries(&root.path().join("images/layers/sha256")), 1);
}

/// Builds an OCI layout with umoci (not hull) holding `rootfs` as one layer.
fn umoci_layout(work: &Path, rootfs: &Path) -> PathBuf {
    require_tool("umoci");
    let layout = work.join("umoci-layout");
    let image = format!("{}:v1", layout.display());
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci")
        .args(["insert", "--image", &image])
        .arg(rootfs)
        .arg("/"));
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.cmd",
        "sh",
        "--config.env",
        "PATH=/bin",
        "--config.workingdir",
        "/etc",
        "--config.user",
        "1000",
        "--config.label",
        "by=umoci",
    ]));
    layout
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Checks an imported image against the OCI layout it came from: manifest, config and
/// layer digests recomputed with sha256sum on the layout's own files.
fn check_against_layout(info: &Value, layout: &Path) {
    let blob = |d: &str| layout.join("blobs/sha256").join(&d[7..]);
    let index = read_json(&layout.join("index.json"));
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    assert_eq!(sha256sum_file(&blob(manifest_digest)), manifest_digest[7..]);
    let manifest = read_json(&blob(manifest_digest));
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    assert_eq!(sha256sum_file(&blob(config_digest)), config_digest[7..]);

    assert_eq!(info["manifestDigest"], manifest_digest);
    assert_eq!(info["id"], config_digest);
    assert_eq!(info["config"], read_json(&blob(config_digest)));
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(info["layers"].as_array().unwrap().len(), layers.len());
    for (i, l) in layers.iter().enumerate() {
        let d = l["digest"].as_str().unwrap();
        assert_eq!(sha256sum_file(&blob(d)), d[7..]);
        assert_eq!(info["layers"][i]["digest"], d);
        assert_eq!(info["layers"][i]["size"], l["size"]);
        assert_eq!(info["layers"][i]["mediaType"], l["mediaType"]);
    }
}

#[test]
fn oci_layout_made_by_umoci() {
    let root = root();
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("rootfs");
    make_rootfs(&rootfs);
    let layout = umoci_layout(work.path(), &rootfs);

    // umoci names the manifest only "v1", which does not name a repository.
    let out = root
        .hull(["image", "import"])
        .arg(&layout)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --tag"));

    import(&root, &layout, &["--tag", "umoci/image:v1"]);
    let info = inspect(&root, "umoci/image:v1");
    check_against_layout(&info, &layout);
    let cfg = &info["config"]["config"];
    assert_eq!(cfg["Cmd"], json!(["sh"]));
    assert_eq!(cfg["Env"], json!(["PATH=/bin"]));
    assert_eq!(cfg["WorkingDir"], "/etc");
    assert_eq!(cfg["User"], "1000");
    assert_eq!(cfg["Labels"]["by"], "umoci");
    check_rootfs_layer(&layer_dir(&info, 0));
}

#[test]
fn archives_made_by_skopeo() {
    require_tool("skopeo");
    let root = root();
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("rootfs");
    make_rootfs(&rootfs);
    let layout = umoci_layout(work.path(), &rootfs);
    let src = format!("oci:{}:v1", layout.display());
    let docker = work.path().join("docker.tar");
    let oci_tar = work.path().join("oci.tar");
    let zstd_layout = work.path().join("zstd-layout");
    let skopeo = |args: &[&str]| run(Command::new("skopeo").args(args));
    skopeo(&[
        "copy",
        &src,
        &format!("docker-archive:{}:skopeo/docker:v2", docker.display()),
    ]);
    skopeo(&[
        "copy",
        &src,
        &format!("oci-archive:{}:v3", oci_tar.display()),
    ]);
    skopeo(&[
        "copy",
        "--dest-compress-format",
        "zstd",
        &src,
        &format!("oci:{}:docker.io/skopeo/zstd:v4", zstd_layout.display()),
    ]);

    import(&root, &layout, &["--tag", "umoci/image:v1"]);
    let reference = inspect(&root, "umoci/image:v1");

    // docker-archive: named by its RepoTags; same config (id) and layer content.
    import(&root, &docker, &[]);
    let info = inspect(&root, "skopeo/docker:v2");
    assert_eq!(info["id"], reference["id"]);
    assert_eq!(
        info["layers"][0]["diffId"],
        reference["layers"][0]["diffId"]
    );
    let manifest: Value = {
        let out = Command::new("tar")
            .arg("-xOf")
            .arg(&docker)
            .arg("manifest.json")
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let layer_in_archive = manifest[0]["Layers"][0].as_str().unwrap().to_string();
    let layer_bytes = Command::new("tar")
        .arg("-xOf")
        .arg(&docker)
        .arg(&layer_in_archive)
        .output()
        .unwrap()
        .stdout;
    assert_eq!(
        info["layers"][0]["digest"],
        format!("sha256:{}", sha256sum(&layer_bytes))
    );
    assert_eq!(info["layers"][0]["size"], layer_bytes.len());

    // oci-archive: a tar of a layout.
    import(&root, &oci_tar, &["--tag", "skopeo/oci:v3"]);
    let unpacked = work.path().join("oci-unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    run(Command::new("tar")
        .arg("-C")
        .arg(&unpacked)
        .arg("-xf")
        .arg(&oci_tar));
    check_against_layout(&inspect(&root, "skopeo/oci:v3"), &unpacked);

    // zstd layers, named by the layout's full ref.name.
    let out = import(&root, &zstd_layout, &[]);
    assert!(out.contains("skopeo/zstd:v4"), "{out}");
    let info = inspect(&root, "skopeo/zstd:v4");
    check_against_layout(&info, &zstd_layout);
    assert_eq!(info["layers"][0]["mediaType"], LAYER_ZSTD);

    let ls: Value = serde_json::from_str(&root.ok(["image", "ls", "--json"])).unwrap();
    let names: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "skopeo/docker:v2",
            "skopeo/oci:v3",
            "skopeo/zstd:v4",
            "umoci/image:v1"
        ]
    );
    // All four share one unpacked layer.
    assert_eq!(count_entries(&root.path().join("images/layers/sha256")), 1);
}

/// Unmounts on drop.
struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn whiteouts_become_overlayfs_whiteouts() {
    let root = root();
    let work = tempfile::tempdir().unwrap();
    let lower = raw_tar(&[
        RawEntry::dir("a/"),
        RawEntry::file("a/gone", b"1"),
        RawEntry::file("a/kept", b"2"),
        RawEntry::dir("o/"),
        RawEntry::file("o/old", b"3"),
    ]);
    let upper = raw_tar(&[
        RawEntry::dir("a/"),
        RawEntry::file("a/.wh.gone", b""),
        RawEntry::dir("o/"),
        RawEntry::file("o/.wh..wh..opq", b""),
        RawEntry::file("o/new", b"4"),
    ]);
    let layers = [Layer::plain(lower), Layer::zstd(upper)];
    let config = config_for(&layers, &["sh"]);
    let layout = work.path().join("layout");
    let w = write_oci_layout(
        &layout,
        &layers,
        &config,
        Some("docker.io/test/wh:1"),
        |_| {},
    );
    import(&root, &layout, &[]);
    let info = inspect(&root, "test/wh:1");
    assert_eq!(info["layers"][1]["digest"], w.layer_digests[1].as_str());
    let (l0, l1) = (layer_dir(&info, 0), layer_dir(&info, 1));

    let wh = std::fs::symlink_metadata(l1.join("a/gone")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "whiteout is a 0:0 char device"
    );
    assert!(!l1.join("a/.wh.gone").exists());
    assert_eq!(
        get_xattr(&l1.join("o"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );

    // Stacked by overlayfs, the image looks as the layers say.
    let mnt = work.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run(Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!("lowerdir={}:{}", l1.display(), l0.display()))
        .arg(&mnt));
    let _guard = Mount(mnt.clone());
    assert!(!mnt.join("a/gone").exists());
    assert_eq!(std::fs::read(mnt.join("a/kept")).unwrap(), b"2");
    assert!(!mnt.join("o/old").exists());
    assert_eq!(std::fs::read(mnt.join("o/new")).unwrap(), b"4");
}

#[test]
fn rm_removes_only_unshared_blobs_and_layers() {
    let root = root();
    let work = tempfile::tempdir().unwrap();
    let shared = work.path().join("shared.tar");
    std::fs::write(&shared, raw_tar(&[RawEntry::file("s", b"shared")])).unwrap();
    let other = work.path().join("other.tar");
    std::fs::write(&other, raw_tar(&[RawEntry::file("o", b"other")])).unwrap();
    import(&root, &shared, &["--rootfs", "--tag", "x/a"]);
    import(&root, &shared, &["--rootfs", "--tag", "x/b", "--cmd", "sh"]);
    import(&root, &other, &["--rootfs", "--tag", "x/c"]);
    let images = root.path().join("images");
    let layers = || count_entries(&images.join("layers/sha256"));
    let blobs = || count_entries(&images.join("blobs/sha256"));
    assert_eq!((layers(), blobs()), (2, 6)); // a and b: same layer, own config+manifest

    let a = inspect(&root, "x/a");
    root.ok(["image", "rm", "x/a"]);
    assert_eq!((layers(), blobs()), (2, 4));
    assert!(layer_dir(&a, 0).is_dir(), "layer still used by x/b");
    root.ok(["image", "rm", "x/b"]);
    assert_eq!((layers(), blobs()), (1, 2));
    assert!(!layer_dir(&a, 0).exists());
    let c = inspect(&root, "x/c");
    root.ok(["image", "rm", &c["id"].as_str().unwrap()[7..19]]); // by id prefix
    assert_eq!((layers(), blobs()), (0, 0));
    assert_eq!(root.ok(["image", "ls", "--json"]).trim(), "[]");

    let out = root.run(["image", "rm", "x/a"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such image: x/a"));
}

#[test]
fn names_resolve_like_docker() {
    let root = root();
    let work = tempfile::tempdir().unwrap();
    let t = work.path().join("t.tar");
    std::fs::write(&t, raw_tar(&[RawEntry::file("f", b"1")])).unwrap();
    import(&root, &t, &["--rootfs", "--tag", "hull/busybox"]);
    let info = inspect(&root, "busybox");
    assert_eq!(info["name"], "hull/busybox:latest");
    assert_eq!(inspect(&root, "hull/busybox:latest")["id"], info["id"]);
    assert_eq!(
        inspect(&root, &info["id"].as_str().unwrap()[..19])["name"],
        "hull/busybox:latest"
    );
    import(&root, &t, &["--rootfs", "--tag", "plain"]);
    assert_eq!(inspect(&root, "plain")["name"], "library/plain:latest");

    for bad in ["UPPER", "a//b", "x:", "../x"] {
        let out = root
            .hull(["image", "import", "--rootfs", "--tag", bad])
            .arg(&t)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad} accepted");
        assert!(String::from_utf8_lossy(&out.stderr).contains("invalid image reference"));
    }
}

#[test]
fn concurrent_imports_into_one_store() {
    let root = root();
    let work = tempfile::tempdir().unwrap();
    let mut children = Vec::new();
    for i in 0..4 {
        let t = work.path().join(format!("{i}.tar"));
        let data = vec![b'a' + i as u8; 300_000];
        std::fs::write(
            &t,
            raw_tar(&[RawEntry::file("f", &data), RawEntry::file("shared", b"s")]),
        )
        .unwrap();
        let mut cmd = root.hull(["image", "import", "--rootfs", "--tag"]);
        cmd.arg(format!("c/n{i}")).arg(&t);
        children.push(cmd.spawn().unwrap());
    }
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let ls: Value = serde_json::from_str(&root.ok(["image", "ls", "--json"])).unwrap();
    assert_eq!(ls.as_array().unwrap().len(), 4);
    for i in 0..4 {
        let info = inspect(&root, &format!("c/n{i}"));
        assert_eq!(
            std::fs::read(layer_dir(&info, 0).join("f")).unwrap().len(),
            300_000
        );
    }
    assert_eq!(tree(&root.path().join("images/tmp")), Vec::<PathBuf>::new());
}

#[test]
fn default_image_script_builds_hull_busybox() {
    let root = root();
    let script = hull_tests::workspace_root().join("scripts/build-default-image.sh");
    let build = || {
        let out = Command::new("bash")
            .arg(&script)
            .arg(hull_tests::binary("hull"))
            .env("HULL_ROOT", root.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    build();
    let info = inspect(&root, "hull/busybox:latest");
    let cfg = &info["config"]["config"];
    assert_eq!(cfg["Cmd"], json!(["sh"]));
    assert_eq!(
        cfg["Env"],
        json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    );
    assert_eq!(cfg["WorkingDir"], "/");
    let layer = layer_dir(&info, 0);
    assert_eq!(
        std::fs::read(layer.join("bin/busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
    for applet in ["sh", "ls", "cat", "id", "mount"] {
        let target = ["bin", "sbin", "usr/bin", "usr/sbin"]
            .iter()
            .find_map(|d| std::fs::read_link(layer.join(d).join(applet)).ok())
            .unwrap_or_else(|| panic!("applet {applet} missing"));
        assert!(
            target.to_string_lossy().ends_with("busybox"),
            "{applet} -> {target:?}"
        );
    }
    let passwd = std::fs::read_to_string(layer.join("etc/passwd")).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("root:x:0:0:")));
    assert!(passwd
        .lines()
        .any(|l| l.starts_with("nobody:x:65534:65534:")));
    assert!(passwd
        .lines()
        .any(|l| l.starts_with("user:x:1000:1000:") && l.contains(":/home/user:")));
    let group = std::fs::read_to_string(layer.join("etc/group")).unwrap();
    assert!(group.lines().any(|l| l.starts_with("user:x:1000:")));
    let meta = |p: &str| std::fs::metadata(layer.join(p)).unwrap();
    assert_eq!(meta("tmp").mode() & 0o7777, 0o1777);
    assert_eq!(
        (meta("home/user").uid(), meta("home/user").gid()),
        (1000, 1000)
    );
    assert!(meta("root").is_dir());

    // Idempotent: a second run changes nothing.
    let again = build();
    assert!(
        again.contains("up to date") || again.contains("already present"),
        "{again}"
    );
    assert_eq!(inspect(&root, "hull/busybox:latest")["id"], info["id"]);
}
