//! A phase event as the `Resource` GetTask returns, mapped so propeller's
//! agent plugin reaches the phase a compiled-in k8s plugin would have
//! (reference/flyte-facts.md §5.3). Flyte 2's `Resource` is this one
//! without `state` and `agent_error` (the same numbers for the rest).

use flytewasm_proto::flyteidl::admin::{AgentError, Resource, State, agent_error};
use flytewasm_proto::flyteidl::core::{TaskLog, execution_error, task_execution};

use crate::executor::{ErrorKind, Phase, PhaseEvent};

pub fn resource(event: &PhaseEvent) -> Resource {
    let (phase, state) = phases(event.phase);
    let message = match &event.error {
        Some(error) => error.message.clone(),
        None => event.reason.clone(),
    };
    #[allow(deprecated)] // `state` is still read by propellers older than `phase`.
    Resource {
        state: state as i32,
        outputs: None,
        message,
        log_links: event
            .logs
            .iter()
            .map(|log| TaskLog {
                uri: log.uri.clone(),
                name: log.name.clone(),
                show_while_pending: log.show_while_pending,
                ..Default::default()
            })
            .collect(),
        phase: phase as i32,
        custom_info: event
            .custom_info
            .as_ref()
            .and_then(|info| serde_json::from_value(info.clone()).ok()),
        agent_error: event.error.as_ref().map(|error| AgentError {
            code: error.code.clone(),
            kind: if event.phase == Phase::RetryableFailure {
                agent_error::Kind::Recoverable
            } else {
                agent_error::Kind::NonRecoverable
            } as i32,
            origin: match error.kind {
                ErrorKind::User => execution_error::ErrorKind::User,
                ErrorKind::System => execution_error::ErrorKind::System,
            } as i32,
        }),
    }
}

/// The task execution phase, and the deprecated state for older propellers.
/// Never UNDEFINED: propeller would fall back to `state`, whose zero value
/// is a retryable failure.
fn phases(phase: Phase) -> (task_execution::Phase, State) {
    use task_execution::Phase as P;
    match phase {
        Phase::NotReady | Phase::Queued => (P::Queued, State::Pending),
        Phase::WaitingForResources => (P::WaitingForResources, State::Pending),
        Phase::Initializing => (P::Initializing, State::Pending),
        Phase::Running => (P::Running, State::Running),
        Phase::Success => (P::Succeeded, State::Succeeded),
        Phase::RetryableFailure => (P::RetryableFailed, State::RetryableFailure),
        Phase::PermanentFailure => (P::Failed, State::PermanentFailure),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::lifecycle::{LogLink, TaskError};

    fn event(phase: Phase) -> PhaseEvent {
        PhaseEvent {
            phase,
            version: 1,
            reason: "job running".into(),
            error: None,
            logs: vec![LogLink {
                name: "Spark UI".into(),
                uri: "http://ui".into(),
                show_while_pending: false,
            }],
            custom_info: Some(serde_json::json!({ "sparkConf": { "a": "1" } })),
            occurred_at: "2026-01-01T00:00:00Z".into(),
            cleanup_on_failure: false,
        }
    }

    #[test]
    fn running_carries_logs_and_custom_info() {
        let resource = resource(&event(Phase::Running));
        assert_eq!(resource.phase, task_execution::Phase::Running as i32);
        assert_eq!(resource.message, "job running");
        assert_eq!(resource.log_links[0].uri, "http://ui");
        let info = serde_json::to_value(resource.custom_info.unwrap()).unwrap();
        assert_eq!(info["sparkConf"]["a"], "1");
        assert!(resource.agent_error.is_none());
    }

    #[test]
    fn failures_carry_flytes_code_kind_and_origin() {
        let mut failed = event(Phase::RetryableFailure);
        failed.error = Some(TaskError {
            code: "DownstreamSystemError".into(),
            message: "Spark Job Failed with Error: boom".into(),
            kind: ErrorKind::User,
        });
        let resource = resource(&failed);
        assert_eq!(
            resource.phase,
            task_execution::Phase::RetryableFailed as i32
        );
        assert_eq!(resource.message, "Spark Job Failed with Error: boom");
        let error = resource.agent_error.unwrap();
        assert_eq!(error.code, "DownstreamSystemError");
        assert_eq!(error.kind, agent_error::Kind::Recoverable as i32);
        assert_eq!(error.origin, execution_error::ErrorKind::User as i32);

        failed.phase = Phase::PermanentFailure;
        let resource = super::resource(&failed);
        assert_eq!(resource.phase, task_execution::Phase::Failed as i32);
        assert_eq!(
            resource.agent_error.unwrap().kind,
            agent_error::Kind::NonRecoverable as i32
        );
    }

    #[test]
    fn no_phase_is_undefined() {
        for phase in [
            Phase::NotReady,
            Phase::WaitingForResources,
            Phase::Queued,
            Phase::Initializing,
            Phase::Running,
            Phase::Success,
            Phase::RetryableFailure,
            Phase::PermanentFailure,
        ] {
            assert_ne!(resource(&event(phase)).phase, 0, "{phase:?}");
        }
    }
}
