//! Flyte `spark` tasks as spark-operator `SparkApplication`s
//! (`sparkoperator.k8s.io/v1beta2`), with the behaviour of Flyte's own Spark
//! plugin: tasks written with `flytekitplugins-spark` run unchanged.

pub mod application;
pub mod config;
pub mod status;

use flytewasm_plugin_sdk::prelude::*;

pub struct Spark;

impl Plugin for Spark {
    fn describe() -> PluginInfo {
        PluginInfo {
            id: "spark".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            task_types: vec![TaskType {
                name: "spark".into(),
                version: 0,
            }],
            kind: ResourceKind {
                api_version: "sparkoperator.k8s.io/v1beta2".into(),
                kind: "SparkApplication".into(),
                plural: "sparkapplications".into(),
            },
            properties: PluginProperties::default(),
        }
    }

    fn build_resource(ctx: &TaskContext) -> Result<Value, PluginError> {
        application::build(ctx)
    }

    fn get_task_phase(ctx: &PhaseContext, observed: &Value) -> Result<PhaseInfo, PluginError> {
        status::phase(ctx, observed)
    }
}

export_plugin!(Spark);
