//! Flyte `tensorflow` tasks as Kubeflow training-operator `TFJob`s
//! (`kubeflow.org/v1`), as Flyte's own TensorFlow plugin builds them: tasks
//! written with `flytekitplugins-kftensorflow` (`TfJob`) run unchanged.
//!
//! Four roles — Chief, Worker, PS, Evaluator — each present only with at
//! least one replica, with as many as the task asks (a Chief too: Flyte
//! does not force it to one); a job needs workers. task_type_version 0 has only
//! counts; version 1 (what flytekit writes) has an image, resources and
//! restart policy per role and a run policy.

use flytewasm_plugin_sdk::flyteidl::plugins::{self as v0, kubeflow as v1};
use flytewasm_plugin_sdk::kubeflow::{self, Replica, ReplicaPod, Role};
use flytewasm_plugin_sdk::prelude::*;

/// The container the operator runs in each replica.
const CONTAINER: &str = "tensorflow";

pub struct TensorFlow;

impl Plugin for TensorFlow {
    fn describe() -> PluginInfo {
        kubeflow::plugin_info("tensorflow", env!("CARGO_PKG_VERSION"), "TFJob", "tfjobs")
    }

    fn build_resource(ctx: &TaskContext) -> Result<Value, PluginError> {
        let mut specs = serde_json::Map::new();
        let run_policy = match ctx.template.task_type_version {
            0 => {
                let task: v0::DistributedTensorflowTrainingTask = ctx.custom()?;
                let base = kubeflow::base_replica_spec(ctx, CONTAINER, None)?;
                for (role, count) in [
                    ("Chief", task.chief_replicas),
                    ("Worker", task.workers),
                    ("PS", task.ps_replicas),
                    ("Evaluator", task.evaluator_replicas),
                ] {
                    if count > 0 {
                        specs.insert(role.into(), kubeflow::with_replicas(&base, count));
                    }
                }
                json!({})
            }
            1 => {
                let task: v1::DistributedTensorflowTrainingTask = ctx.custom()?;
                for (role, spec) in [
                    ("Chief", &task.chief_replicas),
                    ("Worker", &task.worker_replicas),
                    ("PS", &task.ps_replicas),
                    ("Evaluator", &task.evaluator_replicas),
                ] {
                    // A chief is not forced to one replica (Flyte's).
                    let replica = Replica::of(spec.as_ref());
                    if replica.replicas > 0 {
                        specs.insert(
                            role.into(),
                            kubeflow::replica_spec(ctx, CONTAINER, &replica, Role::Replicated)?,
                        );
                    }
                }
                kubeflow::run_policy(task.run_policy.as_ref())
            }
            _ => return Err(kubeflow::unsupported_version(ctx)),
        };
        if !specs.contains_key("Worker") {
            return Err(PluginError::bad_task(
                "number of workers must be greater than 0",
            ));
        }
        Ok(json!({
            "apiVersion": "kubeflow.org/v1",
            "kind": "TFJob",
            "metadata": {},
            "spec": { "runPolicy": run_policy, "tfReplicaSpecs": specs },
        }))
    }

    fn get_task_phase(ctx: &PhaseContext, job: &Value) -> Result<PhaseInfo, PluginError> {
        let name = job["metadata"]["name"].as_str().unwrap_or_default();
        let count = |role: &str| {
            job["spec"]["tfReplicaSpecs"][role]["replicas"]
                .as_i64()
                .unwrap_or(0)
        };
        let mut pods: Vec<ReplicaPod> =
            kubeflow::replica_pod_names(job, "tfReplicaSpecs", "Worker")
                .into_iter()
                .map(|pod_name| ReplicaPod {
                    pod_name,
                    log_name: "",
                    container: CONTAINER,
                    timed: true,
                })
                .collect();
        // Flyte's links to the other roles name pods `-psReplica-`,
        // `-chiefReplica-`, `-evaluatorReplica-` (the operator's are `-ps-`...),
        // with no container or times: kept so the links match Flyte's.
        let untimed = |pod_name: String| ReplicaPod {
            pod_name,
            log_name: "",
            container: "",
            timed: false,
        };
        let ps = count("PS").clamp(0, kubeflow::MAX_LOG_LINKS as i64);
        pods.extend((0..ps).map(|i| untimed(format!("{name}-psReplica-{i}"))));
        if count("Chief") != 0 {
            pods.push(untimed(format!("{name}-chiefReplica-0")));
        }
        if count("Evaluator") != 0 {
            pods.push(untimed(format!("{name}-evaluatorReplica-0")));
        }
        let logs = kubeflow::log_links(ctx, job, &pods)?;
        kubeflow::job_phase(ctx, job, "tensorflow", logs)
    }
}

export_plugin!(TensorFlow);
