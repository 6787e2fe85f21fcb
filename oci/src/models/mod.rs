//! The two isolation models behind [`Runner`].

pub mod cgroup;
pub mod gate;
pub mod process;
pub mod seccomp;
pub mod vm;
pub mod vm_disk;
pub mod vm_keeper;
pub mod vm_mounts;
pub mod vm_net;

use crate::error::Result;
use crate::runner::Runner;
use crate::state::Model;

/// The runner of `model`.
pub fn runner(model: Model) -> Result<Box<dyn Runner>> {
    match model {
        Model::Process => Ok(Box::new(process::ProcessRunner)),
        Model::Vm => Ok(Box::new(vm::VmRunner)),
    }
}
