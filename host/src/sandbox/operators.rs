//! Operator simulators: move objects through the states a real controller
//! would, so the host sees what it would see on a real cluster.
//!
//! - spark-operator: a new SparkApplication goes `""` → SUBMITTED →
//!   RUNNING (driver pod, UI address) → COMPLETED (termination time).
//! - kubelet: a new Pod goes Pending → Running → Succeeded.
//! - Job controller (and Kueue): a suspended Job waits, then is admitted
//!   (`spec.suspend` set to false, as Kueue does); once running, a Job
//!   creates `spec.parallelism` pods from its template (named
//!   `<job>-<5 letters>`, labelled `job-name`, `batch.kubernetes.io/job-name`
//!   and `controller-uid`, owned by the Job) and ends `Complete` (or
//!   `Failed` with `BackoffLimitExceeded`). The pods carry the Job's outcome
//!   and step annotations, so the kubelet simulator runs them alike.
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
use super::fields::Writer;
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
/// replaces the status and may merge into the spec (`{"status", "spec"}`);
/// a Job's step may first create its pods (`"createPods": true`).
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
        if change["createPods"] == true && !create_job_pods(&shared, &namespace, &name, &uid) {
            return;
        }
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

/// The Job controller's pods for a running Job (false: the Job is gone or
/// being deleted, so the controller stops).
fn create_job_pods(shared: &Shared, namespace: &str, name: &str, uid: &Value) -> bool {
    let Ok(job) = shared.store.get(&job_kind(), namespace, name) else {
        return false;
    };
    if job["metadata"]["uid"] != *uid || !job["metadata"]["deletionTimestamp"].is_null() {
        return false;
    }
    let writer = Writer {
        manager: "kube-controller-manager".into(),
        api_version: "v1".into(),
        status: false,
    };
    let parallelism = job["spec"]["parallelism"].as_u64().unwrap_or(1);
    for _ in 0..parallelism {
        let created = shared.quotas.create(
            &shared.store,
            &pod_kind(),
            namespace,
            job_pod(&job),
            &writer,
        );
        if let Err(err) = created {
            // As the real controller: the Job keeps going, an event says why.
            tracing::warn!(target: "sandbox", "[sandbox] job {namespace}/{name}: cannot create a pod: {}", err.message);
        }
    }
    true
}

/// A pod from the Job's template, as the Job controller makes it.
fn job_pod(job: &Value) -> Value {
    let meta = &job["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    let uid = &meta["uid"];
    let template = &job["spec"]["template"];
    let mut labels = template["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    for key in ["job-name", "batch.kubernetes.io/job-name"] {
        labels[key] = json!(name);
    }
    for key in ["controller-uid", "batch.kubernetes.io/controller-uid"] {
        labels[key] = uid.clone();
    }
    let mut annotations = template["metadata"]["annotations"].clone();
    if !annotations.is_object() {
        annotations = json!({});
    }
    for key in [OUTCOME_ANNOTATION, STEP_ANNOTATION] {
        if let Some(value) = meta["annotations"].get(key) {
            annotations[key] = value.clone();
        }
    }
    let mut suffix = [0u8; 5];
    let _ = getrandom::fill(&mut suffix);
    let suffix: String = suffix.iter().map(|b| (b'a' + b % 26) as char).collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{name}-{suffix}"), "labels": labels, "annotations": annotations,
            "ownerReferences": [{ "apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
                                  "controller": true, "blockOwnerDeletion": true }],
        },
        "spec": template["spec"],
    })
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
    steps.push(json!({ "status": running, "createPods": true }));
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
