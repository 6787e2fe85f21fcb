//! `hull image import|ls|inspect|rm`

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use hull_runtime::image::import::{import, ConfigChanges, ImportOptions};
use hull_runtime::image::{ImageRecord, ImageStore, Sha256Digest};
use hull_runtime::paths::StatePaths;
use serde_json::json;

/// Image subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an image: an OCI layout directory, an oci-archive or docker-archive tar, or
    /// with --rootfs a root filesystem directory or tar (gzip/zstd allowed).
    Import(ImportArgs),
    /// List images.
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show an image as JSON: config, manifest and layers with digests and sizes.
    Inspect {
        /// Image name (`namespace/name:tag`, `name`) or id (prefix).
        name: String,
    },
    /// Remove an image, and the blobs and layers no other image and no container uses.
    /// Refused while containers made from it exist, unless --force.
    Rm {
        /// Remove the name even if containers use the image; their layers stay until
        /// the containers are removed.
        #[arg(short = 'f', long)]
        force: bool,
        /// Image names or ids.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// `hull image import` options.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The image to import.
    path: PathBuf,
    /// Name for the image, `[NAMESPACE/]NAME[:TAG]` (default tag `latest`).
    #[arg(long, short = 't')]
    tag: Option<String>,
    /// PATH is a root filesystem (directory or tar), imported as a one-layer image.
    #[arg(long)]
    rootfs: bool,
    /// With --rootfs: the image's Cmd, as a JSON array (`'["sh"]'`) or a shell word list.
    #[arg(long, requires = "rootfs")]
    cmd: Option<String>,
    /// With --rootfs: the image's Entrypoint, as a JSON array or a word list.
    #[arg(long, requires = "rootfs")]
    entrypoint: Option<String>,
    /// With --rootfs: an environment variable KEY=VALUE (repeatable).
    #[arg(long, requires = "rootfs")]
    env: Vec<String>,
    /// With --rootfs: the working directory.
    #[arg(long, requires = "rootfs")]
    workdir: Option<String>,
    /// With --rootfs: the user (`uid[:gid]` or a name).
    #[arg(long, requires = "rootfs")]
    user: Option<String>,
    /// With --rootfs: a label KEY=VALUE (repeatable).
    #[arg(long, requires = "rootfs")]
    label: Vec<String>,
    /// With --rootfs: an exposed port, `PORT[/tcp|udp]` (repeatable).
    #[arg(long, requires = "rootfs")]
    expose: Vec<String>,
    /// Print only the image id.
    #[arg(long, short = 'q')]
    quiet: bool,
}

/// Runs an image subcommand.
pub fn run(cmd: ImageCommand, paths: &StatePaths) -> Result<i32> {
    let store = ImageStore::open(paths).context("open the image store")?;
    match cmd {
        ImageCommand::Import(args) => run_import(&store, args),
        ImageCommand::Ls { json } => {
            let images = store.list()?;
            if json {
                let list: Vec<_> = images.iter().map(summary).collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("{:<40} {:<14} {:>6} {:>10}", "NAME", "ID", "LAYERS", "SIZE");
                for image in &images {
                    println!(
                        "{:<40} {:<14} {:>6} {:>10}",
                        image.name,
                        short_id(&image.id),
                        image.layers.len(),
                        human_size(image.layers.iter().map(|l| l.size).sum())
                    );
                }
            }
            Ok(0)
        }
        ImageCommand::Inspect { name } => {
            let record = store.find(&name)?;
            let manifest_digest = Sha256Digest::parse(&record.manifest_digest)?;
            let manifest: serde_json::Value =
                serde_json::from_slice(&store.read_blob(&manifest_digest)?)
                    .context("parse stored manifest")?;
            let config = store.read_config(&record)?;
            let layers: Vec<_> = record
                .layers
                .iter()
                .map(|l| {
                    let path = Sha256Digest::parse(&l.diff_id)
                        .map(|d| store.layer_path(&d).display().to_string())
                        .unwrap_or_default();
                    json!({
                        "digest": l.digest,
                        "size": l.size,
                        "mediaType": l.media_type,
                        "diffId": l.diff_id,
                        "path": path,
                    })
                })
                .collect();
            let doc = json!({
                "name": record.name,
                "id": record.id,
                "manifestDigest": record.manifest_digest,
                "manifestSize": record.manifest_size,
                "configDigest": record.id,
                "configSize": record.config_size,
                "size": record.layers.iter().map(|l| l.size).sum::<u64>(),
                "importedAt": record.imported_at,
                "config": config,
                "manifest": manifest,
                "layers": layers,
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(0)
        }
        ImageCommand::Rm { names, force } => {
            let mut failed = false;
            for name in names {
                match store.remove(&name, force) {
                    Ok(removed) => {
                        let r = &removed.record;
                        println!("removed {} ({})", r.name, short_id(&r.id));
                        if !removed.kept_for.is_empty() {
                            eprintln!(
                                "hull: layers of {} kept while in use by {}",
                                r.name,
                                removed.kept_for.join(", ")
                            );
                        }
                    }
                    // Like `docker rmi`: report each failure, go on with the rest.
                    Err(e) => {
                        eprintln!("hull: error: {e}");
                        failed = true;
                    }
                }
            }
            // The VM disk images of images that are gone (another tag may keep an id, a
            // container may still use a removed one).
            let containers = hull_runtime::container::state::ContainerStore::new(paths);
            match containers.all_records() {
                Ok(records) => {
                    let live: Vec<String> = store
                        .list()?
                        .into_iter()
                        .map(|i| i.id)
                        .chain(records.into_iter().map(|c| c.spec.image_id))
                        .collect();
                    hull_runtime::vm::disk::prune(paths, &live)?;
                }
                // Which disks are in use is unknown: none is deleted.
                Err(bad) => tracing::warn!(
                    "not pruning VM disks: {} container record(s) cannot be read",
                    bad.len()
                ),
            }
            Ok(if failed { 1 } else { 0 })
        }
    }
}

fn run_import(store: &ImageStore, args: ImportArgs) -> Result<i32> {
    let changes = ConfigChanges {
        cmd: args.cmd.as_deref().map(parse_words).transpose()?,
        entrypoint: args.entrypoint.as_deref().map(parse_words).transpose()?,
        env: args.env,
        workdir: args.workdir,
        user: args.user,
        labels: args
            .label
            .iter()
            .map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .with_context(|| format!("--label {l:?} is not KEY=VALUE"))
            })
            .collect::<Result<_>>()?,
        exposed_ports: args.expose,
    };
    let opts = ImportOptions {
        tag: args.tag,
        rootfs: args.rootfs,
        changes,
        progress: !args.quiet,
    };
    let outcome = import(store, &args.path, &opts)
        .with_context(|| format!("import {}", args.path.display()))?;
    if args.quiet {
        println!("{}", outcome.id);
    } else if outcome.unchanged {
        println!("{} is up to date ({})", outcome.name, short_id(&outcome.id));
    } else {
        println!(
            "imported {} ({}): {} layer(s) unpacked, {} already present",
            outcome.name,
            short_id(&outcome.id),
            outcome.layers_unpacked,
            outcome.layers_reused
        );
    }
    Ok(0)
}

/// A JSON array of strings, or whitespace-separated words.
fn parse_words(s: &str) -> Result<Vec<String>> {
    if s.trim_start().starts_with('[') {
        serde_json::from_str(s).with_context(|| format!("{s:?} is not a JSON array of strings"))
    } else {
        Ok(s.split_whitespace().map(str::to_string).collect())
    }
}

fn summary(image: &ImageRecord) -> serde_json::Value {
    json!({
        "name": image.name,
        "id": image.id,
        "layers": image.layers.len(),
        "size": image.layers.iter().map(|l| l.size).sum::<u64>(),
    })
}

fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
