//! The bench's results: per-subject summaries, ratios, and the terminal table.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::env::Environment;
use super::stats::Summary;
use super::BenchConfig;
use crate::isolation::IsolationKind;

/// Version of the JSON layout (bump on incompatible change).
pub const SCHEMA: &str = "hull-bench/1";
/// Subjects other subjects are compared against, when they have results.
pub const BASELINES: [&str; 2] = ["hull-process", "hull-vm"];

/// The density phase of one subject.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DensityResult {
    /// Containers asked for.
    pub containers: usize,
    /// Containers that started and said `ready`.
    pub started: usize,
    /// Containers that answered a ping while all were alive.
    pub answering: usize,
    /// Time to start all of them, one after another (only when all started).
    pub start_all_ms: Option<f64>,
    /// Time to start each.
    pub start_each_ms: Option<Summary>,
    /// Host memory per container: PSS of every host process belonging to it, KiB.
    pub pss_kib: Option<Summary>,
    /// Host processes per container (runtime, shim, VMM, workload).
    pub host_processes: Option<Summary>,
    /// VM only: guest RAM actually touched, KiB (part of the VMM's PSS).
    pub guest_touched_kib: Option<Summary>,
    /// Time from closing a container's stdin to its runtime's exit.
    pub stop_ms: Option<Summary>,
}

/// Results of one subject.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubjectResult {
    /// Subject name (`hull-process`, `hull-vm`, `crun`, `runc`, `qemu-microvm`).
    pub name: String,
    /// Isolation model it provides.
    pub isolation: IsolationKind,
    /// Runtime version, when known.
    pub version: Option<String>,
    /// Whether it could be measured at all.
    pub available: bool,
    /// Why not, when it could not.
    pub unavailable_reason: Option<String>,
    /// How it was run differently from the defaults, if at all.
    pub notes: Vec<String>,
    /// Timed runs that succeeded.
    pub runs_ok: usize,
    /// Failures seen (first few; `errors_total` counts all).
    pub errors: Vec<String>,
    /// Number of failures.
    pub errors_total: usize,
    /// Spawn of `run --rm` to the command's first output.
    pub start_latency_ms: Option<Summary>,
    /// Spawn of `run --rm` to its exit.
    pub end_to_end_ms: Option<Summary>,
    /// The command's last output to the runtime's exit.
    pub teardown_ms: Option<Summary>,
    /// M containers alive at once.
    pub density: Option<DensityResult>,
}

impl SubjectResult {
    /// An empty, available result.
    pub fn new(name: &str, isolation: IsolationKind, version: Option<String>) -> Self {
        SubjectResult {
            name: name.to_string(),
            isolation,
            version,
            available: true,
            unavailable_reason: None,
            notes: Vec::new(),
            runs_ok: 0,
            errors: Vec::new(),
            errors_total: 0,
            start_latency_ms: None,
            end_to_end_ms: None,
            teardown_ms: None,
            density: None,
        }
    }

    /// Marks the subject unavailable (the first reason wins).
    pub fn set_unavailable(&mut self, reason: String) {
        if self.available {
            self.available = false;
            self.unavailable_reason = Some(reason);
        }
    }

    /// Median of a metric by its JSON name, if measured.
    pub fn median(&self, metric: &str) -> Option<f64> {
        let density = self.density.as_ref();
        match metric {
            "start_latency_ms" => self.start_latency_ms.map(|s| s.median),
            "end_to_end_ms" => self.end_to_end_ms.map(|s| s.median),
            "teardown_ms" => self.teardown_ms.map(|s| s.median),
            "pss_kib" => density.and_then(|d| d.pss_kib).map(|s| s.median),
            "density_start_all_ms" => density.and_then(|d| d.start_all_ms),
            _ => None,
        }
    }
}

/// Metrics that get ratios, with their labels.
pub const RATIO_METRICS: [(&str, &str); 5] = [
    ("start_latency_ms", "start latency"),
    ("end_to_end_ms", "end-to-end run --rm"),
    ("teardown_ms", "teardown"),
    ("pss_kib", "host memory per container (PSS)"),
    ("density_start_all_ms", "density: start all"),
];

/// `subject`'s median over `baseline`'s for one metric.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ratio {
    /// Metric name (as in the subject results).
    pub metric: String,
    /// The subject.
    pub subject: String,
    /// What it is compared to.
    pub baseline: String,
    /// subject median / baseline median.
    pub ratio: f64,
}

/// Settings of the run, as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Image reference.
    pub image: String,
    /// Command of the timed runs.
    pub command: Vec<String>,
    /// Timed runs per subject.
    pub runs: usize,
    /// Warm-up runs per subject.
    pub warmup: usize,
    /// Containers alive at once in the density phase.
    pub density: usize,
    /// Script the density containers run.
    pub density_command: Vec<String>,
    /// Per-run timeout, seconds.
    pub timeout_s: f64,
    /// How the figures were taken.
    pub method: Vec<String>,
}

/// The whole bench result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchReport {
    /// JSON layout version.
    pub schema: String,
    /// Where and when.
    pub environment: Environment,
    /// What was asked.
    pub settings: Settings,
    /// One entry per requested subject, available or not.
    pub subjects: Vec<SubjectResult>,
    /// Ratios of medians against the hull baselines.
    pub ratios: Vec<Ratio>,
}

impl BenchReport {
    /// Assembles the report and computes the ratios.
    pub fn new(
        environment: Environment,
        config: BenchConfig,
        subjects: Vec<SubjectResult>,
    ) -> Self {
        let mut ratios = Vec::new();
        for baseline in baselines(&subjects) {
            let Some(base) = subjects.iter().find(|s| s.name == baseline) else {
                continue;
            };
            for subject in subjects.iter().filter(|s| s.name != baseline) {
                for (metric, _) in RATIO_METRICS {
                    if let (Some(a), Some(b)) = (subject.median(metric), base.median(metric)) {
                        if b > 0.0 {
                            ratios.push(Ratio {
                                metric: metric.to_string(),
                                subject: subject.name.clone(),
                                baseline: baseline.clone(),
                                ratio: a / b,
                            });
                        }
                    }
                }
            }
        }
        let settings = Settings {
            image: config.image,
            command: config.command,
            runs: config.runs,
            warmup: config.warmup,
            density: config.density,
            density_command: vec!["sh".into(), "-c".into(), super::DENSITY_SCRIPT.into()],
            timeout_s: config.timeout.as_secs_f64(),
            method: vec![
                "each subject runs the command in the foreground, removing the container on \
                 exit (hull run --rm; crun/runc run); times are taken from outside: spawn to \
                 first byte of stdout, spawn to exit, last byte to exit (teardown)"
                    .into(),
                "runs are interleaved round-robin across subjects after the warm-up runs".into(),
                "crun/runc run an OCI bundle prepared once (the image's layers merged by one \
                 overlay mount, their own default spec); hull sets up the container's rootfs \
                 in every run, and that is in its times"
                    .into(),
                "memory is the PSS (smaps_rollup) of every host process belonging to a \
                 container (runtime process, shim, VMM, workload) while all density \
                 containers are alive; shared pages are split among their users"
                    .into(),
            ],
        };
        BenchReport {
            schema: SCHEMA.to_string(),
            environment,
            settings,
            subjects,
            ratios,
        }
    }

    /// The ratio of `subject` to `baseline` for `metric`, if computed.
    pub fn ratio(&self, metric: &str, subject: &str, baseline: &str) -> Option<f64> {
        self.ratios
            .iter()
            .find(|r| r.metric == metric && r.subject == subject && r.baseline == baseline)
            .map(|r| r.ratio)
    }

    /// The report as a table for a terminal.
    pub fn to_table(&self) -> String {
        let mut t = String::new();
        let env = &self.environment;
        let s = &self.settings;
        let _ = writeln!(
            t,
            "hull bench: {} `{}`, {} runs (+{} warm-up) per subject, density {}",
            s.image,
            s.command.join(" "),
            s.runs,
            s.warmup,
            s.density
        );
        let _ = writeln!(
            t,
            "host: {}, Linux {}, {}, {} CPUs, {} MiB, KVM {}, cgroup {}{}{}",
            env.hostname,
            env.kernel,
            env.cpu_model,
            env.cpus,
            env.memory_mib,
            wire_name(&env.kvm),
            wire_name(&env.cgroup_version),
            if env.host_is_vm { ", host is a VM" } else { "" },
            if env.nested_harness {
                " -- INSIDE THE NESTED HARNESS (emulated CPU: compare only within this run)"
            } else {
                ""
            }
        );
        if let Some(outer) = &env.outer_host {
            let _ = writeln!(
                t,
                "ran inside the nested harness (QEMU/TCG, emulated AMD-V) on {outer}"
            );
        }
        let _ = writeln!(
            t,
            "taken {} in {:.0} s, load average {:.2} {:.2} {:.2} at start",
            env.started_at,
            env.duration_s,
            env.load_average[0],
            env.load_average[1],
            env.load_average[2]
        );
        let measured: Vec<&SubjectResult> =
            self.subjects.iter().filter(|s| s.runs_ok > 0).collect();
        let candidates = baselines(&self.subjects);
        let base = |metric: &str| {
            candidates
                .iter()
                .find(|b| {
                    self.subjects
                        .iter()
                        .any(|s| &s.name == *b && s.median(metric).is_some())
                })
                .map(String::as_str)
        };
        type Getter = fn(&SubjectResult) -> Option<Summary>;
        let per_run: [(&str, &str, Getter); 3] = [
            (
                "start_latency_ms",
                "start latency to first output (ms)",
                |s| s.start_latency_ms,
            ),
            ("end_to_end_ms", "end-to-end run --rm (ms)", |s| {
                s.end_to_end_ms
            }),
            ("teardown_ms", "teardown after last output (ms)", |s| {
                s.teardown_ms
            }),
        ];
        for (metric, title, get) in per_run {
            let baseline = base(metric);
            let _ = writeln!(
                t,
                "\n{title:<38} {:>9} {:>9} {:>9} {:>9}  {}",
                "median",
                "p95",
                "min",
                "max",
                baseline.map(|b| format!("vs {b}")).unwrap_or_default()
            );
            for subject in &measured {
                let label = format!("{} ({})", subject.name, subject.isolation);
                match get(subject) {
                    Some(sum) => {
                        let _ = writeln!(
                            t,
                            "  {label:<36} {:>9.1} {:>9.1} {:>9.1} {:>9.1}  {}",
                            sum.median,
                            sum.p95,
                            sum.min,
                            sum.max,
                            self.ratio_text(metric, &subject.name, baseline)
                        );
                    }
                    // Not measured (e.g. a command that prints nothing has no first
                    // output to time): said so, never a stand-in figure.
                    None => {
                        let _ = writeln!(
                            t,
                            "  {label:<36} {:>9} {:>9} {:>9} {:>9}  {}",
                            NOT_MEASURED,
                            NOT_MEASURED,
                            NOT_MEASURED,
                            NOT_MEASURED,
                            not_measured_why(metric)
                        );
                    }
                }
            }
        }
        let dense: Vec<(&SubjectResult, &DensityResult)> = self
            .subjects
            .iter()
            .filter_map(|s| Some((s, s.density.as_ref()?)))
            .collect();
        if !dense.is_empty() {
            let baseline = base("pss_kib");
            let _ = writeln!(
                t,
                "\n{:<38} {:>9} {:>9} {:>12} {:>12} {:>6}  {}",
                format!("density ({} containers alive at once)", s.density),
                "started",
                "answered",
                "start all ms",
                "PSS KiB/ctr",
                "procs",
                baseline.map(|b| format!("PSS vs {b}")).unwrap_or_default()
            );
            for (subject, d) in dense {
                let _ = writeln!(
                    t,
                    "  {:<36} {:>9} {:>9} {:>12} {:>12} {:>6}  {}",
                    subject.name,
                    d.started,
                    d.answering,
                    d.start_all_ms.map_or("-".into(), |v| format!("{v:.0}")),
                    d.pss_kib.map_or("-".into(), |v| format!("{:.0}", v.median)),
                    d.host_processes
                        .map_or("-".into(), |v| format!("{:.0}", v.median)),
                    self.ratio_text("pss_kib", &subject.name, baseline)
                );
                if let Some(g) = d.guest_touched_kib {
                    let _ = writeln!(t, "  {:<36} guest RAM touched {:.0} KiB", "", g.median);
                }
            }
        }
        let unavailable: Vec<&SubjectResult> =
            self.subjects.iter().filter(|s| !s.available).collect();
        if !unavailable.is_empty() {
            let _ = writeln!(t, "\nnot measured:");
            for s in unavailable {
                let _ = writeln!(
                    t,
                    "  {:<14} {}",
                    s.name,
                    s.unavailable_reason.as_deref().unwrap_or("unknown")
                );
            }
        }
        let noted: Vec<&SubjectResult> = self
            .subjects
            .iter()
            .filter(|s| !s.notes.is_empty())
            .collect();
        if !noted.is_empty() {
            let _ = writeln!(t, "\nnotes:");
            for s in noted {
                for n in &s.notes {
                    let _ = writeln!(t, "  {:<14} {n}", s.name);
                }
            }
        }
        let failing: Vec<&SubjectResult> = self
            .subjects
            .iter()
            .filter(|s| s.errors_total > 0)
            .collect();
        if !failing.is_empty() {
            let _ = writeln!(t, "\nerrors:");
            for s in failing {
                for e in &s.errors {
                    let _ = writeln!(t, "  {:<14} {e}", s.name);
                }
                if s.errors_total > s.errors.len() {
                    let _ = writeln!(t, "  {:<14} ... {} in all", s.name, s.errors_total);
                }
            }
        }
        t
    }

    fn ratio_text(&self, metric: &str, subject: &str, baseline: Option<&str>) -> String {
        match baseline {
            Some(b) if b == subject => "1.00x".into(),
            Some(b) => self
                .ratio(metric, subject, b)
                .map(|r| format!("{r:.2}x"))
                .unwrap_or_default(),
            None => String::new(),
        }
    }
}

/// What ratios are taken against: hull's models, and when neither was measured, the first
/// subject that was (so peers are still compared with each other).
fn baselines(subjects: &[SubjectResult]) -> Vec<String> {
    let mut names: Vec<String> = BASELINES.iter().map(|b| b.to_string()).collect();
    let hull_measured = subjects
        .iter()
        .any(|s| BASELINES.contains(&s.name.as_str()) && s.runs_ok > 0);
    if !hull_measured {
        if let Some(first) = subjects.iter().find(|s| s.runs_ok > 0) {
            names.push(first.name.clone());
        }
    }
    names
}

/// What the table prints for a figure that was not measured.
pub const NOT_MEASURED: &str = "n/a";

/// Why a per-run metric can be missing for a subject whose runs succeeded.
fn not_measured_why(metric: &str) -> &'static str {
    match metric {
        "start_latency_ms" | "teardown_ms" => "(the command printed nothing to time)",
        _ => "",
    }
}

/// The JSON name of a unit enum value (`pvm`, `hybrid`), for text output.
pub fn wire_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
