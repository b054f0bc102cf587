//! The TensorFlow plugin in the wasm runtime, against the test vectors of
//! Flyte's own plugin (reference/flyte-operators.md §A.5, TensorFlow).
//! The component is `target/plugins/tensorflow.wasm` from `just build-plugins`.

use flytewasm::config::HostConfig;
use flytewasm::runtime::Plugin;
use flytewasm::testkit::{self, kubeflow};
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
        assert_eq!(
            container(&job, role)["resources"]["limits"]["nvidia.com/gpu"],
            "1"
        );
        let meta = &job["spec"]["tfReplicaSpecs"][role]["template"]["metadata"];
        assert_eq!(
            (
                meta["labels"]["label-key"].as_str(),
                meta["annotations"]["annotation-key"].as_str()
            ),
            (Some("label-value"), Some("annotation-value"))
        );
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

// §A.5 TensorFlow 3 and 4: per-role specs in both encodings, and the run policy.
#[test]
fn v1_roles_and_run_policy() {
    let chief = json!({ "replicas": 1, "image": "chief:1", "restartPolicy": "RESTART_POLICY_ALWAYS", "resources": resources(("250m", "500m"), ("1Gi", "2Gi")) });
    let worker =
        json!({ "replicas": 100, "resources": resources(("1024m", "2048m"), ("1Gi", "2Gi")) });
    let ps = json!({ "replicas": 50, "resources": resources(("250m", "500m"), ("1Gi", "2Gi")) });
    let evaluator = json!({ "replicas": 1, "image": "evaluator:1", "restartPolicy": "RESTART_POLICY_ALWAYS", "resources": resources(("250m", "500m"), ("1Gi", "2Gi")) });
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
        let job = build(1, json!({
            "chiefReplicas": chief, "workerReplicas": worker, "psReplicas": ps, "evaluatorReplicas": evaluator,
            "runPolicy": { "cleanPodPolicy": "CLEANPOD_POLICY_ALL", "activeDeadlineSeconds": 100 },
        }))
        .unwrap();
        assert_eq!(
            counts(&job),
            pairs(&[("Chief", 1), ("Evaluator", 1), ("PS", 50), ("Worker", 100)])
        );
        assert_eq!(
            container(&job, "Chief")["resources"]["requests"]["cpu"],
            "250m"
        );
        assert_eq!(
            container(&job, "Worker")["resources"]["limits"]["cpu"],
            "2048m"
        );
        assert_eq!(
            container(&job, "PS")["resources"]["limits"]["memory"],
            "2Gi"
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
    let job = build(1, json!({ "workerReplicas": { "replicas": 100 } })).unwrap();
    assert_eq!(counts(&job), pairs(&[("Worker", 100)]));
    let err = build(1, json!({ "chiefReplicas": { "replicas": 1 } })).unwrap_err();
    assert!(
        err.contains("number of workers must be greater than 0"),
        "{err}"
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
        &kubeflow::task("tensorflow", 0, custom),
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
