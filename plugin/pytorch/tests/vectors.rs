//! The PyTorch plugin in the wasm runtime, against the test vectors of
//! Flyte's own plugin (reference/flyte-operators.md §A.5, PyTorch).
//! The component is `target/plugins/pytorch.wasm` from `just build-plugins`.

use flytewasm::config::HostConfig;
use flytewasm::runtime::Plugin;
use flytewasm::testkit::{self, kubeflow};
use serde_json::{Value, json};

fn plugin() -> Plugin {
    testkit::plugin("pytorch")
}

fn build(version: i32, custom: Value) -> Value {
    kubeflow::build(
        &plugin(),
        &kubeflow::task("pytorch", version, custom),
        &HostConfig::default(),
    )
    .unwrap()
}

fn build_with(version: i32, custom: Value, config: Value) -> Value {
    let config: HostConfig = serde_json::from_value(config).unwrap();
    kubeflow::build(
        &plugin(),
        &kubeflow::task("pytorch", version, custom),
        &config,
    )
    .unwrap()
}

fn container<'a>(job: &'a Value, role: &str) -> &'a Value {
    kubeflow::container(job, "pytorchReplicaSpecs", role, "pytorch")
}

fn roles(job: &Value) -> Vec<&str> {
    job["spec"]["pytorchReplicaSpecs"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

fn resources(requests: Value, limits: Value) -> Value {
    json!({ "requests": requests, "limits": limits })
}

// §A.5 PyTorch 1 and 17: a v0 elastic job is workers only.
#[test]
fn v0_elastic_is_a_worker_only_job_with_an_elastic_policy() {
    let job = build(
        0,
        json!({ "workers": 2, "elasticConfig": { "minReplicas": 1, "maxReplicas": 2, "nprocPerNode": 4, "rdzvBackend": "c10d" } }),
    );
    assert_eq!(
        (job["apiVersion"].as_str(), job["kind"].as_str()),
        (Some("kubeflow.org/v1"), Some("PyTorchJob"))
    );
    assert_eq!(roles(&job), ["Worker"]);
    assert_eq!(job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"], 2);
    assert_eq!(
        job["spec"]["elasticPolicy"],
        json!({ "minReplicas": 1, "maxReplicas": 2, "nProcPerNode": 4, "rdzvBackend": "c10d", "maxRestarts": 0 })
    );
    let template = &job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"];
    assert_eq!(
        template["metadata"]["annotations"]["annotation-key"],
        "annotation-value"
    );
    assert_eq!(template["metadata"]["labels"]["label-key"], "label-value");
    assert_eq!(container(&job, "Worker")["args"], json!(["test-args"]));
}

// §A.5 PyTorch 2 and 10: every replica shares the task's pod and resources.
#[test]
fn v0_replicas_share_the_task_pod() {
    let job = build(0, json!({ "workers": 100 }));
    assert_eq!(roles(&job), ["Master", "Worker"]);
    assert_eq!(job["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"], 1);
    assert_eq!(
        job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"],
        100
    );
    assert!(job["spec"].get("elasticPolicy").is_none());
    assert_eq!(job["spec"]["runPolicy"], json!({}));
    for role in ["Master", "Worker"] {
        assert_eq!(
            container(&job, role)["resources"],
            resources(
                json!({ "cpu": "100m", "memory": "512Mi", "nvidia.com/gpu": "1" }),
                json!({ "cpu": "1000m", "memory": "1Gi", "nvidia.com/gpu": "1" })
            )
        );
        assert_eq!(
            job["spec"]["pytorchReplicaSpecs"][role]["restartPolicy"],
            "Never"
        );
        assert_eq!(container(&job, role)["image"], "image://");
    }
    assert_eq!(
        roles(&build(0, json!({}))),
        ["Master"],
        "0 workers: no Worker spec"
    );
    assert_eq!(
        roles(&build(0, json!({ "workers": 1 }))),
        ["Master", "Worker"]
    );
}

// §A.5 PyTorch 4: a GPU accelerator steers every replica to its nodes.
#[test]
fn a_gpu_accelerator_becomes_node_affinity_and_tolerations() {
    let config = json!({ "k8s": {
        "gpu-device-node-label": "gpu-node-label",
        "gpu-partition-size-node-label": "gpu-partition-size",
        "gpu-resource-name": "nvidia.com/gpu",
        "add-tolerations-for-extended-resources": ["nvidia.com/gpu"],
    } });
    let config: HostConfig = serde_json::from_value(config).unwrap();
    let term = |job: &Value, role: &str| {
        job["spec"]["pytorchReplicaSpecs"][role]["template"]["spec"]["affinity"]["nodeAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            .clone()
    };
    let tolerations = |job: &Value, role: &str| {
        job["spec"]["pytorchReplicaSpecs"][role]["template"]["spec"]["tolerations"].clone()
    };
    let with_gpu = |device: &str, partition: Option<&str>| {
        let mut request = kubeflow::task("pytorch", 0, json!({ "workers": 2 }));
        let mut gpu = json!({ "device": device });
        if let Some(partition) = partition {
            gpu["partitionSize"] = json!(partition);
        }
        request.template.extended_resources =
            Some(serde_json::from_value(json!({ "gpuAccelerator": gpu })).unwrap());
        kubeflow::build(&plugin(), &request, &config).unwrap()
    };

    let job = with_gpu("nvidia-tesla-t4", None);
    for role in ["Master", "Worker"] {
        assert_eq!(
            term(&job, role),
            json!([{ "matchExpressions": [{ "key": "gpu-node-label", "operator": "In", "values": ["nvidia-tesla-t4"] }] }])
        );
        assert_eq!(
            tolerations(&job, role),
            json!([
                { "key": "gpu-node-label", "value": "nvidia-tesla-t4", "operator": "Equal", "effect": "NoSchedule" },
                { "key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule" },
            ])
        );
    }

    let job = with_gpu("nvidia-tesla-a100", Some("1g.5gb"));
    assert_eq!(
        term(&job, "Worker"),
        json!([{ "matchExpressions": [
            { "key": "gpu-node-label", "operator": "In", "values": ["nvidia-tesla-a100"] },
            { "key": "gpu-partition-size", "operator": "In", "values": ["1g.5gb"] },
        ] }])
    );
    assert_eq!(
        tolerations(&job, "Worker"),
        json!([
            { "key": "gpu-node-label", "value": "nvidia-tesla-a100", "operator": "Equal", "effect": "NoSchedule" },
            { "key": "gpu-partition-size", "value": "1g.5gb", "operator": "Equal", "effect": "NoSchedule" },
            { "key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule" },
        ])
    );
}

// §A.5 PyTorch 11: per-role image, resources and restart policy, from the
// deprecated fields or from `common`, never mixed.
#[test]
fn v1_roles_have_their_own_image_resources_and_restart_policy() {
    let master = json!({ "image": "image://master", "restartPolicy": "RESTART_POLICY_ALWAYS",
        "resources": { "requests": [{ "name": "CPU", "value": "250m" }, { "name": "MEMORY", "value": "250Mi" }],
                       "limits": [{ "name": "CPU", "value": "500m" }, { "name": "MEMORY", "value": "500Mi" }] } });
    let worker = json!({ "replicas": 100,
        "resources": { "requests": [{ "name": "CPU", "value": "1024m" }, { "name": "MEMORY", "value": "1Gi" }],
                       "limits": [{ "name": "CPU", "value": "2048m" }, { "name": "MEMORY", "value": "2Gi" }] } });
    let aggregation = json!({ "k8s": { "enable-distributed-error-aggregation": true } });
    for (master, worker) in [
        (master.clone(), worker.clone()),
        (
            json!({ "common": master.clone(), "image": "ignored" }),
            json!({ "common": worker.clone(), "replicas": 7 }),
        ),
    ] {
        let job = build_with(
            1,
            json!({ "masterReplicas": master, "workerReplicas": worker }),
            aggregation.clone(),
        );
        let specs = &job["spec"]["pytorchReplicaSpecs"];
        assert_eq!(
            (
                specs["Master"]["replicas"].as_i64(),
                specs["Worker"]["replicas"].as_i64()
            ),
            (Some(1), Some(100))
        );
        assert_eq!(container(&job, "Master")["image"], "image://master");
        assert_eq!(container(&job, "Worker")["image"], "image://");
        // A role's resources win key by key over the task's own (its GPU
        // stays; reference §A.3.2, §H), as Flyte merges overrides.
        assert_eq!(
            container(&job, "Master")["resources"],
            resources(
                json!({ "cpu": "250m", "memory": "250Mi", "nvidia.com/gpu": "1" }),
                json!({ "cpu": "500m", "memory": "500Mi", "nvidia.com/gpu": "1" })
            )
        );
        assert_eq!(
            container(&job, "Worker")["resources"]["requests"]["cpu"],
            "1024m"
        );
        assert_eq!(
            container(&job, "Worker")["resources"]["limits"]["memory"],
            "2Gi"
        );
        assert_eq!(
            (
                specs["Master"]["restartPolicy"].as_str(),
                specs["Worker"]["restartPolicy"].as_str()
            ),
            (Some("Always"), Some("Never"))
        );
        assert_eq!(job["spec"]["runPolicy"], json!({}));
        assert!(job["spec"].get("elasticPolicy").is_none());
        // Each worker learns its own name; the earliest error wins (§A.3.4, §G.6).
        let env = container(&job, "Worker")["env"].as_array().unwrap();
        let last_two: Vec<&Value> = env.iter().rev().take(2).rev().collect();
        assert_eq!(
            last_two,
            [
                &json!({ "name": "_F_WN", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }),
                &json!({ "name": "_F_DES", "value": "Earliest" })
            ]
        );
        let master_env = container(&job, "Master")["env"].as_array().unwrap();
        assert!(
            master_env.iter().all(|e| e["name"] != "_F_WN"),
            "the master never gets _F_WN"
        );
    }
}

// A role that asks for part of its resources: complete before it wins over
// the task's (request from limit, limit from request), never request > limit.
#[test]
fn a_partial_role_override_makes_a_valid_pod() {
    let job = build(
        1,
        json!({
            "workerReplicas": { "replicas": 2, "resources": { "limits": [{ "name": "GPU", "value": "2" }, { "name": "CPU", "value": "50m" }] } },
        }),
    );
    let worker = &container(&job, "Worker")["resources"];
    assert_eq!(
        (
            worker["requests"]["nvidia.com/gpu"].as_str(),
            worker["limits"]["nvidia.com/gpu"].as_str()
        ),
        (Some("2"), Some("2"))
    );
    assert_eq!(
        (
            worker["requests"]["cpu"].as_str(),
            worker["limits"]["cpu"].as_str()
        ),
        (Some("50m"), Some("50m"))
    );
}

// §A.5 PyTorch 12 and 13.
#[test]
fn v1_run_policy_and_a_worker_only_spec() {
    let job = build(
        1,
        json!({
            "workerReplicas": { "replicas": 100 },
            "runPolicy": { "cleanPodPolicy": "CLEANPOD_POLICY_ALL", "backoffLimit": 100, "activeDeadlineSeconds": 1000, "ttlSecondsAfterFinished": 10000 },
        }),
    );
    assert_eq!(
        job["spec"]["runPolicy"],
        json!({ "cleanPodPolicy": "All", "backoffLimit": 100, "activeDeadlineSeconds": 1000, "ttlSecondsAfterFinished": 10000 })
    );
    let specs = &job["spec"]["pytorchReplicaSpecs"];
    assert_eq!(
        (
            specs["Master"]["replicas"].as_i64(),
            specs["Worker"]["replicas"].as_i64()
        ),
        (Some(1), Some(100))
    );
    // No master spec: the master has the task's resources, GPU included.
    assert_eq!(
        container(&job, "Master")["resources"]["limits"]["nvidia.com/gpu"],
        "1"
    );
    for role in ["Master", "Worker"] {
        assert_eq!(container(&job, role)["image"], "image://");
        assert_eq!(specs[role]["restartPolicy"], "Never");
    }
    // Without aggregation, no _F_DES.
    assert!(
        container(&job, "Worker")["env"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["name"] != "_F_DES")
    );
}

// §A.5 PyTorch 14: GPU tolerations follow each role's own resources.
#[test]
fn v1_resource_tolerations_follow_each_role() {
    let config = json!({ "k8s": { "resource-tolerations": { "nvidia.com/gpu": [
        { "key": "nvidia.com/gpu", "value": "present", "operator": "Equal", "effect": "NoSchedule" }
    ] } } });
    let cpu_only = json!({ "requests": [{ "name": "CPU", "value": "1" }], "limits": [{ "name": "CPU", "value": "1" }] });
    let gpu = json!({ "requests": [{ "name": "GPU", "value": "1" }], "limits": [{ "name": "GPU", "value": "1" }] });
    let mut request = kubeflow::task(
        "pytorch",
        1,
        json!({ "masterReplicas": { "resources": cpu_only }, "workerReplicas": { "replicas": 1, "resources": gpu } }),
    );
    // A task without a GPU of its own: only the worker asks for one.
    if let Some(flytewasm_proto::flyteidl::core::task_template::Target::Container(c)) =
        &mut request.template.target
    {
        c.resources = None;
    }
    let job = kubeflow::build(
        &plugin(),
        &request,
        &serde_json::from_value(config).unwrap(),
    )
    .unwrap();
    let tolerated = |role: &str| {
        job["spec"]["pytorchReplicaSpecs"][role]["template"]["spec"]["tolerations"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["key"] == "nvidia.com/gpu"))
    };
    assert!(!tolerated("Master"));
    assert!(tolerated("Worker"));
}

// §A.5 PyTorch 15 and 16.
#[test]
fn v1_elastic_and_replica_counts() {
    let job = build(
        1,
        json!({ "workerReplicas": { "replicas": 2 }, "elasticConfig": { "minReplicas": 1, "maxReplicas": 2, "nprocPerNode": 4, "rdzvBackend": "c10d" } }),
    );
    assert_eq!(roles(&job), ["Worker"]);
    assert_eq!(job["spec"]["elasticPolicy"]["nProcPerNode"], 4);
    container(&job, "Worker");

    let job = build(
        1,
        json!({ "masterReplicas": { "image": "image://master" } }),
    );
    assert_eq!(roles(&job), ["Master"]);
    assert_eq!(container(&job, "Master")["image"], "image://master");
    let job = build(
        1,
        json!({ "masterReplicas": { "image": "image://master" }, "workerReplicas": { "replicas": 1 } }),
    );
    assert_eq!(roles(&job), ["Master", "Worker"]);
}

// flytekit's pod template (k8s_pod target, primary container `primary`,
// a /dev/shm volume) becomes the `pytorch` container (§E.1).
#[test]
fn flytekit_primary_container_is_renamed_and_keeps_its_shared_memory() {
    let mut request = kubeflow::task(
        "pytorch",
        1,
        json!({ "workerReplicas": { "replicas": 2 }, "masterReplicas": { "replicas": 1 } }),
    );
    request.template.target = Some(
        flytewasm_proto::flyteidl::core::task_template::Target::K8sPod(
            serde_json::from_value(json!({ "podSpec": {
            "containers": [{ "name": "primary", "image": "image://", "args": ["pyflyte-execute"],
                             "volumeMounts": [{ "name": "shm", "mountPath": "/dev/shm" }] }],
            "volumes": [{ "name": "shm", "emptyDir": { "medium": "Memory" } }],
        } }))
            .unwrap(),
        ),
    );
    request.template.config = [("primary_container_name".to_owned(), "primary".to_owned())].into();
    let job = kubeflow::build(&plugin(), &request, &HostConfig::default()).unwrap();
    for role in ["Master", "Worker"] {
        let c = container(&job, role);
        assert_eq!(
            c["volumeMounts"],
            json!([{ "name": "shm", "mountPath": "/dev/shm" }])
        );
        // The platform default resources, as Flyte gives a container that asks for none.
        assert_eq!(
            c["resources"]["requests"],
            json!({ "cpu": "1000m", "memory": "1024Mi" })
        );
    }
}

#[test]
fn unknown_versions_and_missing_custom_are_bad_tasks() {
    let err = kubeflow::build(
        &plugin(),
        &kubeflow::task("pytorch", 2, json!({})),
        &HostConfig::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("unsupported task template version [2]"),
        "{err}"
    );
    let mut request = kubeflow::task("pytorch", 1, json!({}));
    request.template.custom = None;
    let err = kubeflow::build(&plugin(), &request, &HostConfig::default()).unwrap_err();
    assert!(err.to_string().contains("TaskTemplate.custom"), "{err}");
}

// §A.5 PyTorch 5–7.
#[test]
fn conditions_map_to_phases() {
    let request = kubeflow::task("pytorch", 0, json!({ "workers": 2 }));
    let job = kubeflow::build(&plugin(), &request, &HostConfig::default()).unwrap();
    kubeflow::assert_phase_table(&plugin(), &request, &job, "pytorch");
}

// §A.5 PyTorch 8, §G.4: the master's link is `<display name>master`.
#[test]
fn log_links_for_the_master_and_each_worker() {
    let request = kubeflow::task("pytorch", 0, json!({ "workers": 2 }));
    let links = kubeflow::log_links(&plugin(), &request, "pytorch-namespace");
    let link = |pod: &str| kubeflow::dashboard_link("pytorch-namespace", pod);
    let expected = [
        ("Kubernetes Logsmaster", link("the-job-master-0")),
        ("Kubernetes Logs", link("the-job-worker-0")),
        ("Kubernetes Logs", link("the-job-worker-1")),
    ];
    assert_eq!(links, expected.map(|(n, u)| (n.to_owned(), u)));

    // A hundred workers: the first links, as many as the host takes.
    let many = kubeflow::task("pytorch", 0, json!({ "workers": 100 }));
    let links = kubeflow::log_links(&plugin(), &many, "ns");
    assert_eq!(links.len(), 32);
    assert_eq!(
        links[31].1,
        kubeflow::dashboard_link("ns", "the-job-worker-30")
    );

    // An elastic job has no master link.
    let elastic = json!({ "workers": 2, "elasticConfig": { "minReplicas": 1, "maxReplicas": 2 } });
    let links = kubeflow::log_links(&plugin(), &kubeflow::task("pytorch", 0, elastic), "ns");
    assert_eq!(links.len(), 2);
}

// The whole object for a v1 task with every role field set.
#[test]
fn golden_v1_job() {
    let job = build(
        1,
        json!({
            "masterReplicas": { "replicas": 1, "image": "image://master", "restartPolicy": "RESTART_POLICY_ALWAYS" },
            "workerReplicas": { "replicas": 3, "resources": { "limits": [{ "name": "GPU", "value": "2" }] }, "restartPolicy": "RESTART_POLICY_ON_FAILURE" },
            "runPolicy": { "cleanPodPolicy": "CLEANPOD_POLICY_RUNNING", "backoffLimit": 3 },
        }),
    );
    testkit::assert_golden(env!("CARGO_MANIFEST_DIR"), "v1_job", &job);
}
