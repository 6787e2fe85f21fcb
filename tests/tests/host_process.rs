//! `hull run --isolation=process` as a user runs it: output and exit codes, environment,
//! working directory and user, isolation, privileges (capabilities, seccomp,
//! no_new_privs), read-only root and volumes. Every test ends with a leak check.

mod process_common;

use process_common::{Env, IMAGE};

#[test]
fn output_goes_to_the_right_stream_and_exit_codes_propagate() {
    let env = Env::new();
    let (out, err, code) = env.sh(
        &["--isolation", "process"],
        "echo out; echo err >&2; exit 3",
    );
    assert_eq!((out.as_str(), err.as_str(), code), ("out\n", "err\n", 3));

    let (out, _, code) = env.sh(&[], "true");
    assert_eq!((out.as_str(), code), ("", 0));

    // The image's Cmd (`sh`) runs when no command is given; stdin is /dev/null without -i.
    let out = env.run(["run", "--rm", IMAGE]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "sh reads EOF from /dev/null and exits 0"
    );

    // Command not found / not executable: docker's 127 / 126, with a message naming it.
    let out = env.run(["run", "--rm", IMAGE, "no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-command"));
    let out = env.run(["run", "--rm", IMAGE, "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126));

    // hull's own errors: 125 with a clear message, and nothing created.
    let out = env.run(["run", "--rm", "no/such-image", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such-image"));
    let out = env.run(["run", "--rm", "--memory", "lots", IMAGE, "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--memory"));
    let out = env.run(["run", "--rm", "-v", "/no/such/dir:/data", IMAGE, "true"]);
    assert_eq!(out.status.code(), Some(125));
    let out = env.run(["run", "--rm", "--isolation", "hyperv", IMAGE, "true"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("hyperv"));

    // Without --rm an exited container stays listed with its exit code until `rm`.
    let out = env.run(["run", "--name", "kept", IMAGE, "sh", "-c", "exit 42"]);
    assert_eq!(out.status.code(), Some(42));
    let ps = env.ps();
    assert_eq!(ps["kept"]["status"], "exited");
    assert_eq!(ps["kept"]["exit_code"], 42);
    assert_eq!(ps["kept"]["isolation"], "process");
    let table = env.ok(["ps", "-a"]);
    assert!(
        table.contains("ISOLATION") && table.contains("Exited (42)"),
        "{table}"
    );
    let id = env.inspect("kept")["id"].as_str().unwrap().to_string();
    env.ok(["rm", "kept"]);
    env.assert_clean(&[id]);
}

#[test]
fn environment_workdir_and_user_apply_like_docker() {
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env");
    std::fs::write(&env_file, "# comment\nFROM_FILE=file\nOVERRIDE=file\n").unwrap();
    let (out, _, code) = env.sh(
        &[
            "-e",
            "GREETING=hello world",
            "--env-file",
            env_file.to_str().unwrap(),
            "-e",
            "OVERRIDE=flag",
            "-w",
            "/srv/app",
        ],
        "echo \"$GREETING|$FROM_FILE|$OVERRIDE|$(pwd)|$HOME|$PATH\"",
    );
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        "hello world|file|flag|/srv/app|/root|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );

    let (out, _, _) = env.sh(
        &["-u", "user"],
        "id; echo $HOME; touch /root/x 2>&1 || echo denied",
    );
    assert!(out.contains("uid=1000(user) gid=1000(user)"), "{out}");
    assert!(
        out.contains("100(users)"),
        "supplementary group from /etc/group: {out}"
    );
    assert!(
        out.contains("/home/user") && out.contains("denied"),
        "{out}"
    );
    let (out, _, _) = env.sh(&["-u", "4242:4343"], "id -u; id -g");
    assert_eq!(out, "4242\n4343\n");
    let (out, _, _) = env.sh(&["-u", "nobody:users"], "id -un; id -g");
    assert_eq!(out, "nobody\n100\n");
    let (_, err, code) = env.sh(&["-u", "ghost"], "true");
    assert_eq!(code, 125);
    assert!(err.contains("ghost"), "{err}");

    // The image's own WorkingDir, User and Env apply when no flag overrides them.
    env.import(
        &env.rootfs,
        "hull/configured",
        &[
            "--workdir",
            "/data",
            "--user",
            "user",
            "--env",
            "FROM_IMAGE=yes",
        ],
    );
    let out = env.ok([
        "run",
        "--rm",
        "hull/configured",
        "sh",
        "-c",
        "echo $(pwd) $(id -un) $FROM_IMAGE",
    ]);
    assert_eq!(out, "/data user yes\n");
    let out = env.ok([
        "run",
        "--rm",
        "--entrypoint",
        "echo",
        "hull/configured",
        "a",
        "b",
    ]);
    assert_eq!(out, "a b\n");
    env.assert_clean(&[]);
}

#[test]
fn container_is_isolated_from_host_processes_network_and_hostname() {
    let env = Env::new();
    let (out, _, code) = env.sh(
        &["--hostname", "box1"],
        "echo pid=$$; hostname; ls /proc | grep -c '^[0-9]'; cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; \
         ip -o link | wc -l; ip -o addr show lo | grep -c 127.0.0.1",
    );
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pid=1", "the command is PID 1");
    assert_eq!(lines[1], "box1");
    let visible: u32 = lines[2].parse().unwrap();
    assert!(
        visible <= 4,
        "only the container's own processes are visible: {out}"
    );
    assert_eq!(lines[3], "lo", "only loopback: {out}");
    assert_eq!(lines[4], "1");
    assert_eq!(lines[5], "1", "loopback is up with 127.0.0.1");

    // Default hostname: the short container id.
    let (out, _, _) = env.sh(&[], "hostname | wc -c");
    assert_eq!(out, "13\n");
    // Its own network: a server listening on the host's loopback, which the host reaches,
    // cannot be reached from inside (it would be, sharing the host's network). Works on
    // an offline host too.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("the host reaches its server");
    let (out, _, _) = env.sh(
        &[],
        &format!("echo hi | nc 127.0.0.1 {port} && echo reached || echo unreachable"),
    );
    assert_eq!(
        out, "unreachable\n",
        "the host's loopback is not the container's"
    );

    // The host's filesystem is not visible: the root is the image.
    let marker = format!("/tmp/hull-host-marker-{}", std::process::id());
    std::fs::write(&marker, "host").unwrap();
    let (out, _, _) = env.sh(&[], &format!("cat {marker} 2>/dev/null || echo absent"));
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(out, "absent\n");
    env.assert_clean(&[]);
}

#[test]
fn capabilities_seccomp_and_no_new_privs_are_in_force() {
    let env = Env::new();
    let (out, _, _) = env.sh(
        &[],
        "grep -E '^(CapEff|CapBnd|CapInh|NoNewPrivs|Seccomp):' /proc/self/status",
    );
    // docker's default set: chown dac_override fowner fsetid kill setgid setuid setpcap
    // net_bind_service net_raw sys_chroot mknod audit_write setfcap.
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(out.contains("CapBnd:\t00000000a80425fb"), "{out}");
    assert!(out.contains("CapInh:\t0000000000000000"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    let (out, _, _) = env.sh(&["-u", "user"], "grep CapEff /proc/self/status");
    assert_eq!(out.trim(), "CapEff:\t0000000000000000");

    // Denied by seccomp (EPERM) even though root in the container.
    let (out, _, _) = env.sh(
        &[],
        "unshare -n true 2>&1; echo unshare=$?; mount -t tmpfs none /mnt 2>&1; echo mount=$?; \
         hostname other 2>&1; echo hostname=$?; ip link add d0 type dummy 2>&1; echo link=$?",
    );
    assert!(
        out.contains("unshare=1") && out.contains("Operation not permitted"),
        "{out}"
    );
    assert!(
        out.contains("mount=255") || out.contains("mount=1"),
        "{out}"
    );
    assert!(out.contains("hostname=1"), "no CAP_SYS_ADMIN: {out}");
    assert!(
        out.contains("link=2") || out.contains("link=1"),
        "no CAP_NET_ADMIN: {out}"
    );

    // mknod works (CAP_MKNOD, as in docker) but no node it creates can be opened: every
    // writable filesystem is nodev. The provided /dev nodes work.
    let vol = tempfile::tempdir().unwrap();
    let (out, _, _) = env.sh(
        &["-v", &format!("{}:/vol", vol.path().display())],
        "for d in /tmp /dev /dev/shm /vol; do mknod $d/sda b 8 0 && mknod $d/mem c 1 1 || echo mknod-failed; \
           head -c1 $d/sda >/dev/null 2>&1; a=$?; head -c1 $d/mem >/dev/null 2>&1; echo $d=$a$?; done; \
         echo ok > /dev/null && head -c3 /dev/zero | wc -c",
    );
    assert_eq!(out, "/tmp=11\n/dev=11\n/dev/shm=11\n/vol=11\n3\n");
    // Kernel tunables are read-only, /sys is read-only, sensitive /proc files are masked.
    let (out, _, _) = env.sh(
        &[],
        "echo 1 > /proc/sys/vm/drop_caches 2>/dev/null; echo sys=$?; touch /sys/x 2>/dev/null; echo sysfs=$?; \
         wc -c < /proc/timer_list",
    );
    assert_eq!(out, "sys=1\nsysfs=1\n0\n");
    env.assert_clean(&[]);
}

#[test]
fn read_only_root_and_volumes() {
    let env = Env::new();
    let (out, _, _) = env.sh(
        &["--read-only"],
        "touch /x 2>/dev/null; echo $?; echo ok > /dev/shm/y && cat /dev/shm/y",
    );
    assert_eq!(out, "1\nok\n");
    // The writable layer is per container: a write is gone in the next container.
    let (out, _, _) = env.sh(&[], "echo data > /etc/written; cat /etc/written");
    assert_eq!(out, "data\n");
    let (out, _, _) = env.sh(&[], "cat /etc/written 2>/dev/null || echo fresh");
    assert_eq!(out, "fresh\n");

    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in"), "from host").unwrap();
    let rw = format!("{}:/data", host.path().display());
    let (out, _, code) = env.sh(
        &["-v", &rw],
        "cat /data/in; echo from container > /data/out",
    );
    assert_eq!((out.as_str(), code), ("from host", 0));
    assert_eq!(
        std::fs::read_to_string(host.path().join("out")).unwrap(),
        "from container\n"
    );
    let ro = format!("{}:/deep/ro/data:ro", host.path().display());
    let (out, _, _) = env.sh(
        &["-v", &ro],
        "cat /deep/ro/data/in; echo x > /deep/ro/data/out2 2>/dev/null; echo $?",
    );
    assert_eq!(out, "from host1\n");
    assert!(!host.path().join("out2").exists());

    // A volume target reached through a symlink in the image stays inside the image:
    // `/escape -> /tmp/VICTIM` must resolve to the container's /tmp/VICTIM, never the
    // host's.
    let victim = tempfile::tempdir().unwrap();
    let rootfs = tempfile::tempdir().unwrap();
    let victim_s = victim.path().display().to_string();
    process_common::build_rootfs(
        rootfs.path(),
        &[("escape", &victim_s), ("dotdot", "../../../../..")],
    );
    env.import(rootfs.path(), "hull/symlinks", &[]);
    let vol = format!("{}:/escape/mnt", host.path().display());
    let vol2 = format!("{}:/dotdot{}/mnt2", host.path().display(), victim_s);
    let out = env.ok([
        "run",
        "--rm",
        "-v",
        &vol,
        "-v",
        &vol2,
        "hull/symlinks",
        "sh",
        "-c",
        "ls /escape/mnt/in",
    ]);
    assert_eq!(out, "/escape/mnt/in\n");
    assert!(
        std::fs::read_dir(victim.path()).unwrap().next().is_none(),
        "nothing was created or mounted in the host directory the symlink names"
    );
    env.assert_clean(&[]);
}

#[test]
fn isolation_config_file_picks_the_default_and_bad_configs_are_clear_errors() {
    let env = Env::new();
    let config = env.root.path().join("config.json");
    std::fs::write(
        &config,
        r#"{"default_isolation": "process", "policies": [{"image": "other/*", "isolation": "vm"}],
            "network": {"default": "none"}}"#,
    )
    .unwrap();
    let out = env.run(["run", "--name", "c1", IMAGE, "true"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(env.inspect("c1")["isolation"], "process");
    env.ok(["rm", "c1"]);
    std::fs::write(&config, r#"{"default_isolation": "hyperv"}"#).unwrap();
    let out = env.run(["run", "--rm", IMAGE, "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("config.json"));
    env.assert_clean(&[]);
}
