//! Internal compiler errors: a broken invariant of lossc itself (an IR the verifier
//! rejects, a kernel naga or the driver refuses, a specialised kernel whose slots differ
//! from the generic one's). They are never the user's fault and never turned into a
//! number: they stop the run, name the loss and the source location where lossc went
//! wrong, and ask for a report.

use thiserror::Error;

/// The line every internal error ends with, here and in the front end's diagnostics.
pub const PLEASE_REPORT: &str =
    "this is a bug in lossc; please report it with the .loss files and the command that ran them";

/// A bug in lossc, found by one of its own checks.
#[derive(Clone, Debug, PartialEq, Error)]
#[error(
    "internal compiler error{}{}: {message}\n  {}",
    loss.as_ref().map(|l| format!(" in loss `{l}`")).unwrap_or_default(),
    at.as_ref().map(|a| format!(" at {a}")).unwrap_or_default(),
    PLEASE_REPORT
)]
pub struct InternalError {
    /// The loss being compiled or run, when one is.
    pub loss: Option<String>,
    /// `file:line:col` of the source the broken invariant concerns, when known.
    pub at: Option<String>,
    /// What went wrong.
    pub message: String,
}

impl InternalError {
    /// An internal error about no loss in particular.
    pub fn new(message: impl Into<String>) -> InternalError {
        InternalError {
            loss: None,
            at: None,
            message: message.into(),
        }
    }

    /// An internal error in `loss`, at `at` (`file:line:col`).
    pub fn in_loss(
        loss: impl Into<String>,
        at: Option<String>,
        message: impl Into<String>,
    ) -> InternalError {
        InternalError {
            loss: Some(loss.into()),
            at,
            message: message.into(),
        }
    }
}
