//! Tier 2: hull's executor driven the way hull-oci drives it (runc's create/start split), on
//! this host's real cgroups: `spawn::create` returns while the init waits at the start gate
//! (nobody has opened the FIFO yet); a container with a cgroupsPath and no limits has its
//! cgroup in every hierarchy (the v1 freezer included: `pause` needs it); a spec that denies
//! every device (runtime-tools' default) still gets a working /dev/null; nothing is left.

use std::fs;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use hull_executor::cgroups::driver;
use hull_executor::plan::{Host, Plan, RootSource};
use hull_executor::spawn::{self, Options, Stdio};
use hull_tests::oci::{unique, Bundle};
use serde_json::json;

const PARENT: &str = "hull-executor-test";

/// Every cgroup hierarchy of this host (v1: each mount under /sys/fs/cgroup; v2: the root).
fn hierarchies() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()];
    }
    fs::read_dir(root)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").exists())
        .collect()
}

/// Kills the container and removes its cgroups and the test's parent, also on failure.
struct Cleanup {
    pid: Option<i32>,
    path: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            // SAFETY: kill + waitpid of our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
        let layout = hull_executor::cgroups::Layout::host();
        let _ = driver::remove(&layout, &self.path);
        for h in hierarchies() {
            let _ = fs::remove_dir(h.join(PARENT));
        }
    }
}

#[test]
fn a_gated_init_is_in_every_hierarchy_and_a_deny_all_spec_keeps_dev_null() {
    let id = unique("gate");
    let cgroup = Path::new(PARENT).join(&id);
    let mut config = hull_tests::oci::default_config(&[
        "sh",
        "-c",
        "echo written > /dev/null && head -c 4 /dev/zero | wc -c",
    ]);
    config["linux"]["cgroupsPath"] = json!(Path::new("/").join(&cgroup));
    config["linux"]["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]});
    let bundle = Bundle::with_config(config.clone());
    let spec: oci_spec::runtime::Spec = serde_json::from_value(config).unwrap();
    let host = Host::detect();
    let plan = Plan::new(&spec, bundle.path(), &RootSource::Ready, &host).expect("plan");
    let gate = bundle.path().join("exec.fifo");
    nix::unistd::mkfifo(&gate, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut cleanup = Cleanup {
        pid: None,
        path: cgroup.clone(),
    };

    // create, in a thread: if it waited for a reader of the gate it would never return.
    let (tx, rx) = mpsc::channel();
    let (plan2, layout, gate2, out_fd) = (
        plan,
        host.cgroups.clone(),
        gate.clone(),
        out.as_file().try_clone().unwrap(),
    );
    std::thread::spawn(move || {
        let r = spawn::create(
            &plan2,
            &layout,
            &Options {
                stdio: Stdio::Pipes {
                    stdin: None,
                    stdout: out_fd.as_fd(),
                    stderr: out_fd.as_fd(),
                },
                die_with_parent: false,
                start_gate: Some(&gate2),
                timeout: Duration::from_secs(30),
            },
        );
        let _ = tx.send(r.map(|s| s.pid).map_err(|e| e.to_string()));
    });
    let created = rx.recv_timeout(Duration::from_secs(40));
    if created.is_err() {
        // Release a create stuck opening the FIFO (read+write never blocks) so the test ends.
        let _ = fs::OpenOptions::new().read(true).write(true).open(&gate);
        panic!("spawn::create did not return while the start gate had no reader");
    }
    let pid = created.unwrap().expect("spawn::create");
    cleanup.pid = Some(pid);

    let missing: Vec<_> = hierarchies()
        .into_iter()
        .filter(|h| {
            let procs =
                fs::read_to_string(h.join(&cgroup).join("cgroup.procs")).unwrap_or_default();
            !procs.lines().any(|l| l.trim() == pid.to_string())
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the gated init {pid} is not in its cgroup in {missing:?}"
    );

    // start: open the gate for reading; the init writes its byte and execs.
    let mut byte = [0u8; 1];
    fs::File::open(&gate)
        .unwrap()
        .read_exact(&mut byte)
        .expect("the init passes the gate");
    let mut status = 0;
    // SAFETY: waitpid of our own child into a local.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    cleanup.pid = None;
    let output = fs::read_to_string(out.path()).unwrap();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the container failed ({status:#x}): {output}"
    );
    assert_eq!(output.trim(), "4", "/dev/null and /dev/zero usable");

    drop(cleanup);
    let left: Vec<_> = hierarchies()
        .into_iter()
        .map(|h| h.join(PARENT))
        .filter(|p| p.exists())
        .collect();
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
}
