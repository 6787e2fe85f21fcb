//! Commands that read a container's writable layer: `hull diff`.

use anyhow::{anyhow, bail, Result};
use clap::Args;
use hull_runtime::container::lifecycle;
use hull_runtime::container::state::ContainerStore;
use hull_runtime::isolation::IsolationKind;
use hull_runtime::paths::StatePaths;
use hull_runtime::storage::{self, diff};

/// `hull diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Container name or id.
    container: String,
}

/// `hull diff`: the container's changes to its image, `A`/`C`/`D PATH`, sorted by path.
pub fn diff(args: DiffArgs, paths: &StatePaths) -> Result<i32> {
    let store = ContainerStore::new(paths);
    let id = store.resolve(&args.container)?;
    let state = lifecycle::load_fresh(&store, &id)?
        .ok_or_else(|| anyhow!("no such container: {}", args.container))?;
    if state.isolation == IsolationKind::Vm {
        bail!(
            "hull diff is not available for --isolation=vm containers yet: their writable \
             layer is an ext4 disk that only the guest reads (hull never mounts a disk a \
             guest wrote), so the listing has to come from the guest agent"
        );
    }
    let upper = storage::layer_dirs(&store.context(&id)).upper;
    let changes = diff::diff(&upper, &state.spec.layers, diff::HULL_MOUNT_POINTS)?;
    let mut out = std::io::stdout().lock();
    for change in changes {
        std::io::Write::write_all(&mut out, format!("{change}\n").as_bytes())?;
    }
    Ok(0)
}
