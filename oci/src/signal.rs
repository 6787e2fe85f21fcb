//! Signal names as runc accepts them: `9`, `KILL`, `SIGKILL`, `kill`, `RTMIN+3`.

use std::str::FromStr;

use nix::sys::signal::Signal;

use crate::error::{OciError, Result};

/// The highest real-time signal number on Linux.
const SIGRTMAX: i32 = 64;

/// The signal number for `name`.
pub fn parse(name: &str) -> Result<i32> {
    let bad = || OciError::Usage(format!("unknown signal {name:?}"));
    if let Ok(n) = name.parse::<i32>() {
        return if (1..=SIGRTMAX).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rt) = bare.strip_prefix("RTMIN") {
        let base = libc::SIGRTMIN();
        let offset = if rt.is_empty() {
            0
        } else {
            rt.strip_prefix('+')
                .and_then(|n| n.parse::<i32>().ok())
                .ok_or_else(bad)?
        };
        let n = base + offset;
        return if n <= SIGRTMAX { Ok(n) } else { Err(bad()) };
    }
    Signal::from_str(&format!("SIG{bare}"))
        .map(|s| s as i32)
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_prefixes() {
        assert_eq!(parse("9").unwrap(), 9);
        assert_eq!(parse("KILL").unwrap(), 9);
        assert_eq!(parse("SIGKILL").unwrap(), 9);
        assert_eq!(parse("term").unwrap(), 15);
        assert_eq!(parse("SIGUSR1").unwrap(), 10);
        assert_eq!(parse("RTMIN+2").unwrap(), libc::SIGRTMIN() + 2);
        for bad in ["0", "65", "-1", "FOO", "SIG", "RTMIN+99", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
