//! A RayJob's status → Flyte phase (from `status.jobDeploymentStatus`
//! only), and its log links.

use flytewasm_plugin_sdk::logs::LogInput;
use flytewasm_plugin_sdk::prelude::*;

use crate::config::RayConfig;

pub fn phase(ctx: &PhaseContext, job: &Value) -> Result<PhaseInfo, PluginError> {
    let config: RayConfig = ctx.plugin_config()?;
    let status = &job["status"];
    let text = |key: &str| status[key].as_str().unwrap_or_default();
    let info = match text("jobDeploymentStatus") {
        "" => PhaseInfo::queued("Scheduling"),
        "Initializing" => PhaseInfo::initializing("cluster is creating"),
        "Running" => PhaseInfo::running(),
        "Complete" => PhaseInfo::success(),
        "Suspended" => PhaseInfo::queued("Suspended"),
        "Suspending" => PhaseInfo::queued("Suspending"),
        // A platform failure Flyte may retry, and the cluster is torn down.
        "Failed" => PhaseInfo::system_retryable_failure(
            "TaskFailedWithError",
            format!(
                "Failed to run Ray job {} with error: [{}] {}",
                job["metadata"]["name"].as_str().unwrap_or_default(),
                text("reason"),
                text("message"),
            ),
        )
        .with_cleanup(),
        // KubeRay refused the job and will not run it. Flyte takes this for
        // an unknown status (a failed look, retried until the host gives
        // up, KubeRay's reason lost); it is a failure, with the reason.
        "ValidationFailed" => PhaseInfo::permanent_failure(
            "ValidationFailed",
            format!(
                "KubeRay refused Ray job {}: [{}] {}",
                job["metadata"]["name"].as_str().unwrap_or_default(),
                text("reason"),
                text("message"),
            ),
        )
        .with_cleanup(),
        // `Retrying`, `Waiting`...: not a phase but a failed look, as in
        // Flyte (the host retries, then gives up).
        other => {
            return Err(PluginError::internal(format!(
                "unknown job deployment status: {other}"
            )));
        }
    };
    Ok(info
        .with_logs(log_links(ctx, &config, job))
        .bumped_if_reason_changed(&ctx.previous))
}

/// The configured links for the job (there is no pod name to link: the
/// job's cluster has many), then the dashboard while the job runs.
fn log_links(ctx: &PhaseContext, config: &RayConfig, job: &Value) -> Vec<TaskLog> {
    let status = &job["status"];
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    let extra = [
        ("rayJobID", text(&status["jobId"])),
        ("rayClusterName", text(&status["rayClusterName"])),
    ]
    .into_iter()
    .filter(|(_, value)| !value.is_empty())
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    let input = LogInput {
        namespace: text(&job["metadata"]["namespace"]),
        extra,
        ..LogInput::for_task(ctx)
            .running_since(&job["metadata"]["creationTimestamp"], ctx.now.seconds)
    };
    let mut links = config.logs.links(&input);
    if let Some(dashboard) = &config.dashboard_url_template
        && !text(&status["dashboardURL"]).is_empty()
        && status["jobStatus"] == "RUNNING"
    {
        links.extend(dashboard.links(&input));
    }
    links
}
