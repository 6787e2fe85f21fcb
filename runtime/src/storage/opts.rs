//! `--storage-opt KEY=VALUE`: options of a container's writable layer.
//!
//! Only `size` exists (docker's name). It caps the writable layer where hull can enforce a
//! cap: in the vm model the layer is a disk image of exactly that size, so the guest's
//! filesystem reports ENOSPC when it is full. The process model keeps the layer as a
//! directory on the host filesystem, which has no per-directory limit here (docker needs
//! xfs project quotas for the same), so the option is refused there rather than ignored.

use serde::{Deserialize, Serialize};

use crate::isolation::IsolationKind;

/// Smallest writable layer disk (ext4 with a journal needs a few MiB to be useful).
pub const MIN_SIZE: u64 = 16 << 20;
/// Largest writable layer disk (the image is sparse; this bounds a typo, not disk use).
pub const MAX_SIZE: u64 = 16 << 40;

/// Parsed `--storage-opt` values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageOpts {
    /// `size=`: cap of the writable layer in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

impl StorageOpts {
    /// Parses every `--storage-opt` given, for a container of model `kind`.
    pub fn parse(opts: &[String], kind: IsolationKind) -> Result<StorageOpts, String> {
        let mut parsed = StorageOpts::default();
        for opt in opts {
            let (key, value) = opt.split_once('=').ok_or_else(|| {
                format!("--storage-opt {opt:?}: expected KEY=VALUE (e.g. size=10g)")
            })?;
            match key.trim() {
                "size" => parsed.size_bytes = Some(parse_size(value)?),
                other => {
                    return Err(format!(
                        "--storage-opt {other:?} is not known (the one option is size=N)"
                    ))
                }
            }
        }
        if parsed.size_bytes.is_some() && kind == IsolationKind::Process {
            return Err(
                "--storage-opt size cannot be enforced with --isolation=process: the writable \
                 layer is a directory on the host's filesystem, which has no per-directory \
                 size limit here (docker needs xfs project quotas for this). Use \
                 --isolation=vm, where the layer is a disk of that size, or put the state \
                 root's containers/ directory on a filesystem of its own"
                    .into(),
            );
        }
        Ok(parsed)
    }
}

/// `10g`, `512m`, `1073741824` (binary units, like `--memory`).
fn parse_size(s: &str) -> Result<u64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (num, shift) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 10),
        Some('m') => (&lower[..lower.len() - 1], 20),
        Some('g') => (&lower[..lower.len() - 1], 30),
        Some('t') => (&lower[..lower.len() - 1], 40),
        _ => (lower, 0),
    };
    let bad = || format!("--storage-opt size={s:?}: expected a size such as 512m or 10g");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let bytes = n.checked_mul(1 << shift).ok_or_else(bad)?;
    if !(MIN_SIZE..=MAX_SIZE).contains(&bytes) {
        return Err(format!(
            "--storage-opt size={s}: must be between 16m and 16t"
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        let vm = IsolationKind::Vm;
        let p = |s: &str| StorageOpts::parse(&[format!("size={s}")], vm).map(|o| o.size_bytes);
        assert_eq!(p("64m"), Ok(Some(64 << 20)));
        assert_eq!(p("2G"), Ok(Some(2 << 30)));
        assert_eq!(p("1gb"), Ok(Some(1 << 30)));
        assert_eq!(p("33554432"), Ok(Some(32 << 20)));
        assert!(p("1m").unwrap_err().contains("16m"));
        assert!(p("99999999999t").is_err());
        assert!(p("lots").unwrap_err().contains("lots"));
        assert_eq!(StorageOpts::parse(&[], vm), Ok(StorageOpts::default()));
    }

    #[test]
    fn unknown_keys_and_process_sizes_are_refused_with_the_reason() {
        let e = StorageOpts::parse(&["sise=1g".into()], IsolationKind::Vm).unwrap_err();
        assert!(e.contains("sise"), "{e}");
        assert!(parse_size("1m").unwrap_err().contains("16m"));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        let e = StorageOpts::parse(&["size".into()], IsolationKind::Vm).unwrap_err();
        assert!(e.contains("KEY=VALUE"), "{e}");
        let e = StorageOpts::parse(&["size=1g".into()], IsolationKind::Process).unwrap_err();
        assert!(
            e.contains("--storage-opt size") && e.contains("--isolation=vm"),
            "{e}"
        );
    }
}
