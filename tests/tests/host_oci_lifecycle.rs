//! hull-oci's lifecycle as containerd's shim and conmon drive it, in the process model: the
//! pid-file process lives as long as the container and exits with its status (this test
//! process is the subreaper that reaps it, as the shim is), runc's state JSON through
//! created/running/paused/stopped, the console socket, exec, ps, and runc's refusals:
//! duplicate ids, start twice, delete of a running container. Nothing is left behind.

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;
use std::time::Duration;

use hull_tests::oci::{default_config, poll, runtime, show, unique, Bundle};
use serde_json::{json, Value};

/// Like the shim and conmon: orphans of this process (the containers' init processes
/// once `create` exits) become its children, so their exit status can be read.
fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(rc, 0);
    });
}

/// Waits for our (adopted) child `pid`; its exit code as a shell gives it.
fn wait_exit(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: waitpid on a pid that is our child (adopted as subreaper).
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(
        r,
        pid,
        "waitpid({pid}): {}",
        std::io::Error::last_os_error()
    );
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

struct Oci {
    root: tempfile::TempDir,
}

impl Oci {
    fn new() -> Oci {
        become_subreaper();
        Oci {
            root: tempfile::Builder::new()
                .prefix("hull-oci-root-")
                .tempdir()
                .unwrap(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(runtime());
        c.arg("--root").arg(self.root.path()).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("run the runtime")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }

    /// `create` with the container's stdout/stderr going to files in `bundle`.
    fn create(&self, bundle: &Bundle, id: &str, extra: &[&str]) -> (Output, PathBuf) {
        let pid_file = bundle.path().join(format!("{id}.pid"));
        let stdout = fs::File::create(bundle.path().join("stdout")).unwrap();
        let stderr = fs::File::create(bundle.path().join("stderr")).unwrap();
        let mut args = vec![
            "create",
            "--bundle",
            bundle.path().to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
        ];
        args.extend(extra);
        args.push(id);
        let out = self
            .cmd(&args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .output()
            .unwrap();
        let err = fs::read_to_string(bundle.path().join("stderr")).unwrap_or_default();
        let out = Output {
            stderr: err.into_bytes(),
            ..out
        };
        (out, pid_file)
    }

    fn leftovers(&self) -> usize {
        fs::read_dir(self.root.path()).map_or(0, |d| d.count())
    }
}

impl Drop for Oci {
    fn drop(&mut self) {
        // A failed test must not leave containers running: delete what is left.
        if let Ok(out) = self.cmd(&["list", "-q"]).stdin(Stdio::null()).output() {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = self.run(&["delete", "--force", id]);
            }
        }
    }
}

fn pid_of(file: &Path) -> i32 {
    fs::read_to_string(file).unwrap().trim().parse().unwrap()
}

#[test]
fn the_pid_file_process_exits_with_the_containers_status() {
    let oci = Oci::new();
    let bundle = Bundle::new(&["sh", "-c", "echo out; echo err >&2; exit 3"]);
    let id = unique("life");
    let (out, pid_file) = oci.create(&bundle, &id, &[]);
    assert!(out.status.success(), "{}", show(&out));
    let pid = pid_of(&pid_file);
    let st = oci.state(&id);
    assert_eq!(st["status"], "created");
    assert_eq!(st["pid"], pid);
    assert_eq!(st["id"], id.as_str());
    assert_eq!(
        st["bundle"],
        fs::canonicalize(bundle.path()).unwrap().to_str().unwrap()
    );
    assert!(st["created"].as_str().unwrap().contains('T'));
    assert!(st["ociVersion"].as_str().unwrap().starts_with("1."));
    // Created: set up, waiting; nothing of the user's program ran yet.
    assert_eq!(
        fs::read_to_string(bundle.path().join("stdout")).unwrap(),
        ""
    );
    oci.ok(&["start", &id]);
    assert_eq!(wait_exit(pid), 3);
    assert_eq!(oci.state(&id)["status"], "stopped");
    assert_eq!(
        fs::read_to_string(bundle.path().join("stdout")).unwrap(),
        "out\n"
    );
    assert_eq!(
        fs::read_to_string(bundle.path().join("stderr")).unwrap(),
        "err\n"
    );
    oci.ok(&["delete", &id]);
    let out = oci.run(&["state", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(oci.leftovers(), 0);
}

#[test]
fn duplicate_ids_start_twice_and_delete_running_are_refused() {
    let oci = Oci::new();
    let bundle = Bundle::new(&["sleep", "1000"]);
    let id = unique("rules");
    let (out, pid_file) = oci.create(&bundle, &id, &[]);
    assert!(out.status.success(), "{}", show(&out));
    let pid = pid_of(&pid_file);

    let other = Bundle::new(&["true"]);
    let (out, other_pid_file) = oci.create(&other, &id, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists"),
        "{}",
        show(&out)
    );
    assert!(!other_pid_file.exists());
    assert_eq!(
        oci.state(&id)["status"],
        "created",
        "the first container is untouched"
    );
    assert_eq!(oci.state(&id)["pid"], pid);

    oci.ok(&["start", &id]);
    assert_eq!(oci.state(&id)["status"], "running");
    let out = oci.run(&["start", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot start"),
        "{}",
        show(&out)
    );

    let out = oci.run(&["delete", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not stopped"),
        "{}",
        show(&out)
    );
    assert_eq!(
        oci.state(&id)["status"],
        "running",
        "a refused delete changes nothing"
    );

    oci.ok(&["kill", &id, "KILL"]);
    assert_eq!(wait_exit(pid), 137);
    let out = oci.run(&["kill", &id, "TERM"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not running"),
        "{}",
        show(&out)
    );
    let out = oci.run(&["start", &id]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stopped"),
        "{}",
        show(&out)
    );
    oci.ok(&["delete", &id]);
    assert_eq!(oci.leftovers(), 0);
}

#[test]
fn exec_ps_pause_resume_and_delete_force() {
    let oci = Oci::new();
    let bundle = Bundle::new(&["sleep", "1000"]);
    let id = unique("exec");
    let (out, pid_file) = oci.create(&bundle, &id, &[]);
    assert!(out.status.success(), "{}", show(&out));
    let pid = pid_of(&pid_file);
    oci.ok(&["start", &id]);

    let out = oci.run(&[
        "exec",
        &id,
        "sh",
        "-c",
        "echo $(hostname) $(cat /proc/1/cmdline | tr '\\0' ' '); exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hull-oci-test sleep 1000\n"
    );

    // --process FILE, detached, with its own pid file (what conmon does).
    let process = json!({"args": ["sleep", "1000"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                         "env": ["PATH=/bin"]});
    let process_file = bundle.path().join("process.json");
    fs::write(&process_file, process.to_string()).unwrap();
    let exec_pid_file = bundle.path().join("exec.pid");
    // The detached process keeps the streams it is given: files, not our pipes.
    let log = bundle.path().join("exec.log");
    let status = oci
        .cmd(&[
            "exec",
            "--process",
            process_file.to_str().unwrap(),
            "--detach",
            "--pid-file",
            exec_pid_file.to_str().unwrap(),
            &id,
        ])
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log).unwrap())
        .stderr(fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "{}", fs::read_to_string(&log).unwrap());
    let exec_pid = pid_of(&exec_pid_file);
    let pids: Vec<i32> = serde_json::from_str(&oci.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(
        pids.contains(&pid) && pids.contains(&exec_pid),
        "{pids:?} {pid} {exec_pid}"
    );

    oci.ok(&["pause", &id]);
    assert_eq!(oci.state(&id)["status"], "paused");
    let frozen = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        frozen.contains("State:\tD") || frozen.contains("State:\tS"),
        "{frozen}"
    );
    oci.ok(&["resume", &id]);
    assert_eq!(oci.state(&id)["status"], "running");

    oci.ok(&["delete", "--force", &id]);
    // The detached exec first: it is in the container's PID namespace but our (adopted)
    // child, and the namespace's init cannot finish exiting until it is reaped.
    poll(
        "the detached exec ended with its container",
        Duration::from_secs(10),
        || {
            // SAFETY: waitpid with WNOHANG on our (adopted) child.
            let r = unsafe { libc::waitpid(exec_pid, std::ptr::null_mut(), libc::WNOHANG) };
            (r == exec_pid || r < 0).then_some(())
        },
    );
    assert_eq!(wait_exit(pid), 137);
    assert_eq!(oci.leftovers(), 0);
}

#[test]
fn a_terminal_goes_to_the_console_socket() {
    let oci = Oci::new();
    let mut config = default_config(&["sh", "-c", "tty; exit 2"]);
    config["process"]["terminal"] = json!(true);
    let bundle = Bundle::with_config(config);
    let sock = bundle.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let id = unique("tty");
    let accept = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        hull_oci::console::receive_master(conn.as_fd()).unwrap()
    });
    let (out, pid_file) = oci.create(&bundle, &id, &["--console-socket", sock.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    let (_name, master) = accept.join().unwrap();
    let pid = pid_of(&pid_file);
    oci.ok(&["start", &id]);
    let mut output = String::new();
    let mut master = fs::File::from(master);
    // The terminal's output until the process is gone (EIO once the slave closes).
    let _ = std::io::Read::read_to_string(&mut master, &mut output);
    assert_eq!(wait_exit(pid), 2);
    assert!(output.contains("/dev/pts/0"), "{output:?}");
    oci.ok(&["delete", &id]);

    // Terminal without a socket: refused before anything is made.
    let (out, _) = oci.create(&bundle, &id, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(oci.leftovers(), 0);
}

#[test]
fn unknown_properties_are_ignored() {
    let oci = Oci::new();
    let mut config = default_config(&["sh", "-c", "echo fine"]);
    config["hullFuture"] = json!({"anything": [1, 2]});
    config["process"]["someday"] = json!(true);
    config["linux"]["notYet"] = json!("x");
    let bundle = Bundle::with_config(config);
    let id = unique("unknown");
    let (out, pid_file) = oci.create(&bundle, &id, &[]);
    assert!(out.status.success(), "{}", show(&out));
    oci.ok(&["start", &id]);
    assert_eq!(wait_exit(pid_of(&pid_file)), 0);
    assert_eq!(
        fs::read_to_string(bundle.path().join("stdout")).unwrap(),
        "fine\n"
    );
    oci.ok(&["delete", &id]);
}
