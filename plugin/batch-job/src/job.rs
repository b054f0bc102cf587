//! Task → Job.

use flytewasm_plugin_sdk::custom::struct_to_json;
use flytewasm_plugin_sdk::pod::{self, Options};
use flytewasm_plugin_sdk::prelude::*;
use flytewasm_plugin_sdk::schemas::batchjob::v1::{BatchJob, CompletionMode};

pub const QUEUE_LABEL: &str = "kueue.x-k8s.io/queue-name";
pub const PRIORITY_LABEL: &str = "kueue.x-k8s.io/priority-class";

pub fn build(ctx: &TaskContext) -> Result<Value, PluginError> {
    // Every field has a default, so a task may leave `custom` out.
    let config: BatchJob = match &ctx.template.custom {
        Some(_) => ctx.custom()?,
        None => BatchJob::default(),
    };
    let task_pod = pod::build(ctx, Options::for_task(ctx))?;
    let mut spec = task_pod.spec.clone();
    // Job pods must not restart in place: the Job retries them (backoffLimit).
    spec.restart_policy = Some("Never".into());
    let mut pod_labels = task_pod.labels.clone();
    let mut pod_annotations = task_pod.annotations.clone();
    if let Some(overlay) = &config.pod_template {
        let overlay = struct_to_json(overlay);
        if let Some(extra) = overlay["metadata"]["labels"].as_object() {
            pod_labels.extend(extra.iter().map(|(k, v)| (k.clone(), text(v))));
        }
        if let Some(extra) = overlay["metadata"]["annotations"].as_object() {
            pod_annotations.extend(extra.iter().map(|(k, v)| (k.clone(), text(v))));
        }
        if !overlay["spec"].is_null() {
            spec = pod::merge_overlay(
                &spec,
                &overlay["spec"],
                "TaskTemplate.custom.podTemplate.spec",
            )?;
        }
    }

    let mut job_spec = json!({
        "template": {
            "metadata": { "labels": pod_labels, "annotations": pod_annotations },
            "spec": spec,
        },
    });
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            job_spec[key] = value;
        }
    };
    set(
        "parallelism",
        positive(config.parallelism, "parallelism")?.map(Value::from),
    );
    set(
        "completions",
        positive(config.completions, "completions")?.map(Value::from),
    );
    set(
        "backoffLimit",
        non_negative(config.backoff_limit, "backoffLimit")?.map(Value::from),
    );
    set(
        "activeDeadlineSeconds",
        config
            .active_deadline_seconds
            .map(|s| {
                if s > 0 {
                    Ok(Value::from(s))
                } else {
                    Err(bad("activeDeadlineSeconds", "must be positive"))
                }
            })
            .transpose()?,
    );
    set(
        "ttlSecondsAfterFinished",
        non_negative(config.ttl_seconds_after_finished, "ttlSecondsAfterFinished")?
            .map(Value::from),
    );
    match CompletionMode::try_from(config.completion_mode) {
        Ok(CompletionMode::Indexed) => set("completionMode", Some("Indexed".into())),
        Ok(CompletionMode::NonIndexed) => set("completionMode", Some("NonIndexed".into())),
        Ok(CompletionMode::Unspecified) => {}
        Err(_) => return Err(bad("completionMode", "is not a known completion mode")),
    }

    let mut labels = serde_json::Map::new();
    if let Some(kueue) = config.kueue.as_ref().filter(|k| !k.queue_name.is_empty()) {
        // Kueue admits suspended Jobs of a queue by resuming them.
        labels.insert(QUEUE_LABEL.into(), kueue.queue_name.clone().into());
        if !kueue.priority_class.is_empty() {
            labels.insert(PRIORITY_LABEL.into(), kueue.priority_class.clone().into());
        }
        job_spec["suspend"] = true.into();
    }
    Ok(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "labels": labels },
        "spec": job_spec,
    }))
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

fn bad(field: &str, problem: &str) -> PluginError {
    PluginError::bad_task(format!("TaskTemplate.custom.{field}: {problem}"))
}

fn positive(value: Option<i32>, field: &str) -> Result<Option<i32>, PluginError> {
    match value {
        Some(n) if n < 1 => Err(bad(field, &format!("must be at least 1, got {n}"))),
        other => Ok(other),
    }
}

fn non_negative(value: Option<i32>, field: &str) -> Result<Option<i32>, PluginError> {
    match value {
        Some(n) if n < 0 => Err(bad(field, &format!("must not be negative, got {n}"))),
        other => Ok(other),
    }
}
