//! `hull-probe`: a small test tool that runs inside the nested harness and inside guests,
//! where busybox cannot help: vsock sockets, the Firecracker-style Unix-socket handshake of
//! a VMM's vsock host side, and timing a VMM from launch to a guest's first words.
//!
//! Every wait is bounded; every failure prints what failed and exits non-zero.
//!
//! ```text
//! hull-probe vsock-serve PORT [NAME]          accept one vsock connection on PORT, read a
//!                                             line, answer "NAME got: LINE" (NAME: guest)
//! hull-probe vsock-call CID PORT MESSAGE      (guest) connect to CID:PORT, send MESSAGE,
//!                                             print the answer line
//! hull-probe uds-call SOCKET PORT MESSAGE     (host) connect to the VMM's vsock socket,
//!                                             "CONNECT PORT", send MESSAGE, print the answer
//! hull-probe uds-serve PATH [NAME]            (host) accept one connection on the Unix
//!                                             socket PATH, read a line, answer "NAME got: LINE"
//! hull-probe tty-attack TEXT LISTEN_MS       (in a container) every way a container could
//!                                             type into or read the operator's terminal
//! hull-probe vsock-attack CID:PORT...         (in a container) AF_VSOCK sockets and one
//!                                             connect to each CID:PORT (see attack.rs)
//! hull-probe kernel-attack LISTEN_MS DEVICE... (in a container) /proc's kernel memory
//!                                             and page-frame files, sysrq, uevents, raw
//!                                             devices (see kernel_attack.rs)
//! hull-probe vsock-send CID PORT MIB         (guest) connect to CID:PORT, send MIB MiB,
//!                                             half-close, print the throughput and the
//!                                             peer's answer line
//! hull-probe uds-sink PATH                    (host) accept one connection on the Unix
//!                                             socket PATH, read to end, answer "got N"
//! hull-probe time-to-marker MARKER TIMEOUT_S LOG -- CMD [ARGS...]
//!                                             run CMD, copy its stdout to LOG, print
//!                                             "marker_us=N total_us=T exit=S" (N: µs from
//!                                             spawn to the first output containing MARKER,
//!                                             T: µs from spawn to CMD's exit)
//! hull-probe tcp-rr ADDR PORT COUNT           connect to an echo server (retrying while it
//!                                             starts), send COUNT one-byte requests one at a
//!                                             time, each answered before the next; print
//!                                             "rr_us_median=M rr_us_p90=P count=N"
//! ```

mod attack;
mod kernel_attack;

use hull_tests::vsock;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long a connect keeps retrying while the peer is not there yet (guest still booting).
const CONNECT_PATIENCE: Duration = Duration::from_secs(60);
/// How long one accept or one read may wait.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest line exchanged.
const MAX_LINE: u64 = 4096;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match argv.as_slice() {
        ["vsock-serve", port] => parse(port).and_then(|port| vsock_serve(port, "guest")),
        ["vsock-serve", port, name] => parse(port).and_then(|port| vsock_serve(port, name)),
        ["vsock-call", cid, port, message] => {
            parse(cid).and_then(|cid| parse(port).and_then(|port| vsock_call(cid, port, message)))
        }
        ["uds-call", socket, port, message] => {
            parse(port).and_then(|port| uds_call(Path::new(socket), port, message))
        }
        ["vsock-send", cid, port, mib] => parse(cid).and_then(|cid| {
            parse(port).and_then(|port| parse(mib).and_then(|mib| vsock_send(cid, port, mib)))
        }),
        ["uds-sink", path] => uds_sink(Path::new(path)),
        ["uds-serve", path] => uds_serve(Path::new(path), "host"),
        ["uds-serve", path, name] => uds_serve(Path::new(path), name),
        ["tty-attack", text, listen_ms] => {
            parse(listen_ms).and_then(|ms| attack::tty_attack(text, Duration::from_millis(ms)))
        }
        ["vsock-attack", targets @ ..] => attack::vsock_attack(targets),
        ["kernel-attack", listen_ms, devices @ ..] => parse(listen_ms)
            .and_then(|ms| kernel_attack::kernel_attack(Duration::from_millis(ms), devices)),
        ["tcp-rr", addr, port, count] => parse(port)
            .and_then(|port| parse(count).map(|count| (port, count)))
            .and_then(|(port, count)| tcp_rr(addr, port, count)),
        ["time-to-marker", marker, timeout, log, "--", cmd @ ..] if !cmd.is_empty() => {
            parse(timeout).and_then(|t| time_to_marker(marker, Duration::from_secs(t), log, cmd))
        }
        _ => Err(format!(
            "usage: hull-probe vsock-serve PORT [NAME] | vsock-call CID PORT MSG | \
             uds-call SOCKET PORT MSG | uds-serve PATH [NAME] | tty-attack TEXT LISTEN_MS | \
             vsock-attack CID:PORT... | vsock-send CID PORT MIB | uds-sink PATH | \
             tcp-rr ADDR PORT COUNT | \
             time-to-marker MARKER TIMEOUT_S LOG -- CMD... (got {argv:?})"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hull-probe: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("not a number: {s:?}"))
}

/// Reads one line (without the newline), at most MAX_LINE bytes.
fn read_line(stream: impl Read) -> Result<String, String> {
    let mut line = String::new();
    BufReader::new(stream.take(MAX_LINE))
        .read_line(&mut line)
        .map_err(|e| format!("read: {e}"))?;
    if !line.ends_with('\n') {
        return Err(format!(
            "connection closed before a full line (got {line:?})"
        ));
    }
    line.pop();
    Ok(line)
}

// ---------------------------------------------------------------- vsock (guest side)

/// A connected or accepted socket with the tool's read/write timeouts.
fn set_timeouts(fd: &impl AsRawFd) -> Result<(), String> {
    vsock::set_timeouts(fd, IO_TIMEOUT).map_err(|e| format!("setsockopt: {e}"))
}

fn vsock_serve(port: u32, name: &str) -> Result<(), String> {
    let fd = vsock::listen(port, 4).map_err(|e| format!("listen on vsock port {port}: {e}"))?;
    wait_readable(&fd, IO_TIMEOUT).map_err(|e| format!("accept on vsock port {port}: {e}"))?;
    // SAFETY: accept with null address pointers is allowed; the result is checked.
    let conn = unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    if conn < 0 {
        return Err(format!("accept: {}", io::Error::last_os_error()));
    }
    // SAFETY: conn is a fresh descriptor owned from here on.
    let conn = unsafe { OwnedFd::from_raw_fd(conn) };
    set_timeouts(&conn)?;
    let mut stream = std::fs::File::from(conn);
    let line = read_line(&stream)?;
    writeln!(stream, "{name} got: {line}").map_err(|e| format!("write: {e}"))?;
    println!("vsock-serve: answered {line:?}");
    Ok(())
}

/// Sends `mib` MiB to CID:PORT and reports the rate (a benchmark's guest side).
fn vsock_send(cid: u32, port: u32, mib: u64) -> Result<(), String> {
    let mut stream = vsock_connect(cid, port)?;
    let chunk = vec![0x5au8; 64 << 10];
    let start = Instant::now();
    for _ in 0..mib * 16 {
        stream
            .write_all(&chunk)
            .map_err(|e| format!("write: {e}"))?;
    }
    // SAFETY: shutdown(2) on our own connected socket.
    unsafe { libc::shutdown(stream.as_raw_fd(), libc::SHUT_WR) };
    let answer = read_line(&stream)?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "vsock-send: {mib} MiB in {:.0} ms = {:.1} MiB/s; peer: {answer}",
        secs * 1e3,
        mib as f64 / secs
    );
    Ok(())
}

/// Accepts one connection on a new Unix socket at `path`, counts its bytes to the end and
/// answers "got N" (a benchmark's host side).
fn uds_sink(path: &Path) -> Result<(), String> {
    let listener = UnixListener::bind(path).map_err(|e| format!("bind {path:?}: {e}"))?;
    wait_readable(&listener, IO_TIMEOUT).map_err(|e| format!("accept on {path:?}: {e}"))?;
    let (mut conn, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    conn.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| format!("set timeout: {e}"))?;
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    writeln!(conn, "got {total}").map_err(|e| format!("write: {e}"))?;
    println!("uds-sink: {total} bytes");
    Ok(())
}

fn vsock_call(cid: u32, port: u32, message: &str) -> Result<(), String> {
    let mut stream = vsock_connect(cid, port)?;
    writeln!(stream, "{message}").map_err(|e| format!("write: {e}"))?;
    let answer = read_line(&stream)?;
    println!("{answer}");
    Ok(())
}

/// Connects to CID:PORT, retrying while the peer is not listening yet.
fn vsock_connect(cid: u32, port: u32) -> Result<std::fs::File, String> {
    let deadline = Instant::now() + CONNECT_PATIENCE;
    loop {
        let fd = vsock::socket().map_err(|e| format!("socket(AF_VSOCK): {e}"))?;
        set_timeouts(&fd)?;
        match vsock::connect(fd, cid, port) {
            Ok(stream) => return Ok(stream),
            Err(err) if Instant::now() >= deadline => {
                return Err(format!("connect vsock {cid}:{port}: {err}"))
            }
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// poll() for readability with a timeout.
fn wait_readable(fd: &impl AsRawFd, timeout: Duration) -> Result<(), String> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd is passed with count 1.
    let rc = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
    match rc {
        0 => Err(format!("timed out after {timeout:?}")),
        n if n < 0 => Err(format!("poll: {}", io::Error::last_os_error())),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------- Unix side (VMM host side)

/// Connects to a VMM's vsock Unix socket and asks for guest PORT; retries while the socket
/// is not there yet or the VMM closes without "OK" (guest not listening yet).
fn uds_call(socket: &Path, port: u32, message: &str) -> Result<(), String> {
    let deadline = Instant::now() + CONNECT_PATIENCE;
    let mut last_error;
    loop {
        match try_handshake(socket, port) {
            Ok(mut stream) => {
                writeln!(stream, "{message}").map_err(|e| format!("write: {e}"))?;
                let answer = read_line(&stream)?;
                println!("{answer}");
                return Ok(());
            }
            Err(e) => last_error = e,
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no vsock connection to guest port {port} via {}: {last_error}",
                socket.display()
            ));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn try_handshake(socket: &Path, port: u32) -> Result<UnixStream, String> {
    let mut stream =
        UnixStream::connect(socket).map_err(|e| format!("connect {}: {e}", socket.display()))?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    writeln!(stream, "CONNECT {port}").map_err(|e| format!("write CONNECT: {e}"))?;
    // Read the answer byte by byte: bytes after the newline belong to the guest's stream.
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while answer.len() < 64 {
        match stream.read(&mut byte) {
            Ok(0) => return Err(format!("VMM closed the connection after CONNECT {port}")),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => answer.push(byte[0]),
            Err(e) => return Err(format!("read handshake answer: {e}")),
        }
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    if !answer.starts_with("OK ") {
        return Err(format!("unexpected handshake answer {answer:?}"));
    }
    Ok(stream)
}

fn uds_serve(path: &Path, name: &str) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(|e| format!("bind {}: {e}", path.display()))?;
    let result = (|| {
        let fd: OwnedFd = listener.try_clone().map_err(|e| e.to_string())?.into();
        wait_readable(&fd, IO_TIMEOUT).map_err(|e| format!("accept on {}: {e}", path.display()))?;
        let (mut stream, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let line = read_line(&stream)?;
        writeln!(stream, "{name} got: {line}").map_err(|e| format!("write: {e}"))?;
        println!("uds-serve: answered {line:?}");
        Ok(())
    })();
    let _ = std::fs::remove_file(path);
    result
}

// ---------------------------------------------------------------- timing

/// Runs CMD, copies its stdout to LOG, and prints the time from spawn to the first line
/// containing MARKER, then CMD's exit status. Kills CMD at the timeout.
fn time_to_marker(marker: &str, timeout: Duration, log: &str, cmd: &[&str]) -> Result<(), String> {
    let mut log_file = std::fs::File::create(log).map_err(|e| format!("create {log}: {e}"))?;
    let start = Instant::now();
    let deadline = start + timeout;
    let mut child = Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", cmd[0]))?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut marker_at = None;
    let mut pending = Vec::new(); // the current, unfinished line
    let mut buf = [0u8; 4096];
    let mut killed = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || wait_readable(&stdout, left).is_err() {
            let _ = child.kill();
            killed = true;
            break;
        }
        let n = match stdout.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read {}'s output: {e}", cmd[0])),
        };
        log_file
            .write_all(&buf[..n])
            .map_err(|e| format!("write {log}: {e}"))?;
        if marker_at.is_none() {
            pending.extend_from_slice(&buf[..n]);
            if contains(&pending, marker.as_bytes()) {
                marker_at = Some(start.elapsed());
            }
            // Keep only the unfinished line (bounded: a marker longer than that is odd).
            if let Some(nl) = pending.iter().rposition(|&b| b == b'\n') {
                pending.drain(..=nl);
            }
            if pending.len() > 64 * 1024 {
                pending.drain(..pending.len() - marker.len());
            }
        }
    }
    drop(stdout);
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    let total = start.elapsed();
    let exit = status
        .code()
        .map(|c| c.to_string())
        .unwrap_or_else(|| "signal".into());
    match marker_at {
        Some(at) if !killed => {
            println!(
                "marker_us={} total_us={} exit={exit}",
                at.as_micros(),
                total.as_micros()
            );
            Ok(())
        }
        Some(_) => Err(format!(
            "{} killed after {timeout:?} (marker was seen)",
            cmd[0]
        )),
        None => Err(format!(
            "marker {marker:?} not seen; {} exit={exit}{}",
            cmd[0],
            if killed { " (killed at timeout)" } else { "" }
        )),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------- TCP request/response

/// Round trips of one-byte requests to an echo server: connect (retrying while it starts),
/// then COUNT times send a byte and wait for it to come back. Prints the median and 90th
/// percentile round trip in microseconds.
fn tcp_rr(addr: &str, port: u16, count: usize) -> Result<(), String> {
    use std::net::{TcpStream, ToSocketAddrs};
    if count == 0 || count > 1_000_000 {
        return Err(format!("count {count} out of range 1..=1000000"));
    }
    let target = (addr, port)
        .to_socket_addrs()
        .map_err(|e| format!("{addr}:{port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr}:{port}: no address"))?;
    let deadline = Instant::now() + CONNECT_PATIENCE;
    let mut stream = loop {
        match TcpStream::connect_timeout(&target, IO_TIMEOUT) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(format!("connect {target}: {e}")),
        }
    };
    stream
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| format!("timeout: {e}"))?;
    let mut rtts = Vec::with_capacity(count);
    let mut byte = [0u8; 1];
    for i in 0..count {
        let start = Instant::now();
        stream
            .write_all(b"x")
            .map_err(|e| format!("send request {i}: {e}"))?;
        stream
            .read_exact(&mut byte)
            .map_err(|e| format!("read answer {i}: {e}"))?;
        rtts.push(start.elapsed().as_micros() as u64);
    }
    rtts.sort_unstable();
    println!(
        "rr_us_median={} rr_us_p90={} count={count}",
        rtts[count / 2],
        rtts[(count * 9 / 10).min(count - 1)]
    );
    Ok(())
}
