//! Choosing the implementation of an isolation model: the one module that knows both
//! backends, so the interface (`isolation`) imports neither of them.

use crate::isolation::{Isolation, IsolationError, IsolationKind};

/// The backend for `kind`.
pub fn backend(kind: IsolationKind) -> Result<Box<dyn Isolation>, IsolationError> {
    match kind {
        IsolationKind::Process => Ok(Box::new(crate::process::ProcessIsolation::new())),
        IsolationKind::Vm => Ok(Box::new(crate::vm::VmIsolation::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_gets_its_own_model_not_a_fallback() {
        for kind in [IsolationKind::Process, IsolationKind::Vm] {
            assert_eq!(backend(kind).expect("backend").kind(), kind);
        }
    }
}
