//! Tier 4: a hostile guest agent against hull (issue 13 "a hostile guest in the harness",
//! issue 10 item 6). `tests/hostile-agent` is PID 1 of the microVM and breaks the host/guest
//! protocol on purpose, one scenario per image: malformed, oversized and wrong hellos, a
//! flood of vsock connections that never says hello, a start request never answered, an
//! oversized output frame, and a running guest whose replies trickle in one byte a second
//! while it floods the host with vsock connections. hull must give up on each by its
//! deadlines with an error that says what went wrong, `hull exec/kill/stop/rm -f` must end
//! (each step is killed after `STEP_TIMEOUT`, far above the per-request deadlines of
//! runtime/src/vm/channel.rs and far below "for ever"), nothing may be left (state,
//! sockets, jail directories, cgroups, id leases, VMMs), and a well-behaved VM running beside
//! them all the while must be unharmed (same VMM process, answers exec at the end).
//! Bogus virtqueue descriptor chains cannot come from a Linux guest's user space (no
//! /dev/mem in the guest kernel): tier 2's hostile tiny guest (`host_vm_jail`) sends them.
//!
//! One harness boot. `HULL_HOSTILE_ONLY=mute` (a space-separated list of scenario names)
//! runs only some scenarios, to try a change against one quickly.

mod vm_common;

use std::path::PathBuf;

use vm_common::{vm_harness, Results};

/// The static hostile agent (scripts/setup.sh builds it):
/// `RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -p hull-tests --bin
/// hull-hostile-agent --target x86_64-unknown-linux-gnu`.
fn hostile_agent() -> PathBuf {
    let bin = hull_tests::bin_dir();
    let profile = bin.file_name().expect("profile dir").to_owned();
    let path = bin
        .parent()
        .expect("target dir")
        .join("x86_64-unknown-linux-gnu")
        .join(profile)
        .join("hull-hostile-agent");
    assert!(
        path.is_file() && hull_tests::initramfs::is_static_executable(&path),
        "no static {}: build it with RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build \
         --release -p hull-tests --bin hull-hostile-agent --target x86_64-unknown-linux-gnu \
         (scripts/setup.sh does)",
        path.display()
    );
    path
}

/// Boot-time scenarios and what hull's error must say about each.
const AT_BOOT: &[(&str, &str)] = &[
    ("garbage-hello", "hello: unsupported protocol version 71"),
    (
        "oversized-hello",
        "hello: frame of 4294967280 bytes exceeds the 262144-byte limit",
    ),
    ("wrong-hello", "guest agent speaks protocol 99"),
    ("flood", "timed out waiting for the guest agent (hello)"),
    (
        "silent-start",
        "timed out waiting for the guest agent (start)",
    ),
];

/// Seconds a lifecycle step against the mute guest may take before the harness kills it:
/// the bounds are 15 s (exec), 5 s + kill (kill), 5 s + 2 s + 5 s + kill (stop -t 2) and
/// 5 s + 5 s + kill (rm -f) of the request deadlines, plus a TCG-slow host.
const LIFECYCLE_LIMIT_S: u32 = 60;

fn wanted(mode: &str) -> bool {
    match std::env::var("HULL_HOSTILE_ONLY") {
        Ok(only) => only.split_whitespace().any(|m| m == mode),
        Err(_) => true,
    }
}

#[test]
fn a_hostile_agent_gets_clear_errors_bounded_waits_and_leaves_nothing_beside_a_calm_vm() {
    let rootfs = vm_common::busybox_rootfs();
    let mut body = format!(
        r#"
# tt NAME CMD...: t, and NAME_secs = how long CMD took.
tt() {{ n=$1; a=$(cut -d. -f1 /proc/uptime); t "$@"; record ${{n}}_secs $(( $(cut -d. -f1 /proc/uptime) - a )); }}
# tl LIMIT NAME CMD...: tt with the step killed after LIMIT seconds.
tl() {{ STEP_TIMEOUT=$1; shift; tt "$@"; unset STEP_TIMEOUT; }}
# Live hull-vmm processes (zombies not yet reaped do not count).
vmm_pids() {{
    for s in /proc/[0-9]*/stat; do
        read -r l < $s 2>/dev/null || continue
        case "$l" in *"(hull-vmm) "[!Z]*) echo "${{l%% *}}";; esac
    done | sort | tr '\n' ' '
}}
hostile_image() {{
    rm -rf /images/h; cp -a /images/busybox /images/h; echo $1 > /images/h/hostile
    t imp_$1 hull image import --rootfs /images/h -t hostile/$1 -q
}}
t calm hull run -d --isolation=vm --name calm $I sh -c 'while true; do sleep 1; done'
record calm_vmm "$(vmm_pids)"
export HULL_AGENT=/usr/local/lib/hull/hull-hostile-agent
L={LIFECYCLE_LIMIT_S}
"#
    );
    let mut at_boot = Vec::new();
    for (mode, says) in AT_BOOT.iter().filter(|(m, _)| wanted(m)) {
        at_boot.push((*mode, *says));
        body.push_str(&format!(
            "hostile_image {mode}\n\
             tt {mode} hull run --rm --isolation=vm hostile/{mode} true\n\
             t ps_{mode} hull ps\n"
        ));
    }
    let output = wanted("oversized-output");
    if output {
        body.push_str(
            "hostile_image oversized-output\n\
             tt output hull run --rm --isolation=vm hostile/oversized-output true\n\
             t ps_output hull ps\n",
        );
    }
    let mute = wanted("mute");
    if mute {
        body.push_str(
            r#"hostile_image mute
t mute1 hull run -d --isolation=vm --name mute1 hostile/mute true
tl $L mute_exec hull exec mute1 true
tl $L mute_kill hull kill mute1
record mute_kill_vmms "$(vmm_pids)"
t mute_rm1 hull rm -f mute1
t mute2 hull run -d --isolation=vm --name mute2 hostile/mute true
tl $L mute_stop hull stop -t 2 mute2
record mute_stop_vmms "$(vmm_pids)"
t mute_rm2 hull rm mute2
t mute3 hull run -d --isolation=vm --name mute3 hostile/mute true
tl $L mute_rmf hull rm -f mute3
record mute_rmf_vmms "$(vmm_pids)"
t ps_mute hull ps
"#,
        );
    }
    body.push_str(
        r#"
unset HULL_AGENT
record calm_vmm_end "$(vmm_pids)"
t calm_alive hull exec calm echo alive
t calm_rm hull rm -f calm
record left_containers "$(ls /var/lib/hull/run/containers | grep -v '^\.' | wc -l)"
record left_vmms "$(vmm_pids | wc -w)"
record left_sockets "$(find /var/lib/hull -name '*.sock*' | wc -l)"
record left_jails "$(find /var/lib/hull -name jail | wc -l)"
record left_cgroups "$(ls -d /sys/fs/cgroup/hull/*/ 2>/dev/null | wc -l)"
record left_leases "$(ls /run/hull-vm-ids | grep -c '^[0-9]')"
"#,
    );
    let harness =
        vm_harness(rootfs.path()).file(&hostile_agent(), "/usr/local/lib/hull/hull-hostile-agent");
    // Always the harness: the hostile agent is a file placed in its machine.
    let mut r = Results::collect(&vm_common::VmTestHost::Harness(harness), &body);

    r.expect_code("calm", 0);
    let calm_vmm = r.out("calm_vmm").trim().to_string();
    r.check(
        calm_vmm.split_whitespace().count() == 1,
        format!("one VMM for the calm container, got {calm_vmm:?}"),
    );
    let mut timings = Vec::new();
    for (mode, says) in &at_boot {
        r.expect_code(&format!("imp_{mode}"), 0);
        r.expect_code(mode, 125);
        r.expect_err_contains(mode, says);
        timings.push(format!(
            "{mode} {} s",
            r.out(&format!("{mode}_secs")).trim()
        ));
        // hull answers meanwhile and the neighbour still runs.
        r.expect_code(&format!("ps_{mode}"), 0);
        r.expect_out_contains(&format!("ps_{mode}"), "calm");
    }
    if output {
        r.expect_code("imp_oversized-output", 0);
        // The relay stops listening to the guest, the VM is killed: 128 + SIGKILL.
        r.expect_code("output", 137);
        r.expect_err_contains(
            "output",
            "frame of 67108864 bytes exceeds the 262144-byte limit",
        );
        timings.push(format!(
            "oversized-output {} s",
            r.out("output_secs").trim()
        ));
        r.expect_out_contains("ps_output", "calm");
    }
    if mute {
        r.expect_code("imp_mute", 0);
        for step in ["mute1", "mute2", "mute3"] {
            r.expect_code(step, 0);
        }
        // Every step ended on its own (a step the harness killed exits 137).
        r.expect_code("mute_exec", 125);
        r.expect_err_contains("mute_exec", "timed out waiting for the guest agent (exec)");
        for step in ["mute_kill", "mute_rm1", "mute_stop", "mute_rm2", "mute_rmf"] {
            r.expect_code(step, 0);
        }
        for step in ["mute_exec", "mute_kill", "mute_stop", "mute_rmf"] {
            timings.push(format!(
                "{step} {} s",
                r.out(&format!("{step}_secs")).trim()
            ));
        }
        // Each of kill, stop and rm -f took the mute guest's VM down: only the calm one's
        // VMM is left right after it.
        for left in ["mute_kill_vmms", "mute_stop_vmms", "mute_rmf_vmms"] {
            let now = r.out(left).trim().to_string();
            r.check(
                now == calm_vmm,
                format!("{left}: VMMs {now:?}, expected only the calm one {calm_vmm:?}"),
            );
        }
        r.expect_code("ps_mute", 0);
        r.expect_out_contains("ps_mute", "calm");
    }
    eprintln!(
        "hostile guest: hull gave up / finished after: {} (step limit {LIFECYCLE_LIMIT_S} s)",
        timings.join(", ")
    );
    r.check(
        r.out("calm_vmm_end").trim() == calm_vmm,
        format!(
            "the calm VM's VMM changed: {calm_vmm:?} at the start, {:?} at the end",
            r.out("calm_vmm_end")
        ),
    );
    r.expect_out("calm_alive", "alive\n");
    r.expect_code("calm_rm", 0);
    for left in [
        "left_containers",
        "left_vmms",
        "left_sockets",
        "left_jails",
        "left_cgroups",
        "left_leases",
    ] {
        r.expect_out(left, "0\n");
    }
    r.finish();
}
