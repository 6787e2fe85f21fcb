//! Subcommand definitions and dispatch. One module per group of commands.

use anyhow::Result;
use clap::Subcommand;
use hull_runtime::paths::StatePaths;

pub mod image;

/// All `hull` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage images: import, ls, inspect, rm.
    #[command(subcommand)]
    Image(image::ImageCommand),
}

/// Runs a parsed command and returns the exit code.
pub fn dispatch(command: Command, paths: &StatePaths) -> Result<i32> {
    match command {
        Command::Image(cmd) => image::run(cmd, paths),
    }
}
