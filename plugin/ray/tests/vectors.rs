//! The Ray plugin in the wasm runtime, against the test vectors of Flyte's
//! own plugin (reference/flyte-operators.md §B.7) and flytekit's
//! serialization (§E.4). The component is `target/plugins/ray.wasm` from
//! `just build-plugins`.
//!
//! Not expressible here: §B.7 3 with an image override and §B.7 7a (task
//! execution overrides of image and resources: the host's task requests
//! carry none), and 7a's "affinity = empty object" (a Go zero value; the
//! object here has no affinity, the same to Kubernetes).

use std::collections::BTreeMap;

use flytewasm::config::HostConfig;
use flytewasm::executor::TaskRequest;
use flytewasm::runtime::{CallError, Plugin, wit};
use flytewasm::testkit::{self, gpu_accelerator, kubeflow};
use flytewasm_proto::flyteidl::core::{
    Container, Identifier, TaskTemplate, resources::ResourceName, task_template::Target,
};
use serde_json::{Value, json};

fn plugin() -> Plugin {
    testkit::plugin("ray")
}

/// Flyte's fixture: head start params {num-cpus: 1}; one worker group of 3
/// (min 3, max 3); autoscaling; shutdown after 120 s.
fn fixture_custom() -> Value {
    json!({
        "rayCluster": {
            "headGroupSpec": { "rayStartParams": { "num-cpus": "1" } },
            "workerGroupSpec": [{ "groupName": "worker-group", "replicas": 3, "minReplicas": 3, "maxReplicas": 3 }],
            "enableAutoscaling": true,
        },
        "shutdownAfterJobFinishes": true,
        "ttlSecondsAfterFinished": 120,
    })
}

/// A `ray` task with `custom`: image `image://`, args `[test-args]`;
/// execution labels {label-1: val1}, annotations {annotation-1: val1},
/// service account `ray_sa`; object `the-job` in `test-namespace`.
fn task(custom: Value) -> TaskRequest {
    TaskRequest {
        template: TaskTemplate {
            r#type: "ray".into(),
            custom: Some(serde_json::from_value(custom).expect("a JSON object")),
            target: Some(Target::Container(Container {
                image: "image://".into(),
                args: vec!["test-args".into()],
                ..Default::default()
            })),
            ..Default::default()
        },
        namespace: "test-namespace".into(),
        name: Some("the-job".into()),
        labels: BTreeMap::from([("label-1".into(), "val1".into())]),
        annotations: BTreeMap::from([("annotation-1".into(), "val1".into())]),
        service_account: "ray_sa".into(),
        max_attempts: 1,
        ..Default::default()
    }
}

/// The host config of Flyte's tests: `plugins.ray` = defaults with
/// Kubernetes links, plus `ray`; no default annotations; `k8s` added.
fn config(ray: Value, k8s: Value) -> HostConfig {
    let mut plugin_config = json!({ "logs": { "kubernetes-enabled": true } });
    json_merge(&mut plugin_config, &ray);
    let mut k8s_config = json!({ "default-annotations": {} });
    json_merge(&mut k8s_config, &k8s);
    serde_json::from_value(json!({ "k8s": k8s_config, "plugins": { "ray": plugin_config } }))
        .unwrap()
}

fn json_merge(base: &mut Value, extra: &Value) {
    for (key, value) in extra.as_object().into_iter().flatten() {
        base[key] = value.clone();
    }
}

fn build_with(request: &TaskRequest, config: &HostConfig) -> Value {
    kubeflow::build(&plugin(), request, config).unwrap()
}

fn build(custom: Value) -> Value {
    build_with(&task(custom), &config(json!({}), json!({})))
}

fn head(job: &Value) -> &Value {
    &job["spec"]["rayClusterSpec"]["headGroupSpec"]
}

fn worker(job: &Value) -> &Value {
    &job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
}

fn container<'a>(group: &'a Value, name: &str) -> &'a Value {
    group["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("the group has a `{name}` container"))
}

// §B.7 1 (and §G.21): the cluster, start parameters, service account,
// labels, annotations and tolerations of head and worker.
#[test]
fn the_fixture_builds_head_and_workers_as_flyte_does() {
    let toleration = json!({ "key": "storage", "value": "dedicated", "operator": "Exists", "effect": "NoSchedule" });
    let job = build_with(
        &task(fixture_custom()),
        &config(json!({}), json!({ "default-tolerations": [toleration] })),
    );
    assert_eq!(
        (job["apiVersion"].as_str(), job["kind"].as_str()),
        (Some("ray.io/v1"), Some("RayJob"))
    );
    let spec = &job["spec"];
    assert_eq!(spec["rayClusterSpec"]["enableInTreeAutoscaling"], true);
    assert_eq!(spec["shutdownAfterJobFinishes"], true);
    assert_eq!(spec["ttlSecondsAfterFinished"], 120);
    assert_eq!(
        head(&job)["rayStartParams"],
        json!({ "dashboard-host": "0.0.0.0", "disable-usage-stats": "true", "include-dashboard": "true",
                "node-ip-address": "$MY_POD_IP", "num-cpus": "1" })
    );
    assert_eq!(
        worker(&job)["rayStartParams"],
        json!({ "disable-usage-stats": "true", "node-ip-address": "$MY_POD_IP" })
    );
    assert_eq!(
        (
            worker(&job)["groupName"].as_str(),
            worker(&job)["replicas"].as_i64(),
            worker(&job)["minReplicas"].as_i64(),
            worker(&job)["maxReplicas"].as_i64()
        ),
        (Some("worker-group"), Some(3), Some(3), Some(3))
    );
    for group in [head(&job), worker(&job)] {
        let template = &group["template"];
        assert_eq!(template["spec"]["serviceAccountName"], "ray_sa");
        assert_eq!(
            template["metadata"]["annotations"],
            json!({ "annotation-1": "val1" })
        );
        assert_eq!(template["metadata"]["labels"], json!({ "label-1": "val1" }));
        assert_eq!(template["spec"]["tolerations"], json!([toleration]));
    }
    assert_eq!(
        spec["submitterPodTemplate"]["spec"]["serviceAccountName"],
        "ray_sa"
    );
    assert_eq!(head(&job)["serviceType"], "NodePort");

    // No execution service account: the configured one (here none).
    let mut request = task(fixture_custom());
    request.service_account = String::new();
    let job = build_with(&request, &config(json!({}), json!({})));
    assert!(head(&job)["template"]["spec"]["serviceAccountName"].is_null());
    // A configured one wins over the execution's, for every pod (§G.21).
    let job = build_with(
        &task(fixture_custom()),
        &config(json!({ "serviceAccount": "platform-sa" }), json!({})),
    );
    for template in [
        &head(&job)["template"],
        &worker(&job)["template"],
        &job["spec"]["submitterPodTemplate"],
    ] {
        assert_eq!(template["spec"]["serviceAccountName"], "platform-sa");
    }
}

// §B.4 steps 5 and 8, §G.11, §G.12: the Ray containers, their ports and
// environment (the memory variables read the CPU fields), the worker's preStop.
#[test]
fn head_and_worker_containers_are_prepared_for_ray() {
    let job = build(fixture_custom());
    let ports = json!([
        { "name": "redis", "containerPort": 6379 },
        { "name": "head", "containerPort": 10001 },
        { "name": "dashboard", "containerPort": 8265 },
    ]);
    let ray_head = container(head(&job), "ray-head");
    assert!(
        ray_head.get("args").is_none(),
        "the head's args are cleared"
    );
    assert_eq!(ray_head["image"], "image://");
    assert_eq!(ray_head["ports"], ports);
    assert_eq!(
        ray_head["env"].as_array().unwrap().last().unwrap(),
        &json!({ "name": "MY_POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } })
    );

    let ray_worker = container(worker(&job), "ray-worker");
    assert!(ray_worker.get("args").is_none());
    assert_eq!(ray_worker["ports"], ports);
    let resource = |name: &str, field: &str| json!({ "name": name, "valueFrom": { "resourceFieldRef": { "containerName": "ray-worker", "resource": field } } });
    let env = ray_worker["env"].as_array().unwrap();
    assert_eq!(
        env[env.len() - 8..],
        [
            json!({ "name": "RAY_DISABLE_DOCKER_CPU_WARNING", "value": "1" }),
            json!({ "name": "TYPE", "value": "worker" }),
            resource("CPU_REQUEST", "requests.cpu"),
            resource("CPU_LIMITS", "limits.cpu"),
            resource("MEMORY_REQUESTS", "requests.cpu"),
            resource("MEMORY_LIMITS", "limits.cpu"),
            json!({ "name": "MY_POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }),
            json!({ "name": "MY_POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } }),
        ]
    );
    assert_eq!(
        ray_worker["lifecycle"],
        json!({ "preStop": { "exec": { "command": ["/bin/sh", "-c", "ray stop"] } } })
    );

    // The submitter runs the task's container as it is (§B.4 step 10).
    let submitter = &job["spec"]["submitterPodTemplate"]["spec"]["containers"][0];
    assert_eq!(submitter["name"], "the-job");
    assert_eq!(submitter["args"], json!(["test-args"]));
    assert_eq!(job["spec"]["entrypoint"], "test-args");
}

// §B.7 2: enableIngress always set, as configured.
#[test]
fn enable_ingress_follows_the_config() {
    for enabled in [true, false] {
        let job = build_with(
            &task(fixture_custom()),
            &config(json!({ "enableIngress": enabled }), json!({})),
        );
        assert_eq!(head(&job)["enableIngress"], enabled);
    }
}

// §B.7 3 (without an override: the host carries none): the task's image.
#[test]
fn head_and_workers_run_the_task_image() {
    let job = build(fixture_custom());
    assert_eq!(container(head(&job), "ray-head")["image"], "image://");
    assert_eq!(container(worker(&job), "ray-worker")["image"], "image://");
}

// §B.7 4, §G.14: empty arguments are quoted `''` in the entrypoint, nothing else.
#[test]
fn empty_arguments_are_quoted_in_the_entrypoint() {
    let mut request = task(fixture_custom());
    let args = [
        "pyflyte-map-execute",
        "--resolver",
        "ArrayNodeMapTaskResolver",
        "--",
        "vars",
        "",
        "resolver",
        "default_task_resolver",
        "task-module",
        "some_module",
        "task-name",
        "some_task",
    ];
    if let Some(Target::Container(c)) = &mut request.template.target {
        c.args = args.iter().map(|a| a.to_string()).collect();
    }
    let job = build_with(&request, &config(json!({}), json!({})));
    let entrypoint = job["spec"]["entrypoint"].as_str().unwrap();
    assert!(entrypoint.contains("vars '' resolver"), "{entrypoint}");
    assert_eq!(
        entrypoint,
        "pyflyte-map-execute --resolver ArrayNodeMapTaskResolver -- vars '' resolver default_task_resolver task-module some_module task-name some_task"
    );
}

// §B.7 5, §G.16: a group's k8sPod overlay: its tolerations and service
// account, its labels and annotations over the task's.
#[test]
fn a_group_pod_overlays_tolerations_service_account_and_metadata() {
    let k8s_pod = json!({
        "metadata": { "labels": { "new-label-1": "val1" }, "annotations": { "new-annotation-1": "val1" } },
        "podSpec": {
            "containers": [],
            "tolerations": [{ "key": "gpu-node-label", "value": "nvidia-tesla-t4", "operator": "Equal", "effect": "NoSchedule" }],
            "serviceAccountName": "custom-sa",
        },
    });
    let mut custom = fixture_custom();
    custom["rayCluster"]["headGroupSpec"]["k8sPod"] = k8s_pod.clone();
    custom["rayCluster"]["workerGroupSpec"][0]["k8sPod"] = k8s_pod;
    let job = build(custom);
    for group in [head(&job), worker(&job)] {
        let template = &group["template"];
        assert_eq!(
            template["spec"]["tolerations"],
            json!([{ "key": "gpu-node-label", "value": "nvidia-tesla-t4", "operator": "Equal", "effect": "NoSchedule" }])
        );
        assert_eq!(
            template["metadata"]["labels"],
            json!({ "label-1": "val1", "new-label-1": "val1" })
        );
        assert_eq!(
            template["metadata"]["annotations"],
            json!({ "annotation-1": "val1", "new-annotation-1": "val1" })
        );
        assert_eq!(template["spec"]["serviceAccountName"], "custom-sa");
    }
}

// §B.7 6 (as §A.5 PyTorch 4): a GPU accelerator steers head and workers.
#[test]
fn a_gpu_accelerator_becomes_node_affinity_and_tolerations() {
    let config = config(json!({}), gpu_accelerator::k8s());
    let with_gpu = |device: &str, partition: Option<&str>| {
        let mut request = task(fixture_custom());
        if let Some(Target::Container(c)) = &mut request.template.target {
            c.resources = Some(flytewasm_proto::flyteidl::core::Resources {
                limits: kubeflow::entries(&[(ResourceName::Gpu, "1")]),
                ..Default::default()
            });
        }
        gpu_accelerator::ask(&mut request, device, partition);
        build_with(&request, &config)
    };
    for (device, partition) in [
        ("nvidia-tesla-t4", None),
        ("nvidia-tesla-a100", Some("1g.5gb")),
    ] {
        let job = with_gpu(device, partition);
        for (which, group) in [("head", head(&job)), ("worker", worker(&job))] {
            gpu_accelerator::assert_steered(
                &group["template"]["spec"],
                device,
                partition,
                true,
                which,
            );
        }
    }
}

// §B.7 7b–e: per-group pods with their own resources, runtime class,
// tolerations and affinity, merged into the containers named for Ray.
#[test]
fn each_group_pod_sets_its_own_resources_runtime_class_tolerations_and_affinity() {
    let group_pod = |container: &str, amount: &str, memory: &str, key: &str| {
        let quantities = json!({ "cpu": amount, "memory": memory, "nvidia.com/gpu": amount });
        json!({ "podSpec": {
            "containers": [{ "name": container, "resources": { "requests": quantities, "limits": quantities } }],
            "runtimeClassName": "nvidia-cdi",
            "tolerations": [{ "key": key, "value": "true", "operator": "Equal", "effect": "NoSchedule" }],
            "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [
                { "matchExpressions": [{ "key": "node-type", "operator": "In", "values": [format!("{key}-node")] }] }] } } },
        } })
    };
    let mut custom = fixture_custom();
    custom["rayCluster"]["headGroupSpec"]["k8sPod"] = group_pod("ray-head", "10", "10Gi", "head");
    custom["rayCluster"]["workerGroupSpec"][0]["k8sPod"] =
        group_pod("ray-worker", "20", "20Gi", "worker");
    let job = build(custom);
    for (group, container_name, amount, memory, key) in [
        (head(&job), "ray-head", "10", "10Gi", "head"),
        (worker(&job), "ray-worker", "20", "20Gi", "worker"),
    ] {
        let quantities = json!({ "cpu": amount, "memory": memory, "nvidia.com/gpu": amount });
        assert_eq!(
            container(group, container_name)["resources"],
            json!({ "requests": quantities, "limits": quantities })
        );
        let spec = &group["template"]["spec"];
        assert_eq!(spec["runtimeClassName"], "nvidia-cdi");
        assert_eq!(
            spec["tolerations"],
            json!([{ "key": key, "value": "true", "operator": "Equal", "effect": "NoSchedule" }])
        );
        assert_eq!(
            spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"],
            json!([{ "matchExpressions": [{ "key": "node-type", "operator": "In", "values": [format!("{key}-node")] }] }])
        );
    }
    // An overlay container with another name is dropped (§G.16).
    let mut custom = fixture_custom();
    custom["rayCluster"]["headGroupSpec"]["k8sPod"] = group_pod("primary", "10", "10Gi", "head");
    let job = build(custom);
    let containers = head(&job)["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1);
    assert_ne!(containers[0]["resources"]["limits"]["cpu"], "10");
}

// §B.7 8: a head spec without start parameters gets the configured defaults.
#[test]
fn a_head_without_start_parameters_gets_the_defaults() {
    let mut custom = fixture_custom();
    custom["rayCluster"]["headGroupSpec"] = json!({});
    let job = build(custom);
    assert_eq!(
        head(&job)["rayStartParams"],
        json!({ "dashboard-host": "0.0.0.0", "disable-usage-stats": "true", "include-dashboard": "true",
                "node-ip-address": "$MY_POD_IP" })
    );
    // Usage stats on, another address: only what the config says.
    let job = build_with(
        &task(
            json!({ "rayCluster": { "workerGroupSpec": [{ "groupName": "g", "replicas": 1 }] } }),
        ),
        &config(
            json!({ "enableUsageStats": true, "includeDashboard": false, "defaults": {
                "headNode": { "startParameters": { "num-gpus": "0" }, "ipAddress": "" },
                "workerNode": { "startParameters": {}, "ipAddress": "10.0.0.1" } },
                "nodeIPAddress": "10.0.0.9" }),
            json!({}),
        ),
    );
    assert_eq!(
        head(&job)["rayStartParams"],
        json!({ "dashboard-host": "0.0.0.0", "include-dashboard": "false", "node-ip-address": "10.0.0.9", "num-gpus": "0" })
    );
    assert_eq!(
        worker(&job)["rayStartParams"],
        json!({ "node-ip-address": "10.0.0.1" })
    );
    // Unset bounds: min 0, max the replica count.
    assert_eq!(
        (
            worker(&job)["minReplicas"].as_i64(),
            worker(&job)["maxReplicas"].as_i64()
        ),
        (Some(0), Some(1))
    );
}

fn k8s_pod_task(pod_spec: Value, primary: &str) -> TaskRequest {
    let mut request = task(fixture_custom());
    request.template.target = Some(Target::K8sPod(
        serde_json::from_value(json!({ "podSpec": pod_spec })).unwrap(),
    ));
    request.template.config = [("primary_container_name".to_owned(), primary.to_owned())].into();
    request
}

// §B.7 9a–d: the logs sidecar shares the head's /tmp/ray, read-only.
#[test]
fn the_logs_sidecar_reads_the_head_ray_directory() {
    let sidecar = config(
        json!({ "logsSidecar": { "name": "logs-sidecar", "image": "test-image" } }),
        json!({}),
    );
    let mount = |name: &str| json!({ "name": name, "mountPath": "/tmp/ray" });
    let read_only = |name: &str| json!({ "name": name, "mountPath": "/tmp/ray", "readOnly": true });
    let check = |job: &Value, volume: Value, name: &str| {
        let spec = &head(job)["template"]["spec"];
        assert_eq!(spec["volumes"], json!([volume]));
        assert_eq!(
            container(head(job), "ray-head")["volumeMounts"],
            json!([mount(name)])
        );
        assert_eq!(
            container(head(job), "logs-sidecar")["volumeMounts"],
            json!([read_only(name)])
        );
        assert_eq!(container(head(job), "logs-sidecar")["image"], "test-image");
    };
    let ray_state = json!({ "name": "system-ray-state", "emptyDir": {} });

    // a: a container task.
    check(
        &build_with(&task(fixture_custom()), &sidecar),
        ray_state.clone(),
        "system-ray-state",
    );
    // b: no sidecar configured.
    let job = build(fixture_custom());
    let spec = &head(&job)["template"]["spec"];
    assert!(spec["volumes"].is_null());
    assert!(container(head(&job), "ray-head")["volumeMounts"].is_null());
    assert_eq!(spec["containers"].as_array().unwrap().len(), 1);
    // c: a k8s_pod task whose primary is `main`.
    let job = build_with(
        &k8s_pod_task(
            json!({ "containers": [{ "name": "main", "image": "image://" }] }),
            "main",
        ),
        &sidecar,
    );
    check(&job, ray_state, "system-ray-state");
    // d: `main` already mounts a volume at /tmp/ray.
    let job = build_with(
        &k8s_pod_task(
            json!({ "containers": [{ "name": "main", "image": "image://", "volumeMounts": [mount("test-vol")] }],
                    "volumes": [{ "name": "test-vol", "emptyDir": {} }] }),
            "main",
        ),
        &sidecar,
    );
    check(
        &job,
        json!({ "name": "test-vol", "emptyDir": {} }),
        "test-vol",
    );
}

// §B.7 10, §B.4 step 7 edge, §B.4 step 11: bad tasks name what is wrong.
#[test]
fn bad_tasks_name_the_problem() {
    let err = kubeflow::build(
        &plugin(),
        &k8s_pod_task(
            json!({ "containers": [{ "name": "not-the-primary" }] }),
            "my-primary",
        ),
        &config(json!({}), json!({})),
    )
    .unwrap_err();
    assert!(
        err.is_bad_task() && err.to_string().contains("my-primary"),
        "{err}"
    );

    let err = kubeflow::build(
        &plugin(),
        &task(json!({ "shutdownAfterJobFinishes": true })),
        &config(json!({}), json!({})),
    )
    .unwrap_err();
    assert!(
        err.is_bad_task() && err.to_string().contains("TaskTemplate.custom.rayCluster"),
        "{err}"
    );

    let mut custom = fixture_custom();
    custom["runtimeEnv"] = json!("not base64!");
    let err = kubeflow::build(&plugin(), &task(custom), &config(json!({}), json!({}))).unwrap_err();
    assert!(
        err.is_bad_task() && err.to_string().contains("TaskTemplate.custom.runtimeEnv"),
        "{err}"
    );

    // A remote cluster cannot be honoured: the build fails, not the user's task.
    let err = kubeflow::build(
        &plugin(),
        &task(fixture_custom()),
        &config(json!({ "remoteClusterConfig": { "enabled": true, "endpoint": "https://ray.example" } }), json!({})),
    )
    .unwrap_err();
    assert!(!err.is_bad_task(), "{err}");
    assert!(
        err.to_string()
            .contains("remote clusters are not supported"),
        "{err}"
    );
}

// §B.4 steps 9 and 11, §G.15: shutdown and TTL; the runtime env as YAML.
#[test]
fn shutdown_ttl_and_runtime_env() {
    // A task that does not ask for shutdown keeps the platform's defaults.
    let mut custom = fixture_custom();
    custom["shutdownAfterJobFinishes"] = json!(false);
    let job = build(custom.clone());
    assert_eq!(job["spec"]["shutdownAfterJobFinishes"], true);
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 3600);
    let job = build_with(
        &task(custom),
        &config(
            json!({ "shutdownAfterJobFinishes": false, "ttlSecondsAfterFinished": 0 }),
            json!({}),
        ),
    );
    assert_eq!(job["spec"]["shutdownAfterJobFinishes"], false);
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 0);
    // Asking for shutdown takes the task's TTL, even 0.
    let mut custom = fixture_custom();
    custom["ttlSecondsAfterFinished"] = json!(0);
    assert_eq!(build(custom)["spec"]["ttlSecondsAfterFinished"], 0);

    // Only the deprecated base64 JSON: re-emitted as YAML.
    let mut custom = fixture_custom();
    custom["runtimeEnv"] = json!("eyJwaXAiOiBbIm51bXB5Il19"); // {"pip": ["numpy"]}
    assert_eq!(
        build(custom.clone())["spec"]["runtimeEnvYAML"],
        "pip:\n- numpy\n"
    );
    // The YAML wins when both are there.
    custom["runtimeEnvYaml"] = json!("pip: [pandas]\n");
    assert_eq!(build(custom)["spec"]["runtimeEnvYAML"], "pip: [pandas]\n");
    assert!(
        build(fixture_custom())["spec"]
            .get("runtimeEnvYAML")
            .is_none()
    );
}

// §B.7 18: autoscaler options, only what the task set.
#[test]
fn autoscaler_options_carry_what_the_task_set() {
    let options = |options: Option<Value>| {
        let mut custom = fixture_custom();
        if let Some(options) = options {
            custom["rayCluster"]["autoscalerOptions"] = options;
        }
        build(custom)["spec"]["rayClusterSpec"]["autoscalerOptions"].clone()
    };
    assert!(options(None).is_null());
    assert_eq!(
        options(Some(json!({ "idleTimeoutSeconds": 30 })))["idleTimeoutSeconds"],
        30
    );
    assert_eq!(
        options(Some(
            json!({ "upscalingMode": "UPSCALING_MODE_CONSERVATIVE" })
        ))["upscalingMode"],
        "Conservative"
    );
    assert!(
        options(Some(
            json!({ "upscalingMode": "UPSCALING_MODE_UNSPECIFIED" })
        ))
        .get("upscalingMode")
        .is_none()
    );
    assert_eq!(
        options(Some(json!({ "image": "my-image:latest" })))["image"],
        "my-image:latest"
    );
    let empty = options(Some(json!({})));
    assert!(empty.get("idleTimeoutSeconds").is_none() && empty.get("image").is_none());
    assert_eq!(empty["resources"], json!({}));
    let resources = options(Some(json!({ "resources": {
        "requests": [{ "name": "CPU", "value": "250m" }, { "name": "MEMORY", "value": "512Mi" }],
        "limits": [{ "name": "CPU", "value": "1" }, { "name": "MEMORY", "value": "1Gi" }] } })));
    assert_eq!(
        resources["resources"],
        json!({ "requests": { "cpu": "250m", "memory": "512Mi" }, "limits": { "cpu": "1", "memory": "1Gi" } })
    );
    assert_eq!(
        options(Some(json!({ "env": [{ "key": "FOO", "value": "bar" }] })))["env"],
        json!([{ "name": "FOO", "value": "bar" }])
    );
}

// §B.7 17: KubeRay's name limit.
#[test]
fn generated_names_fit_kuberay() {
    let plugin = plugin();
    let info = plugin.info();
    assert_eq!(info.properties.generated_name_max_length, Some(47));
    assert_eq!(
        (
            info.kind.api_version.as_str(),
            info.kind.kind.as_str(),
            info.kind.plural.as_str()
        ),
        ("ray.io/v1", "RayJob", "rayjobs")
    );
    assert!(plugin.serves("ray", 0) && plugin.serves("ray", 1));
}

/// The RayJob the plugin built for `request`, as observed with `status`.
fn observed(status: Value) -> Value {
    let mut job = build(fixture_custom());
    job["metadata"] = json!({ "name": "test-ray-job", "namespace": "test-namespace",
                              "creationTimestamp": "1970-01-01T00:00:00Z" });
    job["status"] = status;
    job
}

fn phase_with(
    config: &HostConfig,
    request: &TaskRequest,
    status: Value,
    previous: (wit::Phase, u32, &str),
) -> Result<wit::PhaseInfo, flytewasm::runtime::CallError> {
    kubeflow::phase(&plugin(), request, config, &observed(status), previous)
}

fn phase(deployment: &str) -> Result<wit::PhaseInfo, flytewasm::runtime::CallError> {
    phase_with(
        &config(json!({}), json!({})),
        &task(fixture_custom()),
        json!({ "jobDeploymentStatus": deployment }),
        (wit::Phase::Queued, 0, ""),
    )
}

// §B.5, §B.7 11, §G.13: every jobDeploymentStatus KubeRay writes.
#[test]
fn every_job_deployment_status_maps_to_a_phase_or_an_error() {
    use wit::Phase::*;
    for (status, expected, reason) in [
        ("", Queued, "Scheduling"),
        ("Initializing", Initializing, "cluster is creating"),
        ("Running", Running, ""),
        ("Complete", Success, ""),
        ("Suspended", Queued, "Suspended"),
        ("Suspending", Queued, "Suspending"),
        (
            "Failed",
            RetryableFailure,
            "Failed to run Ray job test-ray-job with error: [] ",
        ),
    ] {
        let info = phase(status).unwrap();
        assert_eq!(
            (info.phase, info.reason.as_str()),
            (expected, reason),
            "{status:?}"
        );
    }
    // A job without a status yet is new.
    let info = phase_with(
        &config(json!({}), json!({})),
        &task(fixture_custom()),
        json!(null),
        (wit::Phase::Queued, 0, "Scheduling"),
    )
    .unwrap();
    assert_eq!((info.phase, info.version), (Queued, 0));
    // What Flyte does not know is a failed look (an error that is not the
    // user's), not a phase.
    for status in ["Retrying", "Waiting", "Exploded"] {
        let err = phase(status).unwrap_err();
        assert!(!err.is_bad_task(), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("unknown job deployment status: {status}")),
            "{err}"
        );
    }
}

// A deliberate difference from Flyte (§G.13): a RayJob KubeRay refused
// fails for good, with KubeRay's reason, instead of being looked at again
// and again as an unknown status.
#[test]
fn a_job_kuberay_refused_fails_with_its_reason() {
    let info = phase_with(
        &config(json!({}), json!({})),
        &task(fixture_custom()),
        json!({ "jobDeploymentStatus": "ValidationFailed", "reason": "ValidationFailed",
                "message": "RayJob name should be no more than 47 characters" }),
        (wit::Phase::Initializing, 0, ""),
    )
    .unwrap();
    assert_eq!(info.phase, wit::Phase::PermanentFailure);
    assert!(info.cleanup_on_failure);
    let error = info.error.unwrap();
    assert_eq!(
        (error.code.as_str(), error.message.as_str()),
        (
            "ValidationFailed",
            "KubeRay refused Ray job test-ray-job: [ValidationFailed] RayJob name should be no more than 47 characters"
        )
    );
}

// KubeRay refuses a TTL without shutdown: a platform that keeps clusters
// (`shutdownAfterJobFinishes: false`, Flyte's default TTL) writes none,
// and a task's negative TTL or replica count is the task's error.
#[test]
fn only_rayjobs_kuberay_accepts_are_built() {
    let keep = config(json!({ "shutdownAfterJobFinishes": false }), json!({}));
    let mut custom = fixture_custom();
    custom["shutdownAfterJobFinishes"] = json!(false);
    let job = build_with(&task(custom), &keep);
    assert_eq!(
        (
            &job["spec"]["shutdownAfterJobFinishes"],
            &job["spec"]["ttlSecondsAfterFinished"]
        ),
        (&json!(false), &json!(0))
    );
    let refused = |custom: Value| match kubeflow::build(
        &plugin(),
        &task(custom),
        &config(json!({}), json!({})),
    ) {
        Err(CallError::BadTask { message, .. }) => message,
        other => panic!("expected a bad task, got {other:?}"),
    };
    let mut negative_ttl = fixture_custom();
    negative_ttl["ttlSecondsAfterFinished"] = json!(-1);
    assert_eq!(
        refused(negative_ttl),
        "TaskTemplate.custom.ttlSecondsAfterFinished is -1: it must be 0 or more"
    );
    let mut negative_replicas = fixture_custom();
    negative_replicas["rayCluster"]["workerGroupSpec"][0]["replicas"] = json!(-2);
    assert_eq!(
        refused(negative_replicas),
        "TaskTemplate.custom.rayCluster.workerGroupSpec[0].replicas is -2: a replica count is 0 or more"
    );
}

// §B.4 step 4: the task's run-as service account comes before the
// execution's; the platform's, when set, before both (§G.21).
#[test]
fn the_run_as_service_account_comes_first() {
    let mut request = task(fixture_custom());
    request.template.security_context = Some(
        serde_json::from_value(json!({ "runAs": { "k8sServiceAccount": "run-as-sa" } })).unwrap(),
    );
    let job = build_with(&request, &config(json!({}), json!({})));
    for group in [
        head(&job),
        worker(&job),
        &job["spec"]["submitterPodTemplate"],
    ] {
        let template = group.get("template").unwrap_or(group);
        assert_eq!(template["spec"]["serviceAccountName"], "run-as-sa");
    }
    let job = build_with(
        &request,
        &config(json!({ "serviceAccount": "ray-runner" }), json!({})),
    );
    assert_eq!(
        head(&job)["template"]["spec"]["serviceAccountName"],
        "ray-runner"
    );
}

// KubeRay makes a group's first container the Ray node: the task's
// container goes first even when a pod template put a sidecar before it.
#[test]
fn the_ray_container_is_the_first() {
    let request = k8s_pod_task(
        json!({ "containers": [
            { "name": "log-shipper", "image": "shipper:1" },
            { "name": "primary", "image": "image://", "args": ["test-args"] },
        ] }),
        "primary",
    );
    let job = build_with(&request, &config(json!({}), json!({})));
    for group in [head(&job), worker(&job)] {
        let names: Vec<&str> = group["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names[1], "log-shipper");
        assert!(matches!(names[0], "ray-head" | "ray-worker"), "{names:?}");
    }
}

// §B.7 12: a failed job is a retryable system failure whose cluster is
// cleaned up, its message naming the job, reason and message.
#[test]
fn a_failed_job_says_why() {
    let info = phase_with(
        &config(json!({}), json!({})),
        &task(fixture_custom()),
        json!({ "jobDeploymentStatus": "Failed", "reason": "OOMKilled", "message": "head node ran out of memory" }),
        (wit::Phase::Running, 0, ""),
    )
    .unwrap();
    assert_eq!(info.phase, wit::Phase::RetryableFailure);
    assert!(info.cleanup_on_failure);
    let error = info.error.unwrap();
    assert_eq!(
        (error.code.as_str(), error.kind, error.message.as_str()),
        (
            "TaskFailedWithError",
            wit::ErrorKind::System,
            "Failed to run Ray job test-ray-job with error: [OOMKilled] head node ran out of memory"
        )
    );
}

// §B.7 13: a new reason in the same phase bumps the version.
#[test]
fn a_new_reason_bumps_the_phase_version() {
    let look = |status: &str, previous: wit::Phase| {
        phase_with(
            &config(json!({}), json!({})),
            &task(fixture_custom()),
            json!({ "jobDeploymentStatus": status }),
            (previous, 0, "task submitted to K8s"),
        )
        .unwrap()
    };
    let info = look("Initializing", wit::Phase::Initializing);
    assert_eq!((info.phase, info.version), (wit::Phase::Initializing, 1));
    let info = look("", wit::Phase::Queued);
    assert_eq!((info.phase, info.version), (wit::Phase::Queued, 1));
}

/// The execution of Flyte's log tests: task my-task-name, execution
/// my-execution-name in my-execution-project/my-execution-domain, retry 1,
/// node `unique-node`, object `generated-name`.
fn logs_task() -> TaskRequest {
    let mut request = task(fixture_custom());
    request.template.id = Some(Identifier {
        name: "my-task-name".into(),
        project: "my-task-project".into(),
        domain: "my-task-domain".into(),
        version: "1".into(),
        ..Default::default()
    });
    request.execution = flytewasm::executor::metadata::Execution {
        project: "my-execution-project".into(),
        domain: "my-execution-domain".into(),
        name: "my-execution-name".into(),
        node_id: "unique-node".into(),
        retry_attempt: 1,
    };
    request.name = Some("generated-name".into());
    request
}

fn links(ray: Value, status: Value) -> Vec<(String, String)> {
    let info = phase_with(
        &config(ray, json!({})),
        &logs_task(),
        status,
        (wit::Phase::Queued, 0, ""),
    )
    .unwrap();
    info.logs.into_iter().map(|l| (l.name, l.uri)).collect()
}

// §B.7 14, §B.6: templates see the job's namespace, execution, Ray's own
// variables and the job's creation time; there is no pod name.
#[test]
fn log_templates_render_the_job_and_ray_variables() {
    let cases = [
        ("http://test/{{ .namespace }}", "http://test/test-namespace"),
        (
            "http://test/projects/{{ .executionProject }}/domains/{{ .executionDomain }}/executions/{{ .executionName }}/nodeId/{{ .nodeID }}/taskId/{{ .taskID }}/attempt/{{ .taskRetryAttempt }}",
            "http://test/projects/my-execution-project/domains/my-execution-domain/executions/my-execution-name/nodeId/unique-node/taskId/my-task-name/attempt/1",
        ),
        (
            "http://test/{{ .namespace }}/{{ .rayClusterName }}",
            "http://test/test-namespace/ray-cluster",
        ),
        (
            "http://test/{{ .namespace }}/{{ .rayJobID }}",
            "http://test/test-namespace/ray-job-1",
        ),
        (
            "http://test/{{ .PodRFC3339StartTime }}/{{ .PodUnixStartTime }}",
            "http://test/1970-01-01T00:00:00Z/0",
        ),
        ("http://test/{{ .podName }}", "http://test/{{ .podName }}"),
    ];
    let status = json!({ "jobDeploymentStatus": "Running", "rayClusterName": "ray-cluster", "jobId": "ray-job-1" });
    for (template, expected) in cases {
        let ray = json!({ "logs": { "templates": [{ "displayName": "Test", "templateUris": [template] }] } });
        assert_eq!(
            links(ray, status.clone()),
            [("Test".to_owned(), expected.to_owned())],
            "{template}"
        );
    }
    // Flyte's test config turns on Kubernetes links (no pod: its placeholder stays).
    let (name, uri) = links(
        json!({ "logs": { "kubernetes-enabled": true, "kubernetes-url": "k8s.com" } }),
        status,
    )
    .remove(0);
    assert_eq!(name, "Kubernetes Logs");
    assert_eq!(
        uri,
        "k8s.com/#!/log/test-namespace/{{ .podName }}/pod?namespace=test-namespace"
    );
    // By default, none (unlike the global plugins.logs).
    let info = kubeflow::phase(
        &plugin(),
        &logs_task(),
        &HostConfig::default(),
        &observed(json!({ "jobDeploymentStatus": "Running" })),
        (wit::Phase::Queued, 0, ""),
    )
    .unwrap();
    assert!(info.logs.is_empty());
}

// §B.7 15: the dashboard link while the job runs and has a dashboard.
#[test]
fn the_dashboard_link_shows_while_the_job_runs() {
    let ray = json!({ "logs": {}, "dashboardURLTemplate": { "displayName": "Ray Dashboard", "templateUris": ["http://test/{{.generatedName}}"] } });
    assert_eq!(
        links(
            ray.clone(),
            json!({ "jobDeploymentStatus": "Running", "dashboardURL": "exists", "jobStatus": "RUNNING" })
        ),
        [(
            "Ray Dashboard".to_owned(),
            "http://test/generated-name".to_owned()
        )]
    );
    assert!(
        links(
            ray.clone(),
            json!({ "jobDeploymentStatus": "Running", "jobStatus": "PENDING" })
        )
        .is_empty()
    );
    assert!(links(ray, json!({ "jobDeploymentStatus": "Complete", "dashboardURL": "exists", "jobStatus": "SUCCEEDED" })).is_empty());
}

// §B.7 16 (as §0.3.6): a dynamic link the task opts into.
#[test]
fn a_dynamic_link_the_task_asks_for() {
    let ray = json!({ "logs": { "dynamic-log-links": { "test-dynamic-link": {
        "displayName": "Dynamic", "templateUris": ["https://some-service.com/{{.taskConfig.dynamicParam}}"] } } } });
    let mut request = logs_task();
    request.template.config = [
        ("link_type".to_owned(), "test-dynamic-link".to_owned()),
        ("dynamicParam".to_owned(), "dynamic-value".to_owned()),
    ]
    .into();
    let info = phase_with(
        &config(ray, json!({})),
        &request,
        json!({ "jobDeploymentStatus": "Running" }),
        (wit::Phase::Queued, 0, ""),
    )
    .unwrap();
    let uris: Vec<&str> = info.logs.iter().map(|l| l.uri.as_str()).collect();
    assert_eq!(uris, ["https://some-service.com/dynamic-value"]);
}

// The whole object for a task as flytekit writes it (§E.4 vector 1).
#[test]
fn golden_ray_job() {
    let quantities = |cpu: &str, memory: &str| json!([{ "name": "CPU", "value": cpu }, { "name": "MEMORY", "value": memory }]);
    let custom = json!({
        "rayCluster": {
            "workerGroupSpec": [{
                "groupName": "test_group", "replicas": 3, "minReplicas": 0, "maxReplicas": 10,
                "k8sPod": {
                    "metadata": { "labels": { "lKeyA": "lValA" }, "annotations": { "aKeyA": "aValA" } },
                    "podSpec": { "containers": [] },
                    "primaryContainerName": "primary",
                },
            }],
            "headGroupSpec": { "k8sPod": { "podSpec": { "containers": [{
                "name": "ray-head",
                "resources": { "requests": { "cpu": "1", "memory": "1Gi" }, "limits": { "cpu": "2", "memory": "2Gi" } },
            }] } } },
            "enableAutoscaling": true,
            "autoscalerOptions": {
                "upscalingMode": "UPSCALING_MODE_CONSERVATIVE", "idleTimeoutSeconds": 120, "image": "rayproject/ray:2.9.0",
                "env": [{ "key": "lKeyA", "value": "lValA" }],
                "resources": { "requests": quantities("1", "1Gi"), "limits": quantities("2", "2Gi") },
            },
        },
        "runtimeEnv": "eyJwaXAiOiBbIm51bXB5Il19",
        "runtimeEnvYaml": "pip:\n- numpy\n",
        "shutdownAfterJobFinishes": true,
        "ttlSecondsAfterFinished": 20,
    });
    let mut request = task(custom);
    request.template.target = Some(Target::Container(Container {
        image: "ghcr.io/flyteorg/flytekit:py3.11".into(),
        args: [
            "pyflyte-execute",
            "--inputs",
            "{{.input}}",
            "--output-prefix",
            "{{.outputPrefix}}",
            "--raw-output-data-prefix",
            "{{.rawOutputDataPrefix}}",
            "--checkpoint-path",
            "{{.checkpointOutputPrefix}}",
            "--prev-checkpoint",
            "{{.prevCheckpointPrefix}}",
            "--resolver",
            "flytekit.core.python_auto_container.default_task_resolver",
            "--",
            "task-module",
            "tests.test_ray",
            "task-name",
            "t1",
        ]
        .map(String::from)
        .into(),
        ..Default::default()
    }));
    request.input_prefix = "s3://bucket/in".into();
    request.output_prefix = "s3://bucket/out".into();
    request.raw_output_prefix = "s3://bucket/raw".into();
    let job = build_with(&request, &HostConfig::default());
    testkit::assert_golden(env!("CARGO_MANIFEST_DIR"), "ray_job", &job);
}
