//! `{{task_type}}` tasks as `{{Message}}` objects.
//!
//! A plugin does two things; the host does everything else (naming the
//! object, Flyte's labels and annotations, creating, watching, aborting,
//! finalizing):
//! 1. `build_resource`: the task → the object to create, as JSON;
//! 2. `get_task_phase`: the object as the cluster has it → a Flyte phase.
//!
//! The task's configuration is `{{package}}.{{Message}}`, defined in
//! `proto/{{proto_path}}` and shared with the Python SDK.
//!
//! TODO: set the kind your operator serves in `describe`, fill in
//! `build_resource` and `get_task_phase`, and extend the tests in
//! `tests/plugin.rs`.

use flytewasm_plugin_sdk::pod::{self, Options};
use flytewasm_plugin_sdk::prelude::*;
use flytewasm_plugin_sdk::schemas::{{flat}}::v1::{{Message}};

pub struct Plugin{{Message}};

impl Plugin for Plugin{{Message}} {
    fn describe() -> PluginInfo {
        PluginInfo {
            id: "{{id}}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            task_types: vec![TaskType {
                name: "{{task_type}}".into(),
                version: 0,
            }],
            // TODO: your operator's kind.
            kind: ResourceKind {
                api_version: "example.com/v1".into(),
                kind: "{{Message}}".into(),
                plural: "{{plural}}".into(),
            },
            // Flyte's defaults. An operator whose children cost money
            // while they run may ask for foreground deletes, so an aborted
            // object is gone only once they are:
            // `PluginProperties { delete_propagation: Some(DeletePropagation::Foreground), ..Default::default() }`.
            properties: PluginProperties::default(),
        }
    }

    fn build_resource(ctx: &TaskContext) -> Result<Value, PluginError> {
        // The config the Python SDK wrote into TaskTemplate.custom; a wrong
        // field is a bad task whose message names it.
        let config: {{Message}} = match &ctx.template.custom {
            Some(_) => ctx.custom()?,
            None => {{Message}}::default(),
        };
        // The task's container, with Flyte's pod defaults applied.
        let task_pod = pod::build(ctx, Options::for_task(ctx))?;
        // TODO: the object your operator expects.
        Ok(json!({
            "apiVersion": "example.com/v1",
            "kind": "{{Message}}",
            "spec": {
                "replicas": config.replicas.max(1),
                "template": { "spec": task_pod.spec },
            },
        }))
    }

    fn get_task_phase(_ctx: &PhaseContext, observed: &Value) -> Result<PhaseInfo, PluginError> {
        // TODO: read your operator's status.
        Ok(match observed["status"]["phase"].as_str() {
            Some("Succeeded") => PhaseInfo::success(),
            Some("Failed") => PhaseInfo::retryable_failure(
                "{{Message}}Failed",
                observed["status"]["message"].as_str().unwrap_or("failed"),
            ),
            Some("Running") => PhaseInfo::running(),
            _ => PhaseInfo::queued("waiting for the operator"),
        })
    }
}

export_plugin!(Plugin{{Message}});
