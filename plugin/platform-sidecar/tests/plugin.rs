//! The platform-sidecar example in the wasm runtime: a plain task's Pod
//! (as the pod plugin builds it, reference/flyte-operators.md §D.2–§D.3)
//! plus the platform's sidecar, its phase read as §D.4 reads it. The
//! component is `target/example-plugins/platform-sidecar.wasm` from `just
//! build-plugins`.

use flytewasm::config::HostConfig;
use flytewasm::runtime::{CallError, Plugin, wit};
use flytewasm::testkit::kubeflow::at;
use flytewasm::testkit::{self, kubeflow, pod};
use serde_json::{Value, json};

fn plugin() -> Plugin {
    testkit::plugin("platform-sidecar")
}

fn config(value: Value) -> HostConfig {
    serde_json::from_value(value).unwrap()
}

fn build(config: &HostConfig) -> Result<Value, CallError> {
    kubeflow::build(&plugin(), &pod::python_task(), config)
}

fn names<'a>(pod: &'a Value, field: &str) -> Vec<&'a str> {
    pod["spec"][field]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

/// The platform's sidecar: the pod's one init container.
fn sidecar(pod: &Value) -> &Value {
    assert_eq!(pod["spec"]["initContainers"].as_array().unwrap().len(), 1);
    &pod["spec"]["initContainers"][0]
}

// The default sidecar joins the task's container, which stays the primary
// (§D.3, §G.19), as a native sidecar: an init container that restarts
// always, which the kubelet stops once the task's container ends.
#[test]
fn a_plain_task_gets_the_default_sidecar() {
    let pod = build(&HostConfig::default()).unwrap();
    assert_eq!(names(&pod, "containers"), ["task1"]);
    assert_eq!(names(&pod, "initContainers"), ["platform-agent"]);
    let sidecar = sidecar(&pod);
    assert_eq!(sidecar["restartPolicy"], "Always");
    assert_eq!(sidecar["image"], "cr.fluentbit.io/fluent/fluent-bit:3.1.9");
    assert_eq!(
        sidecar["resources"],
        json!({ "requests": { "cpu": "50m", "memory": "64Mi" }, "limits": { "cpu": "100m", "memory": "128Mi" } })
    );
    assert_eq!(
        pod["metadata"]["annotations"],
        json!({ "primary_container_name": "task1" })
    );
    testkit::assert_golden(env!("CARGO_MANIFEST_DIR"), "pod", &pod);
}

// The platform's sidecar comes from `plugins.platform-sidecar.sidecar`.
#[test]
fn the_sidecar_comes_from_the_config() {
    let pod = build(&config(
        json!({ "plugins": { "platform-sidecar": { "sidecar": {
        "name": "otel-agent", "image": "otel/opentelemetry-collector:0.110.0",
        "args": ["--config=/etc/otel/config.yaml"],
        "env": [{ "name": "OTEL_SERVICE", "value": "flyte" }],
    } } } }),
    ))
    .unwrap();
    assert_eq!(names(&pod, "initContainers"), ["otel-agent"]);
    assert_eq!(
        sidecar(&pod),
        &json!({ "name": "otel-agent", "image": "otel/opentelemetry-collector:0.110.0",
                 "args": ["--config=/etc/otel/config.yaml"], "restartPolicy": "Always",
                 "env": [{ "name": "OTEL_SERVICE", "value": "flyte" }] }),
        "taken as configured: no Flyte environment, no default resources"
    );
}

// §0.3.7 2: a secondary container is held to the platform's limits.
#[test]
fn the_sidecars_resources_are_clamped_to_the_platform_limits() {
    let pod = build(&config(json!({
        "k8s": { "task-resources": { "limits": { "cpu": "2", "memory": "100Mi" } } },
        "plugins": { "platform-sidecar": { "sidecar": {
            "name": "greedy", "image": "greedy:1",
            "resources": { "requests": { "cpu": "4", "memory": "1Gi" }, "limits": { "cpu": "8", "memory": "2Gi" } },
        } } },
    })))
    .unwrap();
    assert_eq!(
        sidecar(&pod)["resources"],
        json!({ "requests": { "cpu": "2", "memory": "100Mi" }, "limits": { "cpu": "2", "memory": "100Mi" } })
    );
}

// A sidecar named as a task container would replace it: a configuration error.
#[test]
fn a_sidecar_named_as_the_task_container_is_a_config_error() {
    let clash = config(
        json!({ "plugins": { "platform-sidecar": { "sidecar": { "name": "task1", "image": "x" } } } }),
    );
    match build(&clash) {
        Err(CallError::Internal { message, .. }) => assert_eq!(
            message,
            "invalid plugin configuration: plugins.platform-sidecar.sidecar.name `task1` must be set and differ from the task's containers (task1)"
        ),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

// §D.4: the task's container decides the phase, even before the kubelet
// has stopped the sidecar.
#[test]
fn the_phase_follows_the_task_container_not_the_sidecar() {
    let built = build(&HostConfig::default()).unwrap();
    let look = |task_state: Value| {
        let status = json!({ "phase": "Running", "containerStatuses": [pod::container("task1", task_state)],
            "initContainerStatuses": [
            pod::container("platform-agent", json!({ "running": { "startedAt": at(0) } })),
        ]});
        kubeflow::phase(
            &plugin(),
            &pod::python_task(),
            &HostConfig::default(),
            &pod::observed(&built, status),
            (wit::Phase::Running, 1, ""),
        )
        .unwrap()
    };
    let running = look(json!({ "running": { "startedAt": at(0) } }));
    assert_eq!(running.phase, wit::Phase::Running);
    assert_eq!(running.logs[0].name, "Kubernetes Logs (User)");
    assert_eq!(
        look(pod::terminated(0, "Completed")).phase,
        wit::Phase::Success
    );
    let failed = look(pod::terminated(2, "Error"));
    assert_eq!(failed.phase, wit::Phase::RetryableFailure);
    assert_eq!(failed.error.unwrap().code, "Error");
}

// It serves every task the pod plugin serves: it stands in for it.
#[test]
fn describes_itself() {
    testkit::assert_describes(
        &plugin(),
        "platform-sidecar",
        &[
            ("sidecar", 0),
            ("sidecar", 1),
            ("sidecar", 2),
            ("container", 0),
            ("python-task", 0),
            ("raw-container", 0),
        ],
        ("v1", "Pod", "pods"),
    );
}
