//! Failures on the wire, in one place: every error the agent reports is the executor's typed
//! error ([`hull_executor::Error`]: kind, stage, errno) sent as numbers, and the host turns it
//! back into that type. Neither side reads the other's text: `detail` is only shown to people.
//!
//! The wire codes are the numbers of [`ErrorKind`] and [`Stage`] (their `repr(u8)` values,
//! defined once in the executor's `error.rs`). A code the receiver does not know (a newer or
//! hostile peer) reads as a [`ErrorKind::Protocol`] failure, never as a decoding error of the
//! whole message.

use hull_executor::{Error, ErrorKind, Stage};
use serde::{Deserialize, Serialize};

/// A failure as it travels between the agent and the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireError {
    /// [`ErrorKind`] as its number.
    pub code: u8,
    /// [`Stage`] as its number.
    pub stage: u8,
    /// errno of the failed system call; 0 when none failed.
    #[serde(default)]
    pub errno: i32,
    /// What was being done, for people (bounded like every string on the wire).
    pub detail: String,
}

impl From<&Error> for WireError {
    fn from(e: &Error) -> WireError {
        WireError {
            code: e.kind as u8,
            stage: e.stage as u8,
            errno: e.errno.unwrap_or(0),
            detail: e.detail.clone(),
        }
    }
}

impl From<Error> for WireError {
    fn from(e: Error) -> WireError {
        WireError::from(&e)
    }
}

impl WireError {
    /// The executor's error this stands for. Unknown codes become a protocol failure that
    /// names them.
    pub fn into_error(self) -> Error {
        let errno = (self.errno != 0).then_some(self.errno);
        match (ErrorKind::from_u8(self.code), Stage::from_u8(self.stage)) {
            (Some(kind), Some(stage)) => Error {
                kind,
                stage,
                errno,
                detail: self.detail,
            },
            _ => Error {
                kind: ErrorKind::Protocol,
                stage: Stage::Channel,
                errno,
                detail: format!(
                    "the guest agent reported an unknown failure (code {}, stage {}): {}",
                    self.code, self.stage, self.detail
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind and stage the executor has survives the trip, so the host gives the same
    /// exit code (127 not found, 126 not executable, 125 else) as the process model.
    #[test]
    fn every_kind_and_stage_round_trips_and_keeps_its_exit_code() {
        for k in 0..=u8::MAX {
            let Some(kind) = ErrorKind::from_u8(k) else {
                continue;
            };
            for s in 0..=u8::MAX {
                let Some(stage) = Stage::from_u8(s) else {
                    continue;
                };
                let e = Error {
                    kind,
                    stage,
                    errno: Some(2),
                    detail: "x".into(),
                };
                let json = serde_json::to_string(&WireError::from(&e)).unwrap();
                let back = serde_json::from_str::<WireError>(&json)
                    .unwrap()
                    .into_error();
                assert_eq!(back, e);
                assert_eq!(back.exit_code(), e.exit_code());
            }
        }
    }

    #[test]
    fn unknown_codes_are_protocol_failures_that_name_them() {
        let e = WireError {
            code: 200,
            stage: 1,
            errno: 0,
            detail: "new".into(),
        }
        .into_error();
        assert_eq!(
            (e.kind, e.stage, e.errno),
            (ErrorKind::Protocol, Stage::Channel, None)
        );
        assert!(e.detail.contains("code 200"), "{}", e.detail);
        assert_eq!(e.exit_code(), 125);
    }
}
