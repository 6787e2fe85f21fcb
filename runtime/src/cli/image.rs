//! `hull image ...`

use anyhow::Result;
use clap::Subcommand;
use hull_runtime::paths::StatePaths;

/// Image subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images.
    Ls,
}

/// Runs an image subcommand.
pub fn run(cmd: ImageCommand, paths: &StatePaths) -> Result<i32> {
    match cmd {
        ImageCommand::Ls => {
            let _ = paths;
            Ok(0)
        }
    }
}
