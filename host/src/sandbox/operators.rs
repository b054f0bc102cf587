//! Operator simulators: move objects through the states a real controller
//! would, so the host sees what it would see on a real cluster.
//!
//! - spark-operator: a new SparkApplication goes `""` → SUBMITTED →
//!   RUNNING (driver pod, UI address) → COMPLETED (termination time).
//! - kubelet: a new Pod goes Pending → Running → Succeeded.
//! - Job controller (and Kueue): a suspended Job waits, then is admitted
//!   (`spec.suspend` set to false, as Kueue does); a Job runs its pods and
//!   ends `Complete` (or `Failed` with `BackoffLimitExceeded`).
//!
//! An object's annotations choose its fate:
//! `sandbox.flytewasm.io/outcome`: `succeed` (default), `fail`,
//! `submission-fail` (Spark), or `run-forever`;
//! `sandbox.flytewasm.io/step-ms`: time between states;
//! `sandbox.flytewasm.io/statuses`: a JSON array of statuses to apply in
//! turn instead, for an object of any kind — how a new plugin's phase
//! mapping is tried end to end before its operator has a simulator.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::Shared;
use super::store::{EventType, Kind, now_rfc3339};

pub const OUTCOME_ANNOTATION: &str = "sandbox.flytewasm.io/outcome";
pub const STEP_ANNOTATION: &str = "sandbox.flytewasm.io/step-ms";
pub const STATUSES_ANNOTATION: &str = "sandbox.flytewasm.io/statuses";

pub fn spark_kind() -> Kind {
    Kind::new(
        "sparkoperator.k8s.io/v1beta2",
        "SparkApplication",
        "sparkapplications",
    )
}

pub fn pod_kind() -> Kind {
    Kind::new("v1", "Pod", "pods")
}

pub fn job_kind() -> Kind {
    Kind::new("batch/v1", "Job", "jobs")
}

/// Run the simulators until the sandbox stops.
pub(super) fn start(shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    let mut events = shared.store.subscribe();
    tokio::spawn(async move {
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(target: "sandbox", "[sandbox] operator simulators missed {n} events");
                    continue;
                }
                Err(_) => return,
            };
            if event.kind != EventType::Added {
                continue;
            }
            let status_only = |states: Vec<Value>| -> Vec<Value> {
                states.into_iter().map(|s| json!({ "status": s })).collect()
            };
            let (kind, steps) = if let Some(statuses) = scripted(&event.object) {
                let Some(kind) = shared
                    .store
                    .kinds()
                    .into_iter()
                    .find(|k| k.key() == event.kind_key)
                else {
                    continue;
                };
                (kind, status_only(statuses))
            } else if event.kind_key == spark_kind().key() {
                (spark_kind(), status_only(spark_states(&event.object)))
            } else if event.kind_key == pod_kind().key() {
                (pod_kind(), status_only(pod_states(&event.object)))
            } else if event.kind_key == job_kind().key() {
                (job_kind(), job_steps(&event.object))
            } else {
                continue;
            };
            let step = step(&event.object, shared.step);
            let name = event.object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let uid = event.object["metadata"]["uid"].clone();
            tokio::spawn(advance(
                shared.clone(),
                kind,
                event.namespace,
                name,
                uid,
                steps,
                step,
            ));
        }
    })
}

/// Apply each step in turn, `step` apart, while the object lives: a step
/// replaces the status and may merge into the spec (`{"status", "spec"}`).
async fn advance(
    shared: Arc<Shared>,
    kind: Kind,
    namespace: String,
    name: String,
    uid: Value,
    steps: Vec<Value>,
    step: Duration,
) {
    for change in steps {
        tokio::time::sleep(step).await;
        let updated = shared.store.update(&kind, &namespace, &name, |current| {
            let mut next = current.clone();
            if current["metadata"]["uid"] != uid
                || !current["metadata"]["deletionTimestamp"].is_null()
            {
                return Ok(next); // replaced or being deleted: the controller stops
            }
            if let Some(spec) = change.get("spec") {
                json_patch::merge(&mut next["spec"], spec);
            }
            next["status"] = change["status"].clone();
            Ok(next)
        });
        if updated.is_err() {
            return;
        }
    }
}

fn outcome(object: &Value) -> &str {
    object["metadata"]["annotations"][OUTCOME_ANNOTATION]
        .as_str()
        .unwrap_or("succeed")
}

/// The statuses an object's annotation scripts, if it has a valid one.
fn scripted(object: &Value) -> Option<Vec<Value>> {
    let raw = object["metadata"]["annotations"][STATUSES_ANNOTATION].as_str()?;
    match serde_json::from_str(raw) {
        Ok(statuses) => Some(statuses),
        Err(err) => {
            tracing::warn!(target: "sandbox", "[sandbox] ignoring {STATUSES_ANNOTATION}: not a JSON array of statuses: {err}");
            None
        }
    }
}

fn step(object: &Value, default: Duration) -> Duration {
    object["metadata"]["annotations"][STEP_ANNOTATION]
        .as_str()
        .and_then(|ms| ms.parse().ok())
        .map_or(default, Duration::from_millis)
}

fn spark_states(app: &Value) -> Vec<Value> {
    let name = app["metadata"]["name"].as_str().unwrap_or_default();
    let app_id = format!("spark-{}", name.len() * 7919 % 100_000);
    let submitted = json!({ "applicationState": { "state": "SUBMITTED" }, "submissionAttempts": 1,
                            "lastSubmissionAttemptTime": now_rfc3339(), "sparkApplicationId": app_id });
    let driver = json!({ "podName": format!("{name}-driver"), "webUIAddress": "10.0.0.1:4040",
                         "webUIPort": 4040, "webUIServiceName": format!("{name}-ui-svc") });
    let state = |state: &str, error: Option<&str>| {
        let mut status = json!({ "applicationState": { "state": state }, "sparkApplicationId": app_id,
                                 "submissionAttempts": 1, "driverInfo": driver });
        if let Some(error) = error {
            status["applicationState"]["errorMessage"] = json!(error);
        }
        if matches!(state, "COMPLETED" | "FAILED") {
            status["terminationTime"] = json!(now_rfc3339());
        }
        status
    };
    match outcome(app) {
        "submission-fail" => vec![json!({ "applicationState": { "state": "SUBMISSION_FAILED",
            "errorMessage": "failed to run spark-submit: the sandbox was asked to fail the submission" }, "submissionAttempts": 1 })],
        "fail" => vec![
            submitted,
            state("RUNNING", None),
            state(
                "FAILED",
                Some("driver container failed with ExitCode: 1, Reason: Error"),
            ),
        ],
        "run-forever" => vec![submitted, state("RUNNING", None)],
        _ => vec![submitted, state("RUNNING", None), state("COMPLETED", None)],
    }
}

fn pod_states(pod: &Value) -> Vec<Value> {
    let containers: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let statuses = |state: Value| -> Value {
        containers.iter().map(|name| json!({ "name": name, "ready": false, "restartCount": 0, "image": "", "imageID": "", "state": state })).collect()
    };
    let running = json!({ "phase": "Running", "startTime": now_rfc3339(),
                          "containerStatuses": statuses(json!({ "running": { "startedAt": now_rfc3339() } })) });
    let exit = |code: i32, phase: &str| {
        json!({ "phase": phase, "containerStatuses": statuses(json!({ "terminated": {
        "exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }, "finishedAt": now_rfc3339() } })) })
    };
    match outcome(pod) {
        "fail" => vec![json!({ "phase": "Pending" }), running, exit(1, "Failed")],
        "run-forever" => vec![json!({ "phase": "Pending" }), running],
        _ => vec![json!({ "phase": "Pending" }), running, exit(0, "Succeeded")],
    }
}

fn job_steps(job: &Value) -> Vec<Value> {
    let spec = &job["spec"];
    let parallelism = spec["parallelism"].as_i64().unwrap_or(1);
    let completions = spec["completions"].as_i64().unwrap_or(1);
    let backoff = spec["backoffLimit"].as_i64().unwrap_or(6);
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({ "type": kind, "status": status, "reason": reason, "message": message,
                "lastTransitionTime": now_rfc3339() })
    };
    let mut steps = Vec::new();
    let mut conditions = Vec::new();
    if spec["suspend"] == true {
        let waiting = condition(
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended: waiting for Kueue to admit the workload",
        );
        steps.push(json!({ "status": { "conditions": [waiting] } }));
        // Admitted: Kueue resumes the Job.
        conditions.push(condition("Suspended", "False", "JobResumed", "Job resumed"));
        steps.push(json!({ "spec": { "suspend": false }, "status": { "conditions": conditions, "startTime": now_rfc3339() } }));
    }
    let running = json!({ "startTime": now_rfc3339(), "active": parallelism, "ready": parallelism, "conditions": conditions });
    steps.push(json!({ "status": running }));
    match outcome(job) {
        "fail" => {
            let mut failed = conditions.clone();
            failed.push(condition(
                "FailureTarget",
                "True",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ));
            failed.push(condition(
                "Failed",
                "True",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ));
            steps.push(json!({ "status": { "startTime": now_rfc3339(), "active": 0, "failed": backoff + 1, "conditions": failed } }));
        }
        "run-forever" => {}
        _ => {
            let mut done = conditions.clone();
            done.push(condition(
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            ));
            done.push(condition(
                "Complete",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            ));
            steps.push(json!({ "status": { "startTime": now_rfc3339(), "completionTime": now_rfc3339(), "active": 0,
                                           "succeeded": completions, "conditions": done } }));
        }
    }
    steps
}
