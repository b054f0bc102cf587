//! Flyte `pytorch` tasks as Kubeflow training-operator `PyTorchJob`s
//! (`kubeflow.org/v1`), as Flyte's own PyTorch plugin builds them: tasks
//! written with `flytekitplugins-kfpytorch` (`PyTorch`, `Elastic`) run
//! unchanged.
//!
//! - task_type_version 0: `flyteidl.plugins.DistributedPyTorchTrainingTask`
//!   (a worker count; every replica shares the task's pod);
//! - task_type_version 1 (what flytekit writes): the `flyteidl.plugins.kubeflow`
//!   message, with an image, resources and restart policy per role and a
//!   run policy.
//!
//! An elastic config makes a worker-only job with an `elasticPolicy`.
//!
//! What Flyte's plugin has and this one cannot (the host's contract has no
//! place for it):
//! - no `ErrorAggregationStrategy` property: propeller's k8s plugin manager
//!   uses it to read a distributed job's per-worker error files; on the
//!   agent path propeller reads outputs itself and the host reads none. With
//!   `k8s.enable-distributed-error-aggregation` the workers still get
//!   `_F_DES=Earliest`, as with Flyte;
//! - no execution image override (Flyte's `container-image-override`
//!   vector): propeller leaves the agent request's
//!   `TaskExecutionMetadata.overrides` unset and the host's task has no
//!   overrides, so every replica runs the template's image unless its role
//!   names another.

use flytewasm_plugin_sdk::flyteidl::plugins::{self as v0, kubeflow as v1};
use flytewasm_plugin_sdk::kubeflow::{self, Replica, ReplicaPod, Role};
use flytewasm_plugin_sdk::prelude::*;

/// The container the operator runs in each replica.
const CONTAINER: &str = "pytorch";

pub struct PyTorch;

/// The operator's `elasticPolicy` from an elastic config (either version's:
/// the same fields). Every field is set, zeros included, as Flyte does.
macro_rules! elastic_policy {
    ($config:expr) => {
        $config.map(|e| {
            json!({
                "minReplicas": e.min_replicas,
                "maxReplicas": e.max_replicas,
                "rdzvBackend": e.rdzv_backend,
                "nProcPerNode": e.nproc_per_node,
                "maxRestarts": e.max_restarts,
            })
        })
    };
}

impl Plugin for PyTorch {
    fn describe() -> PluginInfo {
        kubeflow::plugin_info(
            "pytorch",
            env!("CARGO_PKG_VERSION"),
            "PyTorchJob",
            "pytorchjobs",
        )
    }

    fn build_resource(ctx: &TaskContext) -> Result<Value, PluginError> {
        let (master, worker, elastic, run_policy) = match ctx.template.task_type_version {
            0 => {
                let task: v0::DistributedPyTorchTrainingTask = ctx.custom()?;
                let base = kubeflow::base_replica_spec(ctx, CONTAINER, None)?;
                let elastic = elastic_policy!(task.elastic_config);
                (
                    kubeflow::with_replicas(&base, 1),
                    kubeflow::with_replicas(&base, task.workers),
                    elastic,
                    json!({}),
                )
            }
            1 => {
                let task: v1::DistributedPyTorchTrainingTask = ctx.custom()?;
                let master = Replica::of(task.master_replicas.as_ref());
                let mut worker = kubeflow::replica_spec(
                    ctx,
                    CONTAINER,
                    &Replica::of(task.worker_replicas.as_ref()),
                    Role::Replicated,
                )?;
                // Flyte names each worker to itself (and asks for the earliest
                // error when aggregation is on): the first container of the
                // Worker only, never the Master.
                if let Some(first) = worker["template"]["spec"]["containers"].get_mut(0) {
                    let mut env = first["env"].as_array().cloned().unwrap_or_default();
                    env.push(json!({ "name": "_F_WN", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }));
                    if ctx.k8s_defaults.enable_distributed_error_aggregation {
                        env.push(json!({ "name": "_F_DES", "value": "Earliest" }));
                    }
                    first["env"] = json!(env);
                }
                let elastic = elastic_policy!(task.elastic_config);
                (
                    kubeflow::replica_spec(ctx, CONTAINER, &master, Role::Master)?,
                    worker,
                    elastic,
                    kubeflow::run_policy(task.run_policy.as_ref()),
                )
            }
            _ => return Err(kubeflow::unsupported_version(ctx)),
        };

        // No 0-replica Worker (the operator rejects it); an elastic job is
        // workers only.
        let mut specs = serde_json::Map::new();
        if elastic.is_none() {
            specs.insert("Master".into(), master);
        }
        if worker["replicas"].as_i64().unwrap_or(0) > 0 {
            specs.insert("Worker".into(), worker);
        }
        let mut spec = json!({ "runPolicy": run_policy, "pytorchReplicaSpecs": specs });
        if let Some(elastic) = elastic {
            spec["elasticPolicy"] = elastic;
        }
        Ok(
            json!({ "apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {}, "spec": spec }),
        )
    }

    fn get_task_phase(ctx: &PhaseContext, job: &Value) -> Result<PhaseInfo, PluginError> {
        // The master's link is named `master`, the workers' carry no name (Flyte's).
        let name = job["metadata"]["name"].as_str().unwrap_or_default();
        let mut pods = Vec::new();
        if job["spec"]["pytorchReplicaSpecs"].get("Master").is_some() {
            pods.push(ReplicaPod {
                pod_name: format!("{name}-master-0"),
                log_name: "master",
                container: CONTAINER,
                timed: true,
            });
        }
        for pod_name in kubeflow::replica_pod_names(job, "pytorchReplicaSpecs", "Worker") {
            pods.push(ReplicaPod {
                pod_name,
                log_name: "",
                container: CONTAINER,
                timed: true,
            });
        }
        let logs = kubeflow::log_links(ctx, job, &pods)?;
        kubeflow::job_phase(ctx, job, "pytorch", logs)
    }
}

export_plugin!(PyTorch);
