//! Operator simulators: move objects through the states a real controller
//! would, so the host sees what it would see on a real cluster.
//!
//! - spark-operator: a new SparkApplication goes `""` → SUBMITTED →
//!   RUNNING (driver pod, UI address) → COMPLETED (termination time).
//! - kubelet (`kubelet.rs`): a new Pod goes Pending → Running → Succeeded,
//!   with the conditions and container states a kubelet writes; its
//!   outcome may instead be any way a pod fails or hangs (image pulls,
//!   container creation, scheduling, OOM kills, evictions, node
//!   shutdowns), and a pod with sidecars keeps running after its primary
//!   container ends.
//! - Job controller (and Kueue): a suspended Job waits, then is admitted
//!   (`spec.suspend` set to false, as Kueue does); once running, a Job
//!   creates `spec.parallelism` pods from its template (named
//!   `<job>-<5 letters>`, labelled `job-name`, `batch.kubernetes.io/job-name`
//!   and `controller-uid`, owned by the Job) and ends `Complete` (or
//!   `Failed` with `BackoffLimitExceeded`). The pods carry the Job's outcome
//!   and step annotations, so the kubelet simulator runs them alike.
//! - Kubeflow training-operator v1 (PyTorchJob, TFJob, MPIJob): a new job
//!   gets `Created`, then `Running` (start time, active replica statuses,
//!   and one pod per replica, `<job>-<type>-<i>` or `<job>-launcher`,
//!   labelled `training.kubeflow.org/*` and owned by the job), then
//!   `Succeeded` (or `Failed`; or `Restarting` and `Running` again before
//!   `Succeeded`). Conditions change as the operator's `setCondition`
//!   changes them. A job with `spec.runPolicy.suspend` gets `Suspended` and
//!   no pods, and stays so: resuming is not simulated.
//! - Dask Kubernetes operator (DaskJob, [`dask`]): a new job gets
//!   `JobCreated`, then `ClusterCreated` (cluster name, runner pod name, and
//!   the scheduler, worker and runner pods, owned by the job), then
//!   `Running` (start time), then `Successful` (or `Failed`; end time).
//! - KubeRay (RayJob, [`kuberay`]): a new job is validated (an invalid one
//!   gets `ValidationFailed`), then goes `Initializing` (cluster name, job
//!   id), `Running` (head and worker pods owned by the job; job PENDING,
//!   then RUNNING), then `Complete` (or `Failed` with `AppFailed`).
//!
//! An object's annotations choose its fate:
//! `sandbox.flytewasm.io/outcome`: `succeed` (default), `fail`,
//! `submission-fail` (Spark), `restart` (training jobs), `run-forever`, or
//! a pod's fate (`kubelet.rs`: `image-pull-backoff`, `oom-killed`,
//! `evicted`...);
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

mod dask;
pub use dask::kind as dask_kind;
mod kubelet;
mod kuberay;
pub use kuberay::kind as ray_kind;

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

/// A kind Kubeflow's training operator (v1) serves.
struct Training {
    kind: &'static str,
    plural: &'static str,
    /// The `spec` field holding the replica specs by replica type.
    replica_specs: &'static str,
    /// The `training.kubeflow.org/operator-name` label on its pods.
    controller: &'static str,
}

const TRAINING: [Training; 3] = [
    Training {
        kind: "PyTorchJob",
        plural: "pytorchjobs",
        replica_specs: "pytorchReplicaSpecs",
        controller: "pytorchjob-controller",
    },
    Training {
        kind: "TFJob",
        plural: "tfjobs",
        replica_specs: "tfReplicaSpecs",
        controller: "tfjob-controller",
    },
    Training {
        kind: "MPIJob",
        plural: "mpijobs",
        replica_specs: "mpiReplicaSpecs",
        controller: "mpijob-controller",
    },
];

impl Training {
    fn kind(&self) -> Kind {
        Kind::new("kubeflow.org/v1", self.kind, self.plural)
    }
}

/// PyTorchJob, TFJob and MPIJob (`kubeflow.org/v1`).
pub fn training_kinds() -> Vec<Kind> {
    TRAINING.iter().map(Training::kind).collect()
}

fn training(kind_key: &str) -> Option<&'static Training> {
    TRAINING.iter().find(|t| t.kind().key() == kind_key)
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
                (
                    pod_kind(),
                    status_only(kubelet::pod_states(
                        &event.object,
                        step(&event.object, shared.step),
                    )),
                )
            } else if event.kind_key == job_kind().key() {
                (job_kind(), job_steps(&event.object))
            } else if let Some(training) = training(&event.kind_key) {
                (training.kind(), training_steps(training, &event.object))
            } else if event.kind_key == dask::kind().key() {
                (dask::kind(), dask::steps(&event.object))
            } else if event.kind_key == kuberay::kind().key() {
                (kuberay::kind(), kuberay::steps(&event.object))
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
                event.namespace.clone(),
                name,
                uid,
                steps,
                step,
            ));
        }
    })
}

/// Apply each step in turn, `step` apart, while the object lives: a step
/// replaces the status and may merge into the spec (`{"status", "spec"}`),
/// or patches the live status (`{"statusPatch"}`, see [`patch_status`]);
/// a step may first create the object's pods (`"createPods": true`).
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
        if change["createPods"] == true && !create_pods(&shared, &kind, &namespace, &name, &uid) {
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
            match change.get("statusPatch") {
                Some(patch) => patch_status(&mut next["status"], patch),
                None => next["status"] = change["status"].clone(),
            }
            Ok(next)
        });
        if updated.is_err() {
            return;
        }
    }
}

/// The pods a controller makes for its running object: the Job
/// controller's or the training operator's (false: the object is gone or
/// being deleted, so the controller stops).
fn create_pods(shared: &Shared, kind: &Kind, namespace: &str, name: &str, uid: &Value) -> bool {
    let Ok(owner) = shared.store.get(kind, namespace, name) else {
        return false;
    };
    if owner["metadata"]["uid"] != *uid || !owner["metadata"]["deletionTimestamp"].is_null() {
        return false;
    }
    let (manager, pods) = if let Some(training) = training(&kind.key()) {
        ("training-operator", replica_pods(training, &owner))
    } else if kind.key() == dask::kind().key() {
        ("dask-kubernetes-operator", dask::pods(&owner))
    } else if kind.key() == kuberay::kind().key() {
        ("kuberay-operator", kuberay::pods(&owner))
    } else {
        let parallelism = owner["spec"]["parallelism"]
            .as_u64()
            .unwrap_or(1)
            .min(MAX_SIMULATED_REPLICAS);
        let pods = (0..parallelism).map(|_| job_pod(&owner)).collect();
        ("kube-controller-manager", pods)
    };
    let writer = Writer {
        manager: manager.into(),
        api_version: "v1".into(),
        status: false,
    };
    for pod in pods {
        let created = shared
            .quotas
            .create(&shared.store, &pod_kind(), namespace, pod, &writer);
        if let Err(err) = created {
            // As the real controllers: the object keeps going, an event says why.
            tracing::warn!(target: "sandbox", "[sandbox] {} {namespace}/{name}: cannot create a pod: {}", kind.kind, err.message);
        }
    }
    true
}

/// A pod a controller makes from `template` for `owner`: the template's
/// labels plus `labels`, its annotations plus the owner's outcome and step
/// (so the kubelet simulator runs it alike), a controller reference.
fn owned_pod(
    kind: &Kind,
    owner: &Value,
    name: String,
    template: &Value,
    labels: &[(&str, Value)],
) -> Value {
    let meta = &owner["metadata"];
    let mut pod_labels = template["metadata"]["labels"].clone();
    if !pod_labels.is_object() {
        pod_labels = json!({});
    }
    for (key, value) in labels {
        pod_labels[*key] = value.clone();
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
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "labels": pod_labels, "annotations": annotations,
            "ownerReferences": [{ "apiVersion": kind.api_version(), "kind": kind.kind, "name": meta["name"],
                                  "uid": meta["uid"], "controller": true, "blockOwnerDeletion": true }],
        },
        "spec": template["spec"],
    })
}

/// A pod from the Job's template, as the Job controller makes it.
fn job_pod(job: &Value) -> Value {
    let name = job["metadata"]["name"].as_str().unwrap_or_default();
    let uid = &job["metadata"]["uid"];
    let suffix = random_suffix(5);
    let labels = [
        ("job-name", json!(name)),
        ("batch.kubernetes.io/job-name", json!(name)),
        ("controller-uid", uid.clone()),
        ("batch.kubernetes.io/controller-uid", uid.clone()),
    ];
    owned_pod(
        &job_kind(),
        job,
        format!("{name}-{suffix}"),
        &job["spec"]["template"],
        &labels,
    )
}

/// `len` random lower-case letters, as controllers end generated pod names.
fn random_suffix(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| (b'a' + b % 26) as char).collect()
}

/// The most pods the simulator makes for one replica type: a job asking for
/// billions must not take the test double down with it.
const MAX_SIMULATED_REPLICAS: u64 = 200;

/// The most pods the simulator makes for one object, whatever its groups.
const MAX_SIMULATED_PODS: usize = 1000;

/// The replica specs by type, each with its replica count (the operator
/// defaults an unset count to 1; the simulator makes at most
/// [`MAX_SIMULATED_REPLICAS`]).
fn replica_specs<'a>(training: &Training, job: &'a Value) -> Vec<(&'a str, &'a Value, u64)> {
    job["spec"][training.replica_specs]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(rtype, spec)| {
            let replicas = spec["replicas"].as_u64().unwrap_or(1);
            (rtype.as_str(), spec, replicas.min(MAX_SIMULATED_REPLICAS))
        })
        .collect()
}

/// One pod per replica, as the training operator makes them (at most
/// [`MAX_SIMULATED_PODS`]).
fn replica_pods(training: &Training, job: &Value) -> Vec<Value> {
    let name = job["metadata"]["name"].as_str().unwrap_or_default();
    let mut pods = Vec::new();
    for (rtype, spec, replicas) in replica_specs(training, job) {
        let lower = rtype.to_lowercase();
        for index in 0..replicas {
            if pods.len() >= MAX_SIMULATED_PODS {
                return pods;
            }
            // MPIJob v1 names its single launcher without an index.
            let pod_name = if training.kind == "MPIJob" && rtype == "Launcher" {
                format!("{name}-launcher")
            } else {
                format!("{name}-{lower}-{index}")
            };
            let labels = [
                ("training.kubeflow.org/job-name", json!(name)),
                (
                    "training.kubeflow.org/operator-name",
                    json!(training.controller),
                ),
                ("training.kubeflow.org/replica-type", json!(lower)),
                (
                    "training.kubeflow.org/replica-index",
                    json!(index.to_string()),
                ),
            ];
            let mut pod = owned_pod(&training.kind(), job, pod_name, &spec["template"], &labels);
            // The operator restarts on exit codes itself, so such pods never restart.
            match spec["restartPolicy"].as_str() {
                Some("ExitCode") => pod["spec"]["restartPolicy"] = json!("Never"),
                Some(policy) => pod["spec"]["restartPolicy"] = json!(policy),
                None => {}
            }
            pods.push(pod);
        }
    }
    pods
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

/// The longest step an annotation may ask for: a day is slower than any
/// test waits, and times computed from steps stay far from overflowing.
const MAX_STEP: Duration = Duration::from_secs(24 * 3600);

fn step(object: &Value, default: Duration) -> Duration {
    object["metadata"]["annotations"][STEP_ANNOTATION]
        .as_str()
        .and_then(|ms| ms.parse().ok())
        .map_or(default, Duration::from_millis)
        .min(MAX_STEP)
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

/// Stands, in a `statusPatch`, for the time the patch is applied.
const NOW: &str = "<now>";

/// Apply a training-operator step to the live status: its fields replace
/// the status's (`NOW` stamped when applied), and its conditions are set
/// in turn as the operator's `setCondition` sets them. The live status is
/// read so unchanged conditions keep their times, as on a real cluster.
fn patch_status(status: &mut Value, patch: &Value) {
    let now = now_rfc3339();
    if !status.is_object() {
        *status = json!({});
    }
    for (key, value) in patch.as_object().into_iter().flatten() {
        if key == "conditions" {
            for condition in value.as_array().into_iter().flatten() {
                set_condition(&mut status["conditions"], condition, &now);
            }
        } else if value == NOW {
            status[key] = json!(now);
        } else {
            status[key] = value.clone();
        }
    }
}

/// training-operator v1's `setCondition`: nothing changes once Failed, nor
/// when the type's status and reason are unchanged; the new condition goes
/// last, replacing its type (and Running and Restarting each other);
/// Succeeded and Failed turn Running to "False"; the transition time stays
/// when only the reason changes.
fn set_condition(conditions: &mut Value, new: &Value, now: &str) {
    let current: Vec<Value> = conditions.as_array().cloned().unwrap_or_default();
    if current
        .iter()
        .any(|c| c["type"] == "Failed" && c["status"] == "True")
    {
        return;
    }
    let kind = new["type"].as_str().unwrap_or_default();
    let same = current.iter().find(|c| c["type"] == kind);
    if same.is_some_and(|c| c["status"] == new["status"] && c["reason"] == new["reason"]) {
        return;
    }
    let mut condition = new.clone();
    condition["lastUpdateTime"] = json!(now);
    condition["lastTransitionTime"] = match same {
        Some(c) if c["status"] == new["status"] => c["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let mut next: Vec<Value> = current
        .into_iter()
        .filter(|c| {
            let other = c["type"].as_str().unwrap_or_default();
            other != kind
                && !matches!(
                    (kind, other),
                    ("Running", "Restarting") | ("Restarting", "Running")
                )
        })
        .map(|mut c| {
            if matches!(kind, "Succeeded" | "Failed") && c["type"] == "Running" {
                c["status"] = json!("False");
            }
            c
        })
        .collect();
    next.push(condition);
    *conditions = Value::Array(next);
}

/// A training job's steps, as `statusPatch`es: Created, Running with its
/// pods, then the outcome.
fn training_steps(training: &Training, job: &Value) -> Vec<Value> {
    let kind = training.kind;
    let name = job["metadata"]["name"].as_str().unwrap_or_default();
    let condition = |state: &str, message: String| {
        json!({ "type": state, "status": "True", "reason": format!("{kind}{state}"),
                "message": message })
    };
    let patch = |condition: Value, rest: Value| {
        let mut status = json!({ "conditions": [condition], "lastReconcileTime": NOW });
        json_patch::merge(&mut status, &rest);
        json!({ "statusPatch": status })
    };
    let mut steps = vec![patch(
        condition("Created", format!("{kind} {name} is created.")),
        json!({}),
    )];
    if job["spec"]["runPolicy"]["suspend"] == true {
        steps.push(patch(
            condition("Suspended", format!("{kind} {name} is suspended.")),
            json!({}),
        ));
        return steps;
    }
    let specs = replica_specs(training, job);
    // What each replica type counts, by the state all its replicas are in.
    let replicas = |state: &str| -> Value {
        specs
            .iter()
            .map(|(rtype, _, n)| (rtype.to_string(), json!({ state: n })))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    // The replica type that fails (a Worker where there is one).
    let failing = specs
        .iter()
        .find(|(rtype, ..)| *rtype == "Worker")
        .or(specs.first())
        .map_or("Worker", |(rtype, ..)| *rtype);
    let one_failed = || {
        let mut statuses = replicas("active");
        statuses[failing] = json!({ "failed": 1 });
        statuses
    };
    let running = condition("Running", format!("{kind} {name} is running."));
    let mut first_running = patch(
        running.clone(),
        json!({ "startTime": NOW, "replicaStatuses": replicas("active") }),
    );
    first_running["createPods"] = json!(true);
    steps.push(first_running);
    let succeeded = patch(
        condition(
            "Succeeded",
            format!("{kind} {name} is successfully completed."),
        ),
        json!({ "completionTime": NOW, "replicaStatuses": replicas("succeeded") }),
    );
    match outcome(job) {
        "fail" => steps.push(patch(
            condition(
                "Failed",
                format!("{kind} {name} is failed because 1 {failing} replica(s) failed."),
            ),
            json!({ "completionTime": NOW, "replicaStatuses": one_failed() }),
        )),
        "restart" => {
            steps.push(patch(
                condition(
                    "Restarting",
                    format!("{kind} {name} is restarting because 1 {failing} replica(s) failed."),
                ),
                json!({ "replicaStatuses": one_failed() }),
            ));
            steps.push(patch(
                running,
                json!({ "replicaStatuses": replicas("active") }),
            ));
            steps.push(succeeded);
        }
        "run-forever" => {}
        _ => steps.push(succeeded),
    }
    steps
}
