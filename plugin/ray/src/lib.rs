//! Flyte `ray` tasks as KubeRay `RayJob`s (`ray.io/v1`), as Flyte's own Ray
//! plugin builds them: tasks written with `flytekitplugins-ray`
//! (`RayJobConfig`, `HeadNodeConfig`, `WorkerNodeConfig`) run unchanged.
//!
//! The task's custom is a `flyteidl.plugins.RayJob`. KubeRay starts a Ray
//! cluster (a head group and worker groups, each a pod template made from
//! the task's pod), then a submitter pod that runs the task's command line
//! as the job's entrypoint with `ray job submit`.
//!
//! One deliberate difference from Flyte: `plugins.ray.remoteClusterConfig`
//! cannot apply (the host owns the cluster client), so an enabled one fails
//! the build instead of creating the job locally.

mod cluster;
mod config;
mod status;

use flytewasm_plugin_sdk::flyteidl::plugins::{RayJob, autoscaler_options::UpscalingMode};
use flytewasm_plugin_sdk::pod::{self, Options, TaskPod};
use flytewasm_plugin_sdk::pod_task;
use flytewasm_plugin_sdk::prelude::*;
use flytewasm_plugin_sdk::resources;

pub use config::RayConfig;

pub struct Ray;

/// KubeRay names a cluster `<job>-raycluster-<5 chars>` and refuses longer
/// job names than 47 characters.
const MAX_NAME_LENGTH: u32 = 47;

impl Plugin for Ray {
    fn describe() -> PluginInfo {
        PluginInfo {
            id: "ray".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            // Flyte does not look at the version; flytekit writes 0.
            task_types: [0, 1]
                .map(|version| TaskType {
                    name: "ray".into(),
                    version,
                })
                .into(),
            kind: ResourceKind {
                api_version: "ray.io/v1".into(),
                kind: "RayJob".into(),
                plural: "rayjobs".into(),
            },
            properties: PluginProperties {
                generated_name_max_length: Some(MAX_NAME_LENGTH),
                ..Default::default()
            },
        }
    }

    fn build_resource(ctx: &TaskContext) -> Result<Value, PluginError> {
        let config = ctx.plugin_config::<RayConfig>()?.checked()?;
        let job: RayJob = ctx.custom()?;
        let ray_cluster = job.ray_cluster.as_ref().ok_or_else(|| {
            PluginError::bad_task(
                "TaskTemplate.custom.rayCluster is missing: a ray task describes its cluster",
            )
        })?;

        // Every pod of the job (head, workers, submitter) starts as the task's pod.
        let mut task_pod = pod::build(ctx, Options::for_task(ctx))?;
        task_pod.spec.service_account_name = service_account(ctx, &config);

        let head = cluster::head_group(
            ctx,
            &config,
            &task_pod,
            ray_cluster.head_group_spec.as_ref(),
        )?;
        let workers = ray_cluster
            .worker_group_spec
            .iter()
            .enumerate()
            .map(|(i, group)| cluster::worker_group(ctx, &config, &task_pod, group, i))
            .collect::<Result<Vec<_>, _>>()?;
        let mut cluster_spec = json!({
            "headGroupSpec": head,
            "workerGroupSpecs": workers,
            "enableInTreeAutoscaling": ray_cluster.enable_autoscaling,
        });
        if let Some(options) = &ray_cluster.autoscaler_options {
            cluster_spec["autoscalerOptions"] = autoscaler_options(ctx, options)?;
        }

        // A task may ask for the cluster to go when the job ends; asking
        // nothing keeps the platform's choice (Flyte's rule, §G.15).
        let (shutdown, ttl) = if job.shutdown_after_job_finishes {
            if job.ttl_seconds_after_finished < 0 {
                return Err(PluginError::bad_task(format!(
                    "TaskTemplate.custom.ttlSecondsAfterFinished is {}: it must be 0 or more",
                    job.ttl_seconds_after_finished
                )));
            }
            (true, job.ttl_seconds_after_finished)
        } else {
            (
                config.shutdown_after_job_finishes,
                config.ttl_seconds_after_finished,
            )
        };
        // A TTL counts only for a cluster that shuts down, and KubeRay
        // refuses one without (a platform with `shutdownAfterJobFinishes:
        // false` and Flyte's default TTL would fail every job): none then.
        let ttl = if shutdown { ttl.max(0) } else { 0 };

        let mut spec = json!({
            "rayClusterSpec": cluster_spec,
            "entrypoint": entrypoint(&task_pod),
            "shutdownAfterJobFinishes": shutdown,
            "ttlSecondsAfterFinished": ttl,
            "submitterPodTemplate": submitter_template(ctx, &task_pod)?,
        });
        let runtime_env = runtime_env_yaml(&job)?;
        if !runtime_env.is_empty() {
            spec["runtimeEnvYAML"] = json!(runtime_env);
        }
        let mut metadata = json!({});
        if !task_pod.labels.is_empty() {
            metadata["labels"] = json!(task_pod.labels);
        }
        if !task_pod.annotations.is_empty() {
            metadata["annotations"] = json!(task_pod.annotations);
        }
        Ok(
            json!({ "apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": metadata, "spec": spec }),
        )
    }

    fn get_task_phase(ctx: &PhaseContext, job: &Value) -> Result<PhaseInfo, PluginError> {
        status::phase(ctx, job)
    }
}

/// The task's run-as service account, else the execution's, unless the
/// platform names one for every Ray job (§G.21). It replaces whatever the
/// task's pod had.
fn service_account(ctx: &TaskContext, config: &RayConfig) -> Option<String> {
    let task = pod_task::run_as_service_account(ctx)
        .unwrap_or_else(|| ctx.metadata.service_account.clone());
    let account = if task.is_empty() || !config.service_account.is_empty() {
        config.service_account.clone()
    } else {
        task
    };
    Some(account).filter(|a| !a.is_empty())
}

/// The task's command line, for `ray job submit`: empty arguments become
/// `''` so they survive the shell; nothing else is quoted (Flyte's, §G.14).
fn entrypoint(task_pod: &TaskPod) -> String {
    task_pod
        .primary()
        .args
        .iter()
        .flatten()
        .map(|arg| if arg.is_empty() { "''" } else { arg })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The submitter's pod: the task's pod as it is, labelled like the task.
/// KubeRay puts its `ray job submit` line in the first container.
fn submitter_template(ctx: &TaskContext, task_pod: &TaskPod) -> Result<Value, PluginError> {
    Ok(json!({
        "metadata": {
            "labels": task_pod.template_labels(ctx),
            "annotations": task_pod.template_annotations(ctx),
        },
        "spec": serde_json::to_value(&task_pod.spec).map_err(|e| PluginError::internal(e.to_string()))?,
    }))
}

/// KubeRay's `autoscalerOptions`: only what the task set, resources always
/// (possibly empty).
fn autoscaler_options(
    ctx: &TaskContext,
    options: &flytewasm_plugin_sdk::flyteidl::plugins::AutoscalerOptions,
) -> Result<Value, PluginError> {
    let resources = match &options.resources {
        Some(res) => resources::from_flyteidl(
            res,
            &ctx.k8s_defaults,
            "TaskTemplate.custom.rayCluster.autoscalerOptions.resources",
        )?,
        None => Default::default(),
    };
    let env: Vec<Value> = options
        .env
        .iter()
        .map(|kv| json!({ "name": kv.key, "value": kv.value }))
        .collect();
    let mut out = json!({ "resources": resources, "env": env });
    if options.idle_timeout_seconds > 0 {
        out["idleTimeoutSeconds"] = json!(options.idle_timeout_seconds);
    }
    let mode = match UpscalingMode::try_from(options.upscaling_mode) {
        Ok(UpscalingMode::Default) => Some("Default"),
        Ok(UpscalingMode::Aggressive) => Some("Aggressive"),
        Ok(UpscalingMode::Conservative) => Some("Conservative"),
        _ => None,
    };
    if let Some(mode) = mode {
        out["upscalingMode"] = json!(mode);
    }
    if !options.image.is_empty() {
        out["image"] = json!(options.image);
    }
    Ok(out)
}

/// The job's Ray runtime environment as YAML: `runtimeEnvYaml`, else the
/// deprecated `runtimeEnv` (base64 of a JSON object) re-emitted as YAML.
fn runtime_env_yaml(job: &RayJob) -> Result<String, PluginError> {
    #[allow(deprecated, reason = "older flytekit writes only the base64 form")]
    let encoded = job.runtime_env.as_str();
    if !job.runtime_env_yaml.is_empty() || encoded.is_empty() {
        return Ok(job.runtime_env_yaml.clone());
    }
    let bad = |why: String| PluginError::bad_task(format!("TaskTemplate.custom.runtimeEnv: {why}"));
    let json = data_encoding::BASE64
        .decode(encoded.as_bytes())
        .map_err(|e| bad(format!("not base64: {e}")))?;
    let env: serde_json::Map<String, Value> =
        serde_json::from_slice(&json).map_err(|e| bad(format!("not a JSON object: {e}")))?;
    serde_yaml::to_string(&env).map_err(|e| bad(format!("cannot be written as YAML: {e}")))
}

export_plugin!(Ray);
