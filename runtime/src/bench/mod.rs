//! `hull bench`: what each isolation model costs on this host, measured side by side with
//! peers doing the same work.
//!
//! Every subject (hull under each isolation model, crun, runc, QEMU microvm) runs the same
//! image and command. Per subject the bench measures, from the outside as a user sees it:
//! - start latency: spawn of `run --rm` to the command's first byte of output;
//! - end-to-end: spawn to exit of `run --rm`;
//! - teardown: the command's last byte of output to the runtime's exit (unmount, cgroup
//!   removal, VM shutdown ...);
//! - density: M containers alive at once (time to start them all, host memory per container
//!   by PSS of every host process belonging to it, each answering a ping over its stdin).
//!
//! Runs are interleaved round-robin across subjects so slow drift of the host (page cache,
//! frequency) affects them alike. Results carry the host, kernel, KVM kind, versions and
//! settings ([`report::Environment`]).

pub mod env;
pub mod harness;
pub mod measure;
pub mod procfs;
pub mod report;
pub mod runners;
pub mod stats;
pub mod svg;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use thiserror::Error;

use crate::isolation::IsolationKind;
use crate::paths::StatePaths;
use report::{BenchReport, DensityResult, SubjectResult};
use runners::Runner;
use stats::Summary;

/// Default image: the one scripts/build-default-image.sh imports.
pub const DEFAULT_IMAGE: &str = "hull/busybox:latest";
/// Text the default command prints; a run whose output differs did not really run.
pub const READY_TEXT: &str = "hull-bench-ready";
/// Shell script each density container runs: announce, answer one ping, wait for stdin to
/// close, exit.
pub const DENSITY_SCRIPT: &str = "echo ready; read line; echo \"pong $line\"; read line; exit 0";
/// At most this many error messages are kept per subject.
const MAX_ERRORS: usize = 5;

/// Errors of the bench machinery (a failing subject is a result, not an error).
#[derive(Debug, Error)]
pub enum BenchError {
    /// A system call or spawn failed.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// Something did not finish in time.
    #[error("{0} did not finish within {1:?}")]
    Timeout(String, Duration),
    /// A container did not say what it should have.
    #[error("{0}")]
    Protocol(String),
    /// A run exited non-zero or printed the wrong thing.
    #[error("{0}")]
    RunFailed(String),
    /// The options make no sense.
    #[error("{0}")]
    InvalidConfig(String),
    /// The image could not be used.
    #[error("image {0}: {1}")]
    Image(String, String),
}

/// Peers measured next to hull.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Peer {
    /// crun (C, OCI runtime), process isolation.
    Crun,
    /// runc (Go, OCI reference runtime), process isolation.
    Runc,
    /// QEMU `-M microvm` booting the same guest kernel, VM isolation.
    QemuMicrovm,
}

impl Peer {
    /// Subject name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Crun => "crun",
            Peer::Runc => "runc",
            Peer::QemuMicrovm => "qemu-microvm",
        }
    }
}

/// What to measure.
#[derive(Debug, Clone, Serialize)]
pub struct BenchConfig {
    /// Image reference.
    pub image: String,
    /// Command run in every container for the single-run metrics.
    pub command: Vec<String>,
    /// Timed runs per subject.
    pub runs: usize,
    /// Untimed runs per subject first (page cache, lazy setup).
    pub warmup: usize,
    /// Containers alive at once in the density phase (0 skips it).
    pub density: usize,
    /// hull isolation models to measure.
    pub models: Vec<IsolationKind>,
    /// Peers to measure where installed.
    pub peers: Vec<Peer>,
    /// Longest any single run or container start may take.
    pub timeout: Duration,
}

impl BenchConfig {
    /// Rejects settings that cannot give a result.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |m: &str| Err(BenchError::InvalidConfig(m.to_string()));
        if self.runs == 0 {
            return bad("--runs must be at least 1");
        }
        if self.runs > 10_000 {
            return bad("--runs must be at most 10000");
        }
        if self.warmup > 100 {
            return bad("--warmup must be at most 100");
        }
        if self.density > 500 {
            return bad("--density must be at most 500 containers");
        }
        if self.command.is_empty() {
            return bad("the command must not be empty");
        }
        if self.models.is_empty() && self.peers.is_empty() {
            return bad("nothing to measure: no --isolation model and no --peers");
        }
        if self.timeout.is_zero() {
            return bad("--timeout must be more than 0 seconds");
        }
        Ok(())
    }

    /// Whether the command is the default one, whose output is checked.
    fn checks_output(&self) -> bool {
        self.command == default_command()
    }
}

/// The default command: print a known line and exit.
pub fn default_command() -> Vec<String> {
    vec!["echo".into(), READY_TEXT.into()]
}

/// Progress callbacks (a terminal progress bar in the CLI).
pub trait Progress {
    /// Total number of steps is now `total`.
    fn set_total(&self, total: u64);
    /// One step done; `what` says what is running now.
    fn step(&self, what: &str);
    /// A line worth showing above the bar.
    fn note(&self, line: &str);
}

/// Runs the whole benchmark and returns the report. `work_dir` is scratch space (bundles,
/// peer state) that is removed before returning.
pub fn run(
    config: &BenchConfig,
    paths: &StatePaths,
    work_dir: PathBuf,
    progress: &dyn Progress,
) -> Result<BenchReport, BenchError> {
    config.validate()?;
    let started = Instant::now();
    let mut env_record = env::Environment::collect(paths);
    let mut runners = runners::select(config, paths, &work_dir);
    let mut results: Vec<SubjectResult> = runners
        .iter()
        .map(|r| SubjectResult::new(r.name(), r.isolation(), r.version()))
        .collect();
    let steps = (1 + config.warmup + config.runs + config.density * 2) * runners.len();
    progress.set_total(steps as u64);

    // Prepare each subject; those that cannot run are reported with the reason.
    for (runner, result) in runners.iter_mut().zip(results.iter_mut()) {
        progress.step(&format!("{}: preparing", runner.name()));
        let prepared = runner.prepare();
        result.notes = runner.notes();
        if let Err(reason) = prepared {
            progress.note(&format!("{}: not available: {reason}", runner.name()));
            result.set_unavailable(reason);
        }
    }

    // Warm-up: a subject whose first run fails is unavailable, with that failure as reason.
    for (runner, result) in runners.iter_mut().zip(results.iter_mut()) {
        for _ in 0..config.warmup {
            progress.step(&format!("{}: warm-up", runner.name()));
            if !result.available {
                continue;
            }
            if let Err(err) = one_run(runner.as_mut(), config) {
                progress.note(&format!("{}: warm-up failed: {err}", runner.name()));
                result.set_unavailable(format!("warm-up run failed: {err}"));
            }
        }
    }

    // Timed runs, round-robin across subjects.
    let mut samples: Vec<[Vec<f64>; 3]> = vec![Default::default(); runners.len()];
    for i in 0..config.runs {
        for ((runner, result), samples) in runners
            .iter_mut()
            .zip(results.iter_mut())
            .zip(samples.iter_mut())
        {
            progress.step(&format!("{}: run {}/{}", runner.name(), i + 1, config.runs));
            if !result.available {
                continue;
            }
            match one_run(runner.as_mut(), config) {
                Ok(t) => {
                    // Start latency and teardown are timed from the command's output; a
                    // command that prints nothing gives neither (reported as n/a), never
                    // its end-to-end time and 0 in their place.
                    if let (Some(first), Some(last)) = (t.first_output, t.last_output) {
                        samples[0].push(ms(first));
                        samples[2].push(ms(t.end_to_end.saturating_sub(last)));
                    }
                    samples[1].push(ms(t.end_to_end));
                    result.runs_ok += 1;
                }
                Err(err) => result.record_error(format!("run {}: {err}", i + 1)),
            }
        }
    }
    for (result, samples) in results.iter_mut().zip(samples.iter()) {
        // With no warm-up, a subject none of whose runs worked is unavailable, not measured.
        if result.available && result.runs_ok == 0 {
            let first = result.errors.first().cloned().unwrap_or_default();
            result.set_unavailable(format!("every run failed: {first}"));
        }
        result.start_latency_ms = Summary::of(&samples[0]);
        result.end_to_end_ms = Summary::of(&samples[1]);
        result.teardown_ms = Summary::of(&samples[2]);
    }

    // Density, one subject at a time (they would otherwise share the host's memory).
    if config.density > 0 {
        for (runner, result) in runners.iter_mut().zip(results.iter_mut()) {
            if !result.available {
                for _ in 0..config.density * 2 {
                    progress.step(&format!("{}: skipped", runner.name()));
                }
                continue;
            }
            result.density = Some(density(runner.as_mut(), config, progress, result));
        }
    }

    for (runner, result) in runners.iter_mut().zip(results.iter_mut()) {
        for leftover in runner.cleanup() {
            result.record_error(format!("cleanup: {leftover}"));
        }
    }
    let _ = std::fs::remove_dir_all(&work_dir);
    env_record.duration_s = started.elapsed().as_secs_f64();
    Ok(BenchReport::new(env_record, config.clone(), results))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One `run --rm` of the configured command, checked.
fn one_run(runner: &mut dyn Runner, config: &BenchConfig) -> Result<measure::Timed, BenchError> {
    let timed = runner.run_once(&config.command, config.timeout)?;
    if timed.exit_code != 0 {
        return Err(BenchError::RunFailed(format!(
            "exit status {}: {}",
            timed.exit_code,
            first_line(&timed.stderr_text())
        )));
    }
    if config.checks_output() && String::from_utf8_lossy(&timed.stdout).trim() != READY_TEXT {
        return Err(BenchError::RunFailed(format!(
            "expected output {READY_TEXT:?}, got {:?} (stderr: {})",
            String::from_utf8_lossy(&timed.stdout).trim(),
            first_line(&timed.stderr_text())
        )));
    }
    Ok(timed)
}

fn first_line(text: &str) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    line.chars().take(300).collect()
}

/// M containers alive at once: start them one after another until each says `ready`, ping
/// each, measure their memory, then close their stdin and time each exit.
fn density(
    runner: &mut dyn Runner,
    config: &BenchConfig,
    progress: &dyn Progress,
    result: &mut SubjectResult,
) -> DensityResult {
    let mut out = DensityResult {
        containers: config.density,
        ..Default::default()
    };
    let argv: Vec<String> = vec!["sh".into(), "-c".into(), DENSITY_SCRIPT.into()];
    let mut live = Vec::with_capacity(config.density);
    let mut start_each = Vec::new();
    let t0 = Instant::now();
    for i in 0..config.density {
        progress.step(&format!(
            "{}: starting container {}/{}",
            runner.name(),
            i + 1,
            config.density
        ));
        let t = Instant::now();
        let started = runner.spawn_live(i, &argv).and_then(|mut c| {
            match c.child.expect_line("ready", t + config.timeout) {
                Ok(_) => Ok(c),
                Err(e) => {
                    c.child.kill();
                    Err(e)
                }
            }
        });
        match started {
            Ok(c) => {
                start_each.push(ms(t.elapsed()));
                live.push(c);
            }
            Err(err) => {
                result.record_error(format!("density container {}: {err}", i + 1));
                break;
            }
        }
    }
    out.started = live.len();
    if live.len() == config.density {
        out.start_all_ms = Some(ms(t0.elapsed()));
    }
    out.start_each_ms = Summary::of(&start_each);

    // All alive: each must answer, then measure memory while every one of them is up.
    let deadline = Instant::now() + config.timeout;
    for (i, c) in live.iter_mut().enumerate() {
        let answered = c
            .child
            .send_line(&format!("ping-{i}"))
            .and_then(|_| c.child.expect_line("pong", deadline));
        match answered {
            Ok(line) if line == format!("pong ping-{i}") => out.answering += 1,
            Ok(line) => result.record_error(format!("container {}: answered {line:?}", i + 1)),
            Err(err) => result.record_error(format!("container {}: {err}", i + 1)),
        }
    }
    let mut pss = Vec::new();
    let mut procs = Vec::new();
    let mut guest = Vec::new();
    for c in &live {
        let members = runner.members(c);
        let (kib, n) = procfs::total_pss_kib(&members);
        if n > 0 {
            pss.push(kib as f64);
            procs.push(n as f64);
        }
        if let Some(kib) = runner.guest_touched_kib(c) {
            guest.push(kib as f64);
        }
    }
    out.pss_kib = Summary::of(&pss);
    out.host_processes = Summary::of(&procs);
    out.guest_touched_kib = Summary::of(&guest);

    // Stop: closing stdin lets each container's script finish; time until its runtime exits.
    let mut stop = Vec::new();
    for (i, mut c) in live.into_iter().enumerate() {
        progress.step(&format!(
            "{}: stopping container {}/{}",
            runner.name(),
            i + 1,
            out.started
        ));
        let t = Instant::now();
        runner.end_input(&mut c);
        match c.child.wait(config.timeout) {
            Ok(0) => stop.push(ms(t.elapsed())),
            Ok(code) => result.record_error(format!("container {} exited {code}", i + 1)),
            Err(err) => result.record_error(format!("stopping container {}: {err}", i + 1)),
        }
        runner.forget(&c);
    }
    for _ in out.started..config.density {
        progress.step(&format!("{}: skipped", runner.name()));
        progress.step(&format!("{}: skipped", runner.name()));
    }
    out.stop_ms = Summary::of(&stop);
    out
}

impl SubjectResult {
    fn record_error(&mut self, message: String) {
        self.errors_total += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(message);
        }
    }
}
