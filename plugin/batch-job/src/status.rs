//! Job status → Flyte phase.
//!
//! - suspended (waiting for Kueue) → waiting for resources;
//! - `Complete` → success;
//! - `Failed`: `BackoffLimitExceeded` and `DeadlineExceeded` are retryable
//!   failures (the user's pods failed or ran too long: Flyte's retries
//!   apply), `PodFailurePolicy` a permanent one (the policy chose to fail).
//!   A Job shows no pod reasons (ImagePullBackOff, OOMKilled) except what a
//!   pod failure policy quotes; from that, Flyte's pod rules (flyte-facts
//!   §4.4) name the cause: exit code 137 or 247 (killed, e.g. out of
//!   memory) and a `DisruptionTarget` pod (evicted, preempted) are an
//!   `Interrupted` system error, other exit codes the user's;
//! - pods active → running; else queued (created, no pod yet).

use flytewasm_plugin_sdk::prelude::*;

pub fn phase(job: &Value) -> PhaseInfo {
    let status = &job["status"];
    let condition = |kind: &str| {
        status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == kind && c["status"] == "True")
    };
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let count = |field: &str| status[field].as_i64().unwrap_or(0);

    if condition("Complete").is_some() {
        return PhaseInfo::success();
    }
    if let Some(failed) = condition("Failed") {
        let (reason, message) = (text(&failed["reason"]), text(&failed["message"]));
        let message = format!("Job failed ({reason}): {message}");
        return match reason.as_str() {
            "PodFailurePolicy" if interrupted(&message) => PhaseInfo::failure(
                Phase::PermanentFailure,
                ErrorKind::System,
                "Interrupted",
                message,
            ),
            "PodFailurePolicy" => PhaseInfo::permanent_failure(reason, message),
            "" => PhaseInfo::retryable_failure("JobFailed", message),
            _ => PhaseInfo::retryable_failure(reason, message),
        };
    }
    if job["spec"]["suspend"] == true {
        let queue = text(&job["metadata"]["labels"][crate::job::QUEUE_LABEL]);
        let waiting = condition("Suspended")
            .map(|c| text(&c["message"]))
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("waiting for Kueue to admit the Job (queue `{queue}`)"));
        return PhaseInfo::waiting_for_resources(waiting);
    }
    if count("active") > 0 {
        return PhaseInfo::running();
    }
    if count("succeeded") > 0 || count("failed") > 0 || !status["startTime"].is_null() {
        // Between pods: the Job is still working.
        return PhaseInfo::initializing(format!(
            "{} pods succeeded, {} failed, starting more",
            count("succeeded"),
            count("failed")
        ));
    }
    PhaseInfo::queued("Job created, no pod yet")
}

/// Whether a pod failure policy's message (as the Job controller writes it:
/// "Container main for pod ns/p failed with exit code 137 matching FailJob
/// rule at index 0", "Pod ns/p has condition DisruptionTarget matching ...")
/// says the pod was killed or disrupted rather than failing on its own.
fn interrupted(message: &str) -> bool {
    let exit_code = message
        .split("failed with exit code ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next());
    matches!(exit_code, Some("137" | "247")) || message.contains("has condition DisruptionTarget")
}
