//! `hull run --isolation=process` with docker's privilege flags, as a user runs them:
//! `--cap-add`/`--cap-drop` (names, `CAP_` prefix, `ALL`) and `--device`; bad values are
//! clear errors that leave no container behind. Every test ends with a leak check.

mod process_common;

use process_common::Env;

/// CapBnd of the container's shell, as hex.
fn bounding(env: &Env, flags: &[&str]) -> String {
    let (out, err, code) = env.sh(flags, "grep CapBnd /proc/self/status");
    assert_eq!(code, 0, "{flags:?}: {err}");
    out.trim().trim_start_matches("CapBnd:\t").to_string()
}

#[test]
fn cap_add_and_cap_drop_change_the_sets_like_docker() {
    let env = Env::new();
    // docker's default set (host_process checks the exact bits).
    assert_eq!(bounding(&env, &[]), "00000000a80425fb");
    // Bit 12 CAP_NET_ADMIN added; bit 0 CAP_CHOWN and bit 5 CAP_KILL dropped.
    assert_eq!(
        bounding(
            &env,
            &[
                "--cap-add",
                "net_admin",
                "--cap-drop",
                "CAP_CHOWN",
                "--cap-drop",
                "KILL"
            ]
        ),
        "00000000a80435da"
    );
    // Drop everything, add one back (bit 10 CAP_NET_BIND_SERVICE).
    assert_eq!(
        bounding(
            &env,
            &["--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE"]
        ),
        "0000000000000400"
    );
    // What the capability allows works: changing a link needs CAP_NET_ADMIN.
    let script = "ip link set lo mtu 1280 2>/dev/null && echo changed || echo refused";
    let (out, _, _) = env.sh(&["--cap-add", "NET_ADMIN"], script);
    assert_eq!(out, "changed\n");
    let (out, _, _) = env.sh(&[], script);
    assert_eq!(out, "refused\n");
    // A dropped capability is gone: chown needs CAP_CHOWN.
    let (_, err, code) = env.sh(&["--cap-drop", "CHOWN"], "touch /tmp/f && chown 1 /tmp/f");
    assert_ne!(code, 0);
    assert!(err.contains("Operation not permitted"), "{err}");
    // An unknown name: a clear error, exit 125, no container left.
    let out = env.run([
        "run",
        "--rm",
        "--cap-add",
        "FLY",
        process_common::IMAGE,
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown capability \"FLY\""), "{err}");
    env.assert_clean(&[]);
}

#[test]
fn device_gives_exactly_that_node() {
    let env = Env::new();
    // /dev/kmsg (c 1:11) is not in the default device rules: with --device it is made and
    // opens for writing (nothing is written); without it a node made by hand does not open.
    let (out, err, _) = env.sh(
        &["--device", "/dev/kmsg"],
        "ls -l /dev/kmsg | cut -c1; (: >> /dev/kmsg) && echo opened",
    );
    assert_eq!(out, "c\nopened\n", "{err}");
    let (out, _, _) = env.sh(
        &["--device", "/dev/kmsg:/dev/log:r"],
        "test -c /dev/log && echo made; (: >> /dev/log) 2>/dev/null || echo no-write",
    );
    assert_eq!(
        out, "made\nno-write\n",
        "read-only permission: no write open"
    );
    let (out, _, _) = env.sh(
        &[],
        "mknod /dev/k c 1 11 && ((: >> /dev/k) 2>/dev/null && echo opened || echo refused)",
    );
    assert_eq!(
        out, "refused\n",
        "the device cgroup refuses an unlisted node"
    );
    // Not a device, missing, or malformed: clear errors, nothing left.
    for (arg, needle) in [
        ("/etc/hostname", "not a character or block device"),
        ("/dev/hull-no-such-device", "/dev/hull-no-such-device"),
        ("/dev/null:/x:rwx", "permissions"),
        ("dev/null", "absolute"),
    ] {
        let out = env.run([
            "run",
            "--rm",
            "--device",
            arg,
            process_common::IMAGE,
            "true",
        ]);
        assert_eq!(out.status.code(), Some(125), "{arg}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{arg}: {err}");
    }
    env.assert_clean(&[]);
}
