//! The PyTorch plugin in the wasm runtime, against the test vectors of
//! Flyte's own plugin (reference/flyte-operators.md §A.5, PyTorch).
//! The component is `target/plugins/pytorch.wasm` from `just build-plugins`.
//!
//! Not expressible here (see the crate docs): §A.5 PyTorch 3 with an image
//! override (the host's tasks carry no execution overrides) and PyTorch 9's
//! `ErrorAggregationStrategy` property (not in the host's contract); what
//! is left of each is pinned below.

use flytewasm::config::HostConfig;
use flytewasm::runtime::Plugin;
use flytewasm::testkit::{self, gpu_accelerator, kubeflow};
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
    kubeflow::assert_execution_metadata(
        &job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"],
        "Worker",
    );
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
    let config = gpu_accelerator::config();
    let with_gpu = |device: &str, partition: Option<&str>| {
        let mut request = kubeflow::task("pytorch", 0, json!({ "workers": 2 }));
        gpu_accelerator::ask(&mut request, device, partition);
        kubeflow::build(&plugin(), &request, &config).unwrap()
    };
    for (device, partition) in [
        ("nvidia-tesla-t4", None),
        ("nvidia-tesla-a100", Some("1g.5gb")),
    ] {
        let job = with_gpu(device, partition);
        for role in ["Master", "Worker"] {
            let spec = &job["spec"]["pytorchReplicaSpecs"][role]["template"]["spec"];
            gpu_accelerator::assert_steered(spec, device, partition, true, role);
        }
    }
}

// §A.5 PyTorch 11: per-role image, resources and restart policy, from the
// deprecated fields or from `common`, never mixed; with error aggregation on.
#[test]
fn v1_roles_have_their_own_image_resources_and_restart_policy() {
    let master = json!({ "image": "image://master", "restartPolicy": "RESTART_POLICY_ALWAYS",
        "resources": { "requests": [{ "name": "CPU", "value": "250m" }, { "name": "MEMORY", "value": "250Mi" }],
                       "limits": [{ "name": "CPU", "value": "500m" }, { "name": "MEMORY", "value": "500Mi" }] } });
    let worker = json!({ "replicas": 100,
        "resources": { "requests": [{ "name": "CPU", "value": "1024m" }, { "name": "MEMORY", "value": "1Gi" }],
                       "limits": [{ "name": "CPU", "value": "2048m" }, { "name": "MEMORY", "value": "2Gi" }] } });
    let aggregation: HostConfig =
        serde_json::from_value(json!({ "k8s": { "enable-distributed-error-aggregation": true } }))
            .unwrap();
    for (master, worker) in [
        (master.clone(), worker.clone()),
        // With `common`, the deprecated fields beside it are ignored.
        (
            json!({ "common": master.clone(), "image": "ignored" }),
            json!({ "common": worker.clone(), "replicas": 7 }),
        ),
    ] {
        // Flyte's fixture has the task's resources as execution overrides,
        // which the roles' replace: a container without any here.
        let request = kubeflow::with_task_resources(
            kubeflow::task(
                "pytorch",
                1,
                json!({ "masterReplicas": master, "workerReplicas": worker }),
            ),
            &[],
            &[],
        );
        let job = kubeflow::build(&plugin(), &request, &aggregation).unwrap();
        let specs = &job["spec"]["pytorchReplicaSpecs"];
        assert_eq!(roles(&job), ["Master", "Worker"]);
        assert_eq!(
            (
                specs["Master"]["replicas"].as_i64(),
                specs["Worker"]["replicas"].as_i64()
            ),
            (Some(1), Some(100))
        );
        assert_eq!(container(&job, "Master")["image"], "image://master");
        assert_eq!(container(&job, "Worker")["image"], "image://");
        // Exactly each role's resources.
        assert_eq!(
            container(&job, "Master")["resources"],
            resources(
                json!({ "cpu": "250m", "memory": "250Mi" }),
                json!({ "cpu": "500m", "memory": "500Mi" })
            )
        );
        assert_eq!(
            container(&job, "Worker")["resources"],
            resources(
                json!({ "cpu": "1024m", "memory": "1Gi" }),
                json!({ "cpu": "2048m", "memory": "2Gi" })
            )
        );
        assert_eq!(
            (
                specs["Master"]["restartPolicy"].as_str(),
                specs["Worker"]["restartPolicy"].as_str()
            ),
            (Some("Always"), Some("Never"))
        );
        // No run policy in the task: none of its fields set.
        assert_eq!(job["spec"]["runPolicy"], json!({}));
        assert!(job["spec"].get("elasticPolicy").is_none());
        // The Worker's first container ends with `_F_WN` (its pod's name)
        // then `_F_DES=Earliest` (§A.3.4, §G.6).
        let first = &specs["Worker"]["template"]["spec"]["containers"][0];
        let env = first["env"].as_array().unwrap();
        assert_eq!(
            env[env.len() - 2..],
            [
                json!({ "name": "_F_WN", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }),
                json!({ "name": "_F_DES", "value": "Earliest" })
            ]
        );
        assert_eq!(
            env.iter().filter(|e| e["name"] == "_F_WN").count(),
            1,
            "{env:?}"
        );
        let master_env = container(&job, "Master")["env"].as_array().unwrap();
        assert!(
            master_env
                .iter()
                .all(|e| e["name"] != "_F_WN" && e["name"] != "_F_DES"),
            "the master never gets them: {master_env:?}"
        );
    }
}

// §A.3.2, §H (inferred in Flyte, not covered by its tests): a role's
// resources win key by key over the task container's own; keys the role
// does not name (here the GPU) stay.
#[test]
fn a_role_s_resources_win_key_by_key_over_the_task_s() {
    let master = json!({ "resources": {
        "requests": [{ "name": "CPU", "value": "250m" }, { "name": "MEMORY", "value": "250Mi" }],
        "limits": [{ "name": "CPU", "value": "500m" }, { "name": "MEMORY", "value": "500Mi" }] } });
    let job = build(
        1,
        json!({ "masterReplicas": master, "workerReplicas": { "replicas": 1 } }),
    );
    assert_eq!(
        container(&job, "Master")["resources"],
        resources(
            json!({ "cpu": "250m", "memory": "250Mi", "nvidia.com/gpu": "1" }),
            json!({ "cpu": "500m", "memory": "500Mi", "nvidia.com/gpu": "1" })
        )
    );
}

// Without error aggregation the Worker gets `_F_WN` last and no `_F_DES`;
// the plugin's properties are Flyte's defaults either way (§A.5 PyTorch 9:
// the host's contract has no ErrorAggregationStrategy, see the crate docs).
#[test]
fn error_aggregation_only_adds_the_env_var() {
    testkit::assert_describes(
        &plugin(),
        "pytorch",
        &[("pytorch", 0), ("pytorch", 1)],
        ("kubeflow.org/v1", "PyTorchJob", "pytorchjobs"),
    );
    let job = build(1, json!({ "workerReplicas": { "replicas": 2 } }));
    let env = container(&job, "Worker")["env"].as_array().unwrap().clone();
    assert_eq!(
        env.last().unwrap(),
        &json!({ "name": "_F_WN", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } })
    );
    assert!(env.iter().all(|e| e["name"] != "_F_DES"), "{env:?}");
}

// §A.5 PyTorch 3, the half that applies: with no execution image override
// (the host's tasks carry none, see the crate docs) every replica's first
// container runs the task's image, plain and elastic, v0 and v1.
#[test]
fn every_replica_runs_the_task_image() {
    let elastic =
        json!({ "minReplicas": 1, "maxReplicas": 2, "nprocPerNode": 4, "rdzvBackend": "c10d" });
    for (version, custom) in [
        (0, json!({ "workers": 100 })),
        (0, json!({ "workers": 2, "elasticConfig": elastic })),
        (1, json!({ "workerReplicas": { "replicas": 100 } })),
        (
            1,
            json!({ "workerReplicas": { "replicas": 2 }, "elasticConfig": elastic }),
        ),
    ] {
        let job = build(version, custom.clone());
        for (role, spec) in job["spec"]["pytorchReplicaSpecs"].as_object().unwrap() {
            assert_eq!(
                spec["template"]["spec"]["containers"][0]["image"], "image://",
                "v{version} {custom} {role}"
            );
        }
    }
}

// Container args: Flyte's own templates are rendered; `{{.Inputs.x}}` is
// left as written. Propeller renders args (inputs included) before it calls
// an agent, so the host only sees these from a serialized task (`render`,
// `run`), and a plugin has no input values to put there.
#[test]
fn input_templates_in_args_are_left_as_written() {
    let mut request = kubeflow::task("pytorch", 1, json!({ "workerReplicas": { "replicas": 1 } }));
    request.output_prefix = "s3://bucket/out".into();
    if let Some(flytewasm_proto::flyteidl::core::task_template::Target::Container(c)) =
        &mut request.template.target
    {
        c.args = [
            "--lr",
            "{{.Inputs.lr}}",
            "{{ .inputs.epochs }}",
            "{{ .OutputPrefix }}",
        ]
        .map(String::from)
        .into();
    }
    let job = kubeflow::build(&plugin(), &request, &HostConfig::default()).unwrap();
    for role in ["Master", "Worker"] {
        assert_eq!(
            container(&job, role)["args"],
            json!([
                "--lr",
                "{{.Inputs.lr}}",
                "{{ .inputs.epochs }}",
                "s3://bucket/out"
            ]),
            "{role}"
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

    // §A.5 PyTorch 13 with the worker's own resources: the master keeps the
    // task's, the worker has its own.
    let job = build(
        1,
        json!({ "workerReplicas": { "replicas": 100, "resources": {
            "requests": [{ "name": "CPU", "value": "1024m" }, { "name": "MEMORY", "value": "1Gi" }],
            "limits": [{ "name": "CPU", "value": "2048m" }, { "name": "MEMORY", "value": "2Gi" }] } } }),
    );
    assert_eq!(
        container(&job, "Master")["resources"],
        resources(
            json!({ "cpu": "100m", "memory": "512Mi", "nvidia.com/gpu": "1" }),
            json!({ "cpu": "1000m", "memory": "1Gi", "nvidia.com/gpu": "1" })
        )
    );
    let worker = &container(&job, "Worker")["resources"];
    for (side, cpu, memory) in [("requests", "1024m", "1Gi"), ("limits", "2048m", "2Gi")] {
        assert_eq!(
            (&worker[side]["cpu"], &worker[side]["memory"]),
            (&json!(cpu), &json!(memory)),
            "{side}"
        );
    }
}

// §A.5 PyTorch 14: GPU tolerations follow each role's own resources.
#[test]
fn v1_resource_tolerations_follow_each_role() {
    let config = json!({ "k8s": { "resource-tolerations": { "nvidia.com/gpu": [
        { "key": "nvidia.com/gpu", "value": "present", "operator": "Equal", "effect": "NoSchedule" }
    ] } } });
    let cpu_only = json!({ "requests": [{ "name": "CPU", "value": "1" }], "limits": [{ "name": "CPU", "value": "1" }] });
    let gpu = json!({ "requests": [{ "name": "GPU", "value": "1" }], "limits": [{ "name": "GPU", "value": "1" }] });
    // A task without a GPU of its own: only the worker asks for one.
    let request = kubeflow::with_task_resources(
        kubeflow::task(
            "pytorch",
            1,
            json!({ "masterReplicas": { "resources": cpu_only }, "workerReplicas": { "replicas": 1, "resources": gpu } }),
        ),
        &[],
        &[],
    );
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

    // flytekit's `Elastic(max_restarts=3)`: passed through as it is.
    let job = build(
        1,
        json!({ "workerReplicas": { "replicas": 4 }, "elasticConfig": { "rdzvBackend": "c10d", "minReplicas": 2, "maxReplicas": 4, "nprocPerNode": 2, "maxRestarts": 3 } }),
    );
    assert_eq!(
        job["spec"]["elasticPolicy"],
        json!({ "minReplicas": 2, "maxReplicas": 4, "rdzvBackend": "c10d", "nProcPerNode": 2, "maxRestarts": 3 })
    );
    let job = build(
        0,
        json!({ "workers": 2, "elasticConfig": { "minReplicas": 1, "maxReplicas": 2, "maxRestarts": 5 } }),
    );
    assert_eq!(job["spec"]["elasticPolicy"]["maxRestarts"], 5);

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
    assert_eq!(
        links,
        [
            (
                "Kubernetes Logs".to_owned(),
                kubeflow::dashboard_link("ns", "the-job-worker-0")
            ),
            (
                "Kubernetes Logs".to_owned(),
                kubeflow::dashboard_link("ns", "the-job-worker-1")
            ),
        ]
    );
}

// §A.5 Common 4: a Stackdriver template gets each pod's name and the job's
// creation time as its start.
#[test]
fn a_log_template_gets_the_pod_and_the_job_s_start() {
    let request = kubeflow::task("pytorch", 0, json!({ "workers": 1 }));
    let template = "https://console.cloud.google.com/logs/query;query=resource.labels.pod_name={{.podName}}&timestamp>{{.podRFC3339StartTime}}";
    let links = kubeflow::log_links_with(
        &plugin(),
        &request,
        json!({ "templates": [{ "displayName": "Stackdriver", "templateUris": [template] }] }),
        |job| {
            job["metadata"]["name"] = json!("test");
            job["metadata"]["creationTimestamp"] = json!("2022-01-01T12:00:00Z");
        },
    );
    let uri = |pod: &str| {
        format!(
            "https://console.cloud.google.com/logs/query;query=resource.labels.pod_name={pod}&timestamp>2022-01-01T12:00:00Z"
        )
    };
    assert_eq!(
        links.into_iter().map(|(_, uri)| uri).collect::<Vec<_>>(),
        [uri("test-master-0"), uri("test-worker-0")]
    );
}

// §0.3.6, Kubeflow common: a dynamic link from the task's config.
#[test]
fn a_dynamic_log_link_takes_its_value_from_the_task_config() {
    let request = kubeflow::task("pytorch", 0, json!({ "workers": 1 }));
    let uris = kubeflow::dynamic_link_uris(&plugin(), request);
    // One link a pod.
    assert_eq!(uris, ["https://some-service.com/dynamic-value"; 2]);
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
