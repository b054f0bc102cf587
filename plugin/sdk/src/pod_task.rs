//! The Pod of a plain pod task, as Flyte's `pod` plugin builds it
//! (`container`, `python-task`, `raw-container` and `sidecar` tasks): the
//! task's raw pod by task type and version, Flyte's pod configuration, the
//! service-account fallback and the `primary_container_name` annotation
//! that tells [`crate::pod_status`] which container decides the task.
//!
//! ```ignore
//! // describe(): PluginInfo { kind: pod_task::kind(), .. }
//! let pod = pod_task::build(ctx)?;
//! Ok(pod_task::object(&pod))
//! ```

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;
use serde::Deserialize;

use crate::flyteidl::core::task_template::Target;
use crate::pod::{self, Options, TaskPod};
use crate::{PluginError, ResourceKind, TaskContext, TaskType, Value, json};

/// The annotation naming the container whose end is the task's end.
pub const PRIMARY_CONTAINER_ANNOTATION: &str = "primary_container_name";

/// The task type whose pods always name their primary container.
const SIDECAR: &str = "sidecar";

/// `flyteidl.plugins.SidecarJob`, what a `sidecar` task of version 0 keeps
/// in `TaskTemplate.custom` (read as Go's JSON reads it: either spelling).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SidecarJob {
    #[serde(alias = "pod_spec", rename = "podSpec")]
    pod_spec: Option<PodSpec>,
    #[serde(alias = "primary_container_name", rename = "primaryContainerName")]
    primary_container_name: String,
    annotations: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
}

/// The task types Flyte's pod plugin serves, as flytekit writes them:
/// `flytekitplugins-pod` writes `sidecar` version 2, older flytekits 0 and
/// 1; every other type is written at version 0.
pub fn task_types() -> Vec<TaskType> {
    let task_type = |name: &str, version: i32| TaskType {
        name: name.into(),
        version,
    };
    vec![
        task_type(SIDECAR, 0),
        task_type(SIDECAR, 1),
        task_type(SIDECAR, 2),
        task_type("container", 0),
        task_type("python-task", 0),
        task_type("raw-container", 0),
    ]
}

/// What a pod plugin creates: `v1` Pods.
pub fn kind() -> ResourceKind {
    ResourceKind {
        api_version: "v1".into(),
        kind: "Pod".into(),
        plural: "pods".into(),
    }
}

/// The task's pod, configured as Flyte configures every pod, with the
/// `primary_container_name` annotation where Flyte adds it: on `sidecar`
/// tasks, and on single-container pods of any type but `raw-container`.
pub fn build(ctx: &TaskContext) -> Result<TaskPod, PluginError> {
    let mut pod = pod::configure(ctx, raw_pod(ctx)?, Options::for_task(ctx))?;
    if pod
        .spec
        .service_account_name
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        pod.spec.service_account_name = run_as_service_account(ctx);
    }
    let task_type = ctx.template.r#type.as_str();
    if task_type == SIDECAR || (pod.spec.containers.len() == 1 && task_type != "raw-container") {
        pod.annotations.insert(
            PRIMARY_CONTAINER_ANNOTATION.into(),
            pod.primary_container_name.clone(),
        );
    }
    Ok(pod)
}

/// The `v1` Pod for `pod`: its labels, annotations and spec. The host names
/// it and adds the execution's labels, annotations and owner.
pub fn object(pod: &TaskPod) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "labels": pod.labels, "annotations": pod.annotations },
        "spec": pod.spec,
    })
}

/// The pod as the task describes it. Legacy `sidecar` tasks keep it in
/// `custom` (version 0: a SidecarJob; version 1: a bare pod spec, the
/// primary container in `config`); everything else is the common raw pod
/// (a container or `k8sPod` target).
fn raw_pod(ctx: &TaskContext) -> Result<TaskPod, PluginError> {
    match (ctx.template.r#type.as_str(), ctx.template.task_type_version) {
        (SIDECAR, 0) => {
            let job: SidecarJob = ctx.custom()?;
            let spec = job.pod_spec.ok_or_else(|| {
                PluginError::bad_task(
                    "invalid TaskSpecification, nil PodSpec in TaskTemplate.custom.podSpec",
                )
            })?;
            Ok(TaskPod {
                spec,
                labels: job.labels,
                annotations: job.annotations,
                primary_container_name: job.primary_container_name,
            })
        }
        (SIDECAR, 1) => {
            let primary = configured_primary(ctx)?;
            let spec: PodSpec = ctx.custom()?;
            let metadata = match &ctx.template.target {
                Some(Target::K8sPod(k8s_pod)) => k8s_pod.metadata.clone().unwrap_or_default(),
                _ => Default::default(),
            };
            Ok(TaskPod {
                spec,
                labels: metadata.labels.into_iter().collect(),
                annotations: metadata.annotations.into_iter().collect(),
                primary_container_name: primary,
            })
        }
        _ => pod::raw_pod(ctx),
    }
}

/// `config.primary_container_name`, which a version-1 sidecar task must
/// set (Flyte's messages, which print the config as a Go map).
fn configured_primary(ctx: &TaskContext) -> Result<String, PluginError> {
    let config = &ctx.template.config;
    if config.is_empty() {
        return Err(PluginError::bad_task(format!(
            "invalid TaskSpecification, config needs to be non-empty and include missing [{PRIMARY_CONTAINER_ANNOTATION}] key"
        )));
    }
    match config.get(PRIMARY_CONTAINER_ANNOTATION) {
        Some(name) => Ok(name.clone()),
        None => {
            let sorted: BTreeMap<_, _> = config.iter().collect();
            let entries: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            Err(PluginError::bad_task(format!(
                "invalid TaskSpecification, config missing [{PRIMARY_CONTAINER_ANNOTATION}] key in [map[{}]]",
                entries.join(" ")
            )))
        }
    }
}

/// The task's run-as service account (`TaskTemplate.securityContext.runAs`),
/// for a pod the execution gave none.
pub fn run_as_service_account(ctx: &TaskContext) -> Option<String> {
    ctx.template
        .security_context
        .as_ref()
        .and_then(|security| security.run_as.as_ref())
        .map(|identity| identity.k8s_service_account.clone())
        .filter(|account| !account.is_empty())
}
