//! Flyte `mpi` tasks as Kubeflow training-operator `MPIJob`s
//! (`kubeflow.org/v1`, the training operator's — not mpi-operator's
//! v2beta1), as Flyte's own MPI plugin builds them: `MPIJob` and
//! `HorovodJob` tasks written with `flytekitplugins-kfmpi` run unchanged.
//!
//! The launcher runs the task's command line (flytekit's `mpirun …` or
//! `horovodrun …` prefix, then pyflyte); workers get their role's `command`
//! as the container's args. The launcher always has one replica (v0 raises
//! a count below one and passes a larger one to the operator, which refuses
//! it).
//!
//! Left to the operator, as Flyte leaves it: training-operator runs a
//! worker whose first container has no command as `sleep 365d`, whatever
//! its args. flytekit sets no command, so its workers only host the
//! processes the launcher starts through the operator's hostfile and
//! kubexec; a role's `command` takes effect only with a pod template that
//! gives the container a command.
//!
//! One deliberate difference from Flyte: with task_type_version 1, Flyte
//! always writes `slotsPerWorker: 1`, whatever the task's `slots` (its v1
//! path never reads the field), while flytekit's launcher runs
//! `mpirun -np <workers × slots>` — so a task with `slots: 2` asks for more
//! processes than the hostfile has slots. This plugin writes the task's
//! `slots` (1 when unset).

use flytewasm_plugin_sdk::flyteidl::plugins::{self as v0, kubeflow as v1};
use flytewasm_plugin_sdk::kubeflow::{self, Replica, ReplicaPod, Role};
use flytewasm_plugin_sdk::prelude::*;

/// The container the operator runs in each replica.
const CONTAINER: &str = "mpi";

pub struct Mpi;

impl Plugin for Mpi {
    fn describe() -> PluginInfo {
        kubeflow::plugin_info("mpi", env!("CARGO_PKG_VERSION"), "MPIJob", "mpijobs")
    }

    fn build_resource(ctx: &TaskContext) -> Result<Value, PluginError> {
        let (launcher, worker, slots, run_policy) = match ctx.template.task_type_version {
            0 => {
                let task: v0::DistributedMpiTrainingTask = ctx.custom()?;
                let base = kubeflow::base_replica_spec(ctx, CONTAINER, None)?;
                // Launcher counts above one pass through: the operator refuses them.
                let launcher = kubeflow::with_replicas(&base, task.num_launcher_replicas.max(1));
                let mut worker = kubeflow::with_replicas(&base, task.num_workers);
                // Workers run `config["worker_spec_command"]` (split on spaces), or nothing.
                let command: Vec<&str> = ctx
                    .template_config("worker_spec_command")
                    .map(|c| c.split(' ').collect())
                    .unwrap_or_default();
                for container in kubeflow::containers_named(&mut worker, CONTAINER) {
                    container["args"] = json!(command);
                    container["command"] = json!([]);
                }
                (launcher, worker, task.slots, json!({}))
            }
            1 => {
                let task: v1::DistributedMpiTrainingTask = ctx.custom()?;
                (
                    kubeflow::replica_spec(
                        ctx,
                        CONTAINER,
                        &Replica::of(task.launcher_replicas.as_ref()),
                        Role::Master,
                    )?,
                    kubeflow::replica_spec(
                        ctx,
                        CONTAINER,
                        &Replica::of(task.worker_replicas.as_ref()),
                        Role::Replicated,
                    )?,
                    task.slots.max(1),
                    kubeflow::run_policy(task.run_policy.as_ref()),
                )
            }
            _ => return Err(kubeflow::unsupported_version(ctx)),
        };
        if worker["replicas"].as_i64().unwrap_or(0) <= 0 {
            return Err(PluginError::bad_task(
                "number of workers must be greater than 0",
            ));
        }
        Ok(json!({
            "apiVersion": "kubeflow.org/v1",
            "kind": "MPIJob",
            "metadata": {},
            "spec": {
                "slotsPerWorker": slots,
                "runPolicy": run_policy,
                "mpiReplicaSpecs": { "Launcher": launcher, "Worker": worker },
            },
        }))
    }

    fn get_task_phase(ctx: &PhaseContext, job: &Value) -> Result<PhaseInfo, PluginError> {
        // Workers only: Flyte shows no launcher link.
        let pods: Vec<ReplicaPod> = kubeflow::replica_pod_names(job, "mpiReplicaSpecs", "Worker")
            .into_iter()
            .map(|pod_name| ReplicaPod {
                pod_name,
                log_name: "",
                container: CONTAINER,
                timed: true,
            })
            .collect();
        let logs = kubeflow::log_links(ctx, job, &pods)?;
        kubeflow::job_phase(ctx, job, "mpi", logs)
    }
}

export_plugin!(Mpi);
