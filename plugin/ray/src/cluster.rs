//! The Ray cluster's groups: a head and worker groups, each a pod template
//! made from the task's pod (Flyte's `buildHeadPodTemplate` and
//! `buildWorkerPodTemplate`), with its start parameters.

use std::collections::{BTreeMap, HashMap};

use flytewasm_plugin_sdk::custom::struct_to_json;
use flytewasm_plugin_sdk::extended_resources;
use flytewasm_plugin_sdk::flyteidl::core::K8sPod;
use flytewasm_plugin_sdk::flyteidl::plugins::{HeadGroupSpec, WorkerGroupSpec};
use flytewasm_plugin_sdk::pod::{self, TaskPod};
use flytewasm_plugin_sdk::{PluginError, TaskContext, Value, json};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction,
    LifecycleHandler, ObjectFieldSelector, PodSpec, ResourceFieldSelector, Volume, VolumeMount,
};

use crate::config::RayConfig;

/// The Ray container's name in each group: KubeRay runs the first
/// container, and a group's `k8sPod` overlay merges into it by this name.
pub const HEAD: &str = "ray-head";
pub const WORKER: &str = "ray-worker";

/// Where Ray writes its logs and state; the logs sidecar reads it.
const RAY_STATE_PATH: &str = "/tmp/ray";
const RAY_STATE_VOLUME: &str = "system-ray-state";

/// `headGroupSpec`: the head's template, service and start parameters.
pub fn head_group(
    ctx: &TaskContext,
    config: &RayConfig,
    task_pod: &TaskPod,
    head: Option<&HeadGroupSpec>,
) -> Result<Value, PluginError> {
    let (mut spec, primary) = with_ray_container(task_pod, HEAD);
    spec.containers[primary]
        .env
        .get_or_insert_with(Vec::new)
        .push(field_env("MY_POD_IP", "status.podIP"));
    if let Some(sidecar) = &config.logs_sidecar {
        add_logs_sidecar(&mut spec, primary, sidecar.clone());
    }
    let template = group_template(
        ctx,
        task_pod,
        spec,
        head.and_then(|h| h.k8s_pod.as_ref()),
        "TaskTemplate.custom.rayCluster.headGroupSpec.k8sPod",
    )?;

    let mut params = start_params(
        head.map(|h| &h.ray_start_params),
        &config.defaults.head_node.start_parameters,
    );
    let defaults = [
        ("include-dashboard", config.include_dashboard.to_string()),
        (
            "node-ip-address",
            config.ip_address(&config.defaults.head_node).to_owned(),
        ),
        ("dashboard-host", config.dashboard_host.clone()),
    ];
    for (key, value) in defaults {
        params.entry(key.to_owned()).or_insert(value);
    }
    disable_usage_stats(config, &mut params);

    Ok(json!({
        "serviceType": config.service_type,
        "enableIngress": config.enable_ingress,
        "rayStartParams": params,
        "template": template,
    }))
}

/// One entry of `workerGroupSpecs`, the `index`th worker group.
pub fn worker_group(
    ctx: &TaskContext,
    config: &RayConfig,
    task_pod: &TaskPod,
    group: &WorkerGroupSpec,
    index: usize,
) -> Result<Value, PluginError> {
    let (mut spec, primary) = with_ray_container(task_pod, WORKER);
    let ray = &mut spec.containers[primary];
    let env = ray.env.get_or_insert_with(Vec::new);
    env.push(value_env("RAY_DISABLE_DOCKER_CPU_WARNING", "1"));
    env.push(value_env("TYPE", "worker"));
    env.push(resource_env("CPU_REQUEST", "requests.cpu"));
    env.push(resource_env("CPU_LIMITS", "limits.cpu"));
    // The memory variables read the CPU fields: Flyte's own quirk, kept so
    // workers see what they see under Flyte (reference §G.11).
    env.push(resource_env("MEMORY_REQUESTS", "requests.cpu"));
    env.push(resource_env("MEMORY_LIMITS", "limits.cpu"));
    env.push(field_env("MY_POD_NAME", "metadata.name"));
    env.push(field_env("MY_POD_IP", "status.podIP"));
    ray.lifecycle.get_or_insert_with(Default::default).pre_stop = Some(LifecycleHandler {
        exec: Some(ExecAction {
            command: Some(vec!["/bin/sh".into(), "-c".into(), "ray stop".into()]),
        }),
        ..Default::default()
    });
    let template = group_template(
        ctx,
        task_pod,
        spec,
        group.k8s_pod.as_ref(),
        &format!("TaskTemplate.custom.rayCluster.workerGroupSpec[{index}].k8sPod"),
    )?;

    let mut params = start_params(
        Some(&group.ray_start_params),
        &config.defaults.worker_node.start_parameters,
    );
    params
        .entry("node-ip-address".to_owned())
        .or_insert_with(|| config.ip_address(&config.defaults.worker_node).to_owned());
    disable_usage_stats(config, &mut params);

    let field =
        |name: &str| format!("TaskTemplate.custom.rayCluster.workerGroupSpec[{index}].{name}");
    for (name, count) in [
        ("replicas", group.replicas),
        ("minReplicas", group.min_replicas),
        ("maxReplicas", group.max_replicas),
    ] {
        if count < 0 {
            return Err(PluginError::bad_task(format!(
                "{} is {count}: a replica count is 0 or more",
                field(name)
            )));
        }
    }
    // Bounds never exclude the asked-for count (unset max ⇒ replicas, unset min ⇒ 0).
    Ok(json!({
        "groupName": group.group_name,
        "replicas": group.replicas,
        "minReplicas": group.min_replicas.min(group.replicas),
        "maxReplicas": group.max_replicas.max(group.replicas),
        "rayStartParams": params,
        "template": template,
    }))
}

/// The task's pod with its primary container renamed `name`, its args
/// cleared (KubeRay runs `ray start` there; the task's command line is the
/// job's entrypoint instead) and Ray's ports added. Also the container's
/// index: always 0, because KubeRay makes the first container the Ray node
/// (Flyte leaves it where it was, and flytekit puts a `pod_template`'s
/// primary last when the template lacks it: a sidecar would run Ray).
fn with_ray_container(task_pod: &TaskPod, name: &str) -> (PodSpec, usize) {
    let mut spec = task_pod.spec.clone();
    let primary = spec
        .containers
        .iter()
        .position(|c| c.name == task_pod.primary_container_name)
        .unwrap_or_default();
    let first = spec.containers.remove(primary);
    spec.containers.insert(0, first);
    let primary = 0;
    let ray = &mut spec.containers[primary];
    ray.name = name.to_owned();
    ray.args = None;
    let ports = ray.ports.get_or_insert_with(Vec::new);
    for (port_name, port) in [("redis", 6379), ("head", 10001), ("dashboard", 8265)] {
        ports.push(ContainerPort {
            name: Some(port_name.into()),
            container_port: port,
            ..Default::default()
        });
    }
    (spec, primary)
}

/// The logs sidecar reads Ray's state directory, read-only: the head's own
/// mount of `/tmp/ray` if it has one, else a new emptyDir.
fn add_logs_sidecar(spec: &mut PodSpec, primary: usize, mut sidecar: Container) {
    let head = &mut spec.containers[primary];
    let existing = head
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == RAY_STATE_PATH)
        .cloned();
    let mount = match existing {
        Some(mount) => mount,
        None => {
            let mount = VolumeMount {
                name: RAY_STATE_VOLUME.into(),
                mount_path: RAY_STATE_PATH.into(),
                ..Default::default()
            };
            head.volume_mounts
                .get_or_insert_with(Vec::new)
                .push(mount.clone());
            spec.volumes.get_or_insert_with(Vec::new).push(Volume {
                name: RAY_STATE_VOLUME.into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            });
            mount
        }
    };
    let read_only = VolumeMount {
        read_only: Some(true),
        ..mount
    };
    let mounts = sidecar.volume_mounts.get_or_insert_with(Vec::new);
    match mounts.iter_mut().find(|m| m.mount_path == RAY_STATE_PATH) {
        Some(at_path) => *at_path = read_only,
        None => mounts.push(read_only),
    }
    spec.containers.push(sidecar);
}

/// A group's pod template: `spec` with the group's `k8sPod` pod spec
/// merged over it, tolerations for extended resources, and the task's
/// labels and annotations under the group's own.
fn group_template(
    ctx: &TaskContext,
    task_pod: &TaskPod,
    spec: PodSpec,
    group_pod: Option<&K8sPod>,
    field: &str,
) -> Result<Value, PluginError> {
    let mut spec = match group_pod.and_then(|p| p.pod_spec.as_ref()) {
        Some(overlay) => {
            pod::merge_overlay(&spec, &struct_to_json(overlay), &format!("{field}.podSpec"))?
        }
        None => spec,
    };
    extended_resources::add_extended_resource_tolerations(&mut spec, &ctx.k8s_defaults);
    let mut labels = task_pod.template_labels(ctx);
    let mut annotations = task_pod.template_annotations(ctx);
    if let Some(metadata) = group_pod.and_then(|p| p.metadata.as_ref()) {
        labels.extend(sorted(&metadata.labels));
        annotations.extend(sorted(&metadata.annotations));
    }
    let spec = serde_json::to_value(&spec).map_err(|e| PluginError::internal(e.to_string()))?;
    Ok(json!({
        "metadata": { "labels": labels, "annotations": annotations },
        "spec": spec,
    }))
}

/// A group's own start parameters, else the configured defaults.
fn start_params(
    own: Option<&HashMap<String, String>>,
    defaults: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    match own {
        Some(own) if !own.is_empty() => sorted(own),
        _ => defaults.clone(),
    }
}

fn disable_usage_stats(config: &RayConfig, params: &mut BTreeMap<String, String>) {
    if !config.enable_usage_stats {
        params
            .entry("disable-usage-stats".to_owned())
            .or_insert_with(|| "true".to_owned());
    }
}

fn sorted(map: &HashMap<String, String>) -> BTreeMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn value_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn resource_env(name: &str, resource: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            resource_field_ref: Some(ResourceFieldSelector {
                container_name: Some(WORKER.into()),
                resource: resource.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
