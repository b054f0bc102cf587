//! `batch_job` tasks as Kubernetes `batch/v1` Jobs: the task's container
//! runs as the Job's pods, and a Kueue queue, when named, holds the Job
//! until Kueue admits it. The custom config is our own schema,
//! `flytewasm.batchjob.v1.BatchJob` (`proto/flytewasm/batchjob/v1/`).
//!
//! The plugin asks for foreground deletes: a Job's pods are what costs, and
//! with `Foreground` the Job is gone only once its pods are, so an abort
//! that reports the object gone has stopped them (`batch/v1` would orphan
//! them if a delete said nothing).

pub mod job;
pub mod status;

use flytewasm_plugin_sdk::prelude::*;

pub struct BatchJobPlugin;

impl Plugin for BatchJobPlugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            id: "batch-job".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            task_types: vec![TaskType {
                name: "batch_job".into(),
                version: 0,
            }],
            kind: ResourceKind {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                plural: "jobs".into(),
            },
            properties: PluginProperties {
                delete_propagation: Some(DeletePropagation::Foreground),
                ..Default::default()
            },
        }
    }

    fn build_resource(ctx: &TaskContext) -> Result<Value, PluginError> {
        job::build(ctx)
    }

    fn get_task_phase(_ctx: &PhaseContext, observed: &Value) -> Result<PhaseInfo, PluginError> {
        Ok(status::phase(observed))
    }
}

export_plugin!(BatchJobPlugin);
