//! Tier 2: `hull run` killed with SIGKILL at any point of its start-up (issue 10, item 4).
//! A test binary of its own: while it runs, containers whose `hull` was just killed hold
//! empty cgroups until the next `hull ps` collects them, which other tests' leak checks
//! would see.

mod process_common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use process_common::{Env, IMAGE};

/// How many times `hull run` is killed (spread over the three ways to start).
const KILLS: usize = 240;

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A small deterministic generator (the seed is printed, to replay a failure).
struct XorShift(u64);

impl XorShift {
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How long `hull run --rm IMAGE true` takes here (median of 5), to spread the kills.
fn median_start(env: &Env) -> Duration {
    let mut times: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            env.ok(["run", "--rm", IMAGE, "true"]);
            t.elapsed()
        })
        .collect();
    times.sort();
    times[2]
}

/// (pid, cgroup membership) of every live process running `sleep MARKER`.
fn processes_running(marker: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if cmd != format!("sleep\0{marker}\0").as_bytes() {
            continue;
        }
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        if stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
        {
            continue;
        }
        let cgroup = std::fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
        found.push((pid, cgroup));
    }
    found
}

/// Waits (bounded: processes being killed take a moment to go) until no process
/// `sleep MARKER` matches `unwanted`; returns those still there at the deadline.
fn wait_until_none(marker: &str, unwanted: impl Fn(u32, &str) -> bool) -> Vec<(u32, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<_> = processes_running(marker)
            .into_iter()
            .filter(|(pid, cgroup)| unwanted(*pid, cgroup))
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `hull run` killed with SIGKILL at random points of its start-up, many times, in the
/// three ways a container starts (foreground, detached, with limits): afterwards every
/// container that runs is one `hull ps` lists (so `hull rm -f` can reach it), and once
/// they are removed nothing is left: no workload process anywhere, no state directory,
/// no name reservation, no cgroup, no mount. The delays are the attack: they spread the
/// kills over the start-up, measured first on this machine.
#[test]
fn kill_9_of_hull_run_at_any_point_leaves_no_orphan() {
    let env = Env::new();
    // A workload no other test runs, to find every copy of it on the host.
    let marker = format!(
        "{}.{}",
        4000 + std::process::id() % 1000,
        now_nanos() % 1000
    );
    let workload = ["sleep", marker.as_str()];
    let start_time = median_start(&env);
    let mut rng = XorShift(now_nanos() | 1);
    eprintln!("start-up takes about {start_time:?} here; seed {}", rng.0);
    let variants: [&[&str]; 3] = [
        &["run", "--rm"],
        &["run", "-d"],
        &["run", "--rm", "-m", "64m"],
    ];
    for round in 0..KILLS {
        let flags = variants[round % variants.len()];
        let mut args: Vec<&str> = flags.to_vec();
        args.push(IMAGE);
        args.extend_from_slice(&workload);
        let mut child = env
            .hull(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = start_time.mul_f64(2.0 * rng.unit());
        std::thread::sleep(delay);
        // SAFETY: kill(2) of our own child, which we reap right after.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        // Collected now and then (what any later `hull ps` does), so the containers of
        // killed runs do not pile up on a machine other tests share.
        if round % 20 == 19 {
            env.ok(["ps", "-q"]);
        }
    }

    // Every workload still running belongs to a container `hull ps` lists.
    // (A workload is its container's first process: `ps` shows its pid.)
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&env.ok(["ps", "-a", "--format", "json"])).unwrap();
    let listed: Vec<String> = rows
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let pids: Vec<u64> = rows.iter().filter_map(|r| r["pid"].as_u64()).collect();
    let orphans = wait_until_none(&marker, |pid, cgroup| {
        !pids.contains(&u64::from(pid)) && !listed.iter().any(|id| cgroup.contains(id.as_str()))
    });
    assert!(
        orphans.is_empty(),
        "workloads running in no container hull lists (orphans): {orphans:?}"
    );
    // rm -f of everything listed removes everything.
    if !listed.is_empty() {
        let mut args = vec!["rm".to_string(), "-f".into()];
        args.extend(listed.iter().cloned());
        env.ok(&args);
    }
    let left = wait_until_none(&marker, |_, _| true);
    assert!(left.is_empty(), "workloads left after rm -f: {left:?}");
    env.assert_clean(&listed);
}
