//! A hostile guest agent for the tier-4 test `harness_vm_hostile`: PID 1 of a hull microVM
//! (built static like hull-agent, given to hull with `HULL_AGENT`) that breaks the
//! host/guest protocol on purpose. The scenario is read from the container's image: the
//! first line of `/hostile` in the image's root filesystem (the erofs disk /dev/vda), so
//! one build serves every scenario and each scenario is just an image.
//!
//! At boot (hull must give up on `hull run` with an error that says why):
//! - `garbage-hello`: bytes that are no frame at all on the hello port;
//! - `oversized-hello`: a frame header announcing 4 GiB, then megabytes of it;
//! - `wrong-hello`: a well-formed hello of another protocol version;
//! - `flood`: as many vsock connections to the host (the hello port and others) as the
//!   guest kernel lets it open, silent on every one (the hello never comes);
//! - `silent-start`: a proper hello, then the start request is never answered.
//!
//! After a proper start (the container runs; hull's requests must end by their deadlines):
//! - `oversized-output`: a stdout frame announcing 64 MiB, then a stream of escape bytes;
//! - `mute`: the boot connection stays silent, every request connection to the agent port
//!   gets one byte a second of a reply that never ends, and a thread opens vsock
//!   connections to the host without end (a bounded number at a time).
//!
//! Bogus virtqueue descriptor chains need the guest kernel's memory (no /dev/mem in hull's
//! guest kernel): tier 2's hostile tiny guest (`host_vm_jail`) sends those.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use hull_tests::vsock;

const HOST_CID: u32 = 2;
const HELLO_PORT: u32 = 1024;
const AGENT_PORT: u32 = 1025;
const PROTOCOL_VERSION: u8 = 1;
const CONTROL: u8 = 1;
const STDOUT: u8 = 3;
/// Request connections served at once in `mute` (one thread each).
const MAX_TRICKLES: usize = 64;
/// Connections the `mute` flood holds open at once.
const MAX_FLOOD_OPEN: usize = 512;

fn main() {
    mount_basics();
    let mode = read_mode();
    say(&format!("hostile agent: {mode}"));
    match mode.as_str() {
        "garbage-hello" => {
            let mut s = connect(HELLO_PORT);
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: hull\r\n\r\n\xff\xfe\x00");
            keep(s)
        }
        "oversized-hello" => {
            let mut s = connect(HELLO_PORT);
            let mut header = vec![PROTOCOL_VERSION, CONTROL, 0, 0];
            header.extend_from_slice(&0xffff_fff0u32.to_be_bytes());
            let _ = s.write_all(&header);
            let junk = vec![b'{'; 1 << 20];
            for _ in 0..8 {
                if s.write_all(&junk).is_err() {
                    break;
                }
            }
            keep(s)
        }
        "wrong-hello" => {
            let mut s = connect(HELLO_PORT);
            let _ = s.write_all(&frame(
                CONTROL,
                br#"{"type":"hello","protocol":99,"kernel":"x"}"#,
            ));
            keep(s)
        }
        "flood" => {
            let mut open = Vec::new();
            let mut first_error = None;
            for i in 0..4096u32 {
                let port = if i.is_multiple_of(2) {
                    HELLO_PORT
                } else {
                    2000 + i
                };
                match try_connect(port) {
                    Ok(s) => open.push(s),
                    Err(e) => {
                        first_error.get_or_insert(format!("connect {port}: {e}"));
                    }
                }
            }
            say(&format!(
                "hostile agent: {} connections open (first error: {first_error:?})",
                open.len()
            ));
            keep(open)
        }
        "silent-start" => {
            let mut s = hello();
            let _ = read_frame(&mut s);
            keep(s)
        }
        "oversized-output" => {
            let mut s = started();
            let mut header = vec![PROTOCOL_VERSION, STDOUT, 0, 0];
            header.extend_from_slice(&(64u32 << 20).to_be_bytes());
            let _ = s.write_all(&header);
            let junk = vec![0x1bu8; 64 * 1024];
            for _ in 0..64 {
                if s.write_all(&junk).is_err() {
                    break;
                }
            }
            keep(s)
        }
        "mute" => {
            let s = started();
            std::thread::spawn(flood_forever);
            trickle_every_request();
            keep(s)
        }
        other => say(&format!("hostile agent: unknown mode {other:?}")),
    }
    keep(())
}

/// Holds on to whatever it is given, forever.
fn keep<T>(what: T) -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
        let _ = &what;
    }
}

fn say(line: &str) {
    if let Ok(mut c) = std::fs::OpenOptions::new().write(true).open("/dev/console") {
        let _ = writeln!(c, "{line}");
    }
}

fn check(rc: libc::c_int, what: &str) {
    if rc != 0 {
        say(&format!(
            "hostile agent: {what}: {}",
            std::io::Error::last_os_error()
        ));
    }
}

/// /dev (for the disk and the console), and the image's root filesystem at /image.
fn mount_basics() {
    // SAFETY: mkdir/mount with NUL-terminated literals and a null data pointer; the
    // results are only reported.
    unsafe {
        libc::mkdir(c"/dev".as_ptr(), 0o755);
        check(
            libc::mount(
                c"devtmpfs".as_ptr(),
                c"/dev".as_ptr(),
                c"devtmpfs".as_ptr(),
                0,
                std::ptr::null(),
            ),
            "mount /dev",
        );
        libc::mkdir(c"/image".as_ptr(), 0o755);
        check(
            libc::mount(
                c"/dev/vda".as_ptr(),
                c"/image".as_ptr(),
                c"erofs".as_ptr(),
                libc::MS_RDONLY,
                std::ptr::null(),
            ),
            "mount the image",
        );
    }
}

fn read_mode() -> String {
    std::fs::read_to_string("/image/hostile")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![PROTOCOL_VERSION, kind, 0, 0];
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A proper hello on the hello port.
fn hello() -> std::fs::File {
    let mut s = connect(HELLO_PORT);
    let _ = s.write_all(&frame(
        CONTROL,
        br#"{"type":"hello","protocol":1,"kernel":"hostile"}"#,
    ));
    s
}

/// A proper hello, the start request read and answered "started": hull thinks the
/// container runs.
fn started() -> std::fs::File {
    let mut s = hello();
    let _ = read_frame(&mut s);
    let _ = s.write_all(&frame(CONTROL, br#"{"type":"started","pid":1}"#));
    s
}

/// Reads one frame (header and payload, bounded), whatever it holds.
fn read_frame(s: &mut std::fs::File) -> std::io::Result<Vec<u8>> {
    let mut h = [0u8; 8];
    s.read_exact(&mut h)?;
    let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]).min(1 << 20) as usize;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload)?;
    Ok(payload)
}

/// Accepts every request connection on the agent port and answers each with one byte a
/// second of a frame that never ends: with a timeout per read instead of per request, a
/// host would wait for ever.
fn trickle_every_request() {
    let listener = match listen(AGENT_PORT) {
        Ok(l) => l,
        Err(e) => {
            say(&format!("hostile agent: listen {AGENT_PORT}: {e}"));
            return;
        }
    };
    let busy = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::spawn(move || loop {
        use std::os::fd::AsRawFd;
        // SAFETY: accept4(2) on our listening socket with null address arguments.
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        let conn = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        if busy.load(std::sync::atomic::Ordering::Relaxed) >= MAX_TRICKLES {
            keep_in_background(conn);
            continue;
        }
        busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let busy = busy.clone();
        std::thread::spawn(move || {
            let mut conn = conn;
            let mut reply = vec![PROTOCOL_VERSION, CONTROL, 0, 0];
            reply.extend_from_slice(&200_000u32.to_be_bytes());
            reply.extend(std::iter::repeat_n(b' ', 200_000));
            for b in reply {
                if conn.write_all(&[b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            busy.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
    });
}

/// Silent connections beyond what is trickled to: held, never read.
fn keep_in_background(conn: std::fs::File) {
    static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    if let Ok(mut held) = HELD.lock() {
        if held.len() < MAX_FLOOD_OPEN {
            held.push(conn);
        }
    }
}

/// Opens connections to the host without end, to ports with and without a listener,
/// holding up to [`MAX_FLOOD_OPEN`] at once (the oldest goes for each new one).
fn flood_forever() {
    let mut open = std::collections::VecDeque::new();
    let mut port = 3000u32;
    loop {
        port = if port >= 60_000 { 3000 } else { port + 1 };
        let target = if port.is_multiple_of(3) {
            HELLO_PORT
        } else {
            port
        };
        if let Ok(s) = try_connect(target) {
            open.push_back(s);
            if open.len() > MAX_FLOOD_OPEN {
                open.pop_front();
            }
        }
    }
}

fn connect(port: u32) -> std::fs::File {
    loop {
        match try_connect(port) {
            Ok(s) => return s,
            Err(e) => {
                say(&format!("hostile agent: connect {port}: {e} (retrying)"));
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// A vsock stream to the host's `port`, as a File (read/write on the socket).
fn try_connect(port: u32) -> std::io::Result<std::fs::File> {
    vsock::connect(vsock::socket()?, HOST_CID, port)
}

/// A listening vsock socket on `port` of any CID (the host connects through the VMM).
fn listen(port: u32) -> std::io::Result<OwnedFd> {
    vsock::listen(port, 64)
}
