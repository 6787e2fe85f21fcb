//! The two isolation models behind [`Runner`].

pub mod vm_disk;
pub mod vm_mounts;

use crate::error::{OciError, Result};
use crate::runner::Runner;
use crate::state::Model;

/// The runner of `model`.
pub fn runner(model: Model) -> Result<Box<dyn Runner>> {
    Err(OciError::Unsupported(format!(
        "the {} model is not wired to hull's executor yet",
        model.as_str()
    )))
}
