//! Operations on existing containers from any `hull` invocation: listing with crash
//! detection, stop, kill, rm.
//!
//! A container whose supervisor died (a crashed or killed `hull`) is detected by its
//! supervisor's pid and start time; the first invocation that notices it cleans up its
//! resources through the backend and records it as exited (or removes it, with `--rm`).

use std::os::fd::AsFd;

use crate::backends;
use crate::isolation::{ContainerContext, Isolation, IsolationError, IsolationKind};
use crate::process::syscalls;

use super::state::{ContainerState, ContainerStore, Status, StoreError};
use super::supervisor;

/// Errors of lifecycle operations.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// From the container store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// From the backend.
    #[error(transparent)]
    Isolation(#[from] IsolationError),
    /// The container must be stopped first.
    #[error("container {0} is running: stop it first or use `hull rm -f`")]
    Running(String),
    /// The container is not running.
    #[error("container {0} is not running")]
    NotRunning(String),
    /// The supervisor did not finish in time.
    #[error("container {0} did not stop within {1} s")]
    Timeout(String, u64),
}

/// Whether the record says the container should have a live supervisor.
fn supervised(state: &ContainerState) -> bool {
    matches!(state.status, Status::Running)
        || (state.status == Status::Created && state.supervisor.is_some())
}

/// Loads `id`, first repairing the record if its supervisor died. `None` when the
/// container is gone (or was removed by the repair because of `--rm`).
pub fn load_fresh(
    store: &ContainerStore,
    id: &str,
) -> Result<Option<ContainerState>, LifecycleError> {
    let state = match store.load(id) {
        Ok(s) => s,
        Err(StoreError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if !supervised(&state) || state.supervisor.is_some_and(|s| s.alive()) {
        return Ok(Some(state));
    }
    // Supervisor gone: repair under the lock, re-checking after acquiring it.
    let lock = match store.lock(id) {
        Ok(l) => l,
        Err(StoreError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let state = match store.load(id) {
        Ok(s) => s,
        Err(StoreError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if !supervised(&state) || state.supervisor.is_some_and(|s| s.alive()) {
        return Ok(Some(state));
    }
    drop(lock);
    tracing::info!("container {} lost its supervisor; cleaning up", state.id);
    let backend = backends::backend(state.isolation)?;
    supervisor::finish(
        store,
        &*backend,
        state,
        None,
        Some("supervisor died".into()),
    );
    match store.load(id) {
        Ok(s) => Ok(Some(s)),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// One container as `hull ps` sees it.
#[derive(Debug)]
pub enum Listed {
    /// Its record (repaired if its supervisor had died).
    Record(Box<ContainerState>),
    /// A container whose record cannot be read or repaired; shown with the reason, so one
    /// bad record never hides the others.
    Unreadable {
        /// The container id.
        id: String,
        /// Why.
        reason: String,
    },
}

/// All containers (repaired), newest first; unreadable ones last. Never fails as a whole.
pub fn list(store: &ContainerStore) -> Vec<Listed> {
    store.collect_leftovers();
    let mut records = Vec::new();
    let mut unreadable = Vec::new();
    for id in store.ids() {
        match load_fresh(store, &id) {
            Ok(Some(s)) => records.push(s),
            Ok(None) => {}
            Err(e) => {
                let reason = match e {
                    LifecycleError::Store(StoreError::Unreadable { reason, .. }) => reason,
                    other => other.to_string(),
                };
                unreadable.push(Listed::Unreadable { id, reason });
            }
        }
    }
    records.sort_by(|a, b| b.created.cmp(&a.created).then(a.name.cmp(&b.name)));
    records
        .into_iter()
        .map(|s| Listed::Record(Box::new(s)))
        .chain(unreadable)
        .collect()
}

/// Waits up to `timeout_ms` for the container's supervisor to finish (it records the exit
/// and cleans up before exiting). Returns true when it is gone.
fn wait_supervisor(state: &ContainerState, timeout_ms: i32) -> bool {
    let Some(sup) = state.supervisor else {
        return true;
    };
    match syscalls::open_verified(sup.pid, sup.start_time) {
        None => true,
        Some(fd) => syscalls::poll_exit(fd.as_fd(), timeout_ms).unwrap_or(false),
    }
}

/// Sends `signal` to the container's main process.
pub fn kill(store: &ContainerStore, id: &str, signal: i32) -> Result<(), LifecycleError> {
    let state = load_fresh(store, id)?.ok_or_else(|| StoreError::NotFound(id.into()))?;
    if state.status != Status::Running {
        return Err(LifecycleError::NotRunning(id.into()));
    }
    let backend = backends::backend(state.isolation)?;
    backend
        .signal(&store.context(id), signal)
        .map_err(|e| match e {
            IsolationError::NotRunning => LifecycleError::NotRunning(id.into()),
            other => other.into(),
        })
}

/// SIGTERM, then SIGKILL after `timeout_s`; returns once the container has exited and its
/// supervisor has recorded it.
pub fn stop(store: &ContainerStore, id: &str, timeout_s: u64) -> Result<(), LifecycleError> {
    let Some(state) = load_fresh(store, id)? else {
        return Err(StoreError::NotFound(id.into()).into());
    };
    if state.status != Status::Running {
        return Ok(());
    }
    let backend = backends::backend(state.isolation)?;
    let ctx = store.context(id);
    let _ = backend.signal(&ctx, libc::SIGTERM);
    let ms = (timeout_s.min(3600) * 1000) as i32;
    if wait_supervisor(&state, ms) {
        return Ok(());
    }
    if kill_and_wait(&*backend, &ctx, &state) {
        Ok(())
    } else {
        Err(LifecycleError::Timeout(id.into(), timeout_s + KILL_WAIT_S))
    }
}

/// Seconds `kill_and_wait` waits at most: for SIGKILL through the backend, then for the
/// backend's `terminate`.
const KILL_WAIT_S: u64 = 10;

/// SIGKILL, and if the container has not ended within 5 s (a guest that acknowledges
/// and does nothing), `terminate` (the VM goes) and 5 s more. True once it has ended.
fn kill_and_wait(backend: &dyn Isolation, ctx: &ContainerContext, state: &ContainerState) -> bool {
    let _ = backend.signal(ctx, libc::SIGKILL);
    if wait_supervisor(state, 5_000) {
        return true;
    }
    tracing::warn!("container {} ignored SIGKILL; terminating it", state.id);
    let _ = backend.terminate(ctx);
    wait_supervisor(state, 5_000)
}

/// Removes a container; `force` kills it first if it runs. With `force`, a container
/// whose record is unreadable goes too: whatever either backend finds of it from its
/// files and id (processes, cgroups, a VM) is killed and removed with its directory.
pub fn remove(store: &ContainerStore, id: &str, force: bool) -> Result<(), LifecycleError> {
    store.collect_leftovers();
    let state = match load_fresh(store, id) {
        Ok(Some(state)) => state,
        Ok(None) => return Err(StoreError::NotFound(id.into()).into()),
        Err(LifecycleError::Store(StoreError::Unreadable { .. })) if force => {
            return remove_unreadable(store, id)
        }
        Err(e) => return Err(e),
    };
    let backend = backends::backend(state.isolation)?;
    if state.status == Status::Running {
        if !force {
            return Err(LifecycleError::Running(id.into()));
        }
        if !kill_and_wait(&*backend, &store.context(id), &state) {
            return Err(LifecycleError::Timeout(id.into(), KILL_WAIT_S));
        }
    }
    let _lock = match store.lock(id) {
        Ok(l) => l,
        Err(StoreError::NotFound(_)) => return Ok(()), // removed by its own --rm
        Err(e) => return Err(e.into()),
    };
    supervisor::release(&*backend, &store.context(id))?;
    store.delete(id, &state.name)?;
    Ok(())
}

/// `rm -f` of a container whose record cannot be read: its isolation is unknown, so both
/// backends clean up what they find (each works from its own files and the id alone).
fn remove_unreadable(store: &ContainerStore, id: &str) -> Result<(), LifecycleError> {
    let _lock = match store.lock(id) {
        Ok(l) => l,
        Err(StoreError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let ctx = store.context(id);
    for kind in [IsolationKind::Process, IsolationKind::Vm] {
        backends::backend(kind)?.cleanup(&ctx)?;
    }
    let name = store.name_of(id).unwrap_or_default();
    store.delete(id, &name)?;
    Ok(())
}
