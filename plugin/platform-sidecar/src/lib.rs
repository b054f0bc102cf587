//! Every plain task's Pod, with the platform's own sidecar container added:
//! a log shipper, a metrics agent, a proxy... Users keep writing `@task`;
//! the platform team changes the sidecar by changing this plugin's config
//! or by hot-swapping its file.
//!
//! The pod is the one Flyte's pod plugin builds ([`pod_task`]), for every
//! task type that plugin serves; its status is read as Flyte reads it
//! ([`pod_status`]). The sidecar is a native one, so the kubelet stops it
//! when the task's containers end; the pod names the task's container as
//! its primary, so that container alone decides the task.

use flytewasm_plugin_sdk::logs::LogConfig;
use flytewasm_plugin_sdk::pod_task::{self, PRIMARY_CONTAINER_ANNOTATION};
use flytewasm_plugin_sdk::prelude::*;
use flytewasm_plugin_sdk::{pod_status, resources};
use k8s_openapi::api::core::v1::{Container, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The plugin's version; the `next` feature builds the next release.
const VERSION: &str = if cfg!(feature = "next") {
    concat!(env!("CARGO_PKG_VERSION"), "-next")
} else {
    env!("CARGO_PKG_VERSION")
};

/// The sidecar a pod gets when the config names none: a pinned log shipper.
const DEFAULT_IMAGE: &str = if cfg!(feature = "next") {
    "cr.fluentbit.io/fluent/fluent-bit:3.2.10"
} else {
    "cr.fluentbit.io/fluent/fluent-bit:3.1.9"
};

/// `plugins.platform-sidecar`: the sidecar (a Kubernetes container) and
/// the log links (Flyte's `plugins.logs`).
#[derive(Debug, serde::Deserialize)]
#[serde(default)]
struct Config {
    sidecar: Container,
    logs: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        let quantities = |cpu: &str, memory: &str| {
            Some(
                [("cpu", cpu), ("memory", memory)]
                    .map(|(k, v)| (k.into(), Quantity(v.into())))
                    .into(),
            )
        };
        Config {
            sidecar: Container {
                name: "platform-agent".into(),
                image: Some(DEFAULT_IMAGE.into()),
                resources: Some(ResourceRequirements {
                    requests: quantities("50m", "64Mi"),
                    limits: quantities("100m", "128Mi"),
                    ..Default::default()
                }),
                ..Default::default()
            },
            logs: LogConfig::flyte_default(),
        }
    }
}

pub struct PlatformSidecar;

impl Plugin for PlatformSidecar {
    fn describe() -> PluginInfo {
        // Every pod task: it stands in for the pod plugin.
        PluginInfo {
            id: "platform-sidecar".into(),
            version: VERSION.into(),
            task_types: pod_task::task_types(),
            kind: pod_task::kind(),
            properties: PluginProperties::default(),
        }
    }

    fn build_resource(ctx: &TaskContext) -> Result<Value, PluginError> {
        let Config { mut sidecar, .. } = ctx.plugin_config()?;
        let mut pod = pod_task::build(ctx)?;
        let init = pod.spec.init_containers.get_or_insert_with(Vec::new);
        let names: Vec<&str> = pod
            .spec
            .containers
            .iter()
            .chain(init.iter())
            .map(|c| c.name.as_str())
            .collect();
        if sidecar.name.is_empty() || names.contains(&sidecar.name.as_str()) {
            return Err(PluginError::internal(format!(
                "invalid plugin configuration: plugins.platform-sidecar.sidecar.name `{}` must be set and differ from the task's containers ({})",
                sidecar.name,
                names.join(", ")
            )));
        }
        // A secondary container: held to the platform's limits, as Flyte holds any.
        sidecar.resources = sidecar
            .resources
            .map(|r| resources::clamped(r, &ctx.k8s_defaults));
        // A native sidecar (an init container that restarts always,
        // Kubernetes 1.29+): it starts first, and the kubelet stops it when
        // the task's containers end, so the pod ends too and frees its node
        // share. A plain second container would keep the pod running.
        sidecar.restart_policy = Some("Always".into());
        init.push(sidecar);
        // The task's container, not the sidecar, decides the task.
        pod.annotations.insert(
            PRIMARY_CONTAINER_ANNOTATION.into(),
            pod.primary_container_name.clone(),
        );
        Ok(pod_task::object(&pod))
    }

    fn get_task_phase(ctx: &PhaseContext, pod: &Value) -> Result<PhaseInfo, PluginError> {
        let config: Config = ctx.plugin_config()?;
        pod_status::phase(ctx, pod, &config.logs)
    }
}

export_plugin!(PlatformSidecar);
