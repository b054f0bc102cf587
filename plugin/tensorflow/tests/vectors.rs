//! The TensorFlow plugin in the wasm runtime, against the test vectors of
//! Flyte's own plugin (reference/flyte-operators.md §A.5, TensorFlow).
//! The component is `target/plugins/tensorflow.wasm` from `just build-plugins`.

use flytewasm::config::HostConfig;
use flytewasm::runtime::Plugin;
use flytewasm::testkit::{self, gpu_accelerator, kubeflow};
use flytewasm_proto::flyteidl::core::resources::ResourceName;
use serde_json::{Value, json};

fn plugin() -> Plugin {
    testkit::plugin("tensorflow")
}

fn build(version: i32, custom: Value) -> Result<Value, String> {
    kubeflow::build(
        &plugin(),
        &kubeflow::task("tensorflow", version, custom),
        &HostConfig::default(),
    )
    .map_err(|e| e.to_string())
}

fn container<'a>(job: &'a Value, role: &str) -> &'a Value {
    kubeflow::container(job, "tfReplicaSpecs", role, "tensorflow")
}

fn counts(job: &Value) -> Vec<(String, i64)> {
    job["spec"]["tfReplicaSpecs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v["replicas"].as_i64().unwrap()))
        .collect()
}

fn pairs(items: &[(&str, i64)]) -> Vec<(String, i64)> {
    items.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn resources(cpu: (&str, &str), memory: (&str, &str)) -> Value {
    json!({ "requests": [{ "name": "CPU", "value": cpu.0 }, { "name": "MEMORY", "value": memory.0 }],
            "limits": [{ "name": "CPU", "value": cpu.1 }, { "name": "MEMORY", "value": memory.1 }] })
}

// §A.5 TensorFlow 1 and 2.
#[test]
fn v0_counts_choose_the_roles() {
    let job = build(
        0,
        json!({ "workers": 100, "psReplicas": 50, "chiefReplicas": 1, "evaluatorReplicas": 1 }),
    )
    .unwrap();
    assert_eq!(
        (job["apiVersion"].as_str(), job["kind"].as_str()),
        (Some("kubeflow.org/v1"), Some("TFJob"))
    );
    assert_eq!(
        counts(&job),
        pairs(&[("Chief", 1), ("Evaluator", 1), ("PS", 50), ("Worker", 100)])
    );
    for role in ["Chief", "Evaluator", "PS", "Worker"] {
        // Exactly the task's resources.
        assert_eq!(
            container(&job, role)["resources"],
            k8s(&[
                ("cpu", ("100m", "1000m")),
                ("memory", ("512Mi", "1Gi")),
                ("nvidia.com/gpu", ("1", "1"))
            ]),
            "{role}"
        );
        kubeflow::assert_execution_metadata(&job["spec"]["tfReplicaSpecs"][role]["template"], role);
    }
    let err = build(
        0,
        json!({ "chiefReplicas": 1, "psReplicas": 1, "evaluatorReplicas": 1 }),
    )
    .unwrap_err();
    assert!(
        err.contains("number of workers must be greater than 0"),
        "{err}"
    );
    assert_eq!(
        counts(&build(0, json!({ "chiefReplicas": 1, "workers": 1 })).unwrap()),
        pairs(&[("Chief", 1), ("Worker", 1)])
    );
    assert_eq!(
        counts(&build(0, json!({ "psReplicas": 1, "workers": 1 })).unwrap()),
        pairs(&[("PS", 1), ("Worker", 1)])
    );
}

/// What a role's container gets from [`resources`]: `(request, limit)` per
/// k8s resource name.
fn k8s(items: &[(&str, (&str, &str))]) -> Value {
    let side = |limit: bool| -> Value {
        items
            .iter()
            .map(|(name, (request, lim))| {
                (name.to_string(), json!(if limit { lim } else { request }))
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    json!({ "requests": side(false), "limits": side(true) })
}

// §A.5 TensorFlow 3 and 4: per-role specs in both encodings, and the run policy.
#[test]
fn v1_roles_and_run_policy() {
    let small = resources(("250m", "500m"), ("1Gi", "2Gi"));
    let mut gpu = resources(("1024m", "2048m"), ("1Gi", "2Gi"));
    for side in ["requests", "limits"] {
        gpu[side]
            .as_array_mut()
            .unwrap()
            .push(json!({ "name": "GPU", "value": "1" }));
    }
    let chief = json!({ "replicas": 1, "image": "chief:1", "restartPolicy": "RESTART_POLICY_ALWAYS", "resources": small });
    let worker = json!({ "replicas": 100, "resources": gpu });
    let ps = json!({ "replicas": 50, "resources": small });
    let evaluator = json!({ "replicas": 1, "image": "evaluator:1", "restartPolicy": "RESTART_POLICY_ALWAYS", "resources": small });
    let common = |spec: &Value| json!({ "common": spec });
    for (chief, worker, ps, evaluator) in [
        (chief.clone(), worker.clone(), ps.clone(), evaluator.clone()),
        (
            common(&chief),
            common(&worker),
            common(&ps),
            common(&evaluator),
        ),
    ] {
        // Flyte's fixture has the task's resources as execution overrides,
        // which the roles' replace: a container without any here.
        let request = kubeflow::with_task_resources(
            kubeflow::task(
                "tensorflow",
                1,
                json!({
                    "chiefReplicas": chief, "workerReplicas": worker, "psReplicas": ps, "evaluatorReplicas": evaluator,
                    "runPolicy": { "cleanPodPolicy": "CLEANPOD_POLICY_ALL", "activeDeadlineSeconds": 100 },
                }),
            ),
            &[],
            &[],
        );
        let job = kubeflow::build(&plugin(), &request, &HostConfig::default()).unwrap();
        assert_eq!(
            counts(&job),
            pairs(&[("Chief", 1), ("Evaluator", 1), ("PS", 50), ("Worker", 100)])
        );
        // Each `tensorflow` container has exactly its role's resources.
        let small = k8s(&[("cpu", ("250m", "500m")), ("memory", ("1Gi", "2Gi"))]);
        for role in ["Chief", "PS", "Evaluator"] {
            assert_eq!(container(&job, role)["resources"], small, "{role}");
        }
        assert_eq!(
            container(&job, "Worker")["resources"],
            k8s(&[
                ("cpu", ("1024m", "2048m")),
                ("memory", ("1Gi", "2Gi")),
                ("nvidia.com/gpu", ("1", "1"))
            ])
        );
        assert_eq!(
            (
                container(&job, "Chief")["image"].as_str(),
                container(&job, "Worker")["image"].as_str()
            ),
            (Some("chief:1"), Some("image://"))
        );
        assert_eq!(container(&job, "Evaluator")["image"], "evaluator:1");
        assert_eq!(
            job["spec"]["tfReplicaSpecs"]["Chief"]["restartPolicy"],
            "Always"
        );
        assert_eq!(
            job["spec"]["tfReplicaSpecs"]["Worker"]["restartPolicy"],
            "Never"
        );
        assert_eq!(
            job["spec"]["runPolicy"],
            json!({ "cleanPodPolicy": "All", "activeDeadlineSeconds": 100 })
        );
    }
    let job = build(
        1,
        json!({ "workerReplicas": { "replicas": 100, "resources": gpu } }),
    )
    .unwrap();
    assert_eq!(counts(&job), pairs(&[("Worker", 100)]));
    let err = build(1, json!({ "chiefReplicas": { "replicas": 1 } })).unwrap_err();
    assert!(
        err.contains("number of workers must be greater than 0"),
        "{err}"
    );
}

// §A.3.5: unlike PyTorch's master and MPI's launcher, a chief is not forced
// to one replica, in either version: the count passes through (the
// operator's validation decides).
#[test]
fn a_chief_is_not_forced_to_one() {
    let job = build(0, json!({ "workers": 1, "chiefReplicas": 2 })).unwrap();
    assert_eq!(counts(&job), pairs(&[("Chief", 2), ("Worker", 1)]));
    let job = build(
        1,
        json!({ "workerReplicas": { "replicas": 1 }, "chiefReplicas": { "replicas": 3 } }),
    )
    .unwrap();
    assert_eq!(counts(&job), pairs(&[("Chief", 3), ("Worker", 1)]));
    let job = build(
        1,
        json!({ "workerReplicas": { "replicas": 1 }, "chiefReplicas": { "common": { "replicas": 2 } } }),
    )
    .unwrap();
    assert_eq!(counts(&job), pairs(&[("Chief", 2), ("Worker", 1)]));
}

// §A.5 TensorFlow 5: GPU tolerations follow each role's own resources.
#[test]
fn v1_resource_tolerations_follow_each_role() {
    let config: HostConfig = serde_json::from_value(
        json!({ "k8s": { "resource-tolerations": { "nvidia.com/gpu": [
        { "key": "nvidia.com/gpu", "value": "present", "operator": "Equal", "effect": "NoSchedule" }
    ] } } }),
    )
    .unwrap();
    let cpu_only = json!({ "requests": [{ "name": "CPU", "value": "1" }], "limits": [{ "name": "CPU", "value": "1" }] });
    let gpu = json!({ "requests": [{ "name": "GPU", "value": "1" }], "limits": [{ "name": "GPU", "value": "1" }] });
    // A task without a GPU of its own: only the worker asks for one.
    let request = kubeflow::with_task_resources(
        kubeflow::task(
            "tensorflow",
            1,
            json!({ "chiefReplicas": { "replicas": 1, "resources": cpu_only }, "workerReplicas": { "replicas": 1, "resources": gpu } }),
        ),
        &[],
        &[],
    );
    let job = kubeflow::build(&plugin(), &request, &config).unwrap();
    let tolerations =
        |role: &str| job["spec"]["tfReplicaSpecs"][role]["template"]["spec"]["tolerations"].clone();
    assert_eq!(tolerations("Chief"), Value::Null);
    assert_eq!(
        tolerations("Worker"),
        json!([{ "key": "nvidia.com/gpu", "value": "present", "operator": "Equal", "effect": "NoSchedule" }])
    );
}

// §A.5 TensorFlow 6 (as PyTorch 4): a GPU accelerator steers every role to
// its nodes; the task's GPU gets every role the extended-resource toleration.
#[test]
fn a_gpu_accelerator_reaches_every_role() {
    let config = gpu_accelerator::config();
    let with_gpu = |device: &str, partition: Option<&str>| {
        let mut request = kubeflow::with_task_resources(
            kubeflow::task(
                "tensorflow",
                1,
                json!({
                    "chiefReplicas": { "replicas": 1 }, "workerReplicas": { "replicas": 100 },
                    "psReplicas": { "replicas": 50 }, "evaluatorReplicas": { "replicas": 1 },
                }),
            ),
            &[],
            &[(ResourceName::Gpu, "1")],
        );
        gpu_accelerator::ask(&mut request, device, partition);
        kubeflow::build(&plugin(), &request, &config).unwrap()
    };
    for (device, partition) in [
        ("nvidia-tesla-t4", None),
        ("nvidia-tesla-a100", Some("1g.5gb")),
    ] {
        let job = with_gpu(device, partition);
        for role in ["Chief", "Worker", "PS", "Evaluator"] {
            let spec = &job["spec"]["tfReplicaSpecs"][role]["template"]["spec"];
            gpu_accelerator::assert_steered(spec, device, partition, true, role);
        }
    }
}

// §A.5 TensorFlow 9: Flyte's default (empty) properties.
#[test]
fn describes_itself_with_flytes_default_properties() {
    testkit::assert_describes(
        &plugin(),
        "tensorflow",
        &[("tensorflow", 0), ("tensorflow", 1)],
        ("kubeflow.org/v1", "TFJob", "tfjobs"),
    );
}

// §A.5 TensorFlow 7.
#[test]
fn conditions_map_to_phases() {
    let request = kubeflow::task(
        "tensorflow",
        0,
        json!({ "workers": 2, "psReplicas": 1, "chiefReplicas": 1, "evaluatorReplicas": 1 }),
    );
    let job = kubeflow::build(&plugin(), &request, &HostConfig::default()).unwrap();
    kubeflow::assert_phase_table(&plugin(), &request, &job, "tensorflow");
}

// §A.5 TensorFlow 8, §G.3: Flyte's links to PS, chief and evaluator pods
// use `-psReplica-`... names and carry no times or container.
#[test]
fn log_links_keep_flytes_role_pod_names() {
    let custom =
        json!({ "workers": 2, "psReplicas": 1, "chiefReplicas": 1, "evaluatorReplicas": 1 });
    let links = kubeflow::log_links(
        &plugin(),
        &kubeflow::task("tensorflow", 0, custom.clone()),
        "tensorflow-namespace",
    );
    let uris: Vec<String> = links.into_iter().map(|(_, uri)| uri).collect();
    let pods = [
        "the-job-worker-0",
        "the-job-worker-1",
        "the-job-psReplica-0",
        "the-job-chiefReplica-0",
        "the-job-evaluatorReplica-0",
    ];
    assert_eq!(
        uris,
        pods.map(|pod| kubeflow::dashboard_link("tensorflow-namespace", pod))
    );
    // Through a template: workers name their container and start (the
    // job's creation, 2024-01-02T03:04:05Z); the other roles' links neither
    // (an empty variable stays as written, as in Flyte; no time is 0).
    let links = kubeflow::log_links_with(
        &plugin(),
        &kubeflow::task("tensorflow", 0, custom),
        json!({ "templates": [{ "displayName": "T", "templateUris": ["{{.podName}}/{{.containerName}}/{{.podUnixStartTime}}"] }] }),
        |_| {},
    );
    let uris: Vec<String> = links.into_iter().map(|(_, uri)| uri).collect();
    assert_eq!(
        uris,
        [
            "the-job-worker-0/tensorflow/1704164645",
            "the-job-worker-1/tensorflow/1704164645",
            "the-job-psReplica-0/{{.containerName}}/0",
            "the-job-chiefReplica-0/{{.containerName}}/0",
            "the-job-evaluatorReplica-0/{{.containerName}}/0",
        ]
    );
}

// §A.5 Common 3: without an evaluator there is no evaluator link.
#[test]
fn no_evaluator_no_evaluator_link() {
    let custom = json!({ "workers": 1, "psReplicas": 1, "chiefReplicas": 1 });
    let links = kubeflow::log_links(&plugin(), &kubeflow::task("tensorflow", 0, custom), "ns");
    let uris: Vec<String> = links.into_iter().map(|(_, uri)| uri).collect();
    let pods = [
        "the-job-worker-0",
        "the-job-psReplica-0",
        "the-job-chiefReplica-0",
    ];
    assert_eq!(uris, pods.map(|pod| kubeflow::dashboard_link("ns", pod)));
}

// §0.3.6, Kubeflow common: a dynamic link from the task's config.
#[test]
fn a_dynamic_log_link_takes_its_value_from_the_task_config() {
    let request = kubeflow::task("tensorflow", 0, json!({ "workers": 1 }));
    let uris = kubeflow::dynamic_link_uris(&plugin(), request);
    // One link a pod.
    assert_eq!(uris, ["https://some-service.com/dynamic-value"; 1]);
}

#[test]
fn golden_v1_job() {
    let job = build(1, json!({
        "chiefReplicas": { "replicas": 1, "restartPolicy": "RESTART_POLICY_ALWAYS" },
        "workerReplicas": { "replicas": 4, "image": "worker:1" },
        "psReplicas": { "replicas": 2 },
        "runPolicy": { "cleanPodPolicy": "CLEANPOD_POLICY_RUNNING", "ttlSecondsAfterFinished": 600 },
    }))
    .unwrap();
    testkit::assert_golden(env!("CARGO_MANIFEST_DIR"), "v1_job", &job);
}
