//! Helpers for the image tests: a raw tar writer (so tests can craft archives no tar
//! library would write), OCI layout and docker-archive writers that do not use hull,
//! digests computed with `sha256sum`, compression with the `gzip`/`zstd` tools.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

/// One raw tar entry; every field is written as given.
#[derive(Clone, Debug)]
pub struct RawEntry {
    pub name: Vec<u8>,
    pub typeflag: u8,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
    /// Size written in the header (may differ from `data.len()` to lie).
    pub size: u64,
    pub data: Vec<u8>,
    pub linkname: Vec<u8>,
    pub devmajor: u32,
    pub devminor: u32,
    /// PAX records to emit before the entry (`key`, `value`).
    pub pax: Vec<(String, Vec<u8>)>,
}

impl RawEntry {
    fn new(name: &str, typeflag: u8, mode: u32) -> Self {
        RawEntry {
            name: name.as_bytes().to_vec(),
            typeflag,
            mode,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            size: 0,
            data: Vec::new(),
            linkname: Vec::new(),
            devmajor: 0,
            devminor: 0,
            pax: Vec::new(),
        }
    }

    pub fn file(name: &str, data: &[u8]) -> Self {
        let mut e = Self::new(name, b'0', 0o644);
        e.size = data.len() as u64;
        e.data = data.to_vec();
        e
    }

    pub fn dir(name: &str) -> Self {
        Self::new(name, b'5', 0o755)
    }

    pub fn symlink(name: &str, target: &str) -> Self {
        let mut e = Self::new(name, b'2', 0o777);
        e.linkname = target.as_bytes().to_vec();
        e
    }

    pub fn hardlink(name: &str, target: &str) -> Self {
        let mut e = Self::new(name, b'1', 0o644);
        e.linkname = target.as_bytes().to_vec();
        e
    }

    pub fn chardev(name: &str, major: u32, minor: u32) -> Self {
        let mut e = Self::new(name, b'3', 0o666);
        e.devmajor = major;
        e.devminor = minor;
        e
    }

    pub fn owner(mut self, uid: u32, gid: u32) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }
}

fn octal(field: &mut [u8], value: u64) {
    let s = format!("{:0width$o}", value, width = field.len() - 1);
    assert!(
        s.len() < field.len(),
        "value {value} does not fit the tar field"
    );
    field[..s.len()].copy_from_slice(s.as_bytes());
    field[s.len()] = 0;
}

fn header(name: &[u8], typeflag: u8, e: &RawEntry, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    assert!(name.len() <= 100, "name too long for a raw ustar header");
    h[..name.len()].copy_from_slice(name);
    octal(&mut h[100..108], e.mode as u64);
    octal(&mut h[108..116], e.uid as u64);
    octal(&mut h[116..124], e.gid as u64);
    if size < 0o77777777777 {
        octal(&mut h[124..136], size);
    } else {
        // GNU base-256 encoding for sizes that do not fit in octal.
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    octal(&mut h[136..148], e.mtime);
    h[156] = typeflag;
    let ln = &e.linkname;
    assert!(ln.len() <= 100);
    h[157..157 + ln.len()].copy_from_slice(ln);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], e.devmajor as u64);
    octal(&mut h[337..345], e.devminor as u64);
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    octal(&mut h[148..155], sum as u64);
    h[155] = b' ';
    h
}

fn pad(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(512), 0);
}

/// Writes entries as a tar (with the two end blocks).
pub fn raw_tar(entries: &[RawEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        if !e.pax.is_empty() {
            let mut records = Vec::new();
            for (k, v) in &e.pax {
                let body_len = k.len() + v.len() + 3; // space, '=', '\n'
                let mut len = body_len + 1;
                while len != body_len + len.to_string().len() {
                    len = body_len + len.to_string().len();
                }
                records.extend_from_slice(format!("{len} {k}=").as_bytes());
                records.extend_from_slice(v);
                records.push(b'\n');
            }
            let ph = RawEntry::new("PaxHeader", b'x', 0o644);
            out.extend_from_slice(&header(b"PaxHeader", b'x', &ph, records.len() as u64));
            out.extend_from_slice(&records);
            pad(&mut out);
        }
        out.extend_from_slice(&header(&e.name, e.typeflag, e, e.size));
        out.extend_from_slice(&e.data);
        pad(&mut out);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// sha256 hex of a byte string, computed by `sha256sum` (independent of hull).
pub fn sha256sum(data: &[u8]) -> String {
    let out = pipe_through("sha256sum", &[], data);
    String::from_utf8(out).unwrap()[..64].to_string()
}

/// sha256 hex of a file, by `sha256sum`.
pub fn sha256sum_file(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// Runs `cmd args` with `input` on stdin, returns stdout.
pub fn pipe_through(cmd: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {cmd}: {e} (is it installed?)"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "{cmd} failed");
    out.stdout
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    pipe_through("gzip", &["-c", "-n"], data)
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    pipe_through("zstd", &["-c", "-q"], data)
}

/// A tool that must exist for a test: fails (never skips) with a clear message.
pub fn require_tool(name: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "this test needs `{name}` (apt-get install {name}); it is not installed"
    );
}

pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// A layer to put in a hand-made OCI layout: the blob, its media type, and the
/// uncompressed tar (for the diff_id).
pub struct Layer {
    pub blob: Vec<u8>,
    pub media_type: &'static str,
    pub tar: Vec<u8>,
}

impl Layer {
    pub fn plain(tar: Vec<u8>) -> Self {
        Layer {
            blob: tar.clone(),
            media_type: LAYER_TAR,
            tar,
        }
    }
    pub fn gzip(tar: Vec<u8>) -> Self {
        Layer {
            blob: gzip(&tar),
            media_type: LAYER_GZIP,
            tar,
        }
    }
    pub fn zstd(tar: Vec<u8>) -> Self {
        Layer {
            blob: zstd(&tar),
            media_type: LAYER_ZSTD,
            tar,
        }
    }
}

/// A config document for the layers (diff_ids from `sha256sum`).
pub fn config_for(layers: &[Layer], cmd: &[&str]) -> Value {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256sum(&l.tar)))
        .collect();
    json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": cmd, "Env": ["PATH=/bin"], "WorkingDir": "/", "User": "1000:1000",
                   "ExposedPorts": {"80/tcp": {}}, "Labels": {"made-by": "hull-tests"}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
}

/// What a hand-made layout contains, for assertions.
pub struct Written {
    pub manifest_digest: String,
    pub config_digest: String,
    pub layer_digests: Vec<String>,
}

/// Writes an OCI layout at `dir` without hull. `tamper` may edit the manifest JSON
/// before it is written (to lie about sizes or digests).
pub fn write_oci_layout(
    dir: &Path,
    layers: &[Layer],
    config: &Value,
    ref_name: Option<&str>,
    tamper: impl FnOnce(&mut Value),
) -> Written {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> String {
        let hex = sha256sum(data);
        std::fs::write(blobs.join(&hex), data).unwrap();
        format!("sha256:{hex}")
    };
    let config_bytes = serde_json::to_vec(config).unwrap();
    let config_digest = put(&config_bytes);
    let mut layer_descs = Vec::new();
    let mut layer_digests = Vec::new();
    for l in layers {
        let d = put(&l.blob);
        layer_digests.push(d.clone());
        layer_descs.push(json!({"mediaType": l.media_type, "digest": d, "size": l.blob.len()}));
    }
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_bytes.len()},
        "layers": layer_descs,
    });
    tamper(&mut manifest);
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = put(&manifest_bytes);
    let mut desc = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "digest": manifest_digest, "size": manifest_bytes.len()});
    if let Some(r) = ref_name {
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": r});
    }
    let index = json!({"schemaVersion": 2, "manifests": [desc]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    Written {
        manifest_digest,
        config_digest,
        layer_digests,
    }
}

/// Tars a directory with the system `tar` (used to make archives from layouts).
pub fn tar_dir(dir: &Path, out: &Path) {
    let st = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
}

/// All paths under `dir` (relative), sorted; empty if `dir` does not exist.
pub fn tree(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().to_path_buf());
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Parses `hull image inspect` output.
pub fn inspect(root: &hull_tests::TestRoot, name: &str) -> Value {
    serde_json::from_str(&root.ok(["image", "inspect", name])).expect("inspect prints JSON")
}
