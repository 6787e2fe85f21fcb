//! `hull image rm` of an image that containers were made from: refused (naming the
//! containers) unless `-f`; with `-f` the name goes but the layers the containers mount
//! stay until the containers are removed; and `image rm` cannot slip between a
//! concurrent `hull run` resolving the image and saving its container.

mod process_common;

use std::path::PathBuf;
use std::time::Duration;

use process_common::{Env, IMAGE};

/// The layer directories of `image` (`hull image inspect`).
fn layer_dirs(env: &Env, image: &str) -> Vec<PathBuf> {
    let info: serde_json::Value = serde_json::from_str(&env.ok(["image", "inspect", image]))
        .expect("image inspect prints JSON");
    let dirs: Vec<PathBuf> = info["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| PathBuf::from(l["path"].as_str().expect("layer path")))
        .collect();
    assert!(!dirs.is_empty());
    dirs
}

fn image_names(env: &Env) -> String {
    env.ok(["image", "ls"])
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn rm_is_refused_while_containers_use_the_image() {
    let env = Env::new();
    let layers = layer_dirs(&env, IMAGE);
    let web = env.detached("web", &[], "echo started; while true; do sleep 0.1; done");
    let created = env.ok(["create", "--name", "idle", IMAGE, "true"]);
    let created = created.trim().to_string();
    let done = env.detached("done", &[], "echo finished");
    env.wait_exited("done", Duration::from_secs(20));

    let out = env.run(["image", "rm", IMAGE]);
    assert!(!out.status.success(), "image rm of a used image must fail");
    let err = stderr(&out);
    assert!(err.contains("is being used by container"), "{err}");
    for (id, name) in [(&web, "web"), (&created, "idle"), (&done, "done")] {
        assert!(
            err.contains(&format!("{} ({name})", &id[..12])),
            "the error names {name}: {err}"
        );
    }
    assert!(image_names(&env).contains("hull/busybox"), "image kept");
    for d in &layers {
        assert!(d.join("bin/busybox").exists(), "layer {d:?} kept");
    }

    // The running container is unharmed: exec works, its log has its output.
    assert_eq!(
        env.ok(["exec", "web", "echo", "still here"]),
        "still here\n"
    );
    assert!(env.ok(["logs", "web"]).contains("started"));
    // The created container still starts.
    env.ok(["start", "idle"]);
    env.wait_exited("idle", Duration::from_secs(20));

    // Once every container is removed the image can go, with its layers.
    env.ok(["rm", "-f", "web", "idle"]);
    let out = env.run(["image", "rm", IMAGE]);
    assert!(!out.status.success(), "still used by the exited container");
    assert!(stderr(&out).contains(&format!("{} (done)", &done[..12])));
    env.ok(["rm", "done"]);
    let out = env.ok(["image", "rm", IMAGE]);
    assert!(out.contains("removed hull/busybox"), "{out}");
    assert!(!image_names(&env).contains("hull/busybox"));
    for d in &layers {
        assert!(!d.exists(), "layer {d:?} removed with the last user");
    }
    env.assert_clean(&[web, created, done]);
}

#[test]
fn forced_rm_keeps_layers_until_the_containers_are_removed() {
    let env = Env::new();
    let layers = layer_dirs(&env, IMAGE);
    let web = env.detached("web", &[], "while true; do sleep 0.1; done");
    let later = env.ok(["create", "--name", "later", IMAGE, "echo", "ran later"]);
    let later = later.trim().to_string();

    let out = env.run(["image", "rm", "-f", IMAGE]);
    assert!(out.status.success(), "image rm -f: {}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("removed hull/busybox"), "{stdout}");
    assert!(
        stderr(&out).contains("kept while in use by"),
        "{}",
        stderr(&out)
    );
    assert!(
        !image_names(&env).contains("hull/busybox"),
        "the name is gone"
    );
    let out = env.run(["run", "--rm", IMAGE, "true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no such image"), "{}", stderr(&out));

    // The containers still have their root filesystems.
    for d in &layers {
        assert!(d.join("bin/busybox").exists(), "layer {d:?} kept");
    }
    assert_eq!(
        env.ok(["exec", "web", "cat", "/etc/group"]).lines().next(),
        Some("root:x:0:")
    );
    env.ok(["start", "later"]);
    env.wait_exited("later", Duration::from_secs(20));
    assert_eq!(env.ok(["logs", "later"]), "ran later\n");

    // An import (which collects unused layers) keeps them while a container remains...
    let other = env.root.path().join("other-rootfs");
    std::fs::create_dir_all(other.join("etc")).unwrap();
    std::fs::write(other.join("etc/marker"), "other\n").unwrap();
    env.import(&other, "hull/other", &[]);
    env.ok(["rm", "-f", "web"]);
    env.import(&other, "hull/other2", &[]);
    for d in &layers {
        assert!(d.exists(), "layer {d:?} still used by 'later'");
    }
    // ...and drops them once no image and no container uses them.
    env.ok(["rm", "later"]);
    env.ok(["image", "rm", "hull/other2"]);
    for d in &layers {
        assert!(!d.exists(), "unused layer {d:?} collected");
    }
    env.assert_clean(&[web, later]);
}

/// `hull run -d` and `hull image rm` of the same image at the same time: either the run
/// fails for want of the image, or it succeeds and the rm is refused. Never both succeed.
#[test]
fn rm_cannot_race_a_concurrent_run() {
    let env = Env::new();
    let mut ids = Vec::new();
    for round in 0..6 {
        // Its own layer: a layer shared with hull/busybox would rightly stay.
        let tag = format!("hull/race{round}");
        let rootfs = env.root.path().join(format!("race-rootfs-{round}"));
        process_common::build_rootfs(&rootfs, &[]);
        std::fs::write(rootfs.join("etc/round"), format!("{round}\n")).unwrap();
        env.import(&rootfs, &tag, &[]);
        let layers = layer_dirs(&env, &tag);
        let name = format!("c{round}");
        let mut run = env.hull(["run", "-d", "--name", &name, &tag, "sleep", "30"]);
        let mut rm = env.hull(["image", "rm", &tag]);
        let (run_out, rm_out) = std::thread::scope(|s| {
            let r = s.spawn(move || run.output().unwrap());
            let m = s.spawn(move || rm.output().unwrap());
            (r.join().unwrap(), m.join().unwrap())
        });
        match (run_out.status.success(), rm_out.status.success()) {
            (true, true) => panic!(
                "round {round}: both run and image rm succeeded (rm: {})",
                String::from_utf8_lossy(&rm_out.stdout)
            ),
            (true, false) => {
                assert!(stderr(&rm_out).contains("is being used by container"));
                for d in &layers {
                    assert!(d.join("bin/busybox").exists(), "layer {d:?} kept");
                }
                assert_eq!(env.ok(["exec", &name, "echo", "ok"]), "ok\n");
                ids.push(String::from_utf8_lossy(&run_out.stdout).trim().to_string());
                env.ok(["rm", "-f", &name]);
                env.ok(["image", "rm", &tag]);
            }
            (false, true) => {
                assert!(
                    stderr(&run_out).contains("no such image"),
                    "{}",
                    stderr(&run_out)
                );
            }
            (false, false) => panic!(
                "round {round}: both failed: run: {} rm: {}",
                stderr(&run_out),
                stderr(&rm_out)
            ),
        }
        for d in &layers {
            assert!(!d.exists(), "round {round}: layer {d:?} left");
        }
    }
    env.assert_clean(&ids);
}
