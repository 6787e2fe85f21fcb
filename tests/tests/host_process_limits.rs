//! Resource limits with `--isolation=process`: PIDs, memory, CPU, enforced by cgroups.

mod process_common;

use std::path::Path;
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

/// The CPU controller's own counters for a container: periods it was active in, periods it
/// was throttled in, and the CPU time its processes used (microseconds).
#[derive(Debug, Clone, Copy)]
struct CpuCounters {
    periods: u64,
    throttled: u64,
    used_us: u64,
}

/// Reads the counters: cgroup v2's cpu.stat has all three; on v1, cpu.stat has the periods
/// and the CPU time is summed from /proc over the cgroup's processes. The time is read
/// first: the periods only grow meanwhile, so the comparison below cannot be skewed.
fn cpu_counters(id: &str) -> CpuCounters {
    let v1 = format!("/sys/fs/cgroup/cpu/hull/{id}");
    let v2 = format!("/sys/fs/cgroup/hull/{id}");
    let dir = if Path::new(&v1).join("cpu.stat").exists() {
        v1
    } else {
        v2
    };
    let get = |text: &str, k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().parse::<u64>().unwrap()))
    };
    let used_us = match get(
        &std::fs::read_to_string(format!("{dir}/cpu.stat")).unwrap(),
        "usage_usec ",
    ) {
        Some(us) => us,
        None => {
            // SAFETY: sysconf has no preconditions.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
            let procs = std::fs::read_to_string(format!("{dir}/cgroup.procs")).unwrap();
            procs
                .lines()
                .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
                .map(|stat| {
                    // Fields after the command name: utime stime cutime cstime are 14-17.
                    let after = &stat[stat.rfind(')').unwrap() + 2..];
                    let f: Vec<u64> = after
                        .split(' ')
                        .skip(11)
                        .take(4)
                        .map(|v| v.parse().unwrap())
                        .collect();
                    f.iter().sum::<u64>() * 1_000_000 / hz
                })
                .sum()
        }
    };
    let stat = std::fs::read_to_string(format!("{dir}/cpu.stat")).unwrap();
    CpuCounters {
        periods: get(&stat, "nr_periods ").unwrap_or(0),
        throttled: get(&stat, "nr_throttled ").unwrap_or(0),
        used_us,
    }
}

#[test]
fn cpu_limit_throttles_a_busy_loop() {
    let env = Env::new();
    // A small limit (2 ms per 100 ms period): throttling shows only when the loop gets more
    // CPU than its quota, and on a busy 2-CPU host (load 25+) a container gets well under
    // 0.2 CPU while it easily gets 0.02.
    let id = env.detached("spinner", &["--cpus", "0.02"], "while :; do :; done");
    // Wait (with a deadline, however busy the host) until the controller has throttled the
    // loop in a few periods; without the limit it never would.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = cpu_counters(&id);
    while seen.throttled < 5 {
        assert!(
            Instant::now() < deadline,
            "the busy loop was never throttled: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
        seen = cpu_counters(&id);
    }
    // In the periods it was active the loop used no more than its 2 ms (plus up to a
    // scheduler tick of overrun per period, and one period's worth of slack).
    let allowed_us = seen.periods * (2_000 + 4_000) + 100_000;
    assert!(
        seen.used_us <= allowed_us,
        "the loop used {} ms of CPU in {} periods: more than 0.02 CPU ({seen:?})",
        seen.used_us / 1000,
        seen.periods
    );
    env.ok(["rm", "-f", "spinner"]);
    env.assert_clean(&[id]);
}
