//! Real registries for the pull/push tests: Debian's `docker-registry` (distribution 2.8)
//! on 127.0.0.1, each on its own free port with its own storage, optionally with TLS (a
//! CA made here with openssl), htpasswd basic auth, or token auth backed by the small
//! token issuer below; and a fault-injecting HTTP proxy to put in front of one.
//!
//! Everything listens on 127.0.0.1 only and is stopped when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;

/// A port nothing listens on right now (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA and a server certificate it signed for 127.0.0.1 and localhost.
pub struct Pki {
    /// CA certificate (PEM): what a client must trust.
    pub ca_cert: PathBuf,
    /// Server certificate and key (PEM).
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl Pki {
    /// Makes the CA and the server certificate in `dir`.
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let p = |n: &str| dir.join(n);
        run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=hull test CA",
            ])
            .arg("-keyout")
            .arg(p("ca.key"))
            .arg("-out")
            .arg(p("ca.crt")));
        std::fs::write(p("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        run(Command::new("openssl")
            .args([
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
            ])
            .arg("-keyout")
            .arg(p("server.key"))
            .arg("-out")
            .arg(p("server.csr")));
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2"])
            .arg("-in")
            .arg(p("server.csr"))
            .arg("-CA")
            .arg(p("ca.crt"))
            .arg("-CAkey")
            .arg(p("ca.key"))
            .args(["-CAcreateserial"])
            .arg("-extfile")
            .arg(p("san.ext"))
            .arg("-out")
            .arg(p("server.crt")));
        Pki {
            ca_cert: p("ca.crt"),
            server_cert: p("server.crt"),
            server_key: p("server.key"),
        }
    }
}

/// How a registry authenticates.
pub enum Auth {
    None,
    /// htpasswd file with one bcrypt user.
    Basic {
        user: String,
        password: String,
    },
    /// Token auth: the realm, and the certificate whose key signs the tokens.
    Token {
        realm: String,
        cert: PathBuf,
    },
}

/// A running `docker-registry serve`.
pub struct RegistryServer {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its storage directory (`docker/registry/v2/...` inside).
    pub storage: PathBuf,
    config: PathBuf,
    log: PathBuf,
}

/// The service and issuer names token auth uses.
pub const TOKEN_SERVICE: &str = "hull-test-registry";
pub const TOKEN_ISSUER: &str = "hull-test-issuer";

impl RegistryServer {
    /// Starts a registry in `dir` (config, storage, log) on a free port.
    pub fn start(dir: &Path, tls: Option<&Pki>, auth: &Auth) -> RegistryServer {
        Self::start_with_storage(dir, &dir.join("storage"), tls, auth)
    }

    /// Starts a registry whose storage is `storage` (two registries may share one).
    pub fn start_with_storage(
        dir: &Path,
        storage: &Path,
        tls: Option<&Pki>,
        auth: &Auth,
    ) -> RegistryServer {
        assert!(
            Path::new("/usr/bin/docker-registry").exists(),
            "docker-registry missing: apt-get install docker-registry (scripts/setup.sh does)"
        );
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: hull-test-secret\n",
            storage.display()
        );
        if let Some(pki) = tls {
            yaml.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                pki.server_cert.display(),
                pki.server_key.display()
            ));
        }
        match auth {
            Auth::None => {}
            Auth::Basic { user, password } => {
                let htpasswd = dir.join("htpasswd");
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .expect("htpasswd missing: apt-get install apache2-utils");
                assert!(out.status.success());
                std::fs::write(&htpasswd, out.stdout).unwrap();
                yaml.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: hull-test\n    path: {}\n",
                    htpasswd.display()
                ));
            }
            Auth::Token { realm, cert } => yaml.push_str(&format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                cert.display()
            )),
        }
        let config = dir.join("config.yml");
        std::fs::write(&config, yaml).unwrap();
        let mut server = RegistryServer {
            child: None,
            port,
            storage: storage.to_path_buf(),
            config,
            log: dir.join("registry.log"),
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn docker-registry");
        self.child = Some(child);
        let port = self.port;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "docker-registry exited ({status}): {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the registry (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// The data file of a blob in the registry's storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A token server for a registry with token auth: checks basic credentials and hands
/// out RS256 JWTs (signed by `openssl dgst`) granting whatever scopes were asked for.
pub struct TokenIssuer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Requests seen (request line and Authorization presence).
    pub requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TokenIssuer {
    /// Makes a signing key and certificate in `dir` (the registry's `rootcertbundle` is
    /// `TokenIssuer::cert_path(dir)`) and starts serving.
    pub fn start(dir: &Path, user: &str, password: &str) -> TokenIssuer {
        std::fs::create_dir_all(dir).unwrap();
        let key = dir.join("token.key");
        let cert = Self::cert_path(dir);
        run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=hull test token signer",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert));
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap();
        assert!(der.status.success());
        let x5c = base64::engine::general_purpose::STANDARD.encode(&der.stdout);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let (reqs, stop2) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let _ = serve_token(conn, &key, &x5c, &expected, &reqs);
            }
        });
        TokenIssuer {
            port,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// Where the signing certificate is.
    pub fn cert_path(dir: &Path) -> PathBuf {
        dir.join("token.crt")
    }

    /// The realm URL to configure.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve_token(
    mut conn: TcpStream,
    key: &Path,
    x5c: &str,
    expected_auth: &str,
    requests: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut auth = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                auth = Some(v.trim().to_string());
            }
        }
    }
    requests
        .lock()
        .unwrap()
        .push(format!("{} auth={}", request_line.trim(), auth.is_some()));
    let respond = |conn: &mut TcpStream, status: &str, body: &str| {
        let _ = write!(
            conn,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    if auth.as_deref() != Some(expected_auth) {
        respond(
            &mut conn,
            "401 Unauthorized",
            r#"{"details":"bad credentials"}"#,
        );
        return Ok(());
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut access = Vec::new();
    for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        if k != "scope" {
            continue;
        }
        // repository:NAME:ACTIONS (NAME has no ':' here).
        let scope = percent_decode(v);
        let parts: Vec<&str> = scope.splitn(3, ':').collect();
        if let [kind, name, actions] = parts.as_slice() {
            let actions: Vec<&str> = actions.split(',').collect();
            access.push(serde_json::json!({"type": kind, "name": name, "actions": actions}));
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    static JTI: AtomicUsize = AtomicUsize::new(0);
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": TOKEN_ISSUER, "sub": "hull", "aud": TOKEN_SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": format!("t{}", JTI.fetch_add(1, Ordering::Relaxed)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(signing_input.as_bytes())?;
    let out = child.wait_with_output()?;
    let token = format!("{signing_input}.{}", b64url(&out.stdout));
    respond(
        &mut conn,
        "200 OK",
        &serde_json::json!({"token": token, "expires_in": 300}).to_string(),
    );
    Ok(())
}

/// What the fault proxy does to requests.
#[derive(Default)]
pub struct Faults {
    /// Answer manifest GETs with a 307 to this base URL (another host).
    pub redirect_manifests_to: Option<String>,
    /// Answer blob GETs with a 307 to this base URL (another host).
    pub redirect_blobs_to: Option<String>,
    /// Stall the response of the first GET of this blob after this many bytes, until
    /// `release` is called; then pass on what is left of the upstream connection.
    pub stall_blob: Option<(String, usize)>,
}

/// A plain-HTTP proxy on 127.0.0.1 in front of a registry, one request per connection
/// (it asks the registry to close after each), recording every request head.
pub struct FaultProxy {
    /// Its port.
    pub port: u16,
    /// `METHOD PATH` plus the headers that matter, per request.
    pub requests: Arc<Mutex<Vec<String>>>,
    stalled: Arc<AtomicBool>,
    release: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy to `127.0.0.1:upstream`.
    pub fn start(upstream: u16, faults: Faults) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stalled = Arc::new(AtomicBool::new(false));
        let release = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let faults = Arc::new(faults);
        let used = Arc::new(AtomicBool::new(false));
        let (reqs, st, rel, stp) = (
            requests.clone(),
            stalled.clone(),
            release.clone(),
            stop.clone(),
        );
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stp.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (reqs, st, rel, faults, used) = (
                    reqs.clone(),
                    st.clone(),
                    rel.clone(),
                    faults.clone(),
                    used.clone(),
                );
                std::thread::spawn(move || {
                    let _ = proxy_one(conn, upstream, &faults, &reqs, &st, &rel, &used);
                });
            }
        });
        FaultProxy {
            port,
            requests,
            stalled,
            release,
            stop,
            thread: Some(thread),
        }
    }

    /// `localhost:PORT` or `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits until the stalled blob response is held.
    pub fn wait_stalled(&self) {
        wait_for(
            "the blob download to stall",
            Duration::from_secs(60),
            || self.stalled.load(Ordering::Relaxed),
        );
    }

    /// Lets the stalled response go on.
    pub fn release(&self) {
        self.release.store(true, Ordering::Relaxed);
    }

    /// The recorded requests.
    pub fn seen(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.release.store(true, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn proxy_one(
    mut client: TcpStream,
    upstream: u16,
    faults: &Faults,
    requests: &Mutex<Vec<String>>,
    stalled: &AtomicBool,
    release: &AtomicBool,
    used: &AtomicBool,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    // The request head, byte by byte up to the blank line (bounded).
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 || head.len() > 64 << 10 {
            return Ok(());
        }
        // A TLS ClientHello (clients try HTTPS first): a plain HTTP server refuses it.
        if head.is_empty() && byte[0] == 0x16 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let has = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    requests.lock().unwrap().push(format!(
        "{} range={} auth={}",
        request_line,
        has("range").unwrap_or_default(),
        has("authorization").is_some()
    ));
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let redirect = |to: &Option<String>, marker: &str| {
        to.as_ref()
            .filter(|_| method == "GET" && path.contains(marker))
            .map(|base| format!("{base}{path}"))
    };
    if let Some(location) = redirect(&faults.redirect_manifests_to, "/manifests/")
        .or_else(|| redirect(&faults.redirect_blobs_to, "/blobs/sha256:"))
    {
        write!(
            client,
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return Ok(());
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        // The registry is down: drop the connection, as a dead host would.
        return Ok(());
    };
    let mut forwarded = format!("{request_line}\r\n");
    for (k, v) in &headers {
        if !k.eq_ignore_ascii_case("connection") {
            forwarded.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    server.write_all(forwarded.as_bytes())?;
    let mut to_server = server.try_clone()?;
    let mut from_client = client.try_clone()?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_server);
    });
    let stall_after = faults
        .stall_blob
        .as_ref()
        .filter(|(digest, _)| method == "GET" && path.ends_with(digest.as_str()))
        .filter(|_| !used.swap(true, Ordering::Relaxed))
        .map(|(_, n)| *n);
    let mut buf = vec![0u8; 64 << 10];
    let mut sent = 0usize;
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n;
        if let Some(limit) = stall_after {
            if sent >= limit && !stalled.swap(true, Ordering::Relaxed) {
                while !release.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}
