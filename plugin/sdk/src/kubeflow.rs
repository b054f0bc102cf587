//! What Kubeflow training-operator plugins (PyTorchJob, TFJob, MPIJob,
//! `kubeflow.org/v1`) share, with the rules of Flyte's `kfoperators/common`:
//! replica specs built from the task's pod with per-role overrides, the run
//! policy, and a job's conditions → Flyte phase, log links and custom info.
//!
//! ```ignore
//! let worker = kubeflow::replica_spec(ctx, "pytorch", &Replica::of(task.worker_replicas.as_ref()), Role::Replicated)?;
//! let info = kubeflow::job_phase(ctx, &job, "pytorch", logs)?;
//! ```

use serde::{Deserialize, Serialize};

use crate::flyteidl::core;
use crate::flyteidl::plugins::kubeflow::{self as kf, CleanPodPolicy, RunPolicy};
use crate::flyteidl::plugins::{CommonReplicaSpec, RestartPolicy};
use crate::logs::{LogConfig, LogInput};
use crate::phase::PhaseInfoExt;
use crate::pod::{self, Options};
use crate::time::{parse_duration, unix_seconds};
use crate::{
    PhaseContext, PhaseInfo, PluginError, PluginInfo, PluginProperties, ResourceKind, TaskContext,
    TaskLog, TaskType, Value, json,
};

/// A Kubeflow plugin's configuration (`plugins.<id>` in the host config):
/// Flyte's `plugins.kf-operator.timeout` and the log links of `plugins.logs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct KubeflowConfig {
    /// How long a job may go without the operator setting its start time
    /// (Go duration: `1m`, `90s`, `1h30m`).
    pub timeout: String,
    pub logs: LogConfig,
}

impl Default for KubeflowConfig {
    fn default() -> Self {
        KubeflowConfig {
            timeout: "1m".into(),
            logs: LogConfig::flyte_default(),
        }
    }
}

/// What a Kubeflow plugin (of this `version`) says about itself: it is
/// `task_type`, serves it at task_type_version 0 and 1, and creates
/// `kubeflow.org/v1` `kind`s.
pub fn plugin_info(task_type: &str, version: &str, kind: &str, plural: &str) -> PluginInfo {
    PluginInfo {
        id: task_type.into(),
        version: version.into(),
        task_types: [0, 1]
            .map(|version| TaskType {
                name: task_type.into(),
                version,
            })
            .into(),
        kind: ResourceKind {
            api_version: "kubeflow.org/v1".into(),
            kind: kind.into(),
            plural: plural.into(),
        },
        properties: PluginProperties::default(),
    }
}

/// One role's requests (task_type_version 1): from the replica spec's
/// `common` message when present, else from its deprecated fields — all four
/// from one or the other, never mixed, as Flyte reads them.
#[derive(Debug, Clone, Default)]
pub struct Replica {
    pub replicas: i32,
    pub image: String,
    pub resources: Option<core::Resources>,
    pub restart_policy: i32,
    /// MPI only: becomes the container's args.
    pub command: Vec<String>,
}

macro_rules! replica_from {
    ($spec:ty, $command:expr) => {
        impl From<&$spec> for Replica {
            #[allow(deprecated)]
            fn from(spec: &$spec) -> Self {
                let command: fn(&$spec) -> Vec<String> = $command;
                match &spec.common {
                    Some(common) => Replica::from_common(common, command(spec)),
                    None => Replica {
                        replicas: spec.replicas,
                        image: spec.image.clone(),
                        resources: spec.resources.clone(),
                        restart_policy: spec.restart_policy,
                        command: command(spec),
                    },
                }
            }
        }
    };
}

replica_from!(kf::DistributedPyTorchTrainingReplicaSpec, |_| Vec::new());
replica_from!(kf::DistributedTensorflowTrainingReplicaSpec, |_| Vec::new());
replica_from!(kf::DistributedMpiTrainingReplicaSpec, |spec| spec
    .command
    .clone());

impl Replica {
    fn from_common(common: &CommonReplicaSpec, command: Vec<String>) -> Self {
        Replica {
            replicas: common.replicas,
            image: common.image.clone(),
            resources: common.resources.clone(),
            restart_policy: common.restart_policy,
            command,
        }
    }

    /// A role's spec message, or all defaults when the task has none.
    pub fn of<T>(spec: Option<&T>) -> Replica
    where
        for<'a> Replica: From<&'a T>,
    {
        spec.map(Replica::from).unwrap_or_default()
    }
}

/// How many replicas a role has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The job's single master (PyTorch's Master, MPI's Launcher): always 1.
    Master,
    /// As many as the task asks (workers, and TensorFlow's chief, PS and evaluator).
    Replicated,
}

/// Flyte's `ToReplicaSpec`: the task's pod as a replica template, its primary
/// container renamed to the one the operator runs (`pytorch`, `tensorflow`,
/// `mpi`), labelled and annotated like the task; 0 replicas, `Never` restart.
/// `resources` win over the task's own, key by key.
pub fn base_replica_spec(
    ctx: &TaskContext,
    container: &str,
    resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
) -> Result<Value, PluginError> {
    let mut task_pod = pod::build(
        ctx,
        Options {
            resources,
            ..Options::for_task(ctx)
        },
    )?;
    if let Some(primary) = task_pod
        .spec
        .containers
        .iter_mut()
        .find(|c| c.name == task_pod.primary_container_name)
    {
        primary.name = container.to_owned();
    }
    let spec =
        serde_json::to_value(&task_pod.spec).map_err(|e| PluginError::internal(e.to_string()))?;
    Ok(json!({
        "replicas": 0,
        "template": {
            "metadata": {
                "labels": task_pod.template_labels(ctx),
                "annotations": task_pod.template_annotations(ctx),
            },
            "spec": spec,
        },
        "restartPolicy": "Never",
    }))
}

/// Flyte's `ToReplicaSpecWithOverrides` (task_type_version 1): the base
/// replica spec with this role's replicas, image, resources, restart policy
/// and (MPI) command as the container's args.
pub fn replica_spec(
    ctx: &TaskContext,
    container: &str,
    replica: &Replica,
    role: Role,
) -> Result<Value, PluginError> {
    // A role's own resources are complete before they win over the task's
    // (Flyte's `ApplyK8sResourceOverrides` on the replica's): a limit gets its
    // request, a request its limit, cpu and memory the platform's defaults.
    let resources = match &replica.resources {
        Some(res) if !(res.requests.is_empty() && res.limits.is_empty()) => {
            let field = format!("TaskTemplate.custom ({container} replica).resources");
            let own = crate::resources::from_flyteidl(res, &ctx.k8s_defaults, &field)?;
            Some(crate::resources::with_platform_defaults(
                &own,
                &ctx.k8s_defaults,
            ))
        }
        _ => None,
    };
    let mut spec = base_replica_spec(ctx, container, resources)?;
    spec["replicas"] = json!(if role == Role::Master {
        1
    } else {
        replica.replicas
    });
    for c in containers_named(&mut spec, container) {
        if !replica.image.is_empty() {
            c["image"] = json!(replica.image);
        }
        if !replica.command.is_empty() {
            c["args"] = json!(replica.command);
        }
    }
    spec["restartPolicy"] = json!(restart_policy(replica.restart_policy));
    Ok(spec)
}

/// The containers of a replica spec named `name`.
pub fn containers_named<'a>(
    spec: &'a mut Value,
    name: &'a str,
) -> impl Iterator<Item = &'a mut Value> + 'a {
    spec["template"]["spec"]["containers"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .filter(move |c| c["name"] == name)
}

/// The same replica spec with another replica count.
pub fn with_replicas(spec: &Value, replicas: i32) -> Value {
    let mut spec = spec.clone();
    spec["replicas"] = json!(replicas);
    spec
}

fn restart_policy(policy: i32) -> &'static str {
    match RestartPolicy::try_from(policy) {
        Ok(RestartPolicy::OnFailure) => "OnFailure",
        Ok(RestartPolicy::Always) => "Always",
        _ => "Never",
    }
}

/// Flyte's run-policy mapping: none → `{}`; given → `cleanPodPolicy` always
/// (so the default enum is `None`), the numbers only when not 0.
pub fn run_policy(policy: Option<&RunPolicy>) -> Value {
    let Some(policy) = policy else {
        return json!({});
    };
    let clean = match CleanPodPolicy::try_from(policy.clean_pod_policy) {
        Ok(CleanPodPolicy::CleanpodPolicyAll) => "All",
        Ok(CleanPodPolicy::CleanpodPolicyRunning) => "Running",
        _ => "None",
    };
    let mut out = json!({ "cleanPodPolicy": clean });
    for (key, value) in [
        ("backoffLimit", policy.backoff_limit),
        ("activeDeadlineSeconds", policy.active_deadline_seconds),
        ("ttlSecondsAfterFinished", policy.ttl_seconds_after_finished),
    ] {
        if value != 0 {
            out[key] = json!(value);
        }
    }
    out
}

/// The error for a task_type_version the plugin does not know.
pub fn unsupported_version(ctx: &TaskContext) -> PluginError {
    PluginError::bad_task(format!(
        "Invalid TaskSpecification, unsupported task template version [{}] key",
        ctx.template.task_type_version
    ))
}

/// A job's status → Flyte phase (Flyte's kubeflow `GetTaskPhase`), with
/// `logs` and the job's `status` as custom info. `operator` (`pytorch`,
/// `tensorflow`, `mpi`) names the job in the timeout error.
///
/// A job the operator has not started within the configured timeout, or
/// whose conditions have none that is true, is an error, not a phase: the
/// host retries the look, as propeller does.
pub fn job_phase(
    ctx: &PhaseContext,
    job: &Value,
    operator: &str,
    logs: Vec<TaskLog>,
) -> Result<PhaseInfo, PluginError> {
    let config: KubeflowConfig = ctx.plugin_config()?;
    let status = &job["status"];
    let suspended = job["spec"]["runPolicy"]["suspend"] == true;
    if !suspended && status["startTime"].is_null() {
        let timeout = parse_duration(&config.timeout).ok_or_else(|| {
            PluginError::internal(format!(
                "invalid plugin configuration: timeout `{}` is not a duration",
                config.timeout
            ))
        })?;
        let created = &job["metadata"]["creationTimestamp"];
        if let Some(created_at) = unix_seconds(created)
            && created_at.saturating_add(timeout) < ctx.now.seconds
        {
            return Err(PluginError::internal(format!(
                "kubeflow operator hasn't updated the {operator} custom resource since creation time {}",
                created.as_str().unwrap_or_default()
            )));
        }
    }
    let condition = current_condition(status)?;
    let text = |key: &str| condition.and_then(|c| c[key].as_str()).unwrap_or_default();
    let info = match text("type") {
        "" | "Created" => PhaseInfo::queued("JobCreated"),
        "Running" | "Restarting" => PhaseInfo::running(),
        "Succeeded" => PhaseInfo::success(),
        "Suspended" => PhaseInfo::queued("Suspended"),
        "Failed" => PhaseInfo::retryable_failure(
            "DownstreamSystemError",
            format!("Job failed:\n\t{} - {}", text("reason"), text("message")),
        ),
        // Flyte's Undefined: nothing new to report.
        _ => PhaseInfo::new(ctx.previous.phase, ctx.previous.reason.clone())
            .with_version(ctx.previous.version),
    };
    let custom = if status.is_object() {
        status.clone()
    } else {
        json!({})
    };
    Ok(info
        .with_logs(logs)
        .with_custom_info(&custom)
        .bumped_if_reason_changed(&ctx.previous))
}

/// The newest condition whose status is true; `None` when the job has no
/// conditions yet. Present conditions none of which is true are an error
/// (an empty list included, as in Flyte).
///
/// Of true conditions with equal `lastTransitionTime` the later in the list
/// wins. That is this SDK's choice, not Flyte's known behaviour: Flyte sorts
/// with Go's unstable `sort.Slice`, so which one it takes is unspecified.
/// The operator appends a new condition last, so the later one is the newer.
fn current_condition(status: &Value) -> Result<Option<&Value>, PluginError> {
    let Some(conditions) = status["conditions"].as_array() else {
        return Ok(None);
    };
    conditions
        .iter()
        .enumerate()
        .filter(|(_, c)| c["status"] == "True")
        .max_by_key(|(i, c)| {
            (
                unix_seconds(&c["lastTransitionTime"]).unwrap_or(i64::MIN),
                *i,
            )
        })
        .map(|(_, c)| Some(c))
        .ok_or_else(|| {
            PluginError::internal(format!(
                "found no current condition. Conditions: {}",
                Value::Array(conditions.clone())
            ))
        })
}

/// One replica pod's log links: `<job>-<role>-<index>`, with the job's
/// creation as start time and now as finish time when `timed`.
pub struct ReplicaPod<'a> {
    pub pod_name: String,
    /// Appended to each link's display name (PyTorch's master: `master`).
    pub log_name: &'a str,
    /// The container the links show ("" leaves `{{ .containerName }}` as it is).
    pub container: &'a str,
    pub timed: bool,
}

/// The log links for `pods`, in order, with the configured log templates
/// (at most [`MAX_LOG_LINKS`]).
pub fn log_links(
    ctx: &PhaseContext,
    job: &Value,
    pods: &[ReplicaPod],
) -> Result<Vec<TaskLog>, PluginError> {
    let config: KubeflowConfig = ctx.plugin_config()?;
    let created = &job["metadata"]["creationTimestamp"];
    Ok(pods
        .iter()
        .flat_map(|pod| {
            let input = LogInput {
                log_name: pod.log_name.into(),
                pod_name: pod.pod_name.clone(),
                namespace: job["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                container_name: pod.container.into(),
                ..LogInput::for_task(ctx)
            };
            let input = if pod.timed {
                input.running_since(created, ctx.now.seconds)
            } else {
                input
            };
            config.logs.links(&input)
        })
        .take(MAX_LOG_LINKS)
        .collect())
}

/// The most log links a phase carries: the host refuses more (a job of a
/// hundred workers would otherwise fail every look). Flyte links every
/// replica pod; here the first ones, in Flyte's order, are linked.
pub const MAX_LOG_LINKS: usize = 32;

/// `<job>-<role>-<index>` for the job's first `role` replicas, as many as
/// can be linked (lower-case role, as the operator names pods).
pub fn replica_pod_names(job: &Value, specs_key: &str, role: &str) -> Vec<String> {
    let name = job["metadata"]["name"].as_str().unwrap_or_default();
    let count = job["spec"][specs_key][role]["replicas"]
        .as_i64()
        .unwrap_or(0);
    (0..count.clamp(0, MAX_LOG_LINKS as i64))
        .map(|i| format!("{name}-{}-{i}", role.to_ascii_lowercase()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_condition_is_the_newest_true_one() {
        let status = json!({ "conditions": [
            { "type": "Created", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z" },
            { "type": "Running", "status": "False", "lastTransitionTime": "2024-01-01T00:01:00Z" },
            { "type": "Failed", "status": "True", "lastTransitionTime": "2024-01-01T00:02:00Z" },
            { "type": "Restarting", "status": "True", "lastTransitionTime": "2024-01-01T00:03:00Z" },
        ]});
        assert_eq!(
            current_condition(&status).unwrap().unwrap()["type"],
            "Restarting"
        );
        assert!(current_condition(&json!({})).unwrap().is_none());
        let err = current_condition(&json!({ "conditions": [] })).unwrap_err();
        assert!(
            matches!(err, PluginError::Internal(m) if m.starts_with("found no current condition"))
        );
    }

    #[test]
    fn an_explicit_run_policy_always_names_its_clean_pod_policy() {
        assert_eq!(run_policy(None), json!({}));
        assert_eq!(
            run_policy(Some(&RunPolicy::default())),
            json!({ "cleanPodPolicy": "None" })
        );
        let policy = RunPolicy {
            clean_pod_policy: CleanPodPolicy::CleanpodPolicyAll as i32,
            backoff_limit: 100,
            active_deadline_seconds: 1000,
            ttl_seconds_after_finished: 10000,
        };
        assert_eq!(
            run_policy(Some(&policy)),
            json!({ "cleanPodPolicy": "All", "backoffLimit": 100, "activeDeadlineSeconds": 1000, "ttlSecondsAfterFinished": 10000 })
        );
    }
}
