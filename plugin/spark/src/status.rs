//! SparkApplication status → Flyte phase, log links and UI links
//! (Flyte's `spark.go` GetTaskPhase and getEventInfoForSpark).

use std::collections::BTreeMap;

use flytewasm_plugin_sdk::logs::LogInput;
use flytewasm_plugin_sdk::prelude::*;
use flytewasm_plugin_sdk::time;

use crate::config::SparkConfig;

pub fn phase(ctx: &PhaseContext, app: &Value) -> Result<PhaseInfo, PluginError> {
    let config: SparkConfig = ctx.plugin_config()?;
    let status = &app["status"];
    let state = status["applicationState"]["state"]
        .as_str()
        .unwrap_or_default();
    let error = status["applicationState"]["errorMessage"]
        .as_str()
        .unwrap_or_default();

    let (logs, custom_info) = event_info(ctx, &config, app, state);
    let info = match state {
        "" => PhaseInfo::queued("job queued"),
        "SUBMITTED" => PhaseInfo::initializing("job submitted"),
        // Flyte's message has two spaces here; kept so error-matching tools agree.
        "SUBMISSION_FAILED" => PhaseInfo::retryable_failure(
            "DownstreamSystemError",
            format!("Spark Job  Submission Failed with Error: {error}"),
        ),
        "FAILED" => PhaseInfo::retryable_failure(
            "DownstreamSystemError",
            format!("Spark Job Failed with Error: {error}"),
        ),
        "COMPLETED" => PhaseInfo::success(),
        // RUNNING, PENDING_RERUN, INVALIDATING, SUCCEEDING, FAILING, UNKNOWN...
        _ => PhaseInfo::running(),
    };
    Ok(info
        .with_logs(logs)
        .with_custom_info(&custom_info)
        .bumped_if_reason_changed(&ctx.previous))
}

/// Log links in Flyte's order (mixed, user, system, all-user), then the
/// Spark UI: the history server once finished, the driver UI while running.
fn event_info(
    ctx: &PhaseContext,
    config: &SparkConfig,
    app: &Value,
    state: &str,
) -> (Vec<TaskLog>, Value) {
    let status = &app["status"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let app_name = text(&app["metadata"]["name"]);
    let driver_pod = text(&status["driverInfo"]["podName"]);
    let finished = matches!(state, "COMPLETED" | "FAILED");
    let base = LogInput {
        namespace: text(&app["metadata"]["namespace"]),
        pod_unix_start_time: time::unix_seconds(&app["metadata"]["creationTimestamp"]).unwrap_or(0),
        pod_unix_finish_time: if finished {
            time::unix_seconds(&status["terminationTime"]).unwrap_or(0)
        } else {
            0
        },
        ..LogInput::for_task(ctx)
    };
    // Flyte hands the task's config (for dynamic links) to the driver's
    // mixed links only.
    let for_pod = |pod_name: &str, log_name: &str| LogInput {
        pod_name: pod_name.into(),
        log_name: log_name.into(),
        task_config: BTreeMap::new(),
        ..base.clone()
    };

    let mut logs = Vec::new();
    if !driver_pod.is_empty() {
        let input = LogInput {
            task_config: base.task_config.clone(),
            ..for_pod(&driver_pod, "(Driver Logs)")
        };
        logs.extend(config.logs.mixed.links(&input));
    }
    logs.extend(config.logs.user.links(&for_pod(&driver_pod, "(User Logs)")));
    logs.extend(
        config
            .logs
            .system
            .links(&for_pod(&app_name, "(System Logs)")),
    );
    logs.extend(
        config
            .logs
            .all_user
            .links(&for_pod(&app_name, "(Spark-Submit/All User Logs)"))
            .into_iter()
            .map(|mut log| {
                log.show_while_pending = true;
                log
            }),
    );

    let app_id = text(&status["sparkApplicationId"]);
    let driver_ui = text(&status["driverInfo"]["webUIIngressAddress"]);
    let mut custom = serde_json::Map::new();
    if finished && !app_id.is_empty() && !config.spark_history_server_url.is_empty() {
        let url = format!("{}/history/{app_id}", config.spark_history_server_url);
        logs.push(TaskLog {
            name: "Spark History UI".into(),
            uri: url.clone(),
            show_while_pending: false,
        });
        custom.insert("sparkHistoryUI".into(), json!(url));
    } else if state == "RUNNING" && !driver_ui.is_empty() {
        let url = if driver_ui.contains("://") {
            driver_ui
        } else {
            format!("https://{driver_ui}")
        };
        logs.push(TaskLog {
            name: "Spark Driver UI".into(),
            uri: url.clone(),
            show_while_pending: false,
        });
        custom.insert("sparkDriverUI".into(), json!(url));
    }
    (logs, Value::Object(custom))
}
