//! Tier 2: hull's own state under attack (issue 10, item 3): records too big to read and
//! a record that cannot be read at all. Whatever happens to one container, `hull ps` and
//! every other container keep working and no layer in use is deleted.

mod process_common;

use std::path::Path;

use process_common::{Env, IMAGE};

fn code(out: &std::process::Output) -> Option<i32> {
    out.status.code()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An image whose Env alone is more than 1 MiB (the review's example: its record became
/// unreadable and broke `hull ps` for everyone) is refused at create, with the limit named
/// and nothing left behind; so are huge `-e`/`--env-file` and arguments.
#[test]
fn oversized_commands_and_environments_are_refused_at_create() {
    let env = Env::new();
    let mut extra: Vec<String> = Vec::new();
    for i in 0..300 {
        extra.push("--env".into());
        extra.push(format!("K{i}={}", "x".repeat(4000)));
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    env.import(&env.rootfs, "hull/huge-env", &extra);

    let env_file = env.root.path().join("big.env");
    let lines: String = (0..200)
        .map(|i| format!("V{i}={}\n", "y".repeat(1000)))
        .collect();
    std::fs::write(&env_file, lines).unwrap();
    let env_file = env_file.display().to_string();
    let long_arg = "z".repeat(70_000);
    let cases: [Vec<&str>; 4] = [
        vec!["run", "--rm", "hull/huge-env", "true"],
        vec!["create", "hull/huge-env", "true"],
        vec!["run", "--rm", "--env-file", &env_file, IMAGE, "true"],
        vec!["run", "--rm", IMAGE, "echo", &long_arg],
    ];
    for args in &cases {
        let out = env.run(args);
        let err = text(&out.stderr);
        assert_eq!(code(&out), Some(125), "{:?}: {err}", &args[..2]);
        assert!(
            err.contains("131072") || err.contains("65536"),
            "the error names the limit: {err}"
        );
    }
    let ps = env.run(["ps", "-a"]);
    assert_eq!(code(&ps), Some(0), "{ps:?}");
    env.assert_clean(&[]);
}

/// One container's record cannot be read (here: 2 MiB of garbage, as an older hull or a
/// damaged disk could leave). `hull ps` still lists every container and says which one is
/// broken and how to remove it; the others can be exec'd, logged, stopped; `image rm`
/// refuses to guess which layers are in use (and with -f removes only the name, never a
/// layer); `rm -f` of the broken one kills what it was running and removes it.
#[test]
fn one_unreadable_record_breaks_nothing_else() {
    let env = Env::new();
    let good = env.detached("good", &[], "echo hello-from-good; sleep 1000");
    let bad = env.detached("bad", &[], "sleep 1000");
    let bad_pid = env.inspect("bad")["pid"].as_u64().unwrap();
    let record = env
        .root
        .path()
        .join("run/containers")
        .join(&bad)
        .join("state.json");
    std::fs::write(&record, vec![b'x'; 2 << 20]).unwrap();

    let ps = env.run(["ps", "-a", "--format", "json"]);
    assert_eq!(code(&ps), Some(0), "{ps:?}");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&ps.stdout).unwrap();
    let row = |id: &str| rows.iter().find(|r| r["id"] == id).cloned();
    assert_eq!(row(&good).unwrap()["status"], "running", "{rows:?}");
    let broken = row(&bad).expect("the broken container is listed");
    assert_eq!(broken["status"], "unreadable", "{broken}");
    assert_eq!(broken["name"], "bad", "{broken}");
    assert!(text(&ps.stderr).contains("hull rm -f"), "{ps:?}");
    let table = env.run(["ps"]);
    assert_eq!(code(&table), Some(0), "{table:?}");
    assert!(
        text(&table.stdout).contains("Unreadable record"),
        "{table:?}"
    );

    // The other container works as before.
    assert_eq!(env.ok(["exec", "good", "echo", "exec-ok"]), "exec-ok\n");
    assert!(env.ok(["logs", "good"]).contains("hello-from-good"));
    // The broken one says why and what to do.
    for args in [["stop", "bad"], ["kill", "bad"], ["logs", "bad"]] {
        let out = env.run(args);
        assert_ne!(code(&out), Some(0), "{args:?}: {out:?}");
        assert!(text(&out.stderr).contains("rm -f"), "{args:?}: {out:?}");
    }

    // Layers: unknown users, so nothing is deleted.
    let layers = env.root.path().join("images/layers/sha256");
    let layer_count = || std::fs::read_dir(&layers).unwrap().count();
    let before = layer_count();
    let out = env.run(["image", "rm", IMAGE]);
    assert_ne!(code(&out), Some(0), "{out:?}");
    assert!(text(&out.stderr).contains("cannot be read"), "{out:?}");
    let out = env.run(["image", "rm", "-f", IMAGE]);
    assert_eq!(code(&out), Some(0), "{out:?}");
    assert_eq!(
        layer_count(),
        before,
        "a layer went while a record was unreadable"
    );
    assert_eq!(env.ok(["exec", "good", "echo", "still-ok"]), "still-ok\n");

    // rm -f removes the broken container and what it ran.
    env.ok(["rm", "-f", "bad"]);
    assert!(
        !Path::new(&format!("/proc/{bad_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{bad_pid}/stat"))
                .is_ok_and(|s| s.contains(") Z")),
        "the broken container's process survived rm -f"
    );
    env.ok(["stop", "-t", "1", "good"]);
    env.ok(["rm", "good"]);
    env.assert_clean(&[good, bad]);
}
