//! A task Pod's status → Flyte phase, as Flyte's `DemystifyPodStatus` reads
//! it: why a pending pod waits (and when waiting has become failing), why a
//! failed pod failed (the platform's fault or the user's), and, when the
//! pod names its primary container, that container's end as the task's end
//! while sidecars run on.
//!
//! ```ignore
//! let config: pod_status::Config = ctx.plugin_config()?;
//! pod_status::phase(ctx, &pod, &config.logs)
//! ```

use serde::{Deserialize, Serialize};

use crate::logs::{LogConfig, LogInput};
use crate::phase::PhaseInfoExt;
use crate::pod_task::PRIMARY_CONTAINER_ANNOTATION;
use crate::time::{parse_duration, unix_seconds};
use crate::{PhaseContext, PhaseInfo, PluginError, TaskLog, Timestamp, Value};

/// A pod plugin's configuration (`plugins.<id>`): the log links, Flyte's
/// global `plugins.logs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Config {
    pub logs: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            logs: LogConfig::flyte_default(),
        }
    }
}

/// Exit codes of a container the node killed (SIGKILL, and 247 as some
/// runtimes report it): an interruption, not the code's failure.
const KILLED: [i64; 2] = [137, 247];

/// Pod `status.reason`s that mean the node went away under the pod.
const SYSTEM_REASONS: [&str; 4] = ["Shutdown", "Terminated", "NodeShutdown", "NodeAffinity"];

/// The phase of the task whose Pod is `pod`, with its log links (from
/// `logs`, for the pod's first container, named ` (User)`).
pub fn phase(ctx: &PhaseContext, pod: &Value, logs: &LogConfig) -> Result<PhaseInfo, PluginError> {
    let status = &pod["status"];
    let primary = pod["metadata"]["annotations"][PRIMARY_CONTAINER_ANNOTATION].as_str();
    let links = logs.links(&log_input(ctx, pod));
    let info = match status["phase"].as_str().unwrap_or_default() {
        "Succeeded" => succeeded(status),
        "Failed" => failed(status, primary),
        "Pending" => pending(ctx, pod)?,
        "Unschedulable" => PhaseInfo::queued("pod unschedulable"),
        _ => match primary {
            None if all_exited_zero(status) => succeeded(status),
            None => running(&links),
            Some(name) => primary_phase(pod, name, &links),
        },
    };
    let occurred_at = info
        .occurred_at
        .or_else(|| latest_container_time(status))
        .unwrap_or_else(|| ctx.now.clone());
    Ok(info
        .with_logs(links)
        .with_occurred_at(occurred_at)
        .bumped_if_reason_changed(&ctx.previous))
}

/// Running, in version 1 when there are links to show (so they reach Flyte).
fn running(links: &[TaskLog]) -> PhaseInfo {
    PhaseInfo::running().with_version(u32::from(!links.is_empty()))
}

/// Every container status of the pod: init, regular, ephemeral.
fn container_statuses(status: &Value) -> impl Iterator<Item = &Value> {
    [
        "initContainerStatuses",
        "containerStatuses",
        "ephemeralContainerStatuses",
    ]
    .into_iter()
    .flat_map(|key| status[key].as_array().into_iter().flatten())
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_default()
}

fn succeeded(status: &Value) -> PhaseInfo {
    let oom = container_statuses(status)
        .any(|c| text(&c["state"]["terminated"], "reason").contains("OOMKilled"));
    if oom {
        PhaseInfo::retryable_failure("OOMKilled", "Pod reported success despite being OOMKilled")
    } else {
        PhaseInfo::success()
    }
}

/// Flyte's line about a terminated container.
fn terminated_line(name: &str, terminated: &Value) -> String {
    format!(
        "\r\n[{name}] terminated with exit code ({}). Reason [{}]. Message: \n{}.",
        terminated["exitCode"].as_i64().unwrap_or(0),
        text(terminated, "reason"),
        text(terminated, "message")
    )
}

/// A failed pod: the user's failure, unless the node went away or the
/// primary container was killed (then the platform's, code `Interrupted`).
fn failed(status: &Value, primary: Option<&str>) -> PhaseInfo {
    let reason = text(status, "reason");
    let mut code = if reason.is_empty() {
        "UnknownError"
    } else {
        reason
    };
    let mut message = match text(status, "message") {
        "" => "Pod failed. No message received from kubernetes.".to_owned(),
        message => message.to_owned(),
    };
    let mut system = SYSTEM_REASONS.contains(&reason);
    for container in container_statuses(status) {
        // The last termination says why a restarted container died.
        let terminated = match &container["lastState"]["terminated"] {
            Value::Object(_) => &container["lastState"]["terminated"],
            _ => &container["state"]["terminated"],
        };
        if !terminated.is_object() {
            continue;
        }
        let name = text(container, "name");
        if text(terminated, "reason").contains("OOMKilled") {
            code = "OOMKilled";
        } else if KILLED.contains(&terminated["exitCode"].as_i64().unwrap_or(0)) {
            code = "Interrupted";
            system |= primary == Some(name);
        }
        message.push_str(&terminated_line(name, terminated));
    }
    if code == "UnknownError" {
        system = true;
    }
    if system {
        PhaseInfo::system_retryable_failure("Interrupted", message)
    } else {
        PhaseInfo::retryable_failure(code, message)
    }
}

/// `Pending`: what its conditions and waiting containers say, unless it has
/// been pending longer than the platform's `pod-pending-timeout`.
fn pending(ctx: &PhaseContext, pod: &Value) -> Result<PhaseInfo, PluginError> {
    let said = match pending_by_conditions(ctx, &pod["status"])? {
        Some(info) if info.is_terminal() => return Ok(info),
        said => said,
    };
    let timeout = duration(
        ctx.k8s_defaults.pod_pending_timeout(),
        "pod-pending-timeout",
    )?;
    if timeout > 0 {
        let since = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| unix_seconds(&c["lastTransitionTime"]))
            .max()
            .or_else(|| unix_seconds(&pod["metadata"]["creationTimestamp"]));
        if let Some(since) = since
            && ctx.now.seconds - since >= timeout
        {
            return Ok(PhaseInfo::retryable_failure(
                "PodPendingTimeout",
                format!(
                    "pod has been pending for longer than {}",
                    go_duration(timeout)
                ),
            )
            .with_cleanup());
        }
    }
    Ok(said.unwrap_or_else(|| PhaseInfo::queued("Scheduling")))
}

/// Flyte's `DemystifyPending`: `None` when the conditions say nothing.
fn pending_by_conditions(
    ctx: &PhaseContext,
    status: &Value,
) -> Result<Option<PhaseInfo>, PluginError> {
    let defaults = &ctx.k8s_defaults;
    for condition in status["conditions"].as_array().into_iter().flatten() {
        let is_false = condition["status"] == "False";
        let reason = text(condition, "reason");
        let message = text(condition, "message");
        match text(condition, "type") {
            "PodScheduled" if is_false => {
                return Ok(Some(PhaseInfo::queued(format!("{reason}:{message}"))));
            }
            "Unschedulable" => {
                return Ok(Some(PhaseInfo::queued(format!("{reason}:{message}"))));
            }
            "Ready" if is_false => {}
            _ => continue,
        }
        let changed = unix_seconds(&condition["lastTransitionTime"]).unwrap_or(ctx.now.seconds);
        let waited = ctx.now.seconds - changed;
        let at = Timestamp {
            seconds: changed,
            nanos: 0,
        };
        let containers = status["containerStatuses"].as_array().into_iter().flatten();
        for container in containers.filter(|c| c["ready"] != true) {
            let waiting = &container["state"]["waiting"];
            if !waiting.is_object() {
                continue;
            }
            let waiting_reason = text(waiting, "reason");
            let code = format!("{reason}|{waiting_reason}");
            let message = format!("{message}|{}", text(waiting, "message"));
            let initializing = || PhaseInfo::initializing(format!("[{code}]: {message}"));
            // Past its grace period a waiting reason becomes a failure.
            let after_grace = |key: &str, grace: &str| -> Result<Option<String>, PluginError> {
                let grace = duration(grace, key)?;
                Ok((waited >= grace)
                    .then(|| format!("Grace period [{}] exceeded|{message}", go_duration(grace))))
            };
            let info = match waiting_reason {
                "ErrImagePull" | "ContainerCreating" | "PodInitializing" => initializing(),
                "CreateContainerError" => match after_grace(
                    "create-container-error-grace-period",
                    defaults.create_container_error_grace_period(),
                )? {
                    Some(message) => PhaseInfo::permanent_failure(code, message).with_cleanup(),
                    None => initializing(),
                },
                "CreateContainerConfigError" => match after_grace(
                    "create-container-config-error-grace-period",
                    defaults.create_container_config_error_grace_period(),
                )? {
                    Some(message) => PhaseInfo::permanent_failure(code, message).with_cleanup(),
                    None => initializing(),
                },
                "InvalidImageName" => PhaseInfo::permanent_failure(code, message).with_cleanup(),
                "ImagePullBackOff" => match after_grace(
                    "image-pull-backoff-grace-period",
                    defaults.image_pull_backoff_grace_period(),
                )? {
                    Some(message) => PhaseInfo::retryable_failure(code, message).with_cleanup(),
                    None => initializing(),
                },
                // A reason Flyte does not know would keep the task queued
                // until the pod is reaped: fail it now, as the platform's.
                _ => PhaseInfo::system_retryable_failure(code, message).with_cleanup(),
            };
            return Ok(Some(info.with_occurred_at(at)));
        }
    }
    Ok(None)
}

/// A pod whose every container (and init container) exited 0.
fn all_exited_zero(status: &Value) -> bool {
    let all: Vec<&Value> = ["initContainerStatuses", "containerStatuses"]
        .into_iter()
        .flat_map(|key| status[key].as_array().into_iter().flatten())
        .collect();
    !status["containerStatuses"]
        .as_array()
        .is_none_or(Vec::is_empty)
        && all
            .iter()
            .all(|c| c["state"]["terminated"]["exitCode"].as_i64() == Some(0))
}

/// The primary container decides: its end is the task's end, whatever the
/// sidecars do.
fn primary_phase(pod: &Value, name: &str, links: &[TaskLog]) -> PhaseInfo {
    let status = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name);
    let Some(status) = status else {
        let in_spec = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["name"] == name);
        // Declared but not reported yet: still starting.
        return if in_spec {
            running(links)
        } else {
            PhaseInfo::permanent_failure(
                "PrimaryContainerNotFound",
                format!("Primary container [{name}] not found in pod's container statuses"),
            )
        };
    };
    let terminated = &status["state"]["terminated"];
    if !terminated.is_object() {
        return running(links);
    }
    let reason = text(terminated, "reason");
    let exit_code = terminated["exitCode"].as_i64().unwrap_or(0);
    let message = terminated_line(name, terminated);
    if reason.contains("OOMKilled") {
        PhaseInfo::retryable_failure(reason, message)
    } else if KILLED.contains(&exit_code) {
        PhaseInfo::system_retryable_failure(reason, message)
    } else if exit_code != 0 {
        PhaseInfo::retryable_failure(reason, message)
    } else {
        PhaseInfo::success()
    }
}

/// The latest time a container started or finished.
fn latest_container_time(status: &Value) -> Option<Timestamp> {
    container_statuses(status)
        .flat_map(|c| {
            [
                unix_seconds(&c["state"]["running"]["startedAt"]),
                unix_seconds(&c["state"]["terminated"]["finishedAt"]),
            ]
        })
        .flatten()
        .max()
        .map(|seconds| Timestamp { seconds, nanos: 0 })
}

/// The log-link values for the pod's first container, from the pod's
/// creation to now.
fn log_input(ctx: &PhaseContext, pod: &Value) -> LogInput {
    let meta = &pod["metadata"];
    let first = &pod["spec"]["containers"][0];
    let container_name = text(first, "name");
    let container_id = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == container_name)
        .map(|c| text(c, "containerID"))
        .unwrap_or_default();
    LogInput {
        log_name: " (User)".into(),
        pod_name: text(meta, "name").into(),
        pod_uid: text(meta, "uid").into(),
        namespace: text(meta, "namespace").into(),
        container_name: container_name.into(),
        container_id: container_id.into(),
        hostname: text(&pod["spec"], "hostname").into(),
        node_name: text(&pod["spec"], "nodeName").into(),
        ..LogInput::for_task(ctx).running_since(&meta["creationTimestamp"], ctx.now.seconds)
    }
}

/// A configured Go duration in seconds; an invalid one is the operator's
/// mistake, named.
fn duration(text: &str, key: &str) -> Result<i64, PluginError> {
    parse_duration(text).ok_or_else(|| {
        PluginError::internal(format!(
            "invalid k8s configuration: {key} `{text}` is not a duration"
        ))
    })
}

/// Whole seconds as Go prints a duration: `0s`, `45s`, `3m0s`, `1h0m0s`.
fn go_duration(seconds: i64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    #[test]
    fn durations_print_as_go_prints_them() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(45), "45s");
        assert_eq!(go_duration(180), "3m0s");
        assert_eq!(go_duration(3725), "1h2m5s");
    }

    #[test]
    fn a_pod_succeeds_only_when_every_container_exited_zero() {
        let exited = |code: i64| json!({ "state": { "terminated": { "exitCode": code } } });
        assert!(all_exited_zero(
            &json!({ "containerStatuses": [exited(0), exited(0)] })
        ));
        assert!(!all_exited_zero(
            &json!({ "containerStatuses": [exited(0), exited(1)] })
        ));
        assert!(!all_exited_zero(&json!({ "containerStatuses": [] })));
        let running = json!({ "state": { "running": {} } });
        assert!(!all_exited_zero(
            &json!({ "containerStatuses": [exited(0), running] })
        ));
    }

    #[test]
    fn a_killed_primary_is_the_platforms_failure_a_killed_sidecar_the_users() {
        let status = json!({ "reason": "Error", "containerStatuses": [
            { "name": "main", "state": { "terminated": { "exitCode": 137, "reason": "Error" } } },
        ]});
        let info = failed(&status, Some("main"));
        let error = info.error.unwrap();
        assert_eq!(
            (error.code.as_str(), error.kind),
            ("Interrupted", crate::ErrorKind::System)
        );
        let info = failed(&status, Some("other"));
        let error = info.error.unwrap();
        assert_eq!(
            (error.code.as_str(), error.kind),
            ("Interrupted", crate::ErrorKind::User)
        );
    }
}
