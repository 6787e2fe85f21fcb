//! `hull bench`: measure each isolation model, and peers, on this host.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use hull_runtime::bench::{self, BenchConfig, Peer, Progress};
use hull_runtime::isolation::IsolationKind;
use hull_runtime::paths::StatePaths;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::doctor::Format;

/// Isolation models on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Model {
    /// Namespaced process on the host kernel.
    Process,
    /// KVM microVM with its own kernel.
    Vm,
}

/// Peers on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PeerArg {
    /// crun (process isolation).
    Crun,
    /// runc (process isolation).
    Runc,
    /// QEMU -M microvm with the same guest kernel (VM isolation).
    QemuMicrovm,
    /// No peers.
    None,
}

/// Options of `hull bench`.
#[derive(Debug, Args)]
#[command(after_help = "\
Measures, per subject: start latency (spawn of `run --rm` to the command's first output), \
end-to-end `run --rm` time, teardown (last output to exit), and with --density M: M \
containers alive at once (time to start them, host memory per container by PSS, each \
answering a ping). Subjects that cannot run here are listed with the reason.

Exit status: 0 when at least one subject was measured, 1 when none could be, 125 on a usage \
error or when the bench itself failed.")]
pub struct BenchArgs {
    /// Image to run (must be in the store: `hull image import`).
    #[arg(default_value = bench::DEFAULT_IMAGE)]
    pub image: String,

    /// Command to run in each container [default: echo hull-bench-ready].
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,

    /// Timed runs per subject.
    #[arg(short = 'n', long, default_value_t = 10)]
    pub runs: usize,

    /// Untimed warm-up runs per subject.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,

    /// Containers alive at once in the density phase (0 skips it).
    #[arg(long, default_value_t = 5)]
    pub density: usize,

    /// hull isolation models to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Model::Process, Model::Vm])]
    pub isolation: Vec<Model>,

    /// Peers to measure where installed (`none` for none).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [PeerArg::Crun, PeerArg::Runc, PeerArg::QemuMicrovm])]
    pub peers: Vec<PeerArg>,

    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Also write the results as an SVG chart to FILE.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,

    /// Longest a single run or container start may take, in seconds.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    pub timeout: f64,

    /// Run the whole bench inside the nested harness (QEMU/TCG with emulated AMD-V), for
    /// hosts whose KVM cannot boot a Linux guest (PVM).
    #[arg(long)]
    pub harness: bool,

    /// Measure nothing: print (and chart with --svg) a report saved earlier with
    /// `--format json`.
    #[arg(long, value_name = "FILE", conflicts_with = "harness")]
    pub from_json: Option<PathBuf>,

    /// With --harness: longest the whole nested run may take, in seconds.
    #[arg(
        long,
        default_value_t = 1800,
        value_name = "SECONDS",
        requires = "harness"
    )]
    pub harness_timeout: u64,
}

impl BenchArgs {
    /// The same bench, as arguments for the `hull bench` run inside the harness.
    fn inner_args(&self) -> Vec<String> {
        let names = |v: Vec<String>| v.join(",");
        let mut args = vec![
            self.image.clone(),
            "--runs".into(),
            self.runs.to_string(),
            "--warmup".into(),
            self.warmup.to_string(),
            "--density".into(),
            self.density.to_string(),
            "--timeout".into(),
            self.timeout.to_string(),
            "--isolation".into(),
            names(
                self.isolation
                    .iter()
                    .filter_map(|m| m.to_possible_value().map(|v| v.get_name().to_string()))
                    .collect(),
            ),
            "--peers".into(),
            names(
                self.peers
                    .iter()
                    .filter_map(|p| p.to_possible_value().map(|v| v.get_name().to_string()))
                    .collect(),
            ),
        ];
        if !self.command.is_empty() {
            args.push("--".into());
            args.extend(self.command.iter().cloned());
        }
        args
    }

    fn config(&self) -> Result<BenchConfig> {
        if !self.timeout.is_finite() || self.timeout <= 0.0 || self.timeout > 3600.0 {
            bail!(
                "--timeout must be between 0 and 3600 seconds, got {}",
                self.timeout
            );
        }
        let peers = if self.peers.contains(&PeerArg::None) {
            if self.peers.len() > 1 {
                bail!("--peers none cannot be combined with other peers");
            }
            Vec::new()
        } else {
            let mut peers = Vec::new();
            for p in &self.peers {
                let peer = match p {
                    PeerArg::Crun => Peer::Crun,
                    PeerArg::Runc => Peer::Runc,
                    PeerArg::QemuMicrovm => Peer::QemuMicrovm,
                    PeerArg::None => unreachable!("handled above"),
                };
                if !peers.contains(&peer) {
                    peers.push(peer);
                }
            }
            peers
        };
        let mut models = Vec::new();
        for m in &self.isolation {
            let kind = match m {
                Model::Process => IsolationKind::Process,
                Model::Vm => IsolationKind::Vm,
            };
            if !models.contains(&kind) {
                models.push(kind);
            }
        }
        let config = BenchConfig {
            image: self.image.clone(),
            command: if self.command.is_empty() {
                bench::default_command()
            } else {
                self.command.clone()
            },
            runs: self.runs,
            warmup: self.warmup,
            density: self.density,
            models,
            peers,
            timeout: Duration::from_secs_f64(self.timeout),
        };
        config.validate()?;
        Ok(config)
    }
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
struct Bar(ProgressBar);

impl Progress for Bar {
    fn set_total(&self, total: u64) {
        self.0.set_length(total);
    }
    fn step(&self, what: &str) {
        self.0.set_message(what.to_string());
        self.0.inc(1);
    }
    fn note(&self, line: &str) {
        if self.0.is_hidden() {
            eprintln!("hull bench: {line}");
        } else {
            self.0.println(line);
        }
    }
}

/// Checks that `file` can be created before spending minutes measuring.
fn check_output_file(file: &Path) -> Result<()> {
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        bail!(
            "--svg {}: directory {} does not exist",
            file.display(),
            parent.display()
        );
    }
    if file.is_dir() {
        bail!("--svg {} is a directory", file.display());
    }
    Ok(())
}

/// Runs `hull bench`.
pub fn run(args: BenchArgs, paths: &StatePaths) -> Result<i32> {
    let config = args.config()?;
    if let Some(svg) = &args.svg {
        check_output_file(svg)?;
    }
    if let Some(saved) = &args.from_json {
        let text =
            std::fs::read_to_string(saved).with_context(|| format!("read {}", saved.display()))?;
        let report: bench::report::BenchReport = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a hull bench JSON report", saved.display()))?;
        if report.schema != bench::report::SCHEMA {
            bail!(
                "{} has report layout {:?}; this hull reads {:?}",
                saved.display(),
                report.schema,
                bench::report::SCHEMA
            );
        }
        return output(&args, &report);
    }
    // The image must exist before anything is measured.
    let store = hull_runtime::image::ImageStore::open(paths)
        .with_context(|| format!("open the image store under {}", paths.root.display()))?;
    store.get(&config.image).with_context(|| {
        format!(
            "image {} is not in the store at {} (import it: `hull image import`, or \
             scripts/build-default-image.sh for {})",
            config.image,
            paths.root.display(),
            bench::DEFAULT_IMAGE
        )
    })?;

    let work = paths
        .run_root
        .join("bench")
        .join(std::process::id().to_string());
    if args.harness {
        eprintln!(
            "hull bench: running the whole bench inside the nested harness (QEMU/TCG, emulated \
             AMD-V); this takes minutes, and its figures compare only with each other"
        );
        let report = bench::harness::run(
            &args.inner_args(),
            &config.peers,
            config.density,
            paths,
            &work,
            Duration::from_secs(args.harness_timeout),
        )
        .context("bench inside the nested harness failed");
        let _ = std::fs::remove_dir(paths.run_root.join("bench"));
        return output(&args, &report?);
    }
    std::fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("valid template"),
    );
    let progress = Bar(bar);
    let report = bench::run(&config, paths, work, &progress);
    progress.0.finish_and_clear();
    let report = report.context("bench failed")?;
    let _ = std::fs::remove_dir(paths.run_root.join("bench"));
    output(&args, &report)
}

/// Prints the report and writes the chart; the exit status says whether anything was
/// measured.
fn output(args: &BenchArgs, report: &bench::report::BenchReport) -> Result<i32> {
    if let Some(svg) = &args.svg {
        std::fs::write(svg, bench::svg::render(report))
            .with_context(|| format!("write {}", svg.display()))?;
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, report)?;
            writeln!(out)?;
        }
        Format::Table => write!(out, "{}", report.to_table())?,
    }
    Ok(if report.subjects.iter().any(|s| s.runs_ok > 0) {
        0
    } else {
        1
    })
}
