//! `hull pull`, `login`, `run --pull` against real registries (Debian's docker-registry,
//! distribution 2.8) on 127.0.0.1: TLS with a CA made here and htpasswd basic auth; token
//! auth with a token issuer made here; images pushed by skopeo; and the faults a
//! registry can throw at a client (tampered blob, killed mid-download, wrong password,
//! unknown tag, a manifest over the size bound, redirects to another host). Each check
//! verifies that a failed pull left nothing in the store.
//!
//! Registries are shared between the checks of one test to keep the tier short.

mod image_common;
mod process_common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use hull_tests::registry::{Auth, FaultProxy, Faults, Pki, RegistryServer, TokenIssuer};
use hull_tests::TestRoot;
use image_common::*;
use serde_json::{json, Value};

const USER: &str = "tester";
const PASSWORD: &str = "s3cret-pass";

fn require_root() {
    assert!(hull_tests::is_root(), "registry tests run as root (tier 2)");
    require_tool("skopeo");
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(root: &TestRoot, args: &[&str]) -> String {
    root.ok(args)
}

/// Runs hull expecting failure; returns stderr.
fn fails(root: &TestRoot, args: &[&str]) -> String {
    let out = root.run(args);
    assert!(
        !out.status.success(),
        "hull {args:?} succeeded:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr(&out)
}

/// Nothing half-stored: no work dirs, and only the layers and blobs of the images listed.
fn assert_store_clean(root: &TestRoot, images: usize) {
    let store = root.path().join("images");
    let count = |sub: &str| {
        std::fs::read_dir(store.join(sub))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(count("tmp"), 0, "work dirs left in images/tmp");
    let ls: Value = serde_json::from_str(&ok(root, &["image", "ls", "--json"])).unwrap();
    assert_eq!(ls.as_array().unwrap().len(), images, "images: {ls}");
    if images == 0 {
        assert_eq!(count("layers/sha256"), 0, "layers left behind");
        assert_eq!(count("blobs/sha256"), 0, "blobs left behind");
    }
}

/// A busybox layer (gzip) and a marker layer (plain tar) with `/etc/marker`.
fn layers(marker: &str, scratch: &Path) -> Vec<Layer> {
    let rootfs = scratch.join(format!("rootfs-{marker}"));
    process_common::build_rootfs(&rootfs, &[]);
    let tar_path = scratch.join(format!("busybox-{marker}.tar"));
    tar_dir(&rootfs, &tar_path);
    let busybox = Layer::gzip(std::fs::read(&tar_path).unwrap());
    let marker_tar = raw_tar(&[
        RawEntry::dir("etc/"),
        RawEntry::file("etc/marker", format!("{marker}\n").as_bytes()),
    ]);
    vec![busybox, Layer::plain(marker_tar)]
}

/// An OCI layout with one image.
fn layout(dir: &Path, layers: &[Layer]) -> Written {
    let config = config_for(layers, &["sh"]);
    write_oci_layout(dir, layers, &config, Some("1"), |_| {})
}

/// `skopeo copy` with the registry's CA and credentials.
fn skopeo_copy(src: &str, dest: &str, certs: Option<&Path>, creds: Option<&str>, all: bool) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy", "copy", "-q"]);
    if all {
        cmd.arg("--all");
    }
    match certs {
        Some(dir) => {
            cmd.arg("--dest-cert-dir").arg(dir);
        }
        None => {
            cmd.arg("--dest-tls-verify=false");
        }
    }
    if let Some(c) = creds {
        cmd.args(["--dest-creds", c]);
    }
    cmd.args([src, dest]);
    let out = cmd.output().expect("spawn skopeo");
    assert!(
        out.status.success(),
        "skopeo copy {src} {dest}: {}",
        stderr(&out)
    );
}

/// The digest and body of the manifest the registry serves for `image` (as skopeo reads
/// it; skopeo compresses plain layers when it pushes, so these differ from the layout's).
fn served(image: &str, tls_verify: bool, certs: Option<&Path>, creds: &str) -> (String, Value) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--raw", "--creds", creds]);
    if let Some(dir) = certs {
        cmd.arg("--cert-dir").arg(dir);
    }
    cmd.arg(format!("--tls-verify={tls_verify}"));
    let out = cmd.arg(format!("docker://{image}")).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect {image}: {}",
        stderr(&out)
    );
    (
        format!("sha256:{}", sha256sum(&out.stdout)),
        serde_json::from_slice(&out.stdout).unwrap(),
    )
}

fn login(root: &TestRoot, registry: &str, password: &str) -> Output {
    let mut child = root
        .hull(["login", "-u", USER, "--password-stdin", registry])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap()
}

fn trust(root: &TestRoot, registry: &str, pki: &Pki) {
    let dir = root.path().join("certs.d").join(registry);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&pki.ca_cert, dir.join("ca.crt")).unwrap();
}

/// The content of `path` in the top layer that has it.
fn file_in_image(root: &TestRoot, image: &str, path: &str) -> String {
    let info = inspect(root, image);
    for layer in info["layers"].as_array().unwrap().iter().rev() {
        let p = PathBuf::from(layer["path"].as_str().unwrap()).join(path);
        if let Ok(s) = std::fs::read_to_string(p) {
            return s;
        }
    }
    panic!("{path} not in {image}")
}

#[test]
fn tls_and_basic_auth_pull_run_and_faults() {
    require_root();
    let scratch = tempfile::tempdir().unwrap();
    let pki = Pki::new(&scratch.path().join("pki"));
    let server = RegistryServer::start(
        &scratch.path().join("registry"),
        Some(&pki),
        &Auth::Basic {
            user: USER.into(),
            password: PASSWORD.into(),
        },
    );
    let reg = server.addr();
    let certs = scratch.path().join("pki-client");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&pki.ca_cert, certs.join("ca.crt")).unwrap();
    let creds = format!("{USER}:{PASSWORD}");

    // Pushed by skopeo: a two-layer image, and an index of two platforms.
    let amd = layers("amd64", scratch.path());
    let single = layout(&scratch.path().join("single"), &amd);
    skopeo_copy(
        &format!("oci:{}:1", scratch.path().join("single").display()),
        &format!("docker://{reg}/test/bb:1"),
        Some(&certs),
        Some(&creds),
        false,
    );
    let multi_dir = scratch.path().join("multi");
    let arm = layers("arm64", scratch.path());
    let m_amd = layout(&multi_dir, &amd);
    let mut arm_config = config_for(&arm, &["sh"]);
    arm_config["architecture"] = json!("arm64");
    arm_config["variant"] = json!("v8");
    let m_arm = write_oci_layout(&multi_dir, &arm, &arm_config, None, |_| {});
    let size = |d: &str| {
        std::fs::metadata(
            multi_dir
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap()
        .len()
    };
    let manifest = "application/vnd.oci.image.manifest.v1+json";
    let index = json!({"schemaVersion": 2, "manifests": [
        {"mediaType": manifest, "digest": m_arm.manifest_digest, "size": size(&m_arm.manifest_digest),
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"mediaType": manifest, "digest": m_amd.manifest_digest, "size": size(&m_amd.manifest_digest),
         "platform": {"os": "linux", "architecture": "amd64"}},
    ]});
    let index_bytes = serde_json::to_vec(&index).unwrap();
    let index_hex = sha256sum(&index_bytes);
    std::fs::write(
        multi_dir.join("blobs/sha256").join(&index_hex),
        &index_bytes,
    )
    .unwrap();
    let top = json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": format!("sha256:{index_hex}"), "size": index_bytes.len(),
        "annotations": {"org.opencontainers.image.ref.name": "1"}}]});
    std::fs::write(
        multi_dir.join("index.json"),
        serde_json::to_vec(&top).unwrap(),
    )
    .unwrap();
    skopeo_copy(
        &format!("oci:{}:1", multi_dir.display()),
        &format!("docker://{reg}/test/multi:1"),
        Some(&certs),
        Some(&creds),
        true,
    );

    let root = TestRoot::new();
    let image = format!("{reg}/test/bb:1");

    // A CA hull does not trust yet: a TLS error, nothing stored.
    let err = fails(&root, &["pull", &image]);
    assert!(
        err.contains("UnknownIssuer") || err.contains("certificate"),
        "{err}"
    );
    assert_store_clean(&root, 0);
    trust(&root, &reg, &pki);

    // No credentials: the registry's challenge says so.
    let err = fails(&root, &["pull", &image]);
    assert!(
        err.contains("authentication required: run `hull login"),
        "{err}"
    );
    assert_store_clean(&root, 0);

    // A wrong password is refused at login and not saved.
    let out = login(&root, &reg, "wrong");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("wrong user name or password"),
        "{}",
        stderr(&out)
    );
    assert!(!root.path().join("auth.json").exists());
    let out = login(&root, &reg, PASSWORD);
    assert!(out.status.success(), "{}", stderr(&out));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(root.path().join("auth.json"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // The pull: every digest as skopeo pushed them, and the image runs.
    ok(&root, &["pull", &image]);
    let info = inspect(&root, &image);
    assert_eq!(info["name"], image.as_str());
    assert_eq!(info["id"], single.config_digest.as_str());
    let (served_digest, served_manifest) = served(&image, true, Some(&certs), &creds);
    assert_eq!(info["manifestDigest"], served_digest.as_str());
    let layer_digests = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    };
    let served_layers = layer_digests(&served_manifest["layers"]);
    assert_eq!(layer_digests(&info["layers"]), served_layers);
    let out = ok(&root, &["run", "--rm", &image, "cat", "/etc/marker"]);
    assert_eq!(out, "amd64\n");
    // Again: nothing downloaded.
    let out = root.run(["pull", &image]);
    assert!(stderr(&out).contains("is up to date"), "{}", stderr(&out));

    // Unknown tag.
    let err = fails(&root, &["pull", &format!("{reg}/test/bb:nope")]);
    assert!(
        err.contains("not found in the registry") && err.contains("MANIFEST_UNKNOWN"),
        "{err}"
    );
    assert_store_clean(&root, 1);

    // A manifest over the bound (tightened to 200 bytes for this pull).
    let fresh = TestRoot::new();
    trust(&fresh, &reg, &pki);
    assert!(login(&fresh, &reg, PASSWORD).status.success());
    let out = fresh
        .hull(["pull", &image])
        .env("HULL_IMAGE_MAX_JSON_BYTES", "200")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("exceeds the limit of 200 bytes"),
        "{}",
        stderr(&out)
    );
    assert_store_clean(&fresh, 0);

    // The index: this host's platform by default, another with --platform.
    let multi = format!("{reg}/test/multi:1");
    ok(&fresh, &["pull", &multi]);
    assert_eq!(file_in_image(&fresh, &multi, "etc/marker"), "amd64\n");
    let (_, served_index) = served(&multi, true, Some(&certs), &creds);
    let amd_entry = served_index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "amd64")
        .unwrap();
    assert_eq!(
        inspect(&fresh, &multi)["manifestDigest"],
        amd_entry["digest"]
    );
    assert_eq!(inspect(&fresh, &multi)["id"], m_amd.config_digest.as_str());
    ok(&fresh, &["pull", "--platform", "linux/arm64", &multi]);
    assert_eq!(file_in_image(&fresh, &multi, "etc/marker"), "arm64\n");
    assert_eq!(inspect(&fresh, &multi)["id"], m_arm.config_digest.as_str());
    let err = fails(&fresh, &["pull", "--platform", "linux/s390x", &multi]);
    assert!(
        err.contains("no image for linux/s390x in the index (it has linux/arm64/v8, linux/amd64)"),
        "{err}"
    );

    // run --pull: never fails on a missing image, missing pulls it, always re-checks.
    let err = fails(&fresh, &["run", "--rm", "--pull", "never", &image, "true"]);
    assert!(err.contains("no such image"), "{err}");
    let out = ok(&fresh, &["run", "--rm", &image, "cat", "/etc/marker"]);
    assert_eq!(out, "amd64\n");
    let out = fresh.run(["run", "--rm", "--pull", "always", &image, "true"]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("is up to date"), "{}", stderr(&out));

    // A tampered blob on the registry's disk (same size): a digest error, nothing stored.
    let marker_blob = server.blob_file(&served_layers[1]);
    let mut bytes = std::fs::read(&marker_blob).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    std::fs::write(&marker_blob, &bytes).unwrap();
    let tampered = TestRoot::new();
    trust(&tampered, &reg, &pki);
    assert!(login(&tampered, &reg, PASSWORD).status.success());
    let err = fails(&tampered, &["pull", &image]);
    assert!(
        err.contains("digest mismatch for layer blob") && err.contains(&served_layers[1]),
        "{err}"
    );
    assert_store_clean(&tampered, 0);
}

#[test]
fn token_auth_against_the_real_registry() {
    require_root();
    let scratch = tempfile::tempdir().unwrap();
    let issuer = TokenIssuer::start(&scratch.path().join("issuer"), USER, PASSWORD);
    let server = RegistryServer::start(
        &scratch.path().join("registry"),
        None,
        &Auth::Token {
            realm: issuer.realm(),
            cert: TokenIssuer::cert_path(&scratch.path().join("issuer")),
        },
    );
    let reg = server.addr();
    let written = layout(
        &scratch.path().join("img"),
        &layers("token", scratch.path()),
    );
    skopeo_copy(
        &format!("oci:{}:1", scratch.path().join("img").display()),
        &format!("docker://{reg}/team/app:v1"),
        None,
        Some(&format!("{USER}:{PASSWORD}")),
        false,
    );
    let root = TestRoot::new();
    let image = format!("{reg}/team/app:v1");
    let err = fails(&root, &["pull", &image]);
    assert!(err.contains("wants credentials: run `hull login"), "{err}");
    assert_store_clean(&root, 0);
    let out = login(&root, &reg, "wrong");
    assert!(
        stderr(&out).contains("refused the credentials"),
        "{}",
        stderr(&out)
    );
    assert!(login(&root, &reg, PASSWORD).status.success());
    ok(&root, &["pull", &image]);
    let info = inspect(&root, &image);
    assert_eq!(info["id"], written.config_digest.as_str());
    assert_eq!(
        info["manifestDigest"],
        served(&image, false, None, &format!("{USER}:{PASSWORD}"))
            .0
            .as_str()
    );
    assert_eq!(
        ok(&root, &["run", "--rm", &image, "cat", "/etc/marker"]),
        "token\n"
    );
    // The token was asked for this repository's pull scope, with credentials.
    let seen = issuer.requests.lock().unwrap().clone();
    assert!(
        seen.iter().any(|r| r.contains("scope=repository%3Ateam%2Fapp%3Apull") && r.ends_with("auth=true")),
        "{seen:?}"
    );
    // Logged out: back to needing credentials.
    ok(&root, &["logout", &reg]);
    let fresh = TestRoot::new();
    let err = fails(&fresh, &["pull", &image]);
    assert!(err.contains("run `hull login"), "{err}");
}

#[test]
fn resume_after_the_registry_dies_and_redirect_policy() {
    require_root();
    let scratch = tempfile::tempdir().unwrap();
    let storage = scratch.path().join("storage");
    let mut server = RegistryServer::start_with_storage(
        &scratch.path().join("registry"),
        &storage,
        None,
        &Auth::Basic {
            user: USER.into(),
            password: PASSWORD.into(),
        },
    );
    // The same storage without auth: what a storage host behind a redirect looks like.
    let open_twin = RegistryServer::start_with_storage(
        &scratch.path().join("twin"),
        &storage,
        None,
        &Auth::None,
    );

    // A 48 MiB incompressible layer: more than the socket buffers hold, so killing the
    // registry really cuts the download.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let noise: Vec<u8> = (0..48 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let big_tar = raw_tar(&[RawEntry::file("big", &noise)]);
    let mut img_layers = layers("big", scratch.path());
    img_layers.push(Layer::plain(big_tar));
    layout(&scratch.path().join("img"), &img_layers);
    skopeo_copy(
        &format!("oci:{}:1", scratch.path().join("img").display()),
        &format!("docker://{}/test/big:1", server.addr()),
        None,
        Some(&format!("{USER}:{PASSWORD}")),
        false,
    );
    let (_, manifest) = served(
        &format!("{}/test/big:1", server.addr()),
        false,
        None,
        &format!("{USER}:{PASSWORD}"),
    );
    let big_digest = manifest["layers"][2]["digest"]
        .as_str()
        .unwrap()
        .to_string();

    // Killed mid-download and restarted: the pull resumes with a Range request.
    let proxy = FaultProxy::start(
        server.port,
        Faults {
            stall_blob: Some((big_digest.clone(), 4 << 20)),
            ..Default::default()
        },
    );
    let root = TestRoot::new();
    assert!(login(&root, &proxy.addr(), PASSWORD).status.success());
    let image = format!("{}/test/big:1", proxy.addr());
    let pull = root
        .hull(["pull", &image])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    proxy.wait_stalled();
    server.kill();
    server.restart();
    proxy.release();
    let out = pull.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "pull after the restart: {}",
        stderr(&out)
    );
    let seen = proxy.seen();
    let ranged: Vec<&String> = seen
        .iter()
        .filter(|r| r.contains(&big_digest) && r.contains("range=bytes="))
        .collect();
    assert!(!ranged.is_empty(), "no Range request: {seen:?}");
    let big_path = PathBuf::from(
        inspect(&root, &image)["layers"][2]["path"]
            .as_str()
            .unwrap(),
    )
    .join("big");
    assert_eq!(sha256sum_file(&big_path), sha256sum(&noise));
    assert_store_clean(&root, 1);
    drop(proxy);

    // A manifest redirected to another host (localhost is not 127.0.0.1): refused.
    let manifests_away = FaultProxy::start(
        server.port,
        Faults {
            redirect_manifests_to: Some(format!("http://localhost:{}", open_twin.port)),
            ..Default::default()
        },
    );
    let root = TestRoot::new();
    assert!(login(&root, &manifests_away.addr(), PASSWORD)
        .status
        .success());
    let err = fails(
        &root,
        &["pull", &format!("{}/test/big:1", manifests_away.addr())],
    );
    assert!(
        err.contains("refusing redirect") && err.contains("only blob downloads may be redirected"),
        "{err}"
    );
    assert_store_clean(&root, 0);

    // Mirrors: a dead one is skipped, the next serves the image (no credentials there).
    let mirrored = TestRoot::new();
    std::fs::write(
        mirrored.path().join("registries.json"),
        format!(
            r#"{{"mirrors": {{"{}": ["127.0.0.1:1", "localhost:{}"]}}}}"#,
            server.addr(),
            open_twin.port
        ),
    )
    .unwrap();
    let out = mirrored.run(["pull", &format!("{}/test/big:1", server.addr())]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("via localhost:{}", open_twin.port)),
        "{}",
        stderr(&out)
    );

    // Blobs redirected to storage on another host: followed, without the credentials.
    let storage_host = FaultProxy::start(open_twin.port, Faults::default());
    let blobs_away = FaultProxy::start(
        server.port,
        Faults {
            redirect_blobs_to: Some(format!("http://localhost:{}", storage_host.port)),
            ..Default::default()
        },
    );
    assert!(login(&root, &blobs_away.addr(), PASSWORD).status.success());
    let image = format!("{}/test/big:1", blobs_away.addr());
    ok(&root, &["pull", &image]);
    assert_eq!(
        ok(&root, &["run", "--rm", &image, "cat", "/etc/marker"]),
        "big\n"
    );
    let at_storage = storage_host.seen();
    assert!(
        at_storage
            .iter()
            .filter(|r| r.contains("/blobs/sha256:"))
            .count()
            >= 3,
        "{at_storage:?}"
    );
    assert!(
        at_storage.iter().all(|r| r.ends_with("auth=false")),
        "credentials sent to another host: {at_storage:?}"
    );
    assert!(
        blobs_away
            .seen()
            .iter()
            .any(|r| r.contains("/manifests/") && r.ends_with("auth=true")),
        "{:?}",
        blobs_away.seen()
    );
}

/// podman with its own store in `dir` (vfs, no systemd, no network, runc: crun refuses
/// this host's hybrid cgroup layout; ulimits at or below this host's hard limits).
fn podman(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("podman")
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("runroot"))
        .args([
            "--storage-driver",
            "vfs",
            "--events-backend",
            "none",
            "--cgroup-manager",
            "cgroupfs",
            "--runtime",
            "runc",
        ])
        .args(args)
        .output()
        .expect("podman missing: apt-get install podman");
    assert!(out.status.success(), "podman {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn round_trips_with_podman_and_skopeo() {
    require_root();
    require_tool("podman");
    let scratch = tempfile::tempdir().unwrap();
    let server = RegistryServer::start(&scratch.path().join("registry"), None, &Auth::None);
    let reg = server.addr();
    let pm = scratch.path().join("podman");

    // Three layers: busybox; a marker with a hardlink to it; a layer deleting the marker
    // (an OCI whiteout) and adding a file in a new directory.
    let mut img = layers("podman", scratch.path());
    img[1] = Layer::plain(raw_tar(&[
        RawEntry::dir("etc/"),
        RawEntry::file("etc/marker", b"podman\n"),
        RawEntry::hardlink("etc/hl", "etc/marker"),
    ]));
    img.push(Layer::gzip(raw_tar(&[
        RawEntry::file("etc/.wh.marker", b""),
        RawEntry::dir("opt/"),
        RawEntry::file("opt/second", b"second\n"),
    ])));
    // podman names an oci: image after its path, which must be lower-case.
    let lower = tempfile::Builder::new()
        .prefix(&format!("hullreg{}", std::process::id()))
        .rand_bytes(0)
        .tempdir()
        .unwrap();
    layout(&lower.path().join("img"), &img);

    // podman pushes, hull pulls and runs.
    podman(
        &pm,
        &[
            "pull",
            "-q",
            &format!("oci:{}:1", lower.path().join("img").display()),
        ],
    );
    let id = podman(&pm, &["images", "-q"])
        .lines()
        .next()
        .unwrap()
        .to_string();
    let from_podman = format!("{reg}/pm/app:1");
    podman(&pm, &["tag", &id, &from_podman]);
    podman(&pm, &["push", "-q", "--tls-verify=false", &from_podman]);
    let root = TestRoot::new();
    ok(&root, &["pull", &from_podman]);
    let script = "cat /etc/hl /opt/second; test -e /etc/marker || echo gone";
    assert_eq!(
        ok(&root, &["run", "--rm", &from_podman, "sh", "-c", script]),
        "podman\nsecond\ngone\n"
    );

    // hull pushes (monolithic and chunked uploads), skopeo and podman pull, podman runs.
    let from_hull = format!("{reg}/hull/app:1");
    let out = root
        .hull(["push", &from_podman, &from_hull])
        .env("HULL_PUSH_CHUNK_BYTES", "262144")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("3 layer(s) uploaded"),
        "{}",
        stderr(&out)
    );
    let copied = scratch.path().join("copied");
    Command::new("skopeo")
        .args(["--insecure-policy", "copy", "-q", "--src-tls-verify=false"])
        .arg(format!("docker://{from_hull}"))
        .arg(format!("oci:{}:1", copied.display()))
        .status()
        .unwrap()
        .success()
        .then_some(())
        .expect("skopeo copy of hull's push");
    podman(&pm, &["pull", "-q", "--tls-verify=false", &from_hull]);
    let out = podman(
        &pm,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            &from_hull,
            "sh",
            "-c",
            script,
        ],
    );
    assert_eq!(out, "podman\nsecond\ngone\n");

    // Pushed again to another repository: mounted, not uploaded; to the same: nothing.
    let again = root.run(["push", &from_podman, &format!("{reg}/hull/copy:1")]);
    assert!(
        stderr(&again).contains("0 layer(s) uploaded, 0 already there, 3 mounted"),
        "{}",
        stderr(&again)
    );
    let again = root.run(["push", &from_podman, &from_hull]);
    assert!(
        stderr(&again).contains("0 layer(s) uploaded, 3 already there"),
        "{}",
        stderr(&again)
    );
    // hull pulls its own push back: same content.
    let back = TestRoot::new();
    ok(&back, &["pull", &from_hull]);
    assert_eq!(
        ok(&back, &["run", "--rm", &from_hull, "sh", "-c", script]),
        "podman\nsecond\ngone\n"
    );

    // save / load: an oci-archive back into a fresh hull store, a docker-archive into podman.
    let oci_tar = scratch.path().join("saved-oci.tar");
    let docker_tar = scratch.path().join("saved-docker.tar");
    ok(
        &root,
        &[
            "save",
            "--format",
            "oci-archive",
            "-o",
            oci_tar.to_str().unwrap(),
            &from_podman,
        ],
    );
    ok(
        &root,
        &["save", "-o", docker_tar.to_str().unwrap(), &from_podman],
    );
    let loaded = TestRoot::new();
    ok(&loaded, &["load", "-i", oci_tar.to_str().unwrap()]);
    assert_eq!(
        ok(&loaded, &["run", "--rm", &from_podman, "sh", "-c", script]),
        "podman\nsecond\ngone\n"
    );
    podman(&pm, &["rmi", "-a", "-f"]);
    podman(&pm, &["load", "-q", "-i", docker_tar.to_str().unwrap()]);
    let out = podman(
        &pm,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            &from_podman,
            "sh",
            "-c",
            script,
        ],
    );
    assert_eq!(out, "podman\nsecond\ngone\n");
    let _ = Command::new("podman")
        .arg("--root")
        .arg(pm.join("root"))
        .arg("--runroot")
        .arg(pm.join("runroot"))
        .args(["--storage-driver", "vfs", "system", "reset", "-f"])
        .output();
}
