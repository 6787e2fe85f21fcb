//! Subcommand definitions and dispatch. One module per group of commands.

use anyhow::Result;
use clap::Subcommand;
use hull_runtime::paths::StatePaths;

pub mod bench;
pub mod doctor;
pub mod image;

/// All `hull` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage images: import, ls, inspect, rm.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Check whether this host can run each isolation model, and how to fix what is missing.
    Doctor(doctor::DoctorArgs),
    /// Measure what each isolation model costs here (start, teardown, memory, density),
    /// side by side with crun, runc and QEMU where installed.
    Bench(bench::BenchArgs),
}

/// Runs a parsed command and returns the exit code.
pub fn dispatch(command: Command, paths: &StatePaths) -> Result<i32> {
    match command {
        Command::Image(cmd) => image::run(cmd, paths),
        Command::Doctor(args) => doctor::run(args, paths),
        Command::Bench(args) => bench::run(args, paths),
    }
}
