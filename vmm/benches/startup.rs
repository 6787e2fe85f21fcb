//! Benchmark (not a test): `cargo bench -p hull-vmm --bench startup`.
//!
//! 1. Start latency: from just before spawning `hull-vmm` to the moment the tiny guest's
//!    first instruction (an `out` to the serial port) shows up on the VMM's stdout pipe.
//! 2. VMM memory: the running VMM's RSS minus the resident part of its guest-memory mapping
//!    (/proc/PID/smaps), i.e. what the VMM itself costs.
//!
//! Prints medians over many runs. Needs /dev/kvm.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 200;
const MEMORY_MIB: u64 = 64;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// (total RSS, RSS of the guest-memory mapping, private dirty outside guest memory) in KiB.
fn smaps_kib(pid: u32) -> (u64, u64, u64) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("read smaps");
    let mut total = 0;
    let mut guest = 0;
    let mut private = 0;
    let mut size = 0;
    for line in smaps.lines() {
        let mut parts = line.split_whitespace();
        let value = |v: Option<&str>| v.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        match parts.next() {
            Some("Size:") => size = value(parts.next()),
            Some("Rss:") => {
                let rss = value(parts.next());
                total += rss;
                if size == MEMORY_MIB * 1024 {
                    guest += rss;
                }
            }
            Some("Private_Dirty:") if size != MEMORY_MIB * 1024 => private += value(parts.next()),
            _ => {}
        }
    }
    (total, guest, private)
}

fn main() {
    if !std::path::Path::new("/dev/kvm").exists() {
        eprintln!("startup bench: /dev/kvm is missing; nothing measured");
        std::process::exit(1);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut asm = support::Asm::new();
    asm.serial_print(b"!").spin();
    let kernel = support::write_guest(dir.path(), "bench.elf", &asm);
    let bin = env!("CARGO_BIN_EXE_hull-vmm");
    let mem = MEMORY_MIB.to_string();
    let args = ["--kernel", kernel.to_str().unwrap(), "--memory", &mem];

    let mut latencies = Vec::with_capacity(RUNS);
    let mut own_kib = Vec::with_capacity(RUNS);
    let mut guest_kib = Vec::with_capacity(RUNS);
    let mut private_kib = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        let mut child = Command::new(bin)
            .args(args)
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
        std::thread::sleep(Duration::from_millis(2));
        let (total, guest, private) = smaps_kib(child.id());
        own_kib.push((total - guest) as f64);
        guest_kib.push(guest as f64);
        private_kib.push(private as f64);
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let mut sorted = latencies.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "start to first guest instruction: median {:.3} ms, p10 {:.3} ms, p90 {:.3} ms ({RUNS} runs)",
        median(&mut latencies),
        sorted[RUNS / 10],
        sorted[RUNS * 9 / 10]
    );
    println!(
        "VMM memory (RSS minus guest memory): median {:.2} MiB; guest memory touched: median {:.2} MiB",
        median(&mut own_kib) / 1024.0,
        median(&mut guest_kib) / 1024.0
    );
    println!(
        "VMM private dirty memory (heap, stacks, data; excludes shared library text): median {:.2} MiB",
        median(&mut private_kib) / 1024.0
    );
}
