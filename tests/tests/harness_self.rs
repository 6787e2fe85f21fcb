//! Tier 4: the nested harness itself — the outer machine boots, gives a real /dev/kvm,
//! carries the files a test passes, reports the script's status, and is killed on timeout.

use std::time::{Duration, Instant};

use hull_tests::harness::Harness;

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
    let start = Instant::now();
    let run = Harness::new().run("sleep 1000", Duration::from_secs(20));
    assert!(run.timed_out, "{run}");
    assert_eq!(run.status, None, "{run}");
    assert!(
        start.elapsed() < Duration::from_secs(40),
        "took {:?}",
        start.elapsed()
    );
}

/// A test host that freezes (seen under TCG's SVM emulation: no output, no timers, so the
/// script's own timeouts never fire) is found by its silent heartbeat long before the run's
/// timeout, and the run is retried once on a fresh machine.
#[test]
fn a_frozen_machine_is_found_by_its_silence_and_retried_once() {
    Harness::require();
    let start = Instant::now();
    // Stopping the heartbeat is what a frozen machine looks like from outside.
    let run = Harness::new()
        .heartbeat_silence_limit(Duration::from_secs(20))
        .simulating_host_failure()
        .run(
            "echo attempt; kill -STOP $(cat /harness/heartbeat.pid); sleep 1000",
            Duration::from_secs(900),
        );
    assert!(run.outer_silent && run.timed_out, "{run}");
    assert_eq!(run.status, None, "{run}");
    assert_eq!(run.attempts, 2, "{run}");
    assert!(run.outer_fault().is_some(), "{run}");
    assert_eq!(run.output.matches("attempt").count(), 1, "{run}");
    assert!(
        start.elapsed() < Duration::from_secs(450),
        "found only after {:?} (run timeout 900 s)",
        start.elapsed()
    );
}
