//! `hull-harness`: runs a shell script inside the nested harness (QEMU/TCG with emulated
//! AMD-V, a real /dev/kvm inside) from the command line, with files copied in. It is the
//! harness library of the tests (`hull_tests::harness`) behind a small CLI, so that
//! `hull bench --harness` can use the same machine the tier-4 tests use.
//!
//! ```text
//! hull-harness [--timeout SECS] [--memory MIB] [--cpus N]
//!              [--binary HOST=GUEST]... [--file HOST=GUEST]... [--dir HOST=GUEST]...
//!              --script FILE
//! ```
//!
//! The script's output goes to stdout; the exit status is the script's, 124 when the run
//! timed out, 125 when the harness is unavailable or the test host froze or its kernel
//! crashed (the whole story then goes to stderr). Nothing is retried unless
//! `HULL_HARNESS_RETRY_FROZEN=1` allows one retry of a frozen machine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use hull_tests::harness::Harness;

const USAGE: &str = "usage: hull-harness [--timeout SECS] [--memory MIB] [--cpus N] \
                     [--binary HOST=GUEST]... [--file HOST=GUEST]... [--dir HOST=GUEST]... \
                     --script FILE";

enum Item {
    Binary(PathBuf, String),
    File(PathBuf, String),
    Dir(PathBuf, String),
}

fn parse() -> Result<(Vec<Item>, String, Duration, u32, u32), String> {
    let mut items = Vec::new();
    let mut script = None;
    let mut timeout = Duration::from_secs(600);
    let (mut memory, mut cpus) = (2048u32, hull_tests::harness::DEFAULT_CPUS);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        let pair = |v: String| -> Result<(PathBuf, String), String> {
            let (host, guest) = v
                .split_once('=')
                .ok_or_else(|| format!("{flag} {v}: expected HOST=GUEST"))?;
            if !guest.starts_with('/') {
                return Err(format!("{flag} {v}: the guest path must be absolute"));
            }
            Ok((PathBuf::from(host), guest.to_string()))
        };
        match flag.as_str() {
            "--binary" => {
                let (h, g) = pair(value()?)?;
                items.push(Item::Binary(h, g));
            }
            "--file" => {
                let (h, g) = pair(value()?)?;
                items.push(Item::File(h, g));
            }
            "--dir" => {
                let (h, g) = pair(value()?)?;
                items.push(Item::Dir(h, g));
            }
            "--script" => {
                let path = value()?;
                script = Some(
                    std::fs::read_to_string(&path).map_err(|e| format!("--script {path}: {e}"))?,
                );
            }
            "--timeout" => {
                let v = value()?;
                let secs: u64 = v
                    .parse()
                    .ok()
                    .filter(|s| (1..=86_400).contains(s))
                    .ok_or_else(|| format!("--timeout {v}: expected 1..86400 seconds"))?;
                timeout = Duration::from_secs(secs);
            }
            "--memory" => {
                let v = value()?;
                memory = v
                    .parse()
                    .ok()
                    .filter(|m| (256..=16384).contains(m))
                    .ok_or_else(|| format!("--memory {v}: expected 256..16384 MiB"))?;
            }
            "--cpus" => {
                let v = value()?;
                cpus = v
                    .parse()
                    .ok()
                    .filter(|c| (1..=8).contains(c))
                    .ok_or_else(|| format!("--cpus {v}: expected 1..8"))?;
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let script = script.ok_or_else(|| format!("--script is required\n{USAGE}"))?;
    for item in &items {
        let (Item::Binary(host, _) | Item::File(host, _) | Item::Dir(host, _)) = item;
        if !host.exists() {
            return Err(format!("{} does not exist", host.display()));
        }
    }
    Ok((items, script, timeout, memory, cpus))
}

fn main() -> ExitCode {
    let (items, script, timeout, memory, cpus) = match parse() {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("hull-harness: {message}");
            return ExitCode::from(2);
        }
    };
    if let Err(why) = Harness::available() {
        eprintln!("hull-harness: the nested harness is not available: {why}");
        return ExitCode::from(125);
    }
    let mut harness = Harness::new().memory_mib(memory).cpus(cpus);
    for item in &items {
        harness = match item {
            Item::Binary(h, g) => harness.binary(h, g),
            Item::File(h, g) => harness.file(h, g),
            Item::Dir(h, g) => harness.dir(h, g),
        };
    }
    let run = harness.run(&script, timeout);
    print!("{}", run.output);
    // A test host whose kernel crashed (or froze) is a failed run even if the script
    // finished: the crash may be the inner VMM's doing.
    if let Some(fault) = run.outer_fault() {
        eprintln!("hull-harness: the test host failed: {fault}\n{run}");
        return ExitCode::from(125);
    }
    match run.status {
        Some(status) => {
            if status != 0 {
                eprintln!("{run}");
            }
            ExitCode::from(u8::try_from(status).unwrap_or(1))
        }
        None => {
            eprintln!("{run}");
            ExitCode::from(if run.timed_out { 124 } else { 125 })
        }
    }
}
