//! [`Sys`] on Linux: raw system calls, nothing allocated. Identity changes use the raw
//! syscalls rather than glibc's wrappers, which would try to signal the threads of the
//! (multithreaded) parent that a cloned child does not have.

use std::ffi::CStr;
use std::io;
use std::os::fd::RawFd;

use super::{Fd, Res, Sys};
use crate::plan::caps::CapSets;
use crate::plan::mounts::Param;
use crate::seccomp::Filter;

/// The real system calls.
#[derive(Debug, Default, Clone, Copy)]
pub struct Linux {
    /// Set PR_SET_PDEATHSIG (the child dies with the process that cloned it).
    pub die_with_parent: bool,
}

fn check(ret: libc::c_long) -> Res<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_int(ret: libc::c_int) -> Res<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const TIOCGPTPEER: libc::c_ulong = 0x5441;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `struct ifreq` restricted to the flags member (the kernel reads 40 bytes).
#[repr(C)]
struct IfreqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

const CAP_V3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

impl Linux {
    fn open_root(&self) -> Res<Fd> {
        // SAFETY: NUL-terminated static path; returns a new fd or -1.
        check_int(unsafe { libc::open(c"/".as_ptr(), libc::O_PATH | libc::O_CLOEXEC) })
    }

    fn fsconfig(&self, fs: Fd, cmd: libc::c_uint, key: Option<&CStr>, value: Option<&CStr>) -> Res {
        let k = key.map_or(std::ptr::null(), CStr::as_ptr);
        let v = value.map_or(std::ptr::null(), CStr::as_ptr);
        // SAFETY: valid fs context fd and NUL-terminated strings (or null) alive for the call.
        check(unsafe { libc::syscall(libc::SYS_fsconfig, fs, cmd, k, v, 0) }).map(drop)
    }
}

impl Sys for Linux {
    fn prepare_child(&self) -> Res {
        if self.die_with_parent {
            self.set_parent_death_signal()?;
        }
        // SAFETY: an empty signal set on the stack; sigprocmask and signal() install no
        // handler code, only default dispositions; umask cannot fail.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            for sig in 1..libc::SIGRTMAX() {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
            libc::umask(0);
        }
        Ok(())
    }

    fn read_byte(&self, fd: Fd) -> Res<u8> {
        let mut b = 0u8;
        loop {
            // SAFETY: reads at most one byte into a stack variable.
            let n = unsafe { libc::read(fd, (&mut b as *mut u8).cast(), 1) };
            match n {
                1 => return Ok(b),
                0 => return Err(io::Error::from_raw_os_error(libc::ECONNRESET)),
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
    }

    fn write_fd(&self, fd: Fd, data: &[u8]) -> Res {
        // SAFETY: writes from a live slice.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        match n {
            n if n as usize == data.len() => Ok(()),
            n if n < 0 => Err(io::Error::last_os_error()),
            _ => Err(io::Error::from_raw_os_error(libc::EIO)),
        }
    }

    fn close(&self, fd: Fd) {
        // SAFETY: closing a descriptor this child opened and no longer uses.
        unsafe { libc::close(fd) };
    }

    fn setns(&self, fd: Fd, flag: u64) -> Res {
        // SAFETY: setns with a descriptor and a namespace flag.
        check_int(unsafe { libc::setns(fd, flag as libc::c_int) }).map(drop)
    }

    fn unshare(&self, flags: u64) -> Res {
        // SAFETY: unshare with flags only.
        check_int(unsafe { libc::unshare(flags as libc::c_int) }).map(drop)
    }

    fn become_ns_root(&self) -> Res {
        self.set_gid(0)?;
        self.set_uid(0)
    }

    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: u64,
        data: Option<&CStr>,
    ) -> Res {
        // SAFETY: NUL-terminated strings (or null) alive for the call.
        check_int(unsafe {
            libc::mount(
                source.map_or(std::ptr::null(), CStr::as_ptr),
                target.as_ptr(),
                fstype.map_or(std::ptr::null(), CStr::as_ptr),
                flags as libc::c_ulong,
                data.map_or(std::ptr::null(), |d| d.as_ptr().cast()),
            )
        })
        .map(drop)
    }

    fn mkdir(&self, path: &CStr, mode: u32) -> Res {
        // SAFETY: NUL-terminated path.
        check_int(unsafe { libc::mkdir(path.as_ptr(), mode) }).map(drop)
    }

    fn pivot_root(&self, root: &CStr) -> Res {
        self.chdir(root)?;
        // SAFETY: pivot_root(".", ".") with static paths: the old root ends up on top of
        // the new one and is detached right away, so no directory for it is needed.
        check(unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) })?;
        // SAFETY: detaching the mount at "." (the old root), static path.
        check_int(unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) })?;
        self.chdir(c"/")
    }

    fn open_in_root(&self, path: &CStr, flags: i32) -> Res<Fd> {
        let root = self.open_root()?;
        // SAFETY: open_how is plain data; zero is valid for every field.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (flags | libc::O_CLOEXEC) as u64;
        how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: valid dirfd, NUL-terminated path, open_how of the size passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root,
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        self.close(root);
        check(r).map(|fd| fd as Fd)
    }

    fn open_at(&self, dir: Fd, name: &CStr, flags: i32) -> Res<Fd> {
        // SAFETY: valid dirfd and NUL-terminated single name; returns a new fd or -1.
        check_int(unsafe {
            libc::openat(
                dir,
                name.as_ptr(),
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        })
    }

    fn mkdir_at(&self, dir: Fd, name: &CStr, mode: u32) -> Res {
        // SAFETY: valid dirfd and NUL-terminated single name.
        check_int(unsafe { libc::mkdirat(dir, name.as_ptr(), mode) }).map(drop)
    }

    fn create_file_at(&self, dir: Fd, name: &CStr, mode: u32) -> Res {
        // SAFETY: valid dirfd and NUL-terminated single name; the new fd is closed at once.
        let fd = check_int(unsafe {
            libc::openat(
                dir,
                name.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                mode,
            )
        })?;
        self.close(fd);
        Ok(())
    }

    fn mknod_at(&self, dir: Fd, name: &CStr, mode: u32, dev: u64) -> Res {
        // SAFETY: valid dirfd and NUL-terminated single name.
        check_int(unsafe { libc::mknodat(dir, name.as_ptr(), mode, dev) }).map(drop)
    }

    fn chown_at(&self, dir: Fd, name: &CStr, uid: u32, gid: u32) -> Res {
        // SAFETY: valid dirfd and NUL-terminated single name; never follows a symlink.
        check_int(unsafe {
            libc::fchownat(dir, name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW)
        })
        .map(drop)
    }

    fn symlink_at(&self, target: &CStr, dir: Fd, name: &CStr) -> Res {
        // SAFETY: NUL-terminated strings and a valid dirfd.
        check_int(unsafe { libc::symlinkat(target.as_ptr(), dir, name.as_ptr()) }).map(drop)
    }

    fn unlink_at(&self, dir: Fd, name: &CStr) -> Res {
        // SAFETY: valid dirfd and NUL-terminated single name.
        check_int(unsafe { libc::unlinkat(dir, name.as_ptr(), 0) }).map(drop)
    }

    fn readlink_at(&self, dir: Fd, name: &CStr, buf: &mut [u8]) -> Res<usize> {
        // SAFETY: valid dirfd, NUL-terminated name, buffer of the given length.
        let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        check(n as libc::c_long).map(|n| n as usize)
    }

    fn is_dir(&self, fd: Fd) -> Res<bool> {
        // SAFETY: stat is plain data; fstat fills it for a valid (O_PATH) fd.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        check_int(unsafe { libc::fstat(fd, &mut st) })?;
        Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
    }

    fn is_dev_null(&self, fd: Fd) -> Res<bool> {
        // SAFETY: stat is plain data; fstat fills it for a valid (O_PATH) fd.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        check_int(unsafe { libc::fstat(fd, &mut st) })?;
        Ok(st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3))
    }

    fn fs_mount(
        &self,
        fstype: &CStr,
        source: Option<&CStr>,
        params: &[Param],
        attrs: u64,
    ) -> Res<Fd> {
        // SAFETY: NUL-terminated type name; returns a new fd or -1.
        let fs = check(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })?
            as Fd;
        let configured = (|| {
            if let Some(s) = source {
                self.fsconfig(fs, FSCONFIG_SET_STRING, Some(c"source"), Some(s))?;
            }
            for p in params {
                match p {
                    Param::Flag(k) => self.fsconfig(fs, FSCONFIG_SET_FLAG, Some(k), None)?,
                    Param::Value(k, v) => {
                        self.fsconfig(fs, FSCONFIG_SET_STRING, Some(k), Some(v))?
                    }
                }
            }
            self.fsconfig(fs, FSCONFIG_CMD_CREATE, None, None)?;
            // SAFETY: a configured fs context fd; returns a new mount fd or -1.
            check(unsafe { libc::syscall(libc::SYS_fsmount, fs, FSMOUNT_CLOEXEC, attrs) })
        })();
        self.close(fs);
        configured.map(|fd| fd as Fd)
    }

    fn clone_tree(&self, fd: Fd, recursive: bool) -> Res<Fd> {
        let flags = OPEN_TREE_CLONE
            | libc::O_CLOEXEC as libc::c_uint
            | libc::AT_EMPTY_PATH as libc::c_uint
            | if recursive { AT_RECURSIVE } else { 0 };
        // SAFETY: a valid fd with an empty path; returns a new fd or -1.
        check(unsafe { libc::syscall(libc::SYS_open_tree, fd, c"".as_ptr(), flags) })
            .map(|r| r as Fd)
    }

    fn clone_path(&self, path: &CStr, recursive: bool) -> Res<Fd> {
        let flags = OPEN_TREE_CLONE
            | libc::O_CLOEXEC as libc::c_uint
            | if recursive { AT_RECURSIVE } else { 0 };
        // SAFETY: a NUL-terminated absolute path; returns a new fd or -1.
        check(unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) })
            .map(|r| r as Fd)
    }

    fn set_mount_attrs(
        &self,
        mount: Fd,
        set: u64,
        clear: u64,
        propagation: u64,
        recursive: bool,
    ) -> Res {
        let attr = MountAttr {
            attr_set: set,
            attr_clr: clear,
            propagation,
            userns_fd: 0,
        };
        let flags = libc::AT_EMPTY_PATH as libc::c_uint | if recursive { AT_RECURSIVE } else { 0 };
        // SAFETY: valid fd, empty NUL-terminated path, mount_attr of the size passed.
        check(unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                mount,
                c"".as_ptr(),
                flags,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        })
        .map(drop)
    }

    fn move_mount(&self, mount: Fd, target: Fd) -> Res {
        // SAFETY: valid fds, empty NUL-terminated paths, integer flags.
        check(unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                mount,
                c"".as_ptr(),
                target,
                c"".as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
            )
        })
        .map(drop)
    }

    fn set_hostname(&self, name: &CStr) -> Res {
        // SAFETY: pointer and length of a live C string.
        check_int(unsafe { libc::sethostname(name.as_ptr(), name.to_bytes().len()) }).map(drop)
    }

    fn set_domainname(&self, name: &CStr) -> Res {
        // SAFETY: pointer and length of a live C string.
        check_int(unsafe { libc::setdomainname(name.as_ptr(), name.to_bytes().len()) }).map(drop)
    }

    fn loopback_up(&self) -> Res {
        // SAFETY: a new datagram socket, closed below.
        let sock = check_int(unsafe {
            libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
        })?;
        let mut req = IfreqFlags {
            name: [0; libc::IFNAMSIZ],
            flags: 0,
            _pad: [0; 22],
        };
        req.name[..2].copy_from_slice(b"lo");
        let result = (|| {
            // SAFETY: SIOCGIFFLAGS reads the name and writes the flags of our ifreq.
            check_int(unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) })?;
            req.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            // SAFETY: SIOCSIFFLAGS reads our ifreq.
            check_int(unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) }).map(drop)
        })();
        self.close(sock);
        result
    }

    fn write_file(&self, path: &CStr, data: &[u8]) -> Res {
        // SAFETY: NUL-terminated path; the new fd is closed below.
        let fd = check_int(unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) })?;
        let r = self.write_fd(fd, data);
        self.close(fd);
        r
    }

    fn setsid(&self) -> Res {
        // SAFETY: no arguments.
        check_int(unsafe { libc::setsid() }).map(drop)
    }

    fn open_pty(&self, rows: u16, cols: u16) -> Res<(Fd, Fd)> {
        // SAFETY: NUL-terminated static path; returns a new fd or -1.
        let master = check_int(unsafe {
            libc::open(
                c"/dev/ptmx".as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        })?;
        let result = (|| {
            let unlock: libc::c_int = 0;
            // SAFETY: TIOCSPTLCK reads an int from our stack.
            check_int(unsafe { libc::ioctl(master, libc::TIOCSPTLCK, &unlock) })?;
            // SAFETY: TIOCGPTPEER opens the peer of our master; returns a new fd or -1.
            let slave = check_int(unsafe {
                libc::ioctl(
                    master,
                    TIOCGPTPEER as _,
                    libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
                )
            })?;
            if rows > 0 && cols > 0 {
                let ws = libc::winsize {
                    ws_row: rows,
                    ws_col: cols,
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                };
                // SAFETY: TIOCSWINSZ reads a winsize from our stack.
                unsafe { libc::ioctl(slave, libc::TIOCSWINSZ, &ws) };
            }
            Ok(slave)
        })();
        match result {
            Ok(slave) => Ok((master, slave)),
            Err(e) => {
                self.close(master);
                Err(e)
            }
        }
    }

    fn set_controlling_tty(&self, fd: Fd) -> Res {
        // SAFETY: TIOCSCTTY on a terminal fd, argument 0 (do not steal).
        check_int(unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) }).map(drop)
    }

    fn send_fd(&self, sock: Fd, tag: u8, fd: Fd) -> Res {
        // Room for one cmsghdr carrying one int, aligned like cmsghdr.
        let mut space = [0u64; 4];
        let mut byte = tag;
        let mut iov = libc::iovec {
            iov_base: (&mut byte as *mut u8).cast(),
            iov_len: 1,
        };
        // SAFETY: msghdr is plain data; zero is valid.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = space.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE/CMSG_LEN compute sizes only.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(4) } as usize;
        // SAFETY: the control buffer is large enough for one cmsghdr with one int, so
        // CMSG_FIRSTHDR is non-null and CMSG_DATA points inside the buffer.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>(), fd);
        }
        // SAFETY: a complete msghdr whose buffers live on this stack frame.
        check(unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) } as libc::c_long).map(drop)
    }

    fn open_read(&self, path: &CStr) -> Res<Fd> {
        // SAFETY: NUL-terminated path; returns a new fd or -1.
        check_int(unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })
    }

    fn install_stdio(&self, fds: [Fd; 3]) -> Res {
        // Move the sources out of the way first: one of them may already be 0, 1 or 2.
        let mut high = [0; 3];
        for (slot, fd) in high.iter_mut().zip(fds) {
            // SAFETY: duplicating an inherited fd to a new number >= 10.
            *slot = check_int(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) })?;
        }
        for (target, fd) in high.into_iter().enumerate() {
            // SAFETY: dup2 onto the stdio numbers, which this process owns.
            check_int(unsafe { libc::dup2(fd, target as RawFd) })?;
        }
        Ok(())
    }

    fn chdir(&self, path: &CStr) -> Res {
        // SAFETY: NUL-terminated path.
        check_int(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
    }

    fn cwd_inside_root(&self) -> bool {
        let mut buf = [0u8; 4096];
        // SAFETY: getcwd writes at most buf.len() bytes into our stack buffer.
        let n = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
        // An unreachable working directory comes back as "(unreachable)/...".
        n > 0 && buf[0] == b'/'
    }

    fn close_from_3(&self, keep: &[Fd]) {
        let mut sorted = [RawFd::MAX; 8];
        let mut n = 0;
        for &k in keep.iter().filter(|&&k| k >= 3).take(8) {
            sorted[n] = k;
            n += 1;
        }
        sorted[..n].sort_unstable();
        let mut lo: libc::c_uint = 3;
        for &k in &sorted[..n] {
            let k = k as libc::c_uint;
            if k > lo {
                // SAFETY: closing descriptors right before exec; nothing uses them.
                unsafe { libc::syscall(libc::SYS_close_range, lo, k - 1, 0) };
            }
            lo = k + 1;
        }
        // SAFETY: as above.
        unsafe { libc::syscall(libc::SYS_close_range, lo, libc::c_uint::MAX, 0) };
    }

    fn set_rlimit(&self, resource: u32, soft: u64, hard: u64) -> Res {
        let r = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads our rlimit struct.
        check_int(unsafe { libc::setrlimit(resource as _, &r) }).map(drop)
    }

    fn drop_bounding(&self, cap: u32) -> Res {
        // SAFETY: prctl with integer arguments.
        check_int(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) })
            .map(drop)
    }

    fn set_keep_caps(&self, keep: bool) -> Res {
        // SAFETY: prctl with integer arguments.
        check_int(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, keep as libc::c_ulong, 0, 0, 0) })
            .map(drop)
    }

    fn set_groups(&self, groups: &[u32]) -> Res {
        // SAFETY: the raw syscall reads `groups.len()` gids from the slice.
        check(unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) })
            .map(drop)
    }

    fn set_gid(&self, gid: u32) -> Res {
        // SAFETY: raw setresgid with integer arguments (this thread only, see module doc).
        check(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) }).map(drop)
    }

    fn set_uid(&self, uid: u32) -> Res {
        // SAFETY: raw setresuid with integer arguments (this thread only, see module doc).
        check(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) }).map(drop)
    }

    fn set_caps(&self, caps: &CapSets) -> Res {
        let header = CapHeader {
            version: CAP_V3,
            pid: 0,
        };
        let data = [
            CapData {
                effective: caps.effective as u32,
                permitted: caps.permitted as u32,
                inheritable: caps.inheritable as u32,
            },
            CapData {
                effective: (caps.effective >> 32) as u32,
                permitted: (caps.permitted >> 32) as u32,
                inheritable: (caps.inheritable >> 32) as u32,
            },
        ];
        // SAFETY: capset reads a v3 header and two data structs from our stack.
        check(unsafe {
            libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr())
        })
        .map(drop)
    }

    fn raise_ambient(&self, cap: u32) -> Res {
        // SAFETY: prctl with integer arguments.
        check_int(unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                cap as libc::c_ulong,
                0,
                0,
            )
        })
        .map(drop)
    }

    fn set_umask(&self, mask: u32) {
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(mask) };
    }

    fn set_no_new_privs(&self) -> Res {
        // SAFETY: prctl with integer arguments.
        check_int(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }).map(drop)
    }

    fn set_parent_death_signal(&self) -> Res {
        if !self.die_with_parent {
            return Ok(());
        }
        // SAFETY: prctl with integer arguments.
        check_int(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) }).map(drop)
    }

    fn exit_if_orphaned(&self, sync: Fd) {
        if !self.die_with_parent {
            return;
        }
        let mut pfd = libc::pollfd {
            fd: sync,
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd on the stack, no timeout.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        if n > 0 && pfd.revents & (libc::POLLHUP | libc::POLLRDHUP) != 0 {
            // SAFETY: leaving without running anything of the parent's address space.
            unsafe { libc::_exit(125) }
        }
    }

    fn load_seccomp(&self, filter: &Filter) -> Res {
        let prog = libc::sock_fprog {
            len: filter.program.len() as u16,
            // The instructions have the kernel's sock_filter layout (repr(C), same fields).
            filter: filter.program.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: the kernel copies the program; `prog` and the instructions outlive the call.
        check(unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                filter.flags,
                &prog as *const libc::sock_fprog,
            )
        })
        .map(drop)
    }

    fn execve(
        &self,
        path: &CStr,
        argv: &[*const libc::c_char],
        envp: &[*const libc::c_char],
    ) -> io::Error {
        // SAFETY: NUL-terminated path and null-terminated pointer arrays (prepared by the
        // parent) whose strings are alive; execve returns only on failure.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        io::Error::last_os_error()
    }
}
