//! `hull save` and `hull load`: images to and from docker-archive / oci-archive tars.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use hull_runtime::image::import::{import, ImportOptions};
use hull_runtime::image::save::{save as save_images, SaveFormat};
use hull_runtime::image::ImageStore;
use hull_runtime::paths::StatePaths;

/// Archive formats of `hull save`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// docker save's layout (`manifest.json`), read by docker/podman load.
    #[default]
    DockerArchive,
    /// An OCI image layout in a tar.
    OciArchive,
}

/// `hull save`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// The archive to write.
    #[arg(short = 'o', long)]
    output: PathBuf,
    /// Archive format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Images (names or ids).
    #[arg(required = true)]
    images: Vec<String>,
}

/// `hull load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The archive to read (docker-archive or oci-archive).
    #[arg(short = 'i', long)]
    input: PathBuf,
    /// Print only the image id.
    #[arg(short = 'q', long)]
    quiet: bool,
}

/// Runs `hull save`.
pub fn save(args: SaveArgs, paths: &StatePaths) -> Result<i32> {
    let store = ImageStore::open(paths).context("open the image store")?;
    let format = match args.format {
        Format::DockerArchive => SaveFormat::DockerArchive,
        Format::OciArchive => SaveFormat::OciArchive,
    };
    save_images(&store, &args.images, format, &args.output)
        .with_context(|| format!("save to {}", args.output.display()))?;
    Ok(0)
}

/// Runs `hull load` (an import that takes the names from the archive).
pub fn load(args: LoadArgs, paths: &StatePaths) -> Result<i32> {
    let store = ImageStore::open(paths).context("open the image store")?;
    let opts = ImportOptions {
        progress: !args.quiet,
        ..Default::default()
    };
    let outcome = import(&store, &args.input, &opts)
        .with_context(|| format!("load {}", args.input.display()))?;
    if args.quiet {
        println!("{}", outcome.id);
    } else {
        println!(
            "loaded {} ({})",
            outcome.name,
            &outcome.id[7..19.min(outcome.id.len())]
        );
    }
    Ok(0)
}
