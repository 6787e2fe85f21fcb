//! Benchmark (not a test): `cargo bench -p hull-vmm --bench startup`.
//!
//! 1. Start latency: from just before spawning `hull-vmm` to the moment the tiny guest's
//!    first instruction (an `out` to the serial port) shows up on the VMM's stdout pipe.
//! 2. VMM memory: the running VMM's RSS minus the resident part of its guest-memory mapping
//!    (/proc/PID/smaps), i.e. what the VMM itself costs, sampled once the guest is spinning.
//!    The guest mapping is the one anonymous read-write mapping exactly as large as the
//!    guest's RAM (the bench fails if there is not exactly one); its resident pages are the
//!    guest memory touched (by the guest, KVM or the VMM's loader). Everything else counts
//!    as the VMM's: binary, shared libraries, heap, stacks, KVM's vCPU mappings. The
//!    breakdown splits that into private/shared and anonymous/file pages.
//!
//! Prints medians over many runs. Needs /dev/kvm.
//! Environment: `HULL_VMM_BENCH_RUNS` (default 200); `HULL_VMM_BIN` measures another
//! hull-vmm binary (e.g. an older build, for a before/after in the same period);
//! `HULL_VMM_BENCH_SMAPS=FILE` saves one run's full smaps for inspection;
//! `HULL_VMM_BENCH_JAIL=1` runs each VMM jailed (as root: started as PID 1 of a new PID
//! namespace with clone3, as hull does, plus `--jail`), so start time and memory include the
//! jail; `HULL_VMM_BENCH_JAIL=both` alternates unjailed and jailed runs in the same minutes
//! and prints both, side by side, with the jail's cost (difference and ratio of medians);
//! `HULL_VMM_BENCH_JAIL=all` adds a third mode, jailed but joining an existing network
//! namespace (`--jail-netns`, as hull starts the VMM of a container with a network) instead
//! of making a new one;
//! `HULL_VMM_BENCH_STEPS=1` also has each jailed VMM log how long each step of entering the
//! jail took (`RUST_LOG=hull_vmm::jail=debug`, one line to a file: a few microseconds more
//! on the jailed start) and prints their medians.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hull_executor::fork::{fork_with_pidfd, Forked};

const DEFAULT_RUNS: usize = 200;
const MEMORY_MIB: u64 = 64;
/// How long after the guest's first output the memory is sampled: the vCPU thread is in
/// its KVM_RUN loop and the main thread waits, so this is the VMM's steady state.
const SETTLE: Duration = Duration::from_millis(20);

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// One mapping of /proc/PID/smaps (sizes in KiB).
#[derive(Default, Debug)]
struct Mapping {
    perms: String,
    name: String,
    fields: BTreeMap<String, u64>,
}

impl Mapping {
    fn get(&self, field: &str) -> u64 {
        self.fields.get(field).copied().unwrap_or(0)
    }
}

fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut maps: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let Some(first) = parts.next() else { continue };
        if first.ends_with(':') && !first.contains('-') {
            if let (Some(m), Some(v)) = (maps.last_mut(), parts.next()) {
                if let Ok(v) = v.parse::<u64>() {
                    m.fields.insert(first.trim_end_matches(':').to_string(), v);
                }
            }
        } else {
            // Header: address perms offset dev inode [name]
            let perms = parts.next().unwrap_or("").to_string();
            let name = parts.nth(3).unwrap_or("").to_string();
            maps.push(Mapping {
                perms,
                name,
                ..Default::default()
            });
        }
    }
    maps
}

/// What the VMM's resident memory is made of (KiB), guest memory excluded.
#[derive(Default)]
struct Breakdown {
    /// Rss outside guest memory: the figure the target is about.
    own_rss: u64,
    /// Resident guest memory (subtracted).
    guest_rss: u64,
    own_pss: u64,
    private_dirty: u64,
    private_clean: u64,
    shared_clean: u64,
    shared_dirty: u64,
    /// Anonymous pages: heap, stacks, and relocated or written data of the binary and libraries.
    anonymous: u64,
    /// Dirty file pages that are not anonymous: page cache not yet written back (a freshly
    /// built binary shows up here until writeback, although it is only code).
    file_dirty: u64,
    /// Rss per kind of mapping.
    binary: u64,
    libraries: u64,
    heap_and_anon: u64,
    stack: u64,
    kvm: u64,
    kernel_other: u64,
}

fn breakdown(pid: u32, dump: Option<&str>) -> Breakdown {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("read smaps");
    if let Some(path) = dump {
        std::fs::write(path, &text).expect("write smaps dump");
    }
    let maps = parse_smaps(&text);
    let is_guest = |m: &Mapping| {
        m.name.is_empty() && m.perms.starts_with("rw") && m.get("Size") == MEMORY_MIB << 10
    };
    let guests = maps.iter().filter(|m| is_guest(m)).count();
    assert_eq!(
        guests, 1,
        "expected exactly one {MEMORY_MIB} MiB anonymous guest mapping"
    );
    let mut b = Breakdown::default();
    for m in &maps {
        let rss = m.get("Rss");
        if is_guest(m) {
            b.guest_rss += rss;
            continue;
        }
        b.own_rss += rss;
        b.own_pss += m.get("Pss");
        b.private_dirty += m.get("Private_Dirty");
        b.private_clean += m.get("Private_Clean");
        b.shared_clean += m.get("Shared_Clean");
        b.shared_dirty += m.get("Shared_Dirty");
        b.anonymous += m.get("Anonymous");
        if m.name.starts_with('/') {
            b.file_dirty +=
                (m.get("Private_Dirty") + m.get("Shared_Dirty")).saturating_sub(m.get("Anonymous"));
        }
        let kind = if m.name.contains("hull-vmm") {
            &mut b.binary
        } else if m.name.starts_with('/') {
            &mut b.libraries
        } else if m.name.is_empty() || m.name == "[heap]" {
            &mut b.heap_and_anon
        } else if m.name == "[stack]" {
            &mut b.stack
        } else if m.name.starts_with("anon_inode:kvm") {
            &mut b.kvm
        } else {
            &mut b.kernel_other
        };
        *kind += rss;
    }
    b
}

/// A started VMM: its host pid and the read end of its stdout.
enum Vmm {
    Plain(Child),
    /// PID 1 of its own PID namespace (our child; reaped by `stop`).
    Jailed(i32),
}

/// Starts `argv` as PID 1 of a new PID namespace in `dir`, stdout to `out`, stderr to
/// `err`: hull's launch (runtime/src/vm/launch.rs, through the same executor helper)
/// without its cgroup and checks. The pidfd is not needed here: the child is reaped by pid.
fn spawn_in_pid_namespace(argv: &[CString], dir: &Path, out: &OwnedFd, err: &File) -> i32 {
    let dir = CString::new(dir.as_os_str().as_bytes()).unwrap();
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: fork-like; the child makes only async-signal-safe calls on memory prepared
    // above and execs or _exits.
    match unsafe { fork_with_pidfd(libc::CLONE_NEWPID as u64) }.expect("clone3") {
        // SAFETY: in the child: dup2/chdir/prctl/execv/_exit on valid descriptors and C
        // strings.
        Forked::Child => unsafe {
            libc::dup2(out.as_raw_fd(), 1);
            libc::dup2(err.as_raw_fd(), 2);
            libc::chdir(dir.as_ptr());
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            libc::execv(ptrs[0], ptrs.as_ptr());
            libc::_exit(127);
        },
        Forked::Parent { pid, .. } => pid,
    }
}

impl Vmm {
    fn pid(&self) -> u32 {
        match self {
            Vmm::Plain(c) => c.id(),
            Vmm::Jailed(pid) => *pid as u32,
        }
    }

    fn stop(self) {
        match self {
            Vmm::Plain(mut c) => {
                c.kill().unwrap();
                c.wait().unwrap();
            }
            Vmm::Jailed(pid) => {
                // SAFETY: kill/waitpid on our own child.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, std::ptr::null_mut(), 0);
                }
            }
        }
    }
}

/// One run: start → first guest output (ms), and the VMM's memory.
fn one_run(bin: &str, args: &[&str], jail: Option<Jail>, dump: Option<&str>) -> (f64, Breakdown) {
    let start = Instant::now();
    let (vmm, mut out) = match jail {
        Some(Jail {
            dir,
            id,
            err,
            netns,
        }) => {
            // A uid per run, as hull gives each VM its own: RLIMIT_NPROC counts per uid,
            // and the previous run's VMM may still be exiting.
            std::os::unix::fs::chown(dir, Some(id), None).unwrap();
            let mut argv: Vec<CString> = [bin]
                .iter()
                .chain(args)
                .map(|a| CString::new(*a).unwrap())
                .collect();
            let id = id.to_string();
            for a in [
                "--jail",
                dir.to_str().unwrap(),
                "--jail-uid",
                &id,
                "--jail-gid",
                &id,
            ] {
                argv.push(CString::new(a).unwrap());
            }
            if let Some(netns) = netns {
                argv.push(CString::new("--jail-netns").unwrap());
                argv.push(CString::new(netns).unwrap());
            }
            let mut fds = [0; 2];
            // SAFETY: pipe2 fills two descriptors that we then own.
            assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
            // SAFETY: fresh descriptors from pipe2.
            let (read, write) =
                unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            let pid = spawn_in_pid_namespace(&argv, dir, &write, err);
            (Vmm::Jailed(pid), read)
        }
        None => {
            let mut child = Command::new(bin)
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn hull-vmm");
            let out = File::from(OwnedFd::from(child.stdout.take().unwrap()));
            (Vmm::Plain(child), out)
        }
    };
    let mut byte = [0u8; 1];
    out.read_exact(&mut byte).expect("first guest output");
    let latency = start.elapsed().as_secs_f64() * 1e3;
    assert_eq!(byte[0], b'!');
    std::thread::sleep(SETTLE);
    let memory = breakdown(vmm.pid(), dump);
    vmm.stop();
    (latency, memory)
}

/// Per mode: latencies (ms) and memory samples.
#[derive(Default)]
struct Series {
    latencies: Vec<f64>,
    samples: Vec<Breakdown>,
}

fn main() {
    if !std::path::Path::new("/dev/kvm").exists() {
        eprintln!("startup bench: /dev/kvm is missing; nothing measured");
        std::process::exit(1);
    }
    let runs: usize = std::env::var("HULL_VMM_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= 10)
        .unwrap_or(DEFAULT_RUNS);
    let dump = std::env::var("HULL_VMM_BENCH_SMAPS").ok();
    let dir = tempfile::tempdir().unwrap();
    let mut asm = support::Asm::new();
    asm.serial_print(b"!").spin();
    let kernel = support::write_guest(dir.path(), "bench.elf", &asm);
    let bin = std::env::var("HULL_VMM_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_hull-vmm").to_string());
    let mem = MEMORY_MIB.to_string();
    let args = ["--kernel", kernel.to_str().unwrap(), "--memory", &mem];
    let mode = std::env::var("HULL_VMM_BENCH_JAIL").unwrap_or_default();
    let modes: &[Mode] = match mode.as_str() {
        "" | "0" => &[Mode::Plain],
        "both" => &[Mode::Plain, Mode::Jailed],
        "all" => &[Mode::Plain, Mode::Jailed, Mode::JailedInNetns],
        _ => &[Mode::Jailed],
    };
    let jail_dir = dir.path().join("jail");
    std::fs::create_dir(&jail_dir).unwrap();
    // A network namespace to join, held by a sleeping process of its own.
    let netns_holder = modes
        .contains(&Mode::JailedInNetns)
        .then(NetnsHolder::start);
    let netns = netns_holder.as_ref().map(|h| h.path.clone());

    let steps_log = std::env::var_os("HULL_VMM_BENCH_STEPS")
        .is_some()
        .then(|| dir.path().join("steps.log"));
    if steps_log.is_some() {
        // Still single-threaded: nothing reads the environment concurrently.
        std::env::set_var("RUST_LOG", "hull_vmm::jail=debug");
    }
    let mut steps: Vec<BTreeMap<String, Vec<f64>>> =
        modes.iter().map(|_| BTreeMap::new()).collect();

    let mut series: Vec<Series> = modes.iter().map(|_| Series::default()).collect();
    for run in 0..runs {
        for (m, mode) in modes.iter().enumerate() {
            let jailed = *mode != Mode::Plain;
            let err = match &steps_log {
                Some(path) if jailed => File::create(path).unwrap(),
                _ => File::options().write(true).open("/dev/null").unwrap(),
            };
            let join = match mode {
                Mode::JailedInNetns => netns.as_deref(),
                _ => None,
            };
            let jail = jailed.then_some(Jail {
                dir: jail_dir.as_path(),
                // A uid per run and mode, as hull gives each VM its own.
                id: 3_999_100_000 + (run * modes.len() + m) as u32,
                err: &err,
                netns: join,
            });
            let dump_this = if run == 0 { dump.as_deref() } else { None };
            let (latency, memory) = one_run(&bin, &args, jail, dump_this);
            series[m].latencies.push(latency);
            series[m].samples.push(memory);
            if let Some(path) = steps_log.as_ref().filter(|_| jailed) {
                record_steps(path, &mut steps[m]);
            }
        }
    }
    let mut medians = Vec::new();
    for (mode, s) in modes.iter().zip(series.iter_mut()) {
        medians.push(report(&bin, mode.label(), runs, s));
    }
    for (mode, steps) in modes.iter().zip(steps.iter_mut()) {
        if steps.is_empty() {
            continue;
        }
        let mut line = String::new();
        let mut total = 0.0;
        for (step, v) in steps.iter_mut() {
            let m = median(v);
            total += m;
            line.push_str(&format!(" {step} {m:.0}"));
        }
        println!(
            "entering the jail{}, medians per step (µs):{line}; sum {total:.0}",
            mode.label()
        );
    }
    if modes[0] == Mode::Plain {
        let (t0, m0) = medians[0];
        for (mode, (t1, m1)) in modes.iter().zip(&medians).skip(1) {
            println!(
                "the jail's cost{} (same minutes, alternating runs): start {:+.3} ms ({:.2}x), VMM memory {:+.2} MiB ({:.2}x)",
                mode.label(),
                t1 - t0,
                t1 / t0,
                m1 - m0,
                m1 / m0
            );
        }
    }
}

/// How a run starts the VMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A plain child process.
    Plain,
    /// Jailed, with a network namespace of its own.
    Jailed,
    /// Jailed, joining an existing network namespace.
    JailedInNetns,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Plain => "",
            Mode::Jailed => " (jailed)",
            Mode::JailedInNetns => " (jailed, joining a network namespace)",
        }
    }
}

/// A jailed run's settings.
struct Jail<'a> {
    dir: &'a Path,
    id: u32,
    /// The VMM's stderr.
    err: &'a File,
    /// `--jail-netns`.
    netns: Option<&'a str>,
}

/// A network namespace kept alive by `unshare --net sleep infinity` until dropped.
struct NetnsHolder {
    child: Child,
    path: String,
}

impl NetnsHolder {
    fn start() -> NetnsHolder {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "infinity"])
            .spawn()
            .expect("unshare --net (util-linux)");
        let path = format!("/proc/{}/ns/net", child.id());
        let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(&path).ok().as_ref() == Some(&ours) {
            assert!(
                Instant::now() < deadline,
                "unshare --net did not take effect"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        NetnsHolder { child, path }
    }
}

impl Drop for NetnsHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Adds the step durations a jailed VMM logged (`jail entered: netns=412us ...`).
fn record_steps(log: &Path, steps: &mut BTreeMap<String, Vec<f64>>) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let Some(line) = text.lines().find_map(|l| l.split("jail entered: ").nth(1)) else {
        panic!("the jailed VMM logged no step times: {text:?}");
    };
    for part in line.split_whitespace() {
        if let Some((step, us)) = part.split_once('=') {
            if let Ok(us) = us.trim_end_matches("us").parse::<f64>() {
                steps.entry(step.to_string()).or_default().push(us);
            }
        }
    }
}

/// Prints one mode's figures; returns its median latency (ms) and memory (MiB).
fn report(bin: &str, label: &str, runs: usize, s: &mut Series) -> (f64, f64) {
    let latencies = &mut s.latencies;
    let samples = &s.samples;
    let mut sorted = latencies.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("hull-vmm: {bin}{label}");
    let latency = median(latencies);
    println!(
        "start to first guest instruction: median {:.3} ms, p10 {:.3} ms, p90 {:.3} ms ({runs} runs)",
        latency,
        sorted[runs / 10],
        sorted[runs * 9 / 10]
    );
    let mib = |f: fn(&Breakdown) -> u64| {
        let mut v: Vec<f64> = samples.iter().map(|s| f(s) as f64).collect();
        median(&mut v) / 1024.0
    };
    println!(
        "VMM memory (RSS minus guest memory): median {:.2} MiB; guest memory touched: median {:.2} MiB",
        mib(|b| b.own_rss),
        mib(|b| b.guest_rss)
    );
    println!(
        "VMM anonymous memory (heap, stacks, relocated data; excludes code): median {:.2} MiB",
        mib(|b| b.anonymous)
    );
    println!(
        "  by sharing (medians, MiB): private dirty {:.2}, private clean {:.2}, shared clean {:.2}, shared dirty {:.2}; anonymous {:.2}, dirty file pages {:.2}; PSS {:.2}",
        mib(|b| b.private_dirty),
        mib(|b| b.private_clean),
        mib(|b| b.shared_clean),
        mib(|b| b.shared_dirty),
        mib(|b| b.anonymous),
        mib(|b| b.file_dirty),
        mib(|b| b.own_pss),
    );
    println!(
        "  by mapping (RSS medians, MiB): hull-vmm binary {:.2}, shared libraries {:.2}, heap + anonymous (thread stacks) {:.2}, main stack {:.2}, KVM vCPU/VM mappings {:.2}, vdso/vvar/other {:.2}",
        mib(|b| b.binary),
        mib(|b| b.libraries),
        mib(|b| b.heap_and_anon),
        mib(|b| b.stack),
        mib(|b| b.kvm),
        mib(|b| b.kernel_other),
    );
    (latency, mib(|b| b.own_rss))
}
