//! A [`Sys`] that records calls instead of making them, with a tiny model of the container's
//! file tree (which paths exist, what descriptors name), so the child's sequence can be
//! checked without root: order of steps, what is created where, and how failures surface.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::ffi::CStr;
use std::io;

use super::{Fd, Res, Sys};
use crate::plan::caps::CapSets;
use crate::plan::mounts::Param;
use crate::seccomp::Filter;

/// The recorder.
#[derive(Default)]
pub struct Fake {
    /// Calls, in order, as short text.
    pub calls: RefCell<Vec<String>>,
    /// Paths that exist in the current root (directories end without a slash).
    pub dirs: RefCell<BTreeSet<String>>,
    /// Regular files and nodes that exist.
    pub files: RefCell<BTreeSet<String>>,
    /// Descriptor to path.
    fds: RefCell<HashMap<Fd, String>>,
    next_fd: RefCell<Fd>,
    /// The first call whose text starts with this prefix fails with this errno.
    pub fail: RefCell<Option<(String, i32)>>,
    /// Symlinks: path to target (dangling ones: lookups fail, creation says EEXIST).
    pub links: RefCell<HashMap<String, String>>,
    /// execve fails with this errno for paths not in `files` (ENOENT by default).
    pub exec_errno: RefCell<HashMap<String, i32>>,
}

fn s(c: &CStr) -> String {
    c.to_string_lossy().into_owned()
}

impl Fake {
    /// A fake root holding `dirs`.
    pub fn with_dirs(dirs: &[&str]) -> Fake {
        let f = Fake::default();
        *f.next_fd.borrow_mut() = 100;
        f.dirs.borrow_mut().insert("/".into());
        for d in dirs {
            f.dirs.borrow_mut().insert(d.to_string());
        }
        f
    }

    /// Registers a descriptor the parent passed down, naming `path` (a directory if `dir`).
    pub fn inherit(&self, fd: Fd, path: &str, dir: bool) {
        self.fds.borrow_mut().insert(fd, path.to_string());
        if dir {
            self.dirs.borrow_mut().insert(path.to_string());
        }
    }

    /// The recorded calls.
    pub fn log(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    /// Index of the first call starting with `prefix`.
    pub fn pos(&self, prefix: &str) -> usize {
        self.calls
            .borrow()
            .iter()
            .position(|c| c.starts_with(prefix))
            .unwrap_or_else(|| panic!("no call {prefix:?} in {:#?}", self.calls.borrow()))
    }

    fn record(&self, call: String) -> Res {
        let failing = matches!(&*self.fail.borrow(), Some((p, _)) if call.starts_with(p.as_str()));
        self.calls.borrow_mut().push(call);
        if failing {
            let (_, errno) = self.fail.borrow_mut().take().unwrap_or_default();
            return Err(io::Error::from_raw_os_error(errno));
        }
        Ok(())
    }

    fn new_fd(&self, path: &str) -> Fd {
        let mut n = self.next_fd.borrow_mut();
        *n += 1;
        self.fds.borrow_mut().insert(*n, path.to_string());
        *n
    }

    fn path_of(&self, fd: Fd) -> String {
        self.fds
            .borrow()
            .get(&fd)
            .cloned()
            .unwrap_or_else(|| format!("fd{fd}"))
    }

    fn child(&self, dir: Fd, name: &CStr) -> String {
        let d = self.path_of(dir);
        if d == "/" {
            format!("/{}", s(name))
        } else {
            format!("{d}/{}", s(name))
        }
    }

    /// `p` with the symlinks of `links` resolved (inside the root), like RESOLVE_IN_ROOT.
    fn resolve(&self, p: &str) -> Option<String> {
        let mut path: Vec<String> = p
            .split('/')
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect();
        for _ in 0..40 {
            let mut out: Vec<String> = Vec::new();
            let mut redirected = None;
            for (i, c) in path.iter().enumerate() {
                if c == ".." {
                    out.pop();
                    continue;
                }
                out.push(c.clone());
                let here = format!("/{}", out.join("/"));
                if let Some(t) = self.links.borrow().get(&here) {
                    let mut next: Vec<String> = if t.starts_with('/') {
                        Vec::new()
                    } else {
                        out[..out.len() - 1].to_vec()
                    };
                    next.extend(t.split('/').filter(|c| !c.is_empty()).map(String::from));
                    next.extend(path[i + 1..].iter().cloned());
                    redirected = Some(next);
                    break;
                }
            }
            match redirected {
                Some(n) => path = n,
                None => return Some(format!("/{}", out.join("/"))),
            }
        }
        None
    }

    fn exists(&self, p: &str) -> bool {
        self.dirs.borrow().contains(p) || self.files.borrow().contains(p)
    }
}

impl Sys for Fake {
    fn prepare_child(&self) -> Res {
        self.record("prepare_child".into())
    }
    fn read_byte(&self, fd: Fd) -> Res<u8> {
        self.record(format!("read_byte {fd}")).map(|_| b'G')
    }
    fn write_fd(&self, fd: Fd, data: &[u8]) -> Res {
        self.record(format!(
            "write {} {}",
            self.path_of(fd),
            String::from_utf8_lossy(data)
        ))
    }
    fn close(&self, fd: Fd) {
        self.fds.borrow_mut().remove(&fd);
    }
    fn setns(&self, fd: Fd, flag: u64) -> Res {
        self.record(format!("setns {fd} {flag:#x}"))
    }
    fn unshare(&self, flags: u64) -> Res {
        self.record(format!("unshare {flags:#x}"))
    }
    fn become_ns_root(&self) -> Res {
        self.record("become_ns_root".into())
    }
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: u64,
        data: Option<&CStr>,
    ) -> Res {
        self.record(format!(
            "mount {} {} {} {flags:#x} {}",
            source.map(s).unwrap_or_default(),
            s(target),
            fstype.map(s).unwrap_or_default(),
            data.map(s).unwrap_or_default()
        ))
    }
    fn mkdir(&self, path: &CStr, _mode: u32) -> Res {
        self.record(format!("mkdir {}", s(path)))
    }
    fn pivot_root(&self, root: &CStr) -> Res {
        self.record(format!("pivot_root {}", s(root)))
    }
    fn open_in_root(&self, path: &CStr, flags: i32) -> Res<Fd> {
        let p = s(path);
        let p = if p.len() > 1 {
            p.trim_end_matches('/').to_string()
        } else {
            p
        };
        self.record(format!("open {p}"))?;
        let Some(p) = self.resolve(&p) else {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        };
        if !self.exists(&p) {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        if flags & libc::O_DIRECTORY != 0 && !self.dirs.borrow().contains(&p) {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        Ok(self.new_fd(&p))
    }
    fn open_at(&self, dir: Fd, name: &CStr, _flags: i32) -> Res<Fd> {
        let p = self.child(dir, name);
        self.record(format!("open_at {p}"))?;
        Ok(self.new_fd(&p))
    }
    fn mkdir_at(&self, dir: Fd, name: &CStr, _mode: u32) -> Res {
        let p = self.child(dir, name);
        self.record(format!("mkdir_at {p}"))?;
        if self.exists(&p) || self.links.borrow().contains_key(&p) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        self.dirs.borrow_mut().insert(p);
        Ok(())
    }
    fn create_file_at(&self, dir: Fd, name: &CStr, _mode: u32) -> Res {
        let p = self.child(dir, name);
        self.record(format!("create_file {p}"))?;
        if self.exists(&p) || self.links.borrow().contains_key(&p) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        self.files.borrow_mut().insert(p);
        Ok(())
    }
    fn mknod_at(&self, dir: Fd, name: &CStr, mode: u32, dev: u64) -> Res {
        let p = self.child(dir, name);
        self.record(format!(
            "mknod {p} {:o} {}:{}",
            mode,
            libc::major(dev),
            libc::minor(dev)
        ))?;
        self.files.borrow_mut().insert(p);
        Ok(())
    }
    fn chown_at(&self, dir: Fd, name: &CStr, uid: u32, gid: u32) -> Res {
        self.record(format!("chown {} {uid}:{gid}", self.child(dir, name)))
    }
    fn symlink_at(&self, target: &CStr, dir: Fd, name: &CStr) -> Res {
        self.record(format!(
            "symlink {} -> {}",
            self.child(dir, name),
            s(target)
        ))
    }
    fn unlink_at(&self, dir: Fd, name: &CStr) -> Res {
        self.record(format!("unlink {}", self.child(dir, name)))
    }
    fn readlink_at(&self, dir: Fd, name: &CStr, buf: &mut [u8]) -> Res<usize> {
        let p = self.child(dir, name);
        self.record(format!("readlink {p}"))?;
        match self.links.borrow().get(&p) {
            Some(t) => {
                buf[..t.len()].copy_from_slice(t.as_bytes());
                Ok(t.len())
            }
            None => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }
    fn is_dir(&self, fd: Fd) -> Res<bool> {
        let p = self.path_of(fd);
        Ok(self.dirs.borrow().contains(&p) || p.starts_with("bind:") || p.starts_with("fs:"))
    }
    fn is_dev_null(&self, fd: Fd) -> Res<bool> {
        Ok(self.path_of(fd) == "/dev/null")
    }
    fn fs_mount(
        &self,
        fstype: &CStr,
        source: Option<&CStr>,
        params: &[Param],
        attrs: u64,
    ) -> Res<Fd> {
        let ps: Vec<String> = params
            .iter()
            .map(|p| match p {
                Param::Flag(k) => s(k),
                Param::Value(k, v) => format!("{}={}", s(k), s(v)),
            })
            .collect();
        self.record(format!(
            "fs_mount {} {} [{}] {attrs:#x}",
            s(fstype),
            source.map(s).unwrap_or_default(),
            ps.join(",")
        ))?;
        Ok(self.new_fd(&format!("fs:{}", s(fstype))))
    }
    fn clone_tree(&self, fd: Fd, recursive: bool) -> Res<Fd> {
        let p = self.path_of(fd);
        self.record(format!("clone_tree {p} {recursive}"))?;
        Ok(self.new_fd(&format!("clone:{p}")))
    }
    fn clone_path(&self, path: &CStr, recursive: bool) -> Res<Fd> {
        self.record(format!("clone_path {} {recursive}", s(path)))?;
        Ok(self.new_fd(&format!("clone:{}", s(path))))
    }
    fn set_mount_attrs(
        &self,
        mount: Fd,
        set: u64,
        clear: u64,
        propagation: u64,
        recursive: bool,
    ) -> Res {
        self.record(format!(
            "setattr {} +{set:#x} -{clear:#x} prop {propagation:#x} rec {recursive}",
            self.path_of(mount)
        ))
    }
    fn move_mount(&self, mount: Fd, target: Fd) -> Res {
        self.record(format!(
            "move_mount {} -> {}",
            self.path_of(mount),
            self.path_of(target)
        ))
    }
    fn set_hostname(&self, name: &CStr) -> Res {
        self.record(format!("hostname {}", s(name)))
    }
    fn set_domainname(&self, name: &CStr) -> Res {
        self.record(format!("domainname {}", s(name)))
    }
    fn loopback_up(&self) -> Res {
        self.record("loopback_up".into())
    }
    fn write_file(&self, path: &CStr, data: &[u8]) -> Res {
        self.record(format!(
            "write_file {} {}",
            s(path),
            String::from_utf8_lossy(data)
        ))
    }
    fn setsid(&self) -> Res {
        self.record("setsid".into())
    }
    fn open_pty(&self, rows: u16, cols: u16) -> Res<(Fd, Fd)> {
        self.record(format!("open_pty {rows}x{cols}"))?;
        Ok((self.new_fd("ptmx"), self.new_fd("pts")))
    }
    fn set_controlling_tty(&self, fd: Fd) -> Res {
        self.record(format!("ctty {}", self.path_of(fd)))
    }
    fn send_fd(&self, sock: Fd, tag: u8, fd: Fd) -> Res {
        self.record(format!(
            "send_fd {sock} {} {}",
            tag as char,
            self.path_of(fd)
        ))
    }
    fn open_read(&self, path: &CStr) -> Res<Fd> {
        self.record(format!("open_read {}", s(path)))?;
        Ok(self.new_fd(&s(path)))
    }
    fn install_stdio(&self, fds: [Fd; 3]) -> Res {
        let names: Vec<String> = fds.iter().map(|f| self.path_of(*f)).collect();
        self.record(format!("stdio {}", names.join(" ")))
    }
    fn chdir(&self, path: &CStr) -> Res {
        self.record(format!("chdir {}", s(path)))
    }
    fn cwd_inside_root(&self) -> bool {
        true
    }
    fn close_from_3(&self, keep: &[Fd]) {
        let _ = self.record(format!("close_from_3 keep {keep:?}"));
    }
    fn set_rlimit(&self, resource: u32, soft: u64, hard: u64) -> Res {
        self.record(format!("rlimit {resource} {soft} {hard}"))
    }
    fn drop_bounding(&self, cap: u32) -> Res {
        self.record(format!("drop_bounding {cap}"))
    }
    fn set_keep_caps(&self, keep: bool) -> Res {
        self.record(format!("keep_caps {keep}"))
    }
    fn set_groups(&self, groups: &[u32]) -> Res {
        self.record(format!("setgroups {groups:?}"))
    }
    fn set_gid(&self, gid: u32) -> Res {
        self.record(format!("setgid {gid}"))
    }
    fn set_uid(&self, uid: u32) -> Res {
        self.record(format!("setuid {uid}"))
    }
    fn set_caps(&self, caps: &CapSets) -> Res {
        self.record(format!(
            "capset e={:#x} p={:#x} i={:#x}",
            caps.effective, caps.permitted, caps.inheritable
        ))
    }
    fn raise_ambient(&self, cap: u32) -> Res {
        self.record(format!("ambient {cap}"))
    }
    fn set_umask(&self, mask: u32) {
        let _ = self.record(format!("umask {mask:o}"));
    }
    fn set_no_new_privs(&self) -> Res {
        self.record("no_new_privs".into())
    }
    fn set_parent_death_signal(&self) -> Res {
        self.record("pdeathsig".into())
    }
    fn exit_if_orphaned(&self, sync: Fd) {
        let _ = self.record(format!("orphan_check {sync}"));
    }
    fn load_seccomp(&self, filter: &Filter) -> Res {
        self.record(format!("seccomp {} insns", filter.program.len()))
    }
    fn execve(
        &self,
        path: &CStr,
        _argv: &[*const libc::c_char],
        _envp: &[*const libc::c_char],
    ) -> io::Error {
        let p = s(path);
        let _ = self.record(format!("execve {p}"));
        if let Some(e) = self.exec_errno.borrow().get(&p) {
            return io::Error::from_raw_os_error(*e);
        }
        if self.files.borrow().contains(&p) {
            // "Succeeded": the test sees it as the end of the sequence.
            return io::Error::from_raw_os_error(0);
        }
        io::Error::from_raw_os_error(libc::ENOENT)
    }
}
