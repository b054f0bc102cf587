//! The Dask Kubernetes operator (dask-kubernetes' controller) for
//! `DaskJob`s (`kubernetes.dask.org/v1`): a new job gets `JobCreated`, then
//! `ClusterCreated` with its cluster's pods and the runner's, then
//! `Running`, then `Successful` or `Failed` — as the outcome annotation
//! says.
//!
//! The cluster is named after the job. Its pods — `<job>-scheduler`,
//! `<job>-default-worker-<5 letters>` per worker and the runner
//! `<job>-runner` — are owned by the job and labelled
//! `dask.org/cluster-name` and `dask.org/component`. As the operator does,
//! the runner and the workers learn the scheduler's address
//! (`DASK_SCHEDULER_ADDRESS`) and each worker its name (`DASK_WORKER_NAME`)
//! unless the pod already sets them.
//!
//! Not simulated: the scheduler Service and the DaskCluster object (the
//! pods belong to the job directly), and the cluster's removal once the job
//! ends.

use serde_json::{Value, json};

use super::{
    Kind, MAX_SIMULATED_REPLICAS, NOW, OUTCOME_ANNOTATION, outcome, owned_pod, random_suffix,
};

pub fn kind() -> Kind {
    Kind::new("kubernetes.dask.org/v1", "DaskJob", "daskjobs")
}

/// A DaskJob's steps, as `statusPatch`es; the pods come with the cluster.
pub(super) fn steps(job: &Value) -> Vec<Value> {
    let name = job["metadata"]["name"].as_str().unwrap_or_default();
    let patch = |status: Value| json!({ "statusPatch": status });
    let mut cluster_created = patch(json!({
        "jobStatus": "ClusterCreated",
        "clusterName": name,
        "jobRunnerPodName": runner_name(name),
    }));
    cluster_created["createPods"] = json!(true);
    let mut steps = vec![
        patch(json!({ "jobStatus": "JobCreated" })),
        cluster_created,
        patch(json!({ "jobStatus": "Running", "startTime": NOW })),
    ];
    match outcome(job) {
        "fail" => steps.push(patch(json!({ "jobStatus": "Failed", "endTime": NOW }))),
        "run-forever" => {}
        _ => steps.push(patch(json!({ "jobStatus": "Successful", "endTime": NOW }))),
    }
    steps
}

fn runner_name(job: &str) -> String {
    format!("{job}-runner")
}

/// The pods the operator makes for `job`: the scheduler, the workers (at
/// most [`MAX_SIMULATED_REPLICAS`]) and the runner.
pub(super) fn pods(job: &Value) -> Vec<Value> {
    let name = job["metadata"]["name"].as_str().unwrap_or_default();
    let namespace = job["metadata"]["namespace"].as_str().unwrap_or_default();
    let cluster = &job["spec"]["cluster"];
    let address = format!("tcp://{name}-scheduler.{namespace}.svc.cluster.local:8786");
    let pod = |pod_name: String, component: &str, metadata: &Value, spec: Value| {
        let labels = [
            ("dask.org/cluster-name", json!(name)),
            ("dask.org/component", json!(component)),
        ];
        let template = json!({ "metadata": metadata, "spec": spec });
        owned_pod(&kind(), job, pod_name, &template, &labels)
    };

    // The scheduler and the workers serve until the cluster goes: only the
    // runner ends, as the job's outcome says.
    let serving = |mut pod: Value| {
        pod["metadata"]["annotations"][OUTCOME_ANNOTATION] = json!("run-forever");
        pod
    };
    let mut pods = vec![serving(pod(
        format!("{name}-scheduler"),
        "scheduler",
        &cluster["metadata"],
        cluster["spec"]["scheduler"]["spec"].clone(),
    ))];
    let worker = &cluster["spec"]["worker"];
    let replicas = worker["replicas"].as_u64().unwrap_or(1);
    for _ in 0..replicas.min(MAX_SIMULATED_REPLICAS) {
        let worker_name = format!("{name}-default-worker-{}", random_suffix(5));
        let env = [
            ("DASK_SCHEDULER_ADDRESS", address.clone()),
            ("DASK_WORKER_NAME", worker_name.clone()),
        ];
        let spec = with_env(&worker["spec"], &env);
        pods.push(serving(pod(
            worker_name,
            "worker",
            &cluster["metadata"],
            spec,
        )));
    }
    let spec = with_env(
        &job["spec"]["job"]["spec"],
        &[("DASK_SCHEDULER_ADDRESS", address)],
    );
    pods.push(pod(runner_name(name), "job-runner", &job["metadata"], spec));
    pods
}

/// `spec` with each variable added to every container that does not set it.
fn with_env(spec: &Value, vars: &[(&str, String)]) -> Value {
    let mut spec = spec.clone();
    for container in spec["containers"].as_array_mut().into_iter().flatten() {
        if !container["env"].is_array() {
            container["env"] = json!([]);
        }
        let Some(env) = container["env"].as_array_mut() else {
            continue;
        };
        for (name, value) in vars {
            if !env.iter().any(|e| e["name"] == *name) {
                env.push(json!({ "name": name, "value": value }));
            }
        }
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(replicas: u64, outcome: &str) -> Value {
        let pod_spec = |name: &str| json!({ "containers": [{ "name": name, "image": "i" }] });
        let mut job = json!({
            "apiVersion": "kubernetes.dask.org/v1", "kind": "DaskJob",
            "metadata": { "name": "dj", "namespace": "ns", "uid": "u-1" },
            "spec": {
                "job": { "spec": pod_spec("job-runner") },
                "cluster": { "metadata": { "labels": { "team": "a" } }, "spec": {
                    "worker": { "replicas": replicas, "spec": pod_spec("dask-worker") },
                    "scheduler": { "spec": pod_spec("scheduler") },
                } },
            },
        });
        job["metadata"]["annotations"][OUTCOME_ANNOTATION] = json!(outcome);
        job
    }

    fn statuses(steps: &[Value]) -> Vec<&str> {
        steps
            .iter()
            .map(|s| s["statusPatch"]["jobStatus"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn a_job_goes_through_the_operators_statuses_to_its_outcome() {
        let steps = steps(&job(1, "succeed"));
        assert_eq!(
            statuses(&steps),
            ["JobCreated", "ClusterCreated", "Running", "Successful"]
        );
        assert_eq!(
            steps[1],
            json!({ "statusPatch": { "jobStatus": "ClusterCreated", "clusterName": "dj", "jobRunnerPodName": "dj-runner" },
                    "createPods": true })
        );
        assert_eq!(steps[2]["statusPatch"]["startTime"], NOW);
        assert_eq!(steps[3]["statusPatch"]["endTime"], NOW);
        assert_eq!(statuses(&super::steps(&job(1, "fail")))[3..], ["Failed"]);
        assert_eq!(
            statuses(&super::steps(&job(1, "run-forever"))),
            ["JobCreated", "ClusterCreated", "Running"]
        );
    }

    #[test]
    fn the_cluster_and_the_runner_are_pods_of_the_job() {
        let pods = pods(&job(2, "fail"));
        let names: Vec<&str> = pods
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), 4);
        assert_eq!((names[0], names[3]), ("dj-scheduler", "dj-runner"));
        for worker in &names[1..3] {
            let suffix = worker.strip_prefix("dj-default-worker-").unwrap();
            assert_eq!(suffix.len(), 5, "{worker}");
        }
        let components: Vec<&Value> = pods
            .iter()
            .map(|p| &p["metadata"]["labels"]["dask.org/component"])
            .collect();
        assert_eq!(components, ["scheduler", "worker", "worker", "job-runner"]);
        for pod in &pods {
            assert_eq!(pod["metadata"]["labels"]["dask.org/cluster-name"], "dj");
            assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], "u-1");
        }
        assert_eq!(pods[1]["metadata"]["labels"]["team"], "a");
        // Only the runner ends as the job's outcome says.
        let outcomes: Vec<&Value> = pods
            .iter()
            .map(|p| &p["metadata"]["annotations"][OUTCOME_ANNOTATION])
            .collect();
        assert_eq!(
            outcomes,
            ["run-forever", "run-forever", "run-forever", "fail"]
        );

        let address = json!({ "name": "DASK_SCHEDULER_ADDRESS", "value": "tcp://dj-scheduler.ns.svc.cluster.local:8786" });
        let env = |pod: &Value| pod["spec"]["containers"][0]["env"].clone();
        assert_eq!(
            env(&pods[1]),
            json!([address, { "name": "DASK_WORKER_NAME", "value": names[1] }])
        );
        assert_eq!(env(&pods[3]), json!([address]));
        assert!(env(&pods[0]).is_null(), "the scheduler gets nothing");
    }

    #[test]
    fn variables_the_pod_sets_are_kept() {
        let spec = json!({ "containers": [{ "name": "c", "env": [{ "name": "DASK_WORKER_NAME", "value": "mine" }] }] });
        let spec = with_env(&spec, &[("DASK_WORKER_NAME", "theirs".into())]);
        assert_eq!(
            spec["containers"][0]["env"],
            json!([{ "name": "DASK_WORKER_NAME", "value": "mine" }])
        );
    }

    #[test]
    fn workers_are_capped() {
        assert_eq!(
            pods(&job(1_000_000, "succeed")).len() as u64,
            MAX_SIMULATED_REPLICAS + 2
        );
    }
}
