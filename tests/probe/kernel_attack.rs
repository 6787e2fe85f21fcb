//! What a hostile container process tries against the kernel it runs on (the host's in
//! process mode, the guest's in vm mode): kernel memory and page-frame files under /proc,
//! the sysrq trigger, the kernel's device events (uevent netlink), and raw devices made
//! with mknod or shipped in the image. One `NAME=RESULT` line per attempt (see attack.rs).
//!
//! ```text
//! hull-probe kernel-attack LISTEN_MS DEVICE...
//!     DEVICE: blk:NAME        mknod the block device /sys/class/block/NAME names
//!             chr:MAJ:MIN     mknod that character device
//!             node:PATH       a device node already in the image
//!     each made node is tried in /dev and in /tmp, then opened for reading and writing
//! ```

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::attack::{errno_name, outcome, report};

/// Files of /proc a container must not read: kernel memory, and the page-frame tables
/// that map physical memory (row-hammer and side-channel aids).
const PROC_FILES: &[&str] = &[
    "/proc/kcore",
    "/proc/kpageflags",
    "/proc/kpagecount",
    "/proc/kpagecgroup",
    "/proc/keys",
    "/proc/timer_list",
];

/// `NETLINK_KOBJECT_UEVENT`: the kernel's device add/remove/change events.
const NETLINK_KOBJECT_UEVENT: libc::c_int = 15;

fn cstr(path: &str) -> CString {
    CString::new(path).expect("no NUL in a path")
}

/// Opens `path` with `flags`; `ok` or the errno's name.
fn try_open(path: &str, flags: libc::c_int) -> (String, Option<OwnedFd>) {
    let c = cstr(path);
    // SAFETY: open(2) of a NUL-terminated path; the result is checked.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOCTTY) };
    if fd < 0 {
        return (outcome(-1), None);
    }
    // SAFETY: a fresh descriptor owned from here on.
    ("ok".into(), Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Reads up to 512 bytes: `ok:N` or the errno's name.
fn read_some(fd: &OwnedFd) -> String {
    let mut buf = [0u8; 512];
    // SAFETY: read(2) into a live buffer of the length given.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return outcome(-1);
    }
    format!("ok:{n}")
}

fn proc_files() {
    for path in PROC_FILES {
        let key = format!("read_{}", path.trim_start_matches("/proc/"));
        match try_open(path, libc::O_RDONLY) {
            (_, Some(fd)) => report(&key, read_some(&fd)),
            (e, None) => report(&key, format!("open:{e}")),
        }
    }
    let (result, fd) = try_open("/proc/sysrq-trigger", libc::O_WRONLY);
    let result = match fd {
        // 'h' only prints the help: harmless if it got through.
        // SAFETY: write(2) of one byte from a live buffer.
        Some(fd) => outcome(unsafe { libc::write(fd.as_raw_fd(), b"h".as_ptr().cast(), 1) } as _),
        None => format!("open:{result}"),
    };
    report("write_sysrq_trigger", result);
}

/// Binds a uevent socket to the kernel's multicast group and counts the events that
/// arrive within `listen` (the test makes the host's kernel send some meanwhile).
fn uevents(listen: Duration) {
    // SAFETY: socket(2) with integer arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_KOBJECT_UEVENT,
        )
    };
    report("uevent_socket", outcome(fd as _));
    if fd < 0 {
        return;
    }
    // SAFETY: a fresh descriptor owned from here on.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; all-zero is valid.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = 1;
    // SAFETY: addr is a valid sockaddr_nl of the length given.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    report("uevent_bind", outcome(rc as _));
    if rc < 0 {
        return;
    }
    println!("uevent_listening=1");
    let deadline = Instant::now() + listen;
    let mut events = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll(2) on one live pollfd.
        if unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as libc::c_int) } <= 0 {
            continue;
        }
        let mut buf = [0u8; 8192];
        // SAFETY: recv(2) into a live buffer of the length given.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n > 0 {
            events += 1;
        }
    }
    report("uevent_events", events);
}

/// mknod of `kind` (S_IFBLK/S_IFCHR) `dev` at `path`: `ok` or the errno's name.
fn make_node(path: &str, kind: libc::mode_t, dev: libc::dev_t) -> String {
    let c = cstr(path);
    // SAFETY: unlink/mknod of a NUL-terminated path.
    unsafe {
        libc::unlink(c.as_ptr());
        outcome(libc::mknod(c.as_ptr(), kind | 0o666, dev) as _)
    }
}

/// Opens a device node for reading (and reads), then for writing; never waits (a serial
/// line's open would wait for its carrier).
fn use_node(key: &str, path: &str) {
    match try_open(path, libc::O_RDONLY | libc::O_NONBLOCK) {
        (_, Some(fd)) => report(&format!("{key}_read"), read_some(&fd)),
        (e, None) => report(&format!("{key}_read"), format!("open:{e}")),
    }
    let (e, fd) = try_open(path, libc::O_WRONLY | libc::O_NONBLOCK);
    report(
        &format!("{key}_write"),
        if fd.is_some() {
            "open:ok".into()
        } else {
            format!("open:{e}")
        },
    );
}

fn device(spec: &str) -> Result<(), String> {
    let (kind, rest) = spec
        .split_once(':')
        .ok_or_else(|| format!("not a DEVICE: {spec:?}"))?;
    let (key, mode, numbers) = match kind {
        "node" => {
            let key = format!("node{}", rest.replace('/', "_"));
            use_node(&key, rest);
            return Ok(());
        }
        "blk" => {
            let numbers = std::fs::read_to_string(format!("/sys/class/block/{rest}/dev"))
                .map_err(|e| e.raw_os_error().map(errno_name).unwrap_or_default());
            (format!("blk_{rest}"), libc::S_IFBLK, numbers)
        }
        "chr" => (
            format!("chr_{}", rest.replace(':', "_")),
            libc::S_IFCHR,
            Ok(rest.to_string()),
        ),
        _ => return Err(format!("not a DEVICE: {spec:?}")),
    };
    let numbers = match numbers {
        Ok(n) => n,
        Err(e) => {
            report(&format!("{key}_sysfs"), e);
            return Ok(());
        }
    };
    let (major, minor) = numbers
        .trim()
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
        .ok_or_else(|| format!("not MAJ:MIN: {numbers:?}"))?;
    report(&format!("{key}_dev"), format!("{major}:{minor}"));
    let dev = libc::makedev(major, minor);
    for dir in ["dev", "tmp"] {
        let path = format!("/{dir}/hull-probe-{key}");
        let made = make_node(&path, mode, dev);
        report(&format!("mknod_{dir}_{key}"), &made);
        if made == "ok" {
            use_node(&format!("{dir}_{key}"), &path);
            let c = cstr(&path);
            // SAFETY: unlink of a NUL-terminated path.
            unsafe { libc::unlink(c.as_ptr()) };
        }
    }
    Ok(())
}

pub fn kernel_attack(listen: Duration, devices: &[&str]) -> Result<(), String> {
    proc_files();
    for spec in devices {
        device(spec)?;
    }
    uevents(listen);
    report("kernel_attack", "done");
    Ok(())
}
