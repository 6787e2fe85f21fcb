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
//! `HULL_VMM_BENCH_JAIL=1` runs each VMM jailed (`unshare --pid --fork` + `--jail`, as
//! root), so start time and memory include the jail (and unshare's own fork + exec).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    let jail = std::env::var_os("HULL_VMM_BENCH_JAIL").is_some_and(|v| !v.is_empty());
    let jail_dir = dir.path().join("jail");
    if jail {
        std::fs::create_dir(&jail_dir).unwrap();
    }

    let mut latencies = Vec::with_capacity(runs);
    let mut samples: Vec<Breakdown> = Vec::with_capacity(runs);
    for run in 0..runs {
        let start = Instant::now();
        let mut cmd = if jail {
            // A uid per run, as hull gives each VM its own: RLIMIT_NPROC counts per uid, and
            // the previous run's VMM may still be exiting.
            let id = (3_999_100_000 + run).to_string();
            std::os::unix::fs::chown(&jail_dir, Some(3_999_100_000 + run as u32), None).unwrap();
            let mut c = Command::new("unshare");
            c.args(["--pid", "--fork", "--kill-child"])
                .arg(&bin)
                .args(args)
                .args(["--jail", jail_dir.to_str().unwrap()])
                .args(["--jail-uid", &id, "--jail-gid", &id])
                .current_dir(&jail_dir);
            c
        } else {
            let mut c = Command::new(&bin);
            c.args(args);
            c
        };
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn hull-vmm");
        let mut byte = [0u8; 1];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut byte)
            .expect("first guest output");
        latencies.push(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(byte[0], b'!');
        std::thread::sleep(SETTLE);
        let dump_this = if run == 0 { dump.as_deref() } else { None };
        let pid = if jail {
            let children =
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
                    .unwrap();
            children.split_whitespace().next().unwrap().parse().unwrap()
        } else {
            child.id()
        };
        samples.push(breakdown(pid, dump_this));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let mut sorted = latencies.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("hull-vmm: {bin}{}", if jail { " (jailed)" } else { "" });
    println!(
        "start to first guest instruction: median {:.3} ms, p10 {:.3} ms, p90 {:.3} ms ({runs} runs)",
        median(&mut latencies),
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
}
