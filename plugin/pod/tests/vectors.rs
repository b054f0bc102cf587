//! The pod plugin in the wasm runtime, against the test vectors of Flyte's
//! own pod plugin (reference/flyte-operators.md §D.5) and its pod-status
//! rules (§D.4). The component is `target/plugins/pod.wasm` from `just
//! build-plugins`.
//!
//! Flyte's vectors 1, 6 and 10 also set per-execution override resources
//! (`TaskOverrides`), which the task-context does not carry: they run here
//! without them, and expect the pod's own resources where Flyte's expect
//! the override's.

use flytewasm::config::HostConfig;
use flytewasm::runtime::{CallError, Plugin, wit};
use flytewasm::testkit::kubeflow::at;
use flytewasm::testkit::{self, kubeflow, pod};
use serde_json::{Value, json};
use wit::Phase::*;

fn plugin() -> Plugin {
    testkit::plugin("pod")
}

/// The k8s config of Flyte's sidecar tests: resource tolerations for
/// storage and GPUs, default cpu 1024m and memory 1024Mi.
fn sidecar_config() -> HostConfig {
    config(json!({}))
}

fn config(extra: Value) -> HostConfig {
    let mut k8s = json!({
        "resource-tolerations": {
            "storage": [{ "key": "storage", "operator": "Exists" }],
            "nvidia.com/gpu": [{ "key": "flyte/gpu", "value": "dedicated", "operator": "Equal", "effect": "NoSchedule" }],
        },
        "default-cpus": "1024m",
        "default-memory": "1024Mi",
    });
    json_patch_merge(&mut k8s, extra);
    serde_json::from_value(json!({ "k8s": k8s })).unwrap()
}

fn json_patch_merge(base: &mut Value, extra: Value) {
    for (key, value) in extra.as_object().cloned().unwrap_or_default() {
        base[key] = value;
    }
}

fn build(template: Value, config: &HostConfig) -> Result<Value, CallError> {
    kubeflow::build(&plugin(), &pod::task(template), config)
}

fn bad_task(template: Value) -> String {
    match build(template, &sidecar_config()) {
        Err(CallError::BadTask { message, .. }) => message,
        other => panic!("expected a bad task, got {other:?}"),
    }
}

/// The pod spec of Flyte's sidecar tests: a primary container with GPU,
/// CPU and memory requests and limits and a volume mount, a secondary
/// with two GPUs, a `dshm` volume and a user toleration.
fn sidecar_pod_spec() -> Value {
    json!({
        "containers": [
            { "name": "primary container", "image": "primary:1", "args": ["pyflyte-execute", "--inputs", "{{.input}}"],
              "resources": { "limits": { "cpu": "2", "memory": "200Mi", "gpu": "1" },
                             "requests": { "cpu": "1", "memory": "100Mi", "gpu": "1" } },
              "volumeMounts": [{ "name": "volume mount", "mountPath": "/mnt" }] },
            { "name": "secondary container", "image": "secondary:1",
              "resources": { "limits": { "gpu": "2" }, "requests": { "gpu": "2" } } },
        ],
        "volumes": [{ "name": "dshm" }],
        "tolerations": [{ "key": "my toleration key", "value": "my toleration value", "operator": "Equal" }],
    })
}

fn sidecar_v2() -> Value {
    json!({
        "type": "sidecar",
        "taskTypeVersion": 2,
        "config": { "primary_container_name": "primary container" },
        "k8sPod": {
            "metadata": { "labels": { "label": "foo" }, "annotations": { "anno": "bar" } },
            "podSpec": sidecar_pod_spec(),
        },
    })
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("a `{name}` container"))
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|v| v["name"].as_str().unwrap())
        .collect()
}

/// The tolerations every sidecar vector expects: the GPU toleration the
/// config adds, and the user's own.
fn sidecar_tolerations() -> Value {
    json!([
        { "key": "flyte/gpu", "value": "dedicated", "operator": "Equal", "effect": "NoSchedule" },
        { "key": "my toleration key", "value": "my toleration value", "operator": "Equal" },
    ])
}

// §D.1, §D.6, §D.5 16: the types Flyte's pod plugin serves, at the versions
// flytekit writes; the plugin's properties are Flyte's defaults.
#[test]
fn describes_the_pod_plugin() {
    testkit::assert_describes(
        &plugin(),
        "pod",
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

// §D.5 1 (without the override): a container task keeps its command,
// renders its arguments and runs as the execution's service account.
#[test]
fn a_container_task_renders_its_arguments() {
    let pod = build(
        json!({ "type": "container", "container": { "image": "img", "command": ["command"], "args": ["{{.Input}}"] } }),
        &sidecar_config(),
    )
    .unwrap();
    let main = &pod["spec"]["containers"][0];
    assert_eq!(main["name"], "task1");
    assert_eq!(main["command"], json!(["command"]));
    assert_eq!(main["args"], json!(["s3://bucket/in/inputs.pb"]));
    assert_eq!(main["terminationMessagePolicy"], "FallbackToLogsOnError");
    assert_eq!(
        main["resources"],
        json!({ "requests": { "cpu": "1024m", "memory": "1024Mi" }, "limits": { "cpu": "1024m", "memory": "1024Mi" } })
    );
    assert_eq!(pod["spec"]["serviceAccountName"], "service-account");
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    // §G.19: a single-container task pod names its primary.
    assert_eq!(
        pod["metadata"]["annotations"],
        json!({ "primary_container_name": "task1" })
    );
}

// §D.5 2: init containers are rendered too; the pod's own service account stays.
#[test]
fn a_k8s_pod_target_renders_init_containers_and_keeps_its_service_account() {
    let spec = json!({
        "serviceAccountName": "test-service-account",
        "initContainers": [{ "name": "test-image", "image": "init", "command": ["init"], "args": ["{{.Input}}"] }],
        "containers": [{ "name": "test-image", "image": "main", "command": ["main"], "args": ["{{.Input}}"] }],
    });
    let pod = build(
        json!({ "type": "python-task", "config": { "primary_container_name": "test-image" },
                "k8sPod": { "podSpec": spec } }),
        &sidecar_config(),
    )
    .unwrap();
    assert_eq!(
        pod["spec"]["initContainers"][0]["args"],
        json!(["s3://bucket/in/inputs.pb"])
    );
    assert_eq!(
        pod["spec"]["containers"][0]["args"],
        json!(["s3://bucket/in/inputs.pb"])
    );
    assert_eq!(pod["spec"]["serviceAccountName"], "test-service-account");
}

// §D.5 3: no execution service account: the task's run-as one.
#[test]
fn without_an_execution_service_account_the_run_as_one_is_used() {
    let mut request = pod::task(json!({
        "type": "container", "container": { "image": "img" },
        "securityContext": { "runAs": { "k8sServiceAccount": "security-context-service-account" } },
    }));
    request.service_account = String::new();
    let pod = kubeflow::build(&plugin(), &request, &sidecar_config()).unwrap();
    assert_eq!(
        pod["spec"]["serviceAccountName"],
        "security-context-service-account"
    );
}

// §D.5 6 (without the override) and §G.19: a sidecar v2 task (what
// flytekitplugins-pod writes).
#[test]
fn a_sidecar_v2_task_is_its_pod_spec_configured() {
    let pod = build(sidecar_v2(), &sidecar_config()).unwrap();
    assert_eq!(
        pod["metadata"]["annotations"],
        json!({ "primary_container_name": "primary container", "anno": "bar" })
    );
    assert_eq!(pod["metadata"]["labels"], json!({ "label": "foo" }));
    assert_eq!(names(&pod["spec"]["volumes"]), ["dshm"]);
    let primary = container(&pod, "primary container");
    assert_eq!(names(&primary["volumeMounts"]), ["volume mount"]);
    assert_eq!(pod["spec"]["tolerations"], sidecar_tolerations());
    assert_eq!(
        primary["resources"],
        json!({ "requests": { "cpu": "1", "memory": "100Mi", "nvidia.com/gpu": "1" },
                "limits": { "cpu": "2", "memory": "200Mi", "nvidia.com/gpu": "1" } })
    );
    assert_eq!(
        container(&pod, "secondary container")["resources"],
        json!({ "requests": { "nvidia.com/gpu": "2" }, "limits": { "nvidia.com/gpu": "2" } })
    );
    testkit::assert_golden(env!("CARGO_MANIFEST_DIR"), "sidecar_v2_pod", &pod);
}

// §D.6: a plain `@task` as flytekit writes it.
#[test]
fn a_python_task_is_one_container() {
    let pod = kubeflow::build(&plugin(), &pod::python_task(), &HostConfig::default()).unwrap();
    assert_eq!(names(&pod["spec"]["containers"]), ["task1"]);
    assert_eq!(
        pod["spec"]["containers"][0]["resources"],
        json!({ "requests": { "cpu": "500m", "memory": "256Mi" }, "limits": { "cpu": "500m", "memory": "512Mi" } })
    );
    testkit::assert_golden(env!("CARGO_MANIFEST_DIR"), "python_task_pod", &pod);
}

// §D.5 7: a version-2 sidecar needs a pod spec.
#[test]
fn a_sidecar_v2_without_a_pod_spec_is_a_bad_task() {
    let mut template = sidecar_v2();
    template["k8sPod"] = json!({ "metadata": {} });
    assert_eq!(
        bad_task(template),
        "Pod tasks with task type version > 1 should specify their target as a K8sPod with a defined pod spec"
    );
}

fn sidecar_v1(config: Value) -> Value {
    json!({ "type": "sidecar", "taskTypeVersion": 1, "config": config, "custom": sidecar_pod_spec() })
}

// §D.5 8: a version-1 sidecar keeps a bare pod spec in custom.
#[test]
fn a_sidecar_v1_task_reads_its_pod_spec_from_custom() {
    let pod = build(
        sidecar_v1(json!({ "primary_container_name": "primary container" })),
        &sidecar_config(),
    )
    .unwrap();
    assert_eq!(
        pod["metadata"]["annotations"],
        json!({ "primary_container_name": "primary container" })
    );
    assert_eq!(pod["metadata"]["labels"], json!({}));
    assert_eq!(names(&pod["spec"]["volumes"]), ["dshm"]);
    let primary = container(&pod, "primary container");
    assert_eq!(names(&primary["volumeMounts"]), ["volume mount"]);
    assert_eq!(pod["spec"]["tolerations"], sidecar_tolerations());
    assert_eq!(
        (
            &primary["resources"]["requests"]["cpu"],
            &primary["resources"]["requests"]["memory"]
        ),
        (&json!("1"), &json!("100Mi"))
    );
    assert_eq!(
        (
            &primary["resources"]["limits"]["cpu"],
            &primary["resources"]["limits"]["memory"]
        ),
        (&json!("2"), &json!("200Mi"))
    );
}

// §D.5 9: a version-1 sidecar must name its primary container in config.
#[test]
fn a_sidecar_v1_without_a_primary_in_config_is_a_bad_task() {
    assert_eq!(
        bad_task(sidecar_v1(json!({}))),
        "invalid TaskSpecification, config needs to be non-empty and include missing [primary_container_name] key"
    );
    assert_eq!(
        bad_task(sidecar_v1(json!({ "foo": "bar" }))),
        "invalid TaskSpecification, config missing [primary_container_name] key in [map[foo:bar]]"
    );
}

/// Flyte's `testdata/sidecar_custom`: a SidecarJob.
fn sidecar_v0(primary: &str) -> Value {
    json!({ "type": "sidecar", "taskTypeVersion": 0, "custom": {
        "podSpec": {
            "restartPolicy": "OnFailure",
            "containers": [
                { "name": "a container", "image": "foo",
                  "args": ["pyflyte-execute", "--task-module", "tests.flytekit.unit.sdk.tasks.test_sidecar_tasks", "--task-name", "simple_sidecar_task", "--inputs", "{{.input}}", "--output-prefix", "{{.outputPrefix}}"],
                  "volumeMounts": [{ "mountPath": "some/where", "name": "volume mount" }],
                  "env": [{ "name": "FLYTE_INTERNAL_CONFIGURATION_PATH", "value": "flytekit.config" }] },
                { "name": "another container" },
            ],
            "volumes": [{ "name": "dshm", "emptyDir": { "medium": "Memory" } }],
            "tolerations": [{ "key": "my toleration key", "value": "my toleration value", "operator": "Equal" }],
        },
        "primaryContainerName": primary,
        "annotations": { "a1": "a1" },
        "labels": { "b1": "b1" },
    }})
}

// §D.5 10 (without the override): a version-0 sidecar is a SidecarJob.
#[test]
fn a_sidecar_v0_task_is_a_sidecar_job() {
    let pod = build(sidecar_v0("a container"), &sidecar_config()).unwrap();
    assert_eq!(
        pod["metadata"]["annotations"],
        json!({ "primary_container_name": "a container", "a1": "a1" })
    );
    assert_eq!(pod["metadata"]["labels"], json!({ "b1": "b1" }));
    assert_eq!(names(&pod["spec"]["volumes"]), ["dshm"]);
    assert_eq!(pod["spec"]["restartPolicy"], "OnFailure");
    assert_eq!(pod["spec"]["serviceAccountName"], "service-account");
    let primary = container(&pod, "a container");
    assert_eq!(names(&primary["volumeMounts"]), ["volume mount"]);
    assert_eq!(
        primary["resources"],
        json!({ "requests": { "cpu": "1024m", "memory": "1024Mi" }, "limits": { "cpu": "1024m", "memory": "1024Mi" } })
    );
    assert_eq!(
        pod["spec"]["tolerations"],
        json!([{ "key": "my toleration key", "value": "my toleration value", "operator": "Equal" }])
    );
}

// §D.5 11: a SidecarJob without labels or annotations.
#[test]
fn a_sidecar_v0_without_metadata_gets_only_the_primary_annotation() {
    let template = json!({ "type": "sidecar", "custom": {
        "podSpec": { "containers": [{ "name": "PrimaryContainer", "image": "img" }] },
        "primaryContainerName": "PrimaryContainer",
    }});
    let pod = build(template, &sidecar_config()).unwrap();
    assert_eq!(pod["metadata"]["labels"], json!({}));
    assert_eq!(
        pod["metadata"]["annotations"],
        json!({ "primary_container_name": "PrimaryContainer" })
    );
}

// §D.5 12: the named primary container must be in the pod.
#[test]
fn a_sidecar_v0_without_its_primary_container_is_a_bad_task() {
    assert_eq!(
        bad_task(sidecar_v0("no such container")),
        "invalid TaskSpecification, primary container [no such container] not defined"
    );
}

// §D.5 15: a GPU accelerator steers a pod asking for a GPU to its nodes
// (the partitioned case from the template, where Flyte's vector uses an
// override).
#[test]
fn a_gpu_accelerator_becomes_node_affinity_and_tolerations() {
    let config: HostConfig = serde_json::from_value(json!({ "k8s": {
        "gpu-device-node-label": "gpu-node-label",
        "gpu-partition-size-node-label": "gpu-partition-size",
        "gpu-resource-name": "nvidia.com/gpu",
    }}))
    .unwrap();
    let with_gpu = |gpu: Value| {
        build(
            json!({ "type": "container",
                    "container": { "image": "img", "resources": { "limits": [{ "name": "GPU", "value": "1" }] } },
                    "extendedResources": { "gpuAccelerator": gpu } }),
            &config,
        )
        .unwrap()
    };
    let terms = |pod: &Value| {
        pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"]
            .clone()
    };
    let toleration = |key: &str, value: &str| json!({ "key": key, "value": value, "operator": "Equal", "effect": "NoSchedule" });

    let pod = with_gpu(json!({ "device": "nvidia-tesla-t4" }));
    assert_eq!(
        terms(&pod),
        json!([{ "matchExpressions": [{ "key": "gpu-node-label", "operator": "In", "values": ["nvidia-tesla-t4"] }] }])
    );
    assert_eq!(
        pod["spec"]["tolerations"],
        json!([toleration("gpu-node-label", "nvidia-tesla-t4")])
    );

    let pod = with_gpu(json!({ "device": "nvidia-tesla-a100", "partitionSize": "1g.5gb" }));
    assert_eq!(
        terms(&pod),
        json!([{ "matchExpressions": [
            { "key": "gpu-node-label", "operator": "In", "values": ["nvidia-tesla-a100"] },
            { "key": "gpu-partition-size", "operator": "In", "values": ["1g.5gb"] },
        ] }])
    );
    assert_eq!(
        pod["spec"]["tolerations"],
        json!([
            toleration("gpu-node-label", "nvidia-tesla-a100"),
            toleration("gpu-partition-size", "1g.5gb")
        ])
    );
}

// ---- Status → phase (§D.4) ----

/// A two-container pod (`Primary` and a `sidecar`), annotated with its
/// primary when `primary` is set.
fn observed(primary: Option<&str>, status: Value) -> Value {
    let mut spec = json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "annotations": {} },
                           "spec": { "containers": [{ "name": "Primary" }, { "name": "sidecar" }] } });
    if let Some(primary) = primary {
        spec["metadata"]["annotations"]["primary_container_name"] = json!(primary);
    }
    pod::observed(&spec, status)
}

fn phase_with(config: &HostConfig, pod: &Value) -> wit::PhaseInfo {
    kubeflow::phase(&plugin(), &pod::python_task(), config, pod, (Queued, 0, "")).unwrap()
}

fn phase(pod: &Value) -> wit::PhaseInfo {
    phase_with(&HostConfig::default(), pod)
}

fn error(info: &wit::PhaseInfo) -> (String, String, wit::ErrorKind) {
    let error = info.error.clone().expect("a failure carries an error");
    (error.code, error.message, error.kind)
}

fn running(name: &str) -> Value {
    pod::container(name, json!({ "running": { "startedAt": at(0) } }))
}

fn waiting(name: &str, reason: &str) -> Value {
    pod::container(
        name,
        json!({ "waiting": { "reason": reason, "message": format!("{reason} message") } }),
    )
}

/// A Pending pod whose Ready condition turned False `minutes` ago, with
/// one container waiting for `reason`.
fn pending_with(reason: &str, minutes: i64) -> Value {
    observed(
        None,
        json!({ "phase": "Pending", "conditions": [
            { "type": "PodScheduled", "status": "True", "lastTransitionTime": at(minutes) },
            { "type": "Ready", "status": "False", "reason": "ContainersNotReady",
              "message": "containers with unready status: [Primary]", "lastTransitionTime": at(minutes) },
        ], "containerStatuses": [waiting("Primary", reason)] }),
    )
}

// §D.5 4: a container task's pod (no annotation).
#[test]
fn a_container_pods_phase_follows_the_pod() {
    let info = phase(&observed(
        None,
        json!({ "phase": "Running", "containerStatuses": [running("Primary")] }),
    ));
    assert_eq!(info.phase, Running);
    assert_eq!(
        phase(&observed(None, json!({ "phase": "Pending" }))).phase,
        Queued
    );

    let info = phase(&observed(None, json!({ "phase": "Failed" })));
    assert_eq!(info.phase, RetryableFailure);
    assert_eq!(
        error(&info),
        (
            "Interrupted".into(),
            "Pod failed. No message received from kubernetes.".into(),
            wit::ErrorKind::System
        )
    );

    let info = phase(&observed(
        None,
        json!({ "phase": "Failed", "reason": "Unschedulable", "message": "some message" }),
    ));
    assert_eq!(info.phase, RetryableFailure);
    assert_eq!(
        error(&info),
        (
            "Unschedulable".into(),
            "some message".into(),
            wit::ErrorKind::User
        )
    );

    let done = pod::container("Primary", pod::terminated(0, "Completed"));
    let info = phase(&observed(
        None,
        json!({ "phase": "Running", "containerStatuses": [done.clone(), pod::container("sidecar", pod::terminated(0, "Completed"))] }),
    ));
    assert_eq!(info.phase, Success, "every container exited 0");
    assert_eq!(
        phase(&observed(None, json!({ "phase": "Succeeded" }))).phase,
        Success
    );
}

// §D.5 5: an invalid image name fails the task at once, as the user's error.
#[test]
fn an_invalid_image_name_fails_permanently() {
    let pod = observed(
        None,
        json!({ "phase": "Pending", "conditions": [{ "type": "Ready", "status": "False" }],
                "containerStatuses": [pod::container("Primary", json!({ "waiting": { "reason": "InvalidImageName", "message": "M" } }))] }),
    );
    let info = phase(&pod);
    assert_eq!(info.phase, PermanentFailure);
    assert_eq!(
        error(&info),
        (
            "|InvalidImageName".into(),
            "|M".into(),
            wit::ErrorKind::User
        )
    );
    assert!(info.cleanup_on_failure);
}

// §D.5 13: with a primary annotation, the pod's end phases still decide.
#[test]
fn an_annotated_pods_end_phases_decide() {
    let p = Some("PrimaryContainer");
    assert_eq!(
        phase(&observed(p, json!({ "phase": "Succeeded" }))).phase,
        Success
    );
    assert_eq!(
        phase(&observed(p, json!({ "phase": "Failed" }))).phase,
        RetryableFailure
    );
    let info = phase(&observed(p, json!({ "phase": "Unschedulable" })));
    assert_eq!(
        (info.phase, info.reason.as_str()),
        (Queued, "pod unschedulable")
    );
}

// §D.5 14: a running pod's primary container decides; sidecars are ignored.
#[test]
fn the_primary_container_decides_a_running_pod() {
    let p = Some("Primary");
    let with = |primary: Value| {
        phase(&observed(
            p,
            json!({ "phase": "Running", "containerStatuses": [primary, running("sidecar")] }),
        ))
    };
    let info = with(pod::container("Primary", pod::terminated(1, "Error")));
    assert_eq!(info.phase, RetryableFailure);
    assert_eq!(
        error(&info),
        (
            "Error".into(),
            "\r\n[Primary] terminated with exit code (1). Reason [Error]. Message: \n.".into(),
            wit::ErrorKind::User
        )
    );
    assert_eq!(
        with(pod::container("Primary", pod::terminated(0, "Completed"))).phase,
        Success,
        "the sidecar still runs"
    );
    assert_eq!(with(waiting("Primary", "ContainerCreating")).phase, Running);

    let mut missing = observed(
        p,
        json!({ "phase": "Running", "containerStatuses": [running("sidecar")] }),
    );
    assert_eq!(phase(&missing).phase, Running, "declared, not yet reported");
    missing["spec"]["containers"] = json!([{ "name": "sidecar" }]);
    let info = phase(&missing);
    assert_eq!(info.phase, PermanentFailure);
    assert_eq!(error(&info).0, "PrimaryContainerNotFound");
}

// §D.4: an image pull backing off is initializing for its grace period
// (3m), then a retryable failure that cleans the pod up.
#[test]
fn an_image_pull_backoff_fails_after_its_grace_period() {
    let info = phase(&pending_with("ImagePullBackOff", -1));
    assert_eq!(info.phase, Initializing);
    assert_eq!(
        info.reason,
        "[ContainersNotReady|ImagePullBackOff]: containers with unready status: [Primary]|ImagePullBackOff message"
    );
    let info = phase(&pending_with("ImagePullBackOff", -4));
    assert_eq!(info.phase, RetryableFailure);
    assert!(info.cleanup_on_failure);
    assert_eq!(
        error(&info),
        (
            "ContainersNotReady|ImagePullBackOff".into(),
            "Grace period [3m0s] exceeded|containers with unready status: [Primary]|ImagePullBackOff message".into(),
            wit::ErrorKind::User
        )
    );
    // A longer configured grace period keeps it initializing.
    let patient = config(json!({ "image-pull-backoff-grace-period": "10m" }));
    assert_eq!(
        phase_with(&patient, &pending_with("ImagePullBackOff", -4)).phase,
        Initializing
    );
}

// §D.4: pulling and creating are initializing.
#[test]
fn pulling_and_creating_are_initializing() {
    for reason in ["ErrImagePull", "ContainerCreating", "PodInitializing"] {
        assert_eq!(
            phase(&pending_with(reason, -30)).phase,
            Initializing,
            "{reason}"
        );
    }
}

// §D.4: CreateContainerError has a 3m grace period, CreateContainerConfigError none.
#[test]
fn container_creation_errors_fail_permanently_after_their_grace_periods() {
    assert_eq!(
        phase(&pending_with("CreateContainerError", -1)).phase,
        Initializing
    );
    let info = phase(&pending_with("CreateContainerError", -4));
    assert_eq!(info.phase, PermanentFailure);
    assert!(info.cleanup_on_failure);
    assert_eq!(error(&info).0, "ContainersNotReady|CreateContainerError");

    let info = phase(&pending_with("CreateContainerConfigError", 0));
    assert_eq!(info.phase, PermanentFailure);
    assert!(
        error(&info).1.starts_with("Grace period [0s] exceeded|"),
        "{}",
        error(&info).1
    );
}

// §D.4: a waiting reason Flyte does not know fails at once, as the platform's error.
#[test]
fn an_unknown_waiting_reason_is_a_system_failure() {
    let info = phase(&pending_with("SomethingOdd", 0));
    assert_eq!(info.phase, RetryableFailure);
    assert!(info.cleanup_on_failure);
    assert_eq!(
        (error(&info).0, error(&info).2),
        (
            "ContainersNotReady|SomethingOdd".into(),
            wit::ErrorKind::System
        )
    );
}

// §D.4: an OOM kill fails the task even when the pod says it succeeded.
#[test]
fn an_oom_kill_is_a_retryable_user_failure() {
    let oom = pod::container("Primary", pod::terminated(137, "OOMKilled"));
    let info = phase(&observed(
        None,
        json!({ "phase": "Succeeded", "containerStatuses": [oom.clone()] }),
    ));
    assert_eq!(info.phase, RetryableFailure);
    assert_eq!(
        error(&info),
        (
            "OOMKilled".into(),
            "Pod reported success despite being OOMKilled".into(),
            wit::ErrorKind::User
        )
    );
    let info = phase(&observed(
        Some("Primary"),
        json!({ "phase": "Failed", "reason": "Error", "containerStatuses": [oom] }),
    ));
    assert_eq!(info.phase, RetryableFailure);
    let (code, message, kind) = error(&info);
    assert_eq!((code.as_str(), kind), ("OOMKilled", wit::ErrorKind::User));
    assert!(
        message.ends_with(
            "\r\n[Primary] terminated with exit code (137). Reason [OOMKilled]. Message: \n."
        ),
        "{message}"
    );
}

// §D.4: a killed primary (exit 137) is the platform's failure, a killed sidecar the user's.
#[test]
fn a_killed_primary_is_a_system_failure() {
    let killed = |name: &str| {
        observed(
            Some("Primary"),
            json!({ "phase": "Failed", "reason": "Error", "message": "killed",
                    "containerStatuses": [pod::container(name, pod::terminated(137, "Error"))] }),
        )
    };
    let (code, _, kind) = error(&phase(&killed("Primary")));
    assert_eq!(
        (code.as_str(), kind),
        ("Interrupted", wit::ErrorKind::System)
    );
    let (code, _, kind) = error(&phase(&killed("sidecar")));
    assert_eq!((code.as_str(), kind), ("Interrupted", wit::ErrorKind::User));
}

// §D.4: an evicted pod is the user's failure; a node shutdown the platform's.
#[test]
fn evictions_and_node_shutdowns() {
    let failed = |reason: &str| {
        phase(&observed(
            None,
            json!({ "phase": "Failed", "reason": reason, "message": format!("the node said {reason}") }),
        ))
    };
    assert_eq!(
        error(&failed("Evicted")),
        (
            "Evicted".into(),
            "the node said Evicted".into(),
            wit::ErrorKind::User
        )
    );
    for reason in ["NodeShutdown", "Terminated", "Shutdown", "NodeAffinity"] {
        let (code, message, kind) = error(&failed(reason));
        assert_eq!(
            (code.as_str(), message, kind),
            (
                "Interrupted",
                format!("the node said {reason}"),
                wit::ErrorKind::System
            ),
            "{reason}"
        );
    }
}

// §D.4: an unschedulable pod is queued with the scheduler's words.
#[test]
fn an_unschedulable_pod_is_queued() {
    let pod = observed(
        None,
        json!({ "phase": "Pending", "conditions": [{ "type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/3 nodes are available", "lastTransitionTime": at(0) }] }),
    );
    let info = phase(&pod);
    assert_eq!(
        (info.phase, info.reason.as_str()),
        (Queued, "Unschedulable:0/3 nodes are available")
    );
    let info = phase(&observed(None, json!({ "phase": "Unschedulable" })));
    assert_eq!(
        (info.phase, info.reason.as_str()),
        (Queued, "pod unschedulable")
    );
}

// §D.4: pending longer than `pod-pending-timeout` fails; no timeout by default.
#[test]
fn a_pod_pending_past_its_timeout_fails() {
    let pod = observed(
        None,
        json!({ "phase": "Pending", "conditions": [{ "type": "PodScheduled", "status": "True", "lastTransitionTime": at(-10) }] }),
    );
    let info = phase(&pod);
    assert_eq!((info.phase, info.reason.as_str()), (Queued, "Scheduling"));
    let strict = config(json!({ "pod-pending-timeout": "5m" }));
    let info = phase_with(&strict, &pod);
    assert_eq!(info.phase, RetryableFailure);
    assert!(info.cleanup_on_failure);
    assert_eq!(error(&info).0, "PodPendingTimeout");
    let lenient = config(json!({ "pod-pending-timeout": "1h" }));
    assert_eq!(phase_with(&lenient, &pod).phase, Queued);
}

// §D.4 TaskInfo: the first container's logs, named ` (User)`, make Running version 1.
#[test]
fn a_running_pod_links_its_logs() {
    let pod = observed(
        None,
        json!({ "phase": "Running", "containerStatuses": [running("Primary")] }),
    );
    let info = phase(&pod);
    assert_eq!((info.phase, info.version), (Running, 1));
    let links: Vec<(String, String)> = info.logs.into_iter().map(|l| (l.name, l.uri)).collect();
    assert_eq!(
        links,
        [(
            "Kubernetes Logs (User)".to_owned(),
            "http://localhost:30082/#!/log/tests/task1/pod?namespace=tests".to_owned()
        )]
    );
    // The global log config is the plugin's `logs`.
    let custom: HostConfig = serde_json::from_value(json!({ "plugins": { "pod": { "logs": {
        "templates": [{ "displayName": "Container", "templateUris": ["https://logs/{{ .podName }}/{{ .containerName }}"] }] } } } }))
    .unwrap();
    let info = phase_with(&custom, &pod);
    assert_eq!(info.logs.len(), 1);
    assert_eq!(
        (info.logs[0].name.as_str(), info.logs[0].uri.as_str()),
        ("Container (User)", "https://logs/task1/Primary")
    );
}

// §0.3.5: a new reason in the same phase is a new version.
#[test]
fn a_new_reason_bumps_the_version() {
    let pod = observed(None, json!({ "phase": "Pending" }));
    let info = kubeflow::phase(
        &plugin(),
        &pod::python_task(),
        &HostConfig::default(),
        &pod,
        (Queued, 0, "task submitted to K8s"),
    )
    .unwrap();
    assert_eq!((info.phase, info.version), (Queued, 1));
}

// §D.3: the pod plugin skips the extended-resource tolerations of the
// common builder (Flyte's pod plugin configures the raw pod directly).
#[test]
fn no_tolerations_are_added_for_extended_resources() {
    let config: HostConfig = serde_json::from_value(
        json!({ "k8s": { "add-tolerations-for-extended-resources": ["nvidia.com/gpu"] } }),
    )
    .unwrap();
    let pod = build(
        json!({ "type": "container",
                "container": { "image": "img", "resources": { "limits": [{ "name": "GPU", "value": "1" }] } } }),
        &config,
    )
    .unwrap();
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
        "1"
    );
    assert!(pod["spec"].get("tolerations").is_none(), "{}", pod["spec"]);
}
