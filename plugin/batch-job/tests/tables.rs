//! The batch-job plugin in the wasm runtime: the Job it builds for each
//! config field, and the phase for each Job status.

use flytewasm::config::HostConfig;
use flytewasm::executor::TaskRequest;
use flytewasm::runtime::{CallError, Plugin, wit};
use flytewasm::testkit;
use serde_json::{Value, json};

fn plugin() -> Plugin {
    testkit::plugin("batch-job")
}

fn request(custom: Option<Value>) -> TaskRequest {
    TaskRequest {
        namespace: "team".into(),
        name: Some("job1".into()),
        ..testkit::container_task("batch_job", custom, "ghcr.io/example/job:1")
    }
}

fn build(custom: Option<Value>) -> Result<Value, CallError> {
    let plugin = plugin();
    let ctx = request(custom).task_context(&plugin, &HostConfig::default(), testkit::fixed_now());
    Ok(serde_json::from_str(&plugin.build_resource(&ctx)?).unwrap())
}

fn phase(job: Value) -> wit::PhaseInfo {
    let plugin = plugin();
    let ctx = request(None).task_context(&plugin, &HostConfig::default(), testkit::fixed_now());
    let ctx = testkit::phase_context(ctx, wit::Phase::Queued, 0, "");
    plugin.get_task_phase(&ctx, &job.to_string()).unwrap()
}

#[test]
fn a_task_without_custom_is_a_plain_job_of_its_container() {
    let job = build(None).unwrap();
    assert_eq!(
        (job["apiVersion"].as_str(), job["kind"].as_str()),
        (Some("batch/v1"), Some("Job"))
    );
    let spec = &job["spec"];
    assert!(spec.get("suspend").is_none() && spec.get("parallelism").is_none());
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["containers"][0]["image"], "ghcr.io/example/job:1");
    // Flyte's templating of the container args.
    assert_eq!(
        pod["containers"][0]["args"],
        json!(["pyflyte-execute", "--inputs", "s3://bucket/in/inputs.pb"])
    );
}

#[test]
fn every_config_field_reaches_the_job() {
    let job = build(Some(json!({
        "parallelism": 4,
        "completions": 8,
        "completionMode": "INDEXED",
        "backoffLimit": 2,
        "activeDeadlineSeconds": "3600",
        "ttlSecondsAfterFinished": 60,
        "kueue": { "queueName": "team-a", "priorityClass": "high" },
        "podTemplate": {
            "metadata": { "labels": { "team": "a" } },
            "spec": { "nodeSelector": { "pool": "batch" } },
        },
    })))
    .unwrap();
    let spec = &job["spec"];
    assert_eq!(spec["parallelism"], 4);
    assert_eq!(spec["completions"], 8);
    assert_eq!(spec["completionMode"], "Indexed");
    assert_eq!(spec["backoffLimit"], 2);
    assert_eq!(spec["activeDeadlineSeconds"], 3600);
    assert_eq!(spec["ttlSecondsAfterFinished"], 60);
    // Queued with Kueue: labelled and suspended until admitted.
    assert_eq!(spec["suspend"], true);
    assert_eq!(
        job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"],
        "team-a"
    );
    assert_eq!(
        job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"],
        "high"
    );
    assert_eq!(spec["template"]["metadata"]["labels"]["team"], "a");
    assert_eq!(spec["template"]["spec"]["nodeSelector"]["pool"], "batch");
    assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
}

#[test]
fn bad_config_is_a_bad_task_naming_the_field() {
    for (custom, field) in [
        (
            json!({ "parallelism": 0 }),
            "TaskTemplate.custom.parallelism",
        ),
        (
            json!({ "backoffLimit": -1 }),
            "TaskTemplate.custom.backoffLimit",
        ),
        (
            json!({ "parallelism": "many" }),
            "TaskTemplate.custom.parallelism",
        ),
        (
            json!({ "activeDeadlineSeconds": 0 }),
            "TaskTemplate.custom.activeDeadlineSeconds",
        ),
    ] {
        let err = build(Some(custom.clone())).unwrap_err();
        assert!(err.is_bad_task(), "{custom}: {err}");
        assert!(err.to_string().contains(field), "{custom}: {err}");
    }
}

#[test]
fn job_status_maps_to_flyte_phases() {
    let condition = |kind: &str, reason: &str| json!({ "type": kind, "status": "True", "reason": reason, "message": "m" });
    // A Job a pod failure policy failed, quoting the pod's failure.
    let policy_failed = |message: &str| {
        json!({ "spec": {}, "status": { "conditions": [
            { "type": "Failed", "status": "True", "reason": "PodFailurePolicy", "message": message }] } })
    };
    const KILLED: &str = "Container main for pod team/j-1 failed with exit code 137 matching FailJob rule at index 0";
    let cases = [
        (
            json!({ "spec": {}, "status": {} }),
            wit::Phase::Queued,
            None,
        ),
        (
            json!({ "metadata": { "labels": { "kueue.x-k8s.io/queue-name": "q" } }, "spec": { "suspend": true }, "status": {} }),
            wit::Phase::WaitingForResources,
            None,
        ),
        (
            json!({ "spec": {}, "status": { "active": 2, "startTime": "t" } }),
            wit::Phase::Running,
            None,
        ),
        (
            json!({ "spec": {}, "status": { "startTime": "t", "failed": 1 } }),
            wit::Phase::Initializing,
            None,
        ),
        (
            json!({ "spec": {}, "status": { "conditions": [condition("Complete", "CompletionsReached")] } }),
            wit::Phase::Success,
            None,
        ),
        (
            json!({ "spec": {}, "status": { "conditions": [condition("Failed", "BackoffLimitExceeded")] } }),
            wit::Phase::RetryableFailure,
            Some("BackoffLimitExceeded"),
        ),
        (
            json!({ "spec": {}, "status": { "conditions": [condition("Failed", "DeadlineExceeded")] } }),
            wit::Phase::RetryableFailure,
            Some("DeadlineExceeded"),
        ),
        (
            json!({ "spec": {}, "status": { "conditions": [condition("Failed", "PodFailurePolicy")] } }),
            wit::Phase::PermanentFailure,
            Some("PodFailurePolicy"),
        ),
        // Pod-level causes the policy quotes, by Flyte's pod rules.
        (
            policy_failed(KILLED),
            wit::Phase::PermanentFailure,
            Some("Interrupted"),
        ),
        (
            policy_failed(
                "Pod team/j-1 has condition DisruptionTarget matching FailJob rule at index 1",
            ),
            wit::Phase::PermanentFailure,
            Some("Interrupted"),
        ),
        (
            policy_failed(
                "Container main for pod team/j-1 failed with exit code 42 matching FailJob rule at index 0",
            ),
            wit::Phase::PermanentFailure,
            Some("PodFailurePolicy"),
        ),
    ];
    for (job, expected, code) in cases {
        let info = phase(job.clone());
        assert_eq!(info.phase, expected, "{job}");
        assert_eq!(info.error.as_ref().map(|e| e.code.as_str()), code, "{job}");
    }
    let killed = phase(policy_failed(KILLED));
    let error = killed.error.unwrap();
    assert_eq!(
        error.kind,
        wit::ErrorKind::System,
        "an interruption is the system's doing"
    );
    assert!(error.message.contains("exit code 137"), "{}", error.message);
    let waiting = phase(
        json!({ "metadata": { "labels": { "kueue.x-k8s.io/queue-name": "q" } }, "spec": { "suspend": true }, "status": {} }),
    );
    assert!(waiting.reason.contains("queue `q`"), "{}", waiting.reason);
}
