//! runc's rules per command, checked with a stand-in model whose container process is a
//! real `sleep` child (the models themselves are tested through the binary, in tests/).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use oci_spec::runtime::LinuxResources;

use super::*;
use crate::cli::{CreateArgs, DeleteArgs, KillArgs};
use crate::runner::{ExecRequest, Waitable};
use crate::state::Locked;

/// What the stand-in model was asked to do.
#[derive(Default)]
struct Log {
    calls: Vec<String>,
    fail_create: bool,
}

struct Sleeper(Arc<Mutex<Log>>);

fn reap(pid: i32) {
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
}

impl Runner for Sleeper {
    fn model(&self) -> Model {
        Model::Process
    }
    fn create(&self, req: &CreateRequest<'_>) -> Result<ProcRef> {
        let mut log = self.0.lock().unwrap();
        log.calls.push(format!("create {}", req.dir.id));
        // A file in the state directory, as a real model leaves, to see it removed.
        fs::write(req.dir.file("model-file"), "x").unwrap();
        if log.fail_create {
            return Err(OciError::Runtime("the model failed".into()));
        }
        // Reaped by `destroy` or the test (waitpid), as a container's subreaper would.
        #[allow(clippy::zombie_processes)]
        let child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        Ok(ProcRef::of(child.id() as i32).unwrap())
    }
    fn start(&self, dir: &Locked, _: &Record) -> Result<()> {
        self.0
            .lock()
            .unwrap()
            .calls
            .push(format!("start {}", dir.id));
        Ok(())
    }
    fn signal(&self, dir: &Locked, r: &Record, signal: i32, all: bool) -> Result<()> {
        self.0
            .lock()
            .unwrap()
            .calls
            .push(format!("signal {} {signal} {all}", dir.id));
        let pid = r.init.unwrap().pid;
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid, signal) };
        if signal == libc::SIGKILL {
            reap(pid);
        }
        Ok(())
    }
    fn exec(&self, _: &Locked, _: &Record, _: ExecRequest) -> Result<Option<Box<dyn Waitable>>> {
        Ok(None)
    }
    fn pids(&self, _: &Locked, r: &Record) -> Result<Vec<i32>> {
        Ok(vec![r.init.unwrap().pid])
    }
    fn pause(&self, _: &Locked, _: &Record) -> Result<()> {
        Ok(())
    }
    fn resume(&self, _: &Locked, _: &Record) -> Result<()> {
        Ok(())
    }
    fn update(&self, _: &Locked, _: &Record, _: &LinuxResources) -> Result<()> {
        Ok(())
    }
    fn destroy(&self, dir: &Locked, r: &Record) -> Result<()> {
        self.0
            .lock()
            .unwrap()
            .calls
            .push(format!("destroy {}", dir.id));
        if let Some(p) = r.init {
            if p.alive() {
                // SAFETY: kill(2) on our own child.
                unsafe { libc::kill(p.pid, libc::SIGKILL) };
            }
            reap(p.pid);
        }
        Ok(())
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    bundle: PathBuf,
    root: PathBuf,
    log: Arc<Mutex<Log>>,
    ctx: Context,
}

fn fixture() -> Fixture {
    fixture_with(Invocation::Default)
}

fn fixture_with(invocation: Invocation) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    fs::create_dir_all(bundle.join("rootfs")).unwrap();
    fs::write(
        bundle.join("config.json"),
        r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},
            "process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},
            "annotations":{"a":"b"}}"#,
    )
    .unwrap();
    let root = tmp.path().join("state");
    let log = Arc::new(Mutex::new(Log::default()));
    let for_runner = log.clone();
    let ctx = Context {
        store: Store::new(&root),
        invocation,
        systemd_cgroup: false,
        hull_config: tmp.path().join("no-config.json"),
        runners: Box::new(move |_| Ok(Box::new(Sleeper(for_runner.clone())))),
    };
    Fixture {
        _tmp: tmp,
        bundle,
        root,
        log,
        ctx,
    }
}

impl Fixture {
    fn create(&self, id: &str) -> Result<ProcRef> {
        create(&self.ctx, &self.create_args(id))
    }

    fn create_args(&self, id: &str) -> CreateArgs {
        CreateArgs {
            bundle: self.bundle.clone(),
            console_socket: None,
            pid_file: Some(self.pid_file(id)),
            no_pivot: false,
            no_new_keyring: false,
            preserve_fds: 0,
            id: id.into(),
        }
    }

    fn pid_file(&self, id: &str) -> PathBuf {
        self.bundle.join(format!("{id}.pid"))
    }

    fn status(&self, id: &str) -> Status {
        self.ctx.store.peek(id).unwrap().status()
    }

    fn delete(&self, id: &str, force: bool) -> Result<()> {
        delete(
            &self.ctx,
            &DeleteArgs {
                force,
                id: id.into(),
            },
        )
    }

    fn calls(&self) -> Vec<String> {
        self.log.lock().unwrap().calls.clone()
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn create_start_delete_walks_runc_statuses() {
    let f = fixture();
    let init = f.create("c1").unwrap();
    assert_eq!(
        fs::read_to_string(f.pid_file("c1")).unwrap(),
        init.pid.to_string()
    );
    assert_eq!(f.status("c1"), Status::Created);
    let st = f.ctx.store.peek("c1").unwrap().runc_state();
    assert_eq!(st.pid, init.pid);
    assert_eq!(st.annotations.get("a").map(String::as_str), Some("b"));
    assert_eq!(
        st.rootfs,
        fs::canonicalize(f.bundle.join("rootfs")).unwrap()
    );
    start(&f.ctx, "c1").unwrap();
    assert_eq!(f.status("c1"), Status::Running);
    pause(&f.ctx, "c1", true).unwrap();
    assert_eq!(f.status("c1"), Status::Paused);
    assert!(pause(&f.ctx, "c1", true).is_err());
    pause(&f.ctx, "c1", false).unwrap();
    assert!(matches!(
        pause(&f.ctx, "c1", false),
        Err(OciError::NotPaused(_))
    ));
    let err = f.delete("c1", false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot delete container c1 that is not stopped: running"
    );
    assert_eq!(
        f.status("c1"),
        Status::Running,
        "a refused delete changes nothing"
    );
    kill(
        &f.ctx,
        &KillArgs {
            all: false,
            id: "c1".into(),
            signal: "KILL".into(),
        },
    )
    .unwrap();
    assert_eq!(f.status("c1"), Status::Stopped);
    let err = kill(
        &f.ctx,
        &KillArgs {
            all: false,
            id: "c1".into(),
            signal: "TERM".into(),
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("not running"), "{err}");
    kill(
        &f.ctx,
        &KillArgs {
            all: true,
            id: "c1".into(),
            signal: "KILL".into(),
        },
    )
    .expect("kill --all of a stopped container succeeds, as with runc");
    f.delete("c1", false).unwrap();
    assert!(entries(&f.root).is_empty(), "{:?}", entries(&f.root));
    let err = f.delete("c1", false).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert_eq!(
        f.calls(),
        vec![
            "create c1",
            "start c1",
            "signal c1 9 false",
            "signal c1 9 true",
            "destroy c1"
        ]
    );
}

#[test]
fn start_twice_and_start_after_exit_are_refused() {
    let f = fixture();
    f.create("c2").unwrap();
    start(&f.ctx, "c2").unwrap();
    let err = start(&f.ctx, "c2").unwrap_err();
    assert_eq!(err.to_string(), "cannot start an already running container");
    f.delete("c2", true).unwrap();
    f.create("c2").unwrap();
    let init = f.ctx.store.peek("c2").unwrap().init.unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(init.pid, libc::SIGKILL) };
    reap(init.pid);
    let err = start(&f.ctx, "c2").unwrap_err();
    assert_eq!(err.to_string(), "cannot start a container that has stopped");
    f.delete("c2", false).unwrap();
}

#[test]
fn a_duplicate_id_is_refused_and_the_first_container_is_untouched() {
    let f = fixture();
    let first = f.create("dup").unwrap();
    let before = fs::read(f.root.join("dup/state.json")).unwrap();
    let err = f.create("dup").unwrap_err();
    assert_eq!(err.to_string(), "container with id dup already exists");
    assert_eq!(fs::read(f.root.join("dup/state.json")).unwrap(), before);
    assert!(first.alive());
    assert_eq!(f.status("dup"), Status::Created);
    assert_eq!(
        f.calls(),
        vec!["create dup"],
        "the model was not asked twice"
    );
    f.delete("dup", false).unwrap();
}

#[test]
fn a_failed_create_leaves_nothing_behind() {
    let f = fixture();
    f.log.lock().unwrap().fail_create = true;
    let err = f.create("bad").unwrap_err();
    assert_eq!(err.to_string(), "the model failed");
    assert!(entries(&f.root).is_empty(), "{:?}", entries(&f.root));
    assert!(!f.pid_file("bad").exists());
    assert_eq!(f.calls(), vec!["create bad", "destroy bad"]);
}

#[test]
fn bad_bundles_fail_before_anything_is_made() {
    let f = fixture();
    fs::write(f.bundle.join("config.json"), "{not json").unwrap();
    let err = f.create("x").unwrap_err();
    assert!(err.to_string().contains("not valid JSON"), "{err}");
    fs::remove_file(f.bundle.join("config.json")).unwrap();
    let err = f.create("x").unwrap_err();
    assert!(err.to_string().contains("config.json not found"), "{err}");
    let err = f.create("../escape").unwrap_err();
    assert!(matches!(err, OciError::InvalidId(_)), "{err}");
    assert!(!f.root.exists(), "no state root was even made");
    assert!(f.calls().is_empty());
}

#[test]
fn terminal_and_console_socket_must_agree() {
    let f = fixture();
    let mut args = f.create_args("t");
    args.console_socket = Some(f.bundle.join("sock"));
    let err = create(&f.ctx, &args).unwrap_err();
    assert!(
        err.to_string().contains("process.terminal is not set"),
        "{err}"
    );
    let config = fs::read_to_string(f.bundle.join("config.json"))
        .unwrap()
        .replace("\"args\"", "\"terminal\":true,\"args\"");
    fs::write(f.bundle.join("config.json"), config).unwrap();
    let err = f.create("t").unwrap_err();
    assert!(
        err.to_string().contains("--console-socket is required"),
        "{err}"
    );
    assert!(f.calls().is_empty());
}

#[test]
fn a_crashed_create_is_stopped_and_deletable() {
    let f = fixture();
    let dir = f.ctx.store.claim("half").unwrap();
    let record = Record {
        id: "half".into(),
        bundle: f.bundle.clone(),
        rootfs: f.bundle.join("rootfs"),
        created: state::now_rfc3339(),
        owner: String::new(),
        annotations: Default::default(),
        model: Model::Process,
        phase: Phase::Creating,
        // A process that is gone: the create that claimed the id died.
        creator: Some(ProcRef {
            pid: i32::MAX,
            start_time: 1,
        }),
        init: None,
        paused: false,
    };
    dir.write(&record).unwrap();
    drop(dir);
    assert_eq!(f.status("half"), Status::Stopped);
    f.delete("half", false).unwrap();
    assert!(entries(&f.root).is_empty());
}

#[test]
fn later_edits_of_config_json_do_not_change_the_container() {
    let f = fixture();
    f.create("snap").unwrap();
    fs::write(f.bundle.join("config.json"), "garbage").unwrap();
    let dir = f.ctx.store.open("snap").unwrap();
    let spec = exec::load_recorded_spec(&dir).unwrap();
    assert_eq!(
        spec.process().as_ref().unwrap().args().as_ref().unwrap()[0],
        "sh"
    );
    drop(dir);
    f.delete("snap", true).unwrap();
}

#[test]
fn vm_only_invocation_refuses_an_opt_out() {
    let f = fixture_with(Invocation::VmOnly);
    let config = fs::read_to_string(f.bundle.join("config.json"))
        .unwrap()
        .replace("\"a\":\"b\"", "\"io.hull.isolation\":\"process\"");
    fs::write(f.bundle.join("config.json"), config).unwrap();
    let err = f.create("vm1").unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    assert!(f.calls().is_empty());
}

#[test]
fn systemd_cgroup_is_refused_with_the_reason_before_anything_is_made() {
    let mut f = fixture();
    f.ctx.systemd_cgroup = true;
    let err = f.create("sd").unwrap_err();
    assert!(err.to_string().contains("--systemd-cgroup"), "{err}");
    assert!(f.calls().is_empty());
    assert!(!f.root.exists());
}

#[test]
fn poststart_runs_after_start_and_poststop_at_delete_failures_only_warn() {
    let f = fixture();
    let marks = f.bundle.join("marks");
    let config = format!(
        r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},
            "process":{{"args":["sh"],"cwd":"/","user":{{"uid":0,"gid":0}}}},
            "hooks":{{"poststart":[{{"path":"/bin/sh","args":["sh","-c","echo start >> {m}"]}},
                                  {{"path":"/bin/false"}}],
                     "poststop":[{{"path":"/bin/sh","args":["sh","-c","echo stop >> {m}"]}}]}}}}"#,
        m = marks.display()
    );
    fs::write(f.bundle.join("config.json"), config).unwrap();
    f.create("hooked").unwrap();
    assert!(!marks.exists(), "no hook before start");
    start(&f.ctx, "hooked").unwrap();
    assert_eq!(fs::read_to_string(&marks).unwrap(), "start\n");
    f.delete("hooked", true).unwrap();
    assert_eq!(fs::read_to_string(&marks).unwrap(), "start\nstop\n");
}
