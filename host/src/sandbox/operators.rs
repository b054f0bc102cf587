//! Operator simulators: move objects through the states a real controller
//! would, so the host sees what it would see on a real cluster.
//!
//! - spark-operator: a new SparkApplication goes `""` → SUBMITTED →
//!   RUNNING (driver pod, UI address) → COMPLETED (termination time).
//! - kubelet: a new Pod goes Pending → Running → Succeeded.
//!
//! An object's annotations choose its fate:
//! `sandbox.flytewasm.io/outcome`: `succeed` (default), `fail`,
//! `submission-fail` (Spark), or `run-forever`;
//! `sandbox.flytewasm.io/step-ms`: time between states.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::Shared;
use super::store::{EventType, Kind, now_rfc3339};

pub const OUTCOME_ANNOTATION: &str = "sandbox.flytewasm.io/outcome";
pub const STEP_ANNOTATION: &str = "sandbox.flytewasm.io/step-ms";

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
            let states = if event.kind_key == spark_kind().key() {
                spark_states(&event.object)
            } else if event.kind_key == pod_kind().key() {
                pod_states(&event.object)
            } else {
                continue;
            };
            let kind = if event.kind_key == spark_kind().key() {
                spark_kind()
            } else {
                pod_kind()
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
                states,
                step,
            ));
        }
    })
}

/// Apply each status in turn, `step` apart, while the object lives.
async fn advance(
    shared: Arc<Shared>,
    kind: Kind,
    namespace: String,
    name: String,
    uid: Value,
    states: Vec<Value>,
    step: Duration,
) {
    for status in states {
        tokio::time::sleep(step).await;
        let updated = shared.store.update(&kind, &namespace, &name, |current| {
            let mut next = current.clone();
            if current["metadata"]["uid"] != uid
                || !current["metadata"]["deletionTimestamp"].is_null()
            {
                return Ok(next); // replaced or being deleted: the controller stops
            }
            next["status"] = status.clone();
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
