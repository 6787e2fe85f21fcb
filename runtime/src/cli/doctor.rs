//! `hull doctor`: prints the host checks and returns the per-model exit status.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use hull_runtime::doctor::{self, HostFacts, Report, Status};
use hull_runtime::paths::StatePaths;

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table for a person.
    Table,
    /// One JSON document on stdout, for scripts.
    Json,
}

/// Options of `hull doctor`.
#[derive(Debug, Args)]
#[command(after_help = "\
Exit status:
  0    both isolation models are usable on this host
  4    --isolation=process is not usable (bit value 4)
  8    --isolation=vm cannot run directly on this host (bit value 8)
  12   neither is usable
  125  usage error (bad flag) or the doctor itself failed
Warnings never change the exit status.")]
pub struct DoctorArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Read /proc, /sys, /dev and /usr/local/lib/hull below this directory instead of `/`
    /// (for testing the checks against a crafted host tree).
    #[arg(long, hide = true, value_name = "DIR")]
    pub host_root: Option<PathBuf>,
}

/// Runs `hull doctor`.
pub fn run(args: DoctorArgs, paths: &StatePaths) -> Result<i32> {
    let facts = match &args.host_root {
        Some(root) => {
            anyhow::ensure!(
                root.is_dir(),
                "--host-root {} is not a directory",
                root.display()
            );
            HostFacts::with_root(root, paths)
        }
        None => HostFacts::this_host(paths),
    };
    let report = doctor::diagnose(&facts);
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report).context("writing JSON report")?;
            writeln!(out)?;
        }
        Format::Table => print_table(&mut out, &report)?,
    }
    Ok(report.exit_code)
}

fn print_table(out: &mut impl Write, report: &Report) -> Result<()> {
    let host = &report.host;
    writeln!(
        out,
        "hull doctor: Linux {} on {}{}",
        host.kernel.as_deref().unwrap_or("?"),
        host.cpu_model.as_deref().unwrap_or("unknown CPU"),
        if host.is_virtual_machine {
            " (this host is itself a VM)"
        } else {
            ""
        }
    )?;
    writeln!(out)?;
    for check in &report.checks {
        let tag = match check.status {
            Status::Ok => " ok ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        writeln!(out, "[{tag}] {:<18} {}", check.title, check.finding)?;
        if let Some(fix) = &check.fix {
            writeln!(out, "       {:<18} fix: {fix}", "")?;
        }
    }
    writeln!(out)?;
    let verdict = &report.verdict;
    writeln!(out, "process: {}", verdict.process.summary)?;
    writeln!(out, "vm:      {}", verdict.vm.summary)?;
    writeln!(out, "exit status {}", report.exit_code)?;
    Ok(())
}
