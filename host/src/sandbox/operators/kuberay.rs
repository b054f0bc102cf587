//! KubeRay (v1.5) for RayJobs (`ray.io/v1`): a new job is validated as
//! KubeRay does, then goes `Initializing` (its cluster named), `Running`
//! (the cluster's head and worker pods, the job PENDING then RUNNING) and
//! `Complete` or `Failed`. The RayCluster object and the submitter Job are
//! not simulated: the pods belong to the RayJob itself.

use serde_json::{Value, json};

use super::{MAX_SIMULATED_PODS, MAX_SIMULATED_REPLICAS, NOW, outcome, owned_pod, random_suffix};
use crate::sandbox::store::Kind;

pub fn kind() -> Kind {
    Kind::new("ray.io/v1", "RayJob", "rayjobs")
}

/// KubeRay's longest RayJob name: its cluster's (53) less the `-xxxxx`
/// the cluster name may grow by.
const MAX_NAME_LENGTH: usize = 47;

/// A RayJob's steps, as `statusPatch`es (the first pods with `createPods`).
pub(super) fn steps(job: &Value) -> Vec<Value> {
    if let Some(message) = validation_error(job) {
        return vec![json!({ "statusPatch": {
            "jobDeploymentStatus": "ValidationFailed", "reason": "ValidationFailed", "message": message } })];
    }
    let name = job["metadata"]["name"].as_str().unwrap_or_default();
    let namespace = job["metadata"]["namespace"].as_str().unwrap_or_default();
    let cluster = format!("{name}-raycluster-{}", random_suffix(5));
    let job_id = format!("{name}-{}", random_suffix(5));
    let mut steps = vec![
        json!({ "statusPatch": { "jobDeploymentStatus": "Initializing", "rayClusterName": cluster,
                                 "jobId": job_id, "startTime": NOW } }),
        json!({ "createPods": true, "statusPatch": { "jobDeploymentStatus": "Running", "jobStatus": "PENDING",
                "dashboardURL": format!("{cluster}-head-svc.{namespace}.svc.cluster.local:8265") } }),
        json!({ "statusPatch": { "jobStatus": "RUNNING" } }),
    ];
    match outcome(job) {
        "fail" => steps.push(json!({ "statusPatch": {
            "jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "AppFailed",
            "message": format!("Job {job_id} failed: the sandbox was asked to fail it"), "endTime": NOW } })),
        "run-forever" => {}
        _ => steps.push(json!({ "statusPatch": {
            "jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED", "endTime": NOW } })),
    }
    steps
}

/// What KubeRay's validation refuses (of what a Flyte job may get wrong).
fn validation_error(job: &Value) -> Option<String> {
    let name = job["metadata"]["name"].as_str().unwrap_or_default();
    let spec = &job["spec"];
    if name.len() > MAX_NAME_LENGTH {
        return Some(format!(
            "RayJob name `{name}` is longer than {MAX_NAME_LENGTH} characters"
        ));
    }
    if !is_dns1035_label(name) {
        return Some(format!("RayJob name `{name}` is not a DNS-1035 label"));
    }
    let ttl = spec["ttlSecondsAfterFinished"].as_i64().unwrap_or(0);
    if ttl < 0 {
        return Some(format!(
            "ttlSecondsAfterFinished is {ttl}: it may not be negative"
        ));
    }
    if spec["shutdownAfterJobFinishes"] != true && ttl > 0 {
        return Some(format!(
            "ttlSecondsAfterFinished is {ttl} with shutdownAfterJobFinishes false: a cluster that is kept has no TTL"
        ));
    }
    let has_containers = |group: &Value| {
        group["template"]["spec"]["containers"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    };
    let cluster = &spec["rayClusterSpec"];
    if !has_containers(&cluster["headGroupSpec"]) {
        return Some("rayClusterSpec.headGroupSpec.template has no containers".into());
    }
    let workers = cluster["workerGroupSpecs"].as_array().into_iter().flatten();
    if let Some(group) = workers.into_iter().find(|g| !has_containers(g)) {
        return Some(format!(
            "worker group `{}` has no containers",
            group["groupName"].as_str().unwrap_or_default()
        ));
    }
    None
}

/// Lower-case letters, digits and `-`, starting with a letter and ending
/// with a letter or digit, at most 63 characters.
fn is_dns1035_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// The cluster's pods, as KubeRay makes them: one head, then `replicas`
/// per worker group (at most [`MAX_SIMULATED_REPLICAS`], and
/// [`MAX_SIMULATED_PODS`] in all), each labelled with its cluster, node type
/// and group.
pub(super) fn pods(job: &Value) -> Vec<Value> {
    let cluster = job["status"]["rayClusterName"].as_str().unwrap_or_default();
    let groups = &job["spec"]["rayClusterSpec"];
    let pod = |name: String, template: &Value, node_type: &str, group: &str| {
        let labels = [
            ("ray.io/cluster", json!(cluster)),
            ("ray.io/node-type", json!(node_type)),
            ("ray.io/group", json!(group)),
            ("ray.io/is-ray-node", json!("yes")),
        ];
        owned_pod(&kind(), job, name, template, &labels)
    };
    let mut pods = vec![pod(
        format!("{cluster}-head-{}", random_suffix(5)),
        &groups["headGroupSpec"]["template"],
        "head",
        "headgroup",
    )];
    for group in groups["workerGroupSpecs"].as_array().into_iter().flatten() {
        let group_name = group["groupName"].as_str().unwrap_or_default();
        let replicas = group["replicas"].as_u64().unwrap_or(0);
        for _ in 0..replicas.min(MAX_SIMULATED_REPLICAS) {
            if pods.len() >= MAX_SIMULATED_PODS {
                return pods;
            }
            pods.push(pod(
                format!("{cluster}-{group_name}-worker-{}", random_suffix(5)),
                &group["template"],
                "worker",
                group_name,
            ));
        }
    }
    pods
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, annotations: Value) -> Value {
        let template =
            json!({ "spec": { "containers": [{ "name": "ray-head", "image": "ray" }] } });
        json!({
            "apiVersion": "ray.io/v1", "kind": "RayJob",
            "metadata": { "name": name, "namespace": "ns", "uid": "u1", "annotations": annotations },
            "spec": {
                "shutdownAfterJobFinishes": true, "ttlSecondsAfterFinished": 3600,
                "rayClusterSpec": {
                    "headGroupSpec": { "template": template },
                    "workerGroupSpecs": [{ "groupName": "workers", "replicas": 2, "template": template }],
                },
            },
        })
    }

    fn deployment_statuses(steps: &[Value]) -> Vec<&str> {
        steps
            .iter()
            .filter_map(|s| s["statusPatch"]["jobDeploymentStatus"].as_str())
            .collect()
    }

    #[test]
    fn a_job_initializes_runs_its_cluster_and_completes() {
        let steps = steps(&job("train", json!({})));
        assert_eq!(
            deployment_statuses(&steps),
            ["Initializing", "Running", "Complete"]
        );
        let cluster = steps[0]["statusPatch"]["rayClusterName"].as_str().unwrap();
        assert!(
            cluster.starts_with("train-raycluster-")
                && cluster.len() == "train-raycluster-".len() + 5,
            "{cluster}"
        );
        assert_eq!(steps[0]["statusPatch"]["startTime"], NOW);
        assert!(steps[0]["statusPatch"]["jobId"].is_string());
        assert_eq!(steps[1]["createPods"], true);
        assert_eq!(steps[1]["statusPatch"]["jobStatus"], "PENDING");
        assert_eq!(
            steps[1]["statusPatch"]["dashboardURL"],
            format!("{cluster}-head-svc.ns.svc.cluster.local:8265")
        );
        assert_eq!(steps[2]["statusPatch"]["jobStatus"], "RUNNING");
        assert_eq!(steps[3]["statusPatch"]["jobStatus"], "SUCCEEDED");
        assert_eq!(steps[3]["statusPatch"]["endTime"], NOW);
    }

    #[test]
    fn outcomes_fail_the_job_or_keep_it_running() {
        let failed = steps(&job(
            "train",
            json!({ super::super::OUTCOME_ANNOTATION: "fail" }),
        ));
        assert_eq!(
            deployment_statuses(&failed),
            ["Initializing", "Running", "Failed"]
        );
        let last = &failed[3]["statusPatch"];
        assert_eq!(
            (last["jobStatus"].as_str(), last["reason"].as_str()),
            (Some("FAILED"), Some("AppFailed"))
        );
        assert!(last["message"].as_str().is_some_and(|m| !m.is_empty()));

        let forever = steps(&job(
            "train",
            json!({ super::super::OUTCOME_ANNOTATION: "run-forever" }),
        ));
        assert_eq!(deployment_statuses(&forever), ["Initializing", "Running"]);
        assert_eq!(
            forever.last().unwrap()["statusPatch"]["jobStatus"],
            "RUNNING"
        );
    }

    #[test]
    fn invalid_jobs_fail_validation_and_go_no_further() {
        let invalid = |job: Value| {
            let steps = steps(&job);
            assert_eq!(deployment_statuses(&steps), ["ValidationFailed"], "{job}");
            assert_eq!(steps[0]["statusPatch"]["reason"], "ValidationFailed");
            steps[0]["statusPatch"]["message"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert!(invalid(job(&"a".repeat(48), json!({}))).contains("longer than 47"));
        assert!(invalid(job("9-starts-with-a-digit", json!({}))).contains("DNS-1035"));
        let mut kept = job("train", json!({}));
        kept["spec"]["shutdownAfterJobFinishes"] = json!(false);
        assert!(invalid(kept.clone()).contains("shutdownAfterJobFinishes false"));
        kept["spec"]["ttlSecondsAfterFinished"] = json!(0);
        assert_eq!(deployment_statuses(&steps(&kept))[0], "Initializing");
        let mut negative = job("train", json!({}));
        negative["spec"]["ttlSecondsAfterFinished"] = json!(-1);
        assert!(invalid(negative).contains("negative"));
        let mut headless = job("train", json!({}));
        headless["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"] =
            json!([]);
        assert!(invalid(headless).contains("headGroupSpec"));
        // 47 characters is fine.
        assert_eq!(
            deployment_statuses(&steps(&job(&"a".repeat(47), json!({}))))[0],
            "Initializing"
        );
    }

    #[test]
    fn the_cluster_has_a_head_and_each_group_its_replicas() {
        let mut running = job("train", json!({}));
        running["status"] = json!({ "rayClusterName": "train-raycluster-abcde" });
        running["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] = json!(100_000);
        let pods = pods(&running);
        assert_eq!(pods.len(), 1 + MAX_SIMULATED_REPLICAS as usize);
        let head = &pods[0];
        assert!(
            head["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("train-raycluster-abcde-head-")
        );
        assert_eq!(head["metadata"]["labels"]["ray.io/node-type"], "head");
        assert_eq!(
            head["metadata"]["labels"]["ray.io/cluster"],
            "train-raycluster-abcde"
        );
        assert_eq!(head["metadata"]["ownerReferences"][0]["kind"], "RayJob");
        assert_eq!(head["metadata"]["ownerReferences"][0]["uid"], "u1");
        let worker = &pods[1];
        assert!(
            worker["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("train-raycluster-abcde-workers-worker-")
        );
        assert_eq!(worker["metadata"]["labels"]["ray.io/group"], "workers");
        assert_eq!(worker["spec"]["containers"][0]["name"], "ray-head");
    }
}
