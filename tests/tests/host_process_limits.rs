//! Resource limits with `--isolation=process`: PIDs, memory, CPU, enforced by cgroups.

mod process_common;

use std::time::{Duration, Instant};

use process_common::Env;

#[test]
fn fork_bomb_stops_at_the_pid_limit() {
    let env = Env::new();
    // A fork bomb: spawn until fork fails, then PID 1 becomes a sleeper without forking.
    let id = env.detached(
        "bomb",
        &["--pids-limit", "32"],
        "(while :; do sleep 1000 & done) 2>/dev/null; exec sleep 1000",
    );
    let pids = |file: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/pids/hull/{id}/{file}"))
            .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup/hull/{id}/{file}")))
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = pids("pids.events");
        let refused: u64 = events
            .trim()
            .strip_prefix("max ")
            .unwrap_or("0")
            .parse()
            .unwrap();
        if refused > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the bomb never hit the limit: {events}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let current: u64 = pids("pids.current").trim().parse().unwrap();
    assert!(current <= 32, "at most 32 tasks: {current}");
    assert_eq!(
        env.inspect("bomb")["status"],
        "running",
        "the container survives its bomb"
    );
    // The host is fine: another container starts normally.
    assert_eq!(env.sh(&[], "echo alive").0, "alive\n");
    env.ok(["rm", "-f", "bomb"]);
    env.assert_clean(&[id]);
}

#[test]
fn memory_hog_is_oom_killed_with_137_and_the_host_is_unharmed() {
    let env = Env::new();
    // Keep 200 MiB in a shell variable: far over the 32 MiB limit.
    let (out, _, code) = env.sh(
        &["--memory", "32m"],
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived ${#x}",
    );
    assert_eq!(code, 137, "OOM kill is reported as 128+SIGKILL: {out}");
    assert!(!out.contains("survived"));
    // Under the limit the same work succeeds.
    let (out, _, code) = env.sh(
        &["--memory", "64m"],
        "x=$(head -c 10000000 /dev/zero | tr '\\0' a); echo ${#x}",
    );
    assert_eq!((out.as_str(), code), ("10000000\n", 0));
    // Detached: the limit is visible in the container's cgroup.
    let id = env.detached("limited", &["--memory", "48m"], "sleep 1000");
    let limit = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/hull/{id}/memory.limit_in_bytes"
    ))
    .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup/hull/{id}/memory.max")))
    .unwrap();
    assert_eq!(limit.trim(), (48u64 << 20).to_string());
    env.ok(["rm", "-f", "limited"]);
    env.assert_clean(&[id]);
}

/// `usage_usec`/`usage` of the container's CPU accounting, in microseconds.
fn cpu_throttled(id: &str) -> (u64, u64) {
    let v1 = std::fs::read_to_string(format!("/sys/fs/cgroup/cpu/hull/{id}/cpu.stat"));
    let text = v1
        .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup/hull/{id}/cpu.stat")))
        .unwrap();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().parse::<u64>().unwrap()))
            .unwrap_or(0)
    };
    (get("nr_periods "), get("nr_throttled "))
}

#[test]
fn cpu_limit_throttles_a_busy_loop() {
    let env = Env::new();
    let id = env.detached("spinner", &["--cpus", "0.2"], "while :; do :; done");
    let quota = std::fs::read_to_string(format!("/sys/fs/cgroup/cpu/hull/{id}/cpu.cfs_quota_us"))
        .map(|q| q.trim().to_string())
        .or_else(|_| {
            std::fs::read_to_string(format!("/sys/fs/cgroup/hull/{id}/cpu.max"))
                .map(|m| m.split(' ').next().unwrap().to_string())
        })
        .unwrap();
    assert_eq!(quota, "20000", "0.2 CPU = 20 ms per 100 ms period");
    // Let it spin for a second: most periods must end throttled.
    let start = Instant::now();
    let mut seen = (0, 0);
    while start.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(100));
        seen = cpu_throttled(&id);
    }
    let (periods, throttled) = seen;
    assert!(periods >= 5, "periods: {periods}");
    assert!(
        throttled * 2 >= periods,
        "throttled {throttled} of {periods} periods"
    );
    env.ok(["rm", "-f", "spinner"]);
    env.assert_clean(&[id]);
}
