//! Flyte `spark` tasks as spark-operator `SparkApplication`s
//! (`sparkoperator.k8s.io/v1beta2`), with the behaviour of Flyte's own Spark
//! plugin: tasks written with `flytekitplugins-spark` run unchanged.

pub mod application;
pub mod config;
pub mod status;

use flytewasm_plugin_sdk::prelude::*;

pub struct Spark;

/// The plugin's version. The `next-version` feature builds the same plugin
/// reporting another version: the host's hot-swap tests replace one with
/// the other.
const VERSION: &str = if cfg!(feature = "next-version") {
    concat!(env!("CARGO_PKG_VERSION"), "-next")
} else {
    env!("CARGO_PKG_VERSION")
};

impl Plugin for Spark {
    fn describe() -> PluginInfo {
        PluginInfo {
            id: "spark".into(),
            version: VERSION.into(),
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
