//! The two isolation models behind [`Runner`].

pub mod vm;
pub mod vm_disk;
pub mod vm_keeper;
pub mod vm_mounts;

use crate::error::{OciError, Result};
use crate::runner::Runner;
use crate::state::Model;

/// The runner of `model`.
pub fn runner(model: Model) -> Result<Box<dyn Runner>> {
    match model {
        Model::Process => Err(OciError::Unsupported(
            "the process model is not wired to hull's executor yet".into(),
        )),
        Model::Vm => Ok(Box::new(vm::VmRunner)),
    }
}
