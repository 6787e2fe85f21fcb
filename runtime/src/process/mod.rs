//! The process backend: a container as a namespaced process on the host kernel.
//!
//! Being filled in (issue 3); until then every operation is a clear error.

use crate::isolation::{
    ContainerContext, ContainerSpec, Isolation, IsolationError, IsolationKind, ProcessIo,
    ProcessSpec, Started,
};

/// The `process` isolation backend.
#[derive(Debug, Default)]
pub struct ProcessIsolation;

impl ProcessIsolation {
    /// A new backend handle (holds no state).
    pub fn new() -> Self {
        ProcessIsolation
    }
}

fn pending() -> IsolationError {
    IsolationError::Unavailable(IsolationKind::Process, "not built yet".into())
}

impl Isolation for ProcessIsolation {
    fn kind(&self) -> IsolationKind {
        IsolationKind::Process
    }
    fn start(
        &self,
        _: &ContainerContext,
        _: &ContainerSpec,
        _: ProcessIo,
    ) -> Result<Started, IsolationError> {
        Err(pending())
    }
    fn exec(
        &self,
        _: &ContainerContext,
        _: &ContainerSpec,
        _: &ProcessSpec,
        _: ProcessIo,
    ) -> Result<Started, IsolationError> {
        Err(pending())
    }
    fn signal(&self, _: &ContainerContext, _: i32) -> Result<(), IsolationError> {
        Err(pending())
    }
    fn is_alive(&self, _: &ContainerContext) -> bool {
        false
    }
    fn cleanup(&self, _: &ContainerContext) -> Result<(), IsolationError> {
        Ok(())
    }
}
