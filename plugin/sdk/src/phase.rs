//! Flyte phases: constructors with Flyte's defaults, and the version rule.
//!
//! ```ignore
//! let info = PhaseInfo::initializing("job submitted").with_logs(logs);
//! let info = info.bumped_if_reason_changed(&ctx.previous);
//! ```

use crate::context::PreviousPhase;
use crate::{ErrorKind, ExecutionError, Phase, PhaseInfo, TaskLog, Timestamp, Value};

/// Constructors and builders for [`PhaseInfo`], named after Flyte's
/// `PhaseInfo*` functions. Failures always have version 0.
pub trait PhaseInfoExt: Sized {
    fn new(phase: Phase, reason: impl Into<String>) -> Self;
    fn not_ready(reason: impl Into<String>) -> Self {
        Self::new(Phase::NotReady, reason)
    }
    fn waiting_for_resources(reason: impl Into<String>) -> Self {
        Self::new(Phase::WaitingForResources, reason)
    }
    fn queued(reason: impl Into<String>) -> Self {
        Self::new(Phase::Queued, reason)
    }
    fn initializing(reason: impl Into<String>) -> Self {
        Self::new(Phase::Initializing, reason)
    }
    fn running() -> Self {
        Self::new(Phase::Running, "")
    }
    fn success() -> Self {
        Self::new(Phase::Success, "")
    }
    /// The task failed and Flyte may retry it (a user error).
    fn retryable_failure(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::failure(Phase::RetryableFailure, ErrorKind::User, code, message)
    }
    /// The task failed and retrying cannot help (a user error).
    fn permanent_failure(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::failure(Phase::PermanentFailure, ErrorKind::User, code, message)
    }
    /// The platform failed; Flyte may retry.
    fn system_retryable_failure(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::failure(Phase::RetryableFailure, ErrorKind::System, code, message)
    }
    fn failure(
        phase: Phase,
        kind: ErrorKind,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self;

    fn with_version(self, version: u32) -> Self;
    fn with_logs(self, logs: Vec<TaskLog>) -> Self;
    /// Attach a JSON object shown with the task (e.g. a UI link).
    fn with_custom_info(self, info: &Value) -> Self;
    fn with_occurred_at(self, at: Timestamp) -> Self;
    /// Mark a failure whose object is still running and must be killed.
    fn with_cleanup(self) -> Self;

    /// Flyte's `MaybeUpdatePhaseVersion`: when the phase is unchanged (and
    /// not Running) but the reason changed, report a new version so the
    /// change becomes an event.
    fn bumped_if_reason_changed(self, previous: &PreviousPhase) -> Self;

    fn is_terminal(&self) -> bool;
}

impl PhaseInfoExt for PhaseInfo {
    fn new(phase: Phase, reason: impl Into<String>) -> Self {
        PhaseInfo {
            phase,
            version: 0,
            reason: reason.into(),
            error: None,
            logs: Vec::new(),
            custom_info: None,
            occurred_at: None,
            cleanup_on_failure: false,
        }
    }

    fn failure(
        phase: Phase,
        kind: ErrorKind,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let message = message.into();
        let mut info = Self::new(phase, message.clone());
        info.error = Some(ExecutionError {
            code: code.into(),
            message,
            kind,
        });
        info
    }

    fn with_version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    fn with_logs(mut self, logs: Vec<TaskLog>) -> Self {
        self.logs = logs;
        self
    }

    fn with_custom_info(mut self, info: &Value) -> Self {
        self.custom_info = Some(info.to_string());
        self
    }

    fn with_occurred_at(mut self, at: Timestamp) -> Self {
        self.occurred_at = Some(at);
        self
    }

    fn with_cleanup(mut self) -> Self {
        self.cleanup_on_failure = true;
        self
    }

    fn bumped_if_reason_changed(mut self, previous: &PreviousPhase) -> Self {
        if self.phase != Phase::Running
            && self.phase == previous.phase
            && self.version <= previous.version
            && self.reason != previous.reason
        {
            self.version = previous.version + 1;
        }
        self
    }

    fn is_terminal(&self) -> bool {
        matches!(
            self.phase,
            Phase::Success | Phase::RetryableFailure | Phase::PermanentFailure
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn previous(phase: Phase, version: u32, reason: &str) -> PreviousPhase {
        PreviousPhase {
            phase,
            version,
            reason: reason.into(),
        }
    }

    #[test]
    fn a_new_reason_in_the_same_phase_bumps_the_version() {
        let info = PhaseInfo::initializing("job submitted").bumped_if_reason_changed(&previous(
            Phase::Initializing,
            0,
            "task submitted to K8s",
        ));
        assert_eq!(info.version, 1);
    }

    #[test]
    fn the_same_reason_keeps_the_version() {
        let info = PhaseInfo::initializing("job submitted").bumped_if_reason_changed(&previous(
            Phase::Initializing,
            3,
            "job submitted",
        ));
        assert_eq!(info.version, 0);
    }

    #[test]
    fn running_is_never_bumped() {
        let info = PhaseInfo::running().bumped_if_reason_changed(&previous(Phase::Running, 2, "x"));
        assert_eq!(info.version, 0);
    }

    #[test]
    fn failures_carry_a_user_error() {
        let info = PhaseInfo::retryable_failure("DownstreamSystemError", "boom");
        let error = info.error.unwrap();
        assert_eq!(
            (error.code.as_str(), error.kind),
            ("DownstreamSystemError", ErrorKind::User)
        );
        assert_eq!(info.phase, Phase::RetryableFailure);
    }
}
