//! Tier 2: the holes of issue 10, attacked from inside process-mode containers the way
//! the review did, and checked the way an operator would notice them (docs/security.md
//! maps each attack surface to its test).

mod process_common;
mod security_common;

use std::time::Duration;

use process_common::Env;
use security_common::{add_probe, legacy_tiocsti, reports, OperatorShell};

/// Image with busybox and the probe.
const PROBE_IMAGE: &str = "hull/probe";

/// Imports `hull/probe` (busybox + hull-probe) into `env`'s root.
fn import_probe_image(env: &Env) {
    let rootfs = env.root.path().join("probe-rootfs");
    process_common::build_rootfs(&rootfs, &[]);
    add_probe(&rootfs);
    env.import(&rootfs, PROBE_IMAGE, &[]);
}

/// How long the probe listens for the operator's keystrokes (the attack's own window).
const LISTEN_MS: u32 = 1500;

/// A container started from an operator's interactive shell (`hull run` without `-t`,
/// with `-i`, `-t`; `hull exec` with and without `-i`) tries to push a command into the
/// operator's terminal (TIOCSTI on /dev/tty and on its fds 0-2, with and without the
/// request's high bits, TIOCLINUX, /dev/console) and to read what the operator types.
/// Nothing reaches the operator's shell, nothing typed reaches the container, and each
/// layer of the defence is seen doing its part: no controlling terminal, no host
/// terminal among its descriptors, and seccomp refusing TIOCSTI even on the container's
/// own terminal (where the kernel alone would allow it).
#[test]
fn a_container_cannot_type_into_or_read_the_operators_terminal() {
    let env = Env::new();
    import_probe_image(&env);
    let pwned = env.root.path().join("pwned");
    std::fs::create_dir(&pwned).unwrap();
    let root = env.root.path().display().to_string();
    let hull = hull_tests::binary("hull").display().to_string();
    let mut shell = OperatorShell::start(&[("HULL_ROOT", &root)]);
    let id = env
        .ok([
            "run",
            "-d",
            "--name",
            "victim",
            PROBE_IMAGE,
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    if !legacy_tiocsti() {
        eprintln!(
            "note: dev.tty.legacy_tiocsti is 0 here, so the kernel refuses TIOCSTI to \
             unprivileged processes itself; the EPERM checks below still show hull's filter"
        );
    }

    // (step, command, whether the operator types while the container listens)
    let steps: [(u32, &str, bool); 5] = [
        (1, "run --rm", true),
        (2, "run --rm -i", false),
        (3, "exec victim", true),
        (4, "exec -i victim", false),
        (5, "run --rm -t", false),
    ];
    for (step, how, type_secret) in steps {
        let marker = pwned.join(format!("step{step}"));
        let image = if how.starts_with("run") {
            PROBE_IMAGE
        } else {
            ""
        };
        let command = format!(
            "{hull} {how} {image} hull-probe tty-attack 'touch {}' {LISTEN_MS}",
            marker.display()
        );
        let secret = 7000 + step;
        let out = shell.run(step, &command, |sh| {
            if type_secret {
                sh.wait_for("listening=", Duration::from_secs(60));
                // The shell shows SECRET-<n> only if it, not the container, reads this.
                sh.type_line(&format!("echo SECRET-$(({secret}))"));
            }
        });
        let r = reports(&out);
        let what = format!("{how}: the probe reported\n{out}");
        assert_eq!(
            r.get("tty_attack").map(String::as_str),
            Some("done"),
            "{what}"
        );
        assert!(
            !marker.exists(),
            "{how}: the container's TIOCSTI made the operator's shell run a command\n{what}"
        );
        assert!(
            !r.keys().any(|k| k.starts_with("stolen_")) || how.contains("-i"),
            "{how}: the container read the operator's keystrokes\n{what}"
        );
        if type_secret {
            let screen = shell.screen();
            assert!(
                screen.contains(&format!("SECRET-{secret}\n")),
                "{how}: what the operator typed did not reach the operator's shell\n{screen}"
            );
        }
        // Seccomp: TIOCSTI and TIOCLINUX fail with EPERM whatever the descriptor, even
        // the container's own terminal under -t, and with the request's high bits set.
        for fd in 0..3 {
            for key in [
                format!("tiocsti_{fd}"),
                format!("tiocsti_high_{fd}"),
                format!("tioclinux_{fd}"),
            ] {
                assert_eq!(
                    r.get(&key).map(String::as_str),
                    Some("EPERM"),
                    "{key}: {what}"
                );
            }
        }
        assert_eq!(r["open_dev_console"], "ENOENT", "{what}");
        assert_eq!(r["session_leader"], "true", "its own session: {what}");
        if how.contains("-t") {
            // Its own terminal (a pty of the container's devpts) and nobody else's.
            assert_ne!(r["ctty"], "0", "{what}");
            assert_eq!(r["tiocsti_dev_tty"], "EPERM", "{what}");
        } else {
            assert_eq!(r["ctty"], "0", "no controlling terminal: {what}");
            assert_eq!(
                r["open_dev_tty"], "ENXIO",
                "/dev/tty reaches nothing: {what}"
            );
            for fd in 0..3 {
                assert_eq!(r[&format!("isatty_{fd}")], "false", "fd {fd}: {what}");
            }
        }
    }
    drop(shell);
    env.ok(["rm", "-f", "victim"]);
    env.assert_clean(&[id]);
}

/// AF_VSOCK has no network namespace: on the host it reaches the host's vsock ports (or
/// its hypervisor's). Containers cannot create such sockets, as root or not.
#[test]
fn process_containers_cannot_use_vsock() {
    let env = Env::new();
    import_probe_image(&env);
    for user in ["0", "1000:1000"] {
        let out = env.run([
            "run",
            "--rm",
            "-u",
            user,
            PROBE_IMAGE,
            "hull-probe",
            "vsock-attack",
            "2:1024",
            "1:1024",
            "3:1025",
            "4294967295:1024",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{user}: {out:?}");
        let r = reports(&text);
        assert_eq!(r["vsock_socket"], "EPERM", "{user}: {text}");
        assert_eq!(r["vsock_socketpair"], "EPERM", "{user}: {text}");
        for target in ["2_1024", "1_1024", "3_1025", "4294967295_1024"] {
            assert_eq!(
                r[&format!("vsock_connect_{target}")],
                "socket:EPERM",
                "{user}: {text}"
            );
        }
    }
    env.assert_clean(&[]);
}

/// uid or gid 4294967295 is `(uid_t) -1`, "leave unchanged" to setresuid: a container
/// meant to run as it would run as root. Refused with exit 125 and a message naming it,
/// whether it comes from `--user`, the image's USER, the image's passwd or group file,
/// or `hull exec -u`; nothing is left behind.
#[test]
fn uid_4294967295_is_refused_everywhere() {
    let env = Env::new();
    let rootfs = env.root.path().join("ghost-rootfs");
    process_common::build_rootfs(&rootfs, &[]);
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nghost:x:4294967295:0::/:/bin/sh\n\
         member:x:1000:1000::/:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\nminus:x:4294967295:member\n",
    )
    .unwrap();
    env.import(&rootfs, "hull/ghost", &[]);
    env.import(&rootfs, "hull/minus-user", &["--user", "4294967295"]);

    let cases: [&[&str]; 6] = [
        &["run", "--rm", "-u", "4294967295", "hull/ghost", "id"],
        &["run", "--rm", "-u", "0:4294967295", "hull/ghost", "id"],
        &["run", "--rm", "hull/minus-user", "id"],
        &["run", "--rm", "-u", "ghost", "hull/ghost", "id"],
        &["run", "--rm", "-u", "member", "hull/ghost", "id"],
        &["create", "-u", "4294967295", "hull/ghost", "id"],
    ];
    for args in cases {
        let out = env.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {out:?}");
        assert!(err.contains("4294967295"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} ran: {out:?}");
    }
    let id = env
        .ok([
            "run",
            "-d",
            "--name",
            "target",
            "hull/ghost",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    for user in ["4294967295", "ghost", "1:4294967295"] {
        let out = env.run(["exec", "-u", user, "target", "id"]);
        assert_eq!(out.status.code(), Some(125), "exec -u {user}: {out:?}");
        assert!(out.stdout.is_empty(), "exec -u {user} ran: {out:?}");
    }
    env.ok(["rm", "-f", "target"]);
    env.assert_clean(&[id]);
}

/// Another local user reads nothing of hull's state: not the environment in a container's
/// record (`-e DB_PASSWORD=...`), not its logs, not the list of containers, not the image
/// store. Directories are 0700 and files 0600 in both roots, also when hull runs under
/// umask 0 and when an older hull left the directories 0755.
#[test]
fn other_local_users_cannot_read_state_or_logs() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;

    let env = Env::new();
    let root = env.root.path();
    // As an older hull (or a package) may have left them: readable by everyone.
    for dir in [
        root.to_path_buf(),
        root.join("run"),
        root.join("run/containers"),
    ] {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(root.join("images"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut run = env.hull([
        "run",
        "-d",
        "--name",
        "secret",
        "-e",
        "DB_PASSWORD=hunter2",
        process_common::IMAGE,
        "sh",
        "-c",
        "echo printed-secret; echo err-secret >&2; sleep 1000",
    ]);
    // SAFETY: umask has no failure mode; it only affects the child.
    unsafe {
        run.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let out = run.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dir = root.join("run/containers").join(&id);
    let log = dir.join("container.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&log).map_or(0, |m| m.len()) == 0 {
        assert!(std::time::Instant::now() < deadline, "no output logged");
        std::thread::sleep(Duration::from_millis(20));
    }

    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for d in [
        root.to_path_buf(),
        root.join("run"),
        root.join("run/containers"),
        root.join("run/containers/.names"),
        root.join("images"),
        dir.clone(),
    ] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    for f in [
        "state.json",
        "container.log",
        "supervisor.log",
        "process.json",
    ] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }

    // What another user on the host can do with them: nothing.
    let targets = [
        dir.join("state.json"),
        dir.join("container.log"),
        dir.join("supervisor.log"),
        root.join("run/containers"),
        root.join("images"),
    ];
    for target in &targets {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg("/bin/busybox")
            .args(["sh", "-c", "cat \"$1\" 2>&1 || ls \"$1\" 2>&1", "sh"])
            .arg(target)
            .output()
            .expect("setpriv (util-linux)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() && text.contains("Permission denied"),
            "nobody read {}: {out:?}",
            target.display()
        );
        for secret in ["hunter2", "printed-secret", "err-secret"] {
            assert!(
                !text.contains(secret),
                "nobody read {secret} from {}",
                target.display()
            );
        }
    }
    env.ok(["rm", "-f", "secret"]);
    env.assert_clean(&[id]);
}

/// Text an image controls reaches the operator's terminal only escaped: here the image's
/// command is an escape sequence (set the window title, clear the screen), shown by
/// `hull ps` and quoted by the error of `hull run` (the command does not exist).
#[test]
fn text_from_images_reaches_the_terminal_escaped() {
    let env = Env::new();
    let hostile = "\x1b]0;pwned\x07\x1b[2J\u{202e}";
    let rootfs = env.rootfs.display().to_string();
    let cmd = serde_json::to_string(&[format!("/{hostile}")]).unwrap();
    env.root.ok([
        "image",
        "import",
        "--rootfs",
        &rootfs,
        "--tag",
        "hull/hostile-cmd",
        "--cmd",
        &cmd,
        "-q",
    ]);
    let out = env.run(["run", "--name", "hostile", "hull/hostile-cmd"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains('\x1b') && !err.contains('\u{202e}'),
        "{err:?}"
    );
    assert!(err.contains("\\x1b]0;pwned\\x07"), "{err:?}");
    let ps = env.ok(["ps", "-a"]);
    assert!(!ps.contains('\x1b') && !ps.contains('\u{202e}'), "{ps:?}");
    assert!(ps.contains("\\x1b"), "{ps:?}");
    env.ok(["rm", "hostile"]);
    env.assert_clean(&[]);
}

/// Triggers a harmless "change" event of the kernel's /dev/null device (udev re-applies its
/// permissions), an event every listener on the host's uevent netlink group hears.
fn trigger_uevent() {
    std::fs::write("/sys/devices/virtual/mem/null/uevent", "change")
        .expect("write /sys/devices/virtual/mem/null/uevent");
}

/// A process container's root reads nothing of the kernel's memory maps (/proc/kcore, the
/// page-frame tables /proc/kpage{flags,count,cgroup}), cannot hear the host's device events
/// (uevent netlink: the container's network namespace belongs to the host's user namespace,
/// so the kernel would send it every event), and cannot open a raw block device it makes
/// with mknod or finds in its image (the device cgroup). Every container gets a process
/// limit unless it asks for none.
#[test]
fn process_containers_cannot_read_kernel_memory_maps_hear_uevents_or_fork_without_limit() {
    use std::io::BufRead;
    use std::os::unix::fs::FileTypeExt;
    let env = Env::new();
    let rootfs = env.root.path().join("probe-rootfs");
    process_common::build_rootfs(&rootfs, &[]);
    add_probe(&rootfs);
    // A block device node shipped in the image (loop0, 7:0), open to everyone.
    let node = rootfs.join("evil-blk");
    let c = std::ffi::CString::new(node.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mknod of a NUL-terminated path in the test's own directory.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFBLK | 0o666, libc::makedev(7, 0)) };
    assert_eq!(rc, 0, "mknod: {}", std::io::Error::last_os_error());
    assert!(std::fs::metadata(&node)
        .unwrap()
        .file_type()
        .is_block_device());
    env.import(&rootfs, PROBE_IMAGE, &[]);

    let mut child = env
        .hull([
            "run",
            "--rm",
            PROBE_IMAGE,
            "hull-probe",
            "kernel-attack",
            "3000",
            "chr:1:1",
            "blk:loop0",
            "node:/evil-blk",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn hull run");
    let mut text = String::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line == "uevent_listening=1" {
            // The probe is listening: events now would reach it if the kernel sends them.
            for _ in 0..3 {
                trigger_uevent();
            }
        }
        text.push_str(&line);
        text.push('\n');
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {text}");
    let r = reports(&text);
    assert_eq!(r["kernel_attack"], "done", "{text}");
    for file in ["kpageflags", "kpagecount", "kpagecgroup", "kcore"] {
        let got = r[&format!("read_{file}")].as_str();
        assert!(
            got == "ok:0" || got.starts_with("open:"),
            "/proc/{file} gave data: {got}\n{text}"
        );
    }
    // /proc/sysrq-trigger is read-only (docker's list): not even opened for writing.
    assert!(r["write_sysrq_trigger"].starts_with("open:"), "{text}");
    assert_eq!(r["uevent_socket"], "EPERM", "{text}");
    assert!(!r.contains_key("uevent_events"), "{text}");
    // Made with CAP_MKNOD (docker's set) or shipped in the image, a node opens nothing:
    // the root is nodev (EACCES) and, in /dev, the device cgroup refuses (EPERM).
    let refused = |v: Option<&String>| v.is_some_and(|v| v == "open:EPERM" || v == "open:EACCES");
    for key in [
        "dev_chr_1_1",
        "tmp_chr_1_1",
        "dev_blk_loop0",
        "tmp_blk_loop0",
    ] {
        if let Some(made) = r.get(&format!("mknod_{key}")) {
            assert_eq!(made, "ok", "{key}: {text}");
            for access in ["read", "write"] {
                assert!(refused(r.get(&format!("{key}_{access}"))), "{key}: {text}");
            }
        }
    }
    for access in ["read", "write"] {
        assert!(refused(r.get(&format!("node_evil-blk_{access}"))), "{text}");
    }

    // Process limits: the default, an explicit one, and none on request.
    let mut ids = Vec::new();
    for (name, flags, want) in [
        ("dflt", &[][..], "2048"),
        ("given", &["--pids-limit", "64"][..], "64"),
        ("none", &["--pids-limit", "-1"][..], "max"),
    ] {
        let id = env.detached(name, flags, "exec sleep 1000");
        // No pids cgroup at all is no limit too (v1 joins the controllers with settings).
        let max = std::fs::read_to_string(format!("/sys/fs/cgroup/pids/hull/{id}/pids.max"))
            .unwrap_or_else(|_| "max".into());
        assert_eq!(max.trim(), want, "{name}");
        env.ok(["rm", "-f", name]);
        ids.push(id);
    }
    env.assert_clean(&ids);
}

/// A container that exits at once, removed (`rm -f`) and killed at the same moment from
/// two other `hull` processes, again and again: every `rm -f` succeeds or names the
/// container as gone, and nothing of any of them is left (state, name, cgroup, process).
#[test]
fn rm_and_kill_racing_a_container_that_exits_leave_nothing() {
    let env = Env::new();
    let mut ids = Vec::new();
    for i in 0..15 {
        let name = format!("racer{i}");
        let id = env.detached(&name, &[], if i % 2 == 0 { "exit 0" } else { "kill -9 $$" });
        let kill = env.hull(["kill", &name]).spawn().expect("spawn hull kill");
        let rm = env.run(["rm", "-f", &name]);
        let kill = kill.wait_with_output().expect("hull kill");
        assert!(
            rm.status.success(),
            "rm -f {name}: {}",
            String::from_utf8_lossy(&rm.stderr)
        );
        // kill may come before or after the exit or the removal; it must not hang or
        // crash, and may only say the container is not running or gone.
        if !kill.status.success() {
            let err = String::from_utf8_lossy(&kill.stderr);
            assert!(
                kill.status.code() == Some(125) || kill.status.code() == Some(1),
                "kill {name}: {kill:?}"
            );
            assert!(!err.contains("panicked"), "kill {name}: {err}");
        }
        ids.push(id);
    }
    assert!(env.ps().is_empty(), "{:?}", env.ps());
    env.assert_clean(&ids);
}
