//! Job status → Flyte phase.
//!
//! - suspended (waiting for Kueue) → waiting for resources;
//! - `Complete` → success;
//! - `Failed`: `BackoffLimitExceeded` and `DeadlineExceeded` are retryable
//!   failures (the user's pods failed or ran too long: Flyte's retries
//!   apply), `PodFailurePolicy` a permanent one (the policy chose to fail);
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
