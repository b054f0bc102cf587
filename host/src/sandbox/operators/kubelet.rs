//! The kubelet: a Pod goes through the statuses a node's kubelet writes
//! (restartPolicy Never), with its conditions (`PodScheduled`,
//! `Initialized`, `ContainersReady`, `Ready`: reasons and transition times)
//! and container states, one status per step.
//!
//! The outcome annotation picks the fate, so every way Flyte reads a pod
//! (reference/flyte-operators.md §D.4) can be met end to end:
//! - `succeed` (default): Pending (containers creating) → Running →
//!   Succeeded (exit 0); `fail`: → Failed (exit 1); `oom-killed`: → Failed,
//!   the containers `OOMKilled` (exit 137); `run-forever`: stays Running;
//! - `image-pull-backoff`: `ErrImagePull`, then `ImagePullBackOff`, Pending
//!   for good; `invalid-image-name`, `create-container-error`,
//!   `create-container-config-error`: Pending, the containers waiting so;
//! - `unschedulable`: Pending, `PodScheduled` False (`Unschedulable`);
//! - `evicted`, `preempted`, `node-shutdown`: Running, then Failed with
//!   reason `Evicted`, `Terminated` or `NodeShutdown` (exit 137).
//!
//! A pod naming its primary container (annotation `primary_container_name`)
//! beside others is a pod with sidecars: at its end the primary terminates
//! (per the outcome) while the sidecars keep running, and the pod stays
//! Running, as on a real node. Native sidecars (init containers with
//! `restartPolicy: Always`, Kubernetes 1.29+) run beside the containers and
//! are stopped when they end: the pod ends with them.

use std::time::Duration;

use serde_json::{Value, json};

use super::outcome;

const PRIMARY_ANNOTATION: &str = "primary_container_name";

/// The statuses the kubelet writes for `pod`, `step` apart.
pub(super) fn pod_states(pod: &Value, step: Duration) -> Vec<Value> {
    let kubelet = Kubelet::new(pod, step);
    let k = &kubelet;
    let image_pull = |image: &str| {
        format!(
            "failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": not found"
        )
    };
    match outcome(pod) {
        "fail" => vec![k.creating(), k.running(), k.ended(1, "Error")],
        "oom-killed" => vec![k.creating(), k.running(), k.ended(137, "OOMKilled")],
        "run-forever" => vec![k.creating(), k.running()],
        "image-pull-backoff" => vec![
            k.waiting("ErrImagePull", image_pull),
            k.waiting("ImagePullBackOff", |image| {
                format!("Back-off pulling image \"{image}\"")
            }),
        ],
        "invalid-image-name" => vec![k.waiting("InvalidImageName", |image| {
            format!(
                "Failed to apply default image tag \"{image}\": couldn't parse image name \"{image}\": invalid reference format"
            )
        })],
        "create-container-error" => vec![
            k.creating(),
            k.waiting("CreateContainerError", |_| {
                "failed to create containerd container: error unpacking image".to_owned()
            }),
        ],
        "create-container-config-error" => vec![
            k.creating(),
            k.waiting("CreateContainerConfigError", |_| {
                "secret \"task-secret\" not found".to_owned()
            }),
        ],
        "unschedulable" => vec![k.unschedulable()],
        "evicted" => vec![
            k.creating(),
            k.running(),
            k.killed(
                "Evicted",
                "The node was low on resource: memory. Threshold quantity: 100Mi, available: 64Mi.",
            ),
        ],
        "preempted" => vec![
            k.creating(),
            k.running(),
            k.killed(
                "Terminated",
                "Pod was terminated in response to imminent node shutdown.",
            ),
        ],
        "node-shutdown" => vec![
            k.creating(),
            k.running(),
            k.killed(
                "NodeShutdown",
                "Pod was rejected as the node is shutting down.",
            ),
        ],
        _ => vec![k.creating(), k.running(), k.ended(0, "Completed")],
    }
}

/// One pod on one node: its containers, its primary when it has sidecars,
/// and the times of its steps.
struct Kubelet {
    /// (name, image) of each container, in order.
    containers: Vec<(String, String)>,
    /// The container whose end is the pod's, when others run beside it.
    primary: Option<String>,
    /// (name, image) of each native sidecar (an init container that restarts
    /// always): running while the pod runs, stopped when it ends.
    sidecars: Vec<(String, String)>,
    start: chrono::DateTime<chrono::Utc>,
    step: Duration,
}

impl Kubelet {
    fn new(pod: &Value, step: Duration) -> Self {
        let named = |c: &Value| {
            let text = |key: &str| c[key].as_str().unwrap_or_default().to_owned();
            (text("name"), text("image"))
        };
        let containers: Vec<(String, String)> = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(named)
            .collect();
        let sidecars = pod["spec"]["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["restartPolicy"] == "Always")
            .map(named)
            .collect();
        let primary = pod["metadata"]["annotations"][PRIMARY_ANNOTATION]
            .as_str()
            .filter(|name| containers.len() > 1 && containers.iter().any(|(n, _)| n == name))
            .map(str::to_owned);
        Kubelet {
            containers,
            primary,
            sidecars,
            start: chrono::Utc::now(),
            step,
        }
    }

    /// The time of step `index` (0: the pod is scheduled).
    fn at(&self, index: u32) -> String {
        // Checked: the step comes from an annotation (capped, but still).
        let at = self
            .step
            .checked_mul(index)
            .and_then(|offset| chrono::Duration::from_std(offset).ok())
            .and_then(|offset| self.start.checked_add_signed(offset))
            .unwrap_or(self.start);
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    fn names(&self) -> String {
        let names: Vec<&str> = self.containers.iter().map(|(n, _)| n.as_str()).collect();
        names.join(" ")
    }

    /// A scheduled pod's conditions, readiness as given.
    fn conditions(&self, ready: bool, reason: &str, message: &str, changed: u32) -> Value {
        let readiness = |kind: &str| {
            let mut condition = json!({ "type": kind, "status": if ready { "True" } else { "False" },
                                        "lastProbeTime": null, "lastTransitionTime": self.at(changed) });
            if !ready {
                condition["reason"] = json!(reason);
                condition["message"] = json!(message);
            }
            condition
        };
        json!([
            { "type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": self.at(0) },
            readiness("Ready"),
            readiness("ContainersReady"),
            { "type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": self.at(0) },
        ])
    }

    fn status(&self, phase: &str, conditions: Value, containers: Vec<Value>) -> Value {
        let mut status = json!({ "phase": phase, "conditions": conditions, "hostIP": "10.0.0.2", "podIP": "10.244.0.7",
                                 "startTime": self.at(0), "qosClass": "Burstable", "containerStatuses": containers });
        if !self.sidecars.is_empty() {
            // Started before the containers; stopped (SIGTERM, a clean exit) once they end.
            let state = match phase {
                "Succeeded" | "Failed" => self.terminated(0, "Completed"),
                _ => self.running_state(),
            };
            let running = state.get("running").is_some();
            let sidecars: Vec<Value> = self
                .sidecars
                .iter()
                .map(|(name, image)| self.container(name, image, running, state.clone()))
                .collect();
            status["initContainerStatuses"] = json!(sidecars);
        }
        status
    }

    fn container(&self, name: &str, image: &str, ready: bool, state: Value) -> Value {
        json!({ "name": name, "image": image, "imageID": "", "ready": ready, "started": ready,
                "restartCount": 0, "state": state,
                "containerID": if state.get("waiting").is_some() { Value::Null } else { json!(format!("containerd://{name}")) } })
    }

    fn not_ready(&self) -> String {
        format!("containers with unready status: [{}]", self.names())
    }

    /// Scheduled; the containers are being created.
    fn creating(&self) -> Value {
        self.waiting("ContainerCreating", |_| String::new())
    }

    /// Every container waits for `reason`, the pod Pending (its message
    /// made from the container's image).
    fn waiting(&self, reason: &str, message: impl Fn(&str) -> String) -> Value {
        let containers = self
            .containers
            .iter()
            .map(|(name, image)| {
                let mut waiting = json!({ "reason": reason });
                let message = message(image);
                if !message.is_empty() {
                    waiting["message"] = json!(message);
                }
                self.container(name, image, false, json!({ "waiting": waiting }))
            })
            .collect();
        let conditions = self.conditions(false, "ContainersNotReady", &self.not_ready(), 0);
        self.status("Pending", conditions, containers)
    }

    fn running_state(&self) -> Value {
        json!({ "running": { "startedAt": self.at(1) } })
    }

    /// Every container started (step 1).
    fn running(&self) -> Value {
        let containers = self
            .containers
            .iter()
            .map(|(name, image)| self.container(name, image, true, self.running_state()))
            .collect();
        self.status("Running", self.conditions(true, "", "", 1), containers)
    }

    fn terminated(&self, exit_code: i32, reason: &str) -> Value {
        json!({ "terminated": { "exitCode": exit_code, "reason": reason,
                                "startedAt": self.at(1), "finishedAt": self.at(2) } })
    }

    /// The containers exit with `exit_code` (step 2). With sidecars only the
    /// primary does, and the pod runs on.
    fn ended(&self, exit_code: i32, reason: &str) -> Value {
        if let Some(primary) = &self.primary {
            let containers = self
                .containers
                .iter()
                .map(|(name, image)| match name == primary {
                    true => self.container(name, image, false, self.terminated(exit_code, reason)),
                    false => self.container(name, image, true, self.running_state()),
                })
                .collect();
            let message = format!("containers with unready status: [{primary}]");
            let conditions = self.conditions(false, "ContainersNotReady", &message, 2);
            return self.status("Running", conditions, containers);
        }
        let containers = self
            .containers
            .iter()
            .map(|(name, image)| {
                self.container(name, image, false, self.terminated(exit_code, reason))
            })
            .collect();
        let (phase, why) = match exit_code {
            0 => ("Succeeded", "PodCompleted"),
            _ => ("Failed", "PodFailed"),
        };
        self.status(phase, self.conditions(false, why, "", 2), containers)
    }

    /// The node kills the pod (step 2): every container, sidecars too.
    fn killed(&self, reason: &str, message: &str) -> Value {
        let containers = self
            .containers
            .iter()
            .map(|(name, image)| self.container(name, image, false, self.terminated(137, "Error")))
            .collect();
        let mut status = self.status(
            "Failed",
            self.conditions(false, "PodFailed", "", 2),
            containers,
        );
        status["reason"] = json!(reason);
        status["message"] = json!(message);
        for sidecar in status["initContainerStatuses"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            sidecar["state"] = self.terminated(137, "Error");
        }
        status
    }

    /// No node fits the pod: it is never scheduled.
    fn unschedulable(&self) -> Value {
        json!({ "phase": "Pending", "qosClass": "Burstable", "conditions": [{
            "type": "PodScheduled", "status": "False", "lastProbeTime": null, "lastTransitionTime": self.at(0),
            "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
        }] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(outcome: &str, containers: &[&str], primary: Option<&str>) -> Value {
        let mut annotations = json!({ super::super::OUTCOME_ANNOTATION: outcome });
        if let Some(primary) = primary {
            annotations[PRIMARY_ANNOTATION] = json!(primary);
        }
        let containers: Vec<Value> = containers
            .iter()
            .map(|name| json!({ "name": name, "image": format!("{name}:1") }))
            .collect();
        json!({ "metadata": { "annotations": annotations }, "spec": { "containers": containers } })
    }

    fn states(outcome: &str) -> Vec<Value> {
        pod_states(&pod(outcome, &["main"], None), Duration::from_secs(1))
    }

    fn phases(states: &[Value]) -> Vec<&str> {
        states
            .iter()
            .map(|s| s["phase"].as_str().unwrap())
            .collect()
    }

    fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == kind)
            .unwrap_or_else(|| panic!("a {kind} condition"))
    }

    fn first_state(status: &Value) -> &Value {
        &status["containerStatuses"][0]["state"]
    }

    #[test]
    fn native_sidecars_run_beside_the_containers_and_stop_with_them() {
        let mut pod = pod("succeed", &["main"], Some("main"));
        pod["spec"]["initContainers"] = json!([
            { "name": "agent", "image": "agent:1", "restartPolicy": "Always" },
            { "name": "setup", "image": "setup:1" },
        ]);
        let states = pod_states(&pod, Duration::from_secs(1));
        assert_eq!(phases(&states), ["Pending", "Running", "Succeeded"]);
        let sidecar = |status: &Value| status["initContainerStatuses"].as_array().unwrap().clone();
        assert_eq!(
            sidecar(&states[1]).len(),
            1,
            "only the init container that restarts always"
        );
        assert!(sidecar(&states[1])[0]["state"]["running"].is_object());
        assert_eq!(sidecar(&states[2])[0]["state"]["terminated"]["exitCode"], 0);
    }

    #[test]
    fn a_huge_step_does_not_overflow_the_times() {
        // The step comes from an annotation: the longest one still gives times.
        let states = pod_states(&pod("succeed", &["main"], None), Duration::MAX);
        assert_eq!(phases(&states).last(), Some(&"Succeeded"));
        let pod = json!({ "metadata": { "annotations": { super::super::STEP_ANNOTATION: "18446744073709551615" } } });
        assert_eq!(
            super::super::step(&pod, Duration::from_secs(1)),
            super::super::MAX_STEP
        );
    }

    #[test]
    fn a_pod_runs_to_success_as_a_kubelet_reports_it() {
        let states = states("succeed");
        assert_eq!(phases(&states), ["Pending", "Running", "Succeeded"]);
        assert_eq!(
            first_state(&states[0])["waiting"]["reason"],
            "ContainerCreating"
        );
        assert_eq!(condition(&states[0], "Ready")["status"], "False");
        assert_eq!(condition(&states[0], "PodScheduled")["status"], "True");
        assert_eq!(condition(&states[1], "Ready")["status"], "True");
        assert_eq!(condition(&states[1], "ContainersReady")["status"], "True");
        assert_eq!(first_state(&states[2])["terminated"]["exitCode"], 0);
        assert_eq!(condition(&states[2], "Ready")["reason"], "PodCompleted");
        let changed = |i: usize| condition(&states[i], "Ready")["lastTransitionTime"].clone();
        assert!(changed(0).as_str() < changed(2).as_str(), "a step later");
    }

    #[test]
    fn failures_end_the_pod_failed() {
        let failed = states("fail");
        assert_eq!(phases(&failed), ["Pending", "Running", "Failed"]);
        assert_eq!(first_state(&failed[2])["terminated"]["exitCode"], 1);
        let oom = states("oom-killed");
        assert_eq!(phases(&oom), ["Pending", "Running", "Failed"]);
        assert_eq!(
            first_state(&oom[2])["terminated"],
            json!({ "exitCode": 137, "reason": "OOMKilled", "startedAt": oom[1]["containerStatuses"][0]["state"]["running"]["startedAt"], "finishedAt": oom[2]["containerStatuses"][0]["state"]["terminated"]["finishedAt"] })
        );
        assert_eq!(phases(&states("run-forever")), ["Pending", "Running"]);
    }

    #[test]
    fn image_and_container_errors_keep_the_pod_pending() {
        let backoff = states("image-pull-backoff");
        assert_eq!(phases(&backoff), ["Pending", "Pending"]);
        let reasons: Vec<&Value> = backoff
            .iter()
            .map(|s| &first_state(s)["waiting"]["reason"])
            .collect();
        assert_eq!(
            reasons,
            [&json!("ErrImagePull"), &json!("ImagePullBackOff")]
        );
        assert_eq!(
            first_state(&backoff[1])["waiting"]["message"],
            "Back-off pulling image \"main:1\""
        );
        assert_eq!(
            condition(&backoff[1], "Ready")["reason"],
            "ContainersNotReady"
        );
        for (outcome, reason) in [
            ("invalid-image-name", "InvalidImageName"),
            ("create-container-error", "CreateContainerError"),
            (
                "create-container-config-error",
                "CreateContainerConfigError",
            ),
        ] {
            let states = states(outcome);
            let last = states.last().unwrap();
            assert_eq!(last["phase"], "Pending", "{outcome}");
            assert_eq!(first_state(last)["waiting"]["reason"], reason, "{outcome}");
        }
    }

    #[test]
    fn an_unschedulable_pod_is_never_scheduled() {
        let states = states("unschedulable");
        assert_eq!(phases(&states), ["Pending"]);
        let scheduled = condition(&states[0], "PodScheduled");
        assert_eq!(
            (&scheduled["status"], &scheduled["reason"]),
            (&json!("False"), &json!("Unschedulable"))
        );
        assert!(states[0].get("containerStatuses").is_none());
    }

    #[test]
    fn the_node_kills_evicted_preempted_and_shut_down_pods() {
        for (outcome, reason) in [
            ("evicted", "Evicted"),
            ("preempted", "Terminated"),
            ("node-shutdown", "NodeShutdown"),
        ] {
            let states = states(outcome);
            assert_eq!(
                phases(&states),
                ["Pending", "Running", "Failed"],
                "{outcome}"
            );
            assert_eq!(states[2]["reason"], reason);
            assert!(states[2]["message"].as_str().is_some_and(|m| !m.is_empty()));
            assert_eq!(first_state(&states[2])["terminated"]["exitCode"], 137);
        }
    }

    #[test]
    fn sidecars_keep_running_after_the_primary_ends() {
        let pod = pod("succeed", &["main", "agent"], Some("main"));
        let states = pod_states(&pod, Duration::from_secs(1));
        assert_eq!(phases(&states), ["Pending", "Running", "Running"]);
        let last = &states[2];
        assert_eq!(first_state(last)["terminated"]["exitCode"], 0);
        assert!(last["containerStatuses"][1]["state"]["running"].is_object());
        assert_eq!(
            condition(last, "Ready")["message"],
            "containers with unready status: [main]"
        );
        let failing = pod_states(&pod_with_outcome(&pod, "fail"), Duration::from_secs(1));
        assert_eq!(failing[2]["phase"], "Running");
        assert_eq!(first_state(&failing[2])["terminated"]["exitCode"], 1);
        // Without the annotation all containers end together.
        let plain = pod_states(
            &self::pod("succeed", &["main", "agent"], None),
            Duration::ZERO,
        );
        assert_eq!(plain[2]["phase"], "Succeeded");
    }

    fn pod_with_outcome(pod: &Value, outcome: &str) -> Value {
        let mut pod = pod.clone();
        pod["metadata"]["annotations"][super::super::OUTCOME_ANNOTATION] = json!(outcome);
        pod
    }
}
