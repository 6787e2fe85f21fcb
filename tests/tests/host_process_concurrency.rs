//! Many `hull` invocations at once on one state root: 50 containers started concurrently
//! all succeed, with their own output, and leave nothing behind.

mod process_common;

use std::process::Stdio;

use process_common::{Env, IMAGE};

#[test]
fn fifty_concurrent_containers_all_succeed_and_leave_nothing_behind() {
    let env = Env::new();
    let children: Vec<_> = (0..50)
        .map(|i| {
            env.hull([
                "run".to_string(),
                "--rm".into(),
                "--name".into(),
                format!("c{i}"),
                "--pids-limit".into(),
                "64".into(),
                IMAGE.into(),
                "sh".into(),
                "-c".into(),
                format!("echo container-{i} $(hostname | wc -c); exit $(({i} % 7))"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hull")
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some((i % 7) as i32),
            "container {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("container-{i} 13\n")
        );
    }
    assert!(env.ps().is_empty());
    env.assert_clean(&[]);

    // Detached ones too, then removed concurrently.
    let starts: Vec<_> = (0..20)
        .map(|i| {
            env.hull([
                "run",
                "-d",
                "--name",
                &format!("d{i}"),
                IMAGE,
                "sleep",
                "1000",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut ids = Vec::new();
    for child in starts {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ids.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    assert_eq!(env.ps().len(), 20);
    let removals: Vec<_> = (0..20)
        .map(|i| {
            env.hull(["rm", "-f", &format!("d{i}")])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut r in removals {
        assert!(r.wait().unwrap().success());
    }
    env.assert_clean(&ids);
}
