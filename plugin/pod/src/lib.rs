//! Flyte's plain tasks as `v1` Pods, as Flyte's own `pod` plugin runs them:
//! `@task` functions (`python-task`), container tasks (`container`,
//! `raw-container`) and pod tasks with sidecars (`sidecar`, written by
//! `flytekitplugins-pod` or `@task(pod_template=...)`).
//!
//! There is no operator: the kubelet runs the pod, and the pod's status is
//! the task's. The SDK does the work — [`pod_task`] builds the Pod with
//! Flyte's rules, [`pod_status`] reads its status as Flyte does (waiting
//! reasons and their grace periods, OOM kills, node shutdowns, and the
//! primary container deciding for a pod with sidecars).

use flytewasm_plugin_sdk::prelude::*;
use flytewasm_plugin_sdk::{pod_status, pod_task};

pub struct Pod;

impl Plugin for Pod {
    fn describe() -> PluginInfo {
        PluginInfo {
            id: "pod".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            task_types: pod_task::task_types(),
            kind: pod_task::kind(),
            properties: PluginProperties::default(),
        }
    }

    fn build_resource(ctx: &TaskContext) -> Result<Value, PluginError> {
        Ok(pod_task::object(&pod_task::build(ctx)?))
    }

    fn get_task_phase(ctx: &PhaseContext, pod: &Value) -> Result<PhaseInfo, PluginError> {
        // Flyte links pod logs with the global `plugins.logs` configuration.
        let config: pod_status::Config = ctx.plugin_config()?;
        pod_status::phase(ctx, pod, &config.logs)
    }
}

export_plugin!(Pod);
