//! Flyte `dask` tasks as Dask Kubernetes operator `DaskJob`s
//! (`kubernetes.dask.org/v1`), as Flyte's own Dask plugin builds them: tasks
//! written with `flytekitplugins-dask` (`Dask`, `Scheduler`, `WorkerGroup`)
//! run unchanged.
//!
//! A DaskJob is a job runner (the task's own pod, running its command) and
//! the cluster it talks to: one scheduler behind a NodePort service and
//! `number_of_workers` workers. All three start from the task's pod; the
//! scheduler and the workers may have their own image and resources
//! (`flyteidl.plugins.DaskJob`). The operator names the cluster after the
//! job, so the host's generated name is the cluster's name too.
//!
//! The runner and the scheduler are never interruptible: losing either
//! loses the job. Workers follow the task.

use std::collections::BTreeMap;

use flytewasm_plugin_sdk::flyteidl::core;
use flytewasm_plugin_sdk::flyteidl::plugins::DaskJob;
use flytewasm_plugin_sdk::logs::{LogConfig, LogInput};
use flytewasm_plugin_sdk::pod::{self, Options, TaskPod};
use flytewasm_plugin_sdk::prelude::*;
use flytewasm_plugin_sdk::{quantity, resources};
use k8s_openapi::api::core::v1::{Container, ContainerPort};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::Deserialize;

/// The scheduler's ports: where workers and clients connect, and its dashboard.
const SCHEDULER_PORTS: [(&str, i32); 2] = [("tcp-comm", 8786), ("dashboard", 8787)];

pub struct Dask;

/// `plugins.dask` in the host config: Flyte's `plugins.dask.logs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct DaskConfig {
    logs: LogConfig,
}

impl Default for DaskConfig {
    fn default() -> Self {
        DaskConfig {
            logs: LogConfig::flyte_default(),
        }
    }
}

impl Plugin for Dask {
    fn describe() -> PluginInfo {
        PluginInfo {
            id: "dask".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            task_types: vec![TaskType {
                name: "dask".into(),
                version: 0,
            }],
            kind: ResourceKind {
                api_version: "kubernetes.dask.org/v1".into(),
                kind: "DaskJob".into(),
                plural: "daskjobs".into(),
            },
            properties: PluginProperties::default(),
        }
    }

    fn build_resource(ctx: &TaskContext) -> Result<Value, PluginError> {
        let task: DaskJob = ctx.custom()?;
        let scheduler = task.scheduler.unwrap_or_default();
        let workers = task.workers.unwrap_or_default();

        // The task's pod twice: as the task asks (for the workers) and never
        // interruptible (for the runner and the scheduler).
        let task_pod = pod::build(ctx, Options::for_task(ctx))?;
        let steady_pod = pod::build(
            ctx,
            Options {
                interruptible: false,
                ..Options::for_task(ctx)
            },
        )?;

        let mut worker = task_pod;
        let container = primary(&mut worker, "dask-worker")?;
        override_image_and_resources(
            ctx,
            container,
            &workers.image,
            workers.resources.as_ref(),
            "TaskTemplate.custom.workers.resources",
        )?;
        container.args = Some(worker_args(container)?);
        worker.spec.restart_policy = Some("Always".into());

        let mut scheduler_pod = steady_pod.clone();
        let container = primary(&mut scheduler_pod, "scheduler")?;
        override_image_and_resources(
            ctx,
            container,
            &scheduler.image,
            scheduler.resources.as_ref(),
            "TaskTemplate.custom.scheduler.resources",
        )?;
        container.args = Some(vec!["dask-scheduler".into()]);
        container.ports = Some(
            SCHEDULER_PORTS
                .iter()
                .map(|(name, port)| ContainerPort {
                    name: Some((*name).into()),
                    container_port: *port,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                })
                .collect(),
        );
        scheduler_pod.spec.restart_policy = Some("Always".into());

        // The runner is the task itself: its image, command and resources.
        let mut runner = steady_pod;
        primary(&mut runner, "job-runner")?;
        runner.spec.restart_policy = Some("Never".into());

        let metadata = json!({
            "labels": runner.template_labels(ctx),
            "annotations": runner.template_annotations(ctx),
        });
        Ok(json!({
            "apiVersion": "kubernetes.dask.org/v1",
            "kind": "DaskJob",
            "metadata": metadata,
            "spec": {
                "job": { "spec": to_json(&runner)? },
                "cluster": {
                    "metadata": metadata,
                    "spec": {
                        "worker": { "replicas": workers.number_of_workers, "spec": to_json(&worker)? },
                        "scheduler": { "spec": to_json(&scheduler_pod)?, "service": scheduler_service(ctx) },
                    },
                },
            },
        }))
    }

    fn get_task_phase(ctx: &PhaseContext, job: &Value) -> Result<PhaseInfo, PluginError> {
        let status = &job["status"];
        // A status the plugin does not know is the job still running, never an error.
        let info = match status["jobStatus"].as_str().unwrap_or_default() {
            "" => PhaseInfo::initializing("unknown"),
            "JobCreated" => PhaseInfo::initializing("job created"),
            "ClusterCreated" => PhaseInfo::initializing("cluster created"),
            "Successful" => PhaseInfo::success(),
            "Failed" => PhaseInfo::retryable_failure("DownstreamSystemError", "Dask Job failed"),
            _ => PhaseInfo::running(),
        };
        Ok(info
            .with_logs(runner_log_links(ctx, job)?)
            .bumped_if_reason_changed(&ctx.previous))
    }
}

/// The pod's primary container, renamed to what it is in the DaskJob.
fn primary<'a>(pod: &'a mut TaskPod, name: &str) -> Result<&'a mut Container, PluginError> {
    let primary = &pod.primary_container_name;
    let container = pod
        .spec
        .containers
        .iter_mut()
        .find(|c| c.name == *primary)
        .ok_or_else(|| {
            PluginError::bad_task(format!(
                "invalid TaskSpecification, container [{primary}] not defined"
            ))
        })?;
    container.name = name.into();
    Ok(container)
}

/// A role's own image, and its own resources: when it asks for any, they
/// replace the task's whole (completed with the platform's defaults and
/// held to its limits), with no per-key merge.
fn override_image_and_resources(
    ctx: &TaskContext,
    container: &mut Container,
    image: &str,
    own: Option<&core::Resources>,
    field: &str,
) -> Result<(), PluginError> {
    if !image.is_empty() {
        container.image = Some(image.into());
    }
    if let Some(own) = own.filter(|r| !(r.requests.is_empty() && r.limits.is_empty())) {
        let own = resources::from_flyteidl(own, &ctx.k8s_defaults, field)?;
        container.resources = Some(resources::with_platform_defaults(&own, &ctx.k8s_defaults));
    }
    Ok(())
}

/// `dask-worker --name $(DASK_WORKER_NAME)` (the operator sets the
/// variable), and, when the container has limits, as many threads as whole
/// CPUs (rounded up) and its memory limit in Kubernetes' canonical form. A
/// limit the map lacks is `0`, as in Flyte.
fn worker_args(container: &Container) -> Result<Vec<String>, PluginError> {
    let mut args: Vec<String> = ["dask-worker", "--name", "$(DASK_WORKER_NAME)"]
        .map(String::from)
        .into();
    if let Some(limits) = container.resources.as_ref().and_then(|r| r.limits.as_ref()) {
        let read = |name: &str, as_text: fn(&str) -> Option<String>| {
            let Some(Quantity(limit)) = limits.get(name) else {
                return Ok("0".to_owned());
            };
            as_text(limit).ok_or_else(|| {
                PluginError::bad_task(format!(
                    "the Dask workers' {name} limit `{limit}` is not a Kubernetes quantity"
                ))
            })
        };
        args.extend([
            "--nthreads".into(),
            read("cpu", |q| quantity::value(q).map(|v| v.to_string()))?,
            "--memory-limit".into(),
            read("memory", quantity::canonical)?,
        ]);
    }
    Ok(args)
}

/// The scheduler's NodePort service, selecting the scheduler pod of this
/// job's cluster (which the operator names after the job).
fn scheduler_service(ctx: &TaskContext) -> Value {
    let ports: Vec<Value> = SCHEDULER_PORTS
        .iter()
        .map(|(name, port)| json!({ "name": name, "protocol": "TCP", "port": port, "targetPort": name }))
        .collect();
    json!({
        "type": "NodePort",
        "selector": BTreeMap::from([
            ("dask.org/cluster-name", ctx.metadata.generated_name.as_str()),
            ("dask.org/component", "scheduler"),
        ]),
        "ports": ports,
    })
}

fn to_json(pod: &TaskPod) -> Result<Value, PluginError> {
    serde_json::to_value(&pod.spec).map_err(|e| PluginError::internal(e.to_string()))
}

/// One set of links, to the runner pod (the operator reports its name once
/// the cluster exists; until then `{{ .podName }}` stays as it is).
fn runner_log_links(ctx: &PhaseContext, job: &Value) -> Result<Vec<TaskLog>, PluginError> {
    let config: DaskConfig = ctx.plugin_config()?;
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    Ok(config.logs.links(&LogInput {
        log_name: "(Dask Runner Logs)".into(),
        pod_name: text(&job["status"]["jobRunnerPodName"]),
        namespace: text(&job["metadata"]["namespace"]),
        ..LogInput::for_task(ctx)
    }))
}

export_plugin!(Dask);
