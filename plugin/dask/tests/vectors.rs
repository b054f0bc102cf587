//! The Dask plugin in the wasm runtime, against the test vectors of Flyte's
//! own plugin (reference/flyte-operators.md §C.6) and flytekit's (§E.5).
//! The component is `target/plugins/dask.wasm` from `just build-plugins`.
//!
//! Every §C.6 vector (1–12) is expressed. Where Flyte's test asserts an
//! empty `nodeSelector` or `affinity` object, the plugin leaves the field
//! out (the SDK's pod builder writes nothing for nothing): the tests accept
//! either.

use std::collections::BTreeMap;

use flytewasm::config::HostConfig;
use flytewasm::executor::TaskRequest;
use flytewasm::runtime::{Plugin, wit};
use flytewasm::testkit::{self, gpu_accelerator, kubeflow};
use flytewasm_proto::flyteidl::core::{
    Container, KeyValuePair, Resources, TaskTemplate, resources::ResourceName,
    task_template::Target,
};
use serde_json::{Value, json};

use ResourceName::{Cpu, Memory};

fn plugin() -> Plugin {
    testkit::plugin("dask")
}

/// The fixture's custom: scheduler and workers (10 of them) with `image`
/// and `resources` (flyteidl `Resources` JSON).
fn custom(image: &str, resources: Value) -> Value {
    json!({
        "scheduler": { "image": image, "resources": resources },
        "workers": { "numberOfWorkers": 10, "image": image, "resources": resources },
    })
}

/// The fixture's task: image `image://`, args `[execute-dask-task]`, env
/// `Env_Var=Env_Val`, the task's ("override") resources; object
/// `some-acceptable-name` with execution labels and annotations.
fn task(
    custom: Value,
    requests: &[(ResourceName, &str)],
    limits: &[(ResourceName, &str)],
    interruptible: bool,
) -> TaskRequest {
    TaskRequest {
        template: TaskTemplate {
            r#type: "dask".into(),
            custom: Some(serde_json::from_value(custom).expect("a JSON object")),
            target: Some(Target::Container(Container {
                image: "image://".into(),
                args: vec!["execute-dask-task".into()],
                env: vec![KeyValuePair {
                    key: "Env_Var".into(),
                    value: "Env_Val".into(),
                }],
                resources: Some(Resources {
                    requests: kubeflow::entries(requests),
                    limits: kubeflow::entries(limits),
                }),
                ..Default::default()
            })),
            ..Default::default()
        },
        namespace: "dask-namespace".into(),
        name: Some("some-acceptable-name".into()),
        labels: BTreeMap::from([("label-1".into(), "val1".into())]),
        annotations: BTreeMap::from([("annotation-1".into(), "val1".into())]),
        interruptible,
        max_attempts: 1,
        ..Default::default()
    }
}

/// The happy path's task (§C.6 1): requests cpu 2 / memory 8G, limits cpu 8
/// / memory 17G, no custom image or resources.
fn happy_task() -> TaskRequest {
    task(
        custom("", json!({})),
        &[(Cpu, "2"), (Memory, "8G")],
        &[(Cpu, "8"), (Memory, "17G")],
        false,
    )
}

/// The fixture's platform: task defaults cpu 4 / memory 10G, limits cpu 10
/// / memory 24G, plus `k8s` settings.
fn config(k8s: Value) -> HostConfig {
    let mut all = json!({ "k8s": { "task-resources": {
        "defaults": { "cpu": "4", "memory": "10G" },
        "limits": { "cpu": "10", "memory": "24G" },
    } } });
    json_merge(&mut all["k8s"], &k8s);
    serde_json::from_value(all).unwrap()
}

fn json_merge(into: &mut Value, from: &Value) {
    for (key, value) in from.as_object().into_iter().flatten() {
        into[key] = value.clone();
    }
}

fn build(request: &TaskRequest, config: &HostConfig) -> Value {
    kubeflow::build(&plugin(), request, config).unwrap()
}

fn runner(job: &Value) -> &Value {
    &job["spec"]["job"]["spec"]
}

fn scheduler(job: &Value) -> &Value {
    &job["spec"]["cluster"]["spec"]["scheduler"]["spec"]
}

fn workers(job: &Value) -> &Value {
    &job["spec"]["cluster"]["spec"]["worker"]["spec"]
}

/// The one container of a pod spec, checked to be named `name`.
fn container<'a>(spec: &'a Value, name: &str) -> &'a Value {
    let containers = spec["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(containers[0]["name"], name);
    &containers[0]
}

fn resources(requests: Value, limits: Value) -> Value {
    json!({ "requests": requests, "limits": limits })
}

/// Absent, or an empty object (Flyte's tests compare with `{}`).
fn is_empty(value: &Value) -> bool {
    value.is_null() || value.as_object().is_some_and(|o| o.is_empty())
}

fn worker_args(job: &Value) -> Vec<String> {
    serde_json::from_value(container(workers(job), "dask-worker")["args"].clone()).unwrap()
}

fn flyteidl_resources(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Value {
    let entries = |items: &[(&str, &str)]| -> Value {
        items
            .iter()
            .map(|(name, value)| json!({ "name": name, "value": value }))
            .collect()
    };
    json!({ "requests": entries(requests), "limits": entries(limits) })
}

// §C.6 1: the happy path.
#[test]
fn the_runner_scheduler_and_workers_start_from_the_task_pod() {
    let job = build(&happy_task(), &config(json!({})));
    assert_eq!(
        (job["apiVersion"].as_str(), job["kind"].as_str()),
        (Some("kubernetes.dask.org/v1"), Some("DaskJob"))
    );
    let labels = json!({ "label-1": "val1" });
    // The execution's, and the platform's default (Flyte's `default-annotations`).
    let annotations = json!({ "annotation-1": "val1", "cluster-autoscaler.kubernetes.io/safe-to-evict": "false" });
    for meta in [&job["metadata"], &job["spec"]["cluster"]["metadata"]] {
        assert_eq!(meta["labels"], labels);
        assert_eq!(meta["annotations"], annotations);
    }
    let task_resources = resources(
        json!({ "cpu": "2", "memory": "8G" }),
        json!({ "cpu": "8", "memory": "17G" }),
    );
    let has_env_var = |c: &Value| {
        c["env"]
            .as_array()
            .unwrap()
            .contains(&json!({ "name": "Env_Var", "value": "Env_Val" }))
    };

    let spec = runner(&job);
    assert_eq!(spec["restartPolicy"], "Never");
    let c = container(spec, "job-runner");
    assert_eq!(c["image"], "image://");
    assert_eq!(c["args"], json!(["execute-dask-task"]));
    assert_eq!(c["resources"], task_resources);
    assert!(has_env_var(c));
    for spec in [runner(&job), scheduler(&job)] {
        assert!(spec["tolerations"].is_null());
        assert!(is_empty(&spec["nodeSelector"]) && is_empty(&spec["affinity"]));
    }

    let spec = scheduler(&job);
    assert_eq!(spec["restartPolicy"], "Always");
    let c = container(spec, "scheduler");
    assert_eq!(c["image"], "image://");
    assert_eq!(c["resources"], task_resources);
    assert_eq!(c["args"], json!(["dask-scheduler"]));
    assert_eq!(
        c["ports"],
        json!([
            { "name": "tcp-comm", "containerPort": 8786, "protocol": "TCP" },
            { "name": "dashboard", "containerPort": 8787, "protocol": "TCP" },
        ])
    );
    assert!(has_env_var(c));
    assert_eq!(
        job["spec"]["cluster"]["spec"]["scheduler"]["service"],
        json!({
            "type": "NodePort",
            "selector": { "dask.org/cluster-name": "some-acceptable-name", "dask.org/component": "scheduler" },
            "ports": [
                { "name": "tcp-comm", "protocol": "TCP", "port": 8786, "targetPort": "tcp-comm" },
                { "name": "dashboard", "protocol": "TCP", "port": 8787, "targetPort": "dashboard" },
            ],
        })
    );

    assert_eq!(job["spec"]["cluster"]["spec"]["worker"]["replicas"], 10);
    let spec = workers(&job);
    assert_eq!(spec["restartPolicy"], "Always");
    let c = container(spec, "dask-worker");
    assert_eq!(c["image"], "image://");
    assert_eq!(c["resources"], task_resources);
    assert_eq!(
        worker_args(&job),
        [
            "dask-worker",
            "--name",
            "$(DASK_WORKER_NAME)",
            "--nthreads",
            "8",
            "--memory-limit",
            "17G"
        ]
    );
}

// §C.6 2: the custom image is the scheduler's and the workers', never the runner's.
#[test]
fn a_custom_image_is_for_the_scheduler_and_the_workers() {
    let job = build(
        &task(custom("customImage", json!({})), &[], &[], false),
        &config(json!({})),
    );
    assert_eq!(container(runner(&job), "job-runner")["image"], "image://");
    assert_eq!(
        container(scheduler(&job), "scheduler")["image"],
        "customImage"
    );
    assert_eq!(
        container(workers(&job), "dask-worker")["image"],
        "customImage"
    );
}

// §C.6 3: a missing memory request takes the limit; threads are whole CPUs.
#[test]
fn a_missing_request_takes_its_limit() {
    let job = build(
        &task(
            custom("", json!({})),
            &[(Cpu, "1")],
            &[(Cpu, "2"), (Memory, "2G")],
            false,
        ),
        &config(json!({})),
    );
    let expected = resources(
        json!({ "cpu": "1", "memory": "2G" }),
        json!({ "cpu": "2", "memory": "2G" }),
    );
    assert_eq!(container(runner(&job), "job-runner")["resources"], expected);
    assert_eq!(
        container(scheduler(&job), "scheduler")["resources"],
        expected
    );
    assert_eq!(
        container(workers(&job), "dask-worker")["resources"],
        expected
    );
    assert_eq!(
        worker_args(&job)[3..],
        ["--nthreads", "2", "--memory-limit", "2G"]
    );
}

// §C.6 4: a limit above the platform's is held to it.
#[test]
fn limits_are_held_to_the_platform_limits() {
    let job = build(
        &task(
            custom("", json!({})),
            &[(Cpu, "1"), (Memory, "2G")],
            &[(Cpu, "16")],
            false,
        ),
        &config(json!({})),
    );
    assert_eq!(
        container(workers(&job), "dask-worker")["resources"],
        resources(
            json!({ "cpu": "1", "memory": "2G" }),
            json!({ "cpu": "10", "memory": "2G" })
        )
    );
    assert_eq!(
        worker_args(&job)[3..],
        ["--nthreads", "10", "--memory-limit", "2G"]
    );
}

// §C.6 5: the custom resources replace the task's, completed by the platform.
#[test]
fn custom_resources_replace_the_tasks_for_the_scheduler_and_the_workers() {
    let own = flyteidl_resources(&[("CPU", "5")], &[("CPU", "10"), ("MEMORY", "15G")]);
    let job = build(
        &task(
            custom("", own),
            &[(Cpu, "1")],
            &[(Cpu, "2"), (Memory, "2G")],
            false,
        ),
        &config(json!({})),
    );
    assert_eq!(
        container(runner(&job), "job-runner")["resources"],
        resources(
            json!({ "cpu": "1", "memory": "2G" }),
            json!({ "cpu": "2", "memory": "2G" })
        )
    );
    let own = resources(
        json!({ "cpu": "5", "memory": "15G" }),
        json!({ "cpu": "10", "memory": "15G" }),
    );
    assert_eq!(container(scheduler(&job), "scheduler")["resources"], own);
    assert_eq!(container(workers(&job), "dask-worker")["resources"], own);
    assert_eq!(
        worker_args(&job)[3..],
        ["--nthreads", "10", "--memory-limit", "15G"]
    );
}

// §C.6 6, §G.18: only the workers are interruptible.
#[test]
fn only_the_workers_of_an_interruptible_task_are_interruptible() {
    let requirement = json!({ "key": "x/interruptible", "operator": "In", "values": ["true"] });
    let toleration = json!({ "key": "x/flyte", "value": "interruptible", "operator": "Equal", "effect": "NoSchedule" });
    let config = config(json!({
        "interruptible-node-selector": { "x/interruptible": "true" },
        "interruptible-node-selector-requirement": requirement,
        "interruptible-tolerations": [toleration],
    }));
    let mut request = happy_task();
    request.interruptible = true;
    let job = build(&request, &config);
    for spec in [runner(&job), scheduler(&job)] {
        assert!(spec["tolerations"].is_null(), "{spec}");
        assert!(is_empty(&spec["nodeSelector"]) && is_empty(&spec["affinity"]));
    }
    let spec = workers(&job);
    assert_eq!(spec["tolerations"], json!([toleration]));
    assert_eq!(spec["nodeSelector"], json!({ "x/interruptible": "true" }));
    assert_eq!(
        spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"][0],
        requirement
    );
}

// §C.6 7: the task's base PodTemplate is under every pod.
#[test]
fn the_base_pod_template_is_under_every_pod() {
    let mut request = happy_task();
    request.base_pod_template = Some(json!({
        "metadata": { "name": "dask-dummy-pod-template-name" },
        "spec": { "priorityClassName": "pod-template-priority-class-name",
                  "containers": [{ "name": "default", "image": "unused" }] },
    }));
    let job = build(&request, &config(json!({})));
    for spec in [runner(&job), scheduler(&job), workers(&job)] {
        assert_eq!(
            spec["priorityClassName"], "pod-template-priority-class-name",
            "{spec}"
        );
    }
}

// §C.6 8 (with §A.5 PyTorch 4's configuration): a GPU accelerator steers
// every pod to its nodes.
#[test]
fn a_gpu_accelerator_steers_every_pod() {
    let config = config(gpu_accelerator::k8s());
    let with_gpu = |device: &str, partition: Option<&str>| {
        let mut request = task(
            custom("", json!({})),
            &[(Cpu, "1")],
            &[(Cpu, "2"), (ResourceName::Gpu, "1")],
            false,
        );
        gpu_accelerator::ask(&mut request, device, partition);
        build(&request, &config)
    };
    for (device, partition) in [
        ("nvidia-tesla-t4", None),
        ("nvidia-tesla-a100", Some("1g.5gb")),
    ] {
        let job = with_gpu(device, partition);
        for (which, spec) in [
            ("runner", runner(&job)),
            ("scheduler", scheduler(&job)),
            ("workers", workers(&job)),
        ] {
            gpu_accelerator::assert_steered(spec, device, partition, true, which);
        }
    }
}

// §C.6 9, §C.1: the plugin, its task type and kind; Flyte's default properties.
#[test]
fn describes_itself_like_flytes_dask_plugin() {
    testkit::assert_describes(
        &plugin(),
        "dask",
        &[("dask", 0)],
        ("kubernetes.dask.org/v1", "DaskJob", "daskjobs"),
    );
}

/// The job the operator reports with `status`.
fn observed(status: Value) -> Value {
    let mut job = build(&happy_task(), &config(json!({})));
    job["metadata"]["name"] = json!("some-acceptable-name");
    job["metadata"]["namespace"] = json!("dask-namespace");
    job["status"] = status;
    job
}

fn phase(job: &Value, config: &HostConfig, previous: (wit::Phase, u32, &str)) -> wit::PhaseInfo {
    kubeflow::phase(&plugin(), &happy_task(), config, job, previous).unwrap()
}

// §C.6 10, §C.4, §C.5: jobStatus → phase, with a link to the runner pod.
#[test]
fn job_statuses_map_to_phases_with_the_runner_logs() {
    use wit::Phase::*;
    let runner_link = "http://localhost:30082/#!/log/dask-namespace/some-acceptable-name-runner/pod?namespace=dask-namespace";
    for (status, expected, reason) in [
        ("", Initializing, "unknown"),
        ("JobCreated", Initializing, "job created"),
        ("ClusterCreated", Initializing, "cluster created"),
        ("Running", Running, ""),
        ("Successful", Success, ""),
        ("Failed", RetryableFailure, "Dask Job failed"),
        // Unknown statuses are the job still running, never an error.
        ("Rescheduling", Running, ""),
    ] {
        let job = observed(
            json!({ "jobStatus": status, "jobRunnerPodName": "some-acceptable-name-runner" }),
        );
        let info = phase(&job, &HostConfig::default(), (Initializing, 0, reason));
        assert_eq!(
            (info.phase, info.reason.as_str(), info.version),
            (expected, reason, 0),
            "{status}"
        );
        let links: Vec<(&str, &str)> = info
            .logs
            .iter()
            .map(|l| (l.name.as_str(), l.uri.as_str()))
            .collect();
        assert_eq!(
            links,
            [("Kubernetes Logs(Dask Runner Logs)", runner_link)],
            "{status}"
        );
    }
    let failed = phase(
        &observed(json!({ "jobStatus": "Failed" })),
        &HostConfig::default(),
        (Running, 0, ""),
    );
    let error = failed.error.unwrap();
    assert_eq!(
        (error.code.as_str(), error.message.as_str(), error.kind),
        (
            "DownstreamSystemError",
            "Dask Job failed",
            wit::ErrorKind::User
        )
    );

    // No status at all yet, and no runner pod: the pod name stays a placeholder (§G.5).
    let mut fresh = observed(json!(null));
    fresh.as_object_mut().unwrap().remove("status");
    let info = phase(&fresh, &HostConfig::default(), (Initializing, 0, "unknown"));
    assert_eq!(
        (info.phase, info.reason.as_str()),
        (Initializing, "unknown")
    );
    assert_eq!(
        info.logs[0].uri,
        "http://localhost:30082/#!/log/dask-namespace/{{ .podName }}/pod?namespace=dask-namespace"
    );
}

// §C.6 11, §0.3.5: only the reason changed, so a new version.
#[test]
fn a_new_reason_in_the_same_phase_bumps_the_version() {
    let job = observed(json!({ "jobStatus": "JobCreated" }));
    let info = phase(
        &job,
        &HostConfig::default(),
        (wit::Phase::Initializing, 0, "task submitted to K8s"),
    );
    assert_eq!((info.phase, info.version), (wit::Phase::Initializing, 1));
}

// §C.6 12: `plugins.dask.logs` with only a dynamic link, which the task turns on.
#[test]
fn dynamic_log_links_use_the_task_config() {
    let config: HostConfig = serde_json::from_value(json!({ "plugins": { "dask": { "logs": {
        "dynamic-log-links": { "test-dynamic-link": {
            "templateUris": ["https://some-service.com/{{.taskConfig.dynamicParam}}"] } } } } } }))
    .unwrap();
    let mut request = happy_task();
    request.template.config = [
        ("link_type".to_owned(), "test-dynamic-link".to_owned()),
        ("dynamicParam".to_owned(), "dynamic-value".to_owned()),
    ]
    .into();
    let job = observed(json!({ "jobStatus": "Running", "jobRunnerPodName": "r" }));
    let info = kubeflow::phase(
        &plugin(),
        &request,
        &config,
        &job,
        (wit::Phase::Running, 0, ""),
    )
    .unwrap();
    let uris: Vec<&str> = info.logs.iter().map(|l| l.uri.as_str()).collect();
    assert_eq!(uris, ["https://some-service.com/dynamic-value"]);
}

// §E.5 1: flytekit's `Dask()` (a worker, no resources of its own).
#[test]
fn flytekits_default_dask_config_is_one_worker_with_the_tasks_resources() {
    let job = build(
        &task(
            json!({ "scheduler": { "resources": {} }, "workers": { "numberOfWorkers": 1, "resources": {} } }),
            &[(Cpu, "2")],
            &[(Cpu, "2"), (Memory, "1.5Gi")],
            false,
        ),
        &config(json!({})),
    );
    assert_eq!(job["spec"]["cluster"]["spec"]["worker"]["replicas"], 1);
    // The memory limit as Kubernetes writes it (§G.17).
    assert_eq!(
        worker_args(&job)[3..],
        ["--nthreads", "2", "--memory-limit", "1536Mi"]
    );
    assert_eq!(
        container(scheduler(&job), "scheduler")["resources"]["limits"],
        json!({ "cpu": "2", "memory": "1.5Gi" })
    );
}

// §E.5 2, §G.17: fractional CPUs round up to whole threads.
#[test]
fn fractional_cpu_limits_round_up_to_threads() {
    let own = flyteidl_resources(&[("CPU", "3")], &[("CPU", "3500m"), ("MEMORY", "1000M")]);
    let mut custom = custom("dask_cluster:latest", own);
    custom["workers"]["numberOfWorkers"] = json!(123);
    let job = build(&task(custom, &[], &[], false), &config(json!({})));
    assert_eq!(job["spec"]["cluster"]["spec"]["worker"]["replicas"], 123);
    assert_eq!(
        worker_args(&job)[3..],
        ["--nthreads", "4", "--memory-limit", "1G"]
    );
}

#[test]
fn bad_custom_configs_are_bad_tasks() {
    let mut request = happy_task();
    request.template.custom = None;
    let err = kubeflow::build(&plugin(), &request, &config(json!({}))).unwrap_err();
    assert!(err.is_bad_task(), "{err}");
    assert!(err.to_string().contains("TaskTemplate.custom"), "{err}");

    let mut bad = custom("", json!({}));
    bad["scheduler"]["resources"] = flyteidl_resources(&[], &[("MEMORY", "lots")]);
    let err =
        kubeflow::build(&plugin(), &task(bad, &[], &[], false), &config(json!({}))).unwrap_err();
    assert!(err.is_bad_task(), "{err}");
    assert!(
        err.to_string()
            .contains("TaskTemplate.custom.scheduler.resources"),
        "{err}"
    );
}

// The whole object for the §C.6 fixture's happy path (vector 1).
#[test]
fn golden_dask_job() {
    let job = build(&happy_task(), &config(json!({})));
    testkit::assert_golden(env!("CARGO_MANIFEST_DIR"), "dask_job", &job);
}
