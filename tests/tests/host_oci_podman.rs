//! podman 4.3 with `--runtime hull-oci`: run --rm, exit codes, run -it through the
//! console socket, run -d + exec + logs + stop + rm. The vm model (`--annotation
//! io.hull.isolation=vm`) runs in the nested harness (harness_oci.rs).

use hull_tests::oci::{is_hull, runtime, show, Podman};

const IMAGE: &str = "localhost/hull-oci-test/busybox:1";

fn setup() -> (Podman, Vec<String>) {
    let podman = Podman::new();
    podman.import_busybox(IMAGE);
    (podman, Podman::run_options(&runtime()))
}

fn args<'a>(opts: &'a [String], rest: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = Vec::new();
    v.push(rest[0]);
    v.extend(opts.iter().map(String::as_str));
    v.extend(&rest[1..]);
    v
}

#[test]
fn podman_run_rm_exit_codes_and_output() {
    let (podman, opts) = setup();
    let out = podman.run(&args(
        &opts,
        &[
            "run",
            "--rm",
            IMAGE,
            "sh",
            "-c",
            "echo hello from $(hostname); exit 7",
        ],
    ));
    assert_eq!(out.status.code(), Some(7), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("hello from "),
        "{}",
        show(&out)
    );
    let out = podman.run(&args(&opts, &["run", "--rm", IMAGE, "true"]));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // Not found: podman's 127.
    let out = podman.run(&args(&opts, &["run", "--rm", IMAGE, "/no/such/cmd"]));
    assert_eq!(out.status.code(), Some(127), "{}", show(&out));
    let ps = podman.ok(&["ps", "-aq"]);
    assert!(ps.trim().is_empty(), "--rm left containers: {ps}");
}

#[test]
fn podman_run_it_gets_a_terminal_through_the_console_socket() {
    let (podman, opts) = setup();
    // `script` gives podman a terminal of its own, as a user's shell would.
    let podman_line: Vec<String> = std::iter::once("podman".to_string())
        .chain(
            podman
                .command(&args(
                    &opts,
                    &[
                        "run",
                        "--rm",
                        "-it",
                        IMAGE,
                        "sh",
                        "-c",
                        "tty; stty size; exit 5",
                    ],
                ))
                .get_args()
                .map(|a| a.to_string_lossy().into_owned()),
        )
        .collect();
    let quoted: Vec<String> = podman_line.iter().map(|a| format!("'{a}'")).collect();
    let out = std::process::Command::new("script")
        .args(["-qec", &quoted.join(" "), "/dev/null"])
        .env("TMPDIR", podman.dir().join("tmp"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    assert!(text.contains("/dev/pts/0"), "no pty inside: {}", show(&out));
}

#[test]
fn podman_detached_exec_logs_stop_rm() {
    let (podman, opts) = setup();
    let name = hull_tests::oci::unique("web");
    let id = podman.ok(&args(
        &opts,
        &[
            "run",
            "-d",
            "--name",
            &name,
            IMAGE,
            "sh",
            "-c",
            "echo started; trap 'echo got TERM; exit 0' TERM; while true; do sleep 0.1; done",
        ],
    ));
    assert_eq!(id.trim().len(), 64);
    let out = podman.run(&[
        "exec",
        &name,
        "sh",
        "-c",
        "echo in-exec $(cat /proc/1/cmdline | tr '\\0' ' '); exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("in-exec sh -c echo started"),
        "{}",
        show(&out)
    );
    let inspect = podman.ok(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.OCIRuntime}}",
        &name,
    ]);
    assert!(inspect.starts_with("running"), "{inspect}");
    if is_hull() {
        assert!(inspect.contains("hull-oci"), "{inspect}");
    }
    podman.ok(&["stop", "-t", "10", &name]);
    let logs = podman.ok(&["logs", &name]);
    assert_eq!(
        logs, "started\ngot TERM\n",
        "the TERM reached the container's init"
    );
    let code = podman.ok(&["inspect", "--format", "{{.State.ExitCode}}", &name]);
    assert_eq!(code.trim(), "0");
    podman.ok(&["rm", &name]);
    assert!(podman.ok(&["ps", "-aq"]).trim().is_empty());

    // Killed by a signal: podman reports 128+N.
    podman.ok(&args(
        &opts,
        &["run", "-d", "--name", &name, IMAGE, "sleep", "1000"],
    ));
    podman.ok(&["kill", "-s", "KILL", &name]);
    let code = podman.ok(&["wait", &name]);
    assert_eq!(code.trim(), "137");
    podman.ok(&["rm", &name]);
}
