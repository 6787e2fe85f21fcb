//! The container lifecycle with `--isolation=process`: detached runs, exec, logs,
//! stop/kill/rm, terminals, and recovery after a crashed `hull`. Leak checks after each.

mod process_common;

use std::time::{Duration, Instant};

use process_common::{in_pty, q, Env, IMAGE};

#[test]
fn detached_container_exec_logs_and_stop() {
    let env = Env::new();
    let id = env.detached(
        "web",
        &["-e", "ROLE=server"],
        "echo started; echo warning >&2; trap 'echo got TERM; exit 0' TERM; while true; do sleep 0.1; done",
    );
    let ps = env.ps();
    assert_eq!(ps["web"]["status"], "running");
    assert_eq!(ps["web"]["isolation"], "process");
    assert!(
        env.ok(["ps"]).contains("web"),
        "running containers are listed without -a"
    );

    // exec joins the container: same PID namespace (PID 1 is the container's command),
    // same hostname, the container's environment, its own exit code.
    let out = env.ok([
        "exec",
        "web",
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '; echo; hostname; echo $ROLE",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("sh -c echo started"), "{out}");
    assert_eq!(lines[1], &id[..12]);
    assert_eq!(lines[2], "server");
    let out = env.run(["exec", "web", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    let out = env.run(["exec", "web", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    let out = env.ok([
        "exec",
        "-u",
        "user",
        "-e",
        "X=1",
        "-w",
        "/tmp",
        "web",
        "sh",
        "-c",
        "id -u; echo $X; pwd; grep CapEff /proc/self/status",
    ]);
    assert_eq!(out, "1000\n1\n/tmp\nCapEff:\t0000000000000000\n");
    let mut child = env.hull(["exec", "-i", "web", "cat"]);
    child
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = child.spawn().unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"through stdin\n")
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through stdin\n");

    // logs: stdout and stderr kept apart.
    let logs = env.run(["logs", "web"]);
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "started\n");
    assert_eq!(String::from_utf8_lossy(&logs.stderr), "warning\n");

    // stop: SIGTERM reaches the trap; the exit is recorded.
    env.ok(["stop", "-t", "10", "web"]);
    let c = env.inspect("web");
    assert_eq!(c["status"], "exited");
    assert_eq!(c["exit_code"], 0);
    let logs = env.ok(["logs", "web"]);
    assert_eq!(logs, "started\ngot TERM\n");
    let out = env.run(["exec", "web", "true"]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "exec into a stopped container fails"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));
    assert!(
        process_common::cgroup_dirs(&id).is_empty(),
        "cgroups go when the container exits"
    );

    env.ok(["rm", "web"]);
    let out = env.run(["inspect", "web"]);
    assert_eq!(out.status.code(), Some(125));
    env.assert_clean(&[id]);
}

#[test]
fn stop_escalates_to_sigkill_and_kill_sends_signals() {
    let env = Env::new();
    // PID 1 without a TERM handler ignores SIGTERM: stop must escalate after -t.
    let stubborn = env.detached("stubborn", &[], "while true; do sleep 0.1; done");
    let start = Instant::now();
    env.ok(["stop", "-t", "1", "stubborn"]);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "waited for the grace period: {took:?}"
    );
    assert_eq!(env.inspect("stubborn")["exit_code"], 137);

    let killed = env.detached(
        "killed",
        &[],
        "trap 'exit 3' USR1; while true; do sleep 0.1; done",
    );
    env.ok(["kill", "-s", "USR1", "killed"]);
    assert_eq!(
        env.wait_exited("killed", Duration::from_secs(10))["exit_code"],
        3
    );
    let out = env.run(["kill", "killed"]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "killing an exited container is an error"
    );
    let out = env.run(["kill", "-s", "NOPE", "killed"]);
    assert_ne!(out.status.code(), Some(0));

    let table = env.ok(["ps", "-a"]);
    assert!(
        table.contains("Exited (137)") && table.contains("Exited (3)"),
        "{table}"
    );
    env.ok(["rm", "stubborn", "killed"]);
    env.assert_clean(&[stubborn, killed]);
}

#[test]
fn rm_refuses_running_containers_unless_forced_and_run_rm_removes_itself() {
    let env = Env::new();
    let id = env.detached("busy", &[], "sleep 1000");
    let out = env.run(["rm", "busy"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("running"));
    assert_eq!(env.inspect("busy")["status"], "running");
    env.ok(["rm", "-f", "busy"]);
    assert!(env.ps().is_empty());

    // Names are unique while a container exists, and free again after rm.
    let id2 = env.detached("dup", &[], "sleep 1000");
    let out = env.run(["run", "-d", "--name", "dup", IMAGE, "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already in use"));
    env.ok(["rm", "-f", "dup"]);

    // --rm -d: gone after it exits, by itself.
    let id3 = env.detached("auto", &["--rm"], "exit 0");
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.ps().contains_key("auto") {
        assert!(Instant::now() < deadline, "--rm container was not removed");
        std::thread::sleep(Duration::from_millis(20));
    }
    // create + start.
    let created = env
        .ok(["create", "--name", "later", IMAGE, "sh", "-c", "echo late"])
        .trim()
        .to_string();
    assert_eq!(env.inspect("later")["status"], "created");
    env.ok(["start", "later"]);
    env.wait_exited("later", Duration::from_secs(10));
    assert_eq!(env.ok(["logs", "later"]), "late\n");
    env.ok(["rm", "later"]);
    env.assert_clean(&[id, id2, id3, created]);
}

#[test]
fn logs_follow_streams_until_exit() {
    let env = Env::new();
    let id = env.detached(
        "talker",
        &[],
        "for i in 1 2 3; do echo line $i; sleep 0.2; done",
    );
    let out = env.run(["logs", "-f", "talker"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "line 1\nline 2\nline 3\n"
    );
    assert_eq!(env.inspect("talker")["status"], "exited");
    env.ok(["rm", "talker"]);
    env.assert_clean(&[id]);
}

#[test]
fn tty_gives_the_container_a_real_terminal() {
    let env = Env::new();
    let hull = hull_tests::binary("hull");
    let root = env.root.path().display().to_string();
    let base = format!("{} --root {}", q(&hull.display().to_string()), q(&root));
    // The user's terminal is 37 rows by 111 columns (an unusual size, not a default):
    // the container's terminal must have that size.
    let (out, code) = in_pty(
        &format!("stty rows 37 cols 111; {base} run --rm -t {IMAGE} sh -c 'tty; [ -t 0 ] && [ -t 1 ] && echo both-tty; echo size=$(stty size); exit 4'"),
        None,
    );
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("/dev/pts/0"),
        "the pty is the container's own: {out}"
    );
    assert!(out.contains("both-tty"), "{out}");
    assert!(
        out.lines().any(|l| l.trim() == "size=37 111"),
        "the container's terminal has the user's size: {out}"
    );

    // -it: input typed on the terminal reaches the shell.
    let (out, code) = in_pty(
        &format!("{base} run --rm -it {IMAGE} sh"),
        Some("echo typed-$((6*7))\nexit 9\n"),
    );
    assert_eq!(code, 9, "{out}");
    assert!(out.contains("typed-42"), "{out}");

    // exec -t into a running container.
    let id = env.detached("term", &[], "sleep 1000");
    let (out, code) = in_pty(&format!("{base} exec -t term sh -c 'tty; exit 2'"), None);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("/dev/pts/"), "{out}");
    env.ok(["rm", "-f", "term"]);
    env.assert_clean(&[id]);
}

#[test]
fn a_crashed_hull_leaves_nothing_and_ps_reports_the_container_exited() {
    let env = Env::new();
    // Kill the detached supervisor: the container dies with it, and the next `hull ps`
    // reports it exited and releases its resources.
    let id = env.detached("orphan", &[], "sleep 1000");
    let c = env.inspect("orphan");
    let sup = c["supervisor"]["pid"].as_i64().unwrap() as i32;
    let init = c["pid"].as_i64().unwrap() as i32;
    // SAFETY: plain kill(2) of a pid we just read from hull's state.
    assert_eq!(unsafe { libc::kill(sup, libc::SIGKILL) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{init}")).exists()
        && !std::fs::read_to_string(format!("/proc/{init}/stat"))
            .unwrap_or_default()
            .contains(") Z")
    {
        assert!(
            Instant::now() < deadline,
            "container process outlived its supervisor"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ps = env.ps();
    assert_eq!(ps["orphan"]["status"], "exited");
    assert!(
        process_common::cgroup_dirs(&id).is_empty(),
        "ps cleaned up the cgroups"
    );
    env.ok(["rm", "orphan"]);

    // Kill a foreground `hull run --rm`: the container goes, and the next ps removes it.
    let mut fg = env
        .hull(["run", "--rm", "--name", "fg", IMAGE, "sleep", "1000"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let fg_id = loop {
        if let Some(c) = env.ps().get("fg") {
            if c["status"] == "running" {
                break c["id"].as_str().unwrap().to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "foreground container did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    fg.kill().unwrap();
    fg.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.ps().contains_key("fg") {
        assert!(
            Instant::now() < deadline,
            "dead --rm container still listed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    env.assert_clean(&[id, fg_id]);
}
