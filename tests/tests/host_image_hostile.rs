//! Hostile archives: each crafted to escape the layer, lie about its content, or exhaust
//! resources. Each import must fail with an error naming the problem, write nothing
//! outside the store (a sentinel directory next to it stays as it was), and leave no
//! blob, layer, index entry or temp file behind.

mod image_common;

use std::path::{Path, PathBuf};

use hull_tests::TestRoot;
use image_common::*;
use serde_json::json;

/// A state root plus a sentinel directory next to the store holding one file.
struct Scene {
    root: TestRoot,
    sentinel: PathBuf,
    work: tempfile::TempDir,
}

impl Scene {
    fn new() -> Self {
        assert!(
            hull_tests::is_root(),
            "host image tests run as root (tier 2)"
        );
        let root = TestRoot::new();
        let sentinel = root.path().join("sentinel");
        std::fs::create_dir(&sentinel).unwrap();
        std::fs::write(sentinel.join("secret"), b"untouched").unwrap();
        Scene {
            root,
            sentinel,
            work: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// Imports `path` with extra args; asserts failure and returns stderr.
    fn import_fails(&self, path: &Path, extra: &[&str], envs: &[(&str, &str)]) -> String {
        let mut cmd = self.root.hull(["image", "import"]);
        cmd.arg(path).args(extra);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "hostile import of {} succeeded:\n{stderr}",
            path.display()
        );
        self.assert_untouched();
        stderr
    }

    fn rootfs_tar_fails(&self, entries: &[RawEntry]) -> String {
        let tar = self.path("evil.tar");
        std::fs::write(&tar, raw_tar(entries)).unwrap();
        self.import_fails(&tar, &["--rootfs", "--tag", "evil"], &[])
    }

    /// Nothing outside the store changed; nothing of the failed import remains.
    fn assert_untouched(&self) {
        assert_eq!(
            tree(&self.sentinel),
            vec![PathBuf::from("secret")],
            "something was written next to the store"
        );
        assert_eq!(
            std::fs::read(self.sentinel.join("secret")).unwrap(),
            b"untouched"
        );
        let meta = std::fs::metadata(self.sentinel.join("secret")).unwrap();
        assert_eq!(
            std::os::unix::fs::MetadataExt::nlink(&meta),
            1,
            "secret got hardlinked"
        );
        let images = self.root.path().join("images");
        for sub in ["tmp", "blobs/sha256", "layers/sha256"] {
            assert_eq!(
                tree(&images.join(sub)),
                Vec::<PathBuf>::new(),
                "failed import left something in {sub}"
            );
        }
        let ls = self.root.ok(["image", "ls", "--json"]);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&ls).unwrap(),
            json!([])
        );
    }

    fn sentinel_str(&self) -> String {
        self.sentinel.display().to_string()
    }
}

fn assert_mentions(stderr: &str, needles: &[&str]) {
    for n in needles {
        assert!(
            stderr.contains(n),
            "error does not mention {n:?}:\n{stderr}"
        );
    }
}

#[test]
fn dotdot_path_is_refused() {
    let s = Scene::new();
    // From the unpack dir (images/tmp/import-N/layer-1) four levels up is the state root.
    let err = s.rootfs_tar_fails(&[RawEntry::file("../../../../sentinel/pwned", b"x")]);
    assert_mentions(&err, &["../../../../sentinel/pwned", "'..'"]);
}

#[test]
fn absolute_path_is_refused() {
    let s = Scene::new();
    let name = format!("{}/pwned", s.sentinel_str());
    let err = s.rootfs_tar_fails(&[RawEntry::file(&name, b"x")]);
    assert_mentions(&err, &[&name, "absolute path"]);
}

#[test]
fn write_through_absolute_symlink_is_refused() {
    let s = Scene::new();
    let err = s.rootfs_tar_fails(&[
        RawEntry::symlink("evil", &s.sentinel_str()),
        RawEntry::file("evil/pwned", b"x"),
    ]);
    assert_mentions(&err, &["evil/pwned", "symlink"]);
}

#[test]
fn write_through_relative_symlink_is_refused() {
    let s = Scene::new();
    let err = s.rootfs_tar_fails(&[
        RawEntry::symlink("evil", "../../../../sentinel"),
        RawEntry::file("evil/pwned", b"x"),
    ]);
    assert_mentions(&err, &["evil/pwned", "symlink"]);
}

#[test]
fn symlinked_parent_created_earlier_is_not_followed() {
    let s = Scene::new();
    // A directory, then a symlink inside it, then a deep path through the symlink.
    let err = s.rootfs_tar_fails(&[
        RawEntry::dir("a/"),
        RawEntry::symlink("a/b", &s.sentinel_str()),
        RawEntry::dir("a/b/c/"),
        RawEntry::file("a/b/c/pwned", b"x"),
    ]);
    assert_mentions(&err, &["a/b/c", "symlink"]);
}

#[test]
fn symlink_replacing_a_directory_is_refused() {
    let s = Scene::new();
    // The later symlink would redirect a/ if duplicates were applied "last wins".
    let err = s.rootfs_tar_fails(&[
        RawEntry::dir("a/"),
        RawEntry::symlink("a", &s.sentinel_str()),
        RawEntry::file("a/pwned", b"x"),
    ]);
    assert_mentions(&err, &["\"a\"", "duplicate"]);
}

#[test]
fn hardlink_to_outside_file_is_refused() {
    let s = Scene::new();
    let target = format!("{}/secret", s.sentinel_str());
    let err = s.rootfs_tar_fails(&[RawEntry::hardlink("h", &target)]);
    assert_mentions(&err, &["\"h\"", "absolute path"]);

    let s = Scene::new();
    let err = s.rootfs_tar_fails(&[RawEntry::hardlink("h", "../../../../sentinel/secret")]);
    assert_mentions(&err, &["\"h\"", "'..'"]);
}

#[test]
fn hardlink_through_symlinked_parent_is_refused() {
    let s = Scene::new();
    let err = s.rootfs_tar_fails(&[
        RawEntry::symlink("evil", &s.sentinel_str()),
        RawEntry::hardlink("h", "evil/secret"),
    ]);
    assert_mentions(&err, &["\"h\"", "not an earlier entry of this layer"]);
}

#[test]
fn hardlink_then_write_cannot_modify_target_outside() {
    let s = Scene::new();
    // Even a hardlink to an in-layer file cannot be overwritten by a later entry.
    let err = s.rootfs_tar_fails(&[
        RawEntry::file("f", b"one"),
        RawEntry::hardlink("h", "f"),
        RawEntry::file("h", b"two"),
    ]);
    assert_mentions(&err, &["\"h\"", "duplicate"]);
}

#[test]
fn whiteouts_pointing_outside_are_refused() {
    let s = Scene::new();
    let err = s.rootfs_tar_fails(&[RawEntry::file("../../../../sentinel/.wh.secret", b"")]);
    assert_mentions(&err, &["'..'"]);

    let s = Scene::new();
    let err = s.rootfs_tar_fails(&[
        RawEntry::symlink("evil", &s.sentinel_str()),
        RawEntry::file("evil/.wh.secret", b""),
    ]);
    assert_mentions(&err, &["evil/.wh.secret", "symlink"]);

    let s = Scene::new();
    let err = s.rootfs_tar_fails(&[RawEntry::file("a/.wh...", b"")]);
    assert_mentions(&err, &["a/.wh...", "whiteout of an invalid name"]);

    let s = Scene::new();
    let err = s.rootfs_tar_fails(&[
        RawEntry::symlink("evil", &s.sentinel_str()),
        RawEntry::file("evil/.wh..wh..opq", b""),
    ]);
    assert_mentions(&err, &["evil/.wh..wh..opq", "symlink"]);
}

#[test]
fn duplicate_file_entries_are_refused() {
    let s = Scene::new();
    let err = s.rootfs_tar_fails(&[RawEntry::file("f", b"one"), RawEntry::file("./f", b"two")]);
    assert_mentions(&err, &["duplicate archive entry", "f"]);
}

#[test]
fn absurd_entry_size_is_refused_before_reading() {
    let s = Scene::new();
    let mut huge = RawEntry::file("huge", b"");
    huge.size = 1 << 40; // 1 TiB claimed, nothing behind it
    let err = s.rootfs_tar_fails(&[huge]);
    assert_mentions(&err, &["\"huge\"", "exceeds the limit"]);
}

#[test]
fn decompression_bomb_is_bounded() {
    let s = Scene::new();
    // 64 MiB of zeros compresses to ~64 KiB; the layer limit is set to 8 MiB.
    let tar = raw_tar(&[RawEntry::file("zeros", &vec![0u8; 64 << 20])]);
    let bomb = s.path("bomb.tar.gz");
    std::fs::write(&bomb, gzip(&tar)).unwrap();
    let err = s.import_fails(
        &bomb,
        &["--rootfs", "--tag", "bomb"],
        &[("HULL_IMAGE_MAX_LAYER_BYTES", "8388608")],
    );
    assert_mentions(
        &err,
        &["uncompressed layer exceeds the limit of 8388608 bytes"],
    );

    // The per-entry bound applies to the bytes actually read as well.
    let s = Scene::new();
    let err = s.import_fails(
        &bomb,
        &["--rootfs", "--tag", "bomb"],
        &[("HULL_IMAGE_MAX_ENTRY_BYTES", "1048576")],
    );
    assert_mentions(&err, &["\"zeros\"", "exceeds the limit of 1048576 bytes"]);
}

fn good_layer() -> Layer {
    Layer::gzip(raw_tar(&[
        RawEntry::dir("etc/"),
        RawEntry::file("etc/hello", b"hello\n"),
    ]))
}

#[test]
fn layer_digest_mismatch_is_refused() {
    let s = Scene::new();
    let dir = s.path("layout");
    let layers = [good_layer()];
    let config = config_for(&layers, &["sh"]);
    let w = write_oci_layout(&dir, &layers, &config, None, |_| {});
    // Same size, still a valid gzip of the same tar, but other bytes: change the gzip
    // header's mtime field. Only the blob digest can tell.
    let blob_path = dir.join("blobs/sha256").join(&w.layer_digests[0][7..]);
    let mut blob = std::fs::read(&blob_path).unwrap();
    blob[4] ^= 0xff;
    std::fs::write(&blob_path, &blob).unwrap();
    let err = s.import_fails(&dir, &["--tag", "t"], &[]);
    assert_mentions(
        &err,
        &["digest mismatch for layer blob", &w.layer_digests[0]],
    );
}

#[test]
fn layer_size_mismatch_is_refused() {
    let s = Scene::new();
    let dir = s.path("layout");
    let layers = [good_layer()];
    let config = config_for(&layers, &["sh"]);
    write_oci_layout(&dir, &layers, &config, None, |m| {
        let size = m["layers"][0]["size"].as_u64().unwrap();
        m["layers"][0]["size"] = json!(size - 7);
    });
    let err = s.import_fails(&dir, &["--tag", "t"], &[]);
    assert_mentions(&err, &["size mismatch for layer blob"]);
}

#[test]
fn diff_id_mismatch_is_refused() {
    let s = Scene::new();
    let dir = s.path("layout");
    let layers = [good_layer()];
    let mut config = config_for(&layers, &["sh"]);
    config["rootfs"]["diff_ids"][0] = json!(format!("sha256:{}", sha256sum(b"something else")));
    write_oci_layout(&dir, &layers, &config, None, |_| {});
    let err = s.import_fails(&dir, &["--tag", "t"], &[]);
    assert_mentions(&err, &["digest mismatch for uncompressed layer (diff_id"]);
}

#[test]
fn config_digest_mismatch_is_refused() {
    let s = Scene::new();
    let dir = s.path("layout");
    let layers = [good_layer()];
    let config = config_for(&layers, &["sh"]);
    let w = write_oci_layout(&dir, &layers, &config, None, |_| {});
    let path = dir.join("blobs/sha256").join(&w.config_digest[7..]);
    let mut bytes = std::fs::read(&path).unwrap();
    let i = bytes.iter().position(|&b| b == b's').unwrap(); // "sh" -> "th"...
    bytes[i] = b't';
    std::fs::write(&path, &bytes).unwrap();
    let err = s.import_fails(&dir, &["--tag", "t"], &[]);
    assert_mentions(
        &err,
        &["digest mismatch for image config", &w.config_digest],
    );
}

#[test]
fn oversized_json_is_refused_before_parsing() {
    // A manifest descriptor claiming 100 MiB.
    let s = Scene::new();
    let dir = s.path("layout");
    let layers = [good_layer()];
    let config = config_for(&layers, &["sh"]);
    write_oci_layout(&dir, &layers, &config, None, |_| {});
    let index_path = dir.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    index["manifests"][0]["size"] = json!(100u64 << 20);
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let err = s.import_fails(&dir, &["--tag", "t"], &[]);
    assert_mentions(&err, &["manifest", "exceeds the limit of 4194304 bytes"]);

    // An index.json of 5 MiB (whitespace is valid JSON, so only the bound stops it).
    let s = Scene::new();
    let dir = s.path("layout");
    write_oci_layout(&dir, &layers, &config, None, |_| {});
    let mut big = vec![b' '; 5 << 20];
    big.extend_from_slice(&std::fs::read(dir.join("index.json")).unwrap());
    std::fs::write(dir.join("index.json"), big).unwrap();
    let err = s.import_fails(&dir, &["--tag", "t"], &[]);
    assert_mentions(&err, &["index.json exceeds the limit of 4194304 bytes"]);
}

#[test]
fn docker_archive_paths_outside_are_refused() {
    let s = Scene::new();
    let dir = s.path("docker");
    std::fs::create_dir_all(&dir).unwrap();
    let tar = raw_tar(&[RawEntry::file("hello", b"hi")]);
    std::fs::write(dir.join("layer.tar"), &tar).unwrap();
    let config = json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256sum(&tar))]}});
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    let manifest = json!([{"Config": "config.json", "RepoTags": ["evil:1"],
                           "Layers": ["../../../../sentinel/secret"]}]);
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let archive = s.path("docker.tar");
    tar_dir(&dir, &archive);
    let err = s.import_fails(&archive, &[], &[]);
    assert_mentions(&err, &["../../../../sentinel/secret", "'..'"]);
}

#[test]
fn failed_import_keeps_existing_images_intact() {
    let s = Scene::new();
    let good = s.path("good.tar");
    std::fs::write(&good, raw_tar(&[RawEntry::file("ok", b"ok")])).unwrap();
    s.root.ok(["image", "import", "--rootfs", "--tag", "good"]
        .iter()
        .map(|a| a.to_string())
        .chain([good.display().to_string()]));
    let images = s.root.path().join("images");
    let before = (tree(&images.join("blobs")), tree(&images.join("layers")));

    let evil = s.path("evil.tar");
    std::fs::write(
        &evil,
        raw_tar(&[
            RawEntry::file("fine", b"1"),
            RawEntry::file("../../x", b"2"),
        ]),
    )
    .unwrap();
    let out = s
        .root
        .hull(["image", "import", "--rootfs", "--tag", "good"])
        .arg(&evil)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        before,
        (tree(&images.join("blobs")), tree(&images.join("layers")))
    );
    assert_eq!(tree(&images.join("tmp")), Vec::<PathBuf>::new());
    let ls: serde_json::Value =
        serde_json::from_str(&s.root.ok(["image", "ls", "--json"])).unwrap();
    assert_eq!(ls.as_array().unwrap().len(), 1);
    assert_eq!(ls[0]["name"], "library/good:latest");
    assert_eq!(tree(&s.sentinel), vec![PathBuf::from("secret")]);
}
