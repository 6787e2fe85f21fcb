//! Tier 4: the nested harness itself — the outer machine boots, gives a real /dev/kvm,
//! carries the files a test passes, reports the script's status, is killed on timeout, and
//! a machine that freezes is found by its silence and counted as a failure.

use std::time::Duration;

use hull_tests::harness::{Harness, OuterFault};

#[test]
fn the_outer_machine_has_kvm_and_the_files_given() {
    Harness::require();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/data.txt"), "tree content\n").unwrap();
    std::fs::write(dir.path().join("single.txt"), "single content\n").unwrap();
    let run = Harness::new()
        .binary(&hull_tests::binary("hull-probe"), "/usr/bin/hull-probe")
        .file(&dir.path().join("single.txt"), "/data/single.txt")
        .dir(dir.path(), "/data/tree")
        .run(
            r#"
            test -c /dev/kvm && echo kvm=present
            grep -q svm /proc/cpuinfo && echo svm=yes
            grep -q '^kvm_amd ' /proc/modules && echo kvm_amd=loaded
            echo "single=$(cat /data/single.txt)"
            echo "tree=$(cat /data/tree/sub/data.txt)"
            hull-probe 2>&1 | grep -q usage && echo probe=runs
            exit 7
            "#,
            Duration::from_secs(180),
        );
    assert_eq!(run.status, Some(7), "{run}");
    assert_eq!(run.outer_fault(), None, "{run}");
    assert_eq!(run.value("kvm"), Some("present"), "{run}");
    assert_eq!(run.value("svm"), Some("yes"), "{run}");
    assert_eq!(run.value("kvm_amd"), Some("loaded"), "{run}");
    assert_eq!(run.value("single"), Some("single content"), "{run}");
    assert_eq!(run.value("tree"), Some("tree content"), "{run}");
    assert_eq!(run.value("probe"), Some("runs"), "{run}");
}

#[test]
fn a_hanging_script_is_killed_at_the_timeout() {
    Harness::require();
    let timeout = Duration::from_secs(20);
    // (Whether the machine got as far as the script in 20 s depends on the host's load,
    // so that is not asserted: the kill must come at the timeout either way.)
    let run = Harness::new().run("sleep 1000", timeout);
    // Killed because the timeout passed, not because the machine went silent; no status,
    // since the script never finished.
    assert!(run.timed_out, "{run}");
    assert!(!run.outer_silent && !run.outer_lockup, "{run}");
    assert_eq!(run.status, None, "{run}");
    assert!(run.elapsed >= timeout, "killed before its timeout: {run}");
}

/// A test host that freezes (seen under TCG's SVM emulation: no output, no timers, so the
/// script's own timeouts never fire) is found by its silent heartbeat, not at the run's
/// timeout, and is a failed run: no retry unless one is opted into.
#[test]
fn a_frozen_machine_is_found_by_its_silence_and_not_retried() {
    Harness::require();
    // Stopping the heartbeat is what a frozen machine looks like from outside. The run's
    // timeout is far away: only the silence can end this run.
    let run = Harness::new()
        .heartbeat_silence_limit(Duration::from_secs(20))
        .retry_frozen(false)
        .run(
            "echo attempt; kill -STOP $(cat /harness/heartbeat.pid); sleep 1000",
            Duration::from_secs(3600),
        );
    assert!(run.outer_silent, "found by its silence: {run}");
    assert_eq!(run.outer_fault(), Some(OuterFault::Frozen), "{run}");
    assert!(!run.success(), "{run}");
    assert_eq!(run.status, None, "{run}");
    assert_eq!(run.attempts, 1, "{run}");
    assert_eq!(run.output.matches("attempt").count(), 1, "{run}");
}
